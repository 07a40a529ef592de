/* policy: opportunistic TLS (RFC 7435) until pins and rules arrive. */
#include "starttlsd/policy.h"

enum policy_verdict
policy_tls_unavailable(const struct sockaddr *dst, enum policy_signal sig)
{
	(void)dst;
	switch (sig) {
	case POLICY_SIG_STARTTLS_MISSING:
	case POLICY_SIG_NO_ESMTP:
		return POLICY_CONTINUE_PLAIN;
	case POLICY_SIG_STARTTLS_REFUSED:
	case POLICY_SIG_STARTTLS_UNEXPECTED:
	case POLICY_SIG_HANDSHAKE_FAILED:
		/*
		 * The connection's SMTP state can no longer be trusted (a
		 * half-done handshake, or a server that said something odd to
		 * STARTTLS): start again without STARTTLS.
		 */
		return POLICY_RECONNECT_PLAIN;
	}
	return POLICY_REFUSE;
}

const char *
policy_signal_str(enum policy_signal sig)
{
	switch (sig) {
	case POLICY_SIG_STARTTLS_MISSING: return "starttls-missing";
	case POLICY_SIG_STARTTLS_REFUSED: return "starttls-refused";
	case POLICY_SIG_STARTTLS_UNEXPECTED: return "starttls-unexpected-reply";
	case POLICY_SIG_HANDSHAKE_FAILED: return "handshake-failed";
	case POLICY_SIG_NO_ESMTP: return "no-esmtp";
	}
	return "unknown";
}
