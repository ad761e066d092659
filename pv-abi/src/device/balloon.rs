//! The balloon device: the guest gives frames of its RAM back to the host, and takes
//! them back later, as Xen's balloon driver does with `memory/target` in xenstore and
//! the `XENMEM_decrease_reservation` / `XENMEM_populate_physmap` hypercalls.
//!
//! (Course notes: reclaiming memory from a virtual machine. The hypervisor cannot know
//! which guest pages are free; the guest does. So a driver inside the guest "inflates a
//! balloon": it allocates free frames from its own allocator, so nothing in the guest
//! uses them, and tells the host, which drops the host memory behind them.)
//!
//! ## The target, the floor and the balloon's size: a control block
//!
//! hv can change the **target** at any time (`hv ctl PATH balloon MIB`) without a
//! request from the guest, so it cannot travel on the ring, whose requests only the
//! guest starts. Like Xen's `memory/target` key it is a value hv writes and the guest
//! reads when woken: a [`BalloonControl`] in the balloon ring page's spare bytes, at
//! [`BALLOON_CONTROL_OFFSET`]. The ring of 256-byte slots uses the first 2112 bytes of
//! the page (header and 8 slots), so the block needs no page, address or mapping of its
//! own, and both sides already map that page. Each field has exactly one writer:
//!
//! | field | written by | meaning |
//! | --- | --- | --- |
//! | `target_pages` | hv | how many pages of RAM hv wants the guest to keep: the balloon should hold `mem_pages - target_pages` (Xen's `memory/target`, in pages) |
//! | `floor_pages` | guest | the least RAM the guest will keep: it never inflates past `mem_pages - floor_pages`, whatever the target |
//! | `ballooned_pages` | hv's backend | frames the backend holds now, as it counts them |
//!
//! After writing `target_pages`, hv raises [`crate::event_channel::BALLOON_CHANNEL`]
//! (the pending flag, then the upcall), and the guest compares the target with its
//! balloon and sends requests until they agree (or the floor, or its free memory,
//! stops it).
//!
//! ## Requests: a batch of frames
//!
//! A [`BalloonRequest`] carries up to [`BALLOON_BATCH`] pseudo-physical frame numbers
//! inline (no grant: the backend never reads or writes the frames, it only drops or
//! restores the host memory behind them). [`BALLOON_OP_INFLATE`] gives the frames to
//! the host; [`BALLOON_OP_DEFLATE`] takes frames given earlier back. A batch is **all or
//! nothing**: the backend checks every frame before it releases any, and a batch with
//! one bad frame changes nothing. The [`BalloonResponse`] says how it went, and for a
//! refused batch which frame was refused and why ([`BalloonStatus`]).
//!
//! A frame may be given only if it is the guest's to give: inside RAM, above hv's
//! reserved area (the boot pages, ring pages and grant table below
//! [`crate::layout::VMM_RESERVED_END`]), outside the kernel image and outside the
//! page-table pool (whose frames hv itself allocates and watches), and not given
//! already. A frame may be taken back only if it was given.
//!
//! A frame taken back reads as zeros, whatever it held before it was given.

use super::{le_u32, le_u64};
use crate::ring::RingEntry;

/// Frames one request carries: a request is then 256 bytes, the ring's largest entry,
/// and the balloon ring has 8 slots (240 frames, 960 KiB, in flight at most).
pub const BALLOON_BATCH: usize = 30;

/// [`BalloonRequest::op`]: give these frames to the host.
pub const BALLOON_OP_INFLATE: u8 = 1;
/// [`BalloonRequest::op`]: take these frames (given earlier) back.
pub const BALLOON_OP_DEFLATE: u8 = 2;

/// Where the [`BalloonControl`] block is in the balloon ring page: past the ring's
/// 2112 bytes (header and 8 slots of 256), in a cache line of its own.
pub const BALLOON_CONTROL_OFFSET: usize = 3072;
/// Offset of `target_pages` in the ring page.
pub const BALLOON_TARGET_OFFSET: usize = BALLOON_CONTROL_OFFSET;
/// Offset of `floor_pages` in the ring page.
pub const BALLOON_FLOOR_OFFSET: usize = BALLOON_CONTROL_OFFSET + 8;
/// Offset of `ballooned_pages` in the ring page.
pub const BALLOON_SIZE_OFFSET: usize = BALLOON_CONTROL_OFFSET + 16;

const _: () = assert!(BALLOON_CONTROL_OFFSET >= crate::ring::HEADER_SIZE + 8 * crate::ring::MAX_ENTRY_SIZE);
const _: () = assert!(BALLOON_SIZE_OFFSET + 8 <= crate::ring::RING_PAGE_SIZE);

/// The control block's fields, as a value (each side reads and writes its fields at
/// the offsets above, one u64 each; see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BalloonControl {
    /// Pages of RAM hv wants the guest to keep (written by hv).
    pub target_pages: u64,
    /// Pages of RAM the guest keeps at least (written by the guest).
    pub floor_pages: u64,
    /// Frames the backend holds (written by hv's backend).
    pub ballooned_pages: u64,
}

/// One batch of frames to give or take back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalloonRequest {
    /// Chosen by the frontend, echoed in the response.
    pub id: u64,
    /// [`BALLOON_OP_INFLATE`] or [`BALLOON_OP_DEFLATE`] (anything else is refused).
    pub op: u8,
    /// Frames used in `frames`, 1..=[`BALLOON_BATCH`] (a hostile frontend may claim more).
    pub count: u32,
    /// Pseudo-physical frame numbers (address / 4096).
    pub frames: [u64; BALLOON_BATCH],
}

/// The answer to a [`BalloonRequest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalloonResponse {
    /// The request's id.
    pub id: u64,
    /// A [`BalloonStatus`] value.
    pub status: i32,
    /// For a refused batch, the index in `frames` of the frame refused (0 when the
    /// request itself was bad); for an accepted one, the number of frames moved.
    pub detail: u32,
}

/// How a batch went. Any refusal leaves every frame of the batch as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum BalloonStatus {
    /// Every frame moved.
    Ok = 0,
    /// Unknown operation, or a count of 0 or more than [`BALLOON_BATCH`].
    BadRequest = -1,
    /// A frame outside RAM.
    OutsideRam = -2,
    /// A frame in hv's reserved area (below the kernel).
    Reserved = -3,
    /// A frame of the kernel image.
    Kernel = -4,
    /// A frame of the page-table pool.
    PageTablePool = -5,
    /// Inflate: a frame the host holds already (or named twice in the batch).
    AlreadyBallooned = -6,
    /// Deflate: a frame the host does not hold (never given, or named twice).
    NotBallooned = -7,
    /// The host could not release or restore a frame (its own fault, not the guest's).
    HostError = -8,
}

impl BalloonStatus {
    /// Decodes a response's status (an unknown value is a `BadRequest`: the frontend
    /// treats it as a refusal).
    pub fn from_i32(v: i32) -> Self {
        use BalloonStatus::*;
        [Ok, BadRequest, OutsideRam, Reserved, Kernel, PageTablePool, AlreadyBallooned, NotBallooned, HostError]
            .into_iter()
            .find(|s| *s as i32 == v)
            .unwrap_or(BadRequest)
    }

    /// The name used in traces.
    pub const fn name(self) -> &'static str {
        match self {
            BalloonStatus::Ok => "ok",
            BalloonStatus::BadRequest => "bad-request",
            BalloonStatus::OutsideRam => "outside-ram",
            BalloonStatus::Reserved => "reserved-area",
            BalloonStatus::Kernel => "kernel-image",
            BalloonStatus::PageTablePool => "page-table-pool",
            BalloonStatus::AlreadyBallooned => "already-ballooned",
            BalloonStatus::NotBallooned => "not-ballooned",
            BalloonStatus::HostError => "host-error",
        }
    }
}

impl RingEntry for BalloonRequest {
    // id (8) + op (1) + reserved (3) + count (4) + frames (30 * 8).
    const SIZE: usize = 16 + 8 * BALLOON_BATCH;

    fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.id.to_le_bytes());
        out[8] = self.op;
        out[9..12].fill(0);
        out[12..16].copy_from_slice(&self.count.to_le_bytes());
        for (i, frame) in self.frames.iter().enumerate() {
            out[16 + 8 * i..24 + 8 * i].copy_from_slice(&frame.to_le_bytes());
        }
    }

    fn decode(b: &[u8]) -> Self {
        let mut frames = [0u64; BALLOON_BATCH];
        for (i, frame) in frames.iter_mut().enumerate() {
            *frame = le_u64(b, 16 + 8 * i);
        }
        BalloonRequest { id: le_u64(b, 0), op: b[8], count: le_u32(b, 12), frames }
    }
}

impl RingEntry for BalloonResponse {
    const SIZE: usize = 16;

    fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..12].copy_from_slice(&self.status.to_le_bytes());
        out[12..16].copy_from_slice(&self.detail.to_le_bytes());
    }

    fn decode(b: &[u8]) -> Self {
        BalloonResponse { id: le_u64(b, 0), status: le_u32(b, 8) as i32, detail: le_u32(b, 12) }
    }
}

impl BalloonRequest {
    /// A request for up to [`BALLOON_BATCH`] of `frames` (the rest are left out: the
    /// caller sends them in another batch).
    pub fn new(id: u64, op: u8, frames: &[u64]) -> Self {
        let n = frames.len().min(BALLOON_BATCH);
        let mut all = [0u64; BALLOON_BATCH];
        all[..n].copy_from_slice(&frames[..n]);
        BalloonRequest { id, op, count: n as u32, frames: all }
    }

    /// The frames in use, or `None` if `count` is out of range.
    pub fn used_frames(&self) -> Option<&[u64]> {
        if self.count == 0 {
            return None;
        }
        self.frames.get(..self.count as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_round_trip() {
        let r = BalloonRequest::new(7, BALLOON_OP_INFLATE, &[0x300, 0x301, 0x9999]);
        let mut buf = [0u8; BalloonRequest::SIZE];
        r.encode(&mut buf);
        assert_eq!(BalloonRequest::decode(&buf), r);
        assert_eq!(r.used_frames(), Some(&[0x300, 0x301, 0x9999][..]));
        let a = BalloonResponse { id: 7, status: BalloonStatus::Kernel as i32, detail: 2 };
        let mut buf = [0u8; BalloonResponse::SIZE];
        a.encode(&mut buf);
        assert_eq!(BalloonResponse::decode(&buf), a);
        assert_eq!(BalloonStatus::from_i32(a.status), BalloonStatus::Kernel);
    }

    #[test]
    fn hostile_counts_and_statuses_decode_without_panicking() {
        let mut buf = [0xffu8; BalloonRequest::SIZE];
        let r = BalloonRequest::decode(&buf);
        assert_eq!(r.used_frames(), None, "count u32::MAX");
        buf[12..16].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(BalloonRequest::decode(&buf).used_frames(), None, "count 0");
        buf[12..16].copy_from_slice(&(BALLOON_BATCH as u32).to_le_bytes());
        assert_eq!(BalloonRequest::decode(&buf).used_frames().map(<[u64]>::len), Some(BALLOON_BATCH));
        assert_eq!(BalloonStatus::from_i32(i32::MIN), BalloonStatus::BadRequest);
        assert_eq!(BalloonStatus::from_i32(12345), BalloonStatus::BadRequest);
    }

    #[test]
    fn the_ring_has_eight_slots_and_the_control_block_fits_after_them() {
        let slot = crate::ring::slot_size(BalloonRequest::SIZE, BalloonResponse::SIZE);
        assert_eq!(slot, 256);
        assert_eq!(crate::ring::ring_size(slot), 8);
        assert!(crate::ring::HEADER_SIZE + 8 * slot <= BALLOON_CONTROL_OFFSET);
    }
}
