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

use pv_abi::layout::{pt_pool_bytes, LARGE_PAGE_SIZE, PAGE_SIZE};
use pv_abi::addr::MachineAddr;
use shadow_mmu::P2m;

/// Machine address of the first guest RAM frame: above 4 GiB, clear of the PC's
/// device hole (local APIC at 0xfee00000, KVM's TSS pages just below it).
pub const MACHINE_RAM_BASE: u64 = 4 << 30;
/// Machine address of the shadow area: above the largest guest RAM.
pub const SHADOW_AREA_BASE: u64 = 8 << 30;

/// One KVM memory slot: a machine range backed by host memory at `host_offset` into
/// either guest RAM's mapping or the shadow area's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotPlan {
    /// KVM guest-physical (machine) start.
    pub machine: u64,
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
        pseudo: u64,
    },
    /// The shadow area from its start.
    ShadowArea,
}

/// Where everything is, for one RAM size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineLayout {
    /// Guest RAM bytes.
    pub ram: u64,
    /// The half boundary (pseudo-physical), a multiple of 2 MiB.
    pub half: u64,
    /// The page-table pool (pseudo-physical).
    pub pool: std::ops::Range<u64>,
    /// Bytes of shadow area.
    pub shadow_bytes: u64,
}

impl MachineLayout {
    /// The layout for `ram` bytes of guest RAM (a multiple of 2 MiB).
    pub fn new(ram: u64) -> Self {
        let pool_start = ram - pt_pool_bytes(ram);
        let half = (ram / 2) / LARGE_PAGE_SIZE * LARGE_PAGE_SIZE;
        // Only tables of cached address spaces need shadows, and tables no one reaches
        // are freed, so the area can be much smaller than the pool. Kept small on
        // purpose: freed frames are reused in bulk when fresh ones run out (a
        // "recycle", see `ShadowMmu::take_recycled`), and a small area makes that
        // visible in ordinary runs. If a guest ever fills it with live tables, the
        // engine drops every shadow and starts over.
        let shadow_bytes = (128 + (ram - pool_start) / PAGE_SIZE / 8) * PAGE_SIZE;
        MachineLayout { ram, half, pool: pool_start..ram, shadow_bytes }
    }

    /// The memslots, in slot-number order.
    pub fn slots(&self) -> [SlotPlan; 4] {
        let ram_slot = |pseudo: u64, end: u64, read_only| SlotPlan {
            machine: self.machine_of(pseudo).unwrap_or(0),
            size: end - pseudo,
            backing: Backing::Ram { pseudo },
            read_only,
        };
        [
            ram_slot(0, self.half, false),
            ram_slot(self.half, self.pool.start, false),
            ram_slot(self.pool.start, self.ram, true),
            SlotPlan { machine: SHADOW_AREA_BASE, size: self.shadow_bytes, backing: Backing::ShadowArea, read_only: true },
        ]
    }

    /// Machine address of pseudo-physical `pseudo`.
    pub fn machine_of(&self, pseudo: u64) -> Option<u64> {
        if pseudo >= self.ram {
            return None;
        }
        Some(if pseudo < self.half { MACHINE_RAM_BASE + (self.ram - self.half) + pseudo } else { MACHINE_RAM_BASE + (pseudo - self.half) })
    }

    /// Pseudo-physical address of machine address `machine`, if it is guest RAM.
    pub fn pseudo_of(&self, machine: u64) -> Option<u64> {
        let offset = machine.checked_sub(MACHINE_RAM_BASE).filter(|o| *o < self.ram)?;
        let upper = self.ram - self.half; // bytes of the upper half, which come first
        Some(if offset < upper { self.half + offset } else { offset - upper })
    }

    /// Whether machine address `machine` is in the shadow area.
    pub fn in_shadow_area(&self, machine: u64) -> bool {
        (SHADOW_AREA_BASE..SHADOW_AREA_BASE + self.shadow_bytes).contains(&machine)
    }

    /// The same placement as a frame table, for the shadow-mmu engine.
    pub fn p2m(&self) -> P2m {
        P2m::from_table((0..self.ram / PAGE_SIZE).map(|f| MachineAddr::new(self.machine_of(f * PAGE_SIZE).unwrap_or(0)).frame()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pv_abi::addr::PseudoFrame;

    #[test]
    fn the_slots_tile_ram_exactly_once_and_only_the_pool_is_read_only() {
        for mib in [8u64, 64, 66, 1024, 3072] {
            let l = MachineLayout::new(mib << 20);
            let slots = l.slots();
            let ram: u64 = slots[..3].iter().map(|s| s.size).sum();
            assert_eq!(ram, l.ram);
            assert!(l.half <= l.pool.start && l.half.is_multiple_of(LARGE_PAGE_SIZE));
            assert_eq!(slots.iter().map(|s| s.read_only).collect::<Vec<_>>(), [false, false, true, true]);
            // Slots do not overlap in machine space.
            for (i, a) in slots.iter().enumerate() {
                for b in &slots[i + 1..] {
                    assert!(a.machine + a.size <= b.machine || b.machine + b.size <= a.machine, "{a:?} overlaps {b:?}");
                }
            }
            assert!(MACHINE_RAM_BASE + l.ram <= SHADOW_AREA_BASE);
        }
    }

    #[test]
    fn pseudo_and_machine_addresses_round_trip_and_are_not_the_identity() {
        let l = MachineLayout::new(64 << 20);
        for pseudo in [0, 0x1000, l.half - 8, l.half, l.pool.start, l.ram - 8] {
            let m = l.machine_of(pseudo).unwrap();
            assert_ne!(m, pseudo);
            assert_eq!(l.pseudo_of(m), Some(pseudo));
        }
        assert_eq!(l.machine_of(l.ram), None);
        assert_eq!(l.pseudo_of(MACHINE_RAM_BASE - 1), None);
        assert_eq!(l.pseudo_of(MACHINE_RAM_BASE + l.ram), None);
        assert!(l.in_shadow_area(SHADOW_AREA_BASE) && !l.in_shadow_area(SHADOW_AREA_BASE + l.shadow_bytes));
        let p2m = l.p2m();
        assert_eq!(p2m.machine_frame(PseudoFrame::new(0)), Some(MachineAddr::new(l.machine_of(0).unwrap()).frame()));
        assert!(p2m.contiguous(PseudoFrame::new(0), 512) && !p2m.contiguous(PseudoFrame::new(l.half / PAGE_SIZE - 1), 2));
    }
}
