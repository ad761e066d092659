//! Draining the network backend for a snapshot or a migration (`NetHandle::drain`): the
//! rings come to rest, the backend stays frozen however many frames the network sends,
//! and a new backend attached at the drained positions (a restored guest's) carries on
//! with the same frontend as if nothing had happened.

mod net_rig;

use std::time::Duration;

use backend_drivers::net::NetPositions;
use backend_drivers::runner::NotifyPolicy;
use net_rig::*;

/// The receive ring's `rsp_prod` (the ring header's third u32), read from guest memory.
fn rx_responses_published(m: &backend_drivers::GuestMemory) -> u32 {
    use vm_memory::Bytes;
    m.read_obj::<u32>(vm_memory::GuestAddress(pv_abi::layout::NET_RX_RING_GPA + 8)).unwrap()
}

#[test]
fn a_drained_backend_writes_nothing_until_thawed() {
    let m = memory();
    let (backend, host) = backend(&m, NotifyPolicy::EventIndex);
    let handle = spawn(backend, &host);
    let mut front = front(&m, &host);
    front.post_rx_buffers().unwrap();
    for i in 0..3 {
        transmit(&mut front, &host, &frame(i, 100));
        assert_eq!(host.network.next_sent(), frame(i, 100));
    }
    host.network.inject(frame(50, 200));
    assert_eq!(receive(&mut front, &host), frame(50, 200));

    let positions = handle.drain().expect("a quiet guest's rings drain");
    assert_eq!(positions, NetPositions { tx: 3, rx: 1 }, "three frames sent, one buffer filled");
    let published = rx_responses_published(&m);
    for i in 0..5 {
        host.network.inject(frame(60 + i, 300));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(rx_responses_published(&m), published, "frozen: no frame reached guest memory");
    let again = handle.drain().unwrap();
    assert_eq!(again, NetPositions { tx: 3, rx: 6 }, "a second drain moves the waiting frames into posted buffers, and freezes again");
    host.network.inject(frame(65, 300));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(rx_responses_published(&m), 6, "still frozen");

    handle.thaw();
    for i in 0..6 {
        assert_eq!(receive(&mut front, &host), frame(60 + i, 300), "the waiting frames arrive, in order, the last after the thaw");
    }
    let stats = handle.stop().unwrap();
    assert_eq!((stats.frames_tx, stats.frames_rx, stats.rx_dropped_no_buffer), (3, 7, 0));
}

#[test]
fn a_backend_attached_at_the_drained_positions_carries_on_with_the_same_frontend() {
    let m = memory();
    let (backend, host) = backend(&m, NotifyPolicy::EventIndex);
    let handle = spawn(backend, &host);
    let mut front = front(&m, &host);
    front.post_rx_buffers().unwrap();
    // Enough traffic that the indices are far from zero, and the tx ring wraps.
    for i in 0..300 {
        transmit(&mut front, &host, &frame(i, 60 + i as usize));
        assert_eq!(host.network.next_sent(), frame(i, 60 + i as usize));
    }
    for i in 0..40 {
        host.network.inject(frame(1000 + i, 500));
        assert_eq!(receive(&mut front, &host), frame(1000 + i, 500));
    }
    let positions = handle.drain().unwrap();
    assert_eq!(positions, NetPositions { tx: 300, rx: 40 });
    // What a snapshot does next: the old backend goes (frames it still held are lost)…
    let _ = handle.stop();

    // …and the restored VM's backend attaches where the rings stood, on a new port.
    let (restored, mut host2) = backend_at(&m, NotifyPolicy::EventIndex, positions);
    host2.tx_doorbell = host.tx_doorbell.try_clone().unwrap();
    host2.rx_doorbell = host.rx_doorbell.try_clone().unwrap();
    let handle = spawn(restored, &host2);
    for i in 0..50 {
        transmit(&mut front, &host2, &frame(2000 + i, 1514));
        assert_eq!(host2.network.next_sent(), frame(2000 + i, 1514), "the guest's frame {i} after the restore");
    }
    for i in 0..50 {
        host2.network.inject(frame(3000 + i, 1514));
        assert_eq!(receive(&mut front, &host2), frame(3000 + i, 1514), "frame {i} for the guest after the restore");
    }
    let stats = handle.stop().unwrap();
    assert_eq!((stats.frames_tx, stats.frames_rx, stats.refused(), stats.tx.ring_errors + stats.rx.ring_errors), (50, 50, 0, 0));
}

#[test]
fn hostile_a_corrupt_transmit_ring_is_refused_by_the_drain_and_the_thread_lives_on() {
    use vm_memory::Bytes;
    let m = memory();
    let (backend, host) = backend(&m, NotifyPolicy::EventIndex);
    let handle = spawn(backend, &host);
    let mut front = front(&m, &host);
    front.post_rx_buffers().unwrap();
    // The guest claims a million requests on its transmit ring (req_prod is its first u32).
    m.write_obj(1_000_000u32, vm_memory::GuestAddress(pv_abi::layout::NET_TX_RING_GPA)).unwrap();
    let refused = handle.drain().expect_err("a corrupt ring cannot be saved");
    assert!(refused.to_string().contains("net-tx") && refused.to_string().contains("corrupt"), "{refused}");
    handle.thaw();
    assert!(handle.stats().is_some(), "the backend thread is still there");
    let _ = handle.stop();
}
