//! Checking a balloon request before acting on it.
//!
//! The request was copied out of the ring, so it cannot change under us; but the guest
//! wrote every field. Checked here, in this order: the operation; the frame count
//! (1..=`BALLOON_BATCH`); then each frame, in the batch's order, against what the guest
//! may give: inside RAM, above hv's reserved area, outside the kernel image, outside
//! the page-table pool; for an inflate, not given already (nor named earlier in the same
//! batch); for a deflate, given earlier (and not named earlier in the batch). The first
//! frame that fails decides the answer and nothing of the batch is done.
//!
//! Why each rule: the reserved area holds the boot-info page, the rings and the grant
//! table, which hv and the backends use (released, they would read as zeros under them);
//! the kernel image is what the guest runs (a guest that gives it away is broken, not
//! generous); the pool's frames are page tables, which in shadow mode hv watches and
//! write-protects; and a frame given twice would be counted twice.

use std::ops::Range;

use pv_abi::device::balloon::{BalloonRequest, BalloonStatus, BALLOON_OP_DEFLATE, BALLOON_OP_INFLATE};

use super::state::FrameSet;

/// What the guest's RAM looks like, in frame numbers: the limits every frame is
/// checked against. hv builds it from the guest's layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalloonLimits {
    /// Frames of RAM (`mem_bytes / 4096`).
    pub ram_frames: u64,
    /// First frame above hv's reserved area.
    pub reserved_end: u64,
    /// The kernel image's frames.
    pub kernel: Range<u64>,
    /// The page-table pool's frames.
    pub pool: Range<u64>,
}

/// Give or take back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BalloonOp {
    /// Give the frames to the host.
    Inflate,
    /// Take them back.
    Deflate,
}

impl BalloonOp {
    /// The name used in traces.
    pub const fn name(self) -> &'static str {
        match self {
            BalloonOp::Inflate => "inflate",
            BalloonOp::Deflate => "deflate",
        }
    }
}

/// A request whose every field and frame passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedBatch {
    /// What to do.
    pub op: BalloonOp,
    /// The frames, in the request's order, each a frame the guest may give (inflate) or
    /// take back (deflate).
    pub frames: Vec<u64>,
}

/// Why a batch was refused, and which frame (its index in the request) decided it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The status the guest is answered with.
    pub status: BalloonStatus,
    /// Index of the refused frame (0 for a bad operation or count).
    pub index: u32,
    /// The frame refused (0 for a bad operation or count).
    pub frame: u64,
}

/// Checks `request` against `limits` and the frames the host holds now.
pub fn check_request(request: &BalloonRequest, limits: &BalloonLimits, ballooned: &FrameSet) -> Result<CheckedBatch, Refusal> {
    let bad_request = Refusal { status: BalloonStatus::BadRequest, index: 0, frame: 0 };
    let op = match request.op {
        BALLOON_OP_INFLATE => BalloonOp::Inflate,
        BALLOON_OP_DEFLATE => BalloonOp::Deflate,
        _ => return Err(bad_request),
    };
    let frames = request.used_frames().ok_or(bad_request)?;
    for (index, &frame) in frames.iter().enumerate() {
        let refuse = |status| Err(Refusal { status, index: index as u32, frame });
        if frame >= limits.ram_frames {
            return refuse(BalloonStatus::OutsideRam);
        }
        if frame < limits.reserved_end {
            return refuse(BalloonStatus::Reserved);
        }
        if limits.kernel.contains(&frame) {
            return refuse(BalloonStatus::Kernel);
        }
        if limits.pool.contains(&frame) {
            return refuse(BalloonStatus::PageTablePool);
        }
        // At most BALLOON_BATCH frames: the quadratic look-back is 435 comparisons.
        let named_before = frames[..index].contains(&frame);
        match op {
            BalloonOp::Inflate if named_before || ballooned.contains(frame) => return refuse(BalloonStatus::AlreadyBallooned),
            BalloonOp::Deflate if named_before || !ballooned.contains(frame) => return refuse(BalloonStatus::NotBallooned),
            _ => {}
        }
    }
    Ok(CheckedBatch { op, frames: frames.to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pv_abi::device::balloon::BALLOON_BATCH;

    /// 64 MiB: reserved below frame 0x100, kernel 0x200..0x240, pool the top 4 MiB.
    fn limits() -> BalloonLimits {
        BalloonLimits { ram_frames: 0x4000, reserved_end: 0x100, kernel: 0x200..0x240, pool: 0x3c00..0x4000 }
    }

    fn inflate(frames: &[u64]) -> BalloonRequest {
        BalloonRequest::new(1, BALLOON_OP_INFLATE, frames)
    }

    fn status(r: Result<CheckedBatch, Refusal>) -> (BalloonStatus, u32) {
        r.map_or_else(|e| (e.status, e.index), |_| (BalloonStatus::Ok, 0))
    }

    #[test]
    fn free_frames_may_be_given_and_given_frames_taken_back() {
        let mut set = FrameSet::new(0x4000);
        let batch = check_request(&inflate(&[0x240, 0x1000, 0x3bff]), &limits(), &set).unwrap();
        assert_eq!(batch, CheckedBatch { op: BalloonOp::Inflate, frames: vec![0x240, 0x1000, 0x3bff] });
        for f in batch.frames {
            set.insert(f);
        }
        let back = check_request(&BalloonRequest::new(2, BALLOON_OP_DEFLATE, &[0x1000]), &limits(), &set).unwrap();
        assert_eq!(back.op, BalloonOp::Deflate);
    }

    #[test]
    fn hostile_frames_that_are_not_the_guests_to_give_are_refused_with_their_index() {
        let set = FrameSet::new(0x4000);
        let cases = [
            (0x4000, BalloonStatus::OutsideRam),
            (u64::MAX, BalloonStatus::OutsideRam),
            (0, BalloonStatus::Reserved),
            (0x9, BalloonStatus::Reserved),
            (0x200, BalloonStatus::Kernel),
            (0x23f, BalloonStatus::Kernel),
            (0x3c00, BalloonStatus::PageTablePool),
            (0x3fff, BalloonStatus::PageTablePool),
        ];
        for (frame, expected) in cases {
            assert_eq!(status(check_request(&inflate(&[0x1000, frame]), &limits(), &set)), (expected, 1), "{frame:#x}");
        }
    }

    #[test]
    fn hostile_double_returns_and_deflates_of_frames_never_given_are_refused() {
        let mut set = FrameSet::new(0x4000);
        set.insert(0x1000);
        assert_eq!(status(check_request(&inflate(&[0x1000]), &limits(), &set)), (BalloonStatus::AlreadyBallooned, 0));
        assert_eq!(status(check_request(&inflate(&[0x2000, 0x2001, 0x2000]), &limits(), &set)), (BalloonStatus::AlreadyBallooned, 2), "twice in one batch");
        let deflate = |f: &[u64]| BalloonRequest::new(3, BALLOON_OP_DEFLATE, f);
        assert_eq!(status(check_request(&deflate(&[0x1000, 0x1001]), &limits(), &set)), (BalloonStatus::NotBallooned, 1));
        assert_eq!(status(check_request(&deflate(&[0x1000, 0x1000]), &limits(), &set)), (BalloonStatus::NotBallooned, 1), "taken back twice in one batch");
    }

    #[test]
    fn hostile_operations_and_counts_are_refused() {
        let set = FrameSet::new(0x4000);
        let mut r = inflate(&[0x1000]);
        for count in [0, BALLOON_BATCH as u32 + 1, u32::MAX] {
            r.count = count;
            assert_eq!(status(check_request(&r, &limits(), &set)), (BalloonStatus::BadRequest, 0), "count {count}");
        }
        let r = BalloonRequest { op: 0, ..inflate(&[0x1000]) };
        assert_eq!(status(check_request(&r, &limits(), &set)), (BalloonStatus::BadRequest, 0));
        let r = BalloonRequest { op: 0xff, ..inflate(&[0x1000]) };
        assert_eq!(status(check_request(&r, &limits(), &set)), (BalloonStatus::BadRequest, 0));
    }
}
