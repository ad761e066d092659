//! The guest's memory management: frames, page tables, address spaces, through a
//! paravirtual MMU interface.
//!
//! A native kernel edits its page tables with ordinary stores. A paravirtual kernel must
//! be ready for a hypervisor that wants to see every edit (to keep shadow page tables in
//! step), so all page-table writes here go through one interface,
//! [`writer::PageTableWriter`], with two back ends:
//!
//! - **direct**: a plain store per entry. Under `ept` the hypervisor never notices;
//!   under shadow paging each store to the (read-only) page-table pool would trap.
//! - **batched**: entries are collected and sent with the `mmu_update` hypercall, many
//!   writes for the price of one exit. That is Xen's PV MMU interface in miniature.
//!
//! Page tables come only from the page-table pool the boot-info page announces
//! ([`pool`]), and an [`address_space::AddressSpace`] is one tree of them: its own
//! lower (user) half, and the kernel's upper half shared with every other space.
//! Data frames come from [`frames`]. Addresses and frames are `pv_abi::addr` types and
//! entries are `pv_abi::paging::Pte`s; entry *addresses* are typed too ([`table`]), so
//! the one way to store into a page table is through an entry of a table.
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`frames`] | the frame allocator (free memory from the boot-info page) |
//! | [`pool`] | the page-table pool allocator |
//! | [`table`] | a page table and an entry's address, as types |
//! | [`writer`] | the one path by which entries change: direct stores or `mmu_update` batches |
//! | [`address_space`] | one tree of tables: map, unmap, protect, translate, destroy |
//! | [`balloon`] | the balloon driver: free frames given to hv and taken back as its target says |

pub mod address_space;
pub mod balloon;
pub mod frames;
pub mod pool;
pub mod table;
pub mod writer;

use pv_abi::addr::PAGE_SIZE;
use pv_abi::paging::{PteFlags, LARGE_PAGE_SIZE};

/// Size of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    /// 4 KiB: a PT entry.
    Small,
    /// 2 MiB: a PD entry with the PS bit.
    Large,
}

impl PageSize {
    /// Bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Small => PAGE_SIZE,
            PageSize::Large => LARGE_PAGE_SIZE,
        }
    }
}

/// What a mapping allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protection {
    /// May be written.
    pub writable: bool,
    /// May be executed.
    pub executable: bool,
    /// May be used from ring 3.
    pub user: bool,
}

impl Protection {
    /// User data: read, write, no execute.
    pub const USER_DATA: Protection = Protection { writable: true, executable: false, user: true };
    /// User code: read, execute.
    pub const USER_CODE: Protection = Protection { writable: false, executable: true, user: true };
    /// User read-only data.
    pub const USER_READ_ONLY: Protection = Protection { writable: false, executable: false, user: true };

    /// The entry flags for this protection (always present).
    pub fn flags(self) -> PteFlags {
        let mut flags = PteFlags::PRESENT;
        if self.writable {
            flags |= PteFlags::WRITABLE;
        }
        if self.user {
            flags |= PteFlags::USER;
        }
        if !self.executable {
            flags |= PteFlags::NO_EXECUTE;
        }
        flags
    }
}

/// Why a mapping operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmuError {
    /// The page-table pool is exhausted.
    NoTables,
    /// Something is already mapped there.
    AlreadyMapped,
    /// Nothing is mapped there.
    NotMapped,
    /// The address is not aligned to the page size, or not in the lower half.
    BadAddress,
    /// The hypervisor refused a batch.
    Refused,
}
