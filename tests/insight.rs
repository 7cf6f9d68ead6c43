//! Cache insight (docs/insight.md) against real redis-server processes and
//! datasets of known composition from `redis-vitals-dataset`:
//!
//! - the generator writes what its manifest says, the same for the same
//!   seed, routed by hash slot on a cluster, and fills a node to a share of
//!   maxmemory without evicting;
//! - after one pass over 200 000 keys the analyser's per-namespace keys are
//!   exact, the TTL shares within 1 percentage point, and the memory within
//!   10 % of the sum of `MEMORY USAGE .. SAMPLES 5` over the same keys;
//! - every master of a cluster is analysed; with `insight.source replica`
//!   the replica is, the master is not;
//! - at the default 2 ms budget the Redis time the analyser causes
//!   (commandstats) stays within the budget, and polls stay on time;
//! - a `volatile-lru` node near maxmemory with 5 % of its keys under a TTL
//!   fires RedisEvictionPolicyCannotEvict in a real Prometheus with the
//!   bundled rules; with 95 % it does not;
//! - SCAN replies that never end, are huge or are malformed cost the pass,
//!   counted by reason, and nothing else.
//!
//! The tests run one at a time (a lock): each is heavy enough on a 2-core
//! machine to disturb the timing another one looks at.

mod common;
mod daemon_harness;
mod e2e_support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use common::{find_all, find_value, RedisCluster, RedisServer, Sample};
use daemon_harness::TestDaemon;
use e2e_support::{copy_rules_with_for, Exporter, Prometheus, PrometheusSetup};
use redis_vitals::signals::keyspace::{namespace_of, NamespaceRules, MIN_KEYS_PER_NAMESPACE};
use serde_json::Value;

const DATASET_BIN: &str = env!("CARGO_BIN_EXE_redis-vitals-dataset");
/// Writing 200 000 keys takes a few seconds on an idle machine; a debug
/// build on a busy 2-core CI machine, several times that.
const GENERATE_TIMEOUT: Duration = Duration::from_secs(300);
/// One pass over 200 000 keys at a 500 ms budget: a few seconds of Redis
/// time at half a second per second, with room for a slow machine.
const PASS_TIMEOUT: Duration = Duration::from_secs(180);
const WAIT: Duration = Duration::from_secs(30);
/// The largest budget allowed, for the tests that want a pass soon.
const FAST_BUDGET: &str = "500ms";
/// The commands the analyser sends, as INFO commandstats names them
/// (Redis 7: subcommands are `cmd|sub`).
const ANALYSER_COMMANDS: [&str; 4] = [
    "cmdstat_scan",
    "cmdstat_type",
    "cmdstat_pttl",
    "cmdstat_memory|usage",
];

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// The generator and its manifest
// ---------------------------------------------------------------------------

/// One namespace of a manifest.
#[derive(Debug, Clone)]
struct ManifestNs {
    pattern: String,
    kind: String,
    keys: u64,
    keys_with_ttl: u64,
    keys_per_node: BTreeMap<String, u64>,
}

impl ManifestNs {
    fn ttl_share(&self) -> f64 {
        self.keys_with_ttl as f64 / self.keys.max(1) as f64
    }
}

#[derive(Debug)]
struct Manifest {
    json: Value,
    namespaces: Vec<ManifestNs>,
}

impl Manifest {
    fn keys(&self) -> u64 {
        self.json["keys"].as_u64().expect("keys")
    }

    fn ns(&self, pattern: &str) -> &ManifestNs {
        self.namespaces
            .iter()
            .find(|n| n.pattern == pattern)
            .unwrap_or_else(|| panic!("no namespace {pattern} in the manifest"))
    }
}

/// Runs the generator against `addr` (host:port) with `--flush`.
fn generate(addr: &str, args: &[&str]) -> Manifest {
    let mut cmd = Command::new(DATASET_BIN);
    cmd.arg("--addr")
        .arg(format!("redis://{addr}"))
        .arg("--flush")
        .args(args)
        .env_remove("REDIS_PASSWORD")
        .env_remove("REDIS_USER");
    let out = common::run_with_deadline(cmd, GENERATE_TIMEOUT)
        .unwrap_or_else(|e| panic!("redis-vitals-dataset {args:?}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "redis-vitals-dataset {args:?} failed: {stderr}"
    );
    println!("{}", stderr.trim());
    let json: Value = serde_json::from_slice(&out.stdout).expect("the manifest is JSON");
    let namespaces = json["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .map(|n| ManifestNs {
            pattern: n["pattern"].as_str().unwrap().to_string(),
            kind: n["type"].as_str().unwrap().to_string(),
            keys: n["keys"].as_u64().unwrap(),
            keys_with_ttl: n["keys_with_ttl"].as_u64().unwrap(),
            keys_per_node: n["keys_per_node"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
                .collect(),
        })
        .collect();
    Manifest { json, namespaces }
}

// ---------------------------------------------------------------------------
// The truth, read back from Redis
// ---------------------------------------------------------------------------

/// What one namespace of a node holds, from SCAN, TYPE, PTTL and
/// MEMORY USAGE .. SAMPLES 5 over every key.
#[derive(Debug, Default, Clone)]
struct Truth {
    keys: u64,
    keys_with_ttl: u64,
    memory: u64,
    types: BTreeMap<String, u64>,
    /// Shortest remaining TTL seen, in ms.
    min_ttl_ms: Option<i64>,
}

fn connect(addr: &str) -> redis::Connection {
    let client = redis::Client::open(format!("redis://{addr}")).unwrap();
    let c = client
        .get_connection_with_timeout(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    c
}

/// Every key of db 0 of `addr`, each once (SCAN may repeat a key while the
/// server resizes its table).
fn all_keys(c: &mut redis::Connection) -> Vec<Vec<u8>> {
    let mut seen = HashSet::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query(c)
            .expect("SCAN");
        seen.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut keys: Vec<Vec<u8>> = seen.into_iter().collect();
    keys.sort();
    keys
}

fn keyspace_truth(addr: &str) -> BTreeMap<String, Truth> {
    let rules = NamespaceRules::default();
    let mut c = connect(addr);
    let keys = all_keys(&mut c);
    let mut out: BTreeMap<String, Truth> = BTreeMap::new();
    for chunk in keys.chunks(500) {
        let mut pipe = redis::pipe();
        for k in chunk {
            pipe.cmd("TYPE").arg(k);
            pipe.cmd("PTTL").arg(k);
            pipe.cmd("MEMORY").arg("USAGE").arg(k).arg("SAMPLES").arg(5);
        }
        let replies: Vec<redis::Value> = pipe.query(&mut c).expect("TYPE/PTTL/MEMORY USAGE");
        for (k, r) in chunk.iter().zip(replies.chunks(3)) {
            let kind = match &r[0] {
                redis::Value::SimpleString(s) => s.clone(),
                other => panic!("TYPE reply {other:?}"),
            };
            let pttl = match &r[1] {
                redis::Value::Int(i) => *i,
                other => panic!("PTTL reply {other:?}"),
            };
            let mem = match &r[2] {
                redis::Value::Int(i) => *i as u64,
                other => panic!("MEMORY USAGE reply {other:?}"),
            };
            assert!(pttl != -2, "a key vanished while the test read it");
            let t = out.entry(namespace_of(k, &rules)).or_default();
            t.keys += 1;
            t.memory += mem;
            *t.types.entry(kind).or_insert(0) += 1;
            if pttl >= 0 {
                t.keys_with_ttl += 1;
                t.min_ttl_ms = Some(t.min_ttl_ms.map_or(pttl, |m| m.min(pttl)));
            }
        }
    }
    out
}

fn dbsize(addr: &str) -> u64 {
    redis::cmd("DBSIZE").query(&mut connect(addr)).unwrap()
}

/// (calls, usec) of one INFO commandstats entry; zeros when absent.
fn cmdstat(server: &RedisServer, name: &str) -> (u64, u64) {
    let stats = server.info("commandstats");
    let Some(v) = stats.get(name) else {
        return (0, 0);
    };
    let field = |f: &str| {
        v.split(',')
            .find_map(|kv| kv.strip_prefix(f)?.strip_prefix('='))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("calls"), field("usec"))
}

/// Summed (calls, usec) of the analyser's commands.
fn analyser_cmdstats(server: &RedisServer) -> (u64, u64) {
    ANALYSER_COMMANDS
        .iter()
        .map(|n| cmdstat(server, n))
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
}

fn info_u64(server: &RedisServer, section: &str, field: &str) -> u64 {
    server
        .info_field(section, field)
        .unwrap_or_else(|| panic!("INFO {section} has no {field}"))
        .parse()
        .unwrap()
}

// ---------------------------------------------------------------------------
// Reading the analyser's series
// ---------------------------------------------------------------------------

fn ns_value(m: &[Sample], metric: &str, addr: &str, ns: &str) -> Option<f64> {
    find_value(m, metric, &[("addr", addr), ("namespace", ns)])
}

/// Waits until `addr` has finished at least one pass; returns the samples.
fn wait_pass(d: &TestDaemon, addr: &str, timeout: Duration) -> Vec<Sample> {
    common::wait_for(
        timeout,
        &format!("a complete insight pass of {addr}"),
        || {
            let m = d.metrics();
            match find_value(&m, "redis_vitals_insight_passes_total", &[("addr", addr)]) {
                Some(v) if v >= 1.0 => Ok(m),
                other => {
                    let progress = find_value(
                        &m,
                        "redis_vitals_insight_pass_progress_ratio",
                        &[("addr", addr)],
                    );
                    let failures: Vec<String> = find_all(
                        &m,
                        "redis_vitals_insight_pass_failures_total",
                        &[("addr", addr)],
                    )
                    .iter()
                    .filter(|s| s.value > 0.0)
                    .map(|s| format!("{}={}", s.label("reason").unwrap_or("?"), s.value))
                    .collect();
                    Err(format!(
                        "passes_total {other:?}, progress {progress:?}, failures {failures:?}"
                    ))
                }
            }
        },
    )
}

/// The per-namespace assertions of the issue: keys exact, TTL share within
/// 1 percentage point, memory within 10 % of the sum of MEMORY USAGE.
fn check_namespaces(
    m: &[Sample],
    addr: &str,
    manifest: &Manifest,
    truth: &BTreeMap<String, Truth>,
) {
    let mut report = Vec::new();
    for ns in &manifest.namespaces {
        let p = ns.pattern.as_str();
        let t = &truth[p];
        let keys = ns_value(m, "redis_vitals_insight_namespace_keys", addr, p)
            .unwrap_or_else(|| panic!("{addr}: no redis_vitals_insight_namespace_keys for {p}"));
        let with_ttl = ns_value(m, "redis_vitals_insight_namespace_keys_with_ttl", addr, p)
            .unwrap_or_else(|| panic!("{addr}: no keys_with_ttl for {p}"));
        let memory = ns_value(m, "redis_vitals_insight_namespace_memory_bytes", addr, p)
            .unwrap_or_else(|| panic!("{addr}: no memory_bytes for {p}"));
        report.push(format!(
            "{p}: keys {keys} (generated {}), ttl share {:.4} (generated {:.4}), memory {memory} (MEMORY USAGE sum {})",
            ns.keys,
            with_ttl / keys.max(1.0),
            ns.ttl_share(),
            t.memory
        ));
        assert_eq!(
            keys,
            ns.keys as f64,
            "{addr} {p}: keys\n{}",
            report.join("\n")
        );
        assert_eq!(
            t.keys, ns.keys,
            "{p}: the truth disagrees with the manifest"
        );
        let share = with_ttl / keys;
        assert!(
            (share - ns.ttl_share()).abs() <= 0.01,
            "{addr} {p}: TTL share {share} vs {}\n{}",
            ns.ttl_share(),
            report.join("\n")
        );
        let ratio = memory / t.memory as f64;
        assert!(
            (0.9..=1.1).contains(&ratio),
            "{addr} {p}: memory {memory} is {ratio:.3} x the MEMORY USAGE sum {}\n{}",
            t.memory,
            report.join("\n")
        );
        assert_eq!(
            find_value(
                m,
                "redis_vitals_insight_namespace_type_keys",
                &[("addr", addr), ("namespace", p), ("type", &ns.kind)]
            ),
            Some(ns.keys as f64),
            "{addr} {p}: keys of type {}",
            ns.kind
        );
    }
    println!("{}", report.join("\n"));
}

// ---------------------------------------------------------------------------
// The generator on its own
// ---------------------------------------------------------------------------

#[test]
fn dataset_is_what_its_manifest_says_and_the_same_for_the_same_seed() {
    let _g = serial();
    let a = RedisServer::start(&["--enable-debug-command", "yes"]);
    let b = RedisServer::start(&["--enable-debug-command", "yes"]);
    let m = generate(
        &a.addr(),
        &["--keys", "20000", "--seed", "7", "--concurrency", "1"],
    );
    let m2 = generate(
        &b.addr(),
        &["--keys", "20000", "--seed", "7", "--concurrency", "4"],
    );
    assert_eq!(m.keys(), 20_000);
    assert_eq!(dbsize(&a.addr()), 20_000);
    // The same manifest but for the node's address.
    let strip = |m: &Manifest| {
        let mut v = m.json["namespaces"].clone();
        for ns in v.as_array_mut().unwrap() {
            ns.as_object_mut().unwrap().remove("keys_per_node");
        }
        v
    };
    assert_eq!(strip(&m), strip(&m2));

    // At least six namespaces of different types, one with 30 % of its
    // keys without a TTL.
    let kinds: HashSet<&str> = m.namespaces.iter().map(|n| n.kind.as_str()).collect();
    assert!(m.namespaces.len() >= 6, "{:?}", m.namespaces);
    assert!(kinds.len() >= 5, "{kinds:?}");
    let pages = m.ns("cache:page:*");
    assert_eq!(pages.keys - pages.keys_with_ttl, pages.keys * 30 / 100);
    assert_eq!(m.ns("user:*:profile").kind, "hash");

    // Exactly what Redis holds, namespace by namespace.
    let truth = keyspace_truth(&a.addr());
    let patterns: BTreeSet<&String> = truth.keys().collect();
    let listed: BTreeSet<&String> = m.namespaces.iter().map(|n| &n.pattern).collect();
    assert_eq!(patterns, listed);
    for ns in &m.namespaces {
        let t = &truth[&ns.pattern];
        assert_eq!(t.keys, ns.keys, "{}", ns.pattern);
        assert_eq!(t.keys_with_ttl, ns.keys_with_ttl, "{}", ns.pattern);
        assert_eq!(t.types.len(), 1, "{}: {:?}", ns.pattern, t.types);
        assert_eq!(t.types.get(&ns.kind), Some(&ns.keys), "{}", ns.pattern);
        if let Some(ms) = t.min_ttl_ms {
            // Hours: nothing expires while a test looks at it.
            assert!(ms > 3_000_000, "{}: a TTL of {ms} ms", ns.pattern);
        }
    }

    // Same seed, other concurrency: the same keys with the same values.
    let mut ca = connect(&a.addr());
    let mut cb = connect(&b.addr());
    let keys = all_keys(&mut ca);
    assert_eq!(keys, all_keys(&mut cb));
    for chunk in keys.chunks(1000) {
        let mut cmd = redis::cmd("DEBUG");
        cmd.arg("DIGEST-VALUE");
        for k in chunk {
            cmd.arg(k);
        }
        let da: Vec<String> = cmd.query(&mut ca).unwrap();
        let db: Vec<String> = cmd.query(&mut cb).unwrap();
        assert_eq!(da, db);
    }
}

#[test]
fn dataset_on_a_cluster_follows_the_slots() {
    let _g = serial();
    let cluster = RedisCluster::start(3, 0);
    let seed = cluster.nodes[0].addr();
    let m = generate(&seed, &["--keys", "20000"]);
    assert_eq!(m.json["mode"], "cluster");
    let masters: Vec<String> = cluster.masters().iter().map(|n| n.addr()).collect();
    let mut total = 0;
    for addr in &masters {
        let truth = keyspace_truth(addr);
        for ns in &m.namespaces {
            let want = ns.keys_per_node.get(addr).copied().unwrap_or(0);
            let got = truth.get(&ns.pattern).map_or(0, |t| t.keys);
            assert_eq!(got, want, "{addr} {}", ns.pattern);
        }
        total += dbsize(addr);
    }
    assert_eq!(total, 20_000);
    // Hash-tagged profiles land on every master.
    let users = m.ns("user:*:profile");
    assert_eq!(users.keys_per_node.len(), 3, "{users:?}");
}

#[test]
fn flush_is_refused_off_loopback() {
    // Refused before any connection: 192.0.2.1 (TEST-NET-1) is never asked.
    let mut cmd = Command::new(DATASET_BIN);
    cmd.args(["--addr", "redis://192.0.2.1:6379", "--flush"]);
    let out = common::run_with_deadline(cmd, Duration::from_secs(10)).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--flush refused"), "{err}");
}

/// A `volatile-lru` node with maxmemory, filled by the generator's policy
/// profile to 92 % of maxmemory with `share` of its keys under a TTL.
fn policy_node(share: &str) -> (RedisServer, Manifest) {
    let node = RedisServer::start(&["--maxmemory", "48mb", "--maxmemory-policy", "volatile-lru"]);
    let m = generate(
        &node.addr(),
        &[
            "--profile",
            "policy",
            "--ttl-share",
            share,
            "--value-bytes",
            "1000",
            "--fill-to",
            "0.92",
            "--keys",
            "1000000",
        ],
    );
    let used = info_u64(&node, "memory", "used_memory") as f64;
    let max = info_u64(&node, "memory", "maxmemory") as f64;
    assert!(
        used / max >= 0.9,
        "filled to {:.3} of maxmemory only",
        used / max
    );
    assert!(used < max, "filled past maxmemory");
    assert_eq!(info_u64(&node, "stats", "evicted_keys"), 0);
    assert_eq!(m.json["fill"]["reached"], true, "{}", m.json["fill"]);
    (node, m)
}

#[test]
fn policy_profile_fills_a_node_without_evicting() {
    let _g = serial();
    let (node, m) = policy_node("0.05");
    let truth = keyspace_truth(&node.addr());
    let items = &truth["item:*"];
    assert_eq!(truth.len(), 1, "{truth:?}");
    assert_eq!(items.keys, m.keys());
    assert_eq!(items.keys_with_ttl, m.ns("item:*").keys_with_ttl);
    let share = items.keys_with_ttl as f64 / items.keys as f64;
    assert!((share - 0.05).abs() < 0.001, "{share}");
}

// ---------------------------------------------------------------------------
// The analyser
// ---------------------------------------------------------------------------

#[test]
fn one_pass_over_200k_keys_matches_the_dataset() {
    let _g = serial();
    let redis = RedisServer::start(&[]);
    let addr = redis.addr();
    let m = generate(&addr, &["--keys", "200000"]);
    let truth = keyspace_truth(&addr);
    let d = TestDaemon::start(&[
        "--redis.addr",
        &addr,
        "--insight.enabled",
        "--insight.budget",
        FAST_BUDGET,
        "--insight.pass-interval",
        "1h",
    ]);
    let s = wait_pass(&d, &addr, PASS_TIMEOUT);
    let l = [("addr", addr.as_str())];
    assert_eq!(
        find_value(&s, "redis_vitals_insight_enabled", &l),
        Some(1.0)
    );
    assert_eq!(
        find_value(&s, "redis_vitals_insight_keys", &l),
        Some(200_000.0)
    );
    assert_eq!(
        find_value(&s, "redis_vitals_insight_keys_with_ttl", &l),
        Some(m.json["keys_with_ttl"].as_u64().unwrap() as f64)
    );
    assert_eq!(
        find_value(&s, "redis_vitals_insight_budget_seconds", &l),
        Some(0.5)
    );
    check_namespaces(&s, &addr, &m, &truth);
    // Seven namespaces fit under the default 20: nothing is lumped as other.
    let other = ns_value(&s, "redis_vitals_insight_namespace_keys", &addr, "other");
    assert!(other.is_none_or(|v| v == 0.0), "other: {other:?}");
    // The missing-EXPIRE namespace shows as such: 30 % of cache pages
    // without a TTL, next to sessions that all have one.
    let keys = ns_value(
        &s,
        "redis_vitals_insight_namespace_keys",
        &addr,
        "cache:page:*",
    )
    .unwrap();
    let ttl = ns_value(
        &s,
        "redis_vitals_insight_namespace_keys_with_ttl",
        &addr,
        "cache:page:*",
    )
    .unwrap();
    assert!(((keys - ttl) / keys - 0.3).abs() <= 0.01, "{keys} {ttl}");
    let sessions = m.ns("session:*");
    assert_eq!(
        ns_value(
            &s,
            "redis_vitals_insight_namespace_keys_with_ttl",
            &addr,
            "session:*"
        ),
        Some(sessions.keys as f64)
    );
    // Remaining TTLs are hours, as written (within the histogram's 10 %).
    let median = find_value(
        &s,
        "redis_vitals_insight_namespace_ttl_seconds",
        &[
            ("addr", &addr),
            ("namespace", "session:*"),
            ("quantile", "0.5"),
        ],
    )
    .expect("session TTL median");
    assert!(
        (2.0 * 3600.0 * 0.9..=6.0 * 3600.0 * 1.1).contains(&median),
        "{median}"
    );
    // Five largest keys per namespace, no names by default.
    let largest = find_all(
        &s,
        "redis_vitals_insight_namespace_largest_key_bytes",
        &[("addr", &addr), ("namespace", "leaderboard:*")],
    );
    assert_eq!(largest.len(), 5);
    assert!(largest.iter().all(|x| x.label("key").is_none()));
    // Every key was examined once.
    let scanned = find_value(&s, "redis_vitals_insight_scanned_keys_total", &l).unwrap();
    assert!(scanned >= 200_000.0, "{scanned}");
}

#[test]
fn every_cluster_master_is_analysed() {
    let _g = serial();
    let cluster = RedisCluster::start(3, 0);
    let seed = cluster.nodes[0].addr();
    let m = generate(&seed, &["--keys", "30000"]);
    let d = TestDaemon::start(&[
        "--redis.addr",
        &seed,
        "--redis.cluster",
        "cache",
        "--insight.enabled",
        "--insight.budget",
        FAST_BUDGET,
        "--insight.pass-interval",
        "1h",
    ]);
    let masters: Vec<String> = cluster.masters().iter().map(|n| n.addr()).collect();
    let mut users = 0.0;
    for addr in &masters {
        let s = wait_pass(&d, addr, PASS_TIMEOUT);
        let truth = keyspace_truth(addr);
        let mut in_other = 0;
        for ns in &m.namespaces {
            let want = ns.keys_per_node.get(addr).copied().unwrap_or(0);
            let got = ns_value(&s, "redis_vitals_insight_namespace_keys", addr, &ns.pattern);
            if want < MIN_KEYS_PER_NAMESPACE {
                // Too few to be named (a key name is not a namespace):
                // summed into `other`.
                assert_eq!(got, None, "{addr} {} has {want} keys here", ns.pattern);
                in_other += want;
                continue;
            }
            assert_eq!(got.unwrap_or(0.0), want as f64, "{addr} {}", ns.pattern);
            if want > 0 {
                let mem = ns_value(
                    &s,
                    "redis_vitals_insight_namespace_memory_bytes",
                    addr,
                    &ns.pattern,
                )
                .unwrap();
                let ratio = mem / truth[&ns.pattern].memory as f64;
                assert!(
                    (0.9..=1.1).contains(&ratio),
                    "{addr} {}: memory {ratio:.3} x",
                    ns.pattern
                );
            }
        }
        assert_eq!(
            ns_value(&s, "redis_vitals_insight_namespace_keys", addr, "other").unwrap_or(0.0),
            in_other as f64,
            "{addr}: other"
        );
        // The cluster label is on the analyser's series too.
        assert_eq!(
            find_value(
                &s,
                "redis_vitals_insight_keys",
                &[("addr", addr), ("cluster", "cache")]
            ),
            Some(dbsize(addr) as f64)
        );
        users += ns_value(
            &s,
            "redis_vitals_insight_namespace_keys",
            addr,
            "user:*:profile",
        )
        .unwrap();
    }
    assert_eq!(users, m.ns("user:*:profile").keys as f64);
}

#[test]
fn replica_source_reads_the_replica_and_spares_the_master() {
    let _g = serial();
    let master = RedisServer::start(&[]);
    let replica = common::start_replica_of(&master, &[]);
    let m = generate(&master.addr(), &["--keys", "20000"]);
    common::wait_until(WAIT, "the replica to hold every key", || {
        (dbsize(&replica.addr()) == m.keys()).then_some(())
    });
    let (ma, ra) = (master.addr(), replica.addr());
    let master_scans = cmdstat(&master, "cmdstat_scan").0;
    let replica_scans = cmdstat(&replica, "cmdstat_scan").0;
    let d = TestDaemon::start(&[
        "--redis.addr",
        &ma,
        "--redis.addr",
        &ra,
        "--insight.enabled",
        "--insight.source",
        "replica",
        "--insight.budget",
        FAST_BUDGET,
        "--insight.pass-interval",
        "1h",
    ]);
    let s = wait_pass(&d, &ra, PASS_TIMEOUT);
    assert_eq!(
        find_value(&s, "redis_vitals_insight_enabled", &[("addr", &ra)]),
        Some(1.0)
    );
    let on_master = find_value(&s, "redis_vitals_insight_enabled", &[("addr", &ma)]);
    assert!(on_master.is_none_or(|v| v == 0.0), "master: {on_master:?}");
    assert!(
        find_value(&s, "redis_vitals_insight_passes_total", &[("addr", &ma)])
            .is_none_or(|v| v == 0.0)
    );
    assert_eq!(
        find_value(&s, "redis_vitals_insight_keys", &[("addr", &ra)]),
        Some(m.keys() as f64)
    );
    assert_eq!(
        ns_value(
            &s,
            "redis_vitals_insight_namespace_keys",
            &ra,
            "user:*:profile"
        ),
        Some(m.ns("user:*:profile").keys as f64)
    );
    assert!(cmdstat(&replica, "cmdstat_scan").0 > replica_scans);
    assert_eq!(
        cmdstat(&master, "cmdstat_scan").0,
        master_scans,
        "the master was scanned"
    );
    for c in ["cmdstat_type", "cmdstat_memory|usage"] {
        assert_eq!(cmdstat(&master, c).0, 0, "{c} on the master");
    }
}

/// The default budget, in commandstats microseconds per second.
const DEFAULT_BUDGET_USEC_PER_S: f64 = 2_000.0;

#[test]
fn default_budget_holds_and_polls_stay_on_time() {
    let _g = serial();
    let redis = RedisServer::start(&[]);
    let addr = redis.addr();
    generate(&addr, &["--keys", "20000"]);
    let (calls0, usec0) = analyser_cmdstats(&redis);
    assert_eq!(calls0, 0, "nothing ran the analyser's commands yet");
    let t0 = Instant::now();
    // Default budget (2 ms); the shortest pass interval, so that a pass
    // that ends inside the window does not leave the analyser idle.
    let d = TestDaemon::start(&[
        "--redis.addr",
        &addr,
        "--insight.enabled",
        "--insight.pass-interval",
        "10s",
    ]);
    let l = [("addr", addr.as_str())];
    let interval = 0.3; // the harness' --poll.interval
    d.wait_value(WAIT, "redis_up", &l, |v| v == 1.0);
    let first = d.metrics();
    let polls0 = find_value(&first, "redis_vitals_polls_total", &l).unwrap();
    let errors0: f64 = find_all(&first, "redis_vitals_poll_errors_total", &l)
        .iter()
        .map(|s| s.value)
        .sum();
    let tp = Instant::now();
    let mut worst_age: f64 = 0.0;
    // (seconds since t0, Redis time used so far in us), every 250 ms.
    let mut used_at: Vec<(f64, f64)> = Vec::new();
    while t0.elapsed() < Duration::from_secs(25) {
        let m = d.metrics();
        assert_eq!(
            find_value(&m, "redis_up", &l),
            Some(1.0),
            "the node went down"
        );
        let age = find_value(&m, "redis_vitals_last_success_age_seconds", &l).unwrap();
        worst_age = worst_age.max(age);
        let (_, usec) = analyser_cmdstats(&redis);
        used_at.push((t0.elapsed().as_secs_f64(), (usec - usec0) as f64));
        thread::sleep(Duration::from_millis(250));
    }
    let m = d.metrics();
    let wall = t0.elapsed().as_secs_f64();
    let (calls1, usec1) = analyser_cmdstats(&redis);
    let polls = find_value(&m, "redis_vitals_polls_total", &l).unwrap() - polls0;
    let errors: f64 = find_all(&m, "redis_vitals_poll_errors_total", &l)
        .iter()
        .map(|s| s.value)
        .sum::<f64>()
        - errors0;
    let poll_wall = tp.elapsed().as_secs_f64();
    let used = (usec1 - usec0) as f64;
    let charged = find_value(&m, "redis_vitals_insight_redis_seconds_total", &l).unwrap();
    let scanned = find_value(&m, "redis_vitals_insight_scanned_keys_total", &l).unwrap();
    println!(
        "{wall:.1}s: analyser commands {} calls, {used} us of Redis time ({:.0} us/s against 2000), \
         {charged:.4}s charged, {scanned} keys examined; {polls} polls in {poll_wall:.1}s, \
         worst snapshot age {worst_age:.2}s",
        calls1 - calls0,
        used / wall,
    );
    // The analyser did run, and within its budget. The pacer starts a
    // batch only once the time charged so far fits the budget, so the
    // Redis time used since t0 may exceed budget x elapsed by the batch
    // that just ran (paid for by the pause after it), not more. The largest
    // step between two readings is at least one batch: that is the slack.
    assert!(calls1 > calls0 && scanned > 0.0, "the analyser did not run");
    let one_batch = used_at
        .windows(2)
        .map(|w| w[1].1 - w[0].1)
        .fold(0.0, f64::max);
    // The budget's clock starts when the analyser started working (the
    // last reading before its first command), not when the daemon did: the
    // first pass waits up to 5 s, which must not count as credit.
    let start = used_at
        .iter()
        .take_while(|(_, u)| *u == 0.0)
        .last()
        .map_or(0.0, |(t, _)| *t);
    for &(t, u) in &used_at {
        assert!(
            u <= DEFAULT_BUDGET_USEC_PER_S * (t - start).max(0.0) + one_batch,
            "{u} us of Redis time {:.1}s after the analyser started: over the 2 ms/s \
             budget by more than one batch ({one_batch} us)",
            t - start
        );
    }
    assert!(used <= DEFAULT_BUDGET_USEC_PER_S * (wall - start) + one_batch);
    // Polls kept their schedule.
    assert_eq!(errors, 0.0, "polls failed while the analyser ran");
    assert!(
        polls >= 0.8 * poll_wall / interval,
        "{polls} polls in {poll_wall:.1}s at a {interval}s interval"
    );
    assert!(worst_age < 1.5, "a snapshot aged {worst_age}s");
}

// ---------------------------------------------------------------------------
// The eviction-policy alert, end to end
// ---------------------------------------------------------------------------

const POLICY_ALERT: &str = "RedisEvictionPolicyCannotEvict";

#[test]
fn volatile_lru_with_few_ttl_keys_fires_the_policy_alert() {
    let _g = serial();
    if std::process::Command::new(e2e_support::prometheus_bin())
        .arg("--version")
        .output()
        .is_err()
    {
        common::skip("prometheus is not installed");
        return;
    }
    let (few, few_m) = policy_node("0.05");
    let (most, most_m) = policy_node("0.95");
    let (fa, ma) = (few.addr(), most.addr());

    let exporter = Exporter::start(&[
        "--redis.addr",
        &fa,
        "--redis.addr",
        &ma,
        "--poll.interval",
        "500ms",
        "--poll.timeout",
        "500ms",
        "--insight.enabled",
        "--insight.budget",
        FAST_BUDGET,
        "--insight.pass-interval",
        "10s",
    ]);
    let rules = tempfile::tempdir().unwrap();
    let (recording, _) = copy_rules_with_for("redis-vitals.recording.yml", rules.path(), "2s");
    let (alerting, _) = copy_rules_with_for("redis-vitals.rules.yml", rules.path(), "2s");
    let shipped = std::fs::read_to_string(&alerting).unwrap();
    assert!(
        shipped.contains(&format!("alert: {POLICY_ALERT}")),
        "alerts/redis-vitals.rules.yml has no {POLICY_ALERT}"
    );
    let prom = Prometheus::start(&PrometheusSetup {
        exporters: vec![exporter.addr],
        rule_files: vec![recording, alerting],
        alertmanager: None,
        interval: "1s",
    });

    // The analyser's own figure first: the share of keys a volatile policy
    // may evict is the TTL share.
    let ratio = |addr: &str| -> Result<f64, String> {
        let q = format!(
            "redis_vitals_insight_evictable_keys_ratio{{addr=\"{addr}\",policy=\"volatile-lru\"}}"
        );
        let v = prom.query_values(&q)?;
        v.first()
            .map(|(_, x)| *x)
            .ok_or_else(|| format!("no {q} yet"))
    };
    let r_few = common::wait_for(
        Duration::from_secs(120),
        "the 5 % node's evictable ratio",
        || ratio(&fa),
    );
    let r_most = common::wait_for(
        Duration::from_secs(120),
        "the 95 % node's evictable ratio",
        || ratio(&ma),
    );
    let want_few = few_m.ns("item:*").ttl_share();
    let want_most = most_m.ns("item:*").ttl_share();
    assert!((r_few - want_few).abs() < 0.005, "{r_few} vs {want_few}");
    assert!(
        (r_most - want_most).abs() < 0.005,
        "{r_most} vs {want_most}"
    );

    let alerts_for = |addr: &str| -> Result<Vec<e2e_support::Alert>, String> {
        Ok(prom
            .alerts()?
            .into_iter()
            .filter(|a| a.name() == POLICY_ALERT && a.label("addr") == addr)
            .collect())
    };
    common::wait_for(
        Duration::from_secs(60),
        "the policy alert to fire for the 5 % node",
        || {
            let a = alerts_for(&fa)?;
            if a.iter().any(|a| a.firing()) {
                Ok(())
            } else {
                Err(format!(
                    "{:?}",
                    a.iter().map(|a| a.short()).collect::<Vec<_>>()
                ))
            }
        },
    );
    // The 95 % node has had the same time and then some evaluations more:
    // nothing pending or firing.
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let a = alerts_for(&ma).unwrap();
        assert!(
            a.is_empty(),
            "{POLICY_ALERT} for the 95 % node: {:?}",
            a.iter().map(|a| a.short()).collect::<Vec<_>>()
        );
        thread::sleep(Duration::from_millis(500));
    }
    // Nothing was evicted meanwhile: the figures are the generated ones.
    assert_eq!(info_u64(&few, "stats", "evicted_keys"), 0);
    assert_eq!(info_u64(&most, "stats", "evicted_keys"), 0);
}

// ---------------------------------------------------------------------------
// Hostile SCAN replies
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum ScanBehaviour {
    /// Real replies, but a cursor of 0 (the end) is turned into 1: the
    /// walk restarts for ever over real keys.
    EndlessCursor,
    /// A reply that declares a multi-gigabyte key and streams it.
    Huge,
    /// Not RESP at all.
    Garbage,
    /// RESP, but not a SCAN reply: the cursor is not a number, the keys
    /// are not a list of strings.
    WrongShape,
}

/// Upper bounds on what one fake connection sends and how long it lives,
/// so the test stops by itself whatever the exporter does.
const MAX_FAKE_BYTES: usize = 512 * 1024 * 1024;
const MAX_FAKE_LIFE: Duration = Duration::from_secs(150);

/// A proxy in front of a real redis-server that answers SCAN its own way:
/// everything else (INFO, TYPE, MEMORY USAGE ...) is the real server's, so
/// the node polls as healthy and only the analyser meets the hostility.
struct ScanProxy {
    addr: String,
    _upstream: RedisServer,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl ScanProxy {
    fn start(behaviour: ScanBehaviour) -> ScanProxy {
        let upstream = RedisServer::start(&[]);
        // An endless walk fails after a fixed number of SCAN calls (10 000
        // and up): with a handful of keys each call is a small batch.
        let keys = match behaviour {
            ScanBehaviour::EndlessCursor => 5,
            _ => 100,
        };
        for i in 0..keys {
            upstream.command(&["SET", &format!("k:{i}"), "v"]);
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let up = upstream.addr();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (flag, up) = (flag.clone(), up.clone());
                        thread::spawn(move || {
                            let _ = proxy(conn, &up, behaviour, &flag);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        ScanProxy {
            addr,
            _upstream: upstream,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ScanProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one RESP2 value, appending its bytes to `raw`; returns the bulk
/// strings of a top-level array (a command's arguments).
fn read_resp(
    r: &mut impl BufRead,
    raw: &mut Vec<u8>,
    depth: usize,
) -> std::io::Result<Vec<Vec<u8>>> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut line = Vec::new();
    if r.read_until(b'\n', &mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    raw.extend_from_slice(&line);
    let head = line.first().copied().ok_or_else(|| bad("empty line"))?;
    let num = || -> std::io::Result<i64> {
        std::str::from_utf8(&line[1..])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| bad("bad length"))
    };
    match head {
        b'+' | b'-' | b':' => Ok(Vec::new()),
        b'$' => {
            let n = num()?;
            if n < 0 {
                return Ok(Vec::new());
            }
            let mut buf = vec![0; n as usize + 2];
            r.read_exact(&mut buf)?;
            raw.extend_from_slice(&buf);
            buf.truncate(n as usize);
            Ok(vec![buf])
        }
        b'*' if depth < 8 => {
            let n = num()?;
            let mut args = Vec::new();
            for _ in 0..n.max(0) {
                args.extend(read_resp(r, raw, depth + 1)?);
            }
            Ok(args)
        }
        _ => Err(bad("not RESP2")),
    }
}

/// What the proxy's writer does for the next command, in order.
enum Next {
    /// Relay the upstream's next reply; `scan` when it answers a SCAN.
    Relay { scan: bool },
    /// Answer this SCAN itself.
    Hostile,
}

/// Relays a client's commands to the upstream as they come (pipelined, as
/// the analyser sends them) and the replies back in order, except SCAN,
/// which `behaviour` answers.
fn proxy(
    client: TcpStream,
    upstream: &str,
    behaviour: ScanBehaviour,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let born = Instant::now();
    let alive = || !stop.load(Ordering::Relaxed) && born.elapsed() < MAX_FAKE_LIFE;
    client.set_read_timeout(Some(Duration::from_secs(1)))?;
    // Replies go out one write each: without NODELAY, Nagle and delayed
    // ACKs hold every batch for tens of milliseconds.
    client.set_nodelay(true)?;
    let out = client.try_clone()?;
    let mut from_client = BufReader::new(client);
    let up = TcpStream::connect(upstream)?;
    up.set_read_timeout(Some(Duration::from_secs(10)))?;
    up.set_nodelay(true)?;
    let mut to_up = up.try_clone()?;
    let (tx, rx) = std::sync::mpsc::channel::<Next>();
    let writer = thread::spawn(move || -> std::io::Result<()> {
        let mut out = out;
        let mut from_up = BufReader::new(up);
        for next in rx {
            match next {
                Next::Relay { scan } => {
                    let mut reply = Vec::new();
                    read_resp(&mut from_up, &mut reply, 0)?;
                    // The end of the walk (cursor 0) becomes cursor 1: the
                    // walk goes on for ever over the real keys.
                    if scan && reply.starts_with(b"*2\r\n$1\r\n0\r\n") {
                        reply[8] = b'1';
                    }
                    out.write_all(&reply)?;
                }
                Next::Hostile => match behaviour {
                    ScanBehaviour::EndlessCursor => unreachable!("relayed"),
                    ScanBehaviour::Huge => {
                        out.write_all(b"*2\r\n$1\r\n5\r\n*1\r\n$5000000000\r\n")?;
                        let chunk = vec![b'x'; 64 * 1024];
                        let mut sent = 0;
                        let life = Instant::now();
                        while sent < MAX_FAKE_BYTES && life.elapsed() < MAX_FAKE_LIFE {
                            out.write_all(&chunk)?;
                            sent += chunk.len();
                        }
                        return Ok(());
                    }
                    ScanBehaviour::Garbage => out.write_all(b"!#%& this is not RESP\r\n")?,
                    ScanBehaviour::WrongShape => out.write_all(b"*2\r\n$3\r\nabc\r\n:7\r\n")?,
                },
            }
        }
        Ok(())
    });
    while alive() {
        let mut raw = Vec::new();
        let args = match read_resp(&mut from_client, &mut raw, 0) {
            Ok(a) => a,
            Err(e)
                if raw.is_empty()
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
            {
                continue
            }
            Err(_) => break,
        };
        let scan = args
            .first()
            .is_some_and(|a| a.eq_ignore_ascii_case(b"SCAN"));
        let next = if scan && !matches!(behaviour, ScanBehaviour::EndlessCursor) {
            Next::Hostile
        } else {
            to_up.write_all(&raw)?;
            Next::Relay { scan }
        };
        if tx.send(next).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = to_up.shutdown(std::net::Shutdown::Both);
    writer.join().unwrap_or(Ok(()))
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
fn hostile_scan_replies_cost_the_pass_and_nothing_else() {
    let _g = serial();
    let real = RedisServer::start(&[]);
    for i in 0..2000 {
        real.command(&["SET", &format!("real:{i}"), "v"]);
    }
    let fakes = [
        ScanProxy::start(ScanBehaviour::EndlessCursor),
        ScanProxy::start(ScanBehaviour::Huge),
        ScanProxy::start(ScanBehaviour::Garbage),
        ScanProxy::start(ScanBehaviour::WrongShape),
    ];
    // What each is called, and the reason its passes must fail with.
    let behaviours = [
        ("endless cursor", "protocol"),
        ("huge", "reply_too_large"),
        ("garbage", "protocol"),
        ("wrong shape", "protocol"),
    ];
    let rss_before = rss_kib();
    let ra = real.addr();
    let mut args = vec![
        "--redis.addr".to_string(),
        ra.clone(),
        "--insight.enabled".into(),
        "--insight.budget".into(),
        FAST_BUDGET.into(),
        "--insight.pass-interval".into(),
        "10s".into(),
    ];
    for f in &fakes {
        args.push("--redis.addr".into());
        args.push(f.addr.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let d = TestDaemon::start(&args);
    wait_pass(&d, &ra, PASS_TIMEOUT);
    for (f, (what, reason)) in fakes.iter().zip(behaviours) {
        // The endless walk is given up after its 10 000th SCAN or so.
        let failures = common::wait_for(
            Duration::from_secs(150),
            &format!("a pass failure of the {what} node with reason {reason}"),
            || {
                let m = d.metrics();
                let by_reason: Vec<(String, f64)> = find_all(
                    &m,
                    "redis_vitals_insight_pass_failures_total",
                    &[("addr", &f.addr)],
                )
                .iter()
                .filter(|s| s.value > 0.0)
                .map(|s| (s.label("reason").unwrap_or("").to_string(), s.value))
                .collect();
                if !by_reason.iter().any(|(r, _)| r == reason) {
                    Err(format!(
                        "failures {by_reason:?}; scanned {:?}",
                        find_value(
                            &m,
                            "redis_vitals_insight_scanned_keys_total",
                            &[("addr", &f.addr)]
                        )
                    ))
                } else {
                    Ok(by_reason)
                }
            },
        );
        println!("{what}: {failures:?}");
        let m = d.metrics();
        // No pass of a hostile node is ever published as complete.
        assert!(
            find_value(
                &m,
                "redis_vitals_insight_passes_total",
                &[("addr", &f.addr)]
            )
            .is_none_or(|v| v == 0.0),
            "{what}: a pass completed"
        );
        // The node itself still polls: only the analyser met the hostility.
        assert_eq!(
            find_value(&m, "redis_up", &[("addr", &f.addr)]),
            Some(1.0),
            "{what}"
        );
        // And the real node kept being polled.
        let age = find_value(
            &m,
            "redis_vitals_last_success_age_seconds",
            &[("addr", &ra)],
        )
        .unwrap();
        assert!(
            age < 1.5,
            "the real node's snapshot went stale ({age}s) next to the {what} node"
        );
    }
    let grown_mib = rss_kib().saturating_sub(rss_before) / 1024;
    assert!(grown_mib < 100, "resident memory grew by {grown_mib} MiB");
    let m = d.metrics();
    assert_eq!(find_value(&m, "redis_up", &[("addr", &ra)]), Some(1.0));
    assert!(find_value(&m, "redis_vitals_insight_passes_total", &[("addr", &ra)]).unwrap() >= 1.0);
}
