/*
 * Unit tests for proxy/pdwire.c: the policy process's packets (round trips,
 * every malformed form refused, an answer too big becomes an error, never a
 * subset) and its cache (TTL bounds, expiry, replacement, eviction of what
 * expires first, keys by kind and port). Clock passed in.
 */

#include "unit.h"

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

	static const char *const bad[] = { "a b.example", "a..b", ".a", "a/b",
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
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_req),
		cmocka_unit_test(test_ans),
		cmocka_unit_test(test_cache),
		cmocka_unit_test(test_strings),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
