//! VM helpers of lab 5 (not a test file: `mod guest;` in each VM test file).
//!
//! Boots the graded tree's own guest kernel with hv's library (`hv::vmm::Vm`) in either
//! memory mode and hands back what `hv run --stats` would print: the VMM's exit and
//! hypercall counts, the shadow engine's trapped writes, and the guest's own counts of
//! direct and batched page-table writes.

#![allow(dead_code)] // each test file uses a part of the helpers

use std::time::{Duration, Instant};

use hv::devices::console::CapturedOutput;
use hv::outcome::GuestStop;
use hv::vmm::stats::RunStats;
use hv::vmm::{Vm, VmConfig};
use pv_abi::MmuMode;

/// A run that takes longer has hung.
const GUEST_TIME_LIMIT: Duration = Duration::from_secs(30);

/// Whether this machine can run guests; if not, says so in the form the grader reads.
pub fn kvm_or_not_run() -> bool {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(_) => true,
        Err(e) => {
            println!("LAB-NOT-RUN: this test boots a guest and needs /dev/kvm, which cannot be opened here ({e})");
            false
        }
    }
}

/// What one guest run did.
pub struct Run {
    /// What the command line was (for messages).
    pub what: String,
    pub stop: GuestStop,
    pub output: String,
    pub stats: RunStats,
}

/// Boots the guest in `mmu` mode and runs `args`.
pub fn boot(mmu: MmuMode, args: &[&str]) -> Run {
    let config = VmConfig { timeout: Some(GUEST_TIME_LIMIT), mmu, ..VmConfig::builtin_guest(args) };
    let console = CapturedOutput::default();
    let vm = Vm::new(&config, Box::new(console.clone()), Instant::now()).expect("the VM is created");
    let report = vm.run().expect("the VM runs");
    Run { what: format!("hv run --mmu {} -- {}", mmu.name(), args.join(" ")), stop: report.stop, output: console.text(), stats: report.stats }
}

/// Runs the `pt-update` benchmark's guest program once: `ops` pages mapped on first
/// touch and unmapped, with the direct or the batched writer.
pub fn pt_update(mmu: MmuMode, batched: bool, ops: u32) -> Run {
    let workload = if batched { "pt-update-batched" } else { "pt-update-direct" };
    boot(mmu, &["bench", workload, "1", &ops.to_string()])
}

impl Run {
    /// Fails, naming the concept, unless the guest shut down with `code`.
    pub fn expect_exit(&self, code: u8, concept: &str) {
        let why = match &self.stop {
            GuestStop::Shutdown { code: c } if *c == code => return,
            GuestStop::Panicked { message } => format!("the guest kernel panicked (the page-table writer runs in the guest; is a todo! left in pv-guest/src/mm/writer.rs?): {message}"),
            GuestStop::TimedOut { .. } => "the guest timed out".to_string(),
            other => format!("the guest stopped with {other:?}"),
        };
        panic!("lab 5: {concept}: `{}` must shut down with code {code}, but {why}\n--- guest output:\n{}", self.what, self.output);
    }

    /// `mmu_update` hypercalls the VMM served.
    pub fn mmu_update_hypercalls(&self) -> u64 {
        self.stats.vcpu.hypercalls.get("mmu_update").copied().unwrap_or(0)
    }

    /// Page-table entries the VMM applied for `mmu_update`.
    pub fn mmu_update_entries(&self) -> u64 {
        self.stats.vcpu.mmu_update_entries
    }

    /// Guest stores to its page tables that trapped (shadow mode; 0 in ept mode).
    pub fn trapped_pt_writes(&self) -> u64 {
        self.stats.shadow.as_ref().map_or(0, |s| s.trapped_pt_writes)
    }

    /// The guest's own counts: (direct, batched) page-table writes.
    pub fn guest_pt_writes(&self) -> (u64, u64) {
        let g = self.stats.vcpu.guest.as_ref().unwrap_or_else(|| panic!("lab 5: `{}` did not hand its counters over at shutdown\n--- guest output:\n{}", self.what, self.output));
        (g.direct_pt_writes, g.batched_pt_writes)
    }

    /// The counters as one line, for messages.
    pub fn counts(&self) -> String {
        let (direct, batched) = self.guest_pt_writes();
        format!(
            "guest direct writes {direct}, guest batched writes {batched}, mmu_update hypercalls {}, mmu_update entries {}, trapped page-table writes {}, VM exits {}",
            self.mmu_update_hypercalls(),
            self.mmu_update_entries(),
            self.trapped_pt_writes(),
            self.stats.vcpu.total_exits(),
        )
    }
}
