/*
 * fdpass: see fdpass.h.
 */
#include "starttlsd/fdpass.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

ssize_t
fdpass_send(int sock, const void *msg, size_t len, int fd,
    const struct sockaddr *to, socklen_t tolen, int flags)
{
	struct iovec iov = { .iov_base = (void *)(uintptr_t)msg, .iov_len = len };
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr m = {
		.msg_name = (void *)(uintptr_t)to, .msg_namelen = to ? tolen : 0,
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = u.b, .msg_controllen = sizeof(u.b),
	};
	struct cmsghdr *h;
	ssize_t r;

	memset(&u, 0, sizeof(u));
	h = CMSG_FIRSTHDR(&m);
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(h), &fd, sizeof(int));
	do
		r = sendmsg(sock, &m, flags | MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	return r;
}

ssize_t
fdpass_recv(int sock, void *buf, size_t cap, int *fd, uid_t *uid, int flags)
{
	struct iovec iov = { .iov_base = buf, .iov_len = cap };
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(struct ucred))];
	} u;
	struct msghdr m = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = u.b, .msg_controllen = sizeof(u.b),
	};
	ssize_t r = recvmsg(sock, &m, flags | MSG_CMSG_CLOEXEC);

	*fd = -1;
	if (uid != NULL)
		*uid = (uid_t)-1;
	if (r < 0)
		return r;
	for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h != NULL;
	    h = CMSG_NXTHDR(&m, h)) {
		if (h->cmsg_level != SOL_SOCKET)
			continue;
		if (h->cmsg_type == SCM_RIGHTS &&
		    h->cmsg_len == CMSG_LEN(sizeof(int))) {
			if (*fd >= 0)
				close(*fd);   /* one descriptor per message */
			memcpy(fd, CMSG_DATA(h), sizeof(int));
		} else if (h->cmsg_type == SCM_CREDENTIALS && uid != NULL &&
		    h->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
			struct ucred c;
			memcpy(&c, CMSG_DATA(h), sizeof(c));
			*uid = c.uid;
		}
	}
	if ((m.msg_flags & MSG_CTRUNC) && *fd >= 0) {
		close(*fd);
		*fd = -1;
	}
	return r;
}
