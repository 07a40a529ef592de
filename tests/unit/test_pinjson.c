/*
 * Unit tests for proxy/pinjson.c (pins as JSON, read with jansson): the
 * writer's exact text, round trips, the forms the reader accepts, a table
 * of refused pins (every check the reader makes, with the byte each error
 * points at), duplicate members, invalid UTF-8, and whole arrays as
 * starttlsctl import reads them, with line and column in the whole text.
 */

#include "unit.h"

#include <jansson.h>

#include "starttlsd/pinjson.h"

#define T0 1714557600  /* 2024-05-01T10:00:00Z */

static const uint8_t spki_a[32] = { 0xaa, 1, 2, 3, [31] = 0x1f };
static const uint8_t spki_b[32] = { 0xbb, 9, 8, 7, [31] = 0xf1 };

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

static char *json_of(const struct pin *p)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);

	assert_non_null(fp);
	assert_int_equal(pin_json_write(fp, p), 0);
	assert_int_equal(fclose(fp), 0);
	return buf;
}

/* Line and column of text[off] counted by hand: columns in characters. */
static void line_col(const char *s, size_t off, size_t *line, size_t *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off; i++) {
		if (s[i] == '\n') {
			(*line)++;
			*col = 1;
		} else if (((unsigned char)s[i] & 0xc0) != 0x80)
			(*col)++;
	}
}

/* ---- writing ------------------------------------------------------------------- */

static void test_json_write(void **state)
{
	struct pin d = mk_dst("ip:198.51.100.25", T0, T0 + 86400, 12, 0x0304,
	    spki_a);
	struct pin m = mk_domain("domain:example.net", T0, T0, 3,
	    "198.51.100.25");
	char *s;

	(void)state;
	s = json_of(&d);
	STREQ("dst", s, "{\"key\":\"ip:198.51.100.25\",\"kind\":\"dst\","
	    "\"first_seen\":\"2024-05-01T10:00:00Z\","
	    "\"last_seen\":\"2024-05-02T10:00:00Z\",\"count\":12,"
	    "\"tls_version\":\"TLSv1.3\",\"spki_sha256\":"
	    "\"aa010203000000000000000000000000000000000000000000000000000000"
	    "1f\"}");
	free(s);
	s = json_of(&m);
	STREQ("domain", s, "{\"key\":\"domain:example.net\",\"kind\":\"domain\","
	    "\"first_seen\":\"2024-05-01T10:00:00Z\","
	    "\"last_seen\":\"2024-05-01T10:00:00Z\",\"count\":3,"
	    "\"via\":\"198.51.100.25\"}");
	free(s);
	d.has_spki = false;
	d.tls_version = 0x7f1c;  /* unnamed: a number */
	s = json_of(&d);
	CONTAINS("unnamed version", s, "\"tls_version\":32540}");
	free(s);
	/* jansson's integers are signed: a count past INT64_MAX is capped. */
	d.count = UINT64_MAX;
	s = json_of(&d);
	CONTAINS("huge count", s, "\"count\":9223372036854775807,");
	free(s);
	/* Times the ISO form cannot hold are written as seconds. */
	d.first_seen = PIN_TIME_MAX + 1;
	s = json_of(&d);
	CONTAINS("time past 9999", s, "\"first_seen\":253402300800,");
	free(s);
}

/* A failing stream is reported, not ignored. */
static void test_json_write_fails(void **state)
{
	struct pin d = mk_dst("ip:198.51.100.25", T0, T0, 1, 0x0304, spki_a);
	FILE *fp = fopen("/dev/full", "w");

	(void)state;
	assert_non_null(fp);
	setvbuf(fp, NULL, _IONBF, 0);
	EQ("/dev/full", pin_json_write(fp, &d), -1);
	fclose(fp);
}

/* Whatever the writer emits, the reader gives back unchanged. */
static void test_json_roundtrip(void **state)
{
	const struct pin pins[] = {
		mk_dst("ip:198.51.100.25", T0, T0 + 5, 12, 0x0304, spki_a),
		mk_dst("ip:2001:db8::25", 1, 1, 1, 0x0303, NULL),
		mk_dst("ip:192.0.2.1", T0, PIN_TIME_MAX, INT64_MAX, 0x7f1c,
		    spki_b),
		mk_domain("domain:example.net", T0, T0, 3, "198.51.100.25"),
		mk_domain("domain:xn--bcher-kva.example", T0, T0 + 1, 1, ""),
		mk_domain("domain:example.org", T0, T0, 1, "2001:db8::1"),
	};

	(void)state;
	for (size_t i = 0; i < NELEM(pins); i++) {
		char *s = json_of(&pins[i]);
		struct pin_json_err err;
		struct pin back;

		if (pin_json_parse(s, strlen(s), &back, &err) != PIN_JSON_OK) {
			print_error("%s: %s\n", s, err.text);
			fail();
		}
		expect_pin(pins[i].key, &back, &pins[i]);
		free(s);
	}
}

/* ---- reading one pin ----------------------------------------------------------- */

struct json_ok_case {
	const char *name;
	const char *in;
	struct pin want;
};

static void test_json_parse_forms(void **state)
{
	const struct json_ok_case cases[] = {
		{ "unix seconds, numeric version, no kind",
		  "{\"key\":\"ip:192.0.2.1\",\"first_seen\":1714557600,"
		  "\"last_seen\":1714557601,\"count\":2,\"tls_version\":771}",
		  mk_dst("ip:192.0.2.1", T0, T0 + 1, 2, 0x0303, NULL) },
		{ "whitespace, member order, null spki",
		  " \r\n\t{ \"count\" : 1 , \"tls_version\" : \"TLSv1.2\" ,"
		  "\"spki_sha256\":null, \"last_seen\":\"2024-05-01T10:00:00Z\","
		  " \"key\" : \"ip:192.0.2.1\", \"first_seen\": 1714557600 }\n",
		  mk_dst("ip:192.0.2.1", T0, T0, 1, 0x0303, NULL) },
		{ "upper-case SPKI hex",
		  "{\"key\":\"ip:192.0.2.1\",\"first_seen\":1,\"last_seen\":1,"
		  "\"count\":1,\"tls_version\":772,\"spki_sha256\":"
		  "\"AA01020300000000000000000000000000000000000000000000000000000"
		  "01F\"}",
		  mk_dst("ip:192.0.2.1", 1, 1, 1, 0x0304, spki_a) },
		{ "unknown members skipped",
		  "{\"key\":\"domain:example.net\",\"first_seen\":1,"
		  "\"last_seen\":1,\"count\":1,\"note\":\"x\\\"y\\u00e9\","
		  "\"future\":{\"a\":[1,-2.5e+3,true,false,null,{}],\"b\":[]},"
		  "\"n\":0,\"" "a-very-long-member-name-that-is-longer-than-"
		  "sixty-four-bytes-of-name-buffer\":1,\"via\":null}",
		  mk_domain("domain:example.net", 1, 1, 1, "") },
		{ "escaped key",
		  "{\"key\":\"domain:ex\\u0061mple.net\",\"kind\":\"domain\","
		  "\"first_seen\":1,\"last_seen\":1,\"count\":1,"
		  "\"via\":\"192.0.2.1\"}",
		  mk_domain("domain:example.net", 1, 1, 1, "192.0.2.1") },
		{ "valid UTF-8 in an unknown member",
		  "{\"key\":\"domain:example.net\",\"first_seen\":1,"
		  "\"last_seen\":1,\"count\":1,\"note\":\"b\xc3\xbc" "cher "
		  "\xe2\x82\xac \xf0\x9f\x93\xa7\"}",
		  mk_domain("domain:example.net", 1, 1, 1, "") },
		{ "largest count",
		  "{\"key\":\"domain:example.net\",\"first_seen\":1,"
		  "\"last_seen\":1,\"count\":9223372036854775807}",
		  mk_domain("domain:example.net", 1, 1, INT64_MAX, "") },
	};

	(void)state;
	for (size_t i = 0; i < NELEM(cases); i++) {
		struct pin_json_err err;
		struct pin got;

		if (pin_json_parse(cases[i].in, strlen(cases[i].in), &got,
		    &err) != PIN_JSON_OK) {
			print_error("%s: %s\n", cases[i].name, err.text);
			fail();
		}
		expect_pin(cases[i].name, &got, &cases[i].want);
	}
}

struct json_bad_case {
	const char *name;
	const char *in;
	const char *at;    /* the error points at the first occurrence of this
	                      ("" the end, "{" the object: a pin check) */
	const char *want;  /* err.text starts with this */
};

#define DST_HEAD "{\"key\":\"ip:192.0.2.1\",\"first_seen\":1,\"last_seen\":2,"
#define DOM_HEAD "{\"key\":\"domain:example.net\",\"first_seen\":1," \
	"\"last_seen\":2,\"count\":1"
#define SPKI_A "\"aa01020300000000000000000000000000000000000000000000000000" \
	"00001f\""

static const struct json_bad_case json_bad_cases[] = {
	/* The object around the pin. */
	{ "empty", "", "", "expected a pin object ('{'), found the end" },
	{ "white space only", " \n", "", "expected a pin object" },
	{ "an array", "[]", "[", "expected a pin object ('{')" },
	{ "a number", "1", "1", "expected a pin object ('{')" },
	{ "open brace only", "{", "{", "string or '}' expected near end of file" },
	{ "no closing brace", "{\"key\":\"x\",\"count\":7", "7",
	  "'}' expected near end of file" },
	{ "trailing comma", DOM_HEAD ",}", "}",
	  "string or '}' expected near '}'" },
	{ "missing colon", "{\"key\" \"x\"}", "\"}", "':' expected" },
	{ "bare member name", "{key:1}", "y:", "string or '}' expected near 'key'" },
	{ "data after the object", DOM_HEAD "} {}", "{}",
	  "unexpected data after the object" },
	/* Duplicate members, wherever they are. */
	{ "duplicate member", DOM_HEAD ",\"count\":2}", "\":2}",
	  "duplicate object key near '\"count\"'" },
	{ "duplicate unknown member", DOM_HEAD ",\"x\":1,\"x\":1}", "\":1}",
	  "duplicate object key near '\"x\"'" },
	{ "duplicate in a nested object", DOM_HEAD ",\"x\":{\"a\":1,\"a\":2}}",
	  "\":2}", "duplicate object key near '\"a\"'" },
	/* Invalid UTF-8, wherever it is: pointed at the bad byte. */
	{ "UTF-8: 0xff in the key", "{\"key\":\"domain:\xff\"}", "\xff",
	  "invalid UTF-8 (byte 0xff)" },
	{ "UTF-8: truncated sequence", DOM_HEAD ",\"x\":\"\xc3\"}", "\xc3",
	  "invalid UTF-8 (byte 0xc3)" },
	{ "UTF-8: overlong NUL", DOM_HEAD ",\"x\":\"\xc0\x80\"}", "\xc0",
	  "invalid UTF-8 (byte 0xc0)" },
	{ "UTF-8: encoded surrogate", DOM_HEAD ",\"x\":\"\xed\xa0\x80\"}",
	  "\xed", "invalid UTF-8 (byte 0xed)" },
	{ "UTF-8: past U+10FFFF", DOM_HEAD ",\"x\":\"\xf4\x90\x80\x80\"}",
	  "\xf4", "invalid UTF-8 (byte 0xf4)" },
	{ "UTF-8: in a member name", DOM_HEAD ",\"\xe2\x82\":1}", "\xe2",
	  "invalid UTF-8 (byte 0xe2)" },
	{ "UTF-8: a lone continuation byte", DOM_HEAD ",\"x\":\"a\x80\"}",
	  "\x80", "invalid UTF-8 (byte 0x80)" },
	/* Required members. */
	{ "missing key", "{\"first_seen\":1,\"last_seen\":2,\"count\":1}", "{",
	  "missing \"key\"" },
	{ "missing count", DST_HEAD "\"tls_version\":772}", "{",
	  "missing \"count\"" },
	{ "missing first_seen", "{\"key\":\"ip:192.0.2.1\",\"last_seen\":2,"
	  "\"count\":1,\"tls_version\":772}", "{", "missing \"first_seen\"" },
	{ "missing last_seen", "{\"key\":\"ip:192.0.2.1\",\"first_seen\":2,"
	  "\"count\":1,\"tls_version\":772}", "{", "missing \"last_seen\"" },
	{ "dst without version", DST_HEAD "\"count\":1}", "{",
	  "missing \"tls_version\" (a destination pin has one)" },
	/* count */
	{ "count 0", DST_HEAD "\"count\":0,\"tls_version\":772}", "{",
	  "count: must be at least 1" },
	{ "count negative", DST_HEAD "\"count\":-1,\"tls_version\":772}", "{",
	  "count: expected a non-negative integer, found -1" },
	{ "count fraction", DST_HEAD "\"count\":1.0,\"tls_version\":772}", "{",
	  "count: expected an integer, found a number with a fraction" },
	{ "count exponent", DST_HEAD "\"count\":1e3,\"tls_version\":772}", "{",
	  "count: expected an integer, found a number with a fraction or an "
	  "exponent" },
	{ "count leading zero", DST_HEAD "\"count\":01,\"tls_version\":772}",
	  "01", "invalid token near '0'" },
	{ "count 2^64", DST_HEAD "\"count\":18446744073709551616,"
	  "\"tls_version\":772}", "6,", "too big integer" },
	{ "count a string", DST_HEAD "\"count\":\"1\",\"tls_version\":772}",
	  "{", "count: expected a non-negative integer, found a string" },
	{ "count null", DST_HEAD "\"count\":null,\"tls_version\":772}",
	  "{", "count: expected a non-negative integer, found null" },
	/* Times. */
	{ "month 13", "{\"key\":\"ip:192.0.2.1\",\"first_seen\":"
	  "\"2024-13-01T00:00:00Z\"}", "{",
	  "first_seen: expected a time as YYYY-MM-DDTHH:MM:SSZ" },
	{ "February 30", "{\"key\":\"ip:192.0.2.1\",\"first_seen\":"
	  "\"2024-02-30T00:00:00Z\"}", "{", "first_seen: expected a time" },
	{ "space for T", "{\"key\":\"ip:192.0.2.1\",\"last_seen\":"
	  "\"2024-05-01 10:00:00Z\"}", "{", "last_seen: expected a time" },
	{ "offset not Z", "{\"key\":\"ip:192.0.2.1\",\"last_seen\":"
	  "\"2024-05-01T10:00:00+00:00\"}", "{", "last_seen: expected a time" },
	{ "a leap second", "{\"key\":\"ip:192.0.2.1\",\"last_seen\":"
	  "\"2016-12-31T23:59:60Z\"}", "{", "last_seen: expected a time" },
	{ "time past 9999", "{\"key\":\"ip:192.0.2.1\",\"last_seen\":"
	  "253402300800}", "{",
	  "last_seen: out of range (after 9999-12-31T23:59:59Z)" },
	{ "time negative", "{\"key\":\"ip:192.0.2.1\",\"first_seen\":-5}", "{",
	  "first_seen: expected a non-negative integer, found -5" },
	{ "time a fraction", "{\"key\":\"ip:192.0.2.1\",\"first_seen\":1.5}",
	  "{", "first_seen: expected an integer" },
	{ "time 0", "{\"key\":\"ip:192.0.2.1\",\"first_seen\":0,"
	  "\"last_seen\":1,\"count\":1,\"tls_version\":772}", "{",
	  "first_seen: out of range" },
	{ "last before first", "{\"key\":\"ip:192.0.2.1\",\"first_seen\":5,"
	  "\"last_seen\":4,\"count\":1,\"tls_version\":772}", "{",
	  "last_seen: before first_seen" },
	/* key and kind */
	{ "key not canonical", "{\"key\":\"ip:2001:DB8::1\",\"first_seen\":1,"
	  "\"last_seen\":1,\"count\":1,\"tls_version\":772}", "{",
	  "key: not in canonical form" },
	{ "key upper-case domain", "{\"key\":\"domain:Example.net\","
	  "\"first_seen\":1,\"last_seen\":1,\"count\":1}", "{",
	  "key: not in canonical form" },
	{ "key not an address", "{\"key\":\"ip:192.0.2\",\"first_seen\":1,"
	  "\"last_seen\":1,\"count\":1,\"tls_version\":772}", "{",
	  "key: not an IP address" },
	{ "key without prefix", "{\"key\":\"192.0.2.1\",\"first_seen\":1,"
	  "\"last_seen\":1,\"count\":1,\"tls_version\":772}", "{",
	  "key: expected ip:ADDRESS or domain:NAME" },
	{ "key a number", "{\"key\":1}", "{",
	  "key: expected a string, found an integer" },
	{ "key too long", "{\"key\":\"domain:"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaa\"}", "{", "key: too long (at most 299 bytes)" },
	{ "kind disagrees", "{\"key\":\"ip:192.0.2.1\",\"kind\":\"domain\","
	  "\"first_seen\":1,\"last_seen\":1,\"count\":1}", "{",
	  "kind: does not match the key" },
	{ "unknown kind", "{\"kind\":\"mx\"}", "{",
	  "kind: expected \"dst\" or \"domain\"" },
	{ "kind not a string", "{\"kind\":0}", "{",
	  "kind: expected \"dst\" or \"domain\"" },
	/* tls_version */
	{ "unknown version name", DST_HEAD "\"count\":1,\"tls_version\":"
	  "\"SSLv3\"}", "{", "tls_version: expected TLSv1.0, TLSv1.1, TLSv1.2, "
	  "TLSv1.3 or a number" },
	{ "version 0", DST_HEAD "\"count\":1,\"tls_version\":0}", "{",
	  "tls_version: missing or 0" },
	{ "version 65536", DST_HEAD "\"count\":1,\"tls_version\":65536}", "{",
	  "tls_version: out of range (at most 65535)" },
	{ "version true", DST_HEAD "\"count\":1,\"tls_version\":true}", "{",
	  "tls_version: expected a non-negative integer, found true" },
	{ "version on a domain", DOM_HEAD ",\"tls_version\":772}", "{",
	  "tls_version: only destination pins have one" },
	/* spki_sha256 */
	{ "spki short", DST_HEAD "\"count\":1,\"tls_version\":772,"
	  "\"spki_sha256\":\"abcd\"}", "{",
	  "spki_sha256: expected 64 hex digits (a SHA-256) or null" },
	{ "spki not hex", DST_HEAD "\"count\":1,\"tls_version\":772,"
	  "\"spki_sha256\":\"zz01020300000000000000000000000000000000000000000"
	  "00000000000001f\"}", "{", "spki_sha256: expected 64 hex digits" },
	{ "spki a number", DST_HEAD "\"count\":1,\"tls_version\":772,"
	  "\"spki_sha256\":12}", "{", "spki_sha256: expected 64 hex digits" },
	{ "spki on a domain", DOM_HEAD ",\"spki_sha256\":" SPKI_A "}", "{",
	  "spki_sha256: only destination pins have one" },
	/* via */
	{ "via on a destination", DST_HEAD "\"count\":1,\"tls_version\":772,"
	  "\"via\":\"192.0.2.2\"}", "{", "via: only domain pins have one" },
	{ "via a name", DOM_HEAD ",\"via\":\"mx.example.net\"}", "{",
	  "via: not an IP address" },
	{ "via not canonical", DOM_HEAD ",\"via\":\"2001:DB8::1\"}", "{",
	  "via: not an IP address in canonical form" },
	{ "via too long", DOM_HEAD ",\"via\":\"1111111111111111111111111111111"
	  "111111111111111111111\"}", "{", "via: too long (at most 47 bytes)" },
	{ "via an array", DOM_HEAD ",\"via\":[]}", "{",
	  "via: expected a string, found an array" },
	/* Strings: what jansson refuses. */
	{ "control character", "{\"key\":\"a\tb\"}", "a\tb",
	  "control character 0x9" },
	{ "bad escape", "{\"key\":\"a\\qb\"}", "q", "invalid escape" },
	{ "short unicode escape", "{\"key\":\"\\u12\"}", "\"}",
	  "invalid escape" },
	{ "lone high surrogate", "{\"key\":\"\\ud800x\"}", "\"}",
	  "invalid Unicode '\\uD800'" },
	{ "lone low surrogate", "{\"key\":\"\\udc00\"}", "\"}",
	  "invalid Unicode '\\uDC00'" },
	{ "NUL escape", "{\"key\":\"a\\u0000\"}", "\"}",
	  "\\u0000 (NUL) in a string" },
	{ "unterminated string", "{\"key\":\"abc", "c",
	  "premature end of input" },
	{ "unknown member, bad value", DOM_HEAD ",\"x\":tru}", "u}",
	  "invalid token near 'tru'" },
	{ "unknown member, bad number", DOM_HEAD ",\"x\":1.}", ".}",
	  "invalid token near '1.'" },
	{ "a terminal escape, not echoed", DOM_HEAD ",\"x\":\x1b[31m}", "\x1b",
	  "invalid token near '?'" },
	{ "unknown member, unclosed array", DOM_HEAD ",\"x\":[1,2}", "}",
	  "']' expected near '}'" },
};

/* The member an error text is about: "count: ..." or "missing \"count\"". */
static const char *member_of(const char *want)
{
	static const char *const names[] = { "key", "kind", "first_seen",
	    "last_seen", "count", "tls_version", "spki_sha256", "via" };

	for (size_t i = 0; i < NELEM(names); i++) {
		size_t n = strlen(names[i]);

		if ((strncmp(want, names[i], n) == 0 && want[n] == ':') ||
		    (strncmp(want, "missing \"", 9) == 0 &&
		    strncmp(want + 9, names[i], n) == 0 && want[9 + n] == '"'))
			return names[i];
	}
	return NULL;
}

static void test_json_bad_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < NELEM(json_bad_cases); i++) {
		const struct json_bad_case *c = &json_bad_cases[i];
		const char *at = c->at[0] ? strstr(c->in, c->at) : c->in +
		    strlen(c->in);
		struct pin_json_err err;
		struct pin out, canary;
		size_t line, col;
		int r;

		memset(&canary, 0x5a, sizeof(canary));
		out = canary;
		r = pin_json_parse(c->in, strlen(c->in), &out, &err);
		EQ(c->name, r, PIN_JSON_INVALID);
		EQ(c->name, memcmp(&out, &canary, sizeof(out)), 0);
		assert_non_null(at);
		if (err.offset != (size_t)(at - c->in) ||
		    strncmp(err.text, c->want, strlen(c->want)) != 0) {
			char b[512];

			print_error("%s:\n  got  at %zu: \"%s\"\n  want at %zu: "
			    "\"%s...\"\n  in   %s\n", c->name, err.offset,
			    err.text, (size_t)(at - c->in), c->want,
			    esc(c->in, strlen(c->in), b, sizeof(b)));
			fail();
		}
		line_col(c->in, err.offset, &line, &col);
		EQ(c->name, err.line, line);
		EQ(c->name, err.column, col);
		EQ(c->name, err.pin, 0);
		/* A pin check names its member, a syntax error none. */
		STREQ(c->name, err.member, member_of(c->want));
	}
	/* The length is honoured: no reading past it. */
	{
		const char *s = DOM_HEAD "}";
		struct pin_json_err err;
		struct pin out;

		EQ("short", pin_json_parse(s, strlen(s) - 1, &out, &err),
		    PIN_JSON_INVALID);
		EQ("whole", pin_json_parse(s, strlen(s), &out, &err),
		    PIN_JSON_OK);
		EQ("NULL", pin_json_parse(NULL, 0, &out, &err),
		    PIN_JSON_INVALID);
	}
}

/* Every prefix of a good object fails cleanly (no over-read under ASan). */
static void test_json_prefixes(void **state)
{
	struct pin p = mk_dst("ip:2001:db8::25", T0, T0 + 5, 12, 0x0304, spki_a);
	char *s = json_of(&p);
	struct pin_json_err err;
	size_t n = strlen(s);

	(void)state;
	for (size_t k = 0; k < n; k++) {
		char *cut = malloc(k + 1);
		struct pin out;

		assert_non_null(cut);
		memcpy(cut, s, k);
		EQ("prefix", pin_json_parse(cut, k, &out, &err),
		    PIN_JSON_INVALID);
		EQ("prefix", err.offset <= k, 1);
		free(cut);
	}
	free(s);
}

/* ---- arrays (starttlsctl import) ----------------------------------------------- */

static void test_array_ok(void **state)
{
	const struct pin a = mk_dst("ip:198.51.100.25", T0, T0 + 5, 12, 0x0304,
	    spki_a);
	const struct pin b = mk_domain("domain:example.net", T0, T0, 3,
	    "198.51.100.25");
	char *ja = json_of(&a), *jb = json_of(&b), text[2048];
	/* Before the first pin, between them, after the second. */
	const char *forms[][3] = {
		{ "[\n  ", ",\n  ", "\n]\n" },      /* as export writes it */
		{ "\xef\xbb\xbf[", ",", "]" },         /* a byte order mark */
		{ " \t\r\n[ \n", "\r\n,\t", " ]\n\n" },  /* white space anywhere */
	};
	struct pin_json_err err;
	struct pin *v;
	size_t n;

	(void)state;
	for (size_t i = 0; i < NELEM(forms); i++) {
		snprintf(text, sizeof(text), "%s%s%s%s%s", forms[i][0], ja,
		    forms[i][1], jb, forms[i][2]);
		if (pin_json_parse_array(text, strlen(text), &v, &n, &err) !=
		    PIN_JSON_OK) {
			print_error("form %zu: %zu:%zu: %s\n", i, err.line,
			    err.column, err.text);
			fail();
		}
		EQ("n", n, 2);
		expect_pin("first, in input order", &v[0], &a);
		expect_pin("second", &v[1], &b);
		free(v);
	}
	EQ("empty", pin_json_parse_array(S("[]"), &v, &n, &err), PIN_JSON_OK);
	EQ("empty n", n, 0);
	EQ("empty ptr", v == NULL, 1);
	EQ("empty, spaced", pin_json_parse_array(S(" [ \n ] \n"), &v, &n, &err),
	    PIN_JSON_OK);
	free(ja);
	free(jb);
}

struct array_bad_case {
	const char *name;
	const char *in;
	size_t line, column, pin;
	const char *want;  /* err.text starts with this */
};

#define PA "{\"key\":\"ip:192.0.2.1\",\"first_seen\":1,\"last_seen\":2," \
	"\"count\":1,\"tls_version\":772}"
#define PB "{\"key\":\"domain:example.net\",\"first_seen\":1,\"last_seen\":2," \
	"\"count\":1}"

static const struct array_bad_case array_bad_cases[] = {
	{ "empty input", "", 1, 1, 0, "expected a JSON array ('[') of pins" },
	{ "an object", PA, 1, 1, 0, "expected a JSON array" },
	{ "a BOM takes no column", "\xef\xbb\xbf{", 1, 1, 0,
	  "expected a JSON array" },
	{ "unterminated", "[\n" PA, 2, 80, 0, "unterminated array" },
	{ "trailing comma", "[\n" PA ",\n]", 3, 1, 2,
	  "expected a pin object ('{')" },
	{ "a number in the array", "[\n  " PA ",\n  7\n]", 3, 3, 2,
	  "expected a pin object ('{')" },
	{ "missing comma", "[\n" PA "\n" PB "]", 3, 1, 0,
	  "expected ',' or ']' after a pin" },
	{ "data after the array", "[" PA "]\n[]", 2, 1, 0,
	  "unexpected data after the array" },
	/* A syntax error: the place jansson stumbled, in the whole file. */
	{ "invalid token, line 3", "[\n  " PA ",\n  {\"key\":01}\n]", 3, 10, 2,
	  "invalid token near '0'" },
	{ "duplicate member, line 2", "[\n {\"count\":1,\"count\":1}]", 2, 19,
	  1, "duplicate object key near '\"count\"'" },
	/* Invalid UTF-8: at the byte; the characters before count one each. */
	{ "invalid UTF-8, line 2", "[\n {\"x\":\"\xc3\xa9\xe2\x82\xac\xff\"}]",
	  2, 10, 1, "invalid UTF-8 (byte 0xff)" },
	/* A pin check: at its '{', with the pin's number. */
	{ "pin check, pin 3 on line 4", "[\n" PA ",\n" PB ",\n"
	  "   {\"key\":\"ip:192.0.2.9\",\"first_seen\":1,\"last_seen\":2,"
	  "\"count\":0,\"tls_version\":772}\n]", 4, 4, 3,
	  "count: must be at least 1" },
	/* The same key twice: the second pin, the first one's line. */
	{ "same key twice", "[\n" PA ",\n" PB ",\n  " PA "\n]", 4, 3, 3,
	  "duplicate key ip:192.0.2.1 (pin #1, line 2, has it too)" },
};

static void test_array_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < NELEM(array_bad_cases); i++) {
		const struct array_bad_case *c = &array_bad_cases[i];
		struct pin_json_err err;
		struct pin *v = (struct pin *)&err;
		size_t n = 99, line, col;
		int r;

		r = pin_json_parse_array(c->in, strlen(c->in), &v, &n, &err);
		EQ(c->name, r, PIN_JSON_INVALID);
		EQ(c->name, v == NULL, 1);
		EQ(c->name, n, 0);
		if (err.line != c->line || err.column != c->column ||
		    err.pin != c->pin ||
		    strncmp(err.text, c->want, strlen(c->want)) != 0) {
			print_error("%s:\n  got  %zu:%zu: pin #%zu: \"%s\"\n"
			    "  want %zu:%zu: pin #%zu: \"%s...\"\n", c->name,
			    err.line, err.column, err.pin, err.text, c->line,
			    c->column, c->pin, c->want);
			fail();
		}
		/* The offset says the same place as line and column. */
		line_col(c->in, err.offset, &line, &col);
		if (strncmp(c->in, "\xef\xbb\xbf", 3) != 0) {
			EQ(c->name, err.line, line);
			EQ(c->name, err.column, col);
		}
	}
}

/*
 * Line and column are jansson's own: for a syntax error inside a pin, the
 * place jansson gives when it reads the whole file at once.
 */
static void test_array_place_is_janssons(void **state)
{
	const char *docs[] = {
		"[\n  " PA ",\n  {\"key\":\"x\",\n   \"key\":\"y\"}\n]",
		"[\n  " PA ",\n\n      {\"a\": [1, 2,\n   3, tru]}\n]",
		"[" PA ",\n {\"a\":\"\xc3\xa9\xc3\xa9\", \"b\": 012}]",
		"[\n {\"a\":\n\n  1.e5}]",
	};

	(void)state;
	for (size_t i = 0; i < NELEM(docs); i++) {
		struct pin_json_err err;
		json_error_t je;
		json_t *j;
		struct pin *v;
		size_t n;

		j = json_loadb(docs[i], strlen(docs[i]), JSON_REJECT_DUPLICATES,
		    &je);
		assert_null(j);
		EQ(docs[i], pin_json_parse_array(docs[i], strlen(docs[i]), &v,
		    &n, &err), PIN_JSON_INVALID);
		if (err.line != (size_t)je.line ||
		    err.column != (size_t)je.column ||
		    strcmp(err.text, je.text) != 0) {
			print_error("doc %zu: ours %zu:%zu \"%s\", jansson's "
			    "%d:%d \"%s\"\n", i, err.line, err.column, err.text,
			    je.line, je.column, je.text);
			fail();
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_write),
		cmocka_unit_test(test_json_write_fails),
		cmocka_unit_test(test_json_roundtrip),
		cmocka_unit_test(test_json_parse_forms),
		cmocka_unit_test(test_json_bad_table),
		cmocka_unit_test(test_json_prefixes),
		cmocka_unit_test(test_array_ok),
		cmocka_unit_test(test_array_errors),
		cmocka_unit_test(test_array_place_is_janssons),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
