//! The real binary as an operator runs it: secrets never leak anywhere it
//! writes or serves, bad configuration exits before binding, the full output
//! passes `promtool check metrics`, SIGTERM shuts down cleanly.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{free_port, http_get, wait_until, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_redis-vitals");

struct Running {
    child: Child,
    addr: std::net::SocketAddr,
}

fn spawn(args: &[&str], env: &[(&str, &str)]) -> Running {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--web.listen-address",
        &listen,
        "--poll.interval",
        "300ms",
        "--poll.timeout",
        "250ms",
        "--poll.max-backoff",
        "600ms",
    ])
    .args(args)
    .env_remove("REDIS_ADDR")
    .env_remove("REDIS_PASSWORD")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn redis-vitals");
    let addr = listen.parse().unwrap();
    wait_until(
        Duration::from_secs(10),
        "redis-vitals to serve /-/healthy",
        || std::net::TcpStream::connect(addr).ok().map(|_| ()),
    );
    Running { child, addr }
}

/// SIGTERM, then everything the process wrote, and its exit status.
fn terminate(mut r: Running) -> (String, std::process::ExitStatus) {
    let pid = r.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = wait_until(
        Duration::from_secs(10),
        "redis-vitals to exit on SIGTERM",
        || r.child.try_wait().ok().flatten(),
    );
    let mut out = String::new();
    r.child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    r.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (out, status)
}

#[test]
fn secrets_never_leak() {
    let env_pw = "EnvPw-9f2c7a";
    let url_pw = "UrlPw-41d8e0";
    let file_pw = "FilePw-77ab31";
    let wrong_pw = "WrongPw-c0ffee";
    let a = RedisServer::start(&["--requirepass", env_pw]);
    let b = RedisServer::start(&["--requirepass", url_pw]);
    let c = RedisServer::start(&["--requirepass", file_pw]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[redis]\naddr = [\"{}\", \"redis://:{url_pw}@{}\", \"redis://:{wrong_pw}@{}\"]\n\n[[targets]]\naddr = \"{}\"\npassword = \"{file_pw}\"\n",
            a.addr(),
            b.addr(),
            c.addr(),
            c.url().replace("127.0.0.1", "localhost"),
        ),
    )
    .unwrap();
    let r = spawn(
        &[
            "--config.file",
            cfg.to_str().unwrap(),
            "--log.level",
            "trace",
        ],
        &[("REDIS_PASSWORD", env_pw), ("RUST_LOG", "trace")],
    );
    let addr = r.addr;
    wait_until(Duration::from_secs(10), "every node polled", || {
        (http_get(addr, "/-/ready").0 == 200).then_some(())
    });
    // Let a few polls (and the wrong password's auth failures) happen.
    wait_until(
        Duration::from_secs(10),
        "an auth failure to be counted",
        || {
            // Every reason's series exists from the start at 0: look for
            // an auth count of at least one.
            let (_, m) = http_get(addr, "/metrics");
            m.lines()
                .any(|l| {
                    l.starts_with("redis_vitals_poll_errors_total{")
                        && l.contains("reason=\"auth\"")
                        && !l.ends_with(" 0")
                })
                .then_some(())
        },
    );
    let mut served = String::new();
    for path in ["/metrics", "/", "/sd", "/-/ready", "/-/healthy", "/nope"] {
        served.push_str(&http_get(addr, path).1);
    }
    served.push_str(&http_get(addr, &format!("/scrape?target={}", a.addr())).1);
    served.push_str(
        &http_get(
            addr,
            &format!("/scrape?target=redis://:{url_pw}@{}", b.addr()),
        )
        .1,
    );
    let (logs, status) = terminate(r);
    assert!(
        status.success(),
        "exit status {status} after SIGTERM; output:\n{logs}"
    );
    assert!(
        logs.contains("poll"),
        "trace logs were expected, got:\n{logs}"
    );
    assert!(served.contains("redis_up"), "{served}");
    for pw in [env_pw, url_pw, file_pw, wrong_pw] {
        assert!(
            !logs.contains(pw),
            "password {pw} leaked into the logs:\n{logs}"
        );
        assert!(
            !served.contains(pw),
            "password {pw} leaked into an HTTP page"
        );
    }
}

#[test]
fn bad_config_exits_before_binding_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad_file = dir.path().join("bad.toml");
    std::fs::write(&bad_file, "[poll]\ninterval = \"5s\"\ntimout = \"1s\"\n").unwrap();
    let bad_value = dir.path().join("bad-value.toml");
    std::fs::write(&bad_value, "[poll]\ninterval = \"soon\"\n").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--poll.interval".into(), "soon".into()],
            "poll.interval",
        ),
        (vec!["--poll.timeout".into(), "10s".into()], "poll.timeout"),
        (
            vec!["--config.file".into(), bad_file.to_str().unwrap().into()],
            "timout",
        ),
        (
            vec!["--config.file".into(), bad_value.to_str().unwrap().into()],
            "poll.interval",
        ),
        (
            vec!["--redis.addr".into(), "redis://:Sekrit@h:1/notadb".into()],
            "redis.addr[0]",
        ),
        (vec!["--log.format".into(), "xml".into()], "log.format"),
        (
            vec!["--config.file".into(), "/nonexistent/x.toml".into()],
            "config.file",
        ),
    ];
    for (args, key) in cases {
        let port = free_port();
        let out = Command::new(BIN)
            .args(&args)
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
            .env_remove("REDIS_ADDR")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(key),
            "{args:?}: message does not name {key}: {stderr}"
        );
        assert!(!stderr.contains("Sekrit"), "{stderr}");
        assert!(
            !stderr.contains("started"),
            "{args:?} got as far as starting: {stderr}"
        );
        // Nothing was bound: the port is still free.
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("port was left bound");
    }
}

#[test]
fn full_output_passes_promtool_check_metrics() {
    let master = RedisServer::start(&[]);
    let replica = common::start_replica_of(&master, &[]);
    master.cli(&["SET", "a", "1"]);
    master.cli(&["GET", "a"]);
    master.cli(&["GET", "b"]);
    let _ = master.cli_raw(&["NOSUCHCOMMAND"]);
    let r = spawn(
        &[
            "--redis.addr",
            &master.addr(),
            "--redis.addr",
            &replica.addr(),
            "--redis.addr",
            "127.0.0.1:1",
        ],
        &[],
    );
    let addr = r.addr;
    // Lookups while the exporter watches, so that windowed and lag series
    // exist too.
    let text = wait_until(Duration::from_secs(10), "hit ratio and lag series", || {
        master.command(&["GET", "a"]);
        let (_, m) = http_get(addr, "/metrics");
        (m.contains("redis_keyspace_hit_ratio") && m.contains("redis_replication_lag_seconds"))
            .then_some(m)
    });
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (the README test command installs it)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics:\n{report}"
    );
    let (logs, status) = terminate(r);
    assert!(status.success(), "{logs}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let r = spawn(
        &[
            "--redis.addr",
            "127.0.0.1:1",
            "--log.format",
            "json",
            "--log.level",
            "debug",
        ],
        &[],
    );
    let addr = r.addr;
    wait_until(
        Duration::from_secs(10),
        "the unreachable node to be polled",
        || (http_get(addr, "/-/ready").0 == 200).then_some(()),
    );
    let (logs, status) = terminate(r);
    assert!(status.success());
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "{logs}");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v.get("level").is_some() && v.get("message").is_some(),
            "{line}"
        );
    }
    assert!(logs.contains("\"reason\":\"connect\""), "{logs}");
}
