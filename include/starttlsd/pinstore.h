/*
 * pinstore: LMDB-backed memory of which destinations and recipient domains
 * were reached over TLS. Crash-safe and multi-process safe (LMDB), shared
 * by the daemon and starttlsctl.
 *
 * Writes never block the event loop on a disk sync: the daemon queues them
 * (pin_note_*), commits the queue in one write transaction on a timer
 * (pin_commit, no fsync: the environment is opened MDB_NOSYNC) and a
 * background thread calls mdb_env_sync() every 5 seconds. A crash of the
 * process loses only what was still queued (at most one commit interval);
 * a crash of the machine (power loss, kernel panic) loses at most the last
 * commit interval + 5 s of sightings. LMDB's copy-on-write pages keep the
 * database consistent as long as the file system writes in order; pins are
 * a cache of sightings, so the worst case is relearning them.
 *
 * One handle per directory per process, opened in the process that uses
 * it: after fork() only the child's own pin_open is usable (LMDB's locks
 * are per process), and a second pin_open of the same directory in one
 * process is refused. pin_* calls are for one thread (the event loop).
 *
 * Reads always open a fresh read transaction, so a pin another process
 * forgot (starttlsctl forget) is gone for the very next session. Queued,
 * uncommitted notes are visible to pin_get_* of the same process.
 *
 * Keys: "ip:" + canonical address text ("ip:198.51.100.25",
 * "ip:2001:db8::25"), "domain:" + lower-case domain ("domain:example.net").
 * Values: fixed-size little-endian records (versioned), see pinstore.c.
 */
#ifndef STARTTLSD_PINSTORE_H
#define STARTTLSD_PINSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

#define PIN_KEY_MAX 300      /* "domain:" + 255 + NUL, rounded */
#define PIN_VIA_MAX 48       /* an address in text form */
#define PIN_QUEUE_MAX 4096   /* queued, uncommitted notes (distinct keys) */
#define PIN_EXPIRE_DEFAULT (30 * 86400)  /* starttlsctl's default */
#define PIN_TIME_MAX INT64_C(253402300799)  /* 9999-12-31T23:59:59Z */
#define PIN_GW_MAX 64        /* a gateway's name in a fleet (pinsync.h) */

enum pin_kind { PIN_DST, PIN_DOMAIN };

struct pin {
	enum pin_kind kind;
	char key[PIN_KEY_MAX];  /* "ip:..." or "domain:..." */
	int64_t first_seen;     /* unix seconds: first TLS sighting */
	int64_t last_seen;      /* last TLS sighting */
	uint64_t count;         /* TLS sightings */
	/* PIN_DST */
	uint16_t tls_version;   /* 0x0303 TLS 1.2, 0x0304 TLS 1.3 */
	uint8_t spki[32];       /* SHA-256 of the leaf's SubjectPublicKeyInfo */
	bool has_spki;
	/* PIN_DOMAIN */
	char via[PIN_VIA_MAX];  /* the destination address it was last delivered to over TLS */
	/* Fleet (pin_store = redis://...): the gateway that saw it first; "" otherwise. */
	char origin[PIN_GW_MAX];
};

struct pin_store;

/*
 * Open (and create) the store in dir (created 0700 if missing). readonly:
 * starttlsctl list/show/export. expire_secs: pins whose last_seen is older
 * than now - expire_secs are treated as absent by pin_get and pin_foreach
 * (0: never expire); pin_commit also purges them. Returns NULL with err.
 */
struct pin_store *pin_open(const char *dir, bool readonly, int64_t expire_secs,
    char *err, size_t errlen);
/*
 * Commits queued notes (best effort), syncs, stops the sync thread, closes.
 * Accepts NULL.
 */
void pin_close(struct pin_store *ps);

/* Canonical keys. Returns 0, or -1 if it does not fit / bad input. */
int pin_key_addr(const struct sockaddr *sa, char *out, size_t cap);
int pin_key_domain(const char *domain, size_t len, char *out, size_t cap);
/*
 * What starttlsctl is given: "198.51.100.25", "2001:db8::25" or
 * "example.net" (or an already prefixed key) → canonical key.
 */
int pin_key_parse(const char *arg, char *out, size_t cap);

/* 1 found (and not expired), 0 absent, -1 store error (err filled). */
int pin_get(struct pin_store *ps, const char *key, int64_t now, struct pin *out,
    char *err, size_t errlen);

/*
 * Queue a TLS sighting (no I/O). For PIN_DST: tls_version and spki; for
 * PIN_DOMAIN: via. first_seen is kept from the stored pin; count += 1.
 * The queue is bounded (PIN_QUEUE_MAX notes, later ones for the same key
 * merge); when full, further notes are dropped and counted in
 * pin_stats.dropped. A domain pin_key_domain refuses (an address literal,
 * a non-ASCII name) is ignored; via NULL leaves via empty.
 */
void pin_note_dst(struct pin_store *ps, const struct sockaddr *dst,
    uint16_t tls_version, const uint8_t spki[32], int64_t now);
void pin_note_domain(struct pin_store *ps, const char *domain, size_t len,
    const struct sockaddr *via, int64_t now);

/*
 * Write the queue in one transaction (no fsync), purging expired pins met
 * on the way. 0, or -1 with err: the notes stay queued for the next call.
 */
int pin_commit(struct pin_store *ps, char *err, size_t errlen);

/* Remove one pin now (own transaction). 1 removed, 0 not there, -1 error. */
int pin_forget(struct pin_store *ps, const char *key, char *err, size_t errlen);

/*
 * Every unexpired committed pin, in key order; cb returns non-zero to stop.
 * cb runs inside a read transaction: it must not call into the store.
 */
int pin_foreach(struct pin_store *ps, int64_t now,
    int (*cb)(const struct pin *p, void *arg), void *arg, char *err,
    size_t errlen);

/* Insert or replace a pin as given (import). Own transaction. */
int pin_put(struct pin_store *ps, const struct pin *p, char *err, size_t errlen);
/*
 * Why p cannot be stored by pin_put (canonical key, kind, times, count,
 * fields of the other kind), with *field set to the JSON member at fault;
 * NULL if it can.
 */
const char *pin_check(const struct pin *p, const char **field);

struct pin_stats {
	uint64_t queued, committed, dropped, errors;
};
void pin_get_stats(const struct pin_store *ps, struct pin_stats *out);

/* Pins as JSON (starttlsctl only): starttlsd/pinjson.h. */

/*
 * Fleet hooks (pin_store = a Redis URL, see pinsync.h). Four more LMDB
 * databases in the same environment, written in the same transactions as
 * the pins themselves:
 *   fleet:own     this gateway's own sightings per key (a pin record): what
 *                 it publishes, never what others told it;
 *   fleet:dirty   keys whose own record changed since it was published;
 *   fleet:forgets keys forgotten here (starttlsctl forget) and when, until
 *                 the fleet is told;
 *   fleet:origin  the gateway that saw a key first ("@self": our own name).
 * The pin a lookup reads stays the merge of all of them (pin_fleet_apply),
 * so lookups never depend on the network. Without pin_fleet_enable the
 * store behaves exactly as before; pin_forget and pin_put keep the fleet
 * databases right whenever they exist (starttlsctl needs no option).
 */
int pin_fleet_enable(struct pin_store *ps, const char *gateway, char *err,
    size_t errlen);
bool pin_fleet_on(const struct pin_store *ps);

/* Up to max own records waiting to be published; cb non-zero stops. */
int pin_fleet_pending(struct pin_store *ps, size_t max,
    int (*cb)(const struct pin *own, void *arg), void *arg, char *err,
    size_t errlen);
/* They were published as given: clear each dirty mark still about them. */
int pin_fleet_published(struct pin_store *ps, const struct pin *own, size_t n,
    char *err, size_t errlen);
/* Mark every unexpired own record dirty (Redis came back, maybe empty). */
int pin_fleet_mark_all(struct pin_store *ps, int64_t now, size_t *marked,
    char *err, size_t errlen);
/* Drop own records past pin_expire (mark_all does too); *purged: how many. */
int pin_fleet_purge(struct pin_store *ps, int64_t now, size_t *purged,
    char *err, size_t errlen);

/* Up to max local forgets to tell the fleet about. */
int pin_fleet_forgets(struct pin_store *ps, size_t max,
    int (*cb)(const char *key, int64_t when, void *arg), void *arg,
    char *err, size_t errlen);
/* Told: drop the tombstone of key if it is still the one of when. */
int pin_fleet_forget_told(struct pin_store *ps, const char *key, int64_t when,
    char *err, size_t errlen);

/* Another gateway's view of a key (parsed and checked by the caller). */
struct pin_remote {
	char gw[PIN_GW_MAX];
	struct pin p;
};
/*
 * The fleet's view of key: forgot_at (0: none) is the latest fleet-wide
 * forget; r[] the other gateways' own records. In one write transaction
 * (begin ... end): our own record is dropped if it predates the forget,
 * and the pin lookups read becomes own + remotes merged (first seen the
 * earliest, last seen the latest, counts added, version, key and via from
 * the latest sighting), or is removed when nothing is left.
 */
int pin_fleet_begin(struct pin_store *ps, char *err, size_t errlen);
int pin_fleet_apply(struct pin_store *ps, const char *key, int64_t forgot_at,
    const struct pin_remote *r, size_t n, int64_t now);
int pin_fleet_end(struct pin_store *ps, bool commit, char *err, size_t errlen);

/* Whether p is past pin_expire at now (as pin_get sees it). */
bool pin_expired(const struct pin_store *ps, const struct pin *p, int64_t now);

#endif
