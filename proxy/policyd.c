/*
 * policyd: the policy process (policyd.h): clients handed over the control
 * socket, one request per packet, answers from the cache or the validating
 * resolver. Nothing here blocks: sockets are non-blocking, and an answer a
 * client's socket cannot take right now is dropped (the client's own
 * timeout covers it) and counted.
 */
#include "starttlsd/policyd.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "starttlsd/config.h"
#include "starttlsd/log.h"

#define PD_MAX_CLIENTS 256

struct pd_client {
	struct pd_client *next;
	uint64_t id;
	int fd;
	ev_io io;
};

/* Someone waiting for an answer in flight. */
struct pd_waiter {
	struct pd_waiter *next;
	uint64_t client;
	uint32_t seq;
};

/* One question in flight, with everyone waiting for it. */
struct pd_flight {
	struct pd_flight *next;
	enum pd_kind kind;
	uint16_t port;
	char name[PD_NAME_MAX + 1];
	struct pd_waiter *waiters;
};

static struct {
	struct ev_loop *loop;
	struct resolver *res;
	struct pd_cache *cache;
	struct pd_client *clients;
	size_t nclients;
	uint64_t next_client;
	struct pd_flight *flights;
	ev_io ctl_io;
	int ctl;
	uint64_t dropped;       /* answers a client could not take */
	uint64_t asked;         /* questions sent to the resolver */
} pd;

static uint64_t
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec;
}

static struct pd_client *
client_find(uint64_t id)
{
	for (struct pd_client *c = pd.clients; c != NULL; c = c->next)
		if (c->id == id)
			return c;
	return NULL;
}

static void
client_close(struct pd_client *c)
{
	struct pd_client **pp;

	for (pp = &pd.clients; *pp != c; pp = &(*pp)->next)
		;
	*pp = c->next;
	ev_io_stop(pd.loop, &c->io);
	close(c->fd);
	pd.nclients--;
	free(c);   /* its waiters find no client and are skipped */
}

/* Send one packet to a client; an answer it cannot take now is dropped. */
static void
client_send(uint64_t id, const uint8_t *pkt, size_t len)
{
	struct pd_client *c = client_find(id);

	if (c == NULL)
		return;
	if (send(c->fd, pkt, len, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)len) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
			pd.dropped++;
		else
			client_close(c);
	}
}

/* The cached payload with this asker's seq and the cached flag and TTL left. */
static void
send_cached(uint64_t client, uint32_t seq, const uint8_t *ans, size_t len,
    uint32_t ttl_left)
{
	uint8_t pkt[PD_MSG_MAX];
	struct pd_ans a;

	if (len > sizeof(pkt) || pd_ans_decode(ans, len, &a) != 0)
		return;
	len = pd_ans_encode(seq, a.kind, a.status, a.flags | PD_F_CACHED,
	    ttl_left, a.rdata, a.rdlen, a.nrr, pkt, sizeof(pkt));
	if (len > 0)
		client_send(client, pkt, len);
}

static void
on_resolved(void *arg, const struct res_answer *ra)
{
	struct pd_flight *f = arg, **pp;
	uint8_t pkt[PD_MSG_MAX];
	size_t len;
	uint32_t ttl = pd_cache_ttl(ra->status, ra->ttl);

	for (pp = &pd.flights; *pp != f; pp = &(*pp)->next)
		;
	*pp = f->next;
	len = pd_ans_encode(0, f->kind, ra->status, 0, ttl, ra->rdata,
	    ra->rdlen, ra->nrr, pkt, sizeof(pkt));
	if (len > 0) {
		pd_cache_put(pd.cache, f->kind, f->port, f->name, ra->status,
		    ra->ttl, pkt, len, now_s());
		while (f->waiters != NULL) {
			struct pd_waiter *w = f->waiters;
			f->waiters = w->next;
			send_cached(w->client, w->seq, pkt, len, ttl);
			free(w);
		}
	}
	while (f->waiters != NULL) {
		struct pd_waiter *w = f->waiters;
		f->waiters = w->next;
		free(w);
	}
	if (ra->status == RES_BOGUS || ra->status == RES_ERROR)
		log_msg(LOG_WARNING, "policyd", "%s %s: %s%s%s", pd_kind_str(f->kind),
		    ra->qname, res_status_str(ra->status), ra->why ? ": " : "",
		    ra->why ? ra->why : "");
	free(f);
}

/* Answer from the cache, join a flight, or start one. */
static void
handle(uint64_t client, const struct pd_req *rq)
{
	static const int qtype[] = { 0, RES_T_TLSA, RES_T_MX, RES_T_A, RES_T_AAAA };
	const uint8_t *ans;
	size_t len;
	uint32_t left;
	struct pd_flight *f;
	struct pd_waiter *w;
	uint16_t port = rq->kind == PD_TLSA ? rq->port : 0;

	ans = pd_cache_get(pd.cache, rq->kind, port, rq->name, now_s(), &len,
	    &left);
	if (ans != NULL) {
		send_cached(client, rq->seq, ans, len, left);
		return;
	}
	for (f = pd.flights; f != NULL; f = f->next)
		if (f->kind == rq->kind && f->port == port &&
		    strcmp(f->name, rq->name) == 0)
			break;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return;
	w->client = client;
	w->seq = rq->seq;
	if (f == NULL) {
		uint64_t id;

		f = calloc(1, sizeof(*f));
		if (f == NULL) {
			free(w);
			return;
		}
		f->kind = rq->kind;
		f->port = port;
		memcpy(f->name, rq->name, sizeof(f->name));
		f->next = pd.flights;
		pd.flights = f;
		pd.asked++;
		id = rq->kind == PD_TLSA ?
		    resolver_tlsa(pd.res, rq->name, port, on_resolved, f) :
		    resolver_query(pd.res, rq->name, qtype[rq->kind], on_resolved,
		    f);
		if (id == 0) {
			/* Not even asked: an error answer, not cached. */
			uint8_t pkt[64];
			size_t n = pd_ans_encode(rq->seq, rq->kind, RES_ERROR, 0, 0,
			    NULL, NULL, 0, pkt, sizeof(pkt));
			pd.flights = f->next;
			free(f);
			free(w);
			if (n > 0)
				client_send(client, pkt, n);
			return;
		}
	}
	w->next = f->waiters;
	f->waiters = w;
}

static void
client_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct pd_client *c = io->data;
	uint8_t pkt[PD_MSG_MAX];
	struct pd_req rq;
	uint64_t id = c->id;
	int budget = 64;   /* then let the others in */

	while (budget-- > 0) {
		ssize_t n = recv(c->fd, pkt, sizeof(pkt), MSG_DONTWAIT | MSG_TRUNC);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			client_close(c);   /* the worker is gone */
			return;
		}
		if ((size_t)n > sizeof(pkt) || pd_req_decode(pkt, (size_t)n, &rq) != 0) {
			log_msg(LOG_ERR, "policyd", "malformed request (%zd bytes): "
			    "client dropped", n);
			client_close(c);
			return;
		}
		handle(id, &rq);
		/* handle() may have closed c (a failed send): look again. */
		if (client_find(id) == NULL)
			return;
	}
}

/* A packet on the control socket carries a client fd, or EOF: the master is gone. */
static void
ctl_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	char byte;
	struct iovec iov = { &byte, 1 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
	    .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm;
	struct pd_client *c;
	ssize_t r;
	int fd = -1;

	r = recvmsg(pd.ctl, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0) {
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	for (cm = CMSG_FIRSTHDR(&m); cm != NULL; cm = CMSG_NXTHDR(&m, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
		    cm->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	if (fd < 0)
		return;
	if (pd.nclients >= PD_MAX_CLIENTS || (c = calloc(1, sizeof(*c))) == NULL) {
		log_msg(LOG_ERR, "policyd", "client refused (%zu clients)",
		    pd.nclients);
		close(fd);
		return;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	c->fd = fd;
	c->id = ++pd.next_client;
	c->next = pd.clients;
	pd.clients = c;
	pd.nclients++;
	ev_io_init(&c->io, client_cb, fd, EV_READ);
	c->io.data = c;
	ev_io_start(loop, &c->io);
}

pid_t
policyd_spawn(const struct policyd_opts *opts, int (*drop)(void *),
    void *arg, bool log_stderr, int *ctl_out)
{
	int sp[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
		return -1;
	if ((pid = fork()) < 0) {
		close(sp[0]);
		close(sp[1]);
		return -1;
	}
	if (pid == 0) {
		/*
		 * Nothing of the master's but the control socket: not its
		 * listeners (a copy would keep a closed listener queueing
		 * connections), pipes or syslog socket (reopened below).
		 */
		log_close();
		if (dup2(sp[1], 3) < 0)
			_exit(1);
		close_range(4, ~0U, 0);
		log_open(log_stderr, true);
		if (drop(arg) < 0)
			_exit(1);
		policyd_main(3, opts);
	}
	close(sp[1]);
	*ctl_out = sp[0];
	return pid;
}

pid_t
policyd_start(const struct config *cfg, int (*drop)(void *), void *arg,
    int *ctl_out)
{
	struct policyd_opts o;
	pid_t pid;

	memset(&o, 0, sizeof(o));
	o.resolver.trust_anchor_file = cfg->trust_anchor_file;
	for (size_t i = 0; i < cfg->resolvers.n && i < RESOLVER_MAX_FWD; i++)
		o.resolver.forwarders[o.resolver.nforwarders++] =
		    cfg->resolvers.item[i];
	pid = policyd_spawn(&o, drop, arg, cfg->log_stderr, ctl_out);
	if (pid < 0)
		log_msg(LOG_ERR, "policyd", "not started: %s", strerror(errno));
	return pid;
}

void
policyd_main(int ctl, const struct policyd_opts *opts)
{
	char err[512];

	/* The master's signal handlers and loop are not ours. */
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	memset(&pd, 0, sizeof(pd));
	pd.ctl = ctl;
	pd.loop = ev_loop_new(EVFLAG_AUTO);
	pd.cache = pd_cache_new(PD_CACHE_MAX);
	if (pd.loop == NULL || pd.cache == NULL) {
		log_msg(LOG_ERR, "policyd", "out of memory");
		_exit(1);
	}
	pd.res = resolver_new(pd.loop, &opts->resolver, err, sizeof(err));
	if (pd.res == NULL) {
		log_msg(LOG_ERR, "policyd", "resolver: %s", err);
		_exit(1);
	}
	ev_io_init(&pd.ctl_io, ctl_cb, ctl, EV_READ);
	ev_io_start(pd.loop, &pd.ctl_io);
	log_msg(LOG_INFO, "policyd", "started");
	ev_run(pd.loop, 0);

	/* The master is gone: tidy up (valgrind and LSan look). */
	while (pd.clients != NULL)
		client_close(pd.clients);
	resolver_free(pd.res);   /* pending flights get no callback */
	while (pd.flights != NULL) {
		struct pd_flight *f = pd.flights;
		pd.flights = f->next;
		while (f->waiters != NULL) {
			struct pd_waiter *w = f->waiters;
			f->waiters = w->next;
			free(w);
		}
		free(f);
	}
	pd_cache_free(pd.cache);
	ev_io_stop(pd.loop, &pd.ctl_io);
	ev_loop_destroy(pd.loop);
	close(ctl);
	log_msg(LOG_INFO, "policyd", "exiting (%llu questions asked, %llu "
	    "answers dropped)", (unsigned long long)pd.asked,
	    (unsigned long long)pd.dropped);
	exit(0);
}
