/* txn: a session's mail transaction bookkeeping (see txn.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "starttlsd/txn.h"

/* Free the slots of transaction gen. */
static void
txn_release(struct txn *t, uint8_t gen)
{
	for (size_t i = 0; t->dom != NULL && i < TXN_SLOTS; i++)
		if (t->dom[i].used && t->dom[i].gen == gen)
			t->dom[i].used = false;
}

static void
txn_counts_reset(struct txn *t)
{
	t->rcpts = 0;
	t->rcpt_forwarded = t->rcpt_blocked = 0;
}

void
txn_new(struct txn *t)
{
	/* The current transaction's domains go, unless its message is out. */
	if (!t->msg_pending || t->msg_gen != t->gen)
		txn_release(t, t->gen);
	t->gen++;
	txn_counts_reset(t);
}

uint8_t
txn_sent(struct txn *t)
{
	t->msg_pending = true;
	t->msg_gen = t->gen;
	txn_counts_reset(t);
	return t->gen;
}

uint8_t
txn_slot(struct txn *t, const char *domain)
{
	size_t free_slot = TXN_SLOTS;

	if (t->dom == NULL &&
	    (t->dom = calloc(TXN_SLOTS, sizeof(*t->dom))) == NULL)
		return 0;
	for (size_t i = 0; i < TXN_SLOTS; i++) {
		if (!t->dom[i].used) {
			if (free_slot == TXN_SLOTS)
				free_slot = i;
			continue;
		}
		if (t->dom[i].gen == t->gen && strcmp(t->dom[i].name, domain) == 0)
			return (uint8_t)(i + 1);
	}
	if (free_slot == TXN_SLOTS || strlen(domain) >= TXN_DOMAIN_MAX)
		return 0;
	t->dom[free_slot] = (struct txn_dom){ .used = true, .gen = t->gen };
	snprintf(t->dom[free_slot].name, sizeof(t->dom[0].name), "%s", domain);
	return (uint8_t)(free_slot + 1);
}

const char *
txn_domain(const struct txn *t, uint8_t slot)
{
	if (slot == 0 || slot > TXN_SLOTS || t->dom == NULL ||
	    !t->dom[slot - 1].used)
		return NULL;
	return t->dom[slot - 1].name;
}

void
txn_accepted(struct txn *t, uint8_t slot)
{
	if (slot != 0 && slot <= TXN_SLOTS && t->dom != NULL)
		t->dom[slot - 1].accepted = true;
}

void
txn_done(struct txn *t, uint8_t gen, bool accepted,
    void (*each)(const char *domain, void *arg), void *arg)
{
	for (size_t i = 0; t->dom != NULL && i < TXN_SLOTS; i++) {
		struct txn_dom *d = &t->dom[i];
		if (!d->used || d->gen != gen)
			continue;
		if (accepted && d->accepted && each != NULL)
			each(d->name, arg);
		d->used = false;
	}
	if (t->msg_pending && t->msg_gen == gen)
		t->msg_pending = false;
}

void
txn_free(struct txn *t)
{
	free(t->dom);
	memset(t, 0, sizeof(*t));
}
