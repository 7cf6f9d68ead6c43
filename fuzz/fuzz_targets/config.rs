//! The configuration loader: `Config::from_args` with `--config.file`
//! pointing at the fuzzed TOML, plus fuzzed flag values. Must return Ok or
//! Err, never panic; an Ok configuration keeps its validated invariants.
//!
//! Input: TOML text, then NUL-separated flag chunks whose first byte picks
//! the flag and whose rest is its value (`--flag=value`, so a value never
//! reads as `--help`/`--version`, which would exit the process).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use redis_vitals::config::Config;
use redis_vitals_fuzz::skip_known_bugs;

const FLAGS: &[&str] = &[
    "--redis.addr",
    "--redis.user",
    "--redis.password-file",
    "--redis.config-command",
    "--redis.maxclients",
    "--redis.tls-ca-file",
    "--redis.tls-cert-file",
    "--redis.tls-key-file",
    "--redis.tls-server-name",
    "--redis.cluster",
    "--poll.interval",
    "--poll.timeout",
    "--poll.concurrency",
    "--poll.config-refresh",
    "--poll.max-backoff",
    "--signals.hit-ratio-window",
    "--signals.lag-history",
    "--cluster.refresh-interval",
    "--web.listen-address",
    "--web.telemetry-path",
    "--log.level",
    "--log.format",
    "--poll.detail-interval",
    "--web.config.file",
    "--redis.tls-insecure-skip-verify",
];

/// One file per fuzzing process, rewritten for every input.
fn config_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("redis-vitals-fuzz-{}.toml", std::process::id()))
    })
}

/// Paths the loader would read that never end or block (devices, FIFOs,
/// procfs); `002f` is `/` as a TOML `\u` escape.
fn dangerous(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    ["/dev", "/proc", "/sys", "/run", "002f"]
        .iter()
        .any(|p| lower.contains(p))
}

/// Known: `poll.interval * 2` overflows for intervals above u64::MAX/2
/// seconds, which need a number of 12 digits or more.
fn has_long_number(text: &str) -> bool {
    text.as_bytes()
        .split(|b| !b.is_ascii_digit())
        .any(|run| run.len() >= 12)
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0);
    let toml = String::from_utf8_lossy(parts.next().unwrap_or(&[]));
    let mut args = vec![
        "redis-vitals".to_string(),
        format!("--config.file={}", config_path().display()),
    ];
    for chunk in parts {
        let Some((&pick, value)) = chunk.split_first() else {
            continue;
        };
        let flag = FLAGS[usize::from(pick) % FLAGS.len()];
        if flag == "--redis.tls-insecure-skip-verify" {
            args.push(flag.to_string());
        } else {
            args.push(format!("{flag}={}", String::from_utf8_lossy(value)));
        }
    }
    if dangerous(&toml) || args.iter().any(|a| dangerous(a)) {
        return;
    }
    if skip_known_bugs() && (has_long_number(&toml) || args.iter().any(|a| has_long_number(a))) {
        return;
    }
    std::fs::write(config_path(), toml.as_bytes()).expect("write config");
    if let Ok(c) = Config::from_args(&args) {
        assert!(!c.targets.is_empty());
        assert!(c.poll.interval >= Duration::from_millis(50));
        assert!(!c.poll.timeout.is_zero() && c.poll.timeout <= c.poll.interval);
        assert!((1..=4096).contains(&c.poll.concurrency));
        assert!(c.poll.max_backoff >= c.poll.interval);
        assert!(c.hit_ratio_window >= c.poll.interval);
        assert!(c.telemetry_path.starts_with('/') && c.telemetry_path.len() > 1);
        let mut addrs: Vec<_> = c.targets.iter().map(|t| &t.addr).collect();
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), c.targets.len());
        for t in &c.targets {
            if let Some(pw) = &t.password {
                let pw = pw.expose();
                if pw.len() >= 12 {
                    assert!(!format!("{c:?}").contains(pw), "password in Config's Debug");
                }
            }
        }
    }
});
