/*
 * session: relay one client's SMTP session over the negotiated server leg.
 *
 * sess_pump() is the strategy function, re-run after every I/O event: it
 * moves server replies to the client (in command order, STARTTLS filtered
 * out of EHLO replies), then client bytes to the server (commands, DATA
 * bodies, BDAT chunks), then settles end-of-stream and timers. Buffers are
 * capped; when one leg's output is full the other leg's input is left
 * unread, which is the backpressure.
 *
 * Invariant: every 2xx/3xx the client sees was sent by the server; the
 * replies starttlsd makes itself are 4xx/5xx, and the 220 to STARTTLS on
 * the LAN leg, which concerns only that leg.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "starttlsd/log.h"
#include "starttlsd/session.h"
#include "starttlsd/smtp.h"

#define SESS_MAX_INFLIGHT 128
#define SESS_LINGER 5 /* seconds a finished session waits for the client to close */

enum sess_phase {
	SP_UPSTREAM,   /* negotiating the server leg; the client waits */
	SP_RELAY,
	SP_CLIENT_TLS, /* handshake on the LAN leg */
	SP_CLOSING,    /* last words to the client are being flushed */
};

enum cmode {
	CM_COMMAND,
	CM_DATA,      /* DATA body until CRLF.CRLF */
	CM_BDAT,      /* bdat_left raw bytes */
	CM_DISCARD,   /* rest of an overlong line */
	CM_AUTH,      /* the next line answers a 334 */
};

/* Replies starttlsd itself gives, never a 2xx/3xx to a mail command. */
enum local_reply {
	LR_NONE,
	LR_STARTTLS_454,
	LR_STARTTLS_220,
	LR_STARTTLS_AGAIN,
	LR_LINE_TOO_LONG,
	LR_BDAT_SYNTAX,
};

static const char *const local_text[] = {
	[LR_NONE] = "",
	[LR_STARTTLS_454] = "454 4.7.0 TLS not available on this leg (starttlsd encrypts the Internet leg)\r\n",
	[LR_STARTTLS_220] = "220 2.0.0 Ready to start TLS\r\n",
	[LR_STARTTLS_AGAIN] = "554 5.5.1 Error: TLS already active\r\n",
	[LR_LINE_TOO_LONG] = "500 5.5.2 Line too long\r\n",
	[LR_BDAT_SYNTAX] = "501 5.5.4 Syntax error in BDAT: closing, the chunk cannot be framed\r\n",
};

#define P_SYNC      0x01 /* the client parser waits for this reply */
#define P_DATA_END  0x02 /* the reply that accepts or rejects a DATA message */
#define P_BDAT_LAST 0x04
#define P_STARTTLS  0x08 /* LAN-leg TLS starts once this 220 is out */
#define P_CLOSE     0x10 /* end the session after this reply */

struct pend {
	uint8_t verb;  /* enum smtp_verb */
	uint8_t local; /* enum local_reply; LR_NONE: the server answers */
	uint8_t flags;
};

enum timer_kind { TK_OFF, TK_CLIENT, TK_REPLY, TK_DATA, TK_TLS, TK_CLOSING };

struct session {
	char id[17];
	struct ev_loop *loop;
	struct sess_env *env;
	enum sess_phase phase;
	struct conn client;
	struct upstream up;
	char client_str[64];
	char dst_str[64];
	ev_tstamp start;

	struct pend q[SESS_MAX_INFLIGHT];
	unsigned qhead, qlen;
	enum cmode mode;
	bool sync_wait;
	struct smtp_data data;
	uint64_t bdat_left;

	bool client_tls;
	struct tls_info client_tls_info;
	bool client_injection;
	bool client_eof, up_eof;
	bool relayed;              /* reached relay: "refused" otherwise */
	unsigned msgs;
	int prio;
	char reason[200];
	enum timer_kind ctk, utk;

	struct session *prev, *next;
};

static struct session *sess_list;
static unsigned sess_live;
static bool sess_draining;

static int sess_pump(struct session *s);

static const char drain_reply[] =
    "421 4.3.2 starttlsd: shutting down, try again later\r\n";

/* ---- env ------------------------------------------------------------------ */

struct sess_env *
sess_env_ref(struct sess_env *e)
{
	e->refs++;
	return e;
}

void
sess_env_unref(struct sess_env *e)
{
	if (e == NULL || --e->refs > 0)
		return;
	SSL_CTX_free(e->up_ctx);
	SSL_CTX_free(e->client_ctx);
	config_free(&e->cfg);
	free(e);
}

bool
sess_is_own_upstream(const struct sockaddr_storage *peer)
{
	for (const struct session *s = sess_list; s != NULL; s = s->next) {
		if (s->up.locallen == 0 || s->up.local.ss_family != peer->ss_family)
			continue;
		if (memcmp(&s->up.local, peer, s->up.locallen) == 0)
			return true;
	}
	return false;
}

unsigned
sess_count(void)
{
	return sess_live;
}

void
sess_addr_str(const struct sockaddr *sa, char *out, size_t cap)
{
	char a[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
		snprintf(out, cap, "[%s]:%u", a, ntohs(s6->sin6_port));
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
		snprintf(out, cap, "%s:%u", a, ntohs(s4->sin_port));
	} else {
		snprintf(out, cap, "unknown");
	}
}

/* ---- teardown --------------------------------------------------------------- */

static const char *
sess_action(const struct session *s)
{
	if (!s->relayed)
		return "refused";
	return up_action_str(s->up.action);
}

static void
sess_log(struct session *s)
{
	struct logline l;
	const struct tls_info *ti = &s->up.tls_info;

	log_begin(&l, "session");
	log_str(&l, "id", s->id);
	log_str(&l, "client", s->client_str);
	log_str(&l, "dst", s->dst_str);
	log_str(&l, "action", sess_action(s));
	/* tls, cipher and verify are always there, for dashboards. */
	log_str(&l, "tls", s->up.tls ? ti->version : "none");
	log_str(&l, "cipher", s->up.tls ? ti->cipher : "none");
	log_str(&l, "verify", s->up.tls ? ti->verify : "none");
	if (s->up.tls) {
		log_str(&l, "peer_subject", ti->subject);
		log_str(&l, "peer_issuer", ti->issuer);
		log_str(&l, "spki_sha256", ti->spki_sha256);
	}
	if (s->up.tls_error[0] != '\0')
		log_str(&l, "tls_error", s->up.tls_error);
	if (s->client_tls)
		log_str(&l, "client_tls", s->client_tls_info.version);
	if (s->client_injection)
		log_str(&l, "client_injection", "discarded");
	if (s->up.mark_failed)
		log_str(&l, "mark", "failed");
	log_u64(&l, "msgs", s->msgs);
	log_u64(&l, "bytes_up", s->client.bytes_read);
	log_u64(&l, "bytes_down", s->client.bytes_written);
	log_int(&l, "duration_ms",
	    (long long)((ev_now(s->loop) - s->start) * 1000.0));
	log_str(&l, "reason", s->reason[0] ? s->reason : "unknown");
	log_emit(&l, s->prio);
}

/* The one teardown path. Always returns -1: s is gone. */
static int
sess_close(struct session *s)
{
	sess_log(s);
	conn_cleanup(&s->client);
	up_cleanup(&s->up);
	if (s->prev)
		s->prev->next = s->next;
	else
		sess_list = s->next;
	if (s->next)
		s->next->prev = s->prev;
	sess_live--;
	sess_env_unref(s->env);
	free(s);
	return -1;
}

static void
sess_reason(struct session *s, const char *reason)
{
	if (s->reason[0] == '\0')
		snprintf(s->reason, sizeof(s->reason), "%s", reason);
}

/*
 * Stop relaying: close the server leg, flush what the client is owed (plus
 * an optional last reply), half-close, and linger until the client closes
 * too, discarding what it still sends: closing a socket with unread input
 * makes the kernel send a RST, which can destroy our last reply in flight.
 * Returns -1 if s is gone already.
 */
static int
sess_finish(struct session *s, const char *reason, const char *last_reply)
{
	sess_reason(s, reason);
	if (s->phase == SP_CLOSING)
		return 0;
	s->phase = SP_CLOSING;
	conn_cleanup(&s->up.conn);
	if (s->client.state != CONN_S_OPEN)
		return sess_close(s);
	if (last_reply != NULL)
		conn_write(&s->client, last_reply, strlen(last_reply));
	if (s->client_eof && buf_len(&s->client.out) == 0)
		return sess_close(s);
	buf_clear(&s->client.in);
	conn_shutdown_write(&s->client);
	conn_read(&s->client, true);
	conn_timeout(&s->client, SESS_LINGER, false);
	s->ctk = TK_CLOSING;
	return 0;
}

/* In SP_CLOSING: done once our output is out and the client has closed. */
static int
sess_linger(struct session *s)
{
	buf_clear(&s->client.in);
	if (buf_len(&s->client.out) == 0 && s->client_eof)
		return sess_close(s);
	conn_read(&s->client, true);
	return 0;
}

/* The server leg broke: the client gets a temporary failure, never a 250. */
static int
sess_up_failed(struct session *s, const char *why)
{
	char r[256];

	snprintf(s->reason, sizeof(s->reason), "server: %s", why);
	snprintf(r, sizeof(r), "421 4.4.2 starttlsd: connection to %s lost (%s)\r\n",
	    s->dst_str, why);
	s->prio = LOG_WARNING;
	return sess_finish(s, s->reason, r);
}

/* ---- the reply queue ---------------------------------------------------------- */

static struct pend *
q_head(struct session *s)
{
	return s->qlen ? &s->q[s->qhead] : NULL;
}

static bool
q_full(const struct session *s)
{
	return s->qlen == SESS_MAX_INFLIGHT;
}

static void
q_push(struct session *s, enum smtp_verb verb, enum local_reply local,
    uint8_t flags)
{
	struct pend *p = &s->q[(s->qhead + s->qlen) % SESS_MAX_INFLIGHT];

	p->verb = (uint8_t)verb;
	p->local = (uint8_t)local;
	p->flags = flags;
	s->qlen++;
	if (flags & P_SYNC)
		s->sync_wait = true;
}

static void
q_pop(struct session *s)
{
	if (s->q[s->qhead].flags & P_SYNC)
		s->sync_wait = false;
	s->qhead = (s->qhead + 1) % SESS_MAX_INFLIGHT;
	s->qlen--;
}

/* Start TLS on the LAN leg; whatever the client sent after STARTTLS goes. */
static int
sess_client_starttls(struct session *s)
{
	SSL *ssl = SSL_new(s->env->client_ctx);

	if (ssl == NULL)
		return sess_finish(s, "cannot create client TLS state", NULL);
	if (buf_len(&s->client.in) > 0) {
		/* Command injection after STARTTLS (CVE-2011-0411 class). */
		s->client_injection = true;
		s->prio = LOG_WARNING;
	}
	s->phase = SP_CLIENT_TLS;
	conn_start_tls(&s->client, ssl, true);
	return 0;
}

/* Hand out local replies that reached the head of the queue. */
static int
sess_flush_local(struct session *s)
{
	struct pend *p;

	while ((p = q_head(s)) != NULL && p->local != LR_NONE) {
		const char *t = local_text[p->local];
		size_t n = strlen(t);
		uint8_t flags = p->flags;

		if (conn_out_room(&s->client) < n)
			return 0; /* wait for DRAINED */
		conn_write(&s->client, t, n);
		q_pop(s);
		if (flags & P_CLOSE)
			return sess_finish(s, "client protocol error", NULL);
		if (flags & P_STARTTLS)
			return sess_client_starttls(s);
	}
	return 0;
}

/* ---- server -> client ------------------------------------------------------------ */

static int
sess_deliver(struct session *s, const struct pend *p, const char *r,
    size_t rlen, int code)
{
	if (p->verb == SMTP_V_EHLO && code == 250) {
		bool add = s->env->client_ctx != NULL && !s->client_tls;
		size_t cap = rlen + 32;
		char *f = malloc(cap);
		ssize_t n;

		if (f == NULL)
			return sess_up_failed(s, "out of memory");
		n = smtp_ehlo_filter(r, rlen, add, f, cap, NULL);
		if (n < 0) {
			free(f);
			return sess_up_failed(s, "malformed EHLO reply");
		}
		conn_write(&s->client, f, (size_t)n);
		free(f);
		return 0;
	}
	conn_write(&s->client, r, rlen);
	return 0;
}

static int
sess_relay_replies(struct session *s)
{
	struct buf *in = &s->up.conn.in;
	struct smtp_reply rep;
	bool consumed = false;

	for (;;) {
		struct pend *p;
		struct pend cur;

		if (sess_flush_local(s) < 0)
			return -1;
		if (s->phase != SP_RELAY || buf_len(in) == 0)
			break;
		switch (smtp_reply_parse(buf_head(in), buf_len(in),
		    s->env->up.max_line, s->env->up.max_lines, &rep)) {
		case SMTP_PARSE_NEED_MORE:
			if (buf_full(in))
				return sess_up_failed(s, "reply too long");
			goto out;
		case SMTP_PARSE_ERROR:
			return sess_up_failed(s, "malformed reply");
		case SMTP_PARSE_OK:
			break;
		}
		/* An EHLO reply may grow by one STARTTLS line. */
		if (conn_out_room(&s->client) < rep.len + 32)
			goto out;
		if ((p = q_head(s)) == NULL) {
			/* Unasked: only a 421 (server closing) is legitimate. */
			if (rep.code == 421) {
				conn_write(&s->client, buf_head(in), rep.len);
				buf_consume(in, rep.len);
				return sess_finish(s, "server said 421", NULL);
			}
			return sess_up_failed(s, "unexpected reply");
		}
		cur = *p;
		if (sess_deliver(s, &cur, buf_head(in), rep.len, rep.code) < 0)
			return -1;
		buf_consume(in, rep.len);
		consumed = true;
		q_pop(s);

		if (cur.verb == SMTP_V_DATA && !(cur.flags & P_DATA_END) &&
		    rep.code == 354) {
			s->mode = CM_DATA;
			smtp_data_init(&s->data);
		}
		if (cur.verb == SMTP_V_AUTH && rep.code == 334)
			s->mode = CM_AUTH;
		if ((cur.flags & (P_DATA_END | P_BDAT_LAST)) &&
		    smtp_code_class(rep.code) == 2)
			s->msgs++;
		if (cur.verb == SMTP_V_QUIT)
			return sess_finish(s, "quit", NULL);
		if (rep.code == 421)
			return sess_finish(s, "server said 421", NULL);
	}
out:
	if (consumed)
		conn_read(&s->up.conn, true);
	return 0;
}

/* ---- client -> server ------------------------------------------------------------- */

static bool
sess_forward(struct session *s, const char *p, size_t n)
{
	return conn_write(&s->up.conn, p, n) == 0;
}

/* One complete command line (LF included). Returns -1 if s is gone. */
static int
sess_command(struct session *s, const char *line, size_t n)
{
	struct smtp_cmd cmd;
	int rc = smtp_cmd_parse(line, n, &cmd);

	/*
	 * Shutting down: a session between transactions may still say QUIT
	 * and get the server's 221; anything else ends it with a 421.
	 */
	if (sess_draining && s->qlen == 0 && cmd.verb != SMTP_V_QUIT)
		return sess_finish(s, "shutdown", drain_reply);
	switch (cmd.verb) {
	case SMTP_V_STARTTLS:
		if (s->client_tls)
			q_push(s, cmd.verb, LR_STARTTLS_AGAIN, 0);
		else if (s->env->client_ctx != NULL)
			q_push(s, cmd.verb, LR_STARTTLS_220, P_SYNC | P_STARTTLS);
		else
			q_push(s, cmd.verb, LR_STARTTLS_454, 0);
		return 0;
	case SMTP_V_BDAT:
		if (rc < 0) {
			q_push(s, cmd.verb, LR_BDAT_SYNTAX, P_SYNC | P_CLOSE);
			return 0;
		}
		sess_forward(s, line, n);
		q_push(s, cmd.verb, LR_NONE, cmd.bdat_last ? P_BDAT_LAST : 0);
		if (cmd.bdat_size > 0) {
			s->mode = CM_BDAT;
			s->bdat_left = cmd.bdat_size;
		}
		return 0;
	case SMTP_V_DATA:
	case SMTP_V_AUTH:
	case SMTP_V_QUIT:
		/* What follows depends on the reply: wait for it. */
		sess_forward(s, line, n);
		q_push(s, cmd.verb, LR_NONE, P_SYNC);
		return 0;
	default:
		sess_forward(s, line, n);
		q_push(s, cmd.verb, LR_NONE, 0);
		return 0;
	}
}

static int
sess_relay_client(struct session *s)
{
	struct buf *in = &s->client.in;
	size_t maxline = s->env->cfg.max_line_length;
	bool consumed = false;

	while (s->phase == SP_RELAY && !s->sync_wait && buf_len(in) > 0) {
		const char *h = buf_head(in);
		size_t len = buf_len(in), room = conn_out_room(&s->up.conn);
		size_t n;
		bool done;

		switch (s->mode) {
		case CM_DATA:
			if (room == 0 || q_full(s))
				goto out;
			n = smtp_data_scan(&s->data, h, len < room ? len : room,
			    &done);
			sess_forward(s, h, n);
			buf_consume(in, n);
			consumed = true;
			if (done) {
				s->mode = CM_COMMAND;
				q_push(s, SMTP_V_DATA, LR_NONE, P_DATA_END);
			}
			continue;
		case CM_BDAT:
			if (room == 0)
				goto out;
			n = len < room ? len : room;
			if (n > s->bdat_left)
				n = (size_t)s->bdat_left;
			sess_forward(s, h, n);
			buf_consume(in, n);
			consumed = true;
			if ((s->bdat_left -= n) == 0)
				s->mode = CM_COMMAND;
			continue;
		case CM_DISCARD:
			n = smtp_line_len(h, len);
			buf_consume(in, n ? n : len);
			consumed = true;
			if (n)
				s->mode = CM_COMMAND;
			continue;
		case CM_COMMAND:
		case CM_AUTH:
			break;
		}
		if (q_full(s))
			goto out;
		n = smtp_line_len(h, len);
		if (n == 0 || n > maxline) {
			if (n == 0 && len <= maxline)
				goto out; /* incomplete line */
			/* Overlong: refuse it, drop it up to its end. */
			q_push(s, SMTP_V_UNKNOWN, LR_LINE_TOO_LONG, 0);
			s->mode = n == 0 ? CM_DISCARD : s->mode;
			buf_consume(in, n ? n : len);
			consumed = true;
			continue;
		}
		if (room < n)
			goto out;
		if (s->mode == CM_AUTH) {
			/* A SASL response line, not a command. */
			s->mode = CM_COMMAND;
			sess_forward(s, h, n);
			q_push(s, SMTP_V_AUTH, LR_NONE, P_SYNC);
		} else if (sess_command(s, h, n) < 0) {
			return -1;
		}
		buf_consume(in, n);
		consumed = true;
	}
out:
	if (consumed && s->phase == SP_RELAY)
		conn_read(&s->client, true);
	return 0;
}

/* ---- timers --------------------------------------------------------------------- */

static void
sess_timers(struct session *s)
{
	const struct config *cfg = &s->env->cfg;
	enum timer_kind ck = TK_OFF, uk = TK_OFF;
	const struct pend *p = q_head(s);

	if (s->phase == SP_CLIENT_TLS) {
		ck = TK_TLS;
	} else if (s->phase == SP_RELAY) {
		if (s->qlen == 0 || buf_len(&s->client.out) > 0)
			ck = TK_CLIENT;
		if (p != NULL && p->local == LR_NONE)
			uk = (p->flags & (P_DATA_END | P_BDAT_LAST)) ? TK_DATA :
			    TK_REPLY;
		else if (buf_len(&s->up.conn.out) > 0)
			uk = TK_REPLY;
	}
	if (ck != s->ctk) {
		s->ctk = ck;
		conn_timeout(&s->client, ck == TK_TLS ? cfg->tls_timeout :
		    ck == TK_CLIENT ? cfg->client_timeout : 0, ck == TK_CLIENT);
	}
	if (uk != s->utk) {
		s->utk = uk;
		conn_timeout(&s->up.conn, uk == TK_DATA ? cfg->data_timeout :
		    uk == TK_REPLY ? cfg->reply_timeout : 0, true);
	}
	/* An idle session keeps no buffer memory. */
	conn_trim(&s->client);
	conn_trim(&s->up.conn);
}

/* ---- the strategy function ---------------------------------------------------------- */

static bool
sess_at_boundary(const struct session *s)
{
	return s->phase == SP_RELAY && s->qlen == 0 && s->mode == CM_COMMAND &&
	    buf_len(&s->client.in) == 0;
}

static int
sess_pump(struct session *s)
{
	if (s->phase != SP_RELAY)
		return 0;
	if (sess_relay_replies(s) < 0)
		return -1;
	if (s->phase != SP_RELAY)
		return 0;
	if (sess_relay_client(s) < 0)
		return -1;
	/* Local replies queued by the client's commands may be due now. */
	if (sess_relay_replies(s) < 0)
		return -1;
	if (s->phase != SP_RELAY)
		return 0;

	if (s->up_eof && buf_len(&s->up.conn.in) == 0)
		return sess_up_failed(s, "connection closed by server");
	if (s->client_eof) {
		if (s->mode == CM_DATA || s->mode == CM_BDAT) {
			/* Never let a cut-off message be completed. */
			s->prio = LOG_WARNING;
			return sess_finish(s, "client closed during message", NULL);
		}
		if (s->qlen == 0)
			return sess_finish(s, "client closed", NULL);
	}
	sess_timers(s);
	return 0;
}

/* ---- conn callbacks ------------------------------------------------------------------- */

static int
sess_client_cb(struct conn *c, enum conn_event ev, void *arg)
{
	struct session *s = arg;
	char why[200];

	(void)c;
	switch (ev) {
	case CONN_EV_READ:
	case CONN_EV_DRAINED:
		if (s->phase == SP_CLOSING)
			return sess_linger(s);
		return sess_pump(s);
	case CONN_EV_EOF:
		s->client_eof = true;
		if (s->phase == SP_CLOSING)
			return sess_linger(s);
		if (s->phase == SP_UPSTREAM || s->phase == SP_CLIENT_TLS)
			return sess_finish(s, "client closed", NULL);
		return sess_pump(s);
	case CONN_EV_ERROR:
		snprintf(why, sizeof(why), "client: %s", s->client.errstr);
		sess_reason(s, why);
		return sess_close(s);
	case CONN_EV_TIMEOUT:
		if (s->phase == SP_CLOSING)
			return sess_close(s);
		return sess_finish(s, s->phase == SP_CLIENT_TLS ?
		    "client TLS handshake timeout" : "client timeout",
		    s->phase == SP_CLIENT_TLS ? NULL :
		    "421 4.4.2 starttlsd: timeout exceeded, closing\r\n");
	case CONN_EV_TLS_DONE:
		s->client_tls = true;
		tls_info_get(s->client.ssl, &s->client_tls_info);
		s->phase = SP_RELAY;
		conn_read(&s->client, true);
		return sess_pump(s);
	case CONN_EV_CONNECTED:
		return 0;
	}
	return 0;
}

static int
sess_up_cb(struct conn *c, enum conn_event ev, void *arg)
{
	struct session *s = arg;

	(void)c;
	switch (ev) {
	case CONN_EV_READ:
	case CONN_EV_DRAINED:
		return sess_pump(s);
	case CONN_EV_EOF:
		s->up_eof = true;
		return sess_pump(s);
	case CONN_EV_ERROR:
		return sess_up_failed(s, s->up.conn.errstr);
	case CONN_EV_TIMEOUT:
		return sess_up_failed(s, s->utk == TK_DATA ?
		    "timeout waiting for the end-of-data reply" :
		    "timeout waiting for a reply");
	case CONN_EV_CONNECTED:
	case CONN_EV_TLS_DONE:
		return 0;
	}
	return 0;
}

/* The server leg is negotiated (or not). */
static int
sess_up_done(struct upstream *up, enum up_result res, void *arg)
{
	struct session *s = arg;
	char r[300];

	switch (res) {
	case UP_RES_READY:
		if (sess_draining)
			return sess_finish(s, "shutdown", drain_reply);
		s->relayed = true;
		s->phase = SP_RELAY;
		up->conn.cb = sess_up_cb;
		up->conn.arg = s;
		conn_write(&s->client, up->greeting, up->greeting_len);
		free(up->greeting);
		up->greeting = NULL;
		if (up->action != UP_ACT_UPGRADED)
			s->prio = LOG_NOTICE;
		conn_read(&s->up.conn, true);
		conn_read(&s->client, true);
		return sess_pump(s);
	case UP_RES_REFUSED:
		s->prio = LOG_NOTICE;
		snprintf(r, sizeof(r), "%s", up->reason);
		conn_write(&s->client, up->reply, up->reply_len);
		return sess_finish(s, r, NULL);
	case UP_RES_FAILED:
		s->prio = LOG_WARNING;
		if (strcmp(up->reason, "response-injection") == 0) {
			snprintf(r, sizeof(r), "421 4.7.0 starttlsd: %s: "
			    "STARTTLS response injection, session aborted\r\n",
			    s->dst_str);
		} else {
			snprintf(r, sizeof(r), "421 4.4.2 starttlsd: %s: %s\r\n",
			    s->dst_str, up->reason);
		}
		return sess_finish(s, up->reason, r);
	}
	return 0;
}

/* ---- start, drain ------------------------------------------------------------------------- */

void
sess_start(struct ev_loop *loop, struct sess_env *env, int fd,
    const struct sockaddr *client, const struct sockaddr *dst,
    socklen_t dstlen, const char *refuse)
{
	struct session *s = calloc(1, sizeof(*s));
	uint8_t rnd[8];

	if (s == NULL) {
		log_msg(LOG_ERR, "error", "session: out of memory");
		close(fd);
		return;
	}
	s->loop = loop;
	s->env = sess_env_ref(env);
	s->start = ev_now(loop);
	s->prio = LOG_INFO;
	RAND_bytes(rnd, sizeof(rnd));
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(s->id + 2 * i, 3, "%02x", rnd[i]);
	sess_addr_str(client, s->client_str, sizeof(s->client_str));
	if (env->upstream_len > 0) {
		dst = (const struct sockaddr *)&env->upstream_addr;
		dstlen = env->upstream_len;
	}
	sess_addr_str(dst, s->dst_str, sizeof(s->dst_str));
	conn_init(&s->client, loop, fd, env->cfg.buffer_size, sess_client_cb, s);
	s->up.state = UP_DONE;
	s->up.conn.fd = -1;
	s->up.conn.loop = loop;
	s->next = sess_list;
	if (sess_list)
		sess_list->prev = s;
	sess_list = s;
	sess_live++;

	if (refuse != NULL) {
		char r[200];
		s->prio = LOG_WARNING;
		snprintf(r, sizeof(r), "421 %s starttlsd: %s, try again later\r\n",
		    strcmp(refuse, "loop") == 0 ? "4.4.6" : "4.3.2", refuse);
		sess_finish(s, refuse, r);
		return;
	}
	s->phase = SP_UPSTREAM;
	/* Watch the client for an early close; its bytes wait in the buffer. */
	conn_read(&s->client, true);
	if (up_start(&s->up, loop, &env->up, dst, dstlen, sess_up_done, s) < 0)
		return; /* done() ran and closed the session */
}

void
sess_drain(void)
{
	struct session *s, *next;

	sess_draining = true;
	for (s = sess_list; s != NULL; s = next) {
		next = s->next;
		if (sess_at_boundary(s))
			sess_finish(s, "shutdown", drain_reply);
	}
}

void
sess_close_all(const char *reason)
{
	struct session *s, *next;

	for (s = sess_list; s != NULL; s = next) {
		next = s->next;
		if (s->phase == SP_CLOSING) {
			sess_close(s);
			continue;
		}
		sess_reason(s, reason);
		if (s->client.state == CONN_S_OPEN && s->mode == CM_COMMAND)
			conn_write(&s->client, drain_reply, strlen(drain_reply));
		sess_close(s);
	}
}
