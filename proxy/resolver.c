/*
 * resolver: libunbound in a libev loop, validating locally (resolver.h).
 *
 * libunbound runs its work in a thread (ub_ctx_async(ctx, 1)) and signals
 * finished queries on ub_fd(); our ev_io calls ub_process(), which runs the
 * result callbacks. libunbound's callback gets our query id, never a
 * pointer: a query cancelled or timed out is gone from our list, and a late
 * result for it finds nothing (the race dane.md warns about).
 */
#include "starttlsd/resolver.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <unbound.h>

#define RES_MAGIC 0x52534c56u   /* "RSLV" */

/*
 * One query. libunbound's callback gets this pointer, so it lives until
 * libunbound is done with it: freed when its result is processed, or right
 * away when ub_cancel() succeeds (libunbound then never calls back). If
 * ub_cancel() fails the result is on its way: the query stays as a zombie
 * (cb NULL) that ub_done frees silently.
 */
struct res_query {
	struct res_query *next;
	struct resolver *r;
	uint64_t id;
	int ub_id;
	res_cb cb;              /* NULL: a zombie */
	void *arg;
	ev_timer timer;
	char qname[256];
};

struct resolver {
	unsigned magic;
	struct ev_loop *loop;
	struct ub_ctx *ctx;
	ev_io io;
	struct res_query *queries;  /* live ones and zombies */
	size_t npending;            /* live ones */
	uint64_t next_id;
	double timeout;
};

static const uint8_t *const no_rdata[1] = { NULL };
static const size_t no_len[1] = { 0 };

static void
seterr(char *err, size_t errlen, const char *what, const char *arg, int ub)
{
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s%s%s: %s", what, arg ? " " : "",
		    arg ? arg : "", ub != 0 ? ub_strerror(ub) : strerror(errno));
}

static struct res_query **
link_of(struct resolver *r, const struct res_query *q)
{
	struct res_query **pp;

	for (pp = &r->queries; *pp != NULL; pp = &(*pp)->next)
		if (*pp == q)
			return pp;
	abort();   /* a query not on our list: a bug */
}

/* Unlink and free q. */
static void
query_free(struct resolver *r, struct res_query *q)
{
	*link_of(r, q) = q->next;
	ev_timer_stop(r->loop, &q->timer);
	if (q->cb != NULL)
		r->npending--;
	free(q);
}

/* Make q a zombie: no callback, freed when libunbound returns it. */
static void
query_zombie(struct resolver *r, struct res_query *q)
{
	ev_timer_stop(r->loop, &q->timer);
	if (q->cb != NULL)
		r->npending--;
	q->cb = NULL;
}

/* Call q's callback once with a, and forget q (which libunbound is done with). */
static void
finish(struct resolver *r, struct res_query *q, struct res_answer *a)
{
	char qname[sizeof(q->qname)];
	res_cb cb = q->cb;
	void *arg = q->arg;

	memcpy(qname, q->qname, sizeof(qname));
	a->qname = qname;
	query_free(r, q);
	if (cb != NULL)
		cb(arg, a);   /* may query, cancel or free r: nothing after */
}

/* libunbound's callback, from ub_process() in our thread. */
static void
ub_done(void *mydata, int err, struct ub_result *res)
{
	struct res_query *q = mydata;
	struct resolver *r = q->r;
	struct res_answer a;
	size_t n = 0, *lens = NULL;

	memset(&a, 0, sizeof(a));
	a.rcode = -1;
	a.rdata = no_rdata;
	a.rdlen = no_len;
	if (q->cb == NULL) {            /* cancelled or timed out */
		query_free(r, q);
		if (res != NULL)
			ub_resolve_free(res);
		return;
	}
	if (err != 0 || res == NULL) {
		a.status = RES_ERROR;
		a.why = err != 0 ? ub_strerror(err) : "no result";
		finish(r, q, &a);
		if (res != NULL)
			ub_resolve_free(res);
		return;
	}
	a.rcode = res->rcode;
	a.nxdomain = res->nxdomain != 0;
	a.ttl = res->ttl > 0 ? (uint32_t)res->ttl : 0;
	a.canonname = res->canonname;
	if (res->bogus) {
		a.status = RES_BOGUS;   /* and never the data that failed */
		a.why = res->why_bogus != NULL ? res->why_bogus : "bogus";
	} else if (res->rcode != 0 && res->rcode != 3) {
		a.status = RES_ERROR;
		a.why = res->rcode == 2 ? "SERVFAIL" : "error rcode";
	} else {
		a.status = res->secure ? RES_SECURE : RES_INSECURE;
		if (res->havedata && res->data != NULL)
			while (res->data[n] != NULL)
				n++;
	}
	if (n > 0) {
		/* ub_result's lengths are int[]: ours are size_t. */
		lens = calloc(n, sizeof(*lens));
		if (lens == NULL) {
			a.status = RES_ERROR;
			a.why = "out of memory";
			n = 0;
		} else {
			for (size_t i = 0; i < n; i++)
				lens[i] = res->len[i] > 0 ? (size_t)res->len[i] : 0;
			a.rdata = (const uint8_t *const *)res->data;
			a.rdlen = lens;
		}
	}
	a.nrr = n;
	finish(r, q, &a);
	free(lens);
	ub_resolve_free(res);
}

static void
on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
	struct resolver *r = w->data;
	int rc;

	if (r->magic != RES_MAGIC)
		abort();
	rc = ub_process(r->ctx);   /* runs ub_done for each finished query */
	if (rc != 0)
		fprintf(stderr, "resolver: ub_process: %s\n", ub_strerror(rc));
}

static void
on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct res_query *q = w->data;
	struct resolver *r = q->r;
	struct res_answer a;

	memset(&a, 0, sizeof(a));
	a.status = RES_ERROR;
	a.rcode = -1;
	a.why = "timeout";
	a.rdata = no_rdata;
	a.rdlen = no_len;
	if (ub_cancel(r->ctx, q->ub_id) == 0) {
		finish(r, q, &a);
		return;
	}
	/* The result is on its way: answer now, drop it when it comes. */
	{
		res_cb cb = q->cb;
		void *arg = q->arg;
		char qname[sizeof(q->qname)];

		memcpy(qname, q->qname, sizeof(qname));
		a.qname = qname;
		query_zombie(r, q);
		cb(arg, &a);
	}
}

/*
 * The anchor file must hold at least one DS or DNSKEY record: an empty or
 * wrong file would leave libunbound with no anchor, and every answer would
 * look "insecure", a silent downgrade.
 */
static int
ta_check(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char line[4096];
	bool found = false;

	if (f == NULL) {
		seterr(err, errlen, "trust_anchor_file", path, 0);
		return -1;
	}
	while (!found && fgets(line, sizeof(line), f) != NULL) {
		char *save = NULL, *tok;

		for (tok = strtok_r(line, " \t\r\n", &save); tok != NULL;
		    tok = strtok_r(NULL, " \t\r\n", &save)) {
			if (tok[0] == ';')
				break;
			if (strcmp(tok, "DS") == 0 || strcmp(tok, "DNSKEY") == 0) {
				found = true;
				break;
			}
		}
	}
	fclose(f);
	if (!found) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "trust_anchor_file %s: no DS or "
			    "DNSKEY record", path);
		return -1;
	}
	return 0;
}

struct resolver *
resolver_new(struct ev_loop *loop, const struct resolver_opts *opts,
    char *err, size_t errlen)
{
	struct resolver *r = calloc(1, sizeof(*r));
	const char *ta;
	int rc, fd;

	if (r == NULL) {
		seterr(err, errlen, "resolver", NULL, 0);
		return NULL;
	}
	r->magic = RES_MAGIC;
	r->loop = loop;
	r->next_id = 1;
	r->timeout = (opts->timeout_ms ? opts->timeout_ms : RESOLVER_TIMEOUT_MS) /
	    1000.0;
	r->ctx = ub_ctx_create();
	if (r->ctx == NULL) {
		seterr(err, errlen, "ub_ctx_create", NULL, 0);
		free(r);
		return NULL;
	}
	/* Quiet unless something is wrong; libunbound writes to stderr. */
	if ((rc = ub_ctx_set_option(r->ctx, "verbosity:", "0")) != 0 ||
	    (rc = ub_ctx_set_option(r->ctx, "val-log-level:", "2")) != 0 ||
	    /* a local validating cache (127.0.0.1) is the recommended forwarder */
	    (rc = ub_ctx_set_option(r->ctx, "do-not-query-localhost:", "no")) != 0) {
		seterr(err, errlen, "ub_ctx_set_option", NULL, rc);
		goto fail;
	}
	ta = opts->trust_anchor_file ? opts->trust_anchor_file :
	    RESOLVER_DEFAULT_TA;
	if (ta_check(ta, err, errlen) != 0)
		goto fail;
	if ((rc = ub_ctx_add_ta_file(r->ctx, ta)) != 0) {
		seterr(err, errlen, "trust_anchor_file", ta, rc);
		goto fail;
	}
	if (opts->nforwarders > 0) {
		for (size_t i = 0; i < opts->nforwarders && i < RESOLVER_MAX_FWD; i++)
			if ((rc = ub_ctx_set_fwd(r->ctx, opts->forwarders[i])) != 0) {
				seterr(err, errlen, "resolvers", opts->forwarders[i], rc);
				goto fail;
			}
	} else if ((rc = ub_ctx_resolvconf(r->ctx, opts->resolv_conf)) != 0) {
		seterr(err, errlen, "resolv.conf", opts->resolv_conf ?
		    opts->resolv_conf : "/etc/resolv.conf", rc);
		goto fail;
	}
	if ((rc = ub_ctx_async(r->ctx, 1)) != 0) {
		seterr(err, errlen, "ub_ctx_async", NULL, rc);
		goto fail;
	}
	/*
	 * libunbound reads the anchor and sets up its modules at the first
	 * query; removing a zone that is not there makes it do so now, so a
	 * bad anchor fails here and not on every lookup.
	 */
	if ((rc = ub_ctx_zone_remove(r->ctx, "starttlsd-init.invalid.")) != 0) {
		seterr(err, errlen, "trust_anchor_file", ta, rc);
		goto fail;
	}
	fd = ub_fd(r->ctx);
	if (fd < 0) {
		seterr(err, errlen, "ub_fd", NULL, 0);
		goto fail;
	}
	ev_io_init(&r->io, on_readable, fd, EV_READ);
	r->io.data = r;
	ev_io_start(loop, &r->io);
	return r;
fail:
	ub_ctx_delete(r->ctx);
	free(r);
	return NULL;
}

void
resolver_free(struct resolver *r)
{
	if (r == NULL)
		return;
	ev_io_stop(r->loop, &r->io);
	/* Stops libunbound's thread; no callback runs after this. */
	ub_ctx_delete(r->ctx);
	while (r->queries != NULL) {
		r->queries->cb = NULL;
		query_free(r, r->queries);
	}
	r->magic = 0;
	free(r);
}

uint64_t
resolver_query(struct resolver *r, const char *name, int type, res_cb cb,
    void *arg)
{
	struct res_query *q;
	int rc;

	if (name == NULL || strlen(name) >= sizeof(q->qname) || name[0] == '\0')
		return 0;
	q = calloc(1, sizeof(*q));
	if (q == NULL)
		return 0;
	q->r = r;
	q->id = r->next_id++;
	q->cb = cb;
	q->arg = arg;
	snprintf(q->qname, sizeof(q->qname), "%s", name);
	rc = ub_resolve_async(r->ctx, q->qname, type, 1, q, ub_done, &q->ub_id);
	if (rc != 0) {
		fprintf(stderr, "resolver: %s: %s\n", name, ub_strerror(rc));
		free(q);
		return 0;
	}
	ev_timer_init(&q->timer, on_timeout, r->timeout, 0.);
	q->timer.data = q;
	ev_timer_start(r->loop, &q->timer);
	q->next = r->queries;
	r->queries = q;
	r->npending++;
	return q->id;
}

uint64_t
resolver_tlsa(struct resolver *r, const char *host, unsigned port, res_cb cb,
    void *arg)
{
	char name[300];
	int n = snprintf(name, sizeof(name), "_%u._tcp.%s", port, host);

	if (n < 0 || (size_t)n >= sizeof(name))
		return 0;
	return resolver_query(r, name, RES_T_TLSA, cb, arg);
}

void
resolver_cancel(struct resolver *r, uint64_t id)
{
	struct res_query *q;

	for (q = r->queries; q != NULL; q = q->next)
		if (q->id == id && q->cb != NULL)
			break;
	if (q == NULL)
		return;
	if (ub_cancel(r->ctx, q->ub_id) == 0) {
		q->cb = NULL;
		r->npending--;
		query_free(r, q);   /* libunbound will not call back */
	} else {
		query_zombie(r, q); /* the result is on its way */
	}
}

size_t
resolver_pending(const struct resolver *r)
{
	return r->npending;
}
