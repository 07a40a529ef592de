#!/usr/bin/env python3
"""A small HTTPS test server for proxy/https.c and proxy/stsfetch.c (python3
ssl + sockets, no pip). Every response is written byte by byte here, so the
tests control exactly what the client sees.

usage: httpsd.py --listen ADDR:PORT [--listen [V6]:PORT] --cert C --key K
                 [--mode MODE | --mode-file F] [--file F] [--ctype T]
                 [--log F] [--capture DIR]

Modes (--mode-file is re-read at every request, so a test can switch it):
  file      200, the --file bytes (re-read each time), Content-Length, --ctype
            (default text/plain)
  chunked   200, the --file bytes in chunks of 7 bytes (Transfer-Encoding: chunked)
  close     200, the --file bytes, no length, then close_notify and close
  redirect  301 to https://elsewhere.example/.well-known/mta-sts.txt
  404       404 Not Found
  html      200 with Content-Type text/html (the --file bytes)
  big       200 text/plain, 70 KiB (71680 bytes) with Content-Length
  bigchunk  200 text/plain, 70 KiB chunked
  slow      reads the request and never answers (until the client goes)
  badstatus "HTTP/1.1 2x0 what" as the status line
  raw       the --raw file's bytes as the whole response, then close_notify
  rawcut    the same, then a TCP close without close_notify
  capture   POST: the body is written to DIR/post-N.bin, the headers to
            DIR/post-N.head; answers 200 (GET too: 200 with the file)
--plain answers in clear text (no TLS); --tls-max 1.1|1.2|1.3 caps the version.
Every request is logged to --log as one line: "METHOD PATH host=HOST mode=M".
Prints "ready" on stdout once listening.
"""
import argparse
import os
import socket
import ssl
import sys
import threading
import time

BIG = 71680


def log(args, line):
    if args.log:
        with open(args.log, "a") as f:
            f.write(line + "\n")


def mode_now(args):
    if args.mode_file:
        try:
            with open(args.mode_file) as f:
                m = f.read().strip()
                if m:
                    return m
        except OSError:
            pass
    return args.mode


def read_file(args):
    if not args.file:
        return b"version: STSv1\r\nmode: enforce\r\nmx: mx.example.net\r\nmax_age: 86400\r\n"
    with open(args.file, "rb") as f:
        return f.read()


def read_request(conn):
    """The head and (for a Content-Length) the body; None if the client went."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return None, None, None, None
        data += chunk
        if len(data) > 65536:
            return None, None, None, None
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for h in lines[1:]:
        k, _, v = h.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0") or 0)
    while len(rest) < n:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    return lines[0], hdrs, head + b"\r\n\r\n", rest[:n] if n else b""


def response(status, ctype, body, extra=b""):
    h = b"HTTP/1.1 " + status + b"\r\n"
    if ctype:
        h += b"Content-Type: " + ctype.encode() + b"\r\n"
    h += b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    h += extra + b"Connection: close\r\n\r\n"
    return h + body


def chunked(ctype, body, size):
    out = b"HTTP/1.1 200 OK\r\nContent-Type: " + ctype.encode() + \
        b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    for i in range(0, len(body), size):
        c = body[i:i + size]
        out += b"%x\r\n" % len(c) + c + b"\r\n"
    return out + b"0\r\n\r\n"


counter = [0]
counter_lock = threading.Lock()


def handle(args, ctx, raw):
    raw.settimeout(120)
    if args.plain:
        # no TLS at all: an HTTP reply in clear, whatever the client sent
        try:
            raw.recv(4096)
            raw.sendall(response(b"200 OK", "text/plain", b"plain\n"))
        except OSError:
            pass
        raw.close()
        return
    try:
        conn = ctx.wrap_socket(raw, server_side=True)
    except (OSError, ssl.SSLError):
        raw.close()
        return
    try:
        r = read_request(conn)
        if r[0] is None:
            return
        reqline, hdrs, rawhead, body = r
        mode = mode_now(args)
        parts = reqline.split(" ")
        method = parts[0]
        path = parts[1] if len(parts) > 1 else ""
        log(args, "%s %s host=%s mode=%s" % (method, path, hdrs.get("host", ""), mode))
        ctype = args.ctype
        if method == "POST" and (mode == "capture" or args.capture):
            with counter_lock:
                counter[0] += 1
                n = counter[0]
            d = args.capture or "."
            with open(os.path.join(d, "post-%d.head.tmp" % n), "wb") as f:
                f.write(rawhead)
            with open(os.path.join(d, "post-%d.bin.tmp" % n), "wb") as f:
                f.write(body)
            os.rename(os.path.join(d, "post-%d.head.tmp" % n), os.path.join(d, "post-%d.head" % n))
            os.rename(os.path.join(d, "post-%d.bin.tmp" % n), os.path.join(d, "post-%d.bin" % n))
            conn.sendall(response(b"200 OK", "text/plain", b"thanks\n"))
        elif mode in ("file", "capture"):
            conn.sendall(response(b"200 OK", ctype, read_file(args)))
        elif mode == "chunked":
            conn.sendall(chunked(ctype, read_file(args), 7))
        elif mode == "close":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: " + ctype.encode() +
                         b"\r\nConnection: close\r\n\r\n" + read_file(args))
            conn = conn.unwrap()   # close_notify
        elif mode == "redirect":
            conn.sendall(response(b"301 Moved Permanently", "text/html", b"moved\n",
                                  b"Location: https://elsewhere.example/.well-known/mta-sts.txt\r\n"))
        elif mode == "404":
            conn.sendall(response(b"404 Not Found", "text/plain", b"not found\n"))
        elif mode == "html":
            conn.sendall(response(b"200 OK", "text/html", read_file(args)))
        elif mode == "big":
            conn.sendall(response(b"200 OK", "text/plain", b"x" * (BIG - 1) + b"\n"))
        elif mode == "bigchunk":
            conn.sendall(chunked("text/plain", b"x" * (BIG - 1) + b"\n", 4096))
        elif mode == "slow":
            while conn.recv(1):
                pass
            return
        elif mode in ("raw", "rawcut"):
            with open(args.raw, "rb") as f:
                conn.sendall(f.read())
            if mode == "raw":
                conn = conn.unwrap()   # close_notify
            else:
                conn.shutdown(socket.SHUT_RDWR)   # TCP close, no close_notify
        elif mode == "badstatus":
            conn.sendall(b"HTTP/1.1 2x0 what\r\nContent-Length: 0\r\n\r\n")
        else:
            conn.sendall(response(b"500 Unknown Mode", "text/plain", b"?\n"))
        time.sleep(0.05)
    except (OSError, ssl.SSLError, ValueError):
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


def serve(args, ctx, sock):
    while True:
        raw, _ = sock.accept()
        threading.Thread(target=handle, args=(args, ctx, raw), daemon=True).start()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", action="append", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--mode", default="file")
    ap.add_argument("--mode-file")
    ap.add_argument("--file")
    ap.add_argument("--ctype", default="text/plain")
    ap.add_argument("--log")
    ap.add_argument("--capture")
    ap.add_argument("--raw", help="the whole response for modes raw and rawcut")
    ap.add_argument("--plain", action="store_true", help="no TLS (the client's handshake fails)")
    ap.add_argument("--tls-max", choices=["1.1", "1.2", "1.3"], help="highest TLS version offered")
    args = ap.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if args.tls_max == "1.1":
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    elif args.tls_max == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)
    socks = []
    for l in args.listen:
        host, _, port = l.rpartition(":")
        fam = socket.AF_INET
        if host.startswith("["):
            host = host[1:-1]
            fam = socket.AF_INET6
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((host, int(port)))
        s.listen(64)
        socks.append(s)
    for s in socks:
        threading.Thread(target=serve, args=(args, ctx, s), daemon=True).start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
