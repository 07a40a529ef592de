/*
 * fuzz_sts: the MTA-STS parsers of proxy/sts.c over arbitrary bytes: the
 * input as a policy file, as one TXT record's text, as TXT wire rdata; and
 * its two halves as an mx pattern and a host name.
 *
 * Invariants (sts.h): a parsed policy has a known mode, max_age within the
 * RFC's bound, 1..STS_MAX_MX lower-case patterns unless mode is none, each
 * "*." only as a prefix and matching a host made from it; an error says why
 * and leaves no patterns. A TXT result OK has a 1-32 alphanumeric id, any
 * other result an empty one; the text and the wire form (one string) agree.
 * A pattern without "*" matches itself.
 */
#include <ctype.h>
#include <stdbool.h>
#include <string.h>

#include "starttlsd/sts.h"
#include "fuzz.h"

static void
check_policy(const uint8_t *data, size_t size)
{
	struct sts_policy p;
	char err[200] = "";
	int rc = sts_policy_parse((const char *)data, size, &p, err, sizeof(err));

	if (rc != 0) {
		FUZZ_CHECK(err[0] != '\0', "error without a reason");
		return;
	}
	FUZZ_CHECK(p.mode <= STS_MODE_ENFORCE, "mode %d", (int)p.mode);
	FUZZ_CHECK(p.max_age <= STS_MAX_AGE_MAX, "max_age %u", p.max_age);
	FUZZ_CHECK(p.nmx <= STS_MAX_MX, "nmx %zu", p.nmx);
	FUZZ_CHECK(p.nmx > 0 || p.mode == STS_MODE_NONE, "no mx in mode %s",
	    sts_mode_str(p.mode));
	for (size_t i = 0; i < p.nmx; i++) {
		const char *m = p.mx[i];
		char host[STS_NAME_MAX + 4];
		size_t n = strnlen(m, STS_NAME_MAX);

		FUZZ_CHECK(n > 0 && n < STS_NAME_MAX, "pattern length %zu", n);
		for (size_t k = 0; k < n; k++) {
			FUZZ_CHECK(!isupper((unsigned char)m[k]), "upper case in %s", m);
			FUZZ_CHECK(m[k] != '*' || (k == 0 && m[1] == '.'),
			    "misplaced * in %s", m);
		}
		if (m[0] == '*')
			snprintf(host, sizeof(host), "a%s", m + 1);
		else
			snprintf(host, sizeof(host), "%s", m);
		FUZZ_CHECK(sts_pattern_match(m, host), "%s does not match %s", m, host);
		FUZZ_CHECK(sts_policy_mx_match(&p, host), "policy misses %s", host);
	}
}

static void
check_txt(const uint8_t *data, size_t size)
{
	struct sts_txt a, b;
	enum sts_txt_result ra = sts_txt_parse_text((const char *)data, size, &a);
	size_t n = strnlen(a.id, sizeof(a.id));

	if (ra == STS_TXT_OK) {
		FUZZ_CHECK(n >= 1 && n <= STS_ID_MAX, "id length %zu", n);
		for (size_t k = 0; k < n; k++)
			FUZZ_CHECK(isalnum((unsigned char)a.id[k]), "id %s", a.id);
	} else {
		FUZZ_CHECK(n == 0, "id %s with result %s", a.id,
		    sts_txt_result_str(ra));
	}
	/* The same text as one character-string of wire rdata. */
	if (size <= 255) {
		uint8_t wire[256];
		const uint8_t *rd[1] = { wire };
		size_t len[1] = { size + 1 };
		enum sts_txt_result rb;

		wire[0] = (uint8_t)size;
		memcpy(wire + 1, data, size);
		rb = sts_txt_parse(rd, len, 1, &b);
		FUZZ_CHECK(ra == rb, "text %s, wire %s", sts_txt_result_str(ra),
		    sts_txt_result_str(rb));
		FUZZ_CHECK(strcmp(a.id, b.id) == 0, "ids differ");
	}
	/* The input as raw rdata of two records: no crash, sane result. */
	{
		const uint8_t *rd[2] = { data, data + size / 2 };
		size_t len[2] = { size / 2, size - size / 2 };
		enum sts_txt_result rc = sts_txt_parse(rd, len, 2, &b);

		FUZZ_CHECK(rc <= STS_TXT_INVALID, "result %d", (int)rc);
		if (rc != STS_TXT_OK)
			FUZZ_CHECK(b.id[0] == '\0', "id with %s", sts_txt_result_str(rc));
	}
}

static void
check_pattern(const uint8_t *data, size_t size)
{
	char pat[300], host[300];
	size_t h = size / 2;

	if (h >= sizeof(pat) || size - h >= sizeof(host))
		return;
	memcpy(pat, data, h);
	pat[h] = '\0';
	memcpy(host, data + h, size - h);
	host[size - h] = '\0';
	(void)sts_pattern_match(pat, host);
	if (strchr(pat, '*') == NULL && pat[0] != '\0' && pat[0] != '.' &&
	    strlen(pat) == h && !(h == 1 && pat[0] == '.'))
		FUZZ_CHECK(sts_pattern_match(pat, pat), "%s does not match itself",
		    pat);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_policy(data, size);
	check_txt(data, size);
	check_pattern(data, size);
	return 0;
}
