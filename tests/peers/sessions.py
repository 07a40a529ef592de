#!/usr/bin/env python3
"""Run N complete SMTP sessions (EHLO, MAIL, RCPT, DATA, QUIT), C at a time,
spread round-robin over the given server addresses (port 25).

usage: sessions.py N C BURST ADDR [ADDR...]

Session i goes to ADDR number (i / BURST) mod the number of addresses: BURST
sessions in a row to each, as a queue run sends to one destination.

Prints "ok=K failed=F" and exits 0 only if every session got 250 for its
message and 221 for its QUIT. Standard library only.
"""
import socket
import sys
import threading

n, conc, burst, hosts = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
lock = threading.Lock()
counts = {"ok": 0, "failed": 0}
next_i = [0]


def reply(f):
    while True:
        line = f.readline()
        if not line:
            raise EOFError("closed")
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3])


def one(i):
    host = hosts[(i // burst) % len(hosts)]
    with socket.create_connection((host, 25), timeout=30) as s:
        f = s.makefile("rb")

        def cmd(text, want):
            s.sendall(text.encode() + b"\r\n")
            code = reply(f)
            if code != want:
                raise ValueError("%s: %d, want %d" % (text, code, want))
        if reply(f) != 220:
            raise ValueError("greeting")
        cmd("EHLO client%d.example.org" % i, 250)
        cmd("MAIL FROM:<a@example.org>", 250)
        cmd("RCPT TO:<b%d@example.net>" % i, 250)
        cmd("DATA", 354)
        cmd("Subject: session %d\r\n\r\nbody %d\r\n." % (i, i), 250)
        cmd("QUIT", 221)


def worker():
    while True:
        with lock:
            i = next_i[0]
            if i >= n:
                return
            next_i[0] += 1
        try:
            one(i)
            ok = "ok"
        except Exception as e:  # noqa: BLE001 - any failure counts
            ok = "failed"
            sys.stderr.write("session %d: %s\n" % (i, e))
        with lock:
            counts[ok] += 1


threads = [threading.Thread(target=worker) for _ in range(conc)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("ok=%d failed=%d" % (counts["ok"], counts["failed"]))
sys.exit(0 if counts["failed"] == 0 else 1)
