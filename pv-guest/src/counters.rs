//! What the kernel counts about itself, for the VMM's `--stats` and `hv bench`.
//!
//! Some events never leave the guest, so the VMM cannot count them: KVM delivers a page
//! fault straight to the guest's IDT, and in ept mode `mov cr3` and page-table stores
//! need no exit at all. The kernel counts them here and hands the counts over with the
//! `shutdown` hypercall (`pv_abi::hypercall::GuestCounters`).

use core::sync::atomic::{AtomicU64, Ordering};

use pv_abi::hypercall::GuestCounters;

/// Page faults taken (demand-zero and fatal).
pub static PAGE_FAULTS: AtomicU64 = AtomicU64::new(0);
/// Page-table entries stored directly.
pub static DIRECT_PT_WRITES: AtomicU64 = AtomicU64::new(0);
/// Page-table entries sent through `mmu_update`.
pub static BATCHED_PT_WRITES: AtomicU64 = AtomicU64::new(0);

/// Adds one to a counter.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The counters now.
pub fn snapshot() -> GuestCounters {
    GuestCounters {
        page_faults: PAGE_FAULTS.load(Ordering::Relaxed),
        cr3_loads: crate::task::CR3_LOADS.load(Ordering::Relaxed),
        syscalls: crate::task::SYSCALLS.load(Ordering::Relaxed),
        direct_pt_writes: DIRECT_PT_WRITES.load(Ordering::Relaxed),
        batched_pt_writes: BATCHED_PT_WRITES.load(Ordering::Relaxed),
    }
}
