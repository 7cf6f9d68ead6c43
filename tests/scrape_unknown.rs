//! `/scrape?target=` of a node the exporter does not poll (issue 17):
//! refused unless `scrape.allowed-networks` lets it in; then it joins the
//! poll set, the first answer already has its data (like the peer, which
//! connects on the scrape), it is listed by /sd as added by /scrape, and it
//! is dropped after `scrape.target-idle-timeout` without a scrape. Bounded
//! by `scrape.max-targets`.

mod common;
mod daemon_harness;

use std::time::{Duration, Instant};

use common::{find_value, parse_metrics, RedisServer};
use daemon_harness::TestDaemon;

const WAIT: Duration = Duration::from_secs(10);

fn polled(d: &TestDaemon, addr: &str) -> bool {
    find_value(&d.metrics(), "redis_up", &[("addr", addr)]).is_some()
}

#[test]
fn unknown_targets_are_refused_by_default_and_outside_the_networks() {
    let known = RedisServer::start(&[]);
    let other = RedisServer::start(&[]);
    let (k, o) = (known.addr(), other.addr());
    for extra in [&[][..], &["--scrape.allowed-networks", "10.0.0.0/8"][..]] {
        let mut args = vec!["--redis.addr", k.as_str()];
        args.extend_from_slice(extra);
        let d = TestDaemon::start(&args);
        d.wait_value(WAIT, "redis_up", &[("addr", &k)], |v| v == 1.0);
        for t in [o.clone(), format!("redis://{o}")] {
            let (st, body) = d.get(&format!("/scrape?target={t}"));
            assert_eq!(st, 404, "{extra:?} {t}: {body}");
        }
        std::thread::sleep(Duration::from_millis(700));
        assert!(
            !polled(&d, &o),
            "{extra:?}: a refused target must not be polled"
        );
    }
}

#[test]
fn allowed_unknown_target_is_polled_answered_at_once_and_dropped_when_idle() {
    let known = RedisServer::start(&[]);
    let a = RedisServer::start(&[]);
    let b = RedisServer::start(&[]);
    let (k, a_addr, b_addr) = (known.addr(), a.addr(), b.addr());
    let d = TestDaemon::start(&[
        "--redis.addr",
        &k,
        "--scrape.allowed-networks",
        "127.0.0.0/8",
        "--scrape.target-idle-timeout",
        "2s",
        "--scrape.max-targets",
        "1",
    ]);
    d.wait_value(WAIT, "redis_up", &[("addr", &k)], |v| v == 1.0);

    // The first scrape answers from an immediate poll.
    let (st, body) = d.get(&format!("/scrape?target=redis://{a_addr}"));
    assert_eq!(st, 200, "{body}");
    let one = parse_metrics(&body);
    assert_eq!(find_value(&one, "redis_up", &[]), Some(1.0), "{body}");
    assert!(find_value(&one, "redis_uptime_in_seconds", &[]).is_some());
    assert!(polled(&d, &a_addr));
    let (_, sd) = d.get("/sd");
    let sd: serde_json::Value = serde_json::from_str(&sd).unwrap();
    let group = sd
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["targets"][0] == a_addr.as_str())
        .expect("/sd lists the added node");
    assert_eq!(group["labels"]["__meta_redis_vitals_source"], "scrape");

    // Bounded: a second unknown node is refused while the first is kept.
    let (st, body) = d.get(&format!("/scrape?target={b_addr}"));
    assert_eq!(st, 404, "{body}");
    assert!(body.contains("max-targets"), "{body}");

    // Scraped again within the idle timeout: kept.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        let (st, _) = d.get(&format!("/scrape?target={a_addr}"));
        assert_eq!(st, 200);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(polled(&d, &a_addr), "a node scraped regularly stays");

    // Not scraped for the idle timeout: dropped, and its slot frees up.
    let deadline = Instant::now() + WAIT;
    while polled(&d, &a_addr) {
        assert!(Instant::now() < deadline, "idle node was not dropped");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        Instant::now() + WAIT - deadline >= Duration::from_millis(1500),
        "dropped before its idle timeout"
    );
    let (st, body) = d.get(&format!("/scrape?target={b_addr}"));
    assert_eq!(st, 200, "{body}");
    // The configured node is never dropped.
    assert!(polled(&d, &k));
}
