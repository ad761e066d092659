//! A page table, and the address of one of its entries, as types.
//!
//! Changing a page-table entry is a store to guest-physical memory, and a store to the
//! wrong address could overwrite anything, the kernel included. So entry addresses are
//! not plain numbers here: an [`EntryAddr`] can only be made from a [`PageTable`], and
//! a `PageTable` only by the page-table pool (a fresh table) or by following an entry
//! of a table the kernel built, which is the one `unsafe` step ([`PageTable::at`]).
//! Everything that reads or writes entries (`writer.rs`) takes an `EntryAddr`.

use pv_abi::addr::{GuestVirt, PseudoFrame, PseudoPhys, PAGE_SHIFT};
use pv_abi::paging::{table_index, Pte, ENTRIES_PER_TABLE, ENTRY_SIZE};

use crate::arch::kernel_map;

/// A page table: a frame of guest RAM holding 512 entries. Copy is fine: the type
/// says what the frame is, not who owns it (the address space that links it does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageTable {
    frame: PseudoFrame,
}

/// The guest-physical address of one entry of a [`PageTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryAddr {
    gpa: PseudoPhys,
}

impl PageTable {
    /// The table in `frame`.
    ///
    /// # Safety
    /// `frame` must be a frame of guest RAM that is a page table: one from the pool,
    /// the VMM's boot tables (to read), or a frame an entry of such a table points to
    /// as the next level. Nothing else may live in that frame, since entries of it may
    /// be written.
    pub const unsafe fn at(frame: PseudoFrame) -> PageTable {
        PageTable { frame }
    }

    /// The table's frame (what an entry pointing to it names, or CR3).
    pub const fn frame(self) -> PseudoFrame {
        self.frame
    }

    /// The table's guest-physical address.
    pub const fn gpa(self) -> PseudoPhys {
        // A frame of guest RAM: far below the numbers whose address would overflow.
        PseudoPhys::new(self.frame.raw() << PAGE_SHIFT)
    }

    /// The address of entry `index` (taken modulo 512, so always inside the table).
    pub const fn entry(self, index: usize) -> EntryAddr {
        let offset = (index % ENTRIES_PER_TABLE) as u64 * ENTRY_SIZE;
        EntryAddr { gpa: PseudoPhys::new(self.gpa().raw() + offset) }
    }

    /// The entry that translates `va` if this table is at `level` (4 = PML4 … 1 = PT).
    pub const fn entry_for(self, va: GuestVirt, level: u32) -> EntryAddr {
        self.entry(table_index(va, level))
    }
}

impl EntryAddr {
    /// The entry's guest-physical address (what `mmu_update` names).
    pub const fn gpa(self) -> PseudoPhys {
        self.gpa
    }

    /// Reads the entry from memory.
    pub fn load(self) -> Pte {
        // SAFETY: an EntryAddr is 8-byte aligned inside a page table (see PageTable::at),
        // guest RAM mapped by the direct map; volatile, because the MMU (or the VMM)
        // is the other party.
        Pte::from_raw(unsafe { core::ptr::read_volatile(kernel_map::direct_map::<u64>(self.gpa)) })
    }

    /// Stores `pte` into the entry.
    pub fn store(self, pte: Pte) {
        // SAFETY: as in `load`; page tables hold no Rust objects, so the store cannot
        // break one. Volatile keeps the compiler from merging or dropping a write the
        // MMU will read.
        unsafe { core::ptr::write_volatile(kernel_map::direct_map::<u64>(self.gpa), pte.raw()) };
    }
}
