#!/usr/bin/env bash
# starttlsctl export and import, end to end on a real store: every form
# import accepts, export's exact text, a round trip through a second store,
# and refused files (duplicate member, invalid UTF-8, the same key twice, a
# pin check, bad syntax), each with its exact "file:line:column: pin #K:"
# message and exit status 2, leaving the store as it was. jansson is linked
# into starttlsctl, never into the daemon.
# No network, no root: only the binaries and a temporary directory.
. "$(dirname "$0")/../lib/common.sh"

CTL=${STARTTLSCTL:-$(dirname "$STARTTLSD")/starttlsctl}
S1=$T_TMP/store1; S2=$T_TMP/store2
ctl1() { "$CTL" --state-dir "$S1" --expire 0 "$@"; }
ctl2() { "$CTL" --state-dir "$S2" --expire 0 "$@"; }

# needs BINARY LIB: BINARY's dynamic section names LIB.
needs() { readelf -d "$1" | grep -q "NEEDED.*\[$2"; }
ok "starttlsctl links jansson" needs "$CTL" libjansson
not_ok "the daemon does not link jansson" needs "$STARTTLSD" libjansson

# ---- what import accepts -----------------------------------------------------
# A byte order mark, unix seconds, a numeric TLS version, kind left out,
# null for spki_sha256, an unknown member (a newer version's), spacing.
printf '\xef\xbb\xbf[\n  {"key":"ip:198.51.100.25","first_seen":1790000000,"last_seen":1790003600,"count":42,"tls_version":772,"spki_sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},\n' >"$T_TMP/in.json"
printf '  { "key" : "ip:2001:db8::25", "kind": "dst", "first_seen": "2026-05-01T00:00:00Z",\n    "last_seen": "2026-11-29T23:59:59Z", "count": 3, "tls_version": "TLSv1.2", "spki_sha256": null,\n    "future": {"a": [1, 2.5, "\xc3\xa9"]} },\n' >>"$T_TMP/in.json"
printf '  {"key":"domain:example.net","first_seen":"2026-02-03T04:05:06Z","last_seen":"2026-11-30T01:02:03Z","count":17,"via":"198.51.100.25"}\n]\n' >>"$T_TMP/in.json"
ok "import reads every form" bash -c '"$@" import "$0" | grep -qx "imported 3 pins"' "$T_TMP/in.json" "$CTL" --state-dir "$S1"

cat >"$T_TMP/want.json" <<'EOF'
[
  {"key":"domain:example.net","kind":"domain","first_seen":"2026-02-03T04:05:06Z","last_seen":"2026-11-30T01:02:03Z","count":17,"via":"198.51.100.25"},
  {"key":"ip:198.51.100.25","kind":"dst","first_seen":"2026-09-21T14:13:20Z","last_seen":"2026-09-21T15:13:20Z","count":42,"tls_version":"TLSv1.3","spki_sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
  {"key":"ip:2001:db8::25","kind":"dst","first_seen":"2026-05-01T00:00:00Z","last_seen":"2026-11-29T23:59:59Z","count":3,"tls_version":"TLSv1.2"}
]
EOF
ctl1 export >"$T_TMP/out1.json" 2>"$T_TMP/out1.err"
ok "export writes the pins as documented" diff -u "$T_TMP/want.json" "$T_TMP/out1.json"
ok "list --json is export" bash -c 'diff "$0" <("$@" list --json)' "$T_TMP/out1.json" "$CTL" --state-dir "$S1" --expire 0

# ---- round trip --------------------------------------------------------------
ok "export imports into a second store (from standard input)" \
	bash -c '"$@" import - <"$0" | grep -qx "imported 3 pins"' "$T_TMP/out1.json" "$CTL" --state-dir "$S2"
ctl2 export >"$T_TMP/out2.json"
ok "...whose export is the very same text" cmp "$T_TMP/out1.json" "$T_TMP/out2.json"

# ---- refused files -----------------------------------------------------------
# refused NAME FILE-CONTENT WANT-STDERR: exit 2, that one line, store unchanged.
n=0
refused() {
	local what=$1 body=$2 want=$3 f
	n=$((n + 1)); f=$T_TMP/bad$n.json
	printf '%b' "$body" >"$f"
	"$CTL" --state-dir "$S1" import "$f" >"$T_TMP/bad$n.out" 2>"$T_TMP/bad$n.err"
	echo $? >"$T_TMP/bad$n.rc"
	ok "refused, $what: exit 2" grep -qx 2 "$T_TMP/bad$n.rc"
	ok "refused, $what: \"${want//$f/FILE}\"" \
		bash -c 'diff <(printf "%s\n" "$1") "$0"' "$T_TMP/bad$n.err" "starttlsctl: ${want//FILE/$f}"
	ok "refused, $what: the store is unchanged" bash -c 'diff "$0" <("$@" export)' \
		"$T_TMP/out1.json" "$CTL" --state-dir "$S1" --expire 0
}
P1='{"key":"ip:192.0.2.1","first_seen":1,"last_seen":2,"count":1,"tls_version":772}'
P2='{"key":"domain:example.org","first_seen":1,"last_seen":2,"count":1}'
refused "a duplicate member" "[\n  $P1,\n  {\"key\":\"ip:192.0.2.2\",\"count\":1,\n   \"count\":2}\n]\n" \
	"FILE:4:10: pin #2: duplicate object key near '\"count\"'"
refused "invalid UTF-8" "[\n  $P1,\n  {\"note\":\"caf\xc3\xa9 \xe9t\xc3\xa9\"}\n]\n" \
	"FILE:3:17: pin #2: invalid UTF-8 (byte 0xe9)"
refused "the same key twice" "[\n  $P1,\n  $P2,\n  $P1\n]\n" \
	"FILE:4:3: pin #3: duplicate key ip:192.0.2.1 (pin #1, line 2, has it too)"
refused "a pin check" "[\n  $P1,\n  ${P2/\"count\":1/\"count\":0}\n]\n" \
	"FILE:3:3: pin #2: count: must be at least 1"
refused "a fraction for an integer" "[$P1, ${P2/\"count\":1/\"count\":1.5}]\n" \
	"FILE:1:83: pin #2: count: expected an integer, found a number with a fraction or an exponent"
refused "a missing member" "[\n ${P1/,\"tls_version\":772/}]" \
	"FILE:2:2: pin #1: missing \"tls_version\" (a destination pin has one)"
refused "a leading zero" "[\n  {\"key\":\"ip:192.0.2.1\",\"count\":007}\n]\n" \
	"FILE:2:33: pin #1: invalid token near '0'"
refused "not an array" "$P1\n" "FILE:1:1: expected a JSON array ('[') of pins"
refused "a trailing comma" "[\n  $P1,\n]\n" "FILE:3:1: pin #2: expected a pin object ('{')"
refused "cut short" "[\n  $P1,\n  {\"key\":" "FILE:3:9: pin #2: unexpected token near end of file"

ok "a file that is not there: exit 2" bash -c '"$@" import /nonexistent/pins.json; test $? -eq 2' _ "$CTL" --state-dir "$S1"

finish
