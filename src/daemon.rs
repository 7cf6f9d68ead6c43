//! Wiring: the node registry, the pollers, the HTTP server and shutdown.
//!
//! [`run`] takes an already-bound listener and a shutdown future, so tests
//! run the whole daemon in-process on port 0.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::collect::poller::{self, PollContext};
use crate::collect::topology::Fleet;
use crate::config::Config;
use crate::expose::state::NodeState;
use crate::expose::{self, RenderContext};
use crate::redis::target::Target;

/// How long shutdown waits for pollers to finish their current poll.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

struct NodeEntry {
    state: Arc<NodeState>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// State shared by the pollers, the discovery loop and the HTTP handlers.
pub struct Shared {
    pub config: Config,
    pub clock: Clock,
    ctx: Arc<PollContext>,
    nodes: RwLock<BTreeMap<String, NodeEntry>>,
    /// The latest merged Redis Cluster topology (see topology.rs).
    topology: RwLock<Arc<Vec<crate::expose::topology::TopoNode>>>,
    /// Discovered addresses not polled, and their counters (discovery.rs).
    pub refused: crate::collect::discovery::Refused,
    /// Addresses learnt from Sentinel and refused (collect/sentinel.rs).
    pub sentinel_refused: crate::collect::discovery::Refused,
    /// The latest Sentinel state (collect/sentinel.rs).
    sentinels: RwLock<Arc<crate::expose::sentinel::SentinelSnapshot>>,
    /// process_* series (memory, fds, CPU) for the soak and for operators.
    process: crate::expose::process::Reader,
    /// `--web.config.file`, re-read on change and on SIGHUP.
    web: Option<Arc<crate::web::config::WebConfigWatcher>>,
    /// Used without a web config file: plain HTTP, no auth.
    web_default: Arc<crate::web::config::WebConfig>,
    /// The runtimes the daemon's tasks run on (polls, HTTP), for
    /// `redis_vitals_tasks`.
    runtimes: std::sync::Mutex<Vec<tokio::runtime::Handle>>,
    /// Nodes `/scrape` added (scrape.allowed-networks), with their last
    /// scrape: dropped after scrape.target-idle-timeout without one.
    adopted: std::sync::Mutex<BTreeMap<String, std::time::Instant>>,
}

/// Prefix of the labels `/sd` gives each target (see
/// [`Shared::service_discovery`]).
pub const SD_META: &str = "__meta_redis_vitals_";

impl Shared {
    fn new(config: Config) -> Arc<Shared> {
        let clock = Clock::new();
        let ctx = Arc::new(PollContext {
            poll: config.poll.clone(),
            hit_window: config.hit_ratio_window.as_secs_f64(),
            lag_history: config.lag_history.as_secs_f64(),
            permits: Arc::new(Semaphore::new(config.poll.concurrency)),
            connects: poller::ConnectBudgets::default(),
            down_log: Arc::new(poller::LogLimit::default()),
            clock,
            cluster_refresh: config.cluster_refresh,
            topology_gen: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            discovery: Arc::new(tokio::sync::Notify::new()),
            schedule: crate::collect::schedule::Schedule::new(
                config.poll.interval,
                config.poll.group_size,
            ),
        });
        let web = config.web_config.as_ref().map(|(path, initial)| {
            Arc::new(crate::web::config::WebConfigWatcher::new(
                path.clone(),
                initial.clone(),
            ))
        });
        Arc::new(Shared {
            config,
            clock,
            ctx,
            nodes: RwLock::new(BTreeMap::new()),
            topology: RwLock::new(Arc::new(Vec::new())),
            refused: crate::collect::discovery::Refused::default(),
            sentinel_refused: crate::collect::discovery::Refused::default(),
            sentinels: RwLock::new(Arc::default()),
            process: crate::expose::process::Reader::new(),
            web,
            web_default: Arc::new(crate::web::config::WebConfig::default()),
            runtimes: std::sync::Mutex::new(Vec::new()),
            adopted: std::sync::Mutex::new(BTreeMap::new()),
        })
    }

    /// Starts polling `target` unless a node with its address is polled
    /// already. Returns whether it was added.
    pub fn add_node(&self, target: Target) -> bool {
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        if nodes.contains_key(&target.addr) {
            return false;
        }
        // The daemon-wide bound (`poll.max-nodes`); discovery checks it
        // first to count and log the refusal, this is the backstop.
        if nodes.len() >= self.config.discovery.max_nodes {
            return false;
        }
        // Discovery logs a summary of what it adds (thousands of lines for
        // a large cluster otherwise).
        if target.discovered {
            tracing::debug!(addr = %target.addr, cluster = %target.cluster, "polling discovered node");
        } else {
            tracing::info!(addr = %target.addr, cluster = %target.cluster, "polling node");
        }
        if target.tls.as_ref().is_some_and(|t| t.insecure) && !target.discovered {
            tracing::warn!(addr = %target.addr, "TLS certificate verification is disabled for this node (tls-insecure-skip-verify)");
        }
        let state = Arc::new(NodeState::new(target));
        // Sharded: a configured node is a scout (polled for the topology,
        // never shown) until discovery finds out whose share it is; a
        // discovered node is added only by the replica that owns it.
        if self.config.discovery.shard.enabled() && !state.target.discovered {
            state.set_owned(false);
        }
        let (stop, stop_rx) = watch::channel(false);
        let poll = poller::run(state.clone(), self.ctx.clone(), stop_rx);
        // On the daemon's main runtime (the first registered), also when
        // called from the HTTP thread (a /scrape that adds a node).
        let main = self
            .runtimes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first()
            .cloned();
        let task = match main {
            Some(h) => h.spawn(poll),
            None => tokio::spawn(poll),
        };
        nodes.insert(state.target.addr.clone(), NodeEntry { state, stop, task });
        true
    }

    /// Stops polling a node; its series leave the output at once.
    pub fn remove_node(&self, addr: &str) -> bool {
        let entry = self
            .nodes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(addr);
        match entry {
            Some(e) => {
                tracing::info!(addr = %addr, "no longer polling node");
                let _ = e.stop.send(true);
                e.task.abort();
                true
            }
            None => false,
        }
    }

    /// How many nodes are polled.
    pub fn node_count(&self) -> usize {
        self.nodes.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Every node, in address order.
    pub fn nodes(&self) -> Vec<Arc<NodeState>> {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        nodes.values().map(|e| e.state.clone()).collect()
    }

    /// The nodes this replica shows (`/metrics`, `/scrape`, `/sd`, the
    /// landing page): all of them without sharding; with it, those of its
    /// share, not the scouts kept for discovery.
    pub fn shown(&self) -> Vec<Arc<NodeState>> {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        nodes
            .values()
            .filter(|e| e.state.owned())
            .map(|e| e.state.clone())
            .collect()
    }

    /// Whether `addr` is polled and shown here (`/scrape?target=`).
    pub fn shows(&self, addr: &str) -> bool {
        self.nodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(addr)
            .is_some_and(|e| e.state.owned())
    }

    /// The web config for the next connection or request.
    pub fn web(&self) -> Arc<crate::web::config::WebConfig> {
        match &self.web {
            Some(w) => w.current(),
            None => self.web_default.clone(),
        }
    }

    pub fn set_topology(&self, t: Vec<crate::expose::topology::TopoNode>) {
        *self.topology.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(t);
    }

    pub fn topology(&self) -> Arc<Vec<crate::expose::topology::TopoNode>> {
        self.topology
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_sentinels(&self, s: crate::expose::sentinel::SentinelSnapshot) {
        *self.sentinels.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(s);
    }

    /// The latest Sentinel state (empty without `sentinel.addr`).
    pub fn sentinels(&self) -> Arc<crate::expose::sentinel::SentinelSnapshot> {
        self.sentinels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The shard label of a cluster node.
    pub fn shard_of(&self, addr: &str) -> Option<String> {
        self.topology()
            .iter()
            .find(|n| n.addr == addr)
            .map(|n| n.shard.clone())
    }

    /// Pollers notify this when a node's inputs to discovery change.
    pub fn discovery_signal(&self) -> Arc<tokio::sync::Notify> {
        self.ctx.discovery.clone()
    }

    pub fn knows(&self, addr: &str) -> bool {
        self.nodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(addr)
    }

    /// Whether any node may be analysed: `insight.enabled`, or a target
    /// that enables it for itself (and the nodes found from it).
    pub fn insight_wanted(&self) -> bool {
        self.config.insight.enabled || self.config.targets.iter().any(|t| t.insight == Some(true))
    }

    /// The `/insight` page's data.
    pub fn insight_view(&self) -> crate::expose::insight::InsightView {
        let nodes = self.shown();
        crate::expose::insight::view(&nodes, &self.topology(), self.insight_wanted())
    }

    /// Ready once every node known now has finished one poll, and, with
    /// Sentinels configured, once they have been asked for their groups
    /// (before that the node list is empty, not complete).
    pub fn ready(&self) -> bool {
        let sentinels_asked =
            self.config.sentinel.is_none() || !self.sentinels().sentinels.is_empty();
        sentinels_asked && self.nodes().iter().all(|n| n.status().polled_once)
    }

    /// A snapshot of the nodes as a page to stream: every node's series,
    /// or only `only_addr`'s (`/scrape`).
    pub fn page(&self, only_addr: Option<String>) -> expose::Page {
        self.page_and_topology(only_addr).0
    }

    /// [`page`](Self::page) and the topology it was rendered with (which
    /// tells, with the page's sources, whether two pages show the same
    /// snapshot).
    pub fn page_and_topology(
        &self,
        only_addr: Option<String>,
    ) -> (expose::Page, Arc<Vec<crate::expose::topology::TopoNode>>) {
        let topology = self.topology();
        let ctx = RenderContext {
            clock: self.clock,
            hit_window: self.config.hit_ratio_window.as_secs_f64(),
            poll_interval: self.config.poll.interval.as_secs_f64(),
            topology: topology.clone(),
            process: only_addr.is_none().then(|| self.process.sample()),
            tasks: Some(self.alive_tasks()),
            web_reload: self
                .web
                .as_ref()
                .filter(|_| only_addr.is_none())
                .map(|w| w.reload_status()),
            stale_after: Some(self.stale_after()),
            discovery_refused: {
                let mut c = self.refused.counts();
                c.extend(self.sentinel_refused.counts());
                c
            },
            sentinels: self.sentinels(),
            shard: {
                let s = self.config.discovery.shard;
                s.enabled().then_some((s.index, s.count))
            },
            only_addr,
        };
        let shown = self.shown();
        (expose::Page::new(&shown, &ctx), topology)
    }

    /// Age past which a node's data is shown down (expose::stale_after):
    /// the longest gap between a node's polls plus the poll deadline.
    pub fn stale_after(&self) -> Duration {
        let poll = &self.config.poll;
        expose::stale_after(poll.interval, poll.timeout)
    }

    /// Nodes per poll group (see schedule.rs).
    pub fn poll_groups(&self) -> Vec<usize> {
        self.ctx.schedule.members()
    }

    fn add_runtime(&self, h: tokio::runtime::Handle) {
        self.runtimes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(h);
    }

    /// Tasks alive on every runtime of the daemon.
    fn alive_tasks(&self) -> usize {
        self.runtimes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|h| h.metrics().num_alive_tasks())
            .sum()
    }

    /// `/scrape?target=` of a node not polled yet: adds it to the poll set
    /// when `scrape.allowed-networks` lets it in (an IP literal inside one of
    /// them, never link-local unless listed, TCP without TLS) and fewer than
    /// `scrape.max-targets` were added this way. Returns the node (its first
    /// poll comes within `poller::FIRST_POLL_SPREAD`), or why it was refused.
    pub fn adopt(&self, target: &str) -> Result<Arc<NodeState>, &'static str> {
        let settings = &self.config.scrape;
        if settings.allowed_networks.is_empty() {
            return Err(
                "unknown target: only nodes this exporter already polls can be scraped (see /sd)",
            );
        }
        let parsed = crate::redis::target::parse_addr(target)
            .map_err(|_| "unknown target, and not a valid redis:// address")?;
        let crate::redis::target::Endpoint::Tcp { host, .. } = &parsed.endpoint else {
            return Err("unknown target: only TCP addresses can be added by /scrape");
        };
        if parsed.tls {
            return Err("unknown target: rediss:// targets cannot be added by /scrape");
        }
        crate::collect::discovery::Trust::explicit(&settings.allowed_networks)
            .check(host)
            .map_err(|_| "unknown target outside scrape.allowed-networks")?;
        let mut adopted = self.adopted.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = self.node(&parsed.addr) {
            return Ok(n);
        }
        if adopted.len() >= settings.max_targets {
            return Err("unknown target: scrape.max-targets nodes were already added by /scrape");
        }
        let mut t = settings.template.clone();
        t.endpoint = parsed.endpoint.clone();
        t.addr = parsed.addr.clone();
        t.db = parsed.db;
        if parsed.user.is_some() {
            t.user = parsed.user.clone();
        }
        if parsed.password.is_some() {
            t.password = parsed.password.clone();
        }
        t.discovered = true;
        if !self.add_node(t) {
            // poll.max-nodes reached (or added meanwhile by discovery).
            return self
                .node(&parsed.addr)
                .ok_or("unknown target: poll.max-nodes reached");
        }
        tracing::info!(addr = %parsed.addr, "polling a node first asked for by /scrape");
        adopted.insert(parsed.addr.clone(), std::time::Instant::now());
        self.node(&parsed.addr).ok_or("unknown target")
    }

    /// The node polled at `addr`.
    fn node(&self, addr: &str) -> Option<Arc<NodeState>> {
        self.nodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(addr)
            .map(|e| e.state.clone())
    }

    /// Notes a `/scrape` of `addr` (keeps a node added by /scrape alive).
    pub fn scraped(&self, addr: &str) {
        let mut adopted = self.adopted.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = adopted.get_mut(addr) {
            *at = std::time::Instant::now();
        }
    }

    /// Stops polling the nodes /scrape added that were not scraped for
    /// `scrape.target-idle-timeout`; returns how many.
    pub fn expire_adopted(&self) -> usize {
        let idle = self.config.scrape.idle_timeout;
        let expired: Vec<String> = {
            let mut adopted = self.adopted.lock().unwrap_or_else(|e| e.into_inner());
            let gone: Vec<String> = adopted
                .iter()
                .filter(|(_, at)| at.elapsed() >= idle)
                .map(|(a, _)| a.clone())
                .collect();
            for a in &gone {
                adopted.remove(a);
            }
            gone
        };
        for a in &expired {
            tracing::info!(addr = %a, "dropping a node added by /scrape: not scraped for scrape.target-idle-timeout");
            self.remove_node(a);
        }
        expired.len()
    }

    /// Whether /scrape added this node.
    fn is_adopted(&self, addr: &str) -> bool {
        self.adopted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(addr)
    }

    /// Prometheus HTTP service-discovery JSON: one group per node.
    /// `/sd`: one target group per node, its facts as `__meta_redis_vitals_*`
    /// labels (cluster, shard, role, source = configured|discovered).
    /// Meta labels are dropped after relabelling unless a config keeps
    /// them, so nothing here becomes a series label by default: the
    /// documented configs keep the stable ones (cluster, shard) and never
    /// role, which changes on a failover and would split a node's series.
    pub fn service_discovery(&self) -> String {
        let groups: Vec<serde_json::Value> = self
            .shown()
            .iter()
            .map(|n| {
                let st = n.status();
                let cluster = st.cluster.to_string();
                let role = st
                    .last
                    .as_ref()
                    .and_then(|o| o.info.get("role"))
                    .map(|r| if r == "slave" { "replica" } else { r })
                    .unwrap_or("unknown")
                    .to_string();
                drop(st);
                let configured = self.config.targets.iter().any(|t| t.addr == n.target.addr);
                let mut labels = serde_json::Map::new();
                labels.insert(format!("{SD_META}cluster"), cluster.into());
                labels.insert(format!("{SD_META}role"), role.into());
                let source = if configured {
                    "configured"
                } else if self.is_adopted(&n.target.addr) {
                    "scrape"
                } else {
                    "discovered"
                };
                labels.insert(format!("{SD_META}source"), source.into());
                if let Some(shard) = self.shard_of(&n.target.addr) {
                    labels.insert(format!("{SD_META}shard"), shard.into());
                }
                serde_json::json!({ "targets": [n.target.addr], "labels": labels })
            })
            .collect();
        serde_json::Value::Array(groups).to_string()
    }

    pub fn landing_page(&self) -> String {
        use crate::web::html::html_escape;
        let mut rows = String::new();
        for n in self.shown() {
            let st = n.status();
            let (state, detail) = match (&st.last, &st.last_error) {
                (Some(o), _) => ("up", o.info.get("role").unwrap_or("").to_string()),
                (None, Some(e)) => ("down", e.to_string()),
                (None, None) => ("pending", String::new()),
            };
            rows.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                html_escape(&n.target.addr),
                html_escape(&st.cluster),
                state,
                html_escape(&detail)
            ));
        }
        let path = html_escape(&self.config.telemetry_path);
        let refused = self.refused_section();
        format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>redis-vitals</title></head><body>\n\
             <h1>redis-vitals {}</h1>\n<p><a href=\"{path}\">Metrics</a> · <a href=\"/insight\">Cache insight</a> · <a href=\"/sd\">Service discovery</a> · \
             <a href=\"/-/healthy\">Healthy</a> · <a href=\"/-/ready\">Ready</a></p>\n\
             <table border=\"1\" cellpadding=\"4\"><tr><th>Node</th><th>Cluster</th><th>State</th><th>Detail</th></tr>\n{rows}</table>\n{refused}</body></html>\n",
            env!("CARGO_PKG_VERSION")
        )
    }

    /// The landing page's section on refused addresses (empty when none).
    fn refused_section(&self) -> String {
        use crate::web::html::html_escape;
        let (mut shown, mut total) = self
            .refused
            .current(crate::collect::discovery::SHOWN_ON_PAGE);
        // Addresses learnt from Sentinel and refused, after the cluster's.
        let (more, n) = self
            .sentinel_refused
            .current(crate::collect::discovery::SHOWN_ON_PAGE);
        total += n;
        shown.extend(more);
        shown.truncate(crate::collect::discovery::SHOWN_ON_PAGE);
        if total == 0 {
            return String::new();
        }
        let mut rows = String::new();
        for r in &shown {
            rows.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                html_escape(&r.addr),
                html_escape(&r.cluster),
                r.reason.as_str()
            ));
        }
        let more = if total > shown.len() {
            format!("<p>{} more not shown.</p>\n", total - shown.len())
        } else {
            String::new()
        };
        format!(
            "<h2>Discovered addresses not polled ({total})</h2>\n\
             <p>Listed by a cluster node or a Sentinel but refused: outside <code>cluster.allowed-networks</code> \
             / <code>sentinel.allowed-networks</code> (or the seeds' networks), link-local, or beyond <code>cluster.max-nodes</code> / \
             <code>poll.max-nodes</code>. Nothing is sent to them.</p>\n\
             <table border=\"1\" cellpadding=\"4\"><tr><th>Address</th><th>Cluster</th><th>Reason</th></tr>\n{rows}</table>\n{more}"
        )
    }

    fn stop_all(&self) -> Vec<JoinHandle<()>> {
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        let entries = std::mem::take(&mut *nodes);
        entries
            .into_values()
            .map(|e| {
                let _ = e.stop.send(true);
                e.task
            })
            .collect()
    }
}

impl Fleet for Shared {
    fn nodes(&self) -> Vec<Arc<NodeState>> {
        Shared::nodes(self)
    }
    fn node_count(&self) -> usize {
        Shared::node_count(self)
    }
    fn knows(&self, addr: &str) -> bool {
        Shared::knows(self, addr)
    }
    fn add_node(&self, target: Target) -> bool {
        Shared::add_node(self, target)
    }
    fn remove_node(&self, addr: &str) -> bool {
        Shared::remove_node(self, addr)
    }
    fn set_topology(&self, topology: Vec<crate::expose::topology::TopoNode>) {
        Shared::set_topology(self, topology)
    }
    fn discovery_signal(&self) -> Arc<tokio::sync::Notify> {
        Shared::discovery_signal(self)
    }
    fn settings(&self) -> &crate::config::DiscoverySettings {
        &self.config.discovery
    }
    fn seeds(&self) -> &[Target] {
        &self.config.targets
    }
    fn refused(&self) -> &crate::collect::discovery::Refused {
        &self.refused
    }
    fn sentinel_refused(&self) -> &crate::collect::discovery::Refused {
        &self.sentinel_refused
    }
    fn set_sentinels(&self, snapshot: crate::expose::sentinel::SentinelSnapshot) {
        Shared::set_sentinels(self, snapshot)
    }
}

impl crate::web::Site for Shared {
    fn web(&self) -> Arc<crate::web::config::WebConfig> {
        Shared::web(self)
    }
    fn telemetry_path(&self) -> &str {
        &self.config.telemetry_path
    }
    fn compression(&self) -> bool {
        self.config.web_compression
    }
    fn page_and_topology(
        &self,
        only_addr: Option<String>,
    ) -> (expose::Page, Arc<Vec<crate::expose::topology::TopoNode>>) {
        Shared::page_and_topology(self, only_addr)
    }
    fn knows(&self, addr: &str) -> bool {
        Shared::shows(self, addr)
    }
    fn adopt(&self, target: &str) -> Result<(Arc<NodeState>, Duration), &'static str> {
        Shared::adopt(self, target)
            .map(|n| (n, self.config.poll.timeout + poller::FIRST_POLL_SPREAD))
    }
    fn scraped(&self, addr: &str) {
        Shared::scraped(self, addr)
    }
    fn ready(&self) -> bool {
        Shared::ready(self)
    }
    fn service_discovery(&self) -> String {
        Shared::service_discovery(self)
    }
    fn landing_page(&self) -> String {
        Shared::landing_page(self)
    }
    fn insight(&self) -> crate::expose::insight::InsightView {
        Shared::insight_view(self)
    }
}

/// Runs the daemon until `shutdown` completes: starts a poller per
/// configured target, cluster discovery, Sentinel discovery when configured,
/// and the HTTP server on `listener`.
pub async fn run(config: Config, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let shared = Shared::new(config);
    run_shared(shared, listener, shutdown).await
}

/// Like [`run`], with the shared state created by the caller (tests read it).
pub async fn run_shared(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    shared.add_runtime(tokio::runtime::Handle::current());
    for t in shared.config.targets.clone() {
        shared.add_node(t);
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let discovery = tokio::spawn(crate::collect::topology::discover(
        shared.clone() as Arc<dyn Fleet>,
        stop_rx.clone(),
    ));
    let sentinel = shared.config.sentinel.clone().map(|settings| {
        tokio::spawn(crate::collect::sentinel::run(
            shared.clone() as Arc<dyn Fleet>,
            settings,
            shared.config.poll.timeout,
            stop_rx.clone(),
        ))
    });
    let watcher = shared
        .web
        .clone()
        .map(|w| tokio::spawn(w.run(stop_rx.clone())));
    let expiry = (!shared.config.scrape.allowed_networks.is_empty()).then(|| {
        let (shared, mut stop) = (shared.clone(), stop_rx.clone());
        // A tenth of the idle timeout between checks: a node stays at most
        // 10 % longer than configured.
        let every = (shared.config.scrape.idle_timeout / 10).max(Duration::from_millis(100));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => { shared.expire_adopted(); }
                    _ = stop.changed() => return,
                }
            }
        })
    });
    let insight = shared.insight_wanted().then(|| {
        tokio::spawn(crate::collect::insight::supervise(
            shared.clone() as Arc<dyn Fleet>,
            Arc::new(shared.config.insight.clone()),
            shared.config.poll.timeout,
            stop_rx.clone(),
        ))
    });
    let http = start_http(listener, shared.clone(), stop_rx);

    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = http.await;
    let _ = discovery.await;
    if let Some(s) = sentinel {
        let _ = s.await;
    }
    if let Some(w) = watcher {
        let _ = w.await;
    }
    if let Some(e) = expiry {
        let _ = e.await;
    }
    if let Some(i) = insight {
        let _ = i.await;
    }
    let tasks = shared.stop_all();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        for t in tasks {
            let _ = t.await;
        }
    })
    .await;
}

/// Serves HTTP on a thread of its own, with a single-threaded runtime: a
/// scrape never waits behind a group of polls, and rendering a large page
/// never delays a poll's reply (which would inflate its measured
/// duration). The returned receiver completes when serving has stopped.
/// If the thread cannot start, HTTP is served on the caller's runtime.
fn start_http(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> tokio::sync::oneshot::Receiver<()> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let (give_tx, give_rx) = std::sync::mpsc::channel::<std::net::TcpListener>();
    let started = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .and_then(|rt| {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name("redis-vitals-http".into())
                .spawn(move || {
                    // The sender is dropped unsent only if the listener could
                    // not be handed over; that was logged.
                    if let Ok(l) = give_rx.recv() {
                        rt.block_on(async move {
                            shared.add_runtime(tokio::runtime::Handle::current());
                            match TcpListener::from_std(l) {
                                Ok(l) => {
                                    crate::web::serve(l, shared as Arc<dyn crate::web::Site>, stop)
                                        .await
                                }
                                Err(e) => tracing::error!(error = %e, "cannot serve HTTP"),
                            }
                        });
                    }
                    // Dropping the runtime ends the connections still open.
                    drop(rt);
                    let _ = done_tx.send(());
                })
        });
    match started {
        // The listener leaves this runtime's reactor for the HTTP thread's.
        Ok(_) => match listener.into_std() {
            Ok(l) => {
                let _ = give_tx.send(l);
            }
            Err(e) => tracing::error!(error = %e, "cannot hand the listener to the HTTP thread"),
        },
        Err(e) => {
            tracing::warn!(error = %e, "no HTTP thread; serving HTTP on the poll runtime");
            return serve_here(listener, shared, stop);
        }
    }
    done_rx
}

/// Serves HTTP on the caller's runtime; the receiver completes when
/// serving has stopped.
fn serve_here(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        crate::web::serve(listener, shared as Arc<dyn crate::web::Site>, stop).await;
        let _ = tx.send(());
    });
    rx
}

/// Creates the shared state for [`run_shared`].
pub fn shared(config: Config) -> Arc<Shared> {
    Shared::new(config)
}
