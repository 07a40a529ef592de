/*
 * fuzz_command: smtp_line_len() and smtp_cmd_parse() over arbitrary client
 * bytes, cut into lines as the session cuts them.
 *
 * Invariants (smtp.h): a line length is 0 exactly when no LF is there, else
 * it ends at the first LF; arg lies within the line, holds no LF and not
 * the line end; rc is 0 or -1, and -1 only for BDAT; the BDAT fields are
 * set only for a BDAT with rc 0, and then agree with an independent reading
 * of the size (1..20 digits, no overflow) and of LAST; the verb is the first
 * word (case-insensitive); the line end (CRLF or LF) and what follows the
 * first line change nothing.
 */
#include <stdbool.h>
#include <string.h>

#include "starttlsd/smtp.h"
#include "fuzz.h"

static int
upper(unsigned char c)
{
	return c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c;
}

static bool
word_eq(const char *s, size_t n, const char *w)
{
	if (strlen(w) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (upper((unsigned char)s[i]) != (unsigned char)w[i])
			return false;
	return true;
}

/* The reference reading of "BDAT" arguments: size [SP+ LAST] SP*. */
static bool
bdat_ref(const char *a, size_t n, uint64_t *size, bool *last)
{
	size_t i = 0, j;
	uint64_t v = 0;

	while (i < n && a[i] != ' ')
		i++;
	if (i == 0 || i > 20)
		return false;
	for (j = 0; j < i; j++) {
		unsigned d = (unsigned char)a[j] - '0';
		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*size = v;
	*last = false;
	while (i < n && a[i] == ' ')
		i++;
	if (i == n)
		return true;
	j = i;
	while (j < n && a[j] != ' ')
		j++;
	if (!word_eq(a + i, j - i, "LAST"))
		return false;
	while (j < n && a[j] == ' ')
		j++;
	*last = true;
	return j == n;
}

static void
same(const struct smtp_cmd *a, int ra, const struct smtp_cmd *b, int rb,
    const char *what)
{
	FUZZ_CHECK(ra == rb && a->verb == b->verb && a->arg == b->arg &&
	    a->arg_len == b->arg_len && a->bdat_size == b->bdat_size &&
	    a->bdat_last == b->bdat_last, "%s changes the result", what);
}

/* One line as the session hands it over: line[0..n), LF included if any. */
static void
check_line(const char *line, size_t n, size_t avail)
{
	struct smtp_cmd c, c2;
	int rc = smtp_cmd_parse(line, n, &c), rc2;
	size_t end = n, vend = 0;
	const char *vs;

	/* What smtp.h calls the line: without CRLF / LF. */
	if (end > 0 && line[end - 1] == '\n') {
		end--;
		if (end > 0 && line[end - 1] == '\r')
			end--;
	}
	FUZZ_CHECK(rc == 0 || rc == -1, "rc %d", rc);
	FUZZ_CHECK(rc == 0 || c.verb == SMTP_V_BDAT, "rc -1 for verb %s",
	    smtp_verb_str(c.verb));
	FUZZ_CHECK(c.arg >= line && c.arg <= line + end &&
	    c.arg_len <= (size_t)(line + end - c.arg),
	    "arg outside the line (arg at %td, len %zu, line %zu)",
	    c.arg - line, c.arg_len, end);
	FUZZ_CHECK(c.arg_len == (size_t)(line + end - c.arg),
	    "arg does not run to the line end");
	FUZZ_CHECK(c.arg_len == 0 || memchr(c.arg, '\n', c.arg_len) == NULL,
	    "LF inside arg");
	if (c.verb != SMTP_V_BDAT || rc != 0)
		FUZZ_CHECK(c.bdat_size == 0 && !c.bdat_last,
		    "BDAT fields set for %s rc %d", smtp_verb_str(c.verb), rc);
	FUZZ_CHECK(smtp_verb_str(c.verb) != NULL, "no verb name");

	/* The verb is the first word; the arg starts after its spaces. */
	while (vend < end && line[vend] != ' ')
		vend++;
	vs = smtp_verb_str(c.verb);
	if (c.verb != SMTP_V_UNKNOWN)
		FUZZ_CHECK(word_eq(line, vend, vs), "verb %s from \"%.*s\"", vs,
		    (int)vend, line);
	else
		for (int v = SMTP_V_HELO; v <= SMTP_V_AUTH; v++)
			FUZZ_CHECK(!word_eq(line, vend, smtp_verb_str(
			    (enum smtp_verb)v)), "UNKNOWN for a %s line",
			    smtp_verb_str((enum smtp_verb)v));
	{
		size_t i = vend;
		while (i < end && line[i] == ' ')
			i++;
		FUZZ_CHECK(c.arg == line + i, "arg starts at %td, want %zu",
		    c.arg - line, i);
	}
	if (c.verb == SMTP_V_BDAT) {
		uint64_t size = 0;
		bool last = false, ok = bdat_ref(c.arg, c.arg_len, &size, &last);

		FUZZ_CHECK(ok == (rc == 0), "BDAT \"%.*s\": rc %d, reference %s",
		    (int)c.arg_len, c.arg, rc, ok ? "valid" : "invalid");
		if (ok)
			FUZZ_CHECK(c.bdat_size == size && c.bdat_last == last,
			    "BDAT size %llu last %d, reference %llu %d",
			    (unsigned long long)c.bdat_size, c.bdat_last,
			    (unsigned long long)size, last);
	}

	/* The same line without its line end, and followed by the rest. */
	if (n > end && (n - end == 1 || n - end == 2)) {
		rc2 = smtp_cmd_parse(line, end, &c2);
		same(&c, rc, &c2, rc2, "dropping the line end");
	}
	rc2 = smtp_cmd_parse(line, avail, &c2);
	same(&c, rc, &c2, rc2, "what follows the line");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *d = fuzz_dup(data, size);
	size_t pos = 0;

	while (pos < size) {
		size_t avail = size - pos;
		size_t n = smtp_line_len(d + pos, avail);
		const char *lf = memchr(d + pos, '\n', avail);

		FUZZ_CHECK(n == (lf ? (size_t)(lf - (d + pos)) + 1 : 0),
		    "smtp_line_len %zu", n);
		if (n == 0) {
			/* An incomplete line: the parser must cope too. */
			check_line(d + pos, avail, avail);
			break;
		}
		check_line(d + pos, n, avail);
		pos += n;
	}
	FUZZ_CHECK(smtp_line_len(d, 0) == 0, "a line in nothing");
	free(d);
	return 0;
}
