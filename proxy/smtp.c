/*
 * smtp: pure SMTP parsing and formatting; the contracts are in smtp.h.
 * Input comes straight off the network and is fuzzed, so every function
 * reads only within the length it is given and takes any byte (NUL and
 * 8-bit included). No allocation, no I/O, no mutable global state.
 */
#include <limits.h>
#include <string.h>

#include "starttlsd/smtp.h"

/* UINT64_MAX has 20 decimal digits; more can only be padding or overflow. */
#define SMTP_U64_DIGITS 20

/* ---- small byte helpers -------------------------------------------------- */

/* ASCII only: <ctype.h> depends on the locale and is UB on negative chars. */
static int ascii_upper(unsigned char c)
{
	return c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c;
}

/* s[0..len) equals word (given in upper case), ignoring ASCII case. */
static bool word_eq(const char *s, size_t len, const char *word)
{
	size_t i;

	if (strlen(word) != len)
		return false;
	for (i = 0; i < len; i++)
		if (ascii_upper((unsigned char)s[i]) != (unsigned char)word[i])
			return false;
	return true;
}

/* Only ' ' separates words: a tab is not a separator anywhere in SMTP. */
static size_t skip_spaces(const char *s, size_t i, size_t len)
{
	while (i < len && s[i] == ' ')
		i++;
	return i;
}

static size_t token_end(const char *s, size_t i, size_t len)
{
	while (i < len && s[i] != ' ')
		i++;
	return i;
}

/* Decimal: 1..20 digits, no sign, no overflow of uint64_t. */
static int parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0 || len > SMTP_U64_DIGITS)
		return -1;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < '0' || c > '9')
			return -1;
		if (v > (UINT64_MAX - (uint64_t)(c - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(c - '0');
	}
	*out = v;
	return 0;
}

/* ---- replies ------------------------------------------------------------- */

static bool code_digit_ok(unsigned char c, size_t i)
{
	return i == 0 ? c >= '1' && c <= '5' : c >= '0' && c <= '9';
}

/*
 * Look at one reply line at p[0..avail), avail > 0. first is the first line
 * of the reply (p itself for the first one), whose code every line repeats.
 * Errors are reported from whatever bytes are there, before the LF if need
 * be, so a broken peer is dropped without waiting for it.
 */
static enum smtp_parse reply_line(const unsigned char *p, size_t avail,
    const unsigned char *first, size_t max_line, bool at_max_lines,
    size_t *line_len, bool *more)
{
	size_t search = avail < max_line ? avail : max_line;
	const unsigned char *lf = search ? memchr(p, '\n', search) : NULL;
	size_t seen = lf ? (size_t)(lf - p) + 1 : avail;
	size_t i;

	/* No LF in max_line bytes: the line will be longer than that. */
	if (lf == NULL && avail >= max_line)
		return SMTP_PARSE_ERROR;
	for (i = 0; i < 3; i++) {
		if (i == seen)
			return SMTP_PARSE_NEED_MORE;
		if (!code_digit_ok(p[i], i) || p[i] != first[i])
			return SMTP_PARSE_ERROR;
	}
	if (seen == 3)
		return SMTP_PARSE_NEED_MORE;
	switch (p[3]) {
	case '-':
		/* A continuation on the last allowed line promises one too many. */
		if (at_max_lines)
			return SMTP_PARSE_ERROR;
		*more = true;
		break;
	case ' ':
	case '\n':
		*more = false;
		break;
	case '\r':
		if (seen == 4)
			return SMTP_PARSE_NEED_MORE;
		if (p[4] != '\n')
			return SMTP_PARSE_ERROR;
		*more = false;
		break;
	default:
		return SMTP_PARSE_ERROR;
	}
	if (lf == NULL)
		return SMTP_PARSE_NEED_MORE;
	*line_len = seen;
	return SMTP_PARSE_OK;
}

/* out is written only when the result is SMTP_PARSE_OK. */
enum smtp_parse smtp_reply_parse(const char *data, size_t len, size_t max_line,
    size_t max_lines, struct smtp_reply *out)
{
	const unsigned char *p = (const unsigned char *)data;
	size_t pos = 0, nlines = 0, line_len = 0;
	bool more = true;
	enum smtp_parse r;

	while (more) {
		if (pos == len)
			return SMTP_PARSE_NEED_MORE;
		if (nlines >= max_lines)
			return SMTP_PARSE_ERROR;
		r = reply_line(p + pos, len - pos, p, max_line,
		    nlines + 1 >= max_lines, &line_len, &more);
		if (r != SMTP_PARSE_OK)
			return r;
		pos += line_len;
		nlines++;
	}
	out->code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
	out->len = pos;
	out->nlines = nlines;
	return SMTP_PARSE_OK;
}

/* Appends s[0..n) at *o; -1 when it does not fit. Keeps *o <= cap. */
static int put(char *out, size_t cap, size_t *o, const char *s, size_t n)
{
	if (n > cap - *o)
		return -1;
	if (n > 0)
		memcpy(out + *o, s, n);
	*o += n;
	return 0;
}

/* A CR or LF in a caller's text would let it inject a second reply line. */
static bool one_line(const char *s)
{
	return strpbrk(s, "\r\n") == NULL;
}

ssize_t smtp_reply_fmt(char *out, size_t cap, int code, const char *enh,
    const char *text)
{
	char num[3];
	size_t o = 0, enh_len, text_len, n;

	if (cap > 0)
		out[0] = '\0';
	if (text == NULL)
		text = "";
	if (enh != NULL && *enh == '\0')
		enh = NULL;
	if (code < 100 || code > 599 || !one_line(text) ||
	    (enh != NULL && !one_line(enh)))
		return -1;
	enh_len = enh ? strlen(enh) + 1 : 0;
	text_len = strlen(text);
	n = 3 + enh_len + 1 + text_len + 2;
	/* Room for the NUL too, so out is always a string. */
	if (n >= cap || n > SSIZE_MAX)
		return -1;
	num[0] = (char)('0' + code / 100);
	num[1] = (char)('0' + code / 10 % 10);
	num[2] = (char)('0' + code % 10);
	/* Everything fits now: n was checked against cap. */
	put(out, cap, &o, num, 3);
	if (enh != NULL) {
		put(out, cap, &o, " ", 1);
		put(out, cap, &o, enh, enh_len - 1);
	}
	put(out, cap, &o, " ", 1);
	put(out, cap, &o, text, text_len);
	put(out, cap, &o, "\r\n", 3);
	return (ssize_t)n;
}

/* ---- command lines ------------------------------------------------------- */

static const char *const verb_names[] = {
	[SMTP_V_UNKNOWN] = "UNKNOWN", [SMTP_V_HELO] = "HELO",
	[SMTP_V_EHLO] = "EHLO", [SMTP_V_MAIL] = "MAIL", [SMTP_V_RCPT] = "RCPT",
	[SMTP_V_DATA] = "DATA", [SMTP_V_BDAT] = "BDAT", [SMTP_V_RSET] = "RSET",
	[SMTP_V_NOOP] = "NOOP", [SMTP_V_QUIT] = "QUIT", [SMTP_V_VRFY] = "VRFY",
	[SMTP_V_EXPN] = "EXPN", [SMTP_V_HELP] = "HELP",
	[SMTP_V_STARTTLS] = "STARTTLS", [SMTP_V_AUTH] = "AUTH",
};

#define SMTP_NVERBS (sizeof(verb_names) / sizeof(verb_names[0]))

const char *smtp_verb_str(enum smtp_verb verb)
{
	size_t v = (size_t)verb;

	return v < SMTP_NVERBS && verb_names[v] ? verb_names[v] : "UNKNOWN";
}

static enum smtp_verb verb_lookup(const char *s, size_t len)
{
	size_t v;

	for (v = SMTP_V_UNKNOWN + 1; v < SMTP_NVERBS; v++)
		if (verb_names[v] && word_eq(s, len, verb_names[v]))
			return (enum smtp_verb)v;
	return SMTP_V_UNKNOWN;
}

size_t smtp_line_len(const char *data, size_t len)
{
	const char *lf = len ? memchr(data, '\n', len) : NULL;

	return lf ? (size_t)(lf - data) + 1 : 0;
}

/*
 * "BDAT" SP size [SP "LAST"]: the relay frames the next chunk by size.
 * Sets the BDAT fields only once the whole line is valid.
 */
static int bdat_parse(struct smtp_cmd *c)
{
	const char *a = c->arg;
	size_t n = c->arg_len, i, end;
	uint64_t size;

	end = token_end(a, 0, n);
	if (parse_u64(a, end, &size) < 0)
		return -1;
	i = skip_spaces(a, end, n);
	if (i < n) {
		end = token_end(a, i, n);
		if (!word_eq(a + i, end - i, "LAST") ||
		    skip_spaces(a, end, n) != n)
			return -1;
		c->bdat_last = true;
	}
	c->bdat_size = size;
	return 0;
}

int smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *out)
{
	size_t end = smtp_line_len(line, len), verb_end, i;

	memset(out, 0, sizeof(*out));
	/* Only the first line counts; a CR is part of the end only before LF. */
	if (end == 0)
		end = len;
	else if (--end > 0 && line[end - 1] == '\r')
		end--;
	verb_end = token_end(line, 0, end);
	out->verb = verb_lookup(line, verb_end);
	i = skip_spaces(line, verb_end, end);
	out->arg = line + i;
	out->arg_len = end - i;
	return out->verb == SMTP_V_BDAT ? bdat_parse(out) : 0;
}

/* ---- EHLO capabilities --------------------------------------------------- */

/* One reply line taken apart; text has neither separator nor line end. */
struct smtp_rline {
	const char *text;
	size_t text_len;
	size_t eol_len;   /* 0 (none: junk input only), 1 (LF) or 2 (CRLF) */
	bool has_sep;     /* ' ' or '-' after the code */
};

/* Splits the line at s[0..len), len > 0; returns its length, LF included. */
static size_t rline_split(const char *s, size_t len, struct smtp_rline *l)
{
	size_t n = smtp_line_len(s, len), end;

	if (n == 0)
		n = len;
	end = n;
	l->eol_len = 0;
	if (s[end - 1] == '\n') {
		end--;
		l->eol_len = 1;
		if (end > 0 && s[end - 1] == '\r') {
			end--;
			l->eol_len = 2;
		}
	}
	l->has_sep = end > 3 && (s[3] == ' ' || s[3] == '-');
	l->text = l->has_sep ? s + 4 : s + end;
	l->text_len = l->has_sep ? end - 4 : 0;
	return n;
}

static size_t rline_keyword_len(const struct smtp_rline *l)
{
	return token_end(l->text, 0, l->text_len);
}

static bool rline_is_starttls(const struct smtp_rline *l)
{
	return word_eq(l->text, rline_keyword_len(l), "STARTTLS");
}

/* Firewall "ESMTP inspection" overwrites STARTTLS with XXXXXXXX/XXXXXXXA. */
static bool keyword_masked(const char *kw, size_t len)
{
	size_t i;

	if (len != 8 || ascii_upper((unsigned char)kw[7]) < 'A' ||
	    ascii_upper((unsigned char)kw[7]) > 'Z')
		return false;
	for (i = 0; i < 7; i++)
		if (ascii_upper((unsigned char)kw[i]) != 'X')
			return false;
	return true;
}

static void caps_line(struct smtp_caps *c, const struct smtp_rline *l)
{
	const char *kw = l->text;
	size_t kw_len = rline_keyword_len(l);
	size_t p = skip_spaces(kw, kw_len, l->text_len);

	if (word_eq(kw, kw_len, "STARTTLS"))
		c->starttls = true;
	else if (word_eq(kw, kw_len, "PIPELINING"))
		c->pipelining = true;
	else if (word_eq(kw, kw_len, "CHUNKING"))
		c->chunking = true;
	else if (word_eq(kw, kw_len, "8BITMIME"))
		c->eightbitmime = true;
	else if (word_eq(kw, kw_len, "SMTPUTF8"))
		c->smtputf8 = true;
	else if (word_eq(kw, kw_len, "SIZE")) {
		/* A missing or unusable number means no announced limit. */
		c->size = true;
		if (parse_u64(kw + p, token_end(kw, p, l->text_len) - p,
		    &c->size_limit) < 0)
			c->size_limit = 0;
	} else if (keyword_masked(kw, kw_len))
		c->starttls_masked = true;
}

void smtp_caps_parse(const char *reply, size_t len, struct smtp_caps *out)
{
	struct smtp_rline l;
	size_t pos, n;

	memset(out, 0, sizeof(*out));
	out->esmtp = len >= 4 && memcmp(reply, "250", 3) == 0 &&
	    (reply[3] == ' ' || reply[3] == '-' || reply[3] == '\r' ||
	    reply[3] == '\n');
	/* A refused EHLO (5xx) offers nothing, whatever its lines say. */
	if (!out->esmtp)
		return;
	/* The first line is the greeting: its text is the server's name. */
	for (pos = rline_split(reply, len, &l); pos < len; pos += n) {
		n = rline_split(reply + pos, len - pos, &l);
		caps_line(out, &l);
	}
}

/* Writes code, separator, text and line end of one line of the new reply. */
static int put_line(char *out, size_t cap, size_t *o, const char *code,
    const struct smtp_rline *l, bool last)
{
	const char *sep = last ? " " : "-";
	const char *eol = l->eol_len == 2 ? "\r\n" : "\n";

	/* "250" alone is a valid last line; any other line needs its '-'. */
	if (put(out, cap, o, code, 3) < 0 ||
	    ((l->has_sep || !last) && put(out, cap, o, sep, 1) < 0) ||
	    put(out, cap, o, l->text, l->text_len) < 0 ||
	    put(out, cap, o, eol, strlen(eol)) < 0)
		return -1;
	return 0;
}

/*
 * Lines that stay (the greeting always does) and the line end of the last
 * one kept, which an added STARTTLS line copies (so filtering is
 * idempotent even when a server mixes CRLF and LF).
 */
static size_t ehlo_kept(const char *reply, size_t len, size_t *last_eol)
{
	struct smtp_rline l;
	size_t pos, n, kept = 0;

	for (pos = 0; pos < len; pos += n) {
		n = rline_split(reply + pos, len - pos, &l);
		if (pos == 0 || !rline_is_starttls(&l)) {
			kept++;
			*last_eol = l.eol_len;
		}
	}
	return kept;
}

ssize_t smtp_ehlo_filter(const char *reply, size_t len, bool add_starttls,
    char *out, size_t cap, bool *had_starttls)
{
	struct smtp_rline l, tls = { "STARTTLS", 8, 2, true };
	struct smtp_reply r;
	size_t pos, n, kept, tls_pos, i = 0, o = 0;
	bool had = false, last;

	if (had_starttls != NULL)
		*had_starttls = false;
	if (smtp_reply_parse(reply, len, SIZE_MAX, SIZE_MAX, &r) !=
	    SMTP_PARSE_OK || r.len != len || r.code != 250)
		return -1;
	kept = ehlo_kept(reply, len, &tls.eol_len);
	/* The greeting must stay first: a lone one gets STARTTLS after it. */
	tls_pos = kept == 1 ? 1 : kept - 1;
	for (pos = 0; pos < len; pos += n) {
		n = rline_split(reply + pos, len - pos, &l);
		if (pos > 0 && rline_is_starttls(&l)) {
			had = true;
			continue;
		}
		if (add_starttls && i == tls_pos &&
		    put_line(out, cap, &o, reply, &tls, false) < 0)
			return -1;
		last = i == kept - 1 && !(add_starttls && tls_pos == kept);
		if (put_line(out, cap, &o, reply, &l, last) < 0)
			return -1;
		i++;
	}
	if (add_starttls && tls_pos == kept &&
	    put_line(out, cap, &o, reply, &tls, true) < 0)
		return -1;
	if (o > SSIZE_MAX)
		return -1;
	if (had_starttls != NULL)
		*had_starttls = had;
	return (ssize_t)o;
}

/* ---- DATA end detection -------------------------------------------------- */

/*
 * A line end is CRLF, a bare LF or a bare CR (one not followed by LF, which
 * is known only at the next byte). A "dot line" is a lone '.' between two
 * line ends: both CRLF ends the body, anything else is ambiguous.
 */
enum smtp_data_state {
	SMTP_DS_BOL_CRLF, /* line start after CRLF (the initial state) */
	SMTP_DS_BOL_BARE, /* line start after a bare CR or LF */
	SMTP_DS_MID,      /* inside a line */
	SMTP_DS_DOT_CRLF, /* CRLF "." */
	SMTP_DS_DOT_BARE, /* bare end "." */
	SMTP_DS_CR,       /* CR, bare or not is not known yet */
	SMTP_DS_DOT_CR,   /* CRLF "." CR: an LF now ends the body */
	SMTP_DS_DONE,
};

void smtp_data_init(struct smtp_data *d)
{
	memset(d, 0, sizeof(*d));
	d->state = SMTP_DS_BOL_CRLF;
}

/* Feeds one byte; returns true when it is the LF that ends the body. */
static bool data_step(struct smtp_data *d, unsigned char c)
{
	switch (d->state) {
	case SMTP_DS_DOT_CR:
	case SMTP_DS_CR:
		if (c == '\n') {
			bool end = d->state == SMTP_DS_DOT_CR;

			d->state = end ? SMTP_DS_DONE : SMTP_DS_BOL_CRLF;
			return end;
		}
		/* The CR was bare, so a CRLF "." line it ends is ambiguous. */
		d->ambiguous += d->state == SMTP_DS_DOT_CR;
		d->bare_cr++;
		/* c is the first byte of the next line. */
		d->state = SMTP_DS_BOL_BARE;
		break;
	case SMTP_DS_DOT_CRLF:
	case SMTP_DS_DOT_BARE:
		if (c == '\r' && d->state == SMTP_DS_DOT_CRLF) {
			d->state = SMTP_DS_DOT_CR;
			return false;
		}
		if (c == '\r' || c == '\n') {
			/* Ambiguous whatever follows: count it at once. */
			d->ambiguous++;
			d->bare_lf += c == '\n';
			d->state = c == '\n' ? SMTP_DS_BOL_BARE : SMTP_DS_CR;
			return false;
		}
		d->state = SMTP_DS_MID;
		return false;
	default:
		break;
	}
	if (c == '\r')
		d->state = SMTP_DS_CR;
	else if (c == '\n') {
		d->bare_lf++;
		d->state = SMTP_DS_BOL_BARE;
	} else if (c == '.' && d->state == SMTP_DS_BOL_CRLF)
		d->state = SMTP_DS_DOT_CRLF;
	else if (c == '.' && d->state == SMTP_DS_BOL_BARE)
		d->state = SMTP_DS_DOT_BARE;
	else
		d->state = SMTP_DS_MID;
	return false;
}

/* Once the end was found, nothing more belongs to the body: returns 0. */
size_t smtp_data_scan(struct smtp_data *d, const char *data, size_t len,
    bool *done)
{
	size_t i;

	*done = d->state == SMTP_DS_DONE;
	if (*done)
		return 0;
	for (i = 0; i < len; i++) {
		if (d->state == SMTP_DS_MID) {
			/*
			 * Inside a line only CR and LF matter: skip to the next
			 * one with memchr (vectorised), each byte looked at at
			 * most twice. This is the hot path of every message.
			 */
			const char *p = data + i;
			const char *nl = memchr(p, '\n', len - i);
			size_t span = nl ? (size_t)(nl - p) : len - i;
			const char *cr = memchr(p, '\r', span);

			i += cr ? (size_t)(cr - p) : span;
			if (i == len)
				break;
		}
		if (data_step(d, (unsigned char)data[i])) {
			*done = true;
			return i + 1;
		}
	}
	return len;
}

/* ---- command line checks ------------------------------------------------------ */

enum smtp_line_fault
smtp_line_check(const char *line, size_t len)
{
	if (len < 2 || line[len - 2] != '\r' || line[len - 1] != '\n' ||
	    memchr(line, '\r', len - 2) != NULL ||
	    memchr(line, '\n', len - 1) != NULL)
		return SMTP_LINE_BARE_NEWLINE;
	if (memchr(line, '\0', len) != NULL)
		return SMTP_LINE_NUL;
	return SMTP_LINE_OK;
}

bool
smtp_rcpt_domain(const char *arg, size_t len, char *out, size_t cap)
{
	const char *lt = memchr(arg, '<', len), *gt, *at = NULL;
	size_t n;

	if (lt == NULL)
		return false;
	gt = memchr(lt, '>', len - (size_t)(lt - arg));
	if (gt == NULL)
		return false;
	for (const char *p = lt + 1; p < gt; p++)
		if (*p == '@')
			at = p;
	if (at == NULL)
		return false;
	n = (size_t)(gt - at - 1);
	if (n == 0 || n >= cap)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)at[1 + i];
		if (c <= ' ' || c == '"' || c == '\\')
			return false;
		out[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
	}
	if (out[n - 1] == '.')
		n--;
	out[n] = '\0';
	return n > 0;
}
