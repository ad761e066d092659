//! Every number the kernel counts about itself, in one leaf module.
//!
//! Some events never leave the guest, so the VMM cannot count them: KVM delivers a page
//! fault straight to the guest's IDT, and in ept mode `mov cr3` and page-table stores
//! need no exit at all. The kernel counts them here and hands the counts over with the
//! `shutdown` hypercall (`pv_abi::hypercall::GuestCounters`); the self-tests read the
//! others. This module imports nothing from the kernel, so any layer may count.
//!
//! Counters are atomics with relaxed ordering: one vCPU, and a trap handler may count
//! while the code it interrupted is counting too; an atomic add is one instruction.

use core::sync::atomic::{AtomicU64, Ordering};

use pv_abi::event_channel::MAX_CHANNELS;
use pv_abi::hypercall::GuestCounters;

/// Page faults taken (demand-zero and fatal).
pub static PAGE_FAULTS: AtomicU64 = AtomicU64::new(0);
/// Demand-zero page faults served.
pub static DEMAND_FAULTS: AtomicU64 = AtomicU64::new(0);
/// Page-table entries stored directly.
pub static DIRECT_PT_WRITES: AtomicU64 = AtomicU64::new(0);
/// Page-table entries sent through `mmu_update`.
pub static BATCHED_PT_WRITES: AtomicU64 = AtomicU64::new(0);
/// Address spaces loaded (CR3 writes or `set_cr3` hypercalls).
pub static CR3_LOADS: AtomicU64 = AtomicU64::new(0);
/// System calls made.
pub static SYSCALLS: AtomicU64 = AtomicU64::new(0);
/// `#BP` traps handled.
pub static BREAKPOINTS: AtomicU64 = AtomicU64::new(0);
/// Announced `#UD` faults stepped over (read by the self-tests).
pub static EMULATED_UD2: AtomicU64 = AtomicU64::new(0);
/// Upcall interrupts taken.
pub static UPCALLS: AtomicU64 = AtomicU64::new(0);
/// Upcalls taken, per event channel (a channel counts once per upcall that found it
/// pending).
pub static CHANNEL_EVENTS: [AtomicU64; MAX_CHANNELS] = [const { AtomicU64::new(0) }; MAX_CHANNELS];

/// Adds one to a counter.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A counter's value now.
pub fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Events seen on `channel` so far (0 for a channel that does not exist).
pub fn channel_events(channel: u32) -> u64 {
    CHANNEL_EVENTS.get(channel as usize).map_or(0, read)
}

/// The counters the VMM receives with `shutdown`.
pub fn snapshot() -> GuestCounters {
    GuestCounters {
        page_faults: read(&PAGE_FAULTS),
        cr3_loads: read(&CR3_LOADS),
        syscalls: read(&SYSCALLS),
        direct_pt_writes: read(&DIRECT_PT_WRITES),
        batched_pt_writes: read(&BATCHED_PT_WRITES),
    }
}
