//! One port of the switch: the [`SwitchPort`] its owner holds (a [`FramePort`]), its
//! bounded queue of frames waiting to be taken, the eventfd that says one is there, and
//! its counters.
//!
//! **Why a bounded queue per port.** The switch forwards on the sender's thread and
//! never waits, so a port whose owner does not take its frames (a guest that posts no
//! receive buffers, a stuck TAP) must not hold up the others, nor make the switch keep
//! its frames forever. Each port gets its own queue of at most `queue_frames` frames; a
//! frame for a full queue is dropped and counted in `dropped_full`. That is what a
//! hardware switch does with an output queue that overflows, and what Ethernet
//! promises: nothing. Protocols above (TCP) notice the loss and slow down; the
//! counters let a person notice it too. One queue per port, not one for the whole
//! switch, so that one slow receiver costs only its own frames ("head-of-line blocking"
//! is what a shared queue would give).
//!
//! **One signal per burst, not per frame.** Writing the `ready` eventfd is a system
//! call (about a microsecond on this host, most of the cost of forwarding a frame), and
//! an owner that has not come for its frames yet needs waking only once. So a queue
//! signals when it gets a frame and its owner has taken (or looked for) a frame since
//! the last signal; a burst that arrives while the owner sleeps costs one system call.
//! An owner that takes frames and stops before the queue is empty (a netback whose
//! guest has no receive buffers left) is still woken by the next frame queued, as it
//! would be with a signal per frame; the frames it left are its to come back for.
//!
//! Counters are atomics, so `--stats` can read them while frames flow; they are
//! counted from the **switch's** side, as a hardware switch's port counters are:
//! `rx` is what the switch received *from* the port's owner, `tx` what it sent *to* it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::mac_table::PortId;
use super::Fabric;
use crate::frame_port::{Frame, FramePort};

/// One port of a [`super::Switch`], held by whoever is attached there (a netback, a TAP,
/// a test). Frames it transmits are forwarded at once, on the caller's thread; frames
/// for it wait in its queue. Dropping it removes the port: it receives nothing more and
/// the switch forgets the addresses learned on it.
pub struct SwitchPort {
    id: PortId,
    queue: Arc<PortQueue>,
    fabric: Arc<Fabric>,
}

impl SwitchPort {
    pub(super) fn new(id: PortId, queue: Arc<PortQueue>, fabric: Arc<Fabric>) -> Self {
        SwitchPort { id, queue, fabric }
    }

    /// The port's number on its switch.
    pub fn id(&self) -> PortId {
        self.id
    }

    /// The port's name.
    pub fn name(&self) -> &str {
        self.queue.name()
    }

    /// The port's counters now.
    pub fn stats(&self) -> PortStats {
        self.queue.stats()
    }
}

impl FramePort for SwitchPort {
    fn transmit(&self, frame: &[u8]) {
        self.fabric.forward(self.id, frame);
    }

    fn receive(&self) -> Option<Frame> {
        self.queue.take()
    }

    fn ready(&self) -> &EventFd {
        self.queue.ready()
    }
}

impl Drop for SwitchPort {
    fn drop(&mut self) {
        self.fabric.detach(self.id);
    }
}

/// One port's counters, from the switch's side.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct PortStats {
    /// Frames the switch received from this port's owner (bad ones included).
    pub rx_frames: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames the switch queued for this port's owner.
    pub tx_frames: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Frames for this port dropped because its queue was full.
    pub dropped_full: u64,
    /// Frames from this port dropped as malformed: shorter than an Ethernet header,
    /// longer than 1514 bytes, or from a group or all-zero source address.
    pub dropped_bad: u64,
    /// Frames from this port sent to every other port (broadcast, multicast or an
    /// unknown destination).
    pub flooded: u64,
    /// Frames from this port dropped because their destination was learned on this
    /// same port (the switch never sends a frame back where it came from).
    pub filtered: u64,
}

#[derive(Default)]
struct Counters {
    rx_frames: AtomicU64,
    rx_bytes: AtomicU64,
    tx_frames: AtomicU64,
    tx_bytes: AtomicU64,
    dropped_full: AtomicU64,
    dropped_bad: AtomicU64,
    flooded: AtomicU64,
    filtered: AtomicU64,
}

/// What happened to a frame the switch received on a port (see [`PortQueue::count_received`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Received {
    /// Malformed: dropped.
    Bad,
    /// Sent to every other port.
    Flooded,
    /// Its destination is on the port it came from: dropped.
    Filtered,
    /// Sent to the one port its destination was learned on.
    Forwarded,
}

/// The frames waiting, and whether the owner has been signalled since it last took (or
/// looked for) a frame.
#[derive(Default)]
struct Waiting {
    frames: VecDeque<Frame>,
    signalled: bool,
}

/// A port's queue of frames for its owner, its eventfd and its counters.
pub struct PortQueue {
    name: String,
    frames: Mutex<Waiting>,
    capacity: usize,
    ready: EventFd,
    counters: Counters,
}

impl PortQueue {
    /// An empty queue of at most `capacity` frames (at least one).
    pub fn new(name: String, capacity: usize) -> std::io::Result<Self> {
        let capacity = capacity.max(1);
        Ok(PortQueue { name, frames: Mutex::new(Waiting::default()), capacity, ready: EventFd::new(EFD_NONBLOCK)?, counters: Counters::default() })
    }

    /// The port's name (`guest0`, `tap:hvtap0`...).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.frames.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a copy of `frame` for the owner and, unless the owner was signalled and
    /// has taken nothing since, signals [`PortQueue::ready`]; or drops the frame and
    /// counts it if the queue is full. Never blocks.
    pub fn offer(&self, frame: &[u8]) {
        let signal = {
            let mut waiting = self.waiting();
            if waiting.frames.len() >= self.capacity {
                self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
                return;
            }
            waiting.frames.push_back(frame.to_vec());
            !std::mem::replace(&mut waiting.signalled, true)
        };
        self.counters.tx_frames.fetch_add(1, Ordering::Relaxed);
        self.counters.tx_bytes.fetch_add(frame.len() as u64, Ordering::Relaxed);
        if signal {
            // The frame is in the queue before the owner can see the signal, so an owner
            // woken by it always finds it. A failed write (the counter at its maximum,
            // after 2^64 frames nobody read) leaves the eventfd readable anyway.
            let _ = self.ready.write(1);
        }
    }

    /// The oldest frame waiting for the owner. The owner has come for its frames, so the
    /// next frame queued signals again.
    pub fn take(&self) -> Option<Frame> {
        let mut waiting = self.waiting();
        waiting.signalled = false;
        waiting.frames.pop_front()
    }

    /// Frames waiting now.
    pub fn len(&self) -> usize {
        self.waiting().frames.len()
    }

    /// Whether no frame is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Readable when a frame was queued since the owner last read it.
    pub fn ready(&self) -> &EventFd {
        &self.ready
    }

    /// Counts a frame of `bytes` bytes the switch received from this port, and what
    /// became of it.
    pub fn count_received(&self, bytes: usize, what: Received) {
        let c = &self.counters;
        c.rx_frames.fetch_add(1, Ordering::Relaxed);
        c.rx_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        let outcome = match what {
            Received::Bad => &c.dropped_bad,
            Received::Flooded => &c.flooded,
            Received::Filtered => &c.filtered,
            Received::Forwarded => return,
        };
        outcome.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn stats(&self) -> PortStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PortStats {
            rx_frames: get(&c.rx_frames),
            rx_bytes: get(&c.rx_bytes),
            tx_frames: get(&c.tx_frames),
            tx_bytes: get(&c.tx_bytes),
            dropped_full: get(&c.dropped_full),
            dropped_bad: get(&c.dropped_bad),
            flooded: get(&c.flooded),
            filtered: get(&c.filtered),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_and_keeps_the_frames_it_has() {
        let q = PortQueue::new("p".into(), 2).expect("eventfd");
        q.offer(&[1; 20]);
        q.offer(&[2; 20]);
        q.offer(&[3; 20]);
        assert_eq!(q.stats().dropped_full, 1);
        assert_eq!(q.stats().tx_frames, 2);
        assert_eq!(q.take(), Some(vec![1; 20]));
        assert_eq!(q.take(), Some(vec![2; 20]));
        assert_eq!(q.take(), None);
        q.offer(&[4; 20]);
        assert_eq!(q.take(), Some(vec![4; 20]), "room again once the owner took its frames");
    }

    #[test]
    fn a_burst_while_the_owner_sleeps_signals_once_and_a_frame_after_it_took_one_signals_again() {
        let q = PortQueue::new("p".into(), 16).expect("eventfd");
        assert!(q.ready().read().is_err(), "nothing queued: not readable");
        for i in 0..5 {
            q.offer(&[i; 20]);
        }
        assert_eq!(q.ready().read().expect("readable"), 1, "one signal for the burst");
        // The owner takes one frame and stops (say it has nowhere to put more): the next
        // frame wakes it again.
        assert_eq!(q.take(), Some(vec![0; 20]));
        q.offer(&[5; 20]);
        q.offer(&[6; 20]);
        assert_eq!(q.ready().read().expect("readable"), 1);
        let rest: Vec<_> = std::iter::from_fn(|| q.take()).collect();
        assert_eq!(rest.len(), 6);
        q.offer(&[7; 20]);
        assert_eq!(q.ready().read().expect("readable"), 1);
    }

    #[test]
    fn a_queue_of_zero_frames_still_holds_one() {
        let q = PortQueue::new("p".into(), 0).expect("eventfd");
        q.offer(&[1; 14]);
        assert_eq!(q.len(), 1);
    }
}
