/*
 * fuzz_session: a whole relayed session, driven from two byte streams.
 *
 * The real session code (sess_start: proxy/session.c, upstream.c, conn.c)
 * runs in this process on a libev loop, in smarthost mode towards a
 * 127.0.0.1 listener the harness owns. The client leg is a socketpair. The
 * fuzzer's input says what the client and what the server write, in which
 * order, and when either half-closes; the loop runs between writes, and
 * the harness reads whatever starttlsd sends to either side.
 *
 * Input: 1 flag byte (bit 0: tight limits: max_line_length 512,
 * buffer_size 16k, max_reply_lines 4, max_errors 5; bit 1: let the server
 * offer STARTTLS, see below), then records, at most STEPS_MAX of them:
 *   op & 7 = 0..2  client writes LEN bytes
 *   op & 7 = 3..5  server writes LEN bytes
 *   op & 7 = 6     the client (op & 8) or the server: half-close (FIN);
 *                  with op & 0x30: the client closes, the server resets
 *                  (0x20) or closes (0x10)
 *   op & 7 = 7     run the loop (op >> 3) + 1 more rounds
 * LEN is the next byte, or the next two (little endian) when op & 0x80.
 * After each record the loop runs ROUNDS rounds, except when op & 0x40
 * (op & 7 < 7): then the next record's bytes arrive together with these.
 *
 * STARTTLS: the harness speaks no TLS. Unless bit 1 is set, a "STARTTLS"
 * in what the server writes before the session is relaying is defused
 * (its 'S' becomes 'X'), so the server leg stays plaintext; with bit 1,
 * starttlsd's STARTTLS reaches the fake server, whose next bytes break the
 * handshake: the fallback reconnect (a second accepted connection) runs.
 *
 * Invariants:
 *  - every 2xx/3xx reply line the client gets is a line the server sent
 *    (session.c's promise; the EHLO filter only changes '-'/' ' and drops
 *    STARTTLS lines), the LAN-leg "220 2.0.0 Ready to start TLS" excepted;
 *  - what the server gets after starttlsd's own EHLO/HELO is made of client
 *    bytes only, in order (a subsequence of the client's stream): nothing
 *    is invented or reordered;
 *  - once both peers have closed, the session ends: no session, no active
 *    libev watcher and no file descriptor is left (ASan/LSan check memory).
 *
 * FUZZ_STRICT=1: also fail on the known issues listed in
 * tests/fuzz/crashes/README.md (by default they are steered around or
 * tolerated, so fuzzing can go on). FUZZ_TRACE=1: both dialogues on
 * stderr. FUZZ_LOG=1: starttlsd's log lines on stderr.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "starttlsd/config.h"
#include "starttlsd/log.h"
#include "starttlsd/policy.h"
#include "starttlsd/session.h"
#include "starttlsd/smtp.h"
#include "starttlsd/tls.h"
#include "fuzz.h"

#define STEPS_MAX 256
#define ROUNDS 4          /* loop rounds after each record */
#define SRV_MAX 4         /* upstream connections kept per session */
#define HELO_NAME "fuzz.example.org"
#define PEND_FLUSH 70000  /* > any max_line_length: flush unterminated */
#define RX_MAX (1u << 20) /* bytes kept of what each side received */

/* A recipient policy, so RCPT gets local 450s and DATA a 451. */
static const char policy_text[] =
    "secure.example    encrypt mode=enforce\n"
    ".pinned.example   encrypt mode=enforce\n"
    "example.net       verify  mx=mx1.example.net\n"
    "203.0.113.0/24    none\n";

struct acc {
	char *p;
	size_t len, cap;
	bool cut;            /* acc_keep() stopped at RX_MAX */
};

struct srv {
	int fd;              /* -1: closed by us */
	bool rd_eof;         /* starttlsd closed its end */
	bool wr_shut;
	struct acc part;     /* the server's current unterminated line */
	struct acc pend;     /* defused lines not yet written */
	struct acc rx;       /* what starttlsd sent to this server */
	struct acc tx;       /* what this server wrote (RX_MAX at most) */
};

struct line {
	char *p;
	size_t len;
};

struct run {
	int cfd;
	bool c_eof, c_shut;
	bool relaying;       /* the client got a byte: negotiation is over */
	bool defuse;
	const struct sess_env *env;
	bool closing;        /* settle(): new connections are closed at once */
	struct srv srv[SRV_MAX];
	size_t nsrv;
	struct acc cpart;    /* the client's current unterminated line */
	struct acc ctx;      /* every byte the client wrote */
	struct acc crx;      /* what the client received (RX_MAX at most) */
	struct line *sent;   /* normalised server lines */
	size_t nsent, capsent;
};

static struct ev_loop *loop;
static int lfd = -1;
static struct sess_env *envs[2];
static int base_fds;
static bool strict;  /* FUZZ_STRICT: no tolerance for known, reported issues */

/* ---- small helpers ---------------------------------------------------------- */

static void
acc_add(struct acc *a, const char *p, size_t n)
{
	if (n == 0)
		return;
	if (a->len + n > a->cap) {
		size_t cap = a->cap ? a->cap : 256;
		while (cap < a->len + n)
			cap *= 2;
		if ((a->p = realloc(a->p, cap)) == NULL)
			abort();
		a->cap = cap;
	}
	memcpy(a->p + a->len, p, n);
	a->len += n;
}

/* A record of what a side received or sent: all of it, or cut. */
static void
acc_keep(struct acc *a, const char *p, size_t n)
{
	if (a->cut || a->len + n > RX_MAX)
		a->cut = true;
	else
		acc_add(a, p, n);
}

static void
acc_drop(struct acc *a, size_t n)
{
	memmove(a->p, a->p + n, a->len - n);
	a->len -= n;
}

static void
acc_free(struct acc *a)
{
	free(a->p);
	a->p = NULL;
	a->len = a->cap = 0;
}

static int
count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		abort();
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own */
}

/*
 * A reply line without its line end, and with the separator after the
 * code taken out: "250-X", "250 X" are "250X"; "250", "250-", "250 " are
 * "250". The EHLO filter may change the separator, never anything else.
 */
static size_t
normalise(const char *p, size_t n, char *out)
{
	if (n > 0 && p[n - 1] == '\n')
		n--;
	if (n > 0 && p[n - 1] == '\r')
		n--;
	if (n >= 4 && (p[3] == ' ' || p[3] == '-')) {
		memcpy(out, p, 3);
		memcpy(out + 3, p + 4, n - 4);
		return n - 1;
	}
	memcpy(out, p, n);
	return n;
}

static void
sent_add(struct run *r, const char *p, size_t n)
{
	struct line *l;

	if (r->nsent == r->capsent) {
		r->capsent = r->capsent ? 2 * r->capsent : 64;
		if ((r->sent = realloc(r->sent, r->capsent * sizeof(*r->sent))) ==
		    NULL)
			abort();
	}
	l = &r->sent[r->nsent++];
	if ((l->p = malloc(n + 1)) == NULL)
		abort();
	l->len = normalise(p, n, l->p);
}

static bool
sent_has(const struct run *r, const char *p, size_t n)
{
	for (size_t i = 0; i < r->nsent; i++)
		if (r->sent[i].len == n && memcmp(r->sent[i].p, p, n) == 0)
			return true;
	return false;
}

/* Feed bytes into a line splitter; cb for each complete line. */
static void
lines(struct acc *part, const char *p, size_t n, struct run *r,
    void (*cb)(struct run *, const char *, size_t))
{
	while (n > 0) {
		const char *lf = memchr(p, '\n', n);
		size_t k = lf ? (size_t)(lf - p) + 1 : n;

		acc_add(part, p, k);
		if (lf != NULL) {
			cb(r, part->p, part->len);
			part->len = 0;
		}
		p += k;
		n -= k;
	}
}

static void
server_line(struct run *r, const char *p, size_t n)
{
	sent_add(r, p, n);
}

static void
client_line(struct run *r, const char *p, size_t n)
{
	static const char tls220[] = "220 2.0.0 Ready to start TLS\r\n";
	char *norm;
	size_t k;

	if (n == 0 || (p[0] != '2' && p[0] != '3'))
		return;
	if (n == sizeof(tls220) - 1 && memcmp(p, tls220, n) == 0)
		return;
	if ((norm = malloc(n)) == NULL)
		abort();
	k = normalise(p, n, norm);
	if (!sent_has(r, norm, k)) {
		fuzz_dump("client got", p, n);
		for (size_t i = 0; i < r->nsent; i++)
			fuzz_dump("server sent (normalised)", r->sent[i].p,
			    r->sent[i].len);
		FUZZ_CHECK(0, "a 2xx/3xx line the server never sent reached "
		    "the client");
	}
	free(norm);
}

/* ---- the two peers ---------------------------------------------------------------- */

static void
accept_new(struct run *r)
{
	int fd, one = 1;

	while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		if (r == NULL || r->nsrv == SRV_MAX) {
			close(fd);
			continue;
		}
		/* No Nagle: each record goes out as written. */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		memset(&r->srv[r->nsrv], 0, sizeof(r->srv[0]));
		r->srv[r->nsrv++].fd = fd;
	}
}

static void
drain(struct run *r)
{
	char b[16384];
	ssize_t n = -1;

	while (r->cfd >= 0 && !r->c_eof &&
	    (n = read(r->cfd, b, sizeof(b))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				r->c_eof = true;
			break;
		}
		r->relaying = true;
		acc_keep(&r->crx, b, (size_t)n);
		lines(&r->cpart, b, (size_t)n, r, client_line);
	}
	if (r->cfd >= 0 && n == 0)
		r->c_eof = true;
	for (size_t i = 0; i < r->nsrv; i++) {
		struct srv *s = &r->srv[i];

		while (s->fd >= 0 && !s->rd_eof) {
			n = read(s->fd, b, sizeof(b));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				if (n == 0 || errno != EAGAIN)
					s->rd_eof = true;
				break;
			}
			acc_keep(&s->rx, b, (size_t)n);
		}
	}
}

static void
pump(struct run *r, unsigned rounds)
{
	for (unsigned i = 0; i < rounds; i++) {
		ev_run(loop, EVRUN_NOWAIT);
		accept_new(r->closing ? NULL : r);
		drain(r);
	}
}

/* Write what fits, running the loop when the socket is full; returns how much. */
static size_t
put(struct run *r, int fd, const char *p, size_t n)
{
	size_t off = 0;
	unsigned stuck = 0;

	while (off < n && fd >= 0) {
		ssize_t k = write(fd, p + off, n - off);

		if (k > 0) {
			off += (size_t)k;
			stuck = 0;
			continue;
		}
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno == EAGAIN && ++stuck < 16) {
			pump(r, 1);
			continue;
		}
		break; /* EPIPE, ECONNRESET, or starttlsd stopped reading */
	}
	return off;
}

static void
client_send(struct run *r, const char *p, size_t n)
{
	size_t k;

	if (r->c_shut)
		return;
	k = put(r, r->cfd, p, n);
	acc_keep(&r->ctx, p, k);
}

static struct srv *
current_srv(struct run *r)
{
	if (r->nsrv == 0)
		pump(r, ROUNDS);
	return r->nsrv ? &r->srv[r->nsrv - 1] : NULL;
}

/* Server bytes as written: recorded line by line. */
static void
srv_put(struct run *r, struct srv *s, const char *p, size_t n)
{
	size_t k = s->wr_shut ? 0 : put(r, s->fd, p, n);

	lines(&s->part, p, k, r, server_line);
	acc_keep(&s->tx, p, k);
}

static void
defuse(char *p, size_t n)
{
	for (size_t i = 0; i + 8 <= n; i++)
		if (strncasecmp(p + i, "STARTTLS", 8) == 0)
			p[i] = 'X';
}

static void
server_send(struct run *r, const char *p, size_t n)
{
	struct srv *s = current_srv(r);
	const char *lf;
	size_t k;

	if (s == NULL || s->fd < 0)
		return;
	if (!r->defuse || r->relaying) {
		if (s->pend.len > 0) {
			srv_put(r, s, s->pend.p, s->pend.len);
			s->pend.len = 0;
		}
		srv_put(r, s, p, n);
		return;
	}
	/* Whole lines only, so no "STARTTLS" is split across writes. */
	acc_add(&s->pend, p, n);
	lf = s->pend.len ? memrchr(s->pend.p, '\n', s->pend.len) : NULL;
	k = lf ? (size_t)(lf - s->pend.p) + 1 :
	    s->pend.len > PEND_FLUSH ? s->pend.len : 0;
	if (k == 0)
		return;
	defuse(s->pend.p, k);
	srv_put(r, s, s->pend.p, k);
	acc_drop(&s->pend, k);
}

/*
 * The client half-closes (op & 0x30 == 0) or goes away altogether, unread
 * replies and all.
 */
static void
client_close(struct run *r, unsigned op)
{
	if (r->cfd < 0)
		return;
	if ((op & 0x30) == 0) {
		if (!r->c_shut)
			shutdown(r->cfd, SHUT_WR);
		r->c_shut = true;
		return;
	}
	close(r->cfd);
	r->cfd = -1;
	r->c_shut = r->c_eof = true;
}

/*
 * The server half-closes (FIN; op & 0x30 == 0), resets (RST at once,
 * SO_LINGER 0; op & 0x20), or closes (FIN, then RST to whatever starttlsd
 * still writes; op & 0x10).
 */
static void
server_close(struct run *r, unsigned op)
{
	struct srv *s = current_srv(r);
	struct linger lg = { 1, 0 };

	if (s == NULL || s->fd < 0)
		return;
	if (op & 0x30) {
		if (op & 0x20)
			setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(s->fd);
		s->fd = -1;
		s->rd_eof = s->wr_shut = true;
		return;
	}
	if (!s->wr_shut)
		shutdown(s->fd, SHUT_WR);
	s->wr_shut = true;
}

/* ---- set-up ------------------------------------------------------------------------ */

/* What proxy/main.c's env_new() builds, for a numeric smarthost. */
static struct sess_env *
env_make(unsigned port, bool tight)
{
	char up[32], err[512];
	const char *args[32];
	char *argv[32];
	int argc = 0;
	enum config_result rc;
	struct config cfg;
	struct sess_env *e;

	snprintf(up, sizeof(up), "127.0.0.1:%u", port);
	args[argc++] = "starttlsd";
	args[argc++] = "--upstream";
	args[argc++] = up;
	args[argc++] = "--state-dir";
	args[argc++] = "";
	args[argc++] = "--helo-name";
	args[argc++] = HELO_NAME;
	args[argc++] = "--upstream-mark";
	args[argc++] = "0";
	if (tight) {
		args[argc++] = "--max-line-length";
		args[argc++] = "512";
		args[argc++] = "--buffer-size";
		args[argc++] = "16k";
		args[argc++] = "--max-reply-lines";
		args[argc++] = "4";
		args[argc++] = "--max-errors";
		args[argc++] = "5";
	}
	for (int i = 0; i < argc; i++)
		if ((argv[i] = strdup(args[i])) == NULL)
			abort();
	argv[argc] = NULL;
	rc = config_load(&cfg, argc, argv, err, sizeof(err));
	for (int i = 0; i < argc; i++)
		free(argv[i]);
	if (rc != CONFIG_OK) {
		fprintf(stderr, "fuzz_session: config: %s\n", err);
		abort();
	}
	/* The daemon's own constructor; only the policy comes from memory. */
	if ((e = sess_env_new(&cfg, NULL, err, sizeof(err))) == NULL) {
		fprintf(stderr, "fuzz_session: env: %s\n", err);
		abort();
	}
	policy_free(&e->policy);
	if (policy_parse(policy_text, sizeof(policy_text) - 1, &e->policy, err,
	    sizeof(err)) < 0) {
		fprintf(stderr, "fuzz_session: policy: %s\n", err);
		abort();
	}
	return e;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sin);

	(void)argc;
	(void)argv;
	signal(SIGPIPE, SIG_IGN);
	strict = getenv("FUZZ_STRICT") != NULL;
	/* FUZZ_LOG=1: starttlsd's own log lines on stderr. */
	log_open(getenv("FUZZ_LOG") != NULL, false);
	if ((loop = ev_loop_new(EVFLAG_AUTO)) == NULL)
		abort();
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0)) < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(lfd, 64) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sin, &sl) < 0) {
		perror("fuzz_session: listener");
		abort();
	}
	envs[0] = env_make(ntohs(sin.sin_port), false);
	envs[1] = env_make(ntohs(sin.sin_port), true);
	return 0;
}

/* ---- the checks at the end ----------------------------------------------------------- */

/* Is a[0..an) a subsequence of b[0..bn)? */
static bool
subsequence(const char *a, size_t an, const char *b, size_t bn)
{
	size_t i = 0;

	for (size_t j = 0; i < an && j < bn; j++)
		if (a[i] == b[j])
			i++;
	return i == an;
}

/* Nothing reached the server that the client did not send. */
static void
check_forwarded(const struct run *r)
{
	static const char *const own[] = {
		"EHLO " HELO_NAME "\r\n", "HELO " HELO_NAME "\r\n",
	};

	for (size_t i = 0; i < r->nsrv; i++) {
		const struct srv *s = &r->srv[i];
		size_t off = 0;
		bool more = true;

		if (s->rx.len == 0 || s->rx.cut || r->ctx.cut)
			continue; /* nothing, or not all kept */
		while (more) {
			more = false;
			for (size_t k = 0; k < 2; k++) {
				size_t n = strlen(own[k]);
				if (s->rx.len - off >= n &&
				    memcmp(s->rx.p + off, own[k], n) == 0) {
					off += n;
					more = true;
				}
			}
		}
		/* After its STARTTLS comes a ClientHello: not relay bytes. */
		if (s->rx.len - off >= 10 &&
		    memcmp(s->rx.p + off, "STARTTLS\r\n", 10) == 0)
			continue;
		if (!subsequence(s->rx.p + off, s->rx.len - off, r->ctx.p,
		    r->ctx.len)) {
			fuzz_dump("server got", s->rx.p, s->rx.len);
			fuzz_dump("client sent", r->ctx.p, r->ctx.len);
			FUZZ_CHECK(0, "the server (connection %zu) got bytes the "
			    "client never sent", i);
		}
	}
}

/* FUZZ_TRACE=1 in the environment: both dialogues on stderr. */
static void
trace(const struct run *r)
{
	static int on = -1;

	if (on < 0)
		on = getenv("FUZZ_TRACE") != NULL;
	if (!on)
		return;
	fuzz_dump("client sent", r->ctx.p, r->ctx.len);
	fuzz_dump("client got", r->crx.p, r->crx.len);
	for (size_t i = 0; i < r->nsrv; i++)
		fuzz_dump("server got", r->srv[i].rx.p, r->srv[i].rx.len);
}

static void
run_free(struct run *r)
{
	for (size_t i = 0; i < r->nsrv; i++) {
		acc_free(&r->srv[i].part);
		acc_free(&r->srv[i].pend);
		acc_free(&r->srv[i].rx);
		acc_free(&r->srv[i].tx);
	}
	for (size_t i = 0; i < r->nsent; i++)
		free(r->sent[i].p);
	free(r->sent);
	acc_free(&r->cpart);
	acc_free(&r->ctx);
	acc_free(&r->crx);
}

static void
settle(struct run *r)
{
	unsigned i;

	/*
	 * The server goes first, so the client can still read the 421: a
	 * FIN, time to take it in, then the close.
	 */
	for (size_t k = 0; k < r->nsrv; k++)
		if (r->srv[k].fd >= 0 && !r->srv[k].wr_shut) {
			shutdown(r->srv[k].fd, SHUT_WR);
			r->srv[k].wr_shut = true;
		}
	r->closing = true;
	pump(r, ROUNDS);
	drain(r);
	for (size_t k = 0; k < r->nsrv; k++)
		if (r->srv[k].fd >= 0) {
			close(r->srv[k].fd);
			r->srv[k].fd = -1;
		}
	accept_new(NULL);
	pump(r, ROUNDS);
	if (r->cfd >= 0)
		close(r->cfd);
	r->cfd = -1;
	for (i = 0; i < 200 && sess_count() > 0; i++) {
		ev_run(loop, EVRUN_NOWAIT);
		accept_new(NULL);
	}
}

/*
 * Did the server's stream (the connection the session relays on) end
 * inside a reply? starttlsd then has an incomplete reply buffered when the
 * server's EOF comes, and sess_pump() only fails the server leg on EOF
 * with an empty buffer: the session waits for reply_timeout (5 minutes by
 * default) instead of ending. Reported (tests/fuzz/crashes/README.md);
 * tolerated here unless FUZZ_STRICT is set, so the fuzzer can go on.
 */
static bool
ended_mid_reply(const struct run *r)
{
	const struct srv *s;
	struct smtp_reply rep;
	size_t pos = 0;

	if (r->nsrv == 0)
		return false;
	s = &r->srv[r->nsrv - 1];
	if (s->tx.cut)
		return true; /* not all kept: cannot tell */
	while (pos < s->tx.len) {
		switch (smtp_reply_parse(s->tx.p + pos, s->tx.len - pos,
		    r->env->up.max_line, r->env->up.max_lines, &rep)) {
		case SMTP_PARSE_OK:
			pos += rep.len;
			continue;
		case SMTP_PARSE_NEED_MORE:
			return true;
		case SMTP_PARSE_ERROR:
			return false;
		}
	}
	return false;
}

/* Once both peers have closed, nothing of the session may remain. */
static void
check_gone(const struct run *r)
{
	if (sess_count() > 0 && !strict && ended_mid_reply(r)) {
		static bool said;
		if (!said)
			fprintf(stderr, "fuzz_session: known issue tolerated: "
			    "server EOF inside a reply leaves the session until "
			    "reply_timeout (FUZZ_STRICT=1 to fail on it)\n");
		said = true;
		sess_close_all("fuzz: known issue, server EOF inside a reply");
	}
	for (int i = 0; i < 50 && sess_count() > 0; i++) {
		/* Give the kernel a moment (a connect still in flight). */
		usleep(2000);
		ev_run(loop, EVRUN_NOWAIT);
		accept_new(NULL);
	}
	FUZZ_CHECK(sess_count() == 0, "%u session(s) left after both peers "
	    "closed", sess_count());
	FUZZ_CHECK(ev_run(loop, EVRUN_NOWAIT) == 0,
	    "libev watchers still active after the session ended");
	if (count_fds() != base_fds) {
		DIR *d = opendir("/proc/self/fd");
		struct dirent *e;
		char path[300], to[256];

		while (d != NULL && (e = readdir(d)) != NULL) {
			ssize_t n;
			snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
			if ((n = readlink(path, to, sizeof(to) - 1)) > 0) {
				to[n] = '\0';
				fprintf(stderr, "==fuzz== fd %s -> %s\n", e->d_name, to);
			}
		}
		if (d != NULL)
			closedir(d);
		FUZZ_CHECK(0, "%d file descriptors, %d before", count_fds(),
		    base_fds);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_in client = { .sin_family = AF_INET };
	struct run r;
	size_t p = 1;
	int sv[2];

	if (size < 1)
		return 0;
	/* Counted per input: libFuzzer itself opens pipes between inputs. */
	base_fds = count_fds();
	memset(&r, 0, sizeof(r));
	r.defuse = !(data[0] & 2);
	r.env = envs[data[0] & 1];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
	    sv) < 0)
		abort();
	r.cfd = sv[0];
	client.sin_port = htons(40025);
	client.sin_addr.s_addr = htonl(0xc0000201); /* 192.0.2.1 */
	sess_start(loop, envs[data[0] & 1], sv[1], (struct sockaddr *)&client,
	    (struct sockaddr *)&envs[0]->upstream_addr,
	    envs[0]->upstream_len, SESS_ACCEPT);
	pump(&r, ROUNDS);

	for (unsigned step = 0; step < STEPS_MAX && p < size; step++) {
		unsigned op = data[p++], kind = op & 7;
		size_t len = 0;

		if (kind <= 5) {
			if (op & 0x80) {
				if (p + 2 > size)
					break;
				len = (size_t)data[p] | (size_t)data[p + 1] << 8;
				p += 2;
			} else {
				if (p + 1 > size)
					break;
				len = data[p++];
			}
			if (len > size - p)
				len = size - p;
		}
		switch (kind) {
		case 0: case 1: case 2:
			client_send(&r, (const char *)data + p, len);
			break;
		case 3: case 4: case 5:
			server_send(&r, (const char *)data + p, len);
			break;
		case 6:
			if (op & 8)
				client_close(&r, op);
			else
				server_close(&r, op);
			break;
		case 7:
			pump(&r, (op >> 3) + 1);
			break;
		}
		p += len;
		if (kind == 7 || !(op & 0x40))
			pump(&r, ROUNDS);
	}
	pump(&r, ROUNDS);
	settle(&r);
	trace(&r);
	check_gone(&r);
	check_forwarded(&r);
	run_free(&r);
	return 0;
}
