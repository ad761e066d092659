//! The built-in guest kernel: `pv-guest`, compiled for `x86_64-unknown-none` by
//! `build.rs` and embedded here, so `hv run` needs no path.

/// The pv-guest ELF file.
pub static PV_GUEST_ELF: &[u8] = include_bytes!(env!("PV_GUEST_ELF"));
