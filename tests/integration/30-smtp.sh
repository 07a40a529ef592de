#!/usr/bin/env bash
# The SMTP relay itself: pipelining, several messages per session, BDAT,
# RSET/NOOP/VRFY, rejected recipients, overlong lines, multi-line greetings,
# and IPv6 interception.
. "$(dirname "$0")/../lib/common.sh"

topo_up
redirect_on
server starttls --multiline-greeting --reject-rcpt nobody
proxy

# swaks with PIPELINING: MAIL, RCPT, DATA in one write.
ok "swaks --pipeline delivers" cswaks --pipeline --body "pipelined body"
ok "pipelined message stored over TLS" wait_msgs 1
ok "pipelined: TLSv1.3" test "$(json "$(msg_json 1)" tls)" = TLSv1.3
ok "multi-line greeting reaches the client whole" bash -c \
	"ip netns exec $NS_CLI swaks --server $SRV4 --quit-after CONNECT 2>&1 | grep -q '^<-  220-'"

# Several messages in one session, everything pipelined in one write, a
# rejected recipient in the middle: replies come back in command order.
printf 'MAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.net>\r\nRCPT TO:<nobody@example.net>\r\nRCPT TO:<y@example.net>\r\nDATA\r\n' >"$T_TMP/p1"
chat >"$T_TMP/multi.chat" <<S
< 220
> EHLO client.example.org
< 250
>file $T_TMP/p1
< 250 2.1.0
< 250 2.1.5
< 550 5.1.1
< 250 2.1.5
< 354
>> Subject: one\r\n\r\nfirst\r\n.\r\nMAIL FROM:<b@example.org>\r\nRCPT TO:<z@example.net>\r\nDATA\r\n
< 250 2.0.0
< 250 2.1.0
< 250 2.1.5
< 354
>> Subject: two\r\n\r\nsecond\r\n..\r\n.\r\n
< 250 2.0.0
> RSET
< 250
> NOOP
< 250
> VRFY postmaster
< 252
> QUIT
< 221
eof
S
ok "two pipelined messages in one session, replies in order" test $? -eq 0
ok "first message: two recipients, the rejected one left out" \
	bash -c "test \"\$($PY -c 'import json;print(json.load(open(\"$(msg_json 2)\"))[\"rcpt_to\"])')\" = \"['x@example.net', 'y@example.net']\""
ok "second message body unstuffed by the server as sent" \
	cmp <(printf 'Subject: two\r\n\r\nsecond\r\n.\r\n') "$(msg_eml 3)"
wait_sessions 3
ok "session line counts two messages" grep -q "msgs=2" <<<"$(session_line 3)"

# BDAT / CHUNKING: binary content with CRLF.CRLF inside a chunk, which is
# never taken as an end of data.
"$PY" -c 'import sys; sys.stdout.buffer.write(b"Subject: bdat\r\n\r\n" + bytes(range(256)) * 40 + b"\r\n.\r\nnot the end\r\n")' >"$T_TMP/chunk1"
"$PY" -c 'import sys; sys.stdout.buffer.write(b"tail of the message\r\n")' >"$T_TMP/chunk2"
c1=$(stat -c %s "$T_TMP/chunk1"); c2=$(stat -c %s "$T_TMP/chunk2")
{ printf 'BDAT %d\r\n' "$c1"; cat "$T_TMP/chunk1"; printf 'BDAT %d LAST\r\n' "$c2"; cat "$T_TMP/chunk2"; } >"$T_TMP/bdat.bin"
chat >"$T_TMP/bdat.chat" <<S
< 220
> EHLO client.example.org
< 250
> MAIL FROM:<c@example.org>
< 250
> RCPT TO:<w@example.net>
< 250
>file $T_TMP/bdat.bin
< 250
< 250 2.0.0
> QUIT
< 221
S
ok "BDAT chunks relayed, two replies" test $? -eq 0
ok "BDAT message stored" wait_msgs 4
ok "BDAT content byte-identical (binary, CRLF.CRLF inside)" cmp <(cat "$T_TMP/chunk1" "$T_TMP/chunk2") "$(msg_eml 4)"
ok "BDAT message went over TLS" test "$(json "$(msg_json 4)" tls)" = TLSv1.3
ok "BDAT recorded as BDAT" test "$(json "$(msg_json 4)" method)" = BDAT
wait_sessions 4
ok "session line counts the BDAT message" grep -q "msgs=1" <<<"$(session_line 4)"

# An overlong command line gets 500 5.5.2 and the session goes on.
long=$(head -c 5000 /dev/zero | tr '\0' 'a')
chat >"$T_TMP/long.chat" <<S
< 220
> EHLO client.example.org
< 250
> MAIL FROM:<$long@example.org>
< 500 5.5.2
> NOOP
< 250
> QUIT
< 221
S
ok "overlong line: 500 5.5.2, session continues" test $? -eq 0
not_ok "overlong line never reached the server" grep -q "aaaaaaaaaaaaaaaaaaaa" "$SRV_LOG"

# IPv6: the same redirect, IP6T_SO_ORIGINAL_DST, a v6 upstream connection.
ok "IPv6: swaks delivers to [$SRV6]" in_cli swaks -6 --server "$SRV6" --port 25 --helo client.example.org \
	--from v6@example.org --to v6@example.net --body "over ipv6" --timeout 20
ok "IPv6: message stored" wait_msgs 5
ok "IPv6: over TLSv1.3" test "$(json "$(msg_json 5)" tls)" = TLSv1.3
ok "IPv6: the server saw the gateway's v6 address" test "$(json "$(msg_json 5)" peer)" = "$GWW6"
wait_sessions 6
ok "IPv6: session line has the v6 destination" grep -q "dst=\[$SRV6\]:25 action=upgraded" "$PROXY_LOG"

ok "proxy exits cleanly" proxy_stop
finish
