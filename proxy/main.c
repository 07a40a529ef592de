/*
 * starttlsd: options, process lifecycle and signals. No protocol work here.
 */
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "starttlsd/config.h"
#include "starttlsd/intercept.h"
#include "starttlsd/listener.h"
#include "starttlsd/log.h"
#include "starttlsd/metrics.h"
#include "starttlsd/nft.h"
#include "starttlsd/notify.h"
#include "starttlsd/pinstore.h"
#include "starttlsd/pinsync.h"
#include "starttlsd/policy.h"
#include "starttlsd/fdpass.h"
#include "starttlsd/pdclient.h"
#include "starttlsd/policyd.h"
#include "starttlsd/priv.h"
#include "starttlsd/ownport.h"
#include "starttlsd/session.h"
#include "starttlsd/tls.h"
#include "starttlsd/steer.h"
#include "starttlsd/upcache.h"

#define MAX_WORKERS 64
#define EXIT_NO_PINS 78 /* EX_CONFIG: a worker in enforce mode without pins */
#define SHARED_SLOTS (2 * MAX_WORKERS) /* old and new generation at once */

enum role { ROLE_SINGLE, ROLE_MASTER, ROLE_WORKER };

/* A worker as the master sees it. */
struct worker {
	pid_t pid;            /* 0: slot free */
	int ctl;              /* master's end of its control socket */
	ev_child watcher;
	size_t slot;          /* its slot in the shared session counts */
	bool retiring;        /* replaced by a reload, or stopping: not restarted */
	ev_tstamp started;
};

static struct {
	enum role role;
	pid_t master_pid;
	struct worker workers[SHARED_SLOTS];
	unsigned nworkers;    /* how many should run */
	struct priv_user user;
	ev_timer respawn_timer;
	ev_io ctl_watcher;        /* worker: the master's pipe */
	int argc;
	char **argv;
	struct sess_env *env;
	struct listener listeners[CONFIG_MAX_LISTEN];
	size_t nlisteners;
	bool draining;
	ev_signal sigterm, sigint, sighup, sigusr2;
	ev_timer drain_timer;
	ev_prepare exit_check;
	struct pin_store *pins;   /* NULL: no state_dir, or it failed */
	ev_timer pin_timer;
	ev_tstamp pin_last_error;
	uint64_t pin_errors_seen;
	int metrics_fd;           /* metrics_listen's socket, -1: none */
	int policyd_ctl;          /* the policy process's control socket, -1: none */
	pid_t policyd_pid;        /* 0: not running */
	ev_child policyd_watcher;
	ev_timer policyd_timer;   /* its restart, a second after it died */
	ev_tstamp policyd_started;
	bool policyd_stopping;    /* killed on purpose (reload, stop) */
	int worker_pdfd;          /* worker: its policyd socket until relay_setup */
	size_t worker_slot;       /* worker: its slot */
	char policyd_sig[2048];   /* the settings it was started with */
} g;


static void
log_start(const char *event)
{
	const struct config *c = &g.env->cfg;
	struct logline l;
	char listen[1024] = "";
	size_t off = 0;

	for (size_t i = 0; i < c->listen.n && off < sizeof(listen); i++) {
		int n = snprintf(listen + off, sizeof(listen) - off, "%s%s",
		    i ? " " : "", c->listen.item[i]);
		if (n < 0)
			break;
		off += (size_t)n;
	}
	log_begin(&l, event);
	log_str(&l, "version", STARTTLSD_VERSION);
	log_str(&l, "listen", listen);
	log_str(&l, "relay", c->upstream ? "upstream" : "transparent");
	log_str(&l, "upstream", c->upstream);
	log_str(&l, "helo_name", c->helo_name);
	log_str(&l, "client_tls", g.env->client_ctx ? "on" : "off");
	log_str(&l, "mode", config_mode_str(c->mode));
	/* Workers open the store; the master only knows where it is. */
	log_str(&l, "pins", c->state_dir ? c->state_dir : "off");
	log_str(&l, "process", g.role == ROLE_MASTER ? "master" : "single");
	if (g.role == ROLE_MASTER) {
		log_u64(&l, "workers", g.nworkers);
		log_str(&l, "user", g.user.drop ? g.user.name : "root");
	}
	log_u64(&l, "policy_rules", g.env->policy.n);
	log_emit(&l, LOG_INFO);
}

static bool
lists_equal(const struct config_list *a, const struct config_list *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->item[i], b->item[i]) != 0)
			return false;
	return true;
}

/* SIGHUP: build and validate a whole new configuration, then swap it in. */
/* Keep a string setting that only a restart can change; say so. */
static int
keep_for_restart(const char *key, char **now, const char *running)
{
	if ((*now == NULL && running == NULL) ||
	    (*now != NULL && running != NULL && strcmp(*now, running) == 0))
		return 0;
	log_msg(LOG_WARNING, "reload", "%s changed: takes effect at the next "
	    "restart", key);
	free(*now);
	*now = running ? strdup(running) : NULL;
	return running != NULL && *now == NULL ? -1 : 0;
}

static int reload_config(void);
static void policyd_settings(const struct config *c, char *out, size_t cap);
static bool policyd_wanted(const struct config *c);
static void policyd_up(struct ev_loop *loop);
static void policyd_down(void);

static int
reload(void)
{
	int r = reload_config();

	metrics_reload(r == 0);
	return r;
}

static int
reload_config(void)
{
	const struct config *run = &g.env->cfg;
	struct config cfg;
	struct sess_env *e;
	char err[512];

	if (g.draining) {
		/* Never put interception back while we are going away. */
		log_msg(LOG_NOTICE, "reload", "ignored: shutting down");
		return -1;
	}
	if (config_load(&cfg, g.argc, g.argv, err, sizeof(err)) != CONFIG_OK) {
		config_free(&cfg);
		log_msg(LOG_ERR, "reload", "configuration refused, keeping the "
		    "running one: %s", err);
		return -1;
	}
	/*
	 * The sockets, their kind and the open store stay as started: keep
	 * their settings, so the new table and the log match what runs.
	 */
	if (!lists_equal(&cfg.listen, &run->listen)) {
		log_msg(LOG_WARNING, "reload", "listen changed: takes effect "
		    "at the next restart");
		for (size_t i = 0; i < cfg.listen.n; i++)
			free(cfg.listen.item[i]);
		cfg.listen.n = 0;
		for (size_t i = 0; i < run->listen.n; i++)
			if ((cfg.listen.item[cfg.listen.n] =
			    strdup(run->listen.item[i])) != NULL)
				cfg.listen.n++;
	}
	if (cfg.intercept_method != run->intercept_method) {
		log_msg(LOG_WARNING, "reload", "intercept_method changed: takes "
		    "effect at the next restart");
		cfg.intercept_method = run->intercept_method;
	}
	if (keep_for_restart("state_dir", &cfg.state_dir, run->state_dir) < 0 ||
	    keep_for_restart("pin_store", &cfg.pin_store, run->pin_store) < 0 ||
	    keep_for_restart("pin_store_prefix", &cfg.pin_store_prefix,
	    run->pin_store_prefix) < 0 ||
	    keep_for_restart("pin_store_gateway", &cfg.pin_store_gateway,
	    run->pin_store_gateway) < 0) {
		config_free(&cfg);
		log_msg(LOG_ERR, "reload", "out of memory");
		return -1;
	}
	if (cfg.mode == CONFIG_MODE_ENFORCE && priv_check(g.user.drop ?
	    g.user.name : NULL, cfg.state_dir, err, sizeof(err)) < 0) {
		/* The running workers have their store open: keep them. */
		config_free(&cfg);
		log_msg(LOG_ALERT, "reload", "configuration refused, keeping the "
		    "running one: %s (mode = enforce needs its pins)", err);
		return -1;
	}
	if (cfg.pin_expire != run->pin_expire) {
		log_msg(LOG_WARNING, "reload", "pin_expire changed: takes "
		    "effect at the next restart");
		cfg.pin_expire = run->pin_expire;
	}
	if ((e = sess_env_new(&cfg, g.pins, err, sizeof(err))) == NULL) {
		log_msg(LOG_ERR, "reload", "configuration refused, keeping the "
		    "running one: %s", err);
		return -1;
	}
	if (intercept_reload(&e->cfg, err, sizeof(err)) < 0) {
		log_msg(LOG_ERR, "reload", "configuration refused, keeping the "
		    "running one: %s", err);
		sess_env_unref(e);
		return -1;
	}
	log_set_stderr(e->cfg.log_stderr);
	listener_set_env(e);
	sess_env_unref(g.env);
	g.env = e;
	log_start("reload");
	{
		char sig[sizeof(g.policyd_sig)];

		policyd_settings(&e->cfg, sig, sizeof(sig));
		if (g.policyd_pid > 0 && (!policyd_wanted(&e->cfg) ||
		    strcmp(sig, g.policyd_sig) != 0))
			policyd_down();   /* restarted with the new settings */
		else if (g.policyd_pid <= 0 && policyd_wanted(&e->cfg) &&
		    g.role == ROLE_MASTER)
			policyd_up(ev_default_loop(0));
	}
	return 0;
}

/* Write queued pin sightings: one transaction a second, never an fsync. */
static void
pin_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	char err[256];

	struct pin_stats st;

	(void)w;
	(void)revents;
	if (g.pins == NULL)
		return;
	if (pin_commit(g.pins, err, sizeof(err)) < 0) {
		/* Loud, but not a flood: the relay goes on regardless. */
		if (ev_now(loop) - g.pin_last_error >= 60.0) {
			g.pin_last_error = ev_now(loop);
			metrics_pinstore_error(M_PIN_COMMIT);
			log_msg(LOG_ERR, "pinstore", "commit failed, sightings "
			    "are kept in memory and retried: %s", err);
		}
		return;
	}
	/* Failures the store counts on its own (the background sync). */
	pin_get_stats(g.pins, &st);
	if (st.errors > g.pin_errors_seen) {
		if (ev_now(loop) - g.pin_last_error >= 60.0) {
			g.pin_last_error = ev_now(loop);
			metrics_pinstore_error(M_PIN_SYNC);
			log_msg(LOG_ERR, "pinstore", "%llu store errors so far "
			    "(a failing disk sync or unreadable records); pins may "
			    "not survive a power loss", (unsigned long long)st.errors);
		}
		g.pin_errors_seen = st.errors;
	}
}

/* Open the pin store; a broken one is logged and relaying goes on. */
static void
pins_open(const struct config *c)
{
	char err[512];

	if (c->state_dir == NULL)
		return;
	g.pins = pin_open(c->state_dir, false, (int64_t)c->pin_expire, err,
	    sizeof(err));
	if (g.pins != NULL) {
		if (pinsync_wanted(c) && pin_fleet_enable(g.pins,
		    c->pin_store_gateway, err, sizeof(err)) < 0)
			/* A fleet: our own sightings are recorded for pinsync. */
			log_msg(LOG_ERR, "pinstore", "fleet: %s; sightings stay "
			    "on this gateway", err);
		return;
	}
	metrics_pinstore_error(M_PIN_OPEN);
	if (g.env->mode == POLICY_ENFORCE)
		log_msg(LOG_ERR, "pinstore", "cannot open: %s", err);
	else
		log_msg(LOG_ERR, "pinstore", "cannot open, running without "
		    "pins (downgrades of pinned servers go unnoticed): %s", err);
}

/* In the sync process, just forked: what the master holds is not its. */
static void
pinsync_cleanup(void *arg)
{
	(void)arg;
	for (size_t i = 0; i < g.nlisteners; i++)
		if (g.listeners[i].fd >= 0)
			close(g.listeners[i].fd);
	for (size_t i = 0; i < SHARED_SLOTS; i++)
		if (g.workers[i].pid > 0 && g.workers[i].ctl >= 0)
			close(g.workers[i].ctl);
}

static void
exit_check_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)w;
	(void)revents;
	if (g.role != ROLE_MASTER && g.draining && sess_count() == 0)
		ev_break(loop, EVBREAK_ALL);
}

static void
drain_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	if (g.role == ROLE_MASTER) {
		/*
		 * Workers past their drain time (their own timer ends them
		 * first; this is the backstop): end them. Without CAP_KILL
		 * (the systemd unit) root cannot signal the workers' user;
		 * they go when the master's pipe closes, or by KillMode=mixed.
		 */
		unsigned killed = 0, denied = 0;
		for (size_t i = 0; i < SHARED_SLOTS; i++)
			if (g.workers[i].pid > 0) {
				if (kill(g.workers[i].pid, SIGKILL) == 0)
					killed++;
				else
					denied++;
			}
		log_msg(LOG_NOTICE, "stop", "drain timeout: %u workers killed%s",
		    killed, denied > 0 ? ", others told by the master's exit" :
		    "");
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	log_msg(LOG_NOTICE, "stop", "drain timeout: closing %u sessions",
	    sess_count());
	sess_close_all("shutdown: drain timeout");
	ev_break(loop, EVBREAK_ALL);
}

/*
 * A worker (or the single process): stop accepting, let sessions finish.
 * Stopping (SIGTERM) also ends idle sessions with 421; retiring (SIGUSR2,
 * replaced after a reload) lets every session run its course.
 */
static void
drain(struct ev_loop *loop, int signum)
{
	g.draining = true;
	log_msg(LOG_INFO, "stop", "signal %s: no new sessions, %s %u",
	    log_signame(signum), signum == SIGUSR2 ? "retiring with" :
	    "draining", sess_count());
	listener_close(loop, g.listeners, g.nlisteners);
	metrics_serve_stop(loop); /* the next generation serves it */
	steer_close(loop);        /* no more sessions handed to us */
	upc_drop(NULL);           /* parked connections: QUIT, close */
	if (signum != SIGUSR2)
		sess_drain();
	ev_timer_init(&g.drain_timer, drain_timer_cb,
	    (ev_tstamp)g.env->cfg.drain_timeout, 0.);
	ev_timer_start(loop, &g.drain_timer);
}

static unsigned
workers_alive(void)
{
	unsigned n = 0;

	for (size_t i = 0; i < SHARED_SLOTS; i++)
		n += g.workers[i].pid > 0;
	return n;
}

static void spawn_workers(struct ev_loop *loop);

/*
 * Tell a worker to stop ('T') or retire ('R') over its control pipe: the
 * master (root) may lack CAP_KILL to signal a process of another user,
 * and a pipe also tells the worker when the master is gone (EOF).
 */
static void
worker_tell(struct worker *w, char what)
{
	if (w->ctl < 0 || write(w->ctl, &what, 1) != 1)
		log_msg(LOG_ERR, "worker", "cannot tell worker %d to %s: %s",
		    (int)w->pid, what == 'R' ? "retire" : "stop", strerror(errno));
}

static struct pdclient *worker_pdc;

/* A new socket to a restarted policy process ('P'), for this worker. */
static void
worker_policyd_fd(struct ev_loop *loop, int fd)
{
	if (fd < 0)
		return;
	if (worker_pdc != NULL) {
		pdc_set_fd(worker_pdc, fd);
	} else if ((worker_pdc = pdc_new(loop, fd,
	    g.env->cfg.policy_timeout * 1000)) != NULL) {
		sess_set_pdclient(worker_pdc);
	} else {
		close(fd);
	}
}

/* Worker: a word from the master (with a descriptor for 'P'), or its end. */
static void
ctl_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	char c = 'T';
	int fd;
	ssize_t n = fdpass_recv(w->fd, &c, 1, &fd, NULL, 0);

	(void)revents;
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n == 1 && c == 'P') {
		worker_policyd_fd(loop, fd);
		return;
	}
	if (fd >= 0)
		close(fd);
	if (n <= 0) {
		/* The master is gone: stop, do not linger as an orphan. */
		ev_io_stop(loop, w);
		c = 'T';
	}
	if (!g.draining)
		drain(loop, c == 'R' ? SIGUSR2 : SIGTERM);
}

static void
signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)revents;
	if (w->signum == SIGHUP) {
		/* The master reloads and replaces the workers. */
		if (g.role == ROLE_WORKER)
			return;
		notify_reloading();
		int rc = reload();
		if (rc == 0 && g.role == ROLE_MASTER) {
			/* New workers first, then the old ones retire. */
			bool old[SHARED_SLOTS];
			for (size_t i = 0; i < SHARED_SLOTS; i++) {
				old[i] = g.workers[i].pid > 0 && !g.workers[i].retiring;
				if (old[i])
					g.workers[i].retiring = true;
			}
			spawn_workers(loop);
			for (size_t i = 0; i < SHARED_SLOTS; i++)
				if (old[i])
					worker_tell(&g.workers[i], 'R');
		}
		notify_reloaded(rc == 0);
		return;
	}
	if (w->signum == SIGUSR2) {
		/* Retire (workers only): finish the sessions, then exit. */
		if (g.role == ROLE_WORKER && !g.draining)
			drain(loop, w->signum);
		return;
	}
	if (g.draining)
		return;
	if (g.role == ROLE_WORKER) {
		drain(loop, w->signum);
		return;
	}
	notify_stopping("stopping: draining sessions");
	/* New port-25 connections flow directly again from now on. */
	intercept_remove();
	pinsync_stop(loop);
	if (g.role == ROLE_SINGLE) {
		drain(loop, w->signum);
		return;
	}
	g.draining = true;
	log_msg(LOG_INFO, "stop", "signal %s: stopping %u workers",
	    log_signame(w->signum), workers_alive());
	listener_close(loop, g.listeners, g.nlisteners);
	for (size_t i = 0; i < SHARED_SLOTS; i++)
		if (g.workers[i].pid > 0) {
			g.workers[i].retiring = true;
			worker_tell(&g.workers[i], 'T');
		}
	ev_timer_init(&g.drain_timer, drain_timer_cb,
	    (ev_tstamp)g.env->cfg.drain_timeout + 5.0, 0.);
	ev_timer_start(loop, &g.drain_timer);
	if (workers_alive() == 0)
		ev_break(loop, EVBREAK_ALL);
}

/* What a process that relays does once it is what it will be. */
static int
pins_count_one(const struct pin *p, void *arg)
{
	(void)p;
	++*(long long *)arg;
	return 0;
}

/* The pins gauge at a scrape: unexpired pins (-1: no store). */
static long long
pins_count(void *arg)
{
	long long n = 0;
	char err[160];

	(void)arg;
	if (g.pins == NULL || pin_foreach(g.pins, (int64_t)time(NULL),
	    pins_count_one, &n, err, sizeof(err)) < 0)
		return -1;
	return n;
}

/*
 * The shared counters (state_dir/metrics, for starttlsctl stats) and the
 * endpoint's socket, bound here (a low port needs root) and served by the
 * workers.
 */
static void
metrics_setup(void)
{
	const char *dir = g.env->cfg.state_dir;
	const char *listen_on = g.env->cfg.metrics_listen;
	char path[4096], err[600];
	bool file = dir != NULL && dir[0] != '\0' &&
	    (size_t)snprintf(path, sizeof(path), "%s/metrics", dir) < sizeof(path);
	struct sockaddr_storage ss;
	socklen_t sl;
	int one = 1;

	g.metrics_fd = -1;
	if (metrics_init(file ? path : NULL, -1, err, sizeof(err)) < 0) {
		log_msg(LOG_WARNING, "error", "metrics: %s (starttlsctl stats "
		    "cannot read them)", err);
		if (metrics_init(NULL, -1, err, sizeof(err)) < 0)
			log_msg(LOG_ERR, "error", "metrics: %s", err);
	}
	if (listen_on == NULL || listen_on[0] == '\0')
		return;
	if (config_parse_addr(listen_on, &ss, &sl) < 0 ||
	    (g.metrics_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) < 0 ||
	    setsockopt(g.metrics_fd, SOL_SOCKET, SO_REUSEADDR, &one,
	    sizeof(one)) < 0 ||
	    bind(g.metrics_fd, (struct sockaddr *)&ss, sl) < 0 ||
	    listen(g.metrics_fd, 64) < 0) {
		intercept_remove();
		log_fatal("metrics_listen %s: %s", listen_on, strerror(errno));
	}
}

static void
relay_setup(struct ev_loop *loop)
{
	char err[512];

	if (priv_drop(&g.user, g.role == ROLE_SINGLE, err, sizeof(err)) < 0)
		log_fatal("%s", err);
	if (g.role == ROLE_WORKER) {
		/*
		 * A master gone (even SIGKILL) must not leave workers behind.
		 * Set after the drop: a change of credentials clears it.
		 */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != g.master_pid)
			_exit(0);
	}
	/*
	 * LMDB handles do not survive a fork: open in the process that uses
	 * them, before the seccomp filter (which has no mkdir, no clone).
	 */
	pins_open(&g.env->cfg);
	if (g.pins == NULL && g.env->cfg.state_dir != NULL &&
	    g.env->mode == POLICY_ENFORCE) {
		/*
		 * Enforce mode without its pins would refuse nothing it
		 * learnt: fail closed. A worker exits (the master starts
		 * another a second later, which tries again: one alert a
		 * second until the store is fixed; the interception stays, so
		 * mail waits in the clients' queues); a single process stops.
		 */
		log_msg(LOG_ALERT, "pinstore", "mode = enforce and the pin store "
		    "%s cannot be opened: not relaying (exit %d)",
		    g.env->cfg.state_dir, EXIT_NO_PINS);
		if (g.role == ROLE_WORKER)
			_exit(EXIT_NO_PINS);
		intercept_remove();
		log_fatal("mode = enforce needs its pins");
	}
	/* Where it works; a kernel without seccomp is said, not fatal. */
	if (g.role == ROLE_WORKER && g.env->cfg.seccomp &&
	    priv_seccomp(g.ctl_watcher.fd, err, sizeof(err)) < 0)
		log_msg(LOG_WARNING, "worker", "%s (running without it)", err);
	g.env->pins = g.pins;
	if (g.worker_pdfd >= 0) {
		worker_policyd_fd(loop, g.worker_pdfd);
		g.worker_pdfd = -1;
	}
	listener_set_env(g.env);
	upc_init(loop);
	/* Sessions go to the worker holding a parked connection for them. */
	if (g.role == ROLE_WORKER && g.nworkers > 1)
		(void)steer_open(loop, g.master_pid, g.worker_slot,
		    listener_steered);
	listener_start(loop, g.listeners, g.nlisteners);
	/* The workers serve the endpoint; the root master never does. */
	metrics_serve(loop, g.metrics_fd, pins_count, NULL);
	ev_prepare_init(&g.exit_check, exit_check_cb);
	ev_prepare_start(loop, &g.exit_check);
	ev_timer_init(&g.pin_timer, pin_timer_cb, 1.0, 1.0);
	if (g.pins != NULL)
		ev_timer_start(loop, &g.pin_timer);
}

static void child_cb(struct ev_loop *loop, ev_child *w, int revents);

static void
signals_start(struct ev_loop *loop)
{
	ev_signal_init(&g.sigterm, signal_cb, SIGTERM);
	ev_signal_init(&g.sigint, signal_cb, SIGINT);
	ev_signal_init(&g.sighup, signal_cb, SIGHUP);
	ev_signal_init(&g.sigusr2, signal_cb, SIGUSR2);
	ev_signal_start(loop, &g.sigusr2);
	ev_signal_start(loop, &g.sigterm);
	ev_signal_start(loop, &g.sigint);
	ev_signal_start(loop, &g.sighup);
}

/* What every process does once its loop has ended. */
static void
process_end(struct ev_loop *loop)
{
	if (g.role != ROLE_WORKER)
		pinsync_stop(loop);
	intercept_remove();
	listener_close(loop, g.listeners, g.nlisteners);
	listener_set_env(NULL);
	log_msg(LOG_INFO, "stop", "%s exiting", g.role == ROLE_WORKER ?
	    "worker" : g.role == ROLE_MASTER ? "master" : "process");
	if (g.env->cfg.pid_file != NULL && g.role != ROLE_WORKER)
		unlink(g.env->cfg.pid_file);
	sess_env_unref(g.env);
	if (g.pins != NULL)
		pin_close(g.pins); /* commits and syncs what is queued */
	ev_loop_destroy(loop);
	log_close();
}

/*
 * A worker's whole life, called in the child right after fork(); it never
 * returns, so nothing of the master's (the callback that forked, the rest
 * of its loop iteration) ever runs in a worker. The master's loop is taken
 * apart first: its watchers stopped and its epoll instance closed (the
 * child's copy of that descriptor would still reach the master's interest
 * list). The worker then runs on a loop of its own and exits from here.
 */
static _Noreturn void
worker_main(struct ev_loop *master_loop, size_t slot, int ctl_fd, int pdfd)
{
	struct ev_loop *loop;

	g.role = ROLE_WORKER;
	/*
	 * The master's business stays with the master; the other workers'
	 * control sockets must close with it, or they would never see its EOF.
	 */
	for (size_t i = 0; i < SHARED_SLOTS; i++)
		if (g.workers[i].pid > 0) {
			ev_child_stop(master_loop, &g.workers[i].watcher);
			if (g.workers[i].ctl >= 0)
				close(g.workers[i].ctl);
		}
	memset(g.workers, 0, sizeof(g.workers));
	if (g.policyd_ctl >= 0)
		close(g.policyd_ctl);   /* the master's; a worker has its own socket */
	g.policyd_ctl = -1;
	if (g.policyd_pid > 0)
		ev_child_stop(master_loop, &g.policyd_watcher);
	ev_timer_stop(master_loop, &g.policyd_timer);
	g.policyd_pid = 0;
	pinsync_child_close(master_loop);
	ev_timer_stop(master_loop, &g.respawn_timer);
	ev_timer_stop(master_loop, &g.drain_timer);
	ev_signal_stop(master_loop, &g.sigterm);
	ev_signal_stop(master_loop, &g.sigint);
	ev_signal_stop(master_loop, &g.sighup);
	ev_signal_stop(master_loop, &g.sigusr2);
	ev_loop_destroy(master_loop);
	intercept_forget();

	if ((loop = ev_loop_new(EVFLAG_AUTO)) == NULL) {
		log_msg(LOG_ERR, "worker", "cannot create its event loop");
		_exit(1);
	}
	signals_start(loop);
	sess_shared_use(slot);
	ownport_use(slot);
	metrics_use(slot);
	ev_io_init(&g.ctl_watcher, ctl_cb, ctl_fd, EV_READ);
	ev_io_start(loop, &g.ctl_watcher);
	g.worker_pdfd = pdfd;
	g.worker_slot = slot;
	relay_setup(loop);
	ev_run(loop, 0);
	process_end(loop);
	exit(0);
}

/* The policy process drops root like a worker (docs/dane.md). */
static int
policyd_drop(void *user)
{
	char err[512];

	if (priv_drop(user, false, err, sizeof(err)) == 0)
		return 0;
	log_msg(LOG_ERR, "policyd", "%s", err);
	return -1;
}

/*
 * A socket pair to the policy process: one end handed to it, the other
 * returned (for a worker, or the single process); -1 if none.
 */
static int
policyd_pair(void)
{
	int sp[2];

	if (g.policyd_ctl < 0)
		return -1;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
		log_msg(LOG_ERR, "policyd", "socketpair: %s", strerror(errno));
		return -1;
	}
	if (policyd_give_client(g.policyd_ctl, sp[0]) < 0) {
		log_msg(LOG_ERR, "policyd", "cannot hand over a client socket: %s",
		    strerror(errno));
		close(sp[0]);
		close(sp[1]);
		return -1;
	}
	close(sp[0]);
	return sp[1];
}

/* The settings policyd runs with, to see whether a reload changes them. */
static void
policyd_settings(const struct config *c, char *out, size_t cap)
{
	size_t n = (size_t)snprintf(out, cap, "%d %d %d %s %s %u|",
	    c->dane, c->mta_sts, c->tlsrpt,
	    c->trust_anchor_file ? c->trust_anchor_file : "",
	    c->mta_sts_ca_file ? c->mta_sts_ca_file : "", c->mta_sts_port);

	for (size_t i = 0; i < c->resolvers.n && n < cap; i++)
		n += (size_t)snprintf(out + n, cap - n, "%s,", c->resolvers.item[i]);
}

static bool
policyd_wanted(const struct config *c)
{
	return c->dane || c->mta_sts || c->tlsrpt;
}

static void policyd_child_cb(struct ev_loop *loop, ev_child *w, int revents);

/*
 * Start the policy process (docs/dane.md) and give every running worker
 * (or the single process) a socket to it.
 */
static void
policyd_up(struct ev_loop *loop)
{
	pid_t pid;

	if (g.policyd_pid > 0 || g.draining || !policyd_wanted(&g.env->cfg))
		return;
	pid = policyd_start(&g.env->cfg, policyd_drop, &g.user, &g.policyd_ctl);
	if (pid < 0) {
		ev_timer_set(&g.policyd_timer, 1.0, 0.);
		ev_timer_start(loop, &g.policyd_timer);
		return;
	}
	g.policyd_pid = pid;
	g.policyd_started = ev_now(loop);
	g.policyd_stopping = false;
	policyd_settings(&g.env->cfg, g.policyd_sig, sizeof(g.policyd_sig));
	ev_child_init(&g.policyd_watcher, policyd_child_cb, pid, 0);
	ev_child_start(loop, &g.policyd_watcher);
	if (g.role == ROLE_SINGLE) {
		worker_policyd_fd(loop, policyd_pair());
		return;
	}
	for (size_t i = 0; i < SHARED_SLOTS; i++) {
		struct worker *w = &g.workers[i];
		int fd;

		if (w->pid <= 0 || w->retiring || w->ctl < 0 ||
		    (fd = policyd_pair()) < 0)
			continue;
		if (fdpass_send(w->ctl, "P", 1, fd, NULL, 0, 0) != 1)
			log_msg(LOG_ERR, "policyd", "cannot give worker %d its "
			    "socket: %s", (int)w->pid, strerror(errno));
		close(fd);
	}
}

/* Stop it on purpose (a reload changed its settings, or it is not wanted). */
static void
policyd_down(void)
{
	if (g.policyd_pid <= 0)
		return;
	g.policyd_stopping = true;
	kill(g.policyd_pid, SIGTERM);
}

static void
policyd_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	policyd_up(loop);
}

static void
policyd_child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	int st = w->rstatus;
	bool quick = ev_now(loop) - g.policyd_started < 1.0;

	(void)revents;
	ev_child_stop(loop, w);
	g.policyd_pid = 0;
	if (g.policyd_ctl >= 0)
		close(g.policyd_ctl);
	g.policyd_ctl = -1;
	{
		char how[64];
		bool expected = g.policyd_stopping || g.draining;

		if (WIFSIGNALED(st))
			snprintf(how, sizeof(how), "signal %s",
			    log_signame(WTERMSIG(st)));
		else
			snprintf(how, sizeof(how), "status %d", WEXITSTATUS(st));
		log_msg(expected ? LOG_INFO : LOG_ERR, "policyd",
		    "exited (pid %d, %s)%s", (int)w->rpid, how, g.draining ? "" :
		    g.policyd_stopping ? ": restarted with the new settings" :
		    ": restarted; until then DANE and MTA-STS lookups fail (450 4.7.5 in enforce)");
	}
	if (g.draining)
		return;
	/* Restarted: at once after a planned stop, else after a second. */
	ev_timer_set(&g.policyd_timer, g.policyd_stopping ? 0.0 :
	    quick ? 5.0 : 1.0, 0.);
	ev_timer_start(loop, &g.policyd_timer);
}

static int
spawn_worker(struct ev_loop *loop)
{
	struct worker *w = NULL;
	int ctl[2], pdfd;
	pid_t pid;

	for (size_t i = 0; i < SHARED_SLOTS && w == NULL; i++)
		if (g.workers[i].pid == 0)
			w = &g.workers[i];
	if (w == NULL)
		return -1;
	w->slot = (size_t)(w - g.workers);
	sess_shared_reset(w->slot);
	ownport_reset(w->slot);
	steer_reset(w->slot);
	/* Both ways: words to the worker, its seccomp report back. */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ctl) < 0) {
		log_msg(LOG_ERR, "worker", "socketpair: %s", strerror(errno));
		return -1;
	}
	pdfd = policyd_pair();
	if ((pid = fork()) < 0) {
		log_msg(LOG_ERR, "worker", "fork: %s", strerror(errno));
		close(ctl[0]);
		close(ctl[1]);
		if (pdfd >= 0)
			close(pdfd);
		return -1;
	}
	if (pid == 0) {
		close(ctl[1]);
		worker_main(loop, w->slot, ctl[0], pdfd); /* never returns */
	}
	if (pdfd >= 0)
		close(pdfd);
	close(ctl[0]);
	w->ctl = ctl[1];
	w->pid = pid;
	w->retiring = false;
	w->started = ev_now(loop);
	metrics_worker_started();
	metrics_workers(workers_alive());
	{
		struct logline l;
		log_begin(&l, "worker");
		log_str(&l, "action", "started");
		log_int(&l, "pid", pid);
		log_u64(&l, "slot", w->slot);
		log_emit(&l, LOG_INFO);
	}
	ev_child_init(&w->watcher, child_cb, pid, 0);
	w->watcher.data = w;
	ev_child_start(loop, &w->watcher);
	return 0;
}

/* Bring the number of working workers up to nworkers. */
static void
spawn_workers(struct ev_loop *loop)
{
	unsigned active = 0;

	for (size_t i = 0; i < SHARED_SLOTS; i++)
		active += g.workers[i].pid > 0 && !g.workers[i].retiring;
	while (active < g.nworkers) {
		int r = spawn_worker(loop);
		if (r != 0)
			return; /* no room, or fork failed */
		active++;
	}
}

static void
respawn_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	if (!g.draining)
		spawn_workers(loop);
}

/*
 * A worker killed by its seccomp filter left the call's number on its
 * control socket (priv_seccomp): name it, loudly, since it is either an
 * attack or a call the allowlist lacks.
 */
static void
seccomp_report(struct worker *w, pid_t pid)
{
	unsigned char msg[1 + sizeof(int32_t)];
	struct logline l;
	char name[64];
	int32_t nr;

	if (w->ctl < 0 || recv(w->ctl, msg, sizeof(msg), MSG_DONTWAIT) !=
	    (ssize_t)sizeof(msg) || msg[0] != 'S')
		return;
	memcpy(&nr, msg + 1, sizeof(nr));
	priv_syscall_name(nr, name, sizeof(name));
	log_begin(&l, "seccomp");
	log_str(&l, "action", "killed");
	log_int(&l, "pid", pid);
	log_str(&l, "syscall", name);
	log_int(&l, "nr", nr);
	log_emit(&l, LOG_CRIT);
}

static void
child_cb(struct ev_loop *loop, ev_child *cw, int revents)
{
	struct worker *w = cw->data;
	struct logline l;
	int st = cw->rstatus;
	bool crashed;

	(void)revents;
	ev_child_stop(loop, cw);
	crashed = !(WIFEXITED(st) && WEXITSTATUS(st) == 0) || !w->retiring;
	log_begin(&l, "worker");
	log_str(&l, "action", "exited");
	log_int(&l, "pid", cw->rpid);
	if (WIFSIGNALED(st)) {
		log_str(&l, "signal", log_signame(WTERMSIG(st)));
	} else {
		log_int(&l, "status", WEXITSTATUS(st));
	}
	log_str(&l, "expected", w->retiring ? "yes" : "no");
	log_emit(&l, crashed ? LOG_ERR : LOG_INFO);
	seccomp_report(w, cw->rpid);
	w->pid = 0;
	if (w->ctl >= 0)
		close(w->ctl);
	w->ctl = -1;
	metrics_worker_exited(w->retiring);
	metrics_workers(workers_alive());
	metrics_reset_slot(w->slot);
	sess_shared_reset(w->slot);
	ownport_reset(w->slot);
	steer_reset(w->slot);
	if (g.draining) {
		if (workers_alive() == 0)
			ev_break(loop, EVBREAK_ALL);
		return;
	}
	if (!w->retiring) {
		/* Restart it; one that dies at once is not restarted in a loop. */
		bool quick = ev_now(loop) - w->started < 1.0;
		ev_timer_stop(loop, &g.respawn_timer);
		ev_timer_init(&g.respawn_timer, respawn_cb, quick ? 1.0 : 0.0, 0.);
		ev_timer_start(loop, &g.respawn_timer);
	}
}

/* Each session holds two descriptors: take all the kernel allows us. */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int
daemonize(void)
{
	pid_t pid = fork();
	int fd;

	if (pid < 0)
		return -1;
	if (pid > 0)
		_exit(0);
	setsid();
	if ((pid = fork()) < 0)
		return -1;
	if (pid > 0)
		_exit(0);
	if (chdir("/") < 0)
		log_fatal("chdir /: %s", strerror(errno));
	if ((fd = open("/dev/null", O_RDWR)) >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	log_set_stderr(false);
	return 0;
}

int
main(int argc, char **argv)
{
	struct ev_loop *loop;
	struct config cfg;
	char err[512];

	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	g.policyd_ctl = -1;
	g.worker_pdfd = -1;
	ev_init(&g.policyd_timer, policyd_timer_cb);
	g.argc = argc;
	g.argv = argv;
	switch (config_load(&cfg, argc, argv, err, sizeof(err))) {
	case CONFIG_OK:
		break;
	case CONFIG_EXIT:
		config_free(&cfg);
		return 0;
	case CONFIG_ERROR:
		config_free(&cfg);
		fprintf(stderr, "starttlsd: %s\n", err);
		return 1;
	}
	bool check = cfg.check_config;
	log_open(cfg.log_stderr, !check && !cfg.print_ruleset);
	if ((g.env = sess_env_new(&cfg, g.pins, err, sizeof(err))) == NULL) {
		if (check) {
			fprintf(stderr, "starttlsd: %s\n", err);
			return 1;
		}
		log_fatal("%s", err);
	}
	if (check && priv_check(g.env->cfg.user, g.env->cfg.state_dir, err,
	    sizeof(err)) < 0) {
		fprintf(stderr, "starttlsd: %s\n", err);
		sess_env_unref(g.env);
		return 1;
	}
	if (check) {
		printf("starttlsd: configuration ok\n");
		sess_env_unref(g.env);
		return 0;
	}
	if (g.env->cfg.print_ruleset) {
		const struct config *c = &g.env->cfg;

		if (c->intercept_interfaces.n == 0 && !c->intercept_local) {
			fprintf(stderr, "starttlsd: --print-ruleset: nothing to "
			    "print: no intercept_interfaces and intercept_local "
			    "off, so intercept = on would take nothing (and is "
			    "%s)\n", c->intercept ? "on" : "off");
			sess_env_unref(g.env);
			return 1;
		}
		if (!c->intercept)
			printf("# intercept is off: starttlsd installs nothing. "
			    "With intercept = on it would\n# install this:\n");
		intercept_print(&g.env->cfg, stdout);
		sess_env_unref(g.env);
		return 0;
	}
	if (priv_lookup(g.env->cfg.user, &g.user, err, sizeof(err)) < 0)
		log_fatal("%s", err);
	/*
	 * A store the workers cannot reach: enforce mode refuses to start
	 * (it would enforce nothing it learnt); monitor mode says so and
	 * relays without pins.
	 */
	if (priv_check(g.user.drop ? g.user.name : NULL, g.env->cfg.state_dir,
	    err, sizeof(err)) < 0) {
		if (g.env->mode == POLICY_ENFORCE)
			log_fatal("%s (mode = enforce needs its pins: not "
			    "starting)", err);
		log_msg(LOG_ERR, "pinstore", "%s (running without pins)", err);
	}
	for (size_t i = 0; i < g.env->cfg.listen.n; i++) {
		if (listener_open(&g.listeners[i], g.env->cfg.listen.item[i],
		    g.env->cfg.intercept &&
		    g.env->cfg.intercept_method == CONFIG_INTERCEPT_TPROXY, err,
		    sizeof(err)) < 0)
			log_fatal("%s", err);
		g.nlisteners++;
	}
	/* Listeners first, then the redirect to them: never a black hole. */
	if (g.env->cfg.intercept &&
	    intercept_reload(&g.env->cfg, err, sizeof(err)) < 0)
		log_fatal("%s (nothing was installed)", err);
	if (!g.env->cfg.foreground && daemonize() < 0) {
		intercept_remove();
		log_fatal("fork: %s", strerror(errno));
	}
	if (g.env->cfg.pid_file != NULL) {
		FILE *fp = fopen(g.env->cfg.pid_file, "w");
		if (fp == NULL) {
			intercept_remove();
			log_fatal("pid_file %s: %s", g.env->cfg.pid_file,
			    strerror(errno));
		}
		fprintf(fp, "%d\n", (int)getpid());
		fclose(fp);
	}

	notify_init();
	loop = ev_default_loop(EVFLAG_AUTO);
	if (ownport_init(SHARED_SLOTS) < 0 || steer_init(SHARED_SLOTS) < 0 ||
	    sess_shared_init(SHARED_SLOTS) < 0) {
		intercept_remove();
		log_fatal("shared memory: %s", strerror(errno));
	}
	/*
	 * Root's again for the metrics file, then given to the workers' user.
	 * (A failure here fails priv_give_dir the same way: logged there.)
	 */
	(void)priv_take_dir(&g.user, g.env->cfg.state_dir, err, sizeof(err));
	metrics_setup();
	if (priv_give_dir(&g.user, g.env->cfg.state_dir, err, sizeof(err)) < 0) {
		log_msg(LOG_ERR, "pinstore", "%s", err);
		metrics_pinstore_error(M_PIN_OTHER);
	}
	signals_start(loop);
	ev_init(&g.respawn_timer, respawn_cb);
	if (g.env->cfg.master) {
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

		g.role = ROLE_MASTER;
		g.master_pid = getpid();
		g.nworkers = g.env->cfg.workers ? g.env->cfg.workers :
		    ncpu > 0 ? (unsigned)(ncpu < MAX_WORKERS ? ncpu : MAX_WORKERS) : 1;
		log_start("start");
		policyd_up(loop);
		spawn_workers(loop);
		if (g.role == ROLE_MASTER)
			pinsync_spawn(loop, &g.env->cfg, &g.user, pinsync_cleanup,
			    NULL);
	} else {
		g.role = ROLE_SINGLE;
		pinsync_spawn(loop, &g.env->cfg, &g.user, pinsync_cleanup, NULL);
		policyd_up(loop);
		relay_setup(loop);
		log_start("start");
	}
	/* Listeners open, table installed, workers forked (no-op in them). */
	notify_status_start(loop, g.role == ROLE_MASTER ? workers_alive : NULL);
	notify_ready("accepting sessions");

	ev_run(loop, 0);
	process_end(loop);
	return 0;
}
