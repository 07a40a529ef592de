/*
 * policy: the one place that decides what happens when TLS is not to be had
 * with a destination. Pure: no I/O. Today it implements opportunistic TLS
 * (RFC 7435): always continue in plaintext; pins, DANE, MTA-STS and static
 * rules plug in here.
 */
#ifndef STARTTLSD_POLICY_H
#define STARTTLSD_POLICY_H

#include <sys/socket.h>

enum policy_signal {
	POLICY_SIG_STARTTLS_MISSING,  /* EHLO without STARTTLS */
	POLICY_SIG_STARTTLS_REFUSED,  /* STARTTLS answered with an error */
	POLICY_SIG_STARTTLS_UNEXPECTED,/* STARTTLS answered with a non-error, non-220 */
	POLICY_SIG_HANDSHAKE_FAILED,
	POLICY_SIG_NO_ESMTP,          /* EHLO rejected, HELO used */
};

enum policy_verdict {
	POLICY_CONTINUE_PLAIN,   /* go on, on this connection, without TLS */
	POLICY_RECONNECT_PLAIN,  /* reconnect and go on without STARTTLS */
	POLICY_REFUSE,           /* temporary refusal to the client */
};

enum policy_verdict policy_tls_unavailable(const struct sockaddr *dst,
    enum policy_signal sig);

const char *policy_signal_str(enum policy_signal sig);

#endif
