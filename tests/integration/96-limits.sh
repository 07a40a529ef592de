#!/usr/bin/env bash
# Limits and protocol attacks (issue 5): per-client session limit, too many
# recipients, too many errors, SMTP smuggling (ambiguous end of data), a
# slowloris client, and the event=attack lines they leave.
. "$(dirname "$0")/../lib/common.sh"

topo_up
redirect_on
server starttls
proxy --max-sessions-per-client 2 --max-recipients 100 --max-errors 5 --client-timeout 3

# Per client: a third concurrent session from the same address gets 421 4.7.0.
hold() { chat >"$T_TMP/hold$1.chat" <<S
< 220
> EHLO hold.example.org
< 250
sleep 2
> QUIT
< 221
S
}
hold 1 & h1=$!
hold 2 & h2=$!
wait_for 5 count_ge 2 "$SRV_LOG" "cmd EHLO hold.example.org"
chat >"$T_TMP/third.chat" <<S
< 421 4.7.0
eof
S
ok "a third session from one client: 421 4.7.0" test $? -eq 0
ok "logged: too many sessions from this client" wait_for 5 log_has 'reason="too many sessions from this client"'
wait $h1; r1=$?; wait $h2; r2=$?
ok "the client's other sessions went on" test $r1 -eq 0 -a $r2 -eq 0

# Too many recipients: the 101st gets 452 4.5.3 and is not sent on.
{
	echo "< 220"; echo "> EHLO client.example.org"; echo "< 250"
	echo "> MAIL FROM:<a@example.org>"; echo "< 250"
	for i in $(seq 1 101); do echo "> RCPT TO:<r$i@example.net>"; done
	for i in $(seq 1 100); do echo "< 250"; done
	echo "< 452 4.5.3"; echo "> QUIT"; echo "< 221"
} >"$T_TMP/rcpt.script"
chat <"$T_TMP/rcpt.script" >"$T_TMP/rcpt.chat"
ok "recipient 101: 452 4.5.3, the first 100 accepted" test $? -eq 0
not_ok "recipient 101 never reached the server" grep -q "r101@example.net" "$SRV_LOG"

# Too many errors: after 5, the sixth error reply is followed by 421 4.7.0.
{
	echo "< 220"; echo "> EHLO client.example.org"; echo "< 250"
	for i in $(seq 1 6); do echo "> BOGUS$i"; echo "< 502"; done
	echo "< 421 4.7.0"; echo "eof"
} | chat >"$T_TMP/errors.chat"
ok "six errors: 421 4.7.0 too many errors, closed" test $? -eq 0
ok "logged reason=\"too many errors\"" wait_for 5 log_has 'reason="too many errors"'

# SMTP smuggling: "\n.\n" (and friends) never ends a message for one side
# only: the message is refused before those bytes reach the server.
for case in 'LF.LF:\n.\n' 'LF.CRLF:\n.\r\n' 'CRLF.LF:\r\n.\n' 'CR.CR:\r.\r' 'NUL-after-dot:\r\n.\x00\r\n' 'NUL-before-dot:\r\n\x00.\r\n'; do
	name=${case%%:*} seq=${case#*:}
	n=$(nmsgs)
	chat >"$T_TMP/smug-$name.chat" <<S
$CHAT_TO_DATA
>> Subject: smuggle\r\n\r\nbody${seq}MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n
< 554 5.5.2
eof
S
	ok "smuggling $name: 554 5.5.2 and the session closes" test $? -eq 0
	not_ok "smuggling $name: the smuggled commands never reached the server" grep -q "evil@example.org" "$SRV_LOG"
	ok "smuggling $name: no message stored" test "$(nmsgs)" -eq "$n"
done
ok "smuggling logged as event=attack signal=smtp-smuggling action=blocked" log_has "event=attack .*signal=smtp-smuggling .*action=blocked"
ok "a bare LF elsewhere in a message is content, not an attack" chat <<S
$CHAT_TO_DATA
>> Subject: bare lf\r\n\r\nline one\nline two\r\n.\r\n
< 250
> QUIT
< 221
S

# Slowloris: a command trickled a byte at a time is timed out all the same.
start=$SECONDS
chat >"$T_TMP/slow.chat" <<'S'
< 220
> EHLO client.example.org
< 250
>> M
sleep 1
>> A
sleep 1
>> I
sleep 1
>> L
sleep 1
>> \x20
sleep 1
>> F
< 421 4.4.2
S
ok "slowloris: a dribbled command gets 421 4.4.2 at client_timeout" test $? -eq 0
ok "slowloris: within the limit, not extended by the bytes" test $((SECONDS - start)) -le 6

ok "proxy exits cleanly" proxy_stop

# Response injection (server side): logged as event=attack.
server_stop; server inject
: >"$PROXY_LOG"
proxy
chat >/dev/null <<S
< 421 4.7.0
S
ok "response injection: event=attack signal=response-injection action=blocked" wait_for 5 log_has "event=attack .*signal=response-injection .*action=blocked"
ok "proxy exits cleanly" proxy_stop
finish
