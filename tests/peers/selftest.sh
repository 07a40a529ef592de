#!/usr/bin/env bash
# Self-test of the SMTP test server tests/peers/smtpd.py (and tests/peers/mkcerts.sh).
# Talks to it on 127.0.0.1 only, on random high ports, with swaks and small Python
# clients. Prints "selftest: N passed, M failed"; exits non-zero on any failure.
#
#   PYTHON=/usr/bin/python3 tests/peers/selftest.sh   # interpreter for server and clients
#   KEEP=1 tests/peers/selftest.sh                    # keep the work directory
#
# Needs: python3, openssl, swaks with TLS support (Debian: libnet-ssleay-perl).
set -u

here=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}
SMTPD=$here/smtpd.py
work=$(mktemp -d "${TMPDIR:-/tmp}/smtpd-selftest.XXXXXX")
pids=()
pass=0
fail=0

cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  if [ "${KEEP:-0}" = 1 ] || [ "$fail" -ne 0 ]; then
    echo "selftest: work directory kept: $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

ok() { pass=$((pass + 1)); echo "ok   - $1"; }
ko() { fail=$((fail + 1)); echo "FAIL - $1${2:+ ($2)}"; }
# check DESC CMD...: pass if CMD succeeds
check() { local d=$1; shift; if "$@"; then ok "$d"; else ko "$d"; fi; }

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start NAME [smtpd args...]: start a server; sets PORT, DIR (holds out/ log stdout stderr), PID
start() {
  local name=$1 _try _i
  shift
  DIR=$work/$name
  mkdir -p "$DIR"
  for _try in 1 2 3 4 5; do
    PORT=$(free_port)
    "$PY" "$SMTPD" --listen "127.0.0.1:$PORT" --out "$DIR/out" --log "$DIR/log" "$@" \
      >"$DIR/stdout" 2>"$DIR/stderr" &
    PID=$!
    for _i in $(seq 200); do
      grep -qx ready "$DIR/stdout" 2>/dev/null && break
      kill -0 "$PID" 2>/dev/null || break
      sleep 0.05
    done
    if grep -qx ready "$DIR/stdout" 2>/dev/null; then
      pids+=("$PID")
      return 0
    fi
    kill -TERM "$PID" 2>/dev/null
    wait "$PID" 2>/dev/null
  done
  echo "selftest: could not start smtpd $name: $(cat "$DIR/stderr")" >&2
  return 1
}

# stop PID: SIGTERM, return its exit status
stop() {
  local p=$1 rc keep=() q
  kill -TERM "$p" 2>/dev/null
  wait "$p"
  rc=$?
  for q in "${pids[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
  pids=("${keep[@]}")
  return $rc
}

swaks_() { swaks --server 127.0.0.1 --port "$PORT" --helo client.example.com \
  --from sender@example.org --to rcpt@example.com "$@"; }
swaks_q() { swaks_ "$@" >>"$DIR/swaks.out" 2>&1; }

# json FILE PYEXPR: evaluate PYEXPR with d = the parsed json; succeed if it is true
json() {
  "$PY" -c 'import json, sys
d = json.load(open(sys.argv[1]))
ok = eval(sys.argv[2])
if not ok:
    sys.stderr.write("  json check failed: %s\n  %s\n" % (sys.argv[2], d))
sys.exit(0 if ok else 1)' "$1" "$2"
}

# wait_file FILE: poll up to 5 s
wait_file() { local _i; for _i in $(seq 100); do [ -e "$1" ] && return 0; sleep 0.05; done; return 1; }
logged() { grep -qF -- "$1" "$DIR/log"; }
not_logged() { ! grep -qF -- "$1" "$DIR/log"; }
no_messages() { ! ls "$DIR/out"/msg-*.json >/dev/null 2>&1; }
count_messages() { find "$DIR/out" -maxdepth 1 -name "msg-*.json" 2>/dev/null | wc -l; }

# Python client prelude for raw-socket tests (PORT, DIR, CA come from the environment).
read -r -d '' PYPRE <<'EOF'
import json, os, socket, ssl, sys, threading, time
PORT = int(os.environ["PORT"]); DIR = os.environ["DIR"]; CA = os.environ["CA"]
class Client:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
        self.buf = b""
    def send(self, data):
        self.s.sendall(data)
    def line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError("connection closed; buffered %r" % self.buf)
            self.buf += d
        l, _, self.buf = self.buf.partition(b"\r\n")
        return l
    def reply(self):
        lines = []
        while True:
            l = self.line(); lines.append(l)
            if len(l) < 4 or l[3:4] != b"-":
                return int(l[:3]), b"\r\n".join(lines).decode("utf-8", "replace")
    def cmd(self, c):
        self.send(c.encode() + b"\r\n")
        return self.reply()
    def expect(self, code, what=""):
        got, text = self.reply()
        assert got == code, "expected %d for %s, got %r" % (code, what, text)
        return text
    def tls(self, hostname="mx.example.net"):
        ctx = ssl.create_default_context(cafile=CA)
        assert not self.buf, "unexpected bytes before TLS: %r" % self.buf
        self.s = ctx.wrap_socket(self.s, server_hostname=hostname)
        return self.s.version()
def load(n):
    with open(os.path.join(DIR, "out", "msg-%d.json" % n)) as f:
        meta = json.load(f)
    with open(os.path.join(DIR, "out", "msg-%d.eml" % n), "rb") as f:
        return meta, f.read()
EOF

# pyt DESC <<'EOF' ... EOF : run a Python client script (with PYPRE) as one test
pyt() {
  local desc=$1 code out
  code=$(cat)
  if out=$(PORT=$PORT DIR=$DIR CA=$work/certs/ca.crt "$PY" -c "$PYPRE"$'\n'"$code" 2>&1); then
    ok "$desc"
  else
    ko "$desc"
    printf '%s\n' "$out" | tail -5 | sed 's/^/    /'
  fi
}

command -v swaks >/dev/null || { echo "selftest: swaks not found" >&2; exit 1; }
command -v openssl >/dev/null || { echo "selftest: openssl not found" >&2; exit 1; }

echo "selftest: python $("$PY" -c 'import sys, ssl; print(sys.version.split()[0], ssl.OPENSSL_VERSION)')"

# ---------------------------------------------------------------------------------------
# certificates
"$here/mkcerts.sh" "$work/certs"
C=$work/certs
check "mkcerts: all files created" test -s "$C/ca.crt" -a -s "$C/ca.key" -a -s "$C/server.crt" \
  -a -s "$C/server.key" -a -s "$C/selfsigned.crt" -a -s "$C/selfsigned.key" -a -s "$C/proxy.crt" -a -s "$C/proxy.key"
check "mkcerts: server cert has the SANs" sh -c "openssl x509 -in '$C/server.crt' -noout -ext subjectAltName |
  grep -q 'DNS:mx.example.net, IP Address:198.51.100.25, IP Address:2001:DB8:2:0:0:0:0:25'"
check "mkcerts: server and proxy certs verify against the CA" \
  sh -c "openssl verify -CAfile '$C/ca.crt' '$C/server.crt' '$C/proxy.crt' >/dev/null"
check "mkcerts: self-signed cert does not verify against the CA" \
  sh -c "! openssl verify -CAfile '$C/ca.crt' '$C/selfsigned.crt' >/dev/null 2>&1"
check "mkcerts: EC P-256 keys" sh -c "openssl pkey -in '$C/server.key' -noout -text | grep -q 'NIST CURVE: P-256'"
sum1=$(cat "$C"/*.crt | md5sum)
"$here/mkcerts.sh" "$C"
check "mkcerts: idempotent" test "$sum1" = "$(cat "$C"/*.crt | md5sum)"

TLSARGS=(--cert "$C/server.crt" --key "$C/server.key")

# ---------------------------------------------------------------------------------------
# mode starttls, swaks --tls, TLS 1.3, byte-exact body with dot lines and 8-bit bytes
start starttls --mode starttls "${TLSARGS[@]}" --reject-rcpt nobody@
# swaks ends DATA with CRLF.CRLF after the body, so a body file without a final CRLF is
# received as file + CRLF. swaks dot-stuffs lines starting with '.'.
printf 'From: sender@example.org\r\nTo: rcpt@example.com\r\nSubject: selftest\r\n\r\n.leading dot\r\n..two dots\r\n.\r\n\r\n8-bit: \xc3\xa9\xe9\xff\x80 end\r\n. \r\nlast line' >"$work/body"
{ cat "$work/body"; printf '\r\n'; } >"$work/body.expected"
if swaks_ --tls --tls-verify --tls-ca-path "$C/ca.crt" --data @"$work/body" >"$DIR/swaks1.out" 2>&1; then
  ok "starttls: swaks --tls delivers"
else
  ko "starttls: swaks --tls delivers" "see $DIR/swaks1.out"
fi
M=$DIR/out/msg-1
wait_file "$M.json"
check "starttls: json says TLSv1.3" json "$M.json" 'd["tls"] == "TLSv1.3" and d["cipher"]'
check "starttls: json envelope" json "$M.json" \
  'd["mail_from"] == "sender@example.org" and d["rcpt_to"] == ["rcpt@example.com"] and d["method"] == "DATA" and d["helo"] == "client.example.com" and d["ehlo_count"] == 2 and d["peer"] == "127.0.0.1"'
check "starttls: .eml matches the body byte for byte" cmp -s "$M.eml" "$work/body.expected"
check "starttls: json size matches" json "$M.json" "d['size'] == $(wc -c <"$work/body.expected")"
check "starttls: log has the dialogue" sh -c "grep -q ' cmd STARTTLS' '$DIR/log' && grep -q ' tls TLSv1.3 cipher=' '$DIR/log' && grep -q ' reply 250 2.0.0 Ok: queued as 1' '$DIR/log'"

pyt "starttls: EHLO lists all extensions; STARTTLS only before TLS" <<'EOF'
c = Client(); c.expect(220, "greeting")
code, text = c.cmd("EHLO a.example")
lines = text.split("\r\n")
assert code == 250 and lines[0] == "250-mx.example.net", text
for ext in ("SIZE 52428800", "PIPELINING", "8BITMIME", "SMTPUTF8", "CHUNKING", "ENHANCEDSTATUSCODES", "STARTTLS"):
    assert ("250-" + ext) in lines or ("250 " + ext) in lines, (ext, text)
assert c.cmd("STARTTLS")[0] == 220
assert c.tls() == "TLSv1.3"
code, text = c.cmd("MAIL FROM:<a@example.org>")
assert code == 503, text          # EHLO needed again after TLS
code, text = c.cmd("EHLO a.example")
assert code == 250 and "STARTTLS" not in text, text
assert c.cmd("STARTTLS")[0] == 503
assert c.cmd("QUIT")[0] == 221
EOF

pyt "starttls: pipelined DATA, rejected RCPT, dot-unstuffing, bare LF kept" <<'EOF'
c = Client(); c.expect(220); c.cmd("EHLO b.example")
c.send(b"MAIL FROM:<p@example.org> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<one@example.com>\r\n"
       b"RCPT TO:<nobody@example.com>\r\nRCPT TO:<two@example.com>\r\nDATA\r\n")
assert c.reply()[0] == 250
assert c.reply()[0] == 250
code, text = c.reply(); assert code == 550 and text == "550 5.1.1 no such user", text
assert c.reply()[0] == 250
assert c.reply()[0] == 354
c.send(b"Subject: x\r\n\r\nbare\nLF and bare\rCR\r\n..stuffed\r\n...\r\n.\r\n")
code, text = c.reply(); assert code == 250 and text.startswith("250 2.0.0 Ok: queued as "), text
n = int(text.rsplit(" ", 1)[1])
meta, eml = load(n)
assert eml == b"Subject: x\r\n\r\nbare\nLF and bare\rCR\r\n.stuffed\r\n..\r\n", eml
assert meta["rcpt_to"] == ["one@example.com", "two@example.com"], meta
assert meta["mail_params"] == ["SIZE=100", "BODY=8BITMIME"] and meta["tls"] is None, meta
# second message on the same connection, empty body
c.send(b"MAIL FROM:<>\r\nRCPT TO:<three@example.com>\r\nDATA\r\n")
assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
c.send(b".\r\n")
code, text = c.reply(); assert code == 250, text
meta, eml = load(int(text.rsplit(" ", 1)[1]))
assert eml == b"" and meta["mail_from"] == "" and meta["size"] == 0, (meta, eml)
assert c.cmd("QUIT")[0] == 221
EOF

pyt "starttls: BDAT chunks stored raw (pipelined, binary)" <<'EOF'
c = Client(); c.expect(220); c.cmd("EHLO c.example")
ch1 = b"Subject: bdat\r\n\r\n.dot\r\n\r\n.\r\n\x00\x01"
ch2 = b"\xff\xfe bare\nLF\r\nlast\r\n"
c.send(b"MAIL FROM:<b@example.org>\r\nRCPT TO:<r@example.com>\r\n"
       + b"BDAT %d\r\n" % len(ch1) + ch1 + b"BDAT %d LAST\r\n" % len(ch2) + ch2)
assert c.reply()[0] == 250 and c.reply()[0] == 250
code, text = c.reply(); assert code == 250, text
code, text = c.reply(); assert code == 250 and "queued as" in text, text
meta, eml = load(int(text.rsplit(" ", 1)[1]))
assert eml == ch1 + ch2, eml
assert meta["method"] == "BDAT" and meta["size"] == len(ch1 + ch2), meta
# BDAT 0 LAST, and BDAT without a transaction: chunk is consumed, then 503
c.send(b"BDAT 5 LAST\r\nhello")
code, text = c.reply(); assert code == 503, text
c.send(b"MAIL FROM:<b@example.org>\r\nRCPT TO:<r@example.com>\r\nBDAT 3\r\nabcBDAT 0 LAST\r\n")
assert [c.reply()[0] for _ in range(4)] == [250, 250, 250, 250]
assert c.cmd("NOOP")[0] == 250
assert c.cmd("QUIT")[0] == 221
EOF

pyt "starttls: command errors (503/502/252/500/501) and recovery" <<'EOF'
c = Client(); c.expect(220)
assert c.cmd("MAIL FROM:<a@example.org>")[0] == 503     # no EHLO yet
assert c.cmd("EHLO d.example")[0] == 250
assert c.cmd("RCPT TO:<r@example.com>")[0] == 503       # no MAIL
assert c.cmd("DATA")[0] == 503
assert c.cmd("XYZZY")[0] == 502
assert c.cmd("VRFY someone")[0] == 252
assert c.cmd("NOOP")[0] == 250
assert c.cmd("MAIL FROM:<a@example.org>")[0] == 250
assert c.cmd("MAIL FROM:<a@example.org>")[0] == 503     # nested
assert c.cmd("DATA")[0] == 503                          # no RCPT
assert c.cmd("MAIL FROM:<a@example.org> SIZE=999999999")[0] == 503
assert c.cmd("RSET")[0] == 250
assert c.cmd("MAIL FROM:<a@example.org> SIZE=999999999")[0] == 552
assert c.cmd("MAIL TO:<a@example.org>")[0] == 501
code, text = c.cmd("X" * 70000); assert code == 500, text
code, text = c.cmd("NOOP " + "y" * 65000); assert code == 250, text
assert c.cmd("HELO e.example")[0] == 250
assert c.cmd("QUIT")[0] == 221
EOF

pyt "starttls: plaintext pipelined after STARTTLS is logged and discarded" <<'EOF'
c = Client(); c.expect(220); c.cmd("EHLO f.example")
c.send(b"STARTTLS\r\nMAIL FROM:<injected@example.org>\r\n")
assert c.reply()[0] == 220
assert c.tls() == "TLSv1.3"
assert c.cmd("EHLO f.example")[0] == 250
assert c.cmd("RCPT TO:<x@example.com>")[0] == 503       # the injected MAIL was dropped
c.cmd("QUIT")
log = open(os.path.join(DIR, "log")).read()
assert "plaintext-after-starttls MAIL FROM:<injected@example.org>\\r\\n" in log, log[-2000:]
EOF

pyt "starttls: 100 concurrent TLS sessions" <<'EOF'
import smtplib
N = 100
barrier = threading.Barrier(N, timeout=60)
errors = []
ctx = ssl.create_default_context(cafile=CA); ctx.check_hostname = False
def one(i):
    try:
        s = smtplib.SMTP("127.0.0.1", PORT, timeout=60)
        s.ehlo("conc.example"); s.starttls(context=ctx); s.ehlo("conc.example")
        barrier.wait()
        s.sendmail("c%d@example.org" % i, ["r@example.com"], b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i))
        s.quit()
    except Exception as e:
        errors.append(repr(e))
ts = [threading.Thread(target=one, args=(i,)) for i in range(N)]
[t.start() for t in ts]; [t.join() for t in ts]
assert not errors, errors[:3]
froms = set()
for name in os.listdir(os.path.join(DIR, "out")):
    if name.endswith(".json"):
        m = json.load(open(os.path.join(DIR, "out", name)))
        if m["mail_from"].startswith("c") and m["helo"] == "conc.example":
            assert m["tls"] == "TLSv1.3", m
            froms.add(m["mail_from"])
assert len(froms) == N, len(froms)
EOF

check "starttls: exits 0 on SIGTERM" stop "$PID"
check "starttls: shutdown logged" logged " srv shutdown"

# ---------------------------------------------------------------------------------------
start tls12 --mode starttls "${TLSARGS[@]}" --tls-max 1.2
swaks_ --tls --data @"$work/body" >"$DIR/swaks.out" 2>&1
wait_file "$DIR/out/msg-1.json"
check "tls-max 1.2: json says TLSv1.2" json "$DIR/out/msg-1.json" 'd["tls"] == "TLSv1.2"'
stop "$PID"

start tls13 --mode starttls "${TLSARGS[@]}" --tls-min 1.3
pyt "tls-min 1.3: a TLS 1.2-only client fails the handshake" <<'EOF'
c = Client(); c.expect(220); c.cmd("EHLO g.example")
assert c.cmd("STARTTLS")[0] == 220
ctx = ssl.create_default_context(cafile=CA); ctx.maximum_version = ssl.TLSVersion.TLSv1_2
try:
    ctx.wrap_socket(c.s, server_hostname="mx.example.net")
except (ssl.SSLError, OSError):
    pass
else:
    raise AssertionError("handshake succeeded")
EOF
check "tls-min 1.3: tls-fail logged" logged " tls-fail "
stop "$PID"

# ---------------------------------------------------------------------------------------
# mode plain
start plain --mode plain
check "plain: swaks without TLS delivers" swaks_q --data @"$work/body"
wait_file "$DIR/out/msg-1.json"
check "plain: json tls is null" json "$DIR/out/msg-1.json" 'd["tls"] is None and d["cipher"] is None and d["ehlo_count"] == 1'
check "plain: .eml matches" cmp -s "$DIR/out/msg-1.eml" "$work/body.expected"
if swaks_ --tls --data @"$work/body" >"$DIR/swaks2.out" 2>&1; then
  ko "plain: swaks --tls must fail (STARTTLS not advertised)"
else
  ok "plain: swaks --tls fails (STARTTLS not advertised)"
fi
check "plain: still one message" test "$(count_messages)" -eq 1
pyt "plain: STARTTLS answered 502, not advertised" <<'EOF'
c = Client(); c.expect(220)
code, text = c.cmd("EHLO h.example"); assert code == 250 and "STARTTLS" not in text and "CHUNKING" in text, text
assert c.cmd("STARTTLS")[0] == 502
assert c.cmd("QUIT")[0] == 221
EOF
stop "$PID"

# ---------------------------------------------------------------------------------------
# mode refuse: 454, then plaintext continues
start refuse --mode refuse --multiline-greeting
if swaks_ --tls --data @"$work/body" >"$DIR/swaks1.out" 2>&1; then
  ko "refuse: swaks --tls must fail"
else
  ok "refuse: swaks --tls fails"
fi
check "refuse: 454 logged" logged "reply 454 4.7.0 TLS not available due to temporary reason"
check "refuse: no message stored" no_messages
check "refuse: swaks --tls-optional continues in plaintext" swaks_q --tls-optional --data @"$work/body"
wait_file "$DIR/out/msg-1.json"
check "refuse: message stored without TLS" json "$DIR/out/msg-1.json" 'd["tls"] is None'
check "refuse: multi-line greeting" sh -c "grep -q ' reply 220-mx.example.net' '$DIR/log' && grep -q ' reply 220 mx.example.net multi-line greeting, end' '$DIR/log'"
stop "$PID"

# ---------------------------------------------------------------------------------------
# mode badtls: garbage instead of a handshake; a later plaintext connection works
start badtls --mode badtls
if swaks_ --tls --data @"$work/body" >"$DIR/swaks1.out" 2>&1; then
  ko "badtls: swaks --tls must fail"
else
  ok "badtls: swaks --tls fails"
fi
check "badtls: garbage logged, no message" sh -c "grep -q ' garbage ' '$DIR/log' && ! ls '$DIR/out'/msg-*.json >/dev/null 2>&1"
check "badtls: client's ClientHello logged raw" logged "raw-after-starttls"
check "badtls: later plaintext connection delivers" swaks_q --data @"$work/body"
wait_file "$DIR/out/msg-1.json"
check "badtls: plaintext message stored" json "$DIR/out/msg-1.json" 'd["tls"] is None'
stop "$PID"

# ---------------------------------------------------------------------------------------
# mode inject: 220 and injected 250 lines in one write, then a real handshake
start inject --mode inject "${TLSARGS[@]}"
pyt "inject: 220 + injected 250 lines arrive together; handshake still works" <<'EOF'
c = Client(); c.expect(220); c.cmd("EHLO i.example")
c.send(b"STARTTLS\r\n")
want = b"220 2.0.0 Ready to start TLS\r\n250-mx.example.net\r\n250 PIPELINING\r\n"
data = b""
while len(data) < len(want):
    d = c.s.recv(4096); assert d; data += d
assert data == want, data
ctx = ssl.create_default_context(cafile=CA)
s = ctx.wrap_socket(c.s, server_hostname="mx.example.net")
assert s.version() == "TLSv1.3"
s.sendall(b"EHLO i.example\r\n")
r = b""
while not r.endswith(b"250 SMTPUTF8\r\n"):
    d = s.recv(4096); assert d, r; r += d
assert b"STARTTLS" not in r
EOF
check "inject: logged" sh -c "grep -q ' inject' '$DIR/log' && grep -q ' tls TLSv1.3' '$DIR/log'"
stop "$PID"

# ---------------------------------------------------------------------------------------
# mode reply354, masked, noehlo, greet421, greet554, ehlo421
start reply354 --mode reply354
pyt "reply354: STARTTLS gets 354, then plain session" <<'EOF'
c = Client(); c.expect(220)
code, text = c.cmd("EHLO j.example"); assert "STARTTLS" in text, text
code, text = c.cmd("STARTTLS"); assert text == "354 go ahead", text
code, text = c.cmd("EHLO j.example"); assert code == 250 and "STARTTLS" not in text, text
assert c.cmd("STARTTLS")[0] == 502
assert c.cmd("QUIT")[0] == 221
EOF
stop "$PID"

start masked --mode masked
pyt "masked: XXXXXXXA instead of STARTTLS" <<'EOF'
c = Client(); c.expect(220)
code, text = c.cmd("EHLO k.example")
assert "250-XXXXXXXA" in text and "STARTTLS" not in text, text
assert c.cmd("STARTTLS")[0] == 502
EOF
if swaks_ --tls --data @"$work/body" >"$DIR/swaks1.out" 2>&1; then ko "masked: swaks --tls must fail"; else ok "masked: swaks --tls fails"; fi
stop "$PID"

start noehlo --mode noehlo
check "noehlo: swaks falls back to HELO and delivers" swaks_q --data @"$work/body"
wait_file "$DIR/out/msg-1.json"
check "noehlo: json records HELO" json "$DIR/out/msg-1.json" 'd["helo_verb"] == "HELO" and d["ehlo_count"] == 1 and d["helo_count"] == 1'
check "noehlo: EHLO rejected with 502" logged "reply 502 5.5.2 Error: command not recognized"
stop "$PID"

start greet421 --mode greet421
if swaks_ --data @"$work/body" >"$DIR/swaks1.out" 2>&1; then ko "greet421: swaks must fail"; else ok "greet421: swaks fails"; fi
check "greet421: 421 greeting logged, then close" sh -c "grep -q ' reply 421 4.3.2 Service not available, closing transmission channel' '$DIR/log' && grep -q ' close' '$DIR/log'"
stop "$PID"

start greet554 --mode greet554
pyt "greet554: 554 greeting, 503 to everything, 221 to QUIT" <<'EOF'
c = Client()
assert c.reply() == (554, "554 5.7.1 No SMTP service here")
assert c.cmd("EHLO l.example")[0] == 503
assert c.cmd("MAIL FROM:<a@example.org>")[0] == 503
assert c.cmd("QUIT")[0] == 221
EOF
stop "$PID"

start ehlo421 --mode ehlo421
pyt "ehlo421: EHLO answered 421 and connection closed" <<'EOF'
c = Client(); c.expect(220)
assert c.cmd("EHLO m.example") == (421, "421 4.7.0 Too busy")
assert c.s.recv(100) == b""
EOF
stop "$PID"

# ---------------------------------------------------------------------------------------
# mode dropdata: RST after 10 bytes of content, no reply, nothing stored
start dropdata --mode dropdata "${TLSARGS[@]}"
pyt "dropdata: connection reset during DATA (plaintext and TLS)" <<'EOF'
for use_tls in (False, True):
    c = Client(); c.expect(220); c.cmd("EHLO n.example")
    if use_tls:
        assert c.cmd("STARTTLS")[0] == 220; c.tls(); c.cmd("EHLO n.example")
    c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<r@example.com>\r\nDATA\r\n")
    assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
    c.send(b"Subject: drop me\r\n\r\n" + b"x" * 100 + b"\r\n.\r\n")
    # Read the TCP socket itself (Python's ssl reports a reset as a ragged EOF).
    raw = socket.socket(fileno=os.dup(c.s.fileno())); raw.settimeout(10)
    try:
        d = raw.recv(100)
    except ConnectionResetError:
        pass                                   # RST, as wanted
    else:
        raise AssertionError("no reset (tls=%s); got %r" % (use_tls, d))
out = os.path.join(DIR, "out")
assert not [f for f in os.listdir(out) if f.endswith(".json")], os.listdir(out)
EOF
check "dropdata: drop logged" logged " drop after "
stop "$PID"

echo "selftest: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
