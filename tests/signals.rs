//! Derived signals against real servers with known ground truth: hit ratio
//! (window, RESETSTAT, restart, idle), client saturation, memory pressure
//! and evictions/OOM, replication lag in bytes and seconds (a SIGSTOPped
//! replica, an idle master seen by a polled replica and through the
//! master's view of one it does not poll, a broken link).

mod common;
mod daemon_harness;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{find_value, RedisServer};
use daemon_harness::TestDaemon;

const WAIT: Duration = Duration::from_secs(15);

/// Exactly `hits` GETs of an existing key and `misses` of absent keys, in
/// one pipeline.
fn lookups(server: &RedisServer, hits: usize, misses: usize) {
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let _: () = redis::cmd("SET")
        .arg("present")
        .arg("v")
        .query(&mut conn)
        .unwrap();
    let mut p = redis::pipe();
    for _ in 0..hits {
        p.cmd("GET").arg("present");
    }
    for i in 0..misses {
        p.cmd("GET").arg(format!("absent:{i}"));
    }
    let _: Vec<Option<String>> = p.query(&mut conn).unwrap();
}

fn polls(d: &TestDaemon, addr: &str) -> f64 {
    find_value(&d.metrics(), "redis_vitals_polls_total", &[("addr", addr)]).unwrap_or(0.0)
}

/// Waits until the node has been polled `n` more times (successfully or
/// not): everything done before this call is in a sample after it.
fn wait_polls(d: &TestDaemon, addr: &str, n: f64) {
    let start = polls(d, addr);
    d.wait_value(WAIT, "redis_vitals_polls_total", &[("addr", addr)], |v| {
        v >= start + n
    });
}

fn ratio(d: &TestDaemon, addr: &str) -> Option<f64> {
    find_value(&d.metrics(), "redis_keyspace_hit_ratio", &[("addr", addr)])
}

#[test]
fn hit_ratio_is_the_window_truth_across_resetstat_and_restart() {
    let mut redis = RedisServer::start(&[]);
    let a = redis.addr();
    let d = TestDaemon::start(&["--redis.addr", &a, "--signals.hit-ratio-window", "60s"]);
    wait_polls(&d, &a, 3.0);
    assert_eq!(
        ratio(&d, &a),
        None,
        "idle: no lookups in the window, no ratio"
    );

    lookups(&redis, 300, 100);
    wait_polls(&d, &a, 2.0);
    let r = ratio(&d, &a).unwrap();
    assert!((r - 0.75).abs() < 0.005, "300 hits / 400 lookups gave {r}");

    redis.cli(&["CONFIG", "RESETSTAT"]);
    lookups(&redis, 50, 150);
    wait_polls(&d, &a, 2.0);
    let r = ratio(&d, &a).unwrap();
    let want = 350.0 / 600.0;
    assert!(
        (r - want).abs() < 0.005,
        "after RESETSTAT the window holds 350/600, got {r}"
    );

    redis.stop();
    d.wait_value(WAIT, "redis_up", &[("addr", &a)], |v| v == 0.0);
    redis.restart();
    d.wait_value(WAIT, "redis_up", &[("addr", &a)], |v| v == 1.0);
    lookups(&redis, 100, 0);
    wait_polls(&d, &a, 2.0);
    let r = ratio(&d, &a).unwrap();
    let want = 450.0 / 700.0;
    assert!(
        (r - want).abs() < 0.005,
        "after a restart the window holds 450/700, got {r}"
    );
}

#[test]
fn hit_ratio_forgets_lookups_older_than_the_window() {
    let redis = RedisServer::start(&[]);
    let a = redis.addr();
    let d = TestDaemon::start(&["--redis.addr", &a, "--signals.hit-ratio-window", "2s"]);
    wait_polls(&d, &a, 2.0);
    lookups(&redis, 10, 90);
    wait_polls(&d, &a, 2.0);
    let r = ratio(&d, &a).unwrap();
    assert!((r - 0.1).abs() < 0.005, "{r}");
    // Idle for longer than the window: the series goes away (not 0, not NaN).
    d.wait_absent(WAIT, "redis_keyspace_hit_ratio", &[("addr", &a)]);
    lookups(&redis, 90, 10);
    wait_polls(&d, &a, 2.0);
    let r = ratio(&d, &a).unwrap();
    assert!(
        (r - 0.9).abs() < 0.005,
        "the old misses left the window: {r}"
    );
}

#[test]
fn client_saturation_counts_clients_and_replicas() {
    let master = RedisServer::start(&["--maxclients", "20"]);
    let a = master.addr();
    let d = TestDaemon::start(&["--redis.addr", &a]);
    // 7 idle clients held open, plus the exporter's own connection.
    let held: Vec<std::net::TcpStream> = (0..7)
        .map(|_| std::net::TcpStream::connect(&a).unwrap())
        .collect();
    d.wait_value(
        WAIT,
        "redis_clients_saturation_ratio",
        &[("addr", &a)],
        |v| v == 8.0 / 20.0,
    );
    let replica = common::start_replica_of(&master, &[]);
    // The replica's link counts against maxclients too.
    d.wait_value(
        WAIT,
        "redis_clients_saturation_ratio",
        &[("addr", &a)],
        |v| v == 9.0 / 20.0,
    );
    assert_eq!(
        find_value(&d.metrics(), "redis_config_maxclients", &[("addr", &a)]),
        Some(20.0)
    );
    drop(held);
    drop(replica);
}

fn fill(server: &RedisServer, keys: usize) -> usize {
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let value = "x".repeat(1024);
    let mut oom = 0;
    for chunk in 0..keys / 100 {
        let mut p = redis::pipe();
        for i in 0..100 {
            p.cmd("SET")
                .arg(format!("fill:{chunk}:{i}"))
                .arg(&value)
                .ignore();
        }
        if p.query::<()>(&mut conn).is_err() {
            oom += 1;
        }
    }
    oom
}

#[test]
fn memory_pressure_evictions_and_oom() {
    let lru = RedisServer::start(&["--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru"]);
    let noev = RedisServer::start(&["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"]);
    let (la, na) = (lru.addr(), noev.addr());
    let d = TestDaemon::start(&["--redis.addr", &la, "--redis.addr", &na]);
    let before = d.wait_value(WAIT, "redis_memory_used_ratio", &[("addr", &la)], |_| true);
    assert!(
        before < 0.5,
        "an empty node is far from maxmemory: {before}"
    );
    fill(&lru, 10_000);
    d.wait_value(WAIT, "redis_evicted_keys_total", &[("addr", &la)], |v| {
        v > 0.0
    });
    d.wait_value(WAIT, "redis_memory_used_ratio", &[("addr", &la)], |v| {
        v > 0.9
    });
    let m = d.metrics();
    let info = common::find_all(&m, "redis_instance_info", &[("addr", &la)]);
    assert_eq!(info[0].label("maxmemory_policy"), Some("allkeys-lru"));

    let failed_batches = fill(&noev, 10_000);
    assert!(
        failed_batches > 0,
        "noeviction must refuse writes when full"
    );
    d.wait_value(
        WAIT,
        "redis_errors_total",
        &[("addr", &na), ("err", "OOM")],
        |v| v > 0.0,
    );
    assert_eq!(
        find_value(&d.metrics(), "redis_evicted_keys_total", &[("addr", &na)]),
        Some(0.0)
    );
    let m = d.metrics();
    assert_eq!(
        common::find_all(&m, "redis_instance_info", &[("addr", &na)])[0].label("maxmemory_policy"),
        Some("noeviction")
    );
}

#[test]
fn maxmemory_zero_has_no_ratio() {
    let redis = RedisServer::start(&[]);
    let a = redis.addr();
    let d = TestDaemon::start(&["--redis.addr", &a]);
    wait_polls(&d, &a, 2.0);
    let m = d.metrics();
    assert_eq!(
        find_value(&m, "redis_memory_max_bytes", &[("addr", &a)]),
        Some(0.0)
    );
    assert_eq!(
        find_value(&m, "redis_memory_used_ratio", &[("addr", &a)]),
        None
    );
}

/// Writes continuously to `server` until the flag drops.
fn writer(server: &RedisServer) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let run = Arc::new(AtomicBool::new(true));
    let flag = run.clone();
    let url = server.url();
    let handle = std::thread::spawn(move || {
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_connection().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut i = 0u64;
        while flag.load(Ordering::Relaxed) && Instant::now() < deadline {
            let _: () = redis::cmd("SET")
                .arg(format!("w:{}", i % 1000))
                .arg(i)
                .query(&mut conn)
                .unwrap();
            i += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    (run, handle)
}

#[test]
fn replication_lag_follows_a_stalled_replica() {
    // The writer below moves the master's offset; the master's own PINGs
    // (every 10 s by default) would move it once more after the writer
    // stops and add an ACK period to the recovery the test times.
    let master = RedisServer::start(&["--repl-ping-replica-period", "3600"]);
    let replica = common::start_replica_of(&master, &[]);
    let (ma, ra) = (master.addr(), replica.addr());
    // A 1 s interval: the replica ACKs once per second, so the master's view
    // of a stalled replica is that coarse anyway.
    let d = TestDaemon::start(&[
        "--redis.addr",
        &ma,
        "--redis.addr",
        &ra,
        "--poll.interval",
        "1s",
        "--poll.timeout",
        "500ms",
        "--poll.max-backoff",
        "1s",
    ]);
    let l = [("addr", ra.as_str()), ("master_addr", ma.as_str())];
    let (run, handle) = writer(&master);
    // Healthy replica under steady writes: caught up.
    d.wait_value(WAIT, "redis_replication_lag_seconds", &l, |_| true);
    for _ in 0..4 {
        wait_polls(&d, &ra, 1.0);
        let lag = find_value(&d.metrics(), "redis_replication_lag_seconds", &l).unwrap();
        assert!(
            lag <= 0.25,
            "a healthy replica under steady writes lags {lag}s"
        );
    }

    replica.pause();
    let paused_at = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    let mut checked = 0;
    while paused_at.elapsed() < Duration::from_secs(7) {
        let m = d.metrics();
        let truth = paused_at.elapsed().as_secs_f64();
        let lag = find_value(&m, "redis_replication_lag_seconds", &l)
            .expect("the master's view keeps the lag current");
        eprintln!("paused {truth:.2}s -> lag {lag:.2}s");
        // Within one poll interval of the true pause length, plus the
        // replica's 1 s ACK period for the master's view.
        assert!(
            (lag - truth).abs() <= 2.0,
            "lag {lag}s for a pause of {truth}s"
        );
        assert!(find_value(&m, "redis_replication_lag_bytes", &l).unwrap() > 0.0);
        checked += 1;
        std::thread::sleep(Duration::from_millis(700));
    }
    assert!(checked >= 3);
    let late = find_value(&d.metrics(), "redis_replication_lag_seconds", &l).unwrap();
    assert!(late >= 4.0, "the lag grows with the pause: {late}");
    run.store(false, Ordering::Relaxed);
    handle.join().unwrap();
    replica.resume();
    let resumed = Instant::now();
    d.wait_value(WAIT, "redis_replication_lag_seconds", &l, |v| v == 0.0);
    d.wait_value(WAIT, "redis_replication_lag_bytes", &l, |v| v == 0.0);
    // The replica's reconnect backoff (at most poll.max-backoff, 1 s, plus
    // jitter), two poll intervals and one ACK period: 3.2 s.
    assert!(
        resumed.elapsed() < Duration::from_secs(4),
        "took {:?}",
        resumed.elapsed()
    );
}

/// A replica the exporter does not poll is read through its master's view
/// of it: the offset it last acknowledged (once a second). On an idle master
/// that offset trails each PING by up to a second, so the master's poll
/// often shows a PING the replica has not acknowledged yet. That PING is one
/// write between two master polls: the lag is the time since the poll that
/// first showed it (the same one, so 0), not the whole interval that
/// interpolating the step would give.
#[test]
fn idle_master_view_of_an_unpolled_replica_reads_zero() {
    // One PING per poll interval at most, and polls further apart than the
    // replica's ACK period, so each poll's view of the replica has every
    // PING older than the previous poll.
    let master = RedisServer::start(&["--repl-ping-replica-period", "2"]);
    let replica = common::start_replica_of(&master, &[]);
    let (ma, ra) = (master.addr(), replica.addr());
    let d = TestDaemon::start(&[
        "--redis.addr",
        &ma,
        "--poll.interval",
        "1500ms",
        "--poll.timeout",
        "1s",
        "--poll.max-backoff",
        "3s",
    ]);
    let l = [("addr", ra.as_str()), ("master_addr", ma.as_str())];
    d.wait_value(WAIT, "redis_replication_lag_seconds", &l, |_| true);
    let until = Instant::now() + Duration::from_secs(9);
    let mut polls_seen = std::collections::BTreeSet::new();
    while Instant::now() < until {
        let m = d.metrics();
        let lag = find_value(&m, "redis_replication_lag_seconds", &l).unwrap();
        assert_eq!(lag, 0.0, "idle master, caught-up replica, master's view");
        if let Some(p) = find_value(&m, "redis_vitals_polls_total", &[("addr", &ma)]) {
            polls_seen.insert(p as u64);
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(polls_seen.len() >= 5, "polls seen: {polls_seen:?}");
}

#[test]
fn idle_master_reports_zero_and_a_broken_link_removes_lag() {
    // Ping the replica every second so the idle master's offset moves
    // between polls (the case a naive interpolation gets wrong).
    let mut master = RedisServer::start(&["--repl-ping-replica-period", "1"]);
    let replica = common::start_replica_of(&master, &[]);
    let (ma, ra) = (master.addr(), replica.addr());
    let d = TestDaemon::start(&["--redis.addr", &ma, "--redis.addr", &ra]);
    let l = [("addr", ra.as_str()), ("master_addr", ma.as_str())];
    d.wait_value(WAIT, "redis_replication_lag_seconds", &l, |_| true);
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let lag = find_value(&d.metrics(), "redis_replication_lag_seconds", &l).unwrap();
        assert_eq!(lag, 0.0, "idle master, caught-up replica");
        std::thread::sleep(Duration::from_millis(150));
    }
    master.stop();
    d.wait_value(WAIT, "redis_master_link_up", &[("addr", &ra)], |v| v == 0.0);
    d.wait_value(
        WAIT,
        "redis_master_link_down_since_seconds",
        &[("addr", &ra)],
        |v| v >= 0.0,
    );
    d.wait_absent(WAIT, "redis_replication_lag_seconds", &[("addr", &ra)]);
}
