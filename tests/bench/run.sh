#!/usr/bin/env bash
# Run the benchmark (tests/bench/bench.py) in a network namespace of its own.
#
#   tests/bench/run.sh            the full bench; writes docs/performance.md (make bench)
#   tests/bench/run.sh --smoke    tiny loads, one run, no report file (make bench-smoke)
#   tests/bench/run.sh --help     the driver's options (--runs, --sections, --out, ...)
#   tests/bench/run.sh --sections wan --wan-into docs/performance.md
#                                 only the WAN section (~2.5 min), put into the report
#
# Needs root (namespace, addresses) and what `make bench-tools all` builds:
# build/starttlsd, build/bench/sink, build/bench/bclient, build/bench/delay.
#
# Namespace: lo up, plus 127.0.1.1/32 on lo as the "Internet" side. The sinks and
# Postfix listen there, and the proxies' upstream connections leave from it, while
# the load generators connect to the proxies from 127.0.0.1.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

if [ "$(id -u)" -ne 0 ]; then
	echo "bench: needs root (a network namespace of its own)" >&2
	exit 1
fi
for f in build/starttlsd build/bench/sink build/bench/bclient build/bench/delay; do
	[ -x "$top/$f" ] || { echo "bench: $f missing: make all bench-tools" >&2; exit 1; }
done
for c in stunnel swaks postfix openssl; do
	command -v "$c" >/dev/null || [ -x "/usr/sbin/$c" ] ||
		{ echo "bench: $c missing: make deps" >&2; exit 1; }
done
export PATH=$PATH:/usr/sbin:/sbin

ns=stbench$$
cleanup() {
	ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" addr add 127.0.1.1/32 dev lo
# Per-namespace: room for many short connections, reuse of TIME_WAIT ports.
ip netns exec "$ns" sysctl -qw net.ipv4.ip_local_port_range="10240 65000" \
	net.ipv4.tcp_tw_reuse=1 net.core.somaxconn=4096

# 10,000 idle sessions need > 20,000 descriptors in a proxy: raise the limit
# as far as this machine allows (the report says what it was).
ulimit -Hn 65536 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cd "$top"
ip netns exec "$ns" "$PY" "$top/tests/bench/bench.py" "$@"
