//! Configuration: command-line flags, environment and an optional TOML file,
//! merged into one validated [`Config`] before anything binds or connects.
//!
//! Precedence: flag > environment > file > default. Every flag has a file
//! key of the same name (`--poll.interval` is `interval` under `[poll]`).
//! Unknown keys and bad values are errors that name the key.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use std::sync::Arc;

use crate::redis::target::{self, Secret, Target};
use crate::redis::tls::TlsFiles;

/// Default poll interval: fresh enough for 15 s scrapes and alerting, cheap
/// for Redis (one INFO per node per interval).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Default per-poll deadline: far above a healthy INFO (sub-millisecond),
/// short enough that a hung node is reported down within one interval.
pub const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_secs(2);
/// Default cap on polls in flight: a 500-node fleet still polls in a
/// fraction of the interval, and the exporter never opens hundreds of
/// connection attempts at once after a network blip.
pub const DEFAULT_POLL_CONCURRENCY: usize = 64;
/// One timer wake-up serves this many polls (a wake costs about one INFO
/// parse, so 32 makes it ~3% of a poll), and a group's burst stays well
/// under `DEFAULT_POLL_CONCURRENCY` and a few ms of exporter CPU.
pub const DEFAULT_POLL_GROUP_SIZE: usize = 32;
/// How often values INFO lacks (maxclients before 6.2) are re-read with
/// CONFIG GET: they change rarely, and CONFIG GET is not free on the server.
pub const DEFAULT_CONFIG_REFRESH: Duration = Duration::from_secs(300);
/// How often the costly INFO sections (commandstats, latencystats) and the
/// slow log are asked for, unless `poll.detail-interval` is set: on every
/// poll. Per-command counters carried forward for 30 s made `irate()` panels
/// (dashboard 763) empty at most steps and 2-6x high at the others; reading
/// them every poll keeps the Redis-side cost within a third of the peer's
/// (bench/compare.py, issue 17). A longer interval remains an option for
/// fleets where INFO's server time matters more than fresh command rates.
pub const DEFAULT_DETAIL_INTERVAL: Option<Duration> = None;
/// Longest reconnect backoff: a node that is down for long is retried at
/// least this often, so its recovery shows within ~10 s (the soak measured
/// up to 34 s with 30 s); a refused connect costs next to nothing.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Default hit-ratio window, as the issue asks: long enough to hold several
/// polls, short enough to show a cache going cold within minutes.
pub const DEFAULT_HIT_RATIO_WINDOW: Duration = Duration::from_secs(60);
/// How far back the master-offset history reaches for lag in seconds; a
/// replica further behind is reported as "at least" this much.
pub const DEFAULT_LAG_HISTORY: Duration = Duration::from_secs(600);
/// How often each cluster node's CLUSTER NODES view is re-read when no
/// topology signal (epoch, membership, role or slot-health change) forced it
/// sooner: bounds how late a replica's pfail/fail flag or a link state shows.
pub const DEFAULT_CLUSTER_REFRESH: Duration = Duration::from_secs(15);
/// `sentinel.refresh-interval`: events trigger a refresh at once; this is
/// the fallback when one is missed (a subscriber reconnecting).
pub const DEFAULT_SENTINEL_REFRESH: Duration = Duration::from_secs(15);
/// `sentinel.ckquorum-interval`: CKQUORUM makes the Sentinel ask its peers,
/// so it runs at this bounded cadence, not on every refresh.
pub const DEFAULT_SENTINEL_CKQUORUM: Duration = Duration::from_secs(30);
/// Most nodes polled per Redis Cluster: 1000 is the size Redis Cluster is
/// designed for (its docs' "up to 1000 nodes"); a reply listing more is a
/// misconfiguration or an attack, and each node costs a task, a socket and
/// its series.
pub const DEFAULT_CLUSTER_MAX_NODES: usize = 1000;
/// Most nodes the daemon polls in all (`poll.max-nodes`): four clusters of
/// the designed size, one socket each, which fits the common 8192 or more
/// open-file limit with room for HTTP, and a few hundred MiB at worst.
pub const DEFAULT_MAX_NODES: usize = 4096;
/// Highest `cluster.max-nodes` / `poll.max-nodes` accepted: far above any
/// real fleet, it only rejects typos that would remove the bound.
pub const MAX_MAX_NODES: usize = 100_000;
pub const DEFAULT_LISTEN: &str = ":9121";
pub const DEFAULT_TARGET: &str = "redis://localhost:6379";

/// Command-line flags. Every field is optional so that the file and the
/// defaults can fill what the command line leaves out.
#[derive(Debug, Parser, Default)]
#[command(
    name = "redis-vitals",
    version,
    about = "Prometheus exporter for Redis: polls every node in the background"
)]
pub struct Flags {
    /// TOML configuration file; every flag can also be set there (default: none).
    #[arg(long = "config.file", env = "REDIS_VITALS_CONFIG")]
    pub config_file: Option<PathBuf>,
    /// A node or cluster seed, repeatable (default redis://localhost:6379). Forms:
    /// host:port, redis://[user@]host[:port][/db], rediss://... (TLS),
    /// unix:///path[?db=N]. The password goes in --redis.password-file or
    /// REDIS_PASSWORD (a password inside the URL is accepted but ends up in
    /// process lists and shell history).
    #[arg(
        long = "redis.addr",
        env = "REDIS_ADDR",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub redis_addr: Vec<String>,
    /// ACL user name for every target that sets none of its own (default: none, the default user).
    #[arg(long = "redis.user", env = "REDIS_USER")]
    pub redis_user: Option<String>,
    /// File whose first line is the password (REDIS_PASSWORD also works; default: none).
    #[arg(long = "redis.password-file", env = "REDIS_PASSWORD_FILE")]
    pub redis_password_file: Option<PathBuf>,
    /// Name of the CONFIG command (renamed on some servers); "" never sends it (default CONFIG).
    #[arg(long = "redis.config-command")]
    pub redis_config_command: Option<String>,
    /// Client limit to use when the server does not report one (default: none).
    #[arg(long = "redis.maxclients")]
    pub redis_maxclients: Option<u64>,
    /// CA certificates (PEM) for rediss:// targets; default: the system's store.
    #[arg(long = "redis.tls-ca-file")]
    pub redis_tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long = "redis.tls-cert-file")]
    pub redis_tls_cert_file: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[arg(long = "redis.tls-key-file")]
    pub redis_tls_key_file: Option<PathBuf>,
    /// Name the server certificate must carry, when not the target's host.
    #[arg(long = "redis.tls-server-name")]
    pub redis_tls_server_name: Option<String>,
    /// Skip server certificate verification (logs a warning; for tests only; default false).
    #[arg(long = "redis.tls-insecure-skip-verify")]
    pub redis_tls_insecure_skip_verify: bool,
    /// Name for the `cluster` label of the command-line targets (default: empty,
    /// or the name discovery gives a Redis Cluster).
    #[arg(long = "redis.cluster")]
    pub redis_cluster: Option<String>,
    /// Time between polls of each node (default 5s; humantime: 500ms, 1m).
    #[arg(long = "poll.interval", value_parser = parse_duration_arg)]
    pub poll_interval: Option<Duration>,
    /// Deadline for one poll, connecting included (default 2s).
    #[arg(long = "poll.timeout", value_parser = parse_duration_arg)]
    pub poll_timeout: Option<Duration>,
    /// Most polls in flight at once (default 64).
    #[arg(long = "poll.concurrency")]
    pub poll_concurrency: Option<usize>,
    /// Most nodes polled at the same instant (default 32; 1 = every node its own phase).
    #[arg(long = "poll.group-size")]
    pub poll_group_size: Option<usize>,
    /// How often CONFIG GET maxclients is re-read on servers whose INFO lacks it (default 5m).
    #[arg(long = "poll.config-refresh", value_parser = parse_duration_arg)]
    pub poll_config_refresh: Option<Duration>,
    /// How often commandstats and the slow log are read (default: poll.interval, every poll; latencystats every 30s or this, if longer).
    #[arg(long = "poll.detail-interval", value_parser = parse_duration_arg)]
    pub poll_detail_interval: Option<Duration>,
    /// Longest wait between reconnect attempts to a down node (default 10s).
    #[arg(long = "poll.max-backoff", value_parser = parse_duration_arg)]
    pub poll_max_backoff: Option<Duration>,
    /// Sliding window of redis_keyspace_hit_ratio (default 1m).
    #[arg(long = "signals.hit-ratio-window", value_parser = parse_duration_arg)]
    pub signals_hit_ratio_window: Option<Duration>,
    /// How far back master offsets are kept for redis_replication_lag_seconds (default 10m).
    #[arg(long = "signals.lag-history", value_parser = parse_duration_arg)]
    pub signals_lag_history: Option<Duration>,
    /// Longest time between CLUSTER NODES reads per cluster node when no topology signal forces one (default 15s).
    #[arg(long = "cluster.refresh-interval", value_parser = parse_duration_arg)]
    pub cluster_refresh_interval: Option<Duration>,
    /// Networks (CIDR) a discovered cluster node may be in to be polled. Repeatable.
    /// Default: the seeds' own networks (/24, /64), plus loopback for a loopback seed.
    #[arg(long = "cluster.allowed-networks", value_delimiter = ',')]
    pub cluster_allowed_networks: Vec<String>,
    /// Poll the nodes a cluster seed lists (default true); false polls the seeds only.
    #[arg(long = "cluster.discover", num_args = 0..=1, default_missing_value = "true")]
    pub cluster_discover: Option<bool>,
    /// Most nodes polled per Redis Cluster (default 1000).
    #[arg(long = "cluster.max-nodes")]
    pub cluster_max_nodes: Option<usize>,
    /// Networks (CIDR) of nodes /scrape?target= may add to the poll set when
    /// the exporter does not poll them yet. Repeatable. Default: none (an
    /// unknown target is refused).
    #[arg(long = "scrape.allowed-networks", value_delimiter = ',')]
    pub scrape_allowed_networks: Vec<String>,
    /// A node added by /scrape is dropped after this long without a scrape (default 10m).
    #[arg(long = "scrape.target-idle-timeout", value_parser = parse_duration_arg)]
    pub scrape_target_idle_timeout: Option<Duration>,
    /// Most nodes /scrape may add at once (default 100).
    #[arg(long = "scrape.max-targets")]
    pub scrape_max_targets: Option<usize>,
    /// Most nodes polled in all, configured and discovered (default 4096).
    #[arg(long = "poll.max-nodes")]
    pub poll_max_nodes: Option<usize>,
    /// This replica's index among --shard.count: a number, or a StatefulSet pod name
    /// ending in -N (redis-vitals-2 gives 2), e.g. from the downward API (default 0).
    #[arg(long = "shard.index", env = "REDIS_VITALS_SHARD_INDEX")]
    pub shard_index: Option<String>,
    /// How many replicas split the fleet; each polls and serves only its share (default 1).
    #[arg(long = "shard.count", env = "REDIS_VITALS_SHARD_COUNT")]
    pub shard_count: Option<String>,
    /// A Redis Sentinel to discover masters and replicas through, and to watch:
    /// host:port or redis[s]://[user[:password]@]host:port. Repeatable (default: none).
    #[arg(long = "sentinel.addr", value_delimiter = ',')]
    pub sentinel_addr: Vec<String>,
    /// A master name to watch through the Sentinels. Repeatable (default: every master they monitor).
    #[arg(long = "sentinel.master", value_delimiter = ',')]
    pub sentinel_master: Vec<String>,
    /// User name for AUTH to the Sentinels (default: none; never the data nodes' user).
    #[arg(long = "sentinel.user")]
    pub sentinel_user: Option<String>,
    /// File whose first line is the Sentinels' password (default: none; never the data nodes' password).
    #[arg(long = "sentinel.password-file")]
    pub sentinel_password_file: Option<PathBuf>,
    /// CA file for rediss:// Sentinels (default: the system's CA store).
    #[arg(long = "sentinel.tls-ca-file")]
    pub sentinel_tls_ca_file: Option<PathBuf>,
    /// Client certificate for rediss:// Sentinels (default: none).
    #[arg(long = "sentinel.tls-cert-file")]
    pub sentinel_tls_cert_file: Option<PathBuf>,
    /// Client key for rediss:// Sentinels (default: none).
    #[arg(long = "sentinel.tls-key-file")]
    pub sentinel_tls_key_file: Option<PathBuf>,
    /// Name to verify the Sentinels' certificates against (default: the host of each address).
    #[arg(long = "sentinel.tls-server-name")]
    pub sentinel_tls_server_name: Option<String>,
    /// Do not verify the Sentinels' certificates (default false).
    #[arg(long = "sentinel.tls-insecure-skip-verify")]
    pub sentinel_tls_insecure_skip_verify: bool,
    /// Connect to the data nodes found through Sentinel with TLS, using the [redis] TLS settings (default false).
    #[arg(long = "sentinel.data-tls", num_args = 0..=1, default_missing_value = "true")]
    pub sentinel_data_tls: Option<bool>,
    /// Longest time between two full polls of the Sentinels when no event forces one (default 15s).
    #[arg(long = "sentinel.refresh-interval", value_parser = parse_duration_arg)]
    pub sentinel_refresh_interval: Option<Duration>,
    /// Time between SENTINEL CKQUORUM checks of each master on each Sentinel (default 30s, at least 1s).
    #[arg(long = "sentinel.ckquorum-interval", value_parser = parse_duration_arg)]
    pub sentinel_ckquorum_interval: Option<Duration>,
    /// Networks (CIDR) an address learnt from Sentinel may be in to be polled. Repeatable.
    /// Default: cluster.allowed-networks when set, else the Sentinel seeds' own networks.
    #[arg(long = "sentinel.allowed-networks", value_delimiter = ',')]
    pub sentinel_allowed_networks: Vec<String>,
    /// Analyse the keyspace of every node (namespaces, TTLs, eviction-policy fitness) with a
    /// paced SCAN; a target's `insight` key in the file overrides it (default false).
    #[arg(long = "insight.enabled", num_args = 0..=1, default_missing_value = "true")]
    pub insight_enabled: Option<bool>,
    /// Redis time per second of wall time the analyser may cause on each node, 100us to 500ms
    /// (default 2ms).
    #[arg(long = "insight.budget", value_parser = parse_duration_arg)]
    pub insight_budget: Option<Duration>,
    /// Which copy of the data the analyser reads: master or replica (default master).
    #[arg(long = "insight.source")]
    pub insight_source: Option<String>,
    /// Time between the starts of two passes over a node's keyspace, 10s to 7d (default 15m).
    #[arg(long = "insight.pass-interval", value_parser = parse_duration_arg)]
    pub insight_pass_interval: Option<Duration>,
    /// Characters that split key names into namespace segments, 1 to 4 ASCII punctuation
    /// characters other than { } * (default ":").
    #[arg(long = "insight.separators")]
    pub insight_separators: Option<String>,
    /// Namespaces reported per node, 1 to 200; the rest are summed as "other" (default 20).
    #[arg(long = "insight.max-namespaces")]
    pub insight_max_namespaces: Option<usize>,
    /// SAMPLES given to MEMORY USAGE, 1 to 64 (default 5).
    #[arg(long = "insight.memory-samples")]
    pub insight_memory_samples: Option<u32>,
    /// Name the largest keys in the `key` label and on /insight (default false: key names
    /// can be personal data).
    #[arg(long = "insight.show-key-names", num_args = 0..=1, default_missing_value = "true")]
    pub insight_show_key_names: Option<bool>,
    /// host:port to serve on; ":9121" means every IPv4 interface (default :9121).
    #[arg(long = "web.listen-address")]
    pub web_listen_address: Option<String>,
    /// Path of the metrics page (default /metrics).
    #[arg(long = "web.telemetry-path")]
    pub web_telemetry_path: Option<String>,
    /// Prometheus exporter-toolkit web config (TLS, basic auth); re-read on change and on SIGHUP
    /// (default: none, plain HTTP without auth).
    #[arg(long = "web.config.file")]
    pub web_config_file: Option<PathBuf>,
    /// Gzip responses for clients that accept it (Prometheus does); false turns it off (default true).
    #[arg(long = "web.compression", num_args = 0..=1, default_missing_value = "true")]
    pub web_compression: Option<bool>,
    /// trace, debug, info, warn or error (default info; RUST_LOG overrides).
    #[arg(long = "log.level", env = "REDIS_VITALS_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// text or json, on stderr (default text).
    #[arg(long = "log.format")]
    pub log_format: Option<String>,
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// The file, as written by the operator.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    #[serde(default)]
    redis: FileRedis,
    #[serde(default)]
    poll: FilePoll,
    #[serde(default)]
    signals: FileSignals,
    #[serde(default)]
    cluster: FileCluster,
    #[serde(default)]
    sentinel: FileSentinel,
    #[serde(default)]
    web: FileWeb,
    #[serde(default)]
    scrape: FileScrape,
    #[serde(default)]
    log: FileLog,
    #[serde(default)]
    shard: FileShard,
    #[serde(default)]
    insight: FileInsight,
    #[serde(default)]
    targets: Vec<FileTarget>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileRedis {
    addr: Option<Vec<String>>,
    user: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    config_command: Option<String>,
    maxclients: Option<u64>,
    cluster: Option<String>,
    tls_ca_file: Option<PathBuf>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    tls_server_name: Option<String>,
    tls_insecure_skip_verify: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FilePoll {
    interval: Option<String>,
    timeout: Option<String>,
    concurrency: Option<usize>,
    group_size: Option<usize>,
    config_refresh: Option<String>,
    max_backoff: Option<String>,
    detail_interval: Option<String>,
    max_nodes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileSignals {
    hit_ratio_window: Option<String>,
    lag_history: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileCluster {
    refresh_interval: Option<String>,
    allowed_networks: Option<Vec<String>>,
    discover: Option<bool>,
    max_nodes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileSentinel {
    addr: Option<Vec<String>>,
    masters: Option<Vec<String>>,
    user: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    tls_ca_file: Option<PathBuf>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    tls_server_name: Option<String>,
    tls_insecure_skip_verify: Option<bool>,
    data_tls: Option<bool>,
    refresh_interval: Option<String>,
    ckquorum_interval: Option<String>,
    allowed_networks: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileWeb {
    listen_address: Option<String>,
    telemetry_path: Option<String>,
    config_file: Option<PathBuf>,
    compression: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileShard {
    index: Option<u32>,
    count: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileScrape {
    allowed_networks: Option<Vec<String>>,
    target_idle_timeout: Option<String>,
    max_targets: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileInsight {
    enabled: Option<bool>,
    budget: Option<String>,
    source: Option<String>,
    pass_interval: Option<String>,
    separators: Option<String>,
    max_namespaces: Option<usize>,
    memory_samples: Option<u32>,
    show_key_names: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileLog {
    level: Option<String>,
    format: Option<String>,
}

/// One `[[targets]]` entry: a node (or a cluster seed) with its own settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileTarget {
    addr: String,
    user: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    cluster: Option<String>,
    maxclients: Option<u64>,
    config_command: Option<String>,
    tls_ca_file: Option<PathBuf>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    tls_server_name: Option<String>,
    tls_insecure_skip_verify: Option<bool>,
    /// Overrides `insight.enabled` for this target and the nodes found from it.
    insight: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Poll scheduling and its bounds.
#[derive(Debug, Clone)]
pub struct PollSettings {
    pub interval: Duration,
    pub timeout: Duration,
    pub concurrency: usize,
    /// Nodes that share one tick time (see schedule.rs).
    pub group_size: usize,
    pub config_refresh: Duration,
    pub max_backoff: Duration,
    pub detail_interval: Duration,
}

/// Cluster discovery's trust and bounds (docs/configuration.md, "Redis Cluster").
#[derive(Debug, Clone)]
pub struct DiscoverySettings {
    /// `cluster.discover`: false polls the configured seeds only.
    pub enabled: bool,
    /// `cluster.allowed-networks`; `None` means the seeds' own networks.
    pub allowed_networks: Option<Vec<crate::redis::cidr::Cidr>>,
    /// `cluster.max-nodes`: nodes polled per Redis Cluster at most.
    pub cluster_max_nodes: usize,
    /// `poll.max-nodes`: nodes polled in all at most.
    pub max_nodes: usize,
    /// `shard.index` / `shard.count`: which share of the fleet this
    /// replica polls and serves.
    pub shard: ShardSettings,
    /// How long a node whose unit now belongs to another replica is kept
    /// (polled and shown) before it is given up: the cluster refresh
    /// interval plus two polls, so that every view this replica goes by
    /// has been re-read and the new owner has polled it. A moving node is
    /// shown by both replicas for that long rather than by neither.
    pub shard_settle: Duration,
    /// How long a node must be found in this replica's share, pass after
    /// pass, before it is added or shown: two polls, so that a view read in
    /// the middle of a change (a failover) does not move it for a moment.
    /// Shorter than `shard_settle`, so that a node moving between replicas
    /// is taken before it is given up.
    pub shard_confirm: Duration,
}

/// `--shard.index` / `--shard.count`: this replica's place among `count`
/// (see collect/shard.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSettings {
    pub index: u32,
    pub count: u32,
}

impl Default for ShardSettings {
    /// One replica owns everything.
    fn default() -> Self {
        ShardSettings { index: 0, count: 1 }
    }
}

impl ShardSettings {
    /// Whether the fleet is split at all.
    pub fn enabled(&self) -> bool {
        self.count > 1
    }
}

/// Most replicas a fleet may be split across.
pub const MAX_SHARD_COUNT: u32 = 1024;

/// Parses `shard.index`: a number, or a name ending in `-N` (a StatefulSet
/// pod's name, `redis-vitals-2`), whose `N` is taken.
pub fn parse_shard_index(value: &str) -> Result<u32, String> {
    let v = value.trim();
    let digits = match v.rsplit_once('-') {
        Some((name, n)) if !name.is_empty() => n,
        _ => v,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{value:?} is neither a number nor a StatefulSet pod name ending in -N"
        ));
    }
    digits
        .parse::<u32>()
        .map_err(|_| format!("{value:?}: the index is too large"))
}

/// Discovery through Redis Sentinel and the Sentinels' own health
/// (docs/configuration.md, "Redis Sentinel").
#[derive(Debug, Clone)]
pub struct SentinelSettings {
    /// The configured Sentinels, with the Sentinels' own credentials and TLS.
    pub sentinels: Vec<Target>,
    /// Master names to watch; empty: every master the Sentinels monitor.
    pub masters: Vec<String>,
    pub refresh: Duration,
    pub ckquorum: Duration,
    /// `sentinel.allowed-networks`, else `cluster.allowed-networks`; `None`
    /// means the Sentinel seeds' own networks.
    pub allowed_networks: Option<Vec<crate::redis::cidr::Cidr>>,
    /// What a data node found through Sentinel is polled with: the `[redis]`
    /// credentials, TLS settings and CONFIG name (its address is replaced).
    pub data_template: Target,
}

/// What `/scrape?target=` may do with a node the exporter does not poll
/// (docs/configuration.md, "Unknown /scrape targets").
#[derive(Debug, Clone)]
pub struct ScrapeSettings {
    /// `scrape.allowed-networks`; empty: unknown targets are refused.
    pub allowed_networks: Vec<crate::redis::cidr::Cidr>,
    /// `scrape.target-idle-timeout`: an added node not scraped for this
    /// long stops being polled.
    pub idle_timeout: Duration,
    /// `scrape.max-targets`: most nodes added this way at once.
    pub max_targets: usize,
    /// The settings an added node is polled with: the `[redis]` defaults
    /// (user, password, CONFIG command, maxclients), as for a
    /// `--redis.addr`; user and password in the target URL win.
    pub template: Target,
}

/// Default `scrape.target-idle-timeout`: several missed scrapes at any
/// usual interval, so a Prometheus restart does not drop the node.
pub const DEFAULT_SCRAPE_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Default `scrape.max-targets`.
pub const DEFAULT_SCRAPE_MAX_TARGETS: usize = 100;

/// Which copy of the data the keyspace analyser reads (docs/insight.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsightSource {
    Master,
    Replica,
}

/// The keyspace analyser (docs/insight.md).
#[derive(Debug, Clone)]
pub struct InsightSettings {
    /// `insight.enabled`: the default for targets that do not say.
    pub enabled: bool,
    /// Redis time per second of wall time, per node.
    pub budget: Duration,
    pub source: InsightSource,
    pub pass_interval: Duration,
    pub rules: crate::signals::keyspace::NamespaceRules,
    pub max_namespaces: usize,
    pub memory_samples: u32,
    pub show_key_names: bool,
}

/// Default `insight.budget`: 2 ms of Redis time per second is 0.2 % of one
/// Redis core, invisible next to a cache's own load (the figure).
/// At the 7-10 us per key a busy server shows, a pass over 200 000 keys
/// takes 12-17 min; on an idle VM commandstats counts up to 30 times more
/// per key and passes take hours (BENCHMARKS.md, "Cache insight"): raise
/// it there, or accept the slower report.
pub const DEFAULT_INSIGHT_BUDGET: Duration = Duration::from_millis(2);
/// `insight.budget` bounds: below 100 us a pass never ends on a real
/// keyspace; above 500 ms the analyser would take half a Redis core.
pub const INSIGHT_BUDGET_RANGE: (Duration, Duration) =
    (Duration::from_micros(100), Duration::from_millis(500));
/// Default `insight.pass-interval`: keyspace composition changes over hours;
/// a quarter-hour report is fresh enough for alerts that look at hours.
pub const DEFAULT_INSIGHT_PASS_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// `insight.pass-interval` bounds: a pass needs time to walk anything; a
/// week is the longest a report may be before it says nothing current.
pub const INSIGHT_PASS_INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_secs(10), Duration::from_secs(7 * 24 * 3600));
/// Default `insight.max-namespaces`: a dashboard table's worth.
pub const DEFAULT_INSIGHT_MAX_NAMESPACES: usize = 20;
/// Highest `insight.max-namespaces`: each namespace is about 15 series per
/// node.
pub const MAX_INSIGHT_NAMESPACES: usize = 200;
/// Default `insight.memory-samples`: MEMORY USAGE's own default, cheap and
/// within a few percent for collections of similar elements.
pub const DEFAULT_INSIGHT_MEMORY_SAMPLES: u32 = 5;
/// Highest `insight.memory-samples`: its cost grows with it, per key.
pub const MAX_INSIGHT_MEMORY_SAMPLES: u32 = 64;

/// The validated configuration the daemon runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub targets: Vec<Target>,
    /// Unknown `/scrape` targets (off unless networks are allowed).
    pub scrape: ScrapeSettings,
    /// The keyspace analyser.
    pub insight: InsightSettings,
    pub poll: PollSettings,
    pub hit_ratio_window: Duration,
    pub lag_history: Duration,
    pub cluster_refresh: Duration,
    /// What discovery may add (see discovery.rs).
    pub discovery: DiscoverySettings,
    /// `None` unless `sentinel.addr` is set.
    pub sentinel: Option<SentinelSettings>,
    pub listen_address: String,
    pub telemetry_path: String,
    /// `--web.config.file` and what it held at startup.
    pub web_config: Option<(PathBuf, Arc<crate::web::config::WebConfig>)>,
    /// Gzip pages for clients that send `Accept-Encoding: gzip`.
    pub web_compression: bool,
    pub log_level: String,
    pub log_format: LogFormat,
}

/// A configuration problem. `key` names the flag or file key at fault.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

/// Longest duration any setting takes: nothing useful polls less often,
/// and it keeps every schedule's clock arithmetic far from overflow.
const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Shortest interval we accept: below this the exporter would be a load
/// generator, not a monitor.
const MIN_INTERVAL: Duration = Duration::from_millis(50);
/// Hard ceiling on `poll.concurrency`: each poll in flight holds a socket.
const MAX_CONCURRENCY: usize = 4096;

impl Config {
    /// Parses flags from `args` (the first item is the program name), reads
    /// the environment and the file, and validates everything.
    pub fn from_args<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let flags = match Flags::try_parse_from(args) {
            Ok(f) => f,
            Err(e) => {
                use clap::error::ErrorKind;
                if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                    let _ = e.print();
                    std::process::exit(0);
                }
                let msg = e.to_string();
                let first = msg
                    .lines()
                    .next()
                    .unwrap_or("invalid arguments")
                    .to_string();
                return Err(err("command line", first.trim_start_matches("error: ")));
            }
        };
        let env_password = std::env::var("REDIS_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty());
        Config::from_flags(flags, env_password)
    }

    pub fn from_flags(flags: Flags, env_password: Option<String>) -> Result<Config, ConfigError> {
        let file = match &flags.config_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    err(
                        "config.file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                parse_file(&text)?
            }
            None => FileConfig::default(),
        };

        let dur = |flag: Option<Duration>, file: &Option<String>, key: &str, default: Duration| {
            let d = match (flag, file) {
                (Some(d), _) => d,
                (None, Some(s)) => humantime::parse_duration(s)
                    .map_err(|e| err(key, format!("invalid duration {s:?}: {e}")))?,
                (None, None) => default,
            };
            if d > MAX_DURATION {
                return Err(err(
                    key,
                    format!(
                        "must be at most {}",
                        humantime::format_duration(MAX_DURATION)
                    ),
                ));
            }
            Ok(d)
        };
        let poll = PollSettings {
            interval: dur(
                flags.poll_interval,
                &file.poll.interval,
                "poll.interval",
                DEFAULT_POLL_INTERVAL,
            )?,
            timeout: dur(
                flags.poll_timeout,
                &file.poll.timeout,
                "poll.timeout",
                DEFAULT_POLL_TIMEOUT,
            )?,
            concurrency: flags
                .poll_concurrency
                .or(file.poll.concurrency)
                .unwrap_or(DEFAULT_POLL_CONCURRENCY),
            group_size: flags
                .poll_group_size
                .or(file.poll.group_size)
                .unwrap_or(DEFAULT_POLL_GROUP_SIZE),
            config_refresh: dur(
                flags.poll_config_refresh,
                &file.poll.config_refresh,
                "poll.config-refresh",
                DEFAULT_CONFIG_REFRESH,
            )?,
            max_backoff: dur(
                flags.poll_max_backoff,
                &file.poll.max_backoff,
                "poll.max-backoff",
                DEFAULT_MAX_BACKOFF,
            )?,
            detail_interval: Duration::ZERO,
        };
        let mut poll = poll;
        poll.detail_interval =
            if flags.poll_detail_interval.is_some() || file.poll.detail_interval.is_some() {
                dur(
                    flags.poll_detail_interval,
                    &file.poll.detail_interval,
                    "poll.detail-interval",
                    poll.interval,
                )?
            } else {
                DEFAULT_DETAIL_INTERVAL.unwrap_or(poll.interval)
            };
        if poll.detail_interval < poll.interval {
            return Err(err(
                "poll.detail-interval",
                "must be at least poll.interval",
            ));
        }
        if poll.interval < MIN_INTERVAL {
            return Err(err(
                "poll.interval",
                format!("must be at least {MIN_INTERVAL:?}"),
            ));
        }
        if poll.timeout.is_zero() {
            return Err(err("poll.timeout", "must be greater than 0"));
        }
        if poll.timeout > poll.interval {
            // A longer deadline would let polls of one node overlap.
            return Err(err("poll.timeout", "must not exceed poll.interval"));
        }
        if poll.concurrency == 0 || poll.concurrency > MAX_CONCURRENCY {
            return Err(err(
                "poll.concurrency",
                format!("must be between 1 and {MAX_CONCURRENCY}"),
            ));
        }
        if poll.group_size == 0 || poll.group_size > MAX_CONCURRENCY {
            return Err(err(
                "poll.group-size",
                format!("must be between 1 and {MAX_CONCURRENCY}"),
            ));
        }
        if poll.max_backoff < poll.interval {
            return Err(err("poll.max-backoff", "must be at least poll.interval"));
        }
        let hit_ratio_window = dur(
            flags.signals_hit_ratio_window,
            &file.signals.hit_ratio_window,
            "signals.hit-ratio-window",
            DEFAULT_HIT_RATIO_WINDOW,
        )?;
        if hit_ratio_window < poll.interval {
            return Err(err(
                "signals.hit-ratio-window",
                "must be at least poll.interval",
            ));
        }
        let lag_history = dur(
            flags.signals_lag_history,
            &file.signals.lag_history,
            "signals.lag-history",
            DEFAULT_LAG_HISTORY,
        )?;
        if lag_history < poll.interval.saturating_mul(2) {
            return Err(err(
                "signals.lag-history",
                "must be at least twice poll.interval",
            ));
        }
        let cluster_refresh = dur(
            flags.cluster_refresh_interval,
            &file.cluster.refresh_interval,
            "cluster.refresh-interval",
            DEFAULT_CLUSTER_REFRESH,
        )?;
        if cluster_refresh < MIN_INTERVAL {
            return Err(err(
                "cluster.refresh-interval",
                format!("must be at least {MIN_INTERVAL:?}"),
            ));
        }
        // Discovery's trust model and bounds (issue 16), one block.
        let networks: Vec<String> = if !flags.cluster_allowed_networks.is_empty() {
            flags.cluster_allowed_networks
        } else {
            file.cluster.allowed_networks.unwrap_or_default()
        };
        let allowed_networks = if networks.is_empty() {
            None
        } else {
            let mut parsed = Vec::with_capacity(networks.len());
            for (i, n) in networks.iter().enumerate() {
                let cidr = crate::redis::cidr::Cidr::parse(n).map_err(|m| {
                    err(
                        format!("cluster.allowed-networks[{i}]"),
                        format!("{n:?}: {m}"),
                    )
                })?;
                parsed.push(cidr);
            }
            Some(parsed)
        };
        let bounded = |value: Option<usize>, key: &str, default: usize| match value {
            None => Ok(default),
            Some(n) if (1..=MAX_MAX_NODES).contains(&n) => Ok(n),
            Some(_) => Err(err(key, format!("must be between 1 and {MAX_MAX_NODES}"))),
        };
        let shard_count = match flags.shard_count.as_deref() {
            Some(v) => v
                .trim()
                .parse::<u32>()
                .map_err(|_| err("shard.count", format!("{v:?} is not a whole number")))?,
            None => file.shard.count.unwrap_or(1),
        };
        if !(1..=MAX_SHARD_COUNT).contains(&shard_count) {
            return Err(err(
                "shard.count",
                format!("must be between 1 and {MAX_SHARD_COUNT}"),
            ));
        }
        let shard_index = match flags.shard_index.as_deref() {
            Some(v) => parse_shard_index(v).map_err(|m| err("shard.index", m))?,
            None => file.shard.index.unwrap_or(0),
        };
        if shard_index >= shard_count {
            return Err(err(
                "shard.index",
                format!("{shard_index} is not below shard.count ({shard_count})"),
            ));
        }
        let discovery = DiscoverySettings {
            enabled: flags
                .cluster_discover
                .or(file.cluster.discover)
                .unwrap_or(true),
            allowed_networks,
            cluster_max_nodes: bounded(
                flags.cluster_max_nodes.or(file.cluster.max_nodes),
                "cluster.max-nodes",
                DEFAULT_CLUSTER_MAX_NODES,
            )?,
            max_nodes: bounded(
                flags.poll_max_nodes.or(file.poll.max_nodes),
                "poll.max-nodes",
                DEFAULT_MAX_NODES,
            )?,
            shard: ShardSettings {
                index: shard_index,
                count: shard_count,
            },
            shard_settle: cluster_refresh + 2 * poll.interval,
            shard_confirm: 2 * poll.interval,
        };

        let listen_address = flags
            .web_listen_address
            .or(file.web.listen_address)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        resolve_listen(&listen_address).map_err(|m| err("web.listen-address", m))?;
        let telemetry_path = flags
            .web_telemetry_path
            .or(file.web.telemetry_path)
            .unwrap_or_else(|| "/metrics".to_string());
        if !telemetry_path.starts_with('/') || telemetry_path.len() < 2 {
            return Err(err(
                "web.telemetry-path",
                "must start with / and not be / itself",
            ));
        }
        if ["/-/healthy", "/-/ready", "/sd", "/scrape"].contains(&telemetry_path.as_str()) {
            return Err(err(
                "web.telemetry-path",
                "collides with a built-in endpoint",
            ));
        }
        let web_compression = flags
            .web_compression
            .or(file.web.compression)
            .unwrap_or(true);
        let web_config = match flags.web_config_file.or(file.web.config_file) {
            Some(path) => {
                let loaded = crate::web::config::WebConfig::load(&path)
                    .map_err(|e| err("web.config.file", e.to_string()))?;
                Some((path, Arc::new(loaded)))
            }
            None => None,
        };
        let log_level = flags
            .log_level
            .or(file.log.level)
            .unwrap_or_else(|| "info".to_string())
            .to_ascii_lowercase();
        if !["trace", "debug", "info", "warn", "error"].contains(&log_level.as_str()) {
            return Err(err(
                "log.level",
                "must be one of trace, debug, info, warn, error",
            ));
        }
        let log_format = match flags.log_format.or(file.log.format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(_) => return Err(err("log.format", "must be text or json")),
        };

        // Defaults shared by every target.
        let default_user = flags.redis_user.or(file.redis.user);
        let default_password = match (
            &flags.redis_password_file,
            env_password,
            &file.redis.password_file,
            &file.redis.password,
        ) {
            (Some(path), _, _, _) => Some(read_password_file(path, "redis.password-file")?),
            (None, Some(pw), _, _) => Some(Secret::new(&pw)),
            (None, None, Some(path), _) => Some(read_password_file(path, "redis.password-file")?),
            (None, None, None, Some(pw)) => Some(Secret::new(pw)),
            _ => None,
        };
        let default_config_command = flags
            .redis_config_command
            .or(file.redis.config_command)
            .unwrap_or_else(|| "CONFIG".into());
        validate_command_name(&default_config_command, "redis.config-command")?;
        let default_cluster = flags
            .redis_cluster
            .or(file.redis.cluster)
            .unwrap_or_default();
        validate_label(&default_cluster, "redis.cluster")?;
        let defaults = TargetSettings {
            user: default_user,
            password: default_password,
            cluster: default_cluster,
            maxclients: flags.redis_maxclients.or(file.redis.maxclients),
            config_command: default_config_command,
            tls: TlsFiles {
                ca_file: flags.redis_tls_ca_file.or(file.redis.tls_ca_file),
                cert_file: flags.redis_tls_cert_file.or(file.redis.tls_cert_file),
                key_file: flags.redis_tls_key_file.or(file.redis.tls_key_file),
                server_name: flags.redis_tls_server_name.or(file.redis.tls_server_name),
                insecure_skip_verify: flags.redis_tls_insecure_skip_verify
                    || file.redis.tls_insecure_skip_verify.unwrap_or(false),
            },
        };
        let mut tls_cache = TlsCache::default();

        // Redis Sentinel (issue 19): its own credentials and TLS, never
        // mixed with the data nodes'.
        let sentinel_addrs: Vec<String> = if !flags.sentinel_addr.is_empty() {
            flags.sentinel_addr
        } else {
            file.sentinel.addr.clone().unwrap_or_default()
        };
        let sentinel = if sentinel_addrs.is_empty() {
            None
        } else {
            let fs = &file.sentinel;
            let password = match (
                &flags.sentinel_password_file,
                &fs.password_file,
                &fs.password,
            ) {
                (Some(path), _, _) | (None, Some(path), _) => {
                    Some(read_password_file(path, "sentinel.password-file")?)
                }
                (None, None, Some(pw)) => Some(Secret::new(pw)),
                _ => None,
            };
            let settings = TargetSettings {
                user: flags.sentinel_user.clone().or(fs.user.clone()),
                password,
                cluster: String::new(),
                maxclients: None,
                config_command: String::new(),
                tls: TlsFiles {
                    ca_file: flags
                        .sentinel_tls_ca_file
                        .clone()
                        .or(fs.tls_ca_file.clone()),
                    cert_file: flags
                        .sentinel_tls_cert_file
                        .clone()
                        .or(fs.tls_cert_file.clone()),
                    key_file: flags
                        .sentinel_tls_key_file
                        .clone()
                        .or(fs.tls_key_file.clone()),
                    server_name: flags
                        .sentinel_tls_server_name
                        .clone()
                        .or(fs.tls_server_name.clone()),
                    insecure_skip_verify: flags.sentinel_tls_insecure_skip_verify
                        || fs.tls_insecure_skip_verify.unwrap_or(false),
                },
            };
            let mut sentinels = Vec::new();
            for (i, a) in sentinel_addrs.iter().enumerate() {
                let key = format!("sentinel.addr[{i}]");
                let t = build_target(a, &key, "sentinel", &settings, &mut tls_cache)?;
                if matches!(t.endpoint, target::Endpoint::Unix { .. }) || t.db != 0 {
                    return Err(err(key, "must be host:port (a Sentinel has no database, and a Unix socket has no network to trust)"));
                }
                if sentinels.iter().any(|s: &Target| s.addr == t.addr) {
                    return Err(err(key, format!("{} is configured twice", t.addr)));
                }
                sentinels.push(t);
            }
            let masters: Vec<String> = if !flags.sentinel_master.is_empty() {
                flags.sentinel_master.clone()
            } else {
                fs.masters.clone().unwrap_or_default()
            };
            for (i, m) in masters.iter().enumerate() {
                if m.is_empty() || m.chars().any(|c| c.is_whitespace()) {
                    return Err(err(
                        format!("sentinel.masters[{i}]"),
                        "must be a master name without spaces",
                    ));
                }
                validate_label(m, &format!("sentinel.masters[{i}]"))?;
            }
            let refresh = dur(
                flags.sentinel_refresh_interval,
                &fs.refresh_interval,
                "sentinel.refresh-interval",
                DEFAULT_SENTINEL_REFRESH,
            )?;
            if refresh < MIN_INTERVAL {
                return Err(err(
                    "sentinel.refresh-interval",
                    format!("must be at least {MIN_INTERVAL:?}"),
                ));
            }
            let ckquorum = dur(
                flags.sentinel_ckquorum_interval,
                &fs.ckquorum_interval,
                "sentinel.ckquorum-interval",
                DEFAULT_SENTINEL_CKQUORUM,
            )?;
            if ckquorum < Duration::from_secs(1) {
                return Err(err("sentinel.ckquorum-interval", "must be at least 1s"));
            }
            let networks: Vec<String> = if !flags.sentinel_allowed_networks.is_empty() {
                flags.sentinel_allowed_networks.clone()
            } else {
                fs.allowed_networks.clone().unwrap_or_default()
            };
            let mut allowed = None;
            if !networks.is_empty() {
                let mut parsed = Vec::with_capacity(networks.len());
                for (i, n) in networks.iter().enumerate() {
                    parsed.push(crate::redis::cidr::Cidr::parse(n).map_err(|m| {
                        err(
                            format!("sentinel.allowed-networks[{i}]"),
                            format!("{n:?}: {m}"),
                        )
                    })?);
                }
                allowed = Some(parsed);
            }
            let data_tls = flags.sentinel_data_tls.or(fs.data_tls).unwrap_or(false);
            let scheme = if data_tls { "rediss" } else { "redis" };
            let mut data_template = build_target(
                &format!("{scheme}://127.0.0.1:6379"),
                "sentinel.data-tls",
                "redis",
                &defaults,
                &mut tls_cache,
            )?;
            data_template.cluster = String::new();
            Some(SentinelSettings {
                sentinels,
                masters,
                refresh,
                ckquorum,
                allowed_networks: allowed.or_else(|| discovery.allowed_networks.clone()),
                data_template,
            })
        };

        let mut targets = Vec::new();
        let flag_addrs: Vec<String> = if !flags.redis_addr.is_empty() {
            flags.redis_addr
        } else {
            file.redis.addr.unwrap_or_default()
        };
        for (i, a) in flag_addrs.iter().enumerate() {
            let key = format!("redis.addr[{i}]");
            targets.push(build_target(a, &key, "redis", &defaults, &mut tls_cache)?);
        }
        for (i, t) in file.targets.iter().enumerate() {
            let key = format!("targets[{i}]");
            let password = match (&t.password_file, &t.password) {
                (Some(path), _) => Some(read_password_file(path, &format!("{key}.password-file"))?),
                (None, Some(pw)) => Some(Secret::new(pw)),
                (None, None) => defaults.password.clone(),
            };
            let settings = TargetSettings {
                user: t.user.clone().or_else(|| defaults.user.clone()),
                password,
                cluster: t
                    .cluster
                    .clone()
                    .unwrap_or_else(|| defaults.cluster.clone()),
                maxclients: t.maxclients.or(defaults.maxclients),
                config_command: t
                    .config_command
                    .clone()
                    .unwrap_or_else(|| defaults.config_command.clone()),
                tls: TlsFiles {
                    ca_file: t
                        .tls_ca_file
                        .clone()
                        .or_else(|| defaults.tls.ca_file.clone()),
                    cert_file: t
                        .tls_cert_file
                        .clone()
                        .or_else(|| defaults.tls.cert_file.clone()),
                    key_file: t
                        .tls_key_file
                        .clone()
                        .or_else(|| defaults.tls.key_file.clone()),
                    server_name: t
                        .tls_server_name
                        .clone()
                        .or_else(|| defaults.tls.server_name.clone()),
                    insecure_skip_verify: t
                        .tls_insecure_skip_verify
                        .unwrap_or(defaults.tls.insecure_skip_verify),
                },
            };
            validate_label(&settings.cluster, &format!("{key}.cluster"))?;
            validate_command_name(&settings.config_command, &format!("{key}.config-command"))?;
            targets.push(build_target(
                &t.addr,
                &format!("{key}.addr"),
                &key,
                &settings,
                &mut tls_cache,
            )?);
            if let Some(built) = targets.last_mut() {
                built.insight = t.insight;
            }
        }
        if targets.is_empty() && sentinel.is_none() {
            targets.push(build_target(
                DEFAULT_TARGET,
                "redis.addr",
                "redis",
                &defaults,
                &mut tls_cache,
            )?);
        }
        let mut seen = std::collections::HashSet::new();
        for t in &targets {
            if !seen.insert(t.addr.clone()) {
                return Err(err("redis.addr", format!("{} is configured twice", t.addr)));
            }
        }
        // Sentinel groups are not split across replicas yet: each replica
        // would poll every group, and hide it (it owns no share of it).
        // Refused rather than half-working.
        if sentinel.is_some() && discovery.shard.enabled() {
            return Err(err(
                "shard.count",
                "sharding across replicas is not supported together with sentinel.addr yet",
            ));
        }
        if targets.len() > discovery.max_nodes {
            return Err(err(
                "poll.max-nodes",
                format!(
                    "{} targets are configured, more than the {} allowed",
                    targets.len(),
                    discovery.max_nodes
                ),
            ));
        }

        // Unknown /scrape targets (issue 17): opt-in by network, bounded.
        let networks: Vec<String> = if !flags.scrape_allowed_networks.is_empty() {
            flags.scrape_allowed_networks
        } else {
            file.scrape.allowed_networks.unwrap_or_default()
        };
        let mut scrape_networks = Vec::with_capacity(networks.len());
        for (i, n) in networks.iter().enumerate() {
            scrape_networks.push(crate::redis::cidr::Cidr::parse(n).map_err(|m| {
                err(
                    format!("scrape.allowed-networks[{i}]"),
                    format!("{n:?}: {m}"),
                )
            })?);
        }
        let idle_timeout = dur(
            flags.scrape_target_idle_timeout,
            &file.scrape.target_idle_timeout,
            "scrape.target-idle-timeout",
            DEFAULT_SCRAPE_IDLE_TIMEOUT,
        )?;
        if idle_timeout < poll.interval {
            return Err(err(
                "scrape.target-idle-timeout",
                "must be at least poll.interval",
            ));
        }
        let scrape = ScrapeSettings {
            allowed_networks: scrape_networks,
            idle_timeout,
            max_targets: match flags.scrape_max_targets.or(file.scrape.max_targets) {
                None => DEFAULT_SCRAPE_MAX_TARGETS,
                Some(n) if (1..=MAX_MAX_NODES).contains(&n) => n,
                Some(_) => {
                    return Err(err(
                        "scrape.max-targets",
                        format!("must be between 1 and {MAX_MAX_NODES}"),
                    ))
                }
            },
            template: build_target(
                "127.0.0.1:6379",
                "redis",
                "redis",
                &defaults,
                &mut tls_cache,
            )?,
        };

        let insight = InsightFlags {
            enabled: flags.insight_enabled,
            budget: flags.insight_budget,
            source: flags.insight_source,
            pass_interval: flags.insight_pass_interval,
            separators: flags.insight_separators,
            max_namespaces: flags.insight_max_namespaces,
            memory_samples: flags.insight_memory_samples,
            show_key_names: flags.insight_show_key_names,
        }
        .resolve(&file.insight, &dur)?;

        Ok(Config {
            targets,
            scrape,
            insight,
            poll,
            hit_ratio_window,
            lag_history,
            cluster_refresh,
            discovery,
            sentinel,
            listen_address,
            telemetry_path,
            web_config,
            web_compression,
            log_level,
            log_format,
        })
    }
}

/// Reads one duration setting: (flag, file value, key, default).
type DurationSetting =
    dyn Fn(Option<Duration>, &Option<String>, &str, Duration) -> Result<Duration, ConfigError>;

/// The `insight.*` flags, taken out of [`Flags`] before its other fields
/// are moved.
struct InsightFlags {
    enabled: Option<bool>,
    budget: Option<Duration>,
    source: Option<String>,
    pass_interval: Option<Duration>,
    separators: Option<String>,
    max_namespaces: Option<usize>,
    memory_samples: Option<u32>,
    show_key_names: Option<bool>,
}

impl InsightFlags {
    fn resolve(
        self,
        file: &FileInsight,
        dur: &DurationSetting,
    ) -> Result<InsightSettings, ConfigError> {
        let in_range = |d: Duration, (lo, hi): (Duration, Duration), key: &str| {
            if d < lo || d > hi {
                Err(err(
                    key,
                    format!(
                        "must be between {} and {}",
                        humantime::format_duration(lo),
                        humantime::format_duration(hi)
                    ),
                ))
            } else {
                Ok(d)
            }
        };
        let budget = dur(
            self.budget,
            &file.budget,
            "insight.budget",
            DEFAULT_INSIGHT_BUDGET,
        )?;
        let budget = in_range(budget, INSIGHT_BUDGET_RANGE, "insight.budget")?;
        let pass_interval = dur(
            self.pass_interval,
            &file.pass_interval,
            "insight.pass-interval",
            DEFAULT_INSIGHT_PASS_INTERVAL,
        )?;
        let pass_interval = in_range(
            pass_interval,
            INSIGHT_PASS_INTERVAL_RANGE,
            "insight.pass-interval",
        )?;
        let source = match self.source.or_else(|| file.source.clone()).as_deref() {
            None | Some("master") => InsightSource::Master,
            Some("replica") => InsightSource::Replica,
            Some(other) => {
                return Err(err(
                    "insight.source",
                    format!("{other:?}: must be master or replica"),
                ))
            }
        };
        let separators = self
            .separators
            .or_else(|| file.separators.clone())
            .unwrap_or_else(|| ":".to_string());
        // Key names are split byte by byte: ASCII punctuation only, so a
        // separator is never half of a multi-byte character.
        // `{` and `}` would cut hash tags apart, `*` is what identifiers
        // become: none of them may separate.
        if separators.is_empty()
            || separators.len() > 4
            || !separators
                .bytes()
                .all(|b| b.is_ascii_punctuation() && !b"{}*".contains(&b))
        {
            return Err(err(
                "insight.separators",
                format!(
                    "{separators:?}: must be 1 to 4 ASCII punctuation characters, not {{, }} or *"
                ),
            ));
        }
        let max_namespaces = self
            .max_namespaces
            .or(file.max_namespaces)
            .unwrap_or(DEFAULT_INSIGHT_MAX_NAMESPACES);
        if !(1..=MAX_INSIGHT_NAMESPACES).contains(&max_namespaces) {
            return Err(err(
                "insight.max-namespaces",
                format!("must be between 1 and {MAX_INSIGHT_NAMESPACES}"),
            ));
        }
        let memory_samples = self
            .memory_samples
            .or(file.memory_samples)
            .unwrap_or(DEFAULT_INSIGHT_MEMORY_SAMPLES);
        // SAMPLES 0 walks every element: one key of millions of elements
        // would block Redis for seconds before pacing could see it.
        if !(1..=MAX_INSIGHT_MEMORY_SAMPLES).contains(&memory_samples) {
            return Err(err(
                "insight.memory-samples",
                format!("must be between 1 and {MAX_INSIGHT_MEMORY_SAMPLES}"),
            ));
        }
        Ok(InsightSettings {
            enabled: self.enabled.or(file.enabled).unwrap_or(false),
            budget,
            source,
            pass_interval,
            rules: crate::signals::keyspace::NamespaceRules {
                separators: separators.into_bytes(),
            },
            max_namespaces,
            memory_samples,
            show_key_names: self.show_key_names.or(file.show_key_names).unwrap_or(false),
        })
    }
}

fn parse_file(text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        // toml's message names the offending key and its line; keep it, but
        // on one line, and without echoing the offending value (it may be a
        // password).
        let (message, wrong_value) = without_value(e.message());
        let start = e.span().and_then(|s| text.get(..s.start).map(str::len));
        let at = start
            .map(|start| {
                let line = text[..start].matches('\n').count() + 1;
                format!(" (line {line})")
            })
            .unwrap_or_default();
        // toml names an unknown key itself, but a value of the wrong type
        // only by its line: name the key from the text around it. Only
        // then: such an error points at the start of a value, while a
        // syntax error can point inside a multi-line string, whose lines
        // must not be read as keys (they may be a password).
        let key = start
            .filter(|_| wrong_value)
            .and_then(|start| key_at(text, start));
        err(
            key.as_deref().unwrap_or("config.file"),
            format!("{message}{at}"),
        )
    })
}

/// serde's "invalid type: integer `12345678`, expected a string" echoes
/// the value, which may be a password given unquoted: keep what kind of
/// value it was and what was expected, drop the value itself.
fn without_value(message: &str) -> (String, bool) {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            // The expected clause is serde's own text, from our types.
            let (what, expected) = rest.rsplit_once(", expected").unwrap_or((rest, ""));
            let kind = what.split(['`', '"', '\'']).next().unwrap_or("").trim();
            let expected = if expected.is_empty() {
                String::new()
            } else {
                format!(", expected{expected}")
            };
            return (format!("{prefix}{kind}{expected}"), true);
        }
    }
    (message.to_string(), false)
}

/// The dotted key (`poll.interval`, `targets[1].password`) of the
/// `key = value` line holding byte `offset` of a TOML text, if that line is
/// one. Only the part before `=` is read, so a value is never echoed; an
/// inline table (`redis = { password = 5 }`) gives `None`, and so does a
/// line in a multi-line string.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    let (key, value) = line.split_once('=')?;
    if value.trim_start().starts_with('{') {
        return None;
    }
    let key = key.trim();
    let bare = |k: &str| {
        !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    };
    if !bare(key) {
        return None;
    }
    // The table the line is in: the last header above it.
    let mut table: Option<String> = None;
    let mut seen_arrays: Vec<(String, usize)> = Vec::new();
    // Inside a multi-line string (`"""` or `\'\'\'`) a line that looks like a
    // header is text, not a table.
    let mut open: Option<&str> = None;
    for l in text[..line_start].lines() {
        if let Some(delim) = open {
            if l.matches(delim).count() % 2 == 1 {
                open = None;
            }
            continue;
        }
        if let Some(delim) = ["\"\"\"", "\'\'\'"]
            .into_iter()
            .find(|d| l.matches(d).count() % 2 == 1)
        {
            open = Some(delim);
            continue;
        }
        // A header may carry a comment: `[poll]  # the schedule`.
        let l = l.split('#').next().unwrap_or("").trim();
        if let Some(name) = l.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
            let name = name.trim().to_string();
            let n = match seen_arrays.iter_mut().find(|(a, _)| *a == name) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    seen_arrays.push((name.clone(), 0));
                    0
                }
            };
            table = bare(&name).then(|| format!("{name}[{n}]"));
        } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            table = bare(name.trim()).then(|| name.trim().to_string());
        }
    }
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_string(),
    })
}

/// Settings a target takes from `[redis]` unless its entry overrides them.
struct TargetSettings {
    user: Option<String>,
    password: Option<Secret>,
    cluster: String,
    maxclients: Option<u64>,
    config_command: String,
    tls: TlsFiles,
}

/// Targets with the same TLS files share one client configuration.
#[derive(Default)]
struct TlsCache(Vec<(TlsFiles, Arc<rustls::ClientConfig>)>);

fn build_target(
    raw: &str,
    key: &str,
    prefix: &str,
    settings: &TargetSettings,
    cache: &mut TlsCache,
) -> Result<Target, ConfigError> {
    let parsed = target::parse_addr(raw)
        .map_err(|e| err(key, format!("{} ({e})", target::redact_url(raw))))?;
    let tls = if parsed.tls {
        let files = &settings.tls;
        let config = match cache.0.iter().find(|(f, _)| f == files) {
            Some((_, c)) => c.clone(),
            None => {
                let c = crate::redis::tls::client_config(files)
                    .map_err(|(suffix, m)| err(format!("{prefix}.{suffix}"), m))?;
                cache.0.push((files.clone(), c.clone()));
                c
            }
        };
        let host = match &parsed.endpoint {
            target::Endpoint::Tcp { host, .. } => host.clone(),
            target::Endpoint::Unix { path } => path.clone(),
        };
        Some(crate::redis::tls::TlsClient {
            config,
            server_name: files.server_name.clone().unwrap_or(host),
            name_overridden: files.server_name.is_some(),
            insecure: files.insecure_skip_verify,
        })
    } else {
        None
    };
    Ok(Target {
        endpoint: parsed.endpoint,
        addr: parsed.addr,
        db: parsed.db,
        // What the URL says wins: it is the most specific place.
        user: parsed.user.or_else(|| settings.user.clone()),
        password: parsed.password.or_else(|| settings.password.clone()),
        cluster: settings.cluster.clone(),
        maxclients_override: settings.maxclients,
        config_command: if settings.config_command.is_empty() {
            None
        } else {
            Some(settings.config_command.clone())
        },
        discovered: false,
        from_sentinel: false,
        insight: None,
        tls,
    })
}

fn read_password_file(path: &PathBuf, key: &str) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(key, format!("cannot read {}: {}", path.display(), e.kind())))?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(err(key, format!("{} is empty", path.display())));
    }
    Ok(Secret::new(line))
}

fn validate_command_name(name: &str, key: &str) -> Result<(), ConfigError> {
    if name.len() > 64 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(err(
            key,
            "must be a command name without spaces (or empty to disable)",
        ));
    }
    Ok(())
}

fn validate_label(value: &str, key: &str) -> Result<(), ConfigError> {
    if value.len() > 128 || value.chars().any(|c| c.is_control()) {
        return Err(err(key, "must be at most 128 printable characters"));
    }
    Ok(())
}

/// `:9121` means every IPv4 interface, as Go exporters read it.
pub fn resolve_listen(addr: &str) -> Result<String, String> {
    let full = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_string()
    };
    full.parse::<std::net::SocketAddr>()
        .map(|a| a.to_string())
        .map_err(|_| {
            format!("{addr:?} is not host:port with a numeric IP (e.g. :9121, 127.0.0.1:9121)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(args: &[&str]) -> Result<Config, ConfigError> {
        let mut all = vec!["redis-vitals"];
        all.extend_from_slice(args);
        Config::from_flags(Flags::try_parse_from(all).unwrap(), None)
    }

    #[test]
    fn defaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.targets.len(), 1);
        assert_eq!(c.targets[0].addr, "localhost:6379");
        assert_eq!(c.poll.interval, DEFAULT_POLL_INTERVAL);
        assert_eq!(c.listen_address, ":9121");
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = cfg(&["--poll.timeout", "10s"]).unwrap_err();
        assert_eq!(e.key, "poll.timeout");
        let e = cfg(&["--redis.addr", "redis://u:hunter2@h:1/x"]).unwrap_err();
        assert_eq!(e.key, "redis.addr[0]");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = cfg(&["--web.listen-address", "nonsense"]).unwrap_err();
        assert_eq!(e.key, "web.listen-address");
        for bad in ["0", "4097"] {
            let e = cfg(&["--poll.group-size", bad]).unwrap_err();
            assert_eq!(e.key, "poll.group-size");
        }
        assert_eq!(cfg(&[]).unwrap().poll.group_size, DEFAULT_POLL_GROUP_SIZE);
        assert_eq!(cfg(&["--poll.group-size", "1"]).unwrap().poll.group_size, 1);
    }

    #[test]
    fn insight_settings() {
        let c = cfg(&[]).unwrap();
        assert!(!c.insight.enabled);
        assert_eq!(c.insight.budget, DEFAULT_INSIGHT_BUDGET);
        assert_eq!(c.insight.source, InsightSource::Master);
        assert_eq!(c.insight.rules.separators, b":");
        let c = cfg(&[
            "--insight.enabled",
            "--insight.budget",
            "500us",
            "--insight.source",
            "replica",
            "--insight.separators",
            ":/",
            "--insight.max-namespaces",
            "50",
        ])
        .unwrap();
        assert!(c.insight.enabled);
        assert_eq!(c.insight.budget, Duration::from_micros(500));
        assert_eq!(c.insight.source, InsightSource::Replica);
        assert_eq!(c.insight.rules.separators, b":/");
        assert_eq!(c.insight.max_namespaces, 50);
        for (args, key) in [
            (&["--insight.budget", "50us"][..], "insight.budget"),
            (&["--insight.budget", "1s"][..], "insight.budget"),
            (&["--insight.source", "primary"][..], "insight.source"),
            (&["--insight.separators", ""][..], "insight.separators"),
            (&["--insight.separators", "é"][..], "insight.separators"),
            (&["--insight.separators", "a"][..], "insight.separators"),
            (
                &["--insight.max-namespaces", "0"][..],
                "insight.max-namespaces",
            ),
            (
                &["--insight.max-namespaces", "201"][..],
                "insight.max-namespaces",
            ),
            (
                &["--insight.memory-samples", "65"][..],
                "insight.memory-samples",
            ),
            (
                &["--insight.memory-samples", "0"][..],
                "insight.memory-samples",
            ),
            (&["--insight.separators", ":{"][..], "insight.separators"),
            (&["--insight.separators", "*"][..], "insight.separators"),
            (
                &["--insight.pass-interval", "1s"][..],
                "insight.pass-interval",
            ),
        ] {
            assert_eq!(cfg(args).unwrap_err().key, key, "{args:?}");
        }
        let file = parse_file(
            "[insight]\nenabled = true\nbudget = \"5ms\"\n\n[[targets]]\naddr = \"h:1\"\ninsight = false\n",
        )
        .unwrap();
        assert_eq!(file.insight.enabled, Some(true));
        assert_eq!(file.targets[0].insight, Some(false));
        assert!(parse_file("[insight]\nbudjet = \"5ms\"\n").is_err());
    }

    #[test]
    fn sharding_and_sentinel_are_refused_together() {
        let e = cfg(&["--shard.count", "2", "--sentinel.addr", "127.0.0.1:26379"]).unwrap_err();
        assert_eq!(e.key, "shard.count", "{e}");
        assert!(cfg(&["--shard.count", "1", "--sentinel.addr", "127.0.0.1:26379"]).is_ok());
    }

    #[test]
    fn shard_settings() {
        let s = |args: &[&str]| cfg(args).map(|c| c.discovery.shard);
        assert_eq!(s(&[]).unwrap(), ShardSettings { index: 0, count: 1 });
        assert_eq!(
            s(&["--shard.count", "3", "--shard.index", "2"]).unwrap(),
            ShardSettings { index: 2, count: 3 }
        );
        assert_eq!(
            s(&["--shard.count", "3", "--shard.index", "redis-vitals-1"]).unwrap(),
            ShardSettings { index: 1, count: 3 }
        );
        for (args, key) in [
            (&["--shard.count", "0"][..], "shard.count"),
            (&["--shard.count", "x"][..], "shard.count"),
            (&["--shard.count", "2000"][..], "shard.count"),
            (&["--shard.index", "1"][..], "shard.index"),
            (
                &["--shard.count", "3", "--shard.index", "3"][..],
                "shard.index",
            ),
            (
                &["--shard.count", "3", "--shard.index", "pod"][..],
                "shard.index",
            ),
        ] {
            assert_eq!(s(args).unwrap_err().key, key, "{args:?}");
        }
    }

    #[test]
    fn shard_index_forms() {
        assert_eq!(parse_shard_index("0"), Ok(0));
        assert_eq!(parse_shard_index("12"), Ok(12));
        assert_eq!(parse_shard_index("redis-vitals-2"), Ok(2));
        assert_eq!(parse_shard_index("a-b-10"), Ok(10));
        for bad in [
            "",
            "-1",
            "x",
            "redis-vitals",
            "redis-vitals-",
            "1.5",
            "pod-2x",
        ] {
            assert!(parse_shard_index(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn compression_is_on_unless_turned_off() {
        assert!(cfg(&[]).unwrap().web_compression);
        assert!(!cfg(&["--web.compression=false"]).unwrap().web_compression);
        let file = parse_file("[web]\ncompression = false\n").unwrap();
        assert_eq!(file.web.compression, Some(false));
        let e = parse_file("[web]\ncompression = \"no\"\n").unwrap_err();
        assert_eq!(e.key, "web.compression", "{e}");
    }

    #[test]
    fn detail_interval_defaults_to_the_poll_interval() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.poll.detail_interval, c.poll.interval);
        let c = cfg(&["--poll.interval", "2s"]).unwrap();
        assert_eq!(c.poll.detail_interval, Duration::from_secs(2));
        let c = cfg(&["--poll.detail-interval", "30s"]).unwrap();
        assert_eq!(c.poll.detail_interval, Duration::from_secs(30));
        let e = cfg(&["--poll.detail-interval", "1s"]).unwrap_err();
        assert_eq!(e.key, "poll.detail-interval");
    }

    #[test]
    fn scrape_settings() {
        let c = cfg(&[]).unwrap();
        assert!(c.scrape.allowed_networks.is_empty());
        assert_eq!(c.scrape.idle_timeout, DEFAULT_SCRAPE_IDLE_TIMEOUT);
        assert_eq!(c.scrape.max_targets, DEFAULT_SCRAPE_MAX_TARGETS);
        let c = cfg(&[
            "--scrape.allowed-networks",
            "10.0.0.0/8,192.168.1.0/24",
            "--scrape.target-idle-timeout",
            "1m",
            "--scrape.max-targets",
            "3",
        ])
        .unwrap();
        assert_eq!(c.scrape.allowed_networks.len(), 2);
        assert_eq!(c.scrape.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.scrape.max_targets, 3);
        let e = cfg(&["--scrape.allowed-networks", "10.0.0.0/8,nonsense"]).unwrap_err();
        assert_eq!(e.key, "scrape.allowed-networks[1]", "{e}");
        let e = cfg(&["--scrape.target-idle-timeout", "1s"]).unwrap_err();
        assert_eq!(e.key, "scrape.target-idle-timeout", "{e}");
        let e = cfg(&["--scrape.max-targets", "0"]).unwrap_err();
        assert_eq!(e.key, "scrape.max-targets", "{e}");
        let file = parse_file(
            "[scrape]\nallowed-networks = [\"10.1.0.0/16\"]\ntarget-idle-timeout = \"5m\"\nmax-targets = 7\n",
        )
        .unwrap();
        assert_eq!(file.scrape.max_targets, Some(7));
    }

    #[test]
    fn discovery_settings() {
        let c = cfg(&[]).unwrap();
        assert!(c.discovery.enabled);
        assert!(c.discovery.allowed_networks.is_none());
        assert_eq!(c.discovery.cluster_max_nodes, DEFAULT_CLUSTER_MAX_NODES);
        assert_eq!(c.discovery.max_nodes, DEFAULT_MAX_NODES);
        let c = cfg(&[
            "--cluster.allowed-networks",
            "10.0.0.0/24",
            "--cluster.allowed-networks",
            "fd00::/64,127.0.0.1",
            "--cluster.discover=false",
            "--cluster.max-nodes",
            "7",
            "--poll.max-nodes",
            "9",
        ])
        .unwrap();
        let nets: Vec<String> = c
            .discovery
            .allowed_networks
            .unwrap()
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(nets, ["10.0.0.0/24", "fd00::/64", "127.0.0.1/32"]);
        assert!(!c.discovery.enabled);
        assert_eq!(
            (c.discovery.cluster_max_nodes, c.discovery.max_nodes),
            (7, 9)
        );
        let e = cfg(&["--cluster.allowed-networks", "10.0.0.0/24,10.0.0.0/33"]).unwrap_err();
        assert_eq!(e.key, "cluster.allowed-networks[1]", "{e}");
        let e = cfg(&["--cluster.allowed-networks", "nonsense"]).unwrap_err();
        assert_eq!(e.key, "cluster.allowed-networks[0]", "{e}");
        for bad in ["0", "100001"] {
            assert_eq!(
                cfg(&["--cluster.max-nodes", bad]).unwrap_err().key,
                "cluster.max-nodes"
            );
            assert_eq!(
                cfg(&["--poll.max-nodes", bad]).unwrap_err().key,
                "poll.max-nodes"
            );
        }
        let e = cfg(&[
            "--poll.max-nodes",
            "1",
            "--redis.addr",
            "a:1",
            "--redis.addr",
            "b:1",
        ])
        .unwrap_err();
        assert_eq!(e.key, "poll.max-nodes", "{e}");
        let file = parse_file(
            "[cluster]\nallowed-networks = [\"10.1.0.0/16\"]\ndiscover = false\nmax-nodes = 5\n\
             [poll]\nmax-nodes = 6\n",
        )
        .unwrap();
        assert_eq!(file.cluster.allowed_networks.unwrap(), ["10.1.0.0/16"]);
        assert_eq!(file.cluster.discover, Some(false));
        assert_eq!(
            (file.cluster.max_nodes, file.poll.max_nodes),
            (Some(5), Some(6))
        );
        let e = parse_file("[cluster]\nallowed-networks = \"10.0.0.0/8\"\n").unwrap_err();
        assert_eq!(e.key, "cluster.allowed-networks", "{e}");
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_key_and_not_the_value() {
        let e = parse_file("[web]\nlisten-address = \":1\"\n[poll]\ninterval = 5\n").unwrap_err();
        assert_eq!(e.key, "poll.interval", "{e}");
        assert!(e.to_string().contains("line 4"), "{e}");
        let text =
            "[[targets]]\naddr = \"a:1\"\n\n[[targets]]\naddr = \"b:1\"\npassword = 12345678\n";
        let e = parse_file(text).unwrap_err();
        assert_eq!(e.key, "targets[1].password", "{e}");
        assert!(!e.to_string().contains("12345678"), "{e}");
        assert!(
            e.to_string()
                .contains("invalid type: integer, expected a string"),
            "{e}"
        );
        let e = parse_file("[web]\nlisten-address = [\"s3cret\"]\n").unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let e = parse_file("[poll]\nconcurrency = \"hunter2\"\n").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        // Nothing that reads as a key: the file as a whole.
        assert_eq!(parse_file("[poll\n").unwrap_err().key, "config.file");
        // A syntax error inside a multi-line string is not read as a key.
        let e = parse_file("[redis]\npassword = \"\"\"\nTr0ub4dor=\\q\"\"\"\n").unwrap_err();
        assert_eq!(e.key, "config.file", "{e}");
        assert!(!e.to_string().contains("Tr0ub4dor"), "{e}");
        // Headers with comments, counted arrays, a header-like line in a
        // multi-line string, and an inline table.
        let text = "[[targets]] # a\naddr = \"a:1\"\n[[targets]]  # b\naddr = \"b:1\"\n\
                    password = \'\'\'\n[web]\n\'\'\'\nuser = 5\n";
        assert_eq!(parse_file(text).unwrap_err().key, "targets[1].user");
        let e = parse_file("[poll] # the schedule\nconcurrency = \"x\"\n").unwrap_err();
        assert_eq!(e.key, "poll.concurrency");
        let e = parse_file("redis = { password = 5 }\n").unwrap_err();
        assert_eq!(e.key, "config.file", "{e}");
    }

    #[test]
    fn file_keys_are_strict() {
        let e = parse_file("[poll]\nintervall = \"5s\"\n").unwrap_err();
        assert!(e.message.contains("intervall"), "{e}");
        assert!(e.message.contains("line 2"), "{e}");
        let e = parse_file("[[targets]]\naddr = \"h:1\"\npassword = 5\n").unwrap_err();
        assert!(
            e.message.contains("password") || e.message.contains("string"),
            "{e}"
        );
    }

    #[test]
    fn sentinel_settings_and_their_own_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let sp = dir.path().join("sentinel-pw");
        let rp = dir.path().join("redis-pw");
        std::fs::write(&sp, "sentinel-secret\n").unwrap();
        std::fs::write(&rp, "redis-secret\n").unwrap();
        let c = cfg(&[
            "--sentinel.addr",
            "10.0.0.1:26379,10.0.0.2:26379",
            "--sentinel.master",
            "cache",
            "--sentinel.password-file",
            sp.to_str().unwrap(),
            "--sentinel.user",
            "watcher",
            "--redis.password-file",
            rp.to_str().unwrap(),
        ])
        .unwrap();
        assert!(
            c.targets.is_empty(),
            "no default localhost target with Sentinels"
        );
        let s = c.sentinel.unwrap();
        assert_eq!(s.sentinels.len(), 2);
        assert_eq!(s.masters, ["cache"]);
        assert_eq!(s.refresh, DEFAULT_SENTINEL_REFRESH);
        assert_eq!(s.ckquorum, DEFAULT_SENTINEL_CKQUORUM);
        // Each side has its own credentials, and only its own.
        for t in &s.sentinels {
            assert_eq!(t.password.as_ref().unwrap().expose(), "sentinel-secret");
            assert_eq!(t.user.as_deref(), Some("watcher"));
        }
        assert_eq!(
            s.data_template.password.as_ref().unwrap().expose(),
            "redis-secret"
        );
        assert_eq!(s.data_template.user, None);
        assert!(s.data_template.tls.is_none());
        assert!(cfg(&[]).unwrap().sentinel.is_none());

        let file = parse_file(
            "[sentinel]\naddr = [\"h:26379\"]\nmasters = [\"a\", \"b\"]\nrefresh-interval = \"5s\"\n\
             ckquorum-interval = \"1m\"\nallowed-networks = [\"10.0.0.0/8\"]\ndata-tls = false\n",
        )
        .unwrap();
        assert_eq!(file.sentinel.masters.unwrap(), ["a", "b"]);
    }

    #[test]
    fn bad_sentinel_values_name_their_key() {
        let key = |args: &[&str]| cfg(args).unwrap_err().key;
        assert_eq!(
            key(&["--sentinel.addr", "h:1", "--sentinel.addr", "ftp://x"]),
            "sentinel.addr[1]"
        );
        assert_eq!(
            key(&["--sentinel.addr", "unix:///tmp/s.sock"]),
            "sentinel.addr[0]"
        );
        assert_eq!(key(&["--sentinel.addr", "h:1,h:1"]), "sentinel.addr[1]");
        assert_eq!(
            key(&["--sentinel.addr", "h:1", "--sentinel.master", "a b"]),
            "sentinel.masters[0]"
        );
        assert_eq!(
            key(&[
                "--sentinel.addr",
                "h:1",
                "--sentinel.ckquorum-interval",
                "100ms"
            ]),
            "sentinel.ckquorum-interval"
        );
        assert_eq!(
            key(&[
                "--sentinel.addr",
                "h:1",
                "--sentinel.refresh-interval",
                "1ms"
            ]),
            "sentinel.refresh-interval"
        );
        assert_eq!(
            key(&[
                "--sentinel.addr",
                "h:1",
                "--sentinel.allowed-networks",
                "10.0.0.0/33"
            ]),
            "sentinel.allowed-networks[0]"
        );
        assert_eq!(
            key(&[
                "--sentinel.addr",
                "h:1",
                "--sentinel.password-file",
                "/nonexistent/x"
            ]),
            "sentinel.password-file"
        );
        let e = parse_file("[sentinel]\nadr = [\"h:1\"]\n").unwrap_err();
        assert!(e.message.contains("adr"), "{e}");
        // cluster.allowed-networks applies when sentinel.allowed-networks is unset.
        let c = cfg(&[
            "--sentinel.addr",
            "h:1",
            "--cluster.allowed-networks",
            "10.9.0.0/16",
        ])
        .unwrap();
        assert_eq!(c.sentinel.unwrap().allowed_networks.unwrap().len(), 1);
    }
}
