/*
 * Unit tests for proxy/log.c: logfmt lines built without being emitted
 * (struct logline.text is inspected): event first, quoting and escaping
 * (JSON string escapes inside quotes, UTF-8 kept, other bytes \u00XX),
 * forged keys in a peer's value, skipped NULL values, numbers, signal
 * names, and truncation at LOG_LINE_MAX. Every line is also decoded by a
 * strict logfmt reader here, so escaping round-trips and a truncated line
 * stays well-formed. log_open(false, false): log_emit
 * writes nowhere, except in the one test that captures stderr.
 */

#include "unit.h"

#include <limits.h>
#include <signal.h>
#include <unistd.h>

#include "starttlsd/log.h"

/* A literal and its length, so rows can hold NUL bytes. */

/* log.c keeps 16 bytes back for " truncated=1" and its NUL. */
#define TEXT_MAX (LOG_LINE_MAX - 16)
#define MARK " truncated=1"
#define MARK_LEN (sizeof(MARK) - 1)

static void expect_text(const char *name, const struct logline *l,
    const char *want)
{
	char b1[4 * LOG_LINE_MAX + 8], b2[4 * LOG_LINE_MAX + 8];

	if (l->len == strlen(want) && strcmp(l->text, want) == 0)
		return;
	print_error("%s:\n  got  \"%s\" (len %zu)\n  want \"%s\"\n", name,
	    esc(l->text, strlen(l->text), b1, sizeof(b1)), l->len,
	    esc(want, strlen(want), b2, sizeof(b2)));
	fail();
}

/* ---- a strict logfmt reader --------------------------------------------------- */

struct pair {
	char key[64];
	char val[LOG_LINE_MAX];
	size_t len;
	bool quoted;
};

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;  /* docs/logging.md: lower-case hex digits */
}

/*
 * Well-formed UTF-8 for a character from U+00A0 up at t (n bytes left):
 * its length, or 0. Written from RFC 3629's table, apart from log.c's.
 */
static size_t utf8_char(const unsigned char *t, size_t n)
{
	uint32_t cp;
	size_t len;

	if (t[0] >= 0xc0 && t[0] < 0xe0)
		len = 2, cp = t[0] & 0x1f;
	else if (t[0] >= 0xe0 && t[0] < 0xf0)
		len = 3, cp = t[0] & 0x0f;
	else if (t[0] >= 0xf0 && t[0] < 0xf8)
		len = 4, cp = t[0] & 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((t[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (t[i] & 0x3f);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
	    (len == 4 && cp < 0x10000))
		return 0;  /* overlong */
	if (cp < 0xa0 || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;  /* C1 control, surrogate, out of range */
	return len;
}

/*
 * Decode text into pairs, as docs/logging.md describes the format: pairs
 * separated by one space, keys [a-z0-9_]+, values bare (printable ASCII
 * other than '=', '"', '\\', at least one byte) or quoted (a JSON string
 * body: printable ASCII and well-formed UTF-8 from U+00A0 as is, escapes
 * \" \\ \n \r \t and \u00xx, which stands for the one byte xx).
 * Returns the number of pairs, or -1 with why.
 */
static int logfmt_parse(const char *text, size_t len, struct pair *out,
    int max, const char **why)
{
	const unsigned char *u = (const unsigned char *)text;
	size_t i = 0;
	int n = 0;

	while (i < len) {
		struct pair *p;
		size_t k = 0;

		if (n > 0) {
			if (text[i] != ' ')
				return *why = "pairs not separated by a space", -1;
			i++;
		}
		if (n == max)
			return *why = "too many pairs", -1;
		p = &out[n];
		while (i < len && ((text[i] >= 'a' && text[i] <= 'z') ||
		    (text[i] >= '0' && text[i] <= '9') || text[i] == '_')) {
			if (k + 1 >= sizeof(p->key))
				return *why = "key too long", -1;
			p->key[k++] = text[i++];
		}
		p->key[k] = '\0';
		if (k == 0)
			return *why = "empty or bad key", -1;
		if (i >= len || text[i] != '=')
			return *why = "key without '='", -1;
		i++;
		p->len = 0;
		p->quoted = i < len && text[i] == '"';
		if (p->quoted) {
			i++;
			for (;;) {
				unsigned char c;
				size_t ulen;

				if (i >= len)
					return *why = "unterminated quote", -1;
				c = u[i];
				if (c == '"') {
					i++;
					break;
				}
				if (c < 0x20 || c == 0x7f)
					return *why = "raw control byte inside quotes", -1;
				if (c >= 0x80) {
					if ((ulen = utf8_char(u + i, len - i)) == 0)
						return *why = "raw byte inside quotes that is not UTF-8 from U+00A0", -1;
					memcpy(p->val + p->len, text + i, ulen);
					p->len += ulen;
					i += ulen;
				} else if (c == '\\') {
					if (i + 1 >= len)
						return *why = "dangling backslash", -1;
					switch (text[i + 1]) {
					case '"': case '\\':
						p->val[p->len++] = text[i + 1];
						i += 2;
						break;
					case 'n': case 'r': case 't':
						p->val[p->len++] = text[i + 1] == 'n' ? '\n' :
						    text[i + 1] == 'r' ? '\r' : '\t';
						i += 2;
						break;
					case 'u':
						if (i + 5 >= len || text[i + 2] != '0' ||
						    text[i + 3] != '0' || hexval(text[i + 4]) < 0 ||
						    hexval(text[i + 5]) < 0)
							return *why = "escape other than \\u00xx", -1;
						p->val[p->len++] = (char)
						    (hexval(text[i + 4]) * 16 + hexval(text[i + 5]));
						i += 6;
						break;
					default:
						return *why = "bad escape", -1;
					}
				} else {
					p->val[p->len++] = (char)c;
					i++;
				}
			}
			if (i < len && text[i] != ' ')
				return *why = "junk after a closing quote", -1;
		} else {
			while (i < len && text[i] != ' ') {
				unsigned char c = u[i];

				if (c <= 0x20 || c >= 0x7f || c == '=' || c == '"' ||
				    c == '\\')
					return *why = "bad byte in a bare value", -1;
				p->val[p->len++] = (char)c;
				i++;
			}
			if (p->len == 0)
				return *why = "empty bare value", -1;
		}
		p->val[p->len] = '\0';
		n++;
	}
	return n;
}

static int parse_line(const char *name, const struct logline *l,
    struct pair *out, int max)
{
	const char *why = NULL;
	int n;

	EQ(name, strlen(l->text), l->len);
	n = logfmt_parse(l->text, l->len, out, max, &why);
	if (n < 0) {
		char b[4 * LOG_LINE_MAX + 8];

		print_error("%s: not logfmt (%s): \"%s\"\n", name, why,
		    esc(l->text, l->len, b, sizeof(b)));
		fail();
	}
	return n;
}

/* ---- building lines ------------------------------------------------------------ */

static void test_begin(void **state)
{
	static const char *const events[] = {
		"session", "start", "stop", "reload", "error", "x",
	};
	struct logline l;
	struct pair p[4];
	char want[64];

	(void)state;
	for (size_t i = 0; i < NELEM(events); i++) {
		memset(&l, 0x5a, sizeof(l));
		log_begin(&l, events[i]);
		snprintf(want, sizeof(want), "event=%s", events[i]);
		expect_text(events[i], &l, want);
		assert_false(l.truncated);
		EQ(events[i], parse_line(events[i], &l, p, 4), 1);
		assert_string_equal(p[0].key, "event");
		assert_string_equal(p[0].val, events[i]);
	}
	/* event stays first, pairs follow in order */
	log_begin(&l, "session");
	log_str(&l, "id", "537c00a515c523f3");
	log_u64(&l, "msgs", 2);
	log_str(&l, "reason", "quit");
	expect_text("order", &l,
	    "event=session id=537c00a515c523f3 msgs=2 reason=quit");
	/* log_begin starts over */
	log_begin(&l, "stop");
	expect_text("restart", &l, "event=stop");
}

struct quote_case {
	const char *name;
	const char *val;
	size_t len;
	const char *want;  /* text after "event=t k=" */
};

static const struct quote_case quote_cases[] = {
	{ "plain", S("abc"), "abc" },
	{ "digits", S("250"), "250" },
	{ "punctuation stays bare", S("a.b-c_d:e/f@g,h;i(j)k[l]m{n}o<p>q!r?s'"),
	  "a.b-c_d:e/f@g,h;i(j)k[l]m{n}o<p>q!r?s'" },
	{ "tilde 0x7e bare", S("~"), "~" },
	{ "hash, percent", S("#%&*+|^`$"), "#%&*+|^`$" },
	{ "empty", S(""), "\"\"" },
	{ "space", S("a b"), "\"a b\"" },
	{ "only a space", S(" "), "\" \"" },
	{ "leading space", S(" a"), "\" a\"" },
	{ "trailing space", S("a "), "\"a \"" },
	{ "equals", S("a=b"), "\"a=b\"" },
	{ "only equals", S("="), "\"=\"" },
	{ "double quote", S("a\"b"), "\"a\\\"b\"" },
	{ "only a double quote", S("\""), "\"\\\"\"" },
	{ "backslash", S("a\\b"), "\"a\\\\b\"" },
	{ "backslash x", S("\\x41"), "\"\\\\x41\"" },
	{ "backslash u", S("\\u0041"), "\"\\\\u0041\"" },
	{ "tab", S("a\tb"), "\"a\\tb\"" },
	{ "LF", S("a\nb"), "\"a\\nb\"" },
	{ "CRLF", S("250 ok\r\n"), "\"250 ok\\r\\n\"" },
	{ "NUL", S("a\0b"), "\"a\\u0000b\"" },
	{ "only NUL", S("\0"), "\"\\u0000\"" },
	{ "0x01", S("\x01"), "\"\\u0001\"" },
	{ "backspace 0x08", S("\b"), "\"\\u0008\"" },
	{ "form feed 0x0c", S("\f"), "\"\\u000c\"" },
	{ "0x1f", S("\x1f"), "\"\\u001f\"" },
	{ "ESC sequence", S("\x1b[31mred"), "\"\\u001b[31mred\"" },
	{ "DEL 0x7f", S("a\x7f"), "\"a\\u007f\"" },
	{ "lone 0x80", S("\x80"), "\"\\u0080\"" },
	{ "lone 0xff", S("\xff"), "\"\\u00ff\"" },
	{ "UTF-8 e-acute stays", S("caf\xc3\xa9"), "\"caf\xc3\xa9\"" },
	{ "UTF-8 nbsp U+00A0 stays", S("\xc2\xa0"), "\"\xc2\xa0\"" },
	{ "UTF-8 3 bytes stays", S("\xe2\x82\xac 5"), "\"\xe2\x82\xac 5\"" },
	{ "UTF-8 4 bytes stays", S("\xf0\x9f\x93\xa7"), "\"\xf0\x9f\x93\xa7\"" },
	{ "UTF-8 U+10FFFF stays", S("\xf4\x8f\xbf\xbf"), "\"\xf4\x8f\xbf\xbf\"" },
	{ "Latin-1 e-acute", S("caf\xe9"), "\"caf\\u00e9\"" },
	{ "cut UTF-8 at the end", S("caf\xc3"), "\"caf\\u00c3\"" },
	{ "cut UTF-8 before ASCII", S("\xe2\x82x"), "\"\\u00e2\\u0082x\"" },
	{ "C1 control U+0085", S("a\xc2\x85"), "\"a\\u00c2\\u0085\"" },
	{ "C1 CSI U+009B", S("\xc2\x9b" "31m"), "\"\\u00c2\\u009b31m\"" },
	{ "overlong slash", S("\xc0\xaf"), "\"\\u00c0\\u00af\"" },
	{ "overlong 3 bytes", S("\xe0\x80\xaf"), "\"\\u00e0\\u0080\\u00af\"" },
	{ "surrogate", S("\xed\xa0\x80"), "\"\\u00ed\\u00a0\\u0080\"" },
	{ "above U+10FFFF", S("\xf4\x90\x80\x80"),
	  "\"\\u00f4\\u0090\\u0080\\u0080\"" },
	{ "lone continuation", S("\xa9"), "\"\\u00a9\"" },
	{ "mixed", S("CN=mx \"1\"\\x\n"), "\"CN=mx \\\"1\\\"\\\\x\\n\"" },
	{ "fake pair injection", S("x reason=forged"),
	  "\"x reason=forged\"" },
	{ "fake quote injection", S("\" injected=1 \""),
	  "\"\\\" injected=1 \\\"\"" },
	{ "forged session keys", S("CN=x action=upgraded msgs=9"),
	  "\"CN=x action=upgraded msgs=9\"" },
	{ "forged line break", S("CN=x\nevent=session action=upgraded"),
	  "\"CN=x\\nevent=session action=upgraded\"" },
};

static void test_quoting_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < NELEM(quote_cases); i++) {
		const struct quote_case *c = &quote_cases[i];
		struct logline l;
		struct pair p[4];
		char want[256];

		log_begin(&l, "t");
		log_bytes(&l, "k", c->val, c->len);
		snprintf(want, sizeof(want), "event=t k=%s", c->want);
		expect_text(c->name, &l, want);
		assert_false(l.truncated);
		/* the reader gets the bytes back */
		EQ(c->name, parse_line(c->name, &l, p, 4), 2);
		assert_string_equal(p[1].key, "k");
		EQ(c->name, p[1].len, c->len);
		EQ(c->name, memcmp(p[1].val, c->val, c->len), 0);

		/* log_str says the same for anything without a NUL */
		if (memchr(c->val, '\0', c->len) == NULL) {
			struct logline l2;

			log_begin(&l2, "t");
			log_str(&l2, "k", c->val);
			expect_text(c->name, &l2, want);
		}
	}
}

/* Every single byte value: bare exactly when docs/logging.md says so. */
static void test_every_byte(void **state)
{
	(void)state;
	for (int b = 0; b < 256; b++) {
		char v[3] = { 'a', (char)b, 'z' }, want[32], name[32];
		struct logline l;
		bool bare = b > 0x20 && b < 0x7f && b != '=' && b != '"' &&
		    b != '\\';

		snprintf(name, sizeof(name), "byte 0x%02x", b);
		log_begin(&l, "t");
		log_bytes(&l, "k", v, sizeof(v));
		if (bare)
			snprintf(want, sizeof(want), "event=t k=a%cz", b);
		else if (b == '"' || b == '\\')
			snprintf(want, sizeof(want), "event=t k=\"a\\%cz\"", b);
		else if (b == '\n' || b == '\r' || b == '\t')
			snprintf(want, sizeof(want), "event=t k=\"a\\%cz\"",
			    b == '\n' ? 'n' : b == '\r' ? 'r' : 't');
		else if (b < 0x20 || b >= 0x7f)  /* a lone byte >= 0x80 is no UTF-8 */
			snprintf(want, sizeof(want), "event=t k=\"a\\u00%02xz\"", b);
		else
			snprintf(want, sizeof(want), "event=t k=\"a%cz\"", b);
		expect_text(name, &l, want);
	}
}

static void test_null_skipped(void **state)
{
	struct logline l;

	(void)state;
	log_begin(&l, "t");
	log_str(&l, "a", "1");
	log_str(&l, "b", NULL);
	log_bytes(&l, "c", NULL, 0);
	log_bytes(&l, "d", NULL, 5);
	log_str(&l, "e", "");
	log_str(&l, "f", "2");
	expect_text("NULL skipped, empty kept", &l, "event=t a=1 e=\"\" f=2");
	assert_false(l.truncated);

	/* A zero-length prefix of real bytes is an empty value, not a skip. */
	log_begin(&l, "t");
	log_bytes(&l, "k", "abc", 0);
	expect_text("zero-length bytes", &l, "event=t k=\"\"");
	/* Only len bytes are taken. */
	log_begin(&l, "t");
	log_bytes(&l, "k", "abc def", 3);
	expect_text("prefix of bytes", &l, "event=t k=abc");
}

static void test_numbers(void **state)
{
	static const struct {
		uint64_t v;
		const char *want;
	} u[] = {
		{ 0, "0" }, { 1, "1" }, { 10, "10" }, { 4294967295u, "4294967295" },
		{ 4294967296u, "4294967296" },
		{ UINT64_MAX, "18446744073709551615" },
	};
	static const struct {
		long long v;
		const char *want;
	} s[] = {
		{ 0, "0" }, { 1, "1" }, { -1, "-1" }, { 1234, "1234" },
		{ -98765, "-98765" },
		{ LLONG_MAX, "9223372036854775807" },
		{ LLONG_MIN, "-9223372036854775808" },
	};
	struct logline l;
	char want[128];

	(void)state;
	for (size_t i = 0; i < NELEM(u); i++) {
		log_begin(&l, "t");
		log_u64(&l, "n", u[i].v);
		snprintf(want, sizeof(want), "event=t n=%s", u[i].want);
		expect_text(u[i].want, &l, want);
	}
	for (size_t i = 0; i < NELEM(s); i++) {
		log_begin(&l, "t");
		log_int(&l, "n", s[i].v);
		snprintf(want, sizeof(want), "event=t n=%s", s[i].want);
		expect_text(s[i].want, &l, want);
	}
	log_begin(&l, "t");
	log_u64(&l, "msgs", 3);
	log_int(&l, "duration_ms", -5);
	log_u64(&l, "bytes_up", 0);
	expect_text("several", &l, "event=t msgs=3 duration_ms=-5 bytes_up=0");
}

static void test_fmt(void **state)
{
	struct logline l;
	struct pair p[4];
	static char big[5000];

	(void)state;
	log_begin(&l, "t");
	log_fmt(&l, "k", "%d-%s", 7, "x");
	expect_text("fmt bare", &l, "event=t k=7-x");
	log_begin(&l, "t");
	log_fmt(&l, "msg", "accept on %s: %s", "0.0.0.0:10025", "Too many");
	expect_text("fmt quoted", &l,
	    "event=t msg=\"accept on 0.0.0.0:10025: Too many\"");
	log_begin(&l, "t");
	log_fmt(&l, "k", "%s", "");
	expect_text("fmt empty", &l, "event=t k=\"\"");
	log_begin(&l, "t");
	log_fmt(&l, "k", "%c%c", '\n', '"');
	expect_text("fmt escaped", &l, "event=t k=\"\\n\\\"\"");

	/* A long formatted value is cut by log_fmt, never overflows, and the
	 * line stays well-formed. */
	memset(big, 'a', sizeof(big) - 1);
	log_begin(&l, "t");
	log_fmt(&l, "k", "%s", big);
	assert_true(l.len <= TEXT_MAX);
	EQ("fmt long", parse_line("fmt long", &l, p, 4), 2);
	assert_true(p[1].len > 0);
	assert_memory_equal(p[1].val, big, p[1].len);
}

/* Random byte strings round-trip through log_bytes and the reader. */
static void test_random_roundtrip(void **state)
{
	/* \xc3 and \xa9 make UTF-8 e-acute when they meet, junk otherwise */
	static const char alpha[] = "ab =\"\\\x00\x01\n\r\t\x7f\x80\xff~#\xc3\xa9";
	uint32_t x = 2463534242u;
	static struct pair p[8];

	(void)state;
	for (int round = 0; round < 3000; round++) {
		char vals[5][48];
		size_t lens[5];
		struct logline l;
		int n;

		log_begin(&l, "r");
		for (int k = 0; k < 5; k++) {
			char key[16];

			x ^= x << 13; x ^= x >> 17; x ^= x << 5;
			lens[k] = x % sizeof(vals[k]);
			for (size_t j = 0; j < lens[k]; j++) {
				x ^= x << 13; x ^= x >> 17; x ^= x << 5;
				vals[k][j] = alpha[x % (sizeof(alpha) - 1)];
			}
			snprintf(key, sizeof(key), "k%d", k);
			log_bytes(&l, key, vals[k], lens[k]);
		}
		assert_false(l.truncated);
		/* no control byte; bytes >= 0x80 only as whole UTF-8 */
		for (size_t j = 0; j < l.len; j++) {
			const unsigned char *u = (const unsigned char *)l.text;
			size_t ulen;

			assert_true(u[j] >= 0x20 && u[j] != 0x7f);
			if (u[j] >= 0x80) {
				ulen = utf8_char(u + j, l.len - j);
				assert_true(ulen > 0);
				j += ulen - 1;
			}
		}
		n = parse_line("random", &l, p, 8);
		assert_int_equal(n, 6);
		for (int k = 0; k < 5; k++) {
			assert_int_equal(p[k + 1].len, lens[k]);
			assert_memory_equal(p[k + 1].val, vals[k], lens[k]);
		}
	}
}

/*
 * A server's certificate subject that tries to forge keys: written last,
 * as session.c writes peer_subject, in quotes, so a reader gets it as one
 * value, and a tool that takes the first " KEY=" gets starttlsd's own.
 */
static void test_forged_keys(void **state)
{
	static const char *const forged[] = {
		"CN=x action=upgraded msgs=9",
		"CN=x\" action=upgraded msgs=9 y=\"",
		"CN=x\\\" msgs=9 \\\"",
		"CN=x\nevent=session action=upgraded msgs=9",
		"CN=x\r\n<22>starttlsd[1]: event=session msgs=9",
		"CN=\xc3\xa9 action=upgraded\xff msgs=9\x1b[2K",
	};
	struct pair p[16];

	(void)state;
	for (size_t i = 0; i < NELEM(forged); i++) {
		struct logline l;
		const char *m;
		int n;

		log_begin(&l, "session");
		log_str(&l, "id", "537c00a515c523f3");
		log_str(&l, "action", "plaintext");
		log_str(&l, "tls", "none");
		log_u64(&l, "msgs", 1);
		log_str(&l, "reason", "quit");
		log_str(&l, "peer_subject", forged[i]);
		log_str(&l, "peer_issuer", forged[i]);
		assert_false(l.truncated);
		assert_null(strchr(l.text, '\n'));
		assert_null(strchr(l.text, '\r'));
		n = parse_line(forged[i], &l, p, 16);
		EQ(forged[i], n, 8);
		assert_string_equal(p[2].key, "action");
		assert_string_equal(p[2].val, "plaintext");
		assert_string_equal(p[4].key, "msgs");
		assert_string_equal(p[4].val, "1");
		assert_string_equal(p[6].key, "peer_subject");
		assert_string_equal(p[6].val, forged[i]);
		assert_string_equal(p[7].key, "peer_issuer");
		assert_string_equal(p[7].val, forged[i]);
		/* the first match of a plain text search is the real key */
		m = strstr(l.text, " msgs=");
		assert_non_null(m);
		assert_memory_equal(m, " msgs=1 ", 8);
		m = strstr(l.text, " action=");
		assert_non_null(m);
		assert_memory_equal(m, " action=plaintext ", 18);
	}
}

/* Signal names, not numbers. */
static void test_signame(void **state)
{
	(void)state;
	assert_string_equal(log_signame(SIGTERM), "SIGTERM");
	assert_string_equal(log_signame(SIGINT), "SIGINT");
	assert_string_equal(log_signame(SIGKILL), "SIGKILL");
	assert_string_equal(log_signame(SIGSEGV), "SIGSEGV");
	assert_string_equal(log_signame(SIGUSR2), "SIGUSR2");
	/* whatever the name of one without an abbreviation, a bare word */
	for (int sig = 1; sig < 80; sig++) {
		const char *name = log_signame(sig);
		struct logline l;

		assert_memory_equal(name, "SIG", 3);
		log_begin(&l, "worker");
		log_str(&l, "signal", name);
		assert_null(strchr(l.text, '"'));
	}
}

/* ---- truncation -------------------------------------------------------------- */

/* A logline with a canary after it: a write past text[] would also run
 * through len and truncated, which ASan does not see inside one object. */
struct guarded {
	struct logline l;
	unsigned char canary[64];
};

static void guard_init(struct guarded *g)
{
	memset(g, 0xa5, sizeof(*g));
}

static void guard_check(const char *name, const struct guarded *g)
{
	for (size_t i = 0; i < sizeof(g->canary); i++)
		EQ(name, g->canary[i], 0xa5);
	EQ(name, g->l.len < LOG_LINE_MAX, 1);
	EQ(name, strlen(g->l.text), g->l.len);
}

/* "event=t" plus a bare pair " p=xxx..." so the text is exactly total. */
static void fill_to(struct logline *l, size_t total)
{
	static char pad[LOG_LINE_MAX];

	assert_true(total > 10 && total <= TEXT_MAX);  /* "event=t p=x" */
	memset(pad, 'x', sizeof(pad));
	log_begin(l, "t");
	log_bytes(l, "p", pad, total - 10);
	EQ("fill", l->len, total);
	assert_false(l->truncated);
}

static void test_truncate_boundary(void **state)
{
	struct guarded g;
	struct pair p[4];

	(void)state;
	log_open(false, false);

	/* Exactly TEXT_MAX bytes fit, and emit leaves them alone. */
	guard_init(&g);
	fill_to(&g.l, TEXT_MAX - 4);
	log_str(&g.l, "k", "1");           /* " k=1": 4 bytes */
	EQ("exact", g.l.len, TEXT_MAX);
	assert_false(g.l.truncated);
	log_emit(&g.l, LOG_INFO);
	EQ("exact emitted", g.l.len, TEXT_MAX);
	assert_false(g.l.truncated);
	EQ("exact", parse_line("exact", &g.l, p, 4), 3);
	guard_check("exact", &g);

	/* One byte more: the pair is dropped whole, the marker is added. */
	guard_init(&g);
	fill_to(&g.l, TEXT_MAX - 4);
	log_str(&g.l, "k", "12");          /* 5 bytes: one too many */
	assert_true(g.l.truncated);
	EQ("one over", g.l.len, TEXT_MAX - 4);
	log_emit(&g.l, LOG_INFO);
	EQ("one over emitted", g.l.len, TEXT_MAX - 4 + MARK_LEN);
	assert_string_equal(g.l.text + g.l.len - MARK_LEN, MARK);
	EQ("one over", parse_line("one over", &g.l, p, 4), 3);
	assert_string_equal(p[1].key, "p");
	assert_string_equal(p[2].key, "truncated");
	assert_string_equal(p[2].val, "1");
	guard_check("one over", &g);

	/* The longest line there can be: full text plus the marker. */
	guard_init(&g);
	fill_to(&g.l, TEXT_MAX);
	log_str(&g.l, "k", "");
	assert_true(g.l.truncated);
	log_emit(&g.l, LOG_INFO);
	EQ("longest", g.l.len, TEXT_MAX + MARK_LEN);
	assert_true(g.l.len < LOG_LINE_MAX);
	guard_check("longest", &g);

	/* After the cut nothing more is added, however small. */
	guard_init(&g);
	fill_to(&g.l, TEXT_MAX - 10);
	log_str(&g.l, "big", "0123456789");
	assert_true(g.l.truncated);
	log_str(&g.l, "a", "1");
	log_u64(&g.l, "b", 2);
	log_int(&g.l, "c", 3);
	log_fmt(&g.l, "d", "%d", 4);
	log_bytes(&g.l, "e", "", 0);
	EQ("after cut", g.l.len, TEXT_MAX - 10);
	log_emit(&g.l, LOG_INFO);
	EQ("after cut", parse_line("after cut", &g.l, p, 4), 3);
	assert_string_equal(p[2].key, "truncated");
	guard_check("after cut", &g);

	/* A huge value on a short line: the pair is dropped whole. */
	{
		static char huge[3 * LOG_LINE_MAX];

		memset(huge, '"', sizeof(huge));
		guard_init(&g);
		log_begin(&g.l, "t");
		log_str(&g.l, "a", "1");
		log_bytes(&g.l, "k", huge, sizeof(huge));
		log_str(&g.l, "z", "2");
		log_emit(&g.l, LOG_INFO);
		expect_text("huge", &g.l, "event=t a=1" MARK);
		guard_check("huge", &g);
	}

	/* log_begin on a truncated line starts clean. */
	log_begin(&g.l, "again");
	assert_false(g.l.truncated);
	expect_text("reuse", &g.l, "event=again");
	log_close();
}

/*
 * Sweep every fill level near the limit against values of every kind and
 * length: the text never passes LOG_LINE_MAX, the line always decodes, its
 * pairs are a prefix of the pairs given (each whole, with its own value),
 * and " truncated=1" ends it exactly when something was left out.
 */
static void test_truncate_sweep(void **state)
{
	static const char *const kinds[] = {
		"a",          /* bare */
		" ",          /* quoted, one byte each */
		"\n",         /* quoted, \n: two bytes each */
		"\x01",       /* quoted, \u0001: six bytes each */
		"\xc3\xa9",   /* quoted, UTF-8 as is */
		"\"",         /* quoted, \": two bytes each */
		"a\x01\"b ",  /* mixed */
	};
	static struct pair p[8];
	static char val[200];
	unsigned long lines = 0, cut = 0;

	(void)state;
	log_open(false, false);
	for (size_t fill = TEXT_MAX - 120; fill <= TEXT_MAX; fill++)
		for (size_t k = 0; k < NELEM(kinds); k++)
			for (size_t vlen = 0; vlen < sizeof(val); vlen += 1 + vlen / 16) {
				struct guarded g;
				size_t klen = strlen(kinds[k]);
				char name[96];
				int n, want_n;

				for (size_t j = 0; j < vlen; j++)
					val[j] = kinds[k][j % klen];
				snprintf(name, sizeof(name), "fill %zu kind %zu len %zu",
				    fill, k, vlen);
				guard_init(&g);
				fill_to(&g.l, fill);
				log_bytes(&g.l, "k", val, vlen);
				log_str(&g.l, "z", "end");
				assert_true(g.l.len <= TEXT_MAX);
				log_emit(&g.l, LOG_INFO);
				guard_check(name, &g);
				lines++;
				n = parse_line(name, &g.l, p, 8);
				/* event, p, [k, [z]], [truncated] */
				want_n = g.l.truncated ? n - 1 : n;
				assert_true(want_n >= 2 && want_n <= 4);
				assert_string_equal(p[0].key, "event");
				assert_string_equal(p[1].key, "p");
				EQ(name, p[1].len, fill - 10);
				if (want_n >= 3) {
					assert_string_equal(p[2].key, "k");
					EQ(name, p[2].len, vlen);
					EQ(name, memcmp(p[2].val, val, vlen), 0);
				}
				if (want_n == 4) {
					assert_string_equal(p[3].key, "z");
					assert_string_equal(p[3].val, "end");
				}
				if (g.l.truncated) {
					cut++;
					assert_string_equal(p[n - 1].key, "truncated");
					assert_string_equal(p[n - 1].val, "1");
					EQ(name, memcmp(g.l.text + g.l.len - MARK_LEN,
					    MARK, MARK_LEN), 0);
				} else {
					EQ(name, want_n, 4);
				}
			}
	/* the sweep did reach both sides of the limit */
	assert_true(cut > 0 && cut < lines);
	log_close();
}

/* Many small pairs: the line fills up, is cut between pairs, never grows. */
static void test_truncate_many_pairs(void **state)
{
	static struct pair p[LOG_LINE_MAX / 4];
	struct guarded g;
	size_t last = 0;
	int n, i;

	(void)state;
	log_open(false, false);
	guard_init(&g);
	log_begin(&g.l, "many");
	for (i = 0; i < 1000; i++) {
		char key[16];

		snprintf(key, sizeof(key), "k%d", i);
		log_int(&g.l, key, -i);
		assert_true(g.l.len >= last);
		assert_true(g.l.len <= TEXT_MAX);
		last = g.l.len;
	}
	assert_true(g.l.truncated);
	log_emit(&g.l, LOG_INFO);
	guard_check("many", &g);
	n = parse_line("many", &g.l, p, (int)NELEM(p));
	assert_true(n > 100);
	for (i = 1; i < n - 1; i++) {
		char key[16], v[16];

		snprintf(key, sizeof(key), "k%d", i - 1);
		snprintf(v, sizeof(v), "%d", -(i - 1));
		assert_string_equal(p[i].key, key);
		assert_string_equal(p[i].val, v);
	}
	assert_string_equal(p[n - 1].key, "truncated");
	log_close();
}

/* The stderr mirror: "YYYY-MM-DDTHH:MM:SS.mmmZ starttlsd[PID]: TEXT\n". */
static void test_emit_stderr(void **state)
{
	char path[] = "/tmp/test_log.XXXXXX", got[256], want[128];
	struct logline l;
	int fd, saved;
	ssize_t n;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);

	log_open(true, false);
	log_begin(&l, "t");
	log_str(&l, "k", "v w");
	log_emit(&l, LOG_INFO);
	log_set_stderr(false);
	log_begin(&l, "hidden");
	log_emit(&l, LOG_INFO);
	log_close();
	fflush(stderr);

	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	n = pread(fd, got, sizeof(got) - 1, 0);
	close(fd);
	unlink(path);
	assert_true(n > 0);
	got[n] = '\0';

	/* 2026-11-30T15:28:56.729Z = 24 bytes, then a blank */
	assert_true(n > 25);
	for (int i = 0; i < 24; i++) {
		static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
		if (shape[i] == 'd')
			assert_true(got[i] >= '0' && got[i] <= '9');
		else
			assert_int_equal(got[i], shape[i]);
	}
	snprintf(want, sizeof(want), " starttlsd[%d]: event=t k=\"v w\"\n",
	    (int)getpid());
	assert_string_equal(got + 24, want);  /* and nothing from "hidden" */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_begin),
		cmocka_unit_test(test_quoting_table),
		cmocka_unit_test(test_every_byte),
		cmocka_unit_test(test_null_skipped),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_fmt),
		cmocka_unit_test(test_random_roundtrip),
		cmocka_unit_test(test_forged_keys),
		cmocka_unit_test(test_signame),
		cmocka_unit_test(test_truncate_boundary),
		cmocka_unit_test(test_truncate_sweep),
		cmocka_unit_test(test_truncate_many_pairs),
		cmocka_unit_test(test_emit_stderr),
	};

	log_open(false, false);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
