//! `--stats`: counters for one run, printed as a table when the guest stops.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use pv_abi::hypercall::GuestCounters;
use pv_abi::MmuMode;

use crate::devices::DeviceStats;
use crate::trace::ExitReason;

/// What one run did.
#[derive(Clone, Debug)]
pub struct RunStats {
    started: Instant,
    /// Start of hv to the guest's first complete console line.
    pub first_console_line: Option<Duration>,
    /// Start of hv to the guest's stop.
    pub wall: Duration,
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
    /// Each device backend's counters.
    pub devices: DeviceStats,
    /// Times KVM was made to forget cached translations (a memslot removed and re-added).
    pub translation_flushes: u64,
    /// The memory mode the guest ran in.
    pub mmu: MmuMode,
    /// What the guest counted itself (handed over with `shutdown`), if it reported.
    pub guest: Option<GuestCounters>,
    /// What the shadow-paging engine did (shadow mode only).
    pub shadow: Option<ShadowCounters>,
}

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
}

impl RunStats {
    /// Counters starting at `started` (when hv started).
    pub fn new(started: Instant) -> Self {
        RunStats {
            started,
            first_console_line: None,
            wall: Duration::ZERO,
            exits: BTreeMap::new(),
            hypercalls: BTreeMap::new(),
            hypercall_errors: 0,
            mmu_update_entries: 0,
            doorbell_exits: 0,
            devices: Vec::new(),
            translation_flushes: 0,
            mmu: MmuMode::Ept,
            guest: None,
            shadow: None,
        }
    }

    /// Counts one exit.
    pub fn count_exit(&mut self, reason: ExitReason) {
        *self.exits.entry(reason).or_default() += 1;
    }

    /// Counts one hypercall.
    pub fn count_hypercall(&mut self, name: &'static str, failed: bool) {
        *self.hypercalls.entry(name).or_default() += 1;
        self.hypercall_errors += u64::from(failed);
    }

    /// Records the end of the run and the time of the first console line.
    pub fn finish(&mut self, first_line_at: Option<Instant>) {
        self.wall = self.started.elapsed();
        self.first_console_line = first_line_at.map(|t| t.duration_since(self.started));
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

impl RunStats {
    /// The memory-mode section: what the VMM did for the MMU, and what the guest counted.
    fn fmt_memory(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f)?;
        write!(f, "  memory mode {}", self.mmu.name())?;
        if let Some(c) = &self.shadow {
            writeln!(f)?;
            writeln!(f, "    {:<30} {:>12}", "trapped page-table writes", c.trapped_pt_writes)?;
            writeln!(f, "    {:<30} {:>12}", "shadow entries synced", c.shadow_syncs)?;
            writeln!(f, "    {:<30} {:>12}", "CR3 loads (set_cr3)", c.cr3_loads)?;
            writeln!(f, "    {:<30} {:>12}", "shadow roots built", c.roots_built)?;
            writeln!(f, "    {:<30} {:>12}", "shadow roots from the cache", c.root_hits)?;
            writeln!(f, "    {:<30} {:>12}", "shadow roots evicted", c.roots_evicted)?;
            writeln!(f, "    {:<30} {:>12}", "idle shadow roots dropped", c.roots_invalidated)?;
            writeln!(f, "    {:<30} {:>12}", "shadow tables built / freed", format!("{} / {}", c.tables_built, c.tables_freed))?;
            writeln!(f, "    {:<30} {:>12}", "present shadow entries changed", c.entries_changed)?;
            writeln!(f, "    {:<30} {:>12}", "shadow area recycled", c.recycles)?;
            write!(f, "    {:<30} {:>12}", "guest entries refused", c.refused)?;
        } else {
            writeln!(f)?;
            write!(f, "    {:<30} {:>12}", "trapped page-table writes", "0 (none trap)")?;
        }
        writeln!(f)?;
        write!(f, "    {:<30} {:>12}", "KVM translation flushes", self.translation_flushes)?;
        if let Some(g) = &self.guest {
            writeln!(f)?;
            writeln!(f, "    {:<30} {:>12}", "guest page faults", g.page_faults)?;
            writeln!(f, "    {:<30} {:>12}", "guest CR3 loads", g.cr3_loads)?;
            writeln!(f, "    {:<30} {:>12}", "guest system calls", g.syscalls)?;
            writeln!(f, "    {:<30} {:>12}", "guest direct page-table writes", g.direct_pt_writes)?;
            write!(f, "    {:<30} {:>12}", "guest batched page-table writes", g.batched_pt_writes)?;
        }
        Ok(())
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

impl fmt::Display for RunStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "hv stats")?;
        writeln!(f, "  {:<32} {:>12}", "wall time", ms(self.wall))?;
        let first = self.first_console_line.map_or("(no line)".into(), ms);
        writeln!(f, "  {:<32} {:>12}", "start to first console line", first)?;
        writeln!(f, "  {:<32} {:>12}", "VM exits", self.total_exits())?;
        for (reason, n) in &self.exits {
            writeln!(f, "    {:<30} {:>12}", reason.name(), n)?;
        }
        writeln!(f, "  {:<32} {:>12}", "hypercalls", self.total_hypercalls())?;
        for (name, n) in &self.hypercalls {
            writeln!(f, "    {:<30} {:>12}", name, n)?;
        }
        writeln!(f, "  {:<32} {:>12}", "hypercalls refused (error code)", self.hypercall_errors)?;
        write!(f, "  {:<32} {:>12}", "page-table entries via mmu_update", self.mmu_update_entries)?;
        self.fmt_memory(f)?;
        for (name, d) in &self.devices {
            writeln!(f)?;
            writeln!(f, "  device {name}")?;
            writeln!(f, "    {:<30} {:>12}", "doorbells (guest → backend)", d.doorbells)?;
            writeln!(f, "    {:<30} {:>12}", "backend wake-ups", d.wakeups)?;
            writeln!(f, "    {:<30} {:>12}", "requests", d.requests)?;
            writeln!(f, "    {:<30} {:>12}", "upcalls (backend → guest)", d.notifications)?;
            writeln!(f, "    {:<30} {:>12}", "upcalls suppressed", d.notifications_suppressed)?;
            writeln!(f, "    {:<30} {:>12}", "failed requests", d.failed_requests)?;
            writeln!(f, "    {:<30} {:>12}", "grant refusals", d.grant_refusals)?;
            write!(f, "    {:<30} {:>12}", "bytes guest ↔ device", d.bytes_to_guest + d.bytes_from_guest)?;
        }
        if !self.devices.is_empty() {
            writeln!(f)?;
            write!(f, "  {:<32} {:>12}", "doorbell exits to the vCPU loop", self.doorbell_exits)?;
        }
        Ok(())
    }
}
