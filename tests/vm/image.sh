#!/usr/bin/env bash
# tests/vm/image.sh DIR: build the Debian 12 root file system the systemd test
# boots (tests/vm/test-systemd.sh), unless DIR already holds the one this very
# script describes.
#
# DIR/image-KEY/ gets root/ (the tree, for mkfs.ext4 -d), vmlinuz and
# initrd.img (the image's own kernel and initramfs), packages.txt (what is
# installed) and build-seconds. KEY is a hash of this file, so changing the
# package list (or anything else here) builds a new image and drops the old
# one. VM_REBUILD=1 forces a rebuild. Prints the image directory on stdout.
#
# mmdebstrap in root mode, straight into a directory: no loop device, no
# mount of the image. Needs root and deb.debian.org.
set -euo pipefail

dir=${1:?usage: image.sh DIR}
here=$(cd "$(dirname "$0")" && pwd)
key=$(sha256sum "$here/image.sh" | cut -c1-16)
img=$dir/image-$key

# What the starttlsd .deb depends on (BoringSSL, libnftnl, libmnl, LMDB,
# libseccomp, libunbound with its libevent; libev is linked statically into
# starttlsd, starttlsctl still uses libev4; ca-certificates) and recommends
# (rsyslog, logrotate: the VM has no network, apt installs the .deb
# offline), systemd as PID 1, the kernel with its initramfs, and what the
# in-VM checks use: nft, ip, ps/pgrep, python3 (tests/peers/smtpd.py and
# an smtplib client).
PACKAGES=(
	systemd systemd-sysv udev kmod
	linux-image-cloud-amd64 initramfs-tools zstd
	android-libboringssl libev4 libnftnl11 libmnl0 liblmdb0 libseccomp2 libunbound8
	libhiredis0.14 libjansson4
	nftables iproute2 procps python3
	ca-certificates rsyslog logrotate
)
MIRRORS=(
	"deb http://deb.debian.org/debian bookworm main"
	"deb http://deb.debian.org/debian bookworm-updates main"
	"deb http://deb.debian.org/debian-security bookworm-security main"
)

mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
if [ -f "$img/ok" ] && [ -z "${VM_REBUILD:-}" ]; then
	echo "$img"
	exit 0
fi

command -v mmdebstrap >/dev/null || { echo "image: mmdebstrap missing (tests/deps.sh)" >&2; exit 1; }
rm -rf "$img" "$img.tmp"
mkdir -p "$img.tmp"
start=$SECONDS
echo "image: building $img (mmdebstrap, bookworm, ${#PACKAGES[@]} packages and their dependencies)" >&2

# The initramfs: only what finds the root disk (virtio_pci, virtio_blk;
# ext4 is built into the cloud kernel), so it is small and quick to unpack
# under emulation. Written before the kernel package runs update-initramfs.
initramfs_hook='
	mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/etc/initramfs-tools/hooks"
	printf "MODULES=list\nCOMPRESS=zstd\n" >"$1/etc/initramfs-tools/conf.d/starttlsd-vmtest"
	printf "#!/bin/sh\n[ \"\$1\" = prereqs ] && exit 0\n. /usr/share/initramfs-tools/hook-functions\nforce_load virtio_pci\nforce_load virtio_blk\n" \
		>"$1/etc/initramfs-tools/hooks/starttlsd-vmtest"
	chmod 755 "$1/etc/initramfs-tools/hooks/starttlsd-vmtest"'

# The image itself: a name. (The user starttlsd comes with the package, by
# sysusers.d.)
customize_hook='
	echo starttlsd-vm >"$1/etc/hostname"
	chroot "$1" dpkg-query -W -f="\${Package} \${Version}\n" >"$1/../packages.txt"'

mmdebstrap --variant=minbase --mode=root --format=directory \
	--aptopt='Acquire::Retries "3"' \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	--essential-hook="$initramfs_hook" \
	--customize-hook="$customize_hook" \
	--include="$(IFS=,; echo "${PACKAGES[*]}")" \
	bookworm "$img.tmp/root" "${MIRRORS[@]}" >"$img.tmp/mmdebstrap.log" 2>&1 || {
		echo "image: mmdebstrap failed; last lines of $img.tmp/mmdebstrap.log:" >&2
		tail -n 20 "$img.tmp/mmdebstrap.log" >&2
		exit 1
	}

kernel=$(ls "$img.tmp"/root/boot/vmlinuz-* | sort -V | tail -n 1)
initrd=$(ls "$img.tmp"/root/boot/initrd.img-* | sort -V | tail -n 1)
cp "$kernel" "$img.tmp/vmlinuz"
cp "$initrd" "$img.tmp/initrd.img"
echo $((SECONDS - start)) >"$img.tmp/build-seconds"
touch "$img.tmp/ok"
# Older images (another package list) go.
for old in "$dir"/image-*; do
	[ "$old" = "$img.tmp" ] || rm -rf "$old"
done
mv "$img.tmp" "$img"
echo "image: built in $((SECONDS - start)) s ($(du -sm "$img/root" | cut -f1) MiB)" >&2
echo "$img"
