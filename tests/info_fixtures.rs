//! Fixture tests: real `INFO` replies through the parser and the renderer.
//!
//! Our own captures (`tests/fixtures/info/redis-7.0.15-*.txt`) are pinned by
//! golden files, so any change in what the exporter says about a real server
//! shows up in review. Public samples from other projects must not be copied
//! into this repository, nor may full renderings of them, so they are read
//! from the shared fixture directory and only a few values per file are
//! asserted inline.
//!
//! Regenerate the golden files with `UPDATE_GOLDEN=1 cargo test --test
//! info_fixtures`, then read the diff: a golden file is only as right as the
//! person who accepted it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use redis_vitals::expose::state::Observation;
use redis_vitals::expose::{render_observation, Kind, FAMILIES};
use redis_vitals::parse::info::{parse_info, Info};

const ADDR: &str = "127.0.0.1:6379";
const PROMTOOL: &str = "/usr/bin/promtool";
const OWN_PREFIX: &str = "redis-7.0.15-";

/// The public samples the shared directory must hold. Listed by name so that
/// a renamed or deleted sample fails loudly instead of silently shrinking
/// coverage.
const PUBLIC: &[&str] = &[
    "dragonfly-1.12.0-partial.txt",
    "dragonfly-2.0.0-netdata-sanitized.txt",
    "keydb-6.3.4-netdata-sanitized.txt",
    "redis-4.0.9-standalone.txt",
    "redis-5.0.7-standalone.txt",
    "redis-6.0.9-standalone-info-all.txt",
    "redis-7.4.0-master-2-replicas.txt",
    "valkey-8.0-dev-255.255.255-standalone.txt",
    "valkey-9.1.2-netdata-sanitized.txt",
];

// ---------------------------------------------------------------------------
// Fixture loading
// ---------------------------------------------------------------------------

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn own_dir() -> PathBuf {
    manifest_dir().join("tests/fixtures/info")
}

fn golden_dir() -> PathBuf {
    manifest_dir().join("tests/golden")
}

/// The shared directory, or `None` (with a note) outside CI checkouts that
/// lack it.
fn shared_dir() -> Option<PathBuf> {
    let dir = manifest_dir().join("../shared/fixtures/info");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "note: {} is missing; public INFO samples are not checked",
            dir.display()
        );
        None
    }
}

fn read(path: &Path) -> String {
    // A fixture that is not UTF-8 would be a broken copy; the robustness
    // test covers what the parser does with invalid bytes.
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// (file name, text) of our own captures, sorted by name.
fn own_fixtures() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = fs::read_dir(own_dir())
        .unwrap_or_else(|e| panic!("listing {}: {e}", own_dir().display()))
        .map(|e| e.expect("directory entry").path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            (name.starts_with(OWN_PREFIX) && name.ends_with(".txt")).then(|| (name, read(&p)))
        })
        .collect();
    out.sort();
    // Seven captures were taken (README of the shared fixtures); fewer means
    // the copy into the repository went wrong.
    assert_eq!(out.len(), 7, "own INFO captures in {}", own_dir().display());
    out
}

/// (file name, text) of the public samples, or `None` without the shared
/// directory.
fn public_fixtures() -> Option<Vec<(String, String)>> {
    let dir = shared_dir()?;
    Some(
        PUBLIC
            .iter()
            .map(|name| (name.to_string(), read(&dir.join(name))))
            .collect(),
    )
}

fn all_fixtures() -> Vec<(String, String)> {
    let mut all = own_fixtures();
    all.extend(public_fixtures().unwrap_or_default());
    all
}

fn observe(info: Info) -> Observation {
    Observation::from_info(info)
}

fn render(text: &str) -> String {
    render_observation(&observe(parse_info(text)), ADDR, "")
}

// ---------------------------------------------------------------------------
// A small reader for the text exposition we produce
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
    /// The value exactly as written, to catch `NaN`/`+Inf` spellings.
    raw_value: String,
}

/// Parses sample lines. Strict enough for what our encoder writes: quoted
/// label values with `\\`, `\"` and `\n` escapes, no timestamps.
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_sample(l).unwrap_or_else(|| panic!("unparsable sample line: {l:?}")))
        .collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        loop {
            let (start, c) = chars.next()?;
            if c == '}' {
                rest = &body[start + 1..];
                break;
            }
            if c == ',' {
                continue;
            }
            let eq = body[start..].find('=')? + start;
            let key = body[start..eq].to_string();
            while chars.next()?.0 < eq {}
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    other => value.push(other),
                }
            }
            labels.insert(key, value);
        }
    }
    let raw_value = rest.strip_prefix(' ')?.to_string();
    if raw_value.contains(' ') {
        return None;
    }
    let value = raw_value.parse().ok()?;
    Some(Sample {
        name,
        labels,
        value,
        raw_value,
    })
}

/// The value of the one sample of `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let hits: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
        })
        .collect();
    assert!(
        hits.len() <= 1,
        "{name}{labels:?} matches {} samples",
        hits.len()
    );
    hits.first().map(|s| s.value)
}

fn count(samples: &[Sample], name: &str) -> usize {
    samples.iter().filter(|s| s.name == name).count()
}

/// Checks a value written by the encoder against one computed from the raw
/// INFO text. Scaled values (usec to seconds) may differ in the last bit.
#[track_caller]
fn expect(samples: &[Sample], name: &str, labels: &[(&str, &str)], want: f64) {
    let got = value(samples, name, labels).unwrap_or_else(|| panic!("no sample {name}{labels:?}"));
    let tolerance = want.abs() * 1e-12;
    assert!(
        (got - want).abs() <= tolerance,
        "{name}{labels:?}: got {got}, want {want}"
    );
}

#[track_caller]
fn expect_absent(samples: &[Sample], name: &str) {
    assert_eq!(count(samples, name), 0, "{name} should be absent");
}

/// Labels of the single `redis_instance_info` sample.
fn instance_info(samples: &[Sample]) -> &BTreeMap<String, String> {
    let info: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == "redis_instance_info")
        .collect();
    assert_eq!(info.len(), 1, "one redis_instance_info sample");
    &info[0].labels
}

#[track_caller]
fn expect_instance(samples: &[Sample], want: &[(&str, &str)]) {
    let labels = instance_info(samples);
    for (k, v) in want {
        assert_eq!(
            labels.get(*k).map(String::as_str),
            Some(*v),
            "redis_instance_info label {k}"
        );
    }
}

// ---------------------------------------------------------------------------
// 1. Golden files for our own captures
// ---------------------------------------------------------------------------

/// The first differing lines, with a little context, for a readable failure.
fn first_difference(want: &str, got: &str) -> String {
    let w: Vec<&str> = want.lines().collect();
    let g: Vec<&str> = got.lines().collect();
    let Some(i) = (0..w.len().max(g.len())).find(|&i| w.get(i) != g.get(i)) else {
        return "the texts differ only in line endings or a final newline".to_string();
    };
    let mut out = format!(
        "first difference at line {} (golden has {} lines, rendered {}):\n",
        i + 1,
        w.len(),
        g.len()
    );
    for (tag, lines) in [("golden  ", &w), ("rendered", &g)] {
        for line in lines.iter().skip(i).take(6) {
            out.push_str(&format!("  {tag} | {line}\n"));
        }
        if lines.len() <= i {
            out.push_str(&format!("  {tag} | <end of text>\n"));
        }
    }
    out
}

#[test]
fn own_captures_match_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    for (name, text) in own_fixtures() {
        let rendered = render(&text);
        let path = golden_dir().join(name.replace(".txt", ".prom"));
        if update {
            fs::create_dir_all(golden_dir()).expect("creating tests/golden");
            fs::write(&path, &rendered)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            continue;
        }
        match fs::read_to_string(&path) {
            Ok(golden) if golden == rendered => {}
            Ok(golden) => failures.push(format!(
                "{name}: rendering differs from {}\n{}",
                path.display(),
                first_difference(&golden, &rendered)
            )),
            Err(e) => failures.push(format!("{name}: {}: {e}", path.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{}\nIf the change is intended, rerun with UPDATE_GOLDEN=1 and review the diff.",
        failures.join("\n")
    );
}

/// A few values checked against the capture text directly, so that a golden
/// file regenerated without care cannot bless a wrong conversion.
#[test]
fn own_captures_spot_checks() {
    let fixtures: BTreeMap<String, String> = own_fixtures().into_iter().collect();
    let get = |name: &str| samples(&render(&fixtures[name]));

    let s = get("redis-7.0.15-standalone.txt");
    expect_instance(
        &s,
        &[
            ("addr", ADDR),
            ("cluster", ""),
            ("role", "master"),
            ("redis_version", "7.0.15"),
            ("redis_mode", "standalone"),
            ("run_id", "61d7c12bc1800eeb8d2dc9531f011a6235e6cdb3"),
            ("maxmemory_policy", "noeviction"),
            ("engine", "redis"),
            ("engine_version", "7.0.15"),
        ],
    );
    expect(&s, "redis_memory_used_bytes", &[], 1_418_976.0);
    expect(&s, "redis_config_maxclients", &[], 10_000.0);
    expect(&s, "redis_clients_saturation_ratio", &[], 1.0 / 10_000.0);
    expect(&s, "redis_db_keys", &[("db", "db0")], 72.0);
    expect(&s, "redis_db_keys_expiring", &[("db", "db0")], 20.0);
    expect(&s, "redis_db_avg_ttl_seconds", &[("db", "db0")], 3_576.648);
    expect(&s, "redis_db_keys", &[("db", "db1")], 2.0);
    expect(&s, "redis_db_keys", &[("db", "db3")], 3.0);
    assert_eq!(count(&s, "redis_db_keys"), 3);
    expect(&s, "redis_errors_total", &[("err", "ERR")], 3.0);
    expect(&s, "redis_errors_total", &[("err", "MYERR")], 1.0);
    expect(&s, "redis_errors_total", &[("err", "WRONGTYPE")], 1.0);
    expect(&s, "redis_error_replies_total", &[], 5.0);
    expect(&s, "redis_commands_total", &[("cmd", "get")], 2003.0);
    expect(
        &s,
        "redis_commands_duration_seconds_total",
        &[("cmd", "get")],
        480e-6,
    );
    expect(
        &s,
        "redis_commands_rejected_calls_total",
        &[("cmd", "set")],
        1.0,
    );
    expect(
        &s,
        "redis_commands_failed_calls_total",
        &[("cmd", "eval")],
        1.0,
    );
    expect(&s, "redis_commands_total", &[("cmd", "command|docs")], 2.0);
    expect(
        &s,
        "redis_latency_percentiles_seconds",
        &[("cmd", "incr"), ("percentile", "99.9")],
        36.095e-6,
    );
    expect(&s, "redis_cpu_user_seconds_total", &[], 0.065_399);
    expect(&s, "redis_rdb_last_bgsave_status", &[], 1.0);
    expect(&s, "redis_aof_last_write_status", &[], 1.0);
    // rdb_last_bgsave_time_sec:-1: no save has run yet; shown as the peer
    // shows it.
    expect(&s, "redis_rdb_last_bgsave_duration_seconds", &[], -1.0);
    for absent in [
        "redis_cluster_state",
        "redis_cluster_known_nodes",
        "redis_master_link_up",
    ] {
        expect_absent(&s, absent);
    }

    let s = get("redis-7.0.15-master-2-replicas.txt");
    expect(&s, "redis_connected_slaves", &[], 2.0);
    let replica = |port| {
        [
            ("slave_ip", "127.0.0.1"),
            ("slave_port", port),
            ("slave_state", "online"),
        ]
    };
    expect(
        &s,
        "redis_connected_slave_offset_bytes",
        &replica("27012"),
        93_642.0,
    );
    expect(
        &s,
        "redis_connected_slave_offset_bytes",
        &replica("27013"),
        93_642.0,
    );
    expect(
        &s,
        "redis_connected_slave_lag_seconds",
        &replica("27012"),
        1.0,
    );
    expect(&s, "redis_master_repl_offset", &[], 93_642.0);
    expect(&s, "redis_rdb_last_bgsave_duration_seconds", &[], 0.0);

    let s = get("redis-7.0.15-replica.txt");
    expect_instance(&s, &[("role", "slave")]);
    expect(&s, "redis_master_link_up", &[], 1.0);
    expect(&s, "redis_master_last_io_seconds_ago", &[], 2.0);
    expect(&s, "redis_slave_repl_offset", &[], 93_642.0);
    expect(&s, "redis_errors_total", &[("err", "READONLY")], 1.0);
    expect_absent(&s, "redis_master_link_down_since_seconds");
    expect_absent(&s, "redis_connected_slave_offset_bytes");

    let s = get("redis-7.0.15-cluster-master.txt");
    expect_instance(&s, &[("redis_mode", "cluster"), ("role", "master")]);
    expect(&s, "redis_errors_total", &[("err", "MOVED")], 67.0);
    expect(&s, "redis_errors_total", &[("err", "CROSSSLOT")], 1.0);
    expect(
        &s,
        "redis_commands_rejected_calls_total",
        &[("cmd", "get")],
        21.0,
    );
    expect(&s, "redis_cluster_connections", &[], 10.0);
    // 1 client + 1 replica + 10 cluster bus links.
    expect(&s, "redis_clients_saturation_ratio", &[], 12.0 / 10_000.0);
    expect_absent(&s, "redis_cluster_state");

    let s = get("redis-7.0.15-cluster-replica-master-down.txt");
    expect(&s, "redis_master_link_up", &[], 0.0);
    expect(&s, "redis_master_link_down_since_seconds", &[], 16.0);
    expect(&s, "redis_slave_repl_offset", &[], 2_595.0);
    // master_last_io_seconds_ago:-1 while the link is down.
    expect_absent(&s, "redis_master_last_io_seconds_ago");
}

// ---------------------------------------------------------------------------
// 2. Public samples: inline expectations and promtool
// ---------------------------------------------------------------------------

/// Runs `promtool check metrics` on `text`; returns its complaints, if any.
fn promtool_problems(text: &str) -> Option<String> {
    // A missing promtool must fail the test: skipping would let invalid
    // exposition through unnoticed.
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {PROMTOOL}: {e} (promtool is required)"));
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(text.as_bytes())
        .expect("writing to promtool");
    let out = child.wait_with_output().expect("waiting for promtool");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    (!out.status.success() || !stdout.trim().is_empty() || !stderr.trim().is_empty())
        .then(|| format!("promtool exited with {}:\n{stdout}{stderr}", out.status))
}

/// Expectations for one public sample; every value was read off the raw text.
fn check_public(name: &str, info: &Info, s: &[Sample]) {
    expect(s, "redis_up", &[], 1.0);
    match name {
        "redis-4.0.9-standalone.txt" => {
            assert_eq!(info.field_count(), 102);
            assert_eq!(info.sections.len(), 9);
            expect_instance(
                s,
                &[
                    ("redis_version", "4.0.9"),
                    ("engine", "redis"),
                    ("engine_version", "4.0.9"),
                    ("role", "master"),
                    ("redis_mode", "standalone"),
                    ("run_id", "e30775c854539d42ad26cf9a9933bfbb74002537"),
                    ("maxmemory_policy", "noeviction"),
                ],
            );
            expect(s, "redis_memory_used_bytes", &[], 840_400.0);
            expect(s, "redis_uptime_in_seconds", &[], 10_277.0);
            expect(s, "redis_keyspace_hits_total", &[], 98.0);
            expect(s, "redis_keyspace_misses_total", &[], 2.0);
            expect(s, "redis_cpu_sys_seconds_total", &[], 5.84);
            expect(s, "redis_mem_fragmentation_ratio", &[], 4.5);
            expect(s, "redis_db_keys", &[("db", "db0")], 1.0);
            // 4.0 has no maxclients in INFO (the poller asks CONFIG GET),
            // no commandstats in the default sections and no errorstats.
            for absent in [
                "redis_config_maxclients",
                "redis_clients_saturation_ratio",
                "redis_commands_total",
                "redis_errors_total",
                "redis_error_replies_total",
                "redis_latency_percentiles_seconds",
            ] {
                expect_absent(s, absent);
            }
        }
        "redis-5.0.7-standalone.txt" => {
            assert_eq!(info.field_count(), 121);
            expect_instance(
                s,
                &[
                    ("redis_version", "5.0.7"),
                    ("engine", "redis"),
                    ("run_id", "70b7d0be00ff242faf077630e9a6d26cde862895"),
                ],
            );
            expect(s, "redis_memory_used_bytes", &[], 854_360.0);
            expect(s, "redis_db_keys", &[("db", "db0")], 3.0);
            expect(s, "redis_cpu_sys_seconds_total", &[], 103.856);
            expect(s, "redis_latest_fork_seconds", &[], 230e-6);
            expect(s, "redis_commands_processed_total", &[], 119.0);
        }
        "redis-6.0.9-standalone-info-all.txt" => {
            assert_eq!(info.field_count(), 135);
            assert_eq!(info.commands.len(), 7);
            expect_instance(s, &[("redis_version", "6.0.9"), ("engine", "redis")]);
            expect(s, "redis_memory_used_bytes", &[], 867_160.0);
            expect(s, "redis_db_keys", &[("db", "db0")], 4.0);
            expect(s, "redis_latest_fork_seconds", &[], 810e-6);
            expect(s, "redis_commands_total", &[("cmd", "info")], 132.0);
            expect(
                s,
                "redis_commands_duration_seconds_total",
                &[("cmd", "info")],
                37_296e-6,
            );
            assert_eq!(count(s, "redis_commands_total"), 7);
            // The pre-6.2 format has no rejected/failed counts: absent, not 0.
            expect_absent(s, "redis_commands_rejected_calls_total");
            expect_absent(s, "redis_commands_failed_calls_total");
        }
        "redis-7.4.0-master-2-replicas.txt" => {
            assert_eq!(info.field_count(), 202);
            assert_eq!(info.sections.len(), 13);
            assert_eq!(info.commands.len(), 86);
            assert_eq!(info.latencies.len(), 86);
            expect_instance(
                s,
                &[
                    ("redis_version", "7.4.0"),
                    ("engine", "redis"),
                    ("role", "master"),
                    ("redis_mode", "standalone"),
                ],
            );
            expect(s, "redis_memory_used_bytes", &[], 27_514_219_712.0);
            expect(s, "redis_memory_used_rss_bytes", &[], 26_951_938_048.0);
            expect(s, "redis_total_system_memory_bytes", &[], 33_672_261_632.0);
            expect(s, "redis_memory_max_bytes", &[], 0.0);
            expect_absent(s, "redis_memory_used_ratio");
            expect(s, "redis_config_maxclients", &[], 10_000.0);
            // (536 clients + 2 replicas + 0 cluster links) / 10000.
            expect(s, "redis_clients_saturation_ratio", &[], 538.0 / 10_000.0);
            expect(s, "redis_blocked_clients", &[], 10.0);
            expect(s, "redis_db_keys", &[("db", "db0")], 25_472_026.0);
            expect(s, "redis_db_keys_expiring", &[("db", "db0")], 24_849_338.0);
            expect(s, "redis_db_avg_ttl_seconds", &[("db", "db0")], 672_182.855);
            expect(s, "redis_db_keys", &[("db", "db1")], 18.0);
            expect(
                s,
                "redis_db_avg_ttl_seconds",
                &[("db", "db1")],
                145_372_776.312,
            );
            expect(s, "redis_connected_slaves", &[], 2.0);
            expect(s, "redis_master_repl_offset", &[], 127_763_635_259.0);
            let slave = |ip| {
                [
                    ("slave_ip", ip),
                    ("slave_port", "6379"),
                    ("slave_state", "online"),
                ]
            };
            expect(
                s,
                "redis_connected_slave_offset_bytes",
                &slave("192.168.150.63"),
                127_763_393_630.0,
            );
            expect(
                s,
                "redis_connected_slave_offset_bytes",
                &slave("192.168.150.89"),
                127_763_585_576.0,
            );
            expect(
                s,
                "redis_connected_slave_lag_seconds",
                &slave("192.168.150.89"),
                0.0,
            );
            assert_eq!(count(s, "redis_connected_slave_offset_bytes"), 2);
            for (err, n) in [
                ("BUSYKEY", 3.0),
                ("ERR", 228.0),
                ("EXECABORT", 35.0),
                ("LOADING", 588.0),
                ("NOSCRIPT", 1.0),
            ] {
                expect(s, "redis_errors_total", &[("err", err)], n);
            }
            assert_eq!(count(s, "redis_errors_total"), 5);
            expect(s, "redis_error_replies_total", &[], 855.0);
            let list = [("cmd", "client|list")];
            expect(s, "redis_commands_total", &list, 5.0);
            expect(s, "redis_commands_duration_seconds_total", &list, 17_739e-6);
            expect(s, "redis_commands_rejected_calls_total", &list, 0.0);
            expect(s, "redis_commands_failed_calls_total", &list, 0.0);
            expect(s, "redis_commands_total", &[("cmd", "get")], 32_163_539.0);
            assert_eq!(count(s, "redis_commands_total"), 86);
            expect(
                s,
                "redis_latency_percentiles_seconds",
                &[("cmd", "client|list"), ("percentile", "99.9")],
                6_422.527e-6,
            );
            expect(
                s,
                "redis_latency_percentiles_seconds",
                &[("cmd", "set"), ("percentile", "50")],
                9.023e-6,
            );
            assert_eq!(count(s, "redis_latency_percentiles_seconds"), 86 * 3);
            expect(s, "redis_rdb_bgsave_in_progress", &[], 1.0);
            expect(s, "redis_rdb_last_bgsave_duration_seconds", &[], 220.0);
            expect(
                s,
                "redis_rdb_last_save_timestamp_seconds",
                &[],
                1_730_045_679.0,
            );
            expect(s, "redis_latest_fork_seconds", &[], 1.027_383);
            expect(s, "redis_sync_full_total", &[], 766.0);
            expect(s, "redis_sync_partial_err_total", &[], 766.0);
            expect(
                s,
                "redis_cpu_user_children_seconds_total",
                &[],
                734_155.152_644,
            );
            expect(s, "redis_net_output_bytes_total", &[], 1_671_966_520_991.0);
            expect(s, "redis_pubsub_channels", &[], 1.0);
        }
        "valkey-8.0-dev-255.255.255-standalone.txt" => {
            assert_eq!(info.field_count(), 211);
            expect_instance(
                s,
                &[
                    ("engine", "valkey"),
                    ("engine_version", "255.255.255"),
                    ("redis_version", "7.2.4"),
                    // Valkey writes `server_mode:`, not `redis_mode:`.
                    ("redis_mode", "standalone"),
                    ("role", "master"),
                ],
            );
            expect(s, "redis_memory_used_bytes", &[], 4_757_704.0);
            expect(s, "redis_errors_total", &[("err", "ERR")], 55.0);
            expect(s, "redis_error_replies_total", &[], 55.0);
            expect(s, "redis_config_maxclients", &[], 10_000.0);
            expect(s, "redis_keyspace_hits_total", &[], 877.0);
            expect(s, "redis_keyspace_misses_total", &[], 98.0);
            // An empty Keyspace section yields db0 at 0, as the peer shows
            // it, and no other database.
            expect(s, "redis_db_keys", &[("db", "db0")], 0.0);
            expect(s, "redis_db_keys_expiring", &[("db", "db0")], 0.0);
            assert_eq!(s.iter().filter(|x| x.name == "redis_db_keys").count(), 1);
        }
        "valkey-9.1.2-netdata-sanitized.txt" => {
            assert_eq!(info.field_count(), 236);
            assert_eq!(info.sections.len(), 16);
            expect_instance(
                s,
                &[
                    ("engine", "valkey"),
                    ("engine_version", "9.1.2"),
                    ("redis_version", "7.2.4"),
                    ("redis_mode", "standalone"),
                ],
            );
            expect(s, "redis_memory_used_bytes", &[], 946_920.0);
            expect(s, "redis_replication_backlog_bytes", &[], 10_485_760.0);
            let get = [("cmd", "config|get")];
            expect(s, "redis_commands_total", &get, 2.0);
            expect(s, "redis_commands_duration_seconds_total", &get, 8e-6);
            expect(
                s,
                "redis_latency_percentiles_seconds",
                &[("cmd", "config|get"), ("percentile", "50")],
                1.003e-6,
            );
            // rdb_last_bgsave_time_sec:-1 means "never saved", shown as is.
            expect(s, "redis_rdb_last_bgsave_duration_seconds", &[], -1.0);
            expect_absent(s, "redis_errors_total");
        }
        "keydb-6.3.4-netdata-sanitized.txt" => {
            assert_eq!(info.field_count(), 162);
            assert!(info.has_section("KeyDB"));
            expect_instance(
                s,
                &[
                    ("engine", "keydb"),
                    ("engine_version", "6.3.4"),
                    ("redis_version", "6.3.4"),
                    ("redis_mode", "standalone"),
                ],
            );
            expect(s, "redis_connected_clients", &[], 2.0);
            expect(s, "redis_memory_used_bytes", &[], 2_297_992.0);
            expect(s, "redis_config_maxclients", &[], 10_000.0);
            expect(s, "redis_cpu_sys_seconds_total", &[], 0.027_463);
            expect(s, "redis_rdb_last_bgsave_duration_seconds", &[], -1.0);
        }
        "dragonfly-2.0.0-netdata-sanitized.txt" => {
            assert_eq!(info.field_count(), 194);
            assert_eq!(info.sections.len(), 17);
            expect_instance(
                s,
                &[
                    ("engine", "dragonfly"),
                    ("engine_version", "df-v2.0.0"),
                    ("redis_version", "7.4.0"),
                    ("redis_mode", "standalone"),
                    ("role", "master"),
                ],
            );
            expect(s, "redis_memory_used_bytes", &[], 6_784_704.0);
            expect(s, "redis_memory_max_bytes", &[], 48_540_578_611.0);
            expect(
                s,
                "redis_memory_used_ratio",
                &[],
                6_784_704.0 / 48_540_578_611.0,
            );
            // `db0:keys=0,expires=0,hits=0,misses=0,hit_ratio=0.00,avg_ttl=-1`:
            // the extra fields are ignored and avg_ttl=-1 reads as "no TTL".
            assert_eq!(info.keyspace.len(), 1);
            expect(s, "redis_db_keys", &[("db", "db0")], 0.0);
            expect(s, "redis_db_keys_expiring", &[("db", "db0")], 0.0);
            expect(s, "redis_db_avg_ttl_seconds", &[("db", "db0")], 0.0);
            expect(s, "redis_cpu_sys_seconds_total", &[], 0.625_96);
            expect(s, "redis_rdb_last_bgsave_status", &[], 1.0);
        }
        "dragonfly-1.12.0-partial.txt" => {
            assert_eq!(info.field_count(), 40);
            assert_eq!(info.sections, ["Server", "Clients", "Memory"]);
            expect_instance(
                s,
                &[
                    ("engine", "dragonfly"),
                    ("engine_version", "df-v1.12.0"),
                    ("redis_version", "6.2.11"),
                    ("maxmemory_policy", "eviction"),
                    ("role", ""),
                ],
            );
            expect(s, "redis_connected_clients", &[], 6.0);
            expect(s, "redis_memory_used_bytes", &[], 763_690_576.0);
            expect(s, "redis_memory_max_bytes", &[], 1_599_999_180.0);
            expect(
                s,
                "redis_memory_used_ratio",
                &[],
                763_690_576.0 / 1_599_999_180.0,
            );
            // Cut off before Stats: no counters at all, and nothing that
            // depends on the role.
            expect_absent(s, "redis_keyspace_hits_total");
            expect_absent(s, "redis_master_link_up");
            expect_absent(s, "redis_connected_slave_offset_bytes");
        }
        other => panic!("no expectations written for public sample {other}"),
    }
}

/// CI always has the shared fixtures beside the checkout: their absence
/// there is a broken setup, not a reason to check less.
#[test]
fn shared_fixtures_are_there_under_ci() {
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        assert!(
            shared_dir().is_some(),
            "CI is set but ../shared/fixtures/info is missing"
        );
    }
}

#[test]
#[cfg_attr(
    not(shared_fixtures),
    ignore = "../shared/fixtures is missing: the public INFO samples are not checked"
)]
fn public_samples_parse_and_render() {
    let fixtures = public_fixtures().expect("../shared/fixtures/info");
    for (name, text) in fixtures {
        let info = parse_info(&text);
        let s = samples(&render(&text));
        check_public(&name, &info, &s);
    }
}

#[test]
fn every_rendering_passes_promtool() {
    let mut failures = Vec::new();
    for (name, text) in all_fixtures() {
        if let Some(problem) = promtool_problems(&render(&text)) {
            failures.push(format!("{name}: {problem}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Series must be unique within one rendering: Prometheus rejects a scrape
/// with duplicate series outright.
#[test]
fn no_duplicate_series() {
    for (name, text) in all_fixtures() {
        let mut seen = BTreeSet::new();
        for s in samples(&render(&text)) {
            let key = format!("{}{:?}", s.name, s.labels);
            assert!(seen.insert(key.clone()), "{name}: duplicate series {key}");
        }
    }
}

/// A counter that goes negative breaks `rate()` forever after; a server
/// reporting -1 for "unknown" must yield no sample instead.
#[test]
fn counters_are_never_negative() {
    let counters: BTreeSet<&str> = FAMILIES
        .iter()
        .filter(|f| f.kind == Kind::Counter)
        .map(|f| f.name)
        .collect();
    let mut failures = Vec::new();
    for (name, text) in all_fixtures() {
        for s in samples(&render(&text)) {
            if counters.contains(s.name.as_str()) && s.value < 0.0 {
                failures.push(format!(
                    "{name}: {}{:?} = {}",
                    s.name, s.labels, s.raw_value
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "negative counters:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// 3. Robustness: truncated and corrupted replies
// ---------------------------------------------------------------------------

/// Deterministic so that a failure reproduces; no crate needed for this.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// FNV-1a, to give each fixture its own seed.
fn seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1
}

/// Bytes that change how a line is read, so mutations hit the parser's
/// structure and not only the values.
const STRUCTURAL: &[u8] = b":=,#\r\n-+.0123456789 \xff\x00";

fn mutate(text: &[u8], rng: &mut XorShift) -> Vec<u8> {
    let mut bytes = text.to_vec();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(bytes.len());
        bytes[at] = if rng.below(2) == 0 {
            STRUCTURAL[rng.below(STRUCTURAL.len())]
        } else {
            rng.next() as u8
        };
    }
    bytes
}

/// Renders a corrupted reply; every line must still parse (so label values
/// taken from the reply are escaped) and every sample value must be finite.
fn check_survives(name: &str, what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let rendered = render(&text);
    for line in rendered
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let sample = parse_sample(line)
            .unwrap_or_else(|| panic!("{name} ({what}): unparsable sample line {line:?}"));
        let value = sample.raw_value.as_str();
        assert!(
            sample.value.is_finite() && !value.contains("NaN") && !value.contains("Inf"),
            "{name} ({what}): non-finite sample {line:?}"
        );
    }
}

#[test]
fn truncated_and_mutated_replies_never_panic() {
    const CUTS: usize = 97;
    const MUTATIONS: usize = 200;
    for (name, text) in all_fixtures() {
        let bytes = text.as_bytes();
        for i in 0..CUTS {
            let cut = i * bytes.len() / (CUTS - 1);
            check_survives(&name, &format!("prefix of {cut} bytes"), &bytes[..cut]);
        }
        let mut rng = XorShift(seed(&name));
        for i in 0..MUTATIONS {
            check_survives(&name, &format!("mutation {i}"), &mutate(bytes, &mut rng));
        }
    }
}

// ---------------------------------------------------------------------------
// 4. The catalogue
// ---------------------------------------------------------------------------

#[test]
fn catalogue_names_follow_conventions() {
    let mut names = BTreeSet::new();
    for f in FAMILIES {
        assert!(names.insert(f.name), "{} listed twice", f.name);
        assert!(
            f.name.starts_with("redis_"),
            "{} lacks the redis_ prefix",
            f.name
        );
        assert!(!f.help.is_empty(), "{} has no help", f.name);
        match f.kind {
            Kind::Counter => assert!(
                f.name.ends_with("_total"),
                "counter {} lacks _total",
                f.name
            ),
            Kind::Gauge => assert!(
                !f.name.ends_with("_total"),
                "gauge {} ends in _total",
                f.name
            ),
        }
    }
}

#[test]
fn every_rendered_family_is_catalogued() {
    let kinds: BTreeMap<&str, Kind> = FAMILIES.iter().map(|f| (f.name, f.kind)).collect();
    for (name, text) in all_fixtures() {
        let rendered = render(&text);
        for s in samples(&rendered) {
            assert!(
                kinds.contains_key(s.name.as_str()),
                "{name}: {} is not in FAMILIES",
                s.name
            );
        }
        for line in rendered.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (family, kind) = rest.split_once(' ').expect("TYPE line has a kind");
                let want = match kinds.get(family) {
                    Some(Kind::Counter) => "counter",
                    Some(Kind::Gauge) => "gauge",
                    None => panic!("{name}: TYPE for uncatalogued {family}"),
                };
                assert_eq!(kind, want, "{name}: TYPE of {family}");
            }
        }
    }
}
