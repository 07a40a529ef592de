/*
 * https: a small HTTPS/1.1 client on BoringSSL and libev, for the MTA-STS
 * policy fetch (GET, RFC 8461 3.3) and TLS-RPT reports (POST, RFC 8460 5.3).
 * Not a general HTTP client: one request per connection ("Connection:
 * close"), no redirects (a 3xx is a result like any non-200), no cookies, no
 * proxies, a hard cap on the body, one timeout for the whole exchange.
 * Content-Length and chunked bodies are read; anything else ends at close.
 *
 * The server's chain is verified against ca_file (WebPKI) and its name
 * against host (X509_VERIFY_PARAM_set1_host, SNI = host), TLS 1.2 at least.
 * It never links OpenSSL (BoringSSL only) and never blocks: name lookup goes
 * through resolver.h unless addr is given.
 */
#ifndef STARTTLSD_HTTPS_H
#define STARTTLSD_HTTPS_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct resolver;

#define HTTPS_BODY_MAX_DEFAULT 65536   /* RFC 8461 3.3: 64 KiB */
#define HTTPS_TIMEOUT_MS_DEFAULT 60000

enum https_result {
	HTTPS_OK,            /* a complete response arrived (any status: check it) */
	HTTPS_DNS,           /* the host has no address, or the lookup failed */
	HTTPS_CONNECT,       /* no address accepted a connection */
	HTTPS_TLS,           /* handshake failed (not a certificate problem) */
	HTTPS_CERT_UNTRUSTED,  /* chain does not verify to ca_file */
	HTTPS_CERT_NAME,     /* chain verifies, name does not match host */
	HTTPS_CERT_EXPIRED,  /* a certificate expired or not yet valid */
	HTTPS_PROTOCOL,      /* not HTTP/1.x, bad header, bad chunk */
	HTTPS_TOO_LARGE,     /* body (or header) over the cap */
	HTTPS_TIMEOUT,
	HTTPS_NOMEM,
};
const char *https_result_str(enum https_result r);

struct https_req {
	const char *method;        /* "GET" or "POST" */
	const char *host;          /* name for SNI, Host: and the certificate check */
	uint16_t port;             /* 0: 443 */
	const char *addr;          /* numeric address to dial; NULL: resolve host (A, AAAA) */
	const char *path;          /* "/.well-known/mta-sts.txt" */
	const char *content_type;  /* POST: "application/tlsrpt+gzip" */
	const uint8_t *body;       /* POST body, borrowed until the callback */
	size_t body_len;
	size_t max_body;           /* 0: HTTPS_BODY_MAX_DEFAULT */
	unsigned timeout_ms;       /* 0: HTTPS_TIMEOUT_MS_DEFAULT */
	const char *ca_file;       /* NULL: /etc/ssl/certs/ca-certificates.crt */
};

struct https_resp {
	enum https_result result;
	int status;                /* HTTPS_OK: 200, 301, 404, ... */
	char content_type[128];    /* as sent, "" if none */
	const uint8_t *body;       /* valid during the callback only */
	size_t len;
	char err[256];             /* not OK: what went wrong, for the log */
};

typedef void (*https_cb)(void *arg, const struct https_resp *resp);

struct https_client;

/*
 * Start a request; cb runs exactly once, later (never from inside this
 * call), unless https_cancel runs first. NULL (and nothing called) if it
 * cannot start. res may be NULL when req->addr is given.
 */
struct https_client *https_start(struct ev_loop *loop, struct resolver *res,
    const struct https_req *req, https_cb cb, void *arg);

/* Stop a request: no callback, everything freed. */
void https_cancel(struct https_client *c);

/* True for a Content-Type whose media type is text/plain (parameters ignored). */
int https_type_is(const char *content_type, const char *media_type);

#endif
