//! The metric catalogue (every family we expose, with its type and help)
//! and the rendered-text types a poll stores in a node's snapshot
//! ([`NodeText`], [`StateText`]). Apart from the renderer (`expose`) so
//! that the snapshot (`expose::state`) can hold rendered text without
//! depending on the renderer.

use std::sync::Arc;

use crate::parse::info::{CommandStat, LatencyStat};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

#[derive(Debug)]
pub struct FamilyDef {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

macro_rules! families {
    ($( $id:ident = $name:literal, $kind:ident, $help:literal; )*) => {
        /// Every metric family, in exposition order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum F { $($id),* }
        pub const FAMILIES: &[FamilyDef] = &[ $( FamilyDef { name: $name, kind: Kind::$kind, help: $help } ),* ];
        /// `F` by catalogue index (tests walk the catalogue with it).
        #[cfg(test)]
        pub(crate) const FAMILY_IDS: &[F] = &[ $( F::$id ),* ];
    };
}

families! {
    Up = "redis_up", Gauge, "1 if the last poll of the node succeeded, 0 if it failed.";
    InstanceInfo = "redis_instance_info", Gauge, "Always 1; labels describe the server (role, version, mode, run_id, maxmemory_policy, engine).";
    Uptime = "redis_uptime_in_seconds", Gauge, "Seconds since the server started.";
    MaxClients = "redis_config_maxclients", Gauge, "Client limit (INFO maxclients, else CONFIG GET, else the configured override).";
    ConnectedClients = "redis_connected_clients", Gauge, "Client connections, excluding replicas.";
    BlockedClients = "redis_blocked_clients", Gauge, "Clients waiting on a blocking command.";
    ClusterConnections = "redis_cluster_connections", Gauge, "Cluster bus connections (count against maxclients).";
    ConnectedSlaves = "redis_connected_slaves", Gauge, "Replicas connected to this master.";
    MemUsed = "redis_memory_used_bytes", Gauge, "Bytes allocated by Redis (used_memory).";
    MemRss = "redis_memory_used_rss_bytes", Gauge, "Resident set size of the server process in bytes.";
    MemPeak = "redis_memory_used_peak_bytes", Gauge, "Peak of used_memory in bytes.";
    MemSystem = "redis_total_system_memory_bytes", Gauge, "Memory of the host as the server sees it, in bytes.";
    MemMax = "redis_memory_max_bytes", Gauge, "maxmemory in bytes; 0 means no limit.";
    MemFrag = "redis_mem_fragmentation_ratio", Gauge, "RSS / used_memory; noisy on small datasets, below 1 means swapping.";
    AllocFrag = "redis_allocator_frag_ratio", Gauge, "The allocator's own fragmentation ratio.";
    Hits = "redis_keyspace_hits_total", Counter, "Successful key lookups.";
    Misses = "redis_keyspace_misses_total", Counter, "Failed key lookups.";
    Evicted = "redis_evicted_keys_total", Counter, "Keys removed because of maxmemory.";
    Expired = "redis_expired_keys_total", Counter, "Keys removed because their TTL passed.";
    Rejected = "redis_rejected_connections_total", Counter, "Connections refused because of maxclients.";
    ConnsReceived = "redis_connections_received_total", Counter, "Connections accepted by the server.";
    CommandsProcessed = "redis_commands_processed_total", Counter, "Commands processed by the server.";
    NetIn = "redis_net_input_bytes_total", Counter, "Bytes read from the network.";
    NetOut = "redis_net_output_bytes_total", Counter, "Bytes written to the network.";
    ErrorReplies = "redis_error_replies_total", Counter, "Error replies sent by the server (6.2+).";
    SyncFull = "redis_sync_full_total", Counter, "Full resynchronisations served to replicas.";
    SyncPartialOk = "redis_sync_partial_ok_total", Counter, "Accepted partial resynchronisation requests.";
    SyncPartialErr = "redis_sync_partial_err_total", Counter, "Refused partial resynchronisation requests.";
    CpuSys = "redis_cpu_sys_seconds_total", Counter, "System CPU seconds of the server process.";
    CpuUser = "redis_cpu_user_seconds_total", Counter, "User CPU seconds of the server process.";
    CpuSysChildren = "redis_cpu_sys_children_seconds_total", Counter, "System CPU seconds of background children (fork for RDB/AOF).";
    CpuUserChildren = "redis_cpu_user_children_seconds_total", Counter, "User CPU seconds of background children.";
    Commands = "redis_commands_total", Counter, "Calls per command.";
    CommandsDuration = "redis_commands_duration_seconds_total", Counter, "Seconds spent per command.";
    CommandsRejected = "redis_commands_rejected_calls_total", Counter, "Calls refused before execution per command (ACL, OOM, arity...; 6.2+).";
    CommandsFailed = "redis_commands_failed_calls_total", Counter, "Calls that failed during execution per command (6.2+).";
    Errors = "redis_errors_total", Counter, "Error replies by error prefix (errorstats, 6.2+).";
    Latency = "redis_latency_percentiles_seconds", Gauge, "Per-command latency percentile (label percentile: 50, 99, 99.9) since start or reset (latencystats, 7.0+). A gauge, not a summary: the server computes the percentiles.";
    Loading = "redis_loading_dump_file", Gauge, "1 while the server loads its dataset from disk.";
    RdbInProgress = "redis_rdb_bgsave_in_progress", Gauge, "1 while an RDB save runs.";
    RdbChanges = "redis_rdb_changes_since_last_save", Gauge, "Writes since the last RDB save.";
    RdbLastSave = "redis_rdb_last_save_timestamp_seconds", Gauge, "Unix time of the last successful RDB save.";
    RdbLastStatus = "redis_rdb_last_bgsave_status", Gauge, "1 if the last RDB save succeeded, 0 if it failed.";
    RdbLastDuration = "redis_rdb_last_bgsave_duration_seconds", Gauge, "Duration of the last RDB save; -1 when the server has not saved since it started.";
    AofEnabled = "redis_aof_enabled", Gauge, "1 if the append-only file is on.";
    AofRewriteInProgress = "redis_aof_rewrite_in_progress", Gauge, "1 while an AOF rewrite runs.";
    AofRewriteStatus = "redis_aof_last_bgrewrite_status", Gauge, "1 if the last AOF rewrite succeeded.";
    AofWriteStatus = "redis_aof_last_write_status", Gauge, "1 if the last AOF write succeeded.";
    MasterReplOffset = "redis_master_repl_offset", Gauge, "The server's replication offset in bytes.";
    BacklogSize = "redis_replication_backlog_bytes", Gauge, "Size of the replication backlog in bytes.";
    SlaveOffset = "redis_connected_slave_offset_bytes", Gauge, "A connected replica's last acknowledged offset, as its master sees it.";
    SlaveLag = "redis_connected_slave_lag_seconds", Gauge, "Seconds since a connected replica's last ACK, as its master sees it.";
    MasterLinkUp = "redis_master_link_up", Gauge, "Replica side: 1 if the link to the master is up.";
    MasterLastIo = "redis_master_last_io_seconds_ago", Gauge, "Replica side: seconds since the last interaction with the master.";
    MasterSyncInProgress = "redis_master_sync_in_progress", Gauge, "Replica side: 1 while a full sync from the master runs.";
    SlaveReplOffset = "redis_slave_repl_offset", Gauge, "Replica side: the replica's replication offset in bytes.";
    MasterLinkDownSince = "redis_master_link_down_since_seconds", Gauge, "Replica side: seconds the link to the master has been down (only while down).";
    DbKeys = "redis_db_keys", Gauge, "Keys in the database.";
    DbExpiring = "redis_db_keys_expiring", Gauge, "Keys with a TTL in the database.";
    DbAvgTtl = "redis_db_avg_ttl_seconds", Gauge, "Average TTL of keys with one, estimated by the server.";
    PubsubChannels = "redis_pubsub_channels", Gauge, "Channels with subscribers.";
    PubsubPatterns = "redis_pubsub_patterns", Gauge, "Pattern subscriptions.";
    LatestFork = "redis_latest_fork_seconds", Gauge, "Duration of the latest fork.";
    ActiveDefragRunning = "redis_active_defrag_running", Gauge, "1 while active defragmentation runs (its CPU share on 7.0+).";
    AllocatorActive = "redis_allocator_active_bytes", Gauge, "Bytes in the allocator's active pages (allocator_active).";
    AllocatorAllocated = "redis_allocator_allocated_bytes", Gauge, "Bytes allocated as the allocator counts them (allocator_allocated).";
    AllocatorFragBytes = "redis_allocator_frag_bytes", Gauge, "allocator_active - allocator_allocated in bytes.";
    AllocatorResident = "redis_allocator_resident_bytes", Gauge, "Bytes resident in the allocator (allocator_resident).";
    AllocatorRssBytes = "redis_allocator_rss_bytes", Gauge, "allocator_resident - allocator_active in bytes.";
    AllocatorRssRatio = "redis_allocator_rss_ratio", Gauge, "allocator_resident / allocator_active.";
    MemFragBytes = "redis_mem_fragmentation_bytes", Gauge, "RSS - used_memory in bytes.";
    MemNotCountedForEviction = "redis_mem_not_counted_for_eviction_bytes", Gauge, "Bytes not counted against maxmemory (replica and AOF buffers).";
    MemDataset = "redis_memory_used_dataset_bytes", Gauge, "used_memory minus the overhead: the data itself, in bytes.";
    MemLua = "redis_memory_used_lua_bytes", Gauge, "Bytes used by the Lua engine.";
    MemOverhead = "redis_memory_used_overhead_bytes", Gauge, "Bytes of server overhead (buffers, dictionaries).";
    MemScripts = "redis_memory_used_scripts_bytes", Gauge, "Bytes of cached scripts.";
    MemStartup = "redis_memory_used_startup_bytes", Gauge, "Bytes used at start-up.";
    MemClientsNormal = "redis_mem_clients_normal", Gauge, "Bytes of normal clients' buffers.";
    MemClientsSlaves = "redis_mem_clients_slaves", Gauge, "Bytes of replica clients' buffers.";
    LazyfreePending = "redis_lazyfree_pending_objects", Gauge, "Objects waiting to be freed in the background.";
    CachedScripts = "redis_number_of_cached_scripts", Gauge, "Scripts in the script cache.";
    ClientRecentMaxInput = "redis_client_recent_max_input_buffer_bytes", Gauge, "Largest client input buffer recently, in bytes.";
    ClientRecentMaxOutput = "redis_client_recent_max_output_buffer_bytes", Gauge, "Largest client output buffer recently, in bytes.";
    ClientsInTimeoutTable = "redis_clients_in_timeout_table", Gauge, "Blocked clients with a timeout.";
    TrackingClients = "redis_tracking_clients", Gauge, "Clients with client-side caching tracking on.";
    TrackingItems = "redis_tracking_total_items", Gauge, "Items in the tracking table (keys x clients).";
    TrackingKeys = "redis_tracking_total_keys", Gauge, "Keys in the tracking table.";
    TrackingPrefixes = "redis_tracking_total_prefixes", Gauge, "Prefixes in the broadcast-mode tracking table.";
    ClusterEnabled = "redis_cluster_enabled", Gauge, "1 if the server runs in cluster mode.";
    ProcessId = "redis_process_id", Gauge, "The server's process id.";
    IoThreadsActive = "redis_io_threads_active", Gauge, "1 while the I/O threads are in use.";
    IoThreadedReads = "redis_io_threaded_reads_processed", Gauge, "Reads handled by the I/O threads (a counter, named as the peer names it).";
    IoThreadedWrites = "redis_io_threaded_writes_processed", Gauge, "Writes handled by the I/O threads (a counter, named as the peer names it).";
    TotalReads = "redis_total_reads_processed", Gauge, "Read events processed (a counter, named as the peer names it).";
    TotalWrites = "redis_total_writes_processed", Gauge, "Write events processed (a counter, named as the peer names it).";
    CpuSysMain = "redis_cpu_sys_main_thread_seconds_total", Counter, "System CPU seconds of the main thread.";
    CpuUserMain = "redis_cpu_user_main_thread_seconds_total", Counter, "User CPU seconds of the main thread.";
    DefragHits = "redis_defrag_hits", Gauge, "Values moved by active defragmentation (a counter, named as the peer names it).";
    DefragMisses = "redis_defrag_misses", Gauge, "Values active defragmentation skipped (a counter, named as the peer names it).";
    DefragKeyHits = "redis_defrag_key_hits", Gauge, "Keys active defragmentation moved (a counter, named as the peer names it).";
    DefragKeyMisses = "redis_defrag_key_misses", Gauge, "Keys active defragmentation skipped (a counter, named as the peer names it).";
    DumpSanitizations = "redis_dump_payload_sanitizations", Gauge, "Deep RESTORE payload checks (a counter, named as the peer names it).";
    ExpiredStalePerc = "redis_expired_stale_percentage", Gauge, "Estimated percentage of keys that are expired but not yet removed.";
    ExpiredTimeCap = "redis_expired_time_cap_reached_total", Counter, "Active expire cycles stopped by their time limit.";
    MigrateCachedSockets = "redis_migrate_cached_sockets_total", Counter, "Sockets open for MIGRATE (a gauge despite the peer's name).";
    UnexpectedErrorReplies = "redis_unexpected_error_replies", Gauge, "Error replies of unexpected kinds (AOF load, replication; a counter, named as the peer names it).";
    SlaveExpiresTracked = "redis_slave_expires_tracked_keys", Gauge, "Keys a writable replica tracks for expiry.";
    SecondReplOffset = "redis_second_repl_offset", Gauge, "Offset up to which the previous replication ID is accepted (-1 if none).";
    BacklogActive = "redis_repl_backlog_is_active", Gauge, "1 while the replication backlog exists.";
    BacklogFirstByte = "redis_repl_backlog_first_byte_offset", Gauge, "Master offset of the backlog's first byte.";
    BacklogHistory = "redis_repl_backlog_history_bytes", Gauge, "Bytes of data in the replication backlog.";
    AofRewriteScheduled = "redis_aof_rewrite_scheduled", Gauge, "1 while an AOF rewrite waits for an RDB save to end.";
    AofLastCow = "redis_aof_last_cow_size_bytes", Gauge, "Copy-on-write bytes of the last AOF rewrite.";
    RdbLastCow = "redis_rdb_last_cow_size_bytes", Gauge, "Copy-on-write bytes of the last RDB save.";
    ModuleForkInProgress = "redis_module_fork_in_progress", Gauge, "1 while a module fork runs.";
    ModuleForkLastCow = "redis_module_fork_last_cow_size", Gauge, "Copy-on-write bytes of the last module fork.";
    SlavePriority = "redis_slave_priority", Gauge, "Replica side: the replica's priority for promotion.";
    StartTime = "redis_start_time_seconds", Gauge, "Unix time the server started (server_time_usec - uptime).";
    SlowlogLength = "redis_slowlog_length", Gauge, "Entries in the slow log (SLOWLOG LEN), read every poll.detail-interval.";
    SlowlogLastId = "redis_slowlog_last_id", Gauge, "Id of the newest slow-log entry (0 when the log is empty); it grows by one per slow command, so increase() counts them.";
    HitRatio = "redis_keyspace_hit_ratio", Gauge, "Hits / (hits + misses) over the hit-ratio window; absent when the window saw no lookups.";
    ClientsSaturation = "redis_clients_saturation_ratio", Gauge, "(clients + replicas + cluster bus connections) / maxclients; absent when no limit is known.";
    MemoryUsedRatio = "redis_memory_used_ratio", Gauge, "used_memory / maxmemory; absent when maxmemory is 0.";
    ReplLagBytes = "redis_replication_lag_bytes", Gauge, "Bytes the replica (addr) lacks: master offset minus its acknowledged offset, from one master INFO.";
    ReplLagSeconds = "redis_replication_lag_seconds", Gauge, "Seconds of the master's writes the replica (addr) is missing; 0 when caught up; absent during full sync or link down.";
    ClusterState = "redis_cluster_state", Gauge, "1 if this node sees the cluster state ok, 0 if fail.";
    ClusterSlotsAssigned = "redis_cluster_slots_assigned", Gauge, "Slots bound to a node (16384 when fully covered).";
    ClusterSlotsOk = "redis_cluster_slots_ok", Gauge, "Slots whose node is not failing.";
    ClusterSlotsPfail = "redis_cluster_slots_pfail", Gauge, "Slots whose node is possibly failing (still served).";
    ClusterSlotsFail = "redis_cluster_slots_fail", Gauge, "Slots whose node is failing.";
    ClusterKnownNodes = "redis_cluster_known_nodes", Gauge, "Nodes this node knows, handshaking ones included.";
    ClusterSize = "redis_cluster_size", Gauge, "Masters serving at least one slot.";
    ClusterCurrentEpoch = "redis_cluster_current_epoch", Gauge, "The cluster's current epoch as this node sees it.";
    ClusterMyEpoch = "redis_cluster_my_epoch", Gauge, "This node's config epoch.";
    ClusterMsgSent = "redis_cluster_messages_sent_total", Counter, "Cluster bus messages sent, by type.";
    ClusterMsgReceived = "redis_cluster_messages_received_total", Counter, "Cluster bus messages received, by type.";
    ClusterNodeInfo = "redis_cluster_node_info", Gauge, "Always 1 per cluster node; node_id, role, shard and master_addr as the cluster sees them.";
    ClusterNodeSlots = "redis_cluster_node_slots", Gauge, "Hash slots the node owns (0 for replicas).";
    ClusterNodeFail = "redis_cluster_node_fail", Gauge, "1 when most peers that answered flag the node fail.";
    ClusterNodePfail = "redis_cluster_node_pfail", Gauge, "1 when most peers that answered flag the node fail? (possibly failing).";
    ClusterNodeLinkUp = "redis_cluster_node_link_up", Gauge, "1 when most peers report their cluster bus link to the node connected.";
    SentinelUp = "redis_sentinel_up", Gauge, "1 if the exporter's last poll of the Sentinel (label sentinel) succeeded, 0 if it failed.";
    SentinelMasters = "redis_sentinel_masters", Gauge, "Masters the Sentinel monitors (INFO sentinel_masters).";
    SentinelTilt = "redis_sentinel_tilt", Gauge, "1 while the Sentinel is in TILT mode (it acts on nothing).";
    SentinelRunningScripts = "redis_sentinel_running_scripts", Gauge, "Notification/reconfiguration scripts the Sentinel is running.";
    SentinelMasterStatus = "redis_sentinel_master_status", Gauge, "Always 1 per Sentinel and master name; labels master_address and master_status (ok, sdown, odown) as that Sentinel sees them.";
    SentinelMasterSlaves = "redis_sentinel_master_slaves", Gauge, "Replicas the Sentinel knows for the master, down ones included (num-slaves).";
    SentinelMasterOkSlaves = "redis_sentinel_master_ok_slaves", Gauge, "Replicas the Sentinel knows for the master that are neither subjectively down nor disconnected.";
    SentinelMasterSentinels = "redis_sentinel_master_sentinels", Gauge, "Sentinels monitoring the master as this Sentinel knows them, itself included (num-other-sentinels + 1).";
    SentinelMasterQuorum = "redis_sentinel_master_quorum", Gauge, "The master's configured quorum.";
    SentinelMasterCkquorum = "redis_sentinel_master_ckquorum", Gauge, "1 if SENTINEL CKQUORUM says quorum and failover authorisation can be reached, 0 if not; absent until checked (sentinel.ckquorum-interval).";
    SentinelMasterSdown = "redis_sentinel_master_sdown", Gauge, "1 if this Sentinel sees the master subjectively down.";
    SentinelMasterOdown = "redis_sentinel_master_odown", Gauge, "1 if this Sentinel sees the master objectively down (a quorum agrees).";
    SentinelMasterFailoverInProgress = "redis_sentinel_master_failover_in_progress", Gauge, "1 while this Sentinel takes part in a failover of the master.";
    SentinelMasterConfigEpoch = "redis_sentinel_master_config_epoch", Gauge, "The master's configuration epoch; each failover raises it.";
    SentinelMasterAddresses = "redis_sentinel_master_addresses", Gauge, "Distinct master addresses the reachable Sentinels report for the master name; above 1 they disagree.";
    SentinelMasterLastFailover = "redis_sentinel_master_last_failover_timestamp_seconds", Gauge, "When the exporter last saw the master name's address change (a failover), in Unix seconds; absent until one is seen.";
    SentinelMasterSentinelsUp = "redis_sentinel_master_sentinels_up", Gauge, "Sentinels the exporter watches that monitor the master name and answered their last poll.";
    BuildInfo = "redis_vitals_build_info", Gauge, "Always 1; the exporter's version.";
    Polls = "redis_vitals_polls_total", Counter, "Polls of the node attempted.";
    PollErrors = "redis_vitals_poll_errors_total", Counter, "Failed polls of the node, by reason.";
    PollDuration = "redis_vitals_poll_duration_seconds", Gauge, "Duration of the node's last poll.";
    LastSuccessAge = "redis_vitals_last_success_age_seconds", Gauge, "Seconds since the node's last successful poll.";
    ConnectionsOpened = "redis_vitals_connections_opened_total", Counter, "Connections the exporter opened to the node.";
    PollInterval = "redis_vitals_poll_interval_seconds", Gauge, "The configured poll interval.";
    Tasks = "redis_vitals_tasks", Gauge, "Tasks alive in the exporter's runtimes (pollers, discovery, HTTP connections): flat in steady state.";
    WebConfigReloadOk = "redis_vitals_web_config_last_reload_successful", Gauge, "1 when the last reload of --web.config.file was applied; 0 when it was refused (invalid, or lowering the protection in force) and the previous config stays.";
    WebConfigReloadTime = "redis_vitals_web_config_last_reload_success_timestamp_seconds", Gauge, "When --web.config.file was last loaded and applied (start included), in Unix seconds.";
    CommandDenied = "redis_vitals_command_denied", Gauge, "1 for each command the node's ACL refuses (label command); the metrics it feeds are missing for that reason.";
    ParseErrors = "redis_vitals_parse_errors_total", Counter, "Lines or fields of the node's CLUSTER NODES / CLUSTER INFO replies dropped as malformed, by reason; the rest of the reply is kept.";
    DiscoveryRefused = "redis_vitals_discovery_refused_total", Counter, "Discovered cluster node addresses not polled, by cluster and reason (not_allowed, link_local, cap); each counted once while listed. Addresses learnt from Sentinel count under their master name.";
    ShardInfo = "redis_vitals_shard_info", Gauge, "Always 1 when the fleet is sharded across replicas; labels index and count (--shard.index, --shard.count).";
    ShardNodes = "redis_vitals_shard_nodes", Gauge, "Nodes in this replica's share (polled and shown here) when the fleet is sharded.";
    InsightEnabled = "redis_vitals_insight_enabled", Gauge, "1 when the keyspace analyser runs on this node (docs/insight.md).";
    InsightBudget = "redis_vitals_insight_budget_seconds", Gauge, "Redis time per second of wall time the analyser may use on this node (insight.budget).";
    InsightRedisSeconds = "redis_vitals_insight_redis_seconds_total", Counter, "Redis time the analyser charged to its budget: its round trips, each at the share of it that INFO commandstats attributes to the analyser's commands.";
    InsightScannedKeys = "redis_vitals_insight_scanned_keys_total", Counter, "Keys the analyser examined, complete passes or not.";
    InsightPasses = "redis_vitals_insight_passes_total", Counter, "Complete passes over the node's keyspace.";
    InsightPassFailures = "redis_vitals_insight_pass_failures_total", Counter, "Passes given up, by reason (the poll reasons).";
    InsightProgress = "redis_vitals_insight_pass_progress_ratio", Gauge, "Keys examined in the pass in progress over the keys INFO keyspace reported when it started.";
    InsightLastPassEnd = "redis_vitals_insight_last_pass_end_timestamp_seconds", Gauge, "When the last complete pass ended, in Unix seconds.";
    InsightLastPassDuration = "redis_vitals_insight_last_pass_duration_seconds", Gauge, "How long the last complete pass took.";
    InsightKeys = "redis_vitals_insight_keys", Gauge, "Keys seen in the last complete pass.";
    InsightKeysWithTtl = "redis_vitals_insight_keys_with_ttl", Gauge, "Keys with a TTL in the last complete pass.";
    InsightMemory = "redis_vitals_insight_memory_bytes", Gauge, "Sum of MEMORY USAGE over the keys of the last complete pass.";
    InsightEvictable = "redis_vitals_insight_evictable_keys_ratio", Gauge, "Share of keys the node's maxmemory-policy (label policy) may evict: 1 for allkeys-*, the TTL share for volatile-*, 0 for noeviction.";
    NsKeys = "redis_vitals_insight_namespace_keys", Gauge, "Keys in the namespace (label namespace: the key pattern, identifiers as *; other: the rest).";
    NsKeysWithTtl = "redis_vitals_insight_namespace_keys_with_ttl", Gauge, "Keys with a TTL in the namespace.";
    NsMemory = "redis_vitals_insight_namespace_memory_bytes", Gauge, "Sum of MEMORY USAGE of the namespace's keys.";
    NsTtl = "redis_vitals_insight_namespace_ttl_seconds", Gauge, "Remaining TTL of the namespace's keys with a TTL, at quantiles 0.1, 0.5 and 0.9 (log-bucketed, within 10 %).";
    NsTypeKeys = "redis_vitals_insight_namespace_type_keys", Gauge, "Keys in the namespace by type (string, list, set, zset, hash, stream, other).";
    NsLargest = "redis_vitals_insight_namespace_largest_key_bytes", Gauge, "Sizes of the namespace's largest keys by rank (1 is the largest); a key label names them only with insight.show-key-names.";
}

/// Collects sample lines per family, then writes them in catalogue order.
///
/// The lines are the Prometheus text format 0.0.4 exactly as the
/// `prometheus` crate's `TextEncoder` writes them (a test holds the two
/// byte-identical). Writing text directly instead of building the crate's
/// `MetricFamily` model is what makes a scrape cheap: the model cost about
/// 0.35 ms per node and 50 ms for 100 nodes (BENCHMARKS.md), most of it
/// allocating label strings that were copied straight back out.
pub struct Out {
    pub(crate) families: Vec<String>,
}

impl Default for Out {
    fn default() -> Self {
        Out {
            families: vec![String::new(); FAMILIES.len()],
        }
    }
}

/// A node's pre-rendered series, built by a poll (off the scrape path) and
/// shared by every scrape until the next poll.
///
/// It also remembers what its per-command lines were rendered from: a poll
/// that skips commandstats and latencystats carries the last lists forward
/// (the same `Arc`), and then reuses these lines instead of re-rendering
/// them. They are 61% of a node's text (BENCHMARKS.md).
#[derive(Debug, Clone)]
pub struct NodeText {
    /// (family, its lines) for every family with lines, in catalogue order.
    pub(crate) segments: Vec<(F, Seg)>,
    /// Bytes this poll rendered (reused lines not counted).
    pub(crate) fresh_len: usize,
    /// The labels the lines carry.
    pub(crate) addr: Box<str>,
    pub(crate) cluster: Box<str>,
    /// The lists the command and latency families were rendered from. Held
    /// (not just their addresses) so that `Arc::ptr_eq` cannot match a new
    /// list that reuses a freed one's memory.
    pub(crate) commands: Arc<Vec<CommandStat>>,
    pub(crate) latencies: Arc<Vec<LatencyStat>>,
}

impl NodeText {
    /// (family, its lines) for every family with lines, in catalogue order.
    pub fn segments(&self) -> &[(F, Seg)] {
        &self.segments
    }
}

/// One family's lines: a range of a buffer shared by all the families a
/// poll rendered (one allocation per poll, and a node's text contiguous in
/// memory for the scrape's copy), or of an earlier poll's buffer when the
/// lines were reused.
#[derive(Debug, Clone)]
pub struct Seg {
    /// `Arc<String>`, not `Arc<str>`: moving the poll's buffer in costs
    /// nothing, where `Arc<str>` copied all of it once more.
    pub(crate) buf: Arc<String>,
    pub(crate) range: std::ops::Range<usize>,
}

impl Seg {
    /// The same lines of the same buffer (reused, not re-rendered).
    pub fn same(&self, other: &Seg) -> bool {
        Arc::ptr_eq(&self.buf, &other.buf) && self.range == other.range
    }
}

impl std::ops::Deref for Seg {
    type Target = str;
    fn deref(&self) -> &str {
        // Ranges are built on line boundaries of this very buffer.
        self.buf.get(self.range.clone()).unwrap_or("")
    }
}

/// A node's lines while a poll renders them: one buffer, families in the
/// order they are written, sorted into catalogue order at the end.
pub(crate) struct NodeOut<'a> {
    pub(crate) buf: String,
    /// (family, byte range in `buf`), in write order.
    pub(crate) spans: Vec<(F, std::ops::Range<usize>)>,
    /// The node's `addr` and `cluster` label values, and the two labels
    /// escaped and joined (`addr="...",cluster="..."`): written once per
    /// poll instead of escaped again on each of a node's ~250 lines.
    pub(crate) addr: &'a str,
    pub(crate) cluster: &'a str,
    pub(crate) base: String,
}

impl<'a> NodeOut<'a> {
    pub(crate) fn new(addr: &'a str, cluster: &'a str, capacity: usize) -> Self {
        let mut base = String::with_capacity(addr.len() + cluster.len() + 20);
        base.push_str("addr=\"");
        escape_into(&mut base, addr, true);
        base.push_str("\",cluster=\"");
        escape_into(&mut base, cluster, true);
        base.push('"');
        NodeOut {
            buf: String::with_capacity(capacity),
            spans: Vec::with_capacity(128),
            addr,
            cluster,
            base,
        }
    }

    pub(crate) fn push(&mut self, f: F, labels: &[(&str, &str)], value: f64) {
        let start = self.buf.len();
        match labels {
            [("addr", a), ("cluster", c), rest @ ..] if *a == self.addr && *c == self.cluster => {
                write_line_with_base(&mut self.buf, f, &self.base, rest, value)
            }
            _ => write_line(&mut self.buf, f, labels, value),
        }
        let end = self.buf.len();
        if end == start {
            return;
        }
        match self.spans.last_mut() {
            Some((g, r)) if *g == f && r.end == start => r.end = end,
            _ => self.spans.push((f, start..end)),
        }
    }

    /// The lines as segments of one shared buffer, in catalogue order (a
    /// stable sort keeps each family's lines in write order).
    pub(crate) fn into_segments(mut self) -> Vec<(F, Seg)> {
        self.spans.sort_by_key(|(f, _)| *f as usize);
        let mut text = String::with_capacity(self.buf.len());
        let mut ranges: Vec<(F, std::ops::Range<usize>)> = Vec::new();
        for (f, r) in &self.spans {
            let start = text.len();
            text.push_str(&self.buf[r.clone()]);
            match ranges.last_mut() {
                Some((g, last)) if g == f => last.end = text.len(),
                _ => ranges.push((*f, start..text.len())),
            }
        }
        let buf = Arc::new(text);
        ranges
            .into_iter()
            .map(|(f, range)| {
                (
                    f,
                    Seg {
                        buf: buf.clone(),
                        range,
                    },
                )
            })
            .collect()
    }
}

/// Families rendered from `Info::commands` (commandstats).
pub(crate) const COMMAND_FAMILIES: &[F] = &[
    F::Commands,
    F::CommandsDuration,
    F::CommandsRejected,
    F::CommandsFailed,
];
/// Families rendered from `Info::latencies` (latencystats).
pub(crate) const LATENCY_FAMILIES: &[F] = &[F::Latency];

impl Out {
    pub fn push(&mut self, f: F, labels: &[(&str, &str)], value: f64) {
        write_line(&mut self.families[f as usize], f, labels, value);
    }

    /// Appends lines rendered earlier (a node's [`NodeText`]).
    pub fn append(&mut self, text: &NodeText) {
        for (f, lines) in &text.segments {
            self.families[*f as usize].push_str(lines);
        }
    }

    pub fn encode(self) -> String {
        let size: usize = self.families.iter().map(|f| f.len() + 200).sum();
        let mut buf = String::with_capacity(size);
        for (i, lines) in self.families.iter().enumerate() {
            if !lines.is_empty() {
                buf.push_str(&headers()[i]);
                buf.push_str(lines);
            }
        }
        buf
    }
}

/// Writes one sample line; non-finite values are left out.
pub(crate) fn write_line(buf: &mut String, f: F, labels: &[(&str, &str)], value: f64) {
    write_line_after(buf, f, "", labels, value);
}

/// [`write_line`] for labels that start with a node's `addr` and `cluster`,
/// given already escaped and joined in `base`: the same bytes.
pub(crate) fn write_line_with_base(
    buf: &mut String,
    f: F,
    base: &str,
    rest: &[(&str, &str)],
    value: f64,
) {
    write_line_after(buf, f, base, rest, value);
}

/// One sample line whose label set is `escaped` (labels already escaped
/// and joined, or empty) followed by `labels`.
pub(crate) fn write_line_after(
    buf: &mut String,
    f: F,
    escaped: &str,
    labels: &[(&str, &str)],
    value: f64,
) {
    if !value.is_finite() {
        return;
    }
    buf.push_str(FAMILIES[f as usize].name);
    if !escaped.is_empty() || !labels.is_empty() {
        buf.push('{');
        buf.push_str(escaped);
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 || !escaped.is_empty() {
                buf.push(',');
            }
            buf.push_str(k);
            buf.push_str("=\"");
            escape_into(buf, v, true);
            buf.push('"');
        }
        buf.push('}');
    }
    buf.push(' ');
    write_value(buf, value);
    buf.push('\n');
}

/// 2^53: every integer of smaller magnitude is exact in an f64, so its
/// shortest round-trip form (what `Display` prints) is its digits.
pub(crate) const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0;

/// Writes `value` as `f64`'s `Display` does. Most samples are integers
/// (counters, byte counts), and formatting those as `i64` is about 2.5x
/// cheaper than the shortest-float algorithm.
pub(crate) fn write_value(buf: &mut String, value: f64) {
    use std::fmt::Write as _;
    // -0.0 displays as "-0", which the integer would lose.
    let integer = value.trunc() == value
        && value.abs() < EXACT_INTEGERS
        && !(value == 0.0 && value.is_sign_negative());
    let _ = if integer {
        write!(buf, "{}", value as i64)
    } else {
        write!(buf, "{value}")
    };
}

/// The `# HELP` and `# TYPE` lines of every family, by catalogue index:
/// written once per family per scrape, so built once per process.
pub(crate) fn headers() -> &'static [String] {
    static HEADERS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    HEADERS.get_or_init(|| {
        FAMILIES
            .iter()
            .map(|def| {
                let mut h = String::from("# HELP ");
                h.push_str(def.name);
                h.push(' ');
                escape_into(&mut h, def.help, false);
                h.push_str("\n# TYPE ");
                h.push_str(def.name);
                h.push_str(match def.kind {
                    Kind::Gauge => " gauge\n",
                    Kind::Counter => " counter\n",
                });
                h
            })
            .collect()
    })
}

/// Escapes a label value (backslash, double quote, newline) or HELP text
/// (backslash, newline), as the text format requires.
pub(crate) fn escape_into(buf: &mut String, s: &str, quote: bool) {
    if !s
        .bytes()
        .any(|b| b == b'\\' || b == b'\n' || (quote && b == b'"'))
    {
        buf.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => buf.push_str("\\\\"),
            '\n' => buf.push_str("\\n"),
            '"' if quote => buf.push_str("\\\""),
            c => buf.push(c),
        }
    }
}

/// A node's lines that come from its poll bookkeeping rather than from
/// INFO: `redis_up`, the hit ratio and the poll counters. They change only
/// when a poll ends, so the poller renders them then (a scrape of 100 nodes
/// spent a third of its time on them, BENCHMARKS.md); the age of the last
/// success grows with the clock and is the one line a scrape writes.
#[derive(Debug)]
pub struct StateText {
    /// The `cluster` label the lines carry: a relabel by discovery makes
    /// them stale.
    pub(crate) cluster: Arc<str>,
    pub(crate) text: String,
    /// (family, byte range of its lines in `text`), in catalogue order.
    pub(crate) spans: Vec<(F, std::ops::Range<usize>)>,
}

/// The families of [`StateText`], in catalogue order; the age of the last
/// success (between poll duration and connections opened in the
/// catalogue) is written by the scrape.
pub(crate) const STATE_FAMILIES: &[F] = &[
    F::Up,
    F::HitRatio,
    F::Polls,
    F::PollErrors,
    F::PollDuration,
    F::ConnectionsOpened,
    F::ParseErrors,
];
