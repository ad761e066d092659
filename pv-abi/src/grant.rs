//! Grants: how a frontend lets a backend touch one page of its memory, for one request.
//!
//! A backend must never be able to read or write guest memory at will (in Xen it runs in
//! another VM; in hv it runs on another thread, which is the same idea in miniature).
//! Instead the frontend *grants* access to a frame: it fills an entry of its grant table
//! (frames whose location the boot-info page announces) and puts the entry's index, a
//! [`GrantRef`], in the request. The hypervisor checks the entry on every access the
//! backend makes, and refuses anything that is not granted, has been revoked, or names
//! a frame outside the guest's memory.
//!
//! ```text
//!  grant table: GRANT_TABLE_FRAMES contiguous frames of 256 entries of 16 bytes each
//!  frame 0                                      entry 0 is never used (GrantRef 0 = "none")
//!  ┌──────────┬──────────┬───────────────────┐
//!  │ flags u32│ reserved │ frame (gpa >> 12) │  entries 0..=255
//!  ├──────────┼──────────┼───────────────────┤
//!  │ …        │          │                   │
//!  frame 1                                      entries 256..=511
//!  │ …        │          │                   │
//!  frame 3                                      entries 768..=1023 (GRANT_ENTRIES - 1)
//!  └──────────┴──────────┴───────────────────┘
//! ```
//!
//! Entry `g` is at byte `g * 16` from the table's start, so it lies in frame
//! `g / GRANT_ENTRIES_PER_FRAME`; an entry never straddles two frames (256 × 16 = 4096).
//!
//! The frontend writes `frame` first and `flags` last (with release ordering), so a
//! backend that sees [`GrantFlags::PERMIT_ACCESS`] also sees the right frame. To revoke, it clears
//! `flags` once the response has arrived. (hv's backends copy data in and out while they
//! handle a request and keep no mapping, so a grant that is revoked early only makes that
//! request fail.)
//!
//! ## Why several frames
//!
//! A Xen guest's grant table starts small and grows a frame at a time, up to a limit the
//! host sets, because a busy split driver needs an entry per frame it has in flight. hv's table has a fixed size, set by hv and
//! announced in the boot-info page (`grant_table_gpa`, `grant_table_frames`):
//! [`GRANT_TABLE_FRAMES`] frames, [`GRANT_ENTRIES`] entries. The sizing: the block device
//! keeps 32 requests of up to 16 frames in flight (512 entries), the network device sets
//! 64 entries aside, and what is left (447) is headroom for a device to come. One frame (255 usable entries) held only 15 requests
//! of 64 KiB.
//!
//! The guest cannot move or resize the table: hv places it in its reserved area (see
//! `layout`), where no grant may point ([`grant_window`]), so a backend reading an entry
//! never reads anything but the table, and no grant can make a backend write it.

use bitflags::bitflags;

use crate::addr::{FrameRange, PseudoFrame, PseudoPhys, PAGE_SIZE};
use crate::layout::{pt_pool, VMM_RESERVED_END};
pub use crate::layout::{GRANT_TABLE_BYTES, GRANT_TABLE_FRAMES};

/// Index of an entry in the grant table.
pub type GrantRef = u32;

/// Size of one entry.
pub const GRANT_ENTRY_SIZE: usize = 16;
/// Entries in one frame of the table.
pub const GRANT_ENTRIES_PER_FRAME: u32 = PAGE_SIZE as u32 / GRANT_ENTRY_SIZE as u32;
/// Entries in the whole table ([`GRANT_TABLE_FRAMES`] frames, contiguous from
/// `BootInfo::grant_table_gpa`), entry 0 (never used) included: valid references are
/// `1..GRANT_ENTRIES`.
pub const GRANT_ENTRIES: u32 = GRANT_TABLE_FRAMES * GRANT_ENTRIES_PER_FRAME;

// An entry never straddles two frames, and the table holds the block device's 32
// requests of 16 frames, the network's 64 entries and entry 0.
const _: () = assert!((PAGE_SIZE as usize).is_multiple_of(GRANT_ENTRY_SIZE));
const _: () = assert!(GRANT_ENTRIES > 32 * 16 + 64);
/// Byte offset of `flags` in an entry.
pub const GRANT_FLAGS_OFFSET: usize = 0;
/// Byte offset of `frame` in an entry.
pub const GRANT_FRAME_OFFSET: usize = 8;

bitflags! {
    /// The `flags` word of a grant entry (Xen's `GTF_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct GrantFlags: u32 {
        /// The entry grants access.
        const PERMIT_ACCESS = 1 << 0;
        /// The access is read-only (the backend may read the frame, not write it).
        const READ_ONLY = 1 << 1;
    }
}

/// The frames a backend may ever be granted, for `mem_bytes` of guest RAM: the guest's
/// RAM between hv's reserved area (boot pages, shared-info page, grant table, rings) and
/// the page-table pool.
///
/// Page tables are never I/O buffers: a device writing one would change the guest's
/// mappings behind the MMU's back (in shadow mode, without the write ever being trapped),
/// and a device writing the reserved area could forge the guest's shared pages. This is
/// the one function that decides the window; `tests::hostile_grant_window_*` prove it
/// for every RAM size hv accepts.
pub const fn grant_window(mem_bytes: u64) -> FrameRange<PseudoFrame> {
    FrameRange { start: PseudoPhys::new(VMM_RESERVED_END).frame(), end: pt_pool(mem_bytes).start.frame() }
}

/// What the backend wants to do with a granted frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantAccess {
    /// Read guest data (e.g. a block write: data goes from guest to disk).
    Read,
    /// Write guest data (e.g. a block read: data goes from disk to guest).
    Write,
}

/// Why a grant check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantProblem {
    /// The reference is 0 or past the table.
    OutOfRange,
    /// The entry does not grant access (never granted, or revoked).
    NotGranted,
    /// A write through a read-only grant.
    ReadOnly,
    /// The granted frame is not a guest RAM frame the backend may use.
    BadFrame,
}

impl core::fmt::Display for GrantProblem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            GrantProblem::OutOfRange => "the grant reference is 0 or past the grant table",
            GrantProblem::NotGranted => "the grant entry does not permit access (never granted, or revoked)",
            GrantProblem::ReadOnly => "a write through a read-only grant",
            GrantProblem::BadFrame => "the granted frame is outside the frames a backend may use",
        })
    }
}

impl core::error::Error for GrantProblem {}

impl GrantProblem {
    /// Short name for traces.
    pub const fn name(self) -> &'static str {
        match self {
            GrantProblem::OutOfRange => "out-of-range",
            GrantProblem::NotGranted => "not-granted",
            GrantProblem::ReadOnly => "read-only",
            GrantProblem::BadFrame => "bad-frame",
        }
    }
}

/// Checks one entry (flags and frame as read, once, from the table) against an access.
/// `window` is the frames the backend may touch ([`grant_window`]). Unknown flag bits are
/// ignored, as Xen does.
pub fn check_grant(
    gref: GrantRef,
    flags: u32,
    frame: PseudoFrame,
    access: GrantAccess,
    window: FrameRange<PseudoFrame>,
) -> Result<PseudoFrame, GrantProblem> {
    let flags = GrantFlags::from_bits_truncate(flags);
    if gref == 0 || gref >= GRANT_ENTRIES {
        return Err(GrantProblem::OutOfRange);
    }
    if !flags.contains(GrantFlags::PERMIT_ACCESS) {
        return Err(GrantProblem::NotGranted);
    }
    if access == GrantAccess::Write && flags.contains(GrantFlags::READ_ONLY) {
        return Err(GrantProblem::ReadOnly);
    }
    if !window.contains(frame) {
        return Err(GrantProblem::BadFrame);
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{pt_pool_bytes, LARGE_PAGE_SIZE, MAX_MEM_MIB, MIN_MEM_MIB};

    const PERMIT: u32 = GrantFlags::PERMIT_ACCESS.bits();
    const READ_ONLY: u32 = GrantFlags::READ_ONLY.bits();

    fn f(n: u64) -> PseudoFrame {
        PseudoFrame::new(n)
    }

    fn any() -> FrameRange<PseudoFrame> {
        FrameRange { start: f(0), end: f(u64::MAX) }
    }

    #[test]
    fn a_granted_frame_is_returned() {
        assert_eq!(check_grant(5, PERMIT, f(0x300), GrantAccess::Write, any()), Ok(f(0x300)));
        assert_eq!(check_grant(5, PERMIT | READ_ONLY, f(0x300), GrantAccess::Read, any()), Ok(f(0x300)));
    }

    #[test]
    fn problems_explain_themselves() {
        assert_eq!(GrantProblem::OutOfRange.to_string(), "the grant reference is 0 or past the grant table");
        let e: &dyn core::error::Error = &GrantProblem::BadFrame;
        assert!(e.to_string().contains("outside the frames a backend may use"));
    }

    #[test]
    fn the_table_is_four_frames_of_256_entries() {
        assert_eq!((GRANT_ENTRIES_PER_FRAME, GRANT_TABLE_FRAMES, GRANT_ENTRIES, GRANT_TABLE_BYTES), (256, 4, 1024, 16384));
    }

    #[test]
    fn hostile_references_at_the_tables_end_the_last_is_valid_the_next_is_refused() {
        let last = GRANT_ENTRIES - 1;
        assert_eq!(check_grant(last, PERMIT, f(0x300), GrantAccess::Write, any()), Ok(f(0x300)));
        assert_eq!(check_grant(last + 1, PERMIT, f(0x300), GrantAccess::Write, any()), Err(GrantProblem::OutOfRange));
        // The old one-frame table's end is now an ordinary entry of the second frame.
        assert_eq!(check_grant(GRANT_ENTRIES_PER_FRAME, PERMIT, f(0x300), GrantAccess::Read, any()), Ok(f(0x300)));
    }

    #[test]
    fn hostile_references_are_refused() {
        assert_eq!(check_grant(0, PERMIT, f(1), GrantAccess::Read, any()), Err(GrantProblem::OutOfRange));
        assert_eq!(check_grant(GRANT_ENTRIES, PERMIT, f(1), GrantAccess::Read, any()), Err(GrantProblem::OutOfRange));
        assert_eq!(check_grant(u32::MAX, PERMIT, f(1), GrantAccess::Read, any()), Err(GrantProblem::OutOfRange));
        assert_eq!(check_grant(3, 0, f(1), GrantAccess::Read, any()), Err(GrantProblem::NotGranted));
        assert_eq!(check_grant(3, READ_ONLY, f(1), GrantAccess::Read, any()), Err(GrantProblem::NotGranted));
        assert_eq!(check_grant(3, PERMIT | READ_ONLY, f(1), GrantAccess::Write, any()), Err(GrantProblem::ReadOnly));
        let small = FrameRange { start: f(0), end: f(100) };
        assert_eq!(check_grant(3, PERMIT, f(u64::MAX), GrantAccess::Read, small), Err(GrantProblem::BadFrame));
    }

    /// Every RAM size hv accepts: `MIN_MEM_MIB..=MAX_MEM_MIB` in 2 MiB steps.
    fn every_ram_size() -> impl Iterator<Item = u64> {
        (MIN_MEM_MIB..=MAX_MEM_MIB).step_by((LARGE_PAGE_SIZE >> 20) as usize).map(|mib| mib << 20)
    }

    #[test]
    fn hostile_grant_window_excludes_the_reserved_area_and_the_page_table_pool() {
        for ram in every_ram_size() {
            let window = grant_window(ram);
            let pool = pt_pool(ram);
            // Not one frame of the reserved area...
            let first = window.start.checked_address().unwrap();
            assert!(first.raw() >= VMM_RESERVED_END, "{ram}: the window starts in the reserved area");
            // ...nor of the pool, which lies wholly at or past the window's end...
            let end = window.end.checked_address().unwrap();
            assert!(end <= pool.start, "{ram}: the window reaches into the page-table pool");
            assert_eq!(pool.end.raw(), ram, "{ram}: the pool is the top of RAM");
            assert_eq!(pool.end.raw() - pool.start.raw(), pt_pool_bytes(ram));
            // ...and the window is not empty: the guest can still do I/O.
            assert!(!window.is_empty(), "{ram}: empty grant window");
            // check_grant refuses the frames just outside either end, accepts those inside.
            let last_reserved = f(VMM_RESERVED_END / 4096 - 1);
            for frame in [last_reserved, pool.start.frame(), f(pool.end.frame().raw() - 1)] {
                assert_eq!(check_grant(1, PERMIT, frame, GrantAccess::Read, window), Err(GrantProblem::BadFrame));
            }
            let last_inside = f(window.end.raw() - 1);
            for frame in [window.start, last_inside] {
                assert_eq!(check_grant(1, PERMIT, frame, GrantAccess::Read, window), Ok(frame));
            }
        }
    }
}
