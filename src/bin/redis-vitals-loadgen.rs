//! redis-vitals-loadgen: a cache-aside workload for a Redis Cluster or a
//! standalone node, to give the exporter, its alerts and its dashboards
//! something realistic to look at.
//!
//! Every operation picks a key from a skewed (Zipf-like) distribution, the
//! way real caches see a few hot keys and a long cold tail, then:
//! - reads it with GET and, on a miss, fills it with SET .. EX <ttl> (the
//!   cache-aside pattern, so the hit ratio Redis reports is earned, not set);
//! - or, for a fraction of operations, overwrites it (an update upstream);
//! - or, for another fraction, deletes it (an invalidation).
//!
//! Errors are counted by kind and reported; they never stop the run. Only a
//! problem at startup (bad flags, no server reachable) ends it, with exit
//! status 2.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, IntoConnectionInfo, RedisError, RedisResult, Value};
use tokio::sync::watch;
use tokio::time::Instant;

/// Largest key space we accept: the Zipf sampler keeps one f64 per key.
const MAX_KEYS: u64 = 20_000_000;
/// Largest value we accept: beyond this the tool measures the network, not
/// the cache.
const MAX_VALUE_SIZE: usize = 16 << 20;
/// How far the rate limiter may fall behind before it forgets the debt: after
/// a stall (a failover, a slow node) the generator resumes at the configured
/// rate instead of bursting to catch up, as a real request stream would.
const MAX_RATE_DEBT: Duration = Duration::from_millis(100);

#[derive(Debug, Parser)]
#[command(
    name = "redis-vitals-loadgen",
    version,
    about = "Cache-aside load generator for Redis (standalone or Cluster)",
    after_help = "The password, if any, is read from the REDIS_PASSWORD environment \
                  variable (never a flag: command lines are visible to every local user)."
)]
struct Args {
    /// Server URL, redis://host:port. Repeat to give several cluster seeds.
    #[arg(long = "addr", default_value = "redis://127.0.0.1:6379")]
    addr: Vec<String>,
    /// ACL user name (REDIS_USER also works).
    #[arg(long, env = "REDIS_USER")]
    user: Option<String>,
    /// Treat the seeds as a Redis Cluster (default: ask the first seed).
    #[arg(long, conflicts_with = "standalone")]
    cluster: bool,
    /// Treat the address as a standalone node (default: ask it).
    #[arg(long)]
    standalone: bool,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Skew of key popularity: the key of rank r is drawn with weight
    /// 1/r^zipf. 0 is uniform; around 1 is typical of web caches.
    #[arg(long, default_value_t = 0.99)]
    zipf: f64,
    /// TTL of the cache entries written (EX).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// Random spread of the TTL, as a fraction (0.2 = +/-20%), so that
    /// entries written together do not all expire together.
    #[arg(long, default_value_t = 0.2)]
    ttl_jitter: f64,
    /// Size of the values written, in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Fraction of operations that overwrite the key (SET .. EX) instead of
    /// reading it.
    #[arg(long, default_value_t = 0.05)]
    write_ratio: f64,
    /// Fraction of operations that delete the key (DEL).
    #[arg(long, default_value_t = 0.01)]
    del_ratio: f64,
    /// Target operations per second, all workers together; 0 means as fast
    /// as the server answers.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Operations in flight at once (worker tasks).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How long to run (e.g. 30s, 10m); runs until Ctrl-C when not given.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// How often to print a summary line.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    report_interval: Duration,
    /// Per-command deadline; a slower reply counts as a timeout error.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Prefix of every key written, to keep the workload apart from real data.
    #[arg(long, default_value = "loadgen:")]
    key_prefix: String,
}

impl Args {
    fn validate(&self) -> Result<(), String> {
        if self.keys == 0 || self.keys > MAX_KEYS {
            return Err(format!("--keys must be between 1 and {MAX_KEYS}"));
        }
        if !(self.zipf >= 0.0 && self.zipf.is_finite()) {
            return Err("--zipf must be a number >= 0".into());
        }
        if self.ttl < Duration::from_secs(1) {
            return Err("--ttl must be at least 1s (EX counts whole seconds)".into());
        }
        if !(0.0..1.0).contains(&self.ttl_jitter) {
            return Err("--ttl-jitter must be in [0, 1)".into());
        }
        if self.value_size == 0 || self.value_size > MAX_VALUE_SIZE {
            return Err(format!(
                "--value-size must be between 1 and {MAX_VALUE_SIZE}"
            ));
        }
        for (name, v) in [
            ("--write-ratio", self.write_ratio),
            ("--del-ratio", self.del_ratio),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be in [0, 1]"));
            }
        }
        if self.write_ratio + self.del_ratio > 1.0 {
            return Err("--write-ratio + --del-ratio must not exceed 1".into());
        }
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            return Err("--rate must be a number >= 0".into());
        }
        if self.concurrency == 0 || self.concurrency > 10_000 {
            return Err("--concurrency must be between 1 and 10000".into());
        }
        if self.report_interval < Duration::from_millis(100) {
            return Err("--report-interval must be at least 100ms".into());
        }
        if self.timeout.is_zero() {
            return Err("--timeout must be greater than 0".into());
        }
        if self.duration == Some(Duration::ZERO) {
            return Err("--duration must be greater than 0 (omit it to run until Ctrl-C)".into());
        }
        Ok(())
    }
}

/// Draws key ranks with probability proportional to 1/(rank+1)^s by
/// inverting a precomputed CDF. Simple and exact; costs 8 bytes per key,
/// which is why --keys is capped.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: u64, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n as usize);
        let mut sum = 0.0;
        for rank in 1..=n {
            sum += (rank as f64).powf(-s);
            cdf.push(sum);
        }
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut fastrand::Rng) -> u64 {
        let total = *self.cdf.last().expect("at least one key");
        let u = rng.f64() * total;
        // First rank whose cumulative weight reaches u; min() guards against
        // rounding at the very top.
        let i = self.cdf.partition_point(|&c| c < u);
        i.min(self.cdf.len() - 1) as u64
    }
}

/// Hands out send times so that all workers together stay at `rate` ops/s.
/// Lock-free: a worker reserves the next slot with one compare-exchange.
struct RateLimiter {
    start: Instant,
    /// Nanoseconds between two operations; 0 = unlimited.
    step_ns: u64,
    /// Next free slot, in nanoseconds since `start`.
    next_ns: AtomicU64,
}

impl RateLimiter {
    fn new(rate: f64) -> RateLimiter {
        RateLimiter {
            start: Instant::now(),
            step_ns: if rate > 0.0 {
                (1e9 / rate).max(1.0) as u64
            } else {
                0
            },
            next_ns: AtomicU64::new(0),
        }
    }

    /// The instant at which the caller may send its next operation.
    fn reserve(&self) -> Instant {
        if self.step_ns == 0 {
            return Instant::now();
        }
        let debt = MAX_RATE_DEBT.as_nanos() as u64;
        loop {
            let now = self.start.elapsed().as_nanos() as u64;
            let cur = self.next_ns.load(Ordering::Relaxed);
            let slot = cur.max(now.saturating_sub(debt));
            if self
                .next_ns
                .compare_exchange_weak(
                    cur,
                    slot + self.step_ns,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return self.start + Duration::from_nanos(slot);
            }
        }
    }
}

/// Counters shared by the workers and the reporter. Relaxed atomics: the
/// numbers are statistics, read a few times per second.
#[derive(Default)]
struct Stats {
    ops: AtomicU64,
    gets: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    sets: AtomicU64,
    dels: AtomicU64,
    errors: AtomicU64,
    /// Errors by kind ("timeout", "io", "MOVED", "OOM", ...), so that a
    /// failover or a full cache is recognisable from the summary alone.
    error_kinds: Mutex<BTreeMap<String, u64>>,
}

#[derive(Clone, Copy, Default)]
struct Snapshot {
    ops: u64,
    gets: u64,
    hits: u64,
    misses: u64,
    sets: u64,
    dels: u64,
    errors: u64,
}

impl Stats {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            ops: self.ops.load(Ordering::Relaxed),
            gets: self.gets.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            sets: self.sets.load(Ordering::Relaxed),
            dels: self.dels.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    fn error(&self, e: &RedisError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let kind = error_kind(e);
        let mut kinds = self.error_kinds.lock().unwrap_or_else(|p| p.into_inner());
        *kinds.entry(kind).or_insert(0) += 1;
    }

    fn error_kinds(&self) -> String {
        let kinds = self.error_kinds.lock().unwrap_or_else(|p| p.into_inner());
        kinds
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A short, stable name for an error: the server's error code when there is
/// one (OOM, MOVED, CLUSTERDOWN, ...), else the client-side failure class.
fn error_kind(e: &RedisError) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connection_refusal() {
        "refused".into()
    } else if e.is_connection_dropped() || e.is_io_error() {
        "io".into()
    } else if let Some(code) = e.code() {
        code.to_string()
    } else {
        format!("{:?}", e.kind()).to_ascii_lowercase()
    }
}

/// One line of the periodic report, for the interval between two snapshots.
fn summary(prefix: &str, a: Snapshot, b: Snapshot, secs: f64, kinds: &str) -> String {
    let ops = b.ops - a.ops;
    let hits = b.hits - a.hits;
    let lookups = hits + (b.misses - a.misses);
    let ratio = if lookups > 0 {
        format!("{:.1}%", 100.0 * hits as f64 / lookups as f64)
    } else {
        "n/a".into()
    };
    let errors = b.errors - a.errors;
    let mut line = format!(
        "{prefix} ops/s={:.0} hit_ratio={ratio} gets={} sets={} dels={} errors={errors}",
        ops as f64 / secs.max(1e-9),
        b.gets - a.gets,
        b.sets - a.sets,
        b.dels - a.dels,
    );
    if b.errors > 0 {
        line.push_str(&format!(" (total {}: {kinds})", b.errors));
    }
    line
}

/// A worker's connection. Cluster connections follow MOVED/ASK and reconnect
/// by themselves; a standalone multiplexed connection does not, so the worker
/// replaces it after a connection-level error.
enum Conn {
    Cluster(ClusterConnection),
    Single(Box<SingleConn>),
}

struct SingleConn {
    client: redis::Client,
    config: AsyncConnectionConfig,
    conn: Option<MultiplexedConnection>,
    /// Earliest time of the next reconnect attempt: a node that is down is
    /// retried once a second per worker, not once per operation.
    retry_at: Instant,
}

impl Conn {
    async fn run(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Conn::Cluster(c) => cmd.query_async(c).await,
            Conn::Single(s) => {
                if s.conn.is_none() {
                    tokio::time::sleep_until(s.retry_at).await;
                    s.retry_at = Instant::now() + Duration::from_secs(1);
                    s.conn = Some(
                        s.client
                            .get_multiplexed_async_connection_with_config(&s.config)
                            .await?,
                    );
                }
                let c = s.conn.as_mut().expect("connected above");
                let result = cmd.query_async(c).await;
                if let Err(e) = &result {
                    if e.is_unrecoverable_error() || e.is_connection_dropped() {
                        s.conn = None;
                    }
                }
                result
            }
        }
    }
}

/// Everything the workers share, read-only.
struct Workload {
    zipf: Zipf,
    value: Vec<u8>,
    prefix: String,
    ttl_secs: f64,
    ttl_jitter: f64,
    write_ratio: f64,
    del_ratio: f64,
}

impl Workload {
    fn ttl(&self, rng: &mut fastrand::Rng) -> u64 {
        let spread = (rng.f64() * 2.0 - 1.0) * self.ttl_jitter;
        (self.ttl_secs * (1.0 + spread)).round().max(1.0) as u64
    }

    fn set(&self, key: &str, rng: &mut fastrand::Rng) -> Cmd {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key)
            .arg(&self.value[..])
            .arg("EX")
            .arg(self.ttl(rng));
        cmd
    }
}

/// One client of the cache: operations back to back, at the pace the rate
/// limiter allows, until told to stop.
async fn worker(
    mut conn: Conn,
    work: Arc<Workload>,
    stats: Arc<Stats>,
    limiter: Arc<RateLimiter>,
    deadline: Option<Instant>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = fastrand::Rng::new();
    let mut key = String::with_capacity(work.prefix.len() + 20);
    loop {
        let at = limiter.reserve();
        if deadline.is_some_and(|d| at >= d) {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }

        key.clear();
        key.push_str(&work.prefix);
        key.push_str(&work.zipf.sample(&mut rng).to_string());
        let dice = rng.f64();
        let result = if dice < work.del_ratio {
            stats.dels.fetch_add(1, Ordering::Relaxed);
            conn.run(redis::cmd("DEL").arg(&key)).await.map(drop)
        } else if dice < work.del_ratio + work.write_ratio {
            stats.sets.fetch_add(1, Ordering::Relaxed);
            conn.run(&work.set(&key, &mut rng)).await.map(drop)
        } else {
            stats.gets.fetch_add(1, Ordering::Relaxed);
            match conn.run(redis::cmd("GET").arg(&key)).await {
                Ok(Value::Nil) => {
                    // Cache-aside: the application would now compute the
                    // value from its source of truth and store it.
                    stats.misses.fetch_add(1, Ordering::Relaxed);
                    stats.sets.fetch_add(1, Ordering::Relaxed);
                    conn.run(&work.set(&key, &mut rng)).await.map(drop)
                }
                Ok(_) => {
                    stats.hits.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        };
        stats.ops.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = result {
            stats.error(&e);
        }
    }
}

/// Asks the first reachable seed whether it runs in cluster mode.
async fn detect_cluster(
    seeds: &[redis::ConnectionInfo],
    config: &AsyncConnectionConfig,
) -> Result<bool, String> {
    let mut last = String::new();
    for info in seeds {
        let client = redis::Client::open(info.clone()).map_err(|e| e.to_string())?;
        let result = async {
            let mut c = client
                .get_multiplexed_async_connection_with_config(config)
                .await?;
            redis::cmd("INFO")
                .arg("cluster")
                .query_async::<String>(&mut c)
                .await
        }
        .await;
        match result {
            Ok(info) => return Ok(info.lines().any(|l| l.trim() == "cluster_enabled:1")),
            Err(e) => last = format!("{}: {e}", info.addr()),
        }
    }
    Err(last)
}

/// Connects, checks the server answers, and builds one connection per
/// worker. Any failure here is a startup error.
async fn connect(args: &Args, password: Option<&str>) -> Result<(Vec<Conn>, bool), String> {
    // Startup checks get a fixed, generous deadline: a slow first handshake
    // is no reason to give up. Commands during the run use --timeout.
    let startup = Duration::from_secs(5);
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(startup))
        .set_response_timeout(Some(args.timeout.max(startup)));
    let mut seeds = Vec::new();
    for a in &args.addr {
        let info = a
            .as_str()
            .into_connection_info()
            .map_err(|e| format!("invalid --addr {a:?}: {e}"))?;
        // CLIENT SETINFO is skipped: servers before 7.2 answer it with an
        // error that would show up in the exporter's error metrics.
        let mut settings = info.redis_settings().clone().set_skip_set_lib_name();
        if let Some(u) = &args.user {
            settings = settings.set_username(u);
        }
        if let Some(p) = password {
            settings = settings.set_password(p);
        }
        seeds.push(info.set_redis_settings(settings));
    }

    let is_cluster = if args.cluster {
        true
    } else if args.standalone {
        false
    } else {
        detect_cluster(&seeds, &config)
            .await
            .map_err(|e| format!("cannot reach any --addr: {e}"))?
    };

    let mut conns = Vec::with_capacity(args.concurrency);
    if is_cluster {
        let client = redis::cluster::ClusterClientBuilder::new(seeds)
            .connection_timeout(startup)
            .response_timeout(args.timeout)
            .build()
            .map_err(|e| format!("invalid cluster settings: {e}"))?;
        let mut conn = client
            .get_async_connection()
            .await
            .map_err(|e| format!("cannot connect to the cluster: {e}"))?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(|e| format!("cluster does not answer PING: {e}"))?;
        // One cluster connection multiplexes every worker over one socket
        // per node, as a typical application's cluster client does.
        for _ in 0..args.concurrency {
            conns.push(Conn::Cluster(conn.clone()));
        }
    } else {
        if seeds.len() > 1 {
            return Err("several --addr given, but the server is not in cluster mode".into());
        }
        let client = redis::Client::open(seeds.remove(0)).map_err(|e| e.to_string())?;
        // Reconnects during the run get the same deadline as a command, so
        // a node that blackholes packets stalls a worker no longer than a
        // slow reply would.
        let worker_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(args.timeout))
            .set_response_timeout(Some(args.timeout));
        // One connection per worker, like an application's connection pool:
        // connected_clients on the server then reflects --concurrency.
        for _ in 0..args.concurrency {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&worker_config)
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", args.addr[0]))?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map_err(|e| format!("{} does not answer PING: {e}", args.addr[0]))?;
            conns.push(Conn::Single(Box::new(SingleConn {
                client: client.clone(),
                config: worker_config.clone(),
                conn: Some(conn),
                retry_at: Instant::now(),
            })));
        }
    }
    Ok((conns, is_cluster))
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = args.validate() {
        eprintln!("redis-vitals-loadgen: {e}");
        return ExitCode::from(2);
    }
    let password = std::env::var("REDIS_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    let (conns, is_cluster) = match connect(&args, password.as_deref()).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("redis-vitals-loadgen: {e}");
            return ExitCode::from(2);
        }
    };

    // Random printable bytes: realistic for serialized payloads, and the
    // allocator's size classes see the real value size.
    let mut rng = fastrand::Rng::new();
    let value: Vec<u8> = (0..args.value_size)
        .map(|_| rng.alphanumeric() as u8)
        .collect();
    let work = Arc::new(Workload {
        zipf: Zipf::new(args.keys, args.zipf),
        value,
        prefix: args.key_prefix.clone(),
        ttl_secs: args.ttl.as_secs_f64(),
        ttl_jitter: args.ttl_jitter,
        write_ratio: args.write_ratio,
        del_ratio: args.del_ratio,
    });
    let stats = Arc::new(Stats::default());
    let limiter = Arc::new(RateLimiter::new(args.rate));
    let start = Instant::now();
    let deadline = args.duration.map(|d| start + d);
    let (stop_tx, stop_rx) = watch::channel(false);

    println!(
        "redis-vitals-loadgen: {} {} keys={} zipf={} ttl={} value_size={} write_ratio={} del_ratio={} rate={} concurrency={} duration={}",
        if is_cluster { "cluster" } else { "standalone" },
        args.addr.join(","),
        args.keys,
        args.zipf,
        humantime::format_duration(args.ttl),
        args.value_size,
        args.write_ratio,
        args.del_ratio,
        if args.rate > 0.0 { format!("{}/s", args.rate) } else { "unlimited".into() },
        args.concurrency,
        args.duration
            .map(|d| humantime::format_duration(d).to_string())
            .unwrap_or_else(|| "until Ctrl-C".into()),
    );

    let mut workers = tokio::task::JoinSet::new();
    for conn in conns {
        workers.spawn(worker(
            conn,
            work.clone(),
            stats.clone(),
            limiter.clone(),
            deadline,
            stop_rx.clone(),
        ));
    }

    // Report periodically until the workers finish (deadline) or a signal
    // arrives; on a signal the workers stop after their current command.
    let mut ticker = tokio::time::interval_at(start + args.report_interval, args.report_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Snapshot::default();
    let mut last_at = start;
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let now = Instant::now();
                let snap = stats.snapshot();
                let prefix = format!("[{:>5.0}s]", (now - start).as_secs_f64());
                println!("{}", summary(&prefix, last, snap, (now - last_at).as_secs_f64(), &stats.error_kinds()));
                last = snap;
                last_at = now;
            }
            _ = &mut shutdown => {
                let _ = stop_tx.send(true);
                break;
            }
            joined = workers.join_next() => {
                if joined.is_none() {
                    break;
                }
            }
        }
    }
    while workers.join_next().await.is_some() {}

    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{}",
        summary(
            &format!("done after {elapsed:.1}s: ops={}", stats.snapshot().ops),
            Snapshot::default(),
            stats.snapshot(),
            elapsed,
            &stats.error_kinds(),
        )
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_prefers_low_ranks_and_stays_in_range() {
        let z = Zipf::new(1000, 1.0);
        let mut rng = fastrand::Rng::with_seed(7);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[z.sample(&mut rng) as usize] += 1;
        }
        // With s = 1 over 1000 keys, rank 0 carries about 13% of the draws
        // and rank 9 about a tenth of that.
        assert!(counts[0] > 10_000 && counts[0] < 16_000, "{}", counts[0]);
        assert!(counts[0] > 5 * counts[9]);
        assert!(counts[999] < counts[0] / 100);
    }

    #[test]
    fn zipf_zero_is_uniform() {
        let z = Zipf::new(10, 0.0);
        let mut rng = fastrand::Rng::with_seed(1);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[z.sample(&mut rng) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
    }

    #[tokio::test]
    async fn rate_limiter_spaces_slots_and_forgets_old_debt() {
        // 1 op/s: consecutive slots are one second apart however slowly
        // this test runs.
        let l = RateLimiter::new(1.0);
        let a = l.reserve();
        let b = l.reserve();
        assert_eq!(b - a, Duration::from_secs(1));
        // A long stall must not turn into a burst of back-dated slots: the
        // next slot is at most MAX_RATE_DEBT in the past.
        l.next_ns.store(0, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = Instant::now();
        let c = l.reserve();
        assert!(c >= before - MAX_RATE_DEBT);
    }

    #[test]
    fn summary_reports_hit_ratio_and_errors() {
        let a = Snapshot::default();
        let b = Snapshot {
            ops: 100,
            gets: 80,
            hits: 60,
            misses: 20,
            sets: 30,
            dels: 5,
            errors: 2,
        };
        let line = summary("x", a, b, 2.0, "timeout=2");
        assert!(line.contains("ops/s=50"), "{line}");
        assert!(line.contains("hit_ratio=75.0%"), "{line}");
        assert!(line.contains("(total 2: timeout=2)"), "{line}");
    }

    #[test]
    fn flags_are_validated() {
        let ok = Args::parse_from(["x"]);
        assert!(ok.validate().is_ok());
        let bad = Args::parse_from(["x", "--write-ratio", "0.7", "--del-ratio", "0.5"]);
        assert!(bad.validate().is_err());
        let bad = Args::parse_from(["x", "--keys", "0"]);
        assert!(bad.validate().is_err());
    }
}
