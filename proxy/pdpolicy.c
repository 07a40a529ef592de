/*
 * pdpolicy: PD_POLICY's decision from resolved facts, and the table of
 * learned addresses behind PD_ADDR (pdpolicy.h). Pure: no I/O, time passed in.
 */
#include "starttlsd/pdpolicy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#include "starttlsd/dane.h"

static void
lcopy(char *out, size_t cap, const char *in)
{
	size_t n = 0;

	if (in != NULL)
		for (; in[n] != '\0' && n + 1 < cap; n++)
			out[n] = (in[n] >= 'A' && in[n] <= 'Z') ?
			    (char)(in[n] - 'A' + 'a') : in[n];
	out[n] = '\0';
	if (n > 1 && out[n - 1] == '.')
		out[n - 1] = '\0';
}

void
pdp_init(struct pdp_facts *f, const char *domain, const struct pd_req_addr *x)
{
	memset(f, 0, sizeof(*f));
	lcopy(f->domain, sizeof(f->domain), domain);
	if (x != NULL)
		f->x = *x;
}

static void
rrs_free(struct pdp_rrs *r)
{
	for (size_t i = 0; i < r->nrr; i++)
		free(r->rdata[i]);
	r->nrr = 0;
}

void
pdp_free(struct pdp_facts *f)
{
	rrs_free(&f->mx);
	for (size_t i = 0; i < f->nhosts; i++) {
		rrs_free(&f->hosts[i].a);
		rrs_free(&f->hosts[i].aaaa);
		rrs_free(&f->hosts[i].tlsa);
		rrs_free(&f->hosts[i].cname);
	}
}

int
pdp_store(struct pdp_rrs *r, const struct res_answer *a)
{
	rrs_free(r);
	r->asked = r->done = true;
	r->status = a->status;
	r->nxdomain = a->nxdomain;
	r->ttl = a->ttl;
	lcopy(r->canon, sizeof(r->canon), a->canonname);
	snprintf(r->why, sizeof(r->why), "%s", a->why != NULL ? a->why : "");
	if (a->status != RES_SECURE && a->status != RES_INSECURE)
		return 0;
	if (a->nrr > PD_MAX_RR) {
		/* Never a silent subset: too many records is a failure. */
		r->status = RES_ERROR;
		snprintf(r->why, sizeof(r->why), "more than %d records",
		    PD_MAX_RR);
		return 0;
	}
	for (size_t i = 0; i < a->nrr; i++) {
		r->rdata[i] = malloc(a->rdlen[i] ? a->rdlen[i] : 1);
		if (r->rdata[i] == NULL) {
			r->status = RES_ERROR;
			snprintf(r->why, sizeof(r->why), "out of memory");
			return -1;
		}
		memcpy(r->rdata[i], a->rdata[i], a->rdlen[i]);
		r->rdlen[i] = a->rdlen[i];
		r->nrr = i + 1;
	}
	return 0;
}

static bool
failed(const struct pdp_rrs *r)
{
	return r->done && (r->status == RES_BOGUS || r->status == RES_ERROR);
}

/* MX RRset -> hosts, by preference (stable), duplicates dropped, bounded. */
static void
parse_mx(struct pdp_facts *f)
{
	struct { uint16_t pref; char name[PD_NAME_MAX + 1]; } all[PD_MAX_RR];
	size_t n = 0;

	f->parsed = true;
	if (failed(&f->mx))
		return;
	for (size_t i = 0; i < f->mx.nrr; i++) {
		char name[PD_NAME_MAX + 2];
		uint16_t pref;

		if (res_mx_decode(f->mx.rdata[i], f->mx.rdlen[i], &pref, name,
		    sizeof(name)) != 0 || strlen(name) > PD_NAME_MAX)
			continue;   /* malformed: skipped */
		if (strcmp(name, ".") == 0) {
			f->nullmx = true;   /* RFC 7505 */
			continue;
		}
		all[n].pref = pref;
		lcopy(all[n].name, sizeof(all[n].name), name);
		n++;
	}
	if (f->mx.nrr == 0) {
		/* NODATA or NXDOMAIN: the domain is its own MX (RFC 5321 5.1). */
		all[0].pref = 0;
		snprintf(all[0].name, sizeof(all[0].name), "%s", f->domain);
		n = 1;
	}
	if (f->nullmx) {
		f->nhosts = 0;
		return;
	}
	/* insertion sort, stable */
	for (size_t i = 1; i < n; i++)
		for (size_t k = i; k > 0 && all[k].pref < all[k - 1].pref; k--) {
			__typeof__(all[0]) t = all[k];
			all[k] = all[k - 1];
			all[k - 1] = t;
		}
	for (size_t i = 0; i < n && f->nhosts < PDP_MAX_MX; i++) {
		bool dup = false;
		for (size_t k = 0; k < f->nhosts; k++)
			dup |= strcmp(f->hosts[k].name, all[i].name) == 0;
		if (dup)
			continue;
		memcpy(f->hosts[f->nhosts].name, all[i].name,
		    sizeof(all[i].name));
		f->hosts[f->nhosts].pref = all[i].pref;
		f->nhosts++;
	}
}

/* Did this insecure address answer come through a CNAME of h's own name? */
static bool
via_alias(const struct pdp_host *h, const struct pdp_rrs *r)
{
	return r->done && r->status == RES_INSECURE && r->canon[0] != '\0' &&
	    strcmp(r->canon, h->name) != 0;
}

/*
 * An address answer's status for DANE: an insecure one through a securely
 * published alias counts as secure (TLSA at the alias's own name); through
 * an alias whose own lookup failed, as that failure.
 */
static enum res_status
addr_status(const struct pdp_host *h, const struct pdp_rrs *r)
{
	if (!via_alias(h, r) || !h->cname.done)
		return r->status;
	if (h->cname.status == RES_SECURE && h->cname.nrr > 0)
		return RES_SECURE;
	if (failed(&h->cname))
		return h->cname.status;
	return RES_INSECURE;
}

/* Is h's name a securely published alias into an unsigned zone? */
static bool
secure_alias(const struct pdp_host *h)
{
	return (via_alias(h, &h->a) || via_alias(h, &h->aaaa)) &&
	    h->cname.done && h->cname.status == RES_SECURE && h->cname.nrr > 0;
}

bool
pdp_host_secure(const struct pdp_host *h)
{
	return h->a.done && h->aaaa.done &&
	    addr_status(h, &h->a) == RES_SECURE &&
	    addr_status(h, &h->aaaa) == RES_SECURE && h->a.nrr + h->aaaa.nrr > 0;
}

/* Does r (A or AAAA) hold x? */
static bool
holds(const struct pdp_rrs *r, const struct pd_req_addr *x, size_t alen)
{
	if (!r->done || (r->status != RES_SECURE && r->status != RES_INSECURE))
		return false;
	for (size_t i = 0; i < r->nrr; i++)
		if (r->rdlen[i] == alen && memcmp(r->rdata[i], x->addr, alen) == 0)
			return true;
	return false;
}

/* The RRset of h holding f->x, or NULL. */
static const struct pdp_rrs *
holding(const struct pdp_facts *f, const struct pdp_host *h)
{
	if (f->x.family == AF_INET && holds(&h->a, &f->x, 4))
		return &h->a;
	if (f->x.family == AF_INET6 && holds(&h->aaaa, &f->x, 16))
		return &h->aaaa;
	return NULL;
}

int
pdp_holder(const struct pdp_facts *f)
{
	int any = -1;

	for (size_t i = 0; i < f->nhosts; i++) {
		const struct pdp_rrs *r = holding(f, &f->hosts[i]);
		if (r == NULL)
			continue;
		if (r->status == RES_SECURE)
			return (int)i;
		if (any < 0)
			any = (int)i;
	}
	return any;
}

/* The TLSA base domain: the canonical name of a secure CNAME'd answer. */
static void
set_base(struct pdp_host *h)
{
	const struct pdp_rrs *r = h->a.status == RES_SECURE && h->a.canon[0] ?
	    &h->a : h->aaaa.status == RES_SECURE && h->aaaa.canon[0] ?
	    &h->aaaa : NULL;

	/* A secure alias into an unsigned zone: TLSA at the alias's name. */
	if (secure_alias(h))
		r = NULL;
	snprintf(h->base, sizeof(h->base), "%s",
	    r != NULL && strcmp(r->canon, h->name) != 0 ? r->canon : h->name);
}

/* Which hosts need TLSA: a bitmask. */
static unsigned
tlsa_wanted(const struct pdp_facts *f)
{
	int h = pdp_holder(f);
	unsigned m = 0;

	if (f->no_tlsa)
		return 0;
	if (h >= 0)
		return addr_status(&f->hosts[h], holding(f, &f->hosts[h])) ==
		    RES_SECURE ?
		    1u << h : 0;
	for (size_t i = 0; i < f->nhosts; i++)
		if (failed(&f->hosts[i].a) || failed(&f->hosts[i].aaaa))
			return 0;   /* TEMPFAIL whatever the TLSA */
	for (size_t i = 0; i < f->nhosts; i++)
		if (pdp_host_secure(&f->hosts[i]))
			m |= 1u << i;
	return m;
}

static void
add(struct pdp_query *q, size_t max, size_t *n, int type, const char *name,
    struct pdp_rrs *into)
{
	if (*n >= max || into->asked)
		return;
	into->asked = true;
	q[*n].type = type;
	q[*n].name = name;
	q[*n].into = into;
	(*n)++;
}

size_t
pdp_next(struct pdp_facts *f, struct pdp_query *q, size_t max, bool *done)
{
	size_t n = 0;
	bool waiting = false;
	unsigned want;

	*done = false;
	if (!f->mx.asked)
		add(q, max, &n, RES_T_MX, f->domain, &f->mx);
	if (!f->mx.done)
		return n;
	if (!f->parsed)
		parse_mx(f);
	if (failed(&f->mx) || f->nhosts == 0) {
		*done = true;
		return 0;
	}
	for (size_t i = 0; i < f->nhosts; i++) {
		struct pdp_host *h = &f->hosts[i];
		add(q, max, &n, RES_T_A, h->name, &h->a);
		add(q, max, &n, RES_T_AAAA, h->name, &h->aaaa);
		waiting |= !h->a.asked || !h->aaaa.asked || !h->a.done ||
		    !h->aaaa.done;
	}
	if (waiting)
		return n;
	/* Insecure addresses through a CNAME: is the alias itself secure? */
	for (size_t i = 0; i < f->nhosts && !f->no_tlsa; i++) {
		struct pdp_host *h = &f->hosts[i];
		if (!via_alias(h, &h->a) && !via_alias(h, &h->aaaa))
			continue;
		add(q, max, &n, RES_T_CNAME, h->name, &h->cname);
		waiting |= !h->cname.asked || !h->cname.done;
	}
	if (waiting)
		return n;
	want = tlsa_wanted(f);
	for (size_t i = 0; i < f->nhosts; i++) {
		struct pdp_host *h = &f->hosts[i];
		if (!(want & (1u << i)))
			continue;
		if (h->base[0] == '\0')
			set_base(h);
		add(q, max, &n, RES_T_TLSA, h->base, &h->tlsa);
		waiting |= !h->tlsa.asked || !h->tlsa.done;
	}
	*done = !waiting && n == 0;
	return n;
}

/* The reason, cut at PD_WHY_MAX - 1 bytes (it is for the log). */
static void __attribute__((format(printf, 2, 3)))
whyf(struct pdp_facts *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(f->why, sizeof(f->why), fmt, ap);
	va_end(ap);
}

static uint32_t
minttl(uint32_t a, const struct pdp_rrs *r)
{
	return r->done && r->ttl < a ? r->ttl : a;
}

/* One failed lookup's reason: "TLSA _25._tcp.mx.example.net: bogus: why". */
static void
why_failed(struct pdp_facts *f, const char *q, const char *name,
    const struct pdp_rrs *r)
{
	whyf(f, "%s %s: %s%s%s", q, name,
	    res_status_str(r->status), r->why[0] ? ": " : "", r->why);
}

/*
 * A lookup that gave no valid records, bogus or failed (SERVFAIL, a
 * timeout): RFC 8460 4.3.2's dnssec-invalid ("no valid records were
 * returned from the recursive resolver"), whatever the cause.
 */
static enum pd_result
fail_result(const struct pdp_rrs *r)
{
	(void)r;
	return PD_R_DNSSEC_INVALID;
}

/* A host's DANE state from its TLSA answer (done, for a secure host). */
static enum pd_dane
host_dane(const struct pdp_host *h)
{
	struct dane_rrset rs;
	enum dane_parse_result pr;

	if (!h->tlsa.done)
		return PD_DANE_NONE;
	if (failed(&h->tlsa))
		return PD_DANE_TEMPFAIL;
	if (h->tlsa.status != RES_SECURE || h->tlsa.nrr == 0)
		return PD_DANE_NONE;
	pr = dane_rrset_parse((const uint8_t *const *)h->tlsa.rdata,
	    h->tlsa.rdlen, h->tlsa.nrr, &rs);
	dane_rrset_free(&rs);
	return pr == DANE_PARSE_OK ? PD_DANE_MATCH :
	    pr == DANE_PARSE_NO_USABLE ? PD_DANE_ENCRYPT : PD_DANE_TEMPFAIL;
}

static void
set_host(struct pd_tlsa_host *t, const struct pdp_host *h)
{
	t->host = h->name;
	t->base = h->base[0] ? h->base : h->name;
	t->nrr = h->tlsa.nrr;
	for (size_t i = 0; i < h->tlsa.nrr; i++) {
		t->rdata[i] = h->tlsa.rdata[i];
		t->rdlen[i] = h->tlsa.rdlen[i];
	}
}

static void
addr_str(const struct pd_req_addr *x, char *buf, size_t cap)
{
	if (x->family == 0 || inet_ntop(x->family, x->addr, buf,
	    (socklen_t)cap) == NULL)
		snprintf(buf, cap, "none");
}

static void
decide_dane(struct pdp_facts *f, struct pd_pol *p)
{
	uint32_t ttl = f->mx.ttl;
	char tlsaname[PD_NAME_MAX + 16];
	int h;
	size_t usable = 0, withdane = 0;

	if (!f->mx.done) {
		p->dane = PD_DANE_TEMPFAIL;
		whyf(f, "MX %s: no answer", f->domain);
		p->dane_result = PD_R_DNSSEC_INVALID;
		return;
	}
	if (failed(&f->mx)) {
		p->dane = PD_DANE_TEMPFAIL;
		p->dane_result = fail_result(&f->mx);
		why_failed(f, "MX", f->domain, &f->mx);
		return;
	}
	if (!f->parsed)
		parse_mx(f);
	if (f->nhosts == 0) {
		p->dane = PD_DANE_NONE;
		p->ttl = ttl;
		return;
	}
	for (size_t i = 0; i < f->nhosts; i++) {
		ttl = minttl(ttl, &f->hosts[i].a);
		ttl = minttl(ttl, &f->hosts[i].aaaa);
	}
	h = pdp_holder(f);
	if (h >= 0) {
		struct pdp_host *hh = &f->hosts[h];

		p->mx = hh->name;
		if (failed(&hh->cname) && addr_status(hh, holding(f, hh)) !=
		    RES_SECURE && addr_status(hh, holding(f, hh)) !=
		    RES_INSECURE) {
			/* The alias could not be checked: never a downgrade. */
			p->dane = PD_DANE_TEMPFAIL;
			p->dane_result = fail_result(&hh->cname);
			why_failed(f, "CNAME", hh->name, &hh->cname);
			return;
		}
		if (addr_status(hh, holding(f, hh)) != RES_SECURE) {
			p->dane = PD_DANE_NONE;
			p->ttl = ttl;
			return;
		}
		ttl = minttl(ttl, &hh->tlsa);
		p->dane = host_dane(hh);
		p->ttl = ttl;
		if (p->dane == PD_DANE_TEMPFAIL) {
			snprintf(tlsaname, sizeof(tlsaname), "_25._tcp.%s",
			    hh->base[0] ? hh->base : hh->name);
			if (!hh->tlsa.done) {
				whyf(f, "TLSA %s: no answer",
				    tlsaname);
				p->dane_result = PD_R_DNSSEC_INVALID;
			} else if (failed(&hh->tlsa)) {
				why_failed(f, "TLSA", tlsaname, &hh->tlsa);
				p->dane_result = fail_result(&hh->tlsa);
			} else {
				whyf(f, "TLSA %s: out of "
				    "memory", tlsaname);
				p->dane_result = PD_R_VALIDATION_FAILURE;
			}
		} else if (p->dane == PD_DANE_MATCH) {
			p->nhosts = 1;
			set_host(&p->hosts[0], hh);
		}
		return;
	}
	/* X in no host's addresses. */
	for (size_t i = 0; i < f->nhosts; i++) {
		const struct pdp_host *hh = &f->hosts[i];
		const struct pdp_rrs *r = failed(&hh->a) ? &hh->a :
		    failed(&hh->aaaa) ? &hh->aaaa : failed(&hh->cname) ?
		    &hh->cname : NULL;
		if (r != NULL) {
			p->dane = PD_DANE_TEMPFAIL;
			p->dane_result = fail_result(r);
			why_failed(f, r == &hh->a ? "A" : r == &hh->aaaa ? "AAAA" :
			    "CNAME", hh->name, r);
			return;
		}
	}
	for (size_t i = 0; i < f->nhosts; i++) {
		const struct pdp_host *hh = &f->hosts[i];
		enum pd_dane d;

		if (!pdp_host_secure(hh))
			continue;
		ttl = minttl(ttl, &hh->tlsa);
		d = host_dane(hh);
		if (d == PD_DANE_TEMPFAIL) {
			snprintf(tlsaname, sizeof(tlsaname), "_25._tcp.%s",
			    hh->base[0] ? hh->base : hh->name);
			p->dane = PD_DANE_TEMPFAIL;
			if (failed(&hh->tlsa)) {
				why_failed(f, "TLSA", tlsaname, &hh->tlsa);
				p->dane_result = fail_result(&hh->tlsa);
			} else {
				whyf(f, "TLSA %s: %s",
				    tlsaname, hh->tlsa.done ? "out of memory" :
				    "no answer");
				p->dane_result = hh->tlsa.done ?
				    PD_R_VALIDATION_FAILURE : PD_R_DNSSEC_INVALID;
			}
			return;
		}
		usable += d == PD_DANE_MATCH;
		withdane += d == PD_DANE_MATCH || d == PD_DANE_ENCRYPT;
	}
	p->ttl = ttl;
	if (usable == f->nhosts) {
		p->dane = PD_DANE_MATCH;
		p->flags |= PD_F_ANY_MX;
		p->nhosts = f->nhosts;
		for (size_t i = 0; i < f->nhosts; i++)
			set_host(&p->hosts[i], &f->hosts[i]);
	} else if (withdane == 0) {
		p->dane = PD_DANE_NONE;
	} else {
		char a[64];
		addr_str(&f->x, a, sizeof(a));
		p->dane = PD_DANE_UNKNOWN;
		whyf(f, "address %s in no MX of %s; %zu "
		    "of %zu MX hosts have DANE", a, f->domain, withdane,
		    f->nhosts);
	}
}

void
pdp_decide(struct pdp_facts *f, bool dane_on, struct pd_pol *p)
{
	memset(p, 0, sizeof(*p));
	p->kind = PD_POLICY;
	p->why = p->mx = p->sni = p->sts_id = "";
	p->ttl = PD_TTL_MAX;
	f->why[0] = '\0';
	if (dane_on)
		decide_dane(f, p);
	else {
		int h;
		if (f->mx.done && !f->parsed)
			parse_mx(f);
		if ((h = pdp_holder(f)) >= 0)
			p->mx = f->hosts[h].name;
		p->ttl = minttl(p->ttl, &f->mx);
	}
	p->why = f->why;
	p->ttl = p->dane == PD_DANE_TEMPFAIL ? PD_TTL_FAIL :
	    pd_cache_ttl(RES_SECURE, p->ttl);
	if (p->dane == PD_DANE_NONE) {
		p->sts = f->sts;
		p->sts_id = f->sts_id;
		p->sts_max_age = f->sts_max_age;
		p->sts_nmx = f->sts_nmx < STS_MAX_MX ? f->sts_nmx : STS_MAX_MX;
		for (size_t i = 0; i < p->sts_nmx; i++)
			p->sts_mx[i] = f->sts_mx[i];
		if (p->sts == PD_STS_NONE && f->sts_fail != PD_R_SUCCESS) {
			p->sts_fail = f->sts_fail;
			p->sts_why = f->sts_why;
		}
	}
}

/* ---- learned addresses ---------------------------------------------------- */

#define LBUCKETS 4096

struct lentry {
	struct lentry *next;
	struct pd_req_addr x;
	uint64_t expires;
	size_t len;
	uint8_t *blob;      /* an encoded PD_ADDR pd_pol */
};

struct pdp_learn {
	struct lentry *b[LBUCKETS];
	size_t n, max;
	void (*on_drop)(void *arg, const struct pd_req_addr *x);
	void *arg;
};

void
pdp_learn_on_drop(struct pdp_learn *l,
    void (*cb)(void *arg, const struct pd_req_addr *x), void *arg)
{
	l->on_drop = cb;
	l->arg = arg;
}

struct pdp_learn *
pdp_learn_new(size_t max)
{
	struct pdp_learn *l = calloc(1, sizeof(*l));

	if (l != NULL)
		l->max = max ? max : PDP_LEARN_MAX;
	return l;
}

void
pdp_learn_free(struct pdp_learn *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < LBUCKETS; i++)
		while (l->b[i] != NULL) {
			struct lentry *e = l->b[i];
			l->b[i] = e->next;
			free(e->blob);
			free(e);
		}
	free(l);
}

size_t
pdp_learn_count(const struct pdp_learn *l)
{
	return l->n;
}

static struct lentry **
lfind(struct pdp_learn *l, const struct pd_req_addr *x)
{
	uint32_t h = 2166136261u ^ x->family;
	struct lentry **pp;

	for (size_t i = 0; i < 16; i++)
		h = (h ^ x->addr[i]) * 16777619u;
	for (pp = &l->b[h % LBUCKETS]; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->x.family == x->family &&
		    memcmp((*pp)->x.addr, x->addr, 16) == 0)
			break;
	return pp;
}

static void
lremove(struct pdp_learn *l, struct lentry **pp)
{
	struct lentry *e = *pp;

	if (l->on_drop != NULL)
		l->on_drop(l->arg, &e->x);
	*pp = e->next;
	free(e->blob);
	free(e);
	l->n--;
}

static void
key_of(const struct pd_req_addr *x, struct pd_req_addr *k)
{
	memset(k, 0, sizeof(*k));
	k->family = x->family;
	memcpy(k->addr, x->addr, x->family == AF_INET ? 4 : 16);
}

/* Store blob (taken over) for x. 1, or -1. */
static int
store_blob(struct pdp_learn *l, const struct pd_req_addr *k, uint8_t *blob,
    size_t n, uint64_t expires)
{
	struct lentry **pp, *e;

	pp = lfind(l, k);
	if (*pp == NULL) {
		if (l->n >= l->max) {
			struct lentry **best = NULL;
			for (size_t i = 0; i < LBUCKETS; i++)
				for (struct lentry **q = &l->b[i]; *q != NULL;
				    q = &(*q)->next)
					if (best == NULL ||
					    (*q)->expires < (*best)->expires)
						best = q;
			if (best != NULL)
				lremove(l, best);
			pp = lfind(l, k);
		}
		if ((e = calloc(1, sizeof(*e))) == NULL) {
			free(blob);
			return -1;
		}
		e->x = *k;
		*pp = e;
		l->n++;
	} else {
		e = *pp;
		free(e->blob);
	}
	e->blob = blob;
	e->len = n;
	e->expires = expires;
	return 1;
}

int
pdp_learn_set(struct pdp_learn *l, const struct pd_req_addr *x,
    const struct pd_pol *ans, uint64_t expires)
{
	uint8_t buf[PD_MSG_MAX];
	struct pd_pol a = *ans;
	struct pd_req_addr k;
	size_t n;
	uint8_t *blob;

	key_of(x, &k);
	if (k.family != AF_INET && k.family != AF_INET6)
		return 0;
	a.kind = PD_ADDR;
	a.seq = 0;
	a.flags &= (uint8_t)~PD_F_CACHED;
	n = pd_pol_encode(&a, buf, sizeof(buf));
	if (n == 0 || (blob = malloc(n)) == NULL)
		return -1;
	memcpy(blob, buf, n);
	return store_blob(l, &k, blob, n, expires);
}

const uint8_t *
pdp_learn_raw(struct pdp_learn *l, const struct pd_req_addr *x, size_t *len,
    uint64_t *expires)
{
	struct pd_req_addr k;
	struct lentry **pp;

	key_of(x, &k);
	pp = lfind(l, &k);
	if (*pp == NULL)
		return NULL;
	*len = (*pp)->len;
	*expires = (*pp)->expires;
	return (*pp)->blob;
}

int
pdp_learn_load(struct pdp_learn *l, const struct pd_req_addr *x,
    const uint8_t *blob, size_t len, uint64_t expires, uint64_t now)
{
	struct pd_req_addr k;
	struct pd_pol p;
	uint8_t *copy;

	key_of(x, &k);
	if ((k.family != AF_INET && k.family != AF_INET6) || expires <= now ||
	    len > PD_MSG_MAX || pd_pol_decode(blob, len, &p) != 0 ||
	    p.kind != PD_ADDR)
		return 0;
	if ((copy = malloc(len)) == NULL)
		return -1;
	memcpy(copy, blob, len);
	return store_blob(l, &k, copy, len, expires);
}

int
pdp_learn_put(struct pdp_learn *l, const struct pdp_facts *f,
    const struct pd_pol *pol, uint64_t now)
{
	struct pd_pol a;
	int h = pdp_holder(f);

	if (h < 0 || pol->ttl == 0)
		return 0;
	memset(&a, 0, sizeof(a));
	a.kind = PD_ADDR;
	a.ttl = pol->ttl;
	a.why = a.sts_id = "";
	a.mx = f->hosts[h].name;
	if (pol->dane == PD_DANE_MATCH && !(pol->flags & PD_F_ANY_MX) &&
	    pol->nhosts == 1) {
		a.dane = PD_DANE_MATCH;
		a.sni = pol->hosts[0].base;
		a.nhosts = 1;
		a.hosts[0] = pol->hosts[0];
	} else if (pol->dane == PD_DANE_NONE && pol->sts == PD_STS_ENFORCE) {
		bool m = false;
		for (size_t i = 0; i < pol->sts_nmx; i++)
			m |= sts_pattern_match(pol->sts_mx[i], f->hosts[h].name);
		if (!m)
			return 0;
		a.sts = PD_STS_ENFORCE;
		a.sts_id = pol->sts_id;
		a.sts_max_age = pol->sts_max_age;
		a.sts_nmx = pol->sts_nmx;
		for (size_t i = 0; i < pol->sts_nmx; i++)
			a.sts_mx[i] = pol->sts_mx[i];
		a.sni = f->hosts[h].name;
	} else {
		return 0;
	}
	return pdp_learn_set(l, &f->x, &a, now + pol->ttl);
}

bool
pdp_learn_get(struct pdp_learn *l, const struct pd_req_addr *x, uint64_t now,
    struct pd_pol *pol)
{
	struct pd_req_addr k;
	struct lentry **pp;

	key_of(x, &k);
	pp = lfind(l, &k);
	if (*pp != NULL && (*pp)->expires <= now) {
		lremove(l, pp);
	} else if (*pp != NULL && pd_pol_decode((*pp)->blob, (*pp)->len, pol) == 0) {
		pol->ttl = (uint32_t)((*pp)->expires - now);
		return true;
	}
	memset(pol, 0, sizeof(*pol));
	pol->kind = PD_ADDR;
	pol->why = pol->mx = pol->sni = pol->sts_id = "";
	return false;
}
