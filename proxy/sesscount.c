/*
 * sesscount: the session counts all workers share (max_sessions,
 * max_sessions_per_client), in shared memory set up before the fork.
 */
#include <string.h>
#include <sys/mman.h>

#include "starttlsd/hash.h"
#include "starttlsd/sesscount.h"

/*
 * Session counts all workers share (max_sessions, max_sessions_per_client):
 * a total and a count per client-address bucket. Two clients that share a
 * bucket share its count, which can only make the limit stricter.
 */
struct sess_shared {
	uint32_t total;
	uint16_t per_client[65536];
};
/*
 * One slot per worker, so that the counts of a worker that died (even by
 * SIGKILL) can be dropped whole by the master. Readers add the slots up.
 */
static struct sess_shared sess_shared_local[1];
static struct sess_shared *sess_shared = sess_shared_local;
static size_t sess_nslots = 1, sess_slot;
/*
 * Readers add up slots [0, *sess_used) only: one past the highest slot a
 * process has counted in (shared, never lowered). Each slot is 128 KiB
 * (a page or more of its own): summing every one of 2 * MAX_WORKERS slots
 * cost a cache and TLB miss per slot for each accepted connection.
 */
static uint32_t sess_used_local = 1;
static uint32_t *sess_used = &sess_used_local;
#define SESS_HDR 64 /* the shared header (sess_used) before the slots */

int
sess_shared_init(size_t nslots)
{
	char *p = mmap(NULL, SESS_HDR + nslots * sizeof(struct sess_shared),
	    PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return -1;
	sess_used = (uint32_t *)(void *)p;
	*sess_used = 1;
	sess_shared = (struct sess_shared *)(void *)(p + SESS_HDR);
	sess_nslots = nslots;
	return 0;
}

void
sess_shared_use(size_t slot)
{
	uint32_t want, have;

	sess_slot = slot < sess_nslots ? slot : 0;
	want = (uint32_t)sess_slot + 1;
	have = __atomic_load_n(sess_used, __ATOMIC_RELAXED);
	while (have < want && !__atomic_compare_exchange_n(sess_used, &have,
	    want, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
		;
}

static size_t
slots_used(void)
{
	size_t n = __atomic_load_n(sess_used, __ATOMIC_ACQUIRE);

	return n < sess_nslots ? n : sess_nslots;
}

void
sess_shared_reset(size_t slot)
{
	if (slot < sess_nslots && sess_shared != sess_shared_local)
		memset(&sess_shared[slot], 0, sizeof(sess_shared[slot]));
}

static size_t
client_bucket(const struct sockaddr_storage *peer)
{
	uint32_t h = fnv1a_addr(FNV1A_INIT, peer, 0);

	return (h ^ (h >> 16)) & 0xffff;
}

void
sess_shared_add(const struct sockaddr_storage *peer, int delta)
{
	struct sess_shared *sh = &sess_shared[sess_slot];

	__atomic_add_fetch(&sh->total, (uint32_t)delta, __ATOMIC_RELAXED);
	__atomic_add_fetch(&sh->per_client[client_bucket(peer)],
	    (uint16_t)delta, __ATOMIC_RELAXED);
}

unsigned
sess_count_client(const struct sockaddr_storage *peer)
{
	size_t b = client_bucket(peer);
	unsigned n = 0;

	for (size_t i = 0, used = slots_used(); i < used; i++)
		n += __atomic_load_n(&sess_shared[i].per_client[b],
		    __ATOMIC_RELAXED);
	return n;
}

unsigned
sess_count_all(void)
{
	unsigned n = 0;

	for (size_t i = 0, used = slots_used(); i < used; i++)
		n += __atomic_load_n(&sess_shared[i].total, __ATOMIC_RELAXED);
	return n;
}
