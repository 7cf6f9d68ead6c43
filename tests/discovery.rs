//! Cluster discovery that cannot be turned against the exporter, and polls
//! that hung nodes cannot starve (issue 16).
//!
//! A real redis-server cannot advertise arbitrary addresses in CLUSTER
//! NODES, so a fake cluster node on loopback does: a small RESP server that
//! answers AUTH, INFO (with `cluster_enabled:1`), CLUSTER INFO and CLUSTER
//! NODES with whatever the test sets. The healthy node beside it is a real
//! redis-server.
//!
//! Hung connects: on Linux, a listener with a backlog of 0 completes one
//! connection into its accept queue; once that one waits unaccepted,
//! further SYNs are dropped and `connect` hangs until the client gives up.
//! Each hung address is such a listener, pre-filled with one connection by
//! the test ([`HungListener`]; checked when it is made).

mod common;
mod daemon_harness;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{find_value, parse_metrics, wait_until, RedisServer};
use daemon_harness::TestDaemon;

const WAIT: Duration = Duration::from_secs(30);

/// The tests run one at a time: the memory test measures this process, and
/// the timing test should not share the two cores with a thousand polls.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}
const SECRET: &str = "Kx7DiscoverySecret";
const MYSELF_ID: &str = "ffffffffffffffffffffffffffffffffffffffff";

/// Replies of the fake cluster node, changeable while it runs.
#[derive(Default)]
struct Replies {
    cluster_nodes: String,
    cluster_info: String,
}

/// A fake Redis Cluster node (see the module doc).
struct FakeNode {
    addr: SocketAddr,
    replies: Arc<Mutex<Replies>>,
    /// AUTH commands received.
    auths: Arc<AtomicUsize>,
    /// CLUSTER NODES commands answered.
    nodes_asked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

const CLUSTER_INFO_OK: &str = "cluster_state:ok\r\ncluster_slots_assigned:16384\r\n\
    cluster_slots_ok:16384\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\n\
    cluster_known_nodes:3\r\ncluster_size:1\r\ncluster_current_epoch:1\r\ncluster_my_epoch:1\r\n";

impl FakeNode {
    fn start() -> FakeNode {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let node = FakeNode {
            addr,
            replies: Arc::new(Mutex::new(Replies {
                cluster_nodes: String::new(),
                cluster_info: CLUSTER_INFO_OK.to_string(),
            })),
            auths: Arc::new(AtomicUsize::new(0)),
            nodes_asked: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (replies, auths, asked, stop) = (
            node.replies.clone(),
            node.auths.clone(),
            node.nodes_asked.clone(),
            node.stop.clone(),
        );
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (replies, auths, asked, stop) =
                            (replies.clone(), auths.clone(), asked.clone(), stop.clone());
                        thread::spawn(move || serve(conn, &replies, &auths, &asked, &stop));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        node
    }

    fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// Sets CLUSTER NODES: this node's own line, then `others` as given.
    fn set_nodes(&self, others: &[String]) {
        let mut text = format!(
            "{MYSELF_ID} {}@1 myself,master - 0 0 1 connected 0-16383\n",
            self.addr
        );
        for l in others {
            text.push_str(l);
            text.push('\n');
        }
        self.replies.lock().unwrap().cluster_nodes = text;
    }

    fn set_cluster_info(&self, text: &str) {
        self.replies.lock().unwrap().cluster_info = text.to_string();
    }

    fn nodes_asked(&self) -> usize {
        self.nodes_asked.load(Ordering::Relaxed)
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A CLUSTER NODES line for a master at `addr` (ip:port) without slots.
fn node_line(i: usize, addr: &str) -> String {
    format!("{:040x} {addr}@1 master - 0 0 1 connected", i + 1)
}

fn read_command(r: &mut impl BufRead) -> Option<Vec<String>> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let n: usize = line.trim().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        line.clear();
        r.read_line(&mut line).ok()?;
        let len: usize = line.trim().strip_prefix('$')?.parse().ok()?;
        let mut buf = vec![0u8; len + 2];
        r.read_exact(&mut buf).ok()?;
        buf.truncate(len);
        args.push(String::from_utf8_lossy(&buf).into_owned());
    }
    Some(args)
}

fn bulk(text: &str) -> Vec<u8> {
    format!("${}\r\n{text}\r\n", text.len()).into_bytes()
}

fn serve(
    conn: TcpStream,
    replies: &Mutex<Replies>,
    auths: &AtomicUsize,
    asked: &AtomicUsize,
    stop: &AtomicBool,
) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    let run_id = "0123456789abcdef0123456789abcdef01234567";
    while !stop.load(Ordering::Relaxed) {
        let Some(args) = read_command(&mut r) else {
            // A read timeout between commands is fine; anything else ends.
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let mut probe = [0u8; 1];
            match r.get_ref().peek(&mut probe) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                Err(_) => return,
            }
        };
        let upper: Vec<String> = args.iter().map(|a| a.to_ascii_uppercase()).collect();
        let reply = match upper.first().map(String::as_str) {
            Some("AUTH") => {
                auths.fetch_add(1, Ordering::Relaxed);
                b"+OK\r\n".to_vec()
            }
            Some("PING") => b"+PONG\r\n".to_vec(),
            Some("INFO") => bulk(&format!(
                "# Server\r\nredis_version:7.0.15\r\nredis_mode:cluster\r\nrun_id:{run_id}\r\n\
                 uptime_in_seconds:100\r\n# Clients\r\nconnected_clients:1\r\nmaxclients:10000\r\n\
                 # Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_repl_offset:0\r\n\
                 # Cluster\r\ncluster_enabled:1\r\n"
            )),
            Some("CLUSTER") => match upper.get(1).map(String::as_str) {
                Some("NODES") => {
                    asked.fetch_add(1, Ordering::Relaxed);
                    bulk(&replies.lock().unwrap().cluster_nodes)
                }
                Some("INFO") => bulk(&replies.lock().unwrap().cluster_info),
                _ => b"-ERR unknown subcommand\r\n".to_vec(),
            },
            _ => b"-ERR unknown command\r\n".to_vec(),
        };
        if w.write_all(&reply).is_err() {
            return;
        }
    }
}

/// A listener that counts the connections made to it and drops them.
struct Trap {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Trap {
    fn bind(ip: &str) -> Trap {
        let listener = TcpListener::bind((ip, 0))
            .unwrap_or_else(|e| panic!("cannot bind {ip} (Linux routes all of 127/8 to lo): {e}"));
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (accepted.clone(), stop.clone());
        thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok(_) => {
                        a.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Trap {
            addr,
            accepted,
            stop,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn refused(d: &TestDaemon, cluster: &str, reason: &str) -> Option<f64> {
    find_value(
        &d.metrics(),
        "redis_vitals_discovery_refused_total",
        &[("cluster", cluster), ("reason", reason)],
    )
}

/// Waits until the fake node has answered `n` more CLUSTER NODES, so that
/// discovery has had fresh views to act on.
fn wait_views(fake: &FakeNode, n: usize) {
    let start = fake.nodes_asked();
    wait_until(WAIT, "more CLUSTER NODES reads", || {
        (fake.nodes_asked() >= start + n).then_some(())
    });
}

/// (a) A node advertising loopback addresses outside the allowed networks
/// and the cloud metadata address: none of them is ever connected to, they
/// are counted once with their reason, kept out of /sd and /metrics, and
/// listed on the landing page.
#[test]
fn refused_addresses_never_see_a_connection() {
    let _serial = serial();
    let trap2 = Trap::bind("127.0.0.2");
    let trap3 = Trap::bind("127.0.0.3");
    let fake = FakeNode::start();
    fake.set_nodes(&[
        node_line(1, &trap2.addr.to_string()),
        node_line(2, &trap3.addr.to_string()),
        node_line(3, "169.254.169.254:80"),
    ]);
    let seed = format!("redis://:{SECRET}@{}", fake.host_port());
    let d = TestDaemon::start(&[
        "--redis.addr",
        &seed,
        "--redis.cluster",
        "fake",
        "--cluster.allowed-networks",
        "127.0.0.1/32",
        "--cluster.refresh-interval",
        "300ms",
    ]);
    wait_until(WAIT, "the three refusals to be counted", || {
        (refused(&d, "fake", "not_allowed") == Some(2.0)
            && refused(&d, "fake", "link_local") == Some(1.0))
        .then_some(())
    });
    // Several more views later: still counted once, still no connection.
    wait_views(&fake, 5);
    assert_eq!(refused(&d, "fake", "not_allowed"), Some(2.0));
    assert_eq!(refused(&d, "fake", "link_local"), Some(1.0));
    assert_eq!(refused(&d, "fake", "cap"), Some(0.0));
    assert_eq!(trap2.accepted(), 0, "a refused address was connected to");
    assert_eq!(trap3.accepted(), 0, "a refused address was connected to");
    assert!(
        fake.auths.load(Ordering::Relaxed) >= 1,
        "the seed gets AUTH"
    );
    let m = d.metrics_text();
    let (_, sd) = d.get("/sd");
    for hidden in [
        trap2.addr.to_string(),
        trap3.addr.to_string(),
        "169.254.169.254".to_string(),
    ] {
        assert!(!m.contains(&hidden), "/metrics shows {hidden}");
        assert!(!sd.contains(&hidden), "/sd shows {hidden}");
    }
    assert_eq!(d.shared.nodes().len(), 1);
    let (_, page) = d.get("/");
    assert!(page.contains(&trap2.addr.to_string()), "{page}");
    assert!(page.contains("169.254.169.254:80"), "{page}");
    assert!(page.contains("link_local") && page.contains("not_allowed"));
    assert!(!page.contains(SECRET));
}

/// The control for the test above: with the default trust model a loopback
/// seed vouches for all of loopback, so the same trap is connected to (the
/// trap works); the metadata address stays refused.
#[test]
fn default_trust_follows_the_seeds_network_but_never_link_local() {
    let _serial = serial();
    let trap2 = Trap::bind("127.0.0.2");
    let fake = FakeNode::start();
    fake.set_nodes(&[
        node_line(1, &trap2.addr.to_string()),
        node_line(2, "169.254.169.254:80"),
        node_line(3, "10.11.12.13:6379"),
    ]);
    let d = TestDaemon::start(&["--redis.addr", &fake.host_port(), "--redis.cluster", "fake"]);
    wait_until(WAIT, "the loopback trap to be polled", || {
        (trap2.accepted() >= 1).then_some(())
    });
    wait_until(WAIT, "the refusals to be counted", || {
        (refused(&d, "fake", "link_local") == Some(1.0)
            && refused(&d, "fake", "not_allowed") == Some(1.0))
        .then_some(())
    });
    let (_, sd) = d.get("/sd");
    assert!(sd.contains(&trap2.addr.to_string()), "{sd}");
    assert!(
        !sd.contains("169.254") && !sd.contains("10.11.12.13"),
        "{sd}"
    );
}

/// `cluster.discover = false`: the seed only, its cluster series still there.
#[test]
fn discovery_can_be_turned_off() {
    let _serial = serial();
    let trap = Trap::bind("127.0.0.1");
    let fake = FakeNode::start();
    fake.set_nodes(&[node_line(1, &trap.addr.to_string())]);
    let d = TestDaemon::start(&[
        "--redis.addr",
        &fake.host_port(),
        "--cluster.discover=false",
        "--cluster.refresh-interval",
        "300ms",
    ]);
    let a = fake.host_port();
    d.wait_value(WAIT, "redis_cluster_state", &[("addr", &a)], |v| v == 1.0);
    wait_views(&fake, 3);
    assert_eq!(trap.accepted(), 0);
    assert_eq!(d.shared.nodes().len(), 1);
    assert!(!d.get("/sd").1.contains(&trap.addr.to_string()));
}

/// Issue item 4: one malformed CLUSTER NODES line and one malformed CLUSTER
/// INFO field cost that line and that field, counted with a fixed reason;
/// the node stays up with its INFO series, and the good lines are still
/// discovered. (On bbb571e the node was marked down.)
#[test]
fn a_malformed_line_costs_that_line_only() {
    let _serial = serial();
    let trap = Trap::bind("127.0.0.1");
    let fake = FakeNode::start();
    fake.set_nodes(&[
        "garbage-line-without-fields".to_string(),
        node_line(1, &trap.addr.to_string()),
    ]);
    fake.set_cluster_info(&CLUSTER_INFO_OK.replace("cluster_size:1", "cluster_size:one"));
    // Named, so that discovery never relabels the seed: a relabel
    // re-renders its series from the few INFO fields kept after a poll,
    // and they are missing until its next poll.
    let d = TestDaemon::start(&["--redis.addr", &fake.host_port(), "--redis.cluster", "fake"]);
    let a = fake.host_port();
    wait_until(WAIT, "the good line's node to be polled", || {
        (trap.accepted() >= 1).then_some(())
    });
    let m = d.metrics();
    let l = [("addr", a.as_str())];
    assert_eq!(find_value(&m, "redis_up", &l), Some(1.0));
    assert_eq!(find_value(&m, "redis_uptime_in_seconds", &l), Some(100.0));
    assert_eq!(find_value(&m, "redis_cluster_known_nodes", &l), Some(3.0));
    assert_eq!(
        find_value(&m, "redis_cluster_size", &l),
        None,
        "dropped, not 0"
    );
    for reason in ["cluster_nodes_line", "cluster_info_field"] {
        let n = find_value(
            &m,
            "redis_vitals_parse_errors_total",
            &[("addr", a.as_str()), ("reason", reason)],
        );
        assert!(n.is_some_and(|n| n >= 1.0), "{reason}: {n:?}");
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

/// Growth of this test process's resident memory allowed while the daemon
/// (in-process, debug build) holds a 5000-line view and polls its capped
/// 1000 nodes. Measured ~40 MiB here (BENCHMARKS.md has the release
/// figures); on bbb571e the daemon polled all 5000 (93 MB RSS at 10 000).
const MAX_GROWTH_MIB: u64 = 80;

/// (b) A reply listing 5000 nodes: 1000 are polled (cluster.max-nodes),
/// the rest counted as `cap`, memory and the page bounded.
#[test]
fn a_reply_listing_5000_nodes_is_capped() {
    let _serial = serial();
    let fake = FakeNode::start();
    // Closed ports on loopback addresses (allowed by a loopback seed):
    // connects are refused at once.
    let others: Vec<String> = (0..5000)
        .map(|i| node_line(i, &format!("127.0.{}.{}:1", 1 + i / 200, 1 + i % 200)))
        .collect();
    fake.set_nodes(&others);
    let before = rss_kib();
    let d = TestDaemon::start(&[
        "--redis.addr",
        &fake.host_port(),
        "--redis.cluster",
        "big",
        "--cluster.refresh-interval",
        "1s",
    ]);
    wait_until(WAIT, "4001 nodes refused for the cap", || {
        (refused(&d, "big", "cap") == Some(4001.0)).then_some(())
    });
    assert_eq!(d.shared.nodes().len(), 1000);
    // Every polled node has been tried once (refused connects).
    wait_until(WAIT, "every node polled once", || {
        d.shared.ready().then_some(())
    });
    wait_views(&fake, 3);
    assert_eq!(refused(&d, "big", "cap"), Some(4001.0), "counted once");
    assert_eq!(d.shared.nodes().len(), 1000);
    let page = d.metrics_text();
    let grown = rss_kib().saturating_sub(before) / 1024;
    eprintln!(
        "5000 advertised: RSS grew {grown} MiB, /metrics {} KiB",
        page.len() / 1024
    );
    assert!(grown < MAX_GROWTH_MIB, "RSS grew {grown} MiB");
    // About 1.5 KiB per node down; 19 MB at 10 000 nodes on bbb571e.
    assert!(
        page.len() < 4 * 1024 * 1024,
        "/metrics is {} bytes",
        page.len()
    );
    let samples = parse_metrics(&page);
    assert_eq!(
        common::find_all(&samples, "redis_up", &[]).len(),
        1000,
        "one redis_up per polled node"
    );
}

/// A listener whose accept queue is full: connects to it hang (module doc).
struct HungListener {
    addr: SocketAddr,
    _listener: tokio::net::TcpListener,
    _filler: TcpStream,
}

fn hung_listeners(n: usize, rt: &tokio::runtime::Runtime) -> Vec<HungListener> {
    let _guard = rt.enter();
    (0..n)
        .map(|_| {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let listener = socket.listen(0).unwrap();
            let addr = listener.local_addr().unwrap();
            let filler = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
            HungListener {
                addr,
                _listener: listener,
                _filler: filler,
            }
        })
        .collect()
}

/// (c) 200 discovered nodes whose connects hang, beside a healthy real
/// redis-server: the healthy node's data age stays within interval +
/// timeout at every scrape over more than 10 intervals, and it stays up.
/// On bbb571e the hung connects held the shared poll slots (8 here) and
/// the healthy node's polls queued behind them.
#[test]
fn hung_connects_do_not_starve_a_healthy_node() {
    let _serial = serial();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let hung = hung_listeners(200, &rt);
    // The premise: a further connect hangs (SYN dropped), it is not refused.
    match TcpStream::connect_timeout(&hung[0].addr, Duration::from_millis(300)) {
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
        other => panic!("a full backlog-0 listener should make connects hang, got {other:?}"),
    }
    let real = RedisServer::start(&[]);
    let fake = FakeNode::start();
    let others: Vec<String> = hung
        .iter()
        .enumerate()
        .map(|(i, h)| node_line(i, &h.addr.to_string()))
        .collect();
    fake.set_nodes(&others);
    let interval = 1.0;
    let timeout = 0.5;
    let d = TestDaemon::start(&[
        "--redis.addr",
        &fake.host_port(),
        "--redis.addr",
        &real.addr(),
        "--poll.interval",
        "1s",
        "--poll.timeout",
        "500ms",
        "--poll.max-backoff",
        "2s",
        "--poll.concurrency",
        "8",
    ]);
    let ra = real.addr();
    d.wait_value(WAIT, "redis_up", &[("addr", &ra)], |v| v == 1.0);
    wait_until(WAIT, "the 200 hung nodes to be polled", || {
        (d.shared.nodes().len() == 202).then_some(())
    });
    wait_until(WAIT, "most hung nodes to have failed a poll", || {
        let m = d.metrics();
        let failed = hung
            .iter()
            .filter(|h| {
                let a = h.addr.to_string();
                ["connect", "timeout"].iter().any(|r| {
                    find_value(
                        &m,
                        "redis_vitals_poll_errors_total",
                        &[("addr", a.as_str()), ("reason", r)],
                    )
                    .is_some_and(|v| v >= 1.0)
                })
            })
            .count();
        (failed >= 150).then_some(())
    });
    // 12 intervals, a scrape every 100 ms.
    let start = Instant::now();
    let mut worst: f64 = 0.0;
    let mut scrapes = 0;
    while start.elapsed() < Duration::from_secs_f64(12.0 * interval) {
        let m = d.metrics();
        let age = find_value(
            &m,
            "redis_vitals_last_success_age_seconds",
            &[("addr", &ra)],
        )
        .unwrap();
        worst = worst.max(age);
        assert!(
            age <= interval + timeout,
            "the healthy node's data is {age:.2}s old after {scrapes} scrapes (bound {})",
            interval + timeout
        );
        assert_eq!(find_value(&m, "redis_up", &[("addr", &ra)]), Some(1.0));
        scrapes += 1;
        thread::sleep(Duration::from_millis(100));
    }
    eprintln!("healthy node beside 200 hung: worst data age {worst:.3}s over {scrapes} scrapes");
}

/// `poll.max-nodes` bounds the daemon as a whole: discovery stops adding at
/// it and counts the rest as `cap`.
#[test]
fn the_daemon_wide_bound_caps_discovery_too() {
    let _serial = serial();
    let fake = FakeNode::start();
    let others: Vec<String> = (0..10)
        .map(|i| node_line(i, &format!("127.0.9.{}:1", 1 + i)))
        .collect();
    fake.set_nodes(&others);
    let d = TestDaemon::start(&[
        "--redis.addr",
        &fake.host_port(),
        "--redis.cluster",
        "small",
        "--poll.max-nodes",
        "4",
    ]);
    wait_until(WAIT, "7 nodes refused for the cap", || {
        (refused(&d, "small", "cap") == Some(7.0)).then_some(())
    });
    assert_eq!(d.shared.nodes().len(), 4);
}
