/*
 * domainpol: see domainpol.h. The table it follows is in docs/policy.md
 * ("DANE and MTA-STS") and /work/shared/dane.md section 3.
 */
#include "starttlsd/domainpol.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "starttlsd/policy.h"

const char *
dp_policy_str(enum dp_policy p)
{
	switch (p) {
	case DP_NONE: return "none";
	case DP_DANE: return "dane";
	case DP_STS: return "mta-sts";
	}
	return "none";
}

static void
fail(struct dp_out *o, enum pd_result r, const char *detail)
{
	o->met = false;
	o->result = r;
	snprintf(o->detail, sizeof(o->detail), "%s", detail);
}

/* Match the chain against one host's TLSA RRset; the result. */
static enum dane_result
match_host(const struct pd_tlsa_host *h, const struct dp_tls *t)
{
	struct dane_rrset rr;
	const char *names[2];
	size_t nn = 0;
	enum dane_result r;

	switch (dane_rrset_parse(h->rdata, h->rdlen, h->nrr, &rr)) {
	case DANE_PARSE_OK:
		break;
	case DANE_PARSE_NO_USABLE:
	case DANE_PARSE_EMPTY:
		dane_rrset_free(&rr);
		return DANE_NO_USABLE;
	case DANE_PARSE_NOMEM:
	default:
		return DANE_ERROR;
	}
	/* DANE-TA reference names: the TLSA base domain and the MX name (RFC 7672 3.2.2). */
	if (h->base != NULL && h->base[0] != '\0')
		names[nn++] = h->base;
	if (h->host != NULL && h->host[0] != '\0' &&
	    (nn == 0 || strcasecmp(h->host, names[0]) != 0))
		names[nn++] = h->host;
	r = dane_match(&rr, t->chain, names, nn, t->now, NULL);
	dane_rrset_free(&rr);
	return r;
}

/* Which failure says the most: a near miss over a plain mismatch. */
static int
rank(enum dane_result r)
{
	switch (r) {
	case DANE_TA_NAME_MISMATCH: return 5;
	case DANE_TA_EXPIRED: return 4;
	case DANE_TA_CHAIN_INVALID: return 3;
	case DANE_MISMATCH: return 2;
	case DANE_NO_CHAIN:
	case DANE_BAD_CHAIN: return 1;
	default: return 0;
	}
}

enum pd_result
dp_dane_result(enum dane_result r)
{
	const char *s = dane_result_tlsrpt(r);

	if (s == NULL)
		return PD_R_SUCCESS;
	for (int i = 1; i < PD_R_MAX_; i++)
		if (strcmp(pd_result_str((enum pd_result)i), s) == 0)
			return (enum pd_result)i;
	return PD_R_VALIDATION_FAILURE;
}

static void
judge_dane(const struct pd_pol *pol, const struct dp_tls *t, struct dp_out *o)
{
	enum dane_result worst = DANE_MISMATCH;

	o->policy = DP_DANE;
	o->block = true;
	switch (pol->dane) {
	case PD_DANE_TEMPFAIL:
		fail(o, pol->dane_result == PD_R_SUCCESS ?
		    PD_R_VALIDATION_FAILURE : pol->dane_result,
		    pol->why && pol->why[0] ? pol->why : "DANE lookup failed");
		return;
	case PD_DANE_ENCRYPT:
		if (!t->tls) {
			fail(o, PD_R_STARTTLS_NOT_SUPPORTED, "TLSA records "
			    "published (none usable): TLS required, not to be had");
			return;
		}
		o->met = true;
		return;
	case PD_DANE_MATCH:
		break;
	default:
		o->policy = DP_NONE;
		o->block = false;
		o->met = true;
		return;
	}
	if (!t->tls) {
		fail(o, PD_R_STARTTLS_NOT_SUPPORTED,
		    "usable TLSA records published: TLS required, not to be had");
		return;
	}
	if (t->chain == NULL || t->chain->n == 0) {
		fail(o, PD_R_VALIDATION_FAILURE, "no server certificate");
		return;
	}
	for (size_t i = 0; i < pol->nhosts && i < PD_MAX_HOSTS; i++) {
		enum dane_result r = match_host(&pol->hosts[i], t);
		if (dane_result_ok(r)) {
			o->met = true;
			o->result = PD_R_SUCCESS;
			snprintf(o->mx, sizeof(o->mx), "%s", pol->hosts[i].host);
			return;
		}
		if (r == DANE_NO_USABLE) {
			/* Records, none usable: TLS is all it asks (RFC 7672 2.2). */
			if (pol->nhosts == 1) {
				o->met = true;
				return;
			}
			continue;
		}
		if (rank(r) > rank(worst))
			worst = r;
	}
	{
		char d[PD_WHY_MAX];
		snprintf(d, sizeof(d), "%s%s", dane_result_str(worst),
		    (pol->flags & PD_F_ANY_MX) ? " (address in no MX set; "
		    "matched against every MX's TLSA)" : "");
		fail(o, dp_dane_result(worst), d);
	}
}

static void
judge_sts(const struct pd_pol *pol, const struct dp_tls *t, struct dp_out *o)
{
	o->policy = DP_STS;
	o->testing = pol->sts == PD_STS_TESTING;
	o->block = !o->testing;
	if (!t->tls) {
		fail(o, PD_R_STARTTLS_NOT_SUPPORTED, "MTA-STS policy: TLS "
		    "required, not to be had");
		return;
	}
	if (!t->verified) {
		const char *v = t->verify ? t->verify : "";
		bool expired = strstr(v, "expired") != NULL ||
		    strstr(v, "not yet valid") != NULL;
		char d[PD_WHY_MAX];
		snprintf(d, sizeof(d), "certificate not valid for MTA-STS: %s",
		    v[0] ? v : "unverified");
		fail(o, expired ? PD_R_CERT_EXPIRED : PD_R_CERT_NOT_TRUSTED, d);
		return;
	}
	for (size_t i = 0; i < pol->sts_nmx && i < 32; i++)
		for (size_t k = 0; k < t->nnames; k++)
			if (policy_mx_match(pol->sts_mx[i], t->names[k])) {
				o->met = true;
				o->result = PD_R_SUCCESS;
				snprintf(o->mx, sizeof(o->mx), "%s", t->names[k]);
				return;
			}
	fail(o, PD_R_CERT_HOST_MISMATCH,
	    "no certificate name matches the policy's mx patterns");
}

void
dp_judge(const struct pd_pol *pol, const struct dp_tls *t, struct dp_out *o)
{
	memset(o, 0, sizeof(*o));
	o->policy = DP_NONE;
	o->met = true;
	o->result = PD_R_SUCCESS;
	if (pol->mx != NULL)
		snprintf(o->mx, sizeof(o->mx), "%s", pol->mx);
	if (pol->dane == PD_DANE_MATCH || pol->dane == PD_DANE_ENCRYPT ||
	    pol->dane == PD_DANE_TEMPFAIL) {
		judge_dane(pol, t, o);
		return;
	}
	/* NONE or UNKNOWN: not DANE-protected at this address; MTA-STS may apply. */
	if (pol->sts == PD_STS_ENFORCE || pol->sts == PD_STS_TESTING) {
		judge_sts(pol, t, o);
	} else if (pol->sts_fail != PD_R_SUCCESS) {
		/*
		 * A policy announced but not to be had: delivery goes on as if
		 * there were none (RFC 8461 5), the failure is alerted and
		 * reported (RFC 8460 4.3.3); never blocks.
		 */
		o->policy = DP_STS;
		o->block = false;
		fail(o, pol->sts_fail, pol->sts_why != NULL && pol->sts_why[0] ?
		    pol->sts_why : "MTA-STS policy not to be had");
	}
}
