#!/usr/bin/env python3
"""A TLS-RPT HTTPS collector for tests/integration/89-tlsrpt.sh (standard library only).

Accepts POSTs over TLS (HTTP/1.1, Content-Length bodies up to 1 MiB) and stores each
as OUT/post-N.body with OUT/post-N.json ({"path", "content_type", "length", "headers"},
renamed into place last). Answers 200, or the status given for the path with
--status PATH=CODE (repeatable). Prints "ready" once listening; exits on SIGTERM.

  tlsrpt_collector.py --listen ADDR:PORT --cert F --key F --out DIR [--status /fail=503]
"""

import argparse
import json
import os
import signal
import socket
import ssl
import sys
import threading

BODY_MAX = 1 << 20


def handle(conn, out, statuses, counter, lock):
    try:
        conn.settimeout(20)
        f = conn.makefile("rb")
        line = f.readline(8192).decode("latin-1").rstrip("\r\n")
        parts = line.split(" ")
        if len(parts) != 3:
            return
        method, path, _ = parts
        headers = {}
        for _ in range(100):
            h = f.readline(8192).decode("latin-1")
            if h in ("\r\n", "\n", ""):
                break
            k, _, v = h.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        if n < 0 or n > BODY_MAX:
            return
        body = f.read(n) if method == "POST" else b""
        with lock:
            counter[0] += 1
            k = counter[0]
        base = os.path.join(out, "post-%d" % k)
        with open(base + ".body", "wb") as fp:
            fp.write(body)
        meta = {"method": method, "path": path, "length": len(body),
                "content_type": headers.get("content-type", ""), "headers": headers}
        with open(base + ".json.tmp", "w") as fp:
            json.dump(meta, fp)
        os.rename(base + ".json.tmp", base + ".json")
        code = statuses.get(path, 200)
        reason = "OK" if code == 200 else "Unavailable"
        resp = "ok\n" if code == 200 else "try later\n"
        conn.sendall(("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                      "Connection: close\r\n\r\n%s" % (code, reason, len(resp), resp)).encode())
    except (OSError, ValueError, ssl.SSLError):
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--status", action="append", default=[])
    a = ap.parse_args()
    statuses = {}
    for s in a.status:
        p, _, c = s.rpartition("=")
        statuses[p] = int(c)
    os.makedirs(a.out, exist_ok=True)
    host, _, port = a.listen.rpartition(":")
    host = host.strip("[]")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(a.cert, a.key)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, int(port)))
    ls.listen(16)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print("ready", flush=True)
    counter, lock = [0], threading.Lock()
    while True:
        c, _ = ls.accept()
        try:
            t = ctx.wrap_socket(c, server_side=True)
        except (ssl.SSLError, OSError) as e:
            print("tls-fail %s" % e, file=sys.stderr, flush=True)
            c.close()
            continue
        threading.Thread(target=handle, args=(t, a.out, statuses, counter, lock),
                         daemon=True).start()


if __name__ == "__main__":
    main()
