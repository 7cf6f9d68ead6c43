#!/usr/bin/env python3
"""A/B two redis-vitals builds on the same real Redis fleet.

For profiling work between full compare.py runs: the same N redis-server
nodes (started once), each build run in alternating phases (A, B, A, B...),
never at the same time, with the same config as compare.py (poll interval =
round interval) and one /metrics scrape per round. Per phase: exporter CPU
per node polled (schedstat), the HTTP thread's share of it per round,
RSS and peak RSS at the end, scrape latency p50/p99. Prints medians per build and B/A ratios. Python standard library
only; reuses compare.py's fleet, process and HTTP helpers.

    python3 bench/ab.py --a OLD_BINARY --b NEW_BINARY --nodes 100 --rounds 30 --runs 3
"""

import argparse
import glob
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as c  # noqa: E402


# The HTTP thread's name (comm): its CPU is the scrapes' share.
HTTP_THREAD = "redis-vitals-ht"


def thread_ns(pid):
    """{thread name: ns on CPU}, threads of one name summed (schedstat)."""
    out = {}
    for task in glob.glob("/proc/%d/task/*" % pid):
        try:
            with open(task + "/comm") as f:
                name = f.read().strip()
            with open(task + "/schedstat") as f:
                out[name] = out.get(name, 0) + int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


def start_vitals(binary, fleet, tmp, tag, interval, extra, gzip=False):
    """Starts redis-vitals on `fleet` (compare.py's settings: poll interval =
    round interval, 1 s timeout) and waits until it is ready. Returns
    (process, scraper)."""
    port = c.free_ports(1)[0]
    cfg = os.path.join(tmp, "ab-%s.toml" % tag)
    with open(cfg, "w") as f:
        f.write("[redis]\naddr = [\n")
        for p in fleet.ports:
            f.write('  "redis://127.0.0.1:%d",\n' % p)
        f.write('\n]\n[poll]\ninterval = "%dms"\ntimeout = "1s"\n' % round(interval * 1000))
        f.write('\n[web]\nlisten-address = "127.0.0.1:%d"\n\n[log]\nlevel = "warn"\n' % port)
    proc = c.spawn([binary, "--config.file", cfg] + extra, tag, os.path.join(tmp, tag + ".log"))
    scraper = c.Scraper(port, 30, gzip)
    try:
        c.wait_http(scraper, "/-/ready", 200, 30 + fleet.n * 0.1, proc, tag)
    except BaseException:
        c.stop(proc)
        raise
    return proc, scraper


def phase(binary, fleet, args, tmp, tag):
    proc, scraper = start_vitals(binary, fleet, tmp, tag, args.interval, args.arg, args.gzip)
    try:
        lat = []

        def one_round(i):
            st, body, dt = scraper.get("/metrics")
            if st != 200:
                raise c.BenchError("%s: /metrics status %d" % (tag, st))
            if measuring[0]:
                lat.append(dt)

        measuring = [False]
        c.run_rounds(args.warmup, args.interval, one_round, tag + " warm-up")
        before = c.CpuMark(proc.pid)
        threads_before = thread_ns(proc.pid)
        t0 = time.monotonic()
        measuring[0] = True
        c.run_rounds(args.rounds, args.interval, one_round, tag)
        after = c.CpuMark(proc.pid)
        http_ns = thread_ns(proc.pid).get(HTTP_THREAD, 0) - threads_before.get(HTTP_THREAD, 0)
        secs = time.monotonic() - t0
        cpu, _ = c.cpu_delta(before, after)
        polls = fleet.n * secs / args.interval
        return {
            "cpu_us_per_node": cpu / polls * 1e6,
            "http_us_per_round": http_ns / 1e3 / (secs / args.interval),
            "rss_mib": c.proc_status_kib(proc.pid, "VmRSS") / 1024,
            "hwm_mib": c.proc_status_kib(proc.pid, "VmHWM") / 1024,
            "p50_ms": c.pct(lat, 50) * 1000,
            "p99_ms": c.pct(lat, 99) * 1000,
        }
    finally:
        scraper.close_all()
        c.stop(proc)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="baseline binary")
    ap.add_argument("--b", required=True, help="candidate binary")
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--arg", action="append", default=[], help="extra flag for both builds")
    ap.add_argument("--gzip", action="store_true", help="scrape with Accept-Encoding: gzip, as Prometheus does")
    ap.add_argument("--redis-server", default="redis-server")
    args = ap.parse_args()
    c.DEADLINE[0] = time.monotonic() + 3600
    res = {"A": [], "B": []}
    with tempfile.TemporaryDirectory(prefix="vitals-ab-") as tmp:
        fleet = c.Fleet(args.nodes, tmp, args.redis_server, 10, False)
        try:
            fleet.start()
            for run in range(args.runs):
                for tag, binary in (("A", args.a), ("B", args.b)):
                    r = phase(binary, fleet, args, tmp, "%s%d" % (tag, run))
                    res[tag].append(r)
                    print(tag, run, {k: round(v, 3) for k, v in r.items()}, flush=True)
        finally:
            fleet.stop()
            c.stop_all()
    print("\nN=%d, %d rounds x %gs, %d runs; medians" % (args.nodes, args.rounds, args.interval, args.runs))
    print("%-18s %10s %10s %8s" % ("metric", "A", "B", "B/A"))
    for k in ("cpu_us_per_node", "http_us_per_round", "rss_mib", "hwm_mib", "p50_ms", "p99_ms"):
        a = statistics.median(r[k] for r in res["A"])
        b = statistics.median(r[k] for r in res["B"])
        print("%-18s %10.2f %10.2f %8.3f" % (k, a, b, b / a if a else float("nan")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
