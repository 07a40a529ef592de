/* env: what the sessions of one configuration share (proxy/env.c). */
#ifndef STARTTLSD_ENV_H
#define STARTTLSD_ENV_H

#include <sys/socket.h>

#include <openssl/ssl.h>

#include "starttlsd/config.h"
#include "starttlsd/pinstore.h"
#include "starttlsd/policy.h"
#include "starttlsd/upcache.h"
#include "starttlsd/upstream.h"

/*
 * What every session of one configuration shares. Reference-counted, so a
 * reload can swap in a new one while running sessions keep theirs.
 */
struct sess_env {
	unsigned refs;
	struct config cfg;        /* owned */
	SSL_CTX *up_ctx;          /* owned */
	SSL_CTX *client_ctx;      /* owned; NULL: no STARTTLS on the LAN leg */
	struct up_params up;
	struct upc_params upc;    /* the upstream connection cache */
	struct sockaddr_storage upstream_addr; /* smarthost mode */
	socklen_t upstream_len;   /* 0: transparent */
	char upstream_host[256];
	struct policy policy;     /* owned: the policy file */
	enum policy_mode mode;
	struct pin_store *pins;   /* borrowed, process-wide; NULL: none */
};

/*
 * Turn a validated configuration into what sessions share: TLS contexts,
 * the policy file, the smarthost address, the upstream parameters. Takes
 * cfg over (it is zeroed); pins is borrowed. NULL with err on failure.
 */
struct sess_env *sess_env_new(struct config *cfg, struct pin_store *pins,
    char *err, size_t errlen);
struct sess_env *sess_env_ref(struct sess_env *e);
void sess_env_unref(struct sess_env *e);

#endif
