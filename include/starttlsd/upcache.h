/*
 * upcache: parked upstream connections, per worker process.
 *
 * A client session that ends cleanly (QUIT, nothing outstanding) may hand
 * its server connection, already past STARTTLS and the handshake, to the
 * cache instead of closing it. The cache resets it (RSET, and waits for the
 * 250), then keeps it idle under a key: the destination, the source address
 * where the client's own is used (transparent_source), and the options a
 * connection was made with. The next client session to that key takes it:
 * the client gets the greeting at once and its own EHLO goes over it.
 *
 * What may be parked, and when a parked connection may be used, is the
 * session's decision (session.c: sess_parkable, sess_take); the cache
 * keeps them bounded (idle time, age, uses, per key and in all) and closes
 * any connection the server spoke on or closed while idle.
 *
 * Ownership: upc_park() takes the conn and the greeting; upc_take() gives
 * them back to the caller, who then sets the conn's callbacks.
 */
#ifndef STARTTLSD_UPCACHE_H
#define STARTTLSD_UPCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <ev.h>

#include "starttlsd/conn.h"
#include "starttlsd/policy.h"
#include "starttlsd/upstream.h"

struct upc_params {
	bool on;
	unsigned idle;        /* seconds a parked connection may wait */
	unsigned max_age;     /* seconds since it was opened */
	unsigned max_uses;    /* client sessions one connection may carry */
	unsigned per_key;     /* parked connections per destination */
	unsigned max;         /* parked connections in all (this worker) */
	unsigned reply_timeout; /* for the RSET's reply */
};

/* A negotiated server connection, as it is handed to and from the cache. */
struct upc_conn {
	struct conn *conn;          /* TLS, open, no callbacks of the caller */
	struct upstream up;         /* what was negotiated (conn, done, arg,
	                               greeting and reply cleared) */
	char *greeting;             /* the server's 220, for the next client */
	size_t greeting_len;
	unsigned uses;              /* client sessions it has carried */
	ev_tstamp born;             /* when it was connected */
	struct policy_ctx facts;    /* the policy facts it was negotiated under */
};

#define UPC_KEY_MAX 420  /* "dst|src" and "/sni" (a name, 253 at most) */
/* The key: "dst|src" (src: the client's address without port, or "-"). */
void upc_key(char *out, size_t cap, const struct sockaddr_storage *dst,
    const struct sockaddr_storage *src);

/* Once per process that parks (a worker); without it nothing is parked. */
void upc_init(struct ev_loop *loop);
/* Take pc over (conn, greeting); pc is zeroed. Closes it if it cannot stay. */
void upc_park(const struct upc_params *p, const char *key, struct upc_conn *pc);
/*
 * The most recently parked live connection for key (the server has not
 * closed it nor said anything since its RSET was answered), within its age
 * and use limits; false if none. The caller owns out's conn and greeting.
 */
bool upc_take(const struct upc_params *p, const char *key, struct upc_conn *out);
/* Close every parked connection of key (NULL: all), e.g. at shutdown. */
void upc_drop(const char *key);
/* Parked (and resetting) connections in this worker. */
unsigned upc_count(void);

#endif
