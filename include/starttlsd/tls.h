/*
 * tls: BoringSSL contexts and what we learn from a handshake. The only
 * module that converts BoringSSL's 1/0 returns into our 0/-1.
 */
#ifndef STARTTLSD_TLS_H
#define STARTTLSD_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

struct config;

/* What one handshake showed; empty strings where unknown. */
struct tls_info {
	char version[16];       /* "TLSv1.3" */
	char cipher[64];        /* "TLS_AES_256_GCM_SHA384" */
	char subject[256];      /* RFC 2253 */
	char issuer[256];
	char spki_sha256[65];   /* hex SHA-256 of the leaf's SubjectPublicKeyInfo */
	char verify[96];        /* "ok" or why the chain did not verify */
	bool verified;
	uint16_t vnum;          /* TLS1_2_VERSION, TLS1_3_VERSION */
	bool resumed;           /* an earlier session was resumed */
	uint8_t spki_raw[32];
	bool has_spki;
	char names[512];        /* DNS names (SAN, else CN), NUL-separated */
	size_t nnames;
};

/* Pointers to the names in info->names; returns how many (at most max). */
size_t tls_info_names(const struct tls_info *info, const char **out, size_t max);

/*
 * The context for the server (Internet) leg: TLS 1.2 (or cfg's minimum) to
 * 1.3, system CA bundle loaded so the chain result can be recorded; the
 * handshake does not fail on a bad chain (opportunistic TLS, RFC 7435).
 * Returns NULL with err filled on failure.
 */
SSL_CTX *tls_upstream_ctx_new(const struct config *cfg, char *err, size_t errlen);

/* The context for STARTTLS offered to LAN clients (client_cert/client_key). */
SSL_CTX *tls_client_ctx_new(const struct config *cfg, char *err, size_t errlen);

/*
 * A new SSL for one upstream connection. sni may be NULL (a transparent
 * session knows only the IP address). dst keys the client session cache:
 * a session (TLS 1.3 ticket) the same destination gave us before is
 * offered for resumption, which saves the server and us a full handshake.
 */
SSL *tls_upstream_new(SSL_CTX *ctx, const char *sni, const char *dst);

/* Did this connection resume a cached session? */
bool tls_resumed(SSL *ssl);

/* Fill out from a finished handshake. */
void tls_info_get(SSL *ssl, struct tls_info *out);

#endif
