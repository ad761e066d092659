//! The engine's view of machine memory: guest RAM (found through the layout) and the
//! shadow area, 8 bytes at a time, every access bounds-checked.
//!
//! The shadow-mmu engine thinks in machine addresses, because that is what shadow
//! entries and CR3 hold. hv keeps guest RAM in one host mapping indexed by
//! *pseudo*-physical address, so a machine address of guest RAM is turned back into a
//! pseudo-physical one (the layout's inverse p2m) before [`GuestRam`] is asked.

use pv_abi::addr::MachineAddr;
use shadow_mmu::{MachineMemory, MemoryError};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{MachineLayout, SHADOW_AREA_BASE};
use crate::memory::GuestRam;

/// Guest RAM plus the shadow area, addressed by machine address.
pub struct MachineView<'a> {
    /// Guest RAM (pseudo-physical).
    pub ram: &'a GuestRam,
    /// The shadow area's memory (at [`SHADOW_AREA_BASE`]).
    pub area: &'a GuestMemoryMmap,
    /// Where things are.
    pub layout: &'a MachineLayout,
}

impl MachineMemory for MachineView<'_> {
    fn read_u64(&self, machine: MachineAddr) -> Result<u64, MemoryError> {
        if !machine.is_aligned(8) {
            return Err(MemoryError::Outside(machine));
        }
        if self.layout.in_shadow_area(machine) {
            return self.area.read_obj::<u64>(GuestAddress(machine.raw())).map_err(|_| MemoryError::Outside(machine));
        }
        let pseudo = self.layout.pseudo_of(machine).ok_or(MemoryError::Outside(machine))?;
        self.ram.read_u64(pseudo).map_err(|_| MemoryError::Outside(machine))
    }

    fn write_u64(&mut self, machine: MachineAddr, value: u64) -> Result<(), MemoryError> {
        if !machine.is_aligned(8) {
            return Err(MemoryError::Outside(machine));
        }
        if self.layout.in_shadow_area(machine) {
            return self.area.write_obj(value, GuestAddress(machine.raw())).map_err(|_| MemoryError::Outside(machine));
        }
        let pseudo = self.layout.pseudo_of(machine).ok_or(MemoryError::Outside(machine))?;
        self.ram.write_u64(pseudo, value).map_err(|_| MemoryError::Outside(machine))
    }
}

/// Allocates the shadow area (zeroed, backed lazily like guest RAM).
pub fn allocate_area(layout: &MachineLayout) -> Result<GuestMemoryMmap, vm_memory::mmap::FromRangesError> {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(SHADOW_AREA_BASE.raw()), layout.shadow_bytes as usize)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use pv_abi::addr::PseudoPhys;

    #[test]
    fn hostile_machine_addresses_reach_the_right_pseudo_frame_and_nothing_else() {
        let layout = MachineLayout::new(8 << 20);
        let ram = GuestRam::new(layout.ram).unwrap();
        let area = allocate_area(&layout).unwrap();
        let mut view = MachineView { ram: &ram, area: &area, layout: &layout };
        let m = layout.machine_of(PseudoPhys::new(0x1000)).unwrap().raw();
        view.write_u64(MachineAddr::new(m), 42).unwrap();
        assert_eq!(ram.read_u64(PseudoPhys::new(0x1000)).unwrap(), 42);
        let area = SHADOW_AREA_BASE.raw();
        view.write_u64(MachineAddr::new(area + 8), 7).unwrap();
        assert_eq!(view.read_u64(MachineAddr::new(area + 8)), Ok(7));
        for bad in [0x1000, m + 4, area + layout.shadow_bytes, u64::MAX - 7] {
            assert!(view.read_u64(MachineAddr::new(bad)).is_err(), "{bad:#x}");
        }
    }
}
