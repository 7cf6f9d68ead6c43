//! The keyspace analyser (docs/insight.md): walks the keyspace of the nodes
//! it is enabled on with `SCAN`, asks `TYPE`, `PTTL` and `MEMORY USAGE` of
//! every key in one pipelined round trip per batch, and publishes a report
//! per complete pass, paced so that the Redis time it causes stays under
//! `insight.budget`.
//!
//! It has its own connection per analysed node, opened for a pass and
//! closed after it: a pass never delays a poll, and a node that is not
//! being analysed holds no extra connection.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::collect::topology::Fleet;
use crate::config::{InsightSettings, InsightSource};
use crate::error::{PollError, Reason};
use crate::expose::state::NodeState;
use crate::redis::conn::Conn;
use crate::redis::resp::Reply;
use crate::signals::keyspace::{KeySample, KeyType, PassBuilder};

/// Keys asked per `SCAN` (its COUNT hint): a batch of about 100 keys is 300
/// pipelined commands, 0.1-0.3 ms of Redis time, so a client queued behind
/// it waits about as long as behind one ordinary slow-ish command.
pub const SCAN_COUNT: usize = 100;
/// Most keys accepted in one SCAN reply. Redis returns about COUNT keys
/// (more when a bucket holds many); far more is a hostile or broken server.
pub const MAX_KEYS_PER_BATCH: usize = 10 * SCAN_COUNT;
/// Largest SCAN reply accepted: 1000 keys of 4 KiB each. A longer reply is
/// refused (the pass fails) rather than buffered.
pub const MAX_SCAN_REPLY_BYTES: usize = 4 * 1024 * 1024;
/// Largest reply to TYPE, PTTL or MEMORY USAGE: a type name or an integer.
const MAX_SMALL_REPLY_BYTES: usize = 1024;
/// How often the supervisor re-checks which nodes to analyse (roles change
/// on failover, nodes come and go): fast enough to follow a failover within
/// seconds, negligible work (a lock per node).
const SUPERVISE_EVERY: Duration = Duration::from_secs(5);
/// Spread of first pass starts, so that a daemon starting with many nodes
/// does not open all analyser connections in the same instant.
const FIRST_PASS_SPREAD: Duration = Duration::from_secs(5);
/// SCAN calls allowed per pass, beyond which the cursor is deemed never to
/// end (a hostile or broken server): a multiple of what the keys INFO
/// reported need, plus room for sparse hash tables after mass deletions.
fn max_scan_calls(expected_keys: u64) -> u64 {
    // A server may claim any count; 2^32 keys is past any real node.
    (expected_keys.min(1 << 32) / SCAN_COUNT as u64)
        .saturating_mul(16)
        .saturating_add(10_000)
}

/// Runs until `stop` turns true: every [`SUPERVISE_EVERY`], starts an
/// analyser on each node that should be analysed and stops the others.
pub async fn supervise(
    fleet: Arc<dyn Fleet>,
    settings: Arc<InsightSettings>,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut running: HashMap<String, (watch::Sender<bool>, JoinHandle<()>)> = HashMap::new();
    loop {
        let nodes = fleet.nodes();
        let (chosen, unknown) = choose(&nodes, &settings, &|a| running.contains_key(a));
        running.retain(|addr, (tx, task)| {
            // A node down for a moment keeps its analyser and its report: a
            // pass of millions of keys is not thrown away for a failed poll
            // (the pass's own connection fails and counts if it lasts).
            let keep = (chosen
                .iter()
                .chain(&unknown)
                .any(|n| &n.target.addr == addr))
                && !task.is_finished();
            if !keep {
                let _ = tx.send(true);
            }
            keep
        });
        for n in &nodes {
            let wanted = chosen.iter().any(|c| Arc::ptr_eq(c, n));
            if !wanted && unknown.iter().any(|c| Arc::ptr_eq(c, n)) {
                continue;
            }
            if !wanted {
                let mut st = n.insight();
                if st.active || st.report.is_some() {
                    // A node no longer analysed (a master turned replica)
                    // must not count twice in cluster sums.
                    *st = Default::default();
                }
                continue;
            }
            if running.contains_key(&n.target.addr) {
                continue;
            }
            let (tx, rx) = watch::channel(false);
            let task = tokio::spawn(analyse(n.clone(), settings.clone(), timeout, rx));
            running.insert(n.target.addr.clone(), (tx, task));
        }
        tokio::select! {
            _ = tokio::time::sleep(SUPERVISE_EVERY) => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
    }
    for (_, (tx, task)) in running {
        let _ = tx.send(true);
        let _ = task.await;
    }
}

/// The nodes to analyse: enabled (globally or by their target), owned by
/// this replica, up, and of the chosen role; for replicas, one per master:
/// the one analysed already (`running`) while it is up, else the lowest
/// address among its replicas that are up, chosen among every node known
/// (owned or not, so that two exporter replicas sharing a fleet pick the
/// same one) and analysed where it is owned. Second, the enabled owned
/// nodes whose role is not known now (down): left as they are.
pub fn choose(
    nodes: &[Arc<NodeState>],
    settings: &InsightSettings,
    running: &dyn Fn(&str) -> bool,
) -> (Vec<Arc<NodeState>>, Vec<Arc<NodeState>>) {
    let mut unknown = Vec::new();
    let mut masters = Vec::new();
    let mut replicas: BTreeMap<String, Arc<NodeState>> = BTreeMap::new();
    for n in nodes {
        if !n.target.insight.unwrap_or(settings.enabled) {
            continue;
        }
        let st = n.status();
        let Some(obs) = &st.last else {
            if n.owned() {
                unknown.push(n.clone());
            }
            continue;
        };
        match obs.info.get("role") {
            Some("master") if n.owned() => masters.push(n.clone()),
            Some("slave") => {
                let master = format!(
                    "{}:{}",
                    obs.info.get("master_host").unwrap_or(""),
                    obs.info.get("master_port").unwrap_or("")
                );
                let best = replicas.entry(master).or_insert_with(|| n.clone());
                // Sticky: a pass in progress is not thrown away because a
                // replica with a lower address came (back) up.
                let better = match (running(&n.target.addr), running(&best.target.addr)) {
                    (true, false) => true,
                    (false, true) => false,
                    _ => n.target.addr < best.target.addr,
                };
                if better {
                    *best = n.clone();
                }
            }
            _ => {}
        }
    }
    let chosen = match settings.source {
        InsightSource::Master => masters,
        InsightSource::Replica => replicas.into_values().filter(|n| n.owned()).collect(),
    };
    (chosen, unknown)
}

/// One node's analyser: a pass every `pass_interval` until stopped.
async fn analyse(
    node: Arc<NodeState>,
    settings: Arc<InsightSettings>,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    {
        let mut st = node.insight();
        st.active = true;
        st.budget_seconds = settings.budget.as_secs_f64();
    }
    let spread = FIRST_PASS_SPREAD.mul_f64(jitter(&node.target.addr));
    let mut next = tokio::time::Instant::now() + spread;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
        let started = tokio::time::Instant::now();
        next = started + settings.pass_interval;
        let result = tokio::select! {
            r = pass(&node, &settings, timeout) => Some(r),
            _ = stop.changed() => None,
        };
        let mut st = node.insight();
        st.progress = None;
        match result {
            None => break,
            Some(Ok(report)) => {
                st.passes += 1;
                st.last_failure = None;
                st.report = Some(Arc::new(report));
            }
            Some(Err(e)) => {
                *st.failures.entry(e.reason).or_insert(0) += 1;
                st.last_failure = Some(e.reason);
                tracing::warn!(addr = %node.target.addr, reason = e.reason.as_str(), "keyspace analysis pass given up: {}", e.detail);
            }
        }
    }
    let mut st = node.insight();
    st.active = false;
    st.progress = None;
    st.report = None;
}

/// A number in [0, 1) from the address: a stable spread without a random
/// number generator.
fn jitter(addr: &str) -> f64 {
    let h = addr.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (h % 1000) as f64 / 1000.0
}

/// Keeps the Redis time the analyser causes under the budget.
///
/// A batch's round trip bounds the Redis time it took (Redis cannot work
/// on our commands before they arrive or after it answered), but on a fast
/// network most of it is spent elsewhere (system calls, our own parsing):
/// measured on loopback, commandstats counts 10-30 % of it. Charging whole
/// round trips would leave most of the budget unused and make passes
/// several times longer. So every [`CALIBRATE_EVERY`] the analyser reads
/// `INFO commandstats` and learns which share of its round trips the
/// server's time for SCAN, TYPE, PTTL and MEMORY was; each round trip is
/// charged at that share. The share starts at 1 (whole round trips) and is
/// never taken below [`MIN_SHARE`]. Other clients' calls of the same
/// commands raise the measured share, which only slows the analyser down:
/// the error is always on the side of the budget.
///
/// After each charge the next batch waits until the charge, spread at the
/// budget's rate, has passed; it never starts early to catch up.
struct Pacer {
    budget: f64,
    next: tokio::time::Instant,
    share: f64,
    /// Our four commands' total usec at the last calibration.
    last_usec: Option<u64>,
    /// Round-trip seconds of batches since then.
    round_trips: f64,
    /// Seconds charged for those batches.
    charged: f64,
    next_calibration: tokio::time::Instant,
    calibrations: u32,
}

/// How often the analyser re-reads commandstats to calibrate its charge:
/// the INFO costs about as much Redis time as one batch, so a few per
/// minute are noise next to the budget.
const CALIBRATE_EVERY: Duration = Duration::from_secs(10);
/// When the first share is measured, after the baseline reading.
const FIRST_CALIBRATION: Duration = Duration::from_secs(1);
/// Smallest share of a round trip charged: keeps the analyser bounded if
/// commandstats were reset or misread.
const MIN_SHARE: f64 = 0.05;
/// The commands the analyser sends, as commandstats names them (`memory`
/// before Redis 7, `memory|usage` since).
const OUR_COMMANDS: &[&str] = &["scan", "type", "pttl", "memory", "memory|usage"];

impl Pacer {
    fn new(budget: Duration) -> Self {
        let now = tokio::time::Instant::now();
        Pacer {
            budget: budget.as_secs_f64(),
            next: now,
            share: 1.0,
            last_usec: None,
            round_trips: 0.0,
            charged: 0.0,
            next_calibration: now,
            calibrations: 0,
        }
    }

    async fn wait(&self) {
        tokio::time::sleep_until(self.next).await;
    }

    /// Charges a batch that started at `started` and took `took`; returns
    /// the Redis time charged, in seconds.
    fn charge(&mut self, started: tokio::time::Instant, took: Duration) -> f64 {
        self.round_trips += took.as_secs_f64();
        let seconds = took.as_secs_f64() * self.share;
        self.charged += seconds;
        self.charge_at(started, seconds)
    }

    /// Charges `seconds` in full.
    fn charge_at(&mut self, started: tokio::time::Instant, seconds: f64) -> f64 {
        self.next = started + Duration::from_secs_f64(seconds / self.budget);
        seconds
    }

    fn calibration_due(&self) -> bool {
        tokio::time::Instant::now() >= self.next_calibration
    }

    /// Takes a commandstats reading (the sum of our commands' usec; `None`
    /// when commandstats says nothing of them). Learns the share, and pays
    /// back at once what the last window used beyond what it was charged
    /// (the share learnt from the window before was too low): the budget
    /// holds over every window, not only on average. Returns the seconds
    /// paid back.
    fn calibrate(&mut self, usec: Option<u64>) -> f64 {
        let now = tokio::time::Instant::now();
        let mut paid = 0.0;
        match (self.last_usec, usec) {
            // A counter that went back (CONFIG RESETSTAT, a restart) says
            // nothing of the window: a new baseline, the share kept.
            (Some(prev), Some(usec)) if usec >= prev && self.round_trips > 0.0 => {
                let used = (usec - prev) as f64 / 1e6;
                self.share = (used / self.round_trips).clamp(MIN_SHARE, 1.0);
                let excess = used - self.charged;
                if excess > 0.0 {
                    self.next = self.next.max(now) + Duration::from_secs_f64(excess / self.budget);
                    paid = excess;
                }
            }
            _ => {}
        }
        if usec.is_some() {
            self.last_usec = usec;
            self.calibrations = self.calibrations.saturating_add(1);
        }
        self.round_trips = 0.0;
        self.charged = 0.0;
        // The first share is learnt after a second: until then whole round
        // trips are charged, and a pass should not crawl for long.
        let every = if usec.is_some() && self.calibrations < 2 {
            FIRST_CALIBRATION
        } else {
            CALIBRATE_EVERY
        };
        self.next_calibration = now + every;
        paid
    }
}

/// Reads `INFO commandstats` and sums the usec of the analyser's commands;
/// `None` when the reply says nothing of them (renamed, or denied).
async fn our_usec(conn: &mut Conn) -> Result<Option<u64>, PollError> {
    let reply = conn.query(&[b"INFO", b"commandstats"]).await;
    conn.end_poll();
    let text = match reply? {
        Reply::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
        Reply::Error(_) => return Ok(None),
        _ => {
            return Err(PollError::new(
                Reason::Protocol,
                "INFO commandstats: not text",
            ))
        }
    };
    let info = crate::parse::info::parse_info(&text);
    let ours: Vec<u64> = info
        .commands
        .iter()
        .filter(|c| OUR_COMMANDS.contains(&c.cmd.as_str()))
        .map(|c| c.usec)
        .collect();
    Ok((!ours.is_empty()).then(|| ours.iter().fold(0u64, |a, b| a.saturating_add(*b))))
}

/// One pass over every database of the node; the report when it completes.
async fn pass(
    node: &NodeState,
    settings: &InsightSettings,
    timeout: Duration,
) -> Result<crate::signals::keyspace::KeyspaceReport, PollError> {
    let started = Instant::now();
    let started_unix = unix_now();
    let deadline = |what: &'static str| PollError::new(Reason::Timeout, what);
    let mut conn = tokio::time::timeout(timeout, Conn::open(&node.target))
        .await
        .map_err(|_| deadline("connect"))??;
    conn.begin_poll();
    let info = tokio::time::timeout(timeout, conn.query_text(&[b"INFO", b"keyspace"]))
        .await
        .map_err(|_| deadline("INFO keyspace"))??;
    conn.end_poll();
    let keyspace = crate::parse::info::parse_info(&info).keyspace;
    // A hostile server may claim any count: saturate, never overflow.
    let expected = keyspace.iter().fold(0u64, |n, d| n.saturating_add(d.keys));
    let cluster = node.status().cluster_enabled;
    if cluster {
        // A cluster replica answers keyed commands only after READONLY
        // (else MOVED to its master); harmless on a master.
        let r = tokio::time::timeout(timeout, conn.query(&[b"READONLY"]))
            .await
            .map_err(|_| deadline("READONLY"))??;
        if let Reply::Error(e) = r {
            return Err(PollError::from_error_reply(&e));
        }
        conn.end_poll();
    }
    let mut builder = PassBuilder::new(settings.rules.clone(), settings.show_key_names);
    let mut pacer = Pacer::new(settings.budget);
    let samples = settings.memory_samples.to_string();
    let mut calls = 0u64;
    let max_calls = max_scan_calls(expected);
    let mut seen = 0u64;
    for db in &keyspace {
        let Some(index) = db.db.strip_prefix("db").and_then(|d| d.parse::<u32>().ok()) else {
            continue;
        };
        if cluster && index != 0 {
            continue;
        }
        let index = index.to_string();
        let r = tokio::time::timeout(timeout, conn.query(&[b"SELECT", index.as_bytes()]))
            .await
            .map_err(|_| deadline("SELECT"))??;
        conn.end_poll();
        if let Reply::Error(e) = r {
            return Err(PollError::from_error_reply(&e));
        }
        let mut cursor = b"0".to_vec();
        loop {
            calls += 1;
            if calls > max_calls {
                return Err(PollError::new(
                    Reason::Protocol,
                    "SCAN did not come back to cursor 0",
                ));
            }
            pacer.wait().await;
            if pacer.calibration_due() {
                let t0 = tokio::time::Instant::now();
                let usec = tokio::time::timeout(timeout, our_usec(&mut conn))
                    .await
                    .map_err(|_| deadline("INFO commandstats"))??;
                let charged = pacer.charge_at(t0, t0.elapsed().as_secs_f64());
                // Without a reading the share stays (whole round trips at
                // first), and INFO is not asked again before the interval.
                let paid = pacer.calibrate(usec);
                node.insight().charged_seconds += charged + paid;
                pacer.wait().await;
            }
            let t0 = tokio::time::Instant::now();
            let batch =
                tokio::time::timeout(timeout, batch(&mut conn, &cursor, &samples, &mut builder))
                    .await
                    .map_err(|_| deadline("a SCAN batch"))??;
            let charged = pacer.charge(t0, t0.elapsed());
            seen += batch.keys;
            {
                let mut st = node.insight();
                st.charged_seconds += charged;
                st.scanned_keys += batch.keys;
                st.progress = Some(if expected == 0 {
                    1.0
                } else {
                    (seen as f64 / expected as f64).min(1.0)
                });
            }
            cursor = batch.cursor;
            if cursor == b"0" {
                break;
            }
        }
    }
    let duration = started.elapsed().as_secs_f64();
    Ok(builder.finish(settings.max_namespaces, started_unix + duration, duration))
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

struct Batch {
    cursor: Vec<u8>,
    keys: u64,
}

/// One SCAN and, pipelined, TYPE, PTTL and MEMORY USAGE for each key it
/// returned; adds the keys to `builder`.
async fn batch(
    conn: &mut Conn,
    cursor: &[u8],
    samples: &str,
    builder: &mut PassBuilder,
) -> Result<Batch, PollError> {
    let count = SCAN_COUNT.to_string();
    conn.send(&[b"SCAN", cursor, b"COUNT", count.as_bytes()])
        .await?;
    let reply = conn.read_one(MAX_SCAN_REPLY_BYTES).await?;
    let (cursor, keys) = scan_reply(reply)?;
    if keys.is_empty() {
        conn.end_poll();
        return Ok(Batch { cursor, keys: 0 });
    }
    let mut commands: Vec<Vec<&[u8]>> = Vec::with_capacity(3 * keys.len());
    for k in &keys {
        commands.push(vec![b"TYPE", k]);
        commands.push(vec![b"PTTL", k]);
        commands.push(vec![b"MEMORY", b"USAGE", k, b"SAMPLES", samples.as_bytes()]);
    }
    conn.send_many(&commands).await?;
    let mut added = 0;
    for k in &keys {
        let kind = conn.read_one(MAX_SMALL_REPLY_BYTES).await?;
        let ttl = conn.read_one(MAX_SMALL_REPLY_BYTES).await?;
        let bytes = conn.read_one(MAX_SMALL_REPLY_BYTES).await?;
        if let Some(sample) = key_sample(k, kind, ttl, bytes)? {
            builder.add(&sample);
            added += 1;
        }
    }
    conn.end_poll();
    Ok(Batch {
        cursor,
        keys: added,
    })
}

/// `[cursor, [key, ...]]`, checked.
pub fn scan_reply(reply: Reply) -> Result<(Vec<u8>, Vec<Vec<u8>>), PollError> {
    let bad = |what: &str| PollError::new(Reason::Protocol, format!("SCAN reply: {what}"));
    let items = match reply {
        Reply::Array(items) => items,
        Reply::Error(e) => return Err(PollError::from_error_reply(&e)),
        _ => return Err(bad("not an array")),
    };
    let mut items = items.into_iter();
    let (Some(Reply::Bulk(cursor)), Some(Reply::Array(keys)), None) =
        (items.next(), items.next(), items.next())
    else {
        return Err(bad("not [cursor, keys]"));
    };
    if cursor.is_empty() || cursor.len() > 20 || !cursor.iter().all(u8::is_ascii_digit) {
        return Err(bad("the cursor is not a number"));
    }
    if keys.len() > MAX_KEYS_PER_BATCH {
        return Err(bad("too many keys in one batch"));
    }
    let keys = keys
        .into_iter()
        .map(|k| match k {
            Reply::Bulk(k) => Ok(k),
            _ => Err(bad("a key is not a string")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((cursor, keys))
}

/// One key from its three replies; `None` when it disappeared in between
/// (expired, deleted) or belongs elsewhere (a slot moving: MOVED, ASK).
pub fn key_sample<'a>(
    key: &'a [u8],
    kind: Reply,
    ttl: Reply,
    bytes: Reply,
) -> Result<Option<KeySample<'a>>, PollError> {
    let bad = |what: &str| PollError::new(Reason::Protocol, format!("{what} reply is not valid"));
    for r in [&kind, &ttl, &bytes] {
        if let Reply::Error(_) = r {
            return match r.error_code() {
                Some("MOVED" | "ASK" | "TRYAGAIN") => Ok(None),
                // The code only: the rest of the line may quote the
                // command's arguments, the key name among them (Redis 6.2+
                // "unknown command ... with args beginning with"), and the
                // reason is logged.
                code => {
                    let code = code.unwrap_or("ERR");
                    Err(PollError::new(
                        Reason::from_error_code(code),
                        format!("{code} error reply to a key's TYPE, PTTL or MEMORY USAGE"),
                    ))
                }
            };
        }
    }
    let kind = match kind {
        Reply::Status(s) if s == "none" => return Ok(None),
        Reply::Status(s) => KeyType::from_reply(&s),
        _ => return Err(bad("TYPE")),
    };
    let ttl_ms = match ttl {
        Reply::Int(-2) => return Ok(None),
        Reply::Int(-1) => None,
        Reply::Int(ms) if ms >= 0 => Some(ms as u64),
        _ => return Err(bad("PTTL")),
    };
    let bytes = match bytes {
        Reply::Nil => return Ok(None),
        Reply::Int(b) if b >= 0 => b as u64,
        _ => return Err(bad("MEMORY USAGE")),
    };
    Ok(Some(KeySample {
        key,
        kind,
        ttl_ms,
        bytes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn scan_replies_are_checked() {
        let ok = Reply::Array(vec![bulk("17"), Reply::Array(vec![bulk("a"), bulk("b")])]);
        let (c, k) = scan_reply(ok).unwrap();
        assert_eq!((c.as_slice(), k.len()), (&b"17"[..], 2));
        for bad in [
            Reply::Int(3),
            Reply::Array(vec![bulk("x1"), Reply::Array(vec![])]),
            Reply::Array(vec![bulk("1")]),
            Reply::Array(vec![bulk("1"), Reply::Array(vec![Reply::Int(1)])]),
            Reply::Array(vec![
                bulk("1"),
                Reply::Array(vec![bulk("k"); MAX_KEYS_PER_BATCH + 1]),
            ]),
        ] {
            assert_eq!(scan_reply(bad).unwrap_err().reason, Reason::Protocol);
        }
        let denied = Reply::Error("NOPERM this user has no permissions".into());
        assert_eq!(scan_reply(denied).unwrap_err().reason, Reason::Denied);
    }

    #[test]
    fn key_replies() {
        let s = |t: &str| Reply::Status(t.into());
        let k = b"user:1";
        let sample = key_sample(k, s("hash"), Reply::Int(-1), Reply::Int(72))
            .unwrap()
            .unwrap();
        assert_eq!(
            (sample.kind, sample.ttl_ms, sample.bytes),
            (KeyType::Hash, None, 72)
        );
        let sample = key_sample(k, s("string"), Reply::Int(5000), Reply::Int(50))
            .unwrap()
            .unwrap();
        assert_eq!(sample.ttl_ms, Some(5000));
        // Gone between SCAN and the pipeline.
        assert!(key_sample(k, s("none"), Reply::Int(-2), Reply::Nil)
            .unwrap()
            .is_none());
        assert!(key_sample(k, s("string"), Reply::Int(-2), Reply::Nil)
            .unwrap()
            .is_none());
        let moved = Reply::Error("MOVED 3999 127.0.0.1:6381".into());
        assert!(key_sample(k, moved, Reply::Int(1), Reply::Int(1))
            .unwrap()
            .is_none());
        assert!(key_sample(k, s("string"), Reply::Int(-7), Reply::Int(1)).is_err());
        assert!(key_sample(k, s("string"), Reply::Int(1), bulk("x")).is_err());
    }

    #[test]
    fn pacing_keeps_the_average_under_the_budget() {
        let mut p = Pacer::new(Duration::from_millis(2));
        let t0 = tokio::time::Instant::now();
        assert_eq!(p.charge(t0, Duration::from_millis(1)), 0.001);
        assert_eq!(p.next - t0, Duration::from_millis(500));
        // A baseline, then commandstats says the server spent a fifth of
        // the round trips.
        p.calibrate(Some(1000));
        p.charge(t0, Duration::from_millis(10));
        assert_eq!(p.calibrate(Some(3000)), 0.0);
        assert!((p.share - 0.2).abs() < 1e-9);
        let charged = p.charge(t0, Duration::from_millis(1));
        assert!((charged - 0.0002).abs() < 1e-12);
        assert_eq!(p.next - t0, Duration::from_millis(100));
        // The next window used more than the share charged: paid back.
        let before = p.next;
        let paid = p.calibrate(Some(3000 + 1200));
        assert!((paid - 0.001).abs() < 1e-9, "{paid}");
        assert!(p.next >= before + Duration::from_millis(499));
        // A reset counter is a new baseline: the share stays.
        p.charge(t0, Duration::from_millis(10));
        let share = p.share;
        assert_eq!(p.calibrate(Some(0)), 0.0);
        assert_eq!(p.share, share);
        // Never below the floor nor above whole round trips.
        p.charge(t0, Duration::from_millis(10));
        p.calibrate(Some(0));
        assert_eq!(p.share, MIN_SHARE);
        p.charge(t0, Duration::from_millis(1));
        p.calibrate(Some(1_000_000));
        assert_eq!(p.share, 1.0);
    }

    #[test]
    fn no_reading_means_no_info_before_the_interval() {
        let mut p = Pacer::new(Duration::from_millis(2));
        assert!(p.calibration_due());
        p.calibrate(None);
        assert!(!p.calibration_due());
        assert_eq!(p.share, 1.0);
    }

    #[test]
    fn key_errors_do_not_quote_the_key() {
        let e = key_sample(
            b"alice@example.com",
            Reply::Status("string".into()),
            Reply::Int(-1),
            Reply::Error(
                "ERR unknown command 'MEMORY', with args beginning with: 'USAGE' 'alice@example.com'"
                    .into(),
            ),
        )
        .unwrap_err();
        assert!(!e.detail.contains("alice"), "{e}");
    }
}
