#!/usr/bin/env bash
# Interop with a real MTA on both ends: a private Postfix in the client namespace
# relays a message in plaintext to a private Postfix in the server namespace; the
# port-25 redirect hands the connection to starttlsd, which upgrades the upstream
# leg with STARTTLS. The destination delivers into a maildir we can read, and its
# log shows the TLS 1.3 connection coming from the gateway.
. "$(dirname "$0")/../lib/common.sh"

. "$(dirname "$0")/../lib/postfix.sh"
pf_need

PF_DST=$T_TMP/pf-dst   # destination instance (srv namespace)
PF_CLI=$T_TMP/pf-cli   # sending instance (cli namespace)
MAILDIR=$T_TMP/mail/rcpt

pf_stop_all() { pf_stop in_cli "$PF_CLI"; pf_stop in_srv "$PF_DST"; return 0; }
trap 'pf_stop_all; cleanup' EXIT

topo_up
redirect_on
certs
proxy

# The destination: mx.example.net on 198.51.100.25:25, STARTTLS offered, mail
# for example.net delivered by the virtual agent into one maildir.
pf_instance "$PF_DST" dst <<EOF
myhostname = mx.example.net
mydomain = example.net
myorigin = \$myhostname
inet_interfaces = $SRV4
mydestination = localhost
mynetworks = 127.0.0.0/8
smtpd_banner = \$myhostname ESMTP Postfix
smtpd_peername_lookup = no
smtpd_tls_security_level = may
smtpd_tls_cert_file = $CERTS/server.crt
smtpd_tls_key_file = $CERTS/server.key
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
$(pf_virtual_conf "$T_TMP/mail")
EOF

# The sender: client.example.org in the client namespace, relaying everything
# to [198.51.100.25]:25 in plaintext (the proxy adds TLS upstream).
pf_instance "$PF_CLI" cli <<EOF
myhostname = client.example.org
mydomain = example.org
myorigin = example.org
inet_interfaces = $CLI4
mydestination = \$myhostname, localhost
mynetworks = 127.0.0.0/8 $CLI4/32
relayhost = [$SRV4]:25
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtp_host_lookup = native
EOF

ok "destination postfix starts in the server namespace" pf_start in_srv "$PF_DST"
ok "client postfix starts in the client namespace" pf_start in_cli "$PF_CLI"
ok "destination listens on $SRV4:25" wait_for 10 bash -c "ip netns exec $NS_SRV ss -ltnH | grep -q '$SRV4:25 '"

marker="starttlsd-postfix-interop $$ $(date +%s%N)"
msg=$T_TMP/msg.eml
cat >"$msg" <<EOF
From: sender@example.org
To: rcpt@example.net
Subject: postfix interop through starttlsd

$marker
.a line with a leading dot
..and one with two
end of message
EOF

ok "client postfix accepts the message (sendmail -C)" \
	in_cli sendmail -C "$PF_CLI/etc" -f sender@example.org -i rcpt@example.net <"$msg"

# delivered: the maildir's new/ holds a file with our marker line.
delivered() { grep -rlFx -- "$marker" "$MAILDIR/new" >/dev/null 2>&1; }
ok "message reaches the destination maildir" wait_for 40 delivered
f=$(grep -rlFx -- "$marker" "$MAILDIR/new" 2>/dev/null | head -n1)
ok "maildir holds exactly one message" test "$(ls "$MAILDIR/new" 2>/dev/null | wc -l)" -eq 1
ok "distinctive body line arrived byte for byte" grep -qFx -- "$marker" "${f:-/nonexistent}"
ok "leading-dot lines survive the dot-stuffing on both legs" \
	bash -c 'grep -qFx ".a line with a leading dot" "$1" && grep -qFx "..and one with two" "$1"' _ "${f:-/nonexistent}"
ok "Received: the client's EHLO name, the gateway's address" \
	grep -Eq "^Received: from client\.example\.org \(unknown \[$GWW4\]\)" "${f:-/nonexistent}"
ok "Received: over TLSv1.3, with ESMTPS" \
	bash -c 'grep -Eq "^[[:space:]]+\(using TLSv1\.3 with cipher" "$1" && grep -Eq "with ESMTPS id" "$1"' _ "${f:-/nonexistent}"

dlog=$PF_DST/maillog
clog=$PF_CLI/maillog
ok "client postfix logs status=sent via $SRV4" \
	wait_for 10 grep -Eq "relay=$SRV4\[$SRV4\]:25, .*status=sent" "$clog"
ok "destination logs a TLSv1.3 connection from the gateway $GWW4" \
	grep -Eq "TLS connection established from [^ ]*\[$GWW4\]: TLSv1\.3 with cipher" "$dlog"
not_ok "destination saw no connection from the client address itself" grep -q "\[$CLI4\]" "$dlog"
ok "destination's virtual agent delivered it" grep -Eq "postfix-dst/virtual\[[0-9]+\]: .*to=<rcpt@example.net>.*status=sent" "$dlog"

ok "one session line" wait_sessions 1
line=$(session_line 1)
ok "session line: action=upgraded" grep -q "action=upgraded" <<<"$line"
ok "session line: tls=TLSv1.3" grep -Eq "tls=TLSv1.3( |$)" <<<"$line"
ok "session line: msgs=1" grep -Eq "(^| )msgs=1( |$)" <<<"$line"
ok "session line: client and original destination" \
	bash -c 'grep -q "client=$1:" <<<"$3" && grep -q "dst=$2:25" <<<"$3"' _ "$CLI4" "$SRV4" "$line"

# The connection cache against a real Postfix: five sessions in a row (swaks,
# one worker so that they share one cache), each after its own EHLO, over
# fewer TLS connections than sessions; the server's smtpd sees RSET between
# them and nothing of the clients' QUITs.
ok "proxy stops" proxy_stop
: >"$PROXY_LOG"
proxy --workers 1
tls_before=$(grep -c "TLS connection established from" "$dlog")
n0=$(ls "$MAILDIR/new" | wc -l)
for i in 1 2 3 4 5; do
	in_cli swaks --server "$SRV4" --port 25 --helo "reuse-$i.example.org" --from sender@example.org \
		--to rcpt@example.net --body "reuse $i $marker" --timeout 20 >"$T_TMP/reuse-$i.out" 2>&1 ||
		say "swaks $i failed"
done
ok "five messages through parked connections reach the maildir" \
	wait_for 40 eval '[ "$(ls "$MAILDIR/new" | wc -l)" -eq $((n0 + 5)) ]'
tls_after=$(grep -c "TLS connection established from" "$dlog")
ok "over fewer TLS connections than sessions ($((tls_after - tls_before)) for 5)" \
	test $((tls_after - tls_before)) -lt 5
ok "each message names its own session's EHLO" bash -c "
	for i in 1 2 3 4 5; do
		f=\$(grep -rlF 'reuse '\$i' $marker' '$MAILDIR/new' | head -n 1)
		grep -q \"^Received: from reuse-\$i.example.org \" \"\$f\" || exit 1
		grep -Eq '^[[:space:]]+\(using TLSv1\.3 with cipher' \"\$f\" || exit 1
	done"
ok "the session lines: reused=yes after the first" wait_for 5 eval '[ "$(grep -c "event=session .*reused=yes" "$PROXY_LOG")" -ge 1 ]'

pf_stop_all
ok "postfix instances stopped" bash -c '! ip netns exec "$1" postfix -c "$2" status && ! ip netns exec "$3" postfix -c "$4" status' \
	_ "$NS_CLI" "$PF_CLI/etc" "$NS_SRV" "$PF_DST/etc"
ok "proxy exits cleanly on SIGTERM" proxy_stop
finish
