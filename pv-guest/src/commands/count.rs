//! `count` and `count-user`: guests that count, slowly enough to be watched, so that a
//! snapshot, a restore or a migration in the middle can be seen not to lose or repeat
//! a number.
//!
//! - `count N [MS]` counts in the kernel: prints `count: i` for i = 1..=N, waiting MS
//!   milliseconds (default 10) between lines by reading the TSC (`hv::clock`: in a
//!   recorded run every read is a `read_clock` hypercall, so a replay waits alike).
//! - `count-user N [SPIN]` runs a ring-3 task (`task::programs::COUNT`) that prints
//!   `i` on its own line for i = 1..=N, spinning SPIN times (default 10 million) between
//!   lines: the state to save is then mostly in ring 3.

use crate::hv::clock;
use crate::mm::balloon;
use crate::println;
use crate::task::programs::COUNT;
use crate::task::scheduler::{self, TaskExit};

/// `count N [MS]`.
pub fn count<'a>(info: &pv_abi::BootInfo, mut words: impl Iterator<Item = &'a str>) -> u8 {
    let Some(n) = words.next().and_then(|w| w.parse::<u64>().ok()) else {
        println!("pv-guest: count needs a number: count N [MS]");
        return 2;
    };
    let ms = words.next().and_then(|w| w.parse::<u64>().ok()).unwrap_or(10);
    let wait_cycles = info.tsc_khz.saturating_mul(ms);
    for i in 1..=n {
        let start = clock::read();
        while clock::read().wrapping_sub(start) < wait_cycles {
            // A pause is time the kernel has: serve the balloon (a no-op without one).
            balloon::service();
            core::hint::spin_loop();
        }
        println!("count: {i}");
    }
    0
}

/// `count-user N [SPIN]`.
pub fn count_user<'a>(mut words: impl Iterator<Item = &'a str>) -> u8 {
    let Some(n) = words.next().and_then(|w| w.parse::<u64>().ok()) else {
        println!("pv-guest: count-user needs a number: count-user N [SPIN]");
        return 2;
    };
    let spin = words.next().and_then(|w| w.parse::<u64>().ok()).unwrap_or(10_000_000);
    if scheduler::spawn(&COUNT, [n, spin]).is_err() {
        println!("count-user: could not create the task");
        return 1;
    }
    let result = scheduler::run_all()[0];
    println!("count-user: the task ended: {result:?}");
    u8::from(result != Some(TaskExit::Exited(0)))
}
