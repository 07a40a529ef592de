#!/usr/bin/env bash
# proxy/resolver.c (libunbound, validating locally, async in libev) against
# real DNS servers in namespaces, no real DNS anywhere:
#   srv: nsd on 198.51.100.53 serving a private "example." tree signed here
#        with ldns-keygen/ldns-signzone (ldnsutils: tools only, never linked)
#   gw:  unbound on 192.0.2.1, a plain forwarder WITHOUT validation
#        (module-config "iterator"): tampered data passes it untouched, and it
#        never sets AD, so every verdict below is our own validation's
#   cli: build/dnsq (tests/dnsq.c) forwarding to gw, trust anchor = DS of example.
# Zones: secure.example (signed, DS in the parent), insecure.example (no DS),
# bogus.example (TLSA rdata edited after signing), expired.example (RRSIGs
# expired in 2020), broken.example (delegated to a server that does not serve
# it: nothing listens at its server's address, SERVFAIL). build/pdq forks the
# policy process (policyd_main) and asks it the same questions. In the
# valgrind pass both tools run under memcheck: static libev beside libunbound
# must leave the heap clean (docs/dane.md).
. "$(dirname "$0")/../lib/common.sh"

need_root
for t in nsd unbound ldns-keygen ldns-signzone; do
	command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || skip "$t not installed (tests/deps.sh)"
done
# The tool built beside the binary under test (build/ or build/san/).
case $STARTTLSD in
*valgrind*) DNSQ=$(dirname "${VALGRIND_BIN:-$TOP/build/starttlsd}")/dnsq ;;
*) DNSQ=$(dirname "$STARTTLSD")/dnsq ;;
esac
[ -x "$DNSQ" ] || { say "no $DNSQ (make all)"; not_ok "dnsq built" true; finish; }
# The valgrind pass (make valgrind) runs the tools themselves under memcheck:
# libunbound's thread, static libev, policyd's fork; any report fails.
VG=()
case $STARTTLSD in
*valgrind*) VG=(valgrind -q --error-exitcode=97 --leak-check=full
	--errors-for-leak-kinds=definite --log-file="$T_TMP/vg.%p.log") ;;
esac

# The link that keeps libunbound off libev's libevent look-alikes (Makefile EV_STATIC):
# libev.so not loaded, no event_* exported for libunbound to bind to.
ok "dnsq: libev linked statically (no libev.so)" bash -c "! ldd '$DNSQ' | grep -q 'libev\.so'"
ok "dnsq: exports no event_* symbols" bash -c "! nm -D --defined-only '$DNSQ' | grep -q ' event_'"
ok "dnsq: libunbound and the real libevent loaded" bash -c "ldd '$DNSQ' | grep -q libunbound && ldd '$DNSQ' | grep -q libevent-2"

NS4=198.51.100.53
NS4_DEAD=198.51.100.54   # on srv, but nothing listens: port unreachable
Z=$T_TMP/zones
mkdir -p "$Z"

# ---- zones -----------------------------------------------------------------
TLSA_HASH=8cb0fc6c527506a053f4f14c8464bebbd6dede2738d11468dd953d7d6a3021f1
zone() { # NAME BODY: a zone file with SOA and NS
	cat >"$Z/$1.zone" <<-EOF
	\$ORIGIN $1.
	\$TTL 300
	@ IN SOA ns.example. hostmaster.example. 1 3600 600 86400 300
	@ IN NS ns.example.
	$2
	EOF
}
key() { # NAME: one ECDSA P-256 key with the SEP flag (signs everything); prints its base name
	(cd "$Z" && ldns-keygen -a ECDSAP256SHA256 -k "$1")
}
leaf="mx IN A $SRV4
mx IN AAAA $SRV6
@ IN MX 10 mx
_25._tcp.mx IN TLSA 3 1 1 $TLSA_HASH
_25._tcp.mx IN TLSA 0 0 1 $TLSA_HASH
nodane IN A $SRV4
mixed IN MX 10 mx
mixed IN MX 20 nodane
cname IN MX 10 alias
alias IN CNAME mx"
for z in secure insecure bogus expired; do zone "$z.example" "$leaf"; done
for z in secure bogus expired; do
	k=$(key "$z.example") || { not_ok "ldns-keygen $z" true; finish; }
	case $z in
	expired) (cd "$Z" && ldns-signzone -i 20191201000000 -e 20200101000000 "$z.example.zone" "$k") ;;
	*) (cd "$Z" && ldns-signzone "$z.example.zone" "$k") ;;
	esac || { not_ok "ldns-signzone $z" true; finish; }
	cat "$Z/$k.ds" >>"$Z/parent.ds"
done
# MTA-STS for the unsigned zone (DANE none there): its TXT and mta-sts host.
STS4=198.51.100.80 STS4_SLOW=198.51.100.81
printf '_mta-sts IN TXT "v=STSv1; id=sts1"\nmta-sts IN A %s\n' $STS4 >>"$Z/insecure.example.zone"
# slow.insecure.example: its policy server never answers
printf 'slow IN MX 10 mx\n_mta-sts.slow IN TXT "v=STSv1; id=slow1"\nmta-sts.slow IN A %s\n' $STS4_SLOW >>"$Z/insecure.example.zone"
cp "$Z/insecure.example.zone" "$Z/insecure.example.zone.signed"
# bogus: one hex digit of the signed TLSA rdata changed, RRSIG kept
sed -i -E '/IN[[:space:]]+TLSA[[:space:]]+3 1 1/s/8cb0fc6c/9cb0fc6c/' "$Z/bogus.example.zone.signed"
ok "bogus.example: TLSA edited after signing" grep -q 9cb0fc6c "$Z/bogus.example.zone.signed"

zone example "ns IN A $NS4
secure IN NS ns.example.
insecure IN NS ns.example.
bogus IN NS ns.example.
expired IN NS ns.example.
broken IN NS ns2.example.
ns2 IN A $NS4_DEAD
$(cat "$Z/parent.ds")"
kp=$(key example) && (cd "$Z" && ldns-signzone example.zone "$kp") ||
	{ not_ok "sign example." true; finish; }
cp "$Z/$kp.ds" "$Z/root-anchor.ds"   # our trust anchor: DS of example.
ok "trust anchor is a DS of example." grep -Eq '^example\.[[:space:]]+[0-9]*[[:space:]]*IN[[:space:]]+DS' "$Z/root-anchor.ds"

# ---- servers ---------------------------------------------------------------
topo_up
ip -n "$NS_SRV" addr add $NS4/24 dev wan0
ip -n "$NS_SRV" addr add $NS4_DEAD/24 dev wan0
ip -n "$NS_SRV" addr add $STS4/24 dev wan0
ip -n "$NS_SRV" addr add $STS4_SLOW/24 dev wan0

cat >"$T_TMP/nsd.conf" <<EOF
server:
	ip-address: $NS4
	port: 53
	username: ""
	chroot: ""
	zonesdir: "$Z"
	pidfile: "$T_TMP/nsd.pid"
	database: ""
	zonelistfile: "$T_TMP/nsd.zonelist"
	xfrdfile: "$T_TMP/nsd.xfrd"
	xfrdir: "$T_TMP"
	logfile: "$T_TMP/nsd.log"
	server-count: 1
	verbosity: 1
remote-control:
	control-enable: no
EOF
for z in example secure.example insecure.example bogus.example expired.example; do
	printf 'zone:\n\tname: "%s."\n\tzonefile: "%s.zone.signed"\n' "$z" "$z" >>"$T_TMP/nsd.conf"
done
in_srv nsd -d -c "$T_TMP/nsd.conf" >"$T_TMP/nsd.out" 2>&1 &
T_PIDS+=($!); disown $!

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
	qname-minimisation: no
	verbosity: 1
stub-zone:
	name: "example."
	stub-addr: $NS4
EOF
in_gw unbound -d -c "$T_TMP/unbound.conf" >"$T_TMP/unbound.out" 2>&1 &
T_PIDS+=($!); disown $!

dnsq() { in_cli "${VG[@]}" "$DNSQ" -a "$Z/root-anchor.ds" -f $GWL4 "${DNSQ_ARGS[@]}"; }
# Both servers up: the forwarder answers for the signed apex.
ready() { in_cli "$DNSQ" -a "$Z/root-anchor.ds" -f $GWL4 -T 2000 A ns.example | grep -q 'status=secure'; }
ok "nsd and unbound answer (secure ns.example)" wait_for 15 ready
ready || { cat "$T_TMP/nsd.out" "$T_TMP/unbound.out" >&2; finish; }

# ---- the main batch: every query in flight at once, one loop -----------------
out=$T_TMP/batch.out
DNSQ_ARGS=(-x cancelled.secure.example
	TLSA mx.secure.example  MX secure.example  A mx.secure.example  AAAA mx.secure.example
	TLSA nodane.secure.example  TLSA mx.insecure.example  MX insecure.example
	TLSA mx.bogus.example  A mx.bogus.example  A mx.expired.example  TLSA mx.expired.example
	TLSA mx.broken.example)
dnsq >"$out" 2>"$T_TMP/batch.err"
ok "dnsq: one answer per query, none for the cancelled one" test $? -eq 0
line() { grep -E "^$1 $2 " "$out"; }
has() { line "$1" "$2" | grep -Eq -- "$3"; }
ok "secure TLSA: secure, both records returned" has _25._tcp.mx.secure.example TLSA "status=secure rcode=0 nrr=2"
ok "secure TLSA: the 3 1 1 data" has _25._tcp.mx.secure.example TLSA "rr=\"3 1 1 $TLSA_HASH\""
ok "secure TLSA: usage 0 dropped by dane_rrset_parse" has _25._tcp.mx.secure.example TLSA "parse=ok usable=1"
ok "secure MX" has secure.example MX 'status=secure .*rr="10 mx.secure.example"'
ok "secure A" has mx.secure.example A "status=secure .*rr=\"$SRV4\""
ok "secure AAAA" has mx.secure.example AAAA "status=secure .*rr=\"$SRV6\""
ok "secure denial of TLSA (NXDOMAIN, no records)" has _25._tcp.nodane.secure.example TLSA "status=secure rcode=3 nrr=0"
ok "insecure zone: TLSA data, but insecure" has _25._tcp.mx.insecure.example TLSA "status=insecure rcode=0 nrr=2"
ok "insecure zone: MX insecure" has insecure.example MX 'status=insecure .*rr="10 mx.insecure.example"'
ok "tampered TLSA: bogus, no data handed out" has _25._tcp.mx.bogus.example TLSA "status=bogus .*nrr=0 why="
ok "untampered A in the same zone: secure" has mx.bogus.example A "status=secure"
ok "expired signatures: bogus" has mx.expired.example A "status=bogus .*nrr=0"
ok "expired signatures: why says so" has mx.expired.example A 'why="[^"]*expired'
ok "expired signatures: TLSA bogus too" has _25._tcp.mx.expired.example TLSA "status=bogus"
ok "SERVFAIL: error" has _25._tcp.mx.broken.example TLSA "status=error rcode=2"
ok "nothing for the cancelled query" bash -c "! grep -q cancelled '$out'"
ok "12 answers" test "$(wc -l <"$out")" -eq 12
[ "$T_FAIL" -gt 0 ] && { cat "$out" "$T_TMP/batch.err" >&2; }

# ---- the policy process (build/pdq forks policyd_main like the master will) ----------
PDQ=$(dirname "$DNSQ")/pdq
pout=$T_TMP/pdq.out
PDQ_ARGS=(-m TLSA mx.secure.example MX secure.example A mx.secure.example
	TLSA mx.insecure.example TLSA mx.bogus.example TLSA mx.broken.example)
in_cli "${VG[@]}" "$PDQ" -a "$Z/root-anchor.ds" -f $GWL4 "${PDQ_ARGS[@]}" >"$pout" 2>"$T_TMP/pdq.err"
ok "policyd: every question answered, malformed client dropped, exit 0" test $? -eq 0
pcount() { grep -Ec -- "$1" "$pout"; }
ok "policyd: secure TLSA, asked twice at once, answered twice" test "$(pcount '^1 mx.secure.example TLSA status=secure nrr=2 .*parse=ok usable=1')" -eq 2
ok "policyd: secure MX and A" test "$(pcount '^1 (secure.example MX|mx.secure.example A) status=secure nrr=1')" -eq 4
ok "policyd: insecure TLSA" grep -Eq '^1 mx.insecure.example TLSA status=insecure nrr=2' "$pout"
ok "policyd: bogus TLSA, kept only PD_TTL_FAIL (10 s)" grep -Eq '^1 mx.bogus.example TLSA status=bogus nrr=0 ttl=10 ' "$pout"
ok "policyd: SERVFAIL is error" grep -Eq '^1 mx.broken.example TLSA status=error nrr=0 ttl=10 ' "$pout"
ok "policyd: round 2 all from the cache" test "$(pcount '^2 .* cached=1')" -eq 6
ok "policyd: cached TTL within the record's 300 s" bash -c "grep -E '^2 mx.secure.example TLSA' '$pout' | grep -Eq 'ttl=(2[0-9][0-9]|300) '"
ok "policyd: malformed request drops that client only" grep -q '^malformed: dropped' "$pout"
ok "policyd: the first client still served" test "$(pcount '^3 .* cached=1')" -eq 6
ok "policyd: exits when the master's socket closes" grep -q '^policyd: exit 0' "$pout"
ok "policyd: logs the malformed request" grep -q 'malformed request' "$T_TMP/pdq.err"
# 6 questions, each asked 4 times (twice at once, then twice more later): one lookup each.
ok "policyd: one lookup per question (flights shared, then the cache)" grep -q 'msg="exiting (6 questions asked, 0 answers dropped, 0 policies computed, 0 reports)"' "$T_TMP/pdq.err"
[ "$T_FAIL" -gt 0 ] && { cat "$pout" "$T_TMP/pdq.err" >&2; }

# ---- domain policies: PD_POLICY, PD_ADDR, PD_REPORT (pdq -P) ------------------------
# 203.0.113.99 is in no MX's addresses. Round 0: ADDR before anything is
# learned; rounds 1 and 2: POLICY (twice at once, then cached); round 3: ADDR
# after learning.
qout=$T_TMP/pdq-pol.out
mkdir -p "$T_TMP/state"
in_cli "${VG[@]}" "$PDQ" -P -R "$T_TMP/state" -a "$Z/root-anchor.ds" -f $GWL4 \
	POLICY secure.example $SRV4  POLICY nodane.secure.example $SRV4 \
	POLICY insecure.example $SRV4  POLICY bogus.example $SRV4 \
	POLICY broken.example $SRV4  POLICY secure.example 203.0.113.99 \
	POLICY mixed.secure.example 203.0.113.99  POLICY cname.secure.example $SRV6 \
	ADDR $SRV4  ADDR $SRV6  ADDR 203.0.113.99 >"$qout" 2>"$T_TMP/pdq-pol.err"
ok "policy: every question answered, exit 0" test $? -eq 0
pl() { grep -E "^$1 $2 " "$qout"; }
phas() { pl "$1" "$2" | grep -Eq -- "$3"; }
phas2() { test "$(pl "$1" "$2" | grep -Ec -- "$3")" -eq 2; }
ok "policy: secure MX, host and usable TLSA: match, twice, one host with both records" \
	phas2 1 "POLICY secure.example $SRV4" "dane=match result=success ttl=(2[0-9][0-9]|300) cached=0 any_mx=0 mx=mx.secure.example sni=- sts=none nhosts=1 host=mx.secure.example/mx.secure.example/2/ok why=\"\"$"
ok "policy: secure NODATA TLSA (implicit MX): none" \
	phas 1 "POLICY nodane.secure.example $SRV4" "dane=none .* mx=nodane.secure.example .*nhosts=0 why=\"\"$"
ok "policy: insecure zone: none" \
	phas 1 "POLICY insecure.example $SRV4" "dane=none .* mx=mx.insecure.example .*nhosts=0"
ok "policy: bogus TLSA: tempfail dnssec-invalid, 10 s" \
	phas 1 "POLICY bogus.example $SRV4" 'dane=tempfail result=dnssec-invalid ttl=10 .*mx=mx.bogus.example .*nhosts=0 why="TLSA _25._tcp.mx.bogus.example: bogus: '
ok "policy: SERVFAIL: tempfail dnssec-invalid naming the MX query" \
	phas 1 "POLICY broken.example $SRV4" 'dane=tempfail result=dnssec-invalid ttl=10 .*why="MX broken.example: error'
ok "policy: address in no MX, every MX with usable TLSA: match any_mx" \
	phas 1 "POLICY secure.example 203.0.113.99" "dane=match .*any_mx=1 mx=- .*nhosts=1 host=mx.secure.example/mx.secure.example/2/ok"
ok "policy: address in no MX, mixed MX set: unknown" \
	phas 1 "POLICY mixed.secure.example 203.0.113.99" 'dane=unknown .*nhosts=0 why="address 203.0.113.99 in no MX of mixed.secure.example; 1 of 2 MX hosts have DANE"'
ok "policy: MX host behind a secure CNAME: TLSA at the canonical name" \
	phas 1 "POLICY cname.secure.example $SRV6" "dane=match .*mx=alias.secure.example .*host=alias.secure.example/mx.secure.example/2/ok"
ok "policy: round 2 all from the cache" test "$(grep -Ec '^2 POLICY .* cached=1 ' "$qout")" -eq 8
ok "policy: a cached tempfail keeps its 10 s" phas 2 "POLICY bogus.example $SRV4" "dane=tempfail .*ttl=(10|[1-9]) cached=1"
ok "addr: nothing learned yet: none" test "$(grep -Ec '^0 ADDR .*dane=none .*mx=- sni=- sts=none nhosts=0' "$qout")" -eq 3
ok "addr: a match whose chain failed teaches the SNI only (the TLSA base domain)" \
	phas 3 "ADDR $SRV4" "dane=none .*mx=mx.secure.example sni=mx.secure.example .*nhosts=0"
ok "addr: a match reported met: match, sni = the canonical name behind a CNAME (RFC 7672 8.1), the TLSA records" \
	phas 3 "ADDR $SRV6" "dane=match .*mx=alias.secure.example sni=mx.secure.example .*nhosts=1 host=alias.secure.example/mx.secure.example/2/ok"
ok "addr: an any_mx match teaches nothing" phas 3 "ADDR 203.0.113.99" "dane=none .*sni=- "
ok "policy: the report is taken, not answered" grep -q '^report: sent' "$qout"
ok "tlsrpt: the report recorded with the TLSA records in force as policy strings" \
	grep -Eq "^tlsrpt secure.example tlsa success=0 failure=1 strings=2 string=\"0 0 1 $TLSA_HASH\" string=\"3 1 1 $TLSA_HASH\" detail=certificate-host-mismatch/-$" "$qout"
ok "policy: one computation per question (flights shared, then the cache), one report" \
	grep -Eq 'msg="exiting \([0-9]+ questions asked, 0 answers dropped, 8 policies computed, 2 reports\)"' "$T_TMP/pdq-pol.err"
ok "policy: a tempfail is logged" grep -q 'POLICY bogus.example 198.51.100.25: tempfail: TLSA' "$T_TMP/pdq-pol.err"
[ "$T_FAIL" -gt 0 ] && { cat "$qout" "$T_TMP/pdq-pol.err" >&2; }
# A restart keeps what was learned (state_dir/policyd.mdb): a new policyd
# answers PD_ADDR from it before any PD_POLICY.
in_cli "$PDQ" -P -a "$Z/root-anchor.ds" -f $GWL4 -R "$T_TMP/state" ADDR $SRV4 ADDR $SRV6 ADDR 203.0.113.99 \
	>"$T_TMP/pdq-restart.out" 2>"$T_TMP/pdq-restart.err"
ok "addr: learned addresses kept across a restart (LMDB)" \
	grep -Eq "^0 ADDR $SRV4 dane=none .*mx=mx.secure.example sni=mx.secure.example " "$T_TMP/pdq-restart.out"
ok "addr: a learned DANE RRset kept across a restart" \
	grep -Eq "^0 ADDR $SRV6 dane=match .*sni=mx.secure.example .*host=alias.secure.example/mx.secure.example/2/ok" "$T_TMP/pdq-restart.out"
ok "addr: after a restart, still nothing for an address never learned" \
	grep -Eq "^0 ADDR 203.0.113.99 dane=none .*sni=- " "$T_TMP/pdq-restart.out"
ok "addr: the load is logged" grep -Eq 'msg="learned addresses: 2 loaded from .*/policyd.mdb, 0 expired"' "$T_TMP/pdq-restart.err"
# MTA-STS (stsfetch.c): insecure.example has no DANE, an enforce policy at
# https://mta-sts.insecure.example:8443 (tests/peers/httpsd.py, test CA).
C=$T_TMP/certs
bash "$PEERS/mkstscerts.sh" "$C" mta-sts.insecure.example mta-sts.slow.insecure.example >"$T_TMP/mkcerts.out" 2>&1
printf 'version: STSv1\nmode: enforce\nmx: mx.insecure.example\nmx: *.mx.insecure.example\nmax_age: 86400\n' >"$T_TMP/sts.txt"
in_srv "$PY" "$PEERS/httpsd.py" --listen "$STS4:8443" --cert "$C/good.crt" --key "$C/good.key" \
	--file "$T_TMP/sts.txt" --log "$T_TMP/sts-req.log" >"$T_TMP/httpsd.out" 2>&1 &
T_PIDS+=($!); disown $!
in_srv "$PY" "$PEERS/httpsd.py" --listen "$STS4_SLOW:8443" --cert "$C/good.crt" --key "$C/good.key" \
	--mode slow --file "$T_TMP/sts.txt" >"$T_TMP/httpsd-slow.out" 2>&1 &
T_PIDS+=($!); disown $!
wait_for 10 grep -q ready "$T_TMP/httpsd.out"
wait_for 10 grep -q ready "$T_TMP/httpsd-slow.out"
sout=$T_TMP/pdq-sts.out
in_cli "${VG[@]}" "$PDQ" -P -S "$C/ca.crt" -p 8443 -w 1000 -a "$Z/root-anchor.ds" -f $GWL4 \
	POLICY insecure.example $SRV4 POLICY slow.insecure.example $SRV4 ADDR $SRV4 >"$sout" 2>"$T_TMP/pdq-sts.err"
ok "sts: every question answered, exit 0" test $? -eq 0
ok "sts: a policy server that never answers: sts=none after sts_wait_ms, cached 60 s at most" \
	test "$(grep -Ec "^1 POLICY slow.insecure.example $SRV4 dane=none result=success ttl=(60|[1-5][0-9]) .*sts=none nhosts=0 why" "$sout")" -eq 2
ok "sts: no DANE, an enforce policy: sts=enforce with its id, max_age and patterns, twice" \
	test "$(grep -Ec "^1 POLICY insecure.example $SRV4 dane=none .*mx=mx.insecure.example .*sts=enforce nhosts=0 sts_id=sts1 max_age=86400 mx_pattern=mx.insecure.example mx_pattern=\*.mx.insecure.example why" "$sout")" -eq 2
ok "sts: fetched once" test "$(wc -l <"$T_TMP/sts-req.log")" -eq 1
ok "sts: cached" grep -Eq "^2 POLICY insecure.example .*cached=1 .*sts=enforce" "$sout"
ok "addr: learned from an enforce policy whose pattern covers the MX: sts=enforce, sni = the MX name" \
	grep -Eq "^3 ADDR $SRV4 dane=none .*mx=mx.insecure.example sni=mx.insecure.example sts=enforce .*mx_pattern=mx.insecure.example" "$sout"
[ "$T_FAIL" -gt 0 ] && { cat "$sout" "$T_TMP/pdq-sts.err" "$T_TMP/httpsd.out" >&2; }
# A forwarder that never answers: TEMPFAIL "timeout" within the resolver's timeout.
ok "policy: silent forwarder: tempfail timeout" bash -c "ip netns exec $NS_CLI '$PDQ' -P -a '$Z/root-anchor.ds' -f 192.0.2.77 -T 800 POLICY secure.example $SRV4 | grep -Eq '^1 POLICY secure.example .*dane=tempfail result=dnssec-invalid ttl=10 .*why=\"[^\"]*timeout\"'"
# dane off: every answer none, no DNS.
ok "policy: dane off: none" bash -c "ip netns exec $NS_CLI '$PDQ' -P -n -a '$Z/root-anchor.ds' -f $GWL4 POLICY secure.example $SRV4 | grep -Eq '^1 POLICY secure.example .*dane=none .*nhosts=0'"

# ---- failures of our own ---------------------------------------------------------
# A forwarder that never answers: the query's own timer answers "error", once.
ok "silent forwarder: error=timeout" bash -c "ip netns exec $NS_CLI '$DNSQ' -a '$Z/root-anchor.ds' -f 192.0.2.77 -T 800 TLSA mx.secure.example | grep -q 'status=error rcode=-1 nrr=0 why=\"timeout\"'"
# A trust anchor that cannot be read is refused up front, never "insecure".
in_cli "$DNSQ" -a "$T_TMP/none.ds" -f $GWL4 A mx.secure.example >"$T_TMP/ta.out" 2>&1
ok "missing trust anchor: exit 2" test $? -eq 2
ok "missing trust anchor: says trust_anchor_file" grep -q "dnsq: trust_anchor_file $T_TMP/none.ds" "$T_TMP/ta.out"
# A file without any DS/DNSKEY would leave no anchor: refused, not "insecure".
printf '; nothing here\n' >"$T_TMP/empty.ds"
in_cli "$DNSQ" -a "$T_TMP/empty.ds" -f $GWL4 A mx.secure.example >"$T_TMP/ta2.out" 2>&1
ok "anchor file without records: exit 2" test $? -eq 2
ok "anchor file without records: says so" grep -q "no DS or DNSKEY record" "$T_TMP/ta2.out"
# A file with a broken record: libunbound refuses it at start, not per query.
printf 'example. IN DS 1 2 3 zz\n' >"$T_TMP/bad.ds"
in_cli "$DNSQ" -a "$T_TMP/bad.ds" -f $GWL4 A mx.secure.example >"$T_TMP/ta3.out" 2>&1
ok "broken anchor record: exit 2 at start" test $? -eq 2
ok "broken anchor record: says trust_anchor_file" grep -q "dnsq: trust_anchor_file $T_TMP/bad.ds" "$T_TMP/ta3.out"
# With no forwarder given, resolv.conf's nameservers are used.
printf 'nameserver %s\n' $GWL4 >"$T_TMP/resolv.conf"
ok "resolv.conf forwarder: secure MX" bash -c "ip netns exec $NS_CLI '$DNSQ' -a '$Z/root-anchor.ds' -r '$T_TMP/resolv.conf' MX secure.example | grep -q 'status=secure'"

# ---- the daemon: dane = on starts the policy process under the master --------------
proxy --dane on --resolvers $GWL4 --trust-anchor-file "$Z/root-anchor.ds" --workers 1
ok "daemon: event=policyd msg=started" wait_for 10 log_has 'event=policyd msg=started'
wpid=$(sed -nE 's/.*event=worker action=started pid=([0-9]+).*/\1/p' "$PROXY_LOG" | head -1)
pdpid=$(ps -o pid= --ppid "$PROXY_PID" | tr -d ' ' | grep -vx "$wpid" | head -1)
ok "daemon: policyd is a child of the master beside the worker" test -n "$pdpid" -a -n "$wpid"
ok "daemon: policyd runs as user starttlsd" test "$(ps -o user= -p "$pdpid")" = starttlsd
# ss -p names every process holding a socket: the master and the worker hold
# the listener; policyd, which closed all it inherited, must not.
ip netns exec "$NS_GW" ss -Htlnp >"$T_TMP/ss.out" 2>&1
ok "daemon: the listener is held by the master (the check can see it)" grep -q "pid=$PROXY_PID," "$T_TMP/ss.out"
ok "daemon: policyd holds no listening socket" bash -c "! grep -q 'pid=$pdpid,' '$T_TMP/ss.out'"
ok "daemon: stops cleanly" proxy_stop
ok "daemon: policyd gone with the master" wait_for 10 bash -c "! kill -0 $pdpid 2>/dev/null"
# A trust anchor policyd cannot use: it says so and exits; the daemon goes on.
: >"$PROXY_LOG"
proxy --dane on --resolvers $GWL4 --trust-anchor-file "$T_TMP/empty.ds" --workers 1
ok "daemon: bad trust anchor logged by policyd" wait_for 10 log_has 'event=policyd msg="resolver: trust_anchor_file .*no DS or DNSKEY record'
ok "daemon: still up without it" bash -c "kill -0 $PROXY_PID"
ok "daemon: stops cleanly after that" proxy_stop
# One process (master = off): it starts the policy process as its own child.
: >"$PROXY_LOG"
proxy --dane on --master off --resolvers $GWL4 --trust-anchor-file "$Z/root-anchor.ds"
ok "single process: event=policyd msg=started" wait_for 10 log_has 'event=policyd msg=started'
pdpid=$(ps -o pid= --ppid "$PROXY_PID" | tr -d ' ' | head -1)
ok "single process: policyd is its child, as user starttlsd" test -n "$pdpid" -a "$(ps -o user= -p "${pdpid:-0}" 2>/dev/null)" = starttlsd
ok "single process: stops cleanly" proxy_stop
ok "single process: policyd gone with it" wait_for 10 bash -c "! kill -0 ${pdpid:-0} 2>/dev/null"

if [ ${#VG[@]} -gt 0 ]; then
	ok "valgrind: dnsq, pdq and policyd ran under memcheck" bash -c "ls '$T_TMP'/vg.*.log >/dev/null"
	ok "valgrind: no report from any of them" bash -c "! cat '$T_TMP'/vg.*.log | grep -q ."
fi

finish
