/*
 * log: logfmt lines (key=value, values quoted when needed) to syslog(3),
 * ident "starttlsd", facility LOG_MAIL, optionally mirrored to stderr.
 * The schema is an interface: docs/logging.md documents every event, its
 * keys in the order they are written, and the escaping. A value is bare
 * when it is only printable ASCII other than '=', '"' and '\'; otherwise
 * it is quoted and its body is a JSON string (\" \\ \n \r \t \u00XX;
 * well-formed UTF-8 as is; \u0080-\u00ff for single bytes that are not).
 * Lines hold no control bytes. Keys whose values a peer chooses are
 * written after all the others: callers keep that order.
 */
#ifndef STARTTLSD_LOG_H
#define STARTTLSD_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syslog.h>

#define LOG_LINE_MAX 2048

/* One line being built; overlong lines are cut and end in "truncated=1". */
struct logline {
	char text[LOG_LINE_MAX];
	size_t len;
	bool truncated;
	bool marked;  /* " truncated=1" appended */
};

void log_open(bool to_stderr, bool to_syslog);
void log_set_stderr(bool to_stderr);
void log_close(void);

void log_begin(struct logline *l, const char *event);
/* NULL values are skipped; empty ones are written as "". */
void log_str(struct logline *l, const char *key, const char *val);
/* Value given as bytes (may hold anything: they are escaped). */
void log_bytes(struct logline *l, const char *key, const char *val, size_t len);
void log_u64(struct logline *l, const char *key, uint64_t val);
void log_int(struct logline *l, const char *key, long long val);
void log_fmt(struct logline *l, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_emit(struct logline *l, int prio);

/* Shorthand: "event=EVENT msg=..." at prio. */
void log_msg(int prio, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * A signal's name for a log line: "SIGTERM", "SIGKILL"; "SIG34" for one
 * without a name (real-time signals). A static buffer, valid until the
 * next call: use it in the log call itself.
 */
const char *log_signame(int sig);

/* Start-up failure: log, print to stderr, exit(1). */
void log_fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

#endif
