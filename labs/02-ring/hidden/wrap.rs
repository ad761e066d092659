//! Lab 2, hidden: indices near the wrap, a hostile page, and a model of a long run.

mod rig;

use pv_abi::ring::{HeaderField, RingError};
use rig::{answer_all, ring_at, send, take_expecting, Msg, N};

#[test]
fn indices_wrap_past_u32_max() {
    let start = u32::MAX - 2;
    let (mut front, mut back, page) = ring_at(start);
    let mut next = 0u64;
    for round in 0..3 {
        let ids: Vec<u64> = (next..next + u64::from(N)).collect();
        next += u64::from(N);
        send(&mut front, ids.iter().copied());
        for &id in &ids {
            take_expecting(&mut back, id, &format!("round {round} across the wrap of the free-running u32 indices"));
        }
        answer_all(&mut front, &mut back, ids.iter().copied());
        assert!(!back.final_check_for_requests(), "lab 2: final_check_for_requests: everything taken, so false (compare indices with !=, not <: they wrap)");
    }
    assert_eq!(page.get(HeaderField::ReqProd), start.wrapping_add(3 * N), "lab 2: req_prod is free-running: it wraps from u32::MAX to 0");
}

#[test]
fn the_notification_rule_holds_across_the_wrap() {
    // req_prod moves from u32::MAX - 1 to 2 (four requests, wrapping through 0).
    let start = u32::MAX - 1;
    for offset in 0..8u32 {
        let event = start.wrapping_add(offset);
        let (mut front, _back, page) = ring_at(start);
        page.set(HeaderField::ReqEvent, event);
        let expected = (1..=4).contains(&offset);
        assert_eq!(
            send(&mut front, 0..4),
            expected,
            "lab 2: publish_requests from {start} to {} (wrapping) with req_event = {event} must return {expected}: compare wrapping differences (new - event < new - old), never the raw numbers",
            start.wrapping_add(4)
        );
    }
}

#[test]
fn hostile_req_prod_behind_req_cons_is_refused() {
    let (mut front, mut back, page) = ring_at(10);
    send(&mut front, [1, 2]);
    take_expecting(&mut back, 1, "requests come out in order");
    take_expecting(&mut back, 2, "requests come out in order");
    page.set(HeaderField::ReqProd, 11); // behind req_cons = 12: a wrapping difference of 2^32 - 1
    assert!(
        matches!(back.take_request(), Err(RingError::CorruptProducer { field: HeaderField::ReqProd, .. })),
        "lab 2: take_request: req_prod moved backwards (11 < req_cons 12): in wrapping arithmetic that is 2^32 - 1 requests waiting, far more than the ring holds: CorruptProducer"
    );
}

#[test]
fn hostile_rewriting_a_slot_after_take_changes_nothing() {
    let (mut front, mut back, page) = ring_at(0);
    send(&mut front, [5]);
    let taken = back.take_request().expect("lab 2: take_request on an honest ring").expect("lab 2: request 5 was published");
    let before = page.snapshot();
    // The frontend scribbles over the slot (offset 64: slot 0) after the take.
    use pv_abi::ring::SharedPage;
    page.write_bytes(64, &[0xff; 64]);
    assert_eq!(taken, Msg::new(5), "lab 2: take_request returns a copy: the frontend rewriting the slot afterwards must not change the value the backend holds");
    assert_ne!(before, page.snapshot());
}

/// A deterministic pseudo-random schedule (xorshift), so a failure is reproducible.
struct Schedule(u64);
impl Schedule {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn a_long_random_run_matches_a_model_of_the_ring() {
    // One side acts at a time, in a random order; a model (a queue and the Xen rule on
    // plain integers) says what each call must return.
    for seed in 1..40u64 {
        let mut s = Schedule(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let start = (s.next(1 << 32) as u32) | 0xffff_ff00;
        let (mut front, mut back, page) = ring_at(start);
        let (mut pushed, mut published, mut taken, mut answered) = (0u64, 0u64, 0u64, 0u64);
        let mut req_event = 1u64; // as an offset from start
        for step in 0..600 {
            match s.next(4) {
                0 => {
                    let outstanding = pushed - answered;
                    let r = front.push_request(&Msg::new(pushed));
                    assert_eq!(r.is_ok(), outstanding < u64::from(N), "lab 2: seed {seed} step {step}: push_request with {outstanding} of {N} slots outstanding");
                    if r.is_ok() {
                        pushed += 1;
                    }
                }
                1 => {
                    let (old, new) = (published, pushed);
                    let expected = old < req_event && req_event <= new;
                    assert_eq!(front.publish_requests(), expected, "lab 2: seed {seed} step {step}: publish_requests from {old} to {new} (offsets from the start index) with req_event at {req_event}");
                    published = pushed;
                }
                2 => {
                    if taken < published {
                        take_expecting(&mut back, taken, &format!("seed {seed} step {step}: the model's next request"));
                        taken += 1;
                    } else {
                        assert!(matches!(back.take_request(), Ok(None)), "lab 2: seed {seed} step {step}: take_request with every published request taken must be Ok(None)");
                        assert_eq!(back.final_check_for_requests(), false, "lab 2: seed {seed} step {step}: final_check_for_requests with nothing published");
                        req_event = taken + 1;
                        assert_eq!(page.get(HeaderField::ReqEvent), start.wrapping_add(req_event as u32), "lab 2: final_check_for_requests sets req_event = req_cons + 1");
                    }
                }
                _ => {
                    if answered < taken {
                        answer_all(&mut front, &mut back, answered..taken);
                        answered = taken;
                    }
                }
            }
        }
    }
}
