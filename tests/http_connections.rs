//! HTTP connection lifetimes, with real sockets against the daemon: a
//! keep-alive connection may wait between requests longer than the header
//! read timeout (Prometheus reuses it across scrapes), while a request head
//! still arriving after that timeout, or a connection that never sends
//! anything, is closed.

mod common;
mod daemon_harness;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::RedisServer;
use daemon_harness::TestDaemon;
use redis_vitals::http::HEADER_READ_TIMEOUT;

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
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line:?}");
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
        h.resize(redis_vitals::http::MAX_REQUEST_HEAD + 4096, b'a');
        h
    };
    let large_body = {
        let mut r = b"GET / HTTP/1.1\r\nContent-Length: 20000\r\n\r\n".to_vec();
        r.resize(r.len() + 20000, b'b');
        r
    };
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "chunked body",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            501,
        ),
        ("large body", large_body, 413),
        ("head over the limit", oversized, 431),
        ("not HTTP", b"\x01\x02\x03 nonsense\r\n\r\n".to_vec(), 400),
    ];
    for (what, bytes, status) in cases {
        let mut s = TcpStream::connect(d.addr).unwrap();
        s.write_all(&bytes).unwrap();
        let mut r = Reader::new(&mut s);
        let reply = r.response(false);
        assert_eq!(reply.status, status, "{what}");
        assert!(!reply.body.is_empty(), "{what}: no reason given");
        assert_eq!(reply.header("connection"), Some("close"), "{what}");
        r.closed();
    }

    // The daemon still serves.
    assert_eq!(common::http_get(d.addr, "/-/healthy").0, 200);
}

#[test]
fn idle_connections_give_up_their_slots_to_a_new_scraper() {
    let redis = RedisServer::start(&[]);
    let d = TestDaemon::start(&["--redis.addr", &redis.addr()]);

    // Every slot held by a keep-alive connection that made one request and
    // went idle: a client holding connections open to lock scrapers out.
    let mut idle: Vec<TcpStream> = (0..redis_vitals::http::MAX_CONNECTIONS)
        .map(|_| {
            let mut s = TcpStream::connect(d.addr).unwrap();
            s.write_all(REQUEST).unwrap();
            assert_eq!(read_response(&mut s), "HTTP/1.1 200 OK");
            s
        })
        .collect();

    // A new connection is still served...
    let mut fresh = TcpStream::connect(d.addr).unwrap();
    fresh.write_all(REQUEST).unwrap();
    assert_eq!(read_response(&mut fresh), "HTTP/1.1 200 OK");

    // ...because idle connections were closed to make room.
    let until = Instant::now() + Duration::from_secs(2);
    let mut closed = 0;
    for s in idle.iter_mut() {
        if closed_by(s, until).is_some() {
            closed += 1;
        }
    }
    assert!(closed > 0, "no idle connection was closed");
}
