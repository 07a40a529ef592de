/*
 * fuzz_reply: smtp_reply_parse() over arbitrary server bytes.
 *
 * Input: 2 bytes max_line and 2 bytes max_lines (little endian; 0xffff
 * means SIZE_MAX), then the bytes the server sent.
 *
 * Invariants (smtp.h): out is written only on SMTP_PARSE_OK; OK means
 * 0 < len <= input length, code 100..599, 1 <= nlines <= max_lines, the
 * reply ends at an LF, has nlines lines of at most max_line bytes, each
 * with the same code, '-' after the code on all lines but the last. Over
 * the prefixes of the input the answer is monotone: NEED_MORE, then either
 * ERROR for good or, from len on, the very same OK.
 */
#include <stdbool.h>
#include <string.h>

#include "starttlsd/smtp.h"
#include "fuzz.h"

/* Prefix lengths looked at one by one; longer inputs are sampled. */
#define ALL_PREFIXES_MAX 256
#define SAMPLES 48

static size_t
limit(const uint8_t *p)
{
	unsigned v = (unsigned)p[0] | (unsigned)p[1] << 8;

	return v == 0xffff ? SIZE_MAX : v;
}

static const char *
res_str(enum smtp_parse r)
{
	return r == SMTP_PARSE_OK ? "OK" : r == SMTP_PARSE_NEED_MORE ?
	    "NEED_MORE" : r == SMTP_PARSE_ERROR ? "ERROR" : "(bad value)";
}

/* The structure an OK promises, checked byte by byte. */
static void
check_ok(const char *d, size_t n, size_t max_line, size_t max_lines,
    const struct smtp_reply *r)
{
	size_t pos = 0, lines = 0;

	FUZZ_CHECK(r->len > 0 && r->len <= n, "len %zu, input %zu", r->len, n);
	FUZZ_CHECK(r->code >= 100 && r->code <= 599, "code %d", r->code);
	FUZZ_CHECK(r->nlines >= 1 && r->nlines <= max_lines,
	    "nlines %zu, max_lines %zu", r->nlines, max_lines);
	FUZZ_CHECK(d[r->len - 1] == '\n', "reply does not end at an LF");
	while (pos < r->len) {
		const char *lf = memchr(d + pos, '\n', r->len - pos);
		size_t ll;
		int code;

		FUZZ_CHECK(lf != NULL, "line %zu has no LF", lines);
		ll = (size_t)(lf - (d + pos)) + 1;
		FUZZ_CHECK(ll <= max_line, "line %zu is %zu bytes, max_line %zu",
		    lines, ll, max_line);
		FUZZ_CHECK(ll >= 4, "line %zu is %zu bytes", lines, ll);
		code = (d[pos] - '0') * 100 + (d[pos + 1] - '0') * 10 +
		    (d[pos + 2] - '0');
		FUZZ_CHECK(code == r->code && d[pos + 1] >= '0' &&
		    d[pos + 1] <= '9' && d[pos + 2] >= '0' && d[pos + 2] <= '9',
		    "line %zu code differs from %d", lines, r->code);
		pos += ll;
		lines++;
		if (pos < r->len)
			FUZZ_CHECK(d[pos - ll + 3] == '-',
			    "line %zu is not the last but has no '-'", lines - 1);
		else
			FUZZ_CHECK(d[pos - ll + 3] != '-',
			    "the last line has a '-'");
	}
	FUZZ_CHECK(lines == r->nlines, "counted %zu lines, nlines %zu", lines,
	    r->nlines);
}

/* One prefix of d; compares with what the previous prefix gave. */
static void
step(const char *d, size_t k, size_t max_line, size_t max_lines,
    bool exhaustive, enum smtp_parse *prev, struct smtp_reply *first_ok,
    size_t *err_at)
{
	struct smtp_reply r = { -7, 7, 7 };
	enum smtp_parse res = smtp_reply_parse(d, k, max_line, max_lines, &r);

	FUZZ_CHECK(res == SMTP_PARSE_OK || res == SMTP_PARSE_NEED_MORE ||
	    res == SMTP_PARSE_ERROR, "result %d", (int)res);
	if (res != SMTP_PARSE_OK)
		FUZZ_CHECK(r.code == -7 && r.len == 7 && r.nlines == 7,
		    "out written on %s", res_str(res));
	switch (*prev) {
	case SMTP_PARSE_NEED_MORE:
		break;
	case SMTP_PARSE_ERROR:
		FUZZ_CHECK(res == SMTP_PARSE_ERROR, "prefix %zu was ERROR, "
		    "prefix %zu is %s", *err_at, k, res_str(res));
		break;
	case SMTP_PARSE_OK:
		FUZZ_CHECK(res == SMTP_PARSE_OK && r.code == first_ok->code &&
		    r.len == first_ok->len && r.nlines == first_ok->nlines,
		    "prefix %zu gave OK len %zu, prefix %zu gives %s len %zu",
		    first_ok->len, first_ok->len, k, res_str(res), r.len);
		break;
	}
	if (res == SMTP_PARSE_OK) {
		check_ok(d, k, max_line, max_lines, &r);
		if (*prev != SMTP_PARSE_OK) {
			/* The first OK: no prefix shorter than len was. */
			FUZZ_CHECK(r.len <= k && (!exhaustive || r.len == k),
			    "first OK at prefix %zu, len %zu", k, r.len);
			*first_ok = r;
		}
	}
	if (res == SMTP_PARSE_ERROR && *prev != SMTP_PARSE_ERROR)
		*err_at = k;
	*prev = res;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum smtp_parse prev = SMTP_PARSE_NEED_MORE, full;
	struct smtp_reply first_ok = { 0, 0, 0 }, again = { 0, 0, 0 };
	size_t max_line, max_lines, n, err_at = 0;
	char *d;

	if (size < 4)
		return 0;
	max_line = limit(data);
	max_lines = limit(data + 2);
	n = size - 4;
	d = fuzz_dup(data + 4, n);

	if (n <= ALL_PREFIXES_MAX) {
		for (size_t k = 0; k <= n; k++)
			step(d, k, max_line, max_lines, true, &prev, &first_ok,
			    &err_at);
	} else {
		/* Sorted sample: fuzzer-independent spread plus both ends. */
		for (size_t i = 0; i <= SAMPLES; i++)
			step(d, n * i / SAMPLES, max_line, max_lines, false,
			    &prev, &first_ok, &err_at);
	}
	full = prev;
	if (full == SMTP_PARSE_OK) {
		/* The reply alone, and the reply cut short by one byte. */
		FUZZ_CHECK(smtp_reply_parse(d, first_ok.len, max_line, max_lines,
		    &again) == SMTP_PARSE_OK && again.len == first_ok.len &&
		    again.code == first_ok.code &&
		    again.nlines == first_ok.nlines,
		    "the reply alone parses differently");
		FUZZ_CHECK(smtp_reply_parse(d, first_ok.len - 1, max_line,
		    max_lines, &again) == SMTP_PARSE_NEED_MORE,
		    "the reply minus its LF is not NEED_MORE");
	}
	free(d);
	return 0;
}
