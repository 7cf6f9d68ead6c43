//! The documented least-privilege ACL is enough for everything the exporter
//! does, on a standalone node and on cluster nodes; a command the ACL
//! denies costs only its own metrics, with a clear reason.

mod common;
mod daemon_harness;

use std::time::Duration;

use common::{find_all, find_value, RedisCluster, RedisServer};
use daemon_harness::TestDaemon;

const WAIT: Duration = Duration::from_secs(20);

/// The ACL line of docs/configuration.md, as ACL SETUSER arguments.
const LEAST_PRIVILEGE: &[&str] = &[
    "on",
    ">vitals-pw",
    "-@all",
    "+info",
    "+cluster|info",
    "+cluster|nodes",
    "+config|get",
    "+slowlog|len",
    "+slowlog|get",
];

fn add_user(server: &RedisServer, rules: &[&str]) {
    let mut args = vec!["ACL", "SETUSER", "vitals"];
    args.extend_from_slice(rules);
    server.cli(&args);
}

#[test]
fn least_privilege_user_sees_everything() {
    let standalone = RedisServer::start(&[]);
    add_user(&standalone, LEAST_PRIVILEGE);
    let cluster = RedisCluster::start(3, 1);
    for n in &cluster.nodes {
        add_user(n, LEAST_PRIVILEGE);
    }
    let errors = |n: &RedisServer| n.info_field("stats", "total_error_replies").unwrap();
    // Cluster creation itself leaves an error reply or two behind.
    let before: Vec<String> = cluster
        .nodes
        .iter()
        .chain([&standalone])
        .map(errors)
        .collect();
    let d = TestDaemon::start(&[
        "--redis.user",
        "vitals",
        "--redis.addr",
        &format!("redis://:vitals-pw@{}", standalone.addr()),
        "--redis.addr",
        &format!("redis://:vitals-pw@{}", cluster.nodes[0].addr()),
    ]);
    let all: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| n.addr())
        .chain([standalone.addr()])
        .collect();
    common::wait_until(WAIT, "every node up with the least-privilege user", || {
        let m = d.metrics();
        (all.iter()
            .all(|a| find_value(&m, "redis_up", &[("addr", a)]) == Some(1.0))
            && find_all(&m, "redis_cluster_node_info", &[]).len() == 6)
            .then_some(())
    });
    let m = d.metrics();
    assert!(find_all(&m, "redis_vitals_command_denied", &[]).is_empty());
    let poll_errors = find_all(&m, "redis_vitals_poll_errors_total", &[]);
    assert!(
        !poll_errors.is_empty() && poll_errors.iter().all(|s| s.value == 0.0),
        "no poll failed"
    );
    for a in &all {
        assert!(find_value(&m, "redis_config_maxclients", &[("addr", a)]).is_some());
    }
    // Nothing the exporter sent was refused by the servers.
    let after: Vec<String> = cluster
        .nodes
        .iter()
        .chain([&standalone])
        .map(errors)
        .collect();
    assert_eq!(
        before, after,
        "error replies counted while the exporter polled"
    );
}

#[test]
fn a_denied_command_costs_only_its_metrics() {
    let cluster = RedisCluster::start(3, 1);
    let seed = &cluster.nodes[0];
    // Everything but CLUSTER NODES.
    add_user(
        seed,
        &[
            "on",
            ">vitals-pw",
            "-@all",
            "+info",
            "+cluster|info",
            "+slowlog|len",
            "+slowlog|get",
        ],
    );
    let addr = seed.addr();
    let d = TestDaemon::start(&["--redis.addr", &format!("redis://vitals:vitals-pw@{addr}")]);
    d.wait_value(
        WAIT,
        "redis_vitals_command_denied",
        &[("addr", &addr), ("command", "cluster|nodes")],
        |v| v == 1.0,
    );
    let m = d.metrics();
    assert_eq!(find_value(&m, "redis_up", &[("addr", &addr)]), Some(1.0));
    assert_eq!(
        find_value(&m, "redis_cluster_state", &[("addr", &addr)]),
        Some(1.0)
    );
    assert!(find_value(&m, "redis_memory_used_bytes", &[("addr", &addr)]).is_some());
    // Denied once, not probed every poll: the server counted one NOPERM.
    let polls = find_value(&m, "redis_vitals_polls_total", &[("addr", &addr)]).unwrap();
    d.wait_value(WAIT, "redis_vitals_polls_total", &[("addr", &addr)], |v| {
        v >= polls + 3.0
    });
    let denied = seed
        .info_field("errorstats", "errorstat_NOPERM")
        .unwrap_or_default();
    assert_eq!(denied, "count=1", "NOPERM replies: {denied}");
}
