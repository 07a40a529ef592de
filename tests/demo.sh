#!/usr/bin/env bash
# make demo: the main job, live, in a throwaway topology of network namespaces.
#
#   client 192.0.2.10 --(plaintext SMTP)--> gateway [nft redirect :25 -> starttlsd]
#          --(STARTTLS, TLS 1.3)--> mx 198.51.100.25
. "$(dirname "$0")/lib/common.sh"
T_KEEP=

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

[ -x "$STARTTLSD" ] || { echo "build first: make" >&2; exit 1; }
step "Building the topology: client, gateway, mail server (network namespaces)"
topo_up || exit 1
redirect_on
echo "gateway nftables rule (the admin's one line):"
in_gw nft list table inet sttest | grep redirect | sed 's/^\s*/    /'

step "Starting a STARTTLS mail server (mx.example.net, $SRV4) and starttlsd on the gateway"
server starttls || exit 1
proxy_syslog || exit 1
echo "    $(grep -m1 event=start "$PROXY_LOG" | sed 's/.*starttlsd\[[0-9]*\]: //')"

step "The client sends mail to $SRV4:25 in plaintext (swaks). It sees no STARTTLS:"
cswaks --body "Hello from a server that never learned TLS." 2>&1 | sed 's/^/    /'

step "What the mail server saw"
wait_msgs 1 || { echo "no message arrived"; exit 1; }
printf '    connection from %s (the gateway), TLS: %s, cipher %s\n' \
	"$(json "$(msg_json 1)" peer)" "$(json "$(msg_json 1)" tls)" "$(json "$(msg_json 1)" cipher)"
grep -E "cmd (EHLO|STARTTLS)|tls TLS" "$SRV_LOG" | sed 's/^/    /'

step "The syslog line (facility mail) starttlsd wrote for the session"
wait_for 5 grep -q event=session "$SYSLOG_OUT"
grep event=session "$SYSLOG_OUT" | sed 's/^/    /'
echo
echo "Log keys are documented in docs/logging.md. Tearing the topology down."
proxy_stop >/dev/null
exit 0
