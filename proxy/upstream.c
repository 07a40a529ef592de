/*
 * upstream: negotiate the server leg before the client sees a byte.
 *
 * One reply is expected per state; up_on_reply() is the strategy function
 * that each complete reply goes through. Every exit goes through
 * up_finish(), which calls the owner's done() exactly once.
 */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "starttlsd/addr.h"
#include "starttlsd/metrics.h"
#include "starttlsd/ownport.h"
#include "starttlsd/policy.h"
#include "starttlsd/upstream.h"

static int up_conn_cb(struct conn *c, enum conn_event ev, void *arg);

static void
ownport_set(struct upstream *up, bool on)
{
	if (up->locallen != 0)
		ownport_publish(&up->local, &up->dst, on);
}

const char *
up_state_str(enum up_state s)
{
	switch (s) {
	case UP_IDLE: return "idle";
	case UP_CONNECT: return "connect";
	case UP_GREETING: return "greeting";
	case UP_EHLO: return "ehlo";
	case UP_HELO: return "helo";
	case UP_STARTTLS: return "starttls";
	case UP_HANDSHAKE: return "handshake";
	case UP_READY: return "ready";
	case UP_DONE: return "done";
	}
	return "unknown";
}

const char *
up_action_str(enum up_action a)
{
	switch (a) {
	case UP_ACT_NONE: return "none";
	case UP_ACT_UPGRADED: return "upgraded";
	case UP_ACT_PLAINTEXT: return "plaintext";
	case UP_ACT_FALLBACK: return "fallback";
	}
	return "unknown";
}

/* May the negotiation go from one state to the other? */
static bool
up_step_ok(enum up_state from, enum up_state to)
{
	switch (to) {
	case UP_IDLE: return false;
	case UP_CONNECT: /* first, or again without STARTTLS (fallback) */
		return from == UP_IDLE || from == UP_STARTTLS ||
		    from == UP_HANDSHAKE;
	case UP_GREETING: return from == UP_CONNECT;
	case UP_EHLO: return from == UP_GREETING;
	case UP_HELO: return from == UP_EHLO;
	case UP_STARTTLS: return from == UP_EHLO;
	case UP_HANDSHAKE: return from == UP_STARTTLS;
	case UP_READY:
		return from == UP_EHLO || from == UP_HELO || from == UP_HANDSHAKE;
	case UP_DONE: return true; /* failure, refusal or cleanup, from anywhere */
	}
	return false;
}

/* The one place the state changes. */
static void
up_enter(struct upstream *up, enum up_state next)
{
	assert(up_step_ok(up->state, next));
	up->state = next;
}

static int
up_finish(struct upstream *up, enum up_result res, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
up_finish(struct upstream *up, enum up_result res, const char *fmt, ...)
{
	va_list ap;

	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(up->reason, sizeof(up->reason), fmt, ap);
		va_end(ap);
	}
	/* The header's promise: done() exactly once (conn.c's frames keep
	 * a cleaned-up conn from calling back into a finished upstream). */
	assert(up->magic == UP_MAGIC);
	assert(up->state != UP_READY && up->state != UP_DONE);
	if (res == UP_RES_READY) {
		up_enter(up, UP_READY);
		conn_timeout(up->conn, 0, false);
	} else {
		up_enter(up, UP_DONE);
		ownport_set(up, false);
		up->locallen = 0;
		conn_cleanup(up->conn);
	}
	return up->done(up, res, up->arg);
}

static int
up_send(struct upstream *up, const char *verb, const char *arg,
    enum up_state next, unsigned timeout)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "%s%s%s\r\n", verb,
	    arg ? " " : "", arg ? arg : "");

	if (n < 0 || (size_t)n >= sizeof(line) ||
	    conn_write(up->conn, line, (size_t)n) < 0)
		return up_finish(up, UP_RES_FAILED, "cannot send %s", verb);
	up_enter(up, next);
	conn_timeout(up->conn, timeout, false);
	return 0;
}

static int
up_connect(struct upstream *up)
{
	int r;

	ownport_connecting(&up->dst);
	r = conn_connect(up->conn, (struct sockaddr *)&up->dst, up->dstlen,
	    up->p->mark, up->p->transparent_source ?
	    (struct sockaddr *)&up->src : NULL, &up->mark_failed);
	if (r == 0) {
		/* The port is bound by connect(): remember it (loops). */
		up->locallen = sizeof(up->local);
		if (getsockname(up->conn->fd, (struct sockaddr *)&up->local,
		    &up->locallen) < 0)
			up->locallen = 0;
		ownport_set(up, true);
	}
	ownport_connecting(NULL);
	if (r < 0)
		return up_finish(up, UP_RES_FAILED, "%s", up->conn->errstr);
	up_enter(up, UP_CONNECT);
	conn_timeout(up->conn, up->p->connect_timeout, false);
	return 0;
}

/* Remember a policy outcome for the session's log. */
static void
up_alert(struct upstream *up, const struct policy_out *o, const char *detail)
{
	struct up_alert *a;

	if (!o->alert || up->nalerts == UP_MAX_ALERTS)
		return;
	a = &up->alerts[up->nalerts++];
	a->out = *o;
	snprintf(a->detail, sizeof(a->detail), "%s", detail ? detail : "");
}

/*
 * TLS is not to be had (sig). Ask the policy; remember the alert; block,
 * or go on as next says: continue on this connection, or reconnect.
 */
static int
up_tls_unavailable(struct upstream *up, enum policy_signal sig,
    const char *detail, bool reconnect)
{
	struct ev_loop *loop = up->conn->loop;
	struct policy_out o;

	snprintf(up->tls_error, sizeof(up->tls_error), "%s%s%s",
	    policy_signal_str(sig), detail ? ": " : "", detail ? detail : "");
	up->tls_sig = sig;
	policy_tls_unavailable(&up->pol, sig, &o);
	up_alert(up, &o, detail);
	if (o.block)
		return up_finish(up, UP_RES_BLOCKED, "%s", up->tls_error);
	if (!reconnect)
		return 1; /* go on, plaintext, on this connection */
	/*
	 * The connection's SMTP state can no longer be trusted (a half-done
	 * handshake, or a server that said something odd to STARTTLS): start
	 * again without STARTTLS (RFC 7435 fallback).
	 */
	ownport_set(up, false);
	up->locallen = 0;
	conn_cleanup(up->conn);
	conn_init(up->conn, loop, -1, up->p->bufmax, up_conn_cb, up);
	free(up->greeting);
	up->greeting = NULL;
	up->greeting_len = 0;
	up->attempt++;
	up->no_starttls = true;
	return up_connect(up);
}

static int
up_reconnect_plain(struct upstream *up, enum policy_signal sig,
    const char *detail)
{
	return up_tls_unavailable(up, sig, detail, true);
}

static int
keep_copy(char **dst, size_t *dst_len, const char *p, size_t n)
{
	free(*dst);
	if ((*dst = malloc(n)) == NULL)
		return -1;
	memcpy(*dst, p, n);
	*dst_len = n;
	return 0;
}

/* Did anything arrive after the STARTTLS 220 (response injection)? */
static bool
up_injected(struct upstream *up)
{
	char b;

	if (buf_len(&up->conn->in) > 0)
		return true;
	/* The server cannot speak TLS before our ClientHello. */
	return recv(up->conn->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

/* The server is ready for the client; record what we got. */
static int
up_ready(struct upstream *up, enum up_action act)
{
	up->action = act;
	return up_finish(up, UP_RES_READY, NULL);
}

static int
up_after_ehlo(struct upstream *up, const char *r, size_t rlen)
{
	int rc;

	smtp_caps_parse(r, rlen, &up->caps);
	up->esmtp = true;
	if (up->no_starttls)
		return up_ready(up, UP_ACT_FALLBACK);
	if (!up->caps.starttls) {
		rc = up_tls_unavailable(up, up->caps.starttls_masked ?
		    POLICY_SIG_STARTTLS_MASKED : POLICY_SIG_STARTTLS_MISSING,
		    NULL, false);
		if (rc <= 0)
			return rc;
		return up_ready(up, UP_ACT_PLAINTEXT);
	}
	return up_send(up, "STARTTLS", NULL, UP_STARTTLS, up->p->reply_timeout);
}

/* After the handshake: what the policy says about this TLS. */
static int
up_after_handshake(struct upstream *up)
{
	const char *names[POLICY_MAX_NAMES];
	struct policy_out outs[3];
	struct policy_tls t;
	size_t n;

	up->tls = true;
	tls_info_get(up->conn->ssl, &up->tls_info);
	metrics_handshake(m_tlsv_of(up->tls_info.version),
	    ev_time() - up->hs_start);
	t = (struct policy_tls){
		.tls = true,
		.version = up->tls_info.vnum,
		.verified = up->tls_info.verified,
		.spki = up->tls_info.has_spki ? up->tls_info.spki_raw : NULL,
		.names = names,
		.nnames = tls_info_names(&up->tls_info, names, POLICY_MAX_NAMES),
	};
	n = policy_after_handshake(&up->pol, &t, outs, 3);
	for (size_t i = 0; i < n; i++) {
		const char *d = outs[i].sig == POLICY_SIG_VERIFY_FAILED ?
		    up->tls_info.verify : NULL;
		up_alert(up, &outs[i], d);
		if (outs[i].block)
			return up_finish(up, UP_RES_BLOCKED, "%s%s%s",
			    policy_signal_str(outs[i].sig), d ? ": " : "",
			    d ? d : "");
	}
	/*
	 * No EHLO of our own after the handshake: the client's EHLO, which
	 * comes next over this connection, serves (RFC 3207 wants one after
	 * TLS, and its reply is relayed, STARTTLS filtered). A round trip
	 * less before every client's greeting. What the server offers after
	 * TLS is learnt from that reply (the session reads CHUNKING there).
	 */
	memset(&up->caps, 0, sizeof(up->caps));
	return up_ready(up, UP_ACT_UPGRADED);
}

/* One complete reply for the current state. */
static int
up_on_reply(struct upstream *up, const char *r, size_t rlen, int code)
{
	int cls = smtp_code_class(code);
	SSL *ssl;

	/*
	 * A 421 at any step reaches the client as the server said it. To
	 * STARTTLS it is a refusal of TLS as well (policy.md: alerted always;
	 * blocked where TLS is required), though never a reason to reconnect
	 * in plaintext: the server said it is closing.
	 */
	if (code == 421 && up->state == UP_STARTTLS) {
		int rc = up_tls_unavailable(up, POLICY_SIG_STARTTLS_REFUSED,
		    "421", false);
		if (rc <= 0)
			return rc;
	}
	if (code == 421 || (up->state == UP_GREETING && code != 220)) {
		if (cls != 4 && cls != 5)
			return up_finish(up, UP_RES_FAILED,
			    "unexpected greeting %d", code);
		if (keep_copy(&up->reply, &up->reply_len, r, rlen) < 0)
			return up_finish(up, UP_RES_FAILED, "out of memory");
		return up_finish(up, UP_RES_REFUSED, "server said %d at %s",
		    code, up_state_str(up->state));
	}
	switch (up->state) {
	case UP_GREETING:
		if (keep_copy(&up->greeting, &up->greeting_len, r, rlen) < 0)
			return up_finish(up, UP_RES_FAILED, "out of memory");
		return up_send(up, "EHLO", up->p->helo_name, UP_EHLO,
		    up->p->reply_timeout);
	case UP_EHLO:
		if (code == 250)
			return up_after_ehlo(up, r, rlen);
		/* No ESMTP: speak HELO, and there is no STARTTLS to be had. */
		if (!up->no_starttls) {
			char detail[48];
			int rc;
			snprintf(detail, sizeof(detail), "no ESMTP, EHLO got %d",
			    code);
			rc = up_tls_unavailable(up, POLICY_SIG_STARTTLS_MISSING,
			    detail, false);
			if (rc <= 0)
				return rc;
		}
		return up_send(up, "HELO", up->p->helo_name, UP_HELO,
		    up->p->reply_timeout);
	case UP_HELO:
		memset(&up->caps, 0, sizeof(up->caps));
		if (cls != 2)
			return up_finish(up, UP_RES_FAILED,
			    "server rejected EHLO and HELO (%d)", code);
		return up_ready(up, up->no_starttls ? UP_ACT_FALLBACK :
		    UP_ACT_PLAINTEXT);
	case UP_STARTTLS:
		if (code != 220) {
			char detail[32];
			snprintf(detail, sizeof(detail), "%d", code);
			/* Anything but 220, an error or a 354, is a refusal. */
			return up_reconnect_plain(up, POLICY_SIG_STARTTLS_REFUSED,
			    detail);
		}
		if (up_injected(up))
			return up_finish(up, UP_RES_INJECTION,
			    "response-injection");
		if ((ssl = tls_upstream_new(up->p->ctx, up->sni[0] ? up->sni : NULL,
		    up->dst_key)) == NULL)
			return up_finish(up, UP_RES_FAILED, "cannot create TLS state");
		up_enter(up, UP_HANDSHAKE);
		up->hs_start = ev_time();
		conn_start_tls(up->conn, ssl, false);
		conn_timeout(up->conn, up->p->tls_timeout, false);
		return 0;
	case UP_IDLE:
	case UP_CONNECT:
	case UP_HANDSHAKE:
	case UP_READY:
	case UP_DONE:
		break;
	}
	return up_finish(up, UP_RES_FAILED, "reply %d in state %s", code,
	    up_state_str(up->state));
}

static int
up_on_read(struct upstream *up)
{
	struct smtp_reply rep;
	struct buf *in = &up->conn->in;

	switch (smtp_reply_parse(buf_head(in), buf_len(in), up->p->max_line,
	    up->p->max_lines, &rep)) {
	case SMTP_PARSE_NEED_MORE:
		if (buf_full(in))
			return up_finish(up, UP_RES_FAILED, "reply too long");
		return 0;
	case SMTP_PARSE_ERROR:
		return up_finish(up, UP_RES_FAILED, "malformed reply in state %s",
		    up_state_str(up->state));
	case SMTP_PARSE_OK:
		break;
	}
	/*
	 * One command, one reply: bytes beyond it were never asked for. A
	 * server that runs ahead of the dialogue cannot be relayed faithfully.
	 */
	if (rep.len < buf_len(in) && up->state != UP_STARTTLS)
		return up_finish(up, UP_RES_FAILED,
		    "unexpected data after reply in state %s",
		    up_state_str(up->state));
	{
		/* The reply bytes stay valid until consumed below. */
		char *copy = malloc(rep.len);
		int rc;

		if (copy == NULL)
			return up_finish(up, UP_RES_FAILED, "out of memory");
		memcpy(copy, buf_head(in), rep.len);
		buf_consume(in, rep.len);
		rc = up_on_reply(up, copy, rep.len, rep.code);
		free(copy);
		return rc;
	}
}

static int
up_conn_cb(struct conn *c, enum conn_event ev, void *arg)
{
	struct upstream *up = arg;

	assert(up->magic == UP_MAGIC && c == up->conn);
	switch (ev) {
	case CONN_EV_CONNECTED:
		up_enter(up, UP_GREETING);
		conn_read(up->conn, true);
		conn_timeout(up->conn, up->p->greeting_timeout, false);
		return 0;
	case CONN_EV_READ:
		return up_on_read(up);
	case CONN_EV_TLS_DONE:
		return up_after_handshake(up);
	case CONN_EV_DRAINED:
		return 0;
	case CONN_EV_EOF:
		if (up->state == UP_HANDSHAKE)
			return up_reconnect_plain(up, POLICY_SIG_HANDSHAKE_FAILED,
			    "connection closed");
		return up_finish(up, UP_RES_FAILED,
		    "connection closed by server in state %s",
		    up_state_str(up->state));
	case CONN_EV_ERROR:
		if (up->state == UP_HANDSHAKE)
			return up_reconnect_plain(up, POLICY_SIG_HANDSHAKE_FAILED,
			    up->conn->errstr);
		return up_finish(up, UP_RES_FAILED, "%s in state %s",
		    up->conn->errstr, up_state_str(up->state));
	case CONN_EV_TIMEOUT:
		if (up->state == UP_HANDSHAKE)
			return up_reconnect_plain(up, POLICY_SIG_HANDSHAKE_FAILED,
			    "timeout");
		return up_finish(up, UP_RES_FAILED, "timeout in state %s",
		    up_state_str(up->state));
	}
	return 0;
}

void
up_init(struct upstream *up)
{
	memset(up, 0, sizeof(*up));
	up->magic = UP_MAGIC;
	up->state = UP_IDLE;
}

int
up_start(struct upstream *up, struct conn *conn, struct ev_loop *loop,
    const struct up_params *p, const struct policy_ctx *pol, const char *sni,
    const struct sockaddr *client, const struct sockaddr *dst,
    socklen_t dstlen, up_done_cb done, void *arg)
{
	up_init(up);
	if (sni == NULL)
		sni = p->sni;
	snprintf(up->sni, sizeof(up->sni), "%s", sni ? sni : "");
	up->conn = conn;
	up->p = p;
	up->pol = *pol;
	memcpy(&up->src, client, client->sa_family == AF_INET ?
	    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
	up->done = done;
	up->arg = arg;
	up->attempt = 1;
	memcpy(&up->dst, dst, dstlen);
	up->dstlen = dstlen;
	{
		char a[INET6_ADDRSTRLEN] = "";
		const void *ap = dst->sa_family == AF_INET ?
		    (const void *)&((const struct sockaddr_in *)(const void *)dst)->sin_addr :
		    (const void *)&((const struct sockaddr_in6 *)(const void *)dst)->sin6_addr;
		inet_ntop(dst->sa_family, ap, a, sizeof(a));
		/* A ticket is resumed only under the same name (and so policy). */
		snprintf(up->dst_key, sizeof(up->dst_key), "%s:%u%s%s", a,
		    addr_port(&up->dst), up->sni[0] ? "/" : "", up->sni);
	}
	conn_init(up->conn, loop, -1, p->bufmax, up_conn_cb, up);
	return up_connect(up);
}

char *
up_take_greeting(struct upstream *up, size_t *len)
{
	char *g = up->greeting;

	assert(up->state == UP_READY);
	*len = up->greeting_len;
	up->greeting = NULL;
	up->greeting_len = 0;
	return g;
}

void
up_cleanup(struct upstream *up)
{
	assert(up->magic == UP_MAGIC);
	ownport_set(up, false);
	up->locallen = 0;
	if (up->state != UP_READY && up->state != UP_IDLE &&
	    up->state != UP_DONE && up->conn != NULL)
		conn_set_cb(up->conn, NULL, NULL); /* the loan ends here */
	up->state = UP_DONE;
	free(up->greeting);
	free(up->reply);
	up->greeting = up->reply = NULL;
}
