//! Guest RAM: one anonymous host mapping that KVM shows the guest as physical memory.
//!
//! Everything the VMM reads or writes in the guest goes through [`GuestRam`], and every
//! access is bounds-checked against the guest's RAM: a guest-supplied address can name
//! only memory the guest was given, never a byte of the VMM. (vm-memory does the actual
//! copying; this wrapper adds the one policy hv needs: "inside RAM, or an error".)
//!
//! RAM is indexed by *pseudo-physical* address ([`PseudoPhys`]): the guest's own idea
//! of its memory, `0..size`. In ept mode KVM sees the same numbers as machine addresses;
//! in shadow mode the shadow layout scatters them, but this mapping stays in guest
//! order, so every access here names a pseudo-physical address, whatever the mode.
//!
//! [`dirty`] keeps the set of pages written since some moment (live migration's dirty
//! tracking) and reads hv's own half of that record out of vm-memory.

pub mod dirty;

use pv_abi::addr::PseudoPhys;
use backend_drivers::GuestMemory;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

/// Why guest RAM could not be created.
#[derive(Debug, thiserror::Error)]
#[error("could not allocate {bytes} bytes of guest RAM: {source}")]
pub struct RamAllocError {
    bytes: u64,
    #[source]
    source: vm_memory::mmap::FromRangesError,
}

/// A guest-physical range that is not entirely inside guest RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("guest-physical range {gpa:#x}+{len:#x} is not inside guest RAM (0..{ram:#x})")]
pub struct OutsideRam {
    /// Start of the range.
    pub gpa: PseudoPhys,
    /// Length of the range.
    pub len: u64,
    /// Size of guest RAM.
    pub ram: u64,
}

/// The guest's RAM, guest-physical `0..size`.
pub struct GuestRam {
    memory: GuestMemory,
    size: u64,
    /// For RAM mapped from a file (`from_file`): the page ranges the file holds data
    /// for. Such pages have contents before anything touches them.
    file_pages: Vec<std::ops::Range<u64>>,
}

impl GuestRam {
    /// Allocates `size` bytes of zeroed guest RAM (lazily: pages are only backed by host
    /// memory when first touched).
    pub fn new(size: u64) -> Result<Self, RamAllocError> {
        let memory = GuestMemory::from_ranges(&[(GuestAddress(0), size as usize)])
            .map_err(|source| RamAllocError { bytes: size, source })?;
        Ok(GuestRam { memory, size, file_pages: Vec::new() })
    }

    /// Guest RAM whose contents come from `file` at byte `offset` (a snapshot's memory
    /// image), mapped **lazily and copy-on-write**: nothing is read now; each page is read
    /// from the file (or the page cache) the first time the guest or hv touches it, and a
    /// write gives this VM its own copy, leaving the file as it was. Holes in the file
    /// read as zeros. This is why a restore can start the guest in a millisecond or two
    /// whatever its size: the cost of loading memory is paid page by page, as it is used.
    /// `file_pages` are the page ranges the file stores (the rest reads as zeros).
    pub fn from_file(file: std::fs::File, offset: u64, size: u64, file_pages: Vec<std::ops::Range<u64>>) -> Result<Self, RamAllocError> {
        use vm_memory::bitmap::{AtomicBitmap, NewBitmap};
        use vm_memory::mmap::MmapRegionBuilder;
        use vm_memory::{FileOffset, GuestRegionMmap};
        let region = MmapRegionBuilder::new_with_bitmap(size as usize, AtomicBitmap::with_len(size as usize))
            .with_file_offset(FileOffset::new(file, offset))
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            // Private: a write copies the page (copy-on-write), never reaching the file.
            .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_NORESERVE)
            .build()
            .map_err(|e| RamAllocError { bytes: size, source: vm_memory::mmap::FromRangesError::MmapRegion(e) })?;
        let region = GuestRegionMmap::new(region, GuestAddress(0))
            .ok_or(RamAllocError { bytes: size, source: vm_memory::mmap::FromRangesError::InvalidGuestRegion })?;
        let memory = GuestMemory::from_regions(vec![region])
            .map_err(|e| RamAllocError { bytes: size, source: vm_memory::mmap::FromRangesError::Collection(e) })?;
        Ok(GuestRam { memory, size, file_pages })
    }

    /// Size of guest RAM in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Checks that `gpa..gpa+len` lies inside RAM, without overflow.
    pub fn check_range(&self, gpa: PseudoPhys, len: u64) -> Result<(), OutsideRam> {
        match gpa.checked_add(len) {
            Some(end) if end.raw() <= self.size => Ok(()),
            _ => Err(OutsideRam { gpa, len, ram: self.size }),
        }
    }

    /// Copies guest memory at `gpa` into `buf`.
    pub fn read(&self, gpa: PseudoPhys, buf: &mut [u8]) -> Result<(), OutsideRam> {
        self.check_range(gpa, buf.len() as u64)?;
        self.memory
            .read_slice(buf, GuestAddress(gpa.raw()))
            .map_err(|_| OutsideRam { gpa, len: buf.len() as u64, ram: self.size })
    }

    /// Copies `data` into guest memory at `gpa`.
    pub fn write(&self, gpa: PseudoPhys, data: &[u8]) -> Result<(), OutsideRam> {
        self.check_range(gpa, data.len() as u64)?;
        self.memory
            .write_slice(data, GuestAddress(gpa.raw()))
            .map_err(|_| OutsideRam { gpa, len: data.len() as u64, ram: self.size })
    }

    /// Reads a little-endian u64.
    pub fn read_u64(&self, gpa: PseudoPhys) -> Result<u64, OutsideRam> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes a little-endian u64.
    pub fn write_u64(&self, gpa: PseudoPhys, value: u64) -> Result<(), OutsideRam> {
        self.write(gpa, &value.to_le_bytes())
    }

    /// Which pages may hold something other than zeros, one flag per 4 KiB page: those
    /// the host has ever backed with memory (the guest, hv or a backend touched them),
    /// and, for RAM mapped from a snapshot, those the file stores. Asked of the kernel
    /// (`/proc/self/pagemap`: a page is "present" or "swapped" once touched), so no page
    /// is read to find out. `None` if the kernel will not say; then every page may.
    pub fn touched_pages(&self) -> Option<Vec<bool>> {
        use std::os::unix::fs::FileExt;
        const PRESENT: u64 = 1 << 63;
        const SWAPPED: u64 = 1 << 62;
        let pages = (self.size / pv_abi::addr::PAGE_SIZE) as usize;
        let first = self.host_base() / pv_abi::addr::PAGE_SIZE;
        let pagemap = std::fs::File::open("/proc/self/pagemap").ok()?;
        let mut entries = vec![0u8; pages * 8];
        pagemap.read_exact_at(&mut entries, first * 8).ok()?;
        let mut touched: Vec<bool> = entries
            .chunks_exact(8)
            .map(|e| u64::from_le_bytes(e.try_into().unwrap_or([0; 8])) & (PRESENT | SWAPPED) != 0)
            .collect();
        for range in &self.file_pages {
            for page in range.start.min(pages as u64)..range.end.min(pages as u64) {
                touched[page as usize] = true;
            }
        }
        Some(touched)
    }

    /// Calls `visit` with the number and bytes of every page that is not all zeros, in
    /// address order. Only pages the host ever backed are read ([`GuestRam::touched_pages`]):
    /// the others are zeros without looking, and reading them would cost a page fault
    /// each. (Snapshots store these pages; a recorded run's memory hash covers them.)
    pub fn for_each_nonzero_page(&self, mut visit: impl FnMut(u64, &[u8])) {
        let mut page = [0u8; pv_abi::addr::PAGE_SIZE as usize];
        let touched = self.touched_pages();
        for number in 0..self.size / pv_abi::addr::PAGE_SIZE {
            if touched.as_ref().is_some_and(|t| !t.get(number as usize).copied().unwrap_or(true)) {
                continue;
            }
            // Inside RAM by construction; a page that could not be read is visited as
            // zeros read so far rather than silently skipped.
            if self.read(PseudoPhys::new(number * pv_abi::addr::PAGE_SIZE), &mut page).is_ok() && page.iter().all(|&b| b == 0) {
                continue;
            }
            visit(number, &page);
        }
    }

    /// The underlying vm-memory object, for the device backends (which reach guest
    /// memory only through `backend_drivers`' checked ring pages and grants).
    pub fn memory(&self) -> &GuestMemory {
        &self.memory
    }

    /// The host virtual address where guest-physical 0 is mapped, for KVM's memory slot.
    pub fn host_base(&self) -> u64 {
        self.memory
            .get_host_address(GuestAddress(0))
            .map(|p| p as u64)
            .expect("guest RAM starts at guest-physical 0 by construction")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_ram_accesses_outside_ram_are_refused() {
        let ram = GuestRam::new(1 << 20).unwrap();
        let at = PseudoPhys::new;
        ram.write_u64(at(0x1000), 0xdead_beef).unwrap();
        assert_eq!(ram.read_u64(at(0x1000)).unwrap(), 0xdead_beef);
        assert!(ram.read_u64(at((1 << 20) - 8)).is_ok());
        assert!(ram.read_u64(at((1 << 20) - 4)).is_err(), "straddles the end");
        assert!(ram.check_range(at(u64::MAX - 3), 8).is_err(), "wraps around");
        assert!(ram.check_range(at(1 << 20), 0).is_ok(), "empty range at the end");
        assert!(ram.check_range(at((1 << 20) + 1), 0).is_err(), "empty range past the end");
    }
}
