#!/usr/bin/env bash
# DANE (RFC 7672) end to end, with Postfix as the oracle. tests/lib/dane.sh
# builds the bed: a signed private example. tree with one zone per case of
# /work/shared/dane.md section 4, nsd, a forwarding unbound for starttlsd and
# a validating one for Postfix, SMTP servers with certificates made now, an
# MTA-STS policy host. docs/dane-oracle.md has the table of both verdicts.
#   (a) posttls-finger (Postfix 3.7, level dane, insecure MX policy dane) per
#       case, from gw (not intercepted), trusting the validating unbound.
#   (b) the same cases through starttlsd (enforce, then a few in monitor),
#       against the contract of issue 11: 450 4.7.5 at RCPT for a broken
#       promise, event=downgrade signal=dane-failed ..., the session line's
#       policy= and policy_met=. DANE_ORACLE_ONLY=1 runs (a) alone.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/dane.sh"
. "$(dirname "$0")/../lib/postfix.sh"
pf_need
trap 'dane_pf_stop; cleanup' EXIT

need_root
for t in nsd unbound ldns-keygen ldns-signzone drill swaks openssl; do
	command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || skip "$t not installed (tests/deps.sh)"
done
[ -x /usr/sbin/posttls-finger ] || skip "posttls-finger not installed (postfix)"

topo_up
ok "the DANE bed is up (certificates, zones, nsd, two unbounds, SMTP and HTTPS servers)" dane_up
[ "$T_FAIL" -eq 0 ] || finish
# The real Postfix client works in the background while posttls-finger runs.
ok "postfix client (level dane) starts in gw" dane_pf_up
ALL_CASES=(); for e in "${DANE_CASES[@]}"; do ALL_CASES+=("${e%% *}"); done
ok "postfix client: one message per case queued" dane_pf_send "${ALL_CASES[@]}"

# ---- the bed itself: what the zones hold is what the cases say ------------------
vq() { in_gw drill -D "$1" "$2" @"$DANE_VAL" 2>&1; }   # the validating resolver
ok "bed: secure TLSA for mx.c01 (AD)" bash -c "ip netns exec $NS_GW drill -D _25._tcp.mx.c01.example TLSA @$DANE_VAL | grep -Eq 'flags:[a-z ]* ad[ ;]'"
ok "bed: c08 is insecure (no AD, data present)" bash -c "out=\$(ip netns exec $NS_GW drill -D _25._tcp.mx.c08.example TLSA @$DANE_VAL); grep -q 'IN[[:space:]]*TLSA' <<<\"\$out\" && ! grep -Eq 'flags:[a-z ]* ad[ ;]' <<<\"\$out\""
ok "bed: c09's TLSA is bogus (SERVFAIL)" bash -c "ip netns exec $NS_GW drill -D _25._tcp.mx.c09.example TLSA @$DANE_VAL | grep -q 'rcode: SERVFAIL'"
ok "bed: c11 (DS matches no key) is bogus" bash -c "ip netns exec $NS_GW drill -D c11.example MX @$DANE_VAL | grep -q 'rcode: SERVFAIL'"
ok "bed: the forwarder for starttlsd does not validate (c09 passes it)" bash -c "ip netns exec $NS_GW drill -D _25._tcp.mx.c09.example TLSA @$GWL4 | grep -q 'rcode: NOERROR'"
ok "bed: the DANE-TA server sends leaf + intermediate, not the root" \
	bash -c "echo | ip netns exec $NS_GW timeout 10 openssl s_client -starttls smtp -connect $(dane_ip c04):25 -showcerts 2>/dev/null | grep -c 'BEGIN CERTIFICATE' | grep -qx 2"
ok "bed: the expired leaf is expired" bash -c "! openssl x509 -in '$DANE_C/exp.crt' -noout -checkend 0"
ok "bed: the STS policy host serves an enforce policy" bash -c "ip netns exec $NS_GW $PY -c '
import ssl,socket,sys
c=ssl.create_default_context(cafile=sys.argv[1]); s=c.wrap_socket(socket.create_connection((sys.argv[2],443),5),server_hostname=\"mta-sts.c29.example\")
s.sendall(b\"GET /.well-known/mta-sts.txt HTTP/1.0\r\nHost: mta-sts.c29.example\r\n\r\n\"); d=b\"\"
while True:
    b=s.recv(4096)
    if not b: break
    d+=b
sys.exit(0 if b\"mode: enforce\" in d and b\"mx: mx.c29.example\" in d else 1)' '$DANE_C/root.crt' $DANE_STS4"

# ---- (a) Postfix ------------------------------------------------------------------
# Expected posttls-finger verdicts (dane_verdict in tests/lib/dane.sh).
declare -A PF=(
	[c01]=verified [c02]=dane-fail [c03]=verified [c04]=verified [c04w]=dane-fail
	[c04r]=dane-fail [c05a]=dane-fail [c05b]=verified [c06]=unusable-tls
	[c06s]=unusable-no-starttls [c07]=no-dane [c07s]=no-dane-verified [c08]=no-dane [c09]=tlsa-lookup-error
	[c10]=tlsa-lookup-error [c10a]=dns-tempfail [c11]=dns-tempfail [c12]=dns-tempfail
	[c13]=trusted [c13b]=dane-fail [c14]=verified [c14b]=verified [c15]=dane-no-starttls
	[c16]=tlsa-lookup-error [c17]=verified [c17b]=verified [c18a]=verified [c18b]=dane-fail [c19]=verified
	[c29]=dane-fail [c30]=tlsa-lookup-error
)
# Details behind some verdicts, from posttls-finger's own lines.
fgrep_case() { grep -Eq -- "$2" "$DANE_OUT/finger-$1.out"; }
t0=$SECONDS
for e in "${DANE_CASES[@]}"; do
	c=${e%% *}
	v=$(dane_finger "$c")
	ok "postfix $c: $v (expected ${PF[$c]})" test "$v" = "${PF[$c]}"
	echo "$c $v" >>"$DANE_OUT/postfix.verdicts"
done
say "  (posttls-finger: $((SECONDS - t0)) s)"
ok "postfix c01: matched DANE-EE at depth 0" fgrep_case c01 "Matched DANE EE certificate at depth 0: 3 1 1"
ok "postfix c03: expired, wrongly named leaf matched as DANE-EE" fgrep_case c03 "Matched DANE EE certificate at depth 0"
ok "postfix c04: DANE-TA matched at depth 1 (the intermediate)" fgrep_case c04 "Matched DANE (TA|CA) certificate at depth 1"
ok "postfix c04w: hostname mismatch" fgrep_case c04w "hostname mismatch"
ok "postfix c04r: no matching TLSA (root not sent)" fgrep_case c04r "no matching DANE TLSA records"
ok "postfix c05a: only the sha512 record is used (the right sha256 one is ignored)" fgrep_case c05a "no matching DANE TLSA records"
ok "postfix c06: usages 0/1 and mtype 255 called unusable" fgrep_case c06 "unsupported TLSA certificate usage: 0 1 1"
ok "postfix c13: insecure MX, logged as trusted" fgrep_case c13 "MX RRset insecure: log verified as trusted"
ok "postfix c14: TLSA of the CNAME target used, not the alias's" fgrep_case c14 "DNSSEC-signed TLSA record: _25._tcp.mx14.hosts.example"
ok "postfix c14b: TLSA at the alias used (secure CNAME, insecure target)" fgrep_case c14b "DNSSEC-signed TLSA record: _25._tcp.mx.c14b.example"
ok "postfix c15: no STARTTLS offered" bash -c "! grep -q STARTTLS '$DANE_OUT/finger-c15.out'"
ok "postfix c16: the TLSA query timed out into a lookup error" fgrep_case c16 "TLSA lookup error for mx.c16.example"
ok "postfix c19: posttls-finger sent SNI mx.c19.example and got the right key" grep -q "tls sni=mx.c19.example cert=ee" "$DANE_OUT/srv-sni.log"
not_ok "postfix c19: no handshake without SNI" grep -q "tls sni=None" "$DANE_OUT/srv-sni.log"

# The Postfix SMTP client's first delivery attempt per case (dane_pf_verdict).
declare -A PFC=(
	[c01]=sent/verified [c02]=deferred/cert-not-trusted [c03]=sent/verified [c04]=sent/verified
	[c04w]=deferred/cert-not-trusted [c04r]=deferred/cert-not-trusted [c05a]=deferred/cert-not-trusted
	[c05b]=sent/verified [c06]=sent/untrusted [c06s]=deferred/no-starttls [c07]=sent/untrusted
	[c07s]=sent/untrusted [c08]=sent/untrusted [c09]=deferred/tlsa-lookup-error
	[c10]=deferred/tlsa-lookup-error [c10a]=deferred/dns [c11]=deferred/dns [c12]=deferred/dns
	[c13]=sent/trusted [c13b]=deferred/cert-not-trusted [c14]=sent/verified [c14b]=sent/verified
	[c15]=deferred/no-starttls [c16]=deferred/tlsa-lookup-error [c17]=sent/verified
	[c17b]=sent/verified [c18a]=sent/verified [c18b]=deferred/cert-not-trusted [c19]=sent/verified
	[c29]=deferred/cert-not-trusted [c30]=deferred/tlsa-lookup-error
)
all_done() { local c; for c in "${ALL_CASES[@]}"; do [ -n "$(dane_pf_status "$c")" ] || return 1; done; }
ok "postfix client: a first attempt for every case" wait_for 60 all_done
for c in "${ALL_CASES[@]}"; do
	v=$(dane_pf_verdict "$c")
	ok "postfix client $c: $v (expected ${PFC[$c]})" test "$v" = "${PFC[$c]}"
	echo "$c $v" >>"$DANE_OUT/postfix-client.verdicts"
done
dane_pf_stop

if [ "${DANE_ORACLE_ONLY:-}" = 1 ]; then
	say "  DANE_ORACLE_ONLY=1: starttlsd's part (b) not run"
	finish
fi

# ---- (b) starttlsd -----------------------------------------------------------------
# Contract (issue 11, the lead's worker): dane = on, recipients of a domain
# whose DANE promise is broken get 450 4.7.5 at RCPT in enforce (others go on),
# monitor delivers; event=downgrade signal=dane-failed policy=dane mode=...
# action=... tlsrpt=... domain=...; the session line has policy= and policy_met=.
redirect_on
STATE=$T_TMP/state
dane_conf() { # MODE MTA_STS: the daemon's configuration file
	cat >"$T_TMP/dane-$1.conf" <<-EOF
	mode = $1
	dane = on
	mta_sts = $2
	resolvers = $GWL4
	trust_anchor_file = $DANE_ANCHOR
	policy_timeout = 10
	ca_file = $DANE_C/root.crt
	mta_sts_ca_file = $DANE_C/root.crt
	tlsrpt = on
	tlsrpt_from = tlsrpt@gw.example.org
	EOF
	echo "$T_TMP/dane-$1.conf"
}
dane_proxy() { # CONF: starttlsd in gw with this configuration file only
	ip netns exec "$NS_GW" "$STARTTLSD" -f --log-stderr -c "$1" --helo-name gw.example.org \
		--state-dir "$STATE" 2>>"$PROXY_LOG" &
	PROXY_PID=$!
	T_PIDS+=($PROXY_PID)
	wait_for "$PROXY_START_WAIT" grep -q "event=start" "$PROXY_LOG" || { say "proxy did not start"; tail -n 5 "$PROXY_LOG" >&2; return 1; }
}
# A message whose bytes are checked at the server.
body() { # CASE: $DANE_OUT/body-CASE (sent) and .expect (stored: CRLF-ended)
	local f=$DANE_OUT/body-$1
	printf 'From: sender@example.org\r\nTo: user@%s\r\nSubject: dane %s\r\n\r\nmarker %s %s\r\n.leading dot\r\nend' \
		"$(dane_domain "$1")" "$1" "$1" "$$" >"$f"
	printf '%s\r\n' "$(cat "$f")" >"$f.expect"
	echo "$f"
}
send() { # CASE [swaks args]: send; swaks output in DANE_OUT/swaks-CASE.out
	local c=$1; shift
	dane_send "$c" --data @"$(body "$c")" "$@" >"$DANE_OUT/swaks-$c.out" 2>&1
}
dg_line() { grep "event=downgrade" "$PROXY_LOG" | grep -E "(^| )domain=$1( |$)" | tail -n 1; }
sess_line() { grep "event=session" "$PROXY_LOG" | grep -E " dst=$1:25( |$)" | tail -n 1; }
has_kv() { # LINE KEY VALUE...: the line has KEY=VALUE for each pair
	local l=$1; shift
	while [ $# -ge 2 ]; do grep -Eq "(^| )$1=$2( |$)" <<<"$l" || { echo "no $1=$2 in: $l"; return 1; }; shift 2; done
}
wait_kv() { # SECONDS FUNC ARG KEY VALUE...: until FUNC ARG's line has each KEY=VALUE (one message at the end)
	local end=$((SECONDS + $1)) fn=$2 arg=$3
	shift 3
	while [ $SECONDS -lt $end ]; do
		has_kv "$("$fn" "$arg")" "$@" >/dev/null && return 0
		sleep 0.1
	done
	has_kv "$("$fn" "$arg")" "$@"
}
stored() { # CASE: the message arrived, over TLS, at the dialled address, byte for byte
	local c=$1 m
	m=$(dane_msg "$c") || { echo "no message for $c"; return 1; }
	[ "$(json "$m" local)" = "$(dane_dial "$c")" ] || { echo "local $(json "$m" local)"; return 1; }
	case $(json "$m" tls) in TLSv1.2|TLSv1.3) ;; *) echo "tls $(json "$m" tls)"; return 1 ;; esac
	cmp "$DANE_OUT/body-$c.expect" "${m%.json}.eml"
}
not_stored() { ! dane_msg "$1" >/dev/null; }
# rcpt_reply FILE ADDR: the reply swaks got to RCPT TO:<ADDR>
rcpt_reply() { awk -v a="RCPT TO:<$2>" 'f && /^ *<[-~*]/ { print $2, $3; exit } index($0, a) { f = 1 }' "$1"; }
rcpt_450() { # CASE: swaks's RCPT TO:<user@DOMAIN> got 450 4.7.5
	local r
	r=$(rcpt_reply "$DANE_OUT/swaks-$1.out" "user@$(dane_domain "$1")")
	[ "$r" = "450 4.7.5" ] || { echo "RCPT reply: '$r'"; return 1; }
}

# expect_pass CASE POLICY: delivered, the session line's policy, met.
expect_pass() {
	local c=$1 pol=$2 ip
	ip=$(dane_dial "$c")
	ok "starttlsd $c: swaks delivers" send "$c"
	ok "starttlsd $c: stored over TLS at $ip, byte-identical" wait_for 5 stored "$c"
	ok "starttlsd $c: session line policy=$pol policy_met=yes" wait_kv 5 sess_line "$ip" policy "$pol" policy_met yes
	not_ok "starttlsd $c: no event=downgrade for $(dane_domain "$c")" bash -c "grep event=downgrade '$PROXY_LOG' | grep -Eq ' domain=$(dane_domain "$c")( |$)'"
}
# expect_block CASE TLSRPT [MODE]: 450 4.7.5 at RCPT (enforce) or delivered (monitor), the alert.
expect_block() {
	local c=$1 rpt=$2 mode=${3:-enforce} ip d act=blocked met=no
	ip=$(dane_dial "$c"); d=$(dane_domain "$c")
	[ "$mode" = monitor ] && act=allowed
	send "$c"
	if [ "$mode" = enforce ]; then
		ok "starttlsd $c: RCPT gets 450 4.7.5" rcpt_450 "$c"
		ok "starttlsd $c: nothing stored" not_stored "$c"
	else
		ok "starttlsd $c (monitor): delivered all the same" wait_for 5 dane_msg "$c"
	fi
	ok "starttlsd $c: event=downgrade signal=dane-failed policy=dane mode=$mode action=$act tlsrpt=$rpt domain=$d" \
		wait_kv 5 dg_line "$d" signal dane-failed policy dane mode "$mode" action "$act" tlsrpt "$rpt" domain "$d"
	ok "starttlsd $c: session line policy=dane policy_met=$met" wait_kv 5 sess_line "$ip" policy dane policy_met "$met"
}

: >"$PROXY_LOG"
ok "starttlsd starts (dane = on, mta_sts = on, enforce)" dane_proxy "$(dane_conf enforce on)"
# A daemon that refuses the configuration (keys not implemented yet) would
# only make every check below wait for nothing.
kill -0 "$PROXY_PID" 2>/dev/null && grep -q "event=start" "$PROXY_LOG" ||
	{ say "  starttlsd did not start: part (b) not run"; tail -n 3 "$PROXY_LOG" >&2; finish; }
t0=$SECONDS
expect_pass c01 dane
expect_block c02 tlsa-invalid
expect_pass c03 dane
expect_pass c04 dane
expect_block c04w certificate-host-mismatch
expect_block c04r tlsa-invalid
expect_block c05a tlsa-invalid
expect_pass c05b dane
expect_pass c06 dane            # only unusable TLSA: TLS required, no authentication
expect_block c06s starttls-not-supported
expect_pass c07 none            # secure NODATA: no DANE, no STS published
# c07s: secure NODATA, MTA-STS enforce, valid cert: STS applies. With no policy
# cached the first message may go without one while it is fetched (RFC 8461
# section 5.1); once the policy host has served it, the next one has it.
ok "starttlsd c07s: first message delivered" send c07s
ok "starttlsd c07s: the policy was fetched from mta-sts.c07s.example" wait_for 15 grep -q "^mta-sts.c07s.example.*GET /.well-known/mta-sts.txt" "$DANE_OUT/sts.log"
sleep 0.5
expect_pass c07s mta-sts
expect_pass c08 none            # insecure delegation: no DANE
expect_block c09 dnssec-invalid
expect_block c10 dnssec-invalid
expect_block c10a dnssec-invalid
expect_block c11 dnssec-invalid
expect_block c12 dnssec-invalid
expect_pass c13 dane            # insecure MX, secure host (Postfix: "Trusted")
expect_block c13b tlsa-invalid
expect_pass c14 dane
expect_pass c14b dane
expect_block c15 starttls-not-supported
expect_block c16 dnssec-invalid
expect_pass c17 dane            # dialled address in no MX set, chain matches the MX's TLSA
expect_block c17b tlsa-invalid  # dialled address in no MX set, chain matches no TLSA
expect_block c29 tlsa-invalid   # DANE fails: a valid MTA-STS policy does not override it
expect_block c30 dnssec-invalid # TLSA SERVFAIL: no fallback to MTA-STS
ok "c29: the downgrade names DANE, not MTA-STS" bash -c "! grep event=downgrade '$PROXY_LOG' | grep ' domain=c29.example' | grep -q 'policy=mta-sts'"

# (18) one transaction, three domains: only the failing one is refused.
f=$(body c18a)
in_cli swaks --server "$(dane_ip c18a)" --port 25 --helo client.example.org --from sender@example.org \
	--to user@c18a.example,user@c18b.example,user@c08.example --data @"$f" --timeout 30 \
	>"$DANE_OUT/swaks-c18.out" 2>&1
ok "c18: RCPT user@c18b.example gets 450 4.7.5" test "$(rcpt_reply "$DANE_OUT/swaks-c18.out" user@c18b.example)" = "450 4.7.5"
ok "c18: RCPT user@c18a.example gets 250" bash -c "[[ '$(rcpt_reply "$DANE_OUT/swaks-c18.out" user@c18a.example)' == 250* ]]"
ok "c18: RCPT user@c08.example gets 250" bash -c "[[ '$(rcpt_reply "$DANE_OUT/swaks-c18.out" user@c08.example)' == 250* ]]"
ok "c18: stored once, for c18a and c08 only" wait_for 5 bash -c "m=\$(ls '$DANE_OUT'/srv-ee/msg-*.json | xargs grep -l 'user@c18a.example' | head -n 1); [ -n \"\$m\" ] && $PY -c 'import json,sys; r=json.load(open(sys.argv[1]))[\"rcpt_to\"]; sys.exit(0 if sorted(x.strip(\"<>\") for x in r)==[\"user@c08.example\",\"user@c18a.example\"] else 1)' \"\$m\""
ok "c18: downgrade for c18b only" wait_kv 5 dg_line c18b.example signal dane-failed policy dane action blocked tlsrpt tlsa-invalid
not_ok "c18: no downgrade for c18a" bash -c "grep event=downgrade '$PROXY_LOG' | grep -q ' domain=c18a.example'"
# (19) A multi-certificate server at an address starttlsd has not seen: without
# SNI it shows a key no TLSA matches (450); the secure answers teach starttlsd
# address -> mx.c19.example, so the retry sends SNI and gets the right key.
# sni_since N PATTERN: a line of srv-sni.log after its first N lines matches
# (the Postfix oracle's handshakes came earlier, with SNI).
sni_since() { tail -n +$(($1 + 1)) "$DANE_OUT/srv-sni.log" | grep -q -- "$2"; }
n=$(wc -l <"$DANE_OUT/srv-sni.log")
send c19
ok "c19: first contact, no SNI: RCPT gets 450 4.7.5" rcpt_450 c19
ok "c19: first contact: the server saw no SNI" sni_since "$n" "tls sni=None cert=exp"
ok "c19: first contact: downgrade tlsrpt=tlsa-invalid" wait_kv 5 dg_line c19.example signal dane-failed policy dane action blocked tlsrpt tlsa-invalid
# (A key-changed line may come, at info: the server's key for this address
# differs with SNI, and the pin from the first contact may be written by
# then. Not a failure of the policy.)
c19dg() { grep "event=downgrade" "$PROXY_LOG" | grep -v "signal=key-changed" | grep -c -E "dst=$(dane_ip c19):25 |domain=c19.example"; }
n19=$(c19dg)
n=$(wc -l <"$DANE_OUT/srv-sni.log")
ok "c19: the retry is delivered" send c19
ok "c19: the retry made a new connection with SNI mx.c19.example (the TLSA base domain)" sni_since "$n" "tls sni=mx.c19.example cert=ee"
ok "c19: stored over TLS with that SNI, byte-identical" wait_for 5 bash -c "m=\$(ls -t '$DANE_OUT'/srv-sni/msg-*.json 2>/dev/null | head -n 1); [ -n \"\$m\" ] && grep -q '\"sni\": \"mx.c19.example\"' \"\$m\" && cmp '$DANE_OUT/body-c19.expect' \"\${m%.json}.eml\""
ok "c19: the retry's session line policy=dane policy_met=yes" wait_kv 5 sess_line "$(dane_ip c19)" policy dane policy_met yes
ok "c19: no new downgrade for the retry" test "$(c19dg)" -eq "$n19"
say "  (enforce pass: $((SECONDS - t0)) s)"

# MTA-STS without DANE (unsigned zones): the policy host's certificate is
# checked against mta_sts_ca_file, the mail server's against ca_file.
sts_block() { # CASE TLSRPT MODE ACTION
	local c=$1 d; d=$(dane_domain "$1")
	send "$c"
	if [ "$4" = blocked ]; then
		ok "starttlsd $c (MTA-STS $3): RCPT gets 450 4.7.5" rcpt_450 "$c"
		ok "starttlsd $c: nothing stored" not_stored "$c"
	else
		ok "starttlsd $c (MTA-STS $3): delivered" wait_for 5 eval 'dane_msg '"$c"' >/dev/null'
	fi
	ok "starttlsd $c: event=downgrade signal=sts-failed policy=mta-sts mode=$3 action=$4 tlsrpt=$2" \
		wait_for 5 eval 'has_kv "$(dg_line '"$d"')" signal sts-failed policy mta-sts mode '"$3"' action '"$4"' tlsrpt '"$2"
	ok "starttlsd $c: session line policy=mta-sts policy_met=no" \
		wait_for 5 eval 'has_kv "$(sess_line '"$(dane_dial "$c")"')" policy mta-sts policy_met no'
}
sts_block s20 certificate-host-mismatch enforce blocked
sts_block s21 certificate-host-mismatch testing allowed
expect_pass s22 mta-sts
sts_block s23 certificate-not-trusted enforce blocked
# A policy announced that cannot be had: delivered as if none (RFC 8461 5),
# alerted and reported with the RFC 8460 type.
for c in s24:sts-policy-fetch-error s25:sts-webpki-invalid; do
	n=${c%%:*} r=${c#*:}
	ok "starttlsd $n (policy not to be had): delivered" send "$n"
	ok "starttlsd $n: event=downgrade signal=sts-failed policy=mta-sts action=allowed tlsrpt=$r" \
		wait_for 5 eval 'has_kv "$(dg_line '"$n.example"')" signal sts-failed policy mta-sts action allowed tlsrpt '"$r"
done

# A learned address: c01 passed above, so policyd learned its address
# (secure MX host, usable TLSA, a chain that matched). The next session to
# it sends the TLSA base domain as SNI and has its chain checked before the
# client's greeting: when the server's key no longer matches (here the
# address is redirected to the server with the expired certificate), the
# client gets 421 4.7.5 instead of a greeting and tries its next MX.
c01m=$(dane_msg c01)
ok "learned address: the first session sent no SNI (nothing known yet)" test "$(json "$c01m" sni)" = None
rm -f "$c01m" "${c01m%.json}.eml"
ok "learned address: the next session is relayed" send c01
ok "learned address: ... and sent the TLSA base domain as SNI" wait_for 5 eval 'm=$(dane_msg c01) && [ "$(json "$m" sni)" = mx.c01.example ]'
in_srv nft -f - <<NFT
table ip danemove {
	chain pre {
		type nat hook prerouting priority -100; policy accept;
		ip daddr $(dane_ip c01) tcp dport 25 dnat to $(dane_ip c03)
	}
}
NFT
in_cli swaks --server "$(dane_dial c01)" --port 25 --helo client.example.org --quit-after connect \
	--timeout 30 >"$DANE_OUT/swaks-c01-moved.out" 2>&1
in_srv nft delete table ip danemove
ok "learned address, another key: 421 4.7.5 instead of the greeting" grep -Eq '<\*\* +421 4\.7\.5' "$DANE_OUT/swaks-c01-moved.out"
ok "learned address: event=downgrade signal=dane-failed before the greeting, mx named" \
	wait_for 5 eval 'has_kv "$(grep event=downgrade "$PROXY_LOG" | grep "learned for this address" | tail -n 1)" signal dane-failed policy dane action blocked tlsrpt tlsa-invalid mx mx.c01.example'
ok "learned address: session line action=blocked policy=dane policy_met=no" \
	wait_for 5 eval 'has_kv "$(grep event=session "$PROXY_LOG" | grep "dst=$(dane_dial c01):25" | grep "action=blocked" | tail -n 1)" policy dane policy_met no'
# An address two MX names share (c18a matches, c18b does not): learned from
# the match only, so c18b's records never block c18a's mail before the greeting.
ok "shared address: c18a still delivered after c18b failed (swaks: 250 to the end of DATA)" send c18a

# TLS-RPT (tlsrpt = on): every domain judged went to policyd's aggregate.
CTL=${STARTTLSCTL:-$(dirname "$STARTTLSD")/starttlsctl}
ok "tlsrpt: starttlsctl tlsrpt show prints today's reports" bash -c "'$CTL' --state-dir '$STATE' tlsrpt show >'$DANE_OUT/tlsrpt.json' 2>'$DANE_OUT/tlsrpt.err'"
ok "tlsrpt: c01 counted as successes under a tlsa policy" "$PY" -c '
import json, sys
reps = json.load(open(sys.argv[1]))
reps = reps if isinstance(reps, list) else [reps]
pol = {}
for r in reps:
    for p in r["policies"]:
        pol[p["policy"]["policy-domain"]] = p
ok = pol["c01.example"]["policy"]["policy-type"] == "tlsa" and pol["c01.example"]["summary"]["total-successful-session-count"] >= 1
f = pol["c02.example"]["failure-details"]
ok = ok and pol["c02.example"]["summary"]["total-failure-session-count"] >= 1 and any(x["result-type"] == "tlsa-invalid" and x["receiving-ip"] == sys.argv[2] for x in f)
sys.exit(0 if ok else 1)' "$DANE_OUT/tlsrpt.json" "$(dane_ip c02)"

# policyd killed: the master restarts it and hands the workers new sockets;
# mail to a DANE domain goes on.
workers=$(sed -nE 's/.*event=worker action=started pid=([0-9]+).*/\1/p' "$PROXY_LOG" | tr '\n' ' ')
pdpid=$(ps -o pid= --ppid "$PROXY_PID" | tr -d ' ' | while read -r p; do
	case " $workers " in *" $p "*) ;; *) echo "$p" ;; esac; done | head -n 1)
ok "policyd found beside the workers" test -n "$pdpid"
kill -KILL "${pdpid:-0}" 2>/dev/null
ok "policyd killed: the master says so and restarts it" \
	wait_for 10 grep -q "event=policyd msg=\"exited (pid $pdpid, signal SIGKILL): restarted" "$PROXY_LOG"
ok "policyd restarted: started again" wait_for 10 eval '[ "$(grep -c "event=policyd msg=started" "$PROXY_LOG")" -ge 2 ]'
sleep 1
ok "after the restart: a DANE domain still judged (c18a passes)" bash -c "
	in_cli() { ip netns exec $NS_CLI \"\$@\"; }
	ip netns exec $NS_CLI swaks --server $(dane_dial c18a) --port 25 --helo client.example.org --from sender@example.org \
		--to user@c18a.example --timeout 30 >'$DANE_OUT/swaks-restart.out' 2>&1"
ok "after the restart: policy=dane policy_met=yes" wait_for 5 eval 'has_kv "$(sess_line $(dane_dial c18a))" policy dane policy_met yes'
ok "starttlsd stops cleanly" proxy_stop

# Monitor: the same failures are logged and the mail goes through.
: >"$PROXY_LOG"
rm -f "$DANE_OUT"/srv-*/msg-*
rm -rf "$STATE"
ok "starttlsd starts (monitor, mta_sts = off)" dane_proxy "$(dane_conf monitor off)"
expect_block c02 tlsa-invalid monitor
expect_block c09 dnssec-invalid monitor
expect_block c15 starttls-not-supported monitor
expect_pass c01 dane
ok "starttlsd stops cleanly (monitor)" proxy_stop

finish
