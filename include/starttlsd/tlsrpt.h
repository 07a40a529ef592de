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

#endif
