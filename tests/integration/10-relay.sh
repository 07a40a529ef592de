#!/usr/bin/env bash
# The main job: a real client (swaks) sends through the port-25 redirect to a
# STARTTLS server; the server gets the message over TLS 1.3, byte for byte.
. "$(dirname "$0")/../lib/common.sh"

topo_up
redirect_on
server starttls
proxy

# A body that tests the framing: dot lines, 8-bit bytes, long lines, ~300 KiB.
body=$T_TMP/body.eml
"$PY" - "$body" <<'PY'
import sys
lines = [b"From: sender@example.org", b"To: rcpt@example.net",
         b"Subject: relay test", b"", b".leading dot", b"..two dots", b".",
         b" .space dot", "8-bit: caf\u00e9 \u00fc\u00f1\u00ee\u00e7\u00f8d\u00e9".encode(),
         bytes(range(0x80, 0x100)).replace(b"\r", b"").replace(b"\n", b"")]
for i in range(3000):
    lines.append(("line %05d " % i).encode() + b"x" * (i % 120))
lines.append(b"." + b"y" * 990)
lines.append(b"end")
open(sys.argv[1], "wb").write(b"\r\n".join(lines))
# swaks ends the data with CRLF . CRLF; the server stores the lines with CRLF.
open(sys.argv[1] + ".expect", "wb").write(b"\r\n".join(lines) + b"\r\n")
PY

ok "swaks delivers through the redirect" cswaks --data @"$body"
ok "server stored one message" wait_msgs 1
ok "server received it over TLSv1.3" test "$(json "$(msg_json 1)" tls)" = TLSv1.3
ok "message is byte-identical" cmp "$body.expect" "$(msg_eml 1)"
ok "server saw the client's EHLO name after ours" grep -q "client.example.org" "$SRV_LOG"
ok "one session line" wait_sessions 1
line=$(session_line 1)
ok "session line: action=upgraded" grep -q "action=upgraded" <<<"$line"
ok "session line: tls=TLSv1.3 with cipher" grep -Eq "tls=TLSv1.3 cipher=TLS_[A-Z0-9_]+" <<<"$line"
ok "session line: chain verified against the CA" grep -q "verify=ok" <<<"$line"
ok "session line: dst is the original destination" grep -q "dst=$SRV4:25" <<<"$line"
ok "session line: client address" grep -q "client=$CLI4:" <<<"$line"
ok "session line: one message, ended by QUIT" grep -Eq "msgs=1 .*reason=quit" <<<"$line"
ok "session line: peer SPKI recorded" grep -Eq "spki_sha256=[0-9a-f]{64}" <<<"$line"
ok "session line: bytes counted" grep -Eq "bytes_up=[0-9]{6,}" <<<"$line"

# What the client sees: the real greeting, EHLO without STARTTLS.
out=$T_TMP/swaks2.out
cswaks --quit-after EHLO >"$out" 2>&1
ok "client gets the server's own greeting" grep -q "<-  220 mx.example.net" "$out"
ok "client's EHLO reply keeps the server's extensions" grep -q "<-  250-PIPELINING" "$out"
not_ok "client's EHLO reply has no STARTTLS" grep -qiE "^<-  250[- ]STARTTLS" "$out"
ok "a client's own STARTTLS gets 454 4.7.0, the session goes on" chat <<'S'
< 220
> EHLO client.example.org
< 250
> STARTTLS
< 454 4.7.0
> NOOP
< 250
> QUIT
< 221
S

wait_sessions 3
ok "later sessions to the same server reuse its TLS connection (reused=yes, peer still recorded)" \
	bash -c "grep event=session '$PROXY_LOG' | tail -n +2 | grep 'spki_sha256=[0-9a-f]\{64\}' | grep -q 'reused=yes'"
ok "proxy exits cleanly on SIGTERM" proxy_stop
finish
