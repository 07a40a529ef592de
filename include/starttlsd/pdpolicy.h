/*
 * pdpolicy: the pure decision behind PD_POLICY and PD_ADDR (policyd.h),
 * with no I/O and the clock passed in. policyd.c asks the resolver what
 * pdp_next says is needed, stores each answer with pdp_store, and when
 * nothing more is needed calls pdp_decide. Unit tests build the facts by
 * hand (tests/unit/test_pdpolicy.c).
 *
 * What is asked (RFC 7672 2.2, /work/shared/dane.md section 3):
 *  1. MX D. Bogus or error: TEMPFAIL. NODATA or NXDOMAIN: D itself is the
 *     only host (RFC 5321 5.1). A null MX (RFC 7505): no host, NONE.
 *  2. A and AAAA of the first PDP_MAX_MX hosts by preference (ties in
 *     RRset order, duplicates dropped). The MX RRset may be insecure: a
 *     host whose addresses are secure still gets DANE (Postfix's
 *     smtp_tls_dane_insecure_mx_policy = dane; RFC 7672 2.2.1).
 *  3. TLSA _25._tcp.BASE, only where it matters: for the host whose
 *     addresses hold the dialled address X when that RRset is secure, else
 *     (X in no host) for every host whose A and AAAA are both secure. BASE
 *     is the canonical name when the host's address answer is secure and
 *     went through a CNAME, else the host name (RFC 7672 2.2.3; the second
 *     lookup at the original name when the canonical name has no TLSA is
 *     not done).
 *
 * Then (pdp_decide):
 *  - X in a host h's secure addresses: h's TLSA decides: usable records
 *    MATCH (hosts[0] = h), records but none usable ENCRYPT, secure NODATA or
 *    insecure NONE, bogus/error TEMPFAIL (never downgraded). X in h's
 *    insecure addresses: NONE.
 *  - X in no host: any host's address lookup bogus/error gives TEMPFAIL (X
 *    may be that host's); every host with usable TLSA gives MATCH with
 *    PD_F_ANY_MX and every host in hosts[]; no host with TLSA records gives
 *    NONE; anything else UNKNOWN.
 *  - ttl: the least TTL of the answers used, clamped like pd_cache_ttl;
 *    TEMPFAIL PD_TTL_FAIL.
 */
#ifndef STARTTLSD_PDPOLICY_H
#define STARTTLSD_PDPOLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "starttlsd/policyd.h"
#include "starttlsd/resolver.h"
#include "starttlsd/sts.h"

#define PDP_MAX_MX 8        /* MX hosts looked at, by preference */

/* One answer as the facts keep it (copies). */
struct pdp_rrs {
	bool asked, done;
	enum res_status status;
	bool nxdomain;
	uint32_t ttl;
	size_t nrr;
	uint8_t *rdata[PD_MAX_RR];
	size_t rdlen[PD_MAX_RR];
	char canon[PD_NAME_MAX + 1];   /* after CNAMEs, lower case, no dot; "" */
	char why[PD_WHY_MAX];
};

struct pdp_host {
	char name[PD_NAME_MAX + 1];
	uint16_t pref;
	struct pdp_rrs a, aaaa, tlsa;
	/*
	 * An insecure address answer reached through a CNAME: the CNAME at
	 * the name itself, asked to see whether the alias is securely
	 * published (RFC 7672 2.2.2; Postfix, KumoMTA): then the host is
	 * DANE-eligible at its own name even though its target zone is not
	 * signed. Failed or bogus: a lookup failure (never a downgrade).
	 */
	struct pdp_rrs cname;
	char base[PD_NAME_MAX + 1];    /* the TLSA base domain, set with the addresses */
};

struct pdp_facts {
	char domain[PD_NAME_MAX + 1];
	struct pd_req_addr x;           /* the dialled address */
	struct pdp_rrs mx;
	bool parsed, nullmx;
	bool no_tlsa;                   /* DANE off: addresses only (for MTA-STS learning) */
	size_t nhosts;
	struct pdp_host hosts[PDP_MAX_MX];
	/* MTA-STS, filled by the caller when it asks (pdp_decide copies it) */
	enum pd_sts sts;
	char sts_id[STS_ID_MAX + 1];
	uint32_t sts_max_age;
	size_t sts_nmx;
	char sts_mx[STS_MAX_MX][STS_NAME_MAX];
	enum pd_result sts_fail;        /* an announced policy that could not be had */
	char sts_why[PD_WHY_MAX];
	char why[PD_WHY_MAX];           /* pdp_decide's reason */
};

void pdp_init(struct pdp_facts *f, const char *domain,
    const struct pd_req_addr *x);
void pdp_free(struct pdp_facts *f);

/* Keep a copy of a resolver answer in r (done). 0, or -1 out of memory. */
int pdp_store(struct pdp_rrs *r, const struct res_answer *a);

/* One query the facts need. */
struct pdp_query {
	int type;                   /* RES_T_MX, RES_T_A, RES_T_AAAA, RES_T_TLSA (port 25) */
	const char *name;
	struct pdp_rrs *into;       /* where pdp_store puts the answer */
};

/*
 * The queries needed now and not yet asked (each marked asked); at most
 * max. Returns how many; 0 with *done set when pdp_decide can answer, 0
 * without it while answers are awaited.
 */
size_t pdp_next(struct pdp_facts *f, struct pdp_query *q, size_t max,
    bool *done);

/*
 * The DANE side and the STS fields of the answer. pol's strings and rdata
 * point into f (valid while it is). dane_on false: dane is NONE.
 */
void pdp_decide(struct pdp_facts *f, bool dane_on, struct pd_pol *pol);

/* Index of the host whose addresses hold f->x (secure ones first), or -1. */
int pdp_holder(const struct pdp_facts *f);

/* Are the address family's RRsets of h both secure, with an address? */
bool pdp_host_secure(const struct pdp_host *h);

/* ---- learned addresses (PD_ADDR) ----------------------------------------- */

#define PDP_LEARN_MAX 10000

struct pdp_learn;

struct pdp_learn *pdp_learn_new(size_t max);
void pdp_learn_free(struct pdp_learn *l);
size_t pdp_learn_count(const struct pdp_learn *l);

/*
 * Learn from one PD_POLICY answer for (domain, x) computed at now:
 * MATCH for the dialled host (not PD_F_ANY_MX): x -> that host, its base,
 * its TLSA; else STS enforce and x held by an MX host that matches a
 * pattern: x -> STS with the patterns, sni the MX name. Expires at
 * now + pol->ttl (STS: the policy's max_age is not used, the addresses'
 * TTL bound it). 1 learned, 0 nothing to learn, -1 out of memory. When
 * full, the entry that expires first goes.
 */
int pdp_learn_put(struct pdp_learn *l, const struct pdp_facts *f,
    const struct pd_pol *pol, uint64_t now);

/* Store an entry as given (a dane MATCH or an sts ENFORCE PD_ADDR answer). */
int pdp_learn_set(struct pdp_learn *l, const struct pd_req_addr *x,
    const struct pd_pol *ans, uint64_t expires);

/*
 * The PD_ADDR answer for x at now: pol filled (kind PD_ADDR, ttl left),
 * strings and rdata borrowed from the table until its next change. Nothing
 * known (or expired): dane NONE, sts NONE, sni "". true if known.
 */
bool pdp_learn_get(struct pdp_learn *l, const struct pd_req_addr *x,
    uint64_t now, struct pd_pol *pol);

/*
 * Persistence hooks (policyd keeps the table in LMDB). on_drop is called for
 * each entry the table drops by itself: evicted when full, or found expired.
 */
void pdp_learn_on_drop(struct pdp_learn *l,
    void (*cb)(void *arg, const struct pd_req_addr *x), void *arg);

/* The stored entry for x: its encoded PD_ADDR answer and expiry, or NULL. */
const uint8_t *pdp_learn_raw(struct pdp_learn *l, const struct pd_req_addr *x,
    size_t *len, uint64_t *expires);

/*
 * Store an encoded PD_ADDR answer as pdp_learn_raw gave it (loading).
 * 1, 0 if malformed or expired at now (not stored), -1 out of memory.
 */
int pdp_learn_load(struct pdp_learn *l, const struct pd_req_addr *x,
    const uint8_t *blob, size_t len, uint64_t expires, uint64_t now);

#endif
