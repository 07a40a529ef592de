/*
 * fuzz_tlsrpt: the _smtp._tls TXT parser of proxy/tlsrptsend.c over
 * arbitrary bytes, as one record's text and as wire rdata (split into
 * character-strings of up to 255 bytes), and the RFC 8460 5.3 message built
 * around the bytes as the report.
 *
 * Invariants (tlsrpt.h): an accepted record gives 1..TLSRPT_MAX_RUA URIs,
 * each mailto: with one '@', printable, no blank, a dotted lower-case
 * domain; or https: with a lower-case LDH host, a port, a path starting
 * with '/' and printable. An error says why. The text and the wire form
 * agree. The message has CRLF line ends only, no line over 998 bytes, and
 * the attachment decodes back to the bytes.
 */
#include <ctype.h>
#include <stdbool.h>
#include <string.h>

#include "starttlsd/tlsrpt.h"
#include "fuzz.h"

static void
check_uri(const struct tlsrpt_uri *u)
{
	FUZZ_CHECK(u->uri[0] != '\0', "empty uri");
	if (u->kind == TLSRPT_URI_MAILTO) {
		const char *at = strchr(u->addr, '@');

		FUZZ_CHECK(at != NULL && at != u->addr && strchr(at + 1, '@') == NULL,
		    "mailto address %s", u->addr);
		FUZZ_CHECK(strchr(at + 1, '.') != NULL, "domain without a dot: %s",
		    u->addr);
		for (const char *p = u->addr; *p != '\0'; p++)
			FUZZ_CHECK(*p > 0x20 && *p < 0x7f && strchr("<>,;\"\\", *p) == NULL,
			    "bad byte 0x%02x in %s", (unsigned char)*p, u->addr);
		for (const char *p = at + 1; *p != '\0'; p++)
			FUZZ_CHECK(!isupper((unsigned char)*p), "upper case %s", u->addr);
		return;
	}
	FUZZ_CHECK(u->kind == TLSRPT_URI_HTTPS, "kind %d", (int)u->kind);
	FUZZ_CHECK(u->host[0] != '\0' && u->port != 0, "host %s port %u", u->host,
	    u->port);
	for (const char *p = u->host; *p != '\0'; p++)
		FUZZ_CHECK(islower((unsigned char)*p) || isdigit((unsigned char)*p) ||
		    *p == '-' || *p == '.' || *p == '_', "host %s", u->host);
	FUZZ_CHECK(u->path[0] == '/', "path %s", u->path);
	for (const char *p = u->path; *p != '\0'; p++)
		FUZZ_CHECK(*p > 0x20 && *p < 0x7f, "path byte 0x%02x", (unsigned char)*p);
}

static void
check_txt(const uint8_t *data, size_t size)
{
	struct tlsrpt_rua a, b;
	char ea[300] = "", eb[300] = "";
	uint8_t wire[4096 + 32];
	const uint8_t *rd[1] = { wire };
	size_t rl[1] = { 0 };
	int ra = tlsrpt_txt_parse_text((const char *)data, size, &a, ea, sizeof(ea));

	if (ra != 0)
		FUZZ_CHECK(ea[0] != '\0', "error without a reason");
	else {
		FUZZ_CHECK(a.n >= 1 && a.n <= TLSRPT_MAX_RUA, "n %zu", a.n);
		for (size_t i = 0; i < a.n; i++)
			check_uri(&a.uri[i]);
	}
	/* the same record in wire form, strings of up to 255 bytes */
	if (size > 4096)
		return;
	for (size_t off = 0; off < size; off += 255) {
		size_t l = size - off > 255 ? 255 : size - off;

		wire[rl[0]++] = (uint8_t)l;
		memcpy(wire + rl[0], data + off, l);
		rl[0] += l;
	}
	if (tlsrpt_txt_parse(rd, rl, 1, &b, eb, sizeof(eb)) == 0) {
		FUZZ_CHECK(ra == 0, "wire accepted what text refused (%s)", ea);
		FUZZ_CHECK(a.n == b.n, "n %zu vs %zu", a.n, b.n);
		for (size_t i = 0; i < a.n; i++)
			FUZZ_CHECK(strcmp(a.uri[i].uri, b.uri[i].uri) == 0,
			    "uri %zu differs", i);
	} else
		FUZZ_CHECK(ra != 0 || size < 10, "text accepted what wire refused (%s)", eb);
}

static int
b64v(char c)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = c != '\0' ? strchr(tab, c) : NULL;

	return p != NULL ? (int)(p - tab) : -1;
}

static void
check_mail(const uint8_t *data, size_t size)
{
	struct tlsrpt_opts o = { .from = "tlsrpt@gw.example.org", .org_name = "o" };
	const char *rcpts[] = { "a@example.net" };
	size_t len, k = 0;
	uint32_t acc = 0;
	int bits = 0;
	char *m = tlsrpt_mail_build(&o, 20000, "example.net", "id@gw.example.org",
	    rcpts, 1, data, size, 1728000000, &len);
	const char *b, *e;
	uint8_t *back;

	FUZZ_CHECK(m != NULL, "no message");
	for (size_t i = 0, col = 0; i < len; i++, col++) {
		if (m[i] == '\n') {
			FUZZ_CHECK(i > 0 && m[i - 1] == '\r', "bare LF at %zu", i);
			col = 0;
		}
		FUZZ_CHECK(col < 998, "line over 998 at %zu", i);
	}
	/* the attachment: after the part's blank line, up to the closing boundary */
	b = strstr(m, "json.gz\"\r\n\r\n");
	FUZZ_CHECK(b != NULL, "no attachment");
	b += strlen("json.gz\"\r\n\r\n");
	e = strstr(b, "\r\n--tlsrpt-");
	FUZZ_CHECK(e != NULL, "no closing boundary");
	back = malloc(size + 4);
	FUZZ_CHECK(back != NULL, "malloc");
	for (const char *p = b; p < e; p++) {
		int v;

		if (*p == '\r' || *p == '\n' || *p == '=')
			continue;
		v = b64v(*p);
		FUZZ_CHECK(v >= 0, "not base64: 0x%02x", (unsigned char)*p);
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			FUZZ_CHECK(k < size, "attachment longer than the report");
			back[k++] = (uint8_t)(acc >> bits);
		}
	}
	FUZZ_CHECK(k == size && memcmp(back, data, size) == 0,
	    "attachment does not decode to the report (%zu of %zu)", k, size);
	free(back);
	free(m);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_txt(data, size);
	check_mail(data, size);
	return 0;
}
