//! Per-source accounting in front of authentication: the web config's
//! `rate_limit` counted per source address for requests that are not
//! authenticated, and failed password checks slowed per source before they
//! reach bcrypt.
//!
//! Why per source: exporter-toolkit's `rate_limit` is one bucket for every
//! request, checked before authentication, so any client on the network
//! can empty it and have Prometheus answered 429. Here a request that
//! presents valid credentials draws only on the shared bucket, one that
//! does not draws on its own source's bucket, and without `basic_auth_users`
//! (nobody is authenticated) every source has a bucket of its own with the
//! configured rate. bcrypt costs tens to hundreds of milliseconds a check:
//! a source that keeps failing is refused before it costs any.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed password checks a source may make in a burst before it waits.
pub const AUTH_FAILURE_BURST: u32 = 5;
/// Then one more per this long: a person mistyping is not slowed, a
/// guessing loop gets one bcrypt every 2 s per address.
pub const AUTH_FAILURE_REFILL: Duration = Duration::from_secs(2);
/// Sources remembered at most; the least recently seen is forgotten first,
/// so a flood of addresses cannot grow memory.
pub const MAX_TRACKED_SOURCES: usize = 4096;

/// Go's `rate.NewLimiter(rate.Every(interval), burst)` state: starts full,
/// one token per interval, at most `burst` tokens.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn full(burst: u32, now: Instant) -> Self {
        TokenBucket {
            tokens: f64::from(burst),
            at: now,
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, interval: Duration, burst: u32, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() / interval.as_secs_f64();
        self.tokens = (self.tokens + refill).min(f64::from(burst));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Gives back a token taken for something that did not happen.
    fn refund(&mut self, burst: u32) {
        self.tokens = (self.tokens + 1.0).min(f64::from(burst));
    }
}

struct Source {
    /// The web config's `rate_limit`, for this source's requests that are
    /// not authenticated.
    requests: Option<TokenBucket>,
    failures: TokenBucket,
    seen: Instant,
}

/// The per-source state of one HTTP server (it outlives web config
/// reloads: a reload must not reset a guessing client's count).
#[derive(Default)]
pub struct Guard {
    sources: Mutex<HashMap<IpAddr, Source>>,
}

impl Guard {
    fn with<R>(&self, peer: IpAddr, f: impl FnOnce(&mut Source, Instant) -> R) -> R {
        let now = Instant::now();
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if sources.len() >= MAX_TRACKED_SOURCES && !sources.contains_key(&peer) {
            if let Some(oldest) = sources.iter().min_by_key(|(_, s)| s.seen).map(|(k, _)| *k) {
                sources.remove(&oldest);
            }
        }
        let source = sources.entry(peer).or_insert_with(|| Source {
            requests: None,
            failures: TokenBucket::full(AUTH_FAILURE_BURST, now),
            seen: now,
        });
        source.seen = now;
        f(source, now)
    }

    /// Counts a request that is not authenticated against `peer`'s own
    /// bucket of the configured `rate_limit`; false: answer 429.
    pub fn allow_unauthenticated(&self, peer: IpAddr, rate: Option<(Duration, u32)>) -> bool {
        let Some((interval, burst)) = rate else {
            return true;
        };
        self.with(peer, |s, now| {
            s.requests
                .get_or_insert_with(|| TokenBucket::full(burst, now))
                .take(interval, burst, now)
        })
    }

    /// Takes one of `peer`'s password checks before it runs, so that
    /// concurrent requests from one source cannot all pass while a check is
    /// in flight; false: answer 429 without running bcrypt.
    pub fn charge_password_check(&self, peer: IpAddr) -> bool {
        self.with(peer, |s, now| {
            s.failures
                .take(AUTH_FAILURE_REFILL, AUTH_FAILURE_BURST, now)
        })
    }

    /// The check charged to `peer` succeeded (or never ran): it does not
    /// count as a failure.
    pub fn refund_password_check(&self, peer: IpAddr) {
        self.with(peer, |s, _| s.failures.refund(AUTH_FAILURE_BURST));
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.sources.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(a: u8, b: u8) -> IpAddr {
        IpAddr::from([127, 0, a, b])
    }

    #[test]
    fn failures_are_counted_per_source() {
        let g = Guard::default();
        // Concurrent checks are charged up front: no more than the burst
        // can be in flight, whatever their outcome.
        for _ in 0..AUTH_FAILURE_BURST {
            assert!(g.charge_password_check(ip(0, 1)));
        }
        assert!(!g.charge_password_check(ip(0, 1)));
        assert!(g.charge_password_check(ip(0, 2)));
        // A check that succeeds is given back.
        g.refund_password_check(ip(0, 1));
        assert!(g.charge_password_check(ip(0, 1)));
        assert!(!g.charge_password_check(ip(0, 1)));
    }

    #[test]
    fn unauthenticated_requests_draw_on_their_own_source_bucket() {
        let g = Guard::default();
        let rate = Some((Duration::from_secs(3600), 2));
        assert!(g.allow_unauthenticated(ip(0, 1), rate));
        assert!(g.allow_unauthenticated(ip(0, 1), rate));
        assert!(!g.allow_unauthenticated(ip(0, 1), rate));
        assert!(g.allow_unauthenticated(ip(0, 2), rate));
        assert!(g.allow_unauthenticated(ip(0, 1), None));
    }

    #[test]
    fn the_source_table_is_bounded() {
        let g = Guard::default();
        for i in 0..MAX_TRACKED_SOURCES + 100 {
            g.charge_password_check(ip((i / 256) as u8, i as u8));
        }
        assert_eq!(g.tracked(), MAX_TRACKED_SOURCES);
    }

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(2, t0);
        let s = Duration::from_secs(1);
        assert!(b.take(s, 2, t0) && b.take(s, 2, t0) && !b.take(s, 2, t0));
        assert!(b.take(s, 2, t0 + s));
        assert!(!b.take(s, 2, t0 + s));
        let later = t0 + 100 * s;
        assert!(b.take(s, 2, later) && b.take(s, 2, later) && !b.take(s, 2, later));
    }
}
