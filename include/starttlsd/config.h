/*
 * config: the configuration file and the command line, turned into one
 * validated struct config. Every key is also a long option ("helo_name" is
 * "--helo-name"); the command line wins over the file. Keys are a table
 * (name, type, default, bounds), see proxy/config.c and docs/starttlsd.conf.5.
 */
#ifndef STARTTLSD_CONFIG_H
#define STARTTLSD_CONFIG_H

#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CONFIG_MAX_LISTEN 16
/* Read without -c when it exists; STARTTLSD_CONFIG overrides ("": none). */
#define CONFIG_DEFAULT_FILE "/etc/starttlsd/starttlsd.conf"
#define CONFIG_LIST_MAX 64 /* values in one list key */

/* Keys with a fixed set of values, parsed once (config_*_str for logs). */
enum config_mode {
	CONFIG_MODE_MONITOR,      /* "monitor": alert on downgrades */
	CONFIG_MODE_ENFORCE,      /* "enforce": also refuse with 4xx */
};
enum config_intercept_method {
	CONFIG_INTERCEPT_REDIRECT, /* "redirect": NAT */
	CONFIG_INTERCEPT_TPROXY,   /* "tproxy": IP_TRANSPARENT listeners */
};

struct config_list {
	char *item[CONFIG_LIST_MAX];
	size_t n;
};

struct config {
	/* process */
	char *config_file;      /* the file read (-c, or the default); NULL: none */
	bool foreground;
	bool log_stderr;
	bool check_config;      /* command line only */
	char *pid_file;
	unsigned workers;         /* 0: one per CPU */
	bool master;              /* off: one process does everything */
	char *user;               /* workers run as this user */
	bool seccomp;             /* workers: the seccomp filter */

	/* listening and destination */
	struct config_list listen;
	char *upstream;         /* HOST:PORT, NULL: transparent mode */
	uint32_t upstream_mark; /* SO_MARK on upstream sockets, 0: none */

	/* interception managed by starttlsd (nftables, libnftnl) */
	bool intercept;
	struct config_list intercept_interfaces;
	bool intercept_local;
	struct config_list intercept_bypass;
	enum config_intercept_method intercept_method;
	uint32_t tproxy_mark;
	bool transparent_source;  /* tproxy: upstream from the client's address */
	bool print_ruleset;       /* command line only */

	/* downgrade detection and policy */
	enum config_mode mode;
	char *state_dir;          /* pin store; NULL: no pins */
	char *metrics_listen;     /* ADDR:PORT, NULL: no metrics endpoint */

	/* the upstream connection cache (upcache.h) */
	bool upstream_cache;
	unsigned upstream_cache_idle, upstream_cache_max_age;
	unsigned upstream_cache_max_uses, upstream_cache_per_dst;
	unsigned upstream_cache_max;
	unsigned pin_expire;      /* seconds without a TLS sighting */
	char *pin_store;          /* "lmdb", or a Redis URL (pinsync.h) */
	char *pin_store_password_file;
	char *pin_store_prefix;   /* the fleet's key prefix in Redis */
	char *pin_store_gateway;  /* this gateway's name in the fleet */
	unsigned pin_sync_interval; /* seconds between sync rounds */
	char *policy_file;

	/* the policy process (policyd.h, docs/dane.md) */
	bool dane;                /* DANE at RCPT (and learned addresses before the greeting) */
	bool mta_sts;             /* MTA-STS at RCPT */
	char *mta_sts_ca_file;    /* WebPKI roots for MTA-STS */
	unsigned mta_sts_port;    /* 443 */
	unsigned policy_timeout;  /* seconds a RCPT waits for policyd */
	bool tlsrpt;
	char *tlsrpt_org, *tlsrpt_contact, *tlsrpt_submission, *tlsrpt_from;
	struct config_list resolvers;  /* forwarders; empty: /etc/resolv.conf */
	char *trust_anchor_file;

	/* SMTP */
	char *helo_name;

	/* TLS */
	int tls_min_version;    /* TLS1_2_VERSION or TLS1_3_VERSION */
	char *ca_file;
	char *client_cert;      /* LAN-leg STARTTLS, both or neither */
	char *client_key;

	/* timeouts, seconds */
	unsigned connect_timeout;
	unsigned greeting_timeout;
	unsigned reply_timeout;
	unsigned tls_timeout;
	unsigned data_timeout;
	unsigned client_timeout;
	unsigned drain_timeout;

	/* limits */
	unsigned max_line_length;
	unsigned max_reply_lines;
	unsigned buffer_size;
	unsigned max_sessions;
	unsigned max_sessions_per_client;
	unsigned max_recipients;
	unsigned max_errors;
};

enum config_result {
	CONFIG_OK,
	CONFIG_ERROR,   /* message in err */
	CONFIG_EXIT,    /* --help or --version printed; exit 0 */
};

/*
 * Build a configuration from argv and the file named by -c, or without -c
 * CONFIG_DEFAULT_FILE (or $STARTTLSD_CONFIG) if it exists; -c "" reads none. On
 * CONFIG_ERROR, err holds "FILE:LINE: key: why" or "--option: why".
 * out is always safe to pass to config_free afterwards.
 */
enum config_result config_load(struct config *out, int argc, char *const argv[],
    char *err, size_t errlen);
void config_free(struct config *c);

/*
 * Parse "ADDR:PORT" or "[V6ADDR]:PORT" (numeric only). Returns 0 or -1.
 */
int config_parse_addr(const char *s, struct sockaddr_storage *out,
    socklen_t *out_len);

/* Split "HOST:PORT" or "[HOST]:PORT" into host (cap bytes) and port. */
int config_split_hostport(const char *s, char *host, size_t cap,
    unsigned *port);

/* "monitor", "enforce"; "redirect", "tproxy". */
const char *config_mode_str(enum config_mode m);
const char *config_intercept_method_str(enum config_intercept_method m);

/* The options for --help. */
void config_usage(FILE *fp);

#endif
