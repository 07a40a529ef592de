/*
 * smtp: pure SMTP parsing and formatting. No I/O, no allocation beyond what
 * callers hand in, so every function here is unit-tested and fuzzed alone.
 *
 * Conventions: lengths are size_t; functions that "find" something return a
 * length (0 = not found yet); functions that can fail return 0 / -1.
 */
#ifndef STARTTLSD_SMTP_H
#define STARTTLSD_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- replies ------------------------------------------------------------ */

enum smtp_parse {
	SMTP_PARSE_OK,       /* one complete reply at the start of the input */
	SMTP_PARSE_NEED_MORE,/* incomplete so far, within the limits */
	SMTP_PARSE_ERROR,    /* malformed or over a limit: the peer is broken */
};

struct smtp_reply {
	int code;      /* 100..599 */
	size_t len;    /* bytes of the whole reply, final line end included */
	size_t nlines; /* number of lines */
};

/*
 * Look for one complete (possibly multi-line) reply at the start of
 * data[0..len). A line ends at LF (a CR before it is optional, so bare-LF
 * servers work). Each line is three digits followed by '-' (more lines
 * follow), ' ' or the line end (last line). Every line must carry the same
 * code. A line longer than max_line bytes (line end included) or a reply of
 * more than max_lines lines is an error, as soon as that can be seen, even
 * before the reply is complete.
 */
enum smtp_parse smtp_reply_parse(const char *data, size_t len, size_t max_line,
    size_t max_lines, struct smtp_reply *out);

/* The class digit of a code: 2 for 250, 4 for 421, ... */
static inline int smtp_code_class(int code) { return code / 100; }

/*
 * Format a single-line reply "CODE ENH TEXT\r\n" into out. enh may be NULL.
 * Returns the length written, or -1 if it does not fit (out is then "").
 */
ssize_t smtp_reply_fmt(char *out, size_t cap, int code, const char *enh,
    const char *text);

/* ---- command lines ------------------------------------------------------ */

enum smtp_verb {
	SMTP_V_UNKNOWN = 0,
	SMTP_V_HELO,
	SMTP_V_EHLO,
	SMTP_V_MAIL,
	SMTP_V_RCPT,
	SMTP_V_DATA,
	SMTP_V_BDAT,
	SMTP_V_RSET,
	SMTP_V_NOOP,
	SMTP_V_QUIT,
	SMTP_V_VRFY,
	SMTP_V_EXPN,
	SMTP_V_HELP,
	SMTP_V_STARTTLS,
	SMTP_V_AUTH,
};

struct smtp_cmd {
	enum smtp_verb verb;
	const char *arg;    /* points into the line: text after the verb and its spaces */
	size_t arg_len;     /* without the line end */
	uint64_t bdat_size; /* BDAT only */
	bool bdat_last;     /* BDAT only: LAST given */
};

/*
 * Length of the first line in data[0..len), LF included, or 0 when no LF is
 * there yet.
 */
size_t smtp_line_len(const char *data, size_t len);

/*
 * Parse one command line (line end may be included or not). The verb is
 * case-insensitive and ends at a space or the line end ("MAIL FROM:<a>"
 * gives SMTP_V_MAIL). Returns 0, or -1 when the verb is known but its
 * arguments are malformed in a way the relay must care about: a BDAT
 * without a valid decimal size (at most 20 digits, no overflow) or with
 * anything but "LAST" after it.
 */
int smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *out);

/* "EHLO", "MAIL", ...; "UNKNOWN" for SMTP_V_UNKNOWN. */
const char *smtp_verb_str(enum smtp_verb verb);

/*
 * What makes a complete command line (LF included) unfit to relay: a line
 * end the server may see where we do not (a bare CR or LF: RFC 5321 2.3.8),
 * or a NUL (a server that drops it would join what we saw as two words).
 */
enum smtp_line_fault {
	SMTP_LINE_OK,
	SMTP_LINE_BARE_NEWLINE, /* not ending in CRLF, or a CR inside */
	SMTP_LINE_NUL,
};
enum smtp_line_fault smtp_line_check(const char *line, size_t len);

/*
 * The domain of a RCPT argument "TO:<local@Domain.Example.> params",
 * lower-cased, without a final dot. False when there is none (no '@', a
 * quoted or odd domain, too long for cap).
 */
bool smtp_rcpt_domain(const char *arg, size_t len, char *out, size_t cap);

/* ---- EHLO capabilities ---------------------------------------------------- */

struct smtp_caps {
	bool esmtp;          /* the reply was a 250 */
	bool starttls;
	bool starttls_masked;/* an unknown keyword that looks like a masked
	                        STARTTLS: 8 chars, all 'X' (case-insensitive),
	                        or 'X' * 7 followed by one letter, as firewall
	                        "ESMTP inspection" features write it */
	bool pipelining;
	bool chunking;
	bool eightbitmime;
	bool smtputf8;
	bool size;
	uint64_t size_limit; /* 0 when none given */
};

/*
 * Parse a complete EHLO reply (as found by smtp_reply_parse). The first line
 * is the greeting and carries no capability. Keywords are case-insensitive.
 */
void smtp_caps_parse(const char *reply, size_t len, struct smtp_caps *out);

/*
 * Rewrite a complete 250 EHLO reply for the client: drop every STARTTLS
 * capability line (case-insensitive keyword, any parameters) and, when
 * add_starttls, add one "250-STARTTLS" line just before the last line.
 * The separators are fixed so that exactly the last line has ' '. Line ends
 * are written as they were received (CRLF or LF). Writes into out (cap bytes);
 * returns the length or -1 when it does not fit or the reply is not a
 * well-formed 250 reply. *had_starttls (may be NULL) says whether one was
 * removed. The greeting line always stays first: a reply that is only the
 * greeting gains the STARTTLS line after it, as its new last line
 * ("250 host" gives "250-host" then "250 STARTTLS").
 */
ssize_t smtp_ehlo_filter(const char *reply, size_t len, bool add_starttls,
    char *out, size_t cap, bool *had_starttls);

/* ---- DATA end detection ------------------------------------------------------ */

/*
 * Tracks the end of a DATA body, "\r\n.\r\n", over any split of the input.
 * Starts as if just after a CRLF (the one ending the DATA command line), so
 * ".\r\n" right away ends an empty body. Bytes are never changed.
 *
 * It also counts sequences that some servers take as an end of data but RFC
 * 5321 does not (SMTP smuggling): "\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r"
 * and a '.' line ended by a bare CR or LF, so the session can refuse or
 * neutralise them.
 */
struct smtp_data {
	int state;          /* private */
	uint64_t ambiguous; /* number of ambiguous end-like sequences seen */
	uint64_t bare_lf;   /* LF not preceded by CR */
	uint64_t bare_cr;   /* CR not followed by LF */
};

void smtp_data_init(struct smtp_data *d);

/*
 * Scan data[0..len). If the end of the body is inside it, set *done and
 * return the number of bytes up to and including the final LF; else return
 * len with *done false.
 */
size_t smtp_data_scan(struct smtp_data *d, const char *data, size_t len,
    bool *done);

#endif
