//! Three address spaces, three types, so they cannot be mixed up by accident.
//!
//! | type | what it addresses | who uses it |
//! | --- | --- | --- |
//! | [`GuestVirt`] | the guest's virtual memory | the guest's code; both page-table trees translate it |
//! | [`GuestPhys`] | the guest's pseudo-physical memory | the guest's page tables, hypercalls |
//! | [`Machine`] | what KVM calls guest-physical: the real backing | shadow tables, CR3 |

/// Size of a page and of a page table.
pub const PAGE_SIZE: u64 = 4096;

/// A guest-virtual address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuestVirt(pub u64);

/// A pseudo-physical address (the guest's "physical").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuestPhys(pub u64);

/// A machine address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Machine(pub u64);

impl GuestVirt {
    /// Index of this address in the table at `level` (4 = PML4 … 1 = PT).
    pub fn index(self, level: u32) -> u64 {
        (self.0 >> (12 + 9 * (level - 1))) & 511
    }
}

impl GuestPhys {
    /// Its frame number.
    pub fn frame(self) -> u64 {
        self.0 / PAGE_SIZE
    }
}

impl Machine {
    /// Its frame number.
    pub fn frame(self) -> u64 {
        self.0 / PAGE_SIZE
    }
}
