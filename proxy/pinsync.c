/*
 * pinsync: the fleet's sync process (hiredis, its libev adapter). The
 * contract and the Redis layout are in pinsync.h; the reasons in
 * docs/policy.md ("A fleet of gateways").
 *
 * One round every pin_sync_interval, never two at once:
 *   TIME                      the Redis clock, for scores (no clock skew
 *                             between gateways matters for what is pulled)
 *   push: per forget          DEL P pin:K, HSET P pin:K !forget "WHEN GW",
 *                             EXPIRE, ZADD P changes NOW K
 *         per own record      HSET P pin:K GW VALUE, EXPIREAT ... NX and
 *                             EXPIREAT ... GT (the latest sighting wins),
 *                             ZADD P changes NOW K
 *   pull: ZRANGEBYSCORE P changes FROM +inf LIMIT OFF PAGE, then HGETALL of
 *         each key, merged into LMDB in one transaction per page.
 * After every (re)connection the whole own set is published again and the
 * whole change set pulled: a Redis that lost its data is refilled, a
 * gateway that was cut off catches up. A round without an answer within
 * PS_ROUND_TIMEOUT drops the connection (a slow Redis is a down Redis).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libev.h>

#include "starttlsd/hash.h"
#include "starttlsd/log.h"
#include "starttlsd/metrics.h"
#include "starttlsd/pinsync.h"

#define PS_BATCH 1000            /* own records published per round */
#define PS_PAGE 1000             /* changed keys pulled per page */
#define PS_FIELDS_MAX 32         /* gateways (fields) read per key */
#define PS_ROUND_TIMEOUT 5.0     /* seconds for a round's answers */
#define PS_CONNECT_TIMEOUT 3.0
#define PS_BACKOFF_MAX 5.0
#define PS_SLACK_MS 5000         /* pulls overlap: writes still in flight */
#define PS_SKIP_LOG_MAX 20       /* skip lines a minute, then a count */
#define PS_SKIP_SEEN 64          /* recently logged items, not repeated... */
#define PS_SKIP_AGAIN 600.0      /* ...for this long */
#define PS_PURGE_EVERY 3600.0    /* expired own records dropped this often */
#define PS_FORGET_FIELD "!forget"
#define PS_EXIT_CONFIG 3         /* the sync process's "do not restart me" */

/* ---- URL, names, values (pure) ---------------------------------------------------- */

bool
pinsync_wanted(const struct config *c)
{
	return c->pin_store != NULL && strcmp(c->pin_store, "lmdb") != 0;
}

bool
pinsync_gw_valid(const char *s, size_t len)
{
	if (len == 0 || len >= PIN_GW_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* Copy n bytes of s into out (cap), NUL-terminated; -1 if too long. */
static int
copy_n(char *out, size_t cap, const char *s, size_t n)
{
	if (n >= cap)
		return -1;
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

static int
parse_uint(const char *s, size_t n, unsigned max, unsigned *out)
{
	unsigned long v = 0;

	if (n == 0 || n > 10)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > max)
		return -1;
	*out = (unsigned)v;
	return 0;
}

int
pinsync_url_parse(const char *s, struct pinsync_url *out, char *err,
    size_t errlen)
{
	const char *p, *at, *end, *hp;
	size_t n;

	memset(out, 0, sizeof(*out));
	out->port = 6379;
	if (s == NULL)
		goto bad;
	if (strncmp(s, "redis://", 8) == 0)
		p = s + 8;
	else if (strncmp(s, "redis+unix://", 13) == 0) {
		p = s + 13;
		out->unix_socket = true;
	} else
		goto bad;
	/* userinfo: up to the last '@' before the path (or the end) */
	end = out->unix_socket ? strchr(p, '/') : p + strcspn(p, "/");
	if (end == NULL)
		goto bad;
	at = NULL;
	for (const char *q = p; q < end; q++)
		if (*q == '@')
			at = q;
	if (at != NULL) {
		const char *colon = memchr(p, ':', (size_t)(at - p));

		if (colon != NULL) {
			if (copy_n(out->user, sizeof(out->user), p,
			    (size_t)(colon - p)) < 0 ||
			    copy_n(out->password, sizeof(out->password),
			    colon + 1, (size_t)(at - colon - 1)) < 0)
				goto bad;
		} else if (copy_n(out->user, sizeof(out->user), p,
		    (size_t)(at - p)) < 0)
			goto bad;
		p = at + 1;
	}
	if (out->unix_socket) {
		const char *q;

		if (p != end)  /* nothing between '@' (or "//") and the path */
			goto bad;
		q = strchr(p, '?');
		n = q != NULL ? (size_t)(q - p) : strlen(p);
		if (n < 2 || copy_n(out->path, sizeof(out->path), p, n) < 0)
			goto bad;
		if (q != NULL && (strncmp(q, "?db=", 4) != 0 ||
		    parse_uint(q + 4, strlen(q + 4), 15, &out->db) < 0))
			goto bad;
		return 0;
	}
	/* host[:port] up to end */
	hp = p;
	if (*hp == '[') {
		const char *rb = memchr(hp, ']', (size_t)(end - hp));

		if (rb == NULL || copy_n(out->host, sizeof(out->host), hp + 1,
		    (size_t)(rb - hp - 1)) < 0)
			goto bad;
		p = rb + 1;
	} else {
		const char *colon = memchr(hp, ':', (size_t)(end - hp));

		n = (size_t)((colon != NULL ? colon : end) - hp);
		if (copy_n(out->host, sizeof(out->host), hp, n) < 0)
			goto bad;
		p = hp + n;
	}
	if (out->host[0] == '\0')
		goto bad;
	if (p < end) {
		if (*p != ':' || parse_uint(p + 1, (size_t)(end - p - 1), 65535,
		    &out->port) < 0 || out->port == 0)
			goto bad;
	}
	if (*end == '/' && end[1] != '\0' &&
	    parse_uint(end + 1, strlen(end + 1), 15, &out->db) < 0)
		goto bad;
	return 0;
bad:
	snprintf(err, errlen, "pin_store: %s: expected lmdb, "
	    "redis://[user[:password]@]host[:port][/db] or "
	    "redis+unix://[user[:password]@]/path/to/socket[?db=N]",
	    s != NULL ? s : "");
	return -1;
}

int
pinsync_value_format(const struct pin *p, char *out, size_t cap)
{
	char spki[65] = "-";
	int n;

	if (p->has_spki)
		for (size_t i = 0; i < sizeof(p->spki); i++)
			snprintf(spki + 2 * i, 3, "%02x", p->spki[i]);
	n = snprintf(out, cap, "1 %" PRId64 " %" PRId64 " %" PRIu64 " %u %s %s",
	    p->first_seen, p->last_seen, p->count, (unsigned)p->tls_version,
	    spki, p->via[0] != '\0' ? p->via : "-");
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* The next space-separated word of s[*i..n) into w (cap); -1 if none/long. */
static int
word(const char *s, size_t n, size_t *i, char *w, size_t cap)
{
	size_t start = *i;

	while (*i < n && s[*i] != ' ')
		(*i)++;
	if (*i == start || copy_n(w, cap, s + start, *i - start) < 0)
		return -1;
	if (*i < n)
		(*i)++;  /* the one space */
	return 0;
}

static int
parse_i64(const char *w, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	if (w[0] == '\0' || w[0] == '+' || w[0] == ' ')
		return -1;
	v = strtoll(w, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

int
pinsync_value_parse(const char *key, const char *val, size_t len,
    struct pin *out, const char **why)
{
	char w[80];
	int64_t v;
	size_t i = 0;
	const char *field;

	memset(out, 0, sizeof(*out));
	*why = "oversized";
	if (len > PINSYNC_VAL_MAX)
		return -1;
	*why = "not a pin record";
	if (memchr(val, '\0', len) != NULL || strlen(key) >= PIN_KEY_MAX)
		return -1;
	snprintf(out->key, sizeof(out->key), "%s", key);
	out->kind = strncmp(key, "domain:", 7) == 0 ? PIN_DOMAIN : PIN_DST;
	if (word(val, len, &i, w, sizeof(w)) < 0 || strcmp(w, "1") != 0)
		return -1;
	if (word(val, len, &i, w, sizeof(w)) < 0 || parse_i64(w, &out->first_seen) < 0)
		return -1;
	if (word(val, len, &i, w, sizeof(w)) < 0 || parse_i64(w, &out->last_seen) < 0)
		return -1;
	if (word(val, len, &i, w, sizeof(w)) < 0 || parse_i64(w, &v) < 0 || v < 0)
		return -1;
	out->count = (uint64_t)v;
	if (word(val, len, &i, w, sizeof(w)) < 0 || parse_i64(w, &v) < 0 ||
	    v < 0 || v > 0xffff)
		return -1;
	out->tls_version = (uint16_t)v;
	if (word(val, len, &i, w, sizeof(w)) < 0)
		return -1;
	if (strcmp(w, "-") != 0) {
		if (strlen(w) != 64)
			return -1;
		for (size_t k = 0; k < 32; k++) {
			unsigned b;

			if (sscanf(w + 2 * k, "%2x", &b) != 1 ||
			    !strchr("0123456789abcdef", w[2 * k]) ||
			    !strchr("0123456789abcdef", w[2 * k + 1]))
				return -1;
			out->spki[k] = (uint8_t)b;
		}
		out->has_spki = true;
	}
	if (word(val, len, &i, w, sizeof(w)) < 0 || i != len)
		return -1;
	if (strcmp(w, "-") != 0 && copy_n(out->via, sizeof(out->via), w,
	    strlen(w)) < 0)
		return -1;
	if ((*why = pin_check(out, &field)) != NULL)
		return -1;
	return 0;
}

/* ---- the sync process ---------------------------------------------------------------- */

enum ps_state { PS_DOWN, PS_CONNECTING, PS_HANDSHAKE, PS_READY };

struct pull_key {
	char key[PIN_KEY_MAX];
	int64_t forgot_at;
	size_t first, n;         /* its fields in sync.rem */
	bool ok;                 /* read and usable */
};

struct forget_item {
	char key[PIN_KEY_MAX];
	int64_t when;
};

struct sync {
	struct ev_loop *loop;
	struct pin_store *ps;
	struct pinsync_url url;
	const char *prefix;
	const char *gw;
	int64_t expire;          /* seconds, 0: never */
	double interval;

	redisAsyncContext *ac;
	enum ps_state state;
	bool dropping;           /* inside our own redisAsyncFree */
	bool busy;               /* a round in flight */
	bool more;               /* the last push was a full batch */
	bool down_logged;        /* "unreachable" said, "back" not yet */
	bool confirmed;          /* this connection completed a round */
	bool ever_up;
	size_t marked;           /* own records marked at connection */
	char drop_why[200];      /* why we hung up, for the down line */
	double backoff;
	ev_timer tick, deadline, retry;
	ev_io ctl;

	int64_t now_ms;          /* this round's Redis time */
	int64_t pull_from;       /* score; INT64_MIN: everything */
	size_t pull_off;
	size_t pending;          /* replies outstanding in this phase */
	bool failed;             /* this phase lost its connection */

	struct pin *push;        /* PS_BATCH */
	size_t npush;
	bool *push_ok;
	struct forget_item *forgets;  /* PS_BATCH */
	size_t nforgets;
	bool *forget_ok;

	struct pull_key *pull;   /* PS_PAGE */
	size_t npull, page_len;
	struct pin_remote *rem;  /* PS_PAGE * PS_FIELDS_MAX, grown as needed */
	size_t nrem, caprem;

	ev_tstamp skip_window;   /* start of this minute of skip lines */
	unsigned skip_lines;     /* logged in it */
	uint64_t skip_quiet;     /* not logged in it (over the cap) */
	struct { uint32_t h; ev_tstamp at; } seen[PS_SKIP_SEEN];
	size_t seen_next;
	ev_tstamp purged;        /* last purge of expired own records */
	uint64_t pushed, pulled, rounds;
};

static struct sync S;

static void sync_down(struct sync *s, const char *why);
static void confirm(struct sync *s);
static void round_start(struct sync *s);
static void pull_page(struct sync *s);

/*
 * One garbage item: never trusted, logged once per PS_SKIP_AGAIN, at most
 * PS_SKIP_LOG_MAX lines a minute (then one line with the count).
 */
static void
skip(struct sync *s, const char *rkey, size_t rlen, const char *why)
{
	struct logline l;
	ev_tstamp now = ev_now(s->loop);
	uint32_t h = fnv1a(fnv1a(FNV1A_INIT, rkey, rlen), why, strlen(why));

	metrics_pinsync(M_SYNC_SKIPPED, 1);
	/* The same garbage is met every round: said once per PS_SKIP_AGAIN. */
	for (size_t i = 0; i < PS_SKIP_SEEN; i++)
		if (s->seen[i].h == h && s->seen[i].at > 0 &&
		    now - s->seen[i].at < PS_SKIP_AGAIN)
			return;
	if (now - s->skip_window >= 60.0) {
		if (s->skip_quiet > 0) {
			log_begin(&l, "pinstore");
			log_str(&l, "action", "skipped");
			log_u64(&l, "count", s->skip_quiet);
			log_str(&l, "why", "more garbage under the prefix than "
			    "logged in the last minute");
			log_emit(&l, LOG_WARNING);
		}
		s->skip_window = now;
		s->skip_lines = 0;
		s->skip_quiet = 0;
	}
	if (s->skip_lines >= PS_SKIP_LOG_MAX) {
		s->skip_quiet++;
		return;
	}
	s->skip_lines++;
	s->seen[s->seen_next].h = h;
	s->seen[s->seen_next].at = now;
	s->seen_next = (s->seen_next + 1) % PS_SKIP_SEEN;
	log_begin(&l, "pinstore");
	log_str(&l, "action", "skipped");
	log_bytes(&l, "redis_key", rkey, rlen > 200 ? 200 : rlen);
	log_str(&l, "why", why);
	log_emit(&l, LOG_WARNING);
}

static void
rkey(const struct sync *s, const char *pinkey, char *out, size_t cap)
{
	snprintf(out, cap, "%spin:%s", s->prefix, pinkey);
}

static void
deadline_start(struct sync *s, double secs)
{
	ev_timer_stop(s->loop, &s->deadline);
	ev_timer_set(&s->deadline, secs, 0.);
	ev_timer_start(s->loop, &s->deadline);
}

static void
round_end(struct sync *s)
{
	if (!s->confirmed && s->state == PS_READY && !s->failed)
		confirm(s);
	s->busy = false;
	ev_timer_stop(s->loop, &s->deadline);
	s->rounds++;
	if (ev_now(s->loop) - s->purged >= PS_PURGE_EVERY) {
		size_t n = 0;
		char err[256];

		s->purged = ev_now(s->loop);
		if (pin_fleet_purge(s->ps, (int64_t)time(NULL), &n, err,
		    sizeof(err)) < 0)
			log_msg(LOG_ERR, "pinstore", "fleet: %s", err);
	}
	/* A backlog (catching up): the next round at once. */
	if (s->more && s->state == PS_READY) {
		ev_timer_stop(s->loop, &s->tick);
		ev_timer_set(&s->tick, 0., s->interval);
		ev_timer_start(s->loop, &s->tick);
	}
}

/* ---- pull ---------------------------------------------------------------------- */

static bool
reply_dead(struct sync *s, const redisAsyncContext *ac, const redisReply *r)
{
	if (r == NULL || ac != s->ac || s->failed) {
		s->failed = true;
		return true;
	}
	return false;
}

/* Hang up from inside a callback; the down line gives why. */
static void
give_up(struct sync *s, redisAsyncContext *ac, const char *why)
{
	snprintf(s->drop_why, sizeof(s->drop_why), "%s", why);
	s->failed = true;
	redisAsyncDisconnect(ac);  /* disconnect_cb follows */
}

static void
apply_page(struct sync *s)
{
	char err[256];
	int64_t now = (int64_t)time(NULL);
	size_t applied = 0;
	int rc = 0;

	if (pin_fleet_begin(s->ps, err, sizeof(err)) < 0) {
		log_msg(LOG_ERR, "pinstore", "fleet: %s", err);
		return;
	}
	for (size_t i = 0; i < s->npull && rc == 0; i++) {
		const struct pull_key *k = &s->pull[i];

		if (!k->ok)
			continue;
		rc = pin_fleet_apply(s->ps, k->key, k->forgot_at, s->rem + k->first,
		    k->n, now);
		applied++;
	}
	if (rc != 0) {
		pin_fleet_end(s->ps, false, err, sizeof(err));
		log_msg(LOG_ERR, "pinstore", "fleet: merging pulled pins: %s",
		    strerror(rc > 0 && rc < 200 ? rc : EIO));
		return;
	}
	if (pin_fleet_end(s->ps, true, err, sizeof(err)) < 0) {
		log_msg(LOG_ERR, "pinstore", "fleet: %s", err);
		return;
	}
	s->pulled += applied;
	metrics_pinsync(M_SYNC_MERGED, applied);
}

static int
rem_add(struct sync *s, struct pin_remote **out)
{
	if (s->nrem == s->caprem) {
		size_t cap = s->caprem ? 2 * s->caprem : 1024;
		struct pin_remote *n;

		if (cap > (size_t)PS_PAGE * PS_FIELDS_MAX ||
		    (n = realloc(s->rem, cap * sizeof(*n))) == NULL)
			return -1;
		s->rem = n;
		s->caprem = cap;
	}
	*out = &s->rem[s->nrem++];
	return 0;
}

/* One key's hash: every gateway's record, and the latest forget. */
static void
hgetall_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct sync *s = ac->data;
	redisReply *r = reply;
	struct pull_key *k = &s->pull[(size_t)(uintptr_t)priv];
	char rk[PIN_KEY_MAX + 160];

	if (reply_dead(s, ac, r))
		goto out;
	rkey(s, k->key, rk, sizeof(rk));
	if (r->type == REDIS_REPLY_ERROR) {
		skip(s, rk, strlen(rk), "not a hash (wrong type)");
		goto out;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
		skip(s, rk, strlen(rk), "unexpected reply");
		goto out;
	}
	k->first = s->nrem;
	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		const redisReply *f = r->element[i], *v = r->element[i + 1];
		struct pin_remote *pr;
		const char *why;

		if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
			skip(s, rk, strlen(rk), "field or value not a string");
			continue;
		}
		if (f->len == strlen(PS_FORGET_FIELD) &&
		    memcmp(f->str, PS_FORGET_FIELD, f->len) == 0) {
			char w[32];
			size_t j = 0;
			int64_t when;

			if (v->len > 100 || word(v->str, v->len, &j, w, sizeof(w)) < 0 ||
			    parse_i64(w, &when) < 0 || when <= 0 ||
			    when > PIN_TIME_MAX) {
				skip(s, rk, strlen(rk), "bad !forget value");
				continue;
			}
			if (when > k->forgot_at)
				k->forgot_at = when;
			continue;
		}
		if (!pinsync_gw_valid(f->str, f->len)) {
			skip(s, rk, strlen(rk), "field is not a gateway name");
			continue;
		}
		if (k->n >= PS_FIELDS_MAX) {
			skip(s, rk, strlen(rk), "too many fields");
			break;
		}
		if (rem_add(s, &pr) < 0) {
			skip(s, rk, strlen(rk), "out of memory");
			break;
		}
		if (pinsync_value_parse(k->key, v->str, v->len, &pr->p, &why) < 0) {
			char msg[96];

			s->nrem--;
			snprintf(msg, sizeof(msg), "value of %.*s: %s",
			    (int)f->len, f->str, why);
			skip(s, rk, strlen(rk), msg);
			continue;
		}
		memcpy(pr->gw, f->str, f->len);
		pr->gw[f->len] = '\0';
		k->n++;
	}
	k->ok = true;
out:
	if (--s->pending > 0 || s->failed)
		return;
	apply_page(s);
	if (s->page_len == PS_PAGE) {
		s->pull_off += PS_PAGE;
		pull_page(s);
		return;
	}
	s->pull_from = s->now_ms - PS_SLACK_MS;
	s->pull_off = 0;
	round_end(s);
}

static void
zrange_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct sync *s = ac->data;
	redisReply *r = reply;
	char ck[200];

	(void)priv;
	if (reply_dead(s, ac, r))
		return;
	snprintf(ck, sizeof(ck), "%schanges", s->prefix);
	if (r->type == REDIS_REPLY_ERROR && (r->str == NULL ||
	    strncmp(r->str, "WRONGTYPE", 9) != 0)) {
		/* NOPERM and the like: the connection is of no use. */
		give_up(s, ac, r->str != NULL ? r->str : "error reply");
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY) {
		skip(s, ck, strlen(ck), r->type == REDIS_REPLY_ERROR ?
		    "not a sorted set (wrong type)" : "unexpected reply");
		round_end(s);
		return;
	}
	s->page_len = r->elements;
	s->npull = 0;
	s->nrem = 0;
	for (size_t i = 0; i < r->elements && i < PS_PAGE; i++) {
		const redisReply *m = r->element[i];
		struct pull_key *k;
		char canon[PIN_KEY_MAX], rk[PIN_KEY_MAX + 160];

		if (m->type != REDIS_REPLY_STRING || m->len == 0 ||
		    m->len >= PIN_KEY_MAX || memchr(m->str, '\0', m->len) != NULL) {
			skip(s, ck, strlen(ck), "member is not a pin key");
			continue;
		}
		if ((strncmp(m->str, "ip:", 3) != 0 &&
		    strncmp(m->str, "domain:", 7) != 0) ||
		    pin_key_parse(m->str, canon, sizeof(canon)) < 0 ||
		    strlen(canon) != m->len || memcmp(canon, m->str, m->len) != 0) {
			char msg[PIN_KEY_MAX + 40];

			snprintf(msg, sizeof(msg), "member %.*s is not a canonical "
			    "pin key", (int)(m->len > 100 ? 100 : m->len), m->str);
			skip(s, ck, strlen(ck), msg);
			continue;
		}
		k = &s->pull[s->npull++];
		memset(k, 0, sizeof(*k));
		memcpy(k->key, canon, strlen(canon) + 1);
		rkey(s, k->key, rk, sizeof(rk));
		redisAsyncCommand(ac, hgetall_cb, (void *)(uintptr_t)(s->npull - 1),
		    "HGETALL %s", rk);
	}
	s->pending = s->npull;
	if (s->npull > 0)
		return;
	/* A page of garbage only: go on with the next one, or end. */
	if (s->page_len == PS_PAGE) {
		s->pull_off += PS_PAGE;
		pull_page(s);
		return;
	}
	s->pull_from = s->now_ms - PS_SLACK_MS;
	s->pull_off = 0;
	round_end(s);
}

static void
pull_page(struct sync *s)
{
	char ck[200], from[32], off[32], lim[32];

	snprintf(ck, sizeof(ck), "%schanges", s->prefix);
	if (s->pull_from == INT64_MIN)
		snprintf(from, sizeof(from), "-inf");
	else
		snprintf(from, sizeof(from), "%" PRId64, s->pull_from);
	snprintf(off, sizeof(off), "%zu", s->pull_off);
	snprintf(lim, sizeof(lim), "%d", PS_PAGE);
	s->failed = false;
	deadline_start(s, PS_ROUND_TIMEOUT);
	redisAsyncCommand(s->ac, zrange_cb, NULL,
	    "ZRANGEBYSCORE %s %s +inf LIMIT %s %s", ck, from, off, lim);
}

/* ---- push ---------------------------------------------------------------------- */

static int
collect_own(const struct pin *own, void *arg)
{
	struct sync *s = arg;

	s->push[s->npush++] = *own;
	return s->npush == PS_BATCH;
}

static int
collect_forget(const char *key, int64_t when, void *arg)
{
	struct sync *s = arg;

	snprintf(s->forgets[s->nforgets].key, PIN_KEY_MAX, "%s", key);
	s->forgets[s->nforgets].when = when;
	s->nforgets++;
	return s->nforgets == PS_BATCH;
}

/* The reply to the last command of one item: its fate. */
static void
push_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct sync *s = ac->data;
	redisReply *r = reply;
	size_t i = (size_t)(uintptr_t)priv;
	bool is_forget = i >= PS_BATCH;
	char err[256];
	size_t done = 0;

	if (reply_dead(s, ac, r)) {
		s->pending--;
		return;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		/* e.g. WRONGTYPE: garbage where our key should be. */
		char rk[PIN_KEY_MAX + 160];

		rkey(s, is_forget ? s->forgets[i - PS_BATCH].key : s->push[i].key,
		    rk, sizeof(rk));
		skip(s, rk, strlen(rk), r->str != NULL ? r->str : "error reply");
		if (is_forget)
			s->forget_ok[i - PS_BATCH] = false;
		else
			s->push_ok[i] = false;
	}
	if (--s->pending > 0)
		return;
	/* All answered: what went through is no longer pending here. */
	for (size_t k = 0; k < s->npush; k++)
		if (s->push_ok[k])
			s->push[done++] = s->push[k];
	if (done > 0 && pin_fleet_published(s->ps, s->push, done, err,
	    sizeof(err)) < 0)
		log_msg(LOG_ERR, "pinstore", "fleet: %s", err);
	s->pushed += done;
	metrics_pinsync(M_SYNC_PUBLISHED, done);
	for (size_t k = 0; k < s->nforgets; k++)
		if (s->forget_ok[k] && pin_fleet_forget_told(s->ps,
		    s->forgets[k].key, s->forgets[k].when, err, sizeof(err)) < 0)
			log_msg(LOG_ERR, "pinstore", "fleet: %s", err);
	s->more = s->npush == PS_BATCH || s->nforgets == PS_BATCH;
	s->pull_off = 0;
	pull_page(s);
}

/* Every command of an item but its last: errors are seen at the last. */
static void
ignore_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct sync *s = ac->data;
	redisReply *r = reply;
	size_t i = (size_t)(uintptr_t)priv;

	if (r == NULL || ac != s->ac)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		if (i >= PS_BATCH)
			s->forget_ok[i - PS_BATCH] = false;
		else
			s->push_ok[i] = false;
	}
}

static void
push_send(struct sync *s)
{
	char rk[PIN_KEY_MAX + 160], ck[200], score[32], val[PINSYNC_VAL_MAX + 1];
	char exp[32], fval[PIN_GW_MAX + 32];
	char err[256];

	s->npush = s->nforgets = 0;
	if (pin_fleet_forgets(s->ps, PS_BATCH, collect_forget, s, err,
	    sizeof(err)) < 0 ||
	    pin_fleet_pending(s->ps, PS_BATCH, collect_own, s, err,
	    sizeof(err)) < 0)
		log_msg(LOG_ERR, "pinstore", "fleet: %s", err);
	snprintf(ck, sizeof(ck), "%schanges", s->prefix);
	snprintf(score, sizeof(score), "%" PRId64, s->now_ms);
	s->pending = 0;
	s->failed = false;
	deadline_start(s, PS_ROUND_TIMEOUT);
	for (size_t i = 0; i < s->nforgets; i++) {
		const struct forget_item *f = &s->forgets[i];
		void *priv = (void *)(uintptr_t)(PS_BATCH + i);

		s->forget_ok[i] = true;
		rkey(s, f->key, rk, sizeof(rk));
		snprintf(fval, sizeof(fval), "%" PRId64 " %s", f->when, s->gw);
		redisAsyncCommand(s->ac, ignore_cb, priv, "DEL %s", rk);
		redisAsyncCommand(s->ac, ignore_cb, priv, "HSET %s %s %s", rk,
		    PS_FORGET_FIELD, fval);
		if (s->expire > 0) {
			snprintf(exp, sizeof(exp), "%" PRId64, s->expire);
			redisAsyncCommand(s->ac, ignore_cb, priv, "EXPIRE %s %s",
			    rk, exp);
		}
		redisAsyncCommand(s->ac, push_cb, priv, "ZADD %s %s %s", ck,
		    score, f->key);
		s->pending++;
	}
	for (size_t i = 0; i < s->npush; i++) {
		const struct pin *p = &s->push[i];
		void *priv = (void *)(uintptr_t)i;

		s->push_ok[i] = pinsync_value_format(p, val, sizeof(val)) == 0;
		if (!s->push_ok[i])
			continue;
		rkey(s, p->key, rk, sizeof(rk));
		redisAsyncCommand(s->ac, ignore_cb, priv, "HSET %s %s %s", rk,
		    s->gw, val);
		if (s->expire > 0) {
			/* The hash lives pin_expire past the fleet's latest sighting. */
			snprintf(exp, sizeof(exp), "%" PRId64, p->last_seen + s->expire);
			redisAsyncCommand(s->ac, ignore_cb, priv,
			    "EXPIREAT %s %s NX", rk, exp);
			redisAsyncCommand(s->ac, ignore_cb, priv,
			    "EXPIREAT %s %s GT", rk, exp);
		}
		redisAsyncCommand(s->ac, push_cb, priv, "ZADD %s %s %s", ck,
		    score, p->key);
		s->pending++;
	}
	if (s->expire > 0) {
		/* Changes older than any pin can live are of no use. */
		char old[32];

		snprintf(old, sizeof(old), "(%" PRId64,
		    s->now_ms - s->expire * 1000 - 60000);
		redisAsyncCommand(s->ac, NULL, NULL,
		    "ZREMRANGEBYSCORE %s -inf %s", ck, old);
	}
	if (s->pending == 0) {
		s->more = false;
		s->pull_off = 0;
		pull_page(s);
	}
}

static void
time_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct sync *s = ac->data;
	redisReply *r = reply;
	int64_t sec, usec;

	(void)priv;
	if (reply_dead(s, ac, r))
		return;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_STRING ||
	    parse_i64(r->element[0]->str, &sec) < 0 ||
	    parse_i64(r->element[1]->str, &usec) < 0) {
		char why[200];

		snprintf(why, sizeof(why), "TIME: %s", r->type ==
		    REDIS_REPLY_ERROR && r->str != NULL ? r->str :
		    "unexpected reply");
		give_up(s, ac, why);
		return;
	}
	s->now_ms = sec * 1000 + usec / 1000;
	push_send(s);
}

static void
round_start(struct sync *s)
{
	if (s->state != PS_READY || s->busy)
		return;
	s->busy = true;
	s->failed = false;
	deadline_start(s, PS_ROUND_TIMEOUT);
	redisAsyncCommand(s->ac, time_cb, NULL, "TIME");
}

/* ---- connection ------------------------------------------------------------------ */

static void
retry_later(struct sync *s)
{
	ev_timer_stop(s->loop, &s->retry);
	ev_timer_set(&s->retry, s->backoff, 0.);
	ev_timer_start(s->loop, &s->retry);
	s->backoff = s->backoff * 2 > PS_BACKOFF_MAX ? PS_BACKOFF_MAX :
	    s->backoff * 2;
}

static void
sync_down(struct sync *s, const char *why)
{
	struct logline l;

	s->ac = NULL;
	s->state = PS_DOWN;
	s->busy = false;
	s->failed = true;
	s->confirmed = false;
	ev_timer_stop(s->loop, &s->deadline);
	metrics_pinsync_up(false);
	if (!s->down_logged) {
		metrics_pinsync(M_SYNC_OUTAGES, 1);
		/* Once per outage: mail goes on, lookups read LMDB anyway. */
		s->down_logged = true;
		log_begin(&l, "pinstore");
		log_str(&l, "action", "redis-down");
		/* Relaying goes on with the local pins (docs/logging.md). */
		log_str(&l, "why", why);
		log_emit(&l, LOG_ERR);
	}
	retry_later(s);
}

/* Drop the connection from outside hiredis's callbacks (timers). */
static void
drop(struct sync *s, const char *why)
{
	if (s->ac != NULL) {
		s->dropping = true;
		redisAsyncFree(s->ac);  /* pending callbacks get NULL */
		s->dropping = false;
	}
	sync_down(s, why);
}

static void
disconnect_cb(const redisAsyncContext *ac, int status)
{
	struct sync *s = ac->data;

	if (s->dropping || ac != s->ac)
		return;
	sync_down(s, s->drop_why[0] != '\0' ? s->drop_why :
	    status == REDIS_OK ? "closed" :
	    ac->errstr[0] != '\0' ? ac->errstr : "connection lost");
}

/* Connected and handshaken: publish everything, pull everything. */
static void
ready(struct sync *s)
{
	char err[256];

	s->state = PS_READY;
	ev_timer_stop(s->loop, &s->deadline);
	/* Redis may have lost everything, or we missed changes: all again. */
	s->marked = 0;
	if (pin_fleet_mark_all(s->ps, (int64_t)time(NULL), &s->marked, err,
	    sizeof(err)) < 0)
		log_msg(LOG_ERR, "pinstore", "fleet: %s", err);
	s->pull_from = INT64_MIN;
	s->pull_off = 0;
	round_start(s);
}

/*
 * The first round of a connection went through: only now is Redis "up"
 * (a server that accepts us and then refuses every command is not).
 */
static void
confirm(struct sync *s)
{
	struct logline l;

	s->confirmed = true;
	s->backoff = 1.0;
	log_begin(&l, "pinstore");
	log_str(&l, "action", s->down_logged ? "redis-up" : "redis-connected");
	if (s->url.unix_socket)
		log_str(&l, "redis", s->url.path);
	else
		log_fmt(&l, "redis", "%s:%u", s->url.host, s->url.port);
	log_u64(&l, "db", s->url.db);
	log_str(&l, "gateway", s->gw);
	log_u64(&l, "own_pins", s->marked);
	log_emit(&l, LOG_NOTICE);
	s->down_logged = false;
	s->ever_up = true;
	metrics_pinsync_up(true);
}

static void
handshake_cb(redisAsyncContext *ac, void *reply, void *priv)
{
	struct sync *s = ac->data;
	redisReply *r = reply;
	bool last = priv != NULL;

	if (r == NULL || ac != s->ac || s->state != PS_HANDSHAKE)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		char why[200];

		snprintf(why, sizeof(why), "Redis refused us: %s",
		    r->str != NULL ? r->str : "error");
		s->state = PS_CONNECTING;  /* ignore the rest */
		give_up(s, ac, why);
		return;
	}
	if (last)
		ready(s);
}

static void
connect_cb(const redisAsyncContext *cac, int status)
{
	struct sync *s = cac->data;
	redisAsyncContext *ac = s->ac;
	char db[16];

	if (cac != s->ac)
		return;
	if (status != REDIS_OK) {
		/* hiredis frees the context after this callback. */
		sync_down(s, cac->errstr[0] != '\0' ? cac->errstr : "connect failed");
		return;
	}
	s->state = PS_HANDSHAKE;
	deadline_start(s, PS_ROUND_TIMEOUT);
	if (s->url.password[0] != '\0') {
		if (s->url.user[0] != '\0')
			redisAsyncCommand(ac, handshake_cb, NULL, "AUTH %s %s",
			    s->url.user, s->url.password);
		else
			redisAsyncCommand(ac, handshake_cb, NULL, "AUTH %s",
			    s->url.password);
	}
	snprintf(db, sizeof(db), "%u", s->url.db);
	redisAsyncCommand(ac, handshake_cb, (void *)1, "SELECT %s", db);
}

static void
sync_connect(struct sync *s)
{
	redisAsyncContext *ac;

	ac = s->url.unix_socket ? redisAsyncConnectUnix(s->url.path) :
	    redisAsyncConnect(s->url.host, (int)s->url.port);
	if (ac == NULL) {
		sync_down(s, "out of memory");
		return;
	}
	if (ac->err) {
		char why[200];

		snprintf(why, sizeof(why), "%s", ac->errstr);
		redisAsyncFree(ac);
		sync_down(s, why);
		return;
	}
	ac->data = s;
	s->ac = ac;
	s->drop_why[0] = '\0';
	s->confirmed = false;
	redisLibevAttach(s->loop, ac);
	redisAsyncSetConnectCallback(ac, connect_cb);
	redisAsyncSetDisconnectCallback(ac, disconnect_cb);
	s->state = PS_CONNECTING;
	deadline_start(s, PS_CONNECT_TIMEOUT);
}

static void
retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	if (S.state == PS_DOWN)
		sync_connect(&S);
}

static void
deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	drop(&S, S.state == PS_CONNECTING ? "connect timed out" :
	    "no answer in time (Redis slow or unreachable)");
}

static void
tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	round_start(&S);
}

static void
ctl_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	char c;
	ssize_t n = read(w->fd, &c, 1);

	(void)revents;
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	ev_break(loop, EVBREAK_ALL);  /* EOF or a word: the master says go */
}

/* ---- process ------------------------------------------------------------------------ */

static struct {
	pid_t pid;
	int ctl;                  /* write end; -1 */
	bool stopping;
	ev_child child;
	ev_timer respawn;
	struct config cfg;        /* our own copy: a reload frees the running one */
	const struct priv_user *user;
	void (*cleanup)(void *);
	void *arg;
	ev_tstamp started;
} M = { .ctl = -1 };

/* The password file: root's, nobody else may read it. */
static int
read_password(const char *path, char *out, size_t cap, char *err,
    size_t errlen)
{
	struct stat st;
	char buf[512];
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "pin_store_password_file %s: %s", path,
		    strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (geteuid() == 0 && st.st_uid != 0) || (st.st_mode & 077) != 0) {
		close(fd);
		snprintf(err, errlen, "pin_store_password_file %s: must be a "
		    "file of root's that no one else can read (chmod 600)", path);
		return -1;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "pin_store_password_file %s: %s", path,
		    strerror(errno));
		return -1;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (buf[0] == '\0' || strlen(buf) >= cap) {
		snprintf(err, errlen, "pin_store_password_file %s: empty or "
		    "longer than %zu bytes", path, cap - 1);
		return -1;
	}
	memcpy(out, buf, strlen(buf) + 1);  /* fits: checked above */
	explicit_bzero(buf, sizeof(buf));
	return 0;
}

static void __attribute__((noreturn))
child_main(const struct config *c, const struct priv_user *u, int ctl_fd)
{
	struct sync *s = &S;
	sigset_t none;
	char err[512];

	/* The parent's loop and its signal handling are not ours. */
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR2, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	memset(s, 0, sizeof(*s));
	if (pinsync_url_parse(c->pin_store, &s->url, err, sizeof(err)) < 0)
		log_fatal("%s", err);
	if (c->pin_store_password_file != NULL &&
	    read_password(c->pin_store_password_file, s->url.password,
	    sizeof(s->url.password), err, sizeof(err)) < 0) {
		log_msg(LOG_ERR, "pinstore", "fleet: %s; not syncing", err);
		_exit(PS_EXIT_CONFIG);
	}
	/* As root only for the file above. */
	if (priv_drop(u, false, err, sizeof(err)) < 0)
		log_fatal("%s", err);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	s->prefix = c->pin_store_prefix;
	s->gw = c->pin_store_gateway;
	s->expire = (int64_t)c->pin_expire;
	s->interval = c->pin_sync_interval;
	s->backoff = 1.0;
	s->pull_from = INT64_MIN;
	s->push = calloc(PS_BATCH, sizeof(*s->push));
	s->push_ok = calloc(PS_BATCH, sizeof(*s->push_ok));
	s->forgets = calloc(PS_BATCH, sizeof(*s->forgets));
	s->forget_ok = calloc(PS_BATCH, sizeof(*s->forget_ok));
	s->pull = calloc(PS_PAGE, sizeof(*s->pull));
	if (s->push == NULL || s->push_ok == NULL || s->forgets == NULL ||
	    s->forget_ok == NULL || s->pull == NULL)
		log_fatal("pinsync: out of memory");
	s->ps = pin_open(c->state_dir, false, (int64_t)c->pin_expire, err,
	    sizeof(err));
	if (s->ps == NULL || pin_fleet_enable(s->ps, s->gw, err,
	    sizeof(err)) < 0) {
		log_msg(LOG_ERR, "pinstore", "fleet: %s; not syncing", err);
		_exit(PS_EXIT_CONFIG);
	}
	metrics_pinsync_up(false);
	if ((s->loop = ev_loop_new(EVFLAG_AUTO)) == NULL)
		log_fatal("pinsync: no event loop");
	/*
	 * The workers' allowlist, loaded once the store and the loop are
	 * open (as a worker does: mkdir, epoll_create are not on it).
	 */
	if (c->seccomp && priv_seccomp(-1, err, sizeof(err)) < 0)
		log_msg(LOG_WARNING, "pinstore", "fleet: %s (running without it)",
		    err);
	ev_timer_init(&s->tick, tick_cb, 0., s->interval);
	ev_timer_init(&s->deadline, deadline_cb, PS_ROUND_TIMEOUT, 0.);
	ev_timer_init(&s->retry, retry_cb, 1., 0.);
	ev_io_init(&s->ctl, ctl_cb, ctl_fd, EV_READ);
	ev_io_start(s->loop, &s->ctl);
	ev_timer_start(s->loop, &s->tick);
	sync_connect(s);
	ev_run(s->loop, 0);
	if (s->ac != NULL) {
		/* Not an outage: nothing to say. What is pending stays in LMDB. */
		s->dropping = true;
		redisAsyncFree(s->ac);
		s->ac = NULL;
	}
	log_msg(LOG_INFO, "stop", "pinsync exiting (published %" PRIu64
	    ", merged %" PRIu64 ")", s->pushed, s->pulled);
	pin_close(s->ps);
	free(s->push);
	free(s->push_ok);
	free(s->forgets);
	free(s->forget_ok);
	free(s->pull);
	free(s->rem);
	ev_loop_destroy(s->loop);
	_exit(0);
}

static void spawn_now(struct ev_loop *loop);

static void
respawn_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	if (!M.stopping && M.pid == 0)
		spawn_now(loop);
}

static void
child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	int st = w->rstatus;
	struct logline l;

	(void)revents;
	ev_child_stop(loop, w);
	M.pid = 0;
	if (M.ctl >= 0)
		close(M.ctl);
	M.ctl = -1;
	log_begin(&l, "worker");
	log_str(&l, "action", "exited");
	log_str(&l, "process", "pinsync");
	log_int(&l, "pid", w->rpid);
	if (WIFSIGNALED(st))
		log_str(&l, "signal", log_signame(WTERMSIG(st)));
	else
		log_int(&l, "status", WEXITSTATUS(st));
	log_str(&l, "expected", M.stopping ? "yes" : "no");
	log_emit(&l, M.stopping ? LOG_INFO : LOG_ERR);
	if (M.stopping)
		return;
	if (WIFEXITED(st) && WEXITSTATUS(st) == PS_EXIT_CONFIG) {
		log_msg(LOG_ERR, "pinstore", "fleet: the sync process is not "
		    "restarted (its error above needs a fix and a restart); "
		    "pins stay on this gateway");
		return;
	}
	/* Mail does not depend on it: restart, slowly if it keeps dying. */
	ev_timer_stop(loop, &M.respawn);
	ev_timer_set(&M.respawn, ev_now(loop) - M.started < 5.0 ? 5.0 : 1.0, 0.);
	ev_timer_start(loop, &M.respawn);
}

static void
spawn_now(struct ev_loop *loop)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0) {
		log_msg(LOG_ERR, "pinstore", "fleet: pipe: %s", strerror(errno));
		return;
	}
	if ((pid = fork()) < 0) {
		log_msg(LOG_ERR, "pinstore", "fleet: fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		return;
	}
	if (pid == 0) {
		close(p[1]);
		if (M.cleanup != NULL)
			M.cleanup(M.arg);
		child_main(&M.cfg, M.user, p[0]);
	}
	close(p[0]);
	M.ctl = p[1];
	M.pid = pid;
	M.started = ev_now(loop);
	{
		struct logline l;

		log_begin(&l, "worker");
		log_str(&l, "action", "started");
		log_str(&l, "process", "pinsync");
		log_int(&l, "pid", pid);
		log_emit(&l, LOG_INFO);
	}
	ev_child_init(&M.child, child_cb, pid, 0);
	ev_child_start(loop, &M.child);
}

int
pinsync_spawn(struct ev_loop *loop, const struct config *c,
    const struct priv_user *u, void (*cleanup)(void *), void *arg)
{
	if (!pinsync_wanted(c) || c->state_dir == NULL)
		return 0;
	memset(&M.cfg, 0, sizeof(M.cfg));
	if ((M.cfg.pin_store = strdup(c->pin_store)) == NULL ||
	    (M.cfg.pin_store_prefix = strdup(c->pin_store_prefix)) == NULL ||
	    (M.cfg.pin_store_gateway = strdup(c->pin_store_gateway)) == NULL ||
	    (M.cfg.state_dir = strdup(c->state_dir)) == NULL ||
	    (c->pin_store_password_file != NULL &&
	    (M.cfg.pin_store_password_file =
	    strdup(c->pin_store_password_file)) == NULL)) {
		log_msg(LOG_ERR, "pinstore", "fleet: out of memory");
		return -1;
	}
	M.cfg.pin_expire = c->pin_expire;
	M.cfg.pin_sync_interval = c->pin_sync_interval;
	M.cfg.seccomp = c->seccomp;
	M.user = u;
	M.cleanup = cleanup;
	M.arg = arg;
	M.stopping = false;
	ev_timer_init(&M.respawn, respawn_cb, 1., 0.);
	spawn_now(loop);
	return M.pid > 0 ? 0 : -1;
}

void
pinsync_stop(struct ev_loop *loop)
{
	M.stopping = true;
	ev_timer_stop(loop, &M.respawn);
	if (M.ctl >= 0) {
		close(M.ctl);  /* EOF: the sync process goes */
		M.ctl = -1;
	}
}

void
pinsync_child_close(struct ev_loop *loop)
{
	if (M.pid > 0)
		ev_child_stop(loop, &M.child);
	ev_timer_stop(loop, &M.respawn);
	if (M.ctl >= 0)
		close(M.ctl);
	M.ctl = -1;
	M.pid = 0;
	M.stopping = true;
}
