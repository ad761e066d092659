//! The network device end to end without KVM: the guest's netfront and hv's netback in
//! one process, over simulated guest memory and an in-memory port (`net_rig`).

mod net_rig;

use backend_drivers::net::RX_BACKLOG;
use backend_drivers::runner::NotifyPolicy;
use frontend_drivers::net::NetError;
use net_rig::*;

#[test]
fn frames_cross_both_ways_byte_exact_including_the_smallest_and_largest() {
    let m = memory();
    let (backend, host) = backend(&m, NotifyPolicy::EventIndex);
    let handle = spawn(backend, &host);
    let mut front = front(&m, &host);
    front.post_rx_buffers().unwrap();
    let lengths = [14, 15, 60, 1000, 1513, 1514];
    // Guest → network.
    for (i, &len) in lengths.iter().enumerate() {
        transmit(&mut front, &host, &frame(i as u32, len));
    }
    for (i, &len) in lengths.iter().enumerate() {
        assert_eq!(host.network.next_sent(), frame(i as u32, len), "frame {i} ({len} bytes) arrived changed");
    }
    // Network → guest.
    for (i, &len) in lengths.iter().enumerate() {
        host.network.inject(frame(100 + i as u32, len));
    }
    for (i, &len) in lengths.iter().enumerate() {
        assert_eq!(receive(&mut front, &host), frame(100 + i as u32, len), "frame {i} ({len} bytes) arrived changed");
    }
    let stats = handle.stop().unwrap();
    assert_eq!((stats.frames_tx, stats.frames_rx, stats.refused()), (6, 6, 0));
    let bytes: u64 = lengths.iter().map(|&l| l as u64).sum();
    assert_eq!((stats.tx.bytes_from_guest, stats.rx.bytes_to_guest), (bytes, bytes));
    assert_eq!(front.stats().frames_rx, 6);
}

#[test]
fn persistent_grants_carry_many_frames_both_ways_without_granting_again() {
    let m = memory();
    let (backend, host) = backend(&m, NotifyPolicy::EventIndex);
    let handle = spawn(backend, &host);
    let mut front = front_with_persistent_grants(&m, &host);
    front.post_rx_buffers().unwrap();
    // More frames than buffers each way: every buffer is reused with the same grant.
    let count = 3 * (TX + RX) as u32;
    for i in 0..count {
        transmit(&mut front, &host, &frame(i, 60 + (i as usize % 1400)));
        assert_eq!(host.network.next_sent(), frame(i, 60 + (i as usize % 1400)), "frame {i} left changed");
        host.network.inject(frame(1000 + i, 1514 - (i as usize % 1400)));
        assert_eq!(receive(&mut front, &host), frame(1000 + i, 1514 - (i as usize % 1400)), "frame {i} arrived changed");
    }
    let stats = handle.stop().unwrap();
    // Every request named a grant made before the first frame, and none was refused.
    assert_eq!((stats.frames_tx, stats.frames_rx, stats.refused()), (u64::from(count), u64::from(count), 0));
}

#[test]
fn many_frames_in_flight_both_ways_arrive_whole_and_in_order() {
    let m = memory();
    let (backend, host) = backend(&m, NotifyPolicy::EventIndex);
    let handle = spawn(backend, &host);
    let mut front = front(&m, &host);
    front.post_rx_buffers().unwrap();
    assert_eq!(front.rx_posted(), RX);
    const FRAMES: u32 = 2000;
    // The network drains while the guest sends, so up to TX frames are in flight.
    let network = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let mut got = Vec::new();
            for i in 0..FRAMES {
                got.push(host.network.next_sent());
                assert_eq!(got.last().unwrap(), &frame(i, 60 + (i as usize % 1455)), "guest frame {i}");
            }
            got.len()
        });
        for i in 0..FRAMES {
            transmit(&mut front, &host, &frame(i, 60 + (i as usize % 1455)));
        }
        sender.join().unwrap()
    });
    assert_eq!(network, FRAMES as usize);
    // The network sends a buffer's worth at a time (more would go to the backlog).
    const BATCHES: u32 = 64;
    for batch in 0..BATCHES {
        for j in 0..RX as u32 {
            host.network.inject(frame(batch * 1000 + j, 1514));
        }
        for j in 0..RX as u32 {
            assert_eq!(receive(&mut front, &host), frame(batch * 1000 + j, 1514), "batch {batch} frame {j}");
        }
    }
    let stats = handle.stop().unwrap();
    assert_eq!((stats.frames_tx, stats.frames_rx, stats.rx_dropped_no_buffer), (FRAMES as u64, u64::from(BATCHES) * RX as u64, 0));
    assert!(front.stats().doorbells < 2 * FRAMES as u64, "event indices saved doorbells: {:?}", front.stats());
}

#[test]
fn rx_with_no_posted_buffers_waits_in_the_backlog_then_drops_and_counts() {
    let m = memory();
    let (backend, host) = backend(&m, NotifyPolicy::EventIndex);
    let handle = spawn(backend, &host);
    let mut front = front(&m, &host);
    const EXTRA: usize = 10;
    for i in 0..(RX_BACKLOG + EXTRA) as u32 {
        host.network.inject(frame(i, 100));
    }
    let stats = wait_for(|| handle.stats().filter(|s| s.rx_dropped_no_buffer == EXTRA as u64));
    assert_eq!(stats.frames_rx, 0, "no buffer, no delivery");
    // Buffers come: the backlog (the first RX_BACKLOG frames, in order) is delivered,
    // the guest re-posting buffers as it goes (each re-post is a receive doorbell the
    // backend asked for).
    front.post_rx_buffers().unwrap();
    for i in 0..RX_BACKLOG as u32 {
        assert_eq!(receive(&mut front, &host), frame(i, 100), "backlog frame {i}");
    }
    let stats = handle.stop().unwrap();
    assert_eq!((stats.frames_rx, stats.rx_dropped_no_buffer), (RX_BACKLOG as u64, EXTRA as u64));
    assert!(stats.rx.doorbells >= 1, "the backend asked for the receive doorbell when it ran out");
}

#[test]
fn event_indices_suppress_doorbells_and_upcalls_within_a_burst() {
    // Backend served by hand, so every step happens in a known order.
    let m = memory();
    let (mut backend, host) = backend(&m, NotifyPolicy::EventIndex);
    let mut front = front(&m, &host);
    for i in 0..10 {
        front.transmit(&frame(i, 64)).unwrap();
    }
    assert_eq!((front.stats().doorbells, front.stats().doorbells_suppressed), (1, 9), "one doorbell for a burst of ten");
    assert!(!backend.serve_tx());
    assert_eq!(backend.stats().tx.notifications, 1, "the first response raised the upcall the fresh ring asked for");
    for i in 10..15 {
        front.transmit(&frame(i, 64)).unwrap();
    }
    assert_eq!(front.stats().doorbells, 2, "the backend re-armed its doorbell when it went idle: one more");
    assert!(!backend.serve_tx());
    let stats = backend.stats();
    assert_eq!((stats.tx.notifications, stats.tx.notifications_suppressed), (1, 1), "the frontend did not ask for tx upcalls again");
    assert_eq!(front.reap_tx().unwrap(), 15);
    assert_eq!(front.tx_in_flight(), 0);
    for i in 0..15 {
        assert_eq!(host.network.sent.try_recv().unwrap(), frame(i, 64));
    }

    // Receive: the frontend re-arms before it sleeps, so the next frame raises exactly one upcall.
    front.post_rx_buffers().unwrap();
    host.network.inject(frame(50, 80));
    host.network.inject(frame(51, 80));
    assert!(!backend.serve_rx());
    assert_eq!(backend.stats().rx.notifications, 1);
    assert!(front.receive_into(&mut [0; 1514]).unwrap().is_some());
    assert!(front.receive_into(&mut [0; 1514]).unwrap().is_some());
    assert!(!front.rearm_rx(), "nothing more waiting");
    host.network.inject(frame(52, 80));
    assert!(!backend.serve_rx());
    assert_eq!(backend.stats().rx.notifications, 2, "re-armed: the next frame is signalled");
    host.network.inject(frame(53, 80));
    assert!(!backend.serve_rx());
    assert_eq!(backend.stats().rx.notifications, 2, "not re-armed: no upcall for a busy frontend");
    assert_eq!(backend.stats().rx.notifications_suppressed, 1);
}

#[test]
fn always_notifying_raises_one_upcall_per_publish() {
    let m = memory();
    let (mut backend, host) = backend(&m, NotifyPolicy::Always);
    let mut front = front(&m, &host);
    for round in 0..3 {
        front.transmit(&frame(round, 64)).unwrap();
        backend.serve_tx();
    }
    assert_eq!(backend.stats().tx.notifications, 3);
    assert_eq!(front.reap_tx().unwrap(), 3);
}

#[test]
fn all_transmit_buffers_in_flight_then_busy_until_reaped() {
    let m = memory();
    let (mut backend, host) = backend(&m, NotifyPolicy::EventIndex);
    let mut front = front(&m, &host);
    for i in 0..TX as u32 {
        front.transmit(&frame(i, 200)).unwrap();
    }
    assert_eq!(front.tx_in_flight(), TX);
    assert_eq!(front.transmit(&frame(99, 200)), Err(NetError::TxBusy));
    assert!(!front.can_transmit());
    backend.serve_tx();
    assert!(front.can_transmit(), "a response frees its buffer");
    assert_eq!(front.tx_in_flight(), 0);
    assert_eq!(front.transmit(&[0; 13]), Err(NetError::BadLength { len: 13 }), "the frontend refuses a runt itself");
    assert_eq!(front.transmit(&[0; 1515]), Err(NetError::BadLength { len: 1515 }));
}

#[test]
fn transmit_with_and_receive_with_lend_the_bytes_as_a_stack_would() {
    let m = memory();
    let (mut backend, host) = backend(&m, NotifyPolicy::EventIndex);
    let mut front = front(&m, &host);
    let written = front.transmit_with(42, |buf| {
        buf.fill(0xab);
        buf.len()
    });
    assert_eq!(written, Ok(42));
    backend.serve_tx();
    assert_eq!(host.network.sent.try_recv().unwrap(), vec![0xab; 42]);
    front.post_rx_buffers().unwrap();
    host.network.inject(frame(7, 99));
    backend.serve_rx();
    assert_eq!(front.receive_with(|bytes| bytes.to_vec()), Ok(Some(frame(7, 99))));
    assert_eq!(front.receive_with(|bytes| bytes.len()), Ok(None));
}

/// Frames per second through the split driver, both ways, next to the same frames
/// handed across threads through the bare port's channel (what the rings, grants,
/// copies and notifications cost on top of a thread hand-off). The rig's waits poll
/// their eventfd every 50 µs, which the figures include. Prints its figures;
/// asserts nothing about speed. `cargo test -p backend-drivers --release --test
/// net_driver -- --ignored --nocapture measure`.
#[test]
#[ignore = "a measurement: run by hand with --release --nocapture"]
fn measure_frames_per_second_through_the_split_driver() {
    const FRAMES: u32 = 200_000;
    for len in [60usize, 1514] {
        let payload = frame(1, len);
        // Baseline: the bare port, a frame handed from this thread to another.
        let (port, network) = port_pair();
        let start = std::time::Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..FRAMES {
                    let _ = network.sent.recv().unwrap();
                }
            });
            for _ in 0..FRAMES {
                backend_drivers::frame_port::FramePort::transmit(&port, &payload);
            }
        });
        let bare = start.elapsed();

        let m = memory();
        let (backend, host) = backend(&m, NotifyPolicy::EventIndex);
        let handle = spawn(backend, &host);
        let mut front = front(&m, &host);
        front.post_rx_buffers().unwrap();
        let start = std::time::Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..FRAMES {
                    let _ = host.network.next_sent();
                }
            });
            for _ in 0..FRAMES {
                transmit(&mut front, &host, &payload);
            }
        });
        let tx = start.elapsed();
        let start = std::time::Instant::now();
        let rounds = FRAMES / RX as u32;
        for _ in 0..rounds {
            for _ in 0..RX {
                host.network.inject(payload.clone());
            }
            for _ in 0..RX {
                let _ = receive(&mut front, &host);
            }
        }
        let rx = start.elapsed();
        let stats = handle.stop().unwrap();
        let rate = |n: u32, d: std::time::Duration| f64::from(n) / d.as_secs_f64();
        println!(
            "net/{len}B: guest->network {:.0} frames/s, network->guest {:.0} frames/s, bare port across threads {:.0} frames/s (ratio tx {:.1}x, rx {:.1}x); doorbells {} for {} tx frames, {} upcalls for {} rx frames",
            rate(FRAMES, tx),
            rate(rounds * RX as u32, rx),
            rate(FRAMES, bare),
            rate(FRAMES, bare) / rate(FRAMES, tx),
            rate(FRAMES, bare) / rate(rounds * RX as u32, rx),
            stats.tx.doorbells,
            stats.frames_tx,
            stats.rx.notifications,
            stats.frames_rx,
        );
    }
}
