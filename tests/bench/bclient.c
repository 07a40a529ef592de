/*
 * bclient: the benchmark's own plaintext SMTP clients, for what smtp-source
 * does not measure.
 *
 *   bclient rtt   --connect HOST:PORT [--sessions S] [--rounds N] [--warmup W]
 *       S sessions one after another; each times connect -> 220 greeting
 *       (session setup: for a proxy, the whole upstream negotiation), sends
 *       EHLO, then N timed NOOP round trips (after W untimed ones), QUIT.
 *       Prints one line: setup_p50_us= setup_p99_us= rtt_p50_us= ...
 *
 *   bclient conns --connect HOST:PORT --concurrency C --count N
 *       N sessions, C at a time: connect, 220, QUIT, 221, close. Through a
 *       proxy each is one new upstream TLS session. Prints done= failed=
 *       elapsed_s= rate=.
 *
 *   bclient idle  --connect HOST:PORT --count N [--ramp R]
 *       Opens N sessions (at most R being set up at once), each greeted and
 *       past EHLO, then holds them idle: prints "ready idle=N failed=F
 *       setup_s=T" and waits for its standard input to close, then closes
 *       them all and prints "closed".
 *
 * Every mode gives up after --timeout seconds (default 300), so nothing hangs.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BC_LINEBUF 2048

static struct sockaddr_storage dst;
static socklen_t dstlen;
static double deadline;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
fatal(const char *what)
{
	fprintf(stderr, "bclient: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int
parse_addr(const char *spec)
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
	memset(&dst, 0, sizeof(dst));
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&dst;
		host[hl - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1)
			return -1;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)atoi(colon + 1));
		dstlen = sizeof(*s6);
		return 0;
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)&dst;
	if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
		return -1;
	s4->sin_family = AF_INET;
	s4->sin_port = htons((uint16_t)atoi(colon + 1));
	dstlen = sizeof(*s4);
	return 0;
}

/*
 * Is buf[0..len) a complete SMTP reply (last line "NNN " or "NNN" + CRLF)?
 * Returns its length, 0 if more is needed; *code gets the reply code.
 */
static size_t
reply_complete(const char *buf, size_t len, int *code)
{
	size_t start = 0;

	while (start < len) {
		const char *nl = memchr(buf + start, '\n', len - start);
		if (nl == NULL)
			return 0;
		size_t end = (size_t)(nl - buf) + 1;
		size_t ll = end - start;
		if (ll >= 4 && buf[start + 3] != '-') {
			*code = atoi(buf + start);
			return end;
		}
		if (ll < 4) {
			*code = 0;
			return end; /* malformed: count it as a (bad) reply */
		}
		start = end;
	}
	return 0;
}

/* ---- rtt: blocking, one session at a time ------------------------------------ */

static int
bconnect(void)
{
	int fd = socket(dst.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		fatal("socket");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&dst, dstlen) < 0)
		fatal("connect");
	return fd;
}

/* Read one complete reply; returns its code, exits on EOF or timeout. */
static int
read_reply(int fd)
{
	char buf[BC_LINEBUF];
	size_t len = 0;
	int code;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int ms = (int)((deadline - now()) * 1000);
		if (ms <= 0 || poll(&p, 1, ms) <= 0) {
			fprintf(stderr, "bclient: timeout waiting for a reply\n");
			exit(1);
		}
		ssize_t n = read(fd, buf + len, sizeof(buf) - len);
		if (n <= 0) {
			fprintf(stderr, "bclient: connection closed while waiting for a reply\n");
			exit(1);
		}
		len += (size_t)n;
		if (reply_complete(buf, len, &code) > 0)
			return code;
		if (len == sizeof(buf)) {
			fprintf(stderr, "bclient: reply too long\n");
			exit(1);
		}
	}
}

static void
send_all(int fd, const char *s)
{
	size_t n = strlen(s);

	while (n > 0) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			fatal("write");
		s += w;
		n -= (size_t)w;
	}
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static double
pct(const double *v, size_t n, double p)
{
	size_t k = (size_t)(p * (double)n + 0.999999);
	if (k == 0)
		k = 1;
	if (k > n)
		k = n;
	return v[k - 1];
}

static int
mode_rtt(int sessions, int rounds, int warmup)
{
	double *setup = calloc((size_t)sessions, sizeof(double));
	double *rtt = calloc((size_t)sessions * (size_t)rounds, sizeof(double));
	size_t nr = 0;
	double sum = 0;

	if (setup == NULL || rtt == NULL)
		fatal("calloc");
	for (int s = 0; s < sessions; s++) {
		double t0 = now();
		int fd = bconnect();
		if (read_reply(fd) != 220) {
			fprintf(stderr, "bclient: no 220 greeting\n");
			return 1;
		}
		setup[s] = (now() - t0) * 1e6;
		send_all(fd, "EHLO bench.example.org\r\n");
		if (read_reply(fd) != 250) {
			fprintf(stderr, "bclient: EHLO refused\n");
			return 1;
		}
		for (int i = 0; i < warmup + rounds; i++) {
			double a = now();
			send_all(fd, "NOOP\r\n");
			if (read_reply(fd) != 250) {
				fprintf(stderr, "bclient: NOOP refused\n");
				return 1;
			}
			if (i >= warmup) {
				rtt[nr] = (now() - a) * 1e6;
				sum += rtt[nr++];
			}
		}
		send_all(fd, "QUIT\r\n");
		read_reply(fd);
		close(fd);
	}
	qsort(setup, (size_t)sessions, sizeof(double), cmp_double);
	qsort(rtt, nr, sizeof(double), cmp_double);
	printf("sessions=%d samples=%zu setup_p50_us=%.1f setup_p99_us=%.1f "
	    "rtt_p50_us=%.1f rtt_p90_us=%.1f rtt_p99_us=%.1f rtt_max_us=%.1f "
	    "rtt_mean_us=%.1f\n", sessions, nr,
	    pct(setup, (size_t)sessions, 0.50), pct(setup, (size_t)sessions, 0.99),
	    pct(rtt, nr, 0.50), pct(rtt, nr, 0.90), pct(rtt, nr, 0.99),
	    rtt[nr - 1], sum / (double)nr);
	return 0;
}

/* ---- conns and idle: many sessions on one epoll ------------------------------- */

enum bstate { B_FREE, B_CONNECTING, B_GREETING, B_EHLO, B_QUIT, B_IDLE };

struct bconn {
	int fd;
	enum bstate st;
	size_t len;
	char buf[BC_LINEBUF];
};

struct many {
	int ep;
	struct bconn *c;
	int n;            /* slots */
	bool idle_mode;
	long started, done, failed, pending;
};

static void
b_close(struct many *m, struct bconn *b, bool ok)
{
	if (b->st == B_IDLE) {
		/* An idle session was ended by the other side (a 421, a reset). */
		m->done--;
		ok = false;
	} else {
		m->pending--;
	}
	close(b->fd);
	b->fd = -1;
	b->st = B_FREE;
	b->len = 0;
	if (ok)
		m->done++;
	else
		m->failed++;
}

static int
b_start(struct many *m, struct bconn *b)
{
	int one = 1;
	struct epoll_event e;
	int fd = socket(dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&dst, dstlen) < 0 && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	b->fd = fd;
	b->st = B_CONNECTING;
	b->len = 0;
	memset(&e, 0, sizeof(e));
	e.events = EPOLLOUT;
	e.data.ptr = b;
	if (epoll_ctl(m->ep, EPOLL_CTL_ADD, fd, &e) < 0) {
		close(fd);
		return -1;
	}
	m->started++;
	m->pending++;
	return 0;
}

static void
b_send(struct bconn *b, const char *s)
{
	/* A short command into an empty socket buffer: one write does it. */
	ssize_t n = write(b->fd, s, strlen(s));
	(void)n;
}

static void
b_event(struct many *m, struct bconn *b, uint32_t ev)
{
	if (b->st == B_CONNECTING) {
		int err = 0;
		socklen_t sl = sizeof(err);
		struct epoll_event e;
		getsockopt(b->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
		if (err != 0 || (ev & (EPOLLERR | EPOLLHUP))) {
			b_close(m, b, false);
			return;
		}
		memset(&e, 0, sizeof(e));
		e.events = EPOLLIN;
		e.data.ptr = b;
		epoll_ctl(m->ep, EPOLL_CTL_MOD, b->fd, &e);
		b->st = B_GREETING;
		return;
	}
	ssize_t n = read(b->fd, b->buf + b->len, sizeof(b->buf) - b->len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		b_close(m, b, false);
		return;
	}
	b->len += (size_t)n;
	int code;
	size_t rl = reply_complete(b->buf, b->len, &code);
	if (rl == 0) {
		if (b->len == sizeof(b->buf))
			b_close(m, b, false);
		return;
	}
	memmove(b->buf, b->buf + rl, b->len - rl);
	b->len -= rl;
	switch (b->st) {
	case B_GREETING:
		if (code != 220) {
			b_close(m, b, false);
			return;
		}
		if (m->idle_mode) {
			b_send(b, "EHLO bench.example.org\r\n");
			b->st = B_EHLO;
		} else {
			b_send(b, "QUIT\r\n");
			b->st = B_QUIT;
		}
		return;
	case B_EHLO:
		if (code != 250) {
			b_close(m, b, false);
			return;
		}
		b->st = B_IDLE;
		m->pending--;
		m->done++;
		return;
	case B_QUIT:
		b_close(m, b, code == 221);
		return;
	case B_IDLE:
		/* Something arrived on an idle session: it was ended (421). */
		b_close(m, b, false);
		return;
	default:
		return;
	}
}

static void
raise_nofile(long need)
{
	struct rlimit r;

	if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
		r.rlim_cur = r.rlim_max;
		setrlimit(RLIMIT_NOFILE, &r);
	}
	if (getrlimit(RLIMIT_NOFILE, &r) == 0 && (long)r.rlim_cur < need + 16) {
		fprintf(stderr, "bclient: need %ld descriptors, RLIMIT_NOFILE is %ld\n",
		    need + 16, (long)r.rlim_cur);
		exit(1);
	}
}

static int
mode_many(bool idle, int concurrency, long count)
{
	struct many m;
	struct epoll_event ev[256];
	double t0 = now();
	int slot = 0;

	memset(&m, 0, sizeof(m));
	m.idle_mode = idle;
	m.n = idle ? (int)count : concurrency;
	raise_nofile(m.n);
	if ((m.ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		fatal("epoll_create1");
	if ((m.c = calloc((size_t)m.n, sizeof(*m.c))) == NULL)
		fatal("calloc");
	for (int i = 0; i < m.n; i++)
		m.c[i].fd = -1;

	while (m.done + m.failed < count) {
		/* Keep up to `concurrency` sessions in setup. */
		while (m.started < count && m.pending < concurrency) {
			int tries = 0;
			while (m.c[slot].st != B_FREE && tries++ < m.n)
				slot = (slot + 1) % m.n;
			if (m.c[slot].st != B_FREE)
				break;
			if (b_start(&m, &m.c[slot]) < 0) {
				m.started++;
				m.failed++;
			}
		}
		int ms = (int)((deadline - now()) * 1000);
		if (ms <= 0) {
			fprintf(stderr, "bclient: timeout: done=%ld failed=%ld of %ld\n",
			    m.done, m.failed, count);
			return 1;
		}
		int n = epoll_wait(m.ep, ev, 256, ms < 1000 ? ms : 1000);
		for (int i = 0; i < n; i++)
			b_event(&m, ev[i].data.ptr, ev[i].events);
	}
	double el = now() - t0;
	if (!idle) {
		printf("done=%ld failed=%ld elapsed_s=%.3f rate=%.1f\n", m.done,
		    m.failed, el, (double)m.done / el);
		return m.failed > 0;
	}
	printf("ready idle=%ld failed=%ld setup_s=%.3f\n", m.done, m.failed, el);
	fflush(stdout);
	/* Hold until stdin closes (or the deadline). */
	for (;;) {
		struct pollfd p = { .fd = 0, .events = POLLIN };
		int ms = (int)((deadline - now()) * 1000);
		if (ms <= 0)
			break;
		if (poll(&p, 1, ms) > 0) {
			char b[64];
			if (read(0, b, sizeof(b)) <= 0)
				break;
		}
	}
	long still = 0;
	for (int i = 0; i < m.n; i++) {
		if (m.c[i].fd >= 0) {
			char b[256];
			/* Still open, nothing unexpected waiting? */
			if (m.c[i].st == B_IDLE && recv(m.c[i].fd, b, sizeof(b),
			    MSG_DONTWAIT) < 0 && errno == EAGAIN)
				still++;
			close(m.c[i].fd);
		}
	}
	printf("closed still_open=%ld\n", still);
	return m.failed > 0;
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: bclient rtt   --connect HOST:PORT [--sessions S] [--rounds N] [--warmup W]\n"
	    "       bclient conns --connect HOST:PORT --concurrency C --count N\n"
	    "       bclient idle  --connect HOST:PORT --count N [--ramp R]\n"
	    "       (all: [--timeout SECONDS])\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *mode, *connect_to = NULL;
	long sessions = 20, rounds = 500, warmup = 20, conc = 10, count = 1000;
	long ramp = 200, timeout = 300;

	if (argc < 2)
		usage();
	mode = argv[1];
	for (int i = 2; i < argc; i++) {
		if (i + 1 >= argc)
			usage();
		const char *a = argv[i], *v = argv[++i];
		long x = atol(v);
		if (strcmp(a, "--connect") == 0)
			connect_to = v;
		else if (strcmp(a, "--sessions") == 0)
			sessions = x;
		else if (strcmp(a, "--rounds") == 0)
			rounds = x;
		else if (strcmp(a, "--warmup") == 0)
			warmup = x;
		else if (strcmp(a, "--concurrency") == 0)
			conc = x;
		else if (strcmp(a, "--count") == 0)
			count = x;
		else if (strcmp(a, "--ramp") == 0)
			ramp = x;
		else if (strcmp(a, "--timeout") == 0)
			timeout = x;
		else
			usage();
	}
	if (connect_to == NULL || parse_addr(connect_to) < 0 || sessions < 1 ||
	    rounds < 1 || warmup < 0 || conc < 1 || count < 1 || ramp < 1 ||
	    timeout < 1 || count > 1000000 || conc > 100000)
		usage();
	deadline = now() + (double)timeout;
	if (strcmp(mode, "rtt") == 0)
		return mode_rtt((int)sessions, (int)rounds, (int)warmup);
	if (strcmp(mode, "conns") == 0)
		return mode_many(false, (int)conc, count);
	if (strcmp(mode, "idle") == 0)
		return mode_many(true, (int)ramp, count);
	usage();
	return 2;
}
