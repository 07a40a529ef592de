#!/usr/bin/env python3
"""A minimal syslog receiver for tests: binds a unix datagram socket (the
/dev/log that the daemon under test is given) and appends each message, as
received ("<PRI>TIMESTAMP IDENT[PID]: TEXT"), to a file, one per line.

usage: syslogd.py SOCKET OUTFILE
"""
import os
import signal
import socket
import sys

path, out = sys.argv[1], sys.argv[2]
try:
    os.unlink(path)
except FileNotFoundError:
    pass
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o666)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
print("ready", flush=True)
with open(out, "ab", buffering=0) as f:
    while True:
        data = s.recv(65536)
        f.write(data.rstrip(b"\n\0") + b"\n")
