//! Property tests: no parser, the config loader or the renderer panics on
//! any input, and what they accept keeps its invariants.
//!
//! Inputs come from three kinds of generators: arbitrary text (unicode,
//! control characters, lone CR), text built from the grammar of each reply
//! (INFO lines, CLUSTER NODES columns, CLUSTER SHARDS value trees, TOML
//! sections) with hostile values mixed in (huge, negative, fractional,
//! `inf`/`nan`, empty), and well-formed models that must parse back to what
//! was written.
//!
//! Runs are deterministic (fixed seed, no persistence files) and short: the
//! whole file runs in seconds in a debug build. `PROPTEST_CASES` and
//! `PROPTEST_RNG_SEED` override the case count and the seed for a longer or
//! different exploration. The coverage-guided side of this is in `fuzz/`
//! (see docs/fuzzing.md).
//!
//! Some tests pin bugs these properties found (listed in docs/fuzzing.md,
//! all fixed).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};
use redis::{PushKind, Value, VerbatimFormat};

use redis_vitals::config::Config;
use redis_vitals::expose::render_observation;
use redis_vitals::expose::state::Observation;
use redis_vitals::parse::cluster::{
    parse_cluster_info, parse_cluster_info_lenient, parse_cluster_nodes,
    parse_cluster_nodes_lenient, parse_cluster_shards, ClusterInfo, Health, NodeLine, ParseError,
    Shard, ShardRole, CLUSTER_SLOTS, MAX_SLOT,
};
use redis_vitals::parse::info::{parse_info, parse_number, Info};
use redis_vitals::redis::target::{parse_addr, redact_url, Endpoint};

// ---------------------------------------------------------------------------
// Runner settings
// ---------------------------------------------------------------------------

/// `cases` unless `PROPTEST_CASES` is set; a fixed seed unless
/// `PROPTEST_RNG_SEED` is set; never writes regression files.
fn config(cases: u32) -> ProptestConfig {
    let base = ProptestConfig::default();
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            base.cases
        } else {
            cases
        },
        rng_seed: if std::env::var_os("PROPTEST_RNG_SEED").is_some() {
            base.rng_seed
        } else {
            RngSeed::Fixed(0x7265_6469_735f_7669)
        },
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..base
    }
}

// ---------------------------------------------------------------------------
// Shared generators
// ---------------------------------------------------------------------------

/// Text a server could put where a number belongs: real numbers, numbers
/// out of every range we parse into, and things that only look numeric.
fn num_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<u64>().prop_map(|n| n.to_string()),
        2 => (0u64..100_000).prop_map(|n| n.to_string()),
        2 => any::<i64>().prop_map(|n| n.to_string()),
        2 => any::<f64>().prop_map(|n| n.to_string()),
        1 => "[0-9]{19,60}",
        1 => "-?[0-9]{0,6}\\.[0-9]{0,6}",
        1 => prop::sample::select(vec![
            "", "-", "+", ".", "-0", "+0", "+7", ".5", "5.", "1e3", "1e308", "1e309", "-1e999",
            "inf", "-inf", "+Inf", "infinity", "NaN", "nan", " 12 ", "\t3", "0x10", "1_000",
            "18446744073709551615", "18446744073709551616", "-9223372036854775809",
            "340282366920938463463374607431768211456", "٣", "１２",
        ])
        .prop_map(str::to_owned),
        1 => "\\PC{0,8}",
    ]
}

/// Arbitrary text, weighted towards the characters parsers split on.
fn junk() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => any::<String>(),
        2 => "[:,=@#\\[\\]\\-<>?\r\n\t 0-9a-z]{0,60}",
        1 => "\\PC{0,40}",
        1 => "[\\x00-\\x1f\\x7f\u{80}-\u{10ffff}]{0,16}",
    ]
}

fn eol() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "\r\n", "\r\n", "\r\n", "\n", "\r", "", "\r\r\n", "\n\r",
    ])
}

/// `k=v,k=v` with keys drawn from `keys` (and some unknown), in any order,
/// repeated or missing.
fn kv_list(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    let key = prop_oneof![
        6 => prop::sample::select(keys).prop_map(str::to_owned),
        1 => "[a-z_.0-9]{0,8}",
    ];
    let item = prop_oneof![
        8 => (key, num_text()).prop_map(|(k, v)| format!("{k}={v}")),
        1 => "[^,\r\n]{0,8}",
    ];
    prop::collection::vec(item, 0..7).prop_map(|items| items.join(","))
}

// ---------------------------------------------------------------------------
// Exposition checks
// ---------------------------------------------------------------------------

/// Checks the text exposition format line by line: HELP/TYPE comments,
/// metric and label names, label value escapes, and a finite value on every
/// sample (no NaN, no +Inf/-Inf).
fn check_exposition(text: &str) -> Result<(), String> {
    fn name_ok(s: &str) -> bool {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("exposition does not end with a newline".into());
    }
    for line in text.split_terminator('\n') {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let kind = parts.next().unwrap_or("");
            let name = parts.next().unwrap_or("");
            if !(kind == "HELP" || kind == "TYPE") || !name_ok(name) {
                return Err(format!("bad comment line {line:?}"));
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| format!("no value in {line:?}"))?;
        if !name_ok(&line[..name_end]) {
            return Err(format!("bad metric name in {line:?}"));
        }
        let mut rest = &line[name_end..];
        if let Some(labels) = rest.strip_prefix('{') {
            let mut chars = labels.char_indices();
            let end = 'labels: loop {
                // label name up to '='
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some((_, '=')) => break,
                        Some((_, '}')) if name.is_empty() => {
                            return Err(format!("empty label set in {line:?}"));
                        }
                        Some((_, c)) => name.push(c),
                        None => return Err(format!("unterminated labels in {line:?}")),
                    }
                }
                if !name_ok(&name) || name.starts_with("__") {
                    return Err(format!("bad label name {name:?} in {line:?}"));
                }
                if !matches!(chars.next(), Some((_, '"'))) {
                    return Err(format!("unquoted label value in {line:?}"));
                }
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\' | '"' | 'n')) => {}
                            _ => return Err(format!("bad escape in {line:?}")),
                        },
                        Some((_, '"')) => break,
                        Some(_) => {}
                        None => return Err(format!("unterminated label value in {line:?}")),
                    }
                }
                match chars.next() {
                    Some((_, ',')) => {
                        // The encoder may leave a trailing comma.
                        if let Some((i, '}')) = chars.clone().next() {
                            break 'labels i;
                        }
                    }
                    Some((i, '}')) => break 'labels i,
                    _ => return Err(format!("bad label separator in {line:?}")),
                }
            };
            rest = &labels[end + 1..];
        }
        let value = rest
            .strip_prefix(' ')
            .ok_or_else(|| format!("no space before value in {line:?}"))?;
        let v: f64 = value
            .parse()
            .map_err(|_| format!("unparsable value in {line:?}"))?;
        if !v.is_finite() {
            return Err(format!("non-finite value in {line:?}"));
        }
    }
    Ok(())
}

fn observation(
    info: Info,
    maxclients: Option<u64>,
    cluster_info: Option<ClusterInfo>,
) -> Observation {
    let now = Instant::now();
    Observation {
        at: now,
        asked_at: now,
        info,
        maxclients,
        cluster_info,
        cluster_nodes: None,
        denied: vec!["cluster|nodes", "config|get"],
        slowlog: Some(redis_vitals::expose::state::Slowlog {
            length: 3,
            last_id: 41,
        }),
        databases: Some(16),
    }
}

// ---------------------------------------------------------------------------
// INFO
// ---------------------------------------------------------------------------

/// Fields the exporter reads by name, so that generated text reaches every
/// branch of the renderer.
const INFO_KEYS: &[&str] = &[
    "redis_version",
    "valkey_version",
    "dragonfly_version",
    "mvcc_depth",
    "redis_mode",
    "server_mode",
    "run_id",
    "role",
    "maxmemory_policy",
    "uptime_in_seconds",
    "connected_clients",
    "blocked_clients",
    "cluster_connections",
    "connected_slaves",
    "maxclients",
    "used_memory",
    "used_memory_rss",
    "used_memory_peak",
    "total_system_memory",
    "maxmemory",
    "mem_fragmentation_ratio",
    "allocator_frag_ratio",
    "keyspace_hits",
    "keyspace_misses",
    "evicted_keys",
    "expired_keys",
    "rejected_connections",
    "total_connections_received",
    "total_commands_processed",
    "total_net_input_bytes",
    "total_net_output_bytes",
    "total_error_replies",
    "sync_full",
    "sync_partial_ok",
    "sync_partial_err",
    "used_cpu_sys",
    "used_cpu_user",
    "used_cpu_sys_children",
    "used_cpu_user_children",
    "loading",
    "rdb_bgsave_in_progress",
    "rdb_changes_since_last_save",
    "rdb_last_save_time",
    "rdb_last_bgsave_status",
    "rdb_last_bgsave_time_sec",
    "aof_enabled",
    "aof_rewrite_in_progress",
    "aof_last_bgrewrite_status",
    "aof_last_write_status",
    "master_repl_offset",
    "master_replid",
    "repl_backlog_size",
    "pubsub_channels",
    "pubsub_patterns",
    "latest_fork_usec",
    "master_link_status",
    "master_last_io_seconds_ago",
    "master_sync_in_progress",
    "slave_repl_offset",
    "master_link_down_since_seconds",
];

const SLAVE_KEYS: &[&str] = &["ip", "port", "state", "offset", "lag"];
const DB_KEYS: &[&str] = &["keys", "expires", "avg_ttl", "subexpiry"];
const CMDSTAT_KEYS: &[&str] = &[
    "calls",
    "usec",
    "usec_per_call",
    "rejected_calls",
    "failed_calls",
];
const LATENCY_KEYS: &[&str] = &["p50", "p99", "p99.9", "p0", "p100", "p", "q50"];

fn info_value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => num_text(),
        2 => prop::sample::select(vec![
            "master", "slave", "replica", "ok", "err", "up", "down", "online", "wait_bgsave",
            "cluster", "standalone", "7.0.15", "",
        ])
        .prop_map(str::to_owned),
        1 => junk(),
        1 => "[a-z:,=]{1000,1030}",
    ]
}

fn info_line() -> BoxedStrategy<String> {
    let slave = (
        0u32..6,
        kv_list(SLAVE_KEYS),
        "[a-z0-9.:]{0,15}",
        0u32..70_000,
    )
        .prop_map(|(n, extra, ip, port)| {
            format!("slave{n}:ip={ip},port={port},state=online,{extra}")
        });
    prop_oneof![
        8 => (prop::sample::select(INFO_KEYS), info_value())
            .prop_map(|(k, v)| format!("{k}:{v}")),
        2 => "[A-Za-z]{0,12}".prop_map(|s| format!("# {s}")),
        2 => slave,
        1 => ("slave[0-9a-z]{0,3}", kv_list(SLAVE_KEYS)).prop_map(|(k, v)| format!("{k}:{v}")),
        2 => ("db[0-9]{0,3}", kv_list(DB_KEYS)).prop_map(|(k, v)| format!("{k}:{v}")),
        2 => ("[a-z|_-]{0,10}", kv_list(CMDSTAT_KEYS))
            .prop_map(|(c, v)| format!("cmdstat_{c}:{v}")),
        2 => ("[A-Z\\-]{0,8}", num_text())
            .prop_map(|(e, n)| format!("errorstat_{e}:count={n}")),
        2 => ("[a-z|]{0,10}", kv_list(LATENCY_KEYS))
            .prop_map(|(c, v)| format!("latency_percentiles_usec_{c}:{v}")),
        1 => ("[a-z_]{250,260}", num_text()).prop_map(|(k, v)| format!("{k}:{v}")),
        1 => "#\\PC{0,300}",
        2 => junk(),
    ]
    .boxed()
}

fn info_text() -> impl Strategy<Value = String> {
    prop::collection::vec((info_line(), eol()), 0..48)
        .prop_map(|lines| lines.into_iter().map(|(l, e)| l + e).collect())
}

/// Invariants of any parsed INFO, whatever the input.
fn check_info(info: &Info) -> Result<(), TestCaseError> {
    const MAX: usize = 4096;
    prop_assert!(info.field_count() <= MAX);
    prop_assert!(info.sections.len() <= MAX);
    prop_assert!(info.replicas.len() <= MAX);
    prop_assert!(info.keyspace.len() <= MAX);
    prop_assert!(info.commands.len() <= MAX);
    prop_assert!(info.errors.len() <= MAX);
    prop_assert!(info.latencies.len() <= MAX);
    for s in &info.sections {
        prop_assert!(s.len() <= 256, "section name of {} bytes", s.len());
    }
    for (k, v) in info.numeric_fields() {
        prop_assert!(v.is_finite(), "{k} = {v}");
        prop_assert!(!k.is_empty() && k.len() <= 256);
    }
    for l in info.latencies.iter() {
        prop_assert!(!l.percentiles.is_empty());
        for (_, v) in &l.percentiles {
            prop_assert!(v.is_finite());
        }
    }
    for db in &info.keyspace {
        let digits = db.db.strip_prefix("db").unwrap_or("");
        prop_assert!(!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
    }
    Ok(())
}

fn check_render(obs: &Observation, addr: &str, cluster: &str) -> Result<String, TestCaseError> {
    let text = render_observation(obs, addr, cluster);
    if let Err(e) = check_exposition(&text) {
        return Err(TestCaseError::fail(e));
    }
    prop_assert!(text.contains("redis_up{"), "no redis_up in:\n{text}");
    Ok(text)
}

/// Values the exporter reads as u64 and adds up (clients saturation, memory
/// ratio): large enough that their sum overflows.
fn saturation_fields() -> impl Strategy<Value = String> {
    let big = prop_oneof![
        Just(u64::MAX),
        Just(u64::MAX / 2 + 1),
        any::<u64>(),
        0u64..1000,
    ];
    (big.clone(), big.clone(), big, any::<bool>()).prop_map(|(a, b, c, cluster)| {
        let mut s = format!("connected_clients:{a}\r\nconnected_slaves:{b}\r\n");
        if cluster {
            s.push_str(&format!("cluster_connections:{c}\r\n"));
        }
        s.push_str(&format!(
            "used_memory:{c}\r\nmaxmemory:{a}\r\nmaxclients:{b}\r\n"
        ));
        s
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn info_never_panics_on_arbitrary_text(text in junk()) {
        check_info(&parse_info(&text))?;
    }

    #[test]
    fn info_grammar_keeps_invariants_and_renders(
        text in info_text(),
        maxclients in prop::option::of(prop_oneof![Just(0u64), Just(1u64), any::<u64>()]),
        addr in prop_oneof![Just("127.0.0.1:6379".to_string()), "\\PC{0,12}", any::<String>()],
        cluster in prop_oneof![Just(String::new()), "[a-z\"\\\\\n]{0,8}", any::<String>()],
    ) {
        let info = parse_info(&text);
        check_info(&info)?;
        let cluster_info = parse_cluster_info(&text).ok();
        check_render(&observation(info, None, cluster_info.clone()), &addr, &cluster)?;
        // With a client limit the renderer adds up client counts as u64: the
        // fields that sum are renamed here, the overflow has a property of
        // its own below.
        let tamed = text
            .replace("connected_clients", "x")
            .replace("connected_slaves", "x")
            .replace("cluster_connections", "x");
        check_render(&observation(parse_info(&tamed), maxclients, cluster_info), &addr, &cluster)?;
    }

    /// LF and CRLF replies parse the same; so does text with blank lines
    /// and surrounding whitespace added.
    #[test]
    fn info_line_endings_do_not_matter(lines in prop::collection::vec(info_line(), 0..24)) {
        let lines: Vec<String> = lines.into_iter().filter(|l| !l.contains(['\r', '\n'])).collect();
        let lf = parse_info(&lines.join("\n"));
        let crlf = parse_info(&(lines.join("\r\n") + "\r\n"));
        let spaced = parse_info(&lines.iter().map(|l| format!("  {l}  \r\n\r\n")).collect::<String>());
        for other in [&crlf, &spaced] {
            prop_assert_eq!(&lf.sections, &other.sections);
            prop_assert_eq!(&lf.keyspace, &other.keyspace);
            prop_assert_eq!(&lf.commands, &other.commands);
            prop_assert_eq!(&lf.errors, &other.errors);
            prop_assert_eq!(&lf.latencies, &other.latencies);
            prop_assert_eq!(lf.field_count(), other.field_count());
        }
        prop_assert_eq!(&lf.replicas, &crlf.replicas);
        let numeric = |i: &Info| i.numeric_fields().map(|(k, v)| (k.to_string(), v.to_bits())).collect::<BTreeMap<_, _>>();
        prop_assert_eq!(numeric(&lf), numeric(&crlf));
    }

    /// A well-formed reply parses back to what was written.
    #[test]
    fn info_model_round_trips(
        fields in prop::collection::btree_map("[a-z_]{1,20}", any::<u64>(), 0..20),
        dbs in prop::collection::btree_map(0u32..16, (any::<u64>(), any::<u64>(), any::<u64>()), 0..4),
        cmds in prop::collection::btree_map("[a-z]{1,8}(\\|[a-z]{1,8})?", (any::<u64>(), any::<u64>(), prop::option::of(any::<u64>())), 0..6),
        errs in prop::collection::btree_map("[A-Z]{1,8}", any::<u64>(), 0..4),
        replicas in prop::collection::vec(("[0-9]{1,3}(\\.[0-9]{1,3}){3}", any::<u16>(), any::<u64>(), any::<u64>()), 0..3),
    ) {
        let mut text = String::from("# Server\r\n");
        let fields: BTreeMap<String, u64> = fields
            .into_iter()
            .filter(|(k, _)| {
                !k.starts_with("cmdstat_") && !k.starts_with("errorstat_")
                    && !k.starts_with("latency_percentiles_usec_")
                    && !k.starts_with("db") && !k.starts_with("slave")
            })
            .collect();
        for (k, v) in &fields {
            text.push_str(&format!("{k}:{v}\r\n"));
        }
        text.push_str("# Replication\r\n");
        for (i, (ip, port, offset, lag)) in replicas.iter().enumerate() {
            text.push_str(&format!("slave{i}:ip={ip},port={port},state=online,offset={offset},lag={lag}\r\n"));
        }
        text.push_str("# Commandstats\r\n");
        for (c, (calls, usec, failed)) in &cmds {
            text.push_str(&format!("cmdstat_{c}:calls={calls},usec={usec},usec_per_call=1.00"));
            if let Some(f) = failed {
                text.push_str(&format!(",rejected_calls=0,failed_calls={f}"));
            }
            text.push_str("\r\n");
        }
        text.push_str("# Errorstats\r\n");
        for (e, n) in &errs {
            text.push_str(&format!("errorstat_{e}:count={n}\r\n"));
        }
        text.push_str("# Keyspace\r\n");
        for (db, (keys, expires, ttl)) in &dbs {
            text.push_str(&format!("db{db}:keys={keys},expires={expires},avg_ttl={ttl},subexpiry=0\r\n"));
        }
        let info = parse_info(&text);
        prop_assert_eq!(info.field_count(), fields.len());
        for (k, v) in &fields {
            prop_assert_eq!(info.u64(k), Some(*v));
        }
        prop_assert_eq!(&info.sections, &["Server", "Replication", "Commandstats", "Errorstats", "Keyspace"]);
        prop_assert_eq!(info.replicas.len(), replicas.len());
        for (i, (line, (ip, port, offset, lag))) in info.replicas.iter().zip(&replicas).enumerate() {
            prop_assert_eq!(line.index as usize, i);
            prop_assert_eq!(&line.ip, ip);
            prop_assert_eq!((line.port, line.offset, line.lag), (*port, *offset, *lag));
        }
        prop_assert_eq!(info.commands.len(), cmds.len());
        for (stat, (c, (calls, usec, failed))) in info.commands.iter().zip(&cmds) {
            prop_assert_eq!(&stat.cmd, c);
            prop_assert_eq!((stat.calls, stat.usec, stat.failed_calls), (*calls, *usec, *failed));
            prop_assert_eq!(stat.rejected_calls, failed.map(|_| 0));
        }
        let errors: Vec<(String, u64)> = errs.into_iter().collect();
        prop_assert_eq!(&info.errors, &errors);
        prop_assert_eq!(info.keyspace.len(), dbs.len());
        for (line, (db, (keys, expires, ttl))) in info.keyspace.iter().zip(&dbs) {
            prop_assert_eq!(&line.db, &format!("db{db}"));
            prop_assert_eq!((line.keys, line.expires, line.avg_ttl_ms), (*keys, *expires, *ttl));
        }
        check_render(&observation(info, None, None), "h:1", "")?;
    }

    /// Strict numbers: anything accepted is finite and is what `f64` reads.
    #[test]
    fn parse_number_is_strict(v in num_text()) {
        if let Some(n) = parse_number(&v) {
            prop_assert!(n.is_finite());
            prop_assert_eq!(v.trim().parse::<f64>().ok(), Some(n));
        }
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// The clients-saturation and memory ratios add and divide u64 fields
    /// read from INFO: a hostile server can send values whose sum overflows.
    /// Rendering must neither panic (debug builds check overflow) nor emit a
    /// wrapped-around ratio.
    #[test]
    fn render_survives_overflowing_client_counts(text in saturation_fields(), maxclients in prop::option::of(any::<u64>())) {
        let info = parse_info(&text);
        let expected = maxclients.filter(|m| *m > 0).map(|m| {
            let used: u128 = ["connected_clients", "connected_slaves", "cluster_connections"]
                .iter()
                .filter_map(|k| info.u64(k))
                .map(u128::from)
                .sum();
            used as f64 / m as f64
        });
        let text = std::panic::catch_unwind(|| {
            render_observation(&observation(info.clone(), maxclients, None), "h:1", "")
        })
        .map_err(|_| TestCaseError::fail("render_observation panicked"))?;
        if let Err(e) = check_exposition(&text) {
            return Err(TestCaseError::fail(e));
        }
        if let Some(expected) = expected {
            let line = text
                .lines()
                .find(|l| l.starts_with("redis_clients_saturation"))
                .ok_or_else(|| TestCaseError::fail("no saturation sample"))?;
            let got: f64 = line.rsplit(' ').next().unwrap_or("").parse().unwrap_or(f64::NAN);
            prop_assert!((got - expected).abs() <= expected * 1e-9, "{got} vs {expected}");
        }
    }
}

/// The overflow above as a plain regression case (fails today in debug
/// builds: "attempt to add with overflow" in derive::clients_saturation).
#[test]
fn clients_saturation_overflow_regression() {
    let info = parse_info("connected_clients:18446744073709551615\r\nconnected_slaves:1\r\n");
    let text = render_observation(&observation(info, Some(10), None), "h:1", "");
    check_exposition(&text).unwrap();
}

// ---------------------------------------------------------------------------
// CLUSTER INFO
// ---------------------------------------------------------------------------

const CLUSTER_INFO_KEYS: &[&str] = &[
    "cluster_state",
    "cluster_slots_assigned",
    "cluster_slots_ok",
    "cluster_slots_pfail",
    "cluster_slots_fail",
    "cluster_known_nodes",
    "cluster_size",
    "cluster_current_epoch",
    "cluster_my_epoch",
    "cluster_stats_messages_sent",
    "cluster_stats_messages_received",
    "cluster_stats_messages_ping_sent",
    "cluster_stats_messages_pong_received",
    "cluster_stats_messages_auth-req_sent",
    "cluster_stats_messages__sent",
    "total_cluster_links_buffer_limit_exceeded",
];

fn cluster_info_text() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        6 => prop::sample::select(CLUSTER_INFO_KEYS).prop_map(str::to_owned),
        2 => "[a-zA-Z0-9_\\-]{0,40}".prop_map(|t| format!("cluster_stats_messages_{t}_sent")),
        1 => "[a-zA-Z0-9_\\-]{0,40}".prop_map(|t| format!("cluster_stats_messages_{t}_received")),
        1 => "[a-z_ ]{0,12}",
    ];
    let value = prop_oneof![
        6 => num_text(),
        2 => prop::sample::select(vec!["ok", "fail", "OK", " ok ", ""]).prop_map(str::to_owned),
        1 => junk(),
    ];
    let line = prop_oneof![
        8 => (key, value, prop::sample::select(vec![":", ": ", " : "]))
            .prop_map(|(k, v, sep)| format!("{k}{sep}{v}")),
        1 => junk(),
    ];
    prop::collection::vec((line, eol()), 0..24)
        .prop_map(|lines| lines.into_iter().map(|(l, e)| l + e).collect())
}

fn check_cluster_info(
    text: &str,
    r: &Result<ClusterInfo, ParseError>,
) -> Result<(), TestCaseError> {
    match r {
        Ok(ci) => {
            prop_assert!(text.contains("cluster_state"));
            for (t, _) in ci.messages_sent.iter().chain(&ci.messages_received) {
                prop_assert!(!t.is_empty() && t.len() <= 32);
                prop_assert!(t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            }
            let mut sent: Vec<_> = ci.messages_sent.iter().map(|(t, _)| t).collect();
            sent.sort();
            sent.dedup();
            prop_assert_eq!(
                sent.len(),
                ci.messages_sent.len(),
                "duplicate message types"
            );
        }
        Err(e) => {
            // Fixed messages only: the input is never echoed.
            prop_assert!(e.to_string().len() < 80, "{}", e);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn cluster_info_never_panics(text in prop_oneof![junk(), cluster_info_text()]) {
        let r = parse_cluster_info(&text);
        check_cluster_info(&text, &r)?;
        if let Ok(ci) = r {
            let obs = observation(parse_info(&text), None, Some(ci));
            check_render(&obs, "h:1", "c")?;
        }
    }

    #[test]
    fn cluster_info_model_round_trips(
        ok in any::<bool>(),
        numbers in prop::array::uniform8(any::<u64>()),
        sent in prop::collection::btree_map("[a-z][a-z\\-]{0,11}", any::<u64>(), 0..6),
        received in prop::collection::btree_map("[a-z][a-z\\-]{0,11}", any::<u64>(), 0..6),
        crlf in any::<bool>(),
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut text = format!("cluster_state:{}{eol}", if ok { "ok" } else { "fail" });
        for (k, v) in CLUSTER_INFO_KEYS[1..9].iter().zip(numbers) {
            text.push_str(&format!("{k}:{v}{eol}"));
        }
        for (t, n) in &sent {
            text.push_str(&format!("cluster_stats_messages_{t}_sent:{n}{eol}"));
        }
        text.push_str(&format!("cluster_stats_messages_sent:{}{eol}", sent.values().fold(0u64, |a, b| a.wrapping_add(*b))));
        for (t, n) in &received {
            text.push_str(&format!("cluster_stats_messages_{t}_received:{n}{eol}"));
        }
        let ci = parse_cluster_info(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(ci.state_ok, ok);
        prop_assert_eq!(
            [ci.slots_assigned, ci.slots_ok, ci.slots_pfail, ci.slots_fail, ci.known_nodes, ci.size, ci.current_epoch, ci.my_epoch],
            numbers
        );
        prop_assert_eq!(ci.messages_sent, sent.into_iter().collect::<Vec<_>>());
        prop_assert_eq!(ci.messages_received, received.into_iter().collect::<Vec<_>>());
    }
}

// ---------------------------------------------------------------------------
// CLUSTER NODES
// ---------------------------------------------------------------------------

fn node_id() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[0-9a-f]{40}",
        1 => "[^ \t\r\n]{1,12}",
        1 => Just("-".to_string()),
    ]
}

fn node_address() -> impl Strategy<Value = String> {
    let ip = prop_oneof![
        "[0-9]{1,3}(\\.[0-9]{1,3}){3}",
        "[0-9a-f:]{2,39}",
        Just(String::new()),
        "[a-z.\\-]{1,20}",
    ];
    let port = prop_oneof![
        4 => (0u32..70_000).prop_map(|p| p.to_string()),
        1 => num_text(),
    ];
    let hostname = prop_oneof![
        3 => Just(String::new()),
        2 => "[a-z.\\-]{0,20}".prop_map(|h| format!(",{h}")),
        1 => "[a-z]{0,8}".prop_map(|h| format!(",{h},shard-id=abc,tls-port=0")),
        1 => Just(",".to_string()),
        1 => "[a-z=,]{0,10}".prop_map(|h| format!(",{h}")),
    ];
    prop_oneof![
        8 => (ip, port.clone(), prop::option::of(port), hostname).prop_map(|(ip, p, c, h)| match c {
            Some(c) => format!("{ip}:{p}@{c}{h}"),
            None => format!("{ip}:{p}{h}"),
        }),
        1 => Just(":0@0".to_string()),
        1 => "[^ \t\r\n]{0,20}",
    ]
}

fn node_flags() -> impl Strategy<Value = String> {
    let flag = prop::sample::select(vec![
        "myself",
        "master",
        "slave",
        "replica",
        "fail?",
        "fail",
        "handshake",
        "noaddr",
        "nofailover",
        "noflags",
        "nopeer",
        "",
        "MASTER",
    ]);
    prop::collection::vec(flag, 1..4).prop_map(|f| f.join(","))
}

fn slot_token() -> impl Strategy<Value = String> {
    let slot = prop_oneof![
        6 => (0u32..16_384).prop_map(|s| s.to_string()),
        1 => (16_380u32..16_400).prop_map(|s| s.to_string()),
        1 => num_text(),
    ];
    prop_oneof![
        4 => slot.clone(),
        4 => (slot.clone(), slot.clone()).prop_map(|(a, b)| format!("{a}-{b}")),
        2 => (slot.clone(), node_id()).prop_map(|(s, id)| format!("[{s}->-{id}]")),
        2 => (slot.clone(), node_id()).prop_map(|(s, id)| format!("[{s}-<-{id}]")),
        1 => slot.prop_map(|s| format!("[{s}]")),
        1 => "[\\[\\]\\-<>0-9]{0,8}",
    ]
}

fn node_line() -> impl Strategy<Value = String> {
    let epoch = prop_oneof![4 => any::<u64>().prop_map(|n| n.to_string()), 1 => num_text()];
    let link = prop::sample::select(vec![
        "connected",
        "connected",
        "disconnected",
        "Connected",
        "",
    ]);
    (
        (
            node_id(),
            node_address(),
            node_flags(),
            prop_oneof![Just("-".to_string()), node_id()],
        ),
        (epoch.clone(), epoch.clone(), epoch, link),
        prop::collection::vec(slot_token(), 0..6),
        prop::sample::select(vec![" ", " ", "  ", "\t", " \t "]),
        0usize..12,
    )
        .prop_map(
            |((id, addr, flags, master), (ping, pong, epoch, link), slots, sep, cut)| {
                let mut cols = vec![id, addr, flags, master, ping, pong, epoch, link.to_string()];
                cols.extend(slots);
                // Sometimes a truncated line: columns missing at the end.
                if cut < cols.len() && cut < 8 {
                    cols.truncate(cut);
                }
                cols.join(sep)
            },
        )
}

fn cluster_nodes_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![10 => node_line(), 1 => junk(), 1 => Just(String::new())];
    prop::collection::vec(
        (line, prop::sample::select(vec!["\n", "\n", "\r\n", " \n"])),
        0..10,
    )
    .prop_map(|lines| lines.into_iter().map(|(l, e)| l + e).collect())
}

fn check_slots(slots: &[(u16, u16)]) -> Result<u32, TestCaseError> {
    let mut seen = vec![false; CLUSTER_SLOTS as usize];
    let mut count = 0u32;
    for &(a, b) in slots {
        prop_assert!(a <= b && b <= MAX_SLOT, "bad range {a}-{b}");
        for s in a..=b {
            prop_assert!(!seen[usize::from(s)], "slot {s} twice");
            seen[usize::from(s)] = true;
            count += 1;
        }
    }
    Ok(count)
}

fn check_nodes(text: &str, r: &Result<Vec<NodeLine>, ParseError>) -> Result<(), TestCaseError> {
    match r {
        Ok(nodes) => {
            let lines = text.split('\n').filter(|l| !l.trim().is_empty()).count();
            prop_assert_eq!(nodes.len(), lines);
            for n in nodes {
                let count = check_slots(&n.slots)?;
                prop_assert_eq!(n.slot_count(), count);
                for (slot, peer) in n.migrating.iter().chain(&n.importing) {
                    prop_assert!(*slot <= MAX_SLOT);
                    prop_assert!(!peer.is_empty());
                }
                if let Some(addr) = n.addr() {
                    prop_assert!(n.port != 0 && !n.ip.is_empty());
                    let suffix = format!(":{}", n.port);
                    prop_assert!(addr.ends_with(&suffix), "{addr}");
                }
                if let Some(h) = &n.hostname {
                    prop_assert!(!h.is_empty() && !h.contains('='));
                }
            }
        }
        Err(ParseError::NodeLine { line, reason }) => {
            prop_assert!(
                *line >= 1 && *line <= text.split('\n').count(),
                "line {line}"
            );
            prop_assert!(reason.len() < 40);
        }
        Err(e) => return Err(TestCaseError::fail(format!("unexpected error kind {e:?}"))),
    }
    Ok(())
}

/// Disjoint, ascending, valid slot ranges (single slots included).
fn slot_ranges() -> impl Strategy<Value = Vec<(u16, u16)>> {
    prop::collection::vec((0u16..3000, 0u16..3000), 0..7).prop_map(|steps| {
        let mut out = Vec::new();
        let mut next = 0u32;
        for (gap, len) in steps {
            let start = next + u32::from(gap) % 4;
            let end = start + u32::from(len) * u32::from(len % 3 != 0);
            if end > u32::from(MAX_SLOT) {
                break;
            }
            out.push((start as u16, end as u16));
            next = end + 1 + u32::from(gap);
        }
        out
    })
}

/// A well-formed node: what a line is rendered from and must parse back to.
#[derive(Debug, Clone)]
struct NodeModel {
    id: String,
    ip: String,
    port: u16,
    cport: u16,
    hostname: Option<String>,
    master: bool,
    myself: bool,
    pfail: bool,
    master_id: Option<String>,
    ping: u64,
    pong: u64,
    epoch: u64,
    connected: bool,
    slots: Vec<(u16, u16)>,
    migrating: Vec<(u16, String)>,
}

fn node_model() -> impl Strategy<Value = NodeModel> {
    (
        (
            "[0-9a-f]{40}",
            prop_oneof![
                "[0-9]{1,3}(\\.[0-9]{1,3}){3}",
                "[0-9a-f]{1,4}(:[0-9a-f]{1,4}){2,7}"
            ],
            1u16..=u16::MAX,
            any::<u16>(),
            prop::option::of("[a-z][a-z0-9.\\-]{0,20}"),
        ),
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            prop::option::of("[0-9a-f]{40}"),
        ),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<bool>()),
        slot_ranges(),
        prop::collection::vec((0u16..=MAX_SLOT, "[0-9a-f]{40}"), 0..3),
    )
        .prop_map(
            |(
                (id, ip, port, cport, hostname),
                (master, myself, pfail, master_id),
                (ping, pong, epoch, connected),
                slots,
                migrating,
            )| NodeModel {
                id,
                ip,
                port,
                cport,
                hostname,
                master,
                myself,
                pfail,
                master_id,
                ping,
                pong,
                epoch,
                connected,
                slots,
                migrating,
            },
        )
}

impl NodeModel {
    fn line(&self) -> String {
        let mut flags = Vec::new();
        if self.myself {
            flags.push("myself");
        }
        flags.push(if self.master { "master" } else { "slave" });
        if self.pfail {
            flags.push("fail?");
        }
        let mut line = format!(
            "{} {}:{}@{}{} {} {} {} {} {} {}",
            self.id,
            self.ip,
            self.port,
            self.cport,
            self.hostname
                .as_ref()
                .map(|h| format!(",{h}"))
                .unwrap_or_default(),
            flags.join(","),
            self.master_id.as_deref().unwrap_or("-"),
            self.ping,
            self.pong,
            self.epoch,
            if self.connected {
                "connected"
            } else {
                "disconnected"
            },
        );
        for (a, b) in &self.slots {
            if a == b {
                line.push_str(&format!(" {a}"));
            } else {
                line.push_str(&format!(" {a}-{b}"));
            }
        }
        for (s, peer) in &self.migrating {
            line.push_str(&format!(" [{s}->-{peer}]"));
        }
        line
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn cluster_nodes_never_panics(text in prop_oneof![1 => junk(), 4 => cluster_nodes_text()]) {
        let r = parse_cluster_nodes(&text);
        check_nodes(&text, &r)?;
    }

    /// Lenient parsing keeps exactly the good lines, in order, whatever
    /// junk is mixed in, and reports every other non-blank line by number.
    #[test]
    fn cluster_nodes_lenient_keeps_the_good_lines(
        models in prop::collection::vec(node_model(), 0..6),
        bad in prop::collection::vec((0usize..8, "[^\n]{0,40}"), 0..4),
    ) {
        let mut lines: Vec<(String, bool)> = models.iter().map(|m| (m.line(), true)).collect();
        for (at, junk) in &bad {
            // Only lines the strict parser refuses count as bad.
            if junk.trim().is_empty() || parse_cluster_nodes(junk).is_ok() {
                continue;
            }
            let at = (*at).min(lines.len());
            lines.insert(at, (junk.clone(), false));
        }
        let text: String = lines.iter().map(|(l, _)| format!("{l}\n")).collect();
        let (nodes, errors) = parse_cluster_nodes_lenient(&text);
        prop_assert_eq!(nodes.len(), models.len());
        for (n, m) in nodes.iter().zip(&models) {
            prop_assert_eq!(&n.id, &m.id);
            prop_assert_eq!(n.port, m.port);
        }
        let bad_lines: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, (_, good))| !good)
            .map(|(i, _)| i + 1)
            .collect();
        let reported: Vec<usize> = errors
            .iter()
            .map(|e| match e {
                ParseError::NodeLine { line, .. } => *line,
                _ => 0,
            })
            .collect();
        prop_assert_eq!(reported, bad_lines);
        // The strict parser agrees: all or the first bad line.
        match parse_cluster_nodes(&text) {
            Ok(all) => prop_assert!(errors.is_empty() && all == nodes),
            Err(e) => prop_assert_eq!(Some(&e), errors.first()),
        }
    }

    #[test]
    fn cluster_info_lenient_never_panics_and_agrees(text in prop_oneof![junk(), cluster_info_text()]) {
        match (parse_cluster_info_lenient(&text), parse_cluster_info(&text)) {
            (Ok((info, errors)), strict) => {
                prop_assert!(info.dropped.len() <= 8);
                match strict {
                    Ok(s) => prop_assert!(errors.is_empty() && s == info),
                    Err(e) => prop_assert_eq!(Some(&e), errors.first()),
                }
            }
            (Err(e), strict) => prop_assert_eq!(Err(e), strict),
        }
    }

    #[test]
    fn cluster_nodes_model_round_trips(models in prop::collection::vec(node_model(), 0..6), crlf in any::<bool>()) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let text: String = models.iter().map(|m| m.line() + eol).collect();
        let nodes = parse_cluster_nodes(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(nodes.len(), models.len());
        for (n, m) in nodes.iter().zip(&models) {
            prop_assert_eq!(&n.id, &m.id);
            prop_assert_eq!(&n.ip, &m.ip);
            prop_assert_eq!((n.port, n.cport), (m.port, m.cport));
            prop_assert_eq!(&n.hostname, &m.hostname);
            prop_assert_eq!((n.flags.master, n.flags.replica, n.flags.myself, n.flags.pfail), (m.master, !m.master, m.myself, m.pfail));
            prop_assert_eq!(&n.master_id, &m.master_id);
            prop_assert_eq!((n.ping_sent, n.pong_recv, n.config_epoch), (m.ping, m.pong, m.epoch));
            prop_assert_eq!(n.link_connected, m.connected);
            prop_assert_eq!(&n.slots, &m.slots);
            prop_assert_eq!(n.slot_count(), m.slots.iter().map(|(a, b)| u32::from(b - a) + 1).sum::<u32>());
            prop_assert_eq!(&n.migrating, &m.migrating);
            prop_assert!(n.importing.is_empty());
            let addr = n.addr().expect("port is non-zero");
            if m.ip.contains(':') {
                prop_assert_eq!(addr, format!("[{}]:{}", m.ip, m.port));
            } else {
                prop_assert_eq!(addr, format!("{}:{}", m.ip, m.port));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// CLUSTER SHARDS
// ---------------------------------------------------------------------------

const SHARD_KEYS: &[&str] = &[
    "slots",
    "nodes",
    "id",
    "ip",
    "endpoint",
    "hostname",
    "port",
    "tls-port",
    "role",
    "replication-offset",
    "health",
    "other",
];

/// Leaf values, including the kinds only a RESP parse can make here
/// (big numbers, server errors) so the generator does not depend on the
/// redis crate's feature flags.
fn leaf_value() -> impl Strategy<Value = Value> {
    let parsed = prop::sample::select(vec![
        &b"(123456789012345678901234567890\r\n"[..],
        &b"-ERR boom\r\n"[..],
        &b"_\r\n"[..],
        &b",inf\r\n"[..],
        &b",nan\r\n"[..],
        &b"#t\r\n"[..],
        &b"=8\r\ntxt:slot\r\n"[..],
        &b"$-1\r\n"[..],
    ])
    .prop_map(|b| redis::parse_redis_value(b).expect("valid RESP"));
    prop_oneof![
        1 => Just(Value::Nil),
        1 => Just(Value::Okay),
        3 => prop_oneof![any::<i64>(), 0i64..16_400, Just(-1i64)].prop_map(Value::Int),
        2 => prop::collection::vec(any::<u8>(), 0..12).prop_map(Value::BulkString),
        4 => prop::sample::select(SHARD_KEYS).prop_map(|k| Value::BulkString(k.as_bytes().to_vec())),
        2 => prop::sample::select(SHARD_KEYS).prop_map(|k| Value::SimpleString(k.to_string())),
        2 => prop::sample::select(vec!["master", "primary", "replica", "slave", "online", "fail", "failed", "loading", "?", "", "abc"])
            .prop_map(|k| Value::BulkString(k.as_bytes().to_vec())),
        2 => num_text().prop_map(|n| Value::BulkString(n.into_bytes())),
        1 => "\\PC{0,10}".prop_map(Value::SimpleString),
        1 => any::<f64>().prop_map(Value::Double),
        1 => any::<bool>().prop_map(Value::Boolean),
        1 => prop::sample::select(SHARD_KEYS).prop_map(|k| Value::VerbatimString { format: VerbatimFormat::Text, text: k.to_string() }),
        1 => parsed,
    ]
}

fn arb_value() -> impl Strategy<Value = Value> {
    leaf_value().prop_recursive(5, 96, 10, |inner| {
        prop_oneof![
            4 => prop::collection::vec(inner.clone(), 0..10).prop_map(Value::Array),
            1 => prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Set),
            3 => prop::collection::vec((inner.clone(), inner.clone()), 0..8).prop_map(Value::Map),
            1 => (inner.clone(), prop::collection::vec((inner.clone(), inner.clone()), 0..2))
                .prop_map(|(d, a)| Value::Attribute { data: Box::new(d), attributes: a }),
            1 => prop::collection::vec(inner, 0..4).prop_map(|data| Value::Push { kind: PushKind::Message, data }),
        ]
    })
}

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

/// Key/value pairs as a RESP3 map or a RESP2 flat array.
fn pairs_value(pairs: Vec<(Value, Value)>, resp3: bool) -> Value {
    if resp3 {
        Value::Map(pairs)
    } else {
        Value::Array(pairs.into_iter().flat_map(|(k, v)| [k, v]).collect())
    }
}

/// Shard-shaped trees: the right keys with values of any kind, so that
/// every typed branch of the parser sees both good and bad values.
fn shard_like() -> impl Strategy<Value = Value> {
    let slot = prop_oneof![
        6 => (0i64..16_384).prop_map(Value::Int),
        1 => prop_oneof![Just(-1i64), Just(16_384i64), any::<i64>()].prop_map(Value::Int),
        1 => (0u32..17_000).prop_map(|n| bulk(&n.to_string())),
        1 => leaf_value(),
    ];
    let slots = prop::collection::vec(slot, 0..8).prop_map(Value::Array);
    let node_value = prop_oneof![3 => leaf_value(), 1 => arb_value()];
    let node_pair = (prop::sample::select(SHARD_KEYS), node_value).prop_map(|(k, v)| (bulk(k), v));
    let node = (
        prop::collection::vec(node_pair, 0..10),
        any::<bool>(),
        "[0-9a-f]{4}",
        prop::sample::select(vec!["master", "replica"]),
    )
        .prop_map(|(mut pairs, resp3, id, role)| {
            pairs.insert(0, (bulk("role"), bulk(role)));
            pairs.insert(0, (bulk("id"), bulk(&id)));
            pairs_value(pairs, resp3)
        });
    let nodes = prop_oneof![
        4 => prop::collection::vec(node, 0..4).prop_map(Value::Array),
        1 => arb_value(),
    ];
    let shard = (
        slots,
        nodes,
        prop::option::of(leaf_value()),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(slots, nodes, id, resp3, attr)| {
            let mut pairs = vec![(bulk("slots"), slots), (bulk("nodes"), nodes)];
            if let Some(id) = id {
                pairs.push((bulk("id"), id));
            }
            let v = pairs_value(pairs, resp3);
            if attr {
                Value::Attribute {
                    data: Box::new(v),
                    attributes: vec![(bulk("ttl"), Value::Int(1))],
                }
            } else {
                v
            }
        });
    prop::collection::vec(shard, 0..5).prop_map(Value::Array)
}

fn check_shards(r: &Result<Vec<Shard>, ParseError>) -> Result<(), TestCaseError> {
    match r {
        Ok(shards) => {
            for s in shards {
                let count = check_slots(&s.slots)?;
                prop_assert_eq!(s.slot_count(), count);
                if let Some(id) = &s.id {
                    prop_assert!(!id.trim().is_empty());
                }
                for n in &s.nodes {
                    prop_assert!(!n.id.is_empty());
                    prop_assert!(n.endpoint.as_deref() != Some("?"));
                    prop_assert!(n.endpoint.as_deref() != Some(""));
                    prop_assert!(n.hostname.as_deref() != Some(""));
                }
            }
        }
        Err(e) => prop_assert!(e.to_string().len() < 80, "{}", e),
    }
    Ok(())
}

/// A valid shard: what both encodings are built from and must parse to.
fn shard_model() -> impl Strategy<Value = Shard> {
    let node = (
        (
            "[0-9a-f]{40}",
            "[0-9.]{7,15}",
            prop::option::of("[a-z0-9.]{1,20}"),
            prop::option::of("[a-z0-9.]{1,20}"),
        ),
        (
            prop::option::of(any::<u16>()),
            prop::option::of(any::<u16>()),
            any::<bool>(),
            0u64..=i64::MAX as u64,
        ),
        prop::sample::select(vec![
            Health::Online,
            Health::Failed,
            Health::Loading,
            Health::Unknown,
        ]),
    )
        .prop_map(
            |((id, ip, endpoint, hostname), (port, tls_port, master, offset), health)| {
                redis_vitals::parse::cluster::ShardNode {
                    id,
                    ip,
                    endpoint,
                    hostname,
                    port,
                    tls_port,
                    role: if master {
                        ShardRole::Master
                    } else {
                        ShardRole::Replica
                    },
                    replication_offset: offset,
                    health,
                }
            },
        );
    (
        prop::option::of("[0-9a-f]{40}"),
        slot_ranges(),
        prop::collection::vec(node, 0..4),
    )
        .prop_map(|(id, slots, nodes)| Shard { id, slots, nodes })
}

fn encode_shards(shards: &[Shard], resp3: bool) -> Value {
    let int = |n: u64| {
        if resp3 {
            Value::Int(n as i64)
        } else {
            bulk(&n.to_string())
        }
    };
    Value::Array(
        shards
            .iter()
            .map(|s| {
                let mut pairs = vec![(
                    bulk("slots"),
                    Value::Array(
                        s.slots
                            .iter()
                            .flat_map(|&(a, b)| [Value::Int(a.into()), Value::Int(b.into())])
                            .collect(),
                    ),
                )];
                pairs.push((
                    bulk("nodes"),
                    Value::Array(
                        s.nodes
                            .iter()
                            .map(|n| {
                                let mut p = vec![(bulk("id"), bulk(&n.id))];
                                if let Some(port) = n.port {
                                    p.push((bulk("port"), int(port.into())));
                                }
                                if let Some(port) = n.tls_port {
                                    p.push((bulk("tls-port"), int(port.into())));
                                }
                                p.push((bulk("ip"), bulk(&n.ip)));
                                p.push((
                                    bulk("endpoint"),
                                    bulk(n.endpoint.as_deref().unwrap_or("?")),
                                ));
                                if let Some(h) = &n.hostname {
                                    p.push((bulk("hostname"), bulk(h)));
                                }
                                let role = match n.role {
                                    ShardRole::Master => "master",
                                    ShardRole::Replica => "replica",
                                };
                                p.push((Value::SimpleString("role".into()), bulk(role)));
                                p.push((bulk("replication-offset"), int(n.replication_offset)));
                                let health = match n.health {
                                    Health::Online => "online",
                                    Health::Failed => "fail",
                                    Health::Loading => "loading",
                                    Health::Unknown => "weird",
                                };
                                p.push((bulk("health"), bulk(health)));
                                p.push((bulk("future-key"), Value::Array(vec![Value::Nil])));
                                pairs_value(p, resp3)
                            })
                            .collect(),
                    ),
                ));
                if let Some(id) = &s.id {
                    pairs.push((bulk("id"), bulk(id)));
                }
                pairs_value(pairs, resp3)
            })
            .collect(),
    )
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn cluster_shards_never_panics_on_arbitrary_values(v in arb_value()) {
        check_shards(&parse_cluster_shards(&v))?;
    }

    #[test]
    fn cluster_shards_never_panics_on_shard_like_values(v in shard_like()) {
        check_shards(&parse_cluster_shards(&v))?;
    }

    /// Bytes off the wire, through the redis crate's own RESP parser.
    #[test]
    fn cluster_shards_from_resp_bytes(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        "([*%~>|][0-9]\r\n|[$+:(,#=_-][^\r\n]{0,6}\r\n|\\$[0-9]\r\n[a-z]{0,4}\r\n|[*%][0-9]{1,3}\r\n){0,16}".prop_map(String::into_bytes),
    ]) {
        if let Ok(v) = redis::parse_redis_value(&bytes) {
            check_shards(&parse_cluster_shards(&v))?;
        }
    }

    /// RESP2 and RESP3 encodings of the same shards parse to them, with or
    /// without an attribute wrapper.
    #[test]
    fn cluster_shards_model_round_trips(shards in prop::collection::vec(shard_model(), 0..4)) {
        for resp3 in [false, true] {
            let v = encode_shards(&shards, resp3);
            let parsed = parse_cluster_shards(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&parsed, &shards);
            let wrapped = Value::Attribute { data: Box::new(v), attributes: vec![] };
            let unwrapped = parse_cluster_shards(&wrapped).ok();
            prop_assert_eq!(unwrapped.as_ref(), Some(&shards));
        }
    }
}

/// Deep attribute chains are unwrapped by a loop: no stack overflow.
#[test]
fn cluster_shards_deep_attribute_chain() {
    let mut v = Value::Array(vec![]);
    for _ in 0..100_000 {
        v = Value::Attribute {
            data: Box::new(v),
            attributes: vec![],
        };
    }
    assert_eq!(parse_cluster_shards(&v), Ok(vec![]));
    // Dropping the chain recursively would overflow the stack: unwind it.
    let mut v = v;
    while let Value::Attribute { data, .. } = v {
        v = *data;
    }
}

// ---------------------------------------------------------------------------
// Target addresses
// ---------------------------------------------------------------------------

/// Passwords carry this marker so that "does the output contain the
/// password" cannot be fooled by a short password matching other text.
const SECRET: &str = "Zq9SECRET";

fn secret() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9%!$&'()*+;=._~-]{0,8}".prop_map(|s| format!("{SECRET}{s}"))
}

/// A password with any printable character but `@`.
fn wild_secret() -> impl Strategy<Value = String> {
    "[!-?A-~]{0,8}".prop_map(|s| format!("{SECRET}{s}"))
}

fn url_parts() -> impl Strategy<Value = (String, String, String, String)> {
    let scheme = prop::sample::select(vec![
        "redis://",
        "rediss://",
        "unix://",
        "redis+unix://",
        "http://",
        "REDIS://",
        "",
        "redis:/",
    ]);
    let user = prop_oneof!["[a-z]{0,6}", Just(String::new()), "[^:@/]{0,6}"];
    let host = prop_oneof![
        "[a-z][a-z0-9.\\-]{0,15}",
        "[0-9]{1,3}(\\.[0-9]{1,3}){3}",
        "\\[[0-9a-f:]{2,20}\\]",
        Just(String::new()),
        "\\PC{0,8}",
    ];
    let tail = prop_oneof![
        Just(String::new()),
        (0u32..70_000).prop_map(|p| format!(":{p}")),
        ((0u32..70_000), num_text()).prop_map(|(p, db)| format!(":{p}/{db}")),
        num_text().prop_map(|q| format!("/run/redis.sock?db={q}")),
        "[/?#:@a-z0-9]{0,10}",
    ];
    (scheme, user, host, tail).prop_map(|(s, u, h, t)| (s.to_string(), u, h, t))
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn parse_addr_never_panics(input in prop_oneof![junk(), url_parts().prop_map(|(s, u, h, t)| format!("{s}{u}@{h}{t}"))]) {
        if let Ok(a) = parse_addr(&input) {
            prop_assert!((0..=1_000_000).contains(&a.db));
            prop_assert!(!a.addr.is_empty());
            if let Endpoint::Tcp { host, port } = &a.endpoint {
                prop_assert_eq!(&a.addr, &redis_vitals::redis::target::format_host_port(host, *port));
                prop_assert!(!host.is_empty());
            }
        }
        let _ = redact_url(&input);
    }

    /// A password in a URL that parses is never in the redacted text nor in
    /// the parsed address' debug output.
    #[test]
    fn redact_hides_url_passwords((scheme, user, host, tail) in url_parts(), pw in secret()) {
        let input = format!("{scheme}{user}:{pw}@{host}{tail}");
        // A `://` after the password in a scheme-less address is the known
        // leak pinned by the ignored tests below.
        prop_assume!(input.find("://").is_none_or(|i| scheme.ends_with("://") && i + 3 == scheme.len()));
        let redacted = redact_url(&input);
        prop_assert!(!redacted.contains(SECRET), "{input:?} -> {redacted:?}");
        if let Ok(a) = parse_addr(&input) {
            let debug = format!("{a:?}");
            prop_assert!(!debug.contains(SECRET), "{debug}");
            if let Some(p) = &a.password {
                prop_assert!(p.expose().starts_with(SECRET));
            }
        }
    }

    /// Same with passwords holding URL delimiters (`:`, `/`, `?`, `#`), in
    /// the `scheme://` form the documentation shows.
    #[test]
    fn redact_hides_wild_passwords_in_scheme_urls(
        scheme in prop::sample::select(vec!["redis://", "rediss://", "unix://"]),
        user in "[a-z]{0,6}", host in "[a-z]{1,8}(:[0-9]{1,5})?", pw in wild_secret(),
    ) {
        let input = format!("{scheme}{user}:{pw}@{host}");
        let redacted = redact_url(&input);
        prop_assert!(!redacted.contains(SECRET), "{input:?} -> {redacted:?}");
    }

    /// Whatever the input, the redacted text does not parse to a password
    /// other than the mask.
    #[test]
    fn redacted_text_has_no_password(input in prop_oneof![junk(), url_parts().prop_map(|(s, u, h, t)| format!("{s}{u}:pw@{h}{t}"))]) {
        let redacted = redact_url(&input);
        if let Ok(a) = parse_addr(&redacted) {
            if let Some(p) = a.password {
                prop_assert_eq!(p.expose(), "****", "{:?} -> {:?}", input, redacted);
            }
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// The bare `user:password@host:port` form (parse_addr accepts it)
    /// with a password holding `://`: redact_url splits at that `://` and
    /// returns the input whole, password included.
    #[test]
    fn redact_hides_wild_passwords_in_bare_form(user in "[a-z]{0,6}", host in "[a-z]{1,8}(:[0-9]{1,5})?", pw in wild_secret(), tail in "[!-?A-~]{0,4}") {
        let input = format!("{user}:{pw}://{tail}@{host}");
        let redacted = redact_url(&input);
        prop_assert!(!redacted.contains(SECRET), "{input:?} -> {redacted:?}");
    }
}

/// Smallest known case of the leak above.
#[test]
fn redact_bare_form_with_scheme_like_password() {
    let redacted = redact_url("alice:p://w@host:6379");
    assert!(!redacted.contains("p://w"), "{redacted}");
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

const FILE_KEYS: &[&str] = &[
    "addr",
    "user",
    "password",
    "password-file",
    "config-command",
    "maxclients",
    "cluster",
    "tls-ca-file",
    "tls-cert-file",
    "tls-key-file",
    "tls-server-name",
    "tls-insecure-skip-verify",
    "interval",
    "timeout",
    "concurrency",
    "group-size",
    "config-refresh",
    "max-backoff",
    "hit-ratio-window",
    "lag-history",
    "refresh-interval",
    "listen-address",
    "telemetry-path",
    "level",
    "format",
    "detail-interval",
    "config-file",
    "bogus",
    "password_file",
];

/// A TOML basic string (Rust's escapes mostly coincide with TOML's; where
/// they do not, the file is invalid, which is a fine input too).
fn quoted(s: String) -> String {
    format!("{s:?}")
}

/// Values for any key: durations, numbers, booleans, addresses, paths that
/// exist or not (never a device: reading one would block or never end).
fn toml_value(files: Arc<Vec<String>>) -> impl Strategy<Value = String> {
    let dur = prop_oneof![
        prop::sample::select(vec![
            "5s",
            "1s",
            "50ms",
            "49ms",
            "0s",
            "1h",
            "10m",
            "2s 500ms",
            "1y",
            "18446744073709551615s",
            "-1s",
            "5",
            "",
            "s"
        ])
        .prop_map(str::to_owned),
        (
            (0u64..100_000),
            prop::sample::select(vec!["ms", "s", "m", "h", "ns", "us", "d", "x"])
        )
            .prop_map(|(n, u)| format!("{n}{u}")),
    ];
    let addr = prop_oneof![
        (
            prop::sample::select(vec!["redis://", "rediss://", "unix://", ""]),
            prop::option::of(secret()),
            "[a-z]{1,6}",
            0u32..70_000
        )
            .prop_map(|(s, pw, h, p)| match pw {
                Some(pw) => format!("{s}u:{pw}@{h}:{p}"),
                None => format!("{s}{h}:{p}"),
            }),
        Just("unix:///tmp/redis.sock".to_string()),
        "[a-z:/@.0-9]{0,16}",
    ];
    prop_oneof![
        3 => dur.prop_map(quoted),
        2 => prop_oneof![any::<i64>().prop_map(|n| n.to_string()), (0i64..5000).prop_map(|n| n.to_string()), Just("18446744073709551616".to_string())],
        1 => any::<bool>().prop_map(|b| b.to_string()),
        2 => addr.clone().prop_map(quoted),
        2 => prop::collection::vec(addr, 0..3).prop_map(|a| format!("[{}]", a.into_iter().map(quoted).collect::<Vec<_>>().join(", "))),
        2 => "[a-zA-Z0-9 ]{0,12}".prop_map(quoted),
        2 => prop::sample::select((*files).clone()).prop_map(quoted),
        1 => prop::sample::select(vec![":9121", "127.0.0.1:0", "[::1]:9121", "nonsense", "/metrics", "/", "/sd", "metrics", "info", "TRACE", "json", "text", "xml", "CONFIG", "", "a b"])
            .prop_map(|s| quoted(s.to_string())),
        1 => "\\PC{0,12}".prop_map(quoted),
        1 => "[^\r\n]{0,12}",
        1 => Just("{ a = 1 }".to_string()),
    ]
}

fn toml_text(files: Arc<Vec<String>>) -> impl Strategy<Value = String> {
    let header = prop::sample::select(vec![
        "",
        "[redis]",
        "[poll]",
        "[signals]",
        "[cluster]",
        "[web]",
        "[log]",
        "[[targets]]",
        "[[targets]]",
        "[bogus]",
        "[redis.tls]",
        "[[redis]]",
        "[targets]",
    ]);
    let line = prop_oneof![
        8 => (prop::sample::select(FILE_KEYS), toml_value(files), prop::sample::select(vec![" = ", "=", " =  "]))
            .prop_map(|(k, v, eq)| format!("{k}{eq}{v}")),
        2 => secret().prop_map(|pw| format!("password = {}", quoted(pw))),
        1 => "#[^\r\n]{0,10}",
        1 => junk(),
    ];
    let section = (header, prop::collection::vec(line, 0..6))
        .prop_map(|(h, lines)| format!("{h}\n{}\n", lines.join("\n")));
    prop::collection::vec(section, 0..6).prop_map(|s| s.concat())
}

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
    "--poll.group-size",
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
];

/// `--flag=value` pairs (the `=` keeps a value like `-h` from reading as a
/// flag: `--help` and `--version` would exit the test process), and the
/// one boolean flag.
fn flag_args(files: Arc<Vec<String>>) -> impl Strategy<Value = Vec<String>> {
    let value = prop_oneof![
        3 => toml_value(files).prop_map(|v| v.trim_matches('"').to_string()),
        1 => junk(),
    ];
    let arg = prop_oneof![
        8 => (prop::sample::select(FLAGS), value).prop_map(|(f, v)| format!("{f}={v}")),
        1 => Just("--redis.tls-insecure-skip-verify".to_string()),
        1 => Just("--unknown-flag".to_string()),
        1 => Just("positional".to_string()),
    ];
    prop::collection::vec(arg, 0..4)
}

/// Files the generated configuration may point at: a password file, an
/// empty one, a directory, a missing path, a non-PEM file.
struct ConfigFiles {
    _dir: tempfile::TempDir,
    paths: Arc<Vec<String>>,
}

fn config_files() -> ConfigFiles {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut paths = Vec::new();
    for (name, content) in [
        ("password", format!("{SECRET}-from-file\nsecond line\n")),
        ("empty", String::new()),
        (
            "garbage.pem",
            "-----BEGIN CERTIFICATE-----\nnot base64\n".to_string(),
        ),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, content).expect("write");
        paths.push(p.display().to_string());
    }
    paths.push(dir.path().display().to_string());
    paths.push(dir.path().join("missing").display().to_string());
    ConfigFiles {
        _dir: dir,
        paths: Arc::new(paths),
    }
}

fn check_config(toml: &str, flags: &[String]) -> Result<(), TestCaseError> {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(toml.as_bytes()).expect("write");
    let mut args = vec![
        "redis-vitals".to_string(),
        format!("--config.file={}", file.path().display()),
    ];
    args.extend(flags.iter().cloned());
    let result = std::panic::catch_unwind(|| Config::from_args(&args));
    let result =
        result.map_err(|_| TestCaseError::fail(format!("panicked on {toml:?} {flags:?}")))?;
    match result {
        Ok(c) => {
            prop_assert!(!c.targets.is_empty());
            prop_assert!(c.poll.interval >= Duration::from_millis(50));
            prop_assert!(!c.poll.timeout.is_zero() && c.poll.timeout <= c.poll.interval);
            prop_assert!((1..=4096).contains(&c.poll.concurrency));
            prop_assert!((1..=4096).contains(&c.poll.group_size));
            prop_assert!(c.poll.max_backoff >= c.poll.interval);
            prop_assert!(c.hit_ratio_window >= c.poll.interval);
            prop_assert!(c.lag_history >= c.poll.interval * 2);
            prop_assert!(c.telemetry_path.starts_with('/') && c.telemetry_path.len() > 1);
            let mut addrs: Vec<_> = c.targets.iter().map(|t| &t.addr).collect();
            addrs.sort();
            addrs.dedup();
            prop_assert_eq!(addrs.len(), c.targets.len());
            prop_assert!(
                !format!("{c:?}").contains(SECRET),
                "password in Config's Debug"
            );
        }
        Err(e) => {
            let text = e.to_string();
            prop_assert!(!text.contains(SECRET), "password in error: {text}");
        }
    }
    Ok(())
}

#[test]
fn config_loader_never_panics() {
    let files = config_files();
    let mut runner = proptest::test_runner::TestRunner::new(config(96));
    let strategy = (
        prop_oneof![4 => toml_text(files.paths.clone()), 1 => junk()],
        flag_args(files.paths.clone()),
    );
    runner
        .run(&strategy, |(toml, flags)| check_config(&toml, &flags))
        .unwrap();
}

/// `lag_history < poll.interval * 2` multiplies a Duration read from the
/// configuration: at the largest interval humantime accepts, that panics
/// ("overflow when multiplying duration by scalar") instead of returning an
/// error naming the key.
#[test]
fn config_huge_interval_is_an_error_not_a_panic() {
    let huge = "18446744073709551615s";
    let toml = format!(
        "[poll]\ninterval = \"{huge}\"\nmax-backoff = \"{huge}\"\ndetail-interval = \"{huge}\"\n[signals]\nhit-ratio-window = \"{huge}\"\n"
    );
    check_config(&toml, &[]).unwrap();
    let flags: Vec<String> = [
        "--poll.interval",
        "--poll.max-backoff",
        "--signals.hit-ratio-window",
        "--poll.detail-interval",
    ]
    .iter()
    .map(|f| format!("{f}={huge}"))
    .collect();
    check_config("", &flags).unwrap();
}

/// Cases found while writing the generators, kept as plain regressions.
#[test]
fn config_loader_edge_cases() {
    let files = config_files();
    let pw_file = &files.paths[0];
    for toml in [
        "",
        "\u{feff}",
        "é",
        "[redis]\naddr = [\"redis://u:Zq9SECRET@h:99999\"]\n",
        "[redis]\npassword = \"Zq9SECRET\"\nbogus = 1\n",
        "[[targets]]\naddr = \"h:1\"\npassword = \"Zq9SECRET\"\n[[targets]]\naddr = \"h:1\"\n",
        "[poll]\ninterval = \"18446744073709551615s\"\n",
        "[poll]\ninterval = \"1s\"\ntimeout = \"1s\"\nmax-backoff = \"1s\"\n[signals]\nlag-history = \"18446744073709551615s\"\n",
        "[redis]\naddr = [\"rediss://h:1\"]\ntls-ca-file = \"/nonexistent\"\n",
        &format!("[redis]\npassword-file = {pw_file:?}\naddr = [\"h:1/x\"]\n"),
        "[poll]\nconcurrency = -1\n",
        "a = \"\\u00e9\"\n\u{7f}",
        "[redis]\naddr = \"\u{10ffff}\"\n",
        "x = \"\u{e9}\n",
    ] {
        check_config(toml, &[]).unwrap_or_else(|e| panic!("{toml:?}: {e}"));
    }
}

// ---------------------------------------------------------------------------
// RESP replies (src/resp.rs): what the poller reads from every node
// ---------------------------------------------------------------------------

use redis_vitals::redis::resp::{self, Framer, Reply, RespError};

/// RESP2 reply trees within the decoder's limits.
fn reply_model() -> impl Strategy<Value = Reply> {
    let leaf = prop_oneof![
        "[ -~]{0,20}".prop_map(Reply::Status),
        "[A-Z]{1,8}( [ -~]{0,20})?".prop_map(Reply::Error),
        any::<i64>().prop_map(Reply::Int),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Reply::Bulk),
        Just(Reply::Nil),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop::collection::vec(inner, 0..6).prop_map(Reply::Array)
    })
}

fn write_reply(r: &Reply, out: &mut Vec<u8>) {
    match r {
        Reply::Status(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
        Reply::Error(s) => out.extend_from_slice(format!("-{s}\r\n").as_bytes()),
        Reply::Int(i) => out.extend_from_slice(format!(":{i}\r\n").as_bytes()),
        Reply::Bulk(b) => {
            out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
            out.extend_from_slice(b);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Nil => out.extend_from_slice(b"$-1\r\n"),
        Reply::Array(items) => {
            out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
            for i in items {
                write_reply(i, out);
            }
        }
    }
}

/// Frames `bytes` fed in pieces cut at `cuts`, as reads would deliver them.
fn frame_in_pieces(bytes: &[u8], cuts: &[usize]) -> Result<Option<usize>, RespError> {
    let mut framer = Framer::new();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    points.push(bytes.len());
    for p in points {
        if let Some(end) = framer.advance(&bytes[..p], 1 << 20)? {
            return Ok(Some(end));
        }
    }
    Ok(None)
}

proptest! {
    #![proptest_config(config(512))]

    /// Any bytes, in any pieces: no panic, and a framed reply decodes to
    /// exactly the framed length.
    #[test]
    fn resp_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256), cuts in prop::collection::vec(any::<usize>(), 0..4)) {
        if let Ok(Some(end)) = frame_in_pieces(&bytes, &cuts) {
            let (_, used) = resp::decode(&bytes[..end]).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(used, end);
        }
    }

    /// A written reply, followed by anything, arriving in any pieces: framed
    /// at its exact end and decoded back to itself.
    #[test]
    fn resp_model_round_trips(model in reply_model(), tail in prop::collection::vec(any::<u8>(), 0..8), cuts in prop::collection::vec(any::<usize>(), 0..6)) {
        let mut bytes = Vec::new();
        write_reply(&model, &mut bytes);
        let len = bytes.len();
        bytes.extend_from_slice(&tail);
        let end = frame_in_pieces(&bytes, &cuts).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(end, Some(len));
        let (back, used) = resp::decode(&bytes[..len]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(used, len);
        prop_assert_eq!(back, model);
    }
}

// ---------------------------------------------------------------------------
// Sentinel replies and events (issue 19): never a panic, whatever a Sentinel
// (or something pretending to be one) sends.
// ---------------------------------------------------------------------------

/// A decoded RESP2 reply: Sentinel-shaped (flat field/value lists) mixed
/// with junk of every kind, nested up to the decoder's depth.
fn sentinel_reply() -> impl Strategy<Value = redis_vitals::redis::resp::Reply> {
    use redis_vitals::redis::resp::Reply;
    let field = prop_oneof![
        Just("name".to_string()),
        Just("ip".to_string()),
        Just("port".to_string()),
        Just("flags".to_string()),
        Just("num-slaves".to_string()),
        Just("num-other-sentinels".to_string()),
        Just("quorum".to_string()),
        Just("config-epoch".to_string()),
        junk(),
    ];
    let value = prop_oneof![
        "[0-9]{0,6}",
        "[a-z_,]{0,30}",
        Just("master,s_down,o_down,failover_in_progress".to_string()),
        Just("99999999999999999999".to_string()),
        junk(),
    ];
    let leaf = prop_oneof![
        field.clone().prop_map(|s| Reply::Bulk(s.into_bytes())),
        value.prop_map(|s| Reply::Bulk(s.into_bytes())),
        junk().prop_map(Reply::Status),
        junk().prop_map(Reply::Error),
        any::<i64>().prop_map(Reply::Int),
        Just(Reply::Nil),
        prop::collection::vec(any::<u8>(), 0..20).prop_map(Reply::Bulk),
    ];
    leaf.prop_recursive(3, 64, 16, |inner| {
        prop::collection::vec(inner, 0..16).prop_map(Reply::Array)
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn sentinel_replies_never_panic(reply in sentinel_reply()) {
        use redis_vitals::parse::sentinel as s;
        let _ = s::fields(&reply);
        if let Some(masters) = s::masters(&reply) {
            for m in masters {
                prop_assert!(!m.name.is_empty());
            }
        }
        if let Some(list) = s::instances(&reply) {
            for i in list {
                prop_assert!(i.port != 0 && !i.ip.is_empty());
            }
        }
        let _ = s::ckquorum(&reply);
        let _ = s::push_event(&reply);
    }

    #[test]
    fn sentinel_info_and_events_never_panic(text in junk(), channel in junk()) {
        use redis_vitals::parse::sentinel as s;
        let info = s::info(&text);
        for m in &info.master_lines {
            prop_assert!(!m.name.is_empty());
        }
        let _ = s::event(&channel, &text);
        let _ = s::event("+switch-master", &text);
    }
}

// ---------------------------------------------------------------------------
// Keyspace namespaces (signals::keyspace): any key name, any separators.

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn namespaces_are_bounded_printable_and_stable(
        key in proptest::collection::vec(any::<u8>(), 0..600),
        seps in proptest::sample::subsequence(b":/._-|#".to_vec(), 1..4),
    ) {
        use redis_vitals::signals::keyspace::{namespace_of, NamespaceRules, MAX_PATTERN_BYTES, MAX_SEGMENTS};
        let rules = NamespaceRules { separators: seps.clone() };
        let p = namespace_of(&key, &rules);
        prop_assert!(p.len() <= MAX_PATTERN_BYTES);
        prop_assert!(!p.chars().any(char::is_control), "{p:?}");
        prop_assert_eq!(&p, &namespace_of(&key, &rules));
        let segments = p.bytes().filter(|b| seps.contains(b)).count() + 1;
        prop_assert!(segments <= MAX_SEGMENTS + 1, "{p:?}");
        // A pattern is its own pattern once identifiers are gone: patterns
        // of printable keys do not drift when re-derived.
        if key.iter().all(|b| b.is_ascii_graphic()) {
            prop_assert_eq!(namespace_of(p.as_bytes(), &rules), p.clone());
        }
    }
}
