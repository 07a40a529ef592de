/*
 * metrics: shared counters and their Prometheus text exposition.
 *
 * Everything is a uint64_t added to with relaxed atomics: a scrape may see
 * one session's counters half added, never a torn value. Sums of seconds
 * are kept in microseconds.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "starttlsd/metrics.h"

#define M_MAGIC 0x6d657472u   /* "metr" */
#define M_VERSION 2

static const double dur_buckets[] = { 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300 };
static const double hs_buckets[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5 };
#define NDUR (sizeof(dur_buckets) / sizeof(dur_buckets[0]))
#define NHS (sizeof(hs_buckets) / sizeof(hs_buckets[0]))

struct m_hist {
	uint64_t bucket[NDUR + 1]; /* NDUR == NHS; the last one is +Inf */
	uint64_t count;
	uint64_t sum_us;
};

struct m_shared {
	uint32_t magic, version;
	int64_t started;                        /* unix time of the daemon's start */
	uint64_t sessions[M_ACTION_N][M_TLSV_N];
	uint64_t messages[M_ACTION_N][M_TLSV_N];
	uint64_t bytes_up, bytes_down;
	struct m_hist session_dur[M_ACTION_N];
	uint64_t tls_errors[M_SIG_N];
	uint64_t downgrades[M_SIG_N][2];        /* [sig][blocked] */
	uint64_t attacks[M_ATTACK_N];
	struct m_hist handshake[M_TLSV_N];
	uint64_t worker_starts, worker_exits[2]; /* [expected] */
	uint64_t workers;
	uint64_t pinstore_errors[M_PINOP_N];
	uint64_t reloads[2];                     /* [ok] */
	uint64_t rcpt_domains;
	uint64_t reused, reuse_retries, handoffs;
	uint64_t open[M_SLOTS];                  /* sessions open, per worker */
	uint64_t pinsync_up;                     /* 0/1; 2: no pin_store = Redis */
	uint64_t pinsync[M_SYNC_N];
	uint64_t parked[M_SLOTS];                /* parked connections, per worker */
	uint64_t domain_policy[2][PD_R_MAX_][2]; /* [dane][result][blocked] */
};

static struct m_shared *M;
static size_t m_slot;

static void
add(uint64_t *p, uint64_t n)
{
	__atomic_add_fetch(p, n, __ATOMIC_RELAXED);
}

static uint64_t
get(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

const char *
m_attack_str(enum m_attack a)
{
	switch (a) {
	case M_ATK_RESPONSE_INJECTION: return "response-injection";
	case M_ATK_COMMAND_INJECTION: return "command-injection";
	case M_ATK_SMTP_SMUGGLING: return "smtp-smuggling";
	case M_ATK_BDAT_NOT_OFFERED: return "bdat-not-offered";
	case M_ATTACK_N: break;
	}
	return "unknown";
}

const char *
m_attack_action_str(enum m_attack a)
{
	switch (a) {
	case M_ATK_RESPONSE_INJECTION: return "blocked";
	case M_ATK_COMMAND_INJECTION: return "discarded";
	case M_ATK_SMTP_SMUGGLING: return "blocked";
	case M_ATK_BDAT_NOT_OFFERED: return "refused";
	case M_ATTACK_N: break;
	}
	return "unknown";
}

static const char *const action_str[M_ACTION_N] = {
	"upgraded", "plaintext", "fallback", "refused", "blocked",
};
static const char *const tlsv_str[M_TLSV_N] = {
	"none", "TLSv1.2", "TLSv1.3", "other",
};
static const char *const pinop_str[M_PINOP_N] = {
	"open", "commit", "read", "sync", "other",
};

enum m_tlsv
m_tlsv_of(const char *version)
{
	if (version == NULL || version[0] == '\0' || strcmp(version, "none") == 0)
		return M_TLS_NONE;
	if (strcmp(version, "TLSv1.3") == 0)
		return M_TLS13;
	if (strcmp(version, "TLSv1.2") == 0)
		return M_TLS12;
	return M_TLS_OTHER;
}

int
metrics_init(const char *path, long uid, char *err, size_t errlen)
{
	void *p;
	int fd = -1;

	if (path != NULL) {
		unlink(path);
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		    0644);
		/*
		 * Allocated now, not on the first write through the mapping:
		 * a full file system would kill the writer with SIGBUS there.
		 */
		if (fd < 0 || ftruncate(fd, sizeof(struct m_shared)) < 0 ||
		    (errno = posix_fallocate(fd, 0, sizeof(struct m_shared))) != 0) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			if (fd >= 0) {
				close(fd);
				unlink(path);
			}
			return -1;
		}
		/* The workers add to it; readable by all (no secrets in it). */
		if (uid != -1 && fchown(fd, (uid_t)uid, (gid_t)-1) < 0) {
			snprintf(err, errlen, "%s: chown: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
		p = mmap(NULL, sizeof(struct m_shared), PROT_READ | PROT_WRITE,
		    MAP_SHARED, fd, 0);
		close(fd);
	} else {
		p = mmap(NULL, sizeof(struct m_shared), PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	}
	if (p == MAP_FAILED) {
		snprintf(err, errlen, "metrics: mmap: %s", strerror(errno));
		return -1;
	}
	if (M != NULL)
		munmap(M, sizeof(*M));
	M = p;
	memset(M, 0, sizeof(*M));
	M->magic = M_MAGIC;
	M->version = M_VERSION;
	M->pinsync_up = 2;  /* not a fleet until the sync process says */
	M->started = (int64_t)time(NULL);
	return 0;
}

bool
metrics_on(void)
{
	return M != NULL;
}

void
metrics_use(size_t slot)
{
	m_slot = slot < M_SLOTS ? slot : 0;
}

void
metrics_reset_slot(size_t slot)
{
	if (M != NULL && slot < M_SLOTS) {
		__atomic_store_n(&M->open[slot], 0, __ATOMIC_RELAXED);
		__atomic_store_n(&M->parked[slot], 0, __ATOMIC_RELAXED);
	}
}

/* ---- writers ------------------------------------------------------------------ */

static void
observe(struct m_hist *h, const double *bounds, size_t n, double v)
{
	size_t i = 0;

	if (v < 0)
		v = 0;
	while (i < n && v > bounds[i])
		i++;
	add(&h->bucket[i], 1);
	add(&h->count, 1);
	add(&h->sum_us, (uint64_t)(v * 1e6));
}

void
metrics_session_open(int delta)
{
	if (M != NULL)
		__atomic_add_fetch(&M->open[m_slot], (uint64_t)(int64_t)delta,
		    __ATOMIC_RELAXED);
}

void
metrics_session(const struct m_session *m)
{
	if (M == NULL)
		return;
	assert(m->action < M_ACTION_N && m->tls < M_TLSV_N);
	add(&M->sessions[m->action][m->tls], 1);
	add(&M->messages[m->action][m->tls], m->msgs);
	add(&M->bytes_up, m->bytes_up);
	add(&M->bytes_down, m->bytes_down);
	add(&M->rcpt_domains, m->rcpt_domains);
	observe(&M->session_dur[m->action], dur_buckets, NDUR, m->duration);
	if (m->tls_error != POLICY_SIG_NONE && (unsigned)m->tls_error < M_SIG_N)
		add(&M->tls_errors[m->tls_error], 1);
}

void
metrics_downgrade(enum policy_signal sig, bool blocked)
{
	if (M != NULL && (unsigned)sig < M_SIG_N)
		add(&M->downgrades[sig][blocked], 1);
}

void
metrics_attack(enum m_attack a)
{
	if (M != NULL && a < M_ATTACK_N)
		add(&M->attacks[a], 1);
}

void
metrics_handshake(enum m_tlsv v, double seconds)
{
	if (M != NULL && v < M_TLSV_N)
		observe(&M->handshake[v], hs_buckets, NHS, seconds);
}

void
metrics_worker_started(void)
{
	if (M != NULL)
		add(&M->worker_starts, 1);
}

void
metrics_worker_exited(bool expected)
{
	if (M != NULL)
		add(&M->worker_exits[expected], 1);
}

void
metrics_workers(unsigned n)
{
	if (M != NULL)
		__atomic_store_n(&M->workers, n, __ATOMIC_RELAXED);
}

void
metrics_pinstore_error(enum m_pinop op)
{
	if (M != NULL && op < M_PINOP_N)
		add(&M->pinstore_errors[op], 1);
}

void
metrics_pinsync_up(bool up)
{
	if (M != NULL)
		__atomic_store_n(&M->pinsync_up, up ? 1 : 0, __ATOMIC_RELAXED);
}

void
metrics_pinsync(enum m_sync what, uint64_t n)
{
	if (M != NULL && what < M_SYNC_N)
		add(&M->pinsync[what], n);
}

void
metrics_reload(bool ok)
{
	if (M != NULL)
		add(&M->reloads[ok], 1);
}

void
metrics_domain_policy(bool dane, enum pd_result r, bool blocked)
{
	if (M != NULL && (unsigned)r < PD_R_MAX_)
		add(&M->domain_policy[dane][r][blocked], 1);
}

void
metrics_reused(void)
{
	if (M != NULL)
		add(&M->reused, 1);
}

void
metrics_handoff(void)
{
	if (M != NULL)
		add(&M->handoffs, 1);
}

void
metrics_reuse_retry(void)
{
	if (M != NULL)
		add(&M->reuse_retries, 1);
}

void
metrics_parked(int n)
{
	if (M != NULL)
		__atomic_store_n(&M->parked[m_slot], (uint64_t)(n < 0 ? 0 : n),
		    __ATOMIC_RELAXED);
}

/* ---- the text format ----------------------------------------------------------- */

struct out {
	char *p;
	size_t cap, len;
	bool full;
};

static void
put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->full)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= o->cap - o->len) {
		o->full = true;
		return;
	}
	o->len += (size_t)n;
}

static void
head(struct out *o, const char *name, const char *type, const char *help)
{
	put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
hist(struct out *o, const char *name, const char *label, const char *value,
    const struct m_hist *h, const double *bounds, size_t n)
{
	uint64_t cum = 0;

	for (size_t i = 0; i <= n; i++) {
		cum += get(&h->bucket[i]);
		if (i < n)
			put(o, "%s_bucket{%s=\"%s\",le=\"%g\"} %llu\n", name, label,
			    value, bounds[i], (unsigned long long)cum);
		else
			put(o, "%s_bucket{%s=\"%s\",le=\"+Inf\"} %llu\n", name,
			    label, value, (unsigned long long)cum);
	}
	put(o, "%s_sum{%s=\"%s\"} %.6f\n", name, label, value,
	    (double)get(&h->sum_us) / 1e6);
	put(o, "%s_count{%s=\"%s\"} %llu\n", name, label, value,
	    (unsigned long long)get(&h->count));
}

static long
render(const struct m_shared *m, char *buf, size_t cap, long long pins)
{
	struct out o = { .p = buf, .cap = cap };
	uint64_t open = 0, parked = 0;

	head(&o, "starttlsd_sessions_total", "counter",
	    "Sessions ended, by action and server-leg TLS version.");
	for (int a = 0; a < M_ACTION_N; a++)
		for (int v = 0; v < M_TLSV_N; v++)
			put(&o, "starttlsd_sessions_total{action=\"%s\",tls_version=\"%s\"} %llu\n",
			    action_str[a], tlsv_str[v],
			    (unsigned long long)get(&m->sessions[a][v]));
	head(&o, "starttlsd_messages_total", "counter",
	    "Messages accepted by servers, by the session's action and TLS version.");
	for (int a = 0; a < M_ACTION_N; a++)
		for (int v = 0; v < M_TLSV_N; v++)
			put(&o, "starttlsd_messages_total{action=\"%s\",tls_version=\"%s\"} %llu\n",
			    action_str[a], tlsv_str[v],
			    (unsigned long long)get(&m->messages[a][v]));
	head(&o, "starttlsd_client_received_bytes_total", "counter",
	    "Bytes read from clients on the LAN leg.");
	put(&o, "starttlsd_client_received_bytes_total %llu\n",
	    (unsigned long long)get(&m->bytes_up));
	head(&o, "starttlsd_client_sent_bytes_total", "counter",
	    "Bytes written to clients on the LAN leg.");
	put(&o, "starttlsd_client_sent_bytes_total %llu\n",
	    (unsigned long long)get(&m->bytes_down));
	head(&o, "starttlsd_session_duration_seconds", "histogram",
	    "Session durations, by action.");
	for (int a = 0; a < M_ACTION_N; a++)
		hist(&o, "starttlsd_session_duration_seconds", "action",
		    action_str[a], &m->session_dur[a], dur_buckets, NDUR);
	head(&o, "starttlsd_tls_errors_total", "counter",
	    "Sessions whose server leg did not get TLS, by signal.");
	for (int s = 1; s < M_SIG_N; s++)
		if (s <= POLICY_SIG_HANDSHAKE_FAILED)
			put(&o, "starttlsd_tls_errors_total{signal=\"%s\"} %llu\n",
			    policy_signal_str((enum policy_signal)s),
			    (unsigned long long)get(&m->tls_errors[s]));
	head(&o, "starttlsd_downgrades_total", "counter",
	    "Downgrade signals (event=downgrade lines), by signal, action and RFC 8460 result type.");
	for (int s = 1; s < M_SIG_N; s++)
		for (int b = 0; b < 2; b++) {
			const char *r = policy_tlsrpt((enum policy_signal)s);
			put(&o, "starttlsd_downgrades_total{signal=\"%s\",action=\"%s\",tlsrpt=\"%s\"} %llu\n",
			    policy_signal_str((enum policy_signal)s),
			    b ? "blocked" : "allowed", r ? r : "none",
			    (unsigned long long)get(&m->downgrades[s][b]));
		}
	head(&o, "starttlsd_attacks_total", "counter",
	    "Protocol attacks defeated (event=attack lines), by signal and action.");
	for (int a = 0; a < M_ATTACK_N; a++)
		put(&o, "starttlsd_attacks_total{signal=\"%s\",action=\"%s\"} %llu\n",
		    m_attack_str((enum m_attack)a),
		    m_attack_action_str((enum m_attack)a),
		    (unsigned long long)get(&m->attacks[a]));
	head(&o, "starttlsd_tls_handshake_duration_seconds", "histogram",
	    "Server-leg TLS handshakes, from STARTTLS's 220 to the handshake's end.");
	for (int v = M_TLS12; v < M_TLSV_N; v++)
		hist(&o, "starttlsd_tls_handshake_duration_seconds",
		    "tls_version", tlsv_str[v], &m->handshake[v], hs_buckets, NHS);
	head(&o, "starttlsd_worker_starts_total", "counter",
	    "Workers started by the master.");
	put(&o, "starttlsd_worker_starts_total %llu\n",
	    (unsigned long long)get(&m->worker_starts));
	head(&o, "starttlsd_worker_exits_total", "counter",
	    "Workers that exited; expected=\"no\": not asked to (crash, kill).");
	put(&o, "starttlsd_worker_exits_total{expected=\"yes\"} %llu\n",
	    (unsigned long long)get(&m->worker_exits[1]));
	put(&o, "starttlsd_worker_exits_total{expected=\"no\"} %llu\n",
	    (unsigned long long)get(&m->worker_exits[0]));
	head(&o, "starttlsd_pinstore_errors_total", "counter",
	    "Pin store errors (event=pinstore lines), by operation.");
	for (int p = 0; p < M_PINOP_N; p++)
		put(&o, "starttlsd_pinstore_errors_total{op=\"%s\"} %llu\n",
		    pinop_str[p], (unsigned long long)get(&m->pinstore_errors[p]));
	if (get(&m->pinsync_up) <= 1) {
		static const char *const sync_name[M_SYNC_N] = {
			"starttlsd_pinsync_outages_total",
			"starttlsd_pinsync_published_total",
			"starttlsd_pinsync_merged_total",
			"starttlsd_pinsync_skipped_total",
		};
		static const char *const sync_help[M_SYNC_N] = {
			"Times Redis went down or too slow (event=pinstore action=redis-down).",
			"Own pin records published to Redis.",
			"Keys merged into the local store from Redis.",
			"Items under the prefix skipped as garbage (event=pinstore action=skipped).",
		};

		head(&o, "starttlsd_pinsync_up", "gauge",
		    "1 while the fleet's Redis (pin_store) is connected, else 0.");
		put(&o, "starttlsd_pinsync_up %llu\n",
		    (unsigned long long)get(&m->pinsync_up));
		for (int i = 0; i < M_SYNC_N; i++) {
			head(&o, sync_name[i], "counter", sync_help[i]);
			put(&o, "%s %llu\n", sync_name[i],
			    (unsigned long long)get(&m->pinsync[i]));
		}
	}
	head(&o, "starttlsd_config_reloads_total", "counter",
	    "SIGHUP reloads, by result.");
	put(&o, "starttlsd_config_reloads_total{result=\"success\"} %llu\n",
	    (unsigned long long)get(&m->reloads[1]));
	put(&o, "starttlsd_config_reloads_total{result=\"failure\"} %llu\n",
	    (unsigned long long)get(&m->reloads[0]));
	head(&o, "starttlsd_recipient_domains_total", "counter",
	    "Distinct recipient domains accepted by servers, summed over sessions.");
	put(&o, "starttlsd_recipient_domains_total %llu\n",
	    (unsigned long long)get(&m->rcpt_domains));
	head(&o, "starttlsd_upstream_reused_total", "counter",
	    "Sessions that took a parked server connection (no new connection, no handshake).");
	put(&o, "starttlsd_upstream_reused_total %llu\n",
	    (unsigned long long)get(&m->reused));
	head(&o, "starttlsd_upstream_reuse_retries_total", "counter",
	    "Parked connections found dead at the first command: a fresh one was made, invisibly.");
	put(&o, "starttlsd_upstream_reuse_retries_total %llu\n",
	    (unsigned long long)get(&m->reuse_retries));
	head(&o, "starttlsd_domain_policy_total", "counter",
	    "Recipient domains judged under DANE or MTA-STS, by policy, RFC 8460 result and action.");
	for (int d = 1; d >= 0; d--)
		for (int r = 0; r < PD_R_MAX_; r++)
			for (int b = 0; b < 2; b++) {
				uint64_t v = get(&m->domain_policy[d][r][b]);
				/* Every result and action exists for every policy, but
				 * a success is never blocked: those series are left out. */
				if (r == PD_R_SUCCESS && b)
					continue;
				put(&o, "starttlsd_domain_policy_total{policy=\"%s\",result=\"%s\",action=\"%s\"} %llu\n",
				    d ? "dane" : "mta-sts",
				    pd_result_str((enum pd_result)r),
				    r == PD_R_SUCCESS ? "passed" : b ? "blocked" :
				    "allowed", (unsigned long long)v);
			}
	head(&o, "starttlsd_upstream_handoffs_total", "counter",
	    "Sessions handed to the worker holding a parked connection to their destination.");
	put(&o, "starttlsd_upstream_handoffs_total %llu\n",
	    (unsigned long long)get(&m->handoffs));
	for (size_t i = 0; i < M_SLOTS; i++) {
		open += get(&m->open[i]);
		parked += get(&m->parked[i]);
	}
	head(&o, "starttlsd_upstream_parked", "gauge",
	    "Parked server connections now (all workers).");
	put(&o, "starttlsd_upstream_parked %llu\n", (unsigned long long)parked);
	head(&o, "starttlsd_sessions_open", "gauge", "Sessions open now.");
	put(&o, "starttlsd_sessions_open %llu\n", (unsigned long long)open);
	head(&o, "starttlsd_workers", "gauge", "Workers running now.");
	put(&o, "starttlsd_workers %llu\n", (unsigned long long)get(&m->workers));
	if (pins >= 0) {
		head(&o, "starttlsd_pins", "gauge", "Pins in the store (unexpired).");
		put(&o, "starttlsd_pins %lld\n", pins);
	}
	head(&o, "starttlsd_start_time_seconds", "gauge",
	    "When the daemon started (unix time): counters start from zero then.");
	put(&o, "starttlsd_start_time_seconds %lld\n", (long long)m->started);
	return o.full ? -1 : (long)o.len;
}

long
metrics_render(char *out, size_t cap, long long pins)
{
	if (M == NULL)
		return -1;
	return render(M, out, cap, pins);
}

long
metrics_render_file(const char *path, char *out, size_t cap, long long pins,
    char *err, size_t errlen)
{
	struct stat st;
	const struct m_shared *m;
	long n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || (size_t)st.st_size != sizeof(struct m_shared)) {
		snprintf(err, errlen, "%s: not a metrics file of this version",
		    path);
		close(fd);
		return -1;
	}
	m = mmap(NULL, sizeof(*m), PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED) {
		snprintf(err, errlen, "%s: mmap: %s", path, strerror(errno));
		return -1;
	}
	if (m->magic != M_MAGIC || m->version != M_VERSION) {
		snprintf(err, errlen, "%s: not a metrics file of this version",
		    path);
		munmap((void *)(uintptr_t)m, sizeof(*m));
		return -1;
	}
	n = render(m, out, cap, pins);
	munmap((void *)(uintptr_t)m, sizeof(*m));
	if (n < 0)
		snprintf(err, errlen, "metrics: output buffer too small");
	return n;
}

/* ---- the HTTP endpoint ----------------------------------------------------------- */

#define MH_MAX 8         /* connections at once, per worker */
#define MH_REQ_MAX 4096  /* the request line and headers */
#define MH_TIMEOUT 5.0

struct mh_conn {
	int fd;
	ev_io io;
	ev_timer timer;
	char req[MH_REQ_MAX];
	size_t reqlen;
	char *resp;
	size_t resplen, sent;
	bool in_use;
};

static struct {
	ev_io accept;
	bool on;
	struct mh_conn conns[MH_MAX];
	long long (*pins_cb)(void *);
	void *arg;
} mh;

static void
mh_close(struct ev_loop *loop, struct mh_conn *c)
{
	ev_io_stop(loop, &c->io);
	ev_timer_stop(loop, &c->timer);
	close(c->fd);
	free(c->resp);
	c->resp = NULL;
	c->in_use = false;
}

static void mh_io_cb(struct ev_loop *loop, ev_io *w, int revents);

static void
mh_respond(struct ev_loop *loop, struct mh_conn *c, int code, const char *text,
    const char *body, size_t bodylen)
{
	char hdr[256];
	int n = snprintf(hdr, sizeof(hdr), "HTTP/1.0 %d %s\r\n"
	    "Content-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
	    code, text, code == 200 ?
	    "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8",
	    bodylen);

	if (n < 0 || (c->resp = malloc((size_t)n + bodylen)) == NULL) {
		mh_close(loop, c);
		return;
	}
	memcpy(c->resp, hdr, (size_t)n);
	memcpy(c->resp + n, body, bodylen);
	c->resplen = (size_t)n + bodylen;
	c->sent = 0;
	ev_io_stop(loop, &c->io);
	ev_io_set(&c->io, c->fd, EV_WRITE);
	ev_io_start(loop, &c->io);
}

static void
mh_request(struct ev_loop *loop, struct mh_conn *c)
{
	char *eol = memchr(c->req, '\n', c->reqlen);
	size_t n = (size_t)(eol - c->req);

	if (n > 0 && c->req[n - 1] == '\r')
		n--;
	if (n >= 4 && memcmp(c->req, "GET ", 4) == 0) {
		const char *path = c->req + 4;
		size_t plen = n - 4;
		const char *sp = memchr(path, ' ', plen);

		if (sp != NULL)
			plen = (size_t)(sp - path);
		if ((plen == 8 && memcmp(path, "/metrics", 8) == 0) ||
		    (plen == 1 && path[0] == '/')) {
			char *body = malloc(METRICS_TEXT_MAX);
			long len;
			long long pins = mh.pins_cb ? mh.pins_cb(mh.arg) : -1;

			if (body == NULL) {
				mh_close(loop, c);
				return;
			}
			len = metrics_render(body, METRICS_TEXT_MAX, pins);
			if (len < 0)
				mh_respond(loop, c, 500, "Internal Server Error",
				    "metrics unavailable\n", 20);
			else
				mh_respond(loop, c, 200, "OK", body, (size_t)len);
			free(body);
			return;
		}
		mh_respond(loop, c, 404, "Not Found", "try /metrics\n", 13);
		return;
	}
	mh_respond(loop, c, 405, "Method Not Allowed", "GET only\n", 9);
}

static void
mh_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct mh_conn *c = w->data;
	ssize_t r;

	if (revents & EV_WRITE) {
		r = send(c->fd, c->resp + c->sent, c->resplen - c->sent,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (r <= 0 || (c->sent += (size_t)r) == c->resplen)
			mh_close(loop, c);
		return;
	}
	r = recv(c->fd, c->req + c->reqlen, sizeof(c->req) - c->reqlen,
	    MSG_DONTWAIT);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r <= 0) {
		mh_close(loop, c);
		return;
	}
	c->reqlen += (size_t)r;
	/* The request line is all we need; headers are not waited for. */
	if (memchr(c->req, '\n', c->reqlen) != NULL)
		mh_request(loop, c);
	else if (c->reqlen == sizeof(c->req))
		mh_respond(loop, c, 400, "Bad Request", "line too long\n", 14);
}

static void
mh_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)revents;
	mh_close(loop, w->data);
}

static void
mh_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct mh_conn *c = NULL;
	int fd;

	(void)revents;
	fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return; /* another worker took it, or a transient error */
	for (size_t i = 0; i < MH_MAX && c == NULL; i++)
		if (!mh.conns[i].in_use)
			c = &mh.conns[i];
	if (c == NULL) {
		close(fd); /* bounded: a scraper retries */
		return;
	}
	memset(c, 0, sizeof(*c));
	c->in_use = true;
	c->fd = fd;
	ev_io_init(&c->io, mh_io_cb, fd, EV_READ);
	c->io.data = c;
	ev_timer_init(&c->timer, mh_timer_cb, MH_TIMEOUT, 0.);
	c->timer.data = c;
	ev_io_start(loop, &c->io);
	ev_timer_start(loop, &c->timer);
}

void
metrics_serve(struct ev_loop *loop, int fd, long long (*pins_cb)(void *),
    void *arg)
{
	if (fd < 0 || mh.on)
		return;
	mh.pins_cb = pins_cb;
	mh.arg = arg;
	ev_io_init(&mh.accept, mh_accept_cb, fd, EV_READ);
	ev_io_start(loop, &mh.accept);
	mh.on = true;
}

void
metrics_serve_stop(struct ev_loop *loop)
{
	if (!mh.on)
		return;
	ev_io_stop(loop, &mh.accept);
	for (size_t i = 0; i < MH_MAX; i++)
		if (mh.conns[i].in_use)
			mh_close(loop, &mh.conns[i]);
	mh.on = false;
}
