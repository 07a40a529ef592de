/*
 * nft: starttlsd's own interception, as one nftables table ("inet
 * starttlsd") installed, updated and removed over netlink with libnftnl,
 * each change one batch (all or nothing). No shelling out to nft(8).
 */
#ifndef STARTTLSD_NFT_H
#define STARTTLSD_NFT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <net/if.h>
#include <netinet/in.h>

#define NFT_TABLE "starttlsd"
#define NFT_MAX_IFACES 16
#define NFT_MAX_BYPASS 64

enum nft_method { NFT_REDIRECT, NFT_TPROXY };

struct nft_prefix {
	int family;           /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	unsigned len;         /* prefix length */
};

struct nft_spec {
	enum nft_method method;
	char ifaces[NFT_MAX_IFACES][IFNAMSIZ]; /* LAN (ingress) interfaces */
	size_t nifaces;
	bool local;           /* also the gateway's own port-25 connections */
	uint32_t exempt_mark; /* our upstream sockets' mark: never redirected */
	uint32_t tproxy_mark; /* set on tproxied packets for policy routing */
	uint16_t port;        /* where redirected connections go */
	struct nft_prefix bypass[NFT_MAX_BYPASS]; /* never intercepted */
	size_t nbypass;
};

/* "198.51.100.0/24", "2001:db8::/32", "203.0.113.7" → prefix. 0 or -1. */
int nft_parse_prefix(const char *s, struct nft_prefix *out);

/*
 * Install the table, replacing any (stale) one, in a single transaction.
 * On failure err says which step failed and why; nothing is changed.
 */
int nft_install(const struct nft_spec *spec, char *err, size_t errlen);

/* Replace the bypass sets' contents only (one transaction). */
int nft_update_bypass(const struct nft_spec *spec, char *err, size_t errlen);

/* Delete the table; a table already gone is not an error. */
int nft_remove(char *err, size_t errlen);

/* The equivalent nft(8) script, for review (--print-ruleset). */
void nft_print(const struct nft_spec *spec, FILE *fp);

#endif
