/*
 * pinsync's pure parts (the pin_store URL, a gateway's field value) and the
 * pin store's fleet hooks (own sightings, dirty marks, forgets, the merge of
 * other gateways' records), without Redis: tests/integration/92-redis.sh
 * has the real one.
 */
#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "starttlsd/pinstore.h"
#include "starttlsd/pinsync.h"

struct url_case {
	const char *in;
	int ok;
	bool unix_socket;
	const char *host, *path, *user, *password;
	unsigned port, db;
};

static const struct url_case url_cases[] = {
	{ "redis://192.0.2.53", 1, false, "192.0.2.53", "", "", "", 6379, 0 },
	{ "redis://192.0.2.53:6380/2", 1, false, "192.0.2.53", "", "", "", 6380, 2 },
	{ "redis://fleet@192.0.2.53/3", 1, false, "192.0.2.53", "", "fleet", "", 6379, 3 },
	{ "redis://fleet:s3cret@redis.example.org:7000", 1, false, "redis.example.org", "", "fleet", "s3cret", 7000, 0 },
	{ "redis://[2001:db8::53]:6379/1", 1, false, "2001:db8::53", "", "", "", 6379, 1 },
	{ "redis://u@[2001:db8::53]", 1, false, "2001:db8::53", "", "u", "", 6379, 0 },
	{ "redis+unix:///run/redis/redis.sock", 1, true, "", "/run/redis/redis.sock", "", "", 6379, 0 },
	{ "redis+unix://fleet@/run/redis/redis.sock?db=4", 1, true, "", "/run/redis/redis.sock", "fleet", "", 6379, 4 },
	{ "redis://", 0, false, NULL, NULL, NULL, NULL, 0, 0 },
	{ "redis://:6379", 0, false, NULL, NULL, NULL, NULL, 0, 0 },
	{ "redis://host:0", 0, false, NULL, NULL, NULL, NULL, 0, 0 },
	{ "redis://host:65536", 0, false, NULL, NULL, NULL, NULL, 0, 0 },
	{ "redis://host:port", 0, false, NULL, NULL, NULL, NULL, 0, 0 },
	{ "redis://host/16", 0, false, NULL, NULL, NULL, NULL, 0, 0 },
	{ "redis://host/x", 0, false, NULL, NULL, NULL, NULL, 0, 0 },
	{ "redis://[2001:db8::53", 0, false, NULL, NULL, NULL, NULL, 0, 0 },
	{ "rediss://host", 0, false, NULL, NULL, NULL, NULL, 0, 0 },
	{ "http://host", 0, false, NULL, NULL, NULL, NULL, 0, 0 },
	{ "lmdb", 0, false, NULL, NULL, NULL, NULL, 0, 0 },
	{ "redis+unix://", 0, false, NULL, NULL, NULL, NULL, 0, 0 },
	{ "redis+unix://host/run/x.sock", 0, false, NULL, NULL, NULL, NULL, 0, 0 },
	{ "redis+unix:///run/x.sock?db=x", 0, false, NULL, NULL, NULL, NULL, 0, 0 },
	{ "redis+unix:///run/x.sock?foo=1", 0, false, NULL, NULL, NULL, NULL, 0, 0 },
};

static void
test_url_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < NELEM(url_cases); i++) {
		const struct url_case *c = &url_cases[i];
		struct pinsync_url u;
		char err[512];
		int r = pinsync_url_parse(c->in, &u, err, sizeof(err));

		EQ(c->in, r == 0, c->ok);
		if (!c->ok) {
			CONTAINS(c->in, err, "pin_store: ");
			continue;
		}
		EQ(c->in, u.unix_socket, c->unix_socket);
		STREQ(c->in, u.host, c->host);
		STREQ(c->in, u.path, c->path);
		STREQ(c->in, u.user, c->user);
		STREQ(c->in, u.password, c->password);
		EQ(c->in, u.port, c->port);
		EQ(c->in, u.db, c->db);
	}
}

static void
test_gw_names(void **state)
{
	(void)state;
	assert_true(pinsync_gw_valid(S("gw-a")));
	assert_true(pinsync_gw_valid(S("Lyon_1.branch")));
	assert_false(pinsync_gw_valid(S("")));
	assert_false(pinsync_gw_valid(S("bad field!")));
	assert_false(pinsync_gw_valid(S("!forget")));
	assert_false(pinsync_gw_valid(S("a\0b")));
	assert_false(pinsync_gw_valid(S("0123456789012345678901234567890123456789012345678901234567890123")));
}

static void
test_value_roundtrip(void **state)
{
	struct pin p = { .kind = PIN_DST, .first_seen = 1700000000,
	    .last_seen = 1700000500, .count = 42, .tls_version = 0x0304,
	    .has_spki = true }, d = { .kind = PIN_DOMAIN,
	    .first_seen = 1700000000, .last_seen = 1700000001, .count = 1 }, q;
	char v[PINSYNC_VAL_MAX + 1];
	const char *why;

	(void)state;
	snprintf(p.key, sizeof(p.key), "ip:198.51.100.25");
	for (int i = 0; i < 32; i++)
		p.spki[i] = (uint8_t)(i * 7);
	assert_int_equal(pinsync_value_format(&p, v, sizeof(v)), 0);
	assert_int_equal(pinsync_value_parse(p.key, v, strlen(v), &q, &why), 0);
	assert_memory_equal(&p, &q, sizeof(p));
	snprintf(d.key, sizeof(d.key), "domain:example.net");
	snprintf(d.via, sizeof(d.via), "2001:db8::25");
	assert_int_equal(pinsync_value_format(&d, v, sizeof(v)), 0);
	STREQ("domain value", v, "1 1700000000 1700000001 1 0 - 2001:db8::25");
	assert_int_equal(pinsync_value_parse(d.key, v, strlen(v), &q, &why), 0);
	assert_memory_equal(&d, &q, sizeof(d));
}

static void
test_value_garbage(void **state)
{
	static const struct { const char *key, *val, *why; } bad[] = {
		{ "ip:198.51.100.25", "", "not a pin record" },
		{ "ip:198.51.100.25", "1 garbage", "not a pin record" },
		{ "ip:198.51.100.25", "2 1 2 3 772 - -", "not a pin record" },
		{ "ip:198.51.100.25", "1 1 2 3 772 - - extra", "not a pin record" },
		{ "ip:198.51.100.25", "1  1 2 3 772 - -", "not a pin record" },
		{ "ip:198.51.100.25", "1 1 2 3 772 - -\n", "only domain pins have one" },
		{ "domain:example.net", "1 1 2 3 0 - 198.51.100.1\n", "not an IP address in canonical form" },
		{ "ip:198.51.100.25", "1 1 2 -3 772 - -", "not a pin record" },
		{ "ip:198.51.100.25", "1 1 2 3 70000 - -", "not a pin record" },
		{ "ip:198.51.100.25", "1 1 2 3 772 abc -", "not a pin record" },
		{ "ip:198.51.100.25", "1 1 2 3 772 ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789 -", "not a pin record" },
		{ "ip:198.51.100.25", "1 1 2 3 0 - -", "missing or 0" },
		{ "ip:198.51.100.25", "1 5 2 3 772 - -", "before first_seen" },
		{ "ip:198.51.100.25", "1 1 2 0 772 - -", "must be at least 1" },
		{ "ip:198.51.100.25", "1 1 2 3 772 - 198.51.100.1", "only domain pins have one" },
		{ "domain:example.net", "1 1 2 3 772 - -", "only destination pins have one" },
		{ "domain:example.net", "1 1 2 3 0 - 198.051.100.1", "not an IP address in canonical form" },
		{ "ip:198.51.100.25", "1 -5 2 3 772 - -", "out of range" },
	};
	char big[PINSYNC_VAL_MAX + 2];
	struct pin q;
	const char *why;

	(void)state;
	for (size_t i = 0; i < NELEM(bad); i++) {
		why = NULL;
		EQ(bad[i].val, pinsync_value_parse(bad[i].key, bad[i].val,
		    strlen(bad[i].val), &q, &why), (unsigned long long)-1);
		STREQ(bad[i].val, why, bad[i].why);
	}
	memset(big, 'x', sizeof(big));
	assert_int_equal(pinsync_value_parse("ip:198.51.100.25", big,
	    sizeof(big), &q, &why), -1);
	STREQ("big", why, "oversized");
	assert_int_equal(pinsync_value_parse("ip:198.51.100.25",
	    "1 1 2\0 3 772 - -", 16, &q, &why), -1);
}

/* ---- the fleet hooks of the pin store --------------------------------------- */

struct fix {
	char dir[64];
	struct pin_store *ps;
};

static int
fix_setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	char err[256];

	snprintf(f->dir, sizeof(f->dir), "/tmp/test_pinsync.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->ps = pin_open(f->dir, false, 30 * 86400, err, sizeof(err));
	assert_non_null(f->ps);
	*state = f;
	return 0;
}

static int
fix_teardown(void **state)
{
	struct fix *f = *state;
	char cmd[128];

	pin_close(f->ps);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

struct collect {
	struct pin p[16];
	size_t n;
	char fk[16][PIN_KEY_MAX];
	int64_t fw[16];
	size_t nf;
};

static int
collect_cb(const struct pin *own, void *arg)
{
	struct collect *c = arg;

	if (c->n < NELEM(c->p))
		c->p[c->n++] = *own;
	return 0;
}

static int
collect_forget(const char *key, int64_t when, void *arg)
{
	struct collect *c = arg;

	if (c->nf < NELEM(c->fw)) {
		snprintf(c->fk[c->nf], PIN_KEY_MAX, "%s", key);
		c->fw[c->nf++] = when;
	}
	return 0;
}

static size_t
pending(struct pin_store *ps, struct collect *c)
{
	char err[256];

	memset(c, 0, sizeof(*c));
	assert_int_equal(pin_fleet_pending(ps, 100, collect_cb, c, err,
	    sizeof(err)), 0);
	return c->n;
}

static struct pin
dst(const char *key, int64_t first, int64_t last, uint64_t count,
    uint16_t ver)
{
	struct pin p = { .kind = PIN_DST, .first_seen = first,
	    .last_seen = last, .count = count, .tls_version = ver };

	snprintf(p.key, sizeof(p.key), "%s", key);
	return p;
}

static void
test_fleet_own_and_publish(void **state)
{
	struct fix *f = *state;
	int64_t now = (int64_t)time(NULL);
	struct pin before = dst("ip:198.51.100.1", now - 100, now - 50, 3,
	    0x0303), got;
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct collect c;
	size_t marked;
	char err[256];

	assert_int_equal(pin_put(f->ps, &before, err, sizeof(err)), 0);
	assert_false(pin_fleet_on(f->ps));
	assert_int_equal(pin_fleet_enable(f->ps, "gw-a", err, sizeof(err)), 0);
	assert_true(pin_fleet_on(f->ps));
	/* What it knew alone becomes its own, to publish. */
	assert_int_equal(pending(f->ps, &c), 1);
	STREQ("bootstrap", c.p[0].key, "ip:198.51.100.1");
	EQ("bootstrap count", c.p[0].count, 3);
	assert_int_equal(pin_get(f->ps, "ip:198.51.100.1", now, &got, err,
	    sizeof(err)), 1);
	STREQ("origin", got.origin, "gw-a");
	assert_int_equal(pin_fleet_published(f->ps, c.p, c.n, err,
	    sizeof(err)), 0);
	assert_int_equal(pending(f->ps, &c), 0);
	/* A sighting: own and dirty again. */
	inet_pton(AF_INET, "198.51.100.1", &a.sin_addr);
	pin_note_dst(f->ps, (struct sockaddr *)&a, 0x0304, NULL, now);
	assert_int_equal(pin_commit(f->ps, err, sizeof(err)), 0);
	assert_int_equal(pending(f->ps, &c), 1);
	EQ("own count", c.p[0].count, 4);
	EQ("own version", c.p[0].tls_version, 0x0304);
	/* Published as read, then changed before the mark is cleared: stays. */
	pin_note_dst(f->ps, (struct sockaddr *)&a, 0x0304, NULL, now);
	assert_int_equal(pin_commit(f->ps, err, sizeof(err)), 0);
	assert_int_equal(pin_fleet_published(f->ps, c.p, c.n, err,
	    sizeof(err)), 0);
	assert_int_equal(pending(f->ps, &c), 1);
	EQ("own count", c.p[0].count, 5);
	assert_int_equal(pin_fleet_published(f->ps, c.p, c.n, err,
	    sizeof(err)), 0);
	assert_int_equal(pending(f->ps, &c), 0);
	/* Redis came back empty: everything is published again. */
	assert_int_equal(pin_fleet_mark_all(f->ps, now, &marked, err,
	    sizeof(err)), 0);
	EQ("marked", marked, 1);
	assert_int_equal(pending(f->ps, &c), 1);
	/* Own records past pin_expire are dropped, with their dirty marks. */
	before = dst("ip:198.51.100.9", now - 50 * 86400, now - 40 * 86400, 1,
	    0x0304);
	assert_int_equal(pin_put(f->ps, &before, err, sizeof(err)), 0);
	assert_int_equal(pending(f->ps, &c), 2);
	assert_int_equal(pin_fleet_purge(f->ps, now, &marked, err,
	    sizeof(err)), 0);
	EQ("purged", marked, 1);
	assert_int_equal(pending(f->ps, &c), 1);
	STREQ("left", c.p[0].key, "ip:198.51.100.1");
}

static void
test_fleet_merge(void **state)
{
	struct fix *f = *state;
	int64_t now = (int64_t)time(NULL);
	struct pin mine = dst("ip:198.51.100.2", now - 100, now - 10, 2, 0x0303);
	struct pin_remote r[4];
	struct pin got;
	char err[256];

	assert_int_equal(pin_fleet_enable(f->ps, "gw-a", err, sizeof(err)), 0);
	assert_int_equal(pin_put(f->ps, &mine, err, sizeof(err)), 0);
	memset(r, 0, sizeof(r));
	snprintf(r[0].gw, sizeof(r[0].gw), "gw-b");
	r[0].p = dst("ip:198.51.100.2", now - 500, now - 5, 7, 0x0304);
	r[0].p.has_spki = true;
	r[0].p.spki[0] = 0xaa;
	snprintf(r[1].gw, sizeof(r[1].gw), "gw-c");
	r[1].p = dst("ip:198.51.100.2", now - 50, now - 20, 1, 0x0303);
	snprintf(r[2].gw, sizeof(r[2].gw), "gw-a");  /* our own field: ignored */
	r[2].p = dst("ip:198.51.100.2", now - 900, now, 1000, 0x0303);
	snprintf(r[3].gw, sizeof(r[3].gw), "gw-old"); /* expired: ignored */
	r[3].p = dst("ip:198.51.100.2", now - 90 * 86400, now - 60 * 86400, 50,
	    0x0303);
	assert_int_equal(pin_fleet_begin(f->ps, err, sizeof(err)), 0);
	assert_int_equal(pin_fleet_apply(f->ps, "ip:198.51.100.2", 0, r, 4, now), 0);
	/* Applying the same view twice changes nothing (idempotent). */
	assert_int_equal(pin_fleet_apply(f->ps, "ip:198.51.100.2", 0, r, 4, now), 0);
	assert_int_equal(pin_fleet_end(f->ps, true, err, sizeof(err)), 0);
	assert_int_equal(pin_get(f->ps, "ip:198.51.100.2", now, &got, err,
	    sizeof(err)), 1);
	EQ("first_seen: the earliest", got.first_seen, now - 500);
	EQ("last_seen: the latest", got.last_seen, now - 5);
	EQ("count: added", got.count, 2 + 7 + 1);
	EQ("version: of the latest", got.tls_version, 0x0304);
	assert_true(got.has_spki);
	EQ("spki: of the latest", got.spki[0], 0xaa);
	STREQ("learned by: the earliest", got.origin, "gw-b");

	/* Only others know a key. */
	snprintf(r[0].gw, sizeof(r[0].gw), "gw-b");
	r[0].p = dst("ip:198.51.100.3", now - 5, now - 5, 1, 0x0304);
	assert_int_equal(pin_fleet_begin(f->ps, err, sizeof(err)), 0);
	assert_int_equal(pin_fleet_apply(f->ps, "ip:198.51.100.3", 0, r, 1, now), 0);
	assert_int_equal(pin_fleet_end(f->ps, true, err, sizeof(err)), 0);
	assert_int_equal(pin_get(f->ps, "ip:198.51.100.3", now, &got, err,
	    sizeof(err)), 1);
	STREQ("learned by", got.origin, "gw-b");
	EQ("count", got.count, 1);
	/* An aborted transaction leaves nothing. */
	r[0].p = dst("ip:198.51.100.4", now - 5, now - 5, 1, 0x0304);
	assert_int_equal(pin_fleet_begin(f->ps, err, sizeof(err)), 0);
	assert_int_equal(pin_fleet_apply(f->ps, "ip:198.51.100.4", 0, r, 1, now), 0);
	assert_int_equal(pin_fleet_end(f->ps, false, err, sizeof(err)), 0);
	assert_int_equal(pin_get(f->ps, "ip:198.51.100.4", now, &got, err,
	    sizeof(err)), 0);
}

static void
test_fleet_forget(void **state)
{
	struct fix *f = *state;
	int64_t now = (int64_t)time(NULL);
	struct pin mine = dst("ip:198.51.100.5", now - 100, now - 10, 2, 0x0303);
	struct pin_remote r[2];
	struct collect c;
	struct pin got;
	char err[256];

	assert_int_equal(pin_fleet_enable(f->ps, "gw-a", err, sizeof(err)), 0);
	assert_int_equal(pin_put(f->ps, &mine, err, sizeof(err)), 0);
	/* Forgotten here: a tombstone to tell, our own sightings gone. */
	assert_int_equal(pin_forget(f->ps, "ip:198.51.100.5", err, sizeof(err)), 1);
	assert_int_equal(pending(f->ps, &c), 0);
	assert_int_equal(pin_fleet_forgets(f->ps, 10, collect_forget, &c, err,
	    sizeof(err)), 0);
	EQ("tombstones", c.nf, 1);
	STREQ("tombstone", c.fk[0], "ip:198.51.100.5");
	assert_true(c.fw[0] >= now);
	/* A newer tombstone is not dropped by the older one's telling. */
	assert_int_equal(pin_fleet_forget_told(f->ps, c.fk[0], c.fw[0] - 1, err,
	    sizeof(err)), 0);
	c.nf = 0;
	assert_int_equal(pin_fleet_forgets(f->ps, 10, collect_forget, &c, err,
	    sizeof(err)), 0);
	EQ("still there", c.nf, 1);
	assert_int_equal(pin_fleet_forget_told(f->ps, c.fk[0], c.fw[0], err,
	    sizeof(err)), 0);
	c.nf = 0;
	assert_int_equal(pin_fleet_forgets(f->ps, 10, collect_forget, &c, err,
	    sizeof(err)), 0);
	EQ("told", c.nf, 0);

	/* Forgotten by another gateway: ours and older records go. */
	mine = dst("ip:198.51.100.6", now - 100, now - 10, 2, 0x0303);
	assert_int_equal(pin_put(f->ps, &mine, err, sizeof(err)), 0);
	memset(r, 0, sizeof(r));
	snprintf(r[0].gw, sizeof(r[0].gw), "gw-b");
	r[0].p = dst("ip:198.51.100.6", now - 100, now - 8, 2, 0x0303);
	assert_int_equal(pin_fleet_begin(f->ps, err, sizeof(err)), 0);
	assert_int_equal(pin_fleet_apply(f->ps, "ip:198.51.100.6", now - 5, r, 1,
	    now), 0);
	assert_int_equal(pin_fleet_end(f->ps, true, err, sizeof(err)), 0);
	assert_int_equal(pin_get(f->ps, "ip:198.51.100.6", now, &got, err,
	    sizeof(err)), 0);
	assert_int_equal(pending(f->ps, &c), 0);
	/* A sighting after the forget pins it again. */
	r[0].p = dst("ip:198.51.100.6", now - 100, now - 1, 3, 0x0304);
	assert_int_equal(pin_fleet_begin(f->ps, err, sizeof(err)), 0);
	assert_int_equal(pin_fleet_apply(f->ps, "ip:198.51.100.6", now - 5, r, 1,
	    now), 0);
	assert_int_equal(pin_fleet_end(f->ps, true, err, sizeof(err)), 0);
	assert_int_equal(pin_get(f->ps, "ip:198.51.100.6", now, &got, err,
	    sizeof(err)), 1);
	EQ("count", got.count, 3);
}

/* starttlsctl (another handle) forgets and lists while the daemon's is open. */
static void
test_fleet_seen_by_ctl(void **state)
{
	struct fix *f = *state;
	int64_t now = (int64_t)time(NULL);
	struct pin mine = dst("ip:198.51.100.7", now - 100, now - 10, 2, 0x0303);
	struct collect c;
	char err[256];
	pid_t pid;
	int st;

	assert_int_equal(pin_fleet_enable(f->ps, "gw-a", err, sizeof(err)), 0);
	assert_int_equal(pin_put(f->ps, &mine, err, sizeof(err)), 0);
	if ((pid = fork()) == 0) {
		struct pin_store *ps = pin_open(f->dir, false, 0, err, sizeof(err));
		struct pin got;
		int ok = ps != NULL &&
		    pin_get(ps, "ip:198.51.100.7", now, &got, err, sizeof(err)) == 1 &&
		    strcmp(got.origin, "gw-a") == 0 &&
		    pin_forget(ps, "ip:198.51.100.7", err, sizeof(err)) == 1;

		pin_close(ps);
		_exit(ok ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(pin_fleet_forgets(f->ps, 10, collect_forget,
	    memset(&c, 0, sizeof(c)), err, sizeof(err)), 0);
	EQ("the daemon sees starttlsctl's tombstone", c.nf, 1);
	assert_int_equal(pending(f->ps, &c), 0);
}

int
main(void)
{
#define FIX(t) cmocka_unit_test_setup_teardown(t, fix_setup, fix_teardown)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_table),
		cmocka_unit_test(test_gw_names),
		cmocka_unit_test(test_value_roundtrip),
		cmocka_unit_test(test_value_garbage),
		FIX(test_fleet_own_and_publish),
		FIX(test_fleet_merge),
		FIX(test_fleet_forget),
		FIX(test_fleet_seen_by_ctl),
	};
#undef FIX

	return cmocka_run_group_tests(tests, NULL, NULL);
}
