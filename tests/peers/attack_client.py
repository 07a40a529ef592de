#!/usr/bin/env python3
"""Misbehaving SMTP clients for tests/integration/95-attacks.sh.

usage: attack_client.py HOST PORT MODE [--max SECS] [--interval SECS] [--bytes N]

MODEs:
  dribble      read the greeting, then send "EHLO " and one more byte of the
               name every --interval seconds (slowloris), never ending the line
  dribble-data EHLO, MAIL, RCPT, DATA, then the message content one byte
               every --interval seconds, never ending the message
  idle         read the greeting, then send nothing
  rst          greeting, EHLO, MAIL FROM, then close with SO_LINGER 0 (a RST)
  garbage      at once, --bytes random bytes (fixed seed) in place of SMTP
  clienthello  at once, a TLS ClientHello (from ssl.MemoryBIO) to the plaintext port

Then (all but rst) read until the server closes or --max seconds pass.
Output, one key=value a line: port=LOCALPORT, reply=LINE for each reply line
received (the first 50), codes=CODE,CODE,... (every reply line's code, last
lines of multi-line replies only), sent=BYTES, and last
end=closed|reset|open t=SECONDS (time since the attack started).
"""
import argparse
import random
import select
import socket
import ssl
import struct
import sys
import time


def client_hello():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="mx.example.net")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("mode", choices=("dribble", "dribble-data", "idle", "rst", "garbage", "clienthello"))
    ap.add_argument("--max", type=float, default=15.0)
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--bytes", type=int, default=65536)
    a = ap.parse_args()

    s = socket.create_connection((a.host, a.port), timeout=10)
    print("port=%d" % s.getsockname()[1], flush=True)
    rx = bytearray()
    nlines = 0
    codes = []

    def take(data):
        nonlocal nlines
        rx.extend(data)
        while b"\n" in rx:
            i = rx.index(b"\n")
            line = bytes(rx[:i + 1]).rstrip(b"\r\n").decode("latin-1")
            del rx[:i + 1]
            if nlines < 50:
                print("reply=" + line, flush=True)
            nlines += 1
            if len(line) >= 4 and line[3] != "-":
                codes.append(line[:3])
            elif len(line) < 4:
                codes.append(line[:3] or "?")

    def read_reply():
        # until a last line (4th byte not '-') has been seen
        n = len(codes)
        while len(codes) == n:
            d = s.recv(65536)
            if not d:
                raise EOFError
            take(d)

    sent = 0
    t0 = time.time()
    end = "open"
    try:
        if a.mode == "rst":
            read_reply()
            s.sendall(b"EHLO client.example.org\r\n")
            read_reply()
            s.sendall(b"MAIL FROM:<rst@example.org>\r\n")
            read_reply()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
            print("codes=" + ",".join(codes))
            print("end=rst-sent t=0")
            return 0
        if a.mode in ("dribble", "dribble-data", "idle"):
            read_reply()
            if a.mode == "dribble-data":
                for cmd in (b"EHLO client.example.org", b"MAIL FROM:<slow@example.org>",
                            b"RCPT TO:<slow@example.net>", b"DATA"):
                    s.sendall(cmd + b"\r\n")
                    read_reply()
                if codes[-1] != "354":
                    print("end=no-354 t=0")
                    return 1
            t0 = time.time()
        elif a.mode == "garbage":
            data = random.Random(95).randbytes(a.bytes)
            s.sendall(data)
            sent = len(data)
        elif a.mode == "clienthello":
            data = client_hello()
            s.sendall(data)
            sent = len(data)
        pending = {"dribble": b"EHLO ", "dribble-data": b"Subject: slow\r\n\r\n"}.get(a.mode, b"")
        s.setblocking(False)
        while time.time() - t0 < a.max:
            if a.mode.startswith("dribble"):
                try:
                    s.send(pending[:1] or b"x")
                    sent += 1
                    pending = pending[1:]
                except BlockingIOError:
                    pass
                wait = a.interval
            else:
                wait = 0.2
            r, _, _ = select.select([s], [], [], wait)
            if r:
                d = s.recv(65536)
                if not d:
                    end = "closed"
                    break
                take(d)
    except EOFError:
        end = "closed"
    except ConnectionResetError:
        end = "reset"
    except BrokenPipeError:
        end = "closed"
    if rx:
        take(b"\n")
    print("sent=%d" % sent)
    print("codes=" + ",".join(codes))
    print("end=%s t=%.1f" % (end, time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
