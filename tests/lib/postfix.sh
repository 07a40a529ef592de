# Private Postfix instances for the integration tests (source after common.sh).
# Each instance lives in its own directory under T_TMP, runs in a namespace
# given as a runner (in_cli, in_srv, in_gw), and is stopped by pf_stop.

export PATH=$PATH:/usr/sbin:/sbin
# pf_need: skip the test where Postfix cannot run.
pf_need() {
	command -v postfix >/dev/null 2>&1 || skip "postfix is not installed"
	if ! getent passwd postfix >/dev/null || ! getent group postdrop >/dev/null; then
		skip "the postfix user or the postdrop group is missing"
	fi
	# Postfix daemons drop to the postfix user (and the virtual agent to
	# nobody): they must be able to reach their directories under T_TMP.
	chmod 755 "$T_TMP"
}

# Stop the Postfix instances (gracefully) before the harness kills what is left.
pf_stop() { # pf_stop NS-RUNNER DIR: postfix stop, if that instance runs
	[ -f "$2/queue/pid/master.pid" ] || return 0
	"$1" postfix -c "$2/etc" status >/dev/null 2>&1 || return 0
	"$1" postfix -c "$2/etc" stop >/dev/null 2>&1
}

# pf_instance DIR NAME: config, queue and data directories of one private
# instance; main.cf settings follow on stdin, master.cf is written here (no chroot,
# so no copies of /etc files are needed; postlogd for maillog_file).
pf_instance() {
	local dir=$1 name=$2
	mkdir -p "$dir/etc" "$dir/queue" "$dir/data"
	chown postfix "$dir/data"
	{
		cat <<-EOF
		compatibility_level = 3.6
		config_directory = $dir/etc
		queue_directory = $dir/queue
		data_directory = $dir/data
		syslog_name = postfix-$name
		maillog_file = $dir/maillog
		maillog_file_prefixes = $T_TMP
		inet_protocols = ipv4
		alias_maps =
		alias_database =
		biff = no
		EOF
		cat
	} >"$dir/etc/main.cf"
	cat >"$dir/etc/master.cf" <<-'EOF'
	smtp       inet  n       -       n       -       -       smtpd
	pickup     unix  n       -       n       60      1       pickup
	cleanup    unix  n       -       n       -       0       cleanup
	qmgr       unix  n       -       n       300     1       qmgr
	tlsmgr     unix  -       -       n       1000?   1       tlsmgr
	rewrite    unix  -       -       n       -       -       trivial-rewrite
	bounce     unix  -       -       n       -       0       bounce
	defer      unix  -       -       n       -       0       bounce
	trace      unix  -       -       n       -       0       bounce
	verify     unix  -       -       n       -       1       verify
	flush      unix  n       -       n       1000?   0       flush
	proxymap   unix  -       -       n       -       -       proxymap
	proxywrite unix  -       -       n       -       1       proxymap
	smtp       unix  -       -       n       -       -       smtp
	relay      unix  -       -       n       -       -       smtp
	showq      unix  n       -       n       -       -       showq
	error      unix  -       -       n       -       -       error
	retry      unix  -       -       n       -       -       error
	discard    unix  -       -       n       -       -       discard
	local      unix  -       n       n       -       -       local
	virtual    unix  -       n       n       -       -       virtual
	anvil      unix  -       -       n       -       1       anvil
	scache     unix  -       -       n       -       1       scache
	postlog    unix-dgram n  -       n       -       1       postlogd
	EOF
}

# pf_start NS-RUNNER DIR: check, start, and wait until the master runs.
pf_start() {
	local run=$1 dir=$2
	"$run" postfix -c "$dir/etc" set-permissions >>"$dir/start.log" 2>&1
	"$run" postfix -c "$dir/etc" check >>"$dir/start.log" 2>&1 || { cat "$dir/start.log" >&2; return 1; }
	"$run" postfix -c "$dir/etc" start >>"$dir/start.log" 2>&1 || { cat "$dir/start.log" >&2; return 1; }
	wait_for 10 "$run" postfix -c "$dir/etc" status >/dev/null 2>&1 ||
		{ say "postfix in $dir did not start"; cat "$dir/start.log" "$dir/maillog" >&2; return 1; }
	# (no T_PIDS entry: the EXIT trap stops it, the harness kills what is left
	# in the namespace, and a stale pid must never be killed by number)
}


# pf_virtual_conf MAILROOT: main.cf lines that deliver mail for example.net
# into one maildir, MAILROOT/rcpt/ (made here, owned by nobody).
pf_virtual_conf() {
	mkdir -p "$1/rcpt"
	chown -R nobody:nogroup "$1" 2>/dev/null || chown -R 65534:65534 "$1"
	cat <<-EOF
	virtual_mailbox_domains = example.net
	virtual_mailbox_base = $1
	virtual_mailbox_maps = static:rcpt/
	virtual_uid_maps = static:65534
	virtual_gid_maps = static:65534
	virtual_minimum_uid = 100
	EOF
}
