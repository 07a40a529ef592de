#!/usr/bin/env bash
# Faults on either leg never turn into a false success: a server that dies
# mid-DATA or mid-BDAT gives the client a 4xx, a client that vanishes
# mid-DATA leaves no message behind, a silent server is timed out.
. "$(dirname "$0")/../lib/common.sh"

topo_up
redirect_on
server dropdata
proxy --greeting-timeout 2

# The server resets the connection after 10 bytes of content, no reply.
chat >"$T_TMP/dropdata.chat" <<S
$CHAT_TO_DATA
> Subject: this message will be cut
> more than ten bytes of content here
> .
< 421 4.4.2
eof
S
ok "server reset mid-DATA: client gets 421 4.4.2 (never 250)" test $? -eq 0
not_ok "server reset mid-DATA: no 250 after the body" grep -q "^R: 250 2.0.0" "$T_TMP/dropdata.chat"
wait_sessions 1
ok "server reset mid-DATA: logged as a server failure" grep -Eq 'reason="server: .*' <<<"$(session_line 1)"
ok "server reset mid-DATA: nothing stored" test "$(nmsgs)" -eq 0

printf 'BDAT 100 LAST\r\n%0100d' 0 >"$T_TMP/bdat.bin"
chat >"$T_TMP/dropbdat.chat" <<S
$CHAT_TO_RCPT
>file $T_TMP/bdat.bin
< 421 4.4.2
eof
S
ok "server reset mid-BDAT: client gets 421 4.4.2" test $? -eq 0
ok "server reset mid-BDAT: nothing stored" test "$(nmsgs)" -eq 0

# The client vanishes in the middle of DATA: the server must not get a
# complete message (no end-of-data is ever invented).
server_stop
server starttls
chat >"$T_TMP/clientgone.chat" <<S
$CHAT_TO_DATA
> Subject: half a message
> first half
sleep 0.3
S
ok "client gone mid-DATA: the dialogue ran" test $? -eq 0
wait_sessions 3
ok "client gone mid-DATA: logged" grep -q 'reason="client closed during message"' <<<"$(session_line 3)"
ok "client gone mid-DATA: the server saw the connection end without a message" \
	wait_for 5 grep -Eq "c[0-9]+ (eof|close)" "$SRV_LOG"
ok "client gone mid-DATA: nothing stored" test "$(nmsgs)" -eq 0

# A server that accepts and never greets: greeting_timeout, then 421.
server_stop
ip netns exec "$NS_SRV" "$PY" -c '
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("198.51.100.25", 25)); s.listen(5); print("ready", flush=True)
conns = []
while True:
    c, _ = s.accept(); conns.append(c)' >"$T_TMP/silent.out" 2>&1 &
SRV_PID=$!; T_PIDS+=($!); disown $!
wait_for 5 grep -q ready "$T_TMP/silent.out"
CHAT_TIMEOUT=10 chat >"$T_TMP/silent.chat" <<S
< 421 4.4.2
eof
S
ok "silent server: client gets 421 4.4.2 after greeting_timeout" test $? -eq 0
ok "silent server: the reply says why" grep -q "timeout in state greeting" "$T_TMP/silent.chat"
wait_sessions 4
ok "silent server: logged" grep -q 'reason="timeout in state greeting"' <<<"$(session_line 4)"

ok "proxy exits cleanly" proxy_stop
finish
