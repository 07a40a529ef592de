/*
 * pdq: a test tool for the policy process, doing what the master and a
 * worker will do: fork policyd from its entry point (policyd_main), hand it a
 * client socket over the control socket, ask over the client socket and
 * print one line per answer:
 *
 *   ROUND NAME KIND status=secure nrr=2 ttl=300 cached=0 [parse=ok usable=1]
 *
 * Every question is asked in round 1 (all in flight at once, each twice, so
 * the second must join the first's flight) and again in round 2 (from the
 * cache). With -m, a second client then sends a malformed request and must
 * be dropped while the first still gets answers. Closing the control socket
 * must make policyd exit 0. Exit status 0 when all of that held.
 *
 *   pdq [-a trust_anchor_file] [-f forwarder]... [-T ms] [-m] KIND NAME...
 *
 * With -P, domain policies instead (PD_POLICY, PD_ADDR, PD_REPORT):
 *
 *   pdq -P [-a ...] [-f ...] [-T ms] [-n] POLICY DOMAIN ADDR ... ADDR ADDR ...
 *
 * Round 0 asks every ADDR (nothing learned yet), round 1 every POLICY (each
 * twice at once: one computation), round 2 every POLICY again (cached),
 * then a PD_REPORT is sent (never answered: a failure for the first POLICY
 * question, a success for the last), then round 3 asks every ADDR again
 * (learned from round 1: the SNI of a DANE match, its RRset once a
 * success was reported). One line per answer:
 *
 *   ROUND POLICY DOMAIN ADDR dane=match result=success ttl=300 cached=0
 *     any_mx=0 mx=.. sni=.. sts=none nhosts=1 host=MX/BASE/NRR/parse why=".."
 *
 * -n: policyd with dane off (every answer dane=none, no DNS).
 * -S CA_FILE [-p PORT] [-w MS]: MTA-STS on (waiting at most MS for a fetch), policies fetched over HTTPS (port PORT)
 * with CA_FILE as the WebPKI roots; the line then shows sts=enforce ... and
 * the patterns as mx_pattern=...
 * -R DIR: policyd keeps TLS-RPT results in DIR (tlsrpt.h); after it exits,
 * today's aggregates are printed: "tlsrpt DOMAIN TYPE success=N ...".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "starttlsd/dane.h"
#include "starttlsd/log.h"
#include "starttlsd/policyd.h"
#include "starttlsd/tlsrpt.h"

#define MAXQ 32

static struct pd_req reqs[MAXQ];
static size_t nreq;

static int
ask(int fd, const struct pd_req *rq, uint32_t seq)
{
	uint8_t pkt[PD_MSG_MAX];
	struct pd_req r = *rq;
	size_t n;

	r.seq = seq;
	n = pd_req_encode(&r, pkt, sizeof(pkt));
	return n > 0 && send(fd, pkt, n, MSG_NOSIGNAL) == (ssize_t)n ? 0 : -1;
}

/* Read one answer within ms; 1 got one, 0 EOF, -1 timeout or error. */
static int
answer(int fd, struct pd_ans *a, uint8_t *buf, int ms)
{
	struct pollfd p = { fd, POLLIN, 0 };
	ssize_t n;

	if (poll(&p, 1, ms) <= 0)
		return -1;
	n = recv(fd, buf, PD_MSG_MAX, 0);
	if (n == 0)
		return 0;
	if (n < 0 || pd_ans_decode(buf, (size_t)n, a) != 0)
		return -1;
	return 1;
}

static void
print(int round, const struct pd_ans *a)
{
	const struct pd_req *rq = &reqs[(a->seq % 1000) % nreq];

	printf("%d %s %s status=%s nrr=%zu ttl=%u cached=%d", round, rq->name,
	    pd_kind_str(a->kind), res_status_str(a->status), a->nrr, a->ttl,
	    (a->flags & PD_F_CACHED) != 0);
	if (a->kind == PD_TLSA && a->status == RES_SECURE) {
		struct dane_rrset rs;
		enum dane_parse_result pr = dane_rrset_parse(a->rdata, a->rdlen,
		    a->nrr, &rs);
		printf(" parse=%s usable=%zu", dane_parse_result_str(pr), rs.n);
		dane_rrset_free(&rs);
	}
	printf("\n");
	fflush(stdout);
}

/* Ask everything (twice in round 1), read every answer. */
static int
round_trip(int fd, int round, int ms)
{
	uint8_t buf[PD_MSG_MAX];
	int copies = round == 1 ? 2 : 1, want = (int)nreq * copies, got = 0;

	for (int k = 0; k < copies; k++)
		for (size_t i = 0; i < nreq; i++)
			if (ask(fd, &reqs[i], (uint32_t)(round * 1000 + i)) < 0)
				return -1;
	while (got < want) {
		struct pd_ans a;
		int r = answer(fd, &a, buf, ms);
		if (r <= 0) {
			fprintf(stderr, "pdq: round %d: %d of %d answers\n", round,
			    got, want);
			return -1;
		}
		if (a.seq / 1000 != (uint32_t)round || a.seq % 1000 >= nreq) {
			fprintf(stderr, "pdq: answer with seq %u in round %d\n",
			    a.seq, round);
			return -1;
		}
		print(round, &a);
		got++;
	}
	return 0;
}

/* ---- -P: domain policies ------------------------------------------------------ */

static const char *const dane_names[] = { "none", "match", "encrypt",
    "tempfail", "unknown" };
static const char *const sts_names[] = { "none", "testing", "enforce" };

static struct pd_req pols[MAXQ], addrs[MAXQ];
static size_t npol, naddr;

static int
parse_addr(const char *s, struct pd_req_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, s, a->addr) == 1)
		a->family = AF_INET;
	else if (inet_pton(AF_INET6, s, a->addr) == 1)
		a->family = AF_INET6;
	else
		return -1;
	return 0;
}

static void
pol_print(int round, const struct pd_req *rq, const struct pd_pol *p)
{
	char a[INET6_ADDRSTRLEN] = "none";

	if (rq->addr.family != 0)
		inet_ntop(rq->addr.family, rq->addr.addr, a, sizeof(a));
	printf("%d %s %s%s%s dane=%s result=%s ttl=%u cached=%d any_mx=%d mx=%s "
	    "sni=%s sts=%s nhosts=%zu", round, pd_kind_str(p->kind), rq->name,
	    rq->name[0] ? " " : "", a, dane_names[p->dane],
	    pd_result_str(p->dane_result), p->ttl,
	    (p->flags & PD_F_CACHED) != 0, (p->flags & PD_F_ANY_MX) != 0,
	    p->mx[0] ? p->mx : "-", p->sni[0] ? p->sni : "-", sts_names[p->sts],
	    p->nhosts);
	if (p->sts != PD_STS_NONE)
		printf(" sts_id=%s max_age=%u", p->sts_id, p->sts_max_age);
	for (size_t i = 0; i < p->sts_nmx; i++)
		printf(" mx_pattern=%s", p->sts_mx[i]);
	for (size_t i = 0; i < p->nhosts; i++) {
		struct dane_rrset rs;
		enum dane_parse_result pr = dane_rrset_parse(p->hosts[i].rdata,
		    p->hosts[i].rdlen, p->hosts[i].nrr, &rs);
		printf(" host=%s/%s/%zu/%s", p->hosts[i].host, p->hosts[i].base,
		    p->hosts[i].nrr, dane_parse_result_str(pr));
		dane_rrset_free(&rs);
	}
	printf(" why=\"%s\"\n", p->why);
	fflush(stdout);
}

/* Ask every request of set (copies times, all at once), read every answer. */
static int
pol_round(int fd, int round, struct pd_req *set, size_t n, int copies, int ms)
{
	uint8_t buf[PD_MSG_MAX];
	int want = (int)n * copies, got = 0;

	for (int k = 0; k < copies; k++)
		for (size_t i = 0; i < n; i++)
			if (ask(fd, &set[i], (uint32_t)(round * 1000 + i)) < 0)
				return -1;
	while (got < want) {
		struct pollfd pf = { fd, POLLIN, 0 };
		struct pd_pol p;
		ssize_t r;

		if (poll(&pf, 1, ms) <= 0 ||
		    (r = recv(fd, buf, sizeof(buf), 0)) <= 0 ||
		    pd_packet_kind(buf, (size_t)r) != (int)set[0].kind ||
		    pd_pol_decode(buf, (size_t)r, &p) != 0) {
			fprintf(stderr, "pdq: round %d: %d of %d answers\n", round,
			    got, want);
			return -1;
		}
		if (p.seq / 1000 != (uint32_t)round || p.seq % 1000 >= n) {
			fprintf(stderr, "pdq: answer with seq %u in round %d\n",
			    p.seq, round);
			return -1;
		}
		pol_print(round, &set[p.seq % 1000], &p);
		got++;
	}
	return 0;
}

static int tlsrpt_show(const char *dir);

static int
policy_main(struct policyd_opts *o, int argc, char **argv, int ms)
{
	int ctl[2], cli[2], bad = 0, st;
	pid_t pid;

	for (int i = 0; i < argc && npol < MAXQ && naddr < MAXQ; i++) {
		if (strcasecmp(argv[i], "POLICY") == 0 && i + 2 < argc) {
			struct pd_req *rq = &pols[npol++];
			rq->kind = PD_POLICY;
			snprintf(rq->name, sizeof(rq->name), "%s", argv[i + 1]);
			if (parse_addr(argv[i + 2], &rq->addr) < 0)
				return 2;
			i += 2;
		} else if (strcasecmp(argv[i], "ADDR") == 0 && i + 1 < argc) {
			struct pd_req *rq = &addrs[naddr++];
			rq->kind = PD_ADDR;
			if (parse_addr(argv[i + 1], &rq->addr) < 0)
				return 2;
			i += 1;
		} else {
			return 2;
		}
	}
	log_open(true, false);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, cli) < 0)
		return 2;
	fflush(stdout);
	if ((pid = fork()) < 0)
		return 2;
	if (pid == 0) {
		close(ctl[0]);
		close(cli[0]);
		close(cli[1]);
		policyd_main(ctl[1], o);
	}
	close(ctl[1]);
	if (policyd_give_client(ctl[0], cli[1]) < 0)
		return 2;
	close(cli[1]);
	if (naddr > 0 && pol_round(cli[0], 0, addrs, naddr, 1, ms) < 0)
		bad = 1;
	if (!bad && npol > 0 && (pol_round(cli[0], 1, pols, npol, 2, ms) < 0 ||
	    pol_round(cli[0], 2, pols, npol, 1, ms) < 0))
		bad = 1;
	if (!bad) {
		/* A report gets no answer, and the client stays. */
		struct pd_report r;
		uint8_t pkt[PD_MSG_MAX];
		size_t n;

		memset(&r, 0, sizeof(r));
		r.policy_type = 1;
		r.result = PD_R_CERT_HOST_MISMATCH;
		/* about the first POLICY question's domain and address */
		snprintf(r.domain, sizeof(r.domain), "%s",
		    npol > 0 ? pols[0].name : "secure.example");
		if (npol > 0)
			r.addr = pols[0].addr;
		n = pd_report_encode(&r, pkt, sizeof(pkt));
		if (n == 0 || send(cli[0], pkt, n, MSG_NOSIGNAL) != (ssize_t)n)
			bad = 1;
		else
			printf("report: sent\n");
		/*
		 * A success for the last POLICY question: a worker's chain
		 * matched, so policyd learns that address's DANE RRset (the
		 * failure above teaches only the SNI).
		 */
		if (!bad && npol > 1) {
			r.result = PD_R_SUCCESS;
			snprintf(r.domain, sizeof(r.domain), "%s",
			    pols[npol - 1].name);
			r.addr = pols[npol - 1].addr;
			n = pd_report_encode(&r, pkt, sizeof(pkt));
			if (n == 0 || send(cli[0], pkt, n, MSG_NOSIGNAL) !=
			    (ssize_t)n)
				bad = 1;
			else
				printf("report: success sent\n");
		}
	}
	if (!bad && naddr > 0 && pol_round(cli[0], 3, addrs, naddr, 1, ms) < 0)
		bad = 1;
	close(ctl[0]);
	close(cli[0]);
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "pdq: policyd did not exit 0 (status 0x%x)\n", st);
		bad = 1;
	} else {
		printf("policyd: exit 0\n");
	}
	if (o->tlsrpt && tlsrpt_show(o->state_dir) < 0)
		bad = 1;
	return bad;
}

static int
show_agg(const struct tlsrpt_agg *a, void *arg)
{
	printf("tlsrpt %s %s success=%llu failure=%llu strings=%zu", a->domain,
	    tlsrpt_policy_type_str(a->type), (unsigned long long)a->success,
	    (unsigned long long)a->failure, a->nstrings);
	for (size_t i = 0; i < a->nstrings; i++)
		printf(" string=\"%s\"", a->strings[i]);
	for (size_t i = 0; i < a->ndetails; i++)
		printf(" detail=%s/%s", pd_result_str(a->details[i].result),
		    a->details[i].mx[0] ? a->details[i].mx : "-");
	printf("\n");
	return 0;
}

/* What policyd's reports left in state_dir/tlsrpt.mdb today. */
static int
tlsrpt_show(const char *dir)
{
	struct tlsrpt_opts to = { .state_dir = dir };
	struct tlsrpt *t;
	bool missing = false;
	char err[256];
	int r;

	t = tlsrpt_open_ro(&to, &missing, err, sizeof(err));
	if (t == NULL) {
		fprintf(stderr, "pdq: tlsrpt: %s\n", missing ? "no store" : err);
		return -1;
	}
	r = tlsrpt_foreach(t, tlsrpt_day((int64_t)time(NULL)), NULL, show_agg,
	    NULL, err, sizeof(err));
	tlsrpt_close(t);
	return r;
}

int
main(int argc, char **argv)
{
	struct policyd_opts o;
	int ctl[2], cli[2], c, ms = 20000, bad = 0, st;
	bool malformed = false, policy = false;
	pid_t pid;

	memset(&o, 0, sizeof(o));
	o.dane = true;
	while ((c = getopt(argc, argv, "a:f:T:mPnR:S:p:w:")) != -1) {
		switch (c) {
		case 'a': o.resolver.trust_anchor_file = optarg; break;
		case 'f':
			if (o.resolver.nforwarders < RESOLVER_MAX_FWD)
				o.resolver.forwarders[o.resolver.nforwarders++] = optarg;
			break;
		case 'T': o.resolver.timeout_ms = (unsigned)atoi(optarg); break;
		case 'm': malformed = true; break;
		case 'P': policy = true; break;
		case 'n': o.dane = false; break;
		case 'R': o.tlsrpt = true; o.state_dir = optarg; break;
		case 'S': o.mta_sts = true; o.sts_ca_file = optarg; break;
		case 'p': o.sts_https_port = (uint16_t)atoi(optarg); break;
		case 'w': o.sts_wait_ms = (unsigned)atoi(optarg); break;
		default: return 2;
		}
	}
	if (policy)
		return policy_main(&o, argc - optind, argv + optind, ms);
	for (int i = optind; i + 1 < argc && nreq < MAXQ; i += 2) {
		struct pd_req *rq = &reqs[nreq++];
		static const char *const kinds[] = { "", "TLSA", "MX", "A", "AAAA" };
		for (int k = 1; k <= 4; k++)
			if (strcasecmp(argv[i], kinds[k]) == 0)
				rq->kind = (enum pd_kind)k;
		if (rq->kind == 0)
			return 2;
		rq->port = 25;
		snprintf(rq->name, sizeof(rq->name), "%s", argv[i + 1]);
	}
	if (nreq == 0)
		return 2;
	log_open(true, false);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, cli) < 0)
		return 2;
	fflush(stdout);
	if ((pid = fork()) < 0)
		return 2;
	if (pid == 0) {
		close(ctl[0]);
		close(cli[0]);
		close(cli[1]);
		policyd_main(ctl[1], &o);
	}
	close(ctl[1]);
	if (policyd_give_client(ctl[0], cli[1]) < 0)
		return 2;
	close(cli[1]);

	if (round_trip(cli[0], 1, ms) < 0 || round_trip(cli[0], 2, ms) < 0)
		bad = 1;
	if (malformed && !bad) {
		int m[2];
		uint8_t buf[PD_MSG_MAX];
		struct pd_ans a;

		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, m) < 0 ||
		    policyd_give_client(ctl[0], m[1]) < 0)
			return 2;
		close(m[1]);
		send(m[0], "garbage", 7, MSG_NOSIGNAL);
		if (answer(m[0], &a, buf, ms) != 0) {
			fprintf(stderr, "pdq: malformed request: client not dropped\n");
			bad = 1;
		} else {
			printf("malformed: dropped\n");
		}
		close(m[0]);
		if (round_trip(cli[0], 3, ms) < 0)
			bad = 1;
	}
	close(ctl[0]);   /* the master goes: policyd must exit */
	close(cli[0]);
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "pdq: policyd did not exit 0 (status 0x%x)\n", st);
		bad = 1;
	} else {
		printf("policyd: exit 0\n");
	}
	return bad;
}
