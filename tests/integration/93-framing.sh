#!/usr/bin/env bash
# The proxy's framing of a session and the server's never diverge (issue 9):
#   - BDAT reaches only a server whose EHLO reply to this client offered
#     CHUNKING. A server without it answers 502 and reads the "chunk" as
#     commands, which starttlsd relayed as opaque data: a RCPT refused by
#     policy could come back inside it (vector a), or a second message be
#     smuggled past a lenient server (vector b). Tested against smtpd.py
#     without CHUNKING and against a real Postfix with CHUNKING discarded.
#   - a NUL inside a command line is refused, as a bare CR or LF is;
#   - STARTTLS answered with 421 is alerted (starttls-refused), once;
#   - a TLS server answering the EHLO after the handshake with 421 and
#     close_notify in one flight ends the session once: one downgrade line,
#     alerts=1, one session line (conn.c's frames; tests/unit/test_conn.c
#     checks the I/O layer's guarantee directly).
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/postfix.sh"

topo_up
redirect_on
certs
S_NOCHUNK=198.51.100.60 S_421=198.51.100.61 S_TLS421=198.51.100.62
S_PF=198.51.100.63
for a in 60 61 62 63; do ip -n "$NS_SRV" addr add 198.51.100.$a/24 dev wan0; done

# The project's server with CHUNKING on SRV4 (the positive control).
server starttls
# Without CHUNKING, and lenient about a bare-LF end of data.
NC_LOG=$T_TMP/nochunk.log NC_OUT=$T_TMP/nochunk-out
in_srv "$PY" "$PEERS/smtpd.py" --listen "$S_NOCHUNK:25" --mode plain --no-chunking \
	--lenient-eod --out "$NC_OUT" --log "$NC_LOG" >"$T_TMP/nc.stdout" 2>&1 &
T_PIDS+=($!); disown $!
in_srv "$PY" "$PEERS/smtpd.py" --listen "$S_421:25" --mode starttls421 \
	--log "$T_TMP/s421.log" >"$T_TMP/s421.stdout" 2>&1 &
T_PIDS+=($!); disown $!
in_srv "$PY" "$PEERS/smtpd.py" --listen "$S_TLS421:25" --mode tls421 \
	--cert "$CERTS/server.crt" --key "$CERTS/server.key" \
	--log "$T_TMP/tls421.log" >"$T_TMP/tls421.stdout" 2>&1 &
T_PIDS+=($!); disown $!
for f in nc s421 tls421; do
	wait_for 5 grep -q ready "$T_TMP/$f.stdout" || say "server $f did not start"
done

# Recipients at secure.example need TLS; the server at S_TLS421 must verify
# (its certificate names mx.example.net, not nothing.example: so it alerts,
# and monitor mode lets the session go on to the EHLO it answers with 421).
cat >"$T_TMP/policy" <<EOF
secure.example     encrypt
$S_TLS421          verify   mx=nothing.example mode=monitor
EOF
proxy --mode enforce --policy-file "$T_TMP/policy"

dst_line() { grep "event=session" "$PROXY_LOG" | grep " dst=$1:25 " | tail -n 1; }
wait_dst() { wait_for 10 eval "[ -n \"\$(dst_line $1)\" ]"; }

# ---- vector (a): a refused RCPT hidden in a BDAT chunk -------------------------
chunk_a='RCPT TO:<victim@secure.example>\r\nDATA\r\n'
len_a=$(printf "$chunk_a" | wc -c)
CHAT_HOST=$S_NOCHUNK CHAT_TIMEOUT=8 chat >"$T_TMP/a.chat" <<S
< 220
> EHLO client.example.org
< 250
> MAIL FROM:<a@example.org>
< 250
> RCPT TO:<victim@secure.example>
< 450 4.7.0
>> BDAT $len_a\r\n$chunk_a
< 502 5.5.1
>> Subject: smuggled (a)\r\n\r\nplaintext to a TLS-only domain\r\n.\r\n
<
<
<
<
> QUIT
< 221
S
ok "vector a: the client gets 450 for the recipient and 502 for BDAT" test $? -eq 0
ok "vector a: starttlsd says why (no CHUNKING)" grep -q "502 5.5.1 starttlsd: BDAT refused: the server did not offer CHUNKING" "$T_TMP/a.chat"
not_ok "vector a: the server never saw BDAT" grep -q " cmd BDAT" "$NC_LOG"
not_ok "vector a: the refused recipient never reached the server" grep -q "victim@secure.example" "$NC_LOG"
not_ok "vector a: no message was stored" bash -c "ls '$NC_OUT'/msg-*.json"
wait_dst $S_NOCHUNK
ok "vector a: event=attack signal=bdat-not-offered action=refused" \
	grep -Eq "event=attack .*dst=$S_NOCHUNK:25 .*signal=bdat-not-offered .*action=refused" "$PROXY_LOG"
ok "vector a: the session line says msgs=0" grep -q " msgs=0 " <<<"$(dst_line $S_NOCHUNK)"

# ---- vector (b): a second message smuggled in a chunk --------------------------
chunk_b='DATA\r\nSubject: one\r\n\r\nfirst\n.\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<victim2@example.net>\r\nDATA\r\nSubject: smuggled (b)\r\n\r\nsecond\r\n.\r\n'
len_b=$(printf "$chunk_b" | wc -c)
CHAT_HOST=$S_NOCHUNK CHAT_TIMEOUT=8 chat >"$T_TMP/b.chat" <<S
$CHAT_TO_RCPT
>> BDAT $len_b LAST\r\n$chunk_b
< 502 5.5.1
> RSET
< 250
> QUIT
< 221
S
ok "vector b: BDAT refused by starttlsd, the session goes on" test $? -eq 0
not_ok "vector b: no smuggled command reached the server" grep -Eq " cmd (BDAT|DATA|MAIL FROM:<evil)" "$NC_LOG"
not_ok "vector b: no message was stored" bash -c "ls '$NC_OUT'/msg-*.json"

# ---- the positive control: CHUNKING offered, BDAT relayed -----------------------
CHAT_HOST=$SRV4 chat >"$T_TMP/chunk.chat" <<S
$CHAT_TO_RCPT
>> BDAT 26 LAST\r\nSubject: chunked\r\n\r\nbody\r\n
< 250
> QUIT
< 221
S
ok "CHUNKING offered: BDAT relayed and the message stored" wait_msgs 1
ok "CHUNKING offered: the stored message is the chunk" grep -q "Subject: chunked" "$(msg_eml 1)"

# ---- NUL in a command line -------------------------------------------------------
CHAT_HOST=$SRV4 chat >"$T_TMP/nul.chat" <<'S'
< 220
> EHLO client.example.org
< 250
>> NOOP\x00RSET\r\n
< 500 5.5.2
> QUIT
< 221
S
ok "a NUL in a command line gets 500 5.5.2 from starttlsd" test $? -eq 0
not_ok "the line with the NUL never reached the server" grep -Eq " cmd NOOP" "$SRV_LOG"

# ---- STARTTLS answered with 421 ------------------------------------------------------
CHAT_HOST=$S_421 chat >"$T_TMP/s421.chat" <<'S'
< 421
eof
S
ok "STARTTLS 421: the client gets a 421" test $? -eq 0
wait_dst $S_421
ok "STARTTLS 421: event=downgrade signal=starttls-refused" \
	grep -Eq "event=downgrade .*dst=$S_421:25 .*signal=starttls-refused" "$PROXY_LOG"
ok "STARTTLS 421: no plaintext reconnect" test "$(grep -c ' conn peer=' "$T_TMP/s421.log")" -eq 1

# ---- 421 and close_notify in one flight after the handshake ---------------------------
# (The EHLO after the handshake is the client's own: its 421 is relayed.)
CHAT_HOST=$S_TLS421 chat >"$T_TMP/tls421.chat" <<'S'
< 220
> EHLO client.example.org
< 421
eof
S
ok "EHLO over TLS answered 421 + close_notify: the client gets a 421" test $? -eq 0
wait_dst $S_TLS421
ok "the server sent its 421 and close_notify together" grep -q "close-notify" "$T_TMP/tls421.log"
ok "one event=downgrade line for the session, not two" \
	test "$(grep -c "event=downgrade .*dst=$S_TLS421:25" "$PROXY_LOG")" -eq 1
ok "the session line says alerts=1" grep -q " alerts=1 " <<<"$(dst_line $S_TLS421)"
ok "one session line" test "$(grep -c "event=session .*dst=$S_TLS421:25" "$PROXY_LOG")" -eq 1

ok "proxy exits cleanly" proxy_stop

# ---- a real Postfix with CHUNKING discarded -------------------------------------------
pf_need
PF_DST=$T_TMP/pf-dst
trap 'pf_stop in_srv "$PF_DST"; cleanup' EXIT
pf_instance "$PF_DST" dst <<EOF
myhostname = mx.example.net
mydomain = example.net
inet_interfaces = $S_PF
mydestination = localhost
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
smtpd_discard_ehlo_keywords = chunking
smtpd_tls_security_level = may
smtpd_tls_cert_file = $CERTS/server.crt
smtpd_tls_key_file = $CERTS/server.key
$(pf_virtual_conf "$T_TMP/mail")
EOF
ok "postfix (CHUNKING discarded) starts" pf_start in_srv "$PF_DST"
: >"$PROXY_LOG"
proxy --mode enforce --policy-file "$T_TMP/policy"
CHAT_HOST=$S_PF CHAT_TIMEOUT=10 chat >"$T_TMP/pf.chat" <<S
$CHAT_TO_RCPT
>> BDAT $len_b LAST\r\n$chunk_b
< 502 5.5.1
> QUIT
< 221
S
ok "postfix: BDAT refused by starttlsd over TLS" test $? -eq 0
wait_dst $S_PF
ok "postfix: the session was upgraded" grep -q "action=upgraded" <<<"$(dst_line $S_PF)"
sleep 1
not_ok "postfix: no message was delivered" bash -c "ls '$T_TMP'/mail/rcpt/new/* 2>/dev/null | grep -q ."
not_ok "postfix: no smuggled second transaction (evil@) reached postfix" grep -q "evil@example.org" "$PF_DST/maillog"
ok "proxy exits cleanly (postfix)" proxy_stop

finish
