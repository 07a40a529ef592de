#!/bin/sh
# deploy/iptables.sh: port-25 interception for starttlsd(8) with iptables and
# ip6tables REDIRECT, for routers and admins who keep iptables rules.
#
#   iptables.sh start     install or replace the rules (idempotent, atomic per family)
#   iptables.sh stop      remove exactly what start added (idempotent)
#   iptables.sh status    show the rules; exit 0 if installed, 3 if not
#   (restart and reload are start: it replaces the chains in place)
#
# Everything lives in chains of its own in the nat table (STARTTLSD for mail
# forwarded from the LAN, STARTTLSD_OUT for mail sent by the gateway itself),
# reached by one jump rule each from PREROUTING / OUTPUT; nothing else is
# touched. Works with either backend: Debian 12's "iptables" is iptables-nft
# (rules in nftables tables "ip nat" / "ip6 nat"), iptables-legacy works too
# (IPTABLES=iptables-legacy IP6TABLES=ip6tables-legacy).
#
# Use this script OR deploy/nftables.conf OR starttlsd's own interception
# ("intercept = on"), not several at once.
#
# Settings: edit below, or set them in the environment, which wins:
#   LAN_IFACES="lan0 lan1" BYPASS4="203.0.113.0/24" iptables.sh start
# After changing a setting, run "start" again: the chains are replaced.

LAN_IFACES=${LAN_IFACES-"lan0"}       # interfaces facing the LAN hosts (space-separated)
PORT=${PORT-10025}                    # starttlsd's "listen" port
MARK=${MARK-0x2525}                   # starttlsd's "upstream_mark"
BYPASS4=${BYPASS4-""}                 # IPv4 destinations never intercepted, e.g. "192.0.2.0/24 198.51.100.7"
BYPASS6=${BYPASS6-""}                 # IPv6 destinations never intercepted, e.g. "2001:db8:1::/48"
INTERCEPT_LOCAL=${INTERCEPT_LOCAL-no} # yes: also mail sent by the gateway itself (OUTPUT)
IPV6=${IPV6-yes}                      # no: leave ip6tables alone
IPTABLES=${IPTABLES-iptables}
IP6TABLES=${IP6TABLES-ip6tables}

CHAIN=STARTTLSD
CHAIN_OUT=STARTTLSD_OUT

set -u
me=${0##*/}
die() { echo "$me: $*" >&2; exit 1; }

# The nat table content for one family, as iptables-restore --noflush input:
# declaring a chain that exists flushes it, so the chains are replaced in one
# transaction (no moment without the redirect, no duplicated rule). The jump
# rules are added only when missing ($2, $3: "yes" if present).
# rules FAMILY(4|6) HAVE_JUMP HAVE_JUMP_OUT
rules() {
	fam=$1 have_jump=$2 have_jump_out=$3
	if [ "$fam" = 4 ]; then bypass=$BYPASS4; else bypass=$BYPASS6; fi
	echo "*nat"
	echo ":$CHAIN - [0:0]"
	# Mail to the gateway itself (an MTA running here) stays local.
	echo "-A $CHAIN -m addrtype --dst-type LOCAL -j RETURN"
	for net in $bypass; do
		echo "-A $CHAIN -d $net -j RETURN"
	done
	for ifc in $LAN_IFACES; do
		echo "-A $CHAIN -i $ifc -p tcp --dport 25 -j REDIRECT --to-ports $PORT"
	done
	# Inserted first, so that no other nat rule (a port forward, a DNAT)
	# takes port 25 before us; the chain itself only redirects LAN traffic.
	[ "$have_jump" = yes ] || echo "-I PREROUTING 1 -p tcp --dport 25 -j $CHAIN"
	if [ "$INTERCEPT_LOCAL" = yes ]; then
		echo ":$CHAIN_OUT - [0:0]"
		# First: starttlsd's own upstream connections (SO_MARK) go
		# out; without this they would be redirected back to it,
		# which it refuses as a loop (421 4.4.6).
		echo "-A $CHAIN_OUT -m mark --mark $MARK -j RETURN"
		echo "-A $CHAIN_OUT -o lo -j RETURN"
		for net in $bypass; do
			echo "-A $CHAIN_OUT -d $net -j RETURN"
		done
		echo "-A $CHAIN_OUT -p tcp --dport 25 -j REDIRECT --to-ports $PORT"
		[ "$have_jump_out" = yes ] || echo "-I OUTPUT 1 -p tcp --dport 25 -j $CHAIN_OUT"
	fi
	echo "COMMIT"
}

# has_jump IPT HOOK TARGET: the jump rule is there.
has_jump() { "$1" -w -t nat -C "$2" -p tcp --dport 25 -j "$3" 2>/dev/null; }

# remove_chain IPT HOOK CHAIN: delete every copy of the jump, then the chain.
remove_chain() {
	while has_jump "$1" "$2" "$3"; do
		"$1" -w -t nat -D "$2" -p tcp --dport 25 -j "$3" || return 1
	done
	if "$1" -w -t nat -n -L "$3" >/dev/null 2>&1; then
		"$1" -w -t nat -F "$3" && "$1" -w -t nat -X "$3" || return 1
	fi
	return 0
}

start_family() {
	ipt=$1 fam=$2
	command -v "$ipt" >/dev/null 2>&1 || die "$ipt not found (IPV6=no to skip IPv6)"
	j=no; jo=no
	has_jump "$ipt" PREROUTING "$CHAIN" && j=yes
	has_jump "$ipt" OUTPUT "$CHAIN_OUT" && jo=yes
	rules "$fam" "$j" "$jo" | "$ipt-restore" -w --noflush ||
		die "$ipt-restore failed (is the nat table available: modules nf_nat, nft_redir / xt_REDIRECT?)"
	# intercept_local turned off since the last start: take its part away.
	if [ "$INTERCEPT_LOCAL" != yes ]; then
		remove_chain "$ipt" OUTPUT "$CHAIN_OUT" || die "$ipt: cannot remove $CHAIN_OUT"
	fi
}

stop_family() {
	ipt=$1
	command -v "$ipt" >/dev/null 2>&1 || return 0
	remove_chain "$ipt" PREROUTING "$CHAIN" || die "$ipt: cannot remove $CHAIN"
	remove_chain "$ipt" OUTPUT "$CHAIN_OUT" || die "$ipt: cannot remove $CHAIN_OUT"
}

status_family() {
	ipt=$1
	command -v "$ipt" >/dev/null 2>&1 || return 1
	out=$("$ipt-save" -t nat 2>/dev/null | grep -E -- "(^:| -j |^-A )$CHAIN(_OUT)?( |\$)") || return 1
	printf '%s:\n%s\n' "$ipt" "$out"
}

case $INTERCEPT_LOCAL in yes|no) ;; *) die "INTERCEPT_LOCAL must be yes or no" ;; esac
case $IPV6 in yes|no) ;; *) die "IPV6 must be yes or no" ;; esac
case $PORT in ''|*[!0-9]*) die "PORT must be a number" ;; esac
[ -n "$LAN_IFACES" ] || die "LAN_IFACES is empty"

case ${1-} in
start|restart|reload)
	# start replaces the chains in place: no need to stop first.
	start_family "$IPTABLES" 4
	[ "$IPV6" = yes ] && start_family "$IP6TABLES" 6
	exit 0
	;;
stop)
	stop_family "$IPTABLES"
	# Removed even with IPV6=no, in case an earlier start added it.
	stop_family "$IP6TABLES"
	exit 0
	;;
status)
	found=1
	status_family "$IPTABLES" && found=0
	status_family "$IP6TABLES" && found=0
	[ $found -eq 0 ] || { echo "$me: not installed"; exit 3; }
	;;
*)
	echo "usage: $me start|stop|status" >&2
	exit 2
	;;
esac
