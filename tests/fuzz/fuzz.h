/*
 * fuzz: what every libFuzzer harness under tests/fuzz/ shares. A harness
 * checks the invariants its module promises (the contracts in include/) and
 * ends the process through fuzz_fail() when one does not hold, so libFuzzer
 * keeps the input as a crash reproducer like any sanitizer finding.
 */
#ifndef STARTTLSD_FUZZ_H
#define STARTTLSD_FUZZ_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* libFuzzer's entry points; declared for -Wmissing-prototypes. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static inline void fuzz_fail(const char *file, int line, const char *cond,
    const char *fmt, ...) __attribute__((noreturn, format(printf, 4, 5)));

/* An invariant broke: say where and why, then abort() for libFuzzer. */
static inline void
fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "\n==fuzz== invariant violated at %s:%d: %s\n==fuzz== ",
	    file, line, cond);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

#define FUZZ_CHECK(cond, ...) \
	do { \
		if (!(cond)) \
			fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__); \
	} while (0)

/* Bytes as C-escaped text on stderr, for the messages above. */
static inline void
fuzz_dump(const char *label, const void *p, size_t n)
{
	const unsigned char *b = p;

	fprintf(stderr, "==fuzz== %s (%zu bytes): \"", label, n);
	for (size_t i = 0; i < n && i < 4096; i++) {
		if (b[i] == '\r')
			fputs("\\r", stderr);
		else if (b[i] == '\n')
			fputs("\\n", stderr);
		else if (b[i] == '"' || b[i] == '\\')
			fprintf(stderr, "\\%c", b[i]);
		else if (b[i] >= 0x20 && b[i] < 0x7f)
			fputc(b[i], stderr);
		else
			fprintf(stderr, "\\x%02x", b[i]);
	}
	fputs(n > 4096 ? "\"...\n" : "\"\n", stderr);
}

/* A private copy of exactly n bytes, so ASan sees any read past the end. */
static inline char *
fuzz_dup(const void *p, size_t n)
{
	char *c = malloc(n ? n : 1);

	if (c == NULL)
		abort();
	for (size_t i = 0; i < n; i++)
		c[i] = ((const char *)p)[i];
	return c;
}

#endif
