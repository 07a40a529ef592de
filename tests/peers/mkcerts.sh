#!/usr/bin/env bash
# Create the test PKI used by the integration tests, with the openssl CLI.
#
# usage: tests/peers/mkcerts.sh DIR
#
# Creates in DIR (EC P-256 keys, 10 days validity):
#   ca.crt ca.key                 test CA (CN "starttlsd test CA")
#   server.crt server.key         signed by the CA; CN mx.example.net,
#                                 SAN DNS:mx.example.net IP:198.51.100.25 IP:2001:db8:2::25
#   selfsigned.crt selfsigned.key self-signed, CN/SAN mx.example.net (not trusted by the CA)
#   proxy.crt proxy.key           signed by the CA; CN/SAN gateway.example.org
#                                 (EKU serverAuth+clientAuth), for the proxy's LAN leg
#
# Idempotent: a pair whose .crt and .key both exist is left alone. If the CA has to
# be (re)created, the CA-signed pairs are re-issued too so the chain stays valid.
# Each file is generated in a private temporary directory and renamed into place,
# so concurrent runs never see half-written files.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
dir=$1
mkdir -p "$dir"
command -v openssl >/dev/null || { echo "mkcerts: openssl not found" >&2; exit 1; }

DAYS=10
work=$(mktemp -d "$dir/.mkcerts.XXXXXX")
trap 'rm -rf "$work"' EXIT

have() { [ -s "$dir/$1.crt" ] && [ -s "$dir/$1.key" ]; }

newkey() { # newkey OUT
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
  chmod 600 "$1"
}

install_pair() { # install_pair NAME : move $work/NAME.{key,crt} into $dir (key first)
  mv -f "$work/$1.key" "$dir/$1.key"
  mv -f "$work/$1.crt" "$dir/$1.crt"
}

# sign NAME CN EXTFILE: CSR for $work/NAME.key signed by the CA in $dir
sign() {
  local name=$1 cn=$2 ext=$3
  newkey "$work/$name.key"
  openssl req -new -key "$work/$name.key" -subj "/O=starttlsd tests/CN=$cn" \
    -out "$work/$name.csr" 2>/dev/null
  openssl x509 -req -in "$work/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -set_serial "0x$(openssl rand -hex 12)" -days "$DAYS" -sha256 \
    -extfile "$ext" -out "$work/$name.crt" 2>/dev/null
  install_pair "$name"
}

ca_new=0
if ! have ca; then
  newkey "$work/ca.key"
  cat >"$work/ca.ext" <<'EOF'
[req]
distinguished_name = dn
x509_extensions = v3_ca
prompt = no
[dn]
O = starttlsd tests
CN = starttlsd test CA
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
  openssl req -new -x509 -key "$work/ca.key" -config "$work/ca.ext" \
    -set_serial "0x$(openssl rand -hex 12)" -days "$DAYS" -sha256 \
    -out "$work/ca.crt" 2>/dev/null
  install_pair ca
  ca_new=1
fi

if [ "$ca_new" = 1 ] || ! have server; then
  cat >"$work/server.ext" <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:mx.example.net, IP:198.51.100.25, IP:2001:db8:2::25
EOF
  sign server mx.example.net "$work/server.ext"
fi

if [ "$ca_new" = 1 ] || ! have proxy; then
  cat >"$work/proxy.ext" <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:gateway.example.org
EOF
  sign proxy gateway.example.org "$work/proxy.ext"
fi

if ! have selfsigned; then
  newkey "$work/selfsigned.key"
  cat >"$work/selfsigned.ext" <<'EOF'
[req]
distinguished_name = dn
x509_extensions = v3
prompt = no
[dn]
O = starttlsd tests (self-signed)
CN = mx.example.net
[v3]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
subjectAltName = DNS:mx.example.net
EOF
  openssl req -new -x509 -key "$work/selfsigned.key" -config "$work/selfsigned.ext" \
    -set_serial "0x$(openssl rand -hex 12)" -days "$DAYS" -sha256 \
    -out "$work/selfsigned.crt" 2>/dev/null
  install_pair selfsigned
fi

# Sanity: the CA-signed certificates must verify against the CA.
openssl verify -CAfile "$dir/ca.crt" "$dir/server.crt" "$dir/proxy.crt" >/dev/null
