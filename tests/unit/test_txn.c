/*
 * Unit tests for a session's transaction bookkeeping (proxy/txn.c): the
 * domains of a message are learnt only from its own final reply, only
 * those the server accepted a recipient of, also when the client pipelined
 * the next MAIL before that reply; counts reset per transaction; slots are
 * bounded and reused.
 */
#include "unit.h"

#include "starttlsd/txn.h"

struct seen {
	char names[8][TXN_DOMAIN_MAX];
	size_t n;
};

static void
collect(const char *domain, void *arg)
{
	struct seen *s = arg;

	if (s->n < NELEM(s->names))
		snprintf(s->names[s->n++], TXN_DOMAIN_MAX, "%s", domain);
}

static void
test_accepted_domains_only(void **state)
{
	struct txn t = { 0 };
	struct seen seen = { 0 };
	uint8_t a, b, gen;

	(void)state;
	txn_new(&t);
	a = txn_slot(&t, "example.net");
	b = txn_slot(&t, "example.org");
	EQ("a slot", a != 0, 1);
	EQ("b slot", b != 0, 1);
	EQ("same domain, same slot", txn_slot(&t, "example.net"), a);
	txn_accepted(&t, a);
	gen = txn_sent(&t);
	txn_done(&t, gen, true, collect, &seen);
	EQ("one domain learnt", seen.n, 1);
	STREQ("the accepted one", seen.names[0], "example.net");
	/* Done: nothing more from that message. */
	seen.n = 0;
	txn_done(&t, gen, true, collect, &seen);
	EQ("once", seen.n, 0);
	txn_free(&t);
}

static void
test_rejected_message_learns_nothing(void **state)
{
	struct txn t = { 0 };
	struct seen seen = { 0 };
	uint8_t gen;

	(void)state;
	txn_new(&t);
	txn_accepted(&t, txn_slot(&t, "example.net"));
	gen = txn_sent(&t);
	txn_done(&t, gen, false, collect, &seen);
	EQ("rejected: nothing", seen.n, 0);
	txn_free(&t);
}

static void
test_pipelined_next_transaction(void **state)
{
	struct txn t = { 0 };
	struct seen seen = { 0 };
	uint8_t first, second;

	(void)state;
	txn_new(&t);
	txn_accepted(&t, txn_slot(&t, "one.example"));
	first = txn_sent(&t);
	/* The client pipelines the next MAIL before the first's reply. */
	txn_new(&t);
	txn_accepted(&t, txn_slot(&t, "two.example"));
	txn_done(&t, first, true, collect, &seen);
	EQ("first message: its domain only", seen.n, 1);
	STREQ("first", seen.names[0], "one.example");
	second = txn_sent(&t);
	txn_done(&t, second, true, collect, &seen);
	EQ("second message", seen.n, 2);
	STREQ("second", seen.names[1], "two.example");
	txn_free(&t);
}

static void
test_counts_and_refusals(void **state)
{
	struct txn t = { 0 };

	(void)state;
	txn_new(&t);
	EQ("fresh", txn_all_refused(&t), false);
	t.rcpts++;
	t.rcpt_blocked++;
	EQ("all refused", txn_all_refused(&t), true);
	t.rcpt_forwarded++;
	EQ("one forwarded", txn_all_refused(&t), false);
	txn_new(&t);
	EQ("reset by MAIL/RSET", t.rcpts + t.rcpt_blocked + t.rcpt_forwarded, 0);
	txn_free(&t);
}

static void
test_slots_bounded(void **state)
{
	struct txn t = { 0 };
	char name[32];
	unsigned got = 0;
	char big[TXN_DOMAIN_MAX + 8];

	(void)state;
	txn_new(&t);
	for (unsigned i = 0; i < TXN_SLOTS + 5; i++) {
		snprintf(name, sizeof(name), "d%u.example", i);
		if (txn_slot(&t, name) != 0)
			got++;
	}
	EQ("at most TXN_SLOTS", got, TXN_SLOTS);
	/* A new transaction (nothing pending) frees them. */
	txn_new(&t);
	EQ("reused", txn_slot(&t, "again.example") != 0, 1);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	EQ("too long: not remembered", txn_slot(&t, big), 0);
	txn_accepted(&t, 0);             /* ignored */
	txn_accepted(&t, TXN_SLOTS + 1); /* ignored */
	txn_free(&t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accepted_domains_only),
		cmocka_unit_test(test_rejected_message_learns_nothing),
		cmocka_unit_test(test_pipelined_next_transaction),
		cmocka_unit_test(test_counts_and_refusals),
		cmocka_unit_test(test_slots_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
