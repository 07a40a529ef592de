#!/usr/bin/env bash
# STARTTLS on the LAN leg too (--client-cert/--client-key): starttlsd offers
# it with its own certificate, and throws away anything a client pipelined
# after its STARTTLS (command injection, CVE-2011-0411 class).
. "$(dirname "$0")/../lib/common.sh"

topo_up
redirect_on
server starttls
certs
proxy --client-cert "$CERTS/proxy.crt" --client-key "$CERTS/proxy.key"

out=$T_TMP/swaks.out
cswaks --tls --body "both legs encrypted" --tls-get-peer-cert >"$out" 2>&1
ok "swaks --tls negotiates with the proxy and delivers" test $? -eq 0
ok "the client saw STARTTLS offered (by the proxy)" grep -qE "^<-  250[- ]STARTTLS" "$out"
ok "the client's TLS peer is the proxy's certificate" grep -q "gateway.example.org" "$out"
ok "message stored" wait_msgs 1
ok "the Internet leg was TLS 1.3 too" test "$(json "$(msg_json 1)" tls)" = TLSv1.3
wait_sessions 1
ok "session line: upgraded, client_tls=TLSv1.3" grep -Eq "action=upgraded .*client_tls=TLSv1.3" <<<"$(session_line 1)"

# After TLS the EHLO reply no longer offers STARTTLS, and a second one is refused.
chat >"$T_TMP/again.chat" <<S
< 220
> EHLO client.example.org
< 250
> STARTTLS
< 220
starttls
> EHLO client.example.org
< 250
> STARTTLS
< 554 5.5.1
> QUIT
< 221
S
ok "STARTTLS twice: 554 5.5.1" test $? -eq 0
not_ok "no STARTTLS offered inside TLS" bash -c "sed -n '/^T: /,\$p' $T_TMP/again.chat | grep -q '^R: 250.STARTTLS'"

# Injection: NOOP pipelined in the same write as STARTTLS must not be run.
chat >"$T_TMP/inject.chat" <<S
< 220
> EHLO client.example.org
< 250
>> STARTTLS\r\nNOOP injected\r\n
< 220
starttls
> EHLO client.example.org
< 250-mx.example.net
> QUIT
< 221
S
ok "pipelined bytes after STARTTLS are discarded; the first reply in TLS is EHLO's" test $? -eq 0
not_ok "the injected NOOP never reached the server" grep -q "NOOP injected" "$SRV_LOG"
wait_sessions 3
ok "injection logged (client_injection=discarded, warning)" grep -q "client_injection=discarded" <<<"$(session_line 3)"

ok "proxy exits cleanly" proxy_stop
finish
