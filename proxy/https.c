/*
 * https: one HTTPS/1.1 request on BoringSSL and libev (include/starttlsd/https.h).
 *
 * One strategy function, https_pump(), runs after every event and moves the
 * client through its states: RESOLVE (A and AAAA at once, A tried first),
 * CONNECT (each address in turn), HANDSHAKE, WRITE, READ. Every ending goes
 * through https_finish(), which calls back once and frees everything. One
 * ev_timer serves for everything: it is armed for the earlier of the
 * request's deadline and, while connecting with addresses left, the current
 * attempt's own bound (so one black-holed address does not eat the whole
 * budget).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "starttlsd/https.h"
#include "starttlsd/resolver.h"

#define HTTPS_MAGIC 0x48545053u        /* "HTPS" */
#define HTTPS_DEFAULT_CA "/etc/ssl/certs/ca-certificates.crt"
#define HTTPS_HEAD_MAX 16384           /* status line and headers */
#define HTTPS_MAX_ADDRS 8              /* addresses tried */
#define HTTPS_ATTEMPT_S 10.0           /* one connect attempt, when others remain */
#define HTTPS_CHUNK_LINE_MAX 1024      /* a chunk-size line, a trailer line */
#define HTTPS_REQ_BODY_MAX (64u << 20) /* a POST body */
#define HTTPS_INTERIM_MAX 8            /* 1xx responses skipped */

enum https_state {
	ST_RESOLVE,
	ST_CONNECT,
	ST_HANDSHAKE,
	ST_WRITE,
	ST_READ,
};

enum body_mode { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_CLOSE };

enum chunk_state { CH_SIZE, CH_DATA, CH_DATA_END, CH_TRAILER };

/* Verification problems seen by the verify callback (all of them). */
#define VF_UNTRUSTED 1u
#define VF_EXPIRED 2u
#define VF_NAME 4u

struct https_client {
	uint32_t magic;
	struct ev_loop *loop;
	struct resolver *res;
	https_cb cb;
	void *arg;
	enum https_state state;
	bool in_cb;               /* inside the callback: cancel is a no-op */
	bool done;                /* a result is waiting for the deferred call */

	char host[256];
	uint16_t port;
	size_t max_body;
	double deadline;          /* ev_now() based */
	double attempt_deadline;  /* 0: none */

	/* resolve */
	uint64_t qid[2];          /* A, AAAA */
	bool qdone[2];
	char dnserr[2][96];
	struct sockaddr_storage addrs[HTTPS_MAX_ADDRS];
	socklen_t addrlens[HTTPS_MAX_ADDRS];
	size_t naddrs_v4, naddrs_v6;
	struct sockaddr_storage v6[HTTPS_MAX_ADDRS];
	size_t naddrs, next_addr;
	char connerr[160];

	int fd;
	ev_io io;
	ev_timer timer;
	SSL_CTX *ctx;
	SSL *ssl;
	unsigned vflags;
	int vfirst;               /* first X509_V_ERR seen */

	/* request */
	char *out;
	size_t out_len, out_off;

	/* response */
	char *head;               /* HTTPS_HEAD_MAX + 1 */
	size_t head_len;
	unsigned interim;
	int status;
	char ctype[128];
	enum body_mode bmode;
	uint64_t clen;
	uint8_t *body;            /* grows up to max_body */
	size_t blen, bcap;
	enum chunk_state ch;
	uint64_t ch_left;
	char chline[HTTPS_CHUNK_LINE_MAX + 1];
	size_t chline_len;

	struct https_resp resp;   /* the result, once known */
};

const char *
https_result_str(enum https_result r)
{
	switch (r) {
	case HTTPS_OK: return "ok";
	case HTTPS_DNS: return "dns";
	case HTTPS_CONNECT: return "connect";
	case HTTPS_TLS: return "tls";
	case HTTPS_CERT_UNTRUSTED: return "cert-untrusted";
	case HTTPS_CERT_NAME: return "cert-name";
	case HTTPS_CERT_EXPIRED: return "cert-expired";
	case HTTPS_PROTOCOL: return "protocol";
	case HTTPS_TOO_LARGE: return "too-large";
	case HTTPS_TIMEOUT: return "timeout";
	case HTTPS_NOMEM: return "nomem";
	}
	return "?";
}

int
https_type_is(const char *content_type, const char *media_type)
{
	const char *p = content_type, *e;
	size_t n, m;

	if (content_type == NULL || media_type == NULL)
		return 0;
	while (*p == ' ' || *p == '\t')
		p++;
	for (e = p; *e != '\0' && *e != ';' && *e != ' ' && *e != '\t'; e++)
		;
	n = (size_t)(e - p);
	m = strlen(media_type);
	if (n != m || n == 0 || strncasecmp(p, media_type, n) != 0)
		return 0;
	while (*e == ' ' || *e == '\t')
		e++;
	return *e == '\0' || *e == ';';
}

/* ---- the ending -------------------------------------------------------------- */

static void
https_release(struct https_client *c)
{
	if (c->res != NULL)
		for (int i = 0; i < 2; i++)
			if (c->qid[i] != 0) {
				resolver_cancel(c->res, c->qid[i]);
				c->qid[i] = 0;
			}
	ev_timer_stop(c->loop, &c->timer);
	if (c->fd >= 0) {
		ev_io_stop(c->loop, &c->io);
		close(c->fd);
		c->fd = -1;
	}
	SSL_free(c->ssl);
	c->ssl = NULL;
	SSL_CTX_free(c->ctx);
	c->ctx = NULL;
	free(c->out);
	free(c->head);
	free(c->body);
	c->out = c->head = NULL;
	c->body = NULL;
	c->magic = 0;
	free(c);
}

/* Call back with c->resp (and the body) and free c. */
static void
https_deliver(struct https_client *c)
{
	c->resp.body = c->body != NULL ? c->body : (const uint8_t *)"";
	c->resp.len = c->blen;
	c->in_cb = true;
	c->cb(c->arg, &c->resp);
	c->in_cb = false;
	https_release(c);
}

static void
on_deferred(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct https_client *c = w->data;

	(void)loop;
	(void)revents;
	if (c->magic != HTTPS_MAGIC)
		abort();
	https_deliver(c);
}

/*
 * The single ending: result r with a printf-style why. Stops all I/O at
 * once; the callback runs on the next loop turn (never inside https_start).
 */
static void __attribute__((format(printf, 3, 4)))
https_finish(struct https_client *c, enum https_result r, const char *fmt, ...)
{
	va_list ap;

	if (c->done)
		return;
	c->done = true;
	c->resp.result = r;
	c->resp.status = c->status;
	memcpy(c->resp.content_type, c->ctype, sizeof(c->resp.content_type));
	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(c->resp.err, sizeof(c->resp.err), fmt, ap);
		va_end(ap);
	}
	if (r != HTTPS_OK)
		c->blen = 0;
	if (c->res != NULL)
		for (int i = 0; i < 2; i++)
			if (c->qid[i] != 0) {
				resolver_cancel(c->res, c->qid[i]);
				c->qid[i] = 0;
			}
	if (c->fd >= 0) {
		ev_io_stop(c->loop, &c->io);
		close(c->fd);
		c->fd = -1;
	}
	/*
	 * Always on the next loop turn, from a frame of our own: the caller
	 * (inside https_start, or deep in https_pump) may still touch c after
	 * this returns, and the user's callback may free what it likes.
	 */
	ev_timer_stop(c->loop, &c->timer);
	ev_timer_init(&c->timer, on_deferred, 0., 0.);
	c->timer.data = c;
	ev_timer_start(c->loop, &c->timer);
}

static void
tls_err(char *out, size_t outlen, const char *what)
{
	unsigned long e = ERR_get_error();
	char tmp[160];

	if (e != 0) {
		ERR_error_string_n(e, tmp, sizeof(tmp));
		snprintf(out, outlen, "%s: %s", what, tmp);
	} else {
		snprintf(out, outlen, "%s", what);
	}
	ERR_clear_error();
}

/* ---- timer ----------------------------------------------------------------- */

static void https_pump(struct https_client *c, int revents);
static void https_connect_next(struct https_client *c);

static void
timer_arm(struct https_client *c)
{
	double at = c->deadline;
	double now = ev_now(c->loop);

	if (c->done)
		return;
	if (c->attempt_deadline > 0 && c->attempt_deadline < at)
		at = c->attempt_deadline;
	ev_timer_stop(c->loop, &c->timer);
	ev_timer_set(&c->timer, at > now ? at - now : 0., 0.);
	ev_timer_start(c->loop, &c->timer);
}

static void
on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct https_client *c = w->data;
	double now = ev_now(loop);

	(void)revents;
	if (c->magic != HTTPS_MAGIC)
		abort();
	if (now + 0.0005 < c->deadline && c->attempt_deadline > 0 &&
	    c->state == ST_CONNECT) {
		/* this address is slow: the next one */
		snprintf(c->connerr, sizeof(c->connerr), "connect timed out");
		https_connect_next(c);
		return;
	}
	switch (c->state) {
	case ST_RESOLVE:
		https_finish(c, HTTPS_TIMEOUT, "timeout resolving %s", c->host);
		break;
	case ST_CONNECT:
		https_finish(c, HTTPS_TIMEOUT, "timeout connecting");
		break;
	case ST_HANDSHAKE:
		https_finish(c, HTTPS_TIMEOUT, "timeout in the TLS handshake");
		break;
	default:
		https_finish(c, HTTPS_TIMEOUT, "timeout after %zu response bytes",
		    c->head_len + c->blen);
	}
}

/* ---- connect --------------------------------------------------------------- */

static void
on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct https_client *c = w->data;

	(void)loop;
	if (c->magic != HTTPS_MAGIC)
		abort();
	https_pump(c, revents);
}

static void
io_want(struct https_client *c, int events)
{
	if ((c->io.events & (EV_READ | EV_WRITE)) == events &&
	    ev_is_active(&c->io))
		return;
	ev_io_stop(c->loop, &c->io);
	ev_io_set(&c->io, c->fd, events);
	ev_io_start(c->loop, &c->io);
}

static void
addr_str(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
	char a[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr,
		    a, sizeof(a));
	else
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr,
		    a, sizeof(a));
	snprintf(out, outlen, "%s", a);
}

/* Try the next address; HTTPS_CONNECT when none is left. */
static void
https_connect_next(struct https_client *c)
{
	if (c->fd >= 0) {
		ev_io_stop(c->loop, &c->io);
		close(c->fd);
		c->fd = -1;
	}
	c->state = ST_CONNECT;
	while (c->next_addr < c->naddrs) {
		struct sockaddr_storage *ss = &c->addrs[c->next_addr];
		socklen_t sl = c->addrlens[c->next_addr];
		char a[INET6_ADDRSTRLEN];
		int fd;

		c->next_addr++;
		addr_str(ss, a, sizeof(a));
		fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, IPPROTO_TCP);
		if (fd < 0) {
			snprintf(c->connerr, sizeof(c->connerr), "%s: socket: %s",
			    a, strerror(errno));
			continue;
		}
		if (connect(fd, (struct sockaddr *)ss, sl) != 0 &&
		    errno != EINPROGRESS) {
			snprintf(c->connerr, sizeof(c->connerr), "%s: %s", a,
			    strerror(errno));
			close(fd);
			continue;
		}
		c->fd = fd;
		ev_io_init(&c->io, on_io, fd, EV_WRITE);
		c->io.data = c;
		ev_io_start(c->loop, &c->io);
		c->attempt_deadline = c->next_addr < c->naddrs ?
		    ev_now(c->loop) + HTTPS_ATTEMPT_S : 0;
		timer_arm(c);
		return;
	}
	https_finish(c, HTTPS_CONNECT, "%s port %u: %s", c->host, c->port,
	    c->connerr[0] ? c->connerr : "no address");
}

/* ---- resolve --------------------------------------------------------------- */

static void
on_dns(void *arg, const struct res_answer *a, int which)
{
	struct https_client *c = arg;
	int type = which == 0 ? RES_T_A : RES_T_AAAA;

	if (c->magic != HTTPS_MAGIC)
		abort();
	c->qid[which] = 0;
	c->qdone[which] = true;
	if (a->status == RES_SECURE || a->status == RES_INSECURE) {
		for (size_t i = 0; i < a->nrr; i++) {
			if (type == RES_T_A && a->rdlen[i] == 4 &&
			    c->naddrs_v4 < HTTPS_MAX_ADDRS) {
				struct sockaddr_in *sin =
				    (struct sockaddr_in *)&c->addrs[c->naddrs_v4];
				memset(sin, 0, sizeof(*sin));
				sin->sin_family = AF_INET;
				sin->sin_port = htons(c->port);
				memcpy(&sin->sin_addr, a->rdata[i], 4);
				c->addrlens[c->naddrs_v4++] = sizeof(*sin);
			} else if (type == RES_T_AAAA && a->rdlen[i] == 16 &&
			    c->naddrs_v6 < HTTPS_MAX_ADDRS) {
				struct sockaddr_in6 *sin6 =
				    (struct sockaddr_in6 *)&c->v6[c->naddrs_v6++];
				memset(sin6, 0, sizeof(*sin6));
				sin6->sin6_family = AF_INET6;
				sin6->sin6_port = htons(c->port);
				memcpy(&sin6->sin6_addr, a->rdata[i], 16);
			}
		}
		if (a->nrr == 0)
			snprintf(c->dnserr[which], sizeof(c->dnserr[which]),
			    "%s %s", which == 0 ? "A" : "AAAA",
			    a->nxdomain ? "nxdomain" : "nodata");
	} else {
		snprintf(c->dnserr[which], sizeof(c->dnserr[which]), "%s %s%s%s",
		    which == 0 ? "A" : "AAAA", res_status_str(a->status),
		    a->why ? " " : "", a->why ? a->why : "");
	}
	if (!c->qdone[0] || !c->qdone[1])
		return;
	/* Both answered: IPv4 first, then IPv6, at most HTTPS_MAX_ADDRS. */
	c->naddrs = c->naddrs_v4;
	for (size_t i = 0; i < c->naddrs_v6 && c->naddrs < HTTPS_MAX_ADDRS; i++) {
		c->addrs[c->naddrs] = c->v6[i];
		c->addrlens[c->naddrs++] = sizeof(struct sockaddr_in6);
	}
	if (c->naddrs == 0) {
		https_finish(c, HTTPS_DNS, "%s: no address (%s; %s)", c->host,
		    c->dnserr[0][0] ? c->dnserr[0] : "A none",
		    c->dnserr[1][0] ? c->dnserr[1] : "AAAA none");
		return;
	}
	https_connect_next(c);
}

static void on_dns_a(void *arg, const struct res_answer *a) { on_dns(arg, a, 0); }
static void on_dns_aaaa(void *arg, const struct res_answer *a) { on_dns(arg, a, 1); }

/* A numeric address (v4 or v6) with our port into addrs[0]; -1 if not numeric. */
static int
addr_numeric(struct https_client *c, const char *s)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&c->addrs[0];
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&c->addrs[0];

	memset(&c->addrs[0], 0, sizeof(c->addrs[0]));
	if (inet_pton(AF_INET, s, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(c->port);
		c->addrlens[0] = sizeof(*sin);
	} else if (inet_pton(AF_INET6, s, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(c->port);
		c->addrlens[0] = sizeof(*sin6);
	} else {
		return -1;
	}
	c->naddrs = 1;
	return 0;
}

/* ---- TLS ------------------------------------------------------------------- */

static int https_ex_index = -1;

/*
 * Record every verification problem and let the handshake go on: the
 * result is decided after it (before a byte of the request is sent), so an
 * expired and misnamed certificate is reported as expired, not as whichever
 * check happened to run first.
 */
static int
verify_cb(int ok, X509_STORE_CTX *store)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(store,
	    SSL_get_ex_data_X509_STORE_CTX_idx());
	struct https_client *c = ssl ? SSL_get_ex_data(ssl, https_ex_index) : NULL;
	int e;

	if (ok || c == NULL)
		return ok;
	e = X509_STORE_CTX_get_error(store);
	if (c->vfirst == X509_V_OK)
		c->vfirst = e;
	switch (e) {
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
		c->vflags |= VF_EXPIRED;
		break;
	case X509_V_ERR_HOSTNAME_MISMATCH:
		c->vflags |= VF_NAME;
		break;
	default:
		c->vflags |= VF_UNTRUSTED;
	}
	return 1;
}

/*
 * A verification problem as a result (finished): untrusted over expired
 * over name. False if there was none.
 */
static bool
verify_failed(struct https_client *c, bool handshake_done)
{
	const char *why = X509_verify_cert_error_string(c->vfirst);

	/* belt and braces: a finished handshake must have verified */
	if (handshake_done && c->vflags == 0 &&
	    SSL_get_verify_result(c->ssl) != X509_V_OK) {
		c->vfirst = (int)SSL_get_verify_result(c->ssl);
		why = X509_verify_cert_error_string(c->vfirst);
		c->vflags |= VF_UNTRUSTED;
	}
	if (c->vflags & VF_UNTRUSTED)
		https_finish(c, HTTPS_CERT_UNTRUSTED, "%s: certificate not "
		    "trusted: %s", c->host, why);
	else if (c->vflags & VF_EXPIRED)
		https_finish(c, HTTPS_CERT_EXPIRED, "%s: certificate expired or "
		    "not yet valid: %s", c->host, why);
	else if (c->vflags & VF_NAME)
		https_finish(c, HTTPS_CERT_NAME, "%s: certificate name does not "
		    "match", c->host);
	else
		return false;
	return true;
}

static int
tls_setup(struct https_client *c, const char *ca_file)
{
	c->ctx = SSL_CTX_new(TLS_method());
	if (c->ctx == NULL)
		return -1;
	if (!SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_max_proto_version(c->ctx, TLS1_3_VERSION))
		return -1;
	if (!SSL_CTX_load_verify_locations(c->ctx, ca_file, NULL))
		return -1;
	if (https_ex_index < 0)
		https_ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if (https_ex_index < 0)
		return -1;
	return 0;
}

static int
tls_start(struct https_client *c)
{
	c->ssl = SSL_new(c->ctx);
	if (c->ssl == NULL ||
	    !SSL_set_ex_data(c->ssl, https_ex_index, c) ||
	    !SSL_set_tlsext_host_name(c->ssl, c->host) ||
	    !SSL_set1_host(c->ssl, c->host) ||
	    !SSL_set_fd(c->ssl, c->fd))
		return -1;
	SSL_set_verify(c->ssl, SSL_VERIFY_PEER, verify_cb);
	SSL_set_connect_state(c->ssl);
	return 0;
}

/* ---- the response ---------------------------------------------------------- */

/* Body bytes: append under the cap; -1 (finished) when over it. */
static int
body_add(struct https_client *c, const uint8_t *p, size_t n)
{
	if (n > c->max_body - c->blen) {
		https_finish(c, HTTPS_TOO_LARGE, "body over %zu bytes",
		    c->max_body);
		return -1;
	}
	if (c->blen + n > c->bcap) {
		/* grow by doubling, up to the cap: a small policy costs little */
		size_t cap = c->bcap ? c->bcap : 4096;
		uint8_t *nb;

		while (cap < c->blen + n)
			cap *= 2;
		if (cap > c->max_body)
			cap = c->max_body;
		if ((nb = realloc(c->body, cap + 1)) == NULL) {
			https_finish(c, HTTPS_NOMEM, "out of memory");
			return -1;
		}
		c->body = nb;
		c->bcap = cap;
	}
	if (n > 0)
		memcpy(c->body + c->blen, p, n);
	c->blen += n;
	return 0;
}

/* Header value starting at v (after the colon), trimmed, into out. */
static void
hdr_value(const char *v, const char *end, char *out, size_t outlen)
{
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		end--;
	snprintf(out, outlen, "%.*s", (int)(end - v), v);
}

/* Does the comma list val's last element equal "chunked"? Any other coding fails. */
static int
te_chunked(const char *val)
{
	const char *last = strrchr(val, ',');

	last = last ? last + 1 : val;
	while (*last == ' ' || *last == '\t')
		last++;
	return strcasecmp(last, "chunked") == 0 && strchr(val, ',') == NULL;
}

/*
 * The head in c->head[0..hlen) (ending with its empty line) is parsed:
 * status, Content-Type, Content-Length, Transfer-Encoding. 0, 1 for a 1xx
 * to skip, or -1 (finished).
 */
static int
head_parse(struct https_client *c, size_t hlen)
{
	char *p = c->head, *end = c->head + hlen, *eol;
	bool have_len = false, chunked = false;
	char val[256];

	/* status line: HTTP/1.x SP 3DIGIT [SP reason] */
	eol = memchr(p, '\n', (size_t)(end - p));
	if (eol == NULL || eol - p < 12 || strncmp(p, "HTTP/1.", 7) != 0 ||
	    (p[7] != '0' && p[7] != '1') || p[8] != ' ' ||
	    p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' ||
	    p[11] < '0' || p[11] > '9' ||
	    (p[12] != ' ' && p[12] != '\r' && p[12] != '\n')) {
		https_finish(c, HTTPS_PROTOCOL, "bad status line");
		return -1;
	}
	c->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	c->ctype[0] = '\0';
	for (p = eol + 1; p < end; p = eol + 1) {
		char *colon;
		size_t nlen;

		eol = memchr(p, '\n', (size_t)(end - p));
		if (eol == NULL)
			break;
		if (eol == p || (eol == p + 1 && p[0] == '\r'))
			break; /* the empty line */
		if (memchr(p, '\0', (size_t)(eol - p)) != NULL) {
			https_finish(c, HTTPS_PROTOCOL, "NUL in a header");
			return -1;
		}
		if (*p == ' ' || *p == '\t') {
			/* obsolete line folding (RFC 9112 5.2): refused */
			https_finish(c, HTTPS_PROTOCOL, "folded header line");
			return -1;
		}
		colon = memchr(p, ':', (size_t)(eol - p));
		if (colon == NULL || colon == p) {
			https_finish(c, HTTPS_PROTOCOL, "bad header line");
			return -1;
		}
		nlen = (size_t)(colon - p);
		for (size_t i = 0; i < nlen; i++)
			if (p[i] == ' ' || p[i] == '\t') {
				https_finish(c, HTTPS_PROTOCOL, "bad header name");
				return -1;
			}
		hdr_value(colon + 1, eol, val, sizeof(val));
		if (nlen == 12 && strncasecmp(p, "Content-Type", 12) == 0) {
			/* kept whole or cut at the buffer's end */
			size_t vl = strnlen(val, sizeof(c->ctype) - 1);

			memcpy(c->ctype, val, vl);
			c->ctype[vl] = '\0';
		} else if (nlen == 14 && strncasecmp(p, "Content-Length", 14) == 0) {
			uint64_t v = 0;

			if (val[0] == '\0' || strspn(val, "0123456789") != strlen(val) ||
			    strlen(val) > 18) {
				https_finish(c, HTTPS_PROTOCOL, "bad Content-Length");
				return -1;
			}
			v = strtoull(val, NULL, 10);
			if (have_len && v != c->clen) {
				https_finish(c, HTTPS_PROTOCOL, "two Content-Lengths");
				return -1;
			}
			have_len = true;
			c->clen = v;
		} else if (nlen == 17 &&
		    strncasecmp(p, "Transfer-Encoding", 17) == 0) {
			if (!te_chunked(val)) {
				https_finish(c, HTTPS_PROTOCOL, "Transfer-Encoding %s "
				    "not supported", val);
				return -1;
			}
			chunked = true;
		}
	}
	if (c->status >= 100 && c->status < 200) {
		if (c->status == 101 || ++c->interim > HTTPS_INTERIM_MAX) {
			https_finish(c, HTTPS_PROTOCOL, "unexpected %d", c->status);
			return -1;
		}
		return 1;
	}
	if (c->status == 204 || c->status == 304) {
		c->bmode = BODY_NONE;
	} else if (chunked) {
		/* RFC 9112 6.3: chunked wins over a length */
		c->bmode = BODY_CHUNKED;
		c->ch = CH_SIZE;
	} else if (have_len) {
		if (c->clen > c->max_body) {
			https_finish(c, HTTPS_TOO_LARGE, "Content-Length %llu over "
			    "%zu", (unsigned long long)c->clen, c->max_body);
			return -1;
		}
		c->bmode = BODY_LENGTH;
	} else {
		c->bmode = BODY_CLOSE;
	}
	return 0;
}

/* The end of the head in c->head (its length), or 0 if not there yet. */
static size_t
head_end(const struct https_client *c)
{
	for (size_t i = 0; i < c->head_len; i++) {
		if (c->head[i] != '\n')
			continue;
		if (i + 1 < c->head_len && c->head[i + 1] == '\n')
			return i + 2;
		if (i + 2 < c->head_len && c->head[i + 1] == '\r' &&
		    c->head[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* A whole response arrived. */
static void
resp_done(struct https_client *c)
{
	https_finish(c, HTTPS_OK, NULL);
}

/* Chunked body bytes. 1: the response is complete, 0: more, -1: finished. */
static int
chunked_feed(struct https_client *c, const uint8_t *p, size_t n)
{
	while (n > 0) {
		if (c->ch == CH_DATA) {
			size_t take = n < c->ch_left ? n : (size_t)c->ch_left;

			if (body_add(c, p, take) != 0)
				return -1;
			p += take;
			n -= take;
			c->ch_left -= take;
			if (c->ch_left == 0)
				c->ch = CH_DATA_END;
			continue;
		}
		/* a line: size line, the CRLF after data, or a trailer */
		if (*p != '\n') {
			if (c->chline_len >= HTTPS_CHUNK_LINE_MAX) {
				https_finish(c, HTTPS_PROTOCOL, "chunk line too long");
				return -1;
			}
			c->chline[c->chline_len++] = (char)*p;
			p++;
			n--;
			continue;
		}
		p++;
		n--;
		if (c->chline_len > 0 && c->chline[c->chline_len - 1] == '\r')
			c->chline_len--;
		c->chline[c->chline_len] = '\0';
		switch (c->ch) {
		case CH_SIZE: {
			char *e;
			unsigned long long v;

			if (!strchr("0123456789abcdefABCDEF", c->chline[0]) ||
			    c->chline[0] == '\0') {
				https_finish(c, HTTPS_PROTOCOL, "bad chunk size");
				return -1;
			}
			errno = 0;
			v = strtoull(c->chline, &e, 16);
			if (errno != 0 || (*e != '\0' && *e != ';' && *e != ' ' &&
			    *e != '\t')) {
				https_finish(c, HTTPS_PROTOCOL, "bad chunk size");
				return -1;
			}
			if (v > c->max_body - c->blen) {
				https_finish(c, HTTPS_TOO_LARGE, "body over %zu bytes",
				    c->max_body);
				return -1;
			}
			c->ch_left = v;
			c->ch = v == 0 ? CH_TRAILER : CH_DATA;
			break;
		}
		case CH_DATA_END:
			if (c->chline_len != 0) {
				https_finish(c, HTTPS_PROTOCOL, "no CRLF after a chunk");
				return -1;
			}
			c->ch = CH_SIZE;
			break;
		case CH_TRAILER:
			if (c->chline_len == 0) {
				c->chline_len = 0;
				return 1;
			}
			break; /* trailer fields are ignored */
		case CH_DATA:
			break;
		}
		c->chline_len = 0;
	}
	return 0;
}

/*
 * Response bytes p[0..n) (n == 0 with eof: the peer closed; clean: with
 * close_notify). Finishes the client when the response is complete or bad.
 */
static void
resp_feed(struct https_client *c, const uint8_t *p, size_t n, bool eof,
    bool clean)
{
	while (c->head != NULL && n > 0) {
		size_t room = HTTPS_HEAD_MAX - c->head_len, take, hl;
		int r;

		take = n < room ? n : room;
		memcpy(c->head + c->head_len, p, take);
		c->head_len += take;
		p += take;
		n -= take;
		hl = head_end(c);
		if (hl == 0) {
			if (c->head_len >= HTTPS_HEAD_MAX) {
				https_finish(c, HTTPS_TOO_LARGE, "response head over "
				    "%d bytes", HTTPS_HEAD_MAX);
				return;
			}
			continue;
		}
		r = head_parse(c, hl);
		if (r < 0)
			return;
		/* what followed the head goes back in front of p: it is body */
		{
			size_t extra = c->head_len - hl;
			uint8_t *rest = malloc(extra + n + 1);

			if (rest == NULL) {
				https_finish(c, HTTPS_NOMEM, "out of memory");
				return;
			}
			memcpy(rest, c->head + hl, extra);
			memcpy(rest + extra, p, n);
			c->head_len = 0;
			if (r == 0) {
				free(c->head);
				c->head = NULL;
			}
			/* recursion depth is bounded by HTTPS_INTERIM_MAX */
			resp_feed(c, rest, extra + n, eof, clean);
			free(rest);
			return;
		}
	}
	if (c->done)
		return;
	if (c->head != NULL) {
		if (eof)
			https_finish(c, HTTPS_PROTOCOL, "closed before the "
			    "response head ended");
		return;
	}
	switch (c->bmode) {
	case BODY_NONE:
		resp_done(c);
		return;
	case BODY_LENGTH:
		if (n > c->clen - c->blen)
			n = (size_t)(c->clen - c->blen); /* extra bytes: ignored */
		if (body_add(c, p, n) != 0)
			return;
		if (c->blen == c->clen)
			resp_done(c);
		else if (eof)
			https_finish(c, HTTPS_PROTOCOL, "closed after %zu of %llu "
			    "body bytes", c->blen, (unsigned long long)c->clen);
		return;
	case BODY_CHUNKED: {
		int r = chunked_feed(c, p, n);

		if (r > 0)
			resp_done(c);
		else if (r == 0 && eof)
			https_finish(c, HTTPS_PROTOCOL, "closed inside the chunked "
			    "body");
		return;
	}
	case BODY_CLOSE:
		if (body_add(c, p, n) != 0)
			return;
		if (eof && clean)
			resp_done(c);
		else if (eof)
			/* a truncation attack could cut the policy short */
			https_finish(c, HTTPS_PROTOCOL, "body ended without "
			    "close_notify");
		return;
	}
}

/* ---- the strategy ------------------------------------------------------------ */

/* SSL_get_error for r: 1 for WANT_*, watchers set; 0 otherwise. */
static int
tls_want(struct https_client *c, int r)
{
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		io_want(c, EV_READ);
		return 1;
	case SSL_ERROR_WANT_WRITE:
		io_want(c, EV_WRITE);
		return 1;
	default:
		return 0;
	}
}

static void
https_pump(struct https_client *c, int revents)
{
	uint8_t buf[16384];
	int r;

	(void)revents;
	switch (c->state) {
	case ST_RESOLVE:
		return;
	case ST_CONNECT: {
		int err = 0;
		socklen_t el = sizeof(err);
		char a[INET6_ADDRSTRLEN];

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
			err = errno;
		if (err != 0) {
			addr_str(&c->addrs[c->next_addr - 1], a, sizeof(a));
			snprintf(c->connerr, sizeof(c->connerr), "%s: %s", a,
			    strerror(err));
			https_connect_next(c);
			return;
		}
		c->attempt_deadline = 0;
		timer_arm(c);
		if (tls_start(c) != 0) {
			https_finish(c, HTTPS_NOMEM, "SSL_new failed");
			return;
		}
		c->state = ST_HANDSHAKE;
	}
	/* FALLTHROUGH */
	case ST_HANDSHAKE:
		r = SSL_do_handshake(c->ssl);
		if (r != 1) {
			char why[200];

			if (tls_want(c, r))
				return;
			if (verify_failed(c, false))
				return;
			tls_err(why, sizeof(why), "handshake");
			https_finish(c, HTTPS_TLS, "%s: %s", c->host, why);
			return;
		}
		if (verify_failed(c, true))
			return;
		c->state = ST_WRITE;
	/* FALLTHROUGH */
	case ST_WRITE:
		while (c->out_off < c->out_len) {
			size_t left = c->out_len - c->out_off;

			r = SSL_write(c->ssl, c->out + c->out_off,
			    left > 1 << 30 ? 1 << 30 : (int)left);
			if (r <= 0) {
				char why[200];

				if (tls_want(c, r))
					return;
				tls_err(why, sizeof(why), "write");
				https_finish(c, HTTPS_TLS, "%s", why);
				return;
			}
			c->out_off += (size_t)r;
		}
		c->state = ST_READ;
		io_want(c, EV_READ);
	/* FALLTHROUGH */
	case ST_READ:
		for (;;) {
			r = SSL_read(c->ssl, buf, sizeof(buf));
			if (r > 0) {
				resp_feed(c, buf, (size_t)r, false, false);
				if (c->done)
					return;
				continue;
			}
			switch (SSL_get_error(c->ssl, r)) {
			case SSL_ERROR_WANT_READ:
				io_want(c, EV_READ);
				return;
			case SSL_ERROR_WANT_WRITE:
				io_want(c, EV_WRITE);
				return;
			case SSL_ERROR_ZERO_RETURN:
				resp_feed(c, buf, 0, true, true);
				return;
			case SSL_ERROR_SYSCALL:
				if (ERR_peek_error() == 0) {
					ERR_clear_error();
					resp_feed(c, buf, 0, true, false);
					if (!c->done)
						https_finish(c, HTTPS_PROTOCOL,
						    "connection lost");
					return;
				}
				/* FALLTHROUGH */
			default: {
				char why[200];

				tls_err(why, sizeof(why), "read");
				https_finish(c, HTTPS_TLS, "%s", why);
				return;
			}
			}
		}
	}
}

/* ---- start, cancel ------------------------------------------------------------ */

static bool
host_ok(const char *h)
{
	size_t n = h ? strlen(h) : 0;

	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((h[i] >= 'a' && h[i] <= 'z') || (h[i] >= 'A' && h[i] <= 'Z') ||
		    (h[i] >= '0' && h[i] <= '9') || h[i] == '-' || h[i] == '.' ||
		    h[i] == '_'))
			return false;
	return true;
}

/* Printable, no space or control character (a path, a method). */
static bool
token_ok(const char *s, size_t max, bool spaces)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f ||
		    (!spaces && s[i] == ' '))
			return false;
	return true;
}

struct https_client *
https_start(struct ev_loop *loop, struct resolver *res,
    const struct https_req *req, https_cb cb, void *arg)
{
	struct https_client *c;
	bool post;
	int n;

	if (loop == NULL || req == NULL || cb == NULL || !host_ok(req->host) ||
	    !token_ok(req->method, 16, false) || !token_ok(req->path, 2048, false) ||
	    req->path[0] != '/' ||
	    (req->content_type != NULL && !token_ok(req->content_type, 200, true)) ||
	    req->body_len > HTTPS_REQ_BODY_MAX ||
	    (req->body_len > 0 && req->body == NULL) ||
	    (req->addr == NULL && res == NULL))
		return NULL;
	post = strcmp(req->method, "POST") == 0;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->magic = HTTPS_MAGIC;
	c->loop = loop;
	c->res = res;
	c->cb = cb;
	c->arg = arg;
	c->fd = -1;
	c->vfirst = X509_V_OK;
	snprintf(c->host, sizeof(c->host), "%s", req->host);
	c->port = req->port ? req->port : 443;
	c->max_body = req->max_body ? req->max_body : HTTPS_BODY_MAX_DEFAULT;
	ev_timer_init(&c->timer, on_timer, 0., 0.);
	c->timer.data = c;
	c->head = malloc(HTTPS_HEAD_MAX + 1);
	c->out_len = strlen(req->method) + strlen(req->path) + strlen(c->host) +
	    (req->content_type ? strlen(req->content_type) : 0) + 256 +
	    req->body_len;
	c->out = malloc(c->out_len);
	if (c->head == NULL || c->out == NULL)
		goto fail;
	/* Host carries the port when it is not the default (RFC 9110 7.2) */
	n = snprintf(c->out, c->out_len,
	    "%s %s HTTP/1.1\r\n"
	    "Host: %s%s%.0u\r\n"
	    "User-Agent: starttlsd/" STARTTLSD_VERSION "\r\n"
	    "Accept: */*\r\n"
	    "Connection: close\r\n",
	    req->method, req->path, c->host, c->port == 443 ? "" : ":",
	    c->port == 443 ? 0u : (unsigned)c->port);
	if (req->content_type != NULL)
		n += snprintf(c->out + n, c->out_len - (size_t)n,
		    "Content-Type: %s\r\n", req->content_type);
	if (post || req->body_len > 0)
		n += snprintf(c->out + n, c->out_len - (size_t)n,
		    "Content-Length: %zu\r\n", req->body_len);
	n += snprintf(c->out + n, c->out_len - (size_t)n, "\r\n");
	if (req->body_len > 0)
		memcpy(c->out + n, req->body, req->body_len);
	c->out_len = (size_t)n + req->body_len;
	if (tls_setup(c, req->ca_file ? req->ca_file : HTTPS_DEFAULT_CA) != 0) {
		/* a CA file that cannot be read: a result with the why */
		char why[200];

		tls_err(why, sizeof(why), "ca_file");
		c->deadline = ev_now(loop) + 1;
		https_finish(c, HTTPS_TLS, "%s %s", why,
		    req->ca_file ? req->ca_file : HTTPS_DEFAULT_CA);
		return c;
	}
	c->deadline = ev_now(loop) + (req->timeout_ms ? req->timeout_ms :
	    HTTPS_TIMEOUT_MS_DEFAULT) / 1000.0;
	timer_arm(c);
	if (req->addr != NULL) {
		if (addr_numeric(c, req->addr) != 0) {
			https_finish(c, HTTPS_DNS, "addr %s is not numeric",
			    req->addr);
		} else {
			https_connect_next(c);
		}
	} else if (addr_numeric(c, c->host) == 0) {
		https_connect_next(c);
	} else {
		c->state = ST_RESOLVE;
		c->qid[0] = resolver_query(res, c->host, RES_T_A, on_dns_a, c);
		if (c->qid[0] == 0)
			goto fail;
		c->qid[1] = resolver_query(res, c->host, RES_T_AAAA, on_dns_aaaa, c);
		if (c->qid[1] == 0) {
			resolver_cancel(res, c->qid[0]);
			c->qid[0] = 0;
			goto fail;
		}
	}
	return c;
fail:
	https_release(c);
	return NULL;
}

void
https_cancel(struct https_client *c)
{
	if (c == NULL || c->in_cb)
		return;
	if (c->magic != HTTPS_MAGIC)
		abort();
	https_release(c);
}
