/*
 * Unit tests for proxy/pdclient.c, the worker's side of the policy process:
 * a fake policyd on the other end of a SOCK_SEQPACKET pair, a real libev
 * loop. Each request gets exactly one callback: the answer with its own
 * sequence number, or a TEMPFAIL made here (timeout, socket closed); a
 * cancelled request none; pending requests are sent again on a new socket.
 */

#include "unit.h"

#include <ev.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "starttlsd/pdclient.h"

struct got {
	int calls;
	enum pd_dane dane;
	char why[128];
	char mx[64];
	uint32_t seq;
};

static void
cb(void *arg, const struct pd_pol *pol)
{
	struct got *g = arg;

	g->calls++;
	g->dane = pol->dane;
	g->seq = pol->seq;
	snprintf(g->why, sizeof(g->why), "%s", pol->why ? pol->why : "");
	snprintf(g->mx, sizeof(g->mx), "%s", pol->mx ? pol->mx : "");
}

static struct sockaddr_in
dst4(const char *a)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(25) };

	assert_int_equal(inet_pton(AF_INET, a, &sin.sin_addr), 1);
	return sin;
}

/* The fake policyd: read one request, return it decoded. */
static void
fake_read(int fd, struct pd_req *req)
{
	uint8_t buf[PD_MSG_MAX];
	ssize_t n = recv(fd, buf, sizeof(buf), 0);

	assert_true(n > 0);
	assert_int_equal(pd_req_decode(buf, (size_t)n, req), 0);
}

static void
fake_answer(int fd, uint32_t seq, enum pd_kind kind, enum pd_dane dane,
    const char *mx)
{
	struct pd_pol pol;
	uint8_t buf[PD_MSG_MAX];
	size_t n;

	memset(&pol, 0, sizeof(pol));
	pol.seq = seq;
	pol.kind = kind;
	pol.dane = dane;
	pol.why = pol.sni = pol.sts_id = "";
	pol.mx = mx;
	n = pd_pol_encode(&pol, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(send(fd, buf, n, 0), (ssize_t)n);
}

static void
run_for(struct ev_loop *loop, double s)
{
	ev_tstamp end = ev_time() + s;

	while (ev_time() < end)
		ev_run(loop, EVRUN_NOWAIT), usleep(2000);
}

static void
test_answer_routed(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	int sp[2];
	struct pdclient *c;
	struct got a = { 0 }, b = { 0 };
	struct sockaddr_in d = dst4("198.51.100.25");
	struct pd_req r1, r2;
	uint32_t id1, id2;

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp), 0);
	c = pdc_new(loop, sp[0], 5000);
	id1 = pdc_ask(c, PD_POLICY, "example.net", (struct sockaddr *)&d, 0, cb, &a);
	id2 = pdc_ask(c, PD_ADDR, NULL, (struct sockaddr *)&d, 0, cb, &b);
	assert_true(id1 != 0 && id2 != 0 && id1 != id2);
	fake_read(sp[1], &r1);
	fake_read(sp[1], &r2);
	STREQ("request name", r1.name, "example.net");
	EQ("request kind", r1.kind, PD_POLICY);
	EQ("request addr", r1.addr.family, AF_INET);
	EQ("request addr", memcmp(r1.addr.addr, &d.sin_addr, 4), 0);
	EQ("PD_ADDR kind", r2.kind, PD_ADDR);
	/* Answered in the other order: each reaches its own asker, once. */
	fake_answer(sp[1], r2.seq, PD_ADDR, PD_DANE_NONE, "");
	fake_answer(sp[1], r1.seq, PD_POLICY, PD_DANE_MATCH, "mx.example.net");
	fake_answer(sp[1], r1.seq, PD_POLICY, PD_DANE_MATCH, "again");  /* a duplicate: dropped */
	run_for(loop, 0.1);
	EQ("a calls", a.calls, 1);
	EQ("a", a.dane, PD_DANE_MATCH);
	STREQ("a", a.mx, "mx.example.net");
	EQ("b calls", b.calls, 1);
	EQ("b", b.dane, PD_DANE_NONE);
	pdc_free(c);
	close(sp[1]);
	ev_loop_destroy(loop);
}

static void
test_timeout_and_cancel(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	int sp[2];
	struct pdclient *c;
	struct got a = { 0 }, b = { 0 };
	struct sockaddr_in d = dst4("198.51.100.26");
	uint32_t ida, idb;
	struct pd_req r;

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp), 0);
	c = pdc_new(loop, sp[0], 5000);
	ida = pdc_ask(c, PD_POLICY, "example.org", (struct sockaddr *)&d, 100, cb, &a);
	idb = pdc_ask(c, PD_POLICY, "example.com", (struct sockaddr *)&d, 100, cb, &b);
	assert_true(ida && idb);
	pdc_cancel(c, idb);
	run_for(loop, 0.3);
	EQ("timed out", a.calls, 1);
	EQ("timed out: tempfail", a.dane, PD_DANE_TEMPFAIL);
	STREQ("timed out: why", a.why, "policy process timeout");
	EQ("cancelled: never called", b.calls, 0);
	/* A late answer to the timed-out request is dropped. */
	fake_read(sp[1], &r);
	fake_answer(sp[1], r.seq, PD_POLICY, PD_DANE_MATCH, "late");
	run_for(loop, 0.05);
	EQ("late answer dropped", a.calls, 1);
	/* Names policyd would refuse are not even asked. */
	EQ("bad name", pdc_ask(c, PD_POLICY, "", (struct sockaddr *)&d, 0, cb, &a), 0);
	pdc_free(c);
	close(sp[1]);
	ev_loop_destroy(loop);
}

static void
test_restart(void **state)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	int sp[2], sp2[2];
	struct pdclient *c;
	struct got a = { 0 }, b = { 0 };
	struct sockaddr_in d = dst4("198.51.100.27");
	struct pd_req r;

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp), 0);
	c = pdc_new(loop, sp[0], 5000);
	assert_true(pdc_ask(c, PD_POLICY, "example.net", (struct sockaddr *)&d, 0, cb, &a));
	/* policyd dies: what is pending fails at once, never hangs. */
	fake_read(sp[1], &r);
	close(sp[1]);
	run_for(loop, 0.05);
	EQ("died: called", a.calls, 1);
	EQ("died: tempfail", a.dane, PD_DANE_TEMPFAIL);
	STREQ("died: why", a.why, "policy process unavailable");
	/* Asked while it is down: waits for the new socket, is sent on it. */
	assert_true(pdc_ask(c, PD_POLICY, "example.org", (struct sockaddr *)&d, 0, cb, &b));
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp2), 0);
	pdc_set_fd(c, sp2[0]);
	fake_read(sp2[1], &r);
	STREQ("sent again", r.name, "example.org");
	fake_answer(sp2[1], r.seq, PD_POLICY, PD_DANE_ENCRYPT, "");
	run_for(loop, 0.05);
	EQ("answered on the new socket", b.calls, 1);
	EQ("answered on the new socket", b.dane, PD_DANE_ENCRYPT);
	pdc_free(c);
	close(sp2[1]);
	ev_loop_destroy(loop);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_answer_routed),
		cmocka_unit_test(test_timeout_and_cancel),
		cmocka_unit_test(test_restart),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
