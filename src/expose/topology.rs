//! The merged Redis Cluster topology as the exporter shows it: one
//! [`TopoNode`] per node (built by `collect::topology` from every node's
//! CLUSTER NODES view) and its families.

use crate::expose::catalogue::{Out, F};

/// One node of a Redis Cluster as the cluster sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct TopoNode {
    pub addr: String,
    pub cluster: String,
    pub node_id: String,
    /// `master` or `replica`.
    pub role: &'static str,
    /// Stable identity of the master+replicas group: the master's first
    /// slot range (`0-5460`), which a failover hands to the new master
    /// unchanged; `node-<id prefix>` for a master without slots.
    pub shard: String,
    /// Empty for masters.
    pub master_addr: String,
    pub slots: u32,
    pub fail: bool,
    pub pfail: bool,
    /// `None` when no peer has an opinion (a one-node cluster).
    pub link_up: Option<bool>,
}

/// Emits the topology families.
pub fn render(out: &mut Out, topology: &[TopoNode], only_addr: Option<&str>) {
    for n in topology {
        if only_addr.is_some_and(|a| a != n.addr) {
            continue;
        }
        let base = [("addr", n.addr.as_str()), ("cluster", n.cluster.as_str())];
        out.push(
            F::ClusterNodeInfo,
            &[
                base[0],
                base[1],
                ("node_id", n.node_id.as_str()),
                ("role", n.role),
                ("shard", n.shard.as_str()),
                ("master_addr", n.master_addr.as_str()),
            ],
            1.0,
        );
        out.push(F::ClusterNodeSlots, &base, n.slots as f64);
        out.push(F::ClusterNodeFail, &base, if n.fail { 1.0 } else { 0.0 });
        out.push(F::ClusterNodePfail, &base, if n.pfail { 1.0 } else { 0.0 });
        if let Some(up) = n.link_up {
            out.push(F::ClusterNodeLinkUp, &base, if up { 1.0 } else { 0.0 });
        }
    }
}
