//! Shadow mode's counters, kept by [`super::ShadowPaging`] and shown by `--stats` and
//! `hv bench`.

/// Shadow mode's counters: the work the VMM does that EPT does in hardware.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShadowCounters {
    /// Guest page-table stores that hit the read-only pool and exited as MMIO.
    pub trapped_pt_writes: u64,
    /// Shadow entries re-derived after a guest page-table change (trapped or batched).
    pub shadow_syncs: u64,
    /// `set_cr3` hypercalls served.
    pub cr3_loads: u64,
    /// Shadow roots built (cache misses).
    pub roots_built: u64,
    /// `set_cr3` served from the root cache.
    pub root_hits: u64,
    /// Roots evicted to keep the cache within its bound.
    pub roots_evicted: u64,
    /// Cached roots dropped because the guest rewrote them while they were not loaded.
    pub roots_invalidated: u64,
    /// Shadow tables built.
    pub tables_built: u64,
    /// Shadow tables freed (nothing reached them any more).
    pub tables_freed: u64,
    /// Times freed shadow frames were recycled in bulk.
    pub recycles: u64,
    /// Present shadow entries changed or removed.
    pub entries_changed: u64,
    /// Guest entries refused by the isolation rules.
    pub refused: u64,
    /// Page-table writes or batches that reached the engine's build budget (every
    /// shadow dropped and the root built afresh instead: docs/memory-modes.md).
    pub budget_spent: u64,
}
