//! Lab 2, parts a and b: push, publish and take, through pv-abi's public ring API.
//! Each test names the rule of the ring it checks.

mod rig;

use pv_abi::ring::{HeaderField, RingError, RingFull};
use rig::{answer_all, ring, send, take_expecting, Msg, N};

#[test]
fn requests_come_out_in_order_exactly_once() {
    let (mut front, mut back, _) = ring();
    send(&mut front, 1..=5);
    for id in 1..=5 {
        take_expecting(&mut back, id, "each published request is taken once, in the order pushed");
    }
    assert!(
        matches!(back.take_request(), Ok(None)),
        "lab 2: take_request: all five requests were taken, so the sixth call must find none (Ok(None))"
    );
}

#[test]
fn a_pushed_request_is_invisible_until_published() {
    let (mut front, mut back, page) = ring();
    front.push_request(&Msg::new(7)).expect("lab 2: push_request: a fresh ring has free slots");
    assert_eq!(page.get(HeaderField::ReqProd), 0, "lab 2: push_request writes the slot only: req_prod on the page moves in publish_requests, so that several pushes cost one publish");
    assert!(
        matches!(back.take_request(), Ok(None)),
        "lab 2: the backend must not take a request that was pushed but not published (req_prod still 0)"
    );
    front.publish_requests();
    assert_eq!(page.get(HeaderField::ReqProd), 1, "lab 2: publish_requests stores req_prod = the number of requests pushed");
    take_expecting(&mut back, 7, "a published request can be taken");
}

#[test]
fn a_full_ring_refuses_a_push_until_a_response_is_taken() {
    let (mut front, mut back, _) = ring();
    for id in 0..u64::from(N) {
        assert!(front.push_request(&Msg::new(id)).is_ok(), "lab 2: push_request: request {id} of {N} must fit in a ring of {N} slots");
    }
    assert_eq!(front.push_request(&Msg::new(99)), Err(RingFull), "lab 2: push_request: with {N} requests outstanding in {N} slots the next push is RingFull (it must not overwrite slot 0)");
    front.publish_requests();
    take_expecting(&mut back, 0, "the first request of a full ring is still request 0");
    // Taken by the backend but not yet answered: its slot is still in use.
    assert_eq!(front.push_request(&Msg::new(99)), Err(RingFull), "lab 2: push_request: a slot is free again only once its response has been taken by the frontend, not when the backend took the request");
    answer_all(&mut front, &mut back, [0]);
    assert!(front.push_request(&Msg::new(100)).is_ok(), "lab 2: push_request: after one response was taken, one slot is free");
    front.publish_requests();
    for id in 1..u64::from(N) {
        take_expecting(&mut back, id, "the full ring's requests are taken in order");
    }
    take_expecting(&mut back, 100, "the request pushed into the reused slot 0 comes last");
}

#[test]
fn publishing_notifies_exactly_when_req_event_is_crossed() {
    // The backend's req_event says "notify me when request req_event - 1 is published".
    // A publish from old to new notifies iff old < req_event <= new.
    for event in 0..8u32 {
        let (mut front, _back, page) = ring();
        page.set(HeaderField::ReqEvent, event);
        let notified = send(&mut front, 0..3);
        let expected = (1..=3).contains(&event);
        assert_eq!(
            notified, expected,
            "lab 2: publish_requests moved req_prod from 0 to 3 with req_event = {event}: it must return {expected} (notify iff old < req_event <= new, in wrapping arithmetic)"
        );
        // And a second publish from 3 to 5.
        page.set(HeaderField::ReqEvent, event);
        let notified = send(&mut front, 3..5);
        let expected = (4..=5).contains(&event);
        assert_eq!(
            notified, expected,
            "lab 2: publish_requests moved req_prod from 3 to 5 with req_event = {event}: it must return {expected} (old is the req_prod published last time, not 0)"
        );
    }
}

#[test]
fn publishing_nothing_new_never_notifies() {
    let (mut front, _back, page) = ring();
    assert!(!front.publish_requests(), "lab 2: publish_requests with nothing pushed must return false (a doorbell for nothing wakes the backend for nothing)");
    assert!(send(&mut front, [1]), "lab 2: the first publish on a fresh ring (req_event = 1) must notify");
    page.set(HeaderField::ReqEvent, 2);
    assert!(!front.publish_requests(), "lab 2: publish_requests with nothing pushed since the last publish must return false, whatever req_event says");
}

#[test]
fn a_busy_backend_is_not_notified_and_its_final_check_finds_the_request() {
    let (mut front, mut back, page) = ring();
    assert!(send(&mut front, [1]), "lab 2: the first publish on a fresh ring (req_event = 1) must notify");
    take_expecting(&mut back, 1, "a published request can be taken");
    // The backend is busy with request 1 and has not re-armed: no doorbell needed.
    assert!(!send(&mut front, [2]), "lab 2: publish_requests: the backend has not re-armed req_event since request 1 (it is 1, not in (1, 2]), so publishing request 2 must not notify");
    take_expecting(&mut back, 2, "request 2 is there for a backend that looks");
    assert!(matches!(back.take_request(), Ok(None)), "lab 2: take_request: both requests taken, nothing left");
    assert!(!back.final_check_for_requests(), "lab 2: final_check_for_requests with no request waiting must return false (then the backend sleeps)");
    assert_eq!(page.get(HeaderField::ReqEvent), 3, "lab 2: final_check_for_requests re-arms: req_event = req_cons + 1 (\"notify me when the next request is published\")");
    assert!(send(&mut front, [3]), "lab 2: publish_requests: the backend re-armed req_event = 3 and went to sleep, so publishing request 3 must notify");
}

#[test]
fn the_final_check_sees_a_request_published_before_it() {
    let (mut front, mut back, page) = ring();
    send(&mut front, [1]);
    take_expecting(&mut back, 1, "a published request can be taken");
    assert!(matches!(back.take_request(), Ok(None)), "lab 2: take_request: nothing left after request 1");
    // Request 2 is published after the backend's last look but before its final check:
    // the stale req_event (1) means no doorbell, so the final check must find it.
    assert!(!send(&mut front, [2]), "lab 2: publish_requests: req_event is still 1, so publishing request 2 must not notify");
    assert!(back.final_check_for_requests(), "lab 2: final_check_for_requests must re-read req_prod after re-arming and return true: request 2 is waiting, and no doorbell will come for it (a lost wake-up)");
    assert_eq!(page.get(HeaderField::ReqEvent), 2, "lab 2: final_check_for_requests sets req_event = req_cons + 1 = 2, even when it finds a request");
    take_expecting(&mut back, 2, "the request the final check found");
}

#[test]
fn hostile_req_prod_beyond_the_ring_is_refused() {
    let (mut front, mut back, page) = ring();
    page.set(HeaderField::ReqProd, N + 1);
    match back.take_request() {
        Err(RingError::CorruptProducer { field: HeaderField::ReqProd, .. }) => {}
        other => panic!("lab 2: take_request: req_prod = {} claims more requests than the ring's {N} slots; it must return Err(CorruptProducer) for ReqProd, got {other:?}", N + 1),
    }
    // Nothing was consumed: once the frontend publishes honestly, request 0 comes first.
    send(&mut front, [0]);
    take_expecting(&mut back, 0, "a refused req_prod consumes nothing and changes no state");
}

#[test]
fn hostile_req_prod_over_unanswered_slots_is_refused() {
    let (mut front, mut back, page) = ring();
    send(&mut front, 0..4);
    for id in 0..4 {
        take_expecting(&mut back, id, "requests come out in order");
    }
    // Four requests are taken and not answered: they own four slots, so at most N - 4
    // new requests can exist. A frontend claiming N - 3 would have overwritten one.
    page.set(HeaderField::ReqProd, 4 + (N - 3));
    assert!(
        matches!(back.take_request(), Err(RingError::CorruptProducer { field: HeaderField::ReqProd, .. })),
        "lab 2: take_request: 4 requests are taken and unanswered, so req_prod may be at most req_cons + {} ; req_prod = req_cons + {} must be CorruptProducer",
        N - 4,
        N - 3
    );
    page.set(HeaderField::ReqProd, 4 + (N - 4));
    assert!(
        matches!(back.take_request(), Ok(Some(_))),
        "lab 2: take_request: req_prod = req_cons + {} exactly fills the free slots and is allowed",
        N - 4
    );
}
