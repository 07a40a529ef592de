/*
 * hash.h: FNV-1a, the one non-cryptographic hash of the daemon (table
 * slots, buckets, dedupe). Not for anything an attacker may aim at where
 * collisions would cost more than a shared slot.
 */
#ifndef STARTTLSD_HASH_H
#define STARTTLSD_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define FNV1A_INIT 2166136261u

static inline uint32_t
fnv1a(uint32_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 16777619u;
	return h;
}

static inline uint32_t
fnv1a_str(uint32_t h, const char *s)
{
	for (; *s != '\0'; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

/* An IPv4 or IPv6 address, and its port if with_port (other families: h). */
static inline uint32_t
fnv1a_addr(uint32_t h, const struct sockaddr_storage *a, int with_port)
{
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)a;

		h = fnv1a(h, &s4->sin_addr, sizeof(s4->sin_addr));
		return with_port ? fnv1a(h, &s4->sin_port, sizeof(s4->sin_port)) : h;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)a;

		h = fnv1a(h, &s6->sin6_addr, sizeof(s6->sin6_addr));
		return with_port ? fnv1a(h, &s6->sin6_port, sizeof(s6->sin6_port)) : h;
	}
	return h;
}

#endif
