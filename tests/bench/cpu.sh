#!/usr/bin/env bash
# Proxy CPU per message for one starttlsd binary, the load of issue 10's LAN
# row (1 KiB, a new connection per message, 10 sessions), optionally under
# strace -c or perf record on its workers. A quick look for profiling; the
# figures that go into docs/performance.md come from make bench (make
# bench-cpu: the same row through bench.py).
#
#   tests/bench/cpu.sh [options]
#     --bin PATH        starttlsd to measure (default build/starttlsd)
#     --messages N      messages (default 5000)
#     --sessions N      concurrent smtp-source sessions (default 10)
#     --syslog          a syslog receiver on a private /dev/log (as bench.py)
#     --tool T          none (default), strace (syscall counts of the workers),
#                       perf (perf record -g of the workers), perf-dwarf
#     --out DIR         where the tool's output goes (default build/bench/cpu)
#     --extra "ARGS"    more starttlsd options (e.g. "--workers 1")
#
# One line: msgs, CPU per message (utime+stime of the master and workers,
# and their schedstat run time, microseconds), wall, load average, and the
# sink's counters (conns = server connections, tls_full/tls_resumed).
# Needs root (a network namespace), build/bench/sink, smtp-source.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=$top/build/starttlsd msgs=5000 sessions=10 syslog=0 tool=none
out=$top/build/bench/cpu extra=
while [ $# -gt 0 ]; do
	case $1 in
	--bin) bin=$(realpath "$2"); shift 2 ;;
	--messages) msgs=$2; shift 2 ;;
	--sessions) sessions=$2; shift 2 ;;
	--syslog) syslog=1; shift ;;
	--tool) tool=$2; shift 2 ;;
	--out) out=$(realpath -m "$2"); shift 2 ;;
	--extra) extra=$2; shift 2 ;;
	*) echo "cpu.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
[ "$(id -u)" -eq 0 ] || { echo "cpu.sh: needs root" >&2; exit 1; }
[ -x "$top/build/bench/sink" ] || { echo "cpu.sh: make bench-tools" >&2; exit 1; }

if [ "${CPU_SH_INNER:-}" != 1 ]; then
	ns=stcpu$$
	tmp=$(mktemp -d /tmp/starttlsd-cpu.XXXXXX)
	chmod 755 "$tmp"
	slpid=
	cleanup() {
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
		ip netns del "$ns" 2>/dev/null || true
		[ -n "$slpid" ] && kill "$slpid" 2>/dev/null || true
		rm -rf "$tmp"
	}
	trap cleanup EXIT
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	ip -n "$ns" addr add 127.0.1.1/32 dev lo
	ip netns exec "$ns" sysctl -qw net.ipv4.ip_local_port_range="10240 65000" \
		net.ipv4.tcp_tw_reuse=1 net.core.somaxconn=4096
	mkdir -p "$out"
	export CPU_SH_INNER=1 CPU_TMP=$tmp
	args=(--bin "$bin" --messages "$msgs" --sessions "$sessions" --tool "$tool"
		--out "$out" --extra "$extra")
	if [ "$syslog" = 1 ]; then
		fdev=$tmp/fakedev
		mkdir -p "$fdev"
		python3 "$top/tests/peers/syslogd.py" "$fdev/log" "$tmp/syslog.out" \
			>"$tmp/syslogd.ready" 2>&1 &
		slpid=$!
		for _ in $(seq 1 50); do grep -q ready "$tmp/syslogd.ready" 2>/dev/null && break; sleep 0.1; done
		ip netns exec "$ns" unshare -m sh -c '
			fdev=$1; shift
			mount --make-rprivate / 2>/dev/null
			for d in null zero random urandom; do
				touch "$fdev/$d" && mount --bind "/dev/$d" "$fdev/$d" || exit 1
			done
			mount --bind "$fdev" /dev || exit 1
			exec "$@"' sh "$fdev" bash "$0" "${args[@]}"
		echo "syslog lines received: $(wc -l <"$tmp/syslog.out")"
	else
		ip netns exec "$ns" bash "$0" "${args[@]}"
	fi
	exit 0
fi

# ---- inside the namespace -------------------------------------------------------
T=$CPU_TMP
mkdir -p "$T/state"
bash "$top/tests/peers/mkcerts.sh" "$T/certs" >/dev/null
C=$T/certs
"$top/build/bench/sink" --listen 127.0.1.1:2525 --cert "$C/server.crt" \
	--key "$C/server.key" --stats "$T/sink.stats" >"$T/sink.out" 2>"$T/sink.log" &
sink=$!
for _ in $(seq 1 100); do grep -q ready "$T/sink.out" && break; sleep 0.05; done
# shellcheck disable=SC2086
"$bin" -f --log-stderr --listen 127.0.0.1:10025 --upstream 127.0.1.1:2525 \
	--helo-name bench.example.org --ca-file "$C/ca.crt" --max-sessions 20000 \
	--max-sessions-per-client 20000 --state-dir "$T/state" $extra 2>"$T/starttlsd.log" &
p=$!
for _ in $(seq 1 200); do ss -ltn | grep -q "127.0.0.1:10025 " && break; sleep 0.05; done
sleep 0.3
kids=$(pgrep -P "$p" | tr '\n' ' ')
toolpid=
case $tool in
none) ;;
strace)
	# shellcheck disable=SC2046
	strace -c -f -o "$out/strace.txt" $(for k in $kids; do echo -p "$k"; done) &
	toolpid=$!; sleep 0.5 ;;
perf|perf-dwarf)
	g=(-g); [ "$tool" = perf-dwarf ] && g=(--call-graph dwarf,16384)
	perf record "${g[@]}" -F 1000 -o "$out/perf.data" -p "$(echo $kids | tr ' ' ',')" \
		2>/dev/null &
	toolpid=$!; sleep 0.5 ;;
*) echo "cpu.sh: unknown tool $tool" >&2; exit 2 ;;
esac
ticks() {
	local t=0 x
	for x in $p $kids; do
		read -r -a f <<<"$(sed 's/.*) //' "/proc/$x/stat")"
		t=$((t + f[11] + f[12]))
	done
	echo $t
}
runns() {
	local t=0 x s a
	for x in $p $kids; do
		for s in /proc/"$x"/task/*/schedstat; do read -r a _ <"$s"; t=$((t + a)); done
	done
	echo $t
}
c0=$(ticks) n0=$(runns) t0=$(date +%s%N)
/usr/sbin/smtp-source -s "$sessions" -m "$msgs" -l 1024 -f bench@example.org \
	-t sink@example.net -M bench.example.org 127.0.0.1:10025
sleep 0.2
c1=$(ticks) n1=$(runns) t1=$(date +%s%N)
kill -USR1 "$sink"; sleep 0.1
if [ -n "$toolpid" ]; then kill -INT "$toolpid"; wait "$toolpid" || true; fi
hz=$(getconf CLK_TCK)
echo "msgs=$msgs cpu_us_per_msg=$(( (c1 - c0) * 1000000 / hz / msgs )) run_us_per_msg=$(( (n1 - n0) / 1000 / msgs )) wall_ms=$(( (t1 - t0) / 1000000 )) load=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' ,) sink: $(cat "$T/sink.stats")"
kill "$p"; wait "$p" || true
kill "$sink"; wait "$sink" 2>/dev/null || true
