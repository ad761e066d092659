//! The same ring-3 code, run natively: the host's own speed for the `tlb-miss` loop.
//!
//! The pointer chase in `pv-guest/src/commands/bench/tlb_walk.s` is assembled twice:
//! into the guest's ring-3 program and, here, into hv itself. This module maps a working set
//! of the same size in this process, fills it with the same words, and times the same
//! instructions over it. Guest time / native time is what the VM costs for this loop:
//! on a host with hardware two-dimensional paging, mostly the longer page walks on TLB
//! misses; elsewhere, whatever the host's MMU virtualization adds.
//!
//! Huge pages on the host are only a request (`madvise`); whether the kernel granted
//! them is read back from /proc/self/smaps and reported, never assumed.

use std::time::Instant;

use serde::Serialize;

use super::checks;
use super::summary::Summary;

core::arch::global_asm!(
    ".text",
    ".p2align 4",
    ".globl hv_bench_tlb_walk",
    ".type hv_bench_tlb_walk, @function",
    "hv_bench_tlb_walk:",
    include_str!("../../../pv-guest/src/commands/bench/tlb_walk.s"),
    ".size hv_bench_tlb_walk, . - hv_bench_tlb_walk",
);

extern "sysv64" {
    /// The shared pointer chase: base, offset mask, steps, seed → sum of words read.
    fn hv_bench_tlb_walk(base: *const u64, mask: u64, steps: u64, seed: u64) -> u64;
}

const LARGE_PAGE: usize = 2 << 20;

/// What the native run measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NativeWalk {
    /// Nanoseconds per step over the repetitions.
    pub time_per_step_ns: Summary,
    /// What was asked of the host kernel.
    pub pages_requested: &'static str,
    /// Bytes of the working set the host backed with huge pages (AnonHugePages in
    /// /proc/self/smaps), if that could be read.
    pub host_huge_page_bytes: Option<u64>,
}

/// Why the native run failed.
#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    /// The working set could not be mapped.
    #[error("native tlb-miss run: cannot map {0} bytes: {1}")]
    Map(usize, std::io::Error),
    /// The size is not a power of two of at least 2 MiB.
    #[error("native tlb-miss run: the working set must be a power of two of at least 2 MiB, not {0} bytes")]
    Size(usize),
    /// The loop's sum is wrong.
    #[error("native tlb-miss run: repetition {rep} summed to {got:#x}, expected {expected:#x}")]
    Check {
        /// Which repetition.
        rep: u64,
        /// What the loop returned.
        got: u64,
        /// What it must return.
        expected: u64,
    },
}

/// An anonymous mapping of host memory, aligned to 2 MiB, unmapped when dropped.
struct WorkingSet {
    mapping: *mut libc::c_void,
    mapping_len: usize,
    base: *mut u64,
    len: usize,
}

impl WorkingSet {
    fn new(len: usize, huge: bool) -> Result<Self, NativeError> {
        let mapping_len = len + LARGE_PAGE;
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing
        // touches no existing memory; the result is checked before use.
        let mapping = unsafe {
            libc::mmap(std::ptr::null_mut(), mapping_len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        if mapping == libc::MAP_FAILED {
            return Err(NativeError::Map(len, std::io::Error::last_os_error()));
        }
        let offset = (LARGE_PAGE - mapping as usize % LARGE_PAGE) % LARGE_PAGE;
        // SAFETY: offset < LARGE_PAGE, so base..base + len lies inside the mapping.
        let base = unsafe { mapping.cast::<u8>().add(offset) }.cast::<u64>();
        let advice = if huge { libc::MADV_HUGEPAGE } else { libc::MADV_NOHUGEPAGE };
        // SAFETY: advice on a range of our own fresh mapping; failure only means the
        // host ignores it, which the smaps read-back reports.
        unsafe { libc::madvise(base.cast(), len, advice) };
        Ok(WorkingSet { mapping, mapping_len, base, len })
    }

    /// Word i, as `tlb-miss` fills it: the word at byte offset o is o · multiplier.
    fn fill(&mut self) {
        // SAFETY: base is 8-byte aligned and the mapping holds len bytes from it, which
        // nothing else refers to while this slice lives.
        let words = unsafe { std::slice::from_raw_parts_mut(self.base, self.len / 8) };
        for (i, w) in words.iter_mut().enumerate() {
            *w = checks::tlb_fill_word(i as u64 * 8);
        }
    }

    fn walk(&self, steps: u64, seed: u64) -> u64 {
        // SAFETY: the routine reads only base + (x & (len − 8)), 8 bytes each: inside
        // the working set, since len is a power of two. It follows the System V ABI
        // and clobbers only caller-saved registers.
        unsafe { hv_bench_tlb_walk(self.base, self.len as u64 - 8, steps, seed) }
    }
}

impl Drop for WorkingSet {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `new`, no longer referenced.
        unsafe { libc::munmap(self.mapping, self.mapping_len) };
    }
}

/// Runs the pointer chase natively: `reps` runs of `steps` steps over `bytes`, seeds
/// 1, 2, … as in the guest, each sum checked.
pub fn tlb_walk(bytes: u64, steps: u64, reps: u64, huge: bool) -> Result<NativeWalk, NativeError> {
    let len = bytes as usize;
    if !len.is_power_of_two() || len < LARGE_PAGE {
        return Err(NativeError::Size(len));
    }
    let mut set = WorkingSet::new(len, huge)?;
    set.fill();
    let mut times = Vec::new();
    for rep in 0..reps {
        let start = Instant::now();
        let got = set.walk(steps, rep + 1);
        times.push(start.elapsed().as_nanos() as f64 / steps.max(1) as f64);
        let expected = checks::tlb_walk(bytes, steps, rep + 1);
        if got != expected {
            return Err(NativeError::Check { rep, got, expected });
        }
    }
    Ok(NativeWalk {
        time_per_step_ns: Summary::of(&times).ok_or(NativeError::Size(len))?,
        pages_requested: if huge { "2 MiB (MADV_HUGEPAGE)" } else { "4 KiB (MADV_NOHUGEPAGE)" },
        host_huge_page_bytes: huge_page_bytes(set.base as u64),
    })
}

/// AnonHugePages of the /proc/self/smaps entry that contains `address`.
fn huge_page_bytes(address: u64) -> Option<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            let range = u64::from_str_radix(start, 16).ok()?..u64::from_str_radix(end, 16).ok()?;
            inside = range.contains(&address);
        } else if inside {
            if let Some(kb) = line.strip_prefix("AnonHugePages:") {
                return kb.trim().strip_suffix("kB")?.trim().parse::<u64>().ok().map(|k| k * 1024);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_loop_computes_what_the_host_model_predicts() {
        let walk = tlb_walk(2 << 20, 10_000, 2, false).unwrap();
        assert_eq!(walk.time_per_step_ns.count, 2);
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert!(matches!(tlb_walk(3 << 20, 1, 1, false), Err(NativeError::Size(_))));
        assert!(matches!(tlb_walk(4096, 1, 1, false), Err(NativeError::Size(_))));
    }
}
