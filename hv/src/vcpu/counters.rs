//! What the exit loop counts: exits by reason, hypercalls by name, and the work it did
//! for the guest's memory. The VM adds device and shadow counters to these at the end of
//! a run (`vmm::stats::RunStats`).

use std::collections::BTreeMap;

use pv_abi::hypercall::GuestCounters;

use super::handling::HandlingTimes;
use crate::trace::ExitReason;

/// The exit loop's counters for one run.
#[derive(Clone, Debug, Default)]
pub struct VcpuCounters {
    /// VM exits by reason.
    pub exits: BTreeMap<ExitReason, u64>,
    /// Hypercalls by name (`unknown` for bad numbers).
    pub hypercalls: BTreeMap<&'static str, u64>,
    /// Hypercalls answered with an error code.
    pub hypercall_errors: u64,
    /// Page-table entries written through `mmu_update`.
    pub mmu_update_entries: u64,
    /// Port writes to a doorbell port that reached the vCPU loop (0 when KVM's
    /// ioeventfd handles them, as it should).
    pub doorbell_exits: u64,
    /// Times KVM was made to forget cached translations (a memslot removed and re-added).
    pub translation_flushes: u64,
    /// What the guest counted itself (handed over with `shutdown`), if it reported.
    pub guest: Option<GuestCounters>,
    /// hv's own time on each kind of exit (`super::handling`).
    pub handling: HandlingTimes,
    /// The hypercall the current exit made, if any (set by [`VcpuCounters::count_hypercall`],
    /// taken by the exit loop to file the exit's handling time under it).
    pub current_hypercall: Option<&'static str>,
}

impl VcpuCounters {
    /// Counts one exit.
    pub fn count_exit(&mut self, reason: ExitReason) {
        *self.exits.entry(reason).or_default() += 1;
    }

    /// Counts one hypercall.
    pub fn count_hypercall(&mut self, name: &'static str, failed: bool) {
        *self.hypercalls.entry(name).or_default() += 1;
        self.hypercall_errors += u64::from(failed);
        self.current_hypercall = Some(name);
    }

    /// Total VM exits.
    pub fn total_exits(&self) -> u64 {
        self.exits.values().sum()
    }

    /// Total hypercalls.
    pub fn total_hypercalls(&self) -> u64 {
        self.hypercalls.values().sum()
    }
}
