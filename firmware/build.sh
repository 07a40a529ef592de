#!/usr/bin/env bash
# firmware/build.sh [OUT.img]: build the starttlsd appliance disk image
# (default build/firmware/starttlsd-appliance.img). Run by "make firmware".
#
# Layout (MBR, disk identifier 0x5354544c, partitions addressed by
# PARTUUID=5354544c-0N so the disk may be vda, sda or nvme0n1):
#   sector 0          GRUB boot.img (boot code only; the partition table stays)
#   sectors 1..2046   GRUB core.img (i386-pc, its modules built in)
#   sector 2047       the slot record: "STTLSLOT bytes=N sha256=HEX version=V"
#   p1  BOOT    16 MiB  ext4: grub/grub.cfg and grub/grubenv (slot, try)
#   p2  SYSA   SLOT MiB ext4, mounted read-only: the system (slot A)
#   p3  SYSB   SLOT MiB slot B: empty in a fresh image; appliance-upgrade fills it
#   p4  DATA  DATA MiB  ext4, read-write: configuration, pins, logs, ssh host keys
#
# Everything is made without loop devices or mounts: the Debian 12 tree
# comes from mmdebstrap into a directory, each file system from
# "mkfs.ext4 -d DIR", and the disk from sfdisk and dd at fixed offsets.
# GRUB's core.img is made by the tree's own grub-mkimage (chroot); boot.img
# finds it at sector 1 and core.img's own block list covers the sectors after
# it, so grub-install (which wants a block device) is not needed.
#
# The Debian tree (packages only) is cached in build/firmware/base-KEY/ (KEY:
# a hash of the package list and the hooks below), the .debs in
# build/firmware/apt-cache/. FIRMWARE_REBUILD=1 rebuilds the tree.
#
# Variables: FIRMWARE_VERSION (default: git describe), FIRMWARE_BREAK=init
# (a deliberately broken system for the rollback test: no /sbin/init),
# SLOT_MB (default 448), DATA_MB (default 128).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
out=${1:-$top/build/firmware/starttlsd-appliance.img}
fw=$top/build/firmware
SLOT_MB=${SLOT_MB:-448}
DATA_MB=${DATA_MB:-128}
BOOT_MB=16
DISK_ID=5354544c
say() { printf 'firmware: %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { say "needs root (mmdebstrap --mode=root, chroot, file ownership)"; exit 1; }
for t in mmdebstrap mkfs.ext4 sfdisk zstd; do
	command -v $t >/dev/null || { say "missing $t: run tests/deps.sh"; exit 1; }
done
for f in "$top/build/starttlsd" "$top/build/starttlsctl"; do
	[ -x "$f" ] || { say "missing $f: run make first"; exit 1; }
done

# ---- 1. the Debian tree (cached) ----------------------------------------------
# Runtime of starttlsd (BoringSSL, libev, libnftnl, libmnl, LMDB, libseccomp,
# libunbound, hiredis; jansson for starttlsctl),
# systemd + networkd, the cloud kernel (virtio; see README for hardware) with
# a small initramfs, rsyslog (local file + UDP forwarding), OpenSSH (LAN only),
# timesyncd (only with "ntp ="), GRUB's tools (grub-mkimage at build time,
# grub-editenv for the slot switch), e2fsprogs and zstd for upgrades.
PACKAGES=(
	systemd systemd-sysv udev kmod
	linux-image-cloud-amd64 initramfs-tools zstd
	android-libboringssl libev4 libnftnl11 libmnl0 liblmdb0 libseccomp2 ca-certificates
	libunbound8 libhiredis0.14 libjansson4
	nftables iproute2 procps rsyslog logrotate openssh-server systemd-timesyncd
	grub-pc-bin grub-common e2fsprogs iputils-ping
)
MIRRORS=(
	"deb http://deb.debian.org/debian bookworm main"
	"deb http://deb.debian.org/debian bookworm-updates main"
	"deb http://deb.debian.org/debian-security bookworm-security main"
)
# The initramfs finds the root by PARTUUID on a virtio disk: only those
# modules, zstd, so it is small and unpacks fast under emulation. A slot
# without /sbin/init panics there (and reboots) instead of running /bin/sh.
ESSENTIAL_HOOK='
	mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/etc/initramfs-tools/hooks"
	printf "MODULES=list\nCOMPRESS=zstd\n" >"$1/etc/initramfs-tools/conf.d/appliance"
	printf "#!/bin/sh\n[ \"\$1\" = prereqs ] && exit 0\n. /usr/share/initramfs-tools/hook-functions\nforce_load virtio_pci\nforce_load virtio_blk\n" \
		>"$1/etc/initramfs-tools/hooks/appliance"
	chmod 755 "$1/etc/initramfs-tools/hooks/appliance"
	mkdir -p "$1/etc/initramfs-tools/scripts/init-bottom"
	cat >"$1/etc/initramfs-tools/scripts/init-bottom/appliance" <<"EOS"
#!/bin/sh
# starttlsd-appliance: a system without init must not get /bin/sh as PID 1
# (initramfs-tools falls back to it): panic, so that panic=10 reboots and
# GRUB goes back to the good slot.
[ "$1" = prereqs ] && exit 0
. /scripts/functions
i=/sbin/init
if l=$(readlink "${rootmnt}$i"); then
	case $l in /*) i=$l ;; *) i=/sbin/$l ;; esac
fi
[ -x "${rootmnt}$i" ] || panic "starttlsd-appliance: no init ($i) in this system slot"
EOS
	chmod 755 "$1/etc/initramfs-tools/scripts/init-bottom/appliance"'
# The user starttlsd's workers become; no baked-in ssh host keys (made per
# appliance on the data partition); kernel and initramfs at fixed names.
CUSTOMIZE_HOOK='
	chroot "$1" useradd --system --no-create-home --home-dir /var/lib/starttlsd --shell /usr/sbin/nologin starttlsd
	rm -f "$1"/etc/ssh/ssh_host_*
	k=$(ls "$1"/boot/vmlinuz-* | sort -V | tail -n 1); i=$(ls "$1"/boot/initrd.img-* | sort -V | tail -n 1)
	ln -f "$k" "$1/boot/vmlinuz"; ln -f "$i" "$1/boot/initrd.img"
	chroot "$1" dpkg-query -W -f="\${Package} \${Version}\n" >"$1/../packages.txt"'

key=$(printf '%s\n' "${PACKAGES[@]}" "${MIRRORS[@]}" "$ESSENTIAL_HOOK" "$CUSTOMIZE_HOOK" base-v1 | sha256sum | cut -c1-16)
base=$fw/base-$key
mkdir -p "$fw/apt-cache"
exec 9>"$fw/.lock"
flock 9
if [ ! -f "$base/ok" ] || [ -n "${FIRMWARE_REBUILD:-}" ]; then
	rm -rf "$base" "$base.tmp"
	mkdir -p "$base.tmp"
	t0=$SECONDS
	say "building the Debian 12 tree (mmdebstrap, ${#PACKAGES[@]} packages and their dependencies; log $base.tmp/mmdebstrap.log)"
	mmdebstrap --variant=minbase --mode=root --format=directory \
		--aptopt='Acquire::Retries "3"' \
		--dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--dpkgopt='path-exclude=/usr/share/info/*' \
		--skip=essential/unlink \
		--setup-hook="mkdir -p \"\$1\"/var/cache/apt/archives/" \
		--setup-hook="sync-in $fw/apt-cache /var/cache/apt/archives/" \
		--essential-hook="$ESSENTIAL_HOOK" \
		--customize-hook="$CUSTOMIZE_HOOK" \
		--customize-hook="sync-out /var/cache/apt/archives $fw/apt-cache" \
		--include="$(IFS=,; echo "${PACKAGES[*]}")" \
		bookworm "$base.tmp/root" "${MIRRORS[@]}" >"$base.tmp/mmdebstrap.log" 2>&1 || {
			say "mmdebstrap failed; last lines of $base.tmp/mmdebstrap.log:"
			tail -n 20 "$base.tmp/mmdebstrap.log" >&2
			exit 1
		}
	rm -f "$fw/apt-cache/lock"; rm -rf "$fw/apt-cache/partial"
	echo $((SECONDS - t0)) >"$base.tmp/build-seconds"
	touch "$base.tmp/ok"
	for old in "$fw"/base-*; do
		[ "$old" = "$base.tmp" ] || rm -rf "$old"
	done
	mv "$base.tmp" "$base"
	say "tree built in $((SECONDS - t0)) s ($(du -sm "$base/root" | cut -f1) MiB)"
fi

# ---- 2. the system: tree + starttlsd + the appliance's own files ----------------
version=${FIRMWARE_VERSION:-$(git -C "$top" describe --always --dirty 2>/dev/null || echo unknown)}
work=$(mktemp -d "$fw/work.XXXXXX")
trap 'rm -rf "$work"' EXIT
R=$work/root
# Hard links into the cache: every change below replaces a file (rm first,
# install(1), cp --remove-destination), never writes into one.
cp -al "$base/root" "$R"
make -C "$top" --no-print-directory -s install DESTDIR="$R" PREFIX=/usr/local -o all >"$work/install.log" 2>&1 ||
	{ say "make install DESTDIR=$R failed:"; cat "$work/install.log" >&2; exit 1; }
cp -a --remove-destination "$here/rootfs/." "$R/"
chmod 0755 "$R"/usr/local/sbin/appliance-*
# /etc/starttlsd is made at every boot from the data partition.
rm -rf "$R/etc/starttlsd"
ln -s /run/appliance/starttlsd "$R/etc/starttlsd"
rm -f "$R/etc/resolv.conf" "$R/etc/hostname" "$R/etc/machine-id" "$R/var/lib/dbus/machine-id"
ln -s /run/appliance/resolv.conf "$R/etc/resolv.conf"
echo starttlsd-appliance >"$R/etc/hostname"
: >"$R/etc/machine-id"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$R/etc/hosts.new" && mv "$R/etc/hosts.new" "$R/etc/hosts"
printf 'NAME="starttlsd-appliance"\nVERSION="%s"\nDEBIAN="%s"\n' "$version" "$(cat "$R/etc/debian_version")" >"$R/etc/appliance-release"
# Units: ours and networkd on; what needs a writable root or reaches out off.
# timesyncd is started by appliance-config only when "ntp =" is set.
SYSTEMCTL="systemctl --root=$R --quiet"
$SYSTEMCTL enable systemd-networkd.service starttlsd.service appliance-config.service appliance-ready.service \
	appliance-trial-guard.service rsyslog.service ssh.service
$SYSTEMCTL disable systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
	fstrim.timer 2>/dev/null || true
$SYSTEMCTL mask systemd-random-seed.service systemd-networkd-wait-online.service \
	systemd-update-utmp.service systemd-update-utmp-runlevel.service \
	systemd-journal-flush.service ssh.socket nftables.service getty-static.service 2>/dev/null || true
# The root password is locked; appliance-config gives it the hash of
# "console_password" (serial console only).
rm -f "$R/etc/shadow.new"; sed 's/^root:[^:]*:/root:!:/' "$R/etc/shadow" >"$R/etc/shadow.new"
chmod 0640 "$R/etc/shadow.new"; chown root:shadow "$R/etc/shadow.new"; mv "$R/etc/shadow.new" "$R/etc/shadow"
# Mount points.
mkdir -p "$R/data" "$R/run/appliance"
if [ "${FIRMWARE_BREAK:-}" = init ]; then
	say "FIRMWARE_BREAK=init: this system has no /sbin/init (it cannot come up)"
	rm -f "$R/sbin/init" "$R/lib/systemd/systemd"
fi

# ---- 3. file systems -------------------------------------------------------------
# Fixed UUIDs, hash seeds and (with SOURCE_DATE_EPOCH) time stamps: the same
# inputs give the same file systems (see README: what still differs).
export E2FSPROGS_FAKE_TIME=${SOURCE_DATE_EPOCH:-$(git -C "$top" log -1 --format=%ct 2>/dev/null || date +%s)}
# GRUB 2.06 reads ext4 without the features e2fsprogs 1.47 adds by default.
EXT4_OPTS=(-q -F -t ext4 -O ^orphan_file,^metadata_csum_seed -E root_owner=0:0)
mkfs() { # mkfs LABEL UUID DIR OUT MiB [more options]
	local label=$1 uuid=$2 dir=$3 img=$4 mb=$5; shift 5
	mkfs.ext4 "${EXT4_OPTS[@]}" -L "$label" -U "$uuid" -E hash_seed="$uuid" "$@" -d "$dir" "$img" "${mb}M" \
		>"$work/mkfs-$label.log" 2>&1 || { say "mkfs.ext4 $label failed:"; cat "$work/mkfs-$label.log" >&2; exit 1; }
}
# Nothing newer than that time stamp (files written by this script and by
# package scripts): two builds of the same inputs give the same bytes.
clamp() { find "$@" -newermt "@$E2FSPROGS_FAKE_TIME" -exec touch -h -d "@$E2FSPROGS_FAKE_TIME" {} +; }
clamp "$R"
used=$(du -sm "$R" | cut -f1)
[ "$used" -lt $((SLOT_MB * 92 / 100)) ] || { say "system is $used MiB, slot is $SLOT_MB MiB: raise SLOT_MB"; exit 1; }
# The system: read-only, so no journal and no reserved blocks.
mkfs SYSA 5354544c-0000-4000-8000-000000000002 "$R" "$work/sys.img" "$SLOT_MB" -O ^has_journal -m 0

# The boot partition: GRUB's menu and its environment block.
mkdir -p "$work/boot/grub"
cp "$here/grub.cfg" "$work/boot/grub/grub.cfg"
chroot "$R" grub-editenv /tmp/grubenv create
chroot "$R" grub-editenv /tmp/grubenv set slot=A
mv "$R/tmp/grubenv" "$work/boot/grub/grubenv"
clamp "$work/boot"
mkfs BOOT 5354544c-0000-4000-8000-000000000001 "$work/boot" "$work/boot.img" "$BOOT_MB"

# The data partition: empty directories (appliance-config fills them).
mkdir -p "$work/data/config" "$work/data/state" "$work/data/log" "$work/data/ssh"
chmod 0700 "$work/data/state" "$work/data/ssh"
clamp "$work/data"
mkfs DATA 5354544c-0000-4000-8000-000000000004 "$work/data" "$work/data.img" "$DATA_MB"

# GRUB core.img: everything grub.cfg uses built in, so the boot partition
# needs no module directory.
chroot "$R" grub-mkimage -O i386-pc -o /tmp/core.img -p "(hd0,msdos1)/grub" \
	biosdisk part_msdos ext2 normal linux loadenv test echo serial terminal sleep configfile
mv "$R/tmp/core.img" "$work/core.img"
cp "$R/usr/lib/grub/i386-pc/boot.img" "$work/boot-sector.img"
core_sectors=$(( ($(stat -c %s "$work/core.img") + 511) / 512 ))
[ "$core_sectors" -le 2046 ] || { say "core.img is $core_sectors sectors, more than the 2046 before the slot record"; exit 1; }

# ---- 4. the disk -------------------------------------------------------------------
p1=2048
p2=$((p1 + BOOT_MB * 2048))
p3=$((p2 + SLOT_MB * 2048))
p4=$((p3 + SLOT_MB * 2048))
end=$((p4 + DATA_MB * 2048))
mkdir -p "$(dirname "$out")"
rm -f "$out.tmp"
truncate -s $((end * 512)) "$out.tmp"
sfdisk -q --no-reread --no-tell-kernel "$out.tmp" >"$work/sfdisk.log" 2>&1 <<EOF || { say "sfdisk failed:"; cat "$work/sfdisk.log" >&2; exit 1; }
label: dos
label-id: 0x$DISK_ID
unit: sectors

start=$p1, size=$((BOOT_MB * 2048)), type=83, bootable
start=$p2, size=$((SLOT_MB * 2048)), type=83
start=$p3, size=$((SLOT_MB * 2048)), type=83
start=$p4, size=$((DATA_MB * 2048)), type=83
EOF
put() { dd if="$1" of="$out.tmp" bs=512 seek="$2" conv=notrunc,sparse status=none; }
dd if="$work/boot-sector.img" of="$out.tmp" bs=440 count=1 conv=notrunc status=none
put "$work/core.img" 1
put "$work/boot.img" $p1
put "$work/sys.img" $p2
put "$work/data.img" $p4
sum=$(sha256sum "$work/sys.img" | cut -d' ' -f1)
printf 'STTLSLOT bytes=%d sha256=%s version=%s\n' "$(stat -c %s "$work/sys.img")" "$sum" "$version" |
	dd of="$out.tmp" bs=512 seek=2047 conv=notrunc,sync status=none
mv "$out.tmp" "$out"
cp "$base/packages.txt" "$(dirname "$out")/packages.txt"
say "$out: $((end / 2048)) MiB disk ($(du -m "$out" | cut -f1) MiB allocated), system $used MiB in a $SLOT_MB MiB slot, version $version"
