/*
 * listener: the listening sockets, accept, and where each connection was
 * going (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST after a REDIRECT), with the
 * loop check: a connection whose destination is starttlsd itself is refused.
 */
#ifndef STARTTLSD_LISTENER_H
#define STARTTLSD_LISTENER_H

#include <stdbool.h>
#include <sys/socket.h>

#include <ev.h>

struct sess_env;

struct listener {
	int fd;
	ev_io w;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char name[64];
	bool transparent;
};

/*
 * Bind and listen on "ADDR:PORT"; IPv6 sockets are v6-only. transparent:
 * IP_TRANSPARENT (TPROXY), and the original destination of each connection
 * is then its local address.
 */
int listener_open(struct listener *l, const char *spec, bool transparent,
    char *err, size_t errlen);
void listener_start(struct ev_loop *loop, struct listener *ls, size_t n);
/* Stop accepting and close the sockets. */
void listener_close(struct ev_loop *loop, struct listener *ls, size_t n);
/* The configuration new sessions get (a reference is taken). */
void listener_set_env(struct sess_env *env);
/* Start a session another worker handed over (steer.h's callback). */
void listener_steered(int fd, const struct sockaddr_storage *peer,
    const struct sockaddr_storage *dst, socklen_t dlen);

#endif
