/*
 * pdclient: a worker's side of the policy process (policyd.h). One
 * SOCK_SEQPACKET socket per worker, non-blocking under an ev_io; requests
 * carry a sequence number, each gets exactly one callback: policyd's answer,
 * or a TEMPFAIL made here when no answer can come (timeout, socket gone,
 * send refused). Never blocks, never links libunbound.
 *
 * Ownership: the worker owns the pdclient; a session owns its pending
 * request (its id) and must pdc_cancel it before it goes away.
 */
#ifndef STARTTLSD_PDCLIENT_H
#define STARTTLSD_PDCLIENT_H

#include <stdint.h>
#include <sys/socket.h>

#include "starttlsd/policyd.h"

struct ev_loop;
struct pdclient;

#define PDC_MAX_PENDING 1024   /* requests in flight per worker */

/*
 * The answer: policyd's, or one made here (dane = PD_DANE_TEMPFAIL,
 * dane_result = PD_R_VALIDATION_FAILURE, why saying what: "policy process
 * timeout", "policy process unavailable"). pol and everything it points to
 * are valid during the call only.
 */
typedef void (*pdc_cb)(void *arg, const struct pd_pol *pol);

/* Takes fd (a connected SOCK_SEQPACKET socket; made non-blocking here). */
struct pdclient *pdc_new(struct ev_loop *loop, int fd, unsigned timeout_ms);
void pdc_free(struct pdclient *c);

/*
 * A new socket after policyd was restarted: the old one is closed and
 * every request still pending is sent again on the new one.
 */
void pdc_set_fd(struct pdclient *c, int fd);

/*
 * Ask PD_POLICY (domain, dst) or PD_ADDR (dst; domain NULL). Returns the
 * request's id (never 0), or 0 when it cannot be asked (too many pending,
 * a name policyd would refuse): then cb is not called.
 */
uint32_t pdc_ask(struct pdclient *c, enum pd_kind kind, const char *domain,
    const struct sockaddr *dst, unsigned timeout_ms, pdc_cb cb, void *arg);

/* Forget a pending request: its callback never runs. 0 is ignored. */
void pdc_cancel(struct pdclient *c, uint32_t id);

/* Send one TLS-RPT result (no answer); dropped when the socket is full. */
void pdc_report(struct pdclient *c, const struct pd_report *r);

/* The dialled address in the wire form requests carry. */
void pdc_addr(const struct sockaddr *sa, struct pd_req_addr *out);

#endif
