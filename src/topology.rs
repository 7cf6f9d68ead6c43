//! Redis Cluster topology: which nodes exist, their roles and shards, as the
//! cluster itself reports them. Filled in by the cluster-discovery work.

use std::sync::Arc;

use tokio::sync::watch;

use crate::daemon::Shared;
use crate::exposition::{NodeView, Out};

/// Emits the per-node topology families of every cluster.
pub fn render(_out: &mut Out, _views: &[NodeView], _only_addr: Option<&str>) {}

/// The shard label of a node, when it belongs to a Redis Cluster.
pub fn shard_of(_shared: &Shared, _addr: &str) -> Option<String> {
    None
}

/// Keeps the set of polled nodes in step with each cluster's membership.
pub async fn discover(_shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let _ = stop.changed().await;
}
