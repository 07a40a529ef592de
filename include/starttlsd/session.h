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

#include "starttlsd/config.h"
#include "starttlsd/pinstore.h"
#include "starttlsd/policy.h"
#include "starttlsd/upstream.h"

/*
 * What every session of one configuration shares. Reference-counted, so a
 * reload can swap in a new one while running sessions keep theirs.
 */
struct sess_env {
	unsigned refs;
	struct config cfg;        /* owned */
	SSL_CTX *up_ctx;          /* owned */
	SSL_CTX *client_ctx;      /* owned; NULL: no STARTTLS on the LAN leg */
	struct up_params up;
	struct sockaddr_storage upstream_addr; /* smarthost mode */
	socklen_t upstream_len;   /* 0: transparent */
	char upstream_host[256];
	struct policy policy;     /* owned: the policy file */
	enum policy_mode mode;
	struct pin_store *pins;   /* borrowed, process-wide; NULL: none */
};

/*
 * Turn a validated configuration into what sessions share: TLS contexts,
 * the policy file, the smarthost address, the upstream parameters. Takes
 * cfg over (it is zeroed); pins is borrowed. NULL with err on failure.
 */
struct sess_env *sess_env_new(struct config *cfg, struct pin_store *pins,
    char *err, size_t errlen);
struct sess_env *sess_env_ref(struct sess_env *e);
void sess_env_unref(struct sess_env *e);

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

/*
 * Counts shared by all workers (set up before they are forked): sessions
 * in all, and from one client address (port ignored).
 */
int sess_shared_init(size_t nslots);
/* This process counts in slot (a worker's index). */
void sess_shared_use(size_t slot);
/* A worker died: forget what its slot counted. */
void sess_shared_reset(size_t slot);
unsigned sess_count_all(void);
unsigned sess_count_client(const struct sockaddr_storage *peer);

/* Number of live sessions. */
unsigned sess_count(void);
/*
 * Shutdown: sessions idle at a command boundary are ended now with 421;
 * the others when they reach one (or at sess_close_all()).
 */
void sess_drain(void);
/* End every session at once (drain timeout): 421 to clients, log lines. */
void sess_close_all(const char *reason);

/* "192.0.2.1:25" / "[2001:db8::1]:25" */
void sess_addr_str(const struct sockaddr *sa, char *out, size_t cap);

#endif
