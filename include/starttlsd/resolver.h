/*
 * resolver: DNSSEC-validating lookups for the policy process, on libunbound,
 * asynchronous inside a libev loop (ub_fd watched by an ev_io; libunbound's
 * own thread does the network work).
 *
 * Validation is local, with our own trust anchor (trust_anchor_file, Debian's
 * /usr/share/dns/root.key by default): the forwarders (the `resolvers` key,
 * else /etc/resolv.conf's nameservers) are only caches, and their AD bit is
 * never looked at. Every answer is one of four:
 *   secure    validated from the trust anchor (including a secure NODATA or
 *             NXDOMAIN: rrs == 0),
 *   insecure  provably not signed (no DS on the way down), or outside every
 *             trust anchor,
 *   bogus     signed but failed validation (tampered data, expired
 *             signatures, a DS that matches no key),
 *   error     no answer: SERVFAIL and other rcodes, timeout, libunbound errors.
 * DANE (RFC 7672 2.1.1) treats bogus and error alike: defer, never downgrade.
 *
 * Programs that link this must link libev statically (the Makefile's
 * EV_STATIC): Debian's libev.so exports libevent look-alike symbols that
 * libunbound would bind to and corrupt the heap with (/work/shared/dane.md).
 * The ctx and its thread must be created in the process that uses them
 * (after fork).
 */
#ifndef STARTTLSD_RESOLVER_H
#define STARTTLSD_RESOLVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;

#define RESOLVER_DEFAULT_TA "/usr/share/dns/root.key"
#define RESOLVER_MAX_FWD 8
#define RESOLVER_TIMEOUT_MS 15000   /* a query's bound; DANE must answer before RCPT times out */

#define RES_T_A 1
#define RES_T_CNAME 5
#define RES_T_MX 15
#define RES_T_TXT 16
#define RES_T_AAAA 28
#define RES_T_TLSA 52

enum res_status {
	RES_SECURE,
	RES_INSECURE,
	RES_BOGUS,
	RES_ERROR,
};

const char *res_status_str(enum res_status s);

struct resolver_opts {
	const char *trust_anchor_file;      /* NULL: RESOLVER_DEFAULT_TA */
	const char *forwarders[RESOLVER_MAX_FWD];  /* "198.51.100.1", "2001:db8::1@5353" */
	size_t nforwarders;                 /* 0: resolv_conf's nameservers */
	const char *resolv_conf;            /* NULL: /etc/resolv.conf */
	unsigned timeout_ms;                /* 0: RESOLVER_TIMEOUT_MS */
};

/*
 * One answer, valid only during the callback (copy what you keep). rdata[i]
 * and rdlen[i] are the records of the answer RRset in wire form (names in
 * them uncompressed), nrr of them.
 */
struct res_answer {
	enum res_status status;
	int rcode;              /* 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, ...; -1 none */
	bool nxdomain;
	uint32_t ttl;           /* of the answer RRset (or the negative TTL) */
	size_t nrr;
	const uint8_t *const *rdata;
	const size_t *rdlen;
	const char *qname;      /* what was asked */
	const char *canonname;  /* after CNAMEs, or NULL */
	const char *why;        /* bogus or error: why, else NULL */
};

/* Called exactly once per query that resolver_query accepted (not on cancel). */
typedef void (*res_cb)(void *arg, const struct res_answer *ans);

struct resolver;

/*
 * A validating resolver in loop. Reads the trust anchor and the forwarders
 * now; NULL with err filled if either is unusable.
 */
struct resolver *resolver_new(struct ev_loop *loop,
    const struct resolver_opts *opts, char *err, size_t errlen);

/* Stop the watcher, cancel what is pending (no callbacks), free; NULL ok. */
void resolver_free(struct resolver *r);

/*
 * Ask for (name, type) in class IN. Returns a query id > 0 (for
 * resolver_cancel), or 0 with nothing pending and no callback to come.
 */
uint64_t resolver_query(struct resolver *r, const char *name, int type,
    res_cb cb, void *arg);

/* TLSA for _PORT._tcp.HOST (RFC 7672 2.2). */
uint64_t resolver_tlsa(struct resolver *r, const char *host, unsigned port,
    res_cb cb, void *arg);

/* The callback of id will not be called; unknown or finished ids are ignored. */
void resolver_cancel(struct resolver *r, uint64_t id);

/* How many queries are pending. */
size_t resolver_pending(const struct resolver *r);

/*
 * Decode one MX rdata: the preference and the exchange as a dotted name
 * without the final dot ("." for the root, a null MX). 0, or -1 if malformed.
 */
int res_mx_decode(const uint8_t *rdata, size_t len, uint16_t *pref,
    char *name, size_t cap);

/* A wire name (uncompressed) to dotted text; bytes consumed, or 0 if malformed. */
size_t res_name_decode(const uint8_t *wire, size_t len, char *out, size_t cap);

#endif
