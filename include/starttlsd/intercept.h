/*
 * intercept: the nftables table starttlsd owns when intercept = on, as the
 * daemon's master sees it: built from a configuration, installed at start,
 * brought in line on SIGHUP, removed at exit, each change logged
 * (event=intercept). The netlink work itself is proxy/nft.c.
 */
#ifndef STARTTLSD_INTERCEPT_H
#define STARTTLSD_INTERCEPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "starttlsd/config.h"
#include "starttlsd/nft.h"

/* The table configuration c asks for (whether or not c->intercept is on). */
void intercept_spec(const struct config *c, struct nft_spec *spec);

/* The same as an nft(8) script, for --print-ruleset. */
void intercept_print(const struct config *c, FILE *fp);

/*
 * Make the installed table what c asks for: none when c->intercept is off;
 * only the bypass sets when nothing else changed; else the whole table in
 * one transaction. 0, or -1 with err (what was installed stays).
 */
int intercept_reload(const struct config *c, char *err, size_t errlen);

/* Delete our table if we installed it (errors are logged). */
void intercept_remove(void);

/* After fork(): the table is the master's, never this process's to remove. */
void intercept_forget(void);

/* Whether this process installed the table and has not removed it. */
bool intercept_active(void);

#endif
