/*
 * pinjson: pins as JSON, one object each, for starttlsctl list --json,
 * export and import (pinstore.h). The writer emits ISO 8601 UTC times and
 * names for TLS versions; the reader is strict about syntax (a flat object,
 * no duplicate members, integers without fraction or sign), accepts what the
 * writer emits plus unix seconds and numeric TLS versions, skips members it
 * does not know (a newer version's), and checks the pin with pin_check().
 */
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "starttlsd/pinstore.h"


static bool
ascii_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static const char *
tls_version_name(uint16_t v)
{
	switch (v) {
	case 0x0301: return "TLSv1.0";
	case 0x0302: return "TLSv1.1";
	case 0x0303: return "TLSv1.2";
	case 0x0304: return "TLSv1.3";
	default: return NULL;
	}
}

static void
json_str(FILE *fp, const char *s)
{
	fputc('"', fp);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(fp, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			fprintf(fp, "\\u%04x", c);
		else
			fputc(c, fp);
	}
	fputc('"', fp);
}

/* ISO 8601 UTC when it fits the form, else plain seconds. */
static void
json_time(FILE *fp, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	char buf[32];

	if (t >= 0 && t <= PIN_TIME_MAX && gmtime_r(&tt, &tm) != NULL &&
	    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm) == 20)
		fprintf(fp, "\"%s\"", buf);
	else
		fprintf(fp, "%" PRId64, t);
}

void
pin_json_write(FILE *fp, const struct pin *p)
{
	fputs("{\"key\":", fp);
	json_str(fp, p->key);
	fprintf(fp, ",\"kind\":\"%s\",\"first_seen\":",
	    p->kind == PIN_DOMAIN ? "domain" : "dst");
	json_time(fp, p->first_seen);
	fputs(",\"last_seen\":", fp);
	json_time(fp, p->last_seen);
	fprintf(fp, ",\"count\":%" PRIu64, p->count);
	if (p->kind == PIN_DOMAIN) {
		fputs(",\"via\":", fp);
		json_str(fp, p->via);
	} else {
		if (tls_version_name(p->tls_version) != NULL)
			fprintf(fp, ",\"tls_version\":\"%s\"",
			    tls_version_name(p->tls_version));
		else
			fprintf(fp, ",\"tls_version\":%u", p->tls_version);
		if (p->has_spki) {
			fputs(",\"spki_sha256\":\"", fp);
			for (size_t i = 0; i < sizeof(p->spki); i++)
				fprintf(fp, "%02x", p->spki[i]);
			fputc('"', fp);
		}
	}
	fputc('}', fp);
}

/*
 * A small strict parser for one flat object. Errors start "at byte N: "
 * (N counted from the start of text) so starttlsctl can turn them into a
 * line and column of the whole file.
 */
#define JSON_STR_MAX 512
#define JSON_DEPTH_MAX 32

struct jp {
	const char *s;
	size_t n, i;
	char *err;
	size_t errlen;
	const char *member;  /* named in errors while its value is parsed */
};

static int __attribute__((format(printf, 3, 4)))
jp_fail(struct jp *j, size_t at, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (j->member != NULL)
		snprintf(j->err, j->errlen, "at byte %zu: %s: %s", at, j->member,
		    why);
	else
		snprintf(j->err, j->errlen, "at byte %zu: %s", at, why);
	return -1;
}

static void
jp_ws(struct jp *j)
{
	while (j->i < j->n && (j->s[j->i] == ' ' || j->s[j->i] == '\t' ||
	    j->s[j->i] == '\n' || j->s[j->i] == '\r'))
		j->i++;
}

static int
jp_expect(struct jp *j, char c, const char *what)
{
	jp_ws(j);
	if (j->i >= j->n)
		return jp_fail(j, j->i, "expected %s, found the end", what);
	if (j->s[j->i] != c)
		return jp_fail(j, j->i, "expected %s", what);
	j->i++;
	return 0;
}

static int
hex_val(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int
jp_hex4(struct jp *j, unsigned *out)
{
	unsigned v = 0;

	if (j->n - j->i < 4)
		return jp_fail(j, j->i, "short \\u escape");
	for (int k = 0; k < 4; k++) {
		int h = hex_val((unsigned char)j->s[j->i + k]);

		if (h < 0)
			return jp_fail(j, j->i + k, "bad \\u escape");
		v = v << 4 | (unsigned)h;
	}
	j->i += 4;
	*out = v;
	return 0;
}

/* A string at j->i into out (NUL-terminated; out NULL: just skip it). */
static int
jp_string(struct jp *j, char *out, size_t cap)
{
	size_t o = 0, start;

	jp_ws(j);
	start = j->i;
	if (j->i >= j->n || j->s[j->i] != '"')
		return jp_fail(j, j->i, "expected a string");
	j->i++;
	for (;;) {
		unsigned char c, u8[4];
		unsigned cp;
		size_t nu = 0;

		if (j->i >= j->n)
			return jp_fail(j, start, "unterminated string");
		c = (unsigned char)j->s[j->i];
		if (c == '"') {
			j->i++;
			break;
		}
		if (c < 0x20)
			return jp_fail(j, j->i, "control character in a string");
		if (c != '\\') {
			u8[nu++] = c;
			j->i++;
		} else {
			if (++j->i >= j->n)
				return jp_fail(j, start, "unterminated string");
			c = (unsigned char)j->s[j->i++];
			switch (c) {
			case '"': case '\\': case '/': u8[nu++] = c; break;
			case 'b': u8[nu++] = '\b'; break;
			case 'f': u8[nu++] = '\f'; break;
			case 'n': u8[nu++] = '\n'; break;
			case 'r': u8[nu++] = '\r'; break;
			case 't': u8[nu++] = '\t'; break;
			case 'u':
				if (jp_hex4(j, &cp) < 0)
					return -1;
				if (cp >= 0xd800 && cp <= 0xdbff) {
					unsigned lo;

					if (j->n - j->i < 2 || j->s[j->i] != '\\' ||
					    j->s[j->i + 1] != 'u')
						return jp_fail(j, j->i,
						    "lone surrogate");
					j->i += 2;
					if (jp_hex4(j, &lo) < 0)
						return -1;
					if (lo < 0xdc00 || lo > 0xdfff)
						return jp_fail(j, j->i - 6,
						    "lone surrogate");
					cp = 0x10000 + ((cp - 0xd800) << 10) +
					    (lo - 0xdc00);
				} else if (cp >= 0xdc00 && cp <= 0xdfff)
					return jp_fail(j, j->i - 6,
					    "lone surrogate");
				if (cp == 0)
					return jp_fail(j, j->i - 6,
					    "NUL in a string");
				if (cp < 0x80)
					u8[nu++] = (unsigned char)cp;
				else if (cp < 0x800) {
					u8[nu++] = (unsigned char)(0xc0 | cp >> 6);
					u8[nu++] = (unsigned char)(0x80 | (cp & 0x3f));
				} else if (cp < 0x10000) {
					u8[nu++] = (unsigned char)(0xe0 | cp >> 12);
					u8[nu++] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
					u8[nu++] = (unsigned char)(0x80 | (cp & 0x3f));
				} else {
					u8[nu++] = (unsigned char)(0xf0 | cp >> 18);
					u8[nu++] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
					u8[nu++] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
					u8[nu++] = (unsigned char)(0x80 | (cp & 0x3f));
				}
				break;
			default:
				return jp_fail(j, j->i - 2, "bad escape \\%c",
				    c >= 0x20 && c < 0x7f ? c : '?');
			}
		}
		if (out == NULL)
			continue;
		if (o + nu >= cap)
			return jp_fail(j, start, "string too long");
		memcpy(out + o, u8, nu);
		o += nu;
	}
	if (out != NULL)
		out[o] = '\0';
	return 0;
}

/* A non-negative integer: digits only, no sign, fraction or exponent. */
static int
jp_uint(struct jp *j, uint64_t max, uint64_t *out)
{
	size_t start;
	uint64_t v = 0;

	jp_ws(j);
	start = j->i;
	if (j->i >= j->n || !ascii_digit((unsigned char)j->s[j->i]))
		return jp_fail(j, start, "expected a non-negative integer");
	if (j->s[j->i] == '0' && j->i + 1 < j->n &&
	    ascii_digit((unsigned char)j->s[j->i + 1]))
		return jp_fail(j, start, "leading zero");
	for (; j->i < j->n && ascii_digit((unsigned char)j->s[j->i]); j->i++) {
		unsigned d = (unsigned)(j->s[j->i] - '0');

		if (v > (max - d) / 10)
			return jp_fail(j, start, "number out of range");
		v = v * 10 + d;
	}
	if (j->i < j->n && (j->s[j->i] == '.' || j->s[j->i] == 'e' ||
	    j->s[j->i] == 'E'))
		return jp_fail(j, start, "expected an integer");
	*out = v;
	return 0;
}

static bool
jp_literal(struct jp *j, const char *lit)
{
	size_t n = strlen(lit);

	jp_ws(j);
	if (j->n - j->i >= n && memcmp(j->s + j->i, lit, n) == 0) {
		j->i += n;
		return true;
	}
	return false;
}

/* Any JSON value (an unknown member's), checked for syntax, not kept. */
static int
jp_skip(struct jp *j, int depth)
{
	size_t start;

	jp_ws(j);
	start = j->i;
	if (depth > JSON_DEPTH_MAX)
		return jp_fail(j, start, "nested too deeply");
	if (j->i >= j->n)
		return jp_fail(j, start, "expected a value, found the end");
	switch (j->s[j->i]) {
	case '"':
		return jp_string(j, NULL, 0);
	case '{':
	case '[': {
		char close = j->s[j->i] == '{' ? '}' : ']';

		j->i++;
		jp_ws(j);
		if (j->i < j->n && j->s[j->i] == close) {
			j->i++;
			return 0;
		}
		for (;;) {
			if (close == '}' && (jp_string(j, NULL, 0) < 0 ||
			    jp_expect(j, ':', "':'") < 0))
				return -1;
			if (jp_skip(j, depth + 1) < 0)
				return -1;
			jp_ws(j);
			if (j->i < j->n && j->s[j->i] == ',') {
				j->i++;
				continue;
			}
			return jp_expect(j, close, close == '}' ? "',' or '}'" :
			    "',' or ']'");
		}
	}
	default:
		break;
	}
	if (jp_literal(j, "true") || jp_literal(j, "false") ||
	    jp_literal(j, "null"))
		return 0;
	/* A number, by the JSON grammar. */
	if (j->s[j->i] == '-')
		j->i++;
	if (j->i >= j->n || !ascii_digit((unsigned char)j->s[j->i]))
		return jp_fail(j, start, "expected a value");
	if (j->s[j->i] == '0')
		j->i++;
	else
		while (j->i < j->n && ascii_digit((unsigned char)j->s[j->i]))
			j->i++;
	if (j->i < j->n && j->s[j->i] == '.') {
		j->i++;
		if (j->i >= j->n || !ascii_digit((unsigned char)j->s[j->i]))
			return jp_fail(j, start, "bad number");
		while (j->i < j->n && ascii_digit((unsigned char)j->s[j->i]))
			j->i++;
	}
	if (j->i < j->n && (j->s[j->i] == 'e' || j->s[j->i] == 'E')) {
		j->i++;
		if (j->i < j->n && (j->s[j->i] == '+' || j->s[j->i] == '-'))
			j->i++;
		if (j->i >= j->n || !ascii_digit((unsigned char)j->s[j->i]))
			return jp_fail(j, start, "bad number");
		while (j->i < j->n && ascii_digit((unsigned char)j->s[j->i]))
			j->i++;
	}
	return 0;
}

/* "YYYY-MM-DDTHH:MM:SSZ" → unix seconds; -1 if not exactly that. */
static int
iso_parse(const char *s, int64_t *out)
{
	static const char form[] = "dddd-dd-ddTdd:dd:ddZ";
	struct tm tm = { 0 }, chk;
	time_t t;
	int v[6] = { 0 }, f = 0;

	if (strlen(s) != sizeof(form) - 1)
		return -1;
	for (size_t i = 0; form[i] != '\0'; i++) {
		if (form[i] != 'd') {
			if (s[i] != form[i])
				return -1;
			f++;
			continue;
		}
		if (!ascii_digit((unsigned char)s[i]))
			return -1;
		v[f] = v[f] * 10 + (s[i] - '0');
	}
	tm.tm_year = v[0] - 1900;
	tm.tm_mon = v[1] - 1;
	tm.tm_mday = v[2];
	tm.tm_hour = v[3];
	tm.tm_min = v[4];
	tm.tm_sec = v[5];
	if ((t = timegm(&tm)) == (time_t)-1 || gmtime_r(&t, &chk) == NULL ||
	    chk.tm_year != v[0] - 1900 || chk.tm_mon != v[1] - 1 ||
	    chk.tm_mday != v[2] || chk.tm_hour != v[3] || chk.tm_min != v[4] ||
	    chk.tm_sec != v[5])
		return -1;  /* 2024-02-30, 25:00, a leap second */
	*out = (int64_t)t;
	return 0;
}

static int
jp_time(struct jp *j, int64_t *out)
{
	char buf[JSON_STR_MAX];
	size_t start;
	uint64_t u;

	jp_ws(j);
	start = j->i;
	if (j->i < j->n && j->s[j->i] == '"') {
		if (jp_string(j, buf, sizeof(buf)) < 0)
			return -1;
		if (iso_parse(buf, out) < 0)
			return jp_fail(j, start, "expected a time as "
			    "YYYY-MM-DDTHH:MM:SSZ");
		return 0;
	}
	if (jp_uint(j, (uint64_t)PIN_TIME_MAX, &u) < 0)
		return -1;
	*out = (int64_t)u;
	return 0;
}

enum { M_KEY, M_KIND, M_FIRST, M_LAST, M_COUNT, M_TLSV, M_SPKI, M_VIA, M_N };
static const char *const member_names[M_N] = {
	"key", "kind", "first_seen", "last_seen", "count", "tls_version",
	"spki_sha256", "via",
};

static int
jp_member(struct jp *j, int m, struct pin *out, bool *kind_given,
    enum pin_kind *kind)
{
	char buf[JSON_STR_MAX];
	size_t start;
	uint64_t u;

	jp_ws(j);
	start = j->i;
	switch (m) {
	case M_KEY:
		if (jp_string(j, buf, sizeof(buf)) < 0)
			return -1;
		if (strlen(buf) >= sizeof(out->key))
			return jp_fail(j, start, "too long");
		memcpy(out->key, buf, strlen(buf) + 1);
		return 0;
	case M_KIND:
		if (jp_string(j, buf, sizeof(buf)) < 0)
			return -1;
		if (strcmp(buf, "dst") == 0)
			*kind = PIN_DST;
		else if (strcmp(buf, "domain") == 0)
			*kind = PIN_DOMAIN;
		else
			return jp_fail(j, start, "expected \"dst\" or "
			    "\"domain\"");
		*kind_given = true;
		return 0;
	case M_FIRST:
		return jp_time(j, &out->first_seen);
	case M_LAST:
		return jp_time(j, &out->last_seen);
	case M_COUNT:
		return jp_uint(j, UINT64_MAX, &out->count);
	case M_TLSV:
		if (j->i < j->n && j->s[j->i] == '"') {
			if (jp_string(j, buf, sizeof(buf)) < 0)
				return -1;
			for (unsigned v = 0x0301; v <= 0x0304; v++)
				if (strcmp(buf, tls_version_name((uint16_t)v)) == 0)
					out->tls_version = (uint16_t)v;
			if (out->tls_version == 0)
				return jp_fail(j, start, "expected TLSv1.0 .. "
				    "TLSv1.3 or a number");
			return 0;
		}
		if (jp_uint(j, UINT16_MAX, &u) < 0)
			return -1;
		out->tls_version = (uint16_t)u;
		return 0;
	case M_SPKI:
		if (jp_literal(j, "null"))
			return 0;
		if (jp_string(j, buf, sizeof(buf)) < 0)
			return -1;
		if (strlen(buf) != 64)
			return jp_fail(j, start, "expected 64 hex digits");
		for (size_t i = 0; i < 32; i++) {
			int hi = hex_val((unsigned char)buf[2 * i]);
			int lo = hex_val((unsigned char)buf[2 * i + 1]);

			if (hi < 0 || lo < 0)
				return jp_fail(j, start, "expected 64 hex "
				    "digits");
			out->spki[i] = (uint8_t)(hi << 4 | lo);
		}
		out->has_spki = true;
		return 0;
	case M_VIA:
		if (jp_literal(j, "null"))
			return 0;
		if (jp_string(j, buf, sizeof(buf)) < 0)
			return -1;
		if (strlen(buf) >= sizeof(out->via))
			return jp_fail(j, start, "too long");
		memcpy(out->via, buf, strlen(buf) + 1);
		return 0;
	default:
		return jp_skip(j, 1);
	}
}

int
pin_json_parse(const char *text, size_t len, struct pin *out, char *err,
    size_t errlen)
{
	struct jp j = { .s = text, .n = len, .err = err, .errlen = errlen };
	size_t at[M_N] = { 0 }, end;
	bool seen[M_N] = { false }, kind_given = false;
	const char *why, *field;
	enum pin_kind kind = PIN_DST, key_kind_v = PIN_DST;
	char name[64];
	struct pin p;

	memset(&p, 0, sizeof(p));
	if (text == NULL)
		return jp_fail(&j, 0, "no input");
	if (jp_expect(&j, '{', "'{'") < 0)
		return -1;
	jp_ws(&j);
	if (j.i < j.n && j.s[j.i] == '}')
		j.i++;
	else
		for (;;) {
			size_t mstart;
			int m;

			jp_ws(&j);
			mstart = j.i;
			if (jp_string(&j, name, sizeof(name)) < 0) {
				/* a long name is an unknown member: skip it */
				j.i = mstart;
				if (jp_string(&j, NULL, 0) < 0)
					return -1;
				name[0] = '\0';
			}
			for (m = 0; m < M_N; m++)
				if (strcmp(name, member_names[m]) == 0)
					break;
			if (m < M_N && seen[m])
				return jp_fail(&j, mstart, "duplicate \"%s\"",
				    name);
			if (jp_expect(&j, ':', "':'") < 0)
				return -1;
			jp_ws(&j);
			if (m < M_N) {
				seen[m] = true;
				at[m] = j.i;
			}
			j.member = m < M_N ? member_names[m] : NULL;
			if (jp_member(&j, m, &p, &kind_given, &kind) < 0)
				return -1;
			j.member = NULL;
			jp_ws(&j);
			if (j.i < j.n && j.s[j.i] == ',') {
				j.i++;
				continue;
			}
			if (jp_expect(&j, '}', "',' or '}'") < 0)
				return -1;
			break;
		}
	end = j.i - 1;
	jp_ws(&j);
	if (j.i != j.n)
		return jp_fail(&j, j.i, "unexpected data after the object");
	for (int m = 0; m < M_N; m++)
		if (!seen[m] && (m == M_KEY || m == M_FIRST || m == M_LAST ||
		    m == M_COUNT))
			return jp_fail(&j, end, "missing \"%s\"", member_names[m]);
	if (strncmp(p.key, "domain:", 7) == 0)
		key_kind_v = PIN_DOMAIN;
	else if (strncmp(p.key, "ip:", 3) != 0)
		return jp_fail(&j, at[M_KEY], "key: expected ip:ADDRESS or "
		    "domain:NAME");
	/* kind is redundant with the key; when given it must agree. */
	if (kind_given && kind != key_kind_v)
		return jp_fail(&j, at[M_KIND], "kind: does not match the key");
	p.kind = key_kind_v;
	if (p.kind == PIN_DST && !seen[M_TLSV])
		return jp_fail(&j, end, "missing \"tls_version\"");
	if ((why = pin_check(&p, &field)) != NULL) {
		size_t pos = end;

		for (int m = 0; m < M_N; m++)
			if (seen[m] && strcmp(field, member_names[m]) == 0)
				pos = at[m];
		return jp_fail(&j, pos, "%s: %s", field, why);
	}
	*out = p;
	return 0;
}
