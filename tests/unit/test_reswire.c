/*
 * Unit tests for proxy/reswire.c, the pure parts of resolver.h: status names,
 * DNS wire names (no compression, letters/digits/-/_ only, length limits)
 * and MX rdata. No libunbound here; tests/integration/91-dnssec.sh drives
 * resolver.c against real servers.
 */

#include "unit.h"

#include "starttlsd/resolver.h"

static void
test_names(void **state)
{
	static const struct {
		const char *name;
		const char *wire;
		size_t len;
		size_t used;
		const char *want;
	} t[] = {
		{ "two labels", "\x02mx\x07""example\x00", 12, 12, "mx.example" },
		{ "upper case", "\x02MX\x07""EXAMPLE\x00", 12, 12, "mx.example" },
		{ "tlsa owner", "\x03_25\x04_tcp\x02mx\x00", 13, 13, "_25._tcp.mx" },
		{ "root", "\x00", 1, 1, "." },
		{ "no end", "\x02mx", 3, 0, "" },
		{ "label past end", "\x05mx\x00", 4, 0, "" },
		{ "pointer", "\xc0\x0c", 2, 0, "" },
		{ "space", "\x03""a b\x00", 5, 0, "" },
		{ "dot in label", "\x03""a.b\x00", 5, 0, "" },
		{ "empty input", "", 0, 0, "" },
	};

	for (size_t i = 0; i < NELEM(t); i++) {
		char out[300] = "";
		size_t used = res_name_decode((const uint8_t *)t[i].wire, t[i].len,
		    out, sizeof(out));
		EQ(t[i].name, used, t[i].used);
		if (used > 0)
			STREQ(t[i].name, out, t[i].want);
	}

	/* 127 labels of one letter: 253 characters fit; one more label does not. */
	{
		uint8_t w[600];
		char out[300];
		size_t o = 0;
		for (int i = 0; i < 127; i++) {
			w[o++] = 1;
			w[o++] = 'a';
		}
		w[o++] = 0;
		EQ("253", res_name_decode(w, o, out, sizeof(out)), o);
		EQ("253", strlen(out), 253);
		o--;
		w[o++] = 1;
		w[o++] = 'b';
		w[o++] = 0;
		EQ("255", res_name_decode(w, o, out, sizeof(out)), 0);
		/* a small buffer is refused, not overrun */
		EQ("cap", res_name_decode(w, 5, out, 3), 0);
	}
}

static void
test_mx(void **state)
{
	uint16_t pref = 0;
	char name[256];

	EQ("mx", res_mx_decode((const uint8_t *)"\x00\x0a\x02mx\x07""example\x00",
	    14, &pref, name, sizeof(name)), 0);
	EQ("mx", pref, 10);
	STREQ("mx", name, "mx.example");
	EQ("null mx", res_mx_decode((const uint8_t *)"\x00\x00\x00", 3, &pref,
	    name, sizeof(name)), 0);
	STREQ("null mx", name, ".");
	EQ("trailing", res_mx_decode((const uint8_t *)"\x00\x0a\x00x", 4, &pref,
	    name, sizeof(name)), -1);
	EQ("short", res_mx_decode((const uint8_t *)"\x00\x0a", 2, &pref, name,
	    sizeof(name)), -1);
}

static void
test_status(void **state)
{
	STREQ("s", res_status_str(RES_SECURE), "secure");
	STREQ("s", res_status_str(RES_INSECURE), "insecure");
	STREQ("s", res_status_str(RES_BOGUS), "bogus");
	STREQ("s", res_status_str(RES_ERROR), "error");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_mx),
		cmocka_unit_test(test_status),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
