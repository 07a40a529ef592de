#!/usr/bin/env bash
# Downgrade detection: a destination seen with TLS is pinned; when it stops
# offering STARTTLS (removed, masked, refused, broken handshake) starttlsd
# alerts, and in enforce mode refuses with a 4xx so the sender keeps the
# mail. Domains are pinned too, across destinations. Pins persist.
. "$(dirname "$0")/../lib/common.sh"

CTL=${STARTTLSCTL:-$(dirname "$STARTTLSD")/starttlsctl}
STATE=$T_TMP/state
topo_up
redirect_on
ip -n "$NS_SRV" addr add 198.51.100.26/24 dev wan0
SRV4B=198.51.100.26
ctl() { "$CTL" --state-dir "$STATE" "$@"; }
last_downgrade() { grep "event=downgrade" "$PROXY_LOG" | tail -n 1; }
ndowngrades() { grep -c "event=downgrade" "$PROXY_LOG"; }

# 1. Learn: a TLS session pins the destination (and the recipient domain).
server starttls
proxy --mode enforce
ok "TLS session delivered" cswaks --body "learn"
ok "the destination is pinned (starttlsctl show)" wait_for 5 ctl show "$SRV4"
ok "the recipient domain is pinned, via the destination" wait_for 5 bash -c "'$CTL' --state-dir '$STATE' show example.net | grep -q '$SRV4'"
ok "starttlsctl list shows both" wait_for 5 bash -c "'$CTL' --state-dir '$STATE' list | grep -c -E 'ip:$SRV4|domain:example.net' | grep -q 2"

# 2. Enforce: the same address without STARTTLS is refused, nothing sent on.
server_stop; rm -f "$SRV_LOG"; server plain
n=$(ndowngrades)
chat >"$T_TMP/stripped.chat" <<S
< 421 4.7.0
eof
S
ok "enforce, STARTTLS stripped: the client gets 421 4.7.0 as greeting" test $? -eq 0
ok "the reply names the reason" grep -q "starttls-missing" "$T_TMP/stripped.chat"
ok "event=downgrade signal=starttls-missing action=blocked" wait_for 5 bash -c "grep event=downgrade '$PROXY_LOG' | tail -n 1 | grep -Eq 'dst=$SRV4:25 .*signal=starttls-missing pinned_since=[0-9]+ .*action=blocked tlsrpt=starttls-not-supported'"
ok "session line: action=blocked" wait_for 5 bash -c "grep event=session '$PROXY_LOG' | tail -n 1 | grep -q 'action=blocked'"
not_ok "nothing from the client reached the server" grep -Eq "cmd (MAIL|EHLO client)" "$SRV_LOG"
not_ok "swaks sees a temporary failure, not a success" cswaks --timeout 10

# Masked, refused (454), and a failing handshake: each its own signal.
for m in masked:starttls-masked refuse:starttls-refused badtls:handshake-failed; do
	mode=${m%%:*} sig=${m#*:}
	server_stop; rm -f "$SRV_LOG"; server "$mode"
	chat >"$T_TMP/$mode.chat" <<S
< 421 4.7.0
eof
S
	ok "enforce, $mode: 421 4.7.0 to the client" test $? -eq 0
	ok "enforce, $mode: signal=$sig action=blocked" wait_for 5 bash -c "grep event=downgrade '$PROXY_LOG' | tail -n 1 | grep -q 'signal=$sig .*action=blocked'"
	ok "enforce, $mode: no plaintext fallback connection was made" test "$(grep -c ' conn peer=' "$SRV_LOG")" -eq 1
done
ok "proxy exits cleanly" proxy_stop

# 3. Monitor: the same alert, action=allowed, and the mail goes through.
server_stop; server plain
: >"$PROXY_LOG"
proxy_syslog --mode monitor
ok "monitor: delivered in plaintext" cswaks --body "monitor"
ok "monitor: stored without TLS" bash -c "f=\$(ls $SRV_OUT/msg-*.json | tail -n 1); grep -q '\"tls\": null' \$f"
ok "monitor: event=downgrade signal=starttls-missing action=allowed" wait_for 5 bash -c "grep -q 'event=downgrade .*signal=starttls-missing .*mode=monitor action=allowed' '$PROXY_LOG'"
ok "monitor: the alert reaches syslog at warning (<20>), facility mail" wait_for 5 grep -Eq "^<20>.*starttlsd\[[0-9]+\]: event=downgrade .*action=allowed" "$SYSLOG_OUT"

ok "proxy exits cleanly" proxy_stop

# 4. Pins survive a restart and a SIGKILL.
: >"$PROXY_LOG"
proxy --mode enforce
kill -9 "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null
: >"$PROXY_LOG"
proxy --mode enforce
chat >"$T_TMP/afterkill.chat" <<S
< 421 4.7.0
eof
S
ok "after SIGKILL and restart the pin still blocks" test $? -eq 0

# 5. starttlsctl forget: the very next session passes, no restart, no reload.
ok "starttlsctl forget $SRV4" ctl forget "$SRV4"
not_ok "the pin is gone" ctl show "$SRV4"
ok "the next plaintext session passes (to a domain not pinned)" cswaks --to user@other.example --body "after forget"
wait_sessions 2
ok "logged as plaintext, not blocked" bash -c "grep event=session '$PROXY_LOG' | tail -n 1 | grep -q 'action=plaintext'"

# 6. Domain pins: example.net was delivered over TLS via $SRV4; a plaintext
#    session to another address carrying it is refused per recipient.
ip netns exec "$NS_SRV" "$PY" "$PEERS/smtpd.py" --listen "$SRV4B:25" --out "$T_TMP/srvb" \
	--log "$T_TMP/srvb.log" --mode plain >"$T_TMP/srvb.stdout" 2>&1 &
T_PIDS+=($!); disown $!
wait_for 5 grep -q ready "$T_TMP/srvb.stdout"
CHAT_HOST=$SRV4B chat >"$T_TMP/domain.chat" <<S
< 220
> EHLO client.example.org
< 250
>> MAIL FROM:<a@example.org>\r\nRCPT TO:<x@other.example>\r\nRCPT TO:<rcpt@Example.NET>\r\nRCPT TO:<y@other.example>\r\nDATA\r\n
< 250
< 250
< 450 4.7.0
< 250
< 354
> Subject: domain downgrade
> .
< 250
> QUIT
< 221
S
ok "domain-downgrade: only the pinned domain's recipient gets 450, in pipelined order" test $? -eq 0
ok "domain-downgrade logged with the domain" wait_for 5 bash -c "grep -q 'event=downgrade .*dst=$SRV4B:25 signal=domain-downgrade .*action=blocked .*domain=example.net$' '$PROXY_LOG'"
ok "the server got the other recipients only" bash -c "grep -h rcpt_to -A3 $T_TMP/srvb/msg-*.json | grep -q other.example && ! grep -qi example.net $T_TMP/srvb/msg-*.json"
CHAT_HOST=$SRV4B chat >"$T_TMP/domain2.chat" <<S
< 220
> EHLO client.example.org
< 250
>> MAIL FROM:<a@example.org>\r\nRCPT TO:<rcpt@example.net>\r\nDATA\r\n
< 250
< 450 4.7.0
< 451 4.7.0
> QUIT
< 221
S
ok "all recipients refused: DATA gets 451, never a 354 or 250" test $? -eq 0

# 7. A static policy without any pin: "encrypt" for the destination.
ok "proxy exits cleanly" proxy_stop
printf '# test policy\n%s encrypt\n.example.org none\n' "$SRV4B" >"$T_TMP/policy"
: >"$PROXY_LOG"
proxy --mode enforce --policy-file "$T_TMP/policy" --state-dir ""
CHAT_HOST=$SRV4B chat >"$T_TMP/static.chat" <<S
< 421 4.7.0
eof
S
ok "policy 'encrypt' for a plaintext destination: 421 4.7.0" test $? -eq 0
ok "logged with policy=encrypt and its line" wait_for 5 bash -c "grep -q 'event=downgrade .*signal=starttls-missing pinned_since=0 policy=encrypt policy_line=2 mode=enforce action=blocked' '$PROXY_LOG'"
printf '%s encrypt\n%s bogus\n' "$SRV4B" "$SRV4" >"$T_TMP/policy.bad"
"$STARTTLSD" --check-config --policy-file "$T_TMP/policy.bad" >"$T_TMP/badpol.out" 2>&1
ok "a bad policy file is refused with its line number" grep -q "policy.bad: line 2: $SRV4: level must be none, encrypt or verify" "$T_TMP/badpol.out"
ok "proxy exits cleanly" proxy_stop
finish
