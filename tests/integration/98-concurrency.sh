#!/usr/bin/env bash
# 1,000 concurrent sessions (issue 5, case 7): all served, other sessions
# unaffected, memory bounded; the per-session memory is reported.
. "$(dirname "$0")/../lib/common.sh"

N=${CONCURRENT:-1000}
topo_up
redirect_on
server plain
ulimit -n "$(ulimit -Hn)"
proxy --max-sessions-per-client 5000
pids() { echo "$PROXY_PID"; pgrep -P "$PROXY_PID"; }
rss_kb() { local t=0 p; for p in $(pids); do t=$((t + $(awk '/^VmRSS/ {print $2}' /proc/"$p"/status 2>/dev/null || echo 0))); done; echo "$t"; }

base=$(rss_kb)
in_cli bash -c "ulimit -n \$(ulimit -Hn); exec $PY $PEERS/many.py $SRV4 25 $N 3 $T_TMP/ready" >"$T_TMP/many.out" 2>&1 &
many=$!
ok "$N sessions open at once, every one got its EHLO reply" wait_for 60 bash -c "test -s $T_TMP/ready && test \$(cat $T_TMP/ready) -eq $N"
held=$(rss_kb)
ok "meanwhile, another client's mail goes through" cswaks --body "while $N sessions are held"
wait $many; rc=$?
ok "all $N ended with the server's 221 ($(cat "$T_TMP/many.out"))" test $rc -eq 0
per=$(( (held - base) / N ))
echo "  memory: proxy RSS $base kB idle, $held kB with $N sessions held: about $per kB per session (both legs, plaintext upstream)"
case $STARTTLSD in
*/san/*|*valgrind*) echo "  (memory bound not checked under the sanitizer build)" ;;
*) ok "memory bounded: under 64 kB per held session" test "$per" -lt 64 ;;
esac
case $STARTTLSD in *valgrind*) ;; *)
	not_ok "no false loop refusal among them" log_has "reason=loop" ;;
esac
ok "session lines for all" wait_for 20 count_ge $((N + 1)) "$PROXY_LOG" "event=session"
ok "proxy exits cleanly" proxy_stop
finish
