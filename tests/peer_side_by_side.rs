//! redis-vitals and the peer (Debian's redis_exporter 1.45) side by side on
//! the same real nodes under load, each scraped by a real Prometheus with the
//! documented configuration, evaluated with the public artifacts its users
//! run: Grafana dashboard 763 and the Redis rules of awesome-prometheus-alerts
//! (`../shared/compat/`, read, never copied).
//!
//! Nodes: a master with maxmemory and LRU evicting, its replica, and a
//! 3-master cluster (redis-vitals gets only one cluster node as a seed and
//! discovers the others; the peer gets all five as static `/scrape` targets,
//! as its README shows). Three Prometheus servers:
//! - A: the peer's multi-target job;
//! - B: deploy/prometheus/prometheus-multi-target.yml's node job (HTTP SD
//!   from `/sd`, `/scrape`), without the optional `addr` rule that the file
//!   says to delete when running only redis_exporter's rules, and with a
//!   1 s SD refresh instead of 30 s to fit the test's time;
//! - C: deploy/prometheus/prometheus-single-target.yml's job (one `/metrics`
//!   target, `instance` relabelled to the node).
//!
//! Asserted, in a healthy phase: every dashboard query that returns data on
//! A returns data on B and C, with the same series (labels other than job,
//! and the target labels cluster/shard/addr of ours), hence the same count
//! per node, and values within 20 %, except the documented
//! [`VALUE_EXCEPTIONS`] (the clients sum, which counts the peer's own
//! per-scrape connection, and single-step `irate()` values). In the healthy phase, with a cluster
//! master killed, and with the standalone master killed (its replica's
//! master gone): every rule's expression (as shipped; `for:` taken as 0 s
//! by evaluating the expression itself) selects the same nodes on A and B,
//! and on A and C except the documented single-target exception.
//!
//! Skipped with a note when the peer, Prometheus or the compat files are
//! missing. Bounded: about a minute and a half (one-minute rate windows).

mod common;
mod e2e_support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, resp_exchange, start_replica_of, RedisCluster, RedisServer};
use e2e_support::{repo_path, Background, Exporter, Prometheus};
use serde_yaml_ng::Value as Yaml;

const PEER_BIN: &str = "/usr/bin/prometheus-redis-exporter";
const DASHBOARD: &str = "../shared/compat/grafana-dashboard-763.json";
const RULES: &str = "../shared/compat/awesome-prometheus-alerts-redis.yml";
/// Relative tolerance for values of the same series on both sides.
const TOLERANCE: f64 = 0.20;
const DEADLINE: Duration = Duration::from_secs(30);

/// Rules whose selected nodes differ by design in single-target mode: the
/// series keep `addr` there (the page holds many nodes), and the rule
/// aggregates `without (instance, job)`, so it groups per node.
const SINGLE_TARGET_EXCEPTIONS: &[&str] = &["RedisDisconnectedSlaves"];

/// Dashboard queries whose values differ by design (data and series are
/// still compared): the peer opens a connection per scrape and counts it
/// among `connected_clients` of every node it scrapes, at scrape time.
///
/// `irate()` panels: irate divides the last two samples' difference by the
/// time between the two scrapes; the peer reads its counters at scrape
/// time, redis-vitals at its last poll (here every 500 ms against 1 s
/// scrapes), so the difference can span 0.5 to 1.5 scrape intervals and
/// one irate step reads up to ±50 % off (`rate()` panels average this out
/// and are compared). Their data and series are still compared.
const VALUE_EXCEPTIONS: &[&str] = &["sum(redis_connected_clients{", "irate("];

struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn compat(path: &str) -> Option<String> {
    std::fs::read_to_string(repo_path(path)).ok()
}

/// The 763 queries with the template variables made to match anything and
/// Grafana's intervals made concrete.
fn dashboard_queries(json: &str) -> Vec<(String, String)> {
    let d: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut out = Vec::new();
    fn walk<'a>(ps: &'a [serde_json::Value], out: &mut Vec<&'a serde_json::Value>) {
        for p in ps {
            out.push(p);
            if let Some(sub) = p["panels"].as_array() {
                walk(sub, out);
            }
        }
    }
    let mut panels = Vec::new();
    walk(d["panels"].as_array().unwrap(), &mut panels);
    for p in panels {
        for t in p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(e) = t["expr"].as_str() {
                let e = e
                    .replace("$namespace", ".*")
                    .replace("$instance", ".*")
                    .replace("$__rate_interval", "30s")
                    .replace("$__interval", "30s");
                out.push((p["title"].as_str().unwrap_or("").to_string(), e));
            }
        }
    }
    out
}

/// (alert name, expression) of every rule.
fn rules(yaml: &str) -> Vec<(String, String)> {
    let v: Yaml = serde_yaml_ng::from_str(yaml).unwrap();
    let mut out = Vec::new();
    for g in v["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            out.push((
                r["alert"].as_str().unwrap().to_string(),
                r["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// A series' identity for the comparison: its labels without job, the
/// target labels our documented configs add, and `redis://` in instance.
fn identity(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|(k, _)| !["job", "cluster", "shard", "addr"].contains(&k.as_str()))
        .map(|(k, v)| {
            (
                k.clone(),
                if k == "instance" {
                    v.trim_start_matches("redis://").to_string()
                } else {
                    v.clone()
                },
            )
        })
        .collect()
}

fn query_at(p: &Prometheus, q: &str, t: f64) -> Vec<(BTreeMap<String, String>, f64)> {
    let data = p
        .api(&format!(
            "query?query={}&time={t:.3}",
            e2e_support::url_encode(q)
        ))
        .unwrap_or_else(|e| panic!("{q}: {e}"));
    let result = data["result"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    e2e_support::vector_samples(result)
        .into_iter()
        .map(|(labels, v)| (identity(&labels), v))
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    (a - b).abs() <= TOLERANCE * a.abs().max(b.abs()) || (a - b).abs() < 1e-9
}

/// Differences between the peer's answer and ours for one query.
fn compare_series(
    what: &str,
    peer: &[(BTreeMap<String, String>, f64)],
    ours: &[(BTreeMap<String, String>, f64)],
) -> Vec<String> {
    let mut out = Vec::new();
    if !peer.is_empty() && ours.is_empty() {
        out.push(format!("{what}: no data (peer: {} series)", peer.len()));
        return out;
    }
    let per_node = |s: &[(BTreeMap<String, String>, f64)]| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for (l, _) in s {
            *m.entry(l.get("instance").cloned().unwrap_or_default())
                .or_default() += 1;
        }
        m
    };
    if per_node(peer) != per_node(ours) {
        out.push(format!(
            "{what}: series per node differ: peer {:?}, ours {:?}",
            per_node(peer),
            per_node(ours)
        ));
    }
    for (l, v) in peer {
        match ours.iter().find(|(m, _)| m == l) {
            None => out.push(format!("{what}: no series {l:?}")),
            Some((_, w))
                if !close(*v, *w) && !VALUE_EXCEPTIONS.iter().any(|e| what.contains(e)) =>
            {
                out.push(format!("{what}: {l:?} peer {v} ours {w}"))
            }
            _ => {}
        }
    }
    out
}

/// The nodes a rule's expression selects (its `instance`s; `*` for a
/// series without one, i.e. an aggregate that fires).
fn selected(p: &Prometheus, expr: &str, t: f64) -> BTreeSet<String> {
    query_at(p, expr, t)
        .into_iter()
        .map(|(l, _)| l.get("instance").cloned().unwrap_or_else(|| "*".into()))
        .collect()
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The documented multi-target node job, for Prometheus B.
fn multi_target_job(ours: &str) -> Yaml {
    let text = std::fs::read_to_string(repo_path("deploy/prometheus/prometheus-multi-target.yml"))
        .unwrap()
        .replace("localhost:9121", ours);
    let doc: Yaml = serde_yaml_ng::from_str(&text).unwrap();
    let mut job = doc["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|j| j["job_name"] == "redis-vitals-nodes")
        .expect("the node job")
        .clone();
    let m = job.as_mapping_mut().unwrap();
    m.insert("scrape_interval".into(), "1s".into());
    m.insert("scrape_timeout".into(), "1s".into());
    let sd = m
        .get_mut("http_sd_configs")
        .unwrap()
        .as_sequence_mut()
        .unwrap();
    sd[0]
        .as_mapping_mut()
        .unwrap()
        .insert("refresh_interval".into(), "1s".into());
    let relabel = m
        .get_mut("relabel_configs")
        .unwrap()
        .as_sequence_mut()
        .unwrap();
    let before = relabel.len();
    // The optional rule for the bundled rules (see the file's comments).
    relabel.retain(|r| r["target_label"] != "addr");
    assert_eq!(relabel.len() + 1, before, "the documented addr rule");
    job
}

/// The documented single-target job, for Prometheus C.
fn single_target_job(ours: &str) -> Yaml {
    let text = std::fs::read_to_string(repo_path("deploy/prometheus/prometheus-single-target.yml"))
        .unwrap()
        .replace("localhost:9121", ours);
    let doc: Yaml = serde_yaml_ng::from_str(&text).unwrap();
    let mut job = doc["scrape_configs"][0].clone();
    let m = job.as_mapping_mut().unwrap();
    m.insert("scrape_interval".into(), "1s".into());
    m.insert("scrape_timeout".into(), "1s".into());
    job
}

fn config_with(job: Yaml) -> String {
    let mut root = serde_yaml_ng::Mapping::new();
    let mut global = serde_yaml_ng::Mapping::new();
    global.insert("scrape_interval".into(), "1s".into());
    global.insert("evaluation_interval".into(), "1s".into());
    root.insert("global".into(), Yaml::Mapping(global));
    root.insert("scrape_configs".into(), Yaml::Sequence(vec![job]));
    serde_yaml_ng::to_string(&Yaml::Mapping(root)).unwrap()
}

#[test]
fn dashboard_763_and_awesome_rules_agree_with_the_peer() {
    let (Some(dash), Some(rules_yaml)) = (compat(DASHBOARD), compat(RULES)) else {
        common::skip("../shared/compat is missing");
        return;
    };
    if !std::path::Path::new(PEER_BIN).exists() {
        common::skip(&format!(
            "{PEER_BIN} is not installed (apt-get install prometheus-redis-exporter)"
        ));
        return;
    }
    let t0 = Instant::now();

    // --- Nodes under load.
    let mut master =
        RedisServer::start(&["--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru"]);
    let replica = start_replica_of(&master, &[]);
    let mut cluster = RedisCluster::start(3, 0);
    let (m_port, c_ports) = (
        master.socket_addr().port(),
        cluster
            .nodes
            .iter()
            .map(|n| n.socket_addr().port())
            .collect::<Vec<_>>(),
    );
    let value = "x".repeat(512);
    let mut i = 0u64;
    let load = Background::start("load", move || {
        i += 1;
        let mut cmds: Vec<Vec<String>> = Vec::new();
        for j in 0..40 {
            let k = format!("k{}", (i * 40 + j) % 50_000);
            cmds.push(vec![
                "SET".into(),
                k.clone(),
                value.clone(),
                "EX".into(),
                "600".into(),
            ]);
            cmds.push(vec!["GET".into(), format!("k{}", (i * 7 + j) % 60_000)]);
        }
        let refs: Vec<Vec<&str>> = cmds
            .iter()
            .map(|c| c.iter().map(String::as_str).collect())
            .collect();
        let refs: Vec<&[&str]> = refs.iter().map(Vec::as_slice).collect();
        let _ = resp_exchange(m_port, None, &refs, Duration::from_secs(2));
        for &p in &c_ports {
            let _ = resp_exchange(
                p,
                None,
                &[&["PING"], &["ECHO", "x"], &["DBSIZE"]],
                Duration::from_secs(2),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    });

    // --- The two exporters.
    let peer_addr = format!("127.0.0.1:{}", free_port());
    let peer = Peer(
        Command::new(PEER_BIN)
            .arg("-web.listen-address")
            .arg(&peer_addr)
            .env_remove("REDIS_ADDR")
            .env_remove("REDIS_PASSWORD")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the peer"),
    );
    let (m, r, seed) = (master.addr(), replica.addr(), cluster.nodes[0].addr());
    let ours = Exporter::start(&[
        "--redis.addr",
        &m,
        "--redis.addr",
        &r,
        "--redis.addr",
        &seed,
        "--poll.interval",
        "500ms",
        "--poll.timeout",
        "500ms",
        "--poll.max-backoff",
        "1s",
    ]);
    let ours_addr = ours.addr.to_string();

    // --- Three Prometheus servers.
    let mut nodes: Vec<String> = vec![m.clone(), r.clone()];
    nodes.extend(cluster.nodes.iter().map(|n| n.addr()));
    let peer_targets: Vec<Yaml> = nodes
        .iter()
        .map(|n| Yaml::from(format!("redis://{n}")))
        .collect();
    let peer_job: Yaml = serde_yaml_ng::from_str(
        &[
            "job_name: redis_exporter_targets",
            "metrics_path: /scrape",
            "scrape_interval: 1s",
            "scrape_timeout: 1s",
            "relabel_configs:",
            "  - source_labels: [__address__]",
            "    target_label: __param_target",
            "  - source_labels: [__param_target]",
            "    target_label: instance",
            "  - target_label: __address__",
            &format!("    replacement: {peer_addr}"),
        ]
        .join("\n"),
    )
    .unwrap();
    let mut peer_job = peer_job;
    let mut sc = serde_yaml_ng::Mapping::new();
    sc.insert("targets".into(), Yaml::Sequence(peer_targets));
    peer_job.as_mapping_mut().unwrap().insert(
        "static_configs".into(),
        Yaml::Sequence(vec![Yaml::Mapping(sc)]),
    );
    let prom_started = Instant::now();
    let a = Prometheus::start_with_config(&config_with(peer_job));
    let b = Prometheus::start_with_config(&config_with(multi_target_job(&ours_addr)));
    let c = Prometheus::start_with_config(&config_with(single_target_job(&ours_addr)));
    let _keep = (&peer, &ours);

    // Every node up on every server, with several samples.
    let up_nodes = |p: &Prometheus| -> BTreeSet<String> {
        query_at(p, "count_over_time(redis_up[1m]) >= 8", now())
            .into_iter()
            .filter_map(|(l, _)| l.get("instance").cloned())
            .collect()
    };
    let want: BTreeSet<String> = nodes.iter().cloned().collect();
    wait_until("five nodes with 8 samples on A, B and C", || {
        [&a, &b, &c].iter().all(|p| up_nodes(p) == want)
    });
    println!("all up after {:.1}s", t0.elapsed().as_secs_f64());
    // Full one-minute windows for the [1m] rates: a series younger than
    // its window is extrapolated from where it starts, and the two sides'
    // series start at different moments (a poll against a scrape).
    let scraping = prom_started.elapsed();
    if scraping < Duration::from_secs(62) {
        std::thread::sleep(Duration::from_secs(62) - scraping);
    }

    let rule_list = rules(&rules_yaml);
    let check_rules = |phase: &str, report: &mut Vec<String>| {
        let t = now() - 1.0;
        for (name, expr) in &rule_list {
            let pa = selected(&a, expr, t);
            let pb = selected(&b, expr, t);
            let pc = selected(&c, expr, t);
            println!("{phase} {name}: peer {pa:?} multi {pb:?} single {pc:?}");
            if pa != pb {
                report.push(format!(
                    "{phase} {name} (multi-target): peer {pa:?}, ours {pb:?}"
                ));
            }
            if pa != pc && !SINGLE_TARGET_EXCEPTIONS.contains(&name.as_str()) {
                report.push(format!(
                    "{phase} {name} (single-target): peer {pa:?}, ours {pc:?}"
                ));
            }
        }
    };
    let mut report = Vec::new();

    // --- Healthy: the dashboard, then the rules.
    let t = now() - 1.0;
    let mut with_data = 0;
    for (panel, q) in dashboard_queries(&dash) {
        let pa = query_at(&a, &q, t);
        if !pa.is_empty() {
            with_data += 1;
        }
        for (mode, p) in [("multi-target", &b), ("single-target", &c)] {
            let ours = query_at(p, &q, t);
            report.extend(compare_series(&format!("{panel} [{mode}] {q}"), &pa, &ours));
        }
    }
    assert!(
        with_data >= 15,
        "the peer answered only {with_data} dashboard queries"
    );
    check_rules("healthy", &mut report);

    // --- A cluster master killed.
    let victim = cluster.nodes[2].addr();
    cluster.nodes[2].stop();
    wait_until("the killed cluster node down on A, B and C", || {
        [&a, &b, &c].iter().all(|p| {
            query_at(p, "redis_up == 0", now())
                .iter()
                .any(|(l, _)| l.get("instance") == Some(&victim))
        })
    });
    std::thread::sleep(Duration::from_secs(2));
    check_rules("node-killed", &mut report);

    // --- The replica's master gone.
    master.stop();
    wait_until("the replica's link down on A, B and C", || {
        [&a, &b, &c].iter().all(|p| {
            query_at(p, "redis_master_link_up == 0", now())
                .iter()
                .any(|(l, _)| l.get("instance") == Some(&r))
        })
    });
    std::thread::sleep(Duration::from_secs(2));
    check_rules("master-gone", &mut report);
    drop(load);

    println!("done in {:.1}s", t0.elapsed().as_secs_f64());
    assert!(
        report.is_empty(),
        "{} differences from the peer:\n{}",
        report.len(),
        report.join("\n")
    );
}

/// The comparison fails on missing data, on a different series count per
/// node, and on values more than 20 % apart.
#[test]
fn comparison_detects_differences() {
    let s = |inst: &str, db: &str, v: f64| {
        (
            BTreeMap::from([
                ("instance".to_string(), inst.to_string()),
                ("db".to_string(), db.to_string()),
            ]),
            v,
        )
    };
    let peer = vec![s("a", "db0", 100.0), s("b", "db0", 10.0)];
    assert!(compare_series("q", &peer, &[s("a", "db0", 110.0), s("b", "db0", 9.0)]).is_empty());
    assert_eq!(compare_series("q", &peer, &[]).len(), 1);
    assert!(!compare_series("q", &peer, &[s("a", "db0", 100.0)]).is_empty());
    assert!(!compare_series("q", &peer, &[s("a", "db0", 130.0), s("b", "db0", 10.0)]).is_empty());
    assert!(close(f64::INFINITY, f64::INFINITY));
    assert!(!close(f64::INFINITY, 1.0));
    let id = identity(&BTreeMap::from([
        ("instance".to_string(), "redis://h:1".to_string()),
        ("job".to_string(), "x".to_string()),
        ("addr".to_string(), "h:1".to_string()),
    ]));
    assert_eq!(
        id,
        BTreeMap::from([("instance".to_string(), "h:1".to_string())])
    );
}
