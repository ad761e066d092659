//! Lab 8's host helpers (not a test file: `mod rig;` in each test file): guest memory
//! filled with a pattern, its bytes per frame, and this process's resident memory.

#![allow(dead_code)] // each test file uses a part of the helpers

use backend_drivers::balloon::release::HostMemory;
use backend_drivers::GuestMemory;
use vm_memory::{Bytes, GuestAddress};

pub const PAGE: u64 = 4096;

/// `frames` frames of anonymous guest memory (one region from 0), each frame's bytes
/// set to a value of its own, so every frame is resident.
pub fn filled(frames: u64) -> (GuestMemory, HostMemory) {
    let memory = GuestMemory::from_ranges(&[(GuestAddress(0), (frames * PAGE) as usize)]).expect("the test maps guest memory");
    for f in 0..frames {
        memory.write_slice(&[pattern(f); PAGE as usize], GuestAddress(f * PAGE)).expect("the test fills guest memory");
    }
    let host = HostMemory::new(memory.clone());
    (memory, host)
}

/// The byte frame `f` is filled with (never zero).
pub fn pattern(f: u64) -> u8 {
    (f % 251) as u8 + 1
}

/// Frame `f`'s bytes at a few places (first, middle, last).
pub fn sample(memory: &GuestMemory, f: u64) -> [u8; 3] {
    let mut out = [0u8; 3];
    for (i, at) in [0, PAGE / 2, PAGE - 1].into_iter().enumerate() {
        let mut b = [0u8; 1];
        memory.read_slice(&mut b, GuestAddress(f * PAGE + at)).expect("the test reads guest memory");
        out[i] = b[0];
    }
    out
}

/// This process's resident memory (VmRSS), KiB.
pub fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line in /proc/self/status")
}

/// Every frame of `0..frames` reads as zeros if it is in `released`, else as its pattern.
pub fn expect_released_exactly(memory: &GuestMemory, frames: u64, released: &[u64], what: &str) {
    for f in 0..frames {
        let got = sample(memory, f);
        if released.contains(&f) {
            assert_eq!(got, [0; 3], "lab 8: {what}: frame {f} was released, so it must read as zeros (MADV_DONTNEED on anonymous memory), but reads {got:?}");
        } else {
            let p = pattern(f);
            assert_eq!(got, [p; 3], "lab 8: {what}: frame {f} was not in the batch, so it must keep its bytes ({p}), but reads {got:?}: release only the frames given, the whole frame and nothing else");
        }
    }
}
