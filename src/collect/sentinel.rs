//! Redis Sentinel (issue 19): discovery of each monitored group's master and
//! replicas through the Sentinels, and the Sentinels' own health.
//!
//! One task, the hub, polls every watched Sentinel (the configured ones and
//! the ones they list, when trusted) with `INFO sentinel`, `SENTINEL
//! MASTERS`, and per watched master `SENTINEL REPLICAS`, `SENTINEL
//! SENTINELS` and, at the bounded `sentinel.ckquorum-interval`, `SENTINEL
//! CKQUORUM`. From the answers it:
//!
//! * starts polling every master and replica of each watched group as any
//!   node (through `collect::topology::Fleet`), labelled `cluster=<master
//!   name>`, with the `[redis]` credentials (the Sentinels' own are never
//!   sent to a data node, nor the data nodes' to a Sentinel), and stops
//!   polling the ones no answering Sentinel lists any more;
//! * builds the `redis_sentinel_*` snapshot (`expose::sentinel`).
//!
//! When: every `sentinel.refresh-interval`, and at once on an event. Each
//! Sentinel has a subscriber connection of its own on the event channels
//! (`+switch-master`, `+sdown`, `+odown`, `+failover-end`, ...,
//! [`EVENT_CHANNELS`]); an event wakes the hub, which re-polls the
//! Sentinels. A subscriber reconnects with backoff; losing it wakes the hub
//! too (the Sentinel may be gone), and the periodic refresh covers events
//! missed while it was away.
//!
//! The subscriber uses the project's own connection (`redis::conn`), not
//! the redis crate's pub/sub: the same TLS and AUTH code as every other
//! connection (CA file, client certificate, server-name override,
//! redaction of the password in errors), and a bound on each message's size
//! that the crate does not offer.
//!
//! Trust: addresses in Sentinel replies go through
//! [`crate::collect::discovery::Trust`] like cluster discovery's:
//! `sentinel.allowed-networks`, else `cluster.allowed-networks`, else the
//! networks of the configured Sentinels (their IP literal, or the address
//! their connection reached). Refusals are counted in
//! `redis_vitals_discovery_refused_total` under the master name.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::collect::discovery::{Refusal, RefusedAddr, Trust};
use crate::collect::topology::Fleet;
use crate::config::SentinelSettings;
use crate::error::PollError;
use crate::expose::sentinel::{GroupView, SentinelMasterView, SentinelSnapshot, SentinelView};
pub use crate::parse::sentinel::EVENT_CHANNELS;
use crate::parse::sentinel::{self as parse, Event, InstanceEntry, MasterEntry, SentinelInfo};
use crate::redis::conn::Conn;
use crate::redis::resp::Reply;
use crate::redis::target::{format_host_port, Endpoint, Target};

/// Most Sentinels watched (configured and discovered): a real deployment
/// runs 3 or 5; this bounds what a hostile SENTINELS reply can make us
/// connect to.
pub const MAX_SENTINELS: usize = 32;
/// Most master names watched when none is configured.
pub const MAX_GROUPS: usize = 256;
/// Largest event message accepted (a real one is under 200 bytes).
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Pause after an event before re-polling, so that the burst a failover
/// sends (`+odown`, `+switch-master`, `+slave`...) costs one round, not ten.
pub const EVENT_DEBOUNCE: Duration = Duration::from_millis(100);
/// Subscriber reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What one poll of one Sentinel brought back.
#[derive(Debug, Clone, Default)]
pub struct Polled {
    pub info: SentinelInfo,
    /// Watched masters: the entry, its replicas and its other Sentinels.
    pub masters: Vec<(MasterEntry, Vec<InstanceEntry>, Vec<InstanceEntry>)>,
}

/// One watched Sentinel.
struct Watched {
    target: Target,
    configured: bool,
    conn: Option<Conn>,
    /// The address its connection reached (trust for a host-name seed).
    peer_ip: Option<IpAddr>,
    last: Option<Polled>,
    /// Last CKQUORUM per master name: when, and the answer.
    ckquorum: HashMap<String, (Instant, Option<bool>)>,
    subscriber: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl Watched {
    fn new(target: Target, configured: bool) -> Watched {
        Watched {
            target,
            configured,
            conn: None,
            peer_ip: None,
            last: None,
            ckquorum: HashMap::new(),
            subscriber: None,
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some((stop, task)) = self.subscriber.take() {
            let _ = stop.send(true);
            task.abort();
        }
    }
}

/// Polls one Sentinel: INFO, MASTERS, then per watched master REPLICAS,
/// SENTINELS and (when due) CKQUORUM.
async fn poll_sentinel(
    conn: &mut Conn,
    filter: &[String],
    ckquorum_due: &(dyn Fn(&str) -> bool + Sync),
) -> Result<(Polled, Vec<(String, Option<bool>)>), PollError> {
    conn.begin_poll();
    let info = parse::info(&conn.query_text(&[b"INFO", b"sentinel"]).await?);
    let reply = conn.query(&[b"SENTINEL", b"MASTERS"]).await?;
    if let Reply::Error(e) = &reply {
        return Err(PollError::from_error_reply(e));
    }
    let masters = parse::masters(&reply).ok_or_else(|| {
        PollError::new(
            crate::error::Reason::Protocol,
            "SENTINEL MASTERS: not a list of masters (is this a Sentinel?)",
        )
    })?;
    let mut out = Polled {
        info,
        masters: Vec::new(),
    };
    let mut ck = Vec::new();
    for m in masters {
        if !filter.is_empty() && !filter.contains(&m.name) {
            continue;
        }
        if filter.is_empty() && out.masters.len() >= MAX_GROUPS {
            break;
        }
        let name = m.name.as_bytes();
        let mut r = conn.query(&[b"SENTINEL", b"REPLICAS", name]).await?;
        if matches!(r, Reply::Error(_)) {
            // Before 5.0 the command was SLAVES.
            r = conn.query(&[b"SENTINEL", b"SLAVES", name]).await?;
        }
        let replicas = parse::instances(&r).unwrap_or_default();
        let s = conn.query(&[b"SENTINEL", b"SENTINELS", name]).await?;
        let sentinels = parse::instances(&s).unwrap_or_default();
        if ckquorum_due(&m.name) {
            let q = conn.query(&[b"SENTINEL", b"CKQUORUM", name]).await?;
            ck.push((m.name.clone(), parse::ckquorum(&q)));
        }
        out.masters.push((m, replicas, sentinels));
    }
    conn.end_poll();
    Ok((out, ck))
}

/// A subscriber: forwards every event of one Sentinel to the hub until
/// `stop`; reconnects with backoff. Losing the connection is reported as
/// [`Event::All`] (the Sentinel may be down: re-poll).
async fn subscribe(
    target: Target,
    events: mpsc::Sender<Event>,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let session = async {
            let mut conn = tokio::time::timeout(timeout, Conn::open(&target))
                .await
                .map_err(|_| {
                    PollError::new(crate::error::Reason::Timeout, "connect timed out")
                })??;
            let mut args: Vec<&[u8]> = vec![b"SUBSCRIBE"];
            args.extend(EVENT_CHANNELS.iter().map(|c| c.as_bytes()));
            conn.send(&args).await?;
            let mut confirmed = false;
            loop {
                let reply = conn.read_one(MAX_EVENT_BYTES).await?;
                if let Reply::Error(e) = &reply {
                    return Err(PollError::from_error_reply(e));
                }
                if !confirmed {
                    confirmed = true;
                    tracing::debug!(sentinel = %target.addr, "subscribed to Sentinel events");
                }
                if let Some(ev) = parse::push_event(&reply) {
                    tracing::debug!(sentinel = %target.addr, event = ?ev, "Sentinel event");
                    if events.send(ev).await.is_err() {
                        return Ok(());
                    }
                }
            }
        };
        let started = Instant::now();
        tokio::select! {
            r = session => {
                if let Err(e) = r {
                    tracing::debug!(sentinel = %target.addr, error = %e, "Sentinel event subscription lost");
                }
            }
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let _ = events.try_send(Event::All);
        if started.elapsed() > BACKOFF_MAX {
            backoff = BACKOFF_MIN;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// The state the hub keeps between rounds.
struct Hub {
    fleet: Arc<dyn Fleet>,
    settings: SentinelSettings,
    timeout: Duration,
    sentinels: BTreeMap<String, Watched>,
    /// Data nodes this module added: address -> master name.
    owned: HashMap<String, String>,
    /// Per master name: the address chosen last round.
    master_addr: HashMap<String, String>,
    /// Per master name: when its address last changed (Unix seconds).
    last_failover: HashMap<String, f64>,
    events: mpsc::Sender<Event>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The master address a group has according to the Sentinels that answered:
/// the one reported with the highest config epoch, then by the most
/// Sentinels, then the smallest address (stable). Pure.
pub fn choose_master(seen: &[(String, u64)]) -> Option<String> {
    let mut votes: BTreeMap<&str, (u64, usize)> = BTreeMap::new();
    for (addr, epoch) in seen {
        let v = votes.entry(addr.as_str()).or_insert((0, 0));
        v.0 = v.0.max(*epoch);
        v.1 += 1;
    }
    votes
        .into_iter()
        .max_by(|a, b| {
            (a.1 .0, a.1 .1, std::cmp::Reverse(a.0)).cmp(&(b.1 .0, b.1 .1, std::cmp::Reverse(b.0)))
        })
        .map(|(a, _)| a.to_string())
}

impl Hub {
    fn trust(&self) -> Trust {
        if let Some(n) = &self.settings.allowed_networks {
            return Trust::explicit(n);
        }
        let seeds = self
            .sentinels
            .values()
            .filter(|w| w.configured)
            .filter_map(|w| match &w.target.endpoint {
                Endpoint::Tcp { host, .. } => host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .ok()
                    .or(w.peer_ip),
                Endpoint::Unix { .. } => None,
            });
        Trust::from_seeds(seeds.collect::<Vec<_>>())
    }

    /// Whether a Sentinel configured by host name is the one at `ip:port`
    /// (the address its connection reached): listed by its peers under
    /// its IP, it must not be watched twice.
    fn is_watched_by_ip(&self, ip: &str, port: u16) -> bool {
        let Ok(ip) = ip.parse::<IpAddr>() else {
            return false;
        };
        self.sentinels.values().any(|w| {
            w.peer_ip.map(|p| p.to_canonical()) == Some(ip.to_canonical())
                && matches!(&w.target.endpoint, Endpoint::Tcp { port: p, .. } if *p == port)
        })
    }

    fn start_subscriber(&self, w: &mut Watched) {
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(subscribe(
            w.target.clone(),
            self.events.clone(),
            self.timeout,
            rx,
        ));
        w.subscriber = Some((tx, task));
    }

    /// Polls every watched Sentinel at once, each within the poll timeout.
    async fn poll_all(&mut self) {
        let mut tasks = Vec::new();
        let now = Instant::now();
        for (addr, w) in self.sentinels.iter_mut() {
            let target = w.target.clone();
            let conn = w.conn.take();
            let filter = self.settings.masters.clone();
            let ck = self.settings.ckquorum;
            let last_ck: HashMap<String, Instant> =
                w.ckquorum.iter().map(|(k, v)| (k.clone(), v.0)).collect();
            let timeout = self.timeout;
            tasks.push((
                addr.clone(),
                tokio::spawn(async move {
                    let due = move |name: &str| {
                        last_ck
                            .get(name)
                            .is_none_or(|at| now.duration_since(*at) >= ck)
                    };
                    let work = async {
                        let mut conn = match conn {
                            Some(c) => c,
                            None => Conn::open(&target).await?,
                        };
                        let r = poll_sentinel(&mut conn, &filter, &due).await?;
                        Ok::<_, PollError>((conn, r))
                    };
                    match tokio::time::timeout(timeout, work).await {
                        Ok(r) => r,
                        Err(_) => Err(PollError::new(
                            crate::error::Reason::Timeout,
                            "no answer within poll.timeout",
                        )),
                    }
                }),
            ));
        }
        for (addr, task) in tasks {
            let result = task.await.unwrap_or_else(|e| {
                Err(PollError::new(
                    crate::error::Reason::Io,
                    format!("task failed: {e}"),
                ))
            });
            let Some(w) = self.sentinels.get_mut(&addr) else {
                continue;
            };
            match result {
                Ok((conn, (polled, ck))) => {
                    if w.last.is_none() {
                        tracing::info!(sentinel = %addr, masters = polled.masters.len(), "Sentinel answers");
                    }
                    w.peer_ip = conn.peer_ip.or(w.peer_ip);
                    w.conn = Some(conn);
                    w.last = Some(polled);
                    for (name, ok) in ck {
                        w.ckquorum.insert(name, (now, ok));
                    }
                }
                Err(e) => {
                    if w.last.is_some() {
                        tracing::warn!(sentinel = %addr, error = %e, "Sentinel does not answer");
                    }
                    w.conn = None;
                    w.last = None;
                }
            }
        }
    }

    /// One round: poll, follow the Sentinels and the data nodes, publish.
    /// Returns whether it started watching a Sentinel (which the caller
    /// polls at once rather than at the next refresh).
    async fn round(&mut self) -> bool {
        let mut found = false;
        self.poll_all().await;
        let trust = self.trust();
        let mut refused: Vec<RefusedAddr> = Vec::new();
        let any_up = self.sentinels.values().any(|w| w.last.is_some());

        // Master names watched.
        let mut names: BTreeSet<String> = self.settings.masters.iter().cloned().collect();
        if names.is_empty() {
            for w in self.sentinels.values() {
                for (m, _, _) in w.last.iter().flat_map(|p| &p.masters) {
                    if names.len() < MAX_GROUPS {
                        names.insert(m.name.clone());
                    }
                }
            }
        }

        // Sentinels listed by the answering ones: watch the new ones, drop
        // discovered ones nobody lists any more.
        let mut listed: BTreeMap<String, (String, u16, String)> = BTreeMap::new();
        for w in self.sentinels.values() {
            for (m, _, others) in w.last.iter().flat_map(|p| &p.masters) {
                for s in others {
                    let addr = format_host_port(&s.ip, s.port);
                    listed
                        .entry(addr)
                        .or_insert((s.ip.clone(), s.port, m.name.clone()));
                }
            }
        }
        let template = self
            .sentinels
            .values()
            .find(|w| w.configured)
            .map(|w| w.target.clone());
        for (addr, (ip, port, group)) in &listed {
            if self.sentinels.contains_key(addr) || self.is_watched_by_ip(ip, *port) {
                continue;
            }
            let refusal = match trust.check(ip) {
                Err(r) => Some(r),
                Ok(()) if self.sentinels.len() >= MAX_SENTINELS => Some(Refusal::Cap),
                Ok(()) => None,
            };
            if let Some(reason) = refusal {
                refused.push(RefusedAddr {
                    addr: addr.clone(),
                    cluster: group.clone(),
                    reason,
                });
                continue;
            }
            let Some(mut t) = template.clone() else {
                continue;
            };
            t.endpoint = Endpoint::Tcp {
                host: ip.clone(),
                port: *port,
            };
            t.addr = addr.clone();
            t.discovered = true;
            if let Some(tls) = &mut t.tls {
                if !tls.name_overridden {
                    tls.server_name = ip.clone();
                }
            }
            tracing::info!(sentinel = %addr, master_name = %group, "watching discovered Sentinel");
            let mut w = Watched::new(t, false);
            self.start_subscriber(&mut w);
            self.sentinels.insert(addr.clone(), w);
            found = true;
        }
        if any_up {
            let gone: Vec<String> = self
                .sentinels
                .iter()
                .filter(|(a, w)| !w.configured && !listed.contains_key(*a))
                .map(|(a, _)| a.clone())
                .collect();
            for a in gone {
                tracing::info!(sentinel = %a, "no Sentinel lists this Sentinel any more; not watching it");
                self.sentinels.remove(&a);
            }
        }

        // Data nodes, group by group.
        let mut desired: HashMap<String, (String, String, u16)> = HashMap::new();
        let mut answered: BTreeSet<String> = BTreeSet::new();
        let mut groups = Vec::new();
        for name in &names {
            let mut seen: Vec<(String, u64)> = Vec::new();
            let mut replicas: BTreeMap<String, (String, u16)> = BTreeMap::new();
            let mut sentinels_up = 0;
            for w in self.sentinels.values() {
                let Some(p) = &w.last else { continue };
                let Some((m, reps, _)) = p.masters.iter().find(|(m, _, _)| &m.name == name) else {
                    continue;
                };
                sentinels_up += 1;
                if !m.ip.is_empty() && m.port != 0 {
                    seen.push((format_host_port(&m.ip, m.port), m.config_epoch));
                }
                for r in reps {
                    replicas.insert(format_host_port(&r.ip, r.port), (r.ip.clone(), r.port));
                }
            }
            if sentinels_up > 0 {
                answered.insert(name.clone());
            }
            let distinct: BTreeSet<&str> = seen.iter().map(|(a, _)| a.as_str()).collect();
            let chosen = choose_master(&seen);
            if let Some(addr) = &chosen {
                if let Some(prev) = self.master_addr.insert(name.clone(), addr.clone()) {
                    if prev != *addr {
                        tracing::info!(master_name = %name, from = %prev, to = %addr, "master changed (failover)");
                        self.last_failover.insert(name.clone(), unix_now());
                    }
                }
                // The master's ip/port from any Sentinel that reported it.
                for w in self.sentinels.values() {
                    if let Some((m, _, _)) =
                        w.last.iter().flat_map(|p| &p.masters).find(|(m, _, _)| {
                            &m.name == name && format_host_port(&m.ip, m.port) == *addr
                        })
                    {
                        desired.insert(addr.clone(), (name.clone(), m.ip.clone(), m.port));
                        break;
                    }
                }
            }
            for (addr, (ip, port)) in replicas {
                desired.entry(addr).or_insert((name.clone(), ip, port));
            }
            groups.push(GroupView {
                name: name.clone(),
                addresses: distinct.len(),
                last_failover: self.last_failover.get(name).copied(),
                sentinels_up,
            });
        }

        let mut added = Vec::new();
        let mut desired: Vec<_> = desired.into_iter().collect();
        desired.sort();
        for (addr, (group, ip, port)) in desired {
            if self.owned.contains_key(&addr) || self.fleet.knows(&addr) {
                continue;
            }
            let refusal = match trust.check(&ip) {
                Err(r) => Some(r),
                Ok(()) if self.fleet.node_count() >= self.fleet.settings().max_nodes => {
                    Some(Refusal::Cap)
                }
                Ok(()) => None,
            };
            if let Some(reason) = refusal {
                refused.push(RefusedAddr {
                    addr,
                    cluster: group,
                    reason,
                });
                continue;
            }
            let mut t = self.settings.data_template.clone();
            t.endpoint = Endpoint::Tcp {
                host: ip.clone(),
                port,
            };
            t.addr = addr.clone();
            t.db = 0;
            t.cluster = group.clone();
            t.discovered = true;
            t.from_sentinel = true;
            if let Some(tls) = &mut t.tls {
                if !tls.name_overridden {
                    tls.server_name = ip.clone();
                }
            }
            if self.fleet.add_node(t) {
                self.owned.insert(addr.clone(), group.clone());
                added.push(addr);
            }
        }
        if !added.is_empty() {
            tracing::info!(count = added.len(), first = ?added.iter().take(5).collect::<Vec<_>>(), "polling nodes found through Sentinel");
        }
        // Stop polling what no answering Sentinel lists: only for groups
        // some Sentinel answered for (all Sentinels down must not empty the
        // fleet), and for groups no longer watched while any Sentinel is up.
        let listed_now: BTreeSet<String> = self
            .sentinels
            .values()
            .flat_map(|w| w.last.iter().flat_map(|p| &p.masters))
            .filter(|(m, _, _)| names.contains(&m.name))
            .flat_map(|(m, reps, _)| {
                std::iter::once(format_host_port(&m.ip, m.port))
                    .chain(reps.iter().map(|r| format_host_port(&r.ip, r.port)))
            })
            .collect();
        let drop: Vec<String> = self
            .owned
            .iter()
            .filter(|(addr, group)| {
                let group_known = answered.contains(*group);
                let group_gone = any_up && !names.contains(*group);
                (group_known && !listed_now.contains(*addr)) || group_gone
            })
            .map(|(a, _)| a.clone())
            .collect();
        for a in drop {
            tracing::info!(addr = %a, "no Sentinel lists this node any more");
            self.owned.remove(&a);
            self.fleet.remove_node(&a);
        }

        // The snapshot.
        let sentinels = self
            .sentinels
            .iter()
            .map(|(addr, w)| SentinelView {
                addr: addr.clone(),
                up: w.last.is_some(),
                masters: w.last.as_ref().map(|p| p.info.masters),
                tilt: w.last.as_ref().map(|p| p.info.tilt),
                running_scripts: w.last.as_ref().map(|p| p.info.running_scripts),
                masters_seen: w
                    .last
                    .iter()
                    .flat_map(|p| &p.masters)
                    .filter(|(m, _, _)| names.contains(&m.name))
                    .map(|(m, reps, _)| SentinelMasterView {
                        name: m.name.clone(),
                        address: format_host_port(&m.ip, m.port),
                        s_down: m.flags.s_down,
                        o_down: m.flags.o_down,
                        failover_in_progress: m.flags.failover_in_progress,
                        slaves: m.num_slaves,
                        ok_slaves: reps
                            .iter()
                            .filter(|r| !r.flags.s_down && !r.flags.disconnected)
                            .count() as u64,
                        sentinels: m.num_other_sentinels + 1,
                        quorum: m.quorum,
                        config_epoch: m.config_epoch,
                        ckquorum: w.ckquorum.get(&m.name).and_then(|c| c.1),
                    })
                    .collect(),
            })
            .collect();
        let group_names: Vec<String> = names.iter().cloned().collect();
        self.fleet.sentinel_refused().record(&group_names, refused);
        self.fleet
            .set_sentinels(SentinelSnapshot { sentinels, groups });
        found
    }

    fn on_event(&mut self, ev: &Event) {
        if let Event::SwitchMaster { name, new_addr } = ev {
            if self.master_addr.get(name) != Some(new_addr) {
                self.last_failover.insert(name.clone(), unix_now());
                tracing::info!(master_name = %name, to = %new_addr, "+switch-master");
                self.master_addr.insert(name.clone(), new_addr.clone());
            }
        }
    }
}

/// Runs Sentinel discovery and health polling until `stop` turns true.
pub async fn run(
    fleet: Arc<dyn Fleet>,
    settings: SentinelSettings,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let (tx, mut rx) = mpsc::channel::<Event>(256);
    let mut hub = Hub {
        fleet,
        timeout,
        sentinels: BTreeMap::new(),
        owned: HashMap::new(),
        master_addr: HashMap::new(),
        last_failover: HashMap::new(),
        events: tx,
        settings,
    };
    for t in hub.settings.sentinels.clone() {
        let mut w = Watched::new(t.clone(), true);
        hub.start_subscriber(&mut w);
        hub.sentinels.insert(t.addr.clone(), w);
    }
    loop {
        // A round that found Sentinels is followed by one that polls them;
        // bounded, as each finds at most MAX_SENTINELS in all.
        for _ in 0..MAX_SENTINELS {
            if !hub.round().await {
                break;
            }
        }
        let refresh = tokio::time::sleep(hub.settings.refresh);
        tokio::select! {
            _ = stop.changed() => break,
            _ = refresh => {}
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                hub.on_event(&ev);
                // Let the rest of the burst arrive, then one round for all.
                tokio::time::sleep(EVENT_DEBOUNCE).await;
                while let Ok(ev) = rx.try_recv() {
                    hub.on_event(&ev);
                }
            }
        }
        if *stop.borrow() {
            break;
        }
    }
    hub.sentinels.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_epoch_wins_then_the_majority() {
        let s = |a: &str, e: u64| (a.to_string(), e);
        assert_eq!(choose_master(&[]), None);
        assert_eq!(
            choose_master(&[s("a:1", 1), s("a:1", 1), s("b:1", 2)]).as_deref(),
            Some("b:1"),
            "a Sentinel that saw the failover (higher epoch) wins over stale ones"
        );
        assert_eq!(
            choose_master(&[s("a:1", 2), s("b:1", 2), s("b:1", 2)]).as_deref(),
            Some("b:1")
        );
        assert_eq!(
            choose_master(&[s("b:1", 2), s("a:1", 2)]).as_deref(),
            Some("a:1"),
            "a tie picks the smallest address, so the choice is stable"
        );
    }
}
