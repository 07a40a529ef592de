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
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/mman.h>

#include <openssl/rand.h>

#include "starttlsd/hash.h"
#include "starttlsd/log.h"
#include "starttlsd/tls.h"
#include "starttlsd/session.h"
#include "starttlsd/smtp.h"

#define SESS_MAX_INFLIGHT 128
#define SESS_BODY_MIN 1024 /* message bytes per client_timeout, at least */
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
	LR_RCPT_TLS,
	LR_DATA_NO_RCPT,
	LR_TOO_MANY_RCPT,
	LR_BARE_NEWLINE,
};

static const char *const local_text[] = {
	[LR_NONE] = "",
	[LR_STARTTLS_454] = "454 4.7.0 TLS not available on this leg (starttlsd encrypts the Internet leg)\r\n",
	[LR_STARTTLS_220] = "220 2.0.0 Ready to start TLS\r\n",
	[LR_STARTTLS_AGAIN] = "554 5.5.1 Error: TLS already active\r\n",
	[LR_LINE_TOO_LONG] = "500 5.5.2 Line too long\r\n",
	[LR_BDAT_SYNTAX] = "501 5.5.4 Syntax error in BDAT: closing, the chunk cannot be framed\r\n",
	[LR_RCPT_TLS] = "450 4.7.0 starttlsd: TLS to this recipient's domain is required but not available, try again later\r\n",
	[LR_DATA_NO_RCPT] = "451 4.7.0 starttlsd: no recipient may be sent without TLS, try again later\r\n",
	[LR_TOO_MANY_RCPT] = "452 4.5.3 Error: too many recipients\r\n",
	[LR_BARE_NEWLINE] = "500 5.5.2 Error: bare <CR> or <LF> in a command line\r\n",
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
	uint8_t rcpt;  /* RCPT: 1 + slot in txn, 0: none */
	uint8_t gen;   /* end of a message: its transaction */
};

#define SESS_TXN_SLOTS 32 /* recipient domains remembered, for two messages */
#define SESS_ALERTED 8      /* domains alerted once per session */

/* A recipient domain of the current transaction, for learning pins. */
struct txn_dom {
	char name[256];
	bool used;
	bool accepted;
	uint8_t gen;   /* the transaction it belongs to */
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
	bool blocked;              /* refused by policy */
	bool counted;              /* in the shared session counts */
	struct sockaddr_storage dst;
	struct sockaddr_storage client_addr;
	unsigned errors;           /* 4xx/5xx replies the client got */
	unsigned rcpts;            /* RCPTs in this transaction */
	/*
	 * Recipient domains by transaction: the current one, and the message
	 * whose final reply is still to come (clients pipeline MAIL after ".").
	 */
	struct txn_dom *txn;       /* SESS_TXN_SLOTS, allocated on first RCPT */
	uint8_t txn_gen;
	bool msg_pending;
	uint8_t msg_gen;
	unsigned rcpt_forwarded, rcpt_blocked;
	uint32_t alerted[SESS_ALERTED];
	size_t nalerted;
	unsigned alerts;
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

static int sess_pump(struct session *s);

static const char drain_reply[] =
    "421 4.3.2 starttlsd: shutting down, try again later\r\n";

/* ---- env ------------------------------------------------------------------ */

/* Turn a validated config into what sessions share. Takes cfg over. */
struct sess_env *
sess_env_new(struct config *cfg, struct pin_store *pins, char *err,
    size_t errlen)
{
	struct sess_env *e = calloc(1, sizeof(*e));

	if (e == NULL) {
		snprintf(err, errlen, "out of memory");
		config_free(cfg);
		return NULL;
	}
	e->refs = 1;
	e->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	if ((e->up_ctx = tls_upstream_ctx_new(&e->cfg, err, errlen)) == NULL)
		goto fail;
	if (e->cfg.client_cert != NULL &&
	    (e->client_ctx = tls_client_ctx_new(&e->cfg, err, errlen)) == NULL)
		goto fail;
	if (e->cfg.upstream != NULL) {
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
		char port[8];
		unsigned p;
		int r;

		config_split_hostport(e->cfg.upstream, e->upstream_host,
		    sizeof(e->upstream_host), &p);
		snprintf(port, sizeof(port), "%u", p);
		if ((r = getaddrinfo(e->upstream_host, port, &hints, &res)) != 0) {
			snprintf(err, errlen, "upstream: %s: %s", e->cfg.upstream,
			    gai_strerror(r));
			goto fail;
		}
		memcpy(&e->upstream_addr, res->ai_addr, res->ai_addrlen);
		e->upstream_len = res->ai_addrlen;
		freeaddrinfo(res);
	}
	e->mode = e->cfg.mode == CONFIG_MODE_ENFORCE ? POLICY_ENFORCE :
	    POLICY_MONITOR;
	if (e->cfg.policy_file != NULL &&
	    policy_load(e->cfg.policy_file, &e->policy, err, errlen) < 0) {
		char tmp[512];
		snprintf(tmp, sizeof(tmp), "policy_file: %s", err);
		snprintf(err, errlen, "%s", tmp);
		goto fail;
	}
	e->pins = pins;
	e->up = (struct up_params){
		.helo_name = e->cfg.helo_name,
		.ctx = e->up_ctx,
		.sni = NULL,
		.mark = e->cfg.upstream_mark,
		.transparent_source = e->cfg.transparent_source,
		.connect_timeout = e->cfg.connect_timeout,
		.greeting_timeout = e->cfg.greeting_timeout,
		.reply_timeout = e->cfg.reply_timeout,
		.tls_timeout = e->cfg.tls_timeout,
		.max_line = e->cfg.max_line_length,
		.max_lines = e->cfg.max_reply_lines,
		.bufmax = e->cfg.buffer_size,
	};
	/* A smarthost given by name gets SNI and a name check (recorded). */
	if (e->upstream_len > 0) {
		struct sockaddr_storage tmp;
		socklen_t tl;
		char probe[300];
		snprintf(probe, sizeof(probe), "%s", e->cfg.upstream);
		if (config_parse_addr(probe, &tmp, &tl) < 0)
			e->up.sni = e->upstream_host;
	}
	return e;
fail:
	sess_env_unref(e);
	return NULL;
}

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
	policy_free(&e->policy);
	config_free(&e->cfg);
	free(e);
}

/*
 * Session counts all workers share (max_sessions, max_sessions_per_client):
 * a total and a count per client-address bucket. Two clients that share a
 * bucket share its count, which can only make the limit stricter.
 */
struct sess_shared {
	uint32_t total;
	uint16_t per_client[65536];
};
/*
 * One slot per worker, so that the counts of a worker that died (even by
 * SIGKILL) can be dropped whole by the master. Readers add the slots up.
 */
static struct sess_shared sess_shared_local[1];
static struct sess_shared *sess_shared = sess_shared_local;
static size_t sess_nslots = 1, sess_slot;

int
sess_shared_init(size_t nslots)
{
	void *p = mmap(NULL, nslots * sizeof(struct sess_shared),
	    PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return -1;
	sess_shared = p;
	sess_nslots = nslots;
	return 0;
}

void
sess_shared_use(size_t slot)
{
	sess_slot = slot < sess_nslots ? slot : 0;
}

void
sess_shared_reset(size_t slot)
{
	if (slot < sess_nslots && sess_shared != sess_shared_local)
		memset(&sess_shared[slot], 0, sizeof(sess_shared[slot]));
}

static size_t
client_bucket(const struct sockaddr_storage *peer)
{
	uint32_t h = fnv1a_addr(FNV1A_INIT, peer, 0);

	return (h ^ (h >> 16)) & 0xffff;
}

static void
sess_counted(struct session *s, int delta)
{
	struct sess_shared *sh = &sess_shared[sess_slot];

	__atomic_add_fetch(&sh->total, (uint32_t)delta, __ATOMIC_RELAXED);
	__atomic_add_fetch(&sh->per_client[client_bucket(&s->client_addr)],
	    (uint16_t)delta, __ATOMIC_RELAXED);
}

unsigned
sess_count_client(const struct sockaddr_storage *peer)
{
	size_t b = client_bucket(peer);
	unsigned n = 0;

	for (size_t i = 0; i < sess_nslots; i++)
		n += __atomic_load_n(&sess_shared[i].per_client[b],
		    __ATOMIC_RELAXED);
	return n;
}

unsigned
sess_count_all(void)
{
	unsigned n = 0;

	for (size_t i = 0; i < sess_nslots; i++)
		n += __atomic_load_n(&sess_shared[i].total, __ATOMIC_RELAXED);
	return n;
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
	if (s->blocked)
		return "blocked";
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
		if (ti->resumed)
			log_str(&l, "resumed", "yes");
	}
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
	log_emit(&l, s->prio);
}

/* The one teardown path. Always returns -1: s is gone. */
static int
sess_close(struct session *s)
{
	sess_log(s);
	if (s->counted)
		sess_counted(s, -1);
	free(s->txn);
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
	s->phase = SP_CLOSING;
	conn_cork(&s->client, false);
	conn_cleanup(&s->up.conn);
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
static int
sess_up_failed(struct session *s, const char *why)
{
	char r[256];

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
	log_str(&l, "domain", domain);
	log_str(&l, "signal", policy_signal_str(o->sig));
	if (detail != NULL && detail[0] != '\0')
		log_str(&l, "detail", detail);
	if (ctx->pinned)
		log_int(&l, "pinned_since", (long long)ctx->pinned_since);
	else
		log_str(&l, "pinned_since", "never");
	log_str(&l, "policy", ctx->rule ? policy_level_str(ctx->rule->level) :
	    ctx->pinned ? "pin" : "none");
	if (ctx->rule != NULL)
		log_u64(&l, "policy_line", ctx->rule->line);
	log_str(&l, "mode", policy_mode_str(o->mode));
	log_str(&l, "action", o->block ? "blocked" : "allowed");
	log_str(&l, "tlsrpt", rpt ? rpt : "none");
	log_emit(&l, o->prio);
	sess_raise(s, o->prio);
}

/* event=attack: an attempt on the protocol itself, defeated. */
static void
sess_attack(struct session *s, const char *signal, const char *action,
    const char *detail)
{
	struct logline l;

	s->alerts++;
	log_begin(&l, "attack");
	log_str(&l, "id", s->id);
	log_str(&l, "client", s->client_str);
	log_str(&l, "dst", s->dst_str);
	log_str(&l, "signal", signal);
	log_str(&l, "detail", detail);
	log_str(&l, "action", action);
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
		break;
	}
}

/* Free the slots of transaction gen. */
static void
sess_txn_free(struct session *s, uint8_t gen)
{
	for (size_t i = 0; s->txn != NULL && i < SESS_TXN_SLOTS; i++)
		if (s->txn[i].used && s->txn[i].gen == gen)
			s->txn[i].used = false;
}

/* MAIL or RSET: a new transaction. */
static void
sess_txn_new(struct session *s)
{
	s->rcpts = 0;
	if (!s->msg_pending || s->msg_gen != s->txn_gen)
		sess_txn_free(s, s->txn_gen);
	s->txn_gen++;
	s->rcpt_forwarded = s->rcpt_blocked = 0;
}

/* The end of a message was sent: its reply will settle its domains. */
static uint8_t
sess_txn_sent(struct session *s)
{
	s->msg_pending = true;
	s->msg_gen = s->txn_gen;
	s->rcpts = 0;
	s->rcpt_forwarded = s->rcpt_blocked = 0;
	return s->txn_gen;
}

/* The slot for a recipient domain of the current transaction (1-based). */
static uint8_t
sess_txn_slot(struct session *s, const char *domain)
{
	size_t free_slot = SESS_TXN_SLOTS;

	if (s->txn == NULL &&
	    (s->txn = calloc(SESS_TXN_SLOTS, sizeof(*s->txn))) == NULL)
		return 0;
	for (size_t i = 0; i < SESS_TXN_SLOTS; i++) {
		if (!s->txn[i].used) {
			if (free_slot == SESS_TXN_SLOTS)
				free_slot = i;
			continue;
		}
		if (s->txn[i].gen == s->txn_gen &&
		    strcmp(s->txn[i].name, domain) == 0)
			return (uint8_t)(i + 1);
	}
	if (free_slot == SESS_TXN_SLOTS)
		return 0; /* more domains than we remember: not pinned, fine */
	s->txn[free_slot] = (struct txn_dom){ .used = true, .gen = s->txn_gen };
	snprintf(s->txn[free_slot].name, sizeof(s->txn[0].name), "%s", domain);
	return (uint8_t)(free_slot + 1);
}

/* The domain of "TO:<local@Domain.Example> params", lower-cased. */
static bool
rcpt_domain(const char *arg, size_t len, char *out, size_t cap)
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
	if (o.sig == POLICY_SIG_NONE)
		return false;
	if (o.alert && !sess_alerted_once(s, domain))
		sess_alert(s, &o, domain, o.sig == POLICY_SIG_VERIFY_FAILED ?
		    s->up.tls_info.verify : NULL, &ctx);
	return o.block;
}

/*
 * The final reply to message gen: if accepted over TLS, its recipients'
 * domains are pinned. Either way its slots are done.
 */
static void
sess_message_done(struct session *s, uint8_t gen, bool accepted)
{
	for (size_t i = 0; s->txn != NULL && i < SESS_TXN_SLOTS; i++) {
		struct txn_dom *t = &s->txn[i];
		if (!t->used || t->gen != gen)
			continue;
		if (accepted && t->accepted && s->up.tls && s->env->pins != NULL)
			pin_note_domain(s->env->pins, t->name, strlen(t->name),
			    (struct sockaddr *)&s->dst, sess_now(s));
		t->used = false;
	}
	if (s->msg_pending && s->msg_gen == gen)
		s->msg_pending = false;
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
	uint8_t gen = sess_txn_sent(s);

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
		sess_attack(s, "command-injection", "discarded",
		    "bytes pipelined after the client's STARTTLS");
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
		if ((t[0] == '4' || t[0] == '5') && sess_error(s) < 0)
			return -1;
		if (s->phase != SP_RELAY && s->phase != SP_CLIENT_TLS)
			return 0;
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
		s->reply_done = true;
		q_pop(s);

		if (cur.verb == SMTP_V_DATA && !(cur.flags & P_DATA_END) &&
		    rep.code == 354) {
			s->mode = CM_DATA;
			smtp_data_init(&s->data);
		}
		if (cur.verb == SMTP_V_AUTH && rep.code == 334)
			s->mode = CM_AUTH;
		if (cur.rcpt != 0 && s->txn != NULL &&
		    smtp_code_class(rep.code) == 2)
			s->txn[cur.rcpt - 1].accepted = true;
		if (cur.flags & (P_DATA_END | P_BDAT_LAST)) {
			bool ok = smtp_code_class(rep.code) == 2;
			if (ok)
				s->msgs++;
			sess_message_done(s, cur.gen, ok);
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
		conn_read(&s->up.conn, true);
	return 0;
}

/* ---- client -> server ------------------------------------------------------------- */

static bool
sess_forward(struct session *s, const char *p, size_t n)
{
	return conn_write(&s->up.conn, p, n) == 0;
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
	sess_attack(s, "smtp-smuggling", "blocked",
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
	char domain[256];
	uint8_t idx = 0;

	if (++s->rcpts > s->env->cfg.max_recipients) {
		q_push(s, SMTP_V_RCPT, LR_TOO_MANY_RCPT, 0);
		return 0;
	}
	if (rcpt_domain(cmd->arg, cmd->arg_len, domain, sizeof(domain))) {
		if (sess_rcpt_policy(s, domain)) {
			s->rcpt_blocked++;
			q_push(s, SMTP_V_RCPT, LR_RCPT_TLS, 0);
			return 0;
		}
		idx = sess_txn_slot(s, domain);
	}
	s->rcpt_forwarded++;
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
		sess_txn_new(s);
		sess_forward(s, line, n);
		q_push(s, cmd.verb, LR_NONE, 0);
		return 0;
	case SMTP_V_DATA:
		if (s->rcpt_forwarded == 0 && s->rcpt_blocked > 0) {
			/* Every recipient was refused by policy: no DATA. */
			q_push(s, cmd.verb, LR_DATA_NO_RCPT, 0);
			return 0;
		}
		/* FALLTHROUGH */
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

/* A command line (LF included) must end in CRLF and hold no other CR. */
static bool
bare_newline(const char *line, size_t n)
{
	return n < 2 || line[n - 2] != '\r' || memchr(line, '\r', n - 2) != NULL;
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
			if (room == 0)
				goto out;
			n = len < room ? len : room;
			if (n > s->bdat_left)
				n = (size_t)s->bdat_left;
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
		if (bare_newline(h, n)) {
			/*
			 * A line end the server may not see where we do: never
			 * relay it, or commands could hide inside (smuggling).
			 */
			q_push(s, SMTP_V_UNKNOWN, LR_BARE_NEWLINE, 0);
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
		if (s->mode == CM_DATA || s->mode == CM_BDAT)
			ck = TK_CLIENT_BODY;
		else if (s->qlen == 0 || conn_unsent(&s->client) > 0)
			ck = TK_CLIENT;
		if (p != NULL && p->local == LR_NONE)
			uk = (p->flags & (P_DATA_END | P_BDAT_LAST)) ? TK_DATA :
			    TK_REPLY;
		else if (conn_unsent(&s->up.conn) > 0)
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
		conn_timeout(&s->up.conn, uk == TK_DATA ? cfg->data_timeout :
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
		conn_trim(&s->up.conn);
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

	return smtp_reply_parse(buf_head(&s->up.conn.in),
	    buf_len(&s->up.conn.in), s->env->up.max_line, s->env->up.max_lines,
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
	conn_cork(&s->up.conn, true);
	if (sess_relay(s) < 0)
		return -1;
	unsent = conn_unsent(&s->client) + conn_unsent(&s->up.conn);
	conn_cork(&s->client, false);
	conn_cork(&s->up.conn, false);
	if (s->phase != SP_RELAY)
		return 0;
	/*
	 * What the cork held back may have filled a buffer and stopped the
	 * relay; once sent, nothing else (no DRAINED) would restart it.
	 */
	if (conn_unsent(&s->client) + conn_unsent(&s->up.conn) < unsent &&
	    (buf_len(&s->client.in) > 0 || buf_len(&s->up.conn.in) > 0 ||
	    s->qlen > 0) && sess_relay(s) < 0)
		return -1;
	if (s->phase != SP_RELAY)
		return 0;

	if (s->up_eof && (buf_len(&s->up.conn.in) == 0 ||
	    sess_partial_reply(s)))
		return sess_up_failed(s, "connection closed by server");
	if (s->client_eof) {
		if (s->mode == CM_DATA || s->mode == CM_BDAT) {
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
	char r[512];

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
		s->phase = SP_RELAY;
		up->conn.cb = sess_up_cb;
		up->conn.arg = s;
		conn_write(&s->client, up->greeting, up->greeting_len);
		free(up->greeting);
		up->greeting = NULL;
		if (up->action != UP_ACT_UPGRADED)
			sess_raise(s, LOG_NOTICE);
		conn_read(&s->up.conn, true);
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
	case UP_RES_FAILED:
		sess_raise(s, LOG_WARNING);
		if (strcmp(up->reason, "response-injection") == 0) {
			sess_attack(s, "response-injection", "blocked",
			    "bytes after the server's 220 to STARTTLS");
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
	memcpy(&s->client_addr, client, client->sa_family == AF_INET ?
	    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
	if (env->upstream_len > 0) {
		dst = (const struct sockaddr *)&env->upstream_addr;
		dstlen = env->upstream_len;
	}
	sess_addr_str(dst, s->dst_str, sizeof(s->dst_str));
	memcpy(&s->dst, dst, dstlen < sizeof(s->dst) ? dstlen : sizeof(s->dst));
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
		sess_raise(s, LOG_WARNING);
		snprintf(r, sizeof(r), "421 %s starttlsd: %s, try again later\r\n",
		    strcmp(refuse, "loop") == 0 ? "4.4.6" :
		    strstr(refuse, "client") != NULL ? "4.7.0" : "4.3.2", refuse);
		sess_finish(s, refuse, r);
		return;
	}
	s->phase = SP_UPSTREAM;
	s->counted = true;
	sess_counted(s, +1);
	/* Watch the client for an early close; its bytes wait in the buffer. */
	conn_read(&s->client, true);
	{
		struct policy_ctx pol;
		char key[PIN_KEY_MAX];

		sess_policy_ctx(s, policy_for_addr(&env->policy, dst),
		    pin_key_addr(dst, key, sizeof(key)) == 0 ? key : NULL, &pol);
		if (up_start(&s->up, loop, &env->up, &pol, client, dst, dstlen,
		    sess_up_done, s) < 0)
			return; /* done() ran and closed the session */
	}
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
