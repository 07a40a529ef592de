/*
 * pdwire: the pure parts of policyd.h: the request/answer packets, the
 * answer cache, and handing a client socket over the control socket. No
 * libunbound here, so unit tests and the workers can use it.
 */
#include "starttlsd/policyd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

const char *
pd_kind_str(enum pd_kind k)
{
	switch (k) {
	case PD_TLSA: return "TLSA";
	case PD_MX: return "MX";
	case PD_A: return "A";
	case PD_AAAA: return "AAAA";
	}
	return "unknown";
}

static bool
kind_ok(unsigned k)
{
	return k >= PD_TLSA && k <= PD_AAAA;
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

/* Lower-case copy without a trailing dot; false unless a plausible host name. */
static bool
name_norm(const char *in, size_t n, char *out)
{
	if (n > 0 && in[n - 1] == '.')
		n--;
	if (n == 0 || n > PD_NAME_MAX || in[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = in[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.'))
			return false;
		if (c == '.' && i > 0 && out[i - 1] == '.')
			return false;
		out[i] = c;
	}
	out[n] = '\0';
	return true;
}

#define REQ_HDR 12

size_t
pd_req_encode(const struct pd_req *req, uint8_t *out, size_t cap)
{
	size_t n = strnlen(req->name, sizeof(req->name));

	if (!kind_ok(req->kind) || n == 0 || n > PD_NAME_MAX ||
	    cap < REQ_HDR + n)
		return 0;
	put32(out, PD_MAGIC);
	put32(out + 4, req->seq);
	out[8] = (uint8_t)req->kind;
	put16(out + 9, req->port);
	out[11] = (uint8_t)n;
	memcpy(out + REQ_HDR, req->name, n);
	return REQ_HDR + n;
}

int
pd_req_decode(const uint8_t *in, size_t len, struct pd_req *out)
{
	memset(out, 0, sizeof(*out));
	if (len < REQ_HDR || get32(in) != PD_MAGIC || !kind_ok(in[8]) ||
	    len != REQ_HDR + (size_t)in[11])
		return -1;
	out->seq = get32(in + 4);
	out->kind = (enum pd_kind)in[8];
	out->port = get16(in + 9);
	if (!name_norm((const char *)in + REQ_HDR, in[11], out->name))
		return -1;
	return 0;
}

#define ANS_HDR 17

size_t
pd_ans_encode(uint32_t seq, enum pd_kind kind, enum res_status status,
    uint8_t flags, uint32_t ttl, const uint8_t *const *rdata,
    const size_t *rdlen, size_t nrr, uint8_t *out, size_t cap)
{
	size_t o = ANS_HDR, i;

	if (cap < ANS_HDR)
		return 0;
	if (nrr > PD_MAX_RR)
		goto truncated;
	for (i = 0; i < nrr; i++) {
		if (rdlen[i] > UINT16_MAX || cap - o < 2 + rdlen[i])
			goto truncated;
		put16(out + o, (uint16_t)rdlen[i]);
		memcpy(out + o + 2, rdata[i], rdlen[i]);
		o += 2 + rdlen[i];
	}
	goto header;
truncated:
	o = ANS_HDR;
	nrr = 0;
	status = RES_ERROR;
	flags |= PD_F_TRUNCATED;
header:
	put32(out, PD_MAGIC);
	put32(out + 4, seq);
	out[8] = (uint8_t)kind;
	out[9] = (uint8_t)status;
	out[10] = flags;
	put32(out + 11, ttl);
	put16(out + 15, (uint16_t)nrr);
	return o;
}

int
pd_ans_decode(const uint8_t *in, size_t len, struct pd_ans *out)
{
	size_t o = ANS_HDR;

	memset(out, 0, sizeof(*out));
	if (len < ANS_HDR || get32(in) != PD_MAGIC || !kind_ok(in[8]) ||
	    in[9] > RES_ERROR)
		return -1;
	out->seq = get32(in + 4);
	out->kind = (enum pd_kind)in[8];
	out->status = (enum res_status)in[9];
	out->flags = in[10];
	out->ttl = get32(in + 11);
	out->nrr = get16(in + 15);
	if (out->nrr > PD_MAX_RR)
		return -1;
	for (size_t i = 0; i < out->nrr; i++) {
		size_t l;
		if (len - o < 2)
			return -1;
		l = get16(in + o);
		if (len - o - 2 < l)
			return -1;
		out->rdata[i] = in + o + 2;
		out->rdlen[i] = l;
		o += 2 + l;
	}
	return o == len ? 0 : -1;
}

/* ---- cache ------------------------------------------------------------------ */

#define NBUCKETS 4096

struct pd_entry {
	struct pd_entry *next;
	enum pd_kind kind;
	uint16_t port;
	uint64_t expires;
	size_t len;
	uint8_t *ans;
	char name[PD_NAME_MAX + 1];
};

struct pd_cache {
	struct pd_entry *bucket[NBUCKETS];
	size_t n, max;
};

static size_t
hash(enum pd_kind kind, uint16_t port, const char *name)
{
	uint32_t h = 2166136261u ^ (uint32_t)kind ^ ((uint32_t)port << 8);

	for (; *name != '\0'; name++)
		h = (h ^ (uint8_t)*name) * 16777619u;
	return h % NBUCKETS;
}

struct pd_cache *
pd_cache_new(size_t max_entries)
{
	struct pd_cache *c = calloc(1, sizeof(*c));

	if (c != NULL)
		c->max = max_entries ? max_entries : PD_CACHE_MAX;
	return c;
}

static void
entry_free(struct pd_entry *e)
{
	free(e->ans);
	free(e);
}

void
pd_cache_free(struct pd_cache *c)
{
	if (c == NULL)
		return;
	for (size_t b = 0; b < NBUCKETS; b++)
		while (c->bucket[b] != NULL) {
			struct pd_entry *e = c->bucket[b];
			c->bucket[b] = e->next;
			entry_free(e);
		}
	free(c);
}

uint32_t
pd_cache_ttl(enum res_status status, uint32_t ttl)
{
	if (status == RES_BOGUS || status == RES_ERROR)
		return PD_TTL_FAIL;
	return ttl < PD_TTL_MIN ? PD_TTL_MIN : ttl > PD_TTL_MAX ? PD_TTL_MAX : ttl;
}

static struct pd_entry **
lookup(struct pd_cache *c, enum pd_kind kind, uint16_t port, const char *name)
{
	struct pd_entry **pp = &c->bucket[hash(kind, port, name)];

	for (; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->kind == kind && (*pp)->port == port &&
		    strcmp((*pp)->name, name) == 0)
			break;
	return pp;
}

/* Drop the entry that expires first (the full-cache case; O(n), rare). */
static void
evict_one(struct pd_cache *c)
{
	struct pd_entry **best = NULL;

	for (size_t b = 0; b < NBUCKETS; b++)
		for (struct pd_entry **pp = &c->bucket[b]; *pp != NULL;
		    pp = &(*pp)->next)
			if (best == NULL || (*pp)->expires < (*best)->expires)
				best = pp;
	if (best != NULL) {
		struct pd_entry *e = *best;
		*best = e->next;
		entry_free(e);
		c->n--;
	}
}

int
pd_cache_put(struct pd_cache *c, enum pd_kind kind, uint16_t port,
    const char *name, enum res_status status, uint32_t ttl,
    const uint8_t *ans, size_t anslen, uint64_t now)
{
	struct pd_entry **pp, *e;
	uint8_t *copy;

	if (strlen(name) > PD_NAME_MAX)
		return -1;
	copy = malloc(anslen ? anslen : 1);
	if (copy == NULL)
		return -1;
	memcpy(copy, ans, anslen);
	pp = lookup(c, kind, port, name);
	if (*pp != NULL) {
		e = *pp;
		free(e->ans);
	} else {
		if (c->n >= c->max) {
			evict_one(c);
			pp = lookup(c, kind, port, name);  /* the chain may have changed */
		}
		e = calloc(1, sizeof(*e));
		if (e == NULL) {
			free(copy);
			return -1;
		}
		e->kind = kind;
		e->port = port;
		memcpy(e->name, name, strlen(name) + 1);
		e->next = NULL;
		*pp = e;
		c->n++;
	}
	e->ans = copy;
	e->len = anslen;
	e->expires = now + pd_cache_ttl(status, ttl);
	return 0;
}

const uint8_t *
pd_cache_get(struct pd_cache *c, enum pd_kind kind, uint16_t port,
    const char *name, uint64_t now, size_t *len, uint32_t *ttl_left)
{
	struct pd_entry **pp = lookup(c, kind, port, name), *e = *pp;

	if (e == NULL)
		return NULL;
	if (e->expires <= now) {
		*pp = e->next;
		entry_free(e);
		c->n--;
		return NULL;
	}
	*len = e->len;
	if (ttl_left != NULL)
		*ttl_left = (uint32_t)(e->expires - now);
	return e->ans;
}

size_t
pd_cache_count(const struct pd_cache *c)
{
	return c->n;
}

/* ---- handing over a client socket ------------------------------------------------ */

int
policyd_give_client(int ctl, int fd)
{
	char byte = 'C';
	struct iovec iov = { &byte, 1 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
	    .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm;
	ssize_t r;

	memset(&u, 0, sizeof(u));
	cm = CMSG_FIRSTHDR(&m);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	do
		r = sendmsg(ctl, &m, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	return r == 1 ? 0 : -1;
}
