//! The host rig of lab 4 (not a test file: `mod rig;` in each test file).
//!
//! A shadow-paging engine on simulated machine memory, with no KVM: guest frames
//! 0..1024 live at machine frames 512..1536 through a p2m that swaps its two halves (so a
//! pseudo-physical frame is never its machine frame by accident), the page-table pool is
//! guest frames 960..1024, and the shadow area is machine frames 0..64. Everything the
//! rig calls is `shadow_mmu`'s public API, so any correct engine passes.

#![allow(dead_code)] // each test file uses a part of the rig

use pv_abi::addr::{GuestVirt, MachineAddr, MachineFrame, PseudoFrame, PseudoPhys};
use pv_abi::paging::{Pte, PteFlags};
use shadow_mmu::reference::{reference_translate, Translation};
use shadow_mmu::shadow::SyncOutcome;
use shadow_mmu::{MachineMemory, P2m, Refusal, ShadowConfig, ShadowEvent, ShadowMmu, VecMemory};

pub const PAGE: u64 = 4096;
pub const GUEST_FRAMES: u64 = 1024;
pub const MACHINE_BASE: u64 = 512;
pub const POOL_START: u64 = 960;
pub const SHADOW_FRAMES: u64 = 64;

pub const P: u64 = PteFlags::PRESENT.bits();
pub const RW: u64 = PteFlags::WRITABLE.bits();
pub const US: u64 = PteFlags::USER.bits();
pub const NX: u64 = PteFlags::NO_EXECUTE.bits();
pub const PS: u64 = PteFlags::LARGE.bits();
pub const A: u64 = PteFlags::ACCESSED.bits();
pub const D: u64 = PteFlags::DIRTY.bits();

/// Pool table `n` (guest frame POOL_START + n): the rig's tables are 0 (PML4), 1 (PDPT),
/// 2 (PD), 3 (PT) unless a test links others.
pub fn table(n: u64) -> u64 {
    (POOL_START + n) * PAGE
}

/// An engine and its memory.
pub struct Rig {
    pub mem: VecMemory,
    pub mmu: ShadowMmu,
}

impl Rig {
    pub fn new(pool_traps_writes: bool) -> Self {
        Rig::with_area(pool_traps_writes, SHADOW_FRAMES)
    }

    pub fn with_area(pool_traps_writes: bool, shadow_frames: u64) -> Self {
        let mem = VecMemory::new(MACHINE_BASE + GUEST_FRAMES);
        let p2m = P2m::swapped_halves(GUEST_FRAMES, MachineFrame::new(MACHINE_BASE), GUEST_FRAMES / 2);
        let config = ShadowConfig {
            pool: PseudoFrame::new(POOL_START)..PseudoFrame::new(GUEST_FRAMES),
            shadow_area: MachineFrame::new(0)..MachineFrame::new(shadow_frames),
            root_cache: 2,
            pool_traps_writes,
            device_frames: vec![],
        };
        let mmu = ShadowMmu::new(config, p2m).expect("lab 4: the rig's configuration is valid");
        Rig { mem, mmu }
    }

    /// The guest writes `value` at entry `index` of the table at pseudo-physical `table`.
    pub fn write(&mut self, table: u64, index: u64, value: u64) -> SyncOutcome {
        self.mmu.guest_pt_write(&mut self.mem, PseudoPhys::new(table + index * 8), Pte::from_raw(value)).expect("lab 4: a write to a pool entry is accepted")
    }

    /// Puts `value` at entry `index` of the guest table at pseudo-physical `table`
    /// directly in memory, with no trap: as a guest builds a table before it is ever
    /// loaded. Only a later `load` shadows it (through `reflect` alone, no sync).
    pub fn plant(&mut self, table: u64, index: u64, value: u64) {
        let frame = self.mmu.p2m().machine_frame(PseudoFrame::new(table / PAGE)).expect("a pool frame");
        self.mem.write_entry(frame, index as usize, Pte::from_raw(value)).expect("inside the rig's memory");
    }

    /// `chain`, planted with no trap (see `plant`).
    pub fn plant_chain(&mut self) {
        self.plant(table(0), 0, table(1) | P | RW | US);
        self.plant(table(1), 0, table(2) | P | RW | US);
        self.plant(table(2), 0, table(3) | P | RW | US);
    }

    /// A PML4 (table 0) → PDPT (1) → PD (2) → PT (3) chain for addresses 0..2 MiB, all
    /// user and writable, with nothing mapped yet.
    pub fn chain(&mut self) {
        self.write(table(0), 0, table(1) | P | RW | US);
        self.write(table(1), 0, table(2) | P | RW | US);
        self.write(table(2), 0, table(3) | P | RW | US);
    }

    pub fn load(&mut self) -> MachineAddr {
        self.mmu.load_root(&mut self.mem, PseudoPhys::new(table(0))).expect("lab 4: the root loads")
    }

    pub fn shadow(&self, root: MachineAddr, va: u64) -> Option<Translation> {
        self.mmu.translate_shadow(&self.mem, root, GuestVirt::new(va))
    }

    pub fn reference(&self, va: u64) -> Option<Translation> {
        reference_translate(&self.mem, self.mmu.p2m(), self.mmu.config(), PseudoPhys::new(table(0)), GuestVirt::new(va))
    }

    /// The machine frame the p2m gives guest frame `f`.
    pub fn machine(&self, f: u64) -> u64 {
        self.mmu.p2m().machine_frame(PseudoFrame::new(f)).expect("a guest frame").raw()
    }

    /// The refusals reported since the last call, as (level, reason).
    pub fn refusals(&mut self) -> Vec<(u32, Refusal)> {
        self.mmu.drain_events().into_iter().filter_map(|e| match e { ShadowEvent::Refused { level, why, .. } => Some((level, why)), _ => None }).collect()
    }

    /// Fails, naming the rule, unless the shadow and the reference agree at `va`.
    pub fn expect_agree(&self, root: MachineAddr, va: u64, rule: &str) {
        let got = self.shadow(root, va);
        let expected = self.reference(va);
        assert_eq!(got, expected, "lab 4: {rule}: at va {va:#x} the shadow (left) differs from the reference walk (right)");
    }
}
