//! The balloon device's host side: the limits every returned frame is checked against,
//! the target hv sets (`hv run --balloon-target MIB`, `hv ctl PATH balloon MIB`), and
//! the figures `--stats` and `hv ctl` show.
//!
//! The backend (`backend_drivers::balloon`) keeps the set of frames it holds in a
//! [`SharedBalloonState`] that this side keeps a handle on too: a snapshot saves it, a
//! restore (or a migration's destination) starts its backend from it, and the counters
//! are read from it. The target, floor and size live in the ring page's control block
//! (`pv_abi::device::balloon`), which is guest RAM and so travels with it.

use std::sync::{Arc, Mutex};

use backend_drivers::balloon::check::BalloonLimits;
use backend_drivers::balloon::state::{BalloonCounters, BalloonState};
use backend_drivers::balloon::SharedBalloonState;
use pv_abi::addr::{PseudoPhys, PAGE_SHIFT};
use pv_abi::device::balloon::{BALLOON_FLOOR_OFFSET, BALLOON_SIZE_OFFSET, BALLOON_TARGET_OFFSET};
use pv_abi::layout::{pt_pool, BALLOON_RING_GPA, BOOT_INFO_GPA, VMM_RESERVED_END};
use pv_abi::BootInfo;

use crate::memory::{GuestRam, OutsideRam};

/// The balloon's ring page.
pub const BALLOON_RING: PseudoPhys = PseudoPhys::new(BALLOON_RING_GPA);

/// The frames a guest of `ram_bytes` whose kernel image spans `kernel` (bytes,
/// guest-physical) may give: RAM's size, the reserved area and the pool from pv-abi.
pub fn limits(ram_bytes: u64, kernel: std::ops::Range<u64>) -> BalloonLimits {
    let pool = pt_pool(ram_bytes);
    let frame = |a: u64| a >> PAGE_SHIFT;
    BalloonLimits {
        ram_frames: frame(ram_bytes),
        reserved_end: frame(VMM_RESERVED_END),
        kernel: frame(kernel.start)..frame(kernel.end.next_multiple_of(pv_abi::addr::PAGE_SIZE)),
        pool: frame(pool.start.raw())..frame(pool.end.raw()),
    }
}

/// [`limits`] for a guest already running (a restore): the kernel's bounds from the
/// boot-info page hv wrote at its boot. A guest may have changed that page since; a
/// range it forged could only make hv refuse more of its own frames, never accept a
/// page table or a reserved page (those bounds come from pv-abi).
pub fn limits_from_boot_info(ram: &GuestRam) -> Result<BalloonLimits, OutsideRam> {
    let start = ram.read_u64(PseudoPhys::new(BOOT_INFO_GPA + std::mem::offset_of!(BootInfo, kernel_start) as u64))?;
    let end = ram.read_u64(PseudoPhys::new(BOOT_INFO_GPA + std::mem::offset_of!(BootInfo, kernel_end) as u64))?;
    Ok(limits(ram.size(), start.min(end)..end))
}

/// A new, empty balloon's state for `ram`.
pub fn new_state(ram: &GuestRam) -> SharedBalloonState {
    Arc::new(Mutex::new(BalloonState::new(ram.size() >> PAGE_SHIFT)))
}

/// Pages in `mib` MiB.
pub const fn mib_to_pages(mib: u64) -> u64 {
    mib << (20 - PAGE_SHIFT)
}

fn read_field(ram: &GuestRam, offset: usize) -> Result<u64, OutsideRam> {
    ram.read_u64(PseudoPhys::new(BALLOON_RING_GPA + offset as u64))
}

/// Writes the target (pages of RAM the guest should keep) into the control block. The
/// caller then raises the balloon's channel so the guest looks.
pub fn write_target(ram: &GuestRam, pages: u64) -> Result<(), OutsideRam> {
    ram.write_u64(PseudoPhys::new(BALLOON_RING_GPA + BALLOON_TARGET_OFFSET as u64), pages)
}

/// The balloon as `--stats` and `hv ctl` show it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BalloonReport {
    /// RAM in pages.
    pub mem_pages: u64,
    /// hv's target (pages of RAM to keep).
    pub target_pages: u64,
    /// The floor the guest announced (pages).
    pub floor_pages: u64,
    /// Frames the host holds.
    pub ballooned_pages: u64,
    /// The backend's counters (flattened into the report's JSON object).
    #[serde(flatten)]
    pub counters: BalloonCounters,
}

/// Reads the report from the control block and the shared state.
pub fn report(ram: &GuestRam, state: &SharedBalloonState) -> BalloonReport {
    let guard = state.lock().unwrap_or_else(|p| p.into_inner());
    BalloonReport {
        mem_pages: ram.size() >> PAGE_SHIFT,
        target_pages: read_field(ram, BALLOON_TARGET_OFFSET).unwrap_or(0),
        floor_pages: read_field(ram, BALLOON_FLOOR_OFFSET).unwrap_or(0),
        ballooned_pages: guard.ballooned.len(),
        counters: guard.counters,
    }
}

impl BalloonReport {
    /// `--stats`' line.
    pub fn line(&self) -> String {
        let mib = |pages: u64| pages as f64 * 4096.0 / (1 << 20) as f64;
        let c = &self.counters;
        let rate = if c.release_ns > 0 { mib(c.inflated) / (c.release_ns as f64 / 1e9) } else { 0.0 };
        format!(
            "balloon: target {:.1} MiB of {:.1} MiB, floor {:.1} MiB, held {:.1} MiB; frames given {}, taken back {}, batches refused {}, release errors {}; RSS before the latest inflation {:.1} MiB, after {:.1} MiB; madvise {:.0} MiB/s",
            mib(self.target_pages),
            mib(self.mem_pages),
            mib(self.floor_pages),
            mib(self.ballooned_pages),
            c.inflated,
            c.deflated,
            c.refused,
            c.release_errors,
            c.rss_before_kib as f64 / 1024.0,
            c.rss_after_kib as f64 / 1024.0,
            rate
        )
    }
}

/// Reads a saved control block's size field (for checks after a restore).
pub fn host_size_field(ram: &GuestRam) -> Option<u64> {
    read_field(ram, BALLOON_SIZE_OFFSET).ok()
}
