/*
 * tlsrpt: SMTP TLS Reporting (RFC 8460). policyd records one result per
 * recipient domain judged under a DANE ("tlsa") or MTA-STS ("sts") policy,
 * or a failure with no policy found, into a per-UTC-day aggregate per
 * policy domain, kept in state_dir (LMDB, state_dir/tlsrpt.mdb). Reports
 * are built from it (JSON, section 4.4, jansson), gzip-compressed and sent
 * to the rua of the domain's _smtp._tls TXT record (section 3): https://
 * by POST of application/tlsrpt+gzip, mailto: as a message handed to a
 * submission host (the receiving domain expects it DKIM-signed by the
 * reporting domain: the submission host signs; starttlsd exempts that host
 * from its own enforcement). `starttlsctl tlsrpt show [DAY]` prints a day's
 * report so far, `starttlsctl tlsrpt send` sends the days that are over.
 */
#ifndef STARTTLSD_TLSRPT_H
#define STARTTLSD_TLSRPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "starttlsd/policyd.h"

enum tlsrpt_policy_type {
	TLSRPT_TLSA = 1,             /* "tlsa" */
	TLSRPT_STS = 2,              /* "sts" */
	TLSRPT_NO_POLICY = 3,        /* "no-policy-found" */
};
const char *tlsrpt_policy_type_str(enum tlsrpt_policy_type t);

struct tlsrpt_opts {
	const char *state_dir;       /* required */
	const char *org_name;        /* organization-name */
	const char *contact;         /* contact-info: an address or URI */
	const char *submission;      /* mailto: reports go here: HOST:PORT */
	const char *from;            /* mailto: From address of the reports */
	const char *ca_file;         /* https: WebPKI roots (NULL: system) */
};

struct tlsrpt;

struct tlsrpt *tlsrpt_open(const struct tlsrpt_opts *opts, char *err, size_t errlen);
void tlsrpt_close(struct tlsrpt *t);

/*
 * Add one result (a PD_REPORT as decoded) to the aggregate of its UTC day
 * and policy domain; policy_string/mx patterns are those in force (sts:
 * the policy's lines; tlsa: the TLSA records in presentation form), may be
 * NULL. 0, or -1 with err.
 */
int tlsrpt_record(struct tlsrpt *t, const struct pd_report *r,
    const char *const *policy_string, size_t nstrings, char *err, size_t errlen);


/* ---- the store, read back (starttlsd-tlsrpt; not the daemon) ----------------
 *
 * Bounds: a day holds at most TLSRPT_MAX_POLICIES (policy domain, type,
 * strings) aggregates; a later new one is dropped and counted (the first
 * drop of a day is an error for the caller to log, later ones return 0).
 * An aggregate keeps at most TLSRPT_MAX_DETAILS failure-details rows; more
 * (result-type, receiving-ip, receiving-mx-hostname) combinations are
 * counted in one row per result type with neither address nor name.
 * Policy strings beyond TLSRPT_MAX_STRINGS or TLSRPT_STRINGS_MAX bytes are
 * left out (the counts stay exact). Days older than TLSRPT_DAYS_KEPT are
 * purged. Writes are MDB_NOSYNC with an fsync at most every
 * TLSRPT_SYNC_SECS: cheap enough for policyd to call per result.
 */
#define TLSRPT_DAYS_KEPT 8
#define TLSRPT_MAX_POLICIES 5000
#define TLSRPT_MAX_DETAILS 32
#define TLSRPT_MAX_STRINGS 64
#define TLSRPT_STRINGS_MAX 8192
#define TLSRPT_STRING_MAX 4096     /* one policy string (a "2 0 0" TLSA record of a whole certificate) */
#define TLSRPT_SYNC_SECS 30

/* The UTC day of t (days since 1970-01-01), and back as "YYYY-MM-DD". */
uint32_t tlsrpt_day(int64_t t);
void tlsrpt_day_str(uint32_t day, char out[11]);
/* "YYYY-MM-DD" to a day; 0 or -1. */
int tlsrpt_day_parse(const char *s, uint32_t *day);

/* Open read-only (show): a missing store is not an error, *out is NULL. */
struct tlsrpt *tlsrpt_open_ro(const struct tlsrpt_opts *opts, bool *missing,
    char *err, size_t errlen);

struct tlsrpt_detail {
	enum pd_result result;
	struct pd_req_addr addr;        /* family 0: unknown */
	char mx[PD_NAME_MAX + 1];       /* "" if unknown */
	uint64_t count;
};

/* One aggregate as stored; strings point into the struct's own buffer. */
struct tlsrpt_agg {
	uint32_t day;
	char domain[PD_NAME_MAX + 1];
	enum tlsrpt_policy_type type;
	size_t nstrings;
	const char *strings[TLSRPT_MAX_STRINGS];
	uint64_t success, failure;
	size_t ndetails;
	struct tlsrpt_detail details[TLSRPT_MAX_DETAILS + PD_R_MAX_];
	char buf[TLSRPT_STRINGS_MAX];
};

/*
 * Call cb for every aggregate of day (domain NULL: every domain, in domain
 * order; else only that one). cb returning nonzero stops. 0, or -1 with err.
 */
int tlsrpt_foreach(struct tlsrpt *t, uint32_t day, const char *domain,
    int (*cb)(const struct tlsrpt_agg *a, void *arg), void *arg,
    char *err, size_t errlen);

/* Results dropped for a day by TLSRPT_MAX_POLICIES. */
uint64_t tlsrpt_dropped(struct tlsrpt *t, uint32_t day);

/* What was sent of a (day, domain) report. */
#define TLSRPT_ID_MAX 560
#define TLSRPT_MAX_RUA 8
#define TLSRPT_URI_MAX 512
struct tlsrpt_sent {
	char report_id[TLSRPT_ID_MAX];  /* kept across retries */
	uint32_t attempts;
	int64_t last_try;
	int64_t done_at;                /* 0: not yet; else every URI took it, or nothing to send */
	char done_uris[TLSRPT_MAX_RUA * (TLSRPT_URI_MAX + 1)];  /* '\n'-separated: URIs that took it */
};
/* 1 and *out, 0 if none yet, -1 with err. */
int tlsrpt_sent_get(struct tlsrpt *t, uint32_t day, const char *domain,
    struct tlsrpt_sent *out, char *err, size_t errlen);
int tlsrpt_sent_put(struct tlsrpt *t, uint32_t day, const char *domain,
    const struct tlsrpt_sent *s, char *err, size_t errlen);

/* Remove days before today - TLSRPT_DAYS_KEPT + 1. 0, or -1 with err. */
int tlsrpt_purge(struct tlsrpt *t, uint32_t today, char *err, size_t errlen);

/* ---- the report (proxy/tlsrptjson.c: jansson and zlib) ----------------------- */

/*
 * The submitter's domain (RFC 8460 5.3): the domain of opts->from, else of
 * opts->contact, else the host name. Into out (cap bytes).
 */
void tlsrpt_submitter(const struct tlsrpt_opts *opts, char *out, size_t cap);

/* A fresh report id: "DAY.DOMAIN.16HEX@SUBMITTER". */
void tlsrpt_report_id(uint32_t day, const char *domain, const char *submitter,
    char *out, size_t cap);

/*
 * The RFC 8460 4.4 report for (day, domain) as JSON text (malloc'd, NUL
 * terminated, *len without the NUL), compact unless pretty. NULL with err,
 * or NULL with err "" if the store has nothing for it.
 */
char *tlsrpt_report_json(struct tlsrpt *t, const struct tlsrpt_opts *opts,
    uint32_t day, const char *domain, const char *report_id, bool pretty,
    size_t *len, char *err, size_t errlen);

/* gzip (RFC 1952) of in; malloc'd into *out. 0, or -1. */
int tlsrpt_gzip(const void *in, size_t len, uint8_t **out, size_t *out_len);

/* ---- delivery (proxy/tlsrptsend.c) ---------------------------------------------- */

enum tlsrpt_uri_kind { TLSRPT_URI_MAILTO = 1, TLSRPT_URI_HTTPS = 2 };

struct tlsrpt_uri {
	enum tlsrpt_uri_kind kind;
	char uri[TLSRPT_URI_MAX + 1];   /* as published */
	char addr[TLSRPT_URI_MAX + 1];  /* mailto: the address, percent-decoded */
	char host[256];                 /* https: host, port, path */
	uint16_t port;
	char path[TLSRPT_URI_MAX + 1];
};

struct tlsrpt_rua {
	size_t n;
	struct tlsrpt_uri uri[TLSRPT_MAX_RUA];
};

/*
 * _smtp._tls TXT RRset in wire form (RFC 8460 3): exactly one record
 * starting with "v=TLSRPTv1", its fields checked against the ABNF, rua
 * required; mailto: and https: URIs kept (at most TLSRPT_MAX_RUA), other
 * schemes ignored. 0, or -1 with err (also: no usable URI).
 */
int tlsrpt_txt_parse(const uint8_t *const *rdata, const size_t *rdlen,
    size_t n, struct tlsrpt_rua *out, char *err, size_t errlen);
/* One record as text. */
int tlsrpt_txt_parse_text(const char *txt, size_t len, struct tlsrpt_rua *out,
    char *err, size_t errlen);

/*
 * The RFC 8460 5.3 message: multipart/report; report-type="tlsrpt", a text
 * part and the gzip report as a base64 attachment; CRLF line ends, not
 * dot-stuffed. malloc'd, NUL terminated.
 */
char *tlsrpt_mail_build(const struct tlsrpt_opts *opts, uint32_t day,
    const char *domain, const char *report_id, const char *const *rcpts,
    size_t nrcpts, const uint8_t *gz, size_t gz_len, int64_t now, size_t *len);

#endif
