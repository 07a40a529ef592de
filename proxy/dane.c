/* dane: TLSA RRset parsing and chain matching (RFC 7672, RFC 7671); pure. */
#include "starttlsd/dane.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/mem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* ---- parsing ------------------------------------------------------------- */

/* Is this record one SMTP may use, with a well-formed association? */
static bool
tlsa_usable(uint8_t usage, uint8_t selector, uint8_t mtype, size_t dlen)
{
	if (usage != DANE_USAGE_TA && usage != DANE_USAGE_EE)
		return false;
	if (selector != DANE_SEL_CERT && selector != DANE_SEL_SPKI)
		return false;
	switch (mtype) {
	case DANE_MT_FULL:
		return dlen > 0;
	case DANE_MT_SHA256:
		return dlen == SHA256_DIGEST_LENGTH;
	case DANE_MT_SHA512:
		return dlen == SHA512_DIGEST_LENGTH;
	default:
		return false;   /* 255 (private use) and unassigned types */
	}
}

/* Digest strength for agility; Full(0) is not a digest and always kept. */
static int
mtype_rank(uint8_t mtype)
{
	return mtype == DANE_MT_SHA512 ? 2 : mtype == DANE_MT_SHA256 ? 1 : 0;
}

void
dane_rrset_free(struct dane_rrset *rrset)
{
	if (rrset == NULL)
		return;
	for (size_t i = 0; i < rrset->n; i++)
		free(rrset->rec[i].data);
	free(rrset->rec);
	memset(rrset, 0, sizeof(*rrset));
}

enum dane_parse_result
dane_rrset_parse(const uint8_t *const *rdata, const size_t *len, size_t n,
    struct dane_rrset *out)
{
	/* The strongest digest present per (usage - 2, selector). */
	int best[2][2] = { { 0, 0 }, { 0, 0 } };
	size_t i, k;

	memset(out, 0, sizeof(*out));
	if (n == 0)
		return DANE_PARSE_EMPTY;
	for (i = 0; i < n; i++) {
		if (len[i] < 3 || !tlsa_usable(rdata[i][0], rdata[i][1],
		    rdata[i][2], len[i] - 3))
			continue;
		int *b = &best[rdata[i][0] - 2][rdata[i][1]];
		if (mtype_rank(rdata[i][2]) > *b)
			*b = mtype_rank(rdata[i][2]);
	}
	out->rec = calloc(n < DANE_MAX_RECORDS ? n : DANE_MAX_RECORDS,
	    sizeof(*out->rec));
	if (out->rec == NULL)
		return DANE_PARSE_NOMEM;
	for (i = 0; i < n; i++) {
		const uint8_t *r = rdata[i];
		size_t dlen;

		if (len[i] < 3 || !tlsa_usable(r[0], r[1], r[2], len[i] - 3)) {
			out->unusable++;
			continue;
		}
		dlen = len[i] - 3;
		if (r[2] != DANE_MT_FULL &&
		    mtype_rank(r[2]) < best[r[0] - 2][r[1]]) {
			out->weaker++;
			continue;
		}
		/* An RRset holds no duplicates, but a careless one costs nothing. */
		for (k = 0; k < out->n; k++)
			if (out->rec[k].usage == r[0] &&
			    out->rec[k].selector == r[1] &&
			    out->rec[k].mtype == r[2] && out->rec[k].len == dlen &&
			    memcmp(out->rec[k].data, r + 3, dlen) == 0)
				break;
		if (k < out->n)
			continue;
		if (out->n == DANE_MAX_RECORDS) {
			out->unusable++;
			continue;
		}
		struct dane_tlsa *t = &out->rec[out->n];
		t->data = malloc(dlen);
		if (t->data == NULL) {
			dane_rrset_free(out);
			return DANE_PARSE_NOMEM;
		}
		memcpy(t->data, r + 3, dlen);
		t->usage = r[0];
		t->selector = r[1];
		t->mtype = r[2];
		t->len = dlen;
		out->n++;
	}
	return out->n > 0 ? DANE_PARSE_OK : DANE_PARSE_NO_USABLE;
}

const char *
dane_parse_result_str(enum dane_parse_result r)
{
	switch (r) {
	case DANE_PARSE_OK: return "ok";
	case DANE_PARSE_NO_USABLE: return "no-usable-records";
	case DANE_PARSE_EMPTY: return "empty";
	case DANE_PARSE_NOMEM: return "no-memory";
	}
	return "unknown";
}

/* ---- matching ------------------------------------------------------------ */

const char *
dane_result_str(enum dane_result r)
{
	switch (r) {
	case DANE_MATCH_EE: return "match-ee";
	case DANE_MATCH_TA: return "match-ta";
	case DANE_NO_USABLE: return "no-usable-records";
	case DANE_NO_CHAIN: return "no-certificate";
	case DANE_BAD_CHAIN: return "bad-certificate";
	case DANE_MISMATCH: return "mismatch";
	case DANE_TA_CHAIN_INVALID: return "ta-chain-invalid";
	case DANE_TA_EXPIRED: return "ta-chain-expired";
	case DANE_TA_NAME_MISMATCH: return "ta-name-mismatch";
	case DANE_ERROR: return "error";
	}
	return "unknown";
}

bool
dane_result_ok(enum dane_result r)
{
	return r == DANE_MATCH_EE || r == DANE_MATCH_TA;
}

const char *
dane_result_tlsrpt(enum dane_result r)
{
	switch (r) {
	case DANE_MATCH_EE:
	case DANE_MATCH_TA:
		return NULL;
	case DANE_TA_NAME_MISMATCH:
		return "certificate-host-mismatch";
	case DANE_TA_EXPIRED:
		return "certificate-expired";
	case DANE_NO_USABLE:
	case DANE_MISMATCH:
		return "tlsa-invalid";
	default:
		return "validation-failure";
	}
}

/* One certificate of the chain, parsed once. */
struct dcert {
	const uint8_t *der;
	size_t len;
	X509 *x;            /* NULL if it does not parse */
	uint8_t *spki;      /* DER SubjectPublicKeyInfo, OPENSSL_malloc'd */
	size_t spki_len;
};

static bool
assoc_match(const struct dane_tlsa *t, const struct dcert *c)
{
	const uint8_t *in;
	size_t inlen;
	uint8_t md[SHA512_DIGEST_LENGTH];

	if (t->selector == DANE_SEL_CERT) {
		in = c->der;
		inlen = c->len;
	} else {
		if (c->spki == NULL)
			return false;
		in = c->spki;
		inlen = c->spki_len;
	}
	switch (t->mtype) {
	case DANE_MT_FULL:
		return t->len == inlen && memcmp(t->data, in, inlen) == 0;
	case DANE_MT_SHA256:
		SHA256(in, inlen, md);
		return CRYPTO_memcmp(md, t->data, SHA256_DIGEST_LENGTH) == 0;
	case DANE_MT_SHA512:
		SHA512(in, inlen, md);
		return CRYPTO_memcmp(md, t->data, SHA512_DIGEST_LENGTH) == 0;
	}
	return false;
}

static void
set_info(struct dane_match_info *info, int depth, const struct dane_tlsa *t)
{
	if (info == NULL)
		return;
	info->depth = depth;
	info->usage = t->usage;
	info->selector = t->selector;
	info->mtype = t->mtype;
}

/* Lower-case copy without a trailing dot; false if empty or too long. */
static bool
refname(const char *in, char *out, size_t cap)
{
	size_t n = strlen(in);

	if (n > 0 && in[n - 1] == '.')
		n--;
	if (n == 0 || n >= cap)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = in[i];
		out[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	out[n] = '\0';
	return true;
}

/*
 * Verify the chain from the leaf up to ta (chain position depth >= 1) with ta
 * as the only trust anchor, the other certificates the server sent as
 * untrusted intermediates, and the leaf's name against one of names.
 */
static enum dane_result
ta_verify(struct dcert *certs, size_t ncerts, size_t depth,
    const char *const *names, size_t nnames, time_t now,
    struct dane_match_info *info)
{
	enum dane_result res = DANE_ERROR;
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	STACK_OF(X509) *untrusted = sk_X509_new_null();
	X509_VERIFY_PARAM *param;
	char name[256];
	size_t i, added = 0;

	if (store == NULL || ctx == NULL || untrusted == NULL)
		goto out;
	if (!X509_STORE_add_cert(store, certs[depth].x))
		goto out;
	for (i = 1; i < ncerts; i++) {
		if (i == depth || certs[i].x == NULL)
			continue;
		if (!sk_X509_push(untrusted, certs[i].x))
			goto out;
		X509_up_ref(certs[i].x);
	}
	if (!X509_STORE_CTX_init(ctx, store, certs[0].x, untrusted))
		goto out;
	if (!X509_STORE_CTX_set_default(ctx, "ssl_server"))
		goto out;
	param = X509_STORE_CTX_get0_param(ctx);
	X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
	if (now != 0)
		X509_VERIFY_PARAM_set_time(param, now);
	X509_VERIFY_PARAM_set_hostflags(param,
	    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	for (i = 0; i < nnames && i < DANE_MAX_NAMES; i++) {
		if (!refname(names[i], name, sizeof(name)))
			continue;
		if (!(added == 0 ?
		    X509_VERIFY_PARAM_set1_host(param, name, strlen(name)) :
		    X509_VERIFY_PARAM_add1_host(param, name, strlen(name))))
			goto out;
		added++;
	}
	if (added == 0) {
		/* No name to check against: a TA match cannot authenticate. */
		res = DANE_TA_NAME_MISMATCH;
		goto out;
	}
	if (X509_verify_cert(ctx) == 1) {
		STACK_OF(X509) *built = X509_STORE_CTX_get0_chain(ctx);

		/* The anchor must be an issuer, never the leaf itself. */
		if (built == NULL || sk_X509_num(built) < 2) {
			res = DANE_TA_CHAIN_INVALID;
			goto out;
		}
		res = DANE_MATCH_TA;
		if (info != NULL) {
			const char *peer = X509_VERIFY_PARAM_get0_peername(param);
			snprintf(info->name, sizeof(info->name), "%s",
			    peer != NULL ? peer : "");
		}
		goto out;
	}
	switch (X509_STORE_CTX_get_error(ctx)) {
	case X509_V_ERR_HOSTNAME_MISMATCH:
		res = DANE_TA_NAME_MISMATCH;
		break;
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
		res = DANE_TA_EXPIRED;
		break;
	default:
		res = DANE_TA_CHAIN_INVALID;
	}
out:
	sk_X509_pop_free(untrusted, X509_free);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	return res;
}

/* Which TA failure says most: the name, then expiry, then the chain. */
static int
ta_fail_rank(enum dane_result r)
{
	switch (r) {
	case DANE_TA_NAME_MISMATCH: return 3;
	case DANE_TA_EXPIRED: return 2;
	case DANE_TA_CHAIN_INVALID: return 1;
	default: return 0;
	}
}

enum dane_result
dane_match(const struct dane_rrset *rrset, const struct dane_chain *chain,
    const char *const *names, size_t nnames, time_t now,
    struct dane_match_info *info)
{
	struct dcert certs[DANE_MAX_CHAIN];
	enum dane_result res = DANE_MISMATCH;
	size_t ncerts, i, d;

	if (info != NULL) {
		memset(info, 0, sizeof(*info));
		info->depth = -1;
	}
	if (rrset == NULL || rrset->n == 0)
		return DANE_NO_USABLE;
	if (chain == NULL || chain->n == 0)
		return DANE_NO_CHAIN;
	ncerts = chain->n < DANE_MAX_CHAIN ? chain->n : DANE_MAX_CHAIN;
	memset(certs, 0, sizeof(certs));
	for (i = 0; i < ncerts; i++) {
		const uint8_t *p = chain->der[i];
		int l;

		certs[i].der = chain->der[i];
		certs[i].len = chain->len[i];
		if (chain->len[i] == 0 || chain->len[i] > 1 << 20)
			continue;
		certs[i].x = d2i_X509(NULL, &p, (long)chain->len[i]);
		if (certs[i].x == NULL || p != chain->der[i] + chain->len[i]) {
			X509_free(certs[i].x);
			certs[i].x = NULL;
			continue;
		}
		l = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(certs[i].x),
		    &certs[i].spki);
		if (l <= 0) {
			certs[i].spki = NULL;
			X509_free(certs[i].x);
			certs[i].x = NULL;
			continue;
		}
		certs[i].spki_len = (size_t)l;
	}
	if (certs[0].x == NULL) {
		res = DANE_BAD_CHAIN;
		goto out;
	}

	/* DANE-EE: the leaf only. */
	for (i = 0; i < rrset->n; i++) {
		const struct dane_tlsa *t = &rrset->rec[i];

		if (t->usage == DANE_USAGE_EE && assoc_match(t, &certs[0])) {
			set_info(info, 0, t);
			res = DANE_MATCH_EE;
			goto out;
		}
	}

	/* DANE-TA: issuers the server sent, never a copy of the leaf. */
	for (d = 1; d < ncerts; d++) {
		if (certs[d].x == NULL || (certs[d].len == certs[0].len &&
		    memcmp(certs[d].der, certs[0].der, certs[0].len) == 0))
			continue;
		for (i = 0; i < rrset->n; i++) {
			const struct dane_tlsa *t = &rrset->rec[i];
			enum dane_result r;

			if (t->usage != DANE_USAGE_TA || !assoc_match(t, &certs[d]))
				continue;
			r = ta_verify(certs, ncerts, d, names, nnames, now, info);
			if (r == DANE_MATCH_TA) {
				set_info(info, (int)d, t);
				res = r;
				goto out;
			}
			if (r == DANE_ERROR) {
				res = r;
				goto out;
			}
			if (ta_fail_rank(r) > ta_fail_rank(res)) {
				res = r;
				set_info(info, (int)d, t);
			}
			break;  /* this certificate is checked; the next one */
		}
	}
out:
	for (i = 0; i < ncerts; i++) {
		X509_free(certs[i].x);
		OPENSSL_free(certs[i].spki);
	}
	return res;
}
