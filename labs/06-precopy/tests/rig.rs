//! Lab 6's model of a migration (not a test file: `mod rig;` in each host test file).
//!
//! A guest and a network without KVM or sockets: [`ModelSink`] "sends" a round at a
//! fixed bandwidth and advances a simulated clock by the time that takes; [`ModelGuest`]
//! dirties pages of its writable working set at a fixed rate during that time. Together
//! they implement hv's `RoundSink` and `DirtySource`, so `live_rounds` runs against them
//! exactly as it runs against a TCP connection and KVM's dirty log, and every figure it
//! computes can be checked against the model's.

#![allow(dead_code)] // each test file uses a part of the rig

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use hv::memory::dirty::DirtySet;
use hv::migration::precopy::{DirtySource, RoundSink, Sent, PAGE_OVERHEAD};
use hv::migration::MigrationError;
use pv_abi::addr::{PseudoFrame, PAGE_SIZE};

/// Guest RAM of the model: 64 MiB.
pub const RAM: u64 = 64 << 20;

/// The simulated clock both halves share.
#[derive(Default)]
pub struct Clock {
    /// Simulated time since the migration began.
    pub now: Duration,
    /// Time passed during the current round (the guest dirties pages in it).
    pub this_round: Duration,
}

/// What the sink saw of one round.
#[derive(Clone, Debug)]
pub struct RoundSeen {
    pub round: u32,
    pub pages: Vec<u64>,
    pub skip_zero: bool,
}

/// The network: sends at `bytes_per_second`; of round 0, only the `touched` first
/// frames are non-zero.
pub struct ModelSink {
    pub clock: Rc<RefCell<Clock>>,
    pub bytes_per_second: f64,
    pub touched: u64,
    pub seen: Vec<RoundSeen>,
    /// Fail (as a broken connection would) when asked for this round.
    pub fail_at_round: Option<u32>,
}

impl RoundSink for ModelSink {
    fn send_round(&mut self, round: u32, pages: &DirtySet, skip_zero: bool) -> Result<Sent, MigrationError> {
        if self.fail_at_round == Some(round) {
            return Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "the model's connection broke").into());
        }
        let frames: Vec<u64> = pages.iter().map(PseudoFrame::raw).filter(|f| !skip_zero || *f < self.touched).collect();
        let bytes = frames.len() as u64 * (PAGE_SIZE + PAGE_OVERHEAD);
        let elapsed = Duration::from_secs_f64(bytes as f64 / self.bytes_per_second).max(Duration::from_micros(10));
        let mut clock = self.clock.borrow_mut();
        clock.now += elapsed;
        clock.this_round += elapsed;
        self.seen.push(RoundSeen { round, pages: frames.clone(), skip_zero });
        Ok(Sent { pages: frames.len() as u64, bytes, elapsed })
    }
}

/// The guest: writes `pages_per_second` pages of its working set (frames
/// `first..first + working_set`), cycling, while time passes.
pub struct ModelGuest {
    pub clock: Rc<RefCell<Clock>>,
    pub first: u64,
    pub working_set: u64,
    pub pages_per_second: f64,
    next: u64,
    /// Fractional pages carried to the next round.
    carry: f64,
    pub asked: u32,
}

impl ModelGuest {
    pub fn new(clock: Rc<RefCell<Clock>>, first: u64, working_set: u64, pages_per_second: f64) -> Self {
        ModelGuest { clock, first, working_set, pages_per_second, next: 0, carry: 0.0, asked: 0 }
    }
}

impl DirtySource for ModelGuest {
    fn dirtied_since_last_call(&mut self) -> Result<DirtySet, MigrationError> {
        self.asked += 1;
        let mut clock = self.clock.borrow_mut();
        let writes = self.pages_per_second * clock.this_round.as_secs_f64() + self.carry;
        clock.this_round = Duration::ZERO;
        let whole = writes.floor();
        self.carry = writes - whole;
        let mut set = DirtySet::new(RAM);
        for _ in 0..(whole as u64).min(self.working_set) {
            set.insert(PseudoFrame::new(self.first + self.next));
            self.next = (self.next + 1) % self.working_set;
        }
        Ok(set)
    }
}

/// A sink and a guest on one clock.
pub fn model(bytes_per_second: f64, touched: u64, working_set: u64, pages_per_second: f64) -> (ModelSink, ModelGuest) {
    let clock = Rc::new(RefCell::new(Clock::default()));
    let sink = ModelSink { clock: clock.clone(), bytes_per_second, touched, seen: Vec::new(), fail_at_round: None };
    (sink, ModelGuest::new(clock, 100, working_set, pages_per_second))
}
