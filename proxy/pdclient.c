/*
 * pdclient: see pdclient.h. Pending requests live in a fixed table indexed
 * by the low bits of their id, the high bits a generation so a late answer
 * to a reused slot is recognised and dropped. Timeouts: each request has its
 * own deadline; one timer fires for the earliest (a linear scan over the
 * pending ones, which are few: one per session waiting at RCPT).
 */
#include "starttlsd/pdclient.h"

#include <assert.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "starttlsd/log.h"

#define SLOT_BITS 10
#define SLOTS (1u << SLOT_BITS)
_Static_assert(SLOTS == PDC_MAX_PENDING, "table size");

struct pending {
	uint32_t id;              /* 0: free */
	pdc_cb cb;
	void *arg;
	ev_tstamp deadline;
	struct pd_req req;        /* kept to send again after a restart */
};

struct pdclient {
	struct ev_loop *loop;
	int fd;
	ev_io io;
	ev_timer timer;
	unsigned timeout_ms;
	uint32_t gen;
	size_t npending;
	uint64_t dropped_reports;
	struct pending p[SLOTS];
	uint8_t buf[PD_MSG_MAX];
};

void
pdc_addr(const struct sockaddr *sa, struct pd_req_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (sa == NULL)
		return;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		out->family = AF_INET;
		memcpy(out->addr, &in->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		/* A v4-mapped address is the IPv4 address policyd knows. */
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			out->family = AF_INET;
			memcpy(out->addr, in6->sin6_addr.s6_addr + 12, 4);
		} else {
			out->family = AF_INET6;
			memcpy(out->addr, &in6->sin6_addr, 16);
		}
	}
}

/* A made-up answer for a request that cannot get policyd's. */
static void
fail_one(struct pdclient *c, struct pending *p, const char *why)
{
	struct pd_pol pol;
	pdc_cb cb = p->cb;
	void *arg = p->arg;

	memset(&pol, 0, sizeof(pol));
	pol.seq = p->id;
	pol.kind = p->req.kind;
	pol.dane = PD_DANE_TEMPFAIL;
	pol.dane_result = PD_R_VALIDATION_FAILURE;
	pol.why = why;
	pol.mx = pol.sni = pol.sts_id = "";
	pol.sts = PD_STS_NONE;
	p->id = 0;
	c->npending--;
	cb(arg, &pol);
}

static void
timer_arm(struct pdclient *c)
{
	ev_tstamp first = 0;

	ev_timer_stop(c->loop, &c->timer);
	if (c->npending == 0)
		return;
	for (size_t i = 0; i < SLOTS; i++)
		if (c->p[i].id != 0 && (first == 0 || c->p[i].deadline < first))
			first = c->p[i].deadline;
	first -= ev_now(c->loop);
	ev_timer_set(&c->timer, first > 0 ? first : 0.001, 0.);
	ev_timer_start(c->loop, &c->timer);
}

static void
timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct pdclient *c = w->data;
	ev_tstamp now = ev_now(loop);

	(void)revents;
	for (size_t i = 0; i < SLOTS; i++)
		if (c->p[i].id != 0 && c->p[i].deadline <= now)
			fail_one(c, &c->p[i], "policy process timeout");
	timer_arm(c);
}

static bool
send_req(struct pdclient *c, const struct pd_req *req)
{
	uint8_t out[512];
	size_t n = pd_req_encode(req, out, sizeof(out));

	if (n == 0 || c->fd < 0)
		return false;
	return send(c->fd, out, n, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)n;
}

static void
fail_all(struct pdclient *c, const char *why)
{
	for (size_t i = 0; i < SLOTS; i++)
		if (c->p[i].id != 0)
			fail_one(c, &c->p[i], why);
	timer_arm(c);
}

static void
io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct pdclient *c = w->data;

	(void)loop;
	(void)revents;
	for (int rounds = 0; rounds < 64; rounds++) {
		ssize_t n = recv(c->fd, c->buf, sizeof(c->buf), MSG_DONTWAIT);
		struct pd_pol pol;
		struct pending *p;

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			/* policyd is gone: the master restarts it and sends a new socket. */
			log_msg(LOG_WARNING, "policyd", "connection to the policy "
			    "process lost: %s", n == 0 ? "closed" : strerror(errno));
			ev_io_stop(c->loop, &c->io);
			close(c->fd);
			c->fd = -1;
			fail_all(c, "policy process unavailable");
			return;
		}
		if (pd_pol_decode(c->buf, (size_t)n, &pol) < 0)
			continue;  /* not ours to read (a raw answer), or malformed */
		p = &c->p[pol.seq & (SLOTS - 1)];
		if (p->id == 0 || p->id != pol.seq)
			continue;  /* cancelled, or timed out */
		p->id = 0;
		c->npending--;
		p->cb(p->arg, &pol);
	}
}

struct pdclient *
pdc_new(struct ev_loop *loop, int fd, unsigned timeout_ms)
{
	struct pdclient *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->loop = loop;
	c->fd = -1;
	c->timeout_ms = timeout_ms ? timeout_ms : 15000;
	c->gen = 1;
	ev_init(&c->io, io_cb);
	c->io.data = c;
	ev_init(&c->timer, timer_cb);
	c->timer.data = c;
	pdc_set_fd(c, fd);
	return c;
}

void
pdc_set_fd(struct pdclient *c, int fd)
{
	if (c->fd >= 0) {
		ev_io_stop(c->loop, &c->io);
		close(c->fd);
	}
	c->fd = fd;
	if (fd < 0)
		return;
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	ev_io_set(&c->io, fd, EV_READ);
	ev_io_start(c->loop, &c->io);
	for (size_t i = 0; i < SLOTS; i++)
		if (c->p[i].id != 0 && !send_req(c, &c->p[i].req))
			fail_one(c, &c->p[i], "policy process unavailable");
	timer_arm(c);
}

void
pdc_free(struct pdclient *c)
{
	if (c == NULL)
		return;
	ev_io_stop(c->loop, &c->io);
	ev_timer_stop(c->loop, &c->timer);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

uint32_t
pdc_ask(struct pdclient *c, enum pd_kind kind, const char *domain,
    const struct sockaddr *dst, unsigned timeout_ms, pdc_cb cb, void *arg)
{
	struct pending *p = NULL;
	size_t start;

	assert(kind == PD_POLICY || kind == PD_ADDR);
	if (c->npending >= SLOTS)
		return 0;
	/* A free slot, starting where the generation counter points. */
	start = c->gen & (SLOTS - 1);
	for (size_t k = 0; k < SLOTS && p == NULL; k++)
		if (c->p[(start + k) & (SLOTS - 1)].id == 0)
			p = &c->p[(start + k) & (SLOTS - 1)];
	assert(p != NULL);
	memset(&p->req, 0, sizeof(p->req));
	p->req.kind = kind;
	p->req.port = 25;
	if (domain != NULL) {
		size_t n = strlen(domain);
		if (n == 0 || n > PD_NAME_MAX)
			return 0;
		memcpy(p->req.name, domain, n + 1);
	}
	pdc_addr(dst, &p->req.addr);
	c->gen += SLOTS;
	if (c->gen == 0)
		c->gen = SLOTS;
	p->id = (c->gen & ~(uint32_t)(SLOTS - 1)) | (uint32_t)(p - c->p);
	if (p->id == 0)
		p->id = SLOTS;   /* never 0 (slot 0 of a wrapped generation) */
	p->req.seq = p->id;
	p->cb = cb;
	p->arg = arg;
	p->deadline = ev_now(c->loop) +
	    (timeout_ms ? timeout_ms : c->timeout_ms) / 1000.0;
	c->npending++;
	if (c->fd >= 0 && !send_req(c, &p->req)) {
		/* A name policyd would refuse, or a full socket. */
		p->id = 0;
		c->npending--;
		return 0;
	}
	/* No socket now (policyd restarting): wait for pdc_set_fd or the timeout. */
	timer_arm(c);
	return p->req.seq;
}

void
pdc_cancel(struct pdclient *c, uint32_t id)
{
	struct pending *p;

	if (c == NULL || id == 0)
		return;
	p = &c->p[id & (SLOTS - 1)];
	if (p->id != id)
		return;
	p->id = 0;
	c->npending--;
	timer_arm(c);
}

void
pdc_report(struct pdclient *c, const struct pd_report *r)
{
	uint8_t out[1024];
	size_t n = pd_report_encode(r, out, sizeof(out));

	if (n == 0 || c->fd < 0 ||
	    send(c->fd, out, n, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)n)
		c->dropped_reports++;
}
