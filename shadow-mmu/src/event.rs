//! What the engine reports: events for the trace, and counters for `--stats`.

use pv_abi::addr::{MachineAddr, PseudoPhys};
use pv_abi::paging::Pte;

/// Why a guest entry was not reflected into the shadow (the shadow entry is then not
/// present, so the guest takes a page fault on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// It points at a frame the guest does not have.
    OutsideGuest,
    /// It points at a lower-level page table that is not in the page-table pool.
    TableOutsidePool,
    /// Bits 52..62 are set.
    ReservedBits,
    /// A 1 GiB page (not supported).
    HugePage,
    /// A 2 MiB page whose address is not 2 MiB-aligned.
    Misaligned,
    /// A 2 MiB page whose frames are not contiguous in machine memory.
    NotContiguous,
}

impl Refusal {
    /// Name for traces.
    pub const fn name(self) -> &'static str {
        match self {
            Refusal::OutsideGuest => "outside-guest-memory",
            Refusal::TableOutsidePool => "table-outside-pool",
            Refusal::ReservedBits => "reserved-bits",
            Refusal::HugePage => "1gib-page",
            Refusal::Misaligned => "misaligned-large-page",
            Refusal::NotContiguous => "large-page-not-contiguous",
        }
    }
}

/// One thing the engine did that teaches something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShadowEvent {
    /// A shadow root was built for a guest root.
    RootBuilt {
        /// The guest's PML4.
        guest: PseudoPhys,
        /// Its shadow.
        shadow: MachineAddr,
    },
    /// A cached root was dropped to stay within the cache bound.
    RootEvicted {
        /// The guest's PML4.
        guest: PseudoPhys,
    },
    /// A cached root that was not loaded had its PML4 written, and was dropped.
    RootInvalidated {
        /// The guest's PML4.
        guest: PseudoPhys,
    },
    /// A guest entry was refused.
    Refused {
        /// The entry.
        value: Pte,
        /// Its level (4 = PML4 … 1 = PT).
        level: u32,
        /// Why.
        why: Refusal,
    },
    /// A writable guest mapping of a page-table frame was reflected read-only.
    WriteProtected {
        /// The guest's entry (before it was made read-only).
        value: Pte,
    },
    /// A guest page-table write was applied and its shadows re-derived.
    Synced {
        /// The entry written.
        entry: PseudoPhys,
        /// The new entry.
        value: Pte,
        /// How many shadow tables of that guest table were updated.
        shadows: u32,
    },
    /// The shadow area filled up and every shadow was dropped.
    AllDropped,
    /// Fresh shadow frames ran out, and frames freed earlier were made reusable.
    AreaRecycled,
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShadowStats {
    /// Guest page-table writes applied (trapped writes and mmu_update entries).
    pub guest_writes: u64,
    /// Shadow entries re-derived because of them.
    pub shadow_syncs: u64,
    /// Shadow tables built.
    pub tables_built: u64,
    /// Shadow roots built.
    pub roots_built: u64,
    /// Root loads served from the cache.
    pub root_hits: u64,
    /// Roots evicted from the cache to stay within its bound.
    pub roots_evicted: u64,
    /// Cached roots dropped because the guest wrote their PML4 while they were not loaded.
    pub roots_invalidated: u64,
    /// Shadow tables freed because nothing reached them any more.
    pub tables_freed: u64,
    /// Entries refused.
    pub refused: u64,
    /// Writable mappings of page-table frames made read-only.
    pub write_protected: u64,
    /// Times the shadow area filled and was emptied.
    pub all_dropped: u64,
    /// Times freed shadow frames were made reusable in bulk.
    pub recycles: u64,
    /// Present shadow entries changed or removed (each needs the CPU's cached copy gone).
    pub entries_changed: u64,
    /// Guest writes or batches that reached the build budget, so every shadow was
    /// dropped instead of building more (`ShadowMmu::build_budget`).
    pub budget_spent: u64,
}
