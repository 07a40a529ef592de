# The DANE / MTA-STS test bed (source after common.sh, before topo_up is not
# needed: dane_up calls nothing of common.sh but the namespace runners).
#
# What dane_up builds, all offline, in the test's own namespaces:
#   * certificates made now with the openssl CLI (DANE_C):
#       ee     self-signed leaf (DANE-EE)
#       wrong  a key no server uses (TLSA that must not match)
#       exp    self-signed, expired in 2020, named wrong.invalid
#       root -> inter -> ta    leaf for mx.c04, mx.c04r, mx.c07s, mx.c29, mx.c30
#                              and mta-sts.c07s/c29/c30 (chain sent: leaf + inter)
#       root -> inter -> taw   leaf for mx.elsewhere.example only (wrong SAN)
#   * a private "example." tree signed with ldnsutils (DANE_Z): one zone per
#     case of /work/shared/dane.md section 4 (table DANE_CASES below), and
#     hosts.example (secure), ins.example (insecure) for shared MX hosts.
#     DANE_ANCHOR is the DS of example., the only trust anchor.
#   * srv: nsd on 198.51.100.53; 198.51.100.55 drops all DNS (nft in srv:
#     queries time out, "the server drops TLSA queries", case 16); case 30's
#     TLSA sub-zone is delegated to nsd, which does not serve it (REFUSED:
#     a lame delegation, SERVFAIL at once).
#   * gw: unbound on 192.0.2.1 WITHOUT validation (for starttlsd, which
#     validates itself), and a second, VALIDATING unbound on 127.0.0.1 with
#     DANE_ANCHOR (for Postfix, which trusts the AD bit).
#   * srv: one tests/peers/smtpd.py per certificate kind (ee exp ta taw plain),
#     each listening on the addresses of its cases; an HTTPS MTA-STS policy
#     host on 198.51.100.80:443 (certificate from the same root).
#
# Per case: dane_ip CASE (the MX address the case's mail is dialled to),
# dane_dial CASE (the address swaks dials: differs for case 17), dane_kind,
# dane_finger CASE (posttls-finger from gw, bypassing the interception, with
# the validating resolver; output in DANE_OUT/finger-CASE.out, verdict printed),
# dane_send CASE [swaks args] (one message from cli to user@CASE.example,
# through starttlsd on gw when the interception is on).

DANE_NS4=198.51.100.53     # nsd
DANE_DROP4=198.51.100.55   # DNS silently dropped
DANE_STS4=198.51.100.80    # HTTPS mta-sts policy host
DANE_VAL=127.0.0.1         # gw: validating unbound for Postfix
DANE_C=$T_TMP/dane-certs
DANE_Z=$T_TMP/dane-zones
DANE_OUT=$T_TMP/dane
DANE_ANCHOR=$DANE_Z/anchor.ds
DANE_STS_ID=20261207T0100

# Cases: name kind mx-address [dial-address]. The recipient domain is
# NAME.example unless the zone body says otherwise; the zone bodies are in
# dane_zones.
DANE_CASES=(
	"c01 ee 198.51.100.101"      # 3 1 1 matches the leaf
	"c02 ee 198.51.100.102"      # 3 1 1 of another key
	"c03 exp 198.51.100.103"     # DANE-EE: expired, wrong name, still matches
	"c04 ta 198.51.100.104"      # 2 1 1 intermediate, right SAN
	"c04w taw 198.51.100.105"    # 2 1 1 intermediate, wrong SAN
	"c04r ta 198.51.100.106"     # 2 1 1 of the root, which is not sent
	"c05a ee 198.51.100.107"     # 3 1 2 wrong + 3 1 1 right: sha512 wins, fail
	"c05b ee 198.51.100.108"     # 3 1 2 right + 3 1 1 junk: pass
	"c06 ee 198.51.100.109"      # only 0 1 1, 1 1 1, 3 1 255: unusable
	"c06s plain 198.51.100.110"  # the same, no STARTTLS
	"c07 ee 198.51.100.111"      # secure NODATA at the TLSA name
	"c07s ta 198.51.100.129"     # the same, with MTA-STS enforce and a valid cert: STS applies
	"c08 ee 198.51.100.112"      # insecure delegation (no DS), TLSA present
	"c09 ee 198.51.100.113"      # TLSA rdata edited after signing
	"c10 ee 198.51.100.114"      # TLSA RRSIG expired in 2020
	"c10a ee 198.51.100.115"     # A RRSIG expired in 2020
	"c11 ee 198.51.100.116"      # DS in example. matches no key of c11
	"c12 ee 198.51.100.117"      # MX rdata edited after signing
	"c13 ee 198.51.100.118"      # insecure MX -> secure host, TLSA matches
	"c13b ee 198.51.100.119"     # insecure MX -> secure host, TLSA wrong
	"c14 ee 198.51.100.120"      # MX host is a secure CNAME; TLSA at target right, at alias wrong
	"c14b ee 198.51.100.121"     # secure CNAME into an insecure zone; TLSA at alias right
	"c15 plain 198.51.100.122"   # 3 1 1 published, STARTTLS stripped
	"c16 ee 198.51.100.123"      # TLSA zone's server drops queries (timeout)
	"c17 ee 198.51.100.124 198.51.100.171"   # dialled address in no MX set, chain matches
	"c17b ee 198.51.100.125 198.51.100.172"  # dialled address in no MX set, chain does not match
	"c18a ee 198.51.100.126"     # multi-domain: this one matches
	"c18b ee 198.51.100.126"     # multi-domain: same address, TLSA wrong
	"c19 sni 198.51.100.130"     # the right key only with SNI mx.c19.example (else the expired cert)
	"c29 ta 198.51.100.127"      # DANE mismatch + MTA-STS enforce with a valid cert
	"c30 ta 198.51.100.128"      # TLSA SERVFAIL + MTA-STS enforce with a valid cert
)
# Extra addresses a kind listens on beyond its cases' MX addresses.
DANE_EXTRA_ee="198.51.100.171 198.51.100.143"
DANE_EXTRA_ta="198.51.100.140 198.51.100.141 198.51.100.142 198.51.100.144 198.51.100.145"
# MTA-STS without DANE (unsigned zones), through starttlsd only (no Postfix
# oracle: Postfix 3.7 has no MTA-STS): name mismatch under enforce, the same
# under testing, a wildcard pattern that matches, an untrusted certificate.
STS_CASES=(
	"s20 ta 198.51.100.140"      # enforce, mx.s20 not in the certificate: 450
	"s21 ta 198.51.100.141"      # testing, the same: delivered, alerted
	"s22 ta 198.51.100.142"      # enforce, mx: *.s22.example, cert mx.s22: pass
	"s23 ee 198.51.100.143"      # enforce, self-signed certificate: 450
	"s24 ta 198.51.100.144"      # announced (TXT), the policy host answers 404: delivered, sts-policy-fetch-error
	"s25 ta 198.51.100.145"      # announced, the policy host's certificate lacks mta-sts.s25: sts-webpki-invalid
)
DANE_EXTRA_exp="198.51.100.172"

dane_field() { # CASE N: field N (1-based) of the case's entry
	local c=$1 n=$2 f e
	for e in "${DANE_CASES[@]}" "${STS_CASES[@]}"; do
		read -r -a f <<<"$e"
		[ "${f[0]}" = "$c" ] && { echo "${f[$((n - 1))]:-}"; return 0; }
	done
	return 1
}
dane_kind() { dane_field "$1" 2; }
dane_ip() { dane_field "$1" 3; }
dane_dial() { local d; d=$(dane_field "$1" 4); echo "${d:-$(dane_ip "$1")}"; }
dane_domain() { echo "$1.example"; }

# ---- certificates ---------------------------------------------------------------
_dane_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$DANE_C/$1.key" 2>/dev/null; }
# _dane_spki CERT ALG: hex digest (sha256/sha512) of the certificate's SubjectPublicKeyInfo
_dane_spki() {
	openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER |
		openssl dgst "-$2" -binary | od -An -v -tx1 | tr -d ' \n'
}
_dane_spki_key() { # KEY ALG: the same for a bare key
	openssl pkey -in "$1" -pubout -outform DER | openssl dgst "-$2" -binary | od -An -v -tx1 | tr -d ' \n'
}
dane_certs() {
	mkdir -p "$DANE_C"
	local c=$DANE_C k
	for k in ee wrong exp root inter ta taw; do _dane_key $k || return 1; done
	openssl req -new -x509 -key "$c/ee.key" -subj "/CN=ee.dane.invalid" -days 30 -out "$c/ee.crt" 2>/dev/null || return 1
	# Expired and wrongly named: openssl ca takes explicit dates.
	mkdir -p "$c/db" && : >"$c/db/index" && echo 01 >"$c/db/serial"
	cat >"$c/ca.cnf" <<-EOF
	[ca]
	default_ca = c
	[c]
	database = $c/db/index
	serial = $c/db/serial
	new_certs_dir = $c/db
	default_md = sha256
	policy = p
	unique_subject = no
	copy_extensions = copy
	[p]
	commonName = supplied
	EOF
	openssl req -new -key "$c/exp.key" -subj "/CN=wrong.invalid" -addext "subjectAltName=DNS:wrong.invalid" \
		-out "$c/exp.csr" 2>/dev/null &&
		openssl ca -batch -config "$c/ca.cnf" -selfsign -keyfile "$c/exp.key" -in "$c/exp.csr" \
			-startdate 20200101000000Z -enddate 20200201000000Z -out "$c/exp.crt" >/dev/null 2>&1 || return 1
	openssl req -new -x509 -key "$c/root.key" -subj "/CN=starttlsd DANE test root" -days 30 \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
		-out "$c/root.crt" 2>/dev/null || return 1
	printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n' >"$c/ca.ext"
	_dane_sign inter "/CN=starttlsd DANE test intermediate" root "$c/ca.ext" || return 1
	printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' \
		"DNS:mx.c04.example,DNS:mx.c04r.example,DNS:mx.c07s.example,DNS:mx.c29.example,DNS:mx.c30.example,DNS:mta-sts.c07s.example,DNS:mta-sts.c29.example,DNS:mta-sts.c30.example,DNS:mx.s22.example,DNS:mta-sts.s20.example,DNS:mta-sts.s21.example,DNS:mta-sts.s22.example,DNS:mta-sts.s23.example,DNS:mta-sts.s24.example" >"$c/ta.ext"
	_dane_sign ta "/CN=mx.c04.example" inter "$c/ta.ext" || return 1
	printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:mx.elsewhere.example\n' >"$c/taw.ext"
	_dane_sign taw "/CN=mx.elsewhere.example" inter "$c/taw.ext" || return 1
	# What the servers send: the leaf and the intermediate, never the root.
	cat "$c/ta.crt" "$c/inter.crt" >"$c/ta.chain"
	cat "$c/taw.crt" "$c/inter.crt" >"$c/taw.chain"
	cp "$c/ee.crt" "$c/ee.chain"; cp "$c/exp.crt" "$c/exp.chain"
	# A CApath for posttls-finger -P (hashed links).
	mkdir -p "$c/capath" && cp "$c/root.crt" "$c/capath/" && openssl rehash "$c/capath" 2>/dev/null ||
		ln -sf root.crt "$c/capath/$(openssl x509 -in "$c/root.crt" -noout -hash).0"
}
_dane_sign() { # NAME SUBJECT ISSUER EXTFILE
	local c=$DANE_C
	openssl req -new -key "$c/$1.key" -subj "$2" -out "$c/$1.csr" 2>/dev/null &&
		openssl x509 -req -in "$c/$1.csr" -CA "$c/$3.crt" -CAkey "$c/$3.key" \
			-set_serial "0x$(openssl rand -hex 8)" -days 30 -sha256 -extfile "$4" -out "$c/$1.crt" 2>/dev/null
}

# ---- zones ----------------------------------------------------------------------
_dane_zone() { # NAME BODY: an unsigned zone file with SOA and NS
	cat >"$DANE_Z/$1.zone" <<-EOF
	\$ORIGIN $1.
	\$TTL 300
	@ IN SOA ns.example. hostmaster.example. 1 3600 600 86400 300
	@ IN NS ns.example.
	$2
	EOF
}
_dane_keygen() { # NAME: a KSK-flagged ECDSA P-256 key that signs everything; prints its base name
	(cd "$DANE_Z" && ldns-keygen -a ECDSAP256SHA256 -k "$1")
}
# _dane_sign_zone NAME [expired]: NAME.zone -> NAME.zone.signed; its DS goes to parent.ds
_dane_sign_zone() {
	local k
	k=$(_dane_keygen "$1") || return 1
	if [ "${2:-}" = expired ]; then
		(cd "$DANE_Z" && ldns-signzone -i 20191201000000 -e 20200101000000 -f "$1.zone.expired" "$1.zone" "$k") || return 1
	fi
	(cd "$DANE_Z" && ldns-signzone "$1.zone" "$k") || return 1
	cat "$DANE_Z/$k.ds" >>"$DANE_Z/parent.ds"
}
# _dane_expire NAME TYPE: replace the RRSIGs over TYPE in NAME.zone.signed by expired ones
_dane_expire() {
	local f=$DANE_Z/$1.zone.signed re="RRSIG[[:space:]]+$2[[:space:]]"
	grep -Ev "$re" "$f" >"$f.new" && grep -E "$re" "$DANE_Z/$1.zone.expired" >>"$f.new" && mv "$f.new" "$f"
	grep -Eq "$re.* 20200101000000 " "$f"
}

dane_zones() {
	mkdir -p "$DANE_Z"
	: >"$DANE_Z/parent.ds"
	local c=$DANE_C
	local EE256 EE512 WR256 WR512 EXP256 INTER ROOT z body
	EE256=$(_dane_spki "$c/ee.crt" sha256); EE512=$(_dane_spki "$c/ee.crt" sha512)
	WR256=$(_dane_spki_key "$c/wrong.key" sha256); WR512=$(_dane_spki_key "$c/wrong.key" sha512)
	EXP256=$(_dane_spki "$c/exp.crt" sha256)
	INTER=$(_dane_spki "$c/inter.crt" sha256); ROOT=$(_dane_spki "$c/root.crt" sha256)
	local JUNK=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff
	DANE_SIGNED=() DANE_PLAIN=()
	# std NAME TLSA-LINES...: MX -> mx.NAME, A -> the case's address
	std() {
		local n=$1; shift
		local b="@ IN MX 10 mx
mx IN A $(dane_ip "$n")" t
		for t in "$@"; do b="$b
_25._tcp.mx IN TLSA $t"; done
		printf '%s\n' "$b"
	}
	for z in c01 c02 c03 c04 c04w c04r c05a c05b c06 c06s c07 c07s c09 c10 c10a c11 c12 c14 c14b c15 c16 c17 c17b c18a c18b c19 c29 c30; do
		case $z in
		c01|c18a|c10|c10a|c17) body=$(std $z "3 1 1 $EE256") ;;
		c02|c18b) body=$(std $z "3 1 1 $WR256") ;;
		c17b|c19) body=$(std $z "3 1 1 $EE256") ;;
		c03) body=$(std $z "3 1 1 $EXP256") ;;
		c04|c04w) body=$(std $z "2 1 1 $INTER") ;;
		c04r) body=$(std $z "2 1 1 $ROOT") ;;
		c05a) body=$(std $z "3 1 2 $WR512" "3 1 1 $EE256") ;;
		c05b) body=$(std $z "3 1 2 $EE512" "3 1 1 $JUNK") ;;
		c06|c06s) body=$(std $z "0 1 1 $EE256" "1 1 1 $EE256" "3 1 255 $EE256") ;;
		c07|c07s) body="$(std $z)
_25._tcp.mx IN TXT \"no TLSA here\"" ;;
		c09) body=$(std $z "3 1 1 $EE256") ;;
		c11) body=$(std $z "3 1 1 $EE256") ;;
		c12) body=$(std $z "3 1 1 $EE256") ;;
		c14) body="@ IN MX 10 mx
mx IN CNAME mx14.hosts.example.
_25._tcp.mx IN TLSA 3 1 1 $WR256" ;;
		c14b) body="@ IN MX 10 mx
mx IN CNAME mx14b.ins.example.
_25._tcp.mx IN TLSA 3 1 1 $EE256" ;;
		c15) body=$(std $z "3 1 1 $EE256") ;;
		c16|c30) # the TLSA name lives in a secure sub-zone no server answers for
			# c16: a server that drops the queries (timeouts); c30: nsd
			# itself, which does not serve that zone (REFUSED: lame, SERVFAIL at once)
			local kk dead=ns.example.
			[ $z = c16 ] && dead=ns-drop.example.
			kk=$(_dane_keygen "_tcp.mx.$z.example") || return 1
			body="$(std $z)
_tcp.mx IN NS $dead
$(cat "$DANE_Z/$kk.ds")" ;;
		c29) body="$(std $z "3 1 1 $WR256")
_mta-sts IN TXT \"v=STSv1; id=$DANE_STS_ID\"
mta-sts IN A $DANE_STS4" ;;
		esac
		case $z in c07s|c30) ;; *) false ;; esac && body="$body
_mta-sts IN TXT \"v=STSv1; id=$DANE_STS_ID\"
mta-sts IN A $DANE_STS4"
		_dane_zone "$z.example" "$body"
		DANE_SIGNED+=("$z.example")
	done
	# Unsigned zones: c08 (insecure delegation, TLSA present), c13/c13b (insecure
	# MX to secure hosts), ins.example (insecure target of c14b's CNAME).
	_dane_zone c08.example "$(std c08 "3 1 1 $EE256")"
	_dane_zone c13.example "@ IN MX 10 mx13.hosts.example."
	_dane_zone c13b.example "@ IN MX 10 mx13b.hosts.example."
	_dane_zone ins.example "mx14b IN A $(dane_ip c14b)"
	DANE_PLAIN=(c08.example c13.example c13b.example ins.example)
	for z in s20 s21 s22 s23 s24 s25; do
		_dane_zone "$z.example" "$(std $z)
_mta-sts IN TXT \"v=STSv1; id=$DANE_STS_ID\"
mta-sts IN A $DANE_STS4"
		DANE_PLAIN+=("$z.example")
	done
	_dane_zone hosts.example "mx13 IN A $(dane_ip c13)
_25._tcp.mx13 IN TLSA 3 1 1 $EE256
mx13b IN A $(dane_ip c13b)
_25._tcp.mx13b IN TLSA 3 1 1 $WR256
mx14 IN A $(dane_ip c14)
_25._tcp.mx14 IN TLSA 3 1 1 $EE256"
	DANE_SIGNED+=(hosts.example)
	for z in "${DANE_SIGNED[@]}"; do
		case $z in
		c10.example|c10a.example) _dane_sign_zone "$z" expired ;;
		c11.example) # signed, but the parent gets the DS of another key
			local k2 n0
			n0=$(wc -l <"$DANE_Z/parent.ds")
			_dane_sign_zone "$z" || return 1
			head -n "$n0" "$DANE_Z/parent.ds" >"$DANE_Z/parent.ds.new" && mv "$DANE_Z/parent.ds.new" "$DANE_Z/parent.ds"
			k2=$(_dane_keygen "$z") && cat "$DANE_Z/$k2.ds" >>"$DANE_Z/parent.ds" ;;
		*) _dane_sign_zone "$z" ;;
		esac || { say "dane: signing $z failed"; return 1; }
	done
	for z in "${DANE_PLAIN[@]}"; do cp "$DANE_Z/$z.zone" "$DANE_Z/$z.zone.signed"; done
	# After signing: the tampering.
	sed -i -E "/IN[[:space:]]+TLSA[[:space:]]+3 1 1 /s/$EE256/$JUNK/" "$DANE_Z/c09.example.zone.signed"
	sed -i -E '/IN[[:space:]]+MX[[:space:]]+10 /s/MX([[:space:]]+)10 /MX\120 /' "$DANE_Z/c12.example.zone.signed"
	_dane_expire c10.example TLSA || { say "dane: c10 TLSA RRSIG not replaced"; return 1; }
	_dane_expire c10a.example A || { say "dane: c10a A RRSIG not replaced"; return 1; }
	grep -q "$JUNK" "$DANE_Z/c09.example.zone.signed" || { say "dane: c09 not tampered"; return 1; }
	grep -Eq 'MX[[:space:]]+20 ' "$DANE_Z/c12.example.zone.signed" || { say "dane: c12 not tampered"; return 1; }
	# The parent: delegations (with DS for the signed ones), the name servers.
	local deleg=""
	for z in "${DANE_SIGNED[@]}" "${DANE_PLAIN[@]}"; do deleg="$deleg
${z%.example} IN NS ns.example."; done
	_dane_zone example "ns IN A $DANE_NS4
ns-drop IN A $DANE_DROP4$deleg
$(cat "$DANE_Z/parent.ds")"
	local kp
	kp=$(_dane_keygen example) && (cd "$DANE_Z" && ldns-signzone example.zone "$kp") || { say "dane: signing example. failed"; return 1; }
	cp "$DANE_Z/$kp.ds" "$DANE_ANCHOR"
	DANE_ZONES=(example "${DANE_SIGNED[@]}" "${DANE_PLAIN[@]}")
}

# ---- servers --------------------------------------------------------------------
dane_nsd() {
	local z
	cat >"$DANE_OUT/nsd.conf" <<-EOF
	server:
		ip-address: $DANE_NS4
		port: 53
		username: ""
		chroot: ""
		zonesdir: "$DANE_Z"
		pidfile: "$DANE_OUT/nsd.pid"
		database: ""
		zonelistfile: "$DANE_OUT/nsd.zonelist"
		xfrdfile: "$DANE_OUT/nsd.xfrd"
		xfrdir: "$DANE_OUT"
		logfile: "$DANE_OUT/nsd.log"
		server-count: 1
		verbosity: 1
	remote-control:
		control-enable: no
	EOF
	for z in "${DANE_ZONES[@]}"; do
		printf 'zone:\n\tname: "%s."\n\tzonefile: "%s.zone.signed"\n' "$z" "$z" >>"$DANE_OUT/nsd.conf"
	done
	in_srv nsd -d -c "$DANE_OUT/nsd.conf" >"$DANE_OUT/nsd.out" 2>&1 &
	T_PIDS+=($!); disown $!
}
# _dane_unbound NAME ADDR VALIDATE: an unbound in gw
_dane_unbound() {
	local f=$DANE_OUT/unbound-$1.conf
	cat >"$f" <<-EOF
	server:
		interface: $2
		port: 53
		access-control: 127.0.0.0/8 allow
		access-control: 192.0.2.0/24 allow
		username: ""
		chroot: ""
		directory: "$DANE_OUT"
		pidfile: ""
		use-syslog: no
		logfile: "$DANE_OUT/unbound-$1.log"
		do-daemonize: no
		num-threads: 1
		so-reuseport: no
		qname-minimisation: no
		verbosity: 1
		do-not-query-localhost: no
		infra-cache-max-rtt: 1000
		outbound-msg-retry: 2
	EOF
	if [ "$3" = yes ]; then
		printf '\tmodule-config: "validator iterator"\n\ttrust-anchor-file: "%s"\n\tval-log-level: 2\n' "$DANE_ANCHOR" >>"$f"
	else
		printf '\tmodule-config: "iterator"\n' >>"$f"
	fi
	printf 'stub-zone:\n\tname: "example."\n\tstub-addr: %s\n' "$DANE_NS4" >>"$f"
	in_gw unbound -d -c "$f" >"$DANE_OUT/unbound-$1.out" 2>&1 &
	T_PIDS+=($!); disown $!
}
# _dane_smtpd KIND MODE ADDR...: one smtpd.py for a certificate kind
_dane_smtpd() {
	local kind=$1 mode=$2 a l=(); shift 2
	for a in "$@"; do l+=(--listen "$a:25"); done
	mkdir -p "$DANE_OUT/srv-$kind"
	local cert=() ck=$kind
	[ "$kind" = plain ] || cert=(--cert "$DANE_C/$ck.chain" --key "$DANE_C/$ck.key")
	in_srv "$PY" "$PEERS/smtpd.py" "${l[@]}" "${cert[@]}" --mode "$mode" \
		--out "$DANE_OUT/srv-$kind" --log "$DANE_OUT/srv-$kind.log" --hostname "$kind.dane.example" \
		>"$DANE_OUT/srv-$kind.stdout" 2>"$DANE_OUT/srv-$kind.stderr" &
	T_PIDS+=($!); disown $!
}
# _dane_snismtpd ADDR: a small SMTP server whose certificate depends on SNI:
# the ee certificate for SNI mx.c19.example, the expired one otherwise (a
# multi-certificate host). Stores msg-N.eml/.json in DANE_OUT/srv-sni like
# smtpd.py (rcpt_to, tls, local, sni); logs "tls sni=NAME cert=KIND" per handshake.
_dane_snismtpd() {
	mkdir -p "$DANE_OUT/srv-sni"
	cat >"$DANE_OUT/snismtpd.py" <<-'PY'
	import json, os, socket, ssl, sys, threading
	addr, certs, out, logf = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
	lock = threading.Lock(); count = [0]
	def ctx(kind):
	    c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
	    c.load_cert_chain(os.path.join(certs, kind + ".chain"), os.path.join(certs, kind + ".key"))
	    return c
	ee = ctx("ee")
	def log(line):
	    with lock, open(logf, "a") as f: f.write(line + "\n")
	def handle(sock, peer):
	    st = {"sni": None, "tls": None}
	    def sni(sslobj, name, c):
	        st["sni"] = name
	        if name == "mx.c19.example": sslobj.context = ee
	    exp = ctx("exp")   # per connection: its callback writes this connection's state
	    exp.sni_callback = sni
	    f = sock.makefile("rb"); w = lambda s: (sock.sendall(s.encode()))
	    w("220 sni.dane.example ESMTP\r\n")
	    rcpts, frm = [], None
	    while True:
	        line = f.readline(65536)
	        if not line: break
	        cmd = line.decode("latin-1").rstrip("\r\n"); up = cmd.upper()
	        if up.startswith("EHLO") or up.startswith("HELO"):
	            w("250-sni.dane.example\r\n" + ("" if st["tls"] else "250-STARTTLS\r\n") + "250 8BITMIME\r\n")
	        elif up == "STARTTLS" and not st["tls"]:
	            w("220 2.0.0 go ahead\r\n")
	            try:
	                sock = exp.wrap_socket(sock, server_side=True)
	            except (ssl.SSLError, OSError) as e:
	                log("tls-fail %s" % e); return
	            st["tls"] = sock.version()
	            log("tls sni=%s cert=%s" % (st["sni"], "ee" if st["sni"] == "mx.c19.example" else "exp"))
	            f = sock.makefile("rb"); w = lambda s: (sock.sendall(s.encode()))
	        elif up.startswith("MAIL FROM:"): frm = cmd[10:]; rcpts = []; w("250 2.1.0 ok\r\n")
	        elif up.startswith("RCPT TO:"): rcpts.append(cmd[8:].strip().strip("<>")); w("250 2.1.5 ok\r\n")
	        elif up == "DATA":
	            w("354 go ahead\r\n"); data = b""
	            while True:
	                l = f.readline(65536)
	                if not l or l == b".\r\n": break
	                data += l[1:] if l.startswith(b".") else l
	            with lock:
	                count[0] += 1; n = count[0]
	            open(os.path.join(out, "msg-%d.eml" % n), "wb").write(data)
	            meta = {"n": n, "tls": st["tls"], "sni": st["sni"], "rcpt_to": rcpts, "mail_from": frm,
	                    "local": sock.getsockname()[0], "peer": peer[0]}
	            tmp = os.path.join(out, ".msg-%d.tmp" % n)
	            json.dump(meta, open(tmp, "w")); os.replace(tmp, os.path.join(out, "msg-%d.json" % n))
	            log("queued %d sni=%s" % (n, st["sni"])); w("250 2.0.0 queued\r\n")
	        elif up == "RSET": rcpts = []; w("250 2.0.0 ok\r\n")
	        elif up == "NOOP": w("250 2.0.0 ok\r\n")
	        elif up == "QUIT": w("221 2.0.0 bye\r\n"); break
	        else: w("502 5.5.2 no\r\n")
	    sock.close()
	def serve(sock, peer):
	    try: handle(sock, peer)
	    except Exception as e: log("error %s" % e)
	s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
	s.bind((addr, 25)); s.listen(16)
	print("ready", flush=True)
	while True:
	    c, p = s.accept(); log("conn %s" % p[0])
	    threading.Thread(target=serve, args=(c, p), daemon=True).start()
	PY
	in_srv "$PY" "$DANE_OUT/snismtpd.py" "$1" "$DANE_C" "$DANE_OUT/srv-sni" "$DANE_OUT/srv-sni.log" \
		>"$DANE_OUT/srv-sni.stdout" 2>"$DANE_OUT/srv-sni.stderr" &
	T_PIDS+=($!); disown $!
}
# The MTA-STS policy host: HTTPS on DANE_STS4:443, one enforce policy per Host.
_dane_https() {
	cat >"$DANE_OUT/sts.py" <<-'PY'
	import http.server, ssl, sys
	addr, chain, key = sys.argv[1], sys.argv[2], sys.argv[3]
	class H(http.server.BaseHTTPRequestHandler):
	    def do_GET(self):
	        host = (self.headers.get("Host") or "").split(":")[0].lower()
	        if self.path != "/.well-known/mta-sts.txt" or not host.startswith("mta-sts."):
	            self.send_error(404); return
	        d = host[len("mta-sts."):]
	        if d.startswith("s24."):
	            self.send_error(404); return
	        mode = "testing" if d.startswith("s21.") else "enforce"
	        mx = "*." + d if d.startswith("s22.") else "mx." + d
	        body = ("version: STSv1\r\nmode: %s\r\nmx: %s\r\nmax_age: 86400\r\n" % (mode, mx)).encode()
	        self.send_response(200)
	        self.send_header("Content-Type", "text/plain")
	        self.send_header("Content-Length", str(len(body)))
	        self.end_headers()
	        self.wfile.write(body)
	    def log_message(self, fmt, *a):
	        sys.stderr.write("%s %s\n" % (self.headers.get("Host"), fmt % a)); sys.stderr.flush()
	srv = http.server.ThreadingHTTPServer((addr, 443), H)
	ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
	ctx.load_cert_chain(chain, key)
	srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
	print("ready", flush=True)
	srv.serve_forever()
	PY
	in_srv "$PY" "$DANE_OUT/sts.py" "$DANE_STS4" "$DANE_C/ta.chain" "$DANE_C/ta.key" \
		>"$DANE_OUT/sts.stdout" 2>"$DANE_OUT/sts.log" &
	T_PIDS+=($!); disown $!
}

# dane_up: everything above; topo_up must have run. Returns 1 if a piece is missing.
dane_up() {
	mkdir -p "$DANE_OUT"
	dane_certs || { say "dane: certificates failed"; return 1; }
	dane_zones || return 1
	local a kind addrs e f
	for a in $DANE_NS4 $DANE_DROP4 $DANE_STS4; do ip -n "$NS_SRV" addr add "$a/24" dev wan0; done
	for a in $DANE_EXTRA_ee $DANE_EXTRA_ta $DANE_EXTRA_exp; do
		ip -n "$NS_SRV" addr add "$a/24" dev wan0 2>/dev/null || true
	done
	for e in "${DANE_CASES[@]}"; do
		read -r -a f <<<"$e"
		for a in "${f[2]}" ${f[3]:+"${f[3]}"}; do
			ip -n "$NS_SRV" addr add "$a/24" dev wan0 2>/dev/null || true
		done
	done
	# DNS to DANE_DROP4 disappears (the server "drops the queries").
	in_srv nft -f - <<-NFT || { say "dane: nft in srv failed"; return 1; }
	table inet danedrop {
		chain input {
			type filter hook input priority 0; policy accept;
			ip daddr $DANE_DROP4 udp dport 53 drop
			ip daddr $DANE_DROP4 tcp dport 53 drop
		}
	}
	NFT
	dane_nsd
	_dane_unbound fwd "$GWL4" no
	_dane_unbound val "$DANE_VAL" yes
	for kind in ee exp ta taw plain; do
		addrs=()
		for e in "${DANE_CASES[@]}"; do
			read -r -a f <<<"$e"
			[ "${f[1]}" = "$kind" ] || continue
			case " ${addrs[*]} " in *" ${f[2]} "*) ;; *) addrs+=("${f[2]}") ;; esac
		done
		local ev="DANE_EXTRA_$kind"
		addrs+=(${!ev:-})
		case $kind in plain) _dane_smtpd plain plain "${addrs[@]}" ;; *) _dane_smtpd "$kind" starttls "${addrs[@]}" ;; esac
	done
	_dane_https
	_dane_snismtpd "$(dane_ip c19)"
	printf 'nameserver %s\noptions timeout:8 attempts:1\n' "$DANE_VAL" >"$DANE_OUT/resolv.conf"
	local ready
	for kind in ee exp ta taw plain sni; do
		wait_for 10 grep -q ready "$DANE_OUT/srv-$kind.stdout" || { say "dane: smtpd $kind did not start"; cat "$DANE_OUT/srv-$kind.stderr" >&2; return 1; }
	done
	wait_for 10 grep -q ready "$DANE_OUT/sts.stdout" || { say "dane: https did not start"; cat "$DANE_OUT/sts.log" >&2; return 1; }
	ready() { in_gw drill -D ns.example A @"$DANE_VAL" 2>/dev/null | grep -Eq 'flags:[a-z ]* ad[ ;]'; }
	wait_for 15 ready || { say "dane: the validating resolver gives no AD for ns.example"; cat "$DANE_OUT/nsd.out" "$DANE_OUT/unbound-val.out" "$DANE_OUT/unbound-val.log" >&2; return 1; }
}

# dane_finger CASE: posttls-finger from gw (no interception there), DNS through
# the validating unbound (resolv.conf bind-mounted in a private mount namespace).
# Prints the verdict; the full output stays in DANE_OUT/finger-CASE.out.
dane_finger() {
	local out=$DANE_OUT/finger-$1.out
	if [ ! -f "$DANE_OUT/pf/main.cf" ]; then
		mkdir -p "$DANE_OUT/pf"
		cat >"$DANE_OUT/pf/main.cf" <<-EOF
		compatibility_level = 3.6
		myhostname = finger.example.org
		inet_protocols = ipv4
		smtp_dns_support_level = dnssec
		smtp_tls_security_level = dane
		smtp_tls_dane_insecure_mx_policy = dane
		dnssec_probe =
		EOF
	fi
	MAIL_CONFIG=$DANE_OUT/pf in_gw unshare -m sh -c '
		mount --make-rprivate / 2>/dev/null
		mount --bind "$1" /etc/resolv.conf || exit 99
		shift; exec "$@"' sh "$DANE_OUT/resolv.conf" \
		/usr/sbin/posttls-finger -L "${DANE_FINGER_L:-routine,certmatch,dane}" -a ipv4 -t 10 -T 10 -l dane -M dane -P "$DANE_C/capath/" \
		"$(dane_domain "$1")" >"$out" 2>&1
	echo "rc=$?" >>"$out"
	dane_verdict "$out"
}
# dane_verdict FILE: Postfix's verdict, one word, from posttls-finger's output
# (-L ...,dane logs each usable "DNSSEC-signed TLSA record"; posttls-finger
# itself goes on after a failed check, so the word says what a Postfix SMTP
# client at level dane does with it, see docs/dane-oracle.md):
#   verified | trusted          DANE match (trusted: insecure MX, secure host)
#   dane-fail                   usable TLSA, no match: the client defers
#   dane-no-starttls            usable TLSA, no STARTTLS: the client defers
#   tlsa-lookup-error           "TLSA lookup error": the client defers
#   dns-tempfail                MX or address lookup failed: the client defers
#   unusable-tls                only unusable TLSA: TLS without authentication (encrypt)
#   unusable-no-starttls        the same without STARTTLS: the client defers
#   no-dane                     no usable secure TLSA: opportunistic TLS (may)
#   no-dane-verified            the same; posttls-finger's fallback level "secure"
#                               verified the chain with -P (a real client: may)
dane_verdict() {
	local f=$1 tlsa=0 unusable=0 tls=0
	grep -q "DNSSEC-signed TLSA record" "$f" && tlsa=1
	grep -Eq "unsupported TLSA certificate usage|reserved private-use matching type|unsupported TLSA (selector|matching type)" "$f" && unusable=1
	grep -q "TLS connection established" "$f" && tls=1
	if grep -q "TLSA lookup error" "$f"; then echo tlsa-lookup-error
	elif grep -q "Verified TLS connection established" "$f" && [ $tlsa = 0 ]; then echo no-dane-verified
	elif grep -q "Verified TLS connection established" "$f"; then echo verified
	elif grep -q "Trusted TLS connection established" "$f"; then echo trusted
	elif grep -Eq "Destination address lookup failed|Host or domain name not found" "$f"; then echo dns-tempfail
	elif [ $tlsa = 1 ] && [ $tls = 1 ]; then echo dane-fail
	elif [ $tlsa = 1 ]; then echo dane-no-starttls
	elif [ $unusable = 1 ] && [ $tls = 1 ]; then echo unusable-tls
	elif [ $unusable = 1 ]; then echo unusable-no-starttls
	elif [ $tls = 1 ]; then echo no-dane
	elif grep -q "< 250" "$f"; then echo no-dane-no-starttls
	else echo unknown; fi
}

# dane_send CASE [swaks args...]: one message to user@DOMAIN from cli, dialling
# the case's address (port 25: intercepted on gw when redirect_on / intercept).
dane_send() {
	local c=$1; shift
	in_cli swaks --server "$(dane_dial "$c")" --port 25 --helo client.example.org \
		--from sender@example.org --to "user@$(dane_domain "$c")" --timeout 30 "$@"
}
# dane_msg CASE: the newest message file (json) stored for user@CASE's domain,
# by any of the servers (case 17b dials another kind's address).
dane_msg() {
	local f
	for f in $(ls -t "$DANE_OUT"/srv-*/msg-*.json 2>/dev/null); do
		grep -q "user@$(dane_domain "$1")" "$f" && { echo "$f"; return 0; }
	done
	return 1
}

# ---- a real Postfix SMTP client at level dane (needs tests/lib/postfix.sh) --------
# One private instance in gw (its own traffic is not intercepted), started in a
# mount namespace whose /etc/resolv.conf names the validating unbound: every
# daemon it forks stays there. Each case gets one message to pf@DOMAIN; the
# first delivery attempt's status is the verdict (dane_pf_verdict).
DANE_PF=$T_TMP/pf-dane
_dane_pf_run() {
	in_gw unshare -m sh -c '
		mount --make-rprivate / 2>/dev/null
		mount --bind "$1" /etc/resolv.conf || exit 99
		shift; exec "$@"' sh "$DANE_OUT/resolv.conf" "$@"
}
dane_pf_up() {
	pf_instance "$DANE_PF" dane <<-EOF
	myhostname = pfclient.example.org
	mydomain = example.org
	myorigin = example.org
	inet_interfaces = 127.0.0.1
	mydestination =
	mynetworks = 127.0.0.0/8
	relayhost =
	smtp_host_lookup = dns
	smtp_address_preference = ipv4
	smtp_dns_support_level = dnssec
	smtp_tls_security_level = dane
	smtp_tls_dane_insecure_mx_policy = dane
	smtp_tls_loglevel = 1
	smtp_connect_timeout = 10s
	dnssec_probe =
	smtpd_tls_security_level = none
	queue_run_delay = 3600s
	minimal_backoff_time = 3600s
	maximal_backoff_time = 3600s
	default_destination_concurrency_limit = 2
	EOF
	pf_start _dane_pf_run "$DANE_PF"
}
dane_pf_stop() { pf_stop _dane_pf_run "$DANE_PF"; }
# dane_pf_send CASE...: queue one message to pf@DOMAIN for each case
dane_pf_send() {
	local c
	for c in "$@"; do
		printf 'From: sender@example.org\nTo: pf@%s\nSubject: postfix dane %s\n\npostfix oracle %s\n' \
			"$(dane_domain "$c")" "$c" "$c" |
			_dane_pf_run sendmail -C "$DANE_PF/etc" -f sender@example.org -i "pf@$(dane_domain "$c")" || return 1
	done
}
# dane_pf_status CASE: the first status line for pf@DOMAIN in the maillog
dane_pf_status() {
	grep -F "to=<pf@$(dane_domain "$1")>" "$DANE_PF/maillog" 2>/dev/null | grep -E ' status=(sent|deferred|bounced) ' | head -n 1
}
# dane_pf_verdict CASE: sent/<TLS trust level> or deferred/<why>, from the maillog
#   sent/verified sent/trusted sent/untrusted sent/plain
#   deferred/tlsa-lookup-error deferred/cert-not-trusted deferred/no-starttls
#   deferred/dns (MX or host lookup) deferred/other
dane_pf_verdict() {
	local st host tls
	st=$(dane_pf_status "$1")
	[ -n "$st" ] || { echo none; return; }
	case $st in
	*status=sent*)
		host=$(sed -nE 's/.* relay=([^ ,]+\[[0-9.]+\]):25.*/\1/p' <<<"$st")
		tls=$(grep -F "TLS connection established to $host:25" "$DANE_PF/maillog" | head -n 1)
		case $tls in
		*Verified\ TLS*) echo sent/verified ;;
		*Trusted\ TLS*) echo sent/trusted ;;
		*Untrusted\ TLS*|*Anonymous\ TLS*) echo sent/untrusted ;;
		*) echo sent/plain ;;
		esac ;;
	*"TLSA lookup error"*) echo deferred/tlsa-lookup-error ;;
	*"not trusted"*|*"certificate verification failed"*|*"not verified"*) echo deferred/cert-not-trusted ;;
	*"TLS is required, but was not offered"*) echo deferred/no-starttls ;;
	*"Host or domain name not found"*|*"Name service error"*|*"no MX host"*|*"valid address record"*) echo deferred/dns ;;
	*) echo deferred/other ;;
	esac
}
