/*
 * dnsq: a test tool on proxy/resolver.c, the way the policy process will use
 * it: one libev loop, every query in flight at once, one line per answer:
 *
 *   QNAME TYPE status=secure rcode=0 nrr=1 [why="..."] rr="3 1 1 ab12..." ...
 *
 * TLSA answers also go through dane_rrset_parse (parse=ok|no-usable-records).
 * -x NAME queries NAME and cancels it at once: its callback must never run.
 * Exit status: 0 when every query got exactly one answer, 1 otherwise.
 *
 *   dnsq [-a trust_anchor_file] [-f forwarder]... [-r resolv.conf]
 *        [-T timeout_ms] [-x NAME] TYPE NAME [TYPE NAME]...
 */
#include <arpa/inet.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "starttlsd/dane.h"
#include "starttlsd/resolver.h"

static int answered, expected, cancelled_called;

static const struct {
	const char *name;
	int type;
} types[] = {
	{ "A", RES_T_A }, { "AAAA", RES_T_AAAA }, { "MX", RES_T_MX },
	{ "TXT", RES_T_TXT }, { "TLSA", RES_T_TLSA },
};

static const char *
type_name(int t)
{
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (types[i].type == t)
			return types[i].name;
	return "?";
}

static void
print_rr(int type, const uint8_t *d, size_t len)
{
	char buf[300];
	uint16_t pref;

	switch (type) {
	case RES_T_A:
		if (len == 4 && inet_ntop(AF_INET, d, buf, sizeof(buf)))
			printf(" rr=\"%s\"", buf);
		else
			printf(" rr=\"?bad A\"");
		return;
	case RES_T_AAAA:
		if (len == 16 && inet_ntop(AF_INET6, d, buf, sizeof(buf)))
			printf(" rr=\"%s\"", buf);
		else
			printf(" rr=\"?bad AAAA\"");
		return;
	case RES_T_MX:
		if (res_mx_decode(d, len, &pref, buf, sizeof(buf)) == 0)
			printf(" rr=\"%u %s\"", pref, buf);
		else
			printf(" rr=\"?bad MX\"");
		return;
	case RES_T_TLSA:
		if (len < 3) {
			printf(" rr=\"?bad TLSA\"");
			return;
		}
		printf(" rr=\"%u %u %u ", d[0], d[1], d[2]);
		for (size_t i = 3; i < len; i++)
			printf("%02x", d[i]);
		printf("\"");
		return;
	default:
		printf(" rr=\"");
		for (size_t i = 0; i < len; i++)
			putchar(d[i] >= 0x20 && d[i] < 0x7f && d[i] != '"' ? d[i] : '.');
		printf("\"");
	}
}

static void
on_answer(void *arg, const struct res_answer *a)
{
	int type = (int)(intptr_t)arg;

	printf("%s %s status=%s rcode=%d nrr=%zu", a->qname, type_name(type),
	    res_status_str(a->status), a->rcode, a->nrr);
	if (a->why != NULL)
		printf(" why=\"%s\"", a->why);
	for (size_t i = 0; i < a->nrr; i++)
		print_rr(type, a->rdata[i], a->rdlen[i]);
	if (type == RES_T_TLSA && a->status == RES_SECURE) {
		struct dane_rrset rs;
		enum dane_parse_result pr = dane_rrset_parse(a->rdata, a->rdlen,
		    a->nrr, &rs);
		printf(" parse=%s usable=%zu", dane_parse_result_str(pr), rs.n);
		dane_rrset_free(&rs);
	}
	printf("\n");
	fflush(stdout);
	answered++;
}

static void
on_cancelled(void *arg, const struct res_answer *a)
{
	cancelled_called++;
	fprintf(stderr, "dnsq: callback of a cancelled query ran (%s)\n",
	    a->qname);
}

static ev_timer idle;

/* Stop when every query has answered and nothing is pending. */
static void
on_check(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct resolver *r = w->data;

	if (answered >= expected && resolver_pending(r) == 0)
		ev_break(loop, EVBREAK_ALL);
}

int
main(int argc, char **argv)
{
	struct resolver_opts o = { .trust_anchor_file = NULL };
	struct ev_loop *loop = EV_DEFAULT;
	const char *cancel_name = NULL;
	struct resolver *r;
	char err[256];
	int c;

	while ((c = getopt(argc, argv, "a:f:r:T:x:")) != -1) {
		switch (c) {
		case 'a': o.trust_anchor_file = optarg; break;
		case 'f':
			if (o.nforwarders < RESOLVER_MAX_FWD)
				o.forwarders[o.nforwarders++] = optarg;
			break;
		case 'r': o.resolv_conf = optarg; break;
		case 'T': o.timeout_ms = (unsigned)atoi(optarg); break;
		case 'x': cancel_name = optarg; break;
		default:
			fprintf(stderr, "usage: dnsq [-a ta] [-f fwd]... [-r resolv.conf] "
			    "[-T ms] [-x name] TYPE NAME...\n");
			return 2;
		}
	}
	if ((argc - optind) % 2 != 0 || argc == optind) {
		fprintf(stderr, "dnsq: TYPE NAME pairs expected\n");
		return 2;
	}
	r = resolver_new(loop, &o, err, sizeof(err));
	if (r == NULL) {
		fprintf(stderr, "dnsq: %s\n", err);
		return 2;
	}
	if (cancel_name != NULL) {
		uint64_t id = resolver_query(r, cancel_name, RES_T_A, on_cancelled,
		    NULL);
		if (id == 0) {
			fprintf(stderr, "dnsq: query %s refused\n", cancel_name);
			return 1;
		}
		resolver_cancel(r, id);
	}
	for (int i = optind; i < argc; i += 2) {
		int type = 0;
		uint64_t id;

		for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++)
			if (strcasecmp(argv[i], types[k].name) == 0)
				type = types[k].type;
		if (type == 0) {
			fprintf(stderr, "dnsq: unknown type %s\n", argv[i]);
			return 2;
		}
		id = type == RES_T_TLSA && strncmp(argv[i + 1], "_", 1) != 0 ?
		    resolver_tlsa(r, argv[i + 1], 25, on_answer,
		    (void *)(intptr_t)type) :
		    resolver_query(r, argv[i + 1], type, on_answer,
		    (void *)(intptr_t)type);
		if (id == 0) {
			fprintf(stderr, "dnsq: query %s refused\n", argv[i + 1]);
			return 1;
		}
		expected++;
	}
	ev_timer_init(&idle, on_check, 0.02, 0.02);
	idle.data = r;
	ev_timer_start(loop, &idle);
	ev_run(loop, 0);
	ev_timer_stop(loop, &idle);
	resolver_free(r);
	ev_loop_destroy(loop);
	if (cancelled_called != 0 || answered != expected) {
		fprintf(stderr, "dnsq: %d answers for %d queries, %d cancelled "
		    "callbacks\n", answered, expected, cancelled_called);
		return 1;
	}
	return 0;
}
