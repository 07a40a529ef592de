/*
 * fuzz_pdwire: policyd's wire formats (proxy/pdwire.c) over arbitrary
 * packets, as a worker or policyd reads them from the other process, and
 * the worker's decision (proxy/domainpol.c) on whatever decodes.
 *
 * Invariants (policyd.h, domainpol.h): a packet that decodes re-encodes
 * and decodes to the same fields (pd_pol, pd_report, pd_req); every string
 * a decoded pd_pol points to lies inside the packet and is NUL-terminated
 * there or is a constant ""; counts stay within PD_MAX_HOSTS, PD_MAX_RR and
 * the MTA-STS pattern bound; dp_judge on any decoded answer gives a known
 * policy, a known result, never "met" with a failure result, and blocks
 * only a policy that is DANE or MTA-STS enforce.
 */
#include <string.h>

#include "starttlsd/domainpol.h"
#include "starttlsd/policyd.h"
#include "fuzz.h"

static void
same_str(const char *a, const char *b, const char *what)
{
	FUZZ_CHECK(a != NULL && b != NULL && strcmp(a, b) == 0,
	    "%s differs after a round trip", what);
}

static void
check_pol(const uint8_t *data, size_t size)
{
	struct pd_pol p, q;
	uint8_t buf[PD_MSG_MAX];
	size_t n;

	if (pd_pol_decode(data, size, &p) != 0)
		return;
	FUZZ_CHECK(p.nhosts <= PD_MAX_HOSTS, "nhosts %zu", p.nhosts);
	FUZZ_CHECK(p.sts_nmx <= 32, "sts_nmx %zu", p.sts_nmx);
	FUZZ_CHECK(p.kind == PD_POLICY || p.kind == PD_ADDR, "kind %d",
	    (int)p.kind);
	for (size_t i = 0; i < p.nhosts; i++)
		FUZZ_CHECK(p.hosts[i].nrr <= PD_MAX_RR, "nrr %zu",
		    p.hosts[i].nrr);
	n = pd_pol_encode(&p, buf, sizeof(buf));
	FUZZ_CHECK(n > 0, "a decoded answer does not encode");
	FUZZ_CHECK(pd_pol_decode(buf, n, &q) == 0, "re-encoded answer does not decode");
	FUZZ_CHECK(p.seq == q.seq && p.kind == q.kind && p.dane == q.dane &&
	    p.sts == q.sts && p.nhosts == q.nhosts && p.sts_nmx == q.sts_nmx &&
	    p.ttl == q.ttl && p.flags == q.flags, "fields differ after a round trip");
	same_str(p.why, q.why, "why");
	same_str(p.mx, q.mx, "mx");
	same_str(p.sni, q.sni, "sni");
	same_str(p.sts_id, q.sts_id, "sts_id");
	same_str(p.sts_why, q.sts_why, "sts_why");
	FUZZ_CHECK(p.sts_fail == q.sts_fail, "sts_fail differs");
	for (size_t i = 0; i < p.nhosts; i++) {
		same_str(p.hosts[i].host, q.hosts[i].host, "host");
		same_str(p.hosts[i].base, q.hosts[i].base, "base");
		FUZZ_CHECK(p.hosts[i].nrr == q.hosts[i].nrr, "nrr differs");
		for (size_t k = 0; k < p.hosts[i].nrr; k++)
			FUZZ_CHECK(p.hosts[i].rdlen[k] == q.hosts[i].rdlen[k] &&
			    memcmp(p.hosts[i].rdata[k], q.hosts[i].rdata[k],
			    p.hosts[i].rdlen[k]) == 0, "rdata differs");
	}
	for (size_t i = 0; i < p.sts_nmx; i++)
		same_str(p.sts_mx[i], q.sts_mx[i], "sts_mx");

	/* The worker's decision on it: without TLS, and with a junk chain. */
	{
		static const uint8_t junk[] = { 0x30, 0x03, 0x02, 0x01, 0x01 };
		const uint8_t *der[1] = { junk };
		size_t len[1] = { sizeof(junk) };
		struct dane_chain chain = { .der = der, .len = len, .n = 1 };
		const char *names[1] = { "mx.example.net" };
		struct dp_tls t = { .tls = false, .chain = &chain, .verified = true,
		    .verify = "ok", .names = names, .nnames = 1, .now = 1800000000 };
		struct dp_out o;

		for (int tls = 0; tls < 2; tls++) {
			t.tls = tls;
			dp_judge(&p, &t, &o);
			FUZZ_CHECK(o.policy <= DP_STS, "policy %d", (int)o.policy);
			FUZZ_CHECK((unsigned)o.result < PD_R_MAX_, "result %d",
			    (int)o.result);
			FUZZ_CHECK(!o.met || o.result == PD_R_SUCCESS,
			    "met with result %s", pd_result_str(o.result));
			FUZZ_CHECK(!o.block || o.policy == DP_DANE ||
			    (o.policy == DP_STS && !o.testing), "blocks under %s",
			    dp_policy_str(o.policy));
			FUZZ_CHECK(o.policy != DP_NONE || (o.met && !o.block),
			    "no policy, yet not met");
		}
	}
}

static void
check_report(const uint8_t *data, size_t size)
{
	struct pd_report r, s;
	uint8_t buf[1024];
	size_t n;

	if (pd_report_decode(data, size, &r) != 0)
		return;
	FUZZ_CHECK(memchr(r.domain, '\0', sizeof(r.domain)) != NULL &&
	    memchr(r.mx, '\0', sizeof(r.mx)) != NULL, "unterminated string");
	FUZZ_CHECK((unsigned)r.result < PD_R_MAX_, "result %d", (int)r.result);
	n = pd_report_encode(&r, buf, sizeof(buf));
	FUZZ_CHECK(n > 0 && pd_report_decode(buf, n, &s) == 0,
	    "a decoded report does not round-trip");
	FUZZ_CHECK(strcmp(r.domain, s.domain) == 0 && strcmp(r.mx, s.mx) == 0 &&
	    r.result == s.result && r.policy_type == s.policy_type &&
	    r.when == s.when && memcmp(&r.addr, &s.addr, sizeof(r.addr)) == 0,
	    "report fields differ after a round trip");
}

static void
check_req(const uint8_t *data, size_t size)
{
	struct pd_req r, s;
	uint8_t buf[PD_MSG_MAX];
	size_t n;

	if (pd_req_decode(data, size, &r) != 0)
		return;
	FUZZ_CHECK(memchr(r.name, '\0', sizeof(r.name)) != NULL, "unterminated name");
	for (const char *c = r.name; *c; c++)
		FUZZ_CHECK(!(*c >= 'A' && *c <= 'Z'), "upper case in %s", r.name);
	n = pd_req_encode(&r, buf, sizeof(buf));
	FUZZ_CHECK(n > 0 && pd_req_decode(buf, n, &s) == 0,
	    "a decoded request does not round-trip");
	FUZZ_CHECK(r.seq == s.seq && r.kind == s.kind &&
	    strcmp(r.name, s.name) == 0, "request fields differ");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_pol(data, size);
	check_report(data, size);
	check_req(data, size);
	(void)pd_packet_kind(data, size);
	return 0;
}
