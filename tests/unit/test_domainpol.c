/*
 * Unit tests for proxy/domainpol.c: one recipient domain judged under DANE
 * and MTA-STS from policyd's answer and the server connection's facts,
 * with the hand-made chains of dane_certs.h (leaf mx.example.com under an
 * intermediate under "DANE Test Root"). The table is docs/policy.md's
 * "DANE and MTA-STS".
 */

#include "unit.h"

#include <openssl/sha.h>

#include "starttlsd/domainpol.h"
#include "dane_certs.h"

/* A "3 1 1" record of an SPKI, or of junk. */
static void
tlsa311(uint8_t rd[35], const unsigned char *spki, size_t len)
{
	rd[0] = 3;
	rd[1] = 1;
	rd[2] = 1;
	if (spki != NULL)
		SHA256(spki, len, rd + 3);
	else
		memset(rd + 3, 0xab, 32);
}

struct fx {
	uint8_t good[35], bad[35], unusable[35];
	const uint8_t *der[3];
	size_t len[3];
	struct dane_chain chain;
	const char *names[1];
	struct dp_tls t;
	struct pd_pol pol;
	struct dp_out o;
};

static void
fx_init(struct fx *f)
{
	memset(f, 0, sizeof(*f));
	tlsa311(f->good, leaf_spki, sizeof(leaf_spki));
	tlsa311(f->bad, NULL, 0);
	memcpy(f->unusable, f->good, sizeof(f->good));
	f->unusable[0] = 1;  /* PKIX-EE: unusable in SMTP (RFC 7672 3.1.3) */
	f->der[0] = leaf_der;
	f->len[0] = sizeof(leaf_der);
	f->der[1] = inter_der;
	f->len[1] = sizeof(inter_der);
	f->chain = (struct dane_chain){ .der = f->der, .len = f->len, .n = 2 };
	f->names[0] = "mx.example.com";
	f->t = (struct dp_tls){
		.tls = true, .chain = &f->chain, .verified = true, .verify = "ok",
		.names = f->names, .nnames = 1, .now = DANE_TEST_NOW,
	};
	f->pol.why = f->pol.mx = f->pol.sni = f->pol.sts_id = "";
}

static void
fx_host(struct fx *f, const char *host, const uint8_t *rd)
{
	struct pd_tlsa_host *h = &f->pol.hosts[f->pol.nhosts++];

	h->host = host;
	h->base = host;
	h->nrr = 1;
	h->rdata[0] = rd;
	h->rdlen[0] = 35;
}

static void
test_dane_match(void **state)
{
	struct fx f;

	fx_init(&f);
	f.pol.dane = PD_DANE_MATCH;
	f.pol.mx = "mx.example.com";
	fx_host(&f, "mx.example.com", f.good);
	dp_judge(&f.pol, &f.t, &f.o);
	EQ("match", f.o.policy, DP_DANE);
	EQ("match", f.o.met, true);
	EQ("match", f.o.result, PD_R_SUCCESS);
	STREQ("match", f.o.mx, "mx.example.com");
	STREQ("policy name", dp_policy_str(f.o.policy), "dane");
}

static void
test_dane_mismatch(void **state)
{
	struct fx f;

	fx_init(&f);
	f.pol.dane = PD_DANE_MATCH;
	fx_host(&f, "mx.example.com", f.bad);
	dp_judge(&f.pol, &f.t, &f.o);
	EQ("mismatch", f.o.policy, DP_DANE);
	EQ("mismatch", f.o.met, false);
	EQ("mismatch", f.o.block, true);
	EQ("mismatch", f.o.result, PD_R_TLSA_INVALID);
	/* A WebPKI-valid chain does not rescue a DANE failure (RFC 8461 2). */
	f.pol.sts = PD_STS_ENFORCE;
	f.pol.sts_nmx = 1;
	f.pol.sts_mx[0] = "mx.example.com";
	dp_judge(&f.pol, &f.t, &f.o);
	EQ("DANE over STS", f.o.policy, DP_DANE);
	EQ("DANE over STS", f.o.block, true);
}

static void
test_dane_no_tls(void **state)
{
	struct fx f;

	fx_init(&f);
	f.pol.dane = PD_DANE_MATCH;
	fx_host(&f, "mx.example.com", f.good);
	f.t.tls = false;
	f.t.chain = NULL;
	dp_judge(&f.pol, &f.t, &f.o);
	EQ("stripped", f.o.met, false);
	EQ("stripped", f.o.block, true);
	EQ("stripped", f.o.result, PD_R_STARTTLS_NOT_SUPPORTED);
	STREQ("result name", pd_result_str(f.o.result), "starttls-not-supported");
}

static void
test_dane_encrypt(void **state)
{
	struct fx f;

	fx_init(&f);
	f.pol.dane = PD_DANE_ENCRYPT;
	dp_judge(&f.pol, &f.t, &f.o);
	EQ("encrypt, TLS", f.o.policy, DP_DANE);
	EQ("encrypt, TLS", f.o.met, true);
	f.t.tls = false;
	dp_judge(&f.pol, &f.t, &f.o);
	EQ("encrypt, no TLS", f.o.met, false);
	EQ("encrypt, no TLS", f.o.result, PD_R_STARTTLS_NOT_SUPPORTED);
	/* MATCH whose only RRset turns out unusable: TLS is all it asks. */
	fx_init(&f);
	f.pol.dane = PD_DANE_MATCH;
	fx_host(&f, "mx.example.com", f.unusable);
	dp_judge(&f.pol, &f.t, &f.o);
	EQ("unusable only", f.o.met, true);
}

static void
test_dane_tempfail(void **state)
{
	struct fx f;

	fx_init(&f);
	f.pol.dane = PD_DANE_TEMPFAIL;
	f.pol.dane_result = PD_R_DNSSEC_INVALID;
	f.pol.why = "TLSA _25._tcp.mx.example.com: bogus";
	/* Never a fallback to MTA-STS (postfix-tlspol, RFC 8461 2). */
	f.pol.sts = PD_STS_ENFORCE;
	f.pol.sts_nmx = 1;
	f.pol.sts_mx[0] = "mx.example.com";
	dp_judge(&f.pol, &f.t, &f.o);
	EQ("tempfail", f.o.policy, DP_DANE);
	EQ("tempfail", f.o.block, true);
	EQ("tempfail", f.o.result, PD_R_DNSSEC_INVALID);
	STREQ("tempfail", f.o.detail, "TLSA _25._tcp.mx.example.com: bogus");
}

static void
test_dane_any_mx(void **state)
{
	struct fx f;

	fx_init(&f);
	f.pol.dane = PD_DANE_MATCH;
	f.pol.flags = PD_F_ANY_MX;
	fx_host(&f, "mx1.example.com", f.bad);
	fx_host(&f, "mx.example.com", f.good);
	dp_judge(&f.pol, &f.t, &f.o);
	EQ("any MX, second matches", f.o.met, true);
	STREQ("any MX", f.o.mx, "mx.example.com");
	f.pol.hosts[1].rdata[0] = f.bad;
	dp_judge(&f.pol, &f.t, &f.o);
	EQ("any MX, none matches", f.o.met, false);
	EQ("any MX, none matches", f.o.block, true);
}

static void
test_sts(void **state)
{
	struct fx f;

	fx_init(&f);
	f.pol.dane = PD_DANE_NONE;
	f.pol.sts = PD_STS_ENFORCE;
	f.pol.sts_nmx = 2;
	f.pol.sts_mx[0] = "mx1.example.org";
	f.pol.sts_mx[1] = "*.example.com";
	dp_judge(&f.pol, &f.t, &f.o);
	EQ("sts pass", f.o.policy, DP_STS);
	EQ("sts pass", f.o.met, true);
	STREQ("policy name", dp_policy_str(f.o.policy), "mta-sts");

	f.t.verified = false;
	f.t.verify = "unable to get local issuer certificate";
	dp_judge(&f.pol, &f.t, &f.o);
	EQ("sts untrusted", f.o.met, false);
	EQ("sts untrusted", f.o.block, true);
	EQ("sts untrusted", f.o.result, PD_R_CERT_NOT_TRUSTED);

	f.t.verify = "certificate has expired";
	dp_judge(&f.pol, &f.t, &f.o);
	EQ("sts expired", f.o.result, PD_R_CERT_EXPIRED);

	f.t.verified = true;
	f.pol.sts_mx[1] = "*.example.net";
	dp_judge(&f.pol, &f.t, &f.o);
	EQ("sts name", f.o.result, PD_R_CERT_HOST_MISMATCH);
	/* One label only: *.com does not cover mx.example.com. */
	f.pol.sts_mx[1] = "*.com";
	dp_judge(&f.pol, &f.t, &f.o);
	EQ("sts wildcard depth", f.o.met, false);

	f.t.tls = false;
	dp_judge(&f.pol, &f.t, &f.o);
	EQ("sts no TLS", f.o.result, PD_R_STARTTLS_NOT_SUPPORTED);

	f.pol.sts = PD_STS_TESTING;
	dp_judge(&f.pol, &f.t, &f.o);
	EQ("sts testing", f.o.met, false);
	EQ("sts testing", f.o.block, false);
	EQ("sts testing", f.o.testing, true);
}

static void
test_none(void **state)
{
	struct fx f;

	fx_init(&f);
	f.t.tls = false;
	dp_judge(&f.pol, &f.t, &f.o);
	EQ("none", f.o.policy, DP_NONE);
	EQ("none", f.o.block, false);
	/* UNKNOWN (address in no MX set, mixed): MTA-STS may still apply. */
	f.pol.dane = PD_DANE_UNKNOWN;
	dp_judge(&f.pol, &f.t, &f.o);
	EQ("unknown", f.o.policy, DP_NONE);
	f.pol.sts = PD_STS_ENFORCE;
	f.pol.sts_nmx = 1;
	f.pol.sts_mx[0] = "mx.example.com";
	dp_judge(&f.pol, &f.t, &f.o);
	EQ("unknown + sts", f.o.policy, DP_STS);
	EQ("unknown + sts", f.o.result, PD_R_STARTTLS_NOT_SUPPORTED);
}

/* An MTA-STS policy announced that could not be had: alerted, never blocked. */
static void
test_sts_unavailable(void **state)
{
	struct fx f;

	fx_init(&f);
	f.pol.sts = PD_STS_NONE;
	f.pol.sts_fail = PD_R_STS_POLICY_FETCH_ERROR;
	f.pol.sts_why = "https://mta-sts.example.com/.well-known/mta-sts.txt: status 404";
	f.t.tls = false;
	dp_judge(&f.pol, &f.t, &f.o);
	EQ("unavailable", f.o.policy, DP_STS);
	EQ("unavailable", f.o.met, false);
	EQ("unavailable", f.o.block, false);
	EQ("unavailable", f.o.result, PD_R_STS_POLICY_FETCH_ERROR);
	STREQ("unavailable", f.o.detail, f.pol.sts_why);
	/* DANE decides when it applies: the STS failure is not even looked at. */
	f.pol.dane = PD_DANE_MATCH;
	fx_host(&f, "mx.example.com", f.good);
	f.t.tls = true;
	dp_judge(&f.pol, &f.t, &f.o);
	EQ("dane first", f.o.policy, DP_DANE);
	EQ("dane first", f.o.met, true);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dane_match),
		cmocka_unit_test(test_dane_mismatch),
		cmocka_unit_test(test_dane_no_tls),
		cmocka_unit_test(test_dane_encrypt),
		cmocka_unit_test(test_dane_tempfail),
		cmocka_unit_test(test_dane_any_mx),
		cmocka_unit_test(test_sts),
		cmocka_unit_test(test_none),
		cmocka_unit_test(test_sts_unavailable),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
