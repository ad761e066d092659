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
use pv_abi::layout::{
    KERNEL_VIRT_BASE, LARGE_PAGE_SIZE, LOCAL_APIC_GPA, LOCAL_APIC_VIRT, PAGE_SIZE, PHYS_MAP_BASE, PT_POOL_MIN_BYTES,
};
use std::ops::Range;

/// Present.
pub const PTE_PRESENT: u64 = 1 << 0;
/// Writable.
pub const PTE_WRITABLE: u64 = 1 << 1;
/// Write-through caching.
pub const PTE_WRITE_THROUGH: u64 = 1 << 3;
/// Caching disabled: for device registers, whose reads and writes must reach the device.
pub const PTE_CACHE_DISABLE: u64 = 1 << 4;
/// Large page (in a PD entry: maps 2 MiB).
pub const PTE_LARGE: u64 = 1 << 7;
/// Not executable (needs EFER.NXE).
pub const PTE_NO_EXECUTE: u64 = 1 << 63;
/// Bits 12..51: the physical address in an entry.
pub const PTE_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

const ENTRIES_PER_TABLE: u64 = 512;
const GIB: u64 = 1 << 30;

/// Why the page tables could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PageTableError {
    /// The page-table pool ran out of pages for tables.
    #[error("the boot page tables do not fit in the page-table pool (which ends at {limit:#x})")]
    OutOfTablePages {
        /// End of the pool.
        limit: u64,
    },
    /// A table or entry lies outside RAM (only possible with a tiny --mem).
    #[error(transparent)]
    Memory(#[from] OutsideRam),
}

/// Index of `vaddr` in the table at `level` (4 = PML4 … 1 = PT).
fn table_index(vaddr: u64, level: u32) -> u64 {
    (vaddr >> (12 + 9 * (level - 1))) & (ENTRIES_PER_TABLE - 1)
}

/// Builds tables in guest RAM from a bump allocator over the page-table pool.
pub struct BootPageTables<'a> {
    ram: &'a GuestRam,
    next_free: u64,
    pool_end: u64,
    nx: bool,
    /// Guest-physical address of the PML4: what CR3 will hold.
    pub root: u64,
}

impl<'a> BootPageTables<'a> {
    /// Starts an empty tree with tables from `pool`. `nx` says whether the CPU
    /// supports no-execute pages.
    pub fn new(ram: &'a GuestRam, nx: bool, pool: Range<u64>) -> Result<Self, PageTableError> {
        let mut tables = BootPageTables { ram, next_free: pool.start, pool_end: pool.end, nx, root: 0 };
        tables.root = tables.alloc_table()?;
        Ok(tables)
    }

    /// The first pool frame not used by these tables.
    pub fn next_free(&self) -> u64 {
        self.next_free
    }

    fn alloc_table(&mut self) -> Result<u64, PageTableError> {
        let page = self.next_free;
        if page + PAGE_SIZE > self.pool_end {
            return Err(PageTableError::OutOfTablePages { limit: self.pool_end });
        }
        self.next_free += PAGE_SIZE;
        self.ram.write(page, &[0u8; PAGE_SIZE as usize])?;
        Ok(page)
    }

    fn no_execute(&self) -> u64 {
        if self.nx {
            PTE_NO_EXECUTE
        } else {
            0
        }
    }

    /// Returns the table that the entry for `vaddr` at `level` points to, creating it.
    fn next_table(&mut self, table: u64, vaddr: u64, level: u32) -> Result<u64, PageTableError> {
        let entry_gpa = table + table_index(vaddr, level) * 8;
        let entry = self.ram.read_u64(entry_gpa)?;
        if entry & PTE_PRESENT != 0 {
            return Ok(entry & PTE_ADDR_MASK);
        }
        let new = self.alloc_table()?;
        // Intermediate entries allow everything; the leaf decides the permissions.
        self.ram.write_u64(entry_gpa, new | PTE_PRESENT | PTE_WRITABLE)?;
        Ok(new)
    }

    /// Maps one 4 KiB page.
    pub fn map_page(&mut self, vaddr: u64, gpa: u64, writable: bool, executable: bool) -> Result<(), PageTableError> {
        let mut entry = gpa | PTE_PRESENT;
        if writable {
            entry |= PTE_WRITABLE;
        }
        if !executable {
            entry |= self.no_execute();
        }
        self.set_leaf(vaddr, entry)
    }

    /// Writes the level-1 entry for `vaddr`, creating the tables above it.
    fn set_leaf(&mut self, vaddr: u64, entry: u64) -> Result<(), PageTableError> {
        let mut table = self.root;
        for level in [4, 3, 2] {
            table = self.next_table(table, vaddr, level)?;
        }
        self.ram.write_u64(table + table_index(vaddr, 1) * 8, entry)?;
        Ok(())
    }

    /// Maps all of RAM at `PHYS_MAP_BASE` with 2 MiB pages (RAM size is a multiple of 2 MiB).
    pub fn map_direct(&mut self, ram_bytes: u64) -> Result<(), PageTableError> {
        let mut gpa = 0;
        while gpa < ram_bytes {
            let vaddr = PHYS_MAP_BASE + gpa;
            let mut table = self.root;
            for level in [4, 3] {
                table = self.next_table(table, vaddr, level)?;
            }
            let entry = gpa | PTE_PRESENT | PTE_WRITABLE | PTE_LARGE | self.no_execute();
            self.ram.write_u64(table + table_index(vaddr, 2) * 8, entry)?;
            gpa += LARGE_PAGE_SIZE;
        }
        Ok(())
    }

    /// Maps the local APIC's register page at `LOCAL_APIC_VIRT`, uncached: its
    /// registers are a device, and every read and write must reach it.
    pub fn map_local_apic(&mut self) -> Result<(), PageTableError> {
        let entry = LOCAL_APIC_GPA | PTE_PRESENT | PTE_WRITABLE | PTE_CACHE_DISABLE | PTE_WRITE_THROUGH | self.no_execute();
        self.set_leaf(LOCAL_APIC_VIRT, entry)
    }

    /// Maps each page of a kernel segment at `KERNEL_VIRT_BASE + gpa`.
    pub fn map_segment(&mut self, segment: &LoadSegment) -> Result<(), PageTableError> {
        let (start, end) = segment.phys_pages();
        for gpa in (start..end).step_by(PAGE_SIZE as usize) {
            self.map_page(KERNEL_VIRT_BASE + gpa, gpa, segment.writable, segment.executable)?;
        }
        Ok(())
    }
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

    /// A pool in the low MiB of the small test RAMs.
    const POOL: Range<u64> = 0x1_0000..0x10_0000;

    /// Walks the tables in software, as the MMU would: (gpa, writable, executable).
    fn walk(ram: &GuestRam, root: u64, vaddr: u64) -> Option<(u64, bool, bool)> {
        let mut table = root;
        let (mut writable, mut executable) = (true, true);
        for level in [4u32, 3, 2, 1] {
            let entry = ram.read_u64(table + table_index(vaddr, level) * 8).ok()?;
            if entry & PTE_PRESENT == 0 {
                return None;
            }
            writable &= entry & PTE_WRITABLE != 0;
            executable &= entry & PTE_NO_EXECUTE == 0;
            if level == 2 && entry & PTE_LARGE != 0 {
                let base = entry & PTE_ADDR_MASK & !(LARGE_PAGE_SIZE - 1);
                return Some((base + (vaddr & (LARGE_PAGE_SIZE - 1)), writable, executable));
            }
            table = entry & PTE_ADDR_MASK;
        }
        Some((table + (vaddr & (PAGE_SIZE - 1)), writable, executable))
    }

    fn segment(paddr: u64, size: u64, writable: bool, executable: bool) -> LoadSegment {
        LoadSegment { vaddr: KERNEL_VIRT_BASE + paddr, paddr, file_offset: 0, file_size: 0, mem_size: size, writable, executable }
    }

    #[test]
    fn kernel_segments_get_their_own_permissions() {
        let ram = GuestRam::new(16 << 20).unwrap();
        let mut pt = BootPageTables::new(&ram, true, POOL).unwrap();
        pt.map_segment(&segment(0x20_0000, 0x3000, false, true)).unwrap();
        pt.map_segment(&segment(0x20_3000, 0x1800, true, false)).unwrap();
        let v = KERNEL_VIRT_BASE + 0x20_0123;
        assert_eq!(walk(&ram, pt.root, v), Some((0x20_0123, false, true)), "text: read + execute");
        let v = KERNEL_VIRT_BASE + 0x20_4abc;
        assert_eq!(walk(&ram, pt.root, v), Some((0x20_4abc, true, false)), "data: read + write, no execute");
        assert_eq!(walk(&ram, pt.root, KERNEL_VIRT_BASE + 0x20_5000), None, "past the last segment");
    }

    #[test]
    fn direct_map_covers_exactly_ram() {
        let ram = GuestRam::new(6 << 20).unwrap();
        let mut pt = BootPageTables::new(&ram, true, POOL).unwrap();
        pt.map_direct(6 << 20).unwrap();
        assert_eq!(walk(&ram, pt.root, PHYS_MAP_BASE), Some((0, true, false)));
        assert_eq!(walk(&ram, pt.root, PHYS_MAP_BASE + (6 << 20) - 1), Some(((6 << 20) - 1, true, false)));
        assert_eq!(walk(&ram, pt.root, PHYS_MAP_BASE + (6 << 20)), None);
    }

    #[test]
    fn the_lower_half_is_unmapped() {
        let ram = GuestRam::new(16 << 20).unwrap();
        let mut pt = BootPageTables::new(&ram, true, POOL).unwrap();
        pt.map_direct(16 << 20).unwrap();
        pt.map_segment(&segment(0x20_0000, 0x1000, false, true)).unwrap();
        for v in [0, 0x1000, 0x20_0000, 0x7fff_ffff_f000] {
            assert_eq!(walk(&ram, pt.root, v), None, "{v:#x}");
        }
    }

    #[test]
    fn the_local_apic_is_mapped_uncached_beside_ram() {
        let ram = GuestRam::new(16 << 20).unwrap();
        let mut pt = BootPageTables::new(&ram, true, POOL).unwrap();
        pt.map_direct(16 << 20).unwrap();
        pt.map_local_apic().unwrap();
        assert_eq!(walk(&ram, pt.root, LOCAL_APIC_VIRT + 0xb0), Some((LOCAL_APIC_GPA + 0xb0, true, false)));
        assert_eq!(walk(&ram, pt.root, PHYS_MAP_BASE + (16 << 20)), None, "RAM's direct map still ends at RAM");
    }

    #[test]
    fn without_nx_support_no_entry_sets_the_nx_bit() {
        let ram = GuestRam::new(4 << 20).unwrap();
        let mut pt = BootPageTables::new(&ram, false, POOL).unwrap();
        pt.map_direct(4 << 20).unwrap();
        assert_eq!(walk(&ram, pt.root, PHYS_MAP_BASE + 0x1000), Some((0x1000, true, true)));
    }
}
