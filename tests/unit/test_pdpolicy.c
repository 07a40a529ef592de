/*
 * Unit tests for proxy/pdpolicy.c: every row of the decision table
 * (/work/shared/dane.md section 3, pdpolicy.h) from hand-built answers, no
 * DNS. A tiny fake resolver answers what pdp_next asks, from a table, so
 * the tests also check which queries are asked (TLSA only where it
 * matters). Then the learned-address table behind PD_ADDR.
 */

#include "unit.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include "starttlsd/pdpolicy.h"

/* ---- a fake resolver ---------------------------------------------------- */

#define MAXF 48

struct fans {
	int type;
	const char *name;       /* the name asked (TLSA: the base host) */
	enum res_status status;
	uint32_t ttl;
	size_t nrr;
	uint8_t rd[12][64];
	size_t rdlen[12];
	const char *canon;
	const char *why;
};

static struct fans tab[MAXF];
static size_t ntab;
static char asked[64][300];
static size_t nasked;

static const char *
tname(int t)
{
	return t == RES_T_MX ? "MX" : t == RES_T_A ? "A" : t == RES_T_AAAA ?
	    "AAAA" : t == RES_T_TLSA ? "TLSA" : "?";
}

static void
reset(void)
{
	memset(tab, 0, sizeof(tab));
	ntab = 0;
	nasked = 0;
}

static struct fans *
ans(int type, const char *name, enum res_status st, uint32_t ttl)
{
	struct fans *f = &tab[ntab++];

	f->type = type;
	f->name = name;
	f->status = st;
	f->ttl = ttl;
	return f;
}

static void
rr(struct fans *f, const void *p, size_t n)
{
	memcpy(f->rd[f->nrr], p, n);
	f->rdlen[f->nrr++] = n;
}

static void
mx(struct fans *f, uint16_t pref, const char *host)
{
	uint8_t b[64];
	size_t o = 2;

	b[0] = (uint8_t)(pref >> 8);
	b[1] = (uint8_t)pref;
	while (*host) {
		const char *dot = strchr(host, '.');
		size_t l = dot ? (size_t)(dot - host) : strlen(host);
		b[o++] = (uint8_t)l;
		memcpy(b + o, host, l);
		o += l;
		host += l + (dot ? 1 : 0);
	}
	b[o++] = 0;
	rr(f, b, o);
}

static void
a4(struct fans *f, const char *ip)
{
	uint8_t b[4];
	inet_pton(AF_INET, ip, b);
	rr(f, b, 4);
}

static void
a6(struct fans *f, const char *ip)
{
	uint8_t b[16];
	inet_pton(AF_INET6, ip, b);
	rr(f, b, 16);
}

/* TLSA: usable 3 1 1, or unusable (usage 1). */
static void
tlsa(struct fans *f, bool usable, uint8_t fill)
{
	uint8_t b[35];

	b[0] = usable ? 3 : 1;
	b[1] = 1;
	b[2] = 1;
	memset(b + 3, fill, 32);
	rr(f, b, sizeof(b));
}

/* A host with secure A (ip) and secure NODATA AAAA, TTL 300. */
static void
host(const char *name, const char *ip, enum res_status st)
{
	a4(ans(RES_T_A, name, st, 300), ip);
	ans(RES_T_AAAA, name, st, 300);
}

static void
pd_addr4(struct pd_req_addr *x, const char *ip)
{
	memset(x, 0, sizeof(*x));
	x->family = AF_INET;
	inet_pton(AF_INET, ip, x->addr);
}

/* Run the facts against the table until pdp_next says done. */
static void
run(struct pdp_facts *f, const char *domain, const char *ip)
{
	struct pd_req_addr x;
	struct pdp_query q[32];
	bool done = false;
	int rounds = 0;

	pd_addr4(&x, ip);
	pdp_init(f, domain, &x);
	while (!done && rounds++ < 10) {
		size_t n = pdp_next(f, q, 32, &done);
		for (size_t i = 0; i < n; i++) {
			struct res_answer a;
			const uint8_t *rdp[12];
			struct fans *hit = NULL;

			snprintf(asked[nasked++ % 64], sizeof(asked[0]), "%s %s",
			    tname(q[i].type), q[i].name);
			for (size_t k = 0; k < ntab && hit == NULL; k++)
				if (tab[k].type == q[i].type &&
				    strcmp(tab[k].name, q[i].name) == 0)
					hit = &tab[k];
			memset(&a, 0, sizeof(a));
			a.qname = q[i].name;
			if (hit == NULL) {
				/* default: secure NXDOMAIN */
				a.status = RES_SECURE;
				a.nxdomain = true;
				a.ttl = 300;
			} else {
				for (size_t k = 0; k < hit->nrr; k++)
					rdp[k] = hit->rd[k];
				a.status = hit->status;
				a.ttl = hit->ttl;
				a.nrr = hit->nrr;
				a.rdata = rdp;
				a.rdlen = hit->rdlen;
				a.canonname = hit->canon;
				a.why = hit->why;
			}
			assert_int_equal(pdp_store(q[i].into, &a), 0);
		}
		assert_true(n > 0 || done);
	}
	assert_true(done);
}

static bool
was_asked(const char *what)
{
	for (size_t i = 0; i < nasked && i < 64; i++)
		if (strcmp(asked[i], what) == 0)
			return true;
	return false;
}

/* ---- the table ------------------------------------------------------------ */

static void
test_mx_fail(void **state)
{
	struct pdp_facts f;
	struct pd_pol p;

	reset();
	ans(RES_T_MX, "d.example", RES_BOGUS, 300)->why = "signature expired";
	run(&f, "d.example", "192.0.2.1");
	pdp_decide(&f, true, &p);
	EQ("bogus", p.dane, PD_DANE_TEMPFAIL);
	EQ("bogus", p.dane_result, PD_R_DNSSEC_INVALID);
	EQ("bogus", p.ttl, PD_TTL_FAIL);
	STREQ("bogus", p.why, "MX d.example: bogus: signature expired");
	EQ("bogus: nothing more asked", nasked, 1);
	pdp_free(&f);

	reset();
	ans(RES_T_MX, "d.example", RES_ERROR, 0)->why = "SERVFAIL";
	run(&f, "d.example", "192.0.2.1");
	pdp_decide(&f, true, &p);
	EQ("error", p.dane, PD_DANE_TEMPFAIL);
	EQ("error", p.dane_result, PD_R_DNSSEC_INVALID);
	STREQ("error", p.why, "MX d.example: error: SERVFAIL");
	pdp_free(&f);
}

/* Two MX hosts, X at the first: only its TLSA is asked. */
static void
test_match(void **state)
{
	struct pdp_facts f;
	struct pd_pol p;
	struct fans *t;

	reset();
	t = ans(RES_T_MX, "d.example", RES_SECURE, 600);
	mx(t, 20, "mx2.d.example");
	mx(t, 10, "mx1.d.example");
	host("mx1.d.example", "192.0.2.1", RES_SECURE);
	host("mx2.d.example", "192.0.2.2", RES_SECURE);
	t = ans(RES_T_TLSA, "mx1.d.example", RES_SECURE, 120);
	tlsa(t, true, 0xaa);
	tlsa(t, false, 0xbb);
	tlsa(ans(RES_T_TLSA, "mx2.d.example", RES_SECURE, 300), true, 0xcc);
	run(&f, "d.example", "192.0.2.1");
	assert_true(was_asked("TLSA mx1.d.example"));
	assert_false(was_asked("TLSA mx2.d.example"));
	assert_true(was_asked("AAAA mx2.d.example"));
	STREQ("order", f.hosts[0].name, "mx1.d.example");
	pdp_decide(&f, true, &p);
	EQ("match", p.dane, PD_DANE_MATCH);
	EQ("match", p.flags & PD_F_ANY_MX, 0);
	STREQ("match", p.mx, "mx1.d.example");
	EQ("match", p.nhosts, 1);
	STREQ("match", p.hosts[0].host, "mx1.d.example");
	STREQ("match", p.hosts[0].base, "mx1.d.example");
	EQ("match: the whole RRset", p.hosts[0].nrr, 2);
	EQ("match", p.hosts[0].rdata[0][3], 0xaa);
	EQ("match: least TTL", p.ttl, 120);
	STREQ("match", p.why, "");
	pdp_free(&f);

	/* dane off: none, no matter what */
	reset();
	t = ans(RES_T_MX, "d.example", RES_SECURE, 600);
	mx(t, 10, "mx1.d.example");
	host("mx1.d.example", "192.0.2.1", RES_SECURE);
	tlsa(ans(RES_T_TLSA, "mx1.d.example", RES_SECURE, 120), true, 0xaa);
	{
		struct pd_req_addr x;
		struct pdp_query q[32];
		bool done = false;

		pd_addr4(&x, "192.0.2.1");
		pdp_init(&f, "d.example", &x);
		f.no_tlsa = true;
		for (int r = 0; r < 5 && !done; r++) {
			size_t n = pdp_next(&f, q, 32, &done);
			for (size_t i = 0; i < n; i++) {
				struct res_answer a;
				const uint8_t *rdp[12];
				struct fans *hit = NULL;
				assert_int_not_equal(q[i].type, RES_T_TLSA);
				for (size_t k = 0; k < ntab; k++)
					if (tab[k].type == q[i].type &&
					    strcmp(tab[k].name, q[i].name) == 0)
						hit = &tab[k];
				assert_non_null(hit);
				for (size_t k = 0; k < hit->nrr; k++)
					rdp[k] = hit->rd[k];
				memset(&a, 0, sizeof(a));
				a.status = hit->status;
				a.ttl = hit->ttl;
				a.nrr = hit->nrr;
				a.rdata = rdp;
				a.rdlen = hit->rdlen;
				pdp_store(q[i].into, &a);
			}
		}
		assert_true(done);
	}
	pdp_decide(&f, false, &p);
	EQ("off", p.dane, PD_DANE_NONE);
	STREQ("off: the MX is still known", p.mx, "mx1.d.example");
	EQ("off", p.nhosts, 0);
	pdp_free(&f);
}

/* The dialled host's TLSA answer decides. */
static void
test_host_tlsa(void **state)
{
	static const struct {
		const char *name;
		enum res_status st;
		int nrr;        /* -1: unusable only */
		enum pd_dane want;
		enum pd_result res;
		const char *why;
	} rows[] = {
		{ "no usable", RES_SECURE, -1, PD_DANE_ENCRYPT, PD_R_SUCCESS, "" },
		{ "secure NODATA", RES_SECURE, 0, PD_DANE_NONE, PD_R_SUCCESS, "" },
		{ "insecure", RES_INSECURE, 1, PD_DANE_NONE, PD_R_SUCCESS, "" },
		{ "bogus", RES_BOGUS, 0, PD_DANE_TEMPFAIL, PD_R_DNSSEC_INVALID,
		  "TLSA _25._tcp.mx.d.example: bogus: x" },
		{ "error", RES_ERROR, 0, PD_DANE_TEMPFAIL, PD_R_DNSSEC_INVALID,
		  "TLSA _25._tcp.mx.d.example: error: x" },
	};

	for (size_t i = 0; i < NELEM(rows); i++) {
		struct pdp_facts f;
		struct pd_pol p;
		struct fans *t;

		reset();
		mx(ans(RES_T_MX, "d.example", RES_SECURE, 600), 10, "mx.d.example");
		host("mx.d.example", "192.0.2.1", RES_SECURE);
		t = ans(RES_T_TLSA, "mx.d.example", rows[i].st, 300);
		t->why = "x";
		if (rows[i].nrr < 0)
			tlsa(t, false, 1);
		else if (rows[i].nrr > 0)
			tlsa(t, true, 1);
		run(&f, "d.example", "192.0.2.1");
		pdp_decide(&f, true, &p);
		EQ(rows[i].name, p.dane, rows[i].want);
		EQ(rows[i].name, p.dane_result, rows[i].res);
		STREQ(rows[i].name, p.why, rows[i].why);
		STREQ(rows[i].name, p.mx, "mx.d.example");
		EQ(rows[i].name, p.nhosts, 0);
		EQ(rows[i].name, p.ttl, rows[i].want == PD_DANE_TEMPFAIL ?
		    PD_TTL_FAIL : 300);
		pdp_free(&f);
	}
}

/* Insecure host: no TLSA asked, none. Insecure MX, secure host: DANE. */
static void
test_insecure(void **state)
{
	struct pdp_facts f;
	struct pd_pol p;

	reset();
	mx(ans(RES_T_MX, "d.example", RES_SECURE, 600), 10, "mx.d.example");
	host("mx.d.example", "192.0.2.1", RES_INSECURE);
	tlsa(ans(RES_T_TLSA, "mx.d.example", RES_INSECURE, 300), true, 1);
	run(&f, "d.example", "192.0.2.1");
	assert_false(was_asked("TLSA mx.d.example"));
	pdp_decide(&f, true, &p);
	EQ("insecure host", p.dane, PD_DANE_NONE);
	STREQ("insecure host", p.mx, "mx.d.example");
	pdp_free(&f);

	reset();
	mx(ans(RES_T_MX, "d.example", RES_INSECURE, 600), 10, "mx.other.example");
	host("mx.other.example", "192.0.2.1", RES_SECURE);
	tlsa(ans(RES_T_TLSA, "mx.other.example", RES_SECURE, 300), true, 1);
	run(&f, "d.example", "192.0.2.1");
	pdp_decide(&f, true, &p);
	EQ("insecure MX, secure host", p.dane, PD_DANE_MATCH);
	STREQ("insecure MX, secure host", p.mx, "mx.other.example");
	pdp_free(&f);
}

/* X in no host's addresses. */
static void
test_any_mx(void **state)
{
	struct pdp_facts f;
	struct pd_pol p;
	struct fans *t;

	/* every MX with usable TLSA: match any_mx, every host */
	reset();
	t = ans(RES_T_MX, "d.example", RES_SECURE, 600);
	mx(t, 10, "mx1.d.example");
	mx(t, 20, "mx2.d.example");
	host("mx1.d.example", "192.0.2.1", RES_SECURE);
	host("mx2.d.example", "192.0.2.2", RES_SECURE);
	tlsa(ans(RES_T_TLSA, "mx1.d.example", RES_SECURE, 300), true, 1);
	tlsa(ans(RES_T_TLSA, "mx2.d.example", RES_SECURE, 300), true, 2);
	run(&f, "d.example", "203.0.113.9");
	assert_true(was_asked("TLSA mx1.d.example"));
	assert_true(was_asked("TLSA mx2.d.example"));
	pdp_decide(&f, true, &p);
	EQ("any", p.dane, PD_DANE_MATCH);
	EQ("any", p.flags & PD_F_ANY_MX, PD_F_ANY_MX);
	EQ("any", p.nhosts, 2);
	STREQ("any", p.mx, "");
	STREQ("any", p.hosts[1].host, "mx2.d.example");
	EQ("any", p.hosts[1].rdata[0][3], 2);
	pdp_free(&f);

	/* one with, one without: unknown */
	reset();
	t = ans(RES_T_MX, "d.example", RES_SECURE, 600);
	mx(t, 10, "mx1.d.example");
	mx(t, 20, "mx2.d.example");
	host("mx1.d.example", "192.0.2.1", RES_SECURE);
	host("mx2.d.example", "192.0.2.2", RES_SECURE);
	tlsa(ans(RES_T_TLSA, "mx1.d.example", RES_SECURE, 300), true, 1);
	run(&f, "d.example", "203.0.113.9");
	pdp_decide(&f, true, &p);
	EQ("mixed", p.dane, PD_DANE_UNKNOWN);
	STREQ("mixed", p.why, "address 203.0.113.9 in no MX of d.example; 1 of 2 "
	    "MX hosts have DANE");
	EQ("mixed", p.nhosts, 0);
	pdp_free(&f);

	/* usable and insecure host: unknown too */
	reset();
	t = ans(RES_T_MX, "d.example", RES_SECURE, 600);
	mx(t, 10, "mx1.d.example");
	mx(t, 20, "mx2.d.example");
	host("mx1.d.example", "192.0.2.1", RES_SECURE);
	host("mx2.d.example", "192.0.2.2", RES_INSECURE);
	tlsa(ans(RES_T_TLSA, "mx1.d.example", RES_SECURE, 300), true, 1);
	run(&f, "d.example", "203.0.113.9");
	assert_false(was_asked("TLSA mx2.d.example"));
	pdp_decide(&f, true, &p);
	EQ("mixed insecure", p.dane, PD_DANE_UNKNOWN);
	pdp_free(&f);

	/* none has DANE: none */
	reset();
	t = ans(RES_T_MX, "d.example", RES_SECURE, 600);
	mx(t, 10, "mx1.d.example");
	mx(t, 20, "mx2.d.example");
	host("mx1.d.example", "192.0.2.1", RES_SECURE);
	host("mx2.d.example", "192.0.2.2", RES_INSECURE);
	run(&f, "d.example", "203.0.113.9");
	pdp_decide(&f, true, &p);
	EQ("none", p.dane, PD_DANE_NONE);
	STREQ("none", p.mx, "");
	pdp_free(&f);

	/* a host's address lookup failed: tempfail, no TLSA asked */
	reset();
	t = ans(RES_T_MX, "d.example", RES_SECURE, 600);
	mx(t, 10, "mx1.d.example");
	mx(t, 20, "mx2.d.example");
	host("mx1.d.example", "192.0.2.1", RES_SECURE);
	ans(RES_T_A, "mx2.d.example", RES_BOGUS, 0)->why = "bad sig";
	tlsa(ans(RES_T_TLSA, "mx1.d.example", RES_SECURE, 300), true, 1);
	run(&f, "d.example", "203.0.113.9");
	assert_false(was_asked("TLSA mx1.d.example"));
	pdp_decide(&f, true, &p);
	EQ("address bogus", p.dane, PD_DANE_TEMPFAIL);
	EQ("address bogus", p.dane_result, PD_R_DNSSEC_INVALID);
	STREQ("address bogus", p.why, "A mx2.d.example: bogus: bad sig");
	pdp_free(&f);

	/* ... but X at the other, good host: that host decides */
	reset();
	t = ans(RES_T_MX, "d.example", RES_SECURE, 600);
	mx(t, 10, "mx1.d.example");
	mx(t, 20, "mx2.d.example");
	host("mx1.d.example", "192.0.2.1", RES_SECURE);
	ans(RES_T_A, "mx2.d.example", RES_ERROR, 0);
	tlsa(ans(RES_T_TLSA, "mx1.d.example", RES_SECURE, 300), true, 1);
	run(&f, "d.example", "192.0.2.1");
	pdp_decide(&f, true, &p);
	EQ("other host failed", p.dane, PD_DANE_MATCH);
	pdp_free(&f);

	/* any_mx TLSA bogus: tempfail */
	reset();
	mx(ans(RES_T_MX, "d.example", RES_SECURE, 600), 10, "mx1.d.example");
	host("mx1.d.example", "192.0.2.1", RES_SECURE);
	ans(RES_T_TLSA, "mx1.d.example", RES_BOGUS, 300);
	run(&f, "d.example", "203.0.113.9");
	pdp_decide(&f, true, &p);
	EQ("any bogus", p.dane, PD_DANE_TEMPFAIL);
	EQ("any bogus", p.dane_result, PD_R_DNSSEC_INVALID);
	pdp_free(&f);
}

/* No MX: the domain is its host. Null MX: nothing. */
static void
test_implicit_null(void **state)
{
	struct pdp_facts f;
	struct pd_pol p;

	reset();
	ans(RES_T_MX, "d.example", RES_SECURE, 600);   /* NODATA */
	host("d.example", "192.0.2.1", RES_SECURE);
	tlsa(ans(RES_T_TLSA, "d.example", RES_SECURE, 300), true, 1);
	run(&f, "D.Example.", "192.0.2.1");
	pdp_decide(&f, true, &p);
	EQ("implicit", p.dane, PD_DANE_MATCH);
	STREQ("implicit", p.mx, "d.example");
	pdp_free(&f);

	reset();
	mx(ans(RES_T_MX, "d.example", RES_SECURE, 600), 0, "");
	run(&f, "d.example", "192.0.2.1");
	EQ("null MX: no address asked", nasked, 1);
	pdp_decide(&f, true, &p);
	EQ("null", p.dane, PD_DANE_NONE);
	assert_true(f.nullmx);
	pdp_free(&f);
}

/* A secure CNAME moves the TLSA base; an insecure one does not. */
static void
test_cname(void **state)
{
	struct pdp_facts f;
	struct pd_pol p;
	struct fans *t;

	reset();
	mx(ans(RES_T_MX, "d.example", RES_SECURE, 600), 10, "alias.d.example");
	t = ans(RES_T_A, "alias.d.example", RES_SECURE, 300);
	a4(t, "192.0.2.1");
	t->canon = "Real.Host.Example.";
	ans(RES_T_AAAA, "alias.d.example", RES_SECURE, 300)->canon =
	    "real.host.example";
	tlsa(ans(RES_T_TLSA, "real.host.example", RES_SECURE, 300), true, 1);
	run(&f, "d.example", "192.0.2.1");
	assert_true(was_asked("TLSA real.host.example"));
	pdp_decide(&f, true, &p);
	EQ("cname", p.dane, PD_DANE_MATCH);
	STREQ("cname", p.hosts[0].host, "alias.d.example");
	STREQ("cname", p.hosts[0].base, "real.host.example");
	pdp_free(&f);

	/* the name itself as canonname: base is the host */
	reset();
	mx(ans(RES_T_MX, "d.example", RES_SECURE, 600), 10, "mx.d.example");
	t = ans(RES_T_A, "mx.d.example", RES_SECURE, 300);
	a4(t, "192.0.2.1");
	t->canon = "mx.d.example.";
	ans(RES_T_AAAA, "mx.d.example", RES_SECURE, 300);
	tlsa(ans(RES_T_TLSA, "mx.d.example", RES_SECURE, 300), true, 1);
	run(&f, "d.example", "192.0.2.1");
	pdp_decide(&f, true, &p);
	STREQ("no cname", p.hosts[0].base, "mx.d.example");
	pdp_free(&f);
}

/* MX order, duplicates, the bound of 8; IPv6; TTL clamps. */
static void
test_mx_bounds(void **state)
{
	struct pdp_facts f;
	struct pd_pol p;
	struct fans *t;
	struct pd_req_addr x;
	char names[12][32];
	bool done;
	struct pdp_query q[32];
	size_t n;

	reset();
	t = ans(RES_T_MX, "d.example", RES_SECURE, 1);
	for (int i = 11; i >= 0; i--) {
		snprintf(names[i], sizeof(names[i]), "mx%02d.d.example", i);
		mx(t, (uint16_t)(i / 2), names[i]);
	}
	/* 12 records, mx11 first; preferences 5,5,4,4,...,0,0 */
	pd_addr4(&x, "192.0.2.1");
	pdp_init(&f, "d.example", &x);
	{
		struct res_answer a;
		const uint8_t *rdp[12];
		for (size_t k = 0; k < t->nrr; k++)
			rdp[k] = t->rd[k];
		memset(&a, 0, sizeof(a));
		a.status = RES_SECURE;
		a.ttl = 1;
		a.nrr = t->nrr;
		a.rdata = rdp;
		a.rdlen = t->rdlen;
		n = pdp_next(&f, q, 32, &done);
		EQ("first MX", n, 1);
		pdp_store(q[0].into, &a);
	}
	n = pdp_next(&f, q, 32, &done);
	EQ("hosts", f.nhosts, 8);
	EQ("A and AAAA each", n, 16);
	STREQ("lowest preference first", f.hosts[0].name, "mx01.d.example");
	STREQ("stable within a preference", f.hosts[1].name, "mx00.d.example");
	STREQ("the first 8", f.hosts[7].name, "mx06.d.example");
	assert_false(done);
	/* nothing new until answered */
	EQ("asked once", pdp_next(&f, q, 32, &done), 0);
	pdp_free(&f);

	/* duplicates and more than 8 via the real path */
	reset();
	t = ans(RES_T_MX, "d.example", RES_SECURE, 100000);
	mx(t, 10, "a.d.example");
	mx(t, 10, "A.d.example");
	mx(t, 5, "b.d.example");
	{
		struct fans *h = ans(RES_T_AAAA, "b.d.example", RES_SECURE, 100000);
		a6(h, "2001:db8::1");
		ans(RES_T_A, "b.d.example", RES_SECURE, 100000);
		host("a.d.example", "192.0.2.9", RES_SECURE);
		tab[ntab - 2].ttl = tab[ntab - 1].ttl = 100000;
	}
	tlsa(ans(RES_T_TLSA, "b.d.example", RES_SECURE, 100000), true, 1);
	memset(&x, 0, sizeof(x));
	x.family = AF_INET6;
	inet_pton(AF_INET6, "2001:db8::1", x.addr);
	pdp_init(&f, "d.example", &x);
	done = false;
	for (int r = 0; r < 5 && !done; r++) {
		n = pdp_next(&f, q, 32, &done);
		for (size_t i = 0; i < n; i++) {
			struct res_answer a;
			const uint8_t *rdp[12];
			struct fans *hit = NULL;
			for (size_t k = 0; k < ntab; k++)
				if (tab[k].type == q[i].type &&
				    strcmp(tab[k].name, q[i].name) == 0)
					hit = &tab[k];
			assert_non_null(hit);
			for (size_t k = 0; k < hit->nrr; k++)
				rdp[k] = hit->rd[k];
			memset(&a, 0, sizeof(a));
			a.status = hit->status;
			a.ttl = hit->ttl;
			a.nrr = hit->nrr;
			a.rdata = rdp;
			a.rdlen = hit->rdlen;
			pdp_store(q[i].into, &a);
		}
	}
	assert_true(done);
	EQ("duplicates dropped (case)", f.nhosts, 2);
	pdp_decide(&f, true, &p);
	EQ("v6", p.dane, PD_DANE_MATCH);
	STREQ("v6", p.mx, "b.d.example");
	EQ("TTL clamped to PD_TTL_MAX", p.ttl, PD_TTL_MAX);
	pdp_free(&f);

	/* a tiny TTL is raised to PD_TTL_MIN */
	reset();
	mx(ans(RES_T_MX, "d.example", RES_SECURE, 1), 10, "mx.d.example");
	host("mx.d.example", "192.0.2.1", RES_SECURE);
	run(&f, "d.example", "192.0.2.1");
	pdp_decide(&f, true, &p);
	EQ("min", p.ttl, PD_TTL_MIN);
	pdp_free(&f);
}

/* The STS fields go out only when DANE is none. */
static void
test_sts_fields(void **state)
{
	struct pdp_facts f;
	struct pd_pol p;

	reset();
	mx(ans(RES_T_MX, "d.example", RES_INSECURE, 600), 10, "mx.d.example");
	host("mx.d.example", "192.0.2.1", RES_INSECURE);
	run(&f, "d.example", "192.0.2.1");
	f.sts = PD_STS_ENFORCE;
	snprintf(f.sts_id, sizeof(f.sts_id), "abc");
	f.sts_max_age = 86400;
	f.sts_nmx = 1;
	snprintf(f.sts_mx[0], sizeof(f.sts_mx[0]), "*.d.example");
	pdp_decide(&f, true, &p);
	EQ("sts", p.dane, PD_DANE_NONE);
	EQ("sts", p.sts, PD_STS_ENFORCE);
	STREQ("sts", p.sts_id, "abc");
	EQ("sts", p.sts_nmx, 1);
	STREQ("sts", p.sts_mx[0], "*.d.example");
	pdp_free(&f);
}

/* ---- learned addresses -------------------------------------------------------- */

static void
test_learn(void **state)
{
	struct pdp_learn *l = pdp_learn_new(3);
	struct pdp_facts f;
	struct pd_pol p, g;
	struct pd_req_addr x;
	struct fans *t;

	assert_non_null(l);
	pd_addr4(&x, "192.0.2.1");
	assert_false(pdp_learn_get(l, &x, 1000, &g));
	EQ("unknown", g.dane, PD_DANE_NONE);
	EQ("unknown", g.sts, PD_STS_NONE);
	STREQ("unknown", g.sni, "");
	EQ("unknown", g.kind, PD_ADDR);

	/* a match through a CNAME: sni = the base domain */
	reset();
	mx(ans(RES_T_MX, "d.example", RES_SECURE, 600), 10, "alias.d.example");
	t = ans(RES_T_A, "alias.d.example", RES_SECURE, 300);
	a4(t, "192.0.2.1");
	t->canon = "real.d.example";
	ans(RES_T_AAAA, "alias.d.example", RES_SECURE, 300);
	tlsa(ans(RES_T_TLSA, "real.d.example", RES_SECURE, 300), true, 7);
	run(&f, "d.example", "192.0.2.1");
	pdp_decide(&f, true, &p);
	EQ("learned", pdp_learn_put(l, &f, &p, 1000), 1);
	pdp_free(&f);
	assert_true(pdp_learn_get(l, &x, 1100, &g));
	EQ("learned", g.dane, PD_DANE_MATCH);
	STREQ("learned", g.mx, "alias.d.example");
	STREQ("learned", g.sni, "real.d.example");
	EQ("learned", g.nhosts, 1);
	EQ("learned", g.hosts[0].rdata[0][3], 7);
	EQ("learned: TTL left", g.ttl, 200);
	assert_false(pdp_learn_get(l, &x, 1300, &g));   /* expired */
	EQ("expired dropped", pdp_learn_count(l), 0);

	/* any_mx and none teach nothing */
	reset();
	mx(ans(RES_T_MX, "d.example", RES_SECURE, 600), 10, "mx.d.example");
	host("mx.d.example", "192.0.2.1", RES_SECURE);
	tlsa(ans(RES_T_TLSA, "mx.d.example", RES_SECURE, 300), true, 7);
	run(&f, "d.example", "203.0.113.1");
	pdp_decide(&f, true, &p);
	EQ("any_mx", p.flags & PD_F_ANY_MX, PD_F_ANY_MX);
	EQ("any_mx not learned", pdp_learn_put(l, &f, &p, 1000), 0);
	pdp_free(&f);

	/* STS enforce whose pattern covers the dialled MX */
	reset();
	mx(ans(RES_T_MX, "s.example", RES_INSECURE, 600), 10, "mx.s.example");
	host("mx.s.example", "192.0.2.5", RES_INSECURE);
	run(&f, "s.example", "192.0.2.5");
	f.sts = PD_STS_ENFORCE;
	f.sts_nmx = 1;
	f.sts_max_age = 600;
	snprintf(f.sts_mx[0], sizeof(f.sts_mx[0]), "*.s.example");
	pdp_decide(&f, true, &p);
	EQ("sts learned", pdp_learn_put(l, &f, &p, 1000), 1);
	snprintf(f.sts_mx[0], sizeof(f.sts_mx[0]), "other.example");
	pdp_decide(&f, true, &p);
	pd_addr4(&x, "192.0.2.5");
	assert_true(pdp_learn_get(l, &x, 1001, &g));
	EQ("sts", g.sts, PD_STS_ENFORCE);
	EQ("sts", g.dane, PD_DANE_NONE);
	STREQ("sts: sni = the MX name", g.sni, "mx.s.example");
	STREQ("sts", g.sts_mx[0], "*.s.example");
	pdp_learn_free(l);
	l = pdp_learn_new(3);
	EQ("sts pattern not matching", pdp_learn_put(l, &f, &p, 1000), 0);
	pdp_free(&f);

	/* bounded: the entry expiring first goes */
	{
		struct pd_pol a;
		memset(&a, 0, sizeof(a));
		a.kind = PD_ADDR;
		a.dane = PD_DANE_MATCH;
		a.why = a.sts_id = "";
		a.mx = a.sni = "mx.example";
		for (int i = 0; i < 4; i++) {
			char ip[32];
			snprintf(ip, sizeof(ip), "192.0.2.%d", 10 + i);
			pd_addr4(&x, ip);
			EQ("set", pdp_learn_set(l, &x, &a,
			    (uint64_t)(i == 1 ? 5000 : 6000 + i)), 1);
		}
		EQ("bounded", pdp_learn_count(l), 3);
		pd_addr4(&x, "192.0.2.11");
		assert_false(pdp_learn_get(l, &x, 100, &g));
		pd_addr4(&x, "192.0.2.10");
		assert_true(pdp_learn_get(l, &x, 100, &g));
		STREQ("kept", g.sni, "mx.example");
	}
	pdp_learn_free(l);
}

/* The persistence hooks: raw entries out, loaded back, drops reported. */
static int ndrops;
static void
on_drop(void *arg, const struct pd_req_addr *x)
{
	ndrops++;
}

static void
test_learn_raw(void **state)
{
	struct pdp_learn *l = pdp_learn_new(2), *l2 = pdp_learn_new(2);
	struct pd_req_addr x, y;
	struct pd_pol a, g;
	const uint8_t *raw;
	size_t len;
	uint64_t exp;

	memset(&a, 0, sizeof(a));
	a.kind = PD_ADDR;
	a.dane = PD_DANE_MATCH;
	a.why = a.sts_id = "";
	a.mx = a.sni = "mx.example";
	pd_addr4(&x, "192.0.2.1");
	pdp_learn_on_drop(l, on_drop, NULL);
	EQ("set", pdp_learn_set(l, &x, &a, 500), 1);
	raw = pdp_learn_raw(l, &x, &len, &exp);
	assert_non_null(raw);
	EQ("exp", exp, 500);
	EQ("load", pdp_learn_load(l2, &x, raw, len, exp, 100), 1);
	assert_true(pdp_learn_get(l2, &x, 100, &g));
	STREQ("loaded", g.sni, "mx.example");
	EQ("loaded ttl", g.ttl, 400);
	EQ("expired not loaded", pdp_learn_load(l2, &x, raw, len, exp, 500), 0);
	EQ("malformed not loaded", pdp_learn_load(l2, &x, raw, len - 1, exp, 1), 0);
	memset(&y, 0, sizeof(y));
	EQ("no family", pdp_learn_load(l2, &y, raw, len, exp, 1), 0);
	/* drops: eviction and expiry are reported, replacement is not */
	ndrops = 0;
	EQ("replace", pdp_learn_set(l, &x, &a, 600), 1);
	EQ("replace: no drop", ndrops, 0);
	pd_addr4(&y, "192.0.2.2");
	pdp_learn_set(l, &y, &a, 700);
	pd_addr4(&y, "192.0.2.3");
	pdp_learn_set(l, &y, &a, 800);
	EQ("evicted", ndrops, 1);
	assert_null(pdp_learn_raw(l, &x, &len, &exp));
	assert_false(pdp_learn_get(l, &y, 900, &g));
	EQ("expired", ndrops, 2);
	pdp_learn_free(l);
	pdp_learn_free(l2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mx_fail),
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_host_tlsa),
		cmocka_unit_test(test_insecure),
		cmocka_unit_test(test_any_mx),
		cmocka_unit_test(test_implicit_null),
		cmocka_unit_test(test_cname),
		cmocka_unit_test(test_mx_bounds),
		cmocka_unit_test(test_sts_fields),
		cmocka_unit_test(test_learn),
		cmocka_unit_test(test_learn_raw),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
