/*
 * stsfetch: MTA-STS policies of recipient domains (include/starttlsd/stsfetch.h).
 *
 * One entry per domain in a hash table (at most STSF_CACHE_MAX): the policy
 * in force (if any), its id and expiry, the last failure, the backoff
 * record, and at most one flight: the TXT lookup of _mta-sts.D, then, when
 * the id is new (or a refresh is due), the HTTPS GET of the policy.
 * Every stsf_get is a waiter on its domain's entry; all waiters of a flight
 * are answered when it lands, or each by its own wait_ms timer first.
 * Policies also live in LMDB (state_dir/sts.mdb, one record per domain) and
 * are read back at start.
 */
#include <errno.h>
#include <stdarg.h>
#include <ev.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "starttlsd/hash.h"
#include "starttlsd/https.h"
#include "starttlsd/resolver.h"
#include "starttlsd/stsfetch.h"

#define STSF_MAGIC 0x53545346u          /* "STSF" */
#define STSF_WAITER_MAGIC 0x53545357u   /* "STSW" */
#define STSF_BUCKETS 4096
#define STSF_RECHECK_S 60               /* a TXT checked this recently is not asked again */
#define STSF_FLIGHTS_MAX 64             /* lookups and fetches at once */
#define STSF_REFRESH_TICK_MS 60000      /* the proactive refresh's period */
#define STSF_REFRESH_AHEAD_S 86400      /* refresh a policy this long before it expires */
#define STSF_REFRESH_PER_TICK 8         /* refreshes started per tick */
#define STSF_MAP_SIZE (256u << 20)      /* sts.mdb: 10,000 policies of 32 long mx */
#define STSF_RECORD_MAX 16384           /* one stored record */
#define STSF_WHY_MAX 200

enum flight {
	FL_NONE,
	FL_TXT,     /* TXT _mta-sts.D asked */
	FL_FETCH,   /* GET https://mta-sts.D/.well-known/mta-sts.txt */
};

struct stsf_entry {
	struct stsf_entry *next;         /* bucket chain */
	struct stsf *f;
	char domain[STS_NAME_MAX];
	struct sts_policy *policy;       /* NULL: none in force */
	char id[STS_ID_MAX + 1];
	time_t fetched, expires;
	time_t checked;                  /* the TXT last answered (0: never) */
	enum stsf_fail fail;
	char why[STSF_WHY_MAX];
	/* backoff: the last failed fetch's id and when */
	char fail_id[STS_ID_MAX + 1];
	time_t fail_at;
	/* the flight */
	enum flight fl;
	bool force;                      /* refetch even for the same id */
	uint64_t qid;
	struct https_client *hc;
	char txt_id[STS_ID_MAX + 1];
	unsigned nwaiters;
};

struct stsf_waiter {
	uint32_t magic;
	struct stsf *f;
	struct stsf_waiter *prev, *next;
	struct stsf_entry *e;
	uint64_t id;
	stsf_cb cb;
	void *arg;
	ev_timer timer;
};

struct stsf {
	uint32_t magic;
	struct ev_loop *loop;
	struct resolver *res;
	char ca_file[4096];
	bool have_ca;
	uint16_t port;
	unsigned timeout_ms;
	unsigned backoff_s;
	unsigned recheck_s;
	struct stsf_entry *buckets[STSF_BUCKETS];
	size_t nentries;
	unsigned nflights;
	struct stsf_waiter *waiters;
	uint64_t next_id;
	ev_timer tick;
	unsigned refresh_tick_ms;
	MDB_env *env;
	MDB_dbi dbi;
};

/* ---- the store -------------------------------------------------------------- */

/*
 * A record: "id=ID\nfetched=T\nexpires=T\n" and the policy written back as
 * a policy file, so loading it runs the same parser as a fetch.
 */
static size_t
record_make(const struct stsf_entry *e, char *out, size_t cap)
{
	const struct sts_policy *p = e->policy;
	size_t n;
	int r;

	r = snprintf(out, cap, "id=%s\nfetched=%lld\nexpires=%lld\n"
	    "version: STSv1\nmode: %s\nmax_age: %u\n", e->id,
	    (long long)e->fetched, (long long)e->expires, sts_mode_str(p->mode),
	    p->max_age);
	if (r < 0 || (size_t)r >= cap)
		return 0;
	n = (size_t)r;
	for (size_t i = 0; i < p->nmx; i++) {
		r = snprintf(out + n, cap - n, "mx: %s\n", p->mx[i]);
		if (r < 0 || (size_t)r >= cap - n)
			return 0;
		n += (size_t)r;
	}
	return n;
}

/* Parse a stored record into e (policy allocated); -1 if it is not ours. */
static int
record_load(struct stsf_entry *e, const char *v, size_t len)
{
	char head[256], perr[128];
	long long fetched, expires;
	const char *body = v;
	struct sts_policy *p;
	size_t hl;

	/* the three header lines */
	for (int i = 0; i < 3; i++) {
		const char *nl = memchr(body, '\n', len - (size_t)(body - v));

		if (nl == NULL)
			return -1;
		body = nl + 1;
	}
	hl = (size_t)(body - v);
	if (hl >= sizeof(head))
		return -1;
	memcpy(head, v, hl);
	head[hl] = '\0';
	if (sscanf(head, "id=%32[A-Za-z0-9]\nfetched=%lld\nexpires=%lld\n", e->id,
	    &fetched, &expires) != 3)
		return -1;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return -1;
	if (sts_policy_parse(body, len - hl, p, perr, sizeof(perr)) != 0) {
		free(p);
		return -1;
	}
	e->policy = p;
	e->fetched = (time_t)fetched;
	e->expires = (time_t)expires;
	return 0;
}

static void
store_put(struct stsf *f, const struct stsf_entry *e)
{
	char rec[STSF_RECORD_MAX];
	MDB_txn *txn;
	MDB_val k, v;
	size_t n;

	if (f->env == NULL || e->policy == NULL)
		return;
	if ((n = record_make(e, rec, sizeof(rec))) == 0)
		return;
	k.mv_data = (void *)(uintptr_t)e->domain;
	k.mv_size = strlen(e->domain);
	v.mv_data = rec;
	v.mv_size = n;
	if (mdb_txn_begin(f->env, NULL, 0, &txn) != 0)
		return;
	if (mdb_put(txn, f->dbi, &k, &v, 0) != 0) {
		mdb_txn_abort(txn);
		return;
	}
	mdb_txn_commit(txn);
}

static void
store_del(struct stsf *f, const char *domain)
{
	MDB_txn *txn;
	MDB_val k;

	if (f->env == NULL)
		return;
	k.mv_data = (void *)(uintptr_t)domain;
	k.mv_size = strlen(domain);
	if (mdb_txn_begin(f->env, NULL, 0, &txn) != 0)
		return;
	if (mdb_del(txn, f->dbi, &k, NULL) != 0) {
		mdb_txn_abort(txn);
		return;
	}
	mdb_txn_commit(txn);
}

/* ---- entries ------------------------------------------------------------------ */

static struct stsf_entry **
bucket(struct stsf *f, const char *domain)
{
	return &f->buckets[fnv1a_str(FNV1A_INIT, domain) % STSF_BUCKETS];
}

static struct stsf_entry *
entry_find(struct stsf *f, const char *domain)
{
	for (struct stsf_entry *e = *bucket(f, domain); e != NULL; e = e->next)
		if (strcmp(e->domain, domain) == 0)
			return e;
	return NULL;
}

static void
entry_unlink_free(struct stsf *f, struct stsf_entry *e)
{
	struct stsf_entry **pp = bucket(f, e->domain);

	for (; *pp != NULL; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	free(e->policy);
	free(e);
	f->nentries--;
}

/* Drop the policy of e (expired, or replaced by nothing). */
static void
entry_drop_policy(struct stsf *f, struct stsf_entry *e)
{
	if (e->policy == NULL)
		return;
	free(e->policy);
	e->policy = NULL;
	e->id[0] = '\0';
	e->fetched = e->expires = 0;
	store_del(f, e->domain);
}

/* An expired policy is gone: RFC 8461 5.1, a policy lives max_age. */
static void
entry_expire(struct stsf *f, struct stsf_entry *e, time_t now)
{
	if (e->policy != NULL && e->expires <= now)
		entry_drop_policy(f, e);
}

/*
 * Make room for one more: the entry without a policy first, else the one
 * expiring first; never one that is in flight or awaited.
 */
static int
entry_evict(struct stsf *f)
{
	struct stsf_entry *best = NULL;
	time_t bkey = 0;

	for (size_t b = 0; b < STSF_BUCKETS; b++)
		for (struct stsf_entry *e = f->buckets[b]; e != NULL; e = e->next) {
			time_t key = e->policy ? e->expires : 0;

			if (e->fl != FL_NONE || e->nwaiters > 0)
				continue;
			if (best == NULL || key < bkey) {
				best = e;
				bkey = key;
				if (key == 0)
					goto found;
			}
		}
	if (best == NULL)
		return -1;
found:
	if (best->policy != NULL)
		store_del(f, best->domain);
	entry_unlink_free(f, best);
	return 0;
}

static struct stsf_entry *
entry_get(struct stsf *f, const char *domain)
{
	struct stsf_entry *e = entry_find(f, domain);
	struct stsf_entry **b;

	if (e != NULL)
		return e;
	if (f->nentries >= STSF_CACHE_MAX && entry_evict(f) != 0)
		return NULL;
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	e->f = f;
	snprintf(e->domain, sizeof(e->domain), "%s", domain);
	b = bucket(f, domain);
	e->next = *b;
	*b = e;
	f->nentries++;
	return e;
}

/* ---- answers -------------------------------------------------------------------- */

static void
state_of(struct stsf *f, struct stsf_entry *e, struct stsf_state *st)
{
	time_t now = time(NULL);

	memset(st, 0, sizeof(*st));
	entry_expire(f, e, now);
	if (e->policy != NULL) {
		st->have = true;
		st->policy = *e->policy;
		snprintf(st->id, sizeof(st->id), "%s", e->id);
		st->expires = e->expires;
	}
	st->fail = e->fail;
	if (e->fail != STSF_OK)
		snprintf(st->why, sizeof(st->why), "%s", e->why);
}

static void
waiter_unlink(struct stsf_waiter *w)
{
	struct stsf *f = w->f;

	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		f->waiters = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	w->prev = w->next = NULL;
	ev_timer_stop(f->loop, &w->timer);
	w->e->nwaiters--;
	w->magic = 0;
}

/* Answer w with its entry's state now, and free it. */
static void
waiter_answer(struct stsf_waiter *w)
{
	struct stsf *f = w->f;
	struct stsf_state *st = malloc(sizeof(*st));
	stsf_cb cb = w->cb;
	void *arg = w->arg;
	char domain[STS_NAME_MAX];

	snprintf(domain, sizeof(domain), "%s", w->e->domain);
	if (st != NULL)
		state_of(f, w->e, st);
	waiter_unlink(w);
	free(w);
	if (st == NULL) {
		/* still exactly one answer: what fits on the stack */
		struct stsf_state small = { .have = false, .fail = STSF_FETCH_ERROR };

		snprintf(small.why, sizeof(small.why), "out of memory");
		cb(arg, domain, &small);
		return;
	}
	cb(arg, domain, st);
	free(st);
}

static void
on_waiter_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct stsf_waiter *w = t->data;

	(void)loop;
	(void)revents;
	if (w->magic != STSF_WAITER_MAGIC)
		abort();
	waiter_answer(w);
}

/*
 * Answer every waiter of e that was there when the flight landed. A
 * callback may call stsf_get (a newer id: not answered here) or
 * stsf_cancel (gone from the list), so the list is searched anew after
 * each answer.
 */
static void
answer_all(struct stsf *f, struct stsf_entry *e)
{
	uint64_t limit = f->next_id;
	struct stsf_waiter *w;

	for (;;) {
		for (w = f->waiters; w != NULL; w = w->next)
			if (w->e == e && w->id < limit)
				break;
		if (w == NULL)
			return;
		waiter_answer(w);
	}
}

/* ---- the flight ------------------------------------------------------------------- */

static void flight_fail(struct stsf *f, struct stsf_entry *e,
    enum stsf_fail fail, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The flight of e ends: the waiters hear the entry's state. */
static void
flight_end(struct stsf *f, struct stsf_entry *e)
{
	e->fl = FL_NONE;
	e->force = false;
	e->qid = 0;
	e->hc = NULL;
	f->nflights--;
	answer_all(f, e);
}

static void
flight_fail(struct stsf *f, struct stsf_entry *e, enum stsf_fail fail,
    const char *fmt, ...)
{
	va_list ap;

	e->fail = fail;
	va_start(ap, fmt);
	vsnprintf(e->why, sizeof(e->why), fmt, ap);
	va_end(ap);
	flight_end(f, e);
}

/* A fetch failed: the backoff starts for (domain, id); a valid cached policy stays. */
static void
fetch_failed(struct stsf *f, struct stsf_entry *e, enum stsf_fail fail,
    const char *why)
{
	snprintf(e->fail_id, sizeof(e->fail_id), "%s", e->txt_id);
	e->fail_at = time(NULL);
	flight_fail(f, e, fail, "%s", why);
}

static void
on_fetch(void *arg, const struct https_resp *r)
{
	struct stsf_entry *e = arg;
	struct stsf *f = e->f;
	struct sts_policy *p;
	char why[STSF_WHY_MAX], perr[160];
	time_t now;

	e->hc = NULL;
	switch (r->result) {
	case HTTPS_OK:
		break;
	case HTTPS_CERT_UNTRUSTED:
	case HTTPS_CERT_NAME:
	case HTTPS_CERT_EXPIRED:
		snprintf(why, sizeof(why), "%s: %.170s",
		    https_result_str(r->result), r->err);
		fetch_failed(f, e, STSF_WEBPKI_INVALID, why);
		return;
	default:
		snprintf(why, sizeof(why), "%s: %.170s",
		    https_result_str(r->result), r->err);
		fetch_failed(f, e, STSF_FETCH_ERROR, why);
		return;
	}
	/* RFC 8461 3.3: 200 only (no redirects), text/plain */
	if (r->status != 200) {
		snprintf(why, sizeof(why), "HTTP status %d", r->status);
		fetch_failed(f, e, STSF_FETCH_ERROR, why);
		return;
	}
	if (!https_type_is(r->content_type, "text/plain")) {
		snprintf(why, sizeof(why), "Content-Type \"%s\" is not text/plain",
		    r->content_type);
		fetch_failed(f, e, STSF_FETCH_ERROR, why);
		return;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		fetch_failed(f, e, STSF_FETCH_ERROR, "out of memory");
		return;
	}
	if (sts_policy_parse((const char *)r->body, r->len, p, perr,
	    sizeof(perr)) != 0) {
		free(p);
		snprintf(why, sizeof(why), "policy: %s", perr);
		fetch_failed(f, e, STSF_POLICY_INVALID, why);
		return;
	}
	/* the new policy replaces the old at once, whatever its mode */
	now = time(NULL);
	free(e->policy);
	e->policy = p;
	snprintf(e->id, sizeof(e->id), "%s", e->txt_id);
	e->fetched = now;
	e->expires = now + (time_t)p->max_age;
	e->fail_id[0] = '\0';
	e->fail_at = 0;
	e->fail = STSF_OK;
	e->why[0] = '\0';
	if (e->expires > now)
		store_put(f, e);
	else
		store_del(f, e->domain);   /* max_age 0: in force for this answer only */
	flight_end(f, e);
}

static bool
in_backoff(const struct stsf *f, const struct stsf_entry *e, const char *id,
    time_t now)
{
	return e->fail_at != 0 && strcmp(e->fail_id, id) == 0 &&
	    now < e->fail_at + (time_t)f->backoff_s;
}

static void
fetch_start(struct stsf *f, struct stsf_entry *e)
{
	char host[STS_NAME_MAX + 16];
	struct https_req req = {
		.method = "GET",
		.host = host,
		.port = f->port,
		.path = "/.well-known/mta-sts.txt",
		.max_body = STS_POLICY_MAX,
		.timeout_ms = f->timeout_ms,
		.ca_file = f->have_ca ? f->ca_file : NULL,
	};

	snprintf(host, sizeof(host), "mta-sts.%s", e->domain);
	e->fl = FL_FETCH;
	e->hc = https_start(f->loop, f->res, &req, on_fetch, e);
	if (e->hc == NULL)
		fetch_failed(f, e, STSF_FETCH_ERROR, "cannot start the fetch");
}

static void
on_txt(void *arg, const struct res_answer *a)
{
	struct stsf_entry *e = arg;
	struct stsf *f = e->f;
	struct sts_txt txt;
	enum sts_txt_result tr;
	time_t now = time(NULL);

	e->qid = 0;
	entry_expire(f, e, now);
	if (a->status == RES_BOGUS || a->status == RES_ERROR) {
		/* no answer: a valid cached policy stays in force (RFC 8461 5.1) */
		flight_fail(f, e, STSF_FETCH_ERROR, "TXT lookup: %s%s%.150s",
		    res_status_str(a->status), a->why ? " " : "",
		    a->why ? a->why : "");
		return;
	}
	e->checked = now;
	tr = sts_txt_parse(a->rdata, a->rdlen, a->nrr, &txt);
	if (tr != STS_TXT_OK) {
		/*
		 * No record, two, or a broken one: no policy is discovered
		 * (3.1: "MUST assume the recipient domain does not have an
		 * available MTA-STS Policy"), and a cached one stays in force
		 * until it expires (5.1, 10.2). Not a failure.
		 */
		e->fail = STSF_OK;
		e->why[0] = '\0';
		flight_end(f, e);
		return;
	}
	snprintf(e->txt_id, sizeof(e->txt_id), "%s", txt.id);
	if (e->policy != NULL && strcmp(e->id, txt.id) == 0 && !e->force) {
		/* same id, policy valid: nothing to fetch */
		flight_end(f, e);
		return;
	}
	if (in_backoff(f, e, txt.id, now)) {
		/* the last fetch for this id failed moments ago: keep its why */
		flight_end(f, e);
		return;
	}
	fetch_start(f, e);
}

/* Start a flight for e (force: fetch even if the id is unchanged); -1 if none can start. */
static int
flight_start(struct stsf *f, struct stsf_entry *e, bool force)
{
	char name[STS_NAME_MAX + 16];

	if (e->fl != FL_NONE) {
		e->force |= force;
		return 0;
	}
	if (f->nflights >= STSF_FLIGHTS_MAX)
		return -1;
	snprintf(name, sizeof(name), "_mta-sts.%s", e->domain);
	e->qid = resolver_query(f->res, name, RES_T_TXT, on_txt, e);
	if (e->qid == 0)
		return -1;
	e->fl = FL_TXT;
	e->force = force;
	f->nflights++;
	return 0;
}

/* ---- the proactive refresh ------------------------------------------------------------ */

/* How long before its expiry a policy is fetched again. */
static time_t
refresh_ahead(const struct sts_policy *p)
{
	time_t half = (time_t)p->max_age / 2;

	return half < STSF_REFRESH_AHEAD_S ? half : STSF_REFRESH_AHEAD_S;
}

static void
on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct stsf *f = t->data;
	time_t now = time(NULL);
	unsigned started = 0;

	(void)loop;
	(void)revents;
	for (size_t b = 0; b < STSF_BUCKETS; b++)
		for (struct stsf_entry *e = f->buckets[b]; e != NULL; e = e->next) {
			entry_expire(f, e, now);
			if (e->policy == NULL || e->fl != FL_NONE ||
			    e->expires - now > refresh_ahead(e->policy) ||
			    in_backoff(f, e, e->id, now))
				continue;
			if (started >= STSF_REFRESH_PER_TICK ||
			    flight_start(f, e, true) != 0)
				return;
			started++;
		}
}

/* ---- the interface ------------------------------------------------------------------- */

static int
store_open(struct stsf *f, const char *dir, char *err, size_t errlen)
{
	char path[4200];
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;
	time_t now = time(NULL);

	snprintf(path, sizeof(path), "%s/sts.mdb", dir);
	if ((rc = mdb_env_create(&f->env)) != 0)
		goto fail;
	mdb_env_set_mapsize(f->env, STSF_MAP_SIZE);
	if ((rc = mdb_env_open(f->env, path, MDB_NOSUBDIR | MDB_NOSYNC, 0600)) != 0)
		goto fail;
	if ((rc = mdb_txn_begin(f->env, NULL, 0, &txn)) != 0)
		goto fail;
	if ((rc = mdb_dbi_open(txn, NULL, 0, &f->dbi)) != 0 ||
	    (rc = mdb_cursor_open(txn, f->dbi, &cur)) != 0) {
		mdb_txn_abort(txn);
		goto fail;
	}
	/* read back what is still valid; drop the rest */
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		char domain[STS_NAME_MAX];
		struct stsf_entry *e;
		bool keep = false;

		if (k.mv_size > 0 && k.mv_size < sizeof(domain) &&
		    v.mv_size < STSF_RECORD_MAX && f->nentries < STSF_CACHE_MAX) {
			memcpy(domain, k.mv_data, k.mv_size);
			domain[k.mv_size] = '\0';
			if (strlen(domain) == k.mv_size && entry_find(f, domain) == NULL &&
			    (e = entry_get(f, domain)) != NULL) {
				if (record_load(e, v.mv_data, v.mv_size) == 0 &&
				    e->expires > now)
					keep = true;
				else
					entry_unlink_free(f, e);
			}
		}
		if (!keep)
			mdb_cursor_del(cur, 0);
	}
	mdb_cursor_close(cur);
	if ((rc = mdb_txn_commit(txn)) != 0)
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "state_dir %s: %s", path, mdb_strerror(rc));
	if (f->env != NULL)
		mdb_env_close(f->env);
	f->env = NULL;
	return -1;
}

struct stsf *
stsf_new(struct ev_loop *loop, struct resolver *res,
    const struct stsf_opts *opts, char *err, size_t errlen)
{
	struct stsf *f;

	if (loop == NULL || res == NULL || opts == NULL) {
		snprintf(err, errlen, "stsf_new: no loop or resolver");
		return NULL;
	}
	if ((f = calloc(1, sizeof(*f))) == NULL) {
		snprintf(err, errlen, "stsf_new: out of memory");
		return NULL;
	}
	f->magic = STSF_MAGIC;
	f->loop = loop;
	f->res = res;
	f->next_id = 1;
	f->port = opts->https_port;
	f->timeout_ms = opts->fetch_timeout_ms;
	f->backoff_s = opts->backoff_s ? opts->backoff_s : STSF_BACKOFF_S;
	f->recheck_s = opts->recheck_s ? opts->recheck_s : STSF_RECHECK_S;
	f->refresh_tick_ms = opts->refresh_tick_ms ? opts->refresh_tick_ms :
	    STSF_REFRESH_TICK_MS;
	if (opts->ca_file != NULL) {
		if (strlen(opts->ca_file) >= sizeof(f->ca_file)) {
			snprintf(err, errlen, "ca_file: name too long");
			free(f);
			return NULL;
		}
		snprintf(f->ca_file, sizeof(f->ca_file), "%s", opts->ca_file);
		f->have_ca = true;
	}
	if (opts->state_dir != NULL && store_open(f, opts->state_dir, err,
	    errlen) != 0) {
		stsf_free(f);
		return NULL;
	}
	ev_timer_init(&f->tick, on_tick, f->refresh_tick_ms / 1000.0,
	    f->refresh_tick_ms / 1000.0);
	f->tick.data = f;
	ev_timer_start(loop, &f->tick);
	return f;
}

void
stsf_free(struct stsf *f)
{
	if (f == NULL)
		return;
	ev_timer_stop(f->loop, &f->tick);
	while (f->waiters != NULL) {
		struct stsf_waiter *w = f->waiters;

		waiter_unlink(w);
		free(w);
	}
	for (size_t b = 0; b < STSF_BUCKETS; b++)
		while (f->buckets[b] != NULL) {
			struct stsf_entry *e = f->buckets[b];

			if (e->fl == FL_TXT && e->qid != 0)
				resolver_cancel(f->res, e->qid);
			if (e->fl == FL_FETCH && e->hc != NULL)
				https_cancel(e->hc);
			entry_unlink_free(f, e);
		}
	if (f->env != NULL) {
		mdb_env_sync(f->env, 1);
		mdb_env_close(f->env);
	}
	f->magic = 0;
	free(f);
}

/* A domain as the contract wants it: lower case LDH labels, no trailing dot. */
static bool
domain_ok(const char *d)
{
	size_t n = d ? strlen(d) : 0, label = 0;

	/* "mta-sts." + d must still be a name */
	if (n == 0 || n > 245 || d[0] == '.' || d[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = d[i];

		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_') || ++label > 63)
			return false;
	}
	return true;
}

uint64_t
stsf_get(struct stsf *f, const char *domain, unsigned wait_ms, stsf_cb cb,
    void *arg)
{
	struct stsf_entry *e;
	struct stsf_waiter *w;
	time_t now = time(NULL);
	double after = 0.;

	if (f == NULL || cb == NULL || !domain_ok(domain))
		return 0;
	if ((e = entry_get(f, domain)) == NULL)
		return 0;
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return 0;
	entry_expire(f, e, now);
	/*
	 * The TXT answered within recheck_s: the cache answers, no lookup.
	 * Else a flight starts (or one on its way is joined). A policy in
	 * force answers at once all the same (RFC 8461 5.1: the fetch may go
	 * on in the background); without one the waiter waits for the flight,
	 * at most wait_ms.
	 */
	if (e->fl != FL_NONE ||
	    !(e->checked != 0 && now - e->checked < (time_t)f->recheck_s)) {
		if (flight_start(f, e, false) == 0 && e->policy == NULL)
			after = wait_ms / 1000.0;
		/* no flight possible (too many at once): what is known */
	}
	w->magic = STSF_WAITER_MAGIC;
	w->f = f;
	w->e = e;
	w->id = f->next_id++;
	w->cb = cb;
	w->arg = arg;
	e->nwaiters++;
	w->next = f->waiters;
	if (f->waiters != NULL)
		f->waiters->prev = w;
	f->waiters = w;
	/* even a cache answer comes from the loop, never from inside this call */
	ev_timer_init(&w->timer, on_waiter_timer, after, 0.);
	w->timer.data = w;
	ev_timer_start(f->loop, &w->timer);
	return w->id;
}

void
stsf_cancel(struct stsf *f, uint64_t id)
{
	if (f == NULL)
		return;
	for (struct stsf_waiter *w = f->waiters; w != NULL; w = w->next)
		if (w->id == id) {
			waiter_unlink(w);
			free(w);
			return;
		}
}
