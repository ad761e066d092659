//! Hostile network traffic on the rings: a guest that writes requests netfront never
//! would (the backend must refuse them without harm), and a backend that answers what
//! was never asked (the frontend must refuse that). Each `hostile_netif_*` test names
//! the attack it tries.

mod net_rig;

use backend_drivers::events::DeviceEvent;
use backend_drivers::guest_page::GuestPage;
use backend_drivers::net::{NetBackend, RX_BUDGET, TX_BUDGET};
use backend_drivers::runner::NotifyPolicy;
use frontend_drivers::grant_table::GrantTableFront;
use frontend_drivers::net::NetError;
use net_rig::*;
use pv_abi::device::net::{
    NetRxRequest, NetRxResponse, NetTxRequest, NetTxResponse, NET_RING_SLOTS, NET_STATUS_BAD_GRANT, NET_STATUS_BAD_REQUEST, NET_STATUS_OK,
};
use pv_abi::grant::{GrantProblem, GRANT_ENTRIES};
use pv_abi::layout::{NET_RX_RING_GPA, NET_TX_RING_GPA};
use pv_abi::ring::{BackRing, FrontRing, SharedPage, REQ_PROD_OFFSET, RSP_PROD_OFFSET};
use vm_memory::{Bytes, GuestAddress};

type TxFront = FrontRing<GuestPage, NetTxRequest, NetTxResponse>;
type RxFront = FrontRing<GuestPage, NetRxRequest, NetRxResponse>;

/// A hostile guest: raw rings and its own grants, no netfront to keep it honest.
struct Guest {
    tx: TxFront,
    rx: RxFront,
    grants: GrantTableFront<GuestPage>,
}

fn hostile_guest(m: &backend_drivers::GuestMemory) -> Guest {
    Guest { tx: FrontRing::init(page(m, NET_TX_RING_GPA)), rx: FrontRing::init(page(m, NET_RX_RING_GPA)), grants: net_grants(m) }
}

/// Pushes and publishes one transmit request, serves it, and returns the response.
fn send_tx(backend: &mut NetBackend, guest: &mut Guest, request: NetTxRequest) -> NetTxResponse {
    guest.tx.push_request(&request).unwrap();
    guest.tx.publish_requests();
    backend.serve_tx();
    guest.tx.take_response().unwrap().expect("every request is answered")
}

fn refused_grant(host: &Host, gref: u32, problem: GrantProblem) -> bool {
    host.events.0.lock().unwrap().iter().any(|e| matches!(e, DeviceEvent::GrantCheck { gref: g, result: Err(p), .. } if *g == gref && *p == problem))
}

#[test]
fn hostile_netif_ungranted_gref_is_refused_and_nothing_is_sent() {
    let m = memory();
    let (mut backend, host) = backend(&m, NotifyPolicy::EventIndex);
    let mut guest = hostile_guest(&m);
    // 256 was past the one-frame table of ABI 5; the table now ends after entry 1023.
    let last = GRANT_ENTRIES - 1;
    for gref in [0, 5, 200, 255, 256, last, last + 1, u32::MAX] {
        let r = send_tx(&mut backend, &mut guest, NetTxRequest { id: 3, gref, offset: 0, flags: 0, len: 60 });
        assert_eq!(r, NetTxResponse { id: 3, status: NET_STATUS_BAD_GRANT }, "gref {gref}");
    }
    for gref in [200, 256, last] {
        assert!(refused_grant(&host, gref, GrantProblem::NotGranted), "gref {gref}");
    }
    for gref in [0, last + 1, u32::MAX] {
        assert!(refused_grant(&host, gref, GrantProblem::OutOfRange), "gref {gref}");
    }
    assert!(host.network.sent.try_recv().is_err(), "nothing reached the network");
    let stats = backend.stats();
    assert_eq!((stats.tx.grant_refusals, stats.refused(), stats.frames_tx), (8, 8, 0));
}

#[test]
fn netif_the_network_keeps_the_tables_top_64_entries_and_the_last_one_is_served() {
    let m = memory();
    let (mut backend, host) = backend(&m, NotifyPolicy::EventIndex);
    let mut guest = hostile_guest(&m);
    assert_eq!(guest.grants.entries(), GRANT_ENTRIES - NET_GRANTS..GRANT_ENTRIES);
    let grefs: Vec<_> = (0..u64::from(NET_GRANTS)).map(|i| guest.grants.grant(data_frame(i), true).unwrap()).collect();
    let last = *grefs.last().unwrap();
    assert_eq!(last, GRANT_ENTRIES - 1);
    m.write_slice(&[0x5a; 60], GuestAddress(data_frame(u64::from(NET_GRANTS) - 1).raw() * 4096)).unwrap();
    let r = send_tx(&mut backend, &mut guest, NetTxRequest { id: 9, gref: last, offset: 0, flags: 0, len: 60 });
    assert_eq!(r, NetTxResponse { id: 9, status: NET_STATUS_OK });
    assert_eq!(host.network.sent.try_recv().unwrap(), vec![0x5a; 60]);
}

#[test]
fn hostile_netif_grant_of_a_frame_outside_the_window_is_refused() {
    let m = memory();
    let (mut backend, host) = backend(&m, NotifyPolicy::EventIndex);
    let mut guest = hostile_guest(&m);
    // The ring page itself, and a frame past the end of RAM.
    for frame in [NET_TX_RING_GPA / 4096, u64::MAX / 4096] {
        let gref = guest.grants.grant(pv_abi::addr::PseudoFrame::new(frame), true).unwrap();
        let r = send_tx(&mut backend, &mut guest, NetTxRequest { id: 1, gref, offset: 0, flags: 0, len: 60 });
        assert_eq!(r.status, NET_STATUS_BAD_GRANT);
        assert!(refused_grant(&host, gref, GrantProblem::BadFrame));
    }
}

#[test]
fn hostile_netif_lengths_0_13_1515_and_u32_max_are_refused() {
    let m = memory();
    let (mut backend, host) = backend(&m, NotifyPolicy::EventIndex);
    let mut guest = hostile_guest(&m);
    let gref = guest.grants.grant(data_frame(0), true).unwrap();
    for len in [0, 13, 1515, 4096, u32::MAX] {
        let r = send_tx(&mut backend, &mut guest, NetTxRequest { id: len, gref, offset: 0, flags: 0, len });
        assert_eq!(r, NetTxResponse { id: len, status: NET_STATUS_BAD_REQUEST }, "len {len}");
    }
    assert!(host.network.sent.try_recv().is_err());
    assert_eq!(backend.stats().tx.failed_requests, 5);
    let events = host.events.0.lock().unwrap();
    assert_eq!(events.iter().filter(|e| matches!(e, DeviceEvent::ResponsePushed { status, .. } if status == "EINVAL")).count(), 5, "each refusal is traced");
}

#[test]
fn hostile_netif_offset_plus_len_past_the_frame_is_refused() {
    let m = memory();
    let (mut backend, host) = backend(&m, NotifyPolicy::EventIndex);
    let mut guest = hostile_guest(&m);
    let gref = guest.grants.grant(data_frame(0), true).unwrap();
    for (offset, len) in [(4000, 100), (4095, 14), (u16::MAX, 1514), (2583, 1514)] {
        let r = send_tx(&mut backend, &mut guest, NetTxRequest { id: 1, gref, offset, flags: 0, len });
        assert_eq!(r.status, NET_STATUS_BAD_REQUEST, "{offset}+{len}");
    }
    // The last byte of the frame is fine.
    let r = send_tx(&mut backend, &mut guest, NetTxRequest { id: 2, gref, offset: 4096 - 1514, flags: 0, len: 1514 });
    assert_eq!(r, NetTxResponse { id: 2, status: NET_STATUS_OK });
    assert_eq!(host.network.sent.try_recv().unwrap().len(), 1514);
}

#[test]
fn hostile_netif_read_only_rx_buffer_is_refused_and_the_frame_goes_to_the_next_buffer() {
    let m = memory();
    let (mut backend, host) = backend(&m, NotifyPolicy::EventIndex);
    let mut guest = hostile_guest(&m);
    m.write_slice(&[0x55; 4096], GuestAddress(data_frame(0).checked_address().unwrap().raw())).unwrap();
    let read_only = guest.grants.grant(data_frame(0), true).unwrap();
    let writable = guest.grants.grant(data_frame(1), false).unwrap();
    guest.rx.push_request(&NetRxRequest { id: 10, gref: read_only }).unwrap();
    guest.rx.push_request(&NetRxRequest { id: 11, gref: writable }).unwrap();
    guest.rx.publish_requests();
    host.network.inject(frame(1, 300));
    backend.serve_rx();
    let first = guest.rx.take_response().unwrap().unwrap();
    assert_eq!(first, NetRxResponse { id: 10, offset: 0, flags: 0, status: NET_STATUS_BAD_GRANT });
    assert!(refused_grant(&host, read_only, GrantProblem::ReadOnly));
    let mut untouched = [0u8; 4096];
    m.read_slice(&mut untouched, GuestAddress(data_frame(0).checked_address().unwrap().raw())).unwrap();
    assert!(untouched.iter().all(|b| *b == 0x55), "the read-only buffer was not written");
    let second = guest.rx.take_response().unwrap().unwrap();
    assert_eq!(second, NetRxResponse { id: 11, offset: 0, flags: 0, status: 300 });
    let mut got = vec![0u8; 300];
    m.read_slice(&mut got, GuestAddress(data_frame(1).checked_address().unwrap().raw())).unwrap();
    assert_eq!(got, frame(1, 300));
    let stats = backend.stats();
    assert_eq!((stats.rx.grant_refusals, stats.frames_rx), (1, 1));
}

#[test]
fn hostile_netif_rx_response_ids_the_frontend_never_posted_are_refused() {
    let m = memory();
    let (_backend, host) = backend(&m, NotifyPolicy::EventIndex);
    let mut front = front(&m, &host);
    front.post_rx_buffers().unwrap();
    // A hostile backend, on the same ring page.
    let mut evil: BackRing<GuestPage, NetRxRequest, NetRxResponse> = BackRing::attach(page(&m, NET_RX_RING_GPA));
    let posted = (0..4).map(|_| evil.take_request().unwrap().unwrap()).collect::<Vec<_>>();
    let answers = [
        NetRxResponse { id: 999, offset: 0, flags: 0, status: 60 },           // never posted
        NetRxResponse { id: u32::MAX, offset: 0, flags: 0, status: 60 },     // never posted
        NetRxResponse { id: posted[0].id, offset: 0, flags: 0, status: 5000 }, // too long
        NetRxResponse { id: posted[1].id, offset: 4000, flags: 0, status: 200 }, // past the buffer
    ];
    for a in answers {
        evil.push_response(&a).unwrap();
    }
    evil.publish_responses();
    let mut buf = [0u8; 1514];
    assert_eq!(front.receive_into(&mut buf), Err(NetError::UnexpectedResponse { id: 999 }));
    assert_eq!(front.receive_into(&mut buf), Err(NetError::UnexpectedResponse { id: u32::MAX }));
    assert_eq!(front.receive_into(&mut buf), Err(NetError::BadResponse { id: posted[0].id, offset: 0, status: 5000 }));
    assert_eq!(front.receive_into(&mut buf), Err(NetError::BadResponse { id: posted[1].id, offset: 4000, status: 200 }));
    assert_eq!(front.rx_posted(), RX, "the buffers of malformed answers were taken back and posted again");
    assert_eq!(front.stats().rx_errors, 2);
    // The driver goes on: an honest answer to a re-posted buffer is a frame.
    let honest = evil.take_request().unwrap().unwrap();
    evil.push_response(&NetRxResponse { id: honest.id, offset: 0, flags: 0, status: 60 }).unwrap();
    evil.publish_responses();
    assert_eq!(front.receive_into(&mut buf), Ok(Some(60)));
}

#[test]
fn hostile_netif_tx_response_for_a_buffer_not_in_flight_is_refused() {
    let m = memory();
    let (_backend, host) = backend(&m, NotifyPolicy::EventIndex);
    let mut front = front(&m, &host);
    front.transmit(&frame(0, 60)).unwrap();
    let mut evil: BackRing<GuestPage, NetTxRequest, NetTxResponse> = BackRing::attach(page(&m, NET_TX_RING_GPA));
    let request = evil.take_request().unwrap().unwrap();
    evil.push_response(&NetTxResponse { id: request.id + 1, status: 0 }).unwrap();
    evil.publish_responses();
    assert_eq!(front.reap_tx(), Err(NetError::UnexpectedResponse { id: request.id + 1 }));
    assert_eq!(front.tx_in_flight(), 1, "the real request is still in flight");
}

#[test]
fn hostile_netif_flood_of_requests_is_served_a_budget_at_a_time() {
    let m = memory();
    let (mut backend, host) = backend(&m, NotifyPolicy::EventIndex);
    let mut guest = hostile_guest(&m);
    let gref = guest.grants.grant(data_frame(0), true).unwrap();
    // A full transmit ring.
    for id in 0..NET_RING_SLOTS as u32 {
        guest.tx.push_request(&NetTxRequest { id, gref, offset: 0, flags: 0, len: 60 }).unwrap();
    }
    guest.tx.publish_requests();
    assert!(backend.serve_tx(), "the first pass stops at its budget");
    assert_eq!(host.network.sent.len(), TX_BUDGET);
    assert!(backend.serve_tx());
    assert!(!backend.serve_tx(), "the ring is empty after two budgets");
    assert_eq!(host.network.sent.len(), NET_RING_SLOTS);
    assert_eq!(backend.stats().budget_exhausted, 2);
    // A flood from the network, with buffers for all of it: also a budget at a time.
    // (A guest may post one granted frame many times; the backend does not care.)
    let buffers: Vec<u32> = (1..=8).map(|i| guest.grants.grant(data_frame(i), false).unwrap()).collect();
    for i in 0..(2 * RX_BUDGET) as u32 {
        guest.rx.push_request(&NetRxRequest { id: i, gref: buffers[i as usize % buffers.len()] }).unwrap();
        host.network.inject(frame(i, 64));
    }
    guest.rx.publish_requests();
    assert!(backend.serve_rx(), "the first pass stops at its budget");
    assert_eq!(backend.stats().frames_rx, RX_BUDGET as u64);
    assert!(backend.serve_rx());
    assert!(!backend.serve_rx());
    assert_eq!(backend.stats().frames_rx, 2 * RX_BUDGET as u64);
    assert_eq!(backend.stats().refused(), 0);
}

#[test]
fn hostile_netif_flood_on_one_ring_does_not_starve_the_other_on_the_thread() {
    let m = memory();
    let (backend, host) = backend(&m, NotifyPolicy::EventIndex);
    let handle = spawn(backend, &host);
    let mut guest = hostile_guest(&m);
    let gref = guest.grants.grant(data_frame(0), true).unwrap();
    let buffer = guest.grants.grant(data_frame(1), false).unwrap();
    guest.rx.push_request(&NetRxRequest { id: 1, gref: buffer }).unwrap();
    guest.rx.publish_requests();
    let tx_doorbell = host.tx_doorbell.try_clone().unwrap();
    // The guest keeps its transmit ring full of requests, ringing all the while...
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut id = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                while guest.tx.push_request(&NetTxRequest { id, gref, offset: 0, flags: 0, len: 60 }).is_ok() {
                    id = id.wrapping_add(1);
                }
                guest.tx.publish_requests();
                tx_doorbell.write(1).unwrap();
                while let Ok(Some(_)) = guest.tx.take_response() {}
            }
        });
        // ...so the backend keeps running out of budget on it...
        wait_for(|| handle.stats().filter(|s| s.budget_exhausted > 0));
        // ...and a frame from the network still reaches its receive buffer.
        host.network.inject(frame(9, 100));
        wait_for(|| handle.stats().filter(|s| s.frames_rx == 1));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let stats = handle.stop().unwrap();
    assert!(stats.frames_tx > 0 && stats.budget_exhausted > 0, "{stats:?}");
    let mut got = vec![0u8; 100];
    m.read_slice(&mut got, GuestAddress(data_frame(1).checked_address().unwrap().raw())).unwrap();
    assert_eq!(got, frame(9, 100));
}

#[test]
fn hostile_netif_corrupt_ring_indices_are_reported_and_nothing_is_consumed() {
    let m = memory();
    let (backend, host) = backend(&m, NotifyPolicy::EventIndex);
    let handle = spawn(backend, &host);
    let guest = hostile_guest(&m);
    // Claim a million requests on both rings, and ring both doorbells.
    page(&m, NET_TX_RING_GPA).store_u32(REQ_PROD_OFFSET, 1_000_000);
    page(&m, NET_RX_RING_GPA).store_u32(REQ_PROD_OFFSET, 1_000_000);
    host.tx_doorbell.write(1).unwrap();
    host.network.inject(frame(0, 60));
    let stats = wait_for(|| handle.stats().filter(|s| s.tx.ring_errors >= 1 && s.rx.ring_errors >= 1));
    assert_eq!((stats.tx.requests, stats.rx.requests, stats.frames_tx), (0, 0, 0));
    assert!(host.network.sent.try_recv().is_err());
    let events = host.events.0.lock().unwrap();
    assert!(events.iter().any(|e| matches!(e, DeviceEvent::RingError { device: "net-tx", .. })));
    assert!(events.iter().any(|e| matches!(e, DeviceEvent::RingError { device: "net-rx", .. })));
    drop(events);
    drop(guest);
    assert!(handle.stop().is_some(), "the thread is alive and stops when asked");
}

#[test]
fn hostile_netif_corrupt_response_index_is_reported_by_the_frontend() {
    let m = memory();
    let (_backend, host) = backend(&m, NotifyPolicy::EventIndex);
    let mut front = front(&m, &host);
    front.post_rx_buffers().unwrap();
    page(&m, NET_RX_RING_GPA).store_u32(RSP_PROD_OFFSET, 1_000_000);
    assert!(matches!(front.receive_into(&mut [0; 1514]), Err(NetError::Ring(_))));
    page(&m, NET_TX_RING_GPA).store_u32(RSP_PROD_OFFSET, 77);
    assert!(matches!(front.reap_tx(), Err(NetError::Ring(_))));
}

#[test]
fn hostile_netif_frames_of_no_frame_length_from_the_port_are_dropped_a_budget_at_a_time() {
    let m = memory();
    let (mut backend, host) = backend(&m, NotifyPolicy::EventIndex);
    let mut front = front(&m, &host);
    front.post_rx_buffers().unwrap();
    for i in 0..(2 * RX_BUDGET) {
        host.network.inject(vec![0xee; if i % 2 == 0 { 5 } else { 2000 }]);
    }
    host.network.inject(frame(3, 64));
    assert!(backend.serve_rx(), "the first pass stops at its budget");
    assert_eq!(backend.stats().rx_dropped_bad_frame, RX_BUDGET as u64);
    assert!(backend.serve_rx());
    assert!(!backend.serve_rx());
    assert_eq!(backend.stats().rx_dropped_bad_frame, 2 * RX_BUDGET as u64);
    assert_eq!(front.receive_with(|bytes| bytes.to_vec()), Ok(Some(frame(3, 64))), "only the real frame reaches the guest");
}
