# Shared helpers for the integration tests. Source it from a test script:
#   . "$(dirname "$0")/../lib/common.sh"
#
# Topology (all in namespaces this script creates; documentation addresses):
#
#   cli  192.0.2.10    2001:db8:1::10  --veth--  192.0.2.1    2001:db8:1::1   gw
#   gw   198.51.100.1  2001:db8:2::1   --veth--  198.51.100.25 2001:db8:2::25 srv
#
# gw forwards and redirects TCP port 25 arriving from cli to starttlsd on :10025.

set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STARTTLSD=${STARTTLSD:-$TOP/build/starttlsd}
PEERS=$TOP/tests/peers
PY=${PY:-/usr/bin/python3}
[ -x "$PY" ] || PY=python3

T_NAME=$(basename "$0" .sh)
T_TMP=$(mktemp -d "/tmp/starttlsd-${T_NAME}.XXXXXX")
# The daemon's workers run as user starttlsd: they must reach state_dir.
chmod 755 "$T_TMP"
T_PASS=0
T_FAIL=0
T_PIDS=()
NS_PREFIX="st$$"
NS_CLI="${NS_PREFIX}cli"
NS_GW="${NS_PREFIX}gw"
NS_SRV="${NS_PREFIX}srv"
CLI4=192.0.2.10;    CLI6=2001:db8:1::10
GWL4=192.0.2.1;     GWL6=2001:db8:1::1
GWW4=198.51.100.1;  GWW6=2001:db8:2::1
SRV4=198.51.100.25; SRV6=2001:db8:2::25
PROXY_LOG=$T_TMP/proxy.log
# No default configuration file: /etc/starttlsd/starttlsd.conf on this host
# must not change what the tests run (starttlsd reads it when there is no -c).
export STARTTLSD_CONFIG=
# valgrind starts slowly.
case $STARTTLSD in *valgrind*) PROXY_START_WAIT=30 ;; *) PROXY_START_WAIT=5 ;; esac
# Options every test proxy gets unless a test sets its own.
# DANE and MTA-STS are on by default; they ask DNS (the host's resolvers from
# /etc/resolv.conf), which no test may reach: only 91-dnssec and 94-dane,
# with their own resolvers in the namespaces, turn them on.
PROXY_BASE=(--helo-name gw.example.org --state-dir "$T_TMP/state" --dane off --mta-sts off)
NO_DNS=(--dane off --mta-sts off)
SRV_OUT=$T_TMP/srv-out
SRV_LOG=$T_TMP/srv.log
CERTS=${CERTS:-/tmp/starttlsd-test-certs}

say() { printf '%s\n' "$*" >&2; }

# ---- every starttlsd log line is read back strictly -----------------------------
# tests/logfmt/logfmt-check.go reads each line of PROXY_LOG and SYSLOG_OUT with
# go-logfmt and with a strict reader of docs/logging.md's grammar, and checks
# it against that page's key tables. It runs at every ok (only new lines are
# read), so lines are seen before a test truncates the log; proxy_stop fails
# on a bad line, and finish counts the lines in one more check.
LOGFMT_CHECK=${LOGFMT_CHECK:-$TOP/build/logfmt-check}
LOGFMT_ERRORS=$T_TMP/logfmt.errors
LOGFMT_LINES=0
# logfmt_build: the reader, with Debian's golang-go and go-logfmt, offline.
logfmt_build() {
	local src=$TOP/tests/logfmt/logfmt-check.go tmp rc=0
	[ -x "$LOGFMT_CHECK" ] && [ "$LOGFMT_CHECK" -nt "$src" ] && return 0
	command -v go >/dev/null 2>&1 || { echo "no go (tests/deps.sh installs golang-go)"; return 1; }
	tmp=$(mktemp -d) && mkdir -p "$(dirname "$LOGFMT_CHECK")" || return 1
	GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOPROXY=off GOCACHE=$tmp/cache \
		go build -o "$tmp/logfmt-check" "$src" && mv -f "$tmp/logfmt-check" "$LOGFMT_CHECK" || rc=1
	rm -rf "$tmp"
	return $rc
}
# logfmt_checkpoint: read what the proxy logged since the last call; 1 on a bad line.
logfmt_checkpoint() {
	local f files=() out n
	for f in "$PROXY_LOG" "$SYSLOG_OUT"; do [ -s "$f" ] && files+=("$f"); done
	[ ${#files[@]} -gt 0 ] || return 0
	if ! out=$(logfmt_build 2>&1); then
		echo "cannot build tests/logfmt/logfmt-check.go: $out" >>"$LOGFMT_ERRORS"
		return 1
	fi
	out=$("$LOGFMT_CHECK" -docs "$TOP/docs/logging.md" -state "$T_TMP/logfmt.state" "${files[@]}" 2>&1)
	n=$(tail -n 1 <<<"$out" | grep -oE '^[0-9]+')
	LOGFMT_LINES=$((LOGFMT_LINES + ${n:-0}))
	[ -n "$n" ] && [ "$(tail -n 1 <<<"$out")" = "$n lines ok" ] && return 0
	printf '%s\n' "$out" >>"$LOGFMT_ERRORS"
	say "  bad log line(s): $(head -n 1 <<<"$out" | cut -c1-300)"
	return 1
}

# ok "what" cmd...: one check, counted.
ok() {
	local what=$1; shift
	logfmt_checkpoint
	if "$@" >"$T_TMP/check.out" 2>&1; then
		T_PASS=$((T_PASS + 1)); say "  ok    $what"
	else
		T_FAIL=$((T_FAIL + 1)); say "  FAIL  $what"
		{ echo "== FAIL: $what"; cat "$T_TMP/check.out"; } >>"$T_TMP/failures.log"
		[ -n "${T_VERBOSE:-}" ] && tail -n 15 "$T_TMP/check.out" | cut -c1-200 >&2
	fi
	return 0
}
# not_ok "what" cmd...: passes when cmd fails.
not_ok() { local what=$1; shift; ok "$what" bash -c '! "$@"' _ "$@"; }

cleanup() {
	local p
	for p in "${T_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	sleep 0.1
	for p in "${T_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	for ns in "$NS_CLI" "$NS_GW" "$NS_SRV"; do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
		ip netns del "$ns" 2>/dev/null
	done
	if [ "$T_FAIL" -gt 0 ] || [ -n "${T_KEEP:-}" ]; then
		say "  (logs kept in $T_TMP)"
	else
		rm -rf "$T_TMP"
	fi
}
trap cleanup EXIT

# finish: print the count line and exit non-zero on failure.
finish() {
	logfmt_checkpoint
	if [ "$LOGFMT_LINES" -gt 0 ] || [ -s "$LOGFMT_ERRORS" ]; then
		ok "every starttlsd log line ($LOGFMT_LINES) reads as strict logfmt, keys as in docs/logging.md" \
			bash -c '! cat "$1" 2>/dev/null | grep .' _ "$LOGFMT_ERRORS"
	fi
	echo "$T_NAME: $T_PASS passed, $T_FAIL failed"
	[ -n "${T_RESULTS:-}" ] && echo "$T_PASS $T_FAIL" >>"$T_RESULTS"
	[ "$T_FAIL" -eq 0 ]
	exit $?
}

# skip "why": say so; it counts as neither pass nor fail, and says skipped.
skip() {
	echo "$T_NAME: SKIPPED: $*"
	[ -n "${T_RESULTS:-}" ] && echo "0 0 1" >>"$T_RESULTS"
	exit 0
}

need_root() { [ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces"; }

certs() {
	[ -f "$CERTS/server.crt" ] || bash "$PEERS/mkcerts.sh" "$CERTS" >/dev/null
}

in_cli() { ip netns exec "$NS_CLI" "$@"; }
in_gw()  { ip netns exec "$NS_GW" "$@"; }
in_srv() { ip netns exec "$NS_SRV" "$@"; }

# topo_up: build cli <-> gw <-> srv with the port-25 redirect on gw.
topo_up() {
	need_root
	local ns
	for ns in "$NS_CLI" "$NS_GW" "$NS_SRV"; do
		ip netns add "$ns" || return 1
		ip -n "$ns" link set lo up
	done
	ip link add "${NS_PREFIX}c0" netns "$NS_CLI" type veth peer name "${NS_PREFIX}g0" netns "$NS_GW"
	ip link add "${NS_PREFIX}g1" netns "$NS_GW" type veth peer name "${NS_PREFIX}s0" netns "$NS_SRV"
	ip -n "$NS_CLI" link set "${NS_PREFIX}c0" name lan0
	ip -n "$NS_GW"  link set "${NS_PREFIX}g0" name lan0
	ip -n "$NS_GW"  link set "${NS_PREFIX}g1" name wan0
	ip -n "$NS_SRV" link set "${NS_PREFIX}s0" name wan0
	ip -n "$NS_CLI" addr add $CLI4/24 dev lan0
	ip -n "$NS_CLI" addr add $CLI6/64 dev lan0 nodad
	ip -n "$NS_GW"  addr add $GWL4/24 dev lan0
	ip -n "$NS_GW"  addr add $GWL6/64 dev lan0 nodad
	ip -n "$NS_GW"  addr add $GWW4/24 dev wan0
	ip -n "$NS_GW"  addr add $GWW6/64 dev wan0 nodad
	ip -n "$NS_SRV" addr add $SRV4/24 dev wan0
	ip -n "$NS_SRV" addr add $SRV6/64 dev wan0 nodad
	for ns in "$NS_CLI" "$NS_GW" "$NS_SRV"; do
		ip -n "$ns" link set lan0 up 2>/dev/null
		ip -n "$ns" link set wan0 up 2>/dev/null
	done
	ip -n "$NS_CLI" route add default via $GWL4
	ip -n "$NS_CLI" -6 route add default via $GWL6
	ip -n "$NS_SRV" route add default via $GWW4
	ip -n "$NS_SRV" -6 route add default via $GWW6
	in_gw sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
}

# redirect_on [PORT]: the rule an admin types (README, deploy/nftables.conf).
redirect_on() {
	local port=${1:-10025}
	in_gw nft -f - <<-NFT
	table inet sttest {
		chain prerouting {
			type nat hook prerouting priority dstnat; policy accept;
			iifname "lan0" tcp dport 25 redirect to :$port
		}
	}
	NFT
}

# server MODE [args...]: the project's SMTP test server on srv:25 (v4+v6).
server() {
	local mode=$1; shift
	certs
	mkdir -p "$SRV_OUT"
	# The background job truncates it only once it runs: never read a
	# previous server's "ready".
	rm -f "$T_TMP/srv.stdout"
	ip netns exec "$NS_SRV" "$PY" "$PEERS/smtpd.py" --listen "$SRV4:25" --listen "[$SRV6]:25" \
		--cert "$CERTS/server.crt" --key "$CERTS/server.key" \
		--out "$SRV_OUT" --log "$SRV_LOG" --mode "$mode" "$@" \
		>"$T_TMP/srv.stdout" 2>"$T_TMP/srv.stderr" &
	SRV_PID=$!
	T_PIDS+=($!)
	disown $!
	wait_for 5 grep -q ready "$T_TMP/srv.stdout" || { say "server did not start"; cat "$T_TMP/srv.stderr" >&2; return 1; }
}

# server_stop: end the test server and wait until its port is free.
server_stop() {
	[ -n "${SRV_PID:-}" ] || return 0
	kill "$SRV_PID" 2>/dev/null
	wait_for 3 bash -c "! kill -0 $SRV_PID" || kill -9 "$SRV_PID" 2>/dev/null
	wait_for 3 bash -c "! kill -0 $SRV_PID"
	SRV_PID=
}

# proxy [args...]: starttlsd on the gateway, foreground, log mirrored to PROXY_LOG.
proxy() {
	certs
	ip netns exec "$NS_GW" "$STARTTLSD" -f --log-stderr "${PROXY_BASE[@]}" \
		--ca-file "$CERTS/ca.crt" "$@" 2>>"$PROXY_LOG" &
	PROXY_PID=$!
	T_PIDS+=($PROXY_PID)
	wait_for "$PROXY_START_WAIT" grep -q "event=start" "$PROXY_LOG" || { say "proxy did not start"; cat "$PROXY_LOG" >&2; return 1; }
}

# proxy_syslog [args...]: like proxy, but starttlsd runs in a private mount
# namespace whose /dev holds a test syslog socket (tests/peers/syslogd.py), so
# what it sends to syslog(3) lands in SYSLOG_OUT, exactly as a syslogd gets it.
SYSLOG_OUT=$T_TMP/syslog.out
proxy_syslog() {
	certs
	local fdev=$T_TMP/fakedev
	mkdir -p "$fdev"
	"$PY" "$PEERS/syslogd.py" "$fdev/log" "$SYSLOG_OUT" >"$T_TMP/syslogd.stdout" 2>&1 &
	T_PIDS+=($!); disown $!
	wait_for 5 grep -q ready "$T_TMP/syslogd.stdout" || return 1
	ip netns exec "$NS_GW" unshare -m sh -c '
		fdev=$1; shift
		mount --make-rprivate / 2>/dev/null
		for d in null zero random urandom; do
			touch "$fdev/$d" && mount --bind "/dev/$d" "$fdev/$d" || exit 1
		done
		mount --bind "$fdev" /dev || exit 1
		exec "$@"' sh "$fdev" "$STARTTLSD" -f --log-stderr "${PROXY_BASE[@]}" \
		--ca-file "$CERTS/ca.crt" "$@" 2>>"$PROXY_LOG" &
	PROXY_PID=$!
	T_PIDS+=($PROXY_PID)
	wait_for "$PROXY_START_WAIT" grep -q "event=start" "$PROXY_LOG" || { say "proxy did not start"; cat "$PROXY_LOG" >&2; return 1; }
}

# proxy_stop: SIGTERM, wait, and require a clean exit (sanitizers report here).
proxy_stop() {
	kill -TERM "$PROXY_PID" 2>/dev/null
	local rc=0
	wait "$PROXY_PID" || rc=$?
	[ "$rc" -eq 0 ] || { say "proxy exited $rc"; return 1; }
	logfmt_checkpoint || return 1
	! grep -qE "AddressSanitizer|LeakSanitizer|runtime error:|status=9[78] expected|^==[0-9]+== (Invalid|Conditional jump|Use of uninitialised|Syscall param|Mismatched|Source and destination overlap|.*definitely lost)" "$PROXY_LOG"
}

# wait_for SECONDS CMD...: retry CMD until it succeeds. Arguments are
# expanded once, by the caller: for a condition on changing state use
# wait_for N eval '[ "$(nmsgs)" -eq 3 ]' (eval runs it anew each time).
wait_for() {
	local t=$1; shift
	local end=$((SECONDS + t))
	while [ $SECONDS -lt $end ] || [ "$t" -eq 0 ]; do
		"$@" 2>/dev/null && return 0
		sleep 0.05
	done
	"$@" 2>/dev/null
}

# log_has REGEX: a line in the proxy log matches (extended regex).
log_has() { grep -Eq "$1" "$PROXY_LOG"; }
# session_line N: the Nth event=session line.
session_line() { grep "event=session" "$PROXY_LOG" | sed -n "${1:-1}p"; }
# count_ge N FILE REGEX: FILE has at least N lines matching REGEX (re-read on each poll).
count_ge() { [ "$(grep -Ec "$3" "$2" 2>/dev/null)" -ge "$1" ]; }
wait_sessions() { wait_for "${2:-10}" count_ge "$1" "$PROXY_LOG" "event=session"; }

# json FILE KEY: a top-level value of the server's per-message record.
json() { "$PY" -c 'import json,sys; v=json.load(open(sys.argv[1]))[sys.argv[2]]; print(v if not isinstance(v,list) else " ".join(v))' "$1" "$2"; }
msg_json() { echo "$SRV_OUT/msg-$1.json"; }
msg_eml() { echo "$SRV_OUT/msg-$1.eml"; }
wait_msgs() { wait_for "${2:-10}" test -f "$(msg_json "$1")"; }
nmsgs() { ls "$SRV_OUT"/msg-*.json 2>/dev/null | wc -l; }

# A client command in the client namespace, for checks: cli_run cmd...
cli_run() { ip netns exec "$NS_CLI" "$@"; }

# chat SCRIPT-ON-STDIN: scripted dialogue from the client to the server's address.
chat() { ip netns exec "$NS_CLI" "$PY" "$PEERS/chat.py" "${CHAT_HOST:-$SRV4}" "${CHAT_PORT:-25}" -; }

# The usual opening of a chat script, as far as RCPT, or DATA's 354.
CHAT_TO_RCPT='< 220
> EHLO client.example.org
< 250
> MAIL FROM:<a@example.org>
< 250
> RCPT TO:<b@example.net>
< 250'
CHAT_TO_DATA="$CHAT_TO_RCPT
> DATA
< 354"

# swaks from the client namespace to the server's address (intercepted on gw).
cswaks() {
	in_cli swaks --server "$SRV4" --port 25 --helo client.example.org \
		--from sender@example.org --to rcpt@example.net --timeout 20 "$@"
}
