//! redis-vitals-dataset: writes a dataset of known composition into a real
//! Redis (a standalone node, or a Redis Cluster given one seed) and prints a
//! JSON manifest of what it wrote, per namespace pattern, so that the cache
//! insight analyser (docs/insight.md) can be checked against the truth.
//!
//! Every key's name, type, contents and TTL follow from (--seed, namespace,
//! index) alone: the same flags write the same dataset whatever the
//! concurrency or the order the workers run in. The manifest groups keys by
//! `namespace_of` (src/signals/keyspace.rs) of the names actually written,
//! so its patterns are the ones the analyser reports.
//!
//! Profiles:
//! - `mixed` (default): seven namespaces of different types, sizes and TTL
//!   shares, among them `cache:page:*`, where 30 % of the keys lack a TTL
//!   (the "missing EXPIRE" case), and hash-tagged `user:{id}:profile`;
//! - `policy`: one namespace `item:*` of strings of `--value-bytes` with a
//!   `--ttl-share` of them expiring, optionally written until the node's
//!   memory reaches `--fill-to` of maxmemory (the eviction-policy tests).
//!
//! Every TTL is hours long, so nothing expires while a test looks at it.
//! The password, if any, is read from REDIS_PASSWORD (never a flag).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Value,
};
use redis_vitals::signals::keyspace::{namespace_of, NamespaceRules};
use serde_json::json;

/// Most keys one run writes: 20 million keys of the mixed profile need
/// about 8 GB of Redis memory, more than any test or benchmark here wants.
const MAX_KEYS: u64 = 20_000_000;
/// The mixed profile needs room for seven namespaces with several keys each.
const MIN_MIXED_KEYS: u64 = 100;
/// Largest `--value-bytes`: values are slices of the random pool.
const MAX_VALUE_BYTES: usize = 1 << 20;
/// Random bytes every value is cut from: incompressible enough for Redis
/// (which does not compress anyway), and generating it once keeps the
/// generator's CPU out of the way at 2 million keys.
const POOL_BYTES: usize = 2 * MAX_VALUE_BYTES;
/// Keys one worker takes at a time; a leaderboard is one unit on its own.
const UNIT_KEYS: u64 = 256;
/// Keys between two memory checks with `--fill-to`: the overshoot past the
/// target is at most this many values.
const FILL_UNIT_KEYS: u64 = 64;
/// A pipeline is sent once it holds this many bytes of arguments, whatever
/// `--pipeline` says: large leaderboards would otherwise make one request of
/// many megabytes.
const MAX_PIPELINE_BYTES: usize = 4 << 20;
/// Members per ZADD: keeps each command well under Redis' query buffer.
const ZADD_CHUNK: usize = 500;
/// Connect deadline; the reply deadline is longer, since a pipeline of a
/// thousand commands on a loaded machine can take a while.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Redis Cluster hash slots.
const SLOTS: usize = 16384;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Profile {
    Mixed,
    Policy,
}

#[derive(Debug, Parser)]
#[command(
    name = "redis-vitals-dataset",
    version,
    about = "Writes a dataset of known composition into Redis and prints its JSON manifest",
    after_help = "The password, if any, is read from the REDIS_PASSWORD environment \
                  variable (never a flag: command lines are visible to every local user)."
)]
struct Args {
    /// Server URL, redis://host:port; for a cluster, any one node.
    #[arg(long = "addr", default_value = "redis://127.0.0.1:6379")]
    addr: String,
    /// ACL user name (REDIS_USER also works).
    #[arg(long, env = "REDIS_USER")]
    user: Option<String>,
    /// Treat the address as a Redis Cluster node (default: ask it).
    #[arg(long, conflicts_with = "standalone")]
    cluster: bool,
    /// Treat the address as a standalone node (default: ask it).
    #[arg(long)]
    standalone: bool,
    /// What to write: `mixed` namespaces, or one `policy` namespace.
    #[arg(long, value_enum, default_value_t = Profile::Mixed)]
    profile: Profile,
    /// Number of keys.
    #[arg(long, default_value_t = 200_000)]
    keys: u64,
    /// Seed of every name, value and TTL.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Policy profile: share of keys with a TTL, 0 to 1.
    #[arg(long)]
    ttl_share: Option<f64>,
    /// Policy profile: bytes of each value.
    #[arg(long, default_value_t = 1000)]
    value_bytes: usize,
    /// Policy profile, standalone: stop once used_memory reaches this share
    /// of maxmemory (or at --keys, whichever comes first).
    #[arg(long)]
    fill_to: Option<f64>,
    /// Mixed profile: leave out the stream namespace.
    #[arg(long)]
    no_streams: bool,
    /// FLUSHALL first (every master of a cluster). Refused unless every
    /// node is on a loopback address.
    #[arg(long)]
    flush: bool,
    /// Database to write into (standalone only).
    #[arg(long, default_value_t = 0)]
    db: i64,
    /// Workers writing at once, each with its own connections.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Commands per pipelined request.
    #[arg(long, default_value_t = 1000)]
    pipeline: usize,
    /// Also write the manifest to this file.
    #[arg(long)]
    manifest: Option<PathBuf>,
}

impl Args {
    fn validate(&self) -> Result<(), String> {
        if self.keys == 0 || self.keys > MAX_KEYS {
            return Err(format!("--keys must be between 1 and {MAX_KEYS}"));
        }
        if self.profile == Profile::Mixed {
            if self.keys < MIN_MIXED_KEYS {
                return Err(format!(
                    "--keys must be at least {MIN_MIXED_KEYS} for the mixed profile"
                ));
            }
            if self.ttl_share.is_some() || self.fill_to.is_some() {
                return Err("--ttl-share and --fill-to belong to --profile policy".into());
            }
        }
        if let Some(s) = self.ttl_share {
            if !(0.0..=1.0).contains(&s) {
                return Err("--ttl-share must be in [0, 1]".into());
            }
        }
        if let Some(f) = self.fill_to {
            if !(f > 0.0 && f < 1.0) {
                return Err("--fill-to must be in (0, 1)".into());
            }
            if self.cluster {
                return Err("--fill-to needs a standalone node".into());
            }
        }
        if self.value_bytes == 0 || self.value_bytes > MAX_VALUE_BYTES {
            return Err(format!(
                "--value-bytes must be between 1 and {MAX_VALUE_BYTES}"
            ));
        }
        if self.concurrency == 0 || self.concurrency > 64 {
            return Err("--concurrency must be between 1 and 64".into());
        }
        if self.pipeline == 0 || self.pipeline > 100_000 {
            return Err("--pipeline must be between 1 and 100000".into());
        }
        if self.db < 0 {
            return Err("--db must be >= 0".into());
        }
        Ok(())
    }
}

/// The shape of a namespace's keys: name, type and contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `user:{<id>}:profile`, a hash of 5 to 10 fields.
    Profile,
    /// `session:<uuid>`, a string of 100 to 400 bytes.
    Session,
    /// `cart:<id>`, a list of 1 to 20 items.
    Cart,
    /// `leaderboard:<n>`, a sorted set of 1 000 to 5 000 members: few, large.
    Leaderboard,
    /// `feed:<id>:items`, a set of 5 to 50 members.
    Feed,
    /// `cache:page:<hex>`, a string of 200 to 2 000 bytes.
    CachePage,
    /// `events:<id>`, a stream of 1 to 10 entries.
    Events,
    /// `item:<id>`, a string of `--value-bytes` (policy profile).
    Item,
}

impl Shape {
    fn type_name(self) -> &'static str {
        match self {
            Shape::Profile => "hash",
            Shape::Session | Shape::CachePage | Shape::Item => "string",
            Shape::Cart => "list",
            Shape::Leaderboard => "zset",
            Shape::Feed => "set",
            Shape::Events => "stream",
        }
    }
}

/// One namespace of the plan.
#[derive(Debug, Clone)]
struct Namespace {
    shape: Shape,
    keys: u64,
    /// Share of keys with a TTL, in parts per million: key i has one when
    /// floor((i+1)·s) > floor(i·s), so every prefix of the namespace holds
    /// the share to within one key (which `--fill-to` relies on).
    ttl_ppm: u64,
    /// Range of the TTLs, in seconds; hours, so nothing expires in a test.
    ttl_secs: (u64, u64),
}

impl Namespace {
    fn has_ttl(&self, i: u64) -> bool {
        let s = u128::from(self.ttl_ppm);
        let i = u128::from(i);
        (i + 1) * s / 1_000_000 > i * s / 1_000_000
    }
}

const HOUR: u64 = 3600;

/// The namespaces of a run.
fn plan(args: &Args) -> Vec<Namespace> {
    let n = args.keys;
    let ns = |shape, keys, ttl_ppm, ttl_secs| Namespace {
        shape,
        keys,
        ttl_ppm,
        ttl_secs,
    };
    match args.profile {
        Profile::Policy => {
            let share = args.ttl_share.unwrap_or(0.5);
            vec![ns(
                Shape::Item,
                n,
                (share * 1e6).round() as u64,
                (6 * HOUR, 24 * HOUR),
            )]
        }
        Profile::Mixed => {
            // A tenth of a percent of the keys are leaderboards, at least one:
            // a few keys that hold a large share of the memory.
            let boards = (n / 10_000).clamp(1, 1_000);
            let users = n * 25 / 100;
            let carts = n * 10 / 100;
            let feeds = n * 15 / 100;
            let events = if args.no_streams { 0 } else { n * 5 / 100 };
            let pages = n * 20 / 100;
            // Sessions take the rest (about a quarter).
            let sessions = n - boards - users - carts - feeds - events - pages;
            let mut v = vec![
                ns(Shape::Profile, users, 0, (0, 0)),
                ns(Shape::Session, sessions, 1_000_000, (2 * HOUR, 6 * HOUR)),
                ns(Shape::Cart, carts, 500_000, (6 * HOUR, 24 * HOUR)),
                ns(Shape::Leaderboard, boards, 0, (0, 0)),
                ns(Shape::Feed, feeds, 800_000, (4 * HOUR, 48 * HOUR)),
                // The "missing EXPIRE" namespace: 30 % of its keys lack a TTL.
                ns(Shape::CachePage, pages, 700_000, (HOUR, 12 * HOUR)),
            ];
            if events > 0 {
                v.push(ns(Shape::Events, events, 250_000, (12 * HOUR, 24 * HOUR)));
            }
            v
        }
    }
}

/// splitmix64's finaliser: a bijection on u64, so distinct inputs give
/// distinct names (hex and UUID ids never collide).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Per-namespace salt, so namespaces with the same index differ.
fn salt(shape: Shape) -> u64 {
    mix(shape as u64 + 0x5EED)
}

/// The name of key `i` of a namespace.
fn key_name(shape: Shape, seed: u64, i: u64) -> String {
    let id = i + 1;
    match shape {
        Shape::Profile => format!("user:{{{id}}}:profile"),
        Shape::Session => {
            // 64 bits of the UUID come from a bijection of i: unique names.
            let hi = mix(seed ^ salt(shape) ^ mix(i));
            let lo = mix(hi ^ seed);
            format!(
                "session:{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                hi >> 32,
                (hi >> 16) & 0xffff,
                hi & 0xffff,
                (lo >> 48) & 0x0fff | 0x8000,
                lo & 0xffff_ffff_ffff
            )
        }
        Shape::Cart => format!("cart:{id}"),
        Shape::Leaderboard => format!("leaderboard:{id}"),
        Shape::Feed => format!("feed:{id}:items"),
        Shape::CachePage => {
            let h = format!("{:016x}", mix(seed ^ salt(shape) ^ mix(i)));
            // namespace_of calls a hex run an id only when it has a digit;
            // the rare hash without one gets a trailing 0 (17 characters,
            // so it cannot equal another key's 16).
            if h.bytes().any(|b| b.is_ascii_digit()) {
                format!("cache:page:{h}")
            } else {
                format!("cache:page:{h}0")
            }
        }
        Shape::Events => format!("events:{id}"),
        Shape::Item => format!("item:{id}"),
    }
}

/// What one key holds, as written.
struct KeyPlan {
    name: String,
    cmds: Vec<Cmd>,
    /// Bytes of the commands' arguments, for pipeline sizing.
    arg_bytes: usize,
    ttl_secs: Option<u64>,
    /// Fields, items or members (1 for a string).
    elements: u64,
    /// Bytes of the payload: values, fields and members, not Redis' overhead.
    payload: u64,
}

/// Builds key `i` of `ns`. Deterministic in (seed, shape, i).
fn build_key(ns: &Namespace, seed: u64, i: u64, pool: &[u8], value_bytes: usize) -> KeyPlan {
    let shape = ns.shape;
    let name = key_name(shape, seed, i);
    let mut rng = fastrand::Rng::with_seed(mix(seed ^ salt(shape) ^ mix(i ^ 0xA5A5)));
    let ttl_secs = ns
        .has_ttl(i)
        .then(|| rng.u64(ns.ttl_secs.0..=ns.ttl_secs.1));
    let mut slice = |len: usize| {
        let at = rng.usize(0..=pool.len() - len);
        &pool[at..at + len]
    };
    let mut cmds = Vec::new();
    let mut payload = 0u64;
    let elements;
    let mut string_with_ttl = false;
    match shape {
        Shape::Session | Shape::CachePage | Shape::Item => {
            let len = match shape {
                Shape::Session => 100 + (mix(seed ^ i) % 301) as usize,
                Shape::CachePage => 200 + (mix(seed ^ i ^ 1) % 1801) as usize,
                _ => value_bytes,
            };
            let mut c = redis::cmd("SET");
            c.arg(&name).arg(slice(len));
            if let Some(t) = ttl_secs {
                c.arg("EX").arg(t);
                string_with_ttl = true;
            }
            payload += len as u64;
            elements = 1;
            cmds.push(c);
        }
        Shape::Profile => {
            const FIELDS: [&str; 10] = [
                "name",
                "email",
                "country",
                "created_at",
                "plan",
                "locale",
                "bio",
                "avatar",
                "prefs",
                "last_login",
            ];
            let n = 5 + (mix(seed ^ i ^ 2) % 6) as usize;
            let mut c = redis::cmd("HSET");
            c.arg(&name);
            for f in &FIELDS[..n] {
                let len = 8 + (mix(seed ^ i ^ f.len() as u64 ^ 3) % 57) as usize;
                c.arg(*f).arg(slice(len));
                payload += (f.len() + len) as u64;
            }
            elements = n as u64;
            cmds.push(c);
        }
        Shape::Cart => {
            let n = 1 + (mix(seed ^ i ^ 4) % 20) as usize;
            let mut c = redis::cmd("RPUSH");
            c.arg(&name);
            for j in 0..n {
                let len = 20 + (mix(seed ^ i ^ (j as u64) << 8 ^ 5) % 61) as usize;
                c.arg(slice(len));
                payload += len as u64;
            }
            elements = n as u64;
            cmds.push(c);
        }
        Shape::Leaderboard => {
            let n = 1_000 + (mix(seed ^ i ^ 6) % 4_001) as usize;
            let base = i * 10_000_000;
            let mut j = 0;
            while j < n {
                let mut c = redis::cmd("ZADD");
                c.arg(&name);
                for k in j..(j + ZADD_CHUNK).min(n) {
                    let member = format!("player:{}", base + k as u64);
                    payload += member.len() as u64;
                    c.arg(mix(seed ^ base ^ k as u64) % 1_000_000).arg(member);
                }
                cmds.push(c);
                j += ZADD_CHUNK;
            }
            elements = n as u64;
        }
        Shape::Feed => {
            let n = 5 + (mix(seed ^ i ^ 7) % 46) as usize;
            let base = mix(seed ^ i ^ 8) % 1_000_000_000;
            let mut c = redis::cmd("SADD");
            c.arg(&name);
            for j in 0..n {
                let member = format!("post:{}", base + j as u64);
                payload += member.len() as u64;
                c.arg(member);
            }
            elements = n as u64;
            cmds.push(c);
        }
        Shape::Events => {
            let n = 1 + (mix(seed ^ i ^ 9) % 10) as usize;
            for j in 0..n {
                let len = 20 + (mix(seed ^ i ^ (j as u64) << 8 ^ 10) % 81) as usize;
                let mut c = redis::cmd("XADD");
                // Explicit, increasing ids: the same dataset on every run.
                c.arg(&name)
                    .arg(format!("1700000000000-{}", j + 1))
                    .arg("type")
                    .arg(if j % 3 == 0 { "view" } else { "click" })
                    .arg("user")
                    .arg(mix(seed ^ i ^ j as u64) % 1_000_000)
                    .arg("payload")
                    .arg(slice(len));
                payload += (4 + 5 + 4 + 6 + 7 + len) as u64;
                cmds.push(c);
            }
            elements = n as u64;
        }
    }
    if let (Some(t), false) = (ttl_secs, string_with_ttl) {
        let mut c = redis::cmd("EXPIRE");
        c.arg(&name).arg(t);
        cmds.push(c);
    }
    let arg_bytes = payload as usize + cmds.len() * (name.len() + 16);
    KeyPlan {
        name,
        cmds,
        arg_bytes,
        ttl_secs,
        elements,
        payload,
    }
}

/// CRC16 (XMODEM) of the key's hash tag, as Redis Cluster computes slots.
fn key_slot(key: &[u8]) -> usize {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &b in tagged {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    usize::from(crc) % SLOTS
}

/// Where keys go: one node, or the master owning each slot.
struct Router {
    /// Master addresses, host:port.
    nodes: Vec<String>,
    infos: Vec<ConnectionInfo>,
    /// Node index per slot; empty for a standalone node.
    slots: Vec<u16>,
}

impl Router {
    fn node_of(&self, key: &str) -> usize {
        if self.slots.is_empty() {
            0
        } else {
            usize::from(self.slots[key_slot(key.as_bytes())])
        }
    }
}

/// Per-pattern statistics of what was written.
#[derive(Debug, Default, Clone)]
struct Tally {
    kind: &'static str,
    /// The key of the lowest index: the same whichever worker wrote it.
    example: Option<(u64, String)>,
    keys: u64,
    keys_with_ttl: u64,
    ttl_min: u64,
    ttl_max: u64,
    elements: MinMax,
    payload: MinMax,
    /// Keys per master (cluster).
    per_node: BTreeMap<usize, u64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct MinMax {
    min: u64,
    max: u64,
    sum: u64,
    n: u64,
}

impl MinMax {
    fn add(&mut self, v: u64) {
        if self.n == 0 || v < self.min {
            self.min = v;
        }
        self.max = self.max.max(v);
        self.sum += v;
        self.n += 1;
    }

    fn merge(&mut self, o: MinMax) {
        if o.n == 0 {
            return;
        }
        if self.n == 0 || o.min < self.min {
            self.min = o.min;
        }
        self.max = self.max.max(o.max);
        self.sum += o.sum;
        self.n += o.n;
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "min": self.min,
            "max": self.max,
            "mean": if self.n == 0 { 0.0 } else { self.sum as f64 / self.n as f64 },
            "total": self.sum,
        })
    }
}

impl Tally {
    fn add(&mut self, k: &KeyPlan, i: u64, kind: &'static str, node: usize) {
        if self.keys == 0 {
            self.kind = kind;
        }
        if self.example.as_ref().is_none_or(|(at, _)| i < *at) {
            self.example = Some((i, k.name.clone()));
        }
        self.keys += 1;
        if let Some(t) = k.ttl_secs {
            if self.keys_with_ttl == 0 || t < self.ttl_min {
                self.ttl_min = t;
            }
            self.ttl_max = self.ttl_max.max(t);
            self.keys_with_ttl += 1;
        }
        self.elements.add(k.elements);
        self.payload.add(k.payload);
        *self.per_node.entry(node).or_insert(0) += 1;
    }

    fn merge(&mut self, o: Tally) {
        if let Some((i, name)) = o.example {
            if self.example.as_ref().is_none_or(|(at, _)| i < *at) {
                self.example = Some((i, name));
            }
        }
        if self.keys == 0 {
            self.kind = o.kind;
        } else if o.kind != self.kind {
            // Two shapes in one pattern would be a bug in the plan.
            self.kind = "mixed";
        }
        if o.keys_with_ttl > 0 {
            if self.keys_with_ttl == 0 || o.ttl_min < self.ttl_min {
                self.ttl_min = o.ttl_min;
            }
            self.ttl_max = self.ttl_max.max(o.ttl_max);
        }
        self.keys += o.keys;
        self.keys_with_ttl += o.keys_with_ttl;
        self.elements.merge(o.elements);
        self.payload.merge(o.payload);
        for (n, c) in o.per_node {
            *self.per_node.entry(n).or_insert(0) += c;
        }
    }
}

/// A worker's result.
#[derive(Default)]
struct WorkerTally {
    patterns: BTreeMap<String, Tally>,
    commands: u64,
}

/// A pending pipeline to one node.
struct Batch {
    pipe: redis::Pipeline,
    cmds: usize,
    bytes: usize,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            pipe: redis::pipe(),
            cmds: 0,
            bytes: 0,
        }
    }
}

async fn flush(
    batch: &mut Batch,
    conn: &mut MultiplexedConnection,
    node: &str,
) -> Result<(), String> {
    if batch.cmds == 0 {
        return Ok(());
    }
    let pipe = std::mem::replace(&mut batch.pipe, redis::pipe());
    batch.cmds = 0;
    batch.bytes = 0;
    pipe.query_async::<()>(conn)
        .await
        .map_err(|e| format!("{node}: {e}"))
}

/// A range of keys of one namespace.
#[derive(Debug, Clone, Copy)]
struct Unit {
    ns: usize,
    start: u64,
    end: u64,
}

fn units(plan: &[Namespace], unit_keys: u64) -> Vec<Unit> {
    let mut v = Vec::new();
    for (ns, n) in plan.iter().enumerate() {
        let step = if n.shape == Shape::Leaderboard {
            1
        } else {
            unit_keys
        };
        let mut start = 0;
        while start < n.keys {
            let end = (start + step).min(n.keys);
            v.push(Unit { ns, start, end });
            start = end;
        }
    }
    v
}

/// Stop condition of `--fill-to`: used_memory at or above this many bytes.
struct Fill {
    target_bytes: u64,
}

async fn used_and_max_memory(conn: &mut MultiplexedConnection) -> Result<(u64, u64), String> {
    let text: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .map_err(|e| format!("INFO memory: {e}"))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| format!("INFO memory has no {name}"))
    };
    Ok((field("used_memory")?, field("maxmemory")?))
}

struct Shared {
    plan: Vec<Namespace>,
    units: Vec<Unit>,
    next: AtomicUsize,
    stop: AtomicBool,
    pool: Vec<u8>,
    seed: u64,
    value_bytes: usize,
    pipeline: usize,
    router: Router,
    rules: NamespaceRules,
}

async fn worker(
    shared: Arc<Shared>,
    mut conns: Vec<MultiplexedConnection>,
    fill: Option<Fill>,
) -> Result<WorkerTally, String> {
    let mut tally = WorkerTally::default();
    let mut batches: Vec<Batch> = conns.iter().map(|_| Batch::new()).collect();
    let s = &*shared;
    while !s.stop.load(Ordering::Relaxed) {
        let u = s.next.fetch_add(1, Ordering::Relaxed);
        let Some(unit) = s.units.get(u).copied() else {
            break;
        };
        let ns = &s.plan[unit.ns];
        for i in unit.start..unit.end {
            let k = build_key(ns, s.seed, i, &s.pool, s.value_bytes);
            let node = s.router.node_of(&k.name);
            let pattern = namespace_of(k.name.as_bytes(), &s.rules);
            tally
                .patterns
                .entry(pattern)
                .or_default()
                .add(&k, i, ns.shape.type_name(), node);
            tally.commands += k.cmds.len() as u64;
            let b = &mut batches[node];
            b.bytes += k.arg_bytes;
            for c in k.cmds {
                b.pipe.add_command(c);
                b.cmds += 1;
            }
            if b.cmds >= s.pipeline || b.bytes >= MAX_PIPELINE_BYTES {
                flush(b, &mut conns[node], &s.router.nodes[node]).await?;
            }
        }
        if let Some(f) = &fill {
            flush(&mut batches[0], &mut conns[0], &s.router.nodes[0]).await?;
            let (used, _) = used_and_max_memory(&mut conns[0]).await?;
            if used >= f.target_bytes {
                s.stop.store(true, Ordering::Relaxed);
            }
        }
    }
    for (node, b) in batches.iter_mut().enumerate() {
        flush(b, &mut conns[node], &s.router.nodes[node]).await?;
    }
    Ok(tally)
}

/// Whether `addr` is this machine, so that FLUSHALL cannot wipe a server
/// elsewhere: a loopback IP, a name that resolves only to loopback IPs, or a
/// Unix socket.
fn is_loopback(addr: &ConnectionAddr) -> bool {
    let (host, port) = match addr {
        ConnectionAddr::Tcp(h, p) => (h.as_str(), *p),
        ConnectionAddr::TcpTls { host, port, .. } => (host.as_str(), *port),
        ConnectionAddr::Unix(_) => return true,
        _ => return false,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    match (host, port).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

fn describe(addr: &ConnectionAddr) -> String {
    match addr {
        ConnectionAddr::Tcp(h, p) => format!("{h}:{p}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port}"),
        ConnectionAddr::Unix(p) => p.display().to_string(),
        _ => "?".into(),
    }
}

fn conn_config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
}

async fn connect(info: &ConnectionInfo) -> Result<MultiplexedConnection, String> {
    let client = redis::Client::open(info.clone()).map_err(|e| e.to_string())?;
    client
        .get_multiplexed_async_connection_with_config(&conn_config())
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", describe(info.addr())))
}

/// The seed's masters and slot map, from CLUSTER SLOTS.
async fn cluster_router(
    seed: &ConnectionInfo,
    conn: &mut MultiplexedConnection,
) -> Result<Router, String> {
    let reply: Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(conn)
        .await
        .map_err(|e| format!("CLUSTER SLOTS: {e}"))?;
    let seed_host = match seed.addr() {
        ConnectionAddr::Tcp(h, _) => h.clone(),
        _ => return Err("a cluster seed must be a TCP address".into()),
    };
    let Value::Array(ranges) = reply else {
        return Err(format!("CLUSTER SLOTS: unexpected reply {reply:?}"));
    };
    let int = |v: &Value| match v {
        Value::Int(i) => Some(*i),
        _ => None,
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let mut nodes: Vec<String> = Vec::new();
    let mut infos = Vec::new();
    let mut slots = vec![u16::MAX; SLOTS];
    for r in &ranges {
        let Value::Array(r) = r else {
            return Err("CLUSTER SLOTS: a range is not an array".into());
        };
        let (Some(start), Some(end), Some(Value::Array(master))) =
            (r.first().and_then(int), r.get(1).and_then(int), r.get(2))
        else {
            return Err("CLUSTER SLOTS: malformed range".into());
        };
        let host = master.first().and_then(text).unwrap_or_default();
        let port = master.get(1).and_then(int).unwrap_or(0);
        // An empty or "?" host means "the address you reached me on".
        let host = if host.is_empty() || host == "?" {
            seed_host.clone()
        } else {
            host
        };
        let port = u16::try_from(port).map_err(|_| "CLUSTER SLOTS: bad port".to_string())?;
        let addr = format!("{host}:{port}");
        let idx = match nodes.iter().position(|n| *n == addr) {
            Some(i) => i,
            None => {
                nodes.push(addr);
                infos.push(
                    seed.clone()
                        .set_addr(ConnectionAddr::Tcp(host.clone(), port)),
                );
                nodes.len() - 1
            }
        };
        let (start, end) = (start.max(0) as usize, end.max(0) as usize);
        if start > end || end >= SLOTS {
            return Err("CLUSTER SLOTS: slot out of range".into());
        }
        for s in &mut slots[start..=end] {
            *s = idx as u16;
        }
    }
    if slots.contains(&u16::MAX) {
        return Err("the cluster has unassigned slots; wait until it is settled".into());
    }
    Ok(Router {
        nodes,
        infos,
        slots,
    })
}

async fn is_cluster(conn: &mut MultiplexedConnection) -> Result<bool, String> {
    let info: String = redis::cmd("INFO")
        .arg("cluster")
        .query_async(conn)
        .await
        .map_err(|e| format!("INFO cluster: {e}"))?;
    Ok(info.lines().any(|l| l.trim() == "cluster_enabled:1"))
}

async fn run(args: Args) -> Result<serde_json::Value, String> {
    let password = std::env::var("REDIS_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    let info = args
        .addr
        .as_str()
        .into_connection_info()
        .map_err(|e| format!("invalid --addr {:?}: {e}", args.addr))?;
    // No CLIENT SETINFO: servers before 7.2 count it as an error, which
    // would show in the exporter's error metrics under test.
    let mut settings = info.redis_settings().clone().set_skip_set_lib_name();
    if let Some(u) = &args.user {
        settings = settings.set_username(u);
    }
    if let Some(p) = &password {
        settings = settings.set_password(p);
    }
    let info = info.set_redis_settings(settings.set_db(args.db));
    // Checked before connecting, and again for every master a cluster
    // names: a remote server is never even asked.
    if args.flush && !is_loopback(info.addr()) {
        return Err(format!(
            "--flush refused: {} is not a loopback address",
            describe(info.addr())
        ));
    }
    let mut seed_conn = connect(&info).await?;
    let cluster = if args.cluster {
        true
    } else if args.standalone {
        false
    } else {
        is_cluster(&mut seed_conn).await?
    };
    if cluster && args.db != 0 {
        return Err("a cluster has database 0 only".into());
    }
    if cluster && args.fill_to.is_some() {
        return Err("--fill-to needs a standalone node".into());
    }
    let router = if cluster {
        cluster_router(&info, &mut seed_conn).await?
    } else {
        Router {
            nodes: vec![describe(info.addr())],
            infos: vec![info.clone()],
            slots: Vec::new(),
        }
    };
    drop(seed_conn);

    if args.flush {
        // Never wipe a server by accident: FLUSHALL only where every node
        // is on this machine (tests and benchmarks run on loopback).
        for i in &router.infos {
            if !is_loopback(i.addr()) {
                return Err(format!(
                    "--flush refused: {} is not a loopback address",
                    describe(i.addr())
                ));
            }
        }
        for (i, name) in router.infos.iter().zip(&router.nodes) {
            let mut c = connect(i).await?;
            redis::cmd("FLUSHALL")
                .query_async::<()>(&mut c)
                .await
                .map_err(|e| format!("{name}: FLUSHALL: {e}"))?;
        }
    }

    let mut fill = None;
    let mut workers = args.concurrency;
    if let Some(share) = args.fill_to {
        let mut c = connect(&router.infos[0]).await?;
        let (_, max) = used_and_max_memory(&mut c).await?;
        if max == 0 {
            return Err("--fill-to needs a node with maxmemory set".into());
        }
        // One worker, checking memory after every few keys: several would
        // overshoot the target by their pipelines in flight.
        workers = 1;
        fill = Some((max as f64 * share) as u64);
    }

    let mut rng = fastrand::Rng::with_seed(mix(args.seed));
    let pool: Vec<u8> = (0..POOL_BYTES).map(|_| rng.alphanumeric() as u8).collect();
    let plan = plan(&args);
    let unit_keys = if fill.is_some() {
        FILL_UNIT_KEYS
    } else {
        UNIT_KEYS
    };
    let shared = Arc::new(Shared {
        units: units(&plan, unit_keys),
        plan,
        next: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        pool,
        seed: args.seed,
        value_bytes: args.value_bytes,
        pipeline: args.pipeline,
        router,
        rules: NamespaceRules::default(),
    });

    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let mut conns = Vec::with_capacity(shared.router.infos.len());
        for i in &shared.router.infos {
            conns.push(connect(i).await?);
        }
        let f = fill.map(|target_bytes| Fill { target_bytes });
        set.spawn(worker(shared.clone(), conns, f));
    }
    let mut total = WorkerTally::default();
    let mut first_error = None;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(t)) => {
                total.commands += t.commands;
                for (p, tally) in t.patterns {
                    total.patterns.entry(p).or_default().merge(tally);
                }
            }
            Ok(Err(e)) => {
                shared.stop.store(true, Ordering::Relaxed);
                first_error.get_or_insert(e);
            }
            Err(e) => {
                shared.stop.store(true, Ordering::Relaxed);
                first_error.get_or_insert(format!("worker failed: {e}"));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let elapsed = started.elapsed().as_secs_f64();

    let keys: u64 = total.patterns.values().map(|t| t.keys).sum();
    let keys_with_ttl: u64 = total.patterns.values().map(|t| t.keys_with_ttl).sum();
    let mut filled = serde_json::Value::Null;
    if let Some(target) = fill {
        let mut c = connect(&shared.router.infos[0]).await?;
        let (used, max) = used_and_max_memory(&mut c).await?;
        filled = json!({
            "target_bytes": target,
            "used_memory": used,
            "maxmemory": max,
            "reached": used >= target,
        });
    }
    let mut namespaces: Vec<(&String, &Tally)> = total.patterns.iter().collect();
    namespaces.sort_by(|a, b| b.1.payload.sum.cmp(&a.1.payload.sum).then(a.0.cmp(b.0)));
    let namespaces: Vec<serde_json::Value> = namespaces
        .into_iter()
        .map(|(pattern, t)| {
            let per_node: serde_json::Map<String, serde_json::Value> = t
                .per_node
                .iter()
                .map(|(n, c)| (shared.router.nodes[*n].clone(), json!(c)))
                .collect();
            json!({
                "pattern": pattern,
                "type": t.kind,
                "example_key": t.example.as_ref().map(|(_, name)| name),
                "keys": t.keys,
                "keys_with_ttl": t.keys_with_ttl,
                "ttl_share": t.keys_with_ttl as f64 / t.keys.max(1) as f64,
                "ttl_seconds": if t.keys_with_ttl > 0 {
                    json!({"min": t.ttl_min, "max": t.ttl_max})
                } else {
                    serde_json::Value::Null
                },
                "elements_per_key": t.elements.json(),
                "payload_bytes_per_key": t.payload.json(),
                "keys_per_node": per_node,
            })
        })
        .collect();
    Ok(json!({
        "generator": "redis-vitals-dataset",
        "version": env!("CARGO_PKG_VERSION"),
        "profile": match args.profile { Profile::Mixed => "mixed", Profile::Policy => "policy" },
        "seed": args.seed,
        "mode": if cluster { "cluster" } else { "standalone" },
        "db": args.db,
        "nodes": shared.router.nodes,
        "keys_requested": args.keys,
        "keys": keys,
        "keys_with_ttl": keys_with_ttl,
        "commands": total.commands,
        "elapsed_seconds": elapsed,
        "keys_per_second": keys as f64 / elapsed.max(1e-9),
        "fill": filled,
        "namespaces": namespaces,
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = args.validate() {
        eprintln!("redis-vitals-dataset: {e}");
        return ExitCode::from(2);
    }
    let manifest_path = args.manifest.clone();
    match run(args).await {
        Ok(manifest) => {
            let text = serde_json::to_string_pretty(&manifest).expect("a JSON value serializes");
            if let Some(p) = manifest_path {
                if let Err(e) = std::fs::write(&p, format!("{text}\n")) {
                    eprintln!("redis-vitals-dataset: cannot write {}: {e}", p.display());
                    return ExitCode::from(1);
                }
            }
            println!("{text}");
            eprintln!(
                "redis-vitals-dataset: wrote {} keys ({} with a TTL) in {:.2}s",
                manifest["keys"], manifest["keys_with_ttl"], manifest["elapsed_seconds"]
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("redis-vitals-dataset: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["x"];
        v.extend_from_slice(extra);
        Args::parse_from(v)
    }

    #[test]
    fn slots_match_redis() {
        // Values from CLUSTER KEYSLOT on Redis 7.0.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"123456789"), 0x31C3);
        // A hash tag routes by its content; an empty tag does not count.
        assert_eq!(key_slot(b"user:{42}:profile"), key_slot(b"42"));
        assert_eq!(key_slot(b"a{}b"), key_slot(b"a{}b"));
        assert_ne!(key_slot(b"{}foo"), key_slot(b""));
    }

    #[test]
    fn every_key_of_a_namespace_has_its_designed_pattern() {
        let rules = NamespaceRules::default();
        let want = [
            (Shape::Profile, "user:*:profile"),
            (Shape::Session, "session:*"),
            (Shape::Cart, "cart:*"),
            (Shape::Leaderboard, "leaderboard:*"),
            (Shape::Feed, "feed:*:items"),
            (Shape::CachePage, "cache:page:*"),
            (Shape::Events, "events:*"),
            (Shape::Item, "item:*"),
        ];
        for (shape, pattern) in want {
            for seed in [1, 7, 12345] {
                for i in (0..20_000).chain([u64::MAX / 2, u64::MAX - 1]) {
                    let k = key_name(shape, seed, i);
                    assert_eq!(namespace_of(k.as_bytes(), &rules), pattern, "{k}");
                }
            }
        }
    }

    #[test]
    fn names_are_unique_and_deterministic() {
        for shape in [Shape::Session, Shape::CachePage] {
            let a: std::collections::HashSet<String> =
                (0..100_000).map(|i| key_name(shape, 3, i)).collect();
            assert_eq!(a.len(), 100_000);
            assert_eq!(key_name(shape, 3, 77), key_name(shape, 3, 77));
            assert_ne!(key_name(shape, 3, 77), key_name(shape, 4, 77));
        }
    }

    #[test]
    fn ttl_share_holds_for_every_prefix() {
        let ns = Namespace {
            shape: Shape::Item,
            keys: 0,
            ttl_ppm: 50_000,
            ttl_secs: (1, 1),
        };
        let mut with = 0u64;
        for i in 0..100_000u64 {
            with += u64::from(ns.has_ttl(i));
            let want = (i + 1) * 5 / 100;
            assert!(with.abs_diff(want) <= 1, "{i}: {with} vs {want}");
        }
        let all = Namespace {
            ttl_ppm: 1_000_000,
            ..ns.clone()
        };
        assert!((0..1000).all(|i| all.has_ttl(i)));
        let none = Namespace { ttl_ppm: 0, ..ns };
        assert!((0..1000).all(|i| !none.has_ttl(i)));
    }

    #[test]
    fn mixed_plan_adds_up_with_seven_namespaces() {
        for n in [100u64, 200_000, 2_000_000, 1_234_567] {
            let p = plan(&args(&["--keys", &n.to_string()]));
            assert_eq!(p.len(), 7);
            assert_eq!(p.iter().map(|ns| ns.keys).sum::<u64>(), n);
            assert!(p.iter().all(|ns| ns.keys > 0), "{p:?}");
            let p = plan(&args(&["--keys", &n.to_string(), "--no-streams"]));
            assert_eq!(p.len(), 6);
            assert_eq!(p.iter().map(|ns| ns.keys).sum::<u64>(), n);
        }
    }

    #[test]
    fn keys_are_deterministic_and_ttls_are_hours() {
        let pool: Vec<u8> = (0..POOL_BYTES).map(|i| b'a' + (i % 26) as u8).collect();
        for ns in plan(&args(&[])) {
            for i in [0, 1, 999] {
                let a = build_key(&ns, 9, i, &pool, 100);
                let b = build_key(&ns, 9, i, &pool, 100);
                assert_eq!(format!("{:?}", a.cmds), format!("{:?}", b.cmds));
                assert_eq!(a.ttl_secs, b.ttl_secs);
                if let Some(t) = a.ttl_secs {
                    assert!(t >= HOUR, "{:?}: {t}", ns.shape);
                }
            }
        }
    }

    #[test]
    fn flags_are_validated() {
        assert!(args(&[]).validate().is_ok());
        assert!(args(&["--keys", "50"]).validate().is_err());
        assert!(args(&["--ttl-share", "0.5"]).validate().is_err());
        assert!(
            args(&["--profile", "policy", "--ttl-share", "0.05", "--keys", "10"])
                .validate()
                .is_ok()
        );
        assert!(args(&["--profile", "policy", "--ttl-share", "1.5"])
            .validate()
            .is_err());
        assert!(args(&["--profile", "policy", "--fill-to", "1"])
            .validate()
            .is_err());
        assert!(args(&["--value-bytes", "0"]).validate().is_err());
    }

    #[test]
    fn only_loopback_may_be_flushed() {
        assert!(is_loopback(&ConnectionAddr::Tcp("127.0.0.1".into(), 6379)));
        assert!(is_loopback(&ConnectionAddr::Tcp("127.3.4.5".into(), 6379)));
        assert!(is_loopback(&ConnectionAddr::Tcp("::1".into(), 6379)));
        assert!(is_loopback(&ConnectionAddr::Tcp("[::1]".into(), 6379)));
        assert!(!is_loopback(&ConnectionAddr::Tcp("10.0.0.1".into(), 6379)));
        assert!(!is_loopback(&ConnectionAddr::Tcp("0.0.0.0".into(), 6379)));
        assert!(!is_loopback(&ConnectionAddr::Tcp(
            "no-such-host.invalid".into(),
            6379
        )));
    }
}
