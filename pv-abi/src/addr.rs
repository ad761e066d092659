//! Typed addresses: one type per address space, so they cannot be mixed up by accident.
//!
//! A paravirtual hypervisor juggles several address spaces at once, and most of its
//! bugs are an address used in the wrong one. Along one trapped page-table write in
//! shadow mode the address changes meaning four times: the guest's store is to a
//! *machine* address (what KVM calls guest-physical), hv turns it into the
//! *pseudo-physical* address of the guest's page table, the entry written names a
//! pseudo-physical frame, and the shadow entry hv writes names a *machine* frame.
//!
//! | type | what it addresses | in Xen's words |
//! | --- | --- | --- |
//! | [`GuestVirt`] | the guest's virtual memory, translated by page tables | linear address |
//! | [`PseudoPhys`] | the guest's "physical" memory: `0..mem_bytes`, what its page tables and hypercalls name | pseudo-physical (gpfn) |
//! | [`MachineAddr`] | where a pseudo-physical byte really is in the VM KVM runs; the same as pseudo-physical in ept mode, different in shadow mode | machine (mfn) |
//! | [`PseudoFrame`] | a pseudo-physical frame number (address / 4096) | pfn |
//! | [`MachineFrame`] | a machine frame number | mfn |
//!
//! The model is vm-memory's `GuestAddress`: the field is private, `new` and `raw` are the
//! only ways in and out, and the arithmetic is a handful of *checked* methods. There are
//! no `+`/`-` operators, so `virt + phys` does not compile, and an overflow is a `None`
//! the caller must handle rather than a silent wrap. Turning one kind into another is a
//! decision that belongs to whoever knows the translation (the p2m table, the direct
//! map), so no conversion between address spaces is defined here.

use core::fmt;

/// Size of a small page, of a page table and of a frame: 4 KiB.
pub const PAGE_SIZE: u64 = 4096;
/// `log2(PAGE_SIZE)`: an address shifted right by this is its frame number.
pub const PAGE_SHIFT: u32 = 12;

/// Defines an address type and the checked arithmetic every address kind shares.
macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(u64);

        impl $name {
            /// The address with this numeric value.
            pub const fn new(raw: u64) -> Self {
                $name(raw)
            }

            /// The numeric value (for an ABI field, a register or a trace line).
            pub const fn raw(self) -> u64 {
                self.0
            }

            /// The address `bytes` further on, or `None` if that overflows.
            pub const fn checked_add(self, bytes: u64) -> Option<Self> {
                match self.0.checked_add(bytes) {
                    Some(a) => Some($name(a)),
                    None => None,
                }
            }

            /// The address `bytes` before this one, or `None` if that is below zero.
            pub const fn checked_sub(self, bytes: u64) -> Option<Self> {
                match self.0.checked_sub(bytes) {
                    Some(a) => Some($name(a)),
                    None => None,
                }
            }

            /// How many bytes this address lies after `base` (in the same space), or
            /// `None` if it lies before it.
            pub const fn offset_from(self, base: Self) -> Option<u64> {
                self.0.checked_sub(base.0)
            }

            /// The start of the page this address is in.
            pub const fn page_start(self) -> Self {
                $name(self.0 & !(PAGE_SIZE - 1))
            }

            /// The offset of this address in its page (`0..4096`).
            pub const fn page_offset(self) -> u64 {
                self.0 & (PAGE_SIZE - 1)
            }

            /// Whether the address is a multiple of `align` (a power of two).
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align - 1) == 0
            }

            /// The first address at or above this one that is a multiple of `align` (a
            /// power of two, such as a page or a large page), or `None` if that
            /// overflows. The end of a segment rounds up to a page end this way, and a
            /// large page starts at the next 2 MiB boundary.
            pub const fn checked_align_up(self, align: u64) -> Option<Self> {
                match self.0.checked_add(align - 1) {
                    Some(a) => Some($name(a & !(align - 1))),
                    None => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

/// Defines a frame-number type, tied to the address type of its space.
macro_rules! frame_type {
    ($(#[$doc:meta])* $name:ident, $addr:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(u64);

        impl $name {
            /// The frame with this number.
            pub const fn new(number: u64) -> Self {
                $name(number)
            }

            /// The frame number (for an ABI field, a page-table entry or an index).
            pub const fn raw(self) -> u64 {
                self.0
            }

            /// The frame's first byte, or `None` if the number is too large to have an
            /// address (a guest can write any number into a grant entry).
            pub const fn checked_address(self) -> Option<$addr> {
                if self.0 > (u64::MAX >> PAGE_SHIFT) {
                    None
                } else {
                    Some($addr(self.0 << PAGE_SHIFT))
                }
            }

            /// The frame `n` frames further on, or `None` if that overflows.
            pub const fn checked_add(self, n: u64) -> Option<Self> {
                match self.0.checked_add(n) {
                    Some(f) => Some($name(f)),
                    None => None,
                }
            }

            /// How many frames this one lies after `base`, or `None` if it lies before.
            pub const fn offset_from(self, base: Self) -> Option<u64> {
                self.0.checked_sub(base.0)
            }
        }

        impl $addr {
            /// The frame this address is in.
            pub const fn frame(self) -> $name {
                $name(self.0 >> PAGE_SHIFT)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

address_type!(
    /// A guest-virtual address: what the guest's code uses, translated by page tables.
    GuestVirt
);
address_type!(
    /// A pseudo-physical address: the guest's idea of physical memory (`0..mem_bytes`),
    /// what its page-table entries, grants and hypercall arguments name.
    PseudoPhys
);
address_type!(
    /// A machine address: where the VM KVM runs really has the byte (KVM calls it
    /// guest-physical). In ept mode it equals the pseudo-physical address; in shadow mode
    /// hv's p2m table decides, and shadow tables and CR3 hold machine addresses.
    MachineAddr
);
frame_type!(
    /// A pseudo-physical frame number: what the p2m table is indexed by and what a
    /// grant entry or a guest page-table entry names.
    PseudoFrame,
    PseudoPhys
);
frame_type!(
    /// A machine frame number: where a pseudo-physical frame really is, and where shadow
    /// tables live.
    MachineFrame,
    MachineAddr
);

impl GuestVirt {
    /// Whether the address is canonical: bits 63..47 all equal, as x86-64 requires of
    /// every address it translates.
    pub const fn is_canonical(self) -> bool {
        let top = self.0 >> 47;
        top == 0 || top == 0x1_ffff
    }
}

/// A range of frames `start..end` of one kind. (A plain `Range` of frame types works
/// too; this one can say how many frames it holds and is `Copy`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRange<F> {
    /// The first frame.
    pub start: F,
    /// The first frame past the range.
    pub end: F,
}

impl FrameRange<PseudoFrame> {
    /// Whether `frame` is in the range.
    pub fn contains(&self, frame: PseudoFrame) -> bool {
        self.start <= frame && frame < self.end
    }

    /// How many frames the range holds.
    pub fn len(&self) -> u64 {
        self.end.0.saturating_sub(self.start.0)
    }

    /// Whether the range holds no frame.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_addresses_round_trip() {
        let a = PseudoPhys::new(0x12_3456);
        assert_eq!(a.frame(), PseudoFrame::new(0x123));
        assert_eq!(
            a.frame().checked_address(),
            Some(PseudoPhys::new(0x12_3000))
        );
        assert_eq!(a.page_start(), PseudoPhys::new(0x12_3000));
        assert_eq!(a.page_offset(), 0x456);
        assert_eq!(MachineAddr::new(0x5000).frame(), MachineFrame::new(5));
    }

    #[test]
    fn hostile_arithmetic_overflow_is_none_not_a_wrap() {
        assert_eq!(PseudoPhys::new(u64::MAX).checked_add(1), None);
        assert_eq!(GuestVirt::new(0).checked_sub(1), None);
        assert_eq!(PseudoFrame::new(u64::MAX).checked_address(), None);
        assert_eq!(PseudoFrame::new(1 << 52).checked_address(), None);
        assert_eq!(
            PseudoFrame::new((1 << 52) - 1).checked_address(),
            Some(PseudoPhys::new(0xffff_ffff_ffff_f000))
        );
        assert_eq!(MachineFrame::new(u64::MAX).checked_add(1), None);
        assert_eq!(PseudoPhys::new(5).offset_from(PseudoPhys::new(6)), None);
        assert_eq!(PseudoPhys::new(6).offset_from(PseudoPhys::new(5)), Some(1));
        assert_eq!(PseudoPhys::new(u64::MAX - 5).checked_align_up(PAGE_SIZE), None);
    }

    #[test]
    fn align_up_rounds_to_the_next_boundary() {
        assert_eq!(PseudoPhys::new(0x1001).checked_align_up(PAGE_SIZE), Some(PseudoPhys::new(0x2000)));
        assert_eq!(PseudoPhys::new(0x2000).checked_align_up(PAGE_SIZE), Some(PseudoPhys::new(0x2000)));
        assert_eq!(PseudoPhys::new(0x20_1000).checked_align_up(2 << 20), Some(PseudoPhys::new(0x40_0000)));
        assert_eq!(PseudoPhys::new(0).checked_align_up(2 << 20), Some(PseudoPhys::new(0)));
        assert_eq!(
            PseudoPhys::new(0xffff_ffff_ffff_f001).checked_align_up(PAGE_SIZE),
            None,
            "the last page's end is past the address space"
        );
    }

    #[test]
    fn hostile_table_entry_index_is_refused() {
        assert_eq!(
            MachineFrame::new(2).table_entry(1),
            Some(MachineAddr::new(0x2008))
        );
        assert_eq!(
            MachineFrame::new(2).table_entry(511),
            Some(MachineAddr::new(0x2ff8))
        );
        assert_eq!(MachineFrame::new(2).table_entry(512), None);
        assert_eq!(PseudoFrame::new(u64::MAX).table_entry(0), None);
    }

    #[test]
    fn canonical_addresses() {
        assert!(GuestVirt::new(0x0000_7fff_ffff_ffff).is_canonical());
        assert!(GuestVirt::new(0xffff_8000_0000_0000).is_canonical());
        assert!(!GuestVirt::new(0x0000_8000_0000_0000).is_canonical());
        assert!(!GuestVirt::new(0xfff0_0000_0000_0000).is_canonical());
    }

    #[test]
    fn debug_names_the_address_space() {
        assert_eq!(
            format!("{:?}", MachineAddr::new(0x1000)),
            "MachineAddr(0x1000)"
        );
        assert_eq!(format!("{:x}", PseudoFrame::new(0xab)), "ab");
    }
}
