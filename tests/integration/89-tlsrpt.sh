#!/usr/bin/env bash
# TLS-RPT (RFC 8460): results recorded into the store as policyd records them
# (build/tlsrptq: PD_REPORT encoded, decoded, tlsrpt_record), shown with
# `starttlsctl tlsrpt show`, and sent with `starttlsctl tlsrpt send`
# (starttlsd-tlsrpt) from the gateway, in namespaces, no real DNS:
#   gw:  unbound on 192.0.2.1 serving the _smtp._tls TXT records and
#        mx.example.net (local-data; TLS-RPT needs no DNSSEC: the answers are
#        insecure, outside the test trust anchor); starttlsd-tlsrpt runs here
#   srv: an HTTPS collector on 198.51.100.25:8443 (tests/peers/
#        tlsrpt_collector.py, the test CA's mx.example.net certificate) and an
#        SMTP sink as the submission host on 198.51.100.25:587
#        (tests/peers/smtpd.py --mode plain, refusing *refused*)
# Each report received is checked against RFC 8460 4.4 and 5.3 by
# tests/peers/tlsrpt_check.py (JSON members and types, the day, the counts;
# gzip; the message's headers, MIME structure and attachment).
. "$(dirname "$0")/../lib/common.sh"

need_root
command -v unbound >/dev/null || [ -x /usr/sbin/unbound ] || skip "unbound not installed (tests/deps.sh)"
case $STARTTLSD in
*valgrind*) BIN=$(dirname "${VALGRIND_BIN:-$TOP/build/starttlsd}") ;;
*) BIN=$(dirname "$STARTTLSD") ;;
esac
for t in tlsrptq starttlsd-tlsrpt starttlsctl; do
	[ -x "$BIN/$t" ] || { say "no $BIN/$t (make all)"; not_ok "$t built" true; finish; }
done
VG=()
case $STARTTLSD in
*valgrind*) VG=(valgrind -q --error-exitcode=97 --leak-check=full
	--errors-for-leak-kinds=definite --log-file="$T_TMP/vg.%p.log") ;;
esac

ok "starttlsd-tlsrpt: libev linked statically (no libev.so)" bash -c "! ldd '$BIN/starttlsd-tlsrpt' | grep -q 'libev\.so'"
ok "starttlsd-tlsrpt: exports no event_* symbols" bash -c "! nm -D --defined-only '$BIN/starttlsd-tlsrpt' | grep -q ' event_'"
ok "the daemon links neither jansson nor zlib" bash -c "! ldd '$STARTTLSD' 2>/dev/null | grep -Eq 'libjansson|libz\.so'"

certs
STATE=$T_TMP/state
mkdir -p "$STATE"
chmod 700 "$STATE"
YDAY=$(date -u -d 'yesterday 12:00' +%F)
TODAY=$(date -u +%F)
STS=("version: STSv1" "mode: enforce" "mx: mx.example.net" "mx: *.mail.example.net" "max_age: 86400")
TLSA=("3 1 1 8CB0FC6C527506A053F4F14C8464BEBBD6DEDE2738D11468DD953D7D6A3021F1")
rec() { "${VG[@]}" "$BIN/tlsrptq" "$STATE" "$@"; }

# ---- record ----------------------------------------------------------------
ok "record: example.net sts, 7 successes" rec sts success example.net mx.example.net $SRV4 1 7 "${STS[@]}"
ok "record: example.net sts, 3 certificate-expired" rec sts certificate-expired example.net mx.example.net $SRV4 1 3 "${STS[@]}"
ok "record: example.com tlsa, 5 successes" rec tlsa success example.com mx.example.com 203.0.113.5 1 5 "${TLSA[@]}"
ok "record: example.com tlsa, tlsa-invalid from two addresses" bash -c "
	'$BIN/tlsrptq' '$STATE' tlsa tlsa-invalid example.com mx.example.com 203.0.113.5 1 1 '${TLSA[0]}' &&
	'$BIN/tlsrptq' '$STATE' tlsa tlsa-invalid example.com mx.example.com 2001:db8:5::5 1 1 '${TLSA[0]}'"
ok "record: example.org no-policy-found" rec no-policy-found starttls-not-supported example.org - - 1 1
for d in refused.example.com retry.example.net both.example.net bad.example.org two.example.org; do
	rec sts success $d mx.example.net $SRV4 1 2 "${STS[@]}"
done
ok "record: today's results (not due)" rec sts success example.net mx.example.net $SRV4 0 4 "${STS[@]}"
ok "the store is state_dir/tlsrpt.mdb" test -s "$STATE/tlsrpt.mdb"

# ---- show --------------------------------------------------------------------
# Through starttlsctl; under valgrind the program itself (memcheck does not follow the exec).
if [ ${#VG[@]} -gt 0 ]; then
	show() { "${VG[@]}" "$BIN/starttlsd-tlsrpt" --state-dir "$STATE" show "$@"; }
else
	show() { "$BIN/starttlsctl" --state-dir "$STATE" tlsrpt show "$@"; }
fi
show "$YDAY" >"$T_TMP/show.json" 2>"$T_TMP/show.err"
ok "show DAY: exit 0" test $? -eq 0
chk() { "$PY" "$PEERS/tlsrpt_check.py" "$@"; }
ok "show DAY: RFC 8460 JSON, example.net sts 7/3, one detail row" chk json "$T_TMP/show.json" domain=example.net type=sts success=7 failure=3 details=1
ok "show DAY: example.com tlsa 5/2, two detail rows" chk json "$T_TMP/show.json" domain=example.com type=tlsa success=5 failure=2 details=2
ok "show DAY: example.org no-policy-found 0/1" chk json "$T_TMP/show.json" domain=example.org type=no-policy-found success=0 failure=1
ok "show DAY: one report per domain (8)" test "$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$T_TMP/show.json")" -eq 8
ok "show DAY: sts mx-host from the policy's mx lines" grep -q '"\*.mail.example.net"' "$T_TMP/show.json"
ok "show DAY: the receiving address of a failure" grep -q '"receiving-ip": "2001:db8:5::5"' "$T_TMP/show.json"
show >"$T_TMP/today.json"
ok "show (today): today's count only" chk json "$T_TMP/today.json" domain=example.net success=4 failure=0
ok "show: a bad day is a usage error" bash -c "'$BIN/starttlsctl' --state-dir '$STATE' tlsrpt show 2026-02-30; test \$? -eq 2"
ok "show: an empty state_dir shows []" bash -c "d=\$(mktemp -d); chmod 700 \$d; out=\$('$BIN/starttlsctl' --state-dir \$d tlsrpt show); rm -rf \$d; test \"\$out\" = '[]'"

# Root (starttlsctl) opening the store of a state_dir the daemon's user owns
# leaves the files that user's, the lock file a read-only open makes too.
if id starttlsd >/dev/null 2>&1; then
	S2=$T_TMP/state2
	mkdir -p "$S2" && chmod 700 "$S2" && chown starttlsd: "$S2"
	"$BIN/tlsrptq" "$S2" tlsa success example.net - - 0 1
	rm -f "$S2/tlsrpt.mdb-lock"
	"$BIN/starttlsctl" --state-dir "$S2" tlsrpt show >/dev/null
	ok "store files stay the state_dir owner's (root wrote, root read)" \
		test "$(stat -c %U "$S2/tlsrpt.mdb" "$S2/tlsrpt.mdb-lock" | sort -u)" = starttlsd
fi

# ---- DNS, collector, submission host ----------------------------------------
topo_up
cat >"$T_TMP/unbound.conf" <<EOF
server:
	interface: $GWL4
	port: 53
	access-control: 192.0.2.0/24 allow
	username: ""
	chroot: ""
	directory: "$T_TMP"
	pidfile: ""
	use-syslog: no
	logfile: "$T_TMP/unbound.log"
	do-daemonize: no
	num-threads: 1
	so-reuseport: no
	module-config: "iterator"
	verbosity: 1
	local-zone: "example.net." static
	local-zone: "example.com." static
	local-zone: "example.org." static
	local-data: "mx.example.net. 300 IN A $SRV4"
	local-data: '_smtp._tls.example.net. 300 IN TXT "v=TLSRPTv1; rua=https://mx.example.net:8443/v1/tlsrpt"'
	local-data: '_smtp._tls.example.com. 300 IN TXT "v=TLSRPTv1;" "rua=mailto:tls-reports@example.com"'
	local-data: '_smtp._tls.example.com. 300 IN TXT "v=spf1 -all"'
	local-data: '_smtp._tls.refused.example.com. 300 IN TXT "v=TLSRPTv1; rua=mailto:nobody@refused.example.com"'
	local-data: '_smtp._tls.retry.example.net. 300 IN TXT "v=TLSRPTv1; rua=https://mx.example.net:8443/fail"'
	local-data: '_smtp._tls.both.example.net. 300 IN TXT "v=TLSRPTv1; rua=mailto:a@both.example.net, https://mx.example.net:8443/both"'
	local-data: '_smtp._tls.bad.example.org. 300 IN TXT "v=TLSRPTv1; rua=mailto:"'
	local-data: '_smtp._tls.two.example.org. 300 IN TXT "v=TLSRPTv1; rua=mailto:a@two.example.org"'
	local-data: '_smtp._tls.two.example.org. 300 IN TXT "v=TLSRPTv1; rua=mailto:b@two.example.org"'
EOF
in_gw unbound -d -c "$T_TMP/unbound.conf" >"$T_TMP/unbound.out" 2>&1 &
T_PIDS+=($!); disown $!
# A trust anchor for a name we never ask: every answer above is insecure (no DNSSEC needed).
echo "anchor.invalid. 3600 IN DS 12345 13 2 $(printf '%064d' 0)" >"$T_TMP/anchor.ds"

COL=$T_TMP/collector
in_srv "$PY" "$PEERS/tlsrpt_collector.py" --listen "$SRV4:8443" --cert "$CERTS/server.crt" \
	--key "$CERTS/server.key" --out "$COL" --status /fail=503 >"$T_TMP/col.out" 2>"$T_TMP/col.err" &
T_PIDS+=($!); disown $!
SUB=$T_TMP/submission
mkdir -p "$SUB"
in_srv "$PY" "$PEERS/smtpd.py" --listen "$SRV4:587" --mode plain --hostname submit.example.org \
	--out "$SUB" --log "$T_TMP/sub.log" --reject-rcpt refused >"$T_TMP/sub.out" 2>"$T_TMP/sub.err" &
T_PIDS+=($!); disown $!
ok "collector up" wait_for 10 grep -q ready "$T_TMP/col.out"
ok "submission sink up" wait_for 10 grep -q ready "$T_TMP/sub.out"
ok "unbound up" wait_for 10 bash -c "ip netns exec $NS_GW ss -lun | grep -q '$GWL4:53'"

SEND=(--resolver $GWL4 --trust-anchor "$T_TMP/anchor.ds" --ca-file "$CERTS/ca.crt"
	--org "Example Gateway" --contact tlsrpt-contact@gw.example.org
	--submission "$SRV4:587" --from tlsrpt@gw.example.org --timeout 5000)
# Through starttlsctl; under valgrind the program itself (memcheck does not follow the exec).
if [ ${#VG[@]} -gt 0 ]; then
	send() { in_gw "${VG[@]}" "$BIN/starttlsd-tlsrpt" --state-dir "$STATE" send "${SEND[@]}" "$@"; }
else
	send() { in_gw "$BIN/starttlsctl" --state-dir "$STATE" tlsrpt send "${SEND[@]}" "$@"; }
fi

# ---- send #1 ----------------------------------------------------------------------
send >"$T_TMP/send1.out" 2>"$T_TMP/send1.err"
rc=$?
ok "send: exit 1 (some reports could not be sent)" test $rc -eq 1
line() { grep -E "^$YDAY $1 " "$T_TMP/$2"; }
ok "send: example.com sent by mail" bash -c "grep -Eq '^$YDAY example.com sent id=<$YDAY\.example\.com\.[0-9a-f]{16}@gw\.example\.org> to mailto:tls-reports@example.com$' '$T_TMP/send1.out'"
ok "send: example.org skipped (no record)" bash -c "grep -q '^$YDAY example.org skipped: _smtp._tls.example.org: no TLSRPTv1 record' '$T_TMP/send1.out'"
ok "send: bad rua skipped" bash -c "grep -q '^$YDAY bad.example.org skipped: .*rua: mailto:: not a valid URI' '$T_TMP/send1.out'"
ok "send: two TLSRPT records skipped" bash -c "grep -q '^$YDAY two.example.org skipped: .*2 TLSRPTv1 records' '$T_TMP/send1.out'"
ok "send: refused recipient: failed, the server's reply" bash -c "grep -Eq '^$YDAY refused.example.com failed .*550' '$T_TMP/send1.out'"
ok "send: today's results not sent (not due)" bash -c "! grep -q '^$TODAY' '$T_TMP/send1.out'"
ok "send: one line per due report (8)" test "$(grep -c "^$YDAY " "$T_TMP/send1.out")" -eq 8

# the mail
ok "submission: 2 messages (example.com, both.example.net)" wait_for 5 test "$(ls "$SUB"/msg-*.json 2>/dev/null | wc -l)" -eq 2
mfor() { grep -l "\"$1\"" "$SUB"/msg-*.json | head -1 | sed 's/\.json$/.eml/'; }
EML=$(mfor tls-reports@example.com)
ok "mail: envelope from tlsrpt@gw.example.org" grep -q '"mail_from": "tlsrpt@gw.example.org"' "${EML%.eml}.json"
ok "mail: RFC 8460 5.3 message, report for example.com tlsa 5/2" chk eml "$EML" domain=example.com submitter=gw.example.org type=tlsa success=5 failure=2 details=2 org="Example Gateway" contact=tlsrpt-contact@gw.example.org
ok "mail: TLS-Required: No" grep -q '^TLS-Required: No' "$EML"
EID=$(chk eml "$EML" | sed -n 's/^ok //p')
ok "mail: report-id as in the send line" grep -q "example.com sent id=<$EID>" "$T_TMP/send1.out"
ok "mail: refused recipient got nothing" bash -c "! grep -l refused '$SUB'/msg-*.json"

# https
pfor() { grep -l "\"path\": \"$1\"" "$COL"/post-*.json 2>/dev/null | head -1; }
ok "https: example.net sent" bash -c "grep -q '^$YDAY example.net sent id=<.*> to https://mx.example.net:8443/v1/tlsrpt$' '$T_TMP/send1.out'"
P=$(pfor /v1/tlsrpt)
ok "https: one POST to /v1/tlsrpt" test -n "$P"
ok "https: Content-Type application/tlsrpt+gzip" grep -q '"content_type": "application/tlsrpt+gzip"' "$P"
ok "https: POST method" grep -q '"method": "POST"' "$P"
ok "https: gzip body, RFC 8460 JSON, example.net sts 7/3" chk gz "${P%.json}.body" domain=example.net type=sts success=7 failure=3 details=1
ok "https: 503 is a failure, said so" bash -c "grep -q '^$YDAY retry.example.net failed .*HTTP 503' '$T_TMP/send1.out'"
ok "both: mail and POST sent" bash -c "grep '^$YDAY both.example.net sent ' '$T_TMP/send1.out' | grep 'mailto:a@both.example.net' | grep -q 'https://mx.example.net:8443/both'"
BM=$(mfor a@both.example.net)
BP=$(pfor /both)
ok "both: the same report-id by mail and by POST" test "$(chk eml "$BM" | sed -n 's/^ok //p')" = "$(chk gz "${BP%.json}.body" | sed -n 's/^ok //p')"

# ---- send #2: what was sent is not sent again; failures are retried ----------------
nmsg=$(ls "$SUB"/msg-*.json | wc -l)
npost=$(ls "$COL"/post-*.json 2>/dev/null | wc -l)
send >"$T_TMP/send2.out" 2>"$T_TMP/send2.err"
ok "send again: exit 1 (the failures again)" test $? -eq 1
ok "send again: example.com not sent twice" bash -c "! grep -q 'example.com sent' '$T_TMP/send2.out' && test \$(ls '$SUB'/msg-*.json | wc -l) -eq $nmsg"
ok "send again: skipped ones not looked up again" bash -c "! grep -q 'skipped' '$T_TMP/send2.out'"
ok "send again: refused retried (the sink saw a second RCPT)" test "$(grep -c 'RCPT TO:<nobody@refused.example.com>' "$T_TMP/sub.log")" -eq 2
ok "send again: the attempts counted" grep -q "^$YDAY refused.example.com failed .*attempt 2" "$T_TMP/send2.out"
ok "send again: only the 503 collector POSTed again" test "$(ls "$COL"/post-*.json | wc -l)" -eq $((npost + 1))
show "$YDAY" >"$T_TMP/show2.json"
ok "show after send: the report-id that was sent" grep -q "\"report-id\": \"$EID\"" "$T_TMP/show2.json"
ok "send --day today: refused (not over)" bash -c "'$BIN/starttlsctl' --state-dir '$STATE' tlsrpt send --day $TODAY; test \$? -eq 2"
out=$(in_gw "$BIN/starttlsd-tlsrpt" --state-dir "$STATE" "${SEND[@]}" send --day "$(date -u -d '3 days ago' +%F)")
ok "send --day: only that day (nothing recorded 3 days ago)" test -z "$out"

# ---- one send at a time -----------------------------------------------------------------
flock "$STATE/tlsrpt.send.lock" sleep 3 &
sleep 0.5
in_gw "$BIN/starttlsd-tlsrpt" --state-dir "$STATE" "${SEND[@]}" send >"$T_TMP/send-locked.out" 2>&1
ok "a second send while one runs: exit 1, says so" bash -c "test $? -eq 1 && grep -q 'another send is running' '$T_TMP/send-locked.out'"
wait

# ---- a DNS failure is retried, not "no record" ---------------------------------------
ok "record: a domain whose lookup fails" rec sts success dnsfail.example.net mx.example.net $SRV4 1 1 "${STS[@]}"
in_gw "$BIN/starttlsd-tlsrpt" --state-dir "$STATE" --resolver 192.0.2.77 --trust-anchor "$T_TMP/anchor.ds" \
	--timeout 1000 send --day "$YDAY" >"$T_TMP/send3.out" 2>&1
ok "unreachable resolver: failed, not skipped" bash -c "grep -q '^$YDAY dnsfail.example.net failed: _smtp._tls.dnsfail.example.net: error' '$T_TMP/send3.out'"

if [ ${#VG[@]} -gt 0 ]; then
	ok "valgrind: no reports" bash -c "! grep -l . '$T_TMP'/vg.*.log 2>/dev/null"
fi
[ "$T_FAIL" -gt 0 ] && cat "$T_TMP/send1.out" "$T_TMP/send1.err" >&2
finish
