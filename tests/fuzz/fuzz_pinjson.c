/*
 * fuzz_pinjson: pin_json_parse() and pin_json_parse_array() over arbitrary
 * text (what starttlsctl import reads), and pin_json_write() back.
 *
 * Invariants (pinjson.h): on error the output is untouched and the error
 * points within the input, its line and column saying the same place as
 * its offset, with a reason free of control characters; on success every pin passes pin_check(), its
 * key and via are NUL-terminated, an array has no key twice, and writing a
 * pin out and parsing that again gives the same pin, whose JSON is the very
 * same text (a fixpoint).
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "starttlsd/pinjson.h"
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
	if (pin_json_write(fp, p) != 0)
		abort();
	if (fclose(fp) != 0)
		abort();
	exact = fuzz_dup(buf, n);
	free(buf);
	*len = n;
	return exact;
}

/* An error points within the input, at the place its line:column says. */
static void
check_err(const char *text, size_t size, const struct pin_json_err *e)
{
	size_t line = 1, col = 1, i = 0;

	FUZZ_CHECK(e->offset <= size, "error at byte %zu of %zu", e->offset,
	    size);
	FUZZ_CHECK(e->text[0] != '\0', "error without a reason");
	for (const char *c = e->text; *c != '\0'; c++)
		FUZZ_CHECK((unsigned char)*c >= 0x20 && *c != 0x7f,
		    "control character 0x%02x in the reason", (unsigned char)*c);
	if (e->offset >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		i = 3;
	for (; i < e->offset; i++)
		if (text[i] == '\n') {
			line++;
			col = 1;
		} else if (((unsigned char)text[i] & 0xc0) != 0x80)
			col++;
	FUZZ_CHECK(e->line == line && e->column == col, "error at byte %zu "
	    "said %zu:%zu, not %zu:%zu", e->offset, e->line, e->column, line,
	    col);
}

static void
check_pin(const struct pin *p)
{
	const char *field = NULL;

	FUZZ_CHECK(pin_check(p, &field) == NULL, "parsed pin fails pin_check "
	    "(%s)", field ? field : "?");
	FUZZ_CHECK(memchr(p->key, '\0', sizeof(p->key)) != NULL,
	    "key not terminated");
	FUZZ_CHECK(memchr(p->via, '\0', sizeof(p->via)) != NULL,
	    "via not terminated");
	FUZZ_CHECK(p->kind == PIN_DST || p->kind == PIN_DOMAIN, "kind %d",
	    (int)p->kind);
}

static void
one_pin(const char *text, size_t size)
{
	struct pin p, canary, back;
	struct pin_json_err err;
	char *j1, *j2;
	size_t n1, n2;

	memset(&canary, 0x5a, sizeof(canary));
	p = canary;
	if (pin_json_parse(text, size, &p, &err) != PIN_JSON_OK) {
		FUZZ_CHECK(memcmp(&p, &canary, sizeof(p)) == 0,
		    "output written on error");
		check_err(text, size, &err);
		return;
	}
	check_pin(&p);
	j1 = json_of(&p, &n1);
	memset(&back, 0, sizeof(back));
	if (pin_json_parse(j1, n1, &back, &err) != PIN_JSON_OK) {
		fuzz_dump("written", j1, n1);
		FUZZ_CHECK(0, "our own JSON does not parse: %s", err.text);
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
}

static void
pin_array(const char *text, size_t size)
{
	struct pin_json_err err;
	struct pin *v = NULL;
	size_t n = 0;

	switch (pin_json_parse_array(text, size, &v, &n, &err)) {
	case PIN_JSON_OK:
		FUZZ_CHECK((n == 0) == (v == NULL), "%zu pins at %p", n,
		    (void *)v);
		for (size_t k = 0; k < n; k++) {
			check_pin(&v[k]);
			for (size_t m = 0; m < k; m++)
				FUZZ_CHECK(strcmp(v[m].key, v[k].key) != 0,
				    "key %s twice", v[k].key);
		}
		free(v);
		return;
	case PIN_JSON_INVALID:
		FUZZ_CHECK(v == NULL && n == 0, "pins returned on error");
		check_err(text, size, &err);
		return;
	case PIN_JSON_NOMEM:
		return;
	}
	FUZZ_CHECK(0, "unknown result");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_dup(data, size);

	one_pin(text, size);
	pin_array(text, size);
	free(text);
	return 0;
}
