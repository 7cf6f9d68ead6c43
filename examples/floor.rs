//! The floor of redis-vitals' design at one node: the same wake-ups and
//! system calls as one poll and one scrape a second, and no other work.
//!
//! A timerfd ticks every second on a single-threaded runtime; each tick
//! sends the poller's plain `INFO` command and reads the whole reply. A
//! second thread, with its own single-threaded runtime, answers every HTTP
//! request on a keep-alive connection with a page of `PAGE_BYTES` bytes.
//! Nothing is parsed, rendered or stored. `bench/floor.py` runs it beside
//! redis-vitals and the peer, on the same node, and reports the three CPU
//! costs side by side (BENCHMARKS.md, "After round 4").
//!
//!     cargo build --release --example floor
//!     target/release/examples/floor REDIS_PORT HTTP_PORT PAGE_BYTES [timeout]
//!
//! With `timeout`, each round trip runs inside `tokio::time::timeout`, as
//! the poller's does: the difference is what that timer costs.
//!
//! Bench tooling, not part of the daemon: it panics on any error.

use std::time::Duration;

use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Poll and scrape period, as in the benchmark.
const TICK: Duration = Duration::from_secs(1);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (redis, http, page, timeout) = match &args[..] {
        [_, r, h, p] => (r, h, p, false),
        [_, r, h, p, t] if t == "timeout" => (r, h, p, true),
        _ => panic!("usage: floor REDIS_PORT HTTP_PORT PAGE_BYTES [timeout]"),
    };
    let redis: u16 = redis.parse().expect("REDIS_PORT");
    let http: u16 = http.parse().expect("HTTP_PORT");
    let page: usize = page.parse().expect("PAGE_BYTES");
    std::thread::Builder::new()
        .name("floor-http".into())
        .spawn(move || serve(http, page))
        .expect("thread");
    poll(redis, timeout);
}

/// A single-threaded runtime, as each of the daemon's two threads has.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The HTTP thread: one task per connection, one page per request head.
fn serve(port: u16, page: usize) {
    runtime().block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        loop {
            let (mut stream, _) = listener.accept().await.expect("accept");
            stream.set_nodelay(true).expect("nodelay");
            tokio::spawn(async move {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {page}\r\n\r\n"
                );
                let mut response = head.into_bytes();
                response.resize(response.len() + page, b'#');
                let mut buf = vec![0u8; 8192];
                loop {
                    let mut got = 0;
                    while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf[got..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got += n,
                        }
                        if got == buf.len() {
                            return;
                        }
                    }
                    if stream.write_all(&response).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// The poll thread: a timerfd tick, then one INFO round trip (in a
/// `tokio::time::timeout` if `timeout`).
fn poll(port: u16, timeout: bool) {
    runtime().block_on(async move {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        // A plain poll's command, as the poller sends it.
        let sections = redis_vitals::poller::INFO_SECTIONS;
        let mut command = format!("*{}\r\n$4\r\nINFO\r\n", sections.len() + 1);
        for s in sections {
            command.push_str(&format!("${}\r\n{s}\r\n", s.len()));
        }
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )
        .expect("timerfd");
        let period = Timespec {
            tv_sec: TICK.as_secs() as i64,
            tv_nsec: TICK.subsec_nanos() as i64,
        };
        let spec = Itimerspec {
            it_interval: period,
            it_value: period,
        };
        timerfd_settime(&fd, TimerfdTimerFlags::empty(), &spec).expect("settime");
        // The same (deprecated, safe) constructor src/schedule.rs uses.
        #[allow(deprecated)]
        let ticks = AsyncFd::new(fd).expect("asyncfd");
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut ready = ticks.readable().await.expect("readable");
            let mut expirations = [0u8; 8];
            if rustix::io::read(ticks.get_ref(), &mut expirations).is_err() {
                ready.clear_ready();
                continue;
            }
            let round_trip = round_trip(&mut stream, command.as_bytes(), &mut buf);
            if timeout {
                // The poller's default timeout; a healthy reply is far faster.
                tokio::time::timeout(Duration::from_secs(2), round_trip)
                    .await
                    .expect("INFO reply within 2 s");
            } else {
                round_trip.await;
            }
        }
    });
}

/// Sends `command` and reads its reply, a bulk string
/// (`$<len>\r\n<len bytes>\r\n`), whole.
async fn round_trip(stream: &mut tokio::net::TcpStream, command: &[u8], buf: &mut [u8]) {
    stream.write_all(command).await.expect("send");
    let (mut got, mut want) = (0, usize::MAX);
    while got < want {
        let n = stream.read(&mut buf[got..]).await.expect("read");
        assert!(n > 0, "redis closed the connection");
        got += n;
        if want == usize::MAX {
            if let Some(i) = buf[..got].windows(2).position(|w| w == b"\r\n") {
                let len: usize = std::str::from_utf8(&buf[1..i])
                    .expect("length")
                    .parse()
                    .expect("length");
                want = i + 2 + len + 2;
                assert!(want <= buf.len(), "INFO reply larger than the buffer");
            }
        }
    }
}
