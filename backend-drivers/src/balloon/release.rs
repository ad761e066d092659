//! Giving host memory back, and taking it again: what the balloon does on the host.
//!
//! Guest RAM is one host mapping (`GuestMemory`), in pseudo-physical order in both
//! memory modes (in shadow mode only KVM's memory slots scatter it; the mapping behind
//! them is this one), so the host memory behind frame `f` is at `host_base + f * 4096`
//! whatever the mode, and releasing it releases the very frame the guest gave.
//!
//! **Release** is `madvise(MADV_DONTNEED)` over the frame's host pages (a run of
//! adjacent frames in one call). For anonymous memory (a guest booted by `hv run`) the
//! kernel frees the pages at once and the range reads as zeros afterwards: hv's
//! resident set shrinks by exactly the frames released. For RAM mapped privately from a
//! snapshot file (after `hv restore`), `MADV_DONTNEED` drops this process's private
//! copies and its mappings of the file's pages, so the resident set shrinks too; but
//! the range then reads the *file's* bytes again, not zeros. That is why taking a frame
//! back ([`HostMemory::restore`]) zeroes it if it does not read as zeros: the guest is
//! promised zeros either way.
//!
//! The release is also marked in vm-memory's dirty bitmap: KVM's dirty log does not see
//! it (no guest write happened), yet the frame's contents changed (to zeros), and a live
//! migration in progress must send the page again.

use pv_abi::addr::PAGE_SIZE;
use vm_memory::bitmap::Bitmap;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use crate::GuestMemory;

/// The host side of guest RAM, as the balloon needs it.
#[derive(Clone, Debug)]
pub struct HostMemory {
    memory: GuestMemory,
}

/// Why host memory could not be released.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// A frame is not in guest memory (a bug: the check refuses such frames).
    #[error("frame {0:#x} is not in guest memory")]
    NotMapped(u64),
    /// `madvise` failed.
    #[error("madvise(MADV_DONTNEED) failed: {0}")]
    Madvise(std::io::Error),
}

impl HostMemory {
    /// The balloon's view of `memory`.
    pub fn new(memory: GuestMemory) -> Self {
        HostMemory { memory }
    }

    /// Releases the host memory behind `frames` (checked frames of RAM), a run of
    /// adjacent frames per `madvise`. Returns the number of `madvise` calls made.
    pub fn release(&self, frames: &[u64]) -> Result<u64, ReleaseError> {
        // LAB 8 BEGIN: release: one madvise(MADV_DONTNEED) per run of adjacent frames
        let mut calls = 0;
        let mut i = 0;
        while i < frames.len() {
            let mut run = 1;
            while i + run < frames.len() && frames[i + run] == frames[i].wrapping_add(run as u64) {
                run += 1;
            }
            self.release_run(frames[i], run as u64)?;
            calls += 1;
            i += run;
        }
        Ok(calls)
        // LAB 8 STUB: let _ = (frames, Self::release_run);
        // LAB 8 STUB: todo!("lab 8: release the host memory behind the frames, one madvise(MADV_DONTNEED) per run of adjacent frames: HostMemory::release")
        // LAB 8 END
    }

    /// Releases `count` frames from `first`: the host pages behind them are given back
    /// to the host kernel and read as zeros afterwards, and they are marked dirty.
    fn release_run(&self, first: u64, count: u64) -> Result<(), ReleaseError> {
        // LAB 8 BEGIN: release one run: find its host address, madvise it, mark it dirty
        let addr = GuestAddress(first.checked_mul(PAGE_SIZE).ok_or(ReleaseError::NotMapped(first))?);
        let len = count.checked_mul(PAGE_SIZE).and_then(|l| usize::try_from(l).ok()).ok_or(ReleaseError::NotMapped(first))?;
        let (region, offset) = self.memory.to_region_addr(addr).ok_or(ReleaseError::NotMapped(first))?;
        // The whole run must be inside this one region, so the host range is contiguous.
        if region.checked_offset(offset, len - 1).is_none() {
            return Err(ReleaseError::NotMapped(first.saturating_add(count - 1)));
        }
        let host = region.get_host_address(offset).map_err(|_| ReleaseError::NotMapped(first))?;
        // SAFETY: `host..host+len` lies inside the mapping of one guest-memory region (both
        // ends were checked above) and is page-aligned (frames are pages, regions start on
        // pages). MADV_DONTNEED only replaces the pages' contents by zeros (or the file's
        // bytes): no Rust object lives in guest memory, every access to it goes through
        // vm-memory's volatile copies, so nothing holds a reference that could see the
        // change as undefined behaviour.
        let rc = unsafe { libc::madvise(host.cast(), len, libc::MADV_DONTNEED) };
        if rc != 0 {
            return Err(ReleaseError::Madvise(std::io::Error::last_os_error()));
        }
        region.bitmap().mark_dirty(offset.0 as usize, len);
        Ok(())
        // LAB 8 STUB: let _ = (first, count, GuestAddress, PAGE_SIZE, &self.memory, libc::MADV_DONTNEED, ReleaseError::Madvise);
        // LAB 8 STUB: todo!("lab 8: madvise(MADV_DONTNEED) the host pages behind frames first..first+count and mark them dirty: HostMemory::release_run")
        // LAB 8 END
    }

    /// Makes a frame taken back read as zeros: after a release of anonymous memory it
    /// does already (then nothing is written, and no memory is used until the guest
    /// writes); after a release of file-backed memory it reads the file's bytes, and is
    /// zeroed here.
    pub fn restore(&self, frame: u64) -> Result<(), ReleaseError> {
        let addr = GuestAddress(frame * PAGE_SIZE);
        let mut page = [0u8; PAGE_SIZE as usize];
        self.memory.read_slice(&mut page, addr).map_err(|_| ReleaseError::NotMapped(frame))?;
        if page.iter().any(|&b| b != 0) {
            self.memory.write_slice(&[0u8; PAGE_SIZE as usize], addr).map_err(|_| ReleaseError::NotMapped(frame))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_frames_read_as_zeros_and_runs_share_a_call() {
        let memory = GuestMemory::from_ranges(&[(GuestAddress(0), 64 * PAGE_SIZE as usize)]).unwrap();
        for f in 0..64u64 {
            memory.write_slice(&[0xab; PAGE_SIZE as usize], GuestAddress(f * PAGE_SIZE)).unwrap();
        }
        let host = HostMemory::new(memory.clone());
        assert_eq!(host.release(&[3, 4, 5, 9, 10, 40]).unwrap(), 3);
        let byte = |f: u64| {
            let mut b = [0u8; 1];
            memory.read_slice(&mut b, GuestAddress(f * PAGE_SIZE + 100)).unwrap();
            b[0]
        };
        assert_eq!([byte(3), byte(5), byte(9), byte(10), byte(40)], [0; 5]);
        assert_eq!([byte(2), byte(6), byte(41)], [0xab; 3]);
        assert!(matches!(host.release(&[64]), Err(ReleaseError::NotMapped(64))));
        assert!(matches!(host.release(&[63, 64]), Err(ReleaseError::NotMapped(64))));
        host.restore(3).unwrap();
        assert_eq!(byte(3), 0);
    }
}
