//! The files in `deploy/` work as shipped:
//!
//! - `deploy/config.example.toml` (and every key it shows commented out) and
//!   the Kubernetes `config.toml` load, and the exporter started with them
//!   answers `/-/healthy`;
//! - the example documents every configuration key;
//! - both Prometheus configurations pass `promtool check config`, rule files
//!   included (promtool is required: a missing promtool fails the test,
//!   `PROMTOOL=/path` overrides it);
//! - the Alertmanager configuration passes `amtool check-config` (skipped
//!   when amtool is not installed; `AMTOOL=/path` overrides it);
//! - the Kubernetes base renders with `kubectl kustomize` (skipped without
//!   kubectl);
//! - the systemd unit keeps its hardening, takes the password as a
//!   credential, passes `systemd-analyze verify` without a word and scores
//!   at most 2.0 in `systemd-analyze security --offline=true` (skipped
//!   without systemd-analyze, except under `CI=true`);
//! - the load generator used by `scripts/demo.sh` runs against a real
//!   `redis-server` and exits 2 with a clear message when it cannot connect.
//!
//! Self-contained (std and tempfile only), every wait has a deadline.

mod common;

use common::in_ci;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const EXPORTER: &str = env!("CARGO_BIN_EXE_redis-vitals");
const LOADGEN: &str = env!("CARGO_BIN_EXE_redis-vitals-loadgen");
/// How long the exporter may take to answer /-/healthy after it starts.
const HEALTHY_DEADLINE: Duration = Duration::from_secs(20);
/// Deadline for any external checker (promtool, amtool, kubectl).
const TOOL_DEADLINE: Duration = Duration::from_secs(60);

/// Every key the configuration file accepts, by section, as documented in
/// `deploy/config.example.toml`.
const CONFIG_KEYS: &[(&str, &[&str])] = &[
    (
        "redis",
        &[
            "addr",
            "user",
            "password",
            "password-file",
            "config-command",
            "maxclients",
            "cluster",
        ],
    ),
    (
        "poll",
        &[
            "interval",
            "timeout",
            "concurrency",
            "group-size",
            "config-refresh",
            "max-backoff",
        ],
    ),
    ("signals", &["hit-ratio-window", "lag-history"]),
    ("cluster", &["refresh-interval"]),
    ("web", &["listen-address", "telemetry-path"]),
    ("shard", &["count", "index"]),
    ("log", &["level", "format"]),
    (
        "[targets]",
        &[
            "addr",
            "user",
            "password",
            "password-file",
            "cluster",
            "maxclients",
            "config-command",
        ],
    ),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A child process that is killed when the test ends, pass or fail.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a loopback port")
}

/// Status code of `GET path`, or None if nothing answered.
fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).ok()?;
    let text = String::from_utf8_lossy(&head[..n]);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// Starts the exporter with `args` plus a free `--web.listen-address` and
/// waits until `/-/healthy` answers 200. Panics with the exporter's output
/// when it exits or does not answer in time.
fn assert_starts_healthy(what: &str, args: &[&str]) {
    let logs = tempfile::tempdir().expect("tempdir");
    // A port picked with bind(0) can be taken again before the exporter
    // binds it; one retry with a fresh port covers that race.
    for attempt in 0..3 {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let log_path = logs.path().join(format!("exporter-{attempt}.log"));
        let log = fs::File::create(&log_path).expect("log file");
        let mut cmd = Command::new(EXPORTER);
        cmd.args(args)
            .args(["--web.listen-address", &listen])
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        // Only the file and the flags may configure this run.
        for var in [
            "REDIS_PASSWORD",
            "REDIS_PASSWORD_FILE",
            "REDIS_ADDR",
            "REDIS_USER",
            "REDIS_VITALS_CONFIG",
            "REDIS_VITALS_LOG_LEVEL",
        ] {
            cmd.env_remove(var);
        }
        let mut child = Guard(cmd.spawn().expect("cannot start redis-vitals"));
        let addr: SocketAddr = listen.parse().unwrap();
        let deadline = Instant::now() + HEALTHY_DEADLINE;
        loop {
            if http_status(addr, "/-/healthy") == Some(200) {
                return;
            }
            if let Some(status) = child.0.try_wait().expect("try_wait") {
                let output = fs::read_to_string(&log_path).unwrap_or_default();
                if output.contains("in use") && attempt < 2 {
                    break; // port race: try again
                }
                panic!(
                    "{what}: redis-vitals exited ({status}) before /-/healthy answered:\n{output}"
                );
            }
            if Instant::now() > deadline {
                let output = fs::read_to_string(&log_path).unwrap_or_default();
                panic!(
                    "{what}: /-/healthy on {listen} did not answer 200 within {HEALTHY_DEADLINE:?}:\n{output}"
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("{what}: could not find a free port in three attempts");
}

/// Runs `cmd` with a deadline; None when the program is not installed.
fn run_tool(mut cmd: Command) -> Option<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot run {cmd:?}: {e}"),
    };
    // Read the pipes while the program runs: `kubectl kustomize` writes
    // more than a pipe holds (the dashboards), and would block forever.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(TOOL_DEADLINE) {
        Ok(out) => Some(out.expect("output")),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("{cmd:?} did not finish within {TOOL_DEADLINE:?}");
        }
    }
}

fn describe(cmd: &str, out: &Output) -> String {
    format!(
        "$ {cmd}\nexit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn tool(env: &str, default: &str) -> OsString {
    std::env::var_os(env).unwrap_or_else(|| OsString::from(default))
}

// ---------------------------------------------------------------------------
// Exporter configuration
// ---------------------------------------------------------------------------

#[test]
fn example_config_starts_and_answers_healthy() {
    assert_starts_healthy(
        "deploy/config.example.toml",
        &["--config.file", "deploy/config.example.toml"],
    );
}

/// The keys shown commented out (user, password, password-file, ...) are
/// real keys with valid example values: uncommented, the file still loads.
#[test]
fn example_config_with_every_commented_key_enabled_starts() {
    let text = fs::read_to_string(root().join("deploy/config.example.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("password");
    fs::write(&password_file, "not-a-real-password\n").unwrap();
    let mut enabled = 0;
    let out: Vec<String> = text
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if is_key_line(rest) => {
                enabled += 1;
                if rest.starts_with("password-file") {
                    format!("password-file = {:?}", password_file.display().to_string())
                } else {
                    rest.to_string()
                }
            }
            _ => line.to_string(),
        })
        .collect();
    assert!(
        enabled >= 6,
        "expected the example to show optional keys commented out, found {enabled}"
    );
    let path = dir.path().join("config.toml");
    fs::write(&path, out.join("\n")).unwrap();
    assert_starts_healthy(
        "deploy/config.example.toml with every commented key enabled",
        &["--config.file", path.to_str().unwrap()],
    );
}

/// `key = value` with a lower-case kebab-case key: a (possibly commented)
/// setting, not prose.
fn is_key_line(s: &str) -> bool {
    let Some((key, _)) = s.split_once(" = ") else {
        return false;
    };
    !key.is_empty()
        && key.starts_with(|c: char| c.is_ascii_lowercase())
        && key.chars().all(|c| c.is_ascii_lowercase() || c == '-')
}

#[test]
fn example_config_documents_every_key() {
    let text = fs::read_to_string(root().join("deploy/config.example.toml")).unwrap();
    let mut section = String::new();
    let mut found: Vec<(String, String)> = Vec::new();
    let mut previous = "";
    for line in text.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = name.to_string();
        } else {
            let setting = t.strip_prefix("# ").unwrap_or(t);
            if is_key_line(setting) {
                let key = setting.split_once(" = ").unwrap().0.to_string();
                assert!(
                    previous.starts_with('#'),
                    "[{section}] {key}: no comment line right above it"
                );
                found.push((section.clone(), key));
            }
        }
        previous = t;
    }
    let mut missing = Vec::new();
    for (sec, keys) in CONFIG_KEYS {
        for key in *keys {
            if !found.iter().any(|(s, k)| s == sec && k == key) {
                missing.push(format!("[{sec}] {key}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys not shown in deploy/config.example.toml: {missing:?}"
    );
}

#[test]
fn kubernetes_config_starts_and_answers_healthy() {
    // The file names an in-cluster DNS name; poll a closed loopback port
    // instead so that the test never leaves the machine.
    assert_starts_healthy(
        "deploy/kubernetes/config.toml",
        &[
            "--config.file",
            "deploy/kubernetes/config.toml",
            "--redis.addr",
            "redis://127.0.0.1:1",
        ],
    );
}

// ---------------------------------------------------------------------------
// Prometheus, Alertmanager, Kubernetes, systemd
// ---------------------------------------------------------------------------

#[test]
fn prometheus_configs_pass_promtool() {
    for file in [
        "deploy/prometheus/prometheus-single-target.yml",
        "deploy/prometheus/prometheus-multi-target.yml",
    ] {
        // rule_files are relative to the config file and point at alerts/,
        // so promtool checks the bundled rules through them as well.
        let mut cmd = Command::new(tool("PROMTOOL", "promtool"));
        cmd.args(["check", "config", file]).current_dir(root());
        let out = run_tool(cmd).unwrap_or_else(|| {
            panic!(
                "promtool not found: the Prometheus configs cannot be checked without it, \
                 so this test fails instead of skipping. Install it (Debian/Ubuntu: \
                 `apt-get install prometheus`) or set PROMTOOL=/path/to/promtool."
            )
        });
        let report = describe(&format!("promtool check config {file}"), &out);
        assert!(out.status.success(), "{report}");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The glob must find both bundled rule files, or Prometheus would
        // run without alerts and say nothing.
        assert!(all.contains("2 rule files found"), "{report}");
    }
}

#[test]
fn multi_target_config_scrapes_through_the_exporter() {
    let text =
        fs::read_to_string(root().join("deploy/prometheus/prometheus-multi-target.yml")).unwrap();
    for needle in [
        "metrics_path: /scrape",
        "http_sd_configs:",
        "/sd",
        "target_label: __param_target",
        "target_label: instance",
        "target_label: __address__",
        // /sd's facts arrive as meta labels; cluster is kept, role never.
        "source_labels: [__meta_redis_vitals_cluster]",
        "target_label: cluster",
        "target_label: addr",
    ] {
        assert!(
            text.contains(needle),
            "multi-target config lacks {needle:?}"
        );
    }
    let rules: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        !rules.contains("__meta_redis_vitals_role") && !rules.contains("honor_labels"),
        "role must not become a target label, and /scrape answers carry no labels to honour"
    );
}

#[test]
fn single_target_config_sets_instance_to_the_node() {
    let text =
        fs::read_to_string(root().join("deploy/prometheus/prometheus-single-target.yml")).unwrap();
    for needle in [
        "metric_relabel_configs:",
        "source_labels: [addr]",
        "regex: (.+)",
        "target_label: instance",
    ] {
        assert!(
            text.contains(needle),
            "single-target config lacks {needle:?}"
        );
    }
}

#[test]
fn alertmanager_config_passes_amtool() {
    let file = "deploy/alertmanager/alertmanager.yml";
    let mut cmd = Command::new(tool("AMTOOL", "amtool"));
    cmd.args(["check-config", file]).current_dir(root());
    let Some(out) = run_tool(cmd) else {
        eprintln!("amtool not installed: skipping the check of {file}");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        describe(&format!("amtool check-config {file}"), &out)
    );
    let text = fs::read_to_string(root().join(file)).unwrap();
    assert!(text.contains("group_by: [alertname, cluster, shard]"));
}

#[test]
fn kubernetes_base_renders() {
    let mut cmd = Command::new(tool("KUBECTL", "kubectl"));
    cmd.args(["kustomize", "deploy/kubernetes"])
        .current_dir(root());
    let Some(out) = run_tool(cmd) else {
        eprintln!("kubectl not installed: skipping `kubectl kustomize deploy/kubernetes`");
        return;
    };
    let report = describe("kubectl kustomize deploy/kubernetes", &out);
    assert!(out.status.success(), "{report}");
    let yaml = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "kind: Deployment",
        "kind: Service",
        "kind: ConfigMap",
        "readOnlyRootFilesystem: true",
        "runAsNonRoot: true",
        "path: /-/healthy",
        "path: /-/ready",
        "name: REDIS_PASSWORD",
        "prometheus.io/scrape: \"true\"",
    ] {
        assert!(
            yaml.contains(needle),
            "rendered base lacks {needle:?}\n{report}"
        );
    }
}

#[test]
fn systemd_unit_is_hardened() {
    let unit = fs::read_to_string(root().join("deploy/systemd/redis-vitals.service")).unwrap();
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for directive in [
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "Restart=on-failure",
        "EnvironmentFile=-/etc/redis-vitals/redis-vitals.env",
        "ExecStart=/usr/local/bin/redis-vitals --config.file /etc/redis-vitals/config.toml",
        // The password as a credential: %d is the credentials directory
        // (systemd >= 249; older versions do not expand
        // ${CREDENTIALS_DIRECTORY} in Environment=).
        "LoadCredential=redis-password:/etc/redis-vitals/redis-password",
        "Environment=REDIS_PASSWORD_FILE=%d/redis-password",
    ] {
        assert!(lines.contains(&directive), "unit lacks {directive:?}");
    }
    assert!(
        lines.iter().any(|l| l.starts_with("MemoryMax=")),
        "unit lacks MemoryMax="
    );
    assert!(
        !lines.iter().any(|l| l.contains("REDIS_PASSWORD=")),
        "the unit puts a password in the environment"
    );
}

/// `systemd-analyze ARGS`, or None after a skip message when it is missing
/// (a failure under CI, where scripts/test.sh installs systemd).
fn systemd_analyze(args: &[&OsStr]) -> Option<Output> {
    let mut cmd = Command::new(tool("SYSTEMD_ANALYZE", "systemd-analyze"));
    cmd.args(args).current_dir(root());
    let out = run_tool(cmd);
    if out.is_none() {
        assert!(
            !in_ci(),
            "CI=true: systemd-analyze missing; scripts/test.sh installs systemd"
        );
        eprintln!("SKIPPED: systemd-analyze not installed (Debian: apt-get install systemd)");
    }
    out
}

/// `systemd-analyze verify` says nothing about the unit: no unknown
/// directive, no unresolvable specifier (it resolves %d in Environment=;
/// an unknown one such as %Z is reported, though with exit status 0, hence
/// the check of its output). verify also wants ExecStart's binary to
/// exist, so the copy it reads runs the binary cargo built instead of
/// /usr/local/bin/redis-vitals.
#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let unit = fs::read_to_string(root().join("deploy/systemd/redis-vitals.service")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("redis-vitals.service");
    fs::write(
        &copy,
        unit.replace(
            "ExecStart=/usr/local/bin/redis-vitals ",
            &format!("ExecStart={EXPORTER} "),
        ),
    )
    .unwrap();
    let Some(out) = systemd_analyze(&[OsStr::new("verify"), copy.as_os_str()]) else {
        return;
    };
    let report = describe("systemd-analyze verify redis-vitals.service", &out);
    assert!(out.status.success(), "{report}");
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify has remarks:\n{report}"
    );
}

/// At most 2.0 in `systemd-analyze security` ("OK" ends at 4.9; 0 is the
/// best). 1.2 when this test was written (systemd 252).
#[test]
fn systemd_unit_exposure_is_at_most_2() {
    let unit = root().join("deploy/systemd/redis-vitals.service");
    let Some(out) = systemd_analyze(&[
        OsStr::new("security"),
        OsStr::new("--offline=true"),
        OsStr::new("--no-pager"),
        unit.as_os_str(),
    ]) else {
        return;
    };
    let report = describe("systemd-analyze security --offline=true", &out);
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for redis-vitals.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure level:\n{report}"));
    eprintln!("systemd-analyze security: exposure {score}");
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{report}");
}

// ---------------------------------------------------------------------------
// Load generator (used by scripts/demo.sh)
// ---------------------------------------------------------------------------

#[test]
fn loadgen_exits_2_when_it_cannot_connect() {
    let port = free_port(); // nothing listens there once the listener is gone
    let mut cmd = Command::new(LOADGEN);
    cmd.args(["--addr", &format!("redis://127.0.0.1:{port}")])
        .args(["--duration", "5s"])
        .env_remove("REDIS_PASSWORD");
    let out = run_tool(cmd).expect("loadgen binary");
    assert_eq!(out.status.code(), Some(2), "{}", describe("loadgen", &out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach"), "{stderr}");
}

#[test]
fn loadgen_runs_a_cache_aside_workload_against_redis() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let server = Command::new(std::env::var("REDIS_SERVER_BIN").unwrap_or("redis-server".into()))
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let _server = match server {
        Ok(c) => Guard(c),
        Err(e) => panic!(
            "cannot start redis-server ({e}): install it (Debian/Ubuntu: apt-get install redis-server)"
        ),
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        thread::sleep(Duration::from_millis(50));
    }

    let mut cmd = Command::new(LOADGEN);
    cmd.args(["--addr", &format!("redis://127.0.0.1:{port}")])
        .args(["--duration", "3s", "--report-interval", "1s"])
        .args(["--keys", "200", "--rate", "500", "--concurrency", "4"])
        .env_remove("REDIS_PASSWORD");
    let out = run_tool(cmd).expect("loadgen binary");
    let report = describe("loadgen", &out);
    assert!(out.status.success(), "{report}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("standalone"), "{report}");
    let last = stdout.lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("done after"), "{report}");
    assert!(last.contains("errors=0"), "{report}");
    // 200 hot keys, 1500 operations: most lookups after the first few
    // hundred are hits.
    let ratio: f64 = last
        .split_whitespace()
        .find_map(|w| w.strip_prefix("hit_ratio="))
        .and_then(|v| v.trim_end_matches('%').parse().ok())
        .unwrap_or_else(|| panic!("no hit ratio in {last:?}"));
    assert!(ratio > 50.0, "{report}");
    let ops: u64 = last
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ops="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no op count in {last:?}"));
    // 3 s at 500/s, with slack for a slow machine, and never far above the
    // limit.
    assert!((500..=1700).contains(&ops), "{report}");
}
