//! The frame allocator: hands out 4 KiB guest-physical frames from the free memory the
//! boot-info page announces.
//!
//! Free frames are kept on a list threaded through the frames themselves (each free
//! frame's first 8 bytes hold the number of the next one), as xv6's `kalloc` does, so
//! the allocator needs no memory of its own. Frames never handed out yet come from a
//! bump pointer, so start-up costs nothing even with a lot of RAM: this matters when
//! every ring-0 instruction is emulated.
//!
//! Frames leave and come back as [`PseudoFrame`]s, and the bookkeeping is in frames
//! too; only the free list's links in memory are plain numbers (0 ends the list).

use pv_abi::addr::{PseudoFrame, PseudoPhys, PAGE_SIZE};
use pv_abi::paging::LARGE_PAGE_SIZE;
use pv_abi::BootInfo;

use crate::arch::cpu_local::{VcpuCell, VcpuRefMut};
use crate::arch::kernel_map;

/// The allocator's state.
struct FrameAllocator {
    /// Start of free memory: no frame below it is the allocator's.
    start: PseudoFrame,
    /// First never-used frame.
    next: PseudoFrame,
    /// End of free memory (exclusive).
    end: PseudoFrame,
    /// Head of the free list.
    free_list: Option<PseudoFrame>,
    /// Frames handed out and not freed.
    in_use: u64,
}

/// The allocator. Trap handlers use it too (a demand-zero fault allocates), but only
/// for faults taken in ring 3, never while kernel code holds it.
static FRAMES: VcpuCell<FrameAllocator> = VcpuCell::new(FrameAllocator {
    start: PseudoFrame::new(0),
    next: PseudoFrame::new(0),
    end: PseudoFrame::new(0),
    free_list: None,
    in_use: 0,
});

/// A free frame's link to the next one, as stored in its first 8 bytes: the frame
/// number, or 0 at the end of the list (frame 0 is never free memory).
fn link_of(next: Option<PseudoFrame>) -> u64 {
    next.map_or(0, PseudoFrame::raw)
}

/// The frame a stored link names.
fn frame_of_link(link: u64) -> Option<PseudoFrame> {
    (link != 0).then_some(PseudoFrame::new(link))
}

fn allocator() -> VcpuRefMut<'static, FrameAllocator> {
    FRAMES.borrow_mut()
}

/// Takes over the free memory described by the boot-info page (whose check makes its
/// bounds page-aligned).
pub fn init(info: &BootInfo) {
    let mut a = allocator();
    a.start = PseudoPhys::new(info.free_mem_start).frame();
    a.next = a.start;
    a.end = PseudoPhys::new(info.free_mem_end).frame();
}

/// A frame (its guest-physical address), contents undefined; `None` when memory is
/// exhausted.
pub fn alloc() -> Option<PseudoFrame> {
    let mut a = allocator();
    let frame = if let Some(frame) = a.free_list {
        // SAFETY: a free frame is guest RAM in the direct map, and its first 8 bytes
        // hold the link to the next free frame (written by `free`).
        let link = unsafe { core::ptr::read(kernel_map::direct_map::<u64>(owned_address(frame))) };
        a.free_list = frame_of_link(link);
        frame
    } else {
        match a.next.checked_add(1) {
            Some(after) if after <= a.end => core::mem::replace(&mut a.next, after),
            _ => return None,
        }
    };
    a.in_use += 1;
    Some(frame)
}

/// Gives a frame back.
pub fn free(frame: PseudoFrame) {
    let mut a = allocator();
    // Only a frame this allocator handed out may come back: anything else (say, from a
    // page-table entry a hostile test wrote) would corrupt the free list, or, below
    // free memory, the kernel itself.
    if frame < a.start || frame >= a.next {
        drop(a);
        // A frame number too large to have an address is shown as all ones.
        let shown = frame.checked_address().map_or(u64::MAX, PseudoPhys::raw);
        crate::println!("frames: refusing to free {shown:#x}: not a frame of free memory");
        return;
    }
    // SAFETY: the frame lies in free memory below the bump pointer, so `alloc` handed it
    // out: it is guest RAM in the direct map that no Rust object lives in, and the
    // caller gives up its use of it.
    unsafe { core::ptr::write(kernel_map::direct_map::<u64>(owned_address(frame)), link_of(a.free_list)) };
    a.free_list = Some(frame);
    a.in_use -= 1;
}

/// A 2 MiB-aligned run of 512 frames for a large page, from the never-used part of
/// free memory (the frames skipped to reach the alignment go on the free list).
pub fn alloc_large() -> Option<PseudoFrame> {
    let (mut next, end) = {
        let a = allocator();
        (a.next, a.end)
    };
    let start = owned_address(next).checked_align_up(LARGE_PAGE_SIZE)?.frame();
    let after = start.checked_add(FRAMES_PER_LARGE_PAGE)?;
    if after > end {
        return None;
    }
    while next < start {
        let skipped = next;
        {
            let mut a = allocator();
            // `skipped` is below `start`, so the frame after it exists.
            a.next = skipped.checked_add(1)?;
            a.in_use += 1;
        }
        free(skipped);
        next = skipped.checked_add(1)?;
    }
    let mut a = allocator();
    a.next = after;
    a.in_use += FRAMES_PER_LARGE_PAGE;
    Some(start)
}

/// Frames in one large page (512).
const FRAMES_PER_LARGE_PAGE: u64 = LARGE_PAGE_SIZE / PAGE_SIZE;

/// Gives back a large page's 512 frames.
pub fn free_large(start: PseudoFrame) {
    for frame in (0..FRAMES_PER_LARGE_PAGE).filter_map(|i| start.checked_add(i)) {
        free(frame);
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
