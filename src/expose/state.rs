//! What the daemon knows about each node, shared between its poller (the only
//! writer) and the HTTP handlers (readers).
//!
//! Readers never wait on Redis: a poll builds a complete [`Observation`] off
//! to the side and swaps it in under a short lock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{PollError, Reason};
use crate::parse::cluster::{ClusterInfo, NodeLine};
use crate::parse::info::Info;
use crate::redis::target::Target;
use crate::signals::History;

/// The INFO fields read after the poll that fetched them: the role
/// (landing page, `/sd`, discovery) and what replication lag joins across
/// nodes at scrape time. Once a poll has rendered its node's series it
/// keeps only these (and the replica lines) in [`Observation::info`]: the
/// whole reply was a fifth of the exporter's memory at 500 nodes.
pub const KEPT_AFTER_POLL: &[&str] = &[
    "role",
    "master_replid",
    "master_repl_offset",
    "slave_repl_offset",
    "master_sync_in_progress",
    "master_link_status",
    // The keyspace analyser and the /insight page (collect/insight.rs,
    // expose/insight.rs): which copy to read and the policy's fitness.
    "master_host",
    "master_port",
    "maxmemory",
    "maxmemory_policy",
    "used_memory",
    "cluster_enabled",
];

/// The analyser's state on one node, kept in its [`NodeState`] and
/// written by collect/insight.rs.
///
#[derive(Debug, Clone, Default)]
pub struct InsightStatus {
    /// The analyser runs on this node now.
    pub active: bool,
    /// `insight.budget` in seconds per second.
    pub budget_seconds: f64,
    /// Round-trip time charged to the budget, in seconds.
    pub charged_seconds: f64,
    pub scanned_keys: u64,
    pub passes: u64,
    pub failures: BTreeMap<crate::error::Reason, u64>,
    /// The pass in progress: keys examined over keys expected.
    pub progress: Option<f64>,
    /// Why the last pass that ended was given up; `None` when it completed.
    pub last_failure: Option<crate::error::Reason>,
    /// The last complete pass.
    pub report: Option<Arc<crate::signals::keyspace::KeyspaceReport>>,
}

/// One successful poll of a node.
#[derive(Debug, Clone)]
pub struct Observation {
    /// When the INFO reply (and the commands sent with it) arrived, on
    /// the exporter's monotonic clock.
    pub at: Instant,
    /// When INFO was sent: the node's state was read between this and
    /// `at`. Replication lag does not count a single write that a master
    /// poll showed shortly before a replica was asked (it may be in flight;
    /// see `derive::lag_seconds`).
    pub asked_at: Instant,
    /// The whole reply while the poll renders; then only
    /// [`KEPT_AFTER_POLL`].
    pub info: Info,
    /// The client limit: INFO's `maxclients` (6.2+), else CONFIG GET, else
    /// the operator's override; `None` when none is known.
    pub maxclients: Option<u64>,
    pub cluster_info: Option<ClusterInfo>,
    /// This node's view of the cluster (`CLUSTER NODES`), re-read on
    /// topology signals and every `cluster.refresh-interval`.
    pub cluster_nodes: Option<Arc<Vec<NodeLine>>>,
    /// Commands the server's ACL refused (`cluster|nodes`, ...): their
    /// metrics are missing for this reason, not because of a fault.
    pub denied: Vec<&'static str>,
    /// The slow log's length and newest id, read with the detail sections.
    pub slowlog: Option<Slowlog>,
    /// The server's `databases` setting (CONFIG GET, once per process);
    /// `None` on cluster nodes and where CONFIG is unavailable.
    pub databases: Option<u64>,
}

/// `SLOWLOG LEN` and the id of the newest slow-log entry (0 when empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slowlog {
    pub length: u64,
    pub last_id: u64,
}

impl Observation {
    /// An observation of INFO alone, taken now, its client limit from INFO
    /// itself: what fixture tests and benchmarks render.
    pub fn from_info(info: Info) -> Observation {
        let now = Instant::now();
        Observation {
            at: now,
            asked_at: now,
            maxclients: info.u64("maxclients"),
            info,
            cluster_info: None,
            cluster_nodes: None,
            denied: Vec::new(),
            slowlog: None,
            databases: None,
        }
    }
}

/// The mutable part of a node's state.
#[derive(Debug, Default)]
pub struct NodeStatus {
    /// Latest successful observation; cleared when a poll fails so that no
    /// stale value is presented as current.
    pub last: Option<Arc<Observation>>,
    /// `last`'s series, pre-rendered with the node's labels (see
    /// exposition::render_node); set and cleared together with `last`.
    pub rendered: Option<Arc<crate::expose::catalogue::NodeText>>,
    /// The state lines (up, poll counters, hit ratio) as of the last poll,
    /// rendered by the poller after it updated the fields below.
    pub state_text: Option<Arc<crate::expose::catalogue::StateText>>,
    pub last_error: Option<PollError>,
    pub last_success: Option<Instant>,
    pub last_poll_duration: Option<Duration>,
    /// Whether at least one poll (successful or not) has finished.
    pub polled_once: bool,
    pub polls_total: u64,
    pub errors_total: BTreeMap<Reason, u64>,
    pub connections_opened: u64,
    /// Lines or fields of CLUSTER NODES / CLUSTER INFO replies dropped as
    /// malformed, by reason (`redis_vitals_parse_errors_total`).
    pub parse_errors: BTreeMap<ParseErrorKind, u64>,
    /// Whether the node reported `cluster_enabled:1` (its parse-error
    /// counters are shown from 0).
    pub cluster_enabled: bool,
    /// The address the last connection reached: a seed given by host name
    /// vouches for its resolved network in discovery's trust check.
    pub peer_ip: Option<std::net::IpAddr>,
    /// Samples kept for windowed signals (hit ratio, offsets).
    pub history: History,
    /// The `cluster` label. Starts as the configured name; cluster
    /// discovery sets it for the nodes of a Redis Cluster.
    pub cluster: Arc<str>,
    /// Sharding: since when discovery has found an owned node's unit
    /// belonging to another replica (it is given up after
    /// `shard_settle`); `None` while it is this replica's.
    pub unowned_since: Option<Instant>,
}

/// Why part of a reply was dropped: the `reason` label of
/// `redis_vitals_parse_errors_total`. A small fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ParseErrorKind {
    /// A CLUSTER NODES line that does not parse; the other lines are kept.
    ClusterNodesLine,
    /// CLUSTER NODES lines beyond [`crate::collect::poller::MAX_VIEW_LINES`].
    ClusterNodesTruncated,
    /// A CLUSTER INFO field whose value does not parse; the rest is kept.
    ClusterInfoField,
}

impl ParseErrorKind {
    pub const ALL: [ParseErrorKind; 3] = [
        ParseErrorKind::ClusterNodesLine,
        ParseErrorKind::ClusterNodesTruncated,
        ParseErrorKind::ClusterInfoField,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ParseErrorKind::ClusterNodesLine => "cluster_nodes_line",
            ParseErrorKind::ClusterNodesTruncated => "cluster_nodes_truncated",
            ParseErrorKind::ClusterInfoField => "cluster_info_field",
        }
    }
}

/// A node the daemon polls.
#[derive(Debug)]
pub struct NodeState {
    pub target: Target,
    status: Mutex<NodeStatus>,
    /// Whether this exporter replica owns the node (`shard.index` of
    /// `shard.count`, collect/shard.rs). Only owned nodes are polled in
    /// full and shown in `/metrics`, `/scrape` and `/sd`; a configured
    /// node not (or not yet known to be) owned is a discovery scout: a
    /// small INFO and the cluster commands, for the topology only. Always
    /// true without sharding.
    owned: AtomicBool,
    /// The keyspace analyser's state (collect/insight.rs); apart from
    /// `status` so that a pass never holds the poll's lock.
    insight: Mutex<InsightStatus>,
}

impl NodeState {
    pub fn new(target: Target) -> Self {
        let status = NodeStatus {
            cluster: Arc::from(target.cluster.as_str()),
            ..NodeStatus::default()
        };
        NodeState {
            target,
            status: Mutex::new(status),
            owned: AtomicBool::new(true),
            insight: Mutex::default(),
        }
    }

    /// Locks the analyser's state; the same rule as [`NodeState::status`].
    pub fn insight(&self) -> MutexGuard<'_, InsightStatus> {
        self.insight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// See [`NodeState::owned`](Self).
    pub fn owned(&self) -> bool {
        self.owned.load(Ordering::Relaxed)
    }

    /// Sets whether this replica owns the node; returns the previous value.
    /// A node given up loses its rendered series at once.
    pub fn set_owned(&self, owned: bool) -> bool {
        let was = self.owned.swap(owned, Ordering::Relaxed);
        if was && !owned {
            self.status().rendered = None;
        }
        was
    }

    /// Locks the status. Holders must not await or do I/O while holding it.
    pub fn status(&self) -> MutexGuard<'_, NodeStatus> {
        // A panic while holding the lock leaves plain data behind; keep
        // serving it rather than taking the whole exporter down.
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_up(&self) -> bool {
        self.status().last.is_some()
    }
}
