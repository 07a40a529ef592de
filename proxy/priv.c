/* priv: become an unprivileged user, keeping just the capabilities needed. */
#include <errno.h>
#include <grp.h>
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

int
priv_seccomp(char *err, size_t errlen)
{
	static const int deny[] = {
		SCMP_SYS(execve), SCMP_SYS(execveat),
#if !defined(__SANITIZE_ADDRESS__)
		/* LeakSanitizer's exit check traces the process itself. */
		SCMP_SYS(ptrace),
#endif
		SCMP_SYS(process_vm_readv), SCMP_SYS(process_vm_writev),
		SCMP_SYS(mount), SCMP_SYS(umount2), SCMP_SYS(pivot_root),
		SCMP_SYS(chroot), SCMP_SYS(unshare), SCMP_SYS(setns),
		SCMP_SYS(swapon), SCMP_SYS(swapoff), SCMP_SYS(reboot),
		SCMP_SYS(kexec_load), SCMP_SYS(kexec_file_load),
		SCMP_SYS(init_module), SCMP_SYS(finit_module),
		SCMP_SYS(delete_module), SCMP_SYS(bpf), SCMP_SYS(perf_event_open),
		SCMP_SYS(keyctl), SCMP_SYS(add_key), SCMP_SYS(request_key),
		SCMP_SYS(userfaultfd), SCMP_SYS(iopl), SCMP_SYS(ioperm),
		SCMP_SYS(acct), SCMP_SYS(settimeofday), SCMP_SYS(clock_settime),
		SCMP_SYS(adjtimex), SCMP_SYS(clock_adjtime),
		SCMP_SYS(setuid), SCMP_SYS(setgid), SCMP_SYS(setreuid),
		SCMP_SYS(setregid), SCMP_SYS(setresuid), SCMP_SYS(setresgid),
		SCMP_SYS(setgroups), SCMP_SYS(capset),
		SCMP_SYS(open_by_handle_at), SCMP_SYS(name_to_handle_at),
		SCMP_SYS(quotactl), SCMP_SYS(syslog), SCMP_SYS(vhangup),
	};
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	int rc;

	if (ctx == NULL) {
		snprintf(err, errlen, "seccomp: cannot initialise");
		return -1;
	}
	for (size_t i = 0; i < sizeof(deny) / sizeof(deny[0]); i++)
		if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), deny[i],
		    0)) < 0) {
			snprintf(err, errlen, "seccomp: rule %zu: %s", i,
			    strerror(-rc));
			seccomp_release(ctx);
			return -1;
		}
	if ((rc = seccomp_load(ctx)) < 0) {
		snprintf(err, errlen, "seccomp: load: %s", strerror(-rc));
		seccomp_release(ctx);
		return -1;
	}
	seccomp_release(ctx);
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
