//! Exposition: turns the latest snapshot of every node into the Prometheus
//! text format, written directly (byte-identical to the `prometheus`
//! crate's text encoder). A poll pre-renders its node's lines
//! ([`render_node`]); a scrape takes them with the rest as a [`Page`].
//!
//! Nothing here talks to Redis: a scrape reads what the pollers stored.
//! `catalogue.rs` is the single list of every family we expose, with its
//! type and help; docs/metrics.md mirrors it.

pub mod catalogue;
pub mod insight;
pub mod process;
pub mod sentinel;
pub mod state;
pub mod topology;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::expose::state::{NodeState, Observation};
use crate::parse::info::{CommandStat, Info, LatencyStat};
use crate::signals;

pub use catalogue::*;

/// What a render needs beyond the nodes.
pub struct RenderContext {
    pub clock: crate::clock::Clock,
    pub hit_window: f64,
    pub poll_interval: f64,
    /// Only this node's series (`/scrape?target=`), or all.
    pub only_addr: Option<String>,
    pub topology: Arc<Vec<crate::expose::topology::TopoNode>>,
    /// The exporter's own process series (full output only).
    pub process: Option<crate::expose::process::Sample>,
    pub tasks: Option<usize>,
    /// `--web.config.file` reloads: whether the last was applied, and when
    /// one last was (Unix seconds). Full output only, with a web config.
    pub web_reload: Option<(bool, f64)>,
    /// A node whose last success is older than this is shown down
    /// (`redis_up` 0, no other series): its poll is overdue (see
    /// [`stale_after`]). `None`: never.
    pub stale_after: Option<std::time::Duration>,
    /// `redis_vitals_discovery_refused_total` (cluster, reason, count).
    pub discovery_refused: Vec<(String, crate::error::Refusal, u64)>,
    /// (`shard.index`, `shard.count`) when the fleet is sharded
    /// (`redis_vitals_shard_info`, `redis_vitals_shard_nodes`).
    pub shard: Option<(u32, u32)>,
    /// The `redis_sentinel_*` families (full output only).
    pub sentinels: Arc<crate::expose::sentinel::SentinelSnapshot>,
}

/// How old a node's data may be before it is shown down: the longest gap
/// between two of its polls (`gap`: the interval, or 9/8 of it while
/// following scrapes) plus the poll deadline. A poll that keeps its
/// schedule and deadline always succeeds or fails within that; older data
/// means the poll never ran or never ended, and must not read as up.
pub fn stale_after(gap: std::time::Duration, timeout: std::time::Duration) -> std::time::Duration {
    gap + timeout
}

/// A consistent copy of one node's state, taken under its lock: shared
/// pieces (`Arc`s), nothing copied but the master offset history.
pub struct NodeView {
    pub node: Arc<NodeState>,
    /// The `cluster` label (see NodeStatus::cluster).
    pub cluster: Arc<str>,
    pub last: Option<Arc<Observation>>,
    /// The node's series from its last poll, pre-rendered.
    pub rendered: Option<Arc<NodeText>>,
    /// The node's state lines, pre-rendered by its last poll.
    pub state: Arc<StateText>,
    /// The master's offset history with its replication ID; empty unless
    /// the node lists replicas (only replication lag reads it).
    pub offsets: (String, Vec<signals::OffsetSample>),
    pub last_success: Option<Instant>,
}

pub fn views(
    nodes: &[Arc<NodeState>],
    hit_window: f64,
    stale_after: Option<std::time::Duration>,
) -> Vec<NodeView> {
    nodes
        .iter()
        .map(|n| {
            let st = n.status();
            let stale = st.last.is_some()
                && stale_after
                    .zip(st.last_success)
                    .is_some_and(|(limit, at)| at.elapsed() > limit);
            // The poll's state lines, unless discovery relabelled the node
            // since (or it was never polled), or its data went stale: then
            // render them now.
            let state = match &st.state_text {
                _ if stale => Arc::new(render_state_as(&n.target.addr, &st, hit_window, false)),
                Some(t) if Arc::ptr_eq(&t.cluster, &st.cluster) => t.clone(),
                _ => Arc::new(render_state(&n.target.addr, &st, hit_window)),
            };
            let lists_replicas = st
                .last
                .as_ref()
                .is_some_and(|o| !o.info.replicas.is_empty());
            let offsets = if lists_replicas {
                let (replid, offsets) = st.history.offsets();
                (replid.to_string(), offsets)
            } else {
                (String::new(), Vec::new())
            };
            NodeView {
                node: n.clone(),
                cluster: st.cluster.clone(),
                last: if stale { None } else { st.last.clone() },
                rendered: if stale { None } else { st.rendered.clone() },
                state,
                offsets,
                last_success: st.last_success,
            }
        })
        .collect()
}

/// Renders the state lines of the node at `addr` from its status.
pub fn render_state(
    addr: &str,
    st: &crate::expose::state::NodeStatus,
    hit_window: f64,
) -> StateText {
    render_state_as(addr, st, hit_window, st.last.is_some())
}

/// [`render_state`], with `redis_up` (and the hit ratio beside it) as `up`
/// says: a scrape shows a node whose data went stale as down.
fn render_state_as(
    addr: &str,
    st: &crate::expose::state::NodeStatus,
    hit_window: f64,
    up: bool,
) -> StateText {
    let mut text = String::with_capacity(1536);
    let mut spans = Vec::with_capacity(STATE_FAMILIES.len());
    for &f in STATE_FAMILIES {
        let start = text.len();
        write_state_lines(&mut text, f, addr, st, hit_window, up);
        if text.len() > start {
            spans.push((f, start..text.len()));
        }
    }
    StateText {
        cluster: st.cluster.clone(),
        text,
        spans,
    }
}

/// The node's lines of family `f` (one of [`STATE_FAMILIES`]).
fn write_state_lines(
    buf: &mut String,
    f: F,
    addr: &str,
    st: &crate::expose::state::NodeStatus,
    hit_window: f64,
    up: bool,
) {
    let base = [("addr", addr), ("cluster", &*st.cluster)];
    match f {
        F::Up => write_line(buf, f, &base, if up { 1.0 } else { 0.0 }),
        F::HitRatio => {
            // Only beside the node's other series (it is up).
            if up && st.rendered.is_some() {
                if let Some(r) = st.history.hit_ratio(hit_window) {
                    write_line(buf, f, &base, r);
                }
            }
        }
        F::Polls => write_line(buf, f, &base, st.polls_total as f64),
        F::PollErrors => {
            // Every reason from 0, so rate() sees a node's first failure of
            // a kind.
            for reason in crate::error::Reason::ALL {
                let count = st.errors_total.get(&reason).copied().unwrap_or(0);
                write_line(
                    buf,
                    f,
                    &[base[0], base[1], ("reason", reason.as_str())],
                    count as f64,
                );
            }
        }
        F::ConnectionsOpened => write_line(buf, f, &base, st.connections_opened as f64),
        F::ParseErrors => {
            // Cluster nodes from 0 (the only replies parsed leniently);
            // other nodes only once something was dropped.
            if st.cluster_enabled || !st.parse_errors.is_empty() {
                for kind in crate::expose::state::ParseErrorKind::ALL {
                    let count = st.parse_errors.get(&kind).copied().unwrap_or(0);
                    write_line(
                        buf,
                        f,
                        &[base[0], base[1], ("reason", kind.as_str())],
                        count as f64,
                    );
                }
            }
        }
        F::PollDuration => {
            if let Some(d) = st.last_poll_duration {
                write_line(buf, f, &base, d.as_secs_f64());
            }
        }
        _ => debug_assert!(false, "{f:?} is not a state family"),
    }
}

/// The node's `redis_vitals_last_success_age_seconds` line, now.
fn write_age_line(buf: &mut String, v: &NodeView) {
    if let Some(at) = v.last_success {
        let base = [
            ("addr", v.node.target.addr.as_str()),
            ("cluster", &*v.cluster),
        ];
        write_line(buf, F::LastSuccessAge, &base, at.elapsed().as_secs_f64());
    }
}

/// Bytes per chunk when a page is rendered piecewise ([`Page::next_chunk`]).
/// HTTP renders a page whole, once, and shares it between connections
/// (`web/pages.rs`); chunks remain for callers that stream.
pub const CHUNK_SIZE: usize = 120 * 1024;

/// A page being rendered: a snapshot of the nodes (shared, not copied), the
/// list of its pieces in page order, and the position reached. Each
/// [`Page::next_chunk`] copies about [`CHUNK_SIZE`] bytes more; HTTP takes
/// them all at once into the page it shares (`web/pages.rs`).
///
/// The page writes, for each family in catalogue order, its header, then
/// its lines: per node (in address order) the node's [`StateText`], age
/// line or pre-rendered [`NodeText`] segment for the family, then the lines
/// computed up front (build info, replication lag, topology). A family
/// without lines is left out. The process collector's families come last.
///
/// The pieces are listed when the page is created, walking each node's
/// texts once, in memory order; the chunks then only copy. Walking the
/// nodes family by family instead (100 families x 100 nodes, five pointer
/// hops each to reach a few hundred bytes) was half of a 100-node scrape's
/// CPU in cache misses.
pub struct Page {
    /// The buffers pieces are cut from (shared with the nodes, not copied).
    sources: Vec<Source>,
    /// Text the page made itself: age lines, the up-front lines, the
    /// process families.
    own: String,
    /// Every piece, in page order.
    pieces: Vec<Piece>,
    /// Next piece to write.
    next: usize,
    /// The family whose header was written last.
    headed: Option<u16>,
    /// Bytes in the whole page: known up front, so the response carries a
    /// Content-Length instead of chunked framing.
    len: usize,
    /// Bytes handed out so far.
    emitted: usize,
}

/// A buffer a page's pieces are cut from.
enum Source {
    Text(Arc<String>),
    State(Arc<StateText>),
}

impl Source {
    fn text(&self) -> &str {
        match self {
            Source::Text(t) => t,
            Source::State(s) => &s.text,
        }
    }
}

/// Where one piece of a page is: its family (catalogue index;
/// `FAMILIES.len()` for the process families), its source (an index in
/// `Page::sources`, or [`OWN`]) and its byte range there.
#[derive(Clone, Copy, Default)]
struct Piece {
    family: u16,
    source: u32,
    start: u32,
    end: u32,
}

/// [`Piece::source`] of the page's own text.
const OWN: u32 = u32::MAX;

impl Page {
    pub fn new(nodes: &[Arc<NodeState>], ctx: &RenderContext) -> Page {
        let mut views = views(nodes, ctx.hit_window, ctx.stale_after);
        let mut out = Out::default();
        // On /scrape too: the alerts join the poll interval on (job,
        // instance) and look for build_info to tell the exporter is there.
        out.push(F::BuildInfo, &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
        out.push(F::PollInterval, &[], ctx.poll_interval);
        let mut process = String::new();
        if ctx.only_addr.is_none() {
            if let Some(t) = ctx.tasks {
                out.push(F::Tasks, &[], t as f64);
            }
            if let Some((ok, at)) = ctx.web_reload {
                out.push(F::WebConfigReloadOk, &[], if ok { 1.0 } else { 0.0 });
                out.push(F::WebConfigReloadTime, &[], at);
            }
            if let Some(sample) = &ctx.process {
                process = crate::expose::process::render(sample);
            }
            if let Some((index, count)) = ctx.shard {
                let (index, count) = (index.to_string(), count.to_string());
                out.push(
                    F::ShardInfo,
                    &[("index", index.as_str()), ("count", count.as_str())],
                    1.0,
                );
                out.push(F::ShardNodes, &[], nodes.len() as f64);
            }
            for (cluster, reason, n) in &ctx.discovery_refused {
                out.push(
                    F::DiscoveryRefused,
                    &[("cluster", cluster.as_str()), ("reason", reason.as_str())],
                    *n as f64,
                );
            }
            crate::expose::sentinel::render(&mut out, &ctx.sentinels);
        }
        replication_lag(&mut out, &views, ctx);
        crate::expose::topology::render(&mut out, &ctx.topology, ctx.only_addr.as_deref());
        if let Some(addr) = ctx.only_addr.as_deref() {
            views.retain(|v| v.node.target.addr == addr);
        }
        for v in &views {
            // A copy (the report is shared), so that rendering does not
            // hold the lock the analyser takes after every batch.
            let st = v.node.insight().clone();
            if v.last.is_none() && st.report.is_some() {
                // Down (or stale): its last report stays on /insight, but
                // its series go, as its INFO series do, so that sums over
                // a cluster do not count a failed master's keys twice.
                continue;
            }
            let policy = v.last.as_ref().and_then(|o| o.info.get("maxmemory_policy"));
            let labels = [
                ("addr", v.node.target.addr.as_str()),
                ("cluster", &*v.cluster),
            ];
            crate::expose::insight::render(&mut out, labels, &st, policy);
        }

        // Pieces node by node, then the up-front lines and the process
        // families, each put at its place in page order (by family, node
        // order kept within a family) by a counting sort: a first pass
        // counts each family's pieces, a second writes them in place. (One
        // list sorted afterwards held two copies: +3 MiB at 500 nodes.)
        let process_family = FAMILIES.len();
        let mut next_of = vec![0usize; FAMILIES.len() + 2];
        let mut ages = 0;
        for v in &views {
            for (f, _) in &v.state.spans {
                next_of[*f as usize + 1] += 1;
            }
            if v.last_success.is_some() {
                ages += 1;
            }
            for (f, seg) in node_text(v).map_or(&[][..], |t| &t.segments) {
                if !seg.range.is_empty() {
                    next_of[*f as usize + 1] += 1;
                }
            }
        }
        next_of[F::LastSuccessAge as usize + 1] += ages;
        for (i, lines) in out.families.iter().enumerate() {
            if !lines.is_empty() {
                next_of[i + 1] += 1;
            }
        }
        if !process.is_empty() {
            next_of[process_family + 1] += 1;
        }
        for i in 1..next_of.len() {
            next_of[i] += next_of[i - 1];
        }
        let mut pieces = vec![Piece::default(); next_of[next_of.len() - 1]];
        let mut place = |family: usize, source: u32, range: std::ops::Range<usize>| {
            // Counted above; a piece the count missed is left out rather
            // than written over another.
            if let Some(slot) = pieces.get_mut(next_of[family]) {
                *slot = Piece {
                    family: family as u16,
                    source,
                    start: range.start as u32,
                    end: range.end as u32,
                };
                next_of[family] += 1;
            }
        };
        let mut own = String::with_capacity(100 * ages);
        let mut sources: Vec<Source> = Vec::with_capacity(3 * views.len());
        for v in &views {
            let state = sources.len() as u32;
            sources.push(Source::State(v.state.clone()));
            for (f, range) in &v.state.spans {
                place(*f as usize, state, range.clone());
            }
            let start = own.len();
            write_age_line(&mut own, v);
            if own.len() > start {
                place(F::LastSuccessAge as usize, OWN, start..own.len());
            }
            for (f, seg) in node_text(v).map_or(&[][..], |t| &t.segments) {
                let same = match sources.last() {
                    Some(Source::Text(b)) => Arc::ptr_eq(b, &seg.buf),
                    _ => false,
                };
                if !same {
                    sources.push(Source::Text(seg.buf.clone()));
                }
                if !seg.range.is_empty() {
                    place(*f as usize, (sources.len() - 1) as u32, seg.range.clone());
                }
            }
        }
        for (i, lines) in out.families.iter().enumerate() {
            if !lines.is_empty() {
                let start = own.len();
                own.push_str(lines);
                place(i, OWN, start..own.len());
            }
        }
        if !process.is_empty() {
            let start = own.len();
            own.push_str(&process);
            place(process_family, OWN, start..own.len());
        }

        let mut len = 0;
        let mut last = None;
        // Empty pieces (none, unless a count above went wrong) are skipped
        // here and when writing.
        pieces.retain(|p| p.start < p.end);
        for p in &pieces {
            len += (p.end - p.start) as usize;
            if last != Some(p.family) && (p.family as usize) < FAMILIES.len() {
                len += headers()[p.family as usize].len();
            }
            last = Some(p.family);
        }
        Page {
            sources,
            own,
            pieces,
            next: 0,
            headed: None,
            len,
            emitted: 0,
        }
    }

    /// Whether `other` was cut from the very node texts this page was (the
    /// same polls of the same nodes): the two show the same snapshot, but
    /// for the topology and the lines made at render time.
    pub fn same_sources(&self, other: &Page) -> bool {
        self.sources.len() == other.sources.len()
            && self
                .sources
                .iter()
                .zip(&other.sources)
                .all(|(a, b)| match (a, b) {
                    (Source::Text(a), Source::Text(b)) => Arc::ptr_eq(a, b),
                    (Source::State(a), Source::State(b)) => Arc::ptr_eq(a, b),
                    _ => false,
                })
    }

    /// Bytes in the whole page.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the page has no bytes (never: build info is always there).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The next part of the page, or `None` at its end. A part is at most
    /// [`CHUNK_SIZE`] bytes unless a single piece (one node's lines for one
    /// family, or the up-front lines of one family) is larger: that goes
    /// whole, in a part of its own.
    pub fn next_chunk(&mut self) -> Option<String> {
        let mut chunk = String::new();
        self.next_chunk_into(&mut chunk).then_some(chunk)
    }

    /// Appends the next part of the page (as [`next_chunk`](Self::next_chunk)
    /// cuts it) to `out`; false at the page's end. HTTP renders into its
    /// write buffer, behind the response head, so the page is copied once.
    pub fn next_chunk_into(&mut self, out: &mut String) -> bool {
        let start = out.len();
        while let Some(p) = self.pieces.get(self.next) {
            let text = match p.source {
                OWN => &self.own,
                i => self.sources.get(i as usize).map_or("", Source::text),
            };
            // Ranges were taken on line boundaries of these very texts.
            let text = text.get(p.start as usize..p.end as usize).unwrap_or("");
            let header = match self.headed {
                Some(f) if f == p.family => "",
                _ => headers().get(p.family as usize).map_or("", String::as_str),
            };
            let len = header.len() + text.len();
            let taken = out.len() - start;
            if taken > 0 && taken + len > CHUNK_SIZE {
                break;
            }
            if taken == 0 {
                // No more than the page has left: a small page must not
                // allocate a whole chunk (that grew and trimmed the heap
                // with brk on every scrape of one node).
                let left = self.len.saturating_sub(self.emitted);
                out.reserve(CHUNK_SIZE.min(left).max(len));
            }
            out.push_str(header);
            out.push_str(text);
            self.headed = Some(p.family);
            self.next += 1;
        }
        let taken = out.len() - start;
        self.emitted += taken;
        taken > 0
    }
}

/// The node's pre-rendered text, if it is up.
fn node_text(v: &NodeView) -> Option<&NodeText> {
    v.last.as_ref().and(v.rendered.as_deref())
}

/// Renders the text exposition of `nodes` as one string (tests, benches;
/// HTTP streams a [`Page`]).
pub fn render(nodes: &[Arc<NodeState>], ctx: &RenderContext) -> String {
    let mut page = Page::new(nodes, ctx);
    let mut text = String::new();
    while let Some(chunk) = page.next_chunk() {
        text.push_str(&chunk);
    }
    text
}

/// Plain INFO fields that map one-to-one to a family, with a scale factor
/// to base units.
const SIMPLE: &[(F, &str, f64)] = &[
    (F::Uptime, "uptime_in_seconds", 1.0),
    (F::ConnectedClients, "connected_clients", 1.0),
    (F::BlockedClients, "blocked_clients", 1.0),
    (F::ClusterConnections, "cluster_connections", 1.0),
    (F::ConnectedSlaves, "connected_slaves", 1.0),
    (F::MemUsed, "used_memory", 1.0),
    (F::MemRss, "used_memory_rss", 1.0),
    (F::MemPeak, "used_memory_peak", 1.0),
    (F::MemSystem, "total_system_memory", 1.0),
    (F::MemMax, "maxmemory", 1.0),
    (F::MemFrag, "mem_fragmentation_ratio", 1.0),
    (F::AllocFrag, "allocator_frag_ratio", 1.0),
    (F::Hits, "keyspace_hits", 1.0),
    (F::Misses, "keyspace_misses", 1.0),
    (F::Evicted, "evicted_keys", 1.0),
    (F::Expired, "expired_keys", 1.0),
    (F::Rejected, "rejected_connections", 1.0),
    (F::ConnsReceived, "total_connections_received", 1.0),
    (F::CommandsProcessed, "total_commands_processed", 1.0),
    (F::NetIn, "total_net_input_bytes", 1.0),
    (F::NetOut, "total_net_output_bytes", 1.0),
    (F::ErrorReplies, "total_error_replies", 1.0),
    (F::SyncFull, "sync_full", 1.0),
    (F::SyncPartialOk, "sync_partial_ok", 1.0),
    (F::SyncPartialErr, "sync_partial_err", 1.0),
    (F::CpuSys, "used_cpu_sys", 1.0),
    (F::CpuUser, "used_cpu_user", 1.0),
    (F::CpuSysChildren, "used_cpu_sys_children", 1.0),
    (F::CpuUserChildren, "used_cpu_user_children", 1.0),
    (F::Loading, "loading", 1.0),
    (F::RdbInProgress, "rdb_bgsave_in_progress", 1.0),
    (F::RdbChanges, "rdb_changes_since_last_save", 1.0),
    (F::RdbLastSave, "rdb_last_save_time", 1.0),
    (F::AofEnabled, "aof_enabled", 1.0),
    (F::AofRewriteInProgress, "aof_rewrite_in_progress", 1.0),
    (F::MasterReplOffset, "master_repl_offset", 1.0),
    (F::BacklogSize, "repl_backlog_size", 1.0),
    (F::PubsubChannels, "pubsub_channels", 1.0),
    (F::PubsubPatterns, "pubsub_patterns", 1.0),
    (F::LatestFork, "latest_fork_usec", 1e-6),
    // The peer's other INFO fields (issue 17), under the peer's names.
    (F::ActiveDefragRunning, "active_defrag_running", 1.0),
    (F::AllocatorActive, "allocator_active", 1.0),
    (F::AllocatorAllocated, "allocator_allocated", 1.0),
    (F::AllocatorFragBytes, "allocator_frag_bytes", 1.0),
    (F::AllocatorResident, "allocator_resident", 1.0),
    (F::AllocatorRssBytes, "allocator_rss_bytes", 1.0),
    (F::AllocatorRssRatio, "allocator_rss_ratio", 1.0),
    (F::MemFragBytes, "mem_fragmentation_bytes", 1.0),
    (
        F::MemNotCountedForEviction,
        "mem_not_counted_for_evict",
        1.0,
    ),
    (F::MemDataset, "used_memory_dataset", 1.0),
    (F::MemLua, "used_memory_lua", 1.0),
    (F::MemOverhead, "used_memory_overhead", 1.0),
    (F::MemScripts, "used_memory_scripts", 1.0),
    (F::MemStartup, "used_memory_startup", 1.0),
    (F::MemClientsNormal, "mem_clients_normal", 1.0),
    (F::MemClientsSlaves, "mem_clients_slaves", 1.0),
    (F::LazyfreePending, "lazyfree_pending_objects", 1.0),
    (F::CachedScripts, "number_of_cached_scripts", 1.0),
    (
        F::ClientRecentMaxInput,
        "client_recent_max_input_buffer",
        1.0,
    ),
    (
        F::ClientRecentMaxOutput,
        "client_recent_max_output_buffer",
        1.0,
    ),
    (F::ClientsInTimeoutTable, "clients_in_timeout_table", 1.0),
    (F::TrackingClients, "tracking_clients", 1.0),
    (F::TrackingItems, "tracking_total_items", 1.0),
    (F::TrackingKeys, "tracking_total_keys", 1.0),
    (F::TrackingPrefixes, "tracking_total_prefixes", 1.0),
    (F::ClusterEnabled, "cluster_enabled", 1.0),
    (F::ProcessId, "process_id", 1.0),
    (F::IoThreadsActive, "io_threads_active", 1.0),
    (F::IoThreadedReads, "io_threaded_reads_processed", 1.0),
    (F::IoThreadedWrites, "io_threaded_writes_processed", 1.0),
    (F::TotalReads, "total_reads_processed", 1.0),
    (F::TotalWrites, "total_writes_processed", 1.0),
    (F::CpuSysMain, "used_cpu_sys_main_thread", 1.0),
    (F::CpuUserMain, "used_cpu_user_main_thread", 1.0),
    (F::DefragHits, "active_defrag_hits", 1.0),
    (F::DefragMisses, "active_defrag_misses", 1.0),
    (F::DefragKeyHits, "active_defrag_key_hits", 1.0),
    (F::DefragKeyMisses, "active_defrag_key_misses", 1.0),
    (F::DumpSanitizations, "dump_payload_sanitizations", 1.0),
    (F::ExpiredStalePerc, "expired_stale_perc", 1.0),
    (F::ExpiredTimeCap, "expired_time_cap_reached_count", 1.0),
    (F::MigrateCachedSockets, "migrate_cached_sockets", 1.0),
    (F::UnexpectedErrorReplies, "unexpected_error_replies", 1.0),
    (F::SlaveExpiresTracked, "slave_expires_tracked_keys", 1.0),
    (F::BacklogActive, "repl_backlog_active", 1.0),
    (F::BacklogFirstByte, "repl_backlog_first_byte_offset", 1.0),
    (F::BacklogHistory, "repl_backlog_histlen", 1.0),
    (F::AofRewriteScheduled, "aof_rewrite_scheduled", 1.0),
    (F::AofLastCow, "aof_last_cow_size", 1.0),
    (F::RdbLastCow, "rdb_last_cow_size", 1.0),
    (F::ModuleForkInProgress, "module_fork_in_progress", 1.0),
    (F::ModuleForkLastCow, "module_fork_last_cow_size", 1.0),
    (F::SlavePriority, "slave_priority", 1.0),
];

/// Most empty databases shown as 0 per node (a server may be configured
/// with thousands).
pub const MAX_EMPTY_DBS: u64 = 64;

/// Fields that read `ok`/`err`.
const STATUS: &[(F, &str)] = &[
    (F::RdbLastStatus, "rdb_last_bgsave_status"),
    (F::AofRewriteStatus, "aof_last_bgrewrite_status"),
    (F::AofWriteStatus, "aof_last_write_status"),
];

fn node_metrics(out: &mut NodeOut, obs: &Observation, base: &[(&str, &str); 2]) {
    let info = &obs.info;
    let (engine, engine_version) = engine(info);
    out.push(
        F::InstanceInfo,
        &[
            base[0],
            base[1],
            ("role", info.get("role").unwrap_or("")),
            ("redis_version", info.get("redis_version").unwrap_or("")),
            (
                "redis_mode",
                info.get("redis_mode")
                    .or(info.get("server_mode"))
                    .unwrap_or(""),
            ),
            ("run_id", info.get("run_id").unwrap_or("")),
            (
                "maxmemory_policy",
                info.get("maxmemory_policy").unwrap_or(""),
            ),
            ("engine", engine),
            ("engine_version", engine_version),
        ],
        1.0,
    );
    for (f, field, scale) in SIMPLE {
        // Some engines write -1 for "unknown" (Dragonfly's
        // rejected_connections); none of these fields is negative when
        // known, and a negative counter would break rate().
        if let Some(v) = info.f64(field).filter(|v| *v >= 0.0) {
            out.push(*f, base, v * scale);
        }
    }
    for (f, field) in STATUS {
        match info.get(field) {
            Some("ok") => out.push(*f, base, 1.0),
            Some(_) => out.push(*f, base, 0.0),
            None => {}
        }
    }
    // -1 means "none" here, and the peer shows it as is.
    if let Some(v) = info.f64("second_repl_offset") {
        out.push(F::SecondReplOffset, base, v);
    }
    if let (Some(now), Some(up)) = (info.f64("server_time_usec"), info.f64("uptime_in_seconds")) {
        out.push(F::StartTime, base, (now / 1e6 - up).floor());
    }
    // -1 before the first save, shown as is (the peer does too: a replica
    // that never saved keeps the series).
    if let Some(v) = info.f64("rdb_last_bgsave_time_sec").filter(|v| *v >= -1.0) {
        out.push(F::RdbLastDuration, base, v);
    }
    if let Some(m) = obs.maxclients {
        out.push(F::MaxClients, base, m as f64);
    }
    for cmd in &obs.denied {
        out.push(F::CommandDenied, &[base[0], base[1], ("command", cmd)], 1.0);
    }

    for (err, count) in &info.errors {
        out.push(
            F::Errors,
            &[base[0], base[1], ("err", err.as_str())],
            *count as f64,
        );
    }
    if let Some(s) = obs.slowlog {
        out.push(F::SlowlogLength, base, s.length as f64);
        out.push(F::SlowlogLastId, base, s.last_id as f64);
    }
    // INFO keyspace lists only databases with keys; empty ones still have
    // their series, 0, as the peer shows them (panels and `sum by (db)` keep
    // a line for an emptied node instead of losing it): every database the
    // server has (CONFIG GET databases, at most MAX_EMPTY_DBS), else db0.
    let dbs = obs.databases.unwrap_or(1).clamp(1, MAX_EMPTY_DBS);
    for i in 0..dbs {
        let name = format!("db{i}");
        if !info.keyspace.iter().any(|db| db.db == name) {
            let l = [base[0], base[1], ("db", name.as_str())];
            out.push(F::DbKeys, &l, 0.0);
            out.push(F::DbExpiring, &l, 0.0);
        }
    }
    for db in &info.keyspace {
        let l = [base[0], base[1], ("db", db.db.as_str())];
        out.push(F::DbKeys, &l, db.keys as f64);
        out.push(F::DbExpiring, &l, db.expires as f64);
        out.push(F::DbAvgTtl, &l, db.avg_ttl_ms as f64 / 1000.0);
    }

    match info.get("role") {
        Some("master") => {
            for r in &info.replicas {
                let port = r.port.to_string();
                let l = [
                    base[0],
                    base[1],
                    ("slave_ip", r.ip.as_str()),
                    ("slave_port", port.as_str()),
                    ("slave_state", r.state.as_str()),
                ];
                out.push(F::SlaveOffset, &l, r.offset as f64);
                out.push(F::SlaveLag, &l, r.lag as f64);
            }
        }
        Some("slave") => {
            // The master as the replica names it, as labels (the peer's
            // master_host and master_port): a link-down alert can say which
            // master the replica lost.
            let link = [
                base[0],
                base[1],
                ("master_host", info.get("master_host").unwrap_or("")),
                ("master_port", info.get("master_port").unwrap_or("")),
            ];
            let link_up = info.get("master_link_status") == Some("up");
            out.push(F::MasterLinkUp, &link, if link_up { 1.0 } else { 0.0 });
            if let Some(v) = info.f64("master_last_io_seconds_ago").filter(|v| *v >= 0.0) {
                out.push(F::MasterLastIo, &link, v);
            }
            if let Some(v) = info.f64("master_sync_in_progress") {
                out.push(F::MasterSyncInProgress, &link, v);
            }
            if let Some(v) = info.f64("slave_repl_offset") {
                out.push(F::SlaveReplOffset, &link, v);
            }
            if !link_up {
                if let Some(v) = info
                    .f64("master_link_down_since_seconds")
                    .filter(|v| *v >= 0.0)
                {
                    out.push(F::MasterLinkDownSince, &link, v);
                }
            }
        }
        _ => {}
    }

    if let Some(ci) = &obs.cluster_info {
        out.push(F::ClusterState, base, if ci.state_ok { 1.0 } else { 0.0 });
        // A field dropped as malformed is left out, not shown as 0.
        for (f, key, v) in [
            (
                F::ClusterSlotsAssigned,
                "cluster_slots_assigned",
                ci.slots_assigned,
            ),
            (F::ClusterSlotsOk, "cluster_slots_ok", ci.slots_ok),
            (F::ClusterSlotsPfail, "cluster_slots_pfail", ci.slots_pfail),
            (F::ClusterSlotsFail, "cluster_slots_fail", ci.slots_fail),
            (F::ClusterKnownNodes, "cluster_known_nodes", ci.known_nodes),
            (F::ClusterSize, "cluster_size", ci.size),
            (
                F::ClusterCurrentEpoch,
                "cluster_current_epoch",
                ci.current_epoch,
            ),
            (F::ClusterMyEpoch, "cluster_my_epoch", ci.my_epoch),
        ] {
            if !ci.dropped.contains(&key) {
                out.push(f, base, v as f64);
            }
        }
        for (t, n) in &ci.messages_sent {
            out.push(
                F::ClusterMsgSent,
                &[base[0], base[1], ("type", t.as_str())],
                *n as f64,
            );
        }
        for (t, n) in &ci.messages_received {
            out.push(
                F::ClusterMsgReceived,
                &[base[0], base[1], ("type", t.as_str())],
                *n as f64,
            );
        }
    }
}

/// The [`COMMAND_FAMILIES`] lines.
fn command_metrics(out: &mut NodeOut, commands: &[CommandStat], base: &[(&str, &str); 2]) {
    for c in commands {
        let l = [base[0], base[1], ("cmd", c.cmd.as_str())];
        out.push(F::Commands, &l, c.calls as f64);
        out.push(F::CommandsDuration, &l, usec_to_seconds(c.usec as f64));
        if let Some(r) = c.rejected_calls {
            out.push(F::CommandsRejected, &l, r as f64);
        }
        if let Some(r) = c.failed_calls {
            out.push(F::CommandsFailed, &l, r as f64);
        }
    }
}

/// The [`LATENCY_FAMILIES`] lines.
fn latency_metrics(out: &mut NodeOut, latencies: &[LatencyStat], base: &[(&str, &str); 2]) {
    for l in latencies {
        for (q, usec) in &l.percentiles {
            out.push(
                F::Latency,
                &[
                    base[0],
                    base[1],
                    ("cmd", l.cmd.as_str()),
                    ("percentile", q.as_str()),
                ],
                usec_to_seconds(*usec),
            );
        }
    }
}

/// Microseconds (to 1 ns) as seconds, without the float noise of a plain
/// division (31.103 µs reads 0.000031103, not 0.000031103000000000004).
fn usec_to_seconds(usec: f64) -> f64 {
    (usec * 1000.0).round() / 1e9
}

/// Labels that name the node (and its cluster) in a page of many nodes,
/// and that a `/scrape?target=` answer leaves out: there the node is the
/// Prometheus target, so its `instance` (and the target labels the
/// documented relabelling derives from `/sd`, `cluster` among them) names
/// it, as with the peer's `/scrape`. Every `addr` in such an answer is the
/// target's own (replication lag and topology lines are filtered to it).
pub const TARGET_LABELS: &[&str] = &["addr", "cluster"];

/// `text` (exposition format, as rendered here) without the
/// [`TARGET_LABELS`] on any sample line; comment lines are kept as they
/// are. A line whose labels were all dropped loses its braces.
pub fn without_target_labels(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let Some(open) = line.find('{').filter(|_| !line.starts_with('#')) else {
            out.push_str(line);
            continue;
        };
        out.push_str(&line[..open]);
        let rest = &line[open + 1..];
        let mut kept: Vec<&str> = Vec::new();
        let mut i = 0;
        let bytes = rest.as_bytes();
        let mut close = None;
        while i < bytes.len() {
            if bytes[i] == b'}' {
                close = Some(i);
                break;
            }
            let start = i;
            // name="value", the value with \\, \" and \n escapes.
            let Some(eq) = rest[i..].find('=') else { break };
            let name = &rest[i..i + eq];
            i += eq + 2; // past ="
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1; // past the closing quote
            let pair = &rest[start..i.min(rest.len())];
            if !TARGET_LABELS.contains(&name) {
                kept.push(pair);
            }
            if i < bytes.len() && bytes[i] == b',' {
                i += 1;
            }
        }
        let Some(close) = close else {
            // Not a line this renderer writes: left alone.
            out.truncate(out.len() - open);
            out.push_str(line);
            continue;
        };
        if !kept.is_empty() {
            out.push('{');
            out.push_str(&kept.join(","));
            out.push('}');
        }
        out.push_str(&rest[close + 1..]);
    }
    out
}

/// Which server software answers, and its own version.
pub fn engine(info: &Info) -> (&'static str, &str) {
    if let Some(v) = info.get("valkey_version") {
        ("valkey", v)
    } else if let Some(v) = info.get("dragonfly_version") {
        ("dragonfly", v)
    } else if info.has_section("KeyDB") || info.get("mvcc_depth").is_some() {
        ("keydb", info.get("redis_version").unwrap_or(""))
    } else {
        ("redis", info.get("redis_version").unwrap_or(""))
    }
}

/// Replication lag for every replica of every polled master.
///
/// Lag in bytes comes from the master's INFO alone. Lag in seconds compares
/// the replica's offset with the master's offset history: the replica's own
/// reading when it is polled and up (freshest), else the master's view of
/// the replica's acknowledged offset (keeps the figure current while the
/// replica hangs). Absent while the replica syncs or its link is down.
fn replication_lag(out: &mut Out, views: &[NodeView], ctx: &RenderContext) {
    // Replicas we poll, by the replication ID they follow.
    let mut replicas_by_replid: HashMap<&str, Vec<&NodeView>> = HashMap::new();
    for v in views {
        if let Some(obs) = &v.last {
            if obs.info.get("role") == Some("slave") {
                if let Some(replid) = obs.info.get("master_replid") {
                    replicas_by_replid.entry(replid).or_default().push(v);
                }
            }
        }
    }
    for m in views {
        let Some(mobs) = &m.last else { continue };
        // Most nodes list no replicas: skip them before the field lookups,
        // which miss the cache on every node of a big fleet.
        if mobs.info.replicas.is_empty() || mobs.info.get("role") != Some("master") {
            continue;
        }
        let Some(master_offset) = mobs.info.u64("master_repl_offset") else {
            continue;
        };
        let replid = mobs.info.get("master_replid").unwrap_or("");
        let polled = replicas_by_replid
            .get(replid)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let history_ok = m.offsets.0 == replid;
        for line in &mobs.info.replicas {
            let line_addr = line.addr();
            // Match the line to a polled replica: same address, or the only
            // replica of this master listening on that port (the master sees
            // the replica's IP, the operator may have configured a name).
            let replica = polled
                .iter()
                .find(|r| r.node.target.addr == line_addr)
                .or_else(|| {
                    let same_port: Vec<_> = polled
                        .iter()
                        .filter(|r| port_of(&r.node.target.addr) == Some(line.port))
                        .collect();
                    (same_port.len() == 1).then(|| same_port[0])
                });
            let addr = replica
                .map(|r| r.node.target.addr.clone())
                .unwrap_or(line_addr);
            if ctx.only_addr.as_deref().is_some_and(|a| a != addr) {
                continue;
            }
            let cluster = replica.map(|r| &*r.cluster).unwrap_or(&*m.cluster);
            let labels = [
                ("addr", addr.as_str()),
                ("cluster", cluster),
                ("master_addr", m.node.target.addr.as_str()),
            ];
            out.push(
                F::ReplLagBytes,
                &labels,
                signals::lag_bytes(master_offset, line.offset) as f64,
            );

            if !history_ok {
                continue;
            }
            let reading = match replica.and_then(|r| r.last.as_ref()) {
                Some(robs) => {
                    let syncing = robs.info.get("master_sync_in_progress") == Some("1");
                    let link_up = robs.info.get("master_link_status") == Some("up");
                    if syncing || !link_up {
                        None
                    } else {
                        robs.info
                            .u64("slave_repl_offset")
                            .map(|o| (o, ctx.clock.secs(robs.asked_at), ctx.clock.secs(robs.at)))
                    }
                }
                None if line.state == "online" => Some((
                    line.offset,
                    ctx.clock.secs(mobs.asked_at) - signals::REPLICA_ACK_SECS,
                    ctx.clock.secs(mobs.at),
                )),
                None => None,
            };
            if let Some((offset, asked, at)) = reading {
                if let Some(lag) = signals::lag_seconds(&m.offsets.1, offset, asked, at) {
                    out.push(F::ReplLagSeconds, &labels, lag);
                }
            }
        }
    }
}

fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

/// The series one observation yields on its own (no history, no peers),
/// labelled for the node: what a poll pre-renders for every scrape.
pub fn render_node(obs: &Observation, addr: &str, cluster: &str) -> NodeText {
    render_node_with(obs, addr, cluster, None)
}

/// [`render_node`], reusing `prev`'s command and latency lines where they
/// were rendered from the very lists `obs` holds, with the same labels.
pub fn render_node_with(
    obs: &Observation,
    addr: &str,
    cluster: &str,
    prev: Option<&NodeText>,
) -> NodeText {
    let info = &obs.info;
    let prev = prev.filter(|p| *p.addr == *addr && *p.cluster == *cluster);
    let same_commands = prev.filter(|p| Arc::ptr_eq(&p.commands, &info.commands));
    let same_latencies = prev.filter(|p| Arc::ptr_eq(&p.latencies, &info.latencies));

    // Room for what the previous poll wrote, so the buffer does not grow
    // by doubling through every poll.
    let capacity = prev.map_or(16 * 1024, |p| p.fresh_len + p.fresh_len / 8);
    let mut out = NodeOut::new(addr, cluster, capacity);
    let base = [("addr", addr), ("cluster", cluster)];
    node_metrics(&mut out, obs, &base);
    if same_commands.is_none() {
        command_metrics(&mut out, &info.commands, &base);
    }
    if same_latencies.is_none() {
        latency_metrics(&mut out, &info.latencies, &base);
    }
    if let Some(r) = signals::clients_saturation(info, obs.maxclients) {
        out.push(F::ClientsSaturation, &base, r);
    }
    if let Some(r) = signals::memory_used_ratio(info) {
        out.push(F::MemoryUsedRatio, &base, r);
    }
    let mut segments = out.into_segments();
    let fresh_len = segments.first().map_or(0, |(_, s)| s.buf.len());
    for (reused, families) in [
        (same_commands, COMMAND_FAMILIES),
        (same_latencies, LATENCY_FAMILIES),
    ] {
        if let Some(p) = reused {
            let kept = p.segments.iter().filter(|(f, _)| families.contains(f));
            segments.extend(kept.cloned());
        }
    }
    segments.sort_by_key(|(f, _)| *f as usize);
    NodeText {
        segments,
        fresh_len,
        addr: addr.into(),
        cluster: cluster.into(),
        commands: info.commands.clone(),
        latencies: info.latencies.clone(),
    }
}

/// A full page for one observation of an up node: what fixture tests pin
/// down for every INFO sample.
pub fn render_observation(obs: &Observation, addr: &str, cluster: &str) -> String {
    let mut out = Out::default();
    out.push(F::Up, &[("addr", addr), ("cluster", cluster)], 1.0);
    out.append(&render_node(obs, addr, cluster));
    out.encode()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
    use prometheus::Encoder;

    /// A node's pre-escaped label prefix writes the same bytes as escaping
    /// every line, for hostile label values too; other labels go the slow
    /// way.
    #[test]
    fn base_labels_written_once_match_write_line() {
        for (addr, cluster) in [("h:1", ""), ("a\\b\"c\nd:1", "x\"y"), ("", "c")] {
            let mut out = NodeOut::new(addr, cluster, 0);
            let mut slow = String::new();
            let lines = [
                (F::Uptime, vec![("addr", addr), ("cluster", cluster)], 7.0),
                (
                    F::Commands,
                    vec![("addr", addr), ("cluster", cluster), ("cmd", "g\"et")],
                    1.5,
                ),
                (
                    F::Uptime,
                    vec![("addr", "other"), ("cluster", cluster)],
                    1.0,
                ),
                (F::Uptime, vec![("addr", addr)], 2.0),
                (
                    F::Uptime,
                    vec![("addr", addr), ("cluster", cluster)],
                    f64::NAN,
                ),
            ];
            for (f, labels, v) in &lines {
                out.push(*f, labels, *v);
                write_line(&mut slow, *f, labels, *v);
            }
            assert_eq!(out.buf, slow);
        }
    }

    /// Our writer and the prometheus crate's TextEncoder agree byte for byte
    /// on the same samples, escapes and special values included.
    #[test]
    fn writer_matches_the_prometheus_crate() {
        type Sample<'a> = (F, Vec<(&'a str, &'a str)>, f64);
        let samples: Vec<Sample> = vec![
            (F::Up, vec![("addr", "h:1"), ("cluster", "")], 1.0),
            (F::Up, vec![("addr", "h:2"), ("cluster", "c")], 0.0),
            (
                F::Commands,
                vec![
                    ("addr", "a\\b\"c\nd"),
                    ("cluster", ""),
                    ("cmd", "client|list"),
                ],
                12345678901.0,
            ),
            (
                F::Latency,
                vec![
                    ("addr", "h:1"),
                    ("cluster", ""),
                    ("cmd", "get"),
                    ("percentile", "99.9"),
                ],
                0.000031103,
            ),
            (F::MemFrag, vec![("addr", "h:1"), ("cluster", "x")], 1.5e-7),
            (F::BuildInfo, vec![("version", "1")], 1.0),
            (F::PollInterval, vec![], 5.0),
            (F::MemUsed, vec![("addr", "h"), ("cluster", "")], 1e21),
            // The integer path and its edges: what it takes must print as
            // Display does, what it leaves must still go through Display.
            (F::Uptime, vec![], 0.0),
            (F::Uptime, vec![], -0.0),
            (F::Uptime, vec![], 7.0),
            (F::Uptime, vec![], -42.0),
            (F::Uptime, vec![], 1234567890123.0),
            (F::Uptime, vec![], 9007199254740991.0),
            (F::Uptime, vec![], -9007199254740991.0),
            (F::Uptime, vec![], 9007199254740992.0),
            (F::Uptime, vec![], 18014398509481990.0),
            (F::Uptime, vec![], 9.3e18),
            (F::Uptime, vec![], -9.3e18),
            (F::Uptime, vec![], 1.2e300),
            (F::Uptime, vec![], 0.5),
            (F::Uptime, vec![], -0.25),
            (F::Uptime, vec![], 1e-300),
            (F::Uptime, vec![], 4503599627370495.5),
            (F::Uptime, vec![], f64::MAX),
            (F::Uptime, vec![], f64::MIN_POSITIVE),
        ];
        let mut ours = Out::default();
        for (f, labels, v) in &samples {
            ours.push(*f, labels, *v);
        }
        let mut by_family: Vec<(F, Vec<Metric>)> = Vec::new();
        for id in FAMILY_IDS {
            let metrics: Vec<Metric> = samples
                .iter()
                .filter(|(f, _, _)| f == id)
                .map(|(f, labels, v)| {
                    let mut m = Metric::from_label(
                        labels
                            .iter()
                            .map(|(k, val)| {
                                let mut l = LabelPair::default();
                                l.set_name(k.to_string());
                                l.set_value(val.to_string());
                                l
                            })
                            .collect(),
                    );
                    match FAMILIES[*f as usize].kind {
                        Kind::Gauge => {
                            let mut g = Gauge::default();
                            g.set_value(*v);
                            m.set_gauge(g);
                        }
                        Kind::Counter => {
                            let mut c = Counter::default();
                            c.set_value(*v);
                            m.set_counter(c);
                        }
                    }
                    m
                })
                .collect();
            if !metrics.is_empty() {
                by_family.push((*id, metrics));
            }
        }
        let mfs: Vec<MetricFamily> = by_family
            .into_iter()
            .map(|(f, metrics)| {
                let def = &FAMILIES[f as usize];
                let mut mf = MetricFamily::default();
                mf.set_name(def.name.to_string());
                mf.set_help(def.help.to_string());
                mf.set_field_type(match def.kind {
                    Kind::Gauge => MetricType::GAUGE,
                    Kind::Counter => MetricType::COUNTER,
                });
                mf.set_metric(metrics);
                mf
            })
            .collect();
        let mut theirs = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&mfs, &mut theirs)
            .unwrap();
        assert_eq!(ours.encode(), String::from_utf8(theirs).unwrap());
    }
    fn fixture(name: &str) -> Info {
        let path = format!(
            "{}/tests/fixtures/info/redis-7.0.15-{name}.txt",
            env!("CARGO_MANIFEST_DIR")
        );
        crate::parse::info::parse_info(&std::fs::read_to_string(path).unwrap())
    }

    fn observation(info: Info) -> Observation {
        Observation::from_info(info)
    }

    #[test]
    fn target_labels_leave_scrape_answers() {
        let text = "# HELP redis_up x\n# TYPE redis_up gauge\nredis_up{addr=\"h:1\",cluster=\"\"} 1\n\
                    redis_db_keys{addr=\"h:1\",cluster=\"c\",db=\"db0\"} 3\n\
                    redis_commands_total{addr=\"a\\\\b\\\"c\",cmd=\"g\\\"}et\"} 7\n\
                    redis_vitals_build_info{version=\"1\"} 1\nredis_vitals_poll_interval_seconds 5\n";
        assert_eq!(
            without_target_labels(text),
            "# HELP redis_up x\n# TYPE redis_up gauge\nredis_up 1\n\
             redis_db_keys{db=\"db0\"} 3\n\
             redis_commands_total{cmd=\"g\\\"}et\"} 7\n\
             redis_vitals_build_info{version=\"1\"} 1\nredis_vitals_poll_interval_seconds 5\n"
        );
    }

    fn texts(t: &NodeText) -> Vec<(F, String)> {
        t.segments()
            .iter()
            .map(|(f, l)| (*f, l.to_string()))
            .collect()
    }

    fn segment(t: &NodeText, f: F) -> Seg {
        t.segments()
            .iter()
            .find(|(g, _)| *g == f)
            .unwrap()
            .1
            .clone()
    }

    /// A poll without commandstats or latencystats carries their lists
    /// forward; their lines are then shared, not re-rendered, and read the
    /// same as a fresh render.
    #[test]
    fn command_lines_are_reused_while_their_lists_are() {
        let first = observation(fixture("master-2-replicas"));
        let t1 = render_node(&first, "h:1", "c");
        assert!(!first.info.commands.is_empty() && !first.info.latencies.is_empty());

        // A fast poll: new plain fields, the same lists.
        let mut info = fixture("master-2-replicas");
        info.commands = first.info.commands.clone();
        info.latencies = first.info.latencies.clone();
        let fast = observation(info);
        let t2 = render_node_with(&fast, "h:1", "c", Some(&t1));
        assert_eq!(texts(&t2), texts(&render_node(&fast, "h:1", "c")));
        for f in [F::Commands, F::CommandsDuration, F::Latency] {
            assert!(segment(&t1, f).same(&segment(&t2, f)), "{f:?}");
        }
        assert!(!segment(&t1, F::Uptime).same(&segment(&t2, F::Uptime)));

        // A detail poll: new lists, with a changed count.
        let mut info = fixture("master-2-replicas");
        Arc::make_mut(&mut info.commands)[0].calls += 1000;
        info.latencies = first.info.latencies.clone();
        let detail = observation(info);
        let t3 = render_node_with(&detail, "h:1", "c", Some(&t2));
        assert_eq!(texts(&t3), texts(&render_node(&detail, "h:1", "c")));
        assert_ne!(&*segment(&t3, F::Commands), &*segment(&t2, F::Commands));
        assert!(segment(&t2, F::Latency).same(&segment(&t3, F::Latency)));

        // New labels: nothing is reused.
        let t4 = render_node_with(&detail, "h:1", "other", Some(&t3));
        assert_eq!(texts(&t4), texts(&render_node(&detail, "h:1", "other")));
        assert!(!segment(&t3, F::Latency).same(&segment(&t4, F::Latency)));
    }

    fn node(addr: &str, cluster: &str) -> Arc<NodeState> {
        let (host, port) = addr.rsplit_once(':').unwrap();
        Arc::new(NodeState::new(crate::redis::target::Target {
            endpoint: crate::redis::target::Endpoint::Tcp {
                host: host.into(),
                port: port.parse().unwrap(),
            },
            addr: addr.into(),
            db: 0,
            user: None,
            password: None,
            cluster: cluster.into(),
            maxclients_override: None,
            config_command: None,
            insight: None,
            discovered: false,
            from_sentinel: false,
            tls: None,
        }))
    }

    /// A varied fleet: masters with replicas, replicas, cluster nodes,
    /// nodes never polled and nodes down, hit ratios, poll errors.
    fn fleet(clock: crate::clock::Clock) -> Vec<Arc<NodeState>> {
        let kinds = [
            "master-2-replicas",
            "replica",
            "cluster-master",
            "cluster-replica",
            "standalone",
        ];
        let mut nodes = Vec::new();
        for i in 0..60 {
            let cluster = if i % 3 == 0 { "c1" } else { "" };
            let n = node(&format!("10.0.0.{i}:{}", 6379 + i), cluster);
            {
                let mut st = n.status();
                st.polls_total = i as u64;
                st.connections_opened = 1;
                if i % 7 == 3 {
                    // Down after an error; never polled when i % 14 == 3.
                    st.errors_total.insert(crate::error::Reason::Timeout, 2);
                    if i % 14 == 10 {
                        st.last_poll_duration = Some(std::time::Duration::from_millis(3));
                    }
                } else {
                    let info = fixture(kinds[i % kinds.len()]);
                    let mut c = crate::signals::Counters::from_info(&info);
                    let obs = observation(info);
                    let now = clock.secs(obs.at);
                    st.history.record(now - 10.0, &c, 60.0, 60.0);
                    c.hits += 30 + i as u64;
                    c.misses += 10;
                    c.master_repl_offset = c.master_repl_offset.map(|o| o + 100);
                    st.history.record(now, &c, 60.0, 60.0);
                    let cluster = st.cluster.clone();
                    st.rendered = Some(Arc::new(render_node(&obs, &n.target.addr, &cluster)));
                    st.last = Some(Arc::new(obs));
                    st.last_poll_duration = Some(std::time::Duration::from_micros(1500));
                }
                // Half the nodes carry state lines from their last poll
                // (the others are rendered by the page); every fifth of
                // those was relabelled by discovery since, so its lines
                // are stale and must not be served.
                if i % 2 == 0 {
                    let text = render_state(&n.target.addr, &st, 60.0);
                    st.state_text = Some(Arc::new(text));
                    if i % 5 == 0 {
                        st.cluster = Arc::from("relabelled");
                    }
                }
            }
            nodes.push(n);
        }
        nodes
    }

    fn context(clock: crate::clock::Clock, only_addr: Option<&str>) -> RenderContext {
        let topo = crate::expose::topology::TopoNode {
            addr: "10.0.0.0:6379".into(),
            cluster: "c1".into(),
            node_id: "abc".into(),
            role: "master",
            shard: "0-5460".into(),
            master_addr: String::new(),
            slots: 5461,
            fail: false,
            pfail: false,
            link_up: Some(true),
        };
        RenderContext {
            clock,
            hit_window: 60.0,
            poll_interval: 5.0,
            only_addr: only_addr.map(String::from),
            topology: Arc::new(vec![topo]),
            process: Some(crate::expose::process::Sample {
                threads: Some(3),
                ..Default::default()
            }),
            tasks: Some(12),
            web_reload: None,
            stale_after: None,
            discovery_refused: Vec::new(),
            shard: None,
            sentinels: Default::default(),
        }
    }

    /// The page as the previous renderer built it: every family's lines
    /// collected whole, then written in catalogue order.
    fn render_whole(nodes: &[Arc<NodeState>], ctx: &RenderContext) -> String {
        let views = views(nodes, ctx.hit_window, ctx.stale_after);
        let mut out = Out::default();
        out.push(F::BuildInfo, &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
        out.push(F::PollInterval, &[], ctx.poll_interval);
        if ctx.only_addr.is_none() {
            out.push(F::Tasks, &[], ctx.tasks.unwrap() as f64);
        }
        for v in &views {
            if ctx
                .only_addr
                .as_deref()
                .is_some_and(|a| a != v.node.target.addr)
            {
                continue;
            }
            let st = v.node.status();
            for f in STATE_FAMILIES {
                let buf = &mut out.families[*f as usize];
                write_state_lines(
                    buf,
                    *f,
                    &v.node.target.addr,
                    &st,
                    ctx.hit_window,
                    st.last.is_some(),
                );
            }
            drop(st);
            write_age_line(&mut out.families[F::LastSuccessAge as usize], v);
            if let Some(text) = node_text(v) {
                out.append(text);
            }
        }
        replication_lag(&mut out, &views, ctx);
        crate::expose::topology::render(&mut out, &ctx.topology, ctx.only_addr.as_deref());
        let mut page = out.encode();
        if let (None, Some(sample)) = (&ctx.only_addr, &ctx.process) {
            page.push_str(&crate::expose::process::render(sample));
        }
        page
    }

    /// The streamed page is the whole page cut into chunks of at most
    /// CHUNK_SIZE bytes.
    #[test]
    fn streamed_page_matches_the_whole_page() {
        let clock = crate::clock::Clock::new();
        let nodes = fleet(clock);
        for only in [None, Some("10.0.0.0:6379"), Some("10.0.0.3:6382")] {
            let ctx = context(clock, only);
            let mut page = Page::new(&nodes, &ctx);
            let len = page.len();
            let mut chunks = Vec::new();
            while let Some(c) = page.next_chunk() {
                chunks.push(c);
            }
            assert!(page.next_chunk().is_none());
            assert!(chunks
                .iter()
                .all(|c| !c.is_empty() && c.len() <= CHUNK_SIZE));
            let streamed = chunks.concat();
            assert_eq!(streamed.len(), len, "{only:?}");
            assert_eq!(streamed, render_whole(&nodes, &ctx), "{only:?}");
            if only.is_none() {
                assert!(chunks.len() > 5, "{} chunks", chunks.len());
                for f in [F::HitRatio, F::ReplLagBytes, F::ClusterNodeInfo, F::Tasks] {
                    let name = FAMILIES[f as usize].name;
                    assert!(streamed.contains(&format!("\n{name}")), "{name}");
                }
                assert!(streamed.ends_with("process_threads 3\n"));
            }
        }

        // Ages are taken once, when the page is created: the length holds.
        for n in &nodes {
            n.status().last_success = Some(Instant::now());
        }
        let ctx = context(clock, None);
        let mut page = Page::new(&nodes, &ctx);
        let len = page.len();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let mut streamed = 0;
        while let Some(c) = page.next_chunk() {
            streamed += c.len();
        }
        assert_eq!(streamed, len);
    }

    #[test]
    fn a_node_whose_data_is_overdue_is_shown_down() {
        let clock = crate::clock::Clock::new();
        let n = node("10.0.0.1:6379", "");
        {
            let mut st = n.status();
            let obs = observation(fixture("standalone"));
            st.rendered = Some(Arc::new(render_node(&obs, "10.0.0.1:6379", "")));
            st.last = Some(Arc::new(obs));
            st.last_success = Some(Instant::now() - std::time::Duration::from_secs(8));
            let text = render_state("10.0.0.1:6379", &st, 60.0);
            st.state_text = Some(Arc::new(text));
        }
        let nodes = [n];
        let mut ctx = context(clock, None);
        ctx.topology = Arc::new(Vec::new());
        let up = |ctx: &RenderContext| {
            let page = render(&nodes, ctx);
            let line = page
                .lines()
                .find(|l| l.starts_with("redis_up{"))
                .unwrap()
                .to_string();
            (line, page.contains("redis_uptime_in_seconds{"))
        };
        // 8 s old against 5 s + 2 s: down, and none of its other series.
        ctx.stale_after = Some(stale_after(
            std::time::Duration::from_secs(5),
            std::time::Duration::from_secs(2),
        ));
        let (line, series) = up(&ctx);
        assert!(line.ends_with(" 0"), "{line}");
        assert!(!series);
        // 8 s old against 10 s + 2 s: fresh enough.
        ctx.stale_after = Some(stale_after(
            std::time::Duration::from_secs(10),
            std::time::Duration::from_secs(2),
        ));
        let (line, series) = up(&ctx);
        assert!(line.ends_with(" 1"), "{line}");
        assert!(series);
        // The age line is still written, so the staleness is visible.
        assert!(render(&nodes, &ctx).contains("redis_vitals_last_success_age_seconds{"));
    }
}
