//! The engine: shadow tables built from the guest's, and kept in step with them.
//!
//! Three operations drive it, each what a trap in the VMM turns into:
//! - [`ShadowMmu::load_root`]: the guest loads an address space (`set_cr3`). Returns the
//!   machine address of its shadow PML4, from the root cache or newly built.
//! - [`ShadowMmu::guest_pt_write`]: the guest wrote one page-table entry (a trapped
//!   write). The engine stores it in the guest's table, then re-derives that entry in
//!   every shadow of that table (`reflect.rs` holds the one rule for turning a guest
//!   entry into a shadow entry).
//! - [`ShadowMmu::mmu_update`]: many writes at once (the paravirtual batch).
//!
//! The rest is in files of one idea each: `reflect.rs`, the rule for one entry;
//! `refs.rs`, which shadow tables exist and the reference counts that free them; and
//! `frames.rs`, the allocator of the shadow area's frames (fresh, free, retired until a
//! flush).
//!
//! **Bounded work per operation.** Eager building means one guest write can link a
//! subtree that needs most of the shadow area, and an `mmu_update` batch can link and
//! unlink one 256 times: measured, 22 s in one exit at 3 GiB of RAM
//! (`examples/worst_exit.rs`). So a write or a batch may build at most a *budget* of
//! shadow tables ([`ShadowMmu::build_budget`], by default as many as the area holds)
//! while keeping the shadows in step. A write that needs more is treated like a full
//! area: every shadow is dropped (`SyncOutcome::AllDropped`; the rest of the batch then
//! touches no shadow) and the caller loads the current root once, afresh. The shadow is
//! still exactly the guest's tables (it is rebuilt from them); the work of one exit is
//! at most the budget plus a few builds of one root, each at most the area. Root loads
//! are not budgeted: a build never exceeds the area, and `load_root` tries at most four.
//!
//! Every operation is all or nothing where the guest could tell the difference: a
//! shadow table whose build fails part-way is unregistered and what it linked released
//! (`shadow_of`), so a failed build leaves the engine as it was; and the root the CPU
//! runs on survives a failed `load_root` or `mmu_update` (it is kept, or built again),
//! so the guest gets its error code and runs on instead of fetching from a freed frame.

mod frames;
mod reflect;
mod refs;

use std::collections::VecDeque;

use pv_abi::addr::{GuestVirt, MachineAddr, MachineFrame, PseudoFrame, PseudoPhys, PAGE_SIZE};
use pv_abi::paging::{Pte, ENTRIES_PER_TABLE, ENTRY_SIZE, LEVELS, ROOT_LEVEL};

use crate::event::{ShadowEvent, ShadowStats};
use crate::memory::{MachineMemory, MemoryError};
use crate::p2m::P2m;
use crate::reference::{read_guest_entry, shadow_translate, Translation};
use crate::rules::ShadowConfig;
use frames::ShadowFrames;
use refs::ShadowTables;

/// Entries in a table.
const ENTRIES: usize = ENTRIES_PER_TABLE;

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShadowError {
    /// The shadow area overlaps frames of the guest.
    #[error("the shadow area overlaps machine frame {0:#x}, which holds guest memory or a device")]
    AreaOverlapsGuest(MachineFrame),
    /// A root or entry outside the page-table pool.
    #[error("pseudo-physical {0:#x} is not in the page-table pool")]
    NotInPool(PseudoPhys),
    /// The shadow area is full even after dropping every shadow.
    #[error("the shadow area is too small for one address space")]
    AreaTooSmall,
    /// Memory access failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

/// What a guest write led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The shadows were updated in place.
    Synced,
    /// The shadow area filled up and every shadow was dropped: the caller must load the
    /// current root again (its old shadow root is gone).
    AllDropped,
}

/// The machine address of the shadow table in `frame` (what CR3 is loaded with).
/// Every frame of the shadow area has one: [`ShadowMmu::new`] checks.
fn table_address(frame: MachineFrame) -> Result<MachineAddr, MemoryError> {
    frame.checked_address().ok_or(MemoryError::NoSuchEntry { table: frame, index: 0 })
}

/// The index, in its table, of the entry at `entry`.
fn entry_index(entry: PseudoPhys) -> usize {
    (entry.page_offset() / ENTRY_SIZE) as usize
}

/// The shadow-paging engine.
pub struct ShadowMmu {
    config: ShadowConfig,
    p2m: P2m,
    /// Every shadow table, and the references that keep each alive.
    tables: ShadowTables,
    /// The shadow area's frames.
    frames: ShadowFrames,
    /// Set when something the CPU may have cached from the shadow area changed in a way
    /// it would not notice by itself; cleared by `take_flush_needed`.
    flush_needed: bool,
    /// Guest roots (PML4 addresses) with a cached shadow, most recently loaded first.
    roots: VecDeque<PseudoPhys>,
    /// The guest root loaded now.
    current: Option<PseudoPhys>,
    stats: ShadowStats,
    events: Vec<ShadowEvent>,
    /// Most shadow tables one guest write or batch may build ([`ShadowMmu::build_budget`]).
    build_budget: u64,
    /// Tables built since the current write or batch began.
    built_in_operation: u64,
    /// Whether builds count against the budget now (during a write or batch, not a root load).
    budgeted: bool,
}

impl ShadowMmu {
    /// An engine with no shadows yet.
    pub fn new(config: ShadowConfig, p2m: P2m) -> Result<Self, ShadowError> {
        let guest = (0..p2m.frames()).filter_map(|f| p2m.machine_frame(PseudoFrame::new(f)));
        let devices = config.device_frames.iter().map(|(_, m)| *m);
        if let Some(m) = guest.chain(devices).find(|m| config.shadow_area.contains(m)) {
            return Err(ShadowError::AreaOverlapsGuest(m));
        }
        // Every shadow frame must have a machine address, for CR3 and for its entries.
        table_address(config.shadow_area.end)?;
        let frames = ShadowFrames::new(config.shadow_area.clone());
        let build_budget = config.shadow_area.end.raw().saturating_sub(config.shadow_area.start.raw());
        Ok(ShadowMmu {
            config,
            p2m,
            tables: ShadowTables::default(),
            frames,
            flush_needed: false,
            roots: VecDeque::new(),
            current: None,
            stats: ShadowStats::default(),
            events: Vec::new(),
            build_budget,
            built_in_operation: 0,
            budgeted: false,
        })
    }

    /// Most shadow tables one guest write ([`ShadowMmu::guest_pt_write`]) or one batch
    /// ([`ShadowMmu::mmu_update`]) may build while keeping the shadows in step; past it,
    /// every shadow is dropped and the caller loads its root again (as when the area is
    /// full). By default the area's size in frames.
    pub fn build_budget(&self) -> u64 {
        self.build_budget
    }

    /// Sets the budget (at least 1): tests use a tiny one to reach the bound often.
    pub fn set_build_budget(&mut self, tables: u64) {
        self.build_budget = tables.max(1);
    }

    /// The configuration.
    pub fn config(&self) -> &ShadowConfig {
        &self.config
    }

    /// The p2m table.
    pub fn p2m(&self) -> &P2m {
        &self.p2m
    }

    /// Counters so far.
    pub fn stats(&self) -> ShadowStats {
        self.stats
    }

    /// Events since the last call.
    pub fn drain_events(&mut self) -> Vec<ShadowEvent> {
        std::mem::take(&mut self.events)
    }

    /// Whether `frame` is a shadow table (for tests: nothing else may point here).
    pub fn is_shadow_frame(&self, frame: MachineFrame) -> bool {
        self.config.shadow_area.contains(&frame)
    }

    /// The guest root loaded last (what the CPU runs on), if any.
    pub fn current_root(&self) -> Option<PseudoPhys> {
        self.current
    }

    /// Shadow tables alive now.
    pub fn live_tables(&self) -> usize {
        self.tables.len()
    }

    /// The shadow root for guest root `root` (a pool frame), building it if needed.
    /// From now on `root` is the loaded address space.
    pub fn load_root(&mut self, mem: &mut dyn MachineMemory, root: PseudoPhys) -> Result<MachineAddr, ShadowError> {
        let frame = root.frame();
        if !self.config.pool.contains(&frame) || !root.is_aligned(PAGE_SIZE) {
            return Err(ShadowError::NotInPool(root));
        }
        if let Some(shadow) = self.tables.shadow(frame, ROOT_LEVEL) {
            self.current = Some(root);
            self.stats.root_hits += 1;
            self.roots.retain(|r| *r != root);
            self.roots.push_front(root);
            return Ok(table_address(shadow)?);
        }
        // A failed build leaves nothing behind (`shadow_of` unwinds), so each retry
        // starts from a consistent engine, and the loaded root's shadow, which CR3
        // still points at, is given up only if the new root can then be loaded instead.
        let shadow = match self.shadow_of(mem, frame, ROOT_LEVEL) {
            // First make room by forgetting the cached roots nobody runs on.
            Err(BuildError::AreaFull) => {
                self.drop_idle_roots(mem);
                self.shadow_of(mem, frame, ROOT_LEVEL)
            }
            other => other,
        };
        let shadow = match shadow {
            // Then the loaded root's own tables, if another root is being loaded: the
            // new one may fit alone. If it does not, the loaded root is built again so
            // the guest goes on where it was (its shadow may now be elsewhere:
            // `current_shadow`).
            Err(BuildError::AreaFull) if self.current.is_some_and(|c| c != root) => {
                self.drop_all();
                let result = self.shadow_of(mem, frame, ROOT_LEVEL);
                if result.is_err() {
                    self.rebuild_current(mem);
                }
                result
            }
            other => other,
        }
        .map_err(BuildError::into_error)?;
        let shadow_root = table_address(shadow)?;
        // Only a root that loaded becomes current: after a failure the CPU stays where it was.
        self.current = Some(root);
        self.cache_root(mem, root, shadow_root, shadow);
        Ok(shadow_root)
    }

    /// Puts the newly built shadow root `shadow` (at `shadow_root`) of guest root `root`
    /// in the root cache, evicting the least recently loaded roots beyond its bound.
    fn cache_root(&mut self, mem: &mut dyn MachineMemory, root: PseudoPhys, shadow_root: MachineAddr, shadow: MachineFrame) {
        self.tables.add_ref(shadow); // the root cache's reference
        self.stats.roots_built += 1;
        self.events.push(ShadowEvent::RootBuilt { guest: root, shadow: shadow_root });
        self.roots.push_front(root);
        while self.roots.len() > self.config.root_cache.max(1) {
            if let Some(old) = self.roots.pop_back() {
                self.drop_cached_root(mem, old);
                self.stats.roots_evicted += 1;
                self.events.push(ShadowEvent::RootEvicted { guest: old });
            }
        }
    }

    /// Drops every cached root except the loaded one, to make room in the area.
    fn drop_idle_roots(&mut self, mem: &mut dyn MachineMemory) {
        let idle: Vec<PseudoPhys> = self.roots.iter().copied().filter(|r| Some(*r) != self.current).collect();
        for old in idle {
            self.roots.retain(|r| *r != old);
            self.drop_cached_root(mem, old);
            self.stats.roots_evicted += 1;
            self.events.push(ShadowEvent::RootEvicted { guest: old });
        }
    }

    /// Builds the loaded root's shadow again if it has none (after every shadow was
    /// dropped to make room for a root that then did not fit). It fitted before and the
    /// guest's tables have not changed since, so in an empty area it fits again.
    fn rebuild_current(&mut self, mem: &mut dyn MachineMemory) {
        let Some(root) = self.current else { return };
        if self.tables.shadow(root.frame(), ROOT_LEVEL).is_some() {
            return;
        }
        if let Ok(shadow) = self.shadow_of(mem, root.frame(), ROOT_LEVEL) {
            if let Ok(shadow_root) = table_address(shadow) {
                self.cache_root(mem, root, shadow_root, shadow);
            }
        }
    }

    /// The machine address of the loaded root's shadow (what CR3 must hold), if it has
    /// one. After a failed [`ShadowMmu::load_root`] or [`ShadowMmu::mmu_update`] the
    /// loaded root still has its shadow, but it may have been rebuilt elsewhere.
    pub fn current_shadow(&self) -> Option<MachineAddr> {
        let root = self.current?;
        table_address(self.tables.shadow(root.frame(), ROOT_LEVEL)?).ok()
    }

    /// The guest wrote `value` to the entry at `entry` (in a pool frame): store it in the
    /// guest's table, then bring every shadow of that table up to date.
    /// At most [`ShadowMmu::build_budget`] shadow tables are built on the way; a write
    /// that needs more drops every shadow instead (`AllDropped`).
    pub fn guest_pt_write(&mut self, mem: &mut dyn MachineMemory, entry: PseudoPhys, value: Pte) -> Result<SyncOutcome, ShadowError> {
        self.built_in_operation = 0;
        self.budgeted_write(mem, entry, value)
    }

    /// [`ShadowMmu::guest_pt_write`] within the current operation's budget.
    fn budgeted_write(&mut self, mem: &mut dyn MachineMemory, entry: PseudoPhys, value: Pte) -> Result<SyncOutcome, ShadowError> {
        self.budgeted = true;
        let result = self.unbudgeted_write(mem, entry, value);
        self.budgeted = false;
        result
    }

    fn unbudgeted_write(&mut self, mem: &mut dyn MachineMemory, entry: PseudoPhys, value: Pte) -> Result<SyncOutcome, ShadowError> {
        if !self.config.is_pool_entry(entry) {
            return Err(ShadowError::NotInPool(entry));
        }
        let table = entry.page_start();
        let frame = entry.frame();
        let index = (entry.page_offset() / ENTRY_SIZE) as usize;
        let machine = self.p2m.machine_frame(frame).ok_or(ShadowError::NotInPool(entry))?;
        mem.write_entry(machine, index, value)?;
        self.stats.guest_writes += 1;
        // A cached root that is not loaded is not kept in step: a kernel writes the PML4
        // of an idle address space mostly to build or tear it down, so the cached shadow
        // is dropped and built afresh if that space is ever loaded again.
        if self.roots.contains(&table) && self.current != Some(table) {
            self.roots.retain(|r| *r != table);
            self.drop_cached_root(mem, table);
            self.stats.roots_invalidated += 1;
            self.events.push(ShadowEvent::RootInvalidated { guest: table });
        }
        self.sync_shadows(mem, entry, value)
    }

    /// A trapped write stored `value` at guest entry `entry`: re-derive that entry in
    /// every shadow of its table (one per level the table is used at). If the shadow
    /// area fills up, every shadow is dropped and the caller must load its root again.
    fn sync_shadows(&mut self, mem: &mut dyn MachineMemory, entry: PseudoPhys, value: Pte) -> Result<SyncOutcome, ShadowError> {
        // LAB 4 BEGIN: sync every shadow of the written table: reflect the new entry at each level the table is shadowed at
        let frame = entry.frame();
        let index = (entry.page_offset() / ENTRY_SIZE) as usize;
        let mut updated = 0;
        for level in 1..=LEVELS {
            let Some(shadow) = self.tables.shadow(frame, level) else { continue };
            let new = match self.reflect(mem, value, level) {
                Ok(e) => e,
                Err(BuildError::AreaFull) => {
                    self.drop_all();
                    return Ok(SyncOutcome::AllDropped);
                }
                Err(e) => return Err(e.into_error()),
            };
            self.replace_shadow_entry(mem, shadow, index, new, level)?;
            updated += 1;
            self.stats.shadow_syncs += 1;
        }
        self.events.push(ShadowEvent::Synced { entry, value, shadows: updated });
        Ok(SyncOutcome::Synced)
        // LAB 4 STUB: let _ = (mem, entry, value, LEVELS, Self::reflect, Self::replace_shadow_entry, Self::drop_all);
        // LAB 4 STUB: todo!("lab 4: sync every shadow of the written table after a trapped write: ShadowMmu::sync_shadows")
        // LAB 4 END
    }

    /// Stores `new` (already reflected) at `index` of shadow table `shadow` at `level`,
    /// in place of what was there: a present entry that changed means the CPU may hold
    /// a stale translation, and the lower shadow table the old entry pointed at loses a
    /// reference.
    fn replace_shadow_entry(&mut self, mem: &mut dyn MachineMemory, shadow: MachineFrame, index: usize, new: Pte, level: u32) -> Result<(), ShadowError> {
        // LAB 4 BEGIN: replace one shadow entry: note a needed flush if a present entry changed, then release the old child
        let old = match mem.read_entry(shadow, index).and_then(|old| mem.write_entry(shadow, index, new).map(|()| old)) {
            Ok(old) => old,
            Err(e) => {
                // `new` is stored nowhere: the reference `reflect` took for it goes back.
                self.release_child(mem, new, level);
                return Err(e.into());
            }
        };
        if old.is_present() && old != new {
            // A translation the CPU may hold was changed or removed.
            self.flush_needed = true;
            self.stats.entries_changed += 1;
        }
        // Only now may the old child go: if it is also the new one, the reference
        // `reflect` just took keeps it alive.
        self.release_child(mem, old, level);
        Ok(())
        // LAB 4 STUB: let _ = (mem, shadow, index, new, level, Self::release_child);
        // LAB 4 STUB: todo!("lab 4: replace one shadow entry (flush if a present entry changed, release the old child): ShadowMmu::replace_shadow_entry")
        // LAB 4 END
    }

    /// Applies a batch of writes; all entries are checked first, so a bad batch changes
    /// nothing. Returns the outcome of the whole batch: `AllDropped` if the area filled
    /// on the way, in which case the loaded root's shadow was built again (CR3 must be
    /// loaded with [`ShadowMmu::current_shadow`]).
    ///
    /// If the batch grows the loaded address space beyond what the area can hold, the
    /// whole batch is undone in the guest's tables, the loaded root is built again as it
    /// was, and the error is `AreaTooSmall`: the guest gets E2BIG and runs on (CR3 must
    /// then be loaded with `current_shadow` too).
    pub fn mmu_update(&mut self, mem: &mut dyn MachineMemory, updates: &[(PseudoPhys, Pte)]) -> Result<SyncOutcome, ShadowError> {
        if let Some((bad, _)) = updates.iter().find(|(e, _)| !self.config.is_pool_entry(*e)) {
            return Err(ShadowError::NotInPool(*bad));
        }
        // What each entry held before, to undo the batch with (read before it is written:
        // a batch may write one entry twice).
        let mut before = Vec::with_capacity(updates.len());
        let mut outcome = SyncOutcome::Synced;
        // One budget for the whole batch: it is one exit.
        self.built_in_operation = 0;
        for (entry, value) in updates {
            before.push((*entry, read_guest_entry(mem, &self.p2m, entry.frame(), entry_index(*entry)).unwrap_or(Pte::EMPTY)));
            if self.budgeted_write(mem, *entry, *value)? == SyncOutcome::AllDropped {
                outcome = SyncOutcome::AllDropped;
            }
        }
        let Some(root) = self.current.filter(|_| outcome == SyncOutcome::AllDropped) else { return Ok(outcome) };
        if let Err(e) = self.load_root(mem, root) {
            // Every shadow is gone (the area filled, and the failed build left nothing),
            // so the guest's tables can be put back with plain stores, newest first.
            for (entry, old) in before.iter().rev() {
                let machine = self.p2m.machine_frame(entry.frame()).ok_or(ShadowError::NotInPool(*entry))?;
                mem.write_entry(machine, entry_index(*entry), *old)?;
            }
            self.load_root(mem, root)?;
            return Err(e);
        }
        Ok(outcome)
    }

    /// Translates through a shadow root, as the CPU would.
    pub fn translate_shadow(&self, mem: &dyn MachineMemory, root: MachineAddr, va: GuestVirt) -> Option<Translation> {
        shadow_translate(mem, root, va)
    }

    /// Shadow tables that no cached root reaches (for tests: it must always be 0, or
    /// the reference counts are wrong and shadow memory leaks).
    pub fn unreachable_tables(&self, mem: &dyn MachineMemory) -> usize {
        self.tables.unreachable(mem, self.roots.iter().map(|r| r.frame()))
    }

    /// The shadow of guest table `frame` used at `level`, built (completely) if needed.
    /// The caller takes a reference to it. All or nothing: if the build fails part-way
    /// (the area is full, or memory cannot be written), the half-built table is
    /// unregistered and what it already linked is released, so the engine is as it was.
    fn shadow_of(&mut self, mem: &mut dyn MachineMemory, frame: PseudoFrame, level: u32) -> Result<MachineFrame, BuildError> {
        if let Some(s) = self.tables.shadow(frame, level) {
            return Ok(s);
        }
        if self.budgeted && self.built_in_operation >= self.build_budget {
            // Past the budget a write does no more eager work: to the caller this is a
            // full area (every shadow dropped, the root loaded afresh, once).
            self.stats.budget_spent += 1;
            return Err(BuildError::AreaFull);
        }
        self.built_in_operation += 1;
        let shadow = self.alloc_shadow(mem)?;
        // Registered before it is filled: a guest table that reaches itself again lower
        // down is at another level, so this never recurses forever (levels only fall),
        // and nothing can take a reference to this table while it is being filled.
        self.tables.insert(frame, level, shadow);
        self.stats.tables_built += 1;
        if let Err(e) = self.fill(mem, frame, level, shadow) {
            self.release_table(mem, shadow);
            return Err(e);
        }
        Ok(shadow)
    }

    /// Fills the new shadow table `shadow` of guest table `frame` at `level`.
    fn fill(&mut self, mem: &mut dyn MachineMemory, frame: PseudoFrame, level: u32, shadow: MachineFrame) -> Result<(), BuildError> {
        for index in 0..ENTRIES {
            let guest = read_guest_entry(mem, &self.p2m, frame, index).unwrap_or(Pte::EMPTY);
            let entry = self.reflect(mem, guest, level)?;
            if entry != Pte::EMPTY {
                if let Err(e) = mem.write_entry(shadow, index, entry) {
                    // The reference `reflect` took is not stored anywhere: give it back.
                    self.release_child(mem, entry, level);
                    return Err(BuildError::Memory(e));
                }
            }
        }
        Ok(())
    }

    /// Drops a reference to shadow table `shadow` (the last one, for a table being
    /// unwound), freeing what nothing reaches any more.
    fn release_table(&mut self, mem: &mut dyn MachineMemory, shadow: MachineFrame) {
        self.stats.tables_freed += self.tables.release(mem, &mut self.frames, shadow);
    }

    /// A shadow entry `old` at `level` was overwritten: drop its reference to the lower
    /// shadow table it pointed at, if any (freeing what nothing reaches any more).
    fn release_child(&mut self, mem: &mut dyn MachineMemory, old: Pte, level: u32) {
        self.stats.tables_freed += self.tables.release_child(mem, &mut self.frames, old, level);
    }

    /// Forgets cached root `guest` (already taken out of `roots`).
    fn drop_cached_root(&mut self, mem: &mut dyn MachineMemory, guest: PseudoPhys) {
        if let Some(shadow) = self.tables.shadow(guest.frame(), ROOT_LEVEL) {
            self.release_table(mem, shadow);
        }
    }

    /// A zeroed frame for a new shadow table; recycles the retired frames first when
    /// nothing else is left.
    fn alloc_shadow(&mut self, mem: &mut dyn MachineMemory) -> Result<MachineFrame, BuildError> {
        if self.frames.recycle_due() {
            self.frames.recycle();
            // The CPU must forget translations cached from shadow tables before the
            // guest runs on a reused frame.
            self.flush_needed = true;
            self.stats.recycles += 1;
            self.events.push(ShadowEvent::AreaRecycled);
        }
        self.frames.alloc(mem)
    }

    /// Whether, since the last call, a shadow entry the CPU may have cached was changed
    /// or removed, or freed shadow frames were made reusable. If so, the caller must make
    /// the CPU drop everything it cached from the shadow area before the guest runs again.
    ///
    /// Why this is needed beyond the guest's own `invlpg`: a CPU with a TLB only caches
    /// translations, and `invlpg` or a CR3 load drops them. But where KVM itself
    /// implements the guest's paging in software (hosts without EPT/NPT, nested setups,
    /// the PVM development machines), KVM keeps its own shadow of *our* shadow tables,
    /// keyed by frame, across `invlpg` and CR3 loads. It keeps that copy right by
    /// write-protecting the tables against the guest; writes from the host side, which is
    /// where hv writes, go unnoticed. Measured on the development host: pages unmapped
    /// this way stayed readable, and a frame reused at once for another table gave wrong
    /// translations. Entries that only become present need nothing (nothing was cached),
    /// and freed frames are reused in bulk (a recycle) so that this happens rarely.
    pub fn take_flush_needed(&mut self) -> bool {
        std::mem::take(&mut self.flush_needed)
    }

    /// Forgets every shadow (the area is full): they are rebuilt on the next root load.
    fn drop_all(&mut self) {
        self.tables.clear();
        self.roots.clear();
        self.frames.reset();
        self.flush_needed = true;
        self.stats.all_dropped += 1;
        self.events.push(ShadowEvent::AllDropped);
    }
}

/// Why building a shadow stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// No free frame in the shadow area.
    AreaFull,
    /// Memory access failed.
    Memory(MemoryError),
}

impl BuildError {
    fn into_error(self) -> ShadowError {
        match self {
            BuildError::AreaFull => ShadowError::AreaTooSmall,
            BuildError::Memory(e) => ShadowError::Memory(e),
        }
    }
}

#[cfg(test)]
mod tests;
