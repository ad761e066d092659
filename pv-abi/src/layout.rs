//! Where things are in the guest, physically and virtually.
//!
//! ## Guest-physical map (what the VMM places before the guest runs)
//!
//! ```text
//!  0x0000_0000 ┌──────────────────────────────┐
//!              │ null page (never used)       │
//!  0x0000_1000 ├──────────────────────────────┤ BOOT_GDT_GPA
//!              │ boot GDT (3 descriptors)     │
//!  0x0000_2000 ├──────────────────────────────┤ BOOT_INFO_GPA
//!              │ boot-info page (BootInfo)    │
//!  0x0000_3000 ├──────────────────────────────┤ SHARED_INFO_GPA
//!              │ shared-info page (event-     │
//!              │ channel pending flags)       │
//!  0x0000_4000 ├──────────────────────────────┤
//!              │ (unused: the grant table's   │
//!              │ one frame before ABI 6)      │
//!  0x0000_5000 ├──────────────────────────────┤ CONSOLE_RING_GPA
//!              │ console ring                 │
//!  0x0000_6000 ├──────────────────────────────┤ BLOCK_RING_GPA
//!              │ block ring                   │
//!  0x0000_7000 ├──────────────────────────────┤ NET_TX_RING_GPA
//!              │ network transmit ring        │
//!  0x0000_8000 ├──────────────────────────────┤ NET_RX_RING_GPA
//!              │ network receive ring         │
//!  0x0000_9000 ├──────────────────────────────┤ BALLOON_RING_GPA
//!              │ balloon ring                 │
//!  0x0000_a000 ├──────────────────────────────┤
//!              │ (unused)                     │
//!  0x0001_0000 ├──────────────────────────────┤ GRANT_TABLE_GPA
//!              │ grant table, 4 frames        │
//!              │ (guest writes)               │
//!  0x0001_4000 ├──────────────────────────────┤
//!              │ (unused)                     │
//!  0x0010_0000 ├──────────────────────────────┤ VMM_RESERVED_END
//!              │ kernel image (ELF p_paddr)   │  the linker script puts it at 2 MiB
//!              ├──────────────────────────────┤ BootInfo::free_mem_start
//!              │ free memory for the guest    │
//!              ├──────────────────────────────┤ BootInfo::free_mem_end = pt_pool_start
//!              │ page-table pool: the VMM's   │
//!              │ first page tables, then the  │  pt_pool_free
//!              │ guest's own                  │
//!  mem_bytes   └──────────────────────────────┘ pt_pool_end
//! ```
//!
//! ## The page-table pool
//!
//! Every page table the guest uses (the VMM's first ones included) is a frame of the
//! pool at the top of RAM. Keeping them together is what lets a hypervisor watch them:
//! in shadow-paging mode the pool can be mapped read-only, so each page-table write traps
//! to the VMM, which keeps its shadow tables in step (see the memory-modes docs).
//!
//! Everything below [`VMM_RESERVED_END`] belongs to the VMM: an ELF segment that
//! asks to be loaded there is refused.
//!
//! ## Guest-virtual map (the first page tables)
//!
//! ```text
//!  0x0000_0000_0000_0000 .. lower half       unmapped at boot (user tasks later)
//!  PHYS_MAP_BASE + gpa                        every byte of guest RAM, read-write,
//!                                             never executable (2 MiB pages)
//!  KERNEL_VIRT_BASE + gpa                     the kernel image, each ELF segment with
//!                                             its own permissions (4 KiB pages)
//!  PHYS_MAP_BASE + LOCAL_APIC_GPA             the local APIC's registers (one uncached
//!                                             4 KiB page), for interrupt acknowledgement
//! ```
//!
//! RAM is at most [`MAX_MEM_MIB`] so that it always ends below the local APIC's
//! physical address, as on a PC, where the top of the 4 GiB space holds devices.
//!
//! The kernel is linked in the top 2 GiB ("higher half", as Linux does) so that the
//! whole lower half stays free for user address spaces.

use core::ops::Range;

use crate::addr::PseudoPhys;
pub use crate::addr::PAGE_SIZE;
pub use crate::paging::LARGE_PAGE_SIZE;

/// Guest-physical address of the boot GDT the VMM writes (the guest loads its own soon after).
pub const BOOT_GDT_GPA: u64 = 0x1000;
/// Guest-physical address of the boot-info page ([`crate::BootInfo`]).
pub const BOOT_INFO_GPA: u64 = 0x2000;
/// Guest-physical address of the shared-info page (event channels).
pub const SHARED_INFO_GPA: u64 = 0x3000;
/// Guest-physical address of the grant table: [`GRANT_TABLE_FRAMES`] contiguous frames
/// from here. (Up to ABI 5 it was one frame at 0x4000; it grew, as Xen's does, so that
/// 32 block requests of 64 KiB fit: see `grant`, "Why several frames".)
pub const GRANT_TABLE_GPA: u64 = 0x1_0000;
/// Frames of the grant table (`grant` says what is in them and why this many).
pub const GRANT_TABLE_FRAMES: u32 = 4;
/// Bytes of the grant table.
pub const GRANT_TABLE_BYTES: u64 = GRANT_TABLE_FRAMES as u64 * PAGE_SIZE;
/// Guest-physical address of the console device's ring page.
pub const CONSOLE_RING_GPA: u64 = 0x5000;
/// Guest-physical address of the block device's ring page.
pub const BLOCK_RING_GPA: u64 = 0x6000;
/// Guest-physical address of the network device's transmit ring page (guest → switch).
pub const NET_TX_RING_GPA: u64 = 0x7000;
/// Guest-physical address of the network device's receive ring page (the guest posts
/// empty buffers; the backend fills them with frames from the switch).
pub const NET_RX_RING_GPA: u64 = 0x8000;
/// Guest-physical address of the balloon device's ring page.
pub const BALLOON_RING_GPA: u64 = 0x9000;
/// Guest-physical address of the local APIC's registers (the architectural default).
pub const LOCAL_APIC_GPA: u64 = 0xfee0_0000;
/// Where the guest finds the local APIC's registers.
pub const LOCAL_APIC_VIRT: u64 = PHYS_MAP_BASE + LOCAL_APIC_GPA;

/// Size of the page-table pool: one sixteenth of RAM, between these bounds.
pub const fn pt_pool_bytes(mem_bytes: u64) -> u64 {
    let sixteenth = (mem_bytes / 16) & !(LARGE_PAGE_SIZE - 1);
    if sixteenth < PT_POOL_MIN_BYTES {
        PT_POOL_MIN_BYTES
    } else if sixteenth > PT_POOL_MAX_BYTES {
        PT_POOL_MAX_BYTES
    } else {
        sixteenth
    }
}
/// The page-table pool for `mem_bytes` of RAM: the top [`pt_pool_bytes`] of it. This is
/// the one place the pool's bounds are computed; the boot page tables, the boot-info
/// page, the grant window and shadow mode's memory layout all ask here.
pub const fn pt_pool(mem_bytes: u64) -> Range<PseudoPhys> {
    PseudoPhys::new(mem_bytes.saturating_sub(pt_pool_bytes(mem_bytes)))..PseudoPhys::new(mem_bytes)
}
/// Smallest page-table pool (256 tables).
pub const PT_POOL_MIN_BYTES: u64 = 1 << 20;
/// Largest page-table pool (16384 tables).
pub const PT_POOL_MAX_BYTES: u64 = 64 << 20;
/// End (exclusive) of the region the VMM reserves for itself: guest memory below this
/// address is never given to the kernel image or to the guest's free memory.
pub const VMM_RESERVED_END: u64 = 0x10_0000;

/// Virtual base of the direct map: guest-physical address `p` is mapped at
/// `PHYS_MAP_BASE + p`. It is the first address of the upper half of the address space.
pub const PHYS_MAP_BASE: u64 = 0xffff_8000_0000_0000;
/// Virtual base of the kernel image: a segment loaded at guest-physical `p` must be
/// linked at `KERNEL_VIRT_BASE + p`. The top 2 GiB, as x86-64's "kernel" code model expects.
pub const KERNEL_VIRT_BASE: u64 = 0xffff_ffff_8000_0000;

/// Smallest guest RAM hv accepts, in MiB: room for the reserved area, the kernel and
/// some free memory.
pub const MIN_MEM_MIB: u64 = 8;
/// Largest guest RAM hv accepts, in MiB: 3 GiB, so RAM ends well below the local
/// APIC at [`LOCAL_APIC_GPA`] (just under 4 GiB).
pub const MAX_MEM_MIB: u64 = 3 * 1024;

const _: () = assert!((MAX_MEM_MIB << 20) <= LOCAL_APIC_GPA);
// The grant table lies past the last ring page and inside the reserved area, where no
// grant may point (`grant::grant_window`), so no grant can make a backend write it.
const _: () = assert!(BALLOON_RING_GPA + PAGE_SIZE <= GRANT_TABLE_GPA);
const _: () = assert!(GRANT_TABLE_GPA + GRANT_TABLE_BYTES <= VMM_RESERVED_END);
