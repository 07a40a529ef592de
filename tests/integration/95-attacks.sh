#!/usr/bin/env bash
# Attacks and faults of issue 5 that must be proven harmless:
#   (3)  slowloris client and a silent server: timed out at the configured
#        limits, other sessions unaffected;
#   (6)  half-close and RST on either side, TLS close_notify missing;
#   (8)  oversize lines, endless replies, binary garbage, a TLS ClientHello
#        on the plaintext port: a clean 4xx/5xx or close, a log line, bounded
#        memory;
#   (12) a slow consumer: memory stays at the buffer caps (20 MB of DATA here
#        rather than 50, to keep the run short: with the caps gone the
#        proxy would hold most of it, which 20 MB shows as well);
# and the hardened build (Debian's hardening-check).
#
# Every scenario has its own server address on srv, so its session line is
# found by dst= (or by the client's port) even while others run at once.
# Misbehaving peers: tests/peers/attack_server.py and attack_client.py.
# Checks marked FINDING fail because of a starttlsd gap, not of the test.
. "$(dirname "$0")/../lib/common.sh"

SAN=
# Instrumented: the ASan/UBSan build, or starttlsd under valgrind.
case $STARTTLSD in */san/*|*valgrind*) SAN=1 ;; esac
T_START=$SECONDS

# ---- the hardened build ----------------------------------------------------
if [ -n "$SAN" ]; then
	say "  note: hardening-check skipped: $STARTTLSD is an instrumented build"
elif ! command -v hardening-check >/dev/null; then
	ok "hardening-check is installed (devscripts, tests/deps.sh)" false
else
	# The issue's list: PIE, stack protector, FORTIFY_SOURCE, full RELRO,
	# BIND_NOW. Control-flow protection (hardening-check's last test) is left
	# out: it wants the IBT/SHSTK property note, which the linker drops on
	# Debian 12 whatever our flags, because glibc's crt1.o/crti.o lack it
	# (-fcf-protection=full changes nothing; Debian's own postfix fails it).
	ok "hardening-check: PIE, stack protector, FORTIFY_SOURCE, RELRO, BIND_NOW" \
		hardening-check --nocfprotection "$STARTTLSD"
fi

# ---- topology, peers, proxy -----------------------------------------------------
topo_up
redirect_on
certs
A_SILENT=198.51.100.30  A_HALFCLOSE=198.51.100.31 A_RSTGREET=198.51.100.32
A_RSTMAIL=198.51.100.33 A_TLSNOCLOSE=198.51.100.34 A_TLSCUT=198.51.100.35
A_ENDEHLO=198.51.100.36 A_ENDMAIL=198.51.100.37  A_ENDLINE=198.51.100.38
A_SLOW=198.51.100.39
S_DRIBBLE=198.51.100.41 S_IDLE=198.51.100.42 S_QUITHC=198.51.100.43
S_RST=198.51.100.44     S_NEXT=198.51.100.45 S_BIGLINE=198.51.100.46
S_GARBAGE=198.51.100.47 S_HELLO=198.51.100.48 S_DRIBDATA=198.51.100.49
S_DROP=198.51.100.50   S_BARELF=198.51.100.51
for a in 30 31 32 33 34 35 36 37 38 39 41 42 43 44 45 46 47 48 49 50 51; do
	ip -n "$NS_SRV" addr add 198.51.100.$a/24 dev wan0
done
# The project's server (STARTTLS, well-behaved) on SRV4 and the S_* addresses.
server starttls $(for a in $S_DRIBBLE $S_DRIBDATA $S_IDLE $S_QUITHC $S_RST $S_NEXT $S_BIGLINE $S_GARBAGE $S_HELLO $S_BARELF; do
	printf -- '--listen %s:25 ' "$a"; done)
# The same server resetting mid-DATA.
in_srv "$PY" "$PEERS/smtpd.py" --listen "$S_DROP:25" --cert "$CERTS/server.crt" \
	--key "$CERTS/server.key" --out "$T_TMP/drop-out" --log "$T_TMP/drop.log" \
	--mode dropdata >"$T_TMP/drop.stdout" 2>&1 &
T_PIDS+=($!); disown $!
ATK_LOG=$T_TMP/attack-srv.log
in_srv "$PY" "$PEERS/attack_server.py" --cert "$CERTS/server.crt" --key "$CERTS/server.key" \
	--log "$ATK_LOG" "$A_SILENT:25=silent-mail" "$A_HALFCLOSE:25=halfclose" \
	"$A_RSTGREET:25=rst-greeting" "$A_RSTMAIL:25=rst-mail" "$A_TLSNOCLOSE:25=tls-noclose" \
	"$A_TLSCUT:25=tls-cut" "$A_ENDEHLO:25=endless-ehlo" "$A_ENDMAIL:25=endless-mail" \
	"$A_ENDLINE:25=endless-line" "$A_SLOW:25=slowdata" >"$T_TMP/attack-srv.stdout" 2>&1 &
T_PIDS+=($!); disown $!
wait_for 5 grep -q ready "$T_TMP/attack-srv.stdout" || { say "attack_server did not start"; cat "$T_TMP/attack-srv.stdout" >&2; }
wait_for 5 grep -q ready "$T_TMP/drop.stdout" || { say "smtpd.py dropdata did not start"; cat "$T_TMP/drop.stdout" >&2; }

CTO=3 RTO=3
proxy --client-timeout ${CTO}s --reply-timeout ${RTO}s --greeting-timeout 3s --buffer-size 256k
[ -n "$SAN" ] || ok "PROXY_PID is the starttlsd process (for /proc memory figures)" \
	grep -qx starttlsd "/proc/$PROXY_PID/comm"

now() { date +%s.%N; }
# within LO HI X: LO <= X <= HI (decimals)
within() { awk -v lo="$1" -v hi="$2" -v x="$3" 'BEGIN { exit !(x >= lo && x <= hi) }'; }
# dst_line ADDR: the last session line for the server address ADDR.
dst_line() { grep "event=session" "$PROXY_LOG" | grep " dst=$1:25 " | tail -n 1; }
wait_dst() { wait_for "${2:-10}" bash -c "grep 'event=session' '$PROXY_LOG' | grep -q ' dst=$1:25 '"; }
# port_line PORT: the session line of the client's connection from PORT.
port_line() { grep "event=session" "$PROXY_LOG" | grep " client=$CLI4:$1 " | tail -n 1; }
wait_port() { wait_for "${2:-10}" bash -c "grep 'event=session' '$PROXY_LOG' | grep -q ' client=$CLI4:$1 '"; }
# kv FILE KEY: a key=value of attack_client.py's output.
kv() { sed -n "s/^$2=//p" "$1" | tail -n 1; }
# alive: the proxy runs, and no worker of it died unexpectedly (a master
# restarts a crashed worker: its "event=worker action=exited" line tells).
# Each call reports only the deaths since the previous one.
DEATHS_SEEN=0
alive() {
	local n
	n=$(grep "event=worker action=exited" "$PROXY_LOG" | grep -vc "expected=yes")
	kill -0 "$PROXY_PID" || { echo "the proxy ($PROXY_PID) is gone"; return 1; }
	[ "$n" -le "$DEATHS_SEEN" ] && return 0
	DEATHS_SEEN=$n
	grep -E "event=worker action=exited|Assertion|Sanitizer" "$PROXY_LOG"
	return 1
}
# The proxy's processes: the one we started and its children (workers,
# when it runs as a master); memory figures are summed over them.
proxy_pids() { echo "$PROXY_PID"; pgrep -P "$PROXY_PID"; }
status_kb() {
	local p sum=0 v
	for p in $(proxy_pids); do
		v=$(awk -v k="$1:" '$1 == k { print $2 }' "/proc/$p/status" 2>/dev/null)
		sum=$((sum + ${v:-0}))
	done
	echo "$sum"
}
# Forget the peak: VmHWM restarts from the current RSS (Linux >= 4.0).
hwm_reset() { local p; for p in $(proxy_pids); do echo 5 >"/proc/$p/clear_refs"; done; }
# srv_cid ADDR: smtpd.py's connection id for the (last) connection to ADDR.
srv_cid() { grep -E "c[0-9]+ conn .*local=$1:25 " "${2:-$SRV_LOG}" | tail -n 1 | awk '{ print $2 }'; }
attack() { in_cli "$PY" "$PEERS/attack_client.py" "$@"; }
# port_has PORT REGEX: the session line of that client connection matches.
port_has() { wait_port "$1" 5 && port_line "$1" | grep -Eq "$2"; }
# Reply codes attack_client.py saw after the greeting, one a line.
codes_after_greeting() { kv "$1" codes | tr ',' '\n' | tail -n +2; }
# code_after FILE N CLASS: a reply code of class CLASS after the first N.
code_after() { kv "$1" codes | tr ',' '\n' | tail -n +$(($2 + 1)) | grep -q "^$3"; }
only_errors_after_greeting() {
	local c; c=$(codes_after_greeting "$1")
	[ -n "$c" ] && ! grep -q '^[123]' <<<"$c"
}
# closed_between FILE LO HI: attack_client.py saw the close after LO..HI s.
closed_between() {
	local t; t=$(sed -n 's/^end=closed t=//p' "$1")
	[ -n "$t" ] && within "$2" "$3" "$t"
}
# nothing_logged_since LINE: no log line after LINE but session lines.
nothing_logged_since() { ! tail -n +$(($1 + 1)) "$PROXY_LOG" | grep -v "event=session" | grep .; }

# Warm up (first TLS context use, first allocations), then the baseline.
ok "warm-up: a normal message" cswaks --body "warm-up"
wait_sessions 1
RSS0=$(status_kb VmRSS)
say "  note: proxy processes: $(proxy_pids | tr '\n' ' ')(VmRSS summed over them after warm-up: ${RSS0} kB)"

# ---- (3) slowloris client, silent server; (8) garbage, ClientHello ---------------
# These wait for timeouts, so they run at once; a normal delivery in the
# middle must not notice them.
say "-- (3) slowloris, silent server, and at the same time (8) garbage, ClientHello"
attack "$S_DRIBBLE" 25 dribble --interval 0.5 --max 12 >"$T_TMP/dribble.out" 2>&1 &
p_dribble=$!
attack "$S_DRIBDATA" 25 dribble-data --interval 0.5 --max 12 >"$T_TMP/dribdata.out" 2>&1 &
p_dribdata=$!
attack "$S_IDLE" 25 idle --max 12 >"$T_TMP/idle.out" 2>&1 &
p_idle=$!
attack "$S_GARBAGE" 25 garbage --bytes 65536 --max 15 >"$T_TMP/garbage.out" 2>&1 &
p_garbage=$!
attack "$S_HELLO" 25 clienthello --max 15 >"$T_TMP/hello.out" 2>&1 &
p_hello=$!
(
	t0=$(now)
	CHAT_HOST=$A_SILENT CHAT_TIMEOUT=12 chat >"$T_TMP/silent.chat" <<-S
	< 220
	> EHLO client.example.org
	< 250
	> MAIL FROM:<a@example.org>
	< 421 4.4.2
	eof
	S
	echo "rc=$? t=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')" >>"$T_TMP/silent.chat"
) &
p_silent=$!
sleep 1
n0=$(nmsgs)
t0=$(now)
ok "while all those are held: another client delivers normally" cswaks --body "during the attacks"
t_ok=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
say "  note: that delivery took ${t_ok} s"
ok "... and promptly (${t_ok} s < ${CTO} s)" within 0 "$CTO" "$t_ok"
ok "... and the message arrived" wait_for 5 eval '[ "$(nmsgs)" -gt "$n0" ]'
wait "$p_silent" "$p_idle" "$p_dribble" "$p_dribdata" "$p_garbage" "$p_hello"

# Control: a client that says nothing after the greeting is timed out.
ok "idle client (control): closed by the proxy after client_timeout (${CTO}..$((CTO + 2)) s)" \
	closed_between "$T_TMP/idle.out" "$((CTO - 1)).5" $((CTO + 2))
ok "idle client (control): told 421 4.4.2" grep -q "^reply=421 4.4.2" "$T_TMP/idle.out"
# Slowloris on a command line: client_timeout is a deadline for a whole
# command (until f6bff3d every byte restarted it, and one byte every 0.5 s
# held the session for ever).
say "  note: command dribbler: $(tr '\n' ' ' <"$T_TMP/dribble.out")"
ok "slowloris: a client sending one byte every 0.5 s is cut off near client_timeout (<= $((CTO + 3)) s)" \
	closed_between "$T_TMP/dribble.out" 0 $((CTO + 3))
ok "slowloris: the client is told 421 4.4.2" grep -q "^reply=421 4.4.2" "$T_TMP/dribble.out"
ok "slowloris: logged reason=\"client timeout\"" port_has "$(kv "$T_TMP/dribble.out" port)" 'reason="client timeout"'

# FINDING: slowloris inside DATA. The message-content timer (TK_CLIENT_BODY)
# restarts on every byte read, so a client trickling its message one byte
# every 0.5 s (with client_timeout 3 s) holds the session and its server
# connection for as long as it likes: still open when it gives up after 12 s.
# Issue 5 (3): "timed out at the configured limits". What a hardened MTA
# does: Postfix's smtpd_min_data_rate (a deadline that grows only by bytes
# received at a minimum rate). The check allows 2 x client_timeout + 3 s.
say "  note: DATA dribbler: $(tr '\n' ' ' <"$T_TMP/dribdata.out")"
ok "slowloris in DATA: a body trickled one byte every 0.5 s is cut off (<= $((2 * CTO + 3)) s)" \
	closed_between "$T_TMP/dribdata.out" 0 $((2 * CTO + 3))
not_ok "slowloris in DATA: no 2xx after the 354" code_after "$T_TMP/dribdata.out" 5 2

ok "silent server after EHLO: the client gets 421 4.4.2, then the close" grep -q "^rc=0 " "$T_TMP/silent.chat"
t_silent=$(sed -n 's/^rc=[0-9]* t=//p' "$T_TMP/silent.chat")
say "  note: silent server: 421 after ${t_silent} s (reply_timeout ${RTO} s)"
ok "silent server: within reply_timeout + 2 s (${t_silent} s)" within "$((RTO - 1)).5" "$((RTO + 2))" "$t_silent"
wait_dst $A_SILENT
ok "silent server: logged reason=\"server: timeout waiting for a reply\"" \
	grep -q 'reason="server: timeout waiting for a reply"' <<<"$(dst_line $A_SILENT)"
ok "silent server: the server leg was closed" wait_for 5 grep -q "$A_SILENT silent-mail c[0-9]* peer-closed" "$ATK_LOG"

# (8) binary garbage: 64 KiB of random bytes at once, in place of SMTP.
say "  note: garbage: $(grep -E '^(sent|end)=' "$T_TMP/garbage.out" | tr '\n' ' ') codes: $(kv "$T_TMP/garbage.out" codes | tr ',' '\n' | sort | uniq -c | tr -s ' \n' ' ')"
ok "garbage: the proxy closes the connection" grep -Eq "^end=(closed|reset)" "$T_TMP/garbage.out"
# Either 5xx replies or, when the server (CRLF-strict like smtpd.py) never
# answers a line the proxy took as ended by a bare LF, the 421 at
# reply_timeout: both are a clean refusal.
ok "garbage: after the greeting only 4xx/5xx replies, at least one" only_errors_after_greeting "$T_TMP/garbage.out"
ok "garbage: all over within the timeouts (<= $((CTO + RTO + 2)) s)" closed_between "$T_TMP/garbage.out" 0 $((CTO + RTO + 2))
p=$(kv "$T_TMP/garbage.out" port)
ok "garbage: a session line" wait_port "$p"
say "  note: garbage session: $(port_line "$p" | sed 's/.*action=/action=/')"

# (8) a TLS ClientHello on the plaintext port.
say "  note: ClientHello: $(grep -E '^(sent|codes|end)=' "$T_TMP/hello.out" | tr '\n' ' ')"
ok "ClientHello: the proxy closes the connection" grep -Eq "^end=(closed|reset)" "$T_TMP/hello.out"
ok "ClientHello: after the greeting, only 4xx/5xx replies, at least one" \
	only_errors_after_greeting "$T_TMP/hello.out"
ok "ClientHello: all over within the timeouts (<= $((CTO + RTO + 2)) s)" closed_between "$T_TMP/hello.out" 0 $((CTO + RTO + 2))
p=$(kv "$T_TMP/hello.out" port)
ok "ClientHello: a session line" wait_port "$p"
say "  note: ClientHello session: $(port_line "$p" | sed 's/.*action=/action=/')"
ok "proxy alive after (3) and the garbage" alive

# ---- (6) half-close, RST, close_notify --------------------------------------------
say "-- (6) half-close, RST, missing close_notify"
CHAT_HOST=$S_QUITHC chat >"$T_TMP/quithc.chat" <<S
< 220
> EHLO client.example.org
< 250
> QUIT
close-write
< 221
eof
S
ok "client QUIT then shuts its write side: still gets 221, then the close" test $? -eq 0
wait_dst $S_QUITHC
ok "client half-close: logged reason=quit" grep -q "reason=quit" <<<"$(dst_line $S_QUITHC)"

CHAT_HOST=$A_HALFCLOSE chat >"$T_TMP/halfclose.chat" <<S
< 220
> EHLO client.example.org
< 250
> QUIT
< 221
eof
S
ok "server half-closes after its 221: the client gets 221 and the close" test $? -eq 0
wait_dst $A_HALFCLOSE
ok "server half-close: logged reason=quit" grep -q "reason=quit" <<<"$(dst_line $A_HALFCLOSE)"
ok "server half-close: the proxy closed the server leg too" \
	wait_for 5 grep -q "$A_HALFCLOSE halfclose c[0-9]* peer-closed" "$ATK_LOG"

attack "$S_RST" 25 rst >"$T_TMP/rst.out" 2>&1
ok "client RST mid-session: the client got its 250 to MAIL first" grep -q "^codes=220,250,250" "$T_TMP/rst.out"
p=$(kv "$T_TMP/rst.out" port)
ok "client RST: a session line, reason names the client" port_has "$p" 'reason="?client'
say "  note: client RST session: $(port_line "$p" | sed 's/.*bytes_up=/bytes_up=/')"
cid=$(srv_cid $S_RST)
ok "client RST: the server leg was closed too (smtpd.py saw it end)" \
	wait_for 5 grep -Eq "^[0-9:.]+ $cid (eof|close)" "$SRV_LOG"
ok "client RST: the proxy is alive" alive
CHAT_HOST=$S_NEXT chat >"$T_TMP/next.chat" <<S
< 220
> EHLO client.example.org
< 250
> QUIT
< 221
eof
S
ok "client RST: the next client is served" test $? -eq 0

# Six times: whether our EHLO meets the RST (the send fails) or goes out
# before it is a race (about one in two here, so six tries miss ~1%).
# FINDING (starttlsd crash): when the send of our EHLO fails with
# ECONNRESET, conn.c sets error_pending; the EOF that follows ends the
# upstream (conn_cleanup closes the fd but leaves error_pending set), and
# conn_rio_cb's final conn_update() then re-arms the write watcher on the
# closed fd: libev aborts ("epoll_modify: Assertion ... invalid fd"), the
# worker dies with all its sessions (the whole daemon with --master off).
# Any server the LAN talks to can do this; the client still got its 421.
n_rg=0
for i in 1 2 3 4 5 6; do
	CHAT_HOST=$A_RSTGREET chat >>"$T_TMP/rstgreet.chat" <<-S
	< 421 4.4.2
	eof
	S
	[ $? -eq 0 ] && n_rg=$((n_rg + 1))
	sleep 0.1
done
ok "server RST right after its greeting (x6): the client gets 421 4.4.2" test $n_rg -eq 6
ok "server RST after greeting: the proxy and its workers survive" alive
ok "server RST after greeting: six session lines" \
	wait_for 5 bash -c "[ \$(grep 'event=session' '$PROXY_LOG' | grep -c ' dst=$A_RSTGREET:25 ') -eq 6 ]"
say "  note: RST after greeting: $(dst_line $A_RSTGREET | sed 's/.*action=/action=/')"
ok "server RST after greeting: logged as refused, the reset named" \
	grep -Eq 'action=refused .*reason="[^"]*reset' <<<"$(dst_line $A_RSTGREET)"

CHAT_HOST=$A_RSTMAIL chat >"$T_TMP/rstmail.chat" <<S
< 220
> EHLO client.example.org
< 250
> MAIL FROM:<a@example.org>
< 421 4.4.2
eof
S
ok "server RST in answer to MAIL: the client gets 421 4.4.2" test $? -eq 0
wait_dst $A_RSTMAIL
ok "server RST on MAIL: logged as a server failure" grep -Eq 'reason="server: [^"]*reset' <<<"$(dst_line $A_RSTMAIL)"

CHAT_HOST=$S_DROP chat >"$T_TMP/drop.chat" <<S
$CHAT_TO_DATA
> Subject: this message will be cut
> more than ten bytes of content here
> .
< 421 4.4.2
eof
S
ok "server RST mid-DATA: the client gets 421 4.4.2" test $? -eq 0
not_ok "server RST mid-DATA: no 250 after the body" grep -q "^R: 250 2.0.0" "$T_TMP/drop.chat"
wait_dst $S_DROP
ok "server RST mid-DATA: logged as a server failure" grep -q 'reason="server: ' <<<"$(dst_line $S_DROP)"

nlog=$(wc -l <"$PROXY_LOG")
# (A MAIL left open: the QUIT goes to the server, as it would not if the
# connection could be parked for the next client.)
CHAT_HOST=$A_TLSNOCLOSE chat >"$T_TMP/tlsnoclose.chat" <<S
< 220
> EHLO client.example.org
< 250
> MAIL FROM:<a@example.org>
< 250
> QUIT
< 221
eof
S
ok "TLS server closes TCP after its 221 without close_notify: the client gets 221" test $? -eq 0
ok "no close_notify: the server really did that" grep -q "$A_TLSNOCLOSE tls-noclose c[0-9]* closed-without-close_notify" "$ATK_LOG"
wait_dst $A_TLSNOCLOSE
sleep 0.3
l=$(dst_line $A_TLSNOCLOSE)
ok "no close_notify: session upgraded over TLS, reason=quit" grep -Eq "action=upgraded tls=TLSv1.* reason=quit" <<<"$l"
not_ok "no close_notify: no tls_error in it" grep -q "tls_error" <<<"$l"
ok "no close_notify: nothing logged but the session line" nothing_logged_since "$nlog"

CHAT_HOST=$A_TLSCUT chat >"$T_TMP/tlscut.chat" <<S
< 220
> EHLO client.example.org
< 250
> MAIL FROM:<a@example.org>
< 421 4.4.2
eof
S
ok "TLS server cut without close_notify before a reply: the client gets 421 4.4.2" test $? -eq 0
wait_dst $A_TLSCUT
ok "TLS cut: logged as a server failure" grep -q 'reason="server: ' <<<"$(dst_line $A_TLSCUT)"
ok "proxy alive after (6)" alive

# ---- (8) oversize lines, endless replies ---------------------------------------
say "-- (8) oversize line, endless replies"
head -c 102400 /dev/zero | tr '\0' A >"$T_TMP/bigline.bin"
CHAT_HOST=$S_BIGLINE chat >"$T_TMP/bigline.chat" <<S
< 220
> EHLO client.example.org
< 250
>file $T_TMP/bigline.bin
< 500 5.5.2
>> \r\n
> NOOP
< 250
> QUIT
< 221
eof
S
ok "100 kB without LF: 500 5.5.2, then the session goes on (NOOP, QUIT)" test $? -eq 0
ok "100 kB line: exactly one 500 for it" test "$(grep -c '^R: 500' "$T_TMP/bigline.chat")" -eq 1
cid=$(srv_cid $S_BIGLINE)
not_ok "100 kB line: none of it reached the server" grep -Eq "^[0-9:.]+ $cid (cmd AAAA|cmd-too-long)" "$SRV_LOG"
wait_dst $S_BIGLINE
ok "100 kB line: logged reason=quit" grep -q "reason=quit" <<<"$(dst_line $S_BIGLINE)"

# FINDING: a bare LF ends a command line for starttlsd, not for a server
# that wants CRLF (RFC 5321 2.3.8; smtpd.py here): "NOOP<LF>BDAT 32<CRLF>"
# is two commands to the proxy and one bad line to the server, so the 32
# bytes starttlsd forwards as BDAT content are a command to the server. A
# RCPT smuggled that way is never seen by starttlsd (no recipient policy,
# no max_recipients), and the server's 250 to it is credited to the BDAT.
# This is also why the random garbage above got 421 at reply_timeout
# instead of 5xx: the server never saw a complete line. Fix-agnostic check:
# the server must never run a command starttlsd took for message content.
CHAT_HOST=$S_BARELF CHAT_TIMEOUT=5 chat >"$T_TMP/barelf.chat" <<'S'
< 220
> EHLO client.example.org
< 250
> MAIL FROM:<a@example.org>
< 250
>> NOOP\nBDAT 32\r\nRCPT TO:<smuggled@example.net>\r\n
sleep 1
S
cid=$(srv_cid $S_BARELF)
not_ok "bare LF in a command line: no command smuggled past starttlsd inside BDAT content" \
	grep -Eq "^[0-9:.]+ $cid cmd RCPT TO:<smuggled@example.net>" "$SRV_LOG"

hwm_reset
CHAT_HOST=$A_ENDEHLO chat >"$T_TMP/endehlo.chat" <<S
< 421 4.4.2
eof
S
ok "endless '250-x' reply to our EHLO: the client gets 421 4.4.2" test $? -eq 0
for m in mail line; do
	eval a=\$A_END${m^^}
	CHAT_HOST=$a chat >"$T_TMP/end$m.chat" <<-S
	< 220
	> EHLO client.example.org
	< 250
	> MAIL FROM:<a@example.org>
	< 421 4.4.2
	eof
	S
	ok "endless $m reply to MAIL: the client gets 421 4.4.2" test $? -eq 0
done
for m in ehlo mail line; do
	eval a=\$A_END${m^^}
	wait_dst "$a"
	say "  note: endless $m: $(dst_line "$a" | sed 's/.*reason=/reason=/'); server: $(grep "$a endless-$m .*endless-stopped" "$ATK_LOG" | cut -d' ' -f5-)"
	ok "endless $m: logged as malformed/too long" grep -Eq 'reason="[^"]*(malformed|too long)' <<<"$(dst_line "$a")"
	ok "endless $m: the server's flood was cut off (its writes failed)" \
		wait_for 5 grep -Eq "$a endless-$m c[0-9]+ endless-stopped .*why=(Connection|BrokenPipe)" "$ATK_LOG"
done
hwm=$(status_kb VmHWM); rss=$(status_kb VmRSS)
say "  note: endless replies: proxy VmHWM ${hwm} kB, VmRSS ${rss} kB (baseline ${RSS0} kB)"
if [ -n "$SAN" ]; then
	say "  note: RSS bound (64 MB) not checked: an instrumented build's RSS counts shadow memory and quarantine"
else
	ok "endless replies: proxy peak RSS under 64 MB (${hwm} kB)" test "$hwm" -lt 65536
fi
ok "proxy alive after (8)" alive

# ---- (12) slow consumer --------------------------------------------------------
say "-- (12) slow consumer, 20 MB of DATA"
# Small kernel send buffers on the gateway, so what the proxy cannot hand
# to the slow server has to wait in its own (capped) buffers or the client's.
in_gw sysctl -qw net.ipv4.tcp_wmem="4096 16384 262144"
body=$T_TMP/big.eml
head -c 15000000 /dev/urandom | base64 -w 76 | sed 's/$/\r/' >"$body"
size=$(stat -c %s "$body"); sum=$(sha256sum "$body" | cut -d' ' -f1)
hwm_reset
base=$(status_kb VmRSS)
( while kill -0 "$PROXY_PID" 2>/dev/null; do status_kb VmRSS; sleep 0.2; done ) >"$T_TMP/rss.samples" 2>/dev/null &
p_samp=$!
t0=$(now)
CHAT_HOST=$A_SLOW CHAT_TIMEOUT=60 chat >"$T_TMP/slow.chat" <<S
< 220
> EHLO client.example.org
< 250
> MAIL FROM:<big@example.org>
< 250
> RCPT TO:<big@example.net>
< 250
> DATA
< 354
>file $body
> .
< 250
> QUIT
< 221
eof
S
rc=$?
t_slow=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
kill "$p_samp" 2>/dev/null; wait "$p_samp" 2>/dev/null
hwm=$(status_kb VmHWM)
maxs=$(sort -n "$T_TMP/rss.samples" | tail -n 1)
# The larger of the two: VmHWM summed over processes, or the highest sum sampled.
peak=$((hwm > ${maxs:-0} ? hwm : ${maxs:-0}))
say "  note: slow consumer: ${size} bytes in ${t_slow} s; proxy VmRSS before ${base} kB, peak (VmHWM) ${hwm} kB, highest sample ${maxs} kB, growth $((peak - base)) kB"
ok "slow consumer: the client's dialogue completes (250 after the dot)" test $rc -eq 0
ok "slow consumer: the server really was slow (> 2 s for the body)" within 2 1000 "$t_slow"
ok "slow consumer: the message arrived complete (size and SHA-256)" \
	grep -q "$A_SLOW slowdata c[0-9]* message bytes=$size sha256=$sum" "$ATK_LOG"
if [ -n "$SAN" ]; then
	say "  note: RSS growth bound (16 MB) not checked: an instrumented build's RSS counts shadow memory and quarantine"
else
	# Without the caps (checked: --buffer-size 64m) the growth is ~26 MB.
	ok "slow consumer: proxy RSS growth under 16 MB (4 x 256k buffers; was $((peak - base)) kB)" \
		test $((peak - base)) -lt 16384
fi
in_gw sysctl -qw net.ipv4.tcp_wmem="4096 16384 4194304"

ok "proxy alive at the end" alive
not_ok "no sanitizer report so far" grep -qE "AddressSanitizer|LeakSanitizer|runtime error:" "$PROXY_LOG"
ok "proxy exits cleanly" proxy_stop
say "  note: runtime $((SECONDS - T_START)) s"
finish
