//! The MAC table: which port each Ethernet address was last seen on, and for how long
//! that is worth believing.
//!
//! A learning switch is never told where its hosts are. It watches: a frame that
//! *arrives* on port 3 *from* address `52:54:00:00:00:02` proves that this address can
//! be reached through port 3, so the switch writes that down ("learning") and from then
//! on sends frames *for* that address to port 3 only instead of to every port
//! ("flooding"). This is the backward-learning algorithm of IEEE 802.1D, the one Linux's
//! bridge and every hardware switch run.
//!
//! **Ageing.** What was learned goes stale: a guest shuts down, a VM migrates and comes
//! back on another port, a NIC is swapped. An entry not confirmed by a new frame for
//! the ageing time (802.1D's default, and Linux's, is 300 s) is forgotten, so the next
//! frame for that address is flooded again and reaches the host wherever it now is.
//! Entries are aged lazily, when looked at, instead of by a timer thread: a lookup that
//! finds an expired entry treats it as unknown and removes it.
//!
//! **A bounded table.** Every frame's source address is chosen by its sender, so a
//! hostile guest can send frames from millions of made-up addresses (the classic "MAC
//! flooding" attack). Two limits keep that harmless:
//! - the table holds at most `capacity` entries, and each port at most `per_port`,
//!   so one port cannot take the room other ports' hosts need;
//! - when a limit is reached the switch **refuses to learn** the new address (after
//!   first dropping entries that have expired) rather than evicting the oldest one.
//!   Evicting would let the attacker push out the real hosts' entries, after which
//!   their traffic is flooded to every port, the attacker's included: the attack
//!   would turn the switch into a hub and let the attacker read other guests'
//!   frames. Refusing costs only efficiency: a frame for an address not learned is
//!   flooded, which still delivers it.
//!
//! Dropping expired entries when full is itself bounded: after a sweep, the table knows
//! the earliest moment any remaining entry can expire and does not sweep again before
//! it, so a flood of new addresses costs one map lookup per frame, not a scan.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

/// An Ethernet (MAC-48) address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The broadcast address, `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// The address in the first six bytes of `bytes`, if there are six.
    pub fn from_slice(bytes: &[u8]) -> Option<MacAddr> {
        Some(MacAddr(bytes.get(..6)?.try_into().ok()?))
    }

    /// A group address (multicast, broadcast included): the lowest bit of the first
    /// byte, the first bit on the wire, is the individual/group bit.
    pub fn is_group(self) -> bool {
        self.0[0] & 1 != 0
    }

    /// An address that can be the source of a frame: an individual address other than
    /// all zeros (what Linux calls `is_valid_ether_addr`).
    pub fn is_valid_source(self) -> bool {
        !self.is_group() && self.0 != [0; 6]
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A port's number on its switch: given once by `Switch::add_port`, never reused, so an
/// entry learned on a port that has gone can never point at a newer port by mistake.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct PortId(pub u64);

/// What [`MacTable::learn`] did with an address.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Learned {
    /// A new entry.
    New,
    /// The entry was already there, on this port; its age starts again.
    Refreshed,
    /// The address was on another port and is now on this one (a host that moved, or
    /// one host pretending to be another).
    Moved,
    /// The table is full: not learned (frames for the address are flooded).
    RefusedTableFull,
    /// The port holds its share of entries already: not learned.
    RefusedPortFull,
}

/// The table's own counters, for `--stats`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct MacTableStats {
    /// Entries now in the table (expired ones not yet noticed included).
    pub entries: usize,
    /// Addresses learned (new entries).
    pub learned: u64,
    /// Addresses that moved from one port to another.
    pub moved: u64,
    /// Entries forgotten because they aged out.
    pub aged_out: u64,
    /// Addresses not learned because the table was full.
    pub refused_table_full: u64,
    /// Addresses not learned because their port held its share.
    pub refused_port_full: u64,
}

#[derive(Clone, Copy)]
struct Entry {
    port: PortId,
    last_seen: Duration,
}

/// Where each address was last seen, bounded and aged.
pub struct MacTable {
    entries: HashMap<MacAddr, Entry>,
    per_port_count: HashMap<PortId, usize>,
    capacity: usize,
    per_port: usize,
    ageing: Duration,
    /// No entry can expire before this moment (a lower bound): a full table is swept
    /// again only once it has passed.
    no_expiry_before: Duration,
    stats: MacTableStats,
}

impl MacTable {
    /// An empty table of at most `capacity` entries, at most `per_port` of them for any
    /// one port, forgetting an entry `ageing` after it was last confirmed.
    pub fn new(capacity: usize, per_port: usize, ageing: Duration) -> Self {
        MacTable {
            entries: HashMap::new(),
            per_port_count: HashMap::new(),
            capacity,
            per_port: per_port.min(capacity),
            ageing,
            no_expiry_before: Duration::ZERO,
            stats: MacTableStats::default(),
        }
    }

    fn expired(&self, entry: Entry, now: Duration) -> bool {
        now.saturating_sub(entry.last_seen) >= self.ageing
    }

    /// Notes that a frame from `mac` arrived on `port` at `now`. The caller has checked
    /// that `mac` is a valid source ([`MacAddr::is_valid_source`]).
    pub fn learn(&mut self, mac: MacAddr, port: PortId, now: Duration) -> Learned {
        // LAB 7 BEGIN: learning: refresh, move, or add the address, within the table's bounds
        if let Some(entry) = self.entries.get_mut(&mac) {
            if entry.port == port {
                entry.last_seen = now;
                return Learned::Refreshed;
            }
            // On another port (or an expired entry there): take it away from that port
            // first; it is learned anew below, within this port's share.
            let old = entry.port;
            self.remove(mac, old);
            if self.has_room_for(port, now) {
                self.insert(mac, port, now);
                self.stats.moved += 1;
                return Learned::Moved;
            }
            return self.refusal(port);
        }
        if !self.has_room_for(port, now) {
            return self.refusal(port);
        }
        self.insert(mac, port, now);
        self.stats.learned += 1;
        Learned::New
        // LAB 7 STUB: let _ = (mac, port, now, Self::has_room_for, Self::insert, Self::remove, Self::refusal);
        // LAB 7 STUB: todo!("lab 7: learn the source address: refresh it, move it to this port, or add it if the table and the port have room: MacTable::learn")
        // LAB 7 END
    }

    /// The port `mac` was last seen on, if it was seen there less than the ageing time
    /// ago. An expired entry is removed and reads as unknown.
    pub fn lookup(&mut self, mac: MacAddr, now: Duration) -> Option<PortId> {
        // LAB 7 BEGIN: ageing: an entry older than the ageing time is forgotten when looked at
        let entry = *self.entries.get(&mac)?;
        if self.expired(entry, now) {
            self.remove(mac, entry.port);
            self.stats.aged_out += 1;
            return None;
        }
        Some(entry.port)
        // LAB 7 STUB: let _ = (mac, now, Self::expired);
        // LAB 7 STUB: todo!("lab 7: find the address's port unless its entry has aged out (then forget it): MacTable::lookup")
        // LAB 7 END
    }

    /// Forgets every address learned on `port` (the port was removed). Bounded by the
    /// table's capacity.
    pub fn forget_port(&mut self, port: PortId) {
        self.entries.retain(|_, entry| entry.port != port);
        self.per_port_count.remove(&port);
    }

    /// The table's counters.
    pub fn stats(&self) -> MacTableStats {
        MacTableStats { entries: self.entries.len(), ..self.stats }
    }

    /// Entries now in the table.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn refusal(&mut self, port: PortId) -> Learned {
        if self.entries.len() >= self.capacity {
            self.stats.refused_table_full += 1;
            Learned::RefusedTableFull
        } else {
            debug_assert!(self.count_of(port) >= self.per_port);
            self.stats.refused_port_full += 1;
            Learned::RefusedPortFull
        }
    }

    fn count_of(&self, port: PortId) -> usize {
        self.per_port_count.get(&port).copied().unwrap_or(0)
    }

    /// Whether one more entry for `port` fits, after dropping expired entries if a
    /// limit is reached and one may have expired.
    fn has_room_for(&mut self, port: PortId, now: Duration) -> bool {
        let fits = |t: &Self| t.entries.len() < t.capacity && t.count_of(port) < t.per_port;
        if fits(self) {
            return true;
        }
        if now >= self.no_expiry_before {
            self.sweep(now);
        }
        fits(self)
    }

    /// Drops every expired entry and notes when the next one can expire at the earliest.
    fn sweep(&mut self, now: Duration) {
        let ageing = self.ageing;
        let before = self.entries.len();
        self.entries.retain(|_, entry| now.saturating_sub(entry.last_seen) < ageing);
        self.stats.aged_out += (before - self.entries.len()) as u64;
        self.per_port_count.clear();
        for entry in self.entries.values() {
            *self.per_port_count.entry(entry.port).or_insert(0) += 1;
        }
        // Entries learned or refreshed later are seen later still, so the oldest one
        // left is the first that can expire.
        let oldest = self.entries.values().map(|e| e.last_seen).min();
        self.no_expiry_before = oldest.map_or(now, |seen| seen.saturating_add(ageing));
    }

    fn insert(&mut self, mac: MacAddr, port: PortId, now: Duration) {
        self.entries.insert(mac, Entry { port, last_seen: now });
        *self.per_port_count.entry(port).or_insert(0) += 1;
    }

    fn remove(&mut self, mac: MacAddr, port: PortId) {
        if self.entries.remove(&mac).is_some() {
            if let Some(count) = self.per_port_count.get_mut(&port) {
                *count = count.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGEING: Duration = Duration::from_secs(300);

    fn mac(n: u32) -> MacAddr {
        let b = n.to_be_bytes();
        MacAddr([0x52, 0x54, b[0], b[1], b[2], b[3]])
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_learned_address_is_found_on_its_port_until_it_ages_out() {
        let mut t = MacTable::new(16, 16, AGEING);
        assert_eq!(t.learn(mac(1), PortId(3), secs(0)), Learned::New);
        assert_eq!(t.lookup(mac(1), secs(299)), Some(PortId(3)));
        assert_eq!(t.lookup(mac(1), secs(300)), None, "an entry is forgotten once it is the ageing time old");
        assert_eq!(t.stats().aged_out, 1);
        assert!(t.is_empty());
    }

    #[test]
    fn a_new_frame_from_the_address_starts_its_age_again() {
        let mut t = MacTable::new(16, 16, AGEING);
        t.learn(mac(1), PortId(3), secs(0));
        assert_eq!(t.learn(mac(1), PortId(3), secs(200)), Learned::Refreshed);
        assert_eq!(t.lookup(mac(1), secs(450)), Some(PortId(3)));
        assert_eq!(t.lookup(mac(1), secs(500)), None);
    }

    #[test]
    fn an_address_seen_on_another_port_moves_there() {
        let mut t = MacTable::new(16, 16, AGEING);
        t.learn(mac(1), PortId(1), secs(0));
        assert_eq!(t.learn(mac(1), PortId(2), secs(1)), Learned::Moved);
        assert_eq!(t.lookup(mac(1), secs(2)), Some(PortId(2)));
        assert_eq!(t.len(), 1);
        assert_eq!(t.stats().moved, 1);
    }

    #[test]
    fn forgetting_a_port_forgets_only_its_addresses() {
        let mut t = MacTable::new(16, 16, AGEING);
        t.learn(mac(1), PortId(1), secs(0));
        t.learn(mac(2), PortId(1), secs(0));
        t.learn(mac(3), PortId(2), secs(0));
        t.forget_port(PortId(1));
        assert_eq!(t.lookup(mac(1), secs(1)), None);
        assert_eq!(t.lookup(mac(3), secs(1)), Some(PortId(2)));
        // The port's share is free again (a new port with a reused number would start
        // from zero; ids are never reused, but the count must not leak either way).
        for n in 10..26 {
            t.learn(mac(n), PortId(1), secs(1));
        }
        assert_eq!(t.len(), 16);
    }

    #[test]
    fn hostile_a_full_table_refuses_new_addresses_and_keeps_the_ones_it_has() {
        let mut t = MacTable::new(4, 4, AGEING);
        for n in 0..4 {
            assert_eq!(t.learn(mac(n), PortId(1), secs(0)), Learned::New);
        }
        assert_eq!(t.learn(mac(99), PortId(2), secs(1)), Learned::RefusedTableFull);
        assert_eq!(t.lookup(mac(0), secs(1)), Some(PortId(1)), "refusing, not evicting: old entries stay");
        assert_eq!(t.lookup(mac(99), secs(1)), None);
        // Once the old entries expire, a full table makes room by dropping them.
        assert_eq!(t.learn(mac(99), PortId(2), secs(300)), Learned::New);
        assert_eq!(t.len(), 1);
        assert_eq!(t.stats().aged_out, 4);
    }

    #[test]
    fn hostile_one_port_cannot_take_the_room_of_the_others() {
        let mut t = MacTable::new(8, 2, AGEING);
        assert_eq!(t.learn(mac(1), PortId(1), secs(0)), Learned::New);
        assert_eq!(t.learn(mac(2), PortId(1), secs(0)), Learned::New);
        assert_eq!(t.learn(mac(3), PortId(1), secs(0)), Learned::RefusedPortFull);
        assert_eq!(t.learn(mac(4), PortId(2), secs(0)), Learned::New, "another port still learns");
        // Stealing an address into a full port is refused, and the stale entry is gone.
        assert_eq!(t.learn(mac(4), PortId(1), secs(1)), Learned::RefusedPortFull);
        assert_eq!(t.lookup(mac(4), secs(1)), None);
        assert_eq!(t.stats().refused_port_full, 2);
    }

    #[test]
    fn hostile_a_flood_of_random_sources_is_bounded_and_does_not_rescan_the_table_each_frame() {
        let mut t = MacTable::new(1024, 1024, AGEING);
        let mut refused = 0;
        for n in 0..100_000u32 {
            // One made-up address per frame, time moving a little.
            match t.learn(mac(n.wrapping_mul(2_654_435_761)), PortId(1), Duration::from_millis(u64::from(n))) {
                Learned::RefusedTableFull | Learned::RefusedPortFull => refused += 1,
                _ => {}
            }
            assert!(t.len() <= 1024);
        }
        assert_eq!(refused, 100_000 - 1024);
        // The first sweep found nothing expired and set the next one to 300 s after the
        // oldest entry: at 100 s of simulated time no second sweep happened.
        assert_eq!(t.no_expiry_before, AGEING);
    }

    #[test]
    fn group_and_zero_addresses_are_not_valid_sources() {
        assert!(!MacAddr::BROADCAST.is_valid_source());
        assert!(!MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]).is_valid_source());
        assert!(!MacAddr([0; 6]).is_valid_source());
        assert!(MacAddr([0x52, 0x54, 0, 0, 0, 1]).is_valid_source());
        assert_eq!(MacAddr([0x52, 0x54, 0, 0xab, 0, 1]).to_string(), "52:54:00:ab:00:01");
    }
}
