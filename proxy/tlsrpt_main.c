/*
 * starttlsd-tlsrpt: TLS-RPT reports (RFC 8460) from the daemon's store,
 * state_dir/tlsrpt.mdb (tlsrpt.h).
 *   show [DAY]         the JSON report(s) of a UTC day so far (default today)
 *   send [--day DAY]   send every report that is due (days that are over,
 *                      not yet sent, still kept), or only DAY's
 * `starttlsctl tlsrpt ...` runs this program. It is a program of its own
 * because sending needs the validating resolver (libunbound, so libev
 * linked statically, docs/dane.md "The link"), BoringSSL for HTTPS and a
 * network client, none of which starttlsctl, a root tool for the pin store
 * and the metrics, should carry; the timer (deploy/starttlsd-tlsrpt.timer)
 * runs it as the daemon's user.
 *
 * Each report goes to every URI of the domain's _smtp._tls TXT record:
 * https: by POST (https.h), mailto: as one message handed to the
 * submission host (a small blocking SMTP client, below). A (day, domain)
 * is marked sent only when every URI took it; the URIs that did are
 * remembered so a retry goes only to the others, with the same report-id.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "starttlsd/config.h"
#include "starttlsd/https.h"
#include "starttlsd/resolver.h"
#include "starttlsd/tlsrpt.h"

#define SMTP_TIMEOUT_MS 30000
#define SMTP_LINE_MAX 1000
#define SMTP_LINES_MAX 100
#define HTTPS_REPLY_MAX 16384   /* what we read of a collector's answer */
#define DOMAINS_MAX TLSRPT_MAX_POLICIES

enum exit_code { EX_OK = 0, EX_FAILED = 1, EX_USAGE = 2, EX_STORE = 3 };

static struct {
	const char *config;        /* -c; NULL: the default file if it exists */
	const char *state_dir, *org, *contact, *submission, *from, *ca_file;
	const char *trust_anchor, *resolv_conf;
	const char *fwd[RESOLVER_MAX_FWD];
	size_t nfwd;
	unsigned timeout_ms;
} opt;

static struct config cfg;
static struct tlsrpt_opts topts;
static struct resolver_opts ropts;

static void
usage(FILE *fp)
{
	fprintf(fp,
"usage: starttlsd-tlsrpt [OPTIONS] show [DAY]\n"
"       starttlsd-tlsrpt [OPTIONS] send [--day DAY]\n"
"(options may come before or after the command)\n"
"\n"
"  show [DAY]      the RFC 8460 JSON reports of a UTC day so far, one per\n"
"                  policy domain, as a JSON array (DAY: YYYY-MM-DD; default\n"
"                  today)\n"
"  send            send the reports that are due: days that are over (UTC),\n"
"                  not sent yet, at most %d days old; one line per report\n"
"  send --day DAY  only that day's (which must be over)\n"
"\n"
"Options (the configuration file gives the defaults):\n"
"  -c FILE              the daemon's configuration (default %s\n"
"                       if it exists; -c \"\" reads none)\n"
"  --state-dir DIR      where tlsrpt.mdb is\n"
"  --org NAME           organization-name (tlsrpt_org)\n"
"  --contact ADDR       contact-info (tlsrpt_contact)\n"
"  --submission H:P     the host mailto: reports are handed to\n"
"                       (tlsrpt_submission)\n"
"  --from ADDR          their From and envelope sender (tlsrpt_from)\n"
"  --resolver ADDR[@PORT]  forwarder for the _smtp._tls lookups (repeatable;\n"
"                       default: resolvers, else /etc/resolv.conf)\n"
"  --resolv-conf FILE   read forwarders from FILE instead\n"
"  --trust-anchor FILE  DNSSEC trust anchor (trust_anchor_file)\n"
"  --ca-file FILE       roots for https: collectors (ca_file; default the\n"
"                       system's)\n"
"  --timeout MS         bound of one lookup, POST or SMTP step (default %d)\n"
"\n"
"Exit status: 0 ok (send: every due report sent), 1 a report could not be\n"
"sent (tried again next time), 2 usage, 3 store error.\n",
	    TLSRPT_DAYS_KEPT - 1, CONFIG_DEFAULT_FILE, SMTP_TIMEOUT_MS);
}

static int __attribute__((format(printf, 1, 2)))
usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "starttlsd-tlsrpt: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(starttlsd-tlsrpt --help for usage)\n");
	return EX_USAGE;
}

/*
 * The configuration file's keys (tlsrpt_org, tlsrpt_contact,
 * tlsrpt_submission, tlsrpt_from), then the command line over them.
 */
static void
config_tlsrpt(const struct config *c, struct tlsrpt_opts *o)
{
	o->org_name = c->tlsrpt_org;
	o->contact = c->tlsrpt_contact;
	o->submission = c->tlsrpt_submission;
	o->from = c->tlsrpt_from;
}

static int
load_config(void)
{
	char err[1024];
	char *argv[4] = { (char *)(uintptr_t)"starttlsd", NULL, NULL, NULL };
	int argc = 1;

	if (opt.config != NULL) {
		argv[argc++] = (char *)(uintptr_t)"-c";
		argv[argc++] = (char *)(uintptr_t)opt.config;
	}
	if (config_load(&cfg, argc, argv, err, sizeof(err)) != CONFIG_OK) {
		fprintf(stderr, "starttlsd-tlsrpt: %s\n", err);
		return -1;
	}
	topts.state_dir = cfg.state_dir;
	topts.ca_file = cfg.ca_file;
	config_tlsrpt(&cfg, &topts);
	ropts.trust_anchor_file = cfg.trust_anchor_file;
	for (size_t i = 0; i < cfg.resolvers.n && i < RESOLVER_MAX_FWD; i++)
		ropts.forwarders[ropts.nforwarders++] = cfg.resolvers.item[i];

	if (opt.state_dir != NULL)
		topts.state_dir = opt.state_dir;
	if (opt.org != NULL)
		topts.org_name = opt.org;
	if (opt.contact != NULL)
		topts.contact = opt.contact;
	if (opt.submission != NULL)
		topts.submission = opt.submission;
	if (opt.from != NULL)
		topts.from = opt.from;
	if (opt.ca_file != NULL)
		topts.ca_file = opt.ca_file;
	if (opt.trust_anchor != NULL)
		ropts.trust_anchor_file = opt.trust_anchor;
	if (opt.nfwd > 0) {
		ropts.nforwarders = opt.nfwd;
		memcpy(ropts.forwarders, opt.fwd, sizeof(opt.fwd));
	}
	if (opt.resolv_conf != NULL) {
		ropts.resolv_conf = opt.resolv_conf;
		if (opt.nfwd == 0)
			ropts.nforwarders = 0;
	}
	ropts.timeout_ms = opt.timeout_ms;
	if (topts.state_dir == NULL || topts.state_dir[0] == '\0') {
		fprintf(stderr, "starttlsd-tlsrpt: no state_dir (--state-dir or "
		    "the configuration's state_dir)\n");
		return -1;
	}
	return 0;
}

/* ---- the domains of a day ----------------------------------------------------- */

struct domains {
	size_t n;
	char (*name)[PD_NAME_MAX + 1];
};

static int
domain_cb(const struct tlsrpt_agg *a, void *arg)
{
	struct domains *d = arg;

	/* Aggregates come in domain order: a new name is a new domain. */
	if (d->n > 0 && strcmp(d->name[d->n - 1], a->domain) == 0)
		return 0;
	if (d->n >= DOMAINS_MAX)
		return 1;
	memcpy(d->name[d->n++], a->domain, sizeof(d->name[0]));
	return 0;
}

static int
day_domains(struct tlsrpt *t, uint32_t day, struct domains *d)
{
	char err[512];

	d->n = 0;
	if (d->name == NULL &&
	    (d->name = calloc(DOMAINS_MAX, sizeof(d->name[0]))) == NULL) {
		fprintf(stderr, "starttlsd-tlsrpt: out of memory\n");
		return -1;
	}
	if (tlsrpt_foreach(t, day, NULL, domain_cb, d, err, sizeof(err)) < 0) {
		fprintf(stderr, "starttlsd-tlsrpt: %s\n", err);
		return -1;
	}
	return 0;
}

/* ---- show -------------------------------------------------------------------------- */

static int
cmd_show(uint32_t day)
{
	struct domains d = { 0 };
	struct tlsrpt *t;
	char err[512], sub[256], id[TLSRPT_ID_MAX], ds[11];
	bool missing;
	int rc = EX_OK;

	if ((t = tlsrpt_open_ro(&topts, &missing, err, sizeof(err))) == NULL) {
		if (missing) {
			printf("[]\n");
			return fflush(stdout) == 0 ? EX_OK : EX_STORE;
		}
		fprintf(stderr, "starttlsd-tlsrpt: %s\n", err);
		return EX_STORE;
	}
	if (day_domains(t, day, &d) < 0) {
		tlsrpt_close(t);
		free(d.name);
		return EX_STORE;
	}
	tlsrpt_submitter(&topts, sub, sizeof(sub));
	tlsrpt_day_str(day, ds);
	printf("[");
	for (size_t i = 0; i < d.n; i++) {
		struct tlsrpt_sent s;
		size_t len;
		char *json;

		/* The id a send gave it, else one that says it is not sent. */
		if (tlsrpt_sent_get(t, day, d.name[i], &s, err, sizeof(err)) == 1 &&
		    s.report_id[0] != '\0')
			snprintf(id, sizeof(id), "%s", s.report_id);
		else
			if (snprintf(id, sizeof(id), "%s.%s.unsent@%s", ds,
			    d.name[i], sub) >= (int)sizeof(id))
				continue;
		json = tlsrpt_report_json(t, &topts, day, d.name[i], id, true,
		    &len, err, sizeof(err));
		if (json == NULL) {
			if (err[0] != '\0') {
				fprintf(stderr, "starttlsd-tlsrpt: %s: %s\n",
				    d.name[i], err);
				rc = EX_STORE;
			}
			continue;
		}
		printf("%s\n%s", i == 0 ? "" : ",", json);
		free(json);
	}
	printf("%s]\n", d.n > 0 ? "\n" : "");
	if (tlsrpt_dropped(t, day) > 0)
		fprintf(stderr, "starttlsd-tlsrpt: %s: %llu results dropped (more "
		    "than %d policies that day)\n", ds,
		    (unsigned long long)tlsrpt_dropped(t, day), TLSRPT_MAX_POLICIES);
	tlsrpt_close(t);
	free(d.name);
	if (fflush(stdout) != 0 || ferror(stdout))
		return EX_STORE;
	return rc;
}

/* ---- the event loop's part: the TXT lookup, the POSTs ------------------------------ */

struct wait {
	bool done;
	/* TXT */
	enum res_status status;
	size_t nrr;
	struct tlsrpt_rua rua;
	char why[256];
	int parsed;   /* 0 ok, -1 no usable record */
	/* https */
	enum https_result hres;
	int http_status;
};

static void
txt_cb(void *arg, const struct res_answer *ans)
{
	struct wait *w = arg;

	w->done = true;
	w->status = ans->status;
	w->nrr = ans->nrr;
	w->why[0] = '\0';
	if (ans->status == RES_BOGUS || ans->status == RES_ERROR) {
		snprintf(w->why, sizeof(w->why), "%s%s%s",
		    res_status_str(ans->status), ans->why != NULL ? ": " : "",
		    ans->why != NULL ? ans->why : "");
		return;
	}
	w->parsed = tlsrpt_txt_parse(ans->rdata, ans->rdlen, ans->nrr, &w->rua,
	    w->why, sizeof(w->why));
}

static void
post_cb(void *arg, const struct https_resp *r)
{
	struct wait *w = arg;

	w->done = true;
	w->hres = r->result;
	w->http_status = r->status;
	snprintf(w->why, sizeof(w->why), "%s", r->result == HTTPS_OK ? "" :
	    r->err[0] != '\0' ? r->err : https_result_str(r->result));
}

static void
run_until(struct ev_loop *loop, const struct wait *w)
{
	while (!w->done)
		ev_run(loop, EVRUN_ONCE);
}

/* ---- SMTP: a blocking client to the submission host -------------------------------- */

struct smtp {
	int fd;
	char buf[4096];
	size_t len;
	char last[SMTP_LINE_MAX + 1];  /* the last reply line, for messages */
};

static int
io_wait(int fd, short ev)
{
	struct pollfd p = { .fd = fd, .events = ev };
	int r;

	do
		r = poll(&p, 1, (int)(opt.timeout_ms ? opt.timeout_ms :
		    SMTP_TIMEOUT_MS));
	while (r < 0 && errno == EINTR);
	return r > 0 ? 0 : -1;
}

static int
smtp_write(struct smtp *s, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w;

		if (io_wait(s->fd, POLLOUT) < 0)
			return -1;
		w = send(s->fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* One reply (all its lines); the code, or -1 on I/O error or a malformed reply. */
static int
smtp_reply(struct smtp *s)
{
	for (int lines = 0; lines < SMTP_LINES_MAX; lines++) {
		char *nl;
		size_t l, used;

		while ((nl = memchr(s->buf, '\n', s->len)) == NULL) {
			ssize_t r;

			if (s->len == sizeof(s->buf) || io_wait(s->fd, POLLIN) < 0)
				return -1;
			r = recv(s->fd, s->buf + s->len, sizeof(s->buf) - s->len, 0);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				return -1;
			s->len += (size_t)r;
		}
		l = (size_t)(nl - s->buf);
		if (l > 0 && s->buf[l - 1] == '\r')
			l--;
		if (l > SMTP_LINE_MAX || l < 3)
			return -1;
		memcpy(s->last, s->buf, l);
		s->last[l] = '\0';
		for (char *p = s->last; *p != '\0'; p++)
			if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
				*p = '?';
		used = (size_t)(nl + 1 - s->buf);
		memmove(s->buf, nl + 1, s->len - used);
		s->len -= used;
		if (s->last[0] < '2' || s->last[0] > '5' || s->last[1] < '0' ||
		    s->last[1] > '9' || s->last[2] < '0' || s->last[2] > '9')
			return -1;
		if (l == 3 || s->last[3] == ' ')
			return atoi(s->last) > 0 ? (s->last[0] - '0') * 100 +
			    (s->last[1] - '0') * 10 + (s->last[2] - '0') : -1;
		if (s->last[3] != '-')
			return -1;
	}
	return -1;
}

static int __attribute__((format(printf, 2, 3)))
smtp_cmd(struct smtp *s, const char *fmt, ...)
{
	char line[SMTP_LINE_MAX + 3];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		return -1;
	memcpy(line + n, "\r\n", 2);
	if (smtp_write(s, line, (size_t)n + 2) < 0)
		return -1;
	return smtp_reply(s);
}

static int
smtp_connect(const char *hostport, char *why, size_t whylen)
{
	char host[256], port[8];
	unsigned p;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
	    .ai_flags = AI_NUMERICSERV }, *res, *ai;
	int fd = -1, rc;

	if (config_split_hostport(hostport, host, sizeof(host), &p) < 0 ||
	    p == 0 || p > 65535) {
		snprintf(why, whylen, "tlsrpt_submission %s: expected HOST:PORT",
		    hostport);
		return -1;
	}
	snprintf(port, sizeof(port), "%u", p);
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		snprintf(why, whylen, "submission %s: %s", hostport,
		    gai_strerror(rc));
		return -1;
	}
	snprintf(why, whylen, "submission %s: no address", hostport);
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		int err = 0;
		socklen_t el = sizeof(err);

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		if ((connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
		    (errno == EINPROGRESS && io_wait(fd, POLLOUT) == 0 &&
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 &&
		    err == 0)))
			break;
		snprintf(why, whylen, "submission %s: connect: %s", hostport,
		    err != 0 ? strerror(err) : errno == EINPROGRESS ?
		    "timed out" : strerror(errno));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

/*
 * Hand msg to the submission host for rcpts; ok[i] says which recipients
 * it took. 0 if the message was accepted for at least one, else -1 with why.
 */
static int
smtp_send(const char *msg, size_t len, const char *const *rcpts, size_t n,
    bool *ok, char *why, size_t whylen)
{
	struct smtp s = { .fd = -1 };
	char helo[256];
	size_t taken = 0;
	int code;

	memset(ok, 0, n * sizeof(*ok));
	if (topts.submission == NULL || topts.submission[0] == '\0') {
		snprintf(why, whylen, "mailto: needs tlsrpt_submission");
		return -1;
	}
	if (topts.from == NULL || strchr(topts.from, '@') == NULL ||
	    strpbrk(topts.from, "<> \r\n") != NULL) {
		snprintf(why, whylen, "mailto: needs tlsrpt_from (an address)");
		return -1;
	}
	if ((s.fd = smtp_connect(topts.submission, why, whylen)) < 0)
		return -1;
	tlsrpt_submitter(&topts, helo, sizeof(helo));
	if ((code = smtp_reply(&s)) != 220)
		goto bad;
	if ((code = smtp_cmd(&s, "EHLO %s", helo)) != 250 &&
	    (code = smtp_cmd(&s, "HELO %s", helo)) != 250)
		goto bad;
	if ((code = smtp_cmd(&s, "MAIL FROM:<%s>", topts.from)) != 250)
		goto bad;
	for (size_t i = 0; i < n; i++) {
		code = smtp_cmd(&s, "RCPT TO:<%s>", rcpts[i]);
		if (code < 0)
			goto bad;
		if (code / 100 == 2) {
			ok[i] = true;
			taken++;
		}
	}
	if (taken == 0) {
		snprintf(why, whylen, "submission refused every recipient "
		    "(%.200s)", s.last);
		smtp_cmd(&s, "QUIT");
		close(s.fd);
		return -1;
	}
	if ((code = smtp_cmd(&s, "DATA")) != 354)
		goto bad;
	/* Dot-stuffed: a line that starts with '.' gets one more. */
	for (size_t i = 0; i < len;) {
		const char *nl = memchr(msg + i, '\n', len - i);
		size_t l = nl != NULL ? (size_t)(nl - (msg + i)) + 1 : len - i;

		if (msg[i] == '.' && smtp_write(&s, ".", 1) < 0)
			goto io;
		if (smtp_write(&s, msg + i, l) < 0)
			goto io;
		i += l;
	}
	if ((code = smtp_cmd(&s, ".")) != 250)
		goto bad;
	smtp_cmd(&s, "QUIT");
	close(s.fd);
	return 0;
io:
	code = -1;
bad:
	if (code < 0)
		snprintf(why, whylen, "submission %s: connection failed or bad "
		    "reply", topts.submission);
	else
		snprintf(why, whylen, "submission %.100s: %.200s",
		    topts.submission, s.last);
	memset(ok, 0, n * sizeof(*ok));
	close(s.fd);
	return -1;
}

/* ---- send ------------------------------------------------------------------------------ */

static bool
uri_done(const struct tlsrpt_sent *s, const char *uri)
{
	size_t n = strlen(uri);

	for (const char *p = s->done_uris; *p != '\0';) {
		size_t l = strcspn(p, "\n");

		if (l == n && memcmp(p, uri, n) == 0)
			return true;
		p += l;
		if (*p == '\n')
			p++;
	}
	return false;
}

static void
uri_mark(struct tlsrpt_sent *s, const char *uri)
{
	size_t have = strlen(s->done_uris);

	if (uri_done(s, uri) ||
	    have + strlen(uri) + 2 > sizeof(s->done_uris))
		return;
	snprintf(s->done_uris + have, sizeof(s->done_uris) - have, "%s%s",
	    have > 0 ? "\n" : "", uri);
}

/* Append to a line's "why" list. */
static void __attribute__((format(printf, 3, 4)))
why_add(char *buf, size_t cap, const char *fmt, ...)
{
	size_t l = strlen(buf);
	va_list ap;

	if (l + 3 >= cap)
		return;
	if (l > 0) {
		memcpy(buf + l, "; ", 3);
		l += 2;
	}
	va_start(ap, fmt);
	vsnprintf(buf + l, cap - l, fmt, ap);
	va_end(ap);
}

/* One (day, domain): 0 sent or nothing to send, 1 failed (try again). */
static int
send_one(struct ev_loop *loop, struct resolver *res, struct tlsrpt *t,
    uint32_t day, const char *domain)
{
	struct tlsrpt_sent s;
	struct wait w;
	char err[512], sub[256], ds[11], qname[PD_NAME_MAX + 16];
	char failed[1024] = "", sentto[1024] = "";
	const char *rcpts[TLSRPT_MAX_RUA];
	size_t nrcpt = 0, json_len, gz_len, nsent = 0, ntotal = 0;
	uint8_t *gz = NULL;
	char *json = NULL;
	int64_t now = (int64_t)time(NULL);

	tlsrpt_day_str(day, ds);
	if (tlsrpt_sent_get(t, day, domain, &s, err, sizeof(err)) < 0) {
		printf("%s %s failed: %s\n", ds, domain, err);
		return 1;
	}
	if (s.done_at != 0)
		return 0;
	tlsrpt_submitter(&topts, sub, sizeof(sub));
	if (s.report_id[0] == '\0')
		tlsrpt_report_id(day, domain, sub, s.report_id,
		    sizeof(s.report_id));
	s.attempts++;
	s.last_try = now;

	memset(&w, 0, sizeof(w));
	snprintf(qname, sizeof(qname), "_smtp._tls.%s", domain);
	if (resolver_query(res, qname, RES_T_TXT, txt_cb, &w) == 0) {
		printf("%s %s failed: cannot start the TXT lookup\n", ds, domain);
		return 1;
	}
	run_until(loop, &w);
	if (w.status == RES_BOGUS || w.status == RES_ERROR) {
		/* Retried next run: a lookup failure is not "no record". */
		tlsrpt_sent_put(t, day, domain, &s, err, sizeof(err));
		printf("%s %s failed: %s: %s\n", ds, domain, qname, w.why);
		return 1;
	}
	if (w.parsed < 0) {
		s.done_at = now;
		tlsrpt_sent_put(t, day, domain, &s, err, sizeof(err));
		printf("%s %s skipped: %s: %s\n", ds, domain, qname, w.why);
		return 0;
	}
	json = tlsrpt_report_json(t, &topts, day, domain, s.report_id, false,
	    &json_len, err, sizeof(err));
	if (json == NULL || tlsrpt_gzip(json, json_len, &gz, &gz_len) < 0) {
		printf("%s %s failed: %s\n", ds, domain, json == NULL ?
		    (err[0] != '\0' ? err : "nothing recorded") : "gzip failed");
		free(json);
		return 1;
	}
	free(json);

	for (size_t i = 0; i < w.rua.n; i++) {
		const struct tlsrpt_uri *u = &w.rua.uri[i];
		struct https_req req;
		struct https_client *c;
		struct wait pw;

		ntotal++;
		if (uri_done(&s, u->uri)) {
			nsent++;
			continue;
		}
		if (u->kind == TLSRPT_URI_MAILTO) {
			rcpts[nrcpt++] = u->addr;
			continue;
		}
		memset(&req, 0, sizeof(req));
		req.method = "POST";
		req.host = u->host;
		req.port = u->port;
		req.path = u->path;
		req.content_type = "application/tlsrpt+gzip";
		req.body = gz;
		req.body_len = gz_len;
		req.max_body = HTTPS_REPLY_MAX;
		req.timeout_ms = opt.timeout_ms;
		req.ca_file = topts.ca_file;
		memset(&pw, 0, sizeof(pw));
		if ((c = https_start(loop, res, &req, post_cb, &pw)) == NULL) {
			why_add(failed, sizeof(failed), "%s: cannot start",
			    u->uri);
			continue;
		}
		run_until(loop, &pw);
		if (pw.hres == HTTPS_OK && pw.http_status >= 200 &&
		    pw.http_status <= 299) {
			uri_mark(&s, u->uri);
			nsent++;
			why_add(sentto, sizeof(sentto), "%s", u->uri);
		} else if (pw.hres == HTTPS_OK)
			why_add(failed, sizeof(failed), "%s: HTTP %d", u->uri,
			    pw.http_status);
		else
			why_add(failed, sizeof(failed), "%s: %s", u->uri, pw.why);
	}
	if (nrcpt > 0) {
		bool ok[TLSRPT_MAX_RUA];
		char why[512];
		size_t mlen;
		char *msg = tlsrpt_mail_build(&topts, day, domain, s.report_id,
		    rcpts, nrcpt, gz, gz_len, now, &mlen);

		if (msg == NULL)
			why_add(failed, sizeof(failed), "mailto: out of memory");
		else if (smtp_send(msg, mlen, rcpts, nrcpt, ok, why,
		    sizeof(why)) < 0)
			why_add(failed, sizeof(failed), "mailto: %s", why);
		bool built = msg != NULL;

		free(msg);
		for (size_t i = 0; built && i < nrcpt; i++) {
			for (size_t k = 0; k < w.rua.n; k++)
				if (w.rua.uri[k].addr == rcpts[i] && ok[i]) {
					uri_mark(&s, w.rua.uri[k].uri);
					nsent++;
					why_add(sentto, sizeof(sentto), "%s",
					    w.rua.uri[k].uri);
				} else if (w.rua.uri[k].addr == rcpts[i] &&
				    failed[0] == '\0')
					why_add(failed, sizeof(failed),
					    "%s: refused", w.rua.uri[k].uri);
		}
	}
	free(gz);
	if (nsent == ntotal)
		s.done_at = now;
	if (tlsrpt_sent_put(t, day, domain, &s, err, sizeof(err)) < 0) {
		printf("%s %s failed: %s\n", ds, domain, err);
		return 1;
	}
	if (nsent == ntotal) {
		printf("%s %s sent id=<%s> to %s\n", ds, domain, s.report_id,
		    sentto[0] != '\0' ? sentto : "(all before)");
		return 0;
	}
	printf("%s %s failed (%zu of %zu URIs took it, attempt %u): %s\n",
	    ds, domain, nsent, ntotal, s.attempts, failed);
	return 1;
}

/*
 * One send at a time (the timer and a manual run): an flock on
 * state_dir/tlsrpt.send.lock, held until exit. The fd; -2 if another send
 * holds it, -1 on error.
 */
static int
send_lock(void)
{
	char path[4096];
	struct stat st;
	int fd;

	if ((size_t)snprintf(path, sizeof(path), "%s/tlsrpt.send.lock",
	    topts.state_dir) >= sizeof(path))
		return -1;
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0) {
		fprintf(stderr, "starttlsd-tlsrpt: %s: %s\n", path, strerror(errno));
		return -1;
	}
	/* Root's run leaves it to state_dir's owner, as the store's files. */
	if (geteuid() == 0 && stat(topts.state_dir, &st) == 0 && st.st_uid != 0 &&
	    fchown(fd, st.st_uid, st.st_gid) < 0) {
		/* best effort */
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;

		fprintf(stderr, "starttlsd-tlsrpt: %s: %s\n", path,
		    e == EWOULDBLOCK ? "another send is running" : strerror(e));
		close(fd);
		return e == EWOULDBLOCK ? -2 : -1;
	}
	return fd;
}

static int
cmd_send(bool one_day, uint32_t day)
{
	uint32_t today = tlsrpt_day((int64_t)time(NULL)), first, last;
	struct domains d = { 0 };
	struct ev_loop *loop;
	struct resolver *res;
	struct tlsrpt *t;
	char err[1024];
	int rc = EX_OK, lock;

	if (one_day && day >= today) {
		char ds[11];

		tlsrpt_day_str(day, ds);
		return usage_error("send --day %s: not over yet (UTC)", ds);
	}
	if ((lock = send_lock()) == -2)
		return EX_FAILED;
	if (lock < 0)
		return EX_STORE;
	if ((t = tlsrpt_open(&topts, err, sizeof(err))) == NULL) {
		fprintf(stderr, "starttlsd-tlsrpt: %s\n", err);
		close(lock);
		return EX_STORE;
	}
	if (tlsrpt_purge(t, today, err, sizeof(err)) < 0)
		fprintf(stderr, "starttlsd-tlsrpt: %s\n", err);
	if ((loop = ev_loop_new(EVFLAG_AUTO)) == NULL) {
		fprintf(stderr, "starttlsd-tlsrpt: no event loop\n");
		tlsrpt_close(t);
		close(lock);
		return EX_STORE;
	}
	if ((res = resolver_new(loop, &ropts, err, sizeof(err))) == NULL) {
		fprintf(stderr, "starttlsd-tlsrpt: resolver: %s\n", err);
		ev_loop_destroy(loop);
		tlsrpt_close(t);
		close(lock);
		return EX_FAILED;
	}
	first = one_day ? day : today >= TLSRPT_DAYS_KEPT - 1 ?
	    today - (TLSRPT_DAYS_KEPT - 1) : 0;
	last = one_day ? day : today - 1;
	for (uint32_t dd = first; dd <= last && rc != EX_STORE; dd++) {
		if (day_domains(t, dd, &d) < 0) {
			rc = EX_STORE;
			break;
		}
		for (size_t i = 0; i < d.n; i++)
			if (send_one(loop, res, t, dd, d.name[i]) != 0)
				rc = EX_FAILED;
	}
	fflush(stdout);
	free(d.name);
	resolver_free(res);
	ev_loop_destroy(loop);
	tlsrpt_close(t);
	close(lock);
	return rc;
}

/* ---- main ------------------------------------------------------------------------------ */

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "state-dir", required_argument, NULL, 'd' },
		{ "org", required_argument, NULL, 'o' },
		{ "contact", required_argument, NULL, 'k' },
		{ "submission", required_argument, NULL, 's' },
		{ "from", required_argument, NULL, 'f' },
		{ "resolver", required_argument, NULL, 'r' },
		{ "resolv-conf", required_argument, NULL, 'R' },
		{ "trust-anchor", required_argument, NULL, 'a' },
		{ "ca-file", required_argument, NULL, 'A' },
		{ "timeout", required_argument, NULL, 't' },
		{ "day", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cmd;
	uint32_t day = tlsrpt_day((int64_t)time(NULL));
	bool one_day = false;
	char *end;
	long v;
	int c;

	opterr = 0;
	/* Options anywhere: starttlsctl puts --state-dir first, the user's after the command. */
	while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': opt.config = optarg; break;
		case 'D':
			if (tlsrpt_day_parse(optarg, &day) < 0)
				return usage_error("--day: %s: expected YYYY-MM-DD",
				    optarg);
			one_day = true;
			break;
		case 'd': opt.state_dir = optarg; break;
		case 'o': opt.org = optarg; break;
		case 'k': opt.contact = optarg; break;
		case 's': opt.submission = optarg; break;
		case 'f': opt.from = optarg; break;
		case 'R': opt.resolv_conf = optarg; break;
		case 'a': opt.trust_anchor = optarg; break;
		case 'A': opt.ca_file = optarg; break;
		case 'r':
			if (opt.nfwd == RESOLVER_MAX_FWD)
				return usage_error("--resolver: at most %d",
				    RESOLVER_MAX_FWD);
			opt.fwd[opt.nfwd++] = optarg;
			break;
		case 't':
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || v < 100 || v > 600000)
				return usage_error("--timeout: 100 to 600000 ms");
			opt.timeout_ms = (unsigned)v;
			break;
		case 'h':
			usage(stdout);
			return EX_OK;
		default:
			return usage_error("%s: unknown option, or its value is "
			    "missing", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return usage_error("no command (show or send)");
	cmd = argv[optind++];
	if (strcmp(cmd, "show") == 0) {
		if (argc - optind > 1 || (argc - optind == 1 && one_day))
			return usage_error("show: at most one DAY");
		if (argc - optind == 1 && tlsrpt_day_parse(argv[optind], &day) < 0)
			return usage_error("show: %s: expected YYYY-MM-DD",
			    argv[optind]);
		if (load_config() < 0)
			return EX_USAGE;
		c = cmd_show(day);
	} else if (strcmp(cmd, "send") == 0) {
		if (argc - optind != 0)
			return usage_error("send: %s: expected --day DAY or "
			    "nothing", argv[optind]);
		if (load_config() < 0)
			return EX_USAGE;
		c = cmd_send(one_day, day);
	} else
		return usage_error("%s: unknown command", cmd);
	config_free(&cfg);
	return c;
}
