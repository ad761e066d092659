//! A loopback wire: two [`FrameIo`] ends joined back to back inside the guest.
//!
//! What one end sends, the other receives, through a small queue in each direction.
//! Two network stacks on the two ends talk to each other exactly as two machines on a
//! cable would (ARP, then IP), with no device and no hypervisor involved: it is how
//! `net-selftest` proves the stack works in this kernel, and how `net-bench loopback`
//! measures what the stack itself costs here (see `net/mod.rs`). Like a real link it is
//! lossy: a full queue drops the frame and counts it.

use core::cell::RefCell;

use crate::device::{FrameIo, MAX_FRAME};

/// Frames each direction holds before it drops: more than smoltcp sends in one poll
/// (an ARP exchange, a TCP window of segments is paced by the peer's polls).
pub const WIRE_QUEUE_FRAMES: usize = 8;

/// One direction of the wire: a ring of whole frames.
pub struct FrameQueue {
    frames: [[u8; MAX_FRAME]; WIRE_QUEUE_FRAMES],
    lengths: [usize; WIRE_QUEUE_FRAMES],
    /// Index of the oldest frame.
    head: usize,
    /// Frames queued.
    queued: usize,
    /// Frames dropped because the queue was full.
    dropped: u64,
}

impl FrameQueue {
    const fn new() -> Self {
        FrameQueue { frames: [[0; MAX_FRAME]; WIRE_QUEUE_FRAMES], lengths: [0; WIRE_QUEUE_FRAMES], head: 0, queued: 0, dropped: 0 }
    }

    fn push(&mut self, frame: &[u8]) {
        if self.queued == WIRE_QUEUE_FRAMES || frame.len() > MAX_FRAME {
            self.dropped += 1;
            return;
        }
        let slot = (self.head + self.queued) % WIRE_QUEUE_FRAMES;
        self.frames[slot][..frame.len()].copy_from_slice(frame);
        self.lengths[slot] = frame.len();
        self.queued += 1;
    }

    fn pop(&mut self, buffer: &mut [u8]) -> Option<usize> {
        while self.queued > 0 {
            let slot = self.head;
            self.head = (self.head + 1) % WIRE_QUEUE_FRAMES;
            self.queued -= 1;
            let len = self.lengths[slot];
            // A frame the reader has no room for is dropped whole, as FrameIo says.
            if let Some(to) = buffer.get_mut(..len) {
                to.copy_from_slice(&self.frames[slot][..len]);
                return Some(len);
            }
            self.dropped += 1;
        }
        None
    }
}

/// The wire: one queue each way. Lives in a static (about 24 KiB), and its two ends
/// borrow it.
pub struct LoopbackWire {
    a_to_b: RefCell<FrameQueue>,
    b_to_a: RefCell<FrameQueue>,
}

impl LoopbackWire {
    /// An empty wire.
    pub const fn new() -> Self {
        LoopbackWire { a_to_b: RefCell::new(FrameQueue::new()), b_to_a: RefCell::new(FrameQueue::new()) }
    }

    /// Empties both directions and zeroes the drop counts (a fresh cable).
    pub fn reset(&mut self) {
        *self.a_to_b.get_mut() = FrameQueue::new();
        *self.b_to_a.get_mut() = FrameQueue::new();
    }

    /// The two ends, A and B.
    pub fn ends(&self) -> (LoopbackEnd<'_>, LoopbackEnd<'_>) {
        (LoopbackEnd { outbox: &self.a_to_b, inbox: &self.b_to_a }, LoopbackEnd { outbox: &self.b_to_a, inbox: &self.a_to_b })
    }

    /// Frames dropped so far, both directions together.
    pub fn dropped(&self) -> u64 {
        self.a_to_b.borrow().dropped + self.b_to_a.borrow().dropped
    }
}

impl Default for LoopbackWire {
    fn default() -> Self {
        Self::new()
    }
}

/// One end of a [`LoopbackWire`].
pub struct LoopbackEnd<'w> {
    outbox: &'w RefCell<FrameQueue>,
    inbox: &'w RefCell<FrameQueue>,
}

// The RefCell borrows below cannot collide: each lasts one call, the guest has one vCPU,
// and no interrupt handler touches the wire.
impl FrameIo for LoopbackEnd<'_> {
    fn send(&mut self, frame: &[u8]) {
        self.outbox.borrow_mut().push(frame);
    }

    fn recv(&mut self, buffer: &mut [u8]) -> Option<usize> {
        self.inbox.borrow_mut().pop(buffer)
    }
}
