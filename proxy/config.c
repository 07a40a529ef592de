/*
 * config: one table of keys drives the file parser, the long options, the
 * defaults, the bounds and --help, so the three cannot drift apart.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "starttlsd/config.h"
#include "starttlsd/nft.h"
#include "starttlsd/pinsync.h"

#define CONFIG_LINE_MAX 4096

enum ck_type { CK_BOOL, CK_STR, CK_UINT, CK_DURATION, CK_SIZE, CK_LIST, CK_TLSVER,
    CK_ENUM };

struct config_key {
	const char *name;
	enum ck_type type;
	size_t off;
	const char *def;   /* default, as it would be written in the file */
	uint64_t min, max; /* numeric types */
	const char *help;
};

/* CK_ENUM keys: their values, by enum value. */
static const char *const mode_names[] = { "monitor", "enforce", NULL };
static const char *const method_names[] = { "redirect", "tproxy", NULL };

_Static_assert(sizeof(enum config_mode) == sizeof(int) &&
    sizeof(enum config_intercept_method) == sizeof(int),
    "CK_ENUM fields are stored as int");

const char *
config_mode_str(enum config_mode m)
{
	return m == CONFIG_MODE_ENFORCE ? "enforce" : "monitor";
}

const char *
config_intercept_method_str(enum config_intercept_method m)
{
	return m == CONFIG_INTERCEPT_TPROXY ? "tproxy" : "redirect";
}

#define OFF(f) offsetof(struct config, f)

static const struct config_key config_keys[] = {
	{ "foreground", CK_BOOL, OFF(foreground), "no", 0, 0,
	  "stay in the foreground (-f)" },
	{ "log_stderr", CK_BOOL, OFF(log_stderr), "no", 0, 0,
	  "mirror every log line to stderr" },
	{ "pid_file", CK_STR, OFF(pid_file), NULL, 0, 0,
	  "write the process id here" },
	{ "workers", CK_UINT, OFF(workers), "0", 0, 64,
	  "worker processes (0: one per CPU)" },
	{ "master", CK_BOOL, OFF(master), "on", 0, 0,
	  "a root master supervising unprivileged workers (off: one process)" },
	{ "user", CK_STR, OFF(user), "starttlsd", 0, 0,
	  "workers drop root for this user (empty or root: no drop)" },
	{ "seccomp", CK_BOOL, OFF(seccomp), "on", 0, 0,
	  "workers may make only the system calls they need (seccomp allowlist; off: debugging)" },
	{ "listen", CK_LIST, OFF(listen), "0.0.0.0:10025 [::]:10025", 0, 0,
	  "ADDR:PORT or [V6]:PORT to accept redirected connections on (repeatable)" },
	{ "upstream", CK_STR, OFF(upstream), NULL, 0, 0,
	  "HOST:PORT: fixed destination instead of the original one (smarthost mode)" },
	{ "upstream_mark", CK_UINT, OFF(upstream_mark), "0x2525", 0, UINT32_MAX,
	  "SO_MARK on upstream sockets, so an output-chain redirect skips them (0: none)" },
	{ "intercept", CK_BOOL, OFF(intercept), "off", 0, 0,
	  "install and own the nftables table \"inet starttlsd\" that redirects port 25" },
	{ "intercept_interfaces", CK_LIST, OFF(intercept_interfaces), NULL, 0, 0,
	  "LAN interfaces whose forwarded port-25 traffic is taken" },
	{ "intercept_local", CK_BOOL, OFF(intercept_local), "off", 0, 0,
	  "also take port-25 connections made on the gateway itself" },
	{ "intercept_bypass", CK_LIST, OFF(intercept_bypass), NULL, 0, 0,
	  "destinations (CIDR) never intercepted, kept in an nftables set" },
	{ "intercept_method", CK_ENUM, OFF(intercept_method), "redirect", 0, 0,
	  "redirect (NAT) or tproxy (IP_TRANSPARENT listeners)" },
	{ "tproxy_mark", CK_UINT, OFF(tproxy_mark), "0x1", 1, UINT32_MAX,
	  "mark set on tproxied packets, for the policy-routing rule" },
	{ "mode", CK_ENUM, OFF(mode), "monitor", 0, 0,
	  "monitor (alert on downgrades) or enforce (also refuse with 4xx)" },
	{ "state_dir", CK_STR, OFF(state_dir), "/var/lib/starttlsd", 0, 0,
	  "where the pins live (LMDB); empty: remember nothing" },
	{ "upstream_cache", CK_BOOL, OFF(upstream_cache), "on", 0, 0,
	  "reuse server TLS connections across client sessions (docs/policy.md)" },
	{ "upstream_cache_idle", CK_DURATION, OFF(upstream_cache_idle), "10s", 1, 600,
	  "how long a parked server connection waits for the next client" },
	{ "upstream_cache_max_age", CK_DURATION, OFF(upstream_cache_max_age), "5m", 1, 86400,
	  "a server connection is not reused once this old" },
	{ "upstream_cache_max_uses", CK_UINT, OFF(upstream_cache_max_uses), "100", 1, 100000,
	  "client sessions one server connection may carry" },
	{ "upstream_cache_per_dst", CK_UINT, OFF(upstream_cache_per_dst), "16", 1, 1000,
	  "parked connections per destination, per worker" },
	{ "upstream_cache_max", CK_UINT, OFF(upstream_cache_max), "256", 1, 100000,
	  "parked connections in all, per worker" },
	{ "metrics_listen", CK_STR, OFF(metrics_listen), NULL, 0, 0,
	  "ADDR:PORT for Prometheus metrics over HTTP, served by the workers (unset: off)" },
	{ "pin_expire", CK_DURATION, OFF(pin_expire), "30d", 0, 315360000,
	  "a pin not seen with TLS for this long is forgotten (0: never)" },
	{ "pin_store", CK_STR, OFF(pin_store), "lmdb", 0, 0,
	  "lmdb (pins on this gateway only) or a Redis URL shared by a fleet: redis://[user@]host[:port][/db], redis+unix://[user@]/path[?db=N]" },
	{ "pin_store_password_file", CK_STR, OFF(pin_store_password_file), NULL, 0, 0,
	  "the Redis password (ACL user in the URL), in a file only root can read" },
	{ "pin_store_prefix", CK_STR, OFF(pin_store_prefix), "starttlsd:", 0, 0,
	  "the fleet's key prefix in Redis (one per fleet)" },
	{ "pin_store_gateway", CK_STR, OFF(pin_store_gateway), NULL, 0, 0,
	  "this gateway's name in the fleet, unique in it (default: the host name)" },
	{ "pin_sync_interval", CK_DURATION, OFF(pin_sync_interval), "1s", 1, 3600,
	  "how often pins are published to and pulled from Redis" },
	{ "policy_file", CK_STR, OFF(policy_file), NULL, 0, 0,
	  "static TLS policy for domains and destinations (docs/policy.md)" },
	{ "dane", CK_BOOL, OFF(dane), "on", 0, 0,
	  "DANE (RFC 7672): a recipient domain's DNSSEC-signed TLSA records require TLS and authenticate the server (docs/policy.md)" },
	{ "mta_sts", CK_BOOL, OFF(mta_sts), "on", 0, 0,
	  "MTA-STS (RFC 8461): a recipient domain's HTTPS-published policy requires TLS and a WebPKI certificate (docs/policy.md)" },
	{ "mta_sts_ca_file", CK_STR, OFF(mta_sts_ca_file), "/etc/ssl/certs/ca-certificates.crt", 0, 0,
	  "WebPKI roots for the MTA-STS policy hosts (https://mta-sts.DOMAIN); the mail server's own chain is checked against ca_file" },
	{ "mta_sts_port", CK_UINT, OFF(mta_sts_port), "443", 1, 65535,
	  "port of the MTA-STS policy hosts (443; another only for tests)" },
	{ "policy_timeout", CK_DURATION, OFF(policy_timeout), "15s", 1, 120,
	  "how long a RCPT waits for its domain's DANE and MTA-STS policy before a 450 4.7.5 (enforce)" },
	{ "tlsrpt", CK_BOOL, OFF(tlsrpt), "off", 0, 0,
	  "TLS-RPT (RFC 8460): aggregate DANE/MTA-STS results per recipient domain and day for `starttlsctl tlsrpt send`" },
	{ "tlsrpt_org", CK_STR, OFF(tlsrpt_org), NULL, 0, 0,
	  "TLS-RPT: organization-name in the reports (default: the domain of tlsrpt_from)" },
	{ "tlsrpt_contact", CK_STR, OFF(tlsrpt_contact), NULL, 0, 0,
	  "TLS-RPT: contact-info in the reports, an address or URI (default: tlsrpt_from)" },
	{ "tlsrpt_submission", CK_STR, OFF(tlsrpt_submission), NULL, 0, 0,
	  "TLS-RPT: HOST:PORT of the mail submission host that DKIM-signs and sends mailto: reports" },
	{ "tlsrpt_from", CK_STR, OFF(tlsrpt_from), NULL, 0, 0,
	  "TLS-RPT: From address of mailto: reports" },
	{ "resolvers", CK_LIST, OFF(resolvers), NULL, 0, 0,
	  "DNS servers the policy process forwards to, validating locally (unset: /etc/resolv.conf's)" },
	{ "trust_anchor_file", CK_STR, OFF(trust_anchor_file), "/usr/share/dns/root.key", 0, 0,
	  "DNSSEC trust anchor (DS or DNSKEY records) the policy process validates from" },
	{ "transparent_source", CK_BOOL, OFF(transparent_source), "off", 0, 0,
	  "tproxy only: connect upstream from the client's own address" },
	{ "helo_name", CK_STR, OFF(helo_name), NULL, 0, 0,
	  "name for our own EHLO to the server (default: the host name)" },
	{ "tls_min_version", CK_TLSVER, OFF(tls_min_version), "1.2", 0, 0,
	  "lowest TLS version offered upstream: 1.2 or 1.3" },
	{ "ca_file", CK_STR, OFF(ca_file), "/etc/ssl/certs/ca-certificates.crt", 0, 0,
	  "CA bundle the server's chain is checked against (enforced only by verify rules)" },
	{ "client_cert", CK_STR, OFF(client_cert), NULL, 0, 0,
	  "certificate chain (PEM) for STARTTLS offered to clients on the LAN leg" },
	{ "client_key", CK_STR, OFF(client_key), NULL, 0, 0,
	  "private key (PEM) for client_cert" },
	{ "connect_timeout", CK_DURATION, OFF(connect_timeout), "30s", 1, 3600,
	  "upstream TCP connect" },
	{ "greeting_timeout", CK_DURATION, OFF(greeting_timeout), "5m", 1, 3600,
	  "upstream 220 greeting (RFC 5321 4.5.3.2.1)" },
	{ "reply_timeout", CK_DURATION, OFF(reply_timeout), "5m", 1, 3600,
	  "any other upstream reply (RFC 5321 4.5.3.2.2-5)" },
	{ "tls_timeout", CK_DURATION, OFF(tls_timeout), "1m", 1, 3600,
	  "TLS handshake, either leg" },
	{ "data_timeout", CK_DURATION, OFF(data_timeout), "10m", 1, 7200,
	  "reply to the end of DATA or BDAT LAST (RFC 5321 4.5.3.2.6)" },
	{ "client_timeout", CK_DURATION, OFF(client_timeout), "5m", 1, 7200,
	  "client silent while the proxy waits for it (RFC 5321 4.5.3.2.7)" },
	{ "drain_timeout", CK_DURATION, OFF(drain_timeout), "1m", 0, 3600,
	  "on SIGTERM, how long running sessions may take to finish" },
	{ "max_line_length", CK_SIZE, OFF(max_line_length), "4096", 512, 65536,
	  "longest command line from a client (RFC 5321 minimum: 512)" },
	{ "max_reply_lines", CK_UINT, OFF(max_reply_lines), "256", 1, 10000,
	  "most lines in one server reply" },
	{ "buffer_size", CK_SIZE, OFF(buffer_size), "256k", 16384, 67108864,
	  "cap on bytes buffered per direction per session" },
	{ "max_sessions", CK_UINT, OFF(max_sessions), "10000", 1, 1000000,
	  "sessions at once; more are answered 421 4.3.2" },
	{ "max_sessions_per_client", CK_UINT, OFF(max_sessions_per_client), "50", 1, 1000000,
	  "sessions at once from one client address; more get 421 4.7.0" },
	{ "max_recipients", CK_UINT, OFF(max_recipients), "1000", 100, 100000,
	  "recipients per message (RFC 5321: at least 100); more get 452 4.5.3" },
	{ "max_errors", CK_UINT, OFF(max_errors), "20", 1, 100000,
	  "4xx/5xx replies in one session before it is closed with 421 4.7.0" },
};

#define NKEYS (sizeof(config_keys) / sizeof(config_keys[0]))

static const struct config_key *
key_find(const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(config_keys[i].name, name) == 0)
			return &config_keys[i];
	return NULL;
}

static void
list_free(struct config_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->item[i]);
	l->n = 0;
}

/* Add the space-separated values of v to l. */
static int
list_append(struct config_list *l, const char *v, const char **why)
{
	char *copy, *tok, *save = NULL;

	if ((copy = strdup(v)) == NULL)
		return *why = "out of memory", -1;
	for (tok = strtok_r(copy, " \t", &save); tok != NULL;
	    tok = strtok_r(NULL, " \t", &save)) {
		if (l->n == CONFIG_LIST_MAX) {
			free(copy);
			return *why = "too many values (at most 64)", -1;
		}
		if ((l->item[l->n] = strdup(tok)) == NULL) {
			free(copy);
			return *why = "out of memory", -1;
		}
		l->n++;
	}
	free(copy);
	return 0;
}

static int
parse_u64(const char *s, uint64_t *out, const char **end)
{
	char *e;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	/* Decimal, or hex with 0x (marks); never octal: "010" is ten. */
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		/* By hand: strtoull would take "0x 5", "0x-1" and "0x0x10". */
		uint64_t v = 0;
		const char *p = s + 2;

		if (!isxdigit((unsigned char)*p))
			return -1;
		for (; isxdigit((unsigned char)*p); p++) {
			unsigned d = isdigit((unsigned char)*p) ? (unsigned)(*p - '0') :
			    (unsigned)(tolower((unsigned char)*p) - 'a' + 10);
			if (v > (UINT64_MAX - d) / 16)
				return -1;
			v = v * 16 + d;
		}
		*out = v;
		*end = p;
		return 0;
	} else {
		*out = strtoull(s, &e, 10);
	}
	if (errno != 0)
		return -1;
	*end = e;
	return 0;
}

static int
parse_bool(const char *v, bool *out)
{
	static const char *yes[] = { "yes", "on", "true", "1" };
	static const char *no[] = { "no", "off", "false", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0)
			return *out = true, 0;
		if (strcasecmp(v, no[i]) == 0)
			return *out = false, 0;
	}
	return -1;
}

/* Apply one value to its key. Returns 0, or -1 with why. */
static int
key_set(struct config *c, const struct config_key *k, const char *v,
    const char **why)
{
	char *field = (char *)c + k->off;
	uint64_t n = 0, mult = 1;
	const char *end;

	switch (k->type) {
	case CK_BOOL:
		if (parse_bool(v, (bool *)(void *)field) < 0)
			return *why = "expected yes or no", -1;
		return 0;
	case CK_STR: {
		char **s = (char **)(void *)field;
		free(*s);
		*s = NULL;
		if (*v == '\0')
			return 0;
		if ((*s = strdup(v)) == NULL)
			return *why = "out of memory", -1;
		return 0;
	}
	case CK_LIST:
		list_free((struct config_list *)(void *)field);
		return list_append((struct config_list *)(void *)field, v, why);
	case CK_ENUM: {
		/*
		 * "intercept_method =" is the default (as it always was);
		 * "mode =" is an error, never a silent monitor.
		 */
		const bool is_mode = k->off == OFF(mode);
		const char *const *names = is_mode ? mode_names : method_names;
		static char expect[96];
		size_t o = 0;

		if (*v == '\0' && !is_mode)
			v = k->def;
		for (size_t i = 0; names[i] != NULL; i++) {
			if (strcmp(v, names[i]) == 0) {
				*(int *)(void *)field = (int)i;
				return 0;
			}
			o += (size_t)snprintf(expect + o, sizeof(expect) - o,
			    "%s%s", i == 0 ? "expected " :
			    names[i + 1] == NULL ? " or " : ", ", names[i]);
			if (o >= sizeof(expect))
				break;
		}
		return *why = expect, -1;
	}
	case CK_TLSVER:
		if (strcmp(v, "1.2") == 0 || strcasecmp(v, "TLSv1.2") == 0)
			*(int *)(void *)field = TLS1_2_VERSION;
		else if (strcmp(v, "1.3") == 0 || strcasecmp(v, "TLSv1.3") == 0)
			*(int *)(void *)field = TLS1_3_VERSION;
		else
			return *why = "expected 1.2 or 1.3", -1;
		return 0;
	case CK_UINT:
	case CK_DURATION:
	case CK_SIZE:
		if (parse_u64(v, &n, &end) < 0 ||
		    (k->type != CK_UINT && (v[1] == 'x' || v[1] == 'X')))
			return *why = "expected a number", -1;
		if (k->type == CK_DURATION) {
			switch (*end) {
			case '\0': case 's': mult = 1; break;
			case 'm': mult = 60; break;
			case 'h': mult = 3600; break;
			case 'd': mult = 86400; break;
			default: return *why = "expected a duration like 30s, 5m, 1h", -1;
			}
			if (*end != '\0')
				end++;
		} else if (k->type == CK_SIZE) {
			switch (tolower((unsigned char)*end)) {
			case '\0': mult = 1; break;
			case 'k': mult = 1024; break;
			case 'm': mult = 1024 * 1024; break;
			default: return *why = "expected a size like 4096, 64k, 1m", -1;
			}
			if (*end != '\0')
				end++;
		}
		if (*end != '\0')
			return *why = "trailing characters after the number", -1;
		if (n > UINT32_MAX / mult || n * mult < k->min || n * mult > k->max) {
			static char range[96];
			snprintf(range, sizeof(range), "out of range (%llu..%llu)",
			    (unsigned long long)k->min, (unsigned long long)k->max);
			return *why = range, -1;
		}
		*(unsigned *)(void *)field = (unsigned)(n * mult);
		return 0;
	}
	return *why = "bad key type", -1;
}

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

static int
load_file(struct config *c, const char *path, char *err, size_t errlen)
{
	bool seen[NKEYS] = { false };
	char line[CONFIG_LINE_MAX + 2];
	unsigned lineno = 0;
	FILE *fp;

	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		const struct config_key *k;
		char *p, *key, *val, *hash;
		const char *why;

		lineno++;
		if (strchr(line, '\n') == NULL && !feof(fp)) {
			snprintf(err, errlen, "%s:%u: line longer than %d bytes",
			    path, lineno, CONFIG_LINE_MAX);
			goto fail;
		}
		/* '#' starts a comment at the start of a line or after a blank. */
		for (hash = line; (hash = strchr(hash, '#')) != NULL; hash++)
			if (hash == line || isspace((unsigned char)hash[-1])) {
				*hash = '\0';
				break;
			}
		p = trim(line);
		if (*p == '\0')
			continue;
		key = p;
		while (*p != '\0' && *p != '=' && !isspace((unsigned char)*p))
			p++;
		val = p;
		if (*val != '\0') {
			*val++ = '\0';
			val = trim(val);
			if (*val == '=')
				val = trim(val + 1);
		}
		if ((k = key_find(key)) == NULL) {
			snprintf(err, errlen, "%s:%u: %s: unknown key", path,
			    lineno, key);
			goto fail;
		}
		if (seen[k - config_keys]) {
			snprintf(err, errlen, "%s:%u: %s: given twice", path,
			    lineno, key);
			goto fail;
		}
		seen[k - config_keys] = true;
		if (key_set(c, k, val, &why) < 0) {
			snprintf(err, errlen, "%s:%u: %s: %s", path, lineno, key,
			    why);
			goto fail;
		}
	}
	if (ferror(fp)) {
		snprintf(err, errlen, "%s: read error", path);
		goto fail;
	}
	fclose(fp);
	return 0;
fail:
	fclose(fp);
	return -1;
}

int
config_split_hostport(const char *s, char *host, size_t cap, unsigned *port)
{
	const char *colon, *h = s;
	size_t hlen;
	char *end;
	unsigned long p;

	if (*s == '[') {
		const char *rb = strchr(s, ']');
		if (rb == NULL || rb[1] != ':')
			return -1;
		h = s + 1;
		hlen = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		if ((colon = strrchr(s, ':')) == NULL)
			return -1;
		if (memchr(s, ':', (size_t)(colon - s)) != NULL)
			return -1; /* bare IPv6 needs brackets */
		hlen = (size_t)(colon - s);
	}
	if (hlen == 0 || hlen >= cap || !isdigit((unsigned char)colon[1]))
		return -1;
	errno = 0;
	p = strtoul(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0' || p == 0 || p > 65535)
		return -1;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	*port = (unsigned)p;
	return 0;
}

int
config_parse_addr(const char *s, struct sockaddr_storage *out,
    socklen_t *out_len)
{
	char host[INET6_ADDRSTRLEN + 1];
	unsigned port;

	memset(out, 0, sizeof(*out));
	if (config_split_hostport(s, host, sizeof(host), &port) < 0)
		return -1;
	if (s[0] == '[') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)out;
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			return -1;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		*out_len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)out;
		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			return -1;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		*out_len = sizeof(*s4);
	}
	return 0;
}

/* pin_store and its companions (pinsync.h). */
static int
validate_pin_store(struct config *c, char *err, size_t errlen)
{
	struct pinsync_url url;
	char name[256];

	if (!pinsync_wanted(c))
		return 0;
	if (pinsync_url_parse(c->pin_store, &url, err, errlen) < 0)
		return -1;
	if (url.password[0] != '\0' && c->pin_store_password_file != NULL) {
		snprintf(err, errlen, "pin_store: a password in the URL and "
		    "pin_store_password_file: give one (the file is better)");
		return -1;
	}
	if (c->pin_store_password_file != NULL) {
		struct stat st;

		/* Read by the sync process at start; checked here for --check-config. */
		if (stat(c->pin_store_password_file, &st) < 0) {
			snprintf(err, errlen, "pin_store_password_file: %s: %s",
			    c->pin_store_password_file, strerror(errno));
			return -1;
		}
		if (!S_ISREG(st.st_mode) || (st.st_mode & 077) != 0 ||
		    (geteuid() == 0 && st.st_uid != 0)) {
			snprintf(err, errlen, "pin_store_password_file: %s: must be "
			    "a file of root's that no one else can read (chmod 600)",
			    c->pin_store_password_file);
			return -1;
		}
	}
	if (c->state_dir == NULL) {
		snprintf(err, errlen, "pin_store: Redis needs a state_dir (the "
		    "local copy every lookup reads)");
		return -1;
	}
	if (c->pin_store_prefix == NULL || strlen(c->pin_store_prefix) > 100 ||
	    strpbrk(c->pin_store_prefix, " \t\r\n\"*?[]") != NULL) {
		snprintf(err, errlen, "pin_store_prefix: at most 100 characters, "
		    "no spaces or glob characters");
		return -1;
	}
	if (c->pin_store_gateway == NULL) {
		if (gethostname(name, sizeof(name) - 1) < 0 || name[0] == '\0')
			strcpy(name, "localhost");
		name[sizeof(name) - 1] = '\0';
		name[strcspn(name, ".")] = '\0';  /* the short name */
		if ((c->pin_store_gateway = strdup(name)) == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	if (!pinsync_gw_valid(c->pin_store_gateway,
	    strlen(c->pin_store_gateway))) {
		snprintf(err, errlen, "pin_store_gateway: %s: expected 1 to %d "
		    "letters, digits, '.', '_' or '-'", c->pin_store_gateway,
		    PIN_GW_MAX - 1);
		return -1;
	}
	return 0;
}

static int
validate(struct config *c, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	char host[256];
	unsigned port;

	if (c->listen.n == 0) {
		snprintf(err, errlen, "listen: at least one address is needed");
		return -1;
	}
	for (size_t i = 0; i < c->listen.n; i++)
		if (config_parse_addr(c->listen.item[i], &ss, &sl) < 0) {
			snprintf(err, errlen, "listen: %s: expected ADDR:PORT or "
			    "[V6ADDR]:PORT with a numeric address",
			    c->listen.item[i]);
			return -1;
		}
	if (c->metrics_listen != NULL && c->metrics_listen[0] != '\0' &&
	    config_parse_addr(c->metrics_listen, &ss, &sl) < 0) {
		snprintf(err, errlen, "metrics_listen: %s: expected ADDR:PORT or "
		    "[V6ADDR]:PORT with a numeric address", c->metrics_listen);
		return -1;
	}
	if (c->upstream != NULL && config_split_hostport(c->upstream, host,
	    sizeof(host), &port) < 0) {
		snprintf(err, errlen, "upstream: %s: expected HOST:PORT",
		    c->upstream);
		return -1;
	}
	if (c->listen.n > CONFIG_MAX_LISTEN) {
		snprintf(err, errlen, "listen: at most %d addresses",
		    CONFIG_MAX_LISTEN);
		return -1;
	}
	if (c->max_line_length >= c->buffer_size) {
		snprintf(err, errlen, "max_line_length (%u) must be smaller than "
		    "buffer_size (%u): a line has to fit in the buffer",
		    c->max_line_length, c->buffer_size);
		return -1;
	}
	/* At most 8 (libunbound tries them in turn): a numeric address, optionally @port. */
	if (c->resolvers.n > 8) {
		snprintf(err, errlen, "resolvers: at most 8");
		return -1;
	}
	for (size_t i = 0; i < c->resolvers.n; i++) {
		char a[INET6_ADDRSTRLEN + 8], *at;
		unsigned char buf[16];
		snprintf(a, sizeof(a), "%s", c->resolvers.item[i]);
		if ((at = strchr(a, '@')) != NULL) {
			char *end;
			unsigned long p = strtoul(at + 1, &end, 10);
			if (at[1] == '\0' || *end != '\0' || p == 0 || p > 65535)
				at = a;   /* refused below */
			else
				*at = '\0';
		}
		if (at == a || strlen(c->resolvers.item[i]) >= sizeof(a) ||
		    (inet_pton(AF_INET, a, buf) != 1 &&
		    inet_pton(AF_INET6, a, buf) != 1)) {
			snprintf(err, errlen, "resolvers: %s: expected a numeric "
			    "address, optionally ADDR@PORT", c->resolvers.item[i]);
			return -1;
		}
	}
	if (c->intercept_interfaces.n > NFT_MAX_IFACES) {
		snprintf(err, errlen, "intercept_interfaces: at most %d",
		    NFT_MAX_IFACES);
		return -1;
	}
	for (size_t i = 0; i < c->intercept_interfaces.n; i++)
		if (strlen(c->intercept_interfaces.item[i]) >= IFNAMSIZ) {
			snprintf(err, errlen, "intercept_interfaces: %s: longer "
			    "than %d characters", c->intercept_interfaces.item[i],
			    IFNAMSIZ - 1);
			return -1;
		}
	for (size_t i = 0; i < c->intercept_bypass.n; i++) {
		struct nft_prefix p;
		if (nft_parse_prefix(c->intercept_bypass.item[i], &p) < 0) {
			snprintf(err, errlen, "intercept_bypass: %s: expected an "
			    "address or ADDR/LEN with the host bits zero",
			    c->intercept_bypass.item[i]);
			return -1;
		}
	}
	if (c->intercept && c->intercept_interfaces.n == 0 &&
	    !c->intercept_local) {
		snprintf(err, errlen, "intercept: on, but neither "
		    "intercept_interfaces nor intercept_local says what to take");
		return -1;
	}
	if (c->transparent_source && (!c->intercept ||
	    c->intercept_method != CONFIG_INTERCEPT_TPROXY)) {
		snprintf(err, errlen, "transparent_source: needs intercept = on "
		    "and intercept_method = tproxy (the return traffic is "
		    "diverted like the intercepted traffic)");
		return -1;
	}
	if ((c->client_cert == NULL) != (c->client_key == NULL)) {
		snprintf(err, errlen, "client_cert and client_key go together");
		return -1;
	}
	if (c->helo_name == NULL) {
		char name[256];
		if (gethostname(name, sizeof(name) - 1) < 0 || name[0] == '\0')
			strcpy(name, "localhost");
		name[sizeof(name) - 1] = '\0';
		if ((c->helo_name = strdup(name)) == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	if (validate_pin_store(c, err, errlen) < 0)
		return -1;
	for (const char *p = c->helo_name; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' &&
		    *p != '[' && *p != ']' && *p != ':') {
			snprintf(err, errlen, "helo_name: %s: not a host name",
			    c->helo_name);
			return -1;
		}
	return 0;
}

#define OPT_BASE 256

struct cli_setting {
	const struct config_key *key;
	const char *val;
};

enum config_result
config_load(struct config *c, int argc, char *const argv[], char *err,
    size_t errlen)
{
	struct option opts[NKEYS + 6];
	char names[NKEYS][48];
	struct cli_setting *cli = NULL;
	size_t ncli = 0;
	bool cli_seen[NKEYS] = { false };
	bool config_given = false;
	const char *why;
	int ch;

	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < NKEYS; i++) {
		const struct config_key *k = &config_keys[i];
		if (k->def != NULL && key_set(c, k, k->def, &why) < 0) {
			snprintf(err, errlen, "%s: bad default: %s", k->name, why);
			return CONFIG_ERROR;
		}
		snprintf(names[i], sizeof(names[i]), "%s", k->name);
		for (char *p = names[i]; *p != '\0'; p++)
			if (*p == '_')
				*p = '-';
		opts[i].name = names[i];
		opts[i].has_arg = k->type == CK_BOOL ? optional_argument :
		    required_argument;
		opts[i].flag = NULL;
		opts[i].val = OPT_BASE + (int)i;
	}
	opts[NKEYS + 0] = (struct option){ "config", required_argument, NULL, 'c' };
	opts[NKEYS + 1] = (struct option){ "check-config", no_argument, NULL, 'C' };
	opts[NKEYS + 2] = (struct option){ "help", no_argument, NULL, 'h' };
	opts[NKEYS + 3] = (struct option){ "version", no_argument, NULL, 'V' };
	opts[NKEYS + 4] = (struct option){ "print-ruleset", no_argument, NULL, 'P' };
	opts[NKEYS + 5] = (struct option){ NULL, 0, NULL, 0 };

	if ((cli = calloc((size_t)argc + 1, sizeof(*cli))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return CONFIG_ERROR;
	}
	optind = 0; /* full re-initialisation: config_load runs again on reload */
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":c:fhV", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			free(c->config_file);
			c->config_file = strdup(optarg);
			config_given = true;
			break;
		case 'C':
			c->check_config = true;
			break;
		case 'P':
			c->print_ruleset = true;
			break;
		case 'f':
			cli[ncli++] = (struct cli_setting){ key_find("foreground"), "yes" };
			break;
		case 'h':
			config_usage(stdout);
			free(cli);
			return CONFIG_EXIT;
		case 'V':
			printf("starttlsd %s\n", STARTTLSD_VERSION);
			free(cli);
			return CONFIG_EXIT;
		case ':':
			snprintf(err, errlen, "%s: needs a value", argv[optind - 1]);
			goto fail;
		case '?':
			/* optopt: an unknown letter inside "-xf" is named as such. */
			/*
			 * optopt is an unknown letter ("-x" inside "-fxf"), or
			 * the value of a known option misused ("--help=1").
			 */
			if (optopt > 0 && optopt < 256 && strchr("cfhVCP", optopt) == NULL)
				snprintf(err, errlen, "-%c: unknown option (see --help)",
				    optopt);
			else
				snprintf(err, errlen, "%s: unknown option (see --help)",
				    argv[optind - 1]);
			goto fail;
		default: {
			const struct config_key *k = &config_keys[ch - OPT_BASE];
			const char *v = optarg;
			bool b;

			/* "--intercept on" as well as "--log-stderr" alone. */
			if (v == NULL && k->type == CK_BOOL && optind < argc &&
			    parse_bool(argv[optind], &b) == 0)
				v = argv[optind++];
			cli[ncli++] = (struct cli_setting){ k, v != NULL ? v : "yes" };
			break;
		}
		}
	}
	if (optind < argc) {
		snprintf(err, errlen, "%s: unexpected argument", argv[optind]);
		goto fail;
	}
	/*
	 * Without -c, the default file when it exists (as Postfix reads
	 * main.cf); STARTTLSD_CONFIG names another, or none when empty (the
	 * test suite: a file on the host must not change its runs).
	 */
	if (!config_given) {
		const char *def = getenv("STARTTLSD_CONFIG");

		if (def == NULL)
			def = CONFIG_DEFAULT_FILE;
		if (def[0] != '\0' && access(def, F_OK) == 0 &&
		    (c->config_file = strdup(def)) == NULL) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	}
	/* -c "": no file at all. */
	if (c->config_file != NULL && c->config_file[0] == '\0') {
		free(c->config_file);
		c->config_file = NULL;
	}
	if (c->config_file != NULL && load_file(c, c->config_file, err, errlen) < 0)
		goto fail;
	for (size_t i = 0; i < ncli; i++) {
		const struct config_key *k = cli[i].key;
		size_t ki = (size_t)(k - config_keys);
		int r;

		/* A repeated list option (--listen A --listen B) adds values. */
		if (k->type == CK_LIST && cli_seen[ki])
			r = list_append((struct config_list *)(void *)
			    ((char *)c + k->off), cli[i].val, &why);
		else
			r = key_set(c, k, cli[i].val, &why);
		cli_seen[ki] = true;
		if (r < 0) {
			snprintf(err, errlen, "--%s: %s: %s", opts[ki].name,
			    cli[i].val, why);
			goto fail;
		}
	}
	free(cli);
	if (validate(c, err, errlen) < 0)
		return CONFIG_ERROR;
	return CONFIG_OK;
fail:
	free(cli);
	return CONFIG_ERROR;
}

void
config_free(struct config *c)
{
	for (size_t i = 0; i < NKEYS; i++) {
		const struct config_key *k = &config_keys[i];
		char *field = (char *)c + k->off;
		if (k->type == CK_STR) {
			free(*(char **)(void *)field);
			*(char **)(void *)field = NULL;
		} else if (k->type == CK_LIST) {
			list_free((struct config_list *)(void *)field);
		}
	}
	free(c->config_file);
	c->config_file = NULL;
}

void
config_usage(FILE *fp)
{
	fprintf(fp,
	    "usage: starttlsd [-f] [-c FILE] [--check-config] [--option VALUE ...]\n"
	    "\n"
	    "  -c, --config FILE       configuration file (key = value lines; default\n"
	    "                          " CONFIG_DEFAULT_FILE " if it exists; \"\": none)\n"
	    "      --check-config      validate the configuration and exit\n"
	    "      --print-ruleset     print the nftables table intercept=on installs\n"
	    "  -h, --help              this text\n"
	    "  -V, --version           print the version\n"
	    "\n"
	    "Every configuration key is also an option, '_' written '-':\n");
	for (size_t i = 0; i < NKEYS; i++) {
		const struct config_key *k = &config_keys[i];
		char opt[48];
		snprintf(opt, sizeof(opt), "%s", k->name);
		for (char *p = opt; *p != '\0'; p++)
			if (*p == '_')
				*p = '-';
		fprintf(fp, "  --%-20s %s%s%s%s\n", opt, k->help,
		    k->def ? " [" : "", k->def ? k->def : "", k->def ? "]" : "");
	}
}
