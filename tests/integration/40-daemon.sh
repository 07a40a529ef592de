#!/usr/bin/env bash
# The daemon around the relay: syslog (facility mail), configuration file and
# command line, --check-config, loops, limits, timeouts, SIGHUP, SIGTERM drain.
. "$(dirname "$0")/../lib/common.sh"

# ---- configuration, no network needed -----------------------------------
conf=$T_TMP/good.conf
cat >"$conf" <<C
# a comment
listen = 127.0.0.1:10025 [::1]:10025
helo_name = relay.example.org   # trailing comment
connect_timeout = 10s
reply_timeout = 2m
buffer_size = 64k
C
ok "--check-config accepts a good file" "$STARTTLSD" --check-config -c "$conf"
printf 'listen = 127.0.0.1:10025\nreply_timeout = soon\n' >"$T_TMP/bad1.conf"
"$STARTTLSD" --check-config -c "$T_TMP/bad1.conf" >"$T_TMP/bad1.out" 2>&1; rc=$?
ok "bad value: non-zero exit" test $rc -ne 0
ok "bad value: message names file, line and key" grep -q "bad1.conf:2: reply_timeout: expected a number" "$T_TMP/bad1.out"
printf 'lisen = 127.0.0.1:10025\n' >"$T_TMP/bad2.conf"
"$STARTTLSD" --check-config -c "$T_TMP/bad2.conf" >"$T_TMP/bad2.out" 2>&1; rc=$?
ok "unknown key: refused with its name" bash -c "test $rc -ne 0 && grep -q 'bad2.conf:1: lisen: unknown key' $T_TMP/bad2.out"
"$STARTTLSD" --check-config --max-line-length 100 >"$T_TMP/bad3.out" 2>&1; rc=$?
ok "option out of range: refused with bounds" bash -c "test $rc -ne 0 && grep -q -- '--max-line-length: 100: out of range (512..65536)' $T_TMP/bad3.out"
"$STARTTLSD" --check-config --listen 10.0.0.1 >"$T_TMP/bad4.out" 2>&1; rc=$?
ok "listen without a port: refused" bash -c "test $rc -ne 0 && grep -q 'listen: 10.0.0.1' $T_TMP/bad4.out"
"$STARTTLSD" --check-config --client-cert /nonexistent.pem --client-key /nonexistent.key >"$T_TMP/bad5.out" 2>&1; rc=$?
ok "unreadable client certificate: refused" bash -c "test $rc -ne 0 && grep -q nonexistent.pem $T_TMP/bad5.out"
"$STARTTLSD" --check-config -c "$conf" --helo-name "bad name" >"$T_TMP/bad6.out" 2>&1; rc=$?
ok "the command line wins over the file (and is checked)" bash -c "test $rc -ne 0 && grep -q 'helo_name: bad name' $T_TMP/bad6.out"
ok "--help lists every key as an option" bash -c "'$STARTTLSD' --help | grep -q -- '--client-timeout'"
# What start-up would refuse or silently lose is refused here, with the key.
"$STARTTLSD" --check-config --user no-such-user >"$T_TMP/bad7.out" 2>&1; rc=$?
ok "user that does not exist: refused, naming the key" bash -c "test $rc -ne 0 && grep -q 'user: no-such-user: no such user' $T_TMP/bad7.out"
mkdir -p "$T_TMP/locked/inner" && chmod 700 "$T_TMP/locked"
"$STARTTLSD" --check-config --user starttlsd --state-dir "$T_TMP/locked/inner/state" >"$T_TMP/bad8.out" 2>&1; rc=$?
ok "state_dir the workers' user cannot reach: refused, naming the key and the blocking directory" \
	bash -c "test $rc -ne 0 && grep -q \"state_dir: $T_TMP/locked/inner/state: the workers' user starttlsd cannot reach it: $T_TMP/locked (mode 0700\" $T_TMP/bad8.out"
: >"$T_TMP/afile"
"$STARTTLSD" --check-config --user starttlsd --state-dir "$T_TMP/afile" >"$T_TMP/bad9.out" 2>&1; rc=$?
ok "state_dir that is a file: refused" bash -c "test $rc -ne 0 && grep -q 'state_dir: $T_TMP/afile: $T_TMP/afile is not a directory' $T_TMP/bad9.out"
# Papercuts: errors name their key; the default file; IDN in the policy file.
"$STARTTLSD" --check-config --ca-file /nonexistent-ca.crt >"$T_TMP/bad10.out" 2>&1; rc=$?
ok "ca_file that does not exist: refused, naming the key" bash -c "test $rc -ne 0 && grep -q 'ca_file: /nonexistent-ca.crt: ' $T_TMP/bad10.out"
"$STARTTLSD" --check-config --ca-file "$T_TMP/afile" >"$T_TMP/bad11.out" 2>&1; rc=$?
ok "ca_file with no certificate in it: refused, naming the key" bash -c "test $rc -ne 0 && grep -q 'ca_file: $T_TMP/afile: ' $T_TMP/bad11.out"
printf 'bücher.example encrypt\n' >"$T_TMP/idn.policy"
"$STARTTLSD" --check-config --policy-file "$T_TMP/idn.policy" >"$T_TMP/bad12.out" 2>&1; rc=$?
ok "policy file with a U-label: refused, saying to use the xn-- form" bash -c "test $rc -ne 0 && grep -q 'line 1: bücher.example: non-ASCII name: .*xn--' $T_TMP/bad12.out"
printf 'example.net verify mx=*.bücher.example\n' >"$T_TMP/idn2.policy"
"$STARTTLSD" --check-config --policy-file "$T_TMP/idn2.policy" >"$T_TMP/bad13.out" 2>&1; rc=$?
ok "policy file with a U-label in mx=: the same" bash -c "test $rc -ne 0 && grep -q 'non-ASCII name: .*xn--' $T_TMP/bad13.out"
printf 'xn--bcher-kva.example encrypt\n' >"$T_TMP/idn3.policy"
ok "the A-label form is accepted" "$STARTTLSD" --check-config --policy-file "$T_TMP/idn3.policy"
# Without -c the default file is read when it exists (STARTTLSD_CONFIG names
# it here: the suite sets it empty so /etc/starttlsd/starttlsd.conf on this
# host cannot change the tests).
printf 'reply_timeout = soon\n' >"$T_TMP/default.conf"
STARTTLSD_CONFIG=$T_TMP/default.conf "$STARTTLSD" --check-config >"$T_TMP/def.out" 2>&1; rc=$?
ok "without -c the default file is read" bash -c "test $rc -ne 0 && grep -q 'default.conf:1: reply_timeout' $T_TMP/def.out"
ok "-c '' reads no file at all" env STARTTLSD_CONFIG="$T_TMP/default.conf" "$STARTTLSD" --check-config -c ""
ok "no default file there: the built-in defaults" env STARTTLSD_CONFIG=/nonexistent/starttlsd.conf "$STARTTLSD" --check-config
ok "--help names the default file" bash -c "'$STARTTLSD' --help | grep -q '/etc/starttlsd/starttlsd.conf if it exists'"
mkdir -p "$T_TMP/fine"
ok "a state_dir the workers' user reaches (not there yet: created at start) passes" \
	"$STARTTLSD" --check-config --user starttlsd --state-dir "$T_TMP/fine/state-new"

# ---- running daemon ------------------------------------------------------
topo_up
redirect_on
server starttls
cat >"$T_TMP/run.conf" <<C
helo_name = first.example.org
max_sessions = 2
client_timeout = 3s
C
PROXY_BASE=(--state-dir "$T_TMP/state" "${NO_DNS[@]}")
proxy_syslog -c "$T_TMP/run.conf"

ok "mail through the proxy" cswaks --body "syslog test"
wait_sessions 1
ok "syslog got the session line" wait_for 5 grep -q "event=session" "$SYSLOG_OUT"
ok "syslog: facility mail, priority info (<22>), ident starttlsd[pid]" \
	grep -Eq "^<22>.* starttlsd\[[0-9]+\]: event=session id=[0-9a-f]{16} client=$CLI4:[0-9]+ dst=$SRV4:25 action=upgraded tls=TLSv1.3" "$SYSLOG_OUT"
ok "syslog: the start line" grep -Eq "^<22>.*starttlsd\[[0-9]+\]: event=start version=" "$SYSLOG_OUT"
ok "our EHLO used helo_name from the file" grep -q "cmd EHLO first.example.org" "$SRV_LOG"

# Loop: a connection made to the proxy's own port, not redirected.
CHAT_HOST=$GWL4 CHAT_PORT=10025 chat >"$T_TMP/loop.chat" <<S
< 421 4.4.6
eof
S
ok "direct connection to the proxy port is refused as a loop (421 4.4.6)" test $? -eq 0
wait_sessions 2
ok "loop logged with reason=loop at warning (<20>)" grep -Eq "^<20>.*action=refused .*reason=loop" "$SYSLOG_OUT"

# Limits: max_sessions = 2; a third concurrent client gets 421 4.3.2.
# (The two held sessions must still be open when the third comes: valgrind
# needs seconds for what takes milliseconds, so they are held longer there.)
HOLD=2
case $STARTTLSD in *valgrind*) HOLD=10 ;; esac
hold() { chat >"$T_TMP/hold$1.chat" <<S
< 220
> EHLO hold.example.org
< 250
sleep $HOLD
> QUIT
< 221
S
}
hold 1 & h1=$!
hold 2 & h2=$!
wait_for 20 count_ge 2 "$SRV_LOG" "cmd EHLO hold.example.org"
chat >"$T_TMP/third.chat" <<S
< 421 4.3.2
eof
S
ok "over max_sessions: 421 4.3.2" test $? -eq 0
wait $h1; r1=$?; wait $h2; r2=$?
ok "the sessions already there were not disturbed" test $r1 -eq 0 -a $r2 -eq 0

# Client timeout: a silent client gets 421 4.4.2 after client_timeout.
chat >"$T_TMP/idle.chat" <<S
< 220
> EHLO idle.example.org
< 250
< 421 4.4.2
eof
S
ok "idle client: 421 4.4.2 after client_timeout" test $? -eq 0
ok "idle client: logged reason=\"client timeout\"" wait_for 5 grep -q 'reason="client timeout"' "$PROXY_LOG"

# SIGHUP: a new helo_name for new sessions; a broken file is refused.
sed -i 's/first.example.org/second.example.org/' "$T_TMP/run.conf"
kill -HUP "$PROXY_PID"
ok "reload logged" wait_for 5 grep -q "event=reload .*helo_name=second.example.org" "$PROXY_LOG"
ok "mail after reload" cswaks --body "after reload"
ok "new sessions use the reloaded helo_name" grep -q "cmd EHLO second.example.org" "$SRV_LOG"
echo "data_timeout = lots" >>"$T_TMP/run.conf"
kill -HUP "$PROXY_PID"
ok "broken config on reload: refused, logged" wait_for 5 grep -q 'event=reload msg="configuration refused, keeping the running one: .*data_timeout: expected a number' "$PROXY_LOG"
ok "still relaying with the old config" cswaks --body "after bad reload"

# SIGTERM drains: a session in the middle of DATA finishes, then exit 0.
ndata=$(grep -c "cmd DATA" "$SRV_LOG")
chat >"$T_TMP/drain.chat" <<S &
< 220
> EHLO drain.example.org
< 250
> MAIL FROM:<d@example.org>
< 250
> RCPT TO:<d@example.net>
< 250
> DATA
< 354
> Subject: drain
sleep 1.5
> still here
> .
< 250
> QUIT
< 221
S
dpid=$!
# This session's DATA, not an earlier one's (slow under valgrind).
wait_for 10 eval '[ "$(grep -c "cmd DATA" "$SRV_LOG")" -gt "$ndata" ]'
sleep 0.3
n=$(nmsgs)
kill -TERM "$PROXY_PID"
wait $dpid; rc=$?
ok "SIGTERM: the session in DATA completes with the server's 250" test $rc -eq 0
ok "SIGTERM: its message was delivered" test "$(nmsgs)" -eq $((n + 1))
ok "SIGTERM: the proxy exits 0 once drained" proxy_stop
ok "stop logged" grep -q "event=stop" "$PROXY_LOG"

finish
