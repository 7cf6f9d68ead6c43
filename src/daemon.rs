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
    /// process_* series (memory, fds, CPU) for the soak and for operators.
    process: crate::expose::process::Reader,
    /// `--web.config.file`, re-read on change and on SIGHUP.
    web: Option<Arc<crate::web::config::WebConfigWatcher>>,
    /// Used without a web config file: plain HTTP, no auth.
    web_default: Arc<crate::web::config::WebConfig>,
    /// The runtimes the daemon's tasks run on (polls, HTTP), for
    /// `redis_vitals_tasks`.
    runtimes: std::sync::Mutex<Vec<tokio::runtime::Handle>>,
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
            process: crate::expose::process::Reader::new(),
            web,
            web_default: Arc::new(crate::web::config::WebConfig::default()),
            runtimes: std::sync::Mutex::new(Vec::new()),
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
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(poller::run(state.clone(), self.ctx.clone(), stop_rx));
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

    /// Ready once every node known now has finished one poll.
    pub fn ready(&self) -> bool {
        self.nodes().iter().all(|n| n.status().polled_once)
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
            discovery_refused: self.refused.counts(),
            only_addr,
        };
        (expose::Page::new(&self.nodes(), &ctx), topology)
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

    /// Prometheus HTTP service-discovery JSON: one group per node.
    /// `/sd`: one target group per node, its facts as `__meta_redis_vitals_*`
    /// labels (cluster, shard, role, source = configured|discovered).
    /// Meta labels are dropped after relabelling unless a config keeps
    /// them, so nothing here becomes a series label by default: the
    /// documented configs keep the stable ones (cluster, shard) and never
    /// role, which changes on a failover and would split a node's series.
    pub fn service_discovery(&self) -> String {
        let groups: Vec<serde_json::Value> = self
            .nodes()
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
                let configured = self
                    .config
                    .targets
                    .iter()
                    .any(|t| t.addr == n.target.addr);
                let mut labels = serde_json::Map::new();
                labels.insert(format!("{SD_META}cluster"), cluster.into());
                labels.insert(format!("{SD_META}role"), role.into());
                labels.insert(
                    format!("{SD_META}source"),
                    if configured { "configured" } else { "discovered" }.into(),
                );
                if let Some(shard) = self.shard_of(&n.target.addr) {
                    labels.insert(format!("{SD_META}shard"), shard.into());
                }
                serde_json::json!({ "targets": [n.target.addr], "labels": labels })
            })
            .collect();
        serde_json::Value::Array(groups).to_string()
    }

    pub fn landing_page(&self) -> String {
        use crate::web::html_escape;
        let mut rows = String::new();
        for n in self.nodes() {
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
             <h1>redis-vitals {}</h1>\n<p><a href=\"{path}\">Metrics</a> · <a href=\"/sd\">Service discovery</a> · \
             <a href=\"/-/healthy\">Healthy</a> · <a href=\"/-/ready\">Ready</a></p>\n\
             <table border=\"1\" cellpadding=\"4\"><tr><th>Node</th><th>Cluster</th><th>State</th><th>Detail</th></tr>\n{rows}</table>\n{refused}</body></html>\n",
            env!("CARGO_PKG_VERSION")
        )
    }

    /// The landing page's section on refused addresses (empty when none).
    fn refused_section(&self) -> String {
        use crate::web::html_escape;
        let (shown, total) = self
            .refused
            .current(crate::collect::discovery::SHOWN_ON_PAGE);
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
             <p>Listed by a cluster node but refused: outside <code>cluster.allowed-networks</code> \
             (or the seeds' networks), link-local, or beyond <code>cluster.max-nodes</code> / \
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
        Shared::knows(self, addr)
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
}

/// Runs the daemon until `shutdown` completes: starts a poller per
/// configured target, cluster discovery, and the HTTP server on `listener`.
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
    let watcher = shared
        .web
        .clone()
        .map(|w| tokio::spawn(w.run(stop_rx.clone())));
    let http = start_http(listener, shared.clone(), stop_rx);

    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = http.await;
    let _ = discovery.await;
    if let Some(w) = watcher {
        let _ = w.await;
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
