//! When each node is polled: nodes share tick times in groups.
//!
//! Each node joins a group of at most `poll.group-size` nodes; a group's
//! members are all polled at the same instants, `origin + phase + k ·
//! interval`. The reason is cost: every timer wake-up of the exporter costs
//! about as much CPU as parsing a whole INFO reply (a wake from idle runs on
//! cold caches; ~80-150 µs on our benchmark machine, see BENCHMARKS.md), so
//! one wake-up per group instead of one per node is most of the exporter's
//! saving on a fleet. A bonus: the nodes of a group are sampled at one
//! moment, so fleet-wide sums add values of the same second.
//!
//! Groups still spread over the interval so that a large fleet does not
//! become one burst: group `g` has phase `interval × r(g)`, where `r` is
//! the base-2 radical inverse (0, 1/2, 1/4, 3/4, 1/8, ...), so any number
//! of groups is evenly spread, and a group freed by removed nodes is the
//! first one refilled. The burst a group causes is bounded by the group
//! size (and in flight by `poll.concurrency`).
//!
//! **Following scrapes** (`poll.follow-scrapes`, off by default): group 0
//! polls right after a `/metrics` or `/scrape` answer instead of on its own
//! grid, with the HTTP server on the poll thread. At one node that removes
//! one of the three wake-ups from idle of a round, about a quarter of the
//! exporter's CPU (BENCHMARKS.md, round 6): the poll's sends ride on the
//! scrape's wake-up and its reply comes while the thread is still warm. A
//! wake-up from another thread costs as much as the tick it would replace,
//! so the HTTP server must share the poll thread for this to pay. The rule
//! is a simple phase lock with bounded intervals:
//!
//! * a scrape ticks group 0 if its last tick was at least
//!   [`FOLLOW_EARLIEST`] of an interval ago (so a scraper faster than the
//!   interval never raises the poll rate past 8/7 of the configured one);
//! * while scrapes come, the fallback tick is [`FOLLOW_LATEST`] of an
//!   interval after the last one, late enough for a scraper of the same
//!   interval to come first; when the scrapes' phase is elsewhere, the
//!   fallback tick is 7/8 or 9/8 of an interval after the last, whichever
//!   moves the ticks toward the scrapes the shorter way, by 1/8 of an
//!   interval per round, until a scrape lands in the window (at most 4
//!   rounds);
//! * without a scrape for two intervals, the fallback tick is one interval
//!   after the last: a node nobody scrapes is polled at the configured rate;
//! * a node's first poll comes off the grid, within
//!   [`crate::poller::FIRST_POLL_SPREAD`] of its start; when it opens group
//!   0, the group counts it as a tick, so the first scrape cannot follow it
//!   closer than 7/8 of an interval either. (A node joining a group 0 that
//!   already has members can see its first poll and a scrape's close
//!   together, once.)
//!
//! Without a timerfd (see below) nothing follows scrapes: the seats sleep to
//! their grid, and only the HTTP server's place on the poll thread remains.
//!
//! The price: a scrape is answered with the poll that followed the previous
//! one, so the data is about one interval old at every scrape (not between
//! zero and one interval, as on the free grid); the worst case is the same.
//! In exchange each scrape of a scraper with the poll's interval sees
//! exactly one new poll, never the same one twice. Only group 0 follows:
//! larger fleets keep their groups spread over the interval (a burst after
//! every scrape is what the groups exist to avoid), and their wake-ups are
//! already shared by up to `poll.group-size` nodes.
//!
//! Ticks come from one timerfd ([`Schedule::run_ticker`]), not from tokio
//! timers: a tokio timer due in over 64 ms wakes the process once more per
//! level of tokio's timer wheel it cascades through before it fires (one or
//! two extra wake-ups per tick, ~50 µs of CPU each here); the timerfd wakes
//! exactly at the tick. Without the ticker (it could not start), each node
//! sleeps on a tokio timer to the same grid.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// The fleet's poll schedule.
#[derive(Debug)]
pub struct Schedule {
    interval: Duration,
    group_size: usize,
    origin: Instant,
    /// A group never moves, so its phase is stable.
    groups: Mutex<Vec<Group>>,
    /// Tells the ticker a group gained its first member: that group's next
    /// tick may come before the one the ticker waits for.
    opened: Notify,
    /// Whether the ticker delivers ticks; if not, seats use tokio timers.
    ticking: AtomicBool,
    /// Group 0 follows scrapes (see the module comment).
    follow: bool,
}

/// A scrape ticks a following group only this far (of an interval) after
/// its last tick: polls never come closer than 7/8 of an interval.
pub const FOLLOW_EARLIEST: f64 = 7.0 / 8.0;

/// While scrapes come, a following group's own tick is at most this far
/// (of an interval) after its last: 1/8 of an interval of room for the
/// scrape. Before it locks on, the tick may come `FOLLOW_EARLIEST` after
/// the last instead, to meet the scrapes sooner (`follow_next`).
pub const FOLLOW_LATEST: f64 = 9.0 / 8.0;

/// Scrapes older than this many intervals no longer count as coming.
const FOLLOW_FORGET_INTERVALS: u32 = 2;

#[derive(Debug)]
struct Group {
    members: usize,
    /// The next tick the ticker delivers to this group.
    next: Instant,
    /// Bumped at every tick.
    tick: watch::Sender<u64>,
    /// When this group last ticked (used when it follows scrapes).
    last: Option<Instant>,
    /// The last scrape seen (used when it follows scrapes).
    scraped: Option<Instant>,
}

/// A node's place in the schedule; leaving (drop) frees it for a new node.
#[derive(Debug)]
pub struct Seat {
    schedule: Arc<Schedule>,
    group: usize,
    tick: watch::Receiver<u64>,
}

impl Schedule {
    pub fn new(interval: Duration, group_size: usize) -> Arc<Schedule> {
        Schedule::with_follow(interval, group_size, false)
    }

    /// A schedule whose group 0 follows scrapes if `follow`.
    pub fn with_follow(interval: Duration, group_size: usize, follow: bool) -> Arc<Schedule> {
        Arc::new(Schedule {
            interval,
            group_size: group_size.max(1),
            origin: Instant::now(),
            groups: Mutex::new(Vec::new()),
            opened: Notify::new(),
            ticking: AtomicBool::new(false),
            follow,
        })
    }

    /// Whether group 0 follows scrapes.
    pub fn follows_scrapes(&self) -> bool {
        self.follow
    }

    /// A `/metrics` or `/scrape` page has been written: ticks a following group 0 now
    /// if its turn is close enough (see the module comment). Cheap when
    /// not following: one branch.
    pub fn scraped(&self, now: Instant) {
        if !self.follow {
            return;
        }
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let Some(g) = groups.first_mut() else {
            return;
        };
        g.scraped = Some(now);
        if g.members == 0 || !self.ticking.load(Ordering::Acquire) {
            return;
        }
        if g.last
            .is_some_and(|l| now < l + self.interval.mul_f64(FOLLOW_EARLIEST))
        {
            return;
        }
        g.tick.send_modify(|t| *t += 1);
        g.last = Some(now);
        g.next = now + self.interval.mul_f64(FOLLOW_LATEST);
        drop(groups);
        // The ticker re-arms for the later tick; on the poll thread (where
        // the HTTP server runs when following) this wakes nothing.
        self.opened.notify_one();
    }

    /// A following group's own next tick after one at `now`.
    ///
    /// While scrapes come, the next scrape is expected one interval after
    /// the last. One a fraction `r` of an interval after `now` is followed
    /// if `r` is at least [`FOLLOW_EARLIEST`]. Ticking [`FOLLOW_LATEST`]
    /// apart moves a scrape that comes earlier 1/8 of an interval back per
    /// round until it wraps into the window (once `r` < 1/8: about
    /// (`r` - 1/8) / (1/8) rounds); ticking `FOLLOW_EARLIEST` apart moves
    /// it 1/8 forward (about (7/8 - `r`) / (1/8) rounds). The two are even
    /// at `r` = 1/2; from there on forward is taken. Locking on takes at
    /// most 4 rounds after the first tick that saw a scrape (5 intervals
    /// from the first scrape), not 8.
    fn follow_next(&self, g: &Group, now: Instant) -> Instant {
        let forget = self.interval * FOLLOW_FORGET_INTERVALS;
        let Some(s) = g
            .scraped
            .filter(|s| now.saturating_duration_since(*s) < forget)
        else {
            return now + self.interval;
        };
        let i = self.interval.as_secs_f64();
        let since = now.saturating_duration_since(s).as_secs_f64();
        // The expected scrape's offset after `now`, in intervals: (0, 1].
        let r = 1.0 - (since / i).fract();
        let forward = (0.5..FOLLOW_EARLIEST).contains(&r);
        now + self.interval.mul_f64(if forward {
            FOLLOW_EARLIEST
        } else {
            FOLLOW_LATEST
        })
    }

    /// Joins the first group with room, or opens a new one.
    pub fn join(self: &Arc<Self>) -> Seat {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let group = match groups.iter().position(|g| g.members < self.group_size) {
            Some(g) => g,
            None => {
                groups.push(Group {
                    members: 0,
                    next: self.origin,
                    tick: watch::channel(0).0,
                    last: None,
                    scraped: None,
                });
                groups.len() - 1
            }
        };
        let g = &mut groups[group];
        g.members += 1;
        if g.members == 1 {
            let now = Instant::now();
            g.next = self.next_tick(group, now);
            if self.follow && group == 0 {
                // The first poll, off the grid, comes by then at the latest.
                g.last = Some(now + self.interval.min(crate::poller::FIRST_POLL_SPREAD));
            }
            self.opened.notify_one();
        }
        Seat {
            schedule: self.clone(),
            group,
            tick: g.tick.subscribe(),
        }
    }

    /// Group `g`'s first tick strictly after `now`. A poll that overran (or
    /// a suspended process) skips the ticks it missed instead of polling in
    /// a burst to catch up.
    fn next_tick(&self, group: usize, now: Instant) -> Instant {
        let first = self.origin + self.phase(group);
        if now < first {
            return first;
        }
        // Intervals are at most a week (config), so these fit easily.
        let step = self.interval.as_nanos().max(1);
        let k = (now - first).as_nanos() / step + 1;
        first + Duration::from_nanos((step * k).min(u64::MAX as u128) as u64)
    }

    /// Delivers every group's ticks from one timerfd until `stop` turns
    /// true (see the module comment). Returns at once, leaving the seats on
    /// tokio timers, if the timerfd cannot be made.
    pub async fn run_ticker(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let timer = match Timer::new() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "no timerfd; nodes poll on tokio timers (and do not follow scrapes)"
                );
                return;
            }
        };
        self.ticking.store(true, Ordering::Release);
        loop {
            let due = self.deliver(Instant::now());
            if let Some(at) = due {
                if let Err(e) = timer.arm(at.saturating_duration_since(Instant::now())) {
                    tracing::warn!(error = %e, "timerfd failed; nodes poll on tokio timers");
                    break;
                }
            }
            tokio::select! {
                r = timer.fired(), if due.is_some() => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "timerfd failed; nodes poll on tokio timers");
                        break;
                    }
                }
                _ = self.opened.notified() => {}
                _ = stop.changed() => break,
            }
        }
        self.ticking.store(false, Ordering::Release);
        // Waiting seats re-check `ticking` and fall back to their timers.
        for g in self.groups.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            g.tick.send_modify(|t| *t += 1);
        }
    }

    /// Ticks every occupied group due at `now`; returns the earliest next
    /// tick of an occupied group.
    fn deliver(&self, now: Instant) -> Option<Instant> {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let mut earliest: Option<Instant> = None;
        for (i, g) in groups.iter_mut().enumerate() {
            if g.members == 0 {
                continue;
            }
            if g.next <= now {
                g.tick.send_modify(|t| *t += 1);
                g.last = Some(now);
                g.next = if self.follow && i == 0 {
                    self.follow_next(g, now)
                } else {
                    self.next_tick(i, now)
                };
            }
            earliest = Some(earliest.map_or(g.next, |e| e.min(g.next)));
        }
        earliest
    }

    /// The offset of group `g`'s ticks within the interval.
    pub fn phase(&self, group: usize) -> Duration {
        self.interval.mul_f64(radical_inverse(group))
    }

    /// Members per group (index = group), for tests and diagnostics.
    pub fn members(&self) -> Vec<usize> {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|g| g.members)
            .collect()
    }
}

impl Seat {
    pub fn group(&self) -> usize {
        self.group
    }

    /// The first tick of this seat's group strictly after `now`.
    pub fn next_after(&self, now: Instant) -> Instant {
        self.schedule.next_tick(self.group, now)
    }

    /// Waits for the group's next tick. Ticks that passed since the last
    /// wait (a poll that overran) are skipped, not caught up.
    pub async fn next_tick(&mut self) {
        self.tick.borrow_and_update();
        if self.schedule.ticking.load(Ordering::Acquire)
            && self.tick.changed().await.is_ok()
            && self.schedule.ticking.load(Ordering::Acquire)
        {
            return;
        }
        tokio::time::sleep_until(self.next_after(Instant::now())).await;
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut groups = self
            .schedule
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(g) = groups.get_mut(self.group) {
            g.members = g.members.saturating_sub(1);
        }
    }
}

/// A monotonic timerfd registered with the runtime.
struct Timer(tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>);

impl Timer {
    fn new() -> std::io::Result<Timer> {
        use rustix::time::{timerfd_create, TimerfdClockId, TimerfdFlags};
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // `AsyncFd::new` is deprecated because an arbitrary `AsRawFd` type
        // may close or swap its descriptor behind the registration; an
        // `OwnedFd` moved into the AsyncFd cannot, so it is sound here, and
        // `AsyncFd::register` would need the unsafe code this crate forbids.
        #[allow(deprecated)]
        let fd = tokio::io::unix::AsyncFd::new(fd)?;
        Ok(Timer(fd))
    }

    /// Fires once, `after` from now.
    fn arm(&self, after: Duration) -> std::io::Result<()> {
        use rustix::time::{timerfd_settime, Itimerspec, TimerfdTimerFlags, Timespec};
        // A zero value would disarm the timer: fire in 1 µs instead.
        let after = after.max(Duration::from_micros(1));
        let value = Timespec {
            tv_sec: after.as_secs() as i64,
            tv_nsec: after.subsec_nanos() as i64,
        };
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        timerfd_settime(
            self.0.get_ref(),
            TimerfdTimerFlags::empty(),
            &Itimerspec {
                it_interval: zero,
                it_value: value,
            },
        )?;
        Ok(())
    }

    /// Waits until the timer has fired (and consumes the expiry).
    async fn fired(&self) -> std::io::Result<()> {
        loop {
            let mut ready = self.0.readable().await?;
            let mut count = [0u8; 8];
            match ready.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut count)?)) {
                Ok(Ok(_)) => {
                    // A one-shot timer that was read is not readable until
                    // it fires again: saves a read that would fail.
                    ready.clear_ready();
                    return Ok(());
                }
                Ok(Err(e)) => return Err(e),
                // Not yet (a stale readiness): try_io cleared it; wait again.
                Err(_would_block) => continue,
            }
        }
    }
}

/// The base-2 radical inverse of `g`: its bits mirrored behind the binary
/// point (1 → 0.5, 2 → 0.25, 3 → 0.75), in [0, 1).
fn radical_inverse(g: usize) -> f64 {
    (g as u32).reverse_bits() as f64 / 4_294_967_296.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_fill_up_to_the_size_and_refill_the_first_free_place() {
        let s = Schedule::new(Duration::from_secs(1), 3);
        let seats: Vec<Seat> = (0..7).map(|_| s.join()).collect();
        let groups: Vec<usize> = seats.iter().map(Seat::group).collect();
        assert_eq!(groups, [0, 0, 0, 1, 1, 1, 2]);
        assert_eq!(s.members(), [3, 3, 1]);
        let mut seats = seats;
        seats.remove(4); // a member of group 1 leaves
        seats.remove(0); // and one of group 0
        assert_eq!(s.members(), [2, 2, 1]);
        let refill = s.join();
        assert_eq!(refill.group(), 0);
        let again = s.join();
        assert_eq!(again.group(), 1);
        drop(seats);
        assert_eq!(s.members(), [1, 1, 0]);
    }

    #[test]
    fn group_phases_spread_evenly_over_the_interval() {
        let s = Schedule::new(Duration::from_millis(1000), 1);
        let ms: Vec<u128> = (0..8).map(|g| s.phase(g).as_millis()).collect();
        assert_eq!(ms, [0, 500, 250, 750, 125, 625, 375, 875]);
        // Any prefix is spread: 5 groups leave no gap over 250 ms.
        let mut five: Vec<u128> = ms[..5].to_vec();
        five.sort();
        five.push(1000);
        assert!(five.windows(2).all(|w| w[1] - w[0] <= 250), "{five:?}");
    }

    #[test]
    fn next_tick_is_on_the_group_grid_and_strictly_later() {
        let s = Schedule::new(Duration::from_millis(1000), 1);
        let a = s.join(); // phase 0
        let b = s.join(); // phase 500 ms
        let o = s.origin;
        assert_eq!(a.next_after(o), o + Duration::from_millis(1000));
        assert_eq!(b.next_after(o), o + Duration::from_millis(500));
        let t = o + Duration::from_millis(500);
        assert_eq!(b.next_after(t), o + Duration::from_millis(1500));
        // Far behind (a suspended process): the next tick, no catch-up.
        let late = o + Duration::from_millis(7_321);
        assert_eq!(a.next_after(late), o + Duration::from_millis(8_000));
        assert_eq!(b.next_after(late), o + Duration::from_millis(7_500));
    }

    /// How far past its grid time a tick may arrive on a busy test machine.
    const LATE: Duration = Duration::from_millis(40);

    /// `t`'s offset after the latest grid time of `group` at or before it.
    fn lateness(s: &Schedule, group: usize, t: Instant) -> Duration {
        let first = s.origin + s.phase(group);
        let ns = (t - first).as_nanos() % s.interval.as_nanos();
        Duration::from_nanos(ns as u64)
    }

    /// Runs a following schedule of one group, without a clock: scrapes at
    /// `scrapes` (ms after the origin) and the ticker's own ticks (at each
    /// `deliver`'s answer) in time order, until `until` ms. Returns the ms
    /// of every tick of group 0 and whether each came from a scrape.
    fn simulate(follow: bool, scrapes: &[u64], until: u64) -> Vec<(u64, bool)> {
        let s = Schedule::with_follow(Duration::from_millis(1000), 32, follow);
        s.ticking.store(true, Ordering::Release);
        let seat = s.join();
        let ms = |t: Instant| (t - s.origin).as_millis() as u64;
        let at = |ms: u64| s.origin + Duration::from_millis(ms);
        let mut ticks = Vec::new();
        let mut seen = *seat.tick.borrow();
        let mut timer = s.deliver(s.origin);
        let mut scrapes = scrapes.iter().copied().peekable();
        loop {
            let own = timer.map(ms).unwrap_or(u64::MAX);
            let (now, scrape) = match scrapes.peek() {
                Some(&q) if q < own => (q, true),
                _ => (own, false),
            };
            if now > until {
                return ticks;
            }
            if scrape {
                scrapes.next();
                s.scraped(at(now));
                // The ticker re-arms (`opened`): its tick is the group's next.
                timer = Some(s.groups.lock().unwrap()[0].next);
            } else {
                timer = s.deliver(at(now));
            }
            let t = *seat.tick.borrow();
            if t != seen {
                seen = t;
                ticks.push((now, scrape));
            }
        }
    }

    fn gaps(ticks: &[(u64, bool)]) -> Vec<u64> {
        ticks.windows(2).map(|w| w[1].0 - w[0].0).collect()
    }

    #[test]
    fn following_locks_onto_a_scraper_of_the_same_interval() {
        // Prometheus every second from 3.5 s on, half an interval away from
        // the group's own ticks (which came at 1, 2 and 3 s).
        let scrapes: Vec<u64> = (0..27).map(|k| 3_500 + k * 1000).collect();
        let ticks = simulate(true, &scrapes, 30_000);
        assert_eq!(&ticks[..3], [(1000, false), (2000, false), (3000, false)]);
        // Locked within 4 rounds: from then on, every tick is a scrape's.
        let first = ticks.iter().position(|t| t.1).expect("locked");
        assert!(ticks[first].0 <= 3_500 + 4_000, "{ticks:?}");
        assert!(ticks[first..].iter().all(|t| t.1), "{ticks:?}");
        assert!(ticks[first..].len() >= 20, "{ticks:?}");
        // Never closer than 7/8 or further apart than 9/8 of an interval.
        for g in gaps(&ticks) {
            assert!((875..=1125).contains(&g), "{g} in {ticks:?}");
        }
    }

    #[test]
    fn following_locks_on_within_four_rounds_from_any_phase() {
        // A scraper of the same interval whose first scrape comes at every
        // 25 ms of the group's phase (own ticks at whole seconds).
        for offset in (0..1000).step_by(25) {
            let first_scrape = 3_000 + offset + 1;
            let scrapes: Vec<u64> = (0..20).map(|k| first_scrape + k * 1000).collect();
            let ticks = simulate(true, &scrapes, 25_000);
            let lock = ticks
                .iter()
                .position(|t| t.1)
                .unwrap_or_else(|| panic!("never locked at {offset}: {ticks:?}"));
            // The first scrape is seen at the tick after it; four rounds of
            // drift at most; then the scrape is followed.
            assert!(
                ticks[lock].0 <= first_scrape + 5_000,
                "offset {offset}: locked at {} ms: {ticks:?}",
                ticks[lock].0
            );
            assert!(ticks[lock..]
                .iter()
                .take_while(|t| t.0 < 23_000)
                .all(|t| t.1));
            for g in gaps(&ticks) {
                assert!((875..=1125).contains(&g), "{g} in {ticks:?}");
            }
        }
    }

    #[test]
    fn a_fast_scraper_does_not_raise_the_poll_rate_past_eight_sevenths() {
        let scrapes: Vec<u64> = (0..300).map(|k| 37 + k * 100).collect();
        let ticks = simulate(true, &scrapes, 30_000);
        // The node's first poll (off the grid, by 250 ms) counts: no scrape
        // follows it within 7/8 of an interval; the grid's tick comes first.
        assert_eq!(ticks[0], (1000, false), "{ticks:?}");
        for g in gaps(&ticks) {
            assert!((875..=1125).contains(&g), "{g} in {ticks:?}");
        }
        assert!(ticks.len() <= 35, "{} ticks in 30 s", ticks.len());
    }

    #[test]
    fn without_scrapes_a_following_group_polls_at_the_interval() {
        assert!(gaps(&simulate(true, &[], 10_000))
            .iter()
            .all(|&g| g == 1000));
        // Scrapes that stop: after two intervals without one, the plain
        // interval again.
        let scrapes: Vec<u64> = (0..5).map(|k| 1_950 + k * 1000).collect();
        let ticks = simulate(true, &scrapes, 20_000);
        let last_scrape = ticks.iter().rposition(|t| t.1).expect("followed");
        let after = &ticks[last_scrape..];
        assert!(after.len() >= 10, "{ticks:?}");
        assert!(gaps(after)[2..].iter().all(|&g| g == 1000), "{ticks:?}");
    }

    #[test]
    fn not_following_scrapes_change_nothing() {
        let scrapes: Vec<u64> = (0..100).map(|k| 37 + k * 100).collect();
        let ticks = simulate(false, &scrapes, 10_000);
        assert!(ticks.iter().all(|t| !t.1), "{ticks:?}");
        assert_eq!(
            ticks.iter().map(|t| t.0).collect::<Vec<_>>(),
            (1..=10).map(|k| k * 1000).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn the_ticker_wakes_each_group_on_its_grid() {
        let s = Schedule::new(Duration::from_millis(200), 2);
        let (stop_tx, stop_rx) = watch::channel(false);
        let ticker = tokio::spawn(s.clone().run_ticker(stop_rx));
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let mut seat = s.join();
            tasks.push(tokio::spawn(async move {
                let mut at = Vec::new();
                for _ in 0..3 {
                    seat.next_tick().await;
                    at.push(Instant::now());
                }
                (seat.group(), at)
            }));
        }
        let mut by_group: Vec<Vec<Vec<Instant>>> = vec![Vec::new(), Vec::new()];
        for t in tasks {
            let (group, at) = tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .expect("three ticks within 5 s")
                .unwrap();
            for (i, t) in at.iter().enumerate() {
                assert!(lateness(&s, group, *t) < LATE, "group {group} tick {i}");
                if i > 0 {
                    let gap = *t - at[i - 1];
                    assert!(gap > Duration::from_millis(150), "{gap:?}");
                }
            }
            by_group[group].push(at);
        }
        assert!(
            s.ticking.load(Ordering::Acquire),
            "ticks came from the timerfd"
        );
        // The two members of group 0 woke at the same ticks.
        let (a, b) = (&by_group[0][0], &by_group[0][1]);
        for (x, y) in a.iter().zip(b) {
            let d = if x > y { *x - *y } else { *y - *x };
            assert!(d < LATE, "{d:?}");
        }
        stop_tx.send(true).unwrap();
        ticker.await.unwrap();
        assert!(!s.ticking.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn a_tick_missed_during_a_poll_is_skipped() {
        let s = Schedule::new(Duration::from_millis(200), 4);
        let (_stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(s.clone().run_ticker(stop_rx));
        let mut seat = s.join();
        seat.next_tick().await;
        let t1 = Instant::now();
        // A poll that overran by half an interval.
        tokio::time::sleep(Duration::from_millis(300)).await;
        seat.next_tick().await;
        let gap = Instant::now() - t1;
        assert!(
            gap >= Duration::from_millis(390),
            "the missed tick was delivered late instead of skipped: {gap:?}"
        );
    }

    #[tokio::test]
    async fn without_the_ticker_seats_sleep_to_the_same_grid() {
        let s = Schedule::new(Duration::from_millis(150), 4);
        let mut seat = s.join();
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(5), seat.next_tick())
                .await
                .expect("a tick within 5 s");
            assert!(lateness(&s, 0, Instant::now()) < LATE);
        }
        assert!(!s.ticking.load(Ordering::Acquire));
    }

    #[test]
    fn members_of_one_group_share_every_tick() {
        let s = Schedule::new(Duration::from_millis(700), 32);
        let seats: Vec<Seat> = (0..32).map(|_| s.join()).collect();
        let now = Instant::now() + Duration::from_millis(1234);
        let t = seats[0].next_after(now);
        assert!(seats.iter().all(|x| x.next_after(now) == t));
        assert!(t > now && t <= now + Duration::from_millis(700));
    }
}
