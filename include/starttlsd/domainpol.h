/*
 * domainpol: the decision for one recipient domain under DANE (RFC 7672)
 * and MTA-STS (RFC 8461), given policyd's answer (pd_pol) and what the
 * session's server connection showed. Pure: no I/O, no time of its own.
 *
 * Precedence (docs/policy.md "DANE and MTA-STS"): a usable DANE policy
 * decides alone, and a DANE lookup failure defers, never falling back to
 * MTA-STS; MTA-STS applies only when the domain has no DANE for this
 * address; the pins and the policy file are judged beside it by the caller.
 */
#ifndef STARTTLSD_DOMAINPOL_H
#define STARTTLSD_DOMAINPOL_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "starttlsd/dane.h"
#include "starttlsd/policyd.h"

enum dp_policy {
	DP_NONE,          /* neither applies: pins and the policy file decide */
	DP_DANE,          /* "dane" */
	DP_STS,           /* "mta-sts" */
};
const char *dp_policy_str(enum dp_policy p);

/* What the server connection showed. */
struct dp_tls {
	bool tls;                     /* the server leg is TLS */
	const struct dane_chain *chain;  /* the peer chain, leaf first (tls only) */
	bool verified;                /* the chain verified against ca_file (WebPKI) */
	const char *verify;           /* the verifier's reason when not */
	const char *const *names;     /* the leaf's DNS names (SAN, else CN) */
	size_t nnames;
	time_t now;
};

struct dp_out {
	enum dp_policy policy;
	bool met;                     /* the policy's promise was kept */
	bool block;                   /* not met and the policy demands refusal (DANE, STS enforce) */
	bool testing;                 /* STS testing: judged and reported, never blocks */
	enum pd_result result;        /* PD_R_SUCCESS when met */
	char detail[PD_WHY_MAX];      /* why not met, for the log */
	char mx[PD_NAME_MAX + 1];     /* the MX host that matched or was judged, "" if unknown */
};

/* The RFC 8460 result type of a failed DANE match. */
enum pd_result dp_dane_result(enum dane_result r);

/* Judge one recipient domain. */
void dp_judge(const struct pd_pol *pol, const struct dp_tls *t,
    struct dp_out *out);

#endif
