#!/usr/bin/env python3
"""Hung nodes beside healthy ones (issue 16).

Phase 1: one exporter polls 100 real redis-server nodes (configured) and a
fake cluster node (configured) whose CLUSTER NODES lists 1000 addresses
whose TCP connect hangs. Reports the worst data age of the healthy nodes
(`redis_vitals_last_success_age_seconds`, one /metrics scrape a second),
whether any of them ever read `redis_up 0`, the exporter's RSS (now and
peak) and CPU over the measured window.

Phase 2: 500 configured targets whose connect hangs and one real node:
how long the real node's first successful poll takes, and its worst data
age afterwards (the second half of the issue's item 3).

A hung address is a loopback listener with a backlog of 0 whose accept
queue holds one connection the script made and never accepts: Linux then
drops further SYNs, so a connect hangs until the client gives up. Python
standard library only; reuses compare.py's fleet and process helpers.

    python3 bench/hung.py --binary target/release/redis-vitals
"""

import argparse
import os
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as c  # noqa: E402


def hung_listeners(n):
    """n listeners whose connects hang; returns (sockets to keep, addrs)."""
    keep, addrs = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(0)
        filler = socket.create_connection(s.getsockname(), timeout=2)
        keep += [s, filler]
        addrs.append("127.0.0.1:%d" % s.getsockname()[1])
    probe = socket.socket()
    probe.settimeout(0.3)
    try:
        probe.connect(tuple_of(addrs[0]))
        raise c.BenchError("a full backlog-0 listener accepted a connect; no hang here")
    except socket.timeout:
        pass
    finally:
        probe.close()
    return keep, addrs


def tuple_of(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


class FakeClusterNode:
    """Answers AUTH, PING, INFO (cluster_enabled:1), CLUSTER INFO and
    CLUSTER NODES listing `others` (ip:port strings)."""

    def __init__(self, others):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        lines = ["f" * 40 + " %s@1 myself,master - 0 0 1 connected 0-16383" % self.addr]
        for i, a in enumerate(others):
            lines.append("%040x %s@1 master - 0 0 1 connected" % (i + 1, a))
        self.nodes = ("\n".join(lines) + "\n").encode()
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _bulk(b):
        return b"$%d\r\n%s\r\n" % (len(b), b)

    def _serve(self, conn):
        f = conn.makefile("rb")
        info = (
            b"# Server\r\nredis_version:7.0.15\r\nrun_id:" + b"0" * 40 + b"\r\n"
            b"uptime_in_seconds:100\r\n# Clients\r\nconnected_clients:1\r\nmaxclients:10000\r\n"
            b"# Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_repl_offset:0\r\n"
            b"# Cluster\r\ncluster_enabled:1\r\n"
        )
        cinfo = b"cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_known_nodes:1001\r\n"
        try:
            while True:
                head = f.readline()
                if not head.startswith(b"*"):
                    return
                args = []
                for _ in range(int(head[1:])):
                    n = int(f.readline()[1:])
                    args.append(f.read(n + 2)[:n].upper())
                if args[0] == b"AUTH":
                    out = b"+OK\r\n"
                elif args[0] == b"PING":
                    out = b"+PONG\r\n"
                elif args[0] == b"INFO":
                    out = self._bulk(info)
                elif args[:2] == [b"CLUSTER", b"NODES"]:
                    out = self._bulk(self.nodes)
                elif args[:2] == [b"CLUSTER", b"INFO"]:
                    out = self._bulk(cinfo)
                else:
                    out = b"-ERR unknown command\r\n"
                conn.sendall(out)
        except (OSError, ValueError, IndexError):
            return
        finally:
            conn.close()


def series(body, name):
    """{addr: value} of the family `name` in a /metrics body."""
    out = {}
    prefix = name + "{"
    for line in body.split("\n"):
        if not line.startswith(prefix):
            continue
        i = line.find('addr="')
        if i < 0:
            continue
        j = line.find('"', i + 6)
        out[line[i + 6 : j]] = float(line.rsplit(" ", 1)[1])
    return out


def start_exporter(binary, tmp, tag, targets, extra_toml):
    port = c.free_ports(1)[0]
    cfg = os.path.join(tmp, tag + ".toml")
    with open(cfg, "w") as f:
        f.write("[redis]\naddr = [\n")
        for t in targets:
            f.write('  "redis://%s",\n' % t)
        f.write("]\n" + extra_toml)
        f.write('\n[web]\nlisten-address = "127.0.0.1:%d"\n\n[log]\nlevel = "warn"\n' % port)
    proc = c.spawn([binary, "--config.file", cfg], tag, os.path.join(tmp, tag + ".log"))
    scraper = c.Scraper(port, 30, False)
    c.wait_http(scraper, "/-/healthy", 200, 30, proc, tag)
    return proc, scraper


def failed_polls(body, healthy):
    """Failed polls of the nodes not in `healthy` (the hung ones)."""
    total = 0.0
    for line in body.split("\n"):
        if line.startswith("redis_vitals_poll_errors_total{"):
            i = line.find('addr="')
            j = line.find('"', i + 6)
            if line[i + 6 : j] not in healthy:
                total += float(line.rsplit(" ", 1)[1])
    return total


def measure(proc, scraper, healthy, seconds):
    """Scrapes once a second for `seconds`: worst data age of `healthy`,
    scrapes where one read redis_up 0, CPU and RSS."""
    healthy = set(healthy)
    _, body, _ = scraper.get("/metrics")
    failed0 = failed_polls(body.decode(), healthy)
    t0 = time.monotonic()
    cpu0 = c.proc_ticks_seconds(proc.pid)
    worst, down, scrapes = 0.0, 0, 0
    next_at = t0
    while time.monotonic() - t0 < seconds:
        _, body, _ = scraper.get("/metrics")
        body = body.decode()
        ages = series(body, "redis_vitals_last_success_age_seconds")
        ups = series(body, "redis_up")
        worst = max([worst] + [ages.get(a, float("inf")) for a in healthy])
        down += sum(1 for a in healthy if ups.get(a) != 1.0)
        scrapes += 1
        next_at += 1.0
        time.sleep(max(0.0, next_at - time.monotonic()))
    wall = time.monotonic() - t0
    cpu = c.proc_ticks_seconds(proc.pid) - cpu0
    return {
        "worst_age_s": worst,
        "healthy_down_readings": down,
        "scrapes": scrapes,
        "cpu_pct": 100.0 * cpu / wall,
        "rss_mib": c.proc_status_kib(proc.pid, "VmRSS") / 1024.0,
        "peak_rss_mib": c.proc_status_kib(proc.pid, "VmHWM") / 1024.0,
        "polled": len(series(body, "redis_up")),
        "hung_failed_polls": failed_polls(body, healthy) - failed0,
        "page_kib": len(body) / 1024.0,
    }


def wait_all_up(scraper, healthy, limit_s):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        _, body, _ = scraper.get("/metrics")
        ups = series(body.decode(), "redis_up")
        if all(ups.get(a) == 1.0 for a in healthy):
            return time.monotonic() - t0
        time.sleep(0.1)
    raise c.BenchError("healthy nodes not all up within %.0f s" % limit_s)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default="target/release/redis-vitals")
    ap.add_argument("--healthy", type=int, default=100)
    ap.add_argument("--hung", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=150)
    ap.add_argument("--configured-hung", type=int, default=500)
    ap.add_argument("--configured-seconds", type=float, default=45)
    ap.add_argument("--old", action="store_true",
                    help="the binary predates cluster.max-nodes (bbb571e): do not set it")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="redis-vitals-hung-")
    try:
        fleet = c.Fleet(args.healthy, tmp, "redis-server", 10, False)
        fleet.start()
        healthy = ["127.0.0.1:%d" % p for p in fleet.ports]

        keep, hung = hung_listeners(args.hung)
        fake = FakeClusterNode(hung)
        proc, scraper = start_exporter(
            args.binary,
            tmp,
            "discovered",
            healthy + [fake.addr],
            "" if args.old else "[cluster]\nmax-nodes = %d\n" % (args.hung + 10),
        )
        up_after = wait_all_up(scraper, healthy, 120)
        r = measure(proc, scraper, healthy, args.seconds)
        c.stop(proc)
        print("phase 1: %d healthy configured + %d hung discovered from a fake cluster node"
              % (args.healthy, args.hung))
        print("  all healthy up after %.2f s; then over %.0f s (%d scrapes):" % (up_after, args.seconds, r["scrapes"]))
        for k, v in r.items():
            print("  %-22s %s" % (k, round(v, 3) if isinstance(v, float) else v))
        fake.stop = True
        for s in keep:
            s.close()

        keep, hung = hung_listeners(args.configured_hung)
        one = healthy[:1]
        t0 = time.monotonic()
        proc, scraper = start_exporter(args.binary, tmp, "configured", one + hung, "")
        wait_all_up(scraper, one, 120)
        first = time.monotonic() - t0
        r = measure(proc, scraper, one, args.configured_seconds)
        c.stop(proc)
        print("phase 2: 1 healthy + %d hung, all configured" % args.configured_hung)
        print("  healthy node's first success %.2f s after the exporter started" % first)
        for k, v in r.items():
            print("  %-22s %s" % (k, round(v, 3) if isinstance(v, float) else v))
        for s in keep:
            s.close()
    finally:
        c.stop_all()


if __name__ == "__main__":
    main()
