//! A hostile or broken server never crashes the daemon, never grows its
//! memory without bound, and never disturbs the other nodes: a fake server
//! on loopback answers INFO with garbage, a multi-gigabyte declared reply,
//! an endless array, a reply trickled byte by byte, or closes mid-reply.
//! Each is marked down with a fixed reason; so are tricks played on the
//! replies of a pipelined poll, while error replies inside one cost only
//! their metrics. A server replaced by an older version at the same address
//! is learned again.

mod common;
mod daemon_harness;

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{find_value, RedisServer};
use daemon_harness::TestDaemon;

const WAIT: Duration = Duration::from_secs(15);
/// Upper bound on what one fake connection may send or how long it lives,
/// so the test stops by itself whatever the exporter does.
const MAX_FAKE_BYTES: usize = 512 * 1024 * 1024;
const MAX_FAKE_LIFE: Duration = Duration::from_secs(20);

#[derive(Clone, Copy)]
enum Behaviour {
    Garbage,
    HugeBulk,
    EndlessArray,
    Trickle,
    CloseMidReply,
    /// Answers AUTH with an error quoting the whole request back.
    EchoAuth,
}

struct FakeServer {
    addr: String,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FakeServer {
    fn start(behaviour: Behaviour) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = accept_loop(listener, stop.clone(), move |conn| {
            serve(conn, behaviour, &flag)
        });
        FakeServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

/// Accepts on `listener` until `stop` (or two minutes), each connection
/// handled by `handle` on a thread of its own.
fn accept_loop(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    handle: impl Fn(TcpStream) + Clone + Send + 'static,
) -> thread::JoinHandle<()> {
    listener.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            match listener.accept() {
                Ok((conn, _)) => {
                    conn.set_nonblocking(false).unwrap();
                    let handle = handle.clone();
                    thread::spawn(move || handle(conn));
                }
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
    })
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut conn: TcpStream, behaviour: Behaviour, stop: &AtomicBool) {
    let born = Instant::now();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Wait for the first command (INFO ...), whatever it is.
    let mut buf = [0u8; 4096];
    let first = match conn.read(&mut buf) {
        Ok(n) if n > 0 => n,
        _ => return,
    };
    let alive = |sent: usize| {
        !stop.load(Ordering::Relaxed) && born.elapsed() < MAX_FAKE_LIFE && sent < MAX_FAKE_BYTES
    };
    match behaviour {
        Behaviour::Garbage => {
            let _ = conn.write_all(b"!#%& this is not RESP\r\n");
            // Stay open: the exporter must give up on its own.
            while alive(0) && conn.read(&mut buf).is_ok_and(|n| n > 0) {}
        }
        Behaviour::HugeBulk => {
            let _ = conn.write_all(b"$5000000000\r\n");
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0;
            while alive(sent) && conn.write_all(&chunk).is_ok() {
                sent += chunk.len();
            }
        }
        Behaviour::EndlessArray => {
            let _ = conn.write_all(b"*4000000000\r\n");
            let chunk: Vec<u8> = b":1\r\n".repeat(16 * 1024);
            let mut sent = 0;
            while alive(sent) && conn.write_all(&chunk).is_ok() {
                sent += chunk.len();
            }
        }
        Behaviour::Trickle => {
            let reply = b"$20\r\nredis_version:7.0.0\r\n";
            for b in reply {
                if !alive(0) || conn.write_all(&[*b]).is_err() {
                    break;
                }
                thread::sleep(Duration::from_secs(1));
            }
        }
        Behaviour::CloseMidReply => {
            let _ = conn.write_all(b"$100\r\nredis_version:7.0");
        }
        Behaviour::EchoAuth => {
            let request = String::from_utf8_lossy(&buf[..first]).replace(['\r', '\n'], " ");
            let _ = conn.write_all(format!("-ERR bad password in: {request}\r\n").as_bytes());
        }
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn hostile_servers_are_contained() {
    let real = RedisServer::start(&[]);
    let fakes = [
        (FakeServer::start(Behaviour::Garbage), "protocol"),
        (FakeServer::start(Behaviour::HugeBulk), "reply_too_large"),
        // Decoding millions of tiny elements may be slower than they arrive
        // (debug builds): the deadline can end the poll before the cap.
        (
            FakeServer::start(Behaviour::EndlessArray),
            "reply_too_large|timeout",
        ),
        (FakeServer::start(Behaviour::Trickle), "timeout"),
        (FakeServer::start(Behaviour::CloseMidReply), "io"),
    ];
    let rss_before = rss_kib();
    let mut args = vec!["--redis.addr".to_string(), real.addr()];
    for (f, _) in &fakes {
        args.push("--redis.addr".into());
        args.push(f.addr.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let d = TestDaemon::start(&args);
    let ra = real.addr();
    d.wait_value(WAIT, "redis_up", &[("addr", &ra)], |v| v == 1.0);
    for (f, reason) in &fakes {
        // Several failed polls each, with the reason the behaviour calls for.
        common::wait_until(
            WAIT,
            &format!("{} to fail twice with reason {reason}", f.addr),
            || {
                let m = d.metrics();
                let n: f64 = reason
                    .split('|')
                    .filter_map(|r| {
                        find_value(
                            &m,
                            "redis_vitals_poll_errors_total",
                            &[("addr", &f.addr), ("reason", r)],
                        )
                    })
                    .sum();
                (n >= 2.0).then_some(())
            },
        );
        let m = d.metrics();
        assert_eq!(
            find_value(&m, "redis_up", &[("addr", &f.addr)]),
            Some(0.0),
            "{}",
            f.addr
        );
        // The real node kept being polled meanwhile.
        let age = find_value(
            &m,
            "redis_vitals_last_success_age_seconds",
            &[("addr", &ra)],
        )
        .unwrap();
        assert!(
            age < 1.5,
            "the real node's snapshot went stale ({age}s) next to a hostile one"
        );
    }
    // Bounded memory: the reply cap holds each hostile reply to a few MiB,
    // however much the fakes send and however often they are retried.
    let grown_mib = (rss_kib().saturating_sub(rss_before)) / 1024;
    assert!(grown_mib < 100, "resident memory grew by {grown_mib} MiB");
    assert_eq!(
        find_value(&d.metrics(), "redis_up", &[("addr", &ra)]),
        Some(1.0)
    );
}

/// A server that quotes our AUTH request back in its error reply: the node
/// is down with reason auth, and the password shows nowhere.
#[test]
fn a_server_echoing_the_password_does_not_leak_it() {
    let fake = FakeServer::start(Behaviour::EchoAuth);
    let secret = "Zq9EchoedSecret";
    let url = format!("redis://:{secret}@{}", fake.addr);
    let d = TestDaemon::start(&["--redis.addr", &url]);
    d.wait_value(
        WAIT,
        "redis_vitals_poll_errors_total",
        &[("addr", &fake.addr), ("reason", "auth")],
        |v| v >= 1.0,
    );
    for path in ["/", "/metrics", "/sd"] {
        let (_, body) = d.get(path);
        assert!(!body.contains(secret), "{path} shows the password");
    }
    let (_, landing) = d.get("/");
    assert!(
        landing.contains("&lt;redacted&gt;") || landing.contains("<redacted>"),
        "{landing}"
    );
}

/// Serves RESP commands one by one on `conn`: `answer` gets each command's
/// arguments (the first upper-cased) and whether more commands had already
/// arrived with it (a pipeline), and gives the bytes to send back.
fn serve_commands(
    conn: TcpStream,
    stop: &AtomicBool,
    mut answer: impl FnMut(&[String], bool) -> Vec<u8>,
) {
    // A command arrives whole: a timeout only ever interrupts the wait for
    // the next one, and lets the loop see `stop`.
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    let born = Instant::now();
    while !stop.load(Ordering::Relaxed) && born.elapsed() < MAX_FAKE_LIFE {
        let command = match common::read_resp(&mut reader) {
            Ok(common::Resp::Array(Some(parts))) => parts,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            _ => return,
        };
        let args: Vec<String> = command
            .iter()
            .enumerate()
            .map(|(i, part)| {
                let arg = part.text().unwrap_or_default();
                if i == 0 {
                    arg.to_ascii_uppercase()
                } else {
                    arg
                }
            })
            .collect();
        let batched = !reader.buffer().is_empty();
        if writer.write_all(&answer(&args, batched)).is_err() {
            return;
        }
    }
}

/// Serves `listener` until `stop`, each connection answered by a fresh
/// `answer` from `make` (see [`serve_commands`]).
fn serve_on<A: FnMut(&[String], bool) -> Vec<u8> + Send + 'static>(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    make: impl Fn() -> A + Clone + Send + 'static,
) -> thread::JoinHandle<()> {
    let flag = stop.clone();
    accept_loop(listener, stop, move |conn| {
        serve_commands(conn, &flag, make())
    })
}

fn bulk(text: &str) -> Vec<u8> {
    format!("${}\r\n{text}\r\n", text.len()).into_bytes()
}

/// An INFO reply of `version`.
fn info_text(version: &str) -> String {
    format!(
        "# Server\r\nredis_version:{version}\r\nredis_mode:standalone\r\n\
         run_id:0123456789abcdef0123456789abcdef01234567\r\n\
         # Clients\r\nconnected_clients:1\r\nmaxclients:10000\r\n\
         # Replication\r\nrole:master\r\n"
    )
}

/// Answers like Redis 6.2: `INFO` with one section name or none, and
/// `-ERR syntax error` to several (7.0's form); anything else is unknown.
fn old_redis() -> impl FnMut(&[String], bool) -> Vec<u8> {
    |args: &[String], _| match args.first().map(String::as_str) {
        Some("INFO") if args.len() <= 2 => bulk(&info_text("6.2.14")),
        Some("INFO") => b"-ERR syntax error\r\n".to_vec(),
        _ => b"-ERR unknown command\r\n".to_vec(),
    }
}

/// What a fake Redis 7 does to the slow-log replies of the polls after
/// its first (the ones the exporter sends with INFO).
#[derive(Clone, Copy)]
enum SlowlogTrick {
    /// `SLOWLOG GET 1` answered, then bytes nobody asked for.
    TrailingBytes,
    /// `SLOWLOG LEN` answered with a declared 5 GB string.
    HugeSecondReply,
    /// Both refused by the ACL (error replies inside the pipeline).
    Denied,
}

/// A Redis 7 that answers a poll in full unless its slow-log commands came
/// in one write with INFO: those get `trick`. `pipelines` counts the INFOs
/// that came with other commands.
fn pipelining_redis(
    trick: SlowlogTrick,
    pipelines: Arc<std::sync::atomic::AtomicUsize>,
) -> impl FnMut(&[String], bool) -> Vec<u8> {
    let mut in_pipeline = false;
    move |args: &[String], batched| {
        let cmd = args.first().map(String::as_str).unwrap_or("");
        let sub = args
            .get(1)
            .map(|s| s.to_ascii_uppercase())
            .unwrap_or_default();
        if cmd == "INFO" {
            in_pipeline = batched;
            if batched {
                pipelines.fetch_add(1, Ordering::Relaxed);
            }
            return bulk(&info_text("7.0.15"));
        }
        match (cmd, sub.as_str(), in_pipeline, trick) {
            ("SLOWLOG", "LEN", true, SlowlogTrick::HugeSecondReply) => {
                b"$5000000000\r\nxx".to_vec()
            }
            ("SLOWLOG", _, true, SlowlogTrick::Denied) => {
                b"-NOPERM this user has no permissions to run the 'slowlog' command\r\n".to_vec()
            }
            ("SLOWLOG", "GET", true, SlowlogTrick::TrailingBytes) => b"*0\r\n+EXTRA\r\n".to_vec(),
            ("SLOWLOG", "LEN", ..) => b":0\r\n".to_vec(),
            ("SLOWLOG", "GET", ..) => b"*0\r\n".to_vec(),
            ("CONFIG", ..) => b"*2\r\n$9\r\ndatabases\r\n$2\r\n16\r\n".to_vec(),
            _ => b"-ERR unknown command\r\n".to_vec(),
        }
    }
}

/// Pipelined replies from a broken or hostile server cost that node its
/// poll (with a fixed reason), never the connection's step or other nodes;
/// error replies inside a pipeline cost only their metrics.
#[test]
fn hostile_replies_inside_a_pipeline_are_contained() {
    let real = RedisServer::start(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    let mut fakes = vec![];
    let mut threads = vec![];
    for (trick, reason) in [
        (SlowlogTrick::TrailingBytes, Some("protocol")),
        (SlowlogTrick::HugeSecondReply, Some("reply_too_large")),
        (SlowlogTrick::Denied, None),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let pipelines = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = pipelines.clone();
        threads.push(serve_on(listener, stop.clone(), move || {
            pipelining_redis(trick, counter.clone())
        }));
        fakes.push((addr, reason, pipelines));
    }
    let mut args = vec!["--redis.addr".to_string(), real.addr()];
    for (addr, ..) in &fakes {
        args.push("--redis.addr".into());
        args.push(addr.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let d = TestDaemon::start(&args);
    let ra = real.addr();
    d.wait_value(WAIT, "redis_up", &[("addr", &ra)], |v| v == 1.0);
    for (addr, reason, pipelines) in &fakes {
        let l = [("addr", addr.as_str())];
        match reason {
            Some(reason) => {
                // Up after the first poll, down on the pipelined ones, again
                // and again (each reconnect starts over).
                let r = [("addr", addr.as_str()), ("reason", reason)];
                d.wait_value(WAIT, "redis_vitals_poll_errors_total", &r, |v| v >= 2.0);
                assert!(
                    find_value(&d.metrics(), "redis_vitals_connections_opened_total", &l).unwrap()
                        >= 2.0
                );
            }
            None => {
                // The refusal is read in step: the node stays up, polled on
                // one connection, its slow-log series gone.
                d.wait_value(WAIT, "redis_vitals_polls_total", &l, |v| v >= 6.0);
                let m = d.metrics();
                assert_eq!(find_value(&m, "redis_up", &l), Some(1.0));
                assert_eq!(
                    find_value(&m, "redis_vitals_connections_opened_total", &l),
                    Some(1.0)
                );
                let errors: f64 = common::find_all(&m, "redis_vitals_poll_errors_total", &l)
                    .iter()
                    .map(|s| s.value)
                    .sum();
                assert_eq!(errors, 0.0, "a denied SLOWLOG failed polls");
                assert_eq!(find_value(&m, "redis_slowlog_length", &l), None);
            }
        }
        let age = find_value(
            &d.metrics(),
            "redis_vitals_last_success_age_seconds",
            &[("addr", &ra)],
        )
        .unwrap();
        assert!(age < 1.5, "the real node's snapshot went stale ({age}s)");
        // The tricks were played on pipelined polls.
        let pipelined = pipelines.load(Ordering::Relaxed);
        assert!(pipelined >= 1, "{addr}: no poll came as a pipeline");
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn an_older_server_at_a_known_address_is_learned_again() {
    let mut redis = RedisServer::start(&[]);
    let addr = redis.addr();
    let l = [("addr", addr.as_str())];
    let d = TestDaemon::start(&["--redis.addr", &addr]);
    d.wait_value(WAIT, "redis_up", &l, |v| v == 1.0);

    // Redis 7 goes; a 6.2 answers at the same address.
    redis.stop();
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve_on(TcpListener::bind(&addr).unwrap(), stop.clone(), old_redis);
    common::wait_until(WAIT, "the 6.2 server to be shown", || {
        let m = d.metrics();
        let info = common::find_all(&m, "redis_instance_info", &l);
        (find_value(&m, "redis_up", &l) == Some(1.0)
            && info.first().and_then(|s| s.label("redis_version")) == Some("6.2.14"))
        .then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}
