/*
 * httpsq: a test tool on proxy/https.c. One request (or several at once
 * with -n), one line per answer on stdout:
 *
 *   result=ok status=200 type="text/plain" len=123 sha256=ab12... [err="..."]
 *
 * -o FILE writes the body. -x MS cancels the request MS milliseconds after
 * the start (0: at once): the callback must then never run. With no -a
 * the host is resolved through proxy/resolver.c (-A trust anchor, -f
 * forwarder, as dnsq). The callback must run exactly once per request and
 * never inside https_start. Exit status: 0 when that holds, 1 otherwise,
 * 2 for bad usage.
 *
 *   httpsq [-a addr] [-p port] [-c ca_file] [-m max_body] [-T timeout_ms]
 *          [-X method] [-b body_file] [-t content_type] [-o out_file]
 *          [-A trust_anchor] [-f forwarder] [-n count] [-x cancel_ms]
 *          HOST PATH
 */
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "starttlsd/https.h"
#include "starttlsd/resolver.h"

#define MAXREQ 16

static int answered, in_start, bad;
static const char *out_file;

static void
on_resp(void *arg, const struct https_resp *r)
{
	uint8_t md[SHA256_DIGEST_LENGTH];

	(void)arg;
	if (in_start) {
		fprintf(stderr, "httpsq: callback inside https_start\n");
		bad++;
	}
	SHA256(r->body, r->len, md);
	printf("result=%s status=%d type=\"%s\" len=%zu sha256=",
	    https_result_str(r->result), r->status, r->content_type, r->len);
	for (size_t i = 0; i < sizeof(md); i++)
		printf("%02x", md[i]);
	if (r->result != HTTPS_OK)
		printf(" err=\"%s\"", r->err);
	printf(" text_plain=%d\n", https_type_is(r->content_type, "text/plain"));
	fflush(stdout);
	if (out_file != NULL) {
		FILE *f = fopen(out_file, "wb");

		if (f == NULL || fwrite(r->body, 1, r->len, f) != r->len)
			bad++;
		if (f != NULL)
			fclose(f);
	}
	answered++;
}

static void
on_cancelled(void *arg, const struct https_resp *r)
{
	(void)arg;
	(void)r;
	fprintf(stderr, "httpsq: callback of a cancelled request ran\n");
	bad++;
}

static struct https_client *clients[MAXREQ];
static int nclients;

static void
on_cancel_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)revents;
	for (int i = 0; i < nclients; i++)
		https_cancel(clients[i]);
	printf("cancelled\n");
	fflush(stdout);
	ev_timer_stop(loop, w);
	answered = nclients;
}

static void
on_check(struct ev_loop *loop, ev_timer *w, int revents)
{
	int *expected = w->data;

	(void)revents;
	if (answered >= *expected)
		ev_break(loop, EVBREAK_ALL);
}

int
main(int argc, char **argv)
{
	struct https_req req = { .method = "GET" };
	struct resolver_opts o = { .trust_anchor_file = NULL };
	struct ev_loop *loop = EV_DEFAULT;
	struct resolver *res = NULL;
	uint8_t *body = NULL;
	int c, n = 1, cancel_ms = -1, expected;
	ev_timer check, cancel;

	/* as in policyd: a peer that goes away must not kill us on write */
	signal(SIGPIPE, SIG_IGN);
	while ((c = getopt(argc, argv, "a:p:c:m:T:X:b:t:o:A:f:n:x:")) != -1) {
		switch (c) {
		case 'a': req.addr = optarg; break;
		case 'p': req.port = (uint16_t)atoi(optarg); break;
		case 'c': req.ca_file = optarg; break;
		case 'm': req.max_body = (size_t)atol(optarg); break;
		case 'T': req.timeout_ms = (unsigned)atoi(optarg); break;
		case 'X': req.method = optarg; break;
		case 'b': {
			FILE *f = fopen(optarg, "rb");
			size_t cap = 1 << 20;

			if (f == NULL || (body = malloc(cap)) == NULL) {
				perror(optarg);
				return 2;
			}
			req.body_len = fread(body, 1, cap, f);
			req.body = body;
			fclose(f);
			break;
		}
		case 't': req.content_type = optarg; break;
		case 'o': out_file = optarg; break;
		case 'A': o.trust_anchor_file = optarg; break;
		case 'f':
			if (o.nforwarders < RESOLVER_MAX_FWD)
				o.forwarders[o.nforwarders++] = optarg;
			break;
		case 'n': n = atoi(optarg); break;
		case 'x': cancel_ms = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: httpsq [-a addr] [-p port] [-c ca] "
			    "[-m max] [-T ms] [-X method] [-b file] [-t type] "
			    "[-o file] [-A ta] [-f fwd] [-n count] [-x ms] HOST PATH\n");
			return 2;
		}
	}
	if (argc - optind != 2 || n < 1 || n > MAXREQ) {
		fprintf(stderr, "httpsq: HOST PATH expected\n");
		return 2;
	}
	req.host = argv[optind];
	req.path = argv[optind + 1];
	if (req.addr == NULL) {
		char err[256];

		res = resolver_new(loop, &o, err, sizeof(err));
		if (res == NULL) {
			fprintf(stderr, "httpsq: %s\n", err);
			return 2;
		}
	}
	for (int i = 0; i < n; i++) {
		in_start = 1;
		clients[i] = https_start(loop, res, &req,
		    cancel_ms >= 0 ? on_cancelled : on_resp, NULL);
		in_start = 0;
		if (clients[i] == NULL) {
			fprintf(stderr, "httpsq: https_start refused\n");
			return 1;
		}
		nclients++;
	}
	expected = n;
	if (cancel_ms == 0) {
		for (int i = 0; i < nclients; i++)
			https_cancel(clients[i]);
		printf("cancelled\n");
		answered = n;
		/* one more turn of the loop: nothing may call back */
		ev_run(loop, EVRUN_NOWAIT);
	} else {
		if (cancel_ms > 0) {
			ev_timer_init(&cancel, on_cancel_timer, cancel_ms / 1000.0, 0.);
			ev_timer_start(loop, &cancel);
		}
		ev_timer_init(&check, on_check, 0.01, 0.01);
		check.data = &expected;
		ev_timer_start(loop, &check);
		ev_run(loop, 0);
		ev_timer_stop(loop, &check);
		/* after the last answer: a little more loop, nothing may come */
		ev_run(loop, EVRUN_NOWAIT);
	}
	resolver_free(res);
	free(body);
	ev_loop_destroy(loop);
	if (bad != 0 || answered != expected) {
		fprintf(stderr, "httpsq: %d answers for %d requests, %d bad\n",
		    answered, expected, bad);
		return 1;
	}
	return 0;
}
