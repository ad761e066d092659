//! A page of guest memory, seen from the host, as the ring protocol needs it.
//!
//! The ring (pv_abi::ring) is written once for both sides against the `SharedPage`
//! trait. This is the host's implementation: every access goes through vm-memory, which
//! bounds-checks it, and the index loads and stores are atomic with the orderings the
//! protocol asks for, because the guest's vCPU writes the same page at the same time.

use std::sync::atomic::{fence, Ordering};

use pv_abi::addr::{PseudoPhys, PAGE_SIZE};
use pv_abi::ring::SharedPage;
use crate::GuestMemory;
use vm_memory::{Address, Bytes, GuestAddress};

/// Where pseudo-physical address `addr` is in the guest memory a backend is given.
///
/// hv maps guest RAM once, indexed by pseudo-physical address, in both memory modes
/// (in shadow mode only KVM sees machine addresses), so for a backend the two
/// coincide. This is the one place a pseudo-physical address becomes vm-memory's.
pub(crate) fn host_view(addr: PseudoPhys) -> GuestAddress {
    GuestAddress(addr.raw())
}

/// One 4 KiB page of guest memory.
#[derive(Clone, Debug)]
pub struct GuestPage {
    memory: GuestMemory,
    gpa: PseudoPhys,
    /// `gpa` in `memory`.
    base: GuestAddress,
}

/// The page is not entirely inside guest memory, or not page-aligned.
#[derive(Debug, thiserror::Error)]
#[error("guest page {gpa:#x} is not an aligned page inside guest memory")]
pub struct BadPage {
    /// The address given.
    pub gpa: PseudoPhys,
}

impl GuestPage {
    /// The page at `gpa`; checked once here, so the accessors cannot fail afterwards.
    pub fn new(memory: GuestMemory, gpa: PseudoPhys) -> Result<Self, BadPage> {
        let mut probe = [0u8; PAGE_SIZE as usize];
        let base = host_view(gpa);
        if !gpa.is_aligned(PAGE_SIZE) || memory.read_slice(&mut probe, base).is_err() {
            return Err(BadPage { gpa });
        }
        Ok(GuestPage { memory, gpa, base })
    }

    /// Its guest-physical address.
    pub fn gpa(&self) -> PseudoPhys {
        self.gpa
    }

    fn addr(&self, offset: usize) -> GuestAddress {
        // The ring computes offsets inside the page; clamp anyway so a bug here can
        // never reach outside it. No overflow: `new` found the whole page in memory.
        self.base.unchecked_add(offset as u64 % PAGE_SIZE)
    }
}

// The page was checked to be inside guest memory in `new`, so these accesses cannot
// fail; if one somehow did, reads see zeros and writes are dropped rather than panic.
impl SharedPage for GuestPage {
    fn load_u32(&self, offset: usize) -> u32 {
        self.memory.load::<u32>(self.addr(offset), Ordering::Acquire).unwrap_or(0)
    }

    fn store_u32(&self, offset: usize, value: u32) {
        let _ = self.memory.store(value, self.addr(offset), Ordering::Release);
    }

    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        if self.memory.read_slice(buf, self.addr(offset)).is_err() {
            buf.fill(0);
        }
    }

    fn write_bytes(&self, offset: usize, data: &[u8]) {
        let _ = self.memory.write_slice(data, self.addr(offset));
    }

    fn full_fence(&self) {
        fence(Ordering::SeqCst);
    }
}
