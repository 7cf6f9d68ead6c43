//! Helpers shared by the fuzz targets: output checks (what must hold for any
//! input, beyond "does not panic") and a structured generator of
//! `redis::Value` trees.

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use redis::{Value, VerbatimFormat};
use redis_vitals::parse::cluster::{NodeLine, ParseError, Shard, CLUSTER_SLOTS, MAX_SLOT};

/// With `FUZZ_SKIP_KNOWN_BUGS=1`, targets steer around bugs that are
/// already reported (see docs/fuzzing.md), so that a run explores past them
/// instead of stopping at the first known crash. Off by default: once the
/// bugs are fixed the workarounds find nothing to skip.
pub fn skip_known_bugs() -> bool {
    static SKIP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SKIP.get_or_init(|| std::env::var_os("FUZZ_SKIP_KNOWN_BUGS").is_some_and(|v| v == "1"))
}

/// Checks the text exposition format line by line: HELP/TYPE comments,
/// metric and label names, label value escapes, and a finite value on every
/// sample (no NaN, no +Inf/-Inf). Panics with the offending line.
pub fn check_exposition(text: &str) {
    fn name_ok(s: &str) -> bool {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    assert!(text.is_empty() || text.ends_with('\n'), "no final newline");
    for line in text.split_terminator('\n') {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let kind = parts.next().unwrap_or("");
            let name = parts.next().unwrap_or("");
            assert!(
                (kind == "HELP" || kind == "TYPE") && name_ok(name),
                "bad comment line {line:?}"
            );
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        assert!(name_ok(&line[..name_end]), "bad metric name in {line:?}");
        let mut rest = &line[name_end..];
        if let Some(labels) = rest.strip_prefix('{') {
            let mut chars = labels.char_indices();
            let end = 'labels: loop {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some((_, '=')) => break,
                        Some((_, c)) => name.push(c),
                        None => panic!("unterminated labels in {line:?}"),
                    }
                }
                assert!(name_ok(&name), "bad label name {name:?} in {line:?}");
                assert!(
                    matches!(chars.next(), Some((_, '"'))),
                    "unquoted label value in {line:?}"
                );
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\' | '"' | 'n')) => {}
                            _ => panic!("bad escape in {line:?}"),
                        },
                        Some((_, '"')) => break,
                        Some(_) => {}
                        None => panic!("unterminated label value in {line:?}"),
                    }
                }
                match chars.next() {
                    Some((_, ',')) => {
                        if let Some((i, '}')) = chars.clone().next() {
                            break 'labels i;
                        }
                    }
                    Some((i, '}')) => break 'labels i,
                    _ => panic!("bad label separator in {line:?}"),
                }
            };
            rest = &labels[end + 1..];
        }
        let value = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no space before value in {line:?}"));
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("unparsable value in {line:?}"));
        assert!(v.is_finite(), "non-finite value in {line:?}");
    }
}

/// Valid, pairwise disjoint slot ranges; returns the number of slots.
pub fn check_slots(slots: &[(u16, u16)]) -> u32 {
    let mut seen = vec![false; CLUSTER_SLOTS as usize];
    let mut count = 0;
    for &(a, b) in slots {
        assert!(a <= b && b <= MAX_SLOT, "bad range {a}-{b}");
        for s in a..=b {
            assert!(!seen[usize::from(s)], "slot {s} twice");
            seen[usize::from(s)] = true;
            count += 1;
        }
    }
    count
}

/// Fixed error messages only: the input is never echoed.
pub fn check_error(e: &ParseError) {
    let text = e.to_string();
    assert!(text.len() < 80, "long error message: {text}");
}

/// What any successful CLUSTER NODES parse must satisfy.
pub fn check_nodes(text: &str, r: &std::result::Result<Vec<NodeLine>, ParseError>) {
    match r {
        Ok(nodes) => {
            let lines = text.split('\n').filter(|l| !l.trim().is_empty()).count();
            assert_eq!(nodes.len(), lines);
            for n in nodes {
                assert_eq!(n.slot_count(), check_slots(&n.slots));
                for (slot, peer) in n.migrating.iter().chain(&n.importing) {
                    assert!(*slot <= MAX_SLOT);
                    assert!(!peer.is_empty());
                }
                if let Some(addr) = n.addr() {
                    assert!(n.port != 0 && !n.ip.is_empty());
                    assert!(addr.ends_with(&format!(":{}", n.port)));
                }
                if let Some(h) = &n.hostname {
                    assert!(!h.is_empty() && !h.contains('='));
                }
            }
        }
        Err(e @ ParseError::NodeLine { line, .. }) => {
            assert!(*line >= 1 && *line <= text.split('\n').count());
            check_error(e);
        }
        Err(e) => panic!("unexpected error kind {e:?}"),
    }
}

/// What any successful CLUSTER SHARDS parse must satisfy.
pub fn check_shards(r: &std::result::Result<Vec<Shard>, ParseError>) {
    match r {
        Ok(shards) => {
            for s in shards {
                assert_eq!(s.slot_count(), check_slots(&s.slots));
                if let Some(id) = &s.id {
                    assert!(!id.trim().is_empty());
                }
                for n in &s.nodes {
                    assert!(!n.id.is_empty());
                    assert!(!matches!(n.endpoint.as_deref(), Some("" | "?")));
                    assert!(n.hostname.as_deref() != Some(""));
                }
            }
        }
        Err(e) => check_error(e),
    }
}

/// Words the CLUSTER SHARDS parser looks for, so that generated trees reach
/// its typed branches often.
const WORDS: &[&str] = &[
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
    "master",
    "primary",
    "replica",
    "slave",
    "online",
    "fail",
    "failed",
    "loading",
    "?",
    "",
    "0",
    "16383",
    "16384",
    "6379",
    "-1",
];

/// Deepest tree the generator builds (the parser's own recursion is
/// bounded: shards, nodes, node fields).
const MAX_DEPTH: u32 = 6;

/// A `redis::Value` tree built from fuzz bytes.
pub fn arb_value(u: &mut Unstructured, depth: u32) -> Result<Value> {
    let kinds = if depth >= MAX_DEPTH { 11 } else { 17 };
    Ok(match u.choose_index(kinds)? {
        0 => Value::Nil,
        1 => Value::Okay,
        2 => Value::Int(u.arbitrary()?),
        3 => Value::Int(u.int_in_range(-2..=16_400)?),
        4 => Value::BulkString(u.arbitrary::<&[u8]>()?.to_vec()),
        5 | 6 => Value::BulkString(u.choose(WORDS)?.as_bytes().to_vec()),
        7 => Value::SimpleString(u.choose(WORDS)?.to_string()),
        8 => Value::SimpleString(u.arbitrary::<&str>()?.to_string()),
        9 => match u.choose_index(3)? {
            0 => Value::Double(u.arbitrary()?),
            1 => Value::Boolean(u.arbitrary()?),
            _ => Value::VerbatimString {
                format: VerbatimFormat::Text,
                text: u.choose(WORDS)?.to_string(),
            },
        },
        10 => Value::BulkString(u.int_in_range(0u32..=70_000)?.to_string().into_bytes()),
        11..=13 => Value::Array(arb_list(u, depth)?),
        14 | 15 => {
            let len = u.int_in_range(0..=8)?;
            let mut pairs = Vec::with_capacity(len);
            for _ in 0..len {
                pairs.push((arb_value(u, depth + 1)?, arb_value(u, depth + 1)?));
            }
            Value::Map(pairs)
        }
        _ => match u.choose_index(2)? {
            0 => Value::Set(arb_list(u, depth)?),
            _ => Value::Attribute {
                data: Box::new(arb_value(u, depth + 1)?),
                attributes: vec![(Value::SimpleString("ttl".into()), Value::Int(1))],
            },
        },
    })
}

fn arb_list(u: &mut Unstructured, depth: u32) -> Result<Vec<Value>> {
    let len = u.int_in_range(0..=10)?;
    (0..len).map(|_| arb_value(u, depth + 1)).collect()
}
