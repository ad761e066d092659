//! Shadow mode (`hv run --mmu shadow`): hv, not KVM's two-dimensional paging, decides
//! what the guest's virtual addresses reach.
//!
//! The idea (course notes: "shadow page tables"): the guest keeps writing ordinary page
//! tables, but they map virtual addresses to *pseudo-physical* frames, and the CPU never
//! walks them. hv builds a second set, the **shadow**, mapping the same virtual
//! addresses straight to machine frames, and loads *that* into CR3. To keep the shadow
//! right, hv must see every change the guest makes to its tables:
//!
//! 1. **Trapped writes.** The page-table pool is a read-only memslot ([`layout`]), so a
//!    guest store to a page table exits to hv as KVM_EXIT_MMIO with the address and the
//!    bytes. [`ShadowPaging::trapped_write`] applies it to the guest's table and re-derives
//!    every shadow entry it affects (the `shadow-mmu` engine).
//! 2. **Batched writes.** `mmu_update` brings many writes in one exit
//!    ([`ShadowPaging::mmu_update`]): the paravirtual way to pay for shadow paging.
//! 3. **Address-space switches.** The guest cannot load CR3 itself (it would name a
//!    pseudo-physical table the CPU must not walk); it asks with the `set_cr3`
//!    hypercall, and hv points CR3 at the cached shadow of that root
//!    ([`ShadowPaging::load_root`]).
//!
//! EPT/NPT make all of this unnecessary: the hardware walks both tables on a TLB miss.
//! `hv bench` measures the difference.
//!
//! A limit worth knowing: hv runs in user space and KVM delivers the guest's page faults
//! straight to the guest. So hv cannot use the classic trick of write-protecting page
//! tables *in the shadow* and catching the fault; the read-only memslot does the
//! protecting instead, and the shadow keeps the guest's write permission on pool frames
//! (`ShadowConfig::pool_traps_writes`): a store through such a mapping reaches the
//! read-only slot and exits, so it still never reaches the frame.

pub mod counters;
pub mod layout;
pub mod memory;

use shadow_mmu::shadow::SyncOutcome;
use shadow_mmu::{ShadowConfig, ShadowError, ShadowEvent, ShadowMmu};
use vm_memory::GuestMemoryMmap;

use pv_abi::layout::LOCAL_APIC_GPA;

use pv_abi::addr::{MachineAddr, PseudoPhys};
use pv_abi::paging::{Pte, ENTRY_SIZE};

use crate::kvm::{MemoryPlan, MemorySlot, SlotMemory};
use crate::memory::GuestRam;
pub use counters::ShadowCounters;
use layout::{Backing, MachineLayout};
use memory::MachineView;

/// Most shadow roots cached at once: enough for every task the guest runs at a time
/// plus the kernel's own, small enough that eviction shows up in traces of bigger runs.
pub const ROOT_CACHE: usize = 8;

/// Why shadow mode could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ShadowSetupError {
    /// The shadow area could not be allocated.
    #[error("could not allocate the shadow area: {0}")]
    Area(#[from] vm_memory::mmap::FromRangesError),
    /// The engine refused the configuration.
    #[error("shadow paging setup: {0}")]
    Engine(#[from] ShadowError),
}

/// A guest store that reached the read-only page-table pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrappedWrite {
    /// Pseudo-physical address of the (first) entry written.
    pub entry: PseudoPhys,
    /// Its new value.
    pub value: Pte,
    /// `Some(machine root)` if every shadow was dropped and CR3 must be reloaded.
    pub reload: Option<MachineAddr>,
}

/// What an MMIO write in shadow mode was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioWrite {
    /// A page-table write, applied.
    PageTable(TrappedWrite),
    /// A store to the shadow area: only a guest that built its own page tables behind
    /// hv's back can do that. Refused (the memory is unchanged).
    ShadowArea,
    /// Not a page-table-pool or shadow-area address.
    Elsewhere,
}

/// Shadow paging for one VM.
pub struct ShadowPaging {
    layout: MachineLayout,
    area: GuestMemoryMmap,
    engine: ShadowMmu,
    trapped_writes: u64,
    cr3_loads: u64,
}

impl ShadowPaging {
    /// Shadow paging for `ram_bytes` of guest RAM.
    pub fn new(ram_bytes: u64) -> Result<Self, ShadowSetupError> {
        let layout = MachineLayout::new(ram_bytes);
        let area = memory::allocate_area(&layout)?;
        let area_end = layout::SHADOW_AREA_BASE.checked_add(layout.shadow_bytes).ok_or(ShadowError::AreaTooSmall)?;
        let config = ShadowConfig {
            pool: layout.pool.start.frame()..layout.pool.end.frame(),
            shadow_area: layout::SHADOW_AREA_BASE.frame()..area_end.frame(),
            root_cache: ROOT_CACHE,
            pool_traps_writes: true,
            // The local APIC's register page sits at the same address in both worlds.
            device_frames: vec![(PseudoPhys::new(LOCAL_APIC_GPA).frame(), MachineAddr::new(LOCAL_APIC_GPA).frame())],
        };
        let engine = ShadowMmu::new(config, layout.p2m())?;
        Ok(ShadowPaging { layout, area, engine, trapped_writes: 0, cr3_loads: 0 })
    }

    /// Where guest memory sits in the machine.
    pub fn layout(&self) -> &MachineLayout {
        &self.layout
    }

    /// The shadow area's memory.
    pub fn area(&self) -> &GuestMemoryMmap {
        &self.area
    }

    /// Shadow mode's memory slots, for KVM: RAM scattered over machine addresses, the
    /// page-table pool and the shadow area read-only (see [`layout`]). The CPU walks
    /// the tables in the shadow area.
    pub fn memory_plan(&self) -> MemoryPlan {
        let slots = self
            .layout
            .slots()
            .iter()
            .map(|slot| MemorySlot {
                guest_phys: slot.machine,
                size: slot.size,
                memory: match slot.backing {
                    Backing::Ram { pseudo } => SlotMemory::Ram { offset: pseudo.raw() },
                    Backing::ShadowArea => SlotMemory::Area { offset: 0 },
                },
                read_only: slot.read_only,
                holds_walked_tables: self.layout.in_shadow_area(slot.machine),
            })
            .collect();
        MemoryPlan { slots, area: Some(self.area.clone()) }
    }

    fn view<'a>(layout: &'a MachineLayout, area: &'a GuestMemoryMmap, ram: &'a GuestRam) -> MachineView<'a> {
        MachineView { ram, area, layout }
    }

    /// The guest's own root that CR3's shadow stands for (pseudo-physical), once one
    /// was loaded: what a snapshot saves instead of CR3.
    pub fn guest_root(&self) -> Option<PseudoPhys> {
        self.engine.current_root()
    }

    /// Loads guest root `root` (pseudo-physical): returns the machine address of its
    /// shadow, for CR3. If it fails (`AreaTooSmall`: the root's tables do not fit in the
    /// shadow area), the root loaded before stays loaded, with a shadow at
    /// [`ShadowPaging::current_cr3`].
    pub fn load_root(&mut self, ram: &GuestRam, root: PseudoPhys) -> Result<MachineAddr, ShadowError> {
        let mut view = Self::view(&self.layout, &self.area, ram);
        let shadow = self.engine.load_root(&mut view, root)?;
        self.cr3_loads += 1;
        Ok(shadow)
    }

    /// A guest store of `data` at machine address `machine` exited as MMIO.
    pub fn trapped_write(&mut self, ram: &GuestRam, machine: MachineAddr, data: &[u8]) -> Result<MmioWrite, ShadowError> {
        if self.layout.in_shadow_area(machine) {
            return Ok(MmioWrite::ShadowArea);
        }
        let Some(pseudo) = self.layout.pseudo_of(machine).filter(|p| self.layout.pool.contains(p)) else {
            return Ok(MmioWrite::Elsewhere);
        };
        self.trapped_writes += 1;
        // A store may be narrower than an entry, or straddle two: merge it into each
        // 8-byte entry it touches and apply those whole. Every entry is worked out and
        // checked before any is applied, so a store straddling the end of the pool
        // changes nothing (all or nothing, like an `mmu_update` batch).
        let writes = self.merge_store(ram, pseudo, data)?;
        let mut dropped = false;
        for (entry, value) in &writes {
            let mut view = Self::view(&self.layout, &self.area, ram);
            dropped |= self.engine.guest_pt_write(&mut view, *entry, *value)? == SyncOutcome::AllDropped;
        }
        let (entry, value) = writes.first().copied().unwrap_or((pseudo, Pte::EMPTY));
        let reload = if dropped { self.reload_current(ram)? } else { None };
        Ok(MmioWrite::PageTable(TrappedWrite { entry, value, reload }))
    }

    /// The whole entries a store of `data` at pool address `pseudo` makes: (entry, new
    /// value) for each entry it touches, every one of them in the pool. Offsets are in
    /// bytes from the first entry touched; an MMIO exit's data is at most 8 bytes, so a
    /// store touches at most two entries.
    fn merge_store(&self, ram: &GuestRam, pseudo: PseudoPhys, data: &[u8]) -> Result<Vec<(PseudoPhys, Pte)>, ShadowError> {
        let store_at = pseudo.page_offset() % ENTRY_SIZE;
        let first_entry = pseudo.checked_sub(store_at).ok_or(ShadowError::NotInPool(pseudo))?;
        let store_end = store_at + data.len() as u64;
        let mut writes = Vec::with_capacity(2);
        let mut entry_offset = 0;
        while entry_offset < store_end {
            let entry = first_entry.checked_add(entry_offset).ok_or(ShadowError::NotInPool(pseudo))?;
            if !self.layout.pool.contains(&entry) {
                return Err(ShadowError::NotInPool(entry));
            }
            let mut bytes = ram.read_u64(entry).map_err(|_| ShadowError::NotInPool(entry))?.to_le_bytes();
            for (i, b) in bytes.iter_mut().enumerate() {
                let at = entry_offset + i as u64;
                if (store_at..store_end).contains(&at) {
                    *b = data[(at - store_at) as usize];
                }
            }
            writes.push((entry, Pte::from_raw(u64::from_le_bytes(bytes))));
            entry_offset += ENTRY_SIZE;
        }
        Ok(writes)
    }

    /// `mmu_update` in shadow mode: the batch of (entry, value) goes through the
    /// engine. Returns the new CR3 if every shadow was dropped on the way.
    ///
    /// A batch that would grow the loaded address space past the shadow area is undone
    /// and refused (`AreaTooSmall`); the loaded root keeps a shadow, which may have
    /// moved: the caller loads [`ShadowPaging::current_cr3`] then.
    pub fn mmu_update(&mut self, ram: &GuestRam, updates: &[(PseudoPhys, Pte)]) -> Result<Option<MachineAddr>, ShadowError> {
        let mut view = Self::view(&self.layout, &self.area, ram);
        match self.engine.mmu_update(&mut view, updates)? {
            // The engine has already built the loaded root again.
            SyncOutcome::AllDropped => Ok(self.engine.current_shadow()),
            SyncOutcome::Synced => Ok(None),
        }
    }

    /// The machine address CR3 must hold for the loaded guest root, if one is loaded
    /// and has a shadow. A failed `set_cr3` or `mmu_update` leaves the loaded root with a
    /// shadow, but possibly a rebuilt one elsewhere: the caller compares this before
    /// and after, and loads CR3 again if it moved.
    pub fn current_cr3(&self) -> Option<MachineAddr> {
        self.engine.current_shadow()
    }

    /// After a drop-all the loaded shadow root is gone: build the current one again.
    fn reload_current(&mut self, ram: &GuestRam) -> Result<Option<MachineAddr>, ShadowError> {
        let Some(root) = self.engine.current_root() else { return Ok(None) };
        let mut view = Self::view(&self.layout, &self.area, ram);
        Ok(Some(self.engine.load_root(&mut view, root)?))
    }

    /// Whether a shadow entry the CPU may have cached changed, or shadow frames were
    /// recycled, since the last call: then the vCPU must not run again before KVM has
    /// forgotten what it cached ([`crate::kvm::KvmVm::forget_cached_translations`];
    /// the reason is at `ShadowMmu::take_flush_needed`).
    pub fn take_flush_needed(&mut self) -> bool {
        self.engine.take_flush_needed()
    }

    /// The engine's events since the last call, for the trace.
    pub fn drain_events(&mut self) -> Vec<ShadowEvent> {
        self.engine.drain_events()
    }

    /// Counters for `--stats`.
    pub fn counters(&self) -> ShadowCounters {
        let s = self.engine.stats();
        ShadowCounters {
            trapped_pt_writes: self.trapped_writes,
            shadow_syncs: s.shadow_syncs,
            cr3_loads: self.cr3_loads,
            roots_built: s.roots_built,
            root_hits: s.root_hits,
            roots_evicted: s.roots_evicted,
            roots_invalidated: s.roots_invalidated,
            tables_built: s.tables_built,
            tables_freed: s.tables_freed,
            recycles: s.recycles,
            entries_changed: s.entries_changed,
            refused: s.refused,
            budget_spent: s.budget_spent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use layout::SHADOW_AREA_BASE;

    const RAM: u64 = 8 << 20;

    fn setup() -> (GuestRam, ShadowPaging, PseudoPhys) {
        let ram = GuestRam::new(RAM).unwrap();
        let mut shadow = ShadowPaging::new(RAM).unwrap();
        let root = shadow.layout().pool.start;
        shadow.load_root(&ram, root).unwrap();
        (ram, shadow, root)
    }

    #[test]
    fn a_narrow_store_is_merged_into_its_entry() {
        let (ram, mut shadow, root) = setup();
        let at = |bytes: u64| root.checked_add(bytes).unwrap();
        ram.write_u64(at(8), 0x1111_2222_3333_4444).unwrap();
        let machine = shadow.layout().machine_of(at(8 + 4)).unwrap();
        let w = shadow.trapped_write(&ram, machine, &[0xaa, 0xbb, 0xcc, 0xdd]).unwrap();
        assert_eq!(w, MmioWrite::PageTable(TrappedWrite { entry: at(8), value: Pte::from_raw(0xddcc_bbaa_3333_4444), reload: None }));
        assert_eq!(ram.read_u64(at(8)).unwrap(), 0xddcc_bbaa_3333_4444);
        assert_eq!(shadow.counters().trapped_pt_writes, 1);
    }

    #[test]
    fn a_store_straddling_two_entries_updates_both() {
        let (ram, mut shadow, root) = setup();
        let at = |bytes: u64| root.checked_add(bytes).unwrap();
        let machine = shadow.layout().machine_of(at(4)).unwrap();
        shadow.trapped_write(&ram, machine, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        assert_eq!(ram.read_u64(root).unwrap(), 0x0403_0201_0000_0000);
        assert_eq!(ram.read_u64(at(8)).unwrap(), 0x0000_0000_0807_0605);
    }

    #[test]
    fn hostile_store_straddling_the_end_of_the_pool_changes_nothing() {
        let (ram, mut shadow, _) = setup();
        let last = shadow.layout().pool.end.checked_sub(8).unwrap();
        ram.write_u64(last, 0x1111_2222_3333_4444).unwrap();
        let machine = shadow.layout().machine_of(last.checked_add(4).unwrap()).unwrap();
        let r = shadow.trapped_write(&ram, machine, &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(r, Err(ShadowError::NotInPool(shadow.layout().pool.end)));
        assert_eq!(ram.read_u64(last).unwrap(), 0x1111_2222_3333_4444, "not even the half inside the pool was applied");
        assert_eq!(shadow.engine.stats().guest_writes, 0);
    }

    /// Entry bits for the trees below: present, writable, user; a data page also NX.
    const TABLE: u64 = 0x7;
    const DATA: u64 = 0x8000_0000_0000_0007;
    /// The data page every test tree maps.
    const PAGE: u64 = 0x10_0000;

    /// The pool's frame `n` (pseudo-physical address).
    fn pool_frame(shadow: &ShadowPaging, n: u64) -> PseudoPhys {
        shadow.layout().pool.start.checked_add(n * 0x1000).unwrap()
    }

    /// Stores entry `index` of the table at `table` (no trap: the test plays the guest
    /// before hv hears of it, as for a space that is not loaded).
    fn store(ram: &GuestRam, table: PseudoPhys, index: u64, value: u64) {
        ram.write_u64(table.checked_add(index * 8).unwrap(), value).unwrap();
    }

    /// A space at pool frame `first`: PML4 → PDPT → PD → `pts` PTs, each mapping
    /// [`PAGE`] at its first entry (va i × 2 MiB for PT i). Uses pool frames
    /// `first .. first + 3 + pts`.
    fn space(ram: &GuestRam, shadow: &ShadowPaging, first: u64, pts: u64) -> PseudoPhys {
        let f = |n| pool_frame(shadow, first + n);
        store(ram, f(0), 0, f(1).raw() | TABLE);
        store(ram, f(1), 0, f(2).raw() | TABLE);
        for i in 0..pts {
            store(ram, f(2), i, f(3 + i).raw() | TABLE);
            store(ram, f(3 + i), 0, PAGE | DATA);
        }
        f(0)
    }

    /// Where the loaded space maps `va`, through the shadow CR3 points at.
    fn through_cr3(shadow: &ShadowPaging, ram: &GuestRam, va: u64) -> Option<MachineAddr> {
        let cr3 = shadow.current_cr3()?;
        let view = ShadowPaging::view(&shadow.layout, &shadow.area, ram);
        shadow.engine.translate_shadow(&view, cr3, pv_abi::addr::GuestVirt::new(va)).map(|t| t.machine)
    }

    #[test]
    fn hostile_set_cr3_to_a_root_too_big_for_the_shadow_area_keeps_the_loaded_space() {
        let ram = GuestRam::new(RAM).unwrap();
        let mut shadow = ShadowPaging::new(RAM).unwrap();
        let area_frames = shadow.layout().shadow_bytes / 0x1000;
        let small = space(&ram, &shadow, 0, 1);
        shadow.load_root(&ram, small).unwrap();
        let page = shadow.layout().machine_of(PseudoPhys::new(PAGE));
        assert_eq!(through_cr3(&shadow, &ram, 0), page);
        // More page tables under one root than the whole shadow area has frames.
        let big = space(&ram, &shadow, 4, area_frames);
        assert_eq!(shadow.load_root(&ram, big), Err(ShadowError::AreaTooSmall));
        assert_eq!(shadow.guest_root(), Some(small), "the loaded space is still the loaded one");
        assert_eq!(through_cr3(&shadow, &ram, 0), page, "and CR3 reaches a whole shadow of it");
        assert_eq!(through_cr3(&shadow, &ram, 1 << 21), None);
    }

    #[test]
    fn hostile_mmu_update_overgrowing_the_loaded_space_is_undone() {
        let ram = GuestRam::new(RAM).unwrap();
        let mut shadow = ShadowPaging::new(RAM).unwrap();
        let area_frames = shadow.layout().shadow_bytes / 0x1000;
        let root = space(&ram, &shadow, 0, 1);
        shadow.load_root(&ram, root).unwrap();
        // Link more PTs into the loaded space's PD than the area can shadow, a batch at a
        // time as the guest's writer does; the batch that overflows is refused whole.
        let pd = pool_frame(&shadow, 2);
        let mut refused = None;
        for i in 1..=area_frames {
            let entry = pd.checked_add(i * 8).unwrap();
            match shadow.mmu_update(&ram, &[(entry, Pte::from_raw(pool_frame(&shadow, 3 + i).raw() | TABLE))]) {
                Ok(_) => {}
                Err(e) => {
                    refused = Some((i, e));
                    break;
                }
            }
        }
        let (i, e) = refused.expect("the area overflowed");
        assert_eq!(e, ShadowError::AreaTooSmall);
        assert_eq!(ram.read_u64(pd.checked_add(i * 8).unwrap()).unwrap(), 0, "the refused batch was undone");
        assert_eq!(through_cr3(&shadow, &ram, 0), shadow.layout().machine_of(PseudoPhys::new(PAGE)), "the loaded space runs on");
        assert_eq!(shadow.guest_root(), Some(root));
    }

    #[test]
    fn hostile_stores_outside_the_pool_are_not_page_table_writes() {
        let (ram, mut shadow, _) = setup();
        let area = SHADOW_AREA_BASE.checked_add(16).unwrap();
        assert_eq!(shadow.trapped_write(&ram, area, &[0; 8]), Ok(MmioWrite::ShadowArea));
        let data = shadow.layout().machine_of(PseudoPhys::new(0x1000)).unwrap();
        assert_eq!(shadow.trapped_write(&ram, data, &[0; 8]), Ok(MmioWrite::Elsewhere));
        assert_eq!(shadow.trapped_write(&ram, MachineAddr::new(0xfee0_0000), &[0; 4]), Ok(MmioWrite::Elsewhere));
        assert_eq!(shadow.counters().trapped_pt_writes, 0);
    }
}
