/*
 * Unit tests for proxy/pinstore.c (JSON: test_pinjson.c): key canonicalisation
 * as tables, then the store in a temporary directory (queue, commit, merge,
 * expiry and its bounded sweep, forget, overflow, damaged records written
 * with raw LMDB, a second process on the same directory, the fork guard)
 * and pin_put's validation.
 *
 * Each store test gets a fresh directory from its setup; the teardown closes
 * the store and removes the directory even when the test failed, so the
 * suite is clean under LSan.
 */

#include "unit.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "starttlsd/pinstore.h"

#define ERRLEN 512
#define DAY 86400

static const uint8_t spki_a[32] = { 0xaa, 1, 2, 3, [31] = 0x1f };
static const uint8_t spki_b[32] = { 0xbb, 9, 8, 7, [31] = 0xf1 };

/* ---- fixtures and helpers --------------------------------------------------- */

struct fix {
	char dir[64];
	struct pin_store *ps;
	int64_t now;  /* a recent time: commit expires against the real clock */
};

static int fix_setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_pinstore.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->now = (int64_t)time(NULL) - 3600;
	*state = f;
	return 0;
}

static void rm_dir(const char *dir)
{
	char path[512];
	struct dirent *de;
	DIR *d = opendir(dir);

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (unlink(path) < 0)
			rm_dir(path);
	}
	closedir(d);
	rmdir(dir);
}

static int fix_teardown(void **state)
{
	struct fix *f = *state;

	pin_close(f->ps);
	rm_dir(f->dir);
	free(f);
	return 0;
}

static struct pin_store *open_store(struct fix *f, bool readonly,
    int64_t expire)
{
	char err[ERRLEN] = "";

	pin_close(f->ps);
	f->ps = pin_open(f->dir, readonly, expire, err, sizeof(err));
	if (f->ps == NULL) {
		print_error("pin_open %s: %s\n", f->dir, err);
		fail();
	}
	return f->ps;
}

static void close_store(struct fix *f)
{
	pin_close(f->ps);
	f->ps = NULL;
}

static struct sockaddr_storage sa_of(const char *text)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, text, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(25);
	} else {
		assert_int_equal(inet_pton(AF_INET6, text, &s6->sin6_addr), 1);
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(25);
	}
	return ss;
}

static void note_dst(struct pin_store *ps, const char *addr, uint16_t v,
    const uint8_t *spki, int64_t now)
{
	struct sockaddr_storage ss = sa_of(addr);

	pin_note_dst(ps, (struct sockaddr *)&ss, v, spki, now);
}

static void note_domain(struct pin_store *ps, const char *domain,
    const char *via, int64_t now)
{
	struct sockaddr_storage ss = sa_of(via);

	pin_note_domain(ps, domain, strlen(domain), (struct sockaddr *)&ss, now);
}

static void commit_ok(struct pin_store *ps)
{
	char err[ERRLEN] = "";

	if (pin_commit(ps, err, sizeof(err)) != 0) {
		print_error("pin_commit: %s\n", err);
		fail();
	}
}

/* pin_get: 1 with the pin in *out, 0 absent; fails the test on -1. */
static int get(struct pin_store *ps, const char *key, int64_t now,
    struct pin *out)
{
	char err[ERRLEN] = "";
	int r = pin_get(ps, key, now, out, err, sizeof(err));

	if (r < 0) {
		print_error("pin_get %s: %s\n", key, err);
		fail();
	}
	return r;
}

static struct pin mk_dst(const char *key, int64_t first, int64_t last,
    uint64_t count, uint16_t v, const uint8_t *spki)
{
	struct pin p;

	memset(&p, 0, sizeof(p));
	p.kind = PIN_DST;
	snprintf(p.key, sizeof(p.key), "%s", key);
	p.first_seen = first;
	p.last_seen = last;
	p.count = count;
	p.tls_version = v;
	if (spki != NULL) {
		p.has_spki = true;
		memcpy(p.spki, spki, 32);
	}
	return p;
}

static struct pin mk_domain(const char *key, int64_t first, int64_t last,
    uint64_t count, const char *via)
{
	struct pin p;

	memset(&p, 0, sizeof(p));
	p.kind = PIN_DOMAIN;
	snprintf(p.key, sizeof(p.key), "%s", key);
	p.first_seen = first;
	p.last_seen = last;
	p.count = count;
	snprintf(p.via, sizeof(p.via), "%s", via);
	return p;
}

static void put_ok(struct pin_store *ps, const struct pin *p)
{
	char err[ERRLEN] = "";

	if (pin_put(ps, p, err, sizeof(err)) != 0) {
		print_error("pin_put %s: %s\n", p->key, err);
		fail();
	}
}

static void expect_pin(const char *name, const struct pin *got,
    const struct pin *want)
{
	STREQ(name, got->key, want->key);
	EQ(name, got->kind, want->kind);
	EQ(name, got->first_seen, want->first_seen);
	EQ(name, got->last_seen, want->last_seen);
	EQ(name, got->count, want->count);
	EQ(name, got->tls_version, want->tls_version);
	EQ(name, got->has_spki, want->has_spki);
	if (want->has_spki)
		EQ(name, memcmp(got->spki, want->spki, 32), 0);
	STREQ(name, got->via, want->via);
}

/* Keys pin_foreach reports, joined by spaces. */
struct collect {
	char keys[4096];
	size_t n;
};

static int collect_cb(const struct pin *p, void *arg)
{
	struct collect *c = arg;
	size_t len = strlen(c->keys);

	snprintf(c->keys + len, sizeof(c->keys) - len, "%s%s", len ? " " : "",
	    p->key);
	c->n++;
	return 0;
}

static struct collect collect(struct pin_store *ps, int64_t now)
{
	struct collect c;
	char err[ERRLEN] = "";

	memset(&c, 0, sizeof(c));
	if (pin_foreach(ps, now, collect_cb, &c, err, sizeof(err)) != 0) {
		print_error("pin_foreach: %s\n", err);
		fail();
	}
	return c;
}

static struct pin_stats stats(const struct pin_store *ps)
{
	struct pin_stats st;

	pin_get_stats(ps, &st);
	return st;
}

/* ---- keys --------------------------------------------------------------------- */

struct addr_case {
	const char *name;
	const char *addr;  /* NULL: an AF_UNIX address */
	size_t cap;
	const char *want;  /* NULL: -1 */
};

static const struct addr_case addr_cases[] = {
	{ "IPv4", "198.51.100.25", PIN_KEY_MAX, "ip:198.51.100.25" },
	{ "IPv4 zeros", "0.0.0.0", PIN_KEY_MAX, "ip:0.0.0.0" },
	{ "IPv6 compressed", "2001:0db8:0000:0000:0000:0000:0000:0025",
	  PIN_KEY_MAX, "ip:2001:db8::25" },
	{ "IPv6 upper case", "2001:DB8::A", PIN_KEY_MAX, "ip:2001:db8::a" },
	{ "IPv6 longest zero run", "2001:db8:0:0:1:0:0:0", PIN_KEY_MAX,
	  "ip:2001:db8:0:0:1::" },
	{ "IPv6 one zero field not compressed", "2001:db8:0:1:1:1:1:1",
	  PIN_KEY_MAX, "ip:2001:db8:0:1:1:1:1:1" },
	{ "IPv6 loopback", "::1", PIN_KEY_MAX, "ip:::1" },
	{ "IPv4-mapped is IPv4", "::ffff:198.51.100.25", PIN_KEY_MAX,
	  "ip:198.51.100.25" },
	{ "IPv4-mapped, hex form", "::ffff:c633:6419", PIN_KEY_MAX,
	  "ip:198.51.100.25" },
	{ "exact cap", "192.0.2.1", sizeof("ip:192.0.2.1"), "ip:192.0.2.1" },
	{ "cap one short", "192.0.2.1", sizeof("ip:192.0.2.1") - 1, NULL },
	{ "cap 0", "192.0.2.1", 0, NULL },
	{ "AF_UNIX", NULL, PIN_KEY_MAX, NULL },
};

static void test_key_addr_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < NELEM(addr_cases); i++) {
		const struct addr_case *c = &addr_cases[i];
		struct sockaddr_storage ss;
		char out[PIN_KEY_MAX] = "untouched";
		int r;

		if (c->addr != NULL)
			ss = sa_of(c->addr);
		else {
			memset(&ss, 0, sizeof(ss));
			ss.ss_family = AF_UNIX;
		}
		r = pin_key_addr((struct sockaddr *)&ss, out, c->cap);
		EQ(c->name, r, c->want ? 0 : -1);
		if (c->want != NULL)
			STREQ(c->name, out, c->want);
	}
	assert_int_equal(pin_key_addr(NULL, (char[8]){ 0 }, 8), -1);
}

struct domain_case {
	const char *name;
	const char *in;
	size_t len;        /* 0: strlen(in) */
	const char *want;  /* NULL: -1 */
};

#define L63 "abcdefghij" "abcdefghij" "abcdefghij" "abcdefghij" \
	    "abcdefghij" "abcdefghij" "abc"
#define L61 "abcdefghij" "abcdefghij" "abcdefghij" "abcdefghij" \
	    "abcdefghij" "abcdefghij" "a"

static const struct domain_case domain_cases[] = {
	{ "lower", "example.net", 0, "domain:example.net" },
	{ "mixed case", "ExAmple.NET", 0, "domain:example.net" },
	{ "trailing dot", "example.net.", 0, "domain:example.net" },
	{ "one label", "localhost", 0, "domain:localhost" },
	{ "digits and hyphens", "mx-1.2nd-level.example", 0,
	  "domain:mx-1.2nd-level.example" },
	{ "A-label", "xn--bcher-kva.example", 0,
	  "domain:xn--bcher-kva.example" },
	{ "label of 63", L63 ".net", 0, "domain:" L63 ".net" },
	{ "253 in all", L63 "." L63 "." L63 "." L61, 0,
	  "domain:" L63 "." L63 "." L63 "." L61 },
	{ "253 and a trailing dot", L63 "." L63 "." L63 "." L61 ".", 0,
	  "domain:" L63 "." L63 "." L63 "." L61 },
	{ "len cuts the name", "example.net.evil", 11, "domain:example.net" },
	{ "numeric label, alpha TLD", "1.2.3.example", 0,
	  "domain:1.2.3.example" },

	{ "empty", "", 0, NULL },
	{ "only a dot", ".", 0, NULL },
	{ "two trailing dots", "example.net..", 0, NULL },
	{ "leading dot", ".example.net", 0, NULL },
	{ "empty label", "example..net", 0, NULL },
	{ "label starts with hyphen", "-mx.example.net", 0, NULL },
	{ "label ends with hyphen", "mx-.example.net", 0, NULL },
	{ "name ends with hyphen", "example.net-", 0, NULL },
	{ "underscore", "_dmarc.example.net", 0, NULL },
	{ "space", "exa mple.net", 0, NULL },
	{ "label of 64", L63 "x.net", 0, NULL },
	{ "254 in all", L63 "." L63 "." L63 "." L61 "x", 0, NULL },
	{ "an IPv4 address", "192.0.2.1", 0, NULL },
	{ "all-numeric TLD", "example.123", 0, NULL },
	{ "address literal", "[192.0.2.1]", 0, NULL },
	{ "UTF-8 U-label", "b\xc3\xbc" "cher.example", 0, NULL },
	{ "embedded NUL", "exa\0mple.net", 12, NULL },
	{ "at sign", "user@example.net", 0, NULL },
};

static void test_key_domain_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < NELEM(domain_cases); i++) {
		const struct domain_case *c = &domain_cases[i];
		char out[PIN_KEY_MAX] = "";
		size_t len = c->len ? c->len : strlen(c->in);
		int r = pin_key_domain(c->in, len, out, sizeof(out));

		EQ(c->name, r, c->want ? 0 : -1);
		if (c->want != NULL)
			STREQ(c->name, out, c->want);
	}
	assert_int_equal(pin_key_domain(NULL, 0, (char[8]){ 0 }, 8), -1);
	assert_int_equal(pin_key_domain("example.net", 11, (char[8]){ 0 }, 8),
	    -1);
}

struct parse_case {
	const char *name;
	const char *in;
	const char *want;  /* NULL: -1 */
};

static const struct parse_case parse_cases[] = {
	{ "IPv4", "198.51.100.25", "ip:198.51.100.25" },
	{ "IPv6", "2001:DB8:0::25", "ip:2001:db8::25" },
	{ "IPv6 in brackets", "[2001:db8::25]", "ip:2001:db8::25" },
	{ "IPv4-mapped", "::ffff:192.0.2.1", "ip:192.0.2.1" },
	{ "prefixed IPv4", "ip:198.51.100.25", "ip:198.51.100.25" },
	{ "prefixed IPv6, not canonical", "ip:2001:0db8::0025",
	  "ip:2001:db8::25" },
	{ "domain", "Example.NET.", "domain:example.net" },
	{ "prefixed domain", "domain:EXAMPLE.net", "domain:example.net" },

	{ "empty", "", NULL },
	{ "ip: with a name", "ip:example.net", NULL },
	{ "domain: with an address", "domain:192.0.2.1", NULL },
	{ "IPv4 with leading zeros", "198.051.100.025", NULL },
	{ "IPv4 short form", "127.1", NULL },
	{ "bad IPv6", "2001:db8::zz", NULL },
	{ "IPv6 with a zone", "fe80::1%eth0", NULL },
	{ "half a bracket", "[2001:db8::25", NULL },
	{ "prefix only", "ip:", NULL },
	{ "domain prefix only", "domain:", NULL },
	{ "bad domain", "exa mple.net", NULL },
	{ "port", "192.0.2.1:25", NULL },
};

static void test_key_parse_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < NELEM(parse_cases); i++) {
		const struct parse_case *c = &parse_cases[i];
		char out[PIN_KEY_MAX] = "";
		int r = pin_key_parse(c->in, out, sizeof(out));

		EQ(c->name, r, c->want ? 0 : -1);
		if (c->want != NULL)
			STREQ(c->name, out, c->want);
	}
	assert_int_equal(pin_key_parse(NULL, (char[8]){ 0 }, 8), -1);
}

/* ---- the store ---------------------------------------------------------------- */

/* Noted, visible while queued, committed, visible to a later read-only open. */
static void test_note_commit_get(void **state)
{
	struct fix *f = *state;
	struct pin_store *ps = open_store(f, false, 30 * DAY);
	struct pin p, want_dst, want_dom;
	struct pin_stats st;

	want_dst = mk_dst("ip:198.51.100.25", f->now, f->now, 1, 0x0304, spki_a);
	want_dom = mk_domain("domain:example.net", f->now, f->now, 1,
	    "198.51.100.25");
	assert_int_equal(get(ps, want_dst.key, f->now, &p), 0);
	note_dst(ps, "198.51.100.25", 0x0304, spki_a, f->now);
	note_domain(ps, "Example.NET", "::ffff:198.51.100.25", f->now);

	/* Queued notes are visible to this process before the commit. */
	assert_int_equal(get(ps, want_dst.key, f->now, &p), 1);
	expect_pin("queued dst", &p, &want_dst);
	assert_int_equal(get(ps, want_dom.key, f->now, &p), 1);
	expect_pin("queued domain", &p, &want_dom);
	assert_int_equal(collect(ps, f->now).n, 0);  /* foreach: committed only */

	commit_ok(ps);
	st = stats(ps);
	EQ("stats", st.queued, 2);
	EQ("stats", st.committed, 2);
	EQ("stats", st.dropped, 0);
	EQ("stats", st.errors, 0);
	assert_int_equal(get(ps, want_dst.key, f->now, &p), 1);
	expect_pin("committed dst", &p, &want_dst);
	STREQ("foreach", collect(ps, f->now).keys,
	    "domain:example.net ip:198.51.100.25");

	/* A commit with nothing queued is fine. */
	commit_ok(ps);

	/* A noted IPv6 destination without an SPKI. */
	note_dst(ps, "2001:db8::25", 0x0303, NULL, f->now);
	commit_ok(ps);
	close_store(f);

	ps = open_store(f, true, 30 * DAY);
	assert_int_equal(get(ps, want_dst.key, f->now, &p), 1);
	expect_pin("reopened dst", &p, &want_dst);
	assert_int_equal(get(ps, want_dom.key, f->now, &p), 1);
	expect_pin("reopened domain", &p, &want_dom);
	assert_int_equal(get(ps, "ip:2001:db8::25", f->now, &p), 1);
	assert_false(p.has_spki);
	assert_int_equal(p.tls_version, 0x0303);
	assert_int_equal(get(ps, "ip:192.0.2.99", f->now, &p), 0);
}

/*
 * Merge: first_seen stays, last_seen is the latest, counts add, version,
 * SPKI and via follow the latest sighting, an SPKI-less sighting keeps the
 * stored SPKI. The queued view equals the committed one.
 */
static void test_merge(void **state)
{
	struct fix *f = *state;
	struct pin_store *ps = open_store(f, false, 30 * DAY);
	int64_t t0 = f->now - 10 * DAY;
	struct pin p, stored, q, want;

	stored = mk_dst("ip:192.0.2.10", t0, t0 + 100, 5, 0x0304, spki_a);
	put_ok(ps, &stored);
	note_dst(ps, "192.0.2.10", 0x0303, spki_b, f->now);
	note_dst(ps, "192.0.2.10", 0x0303, NULL, f->now - 50);  /* older */
	want = mk_dst("ip:192.0.2.10", t0, f->now, 7, 0x0303, spki_b);
	assert_int_equal(get(ps, want.key, f->now, &q), 1);
	expect_pin("queued merge", &q, &want);
	commit_ok(ps);
	assert_int_equal(get(ps, want.key, f->now, &p), 1);
	expect_pin("committed merge", &p, &want);

	/* A later sighting without an SPKI keeps the stored one. */
	note_dst(ps, "192.0.2.10", 0x0304, NULL, f->now + 10);
	commit_ok(ps);
	want = mk_dst("ip:192.0.2.10", t0, f->now + 10, 8, 0x0304, spki_b);
	assert_int_equal(get(ps, want.key, f->now + 10, &p), 1);
	expect_pin("no spki", &p, &want);

	/* Domains: via follows the latest sighting. */
	stored = mk_domain("domain:example.org", t0, t0, 2, "192.0.2.1");
	put_ok(ps, &stored);
	note_domain(ps, "example.org", "2001:db8::2", f->now);
	note_domain(ps, "EXAMPLE.org.", "192.0.2.3", f->now + 1);
	commit_ok(ps);
	want = mk_domain("domain:example.org", t0, f->now + 1, 4, "192.0.2.3");
	assert_int_equal(get(ps, want.key, f->now + 1, &p), 1);
	expect_pin("domain", &p, &want);

	/* Notes merge in the queue: first is the earliest, last the latest. */
	note_dst(ps, "192.0.2.20", 0x0304, NULL, f->now);
	note_dst(ps, "192.0.2.20", 0x0304, NULL, f->now - 30);
	note_dst(ps, "192.0.2.20", 0x0304, NULL, f->now + 30);
	commit_ok(ps);
	want = mk_dst("ip:192.0.2.20", f->now - 30, f->now + 30, 3, 0x0304,
	    NULL);
	assert_int_equal(get(ps, want.key, f->now, &p), 1);
	expect_pin("queue merge", &p, &want);
	EQ("stats", stats(ps).queued, 8);
	EQ("stats", stats(ps).committed, 8);
}

/* Expired pins are absent for get and foreach, and a commit purges them. */
static void test_expiry(void **state)
{
	struct fix *f = *state;
	struct pin_store *ps = open_store(f, false, 30 * DAY);
	int64_t old = f->now - 40 * DAY;
	struct pin p, stale, fresh, edge;
	struct collect c;

	stale = mk_dst("ip:192.0.2.1", old - DAY, old, 9, 0x0304, spki_a);
	fresh = mk_dst("ip:192.0.2.2", old, f->now, 1, 0x0304, NULL);
	edge = mk_domain("domain:edge.example", old, f->now - 30 * DAY, 1, "");
	put_ok(ps, &stale);
	put_ok(ps, &fresh);
	put_ok(ps, &edge);

	assert_int_equal(get(ps, stale.key, f->now, &p), 0);
	assert_int_equal(get(ps, fresh.key, f->now, &p), 1);
	/* Exactly expire_secs old is still there; one second more is not. */
	assert_int_equal(get(ps, edge.key, f->now, &p), 1);
	assert_int_equal(get(ps, edge.key, f->now + 1, &p), 0);
	STREQ("foreach now", collect(ps, f->now).keys,
	    "domain:edge.example ip:192.0.2.2");
	/* Seen from the past, the stale pin is still stored... */
	assert_int_equal(get(ps, stale.key, old, &p), 1);
	c = collect(ps, old);
	STREQ("foreach then", c.keys,
	    "domain:edge.example ip:192.0.2.1 ip:192.0.2.2");

	/*
	 * ...until a commit purges it (with nothing queued, too). The commit
	 * expires against the real clock, an hour past f->now: edge goes too.
	 */
	commit_ok(ps);
	assert_int_equal(get(ps, stale.key, old, &p), 0);
	STREQ("after commit", collect(ps, old).keys, "ip:192.0.2.2");

	/* A sighting of an expired pin starts it afresh. */
	put_ok(ps, &stale);
	note_dst(ps, "192.0.2.1", 0x0303, NULL, f->now);
	assert_int_equal(get(ps, stale.key, f->now, &p), 1);
	EQ("restart queued", p.first_seen, f->now);
	EQ("restart queued", p.count, 1);
	commit_ok(ps);
	assert_int_equal(get(ps, stale.key, f->now, &p), 1);
	EQ("restart", p.first_seen, f->now);
	EQ("restart", p.count, 1);
	assert_false(p.has_spki);

	/* expire 0: nothing expires. (Closing commits: it purges, too.) */
	close_store(f);
	ps = open_store(f, false, 0);
	put_ok(ps, &stale);
	assert_int_equal(get(ps, stale.key, f->now + 3650 * DAY, &p), 1);
	commit_ok(ps);
	assert_int_equal(get(ps, stale.key, f->now, &p), 1);
}

/* More expired pins than one sweep checks: a few commits purge them all. */
static void test_expiry_sweep_bounded(void **state)
{
	struct fix *f = *state;
	struct pin_store *ps = open_store(f, false, 30 * DAY);
	int64_t old = f->now - 40 * DAY;
	char key[PIN_KEY_MAX];
	struct pin p;
	int commits;

	for (int i = 0; i < 3000; i++) {
		snprintf(key, sizeof(key), "ip:10.%d.%d.%d", i >> 16,
		    (i >> 8) & 255, i & 255);
		/* every 7th pin is fresh and must survive */
		p = mk_dst(key, old, i % 7 == 0 ? f->now : old, 1, 0x0304, NULL);
		put_ok(ps, &p);
	}
	EQ("before", collect(ps, old).n, 3000);
	for (commits = 1; commits <= 10; commits++) {
		commit_ok(ps);
		if (collect(ps, old).n == 429)  /* ceil(3000 / 7) */
			break;
	}
	assert_true(commits >= 2 && commits <= 4);
	EQ("fresh ones", collect(ps, f->now).n, 429);
	/* And the cursor wraps: a new expired pin before it goes too. */
	p = mk_dst("ip:10.0.0.1", old, old, 1, 0x0304, NULL);
	put_ok(ps, &p);
	for (int i = 0; i < 4; i++)
		commit_ok(ps);
	assert_int_equal(get(ps, "ip:10.0.0.1", old, &p), 0);
}

static void test_forget(void **state)
{
	struct fix *f = *state;
	struct pin_store *ps = open_store(f, false, 30 * DAY);
	char err[ERRLEN] = "";
	struct pin p;

	note_dst(ps, "192.0.2.1", 0x0304, NULL, f->now);
	commit_ok(ps);
	assert_int_equal(pin_forget(ps, "ip:192.0.2.1", err, sizeof(err)), 1);
	assert_int_equal(get(ps, "ip:192.0.2.1", f->now, &p), 0);
	assert_int_equal(pin_forget(ps, "ip:192.0.2.1", err, sizeof(err)), 0);

	/* A queued sighting goes with the forget, and is not written later. */
	note_domain(ps, "example.net", "192.0.2.1", f->now);
	assert_int_equal(pin_forget(ps, "domain:example.net", err,
	    sizeof(err)), 1);
	assert_int_equal(get(ps, "domain:example.net", f->now, &p), 0);
	commit_ok(ps);
	assert_int_equal(get(ps, "domain:example.net", f->now, &p), 0);
	/* ...but a sighting after the forget counts again. */
	note_domain(ps, "example.net", "192.0.2.1", f->now + 5);
	commit_ok(ps);
	assert_int_equal(get(ps, "domain:example.net", f->now + 5, &p), 1);
	EQ("after forget", p.count, 1);
	EQ("after forget", p.first_seen, f->now + 5);

	assert_int_equal(pin_forget(ps, "", err, sizeof(err)), -1);
	close_store(f);
	ps = open_store(f, true, 30 * DAY);
	assert_int_equal(pin_forget(ps, "domain:example.net", err, sizeof(err)),
	    -1);
	CONTAINS("read-only forget", err, "read-only");
}

static void test_queue_overflow(void **state)
{
	struct fix *f = *state;
	struct pin_store *ps = open_store(f, false, 30 * DAY);
	char addr[32];
	struct pin p;

	for (int i = 0; i < PIN_QUEUE_MAX; i++) {
		snprintf(addr, sizeof(addr), "10.1.%d.%d", i >> 8, i & 255);
		note_dst(ps, addr, 0x0304, NULL, f->now);
	}
	EQ("full", stats(ps).dropped, 0);
	note_dst(ps, "192.0.2.1", 0x0304, NULL, f->now);
	note_domain(ps, "example.net", "192.0.2.1", f->now);
	EQ("dropped", stats(ps).dropped, 2);
	assert_int_equal(get(ps, "ip:192.0.2.1", f->now, &p), 0);
	/* A key already queued still merges. */
	note_dst(ps, "10.1.0.0", 0x0304, NULL, f->now);
	EQ("merged", stats(ps).dropped, 2);
	EQ("queued", stats(ps).queued, PIN_QUEUE_MAX + 1);
	commit_ok(ps);
	EQ("committed", stats(ps).committed, PIN_QUEUE_MAX + 1);
	assert_int_equal(get(ps, "ip:10.1.0.0", f->now, &p), 1);
	EQ("merged count", p.count, 2);
	/* The commit emptied the queue. */
	note_dst(ps, "192.0.2.1", 0x0304, NULL, f->now);
	EQ("room again", stats(ps).dropped, 2);
	commit_ok(ps);
	EQ("all there", collect(ps, f->now).n, PIN_QUEUE_MAX + 1);
}

/* Records written behind the store's back, with raw LMDB. */
struct raw_rec {
	const char *key;
	size_t len;
	uint8_t val[128];
};

static void raw_put(const char *dir, const struct raw_rec *r, size_t n)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
	for (size_t i = 0; i < n; i++) {
		MDB_val k = { strlen(r[i].key), (void *)(uintptr_t)r[i].key };
		MDB_val v = { r[i].len, (void *)(uintptr_t)r[i].val };

		assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	}
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

/* A valid version-1 record of kind k, as the store writes it. */
static void rec_v1(uint8_t *b, int kind)
{
	memset(b, 0, 112);
	b[0] = 1;
	b[1] = (uint8_t)kind;
	b[4] = 0x04;
	b[5] = 0x03;
	b[8] = 0x10;   /* first_seen 0x5f000010 */
	b[11] = 0x5f;
	b[16] = 0x10;  /* last_seen: the same */
	b[19] = 0x5f;
	b[24] = 3;     /* count */
}

static void test_corrupt_records(void **state)
{
	struct fix *f = *state;
	struct pin_store *ps = open_store(f, false, 0);
	struct raw_rec recs[8];
	struct pin p, good;
	char err[ERRLEN] = "";
	size_t n = 0;

	good = mk_dst("ip:192.0.2.100", f->now, f->now, 1, 0x0304, spki_a);
	put_ok(ps, &good);
	close_store(f);  /* one LMDB handle per process at a time */

	memset(recs, 0, sizeof(recs));
	recs[n] = (struct raw_rec){ "ip:192.0.2.1", 4, { 1, 'a', 'b', 'c' } };
	n++;  /* truncated */
	recs[n] = (struct raw_rec){ "ip:192.0.2.2", 112, { 0 } };
	rec_v1(recs[n].val, 0);
	recs[n++].val[0] = 2;  /* a version from the future */
	recs[n] = (struct raw_rec){ "ip:192.0.2.3", 113, { 0 } };
	rec_v1(recs[n++].val, 0);  /* one byte too long */
	recs[n] = (struct raw_rec){ "domain:example.org", 112, { 0 } };
	rec_v1(recs[n++].val, 0);  /* kind says destination */
	recs[n] = (struct raw_rec){ "ip:192.0.2.4", 112, { 0 } };
	rec_v1(recs[n].val, 0);
	memset(recs[n++].val + 64, 'x', 48);  /* via without a NUL */
	recs[n] = (struct raw_rec){ "bogus-key", 112, { 0 } };
	rec_v1(recs[n++].val, 0);
	recs[n] = (struct raw_rec){ "ip:192.0.2.5", 0, { 0 } };
	n++;  /* empty */
	recs[n] = (struct raw_rec){ "ip:192.0.2.6", 112, { 0 } };
	rec_v1(recs[n++].val, 0);  /* a good one, raw: the layout is the format */
	raw_put(f->dir, recs, n);

	ps = open_store(f, false, 0);
	for (size_t i = 0; i + 1 < n; i++) {
		if (strcmp(recs[i].key, "bogus-key") == 0)
			continue;  /* pin_get refuses the key itself */
		EQ(recs[i].key, get(ps, recs[i].key, f->now, &p), 0);
	}
	EQ("errors", stats(ps).errors, n - 2);
	assert_int_equal(get(ps, "ip:192.0.2.6", f->now, &p), 1);
	EQ("raw v1", p.first_seen, 0x5f000010);
	EQ("raw v1", p.count, 3);
	EQ("raw v1", p.tls_version, 0x0304);
	assert_int_equal(pin_get(ps, "bogus-key", f->now, &p, err,
	    sizeof(err)), -1);
	STREQ("foreach skips", collect(ps, f->now).keys,
	    "ip:192.0.2.100 ip:192.0.2.6");
	EQ("errors", stats(ps).errors, (n - 2) + (n - 1));

	/* A sighting replaces a damaged record; forget removes one. */
	note_dst(ps, "192.0.2.1", 0x0303, NULL, f->now);
	commit_ok(ps);
	assert_int_equal(get(ps, "ip:192.0.2.1", f->now, &p), 1);
	EQ("replaced", p.count, 1);
	assert_int_equal(pin_forget(ps, "ip:192.0.2.2", err, sizeof(err)), 1);
	assert_int_equal(pin_forget(ps, "bogus-key", err, sizeof(err)), 1);
	assert_int_equal(get(ps, good.key, f->now, &p), 1);
	expect_pin("good one untouched", &p, &good);
}

/*
 * Daemon and starttlsctl: two processes on one directory. The child's
 * forget is seen by the parent's next pin_get, the child's put too, and
 * the parent's commit by the child.
 */
static void test_two_processes(void **state)
{
	struct fix *f = *state;
	struct pin_store *ps = open_store(f, false, 30 * DAY);
	struct pin p, a, b;
	pid_t pid;
	int status;

	a = mk_dst("ip:192.0.2.1", f->now, f->now, 1, 0x0304, NULL);
	b = mk_domain("domain:example.net", f->now, f->now, 1, "192.0.2.1");
	put_ok(ps, &a);
	assert_int_equal(get(ps, a.key, f->now, &p), 1);
	note_dst(ps, "192.0.2.7", 0x0304, NULL, f->now);
	commit_ok(ps);

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* starttlsctl's part: no cmocka here, the exit code says. */
		char err[ERRLEN];
		struct pin_store *c = pin_open(f->dir, false, 0, err,
		    sizeof(err));
		struct pin q;
		int rc = 0;

		if (c == NULL)
			_exit(10);
		if (pin_get(c, "ip:192.0.2.7", f->now, &q, err, sizeof(err)) != 1)
			rc = 11;
		else if (pin_forget(c, a.key, err, sizeof(err)) != 1)
			rc = 12;
		else if (pin_put(c, &b, err, sizeof(err)) != 0)
			rc = 13;
		pin_close(c);
		_exit(rc);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(get(ps, a.key, f->now, &p), 0);
	assert_int_equal(get(ps, b.key, f->now, &p), 1);
	expect_pin("child's put", &p, &b);

	/* A read-only opener alongside, while this one stays open. */
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char err[ERRLEN];
		struct pin_store *c = pin_open(f->dir, true, 30 * DAY, err,
		    sizeof(err));
		struct pin q;
		int rc = 0;

		if (c == NULL)
			_exit(20);
		if (pin_get(c, b.key, f->now, &q, err, sizeof(err)) != 1)
			rc = 21;
		pin_close(c);
		_exit(rc);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* A handle used after fork() refuses, loudly, instead of sharing locks. */
static void test_fork_guard(void **state)
{
	struct fix *f = *state;
	struct pin_store *ps = open_store(f, false, 30 * DAY);
	pid_t pid;
	int status;

	note_dst(ps, "192.0.2.1", 0x0304, NULL, f->now);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char err[ERRLEN] = "";
		struct pin q;
		int rc = 0;

		if (pin_get(ps, "ip:192.0.2.1", f->now, &q, err, sizeof(err)) != -1
		    || strstr(err, "before a fork") == NULL)
			rc = 30;
		else if (pin_commit(ps, err, sizeof(err)) != -1)
			rc = 31;
		pin_close(ps);  /* frees only the copy */
		_exit(rc);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	commit_ok(ps);
}

static void test_double_open_refused(void **state)
{
	struct fix *f = *state;
	char err[ERRLEN] = "";
	struct pin_store *second;

	open_store(f, false, 0);
	second = pin_open(f->dir, true, 0, err, sizeof(err));
	assert_null(second);
	CONTAINS("double open", err, "already open in this process");
	close_store(f);
	open_store(f, true, 0);  /* fine once the first is closed */
}

struct open_err_case {
	const char *name;
	const char *dir;   /* "@" is the fixture's directory */
	bool readonly;
	const char *want;  /* in err */
};

static const struct open_err_case open_err_cases[] = {
	{ "under a file", "/dev/null/pins", false,
	  "state_dir /dev/null/pins: Not a directory" },
	{ "a file", "/dev/null", false, "state_dir /dev/null: Not a directory" },
	{ "no parent", "/nonexistent-starttlsd/pins", false,
	  "state_dir /nonexistent-starttlsd/pins: No such file or directory" },
	{ "read-only, missing", "/nonexistent-starttlsd", true,
	  "state_dir /nonexistent-starttlsd: No such file or directory" },
	{ "read-only, empty directory", "@", true, "no pin store there" },
	{ "empty name", "", false, "state_dir: empty" },
};

static void test_open_errors(void **state)
{
	struct fix *f = *state;
	char err[ERRLEN];

	for (size_t i = 0; i < NELEM(open_err_cases); i++) {
		const struct open_err_case *c = &open_err_cases[i];
		const char *dir = strcmp(c->dir, "@") == 0 ? f->dir : c->dir;

		err[0] = '\0';
		assert_null(pin_open(dir, c->readonly, 0, err, sizeof(err)));
		CONTAINS(c->name, err, c->want);
	}
	/* A world-writable directory is refused. */
	{
		char dir[96];

		snprintf(dir, sizeof(dir), "%s/open", f->dir);
		assert_int_equal(mkdir(dir, 0700), 0);
		assert_int_equal(chmod(dir, 0777), 0);
		assert_null(pin_open(dir, true, 0, err, sizeof(err)));
		CONTAINS("world-writable", err, "writable by everyone");
		assert_int_equal(chmod(dir, 01777), 0);
		assert_null(pin_open(dir, false, 0, err, sizeof(err)));
		CONTAINS("sticky", err, "writable by everyone");
	}
	/* Permission denied: only meaningful when not root. */
	if (geteuid() != 0) {
		char dir[96];

		snprintf(dir, sizeof(dir), "%s/locked", f->dir);
		assert_int_equal(mkdir(dir, 0500), 0);
		snprintf(dir, sizeof(dir), "%s/locked/pins", f->dir);
		assert_null(pin_open(dir, false, 0, err, sizeof(err)));
		CONTAINS("EACCES", err, ": Permission denied");
	}
}

/* The directory is created 0700; a read-only store writes nothing. */
static void test_modes(void **state)
{
	struct fix *f = *state;
	char sub[96], err[ERRLEN] = "";
	struct pin_store *ps;
	struct stat st;
	struct pin p = mk_dst("ip:192.0.2.1", f->now, f->now, 1, 0x0304, NULL);

	snprintf(sub, sizeof(sub), "%s/state", f->dir);
	ps = pin_open(sub, false, 0, err, sizeof(err));
	assert_non_null(ps);
	assert_int_equal(stat(sub, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	pin_close(ps);

	ps = open_store(f, false, 0);
	put_ok(ps, &p);
	ps = open_store(f, true, 0);
	note_dst(ps, "192.0.2.2", 0x0304, NULL, f->now);
	EQ("read-only note", stats(ps).dropped, 1);
	assert_int_equal(pin_commit(ps, err, sizeof(err)), 0);
	assert_int_equal(pin_put(ps, &p, err, sizeof(err)), -1);
	CONTAINS("read-only put", err, "read-only");
	assert_int_equal(get(ps, "ip:192.0.2.2", f->now, &p), 0);
	assert_int_equal(get(ps, "ip:192.0.2.1", f->now, &p), 1);
	assert_int_equal(pin_get(ps, "198.51.100.1", f->now, &p, err,
	    sizeof(err)), -1);  /* not a key */
}

/* pin_close does not wait out the 5-second sync interval. */
static void test_close_is_prompt(void **state)
{
	struct fix *f = *state;
	struct timespec a, b;
	double secs;

	open_store(f, false, 0);
	note_dst(f->ps, "192.0.2.1", 0x0304, NULL, f->now);
	usleep(50 * 1000);  /* let the thread reach its wait */
	clock_gettime(CLOCK_MONOTONIC, &a);
	close_store(f);
	clock_gettime(CLOCK_MONOTONIC, &b);
	secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	assert_true(secs < 1.0);
	/* ...and it committed what was queued. */
	{
		struct pin p;

		open_store(f, true, 0);
		assert_int_equal(get(f->ps, "ip:192.0.2.1", f->now, &p), 1);
	}
}

/* No store (it failed to open): notes vanish, reads say so, nothing crashes. */
static void test_null_store(void **state)
{
	struct pin_stats st;
	struct pin p = { 0 };
	char err[ERRLEN] = "";
	struct sockaddr_storage ss = sa_of("192.0.2.1");

	(void)state;
	pin_note_dst(NULL, (struct sockaddr *)&ss, 0x0304, NULL, 1);
	pin_note_domain(NULL, "example.net", 11, (struct sockaddr *)&ss, 1);
	assert_int_equal(pin_commit(NULL, err, sizeof(err)), 0);
	assert_int_equal(pin_get(NULL, "ip:192.0.2.1", 1, &p, err, sizeof(err)),
	    -1);
	assert_int_equal(pin_forget(NULL, "ip:192.0.2.1", err, sizeof(err)), -1);
	assert_int_equal(pin_put(NULL, &p, err, sizeof(err)), -1);
	pin_get_stats(NULL, &st);
	EQ("null stats", st.queued + st.committed + st.dropped + st.errors, 0);
	pin_close(NULL);
}

/* Bad notes are not stored; a bad address is the caller's bug: counted. */
static void test_bad_notes(void **state)
{
	struct fix *f = *state;
	struct pin_store *ps = open_store(f, false, 0);
	struct sockaddr_storage un;

	memset(&un, 0, sizeof(un));
	un.ss_family = AF_UNIX;
	pin_note_dst(ps, (struct sockaddr *)&un, 0x0304, NULL, f->now);
	pin_note_dst(ps, NULL, 0x0304, NULL, f->now);
	note_domain(ps, "[192.0.2.1]", "192.0.2.1", f->now);
	pin_note_domain(ps, "example.net", 11, NULL, f->now);  /* via unknown */
	EQ("errors", stats(ps).errors, 2);
	EQ("queued", stats(ps).queued, 1);
	commit_ok(ps);
	EQ("stored", collect(ps, f->now).n, 1);
}

/* ---- pin_put validation --------------------------------------------------------- */

struct put_case {
	const char *name;
	struct pin p;
	const char *want;  /* NULL: accepted; else in err */
};

#define T0 1714557600  /* 2024-05-01T10:00:00Z */

static void test_put_validation(void **state)
{
	struct fix *f = *state;
	struct pin_store *ps = open_store(f, false, 0);
	const struct put_case cases[] = {
		{ "dst", mk_dst("ip:192.0.2.1", T0, T0, 1, 0x0304, spki_a), NULL },
		{ "domain", mk_domain("domain:example.net", T0, T0, 1,
		  "2001:db8::1"), NULL },
		{ "domain, no via", mk_domain("domain:example.net", T0, T0, 1,
		  ""), NULL },
		{ "key not canonical", mk_dst("ip:2001:DB8::1", T0, T0, 1,
		  0x0304, NULL), "key: not in canonical form" },
		{ "upper-case domain", mk_domain("domain:Example.net", T0, T0, 1,
		  ""), "key: not in canonical form" },
		{ "no prefix", mk_dst("192.0.2.1", T0, T0, 1, 0x0304, NULL),
		  "key: expected ip:ADDRESS or domain:NAME" },
		{ "bad address", mk_dst("ip:192.0.2", T0, T0, 1, 0x0304, NULL),
		  "key: not an IP address" },
		{ "zero count", mk_dst("ip:192.0.2.1", T0, T0, 0, 0x0304, NULL),
		  "count: must be at least 1" },
		{ "last before first", mk_dst("ip:192.0.2.1", T0, T0 - 1, 1,
		  0x0304, NULL), "last_seen: before first_seen" },
		{ "time 0", mk_dst("ip:192.0.2.1", 0, T0, 1, 0x0304, NULL),
		  "first_seen: out of range" },
		{ "year 10000", mk_dst("ip:192.0.2.1", T0, PIN_TIME_MAX + 1, 1,
		  0x0304, NULL), "last_seen: out of range" },
		{ "dst without version", mk_dst("ip:192.0.2.1", T0, T0, 1, 0,
		  NULL), "tls_version: missing or 0" },
		{ "via not canonical", mk_domain("domain:example.net", T0, T0, 1,
		  "2001:DB8::1"), "via: not an IP address in canonical form" },
		{ "via a name", mk_domain("domain:example.net", T0, T0, 1,
		  "mx.example.net"), "via: not an IP address" },
	};

	for (size_t i = 0; i < NELEM(cases); i++) {
		char err[ERRLEN] = "";
		int r = pin_put(ps, &cases[i].p, err, sizeof(err));

		EQ(cases[i].name, r, cases[i].want ? -1 : 0);
		if (cases[i].want != NULL)
			CONTAINS(cases[i].name, err, cases[i].want);
	}
	/* Fields of the other kind. */
	{
		struct pin p = mk_dst("ip:192.0.2.1", T0, T0, 1, 0x0304, NULL);
		struct pin d = mk_domain("domain:example.net", T0, T0, 1, "");
		char err[ERRLEN] = "";

		snprintf(p.via, sizeof(p.via), "192.0.2.9");
		assert_int_equal(pin_put(ps, &p, err, sizeof(err)), -1);
		CONTAINS("dst with via", err, "via: only domain pins");
		d.has_spki = true;
		assert_int_equal(pin_put(ps, &d, err, sizeof(err)), -1);
		CONTAINS("domain with spki", err, "spki_sha256: only destination");
		d.has_spki = false;
		d.kind = PIN_DST;
		assert_int_equal(pin_put(ps, &d, err, sizeof(err)), -1);
		CONTAINS("kind", err, "kind: does not match the key");
	}
}

int main(void)
{
#define FIX(t) cmocka_unit_test_setup_teardown(t, fix_setup, fix_teardown)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_addr_table),
		cmocka_unit_test(test_key_domain_table),
		cmocka_unit_test(test_key_parse_table),
		FIX(test_note_commit_get),
		FIX(test_merge),
		FIX(test_expiry),
		FIX(test_expiry_sweep_bounded),
		FIX(test_forget),
		FIX(test_queue_overflow),
		FIX(test_corrupt_records),
		FIX(test_two_processes),
		FIX(test_fork_guard),
		FIX(test_double_open_refused),
		FIX(test_open_errors),
		FIX(test_modes),
		FIX(test_close_is_prompt),
		cmocka_unit_test(test_null_store),
		FIX(test_bad_notes),
		FIX(test_put_validation),
	};
#undef FIX

	return cmocka_run_group_tests(tests, NULL, NULL);
}
