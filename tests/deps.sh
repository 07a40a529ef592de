#!/usr/bin/env bash
# Install every Debian package the build, the tests, the demo and the benchmark need,
# but only when something is missing. Safe to run again; quiet when all is there.
set -euo pipefail

pkgs=(
  build-essential pkg-config
  android-libboringssl-dev android-libboringssl android-boringssl
  libev-dev libnftnl-dev libmnl-dev liblmdb-dev libcmocka-dev
  libjansson-dev zlib1g-dev
  clang-14 libfuzzer-14-dev libclang-rt-14-dev
  nftables iproute2 iptables
  swaks libnet-ssleay-perl libio-socket-inet6-perl libio-socket-ssl-perl
  postfix stunnel4 rsyslog openssl
  python3 procps psmisc valgrind fiu-utils libseccomp-dev gdb
  devscripts
  qemu-system-x86 mmdebstrap e2fsprogs
  golang-go golang-github-go-logfmt-logfmt-dev
  mtail prometheus
  debhelper lintian
  libunbound-dev dns-root-data nsd unbound ldnsutils
  redis-server libhiredis-dev
  fdisk zstd openssh-client
)

# The daemon's workers drop root for this user (make install documents it).
if [ "$(id -u)" -eq 0 ] && ! id starttlsd >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /var/lib/starttlsd \
    --shell /usr/sbin/nologin starttlsd
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing packages: ${missing[*]}; run as root to install them" >&2
  exit 1
fi

echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Postfix asks what kind of mail system this is; we run only private instances.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
echo "postfix postfix/mailname string starttlsd-test.invalid" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian postfix package starts a system instance; our tests run private ones.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now postfix >/dev/null 2>&1 || true; fi
# Likewise nsd and unbound: tests/integration/91-dnssec.sh runs private ones in namespaces.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now nsd unbound >/dev/null 2>&1 || true; fi
postfix stop >/dev/null 2>&1 || true
# Debian's redis-server starts a system instance too; tests/integration/92-redis.sh runs its own.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now redis-server >/dev/null 2>&1 || true; fi
