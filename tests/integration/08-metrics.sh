#!/usr/bin/env bash
# The daemon's own metrics (issue 13, part 1) and the recipient domains on the
# session line (part 3): counters kept across two workers, served on
# metrics_listen in the Prometheus text format (checked by promtool), and the
# same text from starttlsctl stats. Exact values after a known set of
# sessions: upgraded, plaintext, blocked, an attack; a worker killed and a
# reload show in the worker and reload counters.
. "$(dirname "$0")/../lib/common.sh"

CTL=${STARTTLSCTL:-$(dirname "$STARTTLSD")/starttlsctl}
STATE=$T_TMP/state
topo_up
redirect_on
certs
S_PLAIN=198.51.100.70
ip -n "$NS_SRV" addr add $S_PLAIN/24 dev wan0
server starttls
in_srv "$PY" "$PEERS/smtpd.py" --listen "$S_PLAIN:25" --mode plain --no-chunking \
	--out "$T_TMP/plain-out" --log "$T_TMP/plain.log" >"$T_TMP/plain.stdout" 2>&1 &
T_PIDS+=($!); disown $!
wait_for 5 grep -q ready "$T_TMP/plain.stdout" || say "plain server did not start"

proxy --mode enforce --workers 2 --metrics-listen 127.0.0.1:9125
scrape() { in_gw "$PY" -c 'import sys, urllib.request as u
r = u.urlopen("http://127.0.0.1:9125" + sys.argv[1], timeout=5)
sys.stdout.write(r.headers.get("Content-Type", "") + "\n" + r.read().decode())' "${1:-/metrics}"; }
# metric NAME{LABELS}: its value in the last scrape.
metric() { awk -v k="$1" '$1 == k { print $2 }' "$T_TMP/scrape"; }
has() { [ "$(metric "$1")" = "$2" ] || { echo "$1 = $(metric "$1"), want $2"; return 1; }; }

ok "a TLS session delivered" cswaks --body one
ok "another TLS session delivered" cswaks --body two
ok "a plaintext session delivered (another server)" in_cli swaks --server $S_PLAIN --port 25 \
	--helo client.example.org --from a@example.org --to b@example.org --timeout 20
# (example.org: example.net is pinned by now, and would be refused here.)
CHAT_HOST=$S_PLAIN chat >"$T_TMP/bdat.chat" <<S
< 220
> EHLO client.example.org
< 250
> MAIL FROM:<a@example.org>
< 250
> RCPT TO:<b@example.org>
< 250
>> BDAT 4 LAST\r\nabcd
< 502
> QUIT
< 221
S
ok "BDAT to a server without CHUNKING refused (an attack line)" test $? -eq 0
wait_for 10 bash -c "'$CTL' --state-dir '$STATE' show $SRV4"
server_stop; server plain
chat >"$T_TMP/blocked.chat" <<S
< 421 4.7.0
eof
S
ok "the pinned server, stripped: blocked" test $? -eq 0
wait_sessions 5

ok "the endpoint answers" eval 'scrape >"$T_TMP/scrape"'
ok "content type is the text format 0.0.4" bash -c "head -n 1 '$T_TMP/scrape' | grep -q 'text/plain; version=0.0.4'"
ok "upgraded sessions: 2" has 'starttlsd_sessions_total{action="upgraded",tls_version="TLSv1.3"}' 2
ok "plaintext sessions: 2" has 'starttlsd_sessions_total{action="plaintext",tls_version="none"}' 2
ok "blocked sessions: 1" has 'starttlsd_sessions_total{action="blocked",tls_version="none"}' 1
ok "messages over TLS: 2" has 'starttlsd_messages_total{action="upgraded",tls_version="TLSv1.3"}' 2
ok "messages in plaintext: 1" has 'starttlsd_messages_total{action="plaintext",tls_version="none"}' 1
ok "downgrade starttls-missing blocked: 1" has 'starttlsd_downgrades_total{signal="starttls-missing",action="blocked",tlsrpt="starttls-not-supported"}' 1
ok "attack bdat-not-offered: 1" has 'starttlsd_attacks_total{signal="bdat-not-offered",action="refused"}' 1
ok "tls errors starttls-missing: 3 (two plaintext sessions, one blocked)" has 'starttlsd_tls_errors_total{signal="starttls-missing"}' 3
# (Two workers: the second session reuses the first's connection when it
# lands on the same worker, else it makes its own handshake.)
ok "each TLS session: a timed TLS 1.3 handshake, or a parked connection" eval '[ $(( $(metric "starttlsd_tls_handshake_duration_seconds_count{tls_version=\"TLSv1.3\"}") + $(metric starttlsd_upstream_reused_total) )) -eq 2 ]'
ok "session durations: 2 upgraded" has 'starttlsd_session_duration_seconds_count{action="upgraded"}' 2
ok "duration histogram +Inf bucket equals the count" has 'starttlsd_session_duration_seconds_bucket{action="upgraded",le="+Inf"}' 2
ok "no session open" has starttlsd_sessions_open 0
ok "two workers" has starttlsd_workers 2
ok "two started" has starttlsd_worker_starts_total 2
ok "pins: the destination and the domain" has starttlsd_pins 2
ok "recipient domains counted (example.net twice, example.org twice)" has starttlsd_recipient_domains_total 4
ok "client bytes counted" eval '[ "$(metric starttlsd_client_received_bytes_total)" -gt 500 ]'
if command -v promtool >/dev/null; then
	ok "promtool check metrics: the exposition is valid" bash -c "tail -n +2 '$T_TMP/scrape' | promtool check metrics"
else
	ok "promtool is installed (prometheus, tests/deps.sh)" false
fi
documented() { # every metric the daemon exports has a row in docs/metrics.md
	local m rc=0 n=0
	for m in $(sed -n 's/^# TYPE \([a-z_]*\) .*/\1/p' "$T_TMP/scrape"); do
		n=$((n + 1))
		grep -qF "| \`$m\` |" "$TOP/docs/metrics.md" || { echo "missing: $m"; rc=1; }
	done
	[ "$n" -gt 15 ] || { echo "only $n metrics in the scrape"; rc=1; }
	return $rc
}
ok "every metric the daemon exports is in docs/metrics.md" documented
ok "an unknown path is 404" eval 'scrape /nothing 2>&1 | grep -q "HTTP Error 404"'

ok "starttlsctl stats prints the same text" bash -c "'$CTL' --state-dir '$STATE' stats >'$T_TMP/stats' && tail -n +2 '$T_TMP/scrape' | diff - '$T_TMP/stats'"

# The session line names the accepted recipient domains.
ok "session line: rcpt_domains=example.net" bash -c "grep 'event=session' '$PROXY_LOG' | grep 'dst=$SRV4:25' | head -n 1 | grep -Eq ' rcpt_domains=example.net( peer_subject=.*)?$'"
ok "a refused session has no rcpt_domains" bash -c "! grep 'event=session' '$PROXY_LOG' | grep 'action=blocked' | grep -q rcpt_domains"

# A worker killed, a reload.
w=$(pgrep -P "$PROXY_PID" | head -n 1)
kill -9 "$w"
ok "a killed worker counts as an unexpected exit" wait_for 10 eval 'scrape >"$T_TMP/scrape" && has "starttlsd_worker_exits_total{expected=\"no\"}" 1'
ok "and is restarted" wait_for 10 eval 'scrape >"$T_TMP/scrape" && has starttlsd_worker_starts_total 3'
kill -HUP "$PROXY_PID"
ok "a reload counts as a success" wait_for 10 eval 'scrape >"$T_TMP/scrape" && has "starttlsd_config_reloads_total{result=\"success\"}" 1'
ok "the counters survive the reload (new workers, same counters)" has 'starttlsd_sessions_total{action="upgraded",tls_version="TLSv1.3"}' 2

ok "proxy exits cleanly" proxy_stop
finish
