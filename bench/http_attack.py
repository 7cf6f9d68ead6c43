#!/usr/bin/env python3
"""Attack soak for redis-vitals' HTTP server: does a legitimate scraper keep
getting answers while hostile clients hammer the port, and do memory and
file descriptors stay bounded?

Python 3 standard library only; reuses compare.py's fleet and process
helpers. Everything listens on and connects to loopback (127.x) only; every
loop is bounded by a deadline and every attack by a connection budget.

    cargo build --release
    python3 bench/http_attack.py --minutes 10            # the soak
    python3 bench/http_attack.py --minutes 2 --no-attack # baseline
    python3 bench/http_attack.py --minutes 2 --auth      # + (d), basic auth
    python3 bench/http_attack.py --minutes 1 --nodes 10  # a quick try

What it does:

1. Starts --nodes real redis-server nodes on free loopback ports (`--save ""
   --appendonly no`, a little data in each, as compare.py does) and the
   release redis-vitals against all of them: `--redis.addr` repeated,
   default poll settings, `--web.listen-address 127.0.0.1:PORT`, log level
   warn. With --auth also `--web.config.file` holding one bcrypt user
   (cost 10) for the scraper. It waits for /-/ready and --warmup seconds.
2. Runs, for --minutes, at the same time:
   * the scraper, source 127.0.0.2: `GET /metrics` with `Accept-Encoding:
     gzip` every --scrape-interval (5 s) on a NEW connection each time (the
     harder case: it must win a connection slot under attack every time;
     Prometheus would keep its connection alive). Timeout --scrape-timeout
     (10 s, Prometheus's default). Latency runs from connect() to the last
     body byte. Each answer is gunzipped and its `redis_up ... 1` lines
     counted.
   * attacks, each in its own process (so they do not share the scraper's
     GIL), each from its own 127.x source addresses (bound before connect):
     (a) 127.0.1.x: --silent connections (300, over --silent-sources 10
         addresses) that send nothing, reopened when the server closes them;
     (b) 127.0.2.x: slow-loris, 8 sources x 40 connections, each sending
         one byte of an endless request head every 2 s, reconnecting when
         closed;
     (c) 127.0.3.x: non-readers, 8 sources x 32 connections, each sending
         20 pipelined `GET /metrics` (no gzip: the larger page) and never
         reading, with a --nonreader-rcvbuf (4096) receive buffer; all
         dropped (RST: unread data) and reopened every --nonreader-cycle
         (3 s);
     (d) with --auth, 127.0.4.x: 64 keep-alive connections (4 x 16) sending
         `GET /metrics` with a wrong password in a loop, reading each
         answer (401/429), reconnecting when closed.
     New connections per attack are capped at --max-connect-rate (200) per
     second and --max-connects (400000) in all. Together the attacks want
     about 880 connections against the daemon's 256 slots, so every new
     one evicts another and the churn runs at what the budgets and the
     CPU allow.
   * a sampler: the daemon's VmRSS, VmHWM, open fds (/proc/PID/fd), thread
     count and CPU every --sample-interval (10 s).
3. Stops the attacks, waits --settle (8 s: past the 5 s head and write
   timeouts) and samples once more ("after").

Output: scrapes made / answered 200 / failed, latency p50 / p99 / worst,
RSS and fds at start (before the attacks) / max / end (last sample under
attack) / after, the daemon's CPU, the attacks' own counters, and a
one-line verdict. --json FILE writes every scrape and sample.

Verdict: PASS when every scrape was answered 200 with all nodes up, the
worst latency is under --scrape-timeout, RSS max stays under start +
--rss-margin-mib (64), and fds after the settle are back within 20 of the
start; otherwise FAIL with the reasons.
"""

import argparse
import base64
import gzip
import http.client
import json
import multiprocessing as mp
import os
import random
import resource
import selectors
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as c  # noqa: E402

IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h: pick the port at connect()
SCRAPER_SRC = "127.0.0.2"
AUTH_USER = "prometheus"
AUTH_PASSWORD = "right-password"


def now():
    return time.monotonic()


# ---------------------------------------------------------------------------
# Attack processes
# ---------------------------------------------------------------------------


class Budget:
    """Bounds new connections: at most `rate` per second, `total` in all."""

    def __init__(self, rate, total):
        self.rate = rate
        self.total = total
        self.used = 0
        self.window = now()
        self.in_window = 0

    def take(self):
        t = now()
        if t - self.window >= 1.0:
            self.window = t
            self.in_window = 0
        if self.used >= self.total or self.in_window >= self.rate:
            return False
        self.used += 1
        self.in_window += 1
        return True


def open_conn(src, port, rcvbuf=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    except OSError:
        pass
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((src, 0))
    s.setblocking(False)
    s.connect_ex(("127.0.0.1", port))
    return s


def sources(prefix, n):
    return ["%s.%d" % (prefix, i + 1) for i in range(n)]


def attack_main(kind, cfg, port, deadline_wall, q):
    """Entry point of one attack process; puts its counters on q at the end."""
    c._die_with_parent()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    deadline = now() + (deadline_wall - time.time())
    stats = {"kind": kind, "connects": 0, "connect_errors": 0, "closed_by_server": 0}
    try:
        {"silent": attack_silent, "loris": attack_loris,
         "nonreader": attack_nonreader, "auth": attack_auth}[kind](cfg, port, deadline, stats)
    except Exception as e:  # report, do not hide
        stats["error"] = repr(e)
    q.put(stats)


def _slot_loop(cfg, port, deadline, stats, srcs, per_src, on_open, on_tick, on_readable,
               reopen_delay=0.05, rcvbuf=0, watch_reads=True):
    """Keeps len(srcs) x per_src connections open; calls on_readable(sock, st)
    -> False to drop it; on_tick(sock, st, t) for periodic work."""
    budget = Budget(cfg.max_connect_rate, cfg.max_connects)
    sel = selectors.DefaultSelector()
    conns = {}  # sock -> state dict
    want = [(src, now()) for src in srcs for _ in range(per_src)]  # (src, due)

    def drop(s, by_server):
        st = conns.pop(s, None)
        try:
            sel.unregister(s)
        except (KeyError, ValueError):
            pass
        s.close()
        if st is not None:
            if by_server:
                stats["closed_by_server"] += 1
            want.append((st["src"], now() + reopen_delay))

    iterations = 0
    while now() < deadline and iterations < 10_000_000:
        iterations += 1
        t = now()
        keep = []
        for src, due in want:
            if due <= t and budget.take():
                try:
                    s = open_conn(src, port, rcvbuf)
                except OSError:
                    stats["connect_errors"] += 1
                    keep.append((src, t + 0.5))
                    continue
                stats["connects"] += 1
                st = {"src": src, "opened": t}
                conns[s] = st
                if watch_reads:
                    sel.register(s, selectors.EVENT_READ, st)
                on_open(s, st)
            else:
                keep.append((src, due))
        want[:] = keep
        events = sel.select(timeout=0.05) if watch_reads else []
        if not watch_reads:
            time.sleep(0.05)
        for key, _ in events:
            s = key.fileobj
            if s in conns and not on_readable(s, conns[s]):
                drop(s, True)
        t = now()
        for s in list(conns):
            r = on_tick(s, conns[s], t)
            if r == "server":
                drop(s, True)
            elif r == "client":
                drop(s, False)
    for s in list(conns):
        s.close()
    stats["open_at_end"] = len(conns)
    stats["budget_used"] = budget.used


def _eof_or_error(s):
    """True if the peer closed or reset (data, if any, is discarded)."""
    try:
        data = s.recv(65536)
        return not data
    except BlockingIOError:
        return False
    except OSError:
        return True


def attack_silent(cfg, port, deadline, stats):
    n_src = cfg.silent_sources
    per = max(1, cfg.silent // n_src)
    _slot_loop(cfg, port, deadline, stats, sources("127.0.1", n_src), per,
               on_open=lambda s, st: None,
               on_tick=lambda s, st, t: None,
               on_readable=lambda s, st: not _eof_or_error(s))


LORIS_HEAD = ("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              + "".join("X-Loris-%d: %s\r\n" % (i, "z" * 40) for i in range(200))).encode()


def attack_loris(cfg, port, deadline, stats):
    stats["bytes_sent"] = 0

    def on_open(s, st):
        st["off"] = 0
        st["next"] = now() + random.uniform(0.0, cfg.loris_period)

    def on_tick(s, st, t):
        if t < st["next"]:
            return None
        st["next"] = t + cfg.loris_period
        try:
            n = s.send(LORIS_HEAD[st["off"] % len(LORIS_HEAD):][:1])
            st["off"] += n
            stats["bytes_sent"] += n
        except BlockingIOError:
            pass
        except OSError:
            return "server"
        return None

    _slot_loop(cfg, port, deadline, stats, sources("127.0.2", cfg.loris_sources),
               cfg.loris_conns, on_open, on_tick,
               on_readable=lambda s, st: not _eof_or_error(s))


def attack_nonreader(cfg, port, deadline, stats):
    req = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: nonreader\r\n\r\n"
    burst = req * cfg.nonreader_pipeline
    stats["bytes_sent"] = 0
    stats["send_errors"] = 0

    def on_open(s, st):
        st["sent"] = 0
        st["cycle_end"] = st["opened"] + cfg.nonreader_cycle

    def on_tick(s, st, t):
        if t >= st["cycle_end"]:
            return "client"  # drop and reopen: unread data makes it an RST
        if st["sent"] < len(burst):
            try:
                n = s.send(burst[st["sent"]:])
                st["sent"] += n
                stats["bytes_sent"] += n
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                stats["send_errors"] += 1
                return "server"
        return None

    # Never read, nor watch for reads: the answers stay in the small
    # receive buffer; a connection the server closed is found by a failed
    # send or not at all (all are dropped at the end of their cycle anyway).
    _slot_loop(cfg, port, deadline, stats, sources("127.0.3", cfg.nonreader_sources),
               cfg.nonreader_conns, on_open, on_tick,
               on_readable=lambda s, st: True, reopen_delay=0.0,
               rcvbuf=cfg.nonreader_rcvbuf, watch_reads=False)


def attack_auth(cfg, port, deadline, stats):
    bad = base64.b64encode(("%s:wrong" % AUTH_USER).encode()).decode()
    req = ("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic %s\r\n\r\n"
           % bad).encode()
    status = {}
    stats["status"] = status

    def on_open(s, st):
        st["buf"] = b""
        st["pending"] = False
        st["conn_ok"] = False

    def on_tick(s, st, t):
        if not st["pending"]:
            try:
                s.send(req)  # small: all or nothing on an empty send buffer
                st["pending"] = True
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                return "server"
        return None

    def on_readable(s, st):
        try:
            data = s.recv(65536)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not data:
            return False
        st["buf"] += data
        # Answers are small with Content-Length: count complete ones.
        for _ in range(1000):
            head_end = st["buf"].find(b"\r\n\r\n")
            if head_end < 0:
                break
            head = st["buf"][:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v.strip() or 0)
            total = head_end + 4 + length
            if len(st["buf"]) < total:
                break
            code = head.split(" ", 2)[1] if " " in head else "?"
            status[code] = status.get(code, 0) + 1
            st["buf"] = st["buf"][total:]
            st["pending"] = False
        return True

    _slot_loop(cfg, port, deadline, stats, sources("127.0.4", cfg.auth_sources),
               cfg.auth_conns, on_open, on_tick, on_readable)


# ---------------------------------------------------------------------------
# Scraper and sampler
# ---------------------------------------------------------------------------


def scrape_once(port, timeout, auth_header):
    rec = {"t": time.time(), "status": None, "seconds": None, "bytes": 0, "up": None, "error": None}
    headers = {"Accept-Encoding": "gzip", "Accept": "text/plain",
               "User-Agent": "http-attack-scraper"}
    if auth_header:
        headers["Authorization"] = auth_header
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                      source_address=(SCRAPER_SRC, 0))
    t0 = time.perf_counter()
    try:
        conn.request("GET", "/metrics", headers=headers)
        r = conn.getresponse()
        body = r.read()
        rec["seconds"] = time.perf_counter() - t0
        rec["status"] = r.status
        rec["bytes"] = len(body)
        rec["encoding"] = r.getheader("Content-Encoding")
        if r.status == 200:
            if rec["encoding"] == "gzip":
                body = gzip.decompress(body)
            rec["plain_bytes"] = len(body)
            rec["up"] = sum(1 for line in body.split(b"\n")
                            if line.startswith(b"redis_up{") and line.endswith(b" 1"))
    except Exception as e:  # timeouts, resets: a failed scrape
        rec["seconds"] = time.perf_counter() - t0
        rec["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        conn.close()
    return rec


def sample(pid, label):
    s = {"t": time.time(), "label": label}
    try:
        s["rss_kib"] = c.proc_status_kib(pid, "VmRSS")
        s["hwm_kib"] = c.proc_status_kib(pid, "VmHWM")
        s["threads"] = c.proc_status_kib(pid, "Threads")
        s["fds"] = len(os.listdir("/proc/%d/fd" % pid))
        s["cpu_s"] = c.proc_ticks_seconds(pid)
    except OSError as e:
        s["error"] = str(e)
    with open("/proc/loadavg") as f:
        s["load1"] = float(f.read().split()[0])
    return s


def pct(values, q):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(q / 100.0 * len(v) + 0.5)) - 1))]


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--no-attack", action="store_true", help="baseline: scraper and sampler only")
    ap.add_argument("--auth", action="store_true",
                    help="basic auth via --web.config.file, and attack (d)")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds after ready")
    ap.add_argument("--scrape-interval", type=float, default=5.0)
    ap.add_argument("--scrape-timeout", type=float, default=10.0)
    ap.add_argument("--sample-interval", type=float, default=10.0)
    ap.add_argument("--settle", type=float, default=8.0)
    ap.add_argument("--silent", type=int, default=300)
    ap.add_argument("--silent-sources", type=int, default=10)
    ap.add_argument("--loris-sources", type=int, default=8)
    ap.add_argument("--loris-conns", type=int, default=40)
    ap.add_argument("--loris-period", type=float, default=2.0)
    ap.add_argument("--nonreader-sources", type=int, default=8)
    ap.add_argument("--nonreader-conns", type=int, default=32)
    ap.add_argument("--nonreader-pipeline", type=int, default=20)
    ap.add_argument("--nonreader-cycle", type=float, default=3.0)
    ap.add_argument("--nonreader-rcvbuf", type=int, default=4096, help="0: kernel default")
    ap.add_argument("--auth-sources", type=int, default=4)
    ap.add_argument("--auth-conns", type=int, default=16, help="per auth source")
    ap.add_argument("--max-connect-rate", type=int, default=200,
                    help="new connections per second, per attack")
    ap.add_argument("--max-connects", type=int, default=400_000, help="per attack, in all")
    ap.add_argument("--rss-margin-mib", type=float, default=64.0)
    ap.add_argument("--vitals-bin", default=c.DEFAULT_VITALS)
    ap.add_argument("--redis-server", default="/usr/bin/redis-server")
    ap.add_argument("--vitals-arg", action="append", default=[])
    ap.add_argument("--json")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    for path in (args.vitals_bin, args.redis_server):
        if not os.access(path, os.X_OK):
            sys.exit("missing binary: %s" % path)
    total_s = args.minutes * 60
    c.DEADLINE[0] = now() + total_s + 300 + args.nodes * 0.5
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, c.on_signal)

    attackers = []
    tmp = tempfile.mkdtemp(prefix="http-attack-")
    fleet = None
    try:
        print("# http_attack: %d nodes, %.1f min, %s, started %s UTC, load %s" % (
            args.nodes, args.minutes,
            "no attack (baseline)" if args.no_attack else
            "attacks a,b,c" + (",d" if args.auth else ""),
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            open("/proc/loadavg").read().strip()), flush=True)
        fleet = c.Fleet(args.nodes, tmp, args.redis_server, 10, args.verbose)
        fleet.start()
        port = c.free_ports(1)[0]
        argv = [args.vitals_bin]
        for p in fleet.ports:
            argv += ["--redis.addr", "redis://127.0.0.1:%d" % p]
        argv += ["--web.listen-address", "127.0.0.1:%d" % port, "--log.level", "warn"]
        auth_header = None
        if args.auth:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import crypt  # bcrypt via libxcrypt; deprecated in 3.11, gone in 3.13
            h = crypt.crypt(AUTH_PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 10))
            wc = os.path.join(tmp, "web.yml")
            with open(wc, "w") as f:
                f.write("basic_auth_users:\n  %s: '%s'\n" % (AUTH_USER, h))
            argv += ["--web.config.file", wc]
            auth_header = "Basic " + base64.b64encode(
                ("%s:%s" % (AUTH_USER, AUTH_PASSWORD)).encode()).decode()
        argv += args.vitals_arg
        vitals = c.spawn(argv, "redis-vitals", os.path.join(tmp, "vitals.log"))
        end = now() + 60
        while now() < end:
            if vitals.poll() is not None:
                raise c.BenchError("redis-vitals exited (code %s); log: %s" % (
                    vitals.returncode, os.path.join(tmp, "vitals.log")))
            try:
                hc = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                hc.request("GET", "/-/ready",
                           headers={"Authorization": auth_header} if auth_header else {})
                ok = hc.getresponse().status == 200
                hc.close()
                if ok:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            raise c.BenchError("redis-vitals not ready in 60 s")
        time.sleep(args.warmup)
        pid = vitals.pid
        print("# redis-vitals pid %d on 127.0.0.1:%d, nofile limit %d" % (pid, port, hard),
              flush=True)

        samples = [sample(pid, "start")]
        t_start = time.time()
        t_end = t_start + total_s
        if not args.no_attack:
            q = mp.Queue()
            kinds = ["silent", "loris", "nonreader"] + (["auth"] if args.auth else [])
            for kind in kinds:
                pr = mp.Process(target=attack_main, args=(kind, args, port, t_end, q),
                                name="attack-" + kind, daemon=True)
                pr.start()
                attackers.append(pr)

        scrapes = []
        stop_evt = threading.Event()

        def scraper():
            k = 0
            t0 = now()
            while not stop_evt.is_set() and k < 100_000:
                due = t0 + k * args.scrape_interval
                if due > t0 + total_s:
                    break
                w = due - now()
                if w > 0 and stop_evt.wait(w):
                    break
                rec = scrape_once(port, args.scrape_timeout, auth_header)
                scrapes.append(rec)
                if args.verbose or rec["status"] != 200 or (rec["up"] != args.nodes):
                    print("  scrape %d: %s %.3fs up=%s %s" % (
                        k, rec["status"], rec["seconds"], rec["up"], rec["error"] or ""), flush=True)
                k += 1

        th = threading.Thread(target=scraper, daemon=True)
        th.start()
        next_s = now() + args.sample_interval
        for _ in range(1_000_000):
            if time.time() >= t_end:
                break
            time.sleep(max(0.0, min(next_s - now(), t_end - time.time())))
            if time.time() >= t_end:
                break
            s = sample(pid, "attack" if not args.no_attack else "run")
            samples.append(s)
            next_s += args.sample_interval
            ok = sum(1 for r in scrapes if r["status"] == 200)
            print("  %3.0fs rss %6.1f MiB  fds %4s  threads %s  cpu %.1fs  load %.2f  scrapes %d/%d" % (
                s["t"] - t_start, s.get("rss_kib", 0) / 1024, s.get("fds"), s.get("threads"),
                s.get("cpu_s", 0), s["load1"], ok, len(scrapes)), flush=True)
            if vitals.poll() is not None:
                print("!! redis-vitals exited with code %s" % vitals.returncode, flush=True)
                break
        samples.append(sample(pid, "end"))
        stop_evt.set()
        th.join(args.scrape_timeout + 5)
        attack_stats = []
        for pr in attackers:
            try:
                attack_stats.append(q.get(timeout=15))
            except Exception:
                pass
        for pr in attackers:
            pr.join(5)
            if pr.is_alive():
                pr.terminate()
        time.sleep(args.settle)
        samples.append(sample(pid, "after"))
        exited = vitals.poll()
    finally:
        for pr in attackers:
            if pr.is_alive():
                pr.kill()
        c.stop_all()
    shutil.rmtree(tmp, ignore_errors=True)  # kept (with vitals.log) on errors

    # ---- report
    made = len(scrapes)
    answered = [r for r in scrapes if r["status"] == 200]
    failed = made - len(answered)
    all_up = sum(1 for r in answered if r["up"] == args.nodes)
    lat = [r["seconds"] for r in answered]
    attack_samples = [s for s in samples if "rss_kib" in s]
    start, end_s, after = samples[0], samples[-2], samples[-1]
    rss_max = max((s["rss_kib"] for s in attack_samples), default=0)
    fd_max = max((s["fds"] for s in attack_samples), default=0)
    for s in (start, end_s, after):
        for k in ("rss_kib", "hwm_kib", "fds", "cpu_s"):
            s.setdefault(k, 0)
    cpu = end_s.get("cpu_s", 0) - start.get("cpu_s", 0)
    mib = lambda k: k / 1024.0  # noqa: E731
    print()
    print("| | value |")
    print("|---|---|")
    print("| mode | %s |" % ("baseline (no attack)" if args.no_attack
                             else "attacks a,b,c" + (",d" if args.auth else "")))
    print("| duration | %.1f min, %d nodes |" % (args.minutes, args.nodes))
    print("| scrapes made / answered 200 / failed | %d / %d / %d |" % (made, len(answered), failed))
    print("| answers with all %d nodes up | %d |" % (args.nodes, all_up))
    if lat:
        print("| scrape latency p50 / p99 / worst (ms) | %.1f / %.1f / %.1f |" % (
            1000 * statistics.median(lat), 1000 * pct(lat, 99), 1000 * max(lat)))
        print("| response bytes (gzip) / plain | %d / %d |" % (
            statistics.median(r["bytes"] for r in answered),
            statistics.median(r.get("plain_bytes", 0) for r in answered)))
    print("| RSS MiB start / max / end / after | %.1f / %.1f / %.1f / %.1f |" % (
        mib(start["rss_kib"]), mib(rss_max), mib(end_s["rss_kib"]), mib(after.get("rss_kib", 0))))
    print("| VmHWM MiB at end | %.1f |" % mib(end_s["hwm_kib"]))
    print("| open fds start / max / end / after | %d / %d / %d / %d |" % (
        start["fds"], fd_max, end_s["fds"], after.get("fds", -1)))
    print("| daemon CPU over the run | %.1f s (%.1f%% of one core) |" % (cpu, 100 * cpu / total_s))
    print("| load1 start / max / end | %.2f / %.2f / %.2f |" % (
        start["load1"], max(s["load1"] for s in samples), end_s["load1"]))
    for st in sorted(attack_stats, key=lambda s: s["kind"]):
        extra = ", ".join("%s %s" % (k, v) for k, v in sorted(st.items()) if k != "kind")
        print("| attack %s | %s |" % (st["kind"], extra))
    reasons = []
    if exited is not None:
        reasons.append("redis-vitals exited (code %s)" % exited)
    if failed:
        reasons.append("%d failed scrapes" % failed)
    if all_up != len(answered):
        reasons.append("%d answers without all nodes up" % (len(answered) - all_up))
    if lat and max(lat) >= args.scrape_timeout:
        reasons.append("worst latency over the timeout")
    if rss_max > start["rss_kib"] + args.rss_margin_mib * 1024:
        reasons.append("RSS grew by more than %.0f MiB" % args.rss_margin_mib)
    if after.get("fds", 1 << 30) > start["fds"] + 20:
        reasons.append("fds not back after the settle (%s vs %s)" % (after.get("fds"), start["fds"]))
    if not args.no_attack and len(attack_stats) != len(attackers):
        reasons.append("an attack process reported nothing")
    if any("error" in st for st in attack_stats):
        reasons.append("an attack process failed")
    verdict = ("PASS: %d/%d scrapes answered 200, worst %.0f ms, RSS %.1f -> max %.1f MiB, fds %d -> max %d -> %d after"
               % (len(answered), made, 1000 * max(lat) if lat else -1, mib(start["rss_kib"]),
                  mib(rss_max), start["fds"], fd_max, after.get("fds", -1))
               if not reasons else "FAIL: " + "; ".join(reasons))
    print()
    print("verdict:", verdict)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "scrapes": scrapes, "samples": samples,
                       "attacks": attack_stats, "verdict": verdict}, f, indent=1)
    return 0 if not reasons else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except c.BenchError as e:
        sys.exit("error: %s" % e)
