//! Redis Cluster topology and discovery.
//!
//! Every cluster node's poller brings back that node's `CLUSTER NODES` view
//! (re-read on topology signals and every `cluster.refresh-interval`). This
//! module merges those views, without any extra command or connection:
//!
//! * into groups (one per Redis Cluster: views that share node ids), each
//!   with a name for the `cluster` label;
//! * into one [`TopoNode`] per cluster node: role, shard, master, slots, and
//!   the `fail`/`fail?`/link flags as the majority of its peers see them;
//! * into membership changes: nodes to start polling (found in any view)
//!   and discovered nodes to stop polling (no peer lists them any more).
//!
//! Why `CLUSTER NODES` and not `CLUSTER SHARDS`: the peer view needs each
//! node's own opinion of the others' `fail?` flags and bus links, which only
//! NODES carries, and NODES works on every version; one command serves both
//! discovery and the peer view. The shard identity SHARDS offers from 7.2 on
//! is replaced by one derived from slots that also works on 7.0 and older.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::collect::discovery::{Refusal, RefusedAddr, Trust};
use crate::collect::shard::{addr_unit, cluster_unit, owns};
pub use crate::expose::topology::TopoNode;
use crate::parse::cluster::NodeLine;
use crate::redis::target::{format_host_port, Endpoint, Target};

/// One polled node, as the merge needs it.
#[derive(Debug)]
pub struct Member<'a> {
    pub addr: &'a str,
    /// Position among the configured targets; `None` for discovered nodes.
    pub seed_order: Option<usize>,
    pub configured_name: &'a str,
    pub current_label: &'a str,
    /// INFO `role` from the last successful poll; `None` while down.
    pub role: Option<&'a str>,
    /// CLUSTER NODES view from the last successful poll.
    pub view: Option<&'a [NodeLine]>,
}

/// A Redis Cluster found in the views.
#[derive(Debug, Default)]
pub struct Group {
    pub name: String,
    /// Indexes into the members slice.
    pub members: Vec<usize>,
    pub nodes: Vec<TopoNode>,
    /// Nodes any view lists, with where to reach them.
    pub listed: Vec<(String, String, u16)>,
    /// Discovered members that no other node of the group lists any more.
    pub gone: Vec<usize>,
}

/// Merges the members' views into groups. Pure.
pub fn build(members: &[Member]) -> Vec<Group> {
    // Ids of the up members (their `myself` line), and of down members by
    // their address in someone else's view.
    let mut member_id: Vec<Option<String>> = members
        .iter()
        .map(|m| {
            m.view
                .and_then(|v| v.iter().find(|l| l.flags.myself))
                .map(|l| l.id.clone())
        })
        .collect();
    let mut addr_to_id: HashMap<String, String> = HashMap::new();
    for m in members {
        for line in m.view.unwrap_or(&[]) {
            if let Some(a) = line.addr() {
                addr_to_id.entry(a).or_insert_with(|| line.id.clone());
            }
        }
    }
    for (i, m) in members.iter().enumerate() {
        // A node that never answered (a dead seed) still belongs where the
        // others list its address.
        if member_id[i].is_none() {
            member_id[i] = addr_to_id.get(m.addr).cloned();
        }
    }

    // Union-find over node ids: ids listed in one view belong together.
    let mut uf = UnionFind::default();
    for (i, m) in members.iter().enumerate() {
        let (Some(view), Some(me)) = (m.view, &member_id[i]) else {
            continue;
        };
        let a = uf.id(me);
        for line in view.iter().filter(|l| listable(l)) {
            let b = uf.id(&line.id);
            uf.union(a, b);
        }
    }
    for id in member_id.iter().flatten() {
        uf.id(id);
    }

    let mut groups: BTreeMap<usize, Group> = BTreeMap::new();
    for (i, id) in member_id.iter().enumerate() {
        if let Some(id) = id {
            let root = uf.find_id(id);
            groups.entry(root).or_default().members.push(i);
        }
    }

    let mut out = Vec::new();
    for (_, mut g) in groups {
        g.name = group_name(members, &g.members);
        let id_to_member: HashMap<&str, usize> = g
            .members
            .iter()
            .filter_map(|&i| member_id[i].as_deref().map(|id| (id, i)))
            .collect();
        // Every node id listed by an up member of this group, with the lines
        // about it from the other nodes' views (peers) and its own line.
        let mut lines_about: BTreeMap<&str, Vec<&NodeLine>> = BTreeMap::new();
        let mut own_line: HashMap<&str, &NodeLine> = HashMap::new();
        for &i in &g.members {
            let Some(view) = members[i].view else {
                continue;
            };
            for line in view.iter().filter(|l| listable(l)) {
                if line.flags.myself {
                    own_line.insert(line.id.as_str(), line);
                } else {
                    lines_about.entry(line.id.as_str()).or_default().push(line);
                }
            }
        }
        let has_peer_views = g.members.iter().any(|&i| members[i].view.is_some());
        for &i in &g.members {
            let m = &members[i];
            let Some(id) = member_id[i].as_deref() else {
                continue;
            };
            if m.seed_order.is_none() && has_peer_views && !lines_about.contains_key(id) {
                // Listed by nobody but (maybe) itself: forgotten by the
                // cluster. Only if some other member has a view at all.
                let others = g
                    .members
                    .iter()
                    .any(|&j| j != i && members[j].view.is_some());
                if others {
                    g.gone.push(i);
                }
            }
        }

        let all_ids: Vec<&str> = {
            let mut ids: Vec<&str> = lines_about.keys().copied().collect();
            for id in own_line.keys() {
                if !lines_about.contains_key(id) {
                    ids.push(id);
                }
            }
            ids.sort_unstable();
            ids
        };
        let mut addr_of: HashMap<&str, String> = HashMap::new();
        for &id in &all_ids {
            let addr = id_to_member
                .get(id)
                .map(|&i| members[i].addr.to_string())
                .or_else(|| {
                    lines_about
                        .get(id)
                        .and_then(|ls| ls.iter().find_map(|l| l.addr()))
                })
                .or_else(|| own_line.get(id).and_then(|l| l.addr()));
            if let Some(a) = addr {
                addr_of.insert(id, a);
            }
        }

        let mut first_range: HashMap<&str, (u16, u16)> = HashMap::new();
        let mut master_of: HashMap<&str, Option<String>> = HashMap::new();
        for &id in &all_ids {
            let Some(addr) = addr_of.get(id) else {
                continue;
            };
            let peers: &[&NodeLine] = lines_about.get(id).map(Vec::as_slice).unwrap_or(&[]);
            let own = own_line.get(id).copied();
            let own_up = id_to_member.get(id).and_then(|&i| members[i].role);
            // What the node says about itself wins while it answers; else
            // the most recent opinion of its peers.
            let authority = own.or_else(|| peers.iter().max_by_key(|l| l.config_epoch).copied());
            let role = match own_up {
                Some("master") => "master",
                Some(_) => "replica",
                None => {
                    let masters = peers.iter().filter(|l| l.flags.master).count();
                    if masters * 2 >= peers.len().max(1) {
                        "master"
                    } else {
                        "replica"
                    }
                }
            };
            let master_id = if role == "replica" {
                authority.and_then(|l| l.master_id.clone())
            } else {
                None
            };
            let slots = if role == "master" {
                authority.map(|l| l.slot_count()).unwrap_or(0)
            } else {
                0
            };
            if role == "master" {
                if let Some(r) = authority.and_then(|l| l.slots.iter().min_by_key(|r| r.0)) {
                    first_range.insert(id, *r);
                }
            }
            master_of.insert(id, master_id.clone());
            let n = peers.len();
            let fails = peers.iter().filter(|l| l.flags.fail).count();
            let pfails = peers
                .iter()
                .filter(|l| l.flags.pfail || l.flags.fail)
                .count();
            let connected = peers.iter().filter(|l| l.link_connected).count();
            g.nodes.push(TopoNode {
                addr: addr.clone(),
                cluster: g.name.clone(),
                node_id: id.to_string(),
                role,
                shard: String::new(),
                master_addr: String::new(),
                slots,
                fail: n > 0 && fails * 2 > n,
                pfail: n > 0 && pfails * 2 > n,
                link_up: (n > 0).then_some(connected * 2 > n),
            });
            if let Some(line) = peers.first().copied().or(own) {
                if !line.ip.is_empty() && line.port != 0 {
                    g.listed.push((addr.clone(), line.ip.clone(), line.port));
                }
            }
        }
        let shard_of = |id: &str| match first_range.get(id) {
            Some((s, e)) => format!("{s}-{e}"),
            None => format!("node-{}", id.get(..8).unwrap_or(id)),
        };
        for n in &mut g.nodes {
            match master_of.get(n.node_id.as_str()).cloned().flatten() {
                Some(mid) => {
                    n.shard = shard_of(&mid);
                    n.master_addr = addr_of.get(mid.as_str()).cloned().unwrap_or_default();
                }
                None => n.shard = shard_of(&n.node_id),
            }
        }
        out.push(g);
    }

    // Discovered nodes that no view mentions at all (forgotten, then
    // stopped): they go from the group whose name they carry, as long as
    // that group still has someone to ask.
    for (i, m) in members.iter().enumerate() {
        if member_id[i].is_some() || m.seed_order.is_some() {
            continue;
        }
        if let Some(g) = out.iter_mut().find(|g| {
            g.name == m.current_label && g.members.iter().any(|&j| members[j].view.is_some())
        }) {
            g.gone.push(i);
        }
    }
    out
}

/// Nodes worth polling: trusted members with an address.
fn listable(l: &NodeLine) -> bool {
    !l.flags.handshake && !l.flags.noaddr && l.addr().is_some()
}

/// A configured name wins; else the first configured seed's address (stable
/// while the configuration is); else what the members are labelled now.
fn group_name(members: &[Member], idx: &[usize]) -> String {
    let mut seeds: Vec<&Member> = idx
        .iter()
        .map(|&i| &members[i])
        .filter(|m| m.seed_order.is_some())
        .collect();
    seeds.sort_by_key(|m| m.seed_order);
    if let Some(m) = seeds.iter().find(|m| !m.configured_name.is_empty()) {
        return m.configured_name.to_string();
    }
    if let Some(m) = seeds.first() {
        return m.addr.to_string();
    }
    idx.iter()
        .map(|&i| members[i].current_label)
        .find(|l| !l.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| members[idx[0]].addr.to_string())
}

#[derive(Default)]
struct UnionFind {
    index: HashMap<String, usize>,
    parent: Vec<usize>,
}

impl UnionFind {
    fn id(&mut self, key: &str) -> usize {
        if let Some(&i) = self.index.get(key) {
            return i;
        }
        let i = self.parent.len();
        self.parent.push(i);
        self.index.insert(key.to_string(), i);
        i
    }
    fn find(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }
    fn find_id(&mut self, key: &str) -> usize {
        let i = self.id(key);
        self.find(i)
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[ra.max(rb)] = ra.min(rb);
        }
    }
}

/// The registry of polled nodes as discovery needs it, implemented by
/// `daemon::Shared`: discovery decides which nodes to poll, the registry
/// starts and stops their pollers. A trait, so that collection does not
/// reach up into the daemon.
pub trait Fleet: Send + Sync {
    /// Every polled node, in address order.
    fn nodes(&self) -> Vec<Arc<crate::expose::state::NodeState>>;
    fn node_count(&self) -> usize;
    fn knows(&self, addr: &str) -> bool;
    /// Starts polling `target` unless its address is polled already.
    fn add_node(&self, target: Target) -> bool;
    fn remove_node(&self, addr: &str) -> bool;
    fn set_topology(&self, topology: Vec<TopoNode>);
    /// Notified by pollers when a node's inputs to discovery change.
    fn discovery_signal(&self) -> Arc<tokio::sync::Notify>;
    fn settings(&self) -> &crate::config::DiscoverySettings;
    /// The configured targets (the seeds).
    fn seeds(&self) -> &[Target];
    fn refused(&self) -> &crate::collect::discovery::Refused;
    /// Addresses learnt from Sentinel and refused (collect::sentinel); apart
    /// from cluster discovery's, as each pass replaces its own list.
    fn sentinel_refused(&self) -> &crate::collect::discovery::Refused;
    /// Publishes the latest Sentinel state for the scrapes.
    fn set_sentinels(&self, snapshot: crate::expose::sentinel::SentinelSnapshot);
}

/// Keeps the set of polled nodes and the topology snapshot in step with each
/// cluster's views until `stop` turns true.
pub async fn discover(shared: Arc<dyn Fleet>, mut stop: watch::Receiver<bool>) {
    let mut last: Option<Inputs> = None;
    let wake = shared.discovery_signal();
    // When a pass asked to run again (a node waiting to join or leave the
    // share).
    let mut due: Option<tokio::time::Instant> = None;
    let mut gains = ShardGains::default();
    loop {
        // Pollers signal a change of a node's view, role or up/down state
        // (a permit is stored if we are busy, so none is lost); the delay
        // lets a burst of signals (a failover seen by every node) coalesce.
        let timer = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let forced = tokio::select! {
            _ = wake.notified() => false,
            _ = timer => true,
            _ = stop.changed() => return,
        };
        tokio::select! {
            _ = tokio::time::sleep(DISCOVERY_DEBOUNCE) => {}
            _ = stop.changed() => return,
        }
        // The merge is a pure function of these inputs: skip it when none
        // moved (unless a pass asked for a re-check).
        let inputs = Inputs::of(&*shared);
        if !forced && last.as_ref().is_some_and(|l| l.same_as(&inputs)) {
            continue;
        }
        due = refresh(&*shared, &mut gains).map(|d| tokio::time::Instant::now() + d);
        last = Some(inputs);
    }
}

/// Wait after a discovery signal before merging: long enough for the other
/// nodes of a cluster to report the same change, short against a poll.
const DISCOVERY_DEBOUNCE: Duration = Duration::from_millis(50);

/// 0 down, 1 master, 2 replica, 3 anything else: what discovery needs of a
/// node's INFO role.
pub fn role_code(obs: Option<&crate::expose::state::Observation>) -> u8 {
    match obs.map(|o| o.info.get("role")) {
        None => 0,
        Some(Some("master")) => 1,
        Some(Some("slave")) => 2,
        Some(_) => 3,
    }
}

/// What a discovery pass reads from every node: the node, its last CLUSTER
/// NODES view and whether it is up with a role. Holding the Arcs (not their
/// addresses) means a freed view's address cannot be reused and mistaken
/// for the one compared.
struct Inputs(Vec<Input>);

/// (node, its CLUSTER NODES view, [`role_code`])
type Input = (
    Arc<crate::expose::state::NodeState>,
    Option<Arc<Vec<NodeLine>>>,
    u8,
);

impl Inputs {
    fn of(shared: &dyn Fleet) -> Inputs {
        Inputs(
            shared
                .nodes()
                .into_iter()
                .map(|n| {
                    let st = n.status();
                    let view = st.last.as_ref().and_then(|o| o.cluster_nodes.clone());
                    let role = role_code(st.last.as_deref());
                    drop(st);
                    (n, view, role)
                })
                .collect(),
        )
    }

    fn same_as(&self, other: &Inputs) -> bool {
        self.0.len() == other.0.len()
            && self.0.iter().zip(&other.0).all(|(a, b)| {
                Arc::ptr_eq(&a.0, &b.0)
                    && a.2 == b.2
                    && match (&a.1, &b.1) {
                        (None, None) => true,
                        (Some(x), Some(y)) => Arc::ptr_eq(x, y),
                        _ => false,
                    }
            })
    }
}

/// Discovered addresses named one by one in the "polling discovered
/// cluster nodes" line of a pass; the rest only counted.
const LOG_ADDED_ADDRS: usize = 5;

/// The trust check for this pass: `cluster.allowed-networks` when set,
/// else the networks of the configured seeds' addresses (an IP literal, or
/// the address its last connection reached).
fn trust_of(shared: &dyn Fleet, nodes: &[Arc<crate::expose::state::NodeState>]) -> Trust {
    if let Some(networks) = &shared.settings().allowed_networks {
        return Trust::explicit(networks);
    }
    // From the configuration, not the registry: a sharded replica drops
    // the standalone targets another replica owns, and must still trust
    // exactly what every other replica trusts.
    let seeds = shared.seeds().iter().filter_map(|t| match &t.endpoint {
        Endpoint::Tcp { host, .. } => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok()
            .or_else(|| {
                nodes
                    .iter()
                    .find(|n| n.target.addr == t.addr)
                    .and_then(|n| n.status().peer_ip)
            }),
        Endpoint::Unix { .. } => None,
    });
    Trust::from_seeds(seeds.collect::<Vec<_>>())
}

/// Decides which polled nodes this replica owns (`shard.index` of
/// `shard.count`, collect/shard.rs) and gives up the others; returns each
/// cluster node's unit of sharding by address, for the nodes still to add.
///
/// A node the merged topology places has its group's unit (cluster name and
/// shard: a master with its replicas, unchanged by a failover); any other
/// node (standalone, or a seed that never answered) its address. A node
/// not owned goes: a discovered one stops being polled, a configured
/// standalone one too (its unit, its address, never changes). A configured
/// cluster node not owned stays as a scout: a small INFO and CLUSTER
/// INFO/NODES per poll, never shown, so that this replica keeps seeing the
/// whole topology even when it owns no node of that cluster. The nodes it
/// owns feed discovery too.
fn assign_shards(
    shared: &dyn Fleet,
    groups: &[Group],
    nodes: &[Arc<crate::expose::state::NodeState>],
    gains: &mut ShardGains,
) -> Ownership {
    let settings = shared.settings();
    let shard = settings.shard;
    let mut own = Ownership {
        enabled: shard.enabled(),
        unit_of: HashMap::new(),
        shown: HashSet::new(),
        to_add: HashSet::new(),
        recheck: None,
    };
    for g in groups {
        for n in &g.nodes {
            own.unit_of
                .insert(n.addr.clone(), cluster_unit(&g.name, &n.shard));
        }
    }
    if !own.enabled {
        return own;
    }
    let now = Instant::now();
    let mut next: Option<Duration> = None;
    // Units this replica owns, confirmed: owned in every pass for
    // `shard_confirm`. A unit that is this replica's for a moment only (a
    // view read in the middle of a failover) is neither added nor shown.
    let mut confirmed = |addr: &str, next: &mut Option<Duration>| -> bool {
        let since = *gains.0.entry(addr.to_string()).or_insert(now);
        let waited = now.saturating_duration_since(since);
        if waited >= settings.shard_confirm {
            return true;
        }
        sooner(next, settings.shard_confirm - waited);
        false
    };
    let mut owned_now: HashSet<String> = HashSet::new();
    for (addr, unit) in &own.unit_of {
        if owns(&shard, unit) {
            owned_now.insert(addr.clone());
        }
    }
    for node in nodes {
        let addr = &node.target.addr;
        let unit = match own.unit_of.get(addr) {
            Some(u) => u.clone(),
            // Not placed before its first poll has ended (this pass may
            // run on another node's news): it may be a cluster node whose
            // view is about to place it. Undecided, it stays a scout.
            None if !node.status().polled_once => continue,
            None => addr_unit(addr),
        };
        if owns(&shard, &unit) {
            owned_now.insert(addr.clone());
            node.status().unowned_since = None;
            if !node.owned() && !confirmed(addr, &mut next) {
                continue;
            }
            own.shown.insert(addr.clone());
            if !node.set_owned(true) {
                tracing::info!(addr = %addr, unit = %unit, shard.index = shard.index, shard.count = shard.count, "node is in this replica's share");
            }
            continue;
        }
        if node.owned() {
            // Owned until now: give it up only once the new owner has had
            // time to take it, and the views that say so have all been
            // re-read (a replica's own view of a node it polls is fresher
            // than the peers' views the other replicas go by; acting on
            // the first would hand the node back and forth).
            let waited = {
                let mut st = node.status();
                now.saturating_duration_since(*st.unowned_since.get_or_insert(now))
            };
            if waited < settings.shard_settle {
                own.shown.insert(addr.clone());
                sooner(&mut next, settings.shard_settle - waited);
                continue;
            }
            node.set_owned(false);
            tracing::info!(addr = %addr, unit = %unit, shard.index = shard.index, shard.count = shard.count, "node left this replica's share");
        }
        let (up, cluster_enabled) = {
            let st = node.status();
            (st.last.is_some(), st.cluster_enabled)
        };
        if node.target.discovered || (up && !cluster_enabled) {
            shared.remove_node(addr);
        }
    }
    // Owned nodes not polled yet: added once confirmed.
    let known: HashSet<&str> = nodes.iter().map(|n| n.target.addr.as_str()).collect();
    for addr in &owned_now {
        if !known.contains(addr.as_str()) && confirmed(addr, &mut next) {
            own.to_add.insert(addr.clone());
        }
    }
    // A unit that stopped being ours starts its confirmation afresh.
    gains.0.retain(|a, _| owned_now.contains(a));
    own.recheck = next;
    own
}

/// Keeps the earlier of `next` and `d` in `next`.
fn sooner(next: &mut Option<Duration>, d: Duration) {
    *next = Some(next.map_or(d, |n| n.min(d)));
}

/// Since when each address not (yet) shown here has been found in this
/// replica's share: kept by the discovery loop between passes.
#[derive(Debug, Default)]
pub struct ShardGains(HashMap<String, Instant>);

/// What [`assign_shards`] decided in one pass.
struct Ownership {
    enabled: bool,
    /// Each cluster node's unit of sharding, by address.
    unit_of: HashMap<String, String>,
    /// Polled nodes shown after this pass.
    shown: HashSet<String>,
    /// Listed nodes to start polling (owned, confirmed).
    to_add: HashSet<String>,
    /// When a pass is due again (a node waiting to be confirmed or given
    /// up).
    recheck: Option<Duration>,
}

impl Ownership {
    /// Whether a listed address not polled yet may be added.
    fn may_add(&self, addr: &str) -> bool {
        !self.enabled || self.to_add.contains(addr)
    }
    /// Whether a node's topology series belong on this replica's page.
    fn shows(&self, addr: &str, added: &[&str]) -> bool {
        !self.enabled || self.shown.contains(addr) || added.contains(&addr)
    }
}
/// One discovery pass. Returns when the next pass is due without any
/// node's news: a node leaving this replica's share waits out
/// `shard_settle` (see [`assign_shards`]).
pub fn refresh(shared: &dyn Fleet, gains: &mut ShardGains) -> Option<Duration> {
    // Nodes found through Sentinel are collect::sentinel's: never merged,
    // relabelled or removed here.
    let nodes: Vec<_> = shared
        .nodes()
        .into_iter()
        .filter(|n| !n.target.from_sentinel)
        .collect();
    let seeds: HashMap<&str, usize> = shared
        .seeds()
        .iter()
        .enumerate()
        .map(|(i, t)| (t.addr.as_str(), i))
        .collect();
    // Copy what the merge needs out of the locks.
    type Copied = (
        Arc<crate::expose::state::NodeState>,
        Option<Arc<crate::expose::state::Observation>>,
        Arc<str>,
    );
    let snapshot: Vec<Copied> = nodes
        .iter()
        .map(|n| {
            let st = n.status();
            (n.clone(), st.last.clone(), st.cluster.clone())
        })
        .collect();
    let members: Vec<Member> = snapshot
        .iter()
        .map(|(n, last, label)| Member {
            addr: &n.target.addr,
            seed_order: if n.target.discovered {
                None
            } else {
                seeds.get(n.target.addr.as_str()).copied()
            },
            configured_name: &n.target.cluster,
            current_label: label,
            role: last.as_ref().and_then(|o| o.info.get("role")),
            view: last
                .as_ref()
                .and_then(|o| o.cluster_nodes.as_deref().map(Vec::as_slice)),
        })
        .collect();
    let groups = build(&members);
    let settings = &shared.settings();
    let ownership = assign_shards(shared, &groups, &nodes, gains);
    let trust = trust_of(shared, &nodes);
    let mut refused: Vec<RefusedAddr> = Vec::new();
    let mut total = shared.node_count();
    tracing::trace!(
        members = members.len(),
        groups = groups.len(),
        "cluster views merged"
    );

    let mut topology = Vec::new();
    for g in &groups {
        for &i in &g.members {
            let node = &snapshot[i].0;
            let mut st = node.status();
            if *st.cluster != *g.name {
                tracing::info!(addr = %node.target.addr, cluster = %g.name, "node belongs to cluster");
                st.cluster = Arc::from(g.name.as_str());
                // Re-label the pre-rendered series now, not at the next poll.
                if let Some(obs) = st.last.clone() {
                    let text = crate::expose::render_node(&obs, &node.target.addr, &g.name);
                    st.rendered = Some(Arc::new(text));
                }
            }
        }
        // Credentials and settings for new nodes come from a member of the
        // same cluster (all nodes of a cluster share them).
        let template: Option<&Target> = g
            .members
            .iter()
            .map(|&i| &snapshot[i].0.target)
            .min_by_key(|t| {
                (
                    t.discovered,
                    seeds.get(t.addr.as_str()).copied().unwrap_or(usize::MAX),
                )
            });
        let mut in_cluster = g.members.len();
        let mut added: Vec<&str> = Vec::new();
        let mut not_polled: HashSet<&str> = HashSet::new();
        for (addr, ip, port) in &g.listed {
            if shared.knows(addr) {
                continue;
            }
            if !ownership.may_add(addr) {
                // Another replica's share (or ours, not confirmed yet):
                // never connected to from here.
                not_polled.insert(addr);
                continue;
            }
            if !settings.enabled {
                // cluster.discover = false: the seeds only.
                not_polled.insert(addr);
                continue;
            }
            // The trust check comes first: nothing, not even a connect, goes
            // to an address that fails it.
            let refusal = match trust.check(ip) {
                Err(r) => Some(r),
                Ok(())
                    if in_cluster >= settings.cluster_max_nodes || total >= settings.max_nodes =>
                {
                    Some(Refusal::Cap)
                }
                Ok(()) => None,
            };
            if let Some(reason) = refusal {
                not_polled.insert(addr);
                refused.push(RefusedAddr {
                    addr: addr.clone(),
                    cluster: g.name.clone(),
                    reason,
                });
                continue;
            }
            let Some(template) = template else { continue };
            let mut t = template.clone();
            t.endpoint = Endpoint::Tcp {
                host: ip.clone(),
                port: *port,
            };
            t.addr = format_host_port(ip, *port);
            t.db = 0;
            if let Some(tls) = &mut t.tls {
                if !tls.name_overridden {
                    tls.server_name = ip.clone();
                }
            }
            t.cluster = g.name.clone();
            t.discovered = true;
            if t.addr == *addr && shared.add_node(t) {
                in_cluster += 1;
                total += 1;
                added.push(addr);
            }
        }
        if !added.is_empty() {
            // One line per pass, with the first few addresses: a 1000-node
            // cluster found at once is one line, not a thousand.
            let first: Vec<&str> = added.iter().take(LOG_ADDED_ADDRS).copied().collect();
            tracing::info!(cluster = %g.name, count = added.len(), first = ?first, "polling discovered cluster nodes");
        }
        for &i in &g.gone {
            shared.remove_node(&snapshot[i].0.target.addr);
        }
        // Addresses not polled stay out of the topology families too: an
        // address a node made up must not appear in /metrics. Neither do
        // the nodes another replica owns (a scout is polled, not owned).
        topology.extend(
            g.nodes
                .iter()
                .filter(|n| !g.gone.iter().any(|&i| snapshot[i].0.target.addr == n.addr))
                .filter(|n| !not_polled.contains(n.addr.as_str()))
                .filter(|n| ownership.shows(&n.addr, &added))
                .cloned(),
        );
    }
    let names: Vec<String> = groups.iter().map(|g| g.name.clone()).collect();
    shared.refused().record(&names, refused);
    shared.set_topology(topology);
    ownership.recheck
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::cluster::parse_cluster_nodes;

    fn fixture(name: &str) -> Vec<NodeLine> {
        let path = format!(
            "{}/tests/fixtures/cluster/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        parse_cluster_nodes(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// The address of the node that produced `view`.
    fn myself_addr(view: &[NodeLine]) -> String {
        view.iter()
            .find(|l| l.flags.myself)
            .unwrap()
            .addr()
            .unwrap()
    }

    fn member<'a>(
        addr: &'a str,
        seed: Option<usize>,
        role: Option<&'a str>,
        view: Option<&'a [NodeLine]>,
    ) -> Member<'a> {
        Member {
            addr,
            seed_order: seed,
            configured_name: "",
            current_label: "",
            role,
            view,
        }
    }

    #[test]
    fn healthy_cluster_from_one_seed() {
        let view = fixture("redis-7.0.15-cluster-nodes-ok.txt");
        let me = myself_addr(&view);
        let members = [member(&me, Some(0), Some("master"), Some(&view))];
        let groups = build(&members);
        assert_eq!(groups.len(), 1);
        let g = &groups[0];
        assert_eq!(
            g.name, me,
            "an unnamed cluster is named after its first seed"
        );
        assert_eq!(g.nodes.len(), 6);
        assert_eq!(g.listed.len(), 6);
        let masters: Vec<_> = g.nodes.iter().filter(|n| n.role == "master").collect();
        assert_eq!(masters.len(), 3);
        assert_eq!(masters.iter().map(|n| n.slots).sum::<u32>(), 16384);
        // Every replica shares its master's shard and names its master.
        for r in g.nodes.iter().filter(|n| n.role == "replica") {
            let m = g.nodes.iter().find(|n| n.addr == r.master_addr).unwrap();
            assert_eq!(m.shard, r.shard);
            assert_eq!(m.role, "master");
        }
        let mut shards: Vec<_> = g.nodes.iter().map(|n| n.shard.clone()).collect();
        shards.sort();
        shards.dedup();
        assert_eq!(shards.len(), 3, "{shards:?}");
        assert!(g.nodes.iter().all(|n| !n.fail && !n.pfail));
    }

    #[test]
    fn failover_keeps_the_shard_and_flags_the_dead_master() {
        let before = fixture("redis-7.0.15-cluster-nodes-ok.txt");
        let after = fixture("redis-7.0.15-cluster-nodes-failover-done.txt");
        let me = myself_addr(&after);
        let g0 = &build(&[member(&me, Some(0), Some("master"), Some(&before))])[0];
        let g1 = &build(&[member(&me, Some(0), Some("master"), Some(&after))])[0];
        let failed = g1
            .nodes
            .iter()
            .find(|n| n.fail)
            .expect("the killed master is flagged fail");
        assert_eq!(failed.slots, 0);
        let old = g0.nodes.iter().find(|n| n.addr == failed.addr).unwrap();
        // The shard the dead master served now has the promoted replica as
        // its master, under the same shard label.
        let promoted = g1
            .nodes
            .iter()
            .find(|n| n.shard == old.shard && n.role == "master")
            .unwrap();
        assert_ne!(promoted.addr, old.addr);
        assert!(promoted.slots > 0);
    }

    #[test]
    fn pfail_needs_a_majority_of_peers() {
        let pfail = fixture("redis-7.0.15-cluster-nodes-pfail.txt");
        let ok = fixture("redis-7.0.15-cluster-nodes-ok.txt");
        let suspect = pfail.iter().find(|l| l.flags.pfail).unwrap().id.clone();
        let me = myself_addr(&pfail);
        // One peer suspects it: a majority of one.
        let g = &build(&[member(&me, Some(0), Some("master"), Some(&pfail))])[0];
        assert!(g.nodes.iter().find(|n| n.node_id == suspect).unwrap().pfail);
        // Two more peers that see it fine outvote the first.
        let peer_view = |addr_of: &str| -> Vec<NodeLine> {
            ok.iter()
                .map(|l| {
                    let mut l = l.clone();
                    l.flags.myself = l.addr().as_deref() == Some(addr_of);
                    l
                })
                .collect()
        };
        let others: Vec<String> = ok
            .iter()
            .filter_map(|l| l.addr())
            .filter(|a| *a != me)
            .take(2)
            .collect();
        let v1 = peer_view(&others[0]);
        let v2 = peer_view(&others[1]);
        let members = [
            member(&me, Some(0), Some("master"), Some(&pfail)),
            member(&others[0], None, Some("master"), Some(&v1)),
            member(&others[1], None, Some("master"), Some(&v2)),
        ];
        let g = &build(&members)[0];
        assert!(!g.nodes.iter().find(|n| n.node_id == suspect).unwrap().pfail);
    }

    #[test]
    fn handshake_nodes_are_not_polled_and_forgotten_nodes_go() {
        let view = fixture("redis-7.0.15-cluster-nodes-migrating-handshake-hostnames.txt");
        let me = myself_addr(&view);
        let g = &build(&[member(&me, Some(0), Some("master"), Some(&view))])[0];
        let handshake: Vec<_> = view.iter().filter(|l| l.flags.handshake).collect();
        assert!(!handshake.is_empty());
        for h in handshake {
            assert!(g.nodes.iter().all(|n| n.node_id != h.id));
        }
        // A discovered node that only lists itself (forgotten by the others).
        let ok = fixture("redis-7.0.15-cluster-nodes-ok.txt");
        let me_ok = myself_addr(&ok);
        let lonely_line = NodeLine {
            id: "f".repeat(40),
            ip: "127.0.0.1".into(),
            port: 1,
            flags: crate::parse::cluster::NodeFlags {
                myself: true,
                master: true,
                ..Default::default()
            },
            ..ok[0].clone()
        };
        let mut lonely_view = ok.clone();
        for l in &mut lonely_view {
            l.flags.myself = false;
        }
        lonely_view.push(lonely_line);
        let members = [
            member(&me_ok, Some(0), Some("master"), Some(&ok)),
            member("127.0.0.1:1", None, Some("master"), Some(&lonely_view)),
        ];
        let g = &build(&members)[0];
        assert_eq!(g.gone, vec![1]);
    }

    #[test]
    fn two_clusters_stay_apart_and_configured_names_win() {
        let a = fixture("redis-7.0.15-cluster-nodes-ok.txt");
        let me = myself_addr(&a);
        let mut b = a.clone();
        for l in &mut b {
            l.id = l.id.replace(|c: char| c.is_ascii_digit(), "x");
            l.master_id = l
                .master_id
                .as_ref()
                .map(|m| m.replace(|c: char| c.is_ascii_digit(), "x"));
            l.port += 1000;
        }
        let me_b = myself_addr(&b);
        let mut m_b = member(&me_b, Some(1), Some("master"), Some(&b));
        m_b.configured_name = "sessions";
        let groups = build(&[member(&me, Some(0), Some("master"), Some(&a)), m_b]);
        assert_eq!(groups.len(), 2);
        let names: Vec<_> = groups.iter().map(|g| g.name.as_str()).collect();
        assert!(
            names.contains(&"sessions") && names.contains(&me.as_str()),
            "{names:?}"
        );
    }
}
