#!/usr/bin/env python3
"""Misbehaving SMTP servers for tests/integration/95-attacks.sh.

usage: attack_server.py [--cert PEM --key PEM] --log FILE ADDR:PORT=MODE ...

One process serves every ADDR:PORT=MODE given (a thread per connection), so a
test picks the misbehaviour by the address it connects to. MODEs:

  silent-mail   220, EHLO answered (no STARTTLS), MAIL never answered
  rst-greeting  220, then a TCP RST (SO_LINGER 0) right away
  rst-mail      EHLO answered, a RST in answer to MAIL
  halfclose     minimal SMTP; after the 221 to QUIT it shuts its write side
                and waits for the peer to close, then logs "peer-closed"
  tls-noclose   STARTTLS offered; after the 221 to QUIT inside TLS it closes
                TCP without a TLS close_notify
  tls-cut       STARTTLS offered; MAIL inside TLS gets no reply: TCP is closed
                without close_notify (a truncation)
  endless-ehlo  EHLO answered with "250-x" lines that never end
  endless-mail  MAIL answered with "250-x" lines that never end
  endless-line  MAIL answered with one reply line that never ends (no LF)
  slowdata      minimal SMTP; reads a DATA body slowly (32 KiB every 10 ms,
                64 KiB receive buffer) and logs "message bytes=N sha256=HEX"

Every other command gets a plain 250 (DATA: 354, then 250 after the dot).
The log (one line per event, "ADDR MODE cN event") is flushed at once.
Prints "ready" when every listener is open.
"""
import argparse
import hashlib
import os
import socket
import ssl
import struct
import sys
import threading
import time

ENDLESS_CAP = 256 << 20     # never send more than this, whatever happens
ENDLESS_SECS = 30


class Log:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def write(self, text):
        with self.lock:
            self.f.write("%.3f %s\n" % (time.time(), text))
            self.f.flush()


class Conn:
    def __init__(self, sock, mode, addr, cid, log, ctx):
        self.sock, self.mode, self.ctx = sock, mode, ctx
        self.tag = "%s %s c%d" % (addr, mode, cid)
        self.log = lambda e: log.write("%s %s" % (self.tag, e))
        self.buf = b""
        self.tls = False

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                return None
            self.buf += d
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l

    def rst(self):
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()
        self.log("rst")

    def close_no_notify(self):
        # detach() leaves the fd open and forgets the TLS state: no close_notify.
        fd = self.sock.detach()
        os.close(fd)
        self.log("closed-without-close_notify")

    def endless(self, piece):
        chunk = piece * (65536 // len(piece))
        sent, end, why = 0, time.time() + ENDLESS_SECS, "cap"
        try:
            while sent < ENDLESS_CAP and time.time() < end:
                self.sock.sendall(chunk)
                sent += len(chunk)
        except OSError as e:
            why = type(e).__name__
        self.log("endless-stopped bytes=%d why=%s" % (sent, why))
        try:
            self.sock.close()
        except OSError:
            pass

    def slow_body(self):
        h, n = hashlib.sha256(), 0
        data = bytearray(self.buf)
        self.buf = b""
        self.sock.settimeout(30)
        while not data.endswith(b"\r\n.\r\n"):
            d = self.sock.recv(32768)
            if not d:
                self.log("eof-in-data bytes=%d" % len(data))
                return False
            data += d
            time.sleep(0.01)
        body = bytes(data[:-3])
        h.update(body)
        self.log("message bytes=%d sha256=%s" % (len(body), h.hexdigest()))
        return True

    def body(self):
        while True:
            l = self.line()
            if l is None or l == b".":
                return l is not None

    def run(self):
        m = self.mode
        self.log("conn")
        if m == "rst-greeting":
            # linger set first: the RST follows the 220 as closely as can be
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.send(b"220 %s.example.net ESMTP attack_server\r\n" % m.encode())
        if m == "rst-greeting":
            return self.rst()
        while True:
            l = self.line()
            if l is None:
                self.log("eof")
                return
            self.log("cmd " + l[:80].decode("latin-1"))
            verb = l.split(b" ", 1)[0].upper()
            if verb == b"EHLO":
                if m == "endless-ehlo":
                    return self.endless(b"250-x\r\n")
                caps = [b"250-%s.example.net" % m.encode(), b"250-PIPELINING"]
                if m.startswith("tls-") and not self.tls:
                    caps.append(b"250-STARTTLS")
                caps.append(b"250 8BITMIME")
                self.send(b"\r\n".join(caps) + b"\r\n")
            elif verb == b"STARTTLS" and m.startswith("tls-") and not self.tls:
                self.send(b"220 2.0.0 go ahead\r\n")
                self.sock = self.ctx.wrap_socket(self.sock, server_side=True)
                self.tls = True
                self.log("tls " + self.sock.version())
            elif verb == b"MAIL":
                if m == "silent-mail":
                    self.log("holding MAIL, no reply")
                    self.sock.settimeout(60)
                    try:
                        while self.sock.recv(65536):
                            pass
                    except OSError:
                        pass
                    self.log("peer-closed")
                    return
                if m == "rst-mail":
                    return self.rst()
                if m == "tls-cut" and self.tls:
                    return self.close_no_notify()
                if m == "endless-mail":
                    return self.endless(b"250-x\r\n")
                if m == "endless-line":
                    self.send(b"250 ")
                    return self.endless(b"x")
                self.send(b"250 2.1.0 ok\r\n")
            elif verb == b"DATA":
                self.send(b"354 go ahead\r\n")
                ok = self.slow_body() if m == "slowdata" else self.body()
                if not ok:
                    return
                self.send(b"250 2.0.0 queued\r\n")
            elif verb == b"QUIT":
                self.send(b"221 2.0.0 bye\r\n")
                if m == "tls-noclose" and self.tls:
                    return self.close_no_notify()
                if m == "halfclose":
                    self.sock.shutdown(socket.SHUT_WR)
                    self.log("shut-write")
                    self.sock.settimeout(10)
                    try:
                        while self.sock.recv(65536):
                            pass
                        self.log("peer-closed")
                    except OSError as e:
                        self.log("peer-error %s" % type(e).__name__)
                self.sock.close()
                self.log("close")
                return
            else:
                self.send(b"250 2.0.0 ok\r\n")


def serve(ls, addr, mode, log, ctx, counter):
    while True:
        c, _ = ls.accept()
        with counter[1]:
            counter[0] += 1
            cid = counter[0]

        def run(c=c, cid=cid):
            conn = Conn(c, mode, addr, cid, log, ctx)
            try:
                conn.run()
            except Exception as e:  # log and go on: the test reads the log
                conn.log("error %s: %s" % (type(e).__name__, e))
        threading.Thread(target=run, daemon=True).start()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--log", required=True)
    ap.add_argument("spec", nargs="+", help="ADDR:PORT=MODE")
    a = ap.parse_args()
    ctx = None
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
    log = Log(a.log)
    counter = [0, threading.Lock()]
    threads = []
    for spec in a.spec:
        hp, mode = spec.rsplit("=", 1)
        host, port = hp.rsplit(":", 1)
        ls = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if mode == "slowdata":
            # a small window, so the kernel does not soak up what we read slowly
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        ls.bind((host.strip("[]"), int(port)))
        ls.listen(64)
        t = threading.Thread(target=serve, args=(ls, host, mode, log, ctx, counter), daemon=True)
        t.start()
        threads.append(t)
    print("ready", flush=True)
    for t in threads:
        t.join()


if __name__ == "__main__":
    sys.exit(main())
