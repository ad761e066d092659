//! The property test: random interleavings of both sides, checked for exactly-once,
//! in-order delivery and for lost wake-ups.
//!
//! Both sides run in one thread, over one page. A schedule is a list of steps; a step
//! runs one operation of one side (push, publish, take, answer, or *sleep*). A step may
//! also **preempt** its side: then the other side runs one whole operation right after
//! the k-th access this operation makes to the page, say between storing `req_prod`
//! and reading `req_event`. That is where lost wake-ups hide: with the store and the load
//! of `publish_requests` swapped, this test finds a schedule that loses one.
//!
//! **Sleeping.** A side may only sleep the way a driver does: with nothing of its own
//! left to publish, it runs its final check; if that finds nothing, it sleeps, and runs
//! no operation again until the other side's publish returns `true` (the notification).
//! A notification that arrives *during* the final check keeps it awake, as a latched
//! interrupt or eventfd would. The frontend sleeps only while it waits for responses.
//!
//! **The property.** After every step: a side that sleeps while work is waiting for it
//! (requests published and not taken, responses published and not taken) is a lost
//! wake-up, and fails. Every entry taken must be the next in order, with the right
//! contents. At the end both sides run to completion; then every request pushed must
//! have been taken exactly once and answered exactly once.
//!
//! The model is sequentially consistent (the page's fence does nothing), so it cannot
//! catch a missing fence; it catches every wrong *order* of the ring's accesses.
//! `threads` runs the real thing on two CPUs.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use proptest::prelude::*;

use super::pages::{answer, payload, CellPage, Probe};
use crate::ring::{BackRing, FrontRing, HeaderField, RingError, RingFull, SharedPage};

// ---------------------------------------------------------------- the preemptible page

/// What runs when a preemption point is reached.
type Interrupt = Box<dyn FnOnce()>;

/// A page that can run the other side's operation in the middle of this side's.
#[derive(Clone)]
struct ModelPage {
    memory: CellPage,
    preemption: Rc<Preemption>,
}

#[derive(Default)]
struct Preemption {
    /// Accesses still to go before the interrupt runs (0: after the next one).
    countdown: Cell<Option<u8>>,
    interrupt: RefCell<Option<Interrupt>>,
}

impl Preemption {
    /// Called after every access to the page.
    fn tick(&self) {
        match self.countdown.get() {
            Some(0) => self.fire(),
            Some(k) => self.countdown.set(Some(k - 1)),
            None => {}
        }
    }

    /// Runs the interrupt now, if it has not run yet. It cannot be preempted itself.
    fn fire(&self) {
        self.countdown.set(None);
        let interrupt = self.interrupt.borrow_mut().take();
        if let Some(interrupt) = interrupt {
            interrupt();
        }
    }
}

impl SharedPage for ModelPage {
    fn load_u32(&self, offset: usize) -> u32 {
        let value = self.memory.load_u32(offset);
        self.preemption.tick();
        value
    }

    fn store_u32(&self, offset: usize, value: u32) {
        self.memory.store_u32(offset, value);
        self.preemption.tick();
    }

    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        self.memory.read_bytes(offset, buf);
        self.preemption.tick();
    }

    fn write_bytes(&self, offset: usize, data: &[u8]) {
        self.memory.write_bytes(offset, data);
        self.preemption.tick();
    }

    fn full_fence(&self) {
        self.preemption.tick();
    }
}

// ---------------------------------------------------------------- the two sides

#[derive(Clone, Copy, Debug)]
enum FrontOp {
    Push,
    Publish,
    Take,
    Sleep,
}

#[derive(Clone, Copy, Debug)]
enum BackOp {
    Take,
    Answer,
    Publish,
    Sleep,
}

/// One step of a schedule: `front` runs if `front_runs`, else `back`. With
/// `preempt_after = Some(k)`, the other side's operation runs after access k + 1 of it
/// (or after it, if it makes fewer accesses).
#[derive(Clone, Copy, Debug)]
struct Step {
    front_runs: bool,
    front: FrontOp,
    back: BackOp,
    preempt_after: Option<u8>,
}

/// Whether a side sleeps, and whether it was notified during its final check.
#[derive(Default)]
struct Sleeper {
    asleep: Cell<bool>,
    notified: Cell<bool>,
}

impl Sleeper {
    fn notify(&self) {
        self.notified.set(true);
        self.asleep.set(false);
    }

    /// The driver's sleep: final check, then sleep unless it found work or a
    /// notification came in meanwhile.
    fn sleep_unless(&self, final_check: impl FnOnce() -> bool) {
        self.notified.set(false);
        let found_work = final_check();
        if !found_work && !self.notified.get() {
            self.asleep.set(true);
        }
    }
}

struct Front<const REQ: usize, const RSP: usize> {
    ring: FrontRing<ModelPage, Probe<REQ>, Probe<RSP>>,
    pushed: u64,
    published: u64,
    taken: u64,
}

struct Back<const REQ: usize, const RSP: usize> {
    ring: BackRing<ModelPage, Probe<REQ>, Probe<RSP>>,
    taken: u64,
    answered: u64,
    published: u64,
}

struct World<const REQ: usize, const RSP: usize> {
    front: RefCell<Front<REQ, RSP>>,
    back: RefCell<Back<REQ, RSP>>,
    front_sleeper: Sleeper,
    back_sleeper: Sleeper,
    preemption: Rc<Preemption>,
    /// The page, to look at the header without preempting anything.
    memory: CellPage,
    start: u32,
}

impl<const REQ: usize, const RSP: usize> World<REQ, RSP> {
    fn new(start: u32) -> Rc<Self> {
        let preemption = Rc::new(Preemption::default());
        let memory = CellPage::new();
        let page = ModelPage { memory: memory.clone(), preemption: preemption.clone() };
        Rc::new(World {
            front: RefCell::new(Front { ring: FrontRing::init_at(page.clone(), start), pushed: 0, published: 0, taken: 0 }),
            back: RefCell::new(Back { ring: BackRing::attach_at(page, start), taken: 0, answered: 0, published: 0 }),
            front_sleeper: Sleeper::default(),
            back_sleeper: Sleeper::default(),
            preemption,
            memory,
            start,
        })
    }

    fn slots() -> u64 {
        u64::from(FrontRing::<ModelPage, Probe<REQ>, Probe<RSP>>::SLOTS)
    }

    fn run_front(&self, op: FrontOp) {
        if self.front_sleeper.asleep.get() {
            return;
        }
        let mut f = self.front.borrow_mut();
        match op {
            FrontOp::Push => {
                let in_flight = f.pushed - f.taken;
                assert_eq!(u64::from(f.ring.free_slots()), Self::slots() - in_flight);
                let id = f.pushed;
                let result = f.ring.push_request(&Probe::new(id, payload(id)));
                if in_flight < Self::slots() {
                    assert_eq!(result, Ok(()));
                    f.pushed += 1;
                } else {
                    assert_eq!(result, Err(RingFull));
                }
            }
            FrontOp::Publish => {
                f.published = f.pushed;
                if f.ring.publish_requests() {
                    self.back_sleeper.notify();
                }
            }
            FrontOp::Take => {
                if let Some(r) = f.ring.take_response().expect("an honest backend never corrupts the ring") {
                    let id = f.taken;
                    assert_eq!(r, Probe::new(id, answer(payload(id))), "responses come exactly once, in order");
                    f.taken += 1;
                }
            }
            FrontOp::Sleep => {
                // Sleep only with everything published, while waiting for an answer.
                if f.pushed == f.published && f.taken < f.published {
                    self.front_sleeper.sleep_unless(|| f.ring.final_check_for_responses());
                }
            }
        }
    }

    fn run_back(&self, op: BackOp) {
        if self.back_sleeper.asleep.get() {
            return;
        }
        let mut b = self.back.borrow_mut();
        match op {
            BackOp::Take => {
                if let Some(r) = b.ring.take_request().expect("an honest frontend never corrupts the ring") {
                    let id = b.taken;
                    assert_eq!(r, Probe::new(id, payload(id)), "requests come exactly once, in order");
                    b.taken += 1;
                }
            }
            BackOp::Answer => {
                let id = b.answered;
                let result = b.ring.push_response(&Probe::new(id, answer(payload(id))));
                if id < b.taken {
                    assert_eq!(result, Ok(()));
                    b.answered += 1;
                } else {
                    assert!(matches!(result, Err(RingError::NothingToAnswer { .. })));
                }
            }
            BackOp::Publish => {
                b.published = b.answered;
                if b.ring.publish_responses() {
                    self.front_sleeper.notify();
                }
            }
            BackOp::Sleep => {
                // Sleep only with every request taken answered and published.
                if b.answered == b.taken && b.published == b.answered {
                    self.back_sleeper.sleep_unless(|| b.ring.final_check_for_requests());
                }
            }
        }
    }

    /// Runs one step, with the other side's operation preempting it if asked.
    fn step(self: &Rc<Self>, step: Step) {
        if let Some(k) = step.preempt_after {
            let world = Rc::clone(self);
            let interrupt: Interrupt = if step.front_runs {
                Box::new(move || world.run_back(step.back))
            } else {
                Box::new(move || world.run_front(step.front))
            };
            *self.preemption.interrupt.borrow_mut() = Some(interrupt);
            self.preemption.countdown.set(Some(k));
        }
        if step.front_runs {
            self.run_front(step.front);
        } else {
            self.run_back(step.back);
        }
        // An operation with fewer accesses than k: the other side runs after it.
        self.preemption.fire();
        self.check_no_lost_wake_up();
    }

    /// A side asleep with work waiting for it was not notified when it should have been.
    fn check_no_lost_wake_up(&self) {
        let (f, b) = (self.front.borrow(), self.back.borrow());
        if self.back_sleeper.asleep.get() {
            assert_eq!(b.taken, f.published, "lost wake-up: the backend sleeps while requests wait for it");
        }
        if self.front_sleeper.asleep.get() {
            assert_eq!(f.taken, b.published, "lost wake-up: the frontend sleeps while responses wait for it");
        }
    }

    /// Both sides finish their work, the way the drivers do, sleeping when they may.
    fn run_to_completion(self: &Rc<Self>) {
        let pushed = self.front.borrow().pushed;
        let rounds = pushed / Self::slots() + 3;
        for _ in 0..rounds {
            let slots = Self::slots() as usize;
            let front = std::iter::once(FrontOp::Publish)
                .chain(std::iter::repeat_n(FrontOp::Take, slots + 1))
                .chain([FrontOp::Sleep]);
            let back = [BackOp::Take, BackOp::Answer].repeat(slots + 1).into_iter().chain([BackOp::Publish, BackOp::Sleep]);
            for op in front {
                self.step(Step { front_runs: true, front: op, back: BackOp::Take, preempt_after: None });
            }
            for op in back {
                self.step(Step { front_runs: false, front: FrontOp::Take, back: op, preempt_after: None });
            }
        }
        let (f, b) = (self.front.borrow(), self.back.borrow());
        assert_eq!((b.taken, b.answered), (pushed, pushed), "every request taken and answered exactly once");
        assert_eq!(f.taken, pushed, "every response taken exactly once");
        let end = self.start.wrapping_add(pushed as u32);
        assert_eq!(self.memory.get(HeaderField::ReqProd), end);
        assert_eq!(self.memory.get(HeaderField::RspProd), end);
    }
}

fn front_op() -> impl Strategy<Value = FrontOp> {
    prop_oneof![Just(FrontOp::Push), Just(FrontOp::Publish), Just(FrontOp::Take), Just(FrontOp::Sleep)]
}

fn back_op() -> impl Strategy<Value = BackOp> {
    prop_oneof![Just(BackOp::Take), Just(BackOp::Answer), Just(BackOp::Publish), Just(BackOp::Sleep)]
}

fn schedule() -> impl Strategy<Value = Vec<Step>> {
    let step = (any::<bool>(), front_op(), back_op(), proptest::option::weighted(0.3, 0u8..4))
        .prop_map(|(front_runs, front, back, preempt_after)| Step { front_runs, front, back, preempt_after });
    proptest::collection::vec(step, 0..300)
}

/// Start at 0, just before the wrap, or anywhere.
fn start_index() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), (u32::MAX - 40)..=u32::MAX, any::<u32>()]
}

fn check_schedule<const REQ: usize, const RSP: usize>(start: u32, steps: &[Step]) {
    let world = World::<REQ, RSP>::new(start);
    for &step in steps {
        world.step(step);
    }
    world.run_to_completion();
    // Break the page → preemption → world cycle, if an interrupt never ran.
    world.preemption.interrupt.borrow_mut().take();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Large requests, 8 slots: the ring is often full.
    #[test]
    fn interleavings_deliver_everything_once_in_order_and_lose_no_wake_up_8_slots(
        start in start_index(),
        steps in schedule(),
    ) {
        check_schedule::<256, 24>(start, &steps);
    }

    /// Responses larger than requests, 32 slots.
    #[test]
    fn interleavings_deliver_everything_once_in_order_and_lose_no_wake_up_32_slots(
        start in start_index(),
        steps in schedule(),
    ) {
        check_schedule::<24, 120>(start, &steps);
    }
}

#[test]
fn the_model_catches_a_sleeping_backend() {
    // The check itself: a backend put to sleep by force, with a request waiting for it.
    let world = World::<24, 24>::new(0);
    world.run_front(FrontOp::Push);
    world.run_front(FrontOp::Publish);
    world.back_sleeper.asleep.set(true);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| world.check_no_lost_wake_up()));
    assert!(caught.is_err(), "a sleeping backend with a request waiting is a failure");
}
