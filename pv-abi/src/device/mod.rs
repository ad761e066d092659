//! The request and response formats of each paravirtual device, like Xen's
//! `io/blkif.h`, `io/console.h` and `io/netif.h`. Each type implements the ring's `RingEntry`: a
//! fixed-size little-endian encoding, and a decoder that accepts any bytes (checking
//! the decoded values is the receiver's job).
//!
//! One file per device, and the same device name on every side of the split:
//!
//! ```text
//!  pv-abi/src/device/<dev>.rs        the formats (this module)
//!  frontend-drivers/src/<dev>/       mod.rs: the guest's driver   check.rs: the backend's responses checked
//!  backend-drivers/src/<dev>/        mod.rs: the host's driver    check.rs: the frontend's requests checked
//!  hv/src/devices/<dev>.rs           wiring the backend to one VM
//! ```
//!
//! ## Adding a device
//!
//! Copy [`console`]: a request and a response type, each a `RingEntry` whose `decode`
//! accepts any bytes; the numbers both sides must agree on (sizes, operation codes,
//! status codes) as named constants; a test that requests round-trip and that hostile
//! values decode without panicking. Then the two driver folders, each laid out like its
//! console folder (see the "Adding a device" sections of `frontend-drivers` and
//! `backend-drivers`).

pub mod balloon;
pub mod block;
pub mod console;
pub mod net;

/// Reads a little-endian u32 at `at` (the caller guarantees the range).
pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads a little-endian u64 at `at`.
pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}
