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
#include <assert.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/mman.h>

#include <openssl/rand.h>

#include "starttlsd/addr.h"
#include "starttlsd/dane.h"
#include "starttlsd/domainpol.h"
#include "starttlsd/hash.h"
#include "starttlsd/log.h"
#include "starttlsd/metrics.h"
#include "starttlsd/pdclient.h"
#include "starttlsd/tlsrpt.h"
#include "starttlsd/tls.h"
#include "starttlsd/session.h"
#include "starttlsd/smtp.h"
#include "starttlsd/txn.h"
#include "starttlsd/upcache.h"

#define SESS_MAX_INFLIGHT 128
#define SESS_BODY_MIN 1024 /* message bytes per client_timeout, at least */
#define SESS_LINGER 5 /* seconds a finished session waits for the client to close */

enum sess_phase {
	SP_START,      /* accepted, nothing decided yet */
	SP_UPSTREAM,   /* negotiating the server leg; the client waits */
	SP_RELAY,
	SP_CLIENT_TLS, /* handshake on the LAN leg */
	SP_CLOSING,    /* last words to the client are being flushed */
};

enum cmode {
	CM_COMMAND,
	CM_DATA,      /* DATA body until CRLF.CRLF */
	CM_BDAT,      /* bdat_left raw bytes */
	CM_BDAT_SKIP, /* bdat_left raw bytes of a BDAT refused here: dropped */
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
	LR_RCPT_TLS,
	LR_RCPT_DANE,
	LR_RCPT_STS,
	LR_DATA_NO_RCPT,
	LR_TOO_MANY_RCPT,
	LR_BARE_NEWLINE,
	LR_NUL_IN_LINE,
	LR_BDAT_NOT_OFFERED,
	LR_BDAT_NO_RCPT,
	LR_QUIT_221,
};

static const char *const local_text[] = {
	[LR_NONE] = "",
	[LR_STARTTLS_454] = "454 4.7.0 TLS not available on this leg (starttlsd encrypts the Internet leg)\r\n",
	[LR_STARTTLS_220] = "220 2.0.0 Ready to start TLS\r\n",
	[LR_STARTTLS_AGAIN] = "554 5.5.1 Error: TLS already active\r\n",
	[LR_LINE_TOO_LONG] = "500 5.5.2 Line too long\r\n",
	[LR_BDAT_SYNTAX] = "501 5.5.4 Syntax error in BDAT: closing, the chunk cannot be framed\r\n",
	[LR_RCPT_TLS] = "450 4.7.0 starttlsd: TLS to this recipient's domain is required but not available, try again later\r\n",
	[LR_RCPT_DANE] = "450 4.7.5 starttlsd: this recipient's domain publishes DANE (TLSA) records this server does not satisfy, or they could not be checked, try again later\r\n",
	[LR_RCPT_STS] = "450 4.7.5 starttlsd: this recipient's domain has an MTA-STS policy this server does not satisfy, try again later\r\n",
	[LR_DATA_NO_RCPT] = "451 4.7.0 starttlsd: no recipient may be sent without TLS, try again later\r\n",
	[LR_TOO_MANY_RCPT] = "452 4.5.3 Error: too many recipients\r\n",
	[LR_BARE_NEWLINE] = "500 5.5.2 Error: bare <CR> or <LF> in a command line\r\n",
	[LR_NUL_IN_LINE] = "500 5.5.2 Error: NUL character in a command line\r\n",
	[LR_BDAT_NOT_OFFERED] = "502 5.5.1 starttlsd: BDAT refused: the server did not offer CHUNKING, its chunk is discarded\r\n",
	[LR_QUIT_221] = "221 2.0.0 Bye\r\n",
	[LR_BDAT_NO_RCPT] = "451 4.7.0 starttlsd: no recipient may be sent without TLS, try again later (chunk discarded)\r\n",
};

#define P_SYNC      0x01 /* the client parser waits for this reply */
#define P_DATA_END  0x02 /* the reply that accepts or rejects a DATA message */
#define P_BDAT_LAST 0x04
#define P_STARTTLS  0x08 /* LAN-leg TLS starts once this 220 is out */
#define P_CLOSE     0x10 /* end the session after this reply */
#define P_PARK      0x20 /* QUIT answered here: park the server connection */

struct pend {
	uint8_t verb;  /* enum smtp_verb */
	uint8_t local; /* enum local_reply; LR_NONE: the server answers */
	uint8_t flags;
	uint8_t rcpt;  /* RCPT: 1 + slot in txn, 0: none */
	uint8_t gen;   /* end of a message: its transaction */
};

#define SESS_ALERTED 8      /* domains alerted once per session */
#define SESS_ADDR_WAIT_MS 2000 /* PD_ADDR is answered from memory: a short wait */
#define SESS_AGAIN 1        /* a command handler: not consumed, wait (policyd) */
#define SESS_DV 16          /* recipient domains' DANE/MTA-STS verdicts kept per session */

/* The strongest policy that applied to a session (the session line's policy). */
enum sess_pol { SPOL_NONE, SPOL_PIN, SPOL_FILE, SPOL_STS, SPOL_DANE };

static const char *
sess_pol_str(enum sess_pol p)
{
	switch (p) {
	case SPOL_NONE: return "none";
	case SPOL_PIN: return "pin";
	case SPOL_FILE: return "policy-file";
	case SPOL_STS: return "mta-sts";
	case SPOL_DANE: return "dane";
	}
	return "none";
}
#define SESS_RDOM_CHARS 400 /* rcpt_domains on the session line, at most */
#define SESS_RDOM_SEEN 32   /* distinct recipient domains told apart */

/*
 * The distinct recipient domains the server accepted a RCPT of, for the
 * session line (rcpt_domains, rcpt_domains_omitted). Allocated at the
 * first accepted RCPT.
 */
struct sess_rdoms {
	char list[SESS_RDOM_CHARS]; /* "a.example,b.example" */
	size_t len;
	uint32_t seen[SESS_RDOM_SEEN];
	unsigned nseen;
	unsigned omitted;           /* did not fit the list, or past SEEN */
	unsigned beyond;            /* past SEEN (repeats not told apart) */
};

/*
 * What a leg's timer waits for. Deadlines (a command, a reply) are not
 * extended by bytes trickling in, so a peer sending one byte every few
 * seconds is timed out all the same (slowloris); bulk transfer (a message
 * body either way) is, as long as it moves.
 */
enum timer_kind {
	TK_OFF,
	TK_CLIENT,      /* a command (or reading our replies): deadline */
	TK_CLIENT_BODY, /* message content from the client: progress */
	TK_REPLY,       /* a server reply: deadline */
	TK_UP_WRITE,    /* the server taking message content: progress */
	TK_DATA,        /* the reply to the end of a message: deadline */
	TK_TLS,
	TK_CLOSING,
};

#define SESS_MAGIC 0x73657373u /* "sess": reached through conn's void *arg */

struct session {
	uint32_t magic;
	char id[17];
	struct ev_loop *loop;
	struct sess_env *env;
	enum sess_phase phase;
	struct conn client;
	struct conn *server;       /* owned (NULL once parked); lent to up
	                              while it negotiates */
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
	/*
	 * The server's last EHLO reply to the client listed CHUNKING: only
	 * then may BDAT and its chunk reach it. A server without CHUNKING
	 * would read the chunk as commands, which we relayed as data: our
	 * view of the session and the server's would diverge (smuggling).
	 */
	bool chunking;
	bool bdat_alerted;

	bool client_tls;
	struct tls_info client_tls_info;
	bool client_injection;
	bool client_eof, up_eof;
	bool relayed;              /* reached relay: "refused" otherwise */
	bool blocked;              /* refused by policy */
	bool counted;              /* in the shared session counts */
	struct sockaddr_storage dst;
	struct sockaddr_storage client_addr;
	unsigned errors;           /* 4xx/5xx replies the client got */
	struct txn txn;            /* the mail transaction, as we see it */
	struct sess_rdoms *rdoms;  /* NULL until a RCPT is accepted */

	/* The server connection, for reuse (upcache.h). */
	char *greeting;            /* the server's 220, kept for the next client */
	size_t greeting_len;
	struct policy_ctx facts;   /* the policy facts of the destination */
	ev_tstamp conn_born;       /* when the server connection was opened */
	unsigned conn_sessions;    /* client sessions it carried, this one too */
	bool reused;               /* taken from the cache */
	bool unparkable;           /* server-side state we cannot vouch for */
	bool mail_open;            /* a transaction is open on the server */
	/*
	 * A reused connection, until its first reply: the client's first
	 * command, sent again over a fresh connection if the parked one turns
	 * out dead (closed, 421, reset): the client never notices.
	 */
	char *first_cmd;
	size_t first_len;
	bool first_wait;
	bool retrying;             /* that fresh connection is being made */
	uint32_t alerted[SESS_ALERTED];
	size_t nalerted;
	unsigned alerts;

	/*
	 * DANE and MTA-STS (domainpol.h). A RCPT of a domain not yet judged
	 * in this session asks policyd (pdclient.h) and the client's input
	 * waits, in order, until the answer; before dialling, PD_ADDR says
	 * what is known of the address (SNI, a learned DANE RRset).
	 */
	uint32_t pd_id;            /* the question pending, 0: none */
	char txn_pd_domain[TXN_DOMAIN_MAX]; /* the domain it asks about */
	bool pd_wait;              /* client input waits for it (RCPT) */
	bool pd_dial;              /* it is PD_ADDR: dial once answered */
	struct sess_dv { uint32_t h; bool block; uint8_t rcode; } dv[SESS_DV];
	unsigned ndv;
	enum sess_pol spol;        /* the strongest policy applied */
	bool policy_unmet;         /* some policy's promise was not kept */
	char sni[256];             /* learned for this address: sent as SNI */
	bool addr_dane;            /* a learned DANE address: chain checked before the greeting */
	struct dane_rrset addr_rr; /* its TLSA RRset (owned) */
	char addr_host[PD_NAME_MAX + 1], addr_base[PD_NAME_MAX + 1];
	unsigned msgs;
	int prio;
	char reason[200];
	enum timer_kind ctk, utk;
	bool cmd_done;             /* a command was read: restart its deadline */
	size_t body_progress;      /* message bytes since the body deadline was set */
	bool reply_done;           /* a reply was relayed: restart its deadline */

	struct session *prev, *next;
};

static struct session *sess_list;
static unsigned sess_live;
static bool sess_draining;
static struct pdclient *sess_pdc;  /* the worker's, NULL: no policyd */

void
sess_set_pdclient(struct pdclient *c)
{
	sess_pdc = c;
}

/* The strongest of what applied at RCPT and to the destination itself. */
static enum sess_pol
sess_policy_applied(const struct session *s)
{
	enum sess_pol p = s->spol;

	if (s->facts.dane && p < SPOL_DANE)
		p = SPOL_DANE;
	else if (s->facts.rule != NULL && s->facts.rule->level !=
	    POLICY_LEVEL_NONE && p < SPOL_FILE)
		p = SPOL_FILE;
	else if (s->facts.pinned && p < SPOL_PIN)
		p = SPOL_PIN;
	return p;
}

static int sess_pump(struct session *s);
static int sess_up_cb(struct conn *c, enum conn_event ev, void *arg);
static int sess_up_done(struct upstream *up, enum up_result res, void *arg);
static int sess_park(struct session *s);
static void sess_dial(struct session *s);
static enum dane_result sess_addr_match(struct session *s, SSL *ssl);
static bool sess_addr_refused(struct session *s, SSL *ssl);
static int sess_addr_block(struct session *s);
static void sess_addr_answer(void *arg, const struct pd_pol *pol);

static const char *
sess_phase_str(enum sess_phase p)
{
	switch (p) {
	case SP_START: return "start";
	case SP_UPSTREAM: return "upstream";
	case SP_RELAY: return "relay";
	case SP_CLIENT_TLS: return "client-tls";
	case SP_CLOSING: return "closing";
	}
	return "unknown";
}

/* May a session go from one phase to the other? */
static bool
sess_step_ok(enum sess_phase from, enum sess_phase to)
{
	switch (to) {
	case SP_START: return false;
	case SP_UPSTREAM: /* RELAY: a dead parked connection replaced */
		return from == SP_START || from == SP_RELAY;
	case SP_RELAY: return from == SP_UPSTREAM || from == SP_CLIENT_TLS;
	case SP_CLIENT_TLS: return from == SP_RELAY;
	case SP_CLOSING: return from != SP_CLOSING;
	}
	return false;
}

/* The one place the phase changes. */
static void
sess_enter(struct session *s, enum sess_phase next)
{
	if (!sess_step_ok(s->phase, next)) {
		log_msg(LOG_CRIT, "error", "session %s: phase %s -> %s",
		    s->id, sess_phase_str(s->phase), sess_phase_str(next));
		assert(!"session phase transition");
	}
	s->phase = next;
}

static const char drain_reply[] =
    "421 4.3.2 starttlsd: shutting down, try again later\r\n";

unsigned
sess_count(void)
{
	return sess_live;
}

/* ---- teardown --------------------------------------------------------------- */

static const char *
sess_action(const struct session *s)
{
	if (s->blocked)
		return "blocked";
	if (!s->relayed)
		return "refused";
	return up_action_str(s->up.action);
}

/* A recipient domain the server accepted: on the session line, once. */
static void
sess_rdom_note(struct session *s, const char *domain)
{
	struct sess_rdoms *r;
	uint32_t h;
	size_t n;

	if (domain == NULL)
		return;
	if (s->rdoms == NULL && (s->rdoms = calloc(1, sizeof(*s->rdoms))) == NULL)
		return;
	r = s->rdoms;
	h = fnv1a_str(FNV1A_INIT, domain);
	for (unsigned i = 0; i < r->nseen; i++)
		if (r->seen[i] == h)
			return;
	if (r->nseen == SESS_RDOM_SEEN) {
		r->omitted++; /* at least: past SEEN, repeats are not told apart */
		r->beyond++;
		return;
	}
	r->seen[r->nseen++] = h;
	n = strlen(domain);
	if (r->len + n + 1 >= sizeof(r->list)) {
		r->omitted++;
		return;
	}
	if (r->len > 0)
		r->list[r->len++] = ',';
	memcpy(r->list + r->len, domain, n + 1);
	r->len += n;
}

static enum m_action
sess_m_action(const struct session *s)
{
	if (s->blocked)
		return M_BLOCKED;
	if (!s->relayed)
		return M_REFUSED;
	switch (s->up.action) {
	case UP_ACT_UPGRADED: return M_UPGRADED;
	case UP_ACT_PLAINTEXT: return M_PLAINTEXT;
	case UP_ACT_FALLBACK: return M_FALLBACK;
	case UP_ACT_NONE: break;
	}
	return M_REFUSED;
}

/* The session's counters, once, at its end. */
static void
sess_metrics(const struct session *s)
{
	struct m_session m = {
		.action = sess_m_action(s),
		.tls = s->up.tls ? m_tlsv_of(s->up.tls_info.version) : M_TLS_NONE,
		.msgs = s->msgs,
		.bytes_up = s->client.bytes_read,
		.bytes_down = s->client.bytes_written,
		.duration = ev_now(s->loop) - s->start,
		.tls_error = s->up.tls_sig,
		.rcpt_domains = s->rdoms ? s->rdoms->nseen + s->rdoms->beyond : 0,
	};

	metrics_session(&m);
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
	/*
	 * The order is docs/logging.md's. tls, cipher and verify are always
	 * there, for dashboards; peer_subject and peer_issuer, which the
	 * server chooses, come last, after every key of starttlsd's own.
	 */
	log_str(&l, "tls", s->up.tls ? ti->version : "none");
	log_str(&l, "cipher", s->up.tls ? ti->cipher : "none");
	log_str(&l, "verify", s->up.tls ? ti->verify : "none");
	if (s->up.tls) {
		log_str(&l, "spki_sha256", ti->spki_sha256);
		if (ti->resumed)
			log_str(&l, "resumed", "yes");
	}
	/* Whether the server connection was taken from the cache, and how
	 * many client sessions it has carried (0: no server connection). */
	log_str(&l, "reused", s->reused ? "yes" : "no");
	log_u64(&l, "conn_sessions", s->relayed ? s->conn_sessions : 0);
	log_str(&l, "policy", sess_pol_str(sess_policy_applied(s)));
	log_str(&l, "policy_met", s->policy_unmet ? "no" : "yes");
	if (s->up.tls_error[0] != '\0')
		log_str(&l, "tls_error", s->up.tls_error);
	if (s->client_tls)
		log_str(&l, "client_tls", s->client_tls_info.version);
	if (s->client_injection)
		log_str(&l, "client_injection", "discarded");
	if (s->up.mark_failed)
		log_str(&l, "mark", "failed");
	if (s->alerts > 0)
		log_u64(&l, "alerts", s->alerts);
	log_u64(&l, "msgs", s->msgs);
	log_u64(&l, "bytes_up", s->client.bytes_read);
	log_u64(&l, "bytes_down", s->client.bytes_written);
	log_int(&l, "duration_ms",
	    (long long)((ev_now(s->loop) - s->start) * 1000.0));
	log_str(&l, "reason", s->reason[0] ? s->reason : "unknown");
	if (s->rdoms != NULL && s->rdoms->omitted > 0)
		log_u64(&l, "rcpt_domains_omitted", s->rdoms->omitted);
	/*
	 * Peer-chosen values last, after every key of starttlsd's own (regex
	 * readers anchor on those): the domains the client sent, then the
	 * certificate names the server chose.
	 */
	if (s->rdoms != NULL && s->rdoms->len > 0)
		log_str(&l, "rcpt_domains", s->rdoms->list);
	if (s->up.tls) {
		log_str(&l, "peer_subject", ti->subject);
		log_str(&l, "peer_issuer", ti->issuer);
	}
	log_emit(&l, s->prio);
	sess_metrics(s);
}

/* The one teardown path. Always returns -1: s is gone. */
static int
sess_close(struct session *s)
{
	sess_log(s);
	if (s->counted) {
		sess_shared_add(&s->client_addr, -1);
		metrics_session_open(-1);
	}
	txn_free(&s->txn);
	free(s->rdoms);
	if (s->pd_id != 0)
		pdc_cancel(sess_pdc, s->pd_id);
	dane_rrset_free(&s->addr_rr);
	conn_cleanup(&s->client);
	up_cleanup(&s->up);
	if (s->server != NULL) {
		conn_cleanup(s->server);
		free(s->server);
	}
	free(s->greeting);
	free(s->first_cmd);
	s->magic = 0;
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

/* The session line's priority only ever gets more severe. */
static void
sess_raise(struct session *s, int prio)
{
	if (prio < s->prio)
		s->prio = prio;
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
	sess_enter(s, SP_CLOSING);
	/* A question to policyd no longer matters: its answer must not come. */
	if (s->pd_id != 0) {
		pdc_cancel(sess_pdc, s->pd_id);
		s->pd_id = 0;
		s->pd_wait = s->pd_dial = false;
	}
	conn_cork(&s->client, false);
	up_cleanup(&s->up);
	if (s->server != NULL)
		conn_cleanup(s->server);
	if (s->client.state != CONN_S_OPEN)
		return sess_close(s);
	if (last_reply != NULL)
		conn_write(&s->client, last_reply, strlen(last_reply));
	if (s->client_eof && conn_unsent(&s->client) == 0)
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
	if (conn_unsent(&s->client) == 0 && s->client_eof)
		return sess_close(s);
	conn_read(&s->client, true);
	return 0;
}

/* The server leg broke: the client gets a temporary failure, never a 250. */
static int sess_retry_fresh(struct session *s);

static int
sess_up_failed(struct session *s, const char *why)
{
	char r[256];

	/* A parked connection that died before its first reply: never mind. */
	if (s->first_wait && s->phase == SP_RELAY)
		return sess_retry_fresh(s);

	snprintf(s->reason, sizeof(s->reason), "server: %s", why);
	snprintf(r, sizeof(r), "421 4.4.2 starttlsd: connection to %s lost (%s)\r\n",
	    s->dst_str, why);
	sess_raise(s, LOG_WARNING);
	return sess_finish(s, s->reason, r);
}

/* ---- policy ------------------------------------------------------------------ */

static int64_t
sess_now(const struct session *s)
{
	return (int64_t)ev_now(s->loop);
}

/* event=downgrade: one policy signal, for dashboards to alert on. */
static void
sess_alert(struct session *s, const struct policy_out *o, const char *domain,
    const char *detail, const struct policy_ctx *ctx)
{
	struct logline l;
	const char *rpt = policy_tlsrpt(o->sig);

	s->alerts++;
	log_begin(&l, "downgrade");
	log_str(&l, "id", s->id);
	log_str(&l, "client", s->client_str);
	log_str(&l, "dst", s->dst_str);
	log_str(&l, "signal", policy_signal_str(o->sig));
	if (detail != NULL && detail[0] != '\0')
		log_str(&l, "detail", detail);
	/* A number always: 0 when not pinned. */
	log_int(&l, "pinned_since", ctx->pinned ? (long long)ctx->pinned_since :
	    0);
	log_str(&l, "policy", ctx->rule ? policy_level_str(ctx->rule->level) :
	    ctx->dane ? "dane" : ctx->pinned ? "pin" : "none");
	if (ctx->rule != NULL)
		log_u64(&l, "policy_line", ctx->rule->line);
	log_str(&l, "mode", policy_mode_str(o->mode));
	log_str(&l, "action", o->block ? "blocked" : "allowed");
	log_str(&l, "tlsrpt", rpt ? rpt : "none");
	/* The client chose it (its RCPT): after the keys of our own. */
	log_str(&l, "domain", domain);
	log_emit(&l, o->prio);
	metrics_downgrade(o->sig, o->block);
	sess_raise(s, o->prio);
	if (o->sig != POLICY_SIG_KEY_CHANGED &&
	    o->sig != POLICY_SIG_VERSION_LOWERED)
		s->policy_unmet = true;
}

/* event=attack: an attempt on the protocol itself, defeated. */
static void
sess_attack(struct session *s, enum m_attack atk, const char *detail)
{
	struct logline l;

	s->alerts++;
	log_begin(&l, "attack");
	log_str(&l, "id", s->id);
	log_str(&l, "client", s->client_str);
	log_str(&l, "dst", s->dst_str);
	log_str(&l, "signal", m_attack_str(atk));
	log_str(&l, "detail", detail);
	log_str(&l, "action", m_attack_action_str(atk));
	metrics_attack(atk);
	log_emit(&l, LOG_WARNING);
	sess_raise(s, LOG_WARNING);
}

/* Fill ctx from the policy file and the pin for key (may be NULL). */
static void
sess_policy_ctx(struct session *s, const struct policy_rule *rule,
    const char *key, struct policy_ctx *ctx)
{
	struct pin p;
	char err[160];

	memset(ctx, 0, sizeof(*ctx));
	ctx->mode = s->env->mode;
	ctx->rule = rule;
	if (s->env->pins == NULL || key == NULL)
		return;
	switch (pin_get(s->env->pins, key, sess_now(s), &p, err, sizeof(err))) {
	case 1:
		ctx->pinned = true;
		ctx->pinned_since = p.first_seen;
		ctx->pin_version = p.tls_version;
		ctx->pin_has_spki = p.has_spki;
		memcpy(ctx->pin_spki, p.spki, sizeof(ctx->pin_spki));
		break;
	case 0:
		break;
	default:
		/* The store is broken: relay on, opportunistically, and say so. */
		log_msg(LOG_ERR, "pinstore", "read %s: %s", key, err);
		metrics_pinstore_error(M_PIN_READ);
		break;
	}
}

static bool
sess_alerted_once(struct session *s, const char *domain)
{
	uint32_t h = fnv1a_str(FNV1A_INIT, domain);

	for (size_t i = 0; i < s->nalerted; i++)
		if (s->alerted[i] == h)
			return true;
	if (s->nalerted < SESS_ALERTED)
		s->alerted[s->nalerted++] = h;
	return false;
}

/*
 * A RCPT: does the recipient's domain need more TLS than this session has?
 * Returns true when the recipient is refused (a 450 was queued).
 */
static bool
sess_rcpt_policy(struct session *s, const char *domain)
{
	const char *names[POLICY_MAX_NAMES];
	struct policy_ctx ctx;
	struct policy_tls t;
	struct policy_out o;
	char key[PIN_KEY_MAX];

	if (pin_key_domain(domain, strlen(domain), key, sizeof(key)) < 0)
		return false;
	sess_policy_ctx(s, policy_for_domain(&s->env->policy, domain), key,
	    &ctx);
	t = (struct policy_tls){
		.tls = s->up.tls,
		.version = s->up.tls_info.vnum,
		.verified = s->up.tls_info.verified,
		.spki = s->up.tls_info.has_spki ? s->up.tls_info.spki_raw : NULL,
		.names = names,
		.nnames = tls_info_names(&s->up.tls_info, names, POLICY_MAX_NAMES),
	};
	policy_for_rcpt(&ctx, &t, &o);
	if (ctx.rule != NULL && ctx.rule->level != POLICY_LEVEL_NONE &&
	    s->spol < SPOL_FILE)
		s->spol = SPOL_FILE;
	else if (ctx.rule == NULL && ctx.pinned && s->spol < SPOL_PIN)
		s->spol = SPOL_PIN;
	if (o.sig == POLICY_SIG_NONE)
		return false;
	if (o.alert && !sess_alerted_once(s, domain))
		sess_alert(s, &o, domain, o.sig == POLICY_SIG_VERIFY_FAILED ?
		    s->up.tls_info.verify : NULL, &ctx);
	return o.block;
}

/* ---- DANE and MTA-STS at RCPT (domainpol.h) ----------------------------------- */

/* The server's chain, leaf first, as DER (borrowed from ssl); how many. */
static size_t
sess_chain(SSL *ssl, const uint8_t **der, size_t *len, size_t max)
{
	const STACK_OF(CRYPTO_BUFFER) *sk;
	size_t n = 0;

	if (ssl == NULL || (sk = SSL_get0_peer_certificates(ssl)) == NULL)
		return 0;
	for (size_t i = 0; i < sk_CRYPTO_BUFFER_num(sk) && n < max; i++) {
		const CRYPTO_BUFFER *b = sk_CRYPTO_BUFFER_value(sk, i);
		der[n] = CRYPTO_BUFFER_data(b);
		len[n++] = CRYPTO_BUFFER_len(b);
	}
	return n;
}

/* May this recipient domain have DANE or MTA-STS at all (a DNS name)? */
static bool
sess_dns_name(const char *d)
{
	size_t n = strlen(d);

	if (n == 0 || n > PD_NAME_MAX || strchr(d, '.') == NULL)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((d[i] >= 'a' && d[i] <= 'z') || (d[i] >= 'A' && d[i] <= 'Z') ||
		    (d[i] >= '0' && d[i] <= '9') || d[i] == '-' || d[i] == '.' ||
		    d[i] == '_'))
			return false;
	return true;
}

/* event=downgrade for a DANE or MTA-STS policy not met. */
static void
sess_dp_alert(struct session *s, const struct dp_out *o, bool block,
    const char *domain)
{
	struct logline l;
	bool enforce = s->env->mode == POLICY_ENFORCE;
	int prio = block ? LOG_ERR : o->testing ? LOG_NOTICE : LOG_WARNING;
	enum policy_signal sig = o->policy == DP_DANE ? POLICY_SIG_DANE_FAILED :
	    POLICY_SIG_STS_FAILED;

	s->alerts++;
	s->policy_unmet = true;
	log_begin(&l, "downgrade");
	log_str(&l, "id", s->id);
	log_str(&l, "client", s->client_str);
	log_str(&l, "dst", s->dst_str);
	log_str(&l, "signal", policy_signal_str(sig));
	if (o->detail[0] != '\0')
		log_str(&l, "detail", o->detail);
	log_int(&l, "pinned_since", 0);
	log_str(&l, "policy", dp_policy_str(o->policy));
	log_str(&l, "mode", o->testing ? "testing" : enforce ? "enforce" :
	    "monitor");
	log_str(&l, "action", block ? "blocked" : "allowed");
	log_str(&l, "tlsrpt", pd_result_str(o->result));
	/* Names the domain's DNS chose, then the one the client chose. */
	if (o->mx[0] != '\0')
		log_str(&l, "mx", o->mx);
	if (domain != NULL)
		log_str(&l, "domain", domain);
	log_emit(&l, prio);
	metrics_domain_policy(o->policy == DP_DANE, o->result, block);
	sess_raise(s, prio);
}

/* One TLS-RPT result for policyd's aggregate. */
static void
sess_dp_report(struct session *s, const struct dp_out *o, const char *domain)
{
	struct pd_report r;

	/* Always: policyd learns a DANE address from a success (and
	 * aggregates for TLS-RPT when tlsrpt = on). */
	if (sess_pdc == NULL)
		return;
	memset(&r, 0, sizeof(r));
	r.policy_type = o->policy == DP_DANE ? TLSRPT_TLSA : TLSRPT_STS;
	r.result = o->result;
	snprintf(r.domain, sizeof(r.domain), "%s", domain);
	snprintf(r.mx, sizeof(r.mx), "%s", o->mx);
	pdc_addr((struct sockaddr *)&s->dst, &r.addr);
	r.when = (uint32_t)time(NULL);
	pdc_report(sess_pdc, &r);
}

/* Judge a domain on policyd's answer (or a failure made up for it): true to refuse. */
static bool
sess_dp_judge(struct session *s, const char *domain, const struct pd_pol *pol)
{
	const uint8_t *der[DANE_MAX_CHAIN];
	size_t len[DANE_MAX_CHAIN];
	const char *names[POLICY_MAX_NAMES];
	struct dane_chain chain = { .der = der, .len = len };
	struct dp_tls t = {
		.tls = s->up.tls,
		.chain = &chain,
		.verified = s->up.tls_info.verified,
		.verify = s->up.tls_info.verify,
		.names = names,
		.nnames = tls_info_names(&s->up.tls_info, names, POLICY_MAX_NAMES),
		.now = time(NULL),
	};
	struct dp_out o;
	bool block;

	if (s->up.tls && s->server != NULL)
		chain.n = sess_chain(s->server->ssl, der, len, DANE_MAX_CHAIN);
	dp_judge(pol, &t, &o);
	if (o.policy == DP_NONE)
		return false;
	if (o.policy == DP_DANE && s->spol < SPOL_DANE)
		s->spol = SPOL_DANE;
	else if (o.policy == DP_STS && s->spol < SPOL_STS)
		s->spol = SPOL_STS;
	sess_dp_report(s, &o, domain);
	if (o.met) {
		metrics_domain_policy(o.policy == DP_DANE, PD_R_SUCCESS, false);
		return false;
	}
	block = o.block && s->env->mode == POLICY_ENFORCE;
	sess_dp_alert(s, &o, block, domain);
	return block;
}

static int sess_relay_client(struct session *s);
static int sess_pump(struct session *s);

/* Judge the domain asked about and remember the verdict for this session. */
static void
sess_dv_record(struct session *s, const struct pd_pol *pol)
{
	struct sess_dv *dv = &s->dv[s->ndv < SESS_DV ? s->ndv++ : SESS_DV - 1];

	dv->h = fnv1a_str(FNV1A_INIT, s->txn_pd_domain);
	dv->block = sess_dp_judge(s, s->txn_pd_domain, pol);
	dv->rcode = (uint8_t)(pol->dane == PD_DANE_MATCH ||
	    pol->dane == PD_DANE_ENCRYPT || pol->dane == PD_DANE_TEMPFAIL ?
	    LR_RCPT_DANE : LR_RCPT_STS);
}

/* policyd answered the RCPT's question (or pdclient gave up on it). */
static void
sess_pd_answer(void *arg, const struct pd_pol *pol)
{
	struct session *s = arg;

	assert(s->magic == SESS_MAGIC && s->pd_wait);
	s->pd_id = 0;
	s->pd_wait = false;
	sess_dv_record(s, pol);
	/* The RCPT waiting in the client's buffer goes through again. */
	if (s->phase == SP_RELAY && sess_relay_client(s) == 0)
		(void)sess_pump(s);
}

enum sess_dp_step { DPS_GO, DPS_WAIT, DPS_REFUSE };

/*
 * A RCPT of domain: DPS_GO (no DANE or MTA-STS policy against it),
 * DPS_REFUSE (*lr: the 450 to queue), or DPS_WAIT (policyd was asked; the
 * line stays in the buffer until the answer).
 */
static enum sess_dp_step
sess_domain_policy(struct session *s, const char *domain, enum local_reply *lr)
{
	const struct config *cfg = &s->env->cfg;
	const struct policy_rule *rule;
	uint32_t h;

	if (sess_pdc == NULL || s->env->upstream_len > 0 ||
	    !(cfg->dane || cfg->mta_sts) || !sess_dns_name(domain))
		return DPS_GO;
	/* The admin's explicit "none" rule exempts a domain (docs/policy.md). */
	rule = policy_for_domain(&s->env->policy, domain);
	if (rule != NULL && rule->level == POLICY_LEVEL_NONE)
		return DPS_GO;
	h = fnv1a_str(FNV1A_INIT, domain);
	for (unsigned i = 0; i < s->ndv; i++)
		if (s->dv[i].h == h) {
			*lr = (enum local_reply)s->dv[i].rcode;
			return s->dv[i].block ? DPS_REFUSE : DPS_GO;
		}
	assert(s->pd_id == 0);
	snprintf(s->txn_pd_domain, sizeof(s->txn_pd_domain), "%s", domain);
	s->pd_wait = true;
	s->pd_id = pdc_ask(sess_pdc, PD_POLICY, domain,
	    (struct sockaddr *)&s->dst, cfg->policy_timeout * 1000,
	    sess_pd_answer, s);
	if (s->pd_id == 0) {
		/* Not even asked (too many pending): as a lookup failure. */
		struct pd_pol pol = {
			.dane = PD_DANE_TEMPFAIL,
			.dane_result = PD_R_VALIDATION_FAILURE,
			.why = "policy process busy", .mx = "", .sni = "",
			.sts_id = "",
		};
		s->pd_wait = false;
		sess_dv_record(s, &pol);
		return sess_domain_policy(s, domain, lr);
	}
	return DPS_WAIT;
}

/* A domain of an accepted message: over TLS, it is pinned to this address. */
static void
sess_learn_domain(const char *domain, void *arg)
{
	struct session *s = arg;

	if (s->up.tls && s->env->pins != NULL)
		pin_note_domain(s->env->pins, domain, strlen(domain),
		    (struct sockaddr *)&s->dst, sess_now(s));
}

/* ---- the server connection's reuse (upcache.h) --------------------------------- */

static void
sess_cache_key(const struct session *s, char *key, size_t cap)
{
	size_t n;

	upc_key(key, cap, &s->dst, s->env->up.transparent_source ?
	    &s->client_addr : NULL);
	/* A connection made under one SNI (a learned name) serves only that. */
	n = strlen(key);
	if (s->sni[0] != '\0' && n + 1 + strlen(s->sni) < cap)
		snprintf(key + n, cap - n, "/%s", s->sni);
}

/*
 * May this session's server connection serve the next client? Only a TLS
 * connection, between transactions, with nothing outstanding either way,
 * never after AUTH or anything else that leaves state on the server side
 * (unknown commands, replies we cannot vouch for), within its limits.
 */
static bool
sess_parkable(const struct session *s)
{
	const struct upc_params *p = &s->env->upc;

	return p->on && !sess_draining && s->server != NULL &&
	    s->phase == SP_RELAY && s->up.action == UP_ACT_UPGRADED &&
	    !s->unparkable && !s->mail_open && !s->first_wait &&
	    s->qlen == 0 && s->mode == CM_COMMAND &&
	    s->server->state == CONN_S_OPEN && !s->server->eof &&
	    !s->up_eof && buf_len(&s->server->in) == 0 && s->greeting != NULL &&
	    s->conn_sessions < p->max_uses &&
	    ev_now(s->loop) - s->conn_born < p->max_age;
}

/* The client said QUIT and got our 221: the server connection is parked. */
static int
sess_park(struct session *s)
{
	struct upc_conn pc = {
		.conn = s->server,
		.up = s->up,
		.greeting = s->greeting,
		.greeting_len = s->greeting_len,
		.uses = s->conn_sessions,
		.born = s->conn_born,
	};
	char key[UPC_KEY_MAX];
	char dkey[PIN_KEY_MAX];

	/* The facts as they are now (the pin this connection taught us). */
	sess_policy_ctx(s, policy_for_addr(&s->env->policy,
	    (struct sockaddr *)&s->dst),
	    pin_key_addr((struct sockaddr *)&s->dst, dkey, sizeof(dkey)) == 0 ?
	    dkey : NULL, &pc.facts);
	pc.up.conn = NULL;
	pc.up.done = NULL;
	pc.up.arg = NULL;
	pc.up.greeting = pc.up.reply = NULL;
	pc.up.nalerts = 0;
	pc.up.locallen = 0; /* its port is withdrawn with this session */
	s->server = NULL;
	s->up.conn = NULL;
	s->greeting = NULL;
	sess_cache_key(s, key, sizeof(key));
	upc_park(&s->env->upc, key, &pc);
	return sess_finish(s, "quit", NULL);
}

/* Are the destination's policy facts still those the connection was made under? */
static bool
sess_facts_same(const struct policy_ctx *then, const struct policy_ctx *now)
{
	if (then->rule != now->rule)
		return false;  /* a policy file change */
	if (then->pinned && !now->pinned)
		return false;  /* forgotten (starttlsctl forget) or expired */
	if (then->pinned && now->pinned &&
	    (then->pinned_since != now->pinned_since ||
	    then->pin_version != now->pin_version ||
	    then->pin_has_spki != now->pin_has_spki ||
	    memcmp(then->pin_spki, now->pin_spki, sizeof(now->pin_spki)) != 0))
		return false;
	return true;
}

/*
 * Would this connection pass today's policy exactly as a fresh one would,
 * without a single alert? Otherwise a fresh negotiation decides (and logs).
 */
static bool
sess_reusable(const struct upc_conn *pc, const struct policy_ctx *pol)
{
	const char *names[POLICY_MAX_NAMES];
	struct policy_out outs[3];
	struct policy_tls t = {
		.tls = true,
		.version = pc->up.tls_info.vnum,
		.verified = pc->up.tls_info.verified,
		.spki = pc->up.tls_info.has_spki ? pc->up.tls_info.spki_raw : NULL,
		.names = names,
		.nnames = tls_info_names(&pc->up.tls_info, names, POLICY_MAX_NAMES),
	};

	return pc->up.tls && sess_facts_same(&pc->facts, pol) &&
	    policy_after_handshake(pol, &t, outs, 3) == 0;
}

/* Close a connection taken from the cache and not used. */
static void
sess_discard(struct upc_conn *pc)
{
	up_cleanup(&pc->up);
	conn_cleanup(pc->conn);
	free(pc->conn);
	free(pc->greeting);
}

/*
 * A parked connection for this session's destination, fit to use: the
 * session starts relaying at once (the greeting replayed). True if so.
 */
static bool
sess_take(struct session *s, const struct policy_ctx *pol)
{
	struct upc_conn pc;
	char key[UPC_KEY_MAX];

	if (!s->env->upc.on || sess_draining)
		return false;
	sess_cache_key(s, key, sizeof(key));
	while (upc_take(&s->env->upc, key, &pc)) {
		if (!sess_reusable(&pc, pol) || (s->addr_dane &&
		    !dane_result_ok(sess_addr_match(s, pc.conn->ssl)))) {
			sess_discard(&pc);
			continue;
		}
		conn_cleanup(s->server);
		free(s->server);
		s->server = pc.conn;
		conn_set_cb(s->server, sess_up_cb, s);
		s->up = pc.up;
		s->up.conn = s->server;
		s->up.pol = *pol;
		s->up.tls_info.resumed = false;
		s->greeting = pc.greeting;
		s->greeting_len = pc.greeting_len;
		s->facts = *pol;
		s->conn_born = pc.born;
		s->conn_sessions = pc.uses + 1;
		s->reused = true;
		s->first_wait = true;
		metrics_reused();
		return true;
	}
	return false;
}

/*
 * The parked connection died under the client's first command (closed,
 * reset, 421 at its idle limit): negotiate a fresh one, send that command
 * again over it; the client sees only its reply.
 */
static int
sess_retry_fresh(struct session *s)
{
	assert(s->reused && s->first_wait);
	metrics_reuse_retry();
	up_cleanup(&s->up);
	conn_cleanup(s->server);
	s->reused = false;
	s->first_wait = false;
	s->retrying = true;
	s->up_eof = false;
	s->unparkable = s->mail_open = false;
	free(s->greeting);
	s->greeting = NULL;
	sess_enter(s, SP_UPSTREAM);
	return up_start(&s->up, s->server, s->loop, &s->env->up, &s->facts,
	    s->sni[0] ? s->sni : NULL,
	    (struct sockaddr *)&s->client_addr, (struct sockaddr *)&s->dst,
	    addr_len((struct sockaddr *)&s->dst), sess_up_done, s);
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
q_push_rcpt(struct session *s, enum smtp_verb verb, enum local_reply local,
    uint8_t flags, uint8_t rcpt)
{
	struct pend *p = &s->q[(s->qhead + s->qlen) % SESS_MAX_INFLIGHT];

	p->verb = (uint8_t)verb;
	p->local = (uint8_t)local;
	p->flags = flags;
	p->rcpt = rcpt;
	p->gen = 0;
	s->qlen++;
	if (flags & P_SYNC)
		s->sync_wait = true;
}

static void
q_push(struct session *s, enum smtp_verb verb, enum local_reply local,
    uint8_t flags)
{
	q_push_rcpt(s, verb, local, flags, 0);
}

/* The command that ends a message: its reply accepts it or not. */
static void
q_push_end(struct session *s, enum smtp_verb verb, uint8_t flags)
{
	uint8_t gen = txn_sent(&s->txn);

	q_push(s, verb, LR_NONE, flags);
	s->q[(s->qhead + s->qlen - 1) % SESS_MAX_INFLIGHT].gen = gen;
}

static void
q_pop(struct session *s)
{
	if (s->q[s->qhead].flags & P_SYNC)
		s->sync_wait = false;
	s->qhead = (s->qhead + 1) % SESS_MAX_INFLIGHT;
	s->qlen--;
}

/*
 * One more 4xx/5xx for the client. Past max_errors the session ends (a
 * client hammering bad commands or probing addresses); returns what
 * sess_finish did, else 0.
 */
static int
sess_error(struct session *s)
{
	if (++s->errors <= s->env->cfg.max_errors)
		return 0;
	sess_raise(s, LOG_NOTICE);
	return sess_finish(s, "too many errors",
	    "421 4.7.0 starttlsd: too many errors, closing\r\n");
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
		sess_attack(s, M_ATK_COMMAND_INJECTION,
		    "bytes pipelined after the client's STARTTLS");
	}
	sess_enter(s, SP_CLIENT_TLS);
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
		if ((t[0] == '4' || t[0] == '5') && sess_error(s) < 0)
			return -1;
		if (s->phase != SP_RELAY && s->phase != SP_CLIENT_TLS)
			return 0;
		if (flags & P_CLOSE)
			return sess_finish(s, "client protocol error", NULL);
		if (flags & P_PARK)
			return sess_park(s);
		if (flags & P_STARTTLS)
			return sess_client_starttls(s);
	}
	return 0;
}

/*
 * What a reply leaves on the server side: an open transaction, or an
 * error we cannot vouch for (the connection is then never reused).
 */
static void
sess_track_server_state(struct session *s, const struct pend *p, int code)
{
	int cls = smtp_code_class(code);

	if (cls >= 4 && p->verb != SMTP_V_RCPT && p->verb != SMTP_V_MAIL &&
	    p->verb != SMTP_V_VRFY)
		s->unparkable = true;
	if (p->flags & (P_DATA_END | P_BDAT_LAST))
		s->mail_open = false;
	else if (p->verb == SMTP_V_MAIL && cls == 2)
		s->mail_open = true;
	else if ((p->verb == SMTP_V_RSET || p->verb == SMTP_V_EHLO ||
	    p->verb == SMTP_V_HELO) && cls == 2)
		s->mail_open = false;
}

/* ---- server -> client ------------------------------------------------------------ */

static int
sess_deliver(struct session *s, const struct pend *p, const char *r,
    size_t rlen, int code)
{
	if (p->verb == SMTP_V_EHLO || p->verb == SMTP_V_HELO) {
		/* What the server now offers this client (HELO: nothing). */
		struct smtp_caps caps = { 0 };

		if (p->verb == SMTP_V_EHLO && code == 250)
			smtp_caps_parse(r, rlen, &caps);
		s->chunking = caps.chunking;
	}
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
	struct buf *in = &s->server->in;
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
		if (s->first_wait) {
			/* A parked connection's first reply: a 421 is its end. */
			if (rep.code == 421)
				return sess_retry_fresh(s);
			s->first_wait = false;
			free(s->first_cmd);
			s->first_cmd = NULL;
		}
		sess_track_server_state(s, &cur, rep.code);
		if (sess_deliver(s, &cur, buf_head(in), rep.len, rep.code) < 0)
			return -1;
		buf_consume(in, rep.len);
		consumed = true;
		s->reply_done = true;
		q_pop(s);

		if (cur.verb == SMTP_V_DATA && !(cur.flags & P_DATA_END) &&
		    rep.code == 354) {
			s->mode = CM_DATA;
			smtp_data_init(&s->data);
		}
		if (cur.verb == SMTP_V_AUTH && rep.code == 334)
			s->mode = CM_AUTH;
		if (smtp_code_class(rep.code) == 2 && cur.rcpt != 0) {
			txn_accepted(&s->txn, cur.rcpt);
			sess_rdom_note(s, txn_domain(&s->txn, cur.rcpt));
		}
		if (cur.flags & (P_DATA_END | P_BDAT_LAST)) {
			bool ok = smtp_code_class(rep.code) == 2;
			if (ok)
				s->msgs++;
			txn_done(&s->txn, cur.gen, ok, sess_learn_domain, s);
		}
		if (cur.verb == SMTP_V_QUIT)
			return sess_finish(s, "quit", NULL);
		if (rep.code == 421)
			return sess_finish(s, "server said 421", NULL);
		if (smtp_code_class(rep.code) >= 4) {
			if (sess_error(s) < 0)
				return -1;
			if (s->phase != SP_RELAY)
				return 0;
		}
	}
out:
	if (consumed)
		conn_read(s->server, true);
	return 0;
}

/* ---- client -> server ------------------------------------------------------------- */

static bool
sess_forward(struct session *s, const char *p, size_t n)
{
	return conn_write(s->server, p, n) == 0;
}

/*
 * SMTP smuggling: a "." line with a bare CR or LF on either side, which
 * some servers take for the end of the message and we do not. Our view
 * and the server's would differ from here on, so the message is refused
 * before those bytes go out, and the server leg is closed without an end
 * of data: the server discards the partial message. We never rewrite
 * content, so refusing is the one safe choice (docs/security.md).
 */
static int
sess_smuggling(struct session *s)
{
	sess_attack(s, M_ATK_SMTP_SMUGGLING,
	    "ambiguous end of data (bare CR or LF around a '.' line, or NUL)");
	return sess_finish(s, "smtp-smuggling",
	    "554 5.5.2 starttlsd: message refused: bare CR or LF around a "
	    "'.' line, or NUL in the content (SMTP smuggling defence)\r\n");
}

/* RCPT: policy per recipient domain, in pipelined order. */
static int
sess_rcpt(struct session *s, const struct smtp_cmd *cmd, const char *line,
    size_t n)
{
	char domain[TXN_DOMAIN_MAX];
	uint8_t idx = 0;

	if (++s->txn.rcpts > s->env->cfg.max_recipients) {
		q_push(s, SMTP_V_RCPT, LR_TOO_MANY_RCPT, 0);
		return 0;
	}
	if (smtp_rcpt_domain(cmd->arg, cmd->arg_len, domain, sizeof(domain))) {
		enum local_reply lr = LR_RCPT_DANE;

		switch (sess_domain_policy(s, domain, &lr)) {
		case DPS_WAIT:
			s->txn.rcpts--;  /* counted again when it goes through */
			return SESS_AGAIN;
		case DPS_REFUSE:
			/* The pins and the policy file are judged all the same (alerts). */
			(void)sess_rcpt_policy(s, domain);
			s->txn.rcpt_blocked++;
			q_push(s, SMTP_V_RCPT, lr, 0);
			return 0;
		case DPS_GO:
			break;
		}
		if (sess_rcpt_policy(s, domain)) {
			s->txn.rcpt_blocked++;
			q_push(s, SMTP_V_RCPT, LR_RCPT_TLS, 0);
			return 0;
		}
		idx = txn_slot(&s->txn, domain);
	}
	s->txn.rcpt_forwarded++;
	sess_forward(s, line, n);
	q_push_rcpt(s, SMTP_V_RCPT, LR_NONE, 0, idx);
	return 0;
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
		if (!s->chunking ||
		    txn_all_refused(&s->txn)) {
			/*
			 * Refused here, and its chunk dropped here: neither
			 * reaches the server (RFC 3030 4.2: a refused BDAT's
			 * chunk is still read and discarded).
			 */
			if (!s->chunking && !s->bdat_alerted) {
				s->bdat_alerted = true;
				sess_attack(s, M_ATK_BDAT_NOT_OFFERED,
				    "BDAT to a server that did not offer CHUNKING");
			}
			q_push(s, cmd.verb, s->chunking ? LR_BDAT_NO_RCPT :
			    LR_BDAT_NOT_OFFERED, 0);
			if (cmd.bdat_size > 0) {
				s->mode = CM_BDAT_SKIP;
				s->bdat_left = cmd.bdat_size;
			}
			return 0;
		}
		sess_forward(s, line, n);
		if (cmd.bdat_last)
			q_push_end(s, SMTP_V_BDAT, P_BDAT_LAST);
		else
			q_push(s, cmd.verb, LR_NONE, 0);
		if (cmd.bdat_size > 0) {
			s->mode = CM_BDAT;
			s->bdat_left = cmd.bdat_size;
		}
		return 0;
	case SMTP_V_RCPT:
		return sess_rcpt(s, &cmd, line, n);
	case SMTP_V_MAIL:
	case SMTP_V_RSET:
		txn_new(&s->txn);
		sess_forward(s, line, n);
		q_push(s, cmd.verb, LR_NONE, 0);
		return 0;
	case SMTP_V_DATA:
		if (txn_all_refused(&s->txn)) {
			/* Every recipient was refused by policy: no DATA. */
			q_push(s, cmd.verb, LR_DATA_NO_RCPT, 0);
			return 0;
		}
		/* FALLTHROUGH */
	case SMTP_V_EHLO:
	case SMTP_V_HELO:
		/*
		 * What follows depends on the reply (RFC 2920: EHLO ends a
		 * pipelined group): CHUNKING is known only from it.
		 */
		sess_forward(s, line, n);
		q_push(s, cmd.verb, LR_NONE, P_SYNC);
		return 0;
	case SMTP_V_QUIT:
		if (sess_parkable(s)) {
			/* Our 221; the server connection waits for the next client. */
			q_push(s, cmd.verb, LR_QUIT_221, P_SYNC | P_PARK);
			return 0;
		}
		/* FALLTHROUGH */
	case SMTP_V_AUTH:
		/* What follows depends on the reply: wait for it. */
		if (cmd.verb == SMTP_V_AUTH)
			s->unparkable = true; /* authenticated: never reused */
		sess_forward(s, line, n);
		q_push(s, cmd.verb, LR_NONE, P_SYNC);
		return 0;
	default:
		/* Unknown to us: who knows what it leaves on the server side. */
		if (cmd.verb == SMTP_V_UNKNOWN)
			s->unparkable = true;
		sess_forward(s, line, n);
		q_push(s, cmd.verb, LR_NONE, 0);
		return 0;
	}
}

/*
 * The first command over a reused connection, if it went to the server:
 * kept (to be sent again over a fresh connection should the parked one
 * be dead), and nothing more is parsed until its reply.
 */
static void
sess_first_command(struct session *s, const char *line, size_t n,
    unsigned before)
{
	struct pend *last;

	if (s->qlen != before + 1)
		return;
	last = &s->q[(s->qhead + s->qlen - 1) % SESS_MAX_INFLIGHT];
	if (last->local != LR_NONE || (s->first_cmd = malloc(n)) == NULL)
		return;
	memcpy(s->first_cmd, line, n);
	s->first_len = n;
	last->flags |= P_SYNC;
	s->sync_wait = true;
}

static int
sess_relay_client(struct session *s)
{
	struct buf *in = &s->client.in;
	size_t maxline = s->env->cfg.max_line_length;
	bool consumed = false;

	while (s->phase == SP_RELAY && !s->sync_wait && !s->pd_wait &&
	    buf_len(in) > 0) {
		const char *h = buf_head(in);
		size_t len = buf_len(in), room = conn_out_room(s->server);
		size_t n;
		bool done;
		enum smtp_line_fault fault;

		switch (s->mode) {
		case CM_DATA: {
			uint64_t amb = s->data.ambiguous;

			if (room == 0 || q_full(s))
				goto out;
			n = smtp_data_scan(&s->data, h, len < room ? len : room,
			    &done);
			/*
			 * NUL has no place in DATA content (RFC 5321 4.1.4);
			 * a server that drops it would see ".\0" as a "." line.
			 */
			if (s->data.ambiguous != amb || memchr(h, '\0', n) != NULL)
				return sess_smuggling(s);
			sess_forward(s, h, n);
			s->body_progress += n;
			buf_consume(in, n);
			consumed = true;
			if (done) {
				s->mode = CM_COMMAND;
				q_push_end(s, SMTP_V_DATA, P_DATA_END);
			}
			continue;
		}
		case CM_BDAT:
		case CM_BDAT_SKIP: /* a chunk refused here is only dropped */
			if (s->mode == CM_BDAT && room == 0)
				goto out;
			n = s->mode == CM_BDAT && room < len ? room : len;
			if (n > s->bdat_left)
				n = (size_t)s->bdat_left;
			if (s->mode == CM_BDAT)
				sess_forward(s, h, n);
			s->body_progress += n;
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
		s->cmd_done = true;
		if ((fault = smtp_line_check(h, n)) != SMTP_LINE_OK) {
			/*
			 * A line end the server may not see where we do, or a
			 * NUL it may drop: never relay it, or commands could
			 * hide inside (smuggling).
			 */
			q_push(s, SMTP_V_UNKNOWN, fault == SMTP_LINE_NUL ?
			    LR_NUL_IN_LINE : LR_BARE_NEWLINE, 0);
			if (s->mode == CM_AUTH)
				s->mode = CM_COMMAND;
			buf_consume(in, n);
			consumed = true;
			continue;
		}
		if (s->mode == CM_AUTH) {
			/* A SASL response line, not a command. */
			s->mode = CM_COMMAND;
			sess_forward(s, h, n);
			q_push(s, SMTP_V_AUTH, LR_NONE, P_SYNC);
		} else if (s->first_wait && s->first_cmd == NULL) {
			unsigned before = s->qlen;
			int rc = sess_command(s, h, n);
			if (rc < 0)
				return -1;
			if (s->phase != SP_RELAY)
				return 0;
			if (rc == SESS_AGAIN)
				goto out;  /* the line stays: policyd was asked */
			sess_first_command(s, h, n, before);
		} else {
			int rc = sess_command(s, h, n);
			if (rc < 0)
				return -1;
			if (rc == SESS_AGAIN)
				goto out;  /* the line stays: policyd was asked */
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
		if (s->mode == CM_DATA || s->mode == CM_BDAT ||
		    s->mode == CM_BDAT_SKIP)
			ck = TK_CLIENT_BODY;
		else if (s->qlen == 0 || conn_unsent(&s->client) > 0)
			ck = TK_CLIENT;
		if (p != NULL && p->local == LR_NONE)
			uk = (p->flags & (P_DATA_END | P_BDAT_LAST)) ? TK_DATA :
			    TK_REPLY;
		else if (conn_unsent(s->server) > 0)
			uk = TK_UP_WRITE;
	}
	/*
	 * Message content must keep moving: at least SESS_BODY_MIN bytes per
	 * client_timeout, or it is a trickle meant to hold the session.
	 */
	if (ck != s->ctk || (ck == TK_CLIENT && s->cmd_done) ||
	    (ck == TK_CLIENT_BODY && s->body_progress >= SESS_BODY_MIN)) {
		s->ctk = ck;
		s->body_progress = 0;
		conn_timeout(&s->client, ck == TK_TLS ? cfg->tls_timeout :
		    ck == TK_CLIENT || ck == TK_CLIENT_BODY ? cfg->client_timeout :
		    0, false);
	}
	if (uk != s->utk || (uk == TK_REPLY && s->reply_done)) {
		s->utk = uk;
		conn_timeout(s->server, uk == TK_DATA ? cfg->data_timeout :
		    uk == TK_REPLY || uk == TK_UP_WRITE ? cfg->reply_timeout : 0,
		    uk == TK_UP_WRITE);
	}
	s->cmd_done = s->reply_done = false;
	/*
	 * An idle session keeps no buffer memory. (Not while a message
	 * flows: freeing and faulting the pages in again per read would cost
	 * more than the copying.)
	 */
	if (s->mode == CM_COMMAND && s->qlen == 0) {
		conn_trim(&s->client);
		conn_trim(s->server);
	}
}

/* ---- the strategy function ---------------------------------------------------------- */

static bool
sess_at_boundary(const struct session *s)
{
	return s->phase == SP_RELAY && s->qlen == 0 && s->mode == CM_COMMAND &&
	    buf_len(&s->client.in) == 0;
}

/* Does the server's buffer end in a reply it will now never finish? */
static bool
sess_partial_reply(struct session *s)
{
	struct smtp_reply rep;

	return smtp_reply_parse(buf_head(&s->server->in),
	    buf_len(&s->server->in), s->env->up.max_line, s->env->up.max_lines,
	    &rep) != SMTP_PARSE_OK;
}

static int
sess_relay(struct session *s)
{
	if (sess_relay_replies(s) < 0)
		return -1;
	if (s->phase != SP_RELAY)
		return 0;
	if (sess_relay_client(s) < 0)
		return -1;
	/* Local replies queued by the client's commands may be due now. */
	return sess_relay_replies(s);
}

static int
sess_pump(struct session *s)
{
	size_t unsent;

	if (s->phase != SP_RELAY)
		return 0;
	/*
	 * The replies to a pipelined batch go out in one send, and the
	 * commands of one in one TLS record (conn_cork).
	 */
	conn_cork(&s->client, true);
	conn_cork(s->server, true);
	if (sess_relay(s) < 0)
		return -1;
	if (s->phase != SP_RELAY) {
		/* Parked or closed: the server connection may be gone. */
		conn_cork(&s->client, false);
		return 0;
	}
	unsent = conn_unsent(&s->client) + conn_unsent(s->server);
	conn_cork(&s->client, false);
	conn_cork(s->server, false);
	/*
	 * What the cork held back may have filled a buffer and stopped the
	 * relay; once sent, nothing else (no DRAINED) would restart it.
	 */
	if (conn_unsent(&s->client) + conn_unsent(s->server) < unsent &&
	    (buf_len(&s->client.in) > 0 || buf_len(&s->server->in) > 0 ||
	    s->qlen > 0) && sess_relay(s) < 0)
		return -1;
	if (s->phase != SP_RELAY)
		return 0;

	if (s->up_eof && (buf_len(&s->server->in) == 0 ||
	    sess_partial_reply(s)))
		return sess_up_failed(s, "connection closed by server");
	if (s->client_eof) {
		if (s->mode == CM_DATA || s->mode == CM_BDAT ||
		    s->mode == CM_BDAT_SKIP) {
			/* Never let a cut-off message be completed. */
			sess_raise(s, LOG_WARNING);
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

	assert(s->magic == SESS_MAGIC && c == &s->client);
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
		sess_enter(s, SP_RELAY);
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

	assert(s->magic == SESS_MAGIC && c == s->server);
	switch (ev) {
	case CONN_EV_READ:
	case CONN_EV_DRAINED:
		return sess_pump(s);
	case CONN_EV_EOF:
		s->up_eof = true;
		return sess_pump(s);
	case CONN_EV_ERROR:
		return sess_up_failed(s, s->server->errstr);
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
	char r[512];
	char *greeting;
	size_t glen;

	assert(s->magic == SESS_MAGIC && up == &s->up);
	for (size_t i = 0; i < up->nalerts; i++)
		sess_alert(s, &up->alerts[i].out, NULL, up->alerts[i].detail,
		    &up->pol);
	if (res == UP_RES_READY && up->action == UP_ACT_UPGRADED &&
	    s->env->pins != NULL)
		pin_note_dst(s->env->pins, (struct sockaddr *)&s->dst,
		    up->tls_info.vnum, up->tls_info.has_spki ?
		    up->tls_info.spki_raw : NULL, sess_now(s));

	switch (res) {
	case UP_RES_READY:
		if (sess_draining)
			return sess_finish(s, "shutdown", drain_reply);
		s->relayed = true;
		sess_enter(s, SP_RELAY);
		conn_set_cb(s->server, sess_up_cb, s);
		s->facts = up->pol;
		if (s->addr_dane && up->tls && sess_addr_refused(s, s->server->ssl))
			return sess_addr_block(s);
		greeting = up_take_greeting(up, &glen);
		s->conn_born = ev_now(s->loop);
		s->conn_sessions = 1;
		if (s->retrying) {
			/*
			 * The client has its greeting (the parked connection's):
			 * its first command goes again, over this connection.
			 */
			s->retrying = false;
			if (s->first_cmd != NULL)
				conn_write(s->server, s->first_cmd, s->first_len);
			free(s->first_cmd);
			s->first_cmd = NULL;
		} else {
			conn_write(&s->client, greeting, glen);
		}
		/* Kept for the next client, should this connection be parked. */
		free(s->greeting);
		s->greeting = greeting;
		s->greeting_len = glen;
		if (up->action != UP_ACT_UPGRADED)
			sess_raise(s, LOG_NOTICE);
		conn_read(s->server, true);
		conn_read(&s->client, true);
		return sess_pump(s);
	case UP_RES_REFUSED:
		sess_raise(s, LOG_NOTICE);
		snprintf(r, sizeof(r), "%s", up->reason);
		conn_write(&s->client, up->reply, up->reply_len);
		return sess_finish(s, r, NULL);
	case UP_RES_BLOCKED:
		s->blocked = true;
		snprintf(r, sizeof(r), "421 4.7.0 starttlsd: TLS to %s is "
		    "required but not available (%s), try again later\r\n",
		    s->dst_str, up->reason);
		sess_raise(s, LOG_WARNING);
		return sess_finish(s, up->reason, r);
	case UP_RES_INJECTION:
		sess_raise(s, LOG_WARNING);
		sess_attack(s, M_ATK_RESPONSE_INJECTION,
		    "bytes after the server's 220 to STARTTLS");
		snprintf(r, sizeof(r), "421 4.7.0 starttlsd: %s: "
		    "STARTTLS response injection, session aborted\r\n",
		    s->dst_str);
		return sess_finish(s, up->reason, r);
	case UP_RES_FAILED:
		sess_raise(s, LOG_WARNING);
		snprintf(r, sizeof(r), "421 4.4.2 starttlsd: %s: %s\r\n",
		    s->dst_str, up->reason);
		return sess_finish(s, up->reason, r);
	}
	return 0;
}

const char *
sess_refuse_str(enum sess_refuse r)
{
	switch (r) {
	case SESS_ACCEPT: return "accepted";
	case SESS_REFUSE_LOOP: return "loop";
	case SESS_REFUSE_NO_DST: return "no original destination";
	case SESS_REFUSE_SESSIONS: return "too many sessions";
	case SESS_REFUSE_CLIENT: return "too many sessions from this client";
	}
	return "unknown";
}

/* ---- start, drain ------------------------------------------------------------------------- */

void
sess_start(struct ev_loop *loop, struct sess_env *env, int fd,
    const struct sockaddr *client, const struct sockaddr *dst,
    socklen_t dstlen, enum sess_refuse refuse)
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
	addr_str(client, s->client_str, sizeof(s->client_str));
	memcpy(&s->client_addr, client, addr_len(client));
	if (env->upstream_len > 0) {
		dst = (const struct sockaddr *)&env->upstream_addr;
		dstlen = env->upstream_len;
	}
	addr_str(dst, s->dst_str, sizeof(s->dst_str));
	memcpy(&s->dst, dst, dstlen < sizeof(s->dst) ? dstlen : sizeof(s->dst));
	s->magic = SESS_MAGIC;
	conn_init(&s->client, loop, fd, env->cfg.buffer_size, sess_client_cb, s);
	if ((s->server = malloc(sizeof(*s->server))) == NULL) {
		log_msg(LOG_ERR, "error", "session: out of memory");
		conn_cleanup(&s->client);
		sess_env_unref(s->env);
		free(s);
		return;
	}
	conn_init(s->server, loop, -1, env->cfg.buffer_size, sess_up_cb, s);
	up_init(&s->up);
	s->next = sess_list;
	if (sess_list)
		sess_list->prev = s;
	sess_list = s;
	sess_live++;

	if (refuse != SESS_ACCEPT) {
		char r[200];
		sess_raise(s, LOG_WARNING);
		snprintf(r, sizeof(r), "421 %s starttlsd: %s, try again later\r\n",
		    refuse == SESS_REFUSE_LOOP ? "4.4.6" :
		    refuse == SESS_REFUSE_CLIENT ? "4.7.0" : "4.3.2",
		    sess_refuse_str(refuse));
		sess_finish(s, sess_refuse_str(refuse), r);
		return;
	}
	sess_enter(s, SP_UPSTREAM);
	s->counted = true;
	sess_shared_add(&s->client_addr, +1);
	metrics_session_open(+1);
	/* Watch the client for an early close; its bytes wait in the buffer. */
	conn_read(&s->client, true);
	/* What policyd learned of this address first (SNI, DANE), then dial. */
	if (sess_pdc != NULL && env->cfg.dane && env->upstream_len == 0) {
		s->pd_dial = true;
		s->pd_id = pdc_ask(sess_pdc, PD_ADDR, NULL,
		    (struct sockaddr *)&s->dst, SESS_ADDR_WAIT_MS,
		    sess_addr_answer, s);
		if (s->pd_id != 0)
			return;
		s->pd_dial = false;
	}
	sess_dial(s);
}

/* Dial the destination, or take a parked connection to it. */
static void
sess_dial(struct session *s)
{
	struct sess_env *env = s->env;
	struct ev_loop *loop = s->loop;
	const struct sockaddr *dst = (const struct sockaddr *)&s->dst;
	const struct sockaddr *client = (const struct sockaddr *)&s->client_addr;
	socklen_t dstlen = addr_len(dst);

	{
		struct policy_ctx pol;
		char key[PIN_KEY_MAX];

		sess_policy_ctx(s, policy_for_addr(&env->policy, dst),
		    pin_key_addr(dst, key, sizeof(key)) == 0 ? key : NULL, &pol);
		pol.dane = s->addr_dane;
		s->facts = pol;
		if (sess_take(s, &pol)) {
			/* A parked connection: the greeting now, no round trip. */
			if (s->env->pins != NULL)
				pin_note_dst(s->env->pins, (struct sockaddr *)&s->dst,
				    s->up.tls_info.vnum, s->up.tls_info.has_spki ?
				    s->up.tls_info.spki_raw : NULL, sess_now(s));
			s->relayed = true;
			sess_enter(s, SP_RELAY);
			conn_write(&s->client, s->greeting, s->greeting_len);
			conn_read(s->server, true);
			sess_pump(s);
			return;
		}
		if (up_start(&s->up, s->server, loop, &env->up, &pol,
		    s->sni[0] ? s->sni : NULL, client, dst, dstlen,
		    sess_up_done, s) < 0)
			return; /* done() ran and closed the session */
	}
}

/*
 * PD_ADDR's answer: a name learned for this address is sent as SNI; a
 * learned DANE RRset makes TLS required and is matched before the greeting.
 */
static void
sess_addr_answer(void *arg, const struct pd_pol *pol)
{
	struct session *s = arg;

	assert(s->magic == SESS_MAGIC && s->pd_dial && s->phase == SP_UPSTREAM);
	s->pd_id = 0;
	s->pd_dial = false;
	if (pol->sni != NULL && pol->sni[0] != '\0')
		snprintf(s->sni, sizeof(s->sni), "%s", pol->sni);
	if (pol->dane == PD_DANE_MATCH && pol->nhosts == 1 &&
	    !(pol->flags & PD_F_ANY_MX) &&
	    dane_rrset_parse(pol->hosts[0].rdata, pol->hosts[0].rdlen,
	    pol->hosts[0].nrr, &s->addr_rr) == DANE_PARSE_OK) {
		s->addr_dane = true;
		snprintf(s->addr_host, sizeof(s->addr_host), "%s",
		    pol->hosts[0].host);
		snprintf(s->addr_base, sizeof(s->addr_base), "%s",
		    pol->hosts[0].base);
	} else {
		dane_rrset_free(&s->addr_rr);
	}
	sess_dial(s);
}

/*
 * A learned DANE address whose chain does not match: alerted; true when it
 * is refused (enforce), the session then ends with sess_addr_block.
 */
static bool
sess_addr_refused(struct session *s, SSL *ssl)
{
	enum dane_result r = sess_addr_match(s, ssl);
	struct dp_out o;
	bool block;

	if (dane_result_ok(r) || r == DANE_NO_USABLE)
		return false;
	memset(&o, 0, sizeof(o));
	o.policy = DP_DANE;
	o.block = true;
	o.result = dp_dane_result(r);
	snprintf(o.detail, sizeof(o.detail), "%s (learned for this address)",
	    dane_result_str(r));
	snprintf(o.mx, sizeof(o.mx), "%s", s->addr_host);
	block = s->env->mode == POLICY_ENFORCE;
	sess_dp_alert(s, &o, block, NULL);
	return block;
}

static int
sess_addr_block(struct session *s)
{
	char r[512];

	s->blocked = true;
	snprintf(r, sizeof(r), "421 4.7.5 starttlsd: %s does not match the "
	    "DANE (TLSA) records of %s, try again later\r\n", s->dst_str,
	    s->addr_host);
	sess_raise(s, LOG_ERR);
	return sess_finish(s, "dane-failed", r);
}

/*
 * A learned DANE address, after the handshake: does the chain match its
 * TLSA RRset? DANE_MATCH_* or why not.
 */
static enum dane_result
sess_addr_match(struct session *s, SSL *ssl)
{
	const uint8_t *der[DANE_MAX_CHAIN];
	size_t len[DANE_MAX_CHAIN];
	struct dane_chain chain = { .der = der, .len = len };
	const char *names[2] = { s->addr_base, s->addr_host };

	chain.n = sess_chain(ssl, der, len, DANE_MAX_CHAIN);
	return dane_match(&s->addr_rr, &chain, names,
	    strcmp(s->addr_base, s->addr_host) != 0 ? 2 : 1, time(NULL), NULL);
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
