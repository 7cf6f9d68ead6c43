//! Cache insight as the `/insight` page sees it: per cluster, its nodes'
//! last keyspace reports, eviction-policy verdicts and shard balance
//! (docs/insight.md). Built from node snapshots by the daemon; rendered to
//! HTML by web/insight.rs.

use std::sync::Arc;

use crate::signals::keyspace::{KeyspaceReport, PolicyVerdict};

/// Everything the report page shows.
#[derive(Debug, Clone, Default)]
pub struct InsightView {
    /// Whether any node has the analyser enabled (`insight.enabled` or a
    /// target's `insight = true`).
    pub enabled: bool,
    /// Unix time the view was taken.
    pub generated_unix: f64,
    /// Clusters by name; standalone and Sentinel-found nodes without a
    /// cluster label are in the cluster named "".
    pub clusters: Vec<ClusterView>,
}

#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// The `cluster` label ("" for none).
    pub name: String,
    pub nodes: Vec<NodeView>,
    /// One entry per Redis Cluster shard (masters with slots), from the
    /// last polls; empty for nodes that are not in a Redis Cluster.
    pub shards: Vec<ShardView>,
}

/// One Redis Cluster shard: what its master holds, from INFO.
#[derive(Debug, Clone, Default)]
pub struct ShardView {
    /// The shard's slot ranges as `redis_cluster_node_info` labels them.
    pub shard: String,
    pub master: String,
    /// Keys over every database (INFO keyspace).
    pub keys: u64,
    /// used_memory.
    pub memory_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct NodeView {
    pub addr: String,
    /// "master", "replica" or "unknown" (down before its first poll).
    pub role: String,
    pub up: bool,
    pub policy: String,
    pub maxmemory: u64,
    pub used_memory: u64,
    /// Keys over every database, from the last poll (INFO keyspace).
    pub keys: u64,
    /// The analyser runs on this node.
    pub analysed: bool,
    pub verdict: PolicyVerdict,
    /// Share of the pass in progress done, when one runs.
    pub progress: Option<f64>,
    /// The last complete pass.
    pub report: Option<Arc<KeyspaceReport>>,
    /// Why the last pass was given up, if it was (a reason label).
    pub last_failure: Option<&'static str>,
}
