/*
 * env: what every session of one configuration shares (struct sess_env):
 * TLS contexts, the policy file, the smarthost address, the upstream
 * parameters. Built once per (re)load; reference-counted.
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "starttlsd/env.h"
#include "starttlsd/tls.h"

/* Turn a validated config into what sessions share. Takes cfg over. */
struct sess_env *
sess_env_new(struct config *cfg, struct pin_store *pins, char *err,
    size_t errlen)
{
	struct sess_env *e = calloc(1, sizeof(*e));

	if (e == NULL) {
		snprintf(err, errlen, "out of memory");
		config_free(cfg);
		return NULL;
	}
	e->refs = 1;
	e->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	if ((e->up_ctx = tls_upstream_ctx_new(&e->cfg, err, errlen)) == NULL)
		goto fail;
	if (e->cfg.client_cert != NULL &&
	    (e->client_ctx = tls_client_ctx_new(&e->cfg, err, errlen)) == NULL)
		goto fail;
	if (e->cfg.upstream != NULL) {
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
		char port[8];
		unsigned p;
		int r;

		config_split_hostport(e->cfg.upstream, e->upstream_host,
		    sizeof(e->upstream_host), &p);
		snprintf(port, sizeof(port), "%u", p);
		if ((r = getaddrinfo(e->upstream_host, port, &hints, &res)) != 0) {
			snprintf(err, errlen, "upstream: %s: %s", e->cfg.upstream,
			    gai_strerror(r));
			goto fail;
		}
		memcpy(&e->upstream_addr, res->ai_addr, res->ai_addrlen);
		e->upstream_len = res->ai_addrlen;
		freeaddrinfo(res);
	}
	e->mode = strcmp(e->cfg.mode, "enforce") == 0 ? POLICY_ENFORCE :
	    POLICY_MONITOR;
	if (e->cfg.policy_file != NULL &&
	    policy_load(e->cfg.policy_file, &e->policy, err, errlen) < 0) {
		char tmp[512];
		snprintf(tmp, sizeof(tmp), "policy_file: %s", err);
		snprintf(err, errlen, "%s", tmp);
		goto fail;
	}
	e->pins = pins;
	e->up = (struct up_params){
		.helo_name = e->cfg.helo_name,
		.ctx = e->up_ctx,
		.sni = NULL,
		.mark = e->cfg.upstream_mark,
		.transparent_source = e->cfg.transparent_source,
		.connect_timeout = e->cfg.connect_timeout,
		.greeting_timeout = e->cfg.greeting_timeout,
		.reply_timeout = e->cfg.reply_timeout,
		.tls_timeout = e->cfg.tls_timeout,
		.max_line = e->cfg.max_line_length,
		.max_lines = e->cfg.max_reply_lines,
		.bufmax = e->cfg.buffer_size,
	};
	e->upc = (struct upc_params){
		.on = e->cfg.upstream_cache,
		.idle = e->cfg.upstream_cache_idle,
		.max_age = e->cfg.upstream_cache_max_age,
		.max_uses = e->cfg.upstream_cache_max_uses,
		.per_key = e->cfg.upstream_cache_per_dst,
		.max = e->cfg.upstream_cache_max,
		.reply_timeout = e->cfg.reply_timeout < 30 ? e->cfg.reply_timeout : 30,
	};
	/* A smarthost given by name gets SNI and a name check (recorded). */
	if (e->upstream_len > 0) {
		struct sockaddr_storage tmp;
		socklen_t tl;
		char probe[300];
		snprintf(probe, sizeof(probe), "%s", e->cfg.upstream);
		if (config_parse_addr(probe, &tmp, &tl) < 0)
			e->up.sni = e->upstream_host;
	}
	return e;
fail:
	sess_env_unref(e);
	return NULL;
}

struct sess_env *
sess_env_ref(struct sess_env *e)
{
	e->refs++;
	return e;
}

void
sess_env_unref(struct sess_env *e)
{
	if (e == NULL || --e->refs > 0)
		return;
	SSL_CTX_free(e->up_ctx);
	SSL_CTX_free(e->client_ctx);
	policy_free(&e->policy);
	config_free(&e->cfg);
	free(e);
}
