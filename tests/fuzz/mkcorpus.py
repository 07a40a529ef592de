#!/usr/bin/env python3
"""Write the seed corpora of the libFuzzer harnesses: tests/fuzz/corpus/HARNESS/.

Realistic inputs in each harness's input format (see the comment at the top of
each tests/fuzz/fuzz_*.c): server replies, client commands, EHLO replies, DATA
bodies (dot lines, bare LF/CR, the smtpsmug cases), the policy example of
docs/policy.md, pins as `starttlsctl export` writes them, configuration files,
and whole sessions. Run it again after changing a harness's input format:

    tests/fuzz/mkcorpus.py            # rewrites tests/fuzz/corpus/
"""
import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")
CORPUS = {}


def seed(harness, name, data):
    if isinstance(data, str):
        data = data.encode("latin-1")
    CORPUS.setdefault(harness, {})
    assert name not in CORPUS[harness], (harness, name)
    CORPUS[harness][name] = data


# ---- server replies ------------------------------------------------------------

REPLIES = {
    "greeting": "220 mx.example.net ESMTP Postfix (Debian/GNU)\r\n",
    "greeting-multi": "220-mx.example.net ESMTP\r\n220-no UCE\r\n220 ready\r\n",
    "greeting-lf": "220 mx.example.net ESMTP\n",
    "ehlo-postfix": "250-mx.example.net\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
                    "250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n"
                    "250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n",
    "ehlo-exim": "250-mail.example.org Hello client [192.0.2.1]\r\n250-SIZE 52428800\r\n"
                 "250-8BITMIME\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250-STARTTLS\r\n"
                 "250 HELP\r\n",
    "ehlo-masked": "250-mx.example.net\r\n250-PIPELINING\r\n250-XXXXXXXA\r\n250 8BITMIME\r\n",
    "ehlo-lone": "250 mx.example.net\r\n",
    "ehlo-bare": "250\r\n",
    "ehlo-starttls-last": "250-mx.example.net\r\n250-SIZE\r\n250 starttls\r\n",
    "ehlo-lf": "250-mx.example.net\n250-PIPELINING\n250 STARTTLS\n",
    "ehlo-mixed-ends": "250-mx.example.net\r\n250-SIZE 1000\n250 STARTTLS extra\r\n",
    "mail-ok": "250 2.1.0 Ok\r\n",
    "rcpt-ok": "250 2.1.5 Ok\r\n",
    "data-354": "354 End data with <CR><LF>.<CR><LF>\r\n",
    "queued": "250 2.0.0 Ok: queued as 4Xyz1234\r\n",
    "bye": "221 2.0.0 Bye\r\n",
    "tls-go": "220 2.0.0 Ready to start TLS\r\n",
    "tls-no": "454 4.7.0 TLS not available due to local problem\r\n",
    "shutdown": "421 4.3.2 Service shutting down, closing transmission channel\r\n",
    "rcpt-no": "550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown\r\n",
    "help": "214-Commands supported:\r\n214-  HELO EHLO MAIL RCPT DATA\r\n214 End of HELP\r\n",
    "auth-334": "334 VXNlcm5hbWU6\r\n",
    "auth-ok": "235 2.7.0 Authentication successful\r\n",
    "ehlo-refused": "502 5.5.2 Error: command not recognized\r\n",
    "helo-ok": "250 mx.example.net\r\n",
    "8bit": "250 \xc3\xa9t\xc3\xa9 \x00 ok\r\n",
    "cr-inside": "250 a\rb\r\n",
    "two-in-one": "250 ok\r\n354 go ahead\r\n",
    "junk-after": "220 hi\r\nxx",
    "incomplete": "250-mx.example.net\r\n250-PIPE",
    "bad-code-change": "250-a\r\n251 b\r\n",
    "bad-6xx": "600 no\r\n",
    "empty-cont": "250-\r\n250 x\r\n",
    "max": "599 x\n",
    "min": "100 x\n",
    "many-lines": "".join("250-line%d\r\n" % i for i in range(40)) + "250 end\r\n",
    "long-line": "250 " + "x" * 600 + "\r\n",
}

for name, r in REPLIES.items():
    for lname, ml, mx in (("dflt", 4096, 256), ("tight", 512, 4), ("nolimit", 0xffff, 0xffff),
                          ("tiny", 8, 2)):
        if lname != "dflt" and name not in ("ehlo-postfix", "many-lines", "long-line",
                                            "greeting-multi", "ehlo-lf", "incomplete",
                                            "two-in-one"):
            continue
        seed("fuzz_reply", "%s-%s" % (name, lname), struct.pack("<HH", ml, mx) + r.encode("latin-1"))

# ---- client commands -------------------------------------------------------------

COMMANDS = [
    "EHLO client.example.org\r\n", "HELO client\r\n", "ehlo [192.0.2.1]\r\n",
    "MAIL FROM:<alice@example.org> SIZE=1000 BODY=8BITMIME\r\n",
    "mail from:<>\r\n", "RCPT TO:<bob@example.net> NOTIFY=NEVER\r\n",
    "RCPT TO:<\"quoted local\"@example.net>\r\n", "DATA\r\n", "BDAT 1000\r\n",
    "BDAT 0 LAST\r\n", "bdat 18446744073709551615 last\r\n", "BDAT 18446744073709551616\r\n",
    "BDAT 00000000000000000001\r\n", "BDAT   7   LaSt  \r\n", "BDAT x\r\n", "BDAT 5 FIRST\r\n",
    "BDAT\r\n", "RSET\r\n", "NOOP\r\n", "QUIT\r\n", "VRFY postmaster\r\n", "EXPN list\r\n",
    "HELP\r\n", "STARTTLS\r\n", "StartTLS\r\n", "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
    "AUTH LOGIN\r\n", "XCLIENT ADDR=192.0.2.1\r\n", " QUIT\r\n", "MAIL\tFROM:<a>\r\n",
    "QUIT\r", "NOOP a\rb\r\n", "EHLO\x00\r\n", "\xc3\x89HLO x\r\n", "\r\n", "\n",
]
for i, c in enumerate(COMMANDS):
    seed("fuzz_command", "cmd-%02d" % i, c)
seed("fuzz_command", "pipelined",
     "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n")
seed("fuzz_command", "bare-lf-pipeline", "EHLO x\nMAIL FROM:<a>\nRCPT TO:<b>\nBDAT 3 LAST\nabc")
seed("fuzz_command", "no-line-end", "MAIL FROM:<a@example.org>")
seed("fuzz_command", "long", "NOOP " + "a" * 1200 + "\r\n")

# ---- EHLO replies ---------------------------------------------------------------

for name in ("ehlo-postfix", "ehlo-exim", "ehlo-masked", "ehlo-lone", "ehlo-bare",
             "ehlo-starttls-last", "ehlo-lf", "ehlo-mixed-ends", "empty-cont", "helo-ok",
             "ehlo-refused", "many-lines", "incomplete"):
    for flag in (0, 1, 2, 3):
        if flag and name not in ("ehlo-postfix", "ehlo-lone", "ehlo-bare", "ehlo-starttls-last",
                                 "ehlo-lf", "many-lines"):
            continue
        seed("fuzz_ehlo", "%s-%d" % (name, flag), bytes([flag]) + REPLIES[name].encode("latin-1"))
seed("fuzz_ehlo", "two-replies", b"\x01" + (REPLIES["ehlo-exim"] + REPLIES["ehlo-postfix"]).encode())
seed("fuzz_ehlo", "greeting-starttls", b"\x00250 STARTTLS\r\n250-x\r\n250 STARTTLS\r\n")
seed("fuzz_ehlo", "only-starttls", b"\x01250-host\r\n250-STARTTLS\r\n250 STARTTLS REQUIRED\r\n")
seed("fuzz_ehlo", "size-forms", b"\x00250-h\r\n250-SIZE\r\n250-SIZE 18446744073709551615\r\n"
     b"250 SIZE 99999999999999999999\r\n")

# ---- DATA bodies ------------------------------------------------------------------

BODIES = {
    "plain": "Subject: hi\r\n\r\nHello.\r\n.\r\n",
    "empty": ".\r\n",
    "dot-stuffed": "Subject: x\r\n\r\n..leading dot\r\n.. \r\n.\r\n",
    "no-end": "Subject: x\r\n\r\nline 1\r\nline 2\r\n",
    "end-then-more": "a\r\n.\r\nMAIL FROM:<x@example.org>\r\n",
    # the smtpsmug cases and friends
    "lf-dot-lf": "a\r\n\n.\nMAIL FROM:<evil@example.org>\r\n.\r\n",
    "lf-dot-crlf": "a\n.\r\nRCPT TO:<x>\r\n.\r\n",
    "crlf-dot-lf": "a\r\n.\nDATA\r\n.\r\n",
    "cr-dot-cr": "a\r.\rQUIT\r\n.\r\n",
    "crlf-dot-cr": "a\r\n.\rx\r\n.\r\n",
    "nul-dot": "a\r\n\x00.\r\n.\x00\r\n.\r\n",
    "bare-lf": "line\nline\n\n.\r\n",
    "bare-cr": "line\rline\r\r\n.\r\n",
    "crcrlf": "a\r\r\n.\r\n",
    "dot-only-lines": ".\n.\r.\r\n",
    "binary": "\xff\xfe\x00\x01\r\n\x80.\r\n.\r\n",
}
for name, body in BODIES.items():
    b = body.encode("latin-1")
    seed("fuzz_data", name, b"\x00" + b)
    cuts = [1, len(b) // 2, len(b) - 2] if len(b) > 3 else [1]
    seed("fuzz_data", name + "-cut", bytes([len(cuts)]) + b"".join(struct.pack("<H", c) for c in cuts) + b)
seed("fuzz_data", "every-byte", bytes([15]) + b"".join(struct.pack("<H", i) for i in range(15)) +
     b"ab\r\n.\r.\n.\r\n")

# ---- policy files -------------------------------------------------------------------

DOC_EXAMPLE = """# MATCH            LEVEL    [mode=monitor|enforce] [mx=PATTERN[,PATTERN...]]
example.net        verify   mx=mx1.example.net,*.mail.example.net
.example.org       encrypt                  # every subdomain of example.org
198.51.100.25      encrypt  mode=enforce    # one destination address
203.0.113.0/24     none                     # never require TLS here
2001:db8:7::/48    encrypt  mode=monitor
"""
seed("fuzz_policy", "docs-example", DOC_EXAMPLE)
seed("fuzz_policy", "empty", "")
seed("fuzz_policy", "comments", "# nothing\n\n   \t\n# more\n")
seed("fuzz_policy", "crlf", DOC_EXAMPLE.replace("\n", "\r\n"))
seed("fuzz_policy", "upper-trailing-dot", "EXAMPLE.NET. encrypt\n.Mail.Example.ORG. verify mx=*.EXAMPLE.org\n")
seed("fuzz_policy", "prefixes", "0.0.0.0/0 none\n10.0.0.0/8 encrypt\n10.1.0.0/16 verify\n"
     "10.1.2.3 encrypt mode=enforce\n::/0 none\n2001:db8::/32 encrypt\n::ffff:198.51.100.0/120 none\n")
seed("fuzz_policy", "mx-many", "example.com verify mx=a.example.com,b.example.com,*.c.example.com,"
     "d.example.com,e.example.com,f.example.com,g.example.com,h.example.com\n")
seed("fuzz_policy", "errors-host-bits", "198.51.100.1/24 encrypt\n")
seed("fuzz_policy", "errors-dup", "example.net encrypt\nEXAMPLE.net. none\n")
seed("fuzz_policy", "errors-level", "example.net maybe\n")
seed("fuzz_policy", "errors-mx-encrypt", "example.net encrypt mx=mx.example.net\n")
seed("fuzz_policy", "errors-mode", "example.net encrypt mode=loud\n")
seed("fuzz_policy", "errors-mode-twice", "example.net encrypt mode=monitor mode=enforce\n")
seed("fuzz_policy", "errors-fields", "a b c d e f g h i j k l m n o p q\n")
seed("fuzz_policy", "nul", "example.net encrypt\x00\n")
seed("fuzz_policy", "no-final-lf", "example.net encrypt")
seed("fuzz_policy", "long-label", "a" * 64 + ".example encrypt\n")
seed("fuzz_policy", "underscore-dash", "_dmarc.ex-ample.net none\n-x.example encrypt\n")
seed("fuzz_policy", "wildcard-rule", "*.example.net encrypt\n")
seed("fuzz_policy", "verify-mx-wildcards", "example.com verify mx=*.example.com,mx.example.net.\n"
     ".example.com verify mode=enforce mx=*.mail.example.com\n")
seed("fuzz_policy", "host-routes", "192.0.2.1/32 encrypt\n2001:db8::1/128 verify\n0.0.0.0/1 none\n128.0.0.0/1 none\n")
seed("fuzz_policy", "tabs", "example.net\tencrypt\tmode=enforce\n\t.example.org\tnone\n")
seed("fuzz_policy", "long-name", ".".join(["a" * 63] * 4)[:253] + " encrypt\n")
seed("fuzz_policy", "errors-long-line", "example.net encrypt " + "#" * 1100 + "\n")
seed("fuzz_policy", "errors-bad-cidr", "192.0.2.0/33 encrypt\n::/129 none\n")
seed("fuzz_policy", "errors-empty-mx", "example.net verify mx=\n")
seed("fuzz_policy", "errors-too-many-mx", "example.net verify mx=" + ",".join("m%d.example" % i for i in range(9)) + "\n")
seed("fuzz_policy", "errors-no-level", "example.net\n")

# ---- pins as JSON ---------------------------------------------------------------------

# `starttlsctl --expire 0 export` of a store made by importing pins of every form.
EXPORT = [
    '{"key":"domain:example.net","kind":"domain","first_seen":"2026-02-03T04:05:06Z","last_seen":"2026-11-30T01:02:03Z","count":17,"via":"198.51.100.25"}',
    '{"key":"domain:mail.example.org","kind":"domain","first_seen":"2026-03-01T00:00:00Z","last_seen":"2026-11-30T00:00:00Z","count":1,"via":"2001:db8::25"}',
    '{"key":"domain:xn--bcher-kva.example","kind":"domain","first_seen":"2026-06-06T06:06:06Z","last_seen":"2026-11-01T00:00:00Z","count":18446744073709551615,"via":""}',
    '{"key":"ip:198.51.100.25","kind":"dst","first_seen":"2026-01-02T03:04:05Z","last_seen":"2026-11-30T12:00:00Z","count":42,"tls_version":"TLSv1.3","spki_sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}',
    '{"key":"ip:2001:db8::25","kind":"dst","first_seen":"2026-05-01T00:00:00Z","last_seen":"2026-11-29T23:59:59Z","count":3,"tls_version":"TLSv1.2"}',
    '{"key":"ip:203.0.113.7","kind":"dst","first_seen":"2026-09-21T14:13:20Z","last_seen":"2026-11-30T10:00:00Z","count":1,"tls_version":"TLSv1.3","spki_sha256":"0000000000000000000000000000000000000000000000000000000000000001"}',
]
for i, j in enumerate(EXPORT):
    seed("fuzz_pinjson", "export-%d" % i, j)
# What import also reads: unix seconds, numeric versions, nulls, unknown members, spacing.
seed("fuzz_pinjson", "unix-seconds", '{"key":"ip:203.0.113.7","first_seen":1790000000,'
     '"last_seen":1796032800,"count":1,"tls_version":772}')
seed("fuzz_pinjson", "nulls", '{"key":"domain:example.net","first_seen":0,"last_seen":0,'
     '"count":0,"via":null}')
seed("fuzz_pinjson", "unknown-members", '{"future":{"a":[1,2.5e-3,true,false,null,"x"]},'
     '"key":"ip:192.0.2.1","kind":"dst","first_seen":"2026-01-01T00:00:00Z",'
     '"last_seen":"2026-01-01T00:00:00Z","count":1,"tls_version":"TLSv1.2","spki_sha256":null}')
seed("fuzz_pinjson", "spacing", ' {\n  "key" : "ip:192.0.2.1" ,\r\n\t"first_seen":1,"last_seen":2,'
     '"count":3,"tls_version":"TLSv1.0"}\n')
seed("fuzz_pinjson", "escapes", '{"key":"domain:ex\\u0061mple.net","first_seen":1,"last_seen":2,'
     '"count":3,"via":"\\ud83d\\ude00\\"\\\\\\/\\b\\f\\n\\r\\t"}')
seed("fuzz_pinjson", "bad-dup", '{"key":"ip:192.0.2.1","key":"ip:192.0.2.2"}')
seed("fuzz_pinjson", "bad-kind", '{"key":"ip:192.0.2.1","kind":"domain","first_seen":1,"last_seen":2,'
     '"count":3,"tls_version":771}')
seed("fuzz_pinjson", "bad-time", '{"key":"ip:192.0.2.1","first_seen":"2024-02-30T00:00:00Z",'
     '"last_seen":2,"count":3,"tls_version":771}')
seed("fuzz_pinjson", "bad-lone-surrogate", '{"key":"domain:a\\ud800.example"}')
seed("fuzz_pinjson", "deep", '{"x":' + "[" * 40 + "]" * 40 + "}")
seed("fuzz_pinjson", "array", "[\n  " + ",\n  ".join(EXPORT[:2]) + "\n]\n")
seed("fuzz_pinjson", "epoch", '{"key":"ip:192.0.2.1","first_seen":"1970-01-01T00:00:00Z",'
     '"last_seen":"1970-01-01T00:00:00Z","count":0,"tls_version":"TLSv1.1"}')
seed("fuzz_pinjson", "time-max", '{"key":"ip:192.0.2.1","first_seen":"9999-12-31T23:59:59Z",'
     '"last_seen":253402300799,"count":1,"tls_version":769}')
seed("fuzz_pinjson", "time-over", '{"key":"ip:192.0.2.1","first_seen":253402300800,'
     '"last_seen":1,"count":1,"tls_version":769}')
seed("fuzz_pinjson", "upper-hex", '{"key":"ip:192.0.2.1","first_seen":1,"last_seen":2,"count":3,'
     '"tls_version":"TLSv1.3","spki_sha256":"9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"}')
seed("fuzz_pinjson", "v6-mapped", '{"key":"ip:::ffff:192.0.2.1","first_seen":1,"last_seen":2,'
     '"count":3,"tls_version":771}')
# jansson refuses bytes that are not UTF-8; import refuses the same key twice; a BOM is skipped.
seed("fuzz_pinjson", "bad-utf8", '{"key":"domain:example.net","first_seen":1,"last_seen":2,'
     '"count":1,"note":"caf\xc3"}')
PIN_A = '{"key":"ip:192.0.2.1","first_seen":1,"last_seen":2,"count":1,"tls_version":772}'
PIN_B = '{"key":"domain:example.net","first_seen":1,"last_seen":2,"count":1,"via":"192.0.2.1"}'
seed("fuzz_pinjson", "array-dup-key", "[\n  " + PIN_A + ",\n  " + PIN_B + ",\n  "
     + PIN_A.replace("772", '"TLSv1.2"') + "\n]\n")
seed("fuzz_pinjson", "array-bom", "\xef\xbb\xbf[\n  " + PIN_A + ",\n  " + PIN_B + "\n]\n")
seed("fuzz_pinjson", "bad-negative", '{"key":"ip:192.0.2.1","first_seen":-1,"last_seen":2,'
     '"count":3,"tls_version":771}')
seed("fuzz_pinjson", "bad-fraction", '{"key":"ip:192.0.2.1","first_seen":1.5,"last_seen":2,'
     '"count":3,"tls_version":771}')
seed("fuzz_pinjson", "bad-leading-zero", '{"key":"ip:192.0.2.1","first_seen":01,"last_seen":2,'
     '"count":3,"tls_version":771}')
seed("fuzz_pinjson", "bad-noncanonical-key", '{"key":"ip:2001:DB8:0::25","first_seen":1,"last_seen":2,'
     '"count":3,"tls_version":771}')
seed("fuzz_pinjson", "bad-domain-fields", '{"key":"domain:example.net","first_seen":1,"last_seen":2,'
     '"count":3,"tls_version":771,"spki_sha256":"' + "00" * 32 + '"}')
seed("fuzz_pinjson", "bad-trailing", EXPORT[0] + " x")
seed("fuzz_pinjson", "bad-truncated", EXPORT[3][:-7])
seed("fuzz_pinjson", "empty-object", "{}")

# ---- configuration files --------------------------------------------------------------

CONF = """# starttlsd.conf
listen = 0.0.0.0:10025 [::]:10025
mode = enforce
state_dir = /var/lib/starttlsd
pin_expire = 30d
helo_name = gw.example.org
tls_min_version = 1.3
connect_timeout = 30s
greeting_timeout = 5m
reply_timeout = 5m
data_timeout = 10m
max_line_length = 4096
max_reply_lines = 256
buffer_size = 256k
max_sessions = 10000
intercept = on
intercept_interfaces = eth1 eth2
intercept_bypass = 192.0.2.0/24 2001:db8::/32
upstream_mark = 0x2525
"""
seed("fuzz_config", "full", CONF)
seed("fuzz_config", "empty", "")
seed("fuzz_config", "smarthost", "upstream = [2001:db8::25]:587\nlisten = 127.0.0.1:10025\nforeground yes\n")
seed("fuzz_config", "tproxy", "intercept on\nintercept_method tproxy\nintercept_local on\n"
     "transparent_source on\ntproxy_mark 0x1\n")
seed("fuzz_config", "limits", "max_line_length 65536\nbuffer_size 64m\nmax_reply_lines 10000\n"
     "drain_timeout 0\npin_expire 0\n")
seed("fuzz_config", "errors-unknown", "listen = 0.0.0.0:25\nno_such_key = 1\n")
seed("fuzz_config", "errors-twice", "mode monitor\nmode enforce\n")
seed("fuzz_config", "errors-range", "max_line_length 100\n")
seed("fuzz_config", "errors-line-vs-buffer", "max_line_length 65536\nbuffer_size 16k\n")
seed("fuzz_config", "errors-hex-size", "buffer_size 0x4000\n")
seed("fuzz_config", "comments", "# a comment\nmode = monitor # trailing\nhelo_name = a#b\n\n")
seed("fuzz_config", "client-tls", "client_cert = /etc/ssl/cert.pem\nclient_key = /etc/ssl/key.pem\n")
seed("fuzz_config", "deploy-example", open(os.path.join(HERE, "..", "..", "deploy", "starttlsd.conf")).read()
     if os.path.exists(os.path.join(HERE, "..", "..", "deploy", "starttlsd.conf")) else CONF)
seed("fuzz_config", "workers", "workers 4\nmaster on\nuser = starttlsd\n")
seed("fuzz_config", "limits-per-client", "max_sessions_per_client 5\nmax_recipients 100\nmax_errors 3\n")
seed("fuzz_config", "durations", "connect_timeout 1\ngreeting_timeout 1h\nreply_timeout 90s\n"
     "data_timeout 2h\nclient_timeout 5m\ndrain_timeout 0s\n")
seed("fuzz_config", "bools", "foreground on\nlog_stderr TRUE\nintercept_local 0\nintercept no\n")
seed("fuzz_config", "policy-file", "policy_file = /etc/starttlsd/policy\nmode = enforce\n")
seed("fuzz_config", "errors-no-equals-value", "helo_name\n")
seed("fuzz_config", "errors-bad-helo", "helo_name = bad name!\n")
seed("fuzz_config", "errors-listen", "listen = localhost:25\n")
seed("fuzz_config", "errors-cert-alone", "client_cert = /x.pem\n")
seed("fuzz_config", "errors-long-line", "helo_name = " + "a" * 5000 + "\n")
seed("fuzz_config", "errors-transparent", "transparent_source on\n")

# ---- whole sessions ----------------------------------------------------------------------


def c(data):
    return rec(0, data)


def s(data):
    return rec(3, data)


def rec(kind, data):
    if isinstance(data, str):
        data = data.encode("latin-1")
    if len(data) > 255:
        return bytes([kind | 0x80]) + struct.pack("<H", len(data)) + data
    return bytes([kind, len(data)]) + data


def pump(n=1):
    return bytes([7 | ((n - 1) << 3)])


def shut_client():
    return bytes([6 | 8])


def shut_server():
    return bytes([6])


def reset_server():
    return bytes([6 | 0x20])


def close_server():
    return bytes([6 | 0x10])


def close_client():
    return bytes([6 | 8 | 0x10])


def together(rec_bytes):
    """The record's bytes arrive with the next record's (no loop run between)."""
    return bytes([rec_bytes[0] | 0x40]) + rec_bytes[1:]


def session(name, flags, *recs):
    seed("fuzz_session", name, bytes([flags]) + b"".join(recs))


HELLO = [s(REPLIES["greeting"]), s("250-mx.example.net\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
                                   "250-CHUNKING\r\n250 8BITMIME\r\n")]
EHLO = [c("EHLO client.example.org\r\n"), s(REPLIES["ehlo-postfix"])]
MSG = [c("MAIL FROM:<alice@example.org>\r\n"), s(REPLIES["mail-ok"]),
       c("RCPT TO:<bob@example.net>\r\n"), s(REPLIES["rcpt-ok"]),
       c("DATA\r\n"), s(REPLIES["data-354"]),
       c("Subject: hi\r\n\r\nHello.\r\n.\r\n"), s(REPLIES["queued"])]
QUIT = [c("QUIT\r\n"), s(REPLIES["bye"])]

for flags in (0, 1):
    session("plain-%d" % flags, flags, *HELLO, *EHLO, *MSG, *QUIT)
session("pipelined", 0, *HELLO, *EHLO,
        c("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n"),
        s("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 no such user\r\n354 go ahead\r\n"),
        c("body\r\n.\r\nQUIT\r\n"), s("250 2.0.0 queued\r\n221 2.0.0 Bye\r\n"))
session("bdat", 0, *HELLO, *EHLO, c("MAIL FROM:<a@example.org>\r\n"), s(REPLIES["mail-ok"]),
        c("RCPT TO:<b@example.net>\r\n"), s(REPLIES["rcpt-ok"]),
        c("BDAT 10\r\n0123456789BDAT 5 LAST\r\nabcde"), s("250 2.0.0 10 octets\r\n250 2.0.0 queued\r\n"),
        *QUIT)
session("bdat-bad", 0, *HELLO, c("BDAT x\r\nQUIT\r\n"))
session("smuggling-lf", 0, *HELLO, *EHLO, c("MAIL FROM:<a@example.org>\r\n"), s(REPLIES["mail-ok"]),
        c("RCPT TO:<b@example.net>\r\n"), s(REPLIES["rcpt-ok"]), c("DATA\r\n"), s(REPLIES["data-354"]),
        c("x\r\n\n.\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<v@example.net>\r\nDATA\r\nevil\r\n.\r\n"),
        s("250 2.0.0 queued\r\n"))
session("smuggling-cr", 0, *HELLO, c("MAIL FROM:<a@example.org>\r\n"), s(REPLIES["mail-ok"]),
        c("RCPT TO:<b@example.net>\r\n"), s(REPLIES["rcpt-ok"]), c("DATA\r\n"), s(REPLIES["data-354"]),
        c("x\r.\rQUIT\r\n.\r\n"), s("250 ok\r\n"))
session("rcpt-policy", 0, *HELLO, c("MAIL FROM:<a@example.org>\r\n"), s(REPLIES["mail-ok"]),
        c("RCPT TO:<x@secure.example>\r\nRCPT TO:<y@a.pinned.example>\r\nDATA\r\n"), *QUIT)
session("rcpt-mixed", 0, *HELLO, c("MAIL FROM:<a@example.org>\r\n"), s(REPLIES["mail-ok"]),
        c("RCPT TO:<x@secure.example>\r\nRCPT TO:<y@example.net>\r\nDATA\r\n"),
        s("250 2.1.5 Ok\r\n354 go\r\n"), c(".\r\n"), s(REPLIES["queued"]), *QUIT)
session("client-starttls", 0, *HELLO, c("EHLO x\r\nSTARTTLS\r\nNOOP\r\n"),
        s("250-mx\r\n250-STARTTLS\r\n250 SIZE\r\n250 2.0.0 Ok\r\n"))
session("unsolicited-421", 0, *HELLO, s(REPLIES["shutdown"]), c("NOOP\r\n"))
session("unexpected-reply", 0, *HELLO, s("250 surprise\r\n"), c("NOOP\r\n"))
session("auth", 0, *HELLO, c("AUTH LOGIN\r\n"), s(REPLIES["auth-334"]), c("YWxpY2U=\r\n"),
        s("334 UGFzc3dvcmQ6\r\n"), c("c2VjcmV0\r\n"), s(REPLIES["auth-ok"]), *QUIT)
session("helo-fallback", 0, s(REPLIES["greeting"]), s(REPLIES["ehlo-refused"]), s(REPLIES["helo-ok"]),
        c("HELO x\r\n"), s("250 mx\r\n"), *QUIT)
session("refused-554", 0, s("554 5.7.1 go away\r\n"), c("EHLO x\r\n"))
session("greeting-421", 0, s("421 4.3.2 busy\r\n"))
session("bad-greeting", 0, s("hello there\r\n"))
session("overlong-line", 1, *HELLO, c("NOOP " + "a" * 700 + "\r\nNOOP\r\n"), s("250 ok\r\n250 ok\r\n"))
session("overlong-unterminated", 1, *HELLO, c("X" * 600), c("Y" * 600), c("\r\nQUIT\r\n"))
session("long-reply", 1, *HELLO, c("HELP\r\n"), s("214-" + "h" * 600 + "\r\n214 end\r\n"))
session("too-many-lines", 1, *HELLO, c("HELP\r\n"), s("".join("214-l%d\r\n" % i for i in range(8)) + "214 e\r\n"))
session("errors", 1, *HELLO, c("RCPT TO:<a@secure.example>\r\n" * 7))
session("client-closes-in-data", 0, *HELLO, c("MAIL FROM:<a@example.org>\r\n"), s(REPLIES["mail-ok"]),
        c("RCPT TO:<b@example.net>\r\n"), s(REPLIES["rcpt-ok"]), c("DATA\r\n"), s(REPLIES["data-354"]),
        c("half a mess"), shut_client(), pump(4))
session("server-closes-in-data", 0, *HELLO, c("MAIL FROM:<a@example.org>\r\n"), s(REPLIES["mail-ok"]),
        c("RCPT TO:<b@example.net>\r\n"), s(REPLIES["rcpt-ok"]), c("DATA\r\n"), s(REPLIES["data-354"]),
        c("body\r\n.\r\n"), shut_server(), pump(4))
session("client-closes-early", 0, shut_client(), s(REPLIES["greeting"]))
session("client-goes-away", 0, *HELLO, c("EHLO x\r\nMAIL FROM:<a@example.org>\r\n"), close_client(),
        s(REPLIES["ehlo-postfix"]), s(REPLIES["mail-ok"]))
session("server-421-reset", 0, *HELLO, c("NOOP\r\n"), together(s("421 4.4.2 closing\r\n")),
        bytes([6 | 0x20 | 0x40]), c("NOOP\r\nNOOP\r\n"))
session("server-close-pipelining", 0, s(REPLIES["greeting"]), c("EHLO x\r\nNOOP\r\nNOOP\r\n"),
        together(s("250 mx\r\n")), close_server(), pump(2))
session("server-reset-in-data", 1, *HELLO, c("MAIL FROM:<a@example.org>\r\n"), s(REPLIES["mail-ok"]),
        c("RCPT TO:<b@example.net>\r\n"), s(REPLIES["rcpt-ok"]), c("DATA\r\n"), s(REPLIES["data-354"]),
        c("x" * 200), reset_server(), c("y" * 200 + "\r\n.\r\n"))
session("split-writes", 0, s("22"), s("0 mx ESMTP\r"), s("\n"), s("250-mx\r\n250 "), s("PIPELINING\r\n"),
        c("EH"), c("LO x\r"), c("\n"), s("250-mx\r\n"), pump(2), s("250 SIZE\r\n"), *QUIT)
session("bare-lf", 0, s("220 mx\n"), s("250-mx\n250 8BITMIME\n"), c("EHLO x\nMAIL FROM:<a>\n"),
        s("250-mx\n250 STARTTLS\n250 ok\n"), c("QUIT\n"), s("221 bye\n"))
session("garbage", 0, *HELLO, c("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + "\x00" * 40),
        s("500 what\r\n"))
# bit 1: the server offers STARTTLS, starttlsd tries it, the handshake breaks, fallback.
session("starttls-fallback", 2, s(REPLIES["greeting"]), s(REPLIES["ehlo-postfix"]), s(REPLIES["tls-go"]),
        pump(2), s("this is no TLS record\r\n"), pump(4), *HELLO, *EHLO, *QUIT)
session("starttls-refused", 2, s(REPLIES["greeting"]), s(REPLIES["ehlo-exim"]), s(REPLIES["tls-no"]),
        pump(4), *HELLO, *QUIT)
session("starttls-injection", 2, s(REPLIES["greeting"]), s(REPLIES["ehlo-postfix"]),
        s(REPLIES["tls-go"] + "250-evil\r\n250 PIPELINING\r\n"), pump(4))
session("defused-starttls", 0, s(REPLIES["greeting"]), s(REPLIES["ehlo-postfix"]), *EHLO, *QUIT)


# ---- MTA-STS (fuzz_sts) and TLSA rdata (fuzz_dane) ---------------------------------

STS_EXAMPLE = ("version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\n"
               "mx: backupmx.example.com\nmax_age: 604800\n")
seed("fuzz_sts", "rfc8461-example", STS_EXAMPLE)
seed("fuzz_sts", "rfc8461-crlf", STS_EXAMPLE.replace("\n", "\r\n"))
seed("fuzz_sts", "none", "version: STSv1\nmode: none\nmax_age: 86400\n")
seed("fuzz_sts", "ext", "version: STSv1\nmode: testing\nmx: a.example\nmax_age: 1\nx-y: z\n")
seed("fuzz_sts", "txt", "v=STSv1; id=20160831085700Z;")
seed("fuzz_sts", "txt-ext", "v=STSv1; id=abc; foo=bar")
seed("fuzz_sts", "pattern", "*.example.netmx.example.net")
seed("fuzz_tlsrpt", "mailto", "v=TLSRPTv1; rua=mailto:reports@example.com")
seed("fuzz_tlsrpt", "https", "v=TLSRPTv1;rua=https://reporting.example.com:8443/v1/tlsrpt?x=1")
seed("fuzz_tlsrpt", "both", "v=TLSRPTv1 ; rua=mailto:tls%2Drpt@example.com , https://r.example.net/ ; ext_1=v;")
seed("fuzz_tlsrpt", "other-scheme", "v=TLSRPTv1; rua=ftp://x.example/, mailto:a@example.net?subject=x")


def tlsa(usage, sel, mtype, assoc):
    rd = bytes([usage, sel, mtype]) + assoc
    return bytes([len(rd)]) + rd


seed("fuzz_dane", "ee-311", tlsa(3, 1, 1, bytes(range(32))))
seed("fuzz_dane", "agility", tlsa(3, 1, 1, bytes(32)) + tlsa(3, 1, 2, bytes(64)) + tlsa(2, 0, 1, bytes(32)))
seed("fuzz_dane", "unusable", tlsa(0, 0, 1, bytes(32)) + tlsa(3, 1, 255, b"x") + tlsa(1, 1, 1, bytes(31)))
seed("fuzz_dane", "full", tlsa(2, 1, 0, b"\x30\x59\x30\x13" + bytes(87)))

def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    total = 0
    for harness, seeds in sorted(CORPUS.items()):
        d = os.path.join(OUT, harness)
        os.makedirs(d)
        for name, data in sorted(seeds.items()):
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
            total += 1
        print("%-14s %3d seeds" % (harness, len(seeds)))
    print("%d seeds in %s" % (total, os.path.relpath(OUT)), file=sys.stderr)


if __name__ == "__main__":
    main()
