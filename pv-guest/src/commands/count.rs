//! `count N [MS]`: prints `count: 1` to `count: N`, one line every MS milliseconds
//! (default 20), then shuts down with 0.
//!
//! A guest whose progress can be seen from outside: a test pauses it through hv's
//! control socket and checks that no line appears while it is paused and that counting
//! goes on from the next number once it is resumed. The wait between lines spins on the
//! TSC (no exit to hv), so only hv taking the vCPU away can stop the count.

use crate::arch::cpu;
use crate::println;
use pv_abi::BootInfo;

/// Exit code for bad arguments.
const EXIT_USAGE: u8 = 2;
/// Milliseconds between two lines when MS is not given.
const DEFAULT_INTERVAL_MS: u64 = 20;
/// Longest interval accepted (one minute): anything longer looks like a typo.
const MAX_INTERVAL_MS: u64 = 60_000;

/// `count N [MS]`.
pub fn run<'a>(info: &BootInfo, mut args: impl Iterator<Item = &'a str>) -> u8 {
    let count = args.next().and_then(|w| w.parse::<u64>().ok());
    let interval = match args.next().map(str::parse::<u64>) {
        None => Some(DEFAULT_INTERVAL_MS),
        Some(Ok(ms)) if ms <= MAX_INTERVAL_MS => Some(ms),
        Some(_) => None,
    };
    let (Some(count), Some(interval_ms)) = (count, interval) else {
        println!("count: usage: count N [MS] (N lines, one every MS <= {MAX_INTERVAL_MS} milliseconds)");
        return EXIT_USAGE;
    };
    if info.tsc_khz == 0 {
        println!("count: the TSC frequency is unknown (hv could not read it), so there is no clock to wait on");
        return 1;
    }
    // kHz = TSC cycles per millisecond.
    let cycles_per_line = interval_ms.saturating_mul(info.tsc_khz);
    let mut next = cpu::rdtsc();
    for i in 1..=count {
        next = next.saturating_add(cycles_per_line);
        while cpu::rdtsc() < next {
            core::hint::spin_loop();
        }
        println!("count: {i}");
    }
    0
}
