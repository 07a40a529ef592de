#!/usr/bin/env bash
# make test-ops: deploy/ops/ with the real tools from Debian.
#
#   starttlsd (namespaces, tests/lib/common.sh) -> syslog(3) -> a private rsyslogd
#   with deploy/rsyslog.conf -> its file -> mtail with deploy/ops/starttlsd.mtail
#   -> a private Prometheus scraping mtail, with deploy/ops/starttlsd-rules.yml.
#
# Checks: mtail's counters equal what the lines say, exactly (a known scenario,
# and an independent logfmt parser over the whole file), also for a server
# whose certificate subject tries to forge keys; "promtool check rules" and
# "promtool test rules" (tests/ops/rules_test.yml: every alert); the real
# Prometheus fires the alerts this scenario should fire; every query of
# deploy/ops/starttlsd-dashboard.json returns data from that Prometheus.
# docs/metrics.md lists every metric the mtail program defines, and back.
. "$(dirname "$0")/../lib/common.sh"

OPS=$TOP/deploy/ops
CHECK="$PY $TOP/tests/ops/opscheck.py"
for tool in mtail prometheus promtool rsyslogd; do
	command -v $tool >/dev/null || { ok "$tool is installed (tests/deps.sh)" false; finish; }
done

# ---- the files alone --------------------------------------------------------
ok "promtool check rules deploy/ops/starttlsd-rules.yml" promtool check rules "$OPS/starttlsd-rules.yml"
ok "promtool test rules: every alert fires and stays quiet as it should" \
	bash -c "cd '$TOP/tests/ops' && promtool test rules rules_test.yml"
alerts_defined=$(grep -oE '^ *- alert: [A-Za-z]+' "$OPS/starttlsd-rules.yml" | awk '{print $3}' | sort -u)
alerts_tested=$(grep -oE 'alertname: [A-Za-z]+' "$TOP/tests/ops/rules_test.yml" | awk '{print $2}' | sort -u)
ok "every alert has a unit test" test "$alerts_defined" = "$alerts_tested"
ok "the mtail program compiles" bash -c "cd '$T_TMP' && mtail --progs '$OPS' --compile_only"
ok "the dashboard is tests/ops/mkdashboard.py's output" "$PY" "$TOP/tests/ops/mkdashboard.py" --check
metrics_code=$(grep -oE '^(counter|gauge|histogram) starttlsd_[a-z_]+' "$OPS/starttlsd.mtail" | awk '{print $2}' | sort -u)
metrics_doc=$(grep -oE '^\| `starttlsd_[a-z_]+`' "$TOP/docs/metrics.md" | tr -d '|` ' | sort -u)
ok "docs/metrics.md documents every metric of the mtail program" \
	bash -c "comm -23 <(echo '$metrics_code') <(echo '$metrics_doc') | grep -q . && exit 1 || exit 0"
ok "every metric the mtail program defines is in docs/metrics.md (and no metric of the doc marked mtail is missing)" \
	bash -c "for m in \$(grep -E '^\| \`starttlsd_[a-z_]+\` .*\| *(both|mtail) *\|\$' '$TOP/docs/metrics.md' | grep -oE 'starttlsd_[a-z_]+' | sort -u); do echo '$metrics_code' | grep -qx \$m || { echo missing \$m; exit 1; }; done"

# ---- topology and servers ---------------------------------------------------
topo_up
redirect_on
certs
FORGE=198.51.100.27 BLOCK=198.51.100.28 PLAIN=198.51.100.29
for a in $FORGE $BLOCK $PLAIN; do ip -n "$NS_SRV" addr add $a/24 dev wan0; done
server starttls
# A server whose certificate subject holds text that looks like keys.
fdir=$T_TMP/forge
mkdir -p "$fdir"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$fdir/k.pem" 2>/dev/null
openssl req -new -key "$fdir/k.pem" -out "$fdir/r.csr" \
	-subj '/O=x" action=blocked tls=none msgs=1000 bytes_up=77777/OU=event=attack id=00 signal=forged action=blocked \"/L=duration_ms=99999 tls_error=starttls-missing \\" reason=quit/CN=mx.example.net' \
	2>"$fdir/err" || cat "$fdir/err" >&2
printf 'subjectAltName = IP:%s\n' "$FORGE" >"$fdir/ext"
openssl x509 -req -in "$fdir/r.csr" -CA "$CERTS/ca.crt" -CAkey "$CERTS/ca.key" -days 2 \
	-set_serial 0x$(openssl rand -hex 8) -extfile "$fdir/ext" -out "$fdir/c.pem" 2>>"$fdir/err"
in_srv "$PY" "$PEERS/smtpd.py" --listen "$FORGE:25" --cert "$fdir/c.pem" --key "$fdir/k.pem" \
	--out "$T_TMP/forge-out" --log "$T_TMP/forge.log" --mode starttls >"$T_TMP/forge.stdout" 2>&1 &
T_PIDS+=($!); disown $!
in_srv "$PY" "$PEERS/smtpd.py" --listen "$BLOCK:25" --listen "$PLAIN:25" \
	--out "$T_TMP/plain-out" --log "$T_TMP/plain.log" --mode plain >"$T_TMP/plain.stdout" 2>&1 &
T_PIDS+=($!); disown $!
wait_for 5 grep -q ready "$T_TMP/forge.stdout"
wait_for 5 grep -q ready "$T_TMP/plain.stdout"

# ---- rsyslogd: a private instance with deploy/rsyslog.conf ------------------
# Its socket is the /dev/log of starttlsd's private mount namespace.
fdev=$T_TMP/fakedev
RS=$T_TMP/rsyslog
LOGFILE=$T_TMP/starttlsd.log
mkdir -p "$fdev" "$RS"
sed "s|/var/log/starttlsd.log|$LOGFILE|" "$TOP/deploy/rsyslog.conf" >"$RS/30-starttlsd.conf"
ok "deploy/rsyslog.conf was used (its file name replaced)" grep -q "file=\"$LOGFILE\"" "$RS/30-starttlsd.conf"
cat >"$RS/rsyslog.conf" <<CONF
global(workDirectory="$RS")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="$fdev/log" RateLimit.Interval="0")
include(file="$RS/30-starttlsd.conf")
*.* action(type="omfile" file="$RS/other.log")
CONF
ok "rsyslogd -N1 accepts the configuration" rsyslogd -N1 -f "$RS/rsyslog.conf"
rsyslogd -n -f "$RS/rsyslog.conf" -i "$RS/pid" >"$RS/out" 2>&1 &
RS_PID=$!; T_PIDS+=($RS_PID); disown $RS_PID
ok "rsyslogd listens on the test socket" wait_for 5 test -S "$fdev/log"
: >"$LOGFILE"

# ---- mtail and Prometheus, on the gateway namespace's loopback ----------------
in_gw mtail --progs "$OPS" --logs "$LOGFILE" --address 127.0.0.1 --port 3903 \
	--poll_interval 100ms --poll_log_interval 100ms --logtostderr >"$T_TMP/mtail.log" 2>&1 &
T_PIDS+=($!); disown $!
MTAIL=http://127.0.0.1:3903
PROM=http://127.0.0.1:9090
mt() { in_gw $CHECK mtail "$MTAIL/metrics"; }
ok "mtail serves /metrics" wait_for 10 in_gw $CHECK mtail "$MTAIL/metrics"
cat >"$T_TMP/prometheus.yml" <<CONF
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: ["$OPS/starttlsd-rules.yml"]
scrape_configs:
  - job_name: starttlsd
    static_configs: [{targets: ["127.0.0.1:3903"]}]
CONF
ok "promtool check config" promtool check config "$T_TMP/prometheus.yml"
in_gw prometheus --config.file="$T_TMP/prometheus.yml" --storage.tsdb.path="$T_TMP/prom" \
	--web.listen-address=127.0.0.1:9090 --log.level=warn >"$T_TMP/prometheus.log" 2>&1 &
T_PIDS+=($!); disown $!

# ---- starttlsd, logging through rsyslogd ---------------------------------------
printf '# ops test policy\n%s encrypt\n' "$BLOCK" >"$T_TMP/policy"
CONF=$T_TMP/starttlsd.conf
cat >"$CONF" <<CONF
workers = 2
mode = enforce
policy_file = $T_TMP/policy
state_dir = $T_TMP/state
helo_name = gw.example.org
ca_file = $CERTS/ca.crt
# DANE and MTA-STS ask DNS, which no test may reach (94-dane tests them).
dane = off
mta_sts = off
CONF
# start_syslogged ARGS...: starttlsd in a mount namespace whose /dev/log is rsyslogd's.
start_syslogged() {
	ip netns exec "$NS_GW" unshare -m sh -c '
		fdev=$1; shift
		mount --make-rprivate / 2>/dev/null
		for d in null zero random urandom; do
			touch "$fdev/$d" && mount --bind "/dev/$d" "$fdev/$d" || exit 1
		done
		mount --bind "$fdev" /dev || exit 1
		exec "$@"' sh "$fdev" "$STARTTLSD" -f --log-stderr "$@" 2>>"$PROXY_LOG" &
}
# A daemon with its own metrics endpoint (issue 13, part 1) is compared with
# mtail below: the same names must give the same numbers.
NATIVE=
if "$STARTTLSD" --help 2>&1 | grep -q -- '--metrics-listen'; then
	NATIVE=http://127.0.0.1:9125
	echo "metrics_listen = 127.0.0.1:9125" >>"$CONF"
fi
start_syslogged -c "$CONF"
PROXY_PID=$!
T_PIDS+=($PROXY_PID)
ok "starttlsd started" wait_for "$PROXY_START_WAIT" grep -q "event=start" "$PROXY_LOG"
ok "its start line went through rsyslogd into the file" wait_for 5 grep -q 'starttlsd\[[0-9]*\]: event=start ' "$LOGFILE"

# The scenario; the counts it must give are checked below.
ok "upgraded session 1 (swaks)" cswaks
ok "upgraded session 2 (swaks)" cswaks
ok "upgraded session 3, to the server with the forging certificate" \
	in_cli swaks --server "$FORGE" --port 25 --helo client.example.org --from a@example.org --to b@example.net --timeout 20
# (Other recipient domains than example.net: that one is pinned by now.)
for n in 1 2; do
	in_cli swaks --server "$BLOCK" --port 25 --helo client.example.org --from a@example.org \
		--to b@blocked.example --timeout 20 >"$T_TMP/blocked$n.out" 2>&1
	ok "blocked session $n: TLS required by the policy, no STARTTLS: 421 4.7.0" grep -q '^<\*\* *421 4.7.0' "$T_TMP/blocked$n.out"
done
ok "plaintext session (no STARTTLS, no policy)" \
	in_cli swaks --server "$PLAIN" --port 25 --helo client.example.org --from a@example.org --to b@plain.example --timeout 20
# example.net got mail over TLS above: once its pin is stored, a recipient
# there through the plaintext server is a domain downgrade (blocked: 450).
ok "example.net is pinned" wait_for 10 bash -c "'$TOP/build/starttlsctl' --state-dir '$T_TMP/state' list | grep -q example.net"
in_cli swaks --server "$PLAIN" --port 25 --helo client.example.org --from a@example.org \
	--to b@example.net --timeout 20 >"$T_TMP/domain.out" 2>&1
ok "domain downgrade: the recipient gets 450 4.7.0" grep -q '^<\*\* *450 4.7.0' "$T_TMP/domain.out"
ok "SMTP smuggling refused (an attack line)" chat <<S
$CHAT_TO_DATA
>> Subject: smuggle\r\n\r\nbody\n.\nMAIL FROM:<evil@example.org>\r\n
< 554 5.5.2
eof
S
ok "eight session lines" wait_sessions 8
if [ -n "$NATIVE" ]; then
	SAME='^starttlsd_(sessions_total|messages_total|client_(received|sent)_bytes_total|tls_errors_total|downgrades_total|attacks_total|session_duration_seconds_count)[{]'
	nonzero() { grep -E "$SAME" | grep -v ' 0$' | sort; }
	ok "mtail has counted the eight sessions" wait_for 10 bash -c "ip netns exec $NS_GW $CHECK mtail $MTAIL/metrics | grep -qx 'starttlsd_log_lines_total{event=\"session\"} 8'"
	in_gw $CHECK mtail "$MTAIL/metrics" | nonzero >"$T_TMP/same.mtail"
	in_gw $CHECK mtail "$NATIVE/metrics" | nonzero >"$T_TMP/same.native"
	ok "the daemon's own metrics and mtail's agree, name for name and label for label" \
		diff -u "$T_TMP/same.native" "$T_TMP/same.mtail"
	ok "(and that comparison is not empty)" test "$(wc -l <"$T_TMP/same.mtail")" -ge 10
fi
victim=$(pgrep -P "$PROXY_PID" | head -1)
kill -9 "$victim"
ok "a worker killed: the master logs it and starts another" \
	wait_for 10 bash -c "grep -q 'event=worker action=exited pid=$victim .*expected=no' '$PROXY_LOG' && test \$(grep -c 'event=worker action=started' '$PROXY_LOG') -eq 3"
kill -HUP "$PROXY_PID"
ok "reload accepted" wait_for 10 bash -c "grep -q 'event=reload version=' '$PROXY_LOG'"
echo "data_timeout = bogus" >>"$CONF"
kill -HUP "$PROXY_PID"
ok "reload refused" wait_for 10 bash -c "grep -q 'event=reload msg=\"configuration refused' '$PROXY_LOG'"
# A second instance whose state_dir cannot be created: an event=pinstore line.
touch "$T_TMP/notadir"
start_syslogged --master off --listen 127.0.0.1:10099 --state-dir "$T_TMP/notadir/state" --ca-file "$CERTS/ca.crt"
P2=$!; T_PIDS+=($P2)
ok "second instance: pin store cannot open (logged)" wait_for 10 grep -q 'event=pinstore msg="cannot open' "$PROXY_LOG"
ok "second instance started" wait_for 10 bash -c "test \$(grep -c 'event=start ' '$PROXY_LOG') -eq 2"
kill -TERM "$P2"
ok "second instance stopped" wait_for 10 bash -c "! kill -0 $P2"
ok "main instance exits cleanly" proxy_stop

# ---- the lines as rsyslog wrote them ---------------------------------------------
ok "rsyslog file: RFC 3339 timestamps (RSYSLOG_FileFormat)" \
	grep -qE '^20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:.]+[+-][0-9:]+ [^ ]+ starttlsd\[[0-9]+\]: event=session ' "$LOGFILE"
ok "rsyslog file: every line of the stderr mirror, none other" \
	test "$(grep -c 'starttlsd\[[0-9]*\]: event=' "$LOGFILE")" -eq "$(grep -c ' starttlsd\[[0-9]*\]: event=' "$PROXY_LOG")"
ok "no starttlsd line went to the other file (the 'stop' of deploy/rsyslog.conf)" \
	bash -c "! grep -q starttlsd '$RS/other.log' 2>/dev/null"
forged=$(grep "dst=$FORGE:25" "$LOGFILE" | grep event=session)
ok "the forging subject is on its session line, quoted" grep -q 'peer_subject=".* action=blocked tls=none msgs=1000 bytes_up=77777" ' <<<"$forged"
ok "a naive ' msgs=' match would take the forged value (so the test can fail)" grep -q ' msgs=1000 ' <<<"$forged"

# ---- mtail's counters -------------------------------------------------------------------
nlines=$(grep -c 'starttlsd\[[0-9]*\]: event=' "$LOGFILE")
ok "mtail has read every line ($nlines)" wait_for 10 bash -c "ip netns exec $NS_GW $CHECK mtail $MTAIL/metrics | awk '/^starttlsd_log_lines_total/ {s+=\$2} END {exit s!=$nlines}'"
mt >"$T_TMP/mtail.got"
has() { grep -qxF "$1" "$T_TMP/mtail.got"; }
ok "sessions: upgraded over TLSv1.3 = 4 (3 swaks, 1 smuggling)" has 'starttlsd_sessions_total{action="upgraded",tls_version="TLSv1.3"} 4'
ok "sessions: blocked = 2" has 'starttlsd_sessions_total{action="blocked",tls_version="none"} 2'
ok "sessions: plaintext = 2" has 'starttlsd_sessions_total{action="plaintext",tls_version="none"} 2'
ok "sessions: nothing else (a forged action=blocked tls=none is not counted)" \
	test "$(grep -c '^starttlsd_sessions_total' "$T_TMP/mtail.got")" -eq 3
ok "messages: 3 over TLS (not 1000 from the forged subject)" has 'starttlsd_messages_total{action="upgraded",tls_version="TLSv1.3"} 3'
ok "messages: 1 in plaintext (none for the refused recipient)" has 'starttlsd_messages_total{action="plaintext",tls_version="none"} 1'
ok "tls errors: starttls-missing = 4 (2 blocked, 2 plaintext), nothing forged" \
	bash -c "grep -xF 'starttlsd_tls_errors_total{signal=\"starttls-missing\"} 4' '$T_TMP/mtail.got' && test \$(grep -c '^starttlsd_tls_errors_total' '$T_TMP/mtail.got') -eq 1"
ok "downgrades: 2 blocked starttls-missing" has 'starttlsd_downgrades_total{action="blocked",signal="starttls-missing",tlsrpt="starttls-not-supported"} 2'
ok "downgrades: 1 blocked domain-downgrade" has 'starttlsd_downgrades_total{action="blocked",signal="domain-downgrade",tlsrpt="starttls-not-supported"} 1'
ok "downgrades by destination: example.net = 1 (the domain, not the address)" has 'starttlsd_destination_downgrades_total{action="blocked",destination="example.net"} 1'
ok "downgrades by destination: nothing else but $BLOCK:25" test "$(grep -c '^starttlsd_destination_downgrades_total' "$T_TMP/mtail.got")" -eq 2
ok "downgrades by destination: $BLOCK:25 = 2" has "starttlsd_destination_downgrades_total{action=\"blocked\",destination=\"$BLOCK:25\"} 2"
ok "attacks: smtp-smuggling blocked = 1, no forged one" \
	bash -c "grep -xF 'starttlsd_attacks_total{action=\"blocked\",signal=\"smtp-smuggling\"} 1' '$T_TMP/mtail.got' && test \$(grep -c '^starttlsd_attacks_total' '$T_TMP/mtail.got') -eq 1"
ok "workers: 5 started (2, 1 restarted, 2 replacing them on reload)" has 'starttlsd_worker_starts_total{} 5'
ok "workers: 1 unexpected exit, 4 expected ones (2 on reload, 2 at the stop)" bash -c "grep -xF 'starttlsd_worker_exits_total{expected=\"no\"} 1' '$T_TMP/mtail.got' && grep -xF 'starttlsd_worker_exits_total{expected=\"yes\"} 4' '$T_TMP/mtail.got'"
# (The state_dir lines before it count as other: the start-up check's and
# the master's, two with a state_dir that is not a directory.)
ok "pin store: 1 open error, and the state_dir lines before it as other" bash -c "grep -xF 'starttlsd_pinstore_errors_total{op=\"open\"} 1' '$T_TMP/mtail.got' && grep -xF 'starttlsd_pinstore_errors_total{op=\"other\"} 2' '$T_TMP/mtail.got'"
ok "reloads: 1 success, 1 failure" bash -c "grep -xF 'starttlsd_config_reloads_total{result=\"success\"} 1' '$T_TMP/mtail.got' && grep -xF 'starttlsd_config_reloads_total{result=\"failure\"} 1' '$T_TMP/mtail.got'"
ok "starts: 2" has 'starttlsd_starts_total{} 2'
ok "session durations: 8 observed" \
	test "$(awk '/^starttlsd_session_duration_seconds_count/ {s+=$2} END {print s}' "$T_TMP/mtail.got")" -eq 8
$CHECK expect "$LOGFILE" >"$T_TMP/mtail.expect"
ok "every counter equals what an independent logfmt parser finds in the file" \
	diff -u "$T_TMP/mtail.expect" "$T_TMP/mtail.got"

# ---- Prometheus: alerts and the dashboard's queries ---------------------------------
ok "Prometheus is up and scraping mtail" wait_for 20 in_gw $CHECK query "$PROM" 'up{job="starttlsd"} == 1'
ok "Prometheus has the final counts" wait_for 10 in_gw $CHECK query "$PROM" 'starttlsd_sessions_total{action="upgraded"} == 4'
sleep 3  # a few more scrapes: rate() needs two samples of each series
for a in StarttlsdDowngradeBlocked StarttlsdAttackDefeated StarttlsdPinStoreFailing StarttlsdReloadRefused; do
	ok "the real Prometheus fires $a" wait_for 10 bash -c "ip netns exec $NS_GW $CHECK alerts $PROM | grep -q '^$a firing'"
done
not_ok "it does not fire StarttlsdWorkerCrashLoop (one crash)" bash -c "ip netns exec $NS_GW $CHECK alerts $PROM | grep -q '^StarttlsdWorkerCrashLoop'"
ok "every query of the Grafana dashboard returns data" in_gw $CHECK dashboard "$PROM" "$OPS/starttlsd-dashboard.json"
cp "$T_TMP/check.out" "$T_TMP/dashboard.out"
finish
