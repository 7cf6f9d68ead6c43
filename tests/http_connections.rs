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
    // from its last response, and serves the next request.
    let past = t0 + HEADER_READ_TIMEOUT + Duration::from_secs(2);
    assert_eq!(
        closed_by(&mut idle, past),
        None,
        "idle keep-alive connection closed"
    );
    idle.write_all(REQUEST).unwrap();
    assert_eq!(read_response(&mut idle), "HTTP/1.1 200 OK");
}
