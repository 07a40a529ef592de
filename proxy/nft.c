/*
 * nft: build the interception table with libnftnl and send it in one
 * netlink batch. The batch always starts with "add table; delete table;
 * add table", so a stale table from a crashed run is replaced atomically
 * and a failure anywhere leaves the previous state untouched.
 *
 * Every message asks for an ACK; each carries a sequence number that maps
 * back to a human description of the step, so a kernel error is reported
 * as "add chain output: Operation not permitted".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/rtnetlink.h>

#include "starttlsd/nft.h"

#define NFT_BATCH_BYTES (256 * 1024)
#define NFT_MAX_STEPS 128
#define NFT_SET4 "bypass4"
#define NFT_SET6 "bypass6"
#define NFT_TYPE_IPADDR 7  /* nft(8) datatype ids, shown by "nft list" */
#define NFT_TYPE_IP6ADDR 8
#define NFT_PRIO_DSTNAT (-100)
#define NFT_PRIO_MANGLE (-150)

struct nft_batch {
	char *buf;
	struct mnl_nlmsg_batch *b;
	uint32_t seq0, seq;
	const char *step[NFT_MAX_STEPS]; /* by seq - seq0 */
	size_t nsteps;
	bool overflow;
};

static int
batch_init(struct nft_batch *nb)
{
	memset(nb, 0, sizeof(*nb));
	/* Zeroed: the netlink padding that libnftnl skips goes to the kernel. */
	if ((nb->buf = calloc(1, NFT_BATCH_BYTES)) == NULL)
		return -1;
	nb->b = mnl_nlmsg_batch_start(nb->buf, NFT_BATCH_BYTES);
	nb->seq0 = nb->seq = (uint32_t)time(NULL);
	/* A failure here (no CAP_NET_ADMIN) is reported against the begin. */
	nb->step[0] = "begin transaction";
	nftnl_batch_begin(mnl_nlmsg_batch_current(nb->b), nb->seq++);
	mnl_nlmsg_batch_next(nb->b);
	return 0;
}

static void
batch_free(struct nft_batch *nb)
{
	if (nb->b != NULL)
		mnl_nlmsg_batch_stop(nb->b);
	free(nb->buf);
}

/* Start one message; its seq remembers what it does. */
static struct nlmsghdr *
batch_msg(struct nft_batch *nb, uint16_t type, uint16_t flags, const char *step)
{
	struct nlmsghdr *nlh;

	if (nb->nsteps == NFT_MAX_STEPS ||
	    NFT_BATCH_BYTES - mnl_nlmsg_batch_size(nb->b) < 8192) {
		nb->overflow = true;
		return NULL;
	}
	nb->step[nb->seq - nb->seq0] = step;
	nb->nsteps++;
	nlh = nftnl_nlmsg_build_hdr(mnl_nlmsg_batch_current(nb->b), type,
	    NFPROTO_INET, flags | NLM_F_ACK, nb->seq++);
	return nlh;
}

static void
batch_next(struct nft_batch *nb)
{
	mnl_nlmsg_batch_next(nb->b);
}

static const char *
seq_step(const struct nft_batch *nb, uint32_t seq)
{
	if (seq >= nb->seq0 && seq - nb->seq0 < NFT_MAX_STEPS &&
	    nb->step[seq - nb->seq0] != NULL)
		return nb->step[seq - nb->seq0];
	return "batch";
}

/*
 * Send the batch and collect one ACK per message. ok_enoent: a missing
 * object is fine (removal of a table that is already gone).
 */
static int
batch_send(struct nft_batch *nb, bool ok_enoent, char *err, size_t errlen)
{
	struct mnl_socket *nl;
	char rbuf[65536];
	struct timeval tv = { .tv_sec = 5 };
	size_t acks = 0;
	uint32_t portid;
	int rc = 0;

	if (nb->overflow) {
		snprintf(err, errlen, "nftables: too many rules for one batch");
		return -1;
	}
	nftnl_batch_end(mnl_nlmsg_batch_current(nb->b), nb->seq++);
	mnl_nlmsg_batch_next(nb->b);

	if ((nl = mnl_socket_open(NETLINK_NETFILTER)) == NULL) {
		snprintf(err, errlen, "nftables: netlink socket: %s",
		    strerror(errno));
		return -1;
	}
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		snprintf(err, errlen, "nftables: netlink bind: %s",
		    strerror(errno));
		mnl_socket_close(nl);
		return -1;
	}
	portid = mnl_socket_get_portid(nl);
	setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVTIMEO, &tv,
	    sizeof(tv));
	if (mnl_socket_sendto(nl, mnl_nlmsg_batch_head(nb->b),
	    mnl_nlmsg_batch_size(nb->b)) < 0) {
		snprintf(err, errlen, "nftables: send: %s", strerror(errno));
		mnl_socket_close(nl);
		return -1;
	}
	while (acks < nb->nsteps) {
		ssize_t n = mnl_socket_recvfrom(nl, rbuf, sizeof(rbuf));
		struct nlmsghdr *h;
		int len;

		if (n < 0) {
			if (rc == 0)
				snprintf(err, errlen, "nftables: no answer from "
				    "the kernel: %s", strerror(errno));
			rc = -1;
			break;
		}
		len = (int)n;
		for (h = (struct nlmsghdr *)(void *)rbuf; mnl_nlmsg_ok(h, len);
		    h = mnl_nlmsg_next(h, &len)) {
			const struct nlmsgerr *e;

			if (h->nlmsg_pid != portid)
				continue;
			if (h->nlmsg_type != NLMSG_ERROR)
				continue;
			acks++;
			e = mnl_nlmsg_get_payload(h);
			if (e->error == 0 || (ok_enoent && e->error == -ENOENT))
				continue;
			/* Keep the first failure: later ones follow from it. */
			if (rc == 0)
				snprintf(err, errlen, "nftables: %s: %s",
				    seq_step(nb, h->nlmsg_seq),
				    strerror(-e->error));
			rc = -1;
		}
		/*
		 * After a failure the kernel may not answer the rest (a
		 * refused batch begin stops it): do not wait for them.
		 */
		if (rc < 0)
			break;
	}
	mnl_socket_close(nl);
	return rc;
}

/* ---- objects ------------------------------------------------------------ */

static void
add_table(struct nft_batch *nb, uint16_t type, uint16_t flags, const char *step)
{
	struct nftnl_table *t = nftnl_table_alloc();
	struct nlmsghdr *nlh;

	nftnl_table_set_str(t, NFTNL_TABLE_NAME, NFT_TABLE);
	nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, NFPROTO_INET);
	if ((nlh = batch_msg(nb, type, flags, step)) != NULL) {
		nftnl_table_nlmsg_build_payload(nlh, t);
		batch_next(nb);
	}
	nftnl_table_free(t);
}

static void
add_chain(struct nft_batch *nb, const char *name, const char *type,
    uint32_t hook, int prio, const char *step)
{
	struct nftnl_chain *c = nftnl_chain_alloc();
	struct nlmsghdr *nlh;

	nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, NFT_TABLE);
	nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name);
	nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, type);
	nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, hook);
	nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, prio);
	nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
	if ((nlh = batch_msg(nb, NFT_MSG_NEWCHAIN, NLM_F_CREATE, step)) != NULL) {
		nftnl_chain_nlmsg_build_payload(nlh, c);
		batch_next(nb);
	}
	nftnl_chain_free(c);
}

static uint32_t
set_id(int family)
{
	return family == AF_INET ? 1 : 2;
}

static void
add_set(struct nft_batch *nb, int family, const char *step)
{
	struct nftnl_set *s = nftnl_set_alloc();
	struct nlmsghdr *nlh;

	nftnl_set_set_str(s, NFTNL_SET_TABLE, NFT_TABLE);
	nftnl_set_set_str(s, NFTNL_SET_NAME, family == AF_INET ? NFT_SET4 : NFT_SET6);
	nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_INET);
	nftnl_set_set_u32(s, NFTNL_SET_FLAGS, NFT_SET_INTERVAL);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, family == AF_INET ?
	    NFT_TYPE_IPADDR : NFT_TYPE_IP6ADDR);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, family == AF_INET ? 4 : 16);
	nftnl_set_set_u32(s, NFTNL_SET_ID, set_id(family));
	if ((nlh = batch_msg(nb, NFT_MSG_NEWSET, NLM_F_CREATE, step)) != NULL) {
		nftnl_set_nlmsg_build_payload(nlh, s);
		batch_next(nb);
	}
	nftnl_set_free(s);
}

/* The first address after the prefix (interval end); false if it wraps. */
static bool
prefix_end(const struct nft_prefix *p, uint8_t *out, size_t alen)
{
	memcpy(out, p->addr, alen);
	/* Host bits to one, then add one with carry. */
	for (size_t bit = p->len; bit < alen * 8; bit++)
		out[bit / 8] |= (uint8_t)(0x80 >> (bit % 8));
	for (size_t i = alen; i-- > 0;) {
		if (++out[i] != 0)
			return true;
	}
	return false;
}

static void
add_elems(struct nft_batch *nb, const struct nft_spec *spec, int family,
    const char *step)
{
	struct nftnl_set *s = nftnl_set_alloc();
	struct nlmsghdr *nlh;
	size_t alen = family == AF_INET ? 4 : 16, n = 0;

	nftnl_set_set_str(s, NFTNL_SET_TABLE, NFT_TABLE);
	nftnl_set_set_str(s, NFTNL_SET_NAME, family == AF_INET ? NFT_SET4 : NFT_SET6);
	nftnl_set_set_u32(s, NFTNL_SET_ID, set_id(family));
	for (size_t i = 0; i < spec->nbypass; i++) {
		const struct nft_prefix *p = &spec->bypass[i];
		struct nftnl_set_elem *e;
		uint8_t end[16];

		if (p->family != family)
			continue;
		e = nftnl_set_elem_alloc();
		nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, p->addr, (uint32_t)alen);
		nftnl_set_elem_add(s, e);
		/* Intervals are [start, end): end carries INTERVAL_END. */
		if (prefix_end(p, end, alen)) {
			e = nftnl_set_elem_alloc();
			nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, end, (uint32_t)alen);
			nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_FLAGS,
			    NFT_SET_ELEM_INTERVAL_END);
			nftnl_set_elem_add(s, e);
		}
		n++;
	}
	if (n > 0 && (nlh = batch_msg(nb, NFT_MSG_NEWSETELEM, NLM_F_CREATE,
	    step)) != NULL) {
		nftnl_set_elems_nlmsg_build_payload(nlh, s);
		batch_next(nb);
	}
	nftnl_set_free(s);
}

/* ---- expressions ---------------------------------------------------------- */

static void
e_meta_load(struct nftnl_rule *r, uint32_t key)
{
	struct nftnl_expr *e = nftnl_expr_alloc("meta");
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
	nftnl_rule_add_expr(r, e);
}

static void
e_meta_set(struct nftnl_rule *r, uint32_t key)
{
	struct nftnl_expr *e = nftnl_expr_alloc("meta");
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_SREG, NFT_REG_1);
	nftnl_rule_add_expr(r, e);
}

static void
e_cmp_eq(struct nftnl_rule *r, const void *data, uint32_t len)
{
	struct nftnl_expr *e = nftnl_expr_alloc("cmp");
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, NFT_CMP_EQ);
	nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
	nftnl_rule_add_expr(r, e);
}

static void
e_payload(struct nftnl_rule *r, uint32_t base, uint32_t off, uint32_t len)
{
	struct nftnl_expr *e = nftnl_expr_alloc("payload");
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, off);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
	nftnl_rule_add_expr(r, e);
}

static void
e_imm_data(struct nftnl_rule *r, const void *data, uint32_t len)
{
	struct nftnl_expr *e = nftnl_expr_alloc("immediate");
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_1);
	nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, data, len);
	nftnl_rule_add_expr(r, e);
}

static void
e_verdict(struct nftnl_rule *r, int verdict)
{
	struct nftnl_expr *e = nftnl_expr_alloc("immediate");
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, (uint32_t)verdict);
	nftnl_rule_add_expr(r, e);
}

static void
e_lookup(struct nftnl_rule *r, int family)
{
	struct nftnl_expr *e = nftnl_expr_alloc("lookup");
	nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
	nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET,
	    family == AF_INET ? NFT_SET4 : NFT_SET6);
	nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, set_id(family));
	nftnl_rule_add_expr(r, e);
}

/* "meta l4proto tcp tcp dport 25" */
static void
e_tcp_dport25(struct nftnl_rule *r)
{
	uint8_t tcp = IPPROTO_TCP;
	uint16_t port = htons(25);

	e_meta_load(r, NFT_META_L4PROTO);
	e_cmp_eq(r, &tcp, sizeof(tcp));
	e_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
	e_cmp_eq(r, &port, sizeof(port));
}

static void
e_iifname(struct nftnl_rule *r, const char *name, uint32_t key)
{
	char ifname[IFNAMSIZ] = { 0 };

	/* Compared with its NUL: "lan0" must not match "lan01". */
	snprintf(ifname, sizeof(ifname), "%s", name);
	e_meta_load(r, key);
	e_cmp_eq(r, ifname, (uint32_t)strlen(ifname) + 1);
}

static struct nftnl_rule *
rule_new(const char *chain)
{
	struct nftnl_rule *r = nftnl_rule_alloc();
	nftnl_rule_set_str(r, NFTNL_RULE_TABLE, NFT_TABLE);
	nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
	nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, NFPROTO_INET);
	return r;
}

static void
rule_add(struct nft_batch *nb, struct nftnl_rule *r, const char *step)
{
	struct nlmsghdr *nlh = batch_msg(nb, NFT_MSG_NEWRULE,
	    NLM_F_CREATE | NLM_F_APPEND, step);

	if (nlh != NULL) {
		nftnl_rule_nlmsg_build_payload(nlh, r);
		batch_next(nb);
	}
	nftnl_rule_free(r);
}

/*
 * "fib daddr type local return": connections to the gateway's own addresses
 * (an MTA running on it) are never taken. Relayed, that MTA would see the
 * gateway as the client, and one that trusts its own host (Postfix's
 * mynetworks) would take every LAN host for a trusted relay client.
 */
static void
rule_local_exempt(struct nft_batch *nb, const char *chain, const char *step)
{
	struct nftnl_rule *r = rule_new(chain);
	struct nftnl_expr *e = nftnl_expr_alloc("fib");
	uint32_t local = RTN_LOCAL;

	nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_FLAGS, NFTA_FIB_F_DADDR);
	nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
	nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_DREG, NFT_REG_1);
	nftnl_rule_add_expr(r, e);
	e_cmp_eq(r, &local, sizeof(local));
	e_verdict(r, NFT_RETURN);
	rule_add(nb, r, step);
}

/* "meta nfproto ipv4 ip daddr @bypass4 return" (and the IPv6 one). */
static void
rule_bypass(struct nft_batch *nb, const char *chain, int family)
{
	struct nftnl_rule *r = rule_new(chain);
	uint8_t proto = family == AF_INET ? NFPROTO_IPV4 : NFPROTO_IPV6;

	e_meta_load(r, NFT_META_NFPROTO);
	e_cmp_eq(r, &proto, sizeof(proto));
	e_payload(r, NFT_PAYLOAD_NETWORK_HEADER, family == AF_INET ? 16 : 24,
	    family == AF_INET ? 4 : 16);
	e_lookup(r, family);
	e_verdict(r, NFT_RETURN);
	rule_add(nb, r, family == AF_INET ? "add rule bypass4" :
	    "add rule bypass6");
}

static void
rule_redirect(struct nft_batch *nb, const char *chain, const char *iif,
    uint16_t port, const char *step)
{
	struct nftnl_rule *r = rule_new(chain);
	uint16_t p = htons(port);
	struct nftnl_expr *e;

	if (iif != NULL)
		e_iifname(r, iif, NFT_META_IIFNAME);
	e_tcp_dport25(r);
	e_imm_data(r, &p, sizeof(p));
	e = nftnl_expr_alloc("redir");
	nftnl_expr_set_u32(e, NFTNL_EXPR_REDIR_REG_PROTO_MIN, NFT_REG_1);
	nftnl_rule_add_expr(r, e);
	rule_add(nb, r, step);
}

static void
rule_tproxy(struct nft_batch *nb, const char *iif, uint16_t port,
    uint32_t mark, const char *step)
{
	struct nftnl_rule *r = rule_new("divert");
	uint16_t p = htons(port);
	struct nftnl_expr *e;

	e_iifname(r, iif, NFT_META_IIFNAME);
	e_tcp_dport25(r);
	/* The mark routes the packet to the local stack (policy routing). */
	e_imm_data(r, &mark, sizeof(mark));
	e_meta_set(r, NFT_META_MARK);
	e_imm_data(r, &p, sizeof(p));
	e = nftnl_expr_alloc("tproxy");
	nftnl_expr_set_u32(e, NFTNL_EXPR_TPROXY_FAMILY, NFPROTO_UNSPEC);
	nftnl_expr_set_u32(e, NFTNL_EXPR_TPROXY_REG_PORT, NFT_REG_1);
	nftnl_rule_add_expr(r, e);
	e_verdict(r, NF_ACCEPT);
	rule_add(nb, r, step);
}

/*
 * "meta l4proto tcp socket transparent 1 meta mark set MARK accept": packets
 * of connections a transparent socket already owns (intercepted ones, and
 * with transparent_source the servers' replies to the client's address) go
 * to the local stack without another tproxy lookup.
 */
static void
rule_socket_transparent(struct nft_batch *nb, uint32_t mark)
{
	struct nftnl_rule *r = rule_new("divert");
	uint8_t tcp = IPPROTO_TCP, one = 1;
	struct nftnl_expr *e;

	e_meta_load(r, NFT_META_L4PROTO);
	e_cmp_eq(r, &tcp, sizeof(tcp));
	e = nftnl_expr_alloc("socket");
	nftnl_expr_set_u32(e, NFTNL_EXPR_SOCKET_KEY, NFT_SOCKET_TRANSPARENT);
	nftnl_expr_set_u32(e, NFTNL_EXPR_SOCKET_DREG, NFT_REG_1);
	nftnl_rule_add_expr(r, e);
	e_cmp_eq(r, &one, sizeof(one));
	e_imm_data(r, &mark, sizeof(mark));
	e_meta_set(r, NFT_META_MARK);
	e_verdict(r, NF_ACCEPT);
	rule_add(nb, r, "add rule divert socket transparent");
}

/* "meta mark MARK return" / "oifname lo return" for the output chain. */
static void
rule_output_exempt(struct nft_batch *nb, uint32_t mark)
{
	struct nftnl_rule *r;

	if (mark != 0) {
		r = rule_new("output");
		e_meta_load(r, NFT_META_MARK);
		e_cmp_eq(r, &mark, sizeof(mark));
		e_verdict(r, NFT_RETURN);
		rule_add(nb, r, "add rule output mark exemption");
	}
	r = rule_new("output");
	e_iifname(r, "lo", NFT_META_OIFNAME);
	e_verdict(r, NFT_RETURN);
	rule_add(nb, r, "add rule output loopback exemption");
}

/* ---- public --------------------------------------------------------------- */

int
nft_parse_prefix(const char *s, struct nft_prefix *out)
{
	char addr[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned maxlen;

	memset(out, 0, sizeof(*out));
	if (alen == 0 || alen >= sizeof(addr))
		return -1;
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET, addr, out->addr) == 1) {
		out->family = AF_INET;
		maxlen = 32;
	} else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
		out->family = AF_INET6;
		maxlen = 128;
	} else {
		return -1;
	}
	out->len = maxlen;
	if (slash != NULL) {
		char *end;
		unsigned long l;

		if (slash[1] < '0' || slash[1] > '9')
			return -1;
		l = strtoul(slash + 1, &end, 10);
		if (*end != '\0' || l > maxlen)
			return -1;
		out->len = (unsigned)l;
	}
	/* Host bits must be zero: "198.51.100.1/24" is a mistake worth naming. */
	for (unsigned bit = out->len; bit < maxlen; bit++)
		if (out->addr[bit / 8] & (0x80 >> (bit % 8)))
			return -1;
	return 0;
}

static void
build_table(struct nft_batch *nb, const struct nft_spec *spec)
{
	/* Replace whatever is there: add (so delete cannot fail), delete, add. */
	add_table(nb, NFT_MSG_NEWTABLE, NLM_F_CREATE, "add table");
	add_table(nb, NFT_MSG_DELTABLE, 0, "replace stale table");
	add_table(nb, NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_EXCL, "create table");
	add_set(nb, AF_INET, "add set bypass4");
	add_set(nb, AF_INET6, "add set bypass6");
	add_elems(nb, spec, AF_INET, "add bypass4 elements");
	add_elems(nb, spec, AF_INET6, "add bypass6 elements");

	if (spec->nifaces > 0 && spec->method == NFT_REDIRECT) {
		add_chain(nb, "prerouting", "nat", NF_INET_PRE_ROUTING,
		    NFT_PRIO_DSTNAT, "add chain prerouting (nat)");
		rule_local_exempt(nb, "prerouting",
		    "add rule prerouting local exemption");
		rule_bypass(nb, "prerouting", AF_INET);
		rule_bypass(nb, "prerouting", AF_INET6);
		for (size_t i = 0; i < spec->nifaces; i++)
			rule_redirect(nb, "prerouting", spec->ifaces[i],
			    spec->port, "add rule redirect");
	}
	if (spec->nifaces > 0 && spec->method == NFT_TPROXY) {
		add_chain(nb, "divert", "filter", NF_INET_PRE_ROUTING,
		    NFT_PRIO_MANGLE, "add chain divert (filter, mangle priority, tproxy)");
		rule_socket_transparent(nb, spec->tproxy_mark);
		rule_local_exempt(nb, "divert", "add rule divert local exemption");
		rule_bypass(nb, "divert", AF_INET);
		rule_bypass(nb, "divert", AF_INET6);
		for (size_t i = 0; i < spec->nifaces; i++)
			rule_tproxy(nb, spec->ifaces[i], spec->port,
			    spec->tproxy_mark, "add rule tproxy");
	}
	if (spec->local) {
		add_chain(nb, "output", "nat", NF_INET_LOCAL_OUT,
		    NFT_PRIO_DSTNAT, "add chain output (nat)");
		rule_output_exempt(nb, spec->exempt_mark);
		rule_local_exempt(nb, "output", "add rule output local exemption");
		rule_bypass(nb, "output", AF_INET);
		rule_bypass(nb, "output", AF_INET6);
		rule_redirect(nb, "output", NULL, spec->port,
		    "add rule output redirect");
	}
}

int
nft_install(const struct nft_spec *spec, char *err, size_t errlen)
{
	struct nft_batch nb;
	int rc;

	if (batch_init(&nb) < 0) {
		snprintf(err, errlen, "nftables: out of memory");
		return -1;
	}
	build_table(&nb, spec);
	rc = batch_send(&nb, false, err, errlen);
	batch_free(&nb);
	return rc;
}

int
nft_update_bypass(const struct nft_spec *spec, char *err, size_t errlen)
{
	struct nft_batch nb;
	int rc;

	if (batch_init(&nb) < 0) {
		snprintf(err, errlen, "nftables: out of memory");
		return -1;
	}
	for (int f = 0; f < 2; f++) {
		int family = f == 0 ? AF_INET : AF_INET6;
		struct nftnl_set *s = nftnl_set_alloc();
		struct nlmsghdr *nlh;

		nftnl_set_set_str(s, NFTNL_SET_TABLE, NFT_TABLE);
		nftnl_set_set_str(s, NFTNL_SET_NAME, family == AF_INET ?
		    NFT_SET4 : NFT_SET6);
		/* An element-less DELSETELEM flushes the set. */
		if ((nlh = batch_msg(&nb, NFT_MSG_DELSETELEM, 0, family == AF_INET ?
		    "flush set bypass4" : "flush set bypass6")) != NULL) {
			nftnl_set_elems_nlmsg_build_payload(nlh, s);
			batch_next(&nb);
		}
		nftnl_set_free(s);
		add_elems(&nb, spec, family, family == AF_INET ?
		    "add bypass4 elements" : "add bypass6 elements");
	}
	rc = batch_send(&nb, false, err, errlen);
	batch_free(&nb);
	return rc;
}

int
nft_remove(char *err, size_t errlen)
{
	struct nft_batch nb;
	int rc;

	if (batch_init(&nb) < 0) {
		snprintf(err, errlen, "nftables: out of memory");
		return -1;
	}
	add_table(&nb, NFT_MSG_DELTABLE, 0, "delete table");
	rc = batch_send(&nb, true, err, errlen);
	batch_free(&nb);
	return rc;
}

static void
print_prefixes(const struct nft_spec *spec, int family, FILE *fp)
{
	char a[INET6_ADDRSTRLEN];
	bool first = true;

	for (size_t i = 0; i < spec->nbypass; i++) {
		if (spec->bypass[i].family != family)
			continue;
		inet_ntop(family, spec->bypass[i].addr, a, sizeof(a));
		fprintf(fp, "%s%s/%u", first ? "" : ", ", a, spec->bypass[i].len);
		first = false;
	}
}

static void
print_set(const struct nft_spec *spec, int family, FILE *fp)
{
	bool any = false;

	for (size_t i = 0; i < spec->nbypass; i++)
		any |= spec->bypass[i].family == family;
	fprintf(fp, "\tset %s {\n\t\ttype %s\n\t\tflags interval\n",
	    family == AF_INET ? NFT_SET4 : NFT_SET6,
	    family == AF_INET ? "ipv4_addr" : "ipv6_addr");
	if (any) {
		fprintf(fp, "\t\telements = { ");
		print_prefixes(spec, family, fp);
		fprintf(fp, " }\n");
	}
	fprintf(fp, "\t}\n\n");
}

void
nft_print(const struct nft_spec *spec, FILE *fp)
{
	fprintf(fp, "# starttlsd interception, as installed in one transaction\n");
	fprintf(fp, "table inet %s\n", NFT_TABLE);
	fprintf(fp, "delete table inet %s\n", NFT_TABLE);
	fprintf(fp, "table inet %s {\n", NFT_TABLE);
	print_set(spec, AF_INET, fp);
	print_set(spec, AF_INET6, fp);
	if (spec->nifaces > 0 && spec->method == NFT_REDIRECT) {
		fprintf(fp, "\tchain prerouting {\n\t\ttype nat hook prerouting "
		    "priority dstnat; policy accept;\n");
		fprintf(fp, "\t\tfib daddr type local return\n");
		fprintf(fp, "\t\tip daddr @%s return\n\t\tip6 daddr @%s return\n",
		    NFT_SET4, NFT_SET6);
		for (size_t i = 0; i < spec->nifaces; i++)
			fprintf(fp, "\t\tiifname \"%s\" tcp dport 25 redirect to :%u\n",
			    spec->ifaces[i], spec->port);
		fprintf(fp, "\t}\n");
	}
	if (spec->nifaces > 0 && spec->method == NFT_TPROXY) {
		fprintf(fp, "\tchain divert {\n\t\ttype filter hook prerouting "
		    "priority mangle; policy accept;\n");
		fprintf(fp, "\t\tmeta l4proto tcp socket transparent 1 meta mark "
		    "set 0x%x accept\n", spec->tproxy_mark);
		fprintf(fp, "\t\tfib daddr type local return\n");
		fprintf(fp, "\t\tip daddr @%s return\n\t\tip6 daddr @%s return\n",
		    NFT_SET4, NFT_SET6);
		for (size_t i = 0; i < spec->nifaces; i++)
			fprintf(fp, "\t\tiifname \"%s\" tcp dport 25 meta mark set "
			    "0x%x tproxy to :%u accept\n", spec->ifaces[i],
			    spec->tproxy_mark, spec->port);
		fprintf(fp, "\t}\n");
	}
	if (spec->local) {
		/* nft 1.0 knows "dstnat" for prerouting only: say -100. */
		fprintf(fp, "\tchain output {\n\t\ttype nat hook output "
		    "priority -100; policy accept;\n");
		if (spec->exempt_mark != 0)
			fprintf(fp, "\t\tmeta mark 0x%x return\n", spec->exempt_mark);
		fprintf(fp, "\t\toifname \"lo\" return\n");
		fprintf(fp, "\t\tfib daddr type local return\n");
		fprintf(fp, "\t\tip daddr @%s return\n\t\tip6 daddr @%s return\n",
		    NFT_SET4, NFT_SET6);
		fprintf(fp, "\t\ttcp dport 25 redirect to :%u\n\t}\n", spec->port);
	}
	fprintf(fp, "}\n");
}
