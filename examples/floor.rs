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
    let (redis, http, page, mode) = match &args[..] {
        [_, r, h, p] => (r, h, p, ""),
        [_, r, h, p, m]
            if ["timeout", "aligned", "lazy", "aligned2"].contains(&m.as_str())
                || m.starts_with("before") =>
        {
            (r, h, p, m.as_str())
        }
        _ => panic!("usage: floor REDIS_PORT HTTP_PORT PAGE_BYTES [timeout|aligned|lazy]"),
    };
    let redis: u16 = redis.parse().expect("REDIS_PORT");
    let http: u16 = http.parse().expect("HTTP_PORT");
    let page: usize = page.parse().expect("PAGE_BYTES");
    if let Some(rest) = mode.strip_prefix("before") {
        // before1:D or before2:D: poll D ms before the next scrape is due,
        // with the HTTP server on the poll's thread (1) or its own (2).
        let (threads, lead) = rest.split_once(':').expect("beforeT:D");
        let lead = Duration::from_millis(lead.parse().expect("D"));
        let last_scrape = std::sync::Arc::new(std::sync::Mutex::new(None));
        let seen = last_scrape.clone();
        if threads == "2" {
            std::thread::Builder::new()
                .name("floor-http".into())
                .spawn(move || runtime().block_on(serve_noting(http, page, seen)))
                .expect("thread");
            runtime().block_on(poll_before(redis, lead, last_scrape));
        } else {
            runtime().block_on(async move {
                tokio::spawn(serve_noting(http, page, seen));
                poll_before(redis, lead, last_scrape).await;
            });
        }
        return;
    }
    if mode == "aligned2" {
        // aligned, with the HTTP server on its own thread: each answer
        // wakes the poll thread (a cross-thread Notify) for the round trip.
        let scraped = std::sync::Arc::new(tokio::sync::Notify::new());
        let notify = scraped.clone();
        std::thread::Builder::new()
            .name("floor-http".into())
            .spawn(move || runtime().block_on(serve_notifying(http, page, notify)))
            .expect("thread");
        runtime().block_on(async move {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", redis))
                .await
                .expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let command = info_command();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                scraped.notified().await;
                round_trip(&mut stream, command.as_bytes(), &mut buf).await;
            }
        });
        return;
    }
    if mode == "aligned" || mode == "lazy" {
        runtime().block_on(one_thread(redis, http, page, mode == "lazy"));
        return;
    }
    let timeout = mode == "timeout";
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
    read_reply(stream, buf).await;
}

/// Reads one bulk-string reply whole.
async fn read_reply(stream: &mut tokio::net::TcpStream, buf: &mut [u8]) {
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

/// The plain poll's INFO command.
fn info_command() -> String {
    let sections = redis_vitals::poller::INFO_SECTIONS;
    let mut command = format!("*{}\r\n$4\r\nINFO\r\n", sections.len() + 1);
    for s in sections {
        command.push_str(&format!("${}\r\n{s}\r\n", s.len()));
    }
    command
}

/// One thread, no tick: the poll is driven by the scrape. `aligned`: each
/// scrape is answered, then the INFO round trip runs (two wake-ups a
/// round: the scrape and the reply). `lazy`: each scrape first reads the
/// reply to the INFO sent after the previous scrape (already waiting in the
/// socket), answers, then sends the next INFO without waiting (one wake-up).
async fn one_thread(redis: u16, http: u16, page: usize, lazy: bool) {
    let mut redis = tokio::net::TcpStream::connect(("127.0.0.1", redis))
        .await
        .expect("connect");
    redis.set_nodelay(true).expect("nodelay");
    let command = info_command();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", http))
        .await
        .expect("bind");
    let head =
        format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {page}\r\n\r\n");
    let mut response = head.into_bytes();
    response.resize(response.len() + page, b'#');
    let mut reply = vec![0u8; 64 * 1024];
    let mut sent = false;
    loop {
        let (mut stream, _) = listener.accept().await.expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        let mut buf = vec![0u8; 8192];
        'conn: loop {
            let mut got = 0;
            while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf[got..]).await {
                    Ok(0) | Err(_) => break 'conn,
                    Ok(n) => got += n,
                }
                if got == buf.len() {
                    break 'conn;
                }
            }
            if lazy && sent {
                read_reply(&mut redis, &mut reply).await;
            }
            if stream.write_all(&response).await.is_err() {
                break 'conn;
            }
            if lazy {
                redis.write_all(command.as_bytes()).await.expect("send");
                sent = true;
            } else {
                round_trip(&mut redis, command.as_bytes(), &mut reply).await;
            }
        }
    }
}

type LastScrape = std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>;

/// The HTTP server of `serve`, noting when each request came.
async fn serve_noting(port: u16, page: usize, last: LastScrape) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    let head =
        format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {page}\r\n\r\n");
    let mut response = head.into_bytes();
    response.resize(response.len() + page, b'#');
    let response = std::sync::Arc::new(response);
    loop {
        let (mut stream, _) = listener.accept().await.expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        let (response, last) = (response.clone(), last.clone());
        tokio::spawn(async move {
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
                *last.lock().unwrap() = Some(std::time::Instant::now());
                if stream.write_all(&response).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Polls `lead` before the next scrape is due (the last scrape + one
/// period), on a timerfd; once a second until a scrape has been seen.
async fn poll_before(port: u16, lead: Duration, last: LastScrape) {
    use rustix::time::{
        timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags,
        TimerfdTimerFlags, Timespec,
    };
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let command = info_command();
    let fd = timerfd_create(
        TimerfdClockId::Monotonic,
        TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
    )
    .expect("timerfd");
    #[allow(deprecated)]
    let ticks = AsyncFd::new(fd).expect("asyncfd");
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_poll = std::time::Instant::now();
    loop {
        let now = std::time::Instant::now();
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
        let after = due
            .saturating_duration_since(now)
            .max(Duration::from_micros(1));
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let value = Timespec {
            tv_sec: after.as_secs() as i64,
            tv_nsec: after.subsec_nanos() as i64,
        };
        timerfd_settime(
            ticks.get_ref(),
            TimerfdTimerFlags::empty(),
            &Itimerspec {
                it_interval: zero,
                it_value: value,
            },
        )
        .expect("settime");
        loop {
            let mut ready = ticks.readable().await.expect("readable");
            let mut expirations = [0u8; 8];
            if rustix::io::read(ticks.get_ref(), &mut expirations).is_ok() {
                break;
            }
            ready.clear_ready();
        }
        last_poll = std::time::Instant::now();
        round_trip(&mut stream, command.as_bytes(), &mut buf).await;
    }
}

/// The HTTP server of `serve`, notifying the poll thread after each answer.
async fn serve_notifying(port: u16, page: usize, scraped: std::sync::Arc<tokio::sync::Notify>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    let head =
        format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {page}\r\n\r\n");
    let mut response = head.into_bytes();
    response.resize(response.len() + page, b'#');
    loop {
        let (mut stream, _) = listener.accept().await.expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        let mut buf = vec![0u8; 8192];
        'conn: loop {
            let mut got = 0;
            while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf[got..]).await {
                    Ok(0) | Err(_) => break 'conn,
                    Ok(n) => got += n,
                }
                if got == buf.len() {
                    break 'conn;
                }
            }
            if stream.write_all(&response).await.is_err() {
                break 'conn;
            }
            scraped.notify_one();
        }
    }
}
