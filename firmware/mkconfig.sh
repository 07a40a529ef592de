#!/usr/bin/env bash
# firmware/mkconfig.sh OUT.img FILE...: a config disk for starttlsd-appliance.
#
# An ext4 file system labelled CONFIG holding the FILEs (by their base
# names): appliance.conf (required), and optionally starttlsd.conf, a policy
# file and whatever starttlsd.conf names (a CA bundle, a certificate), all
# found by the appliance under /etc/starttlsd/. Attach it as any disk
# (qemu: -drive file=OUT.img,format=raw,if=virtio); at boot the appliance
# checks it and, if it is valid, stores it on its data partition. No root,
# no loop device (mkfs.ext4 -d).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 OUT.img appliance.conf [starttlsd.conf policy FILE...]" >&2; exit 2; }
out=$1; shift
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/d"
have=
for f in "$@"; do
	b=$(basename "$f")
	[[ $b =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || { echo "mkconfig: $b: use letters, digits, . _ - only" >&2; exit 1; }
	[ -f "$f" ] || { echo "mkconfig: $f: not a file" >&2; exit 1; }
	[ ! -e "$tmp/d/$b" ] || { echo "mkconfig: $b given twice" >&2; exit 1; }
	cp "$f" "$tmp/d/$b"
	[ "$b" = appliance.conf ] && have=1
done
[ -n "$have" ] || { echo "mkconfig: no appliance.conf among the files" >&2; exit 1; }
chmod -R a+rX,go-w "$tmp/d"
kib=$(( $(du -sk "$tmp/d" | cut -f1) + 2048 ))
rm -f "$out"
mkfs.ext4 -q -F -L CONFIG -O ^has_journal -E root_owner=0:0 -d "$tmp/d" "$out" "${kib}k"
echo "$out: config disk (label CONFIG): $(ls "$tmp/d" | tr '\n' ' ')"
