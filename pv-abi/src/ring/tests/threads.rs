//! The ring on two real threads: a frontend and a backend over a page of atomics, with
//! notifications that count like an eventfd and waits that really wait, so that a lost
//! wake-up shows as a side stuck past the deadline (a failure, not a hang).

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::pages::{answer, payload, AtomicPage, Probe};
use crate::ring::{BackRing, FrontRing};

const REQUESTS: u64 = 100_000;
/// Far more than the test needs (well under a second in a release build, a few seconds
/// in debug), so that only a lost wake-up or a livelock can reach it.
const DEADLINE: Duration = Duration::from_secs(60);

type Req = Probe<88>;
type Rsp = Probe<16>;

/// An event channel in miniature: `notify` counts, `wait` returns once the count has
/// moved past what the waiter saw before its final check.
#[derive(Default)]
struct Event(AtomicU64);

impl Event {
    fn notify(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn seen(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    fn wait(&self, seen: u64, deadline: Instant, who: &str) {
        while self.0.load(Ordering::SeqCst) == seen {
            assert!(Instant::now() < deadline, "{who} waited past the deadline: a lost wake-up");
            thread::yield_now();
        }
    }
}

/// A small random number generator (xorshift), for batch sizes.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

struct Totals {
    /// Sum of the payloads of the requests received (backend) or of the responses
    /// received (frontend).
    sum: u64,
    notifications: u64,
}

/// Indices start here, so they wrap early in the run.
const START: u32 = u32::MAX - 1000;

fn frontend(mut ring: FrontRing<AtomicPage, Req, Rsp>, doorbell: &Event, upcall: &Event, deadline: Instant) -> Totals {
    let (mut sent, mut received, mut sum, mut doorbells) = (0, 0, 0u64, 0);
    let mut random = 0x2545_f491_4f6c_dd1d;
    while received < REQUESTS {
        assert!(Instant::now() < deadline, "the frontend ran past the deadline");
        let mut progress = false;
        // A batch of 1 to 16 requests, as many as fit.
        for _ in 0..1 + next_random(&mut random) % 16 {
            if sent == REQUESTS || ring.push_request(&Req::new(sent, payload(sent))).is_err() {
                break;
            }
            sent += 1;
            progress = true;
        }
        if ring.publish_requests() {
            doorbells += 1;
            doorbell.notify();
        }
        while let Some(r) = ring.take_response().expect("the backend is honest") {
            assert_eq!(r, Rsp::new(received, answer(payload(received))), "responses in order, exactly once");
            sum = sum.wrapping_add(r.value);
            received += 1;
            progress = true;
        }
        if !progress {
            // Nothing to send and nothing received: sleep until the upcall.
            let seen = upcall.seen();
            if !ring.final_check_for_responses() {
                upcall.wait(seen, deadline, "the frontend");
            }
        }
    }
    Totals { sum, notifications: doorbells }
}

fn backend(page: AtomicPage, doorbell: &Event, upcall: &Event, deadline: Instant) -> Totals {
    let mut ring: BackRing<AtomicPage, Req, Rsp> = BackRing::attach_at(page, START);
    let (mut handled, mut sum, mut upcalls) = (0, 0u64, 0);
    let mut random = 0x9e37_79b9_7f4a_7c15;
    while handled < REQUESTS {
        assert!(Instant::now() < deadline, "the backend ran past the deadline");
        while let Some(r) = ring.take_request().expect("the frontend is honest") {
            assert_eq!(r, Req::new(handled, payload(handled)), "requests in order, exactly once");
            sum = sum.wrapping_add(r.value);
            ring.push_response(&Rsp::new(r.id, answer(r.value))).unwrap();
            handled += 1;
            // Publish now and then mid-batch, so the frontend sees partial progress.
            if next_random(&mut random).is_multiple_of(4) && ring.publish_responses() {
                upcalls += 1;
                upcall.notify();
            }
        }
        if ring.publish_responses() {
            upcalls += 1;
            upcall.notify();
        }
        let seen = doorbell.seen();
        if handled < REQUESTS && !ring.final_check_for_requests() {
            doorbell.wait(seen, deadline, "the backend");
        }
    }
    Totals { sum, notifications: upcalls }
}

#[test]
fn two_threads_pass_100k_requests_and_every_one_arrives() {
    let page = AtomicPage::new();
    let (doorbell, upcall) = (Event::default(), Event::default());
    let deadline = Instant::now() + DEADLINE;
    // The frontend initialises the page before the backend looks at it, as the guest
    // does before it rings the first doorbell.
    let front_ring = FrontRing::init_at(page.clone(), START);
    let (front, back) = thread::scope(|s| {
        let front = s.spawn(|| frontend(front_ring, &doorbell, &upcall, deadline));
        let back = s.spawn(|| backend(page, &doorbell, &upcall, deadline));
        (front.join().unwrap(), back.join().unwrap())
    });
    let expected_requests = (0..REQUESTS).map(payload).fold(0u64, u64::wrapping_add);
    let expected_responses = (0..REQUESTS).map(|id| answer(payload(id))).fold(0u64, u64::wrapping_add);
    assert_eq!(back.sum, expected_requests, "the backend saw every request's payload once");
    assert_eq!(front.sum, expected_responses, "the frontend saw every response's payload once");
    assert!(front.notifications >= 1 && back.notifications >= 1);
}
