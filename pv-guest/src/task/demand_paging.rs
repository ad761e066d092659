//! A task's memory, and demand-zero paging.
//!
//! Anonymous memory is **demand-zero**: the `map` system call only records a region;
//! the first touch of each page faults, and the page-fault handler maps a zeroed frame
//! there and retries the instruction. So a task pays for the memory it touches, not
//! for what it asks for. A fault anywhere else (the kernel, a read-only page, memory
//! the task never mapped) is not served here, and the task is killed.
//!
//! [`TaskMemory`] is one task's address space and its regions; the scheduler owns one
//! per task and lends the running task's out (`scheduler::with_current_memory`).

use pv_abi::addr::{GuestVirt, PseudoFrame, PAGE_SIZE};
use pv_abi::paging::PteFlags;

use crate::arch::cpu;
use crate::counters::{self, DEMAND_FAULTS};
use crate::mm::address_space::{AddressSpace, USER_END};
use crate::mm::frames;
use crate::mm::writer::PageTableWriter;
use crate::mm::{PageSize, Protection};

/// Anonymous regions per task (the stack is one).
const MAX_REGIONS: usize = 4;
/// Page-fault error-code bit 0: the page was present (a protection fault).
const NOT_PRESENT_BIT: u64 = 1;

/// A range of anonymous, demand-zero memory.
#[derive(Clone, Copy)]
struct Region {
    start: GuestVirt,
    end: GuestVirt,
    size: PageSize,
}

/// Why `map` failed.
pub enum MapError {
    /// Bad address, length or alignment, or no region slot left.
    Invalid,
    /// Out of frames or page tables.
    NoMemory,
}

/// One task's memory: its address space and its demand-zero regions.
pub struct TaskMemory {
    /// The task's address space.
    pub space: AddressSpace,
    regions: [Option<Region>; MAX_REGIONS],
}

impl TaskMemory {
    /// `space`, with one demand-zero region of 4 KiB pages: the stack, `stack`.
    pub fn new(space: AddressSpace, stack: core::ops::Range<GuestVirt>) -> Self {
        let mut regions = [None; MAX_REGIONS];
        regions[0] = Some(Region { start: stack.start, end: stack.end, size: PageSize::Small });
        TaskMemory { space, regions }
    }

    /// The page-fault handler's part for tasks: serves a demand-zero fault at `address`
    /// (with the CPU's `error_code`) in this task's regions. Returns false if the fault
    /// is not one it can serve.
    pub fn serve_fault(&mut self, w: &mut PageTableWriter, address: GuestVirt, error_code: u64) -> bool {
        if address >= USER_END || error_code & NOT_PRESENT_BIT != 0 {
            return false;
        }
        let Some(region) = self.regions.iter().flatten().find(|r| (r.start..r.end).contains(&address)).copied() else {
            return false;
        };
        let base = GuestVirt::new(address.raw() & !(region.size.bytes() - 1));
        let frame = match region.size {
            PageSize::Small => frames::alloc(),
            PageSize::Large => frames::alloc_large(),
        };
        let Some(frame) = frame else { return false };
        // SAFETY: the frame (or large page) was just allocated for this mapping and
        // nothing else refers to it yet.
        unsafe { frames::zero(frame, region.size.bytes()) };
        if self.space.map(w, base, frame, Protection::USER_DATA, region.size).and_then(|_| w.flush()).is_err() {
            return false;
        }
        counters::bump(&DEMAND_FAULTS);
        true
    }

    /// `map`: records a demand-zero region of `len` bytes at `address`; `code_end` is
    /// where the task's code ends (nothing may be mapped below it).
    pub fn map_anonymous(&mut self, address: GuestVirt, len: u64, large: bool, code_end: GuestVirt) -> Result<(), MapError> {
        let size = if large { PageSize::Large } else { PageSize::Small };
        let end = address.checked_add(len).ok_or(MapError::Invalid)?;
        if len == 0 || !address.is_aligned(size.bytes()) || !len.is_multiple_of(size.bytes()) || end > USER_END || address < code_end {
            return Err(MapError::Invalid);
        }
        if self.regions.iter().flatten().any(|r| address < r.end && r.start < end) {
            return Err(MapError::Invalid);
        }
        let slot = self.regions.iter().position(Option::is_none).ok_or(MapError::NoMemory)?;
        self.regions[slot] = Some(Region { start: address, end, size });
        Ok(())
    }

    /// `unmap`: removes a whole region made by `map`, freeing the frames it touched.
    pub fn unmap_anonymous(&mut self, w: &mut PageTableWriter, address: GuestVirt, len: u64) -> bool {
        let Some(slot) = self.regions.iter().position(|r| r.is_some_and(|r| r.start == address && r.end.offset_from(r.start) == Some(len))) else {
            return false;
        };
        let Some(region) = self.regions[slot].take() else { return false };
        // The order matters: the entries must be gone from the tables (the batch sent)
        // before the TLB entries are dropped, or the CPU could refill them from the old
        // entries; and a frame may be reused only after no mapping of it can remain.
        let mut unmapped = UnmappedPages::new();
        let mut va = region.start;
        let mut ok = true;
        while va < region.end {
            if let Ok((frame, size)) = self.space.unmap(w, va) {
                if unmapped.is_full() {
                    ok &= unmapped.release(w);
                }
                unmapped.push(va, frame, size);
            }
            // Inside the region, which ends below USER_END: the sum cannot overflow. (A
            // plain add on purpose: this loop visits every page of the region in ring 0,
            // which some hosts emulate, and a checked step here cost the `pagefault`
            // benchmark about 10%.)
            va = GuestVirt::new(va.raw() + region.size.bytes());
        }
        ok & unmapped.release(w)
    }

    /// The frame behind the user page at `va`, if the task may write it (demand-zero
    /// pages are faulted in first). For pinning a buffer the task hands to a device:
    /// only its own writable data pages qualify, never its code, never kernel memory.
    pub fn user_writable_frame(&mut self, w: &mut PageTableWriter, va: GuestVirt) -> Option<PseudoFrame> {
        if va >= USER_END {
            return None;
        }
        let translated = self.space.translate(va).or_else(|| if self.serve_fault(w, va, 0) { self.space.translate(va) } else { None });
        let (gpa, entry) = translated?;
        entry.flags().contains(PteFlags::USER | PteFlags::WRITABLE).then_some(gpa.frame())
    }

    /// Copies `data` into this task's memory through its page tables; false if any byte
    /// is not mapped writable for the user (demand-zero pages are faulted in first).
    pub fn copy_to_user(&mut self, w: &mut PageTableWriter, address: GuestVirt, data: &[u8]) -> bool {
        let mut done = 0usize;
        while done < data.len() {
            let Some(va) = address.checked_add(done as u64) else { return false };
            let Some(frame) = self.user_writable_frame(w, va) else { return false };
            let n = (PAGE_SIZE - va.page_offset()).min((data.len() - done) as u64) as usize;
            let page_offset = va.page_offset() as usize;
            // SAFETY: the page is mapped writable for the user in this task's space, so it
            // is a frame the task owns; the task is stopped while the kernel runs on its
            // behalf, and the slice is dropped before this loop goes on.
            let page = unsafe { frames::bytes(frame) };
            page[page_offset..page_offset + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        true
    }

    /// Copies from this task's memory through its page tables; false if any byte is not
    /// mapped for the user (demand-zero pages are faulted in first).
    pub fn copy_from_user(&mut self, w: &mut PageTableWriter, address: GuestVirt, buf: &mut [u8]) -> bool {
        let mut done = 0usize;
        while done < buf.len() {
            let Some(va) = address.checked_add(done as u64) else { return false };
            let translated =
                self.space.translate(va).or_else(|| if self.serve_fault(w, va, 0) { self.space.translate(va) } else { None });
            let Some((gpa, entry)) = translated else { return false };
            if !entry.flags().contains(PteFlags::USER) {
                return false;
            }
            let n = (PAGE_SIZE - va.page_offset()).min((buf.len() - done) as u64) as usize;
            let page_offset = gpa.page_offset() as usize;
            // SAFETY: the page is mapped for the user in this task's space, so it is a
            // frame the task owns (from `frames`); the task is stopped while the kernel
            // runs on its behalf, and the slice is dropped before this loop goes on.
            let page = unsafe { frames::bytes(gpa.frame()) };
            buf[done..done + n].copy_from_slice(&page[page_offset..page_offset + n]);
            done += n;
        }
        true
    }
}

/// Pages taken out of an address space whose TLB entries and frames are released
/// together once their page-table writes have been sent.
struct UnmappedPages {
    pages: [(GuestVirt, PseudoFrame, PageSize); 64],
    len: usize,
}

impl UnmappedPages {
    fn new() -> Self {
        UnmappedPages { pages: [(GuestVirt::new(0), PseudoFrame::new(0), PageSize::Small); 64], len: 0 }
    }

    fn is_full(&self) -> bool {
        self.len == self.pages.len()
    }

    fn push(&mut self, va: GuestVirt, frame: PseudoFrame, size: PageSize) {
        self.pages[self.len] = (va, frame, size);
        self.len += 1;
    }

    /// Sends the writes, then drops each TLB entry and frees each frame.
    fn release(&mut self, w: &mut PageTableWriter) -> bool {
        let sent = w.flush().is_ok();
        for &(va, frame, size) in &self.pages[..self.len] {
            cpu::invlpg(va);
            match size {
                PageSize::Small => frames::free(frame),
                PageSize::Large => frames::free_large(frame),
            }
        }
        self.len = 0;
        sent
    }
}
