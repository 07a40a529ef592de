#!/usr/bin/env bash
# Log lines that logfmt readers accept, end to end (docs/logging.md, "Line
# format" and "Key order"): a server certificate whose subject tries to
# forge keys, with a quote, a backslash and UTF-8 in it; a reload refused
# over a configuration value holding a byte that is not UTF-8 (written
# \xe9 up to this release, which go-logfmt refuses). Every line is read
# back by tests/logfmt/logfmt-check.go (common.sh does that at each ok),
# and the values are decoded here with Python's json module.
. "$(dirname "$0")/../lib/common.sh"

topo_up || exit 1
redirect_on
certs

# value KEY: the first KEY= of the last session line, JSON-decoded if quoted.
value() {
	grep 'event=session ' "$PROXY_LOG" | tail -n 1 | "$PY" -c '
import json, sys
line = sys.stdin.read().rstrip("\n")
i = line.index(" " + sys.argv[1] + "=") + len(sys.argv[1]) + 2
if line[i] != chr(34):
    print(line[i:].split(" ")[0])
    sys.exit(0)
j = i + 1
while line[j] != chr(34):
    j += 2 if line[j] == chr(92) else 1
print(json.loads(line[i:j + 1]))' "$1"
}

# A server certificate chosen by someone who reads our logs with grep.
fc=$T_TMP/forged
mkdir -p "$fc"
cp "$CERTS/ca.crt" "$fc/ca.crt"
subj='/CN=mx action=blocked msgs=9 reason=forged/O=q"b\\s/OU=Soci\xc3\xa9t\xc3\xa9'
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -utf8 \
	-keyout "$fc/server.key" -out "$fc/server.crt" -subj "$(printf "$subj")" 2>"$T_TMP/openssl.err"
ok "a certificate with a forging subject was made" test -s "$fc/server.crt"

CERTS=$fc server starttls
proxy
ok "mail goes through over TLS" cswaks --body "forged subject"
wait_sessions 1
line=$(session_line 1)
ok "the session line: upgraded, TLS" grep -q ' action=upgraded tls=TLSv1' <<<"$line"
ok "the first ' action=' is starttlsd's own" test "$(grep -o ' action=[^ ]*' <<<"$line" | head -n 1)" = " action=upgraded"
ok "the first ' msgs=' is starttlsd's own" test "$(grep -o ' msgs=[^ ]*' <<<"$line" | head -n 1)" = " msgs=1"
ok "the first ' reason=' is starttlsd's own" test "$(grep -o ' reason=[^ ]*' <<<"$line" | head -n 1)" = " reason=quit"
ok "the client's rcpt_domains, then peer_subject and peer_issuer are the last keys" \
	grep -Eq ' reason=quit rcpt_domains=example\.net peer_subject="([^"\\]|\\.)*" peer_issuer="([^"\\]|\\.)*"$' <<<"$line"
subject=$(value peer_subject)
say "  note: peer_subject decodes to: $subject"
ok "peer_subject decodes (JSON) to the whole forged subject" \
	grep -qF 'CN=mx action=blocked msgs=9 reason=forged' <<<"$subject"
# RFC 2253 writes the quote as \" (BoringSSL, XN_FLAG_RFC2253): a quote and
# a backslash, both escaped once more in the log line.
ok "...with its quote and backslash" grep -qF 'O=q\"bs' <<<"$subject"
ok "...escaped once more in the line" grep -qF 'O=q\\\"bs' <<<"$line"
ok "no raw byte >= 0x80 or control byte in the line unless it is UTF-8" \
	"$PY" -c 'import sys; b=open(sys.argv[1],"rb").read(); b.decode("utf-8"); sys.exit(any(c < 0x20 and c != 10 or c == 0x7f for c in b))' "$PROXY_LOG"
ok "proxy exits cleanly" proxy_stop
server_stop

# A reload refused over a value that is not UTF-8, then one with UTF-8
# (the configuration quotes the missing policy_file's name).
conf=$T_TMP/reload.conf
: >"$conf"
: >"$PROXY_LOG"
proxy -c "$conf"
printf 'policy_file = /nonexistent/caf\xe9\n' >"$conf"
kill -HUP "$PROXY_PID"
ok "Latin-1 byte in a refused reload: written \\u00e9" \
	wait_for 5 log_has 'event=reload msg="configuration refused, keeping the running one: .*/nonexistent/caf\\u00e9: '
printf 'policy_file = /nonexistent/caf\xc3\xa9\n' >"$conf"
kill -HUP "$PROXY_PID"
ok "UTF-8 in a refused reload: written as is" \
	wait_for 5 log_has "$(printf 'event=reload msg="configuration refused, keeping the running one: .*/nonexistent/caf\xc3\xa9: ')"
printf 'policy_file = /nonexistent/q"b\\x\tt\n' >"$conf"
kill -HUP "$PROXY_PID"
ok "quote, backslash and tab in a refused reload: escaped" \
	wait_for 5 log_has 'event=reload msg="configuration refused, keeping the running one: .*/nonexistent/q\\"b\\\\x\\tt: '
cat >"$T_TMP/reloads.py" <<'PY'
import json, sys
v = []
for line in open(sys.argv[1], encoding="utf-8"):
    if " event=reload msg=" in line:
        v.append(json.loads(line.split(" event=reload msg=", 1)[1]))
print(v)
want = ["/nonexistent/caf\u00e9: ", "/nonexistent/caf\u00e9: ", "/nonexistent/q\"b\\x\tt: "]
sys.exit(not (len(v) == 3 and all(w in x for w, x in zip(want, v))))
PY
ok "each refused reload's msg decodes (JSON) to the file's name" "$PY" "$T_TMP/reloads.py" "$PROXY_LOG"
ok "proxy exits cleanly" proxy_stop
finish
