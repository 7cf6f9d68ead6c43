#!/usr/bin/env python3
"""The floor at one node: redis-vitals, the peer and examples/floor.rs
(the same wake-ups and system calls as one poll and one scrape a second,
with no parsing, rendering or bookkeeping), on one real redis-server, in
alternating phases (floor, vitals, peer, floor, ...), never at the same
time. Prints exporter CPU per round (one poll + one scrape; for the peer,
one /scrape) for each, medians over the runs, and each as a fraction of
the peer's; for the floor and redis-vitals also the poll thread's and the
HTTP thread's shares. The floor's page is as long as the redis-vitals page
seen in the same run. With --timeout-variant, a fourth phase runs the
floor with each round trip inside tokio::time::timeout, as the poller's.

    cargo build --release --example floor && cargo build --release
    python3 bench/floor.py --rounds 20 --runs 3

Standard library only; reuses compare.py's fleet, process and HTTP helpers.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ab  # noqa: E402
import compare as c  # noqa: E402

DEFAULT_FLOOR = os.path.join(c.REPO, "target", "release", "examples", "floor")
# The floor's page length until a redis-vitals page has been seen (the
# one-node page was 20.6 KB at round 4).
DEFAULT_PAGE_BYTES = 20600


# Thread names (comm, 15 bytes at most) of the two threads that matter.
HTTP_THREADS = ("redis-vitals-ht", "floor-http")


def measure(proc, scraper, path, rounds, warmup):
    """Exporter CPU per round, microseconds, over `rounds` 1 s rounds with one
    GET of `path` each. Returns (cpu_us, last body length, HTTP thread's
    µs per round)."""
    size = [0]

    def one(_k):
        st, body, _ = scraper.get(path)
        if st != 200:
            raise c.BenchError("%s: status %d" % (path, st))
        size[0] = len(body)

    c.run_rounds(warmup, 1.0, one, "warm-up")
    before = c.CpuMark(proc.pid)
    threads_before = ab.thread_ns(proc.pid)
    t0 = time.monotonic()
    c.run_rounds(rounds, 1.0, one, path)
    cpu, _ = c.cpu_delta(before, c.CpuMark(proc.pid))
    secs = time.monotonic() - t0
    threads_after = ab.thread_ns(proc.pid)
    http_ns = sum(threads_after.get(t, 0) - threads_before.get(t, 0) for t in HTTP_THREADS)
    return cpu / secs * 1e6, size[0], http_ns / secs / 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--vitals-bin", default=c.DEFAULT_VITALS)
    ap.add_argument("--peer-bin", default=c.DEFAULT_PEER)
    ap.add_argument("--floor-bin", default=DEFAULT_FLOOR)
    ap.add_argument("--redis-server", default="redis-server")
    ap.add_argument("--timeout-variant", action="store_true", help="also run the floor with a tokio timeout per round trip")
    ap.add_argument(
        "--one-thread-variants",
        action="store_true",
        help="also run the floor on one thread with the round trip right after each answer ('aligned', what poll.follow-scrapes does)",
    )
    ap.add_argument("--variant", action="append", default=[], help="an extra floor mode of examples/floor.rs, e.g. aligned2 or before1:5 (repeatable)")
    args = ap.parse_args()
    for b in (args.vitals_bin, args.peer_bin, args.floor_bin):
        if not os.access(b, os.X_OK):
            sys.exit("floor.py: %s not found (build it first: see python3 bench/floor.py --help)" % b)
    kinds = (
        ["floor"]
        + (["floor+timeout"] if args.timeout_variant else [])
        + (["floor+aligned"] if args.one_thread_variants else [])
        + ["floor+" + v for v in args.variant]
        + ["vitals", "peer"]
    )
    c.DEADLINE[0] = time.monotonic() + 600 + len(kinds) * args.runs * (args.rounds + args.warmup + 10)
    res = {k: [] for k in kinds}
    http = {k: [] for k in kinds}
    page = DEFAULT_PAGE_BYTES
    with tempfile.TemporaryDirectory(prefix="vitals-floor-") as tmp:
        fleet = c.Fleet(1, tmp, args.redis_server, 10, False)
        try:
            fleet.start()
            redis_port = fleet.ports[0]
            for run in range(args.runs):
                # The floor (and its variant).
                for kind in [k for k in kinds if k.startswith("floor")]:
                    port = c.free_ports(1)[0]
                    argv = [args.floor_bin, str(redis_port), str(port), str(page)]
                    if kind != "floor":
                        argv.append(kind.split("+", 1)[1])
                    proc = c.spawn(argv, kind, os.path.join(tmp, "floor.log"))
                    s = c.Scraper(port, 30, False)
                    try:
                        c.wait_http(s, "/", 200, 30, proc, kind)
                        cpu, _, h = measure(proc, s, "/metrics", args.rounds, args.warmup)
                        res[kind].append(cpu)
                        http[kind].append(h)
                    finally:
                        s.close_all()
                        c.stop(proc)
                # redis-vitals, compare.py's settings.
                proc, s = ab.start_vitals(args.vitals_bin, fleet, tmp, "vitals", 1.0, [])
                try:
                    cpu, page, h = measure(proc, s, "/metrics", args.rounds, args.warmup)
                    res["vitals"].append(cpu)
                    http["vitals"].append(h)
                finally:
                    s.close_all()
                    c.stop(proc)
                # The peer, multi-target mode.
                port = c.free_ports(1)[0]
                proc = c.spawn([args.peer_bin, "-redis.addr=", "-web.listen-address=127.0.0.1:%d" % port], "peer", os.path.join(tmp, "peer.log"))
                s = c.Scraper(port, 30, False)
                try:
                    c.wait_http(s, "/", 200, 30, proc, "peer")
                    cpu, _, _ = measure(proc, s, "/scrape?target=redis://127.0.0.1:%d" % redis_port, args.rounds, args.warmup)
                    res["peer"].append(cpu)
                finally:
                    s.close_all()
                    c.stop(proc)
                print("run %d: %s (page %d bytes)" % (run, ", ".join("%s %.0f us" % (k, v[-1]) for k, v in res.items()), page), flush=True)
        finally:
            fleet.stop()
            c.stop_all()
    med = {k: statistics.median(v) for k, v in res.items()}
    print("\nN=1, %d rounds x 1 s, %d runs; exporter CPU per round, medians" % (args.rounds, args.runs))
    print("%-14s %8s %8s %12s %12s" % ("", "us", "/ peer", "poll thread", "HTTP thread"))
    for k in kinds:
        if k == "peer":
            print("%-14s %8.0f %8.3f" % (k, med[k], 1.0))
            continue
        # Per-thread medians are taken separately, so they need not add up.
        h = statistics.median(http[k])
        p = statistics.median([r - x for r, x in zip(res[k], http[k])])
        print("%-14s %8.0f %8.3f %12.0f %12.0f" % (k, med[k], med[k] / med["peer"], p, h))
    print("vitals above the floor: %.0f us (%.3f of the peer)" % (med["vitals"] - med["floor"], (med["vitals"] - med["floor"]) / med["peer"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
