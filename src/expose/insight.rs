//! Cache insight as the `/insight` page sees it: per cluster, its nodes'
//! last keyspace reports, eviction-policy verdicts and shard balance
//! (docs/insight.md). Built from node snapshots by the daemon; rendered to
//! HTML by web/insight.rs.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::Reason;
use crate::expose::catalogue::{Out, F};
use crate::expose::state::{InsightStatus, NodeState};
use crate::expose::topology::TopoNode;
use crate::signals::keyspace::{evictable_ratio, policy_verdict, KeyspaceReport, PolicyVerdict};

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

/// The insight families of one node. `policy` is its `maxmemory_policy`
/// from the last poll, when known.
pub fn render(out: &mut Out, labels: [(&str, &str); 2], st: &InsightStatus, policy: Option<&str>) {
    if !st.active && st.report.is_none() {
        return;
    }
    out.push(
        F::InsightEnabled,
        &labels,
        if st.active { 1.0 } else { 0.0 },
    );
    out.push(F::InsightBudget, &labels, st.budget_seconds);
    out.push(F::InsightRedisSeconds, &labels, st.charged_seconds);
    out.push(F::InsightScannedKeys, &labels, st.scanned_keys as f64);
    out.push(F::InsightPasses, &labels, st.passes as f64);
    for reason in Reason::ALL {
        let n = st.failures.get(&reason).copied().unwrap_or(0);
        let l = [labels[0], labels[1], ("reason", reason.as_str())];
        out.push(F::InsightPassFailures, &l, n as f64);
    }
    if let Some(p) = st.progress {
        out.push(F::InsightProgress, &labels, p);
    }
    let Some(r) = &st.report else { return };
    out.push(F::InsightLastPassEnd, &labels, r.ended_unix);
    out.push(F::InsightLastPassDuration, &labels, r.duration_seconds);
    out.push(F::InsightKeys, &labels, r.keys as f64);
    out.push(F::InsightKeysWithTtl, &labels, r.keys_with_ttl as f64);
    out.push(F::InsightMemory, &labels, r.memory_bytes as f64);
    if let Some(policy) = policy {
        if let Some(ratio) = evictable_ratio(policy, r.keys, r.keys_with_ttl) {
            let l = [labels[0], labels[1], ("policy", policy)];
            out.push(F::InsightEvictable, &l, ratio);
        }
    }
    for ns in &r.namespaces {
        let l = [labels[0], labels[1], ("namespace", ns.pattern.as_str())];
        out.push(F::NsKeys, &l, ns.keys as f64);
        out.push(F::NsKeysWithTtl, &l, ns.keys_with_ttl as f64);
        out.push(F::NsMemory, &l, ns.memory_bytes as f64);
        for (q, secs) in &ns.ttl_quantiles {
            let q = q.to_string();
            let lq = [l[0], l[1], l[2], ("quantile", q.as_str())];
            out.push(F::NsTtl, &lq, *secs);
        }
        for (kind, n) in &ns.types {
            let lt = [l[0], l[1], l[2], ("type", kind.as_str())];
            out.push(F::NsTypeKeys, &lt, *n as f64);
        }
        for (i, (bytes, name)) in ns.largest.iter().enumerate() {
            let rank = (i + 1).to_string();
            match name {
                Some(key) => {
                    let lk = [
                        l[0],
                        l[1],
                        l[2],
                        ("rank", rank.as_str()),
                        ("key", key.as_str()),
                    ];
                    out.push(F::NsLargest, &lk, *bytes as f64);
                }
                None => {
                    let lr = [l[0], l[1], l[2], ("rank", rank.as_str())];
                    out.push(F::NsLargest, &lr, *bytes as f64);
                }
            }
        }
    }
}

/// The `/insight` page's data from the nodes shown and the cluster
/// topology; `enabled` when any node may be analysed.
pub fn view(nodes: &[Arc<NodeState>], topology: &[TopoNode], enabled: bool) -> InsightView {
    let mut clusters: BTreeMap<String, ClusterView> = BTreeMap::new();
    for n in nodes {
        let (cluster, obs) = {
            let st = n.status();
            (st.cluster.to_string(), st.last.clone())
        };
        let ins = n.insight().clone();
        let info = obs.as_ref().map(|o| &o.info);
        let field = |k: &str| info.and_then(|i| i.get(k));
        let num = |k: &str| info.and_then(|i| i.u64(k)).unwrap_or(0);
        let policy = field("maxmemory_policy").unwrap_or("").to_string();
        let (maxmemory, used_memory) = (num("maxmemory"), num("used_memory"));
        let keys = info.map_or(0, |i| {
            i.keyspace
                .iter()
                .fold(0u64, |n, d| n.saturating_add(d.keys))
        });
        let role = match field("role") {
            Some("master") => "master",
            Some("slave") => "replica",
            _ => "unknown",
        };
        let ttl_share = ins.report.as_ref().map(|r| r.ttl_share());
        let c = clusters
            .entry(cluster.clone())
            .or_insert_with(|| ClusterView {
                name: cluster.clone(),
                ..ClusterView::default()
            });
        if role == "master" {
            if let Some(t) = topology
                .iter()
                .find(|t| t.addr == n.target.addr && t.role == "master" && t.slots > 0)
            {
                c.shards.push(ShardView {
                    shard: t.shard.clone(),
                    master: n.target.addr.clone(),
                    keys,
                    memory_bytes: used_memory,
                });
            }
        }
        c.nodes.push(NodeView {
            addr: n.target.addr.clone(),
            role: role.to_string(),
            up: obs.is_some(),
            verdict: policy_verdict(&policy, maxmemory, used_memory, ttl_share),
            policy,
            maxmemory,
            used_memory,
            keys,
            analysed: ins.active,
            progress: ins.progress,
            report: ins.report.clone(),
            last_failure: ins.last_failure.map(Reason::as_str),
        });
    }
    InsightView {
        enabled,
        generated_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
        clusters: clusters.into_values().collect(),
    }
}
