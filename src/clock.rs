//! The exporter's own clock for histories: seconds since the daemon started,
//! on the monotonic clock, so wall-clock steps never bend a window.

use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            start: Instant::now(),
        }
    }

    /// Seconds from the daemon's start to `at` (0 for instants before it).
    pub fn secs(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.start).as_secs_f64()
    }

    pub fn now(&self) -> f64 {
        self.secs(Instant::now())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
