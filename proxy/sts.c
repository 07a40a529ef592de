/* sts: MTA-STS TXT record and policy file parsing, mx patterns (RFC 8461); pure. */
#include "starttlsd/sts.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define STS_TXT_MAX 4096    /* a concatenated TXT record we look at */

static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_wsp(char c) { return c == ' ' || c == '\t'; }

/* ---- TXT ------------------------------------------------------------------ */

/* Does the record start with the version tag (then end, WSP or ';')? */
static bool
txt_is_sts(const char *s, size_t len)
{
	return len >= 7 && memcmp(s, "v=STSv1", 7) == 0 &&
	    (len == 7 || s[7] == ';' || is_wsp(s[7]));
}

/* sts-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".") */
static bool
ext_name_ok(const char *s, size_t n)
{
	if (n == 0 || n > 32 || !(is_alpha(s[0]) || is_digit(s[0])))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!is_alpha(s[i]) && !is_digit(s[i]) && s[i] != '_' &&
		    s[i] != '-' && s[i] != '.')
			return false;
	return true;
}

/* sts-ext-value = 1*(%x21-3A / %x3C / %x3E-7E) */
static bool
ext_value_ok(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x21 || c > 0x7e || c == ';' || c == '=')
			return false;
	}
	return true;
}

static enum sts_txt_result
txt_fields(const char *s, size_t len, struct sts_txt *out)
{
	size_t i = 7, nfields = 0;
	bool have_id = false;

	memset(out, 0, sizeof(*out));
	if (!txt_is_sts(s, len))
		return STS_TXT_NONE;
	/* 1*(sts-field-delim sts-field) [sts-field-delim] */
	while (i < len) {
		size_t f, eq, e;

		while (i < len && is_wsp(s[i]))
			i++;
		if (i == len || s[i] != ';')
			return STS_TXT_INVALID;
		i++;
		while (i < len && is_wsp(s[i]))
			i++;
		if (i == len)
			break;   /* a trailing delimiter */
		f = i;
		while (i < len && s[i] != ';' && !is_wsp(s[i]))
			i++;
		e = i;
		eq = f;
		while (eq < e && s[eq] != '=')
			eq++;
		if (eq == e)
			return STS_TXT_INVALID;
		if (eq - f == 2 && memcmp(s + f, "id", 2) == 0) {
			size_t idlen = e - eq - 1;
			if (have_id || idlen == 0 || idlen > STS_ID_MAX)
				return STS_TXT_INVALID;
			for (size_t k = eq + 1; k < e; k++)
				if (!is_alpha(s[k]) && !is_digit(s[k]))
					return STS_TXT_INVALID;
			memcpy(out->id, s + eq + 1, idlen);
			out->id[idlen] = '\0';
			have_id = true;
		} else if (!ext_name_ok(s + f, eq - f) ||
		    !ext_value_ok(s + eq + 1, e - eq - 1)) {
			return STS_TXT_INVALID;
		}
		nfields++;
	}
	if (nfields == 0 || !have_id) {
		out->id[0] = '\0';
		return STS_TXT_INVALID;
	}
	return STS_TXT_OK;
}

enum sts_txt_result
sts_txt_parse_text(const char *s, size_t len, struct sts_txt *out)
{
	enum sts_txt_result r = txt_fields(s, len, out);

	if (r != STS_TXT_OK)
		memset(out, 0, sizeof(*out));   /* no half-read id */
	return r;
}

enum sts_txt_result
sts_txt_parse(const uint8_t *const *rdata, const size_t *len, size_t n,
    struct sts_txt *out)
{
	char text[STS_TXT_MAX];
	char first[STS_TXT_MAX];
	size_t firstlen = 0, found = 0;
	bool toolong = false;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < n; i++) {
		size_t o = 0, p = 0;
		bool bad = false;

		/* character-strings: a length byte, then that many bytes */
		while (p < len[i]) {
			size_t l = rdata[i][p++];
			if (l > len[i] - p || o + l > sizeof(text)) {
				bad = true;
				break;
			}
			memcpy(text + o, rdata[i] + p, l);
			o += l;
			p += l;
		}
		if (bad) {
			/* Malformed or huge: count it if it claims to be ours. */
			if (o >= 7 && txt_is_sts(text, o)) {
				found++;
				toolong = true;
			}
			continue;
		}
		if (!txt_is_sts(text, o))
			continue;
		if (found++ == 0) {
			memcpy(first, text, o);
			firstlen = o;
		}
	}
	if (found == 0)
		return STS_TXT_NONE;
	if (found > 1)
		return STS_TXT_MULTIPLE;
	if (toolong)
		return STS_TXT_INVALID;
	return sts_txt_parse_text(first, firstlen, out);
}

const char *
sts_txt_result_str(enum sts_txt_result r)
{
	switch (r) {
	case STS_TXT_OK: return "ok";
	case STS_TXT_NONE: return "none";
	case STS_TXT_MULTIPLE: return "multiple";
	case STS_TXT_INVALID: return "invalid";
	}
	return "unknown";
}

/* ---- policy file ----------------------------------------------------------- */

const char *
sts_mode_str(enum sts_mode m)
{
	switch (m) {
	case STS_MODE_NONE: return "none";
	case STS_MODE_TESTING: return "testing";
	case STS_MODE_ENFORCE: return "enforce";
	}
	return "unknown";
}

static int perr(char *err, size_t errlen, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
perr(char *err, size_t errlen, size_t line, const char *fmt, ...)
{
	char why[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (err != NULL && errlen > 0) {
		if (line > 0)
			snprintf(err, errlen, "line %zu: %s", line, why);
		else
			snprintf(err, errlen, "%s", why);
	}
	return -1;
}

/*
 * sts-policy-mx-value = ["*."] Domain, Domain as in RFC 5321 (letters,
 * digits, hyphens; no label starting or ending with a hyphen). Copied lower
 * case into out.
 */
static bool
mx_pattern_ok(const char *s, size_t n, char *out)
{
	size_t i = 0, label = 0;

	if (n >= 2 && s[0] == '*' && s[1] == '.') {
		out[0] = '*';
		out[1] = '.';
		i = 2;
	}
	if (n == i || n >= STS_NAME_MAX)
		return false;
	for (; i < n; i++) {
		char c = s[i];
		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
		} else if (is_alpha(c) || is_digit(c) || c == '-') {
			if ((label == 0 && c == '-') || ++label > 63)
				return false;
		} else {
			return false;
		}
		out[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	out[n] = '\0';
	return label > 0 && s[n - 1] != '-';
}

int
sts_policy_parse(const char *text, size_t len, struct sts_policy *out,
    char *err, size_t errlen)
{
	bool have_version = false, have_mode = false, have_age = false;
	size_t pos = 0, line = 0;

	memset(out, 0, sizeof(*out));
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (len > STS_POLICY_MAX)
		return perr(err, errlen, 0, "policy larger than %d bytes",
		    STS_POLICY_MAX);
	if (memchr(text, '\0', len) != NULL)
		return perr(err, errlen, 0, "NUL byte in policy");

	while (pos < len) {
		const char *l = text + pos, *nl = memchr(l, '\n', len - pos);
		size_t n = nl != NULL ? (size_t)(nl - l) : len - pos;
		size_t name_len, v;
		const char *val;

		pos += n + (nl != NULL);
		line++;
		if (n > 0 && l[n - 1] == '\r')
			n--;
		if (memchr(l, '\r', n) != NULL)
			return perr(err, errlen, line, "CR inside a line");
		while (n > 0 && is_wsp(l[n - 1]))
			n--;
		if (n == 0)
			continue;
		for (name_len = 0; name_len < n && l[name_len] != ':'; name_len++)
			;
		if (name_len == n)
			return perr(err, errlen, line, "no ':'");
		if (!ext_name_ok(l, name_len))
			return perr(err, errlen, line, "bad field name");
		for (v = name_len + 1; v < n && is_wsp(l[v]); v++)
			;
		val = l + v;
		n -= v;
		for (size_t k = 0; k < n; k++) {
			unsigned char c = (unsigned char)val[k];
			if (c < 0x20 || c == 0x7f)
				return perr(err, errlen, line, "control character");
		}

#define FIELD(lit) (name_len == sizeof(lit) - 1 && memcmp(l, lit, name_len) == 0)
#define VALUE(lit) (n == sizeof(lit) - 1 && memcmp(val, lit, n) == 0)
		if (FIELD("version")) {
			if (have_version)
				return perr(err, errlen, line, "version given twice");
			if (!VALUE("STSv1"))
				return perr(err, errlen, line, "version is not STSv1");
			have_version = true;
		} else if (FIELD("mode")) {
			if (have_mode)
				return perr(err, errlen, line, "mode given twice");
			if (VALUE("enforce"))
				out->mode = STS_MODE_ENFORCE;
			else if (VALUE("testing"))
				out->mode = STS_MODE_TESTING;
			else if (VALUE("none"))
				out->mode = STS_MODE_NONE;
			else
				return perr(err, errlen, line,
				    "mode is not enforce, testing or none");
			have_mode = true;
		} else if (FIELD("max_age")) {
			uint64_t age = 0;
			if (have_age)
				return perr(err, errlen, line, "max_age given twice");
			if (n == 0 || n > 10)
				return perr(err, errlen, line, "bad max_age");
			for (size_t k = 0; k < n; k++) {
				if (!is_digit(val[k]))
					return perr(err, errlen, line, "bad max_age");
				age = age * 10 + (uint64_t)(val[k] - '0');
			}
			if (age > STS_MAX_AGE_MAX)
				return perr(err, errlen, line,
				    "max_age above %u", STS_MAX_AGE_MAX);
			out->max_age = (uint32_t)age;
			have_age = true;
		} else if (FIELD("mx")) {
			char pat[STS_NAME_MAX];
			size_t k;
			if (!mx_pattern_ok(val, n, pat))
				return perr(err, errlen, line, "bad mx pattern");
			for (k = 0; k < out->nmx; k++)
				if (strcmp(out->mx[k], pat) == 0)
					break;
			if (k < out->nmx)
				continue;   /* a repeated pattern adds nothing */
			if (out->nmx == STS_MAX_MX)
				return perr(err, errlen, line,
				    "more than %d mx patterns", STS_MAX_MX);
			memcpy(out->mx[out->nmx++], pat, STS_NAME_MAX);
		}
		/* anything else: an extension, ignored (3.2) */
#undef FIELD
#undef VALUE
	}
	if (!have_version)
		return perr(err, errlen, 0, "no version");
	if (!have_mode)
		return perr(err, errlen, 0, "no mode");
	if (!have_age)
		return perr(err, errlen, 0, "no max_age");
	if (out->nmx == 0 && out->mode != STS_MODE_NONE)
		return perr(err, errlen, 0, "no mx (mode %s)",
		    sts_mode_str(out->mode));
	return 0;
}

/* ---- mx patterns (4.1) ----------------------------------------------------- */

/* Compare a and b case-insensitively, ignoring one trailing dot of either. */
static bool
name_eq(const char *a, size_t alen, const char *b, size_t blen)
{
	if (alen > 0 && a[alen - 1] == '.')
		alen--;
	if (blen > 0 && b[blen - 1] == '.')
		blen--;
	return alen == blen && alen > 0 && strncasecmp(a, b, alen) == 0;
}

bool
sts_pattern_match(const char *pattern, const char *host)
{
	const char *dot;

	if (pattern == NULL || host == NULL || host[0] == '\0' ||
	    host[0] == '.' || strchr(host, '*') != NULL)
		return false;
	if (pattern[0] == '*') {
		if (pattern[1] != '.' || pattern[2] == '\0')
			return false;
		dot = strchr(host, '.');
		if (dot == NULL || dot == host)
			return false;
		return name_eq(dot + 1, strlen(dot + 1), pattern + 2,
		    strlen(pattern + 2));
	}
	return name_eq(pattern, strlen(pattern), host, strlen(host));
}

bool
sts_policy_mx_match(const struct sts_policy *p, const char *host)
{
	for (size_t i = 0; i < p->nmx; i++)
		if (sts_pattern_match(p->mx[i], host))
			return true;
	return false;
}
