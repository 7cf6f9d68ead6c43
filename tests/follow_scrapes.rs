//! `poll.follow-scrapes`: the poll comes right after a scrape when its turn
//! is near, never more often than 8/7 of the configured rate, and HTTP is
//! served on the poll thread. Against a real redis-server; the daemon's
//! state is read through its shared state where an HTTP scrape would itself
//! move the schedule. Only following daemons run in this test binary (see
//! `http_is_served_on_the_poll_thread`).

mod common;
mod daemon_harness;

use std::time::{Duration, Instant};

use common::{find_value, parse_metrics, RedisServer, Sample};
use daemon_harness::TestDaemon;
use redis_vitals::daemon::Shared;

const WAIT: Duration = Duration::from_secs(15);

/// The page as a scrape would get it, without being a scrape (no HTTP, so
/// the schedule does not hear of it).
fn silent_metrics(shared: &Shared) -> Vec<Sample> {
    let mut page = shared.page(None);
    let mut text = String::new();
    while page.next_chunk_into(&mut text) {}
    parse_metrics(&text)
}

/// (polls so far, when the last successful poll ended), read silently.
fn last_poll(d: &TestDaemon, addr: &str) -> Option<(f64, Instant)> {
    let m = silent_metrics(&d.shared);
    let l = [("addr", addr)];
    let polls = find_value(&m, "redis_vitals_polls_total", &l)?;
    let age = find_value(&m, "redis_vitals_last_success_age_seconds", &l)?;
    Some((polls, Instant::now() - Duration::from_secs_f64(age)))
}

/// A daemon following scrapes of the node at `addr`, polled every
/// `interval` (timeout 500 ms, backoff one interval).
fn following(addr: &str, interval: &str) -> TestDaemon {
    TestDaemon::start(&[
        "--redis.addr",
        addr,
        "--poll.follow-scrapes",
        "--poll.interval",
        interval,
        "--poll.timeout",
        "500ms",
        "--poll.max-backoff",
        interval,
    ])
}

#[test]
fn a_scrape_near_the_turn_is_followed_by_the_poll() {
    let redis = RedisServer::start(&[]);
    let a = redis.addr();
    // A long interval, so the window in which only a following daemon
    // polls (from 7/8 of the interval to the turn) is 500 ms wide.
    let d = following(&a, "4s");
    // Nobody scrapes: the group ticks on its own (the first poll is off
    // the grid, the second is the group's first tick).
    let (polls, at) = common::wait_until(WAIT, "a second poll", || {
        last_poll(&d, &a).filter(|(p, _)| *p >= 2.0)
    });
    let mut tries = 0;
    let (mut polls, mut at) = (polls, at);
    loop {
        tries += 1;
        // 3.6 s after that tick: past 7/8 of the interval, before the turn.
        let scrape_at = at + Duration::from_millis(3_600);
        std::thread::sleep(scrape_at.saturating_duration_since(Instant::now()));
        let sent = Instant::now();
        let (status, _) = d.get("/metrics");
        assert_eq!(status, 200);
        let (after, polled) = common::wait_until(WAIT, "the next poll", || {
            last_poll(&d, &a).filter(|(p, _)| *p > polls)
        });
        if sent > at + Duration::from_millis(3_700) {
            // This thread came too late to leave room before the turn; once
            // more.
            assert!(tries < 3, "the test thread was late three times");
            (polls, at) = (after, polled);
            continue;
        }
        // Without following, the next poll comes at the turn (4 s after the
        // tick, which ended a little before `at`); following, right after
        // the scrape, at least 250 ms before the turn.
        assert!(
            polled < at + Duration::from_millis(3_950),
            "the poll came {:?} after the scrape, at the turn",
            polled.saturating_duration_since(sent)
        );
        assert_eq!(after, polls + 1.0);
        break;
    }
}

#[test]
fn a_fast_scraper_does_not_raise_the_poll_rate() {
    let redis = RedisServer::start(&[]);
    let a = redis.addr();
    let d = following(&a, "1s");
    d.wait_value(WAIT, "redis_up", &[("addr", &a)], |v| v == 1.0);
    let (before, _) = last_poll(&d, &a).expect("polled");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        assert_eq!(d.get("/metrics").0, 200);
        std::thread::sleep(Duration::from_millis(50));
    }
    let (after, _) = last_poll(&d, &a).expect("polled");
    let polls = after - before;
    // Polls at least 7/8 s apart: at most 8 / 0.875 + 1 in 8 s. At most
    // 9/8 s apart: at least 8 / 1.125 - 1.
    assert!(
        (6.0..=10.0).contains(&polls),
        "{polls} polls in 8 s of scrapes every 50 ms"
    );
}

#[test]
fn http_is_served_on_the_poll_thread() {
    let redis = RedisServer::start(&[]);
    let a = redis.addr();
    let d = TestDaemon::start(&["--redis.addr", &a, "--poll.follow-scrapes"]);
    d.wait_value(WAIT, "redis_up", &[("addr", &a)], |v| v == 1.0);
    // Every daemon in this binary follows scrapes, so no thread of this
    // process may be the HTTP thread ("redis-vitals-http", cut to 15).
    let names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect();
    assert!(names.iter().any(|n| !n.is_empty()), "{names:?}");
    assert!(
        !names.iter().any(|n| n == "redis-vitals-ht"),
        "an HTTP thread runs: {names:?}"
    );
}
