#!/usr/bin/env bash
# make test-systemd: deploy/starttlsd.service under a real systemd.
#
# Boots Debian 12 (systemd as PID 1, the cloud kernel and its own initramfs)
# under qemu-system-x86_64 (TCG: no KVM needed). The in-VM half (vmtest.sh,
# run by starttlsd-vmtest.service at boot) installs the package of
# "make deb" with apt (offline: its dependencies are in the image), checks
# what the package put in place (user by sysusers.d, state directory by
# tmpfiles.d, conffiles, unit not enabled), sets a configuration with
# intercept = on, enables and starts the unit, and checks start (Type=notify),
# the nftables table, the processes' users and capabilities, mail over TLS,
# the rsyslog file, reload (and a refused one), stop, a SIGKILL with
# Restart=on-failure and the journal; then "apt purge" and what it leaves.
# It writes one VMTEST line per check to the VM's second serial port.
#
# Here each expected check is counted (ok/FAIL as in the integration tests):
# a check that did not report "ok" fails, whether it failed, never ran, or
# the VM never got there; so does a missing "VMTEST done".
#
#   tests/vm/test-systemd.sh          uses build/starttlsd as built
#   VM_REBUILD=1  rebuild the cached image   VM_KEEP=1  keep the disk image
#   VM_TIMEOUT=SECONDS  (default 480) for boot + checks
#   VM_UNIT=FILE  boot with this unit instead of deploy/starttlsd.service
#
# The root file system tree is cached in build/vm/image-KEY/ (tests/vm/image.sh,
# KEY a hash of that script and its package list); each run copies it
# (hard links), installs starttlsd and the test into the copy, makes an ext4
# image of it with mkfs.ext4 -d (no loop device, no mount) and boots that.
# Logs of the last run: build/vm/run/ (console.log, results.log, the
# journal, nft, systemd-analyze security).
. "$(dirname "$0")/../lib/common.sh"
T_NAME=test-systemd
need_root

HERE=$TOP/tests/vm
VM_DIR=${VM_DIR:-$TOP/build/vm}
RUN=$VM_DIR/run
VM_TIMEOUT=${VM_TIMEOUT:-480}

# The checks vmtest.sh must report "ok", in its order. Keep in step with it.
CHECKS=(
	deb-install deb-user deb-state-dir deb-unit-path deb-conffiles deb-man deb-docs
	deb-not-enabled deb-not-started deb-config unit-enable-now
	unit-enabled active-after-boot start-logged check-config-passed workers-running
	type-notify status-text
	nft-table nft-rules
	master-root master-capbnd master-capeff master-nonewprivs-seccomp
	workers-starttlsd-netraw state-dir pins-open-at-boot state-dir-given-at-boot
	net-up server-up mail-local-sent mail-local-tls mail-lan-sent mail-lan-tls
	journal-session-upgraded journal-session-lan pin-recorded
	reload-rc reload-logged reload-table-updated reload-same-main
	reload-workers-replaced reload-workers-privileges reload-state-dir reload-pins-open
	mail-after-reload mail-after-reload-tls
	reload-refused-rc reload-refused-active reload-refused-journal reload-refused-logged
	reload-refused-status reload-refused-still-active reload-good-again reload-good-status
	reload-good-workers
	stop-rc stop-fast stop-result stop-table-gone stop-no-process stop-logged
	stop-workers-by-master stop-direct-path stop-direct-path-plaintext
	start-again start-ready-mail start-ready-mail-tls start-again-logged start-again-workers start-again-state-dir
	start-again-pins-open start-again-state-dir-given
	kill-main kill-restarted kill-active kill-nrestarts kill-start-logged
	kill-systemd-restart-logged kill-one-table kill-old-workers-gone kill-new-workers
	kill-master-root kill-master-capbnd kill-master-capeff kill-master-nonewprivs-seccomp
	kill-workers-privileges kill-pins-open mail-after-restart mail-after-restart-tls
	journal-no-eperm journal-no-sigsys kernel-no-seccomp-audit journal-no-errors
	journal-no-unit-failure analyze-security analyze-verify
	rsyslog-file rsyslog-file-only logrotate-config
	purge-rc purge-no-process purge-no-table purge-files-gone purge-conffiles-gone
	purge-state-gone purge-log-gone purge-unit-gone purge-dpkg-gone purge-user-kept
)

for tool in qemu-system-x86_64 mmdebstrap mkfs.ext4; do
	command -v $tool >/dev/null || { say "missing $tool: run tests/deps.sh"; exit 1; }
done
DEB=$(ls "$TOP"/build/deb/starttlsd_*_amd64.deb 2>/dev/null | head -n 1)
[ -f "$DEB" ] || { say "missing build/deb/starttlsd_*.deb: run make deb first"; exit 1; }

# ---- the image (cached) --------------------------------------------------------
t0=$SECONDS
IMG=$("$HERE/image.sh" "$VM_DIR") || { say "image build failed"; exit 1; }
t_image=$((SECONDS - t0))
say "  image $IMG ($t_image s now; cold build took $(cat "$IMG/build-seconds") s)"

# ---- this run's root: the cached tree + the .deb + the test ------------------
t0=$SECONDS
rm -rf "$RUN"
mkdir -p "$RUN"
ROOT=$RUN/root
# Hard links: nothing below writes into a file of the copy (install(1)
# replaces files, everything else is new), so the cache stays as built.
cp -al "$IMG/root" "$ROOT"
L=$ROOT/usr/local/lib/starttlsd-vmtest
install -d "$L/certs"
install -m 0644 "$DEB" "$L/starttlsd.deb"
# VM_UNIT=FILE: try another unit in place of the package's (an override in /etc).
if [ -n "${VM_UNIT:-}" ]; then
	install -D -m 0644 "$VM_UNIT" "$ROOT/etc/systemd/system/starttlsd.service"
	say "  unit: $VM_UNIT (VM_UNIT)"
fi
install -m 0644 "$HERE/starttlsd.conf" "$L/starttlsd.conf"
bash "$PEERS/mkcerts.sh" "$RUN/certs" >/dev/null || { say "mkcerts failed"; exit 1; }
install -m 0755 "$HERE/vmtest.sh" "$HERE/send.py" "$PEERS/smtpd.py" "$L/"
install -m 0644 "$RUN/certs/server.crt" "$RUN/certs/ca.crt" "$L/certs/"
install -m 0600 "$RUN/certs/server.key" "$L/certs/"
install -m 0644 "$HERE/starttlsd-vmtest.service" "$ROOT/etc/systemd/system/"
# systemctl enable of the test unit, by hand (its [Install] says multi-user).
ln -sfn /etc/systemd/system/starttlsd-vmtest.service "$ROOT/etc/systemd/system/multi-user.target.wants/starttlsd-vmtest.service"
size=$(( $(du -sm "$ROOT" | cut -f1) + 300 ))
mkfs.ext4 -q -F -L starttlsd-vm -E root_owner=0:0 -d "$ROOT" "$RUN/disk.img" "${size}M" >"$RUN/mkfs.log" 2>&1 ||
	{ say "mkfs.ext4 failed:"; cat "$RUN/mkfs.log" >&2; exit 1; }
rm -rf "$ROOT"
t_stage=$((SECONDS - t0))

# ---- boot; the test unit powers the VM off --------------------------------------
t0=$SECONDS
say "  booting (qemu TCG, 2 CPUs; up to $VM_TIMEOUT s)"
: >"$RUN/console.log"
: >"$RUN/results.log"
timeout -k 5 "$VM_TIMEOUT" qemu-system-x86_64 -nodefaults -display none -no-reboot \
	-accel tcg,thread=multi -m 1024 -smp 2 \
	-kernel "$IMG/vmlinuz" -initrd "$IMG/initrd.img" \
	-append "console=ttyS0 root=/dev/vda rw panic=-1 fsck.mode=skip systemd.unit=multi-user.target module_blacklist=kvm,kvm_amd,kvm_intel" \
	-drive file="$RUN/disk.img",format=raw,if=virtio,cache=unsafe \
	-serial file:"$RUN/console.log" -serial file:"$RUN/results.log" \
	-nic none >"$RUN/qemu.log" 2>&1 &
QPID=$!
T_PIDS+=($QPID)
wait $QPID
qrc=$?
t_boot=$((SECONDS - t0))
[ -n "${VM_KEEP:-}" ] || rm -f "$RUN/disk.img"

# ---- what the VM said -------------------------------------------------------------
tr -d '\r' <"$RUN/results.log" >"$RUN/results.txt"
RES=$RUN/results.txt
for name in $(sed -n 's/^VMDUMP \([a-z-]*\)| .*/\1/p' "$RES" | sort -u); do
	sed -n "s/^VMDUMP $name| //p" "$RES" >"$RUN/$name.txt"
done
grep '^VMTEST info' "$RES" | sed 's/^VMTEST info /  vm: /' >&2

vm_check() { grep -qx "VMTEST ok $1" "$RES"; }
for name in "${CHECKS[@]}"; do
	f=$T_FAIL
	ok "$name" vm_check "$name"
	if [ "$T_FAIL" -gt "$f" ]; then
		if grep -q "^VMTEST FAIL $name:" "$RES"; then
			say "          $(grep -m1 "^VMTEST FAIL $name:" "$RES" | sed "s/^VMTEST FAIL $name: *//")"
		else
			say "          did not run (no result from the VM)"
		fi
	fi
done
# A check the VM ran that CHECKS lacks: the two lists are out of step.
extra=$(sed -n 's/^VMTEST \(ok\|FAIL\) \([^: ]*\).*/\2/p' "$RES" |
	grep -vxF -f <(printf '%s\n' "${CHECKS[@]}") | sort -u | tr '\n' ' ')
ok "no check in the VM that this script does not list" test -z "$extra"
[ -z "$extra" ] || say "          $extra"
ok "the VM finished its checks (VMTEST done)" grep -qx "VMTEST done" "$RES"
grep -qx "VMTEST done" "$RES" || { say "          last lines of $RUN/console.log:"; tail -n 15 "$RUN/console.log" | tr -d '\r' | sed 's/^/            /' >&2; }
ok "the VM powered itself off (qemu exit 0, no timeout)" test "$qrc" -eq 0
[ "$qrc" -eq 124 ] && say "          qemu killed after $VM_TIMEOUT s; console: $RUN/console.log"
say "  times: image $t_image s, staging (install + mkfs.ext4) $t_stage s, boot + checks $t_boot s"
say "  logs: $RUN (console.log, results.txt, journal-unit.txt, journal-syslog.txt, analyze-security.txt)"
finish
