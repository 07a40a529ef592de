#!/usr/bin/env bash
# Certificates for the HTTPS client and MTA-STS fetch tests, made with the
# openssl CLI at test time (EC P-256).
#
# usage: tests/peers/mkstscerts.sh DIR NAME...
#
# In DIR:
#   ca.crt ca.key               a test CA ("starttlsd sts test CA")
#   good.crt good.key           CA-signed, SAN DNS:NAME for every NAME, valid 10 days
#   wrongname.crt .key          CA-signed, valid, SAN DNS:wrong-name.example only
#   expired.crt .key            CA-signed, SAN as good, valid only in January 2020
#   untrusted.crt .key          SAN as good, valid, signed by another CA (not in ca.crt)
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 DIR NAME..." >&2; exit 2; }
dir=$1; shift
mkdir -p "$dir"
cd "$dir"
san=$(printf 'DNS:%s,' "$@"); san=${san%,}

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
mkca() { # NAME CN
	newkey "$1.key"
	openssl req -new -x509 -key "$1.key" -subj "/O=starttlsd tests/CN=$2" -days 10 -sha256 \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
		-out "$1.crt" 2>/dev/null
}
ext() { # SAN
	printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$1"
}
leaf() { # NAME CA SAN
	newkey "$1.key"
	openssl req -new -key "$1.key" -subj "/O=starttlsd tests/CN=$1" -out "$1.csr" 2>/dev/null
	ext "$3" >"$1.ext"
	openssl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" -set_serial "0x$(openssl rand -hex 12)" \
		-days 10 -sha256 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
}

mkca ca "starttlsd sts test CA"
mkca otherca "starttlsd other CA"
leaf good ca "$san"
leaf wrongname ca "DNS:wrong-name.example"
leaf untrusted otherca "$san"

# expired: "openssl ca" takes explicit dates (x509 -req cannot go back in time)
newkey expired.key
openssl req -new -key expired.key -subj "/O=starttlsd tests/CN=expired" -out expired.csr 2>/dev/null
mkdir -p ca.db && : >ca.db/index.txt && echo 01 >ca.db/serial
cat >ca.db/ca.cnf <<EOF
[ca]
default_ca = test
[test]
database = $PWD/ca.db/index.txt
serial = $PWD/ca.db/serial
new_certs_dir = $PWD/ca.db
default_md = sha256
policy = any
copy_extensions = none
unique_subject = no
[any]
organizationName = optional
commonName = supplied
[ext]
$(ext "$san")
EOF
openssl ca -batch -config ca.db/ca.cnf -cert ca.crt -keyfile ca.key -in expired.csr \
	-startdate 20200101000000Z -enddate 20200201000000Z -extensions ext -notext \
	-out expired.crt 2>/dev/null
rm -f ./*.csr ./*.ext

openssl verify -CAfile ca.crt good.crt wrongname.crt >/dev/null
