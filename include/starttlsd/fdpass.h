/*
 * fdpass: a message with one descriptor attached (SCM_RIGHTS) over a Unix
 * socket, the one way the processes hand sockets to each other: the master
 * to policyd (its clients) and to workers (their policyd socket), a worker
 * to another (a client session, steer.h).
 */
#ifndef STARTTLSD_FDPASS_H
#define STARTTLSD_FDPASS_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

/*
 * Send len bytes of msg with fd attached, to the connected socket sock or
 * to `to` (tolen bytes; NULL: connected). flags as for sendmsg (MSG_NOSIGNAL
 * is added); EINTR is retried. Bytes sent, or -1.
 */
ssize_t fdpass_send(int sock, const void *msg, size_t len, int fd,
    const struct sockaddr *to, socklen_t tolen, int flags);

/*
 * Receive up to cap bytes; *fd gets the descriptor sent with them (close
 * on exec), or -1. With uid non-NULL (the socket has SO_PASSCRED), *uid
 * gets the sender's user, or (uid_t)-1 if none came. A message whose
 * control data was cut has its descriptor closed (*fd -1). Returns what
 * recvmsg returned (-1 with errno, 0 at EOF).
 */
ssize_t fdpass_recv(int sock, void *buf, size_t cap, int *fd, uid_t *uid,
    int flags);

#endif
