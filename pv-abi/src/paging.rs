//! x86-64 paging, written down once for the VMM, the shadow MMU and the guest.
//!
//! A virtual address is translated by a 4-level tree of page tables. Each table is one
//! 4 KiB frame of 512 eight-byte entries; each level consumes 9 bits of the address and
//! the last 12 bits are the offset in the page:
//!
//! ```text
//!  virtual address:  | 47..39 PML4 | 38..30 PDPT | 29..21 PD | 20..12 PT | 11..0 offset |
//!  level:                  4             3           2           1
//! ```
//!
//! An entry holds the next table's (or the page's) frame in bits 12..51 and flags in the
//! rest ([`PteFlags`]). At level 2 an entry with [`PteFlags::LARGE`] maps a 2 MiB page
//! directly; at level 3, a 1 GiB page.
//!
//! Every page table hv's guest uses lives in the **page-table pool** at the top of its
//! RAM ([`crate::layout::pt_pool`]): that is what lets shadow mode map the pool read-only
//! and trap every page-table write (the course notes' "write-protected guest page tables").

use bitflags::bitflags;

use crate::addr::{GuestVirt, MachineAddr, MachineFrame, PseudoFrame, PseudoPhys, PAGE_SHIFT};

/// Bytes in one page-table entry.
pub const ENTRY_SIZE: u64 = 8;
/// Entries in one page table.
pub const ENTRIES_PER_TABLE: usize = 512;
/// Bits of the virtual address each level consumes (`log2(ENTRIES_PER_TABLE)`).
pub const INDEX_BITS: u32 = 9;
/// Levels in the tree: PML4 (4), PDPT (3), PD (2), PT (1).
pub const LEVELS: u32 = 4;
/// The root's level: CR3 points at a PML4.
pub const ROOT_LEVEL: u32 = 4;
/// Size of a large page: one level-2 entry with [`PteFlags::LARGE`].
pub const LARGE_PAGE_SIZE: u64 = 2 << 20;
/// Size of a huge page: one level-3 entry with [`PteFlags::LARGE`].
pub const HUGE_PAGE_SIZE: u64 = 1 << 30;
/// The bits of an entry that hold a frame's address (bits 12..51).
pub const ENTRY_ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Bits 52..62: ignored by the CPU, so software may use them; hv reserves them so a
/// guest cannot smuggle meaning into an entry the shadow MMU copies.
pub const ENTRY_RESERVED_MASK: u64 = 0x7ff0_0000_0000_0000;

bitflags! {
    /// The flag bits of a page-table entry (the frame address is not a flag: see [`Pte`]).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct PteFlags: u64 {
        /// The entry is valid; without it the CPU ignores every other bit and faults.
        const PRESENT = 1 << 0;
        /// Writes are allowed (at every level of the walk).
        const WRITABLE = 1 << 1;
        /// Ring 3 may use the mapping (at every level of the walk).
        const USER = 1 << 2;
        /// Write-through caching.
        const WRITE_THROUGH = 1 << 3;
        /// Caching disabled: for device registers, whose accesses must reach the device.
        const CACHE_DISABLE = 1 << 4;
        /// Set by the CPU when the entry is used for a translation.
        const ACCESSED = 1 << 5;
        /// Set by the CPU when the page is written (leaf entries only).
        const DIRTY = 1 << 6;
        /// Page size: a level-2 (or level-3) entry maps a large page itself.
        const LARGE = 1 << 7;
        /// Global: kept in the TLB across CR3 loads (when CR4.PGE is on).
        const GLOBAL = 1 << 8;
        /// Instruction fetches are not allowed (needs EFER.NXE).
        const NO_EXECUTE = 1 << 63;
    }
}

/// A page-table entry as the CPU reads it: a frame number and [`PteFlags`].
///
/// Whether the frame is pseudo-physical or machine depends on the tree the entry is in
/// (the guest's own tables name pseudo-physical frames; shadow tables and, in ept mode,
/// everything name machine frames), so the entry offers both readings and the caller,
/// who knows which tree it walks, picks one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Pte(u64);

impl Pte {
    /// The entry that is not present (all zero).
    pub const EMPTY: Pte = Pte(0);

    /// The entry with this bit pattern (as read from a table or a hypercall argument).
    pub const fn from_raw(raw: u64) -> Self {
        Pte(raw)
    }

    /// The bit pattern to store in a table.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// An entry of a guest tree pointing at a pseudo-physical frame. Frame bits beyond
    /// the entry's address field are dropped.
    pub const fn to_pseudo(frame: PseudoFrame, flags: PteFlags) -> Self {
        Pte(((frame.raw() << PAGE_SHIFT) & ENTRY_ADDRESS_MASK) | flags.bits())
    }

    /// An entry of a shadow (or ept-mode) tree pointing at a machine frame. Frame bits
    /// beyond the entry's address field are dropped.
    pub const fn to_machine(frame: MachineFrame, flags: PteFlags) -> Self {
        Pte(((frame.raw() << PAGE_SHIFT) & ENTRY_ADDRESS_MASK) | flags.bits())
    }

    /// The flag bits that are defined (reserved and unknown bits dropped).
    pub const fn flags(self) -> PteFlags {
        PteFlags::from_bits_truncate(self.0)
    }

    /// Whether the entry is present.
    pub const fn is_present(self) -> bool {
        self.0 & PteFlags::PRESENT.bits() != 0
    }

    /// Whether a level-2 or level-3 entry maps a large page itself.
    pub const fn is_large(self) -> bool {
        self.0 & PteFlags::LARGE.bits() != 0
    }

    /// The bits 12..51 as a frame number, read as pseudo-physical (a guest tree).
    pub const fn pseudo_frame(self) -> PseudoFrame {
        PseudoFrame::new((self.0 & ENTRY_ADDRESS_MASK) >> PAGE_SHIFT)
    }

    /// The bits 12..51 as a frame number, read as machine (a shadow or ept-mode tree).
    pub const fn machine_frame(self) -> MachineFrame {
        MachineFrame::new((self.0 & ENTRY_ADDRESS_MASK) >> PAGE_SHIFT)
    }

    /// Whether any of bits 52..62 is set (hv treats that as a malformed entry).
    pub const fn has_reserved_bits(self) -> bool {
        self.0 & ENTRY_RESERVED_MASK != 0
    }
}

impl core::fmt::Debug for Pte {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Pte({:#x})", self.0)
    }
}

// `table_index` takes the level modulo LEVELS with a mask: LEVELS must be a power of two.
const _: () = assert!(LEVELS.is_power_of_two());

/// The index of `va` in the table at `level` (4 = PML4 … 1 = PT). Levels outside 1..=4
/// are a bug in the caller, not guest input: a debug assertion catches them, and in
/// release builds the level is taken modulo 4 (one `and`, since every page-table walk
/// of the guest and the shadow MMU runs this, on hosts where ring 0 may be emulated).
pub const fn table_index(va: GuestVirt, level: u32) -> usize {
    debug_assert!(level >= 1 && level <= LEVELS);
    let shift = PAGE_SHIFT + INDEX_BITS * (level.wrapping_sub(1) & (LEVELS - 1));
    ((va.raw() >> shift) as usize) & (ENTRIES_PER_TABLE - 1)
}

/// Bytes one entry at `level` covers: 4 KiB at level 1, 2 MiB at 2, 1 GiB at 3, 512 GiB
/// at 4.
pub const fn entry_span(level: u32) -> u64 {
    debug_assert!(level >= 1 && level <= LEVELS);
    1u64 << (PAGE_SHIFT + INDEX_BITS * (level - 1))
}

// Where entry `index` of a table is, for both kinds of frame a table can live in.
impl MachineFrame {
    /// The address of entry `index` (0..512) of the page table in this frame, or `None`
    /// if the index is not one of a table's 512 entries.
    pub const fn table_entry(self, index: usize) -> Option<MachineAddr> {
        if index >= ENTRIES_PER_TABLE {
            return None;
        }
        match self.checked_address() {
            Some(table) => table.checked_add(index as u64 * ENTRY_SIZE),
            None => None,
        }
    }
}

impl PseudoFrame {
    /// The address of entry `index` (0..512) of the page table in this frame, or `None`
    /// if the index is not one of a table's 512 entries.
    pub const fn table_entry(self, index: usize) -> Option<PseudoPhys> {
        if index >= ENTRIES_PER_TABLE {
            return None;
        }
        match self.checked_address() {
            Some(table) => table.checked_add(index as u64 * ENTRY_SIZE),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_split_the_address_in_nines() {
        let va = GuestVirt::new(0xffff_8000_4020_3000);
        assert_eq!(table_index(va, 4), 256);
        assert_eq!(table_index(va, 3), 1);
        assert_eq!(table_index(va, 2), 1);
        assert_eq!(table_index(va, 1), 3);
        assert_eq!(entry_span(1), 4096);
        assert_eq!(entry_span(2), LARGE_PAGE_SIZE);
        assert_eq!(entry_span(3), HUGE_PAGE_SIZE);
    }

    #[test]
    fn entries_keep_frame_and_flags_apart() {
        let e = Pte::to_pseudo(
            PseudoFrame::new(0x1234),
            PteFlags::PRESENT | PteFlags::WRITABLE | PteFlags::NO_EXECUTE,
        );
        assert_eq!(e.raw(), 0x8000_0000_0123_4003);
        assert_eq!(e.pseudo_frame(), PseudoFrame::new(0x1234));
        assert!(e.is_present() && !e.is_large());
        assert_eq!(
            e.flags(),
            PteFlags::PRESENT | PteFlags::WRITABLE | PteFlags::NO_EXECUTE
        );
    }

    #[test]
    fn hostile_entry_bits_do_not_leak_into_the_frame() {
        let e = Pte::from_raw(u64::MAX);
        assert_eq!(
            e.machine_frame(),
            MachineFrame::new(ENTRY_ADDRESS_MASK >> PAGE_SHIFT)
        );
        assert!(e.has_reserved_bits());
        assert_eq!(e.flags(), PteFlags::all());
        // A frame number too large for the address field is cut, not spilled into flags.
        let e = Pte::to_machine(MachineFrame::new(u64::MAX), PteFlags::empty());
        assert_eq!(e.flags(), PteFlags::empty());
        assert!(!e.has_reserved_bits());
    }
}
