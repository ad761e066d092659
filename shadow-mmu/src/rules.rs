//! The isolation rules the engine and the reference both apply, written once.
//!
//! The engine (`shadow`) builds shadow entries; the reference (`reference`) works out
//! from scratch what they must say. Both must agree on what the configuration allows
//! (the page-table pool, passed-through device frames) and on which frames a leaf
//! entry maps, so those rules live here, below both of them.

use std::ops::Range;

use pv_abi::addr::{MachineFrame, PseudoFrame, PseudoPhys, PAGE_SIZE};
use pv_abi::paging::{Pte, ENTRY_SIZE, LARGE_PAGE_SIZE};

use crate::event::Refusal;

/// Frames in a 2 MiB page.
const FRAMES_PER_LARGE_PAGE: u64 = LARGE_PAGE_SIZE / PAGE_SIZE;

/// How the engine is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShadowConfig {
    /// Guest frames that may hold page tables (the page-table pool).
    pub pool: Range<PseudoFrame>,
    /// Machine frames the engine may use for shadow tables. No guest frame maps here.
    pub shadow_area: Range<MachineFrame>,
    /// Most shadow roots kept at once.
    pub root_cache: usize,
    /// Whether the pool's machine frames trap writes themselves (a read-only memslot):
    /// then a writable guest mapping of a pool frame may stay writable in the shadow,
    /// because a store through it never reaches the frame but exits to the VMM. If
    /// false, such mappings are reflected read-only.
    pub pool_traps_writes: bool,
    /// Device frames outside RAM the guest may map (4 KiB pages only): guest frame →
    /// machine frame. hv passes the local APIC's register page through this way.
    pub device_frames: Vec<(PseudoFrame, MachineFrame)>,
}

impl ShadowConfig {
    /// Whether any of the guest frames `first..first + count` is in the page-table pool.
    pub fn pool_overlaps(&self, first: PseudoFrame, count: u64) -> bool {
        let end = first.checked_add(count).unwrap_or(PseudoFrame::new(u64::MAX));
        first < self.pool.end && self.pool.start < end
    }

    /// Whether `entry` is a page-table entry (8-byte aligned) in a pool frame: the only
    /// place a guest page-table write may go.
    pub(crate) fn is_pool_entry(&self, entry: PseudoPhys) -> bool {
        self.pool.contains(&entry.frame()) && entry.is_aligned(ENTRY_SIZE)
    }
}

/// The frames a leaf entry maps: (first frame, count), or why it cannot be reflected.
pub fn leaf_frames(entry: Pte, large: bool) -> Result<(PseudoFrame, u64), Refusal> {
    let first = entry.pseudo_frame();
    if large {
        // An entry's frame always has an address (it has only 40 bits).
        if !first.checked_address().is_some_and(|a| a.is_aligned(LARGE_PAGE_SIZE)) {
            return Err(Refusal::Misaligned);
        }
        Ok((first, FRAMES_PER_LARGE_PAGE))
    } else {
        Ok((first, 1))
    }
}

/// The machine frame of a passed-through device frame, if `first` is one (4 KiB only).
pub fn device_frame(config: &ShadowConfig, first: PseudoFrame, large: bool) -> Option<MachineFrame> {
    if large {
        return None;
    }
    config.device_frames.iter().find(|(g, _)| *g == first).map(|(_, m)| *m)
}
