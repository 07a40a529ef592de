/*
 * ownport: loop detection across worker processes. A table in shared
 * memory (set up once, before the workers are forked) of the local ports of
 * our upstream connections, each with a hash of where it goes. A connection
 * accepted from a local port in the table, going to that destination, is
 * our own upstream connection redirected back to us.
 */
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "starttlsd/addr.h"
#include "starttlsd/hash.h"
#include "starttlsd/ownport.h"

/*
 * [family][port] → the owning worker's slot (high 32 bits) and a hash of
 * our address, the port and the destination (low 32 bits, never 0); 0:
 * free. Shared by workers; the master clears a dead worker's entries.
 */
static uint64_t (*ownports)[65536];
/*
 * Per worker slot: hash of the destination its connect() in flight goes
 * to, 0: none. A worker has at most one: connect() and the publication of
 * the port it bound happen in one pass of its loop. Shared by workers.
 */
static uint32_t *connecting;
static size_t connecting_n, connecting_me;

int
ownport_init(size_t nslots)
{
	size_t len = 2 * 65536 * sizeof(uint64_t) + nslots * sizeof(uint32_t);
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return -1;
	ownports = p;
	connecting = (uint32_t *)(void *)(ownports + 2);
	connecting_n = nslots;
	return 0;
}

void
ownport_use(size_t slot)
{
	connecting_me = slot < connecting_n ? slot : 0;
}

void
ownport_reset(size_t slot)
{
	if (slot >= connecting_n)
		return;
	__atomic_store_n(&connecting[slot], 0, __ATOMIC_RELEASE);
	/* A worker killed mid-session leaves its ports behind. */
	for (size_t f = 0; f < 2; f++)
		for (size_t port = 0; port < 65536; port++) {
			uint64_t v = __atomic_load_n(&ownports[f][port],
			    __ATOMIC_RELAXED);
			if (v != 0 && (v >> 32) == slot)
				__atomic_compare_exchange_n(&ownports[f][port], &v,
				    0, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
		}
}

/*
 * Our end (address and port) and the destination: a LAN client never has
 * our address, so only our own connection, come back, can match. Never 0.
 */
static uint32_t
pair_hash(const struct sockaddr_storage *local, const struct sockaddr_storage *dst)
{
	uint32_t h = fnv1a_addr(fnv1a_addr(FNV1A_INIT, local, 1), dst, 1);
	return h ? h : 1;
}

static uint32_t
dst_hash(const struct sockaddr_storage *dst)
{
	uint32_t h = fnv1a_addr(FNV1A_INIT, dst, 1);
	return h ? h : 1;
}

static uint64_t *
ownport_slot(const struct sockaddr_storage *local)
{
	if (ownports == NULL ||
	    (local->ss_family != AF_INET && local->ss_family != AF_INET6))
		return NULL;
	return &ownports[local->ss_family == AF_INET6][addr_port(local)];
}

void
ownport_publish(const struct sockaddr_storage *local,
    const struct sockaddr_storage *dst, bool on)
{
	uint64_t *slot = ownport_slot(local), mine;

	if (slot == NULL)
		return;
	mine = (uint64_t)connecting_me << 32 | pair_hash(local, dst);
	if (on)
		__atomic_store_n(slot, mine, __ATOMIC_RELEASE);
	else	/* unless the port was since taken towards elsewhere */
		__atomic_compare_exchange_n(slot, &mine, 0, false,
		    __ATOMIC_RELEASE, __ATOMIC_RELAXED);
}

void
ownport_connecting(const struct sockaddr_storage *dst)
{
	if (connecting != NULL)
		__atomic_store_n(&connecting[connecting_me],
		    dst != NULL ? dst_hash(dst) : 0, __ATOMIC_RELEASE);
}

/* Is another worker between connect() and publishing its port, towards dst? */
static bool
connecting_to(uint32_t h)
{
	for (size_t i = 0; i < connecting_n; i++)
		if (i != connecting_me &&
		    __atomic_load_n(&connecting[i], __ATOMIC_ACQUIRE) == h)
			return true;
	return false;
}

static double
mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool
ownport_is_own(const struct sockaddr_storage *peer, const struct sockaddr_storage *dst)
{
	uint64_t *slot = ownport_slot(peer);
	uint32_t want, h;
	double until = 0;

	if (slot == NULL || dst->ss_family != peer->ss_family)
		return false;
	want = pair_hash(peer, dst);
	if ((uint32_t)__atomic_load_n(slot, __ATOMIC_ACQUIRE) == want)
		return true;
	/*
	 * Over loopback the looped connection can be established, and taken
	 * by another worker, before the connecting worker has returned from
	 * connect() and published its port. It published the destination
	 * before connect(): while one is in flight towards this one, wait
	 * (a few microseconds, bounded: OWNPORT_WAIT) for the port.
	 */
	h = dst_hash(dst);
	while (connecting_to(h)) {
		if ((uint32_t)__atomic_load_n(slot, __ATOMIC_ACQUIRE) == want)
			return true;
		if (until == 0)
			until = mono_now() + OWNPORT_WAIT;
		else if (mono_now() > until)
			break;
		sched_yield();
	}
	return (uint32_t)__atomic_load_n(slot, __ATOMIC_ACQUIRE) == want;
}
