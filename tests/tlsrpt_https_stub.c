/*
 * Until proxy/https.c (branch h-sts) is merged: starttlsd-tlsrpt links this
 * instead (Makefile, TLSRPT_HTTPS_STUB), so https: reports fail with
 * "cannot start" and mailto: ones work. Unused, and deletable, once
 * proxy/https.c exists.
 */
#include <stddef.h>
#include <string.h>

#include "starttlsd/https.h"

struct https_client *
https_start(struct ev_loop *loop, struct resolver *res,
    const struct https_req *req, https_cb cb, void *arg)
{
	(void)loop; (void)res; (void)req; (void)cb; (void)arg;
	return NULL;
}

void
https_cancel(struct https_client *c)
{
	(void)c;
}

const char *
https_result_str(enum https_result r)
{
	(void)r;
	return "https not built in";
}

int
https_type_is(const char *content_type, const char *media_type)
{
	return content_type != NULL && media_type != NULL &&
	    strcmp(content_type, media_type) == 0;
}
