//! The stack's clock: smoltcp's `Instant` (microseconds) from the guest's time-stamp
//! counter.
//!
//! smoltcp never reads a clock itself: every call takes "now", which drives its timers
//! (ARP retries, TCP retransmission and TIME-WAIT, the delayed ACK). The guest's clock is
//! the TSC, and the boot-info page says its rate in kHz. Who reads the counter is the
//! user's choice: the kernel passes its `hv::clock::read` (which goes through hv when a
//! run is recorded), the ring-3 network task its own `rdtsc`.

use smoltcp::time::Instant;

/// The TSC rate assumed when the boot-info page does not give one (1 GHz): timers then
/// run at the wrong speed, but they still run.
const FALLBACK_TSC_KHZ: u64 = 1_000_000;

/// Turns TSC readings into time.
#[derive(Clone, Copy, Debug)]
pub struct NetClock {
    tsc_khz: u64,
    read: fn() -> u64,
}

impl NetClock {
    /// A clock for a TSC ticking `tsc_khz` thousand times a second (0: unknown), read
    /// with `read`.
    pub fn new(tsc_khz: u64, read: fn() -> u64) -> Self {
        NetClock { tsc_khz: if tsc_khz == 0 { FALLBACK_TSC_KHZ } else { tsc_khz }, read }
    }

    /// The TSC now.
    pub fn ticks(&self) -> u64 {
        (self.read)()
    }

    /// Microseconds in `ticks` TSC cycles.
    pub fn micros(&self, ticks: u64) -> u64 {
        // cycles / (kHz · 1000) s = cycles · 1000 / kHz µs; in u128 so no TSC value overflows.
        (u128::from(ticks) * 1000 / u128::from(self.tsc_khz)) as u64
    }

    /// TSC cycles in `micros` microseconds.
    pub fn ticks_in(&self, micros: u64) -> u64 {
        micros.saturating_mul(self.tsc_khz) / 1000
    }

    /// Now, as smoltcp counts time.
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.micros(self.ticks()) as i64)
    }
}
