/*
 * upcache: parked upstream connections (see upcache.h).
 *
 * One list per worker, newest first. An entry is RESETTING (our RSET is
 * out, its 250 awaited) or IDLE (reading, so that a server closing or
 * speaking up is noticed at once). Anything unexpected closes the entry.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "starttlsd/addr.h"
#include "starttlsd/metrics.h"
#include "starttlsd/smtp.h"
#include "starttlsd/steer.h"
#include "starttlsd/upcache.h"

#define UPC_MAGIC 0x75706363u /* "upcc" */
#define UPC_REPLY_MAX 512     /* the RSET's reply: one short line */

enum upc_state { UPC_RESETTING, UPC_IDLE };

struct upc_entry {
	uint32_t magic;
	enum upc_state state;
	char key[UPC_KEY_MAX];
	struct upc_conn pc;
	unsigned idle;
	struct upc_entry *prev, *next;
};

static struct {
	struct ev_loop *loop;
	struct upc_entry *head;
	unsigned n;
} upc;

void
upc_key(char *out, size_t cap, const struct sockaddr_storage *dst,
    const struct sockaddr_storage *src)
{
	char d[80], a[INET6_ADDRSTRLEN] = "-";

	addr_str((const struct sockaddr *)dst, d, sizeof(d));
	if (src != NULL && (src->ss_family == AF_INET || src->ss_family == AF_INET6))
		inet_ntop(src->ss_family, src->ss_family == AF_INET ?
		    (const void *)&((const struct sockaddr_in *)(const void *)src)->sin_addr :
		    (const void *)&((const struct sockaddr_in6 *)(const void *)src)->sin6_addr,
		    a, sizeof(a));
	snprintf(out, cap, "%s|%s", d, a);
}

void
upc_init(struct ev_loop *loop)
{
	upc.loop = loop;
}

unsigned
upc_count(void)
{
	return upc.n;
}

static void
upc_unlink(struct upc_entry *e)
{
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		upc.head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	e->prev = e->next = NULL;
	upc.n--;
	steer_parked(e->key, -1);
	metrics_parked((int)upc.n);
}

/* Close a handed-over connection (a QUIT first when it is healthy). */
static void
upc_conn_close(struct upc_conn *pc, bool polite)
{
	if (pc->conn != NULL) {
		if (polite && pc->conn->state == CONN_S_OPEN) {
			static const char quit[] = "QUIT\r\n";
			if (conn_write(pc->conn, quit, sizeof(quit) - 1) == 0)
				conn_flush_now(pc->conn);
		}
		up_cleanup(&pc->up);
		conn_cleanup(pc->conn);
		free(pc->conn);
		pc->conn = NULL;
	}
	free(pc->greeting);
	pc->greeting = NULL;
}

static void
upc_close(struct upc_entry *e, bool polite)
{
	upc_unlink(e);
	upc_conn_close(&e->pc, polite);
	e->magic = 0;
	free(e);
}

/* The RSET's reply, or anything the server says while the entry is idle. */
static int
upc_on_read(struct upc_entry *e)
{
	struct conn *c = e->pc.conn;
	struct smtp_reply rep;

	if (e->state == UPC_IDLE) {
		/* Unasked: a 421 at its idle timeout, typically. */
		upc_close(e, false);
		return -1;
	}
	switch (smtp_reply_parse(buf_head(&c->in), buf_len(&c->in),
	    UPC_REPLY_MAX, 4, &rep)) {
	case SMTP_PARSE_NEED_MORE:
		if (buf_len(&c->in) < UPC_REPLY_MAX)
			return 0;
		/* FALLTHROUGH */
	case SMTP_PARSE_ERROR:
		upc_close(e, false);
		return -1;
	case SMTP_PARSE_OK:
		break;
	}
	if (rep.code != 250 || rep.len != buf_len(&c->in)) {
		upc_close(e, false);
		return -1;
	}
	buf_consume(&c->in, rep.len);
	e->state = UPC_IDLE;
	conn_timeout(c, e->idle, false);
	conn_trim(c);
	return 0;
}

static int
upc_conn_cb(struct conn *c, enum conn_event ev, void *arg)
{
	struct upc_entry *e = arg;

	assert(e->magic == UPC_MAGIC && c == e->pc.conn);
	switch (ev) {
	case CONN_EV_READ:
		return upc_on_read(e);
	case CONN_EV_TIMEOUT:
		/* Idle for long enough: a QUIT, as a polite client does. */
		upc_close(e, e->state == UPC_IDLE);
		return -1;
	case CONN_EV_EOF:
	case CONN_EV_ERROR:
		upc_close(e, false);
		return -1;
	case CONN_EV_DRAINED:
	case CONN_EV_CONNECTED:
	case CONN_EV_TLS_DONE:
		return 0;
	}
	return 0;
}

static unsigned
upc_count_key(const char *key, struct upc_entry **oldest)
{
	unsigned n = 0;

	*oldest = NULL;
	for (struct upc_entry *e = upc.head; e != NULL; e = e->next)
		if (key == NULL || strcmp(e->key, key) == 0) {
			n++;
			*oldest = e; /* the list is newest first */
		}
	return n;
}

void
upc_park(const struct upc_params *p, const char *key, struct upc_conn *pc)
{
	struct upc_entry *e, *old;
	ev_tstamp now = upc.loop != NULL ? ev_now(upc.loop) : 0;

	if (!p->on || upc.loop == NULL || pc->conn == NULL || pc->conn->state != CONN_S_OPEN ||
	    pc->uses >= p->max_uses || now - pc->born >= p->max_age ||
	    p->per_key == 0 || p->max == 0 || strlen(key) >= UPC_KEY_MAX ||
	    (e = calloc(1, sizeof(*e))) == NULL) {
		upc_conn_close(pc, true);
		memset(pc, 0, sizeof(*pc));
		return;
	}
	/* Bounded: the oldest parked one goes first. */
	while (upc_count_key(key, &old) >= p->per_key && old != NULL)
		upc_close(old, true);
	while (upc_count_key(NULL, &old) >= p->max && old != NULL)
		upc_close(old, true);
	e->magic = UPC_MAGIC;
	e->state = UPC_RESETTING;
	e->idle = p->idle;
	snprintf(e->key, sizeof(e->key), "%s", key);
	e->pc = *pc;
	memset(pc, 0, sizeof(*pc));
	e->next = upc.head;
	if (upc.head != NULL)
		upc.head->prev = e;
	upc.head = e;
	upc.n++;
	steer_parked(e->key, +1);
	metrics_parked((int)upc.n);
	/* Whatever the last client left on the server side goes. */
	conn_cork(e->pc.conn, false);
	conn_set_cb(e->pc.conn, upc_conn_cb, e);
	buf_clear(&e->pc.conn->in);
	if (conn_write(e->pc.conn, "RSET\r\n", 6) < 0) {
		upc_close(e, false);
		return;
	}
	conn_read(e->pc.conn, true);
	conn_timeout(e->pc.conn, p->reply_timeout, false);
}

/* Idle, and nothing from the server since: no close, no 421 on the way. */
static bool
upc_alive(struct upc_entry *e)
{
	struct conn *c = e->pc.conn;
	char b;
	ssize_t r;

	if (e->state != UPC_IDLE || c->state != CONN_S_OPEN || c->eof ||
	    c->error_pending || buf_len(&c->in) > 0 || buf_len(&c->tls_in) > 0 ||
	    (c->ssl != NULL && SSL_pending(c->ssl) > 0))
		return false;
	r = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

bool
upc_take(const struct upc_params *p, const char *key, struct upc_conn *out)
{
	struct upc_entry *e, *next;
	ev_tstamp now;

	if (!p->on || upc.loop == NULL)
		return false; /* upc_init was not called: no cache here */
	now = ev_now(upc.loop);
	for (e = upc.head; e != NULL; e = next) {
		next = e->next;
		if (strcmp(e->key, key) != 0 || e->state != UPC_IDLE)
			continue;
		if (!upc_alive(e) || e->pc.uses >= p->max_uses ||
		    now - e->pc.born >= p->max_age) {
			upc_close(e, upc_alive(e));
			continue;
		}
		upc_unlink(e);
		*out = e->pc;
		conn_timeout(out->conn, 0, false);
		conn_read(out->conn, false);
		conn_set_cb(out->conn, NULL, NULL); /* the caller's, at once */
		e->magic = 0;
		free(e);
		return true;
	}
	return false;
}

void
upc_drop(const char *key)
{
	struct upc_entry *e, *next;

	for (e = upc.head; e != NULL; e = next) {
		next = e->next;
		if (key == NULL || strcmp(e->key, key) == 0)
			upc_close(e, e->state == UPC_IDLE);
	}
}
