/*
 * fuzz_dane: dane_rrset_parse over arbitrary TLSA rdata (records framed as
 * a length byte then that many bytes), then dane_match of what it kept
 * against the real chains of tests/unit/dane_certs.h, and against a chain
 * whose leaf is the input itself.
 *
 * Invariants (dane.h): every record is either kept, counted unusable, counted
 * weaker or a duplicate; kept records are usable (usage 2/3, selector 0/1,
 * mtype 0/1/2 with the right length) and, per (usage, selector), no SHA2-256
 * record is kept beside a SHA2-512 one; a match result is a known value, an
 * EE match is at depth 0, a TA match at depth >= 1; a garbage leaf never
 * matches.
 */
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "starttlsd/dane.h"
#include "fuzz.h"
#include "../unit/dane_certs.h"

#define MAXREC 32

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *rd[MAXREC];
	size_t len[MAXREC], n = 0, p = 0;
	struct dane_rrset rs;
	enum dane_parse_result pr;

	while (p < size && n < MAXREC) {
		size_t l = data[p++];
		if (l > size - p)
			l = size - p;
		rd[n] = data + p;
		len[n] = l;
		n++;
		p += l;
	}
	pr = dane_rrset_parse(rd, len, n, &rs);
	FUZZ_CHECK(pr <= DANE_PARSE_NOMEM, "parse result %d", (int)pr);
	FUZZ_CHECK(rs.n + rs.unusable + rs.weaker <= n, "%zu kept %zu unusable "
	    "%zu weaker of %zu", rs.n, rs.unusable, rs.weaker, n);
	FUZZ_CHECK((pr == DANE_PARSE_OK) == (rs.n > 0), "ok with %zu records", rs.n);
	FUZZ_CHECK(pr != DANE_PARSE_EMPTY || n == 0, "empty with %zu records", n);
	bool has512[2][2] = { { false, false }, { false, false } };
	bool has256[2][2] = { { false, false }, { false, false } };
	for (size_t i = 0; i < rs.n; i++) {
		const struct dane_tlsa *t = &rs.rec[i];
		FUZZ_CHECK(t->usage == 2 || t->usage == 3, "usage %u", t->usage);
		FUZZ_CHECK(t->selector <= 1, "selector %u", t->selector);
		FUZZ_CHECK(t->mtype <= 2, "mtype %u", t->mtype);
		FUZZ_CHECK(t->mtype != 1 || t->len == 32, "sha256 length %zu", t->len);
		FUZZ_CHECK(t->mtype != 2 || t->len == 64, "sha512 length %zu", t->len);
		FUZZ_CHECK(t->mtype != 0 || t->len > 0, "empty full record");
		if (t->mtype == 2)
			has512[t->usage - 2][t->selector] = true;
		if (t->mtype == 1)
			has256[t->usage - 2][t->selector] = true;
	}
	for (int u = 0; u < 2; u++)
		for (int s = 0; s < 2; s++)
			FUZZ_CHECK(!(has512[u][s] && has256[u][s]),
			    "sha256 kept beside sha512 for %d %d", u + 2, s);

	static const char *const names[] = { "mx.example.com", "example.com" };
	const uint8_t *der[3] = { leaf_der, inter_der, root_der };
	size_t dlen[3] = { sizeof(leaf_der), sizeof(inter_der), sizeof(root_der) };
	struct dane_chain chain = { der, dlen, 3 };
	struct dane_match_info info;
	enum dane_result r = dane_match(&rs, &chain, names, 2, DANE_TEST_NOW, &info);

	FUZZ_CHECK(r <= DANE_ERROR, "result %d", (int)r);
	FUZZ_CHECK(r != DANE_MATCH_EE || info.depth == 0, "EE at depth %d", info.depth);
	FUZZ_CHECK(r != DANE_MATCH_TA || info.depth >= 1, "TA at depth %d", info.depth);

	/* The input itself as the leaf: it is not a certificate. */
	der[0] = data;
	dlen[0] = size;
	r = dane_match(&rs, &chain, names, 2, DANE_TEST_NOW, &info);
	FUZZ_CHECK(r <= DANE_ERROR, "result %d", (int)r);
	dane_rrset_free(&rs);
	return 0;
}
