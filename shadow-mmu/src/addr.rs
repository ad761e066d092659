//! Three address spaces, three types, so they cannot be mixed up by accident.
//!
//! | type | what it addresses | who uses it |
//! | --- | --- | --- |
//! | [`GuestVirt`] | the guest's virtual memory | the guest's code; both page-table trees translate it |
//! | [`GuestPhys`] | the guest's pseudo-physical memory | the guest's page tables, hypercalls |
//! | [`Machine`] | what KVM calls guest-physical: the real backing | shadow tables, CR3 |
//!
//! Frame numbers (an address divided by the page size) get types of their own too:
//! [`GuestFrame`] (a pseudo-physical frame, what the p2m table is indexed by) and
//! [`MachineFrame`] (where it really is, and where shadow tables live).

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

/// A pseudo-physical frame number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuestFrame(pub u64);

/// A machine frame number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MachineFrame(pub u64);

impl GuestPhys {
    /// Its frame.
    pub fn frame(self) -> GuestFrame {
        GuestFrame(self.0 / PAGE_SIZE)
    }
}

impl Machine {
    /// Its frame.
    pub fn frame(self) -> MachineFrame {
        MachineFrame(self.0 / PAGE_SIZE)
    }
}

impl GuestFrame {
    /// The frame's first byte.
    pub fn address(self) -> GuestPhys {
        GuestPhys(self.0 * PAGE_SIZE)
    }
}

impl MachineFrame {
    /// The frame's first byte.
    pub fn address(self) -> Machine {
        Machine(self.0 * PAGE_SIZE)
    }

    /// Entry `index` (0..512) of the table in this frame.
    pub fn entry(self, index: u64) -> Machine {
        Machine(self.0 * PAGE_SIZE + index * 8)
    }

    /// The frame `n` frames further on.
    pub fn offset(self, n: u64) -> MachineFrame {
        MachineFrame(self.0 + n)
    }
}
