/*
 * tlsrpt: the TLS-RPT aggregate store (tlsrpt.h), LMDB in one file,
 * state_dir/tlsrpt.mdb (MDB_NOSUBDIR), apart from the pin store. No JSON
 * and no compression here: policyd (in the daemon) links this file only.
 *
 * Databases:
 *   "agg"   key  be32 day | domain | 0 | type | 16 bytes of SHA-256 over
 *                the policy strings                  (sorted: day, domain)
 *           val  the aggregate, below
 *   "days"  key  be32 day          val  u32 policies, u32 reserved, u64 dropped
 *   "sent"  key  be32 day | domain val  struct sent_rec (what was sent)
 *
 * Aggregate value (native byte order: the file never leaves the host):
 *     0  1  version (1)
 *     1  1  policy type
 *     2  2  nstrings
 *     4  2  ndetails
 *     6  2  reserved
 *     8  8  successes
 *    16  8  failures
 *    24  4  bytes of strings
 *    28  4  reserved
 *    32     strings, each NUL-terminated
 *     ...   ndetails rows of DETAIL_SIZE: result(1) family(1) mxlen(2)
 *           reserved(4) count(8) addr(16) mx(256)
 *
 * Durability: MDB_NOSYNC (a commit is a few writes into the page cache); an
 * fsync at most every TLSRPT_SYNC_SECS from tlsrpt_record, and at close. A
 * crash of the machine can lose the last seconds of counts, never the
 * daemon's mail.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>
#include <openssl/sha.h>

#include "starttlsd/tlsrpt.h"

#define TLSRPT_FILE "tlsrpt.mdb"
#define TLSRPT_MAP_SIZE (1024ull << 20)
#define AGG_VERSION 1
#define AGG_HEAD 32
#define DETAIL_SIZE 288
#define DETAIL_ROWS (TLSRPT_MAX_DETAILS + PD_R_MAX_)
#define AGG_VAL_MAX (AGG_HEAD + TLSRPT_STRINGS_MAX + DETAIL_ROWS * DETAIL_SIZE)
#define KEY_MAX (4 + PD_NAME_MAX + 1 + 1 + 16)

struct tlsrpt {
	MDB_env *env;
	MDB_dbi agg, days, sent;
	bool readonly;
	pid_t pid;
	time_t last_sync;
	uint32_t purged_before;  /* days before this are gone */
	uint8_t *val;            /* AGG_VAL_MAX scratch for a record */
};

const char *
tlsrpt_policy_type_str(enum tlsrpt_policy_type t)
{
	switch (t) {
	case TLSRPT_TLSA: return "tlsa";
	case TLSRPT_STS: return "sts";
	case TLSRPT_NO_POLICY: return "no-policy-found";
	}
	return "unknown";
}

/* ---- days -------------------------------------------------------------------- */

uint32_t
tlsrpt_day(int64_t t)
{
	return t <= 0 ? 0 : (uint32_t)(t / 86400);
}

void
tlsrpt_day_str(uint32_t day, char out[11])
{
	time_t t = (time_t)day * 86400;
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(out, 11, "%Y-%m-%d", &tm) != 10)
		snprintf(out, 11, "%u", day);
}

int
tlsrpt_day_parse(const char *s, uint32_t *day)
{
	struct tm tm;
	char back[11];
	time_t t;

	if (s == NULL || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return -1;
	for (int i = 0; i < 10; i++)
		if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
			return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = atoi(s) - 1900;
	tm.tm_mon = atoi(s + 5) - 1;
	tm.tm_mday = atoi(s + 8);
	if (tm.tm_year < 70 || (t = timegm(&tm)) == (time_t)-1 || t < 0)
		return -1;
	*day = tlsrpt_day((int64_t)t);
	tlsrpt_day_str(*day, back);
	return strcmp(back, s) == 0 ? 0 : -1;  /* 2026-02-30 is not a day */
}

/* ---- open / close ------------------------------------------------------------ */

static int
txn_begin(struct tlsrpt *t, unsigned flags, MDB_txn **txn)
{
	int rc = mdb_txn_begin(t->env, NULL, flags, txn);

	/* Another process grew the map. */
	if (rc == MDB_MAP_RESIZED && (rc = mdb_env_set_mapsize(t->env, 0)) == 0)
		rc = mdb_txn_begin(t->env, NULL, flags, txn);
	return rc;
}

/* The files belong to state_dir's owner, as the pin store's do (root runs starttlsctl). */
static void
give_files(const char *dir, const struct stat *dst)
{
	static const char *const names[] = { TLSRPT_FILE, TLSRPT_FILE "-lock" };
	char path[PATH_MAX];
	struct stat st;

	if (geteuid() != 0 || dst->st_uid == 0)
		return;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >=
		    sizeof(path))
			return;
		if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
		    st.st_uid == 0 && lchown(path, dst->st_uid, dst->st_gid) < 0)
			return;
	}
}

static struct tlsrpt *
open_common(const struct tlsrpt_opts *opts, bool readonly, bool *missing,
    char *err, size_t errlen)
{
	const char *dir = opts != NULL ? opts->state_dir : NULL;
	char path[PATH_MAX];
	struct tlsrpt *t;
	struct stat st;
	MDB_txn *txn;
	unsigned dflags = readonly ? 0 : MDB_CREATE;
	int rc, dead;

	if (missing != NULL)
		*missing = false;
	if (dir == NULL || dir[0] == '\0') {
		snprintf(err, errlen, "tlsrpt: state_dir not set");
		return NULL;
	}
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, TLSRPT_FILE) >=
	    sizeof(path)) {
		snprintf(err, errlen, "tlsrpt: state_dir too long");
		return NULL;
	}
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "tlsrpt: state_dir %s: %s", dir,
		    errno != 0 ? strerror(errno) : strerror(ENOTDIR));
		return NULL;
	}
	if (st.st_mode & S_IWOTH) {
		snprintf(err, errlen, "tlsrpt: state_dir %s: writable by "
		    "everyone; refusing it (chmod o-w)", dir);
		return NULL;
	}
	if (readonly && access(path, F_OK) < 0 && errno == ENOENT) {
		if (missing != NULL)
			*missing = true;
		snprintf(err, errlen, "tlsrpt: %s: no TLS-RPT store yet", path);
		return NULL;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (!readonly && (t->val = malloc(AGG_VAL_MAX)) == NULL)) {
		free(t);
		snprintf(err, errlen, "tlsrpt: out of memory");
		return NULL;
	}
	t->readonly = readonly;
	t->pid = getpid();
	t->last_sync = time(NULL);
	if ((rc = mdb_env_create(&t->env)) != 0)
		goto lmdb_fail;
	mdb_env_set_mapsize(t->env, TLSRPT_MAP_SIZE);
	mdb_env_set_maxdbs(t->env, 4);
	rc = mdb_env_open(t->env, path, MDB_NOSUBDIR | MDB_NOSYNC |
	    (readonly ? MDB_RDONLY : 0), 0600);
	if (rc != 0)
		goto lmdb_fail;
	/* Read-only too: the first open makes the lock file, which policyd needs. */
	give_files(dir, &st);
	if ((rc = txn_begin(t, readonly ? MDB_RDONLY : 0, &txn)) != 0)
		goto lmdb_fail;
	if ((rc = mdb_dbi_open(txn, "agg", dflags, &t->agg)) != 0 ||
	    (rc = mdb_dbi_open(txn, "days", dflags, &t->days)) != 0 ||
	    (rc = mdb_dbi_open(txn, "sent", dflags, &t->sent)) != 0) {
		mdb_txn_abort(txn);
		if (readonly && rc == MDB_NOTFOUND && missing != NULL) {
			*missing = true;
			snprintf(err, errlen, "tlsrpt: %s: empty", path);
			goto fail;
		}
		goto lmdb_fail;
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		goto lmdb_fail;
	mdb_reader_check(t->env, &dead);
	return t;
lmdb_fail:
	snprintf(err, errlen, "tlsrpt: %s: %s", path, mdb_strerror(rc));
fail:
	if (t->env != NULL)
		mdb_env_close(t->env);
	free(t->val);
	free(t);
	return NULL;
}

struct tlsrpt *
tlsrpt_open(const struct tlsrpt_opts *opts, char *err, size_t errlen)
{
	return open_common(opts, false, NULL, err, errlen);
}

struct tlsrpt *
tlsrpt_open_ro(const struct tlsrpt_opts *opts, bool *missing, char *err,
    size_t errlen)
{
	return open_common(opts, true, missing, err, errlen);
}

void
tlsrpt_close(struct tlsrpt *t)
{
	if (t == NULL)
		return;
	/* A copy inherited over fork(): the environment is the parent's. */
	if (t->pid == getpid()) {
		if (!t->readonly)
			mdb_env_sync(t->env, 1);
		mdb_env_close(t->env);
	}
	free(t->val);
	free(t);
}

/* ---- keys ---------------------------------------------------------------------- */

static void
be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t
get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

/* A domain as stored: lower case, no trailing dot, LDH and dots only. */
static int
domain_norm(const char *in, char out[PD_NAME_MAX + 1])
{
	size_t n = in != NULL ? strlen(in) : 0;

	if (n > 0 && in[n - 1] == '.')
		n--;
	if (n == 0 || n > PD_NAME_MAX)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_'))
			return -1;
		out[i] = (char)c;
	}
	out[n] = '\0';
	return 0;
}

/* "day|domain" (the sent key, and the prefix of an aggregate key). */
static size_t
key_prefix(uint8_t *k, uint32_t day, const char *dom)
{
	size_t n = strlen(dom);

	be32(k, day);
	memcpy(k + 4, dom, n);
	k[4 + n] = 0;
	return 4 + n + 1;
}

/* ---- record ---------------------------------------------------------------------- */

static int
lmdb_err(const char *op, int rc, char *err, size_t errlen)
{
	snprintf(err, errlen, "tlsrpt: %s: %s%s", op, mdb_strerror(rc),
	    rc == MDB_MAP_FULL ? " (the store is full until old days are "
	    "purged)" : "");
	return -1;
}

/* The strings kept (bounded), packed into buf; their count and bytes. */
static void
pack_strings(const char *const *s, size_t n, uint8_t *buf, size_t *nout,
    size_t *bytes)
{
	size_t used = 0, k = 0;

	for (size_t i = 0; s != NULL && i < n && k < TLSRPT_MAX_STRINGS; i++) {
		size_t l;

		if (s[i] == NULL)
			continue;
		l = strnlen(s[i], TLSRPT_STRING_MAX + 1);
		if (l > TLSRPT_STRING_MAX || used + l + 1 > TLSRPT_STRINGS_MAX)
			continue;
		memcpy(buf + used, s[i], l);
		buf[used + l] = 0;
		used += l + 1;
		k++;
	}
	*nout = k;
	*bytes = used;
}

static uint64_t
get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static void
put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static uint16_t
get16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return v;
}

static void
put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static uint32_t
get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static void
put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

/* A stored aggregate value is well-formed. */
static bool
agg_valid(const uint8_t *v, size_t len)
{
	size_t ns, nd, sb;

	if (len < AGG_HEAD || v[0] != AGG_VERSION)
		return false;
	ns = get16(v + 2);
	nd = get16(v + 4);
	sb = get32(v + 24);
	if (ns > TLSRPT_MAX_STRINGS || nd > DETAIL_ROWS ||
	    sb > TLSRPT_STRINGS_MAX || len != AGG_HEAD + sb + nd * DETAIL_SIZE)
		return false;
	if (sb > 0 && v[AGG_HEAD + sb - 1] != 0)
		return false;
	return true;
}

static bool
detail_is(const uint8_t *row, uint8_t result, const struct pd_req_addr *a,
    const char *mx, size_t mxlen)
{
	size_t alen = a->family == AF_INET ? 4 : a->family == AF_INET6 ? 16 : 0;

	return row[0] == result && row[1] == a->family &&
	    get16(row + 2) == mxlen && memcmp(row + 16, a->addr, alen) == 0 &&
	    memcmp(row + 32, mx, mxlen) == 0;
}

static void
detail_init(uint8_t *row, uint8_t result, const struct pd_req_addr *a,
    const char *mx, size_t mxlen)
{
	size_t alen = a->family == AF_INET ? 4 : a->family == AF_INET6 ? 16 : 0;

	memset(row, 0, DETAIL_SIZE);
	row[0] = result;
	row[1] = alen > 0 ? a->family : 0;
	put16(row + 2, (uint16_t)mxlen);
	memcpy(row + 16, a->addr, alen);
	memcpy(row + 32, mx, mxlen);
}

/* Count a failure into the rows of v (len bytes, room for one more row). */
static size_t
add_failure(uint8_t *v, size_t len, const struct pd_report *r,
    const char *mx, size_t mxlen)
{
	static const struct pd_req_addr none;
	size_t nd = get16(v + 4);
	uint8_t *rows = v + len - nd * DETAIL_SIZE;
	uint8_t res = (uint8_t)r->result;
	struct pd_req_addr a = r->addr;

	if (a.family != AF_INET && a.family != AF_INET6)
		a = none;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < nd; i++)
			if (detail_is(rows + i * DETAIL_SIZE, res, &a, mx, mxlen)) {
				uint8_t *c = rows + i * DETAIL_SIZE + 8;

				put64(c, get64(c) + 1);
				return len;
			}
		/* Room for a new row, or the per-result overflow row. */
		if (nd < TLSRPT_MAX_DETAILS || (pass == 1 && nd < DETAIL_ROWS)) {
			detail_init(rows + nd * DETAIL_SIZE, res, &a, mx, mxlen);
			put64(rows + nd * DETAIL_SIZE + 8, 1);
			put16(v + 4, (uint16_t)(nd + 1));
			return len + DETAIL_SIZE;
		}
		a = none;
		mxlen = 0;
	}
	return len;  /* cannot happen: one overflow row per result type */
}

/* Delete every key of dbi whose first 4 bytes (a day) are below before. */
static int
purge_dbi(MDB_txn *txn, MDB_dbi dbi, uint32_t before)
{
	MDB_cursor *c;
	MDB_val k, v;
	int rc;

	if ((rc = mdb_cursor_open(txn, dbi, &c)) != 0)
		return rc;
	rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
	while (rc == 0) {
		if (k.mv_size < 4 || get_be32(k.mv_data) >= before)
			break;
		if ((rc = mdb_cursor_del(c, 0)) != 0)
			break;
		rc = mdb_cursor_get(c, &k, &v, MDB_GET_CURRENT);
		if (rc == MDB_NOTFOUND || rc == EINVAL)
			rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int
purge_txn(struct tlsrpt *t, MDB_txn *txn, uint32_t today)
{
	uint32_t before = today >= TLSRPT_DAYS_KEPT - 1 ?
	    today - (TLSRPT_DAYS_KEPT - 1) : 0;
	int rc;

	if (before <= t->purged_before)
		return 0;
	if ((rc = purge_dbi(txn, t->agg, before)) != 0 ||
	    (rc = purge_dbi(txn, t->days, before)) != 0 ||
	    (rc = purge_dbi(txn, t->sent, before)) != 0)
		return rc;
	return 0;
}

int
tlsrpt_purge(struct tlsrpt *t, uint32_t today, char *err, size_t errlen)
{
	MDB_txn *txn;
	int rc;

	if (t->readonly)
		return 0;
	if ((rc = txn_begin(t, 0, &txn)) != 0)
		return lmdb_err("purge", rc, err, errlen);
	if ((rc = purge_txn(t, txn, today)) != 0) {
		mdb_txn_abort(txn);
		return lmdb_err("purge", rc, err, errlen);
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		return lmdb_err("purge", rc, err, errlen);
	t->purged_before = today >= TLSRPT_DAYS_KEPT - 1 ?
	    today - (TLSRPT_DAYS_KEPT - 1) : 0;
	return 0;
}

int
tlsrpt_record(struct tlsrpt *t, const struct pd_report *r,
    const char *const *policy_string, size_t nstrings, char *err,
    size_t errlen)
{
	uint8_t key[KEY_MAX], dkey[4], hash[SHA256_DIGEST_LENGTH];
	uint8_t strs[TLSRPT_STRINGS_MAX];
	char dom[PD_NAME_MAX + 1], mx[PD_NAME_MAX + 1];
	uint32_t day, today = tlsrpt_day((int64_t)time(NULL));
	size_t klen, ns, sb, len, mxlen = 0;
	MDB_txn *txn;
	MDB_val k, v, dk, dv;
	uint8_t dval[16];
	int rc;

	if (t == NULL || t->readonly || r == NULL) {
		snprintf(err, errlen, "tlsrpt: store not open for writing");
		return -1;
	}
	if (r->policy_type < TLSRPT_TLSA || r->policy_type > TLSRPT_NO_POLICY ||
	    (unsigned)r->result >= PD_R_MAX_) {
		snprintf(err, errlen, "tlsrpt: bad result (type %u, result %d)",
		    r->policy_type, (int)r->result);
		return -1;
	}
	if (domain_norm(r->domain, dom) < 0) {
		snprintf(err, errlen, "tlsrpt: bad policy domain");
		return -1;
	}
	if (r->mx[0] != '\0' && domain_norm(r->mx, mx) == 0)
		mxlen = strlen(mx);
	day = r->when != 0 ? tlsrpt_day(r->when) : today;
	/* A clock far off, or a result from a day already purged: not ours to keep. */
	if (day + (TLSRPT_DAYS_KEPT - 1) < today || day > today + 1) {
		snprintf(err, errlen, "tlsrpt: result for day %u outside the "
		    "days kept (today %u)", day, today);
		return -1;
	}
	pack_strings(policy_string, nstrings, strs, &ns, &sb);
	{
		SHA256_CTX c;
		uint8_t n8[8];

		SHA256_Init(&c);
		put64(n8, ns);
		SHA256_Update(&c, n8, sizeof(n8));
		SHA256_Update(&c, strs, sb);
		SHA256_Final(hash, &c);
	}
	klen = key_prefix(key, day, dom);
	key[klen++] = r->policy_type;
	memcpy(key + klen, hash, 16);
	klen += 16;

	if ((rc = txn_begin(t, 0, &txn)) != 0)
		return lmdb_err("record", rc, err, errlen);
	if ((rc = purge_txn(t, txn, today)) != 0)
		goto fail;
	k.mv_data = key;
	k.mv_size = klen;
	rc = mdb_get(txn, t->agg, &k, &v);
	if (rc == 0 && agg_valid(v.mv_data, v.mv_size)) {
		memcpy(t->val, v.mv_data, v.mv_size);
		len = v.mv_size;
	} else if (rc == 0 || rc == MDB_NOTFOUND) {
		/* New (or unreadable, then replaced): one more for the day. */
		be32(dkey, day);
		dk.mv_data = dkey;
		dk.mv_size = sizeof(dkey);
		memset(dval, 0, sizeof(dval));
		if ((rc = mdb_get(txn, t->days, &dk, &dv)) == 0 &&
		    dv.mv_size == sizeof(dval))
			memcpy(dval, dv.mv_data, sizeof(dval));
		else if (rc != 0 && rc != MDB_NOTFOUND)
			goto fail;
		if (get32(dval) >= TLSRPT_MAX_POLICIES) {
			uint64_t dropped = get64(dval + 8) + 1;

			put64(dval + 8, dropped);
			dv.mv_data = dval;
			dv.mv_size = sizeof(dval);
			if ((rc = mdb_put(txn, t->days, &dk, &dv, 0)) != 0)
				goto fail;
			if ((rc = mdb_txn_commit(txn)) != 0)
				return lmdb_err("record", rc, err, errlen);
			if (dropped > 1)
				return 0;
			snprintf(err, errlen, "tlsrpt: %u policies recorded for "
			    "the day already: results for new ones are dropped "
			    "(counted) until the next day", TLSRPT_MAX_POLICIES);
			return -1;
		}
		put32(dval, get32(dval) + 1);
		dv.mv_data = dval;
		dv.mv_size = sizeof(dval);
		if ((rc = mdb_put(txn, t->days, &dk, &dv, 0)) != 0)
			goto fail;
		memset(t->val, 0, AGG_HEAD);
		t->val[0] = AGG_VERSION;
		t->val[1] = r->policy_type;
		put16(t->val + 2, (uint16_t)ns);
		put32(t->val + 24, (uint32_t)sb);
		memcpy(t->val + AGG_HEAD, strs, sb);
		len = AGG_HEAD + sb;
	} else
		goto fail;
	if (r->result == PD_R_SUCCESS)
		put64(t->val + 8, get64(t->val + 8) + 1);
	else {
		put64(t->val + 16, get64(t->val + 16) + 1);
		len = add_failure(t->val, len, r, mx, mxlen);
	}
	v.mv_data = t->val;
	v.mv_size = len;
	if ((rc = mdb_put(txn, t->agg, &k, &v, 0)) != 0)
		goto fail;
	if ((rc = mdb_txn_commit(txn)) != 0)
		return lmdb_err("record", rc, err, errlen);
	if (t->purged_before + TLSRPT_DAYS_KEPT - 1 < today)
		t->purged_before = today - (TLSRPT_DAYS_KEPT - 1);
	if (time(NULL) - t->last_sync >= TLSRPT_SYNC_SECS) {
		t->last_sync = time(NULL);
		mdb_env_sync(t->env, 1);
	}
	return 0;
fail:
	mdb_txn_abort(txn);
	return lmdb_err("record", rc, err, errlen);
}

/* ---- read back ---------------------------------------------------------------------- */

static void
agg_decode(const MDB_val *k, const MDB_val *v, struct tlsrpt_agg *a)
{
	const uint8_t *p = v->mv_data, *key = k->mv_data;
	size_t ns = get16(p + 2), nd = get16(p + 4), sb = get32(p + 24);
	size_t dl = strnlen((const char *)key + 4, k->mv_size - 4);
	size_t off = 0;

	a->day = get_be32(key);
	memcpy(a->domain, key + 4, dl);
	a->domain[dl] = '\0';
	a->type = p[1];
	memcpy(a->buf, p + AGG_HEAD, sb);
	a->nstrings = 0;
	for (size_t i = 0; i < ns && off < sb; i++) {
		a->strings[a->nstrings++] = a->buf + off;
		off += strlen(a->buf + off) + 1;
	}
	a->success = get64(p + 8);
	a->failure = get64(p + 16);
	a->ndetails = 0;
	for (size_t i = 0; i < nd; i++) {
		const uint8_t *row = p + AGG_HEAD + sb + i * DETAIL_SIZE;
		struct tlsrpt_detail *d = &a->details[a->ndetails];
		size_t mxl = get16(row + 2);

		if (row[0] >= PD_R_MAX_ || mxl > PD_NAME_MAX)
			continue;
		d->result = row[0];
		d->addr.family = row[1];
		memcpy(d->addr.addr, row + 16, 16);
		memcpy(d->mx, row + 32, mxl);
		d->mx[mxl] = '\0';
		d->count = get64(row + 8);
		a->ndetails++;
	}
}

int
tlsrpt_foreach(struct tlsrpt *t, uint32_t day, const char *domain,
    int (*cb)(const struct tlsrpt_agg *a, void *arg), void *arg,
    char *err, size_t errlen)
{
	uint8_t start[KEY_MAX];
	char dom[PD_NAME_MAX + 1];
	struct tlsrpt_agg *a;
	MDB_cursor *c = NULL;
	MDB_txn *txn;
	MDB_val k, v;
	size_t plen;
	int rc, stop = 0;

	if (domain != NULL) {
		if (domain_norm(domain, dom) < 0) {
			snprintf(err, errlen, "tlsrpt: %s: not a domain", domain);
			return -1;
		}
		plen = key_prefix(start, day, dom);
	} else {
		be32(start, day);
		plen = 4;
	}
	if ((a = malloc(sizeof(*a))) == NULL) {
		snprintf(err, errlen, "tlsrpt: out of memory");
		return -1;
	}
	if ((rc = txn_begin(t, MDB_RDONLY, &txn)) != 0) {
		free(a);
		return lmdb_err("read", rc, err, errlen);
	}
	if ((rc = mdb_cursor_open(txn, t->agg, &c)) != 0)
		goto done;
	k.mv_data = start;
	k.mv_size = plen;
	rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && stop == 0) {
		if (k.mv_size < plen + 1 + 16 ||
		    memcmp(k.mv_data, start, plen) != 0)
			break;
		if (memchr((const uint8_t *)k.mv_data + 4, 0, k.mv_size - 4) !=
		    NULL && agg_valid(v.mv_data, v.mv_size)) {
			agg_decode(&k, &v, a);
			stop = cb(a, arg);
		}
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	if (rc == MDB_NOTFOUND)
		rc = 0;
done:
	if (c != NULL)
		mdb_cursor_close(c);
	mdb_txn_abort(txn);
	free(a);
	if (rc != 0)
		return lmdb_err("read", rc, err, errlen);
	return 0;
}

uint64_t
tlsrpt_dropped(struct tlsrpt *t, uint32_t day)
{
	uint8_t dkey[4];
	uint64_t n = 0;
	MDB_txn *txn;
	MDB_val k, v;

	be32(dkey, day);
	k.mv_data = dkey;
	k.mv_size = sizeof(dkey);
	if (txn_begin(t, MDB_RDONLY, &txn) != 0)
		return 0;
	if (mdb_get(txn, t->days, &k, &v) == 0 && v.mv_size == 16)
		n = get64((const uint8_t *)v.mv_data + 8);
	mdb_txn_abort(txn);
	return n;
}

/* ---- sent --------------------------------------------------------------------------- */

/* The record: report_id, attempts, last_try, done_at, done_uris (all text after). */
#define SENT_HEAD (TLSRPT_ID_MAX + 4 + 8 + 8)

int
tlsrpt_sent_get(struct tlsrpt *t, uint32_t day, const char *domain,
    struct tlsrpt_sent *out, char *err, size_t errlen)
{
	uint8_t key[KEY_MAX];
	char dom[PD_NAME_MAX + 1];
	MDB_txn *txn;
	MDB_val k, v;
	int rc;

	memset(out, 0, sizeof(*out));
	if (domain_norm(domain, dom) < 0) {
		snprintf(err, errlen, "tlsrpt: %s: not a domain", domain);
		return -1;
	}
	k.mv_data = key;
	k.mv_size = key_prefix(key, day, dom);
	if ((rc = txn_begin(t, MDB_RDONLY, &txn)) != 0)
		return lmdb_err("read", rc, err, errlen);
	rc = mdb_get(txn, t->sent, &k, &v);
	if (rc == 0 && v.mv_size >= SENT_HEAD &&
	    v.mv_size - SENT_HEAD < sizeof(out->done_uris)) {
		const uint8_t *p = v.mv_data;

		memcpy(out->report_id, p, TLSRPT_ID_MAX);
		out->report_id[TLSRPT_ID_MAX - 1] = '\0';
		out->attempts = get32(p + TLSRPT_ID_MAX);
		out->last_try = (int64_t)get64(p + TLSRPT_ID_MAX + 4);
		out->done_at = (int64_t)get64(p + TLSRPT_ID_MAX + 12);
		memcpy(out->done_uris, p + SENT_HEAD, v.mv_size - SENT_HEAD);
		out->done_uris[v.mv_size - SENT_HEAD] = '\0';
		mdb_txn_abort(txn);
		return 1;
	}
	mdb_txn_abort(txn);
	if (rc == 0 || rc == MDB_NOTFOUND)
		return 0;
	return lmdb_err("read", rc, err, errlen);
}

int
tlsrpt_sent_put(struct tlsrpt *t, uint32_t day, const char *domain,
    const struct tlsrpt_sent *s, char *err, size_t errlen)
{
	uint8_t key[KEY_MAX], val[SENT_HEAD + sizeof(s->done_uris)];
	char dom[PD_NAME_MAX + 1];
	size_t ul = strnlen(s->done_uris, sizeof(s->done_uris) - 1);
	MDB_txn *txn;
	MDB_val k, v;
	int rc;

	if (t->readonly) {
		snprintf(err, errlen, "tlsrpt: store opened read-only");
		return -1;
	}
	if (domain_norm(domain, dom) < 0) {
		snprintf(err, errlen, "tlsrpt: %s: not a domain", domain);
		return -1;
	}
	memset(val, 0, SENT_HEAD);
	memcpy(val, s->report_id, strnlen(s->report_id, TLSRPT_ID_MAX - 1));
	put32(val + TLSRPT_ID_MAX, s->attempts);
	put64(val + TLSRPT_ID_MAX + 4, (uint64_t)s->last_try);
	put64(val + TLSRPT_ID_MAX + 12, (uint64_t)s->done_at);
	memcpy(val + SENT_HEAD, s->done_uris, ul);
	k.mv_data = key;
	k.mv_size = key_prefix(key, day, dom);
	v.mv_data = val;
	v.mv_size = SENT_HEAD + ul;
	if ((rc = txn_begin(t, 0, &txn)) != 0)
		return lmdb_err("write", rc, err, errlen);
	if ((rc = mdb_put(txn, t->sent, &k, &v, 0)) != 0) {
		mdb_txn_abort(txn);
		return lmdb_err("write", rc, err, errlen);
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		return lmdb_err("write", rc, err, errlen);
	mdb_env_sync(t->env, 1);  /* "sent" must survive: no duplicates after a crash */
	return 0;
}
