//! Keyspace composition (docs/insight.md): a key's namespace pattern, the
//! per-namespace statistics one analyser pass accumulates, and what the
//! eviction policy can do with the keys found.
//!
//! Pure: the analyser (collect/insight.rs) feeds it the replies of TYPE,
//! PTTL and MEMORY USAGE; tests feed it synthetic keys. Everything here is
//! bounded whatever the keyspace holds: patterns are capped in length and
//! segments, a pass tracks at most [`MAX_TRACKED`] patterns, and a report
//! holds at most `max_namespaces` of them plus `other`.

use std::collections::HashMap;

/// Segments kept in a pattern; deeper keys end in `<sep>*`. Eight is deeper
/// than any key design we have seen and keeps patterns readable.
pub const MAX_SEGMENTS: usize = 8;
/// Longest pattern in bytes: a label value and a table cell, not a key dump.
pub const MAX_PATTERN_BYTES: usize = 128;
/// Distinct patterns tracked during a pass; keys of further patterns go to
/// `other` at once. 512 is 25 times the default report size (so the top
/// namespaces by memory are found in any realistic keyspace) and bounds a
/// keyspace of random names to a few hundred KiB per node.
pub const MAX_TRACKED: usize = 512;
/// Largest keys remembered per namespace.
pub const LARGEST_KEYS: usize = 5;
/// Fewest keys a reported namespace holds; smaller ones are summed into
/// `other`. A pattern is a key name wherever the rules find no identifier
/// in it (`session:john.doe` has none they know), and a pattern shared by
/// ten keys names a key design rather than one person's key.
pub const MIN_KEYS_PER_NAMESPACE: u64 = 10;
/// Longest segment kept as text: a longer one is data (a serialized
/// argument, a URL), not a name in a key design.
pub const MAX_SEGMENT_BYTES: usize = 48;
/// The namespace everything beyond the reported ones is summed into.
pub const OTHER: &str = "other";
/// Remaining-TTL quantiles reported per namespace.
pub const TTL_QUANTILES: [f64; 3] = [0.1, 0.5, 0.9];

/// Types as TYPE names them; anything else (module types) is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    String,
    List,
    Set,
    Zset,
    Hash,
    Stream,
    Other,
}

impl KeyType {
    pub const ALL: [KeyType; 7] = [
        KeyType::String,
        KeyType::List,
        KeyType::Set,
        KeyType::Zset,
        KeyType::Hash,
        KeyType::Stream,
        KeyType::Other,
    ];

    pub fn from_reply(s: &str) -> KeyType {
        match s {
            "string" => KeyType::String,
            "list" => KeyType::List,
            "set" => KeyType::Set,
            "zset" => KeyType::Zset,
            "hash" => KeyType::Hash,
            "stream" => KeyType::Stream,
            _ => KeyType::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::String => "string",
            KeyType::List => "list",
            KeyType::Set => "set",
            KeyType::Zset => "zset",
            KeyType::Hash => "hash",
            KeyType::Stream => "stream",
            KeyType::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How key names are cut into namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceRules {
    /// ASCII bytes that separate segments (`insight.separators`).
    pub separators: Vec<u8>,
}

impl Default for NamespaceRules {
    fn default() -> Self {
        NamespaceRules {
            separators: vec![b':'],
        }
    }
}

/// The namespace pattern of `key`: identifiers become `*` (docs/insight.md,
/// "Namespaces"). Never panics, whatever bytes the key holds.
pub fn namespace_of(key: &[u8], rules: &NamespaceRules) -> String {
    let mut out = String::new();
    let mut start = 0;
    let mut segments = 0;
    for i in 0..=key.len() {
        let at_end = i == key.len();
        if !at_end && !rules.separators.contains(&key[i]) {
            continue;
        }
        if segments == MAX_SEGMENTS {
            // `start` is just past a separator, which `out` already ends with.
            out.push('*');
            break;
        }
        // Bytes past the cap cannot show; do not classify a megabyte.
        push_segment(&mut out, &key[start..i.min(start + MAX_PATTERN_BYTES + 4)]);
        segments += 1;
        if out.len() >= MAX_PATTERN_BYTES {
            break;
        }
        if !at_end {
            out.push(key[i] as char);
        }
        start = i + 1;
    }
    truncate_pattern(&mut out);
    out
}

fn truncate_pattern(out: &mut String) {
    if out.len() > MAX_PATTERN_BYTES {
        let mut cut = MAX_PATTERN_BYTES;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
}

/// Appends one segment, collapsed to `*` when it is an identifier.
fn push_segment(out: &mut String, seg: &[u8]) {
    // A whole hash tag around an identifier is the identifier:
    // `{123}` is `*`, as `user:{123}:profile` means `user:*:profile`.
    if seg.len() > 2
        && seg[0] == b'{'
        && seg[seg.len() - 1] == b'}'
        && is_id(&seg[1..seg.len() - 1])
    {
        out.push('*');
        return;
    }
    // A tag that spans separators leaves braces on the segments at its ends
    // (`{user:123}` gives `{user` and `123}`): keep them around the class.
    let lead = seg.iter().take_while(|&&b| b == b'{').count();
    let trail = seg[lead..].iter().rev().take_while(|&&b| b == b'}').count();
    let core = &seg[lead..seg.len() - trail];
    let braces = |out: &mut String, n: usize, c: char| out.extend(std::iter::repeat_n(c, n));
    if is_id(core) {
        braces(out, lead, '{');
        out.push('*');
        braces(out, trail, '}');
        return;
    }
    // `session12345`: a name followed by a number.
    let digits = core.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits >= 3 && digits < core.len() {
        braces(out, lead, '{');
        push_text(out, &core[..core.len() - digits]);
        out.push('*');
        braces(out, trail, '}');
        return;
    }
    push_text(out, seg);
}

/// Appends bytes as text: invalid UTF-8 and control characters become `?`,
/// so a pattern is always a printable label value.
fn push_text(out: &mut String, bytes: &[u8]) {
    for c in String::from_utf8_lossy(bytes).chars() {
        out.push(if c.is_control() || c == '\u{FFFD}' {
            '?'
        } else {
            c
        });
    }
}

/// Whether a segment is an identifier rather than part of a key design.
fn is_id(s: &[u8]) -> bool {
    if s.is_empty() {
        return false;
    }
    // E-mail addresses, free text and data are not names of a design.
    if s.len() > MAX_SEGMENT_BYTES || s.iter().any(|b| *b == b'@' || b.is_ascii_whitespace()) {
        return true;
    }
    let has_digit = s.iter().any(|b| b.is_ascii_digit());
    if s.iter().all(|b| b.is_ascii_digit()) || is_uuid(s) {
        return true;
    }
    if s.len() >= 8 && has_digit && s.iter().all(|b| b.is_ascii_hexdigit()) {
        return true;
    }
    s.len() >= 20
        && has_digit
        && s.iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

fn is_uuid(s: &[u8]) -> bool {
    s.len() == 36
        && s.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// One key as the analyser saw it.
#[derive(Debug, Clone, Copy)]
pub struct KeySample<'a> {
    pub key: &'a [u8],
    pub kind: KeyType,
    /// Remaining time to live in milliseconds; `None` for a key without one.
    pub ttl_ms: Option<u64>,
    /// MEMORY USAGE in bytes.
    pub bytes: u64,
}

/// Remaining TTLs, in log buckets of ratio [`TTL_BUCKET_RATIO`] from one
/// second; bucket 0 holds TTLs under a second. A quantile is the bucket's
/// geometric middle, within 10 % of the true value.
const TTL_BUCKET_RATIO: f64 = 1.2;
/// 130 buckets reach 1.2^129 s, about 500 years: every TTL anyone sets
/// (a "forever" TTL of 10 years is still within 10 %).
const TTL_BUCKETS: usize = 130;

#[derive(Debug, Clone)]
struct TtlHistogram {
    /// u32 per bucket keeps a namespace's histogram at 520 bytes; a bucket
    /// saturates at 4 billion keys, beyond any node.
    counts: Box<[u32; TTL_BUCKETS]>,
}

impl TtlHistogram {
    fn new() -> Self {
        TtlHistogram {
            counts: Box::new([0; TTL_BUCKETS]),
        }
    }

    fn bucket(ttl_ms: u64) -> usize {
        let s = ttl_ms as f64 / 1000.0;
        if s < 1.0 {
            return 0;
        }
        let b = 1 + (s.ln() / TTL_BUCKET_RATIO.ln()).floor() as usize;
        b.min(TTL_BUCKETS - 1)
    }

    fn add(&mut self, ttl_ms: u64) {
        let b = Self::bucket(ttl_ms);
        self.counts[b] = self.counts[b].saturating_add(1);
    }

    fn merge(&mut self, other: &TtlHistogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.saturating_add(*b);
        }
    }

    /// The remaining TTL in seconds at quantile `q`; TTLs under a second
    /// read as 0.5 s.
    fn quantile(&self, q: f64) -> Option<f64> {
        // From the buckets themselves, so that the rank is always reached.
        let total: u64 = self.counts.iter().map(|&n| u64::from(n)).sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (b, &n) in self.counts.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                return Some(if b == 0 {
                    0.5
                } else {
                    // Bucket b spans [r^(b-1), r^b) seconds.
                    TTL_BUCKET_RATIO.powf(b as f64 - 0.5)
                });
            }
        }
        None
    }
}

/// What one namespace holds; the accumulator and the reported value.
#[derive(Debug, Clone)]
struct NamespaceAcc {
    keys: u64,
    keys_with_ttl: u64,
    memory_bytes: u64,
    types: [u64; 7],
    ttl: Option<TtlHistogram>,
    /// Largest first; names only when key names are shown.
    largest: Vec<(u64, Option<String>)>,
}

impl NamespaceAcc {
    fn new() -> Self {
        NamespaceAcc {
            keys: 0,
            keys_with_ttl: 0,
            memory_bytes: 0,
            types: [0; 7],
            ttl: None,
            largest: Vec::new(),
        }
    }

    fn add(&mut self, s: &KeySample, show_names: bool) {
        self.keys += 1;
        self.memory_bytes = self.memory_bytes.saturating_add(s.bytes);
        self.types[s.kind.index()] += 1;
        if let Some(ms) = s.ttl_ms {
            self.keys_with_ttl += 1;
            self.ttl.get_or_insert_with(TtlHistogram::new).add(ms);
        }
        let small = self.largest.len() == LARGEST_KEYS
            && self.largest.last().is_some_and(|(b, _)| *b >= s.bytes);
        if !small {
            let name = show_names.then(|| {
                let mut n = String::new();
                push_text(&mut n, &s.key[..s.key.len().min(MAX_PATTERN_BYTES)]);
                n
            });
            let at = self.largest.partition_point(|(b, _)| *b >= s.bytes);
            self.largest.insert(at, (s.bytes, name));
            self.largest.truncate(LARGEST_KEYS);
        }
    }

    fn merge(&mut self, o: NamespaceAcc) {
        self.keys += o.keys;
        self.keys_with_ttl += o.keys_with_ttl;
        self.memory_bytes = self.memory_bytes.saturating_add(o.memory_bytes);
        for (a, b) in self.types.iter_mut().zip(o.types) {
            *a += b;
        }
        if let Some(h) = o.ttl {
            match &mut self.ttl {
                Some(mine) => mine.merge(&h),
                None => self.ttl = Some(h),
            }
        }
        self.largest.extend(o.largest);
        self.largest
            .sort_by_key(|(bytes, _)| std::cmp::Reverse(*bytes));
        self.largest.truncate(LARGEST_KEYS);
    }

    fn report(self, pattern: String) -> NamespaceStats {
        let ttl_quantiles = match &self.ttl {
            Some(h) => TTL_QUANTILES
                .iter()
                .filter_map(|&q| h.quantile(q).map(|v| (q, v)))
                .collect(),
            None => Vec::new(),
        };
        NamespaceStats {
            pattern,
            keys: self.keys,
            keys_with_ttl: self.keys_with_ttl,
            memory_bytes: self.memory_bytes,
            types: KeyType::ALL
                .iter()
                .map(|t| (*t, self.types[t.index()]))
                .filter(|(_, n)| *n > 0)
                .collect(),
            ttl_quantiles,
            largest: self.largest,
        }
    }
}

/// One namespace in a finished report.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceStats {
    /// The pattern, or [`OTHER`].
    pub pattern: String,
    pub keys: u64,
    pub keys_with_ttl: u64,
    pub memory_bytes: u64,
    /// Keys by type, types with no key left out.
    pub types: Vec<(KeyType, u64)>,
    /// (quantile, remaining TTL in seconds) for [`TTL_QUANTILES`]; empty
    /// when no key has a TTL.
    pub ttl_quantiles: Vec<(f64, f64)>,
    /// Sizes in bytes of the largest keys, largest first, with their names
    /// when `insight.show-key-names` is on.
    pub largest: Vec<(u64, Option<String>)>,
}

impl NamespaceStats {
    /// Share of keys with a TTL, 0 for an empty namespace.
    pub fn ttl_share(&self) -> f64 {
        share(self.keys_with_ttl, self.keys)
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The result of one complete pass over a node's keyspace.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyspaceReport {
    /// Largest by memory first; [`OTHER`] last when present.
    pub namespaces: Vec<NamespaceStats>,
    pub keys: u64,
    pub keys_with_ttl: u64,
    pub memory_bytes: u64,
    /// Unix time the pass ended.
    pub ended_unix: f64,
    pub duration_seconds: f64,
}

impl KeyspaceReport {
    pub fn ttl_share(&self) -> f64 {
        share(self.keys_with_ttl, self.keys)
    }
}

/// Accumulates one pass.
#[derive(Debug)]
pub struct PassBuilder {
    rules: NamespaceRules,
    show_names: bool,
    tracked: HashMap<String, NamespaceAcc>,
    other: NamespaceAcc,
}

impl PassBuilder {
    pub fn new(rules: NamespaceRules, show_names: bool) -> Self {
        PassBuilder {
            rules,
            show_names,
            tracked: HashMap::new(),
            other: NamespaceAcc::new(),
        }
    }

    pub fn add(&mut self, sample: &KeySample) {
        let pattern = namespace_of(sample.key, &self.rules);
        let room = self.tracked.len() < MAX_TRACKED;
        let acc = if pattern == OTHER || (!room && !self.tracked.contains_key(&pattern)) {
            &mut self.other
        } else {
            self.tracked
                .entry(pattern)
                .or_insert_with(NamespaceAcc::new)
        };
        acc.add(sample, self.show_names);
    }

    /// Keys added so far.
    pub fn keys(&self) -> u64 {
        self.tracked.values().map(|a| a.keys).sum::<u64>() + self.other.keys
    }

    /// The report: the `max_namespaces` largest namespaces by memory (ties
    /// by key count, then name, so reports are stable), the rest summed
    /// into [`OTHER`].
    pub fn finish(
        self,
        max_namespaces: usize,
        ended_unix: f64,
        duration_seconds: f64,
    ) -> KeyspaceReport {
        let mut all: Vec<(String, NamespaceAcc)> = self.tracked.into_iter().collect();
        all.sort_by(|(an, a), (bn, b)| {
            b.memory_bytes
                .cmp(&a.memory_bytes)
                .then(b.keys.cmp(&a.keys))
                .then(an.cmp(bn))
        });
        let mut other = self.other;
        let (mut kept, small): (Vec<_>, Vec<_>) = all
            .into_iter()
            .partition(|(_, a)| a.keys >= MIN_KEYS_PER_NAMESPACE);
        let mut rest = if kept.len() > max_namespaces {
            kept.split_off(max_namespaces)
        } else {
            Vec::new()
        };
        rest.extend(small);
        let all = kept;
        for (_, acc) in rest {
            other.merge(acc);
        }
        let mut namespaces: Vec<NamespaceStats> =
            all.into_iter().map(|(p, a)| a.report(p)).collect();
        if other.keys > 0 {
            namespaces.push(other.report(OTHER.to_string()));
        }
        KeyspaceReport {
            keys: namespaces.iter().map(|n| n.keys).sum(),
            keys_with_ttl: namespaces.iter().map(|n| n.keys_with_ttl).sum(),
            memory_bytes: namespaces
                .iter()
                .fold(0u64, |m, n| m.saturating_add(n.memory_bytes)),
            namespaces,
            ended_unix,
            duration_seconds,
        }
    }
}

/// Share of keys `policy` may evict: every key for `allkeys-*`, the keys
/// with a TTL for `volatile-*`, none for `noeviction`. `None` for a policy
/// we do not know or a node without keys.
pub fn evictable_ratio(policy: &str, keys: u64, keys_with_ttl: u64) -> Option<f64> {
    if keys == 0 {
        return None;
    }
    if policy.starts_with("allkeys-") {
        Some(1.0)
    } else if policy.starts_with("volatile-") {
        Some(share(keys_with_ttl, keys))
    } else if policy == "noeviction" {
        Some(0.0)
    } else {
        None
    }
}

/// Below this share of evictable keys a policy cannot make room: Redis
/// samples candidates among them and they run out first.
pub const EVICTABLE_MIN: f64 = 0.1;
/// Memory use (of maxmemory) from which a policy that cannot evict is a
/// present danger rather than a latent one.
pub const NEAR_MAXMEMORY: f64 = 0.9;

/// What the page says of a node's eviction policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyVerdict {
    /// The policy can evict enough keys, or memory is far from the limit.
    Fit,
    /// No maxmemory: the policy never runs; Redis grows until the host
    /// runs out of memory.
    NoMaxmemory,
    /// A `volatile-*` policy with few keys carrying a TTL: eviction finds
    /// nothing to remove and writes fail with OOM at maxmemory.
    VolatileWithoutTtls,
    /// `noeviction` near maxmemory: writes will fail with OOM.
    NoEvictionNearFull,
}

impl PolicyVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyVerdict::Fit => "fit",
            PolicyVerdict::NoMaxmemory => "no_maxmemory",
            PolicyVerdict::VolatileWithoutTtls => "volatile_without_ttls",
            PolicyVerdict::NoEvictionNearFull => "noeviction_near_full",
        }
    }

    /// One sentence for the report page: what is wrong and what to change.
    pub fn advice(self) -> &'static str {
        match self {
            PolicyVerdict::Fit => "The eviction policy can make room.",
            PolicyVerdict::NoMaxmemory => {
                "No maxmemory is set: the eviction policy never runs and Redis grows until the host runs out of memory. Set maxmemory below the memory you can give it."
            }
            PolicyVerdict::VolatileWithoutTtls => {
                "A volatile-* policy evicts only keys with a TTL, and few keys have one: at maxmemory writes fail with OOM. Set TTLs on cache keys or switch to an allkeys-* policy."
            }
            PolicyVerdict::NoEvictionNearFull => {
                "noeviction near maxmemory: writes will fail with OOM. For a cache, use allkeys-lru or allkeys-lfu; otherwise raise maxmemory."
            }
        }
    }
}

/// The verdict for a node, from its policy, its memory and the share of its
/// keys with a TTL (`None` before the first pass: the TTL share is unknown
/// and the volatile verdict is not given).
pub fn policy_verdict(
    policy: &str,
    maxmemory: u64,
    used_memory: u64,
    ttl_share: Option<f64>,
) -> PolicyVerdict {
    if maxmemory == 0 {
        return PolicyVerdict::NoMaxmemory;
    }
    if policy == "noeviction" && used_memory as f64 >= NEAR_MAXMEMORY * maxmemory as f64 {
        return PolicyVerdict::NoEvictionNearFull;
    }
    if policy.starts_with("volatile-") && ttl_share.is_some_and(|s| s < EVICTABLE_MIN) {
        return PolicyVerdict::VolatileWithoutTtls;
    }
    PolicyVerdict::Fit
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(key: &str) -> String {
        namespace_of(key.as_bytes(), &NamespaceRules::default())
    }

    #[test]
    fn identifiers_collapse() {
        assert_eq!(ns("user:{123}:profile"), "user:*:profile");
        assert_eq!(ns("user:{456}:profile"), "user:*:profile");
        assert_eq!(ns("user:42:cart"), "user:*:cart");
        assert_eq!(ns("sess:6f1c2a8e-1b2c-4d5e-8f90-0123456789ab"), "sess:*");
        assert_eq!(ns("blob:d41d8cd98f00b204e9800998ecf8427e"), "blob:*");
        assert_eq!(ns("tok:Ab3_dE9-fGh1jK2lMn4pQ"), "tok:*");
        assert_eq!(ns("session12345"), "session*");
        assert_eq!(ns("{user:123}:profile"), "{user:*}:profile");
        // Personal data and data are not names.
        assert_eq!(ns("user:alice@example.com"), "user:*");
        assert_eq!(ns("alice@example.com"), "*");
        assert_eq!(ns("q:select name from users"), "q:*");
        assert_eq!(ns(&format!("blob:{}", "x".repeat(49))), "blob:*");
        // Words stay: a hex-looking word without a digit, a short number
        // suffix (a version), a tag around a name.
        assert_eq!(ns("cache:deadbeefcafe:v2"), "cache:deadbeefcafe:v2");
        assert_eq!(ns("{orders}:open"), "{orders}:open");
        assert_eq!(ns("plain"), "plain");
        assert_eq!(ns(""), "");
        assert_eq!(ns("a::b:"), "a::b:");
    }

    #[test]
    fn patterns_are_bounded_and_printable() {
        assert_eq!(ns("a:b:c:d:e:f:g:h:i:j"), "a:b:c:d:e:f:g:h:*");
        let long = format!("{}:", "x".repeat(40)).repeat(8);
        assert_eq!(ns(&long).len(), MAX_PATTERN_BYTES);
        assert_eq!(ns(&"x".repeat(100_000)), "*");
        let weird = namespace_of(b"\xff\xfe:\x01\x00:ok", &NamespaceRules::default());
        assert_eq!(weird, "??:??:ok");
        let multi = NamespaceRules {
            separators: vec![b':', b'/'],
        };
        assert_eq!(namespace_of(b"img/123:thumb", &multi), "img/*:thumb");
        // A multi-byte character cut at the length cap stays whole or goes.
        let accents = format!("{}:", "é".repeat(23)).repeat(8);
        let p = ns(&accents);
        assert!(p.len() <= MAX_PATTERN_BYTES && p.len() > 120, "{p}");
        assert!(p.chars().all(|c| c == 'é' || c == ':'));
    }

    fn sample(key: &str, kind: KeyType, ttl_ms: Option<u64>, bytes: u64) -> KeySample<'_> {
        KeySample {
            key: key.as_bytes(),
            kind,
            ttl_ms,
            bytes,
        }
    }

    #[test]
    fn a_pass_sums_namespaces_and_folds_the_rest_into_other() {
        let mut b = PassBuilder::new(NamespaceRules::default(), false);
        for i in 0..100 {
            let ttl = (i % 10 != 0).then_some(60_000);
            b.add(&sample(&format!("user:{i}:p"), KeyType::Hash, ttl, 100));
        }
        for i in 0..10 {
            b.add(&sample(&format!("big:{i}"), KeyType::String, None, 10_000));
        }
        // Fewer than MIN_KEYS_PER_NAMESPACE keys: named by no pattern.
        for i in 0..3 {
            b.add(&sample(
                &format!("huge:{i}"),
                KeyType::String,
                None,
                1_000_000,
            ));
        }
        b.add(&sample("small:1", KeyType::Set, None, 10));
        assert_eq!(b.keys(), 114);
        let r = b.finish(2, 1.0, 2.0);
        let names: Vec<&str> = r.namespaces.iter().map(|n| n.pattern.as_str()).collect();
        assert_eq!(names, ["big:*", "user:*:p", OTHER]);
        let user = &r.namespaces[1];
        assert_eq!(
            (user.keys, user.keys_with_ttl, user.memory_bytes),
            (100, 90, 10_000)
        );
        assert!((user.ttl_share() - 0.9).abs() < 1e-9);
        assert_eq!(user.types, vec![(KeyType::Hash, 100)]);
        let median = user.ttl_quantiles[1].1;
        assert!((median - 60.0).abs() / 60.0 < 0.1, "{median}");
        assert_eq!(r.keys, 114);
        assert_eq!(r.memory_bytes, 100_000 + 10_000 + 10 + 3_000_000);
        assert!(!r.namespaces.iter().any(|n| n.pattern.starts_with("huge")));
        assert_eq!(r.namespaces[0].largest.len(), LARGEST_KEYS);
        assert!(r.namespaces[0]
            .largest
            .iter()
            .all(|(b, n)| *b == 10_000 && n.is_none()));
    }

    #[test]
    fn tracked_patterns_are_capped() {
        let mut b = PassBuilder::new(NamespaceRules::default(), true);
        for i in 0..(MAX_TRACKED + 100) {
            // Letters only, so that no name is an identifier.
            let name: String = format!("{i:04}")
                .bytes()
                .map(|d| (b'a' + d - b'0') as char)
                .collect();
            for _ in 0..MIN_KEYS_PER_NAMESPACE {
                b.add(&sample(&format!("{name}:a"), KeyType::String, None, 1));
            }
        }
        assert!(b.tracked.len() <= MAX_TRACKED);
        let r = b.finish(20, 0.0, 0.0);
        assert_eq!(r.keys, (MAX_TRACKED + 100) as u64 * MIN_KEYS_PER_NAMESPACE);
        assert_eq!(r.namespaces.len(), 21);
        assert!(r.namespaces[0].largest[0].1.is_some());
    }

    #[test]
    fn ttl_quantiles_are_within_ten_percent() {
        for secs in [1u64, 7, 60, 3600, 86_400, 30 * 86_400, 10 * 365 * 86_400] {
            let mut h = TtlHistogram::new();
            h.add(secs * 1000);
            let q = h.quantile(0.5).unwrap();
            assert!((q - secs as f64).abs() / secs as f64 <= 0.1, "{secs}: {q}");
        }
        let mut h = TtlHistogram::new();
        h.add(u64::MAX);
        assert!(h.quantile(0.9).unwrap().is_finite());
    }

    #[test]
    fn policies() {
        assert_eq!(evictable_ratio("allkeys-lru", 10, 0), Some(1.0));
        assert_eq!(evictable_ratio("volatile-ttl", 20, 1), Some(0.05));
        assert_eq!(evictable_ratio("noeviction", 10, 10), Some(0.0));
        assert_eq!(evictable_ratio("volatile-lru", 0, 0), None);
        use PolicyVerdict::*;
        assert_eq!(
            policy_verdict("volatile-lru", 100, 95, Some(0.05)),
            VolatileWithoutTtls
        );
        assert_eq!(policy_verdict("volatile-lru", 100, 95, Some(0.95)), Fit);
        assert_eq!(policy_verdict("volatile-lru", 100, 95, None), Fit);
        assert_eq!(
            policy_verdict("noeviction", 100, 95, None),
            NoEvictionNearFull
        );
        assert_eq!(policy_verdict("noeviction", 100, 50, None), Fit);
        assert_eq!(policy_verdict("allkeys-lru", 0, 50, Some(0.0)), NoMaxmemory);
    }
}
