//! Lab 7, hidden: MAC flooding. A hostile port sends from endless made-up addresses;
//! the table stays bounded and the real hosts keep their entries.

mod rig;

use backend_drivers::switch::forward::Decision;
use backend_drivers::switch::mac_table::{Learned, MacTable, PortId};
use rig::*;

/// A deterministic pseudo-random sequence (xorshift), so a failure is reproducible.
fn made_up_source(state: &mut u64) -> [u8; 6] {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    let b = state.to_le_bytes();
    // Individual (group bit clear), never all zeros: a valid source.
    [b[0] & 0xfe | 0x02, b[1], b[2], b[3], b[4], b[5]]
}

#[test]
fn hostile_a_flood_of_made_up_sources_never_grows_the_table_past_its_bounds() {
    let mut t = MacTable::new(256, 64, AGEING);
    for h in 1..=4u16 {
        send(&mut t, u64::from(h), &small(BROADCAST, host(h)), secs(0));
    }
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for n in 0..50_000u64 {
        let src = made_up_source(&mut state);
        let got = send(&mut t, 9, &small(host(1), src), secs(n / 1000));
        assert_eq!(got, Decision::To(PortId(1)), "lab 7: hostile flood, frame {n}: a frame for host 1 (known on port 1) goes to port 1 whatever its source");
        assert!(t.len() <= 4 + 64, "lab 7: hostile flood, frame {n}: the table holds {} entries, but one port may own at most 64 (per_port) besides the 4 real hosts", t.len());
    }
    for h in 1..=4u16 {
        assert_eq!(t.lookup(mac(host(h)), secs(50)), Some(PortId(u64::from(h))), "lab 7: hostile flood: the real host {h} lost its entry: a full port (or table) must refuse new addresses, never evict known ones (evicting turns the switch into a hub for the attacker)");
    }
}

#[test]
fn hostile_a_full_table_refuses_new_addresses_and_keeps_the_ones_it_has() {
    let mut t = MacTable::new(8, 8, AGEING);
    for h in 1..=8u16 {
        assert_eq!(t.learn(mac(host(h)), PortId(u64::from(h)), secs(0)), Learned::New, "lab 7: MacTable::learn: room for host {h}");
    }
    assert_eq!(t.learn(mac(host(99)), PortId(9), secs(1)), Learned::RefusedTableFull, "lab 7: MacTable::learn: a full table refuses a new address (RefusedTableFull)");
    expect(&mut t, 9, &small(host(3), host(100)), secs(2), Decision::To(PortId(3)), "a frame from an address the full table could not learn is still forwarded");
    expect(&mut t, 3, &small(host(100), host(3)), secs(3), Decision::Flood, "an address not learned (the table was full) is unknown: flood, which still delivers it");
    for h in 1..=8u16 {
        assert_eq!(t.lookup(mac(host(h)), secs(4)), Some(PortId(u64::from(h))), "lab 7: a full table refuses, it does not evict: host {h} must still be known");
    }
    assert_eq!(t.len(), 8, "lab 7: the table holds at most its capacity");
}

#[test]
fn hostile_one_port_cannot_take_the_room_the_others_need() {
    let mut t = MacTable::new(64, 4, AGEING);
    for h in 1..=4u16 {
        assert_eq!(t.learn(mac(host(h)), PortId(7), secs(0)), Learned::New, "lab 7: MacTable::learn: port 7's share is 4 entries");
    }
    assert_eq!(t.learn(mac(host(5)), PortId(7), secs(0)), Learned::RefusedPortFull, "lab 7: MacTable::learn: port 7 holds its share (per_port = 4): RefusedPortFull");
    assert_eq!(t.learn(mac(host(6)), PortId(8), secs(0)), Learned::New, "lab 7: MacTable::learn: another port still learns");
    // Moving an address onto the full port is refused too, and the stale entry goes.
    assert_eq!(t.learn(mac(host(6)), PortId(7), secs(1)), Learned::RefusedPortFull, "lab 7: MacTable::learn: host 6 moving onto full port 7 is refused");
    assert_eq!(t.lookup(mac(host(6)), secs(1)), None, "lab 7: host 6 was seen on port 7 now, so its old entry on port 8 is wrong: it must be gone (and not learned on port 7, which is full)");
}

#[test]
fn hostile_expired_entries_make_room_in_a_full_table() {
    let mut t = MacTable::new(8, 8, AGEING);
    for h in 1..=8u16 {
        t.learn(mac(host(h)), PortId(1), secs(0));
    }
    t.learn(mac(host(8)), PortId(1), secs(200));
    assert_eq!(t.learn(mac(host(50)), PortId(2), secs(299)), Learned::RefusedTableFull, "lab 7: at 299 s nothing has expired: still full");
    assert_eq!(t.learn(mac(host(50)), PortId(2), secs(300)), Learned::New, "lab 7: at 300 s hosts 1 to 7 have aged out: a full table drops expired entries to make room");
    assert_eq!(t.lookup(mac(host(8)), secs(300)), Some(PortId(1)), "lab 7: host 8 was refreshed at 200 s and is still known");
    assert_eq!(t.len(), 2, "lab 7: hosts 8 and 50 are left");
}
