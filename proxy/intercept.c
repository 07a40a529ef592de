/*
 * intercept: the nftables table of intercept = on, from configuration to
 * kernel (through proxy/nft.c) and to the log. Master only: a worker
 * forgets it right after fork().
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "starttlsd/intercept.h"
#include "starttlsd/log.h"

static struct {
	bool installed;           /* our table is in the kernel */
	struct nft_spec spec;     /* ...as this */
} st;

void
intercept_spec(const struct config *c, struct nft_spec *spec)
{
	struct sockaddr_storage ss;
	socklen_t sl;

	memset(spec, 0, sizeof(*spec));
	spec->method = c->intercept_method == CONFIG_INTERCEPT_TPROXY ?
	    NFT_TPROXY : NFT_REDIRECT;
	for (size_t i = 0; i < c->intercept_interfaces.n && i < NFT_MAX_IFACES; i++) {
		snprintf(spec->ifaces[i], sizeof(spec->ifaces[i]), "%s",
		    c->intercept_interfaces.item[i]);
		spec->nifaces++;
	}
	spec->local = c->intercept_local;
	spec->exempt_mark = c->upstream_mark;
	spec->tproxy_mark = c->tproxy_mark;
	/* Redirected connections go to the port of the first listener. */
	if (config_parse_addr(c->listen.item[0], &ss, &sl) == 0)
		spec->port = ntohs(ss.ss_family == AF_INET ?
		    ((struct sockaddr_in *)(void *)&ss)->sin_port :
		    ((struct sockaddr_in6 *)(void *)&ss)->sin6_port);
	for (size_t i = 0; i < c->intercept_bypass.n && i < NFT_MAX_BYPASS; i++)
		if (nft_parse_prefix(c->intercept_bypass.item[i],
		    &spec->bypass[spec->nbypass]) == 0)
			spec->nbypass++;
}

static void
log_intercept(const char *what)
{
	struct logline l;
	char ifs[NFT_MAX_IFACES * IFNAMSIZ] = "";

	size_t off = 0;

	/* Fits: NFT_MAX_IFACES names of under IFNAMSIZ bytes, each + a space. */
	for (size_t i = 0; i < st.spec.nifaces; i++)
		off += (size_t)snprintf(ifs + off, sizeof(ifs) - off, "%s%s",
		    i ? " " : "", st.spec.ifaces[i]);
	log_begin(&l, "intercept");
	log_str(&l, "action", what);
	log_str(&l, "table", "inet " NFT_TABLE);
	log_str(&l, "method", st.spec.method == NFT_TPROXY ? "tproxy" : "redirect");
	log_str(&l, "interfaces", ifs);
	log_str(&l, "local", st.spec.local ? "on" : "off");
	log_u64(&l, "bypass", st.spec.nbypass);
	log_u64(&l, "port", st.spec.port);
	log_emit(&l, LOG_INFO);
}

/* Take the interception table away, so a stopped proxy black-holes nothing. */
void
intercept_remove(void)
{
	char err[256];

	if (!st.installed)
		return;
	if (nft_remove(err, sizeof(err)) < 0)
		log_msg(LOG_ERR, "intercept", "cannot remove the table: %s", err);
	else
		log_intercept("removed");
	st.installed = false;
}

/*
 * Bring the interception table in line with a new configuration: only the
 * bypass sets when only they changed, else the whole table (atomically).
 */
int
intercept_reload(const struct config *c, char *err, size_t errlen)
{
	struct nft_spec spec;
	struct nft_spec old = st.spec;

	if (!c->intercept) {
		intercept_remove();
		return 0;
	}
	intercept_spec(c, &spec);
	if (st.installed) {
		old.nbypass = spec.nbypass;
		memcpy(old.bypass, spec.bypass, sizeof(old.bypass));
		if (memcmp(&old, &spec, sizeof(spec)) == 0) {
			/*
			 * If someone flushed the ruleset (nftables.service
			 * does on reload) the sets are gone: install anew.
			 */
			if (nft_update_bypass(&spec, err, errlen) < 0 &&
			    nft_install(&spec, err, errlen) < 0)
				return -1;
			st.spec = spec;
			log_intercept("updated");
			return 0;
		}
	}
	if (nft_install(&spec, err, errlen) < 0)
		return -1;
	st.spec = spec;
	st.installed = true;
	log_intercept("installed");
	return 0;
}

void
intercept_print(const struct config *c, FILE *fp)
{
	struct nft_spec spec;

	intercept_spec(c, &spec);
	nft_print(&spec, fp);
}

void
intercept_forget(void)
{
	st.installed = false;
}

bool
intercept_active(void)
{
	return st.installed;
}
