/*
 * starttlsctl: look at and edit the pin store while the daemon runs.
 * LMDB lets both processes use the store at once; a forget or import is
 * one committed transaction, seen by the daemon's very next pin_get.
 * list/show/export open the store read-only.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "starttlsd/metrics.h"
#include "starttlsd/pinjson.h"
#include "starttlsd/pinstore.h"

#define CTL_STATE_DIR "/var/lib/starttlsd"
#define CTL_IMPORT_MAX (64u << 20)  /* bytes of JSON we read at most */
#define CTL_EXPIRE_DAYS_MAX 36500

enum ctl_exit {
	CTL_OK = 0,
	CTL_NOT_FOUND = 1,
	CTL_USAGE = 2,    /* bad command line or bad input */
	CTL_STORE = 3,    /* the store (or stdout) failed */
};

static struct {
	const char *state_dir;
	int64_t expire_secs;
	bool state_dir_set;
} opt = { CTL_STATE_DIR, PIN_EXPIRE_DEFAULT, false };

static void
usage(FILE *fp)
{
	fprintf(fp,
"usage: starttlsctl [--state-dir DIR] [--expire DAYS] COMMAND\n"
"\n"
"Commands:\n"
"  list [--json]   every pin: key, kind, first and last TLS sighting (UTC),\n"
"                  count, TLS version, SPKI SHA-256 prefix (destinations)\n"
"                  or the address it was reached via (domains)\n"
"  show KEY        every field of one pin\n"
"  forget KEY      remove one pin now; the daemon's next session sees it\n"
"                  gone, no restart or reload needed\n"
"  export          all pins as a JSON array, for import on another host\n"
"  import FILE|-   add the pins of such an array (from FILE, or - for\n"
"                  standard input), replacing pins with the same key; the\n"
"                  whole file is checked before anything is written\n"
"  stats           the running daemon's counters in the Prometheus text\n"
"                  format (docs/metrics.md), from STATE_DIR/metrics: for\n"
"                  node_exporter's textfile collector, or a quick look\n"
"  tlsrpt show [DAY]\n"
"                  the TLS-RPT reports (RFC 8460 JSON) of a UTC day so\n"
"                  far (YYYY-MM-DD, default today)\n"
"  tlsrpt send [--day DAY] [OPTION...]\n"
"                  send the reports that are due (days over, not sent);\n"
"                  OPTIONs override the configuration: --org, --contact,\n"
"                  --submission, --from, --resolver, --trust-anchor,\n"
"                  --ca-file, --timeout (both run starttlsd-tlsrpt: see\n"
"                  its --help)\n"
"\n"
"KEY is an IP address (198.51.100.25, 2001:db8::25), a domain\n"
"(example.net), or a key as listed (ip:198.51.100.25, domain:example.net).\n"
"\n"
"Options:\n"
"  --state-dir DIR  the daemon's state_dir (default %s)\n"
"  --expire DAYS    list, show and export leave out pins not seen with TLS\n"
"                   for DAYS, as the daemon's pin_expire does (default %d;\n"
"                   0 shows them all)\n"
"  -h, --help       this text\n"
"  --version        the version\n"
"\n"
"Exit status: 0 ok, 1 not found (show, forget), 2 usage error or invalid\n"
"input, 3 store or output error.\n", CTL_STATE_DIR,
	    PIN_EXPIRE_DEFAULT / 86400);
}

static int __attribute__((format(printf, 1, 2)))
usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "starttlsctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(starttlsctl --help for usage)\n");
	return CTL_USAGE;
}

static void
iso_time(int64_t t, char *buf, size_t cap)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t < 0 || gmtime_r(&tt, &tm) == NULL ||
	    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, cap, "%" PRId64, t);
}

static const char *
tls_name(uint16_t v, char *buf, size_t cap)
{
	switch (v) {
	case 0: return "-";
	case 0x0301: return "TLSv1.0";
	case 0x0302: return "TLSv1.1";
	case 0x0303: return "TLSv1.2";
	case 0x0304: return "TLSv1.3";
	default:
		snprintf(buf, cap, "0x%04x", v);
		return buf;
	}
}

static void
hex(const uint8_t *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

static int
count_pin(const struct pin *p, void *arg)
{
	(void)p;
	++*(long long *)arg;
	return 0;
}

/* stats: the daemon's shared counters, as its metrics endpoint serves them. */
static int
cmd_stats(void)
{
	char path[4096], err[600];
	char *out = malloc(METRICS_TEXT_MAX);
	long long pins = 0;
	struct pin_store *ps;
	long n;

	if (out == NULL) {
		fprintf(stderr, "starttlsctl: out of memory\n");
		return CTL_STORE;
	}
	if ((size_t)snprintf(path, sizeof(path), "%s/metrics", opt.state_dir) >=
	    sizeof(path)) {
		free(out);
		return usage_error("--state-dir: too long");
	}
	/* The pins gauge: what the store holds now (quietly left out if it cannot). */
	ps = pin_open(opt.state_dir, true, opt.expire_secs, err, sizeof(err));
	if (ps == NULL || pin_foreach(ps, (int64_t)time(NULL), count_pin, &pins,
	    err, sizeof(err)) < 0)
		pins = -1;
	if (ps != NULL)
		pin_close(ps);
	n = metrics_render_file(path, out, METRICS_TEXT_MAX, pins, err,
	    sizeof(err));
	if (n < 0) {
		fprintf(stderr, "starttlsctl: %s (is starttlsd running with "
		    "this state_dir?)\n", err);
		free(out);
		return CTL_STORE;
	}
	n = fwrite(out, 1, (size_t)n, stdout) == (size_t)n && fflush(stdout) == 0 ?
	    CTL_OK : CTL_STORE;
	free(out);
	return (int)n;
}

static struct pin_store *
store_open(bool readonly)
{
	struct pin_store *ps;
	char err[512];

	/* Writers never purge: expiry is the daemon's, with its setting. */
	ps = pin_open(opt.state_dir, readonly, readonly ? opt.expire_secs : 0,
	    err, sizeof(err));
	if (ps == NULL)
		fprintf(stderr, "starttlsctl: %s\n", err);
	return ps;
}

static uint64_t
store_errors(const struct pin_store *ps)
{
	struct pin_stats st;

	pin_get_stats(ps, &st);
	return st.errors;
}

/*
 * Unreadable records are skipped by the store; say so once. skip: errors
 * already counted by an earlier pass over the same records.
 */
static void
store_close(struct pin_store *ps, uint64_t skip)
{
	uint64_t n = store_errors(ps) - skip;

	if (n > 0)
		fprintf(stderr, "starttlsctl: %" PRIu64 " unreadable record%s "
		    "skipped (damaged, or written by a newer version)\n",
		    n, n == 1 ? "" : "s");
	pin_close(ps);
}

static int
output_done(void)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "starttlsctl: standard output: %s\n",
		    strerror(errno));
		return CTL_STORE;
	}
	return CTL_OK;
}

/* ---- list / export --------------------------------------------------------------- */

struct list_state {
	size_t keyw;   /* widest key, first pass */
	size_t n;
	bool json;
	bool unwritable;  /* a pin JSON could not hold (or out of memory) */
};

static int
list_measure(const struct pin *p, void *arg)
{
	struct list_state *ls = arg;
	size_t w = strlen(p->key);

	if (w > ls->keyw)
		ls->keyw = w;
	return 0;
}

static int
list_row(const struct pin *p, void *arg)
{
	struct list_state *ls = arg;
	char first[32], last[32], tv[16], extra[PIN_VIA_MAX + 4];

	if (ls->json) {
		fputs(ls->n == 0 ? "[\n  " : ",\n  ", stdout);
		if (pin_json_write(stdout, p) < 0 && !ferror(stdout)) {
			fprintf(stderr, "starttlsctl: %s: cannot be written as "
			    "JSON (out of memory, or not UTF-8)\n", p->key);
			ls->unwritable = true;
			return -1;
		}
		ls->n++;
		return ferror(stdout) ? -1 : 0;
	}
	iso_time(p->first_seen, first, sizeof(first));
	iso_time(p->last_seen, last, sizeof(last));
	if (p->kind == PIN_DOMAIN)
		snprintf(extra, sizeof(extra), "%s", p->via[0] ? p->via : "-");
	else if (p->has_spki) {
		char h[65];

		hex(p->spki, sizeof(p->spki), h);
		snprintf(extra, sizeof(extra), "%.16s...", h);
	} else
		snprintf(extra, sizeof(extra), "-");
	printf("%-*s  %-6s  %-20s  %-20s  %8" PRIu64 "  %-7s  %-19s  %s\n",
	    (int)ls->keyw, p->key, p->kind == PIN_DOMAIN ? "domain" : "dst",
	    first, last, p->count, tls_name(p->tls_version, tv, sizeof(tv)),
	    extra, p->origin[0] != '\0' ? p->origin : "-");
	ls->n++;
	return ferror(stdout) ? -1 : 0;
}

static int
cmd_list(bool json)
{
	struct list_state ls = { .keyw = 3, .json = json };
	struct pin_store *ps;
	int64_t now = (int64_t)time(NULL);
	uint64_t skip = 0;
	char err[512];

	if ((ps = store_open(true)) == NULL)
		return CTL_STORE;
	if (!json && pin_foreach(ps, now, list_measure, &ls, err,
	    sizeof(err)) < 0)
		goto fail;
	skip = store_errors(ps);
	if (!json)
		printf("%-*s  %-6s  %-20s  %-20s  %8s  %-7s  %-19s  %s\n",
		    (int)ls.keyw, "KEY", "KIND", "FIRST SEEN", "LAST SEEN",
		    "COUNT", "TLS", "SPKI / VIA", "LEARNED BY");
	if (pin_foreach(ps, now, list_row, &ls, err, sizeof(err)) < 0)
		goto fail;
	if (ls.unwritable) {
		/* No closing ']': a half export must not import as a whole one. */
		store_close(ps, skip);
		output_done();
		return CTL_STORE;
	}
	if (json)
		fputs(ls.n == 0 ? "[]\n" : "\n]\n", stdout);
	store_close(ps, skip);
	return output_done();
fail:
	fprintf(stderr, "starttlsctl: %s\n", err);
	store_close(ps, skip);
	return CTL_STORE;
}

/* ---- show / forget --------------------------------------------------------------- */

static int
parse_key(const char *arg, char *key, size_t cap)
{
	if (pin_key_parse(arg, key, cap) == 0)
		return 0;
	return usage_error("%s: not an IP address or a domain", arg);
}

static int
cmd_show(const char *arg)
{
	char key[PIN_KEY_MAX], err[512], t[32], tv[16], h[65];
	struct pin_store *ps;
	struct pin p;
	int64_t now = (int64_t)time(NULL);
	int r;

	if (parse_key(arg, key, sizeof(key)) != 0)
		return CTL_USAGE;
	if ((ps = store_open(true)) == NULL)
		return CTL_STORE;
	r = pin_get(ps, key, now, &p, err, sizeof(err));
	store_close(ps, 0);
	if (r < 0) {
		fprintf(stderr, "starttlsctl: %s\n", err);
		return CTL_STORE;
	}
	if (r == 0) {
		fprintf(stderr, "starttlsctl: %s: not pinned%s\n", key,
		    opt.expire_secs > 0 ? " (or expired: --expire 0 shows "
		    "expired pins)" : "");
		return CTL_NOT_FOUND;
	}
	printf("key          %s\n", p.key);
	printf("kind         %s\n", p.kind == PIN_DOMAIN ? "domain" : "dst");
	iso_time(p.first_seen, t, sizeof(t));
	printf("first_seen   %s\n", t);
	iso_time(p.last_seen, t, sizeof(t));
	printf("last_seen    %s\n", t);
	if (opt.expire_secs > 0) {
		iso_time(p.last_seen + opt.expire_secs, t, sizeof(t));
		printf("expires      %s (without a TLS sighting before)\n", t);
	}
	printf("count        %" PRIu64 "\n", p.count);
	if (p.kind == PIN_DOMAIN)
		printf("via          %s\n", p.via[0] ? p.via : "-");
	else {
		printf("tls_version  %s\n", tls_name(p.tls_version, tv,
		    sizeof(tv)));
		if (p.has_spki)
			hex(p.spki, sizeof(p.spki), h);
		printf("spki_sha256  %s\n", p.has_spki ? h : "-");
	}
	if (p.origin[0] != '\0')
		printf("learned_by   %s\n", p.origin);
	return output_done();
}

static int
cmd_forget(const char *arg)
{
	char key[PIN_KEY_MAX], err[512];
	struct pin_store *ps;
	int r;

	if (parse_key(arg, key, sizeof(key)) != 0)
		return CTL_USAGE;
	if ((ps = store_open(false)) == NULL)
		return CTL_STORE;
	r = pin_forget(ps, key, err, sizeof(err));
	store_close(ps, 0);
	if (r < 0) {
		fprintf(stderr, "starttlsctl: %s\n", err);
		return CTL_STORE;
	}
	if (r == 0) {
		fprintf(stderr, "starttlsctl: %s: not pinned\n", key);
		return CTL_NOT_FOUND;
	}
	printf("forgot %s\n", key);
	return output_done();
}

/* ---- import ------------------------------------------------------------------- */

static char *
read_all(const char *path, size_t *len)
{
	FILE *fp = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	size_t cap = 65536, n = 0;
	char *buf = NULL, *nb;

	if (fp == NULL) {
		fprintf(stderr, "starttlsctl: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	for (;;) {
		if (buf == NULL || n == cap) {
			if (buf != NULL)
				cap *= 2;
			if (cap > CTL_IMPORT_MAX + 1)
				cap = CTL_IMPORT_MAX + 1;
			if (n == cap || (nb = realloc(buf, cap)) == NULL) {
				fprintf(stderr, "starttlsctl: %s: %s\n", path,
				    n == cap ? "larger than 64 MiB" :
				    "out of memory");
				goto fail;
			}
			buf = nb;
		}
		size_t r = fread(buf + n, 1, cap - n, fp);

		n += r;
		if (r == 0) {
			if (ferror(fp)) {
				fprintf(stderr, "starttlsctl: %s: %s\n", path,
				    strerror(errno));
				goto fail;
			}
			break;
		}
	}
	if (fp != stdin)
		fclose(fp);
	*len = n;
	return buf;
fail:
	if (fp != stdin)
		fclose(fp);
	free(buf);
	return NULL;
}

/* "NAME:LINE:COL: [pin #K: ]why", the place counted in the whole input. */
static void
input_error(const char *name, const struct pin_json_err *e)
{
	if (e->pin > 0)
		fprintf(stderr, "starttlsctl: %s:%zu:%zu: pin #%zu: %s\n", name,
		    e->line, e->column, e->pin, e->text);
	else
		fprintf(stderr, "starttlsctl: %s:%zu:%zu: %s\n", name, e->line,
		    e->column, e->text);
}

static int
cmd_import(const char *path)
{
	const char *name = strcmp(path, "-") == 0 ? "(stdin)" : path;
	struct pin_json_err jerr;
	struct pin_store *ps;
	struct pin *v = NULL;
	size_t len, n = 0, k;
	char err[512], *buf;
	enum pin_json_result r;

	if ((buf = read_all(path, &len)) == NULL)
		return CTL_USAGE;
	/* The whole input is checked before the store is touched. */
	r = pin_json_parse_array(buf, len, &v, &n, &jerr);
	free(buf);
	if (r == PIN_JSON_NOMEM) {
		fprintf(stderr, "starttlsctl: %s: out of memory\n", name);
		return CTL_STORE;
	}
	if (r != PIN_JSON_OK) {
		input_error(name, &jerr);
		return CTL_USAGE;
	}
	if ((ps = store_open(false)) == NULL) {
		free(v);
		return CTL_STORE;
	}
	for (k = 0; k < n; k++)
		if (pin_put(ps, &v[k], err, sizeof(err)) < 0)
			break;
	store_close(ps, 0);
	free(v);
	if (k < n) {
		fprintf(stderr, "starttlsctl: %s (imported %zu of %zu pins)\n",
		    err, k, n);
		return CTL_STORE;
	}
	printf("imported %zu pin%s\n", n, n == 1 ? "" : "s");
	return output_done();
}

/* ---- tlsrpt --------------------------------------------------------------------- */

/*
 * tlsrpt: run starttlsd-tlsrpt, installed beside this program. It is a
 * program of its own because sending links the validating resolver
 * (libunbound, with libev static) and makes network connections, which this
 * tool, run by root for the pin store, should not carry (docs/dane.md).
 */
static int
cmd_tlsrpt(int argc, char **argv)
{
	char self[PATH_MAX], path[PATH_MAX + 32];
	char **av;
	ssize_t n;
	int k = 0;
	char *slash;

	if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) < 0) {
		fprintf(stderr, "starttlsctl: /proc/self/exe: %s\n",
		    strerror(errno));
		return CTL_STORE;
	}
	self[n] = '\0';
	if ((slash = strrchr(self, '/')) == NULL)
		return CTL_STORE;
	*slash = '\0';
	snprintf(path, sizeof(path), "%s/starttlsd-tlsrpt", self);
	if ((av = calloc((size_t)argc + 4, sizeof(*av))) == NULL)
		return CTL_STORE;
	av[k++] = path;
	if (opt.state_dir_set) {
		av[k++] = (char *)(uintptr_t)"--state-dir";
		av[k++] = (char *)(uintptr_t)opt.state_dir;
	}
	for (int i = 0; i < argc; i++)
		av[k++] = argv[i];
	av[k] = NULL;
	fflush(stdout);
	execv(path, av);
	fprintf(stderr, "starttlsctl: %s: %s\n", path, strerror(errno));
	free(av);
	return CTL_STORE;
}

/* ---- main --------------------------------------------------------------------- */

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "state-dir", required_argument, NULL, 'd' },
		{ "expire", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cmd;
	char *end;
	long days;
	int c;

	opterr = 0;
	/* "+": options end at the command, whose own arguments follow. */
	while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd':
			if (optarg[0] == '\0')
				return usage_error("--state-dir: empty");
			opt.state_dir = optarg;
			opt.state_dir_set = true;
			break;
		case 'e':
			errno = 0;
			days = strtol(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' ||
			    days < 0 || days > CTL_EXPIRE_DAYS_MAX)
				return usage_error("--expire: %s: expected days, "
				    "0 to 36500", optarg);
			opt.expire_secs = (int64_t)days * 86400;
			break;
		case 'h':
			usage(stdout);
			return output_done();
		case 'V':
			printf("starttlsctl %s\n", STARTTLSD_VERSION);
			return output_done();
		default:
			return usage_error("%s: unknown option, or its value is "
			    "missing", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return usage_error("no command");
	cmd = argv[optind++];
	argc -= optind;
	argv += optind;
	if (strcmp(cmd, "list") == 0) {
		if (argc == 0)
			return cmd_list(false);
		if (argc == 1 && strcmp(argv[0], "--json") == 0)
			return cmd_list(true);
		return usage_error("list: %s: expected --json or nothing",
		    argv[0]);
	}
	if (strcmp(cmd, "export") == 0) {
		if (argc != 0)
			return usage_error("export: %s: takes no arguments",
			    argv[0]);
		return cmd_list(true);
	}
	if (strcmp(cmd, "show") == 0 || strcmp(cmd, "forget") == 0 ||
	    strcmp(cmd, "import") == 0) {
		if (argc != 1)
			return usage_error("%s: expected one argument", cmd);
		if (cmd[0] == 's')
			return cmd_show(argv[0]);
		if (cmd[0] == 'f')
			return cmd_forget(argv[0]);
		return cmd_import(argv[0]);
	}
	if (strcmp(cmd, "tlsrpt") == 0) {
		if (argc == 0 || (strcmp(argv[0], "show") != 0 &&
		    strcmp(argv[0], "send") != 0))
			return usage_error("tlsrpt: expected show or send");
		return cmd_tlsrpt(argc, argv);
	}
	if (strcmp(cmd, "stats") == 0) {
		if (argc != 0)
			return usage_error("stats: %s: takes no arguments", argv[0]);
		return cmd_stats();
	}
	return usage_error("%s: unknown command", cmd);
}
