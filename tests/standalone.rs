//! The core daemon against real redis-server processes: values match INFO,
//! replicas, the down/up cycle, hung nodes, connection reuse, readiness.

mod common;
mod daemon_harness;

use std::time::Duration;

use common::{find_all, find_value, RedisServer};
use daemon_harness::TestDaemon;

const WAIT: Duration = Duration::from_secs(10);

fn info_u64(server: &RedisServer, section: &str, field: &str) -> u64 {
    server
        .info_field(section, field)
        .unwrap_or_else(|| panic!("INFO {section} has no {field}"))
        .parse()
        .unwrap()
}

#[test]
fn standalone_values_match_info() {
    let dir = tempfile::tempdir().unwrap();
    let pwfile = dir.path().join("pw");
    std::fs::write(&pwfile, "s3cret-standalone\n").unwrap();
    let redis = RedisServer::start(&[
        "--requirepass",
        "s3cret-standalone",
        "--maxmemory",
        "64mb",
        "--maxclients",
        "123",
    ]);
    for i in 0..25 {
        redis.cli(&["SET", &format!("k{i}"), "v"]);
    }
    redis.cli(&["SET", "ttl-key", "v", "EX", "1000"]);
    redis.cli(&["GET", "k1"]);
    redis.cli(&["GET", "missing"]);
    let _ = redis.cli_raw(&["INCR", "k1"]); // an error reply: WRONGTYPE-ish ERR

    let d = TestDaemon::start(&[
        "--redis.addr",
        &redis.addr(),
        "--redis.password-file",
        pwfile.to_str().unwrap(),
    ]);
    let a = redis.addr();
    let l = [("addr", a.as_str())];
    d.wait_value(WAIT, "redis_up", &l, |v| v == 1.0);
    let m = d.metrics();
    assert_eq!(
        find_value(&m, "redis_memory_max_bytes", &l),
        Some(64.0 * 1024.0 * 1024.0)
    );
    assert_eq!(find_value(&m, "redis_config_maxclients", &l), Some(123.0));
    assert_eq!(
        find_value(&m, "redis_db_keys", &[("addr", &a), ("db", "db0")]),
        Some(26.0)
    );
    assert_eq!(
        find_value(&m, "redis_db_keys_expiring", &[("addr", &a), ("db", "db0")]),
        Some(1.0)
    );
    assert_eq!(
        find_value(&m, "redis_commands_total", &[("addr", &a), ("cmd", "set")]),
        Some(26.0)
    );
    assert_eq!(
        find_value(&m, "redis_keyspace_hits_total", &l),
        Some(info_u64(&redis, "stats", "keyspace_hits") as f64)
    );
    assert_eq!(find_value(&m, "redis_keyspace_misses_total", &l), Some(1.0));
    assert!(find_value(&m, "redis_errors_total", &[("addr", &a), ("err", "ERR")]).unwrap() >= 1.0);
    let info = find_all(&m, "redis_instance_info", &l);
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].label("role"), Some("master"));
    assert_eq!(
        info[0].label("redis_version"),
        redis.info_field("server", "redis_version").as_deref()
    );
    assert_eq!(
        info[0].label("run_id"),
        redis.info_field("server", "run_id").as_deref()
    );
    assert_eq!(info[0].label("maxmemory_policy"), Some("noeviction"));
    assert_eq!(info[0].label("engine"), Some("redis"));
    // Memory against INFO, read after our scrape: same order of magnitude and
    // both well above an empty server.
    let used = find_value(&m, "redis_memory_used_bytes", &l).unwrap();
    assert!(used > 500_000.0, "{used}");
    assert!(find_value(&m, "redis_uptime_in_seconds", &l).is_some());
    assert!(find_value(&m, "redis_cpu_user_seconds_total", &l).is_some());
    assert!(find_value(&m, "redis_vitals_last_success_age_seconds", &l).unwrap() < 5.0);
    assert_eq!(d.get("/-/ready").0, 200);
    assert_eq!(d.get("/-/healthy").0, 200);
}

#[test]
fn primary_and_replica_with_acl_user() {
    // The master takes a password, the replica an ACL user with one.
    let master = RedisServer::start(&["--requirepass", "masterpw"]);
    let mut replica = common::start_replica_of(&master, &[]);
    replica.cli(&[
        "ACL",
        "SETUSER",
        "vitals",
        "on",
        ">replicapw",
        "~*",
        "&*",
        "+@all",
    ]);
    replica.set_cli_auth(Some("vitals"), Some("replicapw"));
    // With the default user off, only the ACL user can get in.
    replica.cli(&["ACL", "SETUSER", "default", "off"]);
    let d = TestDaemon::start(&[
        "--config.file",
        &write_config(&format!(
            "[[targets]]\naddr = \"redis://:masterpw@{}\"\n\n[[targets]]\naddr = \"redis://vitals@{}\"\npassword = \"replicapw\"\n",
            master.addr(),
            replica.addr()
        )),
    ]);
    let ma = master.addr();
    let ra = replica.addr();
    d.wait_value(WAIT, "redis_up", &[("addr", &ma)], |v| v == 1.0);
    d.wait_value(WAIT, "redis_up", &[("addr", &ra)], |v| v == 1.0);
    let m = d.metrics();
    assert_eq!(
        find_value(&m, "redis_connected_slaves", &[("addr", &ma)]),
        Some(1.0)
    );
    let port = replica.port.to_string();
    let lines = find_all(
        &m,
        "redis_connected_slave_offset_bytes",
        &[("addr", &ma), ("slave_port", &port)],
    );
    assert_eq!(lines.len(), 1, "one slave line for the replica");
    assert_eq!(lines[0].label("slave_state"), Some("online"));
    assert_eq!(
        find_value(&m, "redis_master_link_up", &[("addr", &ra)]),
        Some(1.0)
    );
    assert_eq!(
        find_all(&m, "redis_instance_info", &[("addr", &ra)])[0].label("role"),
        Some("slave")
    );
    assert!(find_value(&m, "redis_slave_repl_offset", &[("addr", &ra)]).is_some());
    assert!(find_value(&m, "redis_master_link_down_since_seconds", &[("addr", &ra)]).is_none());
    // A master never shows replica-side series.
    assert!(find_value(&m, "redis_master_link_up", &[("addr", &ma)]).is_none());
}

fn write_config(text: &str) -> String {
    let f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(f.path(), text).unwrap();
    let (_, path) = f.keep().unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn down_and_up_cycle() {
    let mut redis = RedisServer::start(&[]);
    let d = TestDaemon::start(&["--redis.addr", &redis.addr()]);
    let a = redis.addr();
    let l = [("addr", a.as_str())];
    d.wait_value(WAIT, "redis_up", &l, |v| v == 1.0);
    redis.stop();
    d.wait_value(WAIT, "redis_up", &l, |v| v == 0.0);
    // No stale values presented as current while down.
    let m = d.metrics();
    assert!(find_value(&m, "redis_memory_used_bytes", &l).is_none());
    assert!(find_value(&m, "redis_instance_info", &l).is_none());
    // Every reason's series exists from the start at 0: the failure counted.
    let errors = |reason| {
        find_value(
            &m,
            "redis_vitals_poll_errors_total",
            &[("addr", &a), ("reason", reason)],
        )
        .unwrap_or(0.0)
    };
    assert!(errors("connect") + errors("io") >= 1.0);
    redis.restart();
    d.wait_value(WAIT, "redis_up", &l, |v| v == 1.0);
    let m = d.metrics();
    assert!(find_value(&m, "redis_memory_used_bytes", &l).is_some());
    assert_eq!(
        find_value(&m, "redis_vitals_connections_opened_total", &l),
        Some(2.0)
    );
}

#[test]
fn hung_node_is_down_within_timeout_and_others_stay_fresh() {
    let hung = RedisServer::start(&[]);
    let healthy = RedisServer::start(&[]);
    let d = TestDaemon::start(&[
        "--redis.addr",
        &hung.addr(),
        "--redis.addr",
        &healthy.addr(),
    ]);
    let ha = hung.addr();
    let ok = healthy.addr();
    d.wait_value(WAIT, "redis_up", &[("addr", &ha)], |v| v == 1.0);
    d.wait_value(WAIT, "redis_up", &[("addr", &ok)], |v| v == 1.0);
    hung.pause();
    let started = std::time::Instant::now();
    d.wait_value(WAIT, "redis_up", &[("addr", &ha)], |v| v == 0.0);
    // One interval to reach the next poll plus its timeout, with slack for
    // a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    // While the hung node keeps timing out, the healthy node stays fresh.
    for _ in 0..5 {
        let m = d.metrics();
        let age = find_value(
            &m,
            "redis_vitals_last_success_age_seconds",
            &[("addr", &ok)],
        )
        .unwrap();
        assert!(
            age < 1.5,
            "healthy node's snapshot is {age}s old while another node hangs"
        );
        assert_eq!(find_value(&m, "redis_up", &[("addr", &ok)]), Some(1.0));
        std::thread::sleep(Duration::from_millis(300));
    }
    let m = d.metrics();
    assert!(
        find_value(
            &m,
            "redis_vitals_poll_errors_total",
            &[("addr", &ha), ("reason", "timeout")]
        )
        .unwrap()
            >= 1.0
    );
    hung.resume();
    d.wait_value(WAIT, "redis_up", &[("addr", &ha)], |v| v == 1.0);
}

#[test]
fn steady_state_reuses_one_connection() {
    let redis = RedisServer::start(&[]);
    let d = TestDaemon::start(&["--redis.addr", &redis.addr()]);
    let a = redis.addr();
    let l = [("addr", a.as_str())];
    d.wait_value(WAIT, "redis_vitals_polls_total", &l, |v| v >= 2.0);
    let before = info_u64(&redis, "stats", "total_connections_received");
    let polls_before = find_value(&d.metrics(), "redis_vitals_polls_total", &l).unwrap();
    d.wait_value(WAIT, "redis_vitals_polls_total", &l, |v| {
        v >= polls_before + 5.0
    });
    let after = info_u64(&redis, "stats", "total_connections_received");
    // Our own INFO probes via redis-cli add exactly one connection each.
    assert_eq!(
        after - before,
        1,
        "the exporter opened connections in steady state"
    );
    assert_eq!(
        find_value(&d.metrics(), "redis_vitals_connections_opened_total", &l),
        Some(1.0)
    );
}

/// A poll asks everything in one write: Redis counts one read event per
/// poll (`total_reads_processed`), not one per command. Measured from a
/// connection of our own, which adds exactly one read per probe.
#[test]
fn a_poll_is_one_round_trip() {
    let redis = RedisServer::start(&[]);
    let d = TestDaemon::start(&["--redis.addr", &redis.addr()]);
    let a = redis.addr();
    let l = [("addr", a.as_str())];
    d.wait_value(WAIT, "redis_vitals_polls_total", &l, |v| v >= 2.0);

    let stream = std::net::TcpStream::connect(redis.socket_addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = std::io::BufReader::new(stream);
    // (read events, INFO calls, SLOWLOG calls) as Redis counts them.
    let mut probe = || {
        common::write_resp_command(&mut writer, &["INFO", "all"]).unwrap();
        let text = common::read_resp(&mut reader).unwrap().text().unwrap();
        let info = common::parse_info(&text);
        let calls = |cmd: &str| -> u64 {
            info.get(&format!("cmdstat_{cmd}")).map_or(0, |v| {
                v.split(',')
                    .find_map(|kv| kv.strip_prefix("calls="))
                    .unwrap()
                    .parse()
                    .unwrap()
            })
        };
        let reads: u64 = info["total_reads_processed"].parse().unwrap();
        // Before 7.0 subcommands are counted under their command.
        let slowlog = calls("slowlog|len") + calls("slowlog|get") + calls("slowlog");
        (reads, calls("info"), slowlog)
    };
    let (reads0, info0, slowlog0) = probe();
    let polls0 = find_value(&d.metrics(), "redis_vitals_polls_total", &l).unwrap();
    d.wait_value(WAIT, "redis_vitals_polls_total", &l, |v| v >= polls0 + 6.0);
    let (reads1, info1, slowlog1) = probe();
    // Our second probe is one read and one INFO call.
    let reads = reads1 - reads0 - 1;
    let polls = info1 - info0 - 1;
    assert!(polls >= 5, "{polls} polls between the probes");
    // Polls asked for the slow log (the default detail cadence; a poll
    // that comes early after a late one may skip it)...
    let slowlog = slowlog1 - slowlog0;
    assert!(
        slowlog >= 2 * (polls - 2),
        "{slowlog} slow-log calls for {polls} polls"
    );
    // ...in the same write as INFO. A pipelined request split across two
    // TCP segments would cost one extra read: allow one in the run.
    assert!(
        reads <= polls + 1,
        "{reads} read events for {polls} polls: the poll is not one round trip"
    );
}

/// A server that cannot answer (a script past `busy-reply-threshold`) gets
/// one error reply per failed poll, not one per command: after a failure
/// INFO goes alone.
#[test]
fn a_busy_server_gets_one_error_reply_per_poll() {
    let redis = RedisServer::start(&["--busy-reply-threshold", "100"]);
    let d = TestDaemon::start(&["--redis.addr", &redis.addr()]);
    let a = redis.addr();
    let l = [("addr", a.as_str())];
    d.wait_value(WAIT, "redis_vitals_polls_total", &l, |v| v >= 3.0);

    // Busy for 2 to 3 s, then done by itself.
    const SCRIPT: &str = "local t = redis.call('TIME') \
        while true do local n = redis.call('TIME') \
        if n[1] - t[1] > 2 then break end end return 1";
    let port = redis.port;
    let script = std::thread::spawn(move || {
        common::resp_exchange(port, None, &[&["EVAL", SCRIPT, "0"]], WAIT)
    });
    let busy = [("addr", a.as_str()), ("reason", "busy")];
    d.wait_value(WAIT, "redis_vitals_poll_errors_total", &busy, |v| v >= 4.0);
    let reply = script.join().unwrap().unwrap();
    assert_eq!(reply[0], common::Resp::Int(1), "the script did not finish");
    // Up again: every busy poll is in the exporter's count.
    d.wait_value(WAIT, "redis_up", &l, |v| v == 1.0);

    let failed = find_value(&d.metrics(), "redis_vitals_poll_errors_total", &busy).unwrap() as u64;
    let errors: u64 = redis
        .info_field("errorstats", "errorstat_BUSY")
        .and_then(|v| v.strip_prefix("count=").and_then(|n| n.parse().ok()))
        .unwrap();
    // The first failed poll had sent the slow log with INFO, the server
    // being healthy until then: two more BUSY replies, once.
    assert!(
        errors <= failed + 2,
        "{errors} BUSY replies for {failed} failed polls"
    );
}

#[test]
fn readiness_waits_for_every_node() {
    let redis = RedisServer::start(&[]);
    let d = TestDaemon::start(&["--redis.addr", &redis.addr(), "--redis.addr", "127.0.0.1:1"]);
    common::wait_until(WAIT, "ready", || (d.get("/-/ready").0 == 200).then_some(()));
    let (status, page) = d.get("/");
    assert_eq!(status, 200);
    assert!(
        page.contains(&redis.addr()) && page.contains("127.0.0.1:1"),
        "{page}"
    );
    assert!(page.contains("down"), "{page}");
    // Only GET and HEAD are served.
    let (status, _, _) = common::http_request(d.addr, "POST", "/metrics", &[]);
    assert_eq!(status, 405);
    assert_eq!(d.get("/nope").0, 404);
}

#[test]
fn detail_sections_are_carried_between_detail_polls() {
    let redis = RedisServer::start(&[]);
    let a = redis.addr();
    let d = TestDaemon::start(&["--redis.addr", &a, "--poll.detail-interval", "2s"]);
    let set = [("addr", a.as_str()), ("cmd", "set")];
    d.wait_value(WAIT, "redis_vitals_polls_total", &[("addr", &a)], |v| {
        v >= 2.0
    });
    redis.cli(&["SET", "k", "v"]);
    let started = std::time::Instant::now();
    let mut seen_cheap_polls = 0;
    // Every scrape in between still has the per-command series (carried
    // from the last detail poll), and the SET shows within one detail
    // interval plus a poll.
    let calls = common::wait_until(Duration::from_secs(5), "the SET in commandstats", || {
        let m = d.metrics();
        assert!(
            find_value(&m, "redis_commands_total", &[("addr", &a), ("cmd", "info")]).is_some(),
            "per-command series vanished between detail polls"
        );
        seen_cheap_polls += 1;
        find_value(&m, "redis_commands_total", &set)
    });
    assert_eq!(calls, 1.0);
    assert!(
        started.elapsed() < Duration::from_millis(2800),
        "took {:?}",
        started.elapsed()
    );
    assert!(seen_cheap_polls > 1);
}

#[test]
fn detail_interval_equal_to_poll_interval_reads_details_every_poll() {
    let redis = RedisServer::start(&[]);
    let a = redis.addr();
    let d = TestDaemon::start(&["--redis.addr", &a, "--poll.detail-interval", "300ms"]);
    d.wait_value(WAIT, "redis_vitals_polls_total", &[("addr", &a)], |v| {
        v >= 2.0
    });
    // Every poll must carry fresh commandstats: each new poll shows a
    // higher count of the exporter's own `info` calls. A detail read only
    // every other poll leaves the count unchanged across some polls.
    let mut last = (0.0, 0.0);
    for _ in 0..8 {
        let polls = last.0;
        let (p, info) = common::wait_until(WAIT, "a new poll", || {
            let m = d.metrics();
            let p = find_value(&m, "redis_vitals_polls_total", &[("addr", &a)])?;
            let info = find_value(&m, "redis_commands_total", &[("addr", &a), ("cmd", "info")])?;
            (p > polls).then_some((p, info))
        });
        if last.0 > 0.0 {
            assert!(
                info > last.1,
                "after poll {p} the info count stayed at {info}"
            );
        }
        last = (p, info);
    }
}

/// Circular distance between two phases within a period.
fn phase_distance(a: f64, b: f64, period: f64) -> f64 {
    let d = (a - b).rem_euclid(period);
    d.min(period - d)
}

/// The median phase (seconds within `interval`, from a common origin) of
/// each of the daemon's `want` nodes' successful polls, over `count` new
/// polls per node after its first two (the first poll is jittered on
/// purpose).
fn median_poll_phases(d: &TestDaemon, want: usize, interval: f64, count: usize) -> Vec<f64> {
    let origin = std::time::Instant::now();
    // The daemon registers its nodes just after it binds.
    let nodes = common::wait_until(WAIT, "the daemon's nodes", || {
        let nodes = d.shared.nodes();
        (nodes.len() == want).then_some(nodes)
    });
    let mut seen: Vec<Vec<f64>> = vec![Vec::new(); nodes.len()];
    let mut last: Vec<Option<std::time::Instant>> = vec![None; nodes.len()];
    common::wait_until(Duration::from_secs(30), "polls to sample", || {
        for (i, n) in nodes.iter().enumerate() {
            let st = n.status();
            if st.polls_total < 2 || seen[i].len() >= count {
                continue;
            }
            if let Some(t) = st.last_success.filter(|t| Some(*t) != last[i]) {
                last[i] = Some(t);
                if t > origin {
                    seen[i].push((t - origin).as_secs_f64() % interval);
                }
            }
        }
        if seen.iter().all(|s| s.len() >= count) {
            return Some(());
        }
        std::thread::sleep(Duration::from_millis(5));
        None
    });
    seen.into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect()
}

#[test]
fn nodes_of_a_group_are_polled_together_and_groups_spread() {
    let servers: Vec<RedisServer> = (0..4).map(|_| RedisServer::start(&[])).collect();
    let mut args = vec![
        "--poll.interval",
        "1s",
        "--poll.timeout",
        "500ms",
        "--poll.max-backoff",
        "2s",
    ];
    let addrs: Vec<String> = servers.iter().map(RedisServer::addr).collect();
    for a in &addrs {
        args.extend(["--redis.addr", a.as_str()]);
    }

    // Default group size (32): one group, one tick for all four nodes.
    let d = TestDaemon::start(&args);
    let phases = median_poll_phases(&d, 4, 1.0, 4);
    drop(d);
    for a in &phases {
        for b in &phases {
            assert!(
                phase_distance(*a, *b, 1.0) < 0.05,
                "one group should poll together: phases {phases:?}"
            );
        }
    }

    // Groups of one: four groups at 0, 1/2, 1/4 and 3/4 of the interval.
    args.extend(["--poll.group-size", "1"]);
    let d = TestDaemon::start(&args);
    let phases = median_poll_phases(&d, 4, 1.0, 4);
    for (i, a) in phases.iter().enumerate() {
        for b in &phases[i + 1..] {
            assert!(
                phase_distance(*a, *b, 1.0) > 0.15,
                "groups should spread over the interval: phases {phases:?}"
            );
        }
    }
    assert_eq!(d.shared.poll_groups(), vec![1, 1, 1, 1]);
}

/// By default (poll.detail-interval unset) per-command counters and the
/// slow log are fresh at every poll, while latency percentiles, read every
/// 30 s, are carried forward and never missing from a scrape.
#[test]
fn commands_and_slowlog_fresh_every_poll_latency_carried() {
    let redis = RedisServer::start(&["--slowlog-log-slower-than", "0"]);
    let a = redis.addr();
    let d = TestDaemon::start(&["--redis.addr", &a]);
    d.wait_value(WAIT, "redis_vitals_polls_total", &[("addr", &a)], |v| {
        v >= 2.0
    });
    let node = [("addr", a.as_str())];
    let last_id = |m: &[common::Sample]| find_value(m, "redis_slowlog_last_id", &node);
    let m = d.metrics();
    let id0 = last_id(&m).expect("redis_slowlog_last_id");
    assert!(find_value(&m, "redis_slowlog_length", &node).is_some());
    let mut last_info = 0.0;
    let mut last_polls = 0.0;
    for _ in 0..6 {
        let (p, info, m) = common::wait_until(WAIT, "a new poll", || {
            let m = d.metrics();
            let p = find_value(&m, "redis_vitals_polls_total", &node)?;
            let info = find_value(&m, "redis_commands_total", &[node[0], ("cmd", "info")])?;
            (p > last_polls).then_some((p, info, m))
        });
        if last_polls > 0.0 {
            assert!(
                info > last_info,
                "after poll {p} the info count stayed at {info}"
            );
        }
        assert!(
            !find_all(
                &m,
                "redis_latency_percentiles_seconds",
                &[node[0], ("cmd", "info")]
            )
            .is_empty(),
            "latency percentiles missing between their reads"
        );
        (last_polls, last_info) = (p, info);
    }
    // Every command is slow here (threshold 0): the exporter's own polls
    // move the newest id at every poll.
    let id1 = last_id(&d.metrics()).unwrap();
    assert!(id1 > id0, "slowlog last id stayed at {id0}");
}
