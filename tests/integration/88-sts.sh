#!/usr/bin/env bash
# proxy/stsfetch.c (MTA-STS policy discovery, fetch, cache; RFC 8461) through
# build/stsq (tests/stsq.c), the dane.md §4 cases 20-28 that belong to
# fetching, in namespaces with documentation addresses only:
#   srv: one tests/peers/httpsd.py per recipient domain D, as mta-sts.D on
#        198.51.100.80-.97 port 8443 (certificates from mkstscerts.sh)
#   gw:  unbound on 192.0.2.1 answering the _mta-sts TXT and mta-sts A
#        records from local data (TTL 0), changed during the test through
#        unbound-control; its query log shows what was asked
#   cli: stsq, one process for the whole run (memory cache, backoff and
#        flights carry across commands), then a second one on the same
#        state_dir (the LMDB copy)
# Timings shortened for the test: recheck 1 s, backoff 3 s, refresh tick
# 0.5 s, fetch timeout 1.5 s (15 s under valgrind). The TXT records are not DNSSEC-signed
# (insecure answers; 91-dnssec.sh covers validation).
. "$(dirname "$0")/../lib/common.sh"

need_root
command -v unbound-control >/dev/null || [ -x /usr/sbin/unbound-control ] || skip "unbound not installed (tests/deps.sh)"
case $STARTTLSD in
*valgrind*) STSQ=$(dirname "${VALGRIND_BIN:-$TOP/build/starttlsd}")/stsq ;;
*) STSQ=$(dirname "$STARTTLSD")/stsq ;;
esac
[ -x "$STSQ" ] || { say "no $STSQ (make all)"; not_ok "stsq built" true; finish; }
VG=()
FT=1500   # the fetch timeout (ms); memcheck makes 18 handshakes at once slow
case $STARTTLSD in
*valgrind*) VG=(valgrind -q --error-exitcode=97 --leak-check=full
	--errors-for-leak-kinds=definite --log-file="$T_TMP/vg.%p.log"); FT=15000 ;;
esac

DOMAINS="enforce testing none two split lapse fail redirect nf html big slow wrongname expired invalid refresh shared crlf"
C=$T_TMP/certs
names=(); for d in $DOMAINS; do names+=("mta-sts.$d.example"); done
bash "$PEERS/mkstscerts.sh" "$C" "${names[@]}" >"$T_TMP/mkcerts.out" 2>&1
ok "test certificates made" test -s "$C/good.crt" -a -s "$C/expired.crt"

topo_up
declare -A IP
i=80
for d in $DOMAINS; do
	IP[$d]=198.51.100.$i
	ip -n "$NS_SRV" addr add "${IP[$d]}/24" dev wan0
	i=$((i + 1))
done

P=$T_TMP/pol
mkdir -p "$P"
policy() { # NAME MODE MAX_AGE EOL MX...: a policy file
	local n=$1 mode=$2 age=$3 eol=$4; shift 4
	{
		printf 'version: STSv1%s' "$eol"
		printf 'mode: %s%s' "$mode" "$eol"
		for m in "$@"; do printf 'mx: %s%s' "$m" "$eol"; done
		printf 'max_age: %s%s' "$age" "$eol"
	} >"$P/$n.txt"
}
CRLF=$'\r\n'; LF=$'\n'
policy enforce enforce 3600 "$LF" mx1.enforce.example '*.enforce.example'
policy enforce2 none 3600 "$LF" mx1.enforce.example
policy testing testing 3600 "$LF" mx.testing.example
policy crlf enforce 3600 "$CRLF" mx.crlf.example
policy none none 3600 "$LF"
for d in two split fail redirect nf html big slow wrongname expired shared; do
	policy $d enforce 3600 "$LF" "mx.$d.example"
done
policy lapse enforce 2 "$LF" mx.lapse.example
policy refresh enforce 4 "$LF" mx.refresh.example
printf 'version: STSv1\nmode: enforce\nmx: mx.invalid.example\n' >"$P/invalid.txt"   # no max_age

srv() { # DOMAIN CERT MODE
	local d=$1 cert=$2 mode=$3
	echo "$mode" >"$P/$d.mode"
	in_srv "$PY" "$PEERS/httpsd.py" --listen "${IP[$d]}:8443" \
		--cert "$C/$cert.crt" --key "$C/$cert.key" --file "$P/$d.txt" \
		--mode-file "$P/$d.mode" --log "$T_TMP/req-$d.log" >"$T_TMP/httpsd-$d.out" 2>&1 &
	T_PIDS+=($!); disown $!
}
for d in enforce testing none two split lapse fail invalid refresh shared crlf; do srv $d good file; done
srv redirect good redirect; srv nf good 404; srv html good html; srv big good big; srv slow good slow
srv wrongname wrongname file; srv expired expired file
for d in $DOMAINS; do
	wait_for 10 grep -q ready "$T_TMP/httpsd-$d.out" || say "httpsd $d did not start: $(cat "$T_TMP/httpsd-$d.out")"
done
reqs() { [ -f "$T_TMP/req-$1.log" ] && wc -l <"$T_TMP/req-$1.log" || echo 0; }

# ---- DNS ----------------------------------------------------------------------------
txt() { # DOMAIN ID
	echo "local-data: '_mta-sts.$1.example. 0 IN TXT \"v=STSv1; id=$2\"'"
}
{
	cat <<-EOF
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
		log-queries: yes
		do-daemonize: no
		num-threads: 1
		so-reuseport: no
		module-config: "iterator"
		verbosity: 1
		local-zone: "example." static
	EOF
	for d in $DOMAINS; do echo "local-data: 'mta-sts.$d.example. 0 IN A ${IP[$d]}'"; done
	for d in enforce testing none lapse fail redirect nf html big slow wrongname expired invalid refresh shared crlf; do
		txt $d ${d}1
	done
	# two records that both start with v=STSv1: no policy (RFC 8461 3.1)
	echo "local-data: '_mta-sts.two.example. 0 IN TXT \"v=STSv1; id=two1\"'"
	echo "local-data: '_mta-sts.two.example. 0 IN TXT \"v=STSv1; id=two2\"'"
	# one record split in two character-strings: joined with nothing between
	echo "local-data: '_mta-sts.split.example. 0 IN TXT \"v=STSv1; i\" \"d=split1\"'"
	cat <<-EOF
	remote-control:
		control-enable: yes
		control-interface: "$T_TMP/unbound.ctl"
		control-use-cert: no
	EOF
} | sed 's/^\t//' >"$T_TMP/unbound.conf"
in_gw unbound -d -c "$T_TMP/unbound.conf" >"$T_TMP/unbound.out" 2>&1 &
T_PIDS+=($!); disown $!
uc() { in_gw unbound-control -c "$T_TMP/unbound.conf" "$@" >>"$T_TMP/uc.out" 2>&1; }
ok "unbound up, remote control answers" wait_for 10 uc status
echo "anchor.example.org. IN DS 12345 13 2 $(printf '%064d' 0 | tr 0 a)" >"$T_TMP/ta.ds"
# txt_set D ID: replace the TXT record of _mta-sts.D.example (local_data alone adds one)
txt_set() {
	uc local_data_remove "_mta-sts.$1.example."
	uc local_data "_mta-sts.$1.example. 0 IN TXT \"v=STSv1; id=$2\""
}

# ---- stsq -----------------------------------------------------------------------------
STATE=$T_TMP/ststate
mkdir -p "$STATE"
OUT=$T_TMP/stsq.out
N=0
stsq_start() { # OUT-FILE
	rm -f "$T_TMP/stsq.in"; mkfifo "$T_TMP/stsq.in"
	in_cli "${VG[@]}" "$STSQ" -a "$T_TMP/ta.ds" -f $GWL4 -c "$C/ca.crt" -p 8443 -s "$STATE" \
		-T $FT -B 3 -R 1 -K 500 <"$T_TMP/stsq.in" >"$1" 2>>"$T_TMP/stsq.err" &
	STSQ_PID=$!
	exec 7>"$T_TMP/stsq.in"
	wait_for 20 grep -q '^ready' "$1"
}
send() { echo "$*" >&7; }
# get DOMAIN [WAIT_MS]: one stsf_get; GOT is its answer line
get() {
	N=$((N + 1))
	send get "$1.example" "${2:-$((FT + 5000))}"
	wait_for 25 grep -q "^#$N " "$OUT"
	GOT=$(grep "^#$N " "$OUT")
}
is() { grep -Eq -- "$1" <<<"$GOT"; }
ans() { grep "^#$1 " "$OUT"; }
ans_is() { ans "$1" | grep -Eq -- "$2"; }

ok "stsq started (resolver, LMDB state_dir)" stsq_start "$OUT"

# ---- round 1: every domain at once -----------------------------------------------------
declare -A NUM
for d in enforce testing none two split lapse fail redirect nf html big slow wrongname expired invalid refresh crlf; do
	N=$((N + 1)); NUM[$d]=$N
	send get "$d.example" $((FT + 5000))
done
N=$((N + 1)); NUM[sub]=$N; send get sub.enforce.example 8000
N=$((N + 1)); NUM[shared]=$N; send getn 3 shared.example $((FT + 5000)); N=$((N + 2))
ok "round 1: every get answered" wait_for 40 eval '[ "$(grep -c "^#" "$OUT")" -ge $N ]'
ok "(20) enforce parsed: mode, id, max_age, mx patterns" ans_is "${NUM[enforce]}" 'enforce.example have=1 mode=enforce id=enforce1 max_age=3600 expires_in=(3599|3600) mx=mx1.enforce.example,\*.enforce.example fail=ok'
ok "(22) testing parsed (LF lines)" ans_is "${NUM[testing]}" 'have=1 mode=testing id=testing1 .*mx=mx.testing.example fail=ok'
ok "(27) CRLF lines parsed" ans_is "${NUM[crlf]}" 'have=1 mode=enforce id=crlf1 .*mx=mx.crlf.example fail=ok'
ok "(22) none parsed (no mx needed)" ans_is "${NUM[none]}" 'have=1 mode=none id=none1 '
ok "(24) two v=STSv1 TXT records: no policy" ans_is "${NUM[two]}" 'two.example have=0 fail=ok'
ok "(24) two v=STSv1: nothing fetched" test "$(reqs two)" = 0
ok "(24) split TXT strings joined: id=split1, fetched" ans_is "${NUM[split]}" 'have=1 mode=enforce id=split1 '
ok "(26) redirect: no policy, fetch error (301 not followed)" ans_is "${NUM[redirect]}" 'have=0 fail=fetch-error why="HTTP status 301"'
ok "(26) 404: fetch error" ans_is "${NUM[nf]}" 'have=0 fail=fetch-error why="HTTP status 404"'
ok "(26) text/html: fetch error" ans_is "${NUM[html]}" 'have=0 fail=fetch-error why="Content-Type .*text/html.* is not text/plain"'
ok "(26) 70 KiB: fetch error (too large)" ans_is "${NUM[big]}" 'have=0 fail=fetch-error why="too-large'
ok "(26) silent server: fetch error (timeout)" ans_is "${NUM[slow]}" 'have=0 fail=fetch-error why="timeout'
ok "(26) wrong certificate name: webpki-invalid" ans_is "${NUM[wrongname]}" 'have=0 fail=webpki-invalid why="cert-name'
ok "(21) expired certificate: webpki-invalid" ans_is "${NUM[expired]}" 'have=0 fail=webpki-invalid why="cert-expired'
ok "(27) no max_age: policy-invalid" ans_is "${NUM[invalid]}" 'have=0 fail=policy-invalid why="policy: '
ok "(28) sub.enforce.example: no policy of its own, none from the parent" ans_is "${NUM[sub]}" 'sub.enforce.example have=0 fail=ok'
ok "(28) only _mta-sts.sub.enforce.example was asked, never a parent" bash -c "[ \$(grep -c 'info: 192.0.2.10 _mta-sts.sub.enforce.example. TXT IN' '$T_TMP/unbound.log') -ge 1 ] && [ \$(grep -c 'info: 192.0.2.10 _mta-sts.enforce.example. TXT IN' '$T_TMP/unbound.log') = 1 ]"
ok "three gets of one domain at once: three answers" test "$(grep -c ' shared.example have=1 mode=enforce id=shared1 ' "$OUT")" = 3
ok "three gets of one domain at once: one fetch" test "$(reqs shared)" = 1
ok "enforce fetched once" test "$(reqs enforce)" = 1
ok "the fetch asked for /.well-known/mta-sts.txt at mta-sts.D" grep -q "^GET /.well-known/mta-sts.txt host=mta-sts.enforce.example:8443 " "$T_TMP/req-enforce.log"
# lapse and fail: their servers now refuse (404)
echo 404 >"$P/lapse.mode"; echo 404 >"$P/fail.mode"
T_LAPSE=$SECONDS

# ---- (24) same id: no refetch; new id: refetch; none replaces enforce at once --------------
sleep 1.2   # past the 1 s recheck: the TXT is asked again
get enforce
ok "(24) same id: the cached policy" is 'have=1 mode=enforce id=enforce1 '
ok "(24) same id: no refetch" test "$(reqs enforce)" = 1
ok "(24) same id: but the TXT was asked again" test "$(grep -c 'info: 192.0.2.10 _mta-sts.enforce.example. TXT IN' "$T_TMP/unbound.log")" = 2
cp "$P/enforce2.txt" "$P/enforce.txt"
txt_set enforce enforce2
sleep 1.2
get enforce
ok "(24) new id: the cached policy answers at once (fetch in the background)" is 'have=1 mode=enforce id=enforce1 '
ok "(24) new id: refetched" wait_for 5 eval '[ "$(reqs enforce)" = 2 ]'
sleep 0.3
get enforce
ok "(22) mode none replaces enforce at once (new id)" is 'have=1 mode=none id=enforce2 .* fail=ok'

# ---- (25) fetch failure keeps the cache; backoff per (domain, id) -----------------------------
txt_set fail fail2
sleep 1.2
get fail
ok "(25) new id, server failing: the cached policy in force" is 'have=1 mode=enforce id=fail1 '
ok "(25) the refetch was tried" wait_for 5 eval '[ "$(reqs fail)" = 2 ]'
sleep 0.3
get fail
ok "(25) fetch failure: cached policy kept, the failure reported" is 'have=1 mode=enforce id=fail1 .*fail=fetch-error why="HTTP status 404"'
T_FAIL2=$SECONDS
sleep 1.2
get fail
sleep 0.5
ok "(25) backoff: no new fetch for the same id within it" test "$(reqs fail)" = 2
ok "(25) backoff: still the cached policy" is 'have=1 mode=enforce id=fail1 '
sleep $((4 - (SECONDS - T_FAIL2) > 0 ? 4 - (SECONDS - T_FAIL2) : 0)).2
get fail
ok "(25) after the backoff: fetched again" wait_for 5 eval '[ "$(reqs fail)" = 3 ]'

# ---- (24) TXT gone: the cache stays in force -----------------------------------------------
uc local_data_remove "_mta-sts.enforce.example."
sleep 1.2
get enforce
ok "(24) TXT gone: the cached policy still in force" is 'have=1 mode=none id=enforce2 '
ok "(24) TXT gone: nothing fetched" test "$(reqs enforce)" = 2

# ---- (25) max_age lapses: the policy is dropped; proactive refresh ----------------------------
sleep $((3 - (SECONDS - T_LAPSE) > 0 ? 3 - (SECONDS - T_LAPSE) : 0)).2
get lapse
ok "(25) max_age 2 s lapsed (refresh failing): policy dropped" is 'lapse.example have=0 '
get refresh 0
ok "(25) max_age 4 s, refreshed before it expires: still in force" is 'refresh.example have=1 mode=enforce id=refresh1 '
ok "(25) proactive refresh fetched it again" test "$(reqs refresh)" -ge 2

# ---- wait_ms: the answer comes in time, the fetch goes on --------------------------------------
sleep 1.5   # slow.example's backoff (3 s since round 1) is over
before=$(reqs slow)
t0=$(date +%s%N)
get slow 300
t1=$(date +%s%N)
ok "wait_ms 300: answered with what is known" is 'slow.example have=0 '
ok "wait_ms 300: within a second" test $(((t1 - t0) / 1000000)) -lt 1000
ok "wait_ms 300: the fetch went on" wait_for 3 eval '[ "$(reqs slow)" -gt $before ]'

# ---- cancel: no answer ------------------------------------------------------------------------
send cancel testing.example
ok "stsf_cancel: acknowledged" wait_for 5 grep -q ' testing.example cancelled' "$OUT"

send quit
exec 7>&-
wait "$STSQ_PID"
ok "stsq: every get answered once, none inside stsf_get, none cancelled answered (exit 0)" test $? -eq 0
ok "stsq: sts.mdb written in state_dir" test -s "$STATE/sts.mdb"

# ---- a restart reads the policies back from LMDB ---------------------------------------------
OUT=$T_TMP/stsq2.out; N=0
ok "second stsq on the same state_dir" stsq_start "$OUT"
get enforce 0
ok "after restart: enforce.example's policy from LMDB at once" is 'have=1 mode=none id=enforce2 '
get crlf 0
ok "after restart: crlf.example's policy from LMDB" is 'have=1 mode=enforce id=crlf1 .*mx=mx.crlf.example'
get lapse 0
ok "after restart: the lapsed policy was not kept" is 'lapse.example have=0'
ok "after restart: nothing fetched for enforce" test "$(reqs enforce)" = 2
send quit
exec 7>&-
wait "$STSQ_PID"
ok "second stsq: exit 0" test $? -eq 0

ok "no sanitizer report from stsq" bash -c "! grep -Eq 'AddressSanitizer|LeakSanitizer|runtime error:' '$T_TMP/stsq.err'"
if [ ${#VG[@]} -gt 0 ]; then
	ok "valgrind: no report from stsq" bash -c "! grep -q . '$T_TMP'/vg.*.log"
fi
[ "$T_FAIL" -gt 0 ] && { cat "$T_TMP/stsq.out" "$T_TMP/stsq.err" >&2; }
finish
