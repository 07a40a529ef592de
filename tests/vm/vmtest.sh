#!/bin/bash
# The checks of tests/vm/test-systemd.sh, run inside the VM by
# starttlsd-vmtest.service: install the .deb with apt, enable and start the
# unit, check it, purge the package.
#
# Writes to /dev/ttyS1 (a file on the host):
#   VMTEST ok NAME | VMTEST FAIL NAME: why | VMTEST info TEXT
#   VMDUMP NAME| LINE        (files the host keeps: journal, nft, analyze ...)
#   VMTEST done              (last line; without it the host fails the run)
# The host holds its own list of the NAMEs it expects: a check that never
# ran here is a failure there, not a pass.
#
# Topology inside the VM (documentation addresses only):
#   netns cli 192.0.2.10 --veth-- lan0 192.0.2.1 [VM: starttlsd] wan0 198.51.100.1
#       --veth-- netns srv 198.51.100.25 (tests/peers/smtpd.py, STARTTLS)
set -u
D=/usr/local/lib/starttlsd-vmtest
W=/run/vmtest
CONF=/etc/starttlsd/starttlsd.conf
SRV=198.51.100.25
# CapabilityBoundingSet of deploy/starttlsd.service: CAP_CHOWN(0) CAP_SETGID(6)
# CAP_SETUID(7) CAP_SETPCAP(8) CAP_NET_BIND_SERVICE(10) CAP_NET_ADMIN(12)
# CAP_NET_RAW(13). The workers keep CAP_NET_RAW alone.
CAPS_UNIT=00000000000035c1
CAPS_WORKER=0000000000002000
CAPS_NONE=0000000000000000
mkdir -p "$W"
if [ -c /dev/ttyS1 ]; then exec 3>/dev/ttyS1; else exec 3>&1; fi

out() { printf '%s\n' "$*" >&3; printf '%s\n' "$*"; }
info() { out "VMTEST info $*"; }
# check NAME CMD...: one check; the last lines of its output say why it failed.
check() {
	local name=$1; shift
	if "$@" >"$W/check.out" 2>&1; then
		out "VMTEST ok $name"
	else
		out "VMTEST FAIL $name: $(tail -n 4 "$W/check.out" | tr '\n\r' '  ' | cut -c1-400)"
	fi
}
# dump NAME CMD...: the command's output, line by line, for the host to keep.
dump() {
	local name=$1; shift
	"$@" 2>&1 | sed "s/^/VMDUMP $name| /" >&3
}
# wait_for SECONDS CMD...: retry until CMD succeeds.
wait_for() {
	local end=$((SECONDS + $1)); shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -ge $end ] && { "$@"; return 1; }
		sleep 0.2
	done
}
prop() { systemctl show -P "$1" starttlsd; }
# slog [N]: what starttlsd sent to syslog (facility mail), from line N+1 on;
# C=$(mark) before a step, slog "$C" after it: what the step logged.
slog() { journalctl -b -q --no-pager SYSLOG_IDENTIFIER=starttlsd SYSLOG_FACILITY=2 -o cat | tail -n +$((${1:-0} + 1)); }
mark() { slog | wc -l; }
# ulog [N]: the unit's journal (systemd's lines and the daemon's), likewise.
ulog() { journalctl -b -q --no-pager -u starttlsd -o cat | tail -n +$((${1:-0} + 1)); }
slog_has() { slog "${2:-}" | grep -Eq "$1"; }
tables() { nft list tables | grep -c '^table inet starttlsd$'; }
one_table() { [ "$(tables)" -eq 1 ]; }
no_table() { [ "$(tables)" -eq 0 ]; }
status_of() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
uids_of() { awk '$1 == "Uid:" { print $2, $3, $4, $5 }' "/proc/$1/status"; }
workers() { pgrep -P "$(prop MainPID)" | sort; }
nworkers_is() { [ "$(workers | wc -l)" -eq "$1" ]; }
expect_eq() { [ "$1" = "$2" ] || { echo "got '$1', expected '$2'"; return 1; }; }

# The unit's main process: root, the unit's bounding set, all of it effective.
check_master() {
	local p=$1 tag=$2
	check "$tag-root" expect_eq "$(uids_of "$p")" "0 0 0 0"
	check "$tag-capbnd" expect_eq "$(status_of "$p" CapBnd)" $CAPS_UNIT
	check "$tag-capeff" expect_eq "$(status_of "$p" CapEff)/$(status_of "$p" CapPrm)/$(status_of "$p" CapAmb)" \
		"$CAPS_UNIT/$CAPS_UNIT/$CAPS_NONE"
	check "$tag-nonewprivs-seccomp" expect_eq "$(status_of "$p" NoNewPrivs)/$(status_of "$p" Seccomp)" "1/2"
}
# Every worker: user starttlsd, CAP_NET_RAW only (effective, permitted,
# bounding), no new privileges, a seccomp filter.
workers_ok() {
	local w bad=0 uid gid
	uid=$(id -u starttlsd); gid=$(id -g starttlsd)
	for w in $(workers); do
		expect_eq "$w uid $(uids_of "$w")" "$w uid $uid $uid $uid $uid" || bad=1
		expect_eq "$w gid $(awk '$1 == "Gid:" { print $2, $3, $4, $5 }' "/proc/$w/status")" "$w gid $gid $gid $gid $gid" || bad=1
		expect_eq "$w groups $(status_of "$w" Groups)" "$w groups " || bad=1
		expect_eq "$w caps $(status_of "$w" CapEff)/$(status_of "$w" CapPrm)/$(status_of "$w" CapInh)/$(status_of "$w" CapAmb)" \
			"$w caps $CAPS_WORKER/$CAPS_WORKER/$CAPS_NONE/$CAPS_NONE" || bad=1
		expect_eq "$w bnd $(status_of "$w" CapBnd)" "$w bnd $CAPS_WORKER" || bad=1
		expect_eq "$w nnp/seccomp $(status_of "$w" NoNewPrivs)/$(status_of "$w" Seccomp)" "$w nnp/seccomp 1/2" || bad=1
	done
	[ -n "$(workers)" ] && [ $bad -eq 0 ]
}

# ---- the network: LAN and server namespaces on veth pairs --------------------
net_up() {
	ip netns add srv && ip netns add cli || return 1
	ip link add wan0 type veth peer name eth0 netns srv || return 1
	ip link add lan0 type veth peer name eth0 netns cli || return 1
	ip addr add 198.51.100.1/24 dev wan0 && ip link set wan0 up &&
	ip addr add 192.0.2.1/24 dev lan0 && ip link set lan0 up &&
	ip -n srv link set lo up && ip -n srv addr add $SRV/24 dev eth0 &&
	ip -n srv link set eth0 up && ip -n srv route add default via 198.51.100.1 &&
	ip -n cli link set lo up && ip -n cli addr add 192.0.2.10/24 dev eth0 &&
	ip -n cli link set eth0 up && ip -n cli route add default via 192.0.2.1 &&
	sysctl -qw net.ipv4.ip_forward=1
}
server_up() {
	mkdir -p "$W/srv-out"
	ip netns exec srv python3 "$D/smtpd.py" --listen "$SRV:25" \
		--cert "$D/certs/server.crt" --key "$D/certs/server.key" \
		--out "$W/srv-out" --log "$W/srv.log" --mode starttls \
		>"$W/srv.stdout" 2>"$W/srv.stderr" &
	wait_for 30 grep -q ready "$W/srv.stdout" || { cat "$W/srv.stderr"; return 1; }
}
N=0
# mail local|lan NAME: one message to $SRV:25, from the VM itself or from
# the LAN namespace; both are intercepted by starttlsd's table.
mail() {
	local from=$1 subj=$2
	N=$((N + 1))
	case $from in
	local) python3 "$D/send.py" $SRV "$subj" ;;
	lan) ip netns exec cli python3 "$D/send.py" $SRV "$subj" ;;
	esac || return 1
	wait_for 10 test -f "$W/srv-out/msg-$N.json"
}
# msg_tls N: the TLS version the server saw for message N ("None": plaintext).
msg_tls() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tls"])' "$W/srv-out/msg-$1.json"; }
last_tls_is() { expect_eq "$(msg_tls $N)" "$1"; }
main_pid_changed() { local p; p=$(prop MainPID); [ "$p" != 0 ] && [ "$p" != "$1" ]; }
is_active() { [ "$(systemctl is-active starttlsd)" = active ]; }
no_starttlsd_process() { ! pgrep -x starttlsd; }
workers_gone() { local p; for p in $1; do [ -d "/proc/$p" ] && return 1; done; return 0; }
sdir() { info "state_dir $1: $(stat -c '%U:%G %a' /var/lib/starttlsd) $(ls -ln /var/lib/starttlsd | tail -n +2 | awk '{printf "%s %s:%s %s; ", $9, $3, $4, $1}')"; }
# The pin store: the directory and its files belong to the workers' user,
# and nobody else may write there.
state_dir_ok() {
	local f
	for f in /var/lib/starttlsd /var/lib/starttlsd/data.mdb /var/lib/starttlsd/lock.mdb; do
		expect_eq "$f $(stat -c %U:%G "$f")" "$f starttlsd:starttlsd" || return 1
		[ $(( 0$(stat -c %a "$f") & 022 )) -eq 0 ] || { echo "$f: mode $(stat -c %a "$f")"; return 1; }
	done
}
# pins_open_since N: since line N of slog, no process said it runs without
# the pin store.
pins_open_since() { ! slog "$1" | grep 'event=pinstore msg="cannot open'; }
# state_dir_given_since N: the master gave state_dir to the user without an
# error (since line N of slog).
state_dir_given_since() { ! slog "$1" | grep 'event=pinstore msg="state_dir .*chown'; }

info "kernel $(uname -r), $(systemctl --version | head -n 1), $(nproc) CPUs"
info "booted to the test unit in $(awk '{print $1}' /proc/uptime) s"

# ---- 0. the package, installed with apt (offline) ------------------------------
# The image leaves docs and man pages out (dpkg path-exclude, to keep it small):
# not for this package, whose files are checked.
grep -l path-exclude /etc/dpkg/dpkg.cfg.d/* 2>/dev/null | xargs -r rm -f
check deb-install bash -c "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $D/starttlsd.deb"
check deb-user bash -c "getent passwd starttlsd | grep -q ':/var/lib/starttlsd:/usr/sbin/nologin$' && [ \$(id -u starttlsd) -lt 1000 ]"
check deb-state-dir expect_eq "$(stat -c '%U:%G %a' /var/lib/starttlsd 2>&1)" "starttlsd:starttlsd 700"
check deb-unit-path bash -c "systemctl show -P FragmentPath starttlsd | grep -Eqx '(/usr)?/lib/systemd/system/starttlsd.service'"
check deb-conffiles bash -c "dpkg-query -W -f='\${Conffiles}' starttlsd | awk '{print \$1}' | sort | tr '\n' ' ' |
	grep -qx '/etc/logrotate.d/starttlsd /etc/rsyslog.d/30-starttlsd.conf /etc/starttlsd/starttlsd.conf '"
check deb-man bash -c "ls /usr/share/man/man8/starttlsd.8.gz /usr/share/man/man8/starttlsctl.8.gz /usr/share/man/man5/starttlsd.conf.5.gz"
# The docs the man pages name, and the monitoring files, as they are (not .gz).
check deb-docs bash -c "for f in logging.md policy.md metrics.md ops/starttlsd.mtail ops/starttlsd-rules.yml ops/starttlsd-dashboard.json; do
	test -s /usr/share/doc/starttlsd/\$f || { echo missing \$f; exit 1; }; done;
	for p in \$(zcat /usr/share/man/man8/starttlsd.8.gz /usr/share/man/man5/starttlsd.conf.5.gz /usr/share/man/man8/starttlsctl.8.gz |
		grep -o '/usr/share/doc/starttlsd/[a-z.]*' | sort -u); do test -s \$p || { echo man page names missing \$p; exit 1; }; done"
check deb-not-enabled expect_eq "$(systemctl is-enabled starttlsd)" disabled
check deb-not-started expect_eq "$(systemctl is-active starttlsd)" inactive
# The administrator's configuration (a changed conffile) and CA.
install -m 0644 "$D/starttlsd.conf" "$CONF"
install -m 0644 "$D/certs/ca.crt" /etc/starttlsd/test-ca.crt
check deb-config /usr/sbin/starttlsd --check-config -c "$CONF"
check unit-enable-now systemctl enable --now starttlsd

# ---- 1. enabled, active, --check-config passed ----------------------------------
check unit-enabled expect_eq "$(systemctl is-enabled starttlsd)" enabled
check active-after-boot wait_for 60 is_active
check start-logged wait_for 30 slog_has '^event=start '
# ExecStartPre= lines (the mkdir, --check-config): each ran and exited 0.
check check-config-passed bash -c "p=\$(systemctl show -p ExecStartPre starttlsd); echo \"\$p\";
	grep -- '--check-config' <<<\"\$p\" | grep -q 'code=exited ; status=0' &&
	[ \$(grep -c 'code=exited ; status=0' <<<\"\$p\") -eq \$(grep -c 'path=' <<<\"\$p\") ]"
dump status systemctl status --no-pager -n 0 starttlsd
dump exec-start-pre systemctl show -p ExecStartPre starttlsd
NW=$(nproc)
check workers-running wait_for 20 nworkers_is "$NW"
# Type=notify: READY=1 came (the unit is active), STATUS= has sessions and workers.
check type-notify expect_eq "$(prop Type)/$(prop NotifyAccess)" notify/main
check status-text wait_for 10 bash -c "systemctl show -P StatusText starttlsd | grep -Eqx '[0-9]+ sessions? open, $NW workers?'"
info "StatusText: $(prop StatusText)"

# ---- 2. the nftables table --------------------------------------------------
check nft-table one_table
dump nft nft list table inet starttlsd
check nft-rules bash -c 'r=$(nft list table inet starttlsd) &&
	grep -q "iifname \"lan0\" tcp dport 25 redirect to :10025" <<<"$r" &&
	grep -q "meta mark 0x00002525 return" <<<"$r" &&
	grep -q "type nat hook output" <<<"$r"'

# ---- 3. privileges: master root with the unit's set, workers starttlsd ------
MAIN=$(prop MainPID)
info "MainPID $MAIN: $(grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/$MAIN/status | tr '\t\n' '  ')"
for w in $(workers); do
	info "worker $w: $(grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/$w/status | tr '\t\n' '  ')"
done
check_master "$MAIN" master
check workers-starttlsd-netraw workers_ok
sdir "after boot"
check state-dir wait_for 10 state_dir_ok
check pins-open-at-boot pins_open_since 0
check state-dir-given-at-boot state_dir_given_since 0

# ---- 4. mail through the proxy over TLS ---------------------------------------
check net-up net_up
check server-up server_up
C=$(mark)
check mail-local-sent mail local "from the gateway itself"
check mail-local-tls last_tls_is TLSv1.3
check mail-lan-sent mail lan "from the LAN"
check mail-lan-tls last_tls_is TLSv1.3
check journal-session-upgraded wait_for 10 bash -c "
	journalctl -b -q SYSLOG_IDENTIFIER=starttlsd SYSLOG_FACILITY=2 -o cat | tail -n +$((C + 1)) |
		grep -E '^event=session .* dst=$SRV:25 action=upgraded tls=TLSv1.3 .*verify=ok' | grep -c . | grep -qx 2"
check journal-session-lan slog_has "^event=session .* client=192\.0\.2\.10:[0-9]+ dst=$SRV:25 action=upgraded" "$C"
check pin-recorded wait_for 15 bash -c "/usr/sbin/starttlsctl --state-dir /var/lib/starttlsd list | grep -q '$SRV'"
sdir "after the first mails"
dump server-log cat "$W/srv.log"

# ---- 5. reload -------------------------------------------------------------------
OLDW=$(workers)
C=$(mark)
echo "intercept_bypass = 203.0.113.0/24" >>"$CONF"
check reload-rc systemctl reload starttlsd
check reload-logged wait_for 10 slog_has '^event=reload ' "$C"
check reload-table-updated wait_for 10 bash -c "nft list set inet starttlsd bypass4 | grep -q '203.0.113.0/24'"
check reload-same-main bash -c "[ \"\$(systemctl is-active starttlsd)\" = active ] && [ \"\$(systemctl show -P MainPID starttlsd)\" = $MAIN ]"
check reload-workers-replaced wait_for 20 bash -c "
	new=\$(pgrep -P $MAIN | sort); [ \$(echo \"\$new\" | grep -c .) -eq $NW ] &&
	[ -z \"\$(comm -12 <(echo '$OLDW') <(echo \"\$new\"))\" ]"
check reload-workers-privileges workers_ok
sdir "after reload"
check reload-state-dir state_dir_ok
check reload-pins-open pins_open_since "$C"
check mail-after-reload mail local "after reload"
check mail-after-reload-tls last_tls_is TLSv1.3

# ---- 5b. a refused reload is visible; the running daemon stays --------------
cp "$CONF" "$W/conf.good"
echo "data_timeout = bogus" >>"$CONF"
C=$(mark)
# ExecReload='s --check-config refuses it: systemctl reload fails.
check reload-refused-rc bash -c "! systemctl reload starttlsd"
check reload-refused-active bash -c "[ \"\$(systemctl is-active starttlsd)\" = active ] && [ \"\$(systemctl show -P MainPID starttlsd)\" = $MAIN ]"
check reload-refused-journal bash -c "journalctl -b -q -u starttlsd -o cat | grep -q 'data_timeout: expected a number'"
# A SIGHUP that gets past the check (kill -HUP by hand): the daemon refuses
# it itself, says so in the log and in STATUS= (RELOADING=1, then READY=1).
systemctl kill -s HUP --kill-whom=main starttlsd
check reload-refused-logged wait_for 10 slog_has '^event=reload msg="configuration refused' "$C"
check reload-refused-status wait_for 10 bash -c "systemctl show -P StatusText starttlsd | grep -q 'refused'"
check reload-refused-still-active wait_for 10 is_active
info "StatusText after a refused SIGHUP: $(prop StatusText)"
cp "$W/conf.good" "$CONF"
check reload-good-again systemctl reload starttlsd
check reload-good-status wait_for 10 bash -c "systemctl show -P StatusText starttlsd | grep -Eqx '[0-9]+ sessions? open, $NW workers?'"
# The workers the reloads replaced have gone before the stop below counts exits.
check reload-good-workers wait_for 20 nworkers_is "$NW"

# ---- 6. stop ---------------------------------------------------------------------
C=$(mark)
t0=$(date +%s.%N)
check stop-rc systemctl stop starttlsd
t=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
info "systemctl stop took $t s"
check stop-fast awk -v t="$t" 'BEGIN { exit !(t < 15) }'
check stop-result expect_eq "$(prop ActiveState)/$(prop Result)/$(prop ExecMainCode)/$(prop ExecMainStatus)" "inactive/success/1/0"
check stop-table-gone no_table
check stop-no-process no_starttlsd_process
slog "$C" >"$W/stop.log"
dump stop-log cat "$W/stop.log"
check stop-logged bash -c "grep -q '^event=intercept action=removed' $W/stop.log && grep -Eq '^event=stop msg=\"?(master )?exiting' $W/stop.log"
# The master stops its workers itself, after removing the table.
check stop-workers-by-master bash -c "! grep -E 'cannot tell worker|expected=no' $W/stop.log &&
	[ \$(grep -c 'event=worker action=exited .*expected=yes' $W/stop.log) -eq $NW ] &&
	[ \$(grep -n 'event=intercept action=removed' $W/stop.log | cut -d: -f1) -lt \$(grep -n 'msg=\"signal SIGTERM: no new sessions' $W/stop.log | head -n 1 | cut -d: -f1) ]"
check stop-direct-path mail local "proxy stopped"
check stop-direct-path-plaintext last_tls_is None

# ---- 7. start again, SIGKILL the master: Restart=on-failure ---------------------
C=$(mark)
check start-again bash -c "systemctl start starttlsd && [ \"\$(systemctl is-active starttlsd)\" = active ]"
# READY=1 means accepting: a mail sent the moment systemctl start returns
# is intercepted (table installed) and relayed over TLS (listener up).
check start-ready-mail mail local "right after systemctl start returned"
check start-ready-mail-tls last_tls_is TLSv1.3
check start-again-logged wait_for 30 slog_has '^event=start ' "$C"
check start-again-workers wait_for 20 nworkers_is "$NW"
sdir "after start again"
check start-again-state-dir state_dir_ok
check start-again-pins-open pins_open_since "$C"
check start-again-state-dir-given state_dir_given_since "$C"
MAIN=$(prop MainPID)
OLDW=$(workers)
NR=$(prop NRestarts)
C=$(mark)
U=$(ulog | wc -l)
journalctl -b -q --no-pager -u starttlsd -o short-monotonic >"$W/unit-before-kill.log"
check kill-main systemctl kill -s KILL --kill-whom=main starttlsd
t0=$SECONDS
check kill-restarted wait_for 20 main_pid_changed "$MAIN"
info "restarted after SIGKILL in about $((SECONDS - t0)) s (RestartSec=2s): MainPID $MAIN -> $(prop MainPID)"
check kill-active wait_for 20 is_active
check kill-nrestarts expect_eq "$(prop NRestarts)" $((NR + 1))
check kill-start-logged wait_for 30 slog_has '^event=start ' "$C"
ulog "$U" >"$W/kill.log"
check kill-systemd-restart-logged bash -c "
	grep -q 'Main process exited, code=killed, status=9/KILL' $W/kill.log && grep -q 'Scheduled restart job' $W/kill.log"
check kill-one-table one_table
check kill-old-workers-gone workers_gone "$OLDW"
check kill-new-workers wait_for 20 nworkers_is "$NW"
check_master "$(prop MainPID)" kill-master
check kill-workers-privileges workers_ok
check kill-pins-open wait_for 5 pins_open_since "$C"
check mail-after-restart mail lan "after SIGKILL and restart"
check mail-after-restart-tls last_tls_is TLSv1.3

# ---- 8. the journal: nothing refused by the sandbox ---------------------------
journalctl -b -q --no-pager -u starttlsd -o short-monotonic >"$W/unit.log"
journalctl -b -q --no-pager SYSLOG_IDENTIFIER=starttlsd -o short-monotonic >"$W/syslog.log"
journalctl -b -q --no-pager -k -o short-monotonic >"$W/kernel.log"
# (The state_dir chown error has checks of its own: state-dir-given-*.)
check journal-no-eperm bash -c "! grep -Ei 'Operation not permitted|Permission denied|EPERM|EACCES' $W/unit.log $W/syslog.log | grep -v 'event=pinstore msg=\"state_dir .*chown'"
check journal-no-sigsys bash -c "! grep -Ei 'SIGSYS|status=31|/SYS|seccomp|bad system call' $W/unit.log $W/syslog.log"
check kernel-no-seccomp-audit bash -c "! grep -E 'type=1326|comm=\"starttlsd\".* syscall=' $W/kernel.log"
check journal-no-errors bash -c "! grep -E 'event=(fatal|error|pinstore) |expected=no|cannot ' $W/syslog.log | grep -v 'event=pinstore msg=\"state_dir .*chown'"
# Before the deliberate SIGKILL: no failure, no SIGKILL after TimeoutStopSec.
# (The refused reload of 5b is deliberate: systemd's "Reload failed" and the
# failed ExecReload= check are left out.)
check journal-no-unit-failure bash -c "! grep -v -e 'Reload failed for' -e 'Control process exited, code=exited, status=1/FAILURE' $W/unit-before-kill.log | grep -Ei 'Failed with result|failed|Killing process|timed out|code=killed'"
dump journal-unit cat "$W/unit.log"
dump journal-syslog cat "$W/syslog.log"
dump kernel cat "$W/kernel.log"
check analyze-security bash -c "SYSTEMD_COLORS=0 systemd-analyze security --no-pager starttlsd >$W/security.txt 2>&1"
dump analyze-security cat "$W/security.txt"
info "systemd-analyze security: $(grep -i 'overall exposure' "$W/security.txt" | sed 's/\x1b\[[0-9;]*m//g; s/^ *//')"
check analyze-verify bash -c "systemd-analyze verify --man=no \$(systemctl show -P FragmentPath starttlsd) >$W/verify.txt 2>&1; rc=\$?; cat $W/verify.txt; [ \$rc -eq 0 ] && ! [ -s $W/verify.txt ]"
dump analyze-verify cat "$W/verify.txt"
dump status-end systemctl status --no-pager -n 0 starttlsd

# ---- 9. the rsyslog rule and logrotate file of the package ------------------------
# The lines go to /var/log/starttlsd.log (RFC 3339 stamps) and not to mail.log.
check rsyslog-file bash -c "grep -Eq '^[0-9-]+T[0-9:.]+[+-][0-9:]+ [^ ]+ starttlsd\[[0-9]+\]: event=session .*action=upgraded' /var/log/starttlsd.log"
check rsyslog-file-only bash -c "! grep -qs 'starttlsd\[' /var/log/mail.log /var/log/syslog"
dump rsyslog-leak bash -c "grep -s 'starttlsd\[' /var/log/mail.log /var/log/syslog | head -n 20"
check logrotate-config bash -c "logrotate -d /etc/logrotate.d/starttlsd 2>&1 | tee /dev/stderr | grep -q 'considering log /var/log/starttlsd.log'"

# ---- 10. purge ---------------------------------------------------------------------
check purge-rc bash -c "DEBIAN_FRONTEND=noninteractive apt-get purge -y starttlsd"
check purge-no-process no_starttlsd_process
check purge-no-table no_table
check purge-files-gone bash -c "! ls -d /usr/sbin/starttlsd /usr/sbin/starttlsctl /usr/share/doc/starttlsd /usr/share/man/man8/starttlsd.8.gz /usr/lib/sysusers.d/starttlsd.conf /usr/lib/tmpfiles.d/starttlsd.conf 2>/dev/null | grep ."
check purge-conffiles-gone bash -c "! ls -d /etc/starttlsd/starttlsd.conf /etc/rsyslog.d/30-starttlsd.conf /etc/logrotate.d/starttlsd 2>/dev/null | grep ."
check purge-state-gone bash -c "! test -e /var/lib/starttlsd"
check purge-log-gone bash -c "! ls /var/log/starttlsd.log* 2>/dev/null | grep ."
check purge-unit-gone bash -c "! systemctl cat starttlsd >/dev/null 2>&1 && ! ls /etc/systemd/system/*/starttlsd.service 2>/dev/null | grep ."
check purge-dpkg-gone bash -c "! dpkg-query -W -f='\${Status}' starttlsd 2>/dev/null | grep -q installed"
# Debian leaves system users in place (files they owned elsewhere).
check purge-user-kept id starttlsd
info "after purge: $(ls -d /etc/starttlsd 2>&1)"
info "test unit finished at $(awk '{print $1}' /proc/uptime) s uptime"
out "VMTEST done"
exit 0
