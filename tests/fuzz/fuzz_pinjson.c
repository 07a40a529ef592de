/*
 * fuzz_pinjson: pin_json_parse() over arbitrary text (what starttlsctl
 * import reads), and pin_json_write() back.
 *
 * Invariants (pinstore.h, pinjson.c): on error err says "at byte N: ..."
 * with N within the input; on success the pin passes pin_check(),
 * its key and via are NUL-terminated, and writing it out and parsing that
 * again gives the same pin, whose JSON is the very same text (a fixpoint).
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "starttlsd/pinstore.h"
#include "fuzz.h"

static bool
pin_eq(const struct pin *a, const struct pin *b)
{
	return a->kind == b->kind && strcmp(a->key, b->key) == 0 &&
	    a->first_seen == b->first_seen && a->last_seen == b->last_seen &&
	    a->count == b->count && a->tls_version == b->tls_version &&
	    a->has_spki == b->has_spki &&
	    (!a->has_spki || memcmp(a->spki, b->spki, sizeof(a->spki)) == 0) &&
	    strcmp(a->via, b->via) == 0;
}

/* The JSON of p in a malloc'd buffer (exact size, no NUL). */
static char *
json_of(const struct pin *p, size_t *len)
{
	char *buf = NULL, *exact;
	size_t n = 0;
	FILE *fp = open_memstream(&buf, &n);

	if (fp == NULL)
		abort();
	pin_json_write(fp, p);
	if (fclose(fp) != 0)
		abort();
	exact = fuzz_dup(buf, n);
	free(buf);
	*len = n;
	return exact;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pin p, back;
	char err[256] = "", *text = fuzz_dup(data, size), *j1, *j2;
	const char *field = NULL;
	size_t n1, n2;
	unsigned long at;

	memset(&p, 0x5a, sizeof(p));
	if (pin_json_parse(text, size, &p, err, sizeof(err)) != 0) {
		FUZZ_CHECK(sscanf(err, "at byte %lu: ", &at) == 1,
		    "error text \"%s\"", err);
		FUZZ_CHECK(at <= size, "error at byte %lu of %zu", at, size);
		free(text);
		return 0;
	}
	FUZZ_CHECK(pin_check(&p, &field) == NULL, "parsed pin fails pin_check "
	    "(%s)", field ? field : "?");
	FUZZ_CHECK(memchr(p.key, '\0', sizeof(p.key)) != NULL,
	    "key not terminated");
	FUZZ_CHECK(memchr(p.via, '\0', sizeof(p.via)) != NULL,
	    "via not terminated");
	FUZZ_CHECK(p.kind == PIN_DST || p.kind == PIN_DOMAIN, "kind %d",
	    (int)p.kind);

	j1 = json_of(&p, &n1);
	memset(&back, 0, sizeof(back));
	if (pin_json_parse(j1, n1, &back, err, sizeof(err)) != 0) {
		fuzz_dump("written", j1, n1);
		FUZZ_CHECK(0, "our own JSON does not parse: %s", err);
	}
	if (!pin_eq(&p, &back)) {
		fuzz_dump("written", j1, n1);
		FUZZ_CHECK(0, "the pin changed on the way through JSON");
	}
	j2 = json_of(&back, &n2);
	FUZZ_CHECK(n1 == n2 && memcmp(j1, j2, n1) == 0,
	    "writing the pin again gives other JSON");
	free(j2);
	free(j1);
	free(text);
	return 0;
}
