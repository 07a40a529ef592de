/* priv: become an unprivileged user, keeping just the capabilities needed. */
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
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
priv_give_dir(const struct priv_user *u, const char *dir, char *err,
    size_t errlen)
{
	static const char *const files[] = { "", "/data.mdb", "/lock.mdb" };
	char path[4096];

	if (!u->drop || dir == NULL)
		return 0;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "state_dir %s: %s", dir, strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s%s", dir, files[i]);
		if (lchown(path, u->uid, u->gid) < 0 && (i == 0 || errno != ENOENT)) {
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
