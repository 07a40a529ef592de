/*
 * policyd: the policy process (policyd.h): clients handed over the control
 * socket, one request per packet, answers from the cache or the validating
 * resolver. Nothing here blocks: sockets are non-blocking, and an answer a
 * client's socket cannot take right now is dropped (the client's own
 * timeout covers it) and counted.
 */
#include "starttlsd/fdpass.h"
#include "starttlsd/policyd.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <lmdb.h>

#include "starttlsd/config.h"
#include "starttlsd/log.h"
#include "starttlsd/pdpolicy.h"
#include "starttlsd/stsfetch.h"
#include "starttlsd/tlsrpt.h"

#define PD_MAX_CLIENTS 256
#define PD_MAX_JOBS 512         /* PD_POLICY questions computed at once */
#define PD_JOB_QUERIES 32       /* a job's queries in flight (1 MX, 16 A/AAAA, 8 TLSA) */

struct pd_client {
	struct pd_client *next;
	uint64_t id;
	int fd;
	ev_io io;
};

/* Someone waiting for an answer in flight. */
struct pd_waiter {
	struct pd_waiter *next;
	uint64_t client;
	uint32_t seq;
};

/* One question in flight, with everyone waiting for it. */
struct pd_flight {
	struct pd_flight *next;
	enum pd_kind kind;
	uint16_t port;
	char name[PD_NAME_MAX + 1];
	struct pd_waiter *waiters;
};

/* One resolver query of a job: cancelled when the job ends early. */
struct pd_jq {
	struct pd_job *job;
	struct pdp_rrs *into;
	uint64_t qid;            /* 0: free */
};

/* One PD_POLICY question (domain, address) being computed. */
struct pd_job {
	struct pd_job *next;
	char key[PD_CACHE_KEY_MAX + 1];
	struct pdp_facts facts;
	struct pd_waiter *waiters;
	struct pd_jq q[PD_JOB_QUERIES];
	size_t nout;             /* queries in flight */
	ev_timer timer;
	uint64_t sts_id;         /* stsf_get in flight, 0: none */
	bool sts_phase;          /* DANE done, waiting for MTA-STS */
};

static struct {
	struct ev_loop *loop;
	bool dane, mta_sts;
	unsigned timeout_ms;
	unsigned sts_wait_ms;
	struct stsf *stsf;      /* opts->mta_sts; NULL: sts always none */
	struct pdp_learn *learn;
	MDB_env *lenv;          /* state_dir/policyd.mdb: the learned addresses; NULL: memory only */
	MDB_dbi ldbi;
	bool lfull_logged;
	struct tlsrpt *tlsrpt;  /* opts->tlsrpt with a state_dir; NULL: reports only counted */
	struct pd_job *jobs;
	size_t njobs;
	uint64_t policies;      /* PD_POLICY computed (not from the cache) */
	uint64_t reports;       /* PD_REPORT received */
	struct resolver *res;
	struct pd_cache *cache;
	struct pd_client *clients;
	size_t nclients;
	uint64_t next_client;
	struct pd_flight *flights;
	ev_io ctl_io;
	int ctl;
	uint64_t dropped;       /* answers a client could not take */
	uint64_t asked;         /* questions sent to the resolver */
} pd;

static uint64_t
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec;
}

static struct pd_client *
client_find(uint64_t id)
{
	for (struct pd_client *c = pd.clients; c != NULL; c = c->next)
		if (c->id == id)
			return c;
	return NULL;
}

static void
client_close(struct pd_client *c)
{
	struct pd_client **pp;

	for (pp = &pd.clients; *pp != c; pp = &(*pp)->next)
		;
	*pp = c->next;
	ev_io_stop(pd.loop, &c->io);
	close(c->fd);
	pd.nclients--;
	free(c);   /* its waiters find no client and are skipped */
}

/* Send one packet to a client; an answer it cannot take now is dropped. */
static void
client_send(uint64_t id, const uint8_t *pkt, size_t len)
{
	struct pd_client *c = client_find(id);

	if (c == NULL)
		return;
	if (send(c->fd, pkt, len, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)len) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
			pd.dropped++;
		else
			client_close(c);
	}
}

/* The cached payload with this asker's seq and the cached flag and TTL left. */
static void
send_cached(uint64_t client, uint32_t seq, const uint8_t *ans, size_t len,
    uint32_t ttl_left)
{
	uint8_t pkt[PD_MSG_MAX];
	struct pd_ans a;

	if (len > sizeof(pkt) || pd_ans_decode(ans, len, &a) != 0)
		return;
	len = pd_ans_encode(seq, a.kind, a.status, a.flags | PD_F_CACHED,
	    ttl_left, a.rdata, a.rdlen, a.nrr, pkt, sizeof(pkt));
	if (len > 0)
		client_send(client, pkt, len);
}

static void
on_resolved(void *arg, const struct res_answer *ra)
{
	struct pd_flight *f = arg, **pp;
	uint8_t pkt[PD_MSG_MAX];
	size_t len;
	uint32_t ttl = pd_cache_ttl(ra->status, ra->ttl);

	for (pp = &pd.flights; *pp != f; pp = &(*pp)->next)
		;
	*pp = f->next;
	len = pd_ans_encode(0, f->kind, ra->status, 0, ttl, ra->rdata,
	    ra->rdlen, ra->nrr, pkt, sizeof(pkt));
	if (len > 0) {
		pd_cache_put(pd.cache, f->kind, f->port, f->name, ra->status,
		    ra->ttl, pkt, len, now_s());
		while (f->waiters != NULL) {
			struct pd_waiter *w = f->waiters;
			f->waiters = w->next;
			send_cached(w->client, w->seq, pkt, len, ttl);
			free(w);
		}
	}
	while (f->waiters != NULL) {
		struct pd_waiter *w = f->waiters;
		f->waiters = w->next;
		free(w);
	}
	if (ra->status == RES_BOGUS || ra->status == RES_ERROR)
		log_msg(LOG_WARNING, "policyd", "%s %s: %s%s%s", pd_kind_str(f->kind),
		    ra->qname, res_status_str(ra->status), ra->why ? ": " : "",
		    ra->why ? ra->why : "");
	free(f);
}

static void policy_handle(uint64_t client, const struct pd_req *rq);
static void addr_handle(uint64_t client, const struct pd_req *rq);

/* Answer from the cache, join a flight, or start one. */
static void
handle(uint64_t client, const struct pd_req *rq)
{
	static const int qtype[] = { 0, RES_T_TLSA, RES_T_MX, RES_T_A, RES_T_AAAA };
	const uint8_t *ans;
	size_t len;
	uint32_t left;
	struct pd_flight *f;
	struct pd_waiter *w;
	uint16_t port = rq->kind == PD_TLSA ? rq->port : 0;

	if (rq->kind == PD_POLICY) {
		policy_handle(client, rq);
		return;
	}
	if (rq->kind == PD_ADDR) {
		addr_handle(client, rq);
		return;
	}
	ans = pd_cache_get(pd.cache, rq->kind, port, rq->name, now_s(), &len,
	    &left);
	if (ans != NULL) {
		send_cached(client, rq->seq, ans, len, left);
		return;
	}
	for (f = pd.flights; f != NULL; f = f->next)
		if (f->kind == rq->kind && f->port == port &&
		    strcmp(f->name, rq->name) == 0)
			break;
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return;
	w->client = client;
	w->seq = rq->seq;
	if (f == NULL) {
		uint64_t id;

		f = calloc(1, sizeof(*f));
		if (f == NULL) {
			free(w);
			return;
		}
		f->kind = rq->kind;
		f->port = port;
		memcpy(f->name, rq->name, sizeof(f->name));
		f->next = pd.flights;
		pd.flights = f;
		pd.asked++;
		id = rq->kind == PD_TLSA ?
		    resolver_tlsa(pd.res, rq->name, port, on_resolved, f) :
		    resolver_query(pd.res, rq->name, qtype[rq->kind], on_resolved,
		    f);
		if (id == 0) {
			/* Not even asked: an error answer, not cached. */
			uint8_t pkt[64];
			size_t n = pd_ans_encode(rq->seq, rq->kind, RES_ERROR, 0, 0,
			    NULL, NULL, 0, pkt, sizeof(pkt));
			pd.flights = f->next;
			free(f);
			free(w);
			if (n > 0)
				client_send(client, pkt, n);
			return;
		}
	}
	w->next = f->waiters;
	f->waiters = w;
}


/* ---- learned addresses in LMDB (state_dir/policyd.mdb) ----------------------------
 *
 * A mirror of the table: key = family u8 + 16 address bytes, value =
 * expires u64 (wall clock) + the encoded PD_ADDR answer. Loaded at start
 * (expired entries dropped), written at each learn, entries deleted when
 * the table drops them. MDB_NOSYNC: a crash loses at most what was learned
 * since the last sync (at exit), which is only a cache.
 */
#define LEARN_FILE "policyd.mdb"
#define LEARN_MAP_SIZE (64u << 20)

static void
lkey(const struct pd_req_addr *x, uint8_t k[17])
{
	k[0] = x->family;
	memset(k + 1, 0, 16);
	memcpy(k + 1, x->addr, x->family == AF_INET ? 4 : 16);
}

static void
learn_db_err(const char *what, int rc)
{
	if (rc == MDB_MAP_FULL && pd.lfull_logged)
		return;
	pd.lfull_logged |= rc == MDB_MAP_FULL;
	log_msg(LOG_ERR, "policyd", "learned addresses: %s: %s", what,
	    mdb_strerror(rc));
}

static void
learn_db_del(void *arg, const struct pd_req_addr *x)
{
	uint8_t k[17];
	MDB_val kv = { sizeof(k), k };
	MDB_txn *txn;
	int rc;

	if (pd.lenv == NULL)
		return;
	lkey(x, k);
	if ((rc = mdb_txn_begin(pd.lenv, NULL, 0, &txn)) != 0) {
		learn_db_err("delete", rc);
		return;
	}
	rc = mdb_del(txn, pd.ldbi, &kv, NULL);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		mdb_txn_abort(txn);
		learn_db_err("delete", rc);
		return;
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		learn_db_err("delete", rc);
}

static void
learn_db_put(const struct pd_req_addr *x)
{
	uint8_t k[17], v[8 + PD_MSG_MAX];
	const uint8_t *blob;
	size_t len;
	uint64_t exp;
	MDB_val kv = { sizeof(k), k }, vv;
	MDB_txn *txn;
	int rc;

	if (pd.lenv == NULL ||
	    (blob = pdp_learn_raw(pd.learn, x, &len, &exp)) == NULL)
		return;
	lkey(x, k);
	memcpy(v, &exp, 8);
	memcpy(v + 8, blob, len);
	vv.mv_size = 8 + len;
	vv.mv_data = v;
	if ((rc = mdb_txn_begin(pd.lenv, NULL, 0, &txn)) != 0) {
		learn_db_err("write", rc);
		return;
	}
	if ((rc = mdb_put(txn, pd.ldbi, &kv, &vv, 0)) != 0) {
		mdb_txn_abort(txn);
		learn_db_err("write", rc);
		return;
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		learn_db_err("write", rc);
}

/* Open state_dir/policyd.mdb and load it; memory only if it cannot be. */
static void
learn_db_open(const char *dir)
{
	char path[4096];
	MDB_txn *txn = NULL;
	MDB_cursor *cur;
	MDB_val kv, vv;
	uint64_t now = (uint64_t)time(NULL);
	size_t loaded = 0, stale = 0;
	int rc;

	if (dir == NULL || dir[0] == '\0')
		return;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, LEARN_FILE) >=
	    sizeof(path)) {
		log_msg(LOG_ERR, "policyd", "learned addresses: state_dir too "
		    "long: memory only");
		return;
	}
	if ((rc = mdb_env_create(&pd.lenv)) != 0)
		goto fail;
	mdb_env_set_mapsize(pd.lenv, LEARN_MAP_SIZE);
	if ((rc = mdb_env_open(pd.lenv, path, MDB_NOSUBDIR | MDB_NOSYNC |
	    MDB_NOMETASYNC, 0600)) != 0 ||
	    (rc = mdb_txn_begin(pd.lenv, NULL, 0, &txn)) != 0 ||
	    (rc = mdb_dbi_open(txn, NULL, 0, &pd.ldbi)) != 0 ||
	    (rc = mdb_cursor_open(txn, pd.ldbi, &cur)) != 0)
		goto fail;
	/* Load what is alive; delete the rest (and what does not parse). */
	while ((rc = mdb_cursor_get(cur, &kv, &vv, loaded + stale == 0 ?
	    MDB_FIRST : MDB_NEXT)) == 0) {
		struct pd_req_addr x;
		uint64_t exp;
		int r = 0;

		if (kv.mv_size == 17 && vv.mv_size > 8) {
			memset(&x, 0, sizeof(x));
			x.family = ((const uint8_t *)kv.mv_data)[0];
			memcpy(x.addr, (const uint8_t *)kv.mv_data + 1, 16);
			memcpy(&exp, vv.mv_data, 8);
			r = pdp_learn_load(pd.learn, &x,
			    (const uint8_t *)vv.mv_data + 8, vv.mv_size - 8, exp,
			    now);
		}
		if (r == 1) {
			loaded++;
		} else {
			stale++;
			mdb_cursor_del(cur, 0);
		}
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND || (rc = mdb_txn_commit(txn)) != 0) {
		txn = NULL;
		goto fail;
	}
	pdp_learn_on_drop(pd.learn, learn_db_del, NULL);
	if (loaded > pdp_learn_count(pd.learn))
		loaded = pdp_learn_count(pd.learn);
	log_msg(LOG_INFO, "policyd", "learned addresses: %zu loaded from %s, "
	    "%zu expired", loaded, path, stale);
	return;
fail:
	if (txn != NULL)
		mdb_txn_abort(txn);
	log_msg(LOG_ERR, "policyd", "learned addresses: %s: %s: memory only",
	    path, mdb_strerror(rc));
	if (pd.lenv != NULL)
		mdb_env_close(pd.lenv);
	pd.lenv = NULL;
}

static void
learn_db_close(void)
{
	if (pd.lenv == NULL)
		return;
	mdb_env_sync(pd.lenv, 1);
	mdb_env_close(pd.lenv);
	pd.lenv = NULL;
}

/* ---- PD_POLICY: jobs ------------------------------------------------------------ */

static uint64_t
wall_s(void)
{
	return (uint64_t)time(NULL);
}

/* "domain address": the job and cache key. */
static void
policy_key(const struct pd_req *rq, char *key, size_t cap)
{
	char a[INET6_ADDRSTRLEN] = "none";

	if (rq->addr.family != 0)
		inet_ntop(rq->addr.family, rq->addr.addr, a, sizeof(a));
	snprintf(key, cap, "%s %s", rq->name, a);
}

/* Send pol to one asker with its seq. */
static void
pol_send(uint64_t client, uint32_t seq, struct pd_pol *pol)
{
	uint8_t pkt[PD_MSG_MAX];
	size_t n;

	pol->seq = seq;
	n = pd_pol_encode(pol, pkt, sizeof(pkt));
	if (n > 0)
		client_send(client, pkt, n);
}

/* The cached answer with this asker's seq, the cached flag and the TTL left. */
static void
pol_send_cached(uint64_t client, uint32_t seq, const uint8_t *ans, size_t len,
    uint32_t ttl_left)
{
	struct pd_pol pol;

	if (pd_pol_decode(ans, len, &pol) != 0)
		return;
	pol.flags |= PD_F_CACHED;
	pol.ttl = ttl_left;
	pol_send(client, seq, &pol);
}

static void
job_free(struct pd_job *j)
{
	struct pd_job **pp;

	for (pp = &pd.jobs; *pp != j; pp = &(*pp)->next)
		;
	*pp = j->next;
	pd.njobs--;
	for (size_t i = 0; i < PD_JOB_QUERIES; i++)
		if (j->q[i].qid != 0)
			resolver_cancel(pd.res, j->q[i].qid);
	if (j->sts_id != 0)
		stsf_cancel(pd.stsf, j->sts_id);
	ev_timer_stop(pd.loop, &j->timer);
	while (j->waiters != NULL) {
		struct pd_waiter *w = j->waiters;
		j->waiters = w->next;
		free(w);
	}
	pdp_free(&j->facts);
	free(j);
}

static void learn_db_put(const struct pd_req_addr *x);

/*
 * A DANE answer for the host holding x: remember its TLSA base domain as
 * x's SNI, unless x already has a DANE entry (learned from a match).
 */
static void
learn_sni(const struct pd_req_addr *x, const struct pd_pol *pol)
{
	struct pd_pol cur, a;

	if ((pol->flags & PD_F_ANY_MX) || pol->nhosts != 1 || pol->ttl == 0 ||
	    (pdp_learn_get(pd.learn, x, wall_s(), &cur) &&
	    cur.dane == PD_DANE_MATCH))
		return;
	memset(&a, 0, sizeof(a));
	a.kind = PD_ADDR;
	a.ttl = pol->ttl;
	a.why = a.sts_id = "";
	a.mx = pol->hosts[0].host;
	a.sni = pol->hosts[0].base;
	a.dane = PD_DANE_NONE;
	if (pdp_learn_set(pd.learn, x, &a, wall_s() + pol->ttl) == 1)
		learn_db_put(x);
}

/* The answer is known: cache it, learn from it, send it to every asker. */
static void
job_finish(struct pd_job *j, struct pd_pol *pol)
{
	uint8_t pkt[PD_MSG_MAX];
	size_t n;

	pol->seq = 0;
	pol->kind = PD_POLICY;
	n = pd_pol_encode(pol, pkt, sizeof(pkt));
	if (n > 0 && pd_pol_decode(pkt, n, pol) == 0) {
		/* From here on pol is what was encoded (maybe "answer too large"). */
		pd_cache_put(pd.cache, PD_POLICY, 0, j->key,
		    pol->dane == PD_DANE_TEMPFAIL ? RES_ERROR : RES_SECURE,
		    pol->ttl, pkt, n, now_s());
		/*
		 * MTA-STS (the SNI) is learned now, and for a DANE address the
		 * SNI only (the TLSA base domain: a server that picks its
		 * certificate by name presents the right one next time). The
		 * RRset, checked before the greeting, only once a worker
		 * reports that its chain matched (report_learn): an address
		 * several MX names share must not be held to the records of
		 * one whose TLSA the server does not satisfy.
		 */
		if (pol->dane != PD_DANE_MATCH) {
			if (pdp_learn_put(pd.learn, &j->facts, pol, wall_s()) == 1)
				learn_db_put(&j->facts.x);
		} else {
			learn_sni(&j->facts.x, pol);
		}
		for (struct pd_waiter *w = j->waiters; w != NULL; w = w->next)
			pol_send(w->client, w->seq, pol);
	}
	pd.policies++;
	if (pol->dane == PD_DANE_TEMPFAIL)
		log_msg(LOG_WARNING, "policyd", "POLICY %s: tempfail: %s", j->key,
		    pol->why);
	job_free(j);
}

static void job_step(struct pd_job *j);
static void on_sts(void *arg, const char *domain, const struct stsf_state *st);

#define PD_STS_NONE_TTL 60      /* a PD_POLICY without an MTA-STS policy, when MTA-STS is on */

static void
on_job_resolved(void *arg, const struct res_answer *ra)
{
	struct pd_jq *q = arg;
	struct pd_job *j = q->job;

	q->qid = 0;
	j->nout--;
	if (pdp_store(q->into, ra) < 0)
		log_msg(LOG_ERR, "policyd", "out of memory");
	job_step(j);   /* a failure is logged with the POLICY it decides */
}

static void
job_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct pd_job *j = t->data;
	struct pd_pol pol;

	if (j->sts_phase) {
		/* DANE is decided (none); no MTA-STS answer in time: none either. */
		stsf_cancel(pd.stsf, j->sts_id);
		j->sts_id = 0;
		pdp_decide(&j->facts, pd.dane, &pol);
		job_finish(j, &pol);
		return;
	}
	memset(&pol, 0, sizeof(pol));
	pol.dane = PD_DANE_TEMPFAIL;
	pol.dane_result = PD_R_DNSSEC_INVALID;  /* no valid records in time */
	pol.ttl = PD_TTL_FAIL;
	pol.why = "timeout";
	pol.mx = pol.sni = pol.sts_id = "";
	job_finish(j, &pol);
}

/* Ask what the facts need next; answer when nothing more is needed. */
static void
job_step(struct pd_job *j)
{
	struct pdp_query qs[PD_JOB_QUERIES];
	struct pd_pol pol;
	bool done;
	size_t n;

	while ((n = pdp_next(&j->facts, qs, PD_JOB_QUERIES - j->nout,
	    &done)) > 0) {
		for (size_t i = 0; i < n; i++) {
			struct pd_jq *q = NULL;
			uint64_t id;

			for (size_t k = 0; k < PD_JOB_QUERIES && q == NULL; k++)
				if (j->q[k].qid == 0 && j->q[k].into == NULL)
					q = &j->q[k];
			if (q == NULL) {
				/* cannot happen (bounded by PD_JOB_QUERIES) */
				qs[i].into->done = true;
				qs[i].into->status = RES_ERROR;
				snprintf(qs[i].into->why, sizeof(qs[i].into->why),
				    "too many queries");
				continue;
			}
			q->job = j;
			q->into = qs[i].into;
			pd.asked++;
			id = qs[i].type == RES_T_TLSA ?
			    resolver_tlsa(pd.res, qs[i].name, 25, on_job_resolved, q) :
			    resolver_query(pd.res, qs[i].name, qs[i].type,
			    on_job_resolved, q);
			if (id == 0) {
				qs[i].into->done = true;
				qs[i].into->status = RES_ERROR;
				snprintf(qs[i].into->why, sizeof(qs[i].into->why),
				    "not asked");
				continue;
			}
			q->qid = id;
			j->nout++;
		}
	}
	if (!done || j->nout > 0)
		return;
	pdp_decide(&j->facts, pd.dane, &pol);
	if (pd.stsf != NULL && pol.dane == PD_DANE_NONE && !j->sts_phase) {
		/*
		 * The MTA-STS side, only when DANE is none. Its own bound:
		 * sts_wait_ms (stsf_get answers with what is known then) and a
		 * second more before the job gives up on it.
		 */
		j->sts_phase = true;
		j->sts_id = stsf_get(pd.stsf, j->facts.domain, pd.sts_wait_ms,
		    on_sts, j);
		if (j->sts_id != 0) {
			ev_timer_stop(pd.loop, &j->timer);
			ev_timer_set(&j->timer, pd.sts_wait_ms / 1000.0 + 1.0, 0);
			ev_timer_start(pd.loop, &j->timer);
			return;
		}
	}
	job_finish(j, &pol);
}

/* MTA-STS's answer for the job's domain: into the facts, then decide. */
static void
on_sts(void *arg, const char *domain, const struct stsf_state *st)
{
	struct pd_job *j = arg;
	struct pdp_facts *f = &j->facts;
	struct pd_pol pol;

	j->sts_id = 0;
	f->sts = PD_STS_NONE;
	f->sts_fail = PD_R_SUCCESS;
	/* A policy announced (TXT) that could not be had: said, not enforced. */
	if (st != NULL && !st->have && st->fail != STSF_OK) {
		f->sts_fail = st->fail == STSF_POLICY_INVALID ?
		    PD_R_STS_POLICY_INVALID : st->fail == STSF_WEBPKI_INVALID ?
		    PD_R_STS_WEBPKI_INVALID : PD_R_STS_POLICY_FETCH_ERROR;
		snprintf(f->sts_why, sizeof(f->sts_why), "%s", st->why);
	}
	if (st != NULL && st->have && st->policy.mode != STS_MODE_NONE) {
		f->sts = st->policy.mode == STS_MODE_ENFORCE ? PD_STS_ENFORCE :
		    PD_STS_TESTING;
		snprintf(f->sts_id, sizeof(f->sts_id), "%s", st->id);
		f->sts_max_age = st->policy.max_age;
		f->sts_nmx = st->policy.nmx < STS_MAX_MX ? st->policy.nmx :
		    STS_MAX_MX;
		for (size_t i = 0; i < f->sts_nmx; i++)
			memcpy(f->sts_mx[i], st->policy.mx[i], STS_NAME_MAX);
	}
	pdp_decide(f, pd.dane, &pol);
	/*
	 * No policy known may mean a first fetch still going on (after
	 * sts_wait_ms): asked again soon, not after the DNS TTL.
	 */
	if (pol.sts == PD_STS_NONE && pol.ttl > PD_STS_NONE_TTL)
		pol.ttl = PD_STS_NONE_TTL;
	if (st != NULL && st->fail != STSF_OK)
		log_msg(LOG_INFO, "policyd", "MTA-STS %s: %s", domain, st->why);
	job_finish(j, &pol);
}

static void
policy_handle(uint64_t client, const struct pd_req *rq)
{
	char key[PD_CACHE_KEY_MAX + 1];
	const uint8_t *ans;
	size_t len;
	uint32_t left;
	struct pd_job *j;
	struct pd_waiter *w;

	policy_key(rq, key, sizeof(key));
	ans = pd_cache_get(pd.cache, PD_POLICY, 0, key, now_s(), &len, &left);
	if (ans != NULL) {
		pol_send_cached(client, rq->seq, ans, len, left);
		return;
	}
	if (!pd.dane && !pd.mta_sts) {
		struct pd_pol pol;

		memset(&pol, 0, sizeof(pol));
		pol.kind = PD_POLICY;
		pol.ttl = PD_TTL_MAX;
		pol.why = pol.mx = pol.sni = pol.sts_id = "";
		pol_send(client, rq->seq, &pol);
		return;
	}
	for (j = pd.jobs; j != NULL; j = j->next)
		if (strcmp(j->key, key) == 0)
			break;
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return;
	w->client = client;
	w->seq = rq->seq;
	if (j == NULL) {
		if (pd.njobs >= PD_MAX_JOBS || (j = calloc(1, sizeof(*j))) == NULL) {
			struct pd_pol pol;

			free(w);
			memset(&pol, 0, sizeof(pol));
			pol.kind = PD_POLICY;
			pol.dane = PD_DANE_TEMPFAIL;
			pol.dane_result = PD_R_VALIDATION_FAILURE;
			pol.ttl = PD_TTL_FAIL;
			pol.why = "busy";
			pol.mx = pol.sni = pol.sts_id = "";
			pol_send(client, rq->seq, &pol);
			return;
		}
		memcpy(j->key, key, sizeof(key));
		pdp_init(&j->facts, rq->name, &rq->addr);
		j->facts.no_tlsa = !pd.dane;
		j->next = pd.jobs;
		pd.jobs = j;
		pd.njobs++;
		ev_timer_init(&j->timer, job_timeout, pd.timeout_ms / 1000.0, 0);
		j->timer.data = j;
		ev_timer_start(pd.loop, &j->timer);
		w->next = j->waiters;
		j->waiters = w;
		job_step(j);   /* may finish at once (no query could be asked) */
		return;
	}
	w->next = j->waiters;
	j->waiters = w;
}

/* PD_ADDR: the learned-address table; nothing known is all NONE. */
static void
addr_handle(uint64_t client, const struct pd_req *rq)
{
	struct pd_pol pol;

	pdp_learn_get(pd.learn, &rq->addr, wall_s(), &pol);
	pol_send(client, rq->seq, &pol);
}

static int
strptrcmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * The policy strings of a report (RFC 8460 4.3): the policy in force for
 * (domain, address) as the PD_POLICY cache holds it: TLSA records in
 * presentation form (of the receiving MX, else of every host), or the
 * MTA-STS policy's lines. Into buf; how many strings.
 */
static size_t
report_strings(const struct pd_report *r, char *buf, size_t cap,
    const char **str, size_t max)
{
	struct pd_req rq;
	struct pd_pol pol;
	char key[PD_CACHE_KEY_MAX + 1];
	const uint8_t *ans;
	size_t len, n = 0, o = 0;
	uint32_t left;

	memset(&rq, 0, sizeof(rq));
	memcpy(rq.name, r->domain, sizeof(rq.name));
	rq.addr = r->addr;
	policy_key(&rq, key, sizeof(key));
	ans = pd_cache_get(pd.cache, PD_POLICY, 0, key, now_s(), &len, &left);
	if (ans == NULL || pd_pol_decode(ans, len, &pol) != 0)
		return 0;
#define ADDSTR(...) do {						\
		int w_ = snprintf(buf + o, cap - o, __VA_ARGS__);	\
		if (w_ < 0 || (size_t)w_ >= cap - o || n >= max)	\
			return n;					\
		str[n++] = buf + o;					\
		o += (size_t)w_ + 1;					\
	} while (0)
	if (r->policy_type == TLSRPT_TLSA) {
		for (size_t h = 0; h < pol.nhosts; h++) {
			if (r->mx[0] != '\0' && pol.nhosts > 1 &&
			    strcmp(r->mx, pol.hosts[h].host) != 0)
				continue;
			for (size_t i = 0; i < pol.hosts[h].nrr; i++) {
				const uint8_t *d = pol.hosts[h].rdata[i];
				size_t l = pol.hosts[h].rdlen[i], start = o;
				if (l < 3 || cap - o < 16 + 2 * l || n >= max)
					return n;
				o += (size_t)snprintf(buf + o, cap - o, "%u %u %u ",
				    d[0], d[1], d[2]);
				for (size_t k = 3; k < l; k++)
					o += (size_t)snprintf(buf + o, cap - o,
					    "%02x", d[k]);
				str[n++] = buf + start;
				o++;
			}
		}
		/* RRset order varies between answers: one order, one aggregate. */
		qsort(str, n, sizeof(str[0]), strptrcmp);
	} else if (r->policy_type == TLSRPT_STS && pol.sts != PD_STS_NONE) {
		ADDSTR("version: STSv1");
		ADDSTR("mode: %s", pol.sts == PD_STS_ENFORCE ? "enforce" :
		    "testing");
		for (size_t i = 0; i < pol.sts_nmx; i++)
			ADDSTR("mx: %s", pol.sts_mx[i]);
		ADDSTR("max_age: %u", pol.sts_max_age);
	}
#undef ADDSTR
	return n;
}

/*
 * A worker's chain matched the DANE policy of (domain, address): the
 * address is learned (PD_ADDR: SNI = the TLSA base domain, TLS required,
 * the chain checked before the greeting), for what is left of the cached
 * answer's TTL.
 */
static void
report_learn(const struct pd_report *r)
{
	struct pd_req rq;
	struct pd_pol pol, a;
	char key[PD_CACHE_KEY_MAX + 1];
	const uint8_t *ans;
	size_t len;
	uint32_t left;

	if (r->policy_type != TLSRPT_TLSA || r->result != PD_R_SUCCESS ||
	    r->addr.family == 0)
		return;
	memset(&rq, 0, sizeof(rq));
	memcpy(rq.name, r->domain, sizeof(rq.name));
	rq.addr = r->addr;
	policy_key(&rq, key, sizeof(key));
	ans = pd_cache_get(pd.cache, PD_POLICY, 0, key, now_s(), &len, &left);
	if (ans == NULL || pd_pol_decode(ans, len, &pol) != 0 ||
	    pol.dane != PD_DANE_MATCH || (pol.flags & PD_F_ANY_MX) ||
	    pol.nhosts != 1 || left == 0)
		return;
	memset(&a, 0, sizeof(a));
	a.kind = PD_ADDR;
	a.ttl = left;
	a.why = a.sts_id = "";
	a.mx = pol.hosts[0].host;
	a.dane = PD_DANE_MATCH;
	a.sni = pol.hosts[0].base;
	a.nhosts = 1;
	a.hosts[0] = pol.hosts[0];
	if (pdp_learn_set(pd.learn, &r->addr, &a, wall_s() + left) == 1)
		learn_db_put(&r->addr);
}

/* PD_REPORT: no answer. 0, or -1 if malformed. */
static int
report_handle(const uint8_t *pkt, size_t len)
{
	struct pd_report r;
	char a[INET6_ADDRSTRLEN] = "none", err[256];
	static char buf[TLSRPT_STRINGS_MAX];
	const char *str[TLSRPT_MAX_STRINGS];
	size_t n;

	if (pd_report_decode(pkt, len, &r) != 0)
		return -1;
	pd.reports++;
	if (r.addr.family != 0)
		inet_ntop(r.addr.family, r.addr.addr, a, sizeof(a));
	log_msg(LOG_DEBUG, "policyd", "report %s %s mx=%s ip=%s type=%u",
	    r.domain, pd_result_str(r.result), r.mx[0] ? r.mx : "-", a,
	    r.policy_type);
	report_learn(&r);
	if (pd.tlsrpt == NULL)
		return 0;
	n = report_strings(&r, buf, sizeof(buf), str, TLSRPT_MAX_STRINGS);
	if (tlsrpt_record(pd.tlsrpt, &r, str, n, err, sizeof(err)) < 0)
		log_msg(LOG_ERR, "policyd", "%s", err);
	return 0;
}

static void
client_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct pd_client *c = io->data;
	uint8_t pkt[PD_MSG_MAX];
	struct pd_req rq;
	uint64_t id = c->id;
	int budget = 64;   /* then let the others in */

	while (budget-- > 0) {
		ssize_t n = recv(c->fd, pkt, sizeof(pkt), MSG_DONTWAIT | MSG_TRUNC);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			client_close(c);   /* the worker is gone */
			return;
		}
		if ((size_t)n <= sizeof(pkt) &&
		    pd_packet_kind(pkt, (size_t)n) == PD_REPORT) {
			if (report_handle(pkt, (size_t)n) < 0) {
				log_msg(LOG_ERR, "policyd", "malformed report (%zd "
				    "bytes): client dropped", n);
				client_close(c);
				return;
			}
			continue;
		}
		if ((size_t)n > sizeof(pkt) || pd_req_decode(pkt, (size_t)n, &rq) != 0) {
			log_msg(LOG_ERR, "policyd", "malformed request (%zd bytes): "
			    "client dropped", n);
			client_close(c);
			return;
		}
		handle(id, &rq);
		/* handle() may have closed c (a failed send): look again. */
		if (client_find(id) == NULL)
			return;
	}
}

/* A packet on the control socket carries a client fd, or EOF: the master is gone. */
static void
ctl_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	char byte;
	struct pd_client *c;
	int fd;
	ssize_t r = fdpass_recv(pd.ctl, &byte, 1, &fd, NULL, MSG_DONTWAIT);

	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0) {
		if (fd >= 0)
			close(fd);
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	if (fd < 0)
		return;
	if (pd.nclients >= PD_MAX_CLIENTS || (c = calloc(1, sizeof(*c))) == NULL) {
		log_msg(LOG_ERR, "policyd", "client refused (%zu clients)",
		    pd.nclients);
		close(fd);
		return;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	c->fd = fd;
	c->id = ++pd.next_client;
	c->next = pd.clients;
	pd.clients = c;
	pd.nclients++;
	ev_io_init(&c->io, client_cb, fd, EV_READ);
	c->io.data = c;
	ev_io_start(loop, &c->io);
}

pid_t
policyd_spawn(const struct policyd_opts *opts, int (*drop)(void *),
    void *arg, bool log_stderr, int *ctl_out)
{
	int sp[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
		return -1;
	if ((pid = fork()) < 0) {
		close(sp[0]);
		close(sp[1]);
		return -1;
	}
	if (pid == 0) {
		/*
		 * Nothing of the master's but the control socket: not its
		 * listeners (a copy would keep a closed listener queueing
		 * connections), pipes or syslog socket (reopened below).
		 */
		log_close();
		if (dup2(sp[1], 3) < 0)
			_exit(1);
		close_range(4, ~0U, 0);
		log_open(log_stderr, true);
		if (drop(arg) < 0)
			_exit(1);
		policyd_main(3, opts);
	}
	close(sp[1]);
	*ctl_out = sp[0];
	return pid;
}

pid_t
policyd_start(const struct config *cfg, int (*drop)(void *), void *arg,
    int *ctl_out)
{
	struct policyd_opts o;
	pid_t pid;

	memset(&o, 0, sizeof(o));
	o.resolver.trust_anchor_file = cfg->trust_anchor_file;
	o.dane = cfg->dane;
	o.state_dir = cfg->state_dir;
	o.mta_sts = cfg->mta_sts;
	o.tlsrpt = cfg->tlsrpt;
	o.sts_ca_file = cfg->mta_sts_ca_file;
	o.sts_https_port = (uint16_t)cfg->mta_sts_port;
	for (size_t i = 0; i < cfg->resolvers.n && i < RESOLVER_MAX_FWD; i++)
		o.resolver.forwarders[o.resolver.nforwarders++] =
		    cfg->resolvers.item[i];
	pid = policyd_spawn(&o, drop, arg, cfg->log_stderr, ctl_out);
	if (pid < 0)
		log_msg(LOG_ERR, "policyd", "not started: %s", strerror(errno));
	return pid;
}

void
policyd_main(int ctl, const struct policyd_opts *opts)
{
	char err[512];

	/* The master's signal handlers and loop are not ours. */
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	memset(&pd, 0, sizeof(pd));
	pd.ctl = ctl;
	pd.loop = ev_loop_new(EVFLAG_AUTO);
	pd.cache = pd_cache_new(PD_CACHE_MAX);
	pd.learn = pdp_learn_new(PDP_LEARN_MAX);
	pd.dane = opts->dane;
	pd.mta_sts = opts->mta_sts;

	pd.timeout_ms = opts->resolver.timeout_ms ? opts->resolver.timeout_ms :
	    RESOLVER_TIMEOUT_MS;
	if (pd.loop == NULL || pd.cache == NULL || pd.learn == NULL) {
		log_msg(LOG_ERR, "policyd", "out of memory");
		_exit(1);
	}
	pd.res = resolver_new(pd.loop, &opts->resolver, err, sizeof(err));
	if (pd.res == NULL) {
		log_msg(LOG_ERR, "policyd", "resolver: %s", err);
		_exit(1);
	}
	if (opts->tlsrpt && opts->state_dir == NULL) {
		log_msg(LOG_ERR, "policyd", "tlsrpt: no state_dir: results "
		    "are not kept");
	} else if (opts->tlsrpt) {
		struct tlsrpt_opts to;

		memset(&to, 0, sizeof(to));
		to.state_dir = opts->state_dir;
		to.ca_file = opts->sts_ca_file;
		pd.tlsrpt = tlsrpt_open(&to, err, sizeof(err));
		if (pd.tlsrpt == NULL)
			log_msg(LOG_ERR, "policyd", "tlsrpt: %s: results are not "
			    "kept", err);
	}
	learn_db_open(opts->state_dir);
	pd.sts_wait_ms = opts->sts_wait_ms ? opts->sts_wait_ms : 5000;
	if (opts->mta_sts) {
		struct stsf_opts so;

		memset(&so, 0, sizeof(so));
		so.state_dir = opts->state_dir;
		so.ca_file = opts->sts_ca_file;
		so.https_port = opts->sts_https_port;
		pd.stsf = stsf_new(pd.loop, pd.res, &so, err, sizeof(err));
		if (pd.stsf == NULL)
			log_msg(LOG_ERR, "policyd", "MTA-STS: %s: no MTA-STS "
			    "policies", err);
	}
	ev_io_init(&pd.ctl_io, ctl_cb, ctl, EV_READ);
	ev_io_start(pd.loop, &pd.ctl_io);
	log_msg(LOG_INFO, "policyd", "started");
	ev_run(pd.loop, 0);

	/* The master is gone: tidy up (valgrind and LSan look). */
	while (pd.clients != NULL)
		client_close(pd.clients);
	while (pd.jobs != NULL)
		job_free(pd.jobs);   /* cancels their queries: before resolver_free */
	if (pd.stsf != NULL)
		stsf_free(pd.stsf);
	resolver_free(pd.res);   /* pending flights get no callback */
	while (pd.flights != NULL) {
		struct pd_flight *f = pd.flights;
		pd.flights = f->next;
		while (f->waiters != NULL) {
			struct pd_waiter *w = f->waiters;
			f->waiters = w->next;
			free(w);
		}
		free(f);
	}
	pd_cache_free(pd.cache);
	pdp_learn_on_drop(pd.learn, NULL, NULL);
	pdp_learn_free(pd.learn);
	learn_db_close();
	tlsrpt_close(pd.tlsrpt);
	ev_io_stop(pd.loop, &pd.ctl_io);
	ev_loop_destroy(pd.loop);
	close(ctl);
	log_msg(LOG_INFO, "policyd", "exiting (%llu questions asked, %llu "
	    "answers dropped, %llu policies computed, %llu reports)",
	    (unsigned long long)pd.asked, (unsigned long long)pd.dropped,
	    (unsigned long long)pd.policies, (unsigned long long)pd.reports);
	exit(0);
}
