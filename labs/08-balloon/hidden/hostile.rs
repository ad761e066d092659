//! Lab 8, hidden: frame numbers the release must refuse without harm, and a random run
//! against a model.

mod rig;

use backend_drivers::balloon::release::{HostMemory, ReleaseError};
use backend_drivers::GuestMemory;
use vm_memory::{Bytes, GuestAddress};
use rig::*;

#[test]
fn hostile_frames_outside_guest_memory_are_an_error_not_a_panic() {
    let (memory, host) = filled(64);
    for (what, frames) in [
        ("frame 64, one past the end", vec![64u64]),
        ("frames 63 and 64: a run that crosses the end", vec![63, 64]),
        ("frame 1 << 40", vec![1 << 40]),
        ("u64::MAX: its address overflows", vec![u64::MAX]),
        ("u64::MAX / 4096 + 1: its address overflows", vec![u64::MAX / 4096 + 1]),
        ("u64::MAX - 1 and u64::MAX: a run at the top", vec![u64::MAX - 1, u64::MAX]),
    ] {
        let got = host.release(&frames);
        assert!(matches!(got, Err(ReleaseError::NotMapped(_))), "lab 8: HostMemory::release of {what}: must be Err(NotMapped), got {got:?}");
    }
    expect_released_exactly(&memory, 63, &[], "after refused batches");
}

#[test]
fn hostile_a_frame_in_a_hole_between_regions_is_refused() {
    // Frames 0..16 and 32..48 exist; 16..32 is a hole.
    let memory = GuestMemory::from_ranges(&[(GuestAddress(0), (16 * PAGE) as usize), (GuestAddress(32 * PAGE), (16 * PAGE) as usize)]).expect("two regions");
    for f in (0..16).chain(32..48) {
        memory.write_slice(&[pattern(f); PAGE as usize], GuestAddress(f * PAGE)).expect("fill");
    }
    let host = HostMemory::new(memory.clone());
    assert!(matches!(host.release(&[20]), Err(ReleaseError::NotMapped(_))), "lab 8: HostMemory::release of frame 20, in the hole between the regions: Err(NotMapped)");
    assert!(host.release(&[31, 32]).is_err(), "lab 8: HostMemory::release of frames 31 (in the hole) and 32: an error");
    host.release(&[33, 34, 40]).expect("lab 8: frames of the second region are released");
    for f in [33, 34, 40] {
        assert_eq!(sample(&memory, f), [0; 3], "lab 8: frame {f} of the second region was released: zeros");
    }
    for f in [35, 47, 15] {
        assert_eq!(sample(&memory, f), [pattern(f); 3], "lab 8: frame {f} was not released");
    }
}

#[test]
fn a_random_run_of_batches_matches_a_model() {
    let frames = 256u64;
    let (memory, host) = filled(frames);
    let mut released: Vec<u64> = Vec::new();
    let mut state = 0x1234_5678_9abc_def1u64;
    let mut next = |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    for round in 0..40 {
        // A batch of up to 30 frames (BALLOON_BATCH), in any order, adjacent or not.
        let len = 1 + next(30);
        let start = next(frames);
        let batch: Vec<u64> = (0..len).map(|i| if next(3) == 0 { next(frames) } else { (start + i) % frames }).collect();
        let runs = 1 + batch.windows(2).filter(|w| w[1] != w[0].wrapping_add(1)).count() as u64;
        let calls = host.release(&batch).unwrap_or_else(|e| panic!("lab 8: round {round}: HostMemory::release({batch:?}) failed: {e}"));
        assert!(calls <= runs && calls >= 1, "lab 8: round {round}: HostMemory::release({batch:?}): {calls} madvise calls for {runs} runs of adjacent frames (at most one per run)");
        released.extend(&batch);
        // The guest writes some released frames again (they are its own after a deflate).
        for _ in 0..5 {
            let f = next(frames);
            if let Some(at) = released.iter().position(|&r| r == f) {
                released.swap_remove(at);
                memory.write_slice(&[pattern(f); PAGE as usize], GuestAddress(f * PAGE)).expect("refill");
                released.retain(|&r| r != f);
            }
        }
        expect_released_exactly(&memory, frames, &released, &format!("round {round}"));
    }
}
