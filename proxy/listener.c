/* listener: accept, recover the original destination, refuse loops. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "starttlsd/config.h"
#include "starttlsd/addr.h"
#include "starttlsd/listener.h"
#include "starttlsd/log.h"
#include "starttlsd/session.h"
#include "starttlsd/ownport.h"
#include "starttlsd/steer.h"
#include "starttlsd/upcache.h"
#include "starttlsd/upstream.h"

#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80      /* linux/netfilter_ipv4.h */
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80 /* linux/netfilter_ipv6/ip6_tables.h */
#endif

#define ACCEPT_BURST 64
#define BIND_RETRIES 30 /* 100 ms apart */
#define ACCEPT_PAUSE 0.1 /* seconds without accept() after EMFILE */

static struct sess_env *cur_env;
static struct listener *all_listeners;
static size_t n_listeners;
static ev_tstamp last_accept_error;
static ev_timer pause_timer;
static struct ev_loop *loop_of_listeners;

static void
pause_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	for (size_t i = 0; i < n_listeners; i++)
		if (all_listeners[i].fd >= 0)
			ev_io_start(loop, &all_listeners[i].w);
}

static void
listener_pause(struct ev_loop *loop)
{
	for (size_t i = 0; i < n_listeners; i++)
		ev_io_stop(loop, &all_listeners[i].w);
	ev_timer_init(&pause_timer, pause_timer_cb, ACCEPT_PAUSE, 0.);
	ev_timer_start(loop, &pause_timer);
}

void
listener_set_env(struct sess_env *env)
{
	struct sess_env *old = cur_env;

	cur_env = env ? sess_env_ref(env) : NULL;
	sess_env_unref(old);
}

int
listener_open(struct listener *l, const char *spec, bool transparent,
    char *err, size_t errlen)
{
	int one = 1;

	memset(l, 0, sizeof(*l));
	l->fd = -1;
	l->transparent = transparent;
	snprintf(l->name, sizeof(l->name), "%s", spec);
	if (config_parse_addr(spec, &l->addr, &l->addrlen) < 0) {
		snprintf(err, errlen, "listen %s: bad address", spec);
		return -1;
	}
	l->fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (l->fd < 0) {
		snprintf(err, errlen, "listen %s: socket: %s", spec,
		    strerror(errno));
		return -1;
	}
	setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* Both wildcards at once: the IPv6 one must not take IPv4 too. */
	if (l->addr.ss_family == AF_INET6)
		setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	/* TPROXY: accept connections addressed to anyone (CAP_NET_ADMIN). */
	if (transparent && (l->addr.ss_family == AF_INET ?
	    setsockopt(l->fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) :
	    setsockopt(l->fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one))) < 0) {
		snprintf(err, errlen, "listen %s: IP_TRANSPARENT: %s", spec,
		    strerror(errno));
		close(l->fd);
		l->fd = -1;
		return -1;
	}
	/*
	 * A restart right after a crash can find the old workers still
	 * closing their copies of the socket: give them a moment.
	 */
	for (int tries = 0; bind(l->fd, (struct sockaddr *)&l->addr,
	    l->addrlen) < 0; tries++) {
		if (errno != EADDRINUSE || tries == BIND_RETRIES) {
			snprintf(err, errlen, "listen %s: %s", spec,
			    strerror(errno));
			close(l->fd);
			l->fd = -1;
			return -1;
		}
		usleep(100 * 1000);
	}
	if (listen(l->fd, 511) < 0) {
		snprintf(err, errlen, "listen %s: %s", spec, strerror(errno));
		close(l->fd);
		l->fd = -1;
		return -1;
	}
	return 0;
}

/* Is this one of our addresses? Binding to it succeeds only if so. */
static bool
is_local_addr(const struct sockaddr_storage *a)
{
	struct sockaddr_storage t = *a;
	int fd = socket(a->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool local;

	if (fd < 0)
		return false;
	addr_set_port(&t, 0);
	local = bind(fd, (struct sockaddr *)&t, addr_len((struct sockaddr *)&t)) == 0 ||
	    errno == EADDRINUSE;
	close(fd);
	return local;
}

/*
 * Would relaying to dst reach starttlsd itself? True for a connection that
 * was not redirected (the "original" destination is our own socket) and
 * for any destination that is one of our listeners.
 */
static bool
is_loop(const struct sockaddr_storage *dst, const struct sockaddr_storage *self)
{
	if (self != NULL && addr_equal(dst, self, true))
		return true;
	for (size_t i = 0; i < n_listeners; i++) {
		const struct sockaddr_storage *la = &all_listeners[i].addr;
		if (la->ss_family != dst->ss_family || addr_port(la) != addr_port(dst))
			continue;
		if (addr_equal(la, dst, false) ||
		    (addr_is_wildcard(la) && is_local_addr(dst)))
			return true;
	}
	return false;
}

/* Was this connection NAT-redirected (original destination not ourselves)? */
static bool
nat_original_dst(int fd, int family, const struct sockaddr_storage *self,
    struct sockaddr_storage *dst, socklen_t *dlen)
{
	socklen_t len = sizeof(*dst);
	int r = family == AF_INET ?
	    getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, dst, &len) :
	    getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, dst, &len);

	if (r < 0 || addr_equal(dst, self, true))
		return false;
	*dlen = len;
	return true;
}

static void
listener_accept_one(struct ev_loop *loop, struct listener *l, int fd,
    struct sockaddr_storage *peer)
{
	struct sockaddr_storage dst, self;
	socklen_t dlen = sizeof(dst), slen = sizeof(self);
	enum sess_refuse refuse = SESS_ACCEPT;
	struct sess_env *env = cur_env;

	memset(&dst, 0, sizeof(dst));
	/* Smarthost mode never looks at where the connection was addressed. */
	if (env->upstream_len != 0 ||
	    getsockname(fd, (struct sockaddr *)&self, &slen) < 0)
		memset(&self, 0, sizeof(self));
	if (env->upstream_len == 0 && l->transparent &&
	    !nat_original_dst(fd, l->addr.ss_family, &self, &dst, &dlen)) {
		/*
		 * TPROXY: the connection is addressed to the destination
		 * itself. (A NAT-redirected one, from intercept_local's output
		 * chain, is handled below like any redirect.)
		 */
		dst = self;
		dlen = slen;
		if (is_loop(&dst, NULL))
			refuse = SESS_REFUSE_LOOP;
	} else if (env->upstream_len == 0) {
		int r = l->addr.ss_family == AF_INET ?
		    getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &dlen) :
		    getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &dlen);
		if (r < 0) {
			/* No conntrack entry: not redirected to us. */
			dst = self;
			dlen = slen;
			refuse = SESS_REFUSE_NO_DST;
		} else if (is_loop(&dst, &self)) {
			refuse = SESS_REFUSE_LOOP;
		}
	}
	/* Our own upstream connection, redirected back (any worker's). */
	if (refuse == SESS_ACCEPT && ownport_is_own(peer, &dst))
		refuse = SESS_REFUSE_LOOP;
	if (refuse == SESS_ACCEPT && sess_count_all() >= env->cfg.max_sessions)
		refuse = SESS_REFUSE_SESSIONS;
	if (refuse == SESS_ACCEPT &&
	    sess_count_client(peer) >= env->cfg.max_sessions_per_client)
		refuse = SESS_REFUSE_CLIENT;
	/*
	 * Nothing parked here for this destination, but another worker has a
	 * connection parked: that worker takes the session (steer.h).
	 */
	if (refuse == SESS_ACCEPT && env->upc.on && env->upstream_len == 0 &&
	    steer_active()) {
		char key[UPC_KEY_MAX];
		int owner;

		upc_key(key, sizeof(key), &dst, env->up.transparent_source ?
		    peer : NULL);
		if (!steer_mine(key) && (owner = steer_owner(key)) >= 0 &&
		    steer_send(owner, fd, peer, &dst, dlen)) {
			close(fd);
			return;
		}
	}
	sess_start(loop, env, fd, (struct sockaddr *)peer,
	    (struct sockaddr *)&dst, dlen, refuse);
}

/* A session another worker handed over: as if accepted here, never handed on. */
void
listener_steered(int fd, const struct sockaddr_storage *peer,
    const struct sockaddr_storage *dst, socklen_t dlen)
{
	struct sess_env *env = cur_env;
	enum sess_refuse refuse = SESS_ACCEPT;

	if (env == NULL || loop_of_listeners == NULL) {
		close(fd);
		return;
	}
	if (sess_count_all() >= env->cfg.max_sessions)
		refuse = SESS_REFUSE_SESSIONS;
	else if (sess_count_client(peer) >= env->cfg.max_sessions_per_client)
		refuse = SESS_REFUSE_CLIENT;
	sess_start(loop_of_listeners, env, fd, (const struct sockaddr *)peer,
	    (const struct sockaddr *)dst, dlen, refuse);
}

static void
listener_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct listener *l = w->data;

	(void)revents;
	for (int i = 0; i < ACCEPT_BURST; i++) {
		struct sockaddr_storage peer;
		socklen_t plen = sizeof(peer);
		int fd = accept4(l->fd, (struct sockaddr *)&peer, &plen,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EINTR || errno == ECONNABORTED)
				return;
			/*
			 * EMFILE and friends: the pending connection stays
			 * readable, so pause accepting for a moment instead of
			 * spinning, and say so at most once a second.
			 */
			if (ev_now(loop) - last_accept_error >= 1.0) {
				last_accept_error = ev_now(loop);
				log_msg(LOG_ERR, "error", "accept on %s: %s "
				    "(pausing accepts for %.1fs)", l->name,
				    strerror(errno), ACCEPT_PAUSE);
			}
			listener_pause(loop);
			return;
		}
		listener_accept_one(loop, l, fd, &peer);
	}
}

void
listener_start(struct ev_loop *loop, struct listener *ls, size_t n)
{
	all_listeners = ls;
	n_listeners = n;
	loop_of_listeners = loop;
	for (size_t i = 0; i < n; i++) {
		ev_io_init(&ls[i].w, listener_cb, ls[i].fd, EV_READ);
		ls[i].w.data = &ls[i];
		ev_io_start(loop, &ls[i].w);
	}
}

void
listener_close(struct ev_loop *loop, struct listener *ls, size_t n)
{
	ev_timer_stop(loop, &pause_timer);
	for (size_t i = 0; i < n; i++) {
		if (ls[i].fd < 0)
			continue;
		ev_io_stop(loop, &ls[i].w);
		close(ls[i].fd);
		ls[i].fd = -1;
	}
}
