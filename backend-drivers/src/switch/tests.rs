//! The switch as its ports see it: frames in, frames out, counters.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::clock::ManualClock;
use super::*;
use crate::frame_port::FramePort;

fn mac(n: u8) -> [u8; 6] {
    [0x52, 0x54, 0, 0, 0, n]
}

/// A frame from `src` to `dst` of `len` bytes, its payload a tag the test can recognize.
fn frame(dst: [u8; 6], src: [u8; 6], tag: u8, len: usize) -> Vec<u8> {
    let mut f = vec![tag; len.max(14)];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x88, 0xb5]); // the local experimental EtherType
    f.truncate(len);
    f
}

fn drain(port: &SwitchPort) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| port.receive()).collect()
}

fn switch(queue_frames: usize) -> (Switch, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let config = SwitchConfig { queue_frames, ..SwitchConfig::default() };
    (Switch::with_clock(config, clock.clone()), clock)
}

fn ports(sw: &Switch, n: usize) -> Vec<SwitchPort> {
    (0..n).map(|i| sw.add_port(format!("p{i}")).expect("eventfd")).collect()
}

#[test]
fn an_unknown_destination_is_flooded_then_learned_replies_go_to_one_port() {
    let (sw, _) = switch(16);
    let p = ports(&sw, 3);
    let hello = frame(mac(2), mac(1), 1, 60);
    p[0].transmit(&hello);
    assert!(drain(&p[0]).is_empty(), "never echoed to the sender");
    assert_eq!(drain(&p[1]), vec![hello.clone()]);
    assert_eq!(drain(&p[2]), vec![hello]);
    // mac(1) is now known on p0: the reply goes there only.
    let reply = frame(mac(1), mac(2), 2, 60);
    p[1].transmit(&reply);
    assert_eq!(drain(&p[0]), vec![reply]);
    assert!(drain(&p[2]).is_empty(), "a known destination is not flooded");
    // And both are known now.
    let again = frame(mac(2), mac(1), 3, 60);
    p[0].transmit(&again);
    assert_eq!(drain(&p[1]), vec![again]);
    assert!(drain(&p[2]).is_empty());
    let stats = sw.stats();
    assert_eq!(stats.ports[0].stats.flooded, 1);
    assert_eq!(stats.ports[0].stats.rx_frames, 2);
    assert_eq!(stats.ports[1].stats.tx_frames, 2);
    assert_eq!(stats.table.entries, 2);
}

#[test]
fn broadcasts_reach_every_port_but_the_senders() {
    let (sw, _) = switch(16);
    let p = ports(&sw, 4);
    p[1].transmit(&frame(mac(1), mac(2), 0, 60)); // everyone learns where mac(2) is
    for q in &p {
        drain(q);
    }
    let arp = frame([0xff; 6], mac(2), 9, 42);
    p[1].transmit(&arp);
    for (i, q) in p.iter().enumerate() {
        let got = drain(q);
        if i == 1 {
            assert!(got.is_empty());
        } else {
            assert_eq!(got, vec![arp.clone()], "port {i}");
        }
    }
}

#[test]
fn a_frame_for_a_host_learned_on_the_senders_own_port_is_dropped() {
    let (sw, _) = switch(16);
    let p = ports(&sw, 2);
    p[0].transmit(&frame(mac(9), mac(1), 0, 60));
    p[0].transmit(&frame(mac(9), mac(2), 0, 60)); // two hosts behind port 0
    drain(&p[1]);
    p[0].transmit(&frame(mac(2), mac(1), 7, 60));
    assert!(drain(&p[0]).is_empty() && drain(&p[1]).is_empty());
    assert_eq!(sw.stats().ports[0].stats.filtered, 1);
}

#[test]
fn a_learned_address_ages_out_and_is_flooded_again() {
    let (sw, clock) = switch(16);
    let p = ports(&sw, 3);
    p[1].transmit(&frame([0xff; 6], mac(2), 0, 60));
    for q in &p {
        drain(q);
    }
    clock.advance(SwitchConfig::DEFAULT_AGEING - Duration::from_secs(1));
    p[0].transmit(&frame(mac(2), mac(1), 1, 60));
    assert_eq!(drain(&p[2]).len(), 0, "still known: one port only");
    assert_eq!(drain(&p[1]).len(), 1);
    clock.advance(Duration::from_secs(1));
    p[0].transmit(&frame(mac(2), mac(1), 2, 60));
    assert_eq!(drain(&p[2]).len(), 1, "aged out: flooded again");
    assert_eq!(drain(&p[1]).len(), 1);
    assert_eq!(sw.stats().table.aged_out, 1);
}

#[test]
fn a_full_queue_drops_and_counts_without_holding_up_other_ports() {
    let (sw, _) = switch(4);
    let p = ports(&sw, 3);
    for i in 0..10 {
        p[0].transmit(&frame([0xff; 6], mac(1), i, 60));
        // Port 2 keeps up; port 1 never reads.
        assert_eq!(drain(&p[2]).len(), 1);
    }
    let got = drain(&p[1]);
    assert_eq!(got.len(), 4);
    assert_eq!(got[0][20], 0, "the oldest frames are kept, the newest dropped");
    let stats = sw.stats();
    assert_eq!(stats.ports[1].stats.dropped_full, 6);
    assert_eq!(stats.ports[2].stats.dropped_full, 0);
    assert_eq!(stats.ports[0].stats.rx_frames, 10);
}

#[test]
fn the_ready_eventfd_wakes_a_receiver_that_drains_its_port() {
    let (sw, _) = switch(16);
    let p = ports(&sw, 2);
    assert!(p[1].ready().read().is_err(), "nothing queued: not readable (non-blocking)");
    for round in 0..3 {
        p[0].transmit(&frame([0xff; 6], mac(1), round, 60));
        p[0].transmit(&frame([0xff; 6], mac(1), round, 60));
        // FramePort's contract: read the eventfd, then receive until None.
        assert!(p[1].ready().read().is_ok(), "round {round}: signalled");
        assert_eq!(drain(&p[1]).len(), 2);
        assert!(p[1].ready().read().is_err(), "round {round}: nothing more to wake for");
    }
}

#[test]
fn a_dropped_port_receives_nothing_and_its_addresses_are_forgotten() {
    let (sw, _) = switch(16);
    let mut p = ports(&sw, 3);
    p[2].transmit(&frame([0xff; 6], mac(3), 0, 60));
    assert_eq!(sw.stats().table.entries, 1);
    let gone = p.pop().expect("three ports");
    drop(gone);
    assert_eq!(sw.stats().table.entries, 0);
    assert_eq!(sw.stats().ports.len(), 2);
    drain(&p[0]);
    drain(&p[1]);
    // mac(3) is unknown again: flooded to the ports that are left.
    p[0].transmit(&frame(mac(3), mac(1), 1, 60));
    assert_eq!(drain(&p[1]).len(), 1);
}

#[test]
fn stats_print_one_line_per_port_and_one_for_the_table() {
    let (sw, _) = switch(16);
    let p = ports(&sw, 2);
    p[0].transmit(&frame([0xff; 6], mac(1), 0, 60));
    let text = sw.stats().to_string();
    assert!(text.contains("switch port 0 (p0): from it 1 frames 60 bytes (1 flooded"), "{text}");
    assert!(text.contains("switch port 1 (p1): from it 0 frames 0 bytes (0 flooded, 0 filtered, 0 bad); to it 1 frames 60 bytes, 0 dropped (queue full), 1 queued"), "{text}");
    assert!(text.ends_with("switch MAC table: 1 entries; 1 learned, 0 moved, 0 aged out, 0 refused (table full), 0 refused (port's share full)"), "{text}");
}

#[test]
fn hostile_frames_of_bad_length_are_dropped_and_counted() {
    let (sw, _) = switch(16);
    let p = ports(&sw, 2);
    for len in [0, 1, 6, 12, 13, 1515, 9000, 70_000] {
        p[0].transmit(&frame([0xff; 6], mac(1), 0, len));
    }
    assert!(drain(&p[1]).is_empty());
    let s = sw.stats();
    assert_eq!(s.ports[0].stats.dropped_bad, 8);
    assert_eq!(s.table.entries, 0, "a bad frame teaches the switch nothing");
}

#[test]
fn hostile_frames_from_group_or_zero_sources_are_dropped() {
    let (sw, _) = switch(16);
    let p = ports(&sw, 2);
    p[0].transmit(&frame(mac(2), [0xff; 6], 0, 60));
    p[0].transmit(&frame(mac(2), [0x01, 0x00, 0x5e, 0, 0, 1], 0, 60));
    p[0].transmit(&frame(mac(2), [0; 6], 0, 60));
    assert!(drain(&p[1]).is_empty());
    assert_eq!(sw.stats().ports[0].stats.dropped_bad, 3);
}

#[test]
fn hostile_garbage_frames_never_panic_and_never_grow_anything_past_its_bound() {
    let (sw, _) = switch(8);
    let p = ports(&sw, 3);
    // A deterministic stream of garbage: random lengths 0..2000, random bytes.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let len = (next() % 2000) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        p[(next() % 3) as usize].transmit(&bytes);
    }
    let s = sw.stats();
    assert!(s.table.entries <= SwitchConfig::DEFAULT_MAC_CAPACITY);
    for port in &s.ports {
        assert!(port.queued <= 8, "{port:?}");
        // Every frame received was counted once: bad, flooded, filtered or forwarded.
        assert!(port.stats.dropped_bad + port.stats.flooded + port.stats.filtered <= port.stats.rx_frames);
    }
    let total_rx: u64 = s.ports.iter().map(|p| p.stats.rx_frames).sum();
    assert_eq!(total_rx, 20_000);
}

#[test]
fn hostile_a_flood_of_random_source_addresses_fills_only_the_senders_share() {
    let clock = Arc::new(ManualClock::new());
    let config = SwitchConfig { queue_frames: 4, mac_capacity: 64, macs_per_port: 16, ..SwitchConfig::default() };
    let sw = Switch::with_clock(config, clock.clone());
    let p = ports(&sw, 3);
    // Port 1's real host is learned before the attack.
    p[1].transmit(&frame([0xff; 6], mac(1), 0, 60));
    for n in 0..100_000u32 {
        let b = n.to_be_bytes();
        p[0].transmit(&frame([0xff; 6], [0x02, 0, b[0], b[1], b[2], b[3]], 0, 60));
    }
    let s = sw.stats();
    assert_eq!(s.table.entries, 17, "the attacker's share (16) and the real host");
    assert_eq!(s.table.refused_port_full, 100_000 - 16);
    // A new host on another port is still learned, and the real host still gets its
    // frames on its port alone: the attacker on port 0 does not see them.
    p[2].transmit(&frame([0xff; 6], mac(2), 0, 60));
    for q in &p {
        drain(q);
    }
    p[2].transmit(&frame(mac(1), mac(2), 5, 60));
    assert_eq!(drain(&p[1]).len(), 1);
    assert!(drain(&p[0]).is_empty(), "the attacker is not flooded the victims' traffic");
}

#[test]
fn forwarding_from_several_threads_loses_nothing_that_fits() {
    let (sw, _) = switch(100_000);
    let p = ports(&sw, 4);
    let sink = sw.add_port("sink").expect("eventfd");
    // Every sender learns the sink's address first.
    sink.transmit(&frame([0xff; 6], mac(100), 0, 60));
    for q in &p {
        drain(q);
    }
    std::thread::scope(|s| {
        for (i, port) in p.iter().enumerate() {
            s.spawn(move || {
                for _ in 0..5_000 {
                    port.transmit(&frame(mac(100), mac(i as u8 + 1), i as u8, 100));
                }
            });
        }
    });
    let got = drain(&sink);
    assert_eq!(got.len(), 20_000);
    for i in 0..4u8 {
        assert_eq!(got.iter().filter(|f| f[20] == i).count(), 5_000);
    }
}

/// One step of the model test: a port sends a frame, or time passes.
#[derive(Clone, Debug)]
enum Step {
    Send { port: usize, src: u8, dst: Option<u8> },
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..4usize, 1..6u8, proptest::option::of(1..6u8)).prop_map(|(port, src, dst)| Step::Send { port, src, dst }),
        1 => (0..200u64).prop_map(Step::Wait),
    ]
}

proptest! {
    /// Delivery matches a model written from the rules alone: a table of where each
    /// address was last seen and when, flooding for group or unknown (or stale)
    /// destinations, nothing back to the sender.
    #[test]
    fn delivery_matches_a_model_of_the_rules(steps in proptest::collection::vec(step(), 1..60)) {
        let ageing = Duration::from_secs(100);
        let clock = Arc::new(ManualClock::new());
        let sw = Switch::with_clock(SwitchConfig { queue_frames: 1000, ageing, ..SwitchConfig::default() }, clock.clone());
        let p = ports(&sw, 4);
        let mut now = Duration::ZERO;
        let mut seen: std::collections::HashMap<u8, (usize, Duration)> = Default::default();
        for (tag, s) in steps.iter().enumerate() {
            match *s {
                Step::Wait(secs) => {
                    clock.advance(Duration::from_secs(secs));
                    now += Duration::from_secs(secs);
                }
                Step::Send { port, src, dst } => {
                    seen.insert(src, (port, now));
                    let dst_mac = dst.map_or([0xff; 6], mac);
                    let f = frame(dst_mac, mac(src), tag as u8, 60);
                    p[port].transmit(&f);
                    let expected: Vec<usize> = match dst.and_then(|d| seen.get(&d)) {
                        Some(&(at, when)) if now - when < ageing => if at == port { vec![] } else { vec![at] },
                        _ => (0..4).filter(|&i| i != port).collect(),
                    };
                    for (i, q) in p.iter().enumerate() {
                        let got = drain(q);
                        if expected.contains(&i) {
                            prop_assert_eq!(got, vec![f.clone()], "port {} step {:?}", i, s);
                        } else {
                            prop_assert!(got.is_empty(), "port {} got a frame at step {:?}", i, s);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn no_wakeup_is_lost_when_a_receiver_sleeps_until_signalled() {
    use std::os::unix::io::AsRawFd;
    use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
    const FRAMES: usize = 20_000;
    let (sw, _) = switch(FRAMES);
    let p = ports(&sw, 2);
    let (sender, receiver) = (&p[0], &p[1]);
    std::thread::scope(|s| {
        s.spawn(move || {
            for i in 0..FRAMES {
                sender.transmit(&frame([0xff; 6], mac(1), i as u8, 60));
                // Now and then let the receiver catch up and fall asleep again.
                if i % 97 == 0 {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        });
        let epoll = Epoll::new().expect("epoll");
        epoll.ctl(ControlOperation::Add, receiver.ready().as_raw_fd(), EpollEvent::new(EventSet::IN, 0)).expect("watch");
        let mut events = [EpollEvent::default(); 1];
        let mut got = 0;
        while got < FRAMES {
            // Sleep only on the eventfd: a lost wakeup would hang here, so give up after
            // a time no scheduler delay reaches.
            let woken = epoll.wait(10_000, &mut events).expect("epoll_wait");
            assert_eq!(woken, 1, "the receiver was not woken with {} of {FRAMES} frames taken", got);
            let _ = receiver.ready().read();
            while receiver.receive().is_some() {
                got += 1;
            }
        }
    });
}
