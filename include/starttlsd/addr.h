/*
 * addr: the small things every module does with a struct sockaddr_storage
 * holding an IPv4 or IPv6 address (ports in host order here).
 */
#ifndef STARTTLSD_ADDR_H
#define STARTTLSD_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The port (host order); 0 for a family other than AF_INET/AF_INET6. */
uint16_t addr_port(const struct sockaddr_storage *a);
void addr_set_port(struct sockaddr_storage *a, uint16_t port);
/* sizeof(struct sockaddr_in) or sizeof(struct sockaddr_in6). */
socklen_t addr_len(const struct sockaddr *a);
/* Same family and address (and port, if with_port). */
bool addr_equal(const struct sockaddr_storage *a,
    const struct sockaddr_storage *b, bool with_port);
/* 0.0.0.0 or :: */
bool addr_is_wildcard(const struct sockaddr_storage *a);
/* "192.0.2.1:25" / "[2001:db8::1]:25" / "unknown" */
void addr_str(const struct sockaddr *sa, char *out, size_t cap);

#endif
