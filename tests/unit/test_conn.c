/*
 * Unit tests for conn's callback frames (proxy/conn.c): once an owner has
 * cleaned its conn up inside a callback, no further callback of the event
 * being handled reaches it, even when it returned 0, and even when it
 * re-initialised the same struct for a new connection (issue 9: a server's
 * reply and its close read at once called a finished owner back).
 */
#include "unit.h"

#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "starttlsd/conn.h"

enum mode { KEEP, CLEANUP, REINIT };

struct rec {
	int calls[CONN_EV_TIMEOUT + 1];
	enum mode mode;
	struct ev_loop *loop;
};

static int
cb(struct conn *c, enum conn_event ev, void *arg)
{
	struct rec *r = arg;

	r->calls[ev]++;
	if (ev == CONN_EV_READ && r->mode != KEEP) {
		conn_cleanup(c);
		if (r->mode == REINIT)
			conn_init(c, r->loop, -1, 65536, cb, r);
	}
	return 0;
}

/*
 * Bytes and the peer's close, both waiting: one read pass sees them together
 * (as a TLS reply and its close_notify in one flight are). A plaintext pass
 * reads on while a read fills its chunk: so a full chunk of bytes.
 */
static void
run(enum mode mode, struct rec *r)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct conn c;
	int sv[2];

	memset(r, 0, sizeof(*r));
	r->mode = mode;
	r->loop = loop;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	{
		static char bytes[16384];
		memset(bytes, 'x', sizeof(bytes));
		memcpy(bytes + sizeof(bytes) - 9, "421 bye\r\n", 9);
		assert_int_equal(write(sv[1], bytes, sizeof(bytes)), sizeof(bytes));
	}
	shutdown(sv[1], SHUT_WR);
	conn_init(&c, loop, sv[0], 65536, cb, r);
	conn_read(&c, true);
	for (int i = 0; i < 5; i++)
		ev_run(loop, EVRUN_NOWAIT);
	conn_cleanup(&c);
	close(sv[1]);
	ev_loop_destroy(loop);
}

static void
test_both_events_when_kept(void **state)
{
	struct rec r;

	(void)state;
	run(KEEP, &r);
	EQ("read", r.calls[CONN_EV_READ], 1);
	EQ("eof", r.calls[CONN_EV_EOF], 1);
}

static void
test_no_callback_after_cleanup(void **state)
{
	struct rec r;

	(void)state;
	run(CLEANUP, &r);
	EQ("read", r.calls[CONN_EV_READ], 1);
	EQ("no eof after the cleanup", r.calls[CONN_EV_EOF], 0);
	EQ("no error either", r.calls[CONN_EV_ERROR], 0);
}

static void
test_no_callback_into_a_new_conn(void **state)
{
	struct rec r;

	(void)state;
	run(REINIT, &r);
	EQ("read", r.calls[CONN_EV_READ], 1);
	EQ("the new conn hears nothing of the old one", r.calls[CONN_EV_EOF], 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_both_events_when_kept),
		cmocka_unit_test(test_no_callback_after_cleanup),
		cmocka_unit_test(test_no_callback_into_a_new_conn),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
