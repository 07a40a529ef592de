/*
 * delay: a TCP relay that adds a fixed one-way delay in each direction, the
 * bench's stand-in for a WAN path (this kernel has no netem).
 *
 *   delay --listen ADDR:PORT --connect ADDR:PORT --delay-ms D
 *         [--handshake-ms H] [--stats FILE]
 *
 * Every byte read from one side is written to the other side D ms after it
 * was read, in order, in the pieces it was read in: each direction is a FIFO
 * of (due time, bytes), so a path with RTT 2·D and no bandwidth limit. An EOF
 * is passed on (shutdown(SHUT_WR)) D ms after it was read, like a FIN.
 *
 * The TCP handshake: the kernel completes the client's connect() to the relay
 * at once, so the relay stands for the path's handshake instead. It connects
 * to the destination H ms after accepting (default 3·D: SYN →, SYN-ACK ←, ACK →
 * before a server's accept() returns on a real path), and the destination's
 * first bytes (an SMTP greeting) then take D more: a client sees the greeting
 * 4·D = 2 RTT after it connected, as on a real path. Bytes the client sends
 * before that wait for the connection, in order.
 *
 * One thread, epoll, a timerfd (absolute, CLOCK_MONOTONIC, timer slack 1 ns).
 * Since D and H are the same for every segment and every connection, the
 * segments (and the connections to open) fall due in the order they arrived:
 * two global FIFOs, no heap. A direction holding more than 4 MiB stops
 * reading its source until it is below 1 MiB again.
 *
 * SIGUSR1 writes counters (connections, segments, bytes, how late segments
 * were written after their due time, the relay's own CPU) as one key=value
 * line to the stats file (atomically, by rename); SIGTERM/SIGINT write it and
 * exit. Prints "ready" on stdout once listening.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define DL_RBUF (64 * 1024)
#define DL_PAUSE (4u * 1024 * 1024)   /* stop reading a source above this */
#define DL_RESUME (1u * 1024 * 1024)  /* and start again below this */
#define DL_EVENTS 256

struct pair;

struct seg {
	struct seg *next;  /* in its direction's FIFO */
	struct seg *gnext; /* in the global FIFO of segments not yet due */
	struct pair *p;
	struct dir *dir;
	uint64_t due;      /* ns, CLOCK_MONOTONIC */
	size_t len, off;
	bool ready;        /* due: may be written */
	bool eof;          /* a FIN, not bytes */
	bool orphan;       /* its pair was closed: only the global FIFO holds it */
	char data[];
};

/* One direction: bytes read from side `from`, written to side `to`. */
struct dir {
	struct pair *p;
	int from, to;
	struct seg *head, *tail;
	size_t queued;     /* bytes in the FIFO */
	bool paused;       /* not reading `from` for now */
	bool eof_read, eof_sent;
};

struct side {
	struct pair *p;
	int idx;           /* 0 = client (accepted), 1 = server (we connect) */
	int fd;
	uint32_t evmask;
	bool registered;
};

struct pair {
	struct side s[2];
	struct dir d[2];   /* d[0]: client → server, d[1]: server → client */
	struct pair *cnext;/* in the FIFO of connections to open */
	uint64_t connect_due;
	bool connected;    /* s[1] connected to the destination */
	bool connecting;
	bool dead;         /* closed; freed when nothing global refers to it */
	bool buried;       /* on the list freed at the end of the loop iteration */
	unsigned refs;     /* segments in the global FIFO, +1 while in the connect FIFO */
	struct pair *gnext;/* on that list */
};

static struct {
	const char *listen, *connect, *stats;
	uint64_t delay_ns, handshake_ns;
} opt;

static struct {
	uint64_t conns, connect_fail, segs, bytes, late_sum_ns, late_max_ns, late_1ms;
	uint64_t hs_late_max_ns, open, max_open;
} st;

static int ep, lfd, tfd, sfd;
static struct sockaddr_storage dst;
static socklen_t dstlen;
static struct seg *gq_head, *gq_tail;     /* segments, in due order */
static struct pair *cq_head, *cq_tail;    /* connections to open, in due order */
static struct pair *grave;                /* dead pairs, freed after the epoll batch */
static uint64_t timer_armed;              /* the due time the timerfd is set to; 0: none */
static char rbuf[DL_RBUF];
static char tag_listen, tag_timer, tag_signal; /* epoll data for the non-sides */

static void
die(const char *what)
{
	fprintf(stderr, "delay: %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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

/* ---- epoll interest ------------------------------------------------------- */

static void
side_events(struct side *s)
{
	struct pair *p = s->p;
	struct dir *in = &p->d[s->idx];       /* reads from this side feed this */
	struct dir *out = &p->d[1 - s->idx];  /* this side is written from this */
	uint32_t ev = 0;
	struct epoll_event e;

	if (s->fd < 0 || p->dead)
		return;
	if (s->idx == 1 && p->connecting) {
		ev = EPOLLOUT;
	} else {
		if (!in->eof_read && !in->paused)
			ev |= EPOLLIN;
		if (out->head != NULL && out->head->ready && (s->idx == 0 || p->connected))
			ev |= EPOLLOUT;
	}
	if (s->registered && ev == s->evmask)
		return;
	if (ev == 0) {
		/* Nothing to wait for: out of the set, or a hung-up socket would
		 * report EPOLLHUP over and over while its last bytes wait. */
		if (s->registered && epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL) < 0)
			die("epoll_ctl");
		s->registered = false;
		return;
	}
	memset(&e, 0, sizeof(e));
	e.events = ev;
	e.data.ptr = s;
	if (epoll_ctl(ep, s->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s->fd, &e) < 0)
		die("epoll_ctl");
	s->registered = true;
	s->evmask = ev;
}

/* ---- pairs ---------------------------------------------------------------- */

static void
pair_free_if_done(struct pair *p)
{
	if (p->dead && p->refs == 0 && !p->buried) {
		p->buried = true;
		p->gnext = grave;
		grave = p;
	}
}

static void
pair_close(struct pair *p)
{
	if (p->dead)
		return;
	p->dead = true;
	st.open--;
	for (int i = 0; i < 2; i++) {
		if (p->s[i].fd >= 0) {
			close(p->s[i].fd);  /* also leaves the epoll set */
			p->s[i].fd = -1;
		}
		/* Segments already due are only in their direction's FIFO; the
		 * others are freed when the global FIFO reaches them. */
		struct seg *g = p->d[i].head;
		while (g != NULL) {
			struct seg *n = g->next;
			if (g->ready)
				free(g);
			else
				g->orphan = true;  /* freed by the global FIFO */
			g = n;
		}
		p->d[i].head = p->d[i].tail = NULL;
	}
	pair_free_if_done(p);
}

static void
maybe_done(struct pair *p)
{
	if (!p->dead && p->d[0].eof_sent && p->d[1].eof_sent)
		pair_close(p);
}

/* Write what is due in one direction; false if the pair was closed. */
static bool
flush(struct dir *d)
{
	struct pair *p = d->p;
	struct side *to = &p->s[d->to];

	if (p->dead || (d->to == 1 && !p->connected))
		return true;
	while (d->head != NULL && d->head->ready) {
		struct seg *g = d->head;
		if (g->off == 0 && g->len > 0) {
			uint64_t late = now_ns() - g->due;
			st.late_sum_ns += late;
			if (late > st.late_max_ns)
				st.late_max_ns = late;
			if (late > 1000000u)
				st.late_1ms++;
		}
		if (g->eof) {
			shutdown(to->fd, SHUT_WR);
			d->eof_sent = true;
		} else {
			ssize_t w = write(to->fd, g->data + g->off, g->len - g->off);
			if (w < 0 && (errno == EAGAIN || errno == EINTR))
				break;
			if (w <= 0) {
				pair_close(p);
				return false;
			}
			g->off += (size_t)w;
			st.bytes += (size_t)w;
			if (g->off < g->len)
				break;
			st.segs++;
		}
		d->head = g->next;
		if (d->head == NULL)
			d->tail = NULL;
		d->queued -= g->len;
		free(g);
	}
	if (d->paused && d->queued < DL_RESUME) {
		d->paused = false;
		side_events(&p->s[d->from]);
	}
	side_events(to);
	maybe_done(p);
	return !p->dead;
}

static void
enqueue(struct dir *d, const char *data, size_t len, bool eof, uint64_t now)
{
	struct seg *g = malloc(sizeof(*g) + len);

	if (g == NULL)
		die("malloc");
	memset(g, 0, sizeof(*g));
	g->p = d->p;
	g->dir = d;
	g->due = now + opt.delay_ns;
	g->len = len;
	g->eof = eof;
	if (len > 0)
		memcpy(g->data, data, len);
	if (d->tail != NULL)
		d->tail->next = g;
	else
		d->head = g;
	d->tail = g;
	d->queued += len;
	if (gq_tail != NULL)
		gq_tail->gnext = g;
	else
		gq_head = g;
	gq_tail = g;
	d->p->refs++;
}

static void
read_side(struct side *s)
{
	struct pair *p = s->p;
	struct dir *d = &p->d[s->idx];

	for (int rounds = 0; rounds < 16 && !d->eof_read && !d->paused; rounds++) {
		ssize_t n = read(s->fd, rbuf, sizeof(rbuf));
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		uint64_t t = now_ns();
		if (n <= 0) {   /* EOF or reset: pass a FIN on after the delay */
			enqueue(d, NULL, 0, true, t);
			d->eof_read = true;
			break;
		}
		enqueue(d, rbuf, (size_t)n, false, t);
		if (d->queued > DL_PAUSE)
			d->paused = true;
	}
	side_events(s);
}

static void
start_connect(struct pair *p)
{
	struct side *s = &p->s[1];
	int one = 1;
	uint64_t late = now_ns() - p->connect_due;

	if (late > st.hs_late_max_ns)
		st.hs_late_max_ns = late;
	s->fd = socket(dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		st.connect_fail++;
		pair_close(p);
		return;
	}
	setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(s->fd, (struct sockaddr *)&dst, dstlen) == 0) {
		p->connected = true;
	} else if (errno == EINPROGRESS) {
		p->connecting = true;
	} else {
		st.connect_fail++;
		pair_close(p);
		return;
	}
	side_events(s);
	if (p->connected)
		flush(&p->d[0]);
}

static void
connect_done(struct side *s)
{
	struct pair *p = s->p;
	int err = 0;
	socklen_t el = sizeof(err);

	if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0) {
		st.connect_fail++;
		pair_close(p);
		return;
	}
	p->connecting = false;
	p->connected = true;
	side_events(s);
	flush(&p->d[0]);
}

static void
accept_all(void)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;
		if (fd < 0) {
			if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
				return;
			if (errno == EMFILE || errno == ENFILE) {
				fprintf(stderr, "delay: accept: %s\n", strerror(errno));
				return;
			}
			die("accept4");
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct pair *p = calloc(1, sizeof(*p));
		if (p == NULL)
			die("calloc");
		for (int i = 0; i < 2; i++) {
			p->s[i].p = p;
			p->s[i].idx = i;
			p->s[i].fd = -1;
			p->d[i].p = p;
			p->d[i].from = i;
			p->d[i].to = 1 - i;
		}
		p->s[0].fd = fd;
		p->connect_due = now_ns() + opt.handshake_ns;
		p->refs = 1;
		if (cq_tail != NULL)
			cq_tail->cnext = p;
		else
			cq_head = p;
		cq_tail = p;
		st.conns++;
		if (++st.open > st.max_open)
			st.max_open = st.open;
		side_events(&p->s[0]);
	}
}

/* ---- time ----------------------------------------------------------------- */

static void
run_due(void)
{
	uint64_t t = now_ns();

	while (cq_head != NULL && cq_head->connect_due <= t) {
		struct pair *p = cq_head;
		cq_head = p->cnext;
		if (cq_head == NULL)
			cq_tail = NULL;
		p->refs--;
		if (!p->dead)
			start_connect(p);
		else
			pair_free_if_done(p);
	}
	while (gq_head != NULL && gq_head->due <= t) {
		struct seg *g = gq_head;
		gq_head = g->gnext;
		if (gq_head == NULL)
			gq_tail = NULL;
		struct pair *p = g->p;
		p->refs--;
		if (g->orphan) {            /* its pair was closed meanwhile */
			free(g);
		} else {
			g->ready = true;
			if (g->dir->head == g)  /* the direction's next segment is due */
				flush(g->dir);
		}
		pair_free_if_done(p);
	}
}

static void
arm_timer(void)
{
	uint64_t next = 0;
	struct itimerspec its;

	if (gq_head != NULL)
		next = gq_head->due;
	if (cq_head != NULL && (next == 0 || cq_head->connect_due < next))
		next = cq_head->connect_due;
	if (next == timer_armed)
		return;
	memset(&its, 0, sizeof(its));
	if (next != 0) {
		its.it_value.tv_sec = (time_t)(next / 1000000000u);
		its.it_value.tv_nsec = (long)(next % 1000000000u);
	}
	if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		die("timerfd_settime");
	timer_armed = next;
}

/* ---- stats, main ------------------------------------------------------------ */

static void
write_stats(void)
{
	struct rusage ru;
	char line[1024], tmp[4200];
	FILE *f;

	getrusage(RUSAGE_SELF, &ru);
	int n = snprintf(line, sizeof(line),
	    "conns=%llu connect_fail=%llu open=%llu max_open=%llu segs=%llu bytes=%llu "
	    "late_mean_us=%.1f late_max_us=%.1f late_over_1ms=%llu hs_late_max_us=%.1f "
	    "delay_ms=%.3f handshake_ms=%.3f utime=%ld.%06ld stime=%ld.%06ld\n",
	    (unsigned long long)st.conns, (unsigned long long)st.connect_fail,
	    (unsigned long long)st.open, (unsigned long long)st.max_open,
	    (unsigned long long)st.segs, (unsigned long long)st.bytes,
	    st.segs ? (double)st.late_sum_ns / (double)st.segs / 1e3 : 0.0,
	    (double)st.late_max_ns / 1e3, (unsigned long long)st.late_1ms,
	    (double)st.hs_late_max_ns / 1e3,
	    (double)opt.delay_ns / 1e6, (double)opt.handshake_ns / 1e6,
	    (long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec,
	    (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec);
	if (opt.stats == NULL) {
		fputs(line, stderr);
		return;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", opt.stats);
	if ((f = fopen(tmp, "w")) == NULL) {
		fprintf(stderr, "delay: %s: %s\n", tmp, strerror(errno));
		return;
	}
	fwrite(line, 1, (size_t)n, f);
	fclose(f);
	rename(tmp, opt.stats);
}

static void
usage(void)
{
	fprintf(stderr, "usage: delay --listen ADDR:PORT --connect ADDR:PORT --delay-ms D "
	    "[--handshake-ms H] [--stats FILE]\n");
	exit(2);
}

static uint64_t
ms_arg(const char *v)
{
	char *end;
	double ms = strtod(v, &end);

	if (end == v || *end != '\0' || !(ms >= 0 && ms <= 60000))
		usage();
	return (uint64_t)(ms * 1e6 + 0.5);
}

int
main(int argc, char **argv)
{
	struct sockaddr_storage ls;
	socklen_t llen;
	struct epoll_event e, evs[DL_EVENTS];
	sigset_t set;
	int one = 1;
	bool have_delay = false, have_hs = false;

	for (int i = 1; i < argc; i += 2) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (v == NULL)
			usage();
		if (strcmp(a, "--listen") == 0)
			opt.listen = v;
		else if (strcmp(a, "--connect") == 0)
			opt.connect = v;
		else if (strcmp(a, "--stats") == 0)
			opt.stats = v;
		else if (strcmp(a, "--delay-ms") == 0) {
			opt.delay_ns = ms_arg(v);
			have_delay = true;
		} else if (strcmp(a, "--handshake-ms") == 0) {
			opt.handshake_ns = ms_arg(v);
			have_hs = true;
		} else
			usage();
	}
	if (opt.listen == NULL || opt.connect == NULL || !have_delay)
		usage();
	if (!have_hs)
		opt.handshake_ns = 3 * opt.delay_ns;
	if (parse_addr(opt.connect, &dst, &dstlen) < 0 || parse_addr(opt.listen, &ls, &llen) < 0) {
		fprintf(stderr, "delay: bad address\n");
		return 2;
	}
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1");
	lfd = socket(ls.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		die("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&ls, llen) < 0 || listen(lfd, 4096) < 0)
		die(opt.listen);
	if ((tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0)
		die("timerfd_create");
	if ((sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0)
		die("signalfd");
	memset(&e, 0, sizeof(e));
	e.events = EPOLLIN;
	e.data.ptr = &tag_listen;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &e) < 0)
		die("epoll_ctl");
	e.data.ptr = &tag_timer;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &e) < 0)
		die("epoll_ctl");
	e.data.ptr = &tag_signal;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &e) < 0)
		die("epoll_ctl");
	printf("ready\n");
	fflush(stdout);

	for (;;) {
		int n = epoll_wait(ep, evs, DL_EVENTS, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int i = 0; i < n; i++) {
			void *tag = evs[i].data.ptr;
			if (tag == &tag_listen) {
				accept_all();
			} else if (tag == &tag_timer) {
				uint64_t x;
				if (read(tfd, &x, sizeof(x)) < 0 && errno != EAGAIN)
					die("timerfd read");
				timer_armed = 0;
			} else if (tag == &tag_signal) {
				struct signalfd_siginfo si;
				while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
					write_stats();
					if (si.ssi_signo != SIGUSR1)
						return 0;
				}
			}
		}
		/* Sides: a pair closed by an earlier event in this batch has fd -1
		 * and is not freed before the batch ends (refs or the check below). */
		for (int i = 0; i < n; i++) {
			void *tag = evs[i].data.ptr;
			if (tag == &tag_listen || tag == &tag_timer || tag == &tag_signal)
				continue;
			struct side *s = tag;
			struct pair *p = s->p;
			if (p->dead || s->fd < 0)
				continue;
			if (s->idx == 1 && p->connecting) {
				connect_done(s);
				continue;
			}
			if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
				if (!flush(&p->d[1 - s->idx]))
					continue;
			if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				read_side(s);
		}
		run_due();
		arm_timer();
		while (grave != NULL) {
			struct pair *p = grave;
			grave = p->gnext;
			free(p);
		}
	}
}
