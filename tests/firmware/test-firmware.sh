#!/usr/bin/env bash
# make test-firmware (all of it) / make test-firmware-smoke (--smoke).
#
# Boots build/firmware/starttlsd-appliance.img (a copy) under qemu (TCG) with
# two NICs: NIC 1 into a LAN namespace with a mail client (swaks), NIC 2
# into a WAN namespace with a STARTTLS mail server (tests/peers/smtpd.py) and
# a UDP syslog collector. qemu runs in a third namespace, where its tap
# devices and a veth to each side are bridged: nothing on the host changes.
#
#   LAN ns  192.0.2.10 ── [qemu ns: tapl+veth bridge] ── NIC1 lan0 192.0.2.1
#   WAN ns  198.51.100.1 (router), .25 (mail), .60 (syslog) ── [tapw bridge] ── NIC2 wan0 198.51.100.2
#
# Smoke: the appliance boots from a config disk, prints "starttlsd-appliance
# ready", LAN mail reaches the server over TLS, the collector gets the
# event=session ... action=upgraded line.
# Full, in addition: nothing listens on the WAN; after a reboot a stripped
# STARTTLS from the same server is blocked (enforce; the pin survived); a
# config disk with a broken appliance.conf leaves the last good one running
# (and says why); an upgrade to a rebuilt image (the other slot) keeps the
# configuration and the pins; a broken image (no /sbin/init) rolls back.
#
# Logs of the last run: build/firmware/run-NAME/ (console-N.log, collector.log, ...).
#   FW_BOOT_TIMEOUT=SECONDS (default 480) per boot   FW_MEM=MiB (default 256)
#   FW_RUN=DIR (default build/firmware/run-NAME)     FIRMWARE_IMG=the image to test
. "$(dirname "$0")/../lib/common.sh"
SMOKE=
if [ "${1:-}" = --smoke ]; then SMOKE=1; T_NAME=test-firmware-smoke; else T_NAME=test-firmware; fi
need_root
for tool in qemu-system-x86_64 ssh ssh-keygen swaks zstd; do
	command -v $tool >/dev/null || { say "missing $tool: run tests/deps.sh"; exit 1; }
done

FW=$TOP/build/firmware
IMG=${FIRMWARE_IMG:-$FW/starttlsd-appliance.img}
[ -f "$IMG" ] || { say "missing $IMG: run make firmware"; exit 1; }
RUN=${FW_RUN:-$FW/run-$T_NAME}
BOOT_TIMEOUT=${FW_BOOT_TIMEOUT:-480}
MEM=${FW_MEM:-256}
# common.sh's cleanup removes these namespaces and kills what runs in them.
NS_CLI=fw$$lan; NS_GW=fw$$q; NS_SRV=fw$$wan
GW_LAN=192.0.2.1; GW_WAN=198.51.100.2; WAN_ROUTER=198.51.100.1; LOGHOST=198.51.100.60
T0=$SECONDS

rm -rf "$RUN"; mkdir -p "$RUN"
cp --sparse=always "$IMG" "$RUN/disk.img"

# ---- the networks ------------------------------------------------------------------
net_up() {
	local ns
	for ns in "$NS_CLI" "$NS_GW" "$NS_SRV"; do ip netns add "$ns" && ip -n "$ns" link set lo up || return 1; done
	ip -n "$NS_GW" tuntap add dev tapl mode tap || return 1
	ip -n "$NS_GW" tuntap add dev tapw mode tap || return 1
	ip -n "$NS_GW" link add brl type bridge
	ip -n "$NS_GW" link add brw type bridge
	ip link add "fw$$l0" netns "$NS_GW" type veth peer name lan0 netns "$NS_CLI"
	ip link add "fw$$w0" netns "$NS_GW" type veth peer name wan0 netns "$NS_SRV"
	ip -n "$NS_GW" link set tapl master brl; ip -n "$NS_GW" link set "fw$$l0" master brl
	ip -n "$NS_GW" link set tapw master brw; ip -n "$NS_GW" link set "fw$$w0" master brw
	for l in tapl tapw brl brw "fw$$l0" "fw$$w0"; do ip -n "$NS_GW" link set "$l" up; done
	ip -n "$NS_CLI" addr add "$CLI4/24" dev lan0
	ip -n "$NS_CLI" link set lan0 up
	ip -n "$NS_CLI" route add default via $GW_LAN
	ip -n "$NS_SRV" addr add "$WAN_ROUTER/24" dev wan0
	ip -n "$NS_SRV" addr add "$SRV4/24" dev wan0
	ip -n "$NS_SRV" addr add "$LOGHOST/24" dev wan0
	ip -n "$NS_SRV" addr add "$SRV6/64" dev wan0 nodad
	ip -n "$NS_SRV" link set wan0 up
}
net_up || { say "network setup failed"; exit 1; }

# ---- the peers --------------------------------------------------------------------------
COLLECTOR=$RUN/collector.log
: >"$COLLECTOR"
in_srv "$PY" "$TOP/tests/firmware/udp-syslogd.py" "$LOGHOST" 514 "$COLLECTOR" >"$RUN/collector.stdout" 2>&1 &
T_PIDS+=($!); disown $!
wait_for 30 grep -q ready "$RUN/collector.stdout" || { say "collector did not start"; exit 1; }
# server MODE (common.sh) waits 5 s for it; on a loaded machine give it 30.
srv_start() { server "$1" 2>/dev/null && return 0; wait_for 30 grep -q ready "$T_TMP/srv.stdout" || { say "server did not start"; return 1; }; }
srv_start starttls || exit 1

# ---- the configuration ------------------------------------------------------------------------
ssh-keygen -q -t ed25519 -N "" -C firmware-test -f "$RUN/id" </dev/null
conf_good() {
	cat <<-EOF
	# appliance.conf of the firmware test (documentation addresses only)
	hostname = gw1.example.org
	lan_address = $GW_LAN/24
	wan_address = $GW_WAN/24
	wan_gateway = $WAN_ROUTER
	wan_nat = on
	dns = 198.51.100.53
	syslog_remote = $LOGHOST:514
	ssh_key = $(cat "$RUN/id.pub")
	EOF
}
mkdir -p "$RUN/cfg1" "$RUN/cfg2"
conf_good >"$RUN/cfg1/appliance.conf"
# DANE and MTA-STS (on by default) would ask DNS, which this VM must not
# reach: 94-dane.sh tests them, in namespaces with their own DNS.
printf 'mode = enforce\nhelo_name = gw1.example.org\nca_file = /etc/starttlsd/ca.crt\ndane = off\nmta_sts = off\n' >"$RUN/cfg1/starttlsd.conf"
cp "$CERTS/ca.crt" "$RUN/cfg1/ca.crt"
"$TOP/firmware/mkconfig.sh" "$RUN/config1.img" "$RUN"/cfg1/* >/dev/null || { say "mkconfig failed"; exit 1; }

# ---- the VM ------------------------------------------------------------------------------------------
NBOOT=0        # qemu runs so far (console-N.log each)
READY=0        # "starttlsd-appliance ready" lines seen so far, over all runs
QPID=
# qemu runs with -no-reboot inside a loop that starts it again whenever the
# guest reboots (a reboot is a power cycle: under TCG on a loaded machine a
# warm reset once hung after GRUB with no kernel output), until $RUN/stop
# exists. The console of each vm_start goes to console-N.log (appended).
vm_start() { # vm_start CONFIG-DISK
	NBOOT=$((NBOOT + 1))
	CONSOLE=$RUN/console-$NBOOT.log
	: >"$CONSOLE"
	rm -f "$RUN/stop"
	(
		while [ ! -e "$RUN/stop" ]; do
			ip netns exec "$NS_GW" qemu-system-x86_64 -nodefaults -display none -monitor none -no-reboot \
				-accel tcg,thread=multi -m "$MEM" -smp 2 -device virtio-rng-pci \
				-drive file="$RUN/disk.img",format=raw,if=none,id=d0,cache=unsafe -device virtio-blk-pci,drive=d0,bootindex=0 \
				-drive file="$1",format=raw,if=none,id=d1,readonly=on -device virtio-blk-pci,drive=d1 \
				-netdev tap,id=n1,ifname=tapl,script=no,downscript=no -device virtio-net-pci,netdev=n1,mac=52:54:00:5a:00:01 \
				-netdev tap,id=n2,ifname=tapw,script=no,downscript=no -device virtio-net-pci,netdev=n2,mac=52:54:00:5a:00:02 \
				-chardev file,id=con,path="$CONSOLE",append=on -serial chardev:con >>"$RUN/qemu-$NBOOT.log" 2>&1 || break
			echo "=== reboot (qemu restarted by the test) ===" >>"$CONSOLE"
		done
	) &
	QPID=$!
	T_PIDS+=($QPID)
	BOOT_T0=$SECONDS
}
console_all() { cat "$RUN"/console-*.log 2>/dev/null | tr -d '\r'; }
ready_count() { console_all | grep -c '^starttlsd-appliance ready$'; }
notready_count() { console_all | grep -c 'starttlsd-appliance NOT ready'; }
# wait_ready: the next "ready" line (boot-to-ready time in BOOT_S).
wait_ready() {
	local want=$((READY + 1)) end=$((SECONDS + BOOT_TIMEOUT)) nr
	nr=$(notready_count)
	while [ "$(ready_count)" -lt $want ]; do
		if [ $SECONDS -ge $end ] || ! kill -0 "$QPID" 2>/dev/null || [ "$(notready_count)" -gt "$nr" ]; then
			say "          no 'starttlsd-appliance ready' (boot $want); last console lines:"
			tail -n 12 "$CONSOLE" | tr -d '\r' | sed 's/^/            /' >&2
			READY=$(ready_count)
			return 1
		fi
		sleep 1
	done
	READY=$want
	BOOT_S=$((SECONDS - BOOT_T0))
	say "  (ready after $BOOT_S s)"
}
# boot_ok WHAT: a check that the next "ready" comes (the console's last lines if not).
boot_ok() { local rc=0; wait_ready || rc=1; ok "$1" test $rc -eq 0; }
SSH=(ssh -i "$RUN/id" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes
	-o ConnectTimeout=10 -o LogLevel=ERROR root@$GW_LAN)
vm() { in_cli timeout 300 "${SSH[@]}" "$@"; }
vm_reboot() { BOOT_T0=$SECONDS; vm systemctl reboot >/dev/null 2>&1; return 0; }
vm_poweroff() {
	local end=$((SECONDS + 120))
	touch "$RUN/stop"
	vm systemctl poweroff >/dev/null 2>&1 || end=$SECONDS
	while kill -0 "$QPID" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 1; done
	pkill -P "$QPID" qemu-system-x86 2>/dev/null
	kill "$QPID" 2>/dev/null
	wait "$QPID" 2>/dev/null
	return 0
}
# send NAME: one mail from the LAN; the swaks transcript in $RUN/swaks-NAME.txt.
vm_upgrade() { vm appliance-upgrade --no-reboot - <"$1" >"$RUN/upgrade-$2.txt" 2>&1; }
send() { cswaks --header "Subject: firmware $1" >"$RUN/swaks-$1.txt" 2>&1; }
# fails CMD...: passes when CMD (a function too, unlike not_ok) fails.
fails() { ! "$@"; }
last_msg_tls() { [ "$(nmsgs)" -ge "$1" ] && json "$(msg_json "$1")" tls; }
collector_has() { grep -Eq "$1" "$COLLECTOR"; }

# ---- boot 1: from the config disk ---------------------------------------------------------------
say "  booting the appliance (qemu TCG, $MEM MiB, up to $BOOT_TIMEOUT s)"
vm_start "$RUN/config1.img"
boot_ok "boot 1: serial console says 'starttlsd-appliance ready'"
BOOT1_S=${BOOT_S:-}
[ "$T_FAIL" -eq 0 ] || { vm_poweroff; say "  the appliance did not come up: nothing else to check; logs in $RUN"; finish; }
ok "boot 1: the console showed the boot (kernel and systemd lines)" bash -c "grep -aq 'Linux version' '$CONSOLE' && grep -aq 'systemd' '$CONSOLE'"
ok "boot 1: the config disk was applied" bash -c "tr -d '\r' <'$CONSOLE' | grep -q 'config disk .*configuration applied and stored'"

ok "mail from the LAN accepted (swaks)" send first
ok "the server got it" wait_for 20 eval '[ "$(nmsgs)" -ge 1 ]'
ok "over TLS (TLSv1.3 on the WAN leg)" test "$(last_msg_tls 1)" = TLSv1.3
ok "collector got event=session ... action=upgraded (UDP syslog)" wait_for 30 collector_has 'starttlsd.*event=session.*action=upgraded'

if [ -n "$SMOKE" ]; then
	vm_poweroff
	say "  times: boot to ready ${BOOT1_S:-?} s; whole smoke $((SECONDS - T0)) s"
	finish
fi

# ---- the appliance from the inside (over SSH, the admin's way in) ---------------------------------
ok "ssh from the LAN with the configured key" vm true
vm 'cat /etc/appliance-release; appliance-slot status; ss -Hltnup; findmnt -rno TARGET,SOURCE,OPTIONS /; df -m / /data; free -m; systemd-analyze; systemd-analyze blame | head -n 20' >"$RUN/inside-1.txt" 2>&1
ok "root file system is read-only" grep -Eq '^/ .* ro[,$]' "$RUN/inside-1.txt"
ok "hostname from appliance.conf" test "$(vm hostname)" = gw1.example.org
ok "starttlsd's lines kept locally too (/var/log/starttlsd.log on /data)" vm 'grep -q "event=session.*action=upgraded" /var/log/starttlsd.log' 
# Every listening TCP socket is on the LAN address or loopback; the only UDP
# socket is rsyslog's sending one (omfwd: an ephemeral port it never reads).
wan_closed() {
	local f=$RUN/inside-1.txt
	grep -Eq '^tcp .* 192\.0\.2\.1:10025 ' "$f" || return 1
	! awk '$1 == "tcp" {print $5}' "$f" | grep -vE '^(192\.0\.2\.1|127\.0\.0\.[0-9]+|\[::1\]):[0-9]+$' | grep . &&
	! awk '$1 == "udp"' "$f" | grep -vE '^udp +UNCONN .*:(3[2-9][0-9]{3}|[4-6][0-9]{4}) .*"rsyslogd"' | grep .
}
ok "nothing listens on the WAN (ss: TCP only on $GW_LAN and loopback; UDP only rsyslog's sender)" wan_closed
wan_port_open() { in_srv timeout 3 bash -c "exec 3<>/dev/tcp/$GW_WAN/$1" 2>/dev/null; }
lan_port_open() { in_cli timeout 3 bash -c "exec 3<>/dev/tcp/$GW_LAN/$1" 2>/dev/null; }
ok "LAN: TCP $GW_LAN:22 is reachable (the probe below can see an open port)" lan_port_open 22
for port in 22 25 10025 514; do
	ok "WAN: TCP $GW_WAN:$port is not reachable" fails wan_port_open $port
done

# ---- reboot: the pin survives -------------------------------------------------------------------
vm_reboot
boot_ok "reboot: ready again"
server_stop
srv_start plain || exit 1
n0=$(nmsgs)
ok "after reboot, STARTTLS stripped by the server: the mail is refused (enforce, pinned)" fails send stripped
ok "  ... with 421 4.7.0" grep -q '421 4.7.0' "$RUN/swaks-stripped.txt"
ok "  ... and nothing reached the server" test "$(nmsgs)" -eq "$n0"
ok "  ... collector got action=blocked" wait_for 30 collector_has 'starttlsd.*event=session.*action=blocked'
server_stop
srv_start starttls || exit 1

# ---- a broken appliance.conf keeps the last good one -----------------------------------------
vm_poweroff
conf_good | sed -e "s|^lan_address = .*|lan_address = 192.0.2.300/24|" -e "s|^hostname = .*|hostname = broken.example.org|" >"$RUN/cfg2/appliance.conf"
cp "$RUN/cfg1/starttlsd.conf" "$RUN/cfg1/ca.crt" "$RUN/cfg2/"
"$TOP/firmware/mkconfig.sh" "$RUN/config2.img" "$RUN"/cfg2/* >/dev/null
vm_start "$RUN/config2.img"
boot_ok "broken config disk: the appliance still comes up"
ok "  ... the console says why (REJECTED, lan_address)" bash -c "tr -d '\r' <'$CONSOLE' | grep -q 'config disk .*REJECTED: appliance.conf line .*lan_address'"
ok "  ... and syslog (collector) too" wait_for 30 collector_has 'appliance.*REJECTED'
ok "  ... the last good configuration runs (hostname)" test "$(vm hostname)" = gw1.example.org
n0=$(nmsgs)
ok "  ... mail from the LAN still upgraded" send after-broken-config
ok "  ... over TLS" wait_for 20 eval '[ "$(last_msg_tls $((n0 + 1)))" = TLSv1.3 ]'

# ---- upgrade to a rebuilt image: config and pins survive ---------------------------------------
V2=upgrade-test-$$
say "  building the upgrade image (version $V2) and a broken one"
FIRMWARE_VERSION=$V2 "$TOP/firmware/build.sh" "$RUN/upgrade.img" >"$RUN/build-upgrade.log" 2>&1
ok "rebuilt image for the upgrade" test -f "$RUN/upgrade.img"
FIRMWARE_VERSION=broken-$$ FIRMWARE_BREAK=init "$TOP/firmware/build.sh" "$RUN/broken.img" >"$RUN/build-broken.log" 2>&1
ok "broken image (no /sbin/init)" test -f "$RUN/broken.img"
slot1=$(vm appliance-slot current)
t_up=$SECONDS
zstd -q -c "$RUN/upgrade.img" >"$RUN/upgrade.img.zst"
ok "appliance-upgrade (zstd image over ssh stdin) writes and verifies the other slot" vm_upgrade "$RUN/upgrade.img.zst" 1
say "  (upgrade write: $((SECONDS - t_up)) s, $(du -m "$RUN/upgrade.img.zst" | cut -f1) MiB compressed)"
vm_reboot
boot_ok "upgrade: the new system comes up"
ok "  ... it runs the new version in the other slot" vm "grep -q '$V2' /etc/appliance-release && [ \$(appliance-slot current) != $slot1 ]"
ok "  ... and committed it (good slot = new one)" bash -c "tr -d '\r' <'$CONSOLE' | grep -q 'upgrade committed: slot'"
ok "  ... configuration kept (hostname)" test "$(vm hostname)" = gw1.example.org
server_stop
srv_start plain || exit 1
n0=$(nmsgs)
ok "  ... pins kept: stripped STARTTLS still refused" fails send stripped-after-upgrade
ok "  ... with 421 4.7.0, nothing delivered" bash -c "grep -q '421 4.7.0' '$RUN/swaks-stripped-after-upgrade.txt' && [ \$(ls '$SRV_OUT'/msg-*.json | wc -l) -eq $n0 ]"
server_stop
srv_start starttls || exit 1

# ---- a broken image rolls back -----------------------------------------------------------------
slot2=$(vm appliance-slot current)
zstd -q -c "$RUN/broken.img" >"$RUN/broken.img.zst"
ok "appliance-upgrade writes the broken image" vm_upgrade "$RUN/broken.img.zst" 2
vm_reboot
boot_ok "broken upgrade: the appliance comes back by itself"
ok "  ... the broken system did boot, and its initramfs panicked and rebooted" bash -c "tr -d '\r' <'$CONSOLE' | grep -A1 'starttlsd-appliance: no init' | grep -q 'Rebooting automatically due to panic'"
ok "  ... on the previous slot and version" vm "grep -q '$V2' /etc/appliance-release && [ \$(appliance-slot current) = $slot2 ]"
ok "  ... and says it rolled back" bash -c "tr -d '\r' <'$CONSOLE' | grep -q 'did not come up: rolled back to slot $slot2'"
n0=$(nmsgs)
ok "  ... mail still upgraded" send after-rollback
ok "  ... over TLS" wait_for 20 eval '[ "$(last_msg_tls $((n0 + 1)))" = TLSv1.3 ]'

vm_poweroff
say "  times: boot 1 to ready ${BOOT1_S:-?} s; whole test $((SECONDS - T0)) s; logs in $RUN"
finish
