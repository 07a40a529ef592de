/*
 * upstream: the server leg, from connect to "ready to relay": greeting,
 * EHLO (or HELO), STARTTLS and the BoringSSL handshake (the EHLO after it is
 * the client's own, relayed by the session), with the
 * opportunistic fallback of RFC 7435 (reconnect without STARTTLS when it is
 * refused or the handshake fails). It never talks to the client: it hands
 * the session a result and, on success, a connected struct conn.
 *
 * Ownership: the caller owns the struct conn and lends it to up_start().
 * While lent, upstream alone uses it (connects, closes, reconnects it, sets
 * its callbacks). The loan ends when done() is called: on UP_RES_READY the
 * conn is open and idle (no timer), and the caller must install its own
 * callbacks (conn_set_cb) before returning from done(); on any other
 * result it has been closed. up_take_greeting() hands over the greeting.
 */
#ifndef STARTTLSD_UPSTREAM_H
#define STARTTLSD_UPSTREAM_H

#include <stdbool.h>
#include <sys/socket.h>

#include "starttlsd/conn.h"
#include "starttlsd/policy.h"
#include "starttlsd/smtp.h"
#include "starttlsd/tls.h"

enum up_state {
	UP_IDLE,      /* not started */
	UP_CONNECT,
	UP_GREETING,
	UP_EHLO,
	UP_HELO,
	UP_STARTTLS,
	UP_HANDSHAKE,
	UP_READY,
	UP_DONE,      /* refused or failed: the conn is closed */
};

enum up_result {
	UP_RES_READY,   /* relay may start; greeting holds the server's 220 */
	UP_RES_REFUSED, /* the server said no (421/554...): reply holds it */
	UP_RES_FAILED,  /* no usable answer: reason says why */
	UP_RES_BLOCKED, /* policy: TLS required and not to be had (enforce) */
	UP_RES_INJECTION, /* bytes came behind the server's 220 to STARTTLS
	                     (CVE-2011-0411 class): an attack, aborted */
};

#define UP_MAX_ALERTS 4

/* A policy outcome seen while negotiating, for the session to log. */
struct up_alert {
	struct policy_out out;
	char detail[96];
};

/* What the Internet leg ended up as; the session log's "action". */
enum up_action {
	UP_ACT_NONE,
	UP_ACT_UPGRADED,  /* TLS */
	UP_ACT_PLAINTEXT, /* the server offered no STARTTLS */
	UP_ACT_FALLBACK,  /* STARTTLS was tried, failed, plaintext reconnect */
};

/* Settings shared by all sessions of one configuration (borrowed). */
struct up_params {
	const char *helo_name;
	SSL_CTX *ctx;
	const char *sni;        /* smarthost name, or NULL */
	uint32_t mark;
	bool transparent_source;  /* connect from the client's address (TPROXY) */
	unsigned connect_timeout, greeting_timeout, reply_timeout, tls_timeout;
	size_t max_line, max_lines, bufmax;
};

struct upstream;
/* Returns -1 when the owner freed itself (nothing may be touched). */
typedef int (*up_done_cb)(struct upstream *up, enum up_result res, void *arg);

#define UP_MAGIC 0x75707374u /* "upst": reached through conn's void *arg */

struct upstream {
	uint32_t magic;
	struct conn *conn;          /* lent by the caller, up_start to done() */
	enum up_state state;        /* changed only by up_enter() */
	const struct up_params *p;
	struct sockaddr_storage dst;
	socklen_t dstlen;
	struct sockaddr_storage src; /* the client, for transparent_source */
	char dst_key[320];           /* "addr:port" or "addr:port/sni", the TLS session cache key */
	char sni[256];               /* SNI sent ("" : none, or the smarthost's name) */
	unsigned attempt;           /* 1, or 2 after a fallback reconnect */
	bool no_starttls;           /* the fallback attempt never tries TLS */
	bool mark_failed;
	struct sockaddr_storage local; /* our end of the current connection */
	socklen_t locallen;            /* 0 while not connected */
	enum up_action action;
	struct smtp_caps caps;      /* the last EHLO reply's */
	bool esmtp;                 /* EHLO accepted (else HELO) */
	bool tls;
	struct tls_info tls_info;
	char tls_error[160];        /* why TLS was not used */
	enum policy_signal tls_sig; /* ... as a signal (NONE: TLS, or no try) */
	double hs_start;            /* when the handshake began (ev_time) */
	char *greeting;             /* the server's 220, for the client */
	size_t greeting_len;
	char *reply;                /* a refusal to relay to the client */
	size_t reply_len;
	char reason[160];           /* failure */
	struct policy_ctx pol;      /* what policy knows of this destination */
	struct up_alert alerts[UP_MAX_ALERTS];
	size_t nalerts;
	up_done_cb done;
	void *arg;
};

/* A struct upstream that was never started (up_cleanup is a no-op on it). */
void up_init(struct upstream *up);
/*
 * Begin on conn (lent, see above; conn_init'ed with fd -1). done() is
 * called exactly once (asserted) unless up_cleanup comes first; from
 * within up_start too, which then returns what done() returned. sni: the
 * name to send (a DANE or MTA-STS name learned for this address), or NULL
 * for p->sni (the smarthost's name, or none).
 */
int up_start(struct upstream *up, struct conn *conn, struct ev_loop *loop,
    const struct up_params *p, const struct policy_ctx *pol, const char *sni,
    const struct sockaddr *client, const struct sockaddr *dst, socklen_t dstlen,
    up_done_cb done, void *arg);
/*
 * After UP_RES_READY: the server's greeting (for the client), handed over
 * (the caller frees it); NULL when taken already.
 */
char *up_take_greeting(struct upstream *up, size_t *len);
/*
 * Ends the loan if still running (the caller then closes the conn), stops
 * announcing the connection's port (loops), frees what upstream holds.
 */
void up_cleanup(struct upstream *up);

const char *up_state_str(enum up_state s);
const char *up_action_str(enum up_action a);

#endif
