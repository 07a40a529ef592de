/*
 * conn: buffered, non-blocking I/O for one leg, plaintext or TLS.
 *
 * Rules that keep it simple to reason about:
 *  - only the libev handlers (rio, wio, timer) fire callbacks; calls made by
 *    the owner (conn_write, conn_read, conn_start_tls, ...) never do, so the
 *    owner is never re-entered;
 *  - conn_update() is the one place that maps the state (and what BoringSSL
 *    asked for) to watcher start/stop.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>

#include "starttlsd/addr.h"
#include "starttlsd/conn.h"

#define CONN_READ_CHUNK 16384
/*
 * TLS: ciphertext is read from the socket in reads of up to this many
 * bytes (several records at once), and records are sent once this many
 * have been written (or the owner's bytes are all taken). The buffers
 * (tls_in, tls_out) are bounded by it, whatever buffer_size says.
 */
#define CONN_TLS_CHUNK 65536
#define CONN_TLS_OUT_MAX (CONN_TLS_CHUNK + 32768)
#define CONN_TLS_READ_MIN 4096

/*
 * A callback in progress (OpenSMTPD's io_frame_enter/leave): conn_cleanup()
 * of a conn that a frame is calling back for marks the frame dead, and the
 * handler then touches and calls nothing more. So no callback reaches an
 * owner after its conn was cleaned up, whatever the owner did inside the
 * callback (clean up, reuse the struct for a new connection, free itself).
 * Frames nest (a callback may clean up another conn being called back).
 */
struct conn_frame {
	struct conn *c;
	bool dead;
	struct conn_frame *outer;
};
static struct conn_frame *conn_frames;

/* Call the owner back. -1: the conn is gone or closed, touch nothing. */
static int
conn_call(struct conn *c, enum conn_event ev)
{
	struct conn_frame f = { .c = c, .dead = false, .outer = conn_frames };
	int r;

	assert(c->magic == CONN_MAGIC && c->cb != NULL);
	conn_frames = &f;
	r = c->cb(c, ev, c->arg);
	conn_frames = f.outer;
	return f.dead ? -1 : r;
}

static void conn_rio_cb(struct ev_loop *loop, ev_io *w, int revents);
static void conn_wio_cb(struct ev_loop *loop, ev_io *w, int revents);
static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

void
conn_init(struct conn *c, struct ev_loop *loop, int fd, size_t bufmax,
    conn_cb cb, void *arg)
{
	memset(c, 0, sizeof(*c));
	c->magic = CONN_MAGIC;
	c->loop = loop;
	c->fd = fd;
	c->cb = cb;
	c->arg = arg;
	c->state = fd >= 0 ? CONN_S_OPEN : CONN_S_IDLE;
	buf_init(&c->in, bufmax);
	buf_init(&c->out, bufmax);
	buf_init(&c->tls_in, CONN_TLS_CHUNK);
	buf_init(&c->tls_out, CONN_TLS_OUT_MAX);
	ev_io_init(&c->rio, conn_rio_cb, fd, EV_READ);
	ev_io_init(&c->wio, conn_wio_cb, fd, EV_WRITE);
	ev_init(&c->timer, conn_timer_cb);
	c->rio.data = c->wio.data = c->timer.data = c;
	if (fd >= 0) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
}

void
conn_cleanup(struct conn *c)
{
	for (struct conn_frame *f = conn_frames; f != NULL; f = f->outer)
		if (f->c == c)
			f->dead = true;
	ev_io_stop(c->loop, &c->rio);
	ev_io_stop(c->loop, &c->wio);
	ev_timer_stop(c->loop, &c->timer);
	if (c->ssl != NULL) {
		/* Best effort close_notify on a healthy connection. */
		if (c->state == CONN_S_OPEN && !c->shut_wr)
			SSL_shutdown(c->ssl);
		/* Best effort, as a socket BIO would: what BoringSSL wrote. */
		if (c->fd >= 0 && buf_len(&c->tls_out) > 0 &&
		    c->state != CONN_S_FAILED && !c->error_pending &&
		    send(c->fd, buf_head(&c->tls_out), buf_len(&c->tls_out),
		    MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
			/* nothing to be done: the connection is going */
		}
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = CONN_S_FAILED;
	c->error_pending = false;
	buf_cleanup(&c->in);
	buf_cleanup(&c->out);
	buf_cleanup(&c->tls_in);
	buf_cleanup(&c->tls_out);
}

void
conn_set_cb(struct conn *c, conn_cb cb, void *arg)
{
	assert(c->magic == CONN_MAGIC);
	c->cb = cb;
	c->arg = arg;
}

/* ---- the BIO between BoringSSL and the socket --------------------------- */

/*
 * Reads: when nothing is read ahead, one read() of up to CONN_TLS_CHUNK
 * (BoringSSL asks for 5 bytes of header, then the record: without this,
 * two reads per record and a third to learn the socket is empty).
 * EAGAIN is a retry; errno survives for the error message.
 */
static int
conn_bio_read(BIO *b, char *out, int len)
{
	struct conn *c = BIO_get_data(b);
	struct buf *t = &c->tls_in;
	size_t n;

	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	if (buf_len(t) == 0) {
		/*
		 * Start small (handshakes, replies: an idle session's memory),
		 * double while reads fill the buffer (a message coming in).
		 */
		size_t want = t->cap == 0 ? CONN_TLS_READ_MIN :
		    !c->tls_in_short && t->cap < CONN_TLS_CHUNK ? 2 * t->cap :
		    t->cap;
		size_t avail;
		char *w = buf_reserve(t, want, &avail);
		ssize_t r;

		if (w == NULL) {
			errno = ENOMEM;
			return -1;
		}
		do
			r = read(c->fd, w, avail);
		while (r < 0 && errno == EINTR);
		if (r < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				BIO_set_retry_read(b);
			c->tls_in_short = true;
			return -1;
		}
		if (r == 0)
			return 0;
		buf_commit(t, (size_t)r);
		c->tls_in_short = (size_t)r < avail;
	}
	n = buf_len(t) < (size_t)len ? buf_len(t) : (size_t)len;
	memcpy(out, buf_head(t), n);
	buf_consume(t, n);
	return (int)n;
}

/* Writes: records are queued in tls_out; conn sends them (tls_flush). */
static int
conn_bio_write(BIO *b, const char *p, int len)
{
	struct conn *c = BIO_get_data(b);
	size_t n = len > 0 ? (size_t)len : 0;

	BIO_clear_retry_flags(b);
	if (n == 0)
		return 0;
	if (buf_room(&c->tls_out) == 0) {
		BIO_set_retry_write(b);
		return -1;
	}
	if (n > buf_room(&c->tls_out))
		n = buf_room(&c->tls_out);
	if (buf_append(&c->tls_out, p, n) < 0) {
		errno = ENOMEM;
		return -1;
	}
	return (int)n;
}

static long
conn_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct conn *c = BIO_get_data(b);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		/* Sent after the SSL call returns: see tls_flush(). */
		return 1;
	case BIO_CTRL_PENDING:
		return (long)buf_len(&c->tls_in);
	case BIO_CTRL_WPENDING:
		return (long)buf_len(&c->tls_out);
	default:
		return 0;
	}
}

static BIO *
conn_bio_new(struct conn *c)
{
	static BIO_METHOD *method;
	BIO *b;

	if (method == NULL) {
		BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() |
		    BIO_TYPE_SOURCE_SINK, "starttlsd conn");

		if (m == NULL)
			return NULL;
		BIO_meth_set_read(m, conn_bio_read);
		BIO_meth_set_write(m, conn_bio_write);
		BIO_meth_set_ctrl(m, conn_bio_ctrl);
		method = m;
	}
	if ((b = BIO_new(method)) == NULL)
		return NULL;
	BIO_set_data(b, c);
	BIO_set_init(b, 1);
	return b;
}

static void
watch(struct conn *c, ev_io *w, bool on)
{
	if (on && !ev_is_active(w))
		ev_io_start(c->loop, w);
	else if (!on && ev_is_active(w))
		ev_io_stop(c->loop, w);
}

/* The only place that decides which watchers run. */
static void
conn_update(struct conn *c)
{
	bool r = false, w = false;

	/* Closed (conn_cleanup): nothing may watch a descriptor we gave up. */
	if (c->fd < 0) {
		watch(c, &c->rio, false);
		watch(c, &c->wio, false);
		return;
	}

	switch (c->state) {
	case CONN_S_CONNECTING:
	case CONN_S_TLS_PENDING:
		w = true;
		break;
	case CONN_S_HANDSHAKE:
		/* read_wants_write doubles as "the handshake wants to write". */
		w = c->read_wants_write || buf_len(&c->tls_out) > 0;
		r = !c->read_wants_write;
		break;
	case CONN_S_OPEN:
		r = (c->reading && !c->eof && !buf_full(&c->in)) ||
		    c->write_wants_read;
		w = (buf_len(&c->out) > 0 && !c->write_wants_read) ||
		    buf_len(&c->tls_out) > 0 || c->read_wants_write;
		/*
		 * Ciphertext read ahead, or plaintext BoringSSL decrypted and
		 * we had no room for, does not make the fd readable: run the
		 * read handler for it.
		 */
		if (c->ssl != NULL && c->reading && !c->eof &&
		    !buf_full(&c->in) && !c->read_wants_write &&
		    (buf_len(&c->tls_in) > 0 || SSL_pending(c->ssl) > 0))
			ev_feed_event(c->loop, &c->rio, EV_READ);
		break;
	case CONN_S_IDLE:
	case CONN_S_FAILED:
		break;
	}
	if (c->error_pending)
		w = true;
	watch(c, &c->rio, r);
	watch(c, &c->wio, w);
}

static void
set_err(struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
set_err(struct conn *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->errstr, sizeof(c->errstr), fmt, ap);
	va_end(ap);
}

/* Describe a failed SSL call; consumes BoringSSL's error queue. */
static void
set_ssl_err(struct conn *c, const char *what, int ret, int sslerr)
{
	unsigned long e = ERR_get_error();
	char tmp[120];

	if (e != 0) {
		ERR_error_string_n(e, tmp, sizeof(tmp));
		/* "error:1000007d:SSL routines:OPENSSL_internal:REASON": keep REASON. */
		const char *reason = strrchr(tmp, ':');
		set_err(c, "%s: %s", what, reason ? reason + 1 : tmp);
	} else if (sslerr == SSL_ERROR_SYSCALL && ret == 0) {
		set_err(c, "%s: connection closed by peer", what);
	} else if (sslerr == SSL_ERROR_SYSCALL) {
		set_err(c, "%s: %s", what, strerror(errno));
	} else {
		set_err(c, "%s: error %d", what, sslerr);
	}
	ERR_clear_error();
}

/* Enter FAILED and report. Returns what the callback returned. */
static int
conn_fail(struct conn *c)
{
	c->state = CONN_S_FAILED;
	c->error_pending = false;
	conn_update(c);
	ev_timer_stop(c->loop, &c->timer);
	return conn_call(c, CONN_EV_ERROR);
}

static void
progress(struct conn *c)
{
	if (c->timer_on_io && ev_is_active(&c->timer))
		ev_timer_again(c->loop, &c->timer);
}

/*
 * Send p[0..n) to the socket as far as it takes it; returns the bytes
 * taken. A failure is recorded (error_pending), never called back.
 */
static size_t
conn_send_raw(struct conn *c, const char *p, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t w = send(c->fd, p + done, n - done, MSG_NOSIGNAL);
		if (w > 0) {
			done += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		set_err(c, "write: %s", w < 0 ? strerror(errno) : "short write");
		c->error_pending = true;
		break;
	}
	if (done > 0)
		progress(c);
	return done;
}

/* Send the TLS records BoringSSL wrote, as far as the socket takes them. */
static void
tls_flush(struct conn *c)
{
	if (buf_len(&c->tls_out) > 0 && !c->error_pending)
		buf_consume(&c->tls_out, conn_send_raw(c,
		    buf_head(&c->tls_out), buf_len(&c->tls_out)));
}

/*
 * Write p[0..n) to the socket (or TLS) as far as it takes it; returns the
 * bytes taken. Never calls back: a failure is recorded (error_pending) and
 * reported from the write handler.
 *
 * TLS: each SSL_write makes one record (partial writes) into tls_out,
 * sent when CONN_TLS_CHUNK have gathered and at the end. A retry later
 * passes the same bytes from our buffer (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER).
 */
static size_t
conn_send(struct conn *c, const char *p, size_t n)
{
	size_t done = 0;

	if (c->ssl == NULL) {
		done = conn_send_raw(c, p, n);
		c->bytes_written += done;
		return done;
	}
	while (done < n && !c->error_pending) {
		size_t left = n - done, before;
		int r, e;

		if (buf_len(&c->tls_out) >= CONN_TLS_CHUNK) {
			tls_flush(c);
			if (buf_len(&c->tls_out) >= CONN_TLS_CHUNK)
				break; /* the socket is full */
		}
		r = SSL_write(c->ssl, p + done, left > INT_MAX ? INT_MAX :
		    (int)left);
		if (r > 0) {
			done += (size_t)r;
			continue;
		}
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_WRITE) {
			/* tls_out is full: go on if the socket takes some. */
			before = buf_len(&c->tls_out);
			tls_flush(c);
			if (buf_len(&c->tls_out) < before)
				continue;
			break;
		}
		if (e == SSL_ERROR_WANT_READ) {
			c->write_wants_read = true;
			break;
		}
		set_ssl_err(c, "TLS write", r, e);
		c->error_pending = true;
		break;
	}
	tls_flush(c);
	if (done > 0) {
		c->bytes_written += done;
		progress(c);
	}
	return done;
}

/*
 * Half-close once everything is out, if asked: TLS close_notify, and the
 * FIN once that record is sent too.
 */
static void
conn_maybe_shutdown(struct conn *c)
{
	if (!c->shut_wr || c->state != CONN_S_OPEN || c->error_pending ||
	    buf_len(&c->out) > 0)
		return;
	if (!c->shut_done) {
		c->shut_done = true;
		if (c->ssl != NULL) {
			SSL_shutdown(c->ssl);
			tls_flush(c);
		}
	}
	if (!c->fin_done && buf_len(&c->tls_out) == 0 && !c->error_pending) {
		c->fin_done = true;
		shutdown(c->fd, SHUT_WR);
	}
}

/* Write out as much of the output buffers as the socket takes. */
static void
conn_flush(struct conn *c)
{
	tls_flush(c);
	if (buf_len(&c->out) > 0)
		buf_consume(&c->out, conn_send(c, buf_head(&c->out),
		    buf_len(&c->out)));
	conn_maybe_shutdown(c);
}

void
conn_flush_now(struct conn *c)
{
	if (c->fd >= 0 && c->state == CONN_S_OPEN)
		conn_flush(c);
}

/* Read what there is. Returns -1 when the owner went away. */
static int
conn_do_read(struct conn *c)
{
	size_t got = 0;

	while (!buf_full(&c->in) && !c->eof) {
		size_t avail;
		char *p = buf_reserve(&c->in, CONN_READ_CHUNK, &avail);

		if (p == NULL) {
			set_err(c, "read: out of memory");
			return conn_fail(c);
		}
		if (c->ssl != NULL) {
			int r = SSL_read(c->ssl, p,
			    avail > INT_MAX ? INT_MAX : (int)avail);
			if (r > 0) {
				buf_commit(&c->in, (size_t)r);
				got += (size_t)r;
				/* Drained: spare the EAGAIN round trip. */
				if (c->tls_in_short && buf_len(&c->tls_in) == 0 &&
				    SSL_pending(c->ssl) == 0)
					break;
				continue;
			}
			int e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ)
				break;
			if (e == SSL_ERROR_WANT_WRITE) {
				c->read_wants_write = true;
				break;
			}
			if (e == SSL_ERROR_ZERO_RETURN) {
				c->eof = true;
				break;
			}
			if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 &&
			    r == 0) {
				/* TCP FIN without close_notify. */
				c->eof = c->eof_unclean = true;
				break;
			}
			set_ssl_err(c, "TLS read", r, e);
			return conn_fail(c);
		}
		ssize_t n = read(c->fd, p, avail);
		if (n > 0) {
			buf_commit(&c->in, (size_t)n);
			got += (size_t)n;
			if ((size_t)n < avail)
				break; /* drained: spare the EAGAIN round trip */
			continue;
		}
		if (n == 0) {
			c->eof = true;
			break;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			break;
		set_err(c, "read: %s", strerror(errno));
		return conn_fail(c);
	}
	/* Reading may have made BoringSSL write (a KeyUpdate answer). */
	tls_flush(c);
	if (got > 0) {
		c->bytes_read += got;
		progress(c);
		if (conn_call(c, CONN_EV_READ) < 0)
			return -1;
	}
	if (c->eof && c->error_pending) {
		/*
		 * A write already failed (a RST consumed by send() leaves a
		 * later read() to see a plain end of file): report the write's
		 * error, which names the reset, not a clean close.
		 */
		return conn_fail(c);
	}
	if (c->eof) {
		/* Reported once: after this, reading is never asked again. */
		ev_io_stop(c->loop, &c->rio);
		if (conn_call(c, CONN_EV_EOF) < 0)
			return -1;
	}
	return 0;
}

static int
conn_handshake(struct conn *c)
{
	int r;

	tls_flush(c);
	r = SSL_do_handshake(c->ssl);
	/* The flight BoringSSL wrote goes out now. */
	tls_flush(c);
	if (c->error_pending)
		return conn_fail(c);
	if (r == 1) {
		c->state = CONN_S_OPEN;
		c->read_wants_write = false;
		progress(c);
		conn_update(c);
		return conn_call(c, CONN_EV_TLS_DONE);
	}
	int e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		c->read_wants_write = e == SSL_ERROR_WANT_WRITE;
		conn_update(c);
		return 0;
	}
	set_ssl_err(c, "TLS handshake", r, e);
	return conn_fail(c);
}

static void
conn_rio_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = w->data;

	(void)loop;
	(void)revents;
	if (c->state == CONN_S_HANDSHAKE) {
		conn_handshake(c);
		return;
	}
	if (c->state != CONN_S_OPEN)
		return;
	if (c->write_wants_read) {
		c->write_wants_read = false;
		conn_flush(c);
		if (c->error_pending) {
			conn_fail(c);
			return;
		}
	}
	if (c->reading && conn_do_read(c) < 0)
		return;
	conn_update(c);
}

static void
conn_wio_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = w->data;
	int soerr = 0;
	socklen_t sl = sizeof(soerr);
	bool had;

	(void)loop;
	(void)revents;
	if (c->error_pending) {
		conn_fail(c);
		return;
	}
	switch (c->state) {
	case CONN_S_CONNECTING:
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
		if (soerr != 0) {
			set_err(c, "connect: %s", strerror(soerr));
			conn_fail(c);
			return;
		}
		c->state = CONN_S_OPEN;
		conn_update(c);
		conn_call(c, CONN_EV_CONNECTED);
		return;
	case CONN_S_HANDSHAKE:
		conn_handshake(c);
		return;
	case CONN_S_TLS_PENDING:
		/* Flush the plaintext (e.g. our "220 Ready") without TLS. */
		{
			SSL *ssl = c->ssl;
			c->ssl = NULL;
			conn_flush(c);
			c->ssl = ssl;
		}
		if (c->error_pending) {
			conn_fail(c);
			return;
		}
		if (buf_len(&c->out) == 0) {
			c->state = CONN_S_HANDSHAKE;
			c->read_wants_write = true;
		}
		conn_update(c);
		return;
	case CONN_S_OPEN:
		had = conn_unsent(c) > 0;
		conn_flush(c);
		if (c->error_pending) {
			conn_fail(c);
			return;
		}
		if (c->read_wants_write && buf_room(&c->tls_out) > 0) {
			c->read_wants_write = false;
			if (c->reading && conn_do_read(c) < 0)
				return;
		}
		conn_update(c);
		if (had && conn_unsent(c) == 0)
			conn_call(c, CONN_EV_DRAINED);
		return;
	case CONN_S_IDLE:
	case CONN_S_FAILED:
		conn_update(c);
		return;
	}
}

static void
conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *c = w->data;

	(void)loop;
	(void)revents;
	conn_call(c, CONN_EV_TIMEOUT);
}

int
conn_connect(struct conn *c, const struct sockaddr *sa, socklen_t salen,
    uint32_t mark, const struct sockaddr *src, bool *mark_failed)
{
	int fd, one = 1;

	*mark_failed = false;
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		set_err(c, "socket: %s", strerror(errno));
		return -1;
	}
	if (mark != 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0)
		*mark_failed = true;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (src != NULL) {
		struct sockaddr_storage from;
		socklen_t flen = addr_len(src);

		/* The client's address, any port: the server sees the client. */
		memcpy(&from, src, flen);
		addr_set_port(&from, 0);
		if ((from.ss_family == AF_INET ?
		    setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one)) :
		    setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one))) < 0 ||
		    bind(fd, (struct sockaddr *)&from, flen) < 0) {
			set_err(c, "transparent source: %s", strerror(errno));
			close(fd);
			return -1;
		}
	}
	if (connect(fd, sa, salen) < 0 && errno != EINPROGRESS) {
		set_err(c, "connect: %s", strerror(errno));
		close(fd);
		return -1;
	}
	c->fd = fd;
	ev_io_set(&c->rio, fd, EV_READ);
	ev_io_set(&c->wio, fd, EV_WRITE);
	c->state = CONN_S_CONNECTING;
	conn_update(c);
	return 0;
}

void
conn_read(struct conn *c, bool on)
{
	c->reading = on;
	conn_update(c);
}

int
conn_write(struct conn *c, const void *p, size_t n)
{
	size_t done = 0;

	if (c->state == CONN_S_FAILED)
		return -1;
	if (n > buf_room(&c->out))
		return -1;
	if (c->corked) {
		if (n < CONN_CORK_MAX) {
			if (buf_append(&c->out, p, n) < 0) {
				set_err(c, "write: out of memory");
				c->error_pending = true;
			}
			c->cork_queued = true;
			return 0; /* sent, and watchers set, by the uncork */
		}
		/* A bulk write: what is queued goes first, then as usual. */
		if (buf_len(&c->out) > 0 && c->state == CONN_S_OPEN &&
		    !c->write_wants_read && !c->error_pending)
			conn_flush(c);
	}
	/*
	 * Nothing queued: straight from the caller's bytes, and only what
	 * the socket does not take is copied (a message body then crosses
	 * the proxy without an extra copy). With TLS, a retry later passes
	 * the same bytes from our buffer (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER).
	 */
	if (buf_len(&c->out) == 0 && c->state == CONN_S_OPEN &&
	    !c->write_wants_read && !c->error_pending)
		done = conn_send(c, p, n);
	if (done < n &&
	    buf_append(&c->out, (const char *)p + done, n - done) < 0) {
		/* Cannot happen (room was checked); never lose bytes quietly. */
		set_err(c, "write: output buffer full");
		c->error_pending = true;
	}
	conn_maybe_shutdown(c);
	conn_update(c);
	return 0;
}

void
conn_cork(struct conn *c, bool on)
{
	bool was = c->corked;

	c->corked = on;
	if (on || !was)
		return;
	if (c->cork_queued && c->state == CONN_S_OPEN &&
	    buf_len(&c->out) > 0 && !c->write_wants_read && !c->error_pending)
		conn_flush(c);
	c->cork_queued = false;
	conn_update(c);
}

void
conn_start_tls(struct conn *c, SSL *ssl, bool server)
{
	BIO *bio = conn_bio_new(c);

	if (bio != NULL) {
		SSL_set_bio(ssl, bio, bio);
	} else {
		set_err(c, "TLS: out of memory");
		c->error_pending = true;
	}
	if (server)
		SSL_set_accept_state(ssl);
	else
		SSL_set_connect_state(ssl);
	c->ssl = ssl;
	/* Plaintext left over must not be taken for TLS data. */
	buf_clear(&c->in);
	c->read_wants_write = c->write_wants_read = false;
	if (buf_len(&c->out) > 0) {
		c->state = CONN_S_TLS_PENDING;
	} else {
		c->state = CONN_S_HANDSHAKE;
		/* Start from a write event: no callback from inside this call. */
		c->read_wants_write = true;
	}
	conn_update(c);
}

void
conn_timeout(struct conn *c, unsigned seconds, bool on_io)
{
	ev_timer_stop(c->loop, &c->timer);
	c->timer_on_io = on_io;
	if (seconds == 0)
		return;
	ev_timer_set(&c->timer, (ev_tstamp)seconds, (ev_tstamp)seconds);
	ev_timer_again(c->loop, &c->timer);
}

void
conn_shutdown_write(struct conn *c)
{
	c->shut_wr = true;
	if (c->state == CONN_S_OPEN)
		conn_flush(c);
	conn_update(c);
}

void
conn_trim(struct conn *c)
{
	if (buf_len(&c->in) == 0)
		buf_cleanup(&c->in);
	if (buf_len(&c->out) == 0)
		buf_cleanup(&c->out);
	if (buf_len(&c->tls_in) == 0)
		buf_cleanup(&c->tls_in);
	if (buf_len(&c->tls_out) == 0)
		buf_cleanup(&c->tls_out);
}
