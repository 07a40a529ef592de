/* sesscount: session counts shared by all workers (proxy/sesscount.c). */
#ifndef STARTTLSD_SESSCOUNT_H
#define STARTTLSD_SESSCOUNT_H

#include <stddef.h>
#include <sys/socket.h>

/*
 * Counts shared by all workers (set up before they are forked): sessions
 * in all, and from one client address (port ignored).
 */
int sess_shared_init(size_t nslots);
/* This process counts in slot (a worker's index). */
void sess_shared_use(size_t slot);
/* A worker died: forget what its slot counted. */
void sess_shared_reset(size_t slot);
unsigned sess_count_all(void);
unsigned sess_count_client(const struct sockaddr_storage *peer);
/* A session from peer starts (+1) or ends (-1) in this process's slot. */
void sess_shared_add(const struct sockaddr_storage *peer, int delta);

#endif
