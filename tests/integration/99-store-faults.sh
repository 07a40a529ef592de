#!/usr/bin/env bash
# The pin store failing (issue 5, case 10): read-only, full, truncated at
# start, fsync failing. starttlsd keeps relaying with TLS attempted, says so
# loudly (event=pinstore), keeps what it had, and does not crash.
. "$(dirname "$0")/../lib/common.sh"

topo_up
redirect_on
server starttls

# proxy_mnt SETUP ARGS...: starttlsd in a private mount namespace where
# SETUP (shell) ran first, e.g. to mount a small or read-only tmpfs.
proxy_mnt() {
	local setup=$1; shift
	: >"$PROXY_LOG"
	ip netns exec "$NS_GW" unshare -m sh -c "mount --make-rprivate /; $setup"' && exec "$@"' sh \
		"$STARTTLSD" "${NO_DNS[@]}" -f --log-stderr --helo-name gw.example.org --ca-file "$CERTS/ca.crt" "$@" \
		2>>"$PROXY_LOG" &
	PROXY_PID=$!
	T_PIDS+=($PROXY_PID)
	wait_for "$PROXY_START_WAIT" grep -q "event=start" "$PROXY_LOG"
}
crashed() { grep -E "event=worker action=exited .*expected=no" "$PROXY_LOG"; }
relays() {
	cswaks --body "$1" >/dev/null 2>&1 || return 1
	wait_for 5 bash -c "grep event=session '$PROXY_LOG' | tail -n 1 | grep -q 'action=upgraded tls=TLSv1.3'"
}

# Read-only state directory.
ro=$T_TMP/ro
mkdir -p "$ro"
proxy_mnt "mount -t tmpfs -o ro,size=1m tmpfs $ro" --state-dir "$ro"
ok "read-only state_dir: mail is still relayed over TLS" relays "ro"
ok "read-only state_dir: said loudly" wait_for 12 log_has 'event=pinstore'
not_ok "read-only state_dir: no worker crashed" crashed
ok "read-only state_dir: clean exit" proxy_stop

# A full file system under the store: commits fail, relaying goes on.
full=$T_TMP/full
mkdir -p "$full"
proxy_mnt "mount -t tmpfs -o size=64k tmpfs $full && dd if=/dev/zero of=$full/filler bs=4k count=100 2>/dev/null; true" --state-dir "$full"
ok "full state_dir: mail is still relayed over TLS" relays "full one"
ok "full state_dir: a second one too" relays "full two"
ok "full state_dir: the store error is logged" wait_for 5 log_has "event=pinstore"
not_ok "full state_dir: no worker crashed" crashed
ok "full state_dir: clean exit" proxy_stop

# A truncated store at start: refused as it is, not overwritten, relay on.
trunc=$T_TMP/trunc
mkdir -p "$trunc"
head -c 100 /dev/urandom >"$trunc/data.mdb"
cp "$trunc/data.mdb" "$T_TMP/data.mdb.orig"
: >"$PROXY_LOG"
proxy --state-dir "$trunc"
ok "truncated store: mail is still relayed over TLS" relays "truncated"
ok "truncated store: said loudly" wait_for 5 log_has "event=pinstore msg=\"cannot open"
ok "truncated store: the file was left as it was (for the admin to look at)" cmp "$trunc/data.mdb" "$T_TMP/data.mdb.orig"
not_ok "truncated store: no worker crashed" crashed
ok "truncated store: clean exit" proxy_stop

# mode = enforce without its pins fails closed (docs/policy.md): it would
# refuse nothing it learnt, and a silent fail-open is what an admin who
# chose enforce must never get.
mkdir -p "$T_TMP/locked/inner" && chmod 700 "$T_TMP/locked"
ip netns exec "$NS_GW" timeout 20 "$STARTTLSD" "${NO_DNS[@]}" -f --log-stderr --helo-name gw.example.org --ca-file "$CERTS/ca.crt" \
	--mode enforce --listen 127.0.0.1:10031 --state-dir "$T_TMP/locked/inner/state" >"$T_TMP/enf.out" 2>&1; rc=$?
ok "enforce, state_dir out of the workers' reach: refuses to start (exit 1)" test $rc -eq 1
ok "enforce, state_dir out of reach: says why, naming the key" \
	grep -q "state_dir: $T_TMP/locked/inner/state: the workers' user starttlsd cannot reach it: .*not starting" "$T_TMP/enf.out"
: >"$PROXY_LOG"
proxy --state-dir "$T_TMP/locked/inner/state"
ok "monitor, state_dir out of reach: starts, and says it runs without pins" \
	log_has "event=pinstore msg=\"state_dir: .*cannot reach it.*running without pins"
ok "monitor, state_dir out of reach: relays" relays "monitor without pins"
ok "monitor, state_dir out of reach: clean exit" proxy_stop

# A store the master cannot judge (truncated): each worker in enforce mode
# refuses to relay, alerts, and exits; the master starts another a second
# later, which alerts again. Mail is not relayed unchecked: it waits.
etrunc=$T_TMP/etrunc
mkdir -p "$etrunc"
head -c 100 /dev/urandom >"$etrunc/data.mdb"
: >"$PROXY_LOG"
proxy --state-dir "$etrunc" --mode enforce --workers 1
ok "enforce, store unusable: the worker alerts that it does not relay" \
	wait_for 10 log_has "event=pinstore msg=\"mode = enforce and the pin store $etrunc cannot be opened: not relaying \(exit 78\)\""
ok "enforce, store unusable: the master logs the exit (status 78) and tries again, alerting again" \
	wait_for 15 count_ge 2 "$PROXY_LOG" "event=worker action=exited pid=[0-9]+ status=78 expected=no"
ok "enforce, store unusable: repeated alerts" count_ge 2 "$PROXY_LOG" "mode = enforce and the pin store"
n=$(nmsgs)
not_ok "enforce, store unusable: mail is not relayed" cswaks --body "must wait" --timeout 4
ok "enforce, store unusable: nothing reached the server" test "$(nmsgs)" -eq "$n"
ok "enforce, store unusable: clean exit" proxy_stop

# Reload in enforce mode with the store's directory made unreachable: the
# new configuration is refused (the running workers have their store open).
rl=$T_TMP/rl
mkdir -p "$rl"
: >"$PROXY_LOG"
proxy --state-dir "$rl/state" --mode enforce
ok "enforce: relays with its store" relays "enforce with pins"
chmod 700 "$rl"
kill -HUP "$PROXY_PID"
ok "enforce, reload with state_dir out of reach: refused, naming it" \
	wait_for 5 log_has "event=reload msg=\"configuration refused, keeping the running one: state_dir: $rl/state: the workers' user starttlsd cannot reach it"
ok "enforce, refused reload: the running workers still relay" relays "enforce after a refused reload"
chmod 755 "$rl"
ok "enforce: clean exit" proxy_stop

# fsync (and friends) failing with EIO, injected by libfiu.
case $STARTTLSD in
*/san/*|*valgrind*)
	echo "  (fsync fault injection not run under the sanitizer/valgrind build: LD_PRELOAD clashes)" ;;
*)
	: >"$PROXY_LOG"
	ip netns exec "$NS_GW" fiu-run -x -f "" \
		-c "enable name=posix/io/sync/*,failinfo=5" \
		"$STARTTLSD" "${NO_DNS[@]}" -f --log-stderr --helo-name gw.example.org --ca-file "$CERTS/ca.crt" \
		--state-dir "$T_TMP/fiu" 2>>"$PROXY_LOG" &
	PROXY_PID=$!; T_PIDS+=($PROXY_PID)
	wait_for 5 grep -q "event=start" "$PROXY_LOG"
	ok "fsync failing: mail is still relayed over TLS" relays "fiu one"
	ok "fsync failing: and again" relays "fiu two"
	ok "fsync failing: the store errors are logged" wait_for 12 log_has "event=pinstore msg=\"[0-9]+ store errors"
	not_ok "fsync failing: no worker crashed" crashed
	ok "fsync failing: clean exit" proxy_stop ;;
esac
finish
