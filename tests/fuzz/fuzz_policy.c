/*
 * fuzz_policy: policy_parse() over an arbitrary policy file, then the
 * lookups and decisions a session makes with what it parsed; policy_free().
 * LeakSanitizer (on in libFuzzer) reports anything the parser or
 * policy_free() leaves behind, on success and on every error path.
 *
 * Invariants (policy.h, docs/policy.md): on error the policy is empty and
 * err says "line N: ..."; on success every rule is well-formed (a level,
 * lower-case names without a trailing dot, host bits zero, mx= only with
 * verify, increasing line numbers); each rule is found again by the lookup
 * for what it names (a domain, a subdomain of a suffix, its own prefix),
 * and every lookup result is the most specific match; decisions only block
 * in enforce mode for a level that requires TLS.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "starttlsd/policy.h"
#include "fuzz.h"

static const char *const probe_domains[] = {
	"example.net", "EXAMPLE.NET", "mail.example.org", "example.org",
	"a.b.example.org", "secure.example", "", ".", "a", "xn--bcher-kva.example",
	"-", "mx1.example.net",
};

static const char *const probe_addrs[] = {
	"198.51.100.25", "203.0.113.9", "0.0.0.0", "255.255.255.255",
	"2001:db8:7::25", "::ffff:198.51.100.25", "::", "fe80::1",
};

/* names a certificate might carry, for policy_after_handshake */
static const char *const cert_names[] = {
	"mx1.example.net", "*.mail.example.net", "*.example.org", "EXAMPLE.NET",
};
#define NNAMES (sizeof(cert_names) / sizeof(cert_names[0]))

static bool
in_rules(const struct policy *p, const struct policy_rule *r)
{
	return r >= p->rules && r < p->rules + p->n;
}

static bool
prefix_has(const struct policy_rule *r, int family, const uint8_t *a)
{
	unsigned full = r->plen / 8, rest = r->plen % 8;

	if (r->family != family)
		return false;
	if (memcmp(r->addr, a, full) != 0)
		return false;
	return rest == 0 ||
	    ((r->addr[full] ^ a[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

static void
check_name(const char *s, size_t cap, bool wildcard, const char *what)
{
	size_t n = strnlen(s, cap);

	FUZZ_CHECK(n > 0 && n < cap, "%s: length %zu", what, n);
	FUZZ_CHECK(s[n - 1] != '.', "%s \"%s\" ends with a dot", what, s);
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK(!(s[i] >= 'A' && s[i] <= 'Z') &&
		    (s[i] != '*' || (wildcard && i == 0)),
		    "%s \"%s\" not lower case or misplaced '*'", what, s);
}

static void
check_rule(const struct policy *p, const struct policy_rule *r, unsigned prev)
{
	FUZZ_CHECK(r->line > prev, "rule line %u after %u", r->line, prev);
	FUZZ_CHECK(r->level == POLICY_LEVEL_NONE ||
	    r->level == POLICY_LEVEL_ENCRYPT || r->level == POLICY_LEVEL_VERIFY,
	    "line %u: level %d", r->line, (int)r->level);
	FUZZ_CHECK(r->nmx <= POLICY_MAX_MX, "line %u: nmx %zu", r->line, r->nmx);
	FUZZ_CHECK(r->nmx == 0 || r->level == POLICY_LEVEL_VERIFY,
	    "line %u: mx= without verify", r->line);
	for (size_t i = 0; i < r->nmx; i++)
		check_name(r->mx[i], sizeof(r->mx[i]), true, "mx");
	if (r->match == POLICY_MATCH_PREFIX) {
		unsigned bits = r->family == AF_INET ? 32 : 128;

		FUZZ_CHECK(r->family == AF_INET || r->family == AF_INET6,
		    "line %u: family %d", r->line, r->family);
		FUZZ_CHECK(r->plen <= bits, "line %u: /%u", r->line, r->plen);
		for (unsigned b = r->plen; b < 128; b++)
			FUZZ_CHECK(!(r->addr[b / 8] & (0x80 >> (b % 8))),
			    "line %u: host bit %u set", r->line, b);
		/* Its own address: found, by a rule at least as long. */
		{
			struct sockaddr_storage ss;
			const struct policy_rule *got;

			memset(&ss, 0, sizeof(ss));
			ss.ss_family = (sa_family_t)r->family;
			if (r->family == AF_INET)
				memcpy(&((struct sockaddr_in *)(void *)&ss)->sin_addr,
				    r->addr, 4);
			else
				memcpy(&((struct sockaddr_in6 *)(void *)&ss)->sin6_addr,
				    r->addr, 16);
			got = policy_for_addr(p, (struct sockaddr *)&ss);
			FUZZ_CHECK(got != NULL && in_rules(p, got) &&
			    got->match == POLICY_MATCH_PREFIX &&
			    got->plen >= r->plen &&
			    prefix_has(got, r->family, r->addr),
			    "line %u: its own prefix is not found", r->line);
		}
		return;
	}
	FUZZ_CHECK(r->match == POLICY_MATCH_DOMAIN ||
	    r->match == POLICY_MATCH_SUFFIX, "line %u: match %d", r->line,
	    (int)r->match);
	check_name(r->domain, sizeof(r->domain), false, "domain");
	if (r->match == POLICY_MATCH_DOMAIN) {
		char up[POLICY_NAME_MAX];
		const struct policy_rule *got = policy_for_domain(p, r->domain);

		FUZZ_CHECK(got == r, "line %u: %s finds line %u", r->line,
		    r->domain, got ? got->line : 0);
		snprintf(up, sizeof(up), "%s", r->domain);
		for (char *c = up; *c != '\0'; c++)
			if (*c >= 'a' && *c <= 'z')
				*c = (char)(*c - 'a' + 'A');
		FUZZ_CHECK(policy_for_domain(p, up) == r,
		    "line %u: %s in upper case is not found", r->line, up);
	} else {
		char sub[POLICY_NAME_MAX + 8];
		const struct policy_rule *got;

		snprintf(sub, sizeof(sub), "zz-sub.%s", r->domain);
		got = policy_for_domain(p, sub);
		FUZZ_CHECK(got != NULL && in_rules(p, got), "line %u: %s finds "
		    "nothing", r->line, sub);
		FUZZ_CHECK((got->match == POLICY_MATCH_DOMAIN &&
		    strcasecmp(got->domain, sub) == 0) ||
		    (got->match == POLICY_MATCH_SUFFIX &&
		    strlen(got->domain) >= strlen(r->domain)),
		    "line %u: %s finds line %u (%s)", r->line, sub, got->line,
		    got->domain);
		/* ".example.org" is not "example.org" itself. */
		got = policy_for_domain(p, r->domain);
		FUZZ_CHECK(got != r, "line %u: the suffix matches %s itself",
		    r->line, r->domain);
	}
}

/* What a session would decide with rule (may be NULL). */
static void
decisions(const struct policy_rule *rule, bool pinned, enum policy_mode mode)
{
	static const uint8_t spki[32] = { 1 };
	struct policy_ctx ctx = {
		.mode = mode, .rule = rule, .pinned = pinned,
		.pinned_since = 1700000000, .pin_version = 0x0304,
		.pin_has_spki = pinned,
	};
	struct policy_out o, outs[3];
	struct policy_tls t = {
		.tls = true, .version = 0x0303, .verified = false, .spki = spki,
		.names = cert_names,
		.nnames = NNAMES,
	};
	enum policy_mode eff = rule && rule->has_mode ? rule->mode : mode;
	bool req = policy_required(&ctx);
	size_t n;

	FUZZ_CHECK(req == (policy_level(&ctx) == POLICY_LEVEL_ENCRYPT ||
	    policy_level(&ctx) == POLICY_LEVEL_VERIFY), "policy_required");
	for (int sig = POLICY_SIG_STARTTLS_MISSING;
	    sig <= POLICY_SIG_HANDSHAKE_FAILED; sig++) {
		policy_tls_unavailable(&ctx, (enum policy_signal)sig, &o);
		FUZZ_CHECK(o.sig == (enum policy_signal)sig && o.mode == eff,
		    "tls_unavailable: sig %d mode %d", (int)o.sig, (int)o.mode);
		FUZZ_CHECK(o.block == (req && eff == POLICY_ENFORCE),
		    "tls_unavailable: block %d", o.block);
		FUZZ_CHECK(!o.block || o.alert, "a block without an alert");
	}
	for (int v = 0; v < 2; v++) {
		t.tls = v;
		policy_for_rcpt(&ctx, &t, &o);
		FUZZ_CHECK(!o.block || (req && eff == POLICY_ENFORCE),
		    "rcpt blocked without enforce");
		FUZZ_CHECK(o.sig != POLICY_SIG_NONE || (!o.block && !o.alert),
		    "rcpt: no signal but alert/block");
		FUZZ_CHECK(v || !req || o.sig == POLICY_SIG_DOMAIN_DOWNGRADE,
		    "rcpt without TLS: sig %d", (int)o.sig);
	}
	t.verified = true;
	for (size_t k = 0; k <= NNAMES; k++) {
		t.nnames = k;
		n = policy_after_handshake(&ctx, &t, outs, 3);
		FUZZ_CHECK(n <= 3, "after_handshake: %zu", n);
		for (size_t i = 0; i < n; i++)
			FUZZ_CHECK(!outs[i].block || (req && eff == POLICY_ENFORCE &&
			    (outs[i].sig == POLICY_SIG_VERIFY_FAILED ||
			    outs[i].sig == POLICY_SIG_NAME_MISMATCH)),
			    "after_handshake: block for sig %d",
			    (int)outs[i].sig);
		if (rule != NULL && rule->level == POLICY_LEVEL_VERIFY &&
		    rule->nmx > 0) {
			bool m = false;
			for (size_t i = 0; i < rule->nmx; i++)
				for (size_t j = 0; j < k; j++)
					m |= policy_mx_match(rule->mx[i], cert_names[j]);
			FUZZ_CHECK(m == (n == 0 || outs[n - 1].sig !=
			    POLICY_SIG_NAME_MISMATCH), "name check disagrees "
			    "with policy_mx_match");
		}
	}
	(void)policy_signal_str(o.sig);
	(void)policy_tlsrpt(o.sig);
	(void)policy_level_str(policy_level(&ctx));
	(void)policy_mode_str(eff);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct policy p;
	char err[256] = "", *text = fuzz_dup(data, size);
	unsigned prev = 0;

	memset(&p, 0xa5, sizeof(p));
	if (policy_parse(text, size, &p, err, sizeof(err)) != 0) {
		FUZZ_CHECK(p.rules == NULL && p.n == 0, "error, but %zu rules",
		    p.n);
		FUZZ_CHECK(strncmp(err, "line ", 5) == 0, "error text \"%s\"",
		    err);
		policy_free(&p);
		free(text);
		return 0;
	}
	FUZZ_CHECK(p.n == 0 || p.rules != NULL, "%zu rules at NULL", p.n);
	for (size_t i = 0; i < p.n; i++) {
		check_rule(&p, &p.rules[i], prev);
		prev = p.rules[i].line;
	}
	for (size_t i = 0; i < sizeof(probe_domains) / sizeof(probe_domains[0]);
	    i++) {
		const struct policy_rule *r = policy_for_domain(&p,
		    probe_domains[i]);

		FUZZ_CHECK(r == NULL || (in_rules(&p, r) &&
		    r->match != POLICY_MATCH_PREFIX), "domain lookup %s",
		    probe_domains[i]);
		decisions(r, i % 2, i % 3 ? POLICY_MONITOR : POLICY_ENFORCE);
	}
	for (size_t i = 0; i < sizeof(probe_addrs) / sizeof(probe_addrs[0]);
	    i++) {
		struct sockaddr_storage ss;
		const struct policy_rule *r;
		uint8_t *a;
		int fam = strchr(probe_addrs[i], ':') ? AF_INET6 : AF_INET;

		memset(&ss, 0, sizeof(ss));
		ss.ss_family = (sa_family_t)fam;
		a = fam == AF_INET ?
		    (uint8_t *)&((struct sockaddr_in *)(void *)&ss)->sin_addr :
		    (uint8_t *)&((struct sockaddr_in6 *)(void *)&ss)->sin6_addr;
		FUZZ_CHECK(inet_pton(fam, probe_addrs[i], a) == 1, "probe %s",
		    probe_addrs[i]);
		r = policy_for_addr(&p, (struct sockaddr *)&ss);
		FUZZ_CHECK(r == NULL || (in_rules(&p, r) &&
		    r->match == POLICY_MATCH_PREFIX && prefix_has(r, fam, a)),
		    "address lookup %s", probe_addrs[i]);
		/* The most specific: no containing rule is longer. */
		for (size_t j = 0; j < p.n; j++)
			if (p.rules[j].match == POLICY_MATCH_PREFIX &&
			    prefix_has(&p.rules[j], fam, a))
				FUZZ_CHECK(r != NULL && r->plen >= p.rules[j].plen,
				    "address lookup %s misses line %u",
				    probe_addrs[i], p.rules[j].line);
		decisions(r, i % 2, i % 3 ? POLICY_ENFORCE : POLICY_MONITOR);
	}
	{
		struct sockaddr_un un = { .sun_family = AF_UNIX };
		FUZZ_CHECK(policy_for_addr(&p, (struct sockaddr *)&un) == NULL,
		    "a rule for an AF_UNIX address");
	}
	policy_free(&p);
	FUZZ_CHECK(p.rules == NULL && p.n == 0, "policy_free left rules");
	policy_free(&p); /* twice is fine */
	free(text);
	return 0;
}
