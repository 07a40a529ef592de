#!/usr/bin/env python3
"""A stand-in for systemd's notification socket, for tests/ops/test-notify.sh.

usage: notifyd.py SOCKET OUT
Binds a datagram socket at SOCKET (a path), prints "ready", and appends each
datagram it receives to OUT as one line: its newlines written as " | ",
with the sender's credentials (pid) first: "pid=N READY=1 | STATUS=...".
"""
import os
import socket
import struct
import sys

path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
os.chmod(path, 0o777)
print("ready", flush=True)
with open(out, "a", buffering=1) as f:
    while True:
        msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = 0
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", data[:12])[0]
        f.write("pid=%d %s\n" % (pid, msg.decode(errors="replace").replace("\n", " | ")))
