//! A page the kernel mapped into the task (a ring, a buffer frame), reached through a
//! plain pointer: the rings' [`SharedPage`] as a task sees it.

use core::sync::atomic::{fence, AtomicU32, Ordering};

use pv_abi::ring::SharedPage;

/// Bytes in a page.
pub const PAGE: usize = 4096;

/// A page the kernel mapped into this task (user, read-write), by its address.
#[derive(Clone, Copy)]
pub struct MappedPage {
    va: usize,
}

impl MappedPage {
    /// The page at `va`.
    ///
    /// # Safety
    /// The kernel must map a page at `va` (user, read-write) before the task starts and
    /// keep it mapped for the task's whole life: the addresses the handoff module fixes.
    pub const unsafe fn at(va: u64) -> Self {
        MappedPage { va: va as usize }
    }

    /// The address of `offset` in the page (taken modulo the page: never outside it).
    fn ptr(&self, offset: usize) -> *mut u8 {
        (self.va + offset % PAGE) as *mut u8
    }

    /// The page's bytes, read-only: a buffer the backend has finished with.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the page is mapped for the task's whole life (MappedPage::at's
        // contract) and is PAGE bytes long; the caller reads it only when no request on
        // it is in flight, so the backend is not writing it.
        unsafe { core::slice::from_raw_parts(self.va as *const u8, PAGE) }
    }
}

impl SharedPage for MappedPage {
    fn load_u32(&self, offset: usize) -> u32 {
        // SAFETY: the page is mapped read-write for the task's whole life
        // (MappedPage::at), the offset is 4-byte aligned inside it, and AtomicU32 has
        // u32's layout; the backend writes it concurrently, hence the atomic.
        let cell = unsafe { &*(self.ptr(offset & !3) as *const AtomicU32) };
        cell.load(Ordering::Acquire)
    }

    fn store_u32(&self, offset: usize, value: u32) {
        // SAFETY: the page is mapped read-write for the task's whole life
        // (MappedPage::at), the offset is 4-byte aligned inside it, and AtomicU32 has u32's
        // layout; the store is atomic because the backend reads the page concurrently.
        let cell = unsafe { &*(self.ptr(offset & !3) as *const AtomicU32) };
        cell.store(value, Ordering::Release);
    }

    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        let len = buf.len().min(PAGE - offset % PAGE);
        // SAFETY: the source lies inside the mapped page for `len` bytes and `buf` is
        // the task's own memory, so the two do not overlap.
        unsafe { core::ptr::copy_nonoverlapping(self.ptr(offset), buf.as_mut_ptr(), len) };
    }

    fn write_bytes(&self, offset: usize, data: &[u8]) {
        let len = data.len().min(PAGE - offset % PAGE);
        // SAFETY: the destination lies inside the mapped page for `len` bytes and `data`
        // is the caller's own memory, so the two do not overlap.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr(offset), len) };
    }

    fn full_fence(&self) {
        fence(Ordering::SeqCst);
    }
}
