/*
 * fuzz_config: config_load() with an arbitrary configuration file
 * ("starttlsd -c FILE"), the file being a memfd rewritten for each input.
 *
 * Invariants (config.h, starttlsd.conf.5): the result is OK or ERROR (never
 * EXIT: no -h/-V); ERROR comes with a message naming the file or the key;
 * OK means a validated configuration (listen addresses that parse, values
 * within their bounds, max_line_length < buffer_size, mode and
 * intercept_method from their lists, a helo_name, client_cert and
 * client_key together); config_free() frees everything (LeakSanitizer).
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "starttlsd/config.h"
#include "fuzz.h"

static int memfd = -1;
static char path[64];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if ((memfd = memfd_create("fuzz_config", MFD_CLOEXEC)) < 0) {
		perror("memfd_create");
		abort();
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
	return 0;
}

static void
put_file(const uint8_t *data, size_t size)
{
	size_t off = 0;

	if (ftruncate(memfd, 0) < 0)
		abort();
	while (off < size) {
		ssize_t n = pwrite(memfd, data + off, size - off, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			abort();
		off += (size_t)n;
	}
}

static void
check_ok(const struct config *c)
{
	struct sockaddr_storage ss;
	socklen_t sl;

	FUZZ_CHECK(c->listen.n >= 1 && c->listen.n <= CONFIG_MAX_LISTEN,
	    "%zu listen addresses", c->listen.n);
	for (size_t i = 0; i < c->listen.n; i++)
		FUZZ_CHECK(config_parse_addr(c->listen.item[i], &ss, &sl) == 0,
		    "listen %s does not parse", c->listen.item[i]);
	FUZZ_CHECK(c->mode == CONFIG_MODE_MONITOR ||
	    c->mode == CONFIG_MODE_ENFORCE, "mode %d", (int)c->mode);
	FUZZ_CHECK(c->intercept_method == CONFIG_INTERCEPT_REDIRECT ||
	    c->intercept_method == CONFIG_INTERCEPT_TPROXY,
	    "intercept_method %d", (int)c->intercept_method);
	FUZZ_CHECK(c->helo_name != NULL && c->helo_name[0] != '\0',
	    "no helo_name");
	FUZZ_CHECK((c->client_cert == NULL) == (c->client_key == NULL),
	    "client_cert without client_key");
	FUZZ_CHECK(c->max_line_length >= 512 && c->max_line_length <= 65536,
	    "max_line_length %u", c->max_line_length);
	FUZZ_CHECK(c->buffer_size >= 16384 && c->buffer_size <= 67108864,
	    "buffer_size %u", c->buffer_size);
	FUZZ_CHECK(c->max_line_length < c->buffer_size,
	    "max_line_length %u, buffer_size %u", c->max_line_length,
	    c->buffer_size);
	FUZZ_CHECK(c->max_reply_lines >= 1 && c->max_reply_lines <= 10000,
	    "max_reply_lines %u", c->max_reply_lines);
	FUZZ_CHECK(c->connect_timeout >= 1 && c->greeting_timeout >= 1 &&
	    c->reply_timeout >= 1 && c->tls_timeout >= 1 &&
	    c->data_timeout >= 1 && c->client_timeout >= 1,
	    "a zero timeout");
	FUZZ_CHECK(c->max_sessions >= 1, "max_sessions 0");
	FUZZ_CHECK(c->tproxy_mark >= 1, "tproxy_mark 0");
	FUZZ_CHECK(c->upstream == NULL || c->upstream[0] != '\0',
	    "empty upstream");
	if (c->transparent_source)
		FUZZ_CHECK(c->intercept &&
		    c->intercept_method == CONFIG_INTERCEPT_TPROXY,
		    "transparent_source without tproxy interception");
	if (c->intercept)
		FUZZ_CHECK(c->intercept_interfaces.n > 0 || c->intercept_local,
		    "intercept with nothing to take");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char a0[] = "starttlsd", a1[] = "-c";
	char *argv[] = { a0, a1, path, NULL };
	char err[512] = "";
	struct config c;
	enum config_result r;

	put_file(data, size);
	r = config_load(&c, 3, argv, err, sizeof(err));
	FUZZ_CHECK(r == CONFIG_OK || r == CONFIG_ERROR, "result %d", (int)r);
	if (r == CONFIG_OK)
		check_ok(&c);
	else
		FUZZ_CHECK(err[0] != '\0', "an error without a message");
	config_free(&c);
	return 0;
}
