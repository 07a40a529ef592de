#!/usr/bin/env python3
"""Open N concurrent SMTP sessions, hold them, then finish them all.

usage: many.py HOST PORT N HOLD_SECONDS READY_FILE

Each session reads the greeting and does EHLO; when all N are there it
writes READY_FILE (the count of sessions that got their EHLO reply), holds
them HOLD_SECONDS, then sends QUIT on each and counts the 221s. Prints
"ehlo=N quit=M" and exits 0 only if both equal N.
"""
import selectors
import socket
import sys
import time

host, port, n, hold, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
sel = selectors.DefaultSelector()
socks = []
state = {}
for i in range(n):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.setblocking(False)
    s.connect_ex((host, port))
    socks.append(s)
    state[s] = [b"", "greet"]
    sel.register(s, selectors.EVENT_READ)

def complete(buf):
    lines = buf.split(b"\n")
    return len(lines) > 1 and len(lines[-2]) >= 4 and lines[-2][3:4] == b" "

def pump(want, deadline):
    done = 0
    while time.time() < deadline:
        done = sum(1 for s in socks if state[s][1] == want)
        if done == len(socks):
            return done
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                if state[s][1] != "done":  # the server closes after its 221
                    state[s][1] = "closed"
                continue
            state[s][0] += data
            if not complete(state[s][0]):
                continue
            reply, state[s][0] = state[s][0], b""
            st = state[s][1]
            if st == "greet" and reply.startswith(b"220"):
                s.send(b"EHLO many.example.org\r\n")
                state[s][1] = "ehlo"
            elif st == "ehlo" and reply.startswith(b"250"):
                state[s][1] = "held"
            elif st == "quit" and reply.startswith(b"221"):
                state[s][1] = "done"
    return sum(1 for s in socks if state[s][1] == want)

held = pump("held", time.time() + 60)
open(ready, "w").write("%d\n" % held)
time.sleep(hold)
for s in socks:
    if state[s][1] == "held":
        s.send(b"QUIT\r\n")
        state[s][1] = "quit"
quit_ = pump("done", time.time() + 60)
print("ehlo=%d quit=%d" % (held, quit_))
sys.exit(0 if held == n and quit_ == n else 1)
