"""Where a small fleet's exporter CPU goes: one redis-vitals process, polled
nodes, alternating phases with and without one /metrics scrape per second.

    python3 bench/poll_vs_scrape.py target/release/redis-vitals NODES SECONDS [extra flags]

Prints CPU microseconds per second per node for each phase. Reuses
compare.py's helpers; standard library only.
"""
import os, sys, time, tempfile
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as c
c.DEADLINE[0] = time.monotonic() + 3600
binary = sys.argv[1]; n = int(sys.argv[2]); secs = int(sys.argv[3])
tmp = tempfile.mkdtemp(prefix="split-")
fleet = c.Fleet(n, tmp, "redis-server", 10, False)
try:
    fleet.start()
    port = c.free_ports(1)[0]
    cfg = os.path.join(tmp, "v.toml")
    with open(cfg, "w") as f:
        f.write("[redis]\naddr = [\n" + "".join('  "redis://127.0.0.1:%d",\n' % p for p in fleet.ports))
        f.write(']\n[poll]\ninterval = "1s"\ntimeout = "1s"\n[web]\nlisten-address = "127.0.0.1:%d"\n[log]\nlevel = "warn"\n' % port)
    proc = c.spawn([binary, "--config.file", cfg] + sys.argv[4:], "v", os.path.join(tmp, "v.log"))
    s = c.Scraper(port, 30, False)
    c.wait_http(s, "/-/ready", 200, 60, proc, "v")
    time.sleep(2)
    for mode in ("no-scrape", "scrape", "no-scrape", "scrape"):
        b = c.CpuMark(proc.pid); t0 = time.monotonic()
        for i in range(secs):
            if mode == "scrape": s.get("/metrics")
            time.sleep(max(0, t0 + i + 1 - time.monotonic()))
        a = c.CpuMark(proc.pid)
        cpu, _ = c.cpu_delta(b, a)
        print(mode, "cpu us per second per node: %.1f" % (cpu / (time.monotonic() - t0) / n * 1e6))
    c.stop(proc)
finally:
    fleet.stop(); c.stop_all()
