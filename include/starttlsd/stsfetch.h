/*
 * stsfetch: MTA-STS policies for recipient domains (RFC 8461), kept in
 * policyd. For a domain: TXT _mta-sts.D (sts_txt_parse); if its id matches
 * the cached policy's, the cache serves; otherwise GET
 * https://mta-sts.D/.well-known/mta-sts.txt (https.h: no redirects, 200,
 * text/plain, <= 64 KiB, WebPKI) parsed by sts_policy_parse, and cached by
 * id and max_age in LMDB (state_dir/sts.mdb) so a restart keeps them.
 *
 * RFC 8461 rules kept here: a cached unexpired policy stays in force when
 * the TXT record disappears or a refresh fails (5.1, 10.2); a policy is
 * refreshed before it expires (proactively, in the background, 10.2); after
 * a failed fetch the same domain and id are not fetched again for
 * STSF_BACKOFF_S; no lookup in the parent domain (3.4); mode none replaces
 * enforce at once when its id changes.
 */
#ifndef STARTTLSD_STSFETCH_H
#define STARTTLSD_STSFETCH_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "starttlsd/sts.h"

struct ev_loop;
struct resolver;

#define STSF_BACKOFF_S 300       /* one retry per 5 min per (domain, id) */
#define STSF_CACHE_MAX 10000     /* domains kept */

struct stsf_opts {
	const char *state_dir;       /* NULL: memory only */
	const char *ca_file;         /* NULL: the system bundle */
	uint16_t https_port;         /* 0: 443 */
	unsigned fetch_timeout_ms;   /* 0: 60000 */
	/* Timing, 0 for the defaults; tests shorten them. */
	unsigned backoff_s;          /* 0: STSF_BACKOFF_S */
	unsigned recheck_s;          /* 0: 60; the TXT is asked again at most this often */
	unsigned refresh_tick_ms;    /* 0: 60000; how often near-expiry policies are looked for */
};

enum stsf_fail {
	STSF_OK,                     /* a policy (or certainly none) */
	STSF_FETCH_ERROR,            /* sts-policy-fetch-error: DNS, connect, status, type, size, timeout */
	STSF_POLICY_INVALID,         /* sts-policy-invalid: the file did not parse */
	STSF_WEBPKI_INVALID,         /* sts-webpki-invalid: mta-sts.D's certificate */
};

/* What is known of a domain's policy now. */
struct stsf_state {
	bool have;                   /* a valid policy is in force (cached or fresh) */
	struct sts_policy policy;    /* when have */
	char id[STS_ID_MAX + 1];
	time_t expires;              /* fetched + max_age */
	enum stsf_fail fail;         /* the last attempt's failure, STSF_OK if none */
	char why[200];               /* for the log, when fail */
};

typedef void (*stsf_cb)(void *arg, const char *domain, const struct stsf_state *st);

struct stsf;

struct stsf *stsf_new(struct ev_loop *loop, struct resolver *res,
    const struct stsf_opts *opts, char *err, size_t errlen);
void stsf_free(struct stsf *f);

/*
 * The policy of domain (lower case, no trailing dot). cb runs exactly once:
 * at once-later when the cache can answer, or when the lookup and fetch end,
 * or after wait_ms with what is known then (the fetch goes on and caches).
 * Returns an id for stsf_cancel, 0 if it cannot start (cb not called).
 */
uint64_t stsf_get(struct stsf *f, const char *domain, unsigned wait_ms,
    stsf_cb cb, void *arg);
void stsf_cancel(struct stsf *f, uint64_t id);

#endif
