#!/usr/bin/env python3
"""Configurable SMTP test server (the remote MX) for starttlsd integration tests.

Standard library only. One thread per connection. Prints "ready" on stdout once
every --listen socket is bound and listening; exits 0 on SIGTERM/SIGINT.

Run with --help for the flags. Summary:

  --listen ADDR:PORT     repeatable; IPv6 as [addr]:port; port 0 = ephemeral
                         (the bound address is written to the log as "listen ...")
  --cert FILE --key FILE server certificate and key for STARTTLS
  --client-ca FILE       request (optional) client certificates, verified with FILE
  --tls-min/--tls-max    1.2 or 1.3 (also 1.0/1.1 if the OpenSSL build allows it)
  --out DIR              store msg-N.eml then msg-N.json (json renamed into place)
  --log FILE             append one line per SMTP event
  --hostname NAME        default mx.example.net
  --mode MODE            starttls plain badtls refuse reply354 inject masked noehlo
                         greet421 greet554 ehlo421 dropdata
                         tls421 (EHLO over TLS gets 421 and close_notify in one flight)
                         starttls421 (STARTTLS gets 421, the server closes)
  --no-chunking          no CHUNKING: BDAT is an unknown command (502) and what
                         follows it is read as commands, as such servers do
  --lenient-eod          also end DATA at a "." line ended by a bare LF (the
                         servers SMTP smuggling exploits)
  --timeout-silent       at the idle timeout, close without the 421
  --close-after-rset     the command after a RSET gets 421 and the close (a
                         server that went away while a connection was parked)
  AUTH (any mechanism, any credentials) is answered 235.
  --multiline-greeting   multi-line greeting (CODE-... / CODE ...)
  --reject-rcpt SUBSTR   repeatable; RCPT argument containing SUBSTR -> 550 5.1.1
  --size N               SIZE limit (default 52428800)
  --timeout SECONDS      idle timeout per connection (default 300)
  --verbose              also copy log lines to stderr

Log line format:  HH:MM:SS.mmm cID EVENT [details]   (server-wide events use "srv")
Events: listen, conn, cmd, reply, tls, tls-fail, tls-skipped,
plaintext-after-starttls, garbage (badtls: sent once the ClientHello is in),
raw-after-starttls, data-begin, data-end,
bdat, queued, drop, timeout, eof, error, close, shutdown.
Non-printable bytes are escaped as \\r \\n \\t \\\\ \\xNN.
"""

import argparse
import json
import os
import re
import selectors
import signal
import socket
import ssl
import struct
import sys
import threading
import time

MODES = ("starttls", "plain", "badtls", "refuse", "reply354", "inject", "masked",
         "noehlo", "greet421", "greet554", "ehlo421", "dropdata", "tls421",
         "starttls421")
# Modes that advertise STARTTLS (masked advertises it masked as XXXXXXXA).
STARTTLS_MODES = ("starttls", "badtls", "refuse", "reply354", "inject", "dropdata",
                  "tls421", "starttls421")
# Modes that actually perform a TLS handshake and therefore need --cert/--key.
HANDSHAKE_MODES = ("starttls", "inject", "dropdata", "tls421")
LINE_MAX = 65536          # command line limit, CRLF included
LOG_TRUNC = 4096          # bytes of a received line/blob copied into a log line
DROP_AFTER = 10           # dropdata: bytes of message content before the RST
TLS_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3,
}


def esc(data, limit=LOG_TRUNC):
    """Printable rendering of received bytes for the log."""
    b = bytes(data)
    extra = len(b) - limit if limit is not None and len(b) > limit else 0
    if extra:
        b = b[:limit]
    out = []
    for c in b:
        if c == 0x5C:
            out.append("\\\\")
        elif 0x20 <= c < 0x7F:
            out.append(chr(c))
        elif c == 0x0D:
            out.append("\\r")
        elif c == 0x0A:
            out.append("\\n")
        elif c == 0x09:
            out.append("\\t")
        else:
            out.append("\\x%02x" % c)
    s = "".join(out)
    if extra:
        s += "...(+%d bytes)" % extra
    return s


def parse_listen(spec):
    """'1.2.3.4:25' / '[2001:db8::1]:25' / 'host:25' -> (family, sockaddr)."""
    if spec.startswith("["):
        host, sep, port = spec[1:].partition("]:")
        if not sep:
            raise ValueError("bad --listen %r (IPv6 must be [addr]:port)" % spec)
    else:
        host, sep, port = spec.rpartition(":")
        if not sep:
            raise ValueError("bad --listen %r (want ADDR:PORT)" % spec)
        if ":" in host:
            raise ValueError("bad --listen %r (IPv6 must be [addr]:port)" % spec)
    if not port.isdigit() or int(port) > 65535:
        raise ValueError("bad port in --listen %r" % spec)
    port = int(port)
    host = host or "0.0.0.0"
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0,
                               socket.AI_PASSIVE)
    fam, _, _, _, sa = infos[0]
    return fam, sa


class Log:
    def __init__(self, path, verbose):
        self.lock = threading.Lock()
        self.f = open(path, "a", encoding="utf-8", errors="backslashreplace") if path else None
        self.verbose = verbose

    def write(self, who, event):
        if not self.f and not self.verbose:
            return
        t = time.time()
        line = "%s.%03d %s %s\n" % (time.strftime("%H:%M:%S", time.localtime(t)),
                                    int(t * 1000) % 1000, who, event)
        with self.lock:
            if self.f:
                self.f.write(line)
                self.f.flush()
            if self.verbose:
                sys.stderr.write(line)
                sys.stderr.flush()


class Server:
    def __init__(self, args):
        self.args = args
        self.mode = args.mode
        self.host = args.hostname
        self.size_limit = args.size
        self.log = Log(args.log, args.verbose)
        self.lock = threading.Lock()
        self.sessions = set()
        self.conn_ids = 0
        self.stop = False
        self.out = args.out
        self.msg_counter = 0
        if self.out:
            os.makedirs(self.out, exist_ok=True)
            # Never overwrite messages of an earlier run that used the same directory.
            for name in os.listdir(self.out):
                m = re.fullmatch(r"msg-(\d+)\.(?:eml|json)", name)
                if m:
                    self.msg_counter = max(self.msg_counter, int(m.group(1)))
        self.ctx = None
        if args.cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(args.cert, args.key)
            if args.tls_min:
                ctx.minimum_version = TLS_VERSIONS[args.tls_min]
            if args.tls_max:
                ctx.maximum_version = TLS_VERSIONS[args.tls_max]
            if args.client_ca:
                ctx.load_verify_locations(cafile=args.client_ca)
                ctx.verify_mode = ssl.CERT_OPTIONAL

            def sni_seen(sslobj, name, _ctx):
                # The name the client sent (SNI), for the message's record.
                sslobj.sni_name = name
                return None
            ctx.sni_callback = sni_seen
            self.ctx = ctx

    def next_conn_id(self):
        with self.lock:
            self.conn_ids += 1
            return self.conn_ids

    def store(self, sess):
        """Allocate a message number; write msg-N.eml then msg-N.json atomically."""
        with self.lock:
            self.msg_counter += 1
            n = self.msg_counter
        if self.out:
            content = bytes(sess.content)
            meta = {
                "n": n,
                "tls": sess.tls_version,
                "sni": getattr(sess, "sni", None),
                "cipher": sess.cipher,
                "helo": sess.helo,
                "helo_verb": sess.helo_verb,
                "ehlo_count": sess.ehlo_count,
                "helo_count": sess.helo_count,
                "mail_from": sess.mail_from,
                "mail_params": sess.mail_params,
                "rcpt_to": list(sess.rcpts),
                "method": sess.method,
                "size": len(content),
                "peer": sess.peer[0],
                "peer_port": sess.peer[1],
                "local": sess.local[0],
                "local_port": sess.local[1],
                "conn": sess.cid,
                "mode": self.mode,
                "client_cert": sess.client_cert,
            }
            eml = os.path.join(self.out, "msg-%d.eml" % n)
            with open(eml, "wb") as f:
                f.write(content)
            tmp = os.path.join(self.out, ".msg-%d.json.tmp" % n)
            with open(tmp, "w", encoding="ascii") as f:
                json.dump(meta, f, indent=1)
                f.write("\n")
            os.replace(tmp, os.path.join(self.out, "msg-%d.json" % n))
        return n


class Session:
    def __init__(self, srv, sock, peer, cid):
        self.srv = srv
        self.sock = sock
        self.peer = peer[:2]
        try:
            self.local = sock.getsockname()[:2]
        except OSError:
            self.local = ("", 0)
        self.cid = cid
        self.who = "c%d" % cid
        self.mode = srv.mode
        self.buf = bytearray()
        self.out = []
        self.closing = False
        self.dead = False            # socket already closed (dropdata)
        self.state = "cmd"           # cmd | data | bdat | skipline
        self.tls_version = None
        self.sni = None
        self.cipher = None
        self.client_cert = None
        self.no_service = False      # greet554
        self.greeted = False
        self.helo = None
        self.helo_verb = None
        self.ehlo_count = 0
        self.helo_count = 0
        self.skipped = 0
        self.reset_tx()

    # ---- helpers ---------------------------------------------------------
    def log(self, event):
        self.srv.log.write(self.who, event)

    def reset_tx(self):
        self.mail_from = None
        self.mail_params = []
        self.rcpts = []
        self.content = bytearray()
        self.method = None
        self.data_size = 0
        self.data_hint = 0
        self.too_big = False
        self.bdat_remaining = 0
        self.bdat_last = False
        self.bdat_err = None

    def reply(self, code, *texts):
        """Queue a (possibly multi-line) reply; sent at the next flush."""
        texts = texts or ("",)
        for i, t in enumerate(texts):
            sep = " " if i == len(texts) - 1 else "-"
            line = "%d%s%s" % (code, sep, t)
            self.log("reply " + line)
            self.out.append(line.encode("utf-8") + b"\r\n")

    def flush(self):
        if self.out and not self.dead:
            data = b"".join(self.out)
            self.out = []
            self.sock.sendall(data)

    # ---- main loop -------------------------------------------------------
    def run(self):
        try:
            self.sock.settimeout(self.srv.args.timeout)
            self.log("conn peer=%s port=%d local=%s:%d mode=%s"
                     % (self.peer[0], self.peer[1], self.local[0], self.local[1], self.mode))
            self.greet()
            self.flush()
            while not self.closing and not self.dead:
                try:
                    data = self.sock.recv(65536)
                except socket.timeout:
                    self.log("timeout")
                    if not self.srv.args.timeout_silent:
                        self.reply(421, "4.4.2 %s Error: timeout exceeded" % self.srv.host)
                        self.flush()
                    break
                if not data:
                    self.log("eof")
                    break
                self.buf += data
                self.process()
                self.flush()
        except ssl.SSLError as e:
            self.log("error tls: %s" % e)
        except OSError as e:
            if not self.srv.stop:
                self.log("error %s: %s" % (type(e).__name__, e))
        except Exception as e:  # keep the server alive whatever happens
            self.log("error internal %s: %s" % (type(e).__name__, e))
        finally:
            if not self.dead:
                try:
                    self.sock.close()
                except OSError:
                    pass
            self.log("close")
            with self.srv.lock:
                self.srv.sessions.discard(self)

    def greet(self):
        host = self.srv.host
        if self.mode == "greet421":
            code, text = 421, "4.3.2 Service not available, closing transmission channel"
            self.closing = True
        elif self.mode == "greet554":
            code, text = 554, "5.7.1 No SMTP service here"
            self.no_service = True
        else:
            code, text = 220, "%s ESMTP starttlsd-test" % host
        if self.srv.args.multiline_greeting:
            self.reply(code, text, "%s multi-line greeting, line 2" % host,
                       "%s multi-line greeting, end" % host)
        else:
            self.reply(code, text)

    def process(self):
        while not self.closing and not self.dead:
            if self.state == "data":
                if not self.process_data():
                    return
            elif self.state == "bdat":
                if not self.process_bdat():
                    return
            elif self.state == "skipline":
                i = self.buf.find(b"\n")
                if i < 0:
                    self.skipped += len(self.buf)
                    self.buf.clear()
                    return
                self.skipped += i + 1
                del self.buf[:i + 1]
                self.state = "cmd"
                self.log("cmd-too-long %d bytes" % self.skipped)
                self.reply(500, "5.5.6 Error: line too long")
            else:
                i = self.buf.find(b"\r\n")
                if i < 0:
                    if len(self.buf) > LINE_MAX:
                        self.skipped = len(self.buf)
                        self.buf.clear()
                        self.state = "skipline"
                    return
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                if i + 2 > LINE_MAX:
                    self.log("cmd-too-long %d bytes" % (i + 2))
                    self.reply(500, "5.5.6 Error: line too long")
                    continue
                self.command(line)

    # ---- commands --------------------------------------------------------
    def command(self, line):
        self.log("cmd " + esc(line))
        if getattr(self, "close_next", False):
            # --close-after-rset: a server that went away meanwhile.
            self.reply(421, "4.4.2 %s closing connection" % self.srv.host)
            self.closing = True
            return
        if b"\n" in line or b"\r" in line:
            self.reply(500, "5.5.2 Error: bare <CR> or <LF> received")
            return
        text = line.decode("utf-8", "surrogateescape")
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        arg = arg.strip()
        if self.no_service:
            if verb == "QUIT":
                self.reply(221, "2.0.0 Bye")
                self.closing = True
            else:
                self.reply(503, "5.5.1 Bad sequence of commands (no SMTP service here)")
            return
        handler = getattr(self, "do_" + verb, None) if verb.isalpha() and verb.isascii() else None
        if handler is None:
            self.reply(502, "5.5.2 Error: command not recognized")
            return
        handler(arg)

    def do_EHLO(self, arg):
        self.ehlo_count += 1
        if self.mode == "noehlo":
            self.reply(502, "5.5.2 Error: command not recognized")
            return
        if self.mode == "ehlo421":
            self.reply(421, "4.7.0 Too busy")
            self.closing = True
            return
        if self.mode == "tls421" and self.tls_version is not None:
            self.reply(421, "4.3.2 Shutting down")
            self.close_notify_behind()
            return
        if not arg:
            self.reply(501, "5.5.4 Syntax: EHLO hostname")
            return
        self.greeted = True
        self.helo, self.helo_verb = arg, "EHLO"
        self.reset_tx()
        lines = [self.srv.host, "PIPELINING", "SIZE %d" % self.srv.size_limit]
        if self.tls_version is None:
            if self.mode in STARTTLS_MODES:
                lines.append("STARTTLS")
            elif self.mode == "masked":
                lines.append("XXXXXXXA")
        lines += ["ENHANCEDSTATUSCODES", "8BITMIME"]
        if not self.srv.args.no_chunking:
            lines.append("CHUNKING")
        lines.append("SMTPUTF8")
        self.reply(250, *lines)

    def do_HELO(self, arg):
        self.helo_count += 1
        if self.mode == "ehlo421":
            self.reply(421, "4.7.0 Too busy")
            self.closing = True
            return
        if not arg:
            self.reply(501, "5.5.4 Syntax: HELO hostname")
            return
        self.greeted = True
        self.helo, self.helo_verb = arg, "HELO"
        self.reset_tx()
        self.reply(250, self.srv.host)

    def do_STARTTLS(self, arg):
        if self.mode not in STARTTLS_MODES:
            self.reply(502, "5.5.2 Error: command not recognized")
            return
        if arg:
            self.reply(501, "5.5.4 Syntax: STARTTLS")
            return
        if self.tls_version is not None:
            self.reply(503, "5.5.1 Error: TLS already active")
            return
        if self.mode == "refuse":
            self.reply(454, "4.7.0 TLS not available due to temporary reason")
            return
        if self.mode == "starttls421":
            self.reply(421, "4.3.2 Service shutting down")
            self.closing = True
            return
        if self.mode == "reply354":
            self.reply(354, "go ahead")
            self.mode = "plain"
            return
        self.reply(220, "2.0.0 Ready to start TLS")
        if self.mode == "inject":
            self.log("inject")
            self.reply(250, self.srv.host, "PIPELINING")
        self.flush()                          # one write, injected lines included
        if self.buf:
            # Pipelined after STARTTLS (forbidden by RFC 3207): log and discard.
            self.log("plaintext-after-starttls " + esc(self.buf))
            self.buf.clear()
        if self.mode == "badtls":
            self.bad_tls()
        else:
            self.start_tls()

    def bad_tls(self):
        garbage = b"\x00\xff\xfeTHIS IS NOT TLS\r\n" + bytes(range(0x80, 0xa0)) + b"\r\n"
        # A broken TLS stack answers the ClientHello with garbage. Wait for
        # the ClientHello first: garbage sent right behind the 220 could
        # reach the client in the same read as the 220, which is response
        # injection, a different case (mode inject) and a different signal.
        first = b""
        try:
            self.sock.settimeout(5.0)
            first = self.sock.recv(65536)
        except OSError:
            pass
        self.sock.sendall(garbage)
        self.log("garbage %d bytes" % len(garbage))
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        got = bytearray(first)          # the ClientHello, logged raw below
        deadline = time.monotonic() + 3.0
        try:
            while len(got) < 65536:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.sock.settimeout(left)
                d = self.sock.recv(65536)
                if not d:
                    break
                got += d
        except OSError:
            pass
        if got:
            self.log("raw-after-starttls %d bytes: %s" % (len(got), esc(got)))
        self.closing = True

    def start_tls(self):
        if self.srv.ctx is None:
            self.log("tls-fail no certificate configured (--cert/--key)")
            self.closing = True
            return
        # Look at what comes first: a TLS handshake record starts with 0x16. Anything
        # else is plaintext sent after our 220; log it and carry on in plaintext.
        try:
            first = self.sock.recv(1, socket.MSG_PEEK)
        except socket.timeout:
            self.log("tls-fail timeout waiting for ClientHello")
            self.closing = True
            return
        if not first:
            self.log("eof")
            self.closing = True
            return
        if first[0] != 0x16:
            time.sleep(0.05)
            try:
                peek = self.sock.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except OSError:
                peek = first
            self.log("plaintext-after-starttls " + esc(peek))
            self.log("tls-skipped (no TLS handshake); continuing in plaintext")
            self.greeted = False
            self.helo = self.helo_verb = None
            self.reset_tx()
            return
        try:
            ssock = self.srv.ctx.wrap_socket(self.sock, server_side=True,
                                             do_handshake_on_connect=False)
            self.sock = ssock
            ssock.settimeout(self.srv.args.timeout)
            ssock.do_handshake()
        except (ssl.SSLError, OSError) as e:
            self.log("tls-fail %s" % e)
            self.closing = True
            return
        self.tls_version = ssock.version()
        self.sni = getattr(ssock, "sni_name", None)
        c = ssock.cipher()
        self.cipher = c[0] if c else None
        cert = ssock.getpeercert() if self.srv.args.client_ca else None
        if cert:
            for rdn in cert.get("subject", ()):
                for k, v in rdn:
                    if k == "commonName":
                        self.client_cert = v
        self.log("tls %s cipher=%s%s" % (self.tls_version, self.cipher,
                 " client_cn=%s" % self.client_cert if self.client_cert else ""))
        # RFC 3207: forget everything learnt before TLS; EHLO needed again.
        self.greeted = False
        self.helo = self.helo_verb = None
        self.reset_tx()

    def do_MAIL(self, arg):
        if not self.greeted:
            self.reply(503, "5.5.1 Error: send HELO/EHLO first")
            return
        if self.mail_from is not None:
            self.reply(503, "5.5.1 Error: nested MAIL command")
            return
        m = re.fullmatch(r"(?is)FROM:\s*(<[^>]*>|[^\s<>]*)\s*(.*)", arg)
        if not m:
            self.reply(501, "5.5.4 Syntax: MAIL FROM:<address>")
            return
        addr = m.group(1)
        if addr.startswith("<"):
            addr = addr[1:-1]
        params = m.group(2).split()
        for p in params:
            k, _, v = p.partition("=")
            if k.upper() == "SIZE":
                if not v.isdigit():
                    self.reply(501, "5.5.4 Bad SIZE parameter")
                    return
                if int(v) > self.srv.size_limit:
                    self.reply(552, "5.3.4 Message size exceeds fixed limit")
                    return
        self.mail_from = addr
        self.mail_params = params
        self.reply(250, "2.1.0 Ok")

    def do_RCPT(self, arg):
        if self.mail_from is None:
            self.reply(503, "5.5.1 Error: need MAIL command")
            return
        m = re.fullmatch(r"(?is)TO:\s*(<[^>]*>|[^\s<>]+)\s*(.*)", arg)
        if not m:
            self.reply(501, "5.5.4 Syntax: RCPT TO:<address>")
            return
        addr = m.group(1)
        if addr.startswith("<"):
            addr = addr[1:-1]
        if not addr:
            self.reply(501, "5.1.3 Bad recipient address syntax")
            return
        for s in self.srv.args.reject_rcpt or ():
            if s in arg:
                self.reply(550, "5.1.1 no such user")
                return
        self.rcpts.append(addr)
        self.reply(250, "2.1.5 Ok")

    def do_DATA(self, arg):
        if arg:
            self.reply(501, "5.5.4 Syntax: DATA")
            return
        if self.mail_from is None:
            self.reply(503, "5.5.1 Error: need MAIL command")
            return
        if not self.rcpts:
            self.reply(503, "5.5.1 Error: need RCPT command")
            return
        if self.method == "BDAT":
            self.reply(503, "5.5.1 Error: DATA during BDAT transaction")
            return
        self.method = "DATA"
        self.content = bytearray()
        self.data_size = 0
        self.data_hint = 0
        self.state = "data"
        self.reply(354, "End data with <CR><LF>.<CR><LF>")
        self.log("data-begin")

    def process_data_lenient(self):
        """--lenient-eod: lines end at LF, CR or not; "." alone ends the data."""
        buf = self.buf
        while True:
            i = buf.find(b"\n")
            if i < 0:
                return False
            line = bytes(buf[:i + 1])
            del buf[:i + 1]
            if line.rstrip(b"\r\n") == b".":
                self.log("data-end size=%d" % self.data_size)
                self.state = "cmd"
                self.finish_message()
                return True
            if line.startswith(b"."):
                line = line[1:]
            self.data_size += len(line)
            self.content += line

    def process_data(self):
        """Consume complete content lines; True once the final dot was seen."""
        if self.srv.args.lenient_eod:
            return self.process_data_lenient()
        buf = self.buf
        if self.mode == "dropdata":
            if len(buf) >= DROP_AFTER or buf.startswith(b".\r\n") or b"\r\n.\r\n" in buf:
                self.drop(len(buf))
            return False
        pos = 0
        hint = self.data_hint      # no CRLF before this offset (avoids rescanning long lines)
        limit = self.srv.size_limit
        while True:
            i = buf.find(b"\r\n", max(pos, hint))
            if i < 0:
                break
            hint = 0
            if i == pos + 1 and buf[pos] == 0x2E:      # "." CRLF: end of data
                del buf[:i + 2]
                self.data_hint = 0
                self.log("data-end size=%d" % self.data_size)
                self.state = "cmd"
                self.finish_message()
                return True
            start = pos + 1 if buf[pos] == 0x2E else pos  # dot-unstuffing
            n = i + 2 - start
            self.data_size += n
            if not self.too_big:
                if self.data_size > limit:
                    self.too_big = True
                    self.content = bytearray()
                else:
                    self.content += buf[start:i + 2]
            pos = i + 2
        del buf[:pos]
        self.data_hint = max(0, len(buf) - 1)
        return False

    def close_notify_behind(self):
        """Send the queued reply and a TLS close_notify in one TCP segment
        (corked), so the peer reads both at once."""
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            self.flush()
            self.sock.settimeout(3.0)
            self.log("close-notify")
            self.sock.unwrap()
        except (OSError, ValueError, ssl.SSLError):
            pass
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
        except OSError:
            pass
        self.closing = True
        self.dead = True

    def do_BDAT(self, arg):
        if self.srv.args.no_chunking:
            # Not offered: an unknown command; the chunk is read as commands.
            self.reply(502, "5.5.2 Error: command not recognized")
            return
        m = re.fullmatch(r"(?i)(\d+)(?:\s+(LAST))?", arg)
        if not m:
            self.reply(501, "5.5.4 Syntax: BDAT chunk-size [LAST]")
            return
        if self.mode == "noehlo":
            self.reply(502, "5.5.2 Error: command not recognized")
            return
        size, last = int(m.group(1)), bool(m.group(2))
        err = None
        if not self.greeted:
            err = (503, "5.5.1 Error: send HELO/EHLO first")
        elif self.mail_from is None:
            err = (503, "5.5.1 Error: need MAIL command")
        elif not self.rcpts:
            err = (503, "5.5.1 Error: need RCPT command")
        elif self.method == "DATA":
            err = (503, "5.5.1 Error: BDAT during DATA transaction")
        if err is None:
            self.method = "BDAT"
        self.bdat_err = err
        self.bdat_remaining = size
        self.bdat_last = last
        self.state = "bdat"
        self.log("bdat size=%d last=%d" % (size, last))

    def process_bdat(self):
        buf = self.buf
        if (self.mode == "dropdata" and self.bdat_err is None and self.bdat_remaining
                and len(buf) >= min(DROP_AFTER, self.bdat_remaining)):
            self.drop(len(buf))
            return False
        take = min(len(buf), self.bdat_remaining)
        if take:
            if self.bdat_err is None:
                self.data_size += take
                if not self.too_big:
                    if self.data_size > self.srv.size_limit:
                        self.too_big = True
                        self.content = bytearray()
                    else:
                        self.content += buf[:take]
            del buf[:take]
            self.bdat_remaining -= take
        if self.bdat_remaining:
            return False
        self.state = "cmd"
        if self.bdat_err is not None:
            self.reply(*self.bdat_err)
            return True
        if self.too_big:
            self.reply(552, "5.3.4 Error: message file too big")
            self.reset_tx()
            return True
        if self.bdat_last:
            self.log("data-end size=%d" % self.data_size)
            self.finish_message()
        else:
            self.reply(250, "2.0.0 Ok: %d octets received" % self.data_size)
        return True

    def finish_message(self):
        if self.too_big:
            self.reply(552, "5.3.4 Error: message file too big")
        else:
            n = self.srv.store(self)
            self.log("queued %d method=%s size=%d tls=%s from=<%s> rcpt=%s"
                     % (n, self.method, len(self.content), self.tls_version,
                        esc(self.mail_from.encode("utf-8", "surrogateescape")),
                        ",".join("<%s>" % esc(r.encode("utf-8", "surrogateescape"))
                                 for r in self.rcpts)))
            self.reply(250, "2.0.0 Ok: queued as %d" % n)
        self.reset_tx()

    def drop(self, nbytes):
        self.flush()
        self.log("drop after %d bytes of message content (RST)" % nbytes)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        self.dead = True

    def do_RSET(self, arg):
        self.reset_tx()
        self.reply(250, "2.0.0 Ok")
        if self.srv.args.close_after_rset:
            self.close_next = True

    def do_AUTH(self, arg):
        # Any credentials will do: the tests only need the server's state.
        self.authenticated = True
        self.reply(235, "2.7.0 Authentication successful")

    def do_NOOP(self, arg):
        self.reply(250, "2.0.0 Ok")

    def do_VRFY(self, arg):
        if not arg:
            self.reply(501, "5.5.4 Syntax: VRFY address")
            return
        self.reply(252, "2.0.0 Cannot VRFY user, but will accept message and attempt delivery")

    def do_QUIT(self, arg):
        self.reply(221, "2.0.0 Bye")
        self.closing = True


def main(argv=None):
    ap = argparse.ArgumentParser(description="Configurable SMTP test server for starttlsd tests.")
    ap.add_argument("--listen", action="append", required=True, metavar="ADDR:PORT",
                    help="address to listen on (repeatable; IPv6 as [addr]:port)")
    ap.add_argument("--cert", help="PEM certificate (chain) for STARTTLS")
    ap.add_argument("--key", help="PEM private key for STARTTLS")
    ap.add_argument("--client-ca", help="request client certificates, verified against this CA file")
    ap.add_argument("--tls-min", choices=sorted(TLS_VERSIONS), help="minimum TLS version")
    ap.add_argument("--tls-max", choices=sorted(TLS_VERSIONS), help="maximum TLS version")
    ap.add_argument("--out", metavar="DIR", help="store msg-N.eml and msg-N.json here")
    ap.add_argument("--log", metavar="FILE", help="append one line per SMTP event")
    ap.add_argument("--hostname", default="mx.example.net")
    ap.add_argument("--mode", choices=MODES, default="starttls")
    ap.add_argument("--multiline-greeting", action="store_true")
    ap.add_argument("--reject-rcpt", action="append", metavar="SUBSTR",
                    help="RCPT TO argument containing SUBSTR gets 550 5.1.1 (repeatable)")
    ap.add_argument("--size", type=int, default=52428800, help="SIZE limit in bytes")
    ap.add_argument("--timeout", type=float, default=300.0, help="idle timeout per connection")
    ap.add_argument("--no-chunking", action="store_true", help="do not offer CHUNKING")
    ap.add_argument("--timeout-silent", action="store_true",
                    help="at the idle timeout, close without a 421")
    ap.add_argument("--close-after-rset", action="store_true",
                    help="answer the command after a RSET with 421 and close")
    ap.add_argument("--lenient-eod", action="store_true",
                    help="end DATA at a '.' line ended by a bare LF too")
    ap.add_argument("--verbose", action="store_true", help="copy log lines to stderr")
    args = ap.parse_args(argv)

    if bool(args.cert) != bool(args.key):
        ap.error("--cert and --key go together")
    if args.mode in HANDSHAKE_MODES and not args.cert:
        ap.error("--mode %s needs --cert and --key" % args.mode)
    if args.tls_min and args.tls_max and \
            TLS_VERSIONS[args.tls_min] > TLS_VERSIONS[args.tls_max]:
        ap.error("--tls-min is above --tls-max")

    srv = Server(args)
    sel = selectors.DefaultSelector()
    listeners = []
    for spec in args.listen:
        try:
            fam, sa = parse_listen(spec)
        except (ValueError, OSError) as e:
            ap.error(str(e))
        ls = socket.socket(fam, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            # Linux IP_FREEBIND: bind even while a fresh IPv6 address is still tentative (DAD).
            ls.setsockopt(socket.SOL_IP, getattr(socket, "IP_FREEBIND", 15), 1)
        except OSError:
            pass
        try:
            ls.bind(sa)
        except OSError as e:
            sys.stderr.write("smtpd: cannot listen on %s: %s\n" % (spec, e))
            return 1
        ls.listen(512)
        ls.setblocking(False)
        sel.register(ls, selectors.EVENT_READ)
        listeners.append(ls)
        a = ls.getsockname()
        srv.log.write("srv", "listen %s:%d mode=%s" % (
            "[%s]" % a[0] if fam == socket.AF_INET6 else a[0], a[1], args.mode))

    def on_signal(signum, frame):
        srv.stop = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    sys.stdout.write("ready\n")
    sys.stdout.flush()

    while not srv.stop:
        for key, _ in sel.select(timeout=0.2):
            try:
                conn, peer = key.fileobj.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                srv.log.write("srv", "accept-error %s" % e)
                continue
            conn.setblocking(True)
            sess = Session(srv, conn, peer, srv.next_conn_id())
            with srv.lock:
                srv.sessions.add(sess)
            threading.Thread(target=sess.run, daemon=True).start()

    srv.log.write("srv", "shutdown")
    for ls in listeners:
        sel.unregister(ls)
        ls.close()
    with srv.lock:
        active = list(srv.sessions)
    for s in active:
        try:
            s.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        with srv.lock:
            if not srv.sessions:
                break
        time.sleep(0.02)
    return 0


if __name__ == "__main__":
    sys.exit(main())
