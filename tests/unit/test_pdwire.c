/*
 * Unit tests for proxy/pdwire.c: the policy process's packets (round trips,
 * every malformed form refused, an answer too big becomes an error, never a
 * subset) and its cache (TTL bounds, expiry, replacement, eviction of what
 * expires first, keys by kind and port). Clock passed in.
 */

#include "unit.h"

#include <sys/socket.h>

#include "starttlsd/policyd.h"

static void
test_req(void **state)
{
	struct pd_req rq = { .seq = 7, .kind = PD_TLSA, .port = 25 }, out;
	uint8_t pkt[PD_MSG_MAX];
	size_t n;

	snprintf(rq.name, sizeof(rq.name), "MX.Example.NET.");
	n = pd_req_encode(&rq, pkt, sizeof(pkt));
	assert_true(n > 0);
	EQ("rt", pd_req_decode(pkt, n, &out), 0);
	EQ("rt", out.seq, 7);
	EQ("rt", out.kind, PD_TLSA);
	EQ("rt", out.port, 25);
	STREQ("rt", out.name, "mx.example.net");   /* lower case, no dot */

	EQ("short", pd_req_decode(pkt, n - 1, &out), -1);
	EQ("long", pd_req_decode(pkt, n + 1, &out), -1);
	pkt[8] = 9;
	EQ("kind", pd_req_decode(pkt, n, &out), -1);
	pkt[8] = PD_MX;
	pkt[0] ^= 1;
	EQ("magic", pd_req_decode(pkt, n, &out), -1);
	pkt[0] ^= 1;
	EQ("mx", pd_req_decode(pkt, n, &out), 0);

	/* "a.." (found by fuzz_pdwire): read as "a." it re-encoded as "a". */
	static const char *const bad[] = { "a b.example", "a..b", ".a", "a/b", "a..", "-5..",
	    "é.example", "" };
	for (size_t i = 0; i < NELEM(bad); i++) {
		struct pd_req r2 = { .seq = 1, .kind = PD_A };
		snprintf(r2.name, sizeof(r2.name), "%s", bad[i]);
		n = pd_req_encode(&r2, pkt, sizeof(pkt));
		if (n > 0)
			EQ(bad[i], pd_req_decode(pkt, n, &out), -1);
	}
	EQ("cap", pd_req_encode(&rq, pkt, 10), 0);
}

static void
test_ans(void **state)
{
	static const uint8_t r1[] = { 3, 1, 1, 0xaa }, r2[] = { 2, 0, 1 };
	const uint8_t *rd[] = { r1, r2 };
	size_t len[] = { sizeof(r1), sizeof(r2) };
	uint8_t pkt[PD_MSG_MAX];
	struct pd_ans a;
	size_t n;

	n = pd_ans_encode(9, PD_TLSA, RES_SECURE, 0, 300, rd, len, 2, pkt,
	    sizeof(pkt));
	assert_true(n > 0);
	EQ("rt", pd_ans_decode(pkt, n, &a), 0);
	EQ("rt", a.seq, 9);
	EQ("rt", a.status, RES_SECURE);
	EQ("rt", a.ttl, 300);
	EQ("rt", a.nrr, 2);
	EQ("rt", a.rdlen[0], 4);
	assert_memory_equal(a.rdata[1], r2, sizeof(r2));
	EQ("short", pd_ans_decode(pkt, n - 1, &a), -1);
	EQ("trailing", pd_ans_decode(pkt, n + 1, &a), -1);
	pkt[9] = 7;
	EQ("status", pd_ans_decode(pkt, n, &a), -1);

	/* Too big for the buffer: an error with the flag, no records. */
	n = pd_ans_encode(9, PD_TLSA, RES_SECURE, 0, 300, rd, len, 2, pkt, 20);
	EQ("trunc", pd_ans_decode(pkt, n, &a), 0);
	EQ("trunc", a.status, RES_ERROR);
	EQ("trunc", a.nrr, 0);
	EQ("trunc", a.flags & PD_F_TRUNCATED, PD_F_TRUNCATED);
	/* More records than PD_MAX_RR: the same. */
	{
		const uint8_t *many[PD_MAX_RR + 1];
		size_t ml[PD_MAX_RR + 1];
		for (size_t i = 0; i <= PD_MAX_RR; i++)
			many[i] = r1, ml[i] = sizeof(r1);
		n = pd_ans_encode(1, PD_TLSA, RES_SECURE, 0, 1, many, ml,
		    PD_MAX_RR + 1, pkt, sizeof(pkt));
		EQ("many", pd_ans_decode(pkt, n, &a), 0);
		EQ("many", a.status, RES_ERROR);
	}
}

/* PD_POLICY and PD_ADDR requests carry the address; PD_ADDR has no name. */
static void
test_req_addr(void **state)
{
	struct pd_req rq = { .seq = 3, .kind = PD_POLICY }, out;
	uint8_t pkt[PD_MSG_MAX];
	size_t n;

	snprintf(rq.name, sizeof(rq.name), "Example.NET");
	rq.addr.family = AF_INET6;
	for (int i = 0; i < 16; i++)
		rq.addr.addr[i] = (uint8_t)(0x20 + i);
	n = pd_req_encode(&rq, pkt, sizeof(pkt));
	EQ("policy", n, 12 + 11 + 17);
	EQ("policy", pd_req_decode(pkt, n, &out), 0);
	EQ("policy", out.kind, PD_POLICY);
	STREQ("policy", out.name, "example.net");
	EQ("policy", out.addr.family, AF_INET6);
	assert_memory_equal(out.addr.addr, rq.addr.addr, 16);
	EQ("policy short", pd_req_decode(pkt, n - 1, &out), -1);
	EQ("policy long", pd_req_decode(pkt, n + 1, &out), -1);
	pkt[n - 17] = 99;
	EQ("policy family", pd_req_decode(pkt, n, &out), -1);

	/* v4: the 12 bytes after the address come out zero */
	rq.addr.family = AF_INET;
	n = pd_req_encode(&rq, pkt, sizeof(pkt));
	EQ("v4", pd_req_decode(pkt, n, &out), 0);
	EQ("v4", out.addr.addr[4], 0);
	EQ("v4", out.addr.addr[0], 0x20);

	/* POLICY needs a name */
	rq.name[0] = '\0';
	EQ("policy without name", pd_req_encode(&rq, pkt, sizeof(pkt)), 0);

	/* ADDR has none */
	rq.kind = PD_ADDR;
	n = pd_req_encode(&rq, pkt, sizeof(pkt));
	EQ("addr", n, 12 + 17);
	EQ("addr", pd_req_decode(pkt, n, &out), 0);
	EQ("addr", out.kind, PD_ADDR);
	STREQ("addr", out.name, "");
	EQ("addr", out.addr.family, AF_INET);
	snprintf(rq.name, sizeof(rq.name), "x.example");
	EQ("addr with a name", pd_req_encode(&rq, pkt, sizeof(pkt)), 0);
	/* forged: a name in an ADDR request */
	{
		struct pd_req p2 = { .seq = 1, .kind = PD_POLICY };
		snprintf(p2.name, sizeof(p2.name), "x");
		p2.addr.family = AF_INET;
		n = pd_req_encode(&p2, pkt, sizeof(pkt));
		pkt[8] = PD_ADDR;
		EQ("addr forged name", pd_req_decode(pkt, n, &out), -1);
		pkt[8] = PD_REPORT;
		EQ("report is no request", pd_req_decode(pkt, n, &out), -1);
	}
	/* a TLSA request has no address part */
	{
		struct pd_req t = { .seq = 1, .kind = PD_TLSA, .port = 25 };
		snprintf(t.name, sizeof(t.name), "mx.example");
		n = pd_req_encode(&t, pkt, sizeof(pkt));
		EQ("tlsa", n, 12 + 10);
	}
}

static const uint8_t R1[] = { 3, 1, 1, 0xaa, 0xbb }, R2[] = { 2, 0, 1, 0xcc };

static void
pol_fill(struct pd_pol *p)
{
	memset(p, 0, sizeof(*p));
	p->seq = 42;
	p->kind = PD_POLICY;
	p->flags = PD_F_ANY_MX;
	p->ttl = 300;
	p->dane = PD_DANE_MATCH;
	p->dane_result = PD_R_SUCCESS;
	p->why = "";
	p->mx = "mx1.example.net";
	p->sni = "";
	p->nhosts = 2;
	p->hosts[0].host = "mx1.example.net";
	p->hosts[0].base = "real.example.net";
	p->hosts[0].nrr = 2;
	p->hosts[0].rdata[0] = R1;
	p->hosts[0].rdlen[0] = sizeof(R1);
	p->hosts[0].rdata[1] = R2;
	p->hosts[0].rdlen[1] = sizeof(R2);
	p->hosts[1].host = "mx2.example.net";
	p->hosts[1].base = "mx2.example.net";
	p->sts = PD_STS_TESTING;
	p->sts_id = "20240101";
	p->sts_max_age = 86400;
	p->sts_nmx = 2;
	p->sts_mx[0] = "mx1.example.net";
	p->sts_mx[1] = "*.example.net";
}

static void
test_pol(void **state)
{
	struct pd_pol p, o;
	uint8_t pkt[PD_MSG_MAX];
	size_t n;

	pol_fill(&p);
	n = pd_pol_encode(&p, pkt, sizeof(pkt));
	assert_true(n > 0);
	EQ("kind", pd_packet_kind(pkt, n), PD_POLICY);
	EQ("rt", pd_pol_decode(pkt, n, &o), 0);
	EQ("rt", o.seq, 42);
	EQ("rt", o.kind, PD_POLICY);
	EQ("rt", o.flags, PD_F_ANY_MX);
	EQ("rt", o.ttl, 300);
	EQ("rt", o.dane, PD_DANE_MATCH);
	STREQ("rt", o.why, "");
	STREQ("rt", o.mx, "mx1.example.net");
	STREQ("rt", o.sni, "");
	EQ("rt", o.nhosts, 2);
	STREQ("rt", o.hosts[0].base, "real.example.net");
	EQ("rt", o.hosts[0].nrr, 2);
	EQ("rt", o.hosts[0].rdlen[1], sizeof(R2));
	assert_memory_equal(o.hosts[0].rdata[0], R1, sizeof(R1));
	EQ("rt", o.hosts[1].nrr, 0);
	STREQ("rt", o.hosts[1].host, "mx2.example.net");
	EQ("rt", o.sts, PD_STS_TESTING);
	STREQ("rt", o.sts_id, "20240101");
	EQ("rt", o.sts_max_age, 86400);
	EQ("rt", o.sts_nmx, 2);
	STREQ("rt", o.sts_mx[1], "*.example.net");

	/* every truncation refused */
	for (size_t k = 0; k < n; k++)
		EQ("truncated", pd_pol_decode(pkt, k, &o), -1);
	EQ("trailing", pd_pol_decode(pkt, n + 1, &o), -1);
	/* malformed fields */
	{
		static const struct { size_t off; uint8_t v; const char *what; } bad[] = {
			{ 0, 0, "magic" }, { 8, PD_TLSA, "kind" }, { 8, PD_REPORT, "kind report" },
			{ 14, 9, "dane" }, { 15, PD_R_MAX_, "result" }, { 16, 3, "sts" },
			{ 17, PD_R_TLSA_INVALID, "sts_fail not an STS failure" },
			{ 18, PD_MAX_HOSTS + 1, "nhosts" }, { 19, 33, "sts_nmx" },
			{ 24, 0xff, "why length" },
		};
		for (size_t i = 0; i < NELEM(bad); i++) {
			uint8_t c[PD_MSG_MAX];
			memcpy(c, pkt, n);
			c[bad[i].off] = bad[i].v;
			EQ(bad[i].what, pd_pol_decode(c, n, &o), -1);
		}
		/* a string's terminating NUL replaced: refused */
		{
			uint8_t c[PD_MSG_MAX];
			memcpy(c, pkt, n);
			c[24 + 2] = 'x';   /* why is "": its NUL right after the length */
			EQ("string NUL", pd_pol_decode(c, n, &o), -1);
		}
	}
	/* PD_ADDR with sni */
	p.kind = PD_ADDR;
	p.sni = "real.example.net";
	n = pd_pol_encode(&p, pkt, sizeof(pkt));
	EQ("addr kind", pd_packet_kind(pkt, n), PD_ADDR);
	EQ("addr", pd_pol_decode(pkt, n, &o), 0);
	STREQ("addr", o.sni, "real.example.net");
	/* other kinds are not encoded */
	p.kind = PD_MX;
	EQ("not a policy", pd_pol_encode(&p, pkt, sizeof(pkt)), 0);
}

/* Too large: TEMPFAIL "answer too large", no hosts, never a subset. */
static void
test_pol_too_large(void **state)
{
	static uint8_t big[4000];
	struct pd_pol p, o;
	uint8_t pkt[PD_MSG_MAX];
	size_t n;

	pol_fill(&p);
	memset(big, 7, sizeof(big));
	for (size_t h = 0; h < 2; h++) {
		p.hosts[h].nrr = 3;
		for (size_t i = 0; i < 3; i++) {
			p.hosts[h].rdata[i] = big;
			p.hosts[h].rdlen[i] = sizeof(big);
		}
	}
	n = pd_pol_encode(&p, pkt, sizeof(pkt));
	assert_true(n > 0);
	EQ("big", pd_pol_decode(pkt, n, &o), 0);
	EQ("big", o.dane, PD_DANE_TEMPFAIL);
	EQ("big", o.dane_result, PD_R_VALIDATION_FAILURE);
	STREQ("big", o.why, "answer too large");
	EQ("big", o.nhosts, 0);
	EQ("big", o.sts, PD_STS_NONE);
	EQ("big", o.sts_nmx, 0);
	EQ("big", o.ttl, PD_TTL_FAIL);
	EQ("big: seq kept", o.seq, 42);
	/* too many hosts, too many records: the same */
	pol_fill(&p);
	p.nhosts = PD_MAX_HOSTS + 1;
	n = pd_pol_encode(&p, pkt, sizeof(pkt));
	EQ("hosts", pd_pol_decode(pkt, n, &o), 0);
	STREQ("hosts", o.why, "answer too large");
	pol_fill(&p);
	p.hosts[0].nrr = PD_MAX_RR + 1;
	n = pd_pol_encode(&p, pkt, sizeof(pkt));
	EQ("rr", pd_pol_decode(pkt, n, &o), 0);
	EQ("rr", o.dane, PD_DANE_TEMPFAIL);
	/* a small buffer: the bare answer if it fits, else 0 */
	pol_fill(&p);
	n = pd_pol_encode(&p, pkt, 60);
	EQ("small", pd_pol_decode(pkt, n, &o), 0);
	STREQ("small", o.why, "answer too large");
	EQ("tiny", pd_pol_encode(&p, pkt, 20), 0);
}

static void
test_report(void **state)
{
	struct pd_report r, o;
	uint8_t pkt[PD_MSG_MAX];
	size_t n;

	memset(&r, 0, sizeof(r));
	r.policy_type = 2;
	r.result = PD_R_STS_WEBPKI_INVALID;
	snprintf(r.domain, sizeof(r.domain), "Example.NET");
	snprintf(r.mx, sizeof(r.mx), "mx.example.net");
	r.addr.family = AF_INET;
	r.addr.addr[0] = 192;
	r.when = 1700000000;
	n = pd_report_encode(&r, pkt, sizeof(pkt));
	assert_true(n > 0);
	EQ("kind", pd_packet_kind(pkt, n), PD_REPORT);
	EQ("rt", pd_report_decode(pkt, n, &o), 0);
	EQ("rt", o.policy_type, 2);
	EQ("rt", o.result, PD_R_STS_WEBPKI_INVALID);
	STREQ("rt", o.domain, "example.net");
	STREQ("rt", o.mx, "mx.example.net");
	EQ("rt", o.addr.family, AF_INET);
	EQ("rt", o.addr.addr[0], 192);
	EQ("rt", o.when, 1700000000);
	for (size_t k = 0; k < n; k++)
		EQ("truncated", pd_report_decode(pkt, k, &o), -1);
	EQ("trailing", pd_report_decode(pkt, n + 1, &o), -1);
	{
		uint8_t c[PD_MSG_MAX];
		memcpy(c, pkt, n);
		c[9] = 4;
		EQ("policy type", pd_report_decode(c, n, &o), -1);
		memcpy(c, pkt, n);
		c[10] = PD_R_MAX_;
		EQ("result", pd_report_decode(c, n, &o), -1);
		memcpy(c, pkt, n);
		c[11] = 3;
		EQ("family", pd_report_decode(c, n, &o), -1);
		memcpy(c, pkt, n);
		c[36] = ' ';
		EQ("domain", pd_report_decode(c, n, &o), -1);
	}
	/* no mx */
	r.mx[0] = '\0';
	n = pd_report_encode(&r, pkt, sizeof(pkt));
	EQ("no mx", pd_report_decode(pkt, n, &o), 0);
	STREQ("no mx", o.mx, "");
	r.policy_type = 0;
	EQ("no policy type", pd_report_encode(&r, pkt, sizeof(pkt)), 0);
	r.policy_type = 3;
	r.domain[0] = '\0';
	EQ("no domain", pd_report_encode(&r, pkt, sizeof(pkt)), 0);
	/* not packets */
	EQ("short", pd_packet_kind(pkt, 8), -1);
	pkt[8] = 8;
	EQ("unknown kind", pd_packet_kind(pkt, 40), -1);
}

static void
test_cache(void **state)
{
	struct pd_cache *c = pd_cache_new(3);
	const uint8_t *p;
	size_t len;
	uint32_t left;

	EQ("ttl min", pd_cache_ttl(RES_SECURE, 0), PD_TTL_MIN);
	EQ("ttl max", pd_cache_ttl(RES_INSECURE, 86400), PD_TTL_MAX);
	EQ("ttl mid", pd_cache_ttl(RES_SECURE, 300), 300);
	EQ("ttl bogus", pd_cache_ttl(RES_BOGUS, 86400), PD_TTL_FAIL);
	EQ("ttl error", pd_cache_ttl(RES_ERROR, 0), PD_TTL_FAIL);

	EQ("put", pd_cache_put(c, PD_TLSA, 25, "a.example", RES_SECURE, 300,
	    (const uint8_t *)"A1", 2, 1000), 0);
	p = pd_cache_get(c, PD_TLSA, 25, "a.example", 1100, &len, &left);
	assert_non_null(p);
	EQ("get", len, 2);
	EQ("left", left, 200);
	assert_null(pd_cache_get(c, PD_TLSA, 465, "a.example", 1100, &len, NULL));
	assert_null(pd_cache_get(c, PD_MX, 25, "a.example", 1100, &len, NULL));
	assert_null(pd_cache_get(c, PD_TLSA, 25, "a.example", 1300, &len, NULL));
	EQ("expired dropped", pd_cache_count(c), 0);

	/* replace */
	pd_cache_put(c, PD_MX, 0, "b.example", RES_SECURE, 60, (const uint8_t *)"x", 1, 0);
	pd_cache_put(c, PD_MX, 0, "b.example", RES_BOGUS, 60, (const uint8_t *)"yy", 2, 0);
	p = pd_cache_get(c, PD_MX, 0, "b.example", 1, &len, &left);
	assert_non_null(p);
	EQ("replaced", len, 2);
	EQ("replaced ttl", left, PD_TTL_FAIL - 1);
	EQ("count", pd_cache_count(c), 1);

	/* full: the one expiring first goes */
	pd_cache_put(c, PD_A, 0, "long.example", RES_SECURE, 3000, (const uint8_t *)"l", 1, 0);
	pd_cache_put(c, PD_A, 0, "mid.example", RES_SECURE, 600, (const uint8_t *)"m", 1, 0);
	EQ("count", pd_cache_count(c), 3);
	pd_cache_put(c, PD_A, 0, "new.example", RES_SECURE, 600, (const uint8_t *)"n", 1, 0);
	EQ("count", pd_cache_count(c), 3);
	assert_null(pd_cache_get(c, PD_MX, 0, "b.example", 1, &len, NULL));
	assert_non_null(pd_cache_get(c, PD_A, 0, "long.example", 1, &len, NULL));
	assert_non_null(pd_cache_get(c, PD_A, 0, "new.example", 1, &len, NULL));
	pd_cache_free(c);
	pd_cache_free(NULL);
}

static void
test_strings(void **state)
{
	STREQ("k", pd_kind_str(PD_TLSA), "TLSA");
	STREQ("k", pd_kind_str(PD_MX), "MX");
	STREQ("k", pd_kind_str(PD_A), "A");
	STREQ("k", pd_kind_str(PD_AAAA), "AAAA");
	STREQ("k", pd_kind_str(PD_POLICY), "POLICY");
	STREQ("k", pd_kind_str(PD_ADDR), "ADDR");
	STREQ("k", pd_kind_str(PD_REPORT), "REPORT");
	STREQ("r", pd_result_str(PD_R_SUCCESS), "success");
	STREQ("r", pd_result_str(PD_R_TLSA_INVALID), "tlsa-invalid");
	STREQ("r", pd_result_str(PD_R_DNSSEC_INVALID), "dnssec-invalid");
	STREQ("r", pd_result_str(PD_R_VALIDATION_FAILURE), "validation-failure");
	STREQ("r", pd_result_str(PD_R_CERT_HOST_MISMATCH), "certificate-host-mismatch");
	STREQ("r", pd_result_str(PD_R_STS_POLICY_FETCH_ERROR), "sts-policy-fetch-error");
	STREQ("r", pd_result_str(PD_R_MAX_), "unknown");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_req),
		cmocka_unit_test(test_ans),
		cmocka_unit_test(test_req_addr),
		cmocka_unit_test(test_pol),
		cmocka_unit_test(test_pol_too_large),
		cmocka_unit_test(test_report),
		cmocka_unit_test(test_cache),
		cmocka_unit_test(test_strings),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
