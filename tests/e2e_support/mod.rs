//! Real external processes for the end-to-end tests in
//! `tests/e2e_prometheus.rs`: the `redis-vitals` binary, Prometheus,
//! Alertmanager and a tiny webhook receiver, each owned by a guard that kills
//! it on drop (and prints the tail of its log when the test is failing).
//! Everything listens on 127.0.0.1 only; every wait has a deadline.
//!
//! Depends on `crate::common` (free ports, waits, the HTTP client),
//! `serde_json` and std.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{free_port, try_http_request, wait_for};

/// The exporter binary under test.
pub const EXPORTER_BIN: &str = env!("CARGO_BIN_EXE_redis-vitals");

/// Deadline for Prometheus / Alertmanager / the exporter to come up.
pub const START_DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// A child process whose stdout and stderr go to `log`; killed on drop.
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let out =
            File::create(&log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log file handle");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("process running").id()
    }

    /// `Err` (with the log tail) when the process has exited.
    pub fn alive(&mut self) -> Result<(), String> {
        let name = self.name.clone();
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => Ok(()),
            Some(Ok(Some(status))) => Err(format!(
                "{name} exited with {status}; log tail:\n{}",
                self.log_tail(40)
            )),
            Some(Err(e)) => Err(format!("{name}: try_wait failed: {e}")),
            None => Err(format!("{name} was already stopped")),
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Kills the process and waits for it. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "--- last lines of the {} log ({}) ---\n{}",
                self.name,
                self.log.display(),
                self.log_tail(30)
            );
        }
        self.kill();
    }
}

/// Waits until `GET path` on `addr` answers 200, failing early with the log
/// if the process exits.
fn wait_http_ok(proc_: &mut Proc, addr: SocketAddr, path: &str, what: &str) {
    wait_for(START_DEADLINE, what, || {
        proc_.alive()?;
        match try_http_request(addr, "GET", path, &[], b"") {
            Ok(r) if r.status == 200 => Ok(()),
            Ok(r) => Err(format!("HTTP {} {}", r.status, r.text().trim())),
            Err(e) => Err(e),
        }
    });
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"))
}

// ---------------------------------------------------------------------------
// The exporter binary
// ---------------------------------------------------------------------------

/// `redis-vitals` as a subprocess on a free loopback port.
pub struct Exporter {
    pub addr: SocketAddr,
    pub proc_: Proc,
    dir: tempfile::TempDir,
}

impl Exporter {
    /// Starts the binary with `--web.listen-address 127.0.0.1:<free>` and
    /// `args`, and waits until it serves `/-/healthy`.
    pub fn start(args: &[&str]) -> Exporter {
        let dir = tempdir("redis-vitals-e2e-exporter-");
        let addr = loopback(free_port());
        let mut cmd = Command::new(EXPORTER_BIN);
        cmd.arg("--web.listen-address")
            .arg(addr.to_string())
            .args(args)
            .env_remove("REDIS_ADDR")
            .env_remove("REDIS_PASSWORD")
            .env_remove("REDIS_VITALS_CONFIG");
        let mut proc_ = Proc::spawn("redis-vitals", cmd, dir.path().join("exporter.log"));
        wait_http_ok(
            &mut proc_,
            addr,
            "/-/healthy",
            "redis-vitals to serve /-/healthy",
        );
        Exporter { addr, proc_, dir }
    }

    /// A file in the exporter's temp dir (e.g. for its configuration).
    pub fn write_config(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempdir("redis-vitals-e2e-config-");
        let path = dir.path().join(name);
        fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        (dir, path)
    }
}

// ---------------------------------------------------------------------------
// Rule files
// ---------------------------------------------------------------------------

pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Copies the bundled rule file `alerts/<name>` into `dir`, replacing the
/// value of every `for:` key by `for_` and leaving everything else (the
/// expressions, labels, annotations) byte for byte as shipped. Returns the
/// new path and the number of `for:` values rewritten.
pub fn copy_rules_with_for(name: &str, dir: &Path, for_: &str) -> (PathBuf, usize) {
    let src = repo_path(&format!("alerts/{name}"));
    let text = fs::read_to_string(&src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
    let mut rewritten = 0;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let trimmed = line.trim_start();
        // Only the rule key: block-scalar text (descriptions) never starts
        // with "for:"; the assertion makes sure of it.
        if let Some(rest) = trimmed.strip_prefix("for:") {
            assert!(
                humantime_like(rest.trim()),
                "unexpected `for:` line in {}: {line:?}",
                src.display()
            );
            let indent = &line[..line.len() - trimmed.len()];
            out.push_str(&format!("{indent}for: {for_}"));
            rewritten += 1;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    let dst = dir.join(name);
    fs::write(&dst, out).unwrap_or_else(|e| panic!("write {}: {e}", dst.display()));
    (dst, rewritten)
}

/// A Prometheus duration such as `15m`, `1h`, `2m30s`.
fn humantime_like(s: &str) -> bool {
    !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_digit() || "smhdwy".contains(c))
}

/// Number of `- alert:` rules in a rule file.
pub fn count_alert_rules(path: &Path) -> usize {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count()
}

// ---------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------

/// A series' label set.
pub type Labels = BTreeMap<String, String>;

/// The (labels, value) pairs of an instant vector result.
pub fn vector_samples(result: &[serde_json::Value]) -> Vec<(Labels, f64)> {
    result
        .iter()
        .map(|s| {
            let labels = s["metric"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let value = s["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(f64::NAN);
            (labels, value)
        })
        .collect()
}

/// One alert as `/api/v1/alerts` reports it.
#[derive(Debug, Clone)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    /// `pending` or `firing`.
    pub state: String,
    pub value: String,
}

impl Alert {
    pub fn name(&self) -> &str {
        self.label("alertname")
    }

    pub fn label(&self, k: &str) -> &str {
        self.labels.get(k).map(String::as_str).unwrap_or("")
    }

    pub fn firing(&self) -> bool {
        self.state == "firing"
    }

    /// Whether every `(label, value)` matches (an absent label is "").
    pub fn matches(&self, labels: &[(&str, &str)]) -> bool {
        labels.iter().all(|(k, v)| self.label(k) == *v)
    }

    pub fn short(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .filter(|(k, _)| *k != "alertname")
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        format!(
            "{}{{{}}} {} value={}",
            self.name(),
            labels.join(", "),
            self.state,
            self.value
        )
    }
}

pub struct PrometheusSetup {
    /// Scraped as job `redis-vitals`.
    pub exporters: Vec<SocketAddr>,
    pub rule_files: Vec<PathBuf>,
    pub alertmanager: Option<SocketAddr>,
    /// Scrape and rule evaluation interval, e.g. "1s".
    pub interval: &'static str,
}

/// A real Prometheus server with its own TSDB directory, on loopback.
pub struct Prometheus {
    pub addr: SocketAddr,
    pub proc_: Proc,
    dir: tempfile::TempDir,
}

pub fn prometheus_bin() -> String {
    std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".to_string())
}

impl Prometheus {
    pub fn start(setup: &PrometheusSetup) -> Prometheus {
        let dir = tempdir("redis-vitals-e2e-prometheus-");
        let quote = |p: &Path| format!("{:?}", p.display().to_string());
        let mut cfg = format!(
            "global:\n  scrape_interval: {i}\n  scrape_timeout: {i}\n  evaluation_interval: {i}\n",
            i = setup.interval
        );
        cfg.push_str("rule_files:\n");
        for f in &setup.rule_files {
            cfg.push_str(&format!("  - {}\n", quote(f)));
        }
        if let Some(am) = setup.alertmanager {
            cfg.push_str(&format!(
                "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"{am}\"]\n"
            ));
        }
        let targets: Vec<String> = setup.exporters.iter().map(|a| format!("\"{a}\"")).collect();
        cfg.push_str(&format!(
            "scrape_configs:\n  - job_name: redis-vitals\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ));
        Prometheus::start_in(dir, &cfg)
    }

    /// A Prometheus server with `cfg` as its whole configuration file.
    pub fn start_with_config(cfg: &str) -> Prometheus {
        Prometheus::start_in(tempdir("redis-vitals-e2e-prometheus-"), cfg)
    }

    fn start_in(dir: tempfile::TempDir, cfg: &str) -> Prometheus {
        let addr = loopback(free_port());
        let cfg_path = dir.path().join("prometheus.yml");
        fs::write(&cfg_path, cfg).expect("write prometheus.yml");
        let tsdb = dir.path().join("data");
        let mut cmd = Command::new(prometheus_bin());
        cmd.arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-lifecycle")
            .arg("--log.level=info");
        let mut proc_ = Proc::spawn("prometheus", cmd, dir.path().join("prometheus.log"));
        wait_http_ok(&mut proc_, addr, "/-/ready", "Prometheus to be ready");
        Prometheus { addr, proc_, dir }
    }

    /// `GET /api/v1/<path>`: the `data` member, or the error.
    pub fn api(&self, path_and_query: &str) -> Result<Value, String> {
        let path = format!("/api/v1/{path_and_query}");
        let r = try_http_request(self.addr, "GET", &path, &[], b"")?;
        let v: Value = serde_json::from_slice(&r.body).map_err(|e| {
            format!(
                "GET {path}: HTTP {} with a body that is not JSON ({e}): {}",
                r.status,
                r.text()
            )
        })?;
        if v["status"] != "success" {
            return Err(format!(
                "HTTP {}: {} {}",
                r.status,
                v["errorType"].as_str().unwrap_or(""),
                v["error"].as_str().unwrap_or(&v.to_string())
            ));
        }
        Ok(v["data"].clone())
    }

    /// An instant query at the current time: the `result` array (vector or
    /// matrix), or Prometheus' error (parse errors included).
    pub fn query(&self, q: &str) -> Result<Vec<Value>, String> {
        let data = self.api(&format!("query?query={}", url_encode(q)))?;
        match &data["result"] {
            Value::Array(items)
                if data["resultType"] == "scalar" || data["resultType"] == "string" =>
            {
                // [timestamp, "value"]: one value, not a list of series.
                Ok(vec![Value::Array(items.clone())])
            }
            Value::Array(items) => Ok(items.clone()),
            other => Err(format!("unexpected result {other}")),
        }
    }

    /// The values of an instant vector query, keyed by the series' labels.
    pub fn query_values(&self, q: &str) -> Result<Vec<(Labels, f64)>, String> {
        Ok(vector_samples(&self.query(q)?))
    }

    /// Active (pending and firing) alerts.
    pub fn alerts(&self) -> Result<Vec<Alert>, String> {
        let data = self.api("alerts")?;
        let list = data["alerts"]
            .as_array()
            .ok_or_else(|| format!("no alerts array in {data}"))?;
        Ok(list
            .iter()
            .map(|a| Alert {
                labels: a["labels"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default(),
                state: a["state"].as_str().unwrap_or("").to_string(),
                value: a["value"].as_str().unwrap_or("").to_string(),
            })
            .collect())
    }

    /// Rule groups as loaded: (group name, number of alerting rules, last
    /// evaluation timestamp, rule health errors).
    pub fn rule_groups(&self) -> Result<Vec<RuleGroup>, String> {
        let data = self.api("rules")?;
        let groups = data["groups"]
            .as_array()
            .ok_or_else(|| format!("no groups in {data}"))?;
        Ok(groups
            .iter()
            .map(|g| {
                let rules = g["rules"].as_array().cloned().unwrap_or_default();
                RuleGroup {
                    name: g["name"].as_str().unwrap_or("").to_string(),
                    file: g["file"].as_str().unwrap_or("").to_string(),
                    alerting_rules: rules.iter().filter(|r| r["type"] == "alerting").count(),
                    recording_rules: rules.iter().filter(|r| r["type"] == "recording").count(),
                    last_evaluation: g["lastEvaluation"].as_str().unwrap_or("").to_string(),
                    unhealthy: rules
                        .iter()
                        .filter(|r| r["health"] == "err")
                        .map(|r| {
                            format!(
                                "{}: {}",
                                r["name"].as_str().unwrap_or(""),
                                r["lastError"].as_str().unwrap_or("")
                            )
                        })
                        .collect(),
                }
            })
            .collect())
    }

    /// `POST /-/reload`: re-reads the configuration and rule files.
    pub fn reload(&self) {
        let r = try_http_request(self.addr, "POST", "/-/reload", &[], b"")
            .unwrap_or_else(|e| panic!("POST /-/reload: {e}"));
        assert_eq!(r.status, 200, "Prometheus reload failed: {}", r.text());
    }
}

#[derive(Debug, Clone)]
pub struct RuleGroup {
    pub name: String,
    pub file: String,
    pub alerting_rules: usize,
    pub recording_rules: usize,
    pub last_evaluation: String,
    pub unhealthy: Vec<String>,
}

/// Percent-encodes everything except RFC 3986 unreserved characters.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Alertmanager and a webhook receiver
// ---------------------------------------------------------------------------

/// The Alertmanager binary, if installed (Debian names it
/// `prometheus-alertmanager`).
pub fn alertmanager_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("ALERTMANAGER_BIN") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["prometheus-alertmanager", "alertmanager"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// A real Alertmanager on loopback (HA clustering disabled), routing
/// everything to one webhook with 1 s grouping delays.
pub struct Alertmanager {
    pub addr: SocketAddr,
    pub proc_: Proc,
    dir: tempfile::TempDir,
}

impl Alertmanager {
    pub fn start(bin: &Path, webhook_url: &str) -> Alertmanager {
        let dir = tempdir("redis-vitals-e2e-alertmanager-");
        let addr = loopback(free_port());
        let cfg = format!(
            "route:\n  receiver: webhook\n  group_by: [alertname, cluster, addr]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: webhook\n    webhook_configs:\n      - url: \"{webhook_url}\"\n        send_resolved: true\n"
        );
        let cfg_path = dir.path().join("alertmanager.yml");
        fs::write(&cfg_path, cfg).expect("write alertmanager.yml");
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            // An empty address disables the HA gossip listener (0.0.0.0:9094).
            .arg("--cluster.listen-address=")
            .arg("--log.level=info");
        let mut proc_ = Proc::spawn("alertmanager", cmd, dir.path().join("alertmanager.log"));
        wait_http_ok(&mut proc_, addr, "/-/ready", "Alertmanager to be ready");
        Alertmanager { addr, proc_, dir }
    }
}

/// Records the body of every POST it receives; answers 200.
pub struct Webhook {
    pub addr: SocketAddr,
    bodies: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Webhook {
    pub fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind webhook listener");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (bodies.clone(), stop.clone());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Some(body) = read_post(stream) {
                            b.lock().unwrap_or_else(|e| e.into_inner()).push(body);
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Webhook {
            addr,
            bodies,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn bodies(&self) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Alerts of every notification received so far: (notification status,
    /// alert status, alert labels).
    pub fn alerts(&self) -> Vec<(String, BTreeMap<String, String>)> {
        let mut out = Vec::new();
        for body in self.bodies() {
            let Ok(v) = serde_json::from_str::<Value>(&body) else {
                continue;
            };
            for a in v["alerts"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                let labels = a["labels"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((a["status"].as_str().unwrap_or("").to_string(), labels));
            }
        }
        out
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one HTTP/1.1 request; answers `200` with `Connection: close`.
fn read_post(stream: TcpStream) -> Option<String> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut len = 0usize;
    let mut first = true;
    let mut is_post = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if first {
            is_post = line.starts_with("POST ");
            first = false;
            continue;
        }
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let mut w = stream;
    let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = w.flush();
    is_post.then(|| String::from_utf8_lossy(&body).into_owned())
}

// ---------------------------------------------------------------------------
// Background load
// ---------------------------------------------------------------------------

/// A background thread running `step` until dropped (or `stop`ped); the
/// thread must return from `step` quickly so that stopping has a bound.
pub struct Background {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
    name: String,
}

impl Background {
    pub fn start(name: &str, mut step: impl FnMut() + Send + 'static) -> Background {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let mut n = 0;
                while !s.load(Ordering::SeqCst) {
                    step();
                    n += 1;
                }
                n
            })
            .expect("spawn background thread");
        Background {
            stop,
            thread: Some(thread),
            name: name.to_string(),
        }
    }

    /// Stops the thread and returns how many steps it ran.
    pub fn stop(mut self) -> u64 {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        let Some(t) = self.thread.take() else {
            return 0;
        };
        // A bounded join: step() is short, but never hang a test on it.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !t.is_finished() {
            if Instant::now() > deadline {
                eprintln!("background thread {} did not stop within 20 s", self.name);
                return 0;
            }
            thread::sleep(Duration::from_millis(10));
        }
        t.join().unwrap_or(0)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop_inner();
    }
}
