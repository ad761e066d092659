//! Lab 7's helpers (not a test file: `mod rig;` in each test file): Ethernet frames
//! with chosen addresses, hosts' addresses, and a table with room to spare.

#![allow(dead_code)] // each test file uses a part of the helpers

use std::time::Duration;

use backend_drivers::switch::forward::{decide, Decision};
use backend_drivers::switch::mac_table::{MacAddr, MacTable, PortId};

/// 802.1D's default ageing time, and hv's.
pub const AGEING: Duration = Duration::from_secs(300);

/// A host's (individual, locally administered) address: `52:54:00:00:hi:lo`.
pub fn host(n: u16) -> [u8; 6] {
    let [hi, lo] = n.to_be_bytes();
    [0x52, 0x54, 0, 0, hi, lo]
}

pub const BROADCAST: [u8; 6] = [0xff; 6];
/// An IPv4 multicast address (01:00:5e:…): a group address, but not the broadcast.
pub const MULTICAST: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb];
/// An IPv6 multicast address (33:33:…).
pub const MULTICAST6: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// A frame of `len` bytes from `src` to `dst` (an IPv4 EtherType, zero payload).
pub fn frame(dst: [u8; 6], src: [u8; 6], len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(14)];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f.truncate(len);
    f
}

/// A 60-byte frame (the Ethernet minimum without its checksum).
pub fn small(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    frame(dst, src, 60)
}

/// A table far larger than any test here fills.
pub fn roomy() -> MacTable {
    MacTable::new(4096, 4096, AGEING)
}

pub fn port(n: u64) -> PortId {
    PortId(n)
}

pub fn mac(bytes: [u8; 6]) -> MacAddr {
    MacAddr(bytes)
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// `decide` with the frame described in the failure message.
pub fn send(table: &mut MacTable, from: u64, frame: &[u8], now: Duration) -> Decision {
    decide(table, PortId(from), frame, now)
}

/// Fails, naming the rule, unless `decide` of `frame` on port `from` at `now` is `expected`.
pub fn expect(table: &mut MacTable, from: u64, frame: &[u8], now: Duration, expected: Decision, rule: &str) {
    let got = send(table, from, frame, now);
    assert_eq!(
        got,
        expected,
        "lab 7: {rule}\n  frame of {} bytes from {} to {} arriving on port {from} at {:?}: decide returned {got:?}, the rule says {expected:?}",
        frame.len(),
        describe(frame, 6),
        describe(frame, 0),
        now
    );
}

fn describe(frame: &[u8], at: usize) -> String {
    match frame.get(at..at + 6) {
        Some(b) => format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5]),
        None => "(cut off)".to_string(),
    }
}
