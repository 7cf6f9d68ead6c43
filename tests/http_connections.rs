//! HTTP connections, with real sockets against the real daemon: lifetimes
//! (a keep-alive connection may idle between scrapes longer than the head
//! timeout; slow and silent ones are closed), HTTP/1.1 behaviour, and the
//! attacks of issue 15, each asserting what a legitimate scraper gets while
//! it runs. Attackers and scrapers use distinct loopback source addresses
//! (127.x), as distinct hosts would.

mod common;
mod daemon_harness;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::RedisServer;
use daemon_harness::TestDaemon;
use redis_vitals::web::slots::HEAD_TIMEOUT as HEADER_READ_TIMEOUT;

const REQUEST: &[u8] = b"GET /-/healthy HTTP/1.1\r\nHost: test\r\n\r\n";

/// Reads one response to `REQUEST` and returns its status line.
fn read_response(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // "OK\n" is the whole body of /-/healthy.
    while !got.ends_with(b"\r\n\r\nOK\n") {
        let n = s.read(&mut buf).expect("response");
        assert!(n > 0, "connection closed before the response ended");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Waits until the server closes `s` or `until` passes; returns when it
/// was closed, or None if it stayed open.
fn closed_by(s: &mut TcpStream, until: Instant) -> Option<Instant> {
    let left = until.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return None;
    }
    s.set_read_timeout(Some(left)).unwrap();
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(0) => Some(Instant::now()),
        Ok(_) => panic!("unexpected bytes from the server"),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Some(Instant::now()),
        Err(e) => panic!("read: {e}"),
    }
}

#[test]
fn idle_keep_alive_outlives_the_header_timeout_and_slow_heads_do_not() {
    let redis = RedisServer::start(&[]);
    let d = TestDaemon::start(&["--redis.addr", &redis.addr()]);

    let t0 = Instant::now();
    let mut idle = TcpStream::connect(d.addr).unwrap();
    idle.write_all(REQUEST).unwrap();
    assert_eq!(read_response(&mut idle), "HTTP/1.1 200 OK");
    let mut partial = TcpStream::connect(d.addr).unwrap();
    partial.write_all(b"GET /-/healthy HTTP/1.1\r\n").unwrap();
    let mut silent = TcpStream::connect(d.addr).unwrap();

    // Both slow connections are closed once the timeout has passed, not
    // before (a second of slack for a busy machine).
    let deadline = t0 + HEADER_READ_TIMEOUT + Duration::from_secs(10);
    for (what, s) in [("partial head", &mut partial), ("silent", &mut silent)] {
        let at = closed_by(s, deadline)
            .unwrap_or_else(|| panic!("{what} connection still open after {deadline:?}"));
        assert!(
            at.duration_since(t0) + Duration::from_secs(1) >= HEADER_READ_TIMEOUT,
            "{what} connection closed early, after {:?}",
            at.duration_since(t0)
        );
    }

    // The idle keep-alive connection stays open past the timeout, measured
    // from its last response, and serves the next request. It is watched
    // for at least a second even if closing the others took long.
    let past = (t0 + HEADER_READ_TIMEOUT + Duration::from_secs(2))
        .max(Instant::now() + Duration::from_secs(1));
    assert_eq!(
        closed_by(&mut idle, past),
        None,
        "idle keep-alive connection closed"
    );
    idle.write_all(REQUEST).unwrap();
    assert_eq!(read_response(&mut idle), "HTTP/1.1 200 OK");
}

/// One response read off `s`: status code, lower-cased headers, body.
/// Bytes after it (a pipelined next response) stay in `pending`.
struct Reader<'a> {
    s: &'a mut TcpStream,
    pending: Vec<u8>,
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<'a> Reader<'a> {
    fn new(s: &'a mut TcpStream) -> Self {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Reader {
            s,
            pending: Vec::new(),
        }
    }

    fn fill(&mut self) {
        let mut buf = [0u8; 65536];
        let n = self.s.read(&mut buf).expect("response bytes");
        assert!(n > 0, "connection closed inside a response");
        self.pending.extend_from_slice(&buf[..n]);
    }

    /// Reads one response; `head` for the answer to a HEAD (no body).
    fn response(&mut self, head: bool) -> Reply {
        let end = loop {
            if let Some(i) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            self.fill();
        };
        let text = String::from_utf8(self.pending[..end].to_vec()).unwrap();
        self.pending.drain(..end + 4);
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap();
        assert!(
            status_line.starts_with("HTTP/1.1 ") || status_line.starts_with("HTTP/1.0 "),
            "{status_line:?}"
        );
        let status = status_line[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (k, v) = l.split_once(':').expect("header line");
                (k.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .expect("every response has a Content-Length");
        let len = if head { 0 } else { len };
        while self.pending.len() < len {
            self.fill();
        }
        let body = self.pending.drain(..len).collect();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Asserts the server closes the connection with nothing more to say.
    fn closed(&mut self) {
        assert!(self.pending.is_empty(), "bytes after the last response");
        let mut buf = [0u8; 256];
        match self.s.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("{n} unexpected bytes: {:?}", &buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("connection not closed: {e}"),
        }
    }
}

#[test]
fn keep_alive_pipelining_and_connection_close_follow_http_1_1() {
    let redis = RedisServer::start(&[]);
    let d = TestDaemon::start(&["--redis.addr", &redis.addr()]);

    // Two requests in one write are answered in order on one connection.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.write_all(
        b"GET /-/healthy HTTP/1.1\r\nHost: t\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let mut r = Reader::new(&mut s);
    let first = r.response(false);
    assert_eq!((first.status, first.body.as_slice()), (200, &b"OK\n"[..]));
    assert!(first.header("date").is_some(), "no Date header");
    assert_eq!(r.response(false).status, 404);

    // HEAD: the page's length, no body. The next response on the same
    // connection starting cleanly shows that no body bytes were sent.
    r.s.write_all(
        b"HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\nGET /-/healthy HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let head = r.response(true);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let len: usize = head.header("content-length").unwrap().parse().unwrap();
    assert!(len > 1000, "HEAD /metrics announces {len} bytes");
    assert_eq!(r.response(false).body, b"OK\n");

    // HTTP/1.1 with Connection: close is answered, then closed.
    r.s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let last = r.response(false);
    assert_eq!(last.header("connection"), Some("close"));
    r.closed();

    // HTTP/1.0 closes unless it asks for keep-alive.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.write_all(b"GET /-/healthy HTTP/1.0\r\n\r\n").unwrap();
    let mut r = Reader::new(&mut s);
    assert_eq!(r.response(false).status, 200);
    r.closed();
    let mut s = TcpStream::connect(d.addr).unwrap();
    let mut r = Reader::new(&mut s);
    for _ in 0..2 {
        r.s.write_all(b"GET /-/healthy HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let reply = r.response(false);
        assert_eq!(reply.header("connection"), Some("keep-alive"));
    }
}

#[test]
fn requests_it_does_not_serve_get_a_status_and_lose_nothing_else() {
    let redis = RedisServer::start(&[]);
    let d = TestDaemon::start(&["--redis.addr", &redis.addr()]);

    // A small body is read and dropped; the connection goes on.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.write_all(b"POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhelloGET /-/healthy HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut r = Reader::new(&mut s);
    let post = r.response(false);
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    assert_eq!(r.response(false).body, b"OK\n");

    // Each of these is answered with its status, then the connection is
    // closed (what follows it cannot be trusted to be a request).
    // The refused body and the head over the limit are really sent, so
    // the server closes with bytes of them unread.
    let oversized = {
        // Past the head limit, without the blank line that ends a head.
        let mut h = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
        h.resize(redis_vitals::web::MAX_REQUEST_HEAD + 4096, b'a');
        h
    };
    let large_body = {
        let mut r = b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 20000\r\n\r\n".to_vec();
        r.resize(r.len() + 20000, b'b');
        r
    };
    // The last field: the answer is ours (with a reason and an explicit
    // close), not hyper's own for a head it could not parse.
    let cases: Vec<(&str, Vec<u8>, u16, bool)> = vec![
        (
            "chunked body",
            b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            501,
            true,
        ),
        ("large body", large_body, 413, true),
        (
            "HTTP/1.1 without Host (RFC 9112 3.2)",
            b"GET /-/healthy HTTP/1.1\r\n\r\n".to_vec(),
            400,
            true,
        ),
        (
            "two Host headers",
            b"GET /-/healthy HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
            400,
            true,
        ),
        ("head over the limit", oversized, 431, false),
        (
            "not HTTP",
            b"\x01\x02\x03 nonsense\r\n\r\n".to_vec(),
            400,
            false,
        ),
    ];
    for (what, bytes, status, ours) in cases {
        let mut s = TcpStream::connect(d.addr).unwrap();
        s.write_all(&bytes).unwrap();
        let mut r = Reader::new(&mut s);
        let reply = r.response(false);
        assert_eq!(reply.status, status, "{what}");
        if ours {
            assert!(!reply.body.is_empty(), "{what}: no reason given");
            assert_eq!(reply.header("connection"), Some("close"), "{what}");
        }
        r.closed();
    }

    // Expect: 100-continue on a request we refuse is answered at once
    // (a client waits a second for "100 Continue" otherwise).
    let t = Instant::now();
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.write_all(
        b"POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let mut r = Reader::new(&mut s);
    let mut reply = r.response(false);
    if reply.status == 100 {
        reply = r.response(false);
    }
    assert_eq!(reply.status, 405);
    assert!(
        t.elapsed() < Duration::from_millis(800),
        "{:?}",
        t.elapsed()
    );

    // The daemon still serves.
    assert_eq!(common::http_get(d.addr, "/-/healthy").0, 200);
}

// ---------------------------------------------------------------------------
// Attacks (issue 15). Each runs for a bounded time from its own threads and
// asserts that a scraper on another address is answered, every time, within
// SCRAPE_BOUND.

/// Longest a legitimate scrape may take while an attack runs: half of
/// Prometheus' default 10 s scrape timeout. Quiet, the worst seen is under
/// 0.1 s; on this 2-core machine with three builds running beside the
/// test, a debug build once took 3.2 s.
const SCRAPE_BOUND: Duration = Duration::from_secs(5);

/// A TCP connection from the loopback address `127.a.b.c` (`src`).
fn connect_from(src: [u8; 4], to: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    });
    let s = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.bind((std::net::Ipv4Addr::from(src), 0).into())?;
        tokio::time::timeout(Duration::from_secs(5), sock.connect(to))
            .await
            .map_err(|_| std::io::Error::new(ErrorKind::TimedOut, "connect"))?
    })?;
    let s = s.into_std()?;
    s.set_nonblocking(false)?;
    Ok(s)
}

/// Whether the server has not closed `c` (nothing read is consumed).
fn still_open(c: &TcpStream) -> bool {
    c.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    let open = match c.peek(&mut buf) {
        Ok(n) => n > 0,
        Err(e) => e.kind() == ErrorKind::WouldBlock,
    };
    let _ = c.set_nonblocking(false);
    open
}

/// One scrape of `path` from `src` on a new connection: the time it took,
/// or why it failed.
fn scrape_from(src: [u8; 4], to: std::net::SocketAddr, path: &str) -> Result<Duration, String> {
    let t = Instant::now();
    let mut s = connect_from(src, to).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(SCRAPE_BOUND)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut got = Vec::new();
    s.read_to_end(&mut got).map_err(|e| format!("read: {e}"))?;
    if !got.starts_with(b"HTTP/1.1 200 ") {
        return Err(format!(
            "answer: {:?}",
            String::from_utf8_lossy(&got[..got.len().min(40)])
        ));
    }
    Ok(t.elapsed())
}

/// Scrapes `/metrics` from each of `sources` every `every` until `stop`;
/// returns (answered, failures, worst time).
fn scrape_while(
    to: std::net::SocketAddr,
    sources: &[[u8; 4]],
    every: Duration,
    stop: &std::sync::atomic::AtomicBool,
) -> (usize, Vec<String>, Duration) {
    let (mut ok, mut failures, mut worst) = (0, Vec::new(), Duration::ZERO);
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        for &src in sources {
            match scrape_from(src, to, "/metrics") {
                Ok(t) if t <= SCRAPE_BOUND => {
                    ok += 1;
                    worst = worst.max(t);
                }
                Ok(t) => failures.push(format!("from {src:?}: took {t:?}")),
                Err(e) => failures.push(format!("from {src:?}: {e}")),
            }
        }
        std::thread::sleep(every);
    }
    (ok, failures, worst)
}

/// Runs `attack` on `threads` threads (each given its index and the stop
/// flag) while scraping from `sources` for `during`; asserts every scrape
/// was answered in time.
fn under_attack(
    to: std::net::SocketAddr,
    threads: usize,
    during: Duration,
    sources: &[[u8; 4]],
    attack: impl Fn(usize, &std::sync::atomic::AtomicBool) + Sync,
) -> Duration {
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (ok, failures, worst) = std::thread::scope(|scope| {
        for i in 0..threads {
            let (attack, stop) = (&attack, &stop);
            scope.spawn(move || attack(i, stop));
        }
        // Let the attack take hold before judging.
        std::thread::sleep(Duration::from_secs(2));
        let until = Instant::now() + during;
        let result = std::thread::scope(|inner| {
            let scraper =
                inner.spawn(|| scrape_while(to, sources, Duration::from_millis(500), &stop));
            while Instant::now() < until {
                std::thread::sleep(Duration::from_millis(100));
            }
            stop.store(true, std::sync::atomic::Ordering::Release);
            scraper.join().unwrap()
        });
        result
    });
    assert!(
        failures.is_empty(),
        "{} of {} scrapes failed under attack: {:?}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok >= 10, "only {ok} scrapes made");
    worst
}

#[test]
fn silent_and_slow_loris_clients_cannot_keep_a_scraper_out() {
    let redis = RedisServer::start(&[]);
    let d = TestDaemon::start(&["--redis.addr", &redis.addr()]);
    common::wait_until(Duration::from_secs(10), "first poll", || {
        (d.get("/-/ready").0 == 200).then_some(())
    });
    // Thread 0: 300 silent connections from 127.0.0.3, reopened as they
    // are closed. Threads 1-8: slow-loris from 127.0.1.i, 40 connections
    // each sending one byte of a head every second, reconnecting.
    let worst = under_attack(
        d.addr,
        9,
        Duration::from_secs(10),
        // A scraper on an address of its own, and one sharing the silent
        // attacker's address.
        &[[127, 0, 0, 2], [127, 0, 0, 3]],
        |i, stop| {
            let src = if i == 0 {
                [127, 0, 0, 3]
            } else {
                [127, 0, 1, i as u8]
            };
            let want = if i == 0 { 300 } else { 40 };
            let mut conns: Vec<TcpStream> = Vec::new();
            let head = b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
            let mut sent = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                while conns.len() < want {
                    match connect_from(src, d.addr) {
                        Ok(c) => conns.push(c),
                        Err(_) => break,
                    }
                }
                if i > 0 {
                    // A byte each; a connection the server closed is dropped.
                    let b = &head[sent % (head.len() - 4)..][..1];
                    conns.retain_mut(|c| c.write_all(b).is_ok());
                    sent += 1;
                } else {
                    // Drop the connections the server closed.
                    conns.retain(still_open);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        },
    );
    eprintln!("worst scrape under silent + slow-loris attack: {worst:?}");
}

/// The daemon as its own process (so its memory is its own), killed when
/// dropped.
struct Spawned {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl Spawned {
    fn start(args: &[String]) -> Spawned {
        let port = common::free_port();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_redis-vitals"))
            .args([
                "--web.listen-address",
                &addr.to_string(),
                "--poll.interval",
                "1s",
                "--poll.timeout",
                "800ms",
            ])
            .args(args)
            .env_remove("REDIS_ADDR")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn redis-vitals");
        common::wait_until(Duration::from_secs(10), "redis-vitals to listen", || {
            TcpStream::connect(addr).ok().map(|_| ())
        });
        Spawned { child, addr }
    }

    /// Its resident set, in bytes.
    fn rss(&self) -> usize {
        rss_of(&format!("/proc/{}/status", self.child.id()))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VmRSS from a /proc status file, in bytes.
fn rss_of(path: &str) -> usize {
    let status = std::fs::read_to_string(path).unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

#[test]
fn non_reading_clients_neither_keep_a_scraper_out_nor_pin_a_page_each() {
    // A large page: eight nodes with 4 000 databases each, a key in each
    // (INFO keeps at most 4 096 keyspace lines a node), give about 6.6 MB.
    let nodes: Vec<RedisServer> = (0..8)
        .map(|_| {
            let r = RedisServer::start(&["--databases", "4000"]);
            r.command(&[
                "EVAL",
                "for i = 0, 3999 do redis.call('SELECT', i); redis.call('SET', 'k', 'v') end",
                "0",
            ]);
            r
        })
        .collect();
    let mut args = Vec::new();
    for n in &nodes {
        args.push("--redis.addr".to_string());
        args.push(n.addr());
    }
    let d = Spawned::start(&args);
    let page = common::wait_until(Duration::from_secs(20), "the large page", || {
        let (status, body) = common::http_get(d.addr, "/metrics");
        // Three series per database, on all eight nodes.
        (status == 200 && body.matches("db=\"db3999\"").count() >= 24).then_some(body.len())
    });
    assert!(page > 5_000_000, "page of {page} bytes");
    let before = d.rss();
    let peak = std::sync::atomic::AtomicUsize::new(before);

    // 256 clients from 8 addresses each send 20 pipelined scrapes and read
    // nothing; they reconnect every 3 s.
    let worst = under_attack(
        d.addr,
        9,
        Duration::from_secs(10),
        &[[127, 0, 0, 2]],
        |i, stop| {
            if i == 8 {
                while !stop.load(std::sync::atomic::Ordering::Acquire) {
                    peak.fetch_max(d.rss(), std::sync::atomic::Ordering::AcqRel);
                    std::thread::sleep(Duration::from_millis(50));
                }
                return;
            }
            let src = [127, 0, 2, i as u8 + 1];
            let pipelined = b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n".repeat(20);
            let mut conns: Vec<TcpStream> = Vec::new();
            let mut opened = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                // A closed connection with a response half in its buffer
                // still peeks as open: start over every few seconds instead,
                // as a reconnecting client would.
                if opened.elapsed() > Duration::from_secs(3) {
                    conns.clear();
                    opened = Instant::now();
                }
                while conns.len() < 32 {
                    match connect_from(src, d.addr) {
                        Ok(mut c) => {
                            let _ = c.write_all(&pipelined);
                            conns.push(c);
                        }
                        Err(_) => break,
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        },
    );
    let grown = peak
        .load(std::sync::atomic::Ordering::Acquire)
        .saturating_sub(before);
    eprintln!(
        "page {page} B; RSS {before} B before, grew by {grown} B ({:.1} pages) under 256 non-reading clients; worst scrape {worst:?}",
        grown as f64 / page as f64
    );
    // The bound: the pages the budget lets live (pages::BUDGET_PAGES,
    // counted with the node texts they pin), one being rendered, the
    // connections' own buffers (5 MB for 256) and the allocator's slack
    // (measured: under 7 pages in all). One page per connection, as
    // before, was 256 pages.
    let bound = 10 * page + (16 << 20);
    assert!(grown < bound, "RSS grew by {grown} B, over {bound} B");
}

#[test]
fn metrics_are_gzipped_for_clients_that_accept_it() {
    use std::io::Read as _;
    let redis = RedisServer::start(&[]);
    let d = TestDaemon::start(&["--redis.addr", &redis.addr()]);
    common::wait_until(Duration::from_secs(10), "first poll", || {
        (d.get("/-/ready").0 == 200).then_some(())
    });
    let r = common::try_http_request(
        d.addr,
        "GET",
        "/metrics",
        &[("Accept-Encoding", "gzip")],
        b"",
    )
    .unwrap();
    let header = |name: &str| {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(
        header("content-type").as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(&r.body[..])
        .read_to_string(&mut text)
        .expect("a gzip body");
    assert!(
        text.contains("redis_up{"),
        "{}",
        &text[..text.len().min(200)]
    );
    assert!(r.body.len() * 3 < text.len(), "gzip barely compressed");
    // Without Accept-Encoding: plain.
    let (_, headers, plain) = common::http_request(d.addr, "GET", "/metrics", &[]);
    assert!(!headers.iter().any(|(k, _)| k == "content-encoding"));
    assert!(plain.contains("redis_up{"));

    // --web.compression=false: plain whatever the client accepts.
    let d = TestDaemon::start(&["--redis.addr", &redis.addr(), "--web.compression=false"]);
    let (_, headers, plain) =
        common::http_request(d.addr, "GET", "/metrics", &[("Accept-Encoding", "gzip")]);
    assert!(!headers.iter().any(|(k, _)| k == "content-encoding"));
    assert!(plain.contains("# TYPE"));
}
