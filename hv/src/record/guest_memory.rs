//! What a recorded run reads of guest memory: the pages a device wrote, and a hash of
//! the whole of it.
//!
//! **Which bytes did the device write?** Every write a backend makes goes through
//! vm-memory, whose dirty bitmap marks the 4 KiB page it touched
//! (`backend_drivers::GuestMemory`). The recorder empties the bitmap before serving a
//! ring ([`DirtyPages::take`]) and reads it after: the pages marked then are the
//! device's, because nothing else writes guest memory while the vCPU thread serves the
//! ring (the guest is stopped at its exit, and hv runs no other backend). The bits
//! taken out are put back afterwards ([`DirtyPages::put_back`]), so that live migration,
//! which reads the same bitmap, still sees every page hv or a device wrote.

use pv_abi::addr::{PseudoPhys, PAGE_SIZE};
use vm_memory::GuestMemoryBackend;

use super::framing::fnv1a;
use crate::memory::GuestRam;

/// Pages marked in the dirty bitmap, as taken out of it.
pub struct DirtyPages {
    /// One word per 64 pages, from guest-physical 0 (guest RAM is one region there).
    words: Vec<u64>,
}

impl DirtyPages {
    /// Takes (and clears) every bit of the bitmap.
    pub fn take(ram: &GuestRam) -> Self {
        let words = ram.memory().iter().next().map(|region| region.get_mmap().bitmap().get_and_reset()).unwrap_or_default();
        DirtyPages { words }
    }

    /// The pages marked, lowest first.
    pub fn pages(&self) -> impl Iterator<Item = PseudoPhys> + '_ {
        self.words.iter().enumerate().flat_map(|(i, word)| {
            (0..64).filter(move |bit| word >> bit & 1 != 0).map(move |bit| PseudoPhys::new((i as u64 * 64 + bit) * PAGE_SIZE))
        })
    }

    /// Marks these pages dirty again.
    pub fn put_back(&self, ram: &GuestRam) {
        if let Some(region) = ram.memory().iter().next() {
            let region = region.get_mmap();
            for page in self.pages() {
                region.bitmap().set_addr_range(page.raw() as usize, PAGE_SIZE as usize);
            }
        }
    }
}

/// A hash of all guest memory: FNV-1a over the number and bytes of every page that is
/// not all zeros, in pseudo-physical order. Equal hashes after a recorded run and its
/// replay mean (barring a 2^-64 accident) equal memory, in either memory mode, because
/// RAM is kept in pseudo-physical order in both. Zero pages add nothing, so only the
/// pages the host ever backed are read (`GuestRam::for_each_nonzero_page`): the hash
/// costs what the guest used, not its RAM size.
pub fn memory_hash(ram: &GuestRam) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325;
    ram.for_each_nonzero_page(|number, page| {
        hash = fnv1a(hash, &number.to_le_bytes());
        hash = fnv1a(hash, page);
    });
    hash
}
