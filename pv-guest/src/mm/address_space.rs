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

use pv_abi::addr::{GuestVirt, PseudoFrame, PseudoPhys, PAGE_SIZE};
use pv_abi::paging::{Pte, PteFlags, ENTRIES_PER_TABLE};

use super::table::{EntryAddr, PageTable};
use super::writer::PageTableWriter;
use super::{pool, MmuError, PageSize, Protection};

/// First PML4 entry of the kernel's half.
const KERNEL_HALF: usize = 256;
/// End (exclusive) of the lower half: user addresses are below it.
pub const USER_END: GuestVirt = GuestVirt::new(0x0000_8000_0000_0000);

/// The table a present, non-leaf entry points to.
///
/// # Safety
/// `pte` must have been read from a table of an address space, above level 1, and not
/// be a large-page leaf: such entries are written only by this module, with tables from
/// the pool, or by [`AddressSpace::write_raw_entry`], whose caller promises the same.
unsafe fn next_table(pte: Pte) -> PageTable {
    // SAFETY: the caller guarantees the entry names a page table.
    unsafe { PageTable::at(pte.pseudo_frame()) }
}

/// The first frame of what the leaf `pte` of `size` maps (a large page's entry may
/// carry other bits, such as PAT, in its low address bits).
fn leaf_frame(pte: Pte, size: PageSize) -> PseudoFrame {
    let frames = size.bytes() / PAGE_SIZE;
    PseudoFrame::new(pte.pseudo_frame().raw() & !(frames - 1))
}

/// One address space.
pub struct AddressSpace {
    root: PageTable,
}

impl AddressSpace {
    /// A space with an empty lower half and the kernel's upper half, copied from the
    /// PML4 at `kernel_root` (the VMM's boot tables).
    pub fn new(w: &mut PageTableWriter, kernel_root: PseudoPhys) -> Result<Self, MmuError> {
        let root = pool::alloc_table().ok_or(MmuError::NoTables)?;
        // SAFETY: the boot-info page names the VMM's boot PML4, a page table in guest
        // RAM (BootInfo::check: inside the pool's boot part); only its entries are read.
        let kernel = unsafe { PageTable::at(kernel_root.frame()) };
        for i in KERNEL_HALF..ENTRIES_PER_TABLE {
            let entry = kernel.entry(i).load();
            if entry != Pte::EMPTY {
                w.write(root.entry(i), entry)?;
            }
        }
        w.flush()?;
        Ok(AddressSpace { root })
    }

    /// Guest-physical address of the PML4: what CR3 holds while this space runs.
    pub fn root(&self) -> PseudoPhys {
        self.root.gpa()
    }

    /// The entry for `va` at `level`, creating the tables above it if `create`.
    fn entry(&self, w: &mut PageTableWriter, va: GuestVirt, level: u32, create: bool) -> Result<EntryAddr, MmuError> {
        let mut table = self.root;
        for l in (level + 1..=4).rev() {
            let e = table.entry_for(va, l);
            let pte = w.read(e);
            if !pte.is_present() {
                if !create {
                    return Err(MmuError::NotMapped);
                }
                let new = pool::alloc_table().ok_or(MmuError::NoTables)?;
                // Intermediate entries allow everything; the leaf decides. Flush at once:
                // the walk reads through this entry next.
                let linked = w
                    .write(e, Pte::to_pseudo(new.frame(), PteFlags::PRESENT | PteFlags::WRITABLE | PteFlags::USER))
                    .and_then(|()| w.flush());
                if let Err(err) = linked {
                    // A refused batch changed nothing (hv undoes it whole), so the new
                    // table is linked nowhere and still all zero: give it back.
                    pool::free_table(new);
                    return Err(err);
                }
                table = new;
            } else if pte.is_large() {
                return Err(MmuError::AlreadyMapped);
            } else {
                // SAFETY: a present entry above the leaf level without the large bit.
                table = unsafe { next_table(pte) };
            }
        }
        Ok(table.entry_for(va, level))
    }

    fn check(va: GuestVirt, size: PageSize) -> Result<(), MmuError> {
        if !va.is_aligned(size.bytes()) || va >= USER_END {
            return Err(MmuError::BadAddress);
        }
        Ok(())
    }

    /// Maps `frame` (aligned to `size`) at user address `va`.
    pub fn map(&mut self, w: &mut PageTableWriter, va: GuestVirt, frame: PseudoFrame, prot: Protection, size: PageSize) -> Result<(), MmuError> {
        Self::check(va, size)?;
        let level = if size == PageSize::Large { 2 } else { 1 };
        let e = self.entry(w, va, level, true)?;
        if w.read(e).is_present() {
            return Err(MmuError::AlreadyMapped);
        }
        let large = if size == PageSize::Large { PteFlags::LARGE } else { PteFlags::empty() };
        w.write(e, Pte::to_pseudo(frame, prot.flags() | large))
    }

    /// Writes `pte`, whatever it is, into the entry for `va` at `level` (creating the
    /// tables above it). Only for the `hostile-ptes` demonstration: it lets the kernel
    /// play a hostile kernel and write entries the VMM must refuse.
    ///
    /// # Safety
    /// The kernel walks this space again (to destroy it), so if `pte` is present, at
    /// level 2 or above, it must point at a frame the kernel may treat as a page table
    /// (all zero, or holding such entries itself), and the frame must stay allocated
    /// until the space is destroyed.
    pub unsafe fn write_raw_entry(&mut self, w: &mut PageTableWriter, va: GuestVirt, level: u32, pte: Pte) -> Result<(), MmuError> {
        let e = self.entry(w, va, level, true)?;
        w.write(e, pte)?;
        w.flush()
    }

    /// Finds the leaf entry mapping `va`: (entry, its value, size), reading entries
    /// through `read` (the writer's view, or the tables themselves).
    fn leaf(&self, read: impl Fn(EntryAddr) -> Pte, va: GuestVirt) -> Option<(EntryAddr, Pte, PageSize)> {
        let mut table = self.root;
        for level in (1..=4).rev() {
            let e = table.entry_for(va, level);
            let pte = read(e);
            if !pte.is_present() {
                return None;
            }
            if level == 1 {
                return Some((e, pte, PageSize::Small));
            }
            if level == 2 && pte.is_large() {
                return Some((e, pte, PageSize::Large));
            }
            // SAFETY: a present entry above level 1 that is not a 2 MiB leaf (the walk
            // does not support 1 GiB leaves, which this module never writes).
            table = unsafe { next_table(pte) };
        }
        None
    }

    /// Removes the mapping of `va`; returns the frame it mapped and its size. The caller
    /// flushes the TLB entry if this space is live.
    pub fn unmap(&mut self, w: &mut PageTableWriter, va: GuestVirt) -> Result<(PseudoFrame, PageSize), MmuError> {
        let (e, pte, size) = self.leaf(|e| w.read(e), va).ok_or(MmuError::NotMapped)?;
        w.write(e, Pte::EMPTY)?;
        Ok((leaf_frame(pte, size), size))
    }

    /// Changes the protection of the mapping of `va`.
    pub fn protect(&mut self, w: &mut PageTableWriter, va: GuestVirt, prot: Protection) -> Result<(), MmuError> {
        let (e, pte, size) = self.leaf(|e| w.read(e), va).ok_or(MmuError::NotMapped)?;
        let large = if size == PageSize::Large { PteFlags::LARGE } else { PteFlags::empty() };
        w.write(e, Pte::to_pseudo(pte.pseudo_frame(), prot.flags() | large))
    }

    /// Translates `va` in software, as the MMU would: (guest-physical address, entry).
    pub fn translate(&self, va: GuestVirt) -> Option<(PseudoPhys, Pte)> {
        let (_, pte, size) = self.leaf(EntryAddr::load, va)?;
        let base = leaf_frame(pte, size).checked_address()?;
        Some((base.checked_add(va.raw() & (size.bytes() - 1))?, pte))
    }

    /// Frees the lower half: every data frame still mapped (through `free_frame`, which
    /// knows the frame's size) and every table; then the PML4. Must not be the live space.
    ///
    /// Each present entry is cleared through the writer before its table is freed, so
    /// the pool's free tables are always all-zero and `pool::alloc_table` need not zero
    /// them. That matters under shadow paging, where every store to a table traps: a
    /// table costs as many clearing writes as it had entries, not 512.
    pub fn destroy(self, w: &mut PageTableWriter, free_frame: &mut dyn FnMut(PseudoFrame, PageSize)) -> Result<(), MmuError> {
        for i in 0..KERNEL_HALF {
            let e = self.root.entry(i);
            let pte = w.read(e);
            if pte.is_present() {
                // SAFETY: a present PML4 entry names a PDPT (the walk never writes a leaf
                // at level 4).
                free_subtree(w, unsafe { next_table(pte) }, 3, free_frame)?;
                w.write(e, Pte::EMPTY)?;
            }
        }
        // The kernel half is shared with every other space: clear this copy of it too.
        for i in KERNEL_HALF..ENTRIES_PER_TABLE {
            let e = self.root.entry(i);
            if w.read(e) != Pte::EMPTY {
                w.write(e, Pte::EMPTY)?;
            }
        }
        w.flush()?;
        pool::free_table(self.root);
        Ok(())
    }
}

/// Frees a table at `level` (3 = PDPT … 1 = PT) and everything below it.
fn free_subtree(w: &mut PageTableWriter, table: PageTable, level: u32, free_frame: &mut dyn FnMut(PseudoFrame, PageSize)) -> Result<(), MmuError> {
    for i in 0..ENTRIES_PER_TABLE {
        let e = table.entry(i);
        let pte = w.read(e);
        if !pte.is_present() {
            continue;
        }
        match level {
            1 => free_frame(pte.pseudo_frame(), PageSize::Small),
            2 if pte.is_large() => free_frame(leaf_frame(pte, PageSize::Large), PageSize::Large),
            // SAFETY: a present entry above level 1 that is not a 2 MiB leaf.
            _ => free_subtree(w, unsafe { next_table(pte) }, level - 1, free_frame)?,
        }
        w.write(e, Pte::EMPTY)?;
    }
    // The clearing writes must be applied before the table can be handed out again.
    w.flush()?;
    pool::free_table(table);
    Ok(())
}
