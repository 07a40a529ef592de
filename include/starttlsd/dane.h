/*
 * dane: DANE for SMTP (RFC 7672, RFC 7671) without I/O: a TLSA RRset from
 * its wire rdata, and a peer's certificate chain (DER, leaf first) matched
 * against it. BoringSSL has no DANE API; this is ours.
 *
 * Parsing keeps only what SMTP may use: usages DANE-TA(2) and DANE-EE(3)
 * (RFC 7672 3.1.3 forbids 0 and 1), selectors Cert(0) and SPKI(1), matching
 * types Full(0), SHA2-256(1) and SHA2-512(2) with the right lengths; the rest
 * (PKIX usages, private-use 255, unknown values, malformed rdata) is counted
 * as unusable and dropped. Digest agility (RFC 7671 9): per (usage, selector)
 * only the Full(0) records and those of the strongest digest present are
 * kept, SHA2-512 being preferred to SHA2-256, so a wrong 3 1 2 beside a right
 * 3 1 1 fails.
 *
 * Matching: DANE-EE(3) against the leaf only, with no name, expiry or chain
 * checks (RFC 7672 3.1.1, 3.2.1). DANE-TA(2) against an issuer certificate
 * the server sent (never the leaf; RFC 7671 5.2: a digest TA must be in the
 * chain), then the chain from the leaf up to that certificate verified with
 * it as the only trust anchor (signatures, validity at `now`, CA flags), and
 * the leaf's name checked against the reference names: the TLSA base domain
 * and the MX host name (RFC 7672 3.2.2, 3.2.3), a wildcard matching exactly
 * one leftmost label.
 */
#ifndef STARTTLSD_DANE_H
#define STARTTLSD_DANE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define DANE_USAGE_TA 2
#define DANE_USAGE_EE 3
#define DANE_SEL_CERT 0
#define DANE_SEL_SPKI 1
#define DANE_MT_FULL 0
#define DANE_MT_SHA256 1
#define DANE_MT_SHA512 2

#define DANE_MAX_RECORDS 64   /* usable records kept; more are counted unusable */
#define DANE_MAX_CHAIN 16     /* certificates of a peer chain looked at */
#define DANE_MAX_NAMES 8      /* reference names for DANE-TA */

/* One usable TLSA record. data is owned by the RRset. */
struct dane_tlsa {
	uint8_t usage;
	uint8_t selector;
	uint8_t mtype;
	size_t len;
	uint8_t *data;
};

/* A parsed RRset: usable records after digest agility. Free with dane_rrset_free. */
struct dane_rrset {
	struct dane_tlsa *rec;
	size_t n;
	size_t unusable;    /* usages 0/1, mtype 255, unknown values, bad lengths */
	size_t weaker;      /* dropped by digest agility */
};

enum dane_parse_result {
	DANE_PARSE_OK,          /* at least one usable record */
	DANE_PARSE_NO_USABLE,   /* records, but none usable: TLS required, no authentication */
	DANE_PARSE_EMPTY,       /* no records at all */
	DANE_PARSE_NOMEM,
};

/*
 * Parse n TLSA rdata (wire form: usage, selector, mtype, association data).
 * out is always initialised (free it with dane_rrset_free whatever the result).
 */
enum dane_parse_result dane_rrset_parse(const uint8_t *const *rdata,
    const size_t *len, size_t n, struct dane_rrset *out);

/* Free the records; accepts a zeroed or already freed RRset. */
void dane_rrset_free(struct dane_rrset *rrset);

const char *dane_parse_result_str(enum dane_parse_result r);

/* A peer chain as the TLS stack gave it: der[0] is the leaf. Borrowed. */
struct dane_chain {
	const uint8_t *const *der;
	const size_t *len;
	size_t n;
};

enum dane_result {
	DANE_MATCH_EE,          /* a DANE-EE record matched the leaf */
	DANE_MATCH_TA,          /* a DANE-TA record matched an issuer, chain and name verified */
	DANE_NO_USABLE,         /* the RRset has no usable record: not authenticated */
	DANE_NO_CHAIN,          /* the peer sent no certificate */
	DANE_BAD_CHAIN,         /* the leaf (or a certificate needed) does not parse */
	DANE_MISMATCH,          /* no record matched any certificate it may match */
	DANE_TA_CHAIN_INVALID,  /* a TA matched, but the chain to it does not verify */
	DANE_TA_EXPIRED,        /* a TA matched, but a certificate up to it is expired or not yet valid */
	DANE_TA_NAME_MISMATCH,  /* a TA matched and the chain verifies, but no reference name matches */
	DANE_ERROR,             /* out of memory or an internal error */
};

/* Lower-case, hyphenated name for logs: "match-ee", "no-usable-records", ... */
const char *dane_result_str(enum dane_result r);

/* True for the two results that authenticate the peer. */
bool dane_result_ok(enum dane_result r);

/*
 * The RFC 8460 result type a failed match is reported as:
 * "certificate-host-mismatch", "certificate-expired", "tlsa-invalid",
 * "validation-failure"; NULL for a match.
 */
const char *dane_result_tlsrpt(enum dane_result r);

/* Details of a match, for the session line; may be NULL. */
struct dane_match_info {
	int depth;          /* chain position of the matching certificate, -1 if none */
	uint8_t usage, selector, mtype;
	char name[256];     /* DANE-TA: the reference name that matched */
};

/*
 * Match chain against rrset. names: the reference names for DANE-TA (the TLSA
 * base domain and the MX host name, lower or upper case, no trailing dot
 * needed), nnames <= DANE_MAX_NAMES. now: the time certificates must be valid
 * at for DANE-TA (0: the current time). DANE-EE is tried first: an EE match
 * wins even if a TA record fails.
 */
enum dane_result dane_match(const struct dane_rrset *rrset,
    const struct dane_chain *chain, const char *const *names, size_t nnames,
    time_t now, struct dane_match_info *info);

#endif
