//! Metric families and label names per node, redis-vitals against the peer
//! (Debian's `prometheus-redis-exporter`, redis_exporter 1.45), on the same
//! real nodes: a master with maxmemory and LRU eviction, and its replica.
//!
//! For every node, both exporters are asked through `/scrape?target=` (the
//! peer's multi-target mode, our per-node answer). Every family the peer
//! exports must have a counterpart here, under the same name or under the
//! name in [`RENAMED`], with the peer's label names (plus the ones in
//! [`EXTRA_LABELS`]); the peer's families we do not export are listed in
//! [`NOT_EXPORTED`] with the reason. The lists are the documented exceptions
//! of docs/migrating-from-redis_exporter.md, and the test fails when either
//! side moves: a family the peer gains or we lose, a label that differs, or
//! an exception that no longer applies.
//!
//! Without the peer it says so and skips; under CI (`CI=true`, where
//! scripts/test.sh installs it) it fails instead.

mod common;
mod daemon_harness;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{free_port, http_get, parse_metrics, start_replica_of, wait_for, RedisServer};
use daemon_harness::TestDaemon;

const PEER_BIN: &str = "/usr/bin/prometheus-redis-exporter";
const WAIT: Duration = Duration::from_secs(15);

/// Peer family -> ours, where the name differs on purpose (units, `_total`,
/// counters typed as counters).
pub const RENAMED: &[(&str, &str)] = &[
    (
        "redis_rdb_last_bgsave_duration_sec",
        "redis_rdb_last_bgsave_duration_seconds",
    ),
    (
        "redis_replica_partial_resync_accepted",
        "redis_sync_partial_ok_total",
    ),
    (
        "redis_replica_partial_resync_denied",
        "redis_sync_partial_err_total",
    ),
    ("redis_replica_resyncs_full", "redis_sync_full_total"),
    ("redis_total_error_replies", "redis_error_replies_total"),
    // A summary in microseconds there, a gauge per percentile in seconds
    // here (label `percentile`, no _sum/_count: INFO gives no totals).
    (
        "redis_latency_percentiles_usec",
        "redis_latency_percentiles_seconds",
    ),
];

/// Peer families without a counterpart, and why.
pub const NOT_EXPORTED: &[(&str, &str)] = &[
    (
        "redis_exporter_build_info",
        "the peer's own; ours is redis_vitals_build_info",
    ),
    (
        "redis_exporter_last_scrape_connect_time_seconds",
        "the peer connects per scrape; we poll (redis_vitals_poll_duration_seconds)",
    ),
    (
        "redis_exporter_last_scrape_duration_seconds",
        "the peer's own; ours is redis_vitals_poll_duration_seconds",
    ),
    (
        "redis_exporter_last_scrape_error",
        "the peer's own; ours is redis_vitals_poll_errors_total{reason}",
    ),
    (
        "redis_exporter_scrape_duration_seconds_count",
        "the peer's own",
    ),
    (
        "redis_exporter_scrape_duration_seconds_sum",
        "the peer's own",
    ),
    (
        "redis_exporter_scrapes_total",
        "the peer's own; ours is redis_vitals_polls_total",
    ),
    ("redis_target_scrape_request_errors_total", "the peer's own"),
    (
        "redis_last_key_groups_scrape_duration_milliseconds",
        "key-group scanning is not implemented",
    ),
    (
        "redis_latency_percentiles_usec_count",
        "INFO latencystats has no totals; see redis_latency_percentiles_seconds",
    ),
    (
        "redis_latency_percentiles_usec_sum",
        "INFO latencystats has no totals; see redis_latency_percentiles_seconds",
    ),
    (
        "redis_config_io_threads",
        "CONFIG GET io-threads every scrape; redis_io_threads_active comes from INFO",
    ),
    (
        "redis_config_maxmemory",
        "CONFIG GET maxmemory; INFO's maxmemory is redis_memory_max_bytes",
    ),
    (
        "redis_last_slow_execution_duration_seconds",
        "needs the slow log's entries (SLOWLOG GET); we read its length and last id",
    ),
    (
        "redis_aof_current_rewrite_duration_sec",
        "-1 unless a rewrite runs: redis_aof_rewrite_in_progress",
    ),
    ("redis_aof_last_rewrite_duration_sec", "not yet exported"),
    (
        "redis_rdb_current_bgsave_duration_sec",
        "-1 unless a save runs: redis_rdb_bgsave_in_progress",
    ),
    (
        "redis_slave_info",
        "the same facts are labels of redis_master_link_up (master_host, master_port)",
    ),
];

/// Label names we add to a family of the peer's, and why.
pub const EXTRA_LABELS: &[(&str, &str, &str)] = &[
    (
        "redis_instance_info",
        "engine",
        "Redis, Valkey, KeyDB or Dragonfly",
    ),
    (
        "redis_instance_info",
        "engine_version",
        "the engine's own version",
    ),
    (
        "redis_latency_percentiles_seconds",
        "cmd",
        "the peer puts it in `cmd` too, but as a summary",
    ),
    (
        "redis_latency_percentiles_seconds",
        "percentile",
        "a gauge per percentile instead of a summary's `quantile`",
    ),
];

/// Label names of the peer's that ours lack, and why.
pub const MISSING_LABELS: &[(&str, &str, &str)] = &[
    (
        "redis_instance_info",
        "os",
        "host facts; not needed to tell a node",
    ),
    (
        "redis_instance_info",
        "process_id",
        "a series per restart; redis_process_id has it",
    ),
    (
        "redis_instance_info",
        "redis_build_id",
        "a series per build",
    ),
    ("redis_instance_info", "tcp_port", "the target is the node"),
    (
        "redis_latency_percentiles_seconds",
        "quantile",
        "`percentile` here (a gauge, not a summary)",
    ),
];

/// family -> label names (without the per-node ones) in one scrape.
fn families(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in parse_metrics(text) {
        let e = out.entry(s.name.clone()).or_default();
        for (k, _) in s.labels.iter() {
            e.insert(k.clone());
        }
    }
    out
}

fn ours_for(peer: &str) -> String {
    RENAMED
        .iter()
        .find(|(p, _)| *p == peer)
        .map(|(_, o)| o.to_string())
        .unwrap_or_else(|| peer.to_string())
}

/// Differences of one node, as lines; empty when the two agree up to the
/// documented exceptions.
pub fn differences(
    peer: &BTreeMap<String, BTreeSet<String>>,
    ours: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    let mut diffs = Vec::new();
    for (family, peer_labels) in peer {
        if NOT_EXPORTED.iter().any(|(f, _)| f == family) {
            if ours.contains_key(&ours_for(family)) {
                diffs.push(format!("{family}: listed as not exported, but it is"));
            }
            continue;
        }
        let name = ours_for(family);
        let Some(our_labels) = ours.get(&name) else {
            diffs.push(format!("{family}: no counterpart ({name})"));
            continue;
        };
        for l in peer_labels.difference(our_labels) {
            if !MISSING_LABELS.iter().any(|(f, n, _)| *f == name && n == l) {
                diffs.push(format!("{name}: lacks the peer's label {l}"));
            }
        }
        for l in our_labels.difference(peer_labels) {
            if !EXTRA_LABELS.iter().any(|(f, n, _)| *f == name && n == l) {
                diffs.push(format!("{name}: label {l} the peer does not have"));
            }
        }
    }
    diffs
}

struct Peer(Child, std::net::SocketAddr);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_peer() -> Option<Peer> {
    if !std::path::Path::new(PEER_BIN).exists() {
        common::skip(&format!(
            "{PEER_BIN} is not installed (apt-get install prometheus-redis-exporter)"
        ));
        return None;
    }
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new(PEER_BIN)
        .arg("-web.listen-address")
        .arg(addr.to_string())
        .env_remove("REDIS_ADDR")
        .env_remove("REDIS_PASSWORD")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the peer");
    let peer = Peer(child, addr);
    wait_for(
        WAIT,
        "the peer to serve /health",
        || match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        },
    );
    Some(peer)
}

#[test]
fn families_and_labels_match_the_peer_per_node() {
    let Some(peer) = start_peer() else { return };
    let master = RedisServer::start(&["--maxmemory", "8mb", "--maxmemory-policy", "allkeys-lru"]);
    let replica = start_replica_of(&master, &[]);
    // Traffic, so that commandstats, errorstats, latencystats and the slow
    // log have entries on both.
    master.cli(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
    for i in 0..50 {
        master.cli(&["SET", &format!("k{i}"), "v", "EX", "1000"]);
        master.cli(&["GET", &format!("k{i}")]);
    }
    master.cli(&["GET", "missing"]);
    let _ = master.try_command(&["NOSUCHCOMMAND"], Duration::from_secs(2));

    let (m, r) = (master.addr(), replica.addr());
    let d = TestDaemon::start(&["--redis.addr", &m, "--redis.addr", &r]);
    for a in [&m, &r] {
        d.wait_value(WAIT, "redis_up", &[("addr", a)], |v| v == 1.0);
    }
    let mut report = Vec::new();
    for (role, a) in [("master", &m), ("replica", &r)] {
        let (st, peer_text) = http_get(peer.1, &format!("/scrape?target=redis://{a}"));
        assert_eq!(st, 200, "peer /scrape of {a}: {peer_text}");
        let (st, our_text) = d.get(&format!("/scrape?target={a}"));
        assert_eq!(st, 200, "our /scrape of {a}: {our_text}");
        let ours = families(&our_text);
        for (f, labels) in &ours {
            assert!(
                !labels.contains("addr") && !labels.contains("cluster"),
                "{f}: /scrape answers carry no node identity label"
            );
        }
        for d in differences(&families(&peer_text), &ours) {
            report.push(format!("{role} {a}: {d}"));
        }
    }
    assert!(
        report.is_empty(),
        "differences from the peer beyond the documented exceptions:\n{}",
        report.join("\n")
    );
}

/// The comparison itself fails on a family the peer has and we do not,
/// and on a label that differs.
#[test]
fn differences_are_reported() {
    let fam = |pairs: &[(&str, &[&str])]| -> BTreeMap<String, BTreeSet<String>> {
        pairs
            .iter()
            .map(|(f, ls)| (f.to_string(), ls.iter().map(|l| l.to_string()).collect()))
            .collect()
    };
    let peer = fam(&[
        ("redis_up", &[]),
        ("redis_master_link_up", &["master_host", "master_port"]),
        ("redis_new_thing", &[]),
        ("redis_total_error_replies", &[]),
    ]);
    let ours = fam(&[
        ("redis_up", &[]),
        ("redis_master_link_up", &[]),
        ("redis_error_replies_total", &[]),
    ]);
    let d = differences(&peer, &ours);
    assert_eq!(d.len(), 3, "{d:?}");
    assert!(d.iter().any(|l| l.contains("redis_new_thing")));
    assert!(d
        .iter()
        .any(|l| l.contains("lacks the peer's label master_host")));
}
