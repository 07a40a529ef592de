#!/usr/bin/env python3
"""Scripted SMTP client for tests that need what swaks will not do.

usage: chat.py HOST PORT SCRIPT   (SCRIPT '-' = stdin)

Script lines:
  < CODE      read one complete reply; fail unless its code starts with CODE
  <           read one complete reply, whatever its code
  > TEXT      send TEXT + CRLF
  >> TEXT     send TEXT with Python escapes (\\r \\n \\x00 ...), nothing added
  >file PATH  send the bytes of PATH as they are
  starttls    start TLS on the connection (no certificate check), print version
  close-write shut down our sending side
  eof         expect the server to close (nothing more to read)
  sleep SECS
  # ...       comment
The transcript (S: sent, R: received) goes to stdout. Exit 1 on a failed
expectation, 2 on a timeout.
"""
import socket
import sys
import time

def main():
    host, port, script = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    lines = (sys.stdin if script == "-" else open(script)).read().splitlines()
    s = socket.create_connection((host, port), timeout=float(
        __import__("os").environ.get("CHAT_TIMEOUT", "15")))
    buf = b""

    def read_reply():
        nonlocal buf
        while True:
            # a complete reply: lines until one whose 4th byte is not '-'
            pos = 0
            while True:
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    break
                line = buf[pos:nl + 1]
                pos = nl + 1
                if len(line) < 4 or line[3:4] != b"-":
                    rep, buf = buf[:pos], buf[pos:]
                    return rep
            data = s.recv(65536)
            if not data:
                if buf:
                    rep, buf = buf, b""
                    return rep
                return None
            buf += data

    for raw in lines:
        line = raw.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        try:
            if line.startswith(">file "):
                data = open(line[6:], "rb").read()
                s.sendall(data)
                print("S: <%d bytes from %s>" % (len(data), line[6:]))
            elif line.startswith(">> "):
                data = line[3:].encode("latin-1").decode("unicode_escape").encode("latin-1")
                s.sendall(data)
                print("S: %r" % data)
            elif line.startswith("> "):
                s.sendall(line[2:].encode("utf-8") + b"\r\n")
                print("S: " + line[2:])
            elif line.startswith("<"):
                want = line[1:].strip()
                rep = read_reply()
                if rep is None:
                    print("R: <closed>")
                    print("FAIL: wanted %s, connection closed" % (want or "a reply"))
                    return 1
                for l in rep.decode("latin-1").splitlines():
                    print("R: " + l)
                if want and not rep.decode("latin-1").startswith(want):
                    print("FAIL: wanted %s" % want)
                    return 1
            elif line == "starttls":
                import ssl
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                if buf:
                    print("FAIL: %d bytes already received before TLS" % len(buf))
                    return 1
                s = ctx.wrap_socket(s)
                print("T: " + s.version())
            elif line == "close-write":
                s.shutdown(socket.SHUT_WR)
                print("S: <shutdown>")
            elif line == "eof":
                rep = read_reply()
                if rep is not None:
                    for l in rep.decode("latin-1").splitlines():
                        print("R: " + l)
                    print("FAIL: wanted the connection closed")
                    return 1
                print("R: <closed>")
            elif line.startswith("sleep "):
                time.sleep(float(line[6:]))
            else:
                print("bad script line: " + line)
                return 1
        except socket.timeout:
            print("FAIL: timeout at: " + line)
            return 2
        except OSError as e:
            print("FAIL: %s at: %s" % (e, line))
            return 1
    return 0

if __name__ == "__main__":
    sys.exit(main())
