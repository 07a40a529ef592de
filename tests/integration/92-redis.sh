#!/usr/bin/env bash
# A fleet of two gateways sharing pins through one real redis-server (issue
# 14): A learns, B blocks in enforce mode; forget on B clears A; Redis killed
# or frozen never stops or slows mail, is said once (event=pinstore), and a
# restarted (empty) Redis is caught up; garbage under the prefix is skipped
# with a log line; 10,000 pins sync in bounded time; a short soak of Redis
# restarts keeps both gateways relaying (SOAK_ROUNDS, default 3, 1 under
# valgrind; "make soak-redis" runs 30); Redis refusing a gateway (wrong
# password, a prefix outside its ACL) is said once and mail goes on. Also:
# --check-config on the fleet keys, metrics through starttlsctl stats.
#
#   cli  -- gw  (A, redis+unix socket) -- srv 198.51.100.25 (wan0)
#   cli2 -- gw2 (B, redis:// over TCP) -- srv 203.0.113.25  (wan1), Redis there
#
# Both clients send to 198.51.100.25; B routes it over its own link.
. "$(dirname "$0")/../lib/common.sh"

command -v redis-server >/dev/null || skip "redis-server not installed (tests/deps.sh)"
need_root
CTL=${STARTTLSCTL:-$(dirname "$STARTTLSD")/starttlsctl}
case $STARTTLSD in *valgrind*) SLOW=4 ;; */san/*) SLOW=2 ;; *) SLOW=1 ;; esac
SOAK_ROUNDS=${SOAK_ROUNDS:-$([ "$SLOW" = 4 ] && echo 1 || echo 3)}

NS_GW2="${NS_PREFIX}gw2"
NS_CLI2="${NS_PREFIX}cli2"
RIP=203.0.113.25               # Redis, on srv's second link
GW2W=203.0.113.1
PREFIX="fleet$$:"
DB=3
STATE_A=$T_TMP/stateA
STATE_B=$T_TMP/stateB
LOG_B=$T_TMP/proxyB.log
RDIR=$T_TMP/redis
RSOCK=$RDIR/redis.sock
PASSF=$T_TMP/redis.pass
FLEETPASS="fleet-$$-$RANDOM"
ADMINPASS="admin-$$-$RANDOM"

extra_cleanup() {
	[ -n "${REDIS_PID:-}" ] && kill -9 "$REDIS_PID" 2>/dev/null
	for ns in "$NS_CLI2" "$NS_GW2"; do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
		ip netns del "$ns" 2>/dev/null
	done
}
trap 'extra_cleanup; cleanup' EXIT

topo_up
redirect_on
# Gateway B: its own LAN and its own link to srv.
ip netns add "$NS_GW2"; ip netns add "$NS_CLI2"
ip -n "$NS_GW2" link set lo up; ip -n "$NS_CLI2" link set lo up
ip link add "${NS_PREFIX}d0" netns "$NS_CLI2" type veth peer name "${NS_PREFIX}h0" netns "$NS_GW2"
ip link add "${NS_PREFIX}h1" netns "$NS_GW2" type veth peer name "${NS_PREFIX}s1" netns "$NS_SRV"
ip -n "$NS_CLI2" link set "${NS_PREFIX}d0" name lan0
ip -n "$NS_GW2" link set "${NS_PREFIX}h0" name lan0
ip -n "$NS_GW2" link set "${NS_PREFIX}h1" name wan0
ip -n "$NS_SRV" link set "${NS_PREFIX}s1" name wan1
ip -n "$NS_CLI2" addr add $CLI4/24 dev lan0
ip -n "$NS_GW2" addr add $GWL4/24 dev lan0
ip -n "$NS_GW2" addr add $GW2W/24 dev wan0
ip -n "$NS_SRV" addr add $RIP/24 dev wan1
for l in "$NS_CLI2 lan0" "$NS_GW2 lan0" "$NS_GW2 wan0" "$NS_SRV wan1"; do
	set -- $l; ip -n "$1" link set "$2" up
done
ip -n "$NS_CLI2" route add default via $GWL4
ip -n "$NS_GW2" route add 198.51.100.0/24 via $RIP
ip netns exec "$NS_GW2" sysctl -qw net.ipv4.ip_forward=1
ip netns exec "$NS_GW2" nft -f - <<NFT
table inet sttest {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "lan0" tcp dport 25 redirect to :10025
	}
}
NFT

# ---- Redis: a private instance, no persistence, ACL user for the fleet ------
mkdir -p "$RDIR"; chmod 755 "$RDIR"
umask 077; printf '%s\n' "$FLEETPASS" >"$PASSF"; umask 022
redis_start() {
	rm -f "$RDIR/redis.log"
	ip netns exec "$NS_SRV" redis-server --bind "$RIP" --port 6379 \
		--unixsocket "$RSOCK" --unixsocketperm 777 --dir "$RDIR" \
		--save '' --appendonly no --protected-mode no --daemonize no \
		--logfile "$RDIR/redis.log" \
		--user default off \
		--user fleet on ">$FLEETPASS" "~$PREFIX*" "&*" +@all -@dangerous \
		--user admin on ">$ADMINPASS" "~*" "&*" +@all &
	REDIS_PID=$!
	disown $!
	wait_for 5 rcli PING >/dev/null
}
redis_kill() { kill -9 "$REDIS_PID" 2>/dev/null; wait_for 3 bash -c "! kill -0 $REDIS_PID"; }
rcli() { redis-cli -s "$RSOCK" --user admin --pass "$ADMINPASS" --no-auth-warning -n $DB "$@"; }
export -f rcli; export RSOCK ADMINPASS DB

# ---- the two gateways -------------------------------------------------------
ctl_a() { "$CTL" --state-dir "$STATE_A" "$@"; }
ctl_b() { "$CTL" --state-dir "$STATE_B" "$@"; }
FLEET=(--mode enforce --pin-store-prefix "$PREFIX" --pin-store-password-file "$PASSF")
start_a() {
	PROXY_BASE=(--helo-name gw-a.example.org --state-dir "$STATE_A" "${NO_DNS[@]}")
	proxy "${FLEET[@]}" --pin-store "redis+unix://fleet@$RSOCK?db=$DB" --pin-store-gateway gw-a "$@"
}
start_b() {
	certs
	ip netns exec "$NS_GW2" "$STARTTLSD" "${NO_DNS[@]}" -f --log-stderr --helo-name gw-b.example.org \
		--state-dir "$STATE_B" --ca-file "$CERTS/ca.crt" "${FLEET[@]}" \
		--pin-store "redis://fleet@$RIP:6379/$DB" --pin-store-gateway gw-b "$@" 2>>"$LOG_B" &
	PROXY_B_PID=$!
	T_PIDS+=($PROXY_B_PID)
	wait_for "$PROXY_START_WAIT" grep -q "event=start" "$LOG_B"
}
stop_b() {
	kill -TERM "$PROXY_B_PID" 2>/dev/null
	local rc=0
	wait "$PROXY_B_PID" || rc=$?
	[ "$rc" -eq 0 ] || { say "proxy B exited $rc"; return 1; }
	# B's lines read as strict logfmt with the keys of docs/logging.md, as A's do.
	logfmt_build >/dev/null 2>&1 || { say "no logfmt-check"; return 1; }
	"$LOGFMT_CHECK" -docs "$TOP/docs/logging.md" "$LOG_B" | tail -n 1 | grep -qE '^[0-9]+ lines ok$' ||
		{ say "B: bad log lines: $("$LOGFMT_CHECK" -docs "$TOP/docs/logging.md" "$LOG_B" 2>&1 | head -n 2)"; return 1; }
	! grep -qE "AddressSanitizer|LeakSanitizer|runtime error:|status=9[78] expected|^==[0-9]+== (Invalid|Conditional jump|Use of uninitialised|Syscall param|Mismatched|.*definitely lost)" "$LOG_B"
}
cswaks2() {
	ip netns exec "$NS_CLI2" swaks --server "$SRV4" --port 25 --helo client2.example.org \
		--from sender@example.org --to rcpt@example.net --timeout 20 "$@"
}
chat2() { ip netns exec "$NS_CLI2" "$PY" "$PEERS/chat.py" "$SRV4" 25 -; }
crashed() { grep -hE "event=worker action=exited .*expected=no" "$PROXY_LOG" "$LOG_B"; }
nlines() { grep -Ec "$2" "$1" 2>/dev/null; }
# metric STATE NAME: its value in starttlsctl stats (the daemon's shared counters).
metric() { "$CTL" --state-dir "$1" stats | sed -n "s/^$2 //p"; }
export -f metric; export CTL

# Configuration: refused with a reason by --check-config (no network needed).
check() { "$STARTTLSD" --check-config --listen 127.0.0.1:10025 --state-dir "$T_TMP/chk" "$@" 2>&1; }
ok "a good fleet configuration passes --check-config" \
	bash -c "'$STARTTLSD' --check-config --listen 127.0.0.1:10025 --pin-store redis+unix://fleet@/run/redis.sock?db=2 --pin-store-password-file '$PASSF' | grep -qx 'starttlsd: configuration ok'"
ok "a bad pin_store URL is refused" bash -c "$(declare -f check); STARTTLSD='$STARTTLSD' T_TMP='$T_TMP' check --pin-store rediss://192.0.2.53 | grep -q 'pin_store: rediss://192.0.2.53: expected lmdb, redis://'"
chmod 640 "$PASSF"
ok "a password file others can read is refused" bash -c "$(declare -f check); STARTTLSD='$STARTTLSD' T_TMP='$T_TMP' check --pin-store redis://192.0.2.53 --pin-store-password-file '$PASSF' | grep -q 'must be a file of root.s that no one else can read'"
chmod 600 "$PASSF"
ok "a password in the URL and a password file: refused" bash -c "$(declare -f check); STARTTLSD='$STARTTLSD' T_TMP='$T_TMP' check --pin-store redis://u:p@192.0.2.53 --pin-store-password-file '$PASSF' | grep -q 'give one'"
ok "a bad gateway name is refused" bash -c "$(declare -f check); STARTTLSD='$STARTTLSD' T_TMP='$T_TMP' check --pin-store redis://192.0.2.53 --pin-store-gateway 'gw a' | grep -q 'pin_store_gateway: gw a: expected'"

redis_start || { say "redis-server did not start"; cat "$RDIR/redis.log" >&2; exit 1; }
server starttls
start_a || exit 1
start_b || exit 1
ok "A: connected to Redis over the unix socket, as ACL user fleet" wait_for $((10 * SLOW)) log_has "event=pinstore action=redis-connected redis=$RSOCK db=$DB gateway=gw-a"
ok "B: connected to Redis over TCP" wait_for $((10 * SLOW)) grep -q "event=pinstore action=redis-connected redis=$RIP:6379 db=$DB gateway=gw-b" "$LOG_B"
ok "the sync process runs as the workers' user, not root" \
	bash -c "ps -o user= -p \$(grep -o 'process=pinsync pid=[0-9]*' '$PROXY_LOG' | head -n1 | cut -d= -f3) | grep -qx starttlsd"

# 1. A learns; B blocks a stripped session to the same server.
ok "A: TLS session delivered" cswaks --body "learn on A"
ok "A: destination pinned" wait_for 5 ctl_a show "$SRV4"
t0=$(date +%s.%N)
ok "B: A's pin arrives" wait_for $((10 * SLOW)) ctl_b show "$SRV4"
say "        (A's pin reached B's LMDB in $(echo "$(date +%s.%N) - $t0" | bc | cut -c1-5) s after A had it)"
ok "B: starttlsctl list says gw-a learned it" bash -c "'$CTL' --state-dir '$STATE_B' list | grep -E '^ip:$SRV4 ' | grep -q ' gw-a\$'"
ok "B: the recipient domain's pin arrives too, with its via" wait_for $((10 * SLOW)) bash -c "'$CTL' --state-dir '$STATE_B' show example.net | grep -qx 'via          $SRV4'"
ok "B: show says learned_by gw-a" bash -c "'$CTL' --state-dir '$STATE_B' show '$SRV4' | grep -qx 'learned_by   gw-a'"
ok "Redis holds A's record under the prefix, with a TTL of pin_expire" \
	bash -c "[ \"\$(rcli HGET '${PREFIX}pin:ip:$SRV4' gw-a | cut -d' ' -f1)\" = 1 ] && [ \"\$(rcli TTL '${PREFIX}pin:ip:$SRV4')\" -gt 2500000 ]"
server_stop; rm -f "$SRV_LOG"; server plain
chat2 >"$T_TMP/b-stripped.chat" <<S
< 421 4.7.0
eof
S
ok "B (enforce), STARTTLS stripped on its path: 421 4.7.0, though B never saw the server" test $? -eq 0
ok "B: event=downgrade signal=starttls-missing action=blocked" wait_for 5 bash -c "grep event=downgrade '$LOG_B' | tail -n 1 | grep -q 'dst=$SRV4:25 .*signal=starttls-missing .*action=blocked'"
not_ok "nothing from B's client reached the server" grep -Eq "cmd (MAIL|EHLO client)" "$SRV_LOG"

# 2. forget on B: A forgets too (and the next session through A passes).
ok "B: starttlsctl forget $SRV4" ctl_b forget "$SRV4"
ok "A: the pin is gone (fleet-wide forget)" wait_for $((10 * SLOW)) bash -c "! '$CTL' --state-dir '$STATE_A' show '$SRV4'"
ok "Redis: the key holds only the tombstone" bash -c "rcli HKEYS '${PREFIX}pin:ip:$SRV4' | grep -qx '!forget' && [ \"\$(rcli HLEN '${PREFIX}pin:ip:$SRV4')\" = 1 ]"
ok "A: a plaintext session to that server now passes" cswaks --to user@other.example --body "after forget"
ok "A: logged as plaintext" wait_for 5 bash -c "grep event=session '$PROXY_LOG' | tail -n 1 | grep -q 'action=plaintext'"
not_ok "A: the forgotten pin did not come back from A's own record" ctl_a show "$SRV4"

# 3. Redis killed mid-run: mail goes on, said once, nothing local lost, catch-up.
#    (After a SIGHUP of A: its new workers record their sightings for the fleet too.)
kill -HUP "$PROXY_PID"
ok "A: reloaded" wait_for 10 log_has "event=reload version="
server_stop; server starttls
ok "A: TLS again (pins $SRV4 anew)" cswaks --body "before outage"
ok "B: gets it" wait_for $((10 * SLOW)) ctl_b show "$SRV4"
pins_a_before=$(ctl_a list | grep -c '^[id]')
redis_kill
ip -n "$NS_SRV" addr add 198.51.100.26/24 dev wan0
ip netns exec "$NS_SRV" "$PY" "$PEERS/smtpd.py" --listen "198.51.100.26:25" --out "$T_TMP/srv26" \
	--log "$T_TMP/srv26.log" --mode starttls --cert "$CERTS/server.crt" --key "$CERTS/server.key" \
	>"$T_TMP/srv26.stdout" 2>&1 &
T_PIDS+=($!); disown $!
wait_for 5 grep -q ready "$T_TMP/srv26.stdout"
n0=$(nmsgs)
slow=0
for i in 1 2 3; do
	s0=$SECONDS
	cswaks --body "outage A $i" >/dev/null 2>&1 || say "A: mail $i failed"
	cswaks2 --body "outage B $i" >/dev/null 2>&1 || say "B: mail $i failed"
	[ $((SECONDS - s0)) -le $((5 * SLOW)) ] || slow=$((slow + 1))
done
ok "Redis down: 6 mails through A and B delivered" wait_for 10 eval '[ "$(nmsgs)" -ge $((n0 + 6)) ]'
ok "Redis down: no mail slowed (each pair under $((5 * SLOW)) s)" test "$slow" -eq 0
ok "Redis down: A learns a new server locally" bash -c "ip netns exec '$NS_CLI' swaks --server 198.51.100.26 --port 25 --from a@example.org --to b@outage.example --timeout 20 >/dev/null && sleep 1.5 && '$CTL' --state-dir '$STATE_A' show 198.51.100.26 >/dev/null"
sleep $((4 * SLOW))   # several reconnect attempts
ok "A: metrics say Redis is down (starttlsd_pinsync_up 0, one outage)" \
	bash -c '[ "$(metric "$1" starttlsd_pinsync_up)" = 0 ] && [ "$(metric "$1" starttlsd_pinsync_outages_total)" = 1 ]' _ "$STATE_A"
ok "A: the outage is logged once (event=pinstore action=redis-down)" test "$(nlines "$PROXY_LOG" 'event=pinstore action=redis-down')" -eq 1
ok "B: the outage is logged once" test "$(nlines "$LOG_B" 'event=pinstore action=redis-down')" -eq 1
ok "A: no local pin lost" test "$(ctl_a list | grep -c '^[id]')" -ge $((pins_a_before + 1))
redis_start
ok "A: Redis back (action=redis-up)" wait_for $((15 * SLOW)) log_has "event=pinstore action=redis-up"
ok "B: Redis back" wait_for $((15 * SLOW)) grep -q "event=pinstore action=redis-up" "$LOG_B"
ok "A: metrics say Redis is up again" wait_for 5 bash -c '[ "$(metric "$1" starttlsd_pinsync_up)" = 1 ]' _ "$STATE_A"
ok "A: metrics count published records; B: merged ones" \
	bash -c '[ "$(metric "$1" starttlsd_pinsync_published_total)" -gt 0 ] && [ "$(metric "$2" starttlsd_pinsync_merged_total)" -gt 0 ]' _ "$STATE_A" "$STATE_B"
ok "B: caught up with what A learned during the outage" wait_for $((10 * SLOW)) ctl_b show 198.51.100.26
ok "the restarted (empty) Redis is refilled with A's own pins" wait_for $((10 * SLOW)) bash -c "rcli HEXISTS '${PREFIX}pin:ip:198.51.100.26' gw-a | grep -qx 1"
ok "B still holds $SRV4 (learned from A before the outage)" ctl_b show "$SRV4"

# Redis frozen (SIGSTOP: connections accepted, no answers): a slow Redis.
kill -STOP "$REDIS_PID"
down_a=$(nlines "$PROXY_LOG" 'action=redis-down')
s0=$SECONDS
ok "Redis frozen: mail through A" cswaks --body "frozen A"
ok "Redis frozen: mail through B" cswaks2 --body "frozen B"
ok "Redis frozen: no slower (both under $((4 * SLOW)) s)" test $((SECONDS - s0)) -le $((4 * SLOW))
ok "A: a frozen Redis is dropped after the round timeout, said once" wait_for $((12 * SLOW)) eval '[ "$(nlines "$PROXY_LOG" "action=redis-down why=\"no answer in time")" -ge 1 ]'
kill -CONT "$REDIS_PID"
ok "A: back after the freeze" wait_for $((15 * SLOW)) eval '[ "$(nlines "$PROXY_LOG" "action=redis-up")" -ge 2 ]'
ok "A: one down line for the freeze" test "$(nlines "$PROXY_LOG" 'action=redis-down')" -eq $((down_a + 1))

# 4. Garbage under the prefix: skipped with a log line, never trusted, no crash.
now=$(date +%s)
rcli SET "${PREFIX}pin:ip:198.51.100.99" "not a hash" >/dev/null
rcli HSET "${PREFIX}pin:ip:198.51.100.98" gw-x "$(head -c 400 /dev/zero | tr '\0' x)" >/dev/null
rcli HSET "${PREFIX}pin:ip:198.51.100.97" gw-y "1 garbage" "bad field!" "1 $now $now 1 772 - -" >/dev/null
rcli HSET "${PREFIX}pin:ip:198.51.100.96" gw-z "1 $now $now 1 0 - -" >/dev/null   # tls_version 0
rcli SET "${PREFIX}foreign" "another application's key" >/dev/null
ms=$(( $(date +%s) * 1000 + 60000 ))
rcli ZADD "${PREFIX}changes" $ms ip:198.51.100.99 $ms ip:198.51.100.98 $ms ip:198.51.100.97 \
	$ms ip:198.51.100.96 $ms "ip:198.051.100.1" $ms "hello world" >/dev/null
for f in "$PROXY_LOG" "$LOG_B"; do
	g=$([ "$f" = "$PROXY_LOG" ] && echo A || echo B)
	ok "$g: wrong type skipped (logged)" wait_for $((10 * SLOW)) grep -q "event=pinstore action=skipped redis_key=${PREFIX}pin:ip:198.51.100.99 why=\"not a hash (wrong type)\"" "$f"
	ok "$g: oversized value skipped (logged)" grep -q "event=pinstore action=skipped redis_key=${PREFIX}pin:ip:198.51.100.98 why=\"value of gw-x: oversized\"" "$f"
	ok "$g: unparsable value skipped (logged)" grep -q "redis_key=${PREFIX}pin:ip:198.51.100.97 why=\"value of gw-y: not a pin record\"" "$f"
	ok "$g: a field that is no gateway name skipped (logged)" grep -q "redis_key=${PREFIX}pin:ip:198.51.100.97 why=\"field is not a gateway name\"" "$f"
	ok "$g: an invalid record skipped, with the reason (logged)" grep -q "redis_key=${PREFIX}pin:ip:198.51.100.96 why=\"value of gw-z: missing or 0\"" "$f"
	ok "$g: a non-canonical member skipped (logged)" grep -q "redis_key=${PREFIX}changes why=\"member ip:198.051.100.1 is not a canonical pin key\"" "$f"
	ok "$g: a foreign member skipped (logged)" grep -q "redis_key=${PREFIX}changes why=\"member hello world is not a canonical pin key\"" "$f"
done
for k in 198.51.100.99 198.51.100.98 198.51.100.97 198.51.100.96; do
	not_ok "garbage not trusted: no pin for $k on A or B" bash -c "'$CTL' --state-dir '$STATE_A' show $k || '$CTL' --state-dir '$STATE_B' show $k"
done
ok "B: metrics count the skipped items" bash -c '[ "$(metric "$1" starttlsd_pinsync_skipped_total)" -ge 7 ]' _ "$STATE_B"
ok "another application's key is left alone" bash -c "[ \"\$(rcli GET '${PREFIX}foreign')\" = \"another application's key\" ]"
not_ok "no process crashed" crashed
ok "B still relays" cswaks2 --body "after garbage"
rcli DEL "${PREFIX}pin:ip:198.51.100.99" "${PREFIX}pin:ip:198.51.100.98" "${PREFIX}pin:ip:198.51.100.97" "${PREFIX}pin:ip:198.51.100.96" >/dev/null
rcli ZREM "${PREFIX}changes" "ip:198.051.100.1" "hello world" >/dev/null

# 5. 10,000 pins: imported on A, all on B within the stated bound.
case $SLOW in 4) N=2000 ;; *) N=10000 ;; esac
LIMIT=$((15 * SLOW))
"$PY" - "$N" >"$T_TMP/many.json" <<'PY'
import json, sys, time
n = int(sys.argv[1]); now = int(time.time())
print(json.dumps([{"key": "ip:2001:db8:ffff::%x" % (i + 1), "kind": "dst", "first_seen": now - 60,
                   "last_seen": now, "count": 2, "tls_version": "TLSv1.3"} for i in range(n)]))
PY
t0=$(date +%s.%N)
ok "A: starttlsctl import of $N pins" ctl_a import "$T_TMP/many.json"
t1=$(date +%s.%N)
manyb() { "$CTL" --state-dir "$STATE_B" list | grep -c '^ip:2001:db8:ffff::'; }
# Polled twice a second: listing 10,000 pins is work that competes with the sync.
synced() { local end=$((SECONDS + LIMIT)); while [ $SECONDS -lt $end ]; do [ "$(manyb)" -eq "$N" ] && return 0; sleep 0.5; done; return 1; }
ok "B: all $N pins within $LIMIT s of the import" synced
say "        ($N pins: import on A $(echo "$t1 - $t0" | bc | cut -c1-5) s, then in B's LMDB after $(echo "$(date +%s.%N) - $t1" | bc | cut -c1-5) s)"
ok "B: they say gw-a learned them" bash -c "'$CTL' --state-dir '$STATE_B' list | grep '^ip:2001:db8:ffff::1 ' | grep -q ' gw-a\$'"

# 6. Soak (short here): Redis restarts in a loop, both gateways keep relaying.
n0=$(nmsgs); sent=0; fails=0
for r in $(seq 1 "$SOAK_ROUNDS"); do
	redis_kill
	for g in A B; do
		if [ $g = A ]; then cswaks --body "soak $r down" >/dev/null 2>&1 || fails=$((fails + 1))
		else cswaks2 --body "soak $r down" >/dev/null 2>&1 || fails=$((fails + 1)); fi
		sent=$((sent + 1))
	done
	ups_a=$(nlines "$PROXY_LOG" 'action=redis-up'); ups_b=$(nlines "$LOG_B" 'action=redis-up')
	redis_start || fails=$((fails + 1))
	wait_for $((15 * SLOW)) eval '[ "$(nlines "$PROXY_LOG" action=redis-up)" -gt '"$ups_a"' ] && [ "$(nlines "$LOG_B" action=redis-up)" -gt '"$ups_b"' ]' || fails=$((fails + 1))
	cswaks --body "soak $r up" >/dev/null 2>&1 || fails=$((fails + 1))
	cswaks2 --body "soak $r up" >/dev/null 2>&1 || fails=$((fails + 1))
	sent=$((sent + 2))
done
ok "soak: $SOAK_ROUNDS Redis restarts, $sent mails, no failure" test "$fails" -eq 0
ok "soak: every mail delivered" wait_for 10 eval '[ "$(nmsgs)" -ge $((n0 + sent)) ]'
ok "soak: the fleet is in sync again (B has A's $N pins after the last restart)" wait_for $((15 * SLOW)) eval '[ "$(manyb)" -eq '"$N"' ]'
not_ok "soak: no process crashed" crashed

ok "B exits cleanly" stop_b

# 7. Redis refusing B (wrong password; a prefix its ACL user may not touch):
#    said once, never "up", and B relays on.
umask 077; echo wrong >"$T_TMP/wrong.pass"; umask 022
: >"$LOG_B"
start_b --pin-store-password-file "$T_TMP/wrong.pass"
ok "wrong password: said once, with Redis's reason" wait_for $((10 * SLOW)) grep -q 'event=pinstore action=redis-down why="Redis refused us: WRONGPASS' "$LOG_B"
ok "wrong password: B relays on" cswaks2 --body "refused by Redis"
sleep 3
ok "wrong password: one down line in spite of the retries, never up" \
	bash -c "[ \$(grep -c 'action=redis-down' '$LOG_B') -eq 1 ] && ! grep -Eq 'action=redis-(up|connected)' '$LOG_B'"
ok "B exits cleanly (wrong password)" stop_b
: >"$LOG_B"
FLEET=(--mode enforce --pin-store-prefix "other$$:" --pin-store-password-file "$PASSF")
start_b
ok "a prefix the ACL user may not touch: said once (NOPERM)" wait_for $((10 * SLOW)) grep -q 'event=pinstore action=redis-down why=.*NOPERM' "$LOG_B"
sleep 3
ok "NOPERM: one down line, never up" \
	bash -c "[ \$(grep -c 'action=redis-down' '$LOG_B') -eq 1 ] && ! grep -Eq 'action=redis-(up|connected)' '$LOG_B'"
ok "NOPERM: B relays on" cswaks2 --body "prefix refused"
ok "B exits cleanly (NOPERM)" stop_b
ok "A exits cleanly" proxy_stop
finish
