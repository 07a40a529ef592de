/*
 * tlsrptsend: delivery's pure parts (tlsrpt.h): the _smtp._tls TXT record
 * (RFC 8460 3) with its rua URIs, and the message for a mailto: URI (RFC
 * 8460 5.3). No I/O here; starttlsd-tlsrpt (proxy/tlsrpt_main.c) does it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/rand.h>

#include "starttlsd/tlsrpt.h"

#define TXT_MAX 4096         /* one record, its strings joined */
#define TXT_RECORDS_MAX 16   /* TXT records looked at */

static bool
is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static bool
is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9');
}

static int
lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* A host name: LDH labels of 1-63, 253 at most, no trailing dot kept. */
static int
host_check(const char *h, size_t n, char *out, size_t cap)
{
	size_t label = 0;

	if (n > 0 && h[n - 1] == '.')
		n--;
	if (n == 0 || n > 253 || n >= cap)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = (char)lower((unsigned char)h[i]);

		if (c == '.') {
			if (label == 0 || h[i - 1] == '-')
				return -1;
			label = 0;
		} else if (is_alnum(c) || c == '-' || c == '_') {
			if (++label > 63 || (label == 1 && c == '-'))
				return -1;
		} else
			return -1;
		out[i] = c;
	}
	if (label == 0 || h[n - 1] == '-')
		return -1;
	out[n] = '\0';
	return 0;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)lower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* mailto:ADDR[?hfields]: the address, percent-decoded and checked. */
static int
mailto_parse(const char *s, size_t n, struct tlsrpt_uri *u)
{
	char dec[TLSRPT_URI_MAX + 1], dom[256];
	size_t k = 0, q = 0;
	const char *at;

	while (q < n && s[q] != '?')
		q++;
	for (size_t i = 0; i < q; i++) {
		int c = (unsigned char)s[i];

		if (c == '%') {
			int h, l;

			if (i + 2 >= q)
				return -1;
			if ((h = hexval(s[i + 1])) < 0 || (l = hexval(s[i + 2])) < 0)
				return -1;
			c = h << 4 | l;
			i += 2;
		}
		/* No controls, blanks, 8-bit, or what would break a header or a path. */
		if (c <= 0x20 || c >= 0x7f || strchr("<>()[]\\,;:\"", c) != NULL)
			return -1;
		if (k >= sizeof(dec) - 1)
			return -1;
		dec[k++] = (char)c;
	}
	dec[k] = '\0';
	if ((at = strrchr(dec, '@')) == NULL || at == dec ||
	    strchr(dec, '@') != at || (size_t)(at - dec) > 64)
		return -1;
	if (host_check(at + 1, strlen(at + 1), dom, sizeof(dom)) < 0 ||
	    strchr(dom, '.') == NULL)
		return -1;
	snprintf(u->addr, sizeof(u->addr), "%.*s@%s", (int)(at - dec), dec, dom);
	return 0;
}

/* https://HOST[:PORT][/PATH]: no user info, a name (not an address literal). */
static int
https_parse(const char *s, size_t n, struct tlsrpt_uri *u)
{
	size_t i = 0, hn, pn;
	unsigned long port = 443;

	if (n < 2 || s[0] != '/' || s[1] != '/')
		return -1;
	s += 2;
	n -= 2;
	while (i < n && s[i] != ':' && s[i] != '/' && s[i] != '?' && s[i] != '#')
		i++;
	hn = i;
	if (memchr(s, '@', n) != NULL && (const char *)memchr(s, '@', n) < s + hn)
		return -1;
	if (host_check(s, hn, u->host, sizeof(u->host)) < 0)
		return -1;
	if (i < n && s[i] == ':') {
		size_t d = ++i;

		port = 0;
		while (i < n && s[i] >= '0' && s[i] <= '9' && i - d < 6)
			port = port * 10 + (unsigned long)(s[i++] - '0');
		if (i == d || port == 0 || port > 65535)
			return -1;
	}
	u->port = (uint16_t)port;
	/* The rest up to a fragment is the request target. */
	pn = i;
	while (pn < n && s[pn] != '#')
		pn++;
	if (i == pn)
		snprintf(u->path, sizeof(u->path), "/");
	else if (s[i] == '/')
		snprintf(u->path, sizeof(u->path), "%.*s", (int)(pn - i), s + i);
	else if (s[i] == '?')
		snprintf(u->path, sizeof(u->path), "/%.*s", (int)(pn - i), s + i);
	else
		return -1;
	for (const char *p = u->path; *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return -1;
	return 0;
}

/* One URI of rua: kept (1), ignored as another scheme (0), or invalid (-1). */
static int
uri_parse(const char *s, size_t n, struct tlsrpt_uri *u)
{
	size_t colon;

	memset(u, 0, sizeof(*u));
	if (n == 0 || n > TLSRPT_URI_MAX)
		return -1;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return -1;
	for (colon = 0; colon < n && s[colon] != ':'; colon++)
		if (!is_alnum(s[colon]) && (colon == 0 ||
		    strchr("+-.", s[colon]) == NULL))
			return -1;
	if (colon == 0 || colon == n)
		return -1;
	memcpy(u->uri, s, n);
	u->uri[n] = '\0';
	if (colon == 6 && strncasecmp(s, "mailto", 6) == 0) {
		u->kind = TLSRPT_URI_MAILTO;
		return mailto_parse(s + 7, n - 7, u) == 0 ? 1 : -1;
	}
	if (colon == 5 && strncasecmp(s, "https", 5) == 0) {
		u->kind = TLSRPT_URI_HTTPS;
		return https_parse(s + 6, n - 6, u) == 0 ? 1 : -1;
	}
	return 0;
}

static int
rua_parse(const char *v, size_t n, struct tlsrpt_rua *out, char *err,
    size_t errlen)
{
	size_t i = 0;

	while (i <= n) {
		size_t s = i, e;
		int r;

		while (i < n && v[i] != ',' && !is_wsp(v[i]))
			i++;
		e = i;
		if (out->n < TLSRPT_MAX_RUA) {
			r = uri_parse(v + s, e - s, &out->uri[out->n]);
			if (r < 0) {
				snprintf(err, errlen, "rua: %.*s: not a valid "
				    "URI", (int)(e - s > 80 ? 80 : e - s), v + s);
				return -1;
			}
			if (r > 0)
				out->n++;
		}
		/* *WSP "," *WSP, or the end */
		while (i < n && is_wsp(v[i]))
			i++;
		if (i == n)
			break;
		if (v[i] != ',') {
			snprintf(err, errlen, "rua: blank inside a URI");
			return -1;
		}
		i++;
		while (i < n && is_wsp(v[i]))
			i++;
		if (i == n) {
			snprintf(err, errlen, "rua: ends with a comma");
			return -1;
		}
	}
	return 0;
}

/* tlsrpt-ext-name "=" tlsrpt-ext-value */
static bool
ext_ok(const char *f, size_t n)
{
	size_t eq = 0;

	while (eq < n && f[eq] != '=')
		eq++;
	if (eq == 0 || eq > 32 || eq + 1 >= n || !is_alnum(f[0]))
		return false;
	for (size_t i = 1; i < eq; i++)
		if (!is_alnum(f[i]) && strchr("_-.", f[i]) == NULL)
			return false;
	for (size_t i = eq + 1; i < n; i++) {
		unsigned char c = (unsigned char)f[i];

		if (c < 0x21 || c > 0x7e || c == ';' || c == '=')
			return false;
	}
	return true;
}

int
tlsrpt_txt_parse_text(const char *txt, size_t len, struct tlsrpt_rua *out,
    char *err, size_t errlen)
{
	static const char ver[] = "v=TLSRPTv1";
	size_t i = sizeof(ver) - 1;
	bool rua_seen = false;

	memset(out, 0, sizeof(*out));
	if (len < i || memcmp(txt, ver, i) != 0) {
		snprintf(err, errlen, "not a TLSRPTv1 record");
		return -1;
	}
	if (len > TXT_MAX) {
		snprintf(err, errlen, "record longer than %d bytes", TXT_MAX);
		return -1;
	}
	/* 1*(field-delim tlsrpt-field) [field-delim]; field-delim = *WSP ";" *WSP */
	for (;;) {
		size_t s, e;

		while (i < len && is_wsp(txt[i]))
			i++;
		if (i == len)
			break;
		if (txt[i] != ';') {
			snprintf(err, errlen, "expected ';' at byte %zu", i + 1);
			return -1;
		}
		i++;
		while (i < len && is_wsp(txt[i]))
			i++;
		if (i == len)
			break;  /* the optional final delimiter */
		s = i;
		while (i < len && txt[i] != ';')
			i++;
		e = i;
		while (e > s && is_wsp(txt[e - 1]))
			e--;
		if (e - s > 4 && memcmp(txt + s, "rua=", 4) == 0) {
			if (rua_seen) {
				snprintf(err, errlen, "rua given twice");
				return -1;
			}
			rua_seen = true;
			if (rua_parse(txt + s + 4, e - s - 4, out, err, errlen) < 0)
				return -1;
		} else if (!ext_ok(txt + s, e - s)) {
			snprintf(err, errlen, "field %.*s: malformed",
			    (int)(e - s > 40 ? 40 : e - s), txt + s);
			return -1;
		}
	}
	if (!rua_seen) {
		snprintf(err, errlen, "no rua");
		return -1;
	}
	if (out->n == 0) {
		snprintf(err, errlen, "rua has no mailto: or https: URI");
		return -1;
	}
	return 0;
}

int
tlsrpt_txt_parse(const uint8_t *const *rdata, const size_t *rdlen, size_t n,
    struct tlsrpt_rua *out, char *err, size_t errlen)
{
	char txt[TXT_MAX + 1], *one = NULL;
	size_t one_len = 0, found = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	for (size_t r = 0; r < n && r < TXT_RECORDS_MAX; r++) {
		size_t len = 0, p = 0;
		bool toolong = false;

		/* The character-strings of one record, joined with nothing between. */
		while (p < rdlen[r]) {
			size_t l = rdata[r][p++];

			if (l > rdlen[r] - p)
				break;
			if (len + l > TXT_MAX)
				toolong = true;
			else
				memcpy(txt + len, rdata[r] + p, l);
			len += toolong ? 0 : l;
			p += l;
		}
		if (len < 10 || memcmp(txt, "v=TLSRPTv1", 10) != 0 ||
		    (len > 10 && txt[10] != ';' && !is_wsp(txt[10])))
			continue;
		if (toolong) {
			snprintf(err, errlen, "record longer than %d bytes",
			    TXT_MAX);
			free(one);
			return -1;
		}
		if (++found == 1) {
			if ((one = malloc(len)) == NULL) {
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			memcpy(one, txt, len);
			one_len = len;
		}
	}
	if (found != 1) {
		/* RFC 8460 3: not exactly one: the domain does not do TLSRPT. */
		snprintf(err, errlen, found == 0 ? "no TLSRPTv1 record" :
		    "%zu TLSRPTv1 records (one needed)", found);
		free(one);
		return -1;
	}
	rc = tlsrpt_txt_parse_text(one, one_len, out, err, errlen);
	free(one);
	return rc;
}

/* ---- the message (RFC 8460 5.3) ------------------------------------------------- */

struct sbuf {
	char *p;
	size_t len, cap;
	bool fail;
};

static void __attribute__((format(printf, 2, 3)))
sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->fail)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->fail = true;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t ncap = b->cap * 2 + (size_t)n;
		char *np = realloc(b->p, ncap);

		if (np == NULL) {
			b->fail = true;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
}

static void
sb_base64(struct sbuf *b, const uint8_t *in, size_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char line[80];
	size_t k = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		line[k++] = tab[v >> 18 & 63];
		line[k++] = tab[v >> 12 & 63];
		line[k++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
		line[k++] = i + 2 < n ? tab[v & 63] : '=';
		if (k == 76 || i + 3 >= n) {
			sb_printf(b, "%.*s\r\n", (int)k, line);
			k = 0;
		}
	}
}

char *
tlsrpt_mail_build(const struct tlsrpt_opts *opts, uint32_t day,
    const char *domain, const char *report_id, const char *const *rcpts,
    size_t nrcpts, const uint8_t *gz, size_t gz_len, int64_t now, size_t *len)
{
	struct sbuf b = { .cap = 4096 + gz_len * 2 };
	char sub[256], d[11], date[64], bnd[40];
	time_t tnow = (time_t)now;
	struct tm tm;
	uint8_t r[12];
	int64_t begin = (int64_t)day * 86400;

	if ((b.p = malloc(b.cap)) == NULL)
		return NULL;
	tlsrpt_submitter(opts, sub, sizeof(sub));
	tlsrpt_day_str(day, d);
	if (gmtime_r(&tnow, &tm) == NULL ||
	    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm) == 0)
		snprintf(date, sizeof(date), "Thu, 01 Jan 1970 00:00:00 +0000");
	RAND_bytes(r, sizeof(r));
	snprintf(bnd, sizeof(bnd), "tlsrpt-");
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(bnd + 7 + 2 * i, 3, "%02x", r[i]);

	sb_printf(&b, "From: <%s>\r\n", opts->from != NULL ? opts->from : "");
	sb_printf(&b, "To: ");
	for (size_t i = 0; i < nrcpts; i++)
		sb_printf(&b, "%s<%s>", i > 0 ? ",\r\n " : "", rcpts[i]);
	sb_printf(&b, "\r\n");
	sb_printf(&b, "Date: %s\r\n", date);
	/* One line (up to 998 bytes is allowed): some readers do not unfold. */
	sb_printf(&b, "Subject: Report Domain: %s Submitter: %s Report-ID: <%s>\r\n",
	    domain, sub, report_id);
	sb_printf(&b, "Message-ID: <%s>\r\n", report_id);
	sb_printf(&b, "TLS-Report-Domain: %s\r\n", domain);
	sb_printf(&b, "TLS-Report-Submitter: %s\r\n", sub);
	/* RFC 8460 5.3: delivered despite TLS failures; RFC 8689 says so to the MTAs. */
	sb_printf(&b, "TLS-Required: No\r\n");
	sb_printf(&b, "Auto-Submitted: auto-generated\r\n");
	sb_printf(&b, "MIME-Version: 1.0\r\n");
	sb_printf(&b, "Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n"
	    " boundary=\"%s\"\r\n", bnd);
	sb_printf(&b, "\r\n");
	sb_printf(&b, "This is a MIME-formatted message.\r\n\r\n");
	sb_printf(&b, "--%s\r\n", bnd);
	sb_printf(&b, "Content-Type: text/plain; charset=us-ascii\r\n");
	sb_printf(&b, "Content-Transfer-Encoding: 7bit\r\n\r\n");
	sb_printf(&b, "This is an aggregate TLS report (RFC 8460) from %s\r\n"
	    "for the policy domain %s, day %s (UTC).\r\n\r\n", sub, domain, d);
	sb_printf(&b, "--%s\r\n", bnd);
	sb_printf(&b, "Content-Type: application/tlsrpt+gzip;\r\n"
	    " name=\"%s!%s!%lld!%lld.json.gz\"\r\n", sub, domain,
	    (long long)begin, (long long)(begin + 86399));
	sb_printf(&b, "Content-Transfer-Encoding: base64\r\n");
	sb_printf(&b, "Content-Disposition: attachment;\r\n"
	    " filename=\"%s!%s!%lld!%lld.json.gz\"\r\n\r\n", sub, domain,
	    (long long)begin, (long long)(begin + 86399));
	sb_base64(&b, gz, gz_len);
	sb_printf(&b, "\r\n--%s--\r\n", bnd);
	if (b.fail) {
		free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}
