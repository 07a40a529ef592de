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
#define PD_CACHE_KEY_MAX 320      /* a cache key: a name, or "D address" for PD_POLICY */

enum pd_kind {
	PD_TLSA = 1, PD_MX = 2, PD_A = 3, PD_AAAA = 4,  /* raw RRsets (pd_ans) */
	PD_POLICY = 5,  /* a recipient domain's policy for a dialled address (pd_pol) */
	PD_ADDR = 6,    /* what is known of an address before dialling it (pd_pol) */
	PD_REPORT = 7,  /* one TLS-RPT result, worker -> policyd, never answered */
};

#define PD_F_CACHED 0x01          /* answered from the cache */
#define PD_F_TRUNCATED 0x02       /* more records than fit: status is error */

const char *pd_kind_str(enum pd_kind k);

/* The request for PD_POLICY / PD_ADDR carries the dialled address. */
struct pd_req_addr {
	uint8_t family;             /* AF_INET or AF_INET6; 0: none */
	uint8_t addr[16];           /* network order; 4 bytes used for AF_INET */
};

struct pd_req {
	uint32_t seq;
	enum pd_kind kind;
	uint16_t port;             /* TLSA only (25) */
	char name[PD_NAME_MAX + 1]; /* lower case, no trailing dot; "" for PD_ADDR */
	struct pd_req_addr addr;    /* PD_POLICY, PD_ADDR: the dialled address */
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
 * a name that is empty, too long, or not letters, digits, '-', '_' and '.';
 * for PD_ADDR a name that is not empty; for PD_POLICY and PD_ADDR an
 * address family other than 0, AF_INET, AF_INET6). The name comes out lower
 * case without a trailing dot. PD_REPORT is not a request (pd_report_decode).
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

/* ---- domain policy: PD_POLICY, PD_ADDR, PD_REPORT (issue 11) ------------
 *
 * A worker asks PD_POLICY at the first RCPT of each recipient domain D in a
 * session, with the address it dialled (pd_req.addr); policyd resolves what
 * the table in docs/policy.md ("DANE and MTA-STS") needs: MX(D), A/AAAA of
 * each MX host, TLSA _25._tcp of the host(s) that matter, and D's MTA-STS
 * policy, and answers one pd_pol. The worker matches its own peer chain
 * (dane_match, policy_mx_match) and decides; policyd never sees a chain.
 *
 * A worker asks PD_ADDR (name empty) before dialling an address: if a secure
 * answer taught policyd that this address belongs to an MX host with usable
 * TLSA (or to an MTA-STS enforce domain's MX), the answer says so, with the
 * SNI to send and the TLSA RRset, so TLS is required and checked before the
 * client's greeting (a mismatch is a 421, and the client tries the next MX).
 * Nothing learned: dane = PD_DANE_NONE, sts = PD_STS_NONE, no sni.
 *
 * A worker sends PD_REPORT (no answer) for every recipient domain judged
 * under a DANE or MTA-STS policy: one success or one failure for the
 * TLS-RPT aggregate of that policy domain (tlsrpt.h).
 */

/* The DANE side of a domain's policy, for the dialled address. */
enum pd_dane {
	PD_DANE_NONE,      /* no DANE here: MX or host insecure, or secure NODATA TLSA */
	PD_DANE_MATCH,     /* usable TLSA: TLS required, the chain must match hosts[] */
	PD_DANE_ENCRYPT,   /* TLSA but none usable: TLS required, not authenticated */
	PD_DANE_TEMPFAIL,  /* a lookup bogus, failed or timed out: defer 4.7.5, never fall back */
	PD_DANE_UNKNOWN,   /* address in no MX's secure addresses, not all MX have usable TLSA */
};

/* The MTA-STS side (RFC 8461), used only when dane is NONE. */
enum pd_sts {
	PD_STS_NONE,       /* no policy: no TXT, mode none, or none could be fetched */
	PD_STS_TESTING,    /* mode testing: judge, report, deliver */
	PD_STS_ENFORCE,    /* mode enforce: TLS, a WebPKI chain, a name matching mx[] */
};

/*
 * RFC 8460 result types (section 4.3), as carried on the wire and logged:
 * pd_result_str gives "tlsa-invalid", ... ; PD_R_SUCCESS is a success.
 */
enum pd_result {
	PD_R_SUCCESS = 0,
	PD_R_STARTTLS_NOT_SUPPORTED,
	PD_R_CERT_HOST_MISMATCH,
	PD_R_CERT_EXPIRED,
	PD_R_CERT_NOT_TRUSTED,
	PD_R_VALIDATION_FAILURE,
	PD_R_TLSA_INVALID,
	PD_R_DNSSEC_INVALID,
	PD_R_DANE_REQUIRED,
	PD_R_STS_POLICY_FETCH_ERROR,
	PD_R_STS_POLICY_INVALID,
	PD_R_STS_WEBPKI_INVALID,
	PD_R_MAX_,
};
const char *pd_result_str(enum pd_result r);

#define PD_MAX_HOSTS 8     /* TLSA host sets carried in one pd_pol */
#define PD_WHY_MAX 200     /* a failure's reason, for the log */

/* One MX host's TLSA RRset, with the names a DANE-TA match may check. */
struct pd_tlsa_host {
	const char *host;  /* the MX host name (no trailing dot) */
	const char *base;  /* the TLSA base domain (after a secure CNAME; else host) */
	size_t nrr;
	const uint8_t *rdata[PD_MAX_RR];  /* TLSA rdata as the resolver gave it */
	size_t rdlen[PD_MAX_RR];
};

/*
 * A PD_POLICY or PD_ADDR answer, decoded: strings and rdata point into the
 * packet buffer (valid while it is). Encoded in native byte order in one
 * packet (<= PD_MSG_MAX); if it does not fit, dane becomes TEMPFAIL with
 * why "answer too large" and no hosts (never a silent subset).
 */
struct pd_pol {
	uint32_t seq;
	enum pd_kind kind;          /* PD_POLICY or PD_ADDR */
	uint8_t flags;              /* PD_F_CACHED, PD_F_ANY_MX */
	uint32_t ttl;               /* how long this answer holds, seconds */
	enum pd_dane dane;
	enum pd_result dane_result; /* TEMPFAIL: DNSSEC_INVALID (bogus) or VALIDATION_FAILURE (lookup error, timeout) */
	const char *why;            /* TEMPFAIL/UNKNOWN: "MX example.net: bogus: signature expired"; else "" */
	const char *mx;             /* the MX host whose addresses hold the dialled address, or "" */
	const char *sni;            /* PD_ADDR: the name to send as SNI (TLSA base domain, or the MX name), or "" */
	size_t nhosts;              /* MATCH: 1 (the dialled host), or every MX (PD_F_ANY_MX) */
	struct pd_tlsa_host hosts[PD_MAX_HOSTS];
	enum pd_sts sts;
	const char *sts_id;         /* the policy's id from its TXT, or "" */
	uint32_t sts_max_age;
	size_t sts_nmx;
	const char *sts_mx[32];     /* "mx.example.net", "*.example.net" (STS_MAX_MX) */
	/*
	 * sts NONE although the domain announces a policy (its _mta-sts TXT)
	 * that could not be had: PD_R_STS_POLICY_FETCH_ERROR, _INVALID or
	 * PD_R_STS_WEBPKI_INVALID (RFC 8460 4.3.3), with why; else SUCCESS.
	 * The mail goes on (RFC 8461 5: as if no policy), the failure is
	 * alerted and reported.
	 */
	enum pd_result sts_fail;
	const char *sts_why;        /* "" unless sts_fail */
};
#define PD_F_ANY_MX 0x04          /* MATCH: the address is in no MX set, hosts[] is every MX */


/* Encode a pd_pol (seq, kind and every field); bytes written or 0. */
size_t pd_pol_encode(const struct pd_pol *pol, uint8_t *out, size_t cap);
/* Decode a PD_POLICY/PD_ADDR answer; 0, or -1 if malformed. */
int pd_pol_decode(const uint8_t *in, size_t len, struct pd_pol *out);

/* Which kind an answer packet is (PD_TLSA ... PD_ADDR), or -1: to pick the decoder. */
int pd_packet_kind(const uint8_t *in, size_t len);

/* One TLS-RPT result, worker -> policyd (PD_REPORT). */
struct pd_report {
	uint8_t policy_type;        /* enum tlsrpt_policy_type (tlsrpt.h) */
	enum pd_result result;
	char domain[PD_NAME_MAX + 1];   /* the policy domain (the recipient domain) */
	char mx[PD_NAME_MAX + 1];       /* receiving-mx-hostname, or "" */
	struct pd_req_addr addr;        /* receiving-ip */
	uint32_t when;                  /* time(NULL) at the decision */
};
size_t pd_report_encode(const struct pd_report *r, uint8_t *out, size_t cap);
int pd_report_decode(const uint8_t *in, size_t len, struct pd_report *out);

/* ---- the process ------------------------------------------------------------ */

struct policyd_opts {
	struct resolver_opts resolver;
	bool dane;                  /* answer PD_POLICY's DANE side (else always NONE) */
	bool mta_sts;               /* answer its MTA-STS side (else always NONE) */
	const char *state_dir;      /* LMDB: learned addresses, MTA-STS policies, TLS-RPT; NULL: memory only */
	const char *sts_ca_file;    /* WebPKI roots for mta-sts.D (NULL: the system bundle) */
	uint16_t sts_https_port;    /* 0: 443 (tests use another) */
	unsigned sts_wait_ms;       /* how long PD_POLICY waits for a first fetch (0: 5000) */
	bool tlsrpt;                /* aggregate PD_REPORTs (tlsrpt.h) */
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
