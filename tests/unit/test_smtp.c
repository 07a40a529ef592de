/*
 * Unit tests for proxy/smtp.c: tables of good, bad and boundary inputs, and
 * properties (every prefix, every split point, exhaustive short inputs)
 * that tie the incremental parsers to one-shot answers.
 */

#include "unit.h"

#include "starttlsd/smtp.h"

/* A literal and its length, so rows can hold NUL bytes. */

#define ML 512  /* default max_line */
#define MN 100  /* default max_lines */

static void expect_bytes(const char *name, const char *got, size_t got_len,
    const char *want, size_t want_len)
{
	char b1[512], b2[512];

	if (got_len == want_len && memcmp(got, want, want_len) == 0)
		return;
	print_error("%s:\n  got  \"%s\"\n  want \"%s\"\n", name,
	    esc(got, got_len, b1, sizeof(b1)),
	    esc(want, want_len, b2, sizeof(b2)));
	fail();
}

/* ---- smtp_reply_parse ------------------------------------------------------ */

struct reply_case {
	const char *name;
	const char *in;
	size_t len;
	size_t max_line;
	size_t max_lines;
	enum smtp_parse want;
	int code;
	size_t at;     /* OK: reply length; ERROR: shortest prefix that fails */
	size_t nlines;
};

static const struct reply_case reply_cases[] = {
	{ "single CRLF", S("250 ok\r\n"), ML, MN, SMTP_PARSE_OK, 250, 8, 1 },
	{ "single LF", S("250 ok\n"), ML, MN, SMTP_PARSE_OK, 250, 7, 1 },
	{ "bare code CRLF", S("250\r\n"), ML, MN, SMTP_PARSE_OK, 250, 5, 1 },
	{ "bare code LF", S("250\n"), ML, MN, SMTP_PARSE_OK, 250, 4, 1 },
	{ "space, no text", S("250 \r\n"), ML, MN, SMTP_PARSE_OK, 250, 6, 1 },
	{ "three lines", S("250-a\r\n250-b\r\n250 c\r\n"), ML, MN,
	  SMTP_PARSE_OK, 250, 21, 3 },
	{ "mixed line ends", S("250-a\n250-b\r\n250 c\n"), ML, MN,
	  SMTP_PARSE_OK, 250, 19, 3 },
	{ "empty continuation", S("250-\r\n250 x\r\n"), ML, MN,
	  SMTP_PARSE_OK, 250, 13, 2 },
	{ "bare code last line", S("250-a\r\n250\r\n"), ML, MN,
	  SMTP_PARSE_OK, 250, 12, 2 },
	{ "421 two lines", S("421-a\r\n421 b\r\n"), ML, MN,
	  SMTP_PARSE_OK, 421, 14, 2 },
	{ "next reply ignored", S("250 ok\r\n354 go\r\n"), ML, MN,
	  SMTP_PARSE_OK, 250, 8, 1 },
	{ "trailing junk ignored", S("220 hi\r\nxx"), ML, MN,
	  SMTP_PARSE_OK, 220, 8, 1 },
	{ "lowest code", S("100 x\n"), ML, MN, SMTP_PARSE_OK, 100, 6, 1 },
	{ "highest code", S("599 x\n"), ML, MN, SMTP_PARSE_OK, 599, 6, 1 },
	{ "8-bit and NUL text", S("250 \xff\x00\x80z\r\n"), ML, MN,
	  SMTP_PARSE_OK, 250, 10, 1 },
	{ "CR inside text", S("250 a\rb\r\n"), ML, MN, SMTP_PARSE_OK, 250, 9, 1 },
	{ "line of exactly max_line", S("250 ok\r\n"), 8, MN,
	  SMTP_PARSE_OK, 250, 8, 1 },
	{ "exactly max_lines", S("250-a\n250-b\n250 c\n"), ML, 3,
	  SMTP_PARSE_OK, 250, 18, 3 },
	{ "max_lines 1", S("250 x\n"), ML, 1, SMTP_PARSE_OK, 250, 6, 1 },

	{ "empty", S(""), ML, MN, SMTP_PARSE_NEED_MORE, 0, 0, 0 },
	{ "one digit", S("2"), ML, MN, SMTP_PARSE_NEED_MORE, 0, 0, 0 },
	{ "code only", S("250"), ML, MN, SMTP_PARSE_NEED_MORE, 0, 0, 0 },
	{ "no line end", S("250 ok"), ML, MN, SMTP_PARSE_NEED_MORE, 0, 0, 0 },
	{ "CR, no LF yet", S("250 ok\r"), ML, MN, SMTP_PARSE_NEED_MORE, 0, 0, 0 },
	{ "code CR", S("250\r"), ML, MN, SMTP_PARSE_NEED_MORE, 0, 0, 0 },
	{ "continuation only", S("250-a\r\n"), ML, MN,
	  SMTP_PARSE_NEED_MORE, 0, 0, 0 },
	{ "second line started", S("250-a\r\n250-"), ML, MN,
	  SMTP_PARSE_NEED_MORE, 0, 0, 0 },
	{ "max_line-1 bytes, no LF", S("250 ok\r"), 8, MN,
	  SMTP_PARSE_NEED_MORE, 0, 0, 0 },
	{ "last of max_lines incomplete", S("250-a\n250-b\n250 c"), ML, 3,
	  SMTP_PARSE_NEED_MORE, 0, 0, 0 },
	{ "empty, max_lines 0", S(""), ML, 0, SMTP_PARSE_NEED_MORE, 0, 0, 0 },
	{ "empty, max_line 0", S(""), 0, MN, SMTP_PARSE_NEED_MORE, 0, 0, 0 },

	{ "letter first", S("x"), ML, MN, SMTP_PARSE_ERROR, 0, 1, 0 },
	{ "code 6xx", S("600 x\r\n"), ML, MN, SMTP_PARSE_ERROR, 0, 1, 0 },
	{ "code 0xx", S("099 x\r\n"), ML, MN, SMTP_PARSE_ERROR, 0, 1, 0 },
	{ "letter second", S("2x0 x\r\n"), ML, MN, SMTP_PARSE_ERROR, 0, 2, 0 },
	{ "letter third", S("25x x\r\n"), ML, MN, SMTP_PARSE_ERROR, 0, 3, 0 },
	{ "LF inside code", S("25\n"), ML, MN, SMTP_PARSE_ERROR, 0, 3, 0 },
	{ "empty line", S("\r\n"), ML, MN, SMTP_PARSE_ERROR, 0, 1, 0 },
	{ "bare LF", S("\n"), ML, MN, SMTP_PARSE_ERROR, 0, 1, 0 },
	{ "8-bit first", S("\xff"), ML, MN, SMTP_PARSE_ERROR, 0, 1, 0 },
	{ "NUL first", S("\0"), ML, MN, SMTP_PARSE_ERROR, 0, 1, 0 },
	{ "four digits", S("2500 x\r\n"), ML, MN, SMTP_PARSE_ERROR, 0, 4, 0 },
	{ "tab after code", S("250\tx\r\n"), ML, MN, SMTP_PARSE_ERROR, 0, 4, 0 },
	{ "NUL after code", S("250\0x\r\n"), ML, MN, SMTP_PARSE_ERROR, 0, 4, 0 },
	{ "CR after code, no LF", S("250\rx\n"), ML, MN,
	  SMTP_PARSE_ERROR, 0, 5, 0 },
	{ "code changes", S("250-a\n251 b\n"), ML, MN, SMTP_PARSE_ERROR, 0, 9, 0 },
	{ "class changes", S("250-a\n350 b\n"), ML, MN,
	  SMTP_PARSE_ERROR, 0, 7, 0 },
	{ "junk second line", S("250-a\nxyz\n"), ML, MN,
	  SMTP_PARSE_ERROR, 0, 7, 0 },
	{ "max_line+1 with LF", S("250 okk\n"), 7, MN, SMTP_PARSE_ERROR, 0, 7, 0 },
	{ "max_line+1 with CRLF", S("250 ok\r\n"), 7, MN,
	  SMTP_PARSE_ERROR, 0, 7, 0 },
	{ "second line too long", S("250-a\n250 long\n"), 6, MN,
	  SMTP_PARSE_ERROR, 0, 12, 0 },
	{ "max_lines+1", S("250-a\n250-b\n250 c\n"), ML, 2,
	  SMTP_PARSE_ERROR, 0, 10, 0 },
	{ "continuation with max_lines 1", S("250-a\n250 b\n"), ML, 1,
	  SMTP_PARSE_ERROR, 0, 4, 0 },
	{ "max_lines 0", S("250 x\n"), ML, 0, SMTP_PARSE_ERROR, 0, 1, 0 },
	{ "max_line 0", S("250 x\n"), 0, MN, SMTP_PARSE_ERROR, 0, 1, 0 },
	{ "max_line too small for code", S("250\n"), 3, MN,
	  SMTP_PARSE_ERROR, 0, 3, 0 },
};

/* out must be left alone unless the result is OK. */
static const struct smtp_reply reply_canary = { -7, 77, 777 };

static void check_reply(const struct reply_case *c, size_t len,
    enum smtp_parse want)
{
	struct smtp_reply r = reply_canary;
	enum smtp_parse got;
	char name[128];

	snprintf(name, sizeof(name), "%s (prefix %zu)", c->name, len);
	got = smtp_reply_parse(c->in, len, c->max_line, c->max_lines, &r);
	EQ(name, got, want);
	if (want != SMTP_PARSE_OK) {
		EQ(name, r.code, reply_canary.code);
		EQ(name, r.len, reply_canary.len);
		return;
	}
	EQ(name, r.code, c->code);
	EQ(name, r.len, c->at);
	EQ(name, r.nlines, c->nlines);
}

static void test_reply_parse_table(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(reply_cases); i++)
		check_reply(&reply_cases[i], reply_cases[i].len,
		    reply_cases[i].want);
}

/* Errors show at the first byte that proves them; results never flip. */
static void test_reply_parse_prefixes(void **state)
{
	size_t i, k;

	(void)state;
	for (i = 0; i < NELEM(reply_cases); i++) {
		const struct reply_case *c = &reply_cases[i];

		for (k = 0; k <= c->len; k++) {
			bool final = c->want != SMTP_PARSE_NEED_MORE &&
			    k >= c->at;

			check_reply(c, k, final ? c->want : SMTP_PARSE_NEED_MORE);
		}
	}
}

/*
 * Every string of up to 7 bytes over a reply-ish alphabet, under tight
 * limits: once a prefix is OK or ERROR, every longer input says the same
 * (so the parser never waits on what it could already see), and an OK reply
 * re-parses alone to itself.
 */
static void test_reply_parse_exhaustive(void **state)
{
	static const char alpha[] = "25- \r\nx";
	const size_t na = sizeof(alpha) - 1, maxlen = 7;
	char s[8];
	size_t len, k, idx[8];

	(void)state;
	for (len = 0; len <= maxlen; len++) {
		memset(idx, 0, sizeof(idx));
		for (;;) {
			struct smtp_reply first = { 0 }, r;
			enum smtp_parse seen = SMTP_PARSE_NEED_MORE, got;

			for (k = 0; k < len; k++)
				s[k] = alpha[idx[k]];
			for (k = 0; k <= len; k++) {
				got = smtp_reply_parse(s, k, 6, 2, &r);
				if (seen != SMTP_PARSE_NEED_MORE)
					EQ("exhaustive flip", got, seen);
				if (got == SMTP_PARSE_OK && seen == SMTP_PARSE_OK)
					EQ("exhaustive len", r.len, first.len);
				if (got == SMTP_PARSE_OK && seen != SMTP_PARSE_OK) {
					first = r;
					assert_true(r.len == k);
					assert_true(r.nlines >= 1 && r.nlines <= 2);
					assert_true(s[k - 1] == '\n');
				}
				seen = got;
			}
			for (k = 0; k < len && ++idx[k] == na; k++)
				idx[k] = 0;
			if (k == len)
				break;
		}
	}
}

/* ---- smtp_reply_fmt -------------------------------------------------------- */

struct fmt_case {
	const char *name;
	int code;
	const char *enh;
	const char *text;
	size_t cap;
	const char *want;  /* NULL: -1 */
};

static const struct fmt_case fmt_cases[] = {
	{ "with enh", 250, "2.0.0", "OK", 64, "250 2.0.0 OK\r\n" },
	{ "no enh", 421, NULL, "bye", 64, "421 bye\r\n" },
	{ "empty enh is none", 250, "", "OK", 64, "250 OK\r\n" },
	{ "empty text", 250, NULL, "", 64, "250 \r\n" },
	{ "NULL text", 250, NULL, NULL, 64, "250 \r\n" },
	{ "4.7.0", 451, "4.7.0", "TLS required", 64,
	  "451 4.7.0 TLS required\r\n" },
	{ "8-bit text", 554, NULL, "\xc3\xa9\xff", 64, "554 \xc3\xa9\xff\r\n" },
	{ "code 100", 100, NULL, "x", 64, "100 x\r\n" },
	{ "code 599", 599, NULL, "x", 64, "599 x\r\n" },
	{ "exact cap", 250, NULL, "OK", 9, "250 OK\r\n" },
	{ "cap one short", 250, NULL, "OK", 8, NULL },
	{ "cap 1", 250, NULL, "OK", 1, NULL },
	{ "code 99", 99, NULL, "x", 64, NULL },
	{ "code 600", 600, NULL, "x", 64, NULL },
	{ "code 0", 0, NULL, "x", 64, NULL },
	{ "code -250", -250, NULL, "x", 64, NULL },
	{ "CRLF in text", 250, NULL, "OK\r\n250 injected", 64, NULL },
	{ "LF in text", 250, NULL, "OK\n", 64, NULL },
	{ "CR in enh", 250, "2.0.0\r", "OK", 64, NULL },
};

static void test_reply_fmt_table(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(fmt_cases); i++) {
		const struct fmt_case *c = &fmt_cases[i];
		char out[80];
		ssize_t n;

		memset(out, 'Z', sizeof(out));
		n = smtp_reply_fmt(out, c->cap, c->code, c->enh, c->text);
		if (c->want == NULL) {
			EQ(c->name, n, -1);
			EQ(c->name, out[0], '\0');
		} else {
			EQ(c->name, n, strlen(c->want));
			expect_bytes(c->name, out, (size_t)n, c->want,
			    strlen(c->want));
			EQ(c->name, out[n], '\0');
		}
		/* Nothing at or past cap is touched. */
		EQ(c->name, out[c->cap], 'Z');
	}
}

static void test_reply_fmt_cap_zero(void **state)
{
	char out[4] = "abc";

	(void)state;
	assert_int_equal(smtp_reply_fmt(out, 0, 250, NULL, "OK"), -1);
	assert_string_equal(out, "abc");
}

/* ---- smtp_line_len ---------------------------------------------------------- */

static void test_line_len(void **state)
{
	static const struct {
		const char *in;
		size_t len;
		size_t want;
	} cases[] = {
		{ S(""), 0 },
		{ S("abc"), 0 },
		{ S("\n"), 1 },
		{ S("ab\ncd\n"), 3 },
		{ S("a\0b\r\n"), 5 },
		{ S("\xff\n"), 2 },
		{ "ab\n", 2, 0 },  /* the LF is past len */
	};
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(cases); i++)
		EQ(cases[i].in, smtp_line_len(cases[i].in, cases[i].len),
		    cases[i].want);
}

/* ---- smtp_cmd_parse --------------------------------------------------------- */

struct cmd_case {
	const char *in;
	size_t len;
	int rc;
	enum smtp_verb verb;
	const char *arg;
	size_t arg_len;
	uint64_t size;
	bool last;
};

#define A(x) (x), (sizeof(x) - 1)

static const struct cmd_case cmd_cases[] = {
	{ S("MAIL FROM:<a>\r\n"), 0, SMTP_V_MAIL, A("FROM:<a>"), 0, false },
	{ S("mail from:<a>\n"), 0, SMTP_V_MAIL, A("from:<a>"), 0, false },
	{ S("MAIL FROM:<a>"), 0, SMTP_V_MAIL, A("FROM:<a>"), 0, false },
	{ S("MaIl   FROM:<a>  \r\n"), 0, SMTP_V_MAIL, A("FROM:<a>  "), 0, false },
	{ S("RCPT TO:<b@example.org>\r\n"), 0, SMTP_V_RCPT,
	  A("TO:<b@example.org>"), 0, false },
	{ S("EHLO client.example\r\n"), 0, SMTP_V_EHLO, A("client.example"),
	  0, false },
	{ S("helo x\r\n"), 0, SMTP_V_HELO, A("x"), 0, false },
	{ S("DATA\r\n"), 0, SMTP_V_DATA, A(""), 0, false },
	{ S("RSET\r\n"), 0, SMTP_V_RSET, A(""), 0, false },
	{ S("NOOP\r\n"), 0, SMTP_V_NOOP, A(""), 0, false },
	{ S("QUIT\r\n"), 0, SMTP_V_QUIT, A(""), 0, false },
	{ S("quit"), 0, SMTP_V_QUIT, A(""), 0, false },
	{ S("VRFY x\r\n"), 0, SMTP_V_VRFY, A("x"), 0, false },
	{ S("EXPN x\r\n"), 0, SMTP_V_EXPN, A("x"), 0, false },
	{ S("HELP\r\n"), 0, SMTP_V_HELP, A(""), 0, false },
	{ S("StartTLS\r\n"), 0, SMTP_V_STARTTLS, A(""), 0, false },
	{ S("AUTH PLAIN AGIAYg==\r\n"), 0, SMTP_V_AUTH, A("PLAIN AGIAYg=="),
	  0, false },
	{ S("QUITX\r\n"), 0, SMTP_V_UNKNOWN, A(""), 0, false },
	{ S("QUI\r\n"), 0, SMTP_V_UNKNOWN, A(""), 0, false },
	{ S("STARTTLSX\r\n"), 0, SMTP_V_UNKNOWN, A(""), 0, false },
	{ S("MAIL\tFROM:<a>\r\n"), 0, SMTP_V_UNKNOWN, A(""), 0, false },
	{ S(" QUIT\r\n"), 0, SMTP_V_UNKNOWN, A("QUIT"), 0, false },
	{ S(""), 0, SMTP_V_UNKNOWN, A(""), 0, false },
	{ S("\r\n"), 0, SMTP_V_UNKNOWN, A(""), 0, false },
	{ S("\n"), 0, SMTP_V_UNKNOWN, A(""), 0, false },
	/* A CR is a line end only before LF. */
	{ S("QUIT\r"), 0, SMTP_V_UNKNOWN, A(""), 0, false },
	{ S("NOOP a\rb\r\n"), 0, SMTP_V_NOOP, A("a\rb"), 0, false },
	/* Only the first line is parsed. */
	{ S("DATA\r\nQUIT\r\n"), 0, SMTP_V_DATA, A(""), 0, false },
	{ S("NOOP x\nBDAT y\n"), 0, SMTP_V_NOOP, A("x"), 0, false },
	{ S("NOOP \xff\x00x\r\n"), 0, SMTP_V_NOOP, A("\xff\x00x"), 0, false },
	{ S("EHLO\0\r\n"), 0, SMTP_V_UNKNOWN, A(""), 0, false },
	{ S("\xc3\x89HLO x\r\n"), 0, SMTP_V_UNKNOWN, A("x"), 0, false },
	{ S("EHL\xcf\r\n"), 0, SMTP_V_UNKNOWN, A(""), 0, false },

	{ S("BDAT 100\r\n"), 0, SMTP_V_BDAT, A("100"), 100, false },
	{ S("BDAT 100 LAST\r\n"), 0, SMTP_V_BDAT, A("100 LAST"), 100, true },
	{ S("bdat 100 last\n"), 0, SMTP_V_BDAT, A("100 last"), 100, true },
	{ S("BDAT 0 LAST\r\n"), 0, SMTP_V_BDAT, A("0 LAST"), 0, true },
	{ S("BDAT 0"), 0, SMTP_V_BDAT, A("0"), 0, false },
	{ S("BDAT   7   LaSt  \r\n"), 0, SMTP_V_BDAT, A("7   LaSt  "), 7, true },
	{ S("BDAT 100 \r\n"), 0, SMTP_V_BDAT, A("100 "), 100, false },
	{ S("BDAT 18446744073709551615\r\n"), 0, SMTP_V_BDAT,
	  A("18446744073709551615"), UINT64_MAX, false },
	{ S("BDAT 00000000000000000001\r\n"), 0, SMTP_V_BDAT,
	  A("00000000000000000001"), 1, false },
	{ S("BDAT 000000000000000000001\r\n"), -1, SMTP_V_BDAT,
	  A("000000000000000000001"), 0, false },
	{ S("BDAT 18446744073709551616\r\n"), -1, SMTP_V_BDAT,
	  A("18446744073709551616"), 0, false },
	{ S("BDAT 99999999999999999999 LAST\r\n"), -1, SMTP_V_BDAT,
	  A("99999999999999999999 LAST"), 0, false },
	{ S("BDAT\r\n"), -1, SMTP_V_BDAT, A(""), 0, false },
	{ S("BDAT"), -1, SMTP_V_BDAT, A(""), 0, false },
	{ S("BDAT \r\n"), -1, SMTP_V_BDAT, A(""), 0, false },
	{ S("BDAT x\r\n"), -1, SMTP_V_BDAT, A("x"), 0, false },
	{ S("BDAT -1\r\n"), -1, SMTP_V_BDAT, A("-1"), 0, false },
	{ S("BDAT +1\r\n"), -1, SMTP_V_BDAT, A("+1"), 0, false },
	{ S("BDAT 1x\r\n"), -1, SMTP_V_BDAT, A("1x"), 0, false },
	{ S("BDAT 1\0\r\n"), -1, SMTP_V_BDAT, A("1\0"), 0, false },
	{ S("BDAT 100 FOO\r\n"), -1, SMTP_V_BDAT, A("100 FOO"), 0, false },
	{ S("BDAT 100 LAS\r\n"), -1, SMTP_V_BDAT, A("100 LAS"), 0, false },
	{ S("BDAT 100 LASTX\r\n"), -1, SMTP_V_BDAT, A("100 LASTX"), 0, false },
	{ S("BDAT 100 LAST X\r\n"), -1, SMTP_V_BDAT, A("100 LAST X"), 0, false },
	{ S("BDAT 100 LAST LAST\r\n"), -1, SMTP_V_BDAT, A("100 LAST LAST"),
	  0, false },
	{ S("BDAT 100\tLAST\r\n"), -1, SMTP_V_BDAT, A("100\tLAST"), 0, false },
	{ S("BDAT\t100\r\n"), 0, SMTP_V_UNKNOWN, A(""), 0, false },
	{ S("BDAT 100 \tLAST\r\n"), -1, SMTP_V_BDAT, A("100 \tLAST"), 0, false },
	{ S("BDAT \t100\r\n"), -1, SMTP_V_BDAT, A("\t100"), 0, false },
	{ S("MAIL \tFROM:<a>\r\n"), 0, SMTP_V_MAIL, A("\tFROM:<a>"), 0, false },
};

static void test_cmd_parse_table(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(cmd_cases); i++) {
		const struct cmd_case *c = &cmd_cases[i];
		struct smtp_cmd cmd;
		char name[160], b[128];

		snprintf(name, sizeof(name), "cmd \"%s\"",
		    esc(c->in, c->len, b, sizeof(b)));
		memset(&cmd, 0x5a, sizeof(cmd));
		EQ(name, smtp_cmd_parse(c->in, c->len, &cmd), c->rc);
		EQ(name, cmd.verb, c->verb);
		EQ(name, cmd.bdat_size, c->size);
		EQ(name, cmd.bdat_last, c->last);
		expect_bytes(name, cmd.arg, cmd.arg_len, c->arg, c->arg_len);
		/* arg points into the line, not at a copy. */
		assert_true(cmd.arg >= c->in && cmd.arg <= c->in + c->len);
	}
}

/* ---- smtp_verb_str ------------------------------------------------------- */

static void test_verb_str(void **state)
{
	static const struct {
		enum smtp_verb verb;
		const char *want;
	} cases[] = {
		{ SMTP_V_UNKNOWN, "UNKNOWN" }, { SMTP_V_HELO, "HELO" },
		{ SMTP_V_EHLO, "EHLO" }, { SMTP_V_MAIL, "MAIL" },
		{ SMTP_V_RCPT, "RCPT" }, { SMTP_V_DATA, "DATA" },
		{ SMTP_V_BDAT, "BDAT" }, { SMTP_V_RSET, "RSET" },
		{ SMTP_V_NOOP, "NOOP" }, { SMTP_V_QUIT, "QUIT" },
		{ SMTP_V_VRFY, "VRFY" }, { SMTP_V_EXPN, "EXPN" },
		{ SMTP_V_HELP, "HELP" }, { SMTP_V_STARTTLS, "STARTTLS" },
		{ SMTP_V_AUTH, "AUTH" },
		{ (enum smtp_verb)(SMTP_V_AUTH + 1), "UNKNOWN" },
		{ (enum smtp_verb)1000, "UNKNOWN" },
		{ (enum smtp_verb)-1, "UNKNOWN" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(cases); i++) {
		struct smtp_cmd cmd;
		const char *s = smtp_verb_str(cases[i].verb);

		assert_string_equal(s, cases[i].want);
		/* Every name parses back to its verb (BDAT needs a size). */
		if (cases[i].verb != SMTP_V_BDAT) {
			assert_int_equal(smtp_cmd_parse(s, strlen(s), &cmd), 0);
			if (strcmp(cases[i].want, "UNKNOWN") != 0)
				EQ(s, cmd.verb, cases[i].verb);
			else
				EQ(s, cmd.verb, SMTP_V_UNKNOWN);
		}
	}
}

/* ---- smtp_caps_parse ------------------------------------------------------- */

struct caps_case {
	const char *name;
	const char *in;
	size_t len;
	struct smtp_caps want;
};

static const struct caps_case caps_cases[] = {
	{ "full set", S("250-mx.example\r\n250-PIPELINING\r\n"
	  "250-SIZE 10485760\r\n250-8BITMIME\r\n250-STARTTLS\r\n"
	  "250-CHUNKING\r\n250 SMTPUTF8\r\n"),
	  { .esmtp = true, .starttls = true, .pipelining = true,
	    .chunking = true, .eightbitmime = true, .smtputf8 = true,
	    .size = true, .size_limit = 10485760 } },
	{ "LF, lower case", S("250-mx\n250-starttls\n250-size\n250 pipelining\n"),
	  { .esmtp = true, .starttls = true, .pipelining = true,
	    .size = true } },
	{ "greeting only", S("250 mx.example\r\n"), { .esmtp = true } },
	{ "greeting carries no capability", S("250-STARTTLS\r\n250 SIZE\r\n"),
	  { .esmtp = true, .size = true } },
	{ "STARTTLS with params", S("250-mx\r\n250 STARTTLS foo\r\n"),
	  { .esmtp = true, .starttls = true } },
	{ "STARTTLS trailing spaces", S("250-mx\r\n250 STARTTLS   \r\n"),
	  { .esmtp = true, .starttls = true } },
	{ "STARTTLSX", S("250-mx\r\n250 STARTTLSX\r\n"), { .esmtp = true } },
	{ "STARTTLS then tab", S("250-mx\r\n250 STARTTLS\t\r\n"),
	  { .esmtp = true } },
	{ "NUL inside STARTTLS", S("250-mx\r\n250 START\0TLS\r\n"),
	  { .esmtp = true } },
	{ "8-bit before STARTTLS", S("250-mx\r\n250 \xffSTARTTLS\r\n"),
	  { .esmtp = true } },
	{ "masked XXXXXXXA", S("250-mx\r\n250-XXXXXXXA\r\n250 SIZE 100\r\n"),
	  { .esmtp = true, .starttls_masked = true, .size = true,
	    .size_limit = 100 } },
	{ "masked XXXXXXXX", S("250-mx\r\n250 XXXXXXXX\r\n"),
	  { .esmtp = true, .starttls_masked = true } },
	{ "masked lower case", S("250-mx\r\n250 xxxxxxxb\r\n"),
	  { .esmtp = true, .starttls_masked = true } },
	{ "masked with params", S("250-mx\r\n250 XXXXXXXA foo\r\n"),
	  { .esmtp = true, .starttls_masked = true } },
	{ "not masked: digit", S("250-mx\r\n250 XXXXXXX1\r\n"), { .esmtp = true } },
	{ "not masked: [", S("250-mx\r\n250 XXXXXXX[\r\n"), { .esmtp = true } },
	{ "not masked: @", S("250-mx\r\n250 XXXXXXX@\r\n"), { .esmtp = true } },
	{ "not masked: 8-bit", S("250-mx\r\n250 XXXXXXX\xc1\r\n"),
	  { .esmtp = true } },
	{ "not masked: 9 chars", S("250-mx\r\n250 XXXXXXXAB\r\n"),
	  { .esmtp = true } },
	{ "not masked: 7 chars", S("250-mx\r\n250 XXXXXXA\r\n"), { .esmtp = true } },
	{ "not masked: Y", S("250-mx\r\n250 XXXXXXYA\r\n"), { .esmtp = true } },
	{ "SIZE 0", S("250-mx\r\n250 SIZE 0\r\n"), { .esmtp = true, .size = true } },
	{ "SIZE spaces", S("250-mx\r\n250 SIZE   52428800  \r\n"),
	  { .esmtp = true, .size = true, .size_limit = 52428800 } },
	{ "SIZE junk", S("250-mx\r\n250 SIZE abc\r\n"),
	  { .esmtp = true, .size = true } },
	{ "SIZE 12x", S("250-mx\r\n250 SIZE 12x\r\n"),
	  { .esmtp = true, .size = true } },
	{ "SIZE max", S("250-mx\r\n250 SIZE 18446744073709551615\r\n"),
	  { .esmtp = true, .size = true, .size_limit = UINT64_MAX } },
	{ "SIZE overflow", S("250-mx\r\n250 SIZE 18446744073709551616\r\n"),
	  { .esmtp = true, .size = true } },
	{ "SIZE then more", S("250-mx\r\n250 SIZE 100 extra\r\n"),
	  { .esmtp = true, .size = true, .size_limit = 100 } },
	{ "SIZE tab number", S("250-mx\r\n250 SIZE \t100\r\n"),
	  { .esmtp = true, .size = true } },
	{ "SIZEX", S("250-mx\r\n250 SIZEX 100\r\n"), { .esmtp = true } },
	{ "refused EHLO", S("550 5.5.1 no\r\n"), { .esmtp = false } },
	{ "non-250 lines ignored", S("554-mx\r\n554 STARTTLS\r\n"),
	  { .esmtp = false } },
	{ "220", S("220 mx ESMTP\r\n"), { .esmtp = false } },
	{ "2500", S("2500 x\r\n"), { .esmtp = false } },
	{ "empty", S(""), { .esmtp = false } },
	{ "code alone, 3 bytes", S("250"), { .esmtp = false } },
	{ "bare code line", S("250\r\n"), { .esmtp = true } },
	{ "no separator after code", S("250-mx\r\n250XSTARTTLS\r\n"),
	  { .esmtp = true } },
	{ "line without code", S("250-mx\r\nSTARTTLS\r\n"), { .esmtp = true } },
	{ "last line without LF", S("250-mx\r\n250 STARTTLS"),
	  { .esmtp = true, .starttls = true } },
};

static void test_caps_parse_table(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(caps_cases); i++) {
		const struct caps_case *c = &caps_cases[i];
		const struct smtp_caps *w = &c->want;
		struct smtp_caps got;

		memset(&got, 0x5a, sizeof(got));
		smtp_caps_parse(c->in, c->len, &got);
		EQ(c->name, got.esmtp, w->esmtp);
		EQ(c->name, got.starttls, w->starttls);
		EQ(c->name, got.starttls_masked, w->starttls_masked);
		EQ(c->name, got.pipelining, w->pipelining);
		EQ(c->name, got.chunking, w->chunking);
		EQ(c->name, got.eightbitmime, w->eightbitmime);
		EQ(c->name, got.smtputf8, w->smtputf8);
		EQ(c->name, got.size, w->size);
		EQ(c->name, got.size_limit, w->size_limit);
	}
}

/* ---- smtp_ehlo_filter ------------------------------------------------------ */

struct ehlo_case {
	const char *name;
	const char *in;
	size_t len;
	bool add;
	const char *want;  /* NULL: -1 */
	size_t want_len;
	bool had;
};

#define NONE NULL, 0

static const struct ehlo_case ehlo_cases[] = {
	{ "drop middle", S("250-mx\r\n250-PIPELINING\r\n250-STARTTLS\r\n"
	  "250 SIZE 100\r\n"), false,
	  S("250-mx\r\n250-PIPELINING\r\n250 SIZE 100\r\n"), true },
	{ "drop middle, add", S("250-mx\r\n250-PIPELINING\r\n250-STARTTLS\r\n"
	  "250 SIZE 100\r\n"), true,
	  S("250-mx\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 SIZE 100\r\n"),
	  true },
	{ "drop last", S("250-mx\r\n250-SIZE 100\r\n250 STARTTLS\r\n"), false,
	  S("250-mx\r\n250 SIZE 100\r\n"), true },
	{ "drop last, add", S("250-mx\r\n250-SIZE 100\r\n250 STARTTLS\r\n"),
	  true, S("250-mx\r\n250-STARTTLS\r\n250 SIZE 100\r\n"), true },
	{ "add to plain", S("250-mx\r\n250-8BITMIME\r\n250 HELP\r\n"), true,
	  S("250-mx\r\n250-8BITMIME\r\n250-STARTTLS\r\n250 HELP\r\n"), false },
	{ "nothing to do", S("250-mx\r\n250 HELP\r\n"), false,
	  S("250-mx\r\n250 HELP\r\n"), false },
	{ "one line, add", S("250 mx\r\n"), true,
	  S("250-mx\r\n250 STARTTLS\r\n"), false },
	{ "one line", S("250 mx\r\n"), false, S("250 mx\r\n"), false },
	{ "one line LF, add", S("250 mx\n"), true,
	  S("250-mx\n250 STARTTLS\n"), false },
	{ "greeting and STARTTLS", S("250-mx\r\n250 STARTTLS\r\n"), false,
	  S("250 mx\r\n"), true },
	{ "greeting and STARTTLS, add", S("250-mx\r\n250 STARTTLS\r\n"), true,
	  S("250-mx\r\n250 STARTTLS\r\n"), true },
	{ "LF ends kept", S("250-mx\n250-starttls\n250 8BITMIME\n"), true,
	  S("250-mx\n250-STARTTLS\n250 8BITMIME\n"), true },
	{ "new line takes last line end", S("250-mx\r\n250 SIZE\n"), true,
	  S("250-mx\r\n250-STARTTLS\n250 SIZE\n"), false },
	{ "drop every STARTTLS", S("250-mx\r\n250-STARTTLS\r\n"
	  "250-starttls x\r\n250-StartTls   \r\n250 HELP\r\n"), false,
	  S("250-mx\r\n250 HELP\r\n"), true },
	{ "STARTTLSX stays", S("250-mx\r\n250-STARTTLSX\r\n250 HELP\r\n"),
	  false, S("250-mx\r\n250-STARTTLSX\r\n250 HELP\r\n"), false },
	{ "masked stays", S("250-mx\r\n250-XXXXXXXA\r\n250 HELP\r\n"), false,
	  S("250-mx\r\n250-XXXXXXXA\r\n250 HELP\r\n"), false },
	{ "greeting named STARTTLS stays", S("250-STARTTLS\r\n250 HELP\r\n"),
	  false, S("250-STARTTLS\r\n250 HELP\r\n"), false },
	{ "bare code alone, add", S("250\r\n"), true,
	  S("250-\r\n250 STARTTLS\r\n"), false },
	{ "bare code alone", S("250\r\n"), false, S("250\r\n"), false },
	{ "bare code last, add", S("250-mx\r\n250\r\n"), true,
	  S("250-mx\r\n250-STARTTLS\r\n250\r\n"), false },
	{ "STARTTLS before bare code", S("250-mx\r\n250-STARTTLS\r\n250\r\n"),
	  false, S("250-mx\r\n250\r\n"), true },
	{ "8-bit and NUL kept", S("250-m\xffx\0\r\n250 STARTTLS\r\n"), false,
	  S("250 m\xffx\0\r\n"), true },
	{ "refused", S("550 no\r\n"), false, NONE, false },
	{ "220", S("220 hi\r\n"), true, NONE, false },
	{ "incomplete", S("250-mx\r\n"), false, NONE, false },
	{ "no LF", S("250 mx"), true, NONE, false },
	{ "two replies", S("250 mx\r\n250 again\r\n"), false, NONE, false },
	{ "mixed codes", S("250-mx\r\n251 x\r\n"), false, NONE, false },
	{ "empty", S(""), true, NONE, false },
	{ "junk", S("xyz\r\n"), false, NONE, false },
};

static void check_ehlo(const struct ehlo_case *c, size_t cap, bool fits)
{
	char out[256], name[96];
	bool had = !c->had;
	ssize_t n;

	snprintf(name, sizeof(name), "%s (cap %zu)", c->name, cap);
	memset(out, 'Z', sizeof(out));
	n = smtp_ehlo_filter(c->in, c->len, c->add, out, cap, &had);
	assert_true(cap < sizeof(out));
	EQ(name, out[cap], 'Z');
	if (!fits) {
		EQ(name, n, -1);
		return;
	}
	EQ(name, n, c->want_len);
	expect_bytes(name, out, (size_t)n, c->want, c->want_len);
	EQ(name, had, c->had);
}

static void test_ehlo_filter_table(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(ehlo_cases); i++) {
		const struct ehlo_case *c = &ehlo_cases[i];

		check_ehlo(c, 200, c->want != NULL);
		if (c->want == NULL)
			continue;
		/* Exactly enough room, and one byte short. */
		check_ehlo(c, c->want_len, true);
		check_ehlo(c, c->want_len - 1, false);
		assert_int_equal(smtp_ehlo_filter(c->in, c->len, c->add,
		    (char[256]){ 0 }, 256, NULL), (ssize_t)c->want_len);
	}
}

/* The output is itself a well-formed reply, and filtering it is a no-op. */
static void test_ehlo_filter_output(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(ehlo_cases); i++) {
		const struct ehlo_case *c = &ehlo_cases[i];
		struct smtp_reply r;
		struct smtp_caps caps;
		char again[256];
		bool had;
		ssize_t n;

		if (c->want == NULL)
			continue;
		EQ(c->name, smtp_reply_parse(c->want, c->want_len, ML, MN, &r),
		    SMTP_PARSE_OK);
		EQ(c->name, r.len, c->want_len);
		smtp_caps_parse(c->want, c->want_len, &caps);
		EQ(c->name, caps.starttls, c->add);
		n = smtp_ehlo_filter(c->want, c->want_len, c->add, again,
		    sizeof(again), &had);
		expect_bytes(c->name, again, n < 0 ? 0 : (size_t)n, c->want,
		    c->want_len);
		EQ(c->name, had, c->add);
	}
}

/* ---- smtp_data_scan -------------------------------------------------------- */

struct data_result {
	size_t ret;
	bool done;
	uint64_t ambiguous, bare_lf, bare_cr;
};

struct data_case {
	const char *name;
	const char *in;
	size_t len;
	struct data_result want;
};

static const struct data_case data_cases[] = {
	{ "empty input", S(""), { 0, false, 0, 0, 0 } },
	{ "empty body", S(".\r\n"), { 3, true, 0, 0, 0 } },
	{ "one line", S("hello\r\n.\r\n"), { 10, true, 0, 0, 0 } },
	{ "stops at the end", S("hi\r\n.\r\nMAIL FROM:<a>\r\n"),
	  { 7, true, 0, 0, 0 } },
	{ "body, no end", S("hello\r\n"), { 7, false, 0, 0, 0 } },
	{ "dot-stuffed", S("a\r\n..\r\n.x\r\n"), { 11, false, 0, 0, 0 } },
	{ "dot-stuffed then end", S("..\r\n.\r\n"), { 7, true, 0, 0, 0 } },
	{ "empty line then end", S("\r\n.\r\n"), { 5, true, 0, 0, 0 } },
	{ "dot not at line start", S("x.\r\n"), { 4, false, 0, 0, 0 } },
	{ "NUL then dot", S("\0.\r\n"), { 4, false, 0, 0, 0 } },
	{ "8-bit line then end", S("\xff\x80\r\n.\r\n"), { 7, true, 0, 0, 0 } },
	{ "dot space", S(". \r\n"), { 4, false, 0, 0, 0 } },
	{ "LF dot LF", S("a\n.\n"), { 4, false, 1, 2, 0 } },
	{ "LF dot CRLF", S("a\n.\r\n"), { 5, false, 1, 1, 0 } },
	{ "LF dot CRLF then end", S("a\n.\r\n.\r\n"), { 8, true, 1, 1, 0 } },
	{ "CRLF dot LF", S("a\r\n.\n"), { 5, false, 1, 1, 0 } },
	{ "dot LF at start", S(".\n"), { 2, false, 1, 1, 0 } },
	{ "CR dot CR", S("a\r.\r"), { 4, false, 1, 0, 1 } },
	{ "CR dot CR x", S("a\r.\rb"), { 5, false, 1, 0, 2 } },
	{ "CR dot CRLF", S("\r.\r\n"), { 4, false, 1, 0, 1 } },
	{ "CRLF dot CR x", S("a\r\n.\rb"), { 6, false, 1, 0, 1 } },
	{ "CRLF dot CR, undecided", S("a\r\n.\r"), { 5, false, 0, 0, 0 } },
	{ "dot CR CR LF", S(".\r\r\n"), { 4, false, 1, 0, 1 } },
	{ "bare LF", S("\n"), { 1, false, 0, 1, 0 } },
	{ "bare CR", S("a\rb"), { 3, false, 0, 0, 1 } },
	{ "CR CR LF", S("\r\r\n"), { 3, false, 0, 0, 1 } },
	{ "CR CR LF dot CRLF", S("\r\r\n.\r\n"), { 6, true, 0, 0, 1 } },
	{ "bare LF, CRLF, end", S("a\n\r\n.\r\n"), { 7, true, 0, 1, 0 } },
	{ "LF LF dot", S("a\n\n.\n"), { 5, false, 1, 3, 0 } },
	{ "two ambiguous", S("\n.\n.\n"), { 5, false, 2, 3, 0 } },
};

/* The counters as the struct gives them, plus what the scan returned. */
static void data_take(const struct smtp_data *d, size_t ret, bool done,
    struct data_result *out)
{
	out->ret = ret;
	out->done = done;
	out->ambiguous = d->ambiguous;
	out->bare_lf = d->bare_lf;
	out->bare_cr = d->bare_cr;
}

/* Feeds in[0..len) as chunks no longer than chunk, cut first at split. */
static void data_feed(const char *in, size_t len, size_t split, size_t chunk,
    struct data_result *out)
{
	struct smtp_data d;
	size_t pos = 0, n, ret;
	bool done = false;

	smtp_data_init(&d);
	while (!done && pos < len) {
		n = pos < split ? split - pos : len - pos;
		if (n > chunk)
			n = chunk;
		ret = smtp_data_scan(&d, in + pos, n, &done);
		if (!done)
			assert_int_equal(ret, n);
		assert_true(ret <= n);
		pos += ret;
	}
	data_take(&d, pos, done, out);
}

static void data_expect(const char *name, const struct data_result *got,
    const struct data_result *want)
{
	EQ(name, got->ret, want->ret);
	EQ(name, got->done, want->done);
	EQ(name, got->ambiguous, want->ambiguous);
	EQ(name, got->bare_lf, want->bare_lf);
	EQ(name, got->bare_cr, want->bare_cr);
}

/* One call, every two-chunk split, and one byte at a time agree. */
static void data_check_splits(const char *name, const char *in, size_t len,
    const struct data_result *want)
{
	struct data_result got;
	char sname[160];
	size_t split;

	for (split = 0; split <= len; split++) {
		snprintf(sname, sizeof(sname), "%s (split %zu)", name, split);
		data_feed(in, len, split, SIZE_MAX, &got);
		data_expect(sname, &got, want);
	}
	snprintf(sname, sizeof(sname), "%s (bytewise)", name);
	data_feed(in, len, 0, 1, &got);
	data_expect(sname, &got, want);
}

static void test_data_scan_table(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(data_cases); i++)
		data_check_splits(data_cases[i].name, data_cases[i].in,
		    data_cases[i].len, &data_cases[i].want);
}

/* The scanner's view of byte i: the DATA line's CRLF comes first. */
static int data_at(const char *in, size_t len, ptrdiff_t i)
{
	if (i == -2)
		return '\r';
	if (i == -1)
		return '\n';
	return i >= 0 && (size_t)i < len ? (unsigned char)in[i] : -1;
}

/* '.' at i alone on its line with a non-CRLF end on either side? */
static bool data_dot_ambiguous(const char *in, size_t n, size_t i)
{
	ptrdiff_t j = (ptrdiff_t)i;
	int prev = data_at(in, n, j - 1), next = data_at(in, n, j + 1);
	bool prev_crlf = prev == '\n' && data_at(in, n, j - 2) == '\r';

	if (prev != '\n' && prev != '\r')
		return false;
	if (next == '\n')
		return true;
	if (next != '\r')
		return false;
	/* After ".\r" only a preceding CRLF leaves the outcome open. */
	if (!prev_crlf)
		return true;
	return data_at(in, n, j + 2) != -1 && data_at(in, n, j + 2) != '\n';
}

/* A second, index-based reading of the header's rules, for cross-checks. */
static void data_oracle(const char *in, size_t len, struct data_result *w)
{
	size_t n = len, i;

	memset(w, 0, sizeof(*w));
	for (i = 0; i + 3 <= len; i++) {
		ptrdiff_t j = (ptrdiff_t)i;

		if (data_at(in, len, j - 2) == '\r' &&
		    data_at(in, len, j - 1) == '\n' &&
		    memcmp(in + i, ".\r\n", 3) == 0) {
			n = i + 3;
			w->done = true;
			break;
		}
	}
	w->ret = n;
	for (i = 0; i < n; i++) {
		ptrdiff_t j = (ptrdiff_t)i;

		if (in[i] == '\n' && data_at(in, n, j - 1) != '\r')
			w->bare_lf++;
		if (in[i] == '\r' && i + 1 < n && in[i + 1] != '\n')
			w->bare_cr++;
		if (in[i] == '.' && data_dot_ambiguous(in, n, i))
			w->ambiguous++;
	}
}

/* The oracle agrees with the hand-written table. */
static void test_data_oracle_table(void **state)
{
	struct data_result w;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(data_cases); i++) {
		data_oracle(data_cases[i].in, data_cases[i].len, &w);
		data_expect(data_cases[i].name, &w, &data_cases[i].want);
	}
}

/* Every string of up to 8 bytes over CR, LF, '.', 'a', at every split. */
static void test_data_scan_exhaustive(void **state)
{
	static const char alpha[] = "\r\n.a";
	char s[8];
	size_t len, k, idx[8];
	struct data_result want;

	(void)state;
	for (len = 0; len <= sizeof(s); len++) {
		memset(idx, 0, sizeof(idx));
		for (;;) {
			for (k = 0; k < len; k++)
				s[k] = alpha[idx[k]];
			data_oracle(s, len, &want);
			data_check_splits("exhaustive", s, len, &want);
			for (k = 0; k < len && ++idx[k] == 4; k++)
				idx[k] = 0;
			if (k == len)
				break;
		}
	}
}

/* Longer pseudo-random bodies (fixed seed), with 8-bit and NUL bytes. */
static void test_data_scan_random(void **state)
{
	static const char alpha[] = "\r\n.a\0\xff";
	uint32_t x = 12345;
	char s[96];
	size_t round, k;
	struct data_result want;

	(void)state;
	for (round = 0; round < 3000; round++) {
		for (k = 0; k < sizeof(s); k++) {
			x = x * 1103515245u + 12345u;
			s[k] = alpha[(x >> 16) % (sizeof(alpha) - 1)];
		}
		data_oracle(s, sizeof(s), &want);
		data_check_splits("random", s, sizeof(s), &want);
	}
}

static void test_data_scan_after_done(void **state)
{
	struct smtp_data d;
	bool done = false;

	(void)state;
	smtp_data_init(&d);
	assert_int_equal(smtp_data_scan(&d, S("x\r\n.\r\nQUIT\r\n"), &done), 6);
	assert_true(done);
	done = false;
	assert_int_equal(smtp_data_scan(&d, S(".\r\n"), &done), 0);
	assert_true(done);
	assert_int_equal(d.ambiguous, 0);
	smtp_data_init(&d);
	assert_int_equal(smtp_data_scan(&d, S(".\r\n"), &done), 3);
	assert_true(done);
}

/* ---- command line checks, RCPT domains ---------------------------------- */

static void
test_line_check_table(void **state)
{
	static const struct {
		const char *name, *line;
		size_t len;
		enum smtp_line_fault want;
	} t[] = {
		{ "CRLF", S("NOOP\r\n"), SMTP_LINE_OK },
		{ "bare LF", S("NOOP\n"), SMTP_LINE_BARE_NEWLINE },
		{ "CR inside", S("NO\rOP\r\n"), SMTP_LINE_BARE_NEWLINE },
		{ "only LF", S("\n"), SMTP_LINE_BARE_NEWLINE },
		{ "empty CRLF", S("\r\n"), SMTP_LINE_OK },
		{ "NUL inside", S("NOOP\0RSET\r\n"), SMTP_LINE_NUL },
		{ "NUL first", S("\0NOOP\r\n"), SMTP_LINE_NUL },
		{ "NUL and bare LF: the line end first", S("NO\0OP\n"),
		  SMTP_LINE_BARE_NEWLINE },
	};

	(void)state;
	for (size_t i = 0; i < NELEM(t); i++)
		EQ(t[i].name, smtp_line_check(t[i].line, t[i].len), t[i].want);
}

static void
test_rcpt_domain_table(void **state)
{
	static const struct {
		const char *name, *arg, *want; /* want NULL: none */
	} t[] = {
		{ "plain", "TO:<a@Example.NET>", "example.net" },
		{ "final dot", "TO:<a@example.net.> NOTIFY=NEVER", "example.net" },
		{ "last @ counts", "TO:<\"a@b\"@example.org>", "example.org" },
		{ "no @", "TO:<postmaster>", NULL },
		{ "no brackets", "TO:a@example.net", NULL },
		{ "empty domain", "TO:<a@>", NULL },
		{ "space in domain", "TO:<a@exa mple.net>", NULL },
		{ "quote in domain", "TO:<a@ex\"ample.net>", NULL },
	};
	char out[256];

	(void)state;
	for (size_t i = 0; i < NELEM(t); i++) {
		bool got = smtp_rcpt_domain(t[i].arg, strlen(t[i].arg), out,
		    sizeof(out));
		EQ(t[i].name, got, t[i].want != NULL);
		if (got)
			STREQ(t[i].name, out, t[i].want);
	}
	/* Too long for the buffer: none, never a truncated domain. */
	EQ("too long", smtp_rcpt_domain(S("TO:<a@example.net>"), out, 5), false);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reply_parse_table),
		cmocka_unit_test(test_reply_parse_prefixes),
		cmocka_unit_test(test_reply_parse_exhaustive),
		cmocka_unit_test(test_reply_fmt_table),
		cmocka_unit_test(test_reply_fmt_cap_zero),
		cmocka_unit_test(test_line_len),
		cmocka_unit_test(test_cmd_parse_table),
		cmocka_unit_test(test_verb_str),
		cmocka_unit_test(test_caps_parse_table),
		cmocka_unit_test(test_ehlo_filter_table),
		cmocka_unit_test(test_ehlo_filter_output),
		cmocka_unit_test(test_data_scan_table),
		cmocka_unit_test(test_data_oracle_table),
		cmocka_unit_test(test_data_scan_exhaustive),
		cmocka_unit_test(test_data_scan_random),
		cmocka_unit_test(test_data_scan_after_done),
		cmocka_unit_test(test_line_check_table),
		cmocka_unit_test(test_rcpt_domain_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
