/*
 * sink: a fast ESMTP sink with STARTTLS (BoringSSL), the destination of the
 * benchmarks. It accepts every message and throws the body away.
 *
 *   sink --listen ADDR:PORT [--listen ...] --cert PEM --key PEM
 *        [--threads N] [--stats FILE] [--no-tickets] [--name NAME] [--version]
 *
 * Speaks what smtp-source, stunnel's "protocol = smtp", starttlsd and swaks
 * need: greeting, EHLO/HELO (PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES,
 * STARTTLS), STARTTLS, MAIL, RCPT, DATA with end-of-data detection, RSET,
 * NOOP, QUIT. Pipelined commands are answered in order, their replies batched
 * into one write.
 *
 * Each thread runs its own epoll loop on its own SO_REUSEPORT listening
 * socket. The main thread only waits for signals: SIGUSR1 writes the counters
 * and the process's own CPU use (getrusage) as one key=value line to the
 * stats file (atomically, by rename); SIGTERM/SIGINT write it and exit.
 * Prints "ready" on stdout once listening.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define SINK_MAX_LISTEN 8
#define SINK_RBUF (256 * 1024)
#define SINK_MAX_LINE 4096
#define SINK_OUT_MAX (1024 * 1024) /* a client that never reads is dropped */
#define SINK_EVENTS 256

enum cstate {
	CS_CMD,
	CS_DATA,
	CS_TLS_PENDING, /* our 220 to STARTTLS is being flushed */
	CS_HANDSHAKE,
	CS_CLOSING,     /* flush, then close */
};

/* End-of-data detector states: where we are relative to "\r\n.\r\n". */
enum dstate { DS_BOL, DS_MID, DS_DOT, DS_DOTCR };

struct counters {
	uint64_t conns, msgs, body_bytes, cmds;
	uint64_t tls_full, tls_resumed, tls_fail, errors;
	uint64_t tls13, tls12;
};

struct worker;

struct sconn {
	int fd;
	SSL *ssl;
	enum cstate state;
	enum dstate ds;
	uint32_t evmask;        /* what epoll watches now */
	bool hs_wants_write;
	bool io_wants_write;    /* SSL_read/SSL_write asked for POLLOUT */
	char *pend;             /* partial command line */
	size_t pend_len;
	char *out;
	size_t out_off, out_len, out_cap;
	struct worker *w;
};

struct lsock {
	int fd;
};

struct worker {
	pthread_t tid;
	int ep;
	struct lsock ls[SINK_MAX_LISTEN]; /* epoll data of a listener points here */
	size_t nl;
	char *rbuf;
	struct counters c;
};

static struct {
	const char *listen[SINK_MAX_LISTEN];
	size_t nlisten;
	const char *cert, *key, *stats, *name;
	int threads;
	bool no_tickets;
} opt = { .threads = 1, .name = "sink.example.net" };

static SSL_CTX *ctx;
static struct worker *workers;

static void
die(const char *what)
{
	fprintf(stderr, "sink: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int
parse_addr(const char *spec, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[128];
	const char *colon = strrchr(spec, ':');
	size_t hl;

	if (colon == NULL || colon == spec)
		return -1;
	hl = (size_t)(colon - spec);
	if (hl >= sizeof(host))
		return -1;
	memcpy(host, spec, hl);
	host[hl] = '\0';
	memset(ss, 0, sizeof(*ss));
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		host[hl - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1)
			return -1;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)atoi(colon + 1));
		*len = sizeof(*s6);
		return 0;
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
		return -1;
	s4->sin_family = AF_INET;
	s4->sin_port = htons((uint16_t)atoi(colon + 1));
	*len = sizeof(*s4);
	return 0;
}

static int
listen_on(const char *spec)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1, fd;

	if (parse_addr(spec, &ss, &len) < 0) {
		fprintf(stderr, "sink: bad address %s\n", spec);
		exit(2);
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 4096) < 0)
		die(spec);
	return fd;
}

/* ---- connections ---------------------------------------------------------- */

static void
set_events(struct sconn *c)
{
	uint32_t ev = 0;
	struct epoll_event e;

	switch (c->state) {
	case CS_HANDSHAKE:
		ev = c->hs_wants_write ? EPOLLOUT : EPOLLIN;
		break;
	case CS_TLS_PENDING:
	case CS_CLOSING:
		ev = EPOLLOUT;
		break;
	case CS_CMD:
	case CS_DATA:
		ev = EPOLLIN;
		if (c->out_len > 0 || c->io_wants_write)
			ev |= EPOLLOUT;
		break;
	}
	if (ev == c->evmask)
		return;
	memset(&e, 0, sizeof(e));
	e.events = ev;
	e.data.ptr = c;
	if (epoll_ctl(c->w->ep, EPOLL_CTL_MOD, c->fd, &e) == 0)
		c->evmask = ev;
}

static void
conn_free(struct sconn *c)
{
	if (c->ssl != NULL) {
		if (c->state != CS_HANDSHAKE)
			SSL_shutdown(c->ssl); /* close_notify, best effort */
		SSL_free(c->ssl);
	}
	close(c->fd);
	free(c->pend);
	free(c->out);
	free(c);
}

static int
out_add(struct sconn *c, const char *s, size_t n)
{
	if (c->out_len == 0)
		c->out_off = 0;
	if (c->out_off + c->out_len + n > c->out_cap) {
		if (c->out_off > 0) {
			memmove(c->out, c->out + c->out_off, c->out_len);
			c->out_off = 0;
		}
		if (c->out_len + n > c->out_cap) {
			size_t cap = c->out_cap ? c->out_cap : 512;
			char *p;
			while (cap < c->out_len + n)
				cap *= 2;
			if (cap > SINK_OUT_MAX || (p = realloc(c->out, cap)) == NULL)
				return -1;
			c->out = p;
			c->out_cap = cap;
		}
	}
	memcpy(c->out + c->out_off + c->out_len, s, n);
	c->out_len += n;
	return 0;
}

#define OUT(c, lit) out_add((c), lit, sizeof(lit) - 1)

/* Write what we can. Returns -1 on a broken connection. */
static int
flush_out(struct sconn *c, bool plain)
{
	c->io_wants_write = false;
	while (c->out_len > 0) {
		const char *p = c->out + c->out_off;
		if (c->ssl != NULL && !plain) {
			int r = SSL_write(c->ssl, p, (int)c->out_len);
			if (r > 0) {
				c->out_off += (size_t)r;
				c->out_len -= (size_t)r;
				continue;
			}
			int e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
				c->io_wants_write = e == SSL_ERROR_WANT_WRITE;
				return 0;
			}
			ERR_clear_error();
			return -1;
		}
		ssize_t n = send(c->fd, p, c->out_len, MSG_NOSIGNAL);
		if (n > 0) {
			c->out_off += (size_t)n;
			c->out_len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return -1;
	}
	c->out_off = 0;
	if (c->out_cap > 4096) {
		/* A burst of replies is over: give the memory back. */
		free(c->out);
		c->out = NULL;
		c->out_cap = 0;
	}
	return 0;
}

static void
reply_ehlo(struct sconn *c, bool ehlo)
{
	char b[512];
	int n;

	if (!ehlo) {
		n = snprintf(b, sizeof(b), "250 %s\r\n", opt.name);
	} else {
		n = snprintf(b, sizeof(b),
		    "250-%s\r\n250-PIPELINING\r\n250-SIZE 1073741824\r\n"
		    "250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n%s250 SMTPUTF8\r\n",
		    opt.name, c->ssl == NULL && ctx != NULL ? "250-STARTTLS\r\n" : "");
	}
	out_add(c, b, (size_t)n);
}

static bool
verb_is(const char *line, size_t n, const char *verb)
{
	size_t vl = strlen(verb);

	if (n < vl || strncasecmp(line, verb, vl) != 0)
		return false;
	return n == vl || line[vl] == ' ' || line[vl] == '\r' || line[vl] == '\n';
}

/* One command line (LF included). Returns -1 to drop the connection. */
static int
command(struct sconn *c, const char *line, size_t n)
{
	int r = 0;

	c->w->c.cmds++;
	if (verb_is(line, n, "EHLO")) {
		reply_ehlo(c, true);
	} else if (verb_is(line, n, "HELO")) {
		reply_ehlo(c, false);
	} else if (verb_is(line, n, "MAIL")) {
		r = OUT(c, "250 2.1.0 Ok\r\n");
	} else if (verb_is(line, n, "RCPT")) {
		r = OUT(c, "250 2.1.5 Ok\r\n");
	} else if (verb_is(line, n, "DATA")) {
		r = OUT(c, "354 End data with <CR><LF>.<CR><LF>\r\n");
		c->state = CS_DATA;
		c->ds = DS_BOL;
	} else if (verb_is(line, n, "RSET") || verb_is(line, n, "NOOP")) {
		r = OUT(c, "250 2.0.0 Ok\r\n");
	} else if (verb_is(line, n, "QUIT")) {
		r = OUT(c, "221 2.0.0 Bye\r\n");
		c->state = CS_CLOSING;
	} else if (verb_is(line, n, "STARTTLS")) {
		if (c->ssl != NULL) {
			r = OUT(c, "554 5.5.1 Error: TLS already active\r\n");
		} else if (ctx == NULL) {
			r = OUT(c, "454 4.7.0 TLS not available\r\n");
		} else {
			r = OUT(c, "220 2.0.0 Ready to start TLS\r\n");
			c->state = CS_TLS_PENDING;
		}
	} else {
		r = OUT(c, "502 5.5.2 Error: command not recognized\r\n");
	}
	return r;
}

/*
 * Skip message body bytes; returns how many were consumed. The state
 * machine survives any split of "\r\n.\r\n" across reads; memchr does the
 * long stretches between line ends.
 */
static size_t
data_scan(struct sconn *c, const char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		switch (c->ds) {
		case DS_MID: {
			const char *nl = memchr(p + i, '\n', n - i);
			if (nl == NULL)
				return n;
			i = (size_t)(nl - p) + 1;
			c->ds = DS_BOL;
			break;
		}
		case DS_BOL:
			c->ds = p[i] == '.' ? DS_DOT : p[i] == '\n' ? DS_BOL : DS_MID;
			i++;
			break;
		case DS_DOT:
			/* ".\n" (bare LF) is a body line, not the end. */
			c->ds = p[i] == '\r' ? DS_DOTCR : p[i] == '\n' ? DS_BOL : DS_MID;
			i++;
			break;
		case DS_DOTCR:
			if (p[i] == '\n') {
				c->state = CS_CMD;
				c->w->c.msgs++;
				return i + 1;
			}
			c->ds = DS_MID;
			i++;
			break;
		}
	}
	return n;
}

/* Everything just read. Returns -1 to drop the connection. */
static int
process(struct sconn *c, const char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		if (c->state == CS_DATA) {
			size_t k = data_scan(c, p + i, n - i);
			c->w->c.body_bytes += k;
			i += k;
			if (c->state == CS_CMD &&
			    OUT(c, "250 2.0.0 Ok: queued\r\n") < 0)
				return -1;
			continue;
		}
		if (c->state != CS_CMD)
			break; /* after QUIT or STARTTLS nothing more is read */
		const char *nl = memchr(p + i, '\n', n - i);
		if (nl == NULL) {
			size_t rest = n - i;
			if (rest > SINK_MAX_LINE)
				return -1;
			if ((c->pend = malloc(rest)) == NULL)
				return -1;
			memcpy(c->pend, p + i, rest);
			c->pend_len = rest;
			return 0;
		}
		size_t len = (size_t)(nl - (p + i)) + 1;
		if (command(c, p + i, len) < 0)
			return -1;
		i += len;
	}
	return 0;
}

static void
start_handshake(struct sconn *c)
{
	if ((c->ssl = SSL_new(ctx)) == NULL || !SSL_set_fd(c->ssl, c->fd)) {
		c->state = CS_CLOSING;
		return;
	}
	SSL_set_accept_state(c->ssl);
	c->state = CS_HANDSHAKE;
	c->hs_wants_write = false;
	free(c->pend); /* plaintext after STARTTLS is never a command */
	c->pend = NULL;
	c->pend_len = 0;
}

/* Returns -1 when the connection is to be dropped. */
static int
handshake(struct sconn *c)
{
	int r = SSL_do_handshake(c->ssl);

	if (r == 1) {
		struct counters *k = &c->w->c;
		if (SSL_session_reused(c->ssl))
			k->tls_resumed++;
		else
			k->tls_full++;
		if (SSL_version(c->ssl) == TLS1_3_VERSION)
			k->tls13++;
		else
			k->tls12++;
		c->state = CS_CMD;
		return 0;
	}
	int e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		c->hs_wants_write = e == SSL_ERROR_WANT_WRITE;
		return 0;
	}
	ERR_clear_error();
	c->w->c.tls_fail++;
	return -1;
}

/* Read until the socket (and BoringSSL) is drained. */
static int
do_read(struct sconn *c)
{
	char *rb = c->w->rbuf;

	for (;;) {
		size_t pre = 0;
		ssize_t n;

		if (c->state != CS_CMD && c->state != CS_DATA)
			return 0;
		if (c->out_len > SINK_OUT_MAX / 2)
			return 0; /* let the client read its replies first */
		if (c->pend_len > 0) {
			pre = c->pend_len;
			memcpy(rb, c->pend, pre);
			free(c->pend);
			c->pend = NULL;
			c->pend_len = 0;
		}
		size_t want = SINK_RBUF - pre;
		if (c->ssl != NULL) {
			int r = SSL_read(c->ssl, rb + pre, (int)want);
			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
					c->io_wants_write = e == SSL_ERROR_WANT_WRITE;
					n = 0;
				} else {
					ERR_clear_error();
					n = -1; /* close_notify, EOF or error */
				}
			} else {
				n = r;
			}
			if (n <= 0) {
				if (pre > 0 && (c->pend = malloc(pre)) != NULL) {
					memcpy(c->pend, rb, pre);
					c->pend_len = pre;
				}
				return n < 0 ? -1 : 0;
			}
		} else {
			n = read(c->fd, rb + pre, want);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
					if (pre > 0 && (c->pend = malloc(pre)) != NULL) {
						memcpy(c->pend, rb, pre);
						c->pend_len = pre;
					}
					return 0;
				}
				return -1;
			}
		}
		if (process(c, rb, pre + (size_t)n) < 0)
			return -1;
		if (c->ssl == NULL && (size_t)n < want)
			return 0; /* drained; level-triggered epoll tells us of more */
	}
}

/* One epoll event on a connection. Returns -1 when it must be dropped. */
static int
conn_event(struct sconn *c, uint32_t ev)
{
	if (ev & EPOLLERR)
		return -1;
	if (c->state == CS_HANDSHAKE) {
		if (handshake(c) < 0)
			return -1;
		if (c->state == CS_HANDSHAKE)
			return 0;
		/* Done: the client speaks first (EHLO); it may have already. */
	}
	if (c->state == CS_TLS_PENDING || c->state == CS_CLOSING) {
		if (flush_out(c, c->state == CS_TLS_PENDING) < 0)
			return -1;
		if (c->out_len > 0)
			return 0;
		if (c->state == CS_CLOSING)
			return -1;
		start_handshake(c);
		if (c->state == CS_CLOSING)
			return -1;
		return handshake(c);
	}
	if (do_read(c) < 0) {
		/* Peer gone (or protocol error): still try to say our last words. */
		flush_out(c, false);
		return -1;
	}
	if (flush_out(c, c->state == CS_TLS_PENDING) < 0)
		return -1;
	if (c->state == CS_TLS_PENDING && c->out_len == 0) {
		start_handshake(c);
		if (c->state == CS_CLOSING)
			return -1;
		return handshake(c);
	}
	if (c->state == CS_CLOSING && c->out_len == 0)
		return -1;
	return 0;
}

static void
accept_all(struct worker *w, int lfd)
{
	for (int i = 0; i < 64; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		int one = 1;
		struct sconn *c;
		struct epoll_event e;

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR && errno != ECONNABORTED)
				w->c.errors++;
			return;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			close(fd);
			w->c.errors++;
			continue;
		}
		c->fd = fd;
		c->w = w;
		c->state = CS_CMD;
		char g[300];
		int n = snprintf(g, sizeof(g), "220 %s ESMTP starttlsd bench sink\r\n",
		    opt.name);
		out_add(c, g, (size_t)n);
		flush_out(c, true);
		memset(&e, 0, sizeof(e));
		e.events = c->evmask = EPOLLIN | (c->out_len ? EPOLLOUT : 0);
		e.data.ptr = c;
		if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &e) < 0) {
			conn_free(c);
			w->c.errors++;
			continue;
		}
		w->c.conns++;
	}
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event ev[SINK_EVENTS];

	for (;;) {
		int n = epoll_wait(w->ep, ev, SINK_EVENTS, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int i = 0; i < n; i++) {
			uintptr_t p = (uintptr_t)ev[i].data.ptr;
			if (p >= (uintptr_t)w->ls && p < (uintptr_t)(w->ls + w->nl)) {
				accept_all(w, ((struct lsock *)ev[i].data.ptr)->fd);
				continue;
			}
			struct sconn *c = ev[i].data.ptr;
			if (conn_event(c, ev[i].events) < 0) {
				conn_free(c);
				continue;
			}
			set_events(c);
		}
	}
	return NULL;
}

/* ---- stats, main ------------------------------------------------------------ */

static uint64_t
ld(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void
write_stats(void)
{
	struct counters t;
	struct rusage ru;
	char tmp[4200];
	FILE *f;

	memset(&t, 0, sizeof(t));
	for (int i = 0; i < opt.threads; i++) {
		struct counters *k = &workers[i].c;
		t.conns += ld(&k->conns);
		t.msgs += ld(&k->msgs);
		t.body_bytes += ld(&k->body_bytes);
		t.cmds += ld(&k->cmds);
		t.tls_full += ld(&k->tls_full);
		t.tls_resumed += ld(&k->tls_resumed);
		t.tls_fail += ld(&k->tls_fail);
		t.errors += ld(&k->errors);
		t.tls13 += ld(&k->tls13);
		t.tls12 += ld(&k->tls12);
	}
	getrusage(RUSAGE_SELF, &ru);
	char line[1024];
	int n = snprintf(line, sizeof(line),
	    "conns=%llu msgs=%llu body_bytes=%llu cmds=%llu tls_full=%llu "
	    "tls_resumed=%llu tls_fail=%llu tls13=%llu tls12=%llu errors=%llu "
	    "utime=%ld.%06ld stime=%ld.%06ld maxrss_kb=%ld threads=%d\n",
	    (unsigned long long)t.conns, (unsigned long long)t.msgs,
	    (unsigned long long)t.body_bytes, (unsigned long long)t.cmds,
	    (unsigned long long)t.tls_full, (unsigned long long)t.tls_resumed,
	    (unsigned long long)t.tls_fail, (unsigned long long)t.tls13,
	    (unsigned long long)t.tls12, (unsigned long long)t.errors,
	    (long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec,
	    (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec,
	    ru.ru_maxrss, opt.threads);
	if (opt.stats == NULL) {
		fputs(line, stderr);
		return;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", opt.stats);
	if ((f = fopen(tmp, "w")) == NULL) {
		fprintf(stderr, "sink: %s: %s\n", tmp, strerror(errno));
		return;
	}
	fwrite(line, 1, (size_t)n, f);
	fclose(f);
	rename(tmp, opt.stats);
}

static void
usage(void)
{
	fprintf(stderr, "usage: sink --listen ADDR:PORT [--listen ...] --cert PEM "
	    "--key PEM [--threads N] [--stats FILE] [--no-tickets] [--name NAME]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	sigset_t set;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--version") == 0) {
			printf("sink BORINGSSL_API_VERSION=%d %s\n",
			    BORINGSSL_API_VERSION, OpenSSL_version(OPENSSL_VERSION));
			return 0;
		} else if (strcmp(a, "--no-tickets") == 0) {
			opt.no_tickets = true;
			continue;
		}
		if (v == NULL)
			usage();
		if (strcmp(a, "--listen") == 0 && opt.nlisten < SINK_MAX_LISTEN)
			opt.listen[opt.nlisten++] = v;
		else if (strcmp(a, "--cert") == 0)
			opt.cert = v;
		else if (strcmp(a, "--key") == 0)
			opt.key = v;
		else if (strcmp(a, "--stats") == 0)
			opt.stats = v;
		else if (strcmp(a, "--name") == 0)
			opt.name = v;
		else if (strcmp(a, "--threads") == 0)
			opt.threads = atoi(v);
		else
			usage();
		i++;
	}
	if (opt.nlisten == 0 || opt.threads < 1 || opt.threads > 64 ||
	    (opt.cert == NULL) != (opt.key == NULL))
		usage();

	if (opt.cert != NULL) {
		ctx = SSL_CTX_new(TLS_method());
		if (ctx == NULL ||
		    !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
		    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
		    !SSL_CTX_use_certificate_chain_file(ctx, opt.cert) ||
		    !SSL_CTX_use_PrivateKey_file(ctx, opt.key, SSL_FILETYPE_PEM)) {
			fprintf(stderr, "sink: cannot load %s / %s\n", opt.cert, opt.key);
			return 1;
		}
		SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
		    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
		if (opt.no_tickets)
			SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	}

	/* Workers inherit the blocked mask: only the main thread takes signals. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	workers = calloc((size_t)opt.threads, sizeof(*workers));
	if (workers == NULL)
		die("calloc");
	for (int t = 0; t < opt.threads; t++) {
		struct worker *w = &workers[t];
		if ((w->ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
			die("epoll_create1");
		if ((w->rbuf = malloc(SINK_RBUF)) == NULL)
			die("malloc");
		for (size_t i = 0; i < opt.nlisten; i++) {
			struct epoll_event e;
			w->ls[i].fd = listen_on(opt.listen[i]);
			memset(&e, 0, sizeof(e));
			e.events = EPOLLIN;
			e.data.ptr = &w->ls[i];
			if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->ls[i].fd, &e) < 0)
				die("epoll_ctl");
		}
		w->nl = opt.nlisten;
	}
	for (int t = 0; t < opt.threads; t++)
		if (pthread_create(&workers[t].tid, NULL, worker_main, &workers[t]) != 0)
			die("pthread_create");
	printf("ready\n");
	fflush(stdout);

	for (;;) {
		int sig;
		if (sigwait(&set, &sig) != 0)
			continue;
		write_stats();
		if (sig == SIGTERM || sig == SIGINT)
			break;
	}
	return 0;
}
