//! The frame allocator: hands out 4 KiB guest-physical frames from the free memory the
//! boot-info page announces.
//!
//! Free frames are kept on a list threaded through the frames themselves (each free
//! frame's first 8 bytes hold the address of the next one), as xv6's `kalloc` does, so
//! the allocator needs no memory of its own. Frames never handed out yet come from a
//! bump pointer, so start-up costs nothing even with a lot of RAM: this matters when
//! every ring-0 instruction is emulated.

use pv_abi::layout::PAGE_SIZE;
use pv_abi::BootInfo;

use crate::memory;

/// The allocator's state.
struct FrameAllocator {
    /// First never-used frame.
    next: u64,
    /// End of free memory.
    end: u64,
    /// Head of the free list (a gpa), or 0 for empty (frame 0 is never free memory).
    free_list: u64,
    /// Frames handed out and not freed.
    in_use: u64,
}

static mut FRAMES: FrameAllocator = FrameAllocator { next: 0, end: 0, free_list: 0, in_use: 0 };

fn allocator() -> &'static mut FrameAllocator {
    // SAFETY: one vCPU; the allocator is never used from an interrupt handler, so
    // there is never a second reference alive at the same time.
    #[allow(static_mut_refs)]
    unsafe {
        &mut FRAMES
    }
}

/// Takes over the free memory described by the boot-info page.
pub fn init(info: &BootInfo) {
    let a = allocator();
    a.next = info.free_mem_start;
    a.end = info.free_mem_end;
}

/// A frame (its guest-physical address), contents undefined; `None` when memory is
/// exhausted.
pub fn alloc() -> Option<u64> {
    let a = allocator();
    let frame = if a.free_list != 0 {
        let frame = a.free_list;
        // SAFETY: a free frame is guest RAM in the direct map, and its first 8 bytes
        // hold the next free frame (written by `free`).
        a.free_list = unsafe { core::ptr::read(memory::phys_to_virt(frame) as *const u64) };
        frame
    } else if a.next + PAGE_SIZE <= a.end {
        let frame = a.next;
        a.next += PAGE_SIZE;
        frame
    } else {
        return None;
    };
    a.in_use += 1;
    Some(frame)
}

/// Gives a frame back.
pub fn free(frame: u64) {
    let a = allocator();
    // Only a frame this allocator handed out may come back: anything else (say, from a
    // page-table entry a hostile test wrote) would corrupt the free list.
    if !frame.is_multiple_of(PAGE_SIZE) || frame >= a.next {
        crate::println!("frames: refusing to free {frame:#x}: not a frame of free memory");
        return;
    }
    // SAFETY: the frame came from `alloc`, so it is free memory in the direct map, and
    // the caller no longer uses it.
    unsafe { core::ptr::write(memory::phys_to_virt(frame) as *mut u64, a.free_list) };
    a.free_list = frame;
    a.in_use -= 1;
}

/// A 2 MiB-aligned run of 512 frames for a large page, from the never-used part of
/// free memory (the frames skipped to reach the alignment go on the free list).
pub fn alloc_large() -> Option<u64> {
    const LARGE: u64 = 2 << 20;
    let start = allocator().next.next_multiple_of(LARGE);
    if start + LARGE > allocator().end {
        return None;
    }
    while allocator().next < start {
        let skipped = allocator().next;
        allocator().next += PAGE_SIZE;
        allocator().in_use += 1;
        free(skipped);
    }
    let a = allocator();
    a.next = start + LARGE;
    a.in_use += LARGE / PAGE_SIZE;
    Some(start)
}

/// Gives back a large page's 512 frames.
pub fn free_large(start: u64) {
    for i in 0..512 {
        free(start + i * PAGE_SIZE);
    }
}

/// Zeroes `len` bytes of frames from `start` (a frame or a large page).
pub fn zero(start: u64, len: u64) {
    // SAFETY: the range is frames the caller owns, guest RAM in the direct map.
    unsafe { core::ptr::write_bytes(memory::phys_to_virt(start) as *mut u8, 0, len as usize) };
}

/// Frames currently handed out.
pub fn in_use() -> u64 {
    allocator().in_use
}

/// A frame's contents, through the direct map.
pub fn bytes(frame: u64) -> &'static mut [u8] {
    // SAFETY: `frame` is a frame of guest RAM (from `alloc`), mapped read-write in the
    // direct map; the caller owns it while it is allocated.
    unsafe { core::slice::from_raw_parts_mut(memory::phys_to_virt(frame) as *mut u8, PAGE_SIZE as usize) }
}
