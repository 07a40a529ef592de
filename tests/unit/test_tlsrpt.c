/*
 * Unit tests for the TLS-RPT store (proxy/tlsrpt.c), the report (proxy/
 * tlsrptjson.c: JSON checked against RFC 8460 4.4's required members and
 * types, gzip round trip) and delivery's pure parts (proxy/tlsrptsend.c:
 * the _smtp._tls TXT record, the RFC 8460 5.3 message).
 */

#include "unit.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <zlib.h>

#include "starttlsd/tlsrpt.h"

#define ERRLEN 512

struct fix {
	char dir[64];
	struct tlsrpt_opts o;
	struct tlsrpt *t;
	int64_t now;
	uint32_t today;
};

static int fix_setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	char err[ERRLEN];

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_tlsrpt.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->o.state_dir = f->dir;
	f->o.org_name = "Example Gateway Org";
	f->o.contact = "postmaster@gw.example.org";
	f->o.from = "tlsrpt@gw.example.org";
	f->now = (int64_t)time(NULL);
	f->today = tlsrpt_day(f->now);
	f->t = tlsrpt_open(&f->o, err, sizeof(err));
	if (f->t == NULL)
		print_error("open: %s\n", err);
	assert_non_null(f->t);
	*state = f;
	return 0;
}

static int fix_teardown(void **state)
{
	struct fix *f = *state;
	char path[128];

	tlsrpt_close(f->t);
	snprintf(path, sizeof(path), "%s/tlsrpt.mdb", f->dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/tlsrpt.mdb-lock", f->dir);
	unlink(path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static struct pd_report rep(uint8_t type, enum pd_result res, const char *dom,
    const char *mx, const char *ip, int64_t when)
{
	struct pd_report r;

	memset(&r, 0, sizeof(r));
	r.policy_type = type;
	r.result = res;
	snprintf(r.domain, sizeof(r.domain), "%s", dom);
	snprintf(r.mx, sizeof(r.mx), "%s", mx != NULL ? mx : "");
	if (ip != NULL && strchr(ip, ':') != NULL) {
		r.addr.family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, ip, r.addr.addr), 1);
	} else if (ip != NULL) {
		r.addr.family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, ip, r.addr.addr), 1);
	}
	r.when = (uint32_t)when;
	return r;
}

static void record_ok(struct fix *f, const struct pd_report *r,
    const char *const *s, size_t n)
{
	char err[ERRLEN] = "";

	if (tlsrpt_record(f->t, r, s, n, err, sizeof(err)) != 0) {
		print_error("record: %s\n", err);
		fail();
	}
}

struct collect {
	size_t n;
	struct tlsrpt_agg a[8];
};

static int collect_cb(const struct tlsrpt_agg *a, void *arg)
{
	struct collect *c = arg;

	if (c->n < NELEM(c->a))
		c->a[c->n] = *a;
	/* strings point into a's own buffer: fix them up for the copy */
	for (size_t i = 0; c->n < NELEM(c->a) && i < a->nstrings; i++)
		c->a[c->n].strings[i] = c->a[c->n].buf + (a->strings[i] - a->buf);
	c->n++;
	return 0;
}

static const char *const sts_pol[] = {
	"version: STSv1", "mode: enforce", "mx: mx1.example.net",
	"mx: *.mail.example.net", "max_age: 86400",
};
static const char *const tlsa_pol[] = {
	"3 1 1 8CB0FC6C527506A053F4F14C8464BEBBD6DEDE2738D11468DD953D7D6A3021F1",
};

/* ---- days ---------------------------------------------------------------------- */

static void test_days(void **state)
{
	char s[11];
	uint32_t d;

	(void)state;
	EQ("epoch", tlsrpt_day(0), 0);
	EQ("1 Apr 2016", tlsrpt_day(1459468800), 16892);
	EQ("end of 1 Apr 2016", tlsrpt_day(1459468800 + 86399), 16892);
	tlsrpt_day_str(16892, s);
	STREQ("day str", s, "2016-04-01");
	EQ("parse", tlsrpt_day_parse("2016-04-01", &d), 0);
	EQ("parsed", d, 16892);
	EQ("30 Feb", tlsrpt_day_parse("2026-02-30", &d), -1);
	EQ("short", tlsrpt_day_parse("2026-2-03", &d), -1);
	EQ("letters", tlsrpt_day_parse("2026-0a-03", &d), -1);
	EQ("before 1970", tlsrpt_day_parse("1969-12-31", &d), -1);
	EQ("NULL", tlsrpt_day_parse(NULL, &d), -1);
}

/* ---- record and aggregate -------------------------------------------------------- */

static void test_aggregate(void **state)
{
	struct fix *f = *state;
	struct collect c = { 0 };
	struct pd_report r;
	char err[ERRLEN];

	for (int i = 0; i < 5; i++) {
		r = rep(TLSRPT_STS, PD_R_SUCCESS, "Example.NET.", "mx1.example.net",
		    "203.0.113.25", f->now);
		record_ok(f, &r, sts_pol, NELEM(sts_pol));
	}
	for (int i = 0; i < 3; i++) {
		r = rep(TLSRPT_STS, PD_R_CERT_EXPIRED, "example.net",
		    "mx1.example.net", "203.0.113.25", f->now);
		record_ok(f, &r, sts_pol, NELEM(sts_pol));
	}
	r = rep(TLSRPT_STS, PD_R_CERT_EXPIRED, "example.net", "mx2.example.net",
	    "2001:db8::25", f->now);
	record_ok(f, &r, sts_pol, NELEM(sts_pol));
	r = rep(TLSRPT_STS, PD_R_STARTTLS_NOT_SUPPORTED, "example.net", "", NULL,
	    f->now);
	record_ok(f, &r, sts_pol, NELEM(sts_pol));
	/* the same domain under DANE: a second policy */
	r = rep(TLSRPT_TLSA, PD_R_SUCCESS, "example.net", "mx1.example.net",
	    "203.0.113.25", f->now);
	record_ok(f, &r, tlsa_pol, NELEM(tlsa_pol));
	/* another domain, another day */
	r = rep(TLSRPT_TLSA, PD_R_TLSA_INVALID, "example.com", "mx.example.com",
	    "198.51.100.7", f->now);
	record_ok(f, &r, tlsa_pol, NELEM(tlsa_pol));
	r = rep(TLSRPT_TLSA, PD_R_SUCCESS, "example.org", NULL, NULL,
	    f->now - 86400);
	record_ok(f, &r, NULL, 0);

	assert_int_equal(tlsrpt_foreach(f->t, f->today, "example.net", collect_cb,
	    &c, err, sizeof(err)), 0);
	EQ("example.net policies", c.n, 2);
	/* sts (type 2) after tlsa (type 1) in key order */
	EQ("first is tlsa", c.a[0].type, TLSRPT_TLSA);
	EQ("tlsa success", c.a[0].success, 1);
	EQ("tlsa failure", c.a[0].failure, 0);
	EQ("tlsa strings", c.a[0].nstrings, 1);
	STREQ("tlsa string", c.a[0].strings[0], tlsa_pol[0]);
	EQ("sts", c.a[1].type, TLSRPT_STS);
	STREQ("domain lower case, no dot", c.a[1].domain, "example.net");
	EQ("sts success", c.a[1].success, 5);
	EQ("sts failure", c.a[1].failure, 5);
	EQ("sts strings", c.a[1].nstrings, NELEM(sts_pol));
	STREQ("sts string 3", c.a[1].strings[3], "mx: *.mail.example.net");
	EQ("sts detail rows", c.a[1].ndetails, 3);
	EQ("row 0 result", c.a[1].details[0].result, PD_R_CERT_EXPIRED);
	EQ("row 0 count", c.a[1].details[0].count, 3);
	STREQ("row 0 mx", c.a[1].details[0].mx, "mx1.example.net");
	EQ("row 0 family", c.a[1].details[0].addr.family, AF_INET);
	EQ("row 1 count", c.a[1].details[1].count, 1);
	EQ("row 1 family", c.a[1].details[1].addr.family, AF_INET6);
	EQ("row 2 result", c.a[1].details[2].result, PD_R_STARTTLS_NOT_SUPPORTED);
	EQ("row 2 no address", c.a[1].details[2].addr.family, 0);
	STREQ("row 2 no mx", c.a[1].details[2].mx, "");

	memset(&c, 0, sizeof(c));
	assert_int_equal(tlsrpt_foreach(f->t, f->today, NULL, collect_cb, &c,
	    err, sizeof(err)), 0);
	EQ("today: 3 policies", c.n, 3);
	STREQ("domain order", c.a[0].domain, "example.com");
	memset(&c, 0, sizeof(c));
	assert_int_equal(tlsrpt_foreach(f->t, f->today - 1, NULL, collect_cb, &c,
	    err, sizeof(err)), 0);
	EQ("yesterday: 1", c.n, 1);
	EQ("yesterday no strings", c.a[0].nstrings, 0);
	/* a prefix of a domain is not that domain */
	memset(&c, 0, sizeof(c));
	assert_int_equal(tlsrpt_foreach(f->t, f->today, "example.ne", collect_cb,
	    &c, err, sizeof(err)), 0);
	EQ("no prefix match", c.n, 0);
}

static void test_changed_policy(void **state)
{
	struct fix *f = *state;
	static const char *const v2[] = { "version: STSv1", "mode: testing",
	    "mx: mx1.example.net", "max_age: 600" };
	struct collect c = { 0 };
	struct pd_report r = rep(TLSRPT_STS, PD_R_SUCCESS, "example.net", NULL,
	    NULL, f->now);
	char err[ERRLEN];

	record_ok(f, &r, sts_pol, NELEM(sts_pol));
	record_ok(f, &r, v2, NELEM(v2));
	record_ok(f, &r, v2, NELEM(v2));
	assert_int_equal(tlsrpt_foreach(f->t, f->today, "example.net",
	    collect_cb, &c, err, sizeof(err)), 0);
	EQ("two policies for one domain", c.n, 2);
	EQ("counts split", c.a[0].success + c.a[1].success, 3);
}

static void test_bounds(void **state)
{
	struct fix *f = *state;
	struct collect c = { 0 };
	struct pd_report r;
	char ip[32], err[ERRLEN], big[TLSRPT_STRING_MAX + 10];
	const char *strs[3] = { "ok", big, "after" };

	/* more detail rows than kept: the rest in one row per result type */
	for (int i = 0; i < TLSRPT_MAX_DETAILS + 10; i++) {
		snprintf(ip, sizeof(ip), "198.51.100.%d", i + 1);
		r = rep(TLSRPT_TLSA, PD_R_TLSA_INVALID, "example.net",
		    "mx.example.net", ip, f->now);
		record_ok(f, &r, NULL, 0);
		r.result = PD_R_CERT_HOST_MISMATCH;
		record_ok(f, &r, NULL, 0);
	}
	assert_int_equal(tlsrpt_foreach(f->t, f->today, "example.net",
	    collect_cb, &c, err, sizeof(err)), 0);
	EQ("one policy", c.n, 1);
	EQ("failures all counted", c.a[0].failure, 2 * (TLSRPT_MAX_DETAILS + 10));
	EQ("rows: max + one overflow per result", c.a[0].ndetails,
	    TLSRPT_MAX_DETAILS + 2);
	{
		uint64_t sum = 0;

		for (size_t i = 0; i < c.a[0].ndetails; i++)
			sum += c.a[0].details[i].count;
		EQ("rows sum to failures", sum, c.a[0].failure);
	}
	/* an overlong string is left out, the others kept */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	r = rep(TLSRPT_STS, PD_R_SUCCESS, "example.org", NULL, NULL, f->now);
	record_ok(f, &r, strs, 3);
	memset(&c, 0, sizeof(c));
	assert_int_equal(tlsrpt_foreach(f->t, f->today, "example.org",
	    collect_cb, &c, err, sizeof(err)), 0);
	EQ("strings kept", c.a[0].nstrings, 2);
	STREQ("second kept", c.a[0].strings[1], "after");
	/* refused: bad domain, bad type, bad result, a day long purged */
	r = rep(TLSRPT_STS, PD_R_SUCCESS, "bad domain", NULL, NULL, f->now);
	EQ("bad domain", tlsrpt_record(f->t, &r, NULL, 0, err, sizeof(err)), -1);
	r = rep(9, PD_R_SUCCESS, "example.net", NULL, NULL, f->now);
	EQ("bad type", tlsrpt_record(f->t, &r, NULL, 0, err, sizeof(err)), -1);
	r = rep(TLSRPT_STS, PD_R_MAX_, "example.net", NULL, NULL, f->now);
	EQ("bad result", tlsrpt_record(f->t, &r, NULL, 0, err, sizeof(err)), -1);
	r = rep(TLSRPT_STS, PD_R_SUCCESS, "example.net", NULL, NULL,
	    f->now - 30 * 86400);
	EQ("old day", tlsrpt_record(f->t, &r, NULL, 0, err, sizeof(err)), -1);
}

static void test_purge_and_sent(void **state)
{
	struct fix *f = *state;
	struct collect c = { 0 };
	struct tlsrpt_sent s, g;
	struct pd_report r;
	char err[ERRLEN];

	r = rep(TLSRPT_STS, PD_R_SUCCESS, "example.net", NULL, NULL,
	    f->now - 6 * 86400);
	record_ok(f, &r, NULL, 0);
	EQ("no sent yet", tlsrpt_sent_get(f->t, f->today - 6, "example.net", &g,
	    err, sizeof(err)), 0);
	memset(&s, 0, sizeof(s));
	snprintf(s.report_id, sizeof(s.report_id), "id@example.org");
	s.attempts = 2;
	s.done_at = 1234;
	snprintf(s.done_uris, sizeof(s.done_uris), "https://a.example/x\nmailto:b@example.net");
	EQ("sent put", tlsrpt_sent_put(f->t, f->today - 6, "example.net", &s, err,
	    sizeof(err)), 0);
	EQ("sent get", tlsrpt_sent_get(f->t, f->today - 6, "Example.net", &g, err,
	    sizeof(err)), 1);
	STREQ("id", g.report_id, "id@example.org");
	EQ("attempts", g.attempts, 2);
	EQ("done_at", g.done_at, 1234);
	STREQ("uris", g.done_uris, s.done_uris);
	/* two days later that day is beyond the days kept */
	EQ("purge", tlsrpt_purge(f->t, f->today + 2, err, sizeof(err)), 0);
	assert_int_equal(tlsrpt_foreach(f->t, f->today - 6, NULL, collect_cb, &c,
	    err, sizeof(err)), 0);
	EQ("purged", c.n, 0);
	EQ("sent purged", tlsrpt_sent_get(f->t, f->today - 6, "example.net", &g,
	    err, sizeof(err)), 0);
}

static void test_readonly(void **state)
{
	struct fix *f = *state;
	struct tlsrpt_opts o = f->o;
	struct collect c = { 0 };
	struct pd_report r = rep(TLSRPT_TLSA, PD_R_SUCCESS, "example.net", NULL,
	    NULL, f->now);
	struct tlsrpt *ro;
	char err[ERRLEN], empty[64];
	bool missing;

	record_ok(f, &r, NULL, 0);
	ro = tlsrpt_open_ro(&o, &missing, err, sizeof(err));
	assert_non_null(ro);
	assert_int_equal(tlsrpt_foreach(ro, f->today, NULL, collect_cb, &c, err,
	    sizeof(err)), 0);
	EQ("read-only sees it", c.n, 1);
	EQ("read-only cannot record", tlsrpt_record(ro, &r, NULL, 0, err,
	    sizeof(err)), -1);
	tlsrpt_close(ro);
	snprintf(empty, sizeof(empty), "/tmp/test_tlsrpt_e.XXXXXX");
	assert_non_null(mkdtemp(empty));
	o.state_dir = empty;
	assert_null(tlsrpt_open_ro(&o, &missing, err, sizeof(err)));
	assert_true(missing);
	rmdir(empty);
	o.state_dir = "/nonexistent/dir";
	assert_null(tlsrpt_open(&o, err, sizeof(err)));
}


/* ---- the report JSON (RFC 8460 4.4) ---------------------------------------------- */

static json_t *must(json_t *o, const char *k, int type)
{
	json_t *v = json_object_get(o, k);

	if (v == NULL || (int)json_typeof(v) != type) {
		print_error("member %s: missing or type %d, want %d\n", k,
		    v != NULL ? (int)json_typeof(v) : -1, type);
		fail();
	}
	return v;
}

static void test_report_json(void **state)
{
	struct fix *f = *state;
	struct pd_report r;
	json_t *root, *pols, *p, *pol, *sum, *fd, *range, *mx;
	json_error_t jerr;
	char err[ERRLEN], d[11], want[40];
	size_t len;
	char *text;

	for (int i = 0; i < 4; i++) {
		r = rep(TLSRPT_STS, PD_R_SUCCESS, "example.net", "mx1.example.net",
		    "203.0.113.25", f->now - 86400);
		record_ok(f, &r, sts_pol, NELEM(sts_pol));
	}
	r = rep(TLSRPT_STS, PD_R_CERT_HOST_MISMATCH, "example.net",
	    "mx1.example.net", "2001:db8::25", f->now - 86400);
	record_ok(f, &r, sts_pol, NELEM(sts_pol));
	r = rep(TLSRPT_NO_POLICY, PD_R_STARTTLS_NOT_SUPPORTED, "example.net", NULL,
	    NULL, f->now - 86400);
	record_ok(f, &r, NULL, 0);

	text = tlsrpt_report_json(f->t, &f->o, f->today - 1, "example.net",
	    "id-1@gw.example.org", false, &len, err, sizeof(err));
	assert_non_null(text);
	EQ("len", len, strlen(text));
	assert_null(strchr(text, '\n'));   /* compact */
	root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	free(text);
	assert_non_null(root);
	STREQ("org", json_string_value(must(root, "organization-name", JSON_STRING)),
	    "Example Gateway Org");
	STREQ("contact", json_string_value(must(root, "contact-info", JSON_STRING)),
	    "postmaster@gw.example.org");
	STREQ("id", json_string_value(must(root, "report-id", JSON_STRING)),
	    "id-1@gw.example.org");
	range = must(root, "date-range", JSON_OBJECT);
	tlsrpt_day_str(f->today - 1, d);
	snprintf(want, sizeof(want), "%sT00:00:00Z", d);
	STREQ("start", json_string_value(must(range, "start-datetime", JSON_STRING)),
	    want);
	snprintf(want, sizeof(want), "%sT23:59:59Z", d);
	STREQ("end", json_string_value(must(range, "end-datetime", JSON_STRING)),
	    want);
	pols = must(root, "policies", JSON_ARRAY);
	EQ("two policies (sts, no-policy-found)", json_array_size(pols), 2);

	p = json_array_get(pols, 0);
	pol = must(p, "policy", JSON_OBJECT);
	STREQ("type", json_string_value(must(pol, "policy-type", JSON_STRING)), "sts");
	STREQ("domain", json_string_value(must(pol, "policy-domain", JSON_STRING)),
	    "example.net");
	EQ("strings", json_array_size(must(pol, "policy-string", JSON_ARRAY)),
	    NELEM(sts_pol));
	mx = must(pol, "mx-host", JSON_ARRAY);
	EQ("mx-host: the mx lines", json_array_size(mx), 2);
	STREQ("mx-host 1", json_string_value(json_array_get(mx, 1)),
	    "*.mail.example.net");
	sum = must(p, "summary", JSON_OBJECT);
	EQ("successes", json_integer_value(must(sum,
	    "total-successful-session-count", JSON_INTEGER)), 4);
	EQ("failures", json_integer_value(must(sum,
	    "total-failure-session-count", JSON_INTEGER)), 1);
	fd = must(p, "failure-details", JSON_ARRAY);
	EQ("one detail", json_array_size(fd), 1);
	STREQ("result-type", json_string_value(must(json_array_get(fd, 0),
	    "result-type", JSON_STRING)), "certificate-host-mismatch");
	STREQ("receiving-ip", json_string_value(must(json_array_get(fd, 0),
	    "receiving-ip", JSON_STRING)), "2001:db8::25");
	STREQ("mx", json_string_value(must(json_array_get(fd, 0),
	    "receiving-mx-hostname", JSON_STRING)), "mx1.example.net");
	EQ("count", json_integer_value(must(json_array_get(fd, 0),
	    "failed-session-count", JSON_INTEGER)), 1);

	p = json_array_get(pols, 1);
	pol = must(p, "policy", JSON_OBJECT);
	STREQ("no policy", json_string_value(must(pol, "policy-type", JSON_STRING)),
	    "no-policy-found");
	assert_null(json_object_get(pol, "policy-string"));
	assert_null(json_object_get(pol, "mx-host"));
	fd = must(p, "failure-details", JSON_ARRAY);
	assert_null(json_object_get(json_array_get(fd, 0), "receiving-ip"));
	assert_null(json_object_get(json_array_get(fd, 0), "receiving-mx-hostname"));
	json_decref(root);

	/* defaults: organization-name the submitter, contact-info the From */
	{
		struct tlsrpt_opts o2 = { .state_dir = f->dir,
		    .from = "r@gw2.example.org" };

		text = tlsrpt_report_json(f->t, &o2, f->today - 1, "example.net",
		    "id-3", false, &len, err, sizeof(err));
		assert_non_null(text);
		root = json_loads(text, 0, &jerr);
		free(text);
		assert_non_null(root);
		STREQ("default org", json_string_value(json_object_get(root,
		    "organization-name")), "gw2.example.org");
		STREQ("default contact", json_string_value(json_object_get(root,
		    "contact-info")), "r@gw2.example.org");
		json_decref(root);
	}
	/* nothing recorded: NULL with an empty err */
	text = tlsrpt_report_json(f->t, &f->o, f->today - 1, "example.org",
	    "id-2", false, &len, err, sizeof(err));
	assert_null(text);
	STREQ("nothing: empty err", err, "");
}

static void test_gzip(void **state)
{
	static const char in[] = "{\"organization-name\":\"x\",\"policies\":[]}";
	uint8_t *gz, back[256];
	size_t gzlen;
	z_stream z;

	(void)state;
	assert_int_equal(tlsrpt_gzip(in, strlen(in), &gz, &gzlen), 0);
	assert_true(gzlen > 18);
	EQ("gzip magic 1", gz[0], 0x1f);
	EQ("gzip magic 2", gz[1], 0x8b);
	memset(&z, 0, sizeof(z));
	assert_int_equal(inflateInit2(&z, 16 + 15), Z_OK);
	z.next_in = gz;
	z.avail_in = (uInt)gzlen;
	z.next_out = back;
	z.avail_out = sizeof(back);
	assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
	EQ("round trip length", z.total_out, strlen(in));
	assert_memory_equal(back, in, strlen(in));
	inflateEnd(&z);
	free(gz);
}

static void test_report_id(void **state)
{
	struct tlsrpt_opts o = { .from = "tlsrpt@gw.example.org" };
	char sub[256], a[TLSRPT_ID_MAX], b[TLSRPT_ID_MAX];

	(void)state;
	tlsrpt_submitter(&o, sub, sizeof(sub));
	STREQ("submitter from From", sub, "gw.example.org");
	o.from = NULL;
	o.contact = "mailto:ops@example.com";
	tlsrpt_submitter(&o, sub, sizeof(sub));
	STREQ("submitter from contact", sub, "example.com");
	tlsrpt_report_id(16892, "example.net", "gw.example.org", a, sizeof(a));
	tlsrpt_report_id(16892, "example.net", "gw.example.org", b, sizeof(b));
	assert_int_equal(strncmp(a, "2016-04-01.example.net.", 23), 0);
	assert_non_null(strstr(a, "@gw.example.org"));
	EQ("id length", strlen(a), 23 + 16 + 15);
	assert_string_not_equal(a, b);
}

/* ---- _smtp._tls TXT (RFC 8460 3) ----------------------------------------------------- */

struct txt_case {
	const char *txt;
	int rc;
	size_t n;
	const char *first;   /* the first kept URI's address or host */
};

static void test_txt(void **state)
{
	static const struct txt_case cases[] = {
		{ "v=TLSRPTv1; rua=mailto:reports@example.com", 0, 1, "reports@example.com" },
		{ "v=TLSRPTv1;rua=https://reporting.example.com/v1/tlsrpt", 0, 1, "reporting.example.com" },
		{ "v=TLSRPTv1; rua=mailto:a@example.com,https://r.example.com:8443/x?y=1;", 0, 2, "a@example.com" },
		{ "v=TLSRPTv1 ; rua=mailto:a@example.com , mailto:b@example.com", 0, 2, "a@example.com" },
		{ "v=TLSRPTv1; rua=mailto:a%40b@example.com", -1, 0, NULL },
		{ "v=TLSRPTv1; rua=mailto:tls%2Drpt@example.com", 0, 1, "tls-rpt@example.com" },
		{ "v=TLSRPTv1; rua=mailto:a@example.com?subject=x", 0, 1, "a@example.com" },
		{ "v=TLSRPTv1; ext_1=value; rua=mailto:a@example.com", 0, 1, "a@example.com" },
		{ "v=TLSRPTv1; rua=ftp://x.example.com/, mailto:a@example.com", 0, 1, "a@example.com" },
		{ "v=TLSRPTv1; rua=ftp://x.example.com/", -1, 0, NULL },
		{ "v=TLSRPTv1", -1, 0, NULL },
		{ "v=TLSRPTv1;", -1, 0, NULL },
		{ "v=TLSRPTv2; rua=mailto:a@example.com", -1, 0, NULL },
		{ "v=tlsrptv1; rua=mailto:a@example.com", -1, 0, NULL },
		{ "v=TLSRPTv1; RUA=mailto:a@example.com", -1, 0, NULL },
		{ "v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:b@example.com", -1, 0, NULL },
		{ "v=TLSRPTv1;; rua=mailto:a@example.com", -1, 0, NULL },
		{ "v=TLSRPTv1; rua=mailto:a@example.com,", -1, 0, NULL },
		{ "v=TLSRPTv1; rua=mailto:a b@example.com", -1, 0, NULL },
		{ "v=TLSRPTv1; rua=mailto:@example.com", -1, 0, NULL },
		{ "v=TLSRPTv1; rua=mailto:a@localhost", -1, 0, NULL },
		{ "v=TLSRPTv1; rua=https://user@r.example.com/", -1, 0, NULL },
		{ "v=TLSRPTv1; rua=https://r.example.com:0/", -1, 0, NULL },
		{ "v=TLSRPTv1; rua=https://r.example.com:65536/", -1, 0, NULL },
		{ "v=TLSRPTv1; rua=https://-r.example.com/", -1, 0, NULL },
		{ "v=TLSRPTv1; rua=https://r.example.com", 0, 1, "r.example.com" },
		{ "v=TLSRPTv1; rua=mailto:a@example.com; bad field", -1, 0, NULL },
		{ "v=TLSRPTv1; rua=mailto:a@example.com; x==y", -1, 0, NULL },
		{ "v=TLSRPTv1; rua=mailto:a@example.com\r\n", -1, 0, NULL },
	};
	struct tlsrpt_rua rua;
	char err[ERRLEN];

	(void)state;
	for (size_t i = 0; i < NELEM(cases); i++) {
		const struct txt_case *c = &cases[i];
		int rc = tlsrpt_txt_parse_text(c->txt, strlen(c->txt), &rua, err,
		    sizeof(err));

		if (rc != c->rc) {
			print_error("case %zu \"%s\": rc %d, want %d (%s)\n", i,
			    c->txt, rc, c->rc, rc < 0 ? err : "");
			fail();
		}
		if (rc != 0)
			continue;
		EQ(c->txt, rua.n, c->n);
		STREQ(c->txt, rua.uri[0].kind == TLSRPT_URI_MAILTO ?
		    rua.uri[0].addr : rua.uri[0].host, c->first);
	}
	/* https parts */
	assert_int_equal(tlsrpt_txt_parse_text(S("v=TLSRPTv1; rua=https://"
	    "R.Example.com:8443/v1/tlsrpt?k=1#frag"), &rua, err, sizeof(err)), 0);
	EQ("port", rua.uri[0].port, 8443);
	STREQ("host lower", rua.uri[0].host, "r.example.com");
	STREQ("path", rua.uri[0].path, "/v1/tlsrpt?k=1");
	STREQ("uri as published", rua.uri[0].uri,
	    "https://R.Example.com:8443/v1/tlsrpt?k=1#frag");
	assert_int_equal(tlsrpt_txt_parse_text(S("v=TLSRPTv1; rua=https://"
	    "r.example.com"), &rua, err, sizeof(err)), 0);
	EQ("default port", rua.uri[0].port, 443);
	STREQ("default path", rua.uri[0].path, "/");
}

static void test_txt_rrset(void **state)
{
	/* wire form: character-strings; one record split in two strings */
	static const uint8_t r1[] = "\x0bv=TLSRPTv1;" "\x18rua=mailto:a@example.com";
	static const uint8_t r2[] = "\x0dv=spf1 -all x";
	static const uint8_t r3[] = "\x1ev=TLSRPTv1;rua=mailto:b@ex.com";
	static const uint8_t bad[] = "\x30v=TLSRPTv1";   /* length past the end */
	const uint8_t *rd[3];
	size_t rl[3];
	struct tlsrpt_rua rua;
	char err[ERRLEN];

	(void)state;
	rd[0] = r1; rl[0] = sizeof(r1) - 1;
	rd[1] = r2; rl[1] = sizeof(r2) - 1;
	EQ("split strings joined, other TXT ignored",
	    tlsrpt_txt_parse(rd, rl, 2, &rua, err, sizeof(err)), 0);
	STREQ("addr", rua.uri[0].addr, "a@example.com");
	rd[2] = r3; rl[2] = sizeof(r3) - 1;
	EQ("two TLSRPT records: none", tlsrpt_txt_parse(rd, rl, 3, &rua, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "2 TLSRPTv1 records"));
	EQ("none at all", tlsrpt_txt_parse(rd + 1, rl + 1, 1, &rua, err,
	    sizeof(err)), -1);
	rd[0] = bad; rl[0] = sizeof(bad) - 1;
	EQ("truncated string: not a record", tlsrpt_txt_parse(rd, rl, 1, &rua,
	    err, sizeof(err)), -1);
	EQ("empty RRset", tlsrpt_txt_parse(rd, rl, 0, &rua, err, sizeof(err)), -1);
}

/* ---- the message (RFC 8460 5.3) ----------------------------------------------------- */

static void test_mail(void **state)
{
	struct tlsrpt_opts o = { .from = "tlsrpt@gw.example.org",
	    .org_name = "Org" };
	const char *rcpts[] = { "a@example.net", "b@example.net" };
	uint8_t gz[100];
	size_t len;
	char *m;

	(void)state;
	for (size_t i = 0; i < sizeof(gz); i++)
		gz[i] = (uint8_t)(i * 7);
	m = tlsrpt_mail_build(&o, 16892, "example.net", "id.1@gw.example.org",
	    rcpts, 2, gz, sizeof(gz), 1459555200, &len);
	assert_non_null(m);
	EQ("len", len, strlen(m));
	assert_non_null(strstr(m, "\r\nSubject: Report Domain: example.net "
	    "Submitter: gw.example.org Report-ID: <id.1@gw.example.org>\r\n"));
	assert_non_null(strstr(m, "\r\nTLS-Report-Domain: example.net\r\n"));
	assert_non_null(strstr(m, "\r\nTLS-Report-Submitter: gw.example.org\r\n"));
	assert_non_null(strstr(m, "Content-Type: multipart/report; "
	    "report-type=\"tlsrpt\";"));
	assert_non_null(strstr(m, "Content-Type: application/tlsrpt+gzip;"));
	assert_non_null(strstr(m, "filename=\"gw.example.org!example.net!"
	    "1459468800!1459555199.json.gz\""));
	assert_non_null(strstr(m, "Date: Sat, 02 Apr 2016 00:00:00 +0000\r\n"));
	assert_non_null(strstr(m, "To: <a@example.net>,\r\n <b@example.net>\r\n"));
	/* base64 of the first bytes 00 07 0e 15 1c 23 ... */
	assert_non_null(strstr(m, "\r\n\r\nAAcOFRwj"));
	/* no bare LF anywhere, no line over 998 */
	for (size_t i = 0, col = 0; i < len; i++, col++) {
		if (m[i] == '\n') {
			assert_true(i > 0 && m[i - 1] == '\r');
			col = 0;
		}
		assert_true(col < 998);
	}
	free(m);
}

static void test_day_full(void **state)
{
	struct fix *f = *state;
	struct collect c = { 0 };
	struct pd_report r;
	char err[ERRLEN], dom[64];

	for (int i = 0; i < TLSRPT_MAX_POLICIES; i++) {
		snprintf(dom, sizeof(dom), "d%d.example.net", i);
		r = rep(TLSRPT_STS, PD_R_SUCCESS, dom, NULL, NULL, f->now);
		record_ok(f, &r, NULL, 0);
	}
	EQ("none dropped yet", tlsrpt_dropped(f->t, f->today), 0);
	r = rep(TLSRPT_STS, PD_R_SUCCESS, "new.example.net", NULL, NULL, f->now);
	err[0] = '\0';
	EQ("first drop: an error to log", tlsrpt_record(f->t, &r, NULL, 0, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "dropped"));
	EQ("later drops: quiet", tlsrpt_record(f->t, &r, NULL, 0, err,
	    sizeof(err)), 0);
	EQ("dropped counted", tlsrpt_dropped(f->t, f->today), 2);
	/* a policy already there still counts */
	r = rep(TLSRPT_STS, PD_R_CERT_EXPIRED, "d7.example.net", NULL, NULL, f->now);
	record_ok(f, &r, NULL, 0);
	assert_int_equal(tlsrpt_foreach(f->t, f->today, "d7.example.net",
	    collect_cb, &c, err, sizeof(err)), 0);
	EQ("existing policy counted", c.a[0].failure, 1);
	memset(&c, 0, sizeof(c));
	assert_int_equal(tlsrpt_foreach(f->t, f->today, "new.example.net",
	    collect_cb, &c, err, sizeof(err)), 0);
	EQ("dropped one not stored", c.n, 0);
	/* the next day has room again */
	r = rep(TLSRPT_STS, PD_R_SUCCESS, "new.example.net", NULL, NULL,
	    f->now - 86400);
	record_ok(f, &r, NULL, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_days),
		cmocka_unit_test_setup_teardown(test_aggregate, fix_setup, fix_teardown),
		cmocka_unit_test_setup_teardown(test_changed_policy, fix_setup, fix_teardown),
		cmocka_unit_test_setup_teardown(test_bounds, fix_setup, fix_teardown),
		cmocka_unit_test_setup_teardown(test_purge_and_sent, fix_setup, fix_teardown),
		cmocka_unit_test_setup_teardown(test_readonly, fix_setup, fix_teardown),
		cmocka_unit_test_setup_teardown(test_report_json, fix_setup, fix_teardown),
		cmocka_unit_test_setup_teardown(test_day_full, fix_setup, fix_teardown),
		cmocka_unit_test(test_gzip),
		cmocka_unit_test(test_report_id),
		cmocka_unit_test(test_txt),
		cmocka_unit_test(test_txt_rrset),
		cmocka_unit_test(test_mail),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
