//! Lab 7, part b: learning and ageing in the MAC table, with a clock the test moves.

mod rig;

use backend_drivers::switch::clock::{Clock, ManualClock};
use backend_drivers::switch::forward::Decision;
use backend_drivers::switch::mac_table::{Learned, MacTable, PortId};
use rig::*;

#[test]
fn learn_says_what_it_did() {
    let mut t = roomy();
    assert_eq!(t.learn(mac(host(1)), PortId(1), secs(0)), Learned::New, "lab 7: MacTable::learn: a new address is a New entry");
    assert_eq!(t.learn(mac(host(1)), PortId(1), secs(1)), Learned::Refreshed, "lab 7: MacTable::learn: the same address on the same port is Refreshed");
    assert_eq!(t.learn(mac(host(1)), PortId(2), secs(2)), Learned::Moved, "lab 7: MacTable::learn: the same address on another port has Moved");
    assert_eq!(t.lookup(mac(host(1)), secs(3)), Some(PortId(2)), "lab 7: MacTable::lookup after a move");
    let stats = t.stats();
    assert_eq!((stats.entries, stats.learned, stats.moved), (1, 1, 1), "lab 7: MacTable::stats: one entry, learned once, moved once: {stats:?}");
}

#[test]
fn an_entry_is_forgotten_once_it_is_the_ageing_time_old() {
    let clock = ManualClock::new();
    let mut t = roomy();
    send(&mut t, 1, &small(BROADCAST, host(1)), clock.now());
    clock.advance(secs(299));
    expect(&mut t, 2, &small(host(1), host(2)), clock.now(), Decision::To(PortId(1)), "host 1 was seen 299 s ago, less than the ageing time (300 s): still known");
    clock.advance(secs(1));
    expect(&mut t, 2, &small(host(1), host(2)), clock.now(), Decision::Flood, "host 1 was seen 300 s ago: its entry is the ageing time old and forgotten, so the frame is flooded (receiving frames for it does not keep it alive)");
    assert_eq!(t.lookup(mac(host(1)), clock.now()), None, "lab 7: MacTable::lookup of an aged-out address: None");
}

#[test]
fn an_aged_out_entry_is_removed_when_looked_at() {
    let mut t = MacTable::new(16, 16, AGEING);
    t.learn(mac(host(1)), PortId(1), secs(0));
    t.learn(mac(host(2)), PortId(1), secs(100));
    assert_eq!(t.lookup(mac(host(1)), secs(350)), None, "lab 7: MacTable::lookup: host 1 is 350 s old");
    assert_eq!(t.len(), 1, "lab 7: MacTable::lookup removes the expired entry it finds (lazy ageing), so the table holds host 2 only");
    assert_eq!(t.stats().aged_out, 1, "lab 7: MacTable::lookup counts the entry it aged out (stats().aged_out)");
    assert_eq!(t.lookup(mac(host(2)), secs(350)), Some(PortId(1)), "lab 7: host 2 is 250 s old: still known");
}

#[test]
fn each_frame_from_a_host_starts_its_age_again() {
    let clock = ManualClock::new();
    let mut t = roomy();
    for _ in 0..5 {
        // Host 1 speaks every 200 s: it never goes 300 s without a frame.
        send(&mut t, 1, &small(BROADCAST, host(1)), clock.now());
        clock.advance(secs(200));
        expect(&mut t, 2, &small(host(1), host(2)), clock.now(), Decision::To(PortId(1)), "host 1 sent a frame 200 s ago: every frame it sends refreshes its entry");
    }
    clock.advance(secs(100));
    expect(&mut t, 2, &small(host(1), host(2)), clock.now(), Decision::Flood, "host 1 has been silent 300 s: forgotten");
}

#[test]
fn an_aged_out_host_is_learned_again_wherever_it_now_is() {
    let clock = ManualClock::new();
    let mut t = roomy();
    send(&mut t, 1, &small(BROADCAST, host(1)), clock.now());
    clock.advance(secs(400));
    // Host 1 comes back on port 4 (its entry on port 1 has expired meanwhile).
    send(&mut t, 4, &small(host(2), host(1)), clock.now());
    clock.advance(secs(1));
    expect(&mut t, 2, &small(host(1), host(2)), clock.now(), Decision::To(PortId(4)), "host 1 spoke from port 4 a second ago");
    assert_eq!(t.len(), 2, "lab 7: hosts 1 and 2: two entries");
}
