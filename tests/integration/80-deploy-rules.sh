#!/usr/bin/env bash
# The rule sets in deploy/ for admins who keep their own firewall rules,
# tested as an admin uses them, on the gateway namespace: deploy/nftables.conf
# (nft -f) and deploy/iptables.sh (iptables-nft, then iptables-legacy).
# For each: LAN mail is upgraded through starttlsd; a bypassed destination is
# reached directly and untouched; mail from the gateway itself goes through
# the output chain without looping; removing the rules restores the direct path.
. "$(dirname "$0")/../lib/common.sh"

DEPLOY=$TOP/deploy

topo_up
server starttls
proxy

nsess() { grep -c "event=session" "$PROXY_LOG"; }

# via_proxy: the newest message came in over TLS 1.3 from the gateway, and
# starttlsd's session line N says it upgraded a session to DST from CLIENT.
via_proxy() {
	local m=$1 n=$2 dst=$3 client=$4 line
	wait_msgs "$m" || return 1
	[ "$(json "$(msg_json "$m")" tls)" = TLSv1.3 ] || { echo "msg $m: tls=$(json "$(msg_json "$m")" tls)"; return 1; }
	wait_sessions "$n" || { echo "no session line $n"; return 1; }
	line=$(session_line "$n")
	echo "$line"
	grep -q "client=$client" <<<"$line" && grep -Eq "dst=$dst action=upgraded" <<<"$line" &&
		! grep -q "reason=loop" <<<"$line"
}

# direct: the newest message came straight from the client, in plaintext,
# and starttlsd logged no session for it (still N lines).
direct() {
	local m=$1 n=$2 peer=$3
	wait_msgs "$m" || return 1
	json "$(msg_json "$m")" tls; json "$(msg_json "$m")" peer
	[ "$(json "$(msg_json "$m")" tls)" = None ] && [ "$(json "$(msg_json "$m")" peer)" = "$peer" ] || return 1
	sleep 0.3
	[ "$(nsess)" -eq "$n" ]
}

# lan_mail WHAT [swaks args]: mail from the LAN client to the server's IPv4 address.
lan_mail() { local what=$1; shift; cswaks --body "$what" "$@"; }
lan_mail6() { in_cli swaks -6 --server "$SRV6" --port 25 --helo client.example.org \
	--from sender@example.org --to rcpt@example.net --timeout 20 --body "$1"; }
gw_mail() { in_gw swaks --server "$SRV4" --port 25 --helo local.example.org \
	--from l@example.org --to l@example.net --timeout 20 --body "$1"; }

# check_upgraded LABEL SEND-FUNCTION DST CLIENT: send one mail, require it relayed by starttlsd.
check_upgraded() {
	local label=$1 send=$2 dst=$3 client=$4
	local m=$(($(nmsgs) + 1)) n=$(($(nsess) + 1))
	ok "$label: delivered" "$send" "$label"
	ok "$label: upgraded by starttlsd (TLSv1.3, session line action=upgraded, no loop)" \
		via_proxy "$m" "$n" "$dst" "$client"
}
# check_direct LABEL SEND-FUNCTION PEER: send one mail, require it untouched.
check_direct() {
	local label=$1 send=$2 peer=$3
	local m=$(($(nmsgs) + 1)) n
	n=$(nsess)
	ok "$label: delivered" "$send" "$label"
	ok "$label: direct (server sees $peer, no TLS, no starttlsd session)" direct "$m" "$n" "$peer"
}

# ---- deploy/nftables.conf -----------------------------------------------------

nftconf=$T_TMP/nftables.conf
# The admin's edit: the LAN interface variable at the top (a list works).
sed 's/^define LAN_IFACES = .*/define LAN_IFACES = { "lan9", "lan0" }/' "$DEPLOY/nftables.conf" >"$nftconf"
ok "nft: the LAN_IFACES define is one line an admin (or sed) can change" \
	grep -q '^define LAN_IFACES = { "lan9", "lan0" }$' "$nftconf"
ok "nft: nft -c accepts the file" in_gw nft -c -f "$nftconf"
ok "nft: nft -f loads it" in_gw nft -f "$nftconf"
ok "nft: loading it again replaces it (one redirect rule, no error)" \
	bash -c "ip netns exec $NS_GW nft -f '$nftconf' &&
		test \"\$(ip netns exec $NS_GW nft list table inet starttlsd | grep -c 'redirect to :10025')\" -eq 1"
ok "nft: no output chain unless enabled" \
	bash -c "! ip netns exec $NS_GW nft list chain inet starttlsd output"

check_upgraded "nft: LAN mail (IPv4)" lan_mail "$SRV4:25" "$CLI4:"
check_upgraded "nft: LAN mail (IPv6)" lan_mail6 "\[$SRV6\]:25" "\[$CLI6\]:"

# Bypass: the admin's lines at the end of the file, then a reload.
cp "$nftconf" "$nftconf.bypass"
cat >>"$nftconf.bypass" <<'NFT'
add element inet starttlsd bypass4 { 198.51.100.0/24 }
add element inet starttlsd bypass6 { 2001:db8:2::/64 }
NFT
ok "nft: reloaded with bypass entries" in_gw nft -f "$nftconf.bypass"
ok "nft: bypass4 holds 198.51.100.0/24" \
	bash -c "ip netns exec $NS_GW nft list set inet starttlsd bypass4 | grep -q '198.51.100.0/24'"
check_direct "nft: bypassed destination (IPv4)" lan_mail "$CLI4"
check_direct "nft: bypassed destination (IPv6)" lan_mail6 "$CLI6"
# The set is live: taking the entry out at run time intercepts again.
ok "nft: bypass entry removed at run time" \
	in_gw nft delete element inet starttlsd bypass4 '{ 198.51.100.0/24 }'
check_upgraded "nft: LAN mail after the bypass entry is removed" lan_mail "$SRV4:25" "$CLI4:"

# Mail from the gateway itself: the commented output block, enabled as the
# file says (the sed line in its comment).
sed -i '/^# >>> local/,/^# <<< local/s/^#\([^ ]\)/\1/' "$nftconf"
ok "nft: reloaded with the output chain enabled" in_gw nft -f "$nftconf"
ok "nft: the output chain exempts the mark first" \
	bash -c "ip netns exec $NS_GW nft list chain inet starttlsd output | grep -A1 'hook output' | grep -q 'meta mark 0x00002525 return'"
check_upgraded "nft: mail from the gateway itself" gw_mail "$SRV4:25" ""
check_upgraded "nft: LAN mail with the output chain on" lan_mail "$SRV4:25" "$CLI4:"
not_ok "nft: no loop was logged" log_has "reason=loop"

ok "nft: nft delete table removes it" in_gw nft delete table inet starttlsd
check_direct "nft: after the table is deleted" lan_mail "$CLI4"

# ---- deploy/iptables.sh --------------------------------------------------------

# ipt [VAR=value...] start|stop|status: the script as an admin runs it (sh).
ipt() {
	local env=()
	while [[ "${1:-}" == *=* ]]; do env+=("$1"); shift; done
	in_gw env LAN_IFACES="lan9 lan0" "${env[@]}" sh "$DEPLOY/iptables.sh" "$@"
}
# save V4-SAVE V6-SAVE: both families' nat tables, without comments and counters.
save() {
	{ in_gw "$1" -t nat; in_gw "$2" -t nat; } 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'
}
# counts_ok: in each family, one jump and one redirect per LAN interface.
counts_ok() {
	local s out
	for s in iptables-save ip6tables-save; do
		out=$(in_gw "$s" -t nat)
		echo "$out"
		[ "$(grep -c -- "-A PREROUTING .*-j STARTTLSD\$" <<<"$out")" -eq 1 ] || return 1
		[ "$(grep -c -- "-j REDIRECT --to-ports 10025" <<<"$out")" -eq 2 ] || return 1
	done
}
status_shows() { local out; out=$(ipt status) && echo "$out" && grep -q -- "-i lan0 .*-j REDIRECT --to-ports 10025" <<<"$out"; }
mark_first() { in_gw iptables-save -t nat | grep -m1 -- "-A STARTTLSD_OUT" | grep -q -- "--mark 0x2525 -j RETURN"; }
start_drops_local() { ipt start && ! in_gw iptables-save -t nat | grep -q STARTTLSD_OUT; }
legacy_clean() { ! save iptables-legacy-save ip6tables-legacy-save | grep -Eq "STARTTLSD|10025"; }

# Rules of the admin's own, which the script must leave alone.
in_gw iptables -t nat -A POSTROUTING -o wan0 -s 203.0.113.0/24 -j MASQUERADE
in_gw ip6tables -t nat -A POSTROUTING -o wan0 -s 2001:db8:3::/48 -j MASQUERADE
save iptables-save ip6tables-save >"$T_TMP/ipt.before"

ipt status >/dev/null 2>&1
ok "iptables: status exits 3 before start" test $? -eq 3
ok "iptables: start" ipt start
ok "iptables: start again (idempotent)" ipt start
ok "iptables: one jump, one redirect per LAN interface, per family" counts_ok
ok "iptables: status exits 0 and shows the rules" status_shows

check_upgraded "iptables: LAN mail (IPv4)" lan_mail "$SRV4:25" "$CLI4:"
check_upgraded "iptables: LAN mail (IPv6)" lan_mail6 "\[$SRV6\]:25" "\[$CLI6\]:"

ok "iptables: start with BYPASS4/BYPASS6" ipt BYPASS4="203.0.113.7 198.51.100.0/24" BYPASS6=2001:db8:2::/64 start
check_direct "iptables: bypassed destination (IPv4)" lan_mail "$CLI4"
check_direct "iptables: bypassed destination (IPv6)" lan_mail6 "$CLI6"

ok "iptables: start with INTERCEPT_LOCAL=yes (and the bypass gone again)" ipt INTERCEPT_LOCAL=yes start
ok "iptables: the OUTPUT chain returns starttlsd's marked packets first" mark_first
check_upgraded "iptables: mail from the gateway itself" gw_mail "$SRV4:25" ""
check_upgraded "iptables: LAN mail with INTERCEPT_LOCAL=yes" lan_mail "$SRV4:25" "$CLI4:"
not_ok "iptables: no loop was logged" log_has "reason=loop"
ok "iptables: start without INTERCEPT_LOCAL removes the OUTPUT part" start_drops_local

ok "iptables: stop" ipt INTERCEPT_LOCAL=yes stop
ok "iptables: stop again (idempotent)" ipt stop
save iptables-save ip6tables-save >"$T_TMP/ipt.after"
ok "iptables: after stop, iptables-save/ip6tables-save are exactly as before start" \
	diff "$T_TMP/ipt.before" "$T_TMP/ipt.after"
not_ok "iptables: after stop, nothing of starttlsd is left" grep -Eq "STARTTLSD|10025" "$T_TMP/ipt.after"
check_direct "iptables: after stop (IPv4)" lan_mail "$CLI4"
check_direct "iptables: after stop (IPv6)" lan_mail6 "$CLI6"

# The same script with the legacy backend (x_tables), as some routers have it.
if in_gw iptables-legacy -t nat -n -L >/dev/null 2>&1 && in_gw ip6tables-legacy -t nat -n -L >/dev/null 2>&1; then
	L=(IPTABLES=iptables-legacy IP6TABLES=ip6tables-legacy)
	ok "iptables-legacy: start" ipt "${L[@]}" INTERCEPT_LOCAL=yes start
	ok "iptables-legacy: the rules are in the legacy tables" \
		bash -c "ip netns exec $NS_GW iptables-legacy-save -t nat | grep -q -- '-j STARTTLSD\$'"
	check_upgraded "iptables-legacy: LAN mail" lan_mail "$SRV4:25" "$CLI4:"
	check_upgraded "iptables-legacy: mail from the gateway itself" gw_mail "$SRV4:25" ""
	ok "iptables-legacy: stop" ipt "${L[@]}" stop
	ok "iptables-legacy: after stop, nothing of starttlsd is left" legacy_clean
	check_direct "iptables-legacy: after stop" lan_mail "$CLI4"
else
	say "  (iptables-legacy does not work here: the legacy backend is not tested)"
fi

not_ok "no loop was logged at any point" log_has "reason=loop"
ok "proxy exits cleanly" proxy_stop

# ---- deploy/starttlsd.service: its capability set is enough -------------------
# No systemd here to start the unit; what can be checked without it is that
# the capabilities it leaves starttlsd (root, CapabilityBoundingSet) suffice
# for everything the daemon does with them: the nftables batch, SO_MARK,
# IP_TRANSPARENT listeners.
caps=$(sed -n 's/^CapabilityBoundingSet=//p' "$DEPLOY/starttlsd.service")
bset=-all
for c in $caps; do c=${c#CAP_}; bset+=",+${c,,}"; done
capped=$T_TMP/starttlsd-capped
printf '#!/bin/sh\nexec setpriv --bounding-set=%s --no-new-privs %q "$@"\n' "$bset" "$STARTTLSD" >"$capped"
chmod +x "$capped"
# caps_are PID N: the process holds exactly its bounding set, N capabilities.
caps_are() {
	local eff bnd v n=0
	eff=$(sed -n 's/^CapEff:\t//p' "/proc/$1/status"); bnd=$(sed -n 's/^CapBnd:\t//p' "/proc/$1/status")
	echo "CapEff=$eff CapBnd=$bnd (unit: $caps)"
	v=$((16#$bnd)); while [ "$v" -gt 0 ]; do n=$((n + (v & 1))); v=$((v >> 1)); done
	[ "$eff" = "$bnd" ] && [ "$n" -eq "$2" ]
}
tables() { in_gw nft list tables | grep -c "inet starttlsd"; }

: >"$PROXY_LOG"
if STARTTLSD=$capped proxy --intercept on --intercept-interfaces lan0 --intercept-local on; then
	ok "unit caps: starttlsd holds only CapabilityBoundingSet ($caps)" caps_are "$PROXY_PID" "$(wc -w <<<"$caps")"
	ok "unit caps: intercept = on installed its table" test "$(tables)" -eq 1
	check_upgraded "unit caps: LAN mail" lan_mail "$SRV4:25" "$CLI4:"
	check_upgraded "unit caps: mail from the gateway itself (SO_MARK works)" gw_mail "$SRV4:25" ""
	not_ok "unit caps: no mark=failed" log_has "mark=failed"
	ok "unit caps: exits cleanly" proxy_stop
	ok "unit caps: the table is gone after SIGTERM" test "$(tables)" -eq 0
else
	ok "unit caps: starttlsd starts with intercept = on" false
fi

in_gw ip rule add fwmark 0x1 lookup 100
in_gw ip route add local 0.0.0.0/0 dev lo table 100
: >"$PROXY_LOG"
if STARTTLSD=$capped proxy --intercept on --intercept-interfaces lan0 --intercept-method tproxy; then
	check_upgraded "unit caps: LAN mail through TPROXY (IP_TRANSPARENT)" lan_mail "$SRV4:25" "$CLI4:"
	ok "unit caps: exits cleanly (tproxy)" proxy_stop
elif grep -qiE "tproxy|IP_TRANSPARENT|No such file" "$PROXY_LOG" && ! grep -q "Operation not permitted" "$PROXY_LOG"; then
	say "  (TPROXY refused by this kernel, not for lack of a capability: $(tail -n 1 "$PROXY_LOG"))"
else
	ok "unit caps: starttlsd starts with intercept_method = tproxy" false
fi
finish
