//! How long hv itself spends on each exit: from `KVM_RUN`'s return to the next entry,
//! measured on the vCPU thread, by what the exit turned out to be.
//!
//! A whole hypercall round trip, timed by the guest, mixes three costs: the CPU's (or
//! KVM's) switch out of the guest and back, KVM's own work, and hv's handling. Only the
//! last is this project's code, and on a host where guest ring 0 is emulated the first
//! two dwarf it. Timing hv's part alone, here, separates them: `hv bench` sets it against
//! the round trip the guest measured (docs/bench.md).
//!
//! An exit at which another thread's job runs (a pause, a snapshot: `super::control`)
//! counts that job's time too; such exits are the `interrupted` kind, apart from the rest.
//!
//! Two clock reads per exit (a vDSO call each, tens of nanoseconds) against exits that
//! cost microseconds: always on.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::trace::ExitReason;

/// What an exit turned out to be, for timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HandledAs {
    /// A hypercall, by name.
    Hypercall(&'static str),
    /// Shadow mode: a trapped store to a page table, applied and synced.
    TrappedPageTableWrite,
    /// Any other exit, by reason.
    Exit(ExitReason),
}

impl HandledAs {
    /// The name tables print.
    pub fn label(self) -> String {
        match self {
            HandledAs::Hypercall(name) => format!("hypercall {name}"),
            HandledAs::TrappedPageTableWrite => "trapped page-table write".to_string(),
            HandledAs::Exit(reason) => format!("exit {}", reason.name()),
        }
    }
}

/// Time spent on one kind of exit: how many, and how long in all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct HandlingTotal {
    /// Exits of this kind.
    pub count: u64,
    /// hv's time on them, in nanoseconds.
    pub nanos: u64,
}

impl HandlingTotal {
    fn add(&mut self, took: Duration) {
        self.count += 1;
        self.nanos = self.nanos.saturating_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Mean nanoseconds per exit (0 with none).
    pub fn mean_ns(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.nanos as f64 / self.count as f64
        }
    }
}

/// hv's handling time by kind of exit, and the part of it spent making KVM forget its
/// cached translations (a memslot removed and re-added).
#[derive(Clone, Debug, Default)]
pub struct HandlingTimes {
    /// By kind of exit.
    pub by_kind: BTreeMap<HandledAs, HandlingTotal>,
    /// Translation flushes (part of the exits' time above, timed on their own too).
    pub flushes: HandlingTotal,
}

impl HandlingTimes {
    /// One exit handled as `kind` took `took`.
    pub fn record(&mut self, kind: HandledAs, took: Duration) {
        self.by_kind.entry(kind).or_default().add(took);
    }

    /// One translation flush took `took`.
    pub fn record_flush(&mut self, took: Duration) {
        self.flushes.add(took);
    }

    /// The total for `kind` (zero if none happened).
    pub fn of(&self, kind: HandledAs) -> HandlingTotal {
        self.by_kind.get(&kind).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_and_means_by_kind() {
        let mut t = HandlingTimes::default();
        t.record(HandledAs::Hypercall("nop"), Duration::from_nanos(300));
        t.record(HandledAs::Hypercall("nop"), Duration::from_nanos(500));
        t.record(HandledAs::TrappedPageTableWrite, Duration::from_micros(3));
        assert_eq!(t.of(HandledAs::Hypercall("nop")), HandlingTotal { count: 2, nanos: 800 });
        assert_eq!(t.of(HandledAs::Hypercall("nop")).mean_ns(), 400.0);
        assert_eq!(t.of(HandledAs::Hypercall("set_cr3")).mean_ns(), 0.0);
        assert_eq!(HandledAs::TrappedPageTableWrite.label(), "trapped page-table write");
        assert_eq!(HandledAs::Exit(ExitReason::Hlt).label(), "exit hlt");
    }
}
