/*
 * notify: the systemd readiness protocol (sd_notify(3)), written by hand:
 * datagrams of "KEY=VALUE" lines to the AF_UNIX socket in $NOTIFY_SOCKET.
 * Without that variable every call does nothing. Only the process that
 * called notify_init() ever sends (systemd's NotifyAccess=main): in a
 * forked worker the calls do nothing.
 */
#ifndef STARTTLSD_NOTIFY_H
#define STARTTLSD_NOTIFY_H

#include <ev.h>

/* Take $NOTIFY_SOCKET (and unset it, so no child inherits it). */
void notify_init(void);
/* READY=1 with a STATUS= line: sessions are accepted. */
void notify_ready(const char *status);
/*
 * After a SIGHUP: READY=1 with the outcome in STATUS=; a refusal is also
 * kept at the end of the periodic status line until the next good reload.
 */
void notify_reloaded(int ok);
/* RELOADING=1 (SIGHUP received), with MONOTONIC_USEC= as systemd 253 wants. */
void notify_reloading(void);
/* STOPPING=1 with a STATUS= line. */
void notify_stopping(const char *status);
/* STATUS= alone. */
void notify_status(const char *status);
/*
 * Every two seconds, STATUS="N sessions open, M workers" when it changed;
 * count_workers may be NULL (a single process). The timer stops itself in a
 * forked child.
 */
void notify_status_start(struct ev_loop *loop, unsigned (*count_workers)(void));
/* The status line notify_status_start() sends, into out (for tests). */
void notify_status_line(char *out, size_t cap, unsigned sessions,
    unsigned workers, int with_workers);

#endif
