#!/usr/bin/env bash
# The upstream connection cache (issue 10): a server connection, past
# STARTTLS and the handshake, carries the next client's session.
#   - ten sessions in a row, one server connection: each message
#     byte-identical and seen after that session's own EHLO, over TLS;
#   - a server that drops idle connections (421, or a silent close) or goes
#     away under the first command (421) costs no message and no refusal;
#   - after AUTH, an error we cannot vouch for, or an open transaction, the
#     connection is not reused;
#   - SIGHUP and starttlsctl forget drop parked connections;
#   - upstream_cache = off: one connection per session, as before;
#   - the limits hold under 1,000 sessions to 100 destinations.
# (transparent_source keys by client: 85-intercept.sh, with TPROXY.)
. "$(dirname "$0")/../lib/common.sh"

CTL=${STARTTLSCTL:-$(dirname "$STARTTLSD")/starttlsctl}
STATE=$T_TMP/state
topo_up
redirect_on
certs
server starttls
nconns() { grep -c ' conn peer=' "${1:-$SRV_LOG}"; }
last_session() { grep 'event=session' "$PROXY_LOG" | tail -n 1; }
send_n() { # send_n I [server]: one message, EHLO name client-I, marker in the body
	in_cli swaks --server "${2:-$SRV4}" --port 25 --helo "client-$1.example.org" \
		--from sender@example.org --to rcpt@example.net --timeout 20 \
		--header "Subject: reuse $1" --body "marker-$1-$$" >"$T_TMP/swaks-$1.out" 2>&1
}

proxy --workers 1 --mode enforce --upstream-cache-idle 60
for i in 1 2 3 4 5 6 7 8 9 10; do
	send_n $i || { say "session $i failed"; cat "$T_TMP/swaks-$i.out" >&2; }
done
ok "ten messages stored" wait_msgs 10
ok "over one server connection" test "$(nconns)" -eq 1
ok "every message over TLS 1.3, on the same connection" bash -c "
	for i in \$(seq 1 10); do
		$PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d[\"tls\"], d[\"conn\"])' $SRV_OUT/msg-\$i.json
	done | sort -u | wc -l | grep -qx 1 && grep -q TLSv1.3 $SRV_OUT/msg-1.json"
ok "each message seen after its own session's EHLO" bash -c "
	for i in \$(seq 1 10); do
		grep -q \"\\\"helo\\\": \\\"client-\$i.example.org\\\"\" $SRV_OUT/msg-\$i.json || exit 1
		grep -q \"marker-\$i-$$\" $SRV_OUT/msg-\$i.eml || exit 1
	done"
ok "byte-identical bodies (no extra or missing bytes)" bash -c "
	for i in \$(seq 1 10); do grep -c 'marker-' $SRV_OUT/msg-\$i.eml | grep -qx 1 || exit 1; done"
ok "the first session line: reused=no conn_sessions=1" bash -c "grep event=session '$PROXY_LOG' | head -n 1 | grep -q 'reused=no conn_sessions=1 '"
ok "the tenth: reused=yes conn_sessions=10" bash -c "grep event=session '$PROXY_LOG' | sed -n 10p | grep -q 'reused=yes conn_sessions=10 '"
ok "reused sessions are upgraded, with the TLS facts of the connection" bash -c "grep event=session '$PROXY_LOG' | sed -n 10p | grep -q 'action=upgraded tls=TLSv1.3 '"
ok "the server saw RSET between the sessions, never a QUIT of theirs" bash -c "[ \$(grep -c ' cmd RSET' '$SRV_LOG') -ge 9 ] && ! grep -q ' cmd QUIT' '$SRV_LOG'"

# AUTH: never reused afterwards.
before=$(nconns)
chat >"$T_TMP/auth.chat" <<'S'
< 220
> EHLO client.example.org
< 250
> AUTH PLAIN AHVzZXIAcGFzcw==
< 235
> QUIT
< 221
S
ok "an AUTH session (over the parked connection)" test $? -eq 0
ok "the next session is delivered" send_n 11
ok "... one more connection than before" test "$(nconns)" -eq $((before + 1))
ok "the AUTH session's connection was closed, not parked (its QUIT relayed)" grep -q ' cmd QUIT' "$SRV_LOG"

# An unknown command, or a transaction left open: not reused.
before=$(nconns)
chat >"$T_TMP/open.chat" <<'S'
< 220
> EHLO client.example.org
< 250
> MAIL FROM:<a@example.org>
< 250
> QUIT
< 221
S
ok "a session leaving its transaction open" test $? -eq 0
send_n 12
ok "is not followed over the same connection" test "$(nconns)" -eq $((before + 1))
before=$(nconns)
chat >"$T_TMP/xcmd.chat" <<'S'
< 220
> EHLO client.example.org
< 250
> XFOO bar
< 502
> QUIT
< 221
S
send_n 13
ok "an unknown command (and its error): not reused either" test "$(nconns)" -eq $((before + 1))

# SIGHUP: the old workers' parked connections go; new workers open anew.
send_n 14
before=$(nconns)
old=$(pgrep -P "$PROXY_PID")
kill -HUP "$PROXY_PID"
ok "reload: a new worker" wait_for 10 eval '[ -n "$(pgrep -P $PROXY_PID | grep -vx "$old")" ]'
ok "reload: the parked connection is closed (QUIT)" wait_for 10 bash -c "[ \$(grep -c ' cmd QUIT' '$SRV_LOG') -ge 2 ]"
wait_for 10 eval '[ -z "$(pgrep -P $PROXY_PID | grep -x "$old")" ]'
send_n 15
ok "reload: the next session opens a new connection" test "$(nconns)" -eq $((before + 1))

# starttlsctl forget: the destination's parked connections are not used.
ok "the destination is pinned" wait_for 5 "$CTL" --state-dir "$STATE" show "$SRV4"
send_n 16
before=$(nconns)
ok "forget" "$CTL" --state-dir "$STATE" forget "$SRV4"
send_n 17
ok "after forget: a new connection" test "$(nconns)" -eq $((before + 1))
ok "messages 11-17 stored" wait_msgs 17
ok "proxy exits cleanly" proxy_stop

# A server that drops idle connections: with a 421, silently, or at the
# first command after the RSET. No message is lost, no session refused.
# (The servers' idle limit is 1 s, 5 s under valgrind: its first session
# must not hit the limit itself.)
IDLE=1
case $STARTTLSD in *valgrind*) IDLE=5 ;; esac
for how in idle421:--timeout=$IDLE silent:--timeout=$IDLE,--timeout-silent rset421:--close-after-rset; do
	name=${how%%:*} opts=${how#*:}
	server_stop; rm -f "$SRV_LOG" "$SRV_OUT"/msg-*
	server starttls ${opts//,/ }
	: >"$PROXY_LOG"
	proxy --workers 1 --mode enforce --state-dir ""
	ok "$name: first session" send_n 1
	sleep $IDLE.6
	ok "$name: second session, delivered" send_n 2
	ok "$name: no error reached the client" bash -c "! grep -E '^<[*~ ]+[45][0-9][0-9]' '$T_TMP/swaks-2.out'"
	ok "$name: both messages stored" wait_msgs 2
	ok "$name: over two connections" test "$(nconns)" -eq 2
	ok "$name: the second message after its own EHLO" grep -q '"helo": "client-2.example.org"' "$(msg_json 2)"
	ok "$name: proxy exits cleanly" proxy_stop
done

# upstream_cache = off: one connection per session.
server_stop; rm -f "$SRV_LOG" "$SRV_OUT"/msg-*
server starttls
: >"$PROXY_LOG"
proxy --workers 1 --upstream-cache off --state-dir ""
send_n 1; send_n 2; send_n 3
ok "cache off: three sessions, three connections" test "$(nconns)" -eq 3
ok "cache off: the QUITs reach the server" test "$(grep -c ' cmd QUIT' "$SRV_LOG")" -eq 3
ok "cache off: later sessions resume TLS instead (resumed=yes)" bash -c "grep event=session '$PROXY_LOG' | tail -n +2 | grep -c 'resumed=yes' | grep -qx 2"
ok "proxy exits cleanly (cache off)" proxy_stop

# Two workers: a session accepted by the worker without the parked
# connection is handed to the one with it (steer.h), so ten sessions in a
# row still share one server connection.
server_stop
rm -f "$SRV_LOG" "$SRV_OUT"/msg-*
server starttls
: >"$PROXY_LOG"
proxy --workers 2 --state-dir "$T_TMP/state2" --upstream-cache-idle 60
for i in 1 2 3 4 5 6 7 8 9 10; do
	send_n $i || { say "session $i failed"; cat "$T_TMP/swaks-$i.out" >&2; }
done
ok "two workers: ten messages stored" wait_msgs 10
ok "two workers: over one server connection" test "$(nconns)" -eq 1
ok "two workers: nine sessions reused it" bash -c "grep event=session '$PROXY_LOG' | grep -c 'reused=yes' | grep -qx 9"
ok "two workers: the sessions ran in both (handed over)" bash -c "'$CTL' --state-dir '$T_TMP/state2' stats | grep -Eq '^starttlsd_upstream_handoffs_total [1-9]'"
ok "two workers: each message byte-identical, after its own EHLO" bash -c "
	for i in \$(seq 1 10); do
		grep -q \"\\\"helo\\\": \\\"client-\$i.example.org\\\"\" $SRV_OUT/msg-\$i.json || exit 1
		grep -c \"marker-\$i-$$\" $SRV_OUT/msg-\$i.eml | grep -qx 1 || exit 1
	done"
ok "proxy exits cleanly (two workers)" proxy_stop

# Limits: 1,000 sessions to 100 destinations, 10 at a time, 10 in a row to
# each destination (the next destination's sessions start while the last
# one's connections are parked: more than fit); at most
# upstream_cache_per_dst parked per destination and upstream_cache_max in
# all, per worker.
server_stop
addrs=()
for i in $(seq 100 199); do
	ip -n "$NS_SRV" addr add 198.51.100.$i/24 dev wan0
	addrs+=(198.51.100.$i)
done
rm -f "$SRV_LOG" "$SRV_OUT"/msg-*
server starttls $(printf -- '--listen %s:25 ' "${addrs[@]}")
: >"$PROXY_LOG"
proxy --workers 2 --state-dir "" --upstream-cache-per-dst 2 --upstream-cache-max 16
# (200 under valgrind, which is about 20 times slower: the bounds are the
# same, the run a fifth.)
NSESS=1000
case $STARTTLSD in *valgrind*) NSESS=200 ;; esac
T0=$SECONDS
ok "$NSESS sessions, 10 in a row to each of up to 100 destinations, none failed" cli_run "$PY" "$PEERS/sessions.py" $NSESS 10 10 "${addrs[@]}"
say "  ($NSESS sessions in $((SECONDS - T0)) s)"
established() { in_srv ss -Htn state established '( sport = :25 )' | wc -l; }
per_dst_max() { in_srv ss -Htn state established '( sport = :25 )' | awk '{ print $3 }' | sort | uniq -c | sort -rn | awk 'NR == 1 { print $1 }'; }
ok "parked after the run: at most 2 workers x 16" test "$(established)" -le 32
ok "per destination: at most 2 workers x 2" test "$(per_dst_max)" -le 4
ok "fewer server connections than sessions" test "$(nconns)" -lt $NSESS
say "  ($(nconns) server connections for $NSESS sessions)"
ok "proxy exits cleanly (limits)" proxy_stop
finish
