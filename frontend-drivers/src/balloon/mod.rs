//! The balloon frontend: batches of frames given to the host and taken back, and the
//! control block that says how many hv wants.
//!
//! The kernel decides *which* frames (it owns the allocator); this frontend carries
//! them: [`BalloonFront::submit`] queues a batch of up to `BALLOON_BATCH` frames and
//! remembers them until the answer; [`BalloonFront::kick`] publishes; [`BalloonFront::poll`]
//! takes an answer and hands the batch's frames back to the kernel with its status, so
//! that the kernel puts accepted inflates into its balloon and refused ones back into
//! its allocator. Nothing here ever waits: the kernel calls it at points where it has
//! nothing else to do (the balloon must not hold up the guest's own work).
//!
//! The target and the floor are in the ring page's control block
//! (`pv_abi::device::balloon`): [`BalloonFront::target_pages`] reads what hv wants,
//! [`BalloonFront::set_floor_pages`] announces the least the guest keeps.

pub mod check;

use pv_abi::addr::PseudoFrame;
use pv_abi::device::balloon::{BalloonRequest, BalloonResponse, BalloonStatus, BALLOON_BATCH, BALLOON_FLOOR_OFFSET, BALLOON_OP_DEFLATE, BALLOON_OP_INFLATE, BALLOON_SIZE_OFFSET, BALLOON_TARGET_OFFSET};
use pv_abi::ring::{FrontRing, RingError, SharedPage};

use crate::Doorbell;

/// Batches in flight at most: the balloon ring's 8 slots.
pub const MAX_IN_FLIGHT: usize = 8;

/// What went wrong on the balloon device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BalloonError {
    /// No free ring slot: take answers first.
    RingFull,
    /// No frames, or more than one batch holds.
    BadShape,
    /// The backend corrupted the ring.
    Ring(RingError),
    /// The backend answered an id that is not in flight.
    UnexpectedResponse {
        /// The id it answered.
        id: u64,
    },
    /// The backend said `Ok` for fewer frames than the batch had.
    PartialBatch {
        /// The batch's id.
        id: u64,
    },
}

impl core::fmt::Display for BalloonError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BalloonError::RingFull => f.write_str("the balloon ring is full: take answers first"),
            BalloonError::BadShape => f.write_str("a balloon batch holds 1 to 30 frames"),
            BalloonError::Ring(e) => write!(f, "the balloon backend corrupted the ring: {e}"),
            BalloonError::UnexpectedResponse { id } => write!(f, "the balloon backend answered id {id}, which is not in flight"),
            BalloonError::PartialBatch { id } => write!(f, "the balloon backend accepted only part of batch {id}"),
        }
    }
}

impl core::error::Error for BalloonError {}

impl From<RingError> for BalloonError {
    fn from(e: RingError) -> Self {
        BalloonError::Ring(e)
    }
}

/// Give frames to the host, or take them back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BalloonOp {
    /// Give.
    Inflate,
    /// Take back.
    Deflate,
}

/// A batch the backend has answered: its frames are the kernel's to place again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completed {
    /// What the batch asked.
    pub op: BalloonOp,
    /// How it went (anything but `Ok` means nothing of the batch was done).
    pub status: BalloonStatus,
    /// The batch's frames (the first `count`).
    pub frames: [PseudoFrame; BALLOON_BATCH],
    /// Frames in the batch.
    pub count: usize,
}

impl Completed {
    /// The batch's frames.
    pub fn frames(&self) -> &[PseudoFrame] {
        &self.frames[..self.count]
    }
}

/// A batch waiting for its answer.
#[derive(Clone, Copy)]
struct InFlight {
    id: u64,
    op: BalloonOp,
    frames: [PseudoFrame; BALLOON_BATCH],
    count: usize,
}

/// The balloon device's frontend.
pub struct BalloonFront<P: SharedPage + Clone, D: Doorbell> {
    ring: FrontRing<P, BalloonRequest, BalloonResponse>,
    page: P,
    doorbell: D,
    in_flight: [Option<InFlight>; MAX_IN_FLIGHT],
    next_id: u64,
}

impl<P: SharedPage + Clone, D: Doorbell> BalloonFront<P, D> {
    /// Initialises the ring in `page` (the control block past it is left as hv wrote it).
    pub fn new(page: P, doorbell: D) -> Self {
        BalloonFront { ring: FrontRing::init(page.clone()), page, doorbell, in_flight: [None; MAX_IN_FLIGHT], next_id: 1 }
    }

    fn read_u64(&self, offset: usize) -> u64 {
        let mut b = [0u8; 8];
        self.page.read_bytes(offset, &mut b);
        u64::from_le_bytes(b)
    }

    /// Pages of RAM hv wants the guest to keep (read fresh each time: hv may change it).
    pub fn target_pages(&self) -> u64 {
        self.read_u64(BALLOON_TARGET_OFFSET)
    }

    /// Frames the backend says it holds.
    pub fn host_size_pages(&self) -> u64 {
        self.read_u64(BALLOON_SIZE_OFFSET)
    }

    /// The floor the guest announced.
    pub fn floor_pages(&self) -> u64 {
        self.read_u64(BALLOON_FLOOR_OFFSET)
    }

    /// Announces the least RAM, in pages, the guest keeps.
    pub fn set_floor_pages(&mut self, pages: u64) {
        self.page.write_bytes(BALLOON_FLOOR_OFFSET, &pages.to_le_bytes());
    }

    /// Batches waiting for an answer.
    pub fn in_flight(&self) -> usize {
        self.in_flight.iter().filter(|s| s.is_some()).count()
    }

    /// Whether another batch can be queued now.
    pub fn can_submit(&self) -> bool {
        self.in_flight.iter().any(Option::is_none) && self.ring.free_slots() > 0
    }

    /// Queues one batch of 1..=`BALLOON_BATCH` frames (published by [`BalloonFront::kick`]).
    pub fn submit(&mut self, op: BalloonOp, frames: &[PseudoFrame]) -> Result<u64, BalloonError> {
        if frames.is_empty() || frames.len() > BALLOON_BATCH {
            return Err(BalloonError::BadShape);
        }
        let slot = self.in_flight.iter().position(Option::is_none).ok_or(BalloonError::RingFull)?;
        if self.ring.free_slots() == 0 {
            return Err(BalloonError::RingFull);
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut numbers = [0u64; BALLOON_BATCH];
        let mut kept = [PseudoFrame::new(0); BALLOON_BATCH];
        for (i, frame) in frames.iter().enumerate() {
            numbers[i] = frame.raw();
            kept[i] = *frame;
        }
        let code = match op {
            BalloonOp::Inflate => BALLOON_OP_INFLATE,
            BalloonOp::Deflate => BALLOON_OP_DEFLATE,
        };
        let request = BalloonRequest { id, op: code, count: frames.len() as u32, frames: numbers };
        // free_slots() > 0, so this cannot fail.
        let _ = self.ring.push_request(&request);
        self.in_flight[slot] = Some(InFlight { id, op, frames: kept, count: frames.len() });
        Ok(id)
    }

    /// Queues a request exactly as given, unchecked: any operation, any count, any frame
    /// numbers. Only for adversarial tests of the backend (the guest's `balloon-hostile`
    /// command); its answer comes back through [`BalloonFront::poll`] as a batch of no
    /// frames, so nothing the kernel owns moves.
    pub fn submit_unchecked(&mut self, op: u8, count: u32, frames: &[u64]) -> Result<u64, BalloonError> {
        let slot = self.in_flight.iter().position(Option::is_none).ok_or(BalloonError::RingFull)?;
        if self.ring.free_slots() == 0 {
            return Err(BalloonError::RingFull);
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut request = BalloonRequest::new(id, op, frames);
        request.count = count;
        let _ = self.ring.push_request(&request);
        let kind = if op == BALLOON_OP_DEFLATE { BalloonOp::Deflate } else { BalloonOp::Inflate };
        self.in_flight[slot] = Some(InFlight { id, op: kind, frames: [PseudoFrame::new(0); BALLOON_BATCH], count: 0 });
        Ok(id)
    }

    /// Publishes queued batches (re-arming the upcall for answers first) and rings the
    /// doorbell if the backend asked for it.
    pub fn kick(&mut self) {
        self.ring.final_check_for_responses();
        if self.ring.publish_requests() {
            self.doorbell.ring();
        }
    }

    /// Asks for an upcall at the next answer (the ring's `rsp_event`), then looks once
    /// more: true if answers are already waiting (take them before sleeping). A caller
    /// that took answers without sending anything must call this before it sleeps, or the
    /// answers still to come would arrive without waking it.
    pub fn arm_for_answers(&mut self) -> bool {
        self.ring.final_check_for_responses()
    }

    /// Takes one answer if there is one, with its batch's frames.
    pub fn poll(&mut self) -> Result<Option<Completed>, BalloonError> {
        let Some(response) = self.ring.take_response()? else {
            return Ok(None);
        };
        let checked = check::check_response(&response, self.in_flight.iter().map(|s| s.map(|f| (f.id, f.count))))?;
        let Some(done) = self.in_flight[checked.slot].take() else {
            return Err(BalloonError::UnexpectedResponse { id: response.id });
        };
        Ok(Some(Completed { op: done.op, status: checked.status, frames: done.frames, count: done.count }))
    }
}
