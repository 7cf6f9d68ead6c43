//! Polling one node: a long-lived task per node that keeps one connection,
//! asks for INFO (and CLUSTER INFO/NODES on cluster nodes) on a fixed
//! schedule, and swaps the result into the node's shared state.
//!
//! One node's trouble stays with that node: every poll has a deadline that
//! starts when its turn comes (waiting for a slot counts), a failed
//! connection is retried with capped, jittered backoff, and nodes without a
//! connection connect through budgets of their own, so down, hung or
//! reconnecting nodes never hold the slots that connected nodes poll with.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Semaphore};

use crate::collect::schedule::Seat;
use crate::config::PollSettings;
use crate::error::{PollError, Reason};
use crate::expose::state::{NodeState, Observation, ParseErrorKind, Slowlog};
use crate::parse::cluster;
use crate::parse::info::{self, Info};
use crate::redis::conn::{text_reply, Conn};
use crate::redis::resp::Reply;
use crate::redis::target::Target;
use crate::signals::Counters;

/// Settings every poller shares.
#[derive(Debug, Clone)]
pub struct PollContext {
    pub poll: PollSettings,
    /// How far back each node's history must reach (seconds).
    pub hit_window: f64,
    pub lag_history: f64,
    /// Slots for polls over an open connection (`poll.concurrency`).
    pub permits: Arc<Semaphore>,
    /// Slots for connection attempts, in two lanes apart from `permits`
    /// (see [`ConnectBudgets`]).
    pub connects: ConnectBudgets,
    /// Rate limit of the "node marked down" warnings.
    pub down_log: Arc<LogLimit>,
    pub clock: crate::clock::Clock,
    /// Re-read CLUSTER NODES at least this often on every cluster node.
    pub cluster_refresh: Duration,
    /// Bumped on any topology signal (epoch or membership change, a role
    /// change, a cluster node that stops answering); every cluster node
    /// re-reads CLUSTER NODES at its next poll when it moved.
    pub topology_gen: Arc<AtomicU64>,
    /// Wakes discovery when a node's inputs to it change (its CLUSTER NODES
    /// view, up/down, role), so discovery runs on change instead of on a
    /// timer: a fleet without cluster nodes costs no discovery wake-ups.
    pub discovery: Arc<tokio::sync::Notify>,
    /// When each node polls (groups share tick times; see schedule.rs).
    pub schedule: Arc<crate::collect::schedule::Schedule>,
}

/// Connection attempts in flight for nodes not known to be bad: nodes that
/// answered within their last [`WARM_ATTEMPTS`] polls (a restart, a network
/// blip) and nodes that never tried to connect yet (a new seed or
/// discovered node). Their own lane, so they connect promptly even while a
/// thousand never-answering addresses queue in the cold lane. Connects that
/// succeed take one round trip, so these slots connect hundreds of nodes per
/// second; a new node that hangs holds one for [`CONNECT_TIMEOUT`] once,
/// then moves to the cold lane.
pub const WARM_CONNECTS: usize = 32;
/// Connection attempts in flight for every other node without a connection
/// (never answered, or down for a while). Small on purpose: each attempt to
/// a hung address holds its slot up to [`CONNECT_TIMEOUT`]; when they queue,
/// the queued polls end at their deadline and back off, costing nobody else.
pub const COLD_CONNECTS: usize = 16;
/// Failed polls after which a node that answered before moves to the cold
/// lane: with backoff that is about 25 s of prompt retries at the defaults.
pub const WARM_ATTEMPTS: u32 = 3;
/// Longest TCP connect + TLS handshake + AUTH (and never more than the
/// poll's deadline): milliseconds on a LAN, a few hundred on a WAN with TLS;
/// a connect that hangs (SYN dropped, full backlog) gives up its slot after
/// this instead of the whole poll timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Most CLUSTER NODES lines kept from one reply: 16 times the cluster size
/// Redis is designed for, so no real view is cut, while a hostile view
/// costs at most a few MiB per node. The rest is counted as
/// `cluster_nodes_truncated`.
pub const MAX_VIEW_LINES: usize = 16 * 1024;

/// The two connect lanes (see [`WARM_CONNECTS`], [`COLD_CONNECTS`]).
#[derive(Debug, Clone)]
pub struct ConnectBudgets {
    pub warm: Arc<Semaphore>,
    pub cold: Arc<Semaphore>,
}

impl Default for ConnectBudgets {
    fn default() -> Self {
        ConnectBudgets {
            warm: Arc::new(Semaphore::new(WARM_CONNECTS)),
            cold: Arc::new(Semaphore::new(COLD_CONNECTS)),
        }
    }
}

/// Warnings of one kind allowed per [`LOG_WINDOW`]; the rest are counted
/// and summed up in one line, so a thousand nodes going down at once (or
/// never coming up) write a dozen lines, not a thousand.
pub const LOG_BURST: u32 = 10;
pub const LOG_WINDOW: Duration = Duration::from_secs(10);

/// A window-based limit for one kind of log line.
#[derive(Debug, Default)]
pub struct LogLimit {
    state: std::sync::Mutex<LogWindow>,
}

#[derive(Debug, Default)]
struct LogWindow {
    start: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl LogLimit {
    /// Whether to write the next line; when a new window opens, returns
    /// also how many lines the last one suppressed.
    pub fn allow(&self) -> (bool, u64) {
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut suppressed = 0;
        if w.start.is_none_or(|s| now.duration_since(s) >= LOG_WINDOW) {
            suppressed = std::mem::take(&mut w.suppressed);
            w.start = Some(now);
            w.used = 0;
        }
        if w.used < LOG_BURST {
            w.used += 1;
            (true, suppressed)
        } else {
            w.suppressed += 1;
            (false, suppressed)
        }
    }

    /// Lines suppressed in a window that has ended, to be summed up now
    /// (every poll asks, so the sum comes even if no further line does).
    pub fn due(&self) -> u64 {
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match w.start {
            Some(s) if w.suppressed > 0 && s.elapsed() >= LOG_WINDOW => {
                w.start = None;
                std::mem::take(&mut w.suppressed)
            }
            _ => 0,
        }
    }
}

/// What a poll was doing when its deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    ConnectSlot,
    Connect,
    Slot,
    Reply,
}

/// Sections asked every poll from servers that accept several (Redis and
/// Valkey 7.0+): what the metrics use, without `modules`/`keysizes` (no
/// metric) and without `commandstats` and `latencystats` (see [`LATENCY_INTERVAL`]).
pub const INFO_SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "errorstats",
    "cluster",
    "keyspace",
];

/// Per-command counters (`commandstats`) and the slow log are asked every
/// `poll.detail-interval` (by default every poll: dashboards take `irate()`
/// of them). Latency percentiles (`latencystats`, 7.0+) cost Redis about as
/// much as all other sections together (~10 of ~18 µs of an idle node's
/// INFO on 7.0) and are percentiles since start or reset, which move
/// slowly: they are asked every `LATENCY_INTERVAL`, or every
/// `poll.detail-interval` if longer, and carried forward in between.
pub const LATENCY_INTERVAL: Duration = Duration::from_secs(30);

/// The detail sections last read, carried into the polls that skip them.
#[derive(Debug, Clone)]
struct Detail {
    at: Instant,
    commands: Arc<Vec<crate::parse::info::CommandStat>>,
    /// Only carried for servers before 7.0, whose cheap `INFO` (default
    /// sections) lacks errorstats.
    errors: Vec<(String, u64)>,
    /// `SLOWLOG LEN` and the newest entry's id, read with the detail
    /// sections.
    slowlog: Option<Slowlog>,
}

/// What we learned about a server, kept until its `run_id` changes so that
/// unsupported commands are probed once, not every poll.
#[derive(Debug, Default, Clone)]
struct Capabilities {
    run_id: Option<String>,
    /// INFO accepts several section names (7.0+, not Dragonfly).
    multi_section_info: bool,
    /// CONFIG GET failed (blocked, renamed, denied): never ask again.
    config_unavailable: bool,
    /// Last value and time of CONFIG GET maxclients.
    config_maxclients: Option<u64>,
    config_fetched_at: Option<Instant>,
    cluster_enabled: bool,
    detail: Option<Detail>,
    /// `databases` from CONFIG GET, asked once per server process (not on
    /// cluster nodes, which have db0 only): empty databases show as 0.
    databases: Option<u64>,
    databases_asked: bool,
    /// The latencystats last read, and when.
    latency: Option<(Instant, Arc<Vec<crate::parse::info::LatencyStat>>)>,
    /// SLOWLOG answered with an error other than NOPERM (an engine without
    /// it, a renamed command): not asked again until the server restarts.
    slowlog_unavailable: bool,
    /// Commands the server refused with NOPERM, and when: skipped until
    /// `poll.config-refresh` has passed, so an ACL that forbids them does
    /// not add an error reply to the server's counters every poll.
    denied: std::collections::BTreeMap<&'static str, Instant>,
    /// The last poll of this server process answered everything: the next
    /// one may send its commands with INFO. After a failure (LOADING,
    /// BUSY, a restart) INFO goes alone first, so an unhealthy server
    /// gets one error reply per poll, not one per command.
    steady: bool,
}

/// Whether a command the metrics can do without is asked this poll: not
/// while the server's refusal of it (NOPERM) is younger than `retry_after`.
fn denial_expired(caps: &Capabilities, name: &str, retry_after: Duration) -> bool {
    caps.denied
        .get(name)
        .is_none_or(|at| at.elapsed() >= retry_after)
}

/// Runs a command the metrics can do without. A NOPERM reply marks it
/// denied (the node stays up with everything else); other errors fail the
/// poll as usual.
async fn optional_query(
    c: &mut Conn,
    caps: &mut Capabilities,
    name: &'static str,
    args: &[&[u8]],
    retry_after: Duration,
    addr: &str,
) -> Result<Option<String>, PollError> {
    if !denial_expired(caps, name, retry_after) {
        return Ok(None);
    }
    optional_text(c.query(args).await?, caps, name, addr)
}

/// The text of a reply to an optional command (see [`optional_query`]).
fn optional_text(
    reply: Reply,
    caps: &mut Capabilities,
    name: &'static str,
    addr: &str,
) -> Result<Option<String>, PollError> {
    match text_reply(reply) {
        Ok(text) => {
            caps.denied.remove(name);
            Ok(Some(text))
        }
        Err(e) if e.reason == Reason::Denied => {
            if caps.denied.insert(name, Instant::now()).is_none() {
                tracing::warn!(addr = %addr, command = name, "ACL denies this command; its metrics are skipped");
            }
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Asked with INFO on detailed polls: the peer's `redis_slowlog_length`
/// and `redis_slowlog_last_id` (the newest entry's id).
const SLOWLOG_LEN: &[&[u8]] = &[b"SLOWLOG", b"LEN"];
const SLOWLOG_NEWEST: &[&[u8]] = &[b"SLOWLOG", b"GET", b"1"];

/// Asked with INFO on cluster nodes.
const CLUSTER_INFO: &[&[u8]] = &[b"CLUSTER", b"INFO"];

/// Whether a poll asks for the slow log: not of a server that does not
/// answer it, nor while its ACL denial is recent.
fn slowlog_wanted(caps: &Capabilities, retry_after: Duration) -> bool {
    !caps.slowlog_unavailable && denial_expired(caps, "slowlog", retry_after)
}

/// Asks for the slow log after INFO, when it did not go with it: on the
/// first poll of a server process, after a failed poll, and when a denial
/// is retried. `SLOWLOG GET 1` only if `SLOWLOG LEN` was answered, so a
/// denied or missing command costs the server one error reply.
async fn ask_slowlog(
    c: &mut Conn,
    caps: &mut Capabilities,
    addr: &str,
) -> Result<Option<Slowlog>, PollError> {
    let len = c.query(SLOWLOG_LEN).await?;
    let newest = if matches!(len, Reply::Error(_)) {
        Reply::Nil
    } else {
        c.query(SLOWLOG_NEWEST).await?
    };
    Ok(read_slowlog(len, newest, caps, addr))
}

/// The slow log's length and newest id from the replies to
/// [`SLOWLOG_LEN`] and [`SLOWLOG_NEWEST`]. `None` when the server does not
/// answer them: denied (asked again after `poll.config-refresh`) or an
/// engine without them (not asked again of this server process).
fn read_slowlog(len: Reply, newest: Reply, caps: &mut Capabilities, addr: &str) -> Option<Slowlog> {
    for reply in [&len, &newest] {
        if let Reply::Error(e) = reply {
            if PollError::from_error_reply(e).reason == Reason::Denied {
                if caps.denied.insert("slowlog", Instant::now()).is_none() {
                    tracing::warn!(addr = %addr, command = "slowlog", "ACL denies this command; its metrics are skipped");
                }
            } else {
                caps.slowlog_unavailable = true;
            }
            return None;
        }
    }
    caps.denied.remove("slowlog");
    let length = match len {
        Reply::Int(n) if n >= 0 => n as u64,
        _ => return None,
    };
    // An empty log has no newest entry: the peer shows 0 then.
    let last_id = match &newest {
        Reply::Array(entries) => match entries.first() {
            Some(Reply::Array(entry)) => match entry.first() {
                Some(Reply::Int(id)) if *id >= 0 => *id as u64,
                _ => return None,
            },
            _ => 0,
        },
        _ => return None,
    };
    Some(Slowlog { length, last_id })
}

/// What the previous polls of a cluster node saw, to tell topology signals
/// and to reuse the last CLUSTER NODES view between refreshes.
#[derive(Debug, Default)]
struct ClusterMemory {
    /// (current_epoch, known_nodes, size, state_ok, slots_pfail, slots_fail, role)
    fingerprint: Option<(u64, u64, u64, bool, u64, u64, String)>,
    nodes: Option<Arc<Vec<cluster::NodeLine>>>,
    fetched_at: Option<Instant>,
    seen_gen: u64,
    /// Parse-error kinds already logged for this node (logged once each).
    warned: Vec<ParseErrorKind>,
}

/// Counts `n` dropped lines or fields of `kind` on the node; the first of
/// each kind is logged (by reason, never the content).
fn count_parse_errors(
    node: &NodeState,
    kind: ParseErrorKind,
    n: usize,
    warned: &mut Vec<ParseErrorKind>,
) {
    if n == 0 {
        return;
    }
    *node.status().parse_errors.entry(kind).or_insert(0) += n as u64;
    if !warned.contains(&kind) {
        warned.push(kind);
        tracing::warn!(addr = %node.target.addr, reason = kind.as_str(), count = n, "dropped part of a cluster reply (malformed, or lines past MAX_VIEW_LINES); the rest is kept (logged once per node and reason)");
    }
}

/// Keeps at most `max` lines of a view, the node's own line among them;
/// returns how many were cut.
pub fn truncate_view(nodes: &mut Vec<cluster::NodeLine>, max: usize) -> usize {
    if nodes.len() <= max || max == 0 {
        return 0;
    }
    let cut = nodes.len() - max;
    if let Some(me) = nodes.iter().position(|l| l.flags.myself) {
        if me >= max {
            nodes.swap(me, max - 1);
        }
    }
    nodes.truncate(max);
    cut
}

/// A node's first poll comes at a random moment this long after its start
/// at most (or within one interval, if shorter): a fleet does not connect
/// all at once, and readiness still comes quickly.
pub const FIRST_POLL_SPREAD: Duration = Duration::from_millis(250);

/// Runs the poll loop of one node until `stop` turns true.
pub async fn run(node: Arc<NodeState>, ctx: Arc<PollContext>, mut stop: watch::Receiver<bool>) {
    let interval = ctx.poll.interval;
    // First poll soon (readiness waits for it), spread a little so that a
    // fleet does not connect all at once; later polls follow the node's
    // group in the schedule. The seat is freed when this task ends or is
    // aborted.
    let first_delay = jitter_up_to(interval.min(FIRST_POLL_SPREAD));
    let mut seat = ctx.schedule.join();
    // Off the grid (the first poll, backoff after a failure): this instant.
    let mut off_grid = Some(tokio::time::Instant::now() + first_delay);
    let mut conn: Option<Conn> = None;
    let mut caps = Capabilities::default();
    let mut cluster = ClusterMemory::default();
    let mut failures: u32 = 0;
    // Whether the node ever answered, and its failed connect attempts since
    // it last did: they pick its connect lane.
    let mut ever_up = false;
    let mut connect_failures: u32 = 0;
    // What discovery last heard from this node: (view, role code).
    let mut told: Option<DiscoveryInput> = None;

    loop {
        tokio::select! {
            _ = wait_turn(&mut seat, off_grid) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        // The deadline starts with the turn: waiting for a slot is part
        // of the poll, so a queue can delay a poll by the deadline at most.
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + ctx.poll.timeout;
        // Waiting for a connect slot past the deadline is no attempt: a
        // node only goes cold by failing connects itself.
        let warm = if ever_up {
            failures < WARM_ATTEMPTS
        } else {
            connect_failures == 0
        };
        let mut phase = Phase::Slot;
        // A node this replica does not own (sharding) is only scouted for
        // the topology; decided once per poll, so a poll is all one kind.
        let scout = !node.owned();
        let result = tokio::select! {
            r = tokio::time::timeout_at(
                deadline,
                poll_once(&node, &mut conn, Turn { warm, scout }, &mut caps, &mut cluster, &ctx, &mut phase),
            ) => r.unwrap_or_else(|_| Err(deadline_error(phase, ctx.poll.timeout))),
            _ = stop.changed() => return,
        };
        if let Some(c) = conn.as_mut() {
            c.end_poll();
        }
        let took = started.elapsed();

        match result {
            Ok(mut obs) => {
                if failures > 0 {
                    tracing::info!(addr = %node.target.addr, "node is up again");
                }
                failures = 0;
                connect_failures = 0;
                ever_up = true;
                let counters = Counters::from_info(&obs.info);
                let at = ctx.clock.secs(obs.at);
                // Render the node's series here, off the scrape path and
                // outside the lock; scrapes only copy the text.
                // The previous text lends its per-command families when the
                // detail sections were carried forward unchanged.
                let (label, prev) = {
                    let st = node.status();
                    (st.cluster.clone(), st.rendered.clone())
                };
                // A scout's reply is partial and never shown: nothing to
                // render, and its counters stay out of the history.
                let rendered = (!scout).then(|| {
                    crate::expose::render_node_with(
                        &obs,
                        &node.target.addr,
                        &label,
                        prev.as_deref(),
                    )
                });
                drop(prev);
                let input = (
                    obs.cluster_nodes.clone(),
                    crate::collect::topology::role_code(Some(&obs)),
                );
                obs.info
                    .retain_fields(crate::expose::state::KEPT_AFTER_POLL);
                let mut st = node.status();
                if !scout {
                    st.history
                        .record(at, &counters, ctx.hit_window, ctx.lag_history);
                }
                st.last = Some(Arc::new(obs));
                // A relabel by discovery in between wins at the next poll.
                st.rendered = rendered.map(Arc::new);
                st.last_error = None;
                st.last_success = Some(Instant::now());
                st.last_poll_duration = Some(took);
                st.polled_once = true;
                st.polls_total += 1;
                st.cluster_enabled = caps.cluster_enabled;
                let state = crate::expose::render_state(&node.target.addr, &st, ctx.hit_window);
                st.state_text = Some(Arc::new(state));
                drop(st);
                tell_discovery(&ctx, &mut told, input);
            }
            Err(e) => {
                // A broken conversation leaves the connection in an unknown
                // state (a late reply would be read as the next one): drop
                // it. Error replies on a healthy connection keep it.
                // A poll that timed out waiting for its slot sent nothing:
                // its connection is still in step.
                if !e.reason.is_error_reply() && phase != Phase::Slot {
                    conn = None;
                }
                failures = failures.saturating_add(1);
                if phase == Phase::Connect {
                    connect_failures = connect_failures.saturating_add(1);
                }
                let (log, suppressed) = if failures == 1 {
                    ctx.down_log.allow()
                } else {
                    (false, 0)
                };
                if suppressed > 0 {
                    tracing::warn!(suppressed, "more nodes were marked down; their warnings were left out (at most {LOG_BURST} per {LOG_WINDOW:?})");
                }
                if log {
                    tracing::warn!(addr = %node.target.addr, reason = %e.reason, detail = %e.detail, "poll failed; node marked down");
                } else {
                    tracing::debug!(addr = %node.target.addr, reason = %e.reason, detail = %e.detail, failures, "poll failed again");
                }
                if failures == 1 && caps.cluster_enabled {
                    // A cluster node that stops answering: its peers' views
                    // are about to change; have them re-read soon.
                    ctx.topology_gen.fetch_add(1, Ordering::Relaxed);
                    cluster.nodes = None;
                }
                let mut st = node.status();
                st.last = None;
                st.rendered = None;
                st.last_poll_duration = Some(took);
                *st.errors_total.entry(e.reason).or_insert(0) += 1;
                st.last_error = Some(e);
                st.polled_once = true;
                st.polls_total += 1;
                let state = crate::expose::render_state(&node.target.addr, &st, ctx.hit_window);
                st.state_text = Some(Arc::new(state));
                drop(st);
                tell_discovery(
                    &ctx,
                    &mut told,
                    (None, crate::collect::topology::role_code(None)),
                );
            }
        }

        let suppressed = ctx.down_log.due();
        if suppressed > 0 {
            tracing::warn!(suppressed, "more nodes were marked down; their warnings were left out (at most {LOG_BURST} per {LOG_WINDOW:?})");
        }

        // Fixed rate on the group's grid: the schedule does not drift with
        // poll time, and a node that recovers rejoins its group's ticks.
        off_grid = (failures > 0).then(|| {
            tokio::time::Instant::now() + backoff(interval, ctx.poll.max_backoff, failures)
        });
    }
}

/// Waits until `at`, or for the seat's next group tick.
async fn wait_turn(seat: &mut Seat, at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => seat.next_tick().await,
    }
}

/// A node's input to discovery: its CLUSTER NODES view and role code.
type DiscoveryInput = (Option<Arc<Vec<cluster::NodeLine>>>, u8);

/// Wakes discovery if this node's input differs from what it last told.
fn tell_discovery(ctx: &PollContext, told: &mut Option<DiscoveryInput>, now: DiscoveryInput) {
    let same = told.as_ref().is_some_and(|(view, role)| {
        *role == now.1
            && match (view, &now.0) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    });
    if !same {
        *told = Some(now);
        ctx.discovery.notify_one();
    }
}

/// Retry delay after `failures` consecutive failures: the poll interval,
/// doubling per failure up to `max`, with ±20% jitter so a fleet that lost
/// its network does not reconnect in one burst.
pub fn backoff(interval: Duration, max: Duration, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let base = interval.saturating_mul(1u32 << exp).min(max);
    let factor = 0.8 + fastrand::f64() * 0.4;
    base.mul_f64(factor)
}

fn jitter_up_to(max: Duration) -> Duration {
    max.mul_f64(fastrand::f64())
}

/// The error of a poll whose deadline passed, saying where it was.
fn deadline_error(phase: Phase, timeout: Duration) -> PollError {
    match phase {
        Phase::ConnectSlot => PollError::new(
            Reason::Connect,
            format!("no connect slot within {timeout:?} (many nodes are connecting)"),
        ),
        Phase::Connect => PollError::new(
            Reason::Connect,
            format!("connect did not complete within {timeout:?}"),
        ),
        Phase::Slot => PollError::new(
            Reason::Timeout,
            format!("no poll slot within {timeout:?} (poll.concurrency)"),
        ),
        Phase::Reply => PollError::new(
            Reason::Timeout,
            format!("no complete reply within {timeout:?}"),
        ),
    }
}

/// How one poll goes: `warm` picks the connect lane (see
/// [`ConnectBudgets`]); `scout` makes it a discovery-only poll of a node
/// another replica owns (see [`poll_commands`]).
#[derive(Debug, Clone, Copy)]
struct Turn {
    warm: bool,
    scout: bool,
}

/// One poll: a connection if there is none (through a connect lane, see
/// [`ConnectBudgets`]), then a poll slot, then the commands. The caller's
/// deadline bounds all of it; `phase` tells it where the time went.
async fn poll_once(
    node: &NodeState,
    conn: &mut Option<Conn>,
    turn: Turn,
    caps: &mut Capabilities,
    cluster: &mut ClusterMemory,
    ctx: &PollContext,
    phase: &mut Phase,
) -> Result<Observation, PollError> {
    let Turn { warm, scout } = turn;
    if conn.is_none() {
        *phase = Phase::ConnectSlot;
        let lane = if warm {
            &ctx.connects.warm
        } else {
            &ctx.connects.cold
        };
        let _slot = lane
            .acquire()
            .await
            .map_err(|_| PollError::new(Reason::Connect, "shutting down"))?;
        *phase = Phase::Connect;
        let c = tokio::time::timeout(CONNECT_TIMEOUT, Conn::open(&node.target))
            .await
            .map_err(|_| {
                PollError::new(
                    Reason::Connect,
                    format!("connect did not complete within {CONNECT_TIMEOUT:?}"),
                )
            })??;
        {
            let mut st = node.status();
            st.connections_opened += 1;
            st.peer_ip = c.peer_ip;
        }
        tracing::debug!(addr = %node.target.addr, "connected");
        *conn = Some(c);
    }
    *phase = Phase::Slot;
    let _permit = ctx
        .permits
        .acquire()
        .await
        .map_err(|_| PollError::new(Reason::Timeout, "shutting down"))?;
    *phase = Phase::Reply;
    poll_commands(node, conn, scout, caps, cluster, ctx).await
}

/// The INFO sections a scout asks for (7.0+): the server's identity and
/// version, its role and whether it runs in cluster mode; a small reply.
const SCOUT_SECTIONS: &[&str] = &["server", "replication", "cluster"];

/// One poll's commands. A scout (a node another replica owns, kept for
/// discovery) sends only a small INFO and the cluster commands.
async fn poll_commands(
    node: &NodeState,
    conn: &mut Option<Conn>,
    scout: bool,
    caps: &mut Capabilities,
    cluster: &mut ClusterMemory,
    ctx: &PollContext,
) -> Result<Observation, PollError> {
    let config_refresh = ctx.poll.config_refresh;
    let target = &node.target;
    let Some(c) = conn.as_mut() else {
        return Err(PollError::new(Reason::Connect, "no connection"));
    };
    c.begin_poll();

    // Half an interval of slack: `at` is when the last such reply arrived,
    // later than that poll's scheduled start, so without it an interval
    // equal to the poll interval would skip every other poll (and 30 s
    // would mean every 31st poll).
    let due = |at: Instant, every: Duration| at.elapsed() + ctx.poll.interval / 2 >= every;
    let detailed = !scout
        && caps
            .detail
            .as_ref()
            .is_none_or(|d| due(d.at, ctx.poll.detail_interval));
    let latency_every = ctx.poll.detail_interval.max(LATENCY_INTERVAL);
    let latency_due = !scout
        && caps
            .latency
            .as_ref()
            .is_none_or(|(at, _)| due(*at, latency_every));
    let mut info_cmd: Vec<&[u8]> = vec![b"INFO"];
    if scout {
        if caps.multi_section_info {
            info_cmd.extend(SCOUT_SECTIONS.iter().map(|s| s.as_bytes()));
        }
    } else if caps.multi_section_info {
        info_cmd.extend(INFO_SECTIONS.iter().map(|s| s.as_bytes()));
        if detailed {
            info_cmd.push(b"commandstats");
        }
        if latency_due {
            info_cmd.push(b"latencystats");
        }
    } else if detailed || latency_due {
        // Older servers take one section name; "all" is everything but
        // modules on every version we support. Without an argument they
        // answer the default sections, without the detail ones.
        info_cmd.push(b"all");
    }
    // In the steady state a poll's regular commands go in one write: one
    // round trip, one wake-up, one read event in Redis. They are the ones
    // whose answer INFO does not decide, asked of a server whose last poll
    // answered them (see `Capabilities::steady`); otherwise they follow
    // INFO, as do CONFIG GET and CLUSTER NODES.
    let steady = std::mem::replace(&mut caps.steady, false);
    let slowlog_with_info =
        steady && detailed && !caps.slowlog_unavailable && !caps.denied.contains_key("slowlog");
    let cluster_info_with_info =
        steady && caps.cluster_enabled && !caps.denied.contains_key("cluster|info");
    let mut commands: Vec<&[&[u8]]> = vec![&info_cmd];
    let slowlog_at = slowlog_with_info.then(|| {
        commands.extend([SLOWLOG_LEN, SLOWLOG_NEWEST]);
        commands.len() - 2
    });
    let cluster_info_at = cluster_info_with_info.then(|| {
        commands.push(CLUSTER_INFO);
        commands.len() - 1
    });
    let asked_at = Instant::now();
    let mut replies = c.query_many(&commands).await?;
    // query_many returns one reply per command; a missing one reads as nil.
    let mut take = |i: usize| {
        replies
            .get_mut(i)
            .map_or(Reply::Nil, |r| std::mem::replace(r, Reply::Nil))
    };
    let text = match text_reply(take(0)) {
        Ok(text) => text,
        Err(e) => {
            if e.reason == Reason::ServerError && caps.multi_section_info {
                // Refused section names: another server now answers at this
                // address (an older version behind the same name). Ask the
                // form every version takes and learn the server again,
                // rather than stay down until the exporter restarts.
                caps.multi_section_info = false;
                caps.run_id = None;
            }
            return Err(e);
        }
    };
    let at = Instant::now();
    let info = info::parse_info(&text);
    if info.field_count() == 0 {
        return Err(PollError::new(Reason::Protocol, "INFO reply has no fields"));
    }

    let mut info = info;
    let run_id = info.get("run_id").map(str::to_string);
    if caps.run_id != run_id {
        // A new server process (or the first reply): learn what it supports
        // (its counters restarted, so carried details are dropped too; a
        // reply without them makes the next poll ask).
        *caps = detect(&info);
        caps.run_id = run_id;
    }
    let slowlog = if let Some(i) = slowlog_at {
        read_slowlog(take(i), take(i + 1), caps, &target.addr)
    } else if detailed && slowlog_wanted(caps, config_refresh) {
        ask_slowlog(c, caps, &target.addr).await?
    } else if detailed {
        None
    } else {
        caps.detail.as_ref().and_then(|d| d.slowlog)
    };
    if detailed {
        caps.detail = Some(Detail {
            at,
            commands: info.commands.clone(),
            errors: info.errors.clone(),
            slowlog,
        });
    } else if let Some(d) = &caps.detail {
        info.commands = d.commands.clone();
        if !caps.multi_section_info {
            info.errors = d.errors.clone();
        }
    }
    if latency_due {
        caps.latency = Some((at, info.latencies.clone()));
    } else if let Some((_, l)) = &caps.latency {
        info.latencies = l.clone();
    }

    // Dragonfly spells it max_clients.
    let mut maxclients = info.u64("maxclients").or_else(|| info.u64("max_clients"));
    if maxclients.is_none() && !scout {
        maxclients = config_maxclients(c, target, caps, config_refresh).await?;
    }
    let maxclients = maxclients.or(target.maxclients_override);
    if !caps.cluster_enabled && !caps.databases_asked {
        caps.databases_asked = true;
        caps.databases = config_databases(c, target, caps).await?;
    }

    let (cluster_info, cluster_nodes) = if caps.cluster_enabled {
        let retry = ctx.poll.config_refresh;
        // With INFO in the steady state, else now. (A node that has just
        // stopped being a cluster node answers it with an error, which was
        // read with the rest and is left unused.)
        let text = if let Some(i) = cluster_info_at {
            optional_text(take(i), caps, "cluster|info", &target.addr)?
        } else {
            optional_query(c, caps, "cluster|info", CLUSTER_INFO, retry, &target.addr).await?
        };
        // A malformed field (or a reply that is no CLUSTER INFO at all)
        // costs that field, counted, not the node's INFO.
        let ci = match text.as_deref().map(cluster::parse_cluster_info_lenient) {
            Some(Ok((ci, errors))) => {
                count_parse_errors(
                    node,
                    ParseErrorKind::ClusterInfoField,
                    errors.len(),
                    &mut cluster.warned,
                );
                Some(ci)
            }
            Some(Err(_)) => {
                count_parse_errors(
                    node,
                    ParseErrorKind::ClusterInfoField,
                    1,
                    &mut cluster.warned,
                );
                None
            }
            None => None,
        };
        let role = info.get("role").unwrap_or("").to_string();
        let fingerprint = ci.as_ref().map(|ci| {
            (
                ci.current_epoch,
                ci.known_nodes,
                ci.size,
                ci.state_ok,
                ci.slots_pfail,
                ci.slots_fail,
                role,
            )
        });
        if cluster.fingerprint.is_some() && cluster.fingerprint != fingerprint {
            // Epoch, membership, role or slot health moved: a topology
            // signal for every node of the cluster.
            ctx.topology_gen.fetch_add(1, Ordering::Relaxed);
        }
        cluster.fingerprint = fingerprint;
        let generation = ctx.topology_gen.load(Ordering::Relaxed);
        let due = cluster.nodes.is_none()
            || cluster.seen_gen != generation
            || cluster
                .fetched_at
                .is_none_or(|at| at.elapsed() >= ctx.cluster_refresh);
        if due {
            if let Some(text) = optional_query(
                c,
                caps,
                "cluster|nodes",
                &[b"CLUSTER", b"NODES"],
                retry,
                &target.addr,
            )
            .await?
            {
                // Bad lines are dropped and counted; the good ones and the
                // node's INFO are kept.
                let (mut nodes, errors) = cluster::parse_cluster_nodes_lenient(&text);
                drop(text);
                count_parse_errors(
                    node,
                    ParseErrorKind::ClusterNodesLine,
                    errors.len(),
                    &mut cluster.warned,
                );
                let cut = truncate_view(&mut nodes, MAX_VIEW_LINES);
                count_parse_errors(
                    node,
                    ParseErrorKind::ClusterNodesTruncated,
                    cut,
                    &mut cluster.warned,
                );
                cluster.nodes = Some(Arc::new(nodes));
                cluster.fetched_at = Some(Instant::now());
                cluster.seen_gen = generation;
            }
        }
        (ci, cluster.nodes.clone())
    } else {
        *cluster = ClusterMemory::default();
        (None, None)
    };

    caps.steady = true;
    Ok(Observation {
        at,
        asked_at,
        info,
        maxclients,
        cluster_info,
        cluster_nodes,
        denied: caps.denied.keys().copied().collect(),
        slowlog,
        databases: caps.databases,
    })
}

fn detect(info: &Info) -> Capabilities {
    let version = info
        .get("redis_version")
        .map(parse_version)
        .unwrap_or((0, 0));
    let dragonfly = info.get("dragonfly_version").is_some();
    Capabilities {
        run_id: None,
        multi_section_info: version >= (7, 0) && !dragonfly,
        config_unavailable: false,
        config_maxclients: None,
        config_fetched_at: None,
        cluster_enabled: info.get("cluster_enabled") == Some("1"),
        detail: None,
        databases: None,
        databases_asked: false,
        latency: None,
        slowlog_unavailable: false,
        denied: Default::default(),
        steady: false,
    }
}

/// `CONFIG GET maxclients`, for servers whose INFO lacks it (before 6.2).
/// Asked once per `config_refresh`; after one failure never again for this
/// server process, so a blocked CONFIG does not add an error reply per poll.
async fn config_maxclients(
    c: &mut Conn,
    target: &Target,
    caps: &mut Capabilities,
    refresh: Duration,
) -> Result<Option<u64>, PollError> {
    let Some(cmd_name) = &target.config_command else {
        return Ok(None);
    };
    if caps.config_unavailable {
        return Ok(None);
    }
    if let Some(at) = caps.config_fetched_at {
        if at.elapsed() < refresh {
            return Ok(caps.config_maxclients);
        }
    }
    // Transport failures end the poll (`?`); an error reply means CONFIG
    // is blocked, renamed or denied here.
    match c
        .query(&[cmd_name.as_bytes(), b"GET", b"maxclients"])
        .await?
    {
        Reply::Array(pair) => {
            caps.config_fetched_at = Some(Instant::now());
            caps.config_maxclients = match pair.get(1) {
                Some(Reply::Bulk(v)) => std::str::from_utf8(v).ok().and_then(|v| v.parse().ok()),
                _ => None,
            };
            Ok(caps.config_maxclients)
        }
        reply => {
            let code = reply.error_code().unwrap_or("?");
            tracing::info!(addr = %target.addr, code, "CONFIG GET is not available; maxclients comes from the override if set");
            if code == "NOPERM" {
                caps.denied.insert("config|get", Instant::now());
            }
            caps.config_unavailable = true;
            Ok(None)
        }
    }
}

/// `CONFIG GET databases`, once per server process: how many databases
/// the server has, so that empty ones show as 0 as the peer shows them.
/// `None` when CONFIG is disabled, blocked or denied (then db0 only).
async fn config_databases(
    c: &mut Conn,
    target: &Target,
    caps: &mut Capabilities,
) -> Result<Option<u64>, PollError> {
    let Some(cmd_name) = &target.config_command else {
        return Ok(None);
    };
    if caps.config_unavailable {
        return Ok(None);
    }
    match c
        .query(&[cmd_name.as_bytes(), b"GET", b"databases"])
        .await?
    {
        Reply::Array(pair) => Ok(match pair.get(1) {
            Some(Reply::Bulk(v)) => std::str::from_utf8(v).ok().and_then(|v| v.parse().ok()),
            _ => None,
        }),
        reply => {
            let code = reply.error_code().unwrap_or("?");
            tracing::info!(addr = %target.addr, code, "CONFIG GET is not available; only db0 is shown when empty");
            if code == "NOPERM" {
                caps.denied.insert("config|get", Instant::now());
            }
            caps.config_unavailable = true;
            Ok(None)
        }
    }
}

/// "7.0.15" -> (7, 0). Unparseable parts count as 0.
pub fn parse_version(v: &str) -> (u32, u32) {
    let mut parts = v.split('.').map(|p| p.trim().parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let i = Duration::from_secs(5);
        let max = Duration::from_secs(30);
        for _ in 0..100 {
            let b1 = backoff(i, max, 1);
            assert!(
                b1 >= Duration::from_secs(4) && b1 <= Duration::from_secs(6),
                "{b1:?}"
            );
            let b3 = backoff(i, max, 3);
            assert!(
                b3 >= Duration::from_secs(16) && b3 <= Duration::from_secs(24),
                "{b3:?}"
            );
            let b = backoff(i, max, 1000);
            assert!(b <= Duration::from_secs(36), "{b:?}");
        }
    }

    #[test]
    fn a_truncated_view_keeps_its_own_line() {
        let text: String = (0..10)
            .map(|i| {
                let flags = if i == 8 { "myself,master" } else { "master" };
                format!("id{i} 10.0.0.{i}:6379@16379 {flags} - 0 0 1 connected\n")
            })
            .collect();
        let mut nodes = cluster::parse_cluster_nodes(&text).unwrap();
        assert_eq!(truncate_view(&mut nodes, 20), 0);
        assert_eq!(truncate_view(&mut nodes, 4), 6);
        assert_eq!(nodes.len(), 4);
        assert!(nodes[3].flags.myself);
        assert_eq!(nodes[0].id, "id0");
    }

    #[test]
    fn log_limit_allows_a_burst_then_counts() {
        let l = LogLimit::default();
        for _ in 0..LOG_BURST {
            assert!(l.allow().0);
        }
        assert_eq!(l.allow(), (false, 0));
        assert_eq!(l.allow(), (false, 0));
        // Not before the window ends.
        assert_eq!(l.due(), 0);
        l.state.lock().unwrap().start = Some(Instant::now() - LOG_WINDOW);
        assert_eq!(l.due(), 2);
        assert_eq!(l.due(), 0);
        assert!(l.allow().0);
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("7.0.15"), (7, 0));
        assert_eq!(parse_version("255.255.255"), (255, 255));
        assert_eq!(parse_version("x"), (0, 0));
    }
}
