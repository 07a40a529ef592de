# Real-daemon check of the EBADF finding: the server answers 421 and resets
# (close with unread data -> RST) while the client keeps pipelining.
import socket, struct, subprocess, sys, time, os

SPORT, LPORT = 42525, 42526
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", SPORT)); srv.listen(8)
d = subprocess.Popen([sys.argv[1], "--foreground", "--log-stderr", "--master", "off",
    "--user", "", "--listen", "127.0.0.1:%d" % LPORT, "--upstream", "127.0.0.1:%d" % SPORT,
    "--state-dir", "", "--helo-name", "gw.example.org", "--upstream-mark", "0"],
    stderr=open("/tmp/fz/real/daemon.log", "w"))
time.sleep(0.5)
crashed = False
for attempt in range(20):
    c = socket.create_connection(("127.0.0.1", LPORT))
    s, _ = srv.accept()
    s.sendall(b"220 mx ESMTP\r\n"); s.recv(100)           # our EHLO
    s.sendall(b"250 mx\r\n")
    c.recv(100)                                           # greeting
    c.sendall(b"NOOP\r\n"); time.sleep(0.05); s.recv(100)  # NOOP reached the server
    c.sendall(b"NOOP\r\n" * 50)                            # pipelined, unread by the server
    time.sleep(0.02)
    s.sendall(b"421 4.4.2 closing\r\n")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()                                             # RST
    c.sendall(b"NOOP\r\n" * 50)
    time.sleep(0.1)
    c.close()
    if d.poll() is not None:
        crashed = True
        break
print("daemon exited" if crashed else "daemon alive", "after", attempt + 1, "attempts, rc", d.poll())
if d.poll() is None:
    d.terminate(); d.wait()
