/*
 * pinstore: pins in one LMDB environment (state_dir/data.mdb, lock.mdb),
 * one unnamed database. The contract is in pinstore.h.
 *
 * Key: the canonical key bytes, no NUL ("ip:198.51.100.25",
 * "domain:example.net"). Value: a fixed-size little-endian record whose
 * first byte is its version, so the format can grow; an unknown version or
 * a record of the wrong size is treated as absent and counted in
 * pin_stats.errors, never trusted. Version 1, 112 bytes:
 *
 *   off size
 *     0    1  version (1)
 *     1    1  kind: 0 destination, 1 domain (must match the key prefix)
 *     2    1  flags: bit 0 = spki present; other bits 0
 *     3    1  reserved, 0
 *     4    2  tls_version (0x0304 = TLS 1.3; 0 for domains)
 *     6    2  reserved, 0
 *     8    8  first_seen, unix seconds, signed
 *    16    8  last_seen, unix seconds, signed
 *    24    8  count
 *    32   32  SHA-256 of the leaf's SubjectPublicKeyInfo (zeros if absent)
 *    64   48  via: address text, NUL-padded (domains; zeros otherwise)
 *
 * Durability: MDB_NOSYNC, so a commit is a few pwrite()s into the page cache
 * and never waits for the disk; a thread fsyncs every PIN_SYNC_INTERVAL
 * seconds when something changed. The map is PIN_MAP_SIZE: when it is full
 * a commit fails with MDB_MAP_FULL, the caller logs it, the notes stay
 * queued (new ones are dropped and counted once the queue is full), expired
 * pins are purged to make room, and the daemon keeps relaying.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <lmdb.h>

#include "starttlsd/hash.h"
#include "starttlsd/pinstore.h"

#define PIN_MAP_SIZE (256u << 20)  /* ~1,000,000 pins, 300,000 in a fleet; virtual until used */
#define PIN_SYNC_INTERVAL 5        /* seconds between fsyncs */
#define PIN_SWEEP_MAX 1024         /* records a commit checks for expiry */
#define PIN_HASH_SLOTS (2 * PIN_QUEUE_MAX)
#define PIN_OPEN_MAX 16            /* stores open at once in one process */

#define PIN_MAX_DBS 8              /* named databases (the fleet's four) */
#define FLEET_PREFIX "fleet:"      /* their names, also keys of the main db */
#define FLEET_SELF "@self"         /* origin db: our own name */

#define REC_V1 1
#define REC_V1_SIZE 112
#define REC_F_SPKI 0x01

_Static_assert(PIN_QUEUE_MAX < UINT16_MAX, "queue index fits the hash");
_Static_assert((PIN_HASH_SLOTS & (PIN_HASH_SLOTS - 1)) == 0,
    "hash slots are a power of two");

/* Sightings of one key since the last commit; p.count is how many. */
struct pin_note {
	struct pin p;
	bool live;  /* false: forgotten after it was queued */
};

struct pin_store {
	MDB_env *env;
	MDB_dbi dbi;
	bool readonly;
	int64_t expire_secs;
	pid_t pid;               /* the process that opened it */
	dev_t dev;               /* the directory, for the open registry */
	ino_t ino;
	char dir[PATH_MAX];

	struct pin_note *q;      /* PIN_QUEUE_MAX; NULL when readonly */
	size_t nq;               /* slots used, dead ones included */
	uint16_t *hash;          /* PIN_HASH_SLOTS: queue index + 1, 0 empty */
	char sweep_key[PIN_KEY_MAX]; /* where the next expiry sweep starts */
	size_t sweep_len;        /* 0: at the beginning */
	struct pin_stats st;

	/* fleet databases (pinstore.h); found at open, or made by pin_fleet_enable */
	bool fleet_have;         /* they exist: forget and put keep them right */
	bool fleet;              /* enabled: commits record our own sightings */
	MDB_dbi own_dbi, dirty_dbi, forgets_dbi, origin_dbi;
	char gw[PIN_GW_MAX];     /* our name in the fleet ("" if unknown) */
	MDB_txn *fleet_txn;      /* pin_fleet_begin ... end */

	/* the sync thread */
	pthread_t syncer;
	bool syncer_running;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;               /* under mu */
	bool started;            /* under mu: the thread is in its loop */
	atomic_bool dirty;       /* committed since the last fsync */
	atomic_uint_fast64_t sync_errors;
};

/*
 * Directories open in this process. LMDB's reader locks are POSIX record
 * locks, which belong to the process: closing a second handle on the same
 * lock file would silently drop the first one's locks, and another process
 * could then reset the reader table under it. So a second open is refused.
 */
static struct {
	dev_t dev;
	ino_t ino;
	pid_t pid;
	bool used;
} pin_open_dirs[PIN_OPEN_MAX];
static pthread_mutex_t pin_open_mu = PTHREAD_MUTEX_INITIALIZER;

/* ---- small helpers ----------------------------------------------------------- */

static void
put16(uint8_t *b, uint16_t v)
{
	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
}

static void
put64(uint8_t *b, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t
get16(const uint8_t *b)
{
	return (uint16_t)(b[0] | b[1] << 8);
}

static uint64_t
get64(const uint8_t *b)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[i];
	return v;
}

static uint64_t
sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* The kind a key's prefix names; -1 if it has none. */
static int
key_kind(const char *key, size_t len, enum pin_kind *kind)
{
	if (len > 3 && memcmp(key, "ip:", 3) == 0) {
		*kind = PIN_DST;
		return 0;
	}
	if (len > 7 && memcmp(key, "domain:", 7) == 0) {
		*kind = PIN_DOMAIN;
		return 0;
	}
	return -1;
}

static bool
expired(const struct pin_store *ps, const struct pin *p, int64_t now)
{
	if (ps->expire_secs <= 0 || p->last_seen >= now)
		return false;
	/* In unsigned arithmetic the difference cannot overflow. */
	return (uint64_t)now - (uint64_t)p->last_seen > (uint64_t)ps->expire_secs;
}

bool
pin_expired(const struct pin_store *ps, const struct pin *p, int64_t now)
{
	return expired(ps, p, now);
}

/*
 * This process's pid without a getpid() per lookup (several per session):
 * kept, and forgotten in a child at fork() (pthread_atfork), so a copy
 * inherited over fork() is still told apart.
 */
static pid_t pin_pid_cached;

static void
pin_pid_forget(void)
{
	pin_pid_cached = 0;
}

static void
pin_pid_once(void)
{
	pthread_atfork(NULL, NULL, pin_pid_forget);
}

static pid_t
pin_pid(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, pin_pid_once);
	if (pin_pid_cached == 0)
		pin_pid_cached = getpid();
	return pin_pid_cached;
}

/* LMDB calls after a fork() would use the parent's locks and reader slots. */
static int
same_process(const struct pin_store *ps, char *err, size_t errlen)
{
	if (ps->pid == pin_pid())
		return 0;
	snprintf(err, errlen, "pin store %s: opened by process %d before a "
	    "fork; open it in the process that uses it", ps->dir, (int)ps->pid);
	return -1;
}

static int
lmdb_err(const struct pin_store *ps, const char *op, int rc, char *err,
    size_t errlen)
{
	if (rc == MDB_MAP_FULL)
		snprintf(err, errlen, "pin store %s: %s: full (%u MiB map; expired "
		    "pins are purged to make room): %s", ps->dir, op,
		    PIN_MAP_SIZE >> 20, mdb_strerror(rc));
	else
		snprintf(err, errlen, "pin store %s: %s: %s", ps->dir, op,
		    mdb_strerror(rc));
	return -1;
}

/* Another process may have grown the map: adopt its size and retry. */
static int
txn_begin(struct pin_store *ps, unsigned flags, MDB_txn **txn)
{
	int rc = mdb_txn_begin(ps->env, NULL, flags, txn);

	if (rc == MDB_MAP_RESIZED && (rc = mdb_env_set_mapsize(ps->env, 0)) == 0)
		rc = mdb_txn_begin(ps->env, NULL, flags, txn);
	return rc;
}

/* ---- records ----------------------------------------------------------------- */

static void
rec_encode(const struct pin *p, uint8_t rec[REC_V1_SIZE])
{
	memset(rec, 0, REC_V1_SIZE);
	rec[0] = REC_V1;
	rec[1] = p->kind == PIN_DOMAIN ? 1 : 0;
	rec[2] = p->has_spki ? REC_F_SPKI : 0;
	put16(rec + 4, p->tls_version);
	put64(rec + 8, (uint64_t)p->first_seen);
	put64(rec + 16, (uint64_t)p->last_seen);
	put64(rec + 24, p->count);
	if (p->has_spki)
		memcpy(rec + 32, p->spki, 32);
	/* via is NUL-terminated within PIN_VIA_MAX, so byte 111 stays 0. */
	memcpy(rec + 64, p->via, strnlen(p->via, PIN_VIA_MAX - 1));
}

/* A stored key and value → pin; -1 if either is not what we write. */
static int
rec_decode(const MDB_val *k, const MDB_val *v, struct pin *p)
{
	const uint8_t *b = v->mv_data;

	memset(p, 0, sizeof(*p));
	if (k->mv_size == 0 || k->mv_size >= PIN_KEY_MAX ||
	    memchr(k->mv_data, '\0', k->mv_size) != NULL)
		return -1;
	memcpy(p->key, k->mv_data, k->mv_size);
	if (key_kind(p->key, k->mv_size, &p->kind) < 0)
		return -1;
	if (v->mv_size != REC_V1_SIZE || b[0] != REC_V1)
		return -1;
	if (b[1] != (p->kind == PIN_DOMAIN ? 1 : 0) || (b[2] & ~REC_F_SPKI) != 0)
		return -1;
	if (memchr(b + 64, '\0', PIN_VIA_MAX) == NULL)
		return -1;
	p->has_spki = (b[2] & REC_F_SPKI) != 0;
	p->tls_version = get16(b + 4);
	p->first_seen = (int64_t)get64(b + 8);
	p->last_seen = (int64_t)get64(b + 16);
	p->count = get64(b + 24);
	if (p->has_spki)
		memcpy(p->spki, b + 32, 32);
	memcpy(p->via, b + 64, PIN_VIA_MAX);
	return 0;
}

/* ---- keys -------------------------------------------------------------------- */

static int
key_set(char *out, size_t cap, const char *prefix, const char *s, size_t n)
{
	size_t pl = strlen(prefix);

	if (out == NULL || pl + n + 1 > cap || pl + n + 1 > PIN_KEY_MAX)
		return -1;
	memcpy(out, prefix, pl);
	memcpy(out + pl, s, n);
	out[pl + n] = '\0';
	return 0;
}

int
pin_key_addr(const struct sockaddr *sa, char *out, size_t cap)
{
	char a[INET6_ADDRSTRLEN];

	if (sa == NULL)
		return -1;
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in s4;

		memcpy(&s4, sa, sizeof(s4));
		if (inet_ntop(AF_INET, &s4.sin_addr, a, sizeof(a)) == NULL)
			return -1;
	} else if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6 s6;

		memcpy(&s6, sa, sizeof(s6));
		/* A dual-stack socket's view of an IPv4 peer: the same server. */
		if (IN6_IS_ADDR_V4MAPPED(&s6.sin6_addr)) {
			struct in_addr a4;

			memcpy(&a4, s6.sin6_addr.s6_addr + 12, 4);
			if (inet_ntop(AF_INET, &a4, a, sizeof(a)) == NULL)
				return -1;
		} else if (inet_ntop(AF_INET6, &s6.sin6_addr, a, sizeof(a)) == NULL)
			return -1;  /* glibc writes RFC 5952 text */
	} else
		return -1;
	return key_set(out, cap, "ip:", a, strlen(a));
}

static bool
ascii_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
ascii_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/*
 * RFC 5321 domain syntax (LDH labels of 1..63, at most 253 in all), one
 * trailing dot dropped, ASCII lower-cased. Address literals, U-labels and
 * names whose last label is all digits (an IPv4 address in disguise) are
 * refused.
 */
int
pin_key_domain(const char *domain, size_t len, char *out, size_t cap)
{
	char buf[256];
	size_t i, lab = 0;
	bool digits = true;

	if (domain == NULL)
		return -1;
	if (len > 0 && domain[len - 1] == '.')
		len--;
	if (len == 0 || len > 253)
		return -1;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)domain[i];

		if (c == '.') {
			if (lab == 0 || domain[i - 1] == '-')
				return -1;
			buf[i] = '.';
			lab = 0;
			digits = true;
			continue;
		}
		if (ascii_alpha(c)) {
			c = (unsigned char)(c | 0x20);
			digits = false;
		} else if (c == '-') {
			if (lab == 0)
				return -1;
			digits = false;
		} else if (!ascii_digit(c))
			return -1;
		if (++lab > 63)
			return -1;
		buf[i] = (char)c;
	}
	if (lab == 0 || domain[len - 1] == '-' || digits)
		return -1;
	return key_set(out, cap, "domain:", buf, len);
}

/* "198.51.100.25", "2001:db8::25" or "[2001:db8::25]" → "ip:..." */
static int
key_from_ip(const char *s, char *out, size_t cap)
{
	char buf[INET6_ADDRSTRLEN + 2];
	size_t n = strlen(s);
	struct sockaddr_in s4 = { .sin_family = AF_INET };
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };

	if (n >= sizeof(buf))
		return -1;
	if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
		memcpy(buf, s + 1, n - 2);
		buf[n - 2] = '\0';
	} else
		memcpy(buf, s, n + 1);
	if (inet_pton(AF_INET, buf, &s4.sin_addr) == 1)
		return pin_key_addr((struct sockaddr *)&s4, out, cap);
	if (inet_pton(AF_INET6, buf, &s6.sin6_addr) == 1)
		return pin_key_addr((struct sockaddr *)&s6, out, cap);
	return -1;
}

int
pin_key_parse(const char *arg, char *out, size_t cap)
{
	if (arg == NULL)
		return -1;
	if (strncmp(arg, "ip:", 3) == 0)
		return key_from_ip(arg + 3, out, cap);
	if (strncmp(arg, "domain:", 7) == 0)
		return pin_key_domain(arg + 7, strlen(arg + 7), out, cap);
	if (key_from_ip(arg, out, cap) == 0)
		return 0;
	if (strchr(arg, ':') != NULL || arg[0] == '[')
		return -1;  /* meant as an address, but is none */
	return pin_key_domain(arg, strlen(arg), out, cap);
}

/* ---- validation (pin_put, import) --------------------------------------------- */

const char *
pin_check(const struct pin *p, const char **field)
{
	char canon[PIN_KEY_MAX];
	enum pin_kind kind;
	size_t klen = strnlen(p->key, PIN_KEY_MAX);

	*field = "key";
	if (klen == PIN_KEY_MAX || key_kind(p->key, klen, &kind) < 0)
		return "expected ip:ADDRESS or domain:NAME";
	if (pin_key_parse(p->key, canon, sizeof(canon)) < 0)
		return kind == PIN_DST ? "not an IP address" : "not a valid domain";
	if (strcmp(canon, p->key) != 0)
		return "not in canonical form";
	*field = "kind";
	if (p->kind != kind)
		return "does not match the key";
	*field = "first_seen";
	if (p->first_seen <= 0 || p->first_seen > PIN_TIME_MAX)
		return "out of range";
	*field = "last_seen";
	if (p->last_seen <= 0 || p->last_seen > PIN_TIME_MAX)
		return "out of range";
	if (p->last_seen < p->first_seen)
		return "before first_seen";
	*field = "count";
	if (p->count == 0)
		return "must be at least 1";
	if (kind == PIN_DST) {
		*field = "tls_version";
		if (p->tls_version == 0)
			return "missing or 0";
		*field = "via";
		if (p->via[0] != '\0')
			return "only domain pins have one";
		return NULL;
	}
	*field = "tls_version";
	if (p->tls_version != 0)
		return "only destination pins have one";
	*field = "spki_sha256";
	if (p->has_spki)
		return "only destination pins have one";
	*field = "via";
	if (strnlen(p->via, PIN_VIA_MAX) == PIN_VIA_MAX)
		return "too long";
	if (p->via[0] != '\0' && (key_from_ip(p->via, canon, sizeof(canon)) < 0 ||
	    strcmp(canon + 3, p->via) != 0))
		return "not an IP address in canonical form";
	return NULL;
}

/* ---- the note queue ------------------------------------------------------------ */

static uint32_t
key_hash(const char *key)
{
	return fnv1a_str(FNV1A_INIT, key);
}

/* The queue slot of key (live or dead), or NULL; *slot: its hash slot. */
static struct pin_note *
q_find(const struct pin_store *ps, const char *key, size_t *slot)
{
	size_t i = key_hash(key) & (PIN_HASH_SLOTS - 1);

	for (; ps->hash[i] != 0; i = (i + 1) & (PIN_HASH_SLOTS - 1))
		if (strcmp(ps->q[ps->hash[i] - 1].p.key, key) == 0) {
			*slot = i;
			return &ps->q[ps->hash[i] - 1];
		}
	*slot = i;
	return NULL;
}

/* The live note for key to add a sighting to; NULL if the queue is full. */
static struct pin_note *
q_note(struct pin_store *ps, const char *key, enum pin_kind kind, int64_t now)
{
	struct pin_note *n;
	size_t slot;

	if ((n = q_find(ps, key, &slot)) != NULL && n->live) {
		if (now < n->p.first_seen)
			n->p.first_seen = now;
		if (now > n->p.last_seen)
			n->p.last_seen = now;
		n->p.count = sat_add(n->p.count, 1);
		return n;
	}
	if (n == NULL) {
		if (ps->nq == PIN_QUEUE_MAX)
			return NULL;
		n = &ps->q[ps->nq++];
		ps->hash[slot] = (uint16_t)ps->nq;
	}
	memset(n, 0, sizeof(*n));
	n->live = true;
	n->p.kind = kind;
	snprintf(n->p.key, sizeof(n->p.key), "%s", key);
	n->p.first_seen = n->p.last_seen = now;
	n->p.count = 1;
	return n;
}

static void
q_clear(struct pin_store *ps)
{
	ps->nq = 0;
	memset(ps->hash, 0, PIN_HASH_SLOTS * sizeof(*ps->hash));
}

/* Stored (unexpired) pin p plus the queued sightings in n. */
static void
pin_merge(struct pin *p, const struct pin *n)
{
	if (n->last_seen > p->last_seen)
		p->last_seen = n->last_seen;
	p->count = sat_add(p->count, n->count);
	if (p->kind == PIN_DST) {
		if (n->tls_version != 0)
			p->tls_version = n->tls_version;
		if (n->has_spki) {
			p->has_spki = true;
			memcpy(p->spki, n->spki, sizeof(p->spki));
		}
	} else if (n->via[0] != '\0')
		memcpy(p->via, n->via, sizeof(p->via));
}

void
pin_note_dst(struct pin_store *ps, const struct sockaddr *dst,
    uint16_t tls_version, const uint8_t spki[32], int64_t now)
{
	char key[PIN_KEY_MAX];
	struct pin_note *n;

	if (ps == NULL)
		return;
	if (pin_key_addr(dst, key, sizeof(key)) < 0) {
		ps->st.errors++;  /* not IPv4 or IPv6: the caller's bug */
		return;
	}
	if (ps->readonly || (n = q_note(ps, key, PIN_DST, now)) == NULL) {
		ps->st.dropped++;
		return;
	}
	ps->st.queued++;
	n->p.tls_version = tls_version;
	if (spki != NULL) {
		n->p.has_spki = true;
		memcpy(n->p.spki, spki, sizeof(n->p.spki));
	}
}

void
pin_note_domain(struct pin_store *ps, const char *domain, size_t len,
    const struct sockaddr *via, int64_t now)
{
	char key[PIN_KEY_MAX], v[sizeof("ip:") + INET6_ADDRSTRLEN];
	struct pin_note *n;

	_Static_assert(INET6_ADDRSTRLEN <= PIN_VIA_MAX, "via holds an address");
	if (ps == NULL)
		return;
	/* An address literal or a U-label: not a failure, just not pinnable. */
	if (pin_key_domain(domain, len, key, sizeof(key)) < 0)
		return;
	if (ps->readonly || (n = q_note(ps, key, PIN_DOMAIN, now)) == NULL) {
		ps->st.dropped++;
		return;
	}
	ps->st.queued++;
	if (via != NULL && pin_key_addr(via, v, sizeof(v)) == 0)
		snprintf(n->p.via, sizeof(n->p.via), "%s", v + 3);
}

/* ---- the sync thread ---------------------------------------------------------- */

static void *
sync_main(void *arg)
{
	struct pin_store *ps = arg;
	struct timespec t;
	int dead;

	pthread_mutex_lock(&ps->mu);
	ps->started = true;
	pthread_cond_broadcast(&ps->cv);
	while (!ps->stop) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		t.tv_sec += PIN_SYNC_INTERVAL;
		while (!ps->stop &&
		    pthread_cond_timedwait(&ps->cv, &ps->mu, &t) != ETIMEDOUT)
			;
		if (ps->stop)
			break;
		pthread_mutex_unlock(&ps->mu);
		if (atomic_exchange(&ps->dirty, false) &&
		    mdb_env_sync(ps->env, 1) != 0) {
			atomic_fetch_add(&ps->sync_errors, 1);
			atomic_store(&ps->dirty, true);  /* try again */
		}
		/* Free reader slots of processes that died in a read. */
		mdb_reader_check(ps->env, &dead);
		pthread_mutex_lock(&ps->mu);
	}
	pthread_mutex_unlock(&ps->mu);
	return NULL;
}

static int
sync_start(struct pin_store *ps, char *err, size_t errlen)
{
	pthread_condattr_t ca;
	sigset_t all, old;
	int rc;

	if ((rc = pthread_condattr_init(&ca)) != 0 ||
	    (rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC)) != 0 ||
	    (rc = pthread_cond_init(&ps->cv, &ca)) != 0) {
		snprintf(err, errlen, "pin store %s: sync thread: %s", ps->dir,
		    strerror(rc));
		return -1;
	}
	pthread_condattr_destroy(&ca);
	/* Signals are the event loop's: the thread blocks them all. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&ps->syncer, NULL, sync_main, ps);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		pthread_cond_destroy(&ps->cv);
		snprintf(err, errlen, "pin store %s: sync thread: %s", ps->dir,
		    strerror(rc));
		return -1;
	}
	ps->syncer_running = true;
	/*
	 * Wait until it runs: a fork() while the new thread is still being
	 * set up (by libc, or by a sanitizer's allocator under a lock) could
	 * leave the child with a lock that nobody will ever release.
	 */
	pthread_mutex_lock(&ps->mu);
	while (!ps->started)
		pthread_cond_wait(&ps->cv, &ps->mu);
	pthread_mutex_unlock(&ps->mu);
	return 0;
}

static void
sync_stop(struct pin_store *ps)
{
	if (!ps->syncer_running)
		return;
	pthread_mutex_lock(&ps->mu);
	ps->stop = true;
	pthread_cond_signal(&ps->cv);
	pthread_mutex_unlock(&ps->mu);
	pthread_join(ps->syncer, NULL);
	pthread_cond_destroy(&ps->cv);
	ps->syncer_running = false;
}

/* ---- fleet databases (helpers) ------------------------------------------------- */

/* Open the four (flags: 0 or MDB_CREATE); MDB_NOTFOUND if one is missing. */
static int
fleet_dbs(struct pin_store *ps, MDB_txn *txn, unsigned flags)
{
	MDB_val k, v;
	int rc;

	if ((rc = mdb_dbi_open(txn, FLEET_PREFIX "own", flags, &ps->own_dbi)) != 0 ||
	    (rc = mdb_dbi_open(txn, FLEET_PREFIX "dirty", flags, &ps->dirty_dbi)) != 0 ||
	    (rc = mdb_dbi_open(txn, FLEET_PREFIX "forgets", flags, &ps->forgets_dbi)) != 0 ||
	    (rc = mdb_dbi_open(txn, FLEET_PREFIX "origin", flags, &ps->origin_dbi)) != 0)
		return rc;
	k.mv_data = (void *)(uintptr_t)FLEET_SELF;
	k.mv_size = strlen(FLEET_SELF);
	if (mdb_get(txn, ps->origin_dbi, &k, &v) == 0 && v.mv_size < PIN_GW_MAX) {
		memcpy(ps->gw, v.mv_data, v.mv_size);
		ps->gw[v.mv_size] = '\0';
	}
	return 0;
}

/* The origin recorded for key into out (PIN_GW_MAX), or "". */
static void
fleet_origin(const struct pin_store *ps, MDB_txn *txn, const char *key,
    size_t klen, char *out)
{
	MDB_val k, v;

	out[0] = '\0';
	if (!ps->fleet_have)
		return;
	k.mv_data = (void *)(uintptr_t)key;
	k.mv_size = klen;
	if (mdb_get(txn, ps->origin_dbi, &k, &v) == 0 && v.mv_size > 0 &&
	    v.mv_size < PIN_GW_MAX && memchr(v.mv_data, '\0', v.mv_size) == NULL) {
		memcpy(out, v.mv_data, v.mv_size);
		out[v.mv_size] = '\0';
	}
}

static int
put_str(MDB_txn *txn, MDB_dbi dbi, const char *key, const char *val)
{
	MDB_val k, v;

	k.mv_data = (void *)(uintptr_t)key;
	k.mv_size = strlen(key);
	v.mv_data = (void *)(uintptr_t)val;
	v.mv_size = strlen(val);
	return mdb_put(txn, dbi, &k, &v, 0);
}

static int
del_key(MDB_txn *txn, MDB_dbi dbi, const char *key)
{
	MDB_val k;
	int rc;

	k.mv_data = (void *)(uintptr_t)key;
	k.mv_size = strlen(key);
	rc = mdb_del(txn, dbi, &k, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static int
put_rec(MDB_txn *txn, MDB_dbi dbi, const struct pin *p)
{
	uint8_t rec[REC_V1_SIZE];
	MDB_val k, v;

	rec_encode(p, rec);
	k.mv_data = (void *)(uintptr_t)p->key;
	k.mv_size = strlen(p->key);
	v.mv_data = rec;
	v.mv_size = sizeof(rec);
	return mdb_put(txn, dbi, &k, &v, 0);
}

/* 0 and *out, MDB_NOTFOUND (also for an unreadable record), or an error. */
static int
get_rec(MDB_txn *txn, MDB_dbi dbi, const char *key, struct pin *out)
{
	MDB_val k, v;
	int rc;

	k.mv_data = (void *)(uintptr_t)key;
	k.mv_size = strlen(key);
	if ((rc = mdb_get(txn, dbi, &k, &v)) != 0)
		return rc;
	return rec_decode(&k, &v, out) == 0 ? 0 : MDB_NOTFOUND;
}

/* Our own sightings n of a key, in the commit's transaction. */
static int
fleet_note(struct pin_store *ps, MDB_txn *txn, const struct pin *n,
    int64_t now)
{
	static const char one[] = "1";
	struct pin own;
	MDB_val k, v;
	int rc;

	rc = get_rec(txn, ps->own_dbi, n->key, &own);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	if (rc == 0 && !expired(ps, &own, now))
		pin_merge(&own, n);
	else
		own = *n;
	if ((rc = put_rec(txn, ps->own_dbi, &own)) != 0 ||
	    (rc = put_str(txn, ps->dirty_dbi, n->key, one)) != 0)
		return rc;
	k.mv_data = (void *)(uintptr_t)n->key;
	k.mv_size = strlen(n->key);
	if (ps->gw[0] != '\0' && mdb_get(txn, ps->origin_dbi, &k, &v) ==
	    MDB_NOTFOUND)
		return put_str(txn, ps->origin_dbi, n->key, ps->gw);
	return 0;
}

/* ---- open / close -------------------------------------------------------------- */

static int
registry_add(struct pin_store *ps, char *err, size_t errlen)
{
	pid_t pid = pin_pid();
	int free_slot = -1, rc = 0;

	pthread_mutex_lock(&pin_open_mu);
	for (int i = 0; i < PIN_OPEN_MAX; i++) {
		/* Entries inherited over fork() belong to the parent. */
		if (!pin_open_dirs[i].used || pin_open_dirs[i].pid != pid) {
			if (free_slot < 0)
				free_slot = i;
			continue;
		}
		if (pin_open_dirs[i].dev == ps->dev &&
		    pin_open_dirs[i].ino == ps->ino) {
			snprintf(err, errlen, "state_dir %s: already open in "
			    "this process", ps->dir);
			rc = -1;
			goto out;
		}
	}
	if (free_slot < 0) {
		snprintf(err, errlen, "state_dir %s: too many pin stores open",
		    ps->dir);
		rc = -1;
		goto out;
	}
	pin_open_dirs[free_slot].used = true;
	pin_open_dirs[free_slot].pid = pid;
	pin_open_dirs[free_slot].dev = ps->dev;
	pin_open_dirs[free_slot].ino = ps->ino;
out:
	pthread_mutex_unlock(&pin_open_mu);
	return rc;
}

static void
registry_remove(const struct pin_store *ps)
{
	pthread_mutex_lock(&pin_open_mu);
	for (int i = 0; i < PIN_OPEN_MAX; i++)
		if (pin_open_dirs[i].used && pin_open_dirs[i].pid == ps->pid &&
		    pin_open_dirs[i].dev == ps->dev &&
		    pin_open_dirs[i].ino == ps->ino)
			pin_open_dirs[i].used = false;
	pthread_mutex_unlock(&pin_open_mu);
}

/*
 * root (starttlsctl) creating the files in a directory that belongs to the
 * daemon's user would lock that user out: give them to the directory's
 * owner. lchown() never follows a symbolic link planted in the directory.
 */
static void
give_files_to_dir_owner(const char *dir, const struct stat *dst)
{
	static const char *const names[] = { "data.mdb", "lock.mdb" };
	char path[PATH_MAX + 16];
	struct stat st;

	if (geteuid() != 0 || dst->st_uid == 0)
		return;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		/* Best effort: the open itself worked. */
		if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
		    st.st_uid == 0 && lchown(path, dst->st_uid, dst->st_gid) < 0)
			break;
	}
}

struct pin_store *
pin_open(const char *dir, bool readonly, int64_t expire_secs, char *err,
    size_t errlen)
{
	struct pin_store *ps;
	struct stat st;
	MDB_txn *txn;
	int rc, dead;

	if (dir == NULL || dir[0] == '\0') {
		snprintf(err, errlen, "state_dir: empty");
		return NULL;
	}
	if (strlen(dir) >= PATH_MAX - 16) {
		snprintf(err, errlen, "state_dir: too long");
		return NULL;
	}
	if (!readonly && mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "state_dir %s: %s", dir, strerror(errno));
		return NULL;
	}
	if (stat(dir, &st) < 0) {
		snprintf(err, errlen, "state_dir %s: %s", dir, strerror(errno));
		return NULL;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "state_dir %s: %s", dir, strerror(ENOTDIR));
		return NULL;
	}
	/* Anyone could delete pins (no alerts) or plant them (4xx for all). */
	if (st.st_mode & S_IWOTH) {
		snprintf(err, errlen, "state_dir %s: writable by everyone; "
		    "refusing it (chmod o-w)", dir);
		return NULL;
	}
	if ((ps = calloc(1, sizeof(*ps))) == NULL) {
		snprintf(err, errlen, "state_dir %s: out of memory", dir);
		return NULL;
	}
	snprintf(ps->dir, sizeof(ps->dir), "%s", dir);
	ps->readonly = readonly;
	ps->expire_secs = expire_secs > 0 ? expire_secs : 0;
	ps->pid = pin_pid();
	ps->dev = st.st_dev;
	ps->ino = st.st_ino;
	atomic_init(&ps->dirty, false);
	atomic_init(&ps->sync_errors, 0);
	pthread_mutex_init(&ps->mu, NULL);
	if (registry_add(ps, err, errlen) < 0) {
		pthread_mutex_destroy(&ps->mu);
		free(ps);
		return NULL;
	}
	if (!readonly && ((ps->q = calloc(PIN_QUEUE_MAX, sizeof(*ps->q))) == NULL ||
	    (ps->hash = calloc(PIN_HASH_SLOTS, sizeof(*ps->hash))) == NULL)) {
		snprintf(err, errlen, "state_dir %s: out of memory", dir);
		goto fail;
	}
	if ((rc = mdb_env_create(&ps->env)) != 0) {
		snprintf(err, errlen, "state_dir %s: %s", dir, mdb_strerror(rc));
		goto fail;
	}
	mdb_env_set_mapsize(ps->env, PIN_MAP_SIZE);
	mdb_env_set_maxdbs(ps->env, PIN_MAX_DBS);
	rc = mdb_env_open(ps->env, dir, MDB_NOSYNC | (readonly ? MDB_RDONLY : 0),
	    0600);
	if (rc != 0) {
		if (readonly && rc == ENOENT)
			snprintf(err, errlen, "state_dir %s: no pin store there "
			    "(data.mdb: %s)", dir, mdb_strerror(rc));
		else
			snprintf(err, errlen, "state_dir %s: %s", dir,
			    mdb_strerror(rc));
		goto fail;
	}
	if (!readonly)
		give_files_to_dir_owner(dir, &st);
	if ((rc = txn_begin(ps, readonly ? MDB_RDONLY : 0, &txn)) != 0) {
		snprintf(err, errlen, "state_dir %s: %s", dir, mdb_strerror(rc));
		goto fail;
	}
	if ((rc = mdb_dbi_open(txn, NULL, 0, &ps->dbi)) != 0) {
		mdb_txn_abort(txn);
		snprintf(err, errlen, "state_dir %s: %s", dir, mdb_strerror(rc));
		goto fail;
	}
	/* The fleet's databases, if a daemon with pin_store = redis made them. */
	if ((rc = fleet_dbs(ps, txn, 0)) == 0)
		ps->fleet_have = true;
	else if (rc != MDB_NOTFOUND) {
		mdb_txn_abort(txn);
		snprintf(err, errlen, "state_dir %s: %s", dir, mdb_strerror(rc));
		goto fail;
	}
	if ((rc = mdb_txn_commit(txn)) != 0) {  /* frees txn either way */
		snprintf(err, errlen, "state_dir %s: %s", dir, mdb_strerror(rc));
		goto fail;
	}
	/* Free reader slots left by processes that died in a read. */
	mdb_reader_check(ps->env, &dead);
	if (!readonly && sync_start(ps, err, errlen) < 0)
		goto fail;
	return ps;
fail:
	if (ps->env != NULL)
		mdb_env_close(ps->env);
	registry_remove(ps);
	pthread_mutex_destroy(&ps->mu);
	free(ps->q);
	free(ps->hash);
	free(ps);
	return NULL;
}

void
pin_close(struct pin_store *ps)
{
	if (ps == NULL)
		return;
	/*
	 * A copy inherited over fork(): the environment, its locks and the
	 * sync thread are the parent's. Free only our memory.
	 */
	if (ps->pid != pin_pid()) {
		free(ps->q);
		free(ps->hash);
		free(ps);
		return;
	}
	if (!ps->readonly) {
		sync_stop(ps);
		pin_commit(ps, NULL, 0);
		mdb_env_sync(ps->env, 1);
	}
	mdb_env_close(ps->env);
	registry_remove(ps);
	pthread_mutex_destroy(&ps->mu);
	free(ps->q);
	free(ps->hash);
	free(ps);
}

/* ---- reads ------------------------------------------------------------------- */

int
pin_get(struct pin_store *ps, const char *key, int64_t now, struct pin *out,
    char *err, size_t errlen)
{
	struct pin p;
	const struct pin_note *n = NULL;
	enum pin_kind kind;
	MDB_txn *txn;
	MDB_val k, v;
	size_t slot, klen;
	bool have = false;
	int rc;

	if (ps == NULL) {
		snprintf(err, errlen, "no pin store");
		return -1;
	}
	klen = key != NULL ? strnlen(key, PIN_KEY_MAX) : 0;
	if (klen == 0 || klen == PIN_KEY_MAX || key_kind(key, klen, &kind) < 0) {
		snprintf(err, errlen, "pin store %s: bad key", ps->dir);
		return -1;
	}
	if (same_process(ps, err, errlen) < 0)
		return -1;
	if ((rc = txn_begin(ps, MDB_RDONLY, &txn)) != 0)
		return lmdb_err(ps, "read", rc, err, errlen);
	k.mv_data = (void *)(uintptr_t)key;  /* LMDB does not write keys */
	k.mv_size = klen;
	rc = mdb_get(txn, ps->dbi, &k, &v);
	if (rc == 0) {
		if (rec_decode(&k, &v, &p) == 0) {
			have = !expired(ps, &p, now);
			fleet_origin(ps, txn, key, klen, p.origin);
		} else
			ps->st.errors++;  /* unreadable: as if absent */
	}
	mdb_txn_abort(txn);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return lmdb_err(ps, "read", rc, err, errlen);
	if (ps->q != NULL && ((n = q_find(ps, key, &slot)) == NULL || !n->live))
		n = NULL;
	if (n != NULL) {
		if (have)
			pin_merge(&p, &n->p);
		else
			p = n->p;
		have = !expired(ps, &p, now);
	}
	if (!have)
		return 0;
	*out = p;
	return 1;
}

int
pin_foreach(struct pin_store *ps, int64_t now,
    int (*cb)(const struct pin *p, void *arg), void *arg, char *err,
    size_t errlen)
{
	MDB_txn *txn;
	MDB_cursor *c;
	MDB_val k, v;
	struct pin p;
	int rc;

	if (ps == NULL) {
		snprintf(err, errlen, "no pin store");
		return -1;
	}
	if (same_process(ps, err, errlen) < 0)
		return -1;
	if ((rc = txn_begin(ps, MDB_RDONLY, &txn)) != 0)
		return lmdb_err(ps, "read", rc, err, errlen);
	if ((rc = mdb_cursor_open(txn, ps->dbi, &c)) != 0) {
		mdb_txn_abort(txn);
		return lmdb_err(ps, "read", rc, err, errlen);
	}
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		/* The fleet's named databases are entries of the main one. */
		if (ps->fleet_have && k.mv_size > strlen(FLEET_PREFIX) &&
		    memcmp(k.mv_data, FLEET_PREFIX, strlen(FLEET_PREFIX)) == 0)
			continue;
		if (rec_decode(&k, &v, &p) < 0) {
			ps->st.errors++;
			continue;
		}
		if (expired(ps, &p, now))
			continue;
		fleet_origin(ps, txn, p.key, strlen(p.key), p.origin);
		if (cb(&p, arg) != 0)
			break;
	}
	mdb_cursor_close(c);
	mdb_txn_abort(txn);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return lmdb_err(ps, "read", rc, err, errlen);
	return 0;
}

/* ---- writes ------------------------------------------------------------------ */

static int
keycmp(const void *a, size_t alen, const void *b, size_t blen)
{
	int d = memcmp(a, b, alen < blen ? alen : blen);

	return d != 0 ? d : (alen > blen) - (alen < blen);
}

/*
 * Delete expired pins among up to PIN_SWEEP_MAX records, resuming where
 * the last sweep stopped and wrapping around once, so every record is
 * checked within (pins / PIN_SWEEP_MAX) commits at a bounded cost each.
 * Unreadable records are left alone: they may be a newer version's.
 */
static int
sweep(struct pin_store *ps, MDB_txn *txn, int64_t now, size_t *ndel)
{
	MDB_cursor *c;
	MDB_val k, v;
	struct pin p;
	size_t seen = 0;
	bool wrapped = false;
	int rc;

	if (ps->expire_secs == 0)
		return 0;
	if ((rc = mdb_cursor_open(txn, ps->dbi, &c)) != 0)
		return rc;
	k.mv_data = ps->sweep_key;
	k.mv_size = ps->sweep_len;
	rc = mdb_cursor_get(c, &k, &v, ps->sweep_len > 0 ? MDB_SET_RANGE :
	    MDB_FIRST);
	while (seen < PIN_SWEEP_MAX) {
		if (rc == MDB_NOTFOUND) {
			if (ps->sweep_len == 0 || wrapped)
				break;
			wrapped = true;
			rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
			continue;
		}
		if (rc != 0)
			goto out;
		if (wrapped && keycmp(k.mv_data, k.mv_size, ps->sweep_key,
		    ps->sweep_len) >= 0) {
			rc = MDB_NOTFOUND;  /* full circle */
			break;
		}
		seen++;
		if (rec_decode(&k, &v, &p) == 0 && expired(ps, &p, now)) {
			if ((rc = mdb_cursor_del(c, 0)) != 0)
				goto out;
			(*ndel)++;
		}
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	if (rc == 0 && k.mv_size < sizeof(ps->sweep_key)) {
		memcpy(ps->sweep_key, k.mv_data, k.mv_size);
		ps->sweep_len = k.mv_size;
	} else
		ps->sweep_len = 0;
	rc = 0;
out:
	mdb_cursor_close(c);
	return rc;
}

/* Write one queued note over what is stored under its key. */
static int
commit_note(struct pin_store *ps, MDB_txn *txn, const struct pin *n,
    int64_t now)
{
	uint8_t rec[REC_V1_SIZE];
	struct pin p;
	MDB_val k, v;
	int rc;

	k.mv_data = (void *)(uintptr_t)n->key;
	k.mv_size = strlen(n->key);
	rc = mdb_get(txn, ps->dbi, &k, &v);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	if (rc == 0 && rec_decode(&k, &v, &p) < 0) {
		ps->st.errors++;  /* replaced by the fresh sightings */
		rc = MDB_NOTFOUND;
	}
	if (rc == 0 && !expired(ps, &p, now))
		pin_merge(&p, n);  /* first_seen stays */
	else
		p = *n;            /* new, or back after it expired */
	if (expired(ps, &p, now)) {
		rc = mdb_del(txn, ps->dbi, &k, NULL);
		return rc == MDB_NOTFOUND ? 0 : rc;
	}
	rec_encode(&p, rec);
	v.mv_data = rec;
	v.mv_size = sizeof(rec);
	if ((rc = mdb_put(txn, ps->dbi, &k, &v, 0)) != 0)
		return rc;
	return ps->fleet ? fleet_note(ps, txn, n, now) : 0;
}

/* After MDB_MAP_FULL: purge expired pins alone, so the retry has room. */
static void
sweep_alone(struct pin_store *ps, int64_t now)
{
	MDB_txn *txn;
	size_t ndel = 0;

	if (txn_begin(ps, 0, &txn) != 0)
		return;
	if (sweep(ps, txn, now, &ndel) == 0 && ndel > 0) {
		if (mdb_txn_commit(txn) == 0)
			atomic_store(&ps->dirty, true);
		return;
	}
	mdb_txn_abort(txn);
}

int
pin_commit(struct pin_store *ps, char *err, size_t errlen)
{
	int64_t now = (int64_t)time(NULL);
	uint64_t sightings = 0;
	size_t ndel = 0, nput = 0;
	MDB_txn *txn;
	int rc;

	if (ps == NULL || ps->readonly || (ps->nq == 0 && ps->expire_secs == 0))
		return 0;  /* nothing to write, nothing to purge */
	if (same_process(ps, err, errlen) < 0)
		return -1;
	if ((rc = txn_begin(ps, 0, &txn)) != 0)
		goto fail;
	for (size_t i = 0; i < ps->nq; i++) {
		if (!ps->q[i].live)
			continue;
		if ((rc = commit_note(ps, txn, &ps->q[i].p, now)) != 0) {
			mdb_txn_abort(txn);
			goto fail;
		}
		sightings += ps->q[i].p.count;
		nput++;
	}
	if ((rc = sweep(ps, txn, now, &ndel)) != 0) {
		mdb_txn_abort(txn);
		goto fail;
	}
	if (nput == 0 && ndel == 0)
		mdb_txn_abort(txn);  /* nothing to write */
	else if ((rc = mdb_txn_commit(txn)) != 0)
		goto fail;
	else
		atomic_store(&ps->dirty, true);
	ps->st.committed += sightings;
	q_clear(ps);
	return 0;
fail:
	ps->st.errors++;
	if (rc == MDB_MAP_FULL)
		sweep_alone(ps, now);
	return lmdb_err(ps, "commit", rc, err, errlen);
}

int
pin_forget(struct pin_store *ps, const char *key, char *err, size_t errlen)
{
	struct pin_note *n = NULL;
	MDB_txn *txn;
	MDB_val k;
	size_t klen, slot;
	int rc, found;

	if (ps == NULL) {
		snprintf(err, errlen, "no pin store");
		return -1;
	}
	if (ps->readonly) {
		snprintf(err, errlen, "pin store %s: opened read-only", ps->dir);
		return -1;
	}
	klen = key != NULL ? strnlen(key, PIN_KEY_MAX) : 0;
	if (klen == 0 || klen == PIN_KEY_MAX) {
		snprintf(err, errlen, "pin store %s: bad key", ps->dir);
		return -1;
	}
	if (same_process(ps, err, errlen) < 0)
		return -1;
	if ((rc = txn_begin(ps, 0, &txn)) != 0)
		return lmdb_err(ps, "forget", rc, err, errlen);
	k.mv_data = (void *)(uintptr_t)key;
	k.mv_size = klen;
	rc = mdb_del(txn, ps->dbi, &k, NULL);
	/*
	 * In a fleet the forget is for every gateway: our own sightings go
	 * and a tombstone waits for pinsync to tell the others (even for a
	 * key not pinned here: another gateway may hold it).
	 */
	if ((rc == 0 || rc == MDB_NOTFOUND) && ps->fleet_have &&
	    key_kind(key, klen, &(enum pin_kind){ PIN_DST }) == 0) {
		uint8_t when[8];
		MDB_val w = { .mv_size = sizeof(when), .mv_data = when };
		int frc;

		put64(when, (uint64_t)time(NULL));
		if ((frc = del_key(txn, ps->own_dbi, key)) != 0 ||
		    (frc = del_key(txn, ps->dirty_dbi, key)) != 0 ||
		    (frc = del_key(txn, ps->origin_dbi, key)) != 0 ||
		    (frc = mdb_put(txn, ps->forgets_dbi, &k, &w, 0)) != 0) {
			mdb_txn_abort(txn);
			return lmdb_err(ps, "forget", frc, err, errlen);
		}
		if (rc == MDB_NOTFOUND) {
			if ((rc = mdb_txn_commit(txn)) != 0)
				return lmdb_err(ps, "forget", rc, err, errlen);
			atomic_store(&ps->dirty, true);
			rc = MDB_NOTFOUND;
			txn = NULL;
		}
	}
	if (rc == MDB_NOTFOUND) {
		if (txn != NULL)
			mdb_txn_abort(txn);
		found = 0;
	} else if (rc != 0) {
		mdb_txn_abort(txn);
		return lmdb_err(ps, "forget", rc, err, errlen);
	} else if ((rc = mdb_txn_commit(txn)) != 0)
		return lmdb_err(ps, "forget", rc, err, errlen);
	else {
		atomic_store(&ps->dirty, true);
		found = 1;
	}
	/* Sightings queued before the forget go with it. */
	if (ps->q != NULL && (n = q_find(ps, key, &slot)) != NULL && n->live) {
		n->live = false;
		found = 1;
	}
	return found;
}

int
pin_put(struct pin_store *ps, const struct pin *p, char *err, size_t errlen)
{
	uint8_t rec[REC_V1_SIZE];
	const char *why, *field;
	MDB_txn *txn;
	MDB_val k, v;
	int rc;

	if (ps == NULL) {
		snprintf(err, errlen, "no pin store");
		return -1;
	}
	if (ps->readonly) {
		snprintf(err, errlen, "pin store %s: opened read-only", ps->dir);
		return -1;
	}
	if ((why = pin_check(p, &field)) != NULL) {
		snprintf(err, errlen, "pin %.*s: %s: %s", PIN_KEY_MAX - 1, p->key,
		    field, why);
		return -1;
	}
	if (same_process(ps, err, errlen) < 0)
		return -1;
	rec_encode(p, rec);
	k.mv_data = (void *)(uintptr_t)p->key;
	k.mv_size = strlen(p->key);
	v.mv_data = rec;
	v.mv_size = sizeof(rec);
	if ((rc = txn_begin(ps, 0, &txn)) != 0)
		return lmdb_err(ps, "put", rc, err, errlen);
	if ((rc = mdb_put(txn, ps->dbi, &k, &v, 0)) != 0 ||
	    (ps->fleet_have && ((rc = put_rec(txn, ps->own_dbi, p)) != 0 ||
	    (rc = put_str(txn, ps->dirty_dbi, p->key, "1")) != 0 ||
	    (ps->gw[0] != '\0' &&
	    (rc = put_str(txn, ps->origin_dbi, p->key, ps->gw)) != 0)))) {
		mdb_txn_abort(txn);
		return lmdb_err(ps, "put", rc, err, errlen);
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		return lmdb_err(ps, "put", rc, err, errlen);
	atomic_store(&ps->dirty, true);
	return 0;
}

void
pin_get_stats(const struct pin_store *ps, struct pin_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (ps == NULL)
		return;
	*out = ps->st;
	out->errors += atomic_load(&ps->sync_errors);
}

/* ---- fleet (pin_store = redis://...) ------------------------------------------- */

bool
pin_fleet_on(const struct pin_store *ps)
{
	return ps != NULL && ps->fleet;
}

/*
 * Make the fleet databases (once, by whichever process comes first: write
 * transactions are serialised) and record our own sightings from now on.
 * The first time, everything this gateway knew becomes its own sightings,
 * so a gateway that joins a fleet publishes what it learned alone.
 */
int
pin_fleet_enable(struct pin_store *ps, const char *gateway, char *err,
    size_t errlen)
{
	static const char one[] = "1";
	MDB_txn *txn;
	MDB_cursor *c;
	MDB_val k, v;
	struct pin p;
	bool fresh;
	int rc;

	if (ps == NULL || ps->readonly || gateway == NULL || gateway[0] == '\0' ||
	    strlen(gateway) >= PIN_GW_MAX) {
		snprintf(err, errlen, "pin store: cannot join a fleet (%s)",
		    ps == NULL ? "no store" : ps->readonly ? "read-only" :
		    "bad gateway name");
		return -1;
	}
	if (same_process(ps, err, errlen) < 0)
		return -1;
	if ((rc = txn_begin(ps, 0, &txn)) != 0)
		return lmdb_err(ps, "fleet", rc, err, errlen);
	rc = mdb_dbi_open(txn, FLEET_PREFIX "own", 0, &ps->own_dbi);
	fresh = rc == MDB_NOTFOUND;
	if ((rc != 0 && !fresh) || (rc = fleet_dbs(ps, txn, MDB_CREATE)) != 0)
		goto fail;
	if ((rc = put_str(txn, ps->origin_dbi, FLEET_SELF, gateway)) != 0)
		goto fail;
	if (fresh) {
		if ((rc = mdb_cursor_open(txn, ps->dbi, &c)) != 0)
			goto fail;
		for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
		    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
			if (rec_decode(&k, &v, &p) < 0)
				continue;  /* our own databases, or unreadable */
			if ((rc = put_rec(txn, ps->own_dbi, &p)) != 0 ||
			    (rc = put_str(txn, ps->dirty_dbi, p.key, one)) != 0 ||
			    (rc = put_str(txn, ps->origin_dbi, p.key, gateway)) != 0)
				break;
		}
		mdb_cursor_close(c);
		if (rc != MDB_NOTFOUND)
			goto fail;
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		return lmdb_err(ps, "fleet", rc, err, errlen);
	atomic_store(&ps->dirty, true);
	snprintf(ps->gw, sizeof(ps->gw), "%s", gateway);
	ps->fleet_have = ps->fleet = true;
	return 0;
fail:
	mdb_txn_abort(txn);
	return lmdb_err(ps, "fleet", rc, err, errlen);
}

static int
fleet_ready(struct pin_store *ps, char *err, size_t errlen)
{
	if (ps == NULL || !ps->fleet) {
		snprintf(err, errlen, "pin store: not in a fleet");
		return -1;
	}
	return same_process(ps, err, errlen);
}

int
pin_fleet_pending(struct pin_store *ps, size_t max,
    int (*cb)(const struct pin *own, void *arg), void *arg, char *err,
    size_t errlen)
{
	MDB_txn *txn;
	MDB_cursor *c;
	MDB_val k, v;
	struct pin p;
	size_t n = 0;
	int rc;

	if (fleet_ready(ps, err, errlen) < 0)
		return -1;
	if ((rc = txn_begin(ps, MDB_RDONLY, &txn)) != 0)
		return lmdb_err(ps, "fleet read", rc, err, errlen);
	if ((rc = mdb_cursor_open(txn, ps->dirty_dbi, &c)) != 0) {
		mdb_txn_abort(txn);
		return lmdb_err(ps, "fleet read", rc, err, errlen);
	}
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && n < max;
	    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		MDB_val ov;

		if (mdb_get(txn, ps->own_dbi, &k, &ov) != 0 ||
		    rec_decode(&k, &ov, &p) < 0)
			continue;  /* gone since: the next publish drops the mark */
		n++;
		if (cb(&p, arg) != 0)
			break;
	}
	mdb_cursor_close(c);
	mdb_txn_abort(txn);
	return 0;
}

int
pin_fleet_published(struct pin_store *ps, const struct pin *own, size_t n,
    char *err, size_t errlen)
{
	MDB_txn *txn;
	struct pin cur;
	int rc;

	if (fleet_ready(ps, err, errlen) < 0)
		return -1;
	if ((rc = txn_begin(ps, 0, &txn)) != 0)
		return lmdb_err(ps, "fleet write", rc, err, errlen);
	for (size_t i = 0; i < n; i++) {
		rc = get_rec(txn, ps->own_dbi, own[i].key, &cur);
		if (rc != 0 && rc != MDB_NOTFOUND)
			goto fail;
		/* Changed since it was read: stays dirty for the next round. */
		if (rc == 0 && (cur.count != own[i].count ||
		    cur.last_seen != own[i].last_seen ||
		    cur.first_seen != own[i].first_seen))
			continue;
		if ((rc = del_key(txn, ps->dirty_dbi, own[i].key)) != 0)
			goto fail;
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		return lmdb_err(ps, "fleet write", rc, err, errlen);
	atomic_store(&ps->dirty, true);
	return 0;
fail:
	mdb_txn_abort(txn);
	return lmdb_err(ps, "fleet write", rc, err, errlen);
}

/*
 * Every own record: expired ones dropped, the others marked if mark. In
 * transactions of FLEET_WALK_CHUNK records, so the write lock (which the
 * workers' commits wait for) is never held long, and the copy-on-write
 * pages of one transaction stay few.
 */
#define FLEET_WALK_CHUNK 4096

static int
fleet_walk_own(struct pin_store *ps, int64_t now, bool mark, size_t *n,
    char *err, size_t errlen)
{
	MDB_val k, v, one = { .mv_size = 1, .mv_data = (void *)(uintptr_t)"1" };
	char at[PIN_KEY_MAX];     /* where the next chunk starts */
	size_t atlen = 0;
	bool done = false;
	struct pin p;
	int rc;

	*n = 0;
	if (fleet_ready(ps, err, errlen) < 0)
		return -1;
	while (!done) {
		MDB_txn *txn;
		MDB_cursor *c;
		size_t seen = 0;

		if ((rc = txn_begin(ps, 0, &txn)) != 0)
			return lmdb_err(ps, "fleet write", rc, err, errlen);
		if ((rc = mdb_cursor_open(txn, ps->own_dbi, &c)) != 0)
			goto fail;
		k.mv_data = at;
		k.mv_size = atlen;
		for (rc = mdb_cursor_get(c, &k, &v, atlen > 0 ? MDB_SET_RANGE :
		    MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
			if (seen++ == FLEET_WALK_CHUNK && k.mv_size <= sizeof(at)) {
				memcpy(at, k.mv_data, k.mv_size);
				atlen = k.mv_size;
				break;
			}
			/* Expired (or unreadable) own records are purged here. */
			if (rec_decode(&k, &v, &p) < 0 || expired(ps, &p, now)) {
				/* The key's bytes live in the page the delete changes. */
				char kb[PIN_KEY_MAX];
				MDB_val dk = { .mv_size = k.mv_size, .mv_data = kb };

				if (k.mv_size > sizeof(kb))
					continue;
				memcpy(kb, k.mv_data, k.mv_size);
				(*n) += !mark;
				if ((rc = mdb_cursor_del(c, 0)) != 0 ||
				    ((rc = mdb_del(txn, ps->dirty_dbi, &dk, NULL)) != 0 &&
				    rc != MDB_NOTFOUND))
					break;
				continue;
			}
			if (!mark)
				continue;
			if ((rc = mdb_put(txn, ps->dirty_dbi, &k, &one, 0)) != 0)
				break;
			(*n)++;
		}
		mdb_cursor_close(c);
		if (rc == MDB_NOTFOUND)
			done = true;
		else if (rc != 0)
			goto fail;
		if ((rc = mdb_txn_commit(txn)) != 0)
			return lmdb_err(ps, "fleet write", rc, err, errlen);
		atomic_store(&ps->dirty, true);
		continue;
fail:
		mdb_txn_abort(txn);
		return lmdb_err(ps, "fleet write", rc, err, errlen);
	}
	return 0;
}

int
pin_fleet_mark_all(struct pin_store *ps, int64_t now, size_t *marked,
    char *err, size_t errlen)
{
	return fleet_walk_own(ps, now, true, marked, err, errlen);
}

int
pin_fleet_purge(struct pin_store *ps, int64_t now, size_t *purged,
    char *err, size_t errlen)
{
	return fleet_walk_own(ps, now, false, purged, err, errlen);
}

int
pin_fleet_forgets(struct pin_store *ps, size_t max,
    int (*cb)(const char *key, int64_t when, void *arg), void *arg,
    char *err, size_t errlen)
{
	char key[PIN_KEY_MAX];
	MDB_txn *txn;
	MDB_cursor *c;
	MDB_val k, v;
	size_t n = 0;
	int rc;

	if (fleet_ready(ps, err, errlen) < 0)
		return -1;
	if ((rc = txn_begin(ps, MDB_RDONLY, &txn)) != 0)
		return lmdb_err(ps, "fleet read", rc, err, errlen);
	if ((rc = mdb_cursor_open(txn, ps->forgets_dbi, &c)) != 0) {
		mdb_txn_abort(txn);
		return lmdb_err(ps, "fleet read", rc, err, errlen);
	}
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && n < max;
	    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
		if (k.mv_size == 0 || k.mv_size >= sizeof(key) || v.mv_size != 8)
			continue;
		memcpy(key, k.mv_data, k.mv_size);
		key[k.mv_size] = '\0';
		n++;
		if (cb(key, (int64_t)get64(v.mv_data), arg) != 0)
			break;
	}
	mdb_cursor_close(c);
	mdb_txn_abort(txn);
	return 0;
}

int
pin_fleet_forget_told(struct pin_store *ps, const char *key, int64_t when,
    char *err, size_t errlen)
{
	MDB_txn *txn;
	MDB_val k, v;
	int rc;

	if (fleet_ready(ps, err, errlen) < 0)
		return -1;
	if ((rc = txn_begin(ps, 0, &txn)) != 0)
		return lmdb_err(ps, "fleet write", rc, err, errlen);
	k.mv_data = (void *)(uintptr_t)key;
	k.mv_size = strlen(key);
	rc = mdb_get(txn, ps->forgets_dbi, &k, &v);
	if (rc == 0 && v.mv_size == 8 && (int64_t)get64(v.mv_data) == when)
		rc = mdb_del(txn, ps->forgets_dbi, &k, NULL);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		mdb_txn_abort(txn);
		return lmdb_err(ps, "fleet write", rc, err, errlen);
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		return lmdb_err(ps, "fleet write", rc, err, errlen);
	return 0;
}

int
pin_fleet_begin(struct pin_store *ps, char *err, size_t errlen)
{
	int rc;

	if (fleet_ready(ps, err, errlen) < 0)
		return -1;
	if (ps->fleet_txn != NULL) {
		snprintf(err, errlen, "pin store: fleet transaction already open");
		return -1;
	}
	if ((rc = txn_begin(ps, 0, &ps->fleet_txn)) != 0) {
		ps->fleet_txn = NULL;
		return lmdb_err(ps, "fleet write", rc, err, errlen);
	}
	return 0;
}

int
pin_fleet_end(struct pin_store *ps, bool commit, char *err, size_t errlen)
{
	int rc;

	if (ps == NULL || ps->fleet_txn == NULL)
		return 0;
	if (!commit) {
		mdb_txn_abort(ps->fleet_txn);
		ps->fleet_txn = NULL;
		return 0;
	}
	rc = mdb_txn_commit(ps->fleet_txn);
	ps->fleet_txn = NULL;
	if (rc != 0)
		return lmdb_err(ps, "fleet write", rc, err, errlen);
	atomic_store(&ps->dirty, true);
	return 0;
}

/* Add sightings b (another gateway's, or ours) to the merged pin a. */
static void
fleet_merge(struct pin *a, const struct pin *b)
{
	bool newer = b->last_seen > a->last_seen;

	if (b->first_seen < a->first_seen)
		a->first_seen = b->first_seen;
	if (newer)
		a->last_seen = b->last_seen;
	a->count = sat_add(a->count, b->count);
	/* The latest sighting says what the server speaks now. */
	if (!newer)
		return;
	if (a->kind == PIN_DST) {
		a->tls_version = b->tls_version;
		a->has_spki = b->has_spki;
		memcpy(a->spki, b->spki, sizeof(a->spki));
	} else if (b->via[0] != '\0')
		memcpy(a->via, b->via, sizeof(a->via));
}

int
pin_fleet_apply(struct pin_store *ps, const char *key, int64_t forgot_at,
    const struct pin_remote *r, size_t n, int64_t now)
{
	MDB_txn *txn;
	struct pin own, m;
	const char *origin = NULL;
	int64_t origin_first = 0;
	bool have = false;
	int rc;

	if (ps == NULL || (txn = ps->fleet_txn) == NULL)
		return EINVAL;
	rc = get_rec(txn, ps->own_dbi, key, &own);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	if (rc == 0 && (expired(ps, &own, now) || own.last_seen <= forgot_at)) {
		/* Forgotten by the fleet (or expired): ours goes too. */
		if ((rc = del_key(txn, ps->own_dbi, key)) != 0 ||
		    (rc = del_key(txn, ps->dirty_dbi, key)) != 0)
			return rc;
		rc = MDB_NOTFOUND;
	}
	if (rc == 0) {
		m = own;
		have = true;
		origin = ps->gw;
		origin_first = own.first_seen;
	}
	for (size_t i = 0; i < n; i++) {
		const struct pin *p = &r[i].p;

		if (strcmp(r[i].gw, ps->gw) == 0 || strcmp(p->key, key) != 0 ||
		    expired(ps, p, now) || p->last_seen <= forgot_at)
			continue;
		if (!have) {
			m = *p;
			have = true;
		} else
			fleet_merge(&m, p);
		if (origin == NULL || p->first_seen < origin_first ||
		    (p->first_seen == origin_first && strcmp(r[i].gw, origin) < 0)) {
			origin = r[i].gw;
			origin_first = p->first_seen;
		}
	}
	if (!have) {
		if ((rc = del_key(txn, ps->dbi, key)) != 0 ||
		    (rc = del_key(txn, ps->origin_dbi, key)) != 0)
			return rc;
		return 0;
	}
	m.origin[0] = '\0';
	if ((rc = put_rec(txn, ps->dbi, &m)) != 0)
		return rc;
	return origin != NULL && origin[0] != '\0' ?
	    put_str(txn, ps->origin_dbi, key, origin) : 0;
}
