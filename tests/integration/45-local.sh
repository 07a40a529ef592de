#!/usr/bin/env bash
# Mail sent by the gateway itself: an output-chain redirect, with starttlsd's
# own upstream connections exempt by their socket mark (upstream_mark), so
# they go out instead of looping back. Also: starting as a daemon.
. "$(dirname "$0")/../lib/common.sh"

topo_up
server starttls
in_gw nft -f - <<NFT
table inet sttest {
	chain output {
		type nat hook output priority -100; policy accept;
		meta mark 0x2525 return
		tcp dport 25 redirect to :10025
	}
}
NFT
proxy

ok "a local MTA on the gateway sends through the output redirect" \
	in_gw swaks --server "$SRV4" --port 25 --helo local.example.org --from l@example.org \
	--to l@example.net --body "from the gateway itself" --timeout 20
ok "message stored" wait_msgs 1
ok "it went over TLS" test "$(json "$(msg_json 1)" tls)" = TLSv1.3
wait_sessions 1
ok "session line: upgraded, dst is the server (no loop)" grep -Eq "dst=$SRV4:25 action=upgraded" <<<"$(session_line 1)"
not_ok "no loop was detected" log_has "reason=loop"
ok "proxy exits cleanly" proxy_stop

# Without the mark the upstream connection would come back: refused as a loop.
: >"$PROXY_LOG"
proxy --upstream-mark 0 --workers 1
in_gw swaks --server "$SRV4" --port 25 --helo local.example.org --from l@example.org \
	--to l@example.net --body "loop" --timeout 10 >"$T_TMP/loop.out" 2>&1
ok "without the mark: the looped connection is refused (421 4.4.6)" wait_for 5 log_has "action=refused .*reason=loop"
ok "without the mark: the client gets a 421, not a 250" grep -q "^<\*\* 421" "$T_TMP/loop.out"
ok "nothing more was stored" test "$(nmsgs)" -eq 1
ok "the loop stopped at once: two session lines, the outer and the looped one" \
	test "$(grep -c event=session "$PROXY_LOG")" -eq 2
ok "proxy exits cleanly" proxy_stop

# Several workers: the one that accepts the looped connection can be
# scheduled before the connecting one has returned from connect() and
# published its port; the loop must still stop at the first hop.
: >"$PROXY_LOG"
proxy --upstream-mark 0 --workers 4
for i in 1 2 3 4 5 6 7 8; do
	in_gw swaks --server "$SRV4" --port 25 --helo local.example.org --from l@example.org \
		--to l@example.net --body "loop $i" --timeout 10 >"$T_TMP/loop$i.out" 2>&1
done
ok "4 workers, 8 looped sessions: each client gets a 421" \
	test "$(cat "$T_TMP"/loop[1-8].out | grep -c '^<\*\* 421')" -eq 8
ok "4 workers: every loop stopped at once (16 session lines, 8 refused as loops)" \
	wait_for 5 bash -c "[ \$(grep -c event=session '$PROXY_LOG') -eq 16 ] && [ \$(grep -c 'reason=loop' '$PROXY_LOG') -eq 8 ]"
say "  note: 4 workers: $(grep -c event=session "$PROXY_LOG") session lines, $(grep -c 'reason=loop' "$PROXY_LOG") loop refusals"
ok "4 workers: nothing more was stored" test "$(nmsgs)" -eq 1
ok "proxy exits cleanly" proxy_stop

# Daemon mode: no -f; pid_file written; SIGTERM removes it.
in_gw nft delete table inet sttest
ip netns exec "$NS_GW" "$STARTTLSD" "${NO_DNS[@]}" --pid-file "$T_TMP/starttlsd.pid" --listen 127.0.0.1:10026 --state-dir "" \
	--helo-name gw.example.org
ok "daemon: the parent returns at once, pid file written" wait_for 5 test -s "$T_TMP/starttlsd.pid"
dpid=$(cat "$T_TMP/starttlsd.pid")
ok "daemon: running in a session of its own, not ours" \
	bash -c "kill -0 $dpid && test \"\$(ps -o sid= -p $dpid)\" != \"\$(ps -o sid= -p $$)\""
kill -TERM "$dpid"
ok "daemon: SIGTERM stops it and removes the pid file" wait_for 5 bash -c "! kill -0 $dpid 2>/dev/null && ! test -e $T_TMP/starttlsd.pid"
finish
