//! Memory slots: "guest-physical range X is backed by this host memory".
//!
//! After KVM_SET_USER_MEMORY_REGION the guest's loads and stores to X go straight to the
//! host memory, with no exit. Only what is *not* backed by a slot (or what the slot
//! marks read-only) comes back to the VMM as an MMIO exit. ept mode needs one slot (all
//! of RAM at guest-physical 0); shadow mode scatters RAM over machine addresses and adds
//! a read-only shadow area (`shadow::layout` decides where; this file only says how a
//! plan is described, and [`super::KvmVm`] checks it against the memory it owns).

use pv_abi::addr::MachineAddr;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// Which host memory backs a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotMemory {
    /// Guest RAM, from this byte offset.
    Ram {
        /// Offset into guest RAM.
        offset: u64,
    },
    /// The plan's extra area (shadow mode's shadow tables), from this byte offset.
    Area {
        /// Offset into the area.
        offset: u64,
    },
}

/// One memory slot to create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemorySlot {
    /// The machine address the slot starts at (KVM's guest-physical; in ept mode the same
    /// as pseudo-physical).
    pub guest_phys: MachineAddr,
    /// Its size in bytes.
    pub size: u64,
    /// The host memory behind it.
    pub memory: SlotMemory,
    /// Stores exit as MMIO instead of reaching memory.
    pub read_only: bool,
    /// The CPU walks page tables held in this slot; re-registering it makes KVM forget
    /// the translations it derived from them (`KvmVm::forget_cached_translations`).
    pub holds_walked_tables: bool,
}

/// Every slot of a VM, and the host memory they may name besides guest RAM.
pub struct MemoryPlan {
    /// The slots, numbered in this order.
    pub slots: Vec<MemorySlot>,
    /// Memory besides RAM that slots may name ([`SlotMemory::Area`]); the VM keeps a
    /// reference to it for as long as the slots exist.
    pub area: Option<GuestMemoryMmap>,
}

impl MemoryPlan {
    /// ept mode: all of RAM, read-write, at guest-physical 0.
    pub fn flat(ram_bytes: u64) -> Self {
        let slot = MemorySlot {
            guest_phys: MachineAddr::new(0),
            size: ram_bytes,
            memory: SlotMemory::Ram { offset: 0 },
            read_only: false,
            holds_walked_tables: true,
        };
        MemoryPlan { slots: vec![slot], area: None }
    }

    /// Whether any slot is read-only (which needs KVM_CAP_READONLY_MEM).
    pub fn needs_readonly_slots(&self) -> bool {
        self.slots.iter().any(|s| s.read_only)
    }

    /// The host address range (start, length) of the area, if the plan has one.
    pub(super) fn area_host_range(&self) -> Option<(u64, u64)> {
        let area = self.area.as_ref()?;
        let region = area.iter().next()?;
        let start = area.get_host_address(region.start_addr()).ok()? as u64;
        Some((start, region.len()))
    }
}
