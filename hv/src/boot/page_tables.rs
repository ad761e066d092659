//! The guest's first page tables, built by the VMM.
//!
//! The guest starts with paging already on, so someone must have built page tables:
//! hv does, in the first frames of the page-table pool at the top of RAM, following pv-abi's virtual
//! layout. x86-64 paging is a 4-level tree (PML4 → PDPT → PD → PT); each level uses 9
//! bits of the virtual address, and the last 12 bits are the offset in a 4 KiB page.
//!
//! ```text
//!  virtual address:  | 47..39 PML4 | 38..30 PDPT | 29..21 PD | 20..12 PT | 11..0 offset |
//! ```
//!
//! Two windows are mapped:
//! - the **direct map**: all RAM at `PHYS_MAP_BASE`, with 2 MiB pages (a PD entry with
//!   the PS bit set maps 2 MiB directly, skipping the PT level), read-write, never
//!   executable;
//! - the **kernel image**: each ELF segment at its linked address with 4 KiB pages and
//!   the segment's own permissions (write only if the ELF says W, execute only if X), so
//!   the kernel's code is read-only and its data is not executable from the first
//!   instruction on.

use super::elf::LoadSegment;
use crate::memory::{GuestRam, OutsideRam};
use pv_abi::addr::{GuestVirt, PseudoFrame, PseudoPhys};
use pv_abi::layout::{LOCAL_APIC_GPA, LOCAL_APIC_VIRT, PAGE_SIZE, PHYS_MAP_BASE, PT_POOL_MIN_BYTES};
use pv_abi::paging::{table_index, Pte, PteFlags, LARGE_PAGE_SIZE};
use std::ops::Range;

const GIB: u64 = 1 << 30;

/// Why the page tables could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PageTableError {
    /// The page-table pool ran out of pages for tables.
    #[error("the boot page tables do not fit in the page-table pool (which ends at {limit:#x})")]
    OutOfTablePages {
        /// End of the pool.
        limit: PseudoPhys,
    },
    /// A table or entry lies outside RAM (only possible with a tiny --mem).
    #[error(transparent)]
    Memory(#[from] OutsideRam),
}

/// Builds tables in guest RAM from a bump allocator over the page-table pool.
pub struct BootPageTables<'a> {
    ram: &'a GuestRam,
    next_free: PseudoPhys,
    pool_end: PseudoPhys,
    nx: bool,
    /// Pseudo-physical address of the PML4: what CR3 will hold in ept mode (and what
    /// shadow mode builds the first shadow of).
    pub root: PseudoPhys,
}

impl<'a> BootPageTables<'a> {
    /// Starts an empty tree with tables from `pool`. `nx` says whether the CPU
    /// supports no-execute pages.
    pub fn new(ram: &'a GuestRam, nx: bool, pool: Range<PseudoPhys>) -> Result<Self, PageTableError> {
        let mut tables = BootPageTables { ram, next_free: pool.start, pool_end: pool.end, nx, root: pool.start };
        tables.root = tables.alloc_table()?;
        Ok(tables)
    }

    /// The first pool frame not used by these tables.
    pub fn next_free(&self) -> PseudoPhys {
        self.next_free
    }

    fn alloc_table(&mut self) -> Result<PseudoPhys, PageTableError> {
        let page = self.next_free;
        let out_of_pages = PageTableError::OutOfTablePages { limit: self.pool_end };
        match page.checked_add(PAGE_SIZE) {
            Some(next) if next <= self.pool_end => self.next_free = next,
            _ => return Err(out_of_pages),
        }
        self.ram.write(page, &[0u8; PAGE_SIZE as usize])?;
        Ok(page)
    }

    /// Where entry `index` of the table at `table` is. Tables come from the pool inside
    /// RAM and indices from [`table_index`] (always below 512), so this cannot fail for
    /// them; a failure would be a bug here, reported as a table outside RAM.
    fn entry_address(&self, table: PseudoPhys, index: usize) -> Result<PseudoPhys, OutsideRam> {
        table.frame().table_entry(index).ok_or(OutsideRam { gpa: table, len: PAGE_SIZE, ram: self.ram.size() })
    }

    fn no_execute(&self) -> PteFlags {
        if self.nx {
            PteFlags::NO_EXECUTE
        } else {
            PteFlags::empty()
        }
    }

    /// Returns the table that the entry for `vaddr` at `level` points to, creating it.
    fn next_table(&mut self, table: PseudoPhys, vaddr: GuestVirt, level: u32) -> Result<PseudoPhys, PageTableError> {
        let entry_at = self.entry_address(table, table_index(vaddr, level))?;
        let entry = Pte::from_raw(self.ram.read_u64(entry_at)?);
        if entry.is_present() {
            return Ok(table_of(entry));
        }
        let new = self.alloc_table()?;
        // Intermediate entries allow everything; the leaf decides the permissions.
        let link = Pte::to_pseudo(new.frame(), PteFlags::PRESENT | PteFlags::WRITABLE);
        self.ram.write_u64(entry_at, link.raw())?;
        Ok(new)
    }

    /// Maps one 4 KiB page.
    pub fn map_page(&mut self, vaddr: GuestVirt, gpa: PseudoPhys, writable: bool, executable: bool) -> Result<(), PageTableError> {
        let mut flags = PteFlags::PRESENT;
        if writable {
            flags |= PteFlags::WRITABLE;
        }
        if !executable {
            flags |= self.no_execute();
        }
        self.set_leaf(vaddr, Pte::to_pseudo(gpa.frame(), flags))
    }

    /// Writes the level-1 entry for `vaddr`, creating the tables above it.
    fn set_leaf(&mut self, vaddr: GuestVirt, entry: Pte) -> Result<(), PageTableError> {
        let mut table = self.root;
        for level in [4, 3, 2] {
            table = self.next_table(table, vaddr, level)?;
        }
        self.ram.write_u64(self.entry_address(table, table_index(vaddr, 1))?, entry.raw())?;
        Ok(())
    }

    /// Maps all of RAM at `PHYS_MAP_BASE` with 2 MiB pages (RAM size is a multiple of 2 MiB).
    pub fn map_direct(&mut self, ram_bytes: u64) -> Result<(), PageTableError> {
        let flags = PteFlags::PRESENT | PteFlags::WRITABLE | PteFlags::LARGE | self.no_execute();
        for offset in (0..ram_bytes).step_by(LARGE_PAGE_SIZE as usize) {
            let vaddr = GuestVirt::new(PHYS_MAP_BASE + offset);
            let mut table = self.root;
            for level in [4, 3] {
                table = self.next_table(table, vaddr, level)?;
            }
            let entry = Pte::to_pseudo(PseudoPhys::new(offset).frame(), flags);
            self.ram.write_u64(self.entry_address(table, table_index(vaddr, 2))?, entry.raw())?;
        }
        Ok(())
    }

    /// Maps the local APIC's register page at `LOCAL_APIC_VIRT`, uncached: its
    /// registers are a device, and every read and write must reach it.
    pub fn map_local_apic(&mut self) -> Result<(), PageTableError> {
        let flags = PteFlags::PRESENT | PteFlags::WRITABLE | PteFlags::CACHE_DISABLE | PteFlags::WRITE_THROUGH | self.no_execute();
        let entry = Pte::to_pseudo(PseudoPhys::new(LOCAL_APIC_GPA).frame(), flags);
        self.set_leaf(GuestVirt::new(LOCAL_APIC_VIRT), entry)
    }

    /// Maps each page of a kernel segment at its linked address (`KERNEL_VIRT_BASE +
    /// gpa`, which `parse_kernel` checked), page by page.
    pub fn map_segment(&mut self, segment: &LoadSegment) -> Result<(), PageTableError> {
        let (start, end) = segment.phys_pages();
        let first_page = segment.vaddr.page_start();
        let pages = end.offset_from(start).unwrap_or(0) / PAGE_SIZE;
        for page in 0..pages {
            let offset = page * PAGE_SIZE;
            let (Some(vaddr), Some(gpa)) = (first_page.checked_add(offset), start.checked_add(offset)) else {
                return Err(OutsideRam { gpa: start, len: segment.mem_size, ram: self.ram.size() }.into());
            };
            self.map_page(vaddr, gpa, segment.writable, segment.executable)?;
        }
        Ok(())
    }
}

/// The table a present non-leaf entry of the boot tables points to. Its frame was
/// written by `next_table` from a pool address, so it always has an address.
fn table_of(entry: Pte) -> PseudoPhys {
    let frame: PseudoFrame = entry.pseudo_frame();
    frame.checked_address().unwrap_or_default()
}

/// Guarantees the smallest pool can hold the boot tables for the largest RAM hv allows.
const _: () = {
    let max_ram = pv_abi::layout::MAX_MEM_MIB << 20;
    // PML4 + direct-map PDPT + one PD per GiB + kernel PDPT, PD and a few PTs + the
    // local APIC's PD and PT.
    let tables = 2 + max_ram / GIB + 8 + 2;
    assert!(tables * PAGE_SIZE <= PT_POOL_MIN_BYTES);
};

#[cfg(test)]
mod tests {
    use super::*;
    use pv_abi::layout::KERNEL_VIRT_BASE;

    /// A pool in the low MiB of the small test RAMs.
    const POOL: Range<PseudoPhys> = PseudoPhys::new(0x1_0000)..PseudoPhys::new(0x10_0000);

    /// Walks the tables in software, as the MMU would: (gpa, writable, executable).
    fn walk(ram: &GuestRam, root: PseudoPhys, va: GuestVirt) -> Option<(PseudoPhys, bool, bool)> {
        let mut table = root;
        let (mut writable, mut executable) = (true, true);
        for level in [4u32, 3, 2, 1] {
            let entry = Pte::from_raw(ram.read_u64(table.frame().table_entry(table_index(va, level))?).ok()?);
            if !entry.is_present() {
                return None;
            }
            writable &= entry.flags().contains(PteFlags::WRITABLE);
            executable &= !entry.flags().contains(PteFlags::NO_EXECUTE);
            let next = entry.pseudo_frame().checked_address()?;
            if level == 2 && entry.is_large() {
                return next.checked_add(va.raw() & (LARGE_PAGE_SIZE - 1)).map(|gpa| (gpa, writable, executable));
            }
            table = next;
        }
        table.checked_add(va.page_offset()).map(|gpa| (gpa, writable, executable))
    }

    /// `walk` at the virtual address `va`, with the answer's address as a number.
    fn walk_at(ram: &GuestRam, root: PseudoPhys, va: u64) -> Option<(u64, bool, bool)> {
        walk(ram, root, GuestVirt::new(va)).map(|(gpa, w, x)| (gpa.raw(), w, x))
    }

    fn segment(paddr: u64, size: u64, writable: bool, executable: bool) -> LoadSegment {
        LoadSegment {
            vaddr: GuestVirt::new(KERNEL_VIRT_BASE + paddr),
            paddr: PseudoPhys::new(paddr),
            file_offset: 0,
            file_size: 0,
            mem_size: size,
            writable,
            executable,
        }
    }

    #[test]
    fn kernel_segments_get_their_own_permissions() {
        let ram = GuestRam::new(16 << 20).unwrap();
        let mut pt = BootPageTables::new(&ram, true, POOL).unwrap();
        pt.map_segment(&segment(0x20_0000, 0x3000, false, true)).unwrap();
        pt.map_segment(&segment(0x20_3000, 0x1800, true, false)).unwrap();
        let v = KERNEL_VIRT_BASE + 0x20_0123;
        assert_eq!(walk_at(&ram, pt.root, v), Some((0x20_0123, false, true)), "text: read + execute");
        let v = KERNEL_VIRT_BASE + 0x20_4abc;
        assert_eq!(walk_at(&ram, pt.root, v), Some((0x20_4abc, true, false)), "data: read + write, no execute");
        assert_eq!(walk_at(&ram, pt.root, KERNEL_VIRT_BASE + 0x20_5000), None, "past the last segment");
    }

    #[test]
    fn hostile_an_empty_segment_inside_the_text_page_leaves_it_executable() {
        let ram = GuestRam::new(16 << 20).unwrap();
        let mut pt = BootPageTables::new(&ram, true, POOL).unwrap();
        pt.map_segment(&segment(0x20_0000, 0x100, false, true)).unwrap();
        // Legal ELF: a zero-size writable, non-executable segment in the text's page.
        pt.map_segment(&segment(0x20_0800, 0, true, false)).unwrap();
        let v = KERNEL_VIRT_BASE + 0x20_0010;
        assert_eq!(walk_at(&ram, pt.root, v), Some((0x20_0010, false, true)), "the text page keeps its own permissions");
    }

    #[test]
    fn direct_map_covers_exactly_ram() {
        let ram = GuestRam::new(6 << 20).unwrap();
        let mut pt = BootPageTables::new(&ram, true, POOL).unwrap();
        pt.map_direct(6 << 20).unwrap();
        assert_eq!(walk_at(&ram, pt.root, PHYS_MAP_BASE), Some((0, true, false)));
        assert_eq!(walk_at(&ram, pt.root, PHYS_MAP_BASE + (6 << 20) - 1), Some(((6 << 20) - 1, true, false)));
        assert_eq!(walk_at(&ram, pt.root, PHYS_MAP_BASE + (6 << 20)), None);
    }

    #[test]
    fn the_lower_half_is_unmapped() {
        let ram = GuestRam::new(16 << 20).unwrap();
        let mut pt = BootPageTables::new(&ram, true, POOL).unwrap();
        pt.map_direct(16 << 20).unwrap();
        pt.map_segment(&segment(0x20_0000, 0x1000, false, true)).unwrap();
        for v in [0, 0x1000, 0x20_0000, 0x7fff_ffff_f000] {
            assert_eq!(walk_at(&ram, pt.root, v), None, "{v:#x}");
        }
    }

    #[test]
    fn the_local_apic_is_mapped_uncached_beside_ram() {
        let ram = GuestRam::new(16 << 20).unwrap();
        let mut pt = BootPageTables::new(&ram, true, POOL).unwrap();
        pt.map_direct(16 << 20).unwrap();
        pt.map_local_apic().unwrap();
        assert_eq!(walk_at(&ram, pt.root, LOCAL_APIC_VIRT + 0xb0), Some((LOCAL_APIC_GPA + 0xb0, true, false)));
        assert_eq!(walk_at(&ram, pt.root, PHYS_MAP_BASE + (16 << 20)), None, "RAM's direct map still ends at RAM");
    }

    #[test]
    fn without_nx_support_no_entry_sets_the_nx_bit() {
        let ram = GuestRam::new(4 << 20).unwrap();
        let mut pt = BootPageTables::new(&ram, false, POOL).unwrap();
        pt.map_direct(4 << 20).unwrap();
        assert_eq!(walk_at(&ram, pt.root, PHYS_MAP_BASE + 0x1000), Some((0x1000, true, true)));
    }
}
