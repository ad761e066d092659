//! The block ring driven from a ring-3 task: a queue of reads and writes on buffers the
//! kernel granted for good, with no grant table and no sleeping.
//!
//! [`super::BlockFront`] is the kernel's frontend: it owns a range of the grant table
//! and can grant and revoke. A task cannot be allowed to write the grant table (a grant
//! can name any frame of the guest), so the kernel grants the task's buffer frames once
//! and lends it the ring, quiet at some index ([`super::BlockFront::quiet_index`]).
//! The task's [`DirectQueue`] adopts the ring there ([`pv_abi::ring::FrontRing::adopt`]),
//! puts requests on it naming those grants, rings the doorbell itself and polls for the
//! responses. This is the shape of a user-level storage driver (SPDK, or io_uring with
//! registered buffers): no system call and no interrupt per request.
//!
//! Each of the task's buffers (at most `N`) has at most one request in flight, and a
//! response is accepted only if its id is the one in flight for some buffer: the same
//! rule [`super::check`] applies for the kernel.

use pv_abi::device::block::{BlockOp, BlockRequest, BlockResponse, BlockStatus};
use pv_abi::grant::GrantRef;
use pv_abi::ring::{FrontRing, SharedPage};

use super::{check_granted, push_granted, take_raw, BlockError};
use crate::Doorbell;

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectStats {
    /// Requests put on the ring.
    pub requests: u64,
    /// Responses taken.
    pub completions: u64,
    /// Doorbells rung.
    pub doorbells: u64,
    /// Publishes that needed no doorbell (the backend was still working).
    pub doorbells_suppressed: u64,
}

/// A block queue over an adopted ring, for `N` buffers on persistent grants.
pub struct DirectQueue<P: SharedPage, D: Doorbell, const N: usize> {
    ring: FrontRing<P, BlockRequest, BlockResponse>,
    doorbell: D,
    /// The id of the request in flight for each buffer (0: none).
    in_flight: [u64; N],
    next_id: u64,
    stats: DirectStats,
}

impl<P: SharedPage, D: Doorbell, const N: usize> DirectQueue<P, D, N> {
    /// Adopts the ring in `page`, which its previous driver left quiet at `index`.
    pub fn adopt(page: P, index: u32, doorbell: D) -> Self {
        DirectQueue { ring: FrontRing::adopt(page, index), doorbell, in_flight: [0; N], next_id: 1, stats: DirectStats::default() }
    }

    /// Counters.
    pub fn stats(&self) -> DirectStats {
        self.stats
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.iter().filter(|&&id| id != 0).count()
    }

    /// Queues a request for buffer `buffer` (below `N`, with none in flight) on its
    /// grants `grefs` (one per 4 KiB of `nr_sectors`). Not visible to the backend until
    /// [`DirectQueue::kick`]. Returns the request's id.
    pub fn submit(&mut self, buffer: usize, op: BlockOp, sector: u64, nr_sectors: u32, grefs: &[GrantRef]) -> Result<u64, BlockError> {
        check_granted(op, nr_sectors, grefs, self.in_flight.get(buffer))?;
        let id = self.next_id;
        push_granted(&mut self.ring, id, op, sector, nr_sectors, grefs).map_err(|_| BlockError::RingFull)?;
        self.next_id += 1;
        self.in_flight[buffer] = id;
        self.stats.requests += 1;
        Ok(id)
    }

    /// Publishes the queued requests and rings the doorbell if the backend asked.
    pub fn kick(&mut self) {
        if self.ring.publish_requests() {
            self.stats.doorbells += 1;
            self.doorbell.ring();
        } else {
            self.stats.doorbells_suppressed += 1;
        }
    }

    /// Takes one response, if there is one: the buffer it completes and its status. A
    /// response whose id is not in flight is refused (and nothing completes).
    pub fn take_completion(&mut self) -> Result<Option<(usize, BlockStatus)>, BlockError> {
        let Some(BlockResponse { id, status }) = take_raw(&mut self.ring)? else {
            return Ok(None);
        };
        let buffer = self.in_flight.iter().position(|&f| f != 0 && f == id).ok_or(BlockError::UnexpectedResponse { id })?;
        self.in_flight[buffer] = 0;
        self.stats.completions += 1;
        Ok(Some((buffer, BlockStatus::from_i32(status))))
    }
}
