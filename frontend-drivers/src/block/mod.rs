//! The block frontend: sector reads and writes through the ring and granted frames.
//!
//! The caller brings the data frames (pseudo-physical frames): one frame per 4 KiB
//! of transfer, up to `BLOCK_MAX_SEGMENTS` per request. [`BlockFront::submit`] grants
//! them (read-only for a write: the backend only needs to read them) and queues the
//! request; [`BlockFront::kick`] publishes; completions come back from
//! [`BlockFront::poll`] or [`BlockFront::wait_for_completion`], which also revoke the
//! request's grants. Up to one ring's worth of requests can be in flight.
//!
//! Every response is checked ([`check::check_response`]) before it is acted on: its id
//! must name a request in flight.
//!
//! ## Persistent grants (the batched path for ring-3 tasks)
//!
//! Granting and revoking every frame of every request costs ring-0 instructions per
//! segment, and on a host that emulates ring 0 that is most of a request's cost. A
//! caller that reuses the same buffers request after request can grant them once
//! ([`BlockFront::grant_persistent`]), submit requests that name those grants
//! ([`BlockFront::submit_granted`]), take completions with
//! [`BlockFront::take_completion`] (which finds the request in one lookup, not a scan),
//! and revoke the grants when it is done with the buffers
//! ([`BlockFront::revoke_persistent`]). This is Xen blkif's *persistent grants*, with one
//! difference: the data is not copied through the persistent pages, they *are* the
//! buffers. The caller owns the rule that makes it safe: a frame stays granted only
//! while it is pinned for this use, and is revoked (after every request naming it has
//! completed) before it can be freed or reused. `pv-guest`'s `task::blk_io` does that
//! for a ring-3 task's buffer.

pub mod check;
pub mod direct;

use pv_abi::addr::PseudoFrame;
use pv_abi::device::block::{BlockOp, BlockRequest, BlockResponse, BlockStatus, BLOCK_MAX_SEGMENTS, SECTORS_PER_SEGMENT};
use pv_abi::grant::GrantRef;
use pv_abi::ring::{FrontRing, RingError, RingFull, SharedPage};

use crate::grant_table::{GrantTableFront, GrantTableFull};
use crate::{Doorbell, WaitForEvent};

/// Most requests in flight at once: one ring's worth (32 for the block ring).
pub const MAX_IN_FLIGHT: usize = 32;

/// What went wrong on the block device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// No free ring slot: wait for a completion first.
    RingFull,
    /// More frames than one request carries, no frames for a read or write, or sectors
    /// that do not match the frames.
    BadShape,
    /// The grant table is full.
    NoGrants,
    /// The backend corrupted the ring.
    Ring(RingError),
    /// The backend answered an id that is not in flight.
    UnexpectedResponse {
        /// The id it answered.
        id: u64,
    },
}

impl core::fmt::Display for BlockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BlockError::RingFull => f.write_str("the block ring is full: wait for a completion first"),
            BlockError::BadShape => f.write_str("the request's frames do not match its sectors (or there are too many)"),
            BlockError::NoGrants => f.write_str("the grant table is full"),
            BlockError::Ring(e) => write!(f, "the block backend corrupted the ring: {e}"),
            BlockError::UnexpectedResponse { id } => write!(f, "the block backend answered id {id}, which is not in flight"),
        }
    }
}

impl core::error::Error for BlockError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            BlockError::Ring(e) => Some(e),
            _ => None,
        }
    }
}

impl From<RingError> for BlockError {
    fn from(e: RingError) -> Self {
        BlockError::Ring(e)
    }
}

/// Whether a request on persistent grants may be queued for a buffer whose request in
/// flight is `buffer_in_flight` (its id, 0 for none; `None`: no such buffer): a read or
/// write, one grant per 4 KiB of `nr_sectors`, at most [`BLOCK_MAX_SEGMENTS`], and the
/// buffer free.
fn check_granted(op: BlockOp, nr_sectors: u32, grefs: &[GrantRef], buffer_in_flight: Option<&u64>) -> Result<(), BlockError> {
    let shape_ok = op != BlockOp::Flush && !grefs.is_empty() && grefs.len() <= BLOCK_MAX_SEGMENTS && nr_sectors.div_ceil(SECTORS_PER_SEGMENT) as usize == grefs.len();
    match buffer_in_flight {
        _ if !shape_ok => Err(BlockError::BadShape),
        Some(0) => Ok(()),
        Some(_) => Err(BlockError::RingFull),
        None => Err(BlockError::BadShape),
    }
}

/// Stores a request on persistent grants field by field into the next ring slot
/// (`FrontRing::push_request_with`), the fastest way there is on a host that emulates
/// ring 0.
#[inline]
fn push_granted<P: SharedPage>(ring: &mut FrontRing<P, BlockRequest, BlockResponse>, id: u64, op: BlockOp, sector: u64, nr_sectors: u32, grefs: &[GrantRef]) -> Result<(), RingFull> {
    let head = u32::from(op.to_u8()) | (grefs.len() as u32) << 8;
    // The layout of pv_abi::device::block: id, sector, op, nr_segments, reserved,
    // nr_sectors, grefs (those past nr_segments are ignored by the protocol).
    ring.push_request_with(move |page, at| {
        page.store_u32(at, id as u32);
        page.store_u32(at + 4, (id >> 32) as u32);
        page.store_u32(at + 8, sector as u32);
        page.store_u32(at + 12, (sector >> 32) as u32);
        page.store_u32(at + 16, head);
        page.store_u32(at + 20, nr_sectors);
        for (i, g) in grefs.iter().enumerate() {
            page.store_u32(at + 24 + 4 * i, *g);
        }
    })
}

/// Takes the next response, its two fields loaded once each straight from the slot.
#[inline]
fn take_raw<P: SharedPage>(ring: &mut FrontRing<P, BlockRequest, BlockResponse>) -> Result<Option<BlockResponse>, RingError> {
    ring.take_response_with(|page, at| BlockResponse { id: u64::from(page.load_u32(at)) | u64::from(page.load_u32(at + 4)) << 32, status: page.load_u32(at + 8) as i32 })
}

/// A request waiting for its response.
#[derive(Clone, Copy)]
struct InFlight {
    id: u64,
    grefs: [GrantRef; BLOCK_MAX_SEGMENTS],
    segments: usize,
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockFrontStats {
    /// Requests sent.
    pub requests: u64,
    /// Doorbells rung.
    pub doorbells: u64,
    /// Publishes that needed no doorbell (the backend was still busy).
    pub doorbells_suppressed: u64,
    /// Times the frontend slept waiting for the backend.
    pub waits: u64,
}

/// The block device's frontend.
pub struct BlockFront<P: SharedPage, G: SharedPage, D: Doorbell, W: WaitForEvent> {
    ring: FrontRing<P, BlockRequest, BlockResponse>,
    grants: GrantTableFront<G>,
    doorbell: D,
    waiter: W,
    in_flight: [Option<InFlight>; MAX_IN_FLIGHT],
    next_id: u64,
    always_ring: bool,
    stats: BlockFrontStats,
    /// The id of the request in flight for each buffer of the persistent path (0: none).
    granted_in_flight: [u64; MAX_IN_FLIGHT],
    /// Which buffer the persistent request with id `i` is for, at `i % ID_HINTS`: a hint
    /// that makes finding a completed request one lookup (checked, and a scan if wrong).
    buffer_of_id: [u8; ID_HINTS],
}

/// Entries in [`BlockFront`]'s id-to-buffer hints (twice the requests in flight).
const ID_HINTS: usize = 2 * MAX_IN_FLIGHT;

impl<P: SharedPage, G: SharedPage, D: Doorbell, W: WaitForEvent> BlockFront<P, G, D, W> {
    /// Initialises the ring in `ring_page`; grants come from `grants`.
    pub fn new(ring_page: P, grants: GrantTableFront<G>, doorbell: D, waiter: W) -> Self {
        BlockFront {
            ring: FrontRing::init(ring_page),
            grants,
            doorbell,
            waiter,
            in_flight: [None; MAX_IN_FLIGHT],
            next_id: 1,
            always_ring: false,
            stats: BlockFrontStats::default(),
            granted_in_flight: [0; MAX_IN_FLIGHT],
            buffer_of_id: [0; ID_HINTS],
        }
    }

    /// Rings the doorbell on every publish, ignoring the backend's event index (to
    /// measure what the suppression saves).
    pub fn set_always_ring(&mut self, always: bool) {
        self.always_ring = always;
    }

    /// Counters.
    pub fn stats(&self) -> BlockFrontStats {
        self.stats
    }

    /// Requests waiting for a response.
    pub fn in_flight(&self) -> usize {
        self.in_flight.iter().filter(|s| s.is_some()).count() + self.granted_in_flight.iter().filter(|&&g| g != 0).count()
    }

    /// Queues one request (not yet published: call [`BlockFront::kick`]). `frames` are
    /// the data's frames, one per 4 KiB of `nr_sectors`. Returns the request's id.
    pub fn submit(&mut self, op: BlockOp, sector: u64, nr_sectors: u32, frames: &[PseudoFrame]) -> Result<u64, BlockError> {
        let shape_ok = match op {
            BlockOp::Flush => frames.is_empty() && nr_sectors == 0,
            _ => {
                !frames.is_empty()
                    && frames.len() <= BLOCK_MAX_SEGMENTS
                    && nr_sectors.div_ceil(SECTORS_PER_SEGMENT) as usize == frames.len()
            }
        };
        if !shape_ok {
            return Err(BlockError::BadShape);
        }
        let slot = self.in_flight.iter().position(Option::is_none).ok_or(BlockError::RingFull)?;
        if self.ring.free_slots() == 0 {
            return Err(BlockError::RingFull);
        }
        let mut grefs = [0; BLOCK_MAX_SEGMENTS];
        for (i, &frame) in frames.iter().enumerate() {
            match self.grants.grant(frame, op == BlockOp::Write) {
                Ok(gref) => grefs[i] = gref,
                Err(GrantTableFull) => {
                    grefs[..i].iter().for_each(|g| self.grants.revoke(*g));
                    return Err(BlockError::NoGrants);
                }
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let request = BlockRequest { id, sector, op: op.to_u8(), nr_segments: frames.len() as u8, nr_sectors, grefs };
        // free_slots() > 0, so this cannot fail.
        let _ = self.ring.push_request(&request);
        self.in_flight[slot] = Some(InFlight { id, grefs, segments: frames.len() });
        self.stats.requests += 1;
        Ok(id)
    }

    /// Publishes queued requests and rings the doorbell if the backend asked for it.
    ///
    /// First it re-arms the upcall for responses (hv's rule: re-arm your own
    /// notification before you publish to the other side), so the backend's answer
    /// raises an upcall whatever the timing; see `backend_drivers::runner::service_ring`.
    pub fn kick(&mut self) {
        self.ring.final_check_for_responses();
        let needed = self.ring.publish_requests();
        if needed || self.always_ring {
            self.stats.doorbells += 1;
            self.doorbell.ring();
        } else {
            self.stats.doorbells_suppressed += 1;
        }
    }

    /// Takes one response if there is one: its id and status. Revokes its grants.
    pub fn poll(&mut self) -> Result<Option<(u64, BlockStatus)>, BlockError> {
        // LAB 3 BEGIN: take a response, check it, revoke its grants, complete its request
        let Some(response) = self.ring.take_response()? else {
            return Ok(None);
        };
        let checked = check::check_response(&response, self.in_flight.iter().map(|s| s.map(|f| f.id)))?;
        if let Some(done) = self.in_flight[checked.slot].take() {
            for gref in &done.grefs[..done.segments] {
                self.grants.revoke(*gref);
            }
        }
        Ok(Some((checked.id, checked.status)))
        // LAB 3 STUB: todo!("lab 3: take a response off the ring, check it, revoke its grants and complete its request: BlockFront::poll")
        // LAB 3 END
    }

    /// Waits for the next response (sleeping until the upcall when none is there).
    pub fn wait_for_completion(&mut self) -> Result<(u64, BlockStatus), BlockError> {
        loop {
            if let Some(done) = self.poll()? {
                return Ok(done);
            }
            if !self.ring.final_check_for_responses() {
                self.stats.waits += 1;
                self.waiter.wait();
            }
        }
    }

    /// Grants `frame` to the backend for as long as the caller keeps it (see "Persistent
    /// grants" above); `read_only` if the backend may only read it.
    pub fn grant_persistent(&mut self, frame: PseudoFrame, read_only: bool) -> Result<GrantRef, BlockError> {
        self.grants.grant(frame, read_only).map_err(|GrantTableFull| BlockError::NoGrants)
    }

    /// Takes back a grant made with [`BlockFront::grant_persistent`]. The caller must
    /// know that no request naming it is in flight.
    pub fn revoke_persistent(&mut self, gref: GrantRef) {
        self.grants.revoke(gref);
    }

    /// Grant entries the block device has left (of those it owns: another frontend may
    /// have taken part of the table with `GrantTableFront::split_off`).
    pub fn grants_free(&self) -> u32 {
        self.grants.entries().len() as u32 - self.grants.granted()
    }

    /// Queues one request on frames granted with [`BlockFront::grant_persistent`]
    /// (`grefs`, one per 4 KiB of `nr_sectors`) for the caller's buffer number `buffer`
    /// (below [`MAX_IN_FLIGHT`], with no request of its own in flight); nothing is
    /// granted now or revoked at completion. The request is stored field by field into
    /// the ring slot (`FrontRing::push_request_with`), the fastest way there is on a
    /// host that emulates ring 0. Returns the request's id.
    #[inline]
    pub fn submit_granted(&mut self, buffer: usize, op: BlockOp, sector: u64, nr_sectors: u32, grefs: &[GrantRef]) -> Result<u64, BlockError> {
        check_granted(op, nr_sectors, grefs, self.granted_in_flight.get(buffer))?;
        let id = self.next_id;
        push_granted(&mut self.ring, id, op, sector, nr_sectors, grefs).map_err(|_| BlockError::RingFull)?;
        self.next_id += 1;
        self.granted_in_flight[buffer] = id;
        self.buffer_of_id[id as usize % ID_HINTS] = buffer as u8;
        self.stats.requests += 1;
        Ok(id)
    }

    /// Takes one response if there is one, checked as [`BlockFront::poll`] checks it:
    /// `Some(buffer)` for a request of [`BlockFront::submit_granted`] (found in one
    /// lookup through the id hint, or a scan if the hint is wrong), `None` for one of
    /// [`BlockFront::submit`] (whose grants are revoked). The response's two fields are
    /// loaded once each, straight from the slot. Returns the id, the buffer and the status.
    #[inline]
    pub fn take_completion(&mut self) -> Result<Option<(u64, Option<usize>, BlockStatus)>, BlockError> {
        let Some(response) = take_raw(&mut self.ring)? else {
            return Ok(None);
        };
        let id = response.id;
        let status = BlockStatus::from_i32(response.status);
        let hint = self.buffer_of_id[id as usize % ID_HINTS] as usize;
        let granted = if id != 0 && self.granted_in_flight[hint] == id {
            Some(hint)
        } else {
            self.granted_in_flight.iter().position(|&g| g != 0 && g == id)
        };
        if let Some(buffer) = granted {
            self.granted_in_flight[buffer] = 0;
            return Ok(Some((id, Some(buffer), status)));
        }
        let checked = check::check_response(&response, self.in_flight.iter().map(|s| s.map(|f| f.id)))?;
        if let Some(done) = self.in_flight[checked.slot].take() {
            for gref in &done.grefs[..done.segments] {
                self.grants.revoke(*gref);
            }
        }
        Ok(Some((id, None, status)))
    }

    /// The ring index this frontend is quiet at (no request in flight on either path,
    /// every response taken), or `None`: what the kernel hands a ring-3 task that will
    /// drive the ring itself ([`direct::DirectQueue::adopt`]).
    pub fn quiet_index(&self) -> Option<u32> {
        let idle = self.in_flight.iter().all(Option::is_none) && self.granted_in_flight.iter().all(|&id| id == 0);
        self.ring.quiet_index().filter(|_| idle)
    }

    /// Takes the ring back from whoever drove it meanwhile, once the backend has
    /// answered everything it was given ([`FrontRing::answered_index`]); `false` if it
    /// has not yet (ask again later).
    pub fn take_back(&mut self) -> bool {
        match self.ring.answered_index() {
            Some(index) => {
                self.ring.take_back(index);
                true
            }
            None => false,
        }
    }

    /// Sleeps until the backend may have answered (re-arming the upcall first, so an
    /// answer published meanwhile is not missed); returns at once if one is there.
    pub fn wait_for_responses(&mut self) {
        if !self.ring.final_check_for_responses() {
            self.stats.waits += 1;
            self.waiter.wait();
        }
    }

    /// Submits one request, kicks, and waits for exactly its completion. Only for use
    /// when nothing else is in flight.
    pub fn transfer(&mut self, op: BlockOp, sector: u64, nr_sectors: u32, frames: &[PseudoFrame]) -> Result<BlockStatus, BlockError> {
        let id = self.submit(op, sector, nr_sectors, frames)?;
        self.kick();
        let (done, status) = self.wait_for_completion()?;
        if done != id {
            return Err(BlockError::UnexpectedResponse { id: done });
        }
        Ok(status)
    }
}
