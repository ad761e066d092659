//! Lab 7, part a: the forwarding decision. Learning, flooding, no echo, bad frames.

mod rig;

use backend_drivers::switch::forward::Decision;
use backend_drivers::switch::mac_table::PortId;
use rig::*;

#[test]
fn a_learned_source_gets_later_frames_on_its_port_only() {
    let mut t = roomy();
    let (a, b, c) = (host(1), host(2), host(3));
    expect(&mut t, 1, &small(b, a), secs(0), Decision::Flood, "B is not known yet: flood");
    expect(&mut t, 2, &small(a, b), secs(1), Decision::To(PortId(1)), "A was learned on port 1 from its frame: a frame for A goes to port 1 only");
    expect(&mut t, 3, &small(b, c), secs(2), Decision::To(PortId(2)), "B was learned on port 2 from its reply: a frame for B goes to port 2 only");
    expect(&mut t, 1, &small(c, a), secs(3), Decision::To(PortId(3)), "C was learned on port 3");
    assert_eq!(t.lookup(mac(a), secs(4)), Some(PortId(1)), "lab 7: MacTable::lookup: A sent from port 1");
    assert_eq!(t.len(), 3, "lab 7: three hosts sent frames: three entries");
}

#[test]
fn an_unknown_destination_is_flooded() {
    let mut t = roomy();
    expect(&mut t, 1, &small(host(9), host(1)), secs(0), Decision::Flood, "nobody has sent from host 9: flood to find it");
    expect(&mut t, 2, &small(host(9), host(2)), secs(1), Decision::Flood, "host 9 is still unknown (receiving frames teaches nothing, only sending does)");
}

#[test]
fn broadcast_and_multicast_are_flooded_even_when_every_host_is_known() {
    let mut t = roomy();
    send(&mut t, 1, &small(host(2), host(1)), secs(0));
    send(&mut t, 2, &small(host(1), host(2)), secs(0));
    expect(&mut t, 1, &small(BROADCAST, host(1)), secs(1), Decision::Flood, "the broadcast address is a group address: flood");
    expect(&mut t, 1, &small(MULTICAST, host(1)), secs(1), Decision::Flood, "a multicast address (01:00:5e:…, the group bit set) is a group address: flood");
    expect(&mut t, 2, &small(MULTICAST6, host(2)), secs(1), Decision::Flood, "33:33:… is a group address too (the lowest bit of the first byte): flood");
}

#[test]
fn a_frame_for_a_host_on_the_senders_own_port_is_not_echoed() {
    let mut t = roomy();
    // A and B both sit behind port 1 (say, a TAP with two hosts behind it).
    send(&mut t, 1, &small(BROADCAST, host(1)), secs(0));
    send(&mut t, 1, &small(BROADCAST, host(2)), secs(0));
    expect(&mut t, 1, &small(host(2), host(1)), secs(1), Decision::Filter, "B is on port 1, the port the frame came in on: B already heard it there; sending it back would duplicate it (filter)");
    expect(&mut t, 1, &small(host(1), host(1)), secs(1), Decision::Filter, "a frame from A to A: A was just learned on this very port: filter");
}

#[test]
fn a_host_that_moves_is_found_on_its_new_port() {
    let mut t = roomy();
    send(&mut t, 1, &small(BROADCAST, host(1)), secs(0));
    send(&mut t, 2, &small(BROADCAST, host(2)), secs(0));
    // Host 1 migrates and speaks from port 3 now.
    send(&mut t, 3, &small(BROADCAST, host(1)), secs(5));
    expect(&mut t, 2, &small(host(1), host(2)), secs(6), Decision::To(PortId(3)), "host 1's latest frame came from port 3: its entry moved there");
    assert_eq!(t.len(), 2, "lab 7: a host that moved has one entry, not two");
}

#[test]
fn hostile_bad_frames_are_dropped_and_teach_the_table_nothing() {
    let mut t = roomy();
    let cases: [(&str, Vec<u8>); 8] = [
        ("an empty frame", frame(host(2), host(1), 0)),
        ("13 bytes: shorter than an Ethernet header", frame(host(2), host(1), 13)),
        ("1515 bytes: longer than the largest frame (1514)", frame(host(2), host(1), 1515)),
        ("a 9000-byte jumbo frame (not on this switch)", frame(host(2), host(1), 9000)),
        ("from the broadcast address", small(host(2), BROADCAST)),
        ("from a multicast address", small(host(2), MULTICAST)),
        ("from the all-zeros address", small(host(2), [0; 6])),
        ("a broadcast from a group address", small(BROADCAST, MULTICAST6)),
    ];
    for (what, f) in &cases {
        expect(&mut t, 1, f, secs(0), Decision::Bad, &format!("{what}: a bad frame is dropped"));
    }
    assert!(t.is_empty(), "lab 7: bad frames must teach the table nothing, but it holds {} entries (learn only after the frame passed its checks)", t.len());
    expect(&mut t, 1, &frame(host(2), host(1), 14), secs(0), Decision::Flood, "a bare 14-byte header is a frame");
    expect(&mut t, 1, &frame(host(2), host(1), 1514), secs(0), Decision::Flood, "1514 bytes is the largest frame, and allowed");
    assert_eq!(t.lookup(mac(host(1)), secs(0)), Some(PortId(1)), "lab 7: a good frame's source is learned");
}
