#!/usr/bin/env python3
"""A UDP syslog collector for tests/firmware: appends every datagram it
receives on ADDR:PORT, as received, one line each, to OUTFILE.

usage: udp-syslogd.py ADDR PORT OUTFILE
"""
import signal
import socket
import sys

addr, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, port))
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
print("ready", flush=True)
with open(out, "ab", buffering=0) as f:
    while True:
        data, peer = s.recvfrom(65536)
        f.write(data.rstrip(b"\n\0").replace(b"\n", b" ") + b"\n")
