//! When each node is polled: nodes share tick times in groups.
//!
//! Each node joins a group of at most `poll.group-size` nodes; a group's
//! members are all polled at the same instants, `origin + phase + k ·
//! interval`. The reason is cost: every timer wake-up of the exporter costs
//! about as much CPU as parsing a whole INFO reply (a wake from idle runs on
//! cold caches; ~80-150 µs on our benchmark machine, see BENCHMARKS.md).
//! tokio fires every timer due at the same instant in one wake-up, so one
//! wake-up per group instead of one per node is most of the exporter's
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
//! Each seat sleeps on a tokio timer to its group's grid. (A timerfd ticker
//! and a mode that polled right after each scrape used to shave wake-ups at
//! one node; they were removed for simplicity, measured in BENCHMARKS.md.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// The fleet's poll schedule.
#[derive(Debug)]
pub struct Schedule {
    interval: Duration,
    group_size: usize,
    origin: Instant,
    /// Members per group; a group never moves, so its phase is stable.
    groups: Mutex<Vec<usize>>,
}

/// A node's place in the schedule; leaving (drop) frees it for a new node.
#[derive(Debug)]
pub struct Seat {
    schedule: Arc<Schedule>,
    group: usize,
}

impl Schedule {
    pub fn new(interval: Duration, group_size: usize) -> Arc<Schedule> {
        Arc::new(Schedule {
            interval,
            group_size: group_size.max(1),
            origin: Instant::now(),
            groups: Mutex::new(Vec::new()),
        })
    }

    /// Joins the first group with room, or opens a new one.
    pub fn join(self: &Arc<Self>) -> Seat {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let group = match groups.iter().position(|&m| m < self.group_size) {
            Some(g) => g,
            None => {
                groups.push(0);
                groups.len() - 1
            }
        };
        groups[group] += 1;
        Seat {
            schedule: self.clone(),
            group,
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

    /// The offset of group `g`'s ticks within the interval.
    pub fn phase(&self, group: usize) -> Duration {
        self.interval.mul_f64(radical_inverse(group))
    }

    /// Members per group (index = group), for tests and diagnostics.
    pub fn members(&self) -> Vec<usize> {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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
        if let Some(m) = groups.get_mut(self.group) {
            *m = m.saturating_sub(1);
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
}
