/*
 * policyd: the unprivileged policy process (design.md "Processes"): the one
 * place DNS is asked (resolver.h, validating), with one cache for every
 * worker. Workers never block on DNS and never link libunbound: they ask
 * over a SOCK_SEQPACKET socket, one request or answer per packet, and match
 * certificate chains against the answers themselves (dane.h).
 *
 * Sockets: the master keeps one end of a control socketpair (ctl); for each
 * worker it makes a client socketpair and hands policyd one end over ctl
 * (SCM_RIGHTS, policyd_give_client). policyd exits when ctl reaches EOF
 * (the master is gone).
 *
 * Wire (native byte order: both ends are this same binary):
 *   request  magic u32, seq u32, kind u8, port u16, namelen u8, name
 *   answer   magic u32, seq u32, kind u8, status u8, flags u8, ttl u32,
 *            nrr u16, then nrr times (len u16, rdata)
 * kind is what to ask: TLSA for _PORT._tcp.NAME, MX, A or AAAA for NAME.
 * status is an enum res_status; the rdata are the answer RRset as the
 * resolver gave it (none unless secure or insecure).
 *
 * Caching (pd_cache): answers are kept for their TTL clamped to
 * [PD_TTL_MIN, PD_TTL_MAX]; bogus and error answers for PD_TTL_FAIL, so a
 * broken zone is not asked again for every recipient, nor remembered long.
 * Questions already in flight are not asked twice: later askers wait for
 * the same answer.
 */
#ifndef STARTTLSD_POLICYD_H
#define STARTTLSD_POLICYD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "starttlsd/resolver.h"

#define PD_MAGIC 0x53544c50u      /* "PLTS" */
#define PD_MSG_MAX 16384          /* one packet, either way */
#define PD_NAME_MAX 253
#define PD_TTL_MIN 5
#define PD_TTL_MAX 3600
#define PD_TTL_FAIL 10
#define PD_CACHE_MAX 10000        /* entries */
#define PD_MAX_RR 64              /* records carried in one answer */

enum pd_kind { PD_TLSA = 1, PD_MX = 2, PD_A = 3, PD_AAAA = 4 };

#define PD_F_CACHED 0x01          /* answered from the cache */
#define PD_F_TRUNCATED 0x02       /* more records than fit: status is error */

const char *pd_kind_str(enum pd_kind k);

struct pd_req {
	uint32_t seq;
	enum pd_kind kind;
	uint16_t port;             /* TLSA only (25) */
	char name[PD_NAME_MAX + 1]; /* lower case, no trailing dot */
};

/* An answer as decoded; rdata point into the packet buffer. */
struct pd_ans {
	uint32_t seq;
	enum pd_kind kind;
	enum res_status status;
	uint8_t flags;
	uint32_t ttl;
	size_t nrr;
	const uint8_t *rdata[PD_MAX_RR];
	size_t rdlen[PD_MAX_RR];
};

/* Encode into out (cap bytes); bytes written, or 0 if it does not fit / is invalid. */
size_t pd_req_encode(const struct pd_req *req, uint8_t *out, size_t cap);

/*
 * Decode one request packet; 0, or -1 if malformed (bad magic, unknown kind,
 * a name that is empty, too long, or not letters, digits, '-', '_' and '.').
 * The name comes out lower case without a trailing dot.
 */
int pd_req_decode(const uint8_t *in, size_t len, struct pd_req *out);

/*
 * Encode an answer with nrr records. If they do not fit in cap or exceed
 * PD_MAX_RR, the answer becomes status error with PD_F_TRUNCATED and no
 * records (never a silent subset). Bytes written, 0 if cap is too small
 * even for that.
 */
size_t pd_ans_encode(uint32_t seq, enum pd_kind kind, enum res_status status,
    uint8_t flags, uint32_t ttl, const uint8_t *const *rdata,
    const size_t *rdlen, size_t nrr, uint8_t *out, size_t cap);

/* Decode one answer packet; 0, or -1 if malformed. */
int pd_ans_decode(const uint8_t *in, size_t len, struct pd_ans *out);

/* ---- the cache (pure; time passed in) ------------------------------------ */

struct pd_cache;

struct pd_cache *pd_cache_new(size_t max_entries);
void pd_cache_free(struct pd_cache *c);

/* How long an answer of this status and TTL is kept. */
uint32_t pd_cache_ttl(enum res_status status, uint32_t ttl);

/*
 * Store the encoded answer payload for (kind, port, name), replacing any
 * entry, kept until now + pd_cache_ttl(status, ttl). When full, the entry
 * expiring first goes. 0, or -1 on allocation failure.
 */
int pd_cache_put(struct pd_cache *c, enum pd_kind kind, uint16_t port,
    const char *name, enum res_status status, uint32_t ttl,
    const uint8_t *ans, size_t anslen, uint64_t now);

/*
 * A live entry: its encoded answer (borrowed until the next put) and the
 * TTL left, or NULL (expired entries are dropped here).
 */
const uint8_t *pd_cache_get(struct pd_cache *c, enum pd_kind kind,
    uint16_t port, const char *name, uint64_t now, size_t *len,
    uint32_t *ttl_left);

size_t pd_cache_count(const struct pd_cache *c);

/* ---- the process ------------------------------------------------------------ */

struct policyd_opts {
	struct resolver_opts resolver;
};

/*
 * The policy process's entry point, called in a freshly forked child after
 * privileges were dropped: its own libev loop, the resolver, requests from
 * clients handed over ctl. Never returns: exits 0 when ctl reaches EOF, 1 if
 * the resolver cannot start. Programs that call it link libunbound (and so
 * libev statically, resolver.h).
 */
void policyd_main(int ctl, const struct policyd_opts *opts)
    __attribute__((noreturn));

/*
 * Master side: fork the policy process. The child keeps only the control
 * socket (as fd 3) and stdin/out/err, reopens the log, calls drop(arg) (the
 * privilege drop; nonzero: exit 1), then policyd_main. The parent gets the
 * child's pid and its end of the control socket in *ctl_out; -1 on failure.
 */
pid_t policyd_spawn(const struct policyd_opts *opts, int (*drop)(void *),
    void *arg, bool log_stderr, int *ctl_out);

struct config;

/*
 * policyd_spawn with the configuration's trust_anchor_file and resolvers;
 * logs a failure. The daemon's master calls it when dane = on.
 */
pid_t policyd_start(const struct config *cfg, int (*drop)(void *), void *arg,
    int *ctl_out);

/* Master side: hand client socket fd to policyd over ctl (SCM_RIGHTS). 0 or -1. */
int policyd_give_client(int ctl, int fd);

#endif
