//! Derived signals: the numbers that say whether a cache is healthy, computed
//! from the poll history instead of left to hand-written PromQL.
//!
//! Everything here is pure: times are seconds on the exporter's monotonic
//! clock (`f64`), so wall-clock steps cannot bend a window, and tests drive
//! the logic with synthetic timelines.

pub mod keyspace;

use std::collections::VecDeque;

use crate::parse::info::Info;

/// Most samples kept per history. With the shortest interval (50 ms) and the
/// default 1 m window this still covers the window; it bounds memory per
/// node whatever the settings.
pub const MAX_SAMPLES: usize = 2048;

/// One poll's counters for the hit ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
struct HitSample {
    at: f64,
    hits: u64,
    misses: u64,
    /// The counters restarted between the previous sample and this one.
    reset: bool,
}

/// One poll's replication offset of a master.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OffsetSample {
    pub at: f64,
    pub offset: u64,
}

/// What is kept across polls of one node.
#[derive(Debug, Default, Clone)]
pub struct History {
    hits: VecDeque<HitSample>,
    offsets: VecDeque<OffsetSample>,
    /// Identity of the counters' epoch, to tell a restart or RESETSTAT.
    run_id: String,
    uptime: u64,
    commands: u64,
    /// Replication ID the offsets belong to; a new one starts a new history.
    replid: String,
}

/// The counters of one INFO reply that the history needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub run_id: String,
    pub uptime: u64,
    pub commands: u64,
    pub hits: u64,
    pub misses: u64,
    pub role_master: bool,
    /// Replicas attached: without any, no lag is computed and the offset
    /// history would be kept for nothing (most nodes of a big fleet).
    pub connected_slaves: u64,
    pub replid: String,
    pub master_repl_offset: Option<u64>,
}

impl Counters {
    pub fn from_info(info: &Info) -> Counters {
        Counters {
            run_id: info.get("run_id").unwrap_or("").to_string(),
            uptime: info.u64("uptime_in_seconds").unwrap_or(0),
            commands: info.u64("total_commands_processed").unwrap_or(0),
            hits: info.u64("keyspace_hits").unwrap_or(0),
            misses: info.u64("keyspace_misses").unwrap_or(0),
            role_master: info.get("role") == Some("master"),
            connected_slaves: info.u64("connected_slaves").unwrap_or(0),
            replid: info.get("master_replid").unwrap_or("").to_string(),
            master_repl_offset: info.u64("master_repl_offset"),
        }
    }
}

impl History {
    /// Adds one poll. `keep` is how far back samples are needed (the longest
    /// window any signal uses). Samples older than the newest are ignored.
    pub fn record(&mut self, at: f64, c: &Counters, hit_window: f64, offset_window: f64) {
        if let Some(last) = self.hits.back() {
            if at < last.at {
                return;
            }
        }
        let first = self.hits.is_empty();
        let run_changed = !first && c.run_id != self.run_id;
        let reset = !first
            && (run_changed
                || c.uptime < self.uptime
                || c.commands < self.commands
                || self
                    .hits
                    .back()
                    .is_some_and(|p| c.hits < p.hits || c.misses < p.misses));
        self.run_id.clone_from(&c.run_id);
        self.uptime = c.uptime;
        self.commands = c.commands;
        self.hits.push_back(HitSample {
            at,
            hits: c.hits,
            misses: c.misses,
            reset,
        });
        prune(&mut self.hits, at - hit_window, |s| s.at);

        match (
            c.role_master && c.connected_slaves > 0,
            c.master_repl_offset,
        ) {
            (true, Some(offset)) => {
                if c.replid != self.replid
                    || run_changed
                    || self.offsets.back().is_some_and(|p| offset < p.offset)
                {
                    // A new replication history: offsets from before do not
                    // compare with the new ones.
                    self.offsets.clear();
                    self.replid.clone_from(&c.replid);
                }
                self.offsets.push_back(OffsetSample { at, offset });
                prune(&mut self.offsets, at - offset_window, |s| s.at);
            }
            _ => {
                self.offsets.clear();
                self.replid.clear();
            }
        }
    }

    /// Forgets everything (the node was removed or changed identity).
    pub fn clear(&mut self) {
        *self = History::default();
    }

    /// Keyspace hit ratio over the last `window` seconds (see [`hit_ratio`]).
    pub fn hit_ratio(&self, window: f64) -> Option<f64> {
        hit_ratio(&self.hits, window)
    }

    /// The master's offset history, oldest first, with its replication ID.
    pub fn offsets(&self) -> (&str, Vec<OffsetSample>) {
        (&self.replid, self.offsets.iter().copied().collect())
    }
}

/// Drops samples that no window can use any more: everything before the
/// newest sample at or before `horizon` (that one stays as the window's
/// baseline), and anything beyond the cap.
fn prune<T>(q: &mut VecDeque<T>, horizon: f64, at: impl Fn(&T) -> f64) {
    while q.len() >= 2 && at(&q[1]) <= horizon {
        q.pop_front();
    }
    while q.len() > MAX_SAMPLES {
        q.pop_front();
    }
}

/// hits / (hits + misses) between the baseline (the newest sample at least
/// `window` old, else the oldest) and the newest sample. A step across a
/// counter reset counts what the counters hold after it: the lookups since
/// the reset. `None` with fewer than two samples or no lookups.
fn hit_ratio(samples: &VecDeque<HitSample>, window: f64) -> Option<f64> {
    let newest = samples.back()?;
    let horizon = newest.at - window;
    let start = samples.iter().rposition(|s| s.at <= horizon).unwrap_or(0);
    let mut hits = 0u64;
    let mut misses = 0u64;
    for i in start + 1..samples.len() {
        let (a, b) = (samples[i - 1], samples[i]);
        if b.reset {
            hits = hits.saturating_add(b.hits);
            misses = misses.saturating_add(b.misses);
        } else {
            hits = hits.saturating_add(b.hits.saturating_sub(a.hits));
            misses = misses.saturating_add(b.misses.saturating_sub(a.misses));
        }
    }
    let total = hits.checked_add(misses)?;
    if total == 0 {
        return None;
    }
    Some(hits as f64 / total as f64)
}

/// How long a healthy replica takes to apply what its master wrote (the
/// master's next event-loop turn, a network hop, the replica's turn): bytes
/// a master poll showed less than this before the replica was asked may
/// still be on their way.
pub const REPLICATION_DELIVERY_SECS: f64 = 0.1;

/// Replicas acknowledge their offset once a second (replicationCron): the
/// master's view of a replica's offset is up to this much older than the
/// master's own answer, so that reading counts as asked this much earlier.
pub const REPLICA_ACK_SECS: f64 = 1.0;

/// Seconds of the master's writes that a replica at `replica_offset` is
/// missing; the replica was asked at `asked_at` and answered at
/// `observed_at`.
///
/// From the master's offset history (oldest first), find when the master's
/// offset passed `replica_offset` and return how long before `observed_at`
/// that was. Only master samples answered at or before the replica's answer
/// count: a later master poll says nothing about what the replica had.
///
/// * 0 when the replica has everything the master had at its last poll
///   before the observation.
/// * Between two master polls, the moment is interpolated in proportion to
///   the bytes: right for steady writes, and it resolves lag shorter than
///   a poll interval.
/// * When the replica has exactly what one poll showed, the bytes it lacks
///   may be a single write (an idle master's PING) whose moment the byte
///   count cannot place: interpolation would put it at that poll, a whole
///   interval early. The lower bound is reported instead, the time since
///   the next poll, which first showed the write — and 0 when that poll
///   was answered less than [`REPLICATION_DELIVERY_SECS`] before the
///   replica was asked (polls of one round are concurrent), because the
///   write may still be on its way.
/// * When even the oldest sample is past the replica, the result is the
///   age of that sample: a lower bound.
/// * `None` without any master sample at or before the observation.
pub fn lag_seconds(
    history: &[OffsetSample],
    replica_offset: u64,
    asked_at: f64,
    observed_at: f64,
) -> Option<f64> {
    let usable = history.iter().take_while(|s| s.at <= observed_at).count();
    let history = &history[..usable];
    let last = history.last()?;
    if replica_offset >= last.offset {
        return Some(0.0);
    }
    let passed = history.iter().position(|s| s.offset > replica_offset)?;
    let passed_at = if passed == 0 {
        history[0].at
    } else {
        let (a, b) = (history[passed - 1], history[passed]);
        if replica_offset == a.offset {
            if b.at + REPLICATION_DELIVERY_SECS > asked_at {
                return Some(0.0);
            }
            b.at
        } else {
            // a.offset < replica_offset < b.offset, so the span is positive.
            let fraction = (replica_offset - a.offset) as f64 / (b.offset - a.offset) as f64;
            a.at + fraction * (b.at - a.at)
        }
    };
    Some((observed_at - passed_at).max(0.0))
}

/// Bytes a replica lacks: the master's offset minus the replica's
/// acknowledged offset, both from one master INFO; never negative.
pub fn lag_bytes(master_offset: u64, replica_ack_offset: u64) -> u64 {
    master_offset.saturating_sub(replica_ack_offset)
}

/// Connections that count against `maxclients` over `maxclients`.
///
/// Redis refuses a connection when clients + replicas + cluster bus links
/// reach the limit; `connected_clients` excludes replicas, so all three are
/// added. `None` when no limit is known.
pub fn clients_saturation(info: &Info, maxclients: Option<u64>) -> Option<f64> {
    let limit = maxclients.filter(|m| *m > 0)?;
    // In f64: a hostile server's counts must not overflow a sum.
    let used = info.u64("connected_clients")? as f64
        + info.u64("connected_slaves").unwrap_or(0) as f64
        + info.u64("cluster_connections").unwrap_or(0) as f64;
    Some(used / limit as f64)
}

/// used_memory / maxmemory; `None` when maxmemory is 0 (unlimited).
pub fn memory_used_ratio(info: &Info) -> Option<f64> {
    let max = info.u64("maxmemory").filter(|m| *m > 0)?;
    let used = info.u64("used_memory")?;
    Some(used as f64 / max as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(run_id: &str, uptime: u64, commands: u64, hits: u64, misses: u64) -> Counters {
        Counters {
            run_id: run_id.into(),
            uptime,
            commands,
            hits,
            misses,
            ..Default::default()
        }
    }

    #[test]
    fn hit_ratio_over_window() {
        let mut h = History::default();
        h.record(0.0, &counters("a", 100, 1000, 500, 500), 60.0, 600.0);
        assert_eq!(h.hit_ratio(60.0), None, "one sample is no window");
        h.record(5.0, &counters("a", 105, 1100, 590, 510), 60.0, 600.0);
        assert_eq!(h.hit_ratio(60.0), Some(0.9));
        // Idle: no lookups in the window -> absent, not 0 or NaN.
        for i in 2..20 {
            h.record(
                i as f64 * 5.0,
                &counters("a", 105 + i * 5, 1100 + i * 10, 590, 510),
                60.0,
                600.0,
            );
        }
        assert_eq!(h.hit_ratio(60.0), None);
        // History is pruned to the window plus a baseline.
        assert!(h.hits.len() <= 14, "{}", h.hits.len());
    }

    #[test]
    fn window_uses_only_recent_lookups() {
        let mut h = History::default();
        h.record(0.0, &counters("a", 1, 1, 0, 0), 10.0, 600.0);
        h.record(5.0, &counters("a", 6, 2, 0, 100), 10.0, 600.0); // all misses, early
        h.record(20.0, &counters("a", 21, 3, 30, 100), 10.0, 600.0);
        h.record(25.0, &counters("a", 26, 4, 60, 100), 10.0, 600.0);
        // Baseline is the sample at 5.0 (newest <= 25-10): 60 hits, 0 misses.
        assert_eq!(h.hit_ratio(10.0), Some(1.0));
    }

    #[test]
    fn resets_never_give_garbage() {
        // CONFIG RESETSTAT: same run_id and uptime, counters drop.
        let mut h = History::default();
        h.record(0.0, &counters("a", 100, 5000, 1000, 1000), 60.0, 600.0);
        h.record(5.0, &counters("a", 105, 10, 3, 1), 60.0, 600.0);
        assert_eq!(h.hit_ratio(60.0), Some(0.75));
        // Restart: new run_id, hits above the old value but a new epoch.
        let mut h = History::default();
        h.record(0.0, &counters("a", 100, 5000, 10, 10), 60.0, 600.0);
        h.record(5.0, &counters("b", 2, 20, 40, 0), 60.0, 600.0);
        assert_eq!(h.hit_ratio(60.0), Some(1.0));
        // Restart detected by uptime alone (run_id unknown on some engines).
        let mut h = History::default();
        h.record(0.0, &counters("", 100, 5000, 90, 10), 60.0, 600.0);
        h.record(5.0, &counters("", 3, 6000, 95, 15), 60.0, 600.0);
        assert_eq!(h.hit_ratio(60.0), Some(95.0 / 110.0));
        // Every ratio in a long random-ish timeline stays within [0, 1].
        let mut h = History::default();
        let mut x: u64 = 0x2545F4914F6CDD1D;
        let (mut hits, mut misses, mut cmds) = (0u64, 0u64, 0u64);
        for i in 0..500 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 17 == 0 {
                hits = x % 7;
                misses = x % 5;
                cmds = 1;
            } else {
                hits += x % 100;
                misses += x % 13;
                cmds += 50;
            }
            h.record(i as f64, &counters("a", i, cmds, hits, misses), 30.0, 600.0);
            if let Some(r) = h.hit_ratio(30.0) {
                assert!((0.0..=1.0).contains(&r), "{r}");
            }
        }
    }

    #[test]
    fn time_going_backwards_is_ignored() {
        let mut h = History::default();
        h.record(10.0, &counters("a", 10, 10, 10, 0), 60.0, 600.0);
        h.record(5.0, &counters("a", 11, 11, 0, 1000), 60.0, 600.0);
        h.record(15.0, &counters("a", 15, 15, 20, 0), 60.0, 600.0);
        assert_eq!(h.hit_ratio(60.0), Some(1.0));
    }

    fn s(at: f64, offset: u64) -> OffsetSample {
        OffsetSample { at, offset }
    }

    /// [`lag_seconds`] for a replica asked and answered at the same time.
    fn lag_at(h: &[OffsetSample], offset: u64, at: f64) -> Option<f64> {
        lag_seconds(h, offset, at, at)
    }

    #[test]
    fn lag_caught_up_is_zero() {
        let h = [s(0.0, 100), s(5.0, 200), s(10.0, 300)];
        assert_eq!(lag_at(&h, 300, 12.0), Some(0.0));
        // Replica observed after the master's last poll, with newer bytes.
        assert_eq!(lag_at(&h, 350, 12.0), Some(0.0));
        // A master poll after the observation does not count against it
        // (idle master's ping landed between the two polls).
        let h = [s(0.0, 100), s(5.0, 100), s(10.0, 114)];
        assert_eq!(lag_at(&h, 100, 7.0), Some(0.0));
    }

    #[test]
    fn one_write_is_placed_at_the_poll_that_showed_it() {
        // An idle master PINGs just before its poll answers at 10.000 s; the
        // replica, asked at 10.001 s in the same round, has not read the PING
        // yet. Interpolating the one step since 9.0 s would make that a lag
        // of a whole second.
        let h = [s(8.0, 100), s(9.0, 100), s(10.0, 114)];
        assert_eq!(lag_seconds(&h, 100, 10.001, 10.002), Some(0.0));
        // The allowance counts from when the replica was asked, not from its
        // (slow) answer.
        assert_eq!(lag_seconds(&h, 100, 10.05, 10.5), Some(0.0));
        // Asked after the allowance and still without the write: behind by
        // at least the time since the poll that showed it.
        let asked = 10.0 + REPLICATION_DELIVERY_SECS;
        assert_eq!(lag_seconds(&h, 100, asked, 10.5), Some(0.5));
        // A replica stuck after one write: the lower bound grows with time.
        let h = [s(0.0, 100), s(5.0, 100), s(10.0, 114), s(15.0, 114)];
        assert_eq!(lag_at(&h, 100, 17.0), Some(7.0));
        assert_eq!(lag_at(&h, 100, 22.0), Some(12.0));
        // Steady writes still interpolate inside one interval: 300 B behind
        // at 100 B/s, seen by the poll of the same round.
        let h = [s(0.0, 0), s(10.0, 1000)];
        assert_eq!(lag_seconds(&h, 700, 9.999, 10.0), Some(3.0));
    }

    #[test]
    fn lag_interpolates_and_grows_while_stalled() {
        // Master writes 100 B/s; replica stuck at 250 (master passed it at 2.5 s).
        let h: Vec<_> = (0..=6).map(|i| s(i as f64 * 5.0, i * 500)).collect();
        assert_eq!(lag_at(&h, 250, 10.0), Some(7.5));
        assert_eq!(lag_at(&h, 250, 30.0), Some(27.5));
        // Older than all history: a lower bound, the age of the oldest sample.
        let h = [s(100.0, 1000), s(105.0, 2000)];
        assert_eq!(lag_at(&h, 10, 105.0), Some(5.0));
        // Missing polls (a gap) still interpolate across the gap.
        let h = [s(0.0, 0), s(20.0, 2000)];
        assert_eq!(lag_at(&h, 1000, 20.0), Some(10.0));
        assert_eq!(lag_at(&[], 0, 1.0), None);
        assert_eq!(
            lag_at(&[s(5.0, 1)], 0, 1.0),
            None,
            "no sample before observation"
        );
    }

    #[test]
    fn offset_history_restarts_with_a_new_replid() {
        let mut h = History::default();
        let mut c = Counters {
            role_master: true,
            connected_slaves: 1,
            replid: "r1".into(),
            master_repl_offset: Some(100),
            run_id: "a".into(),
            ..Default::default()
        };
        h.record(0.0, &c, 60.0, 600.0);
        c.master_repl_offset = Some(200);
        h.record(5.0, &c, 60.0, 600.0);
        assert_eq!(h.offsets().1.len(), 2);
        c.replid = "r2".into();
        c.master_repl_offset = Some(50);
        h.record(10.0, &c, 60.0, 600.0);
        assert_eq!(h.offsets(), ("r2", vec![s(10.0, 50)]));
        c.role_master = false;
        h.record(15.0, &c, 60.0, 600.0);
        assert!(h.offsets().1.is_empty());
    }

    #[test]
    fn ratios_guard_zero_limits() {
        let info = crate::parse::info::parse_info(
            "connected_clients:8\r\nconnected_slaves:1\r\ncluster_connections:1\r\nused_memory:50\r\nmaxmemory:0\r\n",
        );
        assert_eq!(clients_saturation(&info, Some(20)), Some(0.5));
        assert_eq!(clients_saturation(&info, Some(0)), None);
        assert_eq!(clients_saturation(&info, None), None);
        assert_eq!(memory_used_ratio(&info), None);
        let info = crate::parse::info::parse_info("used_memory:50\r\nmaxmemory:200\r\n");
        assert_eq!(memory_used_ratio(&info), Some(0.25));
        assert_eq!(lag_bytes(10, 20), 0);
        assert_eq!(lag_bytes(30, 20), 10);
    }
}
