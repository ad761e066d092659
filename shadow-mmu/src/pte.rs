//! Page-table entry bits (x86-64, 4-level paging).

/// Present.
pub const P: u64 = 1 << 0;
/// Writable.
pub const RW: u64 = 1 << 1;
/// User-accessible.
pub const US: u64 = 1 << 2;
/// Write-through.
pub const PWT: u64 = 1 << 3;
/// Cache disable.
pub const PCD: u64 = 1 << 4;
/// Accessed (set by the CPU).
pub const A: u64 = 1 << 5;
/// Dirty (set by the CPU, leaves only).
pub const D: u64 = 1 << 6;
/// Page size: this PD (or PDPT) entry maps a large page.
pub const PS: u64 = 1 << 7;
/// Global.
pub const G: u64 = 1 << 8;
/// No execute.
pub const NX: u64 = 1 << 63;
/// The physical-address bits.
pub const ADDR: u64 = 0x000f_ffff_ffff_f000;
/// Bits 52..62: ignored by some CPUs, reserved by this engine so a guest cannot smuggle
/// meaning into them.
pub const RESERVED: u64 = 0x7ff0_0000_0000_0000;
/// The permission and caching bits a shadow entry copies from the guest's.
pub const COPIED: u64 = RW | US | PWT | PCD | NX;

/// Whether the entry is present.
pub fn present(e: u64) -> bool {
    e & P != 0
}

/// The address an entry points at.
pub fn address(e: u64) -> u64 {
    e & ADDR
}
