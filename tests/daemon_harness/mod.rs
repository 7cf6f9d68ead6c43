//! Runs the whole daemon in-process on an ephemeral port, for integration
//! tests: `TestDaemon::start(&["--redis.addr", ...])`. Dropping it shuts the
//! daemon down through the same path as SIGTERM.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use redis_vitals::config::Config;
use redis_vitals::daemon::{self, Shared};

use crate::common::{http_get, parse_metrics, wait_until, Sample};

pub struct TestDaemon {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl TestDaemon {
    /// Starts with `args` after test defaults (fast polls, port 0); later
    /// flags win, so tests may override the defaults.
    pub fn start(args: &[&str]) -> TestDaemon {
        // Fast enough for quick tests, with a deadline generous enough that
        // a busy 2-core CI machine does not fake a node failure. A flag the
        // test passes itself replaces its default (clap refuses repeats).
        let defaults = [
            ("--web.listen-address", "127.0.0.1:0"),
            ("--poll.interval", "300ms"),
            ("--poll.timeout", "250ms"),
            ("--poll.max-backoff", "600ms"),
        ];
        let mut all = vec!["redis-vitals"];
        for (flag, value) in defaults {
            if !args.contains(&flag) {
                all.extend([flag, value]);
            }
        }
        all.extend_from_slice(args);
        let config = Config::from_args(all).unwrap_or_else(|e| panic!("test config rejected: {e}"));
        let shared = daemon::shared(config);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let s = shared.clone();
        let thread = thread::spawn(move || {
            // As main.rs: polls on one single-threaded runtime (the daemon
            // puts HTTP on a thread of its own).
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                // As main.rs binds: the daemon's own listen backlog.
                let listener =
                    redis_vitals::web::bind("127.0.0.1:0".parse().unwrap()).expect("bind");
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("send addr");
                daemon::run_shared(s, listener, async {
                    let _ = stop_rx.await;
                })
                .await;
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("daemon did not bind");
        TestDaemon {
            addr,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path)
    }

    pub fn metrics_text(&self) -> String {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "/metrics answered {status}: {body}");
        body
    }

    pub fn metrics(&self) -> Vec<Sample> {
        parse_metrics(&self.metrics_text())
    }

    /// Waits until the series `name{labels}` exists and `pred` accepts its
    /// value; returns the value.
    pub fn wait_value(
        &self,
        timeout: Duration,
        name: &str,
        labels: &[(&str, &str)],
        pred: impl Fn(f64) -> bool,
    ) -> f64 {
        let what = format!("{name}{labels:?} to satisfy the condition");
        wait_until(timeout, &what, || {
            let samples = self.metrics();
            crate::common::find_value(&samples, name, labels).filter(|v| pred(*v))
        })
    }

    /// Waits until no series `name{labels}` exists.
    pub fn wait_absent(&self, timeout: Duration, name: &str, labels: &[(&str, &str)]) {
        let what = format!("{name}{labels:?} to disappear");
        wait_until(timeout, &what, || {
            let samples = self.metrics();
            crate::common::find_value(&samples, name, labels)
                .is_none()
                .then_some(())
        })
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
