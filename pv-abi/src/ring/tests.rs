//! Tests of the ring. Here: the layout, the protocol step by step, and a hostile peer
//! (each such test is named after the attack it tries). In `tests/`: the test pages and
//! entries (`pages`), random interleavings of both sides checked as a property
//! (`model`), and two real threads (`threads`).

mod model;
mod pages;
mod threads;

use proptest::prelude::*;

use super::*;
use crate::device::block::{BlockRequest, BlockResponse};
use crate::device::console::{ConsoleRequest, ConsoleResponse};
use pages::{answer, payload, CellPage, Probe};

/// A block-sized request (88 bytes) and a small response: 32 slots.
type Req = Probe<88>;
type Rsp = Probe<16>;
type Front = FrontRing<CellPage, Req, Rsp>;
type Back = BackRing<CellPage, Req, Rsp>;
const N: u32 = 32;

/// A fresh ring with both ends at `start`, and the page for the test to look at.
fn ring_at(start: u32) -> (Front, Back, CellPage) {
    let page = CellPage::new();
    let front = Front::init_at(page.clone(), start);
    let back = Back::attach_at(page.clone(), start);
    (front, back, page)
}

fn request(id: u64) -> Req {
    Req::new(id, payload(id))
}

fn response_to(r: &Req) -> Rsp {
    Rsp::new(r.id, answer(r.value))
}

/// The backend answers every request waiting, publishes, and says if it notified.
fn serve_all(back: &mut Back) -> bool {
    while let Some(r) = back.take_request().unwrap() {
        back.push_response(&response_to(&r)).unwrap();
    }
    back.publish_responses()
}

// ---------------------------------------------------------------- layout

#[test]
fn slot_and_ring_sizes_of_common_entries() {
    assert_eq!(slot_size(0, 0), 8, "a slot is never empty");
    assert_eq!(slot_size(1, 0), 8);
    assert_eq!(slot_size(88, 16), 88);
    assert_eq!(slot_size(16, 60), 64, "the larger entry, rounded up to 8");
    for (slot, n) in [(8, 256), (64, 32), (88, 32), (128, 16), (256, 8), (4032, 1), (4033, 0)] {
        assert_eq!(ring_size(slot), n, "slot of {slot} bytes");
    }
    assert_eq!(FrontRing::<CellPage, BlockRequest, BlockResponse>::SLOTS, 32);
    let console_slot = slot_size(ConsoleRequest::SIZE, ConsoleResponse::SIZE);
    assert_eq!(BackRing::<CellPage, ConsoleRequest, ConsoleResponse>::SLOTS as usize, ring_size(console_slot));
    assert_eq!(Front::SLOTS, N);
}

#[test]
fn init_writes_the_header_and_attach_writes_nothing() {
    let page = CellPage::filled(0xaa);
    let _front = Front::init_at(page.clone(), 7);
    assert_eq!(page.header(), [7, 8, 7, 8], "[req_prod, req_event, rsp_prod, rsp_event]");
    let bytes = page.snapshot();
    assert!(bytes[16..HEADER_SIZE].iter().all(|&b| b == 0), "the padding is zeroed");
    assert!(bytes[HEADER_SIZE..].iter().all(|&b| b == 0xaa), "the slots are left alone");
    let _back = Back::attach(page.clone());
    assert_eq!(page.snapshot(), bytes, "the backend does not touch the page to attach");
}

// ---------------------------------------------------------------- the protocol

/// The worked example of the module documentation, step by step.
#[test]
fn one_request_round_trip() {
    let (mut front, mut back, page) = ring_at(0);
    front.push_request(&request(0)).unwrap();
    assert_eq!(back.take_request(), Ok(None), "pushed is not published");
    assert!(front.publish_requests(), "the first request notifies: req_event = 1");
    assert_eq!(page.header(), [1, 1, 0, 1]);

    let got = back.take_request().unwrap().unwrap();
    assert_eq!(got, request(0));
    back.push_response(&response_to(&got)).unwrap();
    assert_eq!(front.take_response(), Ok(None), "pushed is not published");
    assert!(back.publish_responses(), "the first response notifies: rsp_event = 1");
    assert_eq!(back.take_request(), Ok(None));
    assert!(!back.final_check_for_requests(), "nothing new: the backend may sleep");
    assert_eq!(page.header(), [1, 2, 1, 1], "req_event re-armed for request 1");

    assert_eq!(front.take_response(), Ok(Some(response_to(&request(0)))));
    assert_eq!(front.take_response(), Ok(None));
    assert!(!front.final_check_for_responses());
    assert_eq!(page.header(), [1, 2, 1, 2]);
    assert_eq!(front.free_slots(), N);
}

#[test]
fn indices_wrap_around_u32_max() {
    let start = u32::MAX - 5;
    let (mut front, mut back, page) = ring_at(start);
    let mut next_id = 0;
    let mut answered = 0;
    // Three whole rings' worth, in uneven batches, crossing the wrap early on.
    while answered < 3 * u64::from(N) {
        for _ in 0..(next_id % 5 + 1) {
            if front.push_request(&request(next_id)).is_ok() {
                next_id += 1;
            }
        }
        front.publish_requests();
        serve_all(&mut back);
        while let Some(r) = front.take_response().unwrap() {
            assert_eq!(r, response_to(&request(answered)), "in order, exactly once");
            answered += 1;
        }
    }
    let end = start.wrapping_add(answered as u32);
    assert!(end < start, "the indices wrapped");
    assert_eq!(page.get(HeaderField::ReqProd), end);
    assert_eq!(page.get(HeaderField::RspProd), end);
    assert_eq!(front.free_slots(), N);
}

#[test]
fn push_request_returns_ring_full_after_n_requests() {
    let (mut front, mut back, _page) = ring_at(u32::MAX - 3);
    for id in 0..u64::from(N) {
        assert_eq!(front.push_request(&request(id)), Ok(()));
    }
    assert_eq!(front.free_slots(), 0);
    assert_eq!(front.push_request(&request(99)), Err(RingFull));
    front.publish_requests();
    // Taking a request does not free its slot: the response will go there.
    assert!(back.take_request().unwrap().is_some());
    assert_eq!(front.push_request(&request(99)), Err(RingFull));
    back.push_response(&Rsp::new(0, 0)).unwrap();
    back.publish_responses();
    // Only taking the response does.
    assert_eq!(front.push_request(&request(99)), Err(RingFull));
    assert!(front.take_response().unwrap().is_some());
    assert_eq!(front.free_slots(), 1);
    assert_eq!(front.push_request(&request(u64::from(N))), Ok(()));
}

#[test]
fn publishing_nothing_notifies_nobody() {
    let (mut front, mut back, page) = ring_at(0);
    assert!(!front.publish_requests());
    assert!(!back.publish_responses());
    assert_eq!(page.header(), [0, 1, 0, 1]);
}

#[test]
fn a_busy_backend_is_not_notified_until_it_rearms() {
    let (mut front, mut back, _page) = ring_at(0);
    front.push_request(&request(0)).unwrap();
    assert!(front.publish_requests(), "the backend sleeps: notify");
    // The backend works on request 0; meanwhile two more publishes need no doorbell.
    back.take_request().unwrap().unwrap();
    front.push_request(&request(1)).unwrap();
    assert!(!front.publish_requests(), "the backend is awake and will look again");
    front.push_request(&request(2)).unwrap();
    assert!(!front.publish_requests());
    // Its final check finds them, so it does not sleep...
    assert!(back.final_check_for_requests());
    assert_eq!(back.take_request().unwrap(), Some(request(1)));
    assert_eq!(back.take_request().unwrap(), Some(request(2)));
    // ...and once it has found nothing, it is re-armed: the next publish notifies.
    assert!(!back.final_check_for_requests());
    front.push_request(&request(3)).unwrap();
    assert!(front.publish_requests());
}

#[test]
fn a_busy_frontend_is_not_notified_until_it_rearms() {
    let (mut front, mut back, _page) = ring_at(u32::MAX);
    for id in 0..3 {
        front.push_request(&request(id)).unwrap();
    }
    front.publish_requests();
    let taken: Vec<Req> = (0..3).map(|_| back.take_request().unwrap().unwrap()).collect();
    back.push_response(&response_to(&taken[0])).unwrap();
    assert!(back.publish_responses(), "the frontend asked for the first response");
    back.push_response(&response_to(&taken[1])).unwrap();
    assert!(!back.publish_responses(), "it has not re-armed rsp_event since");
    assert!(front.take_response().unwrap().is_some());
    assert!(front.final_check_for_responses(), "response 1 is there: no sleep");
    assert!(front.take_response().unwrap().is_some());
    assert!(!front.final_check_for_responses(), "now it sleeps, armed for response 2");
    back.push_response(&response_to(&taken[2])).unwrap();
    assert!(back.publish_responses());
}

#[test]
fn push_response_without_a_request_to_answer_is_refused() {
    let (mut front, mut back, page) = ring_at(0);
    let before = page.snapshot();
    assert_eq!(back.push_response(&Rsp::new(0, 0)), Err(RingError::NothingToAnswer { req_cons: 0 }));
    assert_eq!(page.snapshot(), before, "nothing written");
    front.push_request(&request(0)).unwrap();
    front.publish_requests();
    back.take_request().unwrap().unwrap();
    assert_eq!(back.push_response(&Rsp::new(0, 0)), Ok(()));
    assert_eq!(back.push_response(&Rsp::new(1, 0)), Err(RingError::NothingToAnswer { req_cons: 1 }));
}

// ---------------------------------------------------------------- a hostile frontend

#[test]
fn hostile_req_prod_far_ahead_is_refused_and_nothing_consumed() {
    let (mut front, mut back, page) = ring_at(10);
    front.push_request(&request(0)).unwrap();
    front.publish_requests();
    for bogus in [10 + N + 1, 1_000_000, u32::MAX] {
        page.set(HeaderField::ReqProd, bogus);
        let expected = RingError::CorruptProducer { field: HeaderField::ReqProd, value: bogus, consumer: 10, limit: N };
        assert_eq!(back.take_request(), Err(expected));
        assert!(back.final_check_for_requests(), "a corrupt index reads as work, so take_request reports it");
        assert_eq!(back.take_request(), Err(expected), "the same again: nothing was consumed");
    }
    // Once the frontend behaves again, the backend carries on where it was.
    page.set(HeaderField::ReqProd, 11);
    assert_eq!(back.take_request(), Ok(Some(request(0))));
}

#[test]
fn hostile_req_prod_behind_the_consumer_is_refused() {
    let (mut front, mut back, page) = ring_at(0);
    for id in 0..2 {
        front.push_request(&request(id)).unwrap();
    }
    front.publish_requests();
    back.take_request().unwrap().unwrap();
    back.take_request().unwrap().unwrap();
    // Moving req_prod backwards looks like 2^32 - 1 requests waiting.
    page.set(HeaderField::ReqProd, 1);
    assert!(matches!(back.take_request(), Err(RingError::CorruptProducer { value: 1, consumer: 2, .. })));
}

#[test]
fn hostile_frontend_publishes_more_requests_than_slots() {
    let (mut front, mut back, page) = ring_at(u32::MAX - 1);
    for id in 0..u64::from(N) {
        front.push_request(&request(id)).unwrap();
    }
    front.publish_requests();
    // The backend takes all N and is still working on them: every slot is spoken for.
    for _ in 0..N {
        back.take_request().unwrap().unwrap();
    }
    // The frontend claims one more, which could only sit in a slot whose response is
    // still to come (Xen's RING_REQUEST_PROD_OVERFLOW).
    let bogus = (u32::MAX - 1).wrapping_add(N + 1);
    page.set(HeaderField::ReqProd, bogus);
    let expected = RingError::CorruptProducer { field: HeaderField::ReqProd, value: bogus, consumer: bogus - 1, limit: 0 };
    assert_eq!(back.take_request(), Err(expected));
    // Answering one request frees one slot, so one more request may then be waiting.
    back.push_response(&Rsp::new(0, 0)).unwrap();
    assert!(back.take_request().unwrap().is_some());
}

#[test]
fn hostile_frontend_rewrites_a_request_after_it_was_taken() {
    let (mut front, mut back, page) = ring_at(0);
    front.push_request(&request(0)).unwrap();
    front.publish_requests();
    let taken = back.take_request().unwrap().unwrap();
    // The frontend scribbles over the slot while the backend works on the request.
    page.write_bytes(HEADER_SIZE, &[0xff; 88]);
    assert_eq!(taken, request(0), "the backend holds a copy, checked and used as one");
    back.push_response(&response_to(&taken)).unwrap();
    back.publish_responses();
    assert_eq!(front.take_response().unwrap(), Some(response_to(&request(0))));
}

#[test]
fn hostile_frontend_fills_the_slots_with_garbage() {
    let (_front, mut back, page) = ring_at(0);
    let garbage: Vec<u8> = (0..RING_PAGE_SIZE - HEADER_SIZE).map(|i| payload(i as u64) as u8).collect();
    page.write_bytes(HEADER_SIZE, &garbage);
    page.set(HeaderField::ReqProd, N);
    for _ in 0..N {
        let r = back.take_request().unwrap().unwrap();
        assert!(!r.filler_ok, "garbage decodes to a value the receiver can reject");
        back.push_response(&Rsp::new(r.id, 0)).unwrap();
    }
    assert_eq!(back.take_request(), Ok(None));
}

// ---------------------------------------------------------------- a hostile backend

#[test]
fn hostile_rsp_prod_far_ahead_is_refused_and_nothing_consumed() {
    let (mut front, mut back, page) = ring_at(u32::MAX);
    for id in 0..2 {
        front.push_request(&request(id)).unwrap();
    }
    front.publish_requests();
    serve_all(&mut back);
    for bogus in [u32::MAX.wrapping_add(3), 1 << 31, u32::MAX - 1] {
        page.set(HeaderField::RspProd, bogus);
        let expected = RingError::CorruptProducer { field: HeaderField::RspProd, value: bogus, consumer: u32::MAX, limit: 2 };
        assert_eq!(front.take_response(), Err(expected));
        assert!(front.final_check_for_responses());
        assert_eq!(front.take_response(), Err(expected), "nothing was consumed");
        assert_eq!(front.free_slots(), N - 2);
    }
    page.set(HeaderField::RspProd, 1);
    assert_eq!(front.take_response().unwrap(), Some(response_to(&request(0))));
}

#[test]
fn hostile_backend_answers_requests_never_published() {
    let (mut front, _back, page) = ring_at(0);
    page.set(HeaderField::RspProd, 1);
    assert!(
        matches!(front.take_response(), Err(RingError::CorruptProducer { limit: 0, .. })),
        "no request is out, so no response can be"
    );
    // Three pushed, one published: only one response can exist.
    for id in 0..3 {
        front.push_request(&request(id)).unwrap();
        if id == 0 {
            front.publish_requests();
        }
    }
    page.set(HeaderField::RspProd, 2);
    assert!(matches!(front.take_response(), Err(RingError::CorruptProducer { value: 2, consumer: 0, limit: 1, .. })));
}

#[test]
fn hostile_backend_rewrites_req_prod() {
    let (mut front, mut back, page) = ring_at(0);
    page.set(HeaderField::ReqProd, 12345);
    front.push_request(&request(0)).unwrap();
    assert!(front.publish_requests(), "the frontend judges by its own copy of req_prod");
    assert_eq!(page.get(HeaderField::ReqProd), 1);
    assert_eq!(back.take_request().unwrap(), Some(request(0)));
}

#[test]
fn errors_explain_themselves() {
    let e = RingError::CorruptProducer { field: HeaderField::ReqProd, value: 1_000_000, consumer: 3, limit: 32 };
    assert_eq!(
        e.to_string(),
        "corrupt req_prod = 1000000: it is 999997 entries past req_cons = 3, but at most 32 can be waiting"
    );
    let e = RingError::CorruptProducer { field: HeaderField::RspProd, value: 1, consumer: 2, limit: 0 };
    assert!(e.to_string().contains("4294967295 entries past rsp_cons = 2"));
    assert!(RingError::NothingToAnswer { req_cons: 4 }.to_string().contains("all 4 requests"));
    assert!(RingFull.to_string().contains("full"));
}

// ---------------------------------------------------------------- any bytes at all

proptest! {
    #[test]
    fn hostile_bytes_always_decode(bytes in proptest::collection::vec(any::<u8>(), MAX_ENTRY_SIZE)) {
        // Every entry type of the crate, fed arbitrary bytes: a value, never a panic.
        let _ = BlockRequest::decode(&bytes[..BlockRequest::SIZE]);
        let _ = BlockResponse::decode(&bytes[..BlockResponse::SIZE]);
        let _ = ConsoleRequest::decode(&bytes[..ConsoleRequest::SIZE]).text();
        let _ = ConsoleResponse::decode(&bytes[..ConsoleResponse::SIZE]);
        let probe = Probe::<88>::decode(&bytes[..88]);
        let mut again = [0u8; 88];
        probe.encode(&mut again);
        prop_assert_eq!(Probe::<88>::decode(&again), Probe::new(probe.id, probe.value));
    }

    #[test]
    fn hostile_page_contents_never_panic_either_side(
        bytes in proptest::collection::vec(any::<u8>(), RING_PAGE_SIZE),
        start in any::<u32>(),
        published in 0..=N,
    ) {
        // The backend attaches to a page of garbage.
        let page = CellPage::from_bytes(bytes.as_slice().try_into().unwrap());
        let mut back = Back::attach_at(page.clone(), start);
        let mut taken = 0;
        for _ in 0..N + 2 {
            back.final_check_for_requests();
            if let Ok(Some(r)) = back.take_request() {
                taken += 1;
                back.push_response(&Rsp::new(r.id, 0)).unwrap();
                back.publish_responses();
            }
        }
        prop_assert!(taken <= N);

        // The frontend publishes some requests, then the page turns to garbage.
        let page = CellPage::new();
        let mut front = Front::init_at(page.clone(), start);
        for id in 0..published {
            front.push_request(&request(u64::from(id))).unwrap();
        }
        front.publish_requests();
        page.write_bytes(0, &bytes);
        let mut answered = 0;
        for _ in 0..N + 2 {
            front.final_check_for_responses();
            if let Ok(Some(_)) = front.take_response() {
                answered += 1;
            }
        }
        prop_assert!(answered <= published, "never more responses than requests");
        prop_assert_eq!(front.free_slots(), N - published + answered);
    }
}

// ---------------------------------------------------------------- handing a ring over

#[test]
fn a_quiet_ring_is_handed_over_and_back_without_the_backend_noticing() {
    // Near the wrap, so the handed-over index wraps while the second owner has it.
    let (mut first, mut back, page) = ring_at(u32::MAX - 5);
    for id in 0..3 {
        first.push_request(&request(id)).unwrap();
    }
    assert_eq!(first.quiet_index(), None, "pushed but not published: not quiet");
    first.publish_requests();
    assert_eq!(first.quiet_index(), None, "published but unanswered: not quiet");
    serve_all(&mut back);
    while first.take_response().unwrap().is_some() {}
    let index = first.quiet_index().expect("every response taken: quiet");
    // The second owner adopts the ring where the first left it, and goes on.
    let mut second = Front::adopt(page.clone(), index);
    for id in 10..20 {
        second.push_request(&request(id)).unwrap();
    }
    second.publish_requests();
    serve_all(&mut back);
    let mut answered = Vec::new();
    while let Some(r) = second.take_response().unwrap() {
        answered.push(r.id);
    }
    assert_eq!(answered, (10..20).collect::<Vec<_>>(), "the backend answered the new owner in order");
    // And back to the first, at the index the shared page says is answered (what a
    // kernel taking its ring back from a task trusts, rather than the task's word).
    assert_eq!(second.answered_index(), second.quiet_index());
    let mut first = Front::adopt(page, second.answered_index().unwrap());
    first.push_request(&request(99)).unwrap();
    first.publish_requests();
    serve_all(&mut back);
    assert_eq!(first.take_response().unwrap().map(|r| r.id), Some(99));
}
