#!/usr/bin/env bash
# The documentation follows the code: every configuration key that
# "starttlsd --help" lists is in deploy/starttlsd.conf (with the same
# default), in starttlsd.conf(5) and in starttlsd(8), and nothing is
# documented that the code does not have; the example configuration is valid
# as shipped and with every default uncommented; every event the code logs
# has a section in docs/logging.md whose key table lists exactly the keys the
# code writes for it, in the order it writes them, and every signal a row in
# docs/policy.md.
# No network, no root: only the binary and the files.
. "$(dirname "$0")/../lib/common.sh"

CONF=$TOP/deploy/starttlsd.conf
MAN5=$TOP/docs/starttlsd.conf.5
MAN8=$TOP/docs/starttlsd.8
CTLMAN=$TOP/docs/starttlsctl.8
LOGMD=$TOP/docs/logging.md
POLMD=$TOP/docs/policy.md
CTL=${STARTTLSCTL:-$(dirname "$STARTTLSD")/starttlsctl}

# missing WANT HAVE: the words of WANT that are not in HAVE (one a line each).
missing() { comm -23 <(sort -u <<<"$1") <(sort -u <<<"$2") | tr '\n' ' ' | sed 's/ $//'; }

help=$("$STARTTLSD" --help) || { say "$STARTTLSD --help failed"; exit 1; }
# The key options come after this line of --help; the others before it.
keys_part=$(sed -n '/^Every configuration key/,$p' <<<"$help" | tail -n +2)
other_part=$(sed -n '1,/^Every configuration key/p' <<<"$help")
help_keys=$(sed -nE 's/^  --([a-z0-9-]+) .*/\1/p' <<<"$keys_part" | tr - _)
help_other=$(grep -oE -- '--[a-z][a-z-]+' <<<"$other_part" | sed 's/^--//' | sort -u)
ok "--help lists configuration keys ($(wc -w <<<"$help_keys"))" test "$(wc -w <<<"$help_keys")" -ge 30

# ---- deploy/starttlsd.conf --------------------------------------------------
# Key lines are "# key = default" (or "# key =" when unset) at the start of a
# line; examples are indented ("#   e.g. key = value") and do not count.
conf_keys=$(sed -nE 's/^(# )?([a-z_]+) =.*/\2/p' "$CONF")
m=$(missing "$help_keys" "$conf_keys")
ok "every --help key is in deploy/starttlsd.conf${m:+ (missing: $m)}" test -z "$m"
m=$(missing "$conf_keys" "$help_keys")
ok "deploy/starttlsd.conf has no key --help lacks${m:+ (unknown: $m)}" test -z "$m"
d=$(sed -nE 's/^(# )?([a-z_]+) =.*/\2/p' "$CONF" | sort | uniq -d | tr '\n' ' ' | sed 's/ $//')
ok "each key once in deploy/starttlsd.conf${d:+ (twice: $d)}" test -z "$d"

# "# key = value" is the built-in default: --help ends that key's line in
# "[value]"; "# key =" is a key without one (no "[...]" at the end).
wrong=
while IFS= read -r line; do
	k=$(sed -E 's/^# ([a-z_]+) =.*/\1/' <<<"$line")
	v=$(sed -E 's/^# [a-z_]+ =[ ]?//' <<<"$line")
	h=$(grep -E -- "^  --${k//_/-} " <<<"$keys_part")
	if [ -n "$v" ]; then
		[[ "$h" == *" [$v]" ]] || wrong+="$k "
	else
		[[ "$h" != *"]" ]] || wrong+="$k "
	fi
done < <(grep -E '^# [a-z_]+ =' "$CONF")
wrong=${wrong% }
ok "deploy/starttlsd.conf shows the defaults of --help${wrong:+ (differs: $wrong)}" test -z "$wrong"

ok "--check-config accepts deploy/starttlsd.conf as shipped" \
	bash -c '"$1" --check-config -c "$2" | grep -qx "starttlsd: configuration ok"' _ "$STARTTLSD" "$CONF"
sed -E 's/^# ([a-z_]+ =)/\1/' "$CONF" >"$T_TMP/uncommented.conf"
ok "the uncommented file sets every key" \
	test "$(grep -cE '^[a-z_]+ =' "$T_TMP/uncommented.conf")" -eq "$(wc -w <<<"$help_keys")"
ok "--check-config accepts it with every default uncommented" \
	bash -c '"$1" --check-config -c "$2" | grep -qx "starttlsd: configuration ok"' _ "$STARTTLSD" "$T_TMP/uncommented.conf"
ok "uncommenting the defaults leaves the interception table as it was" \
	bash -c 'diff <("$1" --print-ruleset -c "$2" --intercept-local on) <("$1" --print-ruleset -c "$3" --intercept-local on)' \
	_ "$STARTTLSD" "$CONF" "$T_TMP/uncommented.conf"

# ---- man pages --------------------------------------------------------------
man5_keys=$(sed -nE 's/^\.It Cm ([a-z_]+)( .*)?$/\1/p' "$MAN5")
m=$(missing "$help_keys" "$man5_keys")
ok "every --help key has an entry in starttlsd.conf(5)${m:+ (missing: $m)}" test -z "$m"
m=$(missing "$man5_keys" "$help_keys")
ok "starttlsd.conf(5) documents no key --help lacks${m:+ (unknown: $m)}" test -z "$m"

# Options as mdoc writes them, "Fl \-intercept\-local"; "Fl \-key Ar value"
# is the page's placeholder for any key option.
man8_opts=$(grep -oE 'Fl \\-[a-z\\-]+' "$MAN8" | sed -E 's/^Fl \\-//; s/\\-/-/g' | grep -vx key | sort -u)
all_opts=$(tr _ - <<<"$help_keys"; echo "$help_other")
m=$(missing "$all_opts" "$man8_opts")
ok "every option of --help is in starttlsd(8)${m:+ (missing: --${m// / --})}" test -z "$m"
m=$(missing "$man8_opts" "$all_opts")
ok "starttlsd(8) names no option --help lacks${m:+ (unknown: --${m// / --})}" test -z "$m"

if [ -x "$CTL" ]; then
	chelp=$("$CTL" --help)
	cmds=$(sed -n '/^Commands:/,/^$/p' <<<"$chelp" | sed -nE 's/^  ([a-z]+) .*/\1/p')
	m=
	for c in $cmds; do grep -qE "^\.Cm $c( |$)" "$CTLMAN" || m+="$c "; done
	m=${m% }
	ok "every starttlsctl command is in starttlsctl(8)${m:+ (missing: $m)}" test -z "$m"
	ctl_opts=$(grep -oE -- '--[a-z][a-z-]+' <<<"$chelp" | sed 's/^--//' | sort -u)
	man_opts=$(grep -oE 'Fl \\-[a-z\\-]+' "$CTLMAN" | sed -E 's/^Fl \\-//; s/\\-/-/g' | sort -u)
	m=$(missing "$ctl_opts" "$man_opts")
	ok "every starttlsctl option is in starttlsctl(8)${m:+ (missing: --${m// / --})}" test -z "$m"
	m=$(missing "$man_opts" "$ctl_opts")
	ok "starttlsctl(8) names no option starttlsctl lacks${m:+ (unknown: --${m// / --})}" test -z "$m"
fi

if command -v groff >/dev/null 2>&1; then
	for page in "$MAN5" "$MAN8" "$CTLMAN"; do
		ok "$(basename "$page") renders without warnings" \
			bash -c 'out=$(groff -mandoc -Tutf8 -ww -z "$1" 2>&1); echo "$out"; [ -z "$out" ]' _ "$page"
	done
fi

# ---- docs/logging.md and docs/policy.md ------------------------------------------
# Events: log_begin(&l, "NAME"), log_msg(LOG_X, "NAME", ...) and
# log_start("NAME"), with calls joined across lines first.
src=$(cat "$TOP"/proxy/*.c | tr '\n\t' '  ' | tr -s ' ')
code_events=$(grep -oE '(log_begin\(&l, "[a-z_]+"|log_msg\( ?LOG_[A-Z]+, "[a-z_]+"|log_start\( ?"[a-z_]+")' <<<"$src" |
	sed -E 's/.*"([a-z_]+)"$/\1/' | sort -u)
ok "events found in proxy/*.c ($(wc -w <<<"$code_events"))" test "$(wc -w <<<"$code_events")" -ge 9
doc_events=$(grep -E '^#+ .*event=' "$LOGMD" | grep -oE 'event=[a-z_]+' | sed 's/event=//' | sort -u)
m=$(missing "$code_events" "$doc_events")
ok "every event the code logs has a section in logging.md${m:+ (missing: $m)}" test -z "$m"
m=$(missing "$doc_events" "$code_events")
ok "logging.md has no section for an event the code does not log${m:+ (unknown: $m)}" test -z "$m"
table_events=$(sed -nE 's/^\| `([a-z_]+)` \| [a-z].*/\1/p' "$LOGMD" | sort -u)
m=$(missing "$code_events" "$table_events")
ok "every event is in logging.md's table of events${m:+ (missing: $m)}" test -z "$m"

# Keys: each event's table in logging.md against the log_str/log_u64/... calls
# between its log_begin and log_emit in proxy/*.c (tests/logfmt/logfmt-check.go
# -code): the same keys, in the same order; every key with one type.
if out=$(logfmt_build 2>&1); then
	ok "logging.md's key tables: the keys each event's code writes, in its order" \
		"$LOGFMT_CHECK" -docs "$LOGMD" -code "$TOP/proxy"
	# The check can fail: a table with two keys swapped, or one key missing.
	sed '/^| `msgs` | always/{h;d}; /^| `bytes_up` | always/G' "$LOGMD" >"$T_TMP/swapped.md"
	not_ok "...and it notices two keys swapped in the docs (msgs after bytes_up)" \
		"$LOGFMT_CHECK" -docs "$T_TMP/swapped.md" -code "$TOP/proxy"
	grep -v '^| `peer_issuer` |' "$LOGMD" >"$T_TMP/nokey.md"
	not_ok "...and a key the docs lack (peer_issuer)" \
		"$LOGFMT_CHECK" -docs "$T_TMP/nokey.md" -code "$TOP/proxy"
	# The examples in logging.md are lines as the code writes them.
	bad=
	while IFS= read -r line; do
		"$LOGFMT_CHECK" -docs "$LOGMD" -line "$line" >"$T_TMP/ex.out" 2>&1 ||
			bad+="$(cat "$T_TMP/ex.out"): $line"$'\n'
	done < <(grep -E '^event=[a-z]+( |$)' "$LOGMD")
	ok "every example line in logging.md reads strictly, keys in the documented order${bad:+ ($bad)}" test -z "$bad"
	ok "logging.md has example lines ($(grep -cE '^event=[a-z]+( |$)' "$LOGMD"))" \
		test "$(grep -cE '^event=[a-z]+( |$)' "$LOGMD")" -ge 15
else
	ok "the logfmt reader builds (tests/logfmt/logfmt-check.go): $out" false
fi

# Signals: policy_signal_str() in proxy/policy.c.
signals=$(sed -n '/^policy_signal_str/,/^}/p' "$TOP/proxy/policy.c" |
	grep -oE 'case POLICY_SIG_[A-Z_]+: return "[a-z-]+"' | sed -E 's/.*return "(.*)"/\1/' | grep -vx none)
ok "signals found in proxy/policy.c ($(wc -w <<<"$signals"))" test "$(wc -w <<<"$signals")" -ge 9
m=
for sig in $signals; do grep -qE "^\| \`$sig\` \|" "$POLMD" || m+="$sig "; done
m=${m% }
ok "every signal has a row in policy.md's table${m:+ (missing: $m)}" test -z "$m"
m=
for sig in $signals; do grep -qF "\`$sig\`" "$LOGMD" || m+="$sig "; done
m=${m% }
ok "every signal is named in logging.md${m:+ (missing: $m)}" test -z "$m"

# ---- README ---------------------------------------------------------------------
ok "README's first commands are still make demo, then make test" \
	bash -c 'sed -n "/^\`\`\`sh/,/^\`\`\`/p" "$1" | sed -n "2,3p" | cut -d" " -f1-2 | tr "\n" " " | grep -qx "make demo make test "' _ "$TOP/README.md"

finish
