//! Parser for the text of an `INFO` reply.
//!
//! Pure: text in, [`Info`] out, no I/O. It must accept every server we may
//! meet (Redis 3 to 8, Valkey, KeyDB, Dragonfly) and anything a broken or
//! hostile server sends, so it never panics and never fails: lines it does
//! not understand are skipped, and a field it does not know is kept as text.

use std::sync::Arc;

/// One `slaveN:ip=..,port=..,state=..,offset=..,lag=..` line of a master.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaLine {
    pub index: u32,
    pub ip: String,
    pub port: u16,
    pub state: String,
    /// The replica's last acknowledged replication offset.
    pub offset: u64,
    /// Seconds since the replica's last ACK (a stalled-link detector).
    pub lag: u64,
}

impl ReplicaLine {
    pub fn addr(&self) -> String {
        crate::redis::target::format_host_port(&self.ip, self.port)
    }
}

/// One `dbN:keys=..,expires=..,avg_ttl=..` line of the Keyspace section.
#[derive(Debug, Clone, PartialEq)]
pub struct DbLine {
    /// `db0`, `db1`, ...
    pub db: String,
    pub keys: u64,
    pub expires: u64,
    /// Average TTL of keys with an expiry, in milliseconds (0 when none).
    pub avg_ttl_ms: u64,
}

/// One `cmdstat_<cmd>:calls=..,usec=..,...` line.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandStat {
    pub cmd: String,
    pub calls: u64,
    pub usec: u64,
    /// Absent before Redis 6.2.
    pub rejected_calls: Option<u64>,
    pub failed_calls: Option<u64>,
}

/// One `latency_percentiles_usec_<cmd>:p50=..,p99=..,p99.9=..` line (7.0+).
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyStat {
    pub cmd: String,
    /// (quantile as in the reply, e.g. "50", "99.9"; microseconds)
    pub percentiles: Vec<(String, f64)>,
}

/// Where one plain field's key and value sit in `Info::text`.
#[derive(Debug, Clone, Copy)]
struct Field {
    key: (u32, u32),
    value: (u32, u32),
}

fn key_bytes<'t>(text: &'t str, f: &Field) -> &'t [u8] {
    text.as_bytes()
        .get(f.key.0 as usize..f.key.1 as usize)
        .unwrap_or(b"")
}

/// Hash of a key for [`Info`]'s index: the Fx hash (rustc's), eight bytes
/// at a time. Not DoS-resistant, and need not be: a reply holds at most
/// [`MAX_ENTRIES`] fields, so a hostile server that made every key collide
/// would cost one poll a few million comparisons, inside its timeout.
fn key_hash(key: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = key.len() as u64;
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    h
}

/// A parsed `INFO` reply.
///
/// Plain fields are kept as one string plus a hash index into it rather
/// than a map of owned strings: a poll parses ~250 fields, and two
/// allocations and a hash insert per field were a fifth of the exporter's
/// CPU in the benchmark profile. The index replaced a sorted field list
/// whose sort was a fifth of a poll's parse-and-render instructions
/// (callgrind, examples/poll_cost.rs).
#[derive(Debug, Clone, Default)]
pub struct Info {
    /// Keys and values of the plain `key:value` fields of every section,
    /// back to back; the structured lines below are kept out of it.
    text: String,
    /// In reply order; of a repeated key only the last is kept.
    fields: Vec<Field>,
    /// Open addressing with linear probing over `fields`: a slot holds a
    /// field's position + 1, or 0 when empty. Its length is a power of two
    /// at least twice the field count (empty when there are no fields).
    index: Vec<u16>,
    /// Section names in the order they appeared (`Server`, `Clients`, ...).
    pub sections: Vec<String>,
    pub replicas: Vec<ReplicaLine>,
    pub keyspace: Vec<DbLine>,
    /// Shared so a poll that skips commandstats can carry the last ones
    /// forward without copying them.
    pub commands: Arc<Vec<CommandStat>>,
    /// `errorstat_<PREFIX>:count=N` as (PREFIX, N).
    pub errors: Vec<(String, u64)>,
    pub latencies: Arc<Vec<LatencyStat>>,
}

/// Longest key we keep. Real keys are under 64 bytes; the cap keeps a hostile
/// reply from making us store megabyte-long keys (the reply size is capped
/// elsewhere, this bounds what we keep of it).
const MAX_KEY_LEN: usize = 256;

/// Longest value we keep, for the same reason (`os:`/`executable:` are the
/// longest legitimate values, far below this).
const MAX_VALUE_LEN: usize = 1024;

/// Most structured lines of one kind we keep: bounds memory per node even if
/// a server claims millions of databases, replicas or commands.
const MAX_ENTRIES: usize = 4096;

impl Info {
    fn slice(&self, (start, end): (u32, u32)) -> &str {
        self.text.get(start as usize..end as usize).unwrap_or("")
    }

    fn key_bytes(&self, f: &Field) -> &[u8] {
        key_bytes(&self.text, f)
    }

    /// The raw text of a plain field.
    pub fn get(&self, key: &str) -> Option<&str> {
        let mask = self.index.len().checked_sub(1)?;
        let mut slot = key_hash(key.as_bytes()) as usize & mask;
        // The table is at most half full: an empty slot always comes.
        loop {
            let at = usize::from(*self.index.get(slot)?);
            let f = self.fields.get(at.checked_sub(1)?)?;
            if self.key_bytes(f) == key.as_bytes() {
                return Some(self.slice(f.value));
            }
            slot = (slot + 1) & mask;
        }
    }

    /// Builds `index` over `fields`, dropping all but the last of repeated
    /// keys (as a map would keep the last insert).
    fn build_index(&mut self) {
        for pass in 0..2 {
            let size = (self.fields.len() * 2).next_power_of_two().max(16);
            self.index.clear();
            self.index
                .resize(if self.fields.is_empty() { 0 } else { size }, 0);
            let mask = size - 1;
            let mut dropped = vec![];
            let (text, fields, index) = (&self.text, &self.fields, &mut self.index);
            for (i, f) in fields.iter().enumerate() {
                let key = key_bytes(text, f);
                let mut slot = key_hash(key) as usize & mask;
                loop {
                    match usize::from(index[slot]) {
                        0 => {
                            // Fields are capped at MAX_ENTRIES (< u16::MAX).
                            index[slot] = (i + 1) as u16;
                            break;
                        }
                        at if key_bytes(text, &fields[at - 1]) == key => {
                            dropped.push(at - 1);
                            index[slot] = (i + 1) as u16;
                            break;
                        }
                        _ => slot = (slot + 1) & mask,
                    }
                }
            }
            // Rare (a server repeating a field): drop the earlier copies and
            // index again; the second pass finds no repeats.
            if dropped.is_empty() || pass == 1 {
                break;
            }
            dropped.sort_unstable();
            let mut i = 0;
            self.fields.retain(|_| {
                let keep = dropped.binary_search(&i).is_err();
                i += 1;
                keep
            });
        }
    }

    /// A plain field as a number; `None` when absent or not numeric.
    pub fn f64(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(parse_number)
    }

    /// A plain field as an unsigned integer (rejects negatives and fractions).
    pub fn u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(|v| v.trim().parse().ok())
    }

    /// Whether the reply had a section of this name (case-insensitive).
    pub fn has_section(&self, name: &str) -> bool {
        self.sections.iter().any(|s| s.eq_ignore_ascii_case(name))
    }

    /// All plain fields whose value is numeric, including ones this exporter
    /// has no metric for (kept so new server fields are not silently lost).
    pub fn numeric_fields(&self) -> impl Iterator<Item = (&str, f64)> {
        self.fields
            .iter()
            .filter_map(|f| parse_number(self.slice(f.value)).map(|n| (self.slice(f.key), n)))
    }

    pub fn field_count(&self) -> usize {
        self.fields.len()
    }

    /// Keeps only the plain fields named in `keep`, the replica lines and
    /// the keyspace lines (one per database: the /insight page and shard
    /// balance read them), and drops the rest (sections, command, latency
    /// and error stats): what outlives a poll, without the ~7 KB per node
    /// that the whole reply takes (see `state::KEPT_AFTER_POLL`).
    pub fn retain_fields(&mut self, keep: &[&str]) {
        let mut small = Info::default();
        {
            let mut kept: Vec<(&str, &str)> = Vec::with_capacity(keep.len());
            for k in keep {
                if let Some(v) = self.get(k) {
                    if !kept.iter().any(|(seen, _)| seen == k) {
                        kept.push((k, v));
                    }
                }
            }
            small
                .text
                .reserve_exact(kept.iter().map(|(k, v)| k.len() + v.len()).sum());
            small.fields.reserve_exact(kept.len());
            for (k, v) in kept {
                let k0 = small.text.len() as u32;
                small.text.push_str(k);
                let k1 = small.text.len() as u32;
                small.text.push_str(v);
                small.fields.push(Field {
                    key: (k0, k1),
                    value: (k1, small.text.len() as u32),
                });
            }
        }
        small.build_index();
        small.replicas = std::mem::take(&mut self.replicas);
        small.replicas.shrink_to_fit();
        small.keyspace = std::mem::take(&mut self.keyspace);
        small.keyspace.shrink_to_fit();
        *self = small;
    }
}

/// Parses the text of an `INFO` reply. Accepts CRLF or LF line ends.
pub fn parse_info(text: &str) -> Info {
    let mut info = Info {
        text: String::with_capacity(text.len() / 2),
        // A field line is 20-30 bytes: room for all without regrowing.
        fields: Vec::with_capacity((text.len() / 20).min(MAX_ENTRIES)),
        ..Info::default()
    };
    // Lines and the key/value colon are found with memchr: the std
    // searchers were a quarter of a poll's parse-and-render instructions
    // (callgrind, examples/poll_cost.rs). Both bytes are ASCII, so every
    // cut is on a char boundary.
    let ends = memchr::memchr_iter(b'\n', text.as_bytes()).chain(std::iter::once(text.len()));
    let mut start = 0;
    for end in ends {
        let raw = text.get(start..end).unwrap_or("");
        start = end + 1;
        // INFO is ASCII; this also drops the \r of CRLF.
        let line = raw.trim_ascii();
        if line.is_empty() {
            continue;
        }
        if let Some(section) = line.strip_prefix('#') {
            if info.sections.len() < MAX_ENTRIES {
                info.sections
                    .push(truncate(section.trim(), MAX_KEY_LEN).to_string());
            }
            continue;
        }
        let Some(colon) = memchr::memchr(b':', line.as_bytes()) else {
            continue;
        };
        let (Some(key), Some(value)) = (line.get(..colon), line.get(colon + 1..)) else {
            continue;
        };
        if key.is_empty() || key.len() > MAX_KEY_LEN || value.len() > MAX_VALUE_LEN {
            continue;
        }
        parse_line(&mut info, key, value);
    }
    // No shrink_to_fit: a poll keeps only a few fields of this (see
    // Info::retain_fields), and the copies were pure cost.
    info.build_index();
    info
}

fn parse_line(info: &mut Info, key: &str, value: &str) {
    if let Some(cmd) = key.strip_prefix("cmdstat_") {
        if info.commands.len() < MAX_ENTRIES {
            if let Some(stat) = parse_cmdstat(cmd, value) {
                Arc::make_mut(&mut info.commands).push(stat);
            }
        }
    } else if let Some(prefix) = key.strip_prefix("errorstat_") {
        if info.errors.len() < MAX_ENTRIES {
            if let Some(count) = kv_u64(value, "count") {
                info.errors.push((prefix.to_string(), count));
            }
        }
    } else if let Some(cmd) = key.strip_prefix("latency_percentiles_usec_") {
        if info.latencies.len() < MAX_ENTRIES {
            let percentiles: Vec<(String, f64)> = kv_pairs(value)
                .filter_map(|(k, v)| Some((k.strip_prefix('p')?.to_string(), parse_number(v)?)))
                .collect();
            if !percentiles.is_empty() {
                Arc::make_mut(&mut info.latencies).push(LatencyStat {
                    cmd: cmd.to_string(),
                    percentiles,
                });
            }
        }
    } else if is_indexed(key, "db") && value.contains("keys=") {
        if info.keyspace.len() < MAX_ENTRIES {
            if let Some(keys) = kv_u64(value, "keys") {
                info.keyspace.push(DbLine {
                    db: key.to_string(),
                    keys,
                    expires: kv_u64(value, "expires").unwrap_or(0),
                    // Dragonfly reports -1 when no key has a TTL.
                    avg_ttl_ms: kv_u64(value, "avg_ttl").unwrap_or(0),
                });
            }
        }
    } else if is_indexed(key, "slave") && value.contains("port=") {
        if info.replicas.len() < MAX_ENTRIES {
            if let Some(line) = parse_replica(key, value) {
                info.replicas.push(line);
            }
        }
    } else if info.fields.len() < MAX_ENTRIES {
        let at = |text: &String| text.len() as u32;
        let k0 = at(&info.text);
        info.text.push_str(key);
        let k1 = at(&info.text);
        info.text.push_str(value);
        let v1 = at(&info.text);
        info.fields.push(Field {
            key: (k0, k1),
            value: (k1, v1),
        });
    }
}

fn parse_cmdstat(cmd: &str, value: &str) -> Option<CommandStat> {
    Some(CommandStat {
        cmd: cmd.to_string(),
        calls: kv_u64(value, "calls")?,
        usec: kv_u64(value, "usec").unwrap_or(0),
        rejected_calls: kv_u64(value, "rejected_calls"),
        failed_calls: kv_u64(value, "failed_calls"),
    })
}

fn parse_replica(key: &str, value: &str) -> Option<ReplicaLine> {
    let index = key.strip_prefix("slave")?.parse().ok()?;
    let mut ip = None;
    let mut port = None;
    let mut state = String::new();
    let mut offset = 0;
    let mut lag = 0;
    for (k, v) in kv_pairs(value) {
        match k {
            "ip" => ip = Some(v.to_string()),
            "port" => port = v.parse().ok(),
            "state" => state = v.to_string(),
            "offset" => offset = v.parse().unwrap_or(0),
            "lag" => lag = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    Some(ReplicaLine {
        index,
        ip: ip?,
        port: port?,
        state,
        offset,
        lag,
    })
}

/// `dbN`, `slaveN`: prefix followed by digits only.
fn is_indexed(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix)
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
}

/// `a=1,b=2` pairs; items without `=` are skipped.
fn kv_pairs(value: &str) -> impl Iterator<Item = (&str, &str)> {
    value.split(',').filter_map(|item| item.split_once('='))
}

fn kv_u64(value: &str, key: &str) -> Option<u64> {
    kv_pairs(value)
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
}

/// Numbers as INFO writes them: integers, decimals, and nothing else (no
/// `inf`/`nan`, which Rust's parser would accept and Prometheus would
/// choke on downstream).
pub fn parse_number(v: &str) -> Option<f64> {
    let v = v.trim();
    let first = v.bytes().next()?;
    if !(first.is_ascii_digit() || first == b'-' || first == b'+' || first == b'.') {
        return None;
    }
    v.parse::<f64>().ok().filter(|n| n.is_finite())
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index agrees with a map built from the same lines: every key
    /// found with its last value, absent keys absent, repeats dropped.
    #[test]
    fn index_agrees_with_a_map() {
        let mut text = String::new();
        let mut model = std::collections::BTreeMap::new();
        for i in 0..600u32 {
            // Keys of shared prefixes and lengths around the hash's 8-byte
            // steps; every seventh line repeats an earlier key.
            let key = if i % 7 == 6 {
                format!("used_memory_k{}", i / 3)
            } else {
                format!("used_memory_k{i}")
            };
            text.push_str(&format!("{key}:{i}\r\n"));
            model.insert(key, i.to_string());
        }
        let info = parse_info(&text);
        assert_eq!(info.field_count(), model.len());
        for (k, v) in &model {
            assert_eq!(info.get(k), Some(v.as_str()), "{k}");
        }
        for absent in ["", "used_memory", "used_memory_k", "used_memory_k600", "x"] {
            assert_eq!(info.get(absent), None, "{absent}");
        }
        assert_eq!(parse_info("").get("x"), None);
    }

    #[test]
    fn retain_fields_keeps_only_what_is_named() {
        let mut info = parse_info(
            "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n\
             slave0:ip=10.0.0.2,port=6380,state=online,offset=42,lag=0\r\n\
             master_repl_offset:42\r\n# Stats\r\nkeyspace_hits:7\r\n\
             cmdstat_get:calls=3,usec=9,usec_per_call=3.00\r\n",
        );
        assert!(!info.commands.is_empty());
        info.retain_fields(&["role", "master_repl_offset", "absent", "role"]);
        assert_eq!(info.get("role"), Some("master"));
        assert_eq!(info.u64("master_repl_offset"), Some(42));
        assert_eq!(info.get("keyspace_hits"), None);
        assert_eq!(info.get("absent"), None);
        assert_eq!(info.field_count(), 2);
        assert_eq!(info.replicas.len(), 1);
        assert!(info.commands.is_empty() && info.sections.is_empty());
    }

    #[test]
    fn shapes() {
        let text = "# Server\r\nredis_version:7.0.15\r\nos:Linux 6.1 x86_64\r\n\r\n# Replication\r\nrole:master\r\nslave0:ip=10.0.0.2,port=6380,state=online,offset=1234,lag=1\r\n# Commandstats\r\ncmdstat_client|list:calls=3,usec=30,usec_per_call=10.00,rejected_calls=0,failed_calls=1\r\ncmdstat_get:calls=5,usec=10,usec_per_call=2.00\r\n# Errorstats\r\nerrorstat_OOM:count=7\r\n# Latencystats\r\nlatency_percentiles_usec_get:p50=1.003,p99=3.007,p99.9=8.015\r\n# Keyspace\r\ndb0:keys=70,expires=20,avg_ttl=3576599,subexpiry=0\r\n";
        let info = parse_info(text);
        assert_eq!(info.get("redis_version"), Some("7.0.15"));
        assert_eq!(info.get("os"), Some("Linux 6.1 x86_64"));
        assert_eq!(info.replicas[0].addr(), "10.0.0.2:6380");
        assert_eq!(info.replicas[0].offset, 1234);
        assert_eq!(info.commands[0].cmd, "client|list");
        assert_eq!(info.commands[0].failed_calls, Some(1));
        assert_eq!(info.commands[1].rejected_calls, None);
        assert_eq!(info.errors, vec![("OOM".to_string(), 7)]);
        assert_eq!(
            info.latencies[0].percentiles[2],
            ("99.9".to_string(), 8.015)
        );
        assert_eq!(info.keyspace[0].keys, 70);
        assert_eq!(info.keyspace[0].avg_ttl_ms, 3576599);
        assert!(info.has_section("keyspace"));
        assert_eq!(
            info.get("slave0"),
            None,
            "structured lines stay out of fields"
        );
    }

    #[test]
    fn numbers_are_strict() {
        assert_eq!(parse_number("1.5"), Some(1.5));
        assert_eq!(parse_number("-1"), Some(-1.0));
        assert_eq!(parse_number("inf"), None);
        assert_eq!(parse_number("NaN"), None);
        assert_eq!(parse_number("1e999"), None);
        assert_eq!(parse_number(""), None);
    }

    #[test]
    fn hostile_input_never_panics() {
        let long = "x".repeat(10_000);
        let inputs = [
            "",
            ":",
            "::::",
            "#",
            "slave0:port=",
            "slave0:ip=a,port=99999",
            "db0:keys=-1",
            "cmdstat_:calls=x",
            "errorstat_:count=",
            "latency_percentiles_usec_x:p",
            "\u{fffd}\u{0}:\u{1}",
            long.as_str(),
        ];
        for input in inputs {
            let _ = parse_info(input);
        }
        let many: String = (0..10_000).map(|i| format!("db{i}:keys=1\n")).collect();
        assert_eq!(parse_info(&many).keyspace.len(), MAX_ENTRIES);
    }
}
