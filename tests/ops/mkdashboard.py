#!/usr/bin/env python3
"""Writes deploy/ops/starttlsd-dashboard.json (the Grafana dashboard).

The JSON is generated so that every panel has the same shape; edit the
PANELS list here, run `python3 tests/ops/mkdashboard.py`, commit both.
`make test-ops` checks the committed file is this script's output, and runs
every query of it against a real Prometheus.
"""
import json
import os
import sys

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'instance=~"$instance"'
RELAYED = 'action=~"upgraded|plaintext|fallback"'

# (title, type, unit, [(expr, legend)], description, width, height)
PANELS = [
    ("TLS share of relayed sessions", "stat", "percentunit",
     [(f'sum(increase(starttlsd_sessions_total{{{SEL},{RELAYED},tls_version!="none"}}[$__range]))'
       f' / sum(increase(starttlsd_sessions_total{{{SEL},{RELAYED}}}[$__range]))', "TLS")],
     "Sessions relayed over TLS (action=upgraded) among all relayed sessions "
     "(upgraded, plaintext, fallback), over the time range.", 6, 5),
    ("Messages over TLS", "stat", "percentunit",
     [(f'sum(increase(starttlsd_messages_total{{{SEL},tls_version!="none"}}[$__range]))'
       f' / sum(increase(starttlsd_messages_total{{{SEL}}}[$__range]))', "TLS")],
     "Messages accepted by servers over TLS, among all accepted messages.", 6, 5),
    ("Downgrades blocked", "stat", "short",
     [(f'sum(increase(starttlsd_downgrades_total{{{SEL},action="blocked"}}[$__range]))', "blocked")],
     "event=downgrade lines with action=blocked: mail refused (4xx) because TLS was "
     "required and not to be had.", 6, 5),
    ("Attacks defeated", "stat", "short",
     [(f'sum(increase(starttlsd_attacks_total{{{SEL}}}[$__range]))', "attacks")],
     "event=attack lines: STARTTLS response injection, command injection, SMTP smuggling.", 6, 5),
    ("Sessions by action", "timeseries", "ops",
     [(f'sum by (action) (rate(starttlsd_sessions_total{{{SEL}}}[$__rate_interval]))', "{{action}}")],
     "Sessions per second, by what happened to them (docs/logging.md, action).", 12, 8),
    ("Sessions by TLS version", "timeseries", "ops",
     [(f'sum by (tls_version) (rate(starttlsd_sessions_total{{{SEL}}}[$__rate_interval]))', "{{tls_version}}")],
     "Sessions per second by the TLS version of the server leg (none: plaintext).", 12, 8),
    ("Messages by TLS version", "timeseries", "ops",
     [(f'sum by (tls_version) (rate(starttlsd_messages_total{{{SEL}}}[$__rate_interval]))', "{{tls_version}}")],
     "Messages accepted by servers per second.", 12, 8),
    ("Why no TLS", "timeseries", "ops",
     [(f'sum by (signal) (rate(starttlsd_tls_errors_total{{{SEL}}}[$__rate_interval]))', "{{signal}}")],
     "Sessions whose server leg had no TLS, by reason (tls_error: not offered, masked, "
     "refused, handshake failed).", 12, 8),
    ("Downgrades by signal and action", "timeseries", "ops",
     [(f'sum by (signal, action) (rate(starttlsd_downgrades_total{{{SEL}}}[$__rate_interval]))',
       "{{signal}} {{action}}")],
     "event=downgrade lines per second (docs/policy.md, signals).", 12, 8),
    ("Destinations with most downgrades", "table", "short",
     [(f'topk(10, sum by (destination, action) (increase(starttlsd_destination_downgrades_total{{{SEL}}}[$__range])))',
       "{{destination}}")],
     "Destination addresses and recipient domains with downgrade signals over the time range.", 12, 8),
    ("Attacks by signal", "timeseries", "ops",
     [(f'sum by (signal, action) (rate(starttlsd_attacks_total{{{SEL}}}[$__rate_interval]))',
       "{{signal}} {{action}}")],
     "Defeated attacks per second.", 12, 8),
    ("Session duration", "timeseries", "s",
     [(f'histogram_quantile(0.5, sum by (le) (rate(starttlsd_session_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))', "median"),
      (f'histogram_quantile(0.95, sum by (le) (rate(starttlsd_session_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))', "95th percentile")],
     "From accepting the connection to its session line.", 12, 8),
    ("Client traffic", "timeseries", "Bps",
     [(f'sum(rate(starttlsd_client_received_bytes_total{{{SEL}}}[$__rate_interval]))', "from clients"),
      (f'sum(rate(starttlsd_client_sent_bytes_total{{{SEL}}}[$__rate_interval]))', "to clients")],
     "Bytes on the LAN leg (bytes_up, bytes_down).", 12, 8),
    ("Workers and pin store", "timeseries", "short",
     [(f'sum by (expected) (increase(starttlsd_worker_exits_total{{{SEL}}}[$__rate_interval]))', "worker exits, expected={{expected}}"),
      (f'sum by (op) (increase(starttlsd_pinstore_errors_total{{{SEL}}}[$__rate_interval]))', "pin store errors: {{op}}"),
      (f'sum by (result) (increase(starttlsd_config_reloads_total{{{SEL}}}[$__rate_interval]))', "reloads: {{result}}")],
     "Worker exits (expected=no: crashed and restarted), pin store errors, configuration reloads.", 12, 8),
    ("Log lines by event", "timeseries", "ops",
     [(f'sum by (event) (rate(starttlsd_log_lines_total{{{SEL}}}[$__rate_interval]))', "{{event}}")],
     "Every starttlsd line counted by mtail: a flat zero means the log pipeline stopped.", 24, 7),
]


def panel(i, x, y, title, typ, unit, targets, desc, w, h):
    p = {
        "id": i + 1,
        "title": title,
        "description": desc,
        "type": typ,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [
            {"refId": chr(ord("A") + n), "datasource": DS, "expr": e, "legendFormat": lg,
             "instant": typ in ("stat", "table"), "range": typ not in ("stat", "table")}
            for n, (e, lg) in enumerate(targets)
        ],
    }
    if typ == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "none"}
        if unit == "percentunit":
            p["fieldConfig"]["defaults"].update({"min": 0, "max": 1, "thresholds": {
                "mode": "absolute", "steps": [{"color": "red", "value": None},
                                              {"color": "orange", "value": 0.8},
                                              {"color": "green", "value": 0.95}]}})
        else:
            p["fieldConfig"]["defaults"]["thresholds"] = {"mode": "absolute", "steps": [
                {"color": "green", "value": None}, {"color": "red", "value": 1}]}
    if typ == "table":
        p["transformations"] = [{"id": "organize", "options": {"excludeByName": {"Time": True}}}]
    return p


def main():
    panels, x, y, rowh = [], 0, 0, 0
    for i, (title, typ, unit, targets, desc, w, h) in enumerate(PANELS):
        if x + w > 24:
            x, y, rowh = 0, y + rowh, 0
        panels.append(panel(i, x, y, title, typ, unit, targets, desc, w, h))
        x += w
        rowh = max(rowh, h)
    dash = {
        "title": "starttlsd",
        "uid": "starttlsd",
        "description": "TLS coverage, downgrades and attacks of starttlsd, from its log lines "
                       "(mtail, deploy/ops/starttlsd.mtail) or its own metrics (docs/metrics.md).",
        "tags": ["starttlsd", "smtp", "tls"],
        "timezone": "browser",
        "schemaVersion": 38,
        "version": 1,
        "editable": True,
        "refresh": "1m",
        "time": {"from": "now-24h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource",
             "query": "prometheus", "current": {}, "hide": 0},
            {"name": "instance", "label": "Instance", "type": "query", "datasource": DS,
             "query": {"query": "label_values(starttlsd_log_lines_total, instance)", "refId": "instance"},
             "definition": "label_values(starttlsd_log_lines_total, instance)",
             "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2,
             "current": {"text": "All", "value": "$__all"}, "hide": 0, "sort": 1},
        ]},
        "annotations": {"list": []},
        "panels": panels,
    }
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                       "deploy", "ops", "starttlsd-dashboard.json")
    text = json.dumps(dash, indent=2, ensure_ascii=False) + "\n"
    if len(sys.argv) > 1 and sys.argv[1] == "--check":
        sys.exit(0 if open(out).read() == text else 1)
    open(out, "w").write(text)


main()
