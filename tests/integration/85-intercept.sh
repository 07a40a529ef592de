#!/usr/bin/env bash
# starttlsd owns its interception (intercept = on): the table "inet
# starttlsd" appears at start, is replaced after a crash, updates its bypass
# set on SIGHUP, and is gone after SIGTERM so port 25 flows as before.
. "$(dirname "$0")/../lib/common.sh"

topo_up
server starttls
tables() { in_gw nft list tables 2>/dev/null | grep -c "inet starttlsd"; }

# An MTA on the gateway itself, on its LAN addresses (plain SMTP): mail the
# LAN sends to it must reach it directly (the peer it sees is the client's
# address, which is what its relay rules judge), never through starttlsd.
GW_OUT=$T_TMP/gw-out
gw_mta() {
	mkdir -p "$GW_OUT"
	rm -f "$T_TMP/gwmta.stdout"
	in_gw "$PY" "$PEERS/smtpd.py" --listen "$GWL4:25" --listen "[$GWL6]:25" \
		--out "$GW_OUT" --log "$T_TMP/gwmta.log" --mode plain --hostname gw.example.org \
		>"$T_TMP/gwmta.stdout" 2>"$T_TMP/gwmta.stderr" &
	T_PIDS+=($!); disown $!
	wait_for 5 grep -q ready "$T_TMP/gwmta.stdout"
}
gw_msgs() { ls "$GW_OUT"/msg-*.json 2>/dev/null | wc -l; }
# to_gw WHAT FAMILY: one message from the client to the gateway's own MTA;
# it arrives, with the client's address as peer, and starttlsd logs no session.
to_gw() {
	local what=$1 fam=$2 dst=$GWL4 peer=$CLI4 n s
	[ "$fam" = 6 ] && { dst=$GWL6; peer=$CLI6; }
	n=$(gw_msgs); s=$(grep -c event=session "$PROXY_LOG")
	ok "$what: mail to the gateway's own MTA (IPv$fam)" in_cli swaks -$fam --server "$dst" --port 25 \
		--helo client.example.org --from a@example.org --to postmaster@gw.example.org --body "to the gateway" --timeout 20
	ok "$what: it arrived (IPv$fam)" wait_for 5 test -f "$GW_OUT/msg-$((n + 1)).json"
	ok "$what: the MTA saw the client's own address, not the gateway's (IPv$fam)" \
		bash -c "test \"\$($PY -c 'import json;print(json.load(open(\"$GW_OUT/msg-$((n + 1)).json\"))[\"peer\"])')\" = $peer"
	sleep 0.3
	ok "$what: starttlsd wrote no session line for it (IPv$fam)" test "$(grep -c event=session "$PROXY_LOG")" -eq "$s"
}
gw_mta || say "gateway MTA did not start"
conf=$T_TMP/intercept.conf
cat >"$conf" <<C
intercept = on
intercept_interfaces = lan0
C
proxy -c "$conf"

ok "the table is installed at start" test "$(tables)" -eq 1
ok "it redirects port 25 from lan0" bash -c "ip netns exec $NS_GW nft list table inet starttlsd | grep -q 'iifname \"lan0\" tcp dport 25 redirect to :10025'"
ok "start logged (event=intercept action=installed)" log_has "event=intercept action=installed table=\"inet starttlsd\" method=redirect interfaces=lan0"
ok "mail from the LAN is upgraded with no hand-written rule" cswaks --body "owned interception"
ok "message stored over TLS" wait_msgs 1
ok "over TLSv1.3, from the gateway" bash -c "test \"\$($PY -c 'import json;d=json.load(open(\"$(msg_json 1)\"));print(d[\"tls\"],d[\"peer\"])')\" = 'TLSv1.3 $GWW4'"
ok "the redirect chain exempts local destinations" bash -c "ip netns exec $NS_GW nft list chain inet starttlsd prerouting | grep -q 'fib daddr type local return'"
to_gw redirect 4
to_gw redirect 6

# Bypass: SIGHUP with the server's network in intercept_bypass.
echo "intercept_bypass = 198.51.100.0/24 2001:db8:2::/48" >>"$conf"
kill -HUP "$PROXY_PID"
ok "bypass update logged" wait_for 5 log_has "event=intercept action=updated .*bypass=2"
ok "the bypass set holds the networks" bash -c "ip netns exec $NS_GW nft list set inet starttlsd bypass4 | grep -q '198.51.100.0/24'"
n=$(grep -c event=session "$PROXY_LOG")
ok "mail to a bypassed destination is sent" cswaks --body "bypassed"
ok "it arrived" wait_msgs 2
ok "straight from the client, untouched (no TLS)" bash -c "test \"\$($PY -c 'import json;d=json.load(open(\"$(msg_json 2)\"));print(d[\"tls\"],d[\"peer\"])')\" = 'None $CLI4'"
ok "the proxy saw no session for it" test "$(grep -c event=session "$PROXY_LOG")" -eq "$n"
sed -i '/intercept_bypass/d' "$conf"
kill -HUP "$PROXY_PID"
ok "bypass emptied on reload" wait_for 5 log_has "event=intercept action=updated .*bypass=0"
ok "mail is intercepted again" cswaks --body "again"
ok "over TLS again" bash -c "wait_msgs(){ :; }; test -f $(msg_json 3) || sleep 1; test \"\$($PY -c 'import json;print(json.load(open(\"$(msg_json 3)\"))[\"tls\"])')\" = TLSv1.3"

# SIGTERM: the table goes first, then the daemon; port 25 flows directly.
ok "SIGTERM: clean exit" proxy_stop
ok "SIGTERM: the table is gone" test "$(tables)" -eq 0
ok "removal logged" log_has "event=intercept action=removed"
ok "after stop, mail flows directly" cswaks --body "proxy stopped"
ok "...from the client itself, not through a proxy" bash -c "sleep 0.5; test \"\$($PY -c 'import json;print(json.load(open(\"$(msg_json 4)\"))[\"peer\"])')\" = $CLI4"

# SIGKILL leaves a stale table; a restart replaces it: exactly one.
: >"$PROXY_LOG"
proxy -c "$conf"
kill -9 "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null
ok "after SIGKILL the stale table is still there" test "$(tables)" -eq 1
: >"$PROXY_LOG"
proxy -c "$conf"
ok "restart: exactly one table" test "$(tables)" -eq 1
ok "restart: mail upgraded" cswaks --body "after crash"
wait_sessions 1
ok "restart: session upgraded" grep -q "action=upgraded" <<<"$(session_line 1)"
ok "proxy exits cleanly" proxy_stop

# intercept_local: the gateway's own MTA, output chain, own connections exempt.
: >"$PROXY_LOG"
proxy --intercept on --intercept-local on
ok "intercept_local: the output chain is there with the mark exemption" bash -c "ip netns exec $NS_GW nft list chain inet starttlsd output | grep -q 'meta mark 0x00002525 return'"
ok "intercept_local: mail from the gateway itself" in_gw swaks --server "$SRV4" --port 25 --helo gw-mta.example.org \
	--from l@example.org --to l@example.net --body "local" --timeout 20
wait_sessions 1
ok "intercept_local: upgraded, no loop" grep -Eq "dst=$SRV4:25 action=upgraded" <<<"$(session_line 1)"
not_ok "intercept_local: no loop refusal" log_has "reason=loop"
ok "intercept_local: the output chain exempts local destinations" bash -c "ip netns exec $NS_GW nft list chain inet starttlsd output | grep -q 'fib daddr type local return'"
n=$(gw_msgs); s=$(grep -c event=session "$PROXY_LOG")
ok "intercept_local: the gateway mailing its own MTA" in_gw swaks --server "$GWL4" --port 25 --helo gw-mta.example.org \
	--from l@example.org --to postmaster@gw.example.org --body "local to local" --timeout 20
ok "intercept_local: arrived directly, no session line" bash -c "sleep 0.3; test -f $GW_OUT/msg-$((n + 1)).json && test \$(grep -c event=session $PROXY_LOG) -eq $s"
ok "proxy exits cleanly" proxy_stop

# Errors from the kernel: without CAP_NET_ADMIN nothing starts half-way.
out=$T_TMP/nocap.out
ip netns exec "$NS_GW" setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all \
	"$STARTTLSD" "${NO_DNS[@]}" -f --state-dir "" --listen 127.0.0.1:10099 --intercept on --intercept-interfaces lan0 >"$out" 2>&1
rc=$?
ok "no CAP_NET_ADMIN: refuses to start (exit 1)" test $rc -eq 1
ok "no CAP_NET_ADMIN: says which step failed and why" grep -q "nftables: .*: Operation not permitted" "$out"
ok "no CAP_NET_ADMIN: nothing installed" test "$(tables)" -eq 0

# TPROXY: IP_TRANSPARENT listeners, policy routing set as docs/ say.
in_gw ip rule add fwmark 0x1 lookup 100
in_gw ip route add local 0.0.0.0/0 dev lo table 100
in_gw ip -6 rule add fwmark 0x1 lookup 100
in_gw ip -6 route add local ::/0 dev lo table 100
: >"$PROXY_LOG"
if ! proxy --intercept on --intercept-interfaces lan0 --intercept-method tproxy; then
	skip "TPROXY: the kernel here refused it: $(tail -n 1 "$PROXY_LOG")"
fi
ok "tproxy: the divert chain is installed" bash -c "ip netns exec $NS_GW nft list chain inet starttlsd divert | grep -q 'tproxy to :10025'"
ok "tproxy: mail from the LAN" cswaks --body "via tproxy"
wait_sessions 1
ok "tproxy: original destination from the accepted socket, upgraded" grep -Eq "client=$CLI4:[0-9]+ dst=$SRV4:25 action=upgraded tls=TLSv1.3" <<<"$(session_line 1)"
ok "tproxy: IPv6 too" in_cli swaks -6 --server "$SRV6" --port 25 --helo client.example.org --from a@example.org --to b@example.net --body v6 --timeout 20
wait_sessions 2
ok "tproxy: v6 session upgraded" grep -Eq "dst=\[$SRV6\]:25 action=upgraded" <<<"$(session_line 2)"
ok "tproxy: the divert chain exempts local destinations" bash -c "ip netns exec $NS_GW nft list chain inet starttlsd divert | grep -q 'fib daddr type local return'"
to_gw tproxy 4
to_gw tproxy 6
ok "proxy exits cleanly" proxy_stop
ok "tproxy: the table is gone" test "$(tables)" -eq 0

# transparent_source: the server sees the client's own address, over TLS.
: >"$PROXY_LOG"
proxy --intercept on --intercept-interfaces lan0 --intercept-method tproxy --transparent-source on --workers 1
n=$(nmsgs)
ok "transparent_source: mail from the LAN" cswaks --body "from the client's address"
ok "transparent_source: stored" wait_msgs $((n + 1))
ok "transparent_source: the server saw the client's address, over TLS" bash -c "test \"\$($PY -c 'import json;d=json.load(open(\"$(msg_json $((n + 1)))\"));print(d[\"peer\"],d[\"tls\"])')\" = '$CLI4 TLSv1.3'"
ok "transparent_source: IPv6 too" in_cli swaks -6 --server "$SRV6" --port 25 --helo client.example.org --from a@example.org --to b@example.net --body v6 --timeout 20
ok "transparent_source: the server saw the client's v6 address" bash -c "sleep 0.3; test \"\$($PY -c 'import json;d=json.load(open(\"$(msg_json $((n + 2)))\"));print(d[\"peer\"],d[\"tls\"])')\" = '$CLI6 TLSv1.3'"
# The connection cache keys by client here: the same client's next session
# may take its parked connection, another client's never.
peer_of() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["peer"], d["conn"])' "$(msg_json "$1")"; }
ok "transparent_source: the same client again" cswaks --body "same client"
ok "transparent_source: ... stored" wait_msgs $((n + 3))
ok "transparent_source: ... over its own parked connection" test "$(peer_of $((n + 3)))" = "$(peer_of $((n + 1)))"
CLI4B=192.0.2.11
ip -n "$NS_CLI" addr add $CLI4B/24 dev lan0
ok "transparent_source: another client" in_cli swaks --server "$SRV4" --port 25 --local-interface $CLI4B \
	--helo other.example.org --from a@example.org --to b@example.net --body "another client" --timeout 20
ok "transparent_source: ... stored" wait_msgs $((n + 4))
read -r pA cA <<<"$(peer_of $((n + 1)))"
read -r pB cB <<<"$(peer_of $((n + 4)) 2>/dev/null)"
ok "transparent_source: ... from its own address" test "$pB" = "$CLI4B"
ok "transparent_source: ... on a connection of its own" test "$cB" != "$cA"
ok "proxy exits cleanly" proxy_stop
"$STARTTLSD" --check-config --transparent-source on >"$T_TMP/ts.out" 2>&1
ok "transparent_source without tproxy is refused" grep -q "transparent_source: needs intercept = on and intercept_method = tproxy" "$T_TMP/ts.out"
# --print-ruleset without interception configured says so.
"$STARTTLSD" --print-ruleset >"$T_TMP/pr0.out" 2>"$T_TMP/pr0.err"; rc=$?
ok "--print-ruleset with nothing to take: exit 1, says why, prints no empty table" \
	bash -c "test $rc -eq 1 && grep -q 'nothing to print: no intercept_interfaces and intercept_local off' $T_TMP/pr0.err && ! test -s $T_TMP/pr0.out"
"$STARTTLSD" --print-ruleset --intercept-interfaces lan0 >"$T_TMP/pr1.out" 2>&1; rc=$?
ok "--print-ruleset with intercept off: says it installs nothing, shows what on would" \
	bash -c "test $rc -eq 0 && head -n 1 $T_TMP/pr1.out | grep -q '^# intercept is off: starttlsd installs nothing' && grep -q 'iifname \"lan0\" tcp dport 25 redirect' $T_TMP/pr1.out"
ok "--print-ruleset: the local exemption is in it" grep -q "fib daddr type local return" "$T_TMP/pr1.out"
ok "--print-ruleset: nft accepts it as it is" in_gw nft -c -f "$T_TMP/pr1.out"
"$STARTTLSD" --print-ruleset --intercept on --intercept-interfaces lan0 --intercept-method tproxy >"$T_TMP/pr2.out" 2>&1
ok "--print-ruleset with intercept on: no such remark" bash -c "! grep -q 'intercept is off' $T_TMP/pr2.out && grep -q 'tproxy to :10025' $T_TMP/pr2.out"
finish
