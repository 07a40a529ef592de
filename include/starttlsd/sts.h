/*
 * sts: MTA-STS (RFC 8461) without I/O: the _mta-sts TXT RRset, the policy
 * file, and mx pattern matching. The fetcher and the cache live elsewhere.
 *
 * Strictness follows the RFC's ABNF where it protects the sender and is
 * lenient only where meaning cannot change: field and value names are case
 * sensitive (%s in the ABNF); lines end in LF or CRLF (both seen in the wild);
 * blank lines and trailing blanks are ignored; unknown fields are ignored
 * (3.2: "MUST be ignored"); version, mode and max_age must each appear
 * exactly once, mx at least once unless mode is none; max_age is 0 to
 * 31557600 (a larger value makes the policy invalid, as postfix-mta-sts-
 * resolver does).
 */
#ifndef STARTTLSD_STS_H
#define STARTTLSD_STS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STS_POLICY_MAX 65536        /* bytes of a policy file (RFC 8461 3.3) */
#define STS_MAX_AGE_MAX 31557600u   /* one year (RFC 8461 3.2) */
#define STS_MAX_MX 32               /* mx patterns kept */
#define STS_NAME_MAX 254            /* a domain name with its dot, NUL */
#define STS_ID_MAX 32

/* ---- the _mta-sts TXT record (RFC 8461 3.1) ------------------------------- */

enum sts_txt_result {
	STS_TXT_OK,         /* exactly one v=STSv1 record, valid */
	STS_TXT_NONE,       /* no record starting with v=STSv1 */
	STS_TXT_MULTIPLE,   /* more than one: no policy (3.1) */
	STS_TXT_INVALID,    /* one, but not valid (no id, bad id, bad syntax) */
};

struct sts_txt {
	char id[STS_ID_MAX + 1];
};

/*
 * Parse a TXT RRset in wire rdata form (each record one or more
 * length-prefixed character-strings, concatenated without separator).
 */
enum sts_txt_result sts_txt_parse(const uint8_t *const *rdata,
    const size_t *len, size_t n, struct sts_txt *out);

/* The same for one record already concatenated (tests, tools). */
enum sts_txt_result sts_txt_parse_text(const char *text, size_t len,
    struct sts_txt *out);

const char *sts_txt_result_str(enum sts_txt_result r);

/* ---- the policy file (RFC 8461 3.2) --------------------------------------- */

enum sts_mode { STS_MODE_NONE, STS_MODE_TESTING, STS_MODE_ENFORCE };

struct sts_policy {
	enum sts_mode mode;
	uint32_t max_age;
	size_t nmx;
	char mx[STS_MAX_MX][STS_NAME_MAX];  /* lower case; "*.example.net" */
};

/*
 * Parse a policy body of len bytes (not NUL-terminated). Returns 0, or -1
 * with err holding "line N: why" (or why for the whole file).
 */
int sts_policy_parse(const char *text, size_t len, struct sts_policy *out,
    char *err, size_t errlen);

const char *sts_mode_str(enum sts_mode m);

/*
 * Does host (any case, trailing dot allowed) match pattern? Identical, or
 * pattern "*.D" and host exactly one label more than D (RFC 8461 4.1).
 */
bool sts_pattern_match(const char *pattern, const char *host);

/* Does host match any of the policy's mx patterns? */
bool sts_policy_mx_match(const struct sts_policy *p, const char *host);

#endif
