//! An address space: one tree of page tables from the pool.
//!
//! The upper half (PML4 entries 256..512) is the kernel's, copied from the VMM's boot
//! PML4 when the space is made, so every space shares the same kernel tables and a
//! system call or trap finds the kernel mapped. The lower half belongs to the space.
//!
//! ```text
//!  PML4 ─► PDPT ─► PD ─► PT ─► 4 KiB frame          (map with PageSize::Small)
//!                   └──────► 2 MiB frame (PS bit)   (map with PageSize::Large)
//! ```

use super::table::{EntryAddr, PageTable, ENTRIES};
use super::writer::PageTableWriter;
use super::{pool, MmuError, PageSize, Protection, PTE_ADDR_MASK, PTE_LARGE, PTE_PRESENT, PTE_USER, PTE_WRITABLE};

/// First PML4 entry of the kernel's half.
const KERNEL_HALF: u64 = 256;
/// End (exclusive) of the lower half: user addresses are below it.
pub const USER_END: u64 = 0x0000_8000_0000_0000;

fn index(va: u64, level: u32) -> u64 {
    (va >> (12 + 9 * (level - 1))) & (ENTRIES - 1)
}

/// The table a present, non-leaf entry `value` points to.
///
/// # Safety
/// `value` must have been read from a table of an address space, above level 1, and
/// not be a large-page leaf: such entries are written only by this module, with tables
/// from the pool, or by [`AddressSpace::write_raw_entry`], whose caller promises the same.
unsafe fn next_table(value: u64) -> PageTable {
    // SAFETY: the caller guarantees the entry names a page table.
    unsafe { PageTable::at(value & PTE_ADDR_MASK) }
}

/// One address space.
pub struct AddressSpace {
    root: PageTable,
}

impl AddressSpace {
    /// A space with an empty lower half and the kernel's upper half, copied from the
    /// PML4 at guest-physical `kernel_root` (the VMM's boot tables).
    pub fn new(w: &mut PageTableWriter, kernel_root: u64) -> Result<Self, MmuError> {
        let root = pool::alloc_table().ok_or(MmuError::NoTables)?;
        // SAFETY: the boot-info page names the VMM's boot PML4, a page table in guest
        // RAM; only its entries are read here.
        let kernel = unsafe { PageTable::at(kernel_root) };
        for i in KERNEL_HALF..ENTRIES {
            let entry = kernel.entry(i).load();
            if entry != 0 {
                w.write(root.entry(i), entry)?;
            }
        }
        w.flush()?;
        Ok(AddressSpace { root })
    }

    /// Guest-physical address of the PML4: what CR3 holds while this space runs.
    pub fn root(&self) -> u64 {
        self.root.gpa()
    }

    /// The entry for `va` at `level`, creating the tables above it if `create`.
    fn entry(&self, w: &mut PageTableWriter, va: u64, level: u32, create: bool) -> Result<EntryAddr, MmuError> {
        let mut table = self.root;
        for l in (level + 1..=4).rev() {
            let e = table.entry(index(va, l));
            let value = w.read(e);
            if value & PTE_PRESENT == 0 {
                if !create {
                    return Err(MmuError::NotMapped);
                }
                let new = pool::alloc_table().ok_or(MmuError::NoTables)?;
                // Intermediate entries allow everything; the leaf decides. Flush at once:
                // the walk reads through this entry next.
                w.write(e, new.gpa() | PTE_PRESENT | PTE_WRITABLE | PTE_USER)?;
                w.flush()?;
                table = new;
            } else if value & PTE_LARGE != 0 {
                return Err(MmuError::AlreadyMapped);
            } else {
                // SAFETY: a present entry above the leaf level without the large bit.
                table = unsafe { next_table(value) };
            }
        }
        Ok(table.entry(index(va, level)))
    }

    fn check(va: u64, size: PageSize) -> Result<(), MmuError> {
        if !va.is_multiple_of(size.bytes()) || va >= USER_END {
            return Err(MmuError::BadAddress);
        }
        Ok(())
    }

    /// Maps `frame` (a guest-physical address, aligned to `size`) at user address `va`.
    pub fn map(&mut self, w: &mut PageTableWriter, va: u64, frame: u64, prot: Protection, size: PageSize) -> Result<(), MmuError> {
        Self::check(va, size)?;
        let level = if size == PageSize::Large { 2 } else { 1 };
        let e = self.entry(w, va, level, true)?;
        if w.read(e) & PTE_PRESENT != 0 {
            return Err(MmuError::AlreadyMapped);
        }
        let large = if size == PageSize::Large { PTE_LARGE } else { 0 };
        w.write(e, frame | prot.bits() | large)
    }

    /// Writes `value`, whatever it is, into the entry for `va` at `level` (creating the
    /// tables above it). Only for the `hostile-ptes` demonstration: it lets the kernel
    /// play a hostile kernel and write entries the VMM must refuse.
    ///
    /// # Safety
    /// The kernel walks this space again (to destroy it), so if `value` is present, at
    /// level 2 or above, it must point at a frame the kernel may treat as a page table
    /// (all zero, or holding such entries itself), and the frame must stay allocated
    /// until the space is destroyed.
    pub unsafe fn write_raw_entry(&mut self, w: &mut PageTableWriter, va: u64, level: u32, value: u64) -> Result<(), MmuError> {
        let e = self.entry(w, va, level, true)?;
        w.write(e, value)?;
        w.flush()
    }

    /// Finds the leaf entry mapping `va`: (entry, value, size), reading entries through
    /// `read` (the writer's view, or the tables themselves).
    fn leaf(&self, read: impl Fn(EntryAddr) -> u64, va: u64) -> Option<(EntryAddr, u64, PageSize)> {
        let mut table = self.root;
        for level in (1..=4).rev() {
            let e = table.entry(index(va, level));
            let value = read(e);
            if value & PTE_PRESENT == 0 {
                return None;
            }
            if level == 1 {
                return Some((e, value, PageSize::Small));
            }
            if level == 2 && value & PTE_LARGE != 0 {
                return Some((e, value, PageSize::Large));
            }
            // SAFETY: a present entry above level 1 that is not a 2 MiB leaf (the walk
            // does not support 1 GiB leaves, which this module never writes).
            table = unsafe { next_table(value) };
        }
        None
    }

    /// Removes the mapping of `va`; returns the frame it mapped and its size. The caller
    /// flushes the TLB entry if this space is live.
    pub fn unmap(&mut self, w: &mut PageTableWriter, va: u64) -> Result<(u64, PageSize), MmuError> {
        let (e, value, size) = self.leaf(|e| w.read(e), va).ok_or(MmuError::NotMapped)?;
        w.write(e, 0)?;
        Ok((value & PTE_ADDR_MASK & !(size.bytes() - 1), size))
    }

    /// Changes the protection of the mapping of `va`.
    pub fn protect(&mut self, w: &mut PageTableWriter, va: u64, prot: Protection) -> Result<(), MmuError> {
        let (e, value, size) = self.leaf(|e| w.read(e), va).ok_or(MmuError::NotMapped)?;
        let large = if size == PageSize::Large { PTE_LARGE } else { 0 };
        w.write(e, (value & PTE_ADDR_MASK) | prot.bits() | large)
    }

    /// Translates `va` in software, as the MMU would: (guest-physical address, entry).
    pub fn translate(&self, va: u64) -> Option<(u64, u64)> {
        let (_, value, size) = self.leaf(EntryAddr::load, va)?;
        let base = value & PTE_ADDR_MASK & !(size.bytes() - 1);
        Some((base + (va & (size.bytes() - 1)), value))
    }

    /// Frees the lower half: every data frame still mapped (through `free_frame`, which
    /// knows the frame's size) and every table; then the PML4. Must not be the live space.
    ///
    /// Each present entry is cleared through the writer before its table is freed, so
    /// the pool's free tables are always all-zero and `pool::alloc_table` need not zero
    /// them. That matters under shadow paging, where every store to a table traps: a
    /// table costs as many clearing writes as it had entries, not 512.
    pub fn destroy(self, w: &mut PageTableWriter, free_frame: &mut dyn FnMut(u64, PageSize)) -> Result<(), MmuError> {
        for i in 0..KERNEL_HALF {
            let e = self.root.entry(i);
            let value = w.read(e);
            if value & PTE_PRESENT != 0 {
                // SAFETY: a present PML4 entry names a PDPT (the walk never writes a leaf
                // at level 4).
                free_subtree(w, unsafe { next_table(value) }, 3, free_frame)?;
                w.write(e, 0)?;
            }
        }
        // The kernel half is shared with every other space: clear this copy of it too.
        for i in KERNEL_HALF..ENTRIES {
            let e = self.root.entry(i);
            if w.read(e) != 0 {
                w.write(e, 0)?;
            }
        }
        w.flush()?;
        pool::free_table(self.root);
        Ok(())
    }
}

/// Frees a table at `level` (3 = PDPT … 1 = PT) and everything below it.
fn free_subtree(w: &mut PageTableWriter, table: PageTable, level: u32, free_frame: &mut dyn FnMut(u64, PageSize)) -> Result<(), MmuError> {
    for i in 0..ENTRIES {
        let e = table.entry(i);
        let value = w.read(e);
        if value & PTE_PRESENT == 0 {
            continue;
        }
        let target = value & PTE_ADDR_MASK;
        match level {
            1 => free_frame(target, PageSize::Small),
            2 if value & PTE_LARGE != 0 => free_frame(target & !(PageSize::Large.bytes() - 1), PageSize::Large),
            // SAFETY: a present entry above level 1 that is not a 2 MiB leaf.
            _ => free_subtree(w, unsafe { next_table(value) }, level - 1, free_frame)?,
        }
        w.write(e, 0)?;
    }
    // The clearing writes must be applied before the table can be handed out again.
    w.flush()?;
    pool::free_table(table);
    Ok(())
}
