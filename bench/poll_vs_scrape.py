#!/usr/bin/env python3
"""Where a small fleet's exporter CPU goes: one redis-vitals process on N
real nodes, alternating phases without and with one /metrics scrape per
second (no-scrape, scrape, no-scrape, scrape). Prints CPU microseconds per
second per node for each phase; the difference is the scrape's cost.

    python3 bench/poll_vs_scrape.py --binary target/release/redis-vitals --nodes 1 --seconds 15

Standard library only; reuses compare.py's and ab.py's helpers.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ab  # noqa: E402
import compare as c  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=c.DEFAULT_VITALS)
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--seconds", type=int, default=15, help="length of each phase")
    ap.add_argument("--warmup", type=int, default=3, help="scraped rounds before the first phase")
    ap.add_argument("--arg", action="append", default=[], help="extra flag for redis-vitals")
    ap.add_argument("--redis-server", default="redis-server")
    args = ap.parse_args()
    c.DEADLINE[0] = time.monotonic() + 600 + 4 * args.seconds
    with tempfile.TemporaryDirectory(prefix="vitals-split-") as tmp:
        fleet = c.Fleet(args.nodes, tmp, args.redis_server, 10, False)
        try:
            fleet.start()
            proc, scraper = ab.start_vitals(args.binary, fleet, tmp, "vitals", 1.0, args.arg)
            try:
                c.run_rounds(args.warmup, 1.0, lambda _: scraper.get("/metrics"), "warm-up")
                for mode in ("no-scrape", "scrape", "no-scrape", "scrape"):
                    before = c.CpuMark(proc.pid)
                    t0 = time.monotonic()
                    c.run_rounds(args.seconds, 1.0, lambda _: mode == "scrape" and scraper.get("/metrics"), mode)
                    cpu, _ = c.cpu_delta(before, c.CpuMark(proc.pid))
                    per = cpu / (time.monotonic() - t0) / args.nodes * 1e6
                    print("%-9s CPU per second per node: %.1f us" % (mode, per), flush=True)
            finally:
                scraper.close_all()
                c.stop(proc)
        finally:
            fleet.stop()
            c.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
