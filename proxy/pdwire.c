/*
 * pdwire: the pure parts of policyd.h: the request/answer packets, the
 * answer cache, and handing a client socket over the control socket. No
 * libunbound here, so unit tests and the workers can use it.
 */
#include "starttlsd/policyd.h"

#include "starttlsd/fdpass.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>

const char *
pd_kind_str(enum pd_kind k)
{
	switch (k) {
	case PD_TLSA: return "TLSA";
	case PD_MX: return "MX";
	case PD_A: return "A";
	case PD_AAAA: return "AAAA";
	case PD_POLICY: return "POLICY";
	case PD_ADDR: return "ADDR";
	case PD_REPORT: return "REPORT";
	}
	return "unknown";
}

static bool
kind_ok(unsigned k)
{
	return k >= PD_TLSA && k <= PD_AAAA;
}

/* A request kind (a report is not a request: pd_report_decode). */
static bool
req_kind_ok(unsigned k)
{
	return k >= PD_TLSA && k <= PD_ADDR;
}

static bool
has_addr(unsigned k)
{
	return k == PD_POLICY || k == PD_ADDR;
}

/* family 0 (none), AF_INET or AF_INET6 */
static bool
addr_ok(const struct pd_req_addr *a)
{
	return a->family == 0 || a->family == AF_INET || a->family == AF_INET6;
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
	/* "name.." is not "name.": one trailing dot only (and so idempotent). */
	if (out[n - 1] == '.')
		return false;
	out[n] = '\0';
	return true;
}

#define REQ_HDR 12

/*
 * request: magic u32, seq u32, kind u8, port u16, namelen u8, name, and for
 * PD_POLICY and PD_ADDR the address: family u8, 16 bytes. PD_ADDR has an
 * empty name, every other kind a name.
 */
#define REQ_ADDR 17

size_t
pd_req_encode(const struct pd_req *req, uint8_t *out, size_t cap)
{
	size_t n = strnlen(req->name, sizeof(req->name));
	size_t extra = has_addr(req->kind) ? REQ_ADDR : 0;

	if (!req_kind_ok(req->kind) || n > PD_NAME_MAX ||
	    (req->kind == PD_ADDR ? n != 0 : n == 0) ||
	    (extra > 0 && !addr_ok(&req->addr)) || cap < REQ_HDR + n + extra)
		return 0;
	put32(out, PD_MAGIC);
	put32(out + 4, req->seq);
	out[8] = (uint8_t)req->kind;
	put16(out + 9, req->port);
	out[11] = (uint8_t)n;
	memcpy(out + REQ_HDR, req->name, n);
	if (extra > 0) {
		out[REQ_HDR + n] = req->addr.family;
		memcpy(out + REQ_HDR + n + 1, req->addr.addr, 16);
	}
	return REQ_HDR + n + extra;
}

int
pd_req_decode(const uint8_t *in, size_t len, struct pd_req *out)
{
	size_t n, extra;

	memset(out, 0, sizeof(*out));
	if (len < REQ_HDR || get32(in) != PD_MAGIC || !req_kind_ok(in[8]))
		return -1;
	n = in[11];
	extra = has_addr(in[8]) ? REQ_ADDR : 0;
	if (len != REQ_HDR + n + extra)
		return -1;
	out->seq = get32(in + 4);
	out->kind = (enum pd_kind)in[8];
	out->port = get16(in + 9);
	if (out->kind == PD_ADDR) {
		if (n != 0)
			return -1;
	} else if (!name_norm((const char *)in + REQ_HDR, n, out->name))
		return -1;
	if (extra > 0) {
		out->addr.family = in[REQ_HDR + n];
		memcpy(out->addr.addr, in + REQ_HDR + n + 1, 16);
		if (!addr_ok(&out->addr))
			return -1;
		if (out->addr.family == AF_INET)
			memset(out->addr.addr + 4, 0, 12);
	}
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
	char name[PD_CACHE_KEY_MAX + 1];
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

	if (strlen(name) > PD_CACHE_KEY_MAX)
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
	return fdpass_send(ctl, "C", 1, fd, NULL, 0, 0) == 1 ? 0 : -1;
}

/* ---- domain policy answers, reports ---------------------------------------------- */

const char *
pd_result_str(enum pd_result r)
{
	switch (r) {
	case PD_R_SUCCESS: return "success";
	case PD_R_STARTTLS_NOT_SUPPORTED: return "starttls-not-supported";
	case PD_R_CERT_HOST_MISMATCH: return "certificate-host-mismatch";
	case PD_R_CERT_EXPIRED: return "certificate-expired";
	case PD_R_CERT_NOT_TRUSTED: return "certificate-not-trusted";
	case PD_R_VALIDATION_FAILURE: return "validation-failure";
	case PD_R_TLSA_INVALID: return "tlsa-invalid";
	case PD_R_DNSSEC_INVALID: return "dnssec-invalid";
	case PD_R_DANE_REQUIRED: return "dane-required";
	case PD_R_STS_POLICY_FETCH_ERROR: return "sts-policy-fetch-error";
	case PD_R_STS_POLICY_INVALID: return "sts-policy-invalid";
	case PD_R_STS_WEBPKI_INVALID: return "sts-webpki-invalid";
	case PD_R_MAX_: break;
	}
	return "unknown";
}

int
pd_packet_kind(const uint8_t *in, size_t len)
{
	if (len < 9 || get32(in) != PD_MAGIC || in[8] < PD_TLSA ||
	    in[8] > PD_REPORT)
		return -1;
	return in[8];
}

/* A bounded writer: over is set when something did not fit. */
struct wr {
	uint8_t *out;
	size_t cap, o;
	bool over;
};

static void
wr_bytes(struct wr *w, const void *p, size_t n)
{
	if (w->over || w->cap - w->o < n) {
		w->over = true;
		return;
	}
	memcpy(w->out + w->o, p, n);
	w->o += n;
}

static void
wr_u8(struct wr *w, uint8_t v)
{
	wr_bytes(w, &v, 1);
}

static void
wr_u16(struct wr *w, uint16_t v)
{
	wr_bytes(w, &v, 2);
}

/* A string: u16 length, the bytes, a NUL (so the decoder can point at it). */
static void
wr_str(struct wr *w, const char *s, size_t max)
{
	size_t n = s != NULL ? strnlen(s, max) : 0;

	wr_u16(w, (uint16_t)n);
	wr_bytes(w, s != NULL ? s : "", n);
	wr_u8(w, 0);
}

struct rd {
	const uint8_t *in;
	size_t len, o;
	bool bad;
};

static const uint8_t *
rd_bytes(struct rd *r, size_t n)
{
	const uint8_t *p;

	if (r->bad || r->len - r->o < n) {
		r->bad = true;
		return NULL;
	}
	p = r->in + r->o;
	r->o += n;
	return p;
}

static uint8_t
rd_u8(struct rd *r)
{
	const uint8_t *p = rd_bytes(r, 1);
	return p != NULL ? *p : 0;
}

static uint16_t
rd_u16(struct rd *r)
{
	const uint8_t *p = rd_bytes(r, 2);
	return p != NULL ? get16(p) : 0;
}

static uint32_t
rd_u32(struct rd *r)
{
	const uint8_t *p = rd_bytes(r, 4);
	return p != NULL ? get32(p) : 0;
}

/* A string of at most max bytes, NUL-terminated in the packet, no NUL inside. */
static const char *
rd_str(struct rd *r, size_t max)
{
	size_t n = rd_u16(r);
	const uint8_t *p;

	if (n > max) {
		r->bad = true;
		return NULL;
	}
	p = rd_bytes(r, n + 1);
	if (p == NULL || p[n] != 0 || memchr(p, 0, n) != NULL) {
		r->bad = true;
		return NULL;
	}
	return (const char *)p;
}

#define POL_STS_ID_MAX 32     /* STS_ID_MAX */
#define POL_STS_MX_MAX 32     /* STS_MAX_MX */

static void
pol_write(const struct pd_pol *pol, struct wr *w, bool bare)
{
	size_t nhosts = bare ? 0 : pol->nhosts;
	size_t nmx = bare ? 0 : pol->sts_nmx;

	put32(w->out, PD_MAGIC);
	w->o = 4;
	wr_bytes(w, &pol->seq, 4);
	wr_u8(w, (uint8_t)pol->kind);
	wr_u8(w, pol->flags);
	wr_bytes(w, &pol->ttl, 4);
	wr_u8(w, (uint8_t)pol->dane);
	wr_u8(w, (uint8_t)pol->dane_result);
	wr_u8(w, (uint8_t)(bare ? PD_STS_NONE : pol->sts));
	wr_u8(w, (uint8_t)(bare ? PD_R_SUCCESS : pol->sts_fail));
	wr_u8(w, (uint8_t)nhosts);
	wr_u8(w, (uint8_t)nmx);
	{
		uint32_t ma = bare ? 0 : pol->sts_max_age;
		wr_bytes(w, &ma, 4);
	}
	wr_str(w, bare ? "answer too large" : pol->why, PD_WHY_MAX);
	wr_str(w, bare ? "" : pol->mx, PD_NAME_MAX);
	wr_str(w, bare ? "" : pol->sni, PD_NAME_MAX);
	wr_str(w, bare ? "" : pol->sts_id, POL_STS_ID_MAX);
	wr_str(w, bare || pol->sts_why == NULL ? "" : pol->sts_why, PD_WHY_MAX);
	for (size_t i = 0; i < nhosts; i++) {
		const struct pd_tlsa_host *h = &pol->hosts[i];
		wr_str(w, h->host, PD_NAME_MAX);
		wr_str(w, h->base, PD_NAME_MAX);
		wr_u16(w, (uint16_t)h->nrr);
		for (size_t k = 0; k < h->nrr; k++) {
			wr_u16(w, (uint16_t)h->rdlen[k]);
			wr_bytes(w, h->rdata[k], h->rdlen[k]);
		}
	}
	for (size_t i = 0; i < nmx; i++)
		wr_str(w, pol->sts_mx[i], PD_NAME_MAX);
}

size_t
pd_pol_encode(const struct pd_pol *pol, uint8_t *out, size_t cap)
{
	struct wr w = { out, cap, 0, false };
	bool fits = pol->nhosts <= PD_MAX_HOSTS && pol->sts_nmx <= POL_STS_MX_MAX;

	if (pol->kind != PD_POLICY && pol->kind != PD_ADDR)
		return 0;
	for (size_t i = 0; fits && i < pol->nhosts; i++) {
		if (pol->hosts[i].nrr > PD_MAX_RR)
			fits = false;
		for (size_t k = 0; fits && k < pol->hosts[i].nrr; k++)
			if (pol->hosts[i].rdlen[k] > UINT16_MAX)
				fits = false;
	}
	if (cap >= 4 && fits) {
		pol_write(pol, &w, false);
		if (!w.over)
			return w.o;
	}
	/* Too large: TEMPFAIL "answer too large", never a subset. */
	{
		struct pd_pol t = *pol;
		t.dane = PD_DANE_TEMPFAIL;
		t.dane_result = PD_R_VALIDATION_FAILURE;
		t.ttl = PD_TTL_FAIL;
		w = (struct wr){ out, cap, 0, false };
		if (cap < 4)
			return 0;
		pol_write(&t, &w, true);
		return w.over ? 0 : w.o;
	}
}

int
pd_pol_decode(const uint8_t *in, size_t len, struct pd_pol *out)
{
	struct rd r = { in, len, 0, false };
	unsigned kind, dane, res, sts, stsf;

	memset(out, 0, sizeof(*out));
	if (rd_u32(&r) != PD_MAGIC || r.bad)
		return -1;
	out->seq = rd_u32(&r);
	kind = rd_u8(&r);
	out->flags = rd_u8(&r);
	out->ttl = rd_u32(&r);
	dane = rd_u8(&r);
	res = rd_u8(&r);
	sts = rd_u8(&r);
	stsf = rd_u8(&r);
	out->nhosts = rd_u8(&r);
	out->sts_nmx = rd_u8(&r);
	out->sts_max_age = rd_u32(&r);
	if (r.bad || (kind != PD_POLICY && kind != PD_ADDR) ||
	    dane > PD_DANE_UNKNOWN || res >= PD_R_MAX_ || sts > PD_STS_ENFORCE ||
	    (stsf != PD_R_SUCCESS && stsf != PD_R_STS_POLICY_FETCH_ERROR &&
	    stsf != PD_R_STS_POLICY_INVALID && stsf != PD_R_STS_WEBPKI_INVALID) ||
	    out->nhosts > PD_MAX_HOSTS || out->sts_nmx > POL_STS_MX_MAX)
		return -1;
	out->kind = (enum pd_kind)kind;
	out->dane = (enum pd_dane)dane;
	out->dane_result = (enum pd_result)res;
	out->sts = (enum pd_sts)sts;
	out->sts_fail = (enum pd_result)stsf;
	out->why = rd_str(&r, PD_WHY_MAX);
	out->mx = rd_str(&r, PD_NAME_MAX);
	out->sni = rd_str(&r, PD_NAME_MAX);
	out->sts_id = rd_str(&r, POL_STS_ID_MAX);
	out->sts_why = rd_str(&r, PD_WHY_MAX);
	for (size_t i = 0; i < out->nhosts && !r.bad; i++) {
		struct pd_tlsa_host *h = &out->hosts[i];
		h->host = rd_str(&r, PD_NAME_MAX);
		h->base = rd_str(&r, PD_NAME_MAX);
		h->nrr = rd_u16(&r);
		if (h->nrr > PD_MAX_RR)
			return -1;
		for (size_t k = 0; k < h->nrr && !r.bad; k++) {
			h->rdlen[k] = rd_u16(&r);
			h->rdata[k] = rd_bytes(&r, h->rdlen[k]);
		}
	}
	for (size_t i = 0; i < out->sts_nmx && !r.bad; i++)
		out->sts_mx[i] = rd_str(&r, PD_NAME_MAX);
	return !r.bad && r.o == len ? 0 : -1;
}

/*
 * report: magic u32, 0 u32, kind u8 (PD_REPORT), policy_type u8, result u8,
 * family u8, addr 16 bytes, when u32, domain (u8 length, bytes), mx (same;
 * may be empty).
 */
#define REP_HDR 35

size_t
pd_report_encode(const struct pd_report *r, uint8_t *out, size_t cap)
{
	size_t dn = strnlen(r->domain, sizeof(r->domain));
	size_t mn = strnlen(r->mx, sizeof(r->mx));

	if (dn == 0 || dn > PD_NAME_MAX || mn > PD_NAME_MAX ||
	    r->policy_type < 1 || r->policy_type > 3 ||
	    r->result >= PD_R_MAX_ || !addr_ok(&r->addr) ||
	    cap < REP_HDR + 2 + dn + mn)
		return 0;
	put32(out, PD_MAGIC);
	put32(out + 4, 0);
	out[8] = PD_REPORT;
	out[9] = r->policy_type;
	out[10] = (uint8_t)r->result;
	out[11] = r->addr.family;
	memcpy(out + 12, r->addr.addr, 16);
	put32(out + 28, r->when);
	/* 32..34 reserved, zero */
	out[32] = out[33] = out[34] = 0;
	out[REP_HDR] = (uint8_t)dn;
	memcpy(out + REP_HDR + 1, r->domain, dn);
	out[REP_HDR + 1 + dn] = (uint8_t)mn;
	memcpy(out + REP_HDR + 2 + dn, r->mx, mn);
	return REP_HDR + 2 + dn + mn;
}

int
pd_report_decode(const uint8_t *in, size_t len, struct pd_report *out)
{
	size_t dn, mn;

	memset(out, 0, sizeof(*out));
	if (len < REP_HDR + 2 || get32(in) != PD_MAGIC || in[8] != PD_REPORT ||
	    in[10] >= PD_R_MAX_ || in[9] < 1 || in[9] > 3)
		return -1;
	dn = in[REP_HDR];
	if (len < REP_HDR + 2 + dn)
		return -1;
	mn = in[REP_HDR + 1 + dn];
	if (len != REP_HDR + 2 + dn + mn)
		return -1;
	out->policy_type = in[9];
	out->result = (enum pd_result)in[10];
	out->addr.family = in[11];
	memcpy(out->addr.addr, in + 12, 16);
	if (!addr_ok(&out->addr))
		return -1;
	out->when = get32(in + 28);
	if (!name_norm((const char *)in + REP_HDR + 1, dn, out->domain))
		return -1;
	if (mn > 0 && !name_norm((const char *)in + REP_HDR + 2 + dn, mn, out->mx))
		return -1;
	return 0;
}
