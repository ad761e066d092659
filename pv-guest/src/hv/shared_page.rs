//! A page shared with the hypervisor, as the ring protocol needs it: the guest's
//! implementation of `pv_abi::ring::SharedPage` (and of each of the grant table's frames).
//!
//! The page is reached through the direct map. Index loads and stores are atomic with
//! the orderings the protocol asks for, because a backend thread on another host CPU
//! reads and writes the same memory while this vCPU runs.

use core::sync::atomic::{fence, AtomicU32, Ordering};

use pv_abi::addr::{GuestVirt, PseudoPhys};
use pv_abi::layout::PAGE_SIZE;
use pv_abi::ring::SharedPage;

use crate::arch::kernel_map;

/// One guest-physical page, seen through the direct map.
#[derive(Clone, Copy)]
pub struct PhysPage {
    virt: GuestVirt,
}

impl PhysPage {
    /// The page at guest-physical `gpa` (page-aligned; the VMM chose it and announced
    /// it in the boot-info page).
    ///
    /// # Safety
    /// `gpa` must be a page of guest RAM set aside for sharing with the hypervisor (a
    /// ring, the grant table): no Rust object of this kernel may live in it, since the
    /// page's bytes are read and written through the returned value.
    pub unsafe fn new(gpa: PseudoPhys) -> Self {
        assert!(gpa.is_aligned(PAGE_SIZE), "shared page {gpa:#x} is not page-aligned");
        PhysPage { virt: kernel_map::phys_to_virt(gpa) }
    }

    /// Address of byte `offset`, kept inside the page.
    fn at(&self, offset: usize) -> u64 {
        self.virt.raw() + (offset as u64 % PAGE_SIZE)
    }
}

impl SharedPage for PhysPage {
    fn load_u32(&self, offset: usize) -> u32 {
        // SAFETY: the page is shared guest RAM (PhysPage::new's contract) mapped
        // read-write by the direct map, the offset
        // is inside it and 4-byte aligned (the ring only uses aligned index offsets), and
        // AtomicU32 has the same layout as u32.
        let cell = unsafe { &*(self.at(offset) as *const AtomicU32) };
        cell.load(Ordering::Acquire)
    }

    fn store_u32(&self, offset: usize, value: u32) {
        // SAFETY: as in load_u32.
        let cell = unsafe { &*(self.at(offset) as *const AtomicU32) };
        cell.store(value, Ordering::Release);
    }

    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        let len = buf.len().min(PAGE_SIZE as usize - offset % PAGE_SIZE as usize);
        // SAFETY: source and destination are valid for `len` bytes (the source stays
        // inside the mapped page) and do not overlap (buf is private memory).
        unsafe { core::ptr::copy_nonoverlapping(self.at(offset) as *const u8, buf.as_mut_ptr(), len) };
    }

    fn write_bytes(&self, offset: usize, data: &[u8]) {
        let len = data.len().min(PAGE_SIZE as usize - offset % PAGE_SIZE as usize);
        // SAFETY: as in read_bytes, in the other direction.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), self.at(offset) as *mut u8, len) };
    }

    fn full_fence(&self) {
        fence(Ordering::SeqCst);
    }
}
