//! Where shadow mode puts guest memory in the machine: the p2m table as KVM memslots.
//!
//! In ept mode guest-physical address X is KVM guest-physical address X: one memslot,
//! the identity. In shadow mode the guest's addresses are *pseudo-physical*, and hv
//! decides where each frame really is (the "machine" address, which is what KVM calls
//! guest-physical). hv makes that mapping deliberately not the identity, so that any
//! place that forgets to translate shows up as a bug at once:
//!
//! ```text
//!  pseudo-physical (what the guest sees)       machine (KVM memslots)
//!  0 ............ half                        MACHINE_RAM_BASE + (ram - half) ...  slot 0, read-write
//!  half ......... pool_start                  MACHINE_RAM_BASE ...                 slot 1, read-write
//!  pool_start ... ram (page-table pool)       right after slot 1                   slot 2, READ-ONLY
//!                                             SHADOW_AREA_BASE ... (shadow tables) slot 3, READ-ONLY
//! ```
//!
//! The two halves of RAM are swapped (at 2 MiB granularity, so the guest's 2 MiB pages
//! stay contiguous). The page-table pool gets a read-only slot of its own: the guest can
//! read its page tables at full speed, but every store to them leaves the guest as a
//! KVM_EXIT_MMIO, which is how hv hears of it. The shadow tables hv builds live in a
//! fourth slot, also read-only to the guest: no guest entry is ever reflected to point
//! there, and even a guest that loaded a CR3 of its own making could not write them.

use std::ops::Range;

use pv_abi::addr::{MachineAddr, PseudoFrame, PseudoPhys};
use pv_abi::layout::{pt_pool, LARGE_PAGE_SIZE, PAGE_SIZE};
use shadow_mmu::P2m;

/// Machine address of the first guest RAM frame: above 4 GiB, clear of the PC's
/// device hole (local APIC at 0xfee00000, KVM's TSS pages just below it).
pub const MACHINE_RAM_BASE: MachineAddr = MachineAddr::new(4 << 30);
/// Machine address of the shadow area: above the largest guest RAM.
pub const SHADOW_AREA_BASE: MachineAddr = MachineAddr::new(8 << 30);

/// One KVM memory slot: a machine range backed by host memory at `host_offset` into
/// either guest RAM's mapping or the shadow area's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotPlan {
    /// KVM guest-physical (machine) start.
    pub machine: MachineAddr,
    /// Bytes.
    pub size: u64,
    /// What backs it.
    pub backing: Backing,
    /// Whether guest stores exit to hv instead of reaching memory.
    pub read_only: bool,
}

/// The host memory behind a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Guest RAM from this pseudo-physical address on.
    Ram {
        /// Pseudo-physical start.
        pseudo: PseudoPhys,
    },
    /// The shadow area from its start.
    ShadowArea,
}

/// Where everything is, for one RAM size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineLayout {
    /// Guest RAM bytes.
    pub ram: u64,
    /// The half boundary, a multiple of 2 MiB.
    pub half: PseudoPhys,
    /// The page-table pool (pv-abi's [`pt_pool`]).
    pub pool: Range<PseudoPhys>,
    /// Bytes of shadow area.
    pub shadow_bytes: u64,
}

impl MachineLayout {
    /// The layout for `ram` bytes of guest RAM (a multiple of 2 MiB).
    pub fn new(ram: u64) -> Self {
        let pool = pt_pool(ram);
        let half = (ram / 2) / LARGE_PAGE_SIZE * LARGE_PAGE_SIZE;
        // Only tables of cached address spaces need shadows, and tables no one reaches
        // are freed, so the area can be much smaller than the pool. Kept small on
        // purpose: freed frames are reused in bulk when fresh ones run out (a
        // "recycle", see `ShadowMmu::take_recycled`), and a small area makes that
        // visible in ordinary runs. If a guest ever fills it with live tables, the
        // engine drops every shadow and starts over.
        let pool_bytes = pool.end.offset_from(pool.start).unwrap_or(0);
        let shadow_bytes = (128 + pool_bytes / PAGE_SIZE / 8) * PAGE_SIZE;
        MachineLayout { ram, half: PseudoPhys::new(half), pool, shadow_bytes }
    }

    /// The end of guest RAM (pseudo-physical).
    pub fn ram_end(&self) -> PseudoPhys {
        PseudoPhys::new(self.ram)
    }

    /// The memslots, in slot-number order.
    pub fn slots(&self) -> [SlotPlan; 4] {
        let ram_slot = |pseudo: PseudoPhys, end: PseudoPhys, read_only| SlotPlan {
            machine: self.machine_of(pseudo).unwrap_or_default(),
            size: end.offset_from(pseudo).unwrap_or(0),
            backing: Backing::Ram { pseudo },
            read_only,
        };
        [
            ram_slot(PseudoPhys::new(0), self.half, false),
            ram_slot(self.half, self.pool.start, false),
            ram_slot(self.pool.start, self.ram_end(), true),
            SlotPlan { machine: SHADOW_AREA_BASE, size: self.shadow_bytes, backing: Backing::ShadowArea, read_only: true },
        ]
    }

    /// Machine address of pseudo-physical `pseudo`; `None` outside RAM.
    pub fn machine_of(&self, pseudo: PseudoPhys) -> Option<MachineAddr> {
        let offset = pseudo.offset_from(PseudoPhys::new(0)).filter(|o| *o < self.ram)?;
        let half = self.half.raw();
        // The upper half comes first in the machine, then the lower one.
        let machine_offset = if offset < half { (self.ram - half) + offset } else { offset - half };
        MACHINE_RAM_BASE.checked_add(machine_offset)
    }

    /// Pseudo-physical address of machine address `machine`, if it is guest RAM.
    pub fn pseudo_of(&self, machine: MachineAddr) -> Option<PseudoPhys> {
        let offset = machine.offset_from(MACHINE_RAM_BASE).filter(|o| *o < self.ram)?;
        let half = self.half.raw();
        let upper = self.ram - half; // bytes of the upper half, which come first
        Some(PseudoPhys::new(if offset < upper { half + offset } else { offset - upper }))
    }

    /// Whether machine address `machine` is in the shadow area.
    pub fn in_shadow_area(&self, machine: MachineAddr) -> bool {
        machine.offset_from(SHADOW_AREA_BASE).is_some_and(|o| o < self.shadow_bytes)
    }

    /// The same placement as a frame table, for the shadow-mmu engine.
    pub fn p2m(&self) -> P2m {
        let machine_of_frame =
            |f: PseudoFrame| f.checked_address().and_then(|gpa| self.machine_of(gpa)).unwrap_or_default().frame();
        P2m::from_table((0..self.ram / PAGE_SIZE).map(|f| machine_of_frame(PseudoFrame::new(f))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slots_tile_ram_exactly_once_and_only_the_pool_is_read_only() {
        for mib in [8u64, 64, 66, 1024, 3072] {
            let l = MachineLayout::new(mib << 20);
            let slots = l.slots();
            let ram: u64 = slots[..3].iter().map(|s| s.size).sum();
            assert_eq!(ram, l.ram);
            assert!(l.half <= l.pool.start && l.half.is_aligned(LARGE_PAGE_SIZE));
            assert_eq!(slots.iter().map(|s| s.read_only).collect::<Vec<_>>(), [false, false, true, true]);
            // Slots do not overlap in machine space.
            for (i, a) in slots.iter().enumerate() {
                for b in &slots[i + 1..] {
                    let (a_start, b_start) = (a.machine.raw(), b.machine.raw());
                    assert!(a_start + a.size <= b_start || b_start + b.size <= a_start, "{a:?} overlaps {b:?}");
                }
            }
            assert!(MACHINE_RAM_BASE.checked_add(l.ram).unwrap() <= SHADOW_AREA_BASE);
        }
    }

    #[test]
    fn pseudo_and_machine_addresses_round_trip_and_are_not_the_identity() {
        let l = MachineLayout::new(64 << 20);
        let half = l.half.raw();
        for pseudo in [0, 0x1000, half - 8, half, l.pool.start.raw(), l.ram - 8] {
            let m = l.machine_of(PseudoPhys::new(pseudo)).unwrap();
            assert_ne!(m.raw(), pseudo);
            assert_eq!(l.pseudo_of(m), Some(PseudoPhys::new(pseudo)));
        }
        assert_eq!(l.machine_of(l.ram_end()), None);
        assert_eq!(l.pseudo_of(MACHINE_RAM_BASE.checked_sub(1).unwrap()), None);
        assert_eq!(l.pseudo_of(MACHINE_RAM_BASE.checked_add(l.ram).unwrap()), None);
        assert!(l.in_shadow_area(SHADOW_AREA_BASE) && !l.in_shadow_area(SHADOW_AREA_BASE.checked_add(l.shadow_bytes).unwrap()));
        let p2m = l.p2m();
        let first = l.machine_of(PseudoPhys::new(0)).unwrap();
        assert_eq!(p2m.machine_frame(PseudoFrame::new(0)), Some(first.frame()));
        assert!(p2m.contiguous(PseudoFrame::new(0), 512) && !p2m.contiguous(PseudoFrame::new(half / PAGE_SIZE - 1), 2));
    }
}
