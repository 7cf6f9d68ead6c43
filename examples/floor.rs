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
//!     target/release/examples/floor REDIS_PORT HTTP_PORT PAGE_BYTES [MODE]
//!
//! Modes (BENCHMARKS.md, round 6), each changing one thing:
//!
//! * `timeout`: each round trip runs inside `tokio::time::timeout`, as the
//!   poller's does: the difference is what that timer costs;
//! * `aligned`: one thread, no tick: the round trip runs right after each
//!   answer (what `poll.follow-scrapes` does);
//! * `aligned2`: as `aligned`, with HTTP on its own thread, which wakes the
//!   poll thread after each answer;
//! * `before1:D`, `before2:D`: the tick comes D ms before the next scrape is
//!   due (the last one + 1 s), with HTTP on the poll thread (1) or its own (2).
//!
//! Bench tooling, not part of the daemon: it panics on any error.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Poll and scrape period, as in the benchmark.
const TICK: Duration = Duration::from_secs(1);

/// Room for one INFO reply (a plain poll's is ~5 KB).
const REPLY_BUFFER: usize = 64 * 1024;

/// When the last request came, for the `before` modes.
type LastScrape = Arc<Mutex<Option<Instant>>>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (redis, http, page, mode) = match &args[..] {
        [_, r, h, p] => (r, h, p, ""),
        [_, r, h, p, m] => (r, h, p, m.as_str()),
        _ => panic!("usage: floor REDIS_PORT HTTP_PORT PAGE_BYTES [MODE]"),
    };
    let redis: u16 = redis.parse().expect("REDIS_PORT");
    let http: u16 = http.parse().expect("HTTP_PORT");
    let page: usize = page.parse().expect("PAGE_BYTES");
    match mode {
        "" | "timeout" => {
            http_thread(http, page, || {});
            runtime().block_on(poll_on_ticks(redis, mode == "timeout"));
        }
        "aligned" => runtime().block_on(async move {
            let answered = Arc::new(Notify::new());
            let notify = answered.clone();
            tokio::spawn(serve(http, page, move || notify.notify_one()));
            poll_after(redis, answered).await;
        }),
        "aligned2" => {
            let answered = Arc::new(Notify::new());
            let notify = answered.clone();
            http_thread(http, page, move || notify.notify_one());
            runtime().block_on(poll_after(redis, answered));
        }
        m if m.starts_with("before1:") || m.starts_with("before2:") => {
            let lead = Duration::from_millis(m[8..].parse().expect("beforeT:D"));
            let last: LastScrape = Arc::new(Mutex::new(None));
            let seen = last.clone();
            let note = move || *seen.lock().unwrap() = Some(Instant::now());
            if m.starts_with("before2") {
                http_thread(http, page, note);
                runtime().block_on(poll_before(redis, lead, last));
            } else {
                runtime().block_on(async move {
                    tokio::spawn(serve(http, page, note));
                    poll_before(redis, lead, last).await;
                });
            }
        }
        m => panic!("unknown mode {m:?}"),
    }
}

/// A single-threaded runtime, as each of the daemon's two threads has.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Serves HTTP on a thread of its own, as the daemon does by default.
fn http_thread(port: u16, page: usize, answered: impl Fn() + Clone + Send + 'static) {
    std::thread::Builder::new()
        .name("floor-http".into())
        .spawn(move || runtime().block_on(serve(port, page, answered)))
        .expect("thread");
}

/// One task per connection, one page per request head; `answered` runs
/// after each answer is written.
async fn serve(port: u16, page: usize, answered: impl Fn() + Clone + Send + 'static) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    let head =
        format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {page}\r\n\r\n");
    let mut response = head.into_bytes();
    response.resize(response.len() + page, b'#');
    let response = Arc::new(response);
    loop {
        let (mut stream, _) = listener.accept().await.expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        let (response, answered) = (response.clone(), answered.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            while read_head(&mut stream, &mut buf).await {
                if stream.write_all(&response).await.is_err() {
                    return;
                }
                answered();
            }
        });
    }
}

/// Reads one request head; false when the client is gone (or sent a head
/// larger than `buf`).
async fn read_head(stream: &mut TcpStream, buf: &mut [u8]) -> bool {
    let mut got = 0;
    while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf[got..]).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
        if got == buf.len() {
            return false;
        }
    }
    true
}

/// A connection to the node, as the poller keeps one.
async fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// The plain poll's INFO command, as the poller sends it.
fn info_command() -> Vec<u8> {
    let sections = redis_vitals::poller::INFO_SECTIONS;
    let mut command = format!("*{}\r\n$4\r\nINFO\r\n", sections.len() + 1);
    for s in sections {
        command.push_str(&format!("${}\r\n{s}\r\n", s.len()));
    }
    command.into_bytes()
}

/// Sends `command` and reads its reply, a bulk string
/// (`$<len>\r\n<len bytes>\r\n`), whole.
async fn round_trip(stream: &mut TcpStream, command: &[u8], buf: &mut [u8]) {
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

/// A timerfd on the runtime, as `src/schedule.rs` uses.
struct Timer(AsyncFd<rustix::fd::OwnedFd>);

impl Timer {
    fn new() -> Timer {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )
        .expect("timerfd");
        // The same (deprecated, safe) constructor src/schedule.rs uses.
        #[allow(deprecated)]
        Timer(AsyncFd::new(fd).expect("asyncfd"))
    }

    /// Fires `after` from now, then every `period` (zero: once).
    fn arm(&self, after: Duration, period: Duration) {
        let spec = |d: Duration| Timespec {
            tv_sec: d.as_secs() as i64,
            tv_nsec: d.subsec_nanos() as i64,
        };
        let value = Itimerspec {
            it_interval: spec(period),
            it_value: spec(after.max(Duration::from_micros(1))),
        };
        timerfd_settime(self.0.get_ref(), TimerfdTimerFlags::empty(), &value).expect("settime");
    }

    async fn fired(&self) {
        loop {
            let mut ready = self.0.readable().await.expect("readable");
            let mut expirations = [0u8; 8];
            if rustix::io::read(self.0.get_ref(), &mut expirations).is_ok() {
                return;
            }
            ready.clear_ready();
        }
    }
}

/// The design: a periodic timerfd tick, then one INFO round trip (in a
/// `tokio::time::timeout` if `timeout`).
async fn poll_on_ticks(port: u16, timeout: bool) {
    let mut stream = connect(port).await;
    let command = info_command();
    let mut buf = vec![0u8; REPLY_BUFFER];
    let timer = Timer::new();
    timer.arm(TICK, TICK);
    loop {
        timer.fired().await;
        let round_trip = round_trip(&mut stream, &command, &mut buf);
        if timeout {
            // The poller's default timeout; a healthy reply is far faster.
            tokio::time::timeout(Duration::from_secs(2), round_trip)
                .await
                .expect("INFO reply within 2 s");
        } else {
            round_trip.await;
        }
    }
}

/// One INFO round trip after each answer.
async fn poll_after(port: u16, answered: Arc<Notify>) {
    let mut stream = connect(port).await;
    let command = info_command();
    let mut buf = vec![0u8; REPLY_BUFFER];
    loop {
        answered.notified().await;
        round_trip(&mut stream, &command, &mut buf).await;
    }
}

/// Polls `lead` before the next scrape is due (the last scrape + one
/// period), on a timerfd; once a second until a scrape has been seen.
async fn poll_before(port: u16, lead: Duration, last: LastScrape) {
    let mut stream = connect(port).await;
    let command = info_command();
    let mut buf = vec![0u8; REPLY_BUFFER];
    let timer = Timer::new();
    let mut last_poll = Instant::now();
    loop {
        let now = Instant::now();
        let due = match *last.lock().unwrap() {
            Some(s) => {
                let mut due = s + TICK - lead;
                while due <= now || due < last_poll + TICK / 2 {
                    due += TICK;
                }
                due
            }
            None => last_poll + TICK,
        };
        timer.arm(due.saturating_duration_since(now), Duration::ZERO);
        timer.fired().await;
        last_poll = Instant::now();
        round_trip(&mut stream, &command, &mut buf).await;
    }
}
