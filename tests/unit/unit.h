/*
 * unit.h: what every unit test here shares: cmocka, and checks that name
 * the table row or case they fail in (cmocka names only the line).
 */
#ifndef STARTTLSD_UNIT_H
#define STARTTLSD_UNIT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
/* A string literal and its length, for the (ptr, len) APIs. */
#define S(x) (x), (sizeof(x) - 1)

#define EQ(name, got, want) do {                                          \
	unsigned long long g_ = (unsigned long long)(got);                \
	unsigned long long w_ = (unsigned long long)(want);               \
	if (g_ != w_) {                                                   \
		print_error("%s: %s = %llu, want %llu\n", (name), #got,   \
		    g_, w_);                                              \
		fail();                                                   \
	}                                                                 \
} while (0)

#define STREQ(name, got, want) do {                                       \
	const char *g_ = (got), *w_ = (want);                             \
	if (g_ == NULL || w_ == NULL ? g_ != w_ : strcmp(g_, w_) != 0) {  \
		print_error("%s: %s\n  got  \"%s\"\n  want \"%s\"\n",     \
		    (name), #got, g_ ? g_ : "(null)", w_ ? w_ : "(null)"); \
		fail();                                                   \
	}                                                                 \
} while (0)

#define CONTAINS(name, got, want) do {                                    \
	const char *g_ = (got), *w_ = (want);                             \
	if (strstr(g_, w_) == NULL) {                                     \
		print_error("%s: \"%s\" lacks \"%s\"\n", (name), g_, w_); \
		fail();                                                   \
	}                                                                 \
} while (0)

/* Bytes made printable for a failure message: \xNN for the rest. */
static inline const char *
esc(const char *s, size_t len, char *buf, size_t cap)
{
	size_t i, o = 0;

	for (i = 0; i < len && o + 5 < cap; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f && c != '\\')
			buf[o++] = (char)c;
		else
			o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
	}
	buf[o] = '\0';
	return buf;
}

#endif
