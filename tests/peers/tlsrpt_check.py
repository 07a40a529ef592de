#!/usr/bin/env python3
"""Check an SMTP TLS report against RFC 8460 (standard library only).

  tlsrpt_check.py json FILE  [EXPECT...]   a JSON report, or a JSON array of them
  tlsrpt_check.py gz FILE    [EXPECT...]   a gzip body (an HTTPS POST)
  tlsrpt_check.py eml FILE   [EXPECT...]   a message (RFC 8460 5.3): headers,
                                           MIME structure, the attachment
EXPECT: domain=D type=T success=N failure=N details=N org=S contact=S
        submitter=S (eml) id=S (report-id)
Every report is checked against 4.4: required members and their types, the
date range (a whole UTC day, RFC 3339), result types (4.3), counts (the
failure-details rows add up to the failure total). Prints "ok" and the
report-id; exit 1 with the reasons otherwise.
"""

import email
import email.policy
import gzip
import ipaddress
import json
import re
import sys
from datetime import datetime, timedelta, timezone

RESULT_TYPES = {
    "starttls-not-supported", "certificate-host-mismatch", "certificate-expired",
    "certificate-not-trusted", "validation-failure", "tlsa-invalid", "dnssec-invalid",
    "dane-required", "sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid",
}
POLICY_TYPES = {"tlsa", "sts", "no-policy-found"}
errors = []


def err(msg):
    errors.append(msg)


def typ(obj, key, t, where, required=True):
    if key not in obj:
        if required:
            err("%s: %s missing" % (where, key))
        return None
    v = obj[key]
    if t is int:
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            err("%s: %s: not a non-negative integer" % (where, key))
            return None
    elif not isinstance(v, t):
        err("%s: %s: not %s" % (where, key, t.__name__))
        return None
    return v


def rfc3339(s, where):
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z", s or "")
    if not m:
        err("%s: %r is not an RFC 3339 UTC date-time" % (where, s))
        return None
    return datetime(*map(int, m.groups()), tzinfo=timezone.utc)


def check_report(r, exp):
    if not isinstance(r, dict):
        err("report is not an object")
        return
    typ(r, "organization-name", str, "report")
    typ(r, "contact-info", str, "report")
    rid = typ(r, "report-id", str, "report")
    dr = typ(r, "date-range", dict, "report")
    if dr is not None:
        s = rfc3339(typ(dr, "start-datetime", str, "date-range"), "start-datetime")
        e = rfc3339(typ(dr, "end-datetime", str, "date-range"), "end-datetime")
        if s and e:
            if (s.hour, s.minute, s.second) != (0, 0, 0):
                err("start-datetime is not the start of a UTC day")
            if e - s != timedelta(seconds=86399):
                err("date range is not one whole UTC day: %s .. %s" % (s, e))
    pols = typ(r, "policies", list, "report")
    if pols is not None and not pols:
        err("policies: empty")
    for i, p in enumerate(pols or []):
        w = "policies[%d]" % i
        if not isinstance(p, dict):
            err(w + ": not an object")
            continue
        pol = typ(p, "policy", dict, w)
        if pol is not None:
            pt = typ(pol, "policy-type", str, w + ".policy")
            if pt is not None and pt not in POLICY_TYPES:
                err(w + ": policy-type %r" % pt)
            typ(pol, "policy-domain", str, w + ".policy")
            ps = typ(pol, "policy-string", list, w + ".policy", required=pt != "no-policy-found")
            if ps is not None and not all(isinstance(x, str) for x in ps):
                err(w + ": policy-string: not all strings")
            mx = typ(pol, "mx-host", list, w + ".policy", required=False)
            if mx is not None and not all(isinstance(x, str) for x in mx):
                err(w + ": mx-host: not all strings")
        sm = typ(p, "summary", dict, w)
        ok_n = fail_n = None
        if sm is not None:
            ok_n = typ(sm, "total-successful-session-count", int, w + ".summary")
            fail_n = typ(sm, "total-failure-session-count", int, w + ".summary")
        fd = typ(p, "failure-details", list, w, required=False) or []
        total = 0
        for j, d in enumerate(fd):
            dw = "%s.failure-details[%d]" % (w, j)
            if not isinstance(d, dict):
                err(dw + ": not an object")
                continue
            rt = typ(d, "result-type", str, dw)
            if rt is not None and rt not in RESULT_TYPES:
                err(dw + ": result-type %r" % rt)
            n = typ(d, "failed-session-count", int, dw)
            total += n or 0
            for k in ("sending-mta-ip", "receiving-ip"):
                v = typ(d, k, str, dw, required=False)
                if v is not None:
                    try:
                        ipaddress.ip_address(v)
                    except ValueError:
                        err(dw + ": %s %r is not an address" % (k, v))
            typ(d, "receiving-mx-hostname", str, dw, required=False)
        if fail_n is not None and fd and total != fail_n:
            err(w + ": failure-details add up to %d, total-failure-session-count %d" % (total, fail_n))
    # expectations: the policy of the given domain (and type)
    sel = [p for p in (pols or []) if isinstance(p, dict) and isinstance(p.get("policy"), dict)
           and ("domain" not in exp or p["policy"].get("policy-domain") == exp["domain"])
           and ("type" not in exp or p["policy"].get("policy-type") == exp["type"])]
    if any(k in exp for k in ("success", "failure", "details", "domain", "type")):
        if len(sel) != 1:
            err("expected one policy for %s, found %d" % (exp, len(sel)))
        else:
            p = sel[0]
            for k, key in (("success", "total-successful-session-count"),
                           ("failure", "total-failure-session-count")):
                if k in exp and p["summary"].get(key) != int(exp[k]):
                    err("%s: %s = %s, want %s" % (exp.get("domain"), key, p["summary"].get(key), exp[k]))
            if "details" in exp and len(p.get("failure-details", [])) != int(exp["details"]):
                err("failure-details rows %d, want %s" % (len(p.get("failure-details", [])), exp["details"]))
    for k, key in (("org", "organization-name"), ("contact", "contact-info"), ("id", "report-id")):
        if k in exp and r.get(key) != exp[k]:
            err("%s = %r, want %r" % (key, r.get(key), exp[k]))
    return rid


def check_eml(raw, exp):
    m = email.message_from_bytes(raw, policy=email.policy.compat32)
    ct = m.get_content_type()
    if ct != "multipart/report":
        err("Content-Type %s, want multipart/report" % ct)
    if m.get_param("report-type") != "tlsrpt":
        err("report-type %r, want tlsrpt" % m.get_param("report-type"))
    dom = (m.get("TLS-Report-Domain") or "").strip()
    sub = (m.get("TLS-Report-Submitter") or "").strip()
    if not dom:
        err("no TLS-Report-Domain")
    if not sub:
        err("no TLS-Report-Submitter")
    if "domain" in exp and dom != exp["domain"]:
        err("TLS-Report-Domain %r, want %r" % (dom, exp["domain"]))
    if "submitter" in exp and sub != exp["submitter"]:
        err("TLS-Report-Submitter %r, want %r" % (sub, exp["submitter"]))
    subject = re.sub(r"\s+", " ", (m.get("Subject") or "").replace("\r\n", ""))
    sm = re.fullmatch(r"Report Domain: (\S+) Submitter: (\S+) Report-ID: <([^>]+)>", subject.strip())
    if not sm:
        err("Subject %r does not follow RFC 8460 5.3" % subject)
    elif sm.group(1) != dom or sm.group(2) != sub:
        err("Subject names %s/%s, headers %s/%s" % (sm.group(1), sm.group(2), dom, sub))
    parts = m.get_payload() if m.is_multipart() else []
    if len(parts) != 2:
        err("%d MIME parts, want 2 (text, report)" % len(parts))
        return None
    if parts[0].get_content_type() != "text/plain":
        err("first part %s, want text/plain" % parts[0].get_content_type())
    att = parts[1]
    if att.get_content_type() != "application/tlsrpt+gzip":
        err("attachment %s, want application/tlsrpt+gzip" % att.get_content_type())
    if (att.get("Content-Transfer-Encoding") or "").lower() != "base64":
        err("attachment not base64")
    fn = att.get_filename() or ""
    fm = re.fullmatch(r"([^!]+)!([^!]+)!(\d+)!(\d+)(?:![A-Za-z0-9]+)?\.json\.gz", fn)
    if not fm:
        err("filename %r does not follow RFC 8460 5.3" % fn)
    elif fm.group(1) != sub or fm.group(2) != dom or int(fm.group(4)) - int(fm.group(3)) != 86399:
        err("filename %r does not match the submitter, domain or day" % fn)
    body = att.get_payload(decode=True) or b""
    rid = check_gz(body, exp)
    if sm and rid is not None and sm.group(3) != rid:
        err("Subject Report-ID %r, JSON report-id %r" % (sm.group(3), rid))
    if sm and (m.get("Message-ID") or "").strip() != "<%s>" % sm.group(3):
        err("Message-ID %r" % m.get("Message-ID"))
    return rid


def check_gz(body, exp):
    if body[:2] != b"\x1f\x8b":
        err("not gzip (magic %r)" % body[:2])
        return None
    try:
        text = gzip.decompress(body)
    except (OSError, EOFError) as e:
        err("gzip: %s" % e)
        return None
    return check_json(text, exp)


def check_json(text, exp):
    try:
        doc = json.loads(text)
    except ValueError as e:
        err("JSON: %s" % e)
        return None
    if isinstance(doc, list):
        rid = None
        for r in doc:
            got = check_report(r, {k: v for k, v in exp.items() if k not in ("success", "failure", "details", "type", "domain", "id")})
            if "domain" in exp and any(isinstance(p, dict) and p.get("policy", {}).get("policy-domain") == exp["domain"] for p in r.get("policies", [])):
                rid = check_report(r, exp)
        if "domain" in exp and rid is None:
            err("no report for %s" % exp["domain"])
        return rid
    return check_report(doc, exp)


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("json", "gz", "eml"):
        print(__doc__, file=sys.stderr)
        return 2
    exp = dict(a.split("=", 1) for a in sys.argv[3:])
    data = open(sys.argv[2], "rb").read()
    rid = {"json": check_json, "gz": check_gz, "eml": check_eml}[sys.argv[1]](data, exp)
    if errors:
        for e in errors:
            print("tlsrpt_check: " + e)
        return 1
    print("ok %s" % rid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
