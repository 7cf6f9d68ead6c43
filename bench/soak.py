#!/usr/bin/env python3
"""Soak benchmark for redis-vitals: a long run under chaos.

It is not a CI test. It uses the python3 standard library only and builds
nothing. It needs target/release/redis-vitals, so run `cargo build --release`
first, and redis-server on the PATH.

What it does:

* It starts N (default 100) real redis-server nodes on loopback, on free
  ports below the kernel's ephemeral range, each with its own temp dir and
  `--save "" --appendonly no`. RLIMIT_NOFILE is raised to the hard limit.
  It puts a little data in each node.
* It starts redis-vitals on all N nodes (`--poll.interval 500ms
  --poll.timeout 300ms` by default) and waits for /-/ready.
* For --minutes M it runs a chaos loop with a seeded RNG. The loop stops
  nodes (SHUTDOWN NOSAVE or SIGTERM) and restarts them later, and hangs
  nodes (SIGSTOP) and resumes them later (SIGCONT). At most --max-disturbed
  nodes (10% by default) are disturbed at a time. Every disturbance lasts
  between --min-disturb and --max-disturb seconds (5-60 s). Every action is
  logged with a timestamp.
* Every --check-every seconds (default 1) it scrapes /metrics and runs the
  stall check. A node the harness knows is healthy is running, not paused,
  and has not been touched in the last --settle seconds (default 5). For
  every such node, redis_vitals_last_success_age_seconds must be below
  2 x interval + timeout (1.3 s). Violations are split by cause: the node
  is reported up but its next poll is late (a stall); the node is reported
  down although it is healthy (a failed poll); or the node came back less
  than max-backoff x 1.2 + 1.8 s ago and the exporter has not retried it yet
  (reconnect backoff, expected). The check also looks the other way: a node
  that has been hung or stopped for 1.3 s must be reported with redis_up 0.
  It also counts failed polls of healthy nodes from the
  redis_vitals_poll_errors_total deltas, because a single failure recovers
  within a second and the age check can miss it.
* Every --sample-every seconds (default 10) it records the exporter's RSS
  (VmRSS), open fds (entries in /proc/PID/fd), redis_vitals_tasks, threads,
  CPU seconds and the number of nodes up. It also records how loaded the
  host is: the load average, CPU pressure (/proc/pressure/cpu) and how long
  the exporter's threads were runnable but waiting for a CPU (schedstat).
  It writes one CSV row per sample (--csv).
* After the chaos it ends every disturbance and waits until the exporter
  reports every node up again (the calm tail, at most --calm-max s). Then
  fds, tasks and threads can be compared exactly with their values before
  the chaos.
* At the end it stops the exporter with SIGTERM and times its exit. Then it
  prints a Markdown summary: chaos actions by kind; RSS, fds, tasks and
  threads at the start (after the --warmup), middle and end, with min, max
  and a least-squares slope per hour; the stall-check maximum and the number
  of violations, by cause; and how long the exporter took to see a node come
  back.

Everything it spawns is killed on exit: by try/finally, by SIGINT, SIGTERM
and SIGHUP handlers, and by PR_SET_PDEATHSIG if the script itself is
SIGKILLed. Every loop is bounded. Everything listens on and connects to
127.0.0.1 only.

Run:  python3 bench/soak.py --minutes 30 --csv /tmp/soak.csv
"""

import argparse
import resp  # noqa: E402  (bench/resp.py, beside this script)
import ctypes
import datetime
import http.client
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_VITALS = os.path.join(REPO, "target", "release", "redis-vitals")
CLK_TCK = os.sysconf("SC_CLK_TCK")


class SoakError(Exception):
    pass


# ---------------------------------------------------------------------------
# Logging with timestamps
# ---------------------------------------------------------------------------

T0 = [None]  # monotonic time when the measured run started


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def log(msg):
    rel = "" if T0[0] is None else "t=%7.1fs " % (time.monotonic() - T0[0])
    sys.stdout.write("[%s %s] %s\n" % (now_iso(), rel.rstrip() or "setup", msg))
    sys.stdout.flush()


# ---------------------------------------------------------------------------
# Process bookkeeping: every child is registered and killed on any exit.
# ---------------------------------------------------------------------------

PROCS = []  # Popen objects still ours


def _die_with_parent():
    # PR_SET_PDEATHSIG = 1: SIGKILL the child if the harness dies, even by
    # SIGKILL, so no redis-server or exporter outlives the script.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def spawn(argv, log_path):
    out = open(log_path, "ab")
    try:
        p = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
            close_fds=True,
        )
    finally:
        out.close()
    PROCS.append(p)
    return p


def forget(p):
    for i, q in enumerate(PROCS):
        if q is p:
            del PROCS[i]
            return


def signal_pid(p, sig):
    if p.poll() is None:
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass


def reap(p, grace):
    """Wait up to `grace` s, then SIGKILL (by pid). Returns the exit code."""
    try:
        return p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        signal_pid(p, signal.SIGKILL)
        try:
            return p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return None


def kill_all():
    procs = list(PROCS)
    for p in procs:
        # A SIGSTOPped node holds SIGTERM pending until SIGCONT.
        signal_pid(p, signal.SIGCONT)
        signal_pid(p, signal.SIGTERM)
    end = time.monotonic() + 5.0
    for p in procs:
        reap(p, max(0.0, end - time.monotonic()))
    PROCS.clear()


def on_signal(signum, _frame):
    sys.stderr.write("soak: got signal %d; killing everything it spawned\n" % signum)
    raise SystemExit(128 + signum)


# ---------------------------------------------------------------------------
# A minimal RESP client (short-lived harness connections only)
# ---------------------------------------------------------------------------


def Resp(port, timeout=5.0):
    """A harness connection to one node (see resp.py)."""
    return resp.Resp(port, timeout, SoakError)


def seed(port, i):
    """A little data and traffic: strings, TTL'd sessions, a hash, a list,
    a counter, hits and misses."""
    c = Resp(port)
    try:
        cmds = [("SET", "key:%d" % k, "v" * (64 + k)) for k in range(20)]
        cmds += [("SET", "session:%d" % k, "s", "EX", "3600") for k in range(5)]
        cmds.append(("HSET", "user:1", "name", "n%d" % i, "age", "42"))
        cmds.append(("RPUSH", "queue", "a", "b", "c"))
        cmds += [("INCR", "counter")] * 5
        cmds += [("GET", "key:%d" % k) for k in range(10)]
        cmds += [("GET", "missing:%d" % k) for k in range(5)]
        c.send(cmds)
        for _ in cmds:
            c.read()
    finally:
        c.close()


# ---------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------


def ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_is_free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def pick_ports(n, exclude):
    """n free loopback ports below the ephemeral range. A node's port must
    stay free while the node is down for up to a minute; outgoing
    connections (ours and anyone else's) take ephemeral ports, so those
    are avoided."""
    hi = ephemeral_low()
    lo = max(1024, hi - 12000)
    rng = random.SystemRandom()  # not the chaos RNG: keeps --seed replayable
    out = []
    for _ in range(200 * n + 1000):
        if len(out) == n:
            return out
        p = rng.randrange(lo, hi)
        if p in exclude or p in out:
            continue
        if port_is_free(p):
            out.append(p)
    raise SoakError("could not find %d free ports in %d-%d" % (n, lo, hi))


# ---------------------------------------------------------------------------
# Nodes
# ---------------------------------------------------------------------------

UP, DOWN, HUNG, LOST = "up", "down", "hung", "lost"


class Node:
    def __init__(self, idx, port, tmp, redis_bin, hz):
        self.idx = idx
        self.port = port
        self.dir = os.path.join(tmp, "redis-%d" % port)
        os.makedirs(self.dir, exist_ok=True)
        self.redis_bin = redis_bin
        self.hz = hz
        self.proc = None
        self.state = DOWN
        self.last_change = 0.0  # monotonic time of the last action on it
        self.until = None  # monotonic time the current disturbance ends
        self.disturbed_since = None
        self.kind = None  # what the current disturbance is
        self.restart_failures = 0
        # (monotonic time it came back, kind) until the exporter sees it up
        self.pending_recovery = None

    def argv(self):
        return [
            self.redis_bin,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self.dir,
            "--daemonize", "no",
            "--maxclients", "1024",
            "--hz", str(self.hz),
            "--logfile", os.path.join(self.dir, "redis.log"),
        ]

    def launch(self):
        self.proc = spawn(self.argv(), os.path.join(self.dir, "stdout.log"))

    def wait_ready(self, timeout):
        end = time.monotonic() + timeout
        for _ in range(10000):
            if self.proc.poll() is not None or time.monotonic() > end:
                return False
            try:
                c = Resp(self.port, timeout=2)
                try:
                    if c.call("PING") == b"PONG":
                        return True
                finally:
                    c.close()
            except (OSError, SoakError):
                time.sleep(0.02)
        return False


# ---------------------------------------------------------------------------
# /proc and /metrics
# ---------------------------------------------------------------------------


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                out[k] = int(v.split()[0])
    return out


def proc_cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def proc_sched_wait_ns(pid):
    """(ns on CPU, ns runnable but waiting for a CPU), summed over the live
    threads (/proc/PID/task/*/schedstat). Waiting time is the host taking
    the CPU away from the exporter."""
    run = wait = 0
    try:
        names = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return None
    for tid in names:
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                a = f.read().split()
            run += int(a[0])
            wait += int(a[1])
        except (OSError, ValueError, IndexError):
            pass
    return run, wait


def psi_cpu_some_avg10():
    """Share of the last 10 s in which some runnable task waited for a CPU
    (/proc/pressure/cpu), or None without PSI."""
    try:
        with open("/proc/pressure/cpu") as f:
            for part in f.readline().split():
                if part.startswith("avg10="):
                    return float(part[6:])
    except (OSError, ValueError):
        pass
    return None


def proc_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


LINE_RE = re.compile(rb"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
PORT_RE = re.compile(rb'addr="[^"]*:(\d+)[^"]*"')
REASON_RE = re.compile(rb'reason="([^"]*)"')

PER_NODE = {
    b"redis_up": "up",
    b"redis_vitals_last_success_age_seconds": "age",
    b"redis_vitals_polls_total": "polls",
    b"redis_vitals_poll_duration_seconds": "dur",
}
GLOBAL = {
    b"redis_vitals_tasks": "tasks",
    b"process_resident_memory_bytes": "rss_bytes",
    b"process_open_fds": "open_fds",
    b"process_cpu_seconds_total": "cpu_seconds",
}


def parse_metrics(body):
    """{'up': {port: v}, 'age': ..., 'errors': {port: total}, globals...}"""
    out = {v: {} for v in PER_NODE.values()}
    out["errors"] = {}
    out["reasons"] = {}  # port -> {reason: count}
    for line in body.split(b"\n"):
        if not line or line[0] == 35:  # '#'
            continue
        m = LINE_RE.match(line)
        if not m:
            continue
        name, labels, val = m.group(1), m.group(2) or b"", m.group(3)
        try:
            v = float(val)
        except ValueError:
            continue
        if name in GLOBAL:
            out[GLOBAL[name]] = v
            continue
        key = PER_NODE.get(name)
        if key is None and name != b"redis_vitals_poll_errors_total":
            continue
        pm = PORT_RE.search(labels)
        if not pm:
            continue
        port = int(pm.group(1))
        if key is not None:
            out[key][port] = v
        else:
            out["errors"][port] = out["errors"].get(port, 0.0) + v
            rm = REASON_RE.search(labels)
            reason = rm.group(1).decode() if rm else "?"
            out["reasons"].setdefault(port, {})[reason] = v
    return out


class Http:
    """One keep-alive connection, as Prometheus keeps one per target."""

    def __init__(self, port, timeout):
        self.port = port
        self.timeout = timeout
        self.conn = None

    def get(self, path):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.conn.request("GET", path, headers={"Accept": "text/plain"})
                r = self.conn.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt == 1:
                    raise
        raise SoakError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------


def slope_per_hour(ts, vs):
    """Least-squares slope of v over t (seconds), in units per hour."""
    n = len(ts)
    if n < 2:
        return float("nan")
    mt = sum(ts) / n
    mv = sum(vs) / n
    sxx = sum((t - mt) ** 2 for t in ts)
    if sxx == 0:
        return float("nan")
    sxy = sum((t - mt) * (v - mv) for t, v in zip(ts, vs))
    return sxy / sxx * 3600.0


def pct(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    pos = (len(v) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def fmt(v, digits=1):
    if v is None or v != v:
        return "n/a"
    return ("%%.%df" % digits) % v


# ---------------------------------------------------------------------------
# The soak
# ---------------------------------------------------------------------------

CSV_COLS = [
    "t_s", "utc", "phase", "rss_kib", "hwm_kib", "fds", "tasks", "threads", "cpu_s",
    "metrics_rss_kib", "metrics_open_fds", "metrics_cpu_s",
    "nodes_up_exporter", "fds_minus_up", "tasks_minus_up", "nodes_up_harness", "nodes_down", "nodes_hung",
    "checks", "max_age_healthy_s", "violations", "violations_stale_up",
    "violations_backoff", "violations_other", "missed_down",
    "scrape_ms_max", "scrape_errors", "polls_total", "poll_errors_total",
    "healthy_poll_failures", "loadavg1", "psi_cpu_some_avg10", "exporter_runq_wait_s", "check_late_ms_max",
]


class Soak:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.nodes = []
        self.exporter = None
        self.http = None
        self.tmp = None
        self.interval = args.interval_ms / 1000.0
        self.timeout = args.timeout_ms / 1000.0
        self.bound = 2 * self.interval + self.timeout
        # A node back from a long outage is retried after at most
        # max_backoff x 1.2 (the exporter's jitter) plus one poll.
        self.backoff_grace = args.max_backoff_s * 1.2 + self.interval + self.timeout + 1.0
        self.actions = {}
        self.samples = []
        self.violations = []  # (t, port, age, cls, up, since_change)
        self.recoveries = []  # (kind, seconds until the exporter saw it up)
        self.unrecovered = 0
        self.checks = 0
        self.node_checks = 0
        self.max_age_healthy = 0.0
        self.max_age_settled = 0.0  # excluding nodes in reconnect backoff
        self.missed_down = []
        self.scrape_errors = 0
        self.scrape_ms = []
        self.win = self._new_window()
        self.csv = None
        self.exit_info = None
        self.phase = "chaos"
        self.prev_check = None  # (t, {port: errors total}) of the last check
        self.healthy_failures = {}  # reason -> failed polls of healthy nodes
        self.healthy_failure_events = []  # (t, port, reasons, psi)
        self.last_sched = None
        self.psi = []
        self.calm = None  # (seconds until all up, all seen up?)

    def _new_window(self):
        return {"checks": 0, "max_age": 0.0, "viol": 0, "stale_up": 0, "backoff": 0,
                "other": 0, "missed_down": 0, "scrape_ms_max": 0.0, "scrape_errors": 0,
                "healthy_fail": 0, "late_ms": 0.0}

    def count(self, kind):
        self.actions[kind] = self.actions.get(kind, 0) + 1

    # -- setup -------------------------------------------------------------

    def start_fleet(self):
        a = self.args
        ports = pick_ports(a.nodes, set())
        self.nodes = [Node(i, p, self.tmp, a.redis_server, a.redis_hz) for i, p in enumerate(ports)]
        for n in self.nodes:
            n.launch()
        for n in self.nodes:
            ok = n.wait_ready(30)
            tries = 0
            while not ok:
                tries += 1
                if tries > 5:
                    raise SoakError("redis node %d would not start" % n.idx)
                reap(n.proc, 2)
                forget(n.proc)
                n.port = pick_ports(1, {m.port for m in self.nodes})[0]
                n.dir = os.path.join(self.tmp, "redis-%d" % n.port)
                os.makedirs(n.dir, exist_ok=True)
                n.launch()
                ok = n.wait_ready(30)
            n.state = UP
            seed(n.port, n.idx)
            n.last_change = time.monotonic()
        log("%d redis-server nodes up and seeded (ports %d-%d)" % (
            len(self.nodes), min(n.port for n in self.nodes), max(n.port for n in self.nodes)))

    def start_exporter(self):
        a = self.args
        http_port = pick_ports(1, {n.port for n in self.nodes})[0]
        cfg = os.path.join(self.tmp, "vitals.toml")
        with open(cfg, "w") as f:
            f.write("[redis]\naddr = [\n")
            for n in self.nodes:
                f.write('  "redis://127.0.0.1:%d",\n' % n.port)
            f.write("]\n")
        argv = [
            a.vitals_bin,
            "--config.file", cfg,
            "--poll.interval", "%dms" % a.interval_ms,
            "--poll.timeout", "%dms" % a.timeout_ms,
            "--web.listen-address", "127.0.0.1:%d" % http_port,
            "--log.level", a.log_level,
        ]
        self.exporter_argv = argv
        self.exporter_log = os.path.join(self.tmp, "redis-vitals.log")
        self.exporter = spawn(argv, self.exporter_log)
        self.http = Http(http_port, timeout=5.0)
        end = time.monotonic() + 60
        for _ in range(3000):
            if self.exporter.poll() is not None:
                raise SoakError("redis-vitals exited at start (code %s); log:\n%s" % (
                    self.exporter.returncode, self.tail_log()))
            try:
                st, _ = self.http.get("/-/ready")
                if st == 200:
                    log("redis-vitals pid %d ready on 127.0.0.1:%d" % (self.exporter.pid, http_port))
                    return
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > end:
                break
            time.sleep(0.05)
        raise SoakError("redis-vitals not ready within 60 s; log:\n%s" % self.tail_log())

    def tail_log(self, n=30):
        try:
            with open(self.exporter_log, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return "(no log)"

    # -- chaos -------------------------------------------------------------

    def disturbed(self):
        return [n for n in self.nodes if n.state in (DOWN, HUNG)]

    def begin_disturbance(self, now):
        a = self.args
        candidates = [n for n in self.nodes if n.state == UP and now - n.last_change >= a.settle]
        if not candidates:
            return
        n = self.rng.choice(candidates)
        dur = self.rng.uniform(a.min_disturb, a.max_disturb)
        r = self.rng.random()
        if r < 0.5:
            kind = "hang (SIGSTOP)"
            signal_pid(n.proc, signal.SIGSTOP)
            n.state = HUNG
        elif r < 0.75:
            kind = "stop (SHUTDOWN NOSAVE)"
            try:
                c = Resp(n.port, timeout=2)
                try:
                    c.send([("SHUTDOWN", "NOSAVE")])
                    try:
                        c.read()  # the server closes without a reply
                    except (OSError, SoakError):
                        pass
                finally:
                    c.close()
            except OSError:
                signal_pid(n.proc, signal.SIGTERM)
                kind = "stop (SIGTERM)"
            reap(n.proc, 5)
            forget(n.proc)
            n.state = DOWN
        else:
            kind = "stop (SIGTERM)"
            signal_pid(n.proc, signal.SIGTERM)
            reap(n.proc, 5)
            forget(n.proc)
            n.state = DOWN
        t = time.monotonic()
        n.kind = kind
        n.last_change = t
        n.disturbed_since = t
        n.until = t + dur
        n.restart_failures = 0
        n.pending_recovery = None
        self.count(kind)
        log("%s node %d (:%d) for %.1f s [disturbed now: %d]" % (
            kind, n.idx, n.port, dur, len(self.disturbed())))

    def end_disturbance(self, n):
        if n.state == HUNG:
            signal_pid(n.proc, signal.SIGCONT)
            t = time.monotonic()
            n.state = UP
            n.last_change = t
            n.pending_recovery = (t, "resume")
            self.count("resume (SIGCONT)")
            log("resume (SIGCONT) node %d (:%d) after %.1f s" % (n.idx, n.port, t - n.disturbed_since))
            return
        # DOWN: restart on the same port (the exporter polls fixed addresses).
        n.launch()
        if n.wait_ready(10):
            try:
                seed(n.port, n.idx)
            except (OSError, SoakError) as e:
                log("warning: seeding restarted node %d failed: %s" % (n.idx, e))
            t = time.monotonic()
            n.state = UP
            n.last_change = t
            n.pending_recovery = (t, "restart")
            self.count("restart")
            log("restart node %d (:%d) pid %d after %.1f s down" % (
                n.idx, n.port, n.proc.pid, t - n.disturbed_since))
            return
        reap(n.proc, 2)
        forget(n.proc)
        n.restart_failures += 1
        self.count("restart failed (retried)")
        if n.restart_failures >= 10:
            n.state = LOST
            n.until = None
            n.last_change = time.monotonic()
            self.count("node lost (port taken)")
            log("node %d (:%d) could not be restarted 10 times; excluded from checks" % (n.idx, n.port))
        else:
            n.until = time.monotonic() + 2.0
            log("restart of node %d (:%d) failed (port busy?); retrying in 2 s" % (n.idx, n.port))

    def chaos_tick(self, now, allow_new):
        for n in self.nodes:
            if n.state in (DOWN, HUNG) and n.until is not None and now >= n.until:
                self.end_disturbance(n)
        # Nodes that died on their own (should not happen) are noticed here.
        for n in self.nodes:
            if n.state in (UP, HUNG) and n.proc is not None and n.proc.poll() is not None:
                log("warning: node %d (:%d) exited on its own (code %s); restarting" % (
                    n.idx, n.port, n.proc.returncode))
                forget(n.proc)
                self.count("unexpected node exit")
                n.state = DOWN
                n.kind = "unexpected exit"
                n.disturbed_since = n.last_change = now
                n.until = now + self.args.min_disturb
        if allow_new and len(self.disturbed()) < self.args.max_disturbed:
            if self.rng.random() < self.args.chaos_rate:
                self.begin_disturbance(now)

    # -- checks ------------------------------------------------------------

    def check(self, t_req):
        """Scrape /metrics and run the stall check. Returns the parsed
        metrics or None when the scrape failed."""
        a = self.args
        w = self.win
        t_start = time.monotonic()
        try:
            st, body = self.http.get("/metrics")
        except (OSError, http.client.HTTPException) as e:
            self.scrape_errors += 1
            w["scrape_errors"] += 1
            log("scrape failed: %s" % e)
            return None
        ms = (time.monotonic() - t_start) * 1e3
        self.scrape_ms.append(ms)
        w["scrape_ms_max"] = max(w["scrape_ms_max"], ms)
        if st != 200:
            self.scrape_errors += 1
            w["scrape_errors"] += 1
            log("scrape status %d" % st)
            return None
        m = parse_metrics(body)
        self.checks += 1
        w["checks"] += 1
        w["late_ms"] = max(w["late_ms"], (t_start - t_req) * 1e3)
        # Failed polls of nodes that were healthy at the previous check and
        # still are, and were not touched in between: a poll of a healthy
        # node should never fail. One failure recovers within a second, so
        # the age check below can miss it; the error counters cannot.
        prev = self.prev_check
        if prev is not None:
            pt, perr = prev
            for n in self.nodes:
                if n.state != UP or pt - n.last_change < a.settle:
                    continue
                d = m["errors"].get(n.port, 0.0) - perr.get(n.port, (0.0, {}))[0]
                if d > 0:
                    before = perr.get(n.port, (0.0, {}))[1]
                    reasons = {r: v - before.get(r, 0.0) for r, v in m["reasons"].get(n.port, {}).items()
                               if v - before.get(r, 0.0) > 0}
                    for r, v in reasons.items():
                        self.healthy_failures[r] = self.healthy_failures.get(r, 0) + int(v)
                    w["healthy_fail"] += int(d)
                    psi = psi_cpu_some_avg10()
                    self.healthy_failure_events.append((t_req - T0[0], n.port, reasons, psi))
                    log("failed poll of healthy node :%d: %s (%.0f s since last change; CPU pressure avg10 %s%%, load %.2f)" % (
                        n.port, ", ".join("%s x%d" % (r, v) for r, v in sorted(reasons.items())),
                        t_req - n.last_change, fmt(psi, 0), os.getloadavg()[0]))
        self.prev_check = (t_req, {p: (v, dict(m["reasons"].get(p, {}))) for p, v in m["errors"].items()})
        ages, ups = m["age"], m["up"]
        t_rel = t_req - T0[0]
        for n in self.nodes:
            since = t_req - n.last_change
            up = ups.get(n.port)
            if n.state == UP and n.pending_recovery is not None and up == 1.0:
                t_back, kind = n.pending_recovery
                self.recoveries.append((kind, max(0.0, t_req - t_back)))
                n.pending_recovery = None
            if n.state in (DOWN, HUNG) and since >= self.bound and up == 1.0:
                # Disturbed for 2 x interval + timeout, yet reported up.
                self.missed_down.append((t_rel, n.port, n.state, since))
                w["missed_down"] += 1
            if n.state != UP or since < a.settle:
                continue
            self.node_checks += 1
            age = ages.get(n.port, float("inf"))
            w["max_age"] = max(w["max_age"], age)
            self.max_age_healthy = max(self.max_age_healthy, age)
            in_backoff = up == 0.0 and n.pending_recovery is not None and since < self.backoff_grace
            if not in_backoff:
                self.max_age_settled = max(self.max_age_settled, age)
            if age < self.bound:
                continue
            if up == 1.0:
                cls = "stale_up"  # last poll succeeded, next one is late: a stall
            elif in_backoff:
                cls = "backoff"  # exporter has not retried the node since it came back
            else:
                cls = "other"  # a poll of a healthy node failed
            w["viol"] += 1
            w[cls] += 1
            hung = sum(1 for x in self.nodes if x.state == HUNG)
            self.violations.append((t_rel, n.port, age, cls, up, since, hung, os.getloadavg()[0]))
            if cls != "backoff" or a.verbose:
                log("stall check: node :%d age %.2f s >= %.2f s (%s, redis_up %s, %.1f s since last change, %d hung, load %.2f)" % (
                    n.port, age, self.bound, cls, up, since, hung, os.getloadavg()[0]))
        return m

    def sample(self, t, m):
        pid = self.exporter.pid
        st = proc_status(pid)
        w = self.win
        row = {
            "t_s": round(t, 1),
            "utc": now_iso(),
            "phase": self.phase,
            "rss_kib": st.get("VmRSS"),
            "hwm_kib": st.get("VmHWM"),
            "fds": proc_fds(pid),
            "tasks": m.get("tasks") if m else None,
            "threads": st.get("Threads"),
            "cpu_s": round(proc_cpu_seconds(pid), 2),
            "metrics_rss_kib": round(m["rss_bytes"] / 1024) if m and "rss_bytes" in m else None,
            "metrics_open_fds": m.get("open_fds") if m else None,
            "metrics_cpu_s": m.get("cpu_seconds") if m else None,
            "nodes_up_exporter": int(sum(m["up"].values())) if m else None,
            "nodes_up_harness": sum(1 for n in self.nodes if n.state == UP),
            "nodes_down": sum(1 for n in self.nodes if n.state in (DOWN, LOST)),
            "nodes_hung": sum(1 for n in self.nodes if n.state == HUNG),
            "checks": w["checks"],
            "max_age_healthy_s": round(w["max_age"], 3),
            "violations": w["viol"],
            "violations_stale_up": w["stale_up"],
            "violations_backoff": w["backoff"],
            "violations_other": w["other"],
            "missed_down": w["missed_down"],
            "scrape_ms_max": round(w["scrape_ms_max"], 1),
            "scrape_errors": w["scrape_errors"],
            "polls_total": int(sum(m["polls"].values())) if m else None,
            "poll_errors_total": int(sum(m["errors"].values())) if m else None,
            "healthy_poll_failures": w["healthy_fail"],
            "loadavg1": os.getloadavg()[0],
            "psi_cpu_some_avg10": psi_cpu_some_avg10(),
            "exporter_runq_wait_s": None,
            "check_late_ms_max": round(w["late_ms"], 1),
        }
        sw = proc_sched_wait_ns(pid)
        if sw is not None:
            if self.last_sched is not None:
                row["exporter_runq_wait_s"] = round((sw[1] - self.last_sched[1]) / 1e9, 3)
            self.last_sched = sw
        up = row["nodes_up_exporter"]
        row["fds_minus_up"] = row["fds"] - up if up is not None else None
        row["tasks_minus_up"] = int(row["tasks"] - up) if up is not None and row["tasks"] is not None else None
        if row["tasks"] is not None:
            row["tasks"] = int(row["tasks"])
        self.samples.append(row)
        if self.csv:
            self.csv.write(",".join("" if row[c] is None else str(row[c]) for c in CSV_COLS) + "\n")
            self.csv.flush()
        log("sample: rss %s KiB, fds %s, tasks %s, threads %s, cpu %.1f s, up %s/%d (harness %d up, %d down, %d hung), max age healthy %.2f s, violations %d, load %.2f" % (
            row["rss_kib"], row["fds"], row["tasks"], row["threads"], row["cpu_s"],
            row["nodes_up_exporter"], len(self.nodes), row["nodes_up_harness"],
            row["nodes_down"], row["nodes_hung"], w["max_age"], w["viol"], row["loadavg1"])
            + ", cpu pressure %s%%, exporter waited %s s for a CPU" % (
                fmt(row["psi_cpu_some_avg10"], 0), fmt(row["exporter_runq_wait_s"], 2)))
        self.win = self._new_window()

    # -- main loop -----------------------------------------------------------

    def run(self):
        a = self.args
        self.tmp = tempfile.mkdtemp(prefix="redis-vitals-soak-")
        log("temp dir %s" % self.tmp)
        if a.csv:
            self.csv = open(a.csv, "w")
            self.csv.write(",".join(CSV_COLS) + "\n")
        self.start_fleet()
        self.start_exporter()
        T0[0] = time.monotonic()
        self.wall_start = now_iso()
        duration = a.minutes * 60.0
        end = T0[0] + duration
        tick = 0.1
        next_chaos = T0[0] + a.chaos_delay
        next_check = T0[0]
        next_sample = T0[0]
        max_iters = int(duration / tick) * 3 + 10000
        log("soak: %d nodes, %.1f min, interval %d ms, timeout %d ms, stall bound %.2f s, seed %d" % (
            len(self.nodes), a.minutes, a.interval_ms, a.timeout_ms, self.bound, a.seed))
        for _ in range(max_iters):
            now = time.monotonic()
            if now >= end:
                break
            if self.exporter.poll() is not None:
                raise SoakError("redis-vitals exited during the soak (code %s); log:\n%s" % (
                    self.exporter.returncode, self.tail_log()))
            if now >= next_chaos:
                self.chaos_tick(now, allow_new=True)
                next_chaos += 1.0
                if next_chaos < now:
                    next_chaos = now + 1.0
            else:
                # Recoveries are due at their own times, not on the 1 s grid.
                for n in self.nodes:
                    if n.state in (DOWN, HUNG) and n.until is not None and now >= n.until:
                        self.end_disturbance(n)
            if now >= next_check:
                m = self.check(now)
                next_check += a.check_every
                if next_check < now:
                    next_check = now + a.check_every
                if now >= next_sample:
                    self.sample(now - T0[0], m)
                    next_sample += a.sample_every
                    if next_sample < now:
                        next_sample = now + a.sample_every
            time.sleep(max(0.0, min(tick, next_check - time.monotonic(), next_chaos - time.monotonic())))
        # One last sample at the end of the chaos phase.
        m = self.check(time.monotonic())
        self.sample(time.monotonic() - T0[0], m)
        self.chaos_end_t = time.monotonic() - T0[0]
        self.unrecovered = sum(1 for n in self.nodes if n.pending_recovery is not None)
        if a.calm_max > 0:
            self.calm_tail()
        self.wall_end = now_iso()
        self.stop_exporter()

    def calm_tail(self):
        """End every disturbance, then keep checking until the exporter
        reports every node up again (bounded by --calm-max). The last sample
        is then comparable with the one taken before any chaos: same nodes,
        all up, same connections."""
        a = self.args
        self.phase = "calm"
        log("calm tail: ending every disturbance, waiting up to %.0f s for all nodes to be seen up" % a.calm_max)
        t_calm = time.monotonic()
        end = t_calm + a.calm_max
        next_check = t_calm
        next_sample = t_calm + a.sample_every
        all_up = False
        for _ in range(int(a.calm_max / 0.1) * 3 + 1000):
            now = time.monotonic()
            if now >= end:
                break
            if self.exporter.poll() is not None:
                raise SoakError("redis-vitals exited during the calm tail (code %s)" % self.exporter.returncode)
            for n in self.nodes:
                if n.state in (DOWN, HUNG):
                    if n.state == DOWN and n.until is not None and n.until > now and n.restart_failures:
                        continue  # a failed restart waits for its retry time
                    self.end_disturbance(n)
            if now >= next_check:
                m = self.check(now)
                next_check = max(next_check + a.check_every, now)
                if now >= next_sample:
                    self.sample(now - T0[0], m)
                    next_sample = max(next_sample + a.sample_every, now)
                live = [n for n in self.nodes if n.state != LOST]
                if m is not None and all(n.state == UP for n in live) and all(
                        m["up"].get(n.port) == 1.0 for n in live):
                    all_up = True
                    break
            time.sleep(max(0.0, min(0.1, next_check - time.monotonic())))
        took = time.monotonic() - t_calm
        # Let connections settle for one more interval, then the final sample.
        time.sleep(2 * self.interval)
        m = self.check(time.monotonic())
        self.sample(time.monotonic() - T0[0], m)
        self.calm = (took, all_up)
        log("calm tail: %s after %.1f s" % (
            "every node seen up" if all_up else "NOT every node seen up", took))

    def stop_exporter(self):
        self.http.close()
        t = time.monotonic()
        signal_pid(self.exporter, signal.SIGTERM)
        code = reap(self.exporter, 15)
        self.exit_info = (code, time.monotonic() - t)
        forget(self.exporter)
        log("redis-vitals stopped by SIGTERM: exit code %s after %.2f s" % self.exit_info)

    # -- report ----------------------------------------------------------------

    def summary(self):
        a = self.args
        chaos = [r for r in self.samples if r["phase"] == "chaos" and r["rss_kib"] is not None]
        steady = [r for r in chaos if r["t_s"] >= a.warmup]
        if len(steady) < 2:
            steady = chaos
        L = []
        L.append("## Soak: %d nodes, %.0f min under chaos" % (len(self.nodes), a.minutes))
        L.append("")
        L.append("- run: %s to %s (UTC); seed %d; %.0f s of chaos, then a calm tail (every disturbance ended) until the exporter saw all nodes up" % (
            self.wall_start, self.wall_end, a.seed, getattr(self, "chaos_end_t", float("nan"))))
        shown = ["redis-vitals"] + [
            "<toml: %d addrs>" % len(self.nodes) if x.endswith("vitals.toml") else x
            for x in self.exporter_argv[1:]
        ]
        L.append("- exporter: `%s`" % " ".join(shown))
        L.append("- chaos: at most %d of %d nodes disturbed at a time, each for %.0f-%.0f s; stall bound 2 x interval + timeout = %.2f s; a node counts as healthy %.0f s after its last change" % (
            a.max_disturbed, len(self.nodes), a.min_disturb, a.max_disturb, self.bound, a.settle))
        L.append("- samples: %d every %.0f s (%d after the %.0f s warm-up); stall checks: %d scrapes every %.1f s, %d healthy-node checks" % (
            len(self.samples), a.sample_every, len(steady), a.warmup, self.checks, a.check_every, self.node_checks))
        L.append("")
        L.append("| chaos action | count |")
        L.append("|---|---|")
        for k in sorted(self.actions):
            L.append("| %s | %d |" % (k, self.actions[k]))
        L.append("| **total** | %d |" % sum(self.actions.values()))
        L.append("")
        verdicts = {}
        if steady:
            first, last = steady[0], steady[-1]
            mid = min(steady, key=lambda r: abs(r["t_s"] - (first["t_s"] + last["t_s"]) / 2))
            span_h = (last["t_s"] - first["t_s"]) / 3600.0
            ts = [r["t_s"] for r in steady]
            L.append("Exporter process from t = %.0f s (after warm-up) to t = %.0f s:" % (first["t_s"], last["t_s"]))
            L.append("")
            L.append("| metric | start (t=%.0fs) | middle (t=%.0fs) | end (t=%.0fs) | min | max | slope / hour | change over run (slope x span) |" % (
                first["t_s"], mid["t_s"], last["t_s"]))
            L.append("|---|---|---|---|---|---|---|---|")
            for key, label, digits in (
                ("rss_kib", "RSS (VmRSS, KiB)", 0),
                ("fds", "open fds (/proc/PID/fd)", 0),
                ("fds_minus_up", "open fds minus nodes up", 0),
                ("tasks", "redis_vitals_tasks", 0),
                ("tasks_minus_up", "tasks minus nodes up", 0),
                ("threads", "threads", 0),
            ):
                pts = [(r["t_s"], r[key]) for r in steady if r[key] is not None]
                if not pts:
                    continue
                vs = [v for _, v in pts]
                sl = slope_per_hour([t for t, _ in pts], vs)
                L.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    label, fmt(first[key], digits), fmt(mid[key], digits), fmt(last[key], digits),
                    fmt(min(vs), digits), fmt(max(vs), digits), fmt(sl, 1), fmt(sl * span_h, 1)))
                verdicts[key] = (sl, sl * span_h, first[key], min(vs), max(vs))
            base = self.samples[0]
            final = self.samples[-1]
            if self.calm and final["phase"] == "calm":
                L.append("")
                L.append("With every node up, before any chaos and after the calm tail (%s, %.0f s after the chaos ended). RSS before chaos is before the warm-up, so only fds, tasks and threads compare exactly:" % (
                    "all nodes seen up" if self.calm[1] else "NOT all nodes seen up", self.calm[0]))
                L.append("")
                L.append("| metric | before chaos (t=%.0fs) | after chaos (t=%.0fs) | difference |" % (base["t_s"], final["t_s"]))
                L.append("|---|---|---|---|")
                for key, label in (("rss_kib", "RSS (KiB)"), ("fds", "open fds"), ("tasks", "redis_vitals_tasks"),
                                   ("threads", "threads"), ("nodes_up_exporter", "nodes up (redis_up)")):
                    if base[key] is not None and final[key] is not None:
                        L.append("| %s | %s | %s | %+.0f |" % (label, fmt(base[key], 0), fmt(final[key], 0), final[key] - base[key]))
                verdicts["_allup"] = (base, final)
            hwm = last.get("hwm_kib")
            cpu = (last["cpu_s"] - first["cpu_s"]) / max(1e-9, last["t_s"] - first["t_s"])
            L.append("")
            L.append("- peak RSS (VmHWM) at the end: %s KiB" % fmt(hwm, 0))
            L.append("- exporter CPU: %.2f%% of one core on average (%.1f s over %.0f s, scrapes every %.1f s included)" % (
                cpu * 100, last["cpu_s"] - first["cpu_s"], last["t_s"] - first["t_s"], a.check_every))
            polls = [r["polls_total"] for r in steady if r["polls_total"] is not None]
            if len(polls) > 1:
                L.append("- polls: %d over the window (%.1f per node-second)" % (
                    polls[-1] - polls[0], (polls[-1] - polls[0]) / len(self.nodes) / max(1e-9, last["t_s"] - first["t_s"])))
            L.append("- host load average (1 min): median %.2f, max %.2f" % (
                pct([r["loadavg1"] for r in self.samples], 50), max(r["loadavg1"] for r in self.samples)))
            psis = [r["psi_cpu_some_avg10"] for r in self.samples if r["psi_cpu_some_avg10"] is not None]
            if psis:
                L.append("- host CPU pressure (/proc/pressure/cpu some avg10): median %.0f%%, max %.0f%%" % (pct(psis, 50), max(psis)))
            waits = [(r["exporter_runq_wait_s"], r["cpu_s"]) for r in self.samples if r["exporter_runq_wait_s"] is not None]
            if waits:
                tot_wait = sum(x for x, _ in waits)
                span = self.samples[-1]["t_s"] - self.samples[0]["t_s"]
                L.append("- exporter threads runnable but waiting for a CPU (schedstat): %.1f s in total over %.0f s; worst %.0f s window: %.2f s" % (
                    tot_wait, span, a.sample_every, max(x for x, _ in waits)))
            L.append("- scrape of /metrics: p50 %.1f ms, max %.1f ms, %d failed" % (
                pct(self.scrape_ms, 50), max(self.scrape_ms) if self.scrape_ms else float("nan"), self.scrape_errors))
        L.append("")
        by = {"stale_up": 0, "backoff": 0, "other": 0}
        for v in self.violations:
            by[v[3]] += 1
        L.append("Stall check (every %.1f s; healthy = running, not paused, untouched for %.0f s):" % (a.check_every, a.settle))
        L.append("")
        L.append("| | value |")
        L.append("|---|---|")
        L.append("| max last_success_age over healthy nodes | %.3f s |" % self.max_age_healthy)
        L.append("| same, without nodes still in reconnect backoff | %.3f s |" % self.max_age_settled)
        L.append("| violations (age >= %.2f s), all | %d of %d checks |" % (self.bound, len(self.violations), self.node_checks))
        L.append("| - node reported up, its next poll late (a stall) | %d |" % by["stale_up"])
        L.append("| - node reported down, a poll of a healthy node failed | %d |" % by["other"])
        L.append("| - node back less than %.0f s ago, exporter still in reconnect backoff | %d |" % (self.backoff_grace, by["backoff"]))
        L.append("| disturbed >= %.2f s but still reported up | %d |" % (self.bound, len(self.missed_down)))
        hf = sum(self.healthy_failures.values())
        L.append("| failed polls of healthy nodes (redis_vitals_poll_errors_total deltas) | %d%s |" % (
            hf, (" (" + ", ".join("%s %d" % kv for kv in sorted(self.healthy_failures.items())) + ")") if hf else ""))
        if self.healthy_failure_events:
            ps = [e[3] for e in self.healthy_failure_events if e[3] is not None]
            if ps:
                L.append("| CPU pressure (avg10) when those failures were seen: min / median | %.0f%% / %.0f%% |" % (min(ps), pct(ps, 50)))
        for kind in ("resume", "restart"):
            rs = [s for k, s in self.recoveries if k == kind]
            if rs:
                L.append("| time until the exporter saw a node up after %s: p50 / p90 / max | %.1f / %.1f / %.1f s (n=%d) |" % (
                    kind, pct(rs, 50), pct(rs, 90), max(rs), len(rs)))
        L.append("| nodes back but not yet seen up when the chaos ended (the calm tail waits for them) | %d |" % self.unrecovered)
        if self.exit_info:
            L.append("| exporter shutdown on SIGTERM | exit code %s after %.2f s |" % self.exit_info)
        L.append("")
        # Verdicts: flat means the fitted change over the whole run is small.
        L.append("Verdicts:")
        L.append("")
        if "rss_kib" in verdicts:
            sl, ch, start, lo, hi = verdicts["rss_kib"]
            lim = max(2048.0, 0.05 * start)
            L.append("- RSS: %s (fitted change %+.0f KiB over the run, %+.0f KiB/h; limit +/-%.0f KiB)" % (
                "flat" if abs(ch) <= lim else "NOT flat", ch, sl, lim))
        # fds and tasks follow the number of connected nodes (one socket and
        # one connection task per node), which the chaos moves by up to 10%;
        # "minus nodes up" takes that out.
        allup = verdicts.get("_allup")
        for key, norm, label, lim in (("fds", "fds_minus_up", "fds", 5.0), ("tasks", "tasks_minus_up", "tasks", 3.0),
                                      ("threads", None, "threads", 1.0)):
            if key not in verdicts:
                continue
            sl, ch, start, lo, hi = verdicts[key]
            flat = abs(ch) <= lim
            extra = ""
            if norm and norm in verdicts:
                nsl, nch, _, nlo, nhi = verdicts[norm]
                flat = flat and abs(nch) <= lim
                extra += "; minus nodes up: fitted change %+.1f, range %s-%s" % (nch, fmt(nlo, 0), fmt(nhi, 0))
            if allup and allup[0][key] is not None and allup[1][key] is not None:
                d = allup[1][key] - allup[0][key]
                flat = flat and abs(d) <= lim
                extra += "; all nodes up before/after chaos: %s -> %s" % (fmt(allup[0][key], 0), fmt(allup[1][key], 0))
            L.append("- %s: %s (fitted change %+.1f over the run, %+.1f/h; range %s-%s%s; limit +/-%.0f)" % (
                label, "flat" if flat else "NOT flat", ch, sl, fmt(lo, 0), fmt(hi, 0), extra, lim))
        stalls = by["stale_up"] + by["other"]
        if hf:
            L.append("- failed polls of healthy nodes: %d (%s). These nodes were running and untouched; see the CPU pressure figures for whether the host starved the exporter." % (
                hf, ", ".join("%s %d" % kv for kv in sorted(self.healthy_failures.items()))))
        if stalls == 0:
            L.append("- stalls: none. No healthy node's data was older than %.2f s except while the exporter was in reconnect backoff for a node that had just come back; no poll waited on a hung node." % self.bound)
        else:
            L.append("- stalls: %d violation(s) on healthy nodes outside reconnect backoff (listed below)." % stalls)
        if self.missed_down:
            L.append("- down detection: %d time(s) a node hung/stopped for >= %.2f s was still reported up." % (len(self.missed_down), self.bound))
        else:
            L.append("- down detection: every hung or stopped node was reported down within %.2f s." % self.bound)
        real = [v for v in self.violations if v[3] != "backoff"]
        if real:
            L.append("")
            L.append("| t (s) | node port | age (s) | class | redis_up | s since last change | hung nodes | load |")
            L.append("|---|---|---|---|---|---|---|---|")
            for v in real[:40]:
                L.append("| %.1f | %d | %.3f | %s | %s | %.1f | %d | %.2f |" % v)
            if len(real) > 40:
                L.append("| ... %d more | | | | | | | |" % (len(real) - 40))
        return "\n".join(L) + "\n"


def machine_line():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = "%.1f GiB" % (int(line.split()[1]) / 1048576.0)
    except OSError:
        pass
    return "%d CPUs (nproc), %s, %s RAM, Linux %s, Python %s" % (
        os.cpu_count() or 0, cpu, mem, platform.release(), platform.python_version())


def main():
    ap = argparse.ArgumentParser(description="Soak benchmark of redis-vitals under chaos.")
    ap.add_argument("--minutes", type=float, default=30.0, help="soak duration (default 30)")
    ap.add_argument("--nodes", type=int, default=100, help="redis-server nodes (default 100)")
    ap.add_argument("--seed", type=int, default=1, help="chaos RNG seed (default 1)")
    ap.add_argument("--csv", help="write the time series (one row per sample) here")
    ap.add_argument("--md", help="also write the Markdown summary here")
    ap.add_argument("--interval-ms", type=int, default=500, help="poll.interval (default 500)")
    ap.add_argument("--timeout-ms", type=int, default=300, help="poll.timeout (default 300)")
    ap.add_argument("--max-backoff-s", type=float, default=30.0,
                    help="the exporter's poll.max-backoff (its default, 30); only used to classify violations")
    ap.add_argument("--max-disturbed", type=int, default=None, help="most nodes disturbed at once (default 10%%)")
    ap.add_argument("--min-disturb", type=float, default=5.0, help="shortest disturbance, s (default 5)")
    ap.add_argument("--max-disturb", type=float, default=60.0, help="longest disturbance, s (default 60)")
    ap.add_argument("--chaos-rate", type=float, default=0.5,
                    help="probability per second of a new disturbance while under the cap (default 0.5)")
    ap.add_argument("--chaos-delay", type=float, default=5.0, help="seconds before the first disturbance")
    ap.add_argument("--settle", type=float, default=5.0, help="a node is healthy this long after its last change (default 5)")
    ap.add_argument("--check-every", type=float, default=1.0, help="stall check period, s (default 1)")
    ap.add_argument("--sample-every", type=float, default=10.0, help="resource sample period, s (default 10)")
    ap.add_argument("--calm-max", type=float, default=90.0,
                    help="after the chaos, wait at most this long (s) for the exporter to see every node up again; 0 skips the calm tail (default 90)")
    ap.add_argument("--warmup", type=float, default=60.0, help="samples before this (s) are left out of start/slope (default 60)")
    ap.add_argument("--redis-hz", type=int, default=10)
    ap.add_argument("--log-level", default="warn", help="the exporter's --log.level (default warn)")
    ap.add_argument("--vitals-bin", default=DEFAULT_VITALS)
    ap.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (node and exporter logs)")
    ap.add_argument("--verbose", action="store_true", help="also log backoff-class violations")
    a = ap.parse_args()

    if not os.path.isfile(a.vitals_bin) or not os.access(a.vitals_bin, os.X_OK):
        sys.exit("error: %s not found; run `cargo build --release` first" % a.vitals_bin)
    if not shutil.which(a.redis_server) and not os.access(a.redis_server, os.X_OK):
        sys.exit("error: redis-server not found (apt-get install redis-server)")
    if a.max_disturbed is None:
        a.max_disturbed = max(1, a.nodes // 10)
    if not (0 < a.minutes <= 24 * 60) or a.nodes < 1 or a.min_disturb <= 0 or a.max_disturb < a.min_disturb:
        sys.exit("error: bad arguments")
    src = os.path.join(REPO, "src")
    if os.path.isdir(src):
        newest = max((os.path.getmtime(os.path.join(d, f)) for d, _, fs in os.walk(src) for f in fs), default=0)
        if newest > os.path.getmtime(a.vitals_bin):
            print("warning: %s is older than src/; run `cargo build --release`" % a.vitals_bin, file=sys.stderr)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    log("machine: %s" % machine_line())
    log("argv: %s" % " ".join(sys.argv))
    soak = Soak(a)
    code = 0
    try:
        soak.run()
        text = soak.summary()
        print()
        print(text)
        if a.md:
            with open(a.md, "w") as f:
                f.write("Machine: %s\n\nCommand: `%s`\n\n" % (machine_line(), " ".join(sys.argv)))
                f.write(text)
    except SoakError as e:
        log("error: %s" % e)
        code = 1
        if soak.samples and T0[0] is not None:
            soak.wall_end = now_iso()
            print()
            print("Partial summary (the run failed):\n")
            print(soak.summary())
    finally:
        kill_all()
        if soak.csv:
            soak.csv.close()
        if soak.tmp and not a.keep_tmp:
            shutil.rmtree(soak.tmp, ignore_errors=True)
        elif soak.tmp:
            log("kept %s" % soak.tmp)
    return code


if __name__ == "__main__":
    sys.exit(main())
