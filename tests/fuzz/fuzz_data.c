/*
 * fuzz_data: smtp_data_scan(), the DATA end-of-body tracker.
 *
 * Input: 1 byte k (low 4 bits: number of cuts), k little-endian 16-bit cut
 * positions (taken modulo the body length + 1), then the body.
 *
 * Invariants (smtp.h): the body fed in one call and fed in pieces cut where
 * the fuzzer says gives the same end, the same counters and the same state;
 * after the end, a scan returns 0 with done set; bytes are never changed.
 * And a reference model written from the contract alone agrees: the end is
 * the first "\r\n.\r\n" of "\r\n" + body; bare_lf counts LFs without a CR
 * before them, bare_cr CRs followed by something other than LF; ambiguous
 * counts '.' lines ended or started other than by CRLF.
 */
#include <stdbool.h>
#include <string.h>

#include "starttlsd/smtp.h"
#include "fuzz.h"

#define MAX_CUTS 15

struct result {
	size_t end;      /* bytes consumed */
	bool done;
	struct smtp_data d;
};

static int
cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * The contract, naively. A line starts at 0 (as after CRLF), after an LF
 * (after CRLF when a CR precedes it, else bare) and after a CR that is not
 * followed by LF (bare). A '.' there followed by CR LF, at a CRLF start,
 * is the end. Any other '.' line is ambiguous: '.' LF, '.' CR (bare start),
 * or '.' CR x (x not LF, CRLF start), counted once x is there.
 */
static void
reference(const char *b, size_t n, struct result *r)
{
	size_t end = n, i;

	memset(r, 0, sizeof(*r));
	for (i = 0; i < n; i++) {
		bool crlf_start = i == 0 || (i >= 2 && b[i - 1] == '\n' &&
		    b[i - 2] == '\r');
		if (crlf_start && i + 2 < n && b[i] == '.' && b[i + 1] == '\r' &&
		    b[i + 2] == '\n') {
			end = i + 3;
			r->done = true;
			break;
		}
	}
	r->end = end;
	for (i = 0; i < end; i++) {
		bool start = i == 0 || b[i - 1] == '\n' ||
		    (b[i - 1] == '\r' && b[i] != '\n');
		bool crlf_start = i == 0 || (i >= 2 && b[i - 1] == '\n' &&
		    b[i - 2] == '\r');

		if (b[i] == '\n' && (i == 0 || b[i - 1] != '\r'))
			r->d.bare_lf++;
		if (b[i] == '\r' && i + 1 < end && b[i + 1] != '\n')
			r->d.bare_cr++;
		if (!start || b[i] != '.' || i + 1 >= end)
			continue;
		if (b[i + 1] == '\n')
			r->d.ambiguous++;
		else if (b[i + 1] == '\r' && !crlf_start)
			r->d.ambiguous++;
		else if (b[i + 1] == '\r' && i + 2 < end && b[i + 2] != '\n')
			r->d.ambiguous++;
	}
}

static void
same(const struct result *a, const struct result *b, const char *what)
{
	FUZZ_CHECK(a->end == b->end && a->done == b->done,
	    "%s: end %zu done %d, one call: end %zu done %d", what, b->end,
	    b->done, a->end, a->done);
	FUZZ_CHECK(a->d.ambiguous == b->d.ambiguous &&
	    a->d.bare_lf == b->d.bare_lf && a->d.bare_cr == b->d.bare_cr,
	    "%s: counters ambiguous %llu bare_lf %llu bare_cr %llu, one call: "
	    "%llu %llu %llu", what, (unsigned long long)b->d.ambiguous,
	    (unsigned long long)b->d.bare_lf, (unsigned long long)b->d.bare_cr,
	    (unsigned long long)a->d.ambiguous,
	    (unsigned long long)a->d.bare_lf, (unsigned long long)a->d.bare_cr);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t cuts[MAX_CUTS + 2], ncuts, n, prev;
	struct result one, split, ref;
	const uint8_t *body;
	char *b, *keep;
	bool done;

	if (size < 1)
		return 0;
	ncuts = data[0] & 0x0f;
	if (size < 1 + 2 * ncuts)
		return 0;
	body = data + 1 + 2 * ncuts;
	n = size - 1 - 2 * ncuts;
	b = fuzz_dup(body, n);
	keep = fuzz_dup(body, n);
	for (size_t i = 0; i < ncuts; i++)
		cuts[i] = ((size_t)data[1 + 2 * i] |
		    (size_t)data[2 + 2 * i] << 8) % (n + 1);
	cuts[ncuts++] = n;
	qsort(cuts, ncuts, sizeof(cuts[0]), cmp_size);

	/* One call. */
	memset(&one, 0, sizeof(one));
	smtp_data_init(&one.d);
	one.end = smtp_data_scan(&one.d, b, n, &one.done);
	FUZZ_CHECK(one.end <= n, "end %zu of %zu", one.end, n);
	FUZZ_CHECK(one.done || one.end == n, "not done, end %zu of %zu",
	    one.end, n);
	FUZZ_CHECK(!one.done || (one.end >= 3 && b[one.end - 1] == '\n'),
	    "done, but end %zu is not after an LF", one.end);
	if (one.done) {
		/* Nothing more belongs to the body. */
		struct smtp_data after = one.d;
		size_t k = smtp_data_scan(&after, b, n, &done);

		FUZZ_CHECK(k == 0 && done, "scan after the end: %zu done %d", k,
		    done);
	}

	/* The same bytes cut into pieces. */
	memset(&split, 0, sizeof(split));
	smtp_data_init(&split.d);
	prev = 0;
	for (size_t i = 0; i < ncuts; i++) {
		size_t len = cuts[i] - prev, k;

		k = smtp_data_scan(&split.d, b + prev, len, &done);
		FUZZ_CHECK(k <= len, "piece of %zu: %zu", len, k);
		if (split.done) {
			FUZZ_CHECK(k == 0 && done, "piece after the end: %zu", k);
		} else {
			split.end += k;
			split.done = done;
			FUZZ_CHECK(done || k == len, "piece not done, %zu of %zu",
			    k, len);
		}
		prev = cuts[i];
	}
	same(&one, &split, "cut");
	FUZZ_CHECK(one.d.state == split.d.state, "state %d, one call %d",
	    split.d.state, one.d.state);
	FUZZ_CHECK(memcmp(b, keep, n) == 0, "the body was changed");

	reference(b, n, &ref);
	if (ref.end != one.end || ref.done != one.done ||
	    ref.d.ambiguous != one.d.ambiguous ||
	    ref.d.bare_lf != one.d.bare_lf || ref.d.bare_cr != one.d.bare_cr)
		fuzz_dump("body", b, n);
	same(&one, &ref, "reference model");
	free(keep);
	free(b);
	return 0;
}
