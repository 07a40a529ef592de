#!/usr/bin/env bash
# proxy/https.c (the HTTPS client for MTA-STS and TLS-RPT) through
# build/httpsq (tests/httpsq.c) against tests/peers/httpsd.py, one result of
# https.h per check, in namespaces with documentation addresses only:
#   srv: httpsd.py instances on 198.51.100.25 / 2001:db8:2::25, one port each:
#        8443 the good certificate (its mode switched through a file),
#        8444 expired, 8445 another CA, 8446 wrong name, 8447 no TLS at all,
#        8448 TLS 1.1 at most, 8449 POST capture; nothing on 8450;
#        198.51.100.54 refuses every connection
#   gw:  unbound on 192.0.2.1 with local data for the names (no DNSSEC needed)
#   cli: httpsq, resolving through proxy/resolver.c or dialling -a ADDR
# Certificates are made now by tests/peers/mkstscerts.sh (openssl CLI).
# Not covered: HTTPS_NOMEM (an allocation failure).
. "$(dirname "$0")/../lib/common.sh"

need_root
command -v unbound >/dev/null || [ -x /usr/sbin/unbound ] || skip "unbound not installed (tests/deps.sh)"
case $STARTTLSD in
*valgrind*) HTTPSQ=$(dirname "${VALGRIND_BIN:-$TOP/build/starttlsd}")/httpsq ;;
*) HTTPSQ=$(dirname "$STARTTLSD")/httpsq ;;
esac
[ -x "$HTTPSQ" ] || { say "no $HTTPSQ (make all)"; not_ok "httpsq built" true; finish; }
VG=()
case $STARTTLSD in
*valgrind*) VG=(valgrind -q --error-exitcode=97 --leak-check=full
	--errors-for-leak-kinds=definite --log-file="$T_TMP/vg.%p.log") ;;
esac

H=mta-sts.a.example
C=$T_TMP/certs
bash "$PEERS/mkstscerts.sh" "$C" $H mta-sts.six.example mta-sts.fallback.example mta-sts.hole.example >"$T_TMP/mkcerts.out" 2>&1
ok "test certificates made (openssl CLI)" test -s "$C/expired.crt" -a -s "$C/untrusted.crt"
ok "the expired leaf really is expired" bash -c "! openssl x509 -in '$C/expired.crt' -noout -checkend 0"

topo_up
DEAD4=198.51.100.54
HOLE4=198.51.100.55   # on srv, every packet to it dropped: a connect that never ends
ip -n "$NS_SRV" addr add $DEAD4/24 dev wan0
ip -n "$NS_SRV" addr add $HOLE4/24 dev wan0
in_srv nft -f - <<NFT
table inet hole {
	chain input {
		type filter hook input priority 0; policy accept;
		ip daddr $HOLE4 drop
	}
}
NFT

printf 'version: STSv1\r\nmode: enforce\r\nmx: mx.a.example\r\nmax_age: 86400\r\n' >"$T_TMP/policy.txt"
echo file >"$T_TMP/mode"
httpsd() { # PORT CERT [args...]
	local port=$1 cert=$2; shift 2
	in_srv "$PY" "$PEERS/httpsd.py" --listen "$SRV4:$port" --listen "[$SRV6]:$port" \
		--cert "$C/$cert.crt" --key "$C/$cert.key" --file "$T_TMP/policy.txt" \
		--log "$T_TMP/req-$port.log" "$@" >"$T_TMP/httpsd-$port.out" 2>&1 &
	T_PIDS+=($!); disown $!
}
mkdir -p "$T_TMP/capture"
httpsd 8443 good --mode-file "$T_TMP/mode" --raw "$T_TMP/raw.bin"
httpsd 8444 expired
httpsd 8445 untrusted
httpsd 8446 wrongname
httpsd 8447 good --plain
httpsd 8448 good --tls-max 1.1
httpsd 8449 good --mode capture --capture "$T_TMP/capture" --ctype "text/plain; charset=utf-8"
for p in 8443 8444 8445 8446 8447 8448 8449; do
	wait_for 10 grep -q ready "$T_TMP/httpsd-$p.out" || { say "httpsd $p did not start"; cat "$T_TMP/httpsd-$p.out" >&2; }
done

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
	local-zone: "example." static
	local-data: "$H. 300 IN A $SRV4"
	local-data: "mta-sts.six.example. 300 IN AAAA $SRV6"
	local-data: "mta-sts.fallback.example. 300 IN A $DEAD4"
	local-data: "mta-sts.fallback.example. 300 IN AAAA $SRV6"
	local-data: "mta-sts.hole.example. 300 IN A $HOLE4"
	local-data: "mta-sts.hole.example. 300 IN AAAA $SRV6"
EOF
in_gw unbound -d -c "$T_TMP/unbound.conf" >"$T_TMP/unbound.out" 2>&1 &
T_PIDS+=($!); disown $!
# resolver.c insists on a trust anchor; one for an unrelated zone leaves
# example. outside every anchor: its answers are "insecure", which is fine here.
echo "anchor.example.org. IN DS 12345 13 2 $(printf '%064d' 0 | tr 0 a)" >"$T_TMP/ta.ds"
RES=(-A "$T_TMP/ta.ds" -f $GWL4)

q() { in_cli "${VG[@]}" "$HTTPSQ" -c "$C/ca.crt" "$@"; }
qa() { q -a $SRV4 "$@"; }
P=/.well-known/mta-sts.txt
SUM=$(sha256sum "$T_TMP/policy.txt" | cut -d' ' -f1)
run() { # NAME args...: run httpsq, keep its stdout in $T_TMP/NAME.out and its exit in NAME.rc
	local n=$1; shift
	q "$@" >"$T_TMP/$n.out" 2>"$T_TMP/$n.err"
	echo $? >"$T_TMP/$n.rc"
}
has() { grep -Eq -- "$2" "$T_TMP/$1.out"; }
rc0() { [ "$(cat "$T_TMP/$1.rc")" = 0 ]; }

ok "httpsd and unbound up" wait_for 10 bash -c "ip netns exec $NS_CLI '$HTTPSQ' -c '$C/ca.crt' -A '$T_TMP/ta.ds' -f $GWL4 -p 8443 -T 2000 $H / | grep -q result=ok"

# ---- HTTPS_OK: the body, by length, chunked, until close_notify -----------------------
run get -a $SRV4 -p 8443 -o "$T_TMP/got.txt" $H $P
ok "GET: result ok, status 200, text/plain" has get "result=ok status=200 type=\"text/plain\" len=$(stat -c %s "$T_TMP/policy.txt") sha256=$SUM"
ok "GET: exactly one callback (httpsq exit 0)" rc0 get
ok "GET: the body byte for byte" cmp "$T_TMP/got.txt" "$T_TMP/policy.txt"
ok "GET: request line, Host with the port, SNI name verified" grep -q "^GET $P host=$H:8443 mode=file" "$T_TMP/req-8443.log"
echo chunked >"$T_TMP/mode"
run chunked -a $SRV4 -p 8443 $H $P
ok "chunked body (7-byte chunks) reassembled" has chunked "result=ok status=200 .*sha256=$SUM"
echo close >"$T_TMP/mode"
run close -a $SRV4 -p 8443 $H $P
ok "body until close_notify" has close "result=ok status=200 .*sha256=$SUM"
echo file >"$T_TMP/mode"
run six -a $SRV6 -p 8443 $H $P
ok "IPv6 address dialled" has six "result=ok status=200 .*sha256=$SUM"
run dns "${RES[@]}" -p 8443 $H $P
ok "name resolved through resolver.c (A)" has dns "result=ok status=200 .*sha256=$SUM"
run dns6 "${RES[@]}" -p 8443 mta-sts.six.example $P
ok "name resolved through resolver.c (AAAA only)" has dns6 "result=ok status=200 .*sha256=$SUM"
run fallback "${RES[@]}" -p 8443 mta-sts.fallback.example $P
ok "A refuses, then AAAA serves: the next address is tried" has fallback "result=ok status=200 .*sha256=$SUM"
ok "the AAAA server got it (the A address refused)" grep -q "host=mta-sts.fallback.example:8443" "$T_TMP/req-8443.log"
start=$SECONDS
run hole "${RES[@]}" -p 8443 -T 30000 mta-sts.hole.example $P
ok "A black-holed: after its 10 s attempt, AAAA serves" has hole "result=ok status=200 .*sha256=$SUM"
ok "A black-holed: the attempt bound, not the 30 s timeout" test $((SECONDS - start)) -lt 20
run hole2 -a $HOLE4 -p 8443 -T 1500 $H $P
ok "the only address black-holed: timeout (connecting)" has hole2 'result=timeout .*timeout connecting'
run many -a $SRV4 -p 8443 -n 4 $H $P
ok "four requests at once: four answers, one each" bash -c "[ \$(grep -c 'result=ok status=200' '$T_TMP/many.out') = 4 ] && [ \$(cat '$T_TMP/many.rc') = 0 ]"

# ---- statuses and types are the caller's to judge --------------------------------------
echo redirect >"$T_TMP/mode"; run redirect -a $SRV4 -p 8443 $H $P
ok "301: result ok, status 301 (no redirect followed)" has redirect "result=ok status=301 "
ok "301: only one request reached the server" test "$(grep -c 'mode=redirect' "$T_TMP/req-8443.log")" = 1
echo 404 >"$T_TMP/mode"; run nf -a $SRV4 -p 8443 $H $P
ok "404: status 404" has nf "result=ok status=404 "
echo html >"$T_TMP/mode"; run html -a $SRV4 -p 8443 $H $P
ok "text/html: https_type_is(text/plain) false" has html 'result=ok status=200 type="text/html" .*text_plain=0'
echo file >"$T_TMP/mode"
run charset -a $SRV4 -p 8449 $H $P
ok "text/plain; charset=utf-8: passes as text/plain" has charset 'result=ok status=200 type="text/plain; charset=utf-8" .*text_plain=1'

# ---- HTTPS_TOO_LARGE -----------------------------------------------------------------------
echo big >"$T_TMP/mode"; run big -a $SRV4 -p 8443 $H $P
ok "70 KiB with Content-Length: too-large, no body handed out" has big 'result=too-large .*len=0 '
echo bigchunk >"$T_TMP/mode"; run bigchunk -a $SRV4 -p 8443 $H $P
ok "70 KiB chunked: too-large" has bigchunk 'result=too-large '
echo file >"$T_TMP/mode"
n=$(stat -c %s "$T_TMP/policy.txt")
run exact -a $SRV4 -p 8443 -m "$n" $H $P
ok "a body of exactly max_body: ok" has exact "result=ok status=200 len=$n |result=ok status=200 type=\"text/plain\" len=$n "
run over -a $SRV4 -p 8443 -m $((n - 1)) $H $P
ok "one byte over max_body: too-large" has over 'result=too-large '

# ---- failures ------------------------------------------------------------------------------
echo slow >"$T_TMP/mode"
start=$SECONDS
run slow -a $SRV4 -p 8443 -T 1500 $H $P
ok "slow server: timeout from our one timer" has slow 'result=timeout '
ok "slow server: within the bound (< 5 s)" test $((SECONDS - start)) -lt 5
run cancel0 -a $SRV4 -p 8443 -x 0 $H $P
ok "https_cancel at once: no callback, exit 0" bash -c "grep -q '^cancelled' '$T_TMP/cancel0.out' && ! grep -q result= '$T_TMP/cancel0.out' && [ \$(cat '$T_TMP/cancel0.rc') = 0 ]"
run cancel1 -a $SRV4 -p 8443 -x 400 $H $P
ok "https_cancel while waiting for the reply: no callback, exit 0" bash -c "grep -q '^cancelled' '$T_TMP/cancel1.out' && ! grep -q result= '$T_TMP/cancel1.out' && [ \$(cat '$T_TMP/cancel1.rc') = 0 ]"
echo file >"$T_TMP/mode"
run conn -a $SRV4 -p 8450 $H $P
ok "nothing listening: connect" has conn 'result=connect .*Connection refused'
run nodns "${RES[@]}" -p 8443 mta-sts.missing.example $P
ok "no address for the name: dns" has nodns 'result=dns .*no address'
run plain -a $SRV4 -p 8447 $H $P
ok "server without TLS: tls" has plain 'result=tls '
run old -a $SRV4 -p 8448 $H $P
ok "server with TLS 1.1 at most: tls (1.2 required)" has old 'result=tls .*PROTOCOL_VERSION'
run exp -a $SRV4 -p 8444 $H $P
ok "expired certificate: cert-expired" has exp 'result=cert-expired '
run untr -a $SRV4 -p 8445 $H $P
ok "certificate from another CA: cert-untrusted" has untr 'result=cert-untrusted '
run name -a $SRV4 -p 8446 $H $P
ok "certificate for another name: cert-name" has name 'result=cert-name '
run name2 -a $SRV4 -p 8443 mta-sts.b.example $P
ok "the right certificate asked for another host: cert-name" has name2 'result=cert-name '
ok "no request reached a server with a bad certificate" bash -c "! grep -q . '$T_TMP/req-8444.log' '$T_TMP/req-8445.log' '$T_TMP/req-8446.log' 2>/dev/null"
echo badstatus >"$T_TMP/mode"; run bad -a $SRV4 -p 8443 $H $P
ok "bad status line: protocol" has bad 'result=protocol .*bad status line'
echo file >"$T_TMP/mode"

# ---- responses built byte by byte (mode raw: then close_notify; rawcut: TCP close only) ----
raw() { # NAME MODE PRINTF-FORMAT [args]: that response, then httpsq
	local n=$1 m=$2 fmt=$3; shift 3
	printf "$fmt" "$@" >"$T_TMP/raw.bin"
	echo "$m" >"$T_TMP/mode"
	run "$n" -a $SRV4 -p 8443 -o "$T_TMP/$n.body" $H $P
}
raw lf raw 'HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 5\n\nhello'
ok "head with bare LF line ends: ok" has lf 'result=ok status=200 type="text/plain" len=5 '
raw cont raw 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi'
ok "a 100 Continue before the answer is skipped" has cont 'result=ok status=200 .*len=2 '
raw nobody raw 'HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n'
ok "204: no body whatever the length says" has nobody 'result=ok status=204 .*len=0 '
raw trail raw 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n'
ok "chunk extension and trailer ignored" has trail 'result=ok status=200 .*len=3 '
ok "chunked: the body is the chunks' data" bash -c "[ \"\$(cat '$T_TMP/trail.body')\" = abc ]"
raw both raw 'HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n'
ok "chunked wins over Content-Length" has both 'result=ok status=200 .*len=2 '
big_head=$(head -c 17000 /dev/zero | tr '\0' a)
raw bighead raw "HTTP/1.1 200 OK\r\nX-Big: %s\r\n\r\n" "$big_head"
ok "head over 16 KiB: too-large" has bighead 'result=too-large .*head over'
raw h2 raw 'HTTP/2 200\r\n\r\n'
ok "HTTP/2 status line: protocol" has h2 'result=protocol .*bad status line'
raw twolen raw 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc'
ok "two different Content-Lengths: protocol" has twolen 'result=protocol .*two Content-Lengths'
raw neglen raw 'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n'
ok "Content-Length -1: protocol" has neglen 'result=protocol .*bad Content-Length'
raw gzip raw 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n'
ok "Transfer-Encoding gzip: protocol" has gzip 'result=protocol .*Transfer-Encoding'
raw fold raw 'HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 0\r\n\r\n'
ok "folded header line: protocol" has fold 'result=protocol .*folded'
raw badchunk raw 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n'
ok "bad chunk size: protocol" has badchunk 'result=protocol .*bad chunk size'
raw hugechunk raw 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffffff\r\nabc\r\n'
ok "chunk size overflowing 64 bits: protocol" has hugechunk 'result=protocol .*bad chunk size'
raw bigchunk1 raw 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10001\r\nabc\r\n'
ok "one chunk announced over max_body: too-large at once" has bigchunk1 'result=too-large '
raw nocrlf raw 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY\r\n0\r\n\r\n'
ok "chunk data not followed by CRLF: protocol" has nocrlf 'result=protocol .*no CRLF after a chunk'
raw short raw 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc'
ok "closed before Content-Length bytes: protocol" has short 'result=protocol .*closed after 3 of 10'
raw cut rawcut 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nversion: STSv1\r\nmode: enforce\r\n'
ok "body until close, cut without close_notify: protocol (a truncation)" has cut 'result=protocol .*without close_notify'
raw headcut rawcut 'HTTP/1.1 200 OK\r\nContent-Le'
ok "closed inside the head: protocol" has headcut 'result=protocol '
raw nul raw 'HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 0\r\n\r\n'
ok "NUL in a header: protocol" has nul 'result=protocol .*NUL'
raw ct1 raw 'HTTP/1.1 200 OK\r\nContent-Type:  Text/Plain ;charset="x"\r\nContent-Length: 0\r\n\r\n'
ok "https_type_is: case and blanks before parameters ignored" has ct1 'text_plain=1'
raw ct2 raw 'HTTP/1.1 200 OK\r\nContent-Type: text/plainx\r\nContent-Length: 0\r\n\r\n'
ok "https_type_is: text/plainx is not text/plain" has ct2 'type="text/plainx" .*text_plain=0'
raw ct3 raw 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'
ok "https_type_is: no Content-Type is not text/plain" has ct3 'type="" .*text_plain=0'
echo file >"$T_TMP/mode"

# ---- POST (TLS-RPT) ------------------------------------------------------------------------
head -c 3000 /dev/urandom >"$T_TMP/report.bin"
run post -a $SRV4 -p 8449 -X POST -t application/tlsrpt+gzip -b "$T_TMP/report.bin" $H /report
ok "POST: result ok, status 200" has post 'result=ok status=200 '
ok "POST: the body arrived byte for byte" wait_for 5 cmp "$T_TMP/capture/post-1.bin" "$T_TMP/report.bin"
ok "POST: Content-Type and Content-Length sent" bash -c "grep -q '^Content-Type: application/tlsrpt+gzip' '$T_TMP/capture/post-1.head' && grep -q '^Content-Length: 3000' '$T_TMP/capture/post-1.head'"
ok "POST: Connection: close, HTTP/1.1" bash -c "grep -q '^Connection: close' '$T_TMP/capture/post-1.head' && grep -q '^POST /report HTTP/1.1' '$T_TMP/capture/post-1.head'"

ok "httpsq never saw a callback inside https_start" bash -c "! grep -q 'inside https_start' '$T_TMP'/*.err"
ok "no sanitizer report from httpsq" bash -c "! grep -Eq 'AddressSanitizer|LeakSanitizer|runtime error:' '$T_TMP'/*.err"
ok "httpsq exited 0 every time (one callback per request)" bash -c "! grep -qv '^0\$' '$T_TMP'/*.rc"
if [ ${#VG[@]} -gt 0 ]; then
	ok "valgrind: no report from httpsq" bash -c "! grep -q . '$T_TMP'/vg.*.log"
fi
[ "$T_FAIL" -gt 0 ] && tail -n 3 "$T_TMP"/*.out >&2
finish
