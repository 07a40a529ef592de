/*
 * session: one intercepted connection. It owns both legs, the relay state
 * (the queue of replies owed to the client, in command order, and where the
 * client's byte stream is: commands, DATA body, BDAT chunk), the phase
 * timers and the single event=session log line written at the end.
 */
#ifndef STARTTLSD_SESSION_H
#define STARTTLSD_SESSION_H

#include <stdbool.h>
#include <sys/socket.h>

#include <ev.h>
#include <openssl/ssl.h>

#include "starttlsd/env.h"
#include "starttlsd/sesscount.h"

/* Why a connection is answered 421 at once instead of relayed. */
enum sess_refuse {
	SESS_ACCEPT,            /* relay it */
	SESS_REFUSE_LOOP,       /* our own connection, or to ourselves: 4.4.6 */
	SESS_REFUSE_NO_DST,     /* not redirected to us: no original destination */
	SESS_REFUSE_SESSIONS,   /* max_sessions reached */
	SESS_REFUSE_CLIENT,     /* max_sessions_per_client reached: 4.7.0 */
};
/* The session line's reason: "loop", "too many sessions", ... */
const char *sess_refuse_str(enum sess_refuse r);

/*
 * Take over an accepted client socket. dst is where the client was going
 * (ignored in smarthost mode). refuse: unless SESS_ACCEPT, answer 421 and
 * log why instead of relaying.
 */
void sess_start(struct ev_loop *loop, struct sess_env *env, int fd,
    const struct sockaddr *client, const struct sockaddr *dst,
    socklen_t dstlen, enum sess_refuse refuse);

struct pdclient;
/*
 * The worker's client of the policy process (pdclient.h), or NULL: with
 * it, recipient domains are judged under DANE and MTA-STS (domainpol.h).
 */
void sess_set_pdclient(struct pdclient *c);

/* Number of live sessions. */
unsigned sess_count(void);
/*
 * Shutdown: sessions idle at a command boundary are ended now with 421;
 * the others when they reach one (or at sess_close_all()).
 */
void sess_drain(void);
/* End every session at once (drain timeout): 421 to clients, log lines. */
void sess_close_all(const char *reason);

#endif
