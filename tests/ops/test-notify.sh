#!/usr/bin/env bash
# systemd readiness (sd_notify, proxy/notify.c) against a stand-in for
# systemd's notification socket (tests/ops/notifyd.py): READY=1 once the
# listeners are open, STATUS= with sessions and workers, RELOADING=1 and
# READY=1 around a SIGHUP (the outcome in STATUS=), STOPPING=1; sent only by
# the main process. The real systemd is in tests/vm/ (make test-systemd).
. "$(dirname "$0")/../lib/common.sh"

topo_up
redirect_on
server starttls
N=$T_TMP/notify
"$PY" "$TOP/tests/ops/notifyd.py" "$T_TMP/notify.sock" "$N" >"$T_TMP/notifyd.out" 2>&1 &
T_PIDS+=($!); disown $!
wait_for 5 grep -q ready "$T_TMP/notifyd.out"
: >>"$N"
has() { grep -qE "$1" "$N"; }
CONF=$T_TMP/starttlsd.conf
printf 'workers = 2\nhelo_name = gw.example.org\n' >"$CONF"

NOTIFY_SOCKET=$T_TMP/notify.sock proxy -c "$CONF"
ok "READY=1 with a status" wait_for 5 has "^pid=$PROXY_PID READY=1 \| STATUS=accepting sessions$"
ok "the start line came first" grep -q 'event=start ' "$PROXY_LOG"
ok "STATUS=0 sessions open, 2 workers" wait_for 5 has "^pid=$PROXY_PID STATUS=0 sessions open, 2 workers$"
{ printf '< 220\nsleep 4\n> QUIT\n< 221\n' | chat >"$T_TMP/chat.out" 2>&1; } &
CHAT_PID=$!
ok "STATUS=1 session open while one is" wait_for 5 has "^pid=$PROXY_PID STATUS=1 session open, 2 workers$"
wait $CHAT_PID
ok "and 0 again after it" wait_for 5 bash -c "tail -n 1 '$N' | grep -q 'STATUS=0 sessions open, 2 workers$'"

kill -HUP "$PROXY_PID"
ok "SIGHUP: RELOADING=1 with MONOTONIC_USEC" wait_for 5 has "^pid=$PROXY_PID RELOADING=1 \| MONOTONIC_USEC=[0-9]+$"
ok "then READY=1, configuration reloaded" wait_for 5 has "^pid=$PROXY_PID READY=1 \| STATUS=configuration reloaded$"
echo "data_timeout = bogus" >>"$CONF"
kill -HUP "$PROXY_PID"
ok "a refused reload: READY=1 and STATUS says so" wait_for 5 has "^pid=$PROXY_PID READY=1 \| STATUS=configuration refused, the running one stays \(see the log\)$"
ok "and the periodic status keeps saying it" wait_for 5 has "^pid=$PROXY_PID STATUS=0 sessions open, 2 workers; the last reload was refused \(see the log\)$"
ok "two RELOADING=1, each followed by READY=1" \
	bash -c "grep -oE '^pid=[0-9]+ (RELOADING|READY)=1' '$N' | awk '{print \$2}' | tr '\n' ' ' | grep -qx 'READY=1 RELOADING=1 READY=1 RELOADING=1 READY=1 '"
ok "nothing was sent by any process but the main one (workers never send)" \
	bash -c "! grep -v '^pid=$PROXY_PID ' '$N'"
kill -TERM "$PROXY_PID"
ok "SIGTERM: STOPPING=1" wait_for 5 has "^pid=$PROXY_PID STOPPING=1 \| STATUS=stopping: draining sessions$"
wait "$PROXY_PID"
ok "exit status 0" test $? -eq 0

# One process (master = off): the same, without workers.
: >"$N"
NOTIFY_SOCKET=$T_TMP/notify.sock proxy --master off
ok "master=off: READY=1" wait_for 5 has "^pid=$PROXY_PID READY=1 \| STATUS=accepting sessions$"
ok "master=off: STATUS=0 sessions open" wait_for 5 has "^pid=$PROXY_PID STATUS=0 sessions open$"
ok "master=off: clean exit" proxy_stop
ok "master=off: STOPPING=1" has "^pid=$PROXY_PID STOPPING=1"

# An abstract socket name ("@..."), as systemd may give.
: >"$N"
# (Abstract names belong to a network namespace: the receiver runs in gw's.)
in_gw "$PY" - "$T_TMP/abs.out" "starttlsd-test-notify-$$" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + sys.argv[2])
open(sys.argv[1], "w").write("ready\n")
open(sys.argv[1], "a").write(s.recv(4096).decode() + "\n")
PY
APID=$!; T_PIDS+=($APID)
wait_for 5 grep -q ready "$T_TMP/abs.out"
NOTIFY_SOCKET=@starttlsd-test-notify-$$ proxy --master off
ok "an abstract socket name works too" wait_for 5 grep -q '^READY=1$' "$T_TMP/abs.out"
ok "clean exit" proxy_stop
finish
