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
use crate::config::Config;
use crate::exposition::{self, RenderContext};
use crate::poller::{self, PollContext};
use crate::state::NodeState;
use crate::target::Target;

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
    topology: RwLock<Arc<Vec<crate::topology::TopoNode>>>,
    /// process_* series (memory, fds, CPU) for the soak and for operators.
    process: crate::process::Reader,
    /// `--web.config.file`, re-read on change and on SIGHUP.
    web: Option<Arc<crate::webconfig::WebConfigWatcher>>,
    /// Used without a web config file: plain HTTP, no auth.
    web_default: Arc<crate::webconfig::WebConfig>,
}

impl Shared {
    fn new(config: Config) -> Arc<Shared> {
        let clock = Clock::new();
        let ctx = Arc::new(PollContext {
            poll: config.poll.clone(),
            hit_window: config.hit_ratio_window.as_secs_f64(),
            lag_history: config.lag_history.as_secs_f64(),
            permits: Arc::new(Semaphore::new(config.poll.concurrency)),
            clock,
            cluster_refresh: config.cluster_refresh,
            topology_gen: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            discovery: Arc::new(tokio::sync::Notify::new()),
        });
        let web = config.web_config.as_ref().map(|(path, initial)| {
            Arc::new(crate::webconfig::WebConfigWatcher::new(
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
            process: crate::process::Reader::new(),
            web,
            web_default: Arc::new(crate::webconfig::WebConfig::default()),
        })
    }

    /// Starts polling `target` unless a node with its address is polled
    /// already. Returns whether it was added.
    pub fn add_node(&self, target: Target) -> bool {
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        if nodes.contains_key(&target.addr) {
            return false;
        }
        tracing::info!(addr = %target.addr, cluster = %target.cluster, discovered = target.discovered, "polling node");
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

    /// Every node, in address order.
    pub fn nodes(&self) -> Vec<Arc<NodeState>> {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        nodes.values().map(|e| e.state.clone()).collect()
    }

    /// The web config for the next connection or request.
    pub fn web(&self) -> Arc<crate::webconfig::WebConfig> {
        match &self.web {
            Some(w) => w.current(),
            None => self.web_default.clone(),
        }
    }

    pub fn set_topology(&self, t: Vec<crate::topology::TopoNode>) {
        *self.topology.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(t);
    }

    pub fn topology(&self) -> Arc<Vec<crate::topology::TopoNode>> {
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
    pub fn page(&self, only_addr: Option<String>) -> exposition::Page {
        let ctx = RenderContext {
            clock: self.clock,
            hit_window: self.config.hit_ratio_window.as_secs_f64(),
            poll_interval: self.config.poll.interval.as_secs_f64(),
            topology: self.topology(),
            process: only_addr.is_none().then(|| self.process.sample()),
            tasks: tokio::runtime::Handle::try_current()
                .ok()
                .map(|h| h.metrics().num_alive_tasks()),
            only_addr,
        };
        exposition::Page::new(&self.nodes(), &ctx)
    }

    /// Prometheus HTTP service-discovery JSON: one group per node.
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
                let mut labels = serde_json::Map::new();
                labels.insert("cluster".into(), cluster.into());
                labels.insert("role".into(), role.into());
                if let Some(shard) = self.shard_of(&n.target.addr) {
                    labels.insert("shard".into(), shard.into());
                }
                serde_json::json!({ "targets": [n.target.addr], "labels": labels })
            })
            .collect();
        serde_json::Value::Array(groups).to_string()
    }

    pub fn landing_page(&self) -> String {
        use crate::http::html_escape;
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
        format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>redis-vitals</title></head><body>\n\
             <h1>redis-vitals {}</h1>\n<p><a href=\"{path}\">Metrics</a> · <a href=\"/sd\">Service discovery</a> · \
             <a href=\"/-/healthy\">Healthy</a> · <a href=\"/-/ready\">Ready</a></p>\n\
             <table border=\"1\" cellpadding=\"4\"><tr><th>Node</th><th>Cluster</th><th>State</th><th>Detail</th></tr>\n{rows}</table>\n</body></html>\n",
            env!("CARGO_PKG_VERSION")
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
    for t in shared.config.targets.clone() {
        shared.add_node(t);
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let discovery = tokio::spawn(crate::topology::discover(shared.clone(), stop_rx.clone()));
    let watcher = shared
        .web
        .clone()
        .map(|w| tokio::spawn(w.run(stop_rx.clone())));
    let http = tokio::spawn(crate::http::serve(listener, shared.clone(), stop_rx));

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

/// Creates the shared state for [`run_shared`].
pub fn shared(config: Config) -> Arc<Shared> {
    Shared::new(config)
}
