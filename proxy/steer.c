/*
 * steer: see steer.h.
 */
#include "starttlsd/steer.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/un.h>
#include <unistd.h>

#include "starttlsd/addr.h"
#include "starttlsd/fdpass.h"
#include "starttlsd/hash.h"
#include "starttlsd/log.h"
#include "starttlsd/metrics.h"

#define STEER_MAGIC 0x73746572u  /* "ster" */
#define STEER_MAX_SLOTS 128

/* [bucket][word]: bit s set while slot s has a connection parked there. */
static uint64_t (*bits)[STEER_MAX_SLOTS / 64];
static size_t nslots;

static struct {
	bool on;
	int fd;
	size_t slot;
	pid_t master;
	ev_io io;
	steer_cb cb;
	uint16_t mine[STEER_BUCKETS];   /* this worker's parked, per bucket */
} st = { .fd = -1 };

struct steer_msg {
	uint32_t magic;
	uint32_t dlen;
	struct sockaddr_storage peer, dst;
};

int
steer_init(size_t n)
{
	void *p;

	if (n > STEER_MAX_SLOTS)
		n = STEER_MAX_SLOTS;
	p = mmap(NULL, STEER_BUCKETS * sizeof(*bits), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	bits = p;
	nslots = n;
	return 0;
}

void
steer_reset(size_t slot)
{
	uint64_t m;

	if (bits == NULL || slot >= nslots)
		return;
	m = ~((uint64_t)1 << (slot % 64));
	for (size_t b = 0; b < STEER_BUCKETS; b++)
		__atomic_and_fetch(&bits[b][slot / 64], m, __ATOMIC_RELAXED);
}

/* The bucket of a cache key: its "dst|src" part (a learned SNI aside). */
static size_t
bucket(const char *key)
{
	size_t n = strcspn(key, "/");

	return fnv1a(FNV1A_INIT, key, n) % STEER_BUCKETS;
}

static void
name(struct sockaddr_un *sun, socklen_t *len, pid_t master, size_t slot)
{
	int n;

	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	/* Abstract: sun_path[0] = 0, the name follows (no file, no cleanup). */
	n = snprintf(sun->sun_path + 1, sizeof(sun->sun_path) - 1,
	    "starttlsd-steer-%d-%zu", (int)master, slot);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

static void
io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	for (int i = 0; i < 64; i++) {
		struct steer_msg m;
		int fd;
		uid_t uid;
		ssize_t n = fdpass_recv(st.fd, &m, sizeof(m), &fd, &uid,
		    MSG_DONTWAIT);
		bool ours = uid == getuid();

		if (n < 0)
			return;  /* EAGAIN, or nothing we can do */
		if (fd < 0)
			continue;
		if (!ours || n != (ssize_t)sizeof(m) || m.magic != STEER_MAGIC ||
		    m.dlen > sizeof(m.dst)) {
			log_msg(LOG_WARNING, "worker", "handoff refused: %s",
			    ours ? "malformed" : "not from a worker");
			close(fd);
			continue;
		}
		(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		st.cb(fd, &m.peer, &m.dst, (socklen_t)m.dlen);
	}
}

int
steer_open(struct ev_loop *loop, pid_t master, size_t slot, steer_cb cb)
{
	struct sockaddr_un sun;
	socklen_t len;
	int one = 1;

	if (bits == NULL || slot >= nslots)
		return -1;
	st.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (st.fd < 0)
		return -1;
	name(&sun, &len, master, slot);
	if (setsockopt(st.fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0 ||
	    bind(st.fd, (struct sockaddr *)&sun, len) < 0) {
		log_msg(LOG_WARNING, "worker", "handoff socket: %s (sessions "
		    "are not steered to parked connections)", strerror(errno));
		close(st.fd);
		st.fd = -1;
		return -1;
	}
	st.on = true;
	st.slot = slot;
	st.master = master;
	st.cb = cb;
	memset(st.mine, 0, sizeof(st.mine));
	ev_io_init(&st.io, io_cb, st.fd, EV_READ);
	ev_io_start(loop, &st.io);
	return 0;
}

void
steer_close(struct ev_loop *loop)
{
	if (!st.on)
		return;
	ev_io_stop(loop, &st.io);
	close(st.fd);
	st.fd = -1;
	st.on = false;
	steer_reset(st.slot);
	memset(st.mine, 0, sizeof(st.mine));
}

bool
steer_active(void)
{
	return st.on;
}

void
steer_parked(const char *key, int delta)
{
	size_t b;
	uint64_t bit;

	if (!st.on)
		return;
	b = bucket(key);
	bit = (uint64_t)1 << (st.slot % 64);
	if (delta > 0) {
		if (st.mine[b]++ == 0)
			__atomic_or_fetch(&bits[b][st.slot / 64], bit,
			    __ATOMIC_RELAXED);
	} else if (st.mine[b] > 0 && --st.mine[b] == 0) {
		__atomic_and_fetch(&bits[b][st.slot / 64], ~bit,
		    __ATOMIC_RELAXED);
	}
}

bool
steer_mine(const char *key)
{
	return st.on && st.mine[bucket(key)] > 0;
}

int
steer_owner(const char *key)
{
	size_t b;

	if (!st.on)
		return -1;
	b = bucket(key);
	for (size_t w = 0; w < STEER_MAX_SLOTS / 64; w++) {
		uint64_t v = __atomic_load_n(&bits[b][w], __ATOMIC_RELAXED);
		if (w == st.slot / 64)
			v &= ~((uint64_t)1 << (st.slot % 64));
		if (v != 0) {
			int s = (int)(w * 64) + __builtin_ctzll(v);
			return (size_t)s < nslots ? s : -1;
		}
	}
	return -1;
}

bool
steer_send(int slot, int fd, const struct sockaddr_storage *peer,
    const struct sockaddr_storage *dst, socklen_t dlen)
{
	struct sockaddr_un sun;
	socklen_t len;
	struct steer_msg m;

	if (!st.on || slot < 0 || dlen > sizeof(m.dst))
		return false;
	name(&sun, &len, st.master, (size_t)slot);
	/* Only the bytes the addresses use: the rest stays zero (no
	 * uninitialised bytes of the caller's storage on the wire). */
	memset(&m, 0, sizeof(m));
	m.magic = STEER_MAGIC;
	m.dlen = dlen;
	memcpy(&m.peer, peer, addr_len((const struct sockaddr *)peer));
	memcpy(&m.dst, dst, dlen);
	if (fdpass_send(st.fd, &m, sizeof(m), fd, (struct sockaddr *)&sun, len,
	    MSG_DONTWAIT) != (ssize_t)sizeof(m))
		return false;
	metrics_handoff();
	return true;
}
