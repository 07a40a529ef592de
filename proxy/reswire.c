/*
 * reswire: the pure parts of resolver.h (status names, DNS wire names and MX
 * rdata), apart from resolver.c so unit tests and fuzzers need no libunbound.
 */
#include "starttlsd/resolver.h"

#include <stdio.h>
#include <string.h>

const char *
res_status_str(enum res_status s)
{
	switch (s) {
	case RES_SECURE: return "secure";
	case RES_INSECURE: return "insecure";
	case RES_BOGUS: return "bogus";
	case RES_ERROR: return "error";
	}
	return "unknown";
}

/*
 * Labels as they come; a label byte that is not a letter, digit, hyphen or
 * underscore makes the name unusable for us (host names, _25._tcp), so it is
 * refused rather than escaped.
 */
size_t
res_name_decode(const uint8_t *wire, size_t len, char *out, size_t cap)
{
	size_t p = 0, o = 0;

	if (cap == 0)
		return 0;
	for (;;) {
		size_t l;

		if (p >= len)
			return 0;
		l = wire[p++];
		if (l == 0)
			break;
		if (l > 63 || l > len - p)
			return 0;   /* compression pointers or a truncated label */
		if (o + l + 2 > cap || o + l + 1 > 254)
			return 0;
		if (o > 0)
			out[o++] = '.';
		for (size_t i = 0; i < l; i++) {
			char c = (char)wire[p + i];
			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			    (c >= '0' && c <= '9') || c == '-' || c == '_'))
				return 0;
			out[o++] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
		}
		p += l;
	}
	if (o == 0) {
		if (cap < 2)
			return 0;
		out[o++] = '.';   /* the root */
	}
	out[o] = '\0';
	return p;
}

int
res_mx_decode(const uint8_t *rdata, size_t len, uint16_t *pref, char *name,
    size_t cap)
{
	size_t used;

	if (len < 3)
		return -1;
	*pref = (uint16_t)(rdata[0] << 8 | rdata[1]);
	used = res_name_decode(rdata + 2, len - 2, name, cap);
	if (used == 0 || used != len - 2)
		return -1;
	return 0;
}
