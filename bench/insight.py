#!/usr/bin/env python3
"""What cache insight costs (docs/insight.md, issue 20), on real Redis.

python3 standard library only. For each dataset size N (default 200 000 and
2 000 000 keys) it starts a fresh redis-server on loopback, writes the mixed
dataset with the release `redis-vitals-dataset`, and runs the release
`redis-vitals` against it in three phases, one exporter at a time:

  off      insight disabled, for --off-seconds: the baseline exporter CPU,
           RSS and poll timing;
  high     insight at --high-budget (default 50ms), until one pass ends:
           pass duration, Redis time per key (commandstats) and round-trip
           time charged per key;
  default  insight at the default budget (2ms): for N <= --full-max-keys
           until one pass ends (measured duration); for larger N for
           --probe-seconds, and the duration is derived from the progress
           made (redis_vitals_insight_pass_progress_ratio).

Redis time used by the analyser is the delta of `usec` of cmdstat_scan,
cmdstat_type, cmdstat_pttl and cmdstat_memory|usage (INFO commandstats, read
by the harness before the exporter starts and after the phase ends) over the
phase's wall time. The exporter's CPU is utime+stime of its process; RSS is
VmRSS at the end of the phase and VmHWM (peak). Polls on time: the harness
reads /metrics every 0.5 s and records redis_vitals_polls_total,
redis_vitals_last_success_age_seconds (worst) and
redis_vitals_poll_duration_seconds (worst) of the node.

Derived figures are marked as such: the default-budget pass duration for
2 000 000 keys is (a) the round-trip time charged per key at the high budget
x N / 2 ms per s (the pacing rule: the analyser sleeps until its charged
time is back under the budget), and (b) the probe's wall time / the progress
ratio it reached. For 200 000 keys both are also compared with the measured
default-budget duration, which tells how far to trust them.

Build first:  cargo build --release --locked
Run:          python3 bench/insight.py
              python3 bench/insight.py --keys 200000 --probe-seconds 60   # quicker
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
                raise BenchError("redis-vitals did not start; see %s" % self.log)
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
        return {
            "wall_s": wall,
            "cpu_s": cpu,
            "cpu_pct": 100.0 * cpu / wall,
            "rss_mib": proc_status_kib(pid, "VmRSS") / 1024.0,
            "hwm_mib": proc_status_kib(pid, "VmHWM") / 1024.0,
            "analyser_calls": calls - self.calls0,
            "redis_usec": usec - self.usec0,
            "redis_ms_per_s": (usec - self.usec0) / 1000.0 / wall,
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
        }


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


def run_size(args, tmp, n, log):
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

        # default budget: a full pass, or a probe
        full = n <= args.full_max_keys
        ph = Phase(r, args.poll_interval_s)
        e = ph.e = Exporter(tmp, "default-%d" % n, r.addr, args.poll_interval,
                            ["--insight.enabled"] + common)
        if full:
            if not ph.run_until(one_pass_done(r.addr), args.max_pass_minutes * 60, "default"):
                raise BenchError("no pass at the default budget within %d min" % args.max_pass_minutes)
        else:
            ph.run_until(one_pass_done(r.addr), args.probe_seconds, "default probe")
        res["default"] = ph.finish()
        res["default_full"] = full
        e.stop()
        log("   default: %s" % brief(res["default"]))
    finally:
        r.stop()
    return res


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


def report(args, results, env):
    high_budget_s = args.high_budget_s
    out = []
    w = out.append
    w("Command: `%s`, release build at `%s`%s." % (env["command"], env["commit"], env["dirty"]))
    w("Machine: %s, %d CPUs, load average %s at start and %s at end "
      "(the machine is shared with other work; Redis %s)."
      % (env["cpu"], env["cpus"], env["load_start"], env["load_end"], env["redis"]))
    w("")
    w("Redis time used by the analyser (commandstats usec of SCAN, TYPE, PTTL and "
      "MEMORY USAGE over the phase's wall time) against its budget, and the pass:")
    w("")
    w("| keys | budget | pass | Redis time used | of budget | Redis time per key | charged per key | measured / derived |")
    w("|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        n = r["keys"]
        for name, budget in (("high", high_budget_s), ("default", DEFAULT_BUDGET_S)):
            p = r[name]
            scanned = p["scanned"] or 0
            per_key = p["redis_usec"] / scanned if scanned else float("nan")
            charged = (p["charged_s"] or 0) * 1e6 / scanned if scanned else float("nan")
            if name == "default" and not r["default_full"]:
                prog = p["progress"] or 0
                pass_txt = ("%s (derived: %.0f s probe reached %.1f %%)"
                            % (fmt_duration(p["wall_s"] / prog) if prog else "n/a",
                               p["wall_s"], 100 * prog))
                kind = "probe measured; pass duration derived"
            else:
                pass_txt = fmt_duration(p["pass_s"])
                kind = "measured"
            w("| %d | %g ms/s | %s | %.3f ms/s | %.0f %% | %.2f us | %.2f us | %s |"
              % (n, budget * 1e3, pass_txt, p["redis_ms_per_s"],
                 100 * p["redis_ms_per_s"] / (budget * 1e3), per_key, charged, kind))
    w("")
    w("Default-budget (2 ms/s) pass duration derived from the high-budget pass "
      "(charged round-trip time per key x keys / 2 ms per s), next to what was measured:")
    w("")
    w("| keys | derived from the %s pass | derived from the default-budget probe | measured |" % args.high_budget)
    w("|---:|---:|---:|---:|")
    for r in results:
        h, d = r["high"], r["default"]
        from_high = (h["charged_s"] or 0) / DEFAULT_BUDGET_S * (r["keys"] / max(h["scanned"] or 1, 1))
        if r["default_full"]:
            probe, measured = "n/a (full pass run)", fmt_duration(d["pass_s"])
        else:
            prog = d["progress"] or 0
            probe = fmt_duration(d["wall_s"] / prog) if prog else "n/a"
            measured = "not run (would take %s)" % fmt_duration(from_high)
        w("| %d | %s | %s | %s |" % (r["keys"], fmt_duration(from_high), probe, measured))
    w("")
    w("The exporter with the analyser off and on (one node; CPU is utime+stime "
      "of the process over the phase, %% of one core; RSS at the end / peak):" )
    w("")
    w("| keys | phase | wall | CPU | RSS | peak RSS |")
    w("|---:|---|---:|---:|---:|---:|")
    for r in results:
        for name, label in (("off", "off"), ("high", "on, %s" % args.high_budget), ("default", "on, 2ms (default)")):
            p = r[name]
            w("| %d | %s | %.0f s | %.2f %% | %.1f MiB | %.1f MiB |"
              % (r["keys"], label, p["wall_s"], p["cpu_pct"], p["rss_mib"], p["hwm_mib"]))
    w("")
    w("Polls on time while the analyser runs (poll interval %s; /metrics read every %.1f s):"
      % (args.poll_interval, SAMPLE_EVERY_S))
    w("")
    w("| keys | phase | polls / expected | poll errors | worst snapshot age | worst poll duration | samples with redis_up != 1 |")
    w("|---:|---|---:|---:|---:|---:|---:|")
    for r in results:
        for name in ("off", "high", "default"):
            p = r[name]
            w("| %d | %s | %d / %.0f | %d | %.2f s | %.1f ms | %d of %d |"
              % (r["keys"], name, p["polls"], p["polls_expected"], p["poll_errors"],
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
    ap.add_argument("--high-budget", default="50ms", help="budget of the 'high' phase")
    ap.add_argument("--poll-interval", default="1s", help="redis-vitals --poll.interval")
    ap.add_argument("--off-seconds", type=float, default=60, help="length of the 'off' phase")
    ap.add_argument("--full-max-keys", type=int, default=200000,
                    help="run a full default-budget pass up to this many keys; probe above")
    ap.add_argument("--probe-seconds", type=float, default=120, help="default-budget probe length")
    ap.add_argument("--max-pass-minutes", type=float, default=30, help="give up on a pass after this")
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

    results = []
    with tempfile.TemporaryDirectory(prefix="redis-vitals-insight-bench-") as tmp:
        try:
            for n in sizes:
                results.append(run_size(args, tmp, n, log))
        finally:
            stop_all()
    env["load_end"] = "%.2f %.2f %.2f" % os.getloadavg()
    text = report(args, results, env)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
            f.write("\n<!-- raw results, %s\n%s\n-->\n" % (env["started"], json.dumps(results, indent=1)))


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        stop_all()
        sys.exit("bench/insight.py: %s" % e)
