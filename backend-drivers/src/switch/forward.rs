//! The forwarding decision: given a frame and the port it came in on, where does it go?
//!
//! This is the whole of a learning bridge's logic (IEEE 802.1D), in the order it runs:
//! 1. **Check** the frame: at least an Ethernet header (14 bytes), at most 1514 bytes,
//!    and a source that can be a real sender (an individual address, not all zeros:
//!    no network card sends from a group address, and Linux's bridge drops such frames
//!    too). A bad frame is dropped.
//! 2. **Learn**: the source address is reachable through the port the frame came in on.
//! 3. **Forward**: a group destination (broadcast `ff:ff:ff:ff:ff:ff`, or multicast) goes
//!    to every port but the one it came from ("flooding"); so does a destination the
//!    table does not know (yet). A known destination goes to its port only, and if that
//!    is the port the frame came from, nowhere: the destination already had its chance
//!    to hear it on that segment ("filtering"), and sending it back would duplicate it.
//!
//! Everything here reads a copy: the frame is the sender's own buffer, handed over
//! whole, and the six-byte addresses are copied out of it before they are looked at.

use std::time::Duration;

use super::mac_table::{MacAddr, MacTable, PortId};
use crate::frame_port::{MAX_FRAME_BYTES, MIN_FRAME_BYTES};

/// Where a frame goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Decision {
    /// Malformed: dropped.
    Bad,
    /// To every port except the one it came from.
    Flood,
    /// Its destination is on the port it came from: dropped.
    Filter,
    /// To this one port.
    To(PortId),
}

/// Decides where `frame`, received on port `from` at `now`, goes, learning its source
/// address in `table` on the way.
pub fn decide(table: &mut MacTable, from: PortId, frame: &[u8], now: Duration) -> Decision {
    // LAB 7 BEGIN: the forwarding decision: check, learn, then flood, filter or forward
    if !(MIN_FRAME_BYTES..=MAX_FRAME_BYTES).contains(&frame.len()) {
        return Decision::Bad;
    }
    let (Some(destination), Some(source)) = (MacAddr::from_slice(frame), MacAddr::from_slice(&frame[6..])) else {
        return Decision::Bad;
    };
    if !source.is_valid_source() {
        return Decision::Bad;
    }
    // Learning may be refused (a full table); the frame is forwarded all the same.
    table.learn(source, from, now);
    if destination.is_group() {
        return Decision::Flood;
    }
    match table.lookup(destination, now) {
        Some(port) if port == from => Decision::Filter,
        Some(port) => Decision::To(port),
        None => Decision::Flood,
    }
    // LAB 7 STUB: let _ = (table, from, frame, now, MIN_FRAME_BYTES..=MAX_FRAME_BYTES, MacAddr::from_slice);
    // LAB 7 STUB: todo!("lab 7: check the frame, learn its source, then flood, filter or forward it: forward::decide")
    // LAB 7 END
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0xa];
    const B: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0xb];

    fn frame(dst: [u8; 6], src: [u8; 6], len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len.max(12)];
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f.truncate(len);
        f
    }

    fn table() -> MacTable {
        MacTable::new(64, 64, Duration::from_secs(300))
    }

    #[test]
    fn unknown_destinations_flood_and_known_ones_go_to_their_port() {
        let mut t = table();
        let now = Duration::ZERO;
        assert_eq!(decide(&mut t, PortId(1), &frame(B, A, 60), now), Decision::Flood);
        assert_eq!(decide(&mut t, PortId(2), &frame(A, B, 60), now), Decision::To(PortId(1)));
        assert_eq!(decide(&mut t, PortId(1), &frame(B, A, 60), now), Decision::To(PortId(2)));
    }

    #[test]
    fn broadcast_floods_even_when_everyone_is_known() {
        let mut t = table();
        decide(&mut t, PortId(2), &frame(A, B, 60), Duration::ZERO);
        assert_eq!(decide(&mut t, PortId(1), &frame([0xff; 6], A, 60), Duration::ZERO), Decision::Flood);
        assert_eq!(decide(&mut t, PortId(1), &frame([0x33, 0x33, 0, 0, 0, 1], A, 60), Duration::ZERO), Decision::Flood);
    }

    #[test]
    fn a_frame_for_a_host_on_its_own_port_is_filtered() {
        let mut t = table();
        decide(&mut t, PortId(1), &frame(B, A, 60), Duration::ZERO);
        decide(&mut t, PortId(1), &frame(A, B, 60), Duration::ZERO);
        assert_eq!(decide(&mut t, PortId(1), &frame(B, A, 60), Duration::ZERO), Decision::Filter);
    }

    #[test]
    fn hostile_bad_lengths_and_sources_are_dropped_and_teach_nothing() {
        let mut t = table();
        for f in [frame(B, A, 13), frame(B, A, 0), frame(B, A, 1515), frame(B, A, 65_536), frame(B, [0xff; 6], 60), frame(B, [0; 6], 60), frame(B, [0x01, 0, 0x5e, 0, 0, 1], 60)] {
            assert_eq!(decide(&mut t, PortId(1), &f, Duration::ZERO), Decision::Bad, "{} bytes", f.len());
        }
        assert!(t.is_empty());
        assert_eq!(decide(&mut t, PortId(1), &frame(B, A, 14), Duration::ZERO), Decision::Flood, "a bare header is a frame");
        assert_eq!(decide(&mut t, PortId(1), &frame(B, A, 1514), Duration::ZERO), Decision::Flood);
    }
}
