//! The workloads `hv bench` runs, and how big each run is.
//!
//! Each workload is a guest command (`bench NAME REPS OPS [ARG]`, see
//! `pv-guest/src/commands/bench/`) plus what hv needs to judge it: what one operation
//! is, how many to run in a `--quick` and in a full run, the checksum to expect, and the
//! VM it needs (more RAM for the TLB working set, a disk for the block ring).
//!
//! The sizes are chosen for the development machines, where every ring-0 instruction of
//! the guest is emulated (see shared/docs/kvm-platform.md): a demand-zero fault costs
//! about half a millisecond there, mostly zeroing the page, so the fault-heavy workloads
//! run hundreds of operations, not millions.

use super::checks;

/// What kind of workload, with its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Map, touch and unmap pages; `batched` sends page-table writes through `mmu_update`.
    PtUpdate {
        /// Batched (true) or direct (false) page-table writes.
        batched: bool,
    },
    /// Create, populate and destroy address spaces.
    Aspace,
    /// Two tasks yielding to each other.
    Ctxswitch,
    /// First touches of fresh anonymous memory.
    Pagefault,
    /// A pointer chase over a large working set.
    TlbMiss {
        /// 2 MiB pages (true) or 4 KiB pages.
        large: bool,
    },
    /// The null hypercall.
    Hypercall,
    /// A `dec; jnz` loop in the guest kernel: the price of a ring-0 instruction.
    Ring0Loop,
    /// Reads through the block ring, by a ring-3 task into its own frames.
    Blk {
        /// Sectors per request.
        sectors: u64,
    },
}

/// Repetitions and operations per repetition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    /// Repetitions (each timed separately).
    pub reps: u64,
    /// Operations per repetition.
    pub ops: u64,
    /// The workload's extra argument: working set in MiB (tlb-miss), sectors (blk).
    pub arg: Option<u64>,
}

/// One workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    /// What `--workload` selects it by.
    pub name: &'static str,
    /// Its name in reports: the name, and the variant after a slash.
    pub id: &'static str,
    /// The guest's name for it.
    pub guest_name: &'static str,
    /// What one operation is.
    pub operation: &'static str,
    /// Its parameters.
    pub kind: Kind,
    /// Size of a `--quick` run.
    pub quick: Size,
    /// Size of a full run.
    pub full: Size,
}

/// Working set of the TLB workloads: a full run's is far beyond the 4 KiB-page TLB
/// reach of current CPUs (1.5–3 thousand entries: 6–12 MiB), a quick run's is smaller
/// because filling it (demand-zero faults) is slow where ring 0 is emulated.
const TLB_FULL_MIB: u64 = 32;
/// The quick run's working set: small enough to fault in quickly (every page is a guest
/// page fault, hundreds of µs each where guest ring 0 is emulated), and so small that it
/// fits in the TLB's reach and the caches: a quick run cannot show TLB misses, and its
/// table says so ([`TLB_QUICK_NOTE`]).
pub const TLB_QUICK_MIB: u64 = 4;
/// What the quick run's table says under the tlb-miss rows.
pub const TLB_QUICK_NOTE: &str = "tlb-miss in a --quick run: the 4 MiB working set fits in the TLB's reach and the caches, so these rows cannot show the cost of TLB misses; run without --quick (32 MiB) for that";

const fn size(reps: u64, ops: u64) -> Size {
    Size { reps, ops, arg: None }
}

const fn size_with(reps: u64, ops: u64, arg: u64) -> Size {
    Size { reps, ops, arg: Some(arg) }
}

/// Every workload, in report order.
pub const ALL: [Workload; 13] = [
    Workload {
        name: "pt-update",
        id: "pt-update/direct",
        guest_name: "pt-update-direct",
        operation: "a 4 KiB page mapped on first touch and unmapped, page-table entries stored directly",
        kind: Kind::PtUpdate { batched: false },
        quick: size(3, 32),
        full: size(7, 128),
    },
    Workload {
        name: "pt-update",
        id: "pt-update/batched",
        guest_name: "pt-update-batched",
        operation: "a 4 KiB page mapped on first touch and unmapped, page-table entries sent with mmu_update",
        kind: Kind::PtUpdate { batched: true },
        quick: size(3, 32),
        full: size(7, 128),
    },
    Workload {
        name: "aspace",
        id: "aspace",
        guest_name: "aspace",
        operation: "an address space created, 8 pages populated, destroyed (a task spawned and exited)",
        kind: Kind::Aspace,
        quick: size(3, 2),
        full: size(7, 6),
    },
    Workload {
        name: "ctxswitch",
        id: "ctxswitch",
        guest_name: "ctxswitch",
        operation: "a yield from one task to the other (system call and CR3 load)",
        kind: Kind::Ctxswitch,
        quick: size(3, 40),
        full: size(7, 200),
    },
    Workload {
        name: "pagefault",
        id: "pagefault",
        guest_name: "pagefault",
        operation: "a first touch of a fresh 4 KiB page (demand-zero fault)",
        kind: Kind::Pagefault,
        quick: size(3, 32),
        full: size(7, 128),
    },
    Workload {
        name: "tlb-miss",
        id: "tlb-miss/4k",
        guest_name: "tlb-miss-4k",
        operation: "a dependent random 8-byte read in the working set, 4 KiB pages",
        kind: Kind::TlbMiss { large: false },
        quick: size_with(3, 200_000, TLB_QUICK_MIB),
        full: size_with(7, 1_000_000, TLB_FULL_MIB),
    },
    Workload {
        name: "tlb-miss",
        id: "tlb-miss/2m",
        guest_name: "tlb-miss-2m",
        operation: "a dependent random 8-byte read in the working set, 2 MiB pages",
        kind: Kind::TlbMiss { large: true },
        quick: size_with(3, 200_000, TLB_QUICK_MIB),
        full: size_with(7, 1_000_000, TLB_FULL_MIB),
    },
    Workload {
        name: "hypercall",
        id: "hypercall",
        guest_name: "hypercall",
        operation: "a null hypercall (nop) round trip from the guest kernel",
        kind: Kind::Hypercall,
        quick: size(3, 500),
        full: size(7, 5000),
    },
    Workload {
        name: "ring0",
        id: "ring0",
        guest_name: "ring0-loop",
        operation: "one iteration of a `dec; jnz` loop in the guest kernel (two ring-0 instructions): the unit every kernel path here is paid in",
        kind: Kind::Ring0Loop,
        quick: size(3, 2_000),
        full: size(7, 20_000),
    },
    Workload {
        name: "blk",
        id: "blk/4k",
        guest_name: "blk",
        operation: "a 4 KiB read by a ring-3 task into its own frames through the block ring (32 in flight, one system call per batch)",
        kind: Kind::Blk { sectors: 8 },
        quick: size_with(3, 32, 8),
        full: size_with(7, 256, 8),
    },
    Workload {
        name: "blk",
        id: "blk/64k",
        guest_name: "blk",
        operation: "a 64 KiB read by a ring-3 task into its own frames through the block ring (32 in flight, 16 grants each: 512 of the table's 1023)",
        kind: Kind::Blk { sectors: 128 },
        quick: size_with(3, 16, 128),
        full: size_with(7, 128, 128),
    },
    Workload {
        name: "blk-direct",
        id: "blk-direct/4k",
        guest_name: "blk-direct",
        operation: "a 4 KiB read by pv-blkd, a ring-3 task driving the block ring itself (32 in flight, no system call or interrupt per request)",
        kind: Kind::Blk { sectors: 8 },
        quick: size_with(3, 64, 8),
        full: size_with(7, 2048, 8),
    },
    Workload {
        name: "blk-direct",
        id: "blk-direct/64k",
        guest_name: "blk-direct",
        operation: "a 64 KiB read by pv-blkd, a ring-3 task driving the block ring itself (as many in flight as grant entries allow, up to 32)",
        kind: Kind::Blk { sectors: 128 },
        quick: size_with(3, 32, 128),
        full: size_with(7, 512, 128),
    },
];

/// The names `--workload` accepts (each selects all its variants).
pub fn names() -> Vec<&'static str> {
    let mut names: Vec<&str> = ALL.iter().map(|w| w.name).collect();
    names.dedup();
    names
}

/// The workloads a `--workload` value selects: by name (all variants) or by id.
pub fn select(name: &str) -> Vec<&'static Workload> {
    ALL.iter().filter(|w| w.name == name || w.id == name).collect()
}

impl Workload {
    /// The size for this run.
    pub fn size(&self, quick: bool) -> Size {
        if quick {
            self.quick
        } else {
            self.full
        }
    }

    /// Guest RAM the workload needs, in MiB.
    pub fn mem_mib(&self) -> u64 {
        match self.kind {
            Kind::TlbMiss { .. } => 128,
            _ => 64,
        }
    }

    /// Whether it needs a disk.
    pub fn needs_disk(&self) -> bool {
        matches!(self.kind, Kind::Blk { .. })
    }

    /// Bytes one block request reads (blk only).
    pub fn request_bytes(&self) -> Option<u64> {
        match self.kind {
            Kind::Blk { sectors } => Some(sectors * 512),
            _ => None,
        }
    }

    /// The guest command for `reps` repetitions of `ops` operations.
    pub fn guest_args(&self, size: Size, ops: u64) -> Vec<String> {
        let mut args = vec!["bench".to_string(), self.guest_name.to_string(), size.reps.to_string(), ops.to_string()];
        args.extend(size.arg.map(|a| a.to_string()));
        args
    }

    /// The checksum repetition `rep` of `ops` operations must report (`None` for blk,
    /// whose data is checked by hash instead).
    pub fn expected_check(&self, size: Size, rep: u64, ops: u64) -> Option<u64> {
        Some(match self.kind {
            Kind::PtUpdate { .. } => checks::pt_update(ops),
            Kind::Aspace => checks::aspace(ops),
            Kind::Ctxswitch => checks::ctxswitch(ops),
            Kind::Pagefault => checks::pagefault(ops),
            Kind::TlbMiss { .. } => checks::tlb_walk(size.arg.unwrap_or(0) << 20, ops, rep + 1),
            Kind::Hypercall => checks::hypercall(ops),
            Kind::Ring0Loop => checks::ring0_loop(ops),
            Kind::Blk { .. } => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_names_select_their_variants() {
        let mut ids: Vec<_> = ALL.iter().map(|w| w.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), ALL.len());
        assert_eq!(select("pt-update").len(), 2);
        assert_eq!(select("tlb-miss/2m").len(), 1);
        assert!(select("nonsense").is_empty());
        assert_eq!(names(), ["pt-update", "aspace", "ctxswitch", "pagefault", "tlb-miss", "hypercall", "ring0", "blk", "blk-direct"]);
    }

    #[test]
    fn sizes_fit_the_guests_rules() {
        for w in ALL {
            for s in [w.quick, w.full] {
                assert!((1..=32).contains(&s.reps), "{}: the guest takes 1..=32 repetitions", w.id);
                if let Kind::PtUpdate { .. } = w.kind {
                    assert_eq!(s.ops % checks::PT_UPDATE_PAGES_PER_ROUND, 0, "{}", w.id);
                }
                if w.kind == Kind::Ctxswitch {
                    assert_eq!(s.ops % 2, 0);
                }
                if let Kind::TlbMiss { .. } = w.kind {
                    assert!(s.arg.is_some_and(|mib| mib.is_power_of_two() && mib << 20 < w.mem_mib() << 19));
                }
            }
        }
    }

    #[test]
    fn guest_command_line() {
        let w = select("tlb-miss/4k")[0];
        assert_eq!(w.guest_args(w.quick, 0), ["bench", "tlb-miss-4k", "3", "0", "4"]);
    }
}
