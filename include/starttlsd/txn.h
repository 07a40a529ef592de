/*
 * txn: the mail transaction state of one session, as the proxy sees it
 * (pure bookkeeping, no I/O): how many recipients the current transaction
 * has, how many were forwarded and how many refused by policy, and the
 * recipient domains of the current transaction and of the message whose
 * final reply is still to come (clients pipeline MAIL after the end of a
 * message). A domain is remembered until that message's final reply says
 * whether it was accepted (the input for learning domain pins).
 */
#ifndef STARTTLSD_TXN_H
#define STARTTLSD_TXN_H

#include <stdbool.h>
#include <stdint.h>

#define TXN_SLOTS 32 /* recipient domains remembered, for two messages */
#define TXN_DOMAIN_MAX 256

struct txn_dom {
	char name[TXN_DOMAIN_MAX];
	bool used;
	bool accepted;  /* the server said 2xx to a RCPT of it */
	uint8_t gen;    /* the transaction it belongs to */
};

struct txn {
	struct txn_dom *dom;       /* TXN_SLOTS, allocated on first use */
	uint8_t gen;               /* the current transaction */
	bool msg_pending;          /* a message's final reply is to come */
	uint8_t msg_gen;           /* ... that message's transaction */
	unsigned rcpts;            /* RCPTs in the current transaction */
	unsigned rcpt_forwarded;   /* ... sent to the server */
	unsigned rcpt_blocked;     /* ... refused here by policy */
};

/* MAIL or RSET: a new transaction. */
void txn_new(struct txn *t);
/* The end of a message was sent: returns its transaction (for txn_done). */
uint8_t txn_sent(struct txn *t);
/*
 * The slot (1-based) of a recipient domain of the current transaction, a
 * new one if needed; 0 when none is left (or no memory): then the domain
 * is simply not learnt.
 */
uint8_t txn_slot(struct txn *t, const char *domain);
/* The domain of slot (1-based), or NULL. */
const char *txn_domain(const struct txn *t, uint8_t slot);
/* The server accepted a RCPT of slot (1-based; 0 is ignored). */
void txn_accepted(struct txn *t, uint8_t slot);
/*
 * The final reply to message gen. If it was accepted, each(domain, arg) for
 * every domain of it the server accepted a recipient of; then its slots
 * are free.
 */
void txn_done(struct txn *t, uint8_t gen, bool accepted,
    void (*each)(const char *domain, void *arg), void *arg);
/* Every recipient so far was refused by policy: no DATA/BDAT may follow. */
static inline bool txn_all_refused(const struct txn *t)
{
	return t->rcpt_forwarded == 0 && t->rcpt_blocked > 0;
}
void txn_free(struct txn *t);

#endif
