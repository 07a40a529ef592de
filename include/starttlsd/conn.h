/*
 * conn: one TCP leg of a session, plaintext or TLS. It owns the fd, the
 * input and output buffers, the SSL object, the libev watchers and a timer,
 * and is the only place that turns SSL_ERROR_WANT_READ/WRITE into watcher
 * changes. Protocol code sees events, never the socket.
 *
 * Callbacks return 0, or -1 when they freed the conn (or its owner): the
 * conn code then touches nothing more. A callback that cleans the conn up
 * (conn_cleanup) may return either: once a conn is cleaned up, no further
 * callback of the event being handled reaches its owner, even when the
 * owner re-initialised the same struct for a new connection meanwhile.
 */
#ifndef STARTTLSD_CONN_H
#define STARTTLSD_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <ev.h>
#include <openssl/ssl.h>

#include "starttlsd/buf.h"

enum conn_event {
	CONN_EV_CONNECTED, /* outgoing connect finished */
	CONN_EV_READ,      /* new bytes in c->in */
	CONN_EV_DRAINED,   /* c->out became empty */
	CONN_EV_TLS_DONE,  /* handshake finished */
	CONN_EV_EOF,       /* peer closed its sending side; c->in may hold bytes */
	CONN_EV_ERROR,     /* reset, TLS failure, ...: c->errstr says what */
	CONN_EV_TIMEOUT,   /* the timer set by conn_timeout() ran out */
};

enum conn_state {
	CONN_S_IDLE,
	CONN_S_CONNECTING,
	CONN_S_OPEN,
	CONN_S_TLS_PENDING, /* plaintext output still to flush before the handshake */
	CONN_S_HANDSHAKE,
	CONN_S_FAILED,
};

struct conn;
typedef int (*conn_cb)(struct conn *c, enum conn_event ev, void *arg);

#define CONN_MAGIC 0x636f6e6eu /* "conn": reached through libev's void *data */

struct conn {
	uint32_t magic;         /* CONN_MAGIC from conn_init on */
	struct ev_loop *loop;
	int fd;
	SSL *ssl;               /* owned; NULL in plaintext */
	enum conn_state state;
	struct buf in;
	struct buf out;
	/*
	 * TLS only, between BoringSSL and the socket (our BIO): ciphertext
	 * read ahead and not yet taken, and records written but not yet
	 * sent. Reading ahead and sending many records at once spare system
	 * calls and the peer wake-ups (one send per batch, not per record).
	 */
	struct buf tls_in;
	struct buf tls_out;
	ev_io rio, wio;
	ev_timer timer;
	conn_cb cb;
	void *arg;

	bool reading;           /* the owner wants bytes */
	bool eof;               /* peer finished sending */
	bool eof_unclean;       /* TLS peer closed without close_notify */
	bool shut_wr;           /* half-close once out is empty */
	bool shut_done;
	bool read_wants_write;  /* SSL_read said WANT_WRITE */
	bool write_wants_read;  /* SSL_write said WANT_READ */
	bool timer_on_io;       /* restart the timer on I/O progress */
	bool error_pending;     /* an error was found outside a callback */
	bool tls_in_short;      /* the last read of ciphertext emptied the socket */
	bool corked;            /* small writes wait for conn_cork(c, false) */
	bool cork_queued;       /* out holds bytes the cork held back */
	bool fin_done;          /* shutdown(SHUT_WR) done */
	char errstr[160];

	uint64_t bytes_read;    /* application bytes */
	uint64_t bytes_written;
};

/* Embedded object. fd may be -1 (use conn_connect later). */
void conn_init(struct conn *c, struct ev_loop *loop, int fd, size_t bufmax,
    conn_cb cb, void *arg);
/* Stops everything, frees the SSL object and buffers, closes the fd. */
void conn_cleanup(struct conn *c);
/* A new owner for the callbacks (a lent conn handed back, see upstream.h). */
void conn_set_cb(struct conn *c, conn_cb cb, void *arg);

/*
 * Start a non-blocking connect; CONN_EV_CONNECTED or CONN_EV_ERROR follow.
 * mark: SO_MARK (0: none); *mark_failed is set when it could not be applied.
 * src: if not NULL, connect from that address (IP_TRANSPARENT: it need not
 * be ours; TPROXY's "transparent_source"). Returns -1 (errstr set) when it
 * fails at once.
 */
int conn_connect(struct conn *c, const struct sockaddr *sa, socklen_t salen,
    uint32_t mark, const struct sockaddr *src, bool *mark_failed);

/* Turn reading on or off (backpressure). */
void conn_read(struct conn *c, bool on);

/* Queue bytes for the peer. -1 when over the cap (nothing queued). */
int conn_write(struct conn *c, const void *p, size_t n);
static inline size_t conn_out_room(const struct conn *c) { return buf_room(&c->out); }
/* Bytes written by the owner that the kernel does not have yet. */
static inline size_t conn_unsent(const struct conn *c)
{
	return buf_len(&c->out) + buf_len(&c->tls_out);
}

/*
 * While corked, small writes (under CONN_CORK_MAX) are only queued; the
 * uncork sends them at once: the replies to a pipelined batch in one send
 * (one TLS record), not one each. Calls back nothing.
 */
#define CONN_CORK_MAX 4096
void conn_cork(struct conn *c, bool on);

/*
 * Begin a TLS handshake on this connection (client or server side). Any
 * queued plaintext output is flushed first. CONN_EV_TLS_DONE or
 * CONN_EV_ERROR follow. ssl is taken over (set0).
 */
void conn_start_tls(struct conn *c, SSL *ssl, bool server);

/* Arm the timer (seconds; 0 stops it). on_io: restart it on I/O progress. */
void conn_timeout(struct conn *c, unsigned seconds, bool on_io);

/* Close the sending side once out is empty (TLS: close_notify, then FIN). */
void conn_shutdown_write(struct conn *c);

/* Send what is queued now, as far as the socket takes it; no callbacks. */
void conn_flush_now(struct conn *c);

/* Free buffer memory while idle (keeps a session's idle footprint small). */
void conn_trim(struct conn *c);

#endif
