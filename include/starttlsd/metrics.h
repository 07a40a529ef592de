/*
 * metrics: counters and histograms kept across processes, and their
 * Prometheus text exposition (docs/metrics.md names them).
 *
 * One struct in shared memory: a file in state_dir ("metrics"), mapped by
 * the master before it forks the workers (so every worker adds into the
 * same counters with atomic adds) and read by starttlsctl stats. Without a
 * state_dir it is an anonymous mapping (served, not readable by ctl).
 * Counters only ever grow while the file lives; a daemon start makes it
 * anew (the process start time tells a scraper so).
 *
 * Writers: the session (at its end), upstream (handshakes), the master
 * (workers, reloads), whoever logs an event=pinstore error. Readers:
 * metrics_render(), for a worker's HTTP endpoint (metrics_listen: served
 * by the workers, never the root master) and for starttlsctl stats.
 */
#ifndef STARTTLSD_METRICS_H
#define STARTTLSD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "starttlsd/policy.h"
#include "starttlsd/policyd.h"

/* The session line's action. */
enum m_action { M_UPGRADED, M_PLAINTEXT, M_FALLBACK, M_REFUSED, M_BLOCKED, M_ACTION_N };
/* The session line's tls. */
enum m_tlsv { M_TLS_NONE, M_TLS12, M_TLS13, M_TLS_OTHER, M_TLSV_N };
/* event=attack signals, each with its one action. */
enum m_attack {
	M_ATK_RESPONSE_INJECTION, /* blocked */
	M_ATK_COMMAND_INJECTION,  /* discarded */
	M_ATK_SMTP_SMUGGLING,     /* blocked */
	M_ATK_BDAT_NOT_OFFERED,   /* refused */
	M_ATTACK_N
};
/* event=pinstore errors by operation. */
enum m_pinop { M_PIN_OPEN, M_PIN_COMMIT, M_PIN_READ, M_PIN_SYNC, M_PIN_OTHER, M_PINOP_N };

#define M_SIG_N (POLICY_SIG_DOMAIN_DOWNGRADE + 1)
#define M_SLOTS 128 /* per-worker gauges, as sesscount's slots */

const char *m_attack_str(enum m_attack a);
const char *m_attack_action_str(enum m_attack a);

/*
 * Map the shared counters: path (the file, made anew, mode 0644, owned
 * by uid if uid is not -1), or NULL for an anonymous mapping. Once, in
 * the master before the fork; 0 or -1 with err.
 */
int metrics_init(const char *path, long uid, char *err, size_t errlen);
bool metrics_on(void);
/* This process's worker slot, for its gauges. */
void metrics_use(size_t slot);
/* A worker died: its gauges (sessions open) go. */
void metrics_reset_slot(size_t slot);

/* ---- writers --------------------------------------------------------------- */

struct m_session {
	enum m_action action;
	enum m_tlsv tls;
	uint64_t msgs, bytes_up, bytes_down;
	double duration;            /* seconds */
	enum policy_signal tls_error; /* POLICY_SIG_NONE: none */
	unsigned rcpt_domains;      /* distinct accepted recipient domains */
};
void metrics_session_open(int delta);
void metrics_session(const struct m_session *m);
void metrics_downgrade(enum policy_signal sig, bool blocked);
void metrics_attack(enum m_attack a);
void metrics_handshake(enum m_tlsv v, double seconds);
void metrics_worker_started(void);
void metrics_worker_exited(bool expected);
void metrics_workers(unsigned n);
void metrics_pinstore_error(enum m_pinop op);
void metrics_reload(bool ok);
/* A recipient domain judged under DANE (dane) or MTA-STS: its result. */
void metrics_domain_policy(bool dane, enum pd_result r, bool blocked);
void metrics_reused(void);
void metrics_handoff(void);       /* a session handed to another worker (steer.h) */        /* a session took a parked connection */
void metrics_reuse_retry(void);   /* ... which was dead: a fresh one made */
void metrics_parked(int n);       /* this worker's parked connections now */
/* The fleet's sync process (pinsync.h): Redis up or not, and its counts. */
enum m_sync { M_SYNC_OUTAGES, M_SYNC_PUBLISHED, M_SYNC_MERGED, M_SYNC_SKIPPED, M_SYNC_N };
void metrics_pinsync_up(bool up);
void metrics_pinsync(enum m_sync what, uint64_t n);

enum m_tlsv m_tlsv_of(const char *version);

/* ---- readers ---------------------------------------------------------------- */

/*
 * The Prometheus text format (version 0.0.4) into out; pins: the gauge
 * starttlsd_pins, or -1 to leave it out. Returns the length, or -1 when
 * out is too small (METRICS_TEXT_MAX always does).
 */
#define METRICS_TEXT_MAX 65536
long metrics_render(char *out, size_t cap, long long pins);
/* starttlsctl: map path read-only and render it. */
long metrics_render_file(const char *path, char *out, size_t cap,
    long long pins, char *err, size_t errlen);

/*
 * The HTTP endpoint in a worker: accept on fd (the master's listening
 * socket, shared by all workers), answer GET /metrics, bounded (a few
 * connections at once, a request line of 4 KiB at most, 5 s each).
 * pins_cb: the pins gauge at each scrape (NULL or -1: none).
 */
void metrics_serve(struct ev_loop *loop, int fd,
    long long (*pins_cb)(void *), void *arg);
void metrics_serve_stop(struct ev_loop *loop);

#endif
