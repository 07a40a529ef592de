/*
 * policy: the static policy file and the decisions. Pure: no I/O beyond
 * policy_load reading its file.
 */
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "starttlsd/nft.h"
#include "starttlsd/policy.h"

#define POLICY_MAX_RULES 10000
#define POLICY_FILE_MAX (4 * 1024 * 1024)

/* A host name as it may appear in a rule or pattern: lower-cased in place. */
static bool
valid_name(char *s, bool allow_wildcard)
{
	size_t n = strlen(s), label = 0;

	if (n > 0 && s[n - 1] == '.')
		s[--n] = '\0';
	if (n == 0 || n > 253)
		return false;
	if (allow_wildcard && s[0] == '*') {
		if (s[1] != '.' || s[2] == '\0')
			return false;
		s += 2;
	}
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!isalnum(c) && c != '-' && c != '_')
			return false;
		*s = (char)tolower(c);
		if (++label > 63)
			return false;
	}
	return label > 0;
}

static int
parse_level(const char *s, enum policy_level *out)
{
	if (strcmp(s, "none") == 0)
		*out = POLICY_LEVEL_NONE;
	else if (strcmp(s, "encrypt") == 0)
		*out = POLICY_LEVEL_ENCRYPT;
	else if (strcmp(s, "verify") == 0)
		*out = POLICY_LEVEL_VERIFY;
	else
		return -1;
	return 0;
}

static bool
same_match(const struct policy_rule *a, const struct policy_rule *b)
{
	if (a->match != b->match)
		return false;
	if (a->match == POLICY_MATCH_PREFIX)
		return a->family == b->family && a->plen == b->plen &&
		    memcmp(a->addr, b->addr, 16) == 0;
	return strcmp(a->domain, b->domain) == 0;
}

/* Any byte outside ASCII: an IDN written in Unicode (a U-label). */
static bool
has_non_ascii(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

#define WHY_ULABEL "non-ASCII name: write an internationalized domain in " \
	"its ASCII form (A-labels, xn--..., as idn2(1) prints it)"

/* One line's fields into r. Returns 0 or -1 with why. */
static int
parse_rule(char **f, size_t nf, struct policy_rule *r, const char **why)
{
	struct nft_prefix pfx;

	memset(r, 0, sizeof(*r));
	if (nf < 2)
		return *why = "expected MATCH LEVEL [mode=...] [mx=...]", -1;
	if (nft_parse_prefix(f[0], &pfx) == 0) {
		r->match = POLICY_MATCH_PREFIX;
		r->family = pfx.family;
		memcpy(r->addr, pfx.addr, 16);
		r->plen = pfx.len;
	} else if (strchr(f[0], ':') != NULL || strchr(f[0], '/') != NULL ||
	    (isdigit((unsigned char)f[0][0]) &&
	    strspn(f[0], "0123456789.") == strlen(f[0]))) {
		return *why = "bad address or CIDR (host bits must be zero)", -1;
	} else {
		const char *d = f[0];
		r->match = POLICY_MATCH_DOMAIN;
		if (d[0] == '.') {
			r->match = POLICY_MATCH_SUFFIX;
			d++;
		}
		if (strlen(d) >= sizeof(r->domain))
			return *why = "domain too long", -1;
		strcpy(r->domain, d);
		if (!valid_name(r->domain, false))
			return *why = has_non_ascii(d) ? WHY_ULABEL : "bad domain", -1;
	}
	if (parse_level(f[1], &r->level) < 0)
		return *why = "level must be none, encrypt or verify", -1;
	for (size_t i = 2; i < nf; i++) {
		if (strncmp(f[i], "mode=", 5) == 0) {
			if (r->has_mode)
				return *why = "mode given twice", -1;
			if (strcmp(f[i] + 5, "monitor") == 0)
				r->mode = POLICY_MONITOR;
			else if (strcmp(f[i] + 5, "enforce") == 0)
				r->mode = POLICY_ENFORCE;
			else
				return *why = "mode must be monitor or enforce", -1;
			r->has_mode = true;
		} else if (strncmp(f[i], "mx=", 3) == 0) {
			char *save = NULL, *tok;

			if (r->nmx > 0)
				return *why = "mx given twice", -1;
			for (tok = strtok_r(f[i] + 3, ",", &save); tok != NULL;
			    tok = strtok_r(NULL, ",", &save)) {
				if (r->nmx == POLICY_MAX_MX)
					return *why = "too many mx patterns (at most 8)", -1;
				if (has_non_ascii(tok))
					return *why = WHY_ULABEL, -1;
				if (strlen(tok) >= POLICY_NAME_MAX ||
				    !valid_name(strcpy(r->mx[r->nmx], tok), true))
					return *why = "bad mx pattern", -1;
				r->nmx++;
			}
			if (r->nmx == 0)
				return *why = "mx= needs at least one pattern", -1;
		} else {
			return *why = "unknown option (mode= or mx=)", -1;
		}
	}
	if (r->nmx > 0 && r->level != POLICY_LEVEL_VERIFY)
		return *why = "mx= only makes sense with verify", -1;
	return 0;
}

int
policy_parse(const char *text, size_t len, struct policy *out, char *err,
    size_t errlen)
{
	size_t pos = 0, cap = 0;
	unsigned lineno = 0;
	char line[1024];

	memset(out, 0, sizeof(*out));
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
		char *f[16], *p, *save = NULL;
		size_t nf = 0;
		struct policy_rule r;
		const char *why;

		lineno++;
		if (n >= sizeof(line)) {
			snprintf(err, errlen, "line %u: longer than %zu bytes",
			    lineno, sizeof(line) - 1);
			goto fail;
		}
		memcpy(line, text + pos, n);
		line[n] = '\0';
		pos += n + (nl ? 1 : 0);
		if (memchr(line, '\0', n) != NULL) {
			snprintf(err, errlen, "line %u: NUL byte", lineno);
			goto fail;
		}
		if ((p = strchr(line, '#')) != NULL)
			*p = '\0';
		for (p = strtok_r(line, " \t\r", &save); p != NULL;
		    p = strtok_r(NULL, " \t\r", &save)) {
			if (nf == 16) {
				snprintf(err, errlen, "line %u: too many fields", lineno);
				goto fail;
			}
			f[nf++] = p;
		}
		if (nf == 0)
			continue;
		if (parse_rule(f, nf, &r, &why) < 0) {
			snprintf(err, errlen, "line %u: %s: %s", lineno, f[0], why);
			goto fail;
		}
		r.line = lineno;
		for (size_t i = 0; i < out->n; i++)
			if (same_match(&out->rules[i], &r)) {
				snprintf(err, errlen, "line %u: %s: already given "
				    "on line %u", lineno, f[0], out->rules[i].line);
				goto fail;
			}
		if (out->n == POLICY_MAX_RULES) {
			snprintf(err, errlen, "line %u: more than %d rules", lineno,
			    POLICY_MAX_RULES);
			goto fail;
		}
		if (out->n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct policy_rule *nr = realloc(out->rules,
			    ncap * sizeof(*nr));
			if (nr == NULL) {
				snprintf(err, errlen, "out of memory");
				goto fail;
			}
			out->rules = nr;
			cap = ncap;
		}
		out->rules[out->n++] = r;
	}
	return 0;
fail:
	policy_free(out);
	return -1;
}

int
policy_load(const char *path, struct policy *out, char *err, size_t errlen)
{
	FILE *fp = fopen(path, "r");
	char *text;
	size_t n;
	char sub[256];

	memset(out, 0, sizeof(*out));
	if (fp == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if ((text = malloc(POLICY_FILE_MAX + 1)) == NULL) {
		fclose(fp);
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	n = fread(text, 1, POLICY_FILE_MAX + 1, fp);
	if (ferror(fp)) {
		/* A directory opens fine and fails here: never "no rules". */
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		fclose(fp);
		free(text);
		return -1;
	}
	fclose(fp);
	if (n > POLICY_FILE_MAX) {
		free(text);
		snprintf(err, errlen, "%s: larger than %d bytes", path,
		    POLICY_FILE_MAX);
		return -1;
	}
	if (policy_parse(text, n, out, sub, sizeof(sub)) < 0) {
		free(text);
		snprintf(err, errlen, "%s: %s", path, sub);
		return -1;
	}
	free(text);
	return 0;
}

void
policy_free(struct policy *p)
{
	free(p->rules);
	p->rules = NULL;
	p->n = 0;
}

static bool
prefix_has(const struct policy_rule *r, const uint8_t *a)
{
	unsigned full = r->plen / 8, rest = r->plen % 8;

	if (memcmp(r->addr, a, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((r->addr[full] ^ a[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

const struct policy_rule *
policy_for_addr(const struct policy *p, const struct sockaddr *sa)
{
	const struct policy_rule *best = NULL;
	const uint8_t *a;
	int family = sa->sa_family;

	if (family == AF_INET)
		a = (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	else if (family == AF_INET6)
		a = (const uint8_t *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
	else
		return NULL;
	for (size_t i = 0; i < p->n; i++) {
		const struct policy_rule *r = &p->rules[i];
		if (r->match != POLICY_MATCH_PREFIX || r->family != family ||
		    !prefix_has(r, a))
			continue;
		if (best == NULL || r->plen > best->plen)
			best = r;
	}
	return best;
}

const struct policy_rule *
policy_for_domain(const struct policy *p, const char *domain)
{
	const struct policy_rule *best = NULL;
	size_t dl = strlen(domain);

	for (size_t i = 0; i < p->n; i++) {
		const struct policy_rule *r = &p->rules[i];
		size_t rl = strlen(r->domain);

		if (r->match == POLICY_MATCH_DOMAIN) {
			if (strcasecmp(r->domain, domain) == 0)
				return r; /* exact wins outright */
		} else if (r->match == POLICY_MATCH_SUFFIX) {
			/* ".example.net" matches "a.example.net", not "example.net" */
			if (dl > rl + 1 && domain[dl - rl - 1] == '.' &&
			    strcasecmp(domain + dl - rl, r->domain) == 0 &&
			    (best == NULL || rl > strlen(best->domain)))
				best = r;
		}
	}
	return best;
}

enum policy_level
policy_level(const struct policy_ctx *ctx)
{
	if (ctx->rule != NULL)
		return ctx->rule->level;
	return ctx->pinned || ctx->dane ? POLICY_LEVEL_ENCRYPT :
	    POLICY_LEVEL_UNSET;
}

bool
policy_required(const struct policy_ctx *ctx)
{
	enum policy_level l = policy_level(ctx);
	return l == POLICY_LEVEL_ENCRYPT || l == POLICY_LEVEL_VERIFY;
}

static enum policy_mode
mode_of(const struct policy_ctx *ctx)
{
	return ctx->rule != NULL && ctx->rule->has_mode ? ctx->rule->mode :
	    ctx->mode;
}

static void
decide(const struct policy_ctx *ctx, enum policy_signal sig, bool alert,
    bool may_block, struct policy_out *out)
{
	memset(out, 0, sizeof(*out));
	out->sig = sig;
	out->mode = mode_of(ctx);
	out->alert = alert;
	out->block = may_block && policy_required(ctx) &&
	    out->mode == POLICY_ENFORCE;
	out->prio = out->block ? LOG_ERR : LOG_WARNING;
}

void
policy_tls_unavailable(const struct policy_ctx *ctx, enum policy_signal sig,
    struct policy_out *out)
{
	/*
	 * A server that never offered STARTTLS is only news when TLS was
	 * expected; a masked, refused or broken STARTTLS is tampering or
	 * breakage worth an alert even the first time.
	 */
	bool alert = policy_required(ctx) || sig != POLICY_SIG_STARTTLS_MISSING ||
	    ctx->pinned;

	decide(ctx, sig, alert, true, out);
}

bool
policy_mx_match(const char *pattern, const char *name)
{
	const char *pdot, *ndot;

	if (pattern[0] == '\0' || name[0] == '\0')
		return false;
	if (strcasecmp(pattern, name) == 0)
		return true;
	/* Pattern "*.example.net" covers exactly one more label. */
	if (pattern[0] == '*' && pattern[1] == '.') {
		ndot = strchr(name, '.');
		if (ndot != NULL && ndot != name && name[0] != '*' &&
		    strcasecmp(ndot + 1, pattern + 2) == 0)
			return true;
	}
	/* Certificate name "*.example.net" covers "mx.example.net". */
	if (name[0] == '*' && name[1] == '.' && pattern[0] != '*') {
		pdot = strchr(pattern, '.');
		if (pdot != NULL && pdot != pattern &&
		    strcasecmp(pdot + 1, name + 2) == 0)
			return true;
	}
	return false;
}

/* Under "verify": does the connection satisfy the rule? sig if not. */
static enum policy_signal
verify_check(const struct policy_ctx *ctx, const struct policy_tls *t)
{
	const struct policy_rule *r = ctx->rule;

	if (r == NULL || r->level != POLICY_LEVEL_VERIFY)
		return POLICY_SIG_NONE;
	if (!t->verified)
		return POLICY_SIG_VERIFY_FAILED;
	if (r->nmx == 0)
		return POLICY_SIG_NONE;
	for (size_t i = 0; i < r->nmx; i++)
		for (size_t j = 0; j < t->nnames; j++)
			if (policy_mx_match(r->mx[i], t->names[j]))
				return POLICY_SIG_NONE;
	return POLICY_SIG_NAME_MISMATCH;
}

size_t
policy_after_handshake(const struct policy_ctx *ctx, const struct policy_tls *t,
    struct policy_out *out, size_t max)
{
	size_t n = 0;
	enum policy_signal v;

	if (n < max && ctx->pinned && ctx->pin_version > t->version) {
		decide(ctx, POLICY_SIG_VERSION_LOWERED, true, false, &out[n]);
		out[n++].prio = LOG_WARNING;
	}
	if (n < max && ctx->pinned && ctx->pin_has_spki && t->spki != NULL &&
	    memcmp(ctx->pin_spki, t->spki, 32) != 0) {
		/* Keys roll over: news, not an alarm, unless verify says so. */
		decide(ctx, POLICY_SIG_KEY_CHANGED, true, false, &out[n]);
		out[n++].prio = LOG_INFO;
	}
	if (n < max && (v = verify_check(ctx, t)) != POLICY_SIG_NONE)
		decide(ctx, v, true, true, &out[n++]);
	return n;
}

void
policy_for_rcpt(const struct policy_ctx *ctx, const struct policy_tls *t,
    struct policy_out *out)
{
	enum policy_signal v;

	memset(out, 0, sizeof(*out));
	out->sig = POLICY_SIG_NONE;
	if (!policy_required(ctx))
		return;
	if (!t->tls) {
		decide(ctx, POLICY_SIG_DOMAIN_DOWNGRADE, true, true, out);
		return;
	}
	if ((v = verify_check(ctx, t)) != POLICY_SIG_NONE)
		decide(ctx, v, true, true, out);
}

const char *
policy_signal_str(enum policy_signal sig)
{
	switch (sig) {
	case POLICY_SIG_NONE: return "none";
	case POLICY_SIG_STARTTLS_MISSING: return "starttls-missing";
	case POLICY_SIG_STARTTLS_MASKED: return "starttls-masked";
	case POLICY_SIG_STARTTLS_REFUSED: return "starttls-refused";
	case POLICY_SIG_HANDSHAKE_FAILED: return "handshake-failed";
	case POLICY_SIG_VERSION_LOWERED: return "tls-version-lowered";
	case POLICY_SIG_KEY_CHANGED: return "key-changed";
	case POLICY_SIG_VERIFY_FAILED: return "verify-failed";
	case POLICY_SIG_NAME_MISMATCH: return "name-mismatch";
	case POLICY_SIG_DOMAIN_DOWNGRADE: return "domain-downgrade";
	case POLICY_SIG_DANE_FAILED: return "dane-failed";
	case POLICY_SIG_STS_FAILED: return "sts-failed";
	}
	return "unknown";
}

const char *
policy_tlsrpt(enum policy_signal sig)
{
	switch (sig) {
	case POLICY_SIG_STARTTLS_MISSING:
	case POLICY_SIG_STARTTLS_MASKED:
	case POLICY_SIG_STARTTLS_REFUSED:
	case POLICY_SIG_DOMAIN_DOWNGRADE:
		return "starttls-not-supported";
	case POLICY_SIG_HANDSHAKE_FAILED:
		return "validation-failure";
	case POLICY_SIG_VERIFY_FAILED:
		return "certificate-not-trusted";
	case POLICY_SIG_NAME_MISMATCH:
		return "certificate-host-mismatch";
	case POLICY_SIG_NONE:
	case POLICY_SIG_VERSION_LOWERED:
	case POLICY_SIG_KEY_CHANGED:
	case POLICY_SIG_DANE_FAILED:  /* per failure: the line's own tlsrpt */
	case POLICY_SIG_STS_FAILED:
		break;
	}
	return NULL;
}

const char *
policy_mode_str(enum policy_mode m)
{
	return m == POLICY_ENFORCE ? "enforce" : "monitor";
}

const char *
policy_level_str(enum policy_level l)
{
	switch (l) {
	case POLICY_LEVEL_UNSET: return "unset";
	case POLICY_LEVEL_NONE: return "none";
	case POLICY_LEVEL_ENCRYPT: return "encrypt";
	case POLICY_LEVEL_VERIFY: return "verify";
	}
	return "unknown";
}
