//! Sharding across replicas (issue 18): three daemons with
//! `--shard.count 3` against a real 3-master/3-replica cluster plus four
//! standalone nodes, all configured alike. Every node must be polled and
//! shown by exactly one daemon, each master with its replicas; a
//! `CLUSTER FAILOVER` and a node joining (first as an empty master, then as
//! a replica) must keep that, moving as few nodes as possible. The
//! movement is printed. A watcher reading every /sd every 20 ms catches a
//! node shown twice even for a moment, and MONITOR on the nodes shows that
//! the seed gets a full poll from its owner and only a small scout poll
//! from the others, and a standalone node is polled by its owner alone.

mod common;
mod daemon_harness;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{find_value, RedisCluster, RedisServer};
use daemon_harness::TestDaemon;

/// Failovers and joins take seconds with a 1 s node timeout; CI is slow.
const WAIT: Duration = Duration::from_secs(30);

/// Reads every daemon's /sd every 20 ms on a thread of its own and records
/// which daemons ever listed each node: catches a node that moved and came
/// back between two settled checks (a transient during a failover).
struct Watcher {
    seen: Arc<Mutex<BTreeMap<String, BTreeSet<usize>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    fn start(ds: &[TestDaemon]) -> Watcher {
        let addrs: Vec<SocketAddr> = ds.iter().map(|d| d.addr).collect();
        let seen: Arc<Mutex<BTreeMap<String, BTreeSet<usize>>>> = Default::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                for (i, a) in addrs.iter().enumerate() {
                    let (status, body) = common::http_get(*a, "/sd");
                    if status != 200 {
                        continue;
                    }
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                    let mut s = s.lock().unwrap();
                    for g in v.as_array().unwrap() {
                        let addr = g["targets"][0].as_str().unwrap().to_string();
                        s.entry(addr).or_default().insert(i);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Watcher {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Nodes listed by more than one daemon (not necessarily at once)
    /// since the last call; resets the record.
    fn taken(&self) -> Vec<(String, BTreeSet<usize>)> {
        std::mem::take(&mut *self.seen.lock().unwrap())
            .into_iter()
            .filter(|(_, ds)| ds.len() > 1)
            .collect()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// addr -> (role, shard) as one daemon's /sd lists its share.
fn sd(d: &TestDaemon) -> BTreeMap<String, (String, String)> {
    let (status, body) = d.get("/sd");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let label = |k: &str| g["labels"][k].as_str().unwrap_or("").to_string();
            (
                g["targets"][0].as_str().unwrap().to_string(),
                (
                    label("__meta_redis_vitals_role"),
                    label("__meta_redis_vitals_shard"),
                ),
            )
        })
        .collect()
}

/// addr -> the index of the daemon whose /sd lists it; Err when a node is
/// listed by none or by several, or an unknown address is listed.
fn owners(ds: &[TestDaemon], all: &BTreeSet<String>) -> Result<BTreeMap<String, usize>, String> {
    let mut by: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, d) in ds.iter().enumerate() {
        for addr in sd(d).into_keys() {
            by.entry(addr).or_default().push(i);
        }
    }
    let mut out = BTreeMap::new();
    for a in all {
        match by.get(a).map(Vec::as_slice) {
            Some([i]) => {
                out.insert(a.clone(), *i);
            }
            other => return Err(format!("{a} is listed by daemons {other:?}")),
        }
    }
    if let Some(extra) = by.keys().find(|a| !all.contains(*a)) {
        return Err(format!("{extra} is listed but is no node of the fleet"));
    }
    Ok(out)
}

/// The real cluster's master of each replica (addr -> master addr), read
/// from the nodes themselves.
fn masters_of(cluster: &RedisCluster) -> BTreeMap<String, String> {
    let view = RedisCluster::view(&cluster.nodes[0]).unwrap();
    let addr_of: BTreeMap<&str, &str> = view
        .iter()
        .map(|l| (l.id.as_str(), l.addr.as_str()))
        .collect();
    view.iter()
        .filter_map(|l| {
            let m = l.master_id.as_deref()?;
            Some((l.addr.clone(), addr_of[m].to_string()))
        })
        .collect()
}

/// Waits until every node is listed by exactly one daemon, every daemon
/// shows its nodes up with the roles the cluster has now, and each replica
/// is with its master; then checks that no daemon leaks another's nodes
/// into /metrics. Returns the owners.
fn settled_owners(
    ds: &[TestDaemon],
    cluster: &RedisCluster,
    all: &BTreeSet<String>,
    what: &str,
) -> BTreeMap<String, usize> {
    let want_roles: BTreeMap<String, String> = cluster
        .nodes
        .iter()
        .map(|n| {
            let r = n.info_field("replication", "role").unwrap();
            (n.addr(), if r == "slave" { "replica".into() } else { r })
        })
        .collect();
    let masters = masters_of(cluster);
    let owner = common::wait_for(WAIT, what, || {
        let owner = owners(ds, all)?;
        for (i, d) in ds.iter().enumerate() {
            for (addr, (role, _)) in sd(d) {
                if let Some(want) = want_roles.get(&addr) {
                    if &role != want {
                        return Err(format!("daemon {i} shows {addr} as {role}, want {want}"));
                    }
                }
            }
            let m = d.metrics();
            for a in owner.iter().filter(|(_, o)| **o == i).map(|(a, _)| a) {
                if find_value(&m, "redis_up", &[("addr", a)]) != Some(1.0) {
                    return Err(format!("daemon {i} does not show {a} up yet"));
                }
            }
        }
        for (replica, master) in &masters {
            if owner[replica] != owner[master] {
                return Err(format!(
                    "replica {replica} is on daemon {}, its master {master} on daemon {}",
                    owner[replica], owner[master]
                ));
            }
        }
        Ok(owner)
    });
    // Nothing of another daemon's share in /metrics or /scrape.
    for (i, d) in ds.iter().enumerate() {
        let mine: BTreeSet<&String> = owner
            .iter()
            .filter(|(_, o)| **o == i)
            .map(|(a, _)| a)
            .collect();
        let m = d.metrics();
        for s in &m {
            if let Some(a) = s.label("addr") {
                assert!(
                    mine.contains(&a.to_string()),
                    "daemon {i} shows {} for {a}, which daemon {} owns",
                    s.name,
                    owner.get(a).map_or("none".into(), |o| o.to_string())
                );
            }
        }
        assert_eq!(
            find_value(&m, "redis_vitals_shard_nodes", &[]),
            Some(mine.len() as f64),
            "daemon {i}"
        );
        let idx = i.to_string();
        assert_eq!(
            find_value(
                &m,
                "redis_vitals_shard_info",
                &[("index", &idx), ("count", "3")]
            ),
            Some(1.0)
        );
        for a in all.iter().filter(|a| !mine.contains(a)) {
            let (status, _) = d.get(&format!("/scrape?target={a}"));
            assert_ne!(
                status, 200,
                "daemon {i} answers /scrape for {a}, not its own"
            );
        }
    }
    owner
}

/// The INFO commands `node` receives for `secs`, by client address (its
/// MONITOR stream): client -> the argument lists it sent INFO with.
fn info_commands_by_client(node: &RedisServer, secs: u64) -> BTreeMap<String, BTreeSet<String>> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(node.socket_addr()).unwrap();
    c.write_all(b"MONITOR\r\n").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    let mut text = Vec::new();
    let mut buf = [0u8; 65536];
    while std::time::Instant::now() < end {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // +1700000000.123456 [0 127.0.0.1:54321] "INFO" "server" ...
    for line in String::from_utf8_lossy(&text).lines() {
        let Some((_, rest)) = line.split_once(" [") else {
            continue;
        };
        let Some((who, cmd)) = rest.split_once("] ") else {
            continue;
        };
        let client = who.split_whitespace().nth(1).unwrap_or("").to_string();
        let args: Vec<String> = cmd
            .split_whitespace()
            .map(|a| a.trim_matches('"').to_lowercase())
            .collect();
        if args.first().map(String::as_str) == Some("info") {
            out.entry(client).or_default().insert(args[1..].join(" "));
        }
    }
    out
}

/// Nodes present in both that changed daemon.
fn moved(before: &BTreeMap<String, usize>, after: &BTreeMap<String, usize>) -> Vec<String> {
    before
        .iter()
        .filter(|(a, o)| after.get(*a).is_some_and(|n| n != *o))
        .map(|(a, _)| a.clone())
        .collect()
}

fn per_daemon(owner: &BTreeMap<String, usize>) -> [usize; 3] {
    let mut n = [0; 3];
    for o in owner.values() {
        n[*o] += 1;
    }
    n
}

#[test]
fn three_replicas_split_a_cluster_and_standalone_nodes() {
    let mut cluster = RedisCluster::start(3, 1);
    let standalone: Vec<RedisServer> = (0..4).map(|_| RedisServer::start(&[])).collect();
    let seed = cluster.nodes[0].addr();
    let mut addrs = vec![seed.clone()];
    addrs.extend(standalone.iter().map(|s| s.addr()));
    let addr_flag = addrs.join(",");
    let ds: Vec<TestDaemon> = (0..3)
        .map(|i| {
            let idx = format!("redis-vitals-{i}");
            TestDaemon::start(&[
                "--redis.addr",
                &addr_flag,
                "--shard.count",
                "3",
                "--shard.index",
                &idx,
                // A node leaving a replica's share is kept for this plus
                // two polls (shard_settle): short, for a quick test.
                "--cluster.refresh-interval",
                "2s",
            ])
        })
        .collect();
    let mut all: BTreeSet<String> = cluster.nodes.iter().map(|n| n.addr()).collect();
    all.extend(standalone.iter().map(|s| s.addr()));
    assert_eq!(all.len(), 10);

    let start = settled_owners(&ds, &cluster, &all, "every node owned once at start");
    let watcher = Watcher::start(&ds);

    // The seed is polled in full by its owner only; the two other daemons
    // keep a scout connection to it for discovery, asking for three small
    // INFO sections.
    let infos = info_commands_by_client(&cluster.nodes[0], 2);
    let scout = "server replication cluster";
    let scouts = infos
        .values()
        .filter(|a| a.iter().all(|a| a == scout))
        .count();
    let full = infos
        .values()
        .filter(|a| a.iter().all(|a| a != scout))
        .count();
    println!("INFO on the seed, by client: {infos:?}");
    assert_eq!((full, scouts, infos.len()), (1, 2, 3), "{infos:?}");
    // A standalone node is dropped by the daemons that do not own it after
    // its first answer: one client polls it.
    for s in &standalone {
        let infos = info_commands_by_client(s, 1);
        assert_eq!(infos.len(), 1, "{}: INFO from {infos:?}", s.addr());
    }
    println!(
        "owners at start: {start:?}; nodes per daemon {:?}",
        per_daemon(&start)
    );

    // A graceful failover: a replica takes its master's slots; the group
    // keeps its shard identity, so nothing should move.
    let replica = cluster.replicas()[0].addr();
    let port: u16 = replica.rsplit(':').next().unwrap().parse().unwrap();
    let idx = cluster.index_of_port(port);
    cluster.nodes[idx].cli(&["CLUSTER", "FAILOVER"]);
    common::wait_until(WAIT, "the replica to become master", || {
        (cluster.nodes[idx]
            .info_field("replication", "role")
            .as_deref()
            == Some("master"))
        .then_some(())
    });
    cluster.wait_settled(WAIT);
    let after_failover = settled_owners(
        &ds,
        &cluster,
        &all,
        "every node owned once after CLUSTER FAILOVER",
    );
    let m1 = moved(&start, &after_failover);
    println!(
        "CLUSTER FAILOVER of {replica}: {} of {} nodes changed daemon {m1:?}; per daemon {:?}",
        m1.len(),
        start.len(),
        per_daemon(&after_failover)
    );
    let t1 = watcher.taken();
    println!("  nodes listed by more than one daemon at some moment during it: {t1:?}");
    assert!(m1.is_empty(), "a failover moved {m1:?}");
    assert!(t1.is_empty(), "a failover moved nodes for a moment: {t1:?}");

    // A node joins as an empty master: a unit of its own; nothing else moves.
    let new_idx = cluster.add_node();
    let new = cluster.nodes[new_idx].addr();
    all.insert(new.clone());
    let after_join = settled_owners(
        &ds,
        &cluster,
        &all,
        "every node owned once after a node joined",
    );
    let m2 = moved(&after_failover, &after_join);
    println!(
        "{new} joined as an empty master (daemon {}): {} of {} nodes changed daemon {m2:?}",
        after_join[&new],
        m2.len(),
        after_failover.len()
    );
    let t2 = watcher.taken();
    println!("  nodes listed by more than one daemon at some moment during it: {t2:?}");
    assert!(m2.is_empty(), "a node joining moved {m2:?}");
    assert!(
        t2.is_empty(),
        "a node joining moved nodes for a moment: {t2:?}"
    );

    // It becomes a replica: it joins its master's group, so at most it
    // moves (to its master's daemon); no other node does.
    let master = cluster.masters()[0].addr();
    let master_id = {
        let port: u16 = master.rsplit(':').next().unwrap().parse().unwrap();
        cluster.node_id(&cluster.nodes[cluster.index_of_port(port)])
    };
    cluster.nodes[new_idx].cli(&["CLUSTER", "REPLICATE", &master_id]);
    cluster.wait_settled(WAIT);
    let after_replicate = settled_owners(
        &ds,
        &cluster,
        &all,
        "every node owned once after the new node replicated",
    );
    let m3 = moved(&after_join, &after_replicate);
    println!(
        "{new} became a replica of {master}: {} of {} nodes changed daemon {m3:?}",
        m3.len(),
        after_join.len()
    );
    let t3 = watcher.taken();
    println!("  nodes listed by more than one daemon at some moment during it: {t3:?}");
    assert!(
        m3.iter().all(|a| *a == new),
        "only the new node may move: {m3:?}"
    );
    // A moving node is kept by its old owner until the new one has it
    // (shard_settle), so it may be listed twice for a moment; no other.
    assert!(
        t3.iter().all(|(a, _)| *a == new),
        "only the new node may move, even for a moment: {t3:?}"
    );
    assert_eq!(after_replicate[&new], after_replicate[&master]);
}
