/*
 * Unit tests for proxy/policy.c: the policy-file parser (good files and the
 * exact error text of bad lines), rule lookup (longest prefix, exact domain
 * before the longest suffix), and the decisions: TLS unavailable (a
 * hand-written table, and the whole space generated from the rules of
 * include/starttlsd/policy.h), after a handshake, per recipient, MX name
 * matching, signal names. Every parse is followed by policy_free, so the
 * suite is clean under LSan.
 *
 * Tests named test_bug_* show bugs in the code under test: they assert the
 * intended behaviour and fail until the bug is fixed. See the BUG comments.
 */

#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include "starttlsd/policy.h"

/* A literal and its length, so rows can hold NUL bytes. */
#define ERRLEN 512

#define TLS12 0x0303
#define TLS13 0x0304

/* ---- helpers ------------------------------------------------------------- */

/*
 * A rule's MATCH in canonical form: "example.net", ".example.net",
 * "198.51.100.0/24", "2001:db8::/32"; "-" for no rule.
 */
static const char *rule_str(const struct policy_rule *r, char *buf, size_t cap)
{
	char a[INET6_ADDRSTRLEN];

	if (r == NULL)
		return "-";
	switch (r->match) {
	case POLICY_MATCH_DOMAIN:
		snprintf(buf, cap, "%s", r->domain);
		break;
	case POLICY_MATCH_SUFFIX:
		snprintf(buf, cap, ".%s", r->domain);
		break;
	case POLICY_MATCH_PREFIX:
		if (inet_ntop(r->family, r->addr, a, sizeof(a)) == NULL)
			snprintf(a, sizeof(a), "?family%d", r->family);
		snprintf(buf, cap, "%s/%u", a, r->plen);
		break;
	default:
		snprintf(buf, cap, "?match%d", (int)r->match);
	}
	return buf;
}

/* The mx patterns joined with ",". */
static const char *mx_str(const struct policy_rule *r, char *buf, size_t cap)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < r->nmx && o < cap; i++)
		o += (size_t)snprintf(buf + o, cap - o, "%s%s", i ? "," : "",
		    r->mx[i]);
	return buf;
}

/* Parse text that must be good. */
static void parse_ok(const char *name, const char *text, size_t len,
    struct policy *p)
{
	char err[ERRLEN] = "";

	if (policy_parse(text, len, p, err, sizeof(err)) != 0) {
		print_error("%s: policy_parse failed: %s\n", name, err);
		fail();
	}
}

/* A single rule "example.net SPEC" from the parser, copied into out. */
static void rule_from(const char *spec, struct policy_rule *out)
{
	char text[256];
	struct policy p;

	snprintf(text, sizeof(text), "example.net %s\n", spec);
	parse_ok(spec, text, strlen(text), &p);
	assert_int_equal(p.n, 1);
	*out = p.rules[0];
	policy_free(&p);
}

static char *tmp_path;  /* removed by teardown if a test failed */

static char *tmp_write(const char *content, size_t len)
{
	char *path = strdup("/tmp/test_policy.XXXXXX");
	int fd;

	assert_non_null(path);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, len), (ssize_t)len);
	close(fd);
	tmp_path = path;
	return path;
}

static void tmp_remove(char *path)
{
	unlink(path);
	free(path);
	tmp_path = NULL;
}

/* ---- policy_parse: good files -------------------------------------------- */

#define NOMODE (-1)

struct want_rule {
	const char *match;          /* canonical, see rule_str */
	enum policy_level level;
	int mode;                   /* NOMODE or enum policy_mode */
	const char *mx;             /* joined with ",", "" for none */
	unsigned line;
};

struct good_case {
	const char *name;
	const char *text;
	size_t len;
	size_t n;
	struct want_rule rules[8];
};

#define NONE POLICY_LEVEL_NONE
#define ENCRYPT POLICY_LEVEL_ENCRYPT
#define VERIFY POLICY_LEVEL_VERIFY
#define MON POLICY_MONITOR
#define ENF POLICY_ENFORCE

static const struct good_case good_cases[] = {
	{ "empty file", S(""), 0, { { NULL, 0, 0, NULL, 0 } } },
	{ "blank lines only", S("\n\n  \n\t\n\r\n"), 0,
	  { { NULL, 0, 0, NULL, 0 } } },
	{ "comments only", S("# a comment\n   # indented\n#\n"), 0,
	  { { NULL, 0, 0, NULL, 0 } } },
	{ "one domain", S("example.net encrypt\n"), 1,
	  { { "example.net", ENCRYPT, NOMODE, "", 1 } } },
	{ "no final newline", S("example.net verify"), 1,
	  { { "example.net", VERIFY, NOMODE, "", 1 } } },
	{ "the example of docs/policy.md",
	  S("# MATCH            LEVEL    [mode=monitor|enforce] "
	    "[mx=PATTERN[,PATTERN...]]\n"
	    "example.net        verify   mx=mx1.example.net,*.mail.example.net\n"
	    ".example.org       encrypt                  # every subdomain\n"
	    "198.51.100.25      encrypt  mode=enforce    # one address\n"
	    "203.0.113.0/24     none                     # never here\n"
	    "2001:db8:7::/48    encrypt  mode=monitor\n"), 5,
	  { { "example.net", VERIFY, NOMODE,
	      "mx1.example.net,*.mail.example.net", 2 },
	    { ".example.org", ENCRYPT, NOMODE, "", 3 },
	    { "198.51.100.25/32", ENCRYPT, ENF, "", 4 },
	    { "203.0.113.0/24", NONE, NOMODE, "", 5 },
	    { "2001:db8:7::/48", ENCRYPT, MON, "", 6 } } },
	{ "CRLF line ends",
	  S("# c\r\n\r\nexample.net encrypt\r\n.example.org none\r\n"
	    "198.51.100.0/24 verify mode=enforce\r\n"), 3,
	  { { "example.net", ENCRYPT, NOMODE, "", 3 },
	    { ".example.org", NONE, NOMODE, "", 4 },
	    { "198.51.100.0/24", VERIFY, ENF, "", 5 } } },
	{ "CRLF after an mx list",
	  S("example.net verify mx=a.example.net,*.b.example.net\r\n"), 1,
	  { { "example.net", VERIFY, NOMODE, "a.example.net,*.b.example.net",
	      1 } } },
	{ "tabs and runs of blanks",
	  S("\t example.net \t\t encrypt   mode=monitor\t\n"), 1,
	  { { "example.net", ENCRYPT, MON, "", 1 } } },
	{ "comment glued to a field", S("example.net encrypt#comment\n"), 1,
	  { { "example.net", ENCRYPT, NOMODE, "", 1 } } },
	{ "comment hides the rest", S("example.net encrypt # mode=bogus\n"), 1,
	  { { "example.net", ENCRYPT, NOMODE, "", 1 } } },
	{ "three levels",
	  S("a.example none\nb.example encrypt\nc.example verify\n"), 3,
	  { { "a.example", NONE, NOMODE, "", 1 },
	    { "b.example", ENCRYPT, NOMODE, "", 2 },
	    { "c.example", VERIFY, NOMODE, "", 3 } } },
	{ "mode monitor and enforce on every level",
	  S("a.example none mode=enforce\nb.example encrypt mode=monitor\n"
	    "c.example verify mode=enforce\nd.example none mode=monitor\n"), 4,
	  { { "a.example", NONE, ENF, "", 1 },
	    { "b.example", ENCRYPT, MON, "", 2 },
	    { "c.example", VERIFY, ENF, "", 3 },
	    { "d.example", NONE, MON, "", 4 } } },
	{ "mx=a,*.b with verify", S("example.net verify mx=a,*.b\n"), 1,
	  { { "example.net", VERIFY, NOMODE, "a,*.b", 1 } } },
	{ "mx before mode",
	  S("example.net verify mx=mx.example.net mode=monitor\n"), 1,
	  { { "example.net", VERIFY, MON, "mx.example.net", 1 } } },
	{ "mode before mx",
	  S("example.net verify mode=enforce mx=mx.example.net\n"), 1,
	  { { "example.net", VERIFY, ENF, "mx.example.net", 1 } } },
	{ "eight mx patterns",
	  S("example.net verify mx=a1,a2,a3,a4,a5,a6,a7,*.a8\n"), 1,
	  { { "example.net", VERIFY, NOMODE, "a1,a2,a3,a4,a5,a6,a7,*.a8",
	      1 } } },
	{ "mx patterns lower-cased, trailing dot removed",
	  S("example.net verify mx=MX1.Example.NET.,*.Mail.EXAMPLE.net\n"), 1,
	  { { "example.net", VERIFY, NOMODE,
	      "mx1.example.net,*.mail.example.net", 1 } } },
	{ "upper-case domain lower-cased", S("MX.Example.NET encrypt\n"), 1,
	  { { "mx.example.net", ENCRYPT, NOMODE, "", 1 } } },
	{ "trailing dot removed", S("example.net. encrypt\n"), 1,
	  { { "example.net", ENCRYPT, NOMODE, "", 1 } } },
	{ "suffix: upper case and trailing dot", S(".Example.ORG. none\n"), 1,
	  { { ".example.org", NONE, NOMODE, "", 1 } } },
	{ "digits, hyphen and underscore in a domain",
	  S("123.x-y.a_b.example encrypt\n"), 1,
	  { { "123.x-y.a_b.example", ENCRYPT, NOMODE, "", 1 } } },
	{ "single-label domain", S("localdomain encrypt\n"), 1,
	  { { "localdomain", ENCRYPT, NOMODE, "", 1 } } },
	{ "label of exactly 63",
	  S("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    ".example encrypt\n"), 1,
	  { { "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	      ".example", ENCRYPT, NOMODE, "", 1 } } },
	{ "exact and suffix of one domain are two rules",
	  S("example.net encrypt\n.example.net verify\n"), 2,
	  { { "example.net", ENCRYPT, NOMODE, "", 1 },
	    { ".example.net", VERIFY, NOMODE, "", 2 } } },
	{ "IPv4 address is a /32", S("198.51.100.7 encrypt\n"), 1,
	  { { "198.51.100.7/32", ENCRYPT, NOMODE, "", 1 } } },
	{ "IPv4 CIDRs", S("198.51.100.0/24 encrypt\n198.51.100.128/25 none\n"
	    "10.0.0.0/8 verify\n192.0.2.7/32 none\n"), 4,
	  { { "198.51.100.0/24", ENCRYPT, NOMODE, "", 1 },
	    { "198.51.100.128/25", NONE, NOMODE, "", 2 },
	    { "10.0.0.0/8", VERIFY, NOMODE, "", 3 },
	    { "192.0.2.7/32", NONE, NOMODE, "", 4 } } },
	{ "same IPv4 address, two lengths",
	  S("198.51.100.0/24 encrypt\n198.51.100.0/25 none\n"), 2,
	  { { "198.51.100.0/24", ENCRYPT, NOMODE, "", 1 },
	    { "198.51.100.0/25", NONE, NOMODE, "", 2 } } },
	{ "/0 rules", S("0.0.0.0/0 encrypt\n::/0 none\n"), 2,
	  { { "0.0.0.0/0", ENCRYPT, NOMODE, "", 1 },
	    { "::/0", NONE, NOMODE, "", 2 } } },
	{ "IPv6 address is a /128", S("2001:db8::25 verify\n"), 1,
	  { { "2001:db8::25/128", VERIFY, NOMODE, "", 1 } } },
	{ "IPv6 CIDRs", S("2001:db8::/32 encrypt\n2001:DB8:7::/48 none\n"
	    "2001:db8:8000::/33 verify mode=enforce\n"), 3,
	  { { "2001:db8::/32", ENCRYPT, NOMODE, "", 1 },
	    { "2001:db8:7::/48", NONE, NOMODE, "", 2 },
	    { "2001:db8:8000::/33", VERIFY, ENF, "", 3 } } },
	{ "address rule with mx under verify",
	  S("198.51.100.25 verify mx=mx.example.net\n"), 1,
	  { { "198.51.100.25/32", VERIFY, NOMODE, "mx.example.net", 1 } } },
};

static void check_rule(const char *name, size_t i, const struct policy_rule *r,
    const struct want_rule *w)
{
	char what[160], buf[POLICY_NAME_MAX + 2], mx[POLICY_MAX_MX *
	    POLICY_NAME_MAX];

	snprintf(what, sizeof(what), "%s: rule %zu", name, i);
	STREQ(what, rule_str(r, buf, sizeof(buf)), w->match);
	EQ(what, r->level, w->level);
	EQ(what, r->has_mode, w->mode != NOMODE);
	if (w->mode != NOMODE)
		EQ(what, r->mode, w->mode);
	STREQ(what, mx_str(r, mx, sizeof(mx)), w->mx);
	EQ(what, r->line, w->line);
	if (r->match == POLICY_MATCH_PREFIX)
		EQ(what, r->domain[0], '\0');
	else
		EQ(what, r->family, 0);
}

static void test_parse_good_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < NELEM(good_cases); i++) {
		const struct good_case *t = &good_cases[i];
		struct policy p;

		parse_ok(t->name, t->text, t->len, &p);
		EQ(t->name, p.n, t->n);
		if (t->n == 0)
			EQ(t->name, p.rules == NULL, 1);
		for (size_t j = 0; j < p.n && j < t->n; j++)
			check_rule(t->name, j, &p.rules[j], &t->rules[j]);
		policy_free(&p);
		EQ(t->name, p.n, 0);
		EQ(t->name, p.rules == NULL, 1);
	}
}

/* A line of exactly 1023 bytes is the longest accepted. */
static void test_parse_line_1023(void **state)
{
	char text[2048];
	struct policy p;
	size_t n;

	(void)state;
	n = (size_t)snprintf(text, sizeof(text), "example.net encrypt #");
	memset(text + n, 'x', 1023 - n);
	text[1023] = '\n';
	n = 1024;
	n += (size_t)snprintf(text + n, sizeof(text) - n, ".example.net none\n");
	parse_ok("1023-byte line", text, n, &p);
	assert_int_equal(p.n, 2);
	assert_int_equal(p.rules[1].line, 2);
	policy_free(&p);
}

/* Many rules: the array grows, every rule is kept in order. */
static void test_parse_many_rules(void **state)
{
	static char text[300 * 32];
	struct policy p;
	size_t n = 0;

	(void)state;
	for (unsigned i = 0; i < 300; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
		    "h%u.example.net encrypt\n", i);
	parse_ok("300 rules", text, n, &p);
	assert_int_equal(p.n, 300);
	for (unsigned i = 0; i < 300; i++) {
		char want[32];

		snprintf(want, sizeof(want), "h%u.example.net", i);
		assert_string_equal(p.rules[i].domain, want);
		assert_int_equal(p.rules[i].line, i + 1);
	}
	policy_free(&p);
}

/* ---- policy_parse: bad lines --------------------------------------------- */

struct bad_case {
	const char *name;
	const char *text;
	size_t len;
	const char *err;
};

#define L63 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define L64 L63 "a"
/* 4 x 63 + 3 dots = 255 bytes; with "a." in front, 257. */
#define D255 L63 "." L63 "." L63 "." L63

static const struct bad_case bad_cases[] = {
	{ "missing level", S("example.net\n"),
	  "line 1: example.net: expected MATCH LEVEL [mode=...] [mx=...]" },
	{ "missing level after comments",
	  S("# policy\n\nexample.net encrypt\n.example.org # none\n"),
	  "line 4: .example.org: expected MATCH LEVEL [mode=...] [mx=...]" },
	{ "missing level, address", S("198.51.100.0/24\n"),
	  "line 1: 198.51.100.0/24: expected MATCH LEVEL [mode=...] [mx=...]" },
	{ "unknown level", S("example.net require\n"),
	  "line 1: example.net: level must be none, encrypt or verify" },
	{ "level in upper case", S("example.net ENCRYPT\n"),
	  "line 1: example.net: level must be none, encrypt or verify" },
	{ "option where the level goes", S("example.net mode=enforce\n"),
	  "line 1: example.net: level must be none, encrypt or verify" },
	{ "unknown option", S("example.net encrypt foo=bar\n"),
	  "line 1: example.net: unknown option (mode= or mx=)" },
	{ "bare mode word", S("example.net encrypt enforce\n"),
	  "line 1: example.net: unknown option (mode= or mx=)" },
	{ "option in upper case", S("example.net encrypt MODE=enforce\n"),
	  "line 1: example.net: unknown option (mode= or mx=)" },
	{ "mode=bogus", S("example.net encrypt mode=bogus\n"),
	  "line 1: example.net: mode must be monitor or enforce" },
	{ "mode= empty", S("example.net encrypt mode=\n"),
	  "line 1: example.net: mode must be monitor or enforce" },
	{ "mode=Enforce", S("example.net encrypt mode=Enforce\n"),
	  "line 1: example.net: mode must be monitor or enforce" },
	{ "mx with encrypt", S("example.net encrypt mx=mx.example.net\n"),
	  "line 1: example.net: mx= only makes sense with verify" },
	{ "mx with none", S("example.net none mx=mx.example.net\n"),
	  "line 1: example.net: mx= only makes sense with verify" },
	{ "mx with encrypt on an address",
	  S("198.51.100.7 encrypt mx=mx.example.net\n"),
	  "line 1: 198.51.100.7: mx= only makes sense with verify" },
	{ "mx= empty", S("example.net verify mx=\n"),
	  "line 1: example.net: mx= needs at least one pattern" },
	{ "mx= only commas", S("example.net verify mx=,,\n"),
	  "line 1: example.net: mx= needs at least one pattern" },
	{ "mx given twice", S("example.net verify mx=a.example mx=b.example\n"),
	  "line 1: example.net: mx given twice" },
	{ "nine mx patterns",
	  S("example.net verify mx=a1,a2,a3,a4,a5,a6,a7,a8,a9\n"),
	  "line 1: example.net: too many mx patterns (at most 8)" },
	{ "bad mx chars", S("example.net verify mx=mx.exa$mple.net\n"),
	  "line 1: example.net: bad mx pattern" },
	{ "mx bare star", S("example.net verify mx=*\n"),
	  "line 1: example.net: bad mx pattern" },
	{ "mx star not first", S("example.net verify mx=mx.*.example.net\n"),
	  "line 1: example.net: bad mx pattern" },
	{ "mx partial-label star", S("example.net verify mx=mx*.example.net\n"),
	  "line 1: example.net: bad mx pattern" },
	{ "mx two stars", S("example.net verify mx=*.*.example.net\n"),
	  "line 1: example.net: bad mx pattern" },
	{ "mx star dot only", S("example.net verify mx=*.\n"),
	  "line 1: example.net: bad mx pattern" },
	{ "mx empty label", S("example.net verify mx=mx..example.net\n"),
	  "line 1: example.net: bad mx pattern" },
	{ "mx label of 64", S("example.net verify mx=" L64 ".example\n"),
	  "line 1: example.net: bad mx pattern" },
	{ "bad domain chars", S("exa$mple.net encrypt\n"),
	  "line 1: exa$mple.net: bad domain" },
	{ "bang in a domain", S("mx!.example encrypt\n"),
	  "line 1: mx!.example: bad domain" },
	{ "wildcard as a domain", S("*.example.net encrypt\n"),
	  "line 1: *.example.net: bad domain" },
	{ "empty label", S("mx..example.net encrypt\n"),
	  "line 1: mx..example.net: bad domain" },
	{ "leading dot twice", S("..example.net encrypt\n"),
	  "line 1: ..example.net: bad domain" },
	{ "lone dot", S(". encrypt\n"), "line 1: .: bad domain" },
	{ "two dots", S(".. encrypt\n"), "line 1: ..: bad domain" },
	{ "8-bit byte in a domain", S("ex\xc3\xa4mple.net encrypt\n"),
	  "line 1: ex\xc3\xa4mple.net: non-ASCII name: write an internationalized "
	  "domain in its ASCII form (A-labels, xn--..., as idn2(1) prints it)" },
	{ "label of 64", S(L64 ".example encrypt\n"),
	  "line 1: " L64 ".example: bad domain" },
	{ "suffix with a label of 64", S("." L64 ".example encrypt\n"),
	  "line 1: ." L64 ".example: bad domain" },
	{ "domain of 255", S(D255 " encrypt\n"),
	  "line 1: " D255 ": bad domain" },
	{ "domain of 257", S("a." D255 " encrypt\n"),
	  "line 1: a." D255 ": domain too long" },
	{ "host bits set in an IPv4 CIDR", S("198.51.100.1/24 encrypt\n"),
	  "line 1: 198.51.100.1/24: bad address or CIDR (host bits must be "
	  "zero)" },
	{ "host bits set in an IPv6 CIDR", S("2001:db8::1/32 encrypt\n"),
	  "line 1: 2001:db8::1/32: bad address or CIDR (host bits must be "
	  "zero)" },
	{ "IPv4 prefix too long", S("198.51.100.0/33 encrypt\n"),
	  "line 1: 198.51.100.0/33: bad address or CIDR (host bits must be "
	  "zero)" },
	{ "IPv6 prefix too long", S("2001:db8::/129 encrypt\n"),
	  "line 1: 2001:db8::/129: bad address or CIDR (host bits must be "
	  "zero)" },
	{ "empty prefix length", S("198.51.100.0/ encrypt\n"),
	  "line 1: 198.51.100.0/: bad address or CIDR (host bits must be "
	  "zero)" },
	{ "three-part IPv4", S("198.51.100 encrypt\n"),
	  "line 1: 198.51.100: bad address or CIDR (host bits must be zero)" },
	{ "IPv4 octet too big", S("198.51.100.256 encrypt\n"),
	  "line 1: 198.51.100.256: bad address or CIDR (host bits must be "
	  "zero)" },
	{ "bad IPv6", S("2001:db8:::1 encrypt\n"),
	  "line 1: 2001:db8:::1: bad address or CIDR (host bits must be "
	  "zero)" },
	{ "CIDR on a domain", S("example.net/24 encrypt\n"),
	  "line 1: example.net/24: bad address or CIDR (host bits must be "
	  "zero)" },
	{ "duplicate domain", S("example.net encrypt\nexample.net verify\n"),
	  "line 2: example.net: already given on line 1" },
	{ "duplicate domain, other case and trailing dot",
	  S("# c\nexample.net encrypt\n\n\nEXAMPLE.Net. none\n"),
	  "line 5: EXAMPLE.Net.: already given on line 2" },
	{ "duplicate suffix", S(".example.net none\nx.example encrypt\n"
	    ".Example.NET verify\n"),
	  "line 3: .Example.NET: already given on line 1" },
	{ "duplicate IPv4 address", S("198.51.100.7 encrypt\n"
	    "198.51.100.7/32 none\n"),
	  "line 2: 198.51.100.7/32: already given on line 1" },
	{ "duplicate IPv4 CIDR", S("198.51.100.0/24 encrypt\n# x\n"
	    "10.0.0.0/8 none\n198.51.100.0/24 encrypt mode=monitor\n"),
	  "line 4: 198.51.100.0/24: already given on line 1" },
	{ "duplicate IPv6 CIDR, other spelling",
	  S("2001:db8::/32 encrypt\r\n2001:0DB8:0::/32 none\r\n"),
	  "line 2: 2001:0DB8:0::/32: already given on line 1" },
	{ "too many fields",
	  S("example.net encrypt x x x x x x x x x x x x x x x\n"),
	  "line 1: too many fields" },
	{ "sixteen fields is an unknown option, not too many",
	  S("example.net encrypt x x x x x x x x x x x x x x\n"),
	  "line 1: example.net: unknown option (mode= or mx=)" },
	{ "NUL byte", S("example.net encrypt\n.exa\0mple.net none\n"),
	  "line 2: NUL byte" },
	{ "NUL byte in a comment", S("example.net encrypt # \0\n"),
	  "line 1: NUL byte" },
	{ "NUL byte alone on a line", S("\n\n\0\n"), "line 3: NUL byte" },
	{ "error after good rules", S("a.example encrypt\nb.example verify\n"
	    "c.example none\nd.example\n"),
	  "line 4: d.example: expected MATCH LEVEL [mode=...] [mx=...]" },
};

static void expect_parse_error(const char *name, const char *text, size_t len,
    const char *want)
{
	char err[ERRLEN];
	struct policy p;

	memset(err, 0, sizeof(err));
	memset(&p, 0xa5, sizeof(p));
	if (policy_parse(text, len, &p, err, sizeof(err)) != -1) {
		print_error("%s: accepted (%zu rules)\n", name, p.n);
		policy_free(&p);
		fail();
	}
	STREQ(name, err, want);
	/* On error the policy is left empty. */
	EQ(name, p.n, 0);
	EQ(name, p.rules == NULL, 1);
	policy_free(&p);
}

static void test_parse_bad_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < NELEM(bad_cases); i++)
		expect_parse_error(bad_cases[i].name, bad_cases[i].text,
		    bad_cases[i].len, bad_cases[i].err);
}

/* A line of 1024 bytes, after good lines: refused, nothing kept. */
static void test_parse_line_too_long(void **state)
{
	char text[4096];
	size_t n;

	(void)state;
	n = (size_t)snprintf(text, sizeof(text), "a.example encrypt\n"
	    "b.example none\n");
	memset(text + n, 'x', 1024);
	memcpy(text + n, "c.example encrypt #", 19);
	n += 1024;
	text[n++] = '\n';
	expect_parse_error("1024-byte line", text, n,
	    "line 3: longer than 1023 bytes");

	/* Without a final newline, and far longer. */
	memset(text, 'y', 3000);
	expect_parse_error("3000-byte line", text, 3000,
	    "line 1: longer than 1023 bytes");
}

/* An error longer than err is cut, still NUL-terminated. */
static void test_parse_error_truncated(void **state)
{
	char err[12];
	struct policy p;

	(void)state;
	memset(err, 'z', sizeof(err));
	assert_int_equal(policy_parse(S("example.net bogus\n"), &p, err,
	    sizeof(err)), -1);
	assert_string_equal(err, "line 1: exa");
	assert_int_equal(p.n, 0);
	assert_null(p.rules);
}

/* ---- policy_load ----------------------------------------------------------- */

static void test_load(void **state)
{
	char err[ERRLEN], want[ERRLEN];
	struct policy p;
	char *path;

	(void)state;
	path = tmp_write(S("# policy\nexample.net verify mx=*.example.net\n"
	    "198.51.100.0/24 encrypt mode=enforce\n"));
	assert_int_equal(policy_load(path, &p, err, sizeof(err)), 0);
	assert_int_equal(p.n, 2);
	assert_string_equal(p.rules[0].domain, "example.net");
	assert_int_equal(p.rules[1].line, 3);
	policy_free(&p);
	tmp_remove(path);

	path = tmp_write(S("example.net encrypt\n198.51.100.1/24 none\n"));
	assert_int_equal(policy_load(path, &p, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: line 2: 198.51.100.1/24: bad "
	    "address or CIDR (host bits must be zero)", path);
	assert_string_equal(err, want);
	assert_int_equal(p.n, 0);
	assert_null(p.rules);
	tmp_remove(path);

	assert_int_equal(policy_load("/nonexistent/starttlsd-policy", &p, err,
	    sizeof(err)), -1);
	assert_string_equal(err, "/nonexistent/starttlsd-policy: No such file "
	    "or directory");
	assert_int_equal(p.n, 0);
	assert_null(p.rules);
}

/*
 * BUG (proxy/policy.c policy_load): a read error is taken for an empty file.
 * fopen() of a directory succeeds on Linux, fread() then fails with EISDIR
 * and returns 0, nobody looks at ferror(), and the empty text parses as a
 * policy with no rules: policy_load("/tmp", ...) returns 0. So
 * "policy_file = /etc/starttlsd/" (or an I/O error) starts the daemon with
 * no policy at all, silently, where the admin expected encrypt/verify rules
 * to be enforced. It should fail with "PATH: Is a directory".
 */
static void test_bug_load_directory_is_empty_policy(void **state)
{
	char err[ERRLEN] = "";
	struct policy p;
	int rc;

	(void)state;
	rc = policy_load("/tmp", &p, err, sizeof(err));
	if (rc == 0)
		print_error("BUG: policy_load(\"/tmp\") returned 0 with %zu "
		    "rules\n", p.n);
	policy_free(&p);
	assert_int_equal(rc, -1);
	assert_non_null(strstr(err, "/tmp: "));
}

/*
 * BUG (proxy/policy.c parse_rule): a repeated mode= is taken silently, the
 * last one winning, while a repeated mx= is refused ("mx given twice"). The
 * format is MATCH LEVEL [mode=...] [mx=...]: one of each. An edit that
 * appends "mode=monitor" to a line that already says "mode=enforce" turns
 * enforcement off without a word.
 */
static void test_bug_mode_given_twice(void **state)
{
	char err[ERRLEN] = "";
	struct policy p;
	int rc;

	(void)state;
	rc = policy_parse(S("example.net encrypt mode=enforce mode=monitor\n"),
	    &p, err, sizeof(err));
	if (rc == 0)
		print_error("BUG: repeated mode= accepted, mode=%s\n",
		    policy_mode_str(p.rules[0].mode));
	policy_free(&p);
	assert_int_equal(rc, -1);
	assert_non_null(strstr(err, "line 1: example.net: "));
}

/* ---- policy_for_addr ----------------------------------------------------- */

static const struct sockaddr *mkaddr(const char *s, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(s, ':') != NULL) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)ss;

		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(25);
		assert_int_equal(inet_pton(AF_INET6, s, &in6->sin6_addr), 1);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)(void *)ss;

		in->sin_family = AF_INET;
		in->sin_port = htons(25);
		assert_int_equal(inet_pton(AF_INET, s, &in->sin_addr), 1);
	}
	return (const struct sockaddr *)(const void *)ss;
}

/* One policy text, in file order and reversed: the answer may not change. */
static const char addr_rules[] =
	"0.0.0.0/0 none\n"
	"198.51.100.0/24 encrypt\n"
	"198.51.100.0/25 verify\n"
	"198.51.100.7 encrypt mode=enforce\n"
	"198.0.0.0/7 none\n"
	"::/0 none\n"
	"2001:db8::/32 encrypt\n"
	"2001:db8:7::/48 verify\n"
	"2001:db8:7::25 none\n"
	"2001:db8:8000::/33 encrypt mode=monitor\n";

struct addr_case {
	const char *addr;
	const char *want;   /* canonical MATCH, "-" for none */
};

static const struct addr_case addr_cases[] = {
	{ "198.51.100.7", "198.51.100.7/32" },
	{ "198.51.100.6", "198.51.100.0/25" },
	{ "198.51.100.8", "198.51.100.0/25" },
	{ "198.51.100.0", "198.51.100.0/25" },
	{ "198.51.100.127", "198.51.100.0/25" },
	{ "198.51.100.128", "198.51.100.0/24" },
	{ "198.51.100.255", "198.51.100.0/24" },
	{ "198.51.101.7", "198.0.0.0/7" },
	{ "199.255.255.255", "198.0.0.0/7" },
	{ "197.255.255.255", "0.0.0.0/0" },
	{ "200.0.0.0", "0.0.0.0/0" },
	{ "192.0.2.1", "0.0.0.0/0" },
	{ "0.0.0.0", "0.0.0.0/0" },
	{ "255.255.255.255", "0.0.0.0/0" },
	{ "2001:db8:7::25", "2001:db8:7::25/128" },
	{ "2001:db8:7::24", "2001:db8:7::/48" },
	{ "2001:db8:7:ffff:ffff:ffff:ffff:ffff", "2001:db8:7::/48" },
	{ "2001:db8:8::1", "2001:db8::/32" },
	{ "2001:db8:7fff::1", "2001:db8::/32" },
	{ "2001:db8:8000::1", "2001:db8:8000::/33" },
	{ "2001:db8:ffff::1", "2001:db8:8000::/33" },
	{ "2001:db9::1", "::/0" },
	{ "::1", "::/0" },
	/* No cross-family match: a v4-mapped address is an IPv6 address. */
	{ "::ffff:198.51.100.7", "::/0" },
	{ "::", "::/0" },
};

static void run_addr_cases(const char *what, const struct policy *p,
    const struct addr_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct sockaddr_storage ss;
		char name[128], buf[POLICY_NAME_MAX + 2];
		const struct policy_rule *r;

		snprintf(name, sizeof(name), "%s: %s", what, cases[i].addr);
		r = policy_for_addr(p, mkaddr(cases[i].addr, &ss));
		STREQ(name, rule_str(r, buf, sizeof(buf)), cases[i].want);
	}
}

/* The lines of text in reverse order. */
static size_t reverse_lines(const char *text, char *out, size_t cap)
{
	size_t len = strlen(text), o = 0, end = len;

	while (end > 0) {
		size_t start = end - 1;

		while (start > 0 && text[start - 1] != '\n')
			start--;
		assert_true(o + (end - start) <= cap);
		memcpy(out + o, text + start, end - start);
		o += end - start;
		if (out[o - 1] != '\n')
			out[o++] = '\n';
		end = start;
	}
	return o;
}

static void test_for_addr_table(void **state)
{
	char rev[sizeof(addr_rules) + 16];
	struct policy p;
	size_t n;

	(void)state;
	parse_ok("addr rules", addr_rules, strlen(addr_rules), &p);
	run_addr_cases("file order", &p, addr_cases, NELEM(addr_cases));
	policy_free(&p);

	n = reverse_lines(addr_rules, rev, sizeof(rev));
	parse_ok("addr rules reversed", rev, n, &p);
	run_addr_cases("reversed", &p, addr_cases, NELEM(addr_cases));
	policy_free(&p);
}

/* Without /0 rules: no match is NULL, and a family never matches the other. */
static void test_for_addr_no_match(void **state)
{
	static const struct addr_case v4only[] = {
		{ "198.51.100.7", "198.51.100.0/24" },
		{ "198.51.101.7", "-" },
		{ "2001:db8::1", "-" },
		{ "::ffff:198.51.100.7", "-" },
		/* 198.51.100.0 as the first four bytes of an IPv6 address */
		{ "c633:6400::", "-" },
	};
	static const struct addr_case v6only[] = {
		{ "2001:db8::1", "2001:db8::/32" },
		{ "2001:db9::1", "-" },
		{ "32.1.13.184", "-" }, /* 2001:0db8 as IPv4 */
		{ "0.0.0.0", "-" },
	};
	static const struct addr_case v4all[] = {
		{ "192.0.2.1", "0.0.0.0/0" },
		{ "::", "-" },
		{ "::ffff:0:0", "-" },
	};
	static const struct addr_case v6all[] = {
		{ "2001:db8::1", "::/0" },
		{ "0.0.0.0", "-" },
	};
	struct policy p;
	struct sockaddr_un un;

	(void)state;
	parse_ok("v4 only", S("198.51.100.0/24 encrypt\nexample.net verify\n"),
	    &p);
	run_addr_cases("v4 only", &p, v4only, NELEM(v4only));
	/* Not an IP address family. */
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	assert_null(policy_for_addr(&p,
	    (const struct sockaddr *)(const void *)&un));
	policy_free(&p);

	parse_ok("v6 only", S("2001:db8::/32 encrypt\n.example.net none\n"), &p);
	run_addr_cases("v6 only", &p, v6only, NELEM(v6only));
	policy_free(&p);

	parse_ok("v4 /0", S("0.0.0.0/0 encrypt\n"), &p);
	run_addr_cases("v4 /0", &p, v4all, NELEM(v4all));
	policy_free(&p);

	parse_ok("v6 /0", S("::/0 encrypt\n"), &p);
	run_addr_cases("v6 /0", &p, v6all, NELEM(v6all));
	policy_free(&p);

	/* The empty policy. */
	parse_ok("empty", S(""), &p);
	run_addr_cases("empty", &p, v6all + 1, 1);
	run_addr_cases("empty", &p, v4all + 1, 1);
	policy_free(&p);
}

/* ---- policy_for_domain --------------------------------------------------- */

static const char domain_rules[] =
	"example.net encrypt\n"
	".example.net verify\n"
	".b.example.net none\n"
	"a.b.example.net encrypt mode=monitor\n"
	".c.b.example.net encrypt\n"
	".org none\n"
	"198.51.100.0/24 encrypt\n";

struct domain_case {
	const char *domain;
	const char *want;
};

static const struct domain_case domain_cases[] = {
	{ "example.net", "example.net" },
	{ "EXAMPLE.NET", "example.net" },
	{ "Example.Net", "example.net" },
	{ "a.example.net", ".example.net" },
	{ "A.Example.NET", ".example.net" },
	{ "a.b.c.example.net", ".example.net" },
	{ "b.example.net", ".example.net" },      /* .b.example.net: not b.*/
	{ "x.b.example.net", ".b.example.net" },  /* longer suffix wins */
	{ "y.x.b.example.net", ".b.example.net" },
	{ "X.B.EXAMPLE.NET", ".b.example.net" },
	{ "a.b.example.net", "a.b.example.net" }, /* exact beats suffixes */
	{ "A.B.Example.Net", "a.b.example.net" },
	{ "x.a.b.example.net", ".b.example.net" },
	{ "c.b.example.net", ".b.example.net" },
	{ "x.c.b.example.net", ".c.b.example.net" },
	{ "badexample.net", "-" },
	{ "xexample.net", "-" },
	{ "a.badexample.net", "-" },
	{ "example.net.evil", "-" },
	{ "net", "-" },
	{ "example.org", ".org" },
	{ "a.b.example.org", ".org" },
	{ "org", "-" },
	{ "xorg", "-" },
	{ "example.com", "-" },
	{ "", "-" },
	{ "198.51.100.7", "-" },  /* address rules are not domains */
};

static void run_domain_cases(const char *what, const struct policy *p)
{
	for (size_t i = 0; i < NELEM(domain_cases); i++) {
		char name[128], buf[POLICY_NAME_MAX + 2];

		snprintf(name, sizeof(name), "%s: \"%s\"", what,
		    domain_cases[i].domain);
		STREQ(name, rule_str(policy_for_domain(p,
		    domain_cases[i].domain), buf, sizeof(buf)),
		    domain_cases[i].want);
	}
}

static void test_for_domain_table(void **state)
{
	char rev[sizeof(domain_rules) + 16];
	struct policy p;
	size_t n;

	(void)state;
	parse_ok("domain rules", domain_rules, strlen(domain_rules), &p);
	run_domain_cases("file order", &p);
	policy_free(&p);

	n = reverse_lines(domain_rules, rev, sizeof(rev));
	parse_ok("domain rules reversed", rev, n, &p);
	run_domain_cases("reversed", &p);
	policy_free(&p);

	parse_ok("empty", S(""), &p);
	assert_null(policy_for_domain(&p, "example.net"));
	policy_free(&p);
}

/* ---- policy_tls_unavailable: the decision table -------------------------- */

static const enum policy_signal unavail_sigs[] = {
	POLICY_SIG_STARTTLS_MISSING, POLICY_SIG_STARTTLS_MASKED,
	POLICY_SIG_STARTTLS_REFUSED, POLICY_SIG_HANDSHAKE_FAILED,
};

#define MISSING POLICY_SIG_STARTTLS_MISSING
#define MASKED POLICY_SIG_STARTTLS_MASKED
#define REFUSED POLICY_SIG_STARTTLS_REFUSED
#define HSFAIL POLICY_SIG_HANDSHAKE_FAILED

/*
 * The rules of policy.h and issue 4, written out once: TLS is required by
 * an encrypt or verify rule, or with no rule by a pin; "none" never
 * requires it. A rule's mode= overrides the global mode. Block only when
 * required and enforcing; alert when required, pinned, or for anything
 * but a plain missing STARTTLS; LOG_ERR when blocking.
 */
static void oracle(bool pinned, const struct policy_rule *r,
    enum policy_mode global, enum policy_signal sig, struct policy_out *out)
{
	bool required;

	if (r != NULL)
		required = r->level == POLICY_LEVEL_ENCRYPT ||
		    r->level == POLICY_LEVEL_VERIFY;
	else
		required = pinned;
	memset(out, 0, sizeof(*out));
	out->sig = sig;
	out->mode = r != NULL && r->has_mode ? r->mode : global;
	out->block = required && out->mode == POLICY_ENFORCE;
	out->alert = required || pinned || sig != POLICY_SIG_STARTTLS_MISSING;
	out->prio = out->block ? LOG_ERR : LOG_WARNING;
}

struct unavail_case {
	const char *name;
	bool pinned;
	const char *rule;        /* LEVEL [mode=...], NULL for no rule */
	enum policy_mode global;
	enum policy_signal sig;
	bool alert;
	bool block;
	enum policy_mode mode;
	int prio;
};

static const struct unavail_case unavail_cases[] = {
	/* No rule: the pin decides. */
	{ "new server without STARTTLS: plain opportunistic, silent",
	  false, NULL, ENF, MISSING, false, false, ENF, LOG_WARNING },
	{ "new server, masked: alert, no block",
	  false, NULL, ENF, MASKED, true, false, ENF, LOG_WARNING },
	{ "new server, refused: alert, no block",
	  false, NULL, MON, REFUSED, true, false, MON, LOG_WARNING },
	{ "new server, handshake failed: alert, no block",
	  false, NULL, ENF, HSFAIL, true, false, ENF, LOG_WARNING },
	{ "pinned, missing, enforce: blocked",
	  true, NULL, ENF, MISSING, true, true, ENF, LOG_ERR },
	{ "pinned, missing, monitor: alert only",
	  true, NULL, MON, MISSING, true, false, MON, LOG_WARNING },
	{ "pinned, masked, enforce: blocked",
	  true, NULL, ENF, MASKED, true, true, ENF, LOG_ERR },
	{ "pinned, handshake failed, monitor",
	  true, NULL, MON, HSFAIL, true, false, MON, LOG_WARNING },
	/* none: never required, even if pinned. */
	{ "none beats the pin",
	  true, "none", ENF, MISSING, true, false, ENF, LOG_WARNING },
	{ "none with mode=enforce still never blocks",
	  true, "none mode=enforce", ENF, MASKED, true, false, ENF,
	  LOG_WARNING },
	{ "none, not pinned, missing: silent",
	  false, "none", ENF, MISSING, false, false, ENF, LOG_WARNING },
	{ "none mode=enforce under global monitor: silent, mode enforce",
	  false, "none mode=enforce", MON, MISSING, false, false, ENF,
	  LOG_WARNING },
	{ "none mode=monitor, pinned, refused",
	  true, "none mode=monitor", MON, REFUSED, true, false, MON,
	  LOG_WARNING },
	{ "none, not pinned, handshake failed: alert",
	  false, "none", ENF, HSFAIL, true, false, ENF, LOG_WARNING },
	/* encrypt / verify: required whatever the pin says. */
	{ "encrypt, not pinned, enforce: blocked",
	  false, "encrypt", ENF, MISSING, true, true, ENF, LOG_ERR },
	{ "encrypt, not pinned, monitor: alert only",
	  false, "encrypt", MON, MISSING, true, false, MON, LOG_WARNING },
	{ "encrypt mode=enforce overrides global monitor",
	  false, "encrypt mode=enforce", MON, REFUSED, true, true, ENF,
	  LOG_ERR },
	{ "encrypt mode=monitor overrides global enforce",
	  true, "encrypt mode=monitor", ENF, MISSING, true, false, MON,
	  LOG_WARNING },
	{ "verify, handshake failed, enforce: blocked",
	  false, "verify", ENF, HSFAIL, true, true, ENF, LOG_ERR },
	{ "verify mode=monitor, pinned, enforce: alert only",
	  true, "verify mode=monitor", ENF, HSFAIL, true, false, MON,
	  LOG_WARNING },
	{ "verify mode=enforce, masked, global monitor: blocked",
	  false, "verify mode=enforce", MON, MASKED, true, true, ENF, LOG_ERR },
	{ "verify, pinned, monitor, missing",
	  true, "verify", MON, MISSING, true, false, MON, LOG_WARNING },
};

static void check_out(const char *name, const struct policy_out *got,
    const struct policy_out *want)
{
	EQ(name, got->sig, want->sig);
	EQ(name, got->alert, want->alert);
	EQ(name, got->block, want->block);
	EQ(name, got->mode, want->mode);
	EQ(name, got->prio, want->prio);
}

static void test_tls_unavailable_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < NELEM(unavail_cases); i++) {
		const struct unavail_case *t = &unavail_cases[i];
		struct policy_rule rule;
		struct policy_ctx ctx;
		struct policy_out got, want, o;

		memset(&ctx, 0, sizeof(ctx));
		ctx.mode = t->global;
		ctx.pinned = t->pinned;
		ctx.pinned_since = t->pinned ? 1796032800 : 0;
		if (t->rule != NULL) {
			rule_from(t->rule, &rule);
			ctx.rule = &rule;
		}
		want = (struct policy_out){ .sig = t->sig, .alert = t->alert,
		    .block = t->block, .mode = t->mode, .prio = t->prio };
		memset(&got, 0x5a, sizeof(got));
		policy_tls_unavailable(&ctx, t->sig, &got);
		check_out(t->name, &got, &want);
		/* The oracle of the generated table agrees with the hand. */
		oracle(t->pinned, ctx.rule, t->global, t->sig, &o);
		check_out(t->name, &o, &want);
	}
}

/* Every combination, against the oracle. */
static void test_tls_unavailable_generated(void **state)
{
	static const struct {
		bool present;
		enum policy_level level;
		bool has_mode;
		enum policy_mode mode;
	} rules[] = {
		{ false, POLICY_LEVEL_UNSET, false, MON },
		{ true, NONE, false, MON }, { true, NONE, true, MON },
		{ true, NONE, true, ENF },
		{ true, ENCRYPT, false, MON }, { true, ENCRYPT, true, MON },
		{ true, ENCRYPT, true, ENF },
		{ true, VERIFY, false, MON }, { true, VERIFY, true, MON },
		{ true, VERIFY, true, ENF },
	};
	static const enum policy_mode modes[] = { MON, ENF };
	size_t count = 0, blocks = 0, alerts = 0;

	(void)state;
	for (int pinned = 0; pinned < 2; pinned++)
	for (size_t r = 0; r < NELEM(rules); r++)
	for (size_t m = 0; m < NELEM(modes); m++)
	for (size_t s = 0; s < NELEM(unavail_sigs); s++) {
		struct policy_rule rule;
		struct policy_ctx ctx;
		struct policy_out got, want;
		char name[160];
		bool required;

		memset(&rule, 0, sizeof(rule));
		rule.match = POLICY_MATCH_DOMAIN;
		snprintf(rule.domain, sizeof(rule.domain), "example.net");
		rule.level = rules[r].level;
		rule.has_mode = rules[r].has_mode;
		rule.mode = rules[r].mode;
		rule.line = 1;
		memset(&ctx, 0, sizeof(ctx));
		ctx.mode = modes[m];
		ctx.pinned = pinned;
		ctx.rule = rules[r].present ? &rule : NULL;
		snprintf(name, sizeof(name), "pinned=%d rule=%s%s%s global=%s "
		    "sig=%s", pinned, rules[r].present ?
		    policy_level_str(rules[r].level) : "(none)",
		    rules[r].has_mode ? " mode=" : "", rules[r].has_mode ?
		    policy_mode_str(rules[r].mode) : "",
		    policy_mode_str(modes[m]),
		    policy_signal_str(unavail_sigs[s]));

		oracle(pinned, ctx.rule, modes[m], unavail_sigs[s], &want);
		memset(&got, 0x5a, sizeof(got));
		policy_tls_unavailable(&ctx, unavail_sigs[s], &got);
		check_out(name, &got, &want);

		required = ctx.rule != NULL ? rules[r].level == ENCRYPT ||
		    rules[r].level == VERIFY : pinned;
		EQ(name, policy_required(&ctx), required);
		EQ(name, policy_level(&ctx), ctx.rule != NULL ?
		    rules[r].level : pinned ? ENCRYPT : POLICY_LEVEL_UNSET);
		count++;
		blocks += got.block;
		alerts += got.alert;
	}
	/* 2 pin states x 10 rules x 2 modes x 4 signals. */
	assert_int_equal(count, 160);
	/*
	 * Blocks: per pin state and encrypt/verify level, no mode= blocks in
	 * 1 global mode x 4 signals, mode=enforce in 2 x 4, mode=monitor never:
	 * 12 x 2 levels x 2 pin states = 48; no rule and pinned: 4. Alerts: all
	 * but "not required, not pinned, starttls-missing" (no rule or one of
	 * the 3 "none" variants, 2 global modes): 160 - 8.
	 */
	assert_int_equal(blocks, 52);
	assert_int_equal(alerts, 152);
}

/* ---- policy_after_handshake ---------------------------------------------- */

#define SPKI_A 0xaa
#define SPKI_B 0xbb
#define MAXNAMES 4

struct want_out {
	enum policy_signal sig;
	bool block;
	int prio;
};

struct hs_case {
	const char *name;
	bool pinned;
	uint16_t pin_version;
	uint8_t pin_spki;        /* 0: no spki pinned */
	const char *rule;        /* NULL: no rule */
	enum policy_mode global;
	uint16_t version;
	bool verified;
	uint8_t spki;            /* 0: none known */
	const char *names[MAXNAMES];
	size_t nnames;
	size_t max;
	size_t n;
	struct want_out out[3];
};

#define VERLOW POLICY_SIG_VERSION_LOWERED
#define KEYCHG POLICY_SIG_KEY_CHANGED
#define VFAIL POLICY_SIG_VERIFY_FAILED
#define NAMEMM POLICY_SIG_NAME_MISMATCH
#define NO_NAMES { NULL, NULL, NULL, NULL }, 0

static const struct hs_case hs_cases[] = {
	{ "version lowered 1.3 -> 1.2: warn, never block",
	  true, TLS13, SPKI_A, NULL, ENF, TLS12, true, SPKI_A, NO_NAMES, 3,
	  1, { { VERLOW, false, LOG_WARNING } } },
	{ "version lowered under an encrypt rule in enforce: still no block",
	  true, TLS13, 0, "encrypt mode=enforce", ENF, TLS12, true, 0,
	  NO_NAMES, 3, 1, { { VERLOW, false, LOG_WARNING } } },
	{ "version raised 1.2 -> 1.3: nothing",
	  true, TLS12, SPKI_A, NULL, ENF, TLS13, false, SPKI_A, NO_NAMES, 3,
	  0, { { 0, 0, 0 } } },
	{ "same version, same key: nothing",
	  true, TLS13, SPKI_A, NULL, ENF, TLS13, false, SPKI_A, NO_NAMES, 3,
	  0, { { 0, 0, 0 } } },
	{ "key changed: info, never block",
	  true, TLS13, SPKI_A, NULL, ENF, TLS13, false, SPKI_B, NO_NAMES, 3,
	  1, { { KEYCHG, false, LOG_INFO } } },
	{ "key changed under verify, verified, enforce: info only",
	  true, TLS13, SPKI_A, "verify", ENF, TLS13, true, SPKI_B, NO_NAMES, 3,
	  1, { { KEYCHG, false, LOG_INFO } } },
	{ "no spki pinned: no key signal",
	  true, TLS13, 0, NULL, ENF, TLS13, false, SPKI_B, NO_NAMES, 3,
	  0, { { 0, 0, 0 } } },
	{ "no spki seen: no key signal",
	  true, TLS13, SPKI_A, NULL, ENF, TLS13, false, 0, NO_NAMES, 3,
	  0, { { 0, 0, 0 } } },
	{ "lowered and key changed: both, in order",
	  true, TLS13, SPKI_A, NULL, MON, TLS12, false, SPKI_B, NO_NAMES, 3,
	  2, { { VERLOW, false, LOG_WARNING }, { KEYCHG, false, LOG_INFO } } },
	{ "not pinned: no version or key signal",
	  false, TLS13, SPKI_A, NULL, ENF, TLS12, false, SPKI_B, NO_NAMES, 3,
	  0, { { 0, 0, 0 } } },
	{ "not pinned, encrypt rule: nothing",
	  false, TLS13, SPKI_A, "encrypt", ENF, TLS12, false, SPKI_B,
	  NO_NAMES, 3, 0, { { 0, 0, 0 } } },
	{ "verify, unverified, enforce: blocked",
	  false, 0, 0, "verify", ENF, TLS13, false, SPKI_A, NO_NAMES, 3,
	  1, { { VFAIL, true, LOG_ERR } } },
	{ "verify, unverified, monitor: alert only",
	  false, 0, 0, "verify", MON, TLS13, false, SPKI_A, NO_NAMES, 3,
	  1, { { VFAIL, false, LOG_WARNING } } },
	{ "verify mode=monitor, unverified, global enforce",
	  false, 0, 0, "verify mode=monitor", ENF, TLS13, false, 0, NO_NAMES, 3,
	  1, { { VFAIL, false, LOG_WARNING } } },
	{ "verify mode=enforce, unverified, global monitor",
	  true, TLS13, 0, "verify mode=enforce", MON, TLS13, false, 0,
	  NO_NAMES, 3, 1, { { VFAIL, true, LOG_ERR } } },
	{ "verify, unverified, names would match: still verify-failed",
	  false, 0, 0, "verify mx=*.example.net", ENF, TLS13, false, 0,
	  { "mx.example.net", NULL, NULL, NULL }, 1,
	  3, 1, { { VFAIL, true, LOG_ERR } } },
	{ "verify, verified, no mx: nothing",
	  false, 0, 0, "verify", ENF, TLS13, true, 0,
	  { "whatever.example", NULL, NULL, NULL }, 1, 3, 0, { { 0, 0, 0 } } },
	{ "verify mx, verified, no name matches: name-mismatch",
	  false, 0, 0, "verify mx=*.example.net", ENF, TLS13, true, 0,
	  { "mail.other.net", "example.net", "a.mx.example.net", NULL }, 3,
	  3, 1, { { NAMEMM, true, LOG_ERR } } },
	{ "verify mx, verified, no names at all: name-mismatch",
	  false, 0, 0, "verify mx=mx.example.net", MON, TLS13, true, 0,
	  NO_NAMES, 3, 1, { { NAMEMM, false, LOG_WARNING } } },
	{ "verify mx, verified, second name matches: nothing",
	  false, 0, 0, "verify mx=*.example.net", ENF, TLS13, true, 0,
	  { "mail.other.net", "MX1.Example.NET", NULL, NULL }, 2,
	  3, 0, { { 0, 0, 0 } } },
	{ "verify mx list, second pattern matches: nothing",
	  false, 0, 0, "verify mx=mx1.example.net,*.mail.example.org", ENF,
	  TLS13, true, 0, { "in.mail.example.org", NULL, NULL, NULL }, 1,
	  3, 0, { { 0, 0, 0 } } },
	{ "verify mx, certificate wildcard covers it: nothing",
	  false, 0, 0, "verify mx=mx1.example.net", ENF, TLS13, true, 0,
	  { "*.example.net", NULL, NULL, NULL }, 1, 3, 0, { { 0, 0, 0 } } },
	{ "encrypt, unverified: nothing",
	  false, 0, 0, "encrypt", ENF, TLS13, false, 0, NO_NAMES, 3,
	  0, { { 0, 0, 0 } } },
	{ "none, unverified, pinned same: nothing",
	  true, TLS13, SPKI_A, "none", ENF, TLS13, false, SPKI_A, NO_NAMES, 3,
	  0, { { 0, 0, 0 } } },
	{ "all three, enforce",
	  true, TLS13, SPKI_A, "verify", ENF, TLS12, false, SPKI_B, NO_NAMES,
	  3, 3, { { VERLOW, false, LOG_WARNING }, { KEYCHG, false, LOG_INFO },
	  { VFAIL, true, LOG_ERR } } },
	{ "all three, max 2",
	  true, TLS13, SPKI_A, "verify", ENF, TLS12, false, SPKI_B, NO_NAMES,
	  2, 2, { { VERLOW, false, LOG_WARNING }, { KEYCHG, false, LOG_INFO } } },
	{ "all three, max 1",
	  true, TLS13, SPKI_A, "verify", ENF, TLS12, false, SPKI_B, NO_NAMES,
	  1, 1, { { VERLOW, false, LOG_WARNING } } },
	{ "all three, max 0",
	  true, TLS13, SPKI_A, "verify", ENF, TLS12, false, SPKI_B, NO_NAMES,
	  0, 0, { { 0, 0, 0 } } },
	{ "key changed and name mismatch, monitor",
	  true, TLS13, SPKI_A, "verify mx=mx.example.net", MON, TLS13, true,
	  SPKI_B, { "mx.other.net", NULL, NULL, NULL }, 1, 3, 2,
	  { { KEYCHG, false, LOG_INFO }, { NAMEMM, false, LOG_WARNING } } },
};

static void test_after_handshake_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < NELEM(hs_cases); i++) {
		const struct hs_case *t = &hs_cases[i];
		struct policy_rule rule;
		struct policy_ctx ctx;
		struct policy_tls tls;
		struct policy_out out[4];
		uint8_t spki[32];
		size_t n;

		memset(&ctx, 0, sizeof(ctx));
		ctx.mode = t->global;
		ctx.pinned = t->pinned;
		ctx.pin_version = t->pin_version;
		ctx.pin_has_spki = t->pin_spki != 0;
		memset(ctx.pin_spki, t->pin_spki, sizeof(ctx.pin_spki));
		if (t->rule != NULL) {
			rule_from(t->rule, &rule);
			ctx.rule = &rule;
		}
		/* A different key differs in its last byte only. */
		memset(spki, t->pin_spki, sizeof(spki));
		if (t->spki != t->pin_spki)
			spki[31] = t->spki;
		tls = (struct policy_tls){ .tls = true, .version = t->version,
		    .verified = t->verified, .spki = t->spki ? spki : NULL,
		    .names = t->names, .nnames = t->nnames };
		memset(out, 0x5a, sizeof(out));
		n = policy_after_handshake(&ctx, &tls, out, t->max);
		EQ(t->name, n, t->n);
		for (size_t j = 0; j < n && j < t->n; j++) {
			char name[160];
			enum policy_mode mode = ctx.rule != NULL &&
			    ctx.rule->has_mode ? ctx.rule->mode : ctx.mode;

			snprintf(name, sizeof(name), "%s: out[%zu]", t->name, j);
			EQ(name, out[j].sig, t->out[j].sig);
			EQ(name, out[j].alert, true);
			EQ(name, out[j].block, t->out[j].block);
			EQ(name, out[j].prio, t->out[j].prio);
			EQ(name, out[j].mode, mode);
		}
		/* Nothing written past max. */
		for (size_t j = n; j < NELEM(out); j++)
			EQ(t->name, out[j].sig, 0x5a5a5a5a);
	}
}

/* ---- policy_for_rcpt ----------------------------------------------------- */

#define DOWNGRADE POLICY_SIG_DOMAIN_DOWNGRADE
#define SIGNONE POLICY_SIG_NONE

struct rcpt_case {
	const char *name;
	bool pinned;
	const char *rule;
	enum policy_mode global;
	bool tls;
	bool verified;
	const char *names[MAXNAMES];
	size_t nnames;
	enum policy_signal sig;
	bool block;
	int prio;
};

static const struct rcpt_case rcpt_cases[] = {
	{ "no rule, not pinned, no TLS: nothing",
	  false, NULL, ENF, false, false, NO_NAMES, SIGNONE, false, 0 },
	{ "no rule, not pinned, TLS: nothing",
	  false, NULL, ENF, true, false, NO_NAMES, SIGNONE, false, 0 },
	{ "pinned, no TLS, enforce: domain-downgrade, blocked",
	  true, NULL, ENF, false, false, NO_NAMES, DOWNGRADE, true, LOG_ERR },
	{ "pinned, no TLS, monitor: domain-downgrade, alert only",
	  true, NULL, MON, false, false, NO_NAMES, DOWNGRADE, false,
	  LOG_WARNING },
	{ "pinned, TLS unverified: nothing",
	  true, NULL, ENF, true, false, NO_NAMES, SIGNONE, false, 0 },
	{ "encrypt, TLS: nothing",
	  false, "encrypt", ENF, true, false, NO_NAMES, SIGNONE, false, 0 },
	{ "encrypt, no TLS, not pinned, enforce: blocked",
	  false, "encrypt", ENF, false, false, NO_NAMES, DOWNGRADE, true,
	  LOG_ERR },
	{ "encrypt mode=monitor, pinned, no TLS, global enforce",
	  true, "encrypt mode=monitor", ENF, false, false, NO_NAMES, DOWNGRADE,
	  false, LOG_WARNING },
	{ "encrypt mode=enforce, no TLS, global monitor",
	  false, "encrypt mode=enforce", MON, false, false, NO_NAMES, DOWNGRADE,
	  true, LOG_ERR },
	{ "verify, TLS unverified, enforce: verify-failed, blocked",
	  false, "verify", ENF, true, false, NO_NAMES, VFAIL, true, LOG_ERR },
	{ "verify, TLS unverified, monitor",
	  true, "verify", MON, true, false, NO_NAMES, VFAIL, false,
	  LOG_WARNING },
	{ "verify, no TLS: domain-downgrade",
	  false, "verify", ENF, false, false, NO_NAMES, DOWNGRADE, true,
	  LOG_ERR },
	{ "verify, TLS verified, no mx: nothing",
	  false, "verify", ENF, true, true, NO_NAMES, SIGNONE, false, 0 },
	{ "verify mx, verified, mismatch: name-mismatch",
	  false, "verify mx=*.example.net", ENF, true, true,
	  { "mx.example.org", NULL, NULL, NULL }, 1, NAMEMM, true, LOG_ERR },
	{ "verify mx, verified, match: nothing",
	  false, "verify mx=*.example.net", ENF, true, true,
	  { "mx.example.org", "mx2.example.net", NULL, NULL }, 2, SIGNONE,
	  false, 0 },
	{ "none, pinned, no TLS: nothing",
	  true, "none", ENF, false, false, NO_NAMES, SIGNONE, false, 0 },
	{ "none mode=enforce, pinned, no TLS: nothing",
	  true, "none mode=enforce", ENF, false, false, NO_NAMES, SIGNONE,
	  false, 0 },
};

static void test_for_rcpt_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < NELEM(rcpt_cases); i++) {
		const struct rcpt_case *t = &rcpt_cases[i];
		struct policy_rule rule;
		struct policy_ctx ctx;
		struct policy_tls tls;
		struct policy_out out;

		memset(&ctx, 0, sizeof(ctx));
		ctx.mode = t->global;
		ctx.pinned = t->pinned;
		if (t->rule != NULL) {
			rule_from(t->rule, &rule);
			ctx.rule = &rule;
		}
		tls = (struct policy_tls){ .tls = t->tls,
		    .version = t->tls ? TLS13 : 0, .verified = t->verified,
		    .names = t->names, .nnames = t->nnames };
		memset(&out, 0x5a, sizeof(out));
		policy_for_rcpt(&ctx, &tls, &out);
		EQ(t->name, out.sig, t->sig);
		EQ(t->name, out.alert, t->sig != SIGNONE);
		EQ(t->name, out.block, t->block);
		if (t->sig != SIGNONE) {
			EQ(t->name, out.prio, t->prio);
			EQ(t->name, out.mode, ctx.rule != NULL &&
			    ctx.rule->has_mode ? ctx.rule->mode : ctx.mode);
		}
	}
}

/* ---- policy_mx_match ----------------------------------------------------- */

struct mx_case {
	const char *pattern;
	const char *name;
	bool want;
};

static const struct mx_case mx_cases[] = {
	{ "*.example.net", "mx.example.net", true },
	{ "*.example.net", "a.mx.example.net", false },  /* one label only */
	{ "*.example.net", "example.net", false },
	{ "*.example.net", ".example.net", false },
	{ "*.example.net", "mxexample.net", false },
	{ "*.example.net", "mx.example.net.evil", false },
	{ "*.example.net", "mx.example.org", false },
	{ "mx.example.net", "mx.example.net", true },
	{ "mx.example.net", "mx2.example.net", false },
	{ "mx.example.net", "example.net", false },
	{ "mx.example.net", "a.mx.example.net", false },
	{ "mx.example.net", "*.example.net", true },     /* cert wildcard */
	{ "a.mx.example.net", "*.example.net", false },
	{ "example.net", "*.example.net", false },
	{ "mx.example.org", "*.example.net", false },
	{ "*.example.net", "*.example.net", true },
	{ "*.mx.example.net", "*.example.net", false },
	{ "*.example.net", "*.mx.example.net", false },
	{ "*.example.net", "*.net", false },
	{ "MX.Example.NET", "mx.example.net", true },
	{ "mx.example.net", "MX.EXAMPLE.NET", true },
	{ "*.EXAMPLE.net", "Mx.Example.Net", true },
	{ "Mx.Example.Net", "*.EXAMPLE.NET", true },
	{ "*.example.net", "*.EXAMPLE.NET", true },
	{ "*.example.net", "", false },
	{ "mx.example.net", "", false },
	{ "", "mx.example.net", false },
	{ "", "*.example.net", false },
	{ "", "*", false },
	{ "*", "", false },
};

static void test_mx_match_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < NELEM(mx_cases); i++) {
		char name[160];

		snprintf(name, sizeof(name), "pattern \"%s\" name \"%s\"",
		    mx_cases[i].pattern, mx_cases[i].name);
		EQ(name, policy_mx_match(mx_cases[i].pattern, mx_cases[i].name),
		    mx_cases[i].want);
	}
}

/*
 * BUG (proxy/policy.c policy_mx_match): an empty pattern matches an empty
 * name (the strcasecmp() equality test comes first and accepts "" == "").
 * Neither is a host name; nothing should satisfy an empty pattern. Not
 * reachable today (the parser refuses empty patterns and tls.c drops empty
 * certificate names), so low severity, but the predicate should not rely on
 * both of its callers for that.
 */
static void test_bug_mx_match_empty(void **state)
{
	(void)state;
	if (policy_mx_match("", ""))
		print_error("BUG: policy_mx_match(\"\", \"\") is true\n");
	assert_false(policy_mx_match("", ""));
}

/* ---- names --------------------------------------------------------------- */

static void test_signal_names(void **state)
{
	static const struct {
		enum policy_signal sig;
		const char *str;
		const char *tlsrpt;
	} sigs[] = {
		{ POLICY_SIG_NONE, "none", NULL },
		{ MISSING, "starttls-missing", "starttls-not-supported" },
		{ MASKED, "starttls-masked", "starttls-not-supported" },
		{ REFUSED, "starttls-refused", "starttls-not-supported" },
		{ HSFAIL, "handshake-failed", "validation-failure" },
		{ VERLOW, "tls-version-lowered", NULL },
		{ KEYCHG, "key-changed", NULL },
		{ VFAIL, "verify-failed", "certificate-not-trusted" },
		{ NAMEMM, "name-mismatch", "certificate-host-mismatch" },
		{ DOWNGRADE, "domain-downgrade", "starttls-not-supported" },
	};

	(void)state;
	/* Every signal has a row: the last enumerator is the last row. */
	assert_int_equal(sigs[NELEM(sigs) - 1].sig,
	    POLICY_SIG_DOMAIN_DOWNGRADE);
	for (size_t i = 0; i < NELEM(sigs); i++) {
		EQ(sigs[i].str, sigs[i].sig, i);
		STREQ(sigs[i].str, policy_signal_str(sigs[i].sig), sigs[i].str);
		STREQ(sigs[i].str, policy_tlsrpt(sigs[i].sig), sigs[i].tlsrpt);
	}
	STREQ("out of range", policy_signal_str((enum policy_signal)99),
	    "unknown");
	STREQ("out of range", policy_tlsrpt((enum policy_signal)99), NULL);

	assert_string_equal(policy_mode_str(POLICY_MONITOR), "monitor");
	assert_string_equal(policy_mode_str(POLICY_ENFORCE), "enforce");
	assert_string_equal(policy_level_str(POLICY_LEVEL_UNSET), "unset");
	assert_string_equal(policy_level_str(POLICY_LEVEL_NONE), "none");
	assert_string_equal(policy_level_str(POLICY_LEVEL_ENCRYPT), "encrypt");
	assert_string_equal(policy_level_str(POLICY_LEVEL_VERIFY), "verify");
	assert_string_equal(policy_level_str((enum policy_level)99), "unknown");
}

static int teardown(void **state)
{
	(void)state;
	if (tmp_path != NULL) {
		unlink(tmp_path);
		free(tmp_path);
		tmp_path = NULL;
	}
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good_table),
		cmocka_unit_test(test_parse_line_1023),
		cmocka_unit_test(test_parse_many_rules),
		cmocka_unit_test(test_parse_bad_table),
		cmocka_unit_test(test_parse_line_too_long),
		cmocka_unit_test(test_parse_error_truncated),
		cmocka_unit_test_teardown(test_load, teardown),
		cmocka_unit_test(test_bug_load_directory_is_empty_policy),
		cmocka_unit_test(test_bug_mode_given_twice),
		cmocka_unit_test(test_for_addr_table),
		cmocka_unit_test(test_for_addr_no_match),
		cmocka_unit_test(test_for_domain_table),
		cmocka_unit_test(test_tls_unavailable_table),
		cmocka_unit_test(test_tls_unavailable_generated),
		cmocka_unit_test(test_after_handshake_table),
		cmocka_unit_test(test_for_rcpt_table),
		cmocka_unit_test(test_mx_match_table),
		cmocka_unit_test(test_bug_mx_match_empty),
		cmocka_unit_test(test_signal_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
