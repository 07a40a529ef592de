/*
 * Unit tests for proxy/buf.c: the cap (appends up to max succeed, beyond it
 * fail and change nothing), reserve/commit, consume, sliding the data to the
 * front, growth that never passes max, clear, cleanup and reuse, and a
 * randomized run against a plain reference array.
 */

#include "unit.h"

#include "starttlsd/buf.h"

/* What must hold between any two calls. */
static void check_invariants(const char *name, const struct buf *b)
{
	EQ(name, b->len <= b->max, 1);
	EQ(name, b->cap <= b->max, 1);
	EQ(name, b->off + b->len <= b->cap, 1);
	EQ(name, b->data == NULL, b->cap == 0);
	EQ(name, buf_len(b), b->len);
	EQ(name, buf_room(b), b->max - b->len);
	EQ(name, buf_full(b), b->len == b->max);
	if (b->len > 0)
		EQ(name, buf_head(b) == b->data + b->off, 1);
}

static void check_content(const char *name, const struct buf *b,
    const char *want, size_t want_len)
{
	check_invariants(name, b);
	EQ(name, buf_len(b), want_len);
	if (want_len > 0 && memcmp(buf_head(b), want, want_len) != 0) {
		print_error("%s: content differs\n", name);
		fail();
	}
}

/* A recognisable byte at every position of a long stream. */
static void pattern(char *out, size_t from, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = (char)((from + i) * 7 + ((from + i) >> 8));
}

/* ---- the cap ------------------------------------------------------------------- */

struct cap_case {
	const char *name;
	size_t max;
	size_t n[6];   /* append sizes, 0-terminated unless a zero is meant */
	int want[6];   /* buf_append results */
	size_t steps;
};

static const struct cap_case cap_cases[] = {
	{ "exactly max", 10, { 10, 1 }, { 0, -1 }, 2 },
	{ "two parts to max", 10, { 4, 6, 1 }, { 0, 0, -1 }, 3 },
	{ "second part one over", 10, { 4, 7, 6 }, { 0, -1, 0 }, 3 },
	{ "one over at once", 10, { 11, 10 }, { -1, 0 }, 2 },
	{ "far over", 10, { 1000000, 3 }, { -1, 0 }, 2 },
	{ "max 1", 1, { 1, 1, 0 }, { 0, -1, 0 }, 3 },
	{ "max 0", 0, { 1, 0 }, { -1, 0 }, 2 },
	{ "zero-length when full", 3, { 3, 0, 1 }, { 0, 0, -1 }, 3 },
	{ "just under the first allocation", 4095, { 4095, 1 }, { 0, -1 }, 2 },
	{ "first allocation", 4096, { 4096, 1 }, { 0, -1 }, 2 },
	{ "just over the first allocation", 4097, { 4096, 1, 1 },
	  { 0, 0, -1 }, 3 },
	{ "grows in steps to an odd max", 5000, { 4000, 1000, 1 },
	  { 0, 0, -1 }, 3 },
	{ "odd max, over by one", 5000, { 4000, 1001, 1000 }, { 0, -1, 0 }, 3 },
	{ "large in one go", 262144, { 262144, 1 }, { 0, -1 }, 2 },
	{ "large, one over", 262144, { 262145, 262144 }, { -1, 0 }, 2 },
	{ "SIZE_MAX refused", 64, { SIZE_MAX, 64 }, { -1, 0 }, 2 },
};

static void test_cap_table(void **state)
{
	static char src[300000], model[300000];

	(void)state;
	pattern(src, 0, sizeof(src));
	for (size_t i = 0; i < NELEM(cap_cases); i++) {
		const struct cap_case *c = &cap_cases[i];
		struct buf b;
		size_t mlen = 0, fed = 0;

		buf_init(&b, c->max);
		check_content(c->name, &b, model, 0);
		for (size_t s = 0; s < c->steps; s++) {
			size_t n = c->n[s];
			char *data_before = b.data;
			size_t cap_before = b.cap;
			const char *p = n <= sizeof(src) - fed ? src + fed : src;
			int r = buf_append(&b, p, n);

			EQ(c->name, r, c->want[s]);
			if (r == 0) {
				memcpy(model + mlen, p, n);
				mlen += n;
				fed += n;
			} else {
				/* A refused append changes nothing at all. */
				EQ(c->name, b.data == data_before, 1);
				EQ(c->name, b.cap, cap_before);
			}
			check_content(c->name, &b, model, mlen);
		}
		buf_cleanup(&b);
	}
}

/* ---- reserve / commit -------------------------------------------------------- */

static void test_reserve_commit(void **state)
{
	struct buf b;
	size_t avail = 99;
	char *w;

	(void)state;
	/* small max: the first allocation is max, not more */
	buf_init(&b, 100);
	w = buf_reserve(&b, 10, &avail);
	assert_non_null(w);
	assert_true(avail >= 10 && avail <= 100);
	EQ("small", b.cap, 100);
	memcpy(w, "0123456789", 10);
	buf_commit(&b, 10);
	check_content("commit 10", &b, "0123456789", 10);

	/* partial commit of what was reserved */
	w = buf_reserve(&b, 50, &avail);
	assert_non_null(w);
	assert_true(w == b.data + b.off + b.len);
	EQ("avail is all room", avail, 90);
	memcpy(w, "abc", 3);
	buf_commit(&b, 3);
	check_content("partial", &b, "0123456789abc", 13);

	/* commit 0 is a no-op */
	w = buf_reserve(&b, 5, &avail);
	assert_non_null(w);
	buf_commit(&b, 0);
	check_content("commit 0", &b, "0123456789abc", 13);

	/* want 0 still gives room for at least one byte */
	w = buf_reserve(&b, 0, &avail);
	assert_non_null(w);
	assert_true(avail >= 1);

	/* more than the room: avail is capped by the room */
	w = buf_reserve(&b, 1000, &avail);
	assert_non_null(w);
	EQ("capped by room", avail, 87);
	memset(w, 'z', avail);
	buf_commit(&b, avail);
	assert_true(buf_full(&b));
	EQ("full", buf_room(&b), 0);

	/* full: NULL and nothing available, whatever is asked */
	avail = 99;
	assert_null(buf_reserve(&b, 1, &avail));
	EQ("full avail", avail, 0);
	avail = 99;
	assert_null(buf_reserve(&b, 0, &avail));
	EQ("full avail 0", avail, 0);
	check_invariants("full", &b);
	buf_cleanup(&b);

	/* max 0 is always full */
	buf_init(&b, 0);
	avail = 99;
	assert_null(buf_reserve(&b, 1, &avail));
	EQ("max 0", avail, 0);
	assert_true(buf_full(&b));
	assert_null(b.data);
	buf_cleanup(&b);

	/* large max: the allocation is what is needed, not max */
	buf_init(&b, 1 << 20);
	w = buf_reserve(&b, 1, &avail);
	assert_non_null(w);
	assert_true(avail >= 1);
	assert_true(b.cap >= 1 && b.cap < (1 << 20));
	EQ("avail is the allocation", avail, b.cap);
	check_invariants("large", &b);
	/* a reserve bigger than max is cut to max */
	w = buf_reserve(&b, SIZE_MAX, &avail);
	assert_non_null(w);
	EQ("SIZE_MAX want", avail, 1 << 20);
	EQ("SIZE_MAX cap", b.cap, 1 << 20);
	buf_cleanup(&b);
}

/* ---- consume ----------------------------------------------------------------- */

static void test_consume(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 64);
	assert_int_equal(buf_append(&b, "abcdef", 6), 0);
	buf_consume(&b, 0);
	check_content("consume 0", &b, "abcdef", 6);
	buf_consume(&b, 2);
	check_content("consume 2", &b, "cdef", 4);
	EQ("off", b.off, 2);
	buf_consume(&b, 1);
	check_content("consume 1", &b, "def", 3);
	assert_int_equal(buf_append(&b, "gh", 2), 0);
	check_content("append after consume", &b, "defgh", 5);
	buf_consume(&b, 5);
	check_content("consume all", &b, "", 0);
	EQ("empty resets off", b.off, 0);
	/* consumed bytes are room again */
	assert_int_equal(buf_append(&b, "0123456789012345678901234567890123456789"
	    "012345678901234567890123", 64), 0);
	assert_true(buf_full(&b));
	buf_consume(&b, 60);
	EQ("room after consume", buf_room(&b), 60);
	check_content("tail", &b, "0123", 4);
	buf_cleanup(&b);
}

/* ---- sliding ----------------------------------------------------------------- */

static void test_slide(void **state)
{
	struct buf b;
	size_t avail;
	char *w, *data;

	(void)state;
	/* max 16 = cap 16: consumed space at the front is reused by sliding */
	buf_init(&b, 16);
	assert_int_equal(buf_append(&b, "0123456789abcdef", 16), 0);
	EQ("cap", b.cap, 16);
	data = b.data;
	buf_consume(&b, 10);
	EQ("off before", b.off, 10);
	w = buf_reserve(&b, 8, &avail);
	assert_non_null(w);
	EQ("slid to the front", b.off, 0);
	EQ("same allocation", b.data == data, 1);
	EQ("cap kept", b.cap, 16);
	EQ("written after the data", w == b.data + 6, 1);
	EQ("avail", avail, 10);
	check_content("slid", &b, "abcdef", 6);
	memcpy(w, "ghijklmn", 8);
	buf_commit(&b, 8);
	check_content("after slide", &b, "abcdefghijklmn", 14);

	/* an append that only fits after a slide */
	buf_consume(&b, 12);
	check_content("two left", &b, "mn", 2);
	EQ("off 12", b.off, 12);
	assert_int_equal(buf_append(&b, "ABCDEFGHIJKLMN", 14), 0);
	check_content("append slid", &b, "mnABCDEFGHIJKLMN", 16);
	EQ("off 0", b.off, 0);
	buf_cleanup(&b);

	/* no slide while there is room behind the data */
	buf_init(&b, 4096);
	{
		char src[100];

		pattern(src, 0, sizeof(src));
		assert_int_equal(buf_append(&b, src, 100), 0);
		buf_consume(&b, 50);
		w = buf_reserve(&b, 10, &avail);
		assert_non_null(w);
		EQ("no slide: off", b.off, 50);
		EQ("no slide: where", w == b.data + 100, 1);
		check_content("no slide", &b, src + 50, 50);
	}
	buf_cleanup(&b);

	/* slide and grow at once: the data keeps its bytes */
	buf_init(&b, 1 << 16);
	{
		static char src[12000];

		pattern(src, 0, sizeof(src));
		assert_int_equal(buf_append(&b, src, 4096), 0);
		buf_consume(&b, 1000);
		assert_int_equal(buf_append(&b, src + 4096, 6000), 0);
		check_content("slide+grow", &b, src + 1000, 9096);
		EQ("slide+grow off", b.off, 0);
	}
	buf_cleanup(&b);
}

/* ---- growth -------------------------------------------------------------------- */

static void test_growth_bounded(void **state)
{
	static const size_t maxes[] = {
		1, 2, 100, 4095, 4096, 4097, 5000, 8191, 8192, 8193, 65537,
		262144, 300000,
	};
	static const size_t chunks[] = { 1, 7, 777, 4096, 10000 };
	static char src[300000];

	(void)state;
	pattern(src, 0, sizeof(src));
	for (size_t m = 0; m < NELEM(maxes); m++)
		for (size_t k = 0; k < NELEM(chunks); k++) {
			struct buf b;
			size_t len = 0, last_cap = 0;
			char name[64];

			snprintf(name, sizeof(name), "max %zu chunk %zu", maxes[m],
			    chunks[k]);
			buf_init(&b, maxes[m]);
			while (len < maxes[m]) {
				size_t n = chunks[k] < maxes[m] - len ?
				    chunks[k] : maxes[m] - len;

				EQ(name, buf_append(&b, src + len, n), 0);
				len += n;
				check_invariants(name, &b);
				EQ(name, b.cap >= last_cap, 1);  /* never shrinks */
				last_cap = b.cap;
			}
			EQ(name, b.cap, maxes[m]);
			EQ(name, buf_append(&b, src, 1), -1);
			EQ(name, b.cap, maxes[m]);
			check_content(name, &b, src, maxes[m]);
			buf_cleanup(&b);
		}
}

/* ---- clear, cleanup, reuse ------------------------------------------------------ */

static void test_clear(void **state)
{
	struct buf b;
	char *data;
	size_t cap;

	(void)state;
	buf_init(&b, 32);
	assert_int_equal(buf_append(&b, "hello world", 11), 0);
	buf_consume(&b, 3);
	data = b.data;
	cap = b.cap;
	buf_clear(&b);
	check_content("cleared", &b, "", 0);
	EQ("clear keeps the allocation", b.data == data, 1);
	EQ("clear keeps cap", b.cap, cap);
	EQ("clear keeps max", b.max, 32);
	EQ("clear off", b.off, 0);
	assert_int_equal(buf_append(&b, "again", 5), 0);
	check_content("after clear", &b, "again", 5);
	/* the whole max is room again */
	buf_clear(&b);
	EQ("room", buf_room(&b), 32);
	assert_int_equal(buf_append(&b, "0123456789abcdef0123456789abcdef", 32),
	    0);
	assert_true(buf_full(&b));
	buf_clear(&b);
	assert_false(buf_full(&b));
	/* clear on an empty, unallocated buffer */
	buf_cleanup(&b);
	buf_clear(&b);
	check_content("clear unallocated", &b, "", 0);
	buf_cleanup(&b);
}

static void test_cleanup_reuse(void **state)
{
	struct buf b;

	(void)state;
	/* cleanup of a buffer that never allocated, and twice */
	buf_init(&b, 10);
	buf_cleanup(&b);
	buf_cleanup(&b);
	assert_null(b.data);

	buf_init(&b, 16);
	assert_int_equal(buf_append(&b, "0123456789", 10), 0);
	buf_consume(&b, 4);
	buf_cleanup(&b);
	assert_null(b.data);
	EQ("cleanup len", b.len, 0);
	EQ("cleanup off", b.off, 0);
	EQ("cleanup cap", b.cap, 0);
	check_invariants("cleaned", &b);

	/* reuse after buf_init, with another cap */
	buf_init(&b, 8);
	assert_int_equal(buf_append(&b, "abcdefgh", 8), 0);
	assert_int_equal(buf_append(&b, "i", 1), -1);
	check_content("reused", &b, "abcdefgh", 8);
	buf_cleanup(&b);

	/* reuse straight after cleanup, without buf_init: max is kept.
	 * conn_trim() (proxy/conn.c) frees idle buffers this way and goes
	 * on using them, although buf.h only promises reuse after buf_init. */
	buf_init(&b, 8);
	assert_int_equal(buf_append(&b, "xyz", 3), 0);
	buf_cleanup(&b);
	EQ("max kept", b.max, 8);
	assert_int_equal(buf_append(&b, "12345678", 8), 0);
	check_content("reused after cleanup", &b, "12345678", 8);
	buf_cleanup(&b);

	/* many rounds: nothing leaks (LSan) */
	for (int i = 0; i < 100; i++) {
		char src[5000];

		pattern(src, (size_t)i, sizeof(src));
		buf_init(&b, 5000);
		assert_int_equal(buf_append(&b, src, sizeof(src)), 0);
		check_content("round", &b, src, sizeof(src));
		buf_cleanup(&b);
	}
}

static void test_zero_length(void **state)
{
	struct buf b;

	(void)state;
	/* on an empty buffer: succeeds, allocates nothing */
	buf_init(&b, 16);
	assert_int_equal(buf_append(&b, "x", 0), 0);
	assert_int_equal(buf_append(&b, NULL, 0), 0);
	assert_null(b.data);
	check_content("empty", &b, "", 0);
	/* in the middle */
	assert_int_equal(buf_append(&b, "abc", 3), 0);
	assert_int_equal(buf_append(&b, "zzz", 0), 0);
	check_content("middle", &b, "abc", 3);
	/* on a full buffer */
	assert_int_equal(buf_append(&b, "defghijklmnop", 13), 0);
	assert_true(buf_full(&b));
	assert_int_equal(buf_append(&b, "q", 0), 0);
	check_content("full", &b, "abcdefghijklmnop", 16);
	buf_cleanup(&b);
	/* with max 0 */
	buf_init(&b, 0);
	assert_int_equal(buf_append(&b, "q", 0), 0);
	assert_int_equal(buf_append(&b, "q", 1), -1);
	check_content("max 0", &b, "", 0);
	buf_cleanup(&b);
}

/* ---- against a reference array ------------------------------------------------- */

static uint32_t rng_state;

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return n ? rng_state % n : 0;
}

static void model_run(size_t max, int steps, uint32_t seed)
{
	char *ref = malloc(max + 1), *src = malloc(2 * max + 64);
	size_t rlen = 0, stream = 0;
	struct buf b;
	char name[64];

	assert_non_null(ref);
	assert_non_null(src);
	rng_state = seed;
	buf_init(&b, max);
	for (int step = 0; step < steps; step++) {
		uint32_t op = rnd(100);

		snprintf(name, sizeof(name), "max %zu seed %u step %d", max,
		    seed, step);
		if (op < 45) {
			/* append: sometimes too much, sometimes exactly the room */
			size_t n = rnd(4) == 0 ? max - rlen + rnd(3) :
			    rnd((uint32_t)(max / 2 + 2));
			int want = n <= max - rlen ? 0 : -1;

			pattern(src, stream, n);
			EQ(name, buf_append(&b, src, n), want);
			if (want == 0) {
				memcpy(ref + rlen, src, n);
				rlen += n;
				stream += n;
			}
		} else if (op < 65) {
			/* reserve, write some, commit some of that */
			size_t want = rnd((uint32_t)max + 8), avail = 12345;
			char *w = buf_reserve(&b, want, &avail);

			if (rlen == max) {
				EQ(name, w == NULL, 1);
				EQ(name, avail, 0);
			} else {
				size_t n;

				assert_non_null(w);
				EQ(name, avail >= 1, 1);
				EQ(name, avail <= max - rlen, 1);
				/* at least min(want, room), contiguous */
				EQ(name, avail >= (want < max - rlen ? want :
				    max - rlen), 1);
				n = rnd((uint32_t)avail + 1);
				pattern(w, stream, avail);  /* write it all */
				buf_commit(&b, n);
				memcpy(ref + rlen, w, n);
				rlen += n;
				stream += n;
			}
		} else if (op < 95) {
			/* consume: often everything, else a random part */
			size_t n = rnd(5) == 0 ? rlen : rnd((uint32_t)rlen + 1);

			buf_consume(&b, n);
			memmove(ref, ref + n, rlen - n);
			rlen -= n;
		} else if (op < 98) {
			buf_clear(&b);
			rlen = 0;
		} else {
			buf_cleanup(&b);
			buf_init(&b, max);
			rlen = 0;
		}
		check_content(name, &b, ref, rlen);
	}
	buf_cleanup(&b);
	free(ref);
	free(src);
}

static void test_model_random(void **state)
{
	static const struct {
		size_t max;
		int steps;
	} runs[] = {
		{ 1, 2000 }, { 2, 2000 }, { 7, 3000 }, { 100, 5000 },
		{ 4095, 5000 }, { 4096, 5000 }, { 5000, 5000 }, { 20000, 5000 },
		{ 262144, 2000 },
	};

	(void)state;
	for (size_t i = 0; i < NELEM(runs); i++)
		for (uint32_t seed = 1; seed <= 3; seed++)
			model_run(runs[i].max, runs[i].steps,
			    seed * 2654435761u + (uint32_t)i);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cap_table),
		cmocka_unit_test(test_reserve_commit),
		cmocka_unit_test(test_consume),
		cmocka_unit_test(test_slide),
		cmocka_unit_test(test_growth_bounded),
		cmocka_unit_test(test_clear),
		cmocka_unit_test(test_cleanup_reuse),
		cmocka_unit_test(test_zero_length),
		cmocka_unit_test(test_model_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
