#!/usr/bin/env python3
"""starttlsd benchmark: starttlsd (A) beside stunnel4 (B) and plaintext direct (C).

Run it through tests/bench/run.sh (make bench, make bench-smoke), which puts it
in a network namespace of its own:

  LAN side 127.0.0.1   the proxies listen here; the load generators connect
                       from here
  WAN side 127.0.1.1   the sinks and Postfix listen here; the proxies' upstream
                       connections leave from here

Every measurement runs the three legs on the same load, interleaved
A B C A B C, and takes medians. Nothing here needs the network: loopback only.
Standard library only (it runs under Debian's /usr/bin/python3).
"""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAN = "127.0.0.1"
WAN = "127.0.1.1"
PORT_A, PORT_B, PORT_D = 10025, 10026, 10027
PORT_RELAY = 2530  # the WAN section's delaying relay, in front of the p256 sink
SINK_PORTS = {"p256": 2525, "rsa": 2526, "p256-noticket": 2527}
PORT_POSTFIX = 2528
CLK = os.sysconf("SC_CLK_TCK")
KIB, MIB = 1024, 1024 * 1024
SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
LEG_NAME = {"A": "starttlsd", "B": "stunnel", "C": "direct", "D": "stunnel, default"}
LEG_PORT = {"A": PORT_A, "B": PORT_B, "D": PORT_D}

# The load matrix: (name, message size, concurrent sessions, one connection per
# session (-d), messages; smoke messages).
CASES = [
    ("1k-new", 1 * KIB, 1, False, 400, 12),
    ("1k-new", 1 * KIB, 10, False, 800, 20),
    ("1k-new", 1 * KIB, 100, False, 800, 100),
    ("1k-keep", 1 * KIB, 1, True, 3000, 20),
    ("1k-keep", 1 * KIB, 10, True, 15000, 50),
    ("1k-keep", 1 * KIB, 100, True, 15000, 200),
    ("1m-keep", 1 * MIB, 1, True, 200, 3),
    ("1m-keep", 1 * MIB, 10, True, 300, 10),
    ("1m-keep", 1 * MIB, 100, True, 300, 100),
]
CASE_TEXT = {
    "1k-new": "1 KiB, new connection per message",
    "1k-keep": "1 KiB, one connection per session (-d)",
    "1m-keep": "1 MiB, one connection per session (-d)",
}

procs = []  # everything we started, stopped on exit


def say(*a):
    print(*a, file=sys.stderr, flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def run_out(cmd, **kw):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, **kw)
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.SubprocessError) as e:
        return f"({e})"


# ---- processes and /proc ------------------------------------------------------

def start(cmd, log, **kw):
    f = open(log, "ab")
    p = subprocess.Popen(cmd, stdout=kw.pop("stdout", f), stderr=f,
                         stdin=subprocess.DEVNULL, **kw)
    f.close()
    procs.append(p)
    return p


def stop(p, timeout=10):
    if p is None or p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def tree(pid):
    """pid and all its descendants (starttlsd: the master and its workers)."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_s(pid):
    """User + system time of a process tree (every thread, and children already
    reaped by the root), seconds."""
    total = 0.0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(rest[11]) + int(rest[12])
        if p == pid:
            total += int(rest[13]) + int(rest[14])
    return total / CLK


def status(pid):
    """VmRSS, VmHWM (kB) and Threads summed over a process tree; Procs."""
    out = {"VmRSS": 0, "VmHWM": 0, "Threads": 0, "Procs": 0}
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k in ("VmRSS", "VmHWM"):
                        out[k] += int(v.split()[0])
                    elif k == "Threads":
                        out[k] += int(v)
            out["Procs"] += 1
        except OSError:
            continue
    return out


def foreign_cpu():
    """CPU seconds so far of every process outside this network namespace,
    by pid (other work on the machine competes with the bench)."""
    me = os.readlink("/proc/self/ns/net")
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{d}/ns/net") == me:
                continue
            with open(f"/proc/{d}/stat") as f:
                x = f.read()
        except OSError:
            continue
        name = x[x.index("(") + 1:x.rindex(")")]
        rest = x.rsplit(")", 1)[1].split()
        out[int(d)] = (name, (int(rest[11]) + int(rest[12])) / CLK)
    return out


def machine_busy():
    """(busy, total, steal) jiffies of the whole machine so far."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v[:8]) - idle, sum(v[:8]), v[7]


def listening(addr, port):
    a = "".join(f"{int(x):02X}" for x in reversed(addr.split(".")))
    want = f"{a}:{port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            x = line.split()
            if x[1] == want and x[3] == "0A":
                return True
    return False


def wait_listen(p, addr, port, what, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if p is not None and p.poll() is not None:
            raise RuntimeError(f"{what} exited with {p.returncode} before listening")
        if listening(addr, port):
            return
        time.sleep(0.02)
    raise RuntimeError(f"{what} is not listening on {addr}:{port}")


def wait_closed(addr, port, timeout=10):
    end = time.monotonic() + timeout
    while listening(addr, port) and time.monotonic() < end:
        time.sleep(0.02)


def relay_priority():
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    except OSError:
        pass


# ---- the bench ---------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.a = args
        self.smoke = args.smoke
        self.runs = args.runs
        self.tmp = tempfile.mkdtemp(prefix="starttlsd-bench.")
        os.chmod(self.tmp, 0o755)  # Postfix daemons run as postfix
        self.logs = os.path.join(self.tmp, "logs")
        os.makedirs(self.logs)
        self.state = os.path.join(self.tmp, "state")
        os.makedirs(self.state)
        self.starttlsd = args.starttlsd
        self.tools = args.tools
        self.sinks = {}
        self.failures = []
        self.res = {"load": [], "hs": [], "idle": [], "lat": [], "swaks": [], "postfix": [],
                    "wan": [], "wan_info": {}}
        self.cmds = {}
        help_text = run_out([self.starttlsd, "--help"])
        # Options newer starttlsd builds have; passed only when known.
        self.a_opts = ["--max-sessions", "20000"]
        if "--max-sessions-per-client" in help_text:
            self.a_opts += ["--max-sessions-per-client", "20000"]
        if "--state-dir" in help_text:
            self.a_opts += ["--state-dir", self.state]
        self.a_model = "?"
        self.git = run_out(["git", "-C", TOP, "describe", "--always", "--dirty"])
        self.t0 = time.monotonic()
        self.foreign0 = foreign_cpu()
        self.busy0 = machine_busy()
        self.load0 = open("/proc/loadavg").read().split()[:3]

    def n(self, full, smoke):
        return smoke if self.smoke else full

    def fail(self, what):
        say(f"bench: FAILED: {what}")
        self.failures.append(what)

    # -- certificates --------------------------------------------------------
    def certs(self):
        d = os.path.join(self.tmp, "certs")
        subprocess.run(["bash", os.path.join(TOP, "tests/peers/mkcerts.sh"), d],
                       check=True, stdout=subprocess.DEVNULL)
        self.p256 = {"ca": f"{d}/ca.crt", "crt": f"{d}/server.crt", "key": f"{d}/server.key"}
        # An RSA-2048 chain, as most MX servers still present: the client
        # verifies two RSA signatures instead of two ECDSA P-256 ones.
        r = os.path.join(self.tmp, "rsa")
        os.makedirs(r)
        sh = f"""set -e
cd {r}
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 10 \
  -subj "/O=starttlsd bench/CN=bench RSA CA" -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr \
  -subj "/O=starttlsd bench/CN=mx.example.net" 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\\nkeyUsage=critical,digitalSignature,keyEncipherment\\nextendedKeyUsage=serverAuth\\nsubjectAltName=DNS:mx.example.net\\n' >ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -set_serial 7 -days 10 \
  -sha256 -extfile ext -out server.crt 2>/dev/null
"""
        subprocess.run(["bash", "-c", sh], check=True)
        self.rsa = {"ca": f"{r}/ca.crt", "crt": f"{r}/server.crt", "key": f"{r}/server.key"}

    # -- sinks ---------------------------------------------------------------
    def start_sinks(self):
        spec = {"p256": (self.p256, []), "rsa": (self.rsa, []),
                "p256-noticket": (self.p256, ["--no-tickets"])}
        for name, (pki, extra) in spec.items():
            port = SINK_PORTS[name]
            stats = os.path.join(self.tmp, f"sink-{name}.stats")
            cmd = [os.path.join(self.tools, "sink"), "--listen", f"{WAN}:{port}",
                   "--cert", pki["crt"], "--key", pki["key"], "--stats", stats] + extra
            p = start(cmd, os.path.join(self.logs, f"sink-{name}.log"),
                      stdout=subprocess.PIPE)
            if p.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"sink {name} did not start")
            self.sinks[name] = {"p": p, "stats": stats, "pki": pki, "port": port}
            self.cmds[f"sink {name}"] = " ".join(cmd).replace(self.tmp, "$TMP")

    def sink_stats(self, name):
        s = self.sinks[name]
        try:
            os.unlink(s["stats"])
        except FileNotFoundError:
            pass
        s["p"].send_signal(signal.SIGUSR1)
        end = time.monotonic() + 5
        while time.monotonic() < end:
            try:
                with open(s["stats"]) as f:
                    line = f.read()
                out = {}
                for kv in line.split():
                    k, _, v = kv.partition("=")
                    out[k] = float(v)
                out["cpu"] = out["utime"] + out["stime"]
                return out
            except FileNotFoundError:
                time.sleep(0.01)
        raise RuntimeError(f"sink {name} did not report its counters")

    # -- legs ----------------------------------------------------------------
    def leg_start(self, leg, upstream_port, ca, tag, state=None):
        """Start a proxy leg. Returns (process or None, client address, port).
        state: a --state-dir of its own for starttlsd (default: the bench's)."""
        if leg == "C":
            return None, WAN, upstream_port
        log = os.path.join(self.logs, f"{tag}-{leg}.log")
        if leg == "A":
            opts = list(self.a_opts)
            if state is not None and "--state-dir" in opts:
                opts[opts.index("--state-dir") + 1] = state
            cmd = [self.starttlsd, "-f", "--log-stderr", "--listen", f"{LAN}:{PORT_A}",
                   "--upstream", f"{WAN}:{upstream_port}", "--helo-name",
                   "bench.example.org", "--ca-file", ca] + opts
            self.cmds.setdefault("A", " ".join(cmd).replace(self.tmp, "$TMP"))
            if getattr(self, "syslog", None):
                # Its own /dev: null, zero, random, urandom, and the
                # receiver's log socket (as tests/lib/common.sh does).
                # unshare and sh exec: the pid stays starttlsd's.
                cmd = ["unshare", "-m", "sh", "-c",
                       'fdev=$1; shift; mount --make-rprivate / 2>/dev/null; '
                       'for d in null zero random urandom; do '
                       'touch "$fdev/$d" && mount --bind "/dev/$d" "$fdev/$d" || exit 1; '
                       'done; mount --bind "$fdev" /dev || exit 1; exec "$@"',
                       "sh", self.fdev] + cmd
            p = start(cmd, log)
            wait_listen(p, LAN, PORT_A, "starttlsd")
            p.log = log
            if self.a_model == "?":
                time.sleep(0.2)
                with open(log, errors="replace") as f:
                    m = re.search(r"event=start .*?\bprocess=(\S+)(?: workers=(\d+))?", f.read())
                self.a_model = ("one process" if not m or m.group(1) == "single" else
                                f"a master and {m.group(2)} workers")
            return p, LAN, PORT_A
        # B: chain and host name verified. D: stunnel's defaults (no
        # verification at all), the configuration most deployments copy.
        conf = os.path.join(self.tmp, f"stunnel-{tag}-{leg}.conf")
        text = f"""foreground = yes
pid =
output = {log}
debug = 5
[smtp]
client = yes
accept = {LAN}:{LEG_PORT[leg]}
connect = {WAN}:{upstream_port}
protocol = smtp
"""
        if leg == "B":
            text += f"""CAfile = {ca}
verifyChain = yes
checkHost = mx.example.net
"""
        with open(conf, "w") as f:
            f.write(text)
        self.cmds.setdefault(leg, text.replace(self.tmp, "$TMP"))
        p = start(["stunnel", conf], log + ".stderr")
        wait_listen(p, LAN, LEG_PORT[leg], "stunnel")
        p.log = log
        return p, LAN, LEG_PORT[leg]

    def leg_stop(self, leg, p):
        if p is None:
            return
        stop(p)
        wait_closed(LAN, LEG_PORT[leg])

    def refused(self, leg, p):
        """Sessions the proxy refused or failed, from its log."""
        if p is None:
            return 0
        try:
            with open(p.log, errors="replace") as f:
                text = f.read()
        except FileNotFoundError:
            return 0
        if leg == "A":
            return len(re.findall(r"event=session .*action=refused", text)) + \
                len(re.findall(r"event=session .*reason=\"?server:", text))
        # stunnel's default configuration (D) warns once at start-up that it
        # has no CA to verify with: that is the point of the leg, not a failure.
        return len([x for x in re.findall(r"LOG[0-3]\[.*", text)
                    if "No trusted certificates found" not in x])

    # -- smtp-source ---------------------------------------------------------
    def smtp_source(self, addr, port, size, conc, count, keep):
        cmd = [SMTP_SOURCE, "-s", str(conc), "-m", str(count), "-l", str(size),
               "-f", "bench@example.org", "-t", "sink@example.net",
               "-M", "bench.example.org"] + (["-d"] if keep else []) + [f"{addr}:{port}"]
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = t0 + (900 if not self.smoke else 120)
        while True:
            pid, st, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                p.kill()
                pid, st, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.002)
        wall = time.monotonic() - t0
        p.returncode = os.waitstatus_to_exitcode(st)
        out = p.stdout.read().decode(errors="replace")
        return wall, p.returncode, ru.ru_utime + ru.ru_stime, out, cmd

    # -- throughput ------------------------------------------------------------
    def load(self):
        say("== throughput: smtp-source, legs interleaved A B C (and D for new connections)")
        want = self.a.cases.split(",") if self.a.cases else None
        for (name, size, conc, keep, full, small) in CASES:
            if want is not None and f"{name}-c{conc}" not in want:
                continue
            count = self.a.messages or self.n(full, small)
            # Default stunnel (D) too where issue 10's LAN target names it.
            legs = "ABCD" if name == "1k-new" else "ABC"
            if self.a.legs:
                legs = "".join(x for x in legs if x in self.a.legs)
            for r in range(self.runs):
                for leg in legs:
                    tag = f"{name}-c{conc}-r{r}"
                    rec = {"case": name, "size": size, "conc": conc, "keep": keep,
                           "count": count, "leg": leg, "run": r, "ok": False,
                           "loadavg": open("/proc/loadavg").read().split()[0]}
                    p = None
                    try:
                        p, addr, port = self.leg_start(leg, SINK_PORTS["p256"],
                                                       self.p256["ca"], tag)
                        c0 = cpu_s(p.pid) if p else None
                        l0 = self.syslog_lines() if leg == "A" and self.syslog else None
                        s0 = self.sink_stats("p256")
                        wall, rc, ccpu, out, cmd = self.smtp_source(addr, port, size, conc,
                                                                    count, keep)
                        time.sleep(0.2)  # let the last sessions end (their cost counts)
                        s1 = self.sink_stats("p256")
                        if p:
                            rec["cpu"] = cpu_s(p.pid) - c0
                            st = status(p.pid)
                            rec["hwm_kb"] = st["VmHWM"]
                            rec["procs"] = st["Procs"]
                        got = int(s1["msgs"] - s0["msgs"])
                        rec.update(wall=wall, rc=rc, client_cpu=ccpu,
                                   sink_cpu=s1["cpu"] - s0["cpu"], sink_msgs=got,
                                   tls_full=s1["tls_full"] - s0["tls_full"],
                                   tls_resumed=s1["tls_resumed"] - s0["tls_resumed"],
                                   sink_conns=s1["conns"] - s0["conns"])
                        if l0 is not None:
                            rec["syslog_lines"] = self.syslog_lines() - l0
                        self.cmds.setdefault(f"load {name} c{conc}", " ".join(
                            cmd[:-1] + ["HOST:PORT"]))
                        bad = self.refused(leg, p)
                        if rc != 0 or got != count or bad:
                            self.fail(f"{tag} leg {leg}: smtp-source exit {rc}, sink got "
                                      f"{got}/{count} messages, {bad} refused/failed "
                                      f"sessions in the proxy log; {out.strip()[-300:]}")
                        else:
                            rec["ok"] = True
                    except Exception as e:  # one bad run must not hide the others
                        self.fail(f"{tag} leg {leg}: {e}")
                    finally:
                        self.leg_stop(leg, p)
                    self.res["load"].append(rec)
                    if rec["ok"]:
                        say(f"  {tag:18} {leg} {count / rec['wall']:9.1f} msg/s"
                            + (f"  proxy {1e6 * rec['cpu'] / count:8.1f} us/msg"
                               f"  hwm {rec['hwm_kb'] / 1024:6.1f} MiB" if p else "")
                            + f"  server conns {rec['sink_conns']:.0f}"
                            + f"  resumed {rec['tls_resumed']:.0f}/"
                              f"{rec['tls_full'] + rec['tls_resumed']:.0f}"
                            + f"  load {rec['loadavg']}"
                            + (f"  syslog lines {rec['syslog_lines']}"
                               if "syslog_lines" in rec else ""))

    # -- new TLS sessions per second ---------------------------------------------
    def handshakes(self):
        say("== new sessions per second: bclient conns (connect, 220, QUIT)")
        count = self.n(400, 30)
        conc = 10
        variants = [("p256", "ABC"), ("p256-noticket", "AB"), ("rsa", "AB")]
        for r in range(self.runs):
            for variant, legs in variants:
                sink = self.sinks[variant]
                for leg in legs:
                    tag = f"hs-{variant}-r{r}"
                    rec = {"variant": variant, "leg": leg, "run": r, "ok": False,
                           "count": count}
                    p = None
                    try:
                        p, addr, port = self.leg_start(leg, sink["port"], sink["pki"]["ca"], tag)
                        c0 = cpu_s(p.pid) if p else None
                        s0 = self.sink_stats(variant)
                        cmd = [os.path.join(self.tools, "bclient"), "conns", "--connect",
                               f"{addr}:{port}", "--concurrency", str(conc), "--count",
                               str(count), "--timeout", "300"]
                        self.cmds.setdefault("handshakes", " ".join(cmd[:3] + ["HOST:PORT"]
                                                                     + cmd[4:]))
                        out = subprocess.run(cmd, capture_output=True, text=True, timeout=320)
                        time.sleep(0.2)
                        s1 = self.sink_stats(variant)
                        kv = dict(x.split("=", 1) for x in out.stdout.split())
                        rec.update(rate=float(kv["rate"]), done=int(kv["done"]),
                                   failed=int(kv["failed"]),
                                   tls_full=s1["tls_full"] - s0["tls_full"],
                                   tls_resumed=s1["tls_resumed"] - s0["tls_resumed"],
                                   sink_cpu=s1["cpu"] - s0["cpu"])
                        if p:
                            rec["cpu"] = cpu_s(p.pid) - c0
                        if out.returncode != 0 or rec["failed"]:
                            self.fail(f"{tag} leg {leg}: {out.stdout.strip()} {out.stderr.strip()}")
                        else:
                            rec["ok"] = True
                    except Exception as e:
                        self.fail(f"{tag} leg {leg}: {e}")
                    finally:
                        self.leg_stop(leg, p)
                    self.res["hs"].append(rec)
                    if rec["ok"]:
                        say(f"  {tag:22} {leg} {rec['rate']:8.1f} sessions/s"
                            + (f"  proxy {1e6 * rec['cpu'] / count:8.1f} us/session"
                               if p else ""))

    # -- idle sessions -------------------------------------------------------------
    def idle_cap(self, leg, p):
        """How many idle sessions a leg can hold under RLIMIT_NOFILE: a proxy
        process holds 2 descriptors per session; starttlsd spreads sessions
        over its workers; stunnel caps its clients at 125/256 of its limit."""
        soft = self.nofile
        if leg == "B":
            return soft * 125 // 256 - 16
        workers = 1
        try:
            with open(p.log, errors="replace") as f:
                m = re.search(r"event=start .*\bworkers=(\d+)", f.read())
            if m:
                workers = max(1, int(m.group(1)))
        except OSError:
            pass
        # Workers share the load unevenly: keep 5 % headroom per worker.
        per = (soft - 64) // 2
        return per if workers == 1 else int(workers * per * 0.95)

    def idle(self):
        say("== idle sessions: bclient idle (greeted, past EHLO, then silent)")
        self.nofile = int(run_out(["bash", "-c", "ulimit -n"]) or 1024)
        for want in ([1000, 10000] if not self.smoke else [50]):
            runs = self.runs if (want < 10000 or self.a.idle_runs_large is None) \
                else self.a.idle_runs_large
            for r in range(runs):
                for leg in "AB":
                    tag = f"idle-{want}-r{r}"
                    rec = {"want": want, "leg": leg, "run": r, "ok": False}
                    p = None
                    try:
                        p, addr, port = self.leg_start(leg, SINK_PORTS["p256"],
                                                       self.p256["ca"], tag)
                        n = rec["n"] = min(want, self.idle_cap(leg, p))
                        bc = os.path.join(self.tools, "bclient")
                        # Warm up: TLS contexts, CA store, allocator arenas.
                        subprocess.run([bc, "conns", "--connect", f"{addr}:{port}",
                                        "--concurrency", "5", "--count", "20"],
                                       capture_output=True, timeout=60)
                        time.sleep(0.5)
                        base = status(p.pid)
                        cmd = [bc, "idle", "--connect", f"{addr}:{port}", "--count", str(n),
                               "--ramp", "100", "--timeout", "600"]
                        self.cmds.setdefault("idle", " ".join(cmd[:3] + ["HOST:PORT"]
                                                              + cmd[4:]))
                        c = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, text=True)
                        line = c.stdout.readline()
                        kv = dict(x.split("=", 1) for x in line.split()[1:])
                        time.sleep(1.0)
                        held = status(p.pid)
                        c.stdin.close()
                        rest = c.stdout.read()
                        c.wait(60)
                        kv2 = dict(x.split("=", 1) for x in rest.split()[1:])
                        idle_n = int(kv.get("idle", 0))
                        rec.update(idle=idle_n, failed=int(kv.get("failed", -1)),
                                   setup_s=float(kv.get("setup_s", 0)),
                                   still=int(kv2.get("still_open", -1)),
                                   base_kb=base["VmRSS"], rss_kb=held["VmRSS"],
                                   hwm_kb=held["VmHWM"], threads=held["Threads"],
                                   procs=held["Procs"])
                        if idle_n:
                            rec["per_b"] = (held["VmRSS"] - base["VmRSS"]) * 1024 / idle_n
                        if not line.startswith("ready") or rec["failed"] or rec["still"] != n:
                            self.fail(f"{tag} leg {leg}: {line.strip()} / {rest.strip()}")
                        else:
                            rec["ok"] = True
                    except Exception as e:
                        self.fail(f"{tag} leg {leg}: {e}")
                    finally:
                        self.leg_stop(leg, p)
                    self.res["idle"].append(rec)
                    if rec.get("per_b"):
                        say(f"  {tag:16} {leg} {rec['per_b'] / 1024:7.1f} KiB/session"
                            f"  rss {rec['rss_kb'] / 1024:7.1f} MiB  setup {rec['setup_s']:.1f} s")

    # -- latency -------------------------------------------------------------------
    def latency(self):
        say("== latency: bclient rtt (NOOP round trips), swaks sessions")
        sessions, rounds = self.n(20, 2), self.n(500, 50)
        for r in range(self.runs):
            for leg in "ABC":
                tag = f"lat-r{r}"
                rec = {"leg": leg, "run": r, "ok": False}
                p = None
                try:
                    p, addr, port = self.leg_start(leg, SINK_PORTS["p256"], self.p256["ca"], tag)
                    cmd = [os.path.join(self.tools, "bclient"), "rtt", "--connect",
                           f"{addr}:{port}", "--sessions", str(sessions), "--rounds",
                           str(rounds), "--warmup", "20", "--timeout", "120"]
                    self.cmds.setdefault("rtt", " ".join(cmd[:3] + ["HOST:PORT"] + cmd[4:]))
                    out = subprocess.run(cmd, capture_output=True, text=True, timeout=150)
                    if out.returncode != 0:
                        raise RuntimeError(out.stderr.strip())
                    rec.update({k: float(v) for k, v in
                                (x.split("=", 1) for x in out.stdout.split())})
                    # swaks: a whole single-message session, wall clock.
                    walls = []
                    for _ in range(self.n(3, 1)):
                        scmd = ["swaks", "--server", f"{addr}:{port}", "--from",
                                "bench@example.org", "--to", "sink@example.net",
                                "--helo", "bench.example.org", "--body", "bench"]
                        self.cmds.setdefault("swaks", " ".join(scmd[:1] + ["--server", "HOST:PORT"]
                                                               + scmd[3:]))
                        t0 = time.monotonic()
                        s = subprocess.run(scmd, capture_output=True, timeout=60)
                        walls.append(time.monotonic() - t0)
                        if s.returncode != 0:
                            raise RuntimeError("swaks failed: " + s.stdout.decode()[-300:])
                    rec["swaks_s"] = statistics.median(walls)
                    rec["ok"] = True
                except Exception as e:
                    self.fail(f"{tag} leg {leg}: {e}")
                finally:
                    self.leg_stop(leg, p)
                self.res["lat"].append(rec)
                if rec["ok"]:
                    say(f"  {tag:8} {leg} rtt p50 {rec['rtt_p50_us']:7.1f} us  p99 "
                        f"{rec['rtt_p99_us']:7.1f} us  setup p50 {rec['setup_p50_us']:8.1f} us"
                        f"  swaks {1000 * rec['swaks_s']:.0f} ms")

    # -- in front of a real Postfix ------------------------------------------------
    def postfix_start(self):
        d = os.path.join(self.tmp, "postfix")
        for sub in ("etc", "queue", "data"):
            os.makedirs(os.path.join(d, sub))
        shutil.chown(os.path.join(d, "data"), "postfix")
        with open(os.path.join(d, "etc/main.cf"), "w") as f:
            f.write(f"""compatibility_level = 3.6
config_directory = {d}/etc
queue_directory = {d}/queue
data_directory = {d}/data
syslog_name = postfix-bench
maillog_file = {d}/maillog
maillog_file_prefixes = {self.tmp}
inet_protocols = ipv4
inet_interfaces = {WAN}
myhostname = mx.example.net
mydomain = example.net
mydestination =
mynetworks = 127.0.0.0/8
relay_domains =
smtpd_relay_restrictions = permit_mynetworks, reject
default_transport = discard:bench
relay_transport = discard:bench
local_transport = discard:bench
smtpd_peername_lookup = no
smtpd_tls_security_level = may
smtpd_tls_cert_file = {self.p256['crt']}
smtpd_tls_key_file = {self.p256['key']}
smtpd_tls_loglevel = 0
default_process_limit = 200
alias_maps =
alias_database =
biff = no
""")
        with open(os.path.join(d, "etc/master.cf"), "w") as f:
            f.write(f"""{WAN}:{PORT_POSTFIX} inet n - n - - smtpd
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
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
postlog    unix-dgram n  -       n       -       1       postlogd
""")
        self.pf = d
        log = os.path.join(self.logs, "postfix-start.log")
        for verb in ("set-permissions", "check", "start"):
            with open(log, "ab") as f:
                r = subprocess.run(["postfix", "-c", f"{d}/etc", verb], stdout=f,
                                   stderr=subprocess.STDOUT, timeout=60)
            if r.returncode != 0 and verb != "set-permissions":
                raise RuntimeError(f"postfix {verb} failed, see {log}")
        wait_listen(None, WAN, PORT_POSTFIX, "postfix", timeout=20)

    def postfix_cpu(self):
        with open(f"{self.pf}/queue/pid/master.pid") as f:
            return cpu_s(int(f.read().split()[0]))

    def postfix_drain(self, timeout=30):
        """Wait until Postfix has delivered (discarded) everything queued."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            busy = 0
            for q in ("maildrop", "incoming", "active", "deferred"):
                for _, _, files in os.walk(f"{self.pf}/queue/{q}"):
                    busy += len(files)
            if not busy:
                return True
            time.sleep(0.05)
        return False

    def postfix_stop(self):
        if getattr(self, "pf", None):
            subprocess.run(["postfix", "-c", f"{self.pf}/etc", "stop"],
                           capture_output=True, timeout=60)
            self.pf = None

    def postfix(self):
        say("== in front of a real Postfix (smtpd with STARTTLS, discard transport)")
        try:
            self.postfix_start()
        except Exception as e:
            self.fail(f"postfix: {e}")
            return
        conc = 10
        loads = [("new", False, self.n(600, 10)), ("keep", True, self.n(1500, 20))]
        try:
            for r in range(self.runs):
                for load, keep, count in loads:
                    for leg in "ABC":
                        tag = f"postfix-{load}-r{r}"
                        rec = {"leg": leg, "run": r, "ok": False, "count": count,
                               "conc": conc, "load": load}
                        p = None
                        try:
                            p, addr, port = self.leg_start(leg, PORT_POSTFIX, self.p256["ca"], tag)
                            c0 = cpu_s(p.pid) if p else None
                            f0 = self.postfix_cpu()
                            wall, rc, ccpu, out, cmd = self.smtp_source(
                                addr, port, 1 * KIB, conc, count, keep)
                            time.sleep(0.2)
                            if p:
                                rec["cpu"] = cpu_s(p.pid) - c0
                            if not self.postfix_drain():
                                self.fail(f"{tag} leg {leg}: Postfix queue not empty after 30 s")
                            rec["pf_cpu"] = self.postfix_cpu() - f0
                            rec.update(wall=wall, rc=rc)
                            self.cmds.setdefault(f"postfix load {load}",
                                                 " ".join(cmd[:-1] + ["HOST:PORT"]))
                            bad = self.refused(leg, p)
                            if rc != 0 or bad:
                                self.fail(f"{tag} leg {leg}: smtp-source exit {rc}, {bad} "
                                          f"refused/failed sessions; {out.strip()[-300:]}")
                            else:
                                rec["ok"] = True
                        except Exception as e:
                            self.fail(f"{tag} leg {leg}: {e}")
                        finally:
                            self.leg_stop(leg, p)
                        self.res["postfix"].append(rec)
                        if rec["ok"]:
                            say(f"  {tag:17} {leg} {count / rec['wall']:8.1f} msg/s")
        finally:
            self.postfix_stop()

    # -- WAN: a delaying relay in front of the sink (issue 10) -------------------
    def relay_stats(self):
        try:
            os.unlink(self.relay["stats"])
        except FileNotFoundError:
            pass
        self.relay["p"].send_signal(signal.SIGUSR1)
        end = time.monotonic() + 5
        while time.monotonic() < end:
            try:
                with open(self.relay["stats"]) as f:
                    return {k: float(v) for k, v in
                            (kv.split("=", 1) for kv in f.read().split())}
            except FileNotFoundError:
                time.sleep(0.01)
        raise RuntimeError("the delaying relay did not report its counters")

    def wan_rtt(self, sessions, rounds):
        """The relay path's real round-trip time: NOOP round trips to the
        sink through the relay (a TCP connect time measures nothing here: the
        relay's kernel completes the handshake locally), and the time from
        connect() to the greeting, which the relay makes 2 RTT as on a real
        path (handshake, then the greeting on its way back)."""
        cmd = [os.path.join(self.tools, "bclient"), "rtt", "--connect",
               f"{WAN}:{PORT_RELAY}", "--sessions", str(sessions), "--rounds", str(rounds),
               "--warmup", "2", "--timeout", "120"]
        self.cmds.setdefault("wan rtt", " ".join(cmd))
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=150)
        if out.returncode != 0:
            raise RuntimeError("bclient rtt through the relay: " + out.stderr.strip())
        return {k: float(v) for k, v in (x.split("=", 1) for x in out.stdout.split())}

    def wan(self):
        """Legs A B D C behind the relay. Per run, mode and leg: a fresh proxy
        (starttlsd with an empty state directory: no parked connection, no
        ticket, no pin), then the cold session(s), then the warm ones, one
        session at a time, timed one smtp-source call each."""
        d_ms = self.a.wan_delay_ms if self.a.wan_delay_ms is not None else self.n(20, 5)
        say(f"== WAN: a relay adding {d_ms:g} ms each way in front of the sink "
            f"(legs A B D C, cold then warm)")
        t0 = time.monotonic()
        busy0, load0 = machine_busy(), open("/proc/loadavg").read().split()[:3]
        ru0 = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        stats = os.path.join(self.tmp, "relay.stats")
        cmd = [os.path.join(self.tools, "delay"), "--listen", f"{WAN}:{PORT_RELAY}",
               "--connect", f"{WAN}:{SINK_PORTS['p256']}", "--delay-ms", f"{d_ms:g}",
               "--stats", stats]
        self.cmds["wan relay"] = " ".join(cmd).replace(self.tmp, "$TMP")
        # The relay is the network: it must not wait for a CPU behind the legs
        # it carries (on a busy machine its timers would fire late), so it runs
        # at nice -10; it uses about 1 % of a CPU.
        rp = start(cmd, os.path.join(self.logs, "relay.log"), stdout=subprocess.PIPE,
                   preexec_fn=relay_priority)
        if rp.stdout.readline().strip() != b"ready":
            self.fail("wan: the delaying relay did not start")
            return
        self.relay = {"p": rp, "stats": stats}
        info = self.res["wan_info"]
        binary = os.path.realpath(self.starttlsd)
        if binary.startswith(TOP + "/"):
            binary = binary[len(TOP) + 1:]
        info.update(delay_ms=d_ms, runs=self.runs, git=self.git, binary=binary,
                    when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    starttlsd=(run_out([self.starttlsd, "-V"]) or "?").splitlines()[0])
        sink_c0 = cpu_s(self.sinks["p256"]["p"].pid)
        # (mode, -d, [(phase, sessions, messages per session)])
        modes = [("new", False, [("cold", 1, 1), ("warm", self.n(9, 2), 1)]),
                 ("keep", True, [("cold", 1, self.n(10, 2)), ("warm", 1, self.n(10, 2))])]
        info["modes"] = [[m, k, ph] for m, k, ph in modes]
        try:
            rtt_s, rtt_r = self.n(5, 1), self.n(20, 5)
            info["rtt_start"] = self.wan_rtt(rtt_s, rtt_r)
            say(f"  relay path: RTT p50 {info['rtt_start']['rtt_p50_us'] / 1000:.2f} ms, "
                f"connect to greeting {info['rtt_start']['setup_p50_us'] / 1000:.1f} ms")
            for r in range(self.runs):
                for mode, keep, phases in modes:
                    for leg in "ABDC":
                        self.wan_one(r, mode, keep, phases, leg)
            info["rtt_end"] = self.wan_rtt(rtt_s, rtt_r)
            say(f"  relay path: RTT p50 {info['rtt_end']['rtt_p50_us'] / 1000:.2f} ms at the end")
        except Exception as e:
            self.fail(f"wan: {e}")
        finally:
            try:
                info["relay"] = self.relay_stats()
            except Exception as e:
                self.fail(f"wan: {e}")
            stop(rp)
            info["relay_cpu"] = info.get("relay", {}).get("utime", 0) + \
                info.get("relay", {}).get("stime", 0)
            info["elapsed"] = time.monotonic() - t0
            b1 = machine_busy()
            tot = max(1, b1[1] - busy0[1])
            info["busy"] = (b1[0] - busy0[0]) / tot
            info["steal"] = (b1[2] - busy0[2]) / tot
            info["load0"], info["load1"] = load0, open("/proc/loadavg").read().split()[:3]
            ru1 = [resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                   resource.RUSAGE_CHILDREN)]
            ours = sum(b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime
                       for a, b in zip(ru0, ru1))
            ours += cpu_s(self.sinks["p256"]["p"].pid) - sink_c0
            # (the relay was reaped by stop(): its CPU is in RUSAGE_CHILDREN)
            info["other_s"] = max(0.0, (b1[0] - busy0[0]) / CLK - ours)
            info["nproc"] = os.cpu_count() or 1

    def wan_one(self, r, mode, keep, phases, leg):
        tag = f"wan-{mode}-r{r}"
        rec = {"mode": mode, "keep": keep, "leg": leg, "run": r, "ok": False, "phases": []}
        p = None
        try:
            state = None
            if leg == "A":
                state = os.path.join(self.tmp, f"state-{tag}")
                os.makedirs(state)
            p, addr, port = self.leg_start(leg, PORT_RELAY, self.p256["ca"], tag, state=state)
            c0 = cpu_s(p.pid) if p else None
            bad = []
            for phase, sessions, per in phases:
                s0 = self.sink_stats("p256")
                walls = []
                for _ in range(1 if not keep else sessions):
                    # new: one call, `sessions` messages, each on a connection of
                    # its own; keep (-d): one call per session, `per` messages.
                    count = sessions if not keep else per
                    wall, rc, ccpu, out, cmd = self.smtp_source(addr, port, 1 * KIB, 1,
                                                                count, keep)
                    walls.append(wall)
                    self.cmds.setdefault(f"wan {mode} {phase}",
                                         " ".join(cmd[:-1] + ["HOST:PORT"]))
                    if rc != 0:
                        bad.append(f"{phase}: smtp-source exit {rc}; {out.strip()[-300:]}")
                s1 = self.sink_stats("p256")
                msgs = sessions * per
                got = int(s1["msgs"] - s0["msgs"])
                ph = {"phase": phase, "sessions": sessions, "msgs": msgs, "wall": sum(walls),
                      "got": got, "conns": int(s1["conns"] - s0["conns"]),
                      "tls_full": int(s1["tls_full"] - s0["tls_full"]),
                      "tls_resumed": int(s1["tls_resumed"] - s0["tls_resumed"])}
                rec["phases"].append(ph)
                if got != msgs:
                    bad.append(f"{phase}: the sink got {got}/{msgs} messages")
                tls = ph["tls_full"] + ph["tls_resumed"]
                # Every proxy leg must really use TLS to the server, the direct one never.
                if leg == "C" and tls:
                    bad.append(f"{phase}: {tls} TLS sessions on the plaintext leg")
                if leg != "C" and ph["conns"] and not tls:
                    bad.append(f"{phase}: no TLS on {ph['conns']} server connections")
            if p:
                rec["cpu"] = cpu_s(p.pid) - c0
            n_bad = self.refused(leg, p)
            if n_bad:
                bad.append(f"{n_bad} refused/failed sessions in the proxy log")
            if bad:
                self.fail(f"{tag} leg {leg}: " + "; ".join(bad))
            else:
                rec["ok"] = True
        except Exception as e:
            self.fail(f"{tag} leg {leg}: {e}")
        finally:
            self.leg_stop(leg, p)
        self.res["wan"].append(rec)
        if rec["ok"]:
            say(f"  {tag:12} {leg} " + "  ".join(
                f"{ph['phase']} {1000 * ph['wall'] / ph['msgs']:7.1f} ms/msg "
                f"({ph['conns']} conn, {ph['tls_full']}+{ph['tls_resumed']} tls)"
                for ph in rec["phases"]))

    # -- everything ------------------------------------------------------------------
    def start_syslog(self):
        """A syslog receiver on a private /dev/log for starttlsd (leg A), as a
        syslog daemon takes its lines on a real host: the proxy pays its send
        per line (without one, a line costs it nothing). The lines land in
        $TMP/syslog.out; the receiver's own CPU is not the proxy's."""
        self.syslog = None
        if self.a.no_syslog:
            return
        self.fdev = os.path.join(self.tmp, "fakedev")
        os.makedirs(self.fdev)
        os.chmod(self.fdev, 0o755)
        out = os.path.join(self.tmp, "syslog.out")
        p = start([sys.executable, os.path.join(TOP, "tests/peers/syslogd.py"),
                   os.path.join(self.fdev, "log"), out],
                  os.path.join(self.logs, "syslogd.log"), stdout=subprocess.PIPE)
        if p.stdout.readline().strip() != b"ready":
            raise RuntimeError("the syslog receiver did not start")
        self.syslog = {"p": p, "out": out}

    def syslog_lines(self):
        try:
            with open(self.syslog["out"], "rb") as f:
                return sum(1 for _ in f)
        except (OSError, TypeError):
            return None

    def run(self):
        self.certs()
        self.start_sinks()
        self.start_syslog()
        sections = self.a.sections.split(",")
        try:
            for s in ("load", "handshakes", "idle", "latency", "postfix", "wan"):
                if s in sections:
                    getattr(self, s)()
        finally:
            self.sink_final = {k: self.sink_stats(k) for k in self.sinks}
            for s in self.sinks.values():
                stop(s["p"])
            if getattr(self, "syslog", None):
                self.syslog_n = self.syslog_lines()
                stop(self.syslog["p"])
        self.elapsed = time.monotonic() - self.t0
        f1 = foreign_cpu()
        other = {}
        for pid, (name, c) in f1.items():
            c0 = self.foreign0.get(pid, (name, 0.0))[1] if pid in self.foreign0 else 0.0
            if c - c0 > 0:
                other[name] = other.get(name, 0.0) + c - c0
        self.other_cpu = sorted(other.items(), key=lambda x: -x[1])
        b1 = machine_busy()
        self.busy = (b1[0] - self.busy0[0]) / max(1, b1[1] - self.busy0[1])
        self.steal = (b1[2] - self.busy0[2]) / max(1, b1[1] - self.busy0[1])
        # Everything the machine did minus what the bench's own processes
        # did (this script, and every child it waited for, sinks and proxies
        # included; Postfix daemons, not our children, measured per run).
        busy_s = (b1[0] - self.busy0[0]) / CLK
        ru = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        ours = sum(r.ru_utime + r.ru_stime for r in ru)
        ours += sum(r.get("pf_cpu", 0) for r in self.res["postfix"])
        self.other_s = max(0.0, busy_s - ours)
        self.info = machine_info(self)


# ---- the report --------------------------------------------------------------

def fmt(x, nd=0, none="—"):
    if x is None:
        return none
    if nd == 0:
        return f"{x:,.0f}"
    return f"{x:,.{nd}f}"


def rfmt(x, threshold):
    """A ratio with 2 decimals, 3 where rounding would hide which side of the
    threshold it is on."""
    if x is None:
        return "—"
    if round(x, 2) == threshold and x != threshold:
        return f"{x:.3f}"
    return f"{x:.2f}"


def spread(xs, scale=1.0, nd=0):
    xs = [x * scale for x in xs if x is not None]
    if not xs:
        return "—"
    m = statistics.median(xs)
    if len(xs) < 2:
        return fmt(m, nd)
    return f"{fmt(m, nd)} ({fmt(min(xs), nd)}–{fmt(max(xs), nd)})"


def machine_info(b):
    info = {}
    info["nproc"] = run_out(["nproc"])
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    fam = run_out(["bash", "-c", "lscpu | sed -n 's/^CPU family: *//p;s/^Model: *//p' | paste -sd/"])
    info["cpu"] = f"{model} (family/model {fam})"
    info["virt"] = run_out(["bash", "-c", "lscpu | sed -n 's/^Hypervisor vendor: *//p'"]) or "none"
    with open("/proc/meminfo") as f:
        info["mem"] = f"{int(f.readline().split()[1]) // 1024:,} MiB"
    info["kernel"] = run_out(["uname", "-r"])
    info["os"] = run_out(["bash", "-c", ". /etc/os-release; echo $PRETTY_NAME"])
    info["nofile"] = str(getattr(b, "nofile", run_out(["bash", "-c", "ulimit -n"])))
    info["starttlsd"] = run_out([b.starttlsd, "-V"]).splitlines()[0] if run_out(
        [b.starttlsd, "-V"]) else "?"
    info["git"] = b.git if re.match(r"^[0-9a-f]+(-dirty)?$", b.git) else "?"
    st = run_out(["stunnel", "-version"]).splitlines()
    info["stunnel"] = "; ".join(x.strip() for x in st if re.search(r"stunnel \d|OpenSSL", x))
    info["boringssl"] = run_out([os.path.join(b.tools, "sink"), "--version"]).replace("sink ", "")
    dq = lambda p: run_out(["dpkg-query", "-W", "-f=${Version}", p])
    info["pkgs"] = (f"android-libboringssl {dq('android-libboringssl')}, libev4 {dq('libev4')}, "
                    f"stunnel4 {dq('stunnel4')}, postfix {dq('postfix')} (smtp-source), "
                    f"swaks {dq('swaks')}")
    info["cc"] = run_out(["bash", "-c", "${CC:-gcc} --version | head -1"])
    info["load"] = open("/proc/loadavg").read().split()[:3]
    info["crypto"] = crypto_speed() if not getattr(b, "smoke", False) else ""
    return info


def crypto_speed():
    """Signature verification speed of both TLS libraries on this machine: a
    full handshake's client side verifies two signatures (CertificateVerify,
    and the chain)."""
    out = []
    # (bssl-tool's filter picks whole groups: "RSA 2048" would run RSA 4096 too.)
    bs = run_out(["bssl-tool", "speed", "-timeout", "1", "-filter", "ECDSA P-256"])
    for m in re.finditer(r"Did \d+ (ECDSA P-256 verify) operations in .*?\(([\d.]+) ops/sec\)",
                         bs):
        out.append(f"BoringSSL {m.group(1)}: {float(m.group(2)):,.0f}/s")
    ossl = run_out(["bash", "-c", "openssl speed -seconds 1 ecdsap256 rsa2048 2>/dev/null"])
    m = re.search(r"256 bits ecdsa \(nistp256\)\s+\S+\s+\S+\s+\S+\s+([\d.]+)", ossl)
    if m:
        out.append(f"OpenSSL 3 (stunnel's) ECDSA P-256 verify: {float(m.group(1)):,.0f}/s")
    m = re.search(r"rsa 2048 bits\s+\S+\s+\S+\s+\S+\s+([\d.]+)", ossl)
    if m:
        out.append(f"OpenSSL 3 RSA 2048 verify: {float(m.group(1)):,.0f}/s")
    return "; ".join(out)


WAN_MODE_TEXT = {"new": "1 KiB, new connection per message",
                 "keep": "1 KiB, one connection per session (-d)"}


def wan_summary(b):
    """The WAN section's figures: per mode and leg, ms per message of the cold
    phase, the warm phase and both together ("all"), medians over the runs,
    and the round trips added over the direct leg C (per message)."""
    R = b.res
    info = R.get("wan_info") or {}
    rows = [r for r in R.get("wan", []) if r.get("ok")]
    rtts = [info[k]["rtt_p50_us"] / 1000 for k in ("rtt_start", "rtt_end") if k in info]
    out = {"rtt_ms": statistics.mean(rtts) if rtts else None, "info": info, "m": {}}
    for mode, keep, phases in info.get("modes", []):
        for leg in "ABDC":
            rr = [r for r in rows if r["mode"] == mode and r["leg"] == leg]
            if not rr:
                continue
            x = {"runs": len(rr), "keep": keep,
                 "per_session": phases[0][2]}
            for ph in ("cold", "warm", "all"):
                if ph == "all":
                    v = [sum(p["wall"] for p in r["phases"]) /
                         sum(p["msgs"] for p in r["phases"]) * 1000 for r in rr]
                    sel_ = [p for r in rr for p in r["phases"]]
                else:
                    sel_ = [p for r in rr for p in r["phases"] if p["phase"] == ph]
                    v = [p["wall"] / p["msgs"] * 1000 for p in sel_]
                x[ph] = v
                x[ph + "_conns"] = sum(p["conns"] for p in sel_) / len(rr)
                x[ph + "_sessions"] = sum(p["sessions"] for p in sel_) / len(rr)
                x[ph + "_full"] = sum(p["tls_full"] for p in sel_) / len(rr)
                x[ph + "_resumed"] = sum(p["tls_resumed"] for p in sel_) / len(rr)
            out["m"][(mode, leg)] = x
    rtt = out["rtt_ms"]
    for (mode, leg), x in out["m"].items():
        c = out["m"].get((mode, "C"))
        for ph in ("cold", "warm", "all"):
            x[ph + "_add"] = ((median(x[ph]) - median(c[ph])) / rtt
                              if c and rtt and leg != "C" else None)
    return out


def report(b):
    R = b.res
    out = []
    w = out.append
    load = [r for r in R["load"] if r.get("ok")]

    def sel(rows, **kw):
        return [r for r in rows if all(r.get(k) == v for k, v in kw.items())]

    def agg(case, conc, leg):
        rows = sel(load, case=case, conc=conc, leg=leg)
        if not rows:
            return None
        size = rows[0]["size"]
        return {
            "n": len(rows),
            "rate": [r["count"] / r["wall"] for r in rows],
            "mbs": [r["count"] * size / r["wall"] / 1e6 for r in rows],
            "cpu": [r["cpu"] / r["count"] for r in rows] if leg != "C" else [],
            "hwm": [r["hwm_kb"] / 1024 for r in rows] if leg != "C" else [],
            "sink": [r["sink_cpu"] / r["count"] for r in rows],
            "client": [r["client_cpu"] / r["count"] for r in rows],
            "resumed": sum(r["tls_resumed"] for r in rows),
            "full": sum(r["tls_full"] for r in rows),
        }

    cases = []
    for (name, size, conc, keep, full, small) in CASES:
        cases.append((name, conc, {leg: agg(name, conc, leg) for leg in "ABCD"}))

    def med(a, k):
        return median(a[k]) if a and a[k] else None

    def ratio(x, y):
        return x / y if x is not None and y else None

    # ---- targets
    targets = []

    def target(what, value, ok):
        targets.append((what, value, "met" if ok else ("**not met**" if ok is not None
                                                       else "not measured")))

    def cget(name, conc):
        for n_, c_, a in cases:
            if n_ == name and c_ == conc:
                return a
        return {}

    for conc in (10, 100):
        a = cget("1k-new", conc)
        ra, rb = med(a.get("A"), "rate"), med(a.get("B"), "rate")
        ca, cb = med(a.get("A"), "cpu"), med(a.get("B"), "cpu")
        r1, r2 = ratio(ra, rb), ratio(ca, cb)
        target(f"1 KiB, new connection per message, {conc} sessions: ≥ 3 × stunnel's msgs/s",
               f"{rfmt(r1, 3)} ×", r1 >= 3 if r1 else None)
        target(f"1 KiB, new connection per message, {conc} sessions: ≤ 0.2 × stunnel's CPU/msg",
               f"{rfmt(r2, 0.2)} ×", r2 <= 0.2 if r2 else None)
    a10 = cget("1k-new", 10)
    rd = ratio(med(a10.get("A"), "rate"), med(a10.get("D"), "rate"))
    target("1 KiB, new connection per message, 10 sessions: ≥ 3 × default stunnel's msgs/s "
           "(issue 10)", f"{rfmt(rd, 3)} ×", rd >= 3 if rd else None)
    ca10 = med(a10.get("A"), "cpu")
    cpm = 1e6 * ca10 if ca10 is not None else None
    target("1 KiB, new connection per message, 10 sessions: proxy CPU ≤ 200 µs per message "
           "(issue 10)", f"{fmt(cpm)} µs", cpm <= 200 if cpm is not None else None)
    r10 = med(cget("1k-new", 10).get("A"), "rate")
    r100 = med(cget("1k-new", 100).get("A"), "rate")
    c10 = med(cget("1k-new", 10).get("A"), "cpu")
    c100 = med(cget("1k-new", 100).get("A"), "cpu")
    d, dc = ratio(r100, r10), ratio(c100, c10)
    target("1 KiB, new connection per message: starttlsd at 100 sessions within 10 % of 10 "
           "(msgs/s no more than 10 % lower, CPU/msg no more than 10 % higher)",
           f"msgs/s {rfmt(d, 0.9)} ×, CPU/msg {rfmt(dc, 1.1)} × "
           f"({fmt(r100)} vs {fmt(r10)} msgs/s)",
           d >= 0.9 and dc <= 1.1 if d and dc else None)
    for conc in (1, 10, 100):
        a = cget("1k-keep", conc)
        r1 = ratio(med(a.get("A"), "rate"), med(a.get("B"), "rate"))
        target(f"1 KiB, one connection per session (-d), {conc} session{'s' if conc > 1 else ''}:"
               " ≥ 1.5 × stunnel's msgs/s", f"{rfmt(r1, 1.5)} ×", r1 >= 1.5 if r1 else None)
    for conc in (1, 10, 100):
        a = cget("1m-keep", conc)
        r1 = ratio(med(a.get("A"), "mbs"), med(a.get("B"), "mbs"))
        target(f"1 MiB, one connection per session, {conc} session{'s' if conc > 1 else ''}: "
               "≥ 1.5 × stunnel's MB/s",
               f"{rfmt(r1, 1.5)} × ({fmt(med(a.get('A'), 'mbs'))} vs "
               f"{fmt(med(a.get('B'), 'mbs'))} MB/s)", r1 >= 1.5 if r1 else None)
    idle = [r for r in R["idle"] if r.get("ok")]
    for want in sorted({r["want"] for r in idle}):
        rows = sel(idle, want=want, leg="A")
        if not rows:
            continue
        per = median([r["per_b"] for r in rows]) / 1024
        n = min(r["n"] for r in rows)
        target(f"idle sessions ({n:,}): ≤ 20 KiB RSS each", f"{per:.1f} KiB", per <= 20)
        if want >= 10000:
            tot = median([r["rss_kb"] for r in rows]) / 1024
            est = (median([r["base_kb"] for r in rows]) + per * 10000) / 1024
            target("10,000 idle sessions in ≤ 200 MB", f"{tot:.0f} MiB at {n:,} sessions"
                   + (f" (≈ {est:.0f} MiB at 10,000)" if n < 10000 else ""),
                   max(tot, est) * 1.048576 <= 200)
    pf = [r for r in R["postfix"] if r.get("ok")]
    pfrate = {}
    for load, text in (("new", "new connection per message"),
                       ("keep", "one connection per session")):
        pa = median([r["count"] / r["wall"] for r in sel(pf, leg="A", load=load)])
        pc = median([r["count"] / r["wall"] for r in sel(pf, leg="C", load=load)])
        pfrate[load] = pc
        pr = ratio(pa, pc)
        target(f"in front of a real Postfix ({text}): ≥ 0.9 × the direct rate",
               f"{rfmt(pr, 0.9)} × ({fmt(pa)} vs {fmt(pc)} msgs/s)",
               pr >= 0.9 if pr else None)
    lat = [r for r in R["lat"] if r.get("ok")]
    la = median([r["rtt_p50_us"] for r in sel(lat, leg="A")])
    lc = median([r["rtt_p50_us"] for r in sel(lat, leg="C")])
    add = la - lc if la is not None and lc is not None else None
    target("added latency per command round trip ≤ 100 µs at p50", f"{fmt(add)} µs",
           add <= 100 if add is not None else None)
    ws = wan_summary(b)
    wa = ws["m"].get(("new", "A"), {})
    wrtt = f"RTT {fmt(ws['rtt_ms'], 1)} ms" if ws["rtt_ms"] else "RTT —"
    wan_targets = []

    def wtarget(what, key, ok_fn):
        v = wa.get(key)
        ok = ok_fn(v) if v is not None else None
        wan_targets.append((what, f"{v:+.2f} round trips per message" if v is not None
                            else "—", ok))
        target(f"WAN (issue 10; {wrtt}), {what}",
               f"{v:+.2f} round trips per message" if v is not None else "—", ok)

    wtarget("new connection per message, 10 messages in a row to one destination: "
            "starttlsd adds ≤ +0.5 round trips per message over direct", "all_add",
            lambda v: v <= 0.5)
    wtarget("new connection per message, cold (the first session, fresh proxy): "
            "starttlsd adds ≤ +3 round trips", "cold_add", lambda v: v <= 3)
    wtarget("new connection per message, warm (the following sessions): starttlsd "
            "faster than direct (< 0 round trips added)", "warm_add", lambda v: v < 0)

    info = b.info
    w("# Performance\n")
    w("Generated by `make bench` (tests/bench/run.sh → tests/bench/bench.py); "
      "do not edit by hand, rerun it.\n")
    w(f"Run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
      f"{b.runs} interleaved run{'s' if b.runs > 1 else ''} per figure "
      f"(legs A B C A B C …), medians shown, (min–max) where it matters; "
      f"the whole bench took {b.elapsed / 60:.1f} minutes.\n")
    if getattr(b, "smoke", False):
        w("**Smoke run** (`make bench-smoke`): tiny loads, one run. These figures only show "
          "that every part of the bench still works; they measure nothing.\n")
    w("- **A** starttlsd, smarthost mode (`--upstream`), its default process model "
      f"({b.a_model}), STARTTLS negotiated per session")
    w("- **B** stunnel4 in client mode, `protocol = smtp` (its own STARTTLS dance), "
      "chain and host name verified")
    w("- **C** plaintext, the client straight to the sink (the floor)")
    if ws["m"]:
        w("- **D** (WAN section only) stunnel4 in client mode, `protocol = smtp`, its "
          "default configuration: no chain or host name verification")
    w("")
    if b.failures:
        w(f"**{len(b.failures)} run(s) failed** and are left out of the figures; "
          "see [Failures](#failures).\n")

    w("## Targets\n")
    w("| target (issues 6, 10) | measured (A = starttlsd) | |")
    w("| --- | --- | --- |")
    for what, val, ok in targets:
        w(f"| {what} | {val} | {ok} |")
    w("")

    w("## Throughput: smtp-source through each leg\n")
    w("The destination is the bench's own sink (tests/bench/sink.c: BoringSSL, epoll, one "
      "thread), ECDSA P-256 certificate from tests/peers/mkcerts.sh, TLS session tickets "
      "on (as Postfix and most servers). CPU is the proxy's user+system time over the "
      "run, all its processes and threads (starttlsd: master and workers), divided by "
      "the messages; peak RSS is VmHWM summed over those processes, the proxy started "
      "fresh for each run. MB/s counts message payload (10⁶ bytes). "
      "“resumed” is the share of upstream TLS sessions the sink saw resumed.\n")
    w("| load | sessions | leg | msgs/s | MB/s | proxy CPU µs/msg | proxy peak RSS MiB "
      "| sink CPU µs/msg | resumed |")
    w("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, conc, a in cases:
        for leg in "ABCD":
            x = a[leg]
            if x is None and leg == "D":
                continue  # leg D runs only for new connections per message
            if x is None:
                w(f"| {CASE_TEXT[name]} | {conc} | {leg} {LEG_NAME[leg]} | failed | | | | | |")
                continue
            tot = x["full"] + x["resumed"]
            res = f"{100 * x['resumed'] / tot:.0f} %" if leg != "C" and tot else "—"
            w(f"| {CASE_TEXT[name]} | {conc} | {leg} {LEG_NAME[leg]} | {spread(x['rate'])} | "
              f"{fmt(med(x, 'mbs'), 1)} | {spread(x['cpu'], 1e6)} | {fmt(med(x, 'hwm'), 1)} | "
              f"{fmt(med(x, 'sink') * 1e6 if med(x, 'sink') else None)} | {res} |")
    w("")
    w("Ratios (medians):\n")
    w("| load | sessions | A/B msgs/s | A/D msgs/s | A/C msgs/s | A/B CPU per msg |")
    w("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, conc, a in cases:
        A, B, C, D = a["A"], a["B"], a["C"], a["D"]
        w(f"| {CASE_TEXT[name]} | {conc} | {fmt(ratio(med(A, 'rate'), med(B, 'rate')), 2)} | "
          f"{fmt(ratio(med(A, 'rate'), med(D, 'rate')), 2)} | "
          f"{fmt(ratio(med(A, 'rate'), med(C, 'rate')), 2)} | "
          f"{fmt(ratio(med(A, 'cpu'), med(B, 'cpu')), 2)} |")
    w("")

    # sink ceiling
    w("### The sink's ceiling\n")
    w("The sink reports its own CPU (getrusage) on SIGUSR1; one thread, so its ceiling is "
      "1 / (its CPU per message) on one core. It must stay well above what the legs reach, "
      "or the sink, not the proxy, is what is measured.\n")
    w("| load | sessions | leg | sink CPU µs/msg | sink ceiling msgs/s | reached msgs/s |")
    w("| --- | ---: | --- | ---: | ---: | ---: |")
    for name, conc, a in cases:
        for leg in "ABC":
            x = a[leg]
            if not x:
                continue
            s = med(x, "sink")
            w(f"| {CASE_TEXT[name]} | {conc} | {leg} | {fmt(s * 1e6 if s else None)} | "
              f"{fmt(1 / s if s else None)} | {fmt(med(x, 'rate'))} |")
    w("")

    # handshakes
    hs = [r for r in R["hs"] if r.get("ok")]
    w("## New TLS sessions per second\n")
    w("`bclient conns`: 10 at a time, each connects, waits for the 220 greeting (for a "
      "proxy: after its whole upstream EHLO, STARTTLS, handshake, EHLO), says QUIT, "
      "closes. Each session is one new upstream TLS session. Three sink variants: the "
      "ECDSA P-256 test certificate with session tickets, the same without tickets "
      "(no resumption possible: every handshake is full), and an RSA-2048 chain.\n")
    w("| server certificate | leg | sessions/s | proxy CPU µs/session | sink: resumed | "
      "A/B sessions/s | A/B CPU |")
    w("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    names = {"p256": "ECDSA P-256, tickets", "p256-noticket": "ECDSA P-256, no tickets",
             "rsa": "RSA-2048, tickets"}
    for variant in ("p256", "p256-noticket", "rsa"):
        rows = {leg: sel(hs, variant=variant, leg=leg) for leg in "ABC"}
        rate = {leg: median([r["rate"] for r in rows[leg]]) for leg in "ABC"}
        cpu = {leg: median([r["cpu"] / r["count"] for r in rows[leg]]) if leg != "C" else None
               for leg in "ABC"}
        for leg in "ABC":
            if not rows[leg]:
                continue
            full = sum(r["tls_full"] for r in rows[leg])
            resm = sum(r["tls_resumed"] for r in rows[leg])
            res = f"{100 * resm / (full + resm):.0f} %" if leg != "C" and full + resm else "—"
            extra = (f"{fmt(ratio(rate['A'], rate['B']), 2)} | "
                     f"{fmt(ratio(cpu['A'], cpu['B']), 2)}") if leg == "A" else " | "
            w(f"| {names[variant]} | {leg} {LEG_NAME[leg]} | "
              f"{spread([r['rate'] for r in rows[leg]])} | "
              f"{spread([r['cpu'] / r['count'] for r in rows[leg]], 1e6) if leg != 'C' else '—'} "
              f"| {res} | {extra} |")
    w("")

    # idle
    w("## Idle sessions\n")
    w("`bclient idle` opens the sessions (at most 100 being set up at once), each greeted "
      "and past EHLO (so the upstream TLS session is up), then holds them silent. "
      "Memory per session = (VmRSS while held − VmRSS after a 20-session warm-up) / "
      "sessions.\n")
    w("| sessions | leg | per session KiB | RSS held MiB | RSS before MiB | processes / threads | "
      "set-up rate sessions/s | runs |")
    w("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for want in sorted({r["want"] for r in idle}):
        for leg in "AB":
            rows = sel(idle, want=want, leg=leg)
            if not rows:
                continue
            n = min(r["n"] for r in rows)
            w(f"| {n:,} | {leg} {LEG_NAME[leg]} | "
              f"{spread([r['per_b'] for r in rows], 1 / 1024, 1)} | "
              f"{fmt(median([r['rss_kb'] for r in rows]) / 1024, 1)} | "
              f"{fmt(median([r['base_kb'] for r in rows]) / 1024, 1)} | "
              f"{fmt(median([r['procs'] for r in rows]))} / "
              f"{fmt(median([r['threads'] for r in rows]))} | "
              f"{fmt(median([n / r['setup_s'] for r in rows]))} | {len(rows)} |")
    short = sorted({(LEG_NAME[r["leg"]], r["n"]) for r in idle if r["n"] < r["want"]})
    if short:
        w("\n" + ", ".join(f"{name} held {n:,}" for name, n in short) + " instead of "
          f"10,000: descriptors are limited to {info['nofile']} per process here "
          "(RLIMIT_NOFILE, and this container cannot raise the hard limit). A proxy process "
          "needs two per session (starttlsd spreads them over its workers), and stunnel "
          "refuses clients beyond 125/256 of its limit. run.sh raises the limit where it "
          "can; there, every row holds the full 10,000.")
    w("")

    # latency
    w("## Latency\n")
    w("`bclient rtt`: 20 sessions one after another; in each, after EHLO, 20 untimed and "
      "500 timed NOOP round trips (send, wait for the whole reply): 10,000 samples per run. "
      "Session set-up is connect → 220 greeting, which for a proxy includes its whole "
      "upstream negotiation. Added latency is the leg's p50 minus the direct p50. swaks: "
      "wall time of one whole single-message session including swaks's own start-up "
      "(Perl), median of 3.\n")
    w("| leg | NOOP round trip p50 µs | p90 µs | p99 µs | added p50 µs | added p99 µs | "
      "session set-up p50 µs | set-up p99 µs | swaks session ms |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    lm = {leg: {k: median([r[k] for r in sel(lat, leg=leg)]) if sel(lat, leg=leg) else None
                for k in ("rtt_p50_us", "rtt_p90_us", "rtt_p99_us", "setup_p50_us",
                          "setup_p99_us", "swaks_s")} for leg in "ABC"}
    for leg in "ABC":
        m = lm[leg]
        if m["rtt_p50_us"] is None:
            continue
        c = lm["C"]
        w(f"| {leg} {LEG_NAME[leg]} | {fmt(m['rtt_p50_us'])} | {fmt(m['rtt_p90_us'])} | "
          f"{fmt(m['rtt_p99_us'])} | "
          f"{fmt(m['rtt_p50_us'] - c['rtt_p50_us']) if leg != 'C' and c['rtt_p50_us'] else '—'} | "
          f"{fmt(m['rtt_p99_us'] - c['rtt_p99_us']) if leg != 'C' and c['rtt_p99_us'] else '—'} | "
          f"{fmt(m['setup_p50_us'])} | {fmt(m['setup_p99_us'])} | "
          f"{fmt(1000 * m['swaks_s'])} |")
    w("")

    # postfix
    w("## In front of a real Postfix\n")
    w("A private Postfix 3.7 instance (smtpd with `smtpd_tls_security_level = may`, the "
      "P-256 test certificate, queue on disk, discard transport) as the destination; "
      "1 KiB messages, 10 sessions, a new connection per message (600 messages) or all "
      "of a session's messages on one connection (1,500 messages). msgs/s is the rate "
      "Postfix accepted them (250 after its queue file is written). Postfix CPU is every "
      "Postfix process (master and its children: smtpd, cleanup, qmgr, tlsmgr, discard) "
      "until the queue is empty again. Through a proxy Postfix's smtpd also does the "
      "server side of a TLS handshake per connection, which the plaintext direct leg "
      "does not: that cost is Postfix's, not the proxy's, but it is on the same 2 CPUs.\n")
    w("| load | leg | msgs/s | proxy CPU µs/msg | Postfix CPU µs/msg | ratio to direct |")
    w("| --- | --- | ---: | ---: | ---: | ---: |")
    for load, leg in [(x, y) for x in ("new", "keep") for y in "ABC"]:
        rows = sel(pf, leg=leg, load=load)
        if not rows:
            continue
        rate = median([r["count"] / r["wall"] for r in rows])
        pc = pfrate.get(load)
        w(f"| {'1 KiB, new connection per message' if load == 'new' else '1 KiB, one connection per session (-d)'} | "
          f"{leg} {LEG_NAME[leg]} | {spread([r['count'] / r['wall'] for r in rows])} | "
          f"{spread([r['cpu'] / r['count'] for r in rows], 1e6) if leg != 'C' else '—'} | "
          f"{spread([r['pf_cpu'] / r['count'] for r in rows], 1e6)} | "
          f"{fmt(ratio(rate, pc), 2)} |")
    w("")

    # WAN
    if ws["m"] or ws["info"]:
        wan_section(b, w, ws, wan_targets)

    # machine
    w("## Machine and versions\n")
    w(f"- CPU: {info['cpu']}, {info['nproc']} vCPU ({info['virt']} guest), "
      f"{info['mem']} RAM; every process (load generator, proxy, sink) shares these CPUs")
    w(f"- {info['os']}, kernel {info['kernel']}; RLIMIT_NOFILE {info['nofile']}")
    top = ", ".join(f"{n} {c:.0f} s" for n, c in b.other_cpu[:3] if c >= 1)
    w(f"- Other work on the machine during the bench: about {b.other_s:.0f} CPU-seconds "
      f"in {b.elapsed:.0f} s, {100 * b.other_s / b.elapsed / int(info['nproc']):.0f} % of "
      "the machine (all CPU time in /proc/stat minus the bench's own processes"
      + (f"; longest-lived: {top}" if top else "") + f"); the machine was "
      f"{100 * b.busy:.0f} % busy in all, {100 * b.steal:.0f} % of it stolen by the "
      f"hypervisor; load average {' '.join(b.load0)} at the start, "
      f"{' '.join(info['load'])} at the end")
    w(f"- starttlsd: `{info['starttlsd']}`, git {info['git']}, built by `make` "
      f"({info['cc']}, -O2)")
    w(f"- BoringSSL: {info['boringssl']} (Debian android-libboringssl)")
    if info.get("crypto"):
        w(f"- Signature checks (`bssl-tool speed`, `openssl speed`), the bulk of a full "
          f"handshake's client-side cost: {info['crypto']}")
    w(f"- stunnel: {info['stunnel']}")
    w(f"- packages: {info['pkgs']}")
    w("")
    w("## Exact commands\n")
    w("Everything runs in a network namespace made by tests/bench/run.sh: `lo` up, "
      f"`{WAN}/32` added to it. Proxies listen on {LAN}; sinks and Postfix on {WAN}. "
      "`$TMP` is the bench's temporary directory.\n")
    w("```")
    for k in sorted(b.cmds):
        if k in ("A", "B", "D"):
            continue
        w(f"# {k}")
        w(b.cmds[k].replace(TOP + "/", ""))
    w("# A (starttlsd), upstream port per sink")
    w(b.cmds.get("A", "(not run)").replace(TOP + "/", ""))
    w("# B (stunnel), configuration file")
    w(b.cmds.get("B", "(not run)").rstrip())
    if "D" in b.cmds:
        w("# D (stunnel, default configuration; WAN section), configuration file")
        w(b.cmds["D"].rstrip())
    w("```\n")
    w("Paths are relative to the top of the source tree. HOST:PORT is 127.0.0.1:10025 (A), "
      "127.0.0.1:10026 (B), 127.0.0.1:10027 (D) or the sink itself, 127.0.1.1:2525 (C); in "
      f"the WAN section the proxies' upstream and C's HOST:PORT are the relay, {WAN}:"
      f"{PORT_RELAY}. Each run starts the proxy afresh and stops it after the load.\n")
    w("## How to read this, and what is not measured\n")
    for line in NOTES:
        w(line)
    w("")
    if b.failures:
        w("## Failures\n")
        for f_ in b.failures:
            w(f"- {f_}")
        w("")
    return "\n".join(out) + "\n", targets


def num(x):
    """A count averaged over runs: whole numbers as such, others to 0.1."""
    return f"{x:.0f}" if abs(x - round(x)) < 1e-9 else f"{x:.1f}"


def wan_section(b, w, ws, wan_targets):
    info = ws["info"]
    rtt = ws["rtt_ms"]
    d_ms = info.get("delay_ms")
    w("## WAN: round trips (issue 10)\n")
    if info.get("when"):
        w(f"Measured {info['when']}, `{info.get('starttlsd', '?')}` "
          f"({info.get('binary', 'build/starttlsd')}; the bench's tree at git "
          f"{info.get('git', '?')}), "
          f"{info.get('runs', '?')} run{'s' if info.get('runs') != 1 else ''} per leg, "
          f"medians, (min–max).\n")
    w(f"A delaying relay (tests/bench/delay.c) between the proxies and the sink adds "
      f"{fmt(d_ms, 0)} ms in each direction to every segment, in order (this kernel has no "
      f"netem): a path with RTT {fmt(2 * d_ms if d_ms else None, 0)} ms and no bandwidth "
      "limit. The clients reach the proxies without delay (the LAN side); the direct leg C "
      "goes through the relay too. The relay stands for the TCP handshake as well: it "
      f"connects to the sink {fmt(3 * d_ms if d_ms else None, 0)} ms (SYN, SYN-ACK, ACK) "
      "after accepting, so a greeting arrives 2 RTT after connect(), as on a real path.\n")
    w("smtp-source, 1 KiB messages, one session at a time, to one destination. Each run "
      "starts the proxy afresh (starttlsd with an empty --state-dir): the **cold** phase is "
      "the first session (no parked connection, no TLS session ticket), the **warm** phase "
      "the sessions that follow at once. *New connection per message*: 1 cold session, "
      "then 9 warm ones, one message each (10 messages in a row: smtp-source -m 1, then "
      "-m 9). *One connection per session* (-d): a cold session of 10 messages, then a "
      "warm one of 10. ms per message is wall time (smtp-source's own start included, the "
      "same for every leg) over messages; **round trips added** = (ms of the leg − ms of "
      "direct) / RTT, per message, from the medians; for -d, × 10 is per session. "
      "“all” is the whole sequence (cold and warm) per message. Server connections and TLS "
      "handshakes (full + resumed) are what the sink saw, per run (mean).\n")
    r0, r1 = info.get("rtt_start"), info.get("rtt_end")
    if r0:
        w(f"**RTT of the relay path, measured** (`bclient rtt` through the relay: NOOP "
          f"round trips to the sink, p50): {r0['rtt_p50_us'] / 1000:.2f} ms before the "
          f"legs" + (f", {r1['rtt_p50_us'] / 1000:.2f} ms after" if r1 else "") +
          f"; p99 {r0['rtt_p99_us'] / 1000:.2f} ms. Connect → greeting "
          f"{r0['setup_p50_us'] / 1000:.1f} ms (= {r0['setup_p50_us'] / 1000 / rtt:.2f} RTT). "
          f"The round trips below are counted in RTT = {rtt:.2f} ms.\n")
    rl = info.get("relay")
    if rl:
        w(f"The relay itself: {int(rl['conns']):,} connections, {int(rl['segs']):,} "
          f"segments forwarded, {info.get('relay_cpu', 0) * 1000:,.0f} ms CPU in all "
          "(at nice -10: it is the network, not a contender); a "
          f"segment left it on average {rl['late_mean_us']:,.0f} µs after its due time "
          f"(timer and scheduling; max {rl['late_max_us'] / 1000:,.1f} ms, "
          f"{int(rl['late_over_1ms'])} segments more than 1 ms late), which the measured "
          "RTT includes.\n")
    if "busy" in info:
        other = 100 * info["other_s"] / max(1, info["elapsed"]) / info["nproc"]
        w(f"The machine during this section ({info['elapsed']:.0f} s): "
          f"{100 * info['busy']:.0f} % busy in all, other work than the bench's "
          f"{other:.0f} % of the machine, {100 * info['steal']:.0f} % stolen by the "
          "hypervisor; load "
          f"average {' '.join(info['load0'])} at the start, {' '.join(info['load1'])} at "
          "the end. " + ("**The machine was busy**: round trips wait for CPU, figures are "
                         "high and spread out." if info["busy"] > 0.5 or other > 25 else
                         "The machine was mostly idle."))
        w("")
    w("| target (issue 10) | measured, starttlsd | |")
    w("| --- | --- | --- |")
    for what, val, ok in wan_targets:
        w(f"| {what} | {val} | {'PASS' if ok else ('**FAIL**' if ok is not None else 'not measured')} |")
    w("")
    w("| load | leg | cold ms/msg | cold RT added | warm ms/msg | warm RT added | "
      "all ms/msg | all RT added | server connections (sessions) | TLS full + resumed |")
    w("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")

    def add(x, ph):
        v = x.get(ph + "_add")
        if v is None:
            return "—"
        t = f"{v:+.2f}"
        if x["keep"]:
            t += f" ({v * x['per_session']:+.1f}/session)"
        return t

    for mode, keep, phases in info.get("modes", []):
        for leg in "ABDC":
            x = ws["m"].get((mode, leg))
            if x is None:
                w(f"| {WAN_MODE_TEXT[mode]} | {leg} {LEG_NAME[leg]} | failed | | | | | | | |")
                continue
            w(f"| {WAN_MODE_TEXT[mode]} | {leg} {LEG_NAME[leg]} | {spread(x['cold'], 1, 1)} | "
              f"{add(x, 'cold')} | {spread(x['warm'], 1, 1)} | {add(x, 'warm')} | "
              f"{fmt(median(x['all']), 1)} | {add(x, 'all')} | "
              f"{num(x['all_conns'])} ({num(x['all_sessions'])}) | "
              + (f"{num(x['all_full'])} + {num(x['all_resumed'])} |" if leg != "C" else "— |"))
    w("")
    w("Where the round trips go with a new connection per message (smtp-source waits for "
      "every reply; no PIPELINING): direct, a message costs connect and greeting (2 RTT), "
      "then EHLO, MAIL, RCPT, DATA, end of data and QUIT (6). A proxy that opens its "
      "upstream connection per session adds EHLO and STARTTLS (2) and the TLS 1.3 "
      "handshake (1, resumed or not), plus any command of its own (starttlsd before "
      "issue 10: a second EHLO after the handshake, 1); one that answers QUIT itself "
      "saves that round trip (−1); a parked server connection, taken at once, saves the "
      "connect, the greeting and the negotiation. starttlsd parks connections per worker: "
      "a session that lands on a worker without one negotiates afresh (the server "
      "connections column counts what the sink accepted).\n")
    w("Commands of this section (legs A and B as in [Exact commands](#exact-commands), "
      f"their upstream the relay, {WAN}:{PORT_RELAY}; starttlsd with a --state-dir of its "
      "own per run; HOST:PORT as there, C's the relay):\n")
    w("```")
    for k in sorted(x for x in b.cmds if x.startswith("wan ")):
        w(f"# {k[4:]}")
        w(b.cmds[k].replace(TOP + "/", ""))
    if "D" in b.cmds:
        w("# D (stunnel, default configuration), configuration file")
        w(b.cmds["D"].rstrip())
    w("```\n")


NOTES = [
    "- Everything shares 2 vCPUs: the load generator, the proxy and the sink. Throughput "
    "(msgs/s, MB/s) therefore depends on what the other processes cost, and varies with "
    "other load on the host; CPU per message is the figure to compare.",
    "- One session at a time (the \"1 session\" rows) is bound by round trips, not CPU: "
    "smtp-source waits for each reply, so a message costs four round trips through the "
    "proxy (MAIL, RCPT, DATA, end of data), and both proxies add a similar wake-up "
    "latency to each. Where the 2 CPUs are saturated (many sessions, 1 MiB), msgs/s "
    "ratios understate CPU differences. CPU per message is the figure to compare.",
    "- The \"1 session\" rows depend on what else the host runs: in this VM a process woken "
    "on an idle vCPU waits for the hypervisor to run it again, so round trips are slower "
    "on an idle machine than on a busy one (1 KiB, one connection, 1 session, direct "
    "leg: 1,890-2,030 msgs/s on an idle machine, 7,800-8,900 with two nice-19 busy loops "
    "keeping both vCPUs awake; starttlsd 1,190-1,230 and 1,560-1,620). Compare legs of "
    "the same run, not runs.",
    "- Where the CPUs are saturated (10 sessions), the sink's and smtp-source's CPU per "
    "message, about the same for every leg, bound the msgs/s ratio between the proxies "
    "well below the ratio of their own CPU per message.",
    "- Loopback only (except the WAN section, behind its delaying relay): no network "
    "latency, so per-session round trips cost CPU, not waiting. "
    "On a real path the proxy's extra upstream round trips (EHLO, STARTTLS, handshake) "
    "add their RTT to session set-up.",
    "- As on a gateway, the clients reach the proxies on one address (127.0.0.1) and the "
    "proxies reach the destination from another (127.0.1.1).",
    "- starttlsd logs one line per session to syslog and, with --log-stderr, to a file. "
    "Its syslog lines go to a receiver (tests/peers/syslogd.py) on a private /dev/log, "
    "as to a syslog daemon on a real host, so each line costs the proxy its send "
    "(reports before 2026-12-07 had no receiver: then a line cost it nothing but "
    "a failed connect; `--no-syslog` runs so). stunnel logs at its default level "
    "(5, notice) to a file.",
    "- The sink issues TLS session tickets, so both proxies may resume upstream sessions "
    "(stunnel: OpenSSL's client session cache; starttlsd: its own pool of tickets per destination, each used once). "
    "The \"resumed\" columns show how often each did; the \"no tickets\" rows of the "
    "handshake table compare full handshakes only.",
    "- starttlsd is given a private --state-dir (pins are recorded, as by default) and "
    "--max-sessions-per-client 20000, since all load comes from one address.",
]


SAVED = ("smoke", "res", "failures", "cmds", "runs", "elapsed", "other_cpu", "other_s", "busy",
         "steal", "load0", "a_model", "git", "info")


def from_json(path, out, wan_into=None):
    """Redo the report from saved raw results, without measuring again."""
    class Saved:
        pass
    b = Saved()
    with open(path) as f:
        for k, v in json.load(f).items():
            setattr(b, k, v)
    text, _ = report(b)
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text)
        say(f"bench: wrote {out}")
    if wan_into:
        splice_wan(text, wan_into)
    return 0


WAN_HEAD = "## WAN: round trips (issue 10)"


def splice_wan(text, path):
    """Put the WAN section and the WAN target rows of a report into an earlier
    report (the whole bench takes 10 minutes; the WAN section alone, 2)."""
    lines = text.split("\n")
    if WAN_HEAD not in lines:
        say(f"bench: no WAN section in this report, {path} left as it is")
        return
    i = lines.index(WAN_HEAD)
    j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("## ")), len(lines))
    section = lines[i:j]
    rows = [x for x in lines if x.startswith("| WAN (issue 10")]
    legd = [x for x in lines if x.startswith("- **D** ")]
    with open(path) as f:
        old = f.read().split("\n")
    if WAN_HEAD in old:
        a = old.index(WAN_HEAD)
        z = next((k for k in range(a + 1, len(old)) if old[k].startswith("## ")), len(old))
        old[a:z] = section
    else:
        at = next((k for k, x in enumerate(old) if x.startswith("## Machine and versions")),
                  len(old))
        old[at:at] = section
    old = [x for x in old if not x.startswith("| WAN (issue 10")]
    if "## Targets" in old:
        t = old.index("## Targets")
        k = t + 1
        while k < len(old) and not old[k].startswith("| "):
            k += 1
        while k < len(old) and old[k].startswith("| "):
            k += 1
        old[k:k] = rows
        old = [x.replace("| target (issue 6) |", "| target (issues 6, 10) |") for x in old]
    if legd and not any(x.startswith("- **D** ") for x in old):
        c = next((k for k, x in enumerate(old) if x.startswith("- **C** ")), None)
        if c is not None:
            old[c + 1:c + 1] = legd
    with open(path, "w") as f:
        f.write("\n".join(old))
    say(f"bench: put the WAN section into {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true",
                    help="tiny loads, one run: checks that every part still works")
    ap.add_argument("--runs", type=int, default=None, help="interleaved runs (default 3)")
    ap.add_argument("--idle-runs-large", type=int, default=None,
                    help="runs for the 10,000 idle sessions (default: --runs)")
    ap.add_argument("--out", default=None,
                    help="write the report here (default docs/performance.md; smoke: none)")
    ap.add_argument("--sections", default="load,handshakes,idle,latency,postfix,wan")
    ap.add_argument("--wan-delay-ms", type=float, default=None,
                    help="WAN section: one-way delay of the relay (default 20; smoke 5)")
    ap.add_argument("--wan-into", metavar="FILE", default=None,
                    help="put the WAN section and its target rows into FILE (an earlier "
                         "report, e.g. docs/performance.md), leaving the rest as it is")
    ap.add_argument("--cases", default=None,
                    help="load cases to run, e.g. 1m-keep-c1,1k-keep-c10 (default: all)")
    ap.add_argument("--legs", default=None,
                    help="load section: only these legs, e.g. A (a quick look at "
                         "starttlsd alone: make bench-cpu)")
    ap.add_argument("--no-syslog", action="store_true",
                    help="no syslog receiver for starttlsd (its lines then go nowhere "
                         "and cost it nothing; reports before 2026-12-07 ran so)")
    ap.add_argument("--messages", type=int, default=None,
                    help="load section: messages per run instead of the case's own")
    ap.add_argument("--starttlsd", default=os.path.join(TOP, "build/starttlsd"))
    ap.add_argument("--tools", default=os.path.join(TOP, "build/bench"))
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--from-json", metavar="FILE",
                    help="only redo the report from the raw results of an earlier run")
    args = ap.parse_args()
    if args.from_json:
        return from_json(args.from_json, args.out, args.wan_into)
    if args.runs is None:
        args.runs = 1 if args.smoke else 3
    if args.out is None and not args.smoke and args.wan_into is None and \
            set(args.sections.split(",")) >= set(ap.get_default("sections").split(",")):
        # Only a whole bench rewrites the report; a part of it prints.
        args.out = os.path.join(TOP, "docs/performance.md")
    b = Bench(args)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    try:
        b.run()
        text, targets = report(b)
    finally:
        for p in procs:
            stop(p, 5)
        if hasattr(b, "pf"):
            b.postfix_stop()
        if not args.keep and not b.failures:
            shutil.rmtree(b.tmp, ignore_errors=True)
        else:
            say(f"bench: files kept in {b.tmp}")
    raw = os.path.join(args.tools, "results-smoke.json" if args.smoke else "results.json")
    try:
        with open(raw, "w") as f:
            json.dump({k: getattr(b, k) for k in SAVED}, f, indent=1)
        say(f"bench: raw results in {raw} (bench.py --from-json {raw} redoes the report)")
    except OSError as e:
        say(f"bench: cannot save raw results: {e}")
    if args.smoke and not args.out:
        # make test: the targets table is enough to show every part ran.
        print(text.split("## Throughput")[0].rstrip() + "\n")
    else:
        print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
        say(f"bench: wrote {args.out}")
    if args.wan_into:
        splice_wan(text, args.wan_into)
    say(f"bench: {b.elapsed:.0f} s, {len(b.failures)} failed run(s)")
    return 1 if b.failures else 0


if __name__ == "__main__":
    sys.exit(main())
