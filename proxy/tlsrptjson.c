/*
 * tlsrptjson: the RFC 8460 4.4 report of one (UTC day, policy domain) from
 * the store (tlsrpt.h), with jansson, and its gzip (zlib). Only
 * starttlsd-tlsrpt and the tests link this file: the daemon has neither
 * jansson nor zlib.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/rand.h>
#include <zlib.h>

#include "starttlsd/tlsrpt.h"

#define GZIP_MAX (16u << 20)   /* a report is far smaller; a bound all the same */

static void
copy_domain_of(const char *addr, char *out, size_t cap)
{
	const char *at = addr != NULL ? strrchr(addr, '@') : NULL;
	size_t n;

	out[0] = '\0';
	if (at == NULL || at[1] == '\0')
		return;
	n = strcspn(at + 1, ">");
	if (n >= cap)
		return;
	memcpy(out, at + 1, n);
	out[n] = '\0';
}

void
tlsrpt_submitter(const struct tlsrpt_opts *opts, char *out, size_t cap)
{
	copy_domain_of(opts->from, out, cap);
	if (out[0] == '\0')
		copy_domain_of(opts->contact, out, cap);
	if (out[0] == '\0' && (gethostname(out, cap) < 0 || out[0] == '\0'))
		snprintf(out, cap, "localhost");
	out[cap - 1] = '\0';
}

void
tlsrpt_report_id(uint32_t day, const char *domain, const char *submitter,
    char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t r[8];
	char d[11], rh[17];

	RAND_bytes(r, sizeof(r));
	for (size_t i = 0; i < sizeof(r); i++) {
		rh[2 * i] = hex[r[i] >> 4];
		rh[2 * i + 1] = hex[r[i] & 15];
	}
	rh[16] = '\0';
	tlsrpt_day_str(day, d);
	snprintf(out, cap, "%s.%s.%s@%s", d, domain, rh, submitter);
}

/* ---- the JSON ---------------------------------------------------------------- */

struct build {
	json_t *policies;
	bool nomem;
};

/* Every member set at once, so one failed allocation spoils the whole report. */
static int
set(json_t *o, const char *k, json_t *v, struct build *b)
{
	if (v == NULL || json_object_set_new(o, k, v) != 0) {
		b->nomem = true;
		return -1;
	}
	return 0;
}

static json_t *
policy_json(const struct tlsrpt_agg *a, struct build *b)
{
	json_t *p = json_object(), *strs = NULL, *mx = NULL;

	if (p == NULL) {
		b->nomem = true;
		return NULL;
	}
	set(p, "policy-type", json_string(tlsrpt_policy_type_str(a->type)), b);
	if (a->type != TLSRPT_NO_POLICY) {
		strs = json_array();
		for (size_t i = 0; strs != NULL && i < a->nstrings; i++)
			if (json_array_append_new(strs,
			    json_string(a->strings[i])) != 0)
				b->nomem = true;
		set(p, "policy-string", strs, b);
	}
	set(p, "policy-domain", json_string(a->domain), b);
	if (a->type == TLSRPT_STS) {
		/* RFC 8460 4.4: the MX patterns of the policy, its "mx:" lines. */
		mx = json_array();
		for (size_t i = 0; mx != NULL && i < a->nstrings; i++) {
			const char *s = a->strings[i];

			if (strncmp(s, "mx:", 3) != 0)
				continue;
			s += 3;
			s += strspn(s, " \t");
			if (json_array_append_new(mx, json_stringn(s,
			    strcspn(s, " \t"))) != 0)
				b->nomem = true;
		}
		set(p, "mx-host", mx, b);
	}
	return p;
}

static json_t *
detail_json(const struct tlsrpt_detail *d, struct build *b)
{
	json_t *o = json_object();
	char ip[INET6_ADDRSTRLEN];

	if (o == NULL) {
		b->nomem = true;
		return NULL;
	}
	set(o, "result-type", json_string(pd_result_str(d->result)), b);
	if ((d->addr.family == AF_INET || d->addr.family == AF_INET6) &&
	    inet_ntop(d->addr.family, d->addr.addr, ip, sizeof(ip)) != NULL)
		set(o, "receiving-ip", json_string(ip), b);
	if (d->mx[0] != '\0')
		set(o, "receiving-mx-hostname", json_string(d->mx), b);
	set(o, "failed-session-count", json_integer((json_int_t)d->count), b);
	return o;
}

static int
add_policy(const struct tlsrpt_agg *a, void *arg)
{
	struct build *b = arg;
	json_t *e = json_object(), *sum = json_object(), *fd;

	if (e == NULL || sum == NULL) {
		json_decref(e);
		json_decref(sum);
		b->nomem = true;
		return 1;
	}
	set(e, "policy", policy_json(a, b), b);
	set(sum, "total-successful-session-count",
	    json_integer((json_int_t)a->success), b);
	set(sum, "total-failure-session-count",
	    json_integer((json_int_t)a->failure), b);
	set(e, "summary", sum, b);
	if (a->ndetails > 0) {
		fd = json_array();
		for (size_t i = 0; fd != NULL && i < a->ndetails; i++)
			if (json_array_append_new(fd,
			    detail_json(&a->details[i], b)) != 0)
				b->nomem = true;
		set(e, "failure-details", fd, b);
	}
	if (json_array_append_new(b->policies, e) != 0)
		b->nomem = true;
	return b->nomem ? 1 : 0;
}

char *
tlsrpt_report_json(struct tlsrpt *t, const struct tlsrpt_opts *opts,
    uint32_t day, const char *domain, const char *report_id, bool pretty,
    size_t *len, char *err, size_t errlen)
{
	struct build b = { 0 };
	json_t *root = NULL, *range = NULL;
	char d[11], start[32], end[32], sub[256], *text = NULL;

	if ((b.policies = json_array()) == NULL)
		goto nomem;
	if (tlsrpt_foreach(t, day, domain, add_policy, &b, err, errlen) < 0) {
		json_decref(b.policies);
		return NULL;
	}
	if (b.nomem)
		goto nomem;
	if (json_array_size(b.policies) == 0) {
		json_decref(b.policies);
		err[0] = '\0';
		return NULL;
	}
	tlsrpt_day_str(day, d);
	snprintf(start, sizeof(start), "%sT00:00:00Z", d);
	snprintf(end, sizeof(end), "%sT23:59:59Z", d);
	if ((root = json_object()) == NULL || (range = json_object()) == NULL) {
		json_decref(range);
		goto nomem;
	}
	/* Defaults: the submitter's domain; the From address. */
	tlsrpt_submitter(opts, sub, sizeof(sub));
	set(root, "organization-name", json_string(opts->org_name != NULL &&
	    opts->org_name[0] != '\0' ? opts->org_name : sub), &b);
	set(range, "start-datetime", json_string(start), &b);
	set(range, "end-datetime", json_string(end), &b);
	set(root, "date-range", range, &b);
	set(root, "contact-info", json_string(opts->contact != NULL &&
	    opts->contact[0] != '\0' ? opts->contact : opts->from != NULL ?
	    opts->from : ""), &b);
	set(root, "report-id", json_string(report_id), &b);
	set(root, "policies", b.policies, &b);
	b.policies = NULL;
	if (b.nomem)
		goto nomem;
	/* Keys in the RFC's order; ensure_ascii: the text is 7-bit either way. */
	text = json_dumps(root, JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII |
	    (pretty ? JSON_INDENT(2) : JSON_COMPACT));
	json_decref(root);
	if (text == NULL)
		goto nomem_done;
	*len = strlen(text);
	return text;
nomem:
	json_decref(b.policies);
	json_decref(root);
nomem_done:
	snprintf(err, errlen, "tlsrpt: out of memory (or a string not UTF-8)");
	return NULL;
}

/* ---- gzip ---------------------------------------------------------------------- */

int
tlsrpt_gzip(const void *in, size_t len, uint8_t **out, size_t *out_len)
{
	z_stream z;
	uint8_t *buf;
	size_t cap;
	int rc;

	*out = NULL;
	*out_len = 0;
	if (len > GZIP_MAX)
		return -1;
	memset(&z, 0, sizeof(z));
	/* windowBits 15 + 16: a gzip wrapper (RFC 1952), not zlib's. */
	if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
	    Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	cap = deflateBound(&z, (uLong)len) + 32;
	if ((buf = malloc(cap)) == NULL) {
		deflateEnd(&z);
		return -1;
	}
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)len;
	z.next_out = buf;
	z.avail_out = (uInt)cap;
	rc = deflate(&z, Z_FINISH);
	*out_len = cap - z.avail_out;
	deflateEnd(&z);
	if (rc != Z_STREAM_END) {
		free(buf);
		*out_len = 0;
		return -1;
	}
	*out = buf;
	return 0;
}
