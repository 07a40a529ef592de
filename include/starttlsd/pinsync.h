/*
 * pinsync: a fleet of gateways sharing pins through Redis (pin_store =
 * redis://...). LMDB stays every gateway's own copy, and the only thing
 * lookups ever read; one small unprivileged process per gateway (forked by
 * the master, like a worker, but with no listener) publishes this
 * gateway's own sightings and forgets to Redis in batches and pulls the
 * others' into LMDB, merged by the pin store's rules (pinstore.h, "fleet").
 * Workers never talk to Redis, never wait for it: Redis down or slow only
 * delays what the other gateways learn.
 *
 * Redis layout, all under the fleet's prefix P (pin_store_prefix):
 *   P pin:KEY   a hash: field GATEWAY = that gateway's own sightings of KEY
 *               ("1 FIRST LAST COUNT TLSVERSION SPKIHEX|- VIA|-"), field
 *               "!forget" = "WHEN GATEWAY" (the latest fleet-wide forget);
 *               the key expires pin_expire after the latest sighting.
 *   P changes   a sorted set: KEY scored by the Redis time (ms) of its last
 *               change; gateways pull what changed since their last pull.
 * Anything else under P is never read; what is read and is not what we
 * write (wrong type, oversized, unparsable, a non-canonical key, a field
 * that is no gateway name) is skipped with an event=pinstore line.
 *
 * Details and the reasons: docs/policy.md, "A fleet of gateways".
 */
#ifndef STARTTLSD_PINSYNC_H
#define STARTTLSD_PINSYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "starttlsd/config.h"
#include "starttlsd/pinstore.h"
#include "starttlsd/priv.h"

#define PINSYNC_VAL_MAX 256   /* a longer field value is garbage */

/* pin_store, parsed: redis://[user[:password]@]host[:port][/db] or
 * redis+unix://[user[:password]@]/path/to/socket[?db=N]. */
struct pinsync_url {
	bool unix_socket;
	char host[256];          /* TCP: name or address (IPv6 without []) */
	unsigned port;           /* TCP: default 6379 */
	char path[108];          /* unix socket */
	char user[128];          /* ACL user; "" for the default user */
	char password[256];      /* "" unless in the URL (better: a file) */
	unsigned db;             /* SELECT; default 0 */
};

/* 0, or -1 with err ("pin_store: ..."). */
int pinsync_url_parse(const char *s, struct pinsync_url *out, char *err,
    size_t errlen);
/* pin_store names Redis (not "lmdb"). */
bool pinsync_wanted(const struct config *c);
/* A gateway name: 1..63 of [A-Za-z0-9._-]. */
bool pinsync_gw_valid(const char *s, size_t len);

/* A gateway's field value for pin p; -1 if it does not fit cap. */
int pinsync_value_format(const struct pin *p, char *out, size_t cap);
/*
 * Parse a field value (len bytes, not NUL-terminated) for key into out,
 * checked as pin_put checks an import; -1 with *why on anything else.
 */
int pinsync_value_parse(const char *key, const char *val, size_t len,
    struct pin *out, const char **why);

/*
 * Master (or the single process): fork the sync process, restart it when
 * it dies. cleanup(arg) runs first in the child (close what the parent
 * holds: listeners, pipes). 0 or -1 (logged).
 */
int pinsync_spawn(struct ev_loop *loop, const struct config *c,
    const struct priv_user *u, void (*cleanup)(void *), void *arg);
/* Stop restarting it and tell it to go (it exits on its pipe's EOF). */
void pinsync_stop(struct ev_loop *loop);
/* In a worker just forked: close the inherited end of its pipe. */
void pinsync_child_close(struct ev_loop *loop);

#endif
