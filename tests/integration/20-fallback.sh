#!/usr/bin/env bash
# Opportunistic TLS and odd servers: no STARTTLS, a failing handshake, a
# refused or strangely answered STARTTLS, a masked capability, no ESMTP, and
# refusals that must reach the client as the server said them.
. "$(dirname "$0")/../lib/common.sh"

topo_up
redirect_on
proxy

body=$T_TMP/body.eml
printf 'Subject: fallback\r\n\r\nline one\r\n.dot\r\nlast' >"$body"
printf 'Subject: fallback\r\n\r\nline one\r\n.dot\r\nlast\r\n' >"$body.expect"

srv_restart() {
	server_stop
	rm -rf "$SRV_OUT" "$SRV_LOG"
	server "$@"
}
last_session() { grep "event=session" "$PROXY_LOG" | tail -n 1; }
nsess() { grep -c "event=session" "$PROXY_LOG"; }

# delivered MODE ACTION TLS_ERROR_REGEX: the message goes through in plaintext.
delivered() {
	local mode=$1 action=$2 why=$3 n
	srv_restart "$mode"
	n=$(nsess)
	ok "$mode: swaks delivers" cswaks --data @"$body"
	ok "$mode: message arrives intact" wait_msgs 1
	ok "$mode: byte-identical" cmp "$body.expect" "$(msg_eml 1)"
	ok "$mode: server saw plaintext" test "$(json "$(msg_json 1)" tls)" = None
	wait_sessions $((n + 1))
	local line; line=$(last_session)
	ok "$mode: logged action=$action tls=none" grep -q "action=$action tls=none cipher=none verify=none" <<<"$line"
	ok "$mode: logged why ($why)" grep -Eq "tls_error=\"?$why" <<<"$line"
}

delivered plain plaintext "starttls-missing"
delivered masked plaintext "starttls-masked"
delivered noehlo plaintext "starttls-missing: no ESMTP, EHLO got 502"
ok "noehlo: HELO was used after EHLO was rejected" grep -q "HELO gw.example.org" "$SRV_LOG"
delivered badtls fallback "handshake-failed"
ok "badtls: the fallback is a second connection without STARTTLS" \
	test "$(grep -c '^.*conn ' "$SRV_LOG")" -ge 2
delivered refuse fallback "starttls-refused: 454"
delivered reply354 fallback "starttls-refused: 354"

# Refusals reach the client as the server said them; nothing is sent on.
refused() {
	local mode=$1 want=$2 n
	srv_restart "$mode"
	n=$(nsess)
	chat >"$T_TMP/$mode.chat" <<-S
	< $want
	eof
	S
	ok "$mode: client gets the server's own '$want' and the connection closes" \
		grep -q "^R: $want" "$T_TMP/$mode.chat"
	wait_sessions $((n + 1))
	ok "$mode: logged action=refused" grep -q "action=refused" <<<"$(last_session)"
	ok "$mode: nothing delivered" test "$(nmsgs)" -eq 0
}
refused greet421 "421 4.3.2 Service not available"
refused greet554 "554 5.7.1 No SMTP service here"
refused ehlo421 "421 4.7.0 Too busy"
not_ok "ehlo421: the proxy sent no command after the 421" grep -Eq "cmd (STARTTLS|HELO|MAIL)" "$SRV_LOG"

# Response injection: bytes after the 220 to STARTTLS abort the session.
srv_restart inject
n=$(nsess)
chat >"$T_TMP/inject.chat" <<-S
< 421 4.7.0
eof
S
ok "inject: client gets 421 4.7.0, the session is aborted" grep -q "^R: 421 4.7.0" "$T_TMP/inject.chat"
wait_sessions $((n + 1))
ok "inject: logged as response-injection" grep -q "reason=response-injection" <<<"$(last_session)"
ok "inject: nothing delivered" test "$(nmsgs)" -eq 0

# No server at all: a temporary error, never silence.
server_stop
n=$(nsess)
chat >"$T_TMP/down.chat" <<-S
< 421 4.4.2
eof
S
ok "server down: client gets 421 4.4.2" grep -q "^R: 421 4.4.2" "$T_TMP/down.chat"
wait_sessions $((n + 1))
ok "server down: logged with the connect error" grep -Eq "action=refused .*reason=\"connect: Connection refused" <<<"$(last_session)"

ok "proxy exits cleanly" proxy_stop
finish
