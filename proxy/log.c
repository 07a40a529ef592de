/* log: logfmt lines to syslog (LOG_MAIL) and, on request, stderr. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "starttlsd/log.h"

static bool log_to_stderr;
static bool log_to_syslog;

void
log_open(bool to_stderr, bool to_syslog)
{
	log_to_stderr = to_stderr;
	log_to_syslog = to_syslog;
	if (to_syslog)
		openlog("starttlsd", LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
log_set_stderr(bool to_stderr)
{
	log_to_stderr = to_stderr;
}

void
log_close(void)
{
	if (log_to_syslog)
		closelog();
}

static void
log_put(struct logline *l, const char *s, size_t n)
{
	/* Keep room for " truncated=1". */
	const size_t limit = sizeof(l->text) - 16;

	if (l->truncated)
		return;
	if (l->len + n > limit) {
		l->truncated = true;
		return;
	}
	memcpy(l->text + l->len, s, n);
	l->len += n;
	l->text[l->len] = '\0';
}

void
log_begin(struct logline *l, const char *event)
{
	l->len = 0;
	l->truncated = false;
	l->marked = false;
	l->text[0] = '\0';
	log_put(l, "event=", 6);
	log_put(l, event, strlen(event));
}

static void log_pair(struct logline *l, const char *key, const char *v,
    size_t n);

/*
 * A value goes bare only when every byte is printable ASCII other than
 * '=', '"' and '\\' (0x21-0x7e): what every logfmt reader takes unquoted
 * and what a regex such as [^ ]+ reads whole. Anything else is quoted.
 */
static bool
needs_quotes(const char *v, size_t n)
{
	if (n == 0)
		return true;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c <= ' ' || c == '=' || c == '"' || c == '\\' || c >= 0x7f)
			return true;
	}
	return false;
}

/*
 * The length of the well-formed UTF-8 sequence at v (n bytes left) when it
 * encodes a character that may stand raw inside quotes: U+00A0 and up,
 * no surrogate, no overlong form, at most U+10FFFF. 0 otherwise, and for
 * the C1 controls U+0080-U+009F (a terminal acts on some of them).
 */
static size_t
utf8_raw_len(const unsigned char *v, size_t n)
{
	unsigned char c = v[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len;

	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		if (c == 0xc2)
			lo = 0xa0;  /* U+0080-U+009F: C1 controls */
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0;  /* overlong */
		else if (c == 0xed)
			hi = 0x9f;  /* surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90;  /* overlong */
		else if (c == 0xf4)
			hi = 0x8f;  /* above U+10FFFF */
	} else {
		return 0;
	}
	if (n < len || v[1] < lo || v[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (v[i] < 0x80 || v[i] > 0xbf)
			return 0;
	return len;
}

void
log_bytes(struct logline *l, const char *key, const char *v, size_t n)
{
	size_t start = l->len;

	if (v == NULL || l->truncated)
		return;
	log_pair(l, key, v, n);
	/* A pair that did not fit is dropped whole: no half value. */
	if (l->truncated) {
		l->len = start;
		l->text[l->len] = '\0';
	}
}

/*
 * Inside quotes the value is a JSON string body (RFC 8259), so any JSON
 * string decoder reads it: \" and \\, \n \r \t, \u00XX (lower-case hex)
 * for every other byte below 0x20 and for DEL; well-formed UTF-8 for
 * U+00A0 and up as is; every other byte >= 0x80 (not UTF-8, or a C1
 * control) as \u00XX with its own value, so XX >= 80 in an escape always
 * stands for that one raw byte. Peer-supplied bytes never reach syslog raw.
 */
static void
log_pair(struct logline *l, const char *key, const char *v, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)v;
	char esc[8];

	log_put(l, " ", 1);
	log_put(l, key, strlen(key));
	log_put(l, "=", 1);
	if (!needs_quotes(v, n)) {
		log_put(l, v, n);
		return;
	}
	log_put(l, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = u[i];
		size_t raw;

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			log_put(l, esc, 2);
		} else if (c == '\n' || c == '\r' || c == '\t') {
			esc[0] = '\\';
			esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
			log_put(l, esc, 2);
		} else if (c >= ' ' && c < 0x7f) {
			log_put(l, (const char *)&u[i], 1);
		} else if (c >= 0x80 && (raw = utf8_raw_len(u + i, n - i)) > 0) {
			log_put(l, (const char *)&u[i], raw);
			i += raw - 1;
		} else {
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 0xf];
			log_put(l, esc, 6);
		}
	}
	log_put(l, "\"", 1);
}

void
log_str(struct logline *l, const char *key, const char *val)
{
	if (val != NULL)
		log_bytes(l, key, val, strlen(val));
}

void
log_u64(struct logline *l, const char *key, uint64_t val)
{
	char tmp[24];

	snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)val);
	log_str(l, key, tmp);
}

void
log_int(struct logline *l, const char *key, long long val)
{
	char tmp[24];

	snprintf(tmp, sizeof(tmp), "%lld", val);
	log_str(l, key, tmp);
}

void
log_fmt(struct logline *l, const char *key, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	log_str(l, key, tmp);
}

void
log_emit(struct logline *l, int prio)
{
	if (l->truncated && !l->marked) {
		/* Once: a second emit of the same line must not add it again. */
		memcpy(l->text + l->len, " truncated=1", 13);
		l->len += 12;
		l->marked = true;
	}
	if (log_to_syslog)
		syslog(prio, "%s", l->text);
	if (log_to_stderr) {
		struct timespec ts;
		struct tm tm;
		char when[32];

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
		fprintf(stderr, "%s.%03ldZ starttlsd[%d]: %s\n", when,
		    ts.tv_nsec / 1000000, (int)getpid(), l->text);
	}
}

void
log_msg(int prio, const char *event, const char *fmt, ...)
{
	struct logline l;
	char tmp[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	log_begin(&l, event);
	log_str(&l, "msg", tmp);
	log_emit(&l, prio);
}

void
log_fatal(const char *fmt, ...)
{
	struct logline l;
	char tmp[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	log_begin(&l, "fatal");
	log_str(&l, "msg", tmp);
	if (log_to_syslog)
		syslog(LOG_CRIT, "%s", l.text);
	fprintf(stderr, "starttlsd: %s\n", tmp);
	exit(1);
}

const char *
log_signame(int sig)
{
	static char buf[24];
	const char *abbrev = sigabbrev_np(sig);

	if (abbrev != NULL)
		snprintf(buf, sizeof(buf), "SIG%s", abbrev);
	else
		snprintf(buf, sizeof(buf), "SIG%d", sig);
	return buf;
}
