/*
 * notify: sd_notify(3) without libsystemd. One datagram per message to the
 * socket systemd names in $NOTIFY_SOCKET (a path, or "@name" for the
 * abstract namespace); a failed send is ignored, as sd_notify's callers do:
 * readiness is a courtesy to the service manager, never a reason to stop.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "starttlsd/notify.h"
#include "starttlsd/session.h"

static struct sockaddr_un notify_addr;
static socklen_t notify_len;      /* 0: no NOTIFY_SOCKET */
static pid_t notify_pid;          /* the only process that sends */
static ev_timer notify_timer;
static unsigned (*notify_workers)(void);
static char notify_last[160];
static const char *notify_note = "";

void
notify_init(void)
{
	const char *p = getenv("NOTIFY_SOCKET");
	size_t n;

	notify_len = 0;
	if (p == NULL || (p[0] != '/' && p[0] != '@'))
		return;
	n = strlen(p);
	if (n < 2 || n >= sizeof(notify_addr.sun_path))
		return;
	memset(&notify_addr, 0, sizeof(notify_addr));
	notify_addr.sun_family = AF_UNIX;
	memcpy(notify_addr.sun_path, p, n);
	if (p[0] == '@')
		notify_addr.sun_path[0] = '\0';
	notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	notify_pid = getpid();
	unsetenv("NOTIFY_SOCKET");
}

static void
notify_send(const char *msg)
{
	int fd;

	if (notify_len == 0 || getpid() != notify_pid)
		return;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	(void)sendto(fd, msg, strlen(msg), MSG_NOSIGNAL,
	    (const struct sockaddr *)&notify_addr, notify_len);
	close(fd);
}

/* "KEY=1\nSTATUS=..." with the status cut to fit one line. */
static void
notify_with_status(const char *what, const char *status)
{
	char msg[512];
	size_t n;

	if (status == NULL) {
		notify_send(what);
		return;
	}
	snprintf(msg, sizeof(msg), "%s%sSTATUS=%s", what, what[0] ? "\n" : "",
	    status);
	/* STATUS= is one line: anything after a newline is dropped. */
	n = strlen(what) + (what[0] ? 1 : 0);
	msg[n + strcspn(msg + n, "\n")] = '\0';
	notify_send(msg);
}

void
notify_ready(const char *status)
{
	notify_with_status("READY=1", status);
}

void
notify_reloaded(int ok)
{
	notify_note = ok ? "" : "; the last reload was refused (see the log)";
	notify_last[0] = '\0'; /* the next tick says it again */
	notify_ready(ok ? "configuration reloaded" :
	    "configuration refused, the running one stays (see the log)");
}

void
notify_reloading(void)
{
	struct timespec ts;
	char msg[64];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000ULL);
	notify_send(msg);
}

void
notify_stopping(const char *status)
{
	notify_with_status("STOPPING=1", status);
}

void
notify_status(const char *status)
{
	notify_with_status("", status);
}

void
notify_status_line(char *out, size_t cap, unsigned sessions, unsigned workers,
    int with_workers)
{
	if (with_workers)
		snprintf(out, cap, "%u session%s open, %u worker%s%s", sessions,
		    sessions == 1 ? "" : "s", workers, workers == 1 ? "" : "s",
		    notify_note);
	else
		snprintf(out, cap, "%u session%s open%s", sessions,
		    sessions == 1 ? "" : "s", notify_note);
}

static void
notify_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	char line[sizeof(notify_last)];

	(void)revents;
	if (getpid() != notify_pid) {
		ev_ref(loop); /* a forked worker: not ours */
		ev_timer_stop(loop, w);
		return;
	}
	notify_status_line(line, sizeof(line), sess_count_all(),
	    notify_workers ? notify_workers() : 0, notify_workers != NULL);
	if (strcmp(line, notify_last) == 0)
		return;
	memcpy(notify_last, line, sizeof(line));
	notify_status(line);
}

void
notify_status_start(struct ev_loop *loop, unsigned (*count_workers)(void))
{
	if (notify_len == 0 || getpid() != notify_pid)
		return;
	notify_workers = count_workers;
	notify_last[0] = '\0';
	ev_timer_init(&notify_timer, notify_timer_cb, 2.0, 2.0);
	ev_timer_start(loop, &notify_timer);
	ev_unref(loop); /* never what keeps the loop running */
}
