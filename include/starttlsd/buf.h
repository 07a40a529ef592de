/*
 * buf: a bounded byte buffer. Data lives in data[off .. off+len); the
 * allocation grows on demand up to max bytes and never beyond: callers stop
 * reading a leg when the buffer it feeds is full (backpressure, not growth).
 */
#ifndef STARTTLSD_BUF_H
#define STARTTLSD_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct buf {
	char *data;
	size_t off;  /* start of unread data */
	size_t len;  /* bytes of unread data */
	size_t cap;  /* allocated */
	size_t max;  /* hard cap on len */
};

/* Embedded object: init sets the cap, allocates nothing. */
void buf_init(struct buf *b, size_t max);
/* Frees the storage; b may be reused after buf_init. */
void buf_cleanup(struct buf *b);

static inline const char *buf_head(const struct buf *b) { return b->data + b->off; }
static inline size_t buf_len(const struct buf *b) { return b->len; }
static inline size_t buf_room(const struct buf *b) { return b->max - b->len; }
static inline bool buf_full(const struct buf *b) { return b->len >= b->max; }

/*
 * Make room for at least want contiguous bytes after the data (fewer if the
 * cap leaves less) and return where to write; *out_avail says how many may
 * be written. Returns NULL on allocation failure or when the buffer is full.
 * Follow with buf_commit().
 */
char *buf_reserve(struct buf *b, size_t want, size_t *out_avail);
void buf_commit(struct buf *b, size_t n);

/* Append n bytes; -1 (nothing appended) if they do not fit under the cap. */
int buf_append(struct buf *b, const void *p, size_t n);
/* Drop n bytes from the front. */
void buf_consume(struct buf *b, size_t n);
/* Drop everything (keeps the allocation). */
void buf_clear(struct buf *b);

#endif
