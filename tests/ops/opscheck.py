#!/usr/bin/env python3
"""Helpers for tests/ops/test-ops.sh.

  opscheck.py mtail URL           mtail's /metrics, one "name{labels} value" a line
                                  (mtail's own "prog" label left out), sorted
  opscheck.py expect LOGFILE      the same lines computed from the log file with an
                                  independent logfmt parser: what mtail must show
  opscheck.py query URL EXPR      a PromQL instant query; prints the result; exit 1
                                  when it fails or returns no data
  opscheck.py dashboard URL JSON  every query of the Grafana dashboard, with Grafana's
                                  variables replaced; exit 1 unless each returns data
  opscheck.py alerts URL          the alerts Prometheus has firing or pending:
                                  "NAME state label=value ..." a line
"""
import json
import re
import sys
import urllib.parse
import urllib.request


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def fmt(name, labels, value):
    lab = ",".join('%s="%s"' % (k, labels[k]) for k in sorted(labels))
    if float(value) == int(float(value)):
        value = int(float(value))
    else:
        value = round(float(value), 6)
    return "%s{%s} %s" % (name, lab, value)


LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def mtail(url):
    out = []
    for line in get(url).splitlines():
        if not line.startswith("starttlsd_") or "_bucket{" in line:
            continue
        m = re.match(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$', line)
        labels = dict(LABEL.findall(m.group(2) or ""))
        labels.pop("prog", None)
        out.append(fmt(m.group(1), labels, m.group(3)))
    return sorted(out)


def logfmt(text):
    """key=value pairs of a logfmt text; quoted values unescaped loosely."""
    kv, i, n = {}, 0, len(text)
    while i < n:
        while i < n and text[i] == " ":
            i += 1
        j = text.find("=", i)
        if j < 0:
            break
        key = text[i:j]
        i = j + 1
        if i < n and text[i] == '"':
            i += 1
            val = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    val.append(text[i + 1])
                    i += 2
                else:
                    val.append(text[i])
                    i += 1
            i += 1
            kv[key] = "".join(val)
        else:
            j = text.find(" ", i)
            j = n if j < 0 else j
            kv[key] = text[i:j]
            i = j
        if key in kv and list(kv).count(key) > 1:
            raise ValueError("key twice: " + key)
    return kv


def expect(path):
    c = {}

    def inc(name, labels, v=1):
        k = (name, tuple(sorted(labels.items())))
        c[k] = c.get(k, 0) + v

    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.rstrip("\n")
        m = re.search(r"starttlsd\[\d+\]: (event=.*)$", line)
        if not m:
            continue
        f = logfmt(m.group(1))
        ev = f["event"]
        inc("starttlsd_log_lines_total", {"event": ev})
        if ev == "session":
            a, t = f["action"], f["tls"]
            inc("starttlsd_sessions_total", {"action": a, "tls_version": t})
            inc("starttlsd_messages_total", {"action": a, "tls_version": t}, int(f["msgs"]))
            inc("starttlsd_client_received_bytes_total", {}, int(f["bytes_up"]))
            inc("starttlsd_client_sent_bytes_total", {}, int(f["bytes_down"]))
            inc("starttlsd_session_duration_seconds_count", {"action": a})
            inc("starttlsd_session_duration_seconds_sum", {"action": a}, int(f["duration_ms"]) / 1000.0)
            if "tls_error" in f:
                inc("starttlsd_tls_errors_total", {"signal": f["tls_error"].split(":")[0]})
        elif ev == "downgrade":
            inc("starttlsd_downgrades_total", {"signal": f["signal"], "action": f["action"], "tlsrpt": f["tlsrpt"]})
            d = f.get("domain", "")
            # A domain that had to be quoted counts under dst (docs/metrics.md).
            if d == "" or re.search(r'[\x00-\x20"=\\\x7f-\uffff]', d):
                d = f["dst"]
            inc("starttlsd_destination_downgrades_total", {"destination": d, "action": f["action"]})
        elif ev == "attack":
            inc("starttlsd_attacks_total", {"signal": f["signal"], "action": f["action"]})
        elif ev == "worker" and f.get("action") == "started":
            inc("starttlsd_worker_starts_total", {})
        elif ev == "worker" and f.get("action") == "exited":
            inc("starttlsd_worker_exits_total", {"expected": f["expected"]})
        elif ev == "pinstore":
            msg = f["msg"]
            op = ("open" if msg.startswith("cannot open") else "commit" if msg.startswith("commit failed")
                  else "read" if msg.startswith("read ")
                  else "sync" if re.match(r"\d+ store errors", msg) else "other")
            inc("starttlsd_pinstore_errors_total", {"op": op})
        elif ev == "start":
            inc("starttlsd_starts_total", {})
        elif ev == "reload":
            if "version" in f:
                inc("starttlsd_config_reloads_total", {"result": "success"})
            elif f.get("msg", "").startswith("configuration refused"):
                inc("starttlsd_config_reloads_total", {"result": "failure"})
    # mtail exports its label-less counters from the start, at 0.
    for name in ("starttlsd_client_received_bytes_total", "starttlsd_client_sent_bytes_total",
                 "starttlsd_worker_starts_total", "starttlsd_starts_total"):
        c.setdefault((name, ()), 0)
    return sorted(fmt(n, dict(l), v) for (n, l), v in c.items())


def query(url, expr):
    q = urllib.parse.urlencode({"query": expr})
    r = json.loads(get(url + "/api/v1/query?" + q))
    if r.get("status") != "success":
        print("query failed: %s: %s" % (expr, r))
        return False
    res = r["data"]["result"]
    print("%d series: %s\n  %s" % (len(res), expr, json.dumps(res)[:300]))
    return len(res) > 0


def dashboard(url, path):
    d = json.load(open(path))
    ok, n = True, 0
    for p in d["panels"]:
        for t in p.get("targets", []):
            e = t["expr"]
            for var, val in (("$__rate_interval", "1m"), ("$__range", "10m"),
                             ("$__interval", "15s"), ("$instance", ".*")):
                e = e.replace(var, val)
            if "$" in e:
                print("unreplaced variable in: " + e)
                ok = False
                continue
            n += 1
            if not query(url, e):
                print("NO DATA: panel %r" % p["title"])
                ok = False
    # The instance variable's own query.
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            m = re.match(r"label_values\((\w+), *(\w+)\)", v["definition"])
            r = json.loads(get(url + "/api/v1/label/%s/values?%s" % (
                m.group(2), urllib.parse.urlencode({"match[]": m.group(1)}))))
            print("variable %s: %s" % (v["name"], r["data"]))
            ok = ok and len(r["data"]) > 0
            n += 1
    print("%d queries" % n)
    return ok


def alerts(url):
    r = json.loads(get(url + "/api/v1/alerts"))
    for a in r["data"]["alerts"]:
        lab = " ".join("%s=%s" % (k, v) for k, v in sorted(a["labels"].items()) if k != "alertname")
        print(a["labels"]["alertname"], a["state"], lab)
    return True


def main():
    cmd = sys.argv[1]
    if cmd == "mtail":
        print("\n".join(mtail(sys.argv[2])))
    elif cmd == "expect":
        print("\n".join(expect(sys.argv[2])))
    elif cmd == "query":
        sys.exit(0 if query(sys.argv[2], sys.argv[3]) else 1)
    elif cmd == "dashboard":
        sys.exit(0 if dashboard(sys.argv[2], sys.argv[3]) else 1)
    elif cmd == "alerts":
        alerts(sys.argv[2])
    else:
        sys.exit("unknown command " + cmd)


main()
