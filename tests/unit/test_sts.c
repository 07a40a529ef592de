/*
 * Unit tests for proxy/sts.c: the _mta-sts TXT RRset (RFC 8461 3.1: exactly
 * one v=STSv1 record, id 1-32 alphanumerics, split strings), the policy file
 * (3.2: the RFC's example, LF and CRLF, each required field, max_age bounds,
 * the 64 KiB cap, exact error lines) and mx patterns (4.1: a wildcard covers
 * one leftmost label). Cases from /work/shared/dane.md 4 (22)-(27).
 */

#include "unit.h"

#include "starttlsd/sts.h"

/* ---- TXT ------------------------------------------------------------------ */

static void
test_txt_text(void **state)
{
	static const struct {
		const char *in;
		enum sts_txt_result want;
		const char *id;
	} t[] = {
		{ "v=STSv1; id=20160831085700Z;", STS_TXT_OK, "20160831085700Z" },
		{ "v=STSv1; id=20160831085700Z", STS_TXT_OK, "20160831085700Z" },
		{ "v=STSv1;id=abc", STS_TXT_OK, "abc" },
		{ "v=STSv1 ;\tid=abc ; ", STS_TXT_OK, "abc" },
		{ "v=STSv1; id=abc; ext_1.x-y=val!ue", STS_TXT_OK, "abc" },
		{ "v=STSv1; ext=1; id=Z9", STS_TXT_OK, "Z9" },
		{ "v=STSv1; id=12345678901234567890123456789012", STS_TXT_OK,
		  "12345678901234567890123456789012" },
		{ "v=STSv1; id=123456789012345678901234567890123", STS_TXT_INVALID, "" },
		{ "v=STSv1", STS_TXT_INVALID, "" },
		{ "v=STSv1;", STS_TXT_INVALID, "" },
		{ "v=STSv1; ext=1", STS_TXT_INVALID, "" },         /* no id */
		{ "v=STSv1; id=", STS_TXT_INVALID, "" },
		{ "v=STSv1; id=a-b", STS_TXT_INVALID, "" },
		{ "v=STSv1; id=a; id=b", STS_TXT_INVALID, "" },
		{ "v=STSv1; id=a b", STS_TXT_INVALID, "" },
		{ "v=STSv1 id=a", STS_TXT_INVALID, "" },
		{ "v=STSv1; id=a; =x", STS_TXT_INVALID, "" },
		{ "v=STSv1; id=a; x=", STS_TXT_INVALID, "" },
		{ "v=STSv1; id=a; x", STS_TXT_INVALID, "" },
		{ "v=stsv1; id=a", STS_TXT_NONE, "" },             /* case sensitive */
		{ "v=STSv10; id=a", STS_TXT_NONE, "" },
		{ " v=STSv1; id=a", STS_TXT_NONE, "" },
		{ "v=spf1 -all", STS_TXT_NONE, "" },
		{ "", STS_TXT_NONE, "" },
	};

	for (size_t i = 0; i < NELEM(t); i++) {
		struct sts_txt txt;

		EQ(t[i].in, sts_txt_parse_text(t[i].in, strlen(t[i].in), &txt),
		    t[i].want);
		STREQ(t[i].in, txt.id, t[i].id);
	}
}

/* Wire rdata: each string with its length byte. */
static size_t
wire(uint8_t *out, const char *const *strings)
{
	size_t o = 0;

	for (; *strings != NULL; strings++) {
		size_t l = strlen(*strings);
		out[o++] = (uint8_t)l;
		memcpy(out + o, *strings, l);
		o += l;
	}
	return o;
}

static void
test_txt_rrset(void **state)
{
	static const struct {
		const char *name;
		const char *rec[3][4];
		size_t n;
		enum sts_txt_result want;
		const char *id;
	} t[] = {
		{ "one", { { "v=STSv1; id=abc;", NULL } }, 1, STS_TXT_OK, "abc" },
		{ "split strings", { { "v=ST", "Sv1; id=", "abc", NULL } }, 1,
		  STS_TXT_OK, "abc" },
		{ "others discarded", { { "v=spf1 -all", NULL },
		  { "v=STSv1; id=x1", NULL }, { "google-site-verification=q", NULL } },
		  3, STS_TXT_OK, "x1" },
		{ "two STSv1", { { "v=STSv1; id=a", NULL }, { "v=STSv1; id=b", NULL } },
		  2, STS_TXT_MULTIPLE, "" },
		{ "two, one invalid", { { "v=STSv1; id=a", NULL },
		  { "v=STSv1", NULL } }, 2, STS_TXT_MULTIPLE, "" },
		{ "none", { { "v=spf1 -all", NULL } }, 1, STS_TXT_NONE, "" },
		{ "empty rrset", { { NULL } }, 0, STS_TXT_NONE, "" },
		{ "invalid one", { { "v=STSv1; id=a_b", NULL } }, 1,
		  STS_TXT_INVALID, "" },
	};

	for (size_t i = 0; i < NELEM(t); i++) {
		uint8_t rd[3][300];
		const uint8_t *p[3];
		size_t len[3];
		struct sts_txt txt;

		for (size_t j = 0; j < t[i].n; j++) {
			len[j] = wire(rd[j], t[i].rec[j]);
			p[j] = rd[j];
		}
		EQ(t[i].name, sts_txt_parse(p, len, t[i].n, &txt), t[i].want);
		STREQ(t[i].name, txt.id, t[i].id);
	}

	/* A length byte running past the rdata: no crash, not a policy. */
	{
		static const uint8_t bad[] = { 40, 'v', '=', 'S', 'T', 'S', 'v', '1' };
		const uint8_t *p[] = { bad };
		size_t len[] = { sizeof(bad) };
		struct sts_txt txt;

		EQ("overrun", sts_txt_parse(p, len, 1, &txt), STS_TXT_NONE);
	}
}

/* ---- policy ------------------------------------------------------------------ */

static const char rfc_example[] =
    "version: STSv1\n"
    "mode: enforce\n"
    "mx: mail.example.com\n"
    "mx: *.example.net\n"
    "mx: backupmx.example.com\n"
    "max_age: 604800\n";

static void
test_policy_good(void **state)
{
	static const struct {
		const char *name;
		const char *text;
		enum sts_mode mode;
		uint32_t age;
		size_t nmx;
		const char *mx0;
	} t[] = {
		{ "rfc", rfc_example, STS_MODE_ENFORCE, 604800, 3, "mail.example.com" },
		{ "crlf", "version: STSv1\r\nmode: testing\r\nmx: MX.Example.COM\r\n"
		  "max_age: 86400\r\n", STS_MODE_TESTING, 86400, 1, "mx.example.com" },
		{ "no final newline", "version: STSv1\nmode: enforce\nmx: a.b\n"
		  "max_age: 1", STS_MODE_ENFORCE, 1, 1, "a.b" },
		{ "mixed endings, blanks", "version: STSv1\r\n\nmode:enforce  \n"
		  "mx:\t*.example.net\r\nmax_age: 0\n\n", STS_MODE_ENFORCE, 0, 1,
		  "*.example.net" },
		{ "none without mx", "version: STSv1\nmode: none\nmax_age: 31557600\n",
		  STS_MODE_NONE, 31557600, 0, NULL },
		{ "extensions ignored", "version: STSv1\nmode: enforce\nmx: a.example\n"
		  "max_age: 5\nfoo_bar: anything at all: yes\nx: \n",
		  STS_MODE_ENFORCE, 5, 1, "a.example" },
		{ "repeated mx", "version: STSv1\nmode: enforce\nmx: a.example\n"
		  "mx: A.example\nmax_age: 5\n", STS_MODE_ENFORCE, 5, 1, "a.example" },
		{ "leading zeros", "version: STSv1\nmode: enforce\nmx: a.example\n"
		  "max_age: 0000000042\n", STS_MODE_ENFORCE, 42, 1, "a.example" },
	};

	for (size_t i = 0; i < NELEM(t); i++) {
		struct sts_policy p;
		char err[200];

		if (sts_policy_parse(t[i].text, strlen(t[i].text), &p, err,
		    sizeof(err)) != 0) {
			print_error("%s: %s\n", t[i].name, err);
			fail();
		}
		EQ(t[i].name, p.mode, t[i].mode);
		EQ(t[i].name, p.max_age, t[i].age);
		EQ(t[i].name, p.nmx, t[i].nmx);
		if (t[i].mx0 != NULL)
			STREQ(t[i].name, p.mx[0], t[i].mx0);
	}
}

static void
test_policy_bad(void **state)
{
	static const struct {
		const char *text;
		const char *err;
	} t[] = {
		{ "mode: enforce\nmx: a.b\nmax_age: 1\n", "no version" },
		{ "version: STSv1\nmx: a.b\nmax_age: 1\n", "no mode" },
		{ "version: STSv1\nmode: enforce\nmx: a.b\n", "no max_age" },
		{ "version: STSv1\nmode: enforce\nmax_age: 1\n", "no mx (mode enforce)" },
		{ "version: STSv1\nmode: testing\nmax_age: 1\n", "no mx (mode testing)" },
		{ "version: STSv2\n", "line 1: version is not STSv1" },
		{ "version: stsv1\n", "line 1: version is not STSv1" },
		{ "Version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 1\n", "no version" },
		{ "version: STSv1\nmode: Enforce\n", "line 2: mode is not enforce, testing or none" },
		{ "version: STSv1\nmode: enforce\nmode: none\n", "line 3: mode given twice" },
		{ "version: STSv1\nversion: STSv1\n", "line 2: version given twice" },
		{ "version: STSv1\nmax_age: 31557601\n", "line 2: max_age above 31557600" },
		{ "version: STSv1\nmax_age: -1\n", "line 2: bad max_age" },
		{ "version: STSv1\nmax_age: 12345678901\n", "line 2: bad max_age" },
		{ "version: STSv1\nmax_age: 9999999999\n", "line 2: max_age above 31557600" },
		{ "version: STSv1\nmax_age:\n", "line 2: bad max_age" },
		{ "version: STSv1\nmax_age: 1\nmax_age: 1\n", "line 3: max_age given twice" },
		{ "version STSv1\n", "line 1: no ':'" },
		{ "version : STSv1\n", "line 1: bad field name" },
		{ "  version: STSv1\n", "line 1: bad field name" },
		{ "version: STSv1\rmode: enforce\n", "line 1: CR inside a line" },
		{ "version: STSv1\nmx: *.*.example.net\n", "line 2: bad mx pattern" },
		{ "version: STSv1\nmx: a*.example.net\n", "line 2: bad mx pattern" },
		{ "version: STSv1\nmx: *\n", "line 2: bad mx pattern" },
		{ "version: STSv1\nmx: *.\n", "line 2: bad mx pattern" },
		{ "version: STSv1\nmx: a..b\n", "line 2: bad mx pattern" },
		{ "version: STSv1\nmx: a.b.\n", "line 2: bad mx pattern" },
		{ "version: STSv1\nmx: -a.b\n", "line 2: bad mx pattern" },
		{ "version: STSv1\nmx: a-.b\n", "line 2: bad mx pattern" },
		{ "version: STSv1\nmx: a b\n", "line 2: bad mx pattern" },
		{ "version: STSv1\nmx: a_b.example\n", "line 2: bad mx pattern" },
		{ "version: STSv1\nfoo: a\x01z\n", "line 2: control character" },
		{ "", "no version" },
	};

	for (size_t i = 0; i < NELEM(t); i++) {
		struct sts_policy p;
		char err[200] = "";

		EQ(t[i].text, sts_policy_parse(t[i].text, strlen(t[i].text), &p,
		    err, sizeof(err)), -1);
		STREQ(t[i].text, err, t[i].err);
	}
}

static void
test_policy_limits(void **state)
{
	static char big[STS_POLICY_MAX + 2];
	struct sts_policy p;
	char err[200];
	size_t o;

	/* Exactly 64 KiB is fine; one byte more is refused. */
	o = (size_t)snprintf(big, sizeof(big),
	    "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 9\n");
	memset(big + o, '\n', STS_POLICY_MAX - o);
	EQ("64k", sts_policy_parse(big, STS_POLICY_MAX, &p, err, sizeof(err)), 0);
	big[STS_POLICY_MAX] = '\n';
	EQ("64k+1", sts_policy_parse(big, STS_POLICY_MAX + 1, &p, err,
	    sizeof(err)), -1);
	STREQ("64k+1", err, "policy larger than 65536 bytes");

	/* A NUL byte anywhere. */
	EQ("nul", sts_policy_parse("version: STSv1\n\0", 16, &p, err,
	    sizeof(err)), -1);
	STREQ("nul", err, "NUL byte in policy");

	/* More patterns than we keep. */
	o = (size_t)snprintf(big, sizeof(big), "version: STSv1\nmode: enforce\n"
	    "max_age: 9\n");
	for (int i = 0; i <= STS_MAX_MX; i++)
		o += (size_t)snprintf(big + o, sizeof(big) - o, "mx: m%d.example\n", i);
	EQ("many mx", sts_policy_parse(big, o, &p, err, sizeof(err)), -1);
	STREQ("many mx", err, "line 36: more than 32 mx patterns");

	/* A pattern of 253 characters fits, 254 do not. */
	{
		char name[300];
		memset(name, 'a', sizeof(name));
		for (int k = 63; k < 260; k += 64)
			name[k] = '.';
		name[253] = '\0';
		o = (size_t)snprintf(big, sizeof(big), "version: STSv1\nmode: "
		    "enforce\nmax_age: 9\nmx: %s\n", name);
		EQ("253", sts_policy_parse(big, o, &p, err, sizeof(err)), 0);
		name[253] = 'a';
		name[254] = '\0';
		o = (size_t)snprintf(big, sizeof(big), "version: STSv1\nmode: "
		    "enforce\nmax_age: 9\nmx: %s\n", name);
		EQ("254", sts_policy_parse(big, o, &p, err, sizeof(err)), -1);
	}
}

/* ---- patterns ------------------------------------------------------------- */

static void
test_patterns(void **state)
{
	static const struct {
		const char *pattern, *host;
		bool want;
	} t[] = {
		{ "mail.example.com", "mail.example.com", true },
		{ "mail.example.com", "MAIL.Example.Com.", true },
		{ "mail.example.com", "mail.example.co", false },
		{ "mail.example.com", "xmail.example.com", false },
		{ "*.example.net", "a.example.net", true },
		{ "*.example.net", "A.EXAMPLE.NET.", true },
		{ "*.example.net", "a.b.example.net", false },   /* (23) */
		{ "*.example.net", "example.net", false },
		{ "*.example.net", ".example.net", false },
		{ "*.example.net", "*.example.net", false },
		{ "*.example.net", "aexample.net", false },
		{ "*.example.net", "a.example.net.evil", false },
		{ "*.", "a.", false },
		{ "*", "a", false },
		{ "mail.example.com", "", false },
	};

	for (size_t i = 0; i < NELEM(t); i++) {
		char name[300];
		snprintf(name, sizeof(name), "%s ~ %s", t[i].pattern, t[i].host);
		EQ(name, sts_pattern_match(t[i].pattern, t[i].host), t[i].want);
	}

	struct sts_policy p;
	char err[100];
	assert_int_equal(sts_policy_parse(rfc_example, sizeof(rfc_example) - 1,
	    &p, err, sizeof(err)), 0);
	EQ("policy", sts_policy_mx_match(&p, "backupmx.example.com"), true);
	EQ("policy", sts_policy_mx_match(&p, "mx1.example.net"), true);
	EQ("policy", sts_policy_mx_match(&p, "mx1.example.com"), false);
	EQ("policy", sts_policy_mx_match(&p, "a.mx1.example.net"), false);
}

static void
test_strings(void **state)
{
	STREQ("mode", sts_mode_str(STS_MODE_ENFORCE), "enforce");
	STREQ("mode", sts_mode_str(STS_MODE_TESTING), "testing");
	STREQ("mode", sts_mode_str(STS_MODE_NONE), "none");
	for (int r = STS_TXT_OK; r <= STS_TXT_INVALID; r++)
		assert_string_not_equal(sts_txt_result_str((enum sts_txt_result)r),
		    "unknown");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_txt_text),
		cmocka_unit_test(test_txt_rrset),
		cmocka_unit_test(test_policy_good),
		cmocka_unit_test(test_policy_bad),
		cmocka_unit_test(test_policy_limits),
		cmocka_unit_test(test_patterns),
		cmocka_unit_test(test_strings),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
