/*
 * priv: dropping root. Workers run as an unprivileged user with one
 * capability left, CAP_NET_RAW, which is what SO_MARK (our upstream
 * sockets' exemption mark) and IP_TRANSPARENT (TPROXY) need on Linux 5.17
 * and later; no CAP_NET_ADMIN, so a worker cannot touch nftables.
 */
#ifndef STARTTLSD_PRIV_H
#define STARTTLSD_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct priv_user {
	bool drop;        /* false: stay as we are (not root, or user = root) */
	uid_t uid;
	gid_t gid;
	char name[64];
};

/* Look the user up (before any fork). name NULL/""/"root": no drop. */
int priv_lookup(const char *name, struct priv_user *out, char *err,
    size_t errlen);

/*
 * Become the user, keeping only the capabilities in keep_admin ?
 * {NET_ADMIN, NET_RAW} : {NET_RAW}; set no_new_privs. 0 or -1 with err.
 */
int priv_drop(const struct priv_user *u, bool keep_admin, char *err,
    size_t errlen);

/*
 * A seccomp filter (libseccomp) for a worker: what a relay never needs and
 * an attacker would (execve, ptrace, mount, namespaces, modules, bpf, keys,
 * time, reboot, ...) fails with EPERM. A denylist, not an allowlist: it
 * must never take away a call the relay, BoringSSL, LMDB or libev makes.
 */
int priv_seccomp(char *err, size_t errlen);

/* Make dir (and the files LMDB keeps in it) the user's. */
int priv_give_dir(const struct priv_user *u, const char *dir, char *err,
    size_t errlen);

#endif
