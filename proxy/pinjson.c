/*
 * pinjson: pins as JSON for starttlsctl (pinjson.h), with jansson doing all
 * of the JSON: syntax, strings and escapes, UTF-8, duplicate members.
 * What is ours is the meaning: which members a pin has, their types and
 * ranges, and pin_check() on the result.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "starttlsd/pinjson.h"

/* Every parse: a repeated member is an error, not "the last one wins". */
#define PARSE_FLAGS (JSON_REJECT_DUPLICATES | JSON_DISABLE_EOF_CHECK)

static const char utf8_bom[] = "\xef\xbb\xbf";

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

static bool
ascii_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
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

/* ---- writing ------------------------------------------------------------------- */

/* ISO 8601 UTC when it fits the form, else plain seconds. */
static json_t *
time_value(int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	char buf[32];

	if (t >= 0 && t <= PIN_TIME_MAX && gmtime_r(&tt, &tm) != NULL &&
	    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm) == 20)
		return json_string(buf);
	return json_integer((json_int_t)t);
}

int
pin_json_write(FILE *fp, const struct pin *p)
{
	json_t *o = json_object();
	const char *tv;
	int bad = 0;

	/* json_object_set_new() takes a NULL value (out of memory) as an error. */
	bad |= json_object_set_new(o, "key", json_string(p->key));
	bad |= json_object_set_new(o, "kind",
	    json_string(p->kind == PIN_DOMAIN ? "domain" : "dst"));
	bad |= json_object_set_new(o, "first_seen", time_value(p->first_seen));
	bad |= json_object_set_new(o, "last_seen", time_value(p->last_seen));
	/* jansson's integers are signed 64-bit; no store counts that far. */
	bad |= json_object_set_new(o, "count", json_integer(p->count > INT64_MAX ?
	    INT64_MAX : (json_int_t)p->count));
	if (p->kind == PIN_DOMAIN)
		bad |= json_object_set_new(o, "via", json_string(p->via));
	else {
		tv = tls_version_name(p->tls_version);
		bad |= json_object_set_new(o, "tls_version", tv != NULL ?
		    json_string(tv) : json_integer(p->tls_version));
		if (p->has_spki) {
			static const char digits[] = "0123456789abcdef";
			char h[2 * sizeof(p->spki) + 1];

			for (size_t i = 0; i < sizeof(p->spki); i++) {
				h[2 * i] = digits[p->spki[i] >> 4];
				h[2 * i + 1] = digits[p->spki[i] & 15];
			}
			h[sizeof(h) - 1] = '\0';
			bad |= json_object_set_new(o, "spki_sha256",
			    json_string(h));
		}
	}
	/* Members in insertion order (jansson >= 2.8), no spaces. */
	if (bad == 0 && json_dumpf(o, fp, JSON_COMPACT) != 0)
		bad = -1;
	json_decref(o);
	return bad != 0 || ferror(fp) ? -1 : 0;
}

/* ---- errors -------------------------------------------------------------------- */

/* Point err at text[off]: line and column (characters) from 1. */
static void
err_at(struct pin_json_err *err, const char *text, size_t len, size_t off)
{
	size_t i = 0, line = 1, col = 1;

	if (off > len)
		off = len;
	if (off >= 3 && memcmp(text, utf8_bom, 3) == 0)
		i = 3;  /* a byte order mark takes no column */
	for (; i < off; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c == '\n') {
			line++;
			col = 1;
		} else if ((c & 0xc0) != 0x80)
			col++;  /* a continuation byte is the same character */
	}
	err->offset = off;
	err->line = line;
	err->column = col;
}

static enum pin_json_result __attribute__((format(printf, 3, 4)))
err_text(struct pin_json_err *err, const char *member, const char *fmt, ...)
{
	va_list ap;

	err->member = member;
	va_start(ap, fmt);
	vsnprintf(err->text, sizeof(err->text), fmt, ap);
	va_end(ap);
	return PIN_JSON_INVALID;
}

/* "member: why", the form of every error about one member's value. */
static enum pin_json_result __attribute__((format(printf, 3, 4)))
bad_member(struct pin_json_err *err, const char *member, const char *fmt, ...)
{
	char why[PIN_JSON_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return err_text(err, member, "%s: %s", member, why);
}

/*
 * jansson refused the value that starts at text[at]. Its position counts the
 * bytes it read from there; the last one is the one it stumbled on, except
 * for invalid UTF-8, where the next byte is the bad one.
 */
static enum pin_json_result
syntax_error(struct pin_json_err *err, const char *text, size_t len, size_t at,
    const json_error_t *je)
{
	size_t pos = je->position > 0 ? (size_t)je->position : 0;

	switch (json_error_code(je)) {
	case json_error_out_of_memory:
		err_at(err, text, len, at);
		err_text(err, NULL, "out of memory");
		return PIN_JSON_NOMEM;
	case json_error_invalid_utf8:
		err_at(err, text, len, at + pos);
		if (at + pos < len)
			return err_text(err, NULL, "invalid UTF-8 (byte 0x%02x)",
			    (unsigned char)text[at + pos]);
		return err_text(err, NULL, "invalid UTF-8");
	case json_error_null_character:
		err_at(err, text, len, at + (pos > 0 ? pos - 1 : 0));
		return err_text(err, NULL, "\\u0000 (NUL) in a string");
	default:
		err_at(err, text, len, at + (pos > 0 ? pos - 1 : 0));
		err_text(err, NULL, "%s", je->text);
		/* Its "near '...'" quotes the input: no escape reaches a terminal. */
		for (char *c = err->text; *c != '\0'; c++)
			if ((unsigned char)*c < 0x20 || *c == 0x7f)
				*c = '?';
		return PIN_JSON_INVALID;
	}
}

/* ---- reading one pin ----------------------------------------------------------- */

enum { M_KEY, M_KIND, M_FIRST, M_LAST, M_COUNT, M_TLSV, M_SPKI, M_VIA, M_N };
static const char *const member_names[M_N] = {
	"key", "kind", "first_seen", "last_seen", "count", "tls_version",
	"spki_sha256", "via",
};

static const char *
type_str(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number with a fraction or an exponent";
	case JSON_TRUE: return "true";
	case JSON_FALSE: return "false";
	case JSON_NULL: return "null";
	}
	return "something else";
}

/* A non-negative integer up to max: no sign, fraction or exponent. */
static enum pin_json_result
get_uint(const json_t *v, const char *m, uint64_t max, uint64_t *out,
    struct pin_json_err *err)
{
	json_int_t x;

	if (json_is_real(v))
		return bad_member(err, m, "expected an integer, found %s",
		    type_str(v));
	if (!json_is_integer(v))
		return bad_member(err, m, "expected a non-negative integer, "
		    "found %s", type_str(v));
	x = json_integer_value(v);
	if (x < 0)
		return bad_member(err, m, "expected a non-negative integer, "
		    "found %lld", (long long)x);
	if ((uint64_t)x > max)
		return bad_member(err, m, "out of range (at most %" PRIu64 ")",
		    max);
	*out = (uint64_t)x;
	return PIN_JSON_OK;
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

static enum pin_json_result
get_time(const json_t *v, const char *m, int64_t *out, struct pin_json_err *err)
{
	uint64_t u;

	if (json_is_string(v)) {
		if (iso_parse(json_string_value(v), out) < 0)
			return bad_member(err, m, "expected a time as "
			    "YYYY-MM-DDTHH:MM:SSZ (a real UTC date and time) or "
			    "unix seconds");
		return PIN_JSON_OK;
	}
	if (json_is_integer(v) && json_integer_value(v) > PIN_TIME_MAX)
		return bad_member(err, m, "out of range (after "
		    "9999-12-31T23:59:59Z)");
	if (get_uint(v, m, (uint64_t)PIN_TIME_MAX, &u, err) != PIN_JSON_OK)
		return PIN_JSON_INVALID;
	*out = (int64_t)u;
	return PIN_JSON_OK;
}

/* Copy a string member into out[cap]. */
static enum pin_json_result
get_str(const json_t *v, const char *m, char *out, size_t cap,
    struct pin_json_err *err)
{
	if (!json_is_string(v))
		return bad_member(err, m, "expected a string, found %s",
		    type_str(v));
	if (json_string_length(v) >= cap)
		return bad_member(err, m, "too long (at most %zu bytes)",
		    cap - 1);
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return PIN_JSON_OK;
}

struct pin_in {
	struct pin p;
	bool seen[M_N];
	enum pin_kind kind;  /* as given in "kind", if seen */
};

static enum pin_json_result
get_member(int m, const json_t *v, struct pin_in *in, struct pin_json_err *err)
{
	const char *name = member_names[m], *s;
	uint64_t u;

	switch (m) {
	case M_KEY:
		return get_str(v, name, in->p.key, sizeof(in->p.key), err);
	case M_KIND:
		s = json_is_string(v) ? json_string_value(v) : "";
		if (strcmp(s, "dst") == 0)
			in->kind = PIN_DST;
		else if (strcmp(s, "domain") == 0)
			in->kind = PIN_DOMAIN;
		else
			return bad_member(err, name, "expected \"dst\" or "
			    "\"domain\"");
		return PIN_JSON_OK;
	case M_FIRST:
		return get_time(v, name, &in->p.first_seen, err);
	case M_LAST:
		return get_time(v, name, &in->p.last_seen, err);
	case M_COUNT:
		return get_uint(v, name, UINT64_MAX, &in->p.count, err);
	case M_TLSV:
		if (json_is_string(v)) {
			for (unsigned k = 0x0301; k <= 0x0304; k++)
				if (strcmp(json_string_value(v),
				    tls_version_name((uint16_t)k)) == 0)
					in->p.tls_version = (uint16_t)k;
			if (in->p.tls_version == 0)
				return bad_member(err, name, "expected TLSv1.0, "
				    "TLSv1.1, TLSv1.2, TLSv1.3 or a number");
			return PIN_JSON_OK;
		}
		if (get_uint(v, name, UINT16_MAX, &u, err) != PIN_JSON_OK)
			return PIN_JSON_INVALID;
		in->p.tls_version = (uint16_t)u;
		return PIN_JSON_OK;
	case M_SPKI:
		if (json_is_null(v))
			return PIN_JSON_OK;
		s = json_is_string(v) ? json_string_value(v) : "";
		if (strlen(s) != 2 * sizeof(in->p.spki))
			return bad_member(err, name, "expected 64 hex digits "
			    "(a SHA-256) or null");
		for (size_t i = 0; i < sizeof(in->p.spki); i++) {
			int hi = hex_val((unsigned char)s[2 * i]);
			int lo = hex_val((unsigned char)s[2 * i + 1]);

			if (hi < 0 || lo < 0)
				return bad_member(err, name, "expected 64 hex "
				    "digits (a SHA-256) or null");
			in->p.spki[i] = (uint8_t)(hi << 4 | lo);
		}
		in->p.has_spki = true;
		return PIN_JSON_OK;
	case M_VIA:
		if (json_is_null(v))
			return PIN_JSON_OK;
		return get_str(v, name, in->p.via, sizeof(in->p.via), err);
	default:
		return PIN_JSON_OK;
	}
}

/* The meaning of one parsed object; err's position is the caller's. */
static enum pin_json_result
pin_from_json(json_t *o, struct pin *out, struct pin_json_err *err)
{
	static const int required[] = { M_KEY, M_FIRST, M_LAST, M_COUNT };
	struct pin_in in;
	const char *key, *why, *field;
	json_t *v;

	memset(&in, 0, sizeof(in));
	if (!json_is_object(o))
		return err_text(err, NULL, "expected a pin object ('{'), found %s",
		    type_str(o));
	/* In the order of the input (jansson keeps it): the first bad one. */
	json_object_foreach(o, key, v) {
		int m;

		for (m = 0; m < M_N; m++)
			if (strcmp(key, member_names[m]) == 0)
				break;
		if (m == M_N)
			continue;  /* not ours: a newer version's, skipped */
		in.seen[m] = true;
		if (get_member(m, v, &in, err) != PIN_JSON_OK)
			return PIN_JSON_INVALID;
	}
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
		if (!in.seen[required[i]])
			return err_text(err, member_names[required[i]],
			    "missing \"%s\"", member_names[required[i]]);
	if (strncmp(in.p.key, "domain:", 7) == 0)
		in.p.kind = PIN_DOMAIN;
	else if (strncmp(in.p.key, "ip:", 3) == 0)
		in.p.kind = PIN_DST;
	else
		return bad_member(err, "key", "expected ip:ADDRESS or "
		    "domain:NAME");
	/* kind is redundant with the key; when given it must agree. */
	if (in.seen[M_KIND] && in.kind != in.p.kind)
		return bad_member(err, "kind", "does not match the key");
	if (in.p.kind == PIN_DST && !in.seen[M_TLSV])
		return err_text(err, "tls_version", "missing \"tls_version\" "
		    "(a destination pin has one)");
	if ((why = pin_check(&in.p, &field)) != NULL)
		return bad_member(err, field, "%s", why);
	*out = in.p;
	return PIN_JSON_OK;
}

static size_t
skip_ws(const char *s, size_t n, size_t i)
{
	while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' ||
	    s[i] == '\r'))
		i++;
	return i;
}

/*
 * The pin object at text[at] (a '{'); *used: the bytes jansson took for
 * it. Errors about its meaning point at its '{'.
 */
static enum pin_json_result
parse_at(const char *text, size_t len, size_t at, struct pin *out,
    size_t *used, struct pin_json_err *err)
{
	enum pin_json_result r;
	json_error_t je;
	json_t *o;

	o = json_loadb(text + at, len - at, PARSE_FLAGS, &je);
	if (o == NULL)
		return syntax_error(err, text, len, at, &je);
	*used = (size_t)je.position;
	r = pin_from_json(o, out, err);
	json_decref(o);
	if (r != PIN_JSON_OK)
		err_at(err, text, len, at);
	return r;
}

static void
err_init(struct pin_json_err *err)
{
	memset(err, 0, sizeof(*err));
	err->line = err->column = 1;
}

enum pin_json_result
pin_json_parse(const char *text, size_t len, struct pin *out,
    struct pin_json_err *err)
{
	struct pin p;
	size_t i, used = 0;
	enum pin_json_result r;

	err_init(err);
	if (text == NULL)
		return err_text(err, NULL, "no input");
	i = skip_ws(text, len, 0);
	if (i >= len || text[i] != '{') {
		err_at(err, text, len, i);
		return err_text(err, NULL, "expected a pin object ('{')%s",
		    i >= len ? ", found the end" : "");
	}
	if ((r = parse_at(text, len, i, &p, &used, err)) != PIN_JSON_OK)
		return r;
	i = skip_ws(text, len, i + used);
	if (i != len) {
		err_at(err, text, len, i);
		return err_text(err, NULL, "unexpected data after the object");
	}
	*out = p;
	return PIN_JSON_OK;
}

/* ---- reading an array of pins -------------------------------------------------- */

static int
cmp_pin_ptr(const void *a, const void *b)
{
	const struct pin *x = *(const struct pin *const *)a;
	const struct pin *y = *(const struct pin *const *)b;
	int d = strcmp(x->key, y->key);

	/* Equal keys in input order, so the second one is named. */
	return d != 0 ? d : (x > y) - (x < y);
}

/* The same key twice: err names the later pin (and the first one's place). */
static enum pin_json_result
check_duplicates(const char *text, size_t len, const struct pin *pins,
    const size_t *at, size_t n, struct pin_json_err *err)
{
	const struct pin **byk;
	enum pin_json_result r = PIN_JSON_OK;

	if (n < 2)
		return PIN_JSON_OK;
	if ((byk = calloc(n, sizeof(*byk))) == NULL) {
		err_text(err, NULL, "out of memory");
		return PIN_JSON_NOMEM;
	}
	for (size_t k = 0; k < n; k++)
		byk[k] = &pins[k];
	qsort(byk, n, sizeof(*byk), cmp_pin_ptr);
	for (size_t k = 1; k < n; k++) {
		size_t first = (size_t)(byk[k - 1] - pins);
		size_t second = (size_t)(byk[k] - pins);

		if (strcmp(byk[k]->key, byk[k - 1]->key) != 0)
			continue;
		err_at(err, text, len, at[first]);
		err->pin = second + 1;
		err_text(err, "key", "duplicate key %s (pin #%zu, line %zu, has "
		    "it too)", byk[k]->key, first + 1, err->line);
		err_at(err, text, len, at[second]);
		r = PIN_JSON_INVALID;
		break;
	}
	free(byk);
	return r;
}

enum pin_json_result
pin_json_parse_array(const char *text, size_t len, struct pin **out,
    size_t *nout, struct pin_json_err *err)
{
	struct pin *pins = NULL, *np;
	size_t *at = NULL, *nat, cap = 0, n = 0, i = 0, used;
	enum pin_json_result r;

	err_init(err);
	*out = NULL;
	*nout = 0;
	if (text == NULL)
		return err_text(err, NULL, "no input");
	if (len >= 3 && memcmp(text, utf8_bom, 3) == 0)
		i = 3;
	/*
	 * jansson reads each pin (so each error has a place in the whole
	 * text and names its pin); between pins there is only white space
	 * and one ',' or the closing ']'.
	 */
	i = skip_ws(text, len, i);
	if (i >= len || text[i] != '[') {
		err_at(err, text, len, i);
		r = err_text(err, NULL, "expected a JSON array ('[') of pins");
		goto fail;
	}
	i = skip_ws(text, len, i + 1);
	if (i < len && text[i] == ']')
		i++;
	else
		for (;;) {
			i = skip_ws(text, len, i);
			if (i >= len || text[i] != '{') {
				err_at(err, text, len, i);
				err->pin = n + 1;
				r = err_text(err, NULL, "expected a pin object "
				    "('{')%s", i >= len ? ", found the end" : "");
				goto fail;
			}
			if (n == cap) {
				cap = cap ? 2 * cap : 64;
				if (cap > SIZE_MAX / 2 / sizeof(*pins) ||
				    (np = realloc(pins, cap * sizeof(*pins))) == NULL)
					goto nomem;
				pins = np;
				if ((nat = realloc(at, cap * sizeof(*at))) == NULL)
					goto nomem;
				at = nat;
			}
			at[n] = i;
			if ((r = parse_at(text, len, i, &pins[n], &used, err)) !=
			    PIN_JSON_OK) {
				err->pin = n + 1;
				goto fail;
			}
			n++;
			i = skip_ws(text, len, i + used);
			if (i < len && text[i] == ',') {
				i++;
				continue;
			}
			if (i < len && text[i] == ']') {
				i++;
				break;
			}
			err_at(err, text, len, i);
			r = err_text(err, NULL, i < len ? "expected ',' or ']' "
			    "after a pin" : "unterminated array: expected ',' or "
			    "']'");
			goto fail;
		}
	i = skip_ws(text, len, i);
	if (i != len) {
		err_at(err, text, len, i);
		r = err_text(err, NULL, "unexpected data after the array");
		goto fail;
	}
	if ((r = check_duplicates(text, len, pins, at, n, err)) != PIN_JSON_OK)
		goto fail;
	free(at);
	*out = pins;
	*nout = n;
	return PIN_JSON_OK;
nomem:
	err_text(err, NULL, "out of memory");
	r = PIN_JSON_NOMEM;
fail:
	free(pins);
	free(at);
	return r;
}
