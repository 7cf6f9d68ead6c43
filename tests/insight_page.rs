//! The `/insight` page in a real browser (headless Chromium, see
//! tests/common/chromium.rs): it renders, shows what it should, logs no
//! console message, fetches nothing, and is protected like every page.
//! Screenshots go to `target/test-artifacts/` for a human look.
//!
//! Without `chromium` the browser tests say they skip (and fail under
//! CI=true); scripts/test.sh installs it.

mod common;
mod daemon_harness;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::chromium;
use daemon_harness::TestDaemon;
use redis_vitals::expose::insight::{ClusterView, InsightView, NodeView, ShardView};
use redis_vitals::signals::keyspace::{KeyType, KeyspaceReport, NamespaceStats, PolicyVerdict};

/// Deadline for the analyser's first complete pass of a few hundred keys:
/// at a 200ms budget it takes well under a second; the poller must have
/// found the node first.
const FIRST_PASS_TIMEOUT: Duration = Duration::from_secs(60);

fn have_chromium() -> bool {
    if chromium::binary().is_some() {
        return true;
    }
    common::skip("chromium is not installed (scripts/test.sh installs the Debian package)");
    false
}

/// `target/test-artifacts/NAME`, next to the test binary's `target/`
/// (so `CARGO_TARGET_DIR` is honoured).
fn artifact(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/insight_page-HASH
    let target = exe
        .ancestors()
        .nth(3)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir.join(name)
}

fn assert_clean(what: &str, page: &chromium::Loaded) {
    let problems = page.problems();
    assert!(
        problems.is_empty(),
        "{what}: the browser reported {problems:#?}\n--- chromium stderr ---\n{}",
        page.stderr
    );
}

#[test]
fn the_detector_sees_console_errors_csp_violations_and_requests() {
    if !have_chromium() {
        return;
    }
    // Scripts allowed (so that they can fail), a stylesheet refused by the
    // policy, and an image from a port nothing listens on.
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("broken.html");
    std::fs::write(
        &page,
        "<!doctype html><html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'unsafe-inline'; img-src http://127.0.0.1:1\">\
         <title>broken</title><link rel=\"stylesheet\" href=\"http://127.0.0.1:1/refused.css\"></head>\
         <body><h1>broken on purpose</h1>\
         <script>console.error('deliberate console error'); notDefinedAnywhere();</script>\
         <img src=\"http://127.0.0.1:1/unreachable.png\"></body></html>",
    )
    .unwrap();
    let got = chromium::load(&format!("file://{}", page.display()), None).unwrap();
    assert!(got.dom.contains("broken on purpose"), "{}", got.dom);
    let has = |needle: &str| got.problems().iter().any(|p| p.contains(needle));
    assert!(has("deliberate console error"), "{:#?}", got.problems());
    assert!(has("Uncaught ReferenceError"), "{:#?}", got.problems());
    assert!(
        has("refused.css") && has("Content Security Policy"),
        "{:#?}",
        got.problems()
    );
    assert!(
        has("request: http://127.0.0.1:1/unreachable.png"),
        "{:#?}",
        got.problems()
    );
}

fn namespace(pattern: &str, keys: u64, memory: u64, ttl: f64, names: bool) -> NamespaceStats {
    let with_ttl = (keys as f64 * ttl) as u64;
    NamespaceStats {
        pattern: pattern.to_string(),
        keys,
        keys_with_ttl: with_ttl,
        memory_bytes: memory,
        types: vec![
            (KeyType::Hash, keys / 2),
            (KeyType::String, keys - keys / 2 - keys / 10),
            (KeyType::Zset, keys / 10),
        ],
        ttl_quantiles: if with_ttl > 0 {
            vec![(0.1, 42.0), (0.5, 1800.0), (0.9, 3.0 * 86_400.0)]
        } else {
            vec![]
        },
        largest: (1..=5)
            .map(|i| {
                let name = names.then(|| format!("{pattern}-key-{i}\"<b>'"));
                (memory / (10 * i), name)
            })
            .collect(),
    }
}

fn report(namespaces: Vec<NamespaceStats>, ended_unix: f64) -> Arc<KeyspaceReport> {
    Arc::new(KeyspaceReport {
        keys: namespaces.iter().map(|n| n.keys).sum(),
        keys_with_ttl: namespaces.iter().map(|n| n.keys_with_ttl).sum(),
        memory_bytes: namespaces.iter().map(|n| n.memory_bytes).sum(),
        namespaces,
        ended_unix,
        duration_seconds: 95.0,
    })
}

struct N {
    addr: &'static str,
    role: &'static str,
    policy: &'static str,
    verdict: PolicyVerdict,
}

fn node(n: N, report: Option<Arc<KeyspaceReport>>) -> NodeView {
    NodeView {
        addr: n.addr.to_string(),
        role: n.role.to_string(),
        up: true,
        policy: n.policy.to_string(),
        maxmemory: if n.verdict == PolicyVerdict::NoMaxmemory {
            0
        } else {
            4 << 30
        },
        used_memory: if n.verdict == PolicyVerdict::NoEvictionNearFull {
            (4u64 << 30) * 95 / 100
        } else {
            3 << 30
        },
        keys: report.as_ref().map_or(120_000, |r| r.keys),
        analysed: report.is_some(),
        verdict: n.verdict,
        progress: None,
        report,
        last_failure: None,
    }
}

/// Every state the page shows: a Redis Cluster with an unbalanced shard,
/// standalone nodes with every verdict, a pass running, a failure, a node
/// down, names made to break out of their markup.
fn rich_view() -> InsightView {
    let now = 1_765_000_000.0;
    let hostile = "<script>alert(\"p\")</script>:*";
    let shard_report = |scale: u64| {
        report(
            vec![
                namespace(
                    "user:*:profile",
                    40_000 * scale,
                    (900 << 20) * scale,
                    0.05,
                    false,
                ),
                namespace("session:*", 25_000 * scale, (300 << 20) * scale, 1.0, false),
                namespace("cart:{*}", 8_000 * scale, (120 << 20) * scale, 0.8, false),
                namespace(hostile, 10, 4096, 0.0, false),
                namespace("other", 900, 2 << 20, 0.3, false),
            ],
            now - 240.0,
        )
    };
    let masters = ["10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"];
    let mut cluster_nodes: Vec<NodeView> = masters
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            node(
                N {
                    addr,
                    role: "master",
                    policy: "allkeys-lru",
                    verdict: PolicyVerdict::Fit,
                },
                Some(shard_report(if i == 1 { 3 } else { 1 })),
            )
        })
        .collect();
    cluster_nodes.push(NodeView {
        analysed: false,
        ..node(
            N {
                addr: "10.0.0.4:6379",
                role: "replica",
                policy: "allkeys-lru",
                verdict: PolicyVerdict::Fit,
            },
            None,
        )
    });
    let shards = masters
        .iter()
        .enumerate()
        .map(|(i, m)| ShardView {
            shard: ["0-5460", "5461-10922", "10923-16383"][i].to_string(),
            master: m.to_string(),
            keys: if i == 1 { 220_000 } else { 74_000 },
            memory_bytes: if i == 1 { 3 << 30 } else { 1 << 30 },
        })
        .collect();
    let orders = ClusterView {
        name: "orders".to_string(),
        nodes: cluster_nodes,
        shards,
    };

    let mut running = node(
        N {
            addr: "cache-b:6379",
            role: "master",
            policy: "noeviction",
            verdict: PolicyVerdict::NoEvictionNearFull,
        },
        None,
    );
    running.analysed = true;
    running.progress = Some(0.37);
    let mut failed = node(
        N {
            addr: "cache-c:6379",
            role: "master",
            policy: "allkeys-lfu",
            verdict: PolicyVerdict::NoMaxmemory,
        },
        Some(report(
            vec![namespace("feed:*", 900, 40 << 20, 0.0, true)],
            now - 86_400.0,
        )),
    );
    failed.last_failure = Some("timeout");
    let mut down = node(
        N {
            addr: "cache-d:6379",
            role: "unknown",
            policy: "",
            verdict: PolicyVerdict::NoMaxmemory,
        },
        None,
    );
    down.up = false;
    let standalone = ClusterView {
        name: String::new(),
        nodes: vec![
            node(
                N {
                    addr: "cache-a:6379",
                    role: "master",
                    policy: "volatile-lru",
                    verdict: PolicyVerdict::VolatileWithoutTtls,
                },
                Some(report(
                    vec![
                        namespace("product:*", 50_000, 2 << 30, 0.02, true),
                        namespace(hostile, 3, 900, 0.0, true),
                    ],
                    now - 30.0,
                )),
            ),
            running,
            failed,
            down,
        ],
        shards: vec![],
    };
    let evil = ClusterView {
        name: "</q><script>alert('cluster')</script>".to_string(),
        nodes: vec![node(
            N {
                addr: "\"><img src=x>:6379",
                role: "master",
                policy: "allkeys-lru",
                verdict: PolicyVerdict::Fit,
            },
            None,
        )],
        shards: vec![],
    };
    InsightView {
        enabled: true,
        generated_unix: now,
        clusters: vec![orders, standalone, evil],
    }
}

#[test]
fn a_rich_synthetic_report_renders_cleanly_in_a_browser() {
    if !have_chromium() {
        return;
    }
    let html = redis_vitals::web::insight::render(&rich_view());
    // Kept next to the screenshot, to open in any browser.
    let file = artifact("insight-synthetic.html");
    std::fs::write(&file, &html).unwrap();
    let shot = artifact("insight-synthetic.png");
    let got = chromium::load(&format!("file://{}", file.display()), Some(&shot)).unwrap();
    println!("page: {}\nscreenshot: {}", file.display(), shot.display());
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 0),
        "no screenshot"
    );
    assert_clean("synthetic /insight", &got);
    let dom = &got.dom;
    for want in [
        "<h1>Cache insight</h1>",
        "Cluster <q>orders</q>",
        "Standalone nodes",
        "Shard balance",
        "Namespaces across the cluster",
        "Namespaces by memory",
        "user:*:profile",
        "session:*",
        "cart:{*}",
        // Mean 122,667 keys and 1.7 GiB: the middle shard is hot.
        "ratio hot\">1.79× ▲",
        "ratio hot\">1.80× ▲",
        "0.60×",
        PolicyVerdict::Fit.advice(),
        PolicyVerdict::NoMaxmemory.advice(),
        PolicyVerdict::VolatileWithoutTtls.advice(),
        PolicyVerdict::NoEvictionNearFull.advice(),
        "37% of the keys",
        "pass given up: <code>timeout</code>",
        "not analysed: replicas are read only",
        "Eviction policy unknown",
        "42s · 30m · 3.0d",
        "ended 4m ago",
        "took 1m 35s",
        "&lt;script&gt;alert(\"p\")&lt;/script&gt;:*",
        "feed:*-key-1\"&lt;b&gt;'",
    ] {
        assert!(dom.contains(want), "the DOM lacks {want:?}:\n{dom}");
    }
    // The hostile names stayed text: no element came out of them.
    assert!(!dom.contains("<script"), "{dom}");
    assert!(!dom.contains("<img"), "{dom}");
    assert!(!dom.contains("<b>"), "{dom}");
}

/// Keys in three namespaces: `user:*:profile` (strings, no TTL),
/// `cart:*` (hashes with a TTL), `session:*` (strings with a TTL).
fn fill(redis: &common::RedisServer) {
    let script = "\
        for i = 1, 200 do redis.call('SET', 'user:' .. i .. ':profile', string.rep('x', 200)) end \
        for i = 1, 150 do redis.call('HSET', 'cart:' .. i, 'item', i, 'qty', 1) \
          redis.call('EXPIRE', 'cart:' .. i, 3600) end \
        for i = 1, 100 do redis.call('SET', 'session:' .. i, 'token', 'EX', 600) end \
        redis.call('SET', 'user:alice@example.com', 'x') \
        redis.call('SET', 'session:john.doe', 'x') \
        return redis.call('DBSIZE')";
    assert_eq!(redis.cli(&["EVAL", script, "0"]), "452");
}

#[test]
fn the_daemons_insight_page_shows_a_real_keyspace() {
    if !have_chromium() {
        return;
    }
    let redis = common::RedisServer::start(&[]);
    fill(&redis);
    let d = TestDaemon::start(&[
        "--redis.addr",
        &redis.addr(),
        "--insight.enabled",
        "--insight.budget",
        "200ms",
        "--insight.pass-interval",
        "10s",
    ]);
    d.wait_value(
        FIRST_PASS_TIMEOUT,
        "redis_vitals_insight_passes_total",
        &[("addr", &redis.addr())],
        |v| v >= 1.0,
    );
    let (status, headers, body) = common::http_request(d.addr, "GET", "/insight", &[]);
    assert_eq!(status, 200, "{body}");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(
        header("content-security-policy"),
        Some(redis_vitals::web::insight::CONTENT_SECURITY_POLICY)
    );
    let shot = artifact("insight.png");
    let got = chromium::load(&format!("http://{}/insight", d.addr), Some(&shot)).unwrap();
    println!("screenshot: {}", shot.display());
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 0),
        "no screenshot"
    );
    assert_clean("the daemon's /insight", &got);
    // Key names stay out without insight.show-key-names, also where the
    // namespace rules find no identifier in a key.
    for secret in ["alice", "john.doe"] {
        assert!(!got.dom.contains(secret), "the page names a key: {secret}");
        assert!(!body.contains(secret), "the page names a key: {secret}");
    }
    for want in [
        "user:*:profile",
        "cart:*",
        "session:*",
        redis.addr().as_str(),
        "Namespaces by memory",
    ] {
        assert!(
            got.dom.contains(want),
            "the DOM lacks {want:?}:\n{}",
            got.dom
        );
    }
}

#[test]
fn insight_is_protected_like_every_page() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    let hash = bcrypt::hash("insight-pw", 4).unwrap();
    std::fs::write(&web, format!("basic_auth_users:\n  alice: {hash}\n")).unwrap();
    let d = TestDaemon::start(&[
        "--redis.addr",
        "127.0.0.1:1",
        "--web.config.file",
        web.to_str().unwrap(),
    ]);
    use base64::Engine as _;
    let good = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:insight-pw")
    );
    let bad = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:wrong")
    );
    for method in ["GET", "HEAD"] {
        let (status, headers, body) = common::http_request(d.addr, method, "/insight", &[]);
        assert_eq!(status, 401, "{method} without credentials: {body}");
        assert!(
            headers.iter().all(|(k, _)| k != "content-security-policy"),
            "a refusal is not the page"
        );
        let (status, _, _) =
            common::http_request(d.addr, method, "/insight", &[("Authorization", &bad)]);
        assert_eq!(status, 401, "{method} with a wrong password");
        let (status, headers, body) =
            common::http_request(d.addr, method, "/insight", &[("Authorization", &good)]);
        assert_eq!(status, 200, "{method} with credentials: {body}");
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == "content-type" && v == "text/html; charset=utf-8"),
            "{headers:?}"
        );
        if method == "GET" {
            assert!(body.contains("<h1>Cache insight</h1>"), "{body}");
        }
    }
    // The landing page links to it.
    let (status, _, body) = common::http_request(d.addr, "GET", "/", &[("Authorization", &good)]);
    assert_eq!(status, 200);
    assert!(body.contains("href=\"/insight\""), "{body}");
}
