#ifndef STARTTLSD_OWNPORT_H
#define STARTTLSD_OWNPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/*
 * ownport: loop detection across worker processes: a table in shared
 * memory (set up once, before the workers are forked) of the local ports
 * of our upstream connections, each with a hash of where it goes. A connection
 * accepted from a local port in the table, going to that destination, is
 * our own upstream connection redirected back to us.
 */
int ownport_init(size_t nslots);
/* In a worker: its slot (see sess_shared_use). In the master: reap/spawn. */
void ownport_use(size_t slot);
void ownport_reset(size_t slot);
/*
 * Waits only while another worker is inside connect() towards dst (the
 * looped connection can be accepted before that worker has published its
 * port): a few system calls' time, unless that worker is descheduled, as
 * happens under load or valgrind. The bound is for a worker stuck there;
 * a dead one's slot is reset by the master.
 */
#define OWNPORT_WAIT 0.5
bool ownport_is_own(const struct sockaddr_storage *peer,
    const struct sockaddr_storage *dst);
/* What upstream does with them (public for the tests): */
/* publish (on) or withdraw our connection local → dst, for this slot; */
void ownport_publish(const struct sockaddr_storage *local,
    const struct sockaddr_storage *dst, bool on);
/* "a connect() towards dst is in flight in this slot" (NULL: over). */
void ownport_connecting(const struct sockaddr_storage *dst);

#endif
