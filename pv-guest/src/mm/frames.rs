//! The frame allocator: hands out 4 KiB guest-physical frames from the free memory the
//! boot-info page announces.
//!
//! Free frames are kept on a list threaded through the frames themselves (each free
//! frame's first 8 bytes hold the address of the next one), as xv6's `kalloc` does, so
//! the allocator needs no memory of its own. Frames never handed out yet come from a
//! bump pointer, so start-up costs nothing even with a lot of RAM: this matters when
//! every ring-0 instruction is emulated.
//!
//! Frames leave and come back as [`PseudoFrame`]s; inside, the bookkeeping is raw
//! guest-physical addresses.

use pv_abi::addr::{PseudoFrame, PseudoPhys, PAGE_SIZE};
use pv_abi::paging::LARGE_PAGE_SIZE;
use pv_abi::BootInfo;

use crate::arch::cpu_local::{VcpuCell, VcpuRefMut};
use crate::arch::kernel_map;

/// The allocator's state (raw guest-physical addresses).
struct FrameAllocator {
    /// Start of free memory: no frame below it is the allocator's.
    start: u64,
    /// First never-used frame.
    next: u64,
    /// End of free memory.
    end: u64,
    /// Head of the free list (a gpa), or 0 for empty (frame 0 is never free memory).
    free_list: u64,
    /// Frames handed out and not freed.
    in_use: u64,
}

/// The allocator. Trap handlers use it too (a demand-zero fault allocates), but only
/// for faults taken in ring 3, never while kernel code holds it.
static FRAMES: VcpuCell<FrameAllocator> = VcpuCell::new(FrameAllocator { start: 0, next: 0, end: 0, free_list: 0, in_use: 0 });

fn allocator() -> VcpuRefMut<'static, FrameAllocator> {
    FRAMES.borrow_mut()
}

/// Takes over the free memory described by the boot-info page.
pub fn init(info: &BootInfo) {
    let mut a = allocator();
    a.start = info.free_mem_start;
    a.next = info.free_mem_start;
    a.end = info.free_mem_end;
}

/// A frame (its guest-physical address), contents undefined; `None` when memory is
/// exhausted.
pub fn alloc() -> Option<PseudoFrame> {
    let mut a = allocator();
    let frame = if a.free_list != 0 {
        let frame = a.free_list;
        // SAFETY: a free frame is guest RAM in the direct map, and its first 8 bytes
        // hold the next free frame (written by `free`).
        a.free_list = unsafe { core::ptr::read(kernel_map::direct_map::<u64>(PseudoPhys::new(frame))) };
        frame
    } else if a.next + PAGE_SIZE <= a.end {
        let frame = a.next;
        a.next += PAGE_SIZE;
        frame
    } else {
        return None;
    };
    a.in_use += 1;
    Some(PseudoPhys::new(frame).frame())
}

/// Gives a frame back.
pub fn free(frame: PseudoFrame) {
    // A frame number too large to have an address is refused below (u64::MAX is never
    // below the bump pointer).
    let frame = frame.checked_address().map_or(u64::MAX, PseudoPhys::raw);
    let mut a = allocator();
    // Only a frame this allocator handed out may come back: anything else (say, from a
    // page-table entry a hostile test wrote) would corrupt the free list, or, below
    // free memory, the kernel itself.
    if !frame.is_multiple_of(PAGE_SIZE) || frame < a.start || frame >= a.next {
        drop(a);
        crate::println!("frames: refusing to free {frame:#x}: not a frame of free memory");
        return;
    }
    // SAFETY: the frame lies in free memory below the bump pointer, so `alloc` handed it
    // out: it is guest RAM in the direct map that no Rust object lives in, and the
    // caller gives up its use of it.
    unsafe { core::ptr::write(kernel_map::direct_map::<u64>(PseudoPhys::new(frame)), a.free_list) };
    a.free_list = frame;
    a.in_use -= 1;
}

/// A 2 MiB-aligned run of 512 frames for a large page, from the never-used part of
/// free memory (the frames skipped to reach the alignment go on the free list).
pub fn alloc_large() -> Option<PseudoFrame> {
    const LARGE: u64 = LARGE_PAGE_SIZE;
    let (mut next, end) = {
        let a = allocator();
        (a.next, a.end)
    };
    let start = next.next_multiple_of(LARGE);
    if start + LARGE > end {
        return None;
    }
    while next < start {
        {
            let mut a = allocator();
            a.next += PAGE_SIZE;
            a.in_use += 1;
        }
        free(PseudoPhys::new(next).frame());
        next += PAGE_SIZE;
    }
    let mut a = allocator();
    a.next = start + LARGE;
    a.in_use += LARGE / PAGE_SIZE;
    Some(PseudoPhys::new(start).frame())
}

/// Gives back a large page's 512 frames.
pub fn free_large(start: PseudoFrame) {
    for i in 0..LARGE_PAGE_SIZE / PAGE_SIZE {
        // A frame a large page starts at is far from the end of the numbers.
        free(PseudoFrame::new(start.raw() + i));
    }
}

/// Zeroes `len` bytes of frames from `start` (a frame or a large page).
///
/// # Safety
/// The frames `start..` covering `len` bytes must be frames the caller owns (from
/// [`alloc`] or [`alloc_large`], not freed), of which no reference is alive.
pub unsafe fn zero(start: PseudoFrame, len: u64) {
    let gpa = owned_address(start);
    // SAFETY: the caller owns the range, guest RAM in the direct map, and nothing else
    // refers to it.
    unsafe { core::ptr::write_bytes(kernel_map::direct_map::<u8>(gpa), 0, len as usize) };
}

/// Frames currently handed out.
pub fn in_use() -> u64 {
    allocator().in_use
}

/// A frame's contents, through the direct map.
///
/// # Safety
/// `frame` must be a frame the caller owns (from [`alloc`], not freed), and the slice
/// must be the only reference to it for as long as the slice is used (a device may
/// write it only while the caller is not looking, as a block read does).
pub unsafe fn bytes<'a>(frame: PseudoFrame) -> &'a mut [u8] {
    let gpa = owned_address(frame);
    // SAFETY: the caller owns the frame, guest RAM mapped read-write in the direct map,
    // and holds no other reference to it.
    unsafe { core::slice::from_raw_parts_mut(kernel_map::direct_map::<u8>(gpa), PAGE_SIZE as usize) }
}

/// The address of a frame the caller owns: a frame of guest RAM, so its number is far
/// too small for the shift to lose bits.
fn owned_address(frame: PseudoFrame) -> PseudoPhys {
    PseudoPhys::new(frame.raw() << pv_abi::addr::PAGE_SHIFT)
}
