/*
 * pinjson: pins as JSON, for starttlsctl (list --json, export, import).
 * Built on jansson: only starttlsctl and its tests link this and -ljansson;
 * the daemon never reads or writes JSON.
 *
 * One pin is one object:
 *   {"key":"ip:198.51.100.25","kind":"dst","first_seen":"2024-05-01T10:00:00Z",
 *    "last_seen":"2024-05-02T10:00:00Z","count":12,"tls_version":"TLSv1.3",
 *    "spki_sha256":"<64 hex digits>"}
 *   {"key":"domain:example.net","kind":"domain",...,"count":3,"via":"198.51.100.25"}
 * The reader accepts what the writer emits plus unix seconds for the times
 * and numbers for tls_version; kind may be left out (the key says it);
 * members it does not know (a newer version's) are skipped. It refuses
 * duplicate members, invalid UTF-8, \u0000, numbers with a fraction or an
 * exponent where an integer is due, and any pin pin_check() refuses.
 */
#ifndef STARTTLSD_PINJSON_H
#define STARTTLSD_PINJSON_H

#include <stddef.h>
#include <stdio.h>

#include "starttlsd/pinstore.h"

enum pin_json_result {
	PIN_JSON_OK = 0,
	PIN_JSON_INVALID,  /* the input is refused: the error says where and why */
	PIN_JSON_NOMEM,    /* out of memory */
};

#define PIN_JSON_ERR_MAX 256

/* Where and why an input was refused. */
struct pin_json_err {
	size_t offset;        /* the byte it points at, from the start of the text (<= len) */
	size_t line, column;  /* the same place, from 1; columns count characters (UTF-8) */
	size_t pin;           /* pin_json_parse_array: the pin at fault, from 1; 0: the array */
	const char *member;   /* the member at fault ("count"), NULL for a syntax error */
	char text[PIN_JSON_ERR_MAX];  /* why ("count: must be at least 1"), no position */
};

/*
 * One pin as one line-free JSON object (no newline). 0, or -1 when out of
 * memory or fp failed. A count above INT64_MAX (never reached by counting
 * sightings) is written as INT64_MAX, which the reader accepts.
 */
int pin_json_write(FILE *fp, const struct pin *p);

/*
 * text (len bytes, no NUL needed) holds one pin object, with white space
 * around it at most. On PIN_JSON_OK *out is the pin (it passes pin_check);
 * otherwise *out is untouched and *err filled. Semantic errors (a value out
 * of range, a missing member) point at the object's '{'; syntax errors at
 * the last byte jansson read, invalid UTF-8 at the bad byte.
 */
enum pin_json_result pin_json_parse(const char *text, size_t len,
    struct pin *out, struct pin_json_err *err);

/*
 * text holds a JSON array of pin objects (as export writes; a UTF-8 byte
 * order mark is skipped). On PIN_JSON_OK *out is a malloc'd array of *n
 * pins in input order (NULL when *n is 0; the caller frees it). The same
 * key twice is refused (it is a mistake, not "the last one wins"): err
 * then names the second pin. Nothing is written anywhere.
 */
enum pin_json_result pin_json_parse_array(const char *text, size_t len,
    struct pin **out, size_t *n, struct pin_json_err *err);

#endif
