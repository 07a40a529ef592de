/*
 * Unit tests for proxy/dane.c: TLSA RRset parsing (usable records only,
 * digest agility) and chain matching (DANE-EE on the leaf only and without
 * name or expiry checks; DANE-TA on issuers only, chain verified up to the
 * anchor, reference names), against the hand-made chains of dane_certs.h
 * (tests/unit/mkdane.sh). Cases follow /work/shared/dane.md 4 (1)-(6) and
 * RFC 7672 / RFC 7671.
 */

#include "unit.h"

#include <time.h>

#include <openssl/sha.h>

#include "starttlsd/dane.h"
#include "dane_certs.h"

/* ---- building RRsets ----------------------------------------------------- */

enum what { CERT, SPKI, JUNK };

struct obj {
	const unsigned char *der, *spki;
	unsigned derlen, spkilen;
};

#define OBJ(n) { n##_der, n##_spki, sizeof(n##_der), sizeof(n##_spki) }
static const struct obj o_root = OBJ(root), o_inter = OBJ(inter),
    o_leaf = OBJ(leaf), o_wild = OBJ(wild), o_expired = OBJ(expired),
    o_self = OBJ(self), o_other = OBJ(other);

/* One TLSA row as a test writes it: usage, selector, mtype, of what. */
struct row {
	int usage, selector, mtype;
	const struct obj *of;   /* NULL: junk association of the right length */
};

#define MAXREC 8

struct rrbuf {
	uint8_t rd[MAXREC][3 + 2048];
	const uint8_t *p[MAXREC];
	size_t len[MAXREC];
	size_t n;
};

static void
rr_add(struct rrbuf *b, struct row r)
{
	uint8_t *d = b->rd[b->n];
	const unsigned char *in;
	size_t inlen, dlen;

	assert_true(b->n < MAXREC);
	d[0] = (uint8_t)r.usage;
	d[1] = (uint8_t)r.selector;
	d[2] = (uint8_t)r.mtype;
	if (r.of == NULL) {
		in = (const unsigned char *)"junk junk junk junk junk junk junk";
		inlen = 30;
	} else if (r.selector == DANE_SEL_CERT) {
		in = r.of->der;
		inlen = r.of->derlen;
	} else {
		in = r.of->spki;
		inlen = r.of->spkilen;
	}
	switch (r.mtype) {
	case DANE_MT_SHA256:
		SHA256(in, inlen, d + 3);
		dlen = SHA256_DIGEST_LENGTH;
		break;
	case DANE_MT_SHA512:
		SHA512(in, inlen, d + 3);
		dlen = SHA512_DIGEST_LENGTH;
		break;
	default:
		assert_true(inlen <= 2048);
		memcpy(d + 3, in, inlen);
		dlen = inlen;
	}
	b->p[b->n] = d;
	b->len[b->n] = 3 + dlen;
	b->n++;
}

static void
rr_raw(struct rrbuf *b, const uint8_t *rd, size_t len)
{
	assert_true(b->n < MAXREC && len <= sizeof(b->rd[0]));
	memcpy(b->rd[b->n], rd, len);
	b->p[b->n] = b->rd[b->n];
	b->len[b->n] = len;
	b->n++;
}

/* ---- parsing ------------------------------------------------------------- */

static void
test_parse_empty(void **state)
{
	struct dane_rrset rs;

	EQ("empty", dane_rrset_parse(NULL, NULL, 0, &rs), DANE_PARSE_EMPTY);
	EQ("empty", rs.n, 0);
	dane_rrset_free(&rs);
	dane_rrset_free(&rs);   /* twice is fine */
}

/* Usages 0/1, mtype 255, unknown values and bad lengths are all unusable. */
static void
test_parse_unusable(void **state)
{
	static const uint8_t short1[] = { 3, 1 };
	static const uint8_t full0[] = { 3, 1, 0 };
	uint8_t d31[3 + 31], d64[3 + 32];
	struct rrbuf b = { .n = 0 };
	struct dane_rrset rs;

	rr_add(&b, (struct row){ 0, 1, 1, &o_root });   /* PKIX-TA */
	rr_add(&b, (struct row){ 1, 1, 1, &o_leaf });   /* PKIX-EE */
	rr_add(&b, (struct row){ 3, 1, 255, &o_leaf }); /* private use */
	rr_add(&b, (struct row){ 4, 1, 1, &o_leaf });   /* unknown usage */
	rr_add(&b, (struct row){ 3, 2, 1, &o_leaf });   /* unknown selector */
	rr_raw(&b, short1, sizeof(short1));
	rr_raw(&b, full0, sizeof(full0));               /* empty Full(0) */
	memset(d31, 7, sizeof(d31));
	d31[0] = 3, d31[1] = 1, d31[2] = 1;             /* sha256 of 31 bytes */
	rr_raw(&b, d31, sizeof(d31));
	EQ("unusable", dane_rrset_parse(b.p, b.len, b.n, &rs),
	    DANE_PARSE_NO_USABLE);
	EQ("unusable", rs.n, 0);
	EQ("unusable", rs.unusable, 8);
	dane_rrset_free(&rs);

	/* A sha512 record with a sha256 length is as bad. */
	b.n = 0;
	memset(d64, 7, sizeof(d64));
	d64[0] = 3, d64[1] = 1, d64[2] = 2;
	rr_raw(&b, d64, sizeof(d64));
	rr_add(&b, (struct row){ 3, 1, 1, &o_leaf });
	EQ("bad512", dane_rrset_parse(b.p, b.len, b.n, &rs), DANE_PARSE_OK);
	EQ("bad512", rs.n, 1);
	EQ("bad512", rs.rec[0].mtype, 1);   /* the bad 512 does not shadow it */
	EQ("bad512", rs.unusable, 1);
	dane_rrset_free(&rs);
}

/* Digest agility: per (usage, selector), Full(0) plus the strongest digest. */
static void
test_parse_agility(void **state)
{
	static const struct {
		const char *name;
		struct row rows[4];
		size_t nrows;
		size_t want_n, want_weaker;
		int want_mtypes[4];
	} t[] = {
		{ "512 over 256", { { 3, 1, 1, &o_leaf }, { 3, 1, 2, &o_leaf } },
		  2, 1, 1, { 2 } },
		{ "256 alone", { { 3, 1, 1, &o_leaf } }, 1, 1, 0, { 1 } },
		{ "per usage", { { 3, 1, 1, &o_leaf }, { 2, 1, 2, &o_inter } },
		  2, 2, 0, { 1, 2 } },
		{ "per selector", { { 3, 0, 1, &o_leaf }, { 3, 1, 2, &o_leaf } },
		  2, 2, 0, { 1, 2 } },
		{ "full kept", { { 3, 1, 0, &o_leaf }, { 3, 1, 1, &o_leaf },
		  { 3, 1, 2, &o_leaf } }, 3, 2, 1, { 0, 2 } },
		{ "junk 512 still wins", { { 3, 1, 1, &o_leaf }, { 3, 1, 2, NULL } },
		  2, 1, 1, { 2 } },
		{ "duplicate", { { 3, 1, 1, &o_leaf }, { 3, 1, 1, &o_leaf } },
		  2, 1, 0, { 1 } },
	};

	for (size_t i = 0; i < NELEM(t); i++) {
		struct rrbuf b = { .n = 0 };
		struct dane_rrset rs;

		for (size_t j = 0; j < t[i].nrows; j++)
			rr_add(&b, t[i].rows[j]);
		EQ(t[i].name, dane_rrset_parse(b.p, b.len, b.n, &rs),
		    DANE_PARSE_OK);
		EQ(t[i].name, rs.n, t[i].want_n);
		EQ(t[i].name, rs.weaker, t[i].want_weaker);
		for (size_t j = 0; j < rs.n && j < 4; j++)
			EQ(t[i].name, rs.rec[j].mtype, t[i].want_mtypes[j]);
		dane_rrset_free(&rs);
	}
}

/* ---- matching ------------------------------------------------------------ */

#define MAXC 4
struct chainbuf {
	const uint8_t *der[MAXC];
	size_t len[MAXC];
	struct dane_chain c;
};

static const struct dane_chain *
mkchain(struct chainbuf *cb, const struct obj *const *objs)
{
	size_t n = 0;

	for (; objs[n] != NULL; n++) {
		cb->der[n] = objs[n]->der;
		cb->len[n] = objs[n]->derlen;
	}
	cb->c.der = cb->der;
	cb->c.len = cb->len;
	cb->c.n = n;
	return &cb->c;
}

struct mcase {
	const char *name;
	struct row rows[4];
	const struct obj *chain[MAXC];
	const char *names[3];
	enum dane_result want;
	int want_depth;
};

static void
run_match(const struct mcase *t)
{
	struct rrbuf b = { .n = 0 };
	struct dane_rrset rs;
	struct chainbuf cb;
	struct dane_match_info info;
	size_t nn = 0;
	enum dane_result r;

	for (size_t j = 0; j < 4 && t->rows[j].usage != 0; j++)
		rr_add(&b, t->rows[j]);
	dane_rrset_parse(b.p, b.len, b.n, &rs);
	while (nn < 3 && t->names[nn] != NULL)
		nn++;
	r = dane_match(&rs, mkchain(&cb, t->chain), t->names, nn,
	    DANE_TEST_NOW, &info);
	if (r != t->want) {
		print_error("%s: got %s, want %s\n", t->name,
		    dane_result_str(r), dane_result_str(t->want));
		fail();
	}
	EQ(t->name, info.depth, t->want_depth);
	dane_rrset_free(&rs);
}

static const char *const MX[] = { "mx.example.com", NULL };

/* DANE-EE(3): the leaf only; no name, expiry or chain checks. */
static void
test_match_ee(void **state)
{
	const struct mcase t[] = {
		{ "3 1 1", { { 3, 1, 1, &o_leaf } }, { &o_leaf, &o_inter },
		  { NULL }, DANE_MATCH_EE, 0 },
		{ "3 1 2", { { 3, 1, 2, &o_leaf } }, { &o_leaf }, { NULL },
		  DANE_MATCH_EE, 0 },
		{ "3 0 1", { { 3, 0, 1, &o_leaf } }, { &o_leaf }, { NULL },
		  DANE_MATCH_EE, 0 },
		{ "3 0 0", { { 3, 0, 0, &o_leaf } }, { &o_leaf }, { NULL },
		  DANE_MATCH_EE, 0 },
		{ "3 1 0", { { 3, 1, 0, &o_leaf } }, { &o_leaf }, { NULL },
		  DANE_MATCH_EE, 0 },
		{ "3 1 1 other key", { { 3, 1, 1, &o_other } }, { &o_leaf },
		  { NULL }, DANE_MISMATCH, -1 },
		{ "3 0 1 spki as cert", { { 3, 0, 1, &o_other } }, { &o_leaf },
		  { NULL }, DANE_MISMATCH, -1 },
		/* (3) expired, self-signed, a name nobody asked for: still a match */
		{ "ee expired wrong name", { { 3, 1, 1, &o_self } }, { &o_self },
		  { "mx.example.com" }, DANE_MATCH_EE, 0 },
		/* EE never matches an issuer */
		{ "ee on issuer", { { 3, 1, 1, &o_inter } }, { &o_leaf, &o_inter },
		  { "mx.example.com" }, DANE_MISMATCH, -1 },
		/* (5) agility */
		{ "512 wrong, 256 right", { { 3, 1, 2, &o_other },
		  { 3, 1, 1, &o_leaf } }, { &o_leaf }, { NULL },
		  DANE_MISMATCH, -1 },
		{ "512 right, 256 junk", { { 3, 1, 2, &o_leaf },
		  { 3, 1, 1, NULL } }, { &o_leaf }, { NULL }, DANE_MATCH_EE, 0 },
		/* one good record among bad ones is enough */
		{ "one of many", { { 3, 1, 1, &o_other }, { 3, 1, 1, &o_root },
		  { 3, 1, 1, &o_leaf } }, { &o_leaf }, { NULL },
		  DANE_MATCH_EE, 0 },
		/* EE wins whatever a TA record says */
		{ "ee beside a failing ta", { { 2, 1, 1, &o_other },
		  { 3, 1, 1, &o_leaf } }, { &o_leaf, &o_other }, { NULL },
		  DANE_MATCH_EE, 0 },
	};

	for (size_t i = 0; i < NELEM(t); i++)
		run_match(&t[i]);
}

/* DANE-TA(2): issuers only, chain verified, names checked. */
static void
test_match_ta(void **state)
{
	const struct mcase t[] = {
		{ "2 1 1 inter", { { 2, 1, 1, &o_inter } }, { &o_leaf, &o_inter },
		  { "mx.example.com" }, DANE_MATCH_TA, 1 },
		{ "2 0 1 inter", { { 2, 0, 1, &o_inter } }, { &o_leaf, &o_inter },
		  { "mx.example.com" }, DANE_MATCH_TA, 1 },
		{ "2 0 0 inter", { { 2, 0, 0, &o_inter } }, { &o_leaf, &o_inter },
		  { "mx.example.com" }, DANE_MATCH_TA, 1 },
		{ "2 1 2 root sent", { { 2, 1, 2, &o_root } },
		  { &o_leaf, &o_inter, &o_root }, { "mx.example.com" },
		  DANE_MATCH_TA, 2 },
		/* (4) a digest TA the server does not send cannot match */
		{ "root not sent", { { 2, 1, 1, &o_root } }, { &o_leaf, &o_inter },
		  { "mx.example.com" }, DANE_MISMATCH, -1 },
		/* (4) wrong SAN */
		{ "wrong name", { { 2, 1, 1, &o_inter } }, { &o_leaf, &o_inter },
		  { "mx.example.org", "example.org" }, DANE_TA_NAME_MISMATCH, 1 },
		{ "no names", { { 2, 1, 1, &o_inter } }, { &o_leaf, &o_inter },
		  { NULL }, DANE_TA_NAME_MISMATCH, 1 },
		/* base domain or MX name, any case, trailing dot */
		{ "second name", { { 2, 1, 1, &o_inter } }, { &o_leaf, &o_inter },
		  { "example.com", "MX.Example.COM." }, DANE_MATCH_TA, 1 },
		/* never the leaf, even sent twice */
		{ "ta on leaf", { { 2, 1, 1, &o_leaf } }, { &o_leaf, &o_inter },
		  { "mx.example.com" }, DANE_MISMATCH, -1 },
		{ "ta on leaf copy", { { 2, 0, 1, &o_leaf } }, { &o_leaf, &o_leaf },
		  { "mx.example.com" }, DANE_MISMATCH, -1 },
		{ "ta on self-signed leaf", { { 2, 1, 1, &o_self } },
		  { &o_self, &o_self }, { "nobody.invalid" }, DANE_MISMATCH, -1 },
		/* DANE-TA does check expiry */
		{ "expired leaf", { { 2, 1, 1, &o_inter } },
		  { &o_expired, &o_inter }, { "mx.example.com" },
		  DANE_TA_EXPIRED, 1 },
		/* the anchor must have signed the chain */
		{ "unrelated ca sent", { { 2, 1, 1, &o_other } },
		  { &o_leaf, &o_other }, { "mx.example.com" },
		  DANE_TA_CHAIN_INVALID, 1 },
		{ "intermediate missing", { { 2, 1, 1, &o_root } },
		  { &o_leaf, &o_root }, { "mx.example.com" },
		  DANE_TA_CHAIN_INVALID, 1 },
		/* a wildcard covers exactly one leftmost label */
		{ "wildcard one label", { { 2, 1, 1, &o_inter } },
		  { &o_wild, &o_inter }, { "mx.example.net" }, DANE_MATCH_TA, 1 },
		{ "wildcard two labels", { { 2, 1, 1, &o_inter } },
		  { &o_wild, &o_inter }, { "a.b.example.net" },
		  DANE_TA_NAME_MISMATCH, 1 },
		{ "wildcard parent", { { 2, 1, 1, &o_inter } },
		  { &o_wild, &o_inter }, { "example.net" },
		  DANE_TA_NAME_MISMATCH, 1 },
		/* one failing TA, one good: the good one wins */
		{ "second ta good", { { 2, 1, 1, &o_other }, { 2, 1, 1, &o_inter } },
		  { &o_leaf, &o_other, &o_inter }, { "mx.example.com" },
		  DANE_MATCH_TA, 2 },
	};

	for (size_t i = 0; i < NELEM(t); i++)
		run_match(&t[i]);
}

static void
test_match_edges(void **state)
{
	struct rrbuf b = { .n = 0 };
	struct dane_rrset rs, none = { .n = 0 };
	struct chainbuf cb;
	const struct obj *leaf[] = { &o_leaf, NULL };
	static const uint8_t garbage[] = { 0x30, 0x03, 0x02, 0x01, 0x00 };
	const uint8_t *gp[] = { garbage, inter_der };
	size_t gl[] = { sizeof(garbage), sizeof(inter_der) };
	struct dane_chain bad = { gp, gl, 2 };
	struct dane_chain empty = { NULL, NULL, 0 };

	rr_add(&b, (struct row){ 3, 1, 1, &o_leaf });
	rr_add(&b, (struct row){ 2, 1, 1, &o_inter });
	EQ("parse", dane_rrset_parse(b.p, b.len, b.n, &rs), DANE_PARSE_OK);
	EQ("no usable", dane_match(&none, mkchain(&cb, leaf), MX, 1, 0, NULL),
	    DANE_NO_USABLE);
	EQ("no chain", dane_match(&rs, &empty, MX, 1, 0, NULL), DANE_NO_CHAIN);
	EQ("bad leaf", dane_match(&rs, &bad, MX, 1, 0, NULL), DANE_BAD_CHAIN);
	/* now = 0 means the clock: the leaf is valid today */
	EQ("clock", dane_match(&rs, mkchain(&cb, leaf), MX, 1, 0, NULL),
	    DANE_MATCH_EE);
	dane_rrset_free(&rs);
}

static void
test_strings(void **state)
{
	for (int r = DANE_MATCH_EE; r <= DANE_ERROR; r++) {
		const char *s = dane_result_str((enum dane_result)r);
		if (strcmp(s, "unknown") == 0 || strchr(s, ' ') != NULL) {
			print_error("dane_result %d: \"%s\"\n", r, s);
			fail();
		}
		EQ(s, dane_result_ok((enum dane_result)r),
		    r == DANE_MATCH_EE || r == DANE_MATCH_TA);
		EQ(s, dane_result_tlsrpt((enum dane_result)r) == NULL,
		    dane_result_ok((enum dane_result)r));
	}
	for (int r = DANE_PARSE_OK; r <= DANE_PARSE_NOMEM; r++)
		assert_string_not_equal(
		    dane_parse_result_str((enum dane_parse_result)r), "unknown");
	STREQ("str", dane_result_str(DANE_NO_USABLE), "no-usable-records");
	STREQ("tlsrpt", dane_result_tlsrpt(DANE_MISMATCH), "tlsa-invalid");
	STREQ("tlsrpt", dane_result_tlsrpt(DANE_TA_NAME_MISMATCH),
	    "certificate-host-mismatch");
	STREQ("tlsrpt", dane_result_tlsrpt(DANE_TA_EXPIRED),
	    "certificate-expired");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_empty),
		cmocka_unit_test(test_parse_unusable),
		cmocka_unit_test(test_parse_agility),
		cmocka_unit_test(test_match_ee),
		cmocka_unit_test(test_match_ta),
		cmocka_unit_test(test_match_edges),
		cmocka_unit_test(test_strings),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
