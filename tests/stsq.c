/*
 * stsq: a test tool on proxy/stsfetch.c. Commands on stdin, one a line,
 * run in one libev loop with one struct stsf (so the cache, the backoff and
 * the flights live across commands); one line per answer on stdout:
 *
 *   #N DOMAIN have=1 mode=enforce id=ID max_age=S expires_in=S mx=a,b fail=ok why="..."
 *
 * Commands:
 *   get DOMAIN [WAIT_MS]     stsf_get (WAIT_MS default 10000)
 *   getn COUNT DOMAIN [WAIT_MS]  COUNT stsf_get at once
 *   cancel DOMAIN            stsf_get, then stsf_cancel at once: no answer may come
 *   quit                     (or EOF) stop once every get is answered
 * Exit status 0 when every get was answered exactly once, never inside
 * stsf_get, and no cancelled one was; 1 otherwise; 2 for bad usage.
 *
 *   stsq [-a trust_anchor] [-f forwarder] [-c ca_file] [-p https_port]
 *        [-s state_dir] [-T fetch_timeout_ms] [-B backoff_s] [-R recheck_s]
 *        [-K refresh_tick_ms]
 */
#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "starttlsd/resolver.h"
#include "starttlsd/sts.h"
#include "starttlsd/stsfetch.h"

static struct stsf *F;
static int asked, answered, bad, in_get, eof;
static char line[1024];
static size_t linelen;

static void
on_state(void *arg, const char *domain, const struct stsf_state *st)
{
	long n = (long)(intptr_t)arg;
	static const char *fails[] = { "ok", "fetch-error", "policy-invalid",
		"webpki-invalid" };

	if (in_get) {
		fprintf(stderr, "stsq: answer inside stsf_get\n");
		bad++;
	}
	if (n < 0) {
		fprintf(stderr, "stsq: a cancelled get was answered\n");
		bad++;
		return;
	}
	printf("#%ld %s have=%d", n, domain, st->have);
	if (st->have) {
		printf(" mode=%s id=%s max_age=%u expires_in=%lld mx=",
		    sts_mode_str(st->policy.mode), st->id, st->policy.max_age,
		    (long long)(st->expires - time(NULL)));
		for (size_t i = 0; i < st->policy.nmx; i++)
			printf("%s%s", i ? "," : "", st->policy.mx[i]);
	}
	printf(" fail=%s why=\"%s\"\n", (unsigned)st->fail < 4 ?
	    fails[st->fail] : "?", st->why);
	fflush(stdout);
	answered++;
}

static void
on_check(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	if (eof && answered >= asked)
		ev_break(loop, EVBREAK_ALL);
}

static void
command(char *l)
{
	char *save = NULL, *cmd = strtok_r(l, " \t", &save);
	static long seq;

	if (cmd == NULL)
		return;
	if (strcmp(cmd, "quit") == 0) {
		eof = 1;
	} else if (strcmp(cmd, "get") == 0 || strcmp(cmd, "getn") == 0 ||
	    strcmp(cmd, "cancel") == 0) {
		int count = 1;
		char *d, *w;
		unsigned wait_ms;

		if (strcmp(cmd, "getn") == 0) {
			char *c = strtok_r(NULL, " \t", &save);
			count = c ? atoi(c) : 0;
		}
		d = strtok_r(NULL, " \t", &save);
		w = strtok_r(NULL, " \t", &save);
		wait_ms = w ? (unsigned)atoi(w) : 10000;
		if (d == NULL || count < 1 || count > 64) {
			fprintf(stderr, "stsq: bad command\n");
			bad++;
			return;
		}
		for (int i = 0; i < count; i++) {
			bool cancel = strcmp(cmd, "cancel") == 0;
			uint64_t id;

			seq++;
			in_get = 1;
			id = stsf_get(F, d, wait_ms, on_state,
			    (void *)(intptr_t)(cancel ? -seq : seq));
			in_get = 0;
			if (id == 0) {
				printf("#%ld %s refused\n", seq, d);
				fflush(stdout);
				continue;
			}
			if (cancel) {
				stsf_cancel(F, id);
				printf("#%ld %s cancelled\n", seq, d);
				fflush(stdout);
			} else {
				asked++;
			}
		}
	} else {
		fprintf(stderr, "stsq: unknown command %s\n", cmd);
		bad++;
	}
}

static void
on_stdin(struct ev_loop *loop, ev_io *w, int revents)
{
	char buf[512];
	ssize_t n = read(w->fd, buf, sizeof(buf));

	(void)revents;
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		eof = 1;
		ev_io_stop(loop, w);
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			line[linelen] = '\0';
			command(line);
			linelen = 0;
		} else if (linelen < sizeof(line) - 1) {
			line[linelen++] = buf[i];
		}
	}
	if (eof)
		ev_io_stop(loop, w);
}

int
main(int argc, char **argv)
{
	struct resolver_opts ro = { .trust_anchor_file = NULL };
	struct stsf_opts so = { .state_dir = NULL };
	struct ev_loop *loop = EV_DEFAULT;
	struct resolver *res;
	char err[512];
	ev_io in;
	ev_timer check;
	int c;

	/* as in policyd: a peer that goes away must not kill us on write */
	signal(SIGPIPE, SIG_IGN);
	while ((c = getopt(argc, argv, "a:f:c:p:s:T:B:R:K:")) != -1) {
		switch (c) {
		case 'a': ro.trust_anchor_file = optarg; break;
		case 'f':
			if (ro.nforwarders < RESOLVER_MAX_FWD)
				ro.forwarders[ro.nforwarders++] = optarg;
			break;
		case 'c': so.ca_file = optarg; break;
		case 'p': so.https_port = (uint16_t)atoi(optarg); break;
		case 's': so.state_dir = optarg; break;
		case 'T': so.fetch_timeout_ms = (unsigned)atoi(optarg); break;
		case 'B': so.backoff_s = (unsigned)atoi(optarg); break;
		case 'R': so.recheck_s = (unsigned)atoi(optarg); break;
		case 'K': so.refresh_tick_ms = (unsigned)atoi(optarg); break;
		default:
			fprintf(stderr, "usage: stsq [-a ta] [-f fwd] [-c ca] [-p port] "
			    "[-s state_dir] [-T ms] [-B s] [-R s] [-K ms]\n");
			return 2;
		}
	}
	if ((res = resolver_new(loop, &ro, err, sizeof(err))) == NULL) {
		fprintf(stderr, "stsq: %s\n", err);
		return 2;
	}
	if ((F = stsf_new(loop, res, &so, err, sizeof(err))) == NULL) {
		fprintf(stderr, "stsq: %s\n", err);
		resolver_free(res);
		return 2;
	}
	fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
	ev_io_init(&in, on_stdin, 0, EV_READ);
	ev_io_start(loop, &in);
	ev_timer_init(&check, on_check, 0.02, 0.02);
	ev_timer_start(loop, &check);
	printf("ready\n");
	fflush(stdout);
	ev_run(loop, 0);
	ev_timer_stop(loop, &check);
	ev_io_stop(loop, &in);
	stsf_free(F);
	resolver_free(res);
	ev_loop_destroy(loop);
	if (bad != 0 || answered != asked) {
		fprintf(stderr, "stsq: %d answers for %d gets, %d bad\n", answered,
		    asked, bad);
		return 1;
	}
	printf("done\n");
	return 0;
}
