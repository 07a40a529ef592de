/* buf: bounded byte buffers. */
#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "starttlsd/buf.h"

#define BUF_MIN_ALLOC 4096

/*
 * Freed storage of the sizes every session uses (4 KiB to 64 KiB, powers
 * of two) is kept for the next buffer of that size, per thread, at most
 * BUF_SPARE_BYTES in all: a session's buffers come and go with it, and
 * malloc() and free() of 16 KiB blocks were a visible part of a short
 * session's cost. Not under AddressSanitizer (it is to see every free()),
 * unless built with -DBUF_SPARE_FORCE to test this cache itself.
 */
#if defined(__SANITIZE_ADDRESS__) && !defined(BUF_SPARE_FORCE)
#define BUF_SPARE_BYTES 0
#else
#define BUF_SPARE_BYTES (256 * 1024)
#endif
#define BUF_SPARE_CLASSES 5   /* 4, 8, 16, 32, 64 KiB */
#define BUF_SPARE_PER 16

static _Thread_local struct {
	char *blk[BUF_SPARE_CLASSES][BUF_SPARE_PER];
	unsigned n[BUF_SPARE_CLASSES];
	size_t bytes;
} spare;

/* The class of an allocation of cap bytes, or -1 if none is kept. */
static int
spare_class(size_t cap)
{
	for (int k = 0; k < BUF_SPARE_CLASSES; k++)
		if (cap == (size_t)BUF_MIN_ALLOC << k)
			return k;
	return -1;
}

static char *
spare_take(size_t cap)
{
	int k = spare_class(cap);

	if (k < 0 || spare.n[k] == 0)
		return NULL;
	spare.bytes -= cap;
	return spare.blk[k][--spare.n[k]];
}

static bool
spare_keep(char *p, size_t cap)
{
	int k = spare_class(cap);

	if (k < 0 || spare.n[k] == BUF_SPARE_PER ||
	    spare.bytes + cap > BUF_SPARE_BYTES)
		return false;
	spare.blk[k][spare.n[k]++] = p;
	spare.bytes += cap;
	return true;
}

void
buf_init(struct buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

void
buf_cleanup(struct buf *b)
{
	if (b->data != NULL && !spare_keep(b->data, b->cap))
		free(b->data);
	b->data = NULL;
	b->off = b->len = b->cap = 0;
}

char *
buf_reserve(struct buf *b, size_t want, size_t *out_avail)
{
	size_t room = buf_room(b);

	*out_avail = 0;
	if (room == 0)
		return NULL;
	if (want > room)
		want = room;
	if (want == 0)
		want = 1;
	if (b->len == 0)
		b->off = 0;
	if (b->off + b->len + want > b->cap) {
		/* Slide the data to the front before growing. */
		if (b->off > 0) {
			memmove(b->data, b->data + b->off, b->len);
			b->off = 0;
		}
		if (b->len + want > b->cap) {
			size_t ncap = b->cap ? b->cap : BUF_MIN_ALLOC;
			char *n;

			while (ncap < b->len + want)
				ncap *= 2;
			if (ncap > b->max)
				ncap = b->max;
			if (b->data == NULL && (n = spare_take(ncap)) != NULL)
				;
			else if ((n = realloc(b->data, ncap)) == NULL)
				return NULL;
			b->data = n;
			b->cap = ncap;
		}
	}
	*out_avail = b->cap - b->off - b->len;
	if (*out_avail > room)
		*out_avail = room;
	return b->data + b->off + b->len;
}

void
buf_commit(struct buf *b, size_t n)
{
	assert(b->off + b->len + n <= b->cap);
	b->len += n;
}

int
buf_append(struct buf *b, const void *p, size_t n)
{
	size_t avail;
	char *w;

	if (n == 0)
		return 0;
	if (n > buf_room(b))
		return -1;
	if ((w = buf_reserve(b, n, &avail)) == NULL || avail < n)
		return -1;
	memcpy(w, p, n);
	buf_commit(b, n);
	return 0;
}

void
buf_consume(struct buf *b, size_t n)
{
	assert(n <= b->len);
	b->off += n;
	b->len -= n;
	if (b->len == 0)
		b->off = 0;
}

void
buf_clear(struct buf *b)
{
	b->off = b->len = 0;
}
