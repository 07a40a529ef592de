/*
 * steer: a new client session goes to the worker that has a parked server
 * connection for its destination (upcache.h). Parked connections live in
 * the worker that made them; the kernel spreads accepted connections over
 * the workers at random, so without this about (N-1)/N of the sessions
 * that could reuse a connection would open a new one instead.
 *
 * A table in shared memory (set up by the master before forking) says, per
 * hash bucket of the cache key "dst|src", which worker slots have at least
 * one connection parked. A worker that accepts a session it has nothing
 * parked for, while another slot has, hands the client's socket to that
 * worker over a Unix datagram socket (SCM_RIGHTS), with the addresses it
 * recovered; the other worker starts the session as if it had accepted it.
 * A hint only: when the handoff fails (the other worker is gone, its queue
 * full) or the connection was taken meanwhile, the session simply dials.
 * A handed-over session is never handed on again.
 *
 * Each worker's socket is an abstract Unix socket named after the master's
 * pid and the worker's slot; the receiver accepts only messages whose
 * sender runs as its own user (SCM_CREDENTIALS).
 */
#ifndef STARTTLSD_STEER_H
#define STARTTLSD_STEER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

struct ev_loop;

#define STEER_BUCKETS 4096

/* A session handed to this worker: start it (fd is ours now). */
typedef void (*steer_cb)(int fd, const struct sockaddr_storage *peer,
    const struct sockaddr_storage *dst, socklen_t dlen);

/* Master, before forking: the shared table for nslots (<= 128) slots. */
int steer_init(size_t nslots);
/* Master: a worker's slot is free again (its bits cleared). */
void steer_reset(size_t slot);
/*
 * Worker: open its socket and serve handoffs with cb. 0, or -1 (no
 * steering in this worker; it still parks and takes its own).
 */
int steer_open(struct ev_loop *loop, pid_t master, size_t slot, steer_cb cb);
/* Worker, draining: no more handoffs to it (its socket closed, bits cleared). */
void steer_close(struct ev_loop *loop);
/* Is steering on in this process? */
bool steer_active(void);
/* This worker parked (+1) or gave up (-1) a connection with this cache key. */
void steer_parked(const char *key, int delta);
/* Does this worker have one for key's bucket? */
bool steer_mine(const char *key);
/* Another worker's slot that has one for key's bucket, or -1. */
int steer_owner(const char *key);
/* Hand the client socket fd to slot; true if it went (then close fd). */
bool steer_send(int slot, int fd, const struct sockaddr_storage *peer,
    const struct sockaddr_storage *dst, socklen_t dlen);

#endif
