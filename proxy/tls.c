/* tls: BoringSSL contexts, handshake facts (version, cipher, peer, SPKI). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pool.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "starttlsd/config.h"
#include "starttlsd/hash.h"
#include "starttlsd/tls.h"

static void
err_fill(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_get_error();
	char tmp[160];

	if (e != 0) {
		ERR_error_string_n(e, tmp, sizeof(tmp));
		snprintf(err, errlen, "%s: %s", what, tmp);
	} else {
		snprintf(err, errlen, "%s", what);
	}
	ERR_clear_error();
}

/* A file named by a configuration key: "ca_file: PATH: why". */
static void
err_fill_key(char *err, size_t errlen, const char *key, const char *path)
{
	char what[512];

	snprintf(what, sizeof(what), "%s: %s", key, path);
	err_fill(err, errlen, what);
}

/*
 * Client session cache: direct-mapped by destination ("198.51.100.25:25"),
 * bounded, per process. A slot keeps up to TLS_TICKETS sessions of one
 * destination, newest first: a TLS 1.3 server sends several tickets per
 * handshake, and concurrent connections to one destination can then all
 * resume. Each is used once (taken out when offered), as TLS 1.3
 * recommends (RFC 8446 C.4); expired ones are dropped. Beyond
 * TLS_CACHE_MAX sessions in all, a destination keeps one more only in
 * place of its oldest, so many destinations cost one each.
 */
#define TLS_CACHE_SLOTS 1024
#define TLS_TICKETS 32
#define TLS_CACHE_MAX 2048
#define TLS_KEY_MAX 64

struct tls_cache_slot {
	char key[TLS_KEY_MAX];
	SSL_SESSION *sess[TLS_TICKETS]; /* [0] is the newest */
	size_t n;
};
static struct tls_cache_slot tls_cache[TLS_CACHE_SLOTS];
static size_t tls_cache_total;
static int tls_key_index = -1;

static struct tls_cache_slot *
cache_slot(const char *key)
{
	return &tls_cache[fnv1a_str(FNV1A_INIT, key) % TLS_CACHE_SLOTS];
}

/* Drop entry i of the slot (0: the newest). */
static void
cache_drop(struct tls_cache_slot *slot, size_t i)
{
	SSL_SESSION_free(slot->sess[i]);
	memmove(&slot->sess[i], &slot->sess[i + 1],
	    (slot->n - i - 1) * sizeof(slot->sess[0]));
	slot->sess[--slot->n] = NULL;
	tls_cache_total--;
}

/*
 * The slot for key, holding key's sessions only and none expired; a slot
 * another destination held is emptied.
 */
static struct tls_cache_slot *
cache_get(const char *key)
{
	struct tls_cache_slot *slot = cache_slot(key);
	uint64_t now = (uint64_t)time(NULL);

	if (strcmp(slot->key, key) != 0) {
		while (slot->n > 0)
			cache_drop(slot, slot->n - 1);
		snprintf(slot->key, sizeof(slot->key), "%s", key);
	}
	for (size_t i = slot->n; i-- > 0;) {
		SSL_SESSION *x = slot->sess[i];
		if (SSL_SESSION_get_time(x) + SSL_SESSION_get_timeout(x) <= now)
			cache_drop(slot, i);
	}
	return slot;
}

/* BoringSSL hands us each new session; we keep it (return 1: ours). */
static int
tls_new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	const char *key = SSL_get_ex_data(ssl, tls_key_index);
	struct tls_cache_slot *slot;

	if (key == NULL || strlen(key) >= TLS_KEY_MAX ||
	    !SSL_SESSION_is_resumable(sess))
		return 0;
	slot = cache_get(key);
	if (slot->n == TLS_TICKETS ||
	    (slot->n > 0 && tls_cache_total >= TLS_CACHE_MAX))
		cache_drop(slot, slot->n - 1); /* the oldest */
	memmove(&slot->sess[1], &slot->sess[0], slot->n * sizeof(slot->sess[0]));
	slot->sess[0] = sess;
	slot->n++;
	tls_cache_total++;
	return 1;
}

static void
tls_key_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int index,
    long argl, void *argp)
{
	(void)parent;
	(void)ad;
	(void)index;
	(void)argl;
	(void)argp;
	free(ptr);
}

SSL_CTX *
tls_upstream_ctx_new(const struct config *cfg, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());

	if (ctx == NULL) {
		err_fill(err, errlen, "SSL_CTX_new");
		return NULL;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, (uint16_t)cfg->tls_min_version) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION)) {
		err_fill(err, errlen, "tls_min_version");
		goto fail;
	}
	/*
	 * Verify and record, never refuse here: with SSL_VERIFY_NONE BoringSSL
	 * still checks the chain and keeps the result for
	 * SSL_get_verify_result(). Policy decides what a bad chain means.
	 */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (cfg->ca_file != NULL &&
	    !SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL)) {
		err_fill_key(err, errlen, "ca_file", cfg->ca_file);
		goto fail;
	}
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* Resumption: sessions are kept by destination, see tls_upstream_new. */
	if (tls_key_index < 0)
		tls_key_index = SSL_get_ex_new_index(0, NULL, NULL, NULL,
		    tls_key_free);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL);
	SSL_CTX_sess_set_new_cb(ctx, tls_new_session_cb);
	/*
	 * Peer certificates in one pool: the chains of a destination's
	 * connections and cached sessions are kept once, not per session.
	 * Never freed (BoringSSL: it must outlive every session).
	 */
	{
		static CRYPTO_BUFFER_POOL *pool;
		if (pool == NULL)
			pool = CRYPTO_BUFFER_POOL_new();
		if (pool != NULL)
			SSL_CTX_set0_buffer_pool(ctx, pool);
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *
tls_client_ctx_new(const struct config *cfg, char *err, size_t errlen)
{
	SSL_CTX *ctx;

	if (cfg->client_cert == NULL)
		return NULL;
	if ((ctx = SSL_CTX_new(TLS_method())) == NULL) {
		err_fill(err, errlen, "SSL_CTX_new");
		return NULL;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION)) {
		err_fill(err, errlen, "client TLS versions");
		goto fail;
	}
	if (!SSL_CTX_use_certificate_chain_file(ctx, cfg->client_cert)) {
		err_fill_key(err, errlen, "client_cert", cfg->client_cert);
		goto fail;
	}
	if (!SSL_CTX_use_PrivateKey_file(ctx, cfg->client_key, SSL_FILETYPE_PEM)) {
		err_fill_key(err, errlen, "client_key", cfg->client_key);
		goto fail;
	}
	if (!SSL_CTX_check_private_key(ctx)) {
		err_fill(err, errlen, "client_key does not match client_cert");
		goto fail;
	}
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

bool
tls_resumed(SSL *ssl)
{
	return SSL_session_reused(ssl) == 1;
}

SSL *
tls_upstream_new(SSL_CTX *ctx, const char *sni, const char *dst)
{
	SSL *ssl = SSL_new(ctx);

	if (ssl == NULL)
		return NULL;
	if (dst != NULL && tls_key_index >= 0) {
		struct tls_cache_slot *slot;
		char *key = strdup(dst);

		if (key != NULL && !SSL_set_ex_data(ssl, tls_key_index, key))
			free(key);
		if (strlen(dst) < TLS_KEY_MAX &&
		    (slot = cache_get(dst))->n > 0) {
			/* The newest: the longest left to live. Used once. */
			SSL_set_session(ssl, slot->sess[0]);
			cache_drop(slot, 0);
		}
	}
	if (sni != NULL) {
		/* Name check recorded alongside the chain (smarthost mode). */
		if (!SSL_set_tlsext_host_name(ssl, sni) ||
		    !X509_VERIFY_PARAM_set1_host(SSL_get0_param(ssl), sni,
		    strlen(sni))) {
			SSL_free(ssl);
			return NULL;
		}
	}
	return ssl;
}

static void
name_str(X509_NAME *name, char *out, size_t cap)
{
	BIO *b = BIO_new(BIO_s_mem());
	const uint8_t *p;
	size_t n;

	out[0] = '\0';
	if (b == NULL)
		return;
	if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0 &&
	    BIO_mem_contents(b, &p, &n)) {
		if (n >= cap)
			n = cap - 1;
		memcpy(out, p, n);
		out[n] = '\0';
	}
	BIO_free(b);
}

static void
add_name(struct tls_info *out, const char *name, size_t len)
{
	size_t used = 0;

	for (size_t i = 0; i < out->nnames; i++)
		used += strlen(out->names + used) + 1;
	/* Names with a NUL inside are forgeries: never compare them. */
	if (len == 0 || memchr(name, '\0', len) != NULL ||
	    used + len + 1 > sizeof(out->names))
		return;
	memcpy(out->names + used, name, len);
	out->names[used + len] = '\0';
	out->nnames++;
}

/* The DNS names a policy's mx patterns are checked against. */
static void
collect_names(X509 *peer, struct tls_info *out)
{
	GENERAL_NAMES *sans = X509_get_ext_d2i(peer, NID_subject_alt_name,
	    NULL, NULL);

	if (sans != NULL) {
		for (size_t i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
			const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
			if (gn->type == GEN_DNS)
				add_name(out, (const char *)ASN1_STRING_get0_data(
				    gn->d.dNSName), (size_t)ASN1_STRING_length(
				    gn->d.dNSName));
		}
		GENERAL_NAMES_free(sans);
	}
	if (out->nnames == 0) {
		char cn[256];
		int n = X509_NAME_get_text_by_NID(X509_get_subject_name(peer),
		    NID_commonName, cn, sizeof(cn));
		if (n > 0)
			add_name(out, cn, (size_t)n);
	}
}

size_t
tls_info_names(const struct tls_info *info, const char **out, size_t max)
{
	size_t off = 0, n = 0;

	for (size_t i = 0; i < info->nnames && n < max; i++) {
		out[n++] = info->names + off;
		off += strlen(info->names + off) + 1;
	}
	return n;
}

void
tls_info_get(SSL *ssl, struct tls_info *out)
{
	const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);
	X509 *peer = SSL_get_peer_certificate(ssl);
	long vr;

	memset(out, 0, sizeof(*out));
	snprintf(out->version, sizeof(out->version), "%s", SSL_get_version(ssl));
	out->vnum = SSL_version(ssl);
	out->resumed = SSL_session_reused(ssl) == 1;
	if (cipher != NULL)
		snprintf(out->cipher, sizeof(out->cipher), "%s",
		    SSL_CIPHER_standard_name(cipher));
	if (peer == NULL) {
		snprintf(out->verify, sizeof(out->verify), "no-certificate");
		return;
	}
	name_str(X509_get_subject_name(peer), out->subject, sizeof(out->subject));
	name_str(X509_get_issuer_name(peer), out->issuer, sizeof(out->issuer));

	uint8_t *der = NULL;
	int dlen = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(peer), &der);
	if (dlen > 0) {
		uint8_t md[SHA256_DIGEST_LENGTH];
		SHA256(der, (size_t)dlen, md);
		for (size_t i = 0; i < sizeof(md); i++)
			snprintf(out->spki_sha256 + 2 * i, 3, "%02x", md[i]);
		memcpy(out->spki_raw, md, sizeof(md));
		out->has_spki = true;
		OPENSSL_free(der);
	}
	collect_names(peer, out);
	vr = SSL_get_verify_result(ssl);
	out->verified = vr == X509_V_OK;
	snprintf(out->verify, sizeof(out->verify), "%s",
	    out->verified ? "ok" : X509_verify_cert_error_string(vr));
	X509_free(peer);
}
