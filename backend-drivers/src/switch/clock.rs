//! The switch's sense of time, behind a trait so that tests can move it by hand.
//!
//! MAC ageing (see [`super::mac_table`]) forgets an address after minutes of silence.
//! A test of that cannot sleep for minutes, and a test that sleeps for milliseconds
//! against a real clock is flaky on a loaded machine. So the switch never reads the
//! time itself: it asks a [`Clock`], which is [`SystemClock`] in hv and a
//! [`ManualClock`] in tests, advanced exactly as far as the test means.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A monotonic clock: the time since some fixed starting point, never going back.
pub trait Clock: Send + Sync {
    /// The time since this clock's starting point.
    fn now(&self) -> Duration;
}

/// The host's monotonic clock (`CLOCK_MONOTONIC`, through [`Instant`]).
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    /// A clock whose starting point is now.
    pub fn new() -> Self {
        SystemClock { start: Instant::now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A clock that stands still until told to move: for tests.
#[derive(Default)]
pub struct ManualClock {
    now: Mutex<Duration>,
}

impl ManualClock {
    /// A clock standing at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *now = now.saturating_add(by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        *self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
