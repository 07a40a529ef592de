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
 * The worker's seccomp filter (libseccomp), an allowlist: the system calls
 * a relaying worker makes (proxy/priv.c says which and how they were
 * found); socket() for AF_UNIX/INET/INET6 only, mmap/mprotect never with
 * PROT_EXEC, tgkill to itself only. Any other call raises SIGSYS: the
 * worker writes 'S' and the call's number (int32, host order) to
 * report_fd (-1: nowhere) and dies of SIGSYS. 0 or -1 with err.
 */
int priv_seccomp(int report_fd, char *err, size_t errlen);

/* The name of system call nr on this architecture, or "unknown". */
void priv_syscall_name(int nr, char *buf, size_t len);

/*
 * What start-up would refuse or silently lose, checked as the workers'
 * user would meet it (uid and primary gid, no supplementary groups, no
 * capabilities): the user exists and is not uid 0; every directory above
 * state_dir lets it search; state_dir, if it exists, is a directory (the
 * master creates it and gives it to the user). user NULL, "" or "root":
 * no user to check. 0, or -1 with err naming the key ("user: ...",
 * "state_dir: ...").
 */
int priv_check(const char *user, const char *state_dir, char *err,
    size_t errlen);

/* Make dir (and the files LMDB keeps in it) the user's. */
/*
 * The first half of priv_give_dir: state_dir made (0700) and root's again,
 * so the master (root without CAP_DAC_OVERRIDE under the unit) can put its
 * own files in it (the metrics file) before it is given away.
 */
int priv_take_dir(const struct priv_user *u, const char *dir, char *err,
    size_t errlen);
int priv_give_dir(const struct priv_user *u, const char *dir, char *err,
    size_t errlen);

#endif
