#!/usr/bin/env bash
# The process model (issue 5): a root master and unprivileged workers; a
# worker killed under load is restarted while the others keep their
# sessions; SIGHUP under load replaces the workers without failing a
# session; a broken configuration on SIGHUP is refused.
. "$(dirname "$0")/../lib/common.sh"

topo_up
redirect_on
server starttls
conf=$T_TMP/w.conf
echo "workers = 2" >"$conf"
proxy -c "$conf"

workers() { pgrep -P "$PROXY_PID" | sort; }
ok "two workers under the master" wait_for 5 eval '[ "$(workers | wc -l)" -eq 2 ]'
for w in $(workers); do
	# The filter is the worker's last step of setting itself up (a fresh
	# worker is a child of the master a moment before): wait for it.
	ok "worker $w runs under a seccomp filter" wait_for 5 grep -Eq "^Seccomp:\s+2$" /proc/"$w"/status
	ok "worker $w runs as user starttlsd" test "$(stat -c %U /proc/"$w")" = starttlsd
	ok "worker $w keeps only CAP_NET_RAW (effective and bounding)" \
		grep -Eq "^CapEff:\s+0000000000002000$" /proc/"$w"/status
	ok "worker $w has no_new_privs" grep -Eq "^NoNewPrivs:\s+1$" /proc/"$w"/status
done
ok "the master stays root" test "$(stat -c %U /proc/"$PROXY_PID")" = root
ok "mail through the workers" cswaks --body "via a worker"
ok "the state dir belongs to the workers' user" test "$(stat -c %U "$T_TMP/state")" = starttlsd

# SIGKILL one worker while the other holds a session: the other's session
# finishes, the master logs the death and starts a new worker.
chat >"$T_TMP/held.chat" <<S &
< 220
> EHLO held.example.org
< 250
sleep 2
> MAIL FROM:<h@example.org>
< 250
> RCPT TO:<h@example.net>
< 250
> DATA
< 354
> Subject: held across a worker crash
> .
< 250
> QUIT
< 221
S
held=$!
wait_for 5 grep -q "cmd EHLO held.example.org" "$SRV_LOG"
holder=$(ip netns exec "$NS_GW" ss -Htnp state established "( sport = :10025 )" | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2)
victim=$(workers | grep -vx "$holder" | head -n 1)
ok "found the worker holding the session ($holder) and another ($victim)" test -n "$holder" -a -n "$victim"
kill -9 "$victim"
wait $held; rc=$?
ok "the session in the other worker completed (250, 221)" test $rc -eq 0
ok "the master logged the crash" wait_for 5 log_has "event=worker action=exited pid=$victim signal=SIGKILL expected=no"
ok "and started a replacement" wait_for 5 bash -c "test \$(pgrep -P $PROXY_PID | wc -l) -eq 2 && ! pgrep -P $PROXY_PID | grep -qx $victim"
ok "mail still flows" cswaks --body "after the crash"

# SIGHUP under load: smtp-source pushes messages while the workers are
# replaced twice; no session fails and every message arrives.
n0=$(nmsgs)
in_cli smtp-source -s 8 -m 120 -l 2000 -f load@example.org -t load@example.net "$SRV4:25" \
	>"$T_TMP/load.out" 2>&1 &
load=$!
sleep 0.5; kill -HUP "$PROXY_PID"
sleep 0.7; kill -HUP "$PROXY_PID"
wait $load; rc=$?
ok "smtp-source under two SIGHUPs: exit 0" test $rc -eq 0
ok "all 120 messages arrived" wait_for 20 eval '[ "$(nmsgs)" -eq $((n0 + 120)) ]'
not_ok "no session failed (no 4xx to the client)" grep -Eq "reason=\"(server|client):" "$PROXY_LOG"
ok "old workers drained and exited as asked" log_has "event=worker action=exited .*status=0 expected=yes"
ok "two workers again" wait_for 10 eval '[ "$(workers | wc -l)" -eq 2 ]'

# A broken configuration on SIGHUP: refused, the old one keeps running.
before=$(workers)
echo "workers = many" >>"$conf"
kill -HUP "$PROXY_PID"
ok "broken reload refused and logged" wait_for 5 log_has 'event=reload msg="configuration refused'
ok "the workers were left alone" test "$(workers)" = "$before"
ok "mail still flows" cswaks --body "after the bad reload"

ok "SIGTERM: master and workers exit cleanly" proxy_stop
ok "no worker left behind" test -z "$(workers)"

# A master killed with SIGKILL: its workers see their control pipe close
# and stop; none lingers as an orphan holding the port.
: >"$PROXY_LOG"
proxy -c "$conf"
wait_for 5 eval '[ "$(workers | wc -l)" -eq 2 ]'
orphans=$(workers | tr '\n' ' ')
kill -9 "$PROXY_PID"
ok "after the master's SIGKILL its workers exit" wait_for 10 bash -c "for p in $orphans; do kill -0 \$p 2>/dev/null && exit 1; done; exit 0"
ok "and the port is free for a restart" wait_for 5 bash -c "! ip netns exec $NS_GW ss -Hltn '( sport = :10025 )' | grep -q ."
finish
