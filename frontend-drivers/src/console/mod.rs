//! The console frontend: the kernel's text goes through a ring to the console backend.
//!
//! Text is cut into requests of up to `CONSOLE_CHUNK` bytes. When the ring is full the
//! frontend waits for responses, which free slots, so a burst of any size arrives whole
//! and in order. [`ConsoleFront::flush`] waits until every request has been answered:
//! the kernel calls it at the end of each line, so the console behaves like a
//! synchronous one (nothing is lost if the guest stops right after printing), and hv's
//! trace stays in cause-and-effect order.
//!
//! Every response is checked ([`check::check_response`]) before it is acted on: it
//! must answer the oldest request not yet answered.

pub mod check;

use pv_abi::device::console::{ConsoleRequest, ConsoleResponse, CONSOLE_CHUNK};
use pv_abi::ring::{FrontRing, RingError, SharedPage};

use crate::{Doorbell, WaitForEvent};

/// What went wrong on the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleError {
    /// The backend corrupted the ring.
    Ring(RingError),
    /// The backend answered a request that was never sent.
    UnexpectedResponse {
        /// The id it answered.
        id: u64,
    },
}

impl core::fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConsoleError::Ring(e) => write!(f, "the console backend corrupted the ring: {e}"),
            ConsoleError::UnexpectedResponse { id } => write!(f, "the console backend answered id {id}, which is not the oldest unanswered request"),
        }
    }
}

impl core::error::Error for ConsoleError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            ConsoleError::Ring(e) => Some(e),
            ConsoleError::UnexpectedResponse { .. } => None,
        }
    }
}

impl From<RingError> for ConsoleError {
    fn from(e: RingError) -> Self {
        ConsoleError::Ring(e)
    }
}

/// Counters a kernel may show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsoleFrontStats {
    /// Requests sent.
    pub requests: u64,
    /// Doorbells rung.
    pub doorbells: u64,
    /// Times the frontend slept waiting for the backend.
    pub waits: u64,
}

/// The console device's frontend.
pub struct ConsoleFront<P: SharedPage, D: Doorbell, W: WaitForEvent> {
    ring: FrontRing<P, ConsoleRequest, ConsoleResponse>,
    doorbell: D,
    waiter: W,
    next_id: u64,
    oldest_unanswered: u64,
    stats: ConsoleFrontStats,
}

impl<P: SharedPage, D: Doorbell, W: WaitForEvent> ConsoleFront<P, D, W> {
    /// Initialises the ring in `page` and takes the device.
    pub fn new(page: P, doorbell: D, waiter: W) -> Self {
        ConsoleFront {
            ring: FrontRing::init(page),
            doorbell,
            waiter,
            next_id: 0,
            oldest_unanswered: 0,
            stats: ConsoleFrontStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> ConsoleFrontStats {
        self.stats
    }

    /// Sends `text` (any length): waits for free slots whenever the ring is full.
    pub fn write(&mut self, text: &[u8]) -> Result<(), ConsoleError> {
        for chunk in text.chunks(CONSOLE_CHUNK) {
            while self.ring.free_slots() == 0 {
                self.kick();
                self.wait_for_one_response()?;
            }
            let request = ConsoleRequest::new(self.next_id, chunk);
            // free_slots() > 0, so this cannot fail.
            let _ = self.ring.push_request(&request);
            self.next_id += 1;
            self.stats.requests += 1;
        }
        self.kick();
        Ok(())
    }

    /// Waits until every request sent so far has been answered.
    pub fn flush(&mut self) -> Result<(), ConsoleError> {
        while self.oldest_unanswered < self.next_id {
            self.wait_for_one_response()?;
        }
        Ok(())
    }

    /// Publishes pushed requests; rings the doorbell if the backend asked for it.
    ///
    /// First it re-arms the upcall for responses (hv's rule: re-arm your own
    /// notification before you publish to the other side), so the backend's answer to
    /// these requests always raises an upcall, whatever the timing.
    fn kick(&mut self) {
        self.ring.final_check_for_responses();
        if self.ring.publish_requests() {
            self.stats.doorbells += 1;
            self.doorbell.ring();
        }
    }

    /// Takes at least one response, sleeping until the upcall if none is there.
    fn wait_for_one_response(&mut self) -> Result<(), ConsoleError> {
        loop {
            if let Some(response) = self.ring.take_response()? {
                check::check_response(&response, self.oldest_unanswered)?;
                self.oldest_unanswered += 1;
                return Ok(());
            }
            // Ask to be woken by the next response, then look once more before sleeping.
            if !self.ring.final_check_for_responses() {
                self.stats.waits += 1;
                self.waiter.wait();
            }
        }
    }
}
