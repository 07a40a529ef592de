/* log: logfmt lines to syslog (LOG_MAIL) and, on request, stderr. */
#include <errno.h>
#include <paths.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "starttlsd/log.h"

static bool log_to_stderr;
static bool log_to_syslog;

/*
 * The syslog socket, written as glibc's syslog(3) with openlog("starttlsd",
 * LOG_PID | LOG_NDELAY, LOG_MAIL) writes it: one datagram per line,
 * "<PRI>Mmm dd hh:mm:ss starttlsd[PID]: TEXT" (local time, C locale), to
 * _PATH_LOG, connected at log_open; a stream socket if that is what
 * _PATH_LOG is (then the line ends in a NUL, as glibc sends it); a failed
 * send is tried once more over a new connection. Unlike glibc, a missing
 * syslog daemon costs no socket(), connect() and close() per line: while
 * there is none, a new connection is tried at most once a second (the
 * lines in between are lost, as they are with glibc). Nor is getpid()
 * asked per line: the pid is kept, and forgotten in a forked child.
 */
static struct {
	pthread_mutex_t mu;
	int fd;
	int type;          /* SOCK_DGRAM, or SOCK_STREAM */
	time_t retry_at;   /* not connected: no new try before this */
	time_t stamp_sec;  /* the second stamp[] was made for */
	char stamp[32];    /* "Dec  7 01:52:03 " */
} sl = { PTHREAD_MUTEX_INITIALIZER, -1, SOCK_DGRAM, 0, -1, "" };
static pid_t log_pid_cached;

static void
log_atfork_prepare(void)
{
	pthread_mutex_lock(&sl.mu);
}

static void
log_atfork_parent(void)
{
	pthread_mutex_unlock(&sl.mu);
}

static void
log_atfork_child(void)
{
	log_pid_cached = 0;
	pthread_mutex_unlock(&sl.mu);
}

static void
log_atfork_once(void)
{
	pthread_atfork(log_atfork_prepare, log_atfork_parent, log_atfork_child);
}

static pid_t
log_pid(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, log_atfork_once);
	if (log_pid_cached == 0)
		log_pid_cached = getpid();
	return log_pid_cached;
}

/* Connect to _PATH_LOG (sl.mu held). */
static void
sl_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", _PATH_LOG);
	for (int i = 0; i < 2 && sl.fd < 0; i++) {
		sl.fd = socket(AF_UNIX, sl.type | SOCK_CLOEXEC, 0);
		if (sl.fd < 0)
			break;
		if (connect(sl.fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return;
		int e = errno;
		close(sl.fd);
		sl.fd = -1;
		if (e != EPROTOTYPE)
			break;
		/* _PATH_LOG is a stream socket: try that (once). */
		sl.type = sl.type == SOCK_DGRAM ? SOCK_STREAM : SOCK_DGRAM;
	}
}

static void
sl_disconnect(void)
{
	if (sl.fd >= 0)
		close(sl.fd);
	sl.fd = -1;
}

static bool
sl_send(const char *p, size_t n)
{
	ssize_t r;

	do
		r = send(sl.fd, p, n, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	return r >= 0;
}

static void
sl_write(int prio, const char *text)
{
	static const char mon[12][4] = { "Jan", "Feb", "Mar", "Apr", "May",
	    "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	char line[LOG_LINE_MAX + 96];
	time_t now = time(NULL);
	int n;

	if ((prio & LOG_FACMASK) == 0)
		prio |= LOG_MAIL;
	pthread_mutex_lock(&sl.mu);
	if (sl.fd < 0) {
		if (now < sl.retry_at)
			goto out;
		sl_connect();
		if (sl.fd < 0) {
			sl.retry_at = now + 1;
			goto out;
		}
	}
	if (now != sl.stamp_sec) {
		struct tm tm;

		if (localtime_r(&now, &tm) == NULL)
			memset(&tm, 0, sizeof(tm));
		snprintf(sl.stamp, sizeof(sl.stamp), "%.3s %2d %02d:%02d:%02d ",
		    mon[(unsigned)tm.tm_mon % 12], tm.tm_mday % 100,
		    tm.tm_hour % 100, tm.tm_min % 100, tm.tm_sec % 100);
		sl.stamp_sec = now;
	}
	n = snprintf(line, sizeof(line), "<%d>%sstarttlsd[%d]: %s", prio,
	    sl.stamp, (int)log_pid(), text);
	if (n < 0)
		goto out;
	if ((size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	/* A stream socket: the NUL ends the line. */
	if (sl.type == SOCK_STREAM)
		n++;
	if (!sl_send(line, (size_t)n)) {
		/* The daemon went (a restart): once more, connected anew. */
		sl_disconnect();
		sl_connect();
		if (sl.fd < 0 || !sl_send(line, (size_t)n))
			sl.retry_at = now + 1;
	}
out:
	pthread_mutex_unlock(&sl.mu);
}

void
log_open(bool to_stderr, bool to_syslog)
{
	log_to_stderr = to_stderr;
	log_to_syslog = to_syslog;
	(void)log_pid();
	if (to_syslog) {
		pthread_mutex_lock(&sl.mu);
		sl.retry_at = 0;
		sl_connect();
		pthread_mutex_unlock(&sl.mu);
	}
}

void
log_set_stderr(bool to_stderr)
{
	log_to_stderr = to_stderr;
}

void
log_close(void)
{
	if (log_to_syslog) {
		pthread_mutex_lock(&sl.mu);
		sl_disconnect();
		pthread_mutex_unlock(&sl.mu);
	}
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
		sl_write(prio, l->text);
	if (log_to_stderr) {
		struct timespec ts;
		struct tm tm;
		char when[32];

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
		fprintf(stderr, "%s.%03ldZ starttlsd[%d]: %s\n", when,
		    ts.tv_nsec / 1000000, (int)log_pid(), l->text);
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
		sl_write(LOG_CRIT, l.text);
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
