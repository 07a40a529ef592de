/*
 * Unit tests for the loop detection shared by the workers (proxy/ownport.c):
 * a published port is recognised for its destination only, from any slot;
 * withdrawing it does not clear a port since taken towards elsewhere; the
 * master's reset of a dead worker's slot clears that worker's entries and
 * no other's; an accept that races a connect() in flight waits for the port
 * to show (a second process publishes it), and gives up, bounded, when it
 * never does.
 */

#include "unit.h"

#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/wait.h>

#include "starttlsd/ownport.h"

#define SLOTS 8

static struct sockaddr_storage
addr(const char *ip, unsigned port)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
	}
	return ss;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
setup(void **state)
{
	static bool done;

	(void)state;
	if (!done && ownport_init(SLOTS) < 0)
		return -1;
	done = true;
	for (size_t i = 0; i < SLOTS; i++)
		ownport_reset(i);
	return 0;
}

static void test_published_port(void **state)
{
	struct sockaddr_storage us = addr("192.0.2.1", 40000),
	    other = addr("192.0.2.2", 40000),
	    dst = addr("198.51.100.25", 25), dst2 = addr("203.0.113.25", 25),
	    us6 = addr("2001:db8::1", 40000), dst6 = addr("2001:db8:2::25", 25);

	(void)state;
	assert_false(ownport_is_own(&us, &dst));
	ownport_use(1);
	ownport_publish(&us, &dst, true);
	ownport_publish(&us6, &dst6, true);
	ownport_use(0);
	assert_true(ownport_is_own(&us, &dst));
	assert_true(ownport_is_own(&us6, &dst6));
	/* The same port towards elsewhere, or another host's same port: no. */
	assert_false(ownport_is_own(&us, &dst2));
	assert_false(ownport_is_own(&other, &dst));
	/* A family mismatch is never a loop. */
	assert_false(ownport_is_own(&us, &dst6));
	ownport_use(1);
	ownport_publish(&us, &dst, false);
	ownport_use(0);
	assert_false(ownport_is_own(&us, &dst));
	assert_true(ownport_is_own(&us6, &dst6));
}

static void test_withdraw_keeps_newer(void **state)
{
	struct sockaddr_storage us = addr("192.0.2.1", 40001),
	    dst = addr("198.51.100.25", 25), dst2 = addr("203.0.113.25", 25);

	(void)state;
	/* connect() may reuse a local port towards another destination. */
	ownport_use(1);
	ownport_publish(&us, &dst, true);
	ownport_use(2);
	ownport_publish(&us, &dst2, true);
	ownport_use(1);
	ownport_publish(&us, &dst, false);
	ownport_use(0);
	assert_true(ownport_is_own(&us, &dst2));
}

static void test_reset_dead_worker(void **state)
{
	struct sockaddr_storage a = addr("192.0.2.1", 40002),
	    b = addr("192.0.2.1", 40003), dst = addr("198.51.100.25", 25);

	(void)state;
	ownport_use(3);
	ownport_publish(&a, &dst, true);
	ownport_use(4);
	ownport_publish(&b, &dst, true);
	/* The master reaps worker 3 (SIGKILLed mid-session). */
	ownport_reset(3);
	ownport_use(0);
	assert_false(ownport_is_own(&a, &dst));
	assert_true(ownport_is_own(&b, &dst));
}

static void test_waits_for_connect_in_flight(void **state)
{
	struct sockaddr_storage us = addr("192.0.2.1", 40004),
	    dst = addr("198.51.100.25", 25);
	pid_t pid;
	int st;

	(void)state;
	/* Worker 5 is inside connect() towards dst... */
	ownport_use(5);
	ownport_connecting(&dst);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* ...and publishes its port a little later, from its process. */
		usleep(1000);
		ownport_publish(&us, &dst, true);
		ownport_connecting(NULL);
		_exit(0);
	}
	/* Worker 0 accepts the looped connection before that. */
	ownport_use(0);
	assert_true(ownport_is_own(&us, &dst));
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_wait_is_bounded(void **state)
{
	struct sockaddr_storage us = addr("192.0.2.1", 40005),
	    dst = addr("198.51.100.25", 25), dst2 = addr("203.0.113.25", 25);
	double t0, waited;

	(void)state;
	ownport_use(6);
	ownport_connecting(&dst);
	ownport_use(0);
	/* A connect() towards another destination is not waited for. */
	assert_false(ownport_is_own(&us, &dst2));
	/* One towards this destination that never publishes: bounded. */
	t0 = now();
	assert_false(ownport_is_own(&us, &dst));
	waited = now() - t0;
	assert_true(waited >= OWNPORT_WAIT * 0.9);
	assert_true(waited < OWNPORT_WAIT + 1.0);
	/* Its slot reset (the worker died inside connect()): no wait. */
	ownport_reset(6);
	assert_false(ownport_is_own(&us, &dst));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_published_port, setup),
		cmocka_unit_test_setup(test_withdraw_keeps_newer, setup),
		cmocka_unit_test_setup(test_reset_dead_worker, setup),
		cmocka_unit_test_setup(test_waits_for_connect_in_flight, setup),
		cmocka_unit_test_setup(test_wait_is_bounded, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
