/* log: logfmt lines to syslog (LOG_MAIL) and, on request, stderr. */
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

static void
log_pair(struct logline *l, const char *key, const char *v, size_t n)
{
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
		unsigned char c = (unsigned char)v[i];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			log_put(l, esc, 2);
		} else if (c < ' ' || c >= 0x7f) {
			/* Peer-supplied bytes never reach syslog raw. */
			snprintf(esc, sizeof(esc), "\\x%02x", c);
			log_put(l, esc, 4);
		} else {
			log_put(l, (const char *)&v[i], 1);
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
