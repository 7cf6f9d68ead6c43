#!/usr/bin/env python3
"""What cache insight costs (docs/insight.md, issue 20), on real Redis.

python3 standard library only. For each dataset size N (default 200 000 and
2 000 000 keys) it starts a fresh redis-server on loopback, writes the mixed
dataset with the release `redis-vitals-dataset`, and runs the release
`redis-vitals` against it in three phases, one exporter at a time:

  off      insight disabled, for --off-seconds: the baseline exporter CPU,
           RSS and poll timing;
  high     insight at --high-budget (default 200ms), until one pass ends:
           measured pass duration, Redis time per key (commandstats) and
           the time the analyser charged per key;
  default  insight at the default budget (2ms) for --probe-seconds: Redis
           time used against the budget, exporter CPU and RSS, polls; the
           pass duration is derived from the progress rate
           (redis_vitals_insight_pass_progress_ratio) after the first 20 %
           of the probe (start-up spread and first calibration excluded).

Then, to show how far the derivation can be trusted, one small dataset
(--validate-keys, default 5 000) gets a full pass at the default budget:
its measured duration next to the one derived from its first
--probe-seconds, the same way as above.

Redis time used by the analyser is the delta of `usec` of cmdstat_scan,
cmdstat_type, cmdstat_pttl and cmdstat_memory|usage (INFO commandstats, read
by the harness before the exporter starts and after the phase ends) per
second of the analyser's active time (its pass, or the probe from the first
progress seen); it is what the analyser's budget counts. The exporter's
CPU is utime+stime of its process (from its start); RSS is VmRSS at the end
of the phase and VmHWM (peak). Polls on time: the harness reads /metrics
every 0.5 s and records redis_vitals_polls_total,
redis_vitals_last_success_age_seconds (worst) and
redis_vitals_poll_duration_seconds (worst) of the node.

`--gap-experiment` measures only one thing: the Redis time per key of an
analyser-like batch sent by the harness after a fixed idle time (0 to 5 s),
which explains why the default budget's passes are slow on a shared VM.

Build first:  cargo build --release --locked
Run:          python3 bench/insight.py
              python3 bench/insight.py --keys 200000 --gap-experiment
              python3 bench/insight.py --keys 200000 --probe-seconds 60 --validate-keys 0   # quicker
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import resp  # noqa: E402  (bench/resp.py, beside this script)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(REPO, "target", "release")
CLK_TCK = os.sysconf("SC_CLK_TCK")
ANALYSER_CMDS = ("scan", "type", "pttl", "memory|usage")
DEFAULT_BUDGET_S = 0.002
# How often the harness reads /metrics: often enough to see a late poll at
# a 1 s interval, rare enough to cost the exporter little (the same in every
# phase, so the on/off comparison carries it on both sides).
SAMPLE_EVERY_S = 0.5

PROCS = []


class BenchError(Exception):
    pass


def spawn(argv, log_path):
    log = open(log_path, "ab")
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT, close_fds=True)
    finally:
        log.close()
    PROCS.append(p)
    return p


def stop(p, grace=10.0):
    """SIGTERM, then SIGKILL after `grace` seconds. By pid only."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
    if p in PROCS:
        PROCS.remove(p)


def stop_all():
    for p in list(PROCS):
        stop(p, grace=5.0)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def proc_cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def proc_status_kib(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def parse_duration(s):
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    for u in ("us", "ms", "s", "m", "h"):
        if s.endswith(u) and s[: -len(u)].replace(".", "", 1).isdigit():
            return float(s[: -len(u)]) * units[u]
    raise argparse.ArgumentTypeError("not a duration: %r (e.g. 50ms, 1s)" % s)


# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------


class Redis:
    def __init__(self, tmp):
        self.port = free_port()
        self.dir = os.path.join(tmp, "redis-%d" % self.port)
        os.makedirs(self.dir)
        self.proc = spawn([
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", self.dir,
            "--logfile", os.path.join(self.dir, "redis.log"),
        ], os.path.join(self.dir, "stdout.log"))
        end = time.monotonic() + 20
        while True:
            try:
                self.conn = resp.Resp(self.port, timeout=30.0, error=BenchError)
                if self.conn.call("PING") == b"PONG":
                    break
            except (OSError, BenchError):
                pass
            if time.monotonic() > end or self.proc.poll() is not None:
                raise BenchError("redis-server on %d did not start" % self.port)
            time.sleep(0.05)

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def info(self, *sections):
        text = self.conn.call("INFO", *sections).decode(errors="replace")
        fields, cmds = {}, {}
        for line in text.splitlines():
            if not line or line[0] == "#" or ":" not in line:
                continue
            k, v = line.split(":", 1)
            if k.startswith("cmdstat_"):
                kv = dict(p.split("=", 1) for p in v.split(","))
                cmds[k[8:]] = (int(kv["calls"]), int(kv["usec"]))
            else:
                fields[k] = v
        return fields, cmds

    def analyser_usec(self):
        """(calls, usec) summed over the analyser's commands."""
        _, cmds = self.info("commandstats")
        calls = sum(cmds.get(c, (0, 0))[0] for c in ANALYSER_CMDS)
        usec = sum(cmds.get(c, (0, 0))[1] for c in ANALYSER_CMDS)
        return calls, usec

    def stop(self):
        self.conn.close()
        stop(self.proc)


# ---------------------------------------------------------------------------
# The exporter
# ---------------------------------------------------------------------------


def metric(body, name, addr):
    """Value of `name{...addr="addr"...}` in a /metrics body, or None."""
    prefix = name + "{"
    needle = 'addr="%s"' % addr
    for line in body.splitlines():
        if line.startswith(prefix) and needle in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def metric_sum(body, name, addr):
    prefix = name + "{"
    needle = 'addr="%s"' % addr
    total = 0.0
    for line in body.splitlines():
        if line.startswith(prefix) and needle in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


class Exporter:
    def __init__(self, tmp, name, redis_addr, poll_interval, extra):
        self.port = free_port()
        self.log = os.path.join(tmp, "exporter-%s.log" % name)
        self.argv = [
            os.path.join(RELEASE, "redis-vitals"),
            "--web.listen-address", "127.0.0.1:%d" % self.port,
            "--redis.addr", redis_addr,
            "--poll.interval", poll_interval,
            # The default 2 s deadline must not exceed the interval.
            "--poll.timeout", "%dms" % int(1000 * min(2.0, parse_duration(poll_interval))),
        ] + extra
        self.proc = spawn(self.argv, self.log)
        self.http = None
        end = time.monotonic() + 30
        while True:
            try:
                if self.get("/-/healthy")[0] == 200:
                    break
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > end or self.proc.poll() is not None:
                with open(self.log, errors="replace") as f:
                    tail = f.read()[-2000:]
                raise BenchError("redis-vitals did not start: %s" % tail)
            time.sleep(0.05)

    def get(self, path):
        for attempt in range(2):
            if self.http is None:
                self.http = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                self.http.request("GET", path)
                r = self.http.getresponse()
                return r.status, r.read().decode(errors="replace")
            except (OSError, http.client.HTTPException):
                self.http.close()
                self.http = None
                if attempt == 1:
                    raise
        raise BenchError("unreachable")

    def metrics(self):
        status, body = self.get("/metrics")
        if status != 200:
            raise BenchError("/metrics answered %d" % status)
        return body

    def stop(self):
        if self.http is not None:
            self.http.close()
        stop(self.proc)


class Phase:
    """One exporter run: CPU, RSS and poll timing, sampled every 0.5 s."""

    def __init__(self, redis, poll_interval_s):
        """Before the exporter starts: the Redis-side counters and the wall
        clock then include the analyser's first batch; the exporter's CPU is
        counted from its birth."""
        self.e = None
        self.r = redis
        self.interval = poll_interval_s
        self.t0 = time.monotonic()
        self.calls0, self.usec0 = redis.analyser_usec()
        self.polls0 = None
        self.errors0 = 0.0
        self.t_polls0 = None
        self.worst_age = 0.0
        self.worst_duration = 0.0
        self.down_samples = 0
        self.samples = 0
        self.last = ""
        self.progress = []  # (seconds since t0, pass progress ratio)

    def sample(self):
        body = self.e.metrics()
        self.last = body
        a = self.r.addr
        polls = metric(body, "redis_vitals_polls_total", a)
        if polls is None:
            return body
        if self.polls0 is None:
            # Counted from the first poll on: start-up is not "on time".
            self.polls0 = polls
            self.t_polls0 = time.monotonic()
            self.errors0 = metric_sum(body, "redis_vitals_poll_errors_total", a)
            return body
        self.samples += 1
        age = metric(body, "redis_vitals_last_success_age_seconds", a)
        if age is not None:
            self.worst_age = max(self.worst_age, age)
        dur = metric(body, "redis_vitals_poll_duration_seconds", a)
        if dur is not None:
            self.worst_duration = max(self.worst_duration, dur)
        if metric(body, "redis_up", a) != 1.0:
            self.down_samples += 1
        prog = metric(body, "redis_vitals_insight_pass_progress_ratio", a)
        if prog is not None:
            self.progress.append((time.monotonic() - self.t0, prog))
        return body

    def run_until(self, done, max_seconds, what):
        end = self.t0 + max_seconds
        while True:
            body = self.sample()
            if done(body):
                return True
            if time.monotonic() > end:
                return False
            if self.e.proc.poll() is not None:
                raise BenchError("redis-vitals exited during %s; see %s" % (what, self.e.log))
            time.sleep(SAMPLE_EVERY_S)

    def finish(self):
        wall = time.monotonic() - self.t0
        pid = self.e.proc.pid
        cpu = proc_cpu_seconds(pid)
        calls, usec = self.r.analyser_usec()
        body = self.last
        a = self.r.addr
        polls = metric(body, "redis_vitals_polls_total", a) or 0.0
        poll_wall = time.monotonic() - (self.t_polls0 or self.t0)
        # The analyser's active time: its pass when one completed (the pass
        # interval is 24 h, so there is one), else from the first progress
        # seen (passes start up to 5 s after the exporter, spread by address).
        passes = metric(body, "redis_vitals_insight_passes_total", a) or 0
        pass_s = metric(body, "redis_vitals_insight_last_pass_duration_seconds", a)
        if passes >= 1 and pass_s:
            active = pass_s
        elif self.progress:
            active = wall - self.progress[0][0] + SAMPLE_EVERY_S / 2
        else:
            active = wall
        return {
            "wall_s": wall,
            "cpu_s": cpu,
            "cpu_pct": 100.0 * cpu / wall,
            "rss_mib": proc_status_kib(pid, "VmRSS") / 1024.0,
            "hwm_mib": proc_status_kib(pid, "VmHWM") / 1024.0,
            "analyser_calls": calls - self.calls0,
            "redis_usec": usec - self.usec0,
            "active_s": active,
            "redis_ms_per_s": (usec - self.usec0) / 1000.0 / active,
            "polls": polls - (self.polls0 or 0.0),
            "polls_expected": poll_wall / self.interval,
            "poll_errors": metric_sum(body, "redis_vitals_poll_errors_total", a) - self.errors0,
            "worst_age_s": self.worst_age,
            "worst_poll_s": self.worst_duration,
            "down_samples": self.down_samples,
            "samples": self.samples,
            "charged_s": metric(body, "redis_vitals_insight_redis_seconds_total", a),
            "scanned": metric(body, "redis_vitals_insight_scanned_keys_total", a),
            "passes": metric(body, "redis_vitals_insight_passes_total", a),
            "pass_s": metric(body, "redis_vitals_insight_last_pass_duration_seconds", a),
            "progress": metric(body, "redis_vitals_insight_pass_progress_ratio", a),
            "insight_keys": metric(body, "redis_vitals_insight_keys", a),
            "failures": metric_sum(body, "redis_vitals_insight_pass_failures_total", a),
            "derived_pass_s": derive_pass_seconds(self.progress),
        }


def derive_pass_seconds(progress, skip=0.2):
    """A full pass's duration from the progress rate seen after the first
    `skip` of the samples' span (the start-up spread of up to 5 s and the
    first calibration, at whole round trips, would bias it long)."""
    if len(progress) < 2:
        return None
    t_first, t_last = progress[0][0], progress[-1][0]
    cut = t_first + skip * (t_last - t_first)
    kept = [(t, p) for t, p in progress if t >= cut]
    if len(kept) < 2 or kept[-1][1] <= kept[0][1]:
        return None
    (t1, p1), (t2, p2) = kept[0], kept[-1]
    return (t2 - t1) / (p2 - p1)


def one_pass_done(addr):
    def done(body):
        v = metric(body, "redis_vitals_insight_passes_total", addr)
        return v is not None and v >= 1
    return done


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


def generate(redis, keys, seed):
    out = subprocess.run(
        [os.path.join(RELEASE, "redis-vitals-dataset"), "--addr", "redis://" + redis.addr,
         "--flush", "--keys", str(keys), "--seed", str(seed)],
        capture_output=True, timeout=1800, check=False)
    if out.returncode != 0:
        raise BenchError("redis-vitals-dataset failed: %s" % out.stderr.decode(errors="replace"))
    manifest = json.loads(out.stdout)
    fields, _ = redis.info("memory")
    manifest["used_memory"] = int(fields["used_memory"])
    return manifest


def run_size(args, tmp, n, log, phases=True):
    r = Redis(tmp)
    res = {"keys": n}
    try:
        log("== %d keys: redis-server %s" % (n, r.addr))
        m = generate(r, n, args.seed)
        res["generate_s"] = m["elapsed_seconds"]
        res["used_memory"] = m["used_memory"]
        res["namespaces"] = len(m["namespaces"])
        log("   generated in %.1fs (%.0f keys/s), used_memory %.0f MiB"
            % (m["elapsed_seconds"], m["keys_per_second"], m["used_memory"] / 2**20))
        common = ["--insight.pass-interval", "24h"]
        if not phases:
            return run_validation(args, tmp, r, n, res, common, log)

        # off
        ph = Phase(r, args.poll_interval_s)
        e = ph.e = Exporter(tmp, "off-%d" % n, r.addr, args.poll_interval, [])
        ph.run_until(lambda body: False, args.off_seconds, "off")
        res["off"] = ph.finish()
        e.stop()
        log("   off: %s" % brief(res["off"]))

        # high budget, one pass
        ph = Phase(r, args.poll_interval_s)
        e = ph.e = Exporter(tmp, "high-%d" % n, r.addr, args.poll_interval,
                            ["--insight.enabled", "--insight.budget", args.high_budget] + common)
        if not ph.run_until(one_pass_done(r.addr), args.max_pass_minutes * 60, "high"):
            raise BenchError("no pass at %s within %d min" % (args.high_budget, args.max_pass_minutes))
        res["high"] = ph.finish()
        e.stop()
        log("   high: %s" % brief(res["high"]))

        # default budget: a probe
        ph = Phase(r, args.poll_interval_s)
        e = ph.e = Exporter(tmp, "default-%d" % n, r.addr, args.poll_interval,
                            ["--insight.enabled"] + common)
        ph.run_until(one_pass_done(r.addr), args.probe_seconds, "default probe")
        res["default"] = ph.finish()
        e.stop()
        log("   default: %s" % brief(res["default"]))
    finally:
        r.stop()
    return res


def run_validation(args, tmp, r, n, res, common, log):
    """A full default-budget pass, its duration also derived from its first
    --probe-seconds as for the large datasets."""
    ph = Phase(r, args.poll_interval_s)
    e = ph.e = Exporter(tmp, "validate-%d" % n, r.addr, args.poll_interval,
                        ["--insight.enabled"] + common)
    try:
        probe_end = ph.t0 + args.probe_seconds
        if not ph.run_until(one_pass_done(r.addr), args.max_pass_minutes * 60, "validation"):
            raise BenchError("no default-budget pass of %d keys within %d min"
                             % (n, args.max_pass_minutes))
        res["default"] = ph.finish()
        probe = [(t, p) for t, p in ph.progress if t <= probe_end - ph.t0]
        res["derived_from_probe_s"] = derive_pass_seconds(probe)
    finally:
        e.stop()
    log("   validation: measured %s, derived from the first %.0f s: %s"
        % (res["default"]["pass_s"], args.probe_seconds, res["derived_from_probe_s"]))
    return res


def gap_experiment(args, tmp, n, log):
    """Redis time per key of the analyser's batch (SCAN COUNT c, then TYPE,
    PTTL and MEMORY USAGE .. SAMPLES 5 per key, pipelined), sent by the
    harness with a fixed idle gap between batches: how the cost of a key
    depends on how long Redis sat idle before the batch."""
    r = Redis(tmp)
    rows = []
    try:
        generate(r, n, args.seed)
        cursor = b"0"
        for count, gap, batches in ((100, 0.0, 20), (100, 0.01, 20), (100, 0.1, 20),
                                    (100, 1.0, 8), (100, 5.0, 6), (1000, 0.0, 6),
                                    (1000, 1.0, 6)):
            used = keys = 0
            for _ in range(batches):
                _, u0 = r.analyser_usec()
                r.conn.send([("SCAN", cursor, "COUNT", count)])
                cursor, ks = r.conn.read()
                cmds = []
                for k in ks:
                    cmds += [("TYPE", k), ("PTTL", k), ("MEMORY", "USAGE", k, "SAMPLES", "5")]
                r.conn.send(cmds)
                for _ in cmds:
                    r.conn.read()
                _, u1 = r.analyser_usec()
                used += u1 - u0
                keys += len(ks)
                time.sleep(gap)
            rows.append((count, gap, keys, used / max(keys, 1)))
            log("   COUNT %d, %.0f ms idle: %.1f us per key" % (count, gap * 1e3, used / max(keys, 1)))
    finally:
        r.stop()
    out = ["Redis time per key of one analyser batch, by the idle time before it "
           "(%d-key dataset; the harness sends the batches):" % n, "",
           "| SCAN COUNT | idle before each batch | keys | Redis time per key |",
           "|---:|---:|---:|---:|"]
    for count, gap, keys, per in rows:
        out.append("| %d | %g ms | %d | %.1f us |" % (count, gap * 1e3, keys, per))
    return "\n".join(out) + "\n"


def brief(p):
    return ("wall %.1fs cpu %.2f%% rss %.1f MiB, redis %.3f ms/s, pass %s, "
            "charged %s, polls %d/%.0f, worst age %.2fs"
            % (p["wall_s"], p["cpu_pct"], p["rss_mib"], p["redis_ms_per_s"],
               p["pass_s"], p["charged_s"], p["polls"], p["polls_expected"], p["worst_age_s"]))


def fmt_duration(s):
    if s is None:
        return "n/a"
    if s >= 3600:
        return "%.1f h" % (s / 3600)
    if s >= 120:
        return "%.1f min" % (s / 60)
    return "%.1f s" % s


def report(args, results, validation, env):
    out = []
    w = out.append
    w("Command: `%s`, release build at `%s`%s." % (env["command"], env["commit"], env["dirty"]))
    w("Machine: %s, %d CPUs, load average %s at start and %s at end "
      "(the machine is shared with other work; Redis %s)."
      % (env["cpu"], env["cpus"], env["load_start"], env["load_end"], env["redis"]))
    w("")
    w("Redis time used by the analyser (commandstats usec of SCAN, TYPE, PTTL and "
      "MEMORY USAGE) per second of the time it was active (its pass, or the probe "
      "from the first progress seen) against its budget:")
    w("")
    w("| keys | budget | phase | Redis time used | of budget | Redis time per key | charged per key | keys examined |")
    w("|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in results:
        for name, budget, what in (("high", args.high_budget_s, "one full pass"),
                                   ("default", DEFAULT_BUDGET_S, "%.0f s probe" % args.probe_seconds)):
            p = r[name]
            scanned = p["scanned"] or 0
            per_key = p["redis_usec"] / scanned if scanned else float("nan")
            charged = (p["charged_s"] or 0) * 1e6 / scanned if scanned else float("nan")
            w("| %d | %g ms/s | %s | %.3f ms/s | %.0f %% | %.1f us | %.1f us | %d |"
              % (r["keys"], budget * 1e3, what, p["redis_ms_per_s"],
                 100 * p["redis_ms_per_s"] / (budget * 1e3), per_key, charged, scanned))
    if validation:
        p = validation["default"]
        scanned = p["scanned"] or 0
        w("| %d | 2 ms/s | one full pass | %.3f ms/s | %.0f %% | %.1f us | %.1f us | %d |"
          % (validation["keys"], p["redis_ms_per_s"], 100 * p["redis_ms_per_s"] / 2.0,
             p["redis_usec"] / max(scanned, 1), (p["charged_s"] or 0) * 1e6 / max(scanned, 1), scanned))
    w("")
    w("Pass duration (measured: `redis_vitals_insight_last_pass_duration_seconds`; "
      "derived: 1 / the progress rate over the probe after its first 20 %):")
    w("")
    w("| keys | at %s | at 2 ms/s (default) |" % args.high_budget)
    w("|---:|---:|---:|")
    for r in results:
        w("| %d | %s measured | %s derived |"
          % (r["keys"], fmt_duration(r["high"]["pass_s"]), fmt_duration(r["default"]["derived_pass_s"])))
    if validation:
        w("| %d | | %s measured; %s derived from its first %.0f s |"
          % (validation["keys"], fmt_duration(validation["default"]["pass_s"]),
             fmt_duration(validation["derived_from_probe_s"]), args.probe_seconds))
    w("")
    w("The exporter with the analyser off and on (one node; CPU is utime+stime "
      "of the process from its start over the phase, % of one core; RSS at the end / peak):")
    w("")
    w("| keys | phase | wall | CPU | RSS | peak RSS |")
    w("|---:|---|---:|---:|---:|---:|")
    for r in results:
        for name, label in (("off", "off"), ("high", "on, %s" % args.high_budget),
                            ("default", "on, 2ms (default)")):
            p = r[name]
            w("| %d | %s | %.0f s | %.2f %% | %.1f MiB | %.1f MiB |"
              % (r["keys"], label, p["wall_s"], p["cpu_pct"], p["rss_mib"], p["hwm_mib"]))
    w("")
    w("Polls on time while the analyser runs (poll interval %s; /metrics read every %.1f s):"
      % (args.poll_interval, SAMPLE_EVERY_S))
    w("")
    w("| keys | phase | polls / expected | poll errors | worst snapshot age | worst poll duration | samples with redis_up != 1 |")
    w("|---:|---|---:|---:|---:|---:|---:|")
    rows = [(r["keys"], name, r[name]) for r in results for name in ("off", "high", "default")]
    if validation:
        rows.append((validation["keys"], "default, full pass", validation["default"]))
    for keys, name, p in rows:
        w("| %d | %s | %d / %.0f | %d | %.2f s | %.1f ms | %d of %d |"
          % (keys, name, p["polls"], p["polls_expected"], p["poll_errors"],
             p["worst_age_s"], 1e3 * p["worst_poll_s"], p["down_samples"], p["samples"]))
    return "\n".join(out) + "\n"


def git(*a):
    try:
        return subprocess.run(["git", "-C", REPO] + list(a), capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", default="200000,2000000", help="dataset sizes, comma separated")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--high-budget", default="200ms", help="budget of the 'high' phase")
    ap.add_argument("--poll-interval", default="1s", help="redis-vitals --poll.interval")
    ap.add_argument("--off-seconds", type=float, default=60, help="length of the 'off' phase")
    ap.add_argument("--probe-seconds", type=float, default=180, help="default-budget probe length")
    ap.add_argument("--validate-keys", type=int, default=5000,
                    help="dataset size of the full default-budget pass (0: skip)")
    ap.add_argument("--max-pass-minutes", type=float, default=30, help="give up on a pass after this")
    ap.add_argument("--gap-experiment", action="store_true",
                    help="only measure Redis time per key against the idle time between "
                         "batches, on the first --keys dataset")
    ap.add_argument("--out", help="also write the markdown report to this file")
    args = ap.parse_args()
    args.high_budget_s = parse_duration(args.high_budget)
    args.poll_interval_s = parse_duration(args.poll_interval)
    sizes = [int(x) for x in args.keys.split(",") if x]
    for b in ("redis-vitals", "redis-vitals-dataset"):
        path = os.path.join(RELEASE, b)
        if not os.path.exists(path):
            sys.exit("missing %s: run cargo build --release --locked first" % path)
    if subprocess.run(["which", "redis-server"], capture_output=True).returncode != 0:
        sys.exit("redis-server is not installed")
    newest_src = max(os.path.getmtime(os.path.join(d, f))
                     for d, _, fs in os.walk(os.path.join(REPO, "src")) for f in fs)
    if os.path.getmtime(os.path.join(RELEASE, "redis-vitals")) < newest_src:
        print("WARNING: target/release/redis-vitals is older than src/", file=sys.stderr)

    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(128 + s))
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    env = {
        "command": "python3 bench/insight.py " + " ".join(sys.argv[1:]),
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": " (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else "",
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "load_start": "%.2f %.2f %.2f" % os.getloadavg(),
        "redis": subprocess.run(["redis-server", "--version"], capture_output=True,
                                text=True).stdout.split()[2].replace("v=", ""),
        "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    if args.gap_experiment:
        with tempfile.TemporaryDirectory(prefix="redis-vitals-insight-bench-") as tmp:
            try:
                text = gap_experiment(args, tmp, sizes[0], log)
            finally:
                stop_all()
        env["load_end"] = "%.2f %.2f %.2f" % os.getloadavg()
        print("Command: `%s`; load average %s at start, %s at end.\n"
              % (env["command"], env["load_start"], env["load_end"]))
        print(text)
        return

    results, validation = [], None
    with tempfile.TemporaryDirectory(prefix="redis-vitals-insight-bench-") as tmp:
        try:
            for n in sizes:
                results.append(run_size(args, tmp, n, log))
            if args.validate_keys:
                validation = run_size(args, tmp, args.validate_keys, log, phases=False)
        finally:
            stop_all()
    env["load_end"] = "%.2f %.2f %.2f" % os.getloadavg()
    text = report(args, results, validation, env)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
            f.write("\n<!-- raw results, %s\n%s\n-->\n"
                    % (env["started"], json.dumps({"sizes": results, "validation": validation}, indent=1)))


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        stop_all()
        sys.exit("bench/insight.py: %s" % e)
