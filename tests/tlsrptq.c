/*
 * tlsrptq: record TLS-RPT results into a state_dir's store, the way policyd
 * does: each result is encoded as a PD_REPORT packet (pd_report_encode),
 * decoded again (pd_report_decode) and handed to tlsrpt_record. For
 * tests/integration/89-tlsrpt.sh.
 *
 *   tlsrptq STATE_DIR TYPE RESULT DOMAIN MX IP AGE_DAYS COUNT [POLICY_STRING...]
 *
 * TYPE tlsa|sts|no-policy-found; RESULT success or an RFC 8460 result type;
 * MX and IP "-" for none; AGE_DAYS 0 today, 1 yesterday (noon UTC); COUNT
 * the number of identical results. Exit 0, or 1 with the error.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "starttlsd/policyd.h"
#include "starttlsd/tlsrpt.h"

int
main(int argc, char **argv)
{
	struct tlsrpt_opts o = { 0 };
	struct pd_report r, back;
	struct tlsrpt *t;
	uint8_t pkt[PD_MSG_MAX];
	char err[512];
	size_t n;
	long age, count;
	int i;

	if (argc < 9) {
		fprintf(stderr, "usage: tlsrptq STATE_DIR TYPE RESULT DOMAIN MX IP "
		    "AGE_DAYS COUNT [POLICY_STRING...]\n");
		return 2;
	}
	memset(&r, 0, sizeof(r));
	if (strcmp(argv[2], "tlsa") == 0)
		r.policy_type = TLSRPT_TLSA;
	else if (strcmp(argv[2], "sts") == 0)
		r.policy_type = TLSRPT_STS;
	else if (strcmp(argv[2], "no-policy-found") == 0)
		r.policy_type = TLSRPT_NO_POLICY;
	else {
		fprintf(stderr, "tlsrptq: %s: bad type\n", argv[2]);
		return 2;
	}
	for (i = 0; i < PD_R_MAX_; i++)
		if (strcmp(pd_result_str((enum pd_result)i), argv[3]) == 0)
			break;
	if (i == PD_R_MAX_) {
		fprintf(stderr, "tlsrptq: %s: bad result\n", argv[3]);
		return 2;
	}
	r.result = (enum pd_result)i;
	snprintf(r.domain, sizeof(r.domain), "%s", argv[4]);
	if (strcmp(argv[5], "-") != 0)
		snprintf(r.mx, sizeof(r.mx), "%s", argv[5]);
	if (strcmp(argv[6], "-") != 0) {
		if (inet_pton(AF_INET, argv[6], r.addr.addr) == 1)
			r.addr.family = AF_INET;
		else if (inet_pton(AF_INET6, argv[6], r.addr.addr) == 1)
			r.addr.family = AF_INET6;
		else {
			fprintf(stderr, "tlsrptq: %s: bad address\n", argv[6]);
			return 2;
		}
	}
	age = strtol(argv[7], NULL, 10);
	count = strtol(argv[8], NULL, 10);
	r.when = (uint32_t)((time(NULL) / 86400 - age) * 86400 + 43200);
	if (age == 0)
		r.when = (uint32_t)time(NULL);
	o.state_dir = argv[1];
	if ((t = tlsrpt_open(&o, err, sizeof(err))) == NULL) {
		fprintf(stderr, "tlsrptq: %s\n", err);
		return 1;
	}
	for (long k = 0; k < count; k++) {
		if ((n = pd_report_encode(&r, pkt, sizeof(pkt))) == 0 ||
		    pd_report_decode(pkt, n, &back) < 0) {
			fprintf(stderr, "tlsrptq: PD_REPORT round trip failed\n");
			tlsrpt_close(t);
			return 1;
		}
		if (tlsrpt_record(t, &back, (const char *const *)(argv + 9),
		    (size_t)(argc - 9), err, sizeof(err)) < 0) {
			fprintf(stderr, "tlsrptq: %s\n", err);
			tlsrpt_close(t);
			return 1;
		}
	}
	tlsrpt_close(t);
	return 0;
}
