#!/usr/bin/env python3
"""Redis-side work per collection, counted in instructions, vitals vs peer.

Why this exists: on the shared VM the benchmarks run on, a command that
arrives after Redis sat idle for a second costs 20 to 400 times its warm
time in commandstats (a PING: ~1 µs warm, 150-400 µs after 1 s idle; see
BENCHMARKS.md). That penalty is the host's (memory left idle is slow to
touch again), not the commands', and it dominates `bench/compare.py`'s
Redis column at poll intervals of a second. This harness measures what each
exporter makes Redis *do*, independent of the host: one redis-server runs
under `valgrind --tool=callgrind`, which counts the instructions it executes
(the same count for the same work, whatever else the machine does), and the
two exporters take turns collecting it, each phase bracketed by
`callgrind_control -z` (zero) and `-d` (dump).

Per collection = (instructions in the phase - idle instructions for as long)
/ collections. The idle rate (serverCron at hz 10, and the like) comes from
idle phases of the same run. Everything Redis' own code does for a
collection counts: parsing the request, the commands, building replies, and
for the peer setting up and freeing a client per scrape. Kernel time
(system calls, the peer's connect and close) is not counted, which favours
the peer.

The exporters run natively (the peer, a Go program, does not run under
valgrind); only Redis is counted. Redis runs ~50 times slower under
callgrind, so the poll timeout is generous and one node is enough: the work
per node does not depend on the fleet's size (bench/compare.py covers that).

Run:  cargo build --release && python3 bench/redis_work.py [--rounds 30 --runs 3]
      python3 bench/redis_work.py --cold-probe --rounds 10   # the host's penalty
      python3 bench/redis_work.py --footprint --rounds 10    # memory touched per collection
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import compare as c  # noqa: E402  (bench/compare.py, beside this script)
import resp  # noqa: E402  (bench/resp.py)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    return c.free_ports(1)[0]


def seed(port):
    """The same little data bench/compare.py puts in each node."""
    conn = resp.Resp(port, 30, OSError)
    try:
        c.seed(conn, 0)
    finally:
        conn.close()


def redis_cmd(port, *args, timeout=30.0):
    """One command on a fresh connection; its reply (errors raise OSError,
    which the waits below retry)."""
    conn = resp.Resp(port, timeout, OSError)
    try:
        return conn.call(*args)
    finally:
        conn.close()


def commandstats(conn):
    """{command: (calls, usec)} from INFO commandstats."""
    return c.parse_info(conn.call("INFO", "commandstats"))[1]


def info_calls(port):
    """Calls of INFO so far (commandstats)."""
    conn = resp.Resp(port, 30, OSError)
    try:
        return commandstats(conn).get("info", (0, 0))[0]
    finally:
        conn.close()


def wait_until(what, cond, deadline_s):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit("redis_work.py: timed out waiting for " + what)


class CallgrindRedis:
    def __init__(self, redis_bin, tmp):
        self.port = free_port()
        self.tmp = tmp
        self.out = os.path.join(tmp, "cg.out")
        self.proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + self.out,
             redis_bin, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--hz", "10", "--dir", tmp],
            stdout=open(os.path.join(tmp, "redis.log"), "wb"), stderr=subprocess.STDOUT,
        )
        try:
            wait_until("redis-server under callgrind", lambda: redis_cmd(self.port, "PING", timeout=2) == b"PONG", 60)
            seed(self.port)
        except BaseException:
            self.proc.kill()
            raise
        self.dumps = 0

    def ctl(self, flag):
        subprocess.run(["callgrind_control", flag, str(self.proc.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def zero(self):
        self.ctl("-z")

    def dump_instructions(self):
        """Dumps and returns the instructions since the last zero."""
        self.ctl("-d")
        self.dumps += 1
        path = "%s.%d" % (self.out, self.dumps)
        total = []

        def written():
            for line in open(path):
                if line.startswith(("totals:", "summary:")):
                    total.append(int(line.split()[1]))
                    return True
            return False

        wait_until("callgrind dump " + path, written, 30)
        return total[0]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def get(url, gzip=False, timeout=30):
    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gzip else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        r.read()


def phase(redis, kind, args, tmp, run):
    """Returns (instructions, seconds, collections) of one measured phase."""
    port = free_port()
    log = open(os.path.join(tmp, "%s-%d.log" % (kind, run)), "wb")
    proc = None
    if kind != "idle":
        argv, url = exporter(kind, args, redis.port, port)
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        wait_until(kind + " answering", lambda: get(url) is None, 60)
        # Warm-up: connections made, capabilities learnt, pages rendered.
        for _ in range(args.warmup):
            time.sleep(args.interval)
            get(url)
    before = info_calls(redis.port)
    redis.zero()
    t0 = time.monotonic()
    next_at = t0
    for _ in range(args.rounds):
        next_at += args.interval
        time.sleep(max(0.0, next_at - time.monotonic()))
        if kind == "vitals":
            get(url, gzip=True)  # what Prometheus does; costs Redis nothing
        elif kind == "peer":
            get(url, gzip=True)  # one collection per scrape
    instr = redis.dump_instructions()
    seconds = time.monotonic() - t0
    after = info_calls(redis.port)
    if proc:
        proc.terminate()
        proc.wait(30)
    if kind == "vitals":
        # INFO calls between the two readings, less the first reading itself:
        # one per poll (each poll is one INFO; polls made while the dump was
        # taken are counted too, a rounding error of at most one).
        collections = after - before - 1
    elif kind == "peer":
        collections = args.rounds
    else:
        collections = 0
    return instr, seconds, collections


def native_redis(args, prefix):
    """A native redis-server with a little data: (process, port, tmp dir)."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    port = free_port()
    proc = subprocess.Popen(
        [args.redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--hz", "10", "--dir", tmp],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until("redis-server", lambda: redis_cmd(port, "PING", timeout=2) == b"PONG", 30)
        seed(port)
    except BaseException:
        # Not left running when the harness gives up (sys.exit included).
        proc.kill()
        raise
    return proc, port, tmp


def exporter(kind, args, redis_port, http_port):
    """(argv, url of one collection) for `kind` collecting one node."""
    if kind == "vitals":
        return ([args.vitals_bin, "--redis.addr", "127.0.0.1:%d" % redis_port,
                 "--web.listen-address", "127.0.0.1:%d" % http_port,
                 "--poll.interval", "%dms" % round(args.interval * 1000),
                 "--poll.timeout", "%dms" % round(args.interval * 1000),
                 "--log.level", "warn"] + args.vitals_arg,
                "http://127.0.0.1:%d/metrics" % http_port)
    return ([args.peer_bin, "-redis.addr=", "-web.listen-address=127.0.0.1:%d" % http_port] + args.peer_arg,
            "http://127.0.0.1:%d/scrape?target=redis://127.0.0.1:%d" % (http_port, redis_port))


def cold_probe(args):
    """commandstats µs of single commands, warm (back to back) and after the
    server sat idle for --interval: what the host's penalty on idle memory
    does to bench/compare.py's Redis column. Native redis-server."""
    proc, port, tmp = native_redis(args, "redis-cold-")
    conn = None
    try:
        conn = resp.Resp(port, 30, OSError)
        ours = ["INFO", "server", "clients", "memory", "persistence", "stats", "replication",
                "cpu", "errorstats", "cluster", "keyspace", "commandstats"]
        # (label, command, its commandstats name)
        probes = [("PING", ["PING"], "ping"), ("INFO (redis-vitals' sections)", ours, "info"),
                  ("INFO ALL (peer)", ["INFO", "ALL"], "info"),
                  ("CONFIG GET * (peer)", ["CONFIG", "GET", "*"], "config|get")]

        def usec():
            return {name: u for name, (_, u) in commandstats(conn).items()}

        # Only the probed command's counter is read. A reading is itself an
        # INFO, and its output holds the time of the reading before it: for
        # INFO probes each window starts with a back-to-back pair and the
        # second reading's own (warm) time is subtracted.
        rows = []
        for label, argv, name in probes:
            def delta(after, before):
                d = after.get(name, 0) - before.get(name, 0)
                return d - reading if name == "info" else d

            cold, warm, reading = [], [], 0
            for _ in range(args.rounds):
                usec()
                b = usec()
                time.sleep(args.interval)
                conn.call(*argv)
                a = usec()
                usec()
                c1 = usec()
                c2 = usec()
                reading = c2["info"] - c1["info"]
                cold.append(delta(a, b))
                b = usec()
                conn.call(*argv)
                a = usec()
                warm.append(delta(a, b))
            rows.append((label, statistics.median(warm), statistics.median(cold)))
        print("| command (one persistent connection) | commandstats µs, back to back | after %.0f s idle | x |" % args.interval)
        print("|---|---:|---:|---:|")
        for label, w, k in rows:
            print("| %s | %.0f | %.0f | %.0f |" % (label, w, k, k / max(w, 1)))
    finally:
        if conn:
            conn.close()
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


def referenced_kib(pid):
    for line in open("/proc/%d/smaps_rollup" % pid):
        if line.startswith("Referenced:"):
            return int(line.split()[1])
    return 0


def footprint(args):
    """Memory each process touches per collection: the kernel's referenced
    bits are cleared (/proc/PID/clear_refs), one collection is made after
    --interval of idle, and smaps_rollup's `Referenced` is read. On a host
    whose penalty is per page left idle, this is what a collection pays
    for. Native processes, one node, gzip scrapes."""
    redis, port, tmp = native_redis(args, "redis-footprint-")
    rows = []
    try:
        for kind in ("vitals", "peer"):
            argv, url = exporter(kind, args, port, free_port())
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_until(kind + " answering", lambda: get(url) is None, 60)
                for _ in range(args.warmup):
                    time.sleep(args.interval)
                    get(url, gzip=True)
                mine, theirs = [], []
                for _ in range(args.rounds):
                    for pid in (proc.pid, redis.pid):
                        with open("/proc/%d/clear_refs" % pid, "w") as f:
                            f.write("1")
                    time.sleep(args.interval)
                    get(url, gzip=True)
                    mine.append(referenced_kib(proc.pid))
                    theirs.append(referenced_kib(redis.pid))
                rows.append((kind, statistics.median(mine), statistics.median(theirs)))
            finally:
                proc.terminate()
                proc.wait(30)
    finally:
        redis.terminate()
        redis.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    print("| exporter | KiB it touches per collection | KiB Redis touches (its idle second included) |")
    print("|---|---:|---:|")
    for kind, a, b in rows:
        print("| %s | %.0f | %.0f |" % (kind, a, b))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30, help="collections per phase (default 30)")
    ap.add_argument("--runs", type=int, default=3, help="idle/vitals/peer phase triples; medians reported (default 3)")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between collections (default 1)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--vitals-bin", default=os.path.join(REPO, "target", "release", "redis-vitals"))
    ap.add_argument("--vitals-arg", action="append", default=[], help="extra flag for redis-vitals (repeatable)")
    ap.add_argument("--peer-bin", default="/usr/bin/prometheus-redis-exporter")
    ap.add_argument("--peer-arg", action="append", default=[], help="extra flag for the peer (repeatable)")
    ap.add_argument("--redis-server", default=shutil.which("redis-server") or "/usr/bin/redis-server")
    ap.add_argument("--cold-probe", action="store_true",
                    help="instead: commandstats cost of single commands warm and after --interval idle (native Redis)")
    ap.add_argument("--footprint", action="store_true",
                    help="instead: memory each exporter and Redis touch per collection (needs root for clear_refs)")
    args = ap.parse_args()
    if args.footprint:
        footprint(args)
        return
    if args.cold_probe:
        cold_probe(args)
        return
    for tool in ("valgrind", "callgrind_control"):
        if not shutil.which(tool):
            sys.exit("redis_work.py: %s not found (Debian package valgrind)" % tool)

    tmp = tempfile.mkdtemp(prefix="redis-work-")
    redis = CallgrindRedis(args.redis_server, tmp)
    per = {"idle": [], "vitals": [], "peer": []}
    try:
        for run in range(args.runs):
            idle_i, idle_s, _ = phase(redis, "idle", args, tmp, run)
            rate = idle_i / idle_s
            per["idle"].append(rate)
            for kind in ("vitals", "peer"):
                i, s, n = phase(redis, kind, args, tmp, run)
                net = (i - rate * s) / n
                per[kind].append(net)
                print("run %d %-6s: %d collections, %.0f instructions each (phase %d, idle rate %.0f/s)"
                      % (run, kind, n, net, i, rate), flush=True)
    finally:
        redis.stop()
    v, p = statistics.median(per["vitals"]), statistics.median(per["peer"])
    ratios = [a / b for a, b in zip(per["vitals"], per["peer"])]
    print()
    print("| Redis instructions per collection (callgrind), median of %d runs | vitals | peer | ratio |" % args.runs)
    print("|---|---:|---:|---:|")
    print("| %s | %.0f | %.0f | **%.3f** (runs %s) |" % (
        " ".join(args.vitals_arg) or "defaults", v, p, v / p, ", ".join("%.3f" % r for r in ratios)))
    print("\nidle rate: %.0f instructions/s (median)" % statistics.median(per["idle"]))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
