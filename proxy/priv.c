/* priv: become an unprivileged user, keeping just the capabilities needed. */
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <linux/capability.h>
#include <seccomp.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "starttlsd/priv.h"

int
priv_lookup(const char *name, struct priv_user *out, char *err, size_t errlen)
{
	struct passwd *pw;

	memset(out, 0, sizeof(*out));
	if (name == NULL || name[0] == '\0' || strcmp(name, "root") == 0 ||
	    geteuid() != 0)
		return 0;
	errno = 0;
	if ((pw = getpwnam(name)) == NULL) {
		snprintf(err, errlen, "user %s: %s (create it, e.g. useradd "
		    "--system --no-create-home --shell /usr/sbin/nologin %s, "
		    "or set user = root)", name, errno ? strerror(errno) :
		    "no such user", name);
		return -1;
	}
	if (pw->pw_uid == 0) {
		snprintf(err, errlen, "user %s: has uid 0, that is no drop", name);
		return -1;
	}
	out->drop = true;
	out->uid = pw->pw_uid;
	out->gid = pw->pw_gid;
	snprintf(out->name, sizeof(out->name), "%s", name);
	return 0;
}

/*
 * Every system call a worker makes once it relays: the event loop (epoll,
 * timers, signals), sockets both ways (TCP, the syslog socket), BoringSSL
 * (getrandom), LMDB (file I/O, mmap, msync, robust futexes) and the C
 * library's allocator. Found by running the integration suite under
 * strace -f (see docs/security.md); anything else is denied, logged by the
 * master with its name, and kills the worker, so a missing entry shows in
 * the tests, not as a silent EPERM in production.
 */
static const char *const worker_calls[] = {
	/* memory */
	"brk", "mmap", "munmap", "mremap", "mprotect", "madvise",
	/* files and descriptors (LMDB, the syslog socket, libev) */
	"read", "write", "readv", "writev", "pread64", "pwrite64", "lseek",
	"openat", "close", "fstat", "newfstatat", "statx", "fstatfs", "fcntl",
	"dup", "dup2", "dup3", "fsync", "fdatasync", "msync", "ftruncate",
	"ioctl", /* TCGETS, FIONREAD, FIONBIO only: see below */
	/* sockets */
	"socket", /* AF_UNIX, AF_INET, AF_INET6 only: see below */
	"connect", "bind", "accept", "accept4", "shutdown", "getsockname",
	"getpeername", "getsockopt", "setsockopt", "sendto", "recvfrom",
	"sendmsg", "recvmsg",
	/* the event loop */
	"epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "poll",
	"ppoll", "eventfd2", "signalfd4", "pipe2", "rt_sigaction",
	"rt_sigprocmask", "rt_sigreturn", "sigaltstack", "restart_syscall",
	"nanosleep", "clock_nanosleep", "clock_gettime", "clock_getres",
	"gettimeofday", "time",
	/* LMDB's robust mutexes and the pin store's sync thread, randomness */
	"futex", "set_robust_list", "rseq", "sched_yield", "getrandom",
	/* who am I */
	"getpid", "gettid", "getppid", "getuid", "geteuid", "getgid",
	"getegid", "uname", "prlimit64", "getrlimit", "sysinfo",
	/* the end, and raising SIGSYS on ourselves (tgkill: see below) */
	"exit", "exit_group", "tgkill",
#if defined(__SANITIZE_ADDRESS__)
	/* LeakSanitizer's exit check stops the process with a tracer task. */
	"clone", "ptrace", "wait4", "prctl", "kill", "sched_getaffinity",
	"getdents64", "getdents", "readlink", "open", "stat", "lstat",
#endif
};

static int sigsys_report = -1;

/*
 * A denied call: tell the master which (it logs the name), then die of
 * SIGSYS. Only async-signal-safe calls, all in the list; SA_RESETHAND put
 * the default action back, so the raise() kills.
 */
static void
sigsys_handler(int sig, siginfo_t *si, void *uctx)
{
	unsigned char msg[1 + sizeof(int32_t)] = { 'S' };
	int32_t nr = si->si_syscall;
	ssize_t n = 0;

	(void)uctx;
	memcpy(msg + 1, &nr, sizeof(nr));
	if (sigsys_report >= 0)
		n = write(sigsys_report, msg, sizeof(msg));
	(void)n;
	raise(sig);
	_exit(128 + sig);
}

int
priv_seccomp(int report_fd, char *err, size_t errlen)
{
	const scmp_datum_t socket_ok[] = { AF_UNIX, AF_INET, AF_INET6 };
	struct sigaction sa;
	scmp_filter_ctx ctx;
	const char *name = "";
	int rc, nr;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = sigsys_handler;
	sa.sa_flags = SA_SIGINFO | SA_RESETHAND | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0) {
		snprintf(err, errlen, "seccomp: SIGSYS handler: %s",
		    strerror(errno));
		return -1;
	}
	sigsys_report = report_fd;
	/* The default: trap (SIGSYS to the handler above), never allow. */
	if ((ctx = seccomp_init(SCMP_ACT_TRAP)) == NULL) {
		snprintf(err, errlen, "seccomp: cannot initialise");
		return -1;
	}
	for (size_t i = 0; i < sizeof(worker_calls) / sizeof(worker_calls[0]); i++) {
		name = worker_calls[i];
		/* Not on this architecture (e.g. "time" on arm64): skip. */
		if ((nr = seccomp_syscall_resolve_name(name)) == __NR_SCMP_ERROR ||
		    nr < 0)
			continue;
		if (strcmp(name, "socket") == 0) {
			/* TCP both ways and the syslog socket; no netlink, no raw. */
			for (size_t d = 0; d < 3; d++)
				if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
				    SCMP_A0(SCMP_CMP_EQ, socket_ok[d]))) < 0)
					goto rule_fail;
			continue;
		}
		if (strcmp(name, "mmap") == 0 || strcmp(name, "mprotect") == 0) {
			/* No new executable memory: nothing to run shellcode in. */
			if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
			    SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0))) < 0)
				goto rule_fail;
			continue;
		}
		if (strcmp(name, "ioctl") == 0) {
			/* stdio's isatty() and byte counts; no tty or device control. */
			const scmp_datum_t ok[] = { TCGETS, FIONREAD, FIONBIO };
			for (size_t r = 0; r < 3; r++)
				if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
				    SCMP_A1(SCMP_CMP_EQ, ok[r]))) < 0)
					goto rule_fail;
			continue;
		}
		if (strcmp(name, "tgkill") == 0) {
			/* Signals to this process only (raise). */
			if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
			    SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()))) < 0)
				goto rule_fail;
			continue;
		}
		if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0)) < 0)
			goto rule_fail;
	}
	/*
	 * The kernel logs every denied call too (audit, or dmesg without
	 * auditd): the record that remains when the handler cannot run, as
	 * in a task with SIGSYS blocked. Not fatal where it is not known.
	 */
	(void)seccomp_attr_set(ctx, SCMP_FLTATR_CTL_LOG, 1);
	/*
	 * Every thread (the pin store's sync thread runs already). Under a
	 * systemd unit's own SystemCallFilter, libseccomp's probe of the
	 * kernel's seccomp(2) can fail and leave it at API level 1, which
	 * refuses TSYNC although the kernel has it: ask for level 3 then.
	 */
	if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1)) < 0 &&
	    seccomp_api_set(3) == 0)
		rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	if (rc < 0) {
		snprintf(err, errlen, "seccomp: thread sync: %s", strerror(-rc));
		seccomp_release(ctx);
		return -1;
	}
	if ((rc = seccomp_load(ctx)) < 0 &&
	    seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 0) == 0) {
		/*
		 * seccomp(2) itself refused (a unit's own SystemCallFilter
		 * without it): the filter by prctl(2), for this thread, where
		 * all session work runs; the pin store's commit thread is then
		 * left as it was (docs/security.md).
		 */
		rc = seccomp_load(ctx);
	}
	if (rc < 0) {
		snprintf(err, errlen, "seccomp: load: %s", strerror(-rc));
		seccomp_release(ctx);
		return -1;
	}
	seccomp_release(ctx);
	return 0;
rule_fail:
	snprintf(err, errlen, "seccomp: rule for %s: %s", name,
	    strerror(-rc));
	seccomp_release(ctx);
	return -1;
}

void
priv_syscall_name(int nr, char *buf, size_t len)
{
	char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);

	snprintf(buf, len, "%s", name != NULL ? name : "unknown");
	free(name);
}

/* May uid:gid (no supplementary groups, as a worker) do `want` in st? */
static bool
may(const struct stat *st, uid_t uid, gid_t gid, mode_t want_usr)
{
	mode_t m = st->st_mode;

	if (uid == 0)
		return true;
	if (st->st_uid == uid)
		return (m & want_usr) == want_usr;
	if (st->st_gid == gid)
		return (m & (want_usr >> 3)) == (want_usr >> 3);
	return (m & (want_usr >> 6)) == (want_usr >> 6);
}

int
priv_check(const char *user, const char *state_dir, char *err, size_t errlen)
{
	struct passwd *pw;
	struct stat st;
	char path[4096];
	uid_t uid = 0;
	gid_t gid = 0;

	if (user != NULL && user[0] != '\0' && strcmp(user, "root") != 0) {
		errno = 0;
		if ((pw = getpwnam(user)) == NULL) {
			snprintf(err, errlen, "user: %s: %s (create it, e.g. "
			    "useradd --system --no-create-home --shell "
			    "/usr/sbin/nologin %s, or set user = root)", user,
			    errno ? strerror(errno) : "no such user", user);
			return -1;
		}
		if (pw->pw_uid == 0) {
			snprintf(err, errlen, "user: %s: has uid 0, that is no "
			    "drop", user);
			return -1;
		}
		uid = pw->pw_uid;
		gid = pw->pw_gid;
	}
	if (state_dir == NULL)
		return 0;
	if (state_dir[0] != '/' || strlen(state_dir) >= sizeof(path)) {
		snprintf(err, errlen, "state_dir: %s: expected an absolute path",
		    state_dir);
		return -1;
	}
	/*
	 * Every directory above it must let the workers' user through
	 * (search); the master creates state_dir itself and gives it to them.
	 */
	snprintf(path, sizeof(path), "%s", state_dir);
	for (char *p = path + 1;; p++) {
		bool last = *p == '\0';

		if (*p != '/' && !last)
			continue;
		*p = '\0';
		if (stat(path, &st) < 0) {
			if (errno == ENOENT && last)
				break; /* the master creates it (mkdir, chown) */
			snprintf(err, errlen, "state_dir: %s: %s: %s", state_dir,
			    path, strerror(errno));
			return -1;
		}
		if (!S_ISDIR(st.st_mode)) {
			snprintf(err, errlen, "state_dir: %s: %s is not a "
			    "directory", state_dir, path);
			return -1;
		}
		if (!last && !may(&st, uid, gid, S_IXUSR)) {
			snprintf(err, errlen, "state_dir: %s: the workers' user "
			    "%s cannot reach it: %s (mode %04o, owner %u:%u) "
			    "does not let it search", state_dir,
			    user ? user : "root", path,
			    (unsigned)(st.st_mode & 07777),
			    (unsigned)st.st_uid, (unsigned)st.st_gid);
			return -1;
		}
		if (last)
			break;
		*p = '/';
	}
	return 0;
}

int
priv_give_dir(const struct priv_user *u, const char *dir, char *err,
    size_t errlen)
{
	/*
	 * The directory last: once it is the user's (mode 0700), a root
	 * without CAP_DAC_OVERRIDE (the systemd unit) cannot reach into it.
	 * For the same reason, take it back first if a previous run gave it
	 * away, so files root left there (an older unit) are given too.
	 */
	static const char *const files[] = { "/data.mdb", "/lock.mdb", "" };
	char path[4096];

	if (!u->drop || dir == NULL)
		return 0;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "state_dir %s: %s", dir, strerror(errno));
		return -1;
	}
	if (lchown(dir, geteuid(), (gid_t)-1) < 0) {
		snprintf(err, errlen, "state_dir %s: chown: %s", dir,
		    strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s%s", dir, files[i]);
		if (lchown(path, u->uid, u->gid) < 0 &&
		    (files[i][0] == '\0' || errno != ENOENT)) {
			snprintf(err, errlen, "state_dir %s: chown to %s: %s",
			    path, u->name, strerror(errno));
			return -1;
		}
	}
	return 0;
}

int
priv_take_dir(const struct priv_user *u, const char *dir, char *err,
    size_t errlen)
{
	if (!u->drop || dir == NULL || dir[0] == '\0')
		return 0;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "state_dir %s: %s", dir, strerror(errno));
		return -1;
	}
	if (lchown(dir, geteuid(), (gid_t)-1) < 0) {
		snprintf(err, errlen, "state_dir %s: chown: %s", dir,
		    strerror(errno));
		return -1;
	}
	return 0;
}

int
priv_drop(const struct priv_user *u, bool keep_admin, char *err, size_t errlen)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
		.pid = 0,
	};
	struct __user_cap_data_struct data[2];
	uint32_t keep = 1u << CAP_NET_RAW;

	if (!u->drop)
		return 0;
	if (keep_admin)
		keep |= 1u << CAP_NET_ADMIN;
	/* Bounding set first, while CAP_SETPCAP is still ours. */
	for (int cap = 0; cap <= CAP_LAST_CAP; cap++)
		if (!(cap < 32 && (keep & (1u << cap))))
			prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
	/* Keep the permitted set across setuid, then trim it. */
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0 ||
	    setgroups(0, NULL) < 0 || setgid(u->gid) < 0 || setuid(u->uid) < 0) {
		snprintf(err, errlen, "becoming %s: %s", u->name, strerror(errno));
		return -1;
	}
	memset(data, 0, sizeof(data));
	data[0].effective = data[0].permitted = keep;
	if (syscall(SYS_capset, &hdr, data) < 0) {
		snprintf(err, errlen, "capabilities: %s", strerror(errno));
		return -1;
	}
	/* No way back: no setuid binaries, no regained privileges. */
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0 ||
	    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		snprintf(err, errlen, "prctl: %s", strerror(errno));
		return -1;
	}
	return 0;
}
