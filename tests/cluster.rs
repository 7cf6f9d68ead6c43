//! Redis Cluster against a real 3-master/3-replica cluster: discovery from
//! one seed, CLUSTER INFO values, topology, failovers, MEET and FORGET, a
//! dead seed, and the multi-target endpoints.

mod common;
mod daemon_harness;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{find_all, find_value, parse_metrics, RedisCluster, Sample};
use daemon_harness::TestDaemon;

/// Generous: failovers take ~2-3 s with a 1 s node timeout, and CI machines
/// are slow.
const WAIT: Duration = Duration::from_secs(20);

fn roles(samples: &[Sample]) -> BTreeMap<String, String> {
    find_all(samples, "redis_cluster_node_info", &[])
        .iter()
        .map(|s| {
            (
                s.label("addr").unwrap().to_string(),
                s.label("role").unwrap().to_string(),
            )
        })
        .collect()
}

fn info_role(samples: &[Sample], addr: &str) -> Option<String> {
    find_all(samples, "redis_instance_info", &[("addr", addr)])
        .first()
        .and_then(|s| s.label("role"))
        .map(str::to_string)
}

#[test]
fn discovers_every_node_from_one_seed_and_follows_membership() {
    let mut cluster = RedisCluster::start(3, 1);
    let seed = cluster.nodes[0].addr();
    let d = TestDaemon::start(&["--redis.addr", &seed, "--redis.cluster", "cache"]);
    let all: Vec<String> = cluster.nodes.iter().map(|n| n.addr()).collect();
    common::wait_until(WAIT, "all 6 nodes up with topology", || {
        let m = d.metrics();
        let ok = all
            .iter()
            .all(|a| find_value(&m, "redis_up", &[("addr", a)]) == Some(1.0))
            && find_all(&m, "redis_cluster_node_info", &[]).len() == 6
            // A node's link is seen from the other nodes' views only, so the
            // seed's own view alone (the first pass) does not give its link.
            && all.iter().all(|a| {
                find_value(&m, "redis_cluster_node_link_up", &[("addr", a)]).is_some()
            });
        ok.then_some(())
    });
    let m = d.metrics();
    for a in &all {
        let l = [("addr", a.as_str()), ("cluster", "cache")];
        assert_eq!(
            find_value(&m, "redis_up", &l),
            Some(1.0),
            "{a} carries the cluster label"
        );
        assert_eq!(find_value(&m, "redis_cluster_state", &l), Some(1.0));
        assert_eq!(
            find_value(&m, "redis_cluster_slots_assigned", &l),
            Some(16384.0)
        );
        assert_eq!(find_value(&m, "redis_cluster_slots_ok", &l), Some(16384.0));
        assert_eq!(find_value(&m, "redis_cluster_known_nodes", &l), Some(6.0));
        assert_eq!(find_value(&m, "redis_cluster_size", &l), Some(3.0));
        assert_eq!(find_value(&m, "redis_cluster_node_fail", &l), Some(0.0));
        assert_eq!(find_value(&m, "redis_cluster_node_link_up", &l), Some(1.0));
        assert!(
            find_value(
                &m,
                "redis_cluster_messages_sent_total",
                &[("addr", a), ("type", "ping")]
            )
            .unwrap()
                > 0.0
        );
    }
    // Three shards of one master and one replica each; masters own all slots.
    let info = find_all(&m, "redis_cluster_node_info", &[]);
    let mut shards: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in &info {
        shards
            .entry(s.label("shard").unwrap().into())
            .or_default()
            .push(s.label("role").unwrap().into());
    }
    assert_eq!(shards.len(), 3, "{shards:?}");
    for (shard, mut r) in shards {
        r.sort();
        assert_eq!(r, vec!["master", "replica"], "shard {shard}");
    }
    let slots: f64 = find_all(&m, "redis_cluster_node_slots", &[])
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(slots, 16384.0);
    // The default trust model (the seed's networks: all of loopback here)
    // refused nothing.
    for reason in ["not_allowed", "link_local", "cap"] {
        assert_eq!(
            find_value(
                &m,
                "redis_vitals_discovery_refused_total",
                &[("cluster", "cache"), ("reason", reason)]
            ),
            Some(0.0),
            "{reason}"
        );
    }
    for s in info.iter().filter(|s| s.label("role") == Some("replica")) {
        let master = s.label("master_addr").unwrap();
        assert_eq!(roles(&m).get(master).map(String::as_str), Some("master"));
        assert_eq!(
            info_role(&m, s.label("addr").unwrap()).as_deref(),
            Some("slave")
        );
    }

    // /sd lists the same nodes with role and shard as __meta_ labels;
    // /scrape answers the node's series without addr/cluster labels (the
    // target names the node, as with the peer).
    let (status, sd) = d.get("/sd");
    assert_eq!(status, 200);
    let sd: serde_json::Value = serde_json::from_str(&sd).unwrap();
    let groups = sd.as_array().unwrap();
    assert_eq!(groups.len(), 6);
    for g in groups {
        let addr = g["targets"][0].as_str().unwrap();
        let labels = g["labels"].as_object().unwrap();
        assert!(
            labels.keys().all(|k| k.starts_with("__meta_redis_vitals_")),
            "/sd labels must be meta labels: {labels:?}"
        );
        assert_eq!(labels["__meta_redis_vitals_cluster"], "cache");
        assert_eq!(
            labels["__meta_redis_vitals_source"],
            if addr == seed {
                "configured"
            } else {
                "discovered"
            }
        );
        let want_role = roles(&m)[addr].clone();
        assert_eq!(
            labels["__meta_redis_vitals_role"].as_str().unwrap(),
            want_role
        );
        let shard = labels["__meta_redis_vitals_shard"].as_str();
        assert!(shard.is_some());
        let (st, body) = d.get(&format!("/scrape?target={addr}"));
        assert_eq!(st, 200);
        let one = parse_metrics(&body);
        // No node identity label: the target is the node.
        assert!(
            one.iter()
                .all(|s| s.label("addr").is_none() && s.label("cluster").is_none()),
            "/scrape carries addr or cluster labels"
        );
        // Only this node's series: one redis_up, its own uptime, and its
        // own line of the cluster topology.
        assert_eq!(find_all(&one, "redis_up", &[]).len(), 1);
        assert_eq!(find_all(&one, "redis_instance_info", &[]).len(), 1);
        assert_eq!(find_all(&one, "redis_cluster_node_info", &[]).len(), 1);
        assert_eq!(
            find_all(&one, "redis_instance_info", &[])[0].label("run_id"),
            find_all(&m, "redis_instance_info", &[("addr", addr)])[0].label("run_id")
        );
        assert!(find_value(&one, "redis_vitals_build_info", &[]).is_some());
        assert_eq!(
            find_value(&one, "redis_cluster_slots_ok", &[]),
            Some(16384.0)
        );
        assert_eq!(
            find_all(&one, "redis_cluster_node_info", &[])[0].label("shard"),
            shard
        );
    }
    let (st, body) = d.get("/scrape?target=127.0.0.1:1");
    assert_eq!(st, 404, "{body}");

    // A 7th node joins with CLUSTER MEET and is polled; FORGET removes it.
    let idx = cluster.add_node();
    let new = cluster.nodes[idx].addr();
    d.wait_value(
        WAIT,
        "redis_up",
        &[("addr", &new), ("cluster", "cache")],
        |v| v == 1.0,
    );
    d.wait_value(
        WAIT,
        "redis_cluster_node_info",
        &[("addr", &new), ("role", "master")],
        |v| v == 1.0,
    );
    cluster.forget_node(idx);
    d.wait_absent(WAIT, "redis_up", &[("addr", &new)]);
    d.wait_absent(WAIT, "redis_cluster_node_info", &[("addr", &new)]);
    assert!(!d.get("/sd").1.contains(&new));
}

#[test]
fn roles_follow_manual_and_forced_failovers() {
    let mut cluster = RedisCluster::start(3, 1);
    let d = TestDaemon::start(&["--redis.addr", &cluster.nodes[0].addr()]);
    common::wait_until(WAIT, "6 nodes in the topology", || {
        (find_all(&d.metrics(), "redis_cluster_node_info", &[]).len() == 6).then_some(())
    });

    // Manual failover: a replica takes over from its master.
    let replica = cluster.replicas()[0].addr();
    let old_master = {
        let m = d.metrics();
        find_all(&m, "redis_cluster_node_info", &[("addr", &replica)])[0]
            .label("master_addr")
            .unwrap()
            .to_string()
    };
    let idx = cluster.index_of_port(replica.rsplit(':').next().unwrap().parse().unwrap());
    cluster.nodes[idx].cli(&["CLUSTER", "FAILOVER"]);
    common::wait_until(WAIT, "roles to swap after CLUSTER FAILOVER", || {
        let m = d.metrics();
        let r = roles(&m);
        (r.get(&replica).map(String::as_str) == Some("master")
            && r.get(&old_master).map(String::as_str) == Some("replica")
            && info_role(&m, &replica).as_deref() == Some("master")
            && info_role(&m, &old_master).as_deref() == Some("slave"))
        .then_some(())
    });
    // The shard label survived the failover.
    let m = d.metrics();
    let shard_new = find_all(&m, "redis_cluster_node_info", &[("addr", &replica)])[0]
        .label("shard")
        .map(str::to_string);
    let shard_old = find_all(&m, "redis_cluster_node_info", &[("addr", &old_master)])[0]
        .label("shard")
        .map(str::to_string);
    assert_eq!(shard_new, shard_old);

    // Forced failover: kill a master; its replica is promoted, the dead node
    // is reported down and flagged fail by its peers.
    let victim_addr = cluster.masters()[0].addr();
    let victim_port: u16 = victim_addr.rsplit(':').next().unwrap().parse().unwrap();
    let vidx = cluster.index_of_port(victim_port);
    let heir = {
        let m = d.metrics();
        find_all(
            &m,
            "redis_cluster_node_info",
            &[("master_addr", &victim_addr)],
        )[0]
        .label("addr")
        .unwrap()
        .to_string()
    };
    cluster.nodes[vidx].stop();
    common::wait_until(WAIT, "the killed master's replica to be promoted", || {
        let m = d.metrics();
        (find_value(&m, "redis_up", &[("addr", &victim_addr)]) == Some(0.0)
            && find_value(&m, "redis_cluster_node_fail", &[("addr", &victim_addr)]) == Some(1.0)
            && roles(&m).get(&heir).map(String::as_str) == Some("master")
            && find_value(&m, "redis_cluster_state", &[("addr", &heir)]) == Some(1.0))
        .then_some(())
    });
    // The dead node stays listed (reported down), not dropped.
    assert!(d.get("/sd").1.contains(&victim_addr));
}

#[test]
fn a_dead_first_seed_does_not_blind_discovery() {
    let mut cluster = RedisCluster::start(3, 1);
    let dead = cluster.nodes[0].addr();
    let live = cluster.nodes[1].addr();
    cluster.nodes[0].stop();
    cluster.wait_settled(WAIT);
    let d = TestDaemon::start(&["--redis.addr", &dead, "--redis.addr", &live]);
    let others: Vec<String> = cluster.nodes[1..].iter().map(|n| n.addr()).collect();
    common::wait_until(
        WAIT,
        "the 5 live nodes found through the second seed",
        || {
            let m = d.metrics();
            others
                .iter()
                .all(|a| find_value(&m, "redis_up", &[("addr", a)]) == Some(1.0))
                .then_some(())
        },
    );
    let m = d.metrics();
    assert_eq!(find_value(&m, "redis_up", &[("addr", &dead)]), Some(0.0));
    // Unnamed: the cluster is named after its first configured seed, on
    // every node, the dead seed included.
    for a in others.iter().chain(std::iter::once(&dead)) {
        assert!(
            find_value(&m, "redis_up", &[("addr", a), ("cluster", &dead)]).is_some(),
            "{a}"
        );
    }
}

/// With `cluster.allowed-networks` naming the nodes' network, the whole
/// cluster is still discovered and nothing is refused.
#[test]
fn allowed_networks_that_cover_the_cluster_discover_it_all() {
    let cluster = RedisCluster::start(3, 1);
    let d = TestDaemon::start(&[
        "--redis.addr",
        &cluster.nodes[0].addr(),
        "--redis.cluster",
        "c",
        "--cluster.allowed-networks",
        "127.0.0.1/32",
    ]);
    let all: Vec<String> = cluster.nodes.iter().map(|n| n.addr()).collect();
    common::wait_until(WAIT, "all 6 nodes up", || {
        let m = d.metrics();
        all.iter()
            .all(|a| find_value(&m, "redis_up", &[("addr", a)]) == Some(1.0))
            .then_some(())
    });
    let m = d.metrics();
    assert_eq!(find_all(&m, "redis_cluster_node_info", &[]).len(), 6);
    for reason in ["not_allowed", "link_local", "cap"] {
        assert_eq!(
            find_value(
                &m,
                "redis_vitals_discovery_refused_total",
                &[("cluster", "c"), ("reason", reason)]
            ),
            Some(0.0),
            "{reason}"
        );
    }
}
