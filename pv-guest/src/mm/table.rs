//! A page table, and the address of one of its entries, as types.
//!
//! Changing a page-table entry is a store to guest-physical memory, and a store to the
//! wrong address could overwrite anything, the kernel included. So entry addresses are
//! not plain numbers here: an [`EntryAddr`] can only be made from a [`PageTable`], and
//! a `PageTable` only by the page-table pool (a fresh table) or by following an entry
//! of a table the kernel built, which is the one `unsafe` step ([`PageTable::at`]).
//! Everything that reads or writes entries (`writer.rs`) takes an `EntryAddr`.

use crate::arch::kernel_map;

/// Entries in one table.
pub const ENTRIES: u64 = 512;
/// Bytes in one entry.
const ENTRY_BYTES: u64 = 8;

/// A page table: a frame of guest RAM holding 512 entries. Copy is fine: the type
/// says what the frame is, not who owns it (the address space that links it does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageTable {
    gpa: u64,
}

/// The guest-physical address of one entry of a [`PageTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryAddr {
    gpa: u64,
}

impl PageTable {
    /// The table at guest-physical `gpa`.
    ///
    /// # Safety
    /// `gpa` must be a page-aligned frame of guest RAM that is a page table: one from
    /// the pool, the VMM's boot tables (to read), or a frame an entry of such a table
    /// points to as the next level. Nothing else may live in that frame, since entries
    /// of it may be written.
    pub const unsafe fn at(gpa: u64) -> PageTable {
        PageTable { gpa }
    }

    /// The table's guest-physical address (what an entry pointing to it holds, or CR3).
    pub const fn gpa(self) -> u64 {
        self.gpa
    }

    /// The address of entry `index` (taken modulo 512, so always inside the table).
    pub const fn entry(self, index: u64) -> EntryAddr {
        EntryAddr { gpa: self.gpa + (index % ENTRIES) * ENTRY_BYTES }
    }
}

impl EntryAddr {
    /// The entry's guest-physical address (what `mmu_update` names).
    pub const fn gpa(self) -> u64 {
        self.gpa
    }

    /// Reads the entry from memory.
    pub fn load(self) -> u64 {
        // SAFETY: an EntryAddr is 8-byte aligned inside a page table (see PageTable::at),
        // guest RAM mapped by the direct map; volatile, because the MMU (or the VMM)
        // is the other party.
        unsafe { core::ptr::read_volatile(kernel_map::phys_to_virt(self.gpa) as *const u64) }
    }

    /// Stores `value` into the entry.
    pub fn store(self, value: u64) {
        // SAFETY: as in `load`; page tables hold no Rust objects, so the store cannot
        // break one. Volatile keeps the compiler from merging or dropping a write the
        // MMU will read.
        unsafe { core::ptr::write_volatile(kernel_map::phys_to_virt(self.gpa) as *mut u64, value) };
    }
}
