//! Where benchmark tasks leave their measurements: the `bench_report` system call
//! stores (cycles, checksum) here, and `commands::bench` takes them out to print.
//!
//! A mailbox of atomics rather than a [`VcpuCell`](crate::arch::cpu_local::VcpuCell):
//! the system call fills it from a trap handler and the kernel empties it between
//! tasks, and each access is one load or store.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Reports a task may hand over before the kernel takes them.
pub const MAX_REPORTS: usize = 64;
static REPORT_CYCLES: [AtomicU64; MAX_REPORTS] = [const { AtomicU64::new(0) }; MAX_REPORTS];
static REPORT_CHECKS: [AtomicU64; MAX_REPORTS] = [const { AtomicU64::new(0) }; MAX_REPORTS];
static REPORT_COUNT: AtomicUsize = AtomicUsize::new(0);

/// The mailbox is full.
pub struct Full;

/// Keeps (cycles, checksum) for the kernel to print.
pub fn record(cycles: u64, check: u64) -> Result<(), Full> {
    let n = REPORT_COUNT.load(Ordering::Relaxed);
    if n >= MAX_REPORTS {
        return Err(Full);
    }
    REPORT_CYCLES[n].store(cycles, Ordering::Relaxed);
    REPORT_CHECKS[n].store(check, Ordering::Relaxed);
    REPORT_COUNT.store(n + 1, Ordering::Relaxed);
    Ok(())
}

/// The reports since the last call, in the order they were made, and how many.
pub fn take() -> ([(u64, u64); MAX_REPORTS], usize) {
    let n = REPORT_COUNT.swap(0, Ordering::Relaxed).min(MAX_REPORTS);
    let mut out = [(0, 0); MAX_REPORTS];
    for (i, slot) in out.iter_mut().enumerate().take(n) {
        *slot = (REPORT_CYCLES[i].load(Ordering::Relaxed), REPORT_CHECKS[i].load(Ordering::Relaxed));
    }
    (out, n)
}
