# Real-daemon check: the server sends half a reply and closes (FIN).
import socket, subprocess, sys, time
SPORT, LPORT = 42527, 42528
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", SPORT)); srv.listen(8)
d = subprocess.Popen([sys.argv[1], "--foreground", "--log-stderr", "--master", "off",
    "--user", "", "--listen", "127.0.0.1:%d" % LPORT, "--upstream", "127.0.0.1:%d" % SPORT,
    "--state-dir", "", "--helo-name", "gw.example.org", "--upstream-mark", "0"],
    stderr=open("/tmp/fz/real/stuck.log", "w"))
time.sleep(0.5)
c = socket.create_connection(("127.0.0.1", LPORT))
s, _ = srv.accept()
s.sendall(b"220 mx ESMTP\r\n"); s.recv(100)
s.sendall(b"250 mx\r\n")
print("client:", c.recv(100))
c.sendall(b"NOOP\r\n"); time.sleep(0.1); print("server got:", s.recv(100))
s.sendall(b"250 2.0.0 O"); s.shutdown(socket.SHUT_WR)     # half a reply, then FIN
c.settimeout(10)
t = time.time()
try:
    print("client got:", c.recv(200), "after %.1fs" % (time.time() - t))
except socket.timeout:
    print("client got nothing in 10 s: the session waits for reply_timeout")
d.terminate(); d.wait()
