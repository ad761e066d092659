//! Lab 8, part b: the host's release. `HostMemory::release` gives the memory behind the
//! frames a guest returned back to the host kernel: its resident memory falls.

mod rig;

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion};
use vm_memory::bitmap::Bitmap;
use rig::*;

#[test]
fn released_frames_read_as_zeros_and_their_neighbours_keep_their_bytes() {
    let (memory, host) = filled(64);
    let frames = [3, 4, 5, 9, 10, 40, 63, 0];
    host.release(&frames).expect("lab 8: HostMemory::release of frames inside guest memory must succeed");
    expect_released_exactly(&memory, 64, &frames, "after releasing frames 0, 3-5, 9-10, 40 and 63 of 64");
}

#[test]
fn a_run_of_adjacent_frames_costs_one_madvise() {
    let (memory, host) = filled(64);
    let calls = host.release(&[3, 4, 5, 9, 10, 40]).expect("lab 8: HostMemory::release of frames inside guest memory must succeed");
    assert_eq!(calls, 3, "lab 8: HostMemory::release returns the madvise calls it made: frames 3-5, 9-10 and 40 are three runs of adjacent frames, so three calls (one system call per run, not per frame)");
    assert_eq!(host.release(&[7]).expect("lab 8: release of one frame"), 1, "lab 8: HostMemory::release: one frame, one call");
    assert_eq!(host.release(&[]).expect("lab 8: release of nothing"), 0, "lab 8: HostMemory::release: an empty batch makes no call");
    expect_released_exactly(&memory, 64, &[3, 4, 5, 9, 10, 40, 7], "after three batches");
}

#[test]
fn the_resident_memory_falls_by_what_is_released() {
    // 32 MiB of guest memory, every page written: resident.
    let frames = 32 * 256;
    let (_memory, host) = filled(frames);
    let before = resident_kib();
    let all: Vec<u64> = (0..frames).collect();
    host.release(&all).expect("lab 8: HostMemory::release of all of guest memory must succeed");
    let after = resident_kib();
    let fell = before.saturating_sub(after);
    println!("lab 8: released 32 MiB: VmRSS {before} KiB -> {after} KiB ({} MiB less)", fell >> 10);
    assert!(
        fell >= 28 << 10,
        "lab 8: releasing 32 MiB of resident guest memory lowered this process's VmRSS by only {fell} KiB ({before} -> {after} KiB): the pages must really go back to the host kernel (madvise with MADV_DONTNEED over the frames' host addresses)"
    );
}

#[test]
fn released_frames_are_marked_dirty_for_a_migration_in_progress() {
    let (memory, host) = filled(16);
    let region = memory.find_region(GuestAddress(0)).expect("one region");
    // Filling the frames dirtied them all: start from a clean log (MmapRegion's bitmap).
    let mapping: &vm_memory::MmapRegion<vm_memory::bitmap::AtomicBitmap> = region;
    mapping.bitmap().reset();
    host.release(&[2, 3, 11]).expect("lab 8: HostMemory::release");
    for f in 0..16u64 {
        let dirty = region.bitmap().dirty_at((f * PAGE) as usize);
        let want = [2, 3, 11].contains(&f);
        assert_eq!(dirty, want, "lab 8: after releasing frames 2, 3 and 11, frame {f} must {}be marked dirty in the region's bitmap: the release changed the frame's contents (to zeros) without a guest write, so KVM's dirty log cannot see it, and a migration must send it again", if want { "" } else { "not " });
    }
}
