#!/usr/bin/env bash
# Interop with a real MTA on both ends: a private Postfix in the client namespace
# relays a message in plaintext to a private Postfix in the server namespace; the
# port-25 redirect hands the connection to starttlsd, which upgrades the upstream
# leg with STARTTLS. The destination delivers into a maildir we can read, and its
# log shows the TLS 1.3 connection coming from the gateway.
. "$(dirname "$0")/../lib/common.sh"

export PATH=$PATH:/usr/sbin:/sbin
command -v postfix >/dev/null 2>&1 || skip "postfix is not installed"
if ! getent passwd postfix >/dev/null || ! getent group postdrop >/dev/null; then
	skip "the postfix user or the postdrop group is missing"
fi

# Postfix daemons drop to the postfix user (and the virtual agent to nobody): they
# must be able to reach their directories under T_TMP.
chmod 755 "$T_TMP"

PF_DST=$T_TMP/pf-dst   # destination instance (srv namespace)
PF_CLI=$T_TMP/pf-cli   # sending instance (cli namespace)
MAILDIR=$T_TMP/mail/rcpt

# Stop the Postfix instances (gracefully) before the harness kills what is left.
pf_stop() { # pf_stop NS-RUNNER DIR: postfix stop, if that instance runs
	[ -f "$2/queue/pid/master.pid" ] || return 0
	"$1" postfix -c "$2/etc" status >/dev/null 2>&1 || return 0
	"$1" postfix -c "$2/etc" stop >/dev/null 2>&1
}
pf_stop_all() { pf_stop in_cli "$PF_CLI"; pf_stop in_srv "$PF_DST"; return 0; }
trap 'pf_stop_all; cleanup' EXIT

# pf_instance DIR NAME: config, queue and data directories of one private
# instance; main.cf settings follow on stdin, master.cf is written here (no chroot,
# so no copies of /etc files are needed; postlogd for maillog_file).
pf_instance() {
	local dir=$1 name=$2
	mkdir -p "$dir/etc" "$dir/queue" "$dir/data"
	chown postfix "$dir/data"
	{
		cat <<-EOF
		compatibility_level = 3.6
		config_directory = $dir/etc
		queue_directory = $dir/queue
		data_directory = $dir/data
		syslog_name = postfix-$name
		maillog_file = $dir/maillog
		maillog_file_prefixes = $T_TMP
		inet_protocols = ipv4
		alias_maps =
		alias_database =
		biff = no
		EOF
		cat
	} >"$dir/etc/main.cf"
	cat >"$dir/etc/master.cf" <<-'EOF'
	smtp       inet  n       -       n       -       -       smtpd
	pickup     unix  n       -       n       60      1       pickup
	cleanup    unix  n       -       n       -       0       cleanup
	qmgr       unix  n       -       n       300     1       qmgr
	tlsmgr     unix  -       -       n       1000?   1       tlsmgr
	rewrite    unix  -       -       n       -       -       trivial-rewrite
	bounce     unix  -       -       n       -       0       bounce
	defer      unix  -       -       n       -       0       bounce
	trace      unix  -       -       n       -       0       bounce
	verify     unix  -       -       n       -       1       verify
	flush      unix  n       -       n       1000?   0       flush
	proxymap   unix  -       -       n       -       -       proxymap
	proxywrite unix  -       -       n       -       1       proxymap
	smtp       unix  -       -       n       -       -       smtp
	relay      unix  -       -       n       -       -       smtp
	showq      unix  n       -       n       -       -       showq
	error      unix  -       -       n       -       -       error
	retry      unix  -       -       n       -       -       error
	discard    unix  -       -       n       -       -       discard
	local      unix  -       n       n       -       -       local
	virtual    unix  -       n       n       -       -       virtual
	anvil      unix  -       -       n       -       1       anvil
	scache     unix  -       -       n       -       1       scache
	postlog    unix-dgram n  -       n       -       1       postlogd
	EOF
}

# pf_start NS-RUNNER DIR: check, start, and wait until the master runs.
pf_start() {
	local run=$1 dir=$2
	"$run" postfix -c "$dir/etc" set-permissions >>"$dir/start.log" 2>&1
	"$run" postfix -c "$dir/etc" check >>"$dir/start.log" 2>&1 || { cat "$dir/start.log" >&2; return 1; }
	"$run" postfix -c "$dir/etc" start >>"$dir/start.log" 2>&1 || { cat "$dir/start.log" >&2; return 1; }
	wait_for 10 "$run" postfix -c "$dir/etc" status >/dev/null 2>&1 ||
		{ say "postfix in $dir did not start"; cat "$dir/start.log" "$dir/maillog" >&2; return 1; }
	# (no T_PIDS entry: the EXIT trap stops it, the harness kills what is left
	# in the namespace, and a stale pid must never be killed by number)
}

topo_up
redirect_on
certs
proxy

# The destination: mx.example.net on 198.51.100.25:25, STARTTLS offered, mail
# for example.net delivered by the virtual agent into one maildir.
mkdir -p "$MAILDIR"
chown -R nobody:nogroup "$T_TMP/mail" 2>/dev/null || chown -R 65534:65534 "$T_TMP/mail"
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
virtual_mailbox_domains = example.net
virtual_mailbox_base = $T_TMP/mail
virtual_mailbox_maps = static:rcpt/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 100
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

pf_stop_all
ok "postfix instances stopped" bash -c '! ip netns exec "$1" postfix -c "$2" status && ! ip netns exec "$3" postfix -c "$4" status' \
	_ "$NS_CLI" "$PF_CLI/etc" "$NS_SRV" "$PF_DST/etc"
ok "proxy exits cleanly on SIGTERM" proxy_stop
finish
