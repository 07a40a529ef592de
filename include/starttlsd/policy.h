/*
 * policy: decides what happens when TLS is not what it should be with a
 * destination or for a recipient domain, from the global mode, the static
 * policy file and the pins. Pure: no I/O; the session logs and acts.
 *
 * Levels: none (never require TLS, even if pinned), encrypt (require TLS),
 * verify (require TLS with a chain that verifies and, where the rule names
 * MX patterns, a certificate name matching one). No rule: a pinned
 * destination or domain requires encrypt; an unpinned one nothing
 * (opportunistic TLS, RFC 7435).
 */
#ifndef STARTTLSD_POLICY_H
#define STARTTLSD_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define POLICY_MAX_MX 8
#define POLICY_MAX_NAMES 16     /* certificate names looked at */
#define POLICY_NAME_MAX 256

enum policy_mode { POLICY_MONITOR, POLICY_ENFORCE };

enum policy_level {
	POLICY_LEVEL_UNSET,   /* no rule: pins decide */
	POLICY_LEVEL_NONE,
	POLICY_LEVEL_ENCRYPT,
	POLICY_LEVEL_VERIFY,
};

enum policy_signal {
	POLICY_SIG_NONE,
	POLICY_SIG_STARTTLS_MISSING,  /* EHLO (or no EHLO at all) without STARTTLS */
	POLICY_SIG_STARTTLS_MASKED,   /* a capability like XXXXXXXA instead */
	POLICY_SIG_STARTTLS_REFUSED,  /* STARTTLS answered with anything but 220 */
	POLICY_SIG_HANDSHAKE_FAILED,
	POLICY_SIG_VERSION_LOWERED,   /* TLS 1.3 pinned, 1.2 now: warn only */
	POLICY_SIG_KEY_CHANGED,       /* SPKI differs from the pin: info only */
	POLICY_SIG_VERIFY_FAILED,     /* chain did not verify under "verify" */
	POLICY_SIG_NAME_MISMATCH,     /* no certificate name matches the mx patterns */
	POLICY_SIG_DOMAIN_DOWNGRADE,  /* plaintext session carrying a pinned domain */
	POLICY_SIG_DANE_FAILED,       /* a DANE policy not met (domainpol.h) */
	POLICY_SIG_STS_FAILED,        /* an MTA-STS policy not met (domainpol.h) */
};

enum policy_match {
	POLICY_MATCH_DOMAIN,  /* "example.net": that domain */
	POLICY_MATCH_SUFFIX,  /* ".example.net": its subdomains */
	POLICY_MATCH_PREFIX,  /* address or CIDR */
};

struct policy_rule {
	enum policy_match match;
	char domain[POLICY_NAME_MAX];  /* lower case, no trailing dot */
	int family;                    /* AF_INET / AF_INET6 for prefixes */
	uint8_t addr[16];
	unsigned plen;
	enum policy_level level;
	bool has_mode;
	enum policy_mode mode;
	char mx[POLICY_MAX_MX][POLICY_NAME_MAX];
	size_t nmx;
	unsigned line;
};

struct policy {
	struct policy_rule *rules;     /* owned */
	size_t n;
};

/*
 * Parse a policy file's text. On error, err says "line N: why" and out is
 * left empty. Format (docs/policy.md): one rule a line,
 *   MATCH LEVEL [mode=monitor|enforce] [mx=PATTERN[,PATTERN...]]
 * '#' starts a comment.
 */
int policy_parse(const char *text, size_t len, struct policy *out, char *err,
    size_t errlen);
/* Read and parse a file; err gets "FILE:" prepended. */
int policy_load(const char *path, struct policy *out, char *err, size_t errlen);
void policy_free(struct policy *p);

/* The most specific rule: longest prefix; exact domain before suffixes. */
const struct policy_rule *policy_for_addr(const struct policy *p,
    const struct sockaddr *sa);
const struct policy_rule *policy_for_domain(const struct policy *p,
    const char *domain);

/* What is known about one destination or domain when deciding. */
struct policy_ctx {
	enum policy_mode mode;          /* global */
	const struct policy_rule *rule; /* or NULL */
	bool pinned;
	bool dane;                      /* a learned DANE address (PD_ADDR): TLS required */
	int64_t pinned_since;
	uint16_t pin_version;           /* destination pins */
	bool pin_has_spki;
	uint8_t pin_spki[32];
};

/* What a signal leads to. */
struct policy_out {
	enum policy_signal sig;
	bool alert;       /* write an event=downgrade line */
	bool block;       /* refuse with a 4xx */
	int prio;         /* syslog priority of the alert */
	enum policy_mode mode; /* the mode that applied */
};

/* Is TLS required at all for this context? */
bool policy_required(const struct policy_ctx *ctx);
/* The level a context asks for (a pin means encrypt). */
enum policy_level policy_level(const struct policy_ctx *ctx);

/*
 * TLS was not to be had with a destination (missing, masked, refused,
 * handshake failed). Always returns the decision in out.
 */
void policy_tls_unavailable(const struct policy_ctx *ctx, enum policy_signal sig,
    struct policy_out *out);

/* TLS facts of one connection, for the checks after a handshake. */
struct policy_tls {
	bool tls;
	uint16_t version;
	bool verified;
	const uint8_t *spki;      /* 32 bytes, or NULL */
	const char *const *names; /* certificate DNS names */
	size_t nnames;
};

/*
 * After a handshake with a destination: version lowered, key changed,
 * verify/name failures under "verify". Up to max outcomes in out; returns
 * how many.
 */
size_t policy_after_handshake(const struct policy_ctx *ctx,
    const struct policy_tls *t, struct policy_out *out, size_t max);

/*
 * One recipient domain on a session whose TLS state is t. out->sig is
 * POLICY_SIG_NONE when all is well.
 */
void policy_for_rcpt(const struct policy_ctx *ctx, const struct policy_tls *t,
    struct policy_out *out);

/* Does a certificate name satisfy an mx pattern ("*.example.net")? */
bool policy_mx_match(const char *pattern, const char *name);

const char *policy_signal_str(enum policy_signal sig);
/* RFC 8460 result type, or NULL where none applies. */
const char *policy_tlsrpt(enum policy_signal sig);
const char *policy_mode_str(enum policy_mode m);
const char *policy_level_str(enum policy_level l);

#endif
