#!/usr/bin/env python3
"""Side-by-side cost of redis-vitals and the peer exporter (redis_exporter).

One command, python3 standard library only. For each fleet size N it starts
N real redis-server nodes on loopback, puts a little data in each, and then
runs the two exporters in alternating phases (vitals, peer, vitals, peer, ...)
against the same nodes, never at the same time, so that every Redis-side
delta belongs to one exporter:

* redis-vitals polls every node in the background (poll interval = the round
  interval); a Prometheus-like scraper GETs /metrics once per interval.
* the peer runs in multi-target mode (-redis.addr=""); per interval the
  scraper GETs /scrape?target=redis://127.0.0.1:PORT once for every node,
  with up to --peer-concurrency requests in flight (as Prometheus would).

Both collect every node once per interval. See bench/README.md for what each
column means and how it is measured.

Build first:  cargo build --release
Run:          python3 bench/compare.py --nodes 1,10,100 --rounds 20 --runs 3
"""

import argparse
import resp  # noqa: E402  (bench/resp.py, beside this script)
import concurrent.futures
import ctypes
import datetime
import glob
import gzip
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_VITALS = os.path.join(REPO, "target", "release", "redis-vitals")
DEFAULT_PEER = "/usr/bin/prometheus-redis-exporter"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# ---------------------------------------------------------------------------
# Process bookkeeping: every child is registered, and killed on any exit.
# ---------------------------------------------------------------------------

PROCS = []  # (Popen, name)
PROCS_LOCK = threading.Lock()
DEADLINE = [float("inf")]  # monotonic; set in main()


class BenchError(Exception):
    pass


def check_deadline(what):
    if time.monotonic() > DEADLINE[0]:
        raise BenchError("global deadline passed while %s (raise --max-minutes)" % what)


def _die_with_parent():
    # PR_SET_PDEATHSIG = 1: the child gets SIGKILL if the harness dies,
    # even by SIGKILL, so no redis-server or exporter outlives a crash.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


def spawn(argv, name, log_path, cwd=None):
    log = open(log_path, "ab")
    try:
        p = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            preexec_fn=_die_with_parent,
            close_fds=True,
        )
    finally:
        log.close()
    with PROCS_LOCK:
        PROCS.append((p, name))
    return p


def stop(p, grace=5.0):
    """SIGTERM, wait up to `grace` seconds, then SIGKILL. By pid only."""
    if p.poll() is None:
        try:
            p.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                p.kill()
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
    with PROCS_LOCK:
        for i, (q, _) in enumerate(PROCS):
            if q is p:
                del PROCS[i]
                break


def stop_all():
    with PROCS_LOCK:
        procs = list(PROCS)
    # Terminate everything first, then wait with one shared deadline.
    for p, _ in procs:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    end = time.monotonic() + 5.0
    for p, _ in procs:
        left = max(0.0, end - time.monotonic())
        try:
            p.wait(timeout=left)
        except subprocess.TimeoutExpired:
            try:
                p.kill()
            except ProcessLookupError:
                pass
    for p, _ in procs:
        try:
            p.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
    with PROCS_LOCK:
        PROCS.clear()


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


# ---------------------------------------------------------------------------
# /proc readings
# ---------------------------------------------------------------------------


def proc_ticks_seconds(pid):
    """utime+stime of the whole process (dead threads included), seconds.
    Resolution: one clock tick (1/CLK_TCK s)."""
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def proc_sched_ns(pid):
    """{tid: ns on CPU} from /proc/PID/task/*/schedstat (nanoseconds, live
    threads only)."""
    out = {}
    for path in glob.glob("/proc/%d/task/*/schedstat" % pid):
        try:
            with open(path) as f:
                out[int(path.split("/")[4])] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


class CpuMark:
    def __init__(self, pid):
        self.ticks = proc_ticks_seconds(pid)
        self.sched = proc_sched_ns(pid)


def cpu_delta(before, after):
    """Seconds of CPU between two marks and the source used. schedstat (ns)
    when no thread that existed at `before` has gone by `after` (threads
    born in between count entirely, which is right); otherwise the tick
    counters of /proc/PID/stat, which keep dead threads' time."""
    if before.sched and set(before.sched) <= set(after.sched):
        ns = sum(after.sched.values()) - sum(before.sched.values())
        return ns / 1e9, "schedstat"
    return after.ticks - before.ticks, "stat-ticks"


def redis_fleet_cpu_ns(pids):
    total = 0
    for pid in pids:
        total += sum(proc_sched_ns(pid).values())
    return total


def proc_status_kib(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


# ---------------------------------------------------------------------------
# A minimal RESP client: one persistent connection per node for the harness.
# ---------------------------------------------------------------------------


def Resp(port, timeout=10.0):
    """A harness connection to one node (see resp.py)."""
    return resp.Resp(port, timeout, BenchError)


def parse_info(text):
    """INFO text -> (fields, {cmd: (calls, usec)})."""
    fields, cmds = {}, {}
    for line in text.decode(errors="replace").splitlines():
        if not line or line[0] == "#" or ":" not in line:
            continue
        k, v = line.split(":", 1)
        if k.startswith("cmdstat_"):
            kv = dict(p.split("=", 1) for p in v.split(","))
            cmds[k[8:]] = (int(kv["calls"]), int(kv["usec"]))
        else:
            fields[k] = v
    return fields, cmds


SNAP_CMD = ("INFO", "stats", "commandstats")


def snapshot_all(conns):
    """For every node, two back-to-back pipelined `INFO stats commandstats`
    (executed atomically w.r.t. other clients). Returns per node
    (first, second): the first is the snapshot; second - first is the cost
    of one harness INFO call on that node."""
    for c in conns:
        c.send([SNAP_CMD, SNAP_CMD])
    out = []
    for c in conns:
        a = parse_info(c.read())
        b = parse_info(c.read())
        out.append((a, b))
    return out


# ---------------------------------------------------------------------------
# Redis fleet
# ---------------------------------------------------------------------------


def free_ports(n):
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def seed(conn, i):
    """A little realistic data and traffic: strings, a TTL'd session, a hash,
    a list, counters, hits and misses."""
    cmds = []
    for k in range(20):
        cmds.append(("SET", "key:%d" % k, "v" * (64 + k)))
    for k in range(5):
        cmds.append(("SET", "session:%d" % k, "s%d" % k, "EX", "3600"))
    cmds.append(("HSET", "user:1", "name", "n%d" % i, "age", "42", "city", "x"))
    cmds.append(("RPUSH", "queue", "a", "b", "c"))
    for _ in range(5):
        cmds.append(("INCR", "counter"))
    for k in range(20):
        cmds.append(("GET", "key:%d" % k))
    for k in range(10):
        cmds.append(("GET", "missing:%d" % k))
    cmds.append(("MGET", "key:1", "key:2", "nope"))
    cmds.append(("HGETALL", "user:1"))
    cmds.append(("LRANGE", "queue", "0", "-1"))
    cmds.append(("EXISTS", "key:3"))
    cmds.append(("SET", "tmp", "1"))
    cmds.append(("DEL", "tmp"))
    conn.send(cmds)
    for _ in cmds:
        conn.read()


class Fleet:
    def __init__(self, n, tmp, redis_bin, hz, verbose):
        self.n = n
        self.hz = hz
        self.tmp = tmp
        self.redis_bin = redis_bin
        self.verbose = verbose
        self.procs = []  # Popen per node
        self.ports = []
        self.conns = []

    def _start_one(self, port):
        d = os.path.join(self.tmp, "redis-%d" % port)
        os.makedirs(d, exist_ok=True)
        argv = [
            self.redis_bin,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", d,
            "--daemonize", "no",
            "--maxclients", "1024",
            "--hz", str(self.hz),
            "--logfile", os.path.join(d, "redis.log"),
        ]
        return spawn(argv, "redis:%d" % port, os.path.join(d, "stdout.log"))

    def start(self):
        pending = free_ports(self.n)
        attempts = 0
        while pending:
            attempts += 1
            if attempts > 5:
                raise BenchError("could not start %d redis-server nodes" % len(pending))
            started = [(port, self._start_one(port)) for port in pending]
            pending = []
            deadline = time.monotonic() + 30 + self.n * 0.1
            for port, p in started:
                ok = False
                for _ in range(2000):  # bounded by count and deadline
                    check_deadline("starting redis nodes")
                    if p.poll() is not None or time.monotonic() > deadline:
                        break
                    try:
                        c = Resp(port, timeout=5)
                        if c.call("PING") == b"PONG":
                            self.procs.append(p)
                            self.ports.append(port)
                            self.conns.append(c)
                            ok = True
                            break
                        c.close()
                    except (OSError, BenchError):
                        time.sleep(0.02)
                if not ok:
                    # Port taken meanwhile, or slow start: retry on a new port.
                    stop(p)
                    pending.extend(free_ports(1))
        for i, c in enumerate(self.conns):
            seed(c, i)

    def pids(self):
        return [p.pid for p in self.procs]

    def stop(self):
        for c in self.conns:
            c.close()
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            stop(p)


# ---------------------------------------------------------------------------
# HTTP scraping
# ---------------------------------------------------------------------------


class Scraper:
    """Persistent keep-alive HTTP connection per thread, like Prometheus."""

    def __init__(self, port, timeout, gzip):
        self.port = port
        self.timeout = timeout
        self.local = threading.local()
        self.headers = {"Accept": "text/plain", "User-Agent": "redis-vitals-bench"}
        if gzip:
            self.headers["Accept-Encoding"] = "gzip"

    def _conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            self.local.conn = c
        return c

    def get(self, path):
        """(status, body, seconds). Retries once on a dropped keep-alive.

        A gzip body is returned decompressed (the checks and parsers read
        text); the bytes on the wire are left in `wire_bytes()`. The time
        ends at the last body byte, before decompression."""
        for attempt in range(2):
            c = self._conn()
            t0 = time.perf_counter()
            try:
                c.request("GET", path, headers=self.headers)
                r = c.getresponse()
                body = r.read()
                dt = time.perf_counter() - t0
                self.local.wire = len(body)
                if r.getheader("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                return r.status, body, dt
            except (http.client.HTTPException, OSError):
                c.close()
                self.local.conn = None
                if attempt == 1:
                    raise
        raise BenchError("unreachable")

    def wire_bytes(self):
        """Body bytes on the wire of this thread's last get()."""
        return getattr(self.local, "wire", 0)

    def close_all(self):
        c = getattr(self.local, "conn", None)
        if c is not None:
            c.close()
            self.local.conn = None


def wait_http(scraper, path, want_status, deadline_s, proc, what):
    end = time.monotonic() + deadline_s
    for _ in range(100000):
        check_deadline(what)
        if proc.poll() is not None:
            raise BenchError("%s exited early (code %s)" % (what, proc.returncode))
        try:
            st, _, _ = scraper.get(path)
            if st == want_status:
                return
        except (OSError, http.client.HTTPException):
            pass
        if time.monotonic() > end:
            break
        time.sleep(0.05)
    raise BenchError("%s not ready within %.0f s" % (what, deadline_s))


def parse_vitals_self(body):
    """Per-node exporter self metrics from a /metrics body, and each node's
    `redis_commands_total{cmd="info"}`: commandstats are read only on detail
    polls (poll.detail-interval) and carried in between, so that value
    changes exactly when a detail poll has landed."""
    polls, dur, age, conns, up, info_calls = {}, {}, {}, {}, {}, {}
    wanted = (
        (b"redis_vitals_polls_total{", polls),
        (b"redis_vitals_poll_duration_seconds{", dur),
        (b"redis_vitals_last_success_age_seconds{", age),
        (b"redis_vitals_connections_opened_total{", conns),
        (b"redis_up{", up),
        (b"redis_commands_total{", info_calls),
    )
    for line in body.split(b"\n"):
        if not line.startswith(b"redis_"):
            continue
        for prefix, d in wanted:
            if line.startswith(prefix):
                if d is info_calls and b'cmd="info"' not in line:
                    break
                i = line.find(b'addr="')
                j = line.find(b'"', i + 6)
                d[line[i + 6 : j]] = float(line.rsplit(b" ", 1)[1])
                break
    return polls, dur, age, conns, up, info_calls


def pct(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    if len(v) == 1:
        return v[0]
    pos = (len(v) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


# ---------------------------------------------------------------------------
# One measured phase of one exporter
# ---------------------------------------------------------------------------


def run_rounds(count, interval, one_round, what):
    """Fixed-rate rounds: round k starts at t0 + k*interval (or at once if
    the previous one overran). Returns (t0, overruns, round wall times)."""
    t0 = time.monotonic()
    overruns, walls = 0, []
    for k in range(count):
        check_deadline(what)
        start_at = t0 + k * interval
        now = time.monotonic()
        if start_at > now:
            time.sleep(start_at - now)
        rs = time.monotonic()
        one_round(k)
        w = time.monotonic() - rs
        walls.append(w)
        if w > interval:
            overruns += 1
    end_at = t0 + count * interval
    now = time.monotonic()
    if end_at > now:
        time.sleep(end_at - now)
    return t0, overruns, walls


def measure_phase(kind, fleet, args, run_idx, tmp, idle_rate_ns_per_node_s):
    n = fleet.n
    interval = args.interval
    http_port = free_ports(1)[0]
    log_path = os.path.join(tmp, "%s-n%d-run%d.log" % (kind, n, run_idx))
    timeout = max(10.0, interval * 5)
    scraper = Scraper(http_port, timeout, args.gzip)
    pool = None
    res = {"kind": kind, "n": n}
    if kind == "vitals":
        cfg = os.path.join(tmp, "vitals-n%d.toml" % n)
        poll_timeout = min(2.0, interval)
        with open(cfg, "w") as f:
            f.write("[redis]\naddr = [\n")
            for port in fleet.ports:
                f.write('  "redis://127.0.0.1:%d",\n' % port)
            f.write("]\n\n[poll]\n")
            f.write('interval = "%dms"\n' % round(interval * 1000))
            f.write('timeout = "%dms"\n' % round(poll_timeout * 1000))
            if args.poll_concurrency:
                f.write("concurrency = %d\n" % args.poll_concurrency)
            f.write('\n[web]\nlisten-address = "127.0.0.1:%d"\n' % http_port)
            f.write('\n[log]\nlevel = "warn"\n')
        argv = [args.vitals_bin, "--config.file", cfg] + args.vitals_arg
        proc = spawn(argv, "redis-vitals", log_path)
        ready_path = "/-/ready"
    else:
        argv = [
            args.peer_bin,
            "-redis.addr=",
            "-web.listen-address=127.0.0.1:%d" % http_port,
        ] + args.peer_arg
        proc = spawn(argv, "peer", log_path)
        ready_path = "/"
    res["argv"] = " ".join(argv)
    try:
        wait_http(scraper, ready_path, 200, 30 + n * 0.1, proc, kind)
        targets = ["/scrape?target=redis://127.0.0.1:%d" % p for p in fleet.ports]
        lat, sizes, failures = [], [], [0]
        vitals_samples = {"dur": [], "fleet_work": [], "max_age": [], "polls": [], "conns": []}
        last_polls = {}
        # Detail polls (commandstats + latencystats asked) seen in the
        # measured scrapes, and all polls over the same scrape span.
        last_info_calls = {}
        detail = {"detail_polls": 0, "span_polls": 0}
        measuring = [False]
        if kind == "peer":
            pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=max(1, min(args.peer_concurrency, n))
            )

        def peer_one(path):
            st, body, dt = scraper.get(path)
            ok = st == 200 and b"\nredis_up 1" in body
            return ok, dt, scraper.wire_bytes()

        def one_round(_k):
            if kind == "vitals":
                st, body, dt = scraper.get("/metrics")
                if st != 200:
                    failures[0] += 1
                    return
                polls, dur, age, conns, up, info_calls = parse_vitals_self(body)
                if measuring[0]:
                    for a, v in info_calls.items():
                        if a in last_info_calls and last_info_calls[a] != v:
                            detail["detail_polls"] += 1
                    for a, p in polls.items():
                        if a in last_polls:
                            detail["span_polls"] += int(p - last_polls[a])

                    lat.append(dt)
                    sizes.append(scraper.wire_bytes())
                    if sum(1 for v in up.values() if v == 1.0) != n:
                        failures[0] += 1
                    # One duration sample per new poll of a node.
                    for a, p in polls.items():
                        if last_polls.get(a) != p and a in dur:
                            vitals_samples["dur"].append(dur[a])
                    vitals_samples["fleet_work"].append(sum(dur.values()))
                    vitals_samples["max_age"].append(max(age.values()) if age else float("nan"))
                    vitals_samples["polls"].append(sum(polls.values()))
                    vitals_samples["conns"].append(sum(conns.values()))
                last_polls.clear()
                last_polls.update(polls)
                last_info_calls.clear()
                last_info_calls.update(info_calls)
            else:
                futs = [pool.submit(peer_one, t) for t in targets]
                for f in futs:
                    ok, dt, size = f.result(timeout=timeout * 2)
                    if not ok:
                        failures[0] += 1
                    if measuring[0]:
                        lat.append(dt)
                        sizes.append(size)

        # Warm-up: connections made, caches and allocators settled.
        run_rounds(args.warmup, interval, one_round, "%s warm-up" % kind)

        # Measured window. Three nested windows: Redis snapshots (outer),
        # Redis process CPU, exporter CPU (inner); their lengths are kept so
        # that redis-vitals' continuous polls can be prorated to each.
        ts0 = time.monotonic()
        snap_before = snapshot_all(fleet.conns)
        tr0 = time.monotonic()
        rcpu0 = redis_fleet_cpu_ns(fleet.pids())
        mark0 = CpuMark(proc.pid)
        t0m = time.monotonic()
        measuring[0] = True
        failures[0] = 0
        t0, overruns, walls = run_rounds(args.rounds, interval, one_round, "%s rounds" % kind)
        mark1 = CpuMark(proc.pid)
        t1 = time.monotonic()
        rcpu1 = redis_fleet_cpu_ns(fleet.pids())
        tr1 = time.monotonic()
        snap_after = snapshot_all(fleet.conns)
        ts1 = time.monotonic()
        measuring[0] = False

        res["loadavg"] = os.getloadavg()[0]
        res["rss_kib"] = proc_status_kib(proc.pid, "VmRSS")
        res["hwm_kib"] = proc_status_kib(proc.pid, "VmHWM")
        res["threads"] = len(proc_sched_ns(proc.pid))
        cpu_s, cpu_src = cpu_delta(mark0, mark1)
        res["cpu_s"] = cpu_s
        res["cpu_src"] = cpu_src
        res["window_s"] = t1 - t0
        res["round_wall_p50_s"] = pct(walls, 50)
        res["overruns"] = overruns
        res["round_wall_p50"] = pct(walls, 50)
        res["round_wall_max"] = max(walls) if walls else float("nan")
        res["failures"] = failures[0]
        res["lat_p50_ms"] = pct(lat, 50) * 1e3
        res["lat_p99_ms"] = pct(lat, 99) * 1e3
        res["lat_max_ms"] = max(lat) * 1e3 if lat else float("nan")
        res["lat_samples"] = len(lat)
        res["bytes_per_scrape"] = statistics.median(sizes) if sizes else float("nan")

        # Redis side, per node, from INFO stats/commandstats deltas.
        usec_total, info_calls, conns_new, harness_usec = 0, 0, 0, 0
        per_cmd = {}
        for (b1, b2), (a1, a2) in zip(snap_before, snap_after):
            # The window is [reply of before#2, reply of after#1]; it holds
            # exactly one harness INFO call (before#2). Its cost on this node
            # is estimated by the two isolated harness calls before#1 and
            # after#1 (each measured by the next pipelined reply).
            c1 = b2[1]["info"][1] - b1[1]["info"][1]
            c2 = a2[1]["info"][1] - a1[1]["info"][1]
            h = (c1 + c2) / 2.0
            harness_usec += h
            before, after = b2[1], a1[1]
            for cmd, (calls, usec) in after.items():
                pc, pu = before.get(cmd, (0, 0))
                dc, du = calls - pc, usec - pu
                if cmd == "info":
                    dc -= 1
                    du -= h
                if dc or du:
                    e = per_cmd.setdefault(cmd, [0, 0.0])
                    e[0] += dc
                    e[1] += du
                usec_total += du
                if cmd == "info":
                    info_calls += dc
            conns_new += int(a1[0]["total_connections_received"]) - int(
                b2[0]["total_connections_received"]
            )
        if kind == "vitals":
            # One INFO per poll: the exact number of polls in the snapshot
            # window. The polls run continuously, so the CPU windows (a bit
            # shorter: they start after and end before the snapshots) get
            # their prorated share.
            collections = info_calls
            coll_cpu = info_calls * (t1 - t0m) / max(1e-9, ts1 - ts0)
            coll_rproc = info_calls * (tr1 - tr0) / max(1e-9, ts1 - ts0)
        else:
            # One /scrape = one collection of one node; failed ones excluded.
            # All of them fall inside every window.
            collections = max(1, len(lat) - failures[0])
            coll_cpu = coll_rproc = collections
        res["collections"] = collections
        res["snapshot_window_s"] = ts1 - ts0
        res["cpu_window_s"] = t1 - t0m
        res["exporter_info_calls"] = info_calls
        res["harness_info_usec_per_node"] = harness_usec / n
        res["redis_usec_per_coll"] = usec_total / max(1, collections)
        res["conns_per_coll"] = conns_new / max(1, collections)
        res["conns_new"] = conns_new
        res["cpu_us_per_coll"] = cpu_s * 1e6 / max(1e-9, coll_cpu)
        res["per_cmd"] = {
            k: (v[0] / max(1, collections), v[1] / max(1, collections)) for k, v in per_cmd.items()
        }
        rproc_ns = (rcpu1 - rcpu0) - idle_rate_ns_per_node_s * n * (tr1 - tr0)
        res["redis_proc_us_per_coll"] = rproc_ns / 1e3 / max(1e-9, coll_rproc)
        if kind == "vitals":
            s = vitals_samples
            res["poll_p50_ms"] = pct(s["dur"], 50) * 1e3
            res["poll_p99_ms"] = pct(s["dur"], 99) * 1e3
            res["fleet_poll_work_ms"] = statistics.median(s["fleet_work"]) * 1e3 if s["fleet_work"] else float("nan")
            res["max_age_s"] = max(s["max_age"]) if s["max_age"] else float("nan")
            res["polls_seen"] = (s["polls"][-1] - s["polls"][0]) if len(s["polls"]) > 1 else 0
            res["vitals_reconnects"] = (s["conns"][-1] - s["conns"][0]) if len(s["conns"]) > 1 else 0
            res["detail_polls"] = detail["detail_polls"]
            res["span_polls"] = detail["span_polls"]
        return res
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        scraper.close_all()
        stop(proc)


def idle_rate(fleet, seconds):
    """Redis fleet CPU with no exporter running, ns per node per second."""
    a = redis_fleet_cpu_ns(fleet.pids())
    t0 = time.monotonic()
    time.sleep(seconds)
    b = redis_fleet_cpu_ns(fleet.pids())
    return (b - a) / fleet.n / (time.monotonic() - t0)


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def med(runs, key):
    vals = [r[key] for r in runs if key in r and r[key] == r[key]]
    return statistics.median(vals) if vals else float("nan")


def fmt(v, digits=1):
    if v != v:
        return "n/a"
    if digits == 0:
        return "%d" % round(v)
    return ("%%.%df" % digits) % v


def ratio(a, b):
    if b == 0 or a != a or b != b:
        return "n/a"
    return "%.3f" % (a / b)


def table(n, vruns, pruns, args, idle_ns):
    lines = []
    lines.append(
        "### N = %d node%s (%d measured rounds x %g s, %d warm-up, medians of %d run%s)"
        % (n, "" if n == 1 else "s", args.rounds, args.interval, args.warmup, len(vruns), "" if len(vruns) == 1 else "s")
    )
    lines.append("")
    lines.append("| metric | redis-vitals | peer | vitals/peer |")
    lines.append("|---|---:|---:|---:|")

    def row(label, key, digits=1, show_ratio=True):
        a, b = med(vruns, key), med(pruns, key)
        lines.append(
            "| %s | %s | %s | %s |" % (label, fmt(a, digits), fmt(b, digits), ratio(a, b) if show_ratio else "")
        )

    row("node collections in window (per run)", "collections", 0, False)
    row("exporter CPU per node collected (µs)", "cpu_us_per_coll", 1)
    row("Redis CPU per node collected, commandstats (µs)", "redis_usec_per_coll", 1)
    row("Redis process CPU per node collected, net of idle (µs)", "redis_proc_us_per_coll", 1)
    row("new Redis connections per node collected", "conns_per_coll", 3)
    lines.append(
        "| exporter RSS after run (MiB) | %s | %s | %s |"
        % (
            fmt(med(vruns, "rss_kib") / 1024, 1),
            fmt(med(pruns, "rss_kib") / 1024, 1),
            ratio(med(vruns, "rss_kib"), med(pruns, "rss_kib")),
        )
    )
    lines.append(
        "| exporter peak RSS (VmHWM, MiB) | %s | %s | %s |"
        % (
            fmt(med(vruns, "hwm_kib") / 1024, 1),
            fmt(med(pruns, "hwm_kib") / 1024, 1),
            ratio(med(vruns, "hwm_kib"), med(pruns, "hwm_kib")),
        )
    )
    row("scrape latency p50 (ms)", "lat_p50_ms", 2)
    row("scrape latency p99 (ms)", "lat_p99_ms", 2)
    row("scrape latency max (ms)", "lat_max_ms", 2)
    lines.append(
        "| scrape requests per round / latency samples per run | 1 / %s | %d / %s | |"
        % (fmt(med(vruns, "lat_samples"), 0), n, fmt(med(pruns, "lat_samples"), 0))
    )
    row("response bytes per scrape", "bytes_per_scrape", 0)
    row("rounds over the interval (of %d)" % args.rounds, "overruns", 0, False)
    row("scraper round wall time p50 (s)", "round_wall_p50_s", 3, False)
    row("failed scrapes / nodes not up", "failures", 0, False)
    row("host load average (1 min) at phase end", "loadavg", 2, False)
    lines.append(
        "| vitals: per-node poll duration p50 / p99 (ms) | %s / %s | | |"
        % (fmt(med(vruns, "poll_p50_ms"), 3), fmt(med(vruns, "poll_p99_ms"), 3))
    )
    lines.append(
        "| vitals: sum of last poll durations over all nodes (ms) | %s | | |"
        % fmt(med(vruns, "fleet_poll_work_ms"), 2)
    )
    lines.append(
        "| vitals: oldest node data at scrape time (s) | %s | | |" % fmt(med(vruns, "max_age_s"), 2)
    )
    lines.append(
        "| vitals: reconnects in window (connections_opened delta) | %s | | |"
        % fmt(med(vruns, "vitals_reconnects"), 0)
    )
    lines.append(
        "| vitals: detail polls (commandstats+latencystats) / all polls in window, per run | %s | | |"
        % ", ".join("%d / %d" % (r.get("detail_polls", 0), r.get("span_polls", 0)) for r in vruns)
    )
    lines.append("")
    # Per-command Redis cost, median run of each exporter.
    lines.append("Redis commandstats per node collected (calls, µs), run medians:")
    lines.append("")
    lines.append("| command | vitals calls | vitals µs | peer calls | peer µs |")
    lines.append("|---|---:|---:|---:|---:|")
    cmds = sorted(
        set().union(*[set(r["per_cmd"]) for r in vruns + pruns]),
        key=lambda c: -max(
            statistics.median([r["per_cmd"].get(c, (0, 0))[1] for r in vruns]),
            statistics.median([r["per_cmd"].get(c, (0, 0))[1] for r in pruns]),
        ),
    )
    for c in cmds:
        vc = statistics.median([r["per_cmd"].get(c, (0, 0))[0] for r in vruns])
        vu = statistics.median([r["per_cmd"].get(c, (0, 0))[1] for r in vruns])
        pc = statistics.median([r["per_cmd"].get(c, (0, 0))[0] for r in pruns])
        pu = statistics.median([r["per_cmd"].get(c, (0, 0))[1] for r in pruns])
        # Subcommands are named "config|get": escape the pipe for Markdown tables.
        lines.append("| %s | %.3f | %.1f | %.3f | %.1f |" % (c.replace("|", "\\|"), vc, vu, pc, pu))
    lines.append("")
    srcs = sorted(set(r["cpu_src"] for r in vruns + pruns))
    lines.append(
        "Notes: exporter CPU source: %s. Harness INFO cost subtracted: %.1f µs per node per window. "
        "Redis idle CPU subtracted: %.1f µs per node-second."
        % (", ".join(srcs), med(vruns + pruns, "harness_info_usec_per_node"), idle_ns / 1e3)
    )
    lines.append("")
    return "\n".join(lines)


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = proc_meminfo_mib()
    return "%d CPU (%s), %s MiB RAM, %s %s" % (os.cpu_count() or 0, model, mem, platform.system(), platform.release())


def proc_meminfo_mib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return "?"


def version_of(argv):
    try:
        out = subprocess.run(argv, capture_output=True, timeout=10, text=True)
        text = (out.stdout + out.stderr).strip().splitlines()
        return text[0] if text else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def git_describe():
    try:
        head = subprocess.run(
            ["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", REPO, "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return "git %s%s" % (head or "?", " + uncommitted changes in src/" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "git ?"


def peer_version(path):
    line = version_of([path, "-version"])
    i = line.find("Redis Metrics Exporter")
    if i >= 0:
        return "redis_exporter " + line[i + len("Redis Metrics Exporter"):].split()[0]
    return line


def targets_check(results, args):
    out = ["### Targets", ""]
    for n, (vr, pr) in sorted(results.items()):
        cpu = med(vr, "cpu_us_per_coll") / med(pr, "cpu_us_per_coll")
        red = med(vr, "redis_usec_per_coll") / med(pr, "redis_usec_per_coll")
        con = med(vr, "conns_per_coll")
        out.append(
            "- N=%d: exporter CPU ratio %.3f (target <= 0.100: %s); Redis CPU ratio %.3f (target <= 0.333: %s); "
            "vitals new connections per collection %.4f (target 0: %s)"
            % (
                n,
                cpu,
                "met" if cpu <= 0.1 else "MISSED",
                red,
                "met" if red <= 1 / 3 else "MISSED",
                con,
                "met" if con == 0 else "MISSED",
            )
        )
        if n == 100:
            p99 = med(vr, "lat_p99_ms")
            out.append("- N=100: /metrics p99 %.2f ms (target < 5 ms: %s)" % (p99, "met" if p99 < 5 else "MISSED"))
        if n == 500:
            rss = med(vr, "rss_kib") / 1024
            out.append("- N=500: vitals RSS %.1f MiB (target < 30 MiB: %s)" % (rss, "met" if rss < 30 else "MISSED"))
    out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", default="1,10,100,500", help="fleet sizes, comma separated (default 1,10,100,500)")
    ap.add_argument("--rounds", type=int, default=20, help="measured rounds per phase (default 20)")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds per round = vitals poll interval (default 1)")
    ap.add_argument("--runs", type=int, default=1, help="alternating vitals/peer phase pairs; medians reported (default 1)")
    ap.add_argument("--warmup", type=int, default=3, help="warm-up rounds before each measured phase (default 3)")
    ap.add_argument("--peer-concurrency", type=int, default=16, help="peer /scrape requests in flight (default 16)")
    ap.add_argument("--poll-concurrency", type=int, default=0, help="redis-vitals poll.concurrency (default: its own)")
    ap.add_argument("--idle-seconds", type=float, default=3.0, help="idle window per run for the Redis idle CPU baseline")
    ap.add_argument("--redis-hz", type=int, default=10, help="redis-server hz (default 10, Redis's own default)")
    ap.add_argument("--gzip", action="store_true", help="send Accept-Encoding: gzip as Prometheus does (default off)")
    ap.add_argument("--peer-arg", action="append", default=[], help="extra flag for the peer (repeatable)")
    ap.add_argument(
        "--vitals-arg", action="append", default=[],
        help="extra flag for redis-vitals, e.g. --vitals-arg=--poll.detail-interval=1s (repeatable)",
    )
    ap.add_argument("--vitals-bin", default=DEFAULT_VITALS)
    ap.add_argument("--peer-bin", default=DEFAULT_PEER)
    ap.add_argument("--redis-server", default=shutil.which("redis-server") or "/usr/bin/redis-server")
    ap.add_argument("--out", help="append the Markdown tables to this file")
    ap.add_argument("--json", help="write raw per-run results as JSON to this file")
    ap.add_argument("--max-minutes", type=float, default=0, help="hard deadline for the whole run (default: 3x the estimate + 5 min)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    try:
        sizes = [int(x) for x in args.nodes.split(",") if x.strip()]
    except ValueError:
        ap.error("--nodes takes integers, e.g. 1,10,100")
    if not sizes or min(sizes) < 1 or args.rounds < 2 or args.runs < 1 or args.interval < 0.1 or args.warmup < 0:
        ap.error("need nodes >= 1, rounds >= 2, runs >= 1, interval >= 0.1 s, warmup >= 0")

    if not os.access(args.vitals_bin, os.X_OK):
        sys.exit(
            "compare.py: %s not found. Build it first:  cargo build --release" % args.vitals_bin
        )
    newest_src = max(
        (os.path.getmtime(p) for p in glob.glob(os.path.join(REPO, "src", "**", "*.rs"), recursive=True)),
        default=0,
    )
    if args.vitals_bin == DEFAULT_VITALS and os.path.getmtime(args.vitals_bin) < newest_src:
        print("warning: %s is older than src/; run cargo build --release for current numbers" % args.vitals_bin, file=sys.stderr)
    if not os.access(args.peer_bin, os.X_OK):
        sys.exit("compare.py: peer exporter %s not found (apt-get install prometheus-redis-exporter)" % args.peer_bin)
    if not os.access(args.redis_server, os.X_OK):
        sys.exit("compare.py: redis-server not found (apt-get install redis-server)")

    # File descriptors: harness (1 per node), redis-vitals (1 per node),
    # the peer (up to concurrency), plus slack. Children inherit the limit.
    need = 2 * max(sizes) + 512
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        sys.exit("compare.py: need %d open files, hard limit is %d (raise ulimit -Hn)" % (need, hard))
    new_soft = hard if hard != resource.RLIM_INFINITY else max(soft, need, 65536)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(new_soft, 1 << 20)), hard))

    est = 0.0
    for n in sizes:
        est += 10 + n * 0.05 + args.runs * (args.idle_seconds + 2 * ((args.warmup + args.rounds) * args.interval + 3 + n * 0.02))
    DEADLINE[0] = time.monotonic() + (args.max_minutes * 60 if args.max_minutes else 3 * est + 300)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    tmp = tempfile.mkdtemp(prefix="redis-vitals-bench-")
    header = [
        "## redis-vitals vs peer exporter — %s" % datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "",
        "- machine: %s" % machine(),
        "- redis-server: %s" % version_of([args.redis_server, "--version"]),
        "- redis-vitals: %s (%s, built %s; source tree %s)"
        % (
            version_of([args.vitals_bin, "--version"]),
            args.vitals_bin,
            datetime.datetime.fromtimestamp(os.path.getmtime(args.vitals_bin)).astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            git_describe() if os.path.realpath(args.vitals_bin) == os.path.realpath(DEFAULT_VITALS) else "not this repo's build",
        ),
        "- peer: %s" % peer_version(args.peer_bin),
        "- command: `python3 bench/compare.py %s`" % " ".join(sys.argv[1:]),
        "- estimated duration: %.0f s" % est,
        "",
    ]
    print("\n".join(header), flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n".join(header) + "\n")
    results, raw = {}, []
    fleet = None
    code = 0
    try:
        for n in sizes:
            check_deadline("starting N=%d" % n)
            fleet = Fleet(n, tmp, args.redis_server, args.redis_hz, args.verbose)
            t = time.monotonic()
            fleet.start()
            print("N=%d: %d redis-server nodes up in %.1f s" % (n, n, time.monotonic() - t), file=sys.stderr, flush=True)
            vruns, pruns, idles = [], [], []
            for run in range(args.runs):
                idle = idle_rate(fleet, args.idle_seconds)
                idles.append(idle)
                for kind in ("vitals", "peer"):
                    r = measure_phase(kind, fleet, args, run, tmp, idle)
                    r["run"] = run
                    (vruns if kind == "vitals" else pruns).append(r)
                    raw.append(r)
                    print(
                        "N=%d run %d %-6s: cpu %.1f µs/coll (%s), redis %.1f µs/coll, proc %.1f µs/coll, conns %.3f/coll, "
                        "p50 %.2f ms p99 %.2f ms, rss %.1f MiB, %d collections, %d overruns, %d failures%s"
                        % (
                            n, run, kind, r["cpu_us_per_coll"], r["cpu_src"], r["redis_usec_per_coll"],
                            r["redis_proc_us_per_coll"], r["conns_per_coll"], r["lat_p50_ms"], r["lat_p99_ms"],
                            r["rss_kib"] / 1024, r["collections"], r["overruns"], r["failures"],
                            ", detail polls %d of %d" % (r["detail_polls"], r["span_polls"]) if kind == "vitals" else "",
                        ),
                        file=sys.stderr,
                        flush=True,
                    )
            fleet.stop()
            fleet = None
            results[n] = (vruns, pruns)
            text = table(n, vruns, pruns, args, statistics.median(idles))
            print(text, flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(text + "\n")
        text = targets_check(results, args)
        print(text, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(text + "\n")
    except BenchError as e:
        print("compare.py: %s" % e, file=sys.stderr)
        code = 1
    except SystemExit as e:
        print("compare.py: interrupted", file=sys.stderr)
        code = e.code if isinstance(e.code, int) else 1
    finally:
        if fleet is not None:
            try:
                fleet.stop()
            except Exception:
                pass
        stop_all()
        if args.json:
            with open(args.json, "w") as f:
                json.dump(raw, f, indent=1, default=str)
        shutil.rmtree(tmp, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
