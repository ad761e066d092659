//! A virtual Ethernet switch: the L2 learning bridge that joins hv's guests to each
//! other and to the host, as Xen's dom0 bridge joins its guests' netbacks.
//!
//! ## Where it sits
//!
//! ```text
//!  guest 0                   guest 1                   host network namespace
//!  netfront ═ring═ netback   netfront ═ring═ netback   kernel's IP stack
//!                    │                         │            │ (TAP device)
//!               SwitchPort                SwitchPort      TapPort thread (tap.rs)
//!                    │                         │            │
//!                    └──────────── Switch ─────┴── SwitchPort
//!                          MAC table: address → port
//! ```
//!
//! In Xen, each guest's netfront talks to a netback in dom0 (or a driver domain); the
//! netback shows up there as a network interface `vifN.0`, and dom0's Linux bridge
//! joins those interfaces, and the physical NIC, into one Ethernet. hv does the same
//! in one process: each netback holds a [`SwitchPort`] (a
//! [`FramePort`](crate::frame_port::FramePort)), and so does the thread that serves a
//! host TAP device ([`tap`]).
//!
//! ## What a learning bridge does
//!
//! Ethernet hosts simply send frames to a destination address and expect the network to
//! find it. A switch finds it by watching where frames come *from* (see [`mac_table`]
//! for learning, ageing and the table's bounds, and [`forward`] for the decision):
//! broadcasts and frames for unknown hosts go to every port but the sender's, frames for
//! known hosts to their port only, and nothing goes back out the port it came from. So a
//! freshly started network floods until each host has said something, and then settles
//! into sending each frame to one port. ARP relies on exactly this: the "who has
//! 10.0.0.2?" request is a broadcast, and its answer, sent to the asker's address,
//! already finds a learned entry.
//!
//! ## Forwarding on the sender's thread
//!
//! There is no switch thread. [`FramePort::transmit`](crate::frame_port::FramePort::transmit)
//! decides and copies the frame into the receiving ports' queues right away, on the
//! thread that sent it (a netback's thread, the TAP thread), under one lock, and the
//! receiver's eventfd wakes the receiver. Why:
//! - **Latency**: a frame crosses one thread boundary (sender → receiver) instead of two
//!   (sender → switch thread → receiver); each wake-up is microseconds on a loaded host.
//! - **Nothing to wait for**: forwarding never blocks (a full queue drops), so doing it
//!   inline cannot stall the sender for long: a table lookup and one copy per receiver.
//! - **Less to confine**: no extra thread kind needing its own seccomp filter.
//!
//! The cost: the sender pays for copies to every port on a flood, and one lock
//! serializes all forwarding. With a handful of ports and 1514-byte frames that is a
//! few hundred nanoseconds per frame; a switch with hundreds of ports would want a
//! lock per port and a read-mostly table. Linux's bridge makes the same choice: it
//! forwards in the receiving interface's softirq, on whichever CPU took the frame.
//!
//! ## Bounded everywhere
//!
//! Guests are hostile (hv's rule), and they choose every byte of every frame, their
//! source addresses included. So: frames are checked for length before anything
//! ([`forward`]); the MAC table is bounded overall and per port and refuses rather than
//! evicts when full ([`mac_table`]); each port's queue holds at most
//! [`SwitchConfig::queue_frames`] frames and drops what does not fit, counting it
//! ([`port`]). Memory therefore stays below `ports × queue_frames × 1514` bytes of
//! frames plus the table, whatever the guests send. The counters ([`Switch::stats`]) are
//! what `--stats` prints: a drop is never silent.

pub mod clock;
pub mod mac_table;
pub mod forward;
pub mod port;
pub mod tap;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use clock::{Clock, SystemClock};
use forward::Decision;
use mac_table::{MacTable, MacTableStats, PortId};
use port::{PortQueue, PortStats, Received};
pub use port::SwitchPort;

/// How big a switch's queues and table are, and how long it remembers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwitchConfig {
    /// Frames each port's queue holds (at least one); a frame for a full queue is
    /// dropped and counted.
    pub queue_frames: usize,
    /// How long a learned address is believed without a new frame from it.
    pub ageing: Duration,
    /// Entries the MAC table holds in all.
    pub mac_capacity: usize,
    /// Entries any one port may hold.
    pub macs_per_port: usize,
}

impl SwitchConfig {
    /// 256 frames a port: at hv's rates a guest that stops taking frames for a few
    /// milliseconds loses none, and a stuck one pins at most ~380 KiB.
    pub const DEFAULT_QUEUE_FRAMES: usize = 256;
    /// 802.1D's default ageing time, and Linux's bridge's.
    pub const DEFAULT_AGEING: Duration = Duration::from_secs(300);
    /// Far more hosts than hv's guests and a TAP bring, small enough to scan quickly.
    pub const DEFAULT_MAC_CAPACITY: usize = 1024;
    /// A guest has one address; a TAP port may have a small LAN behind it.
    pub const DEFAULT_MACS_PER_PORT: usize = 256;
}

impl Default for SwitchConfig {
    fn default() -> Self {
        SwitchConfig {
            queue_frames: Self::DEFAULT_QUEUE_FRAMES,
            ageing: Self::DEFAULT_AGEING,
            mac_capacity: Self::DEFAULT_MAC_CAPACITY,
            macs_per_port: Self::DEFAULT_MACS_PER_PORT,
        }
    }
}

/// A virtual L2 switch. Cloning gives another handle to the same switch.
#[derive(Clone)]
pub struct Switch {
    fabric: Arc<Fabric>,
}

/// What every port of a switch shares: the table, the ports' queues, the clock.
pub(crate) struct Fabric {
    config: SwitchConfig,
    clock: Arc<dyn Clock>,
    state: Mutex<FabricState>,
}

struct FabricState {
    table: MacTable,
    ports: BTreeMap<PortId, Arc<PortQueue>>,
    next_port: u64,
    /// The final counters of ports that have left, the last [`DEPARTED_KEPT`] of them.
    departed: Vec<PortReport>,
}

/// How many departed ports' final counters the switch keeps (a guest's port leaves with
/// its guest; `--stats` at the end still shows what it did).
const DEPARTED_KEPT: usize = 64;

/// One port's line in [`SwitchStats`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortReport {
    /// The port's number.
    pub id: PortId,
    /// Its name.
    pub name: String,
    /// Its counters.
    pub stats: PortStats,
    /// Frames waiting in its queue now.
    pub queued: usize,
}

/// A switch's counters: each port's (those still attached), and the MAC table's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwitchStats {
    /// The ports, in the order they were added.
    pub ports: Vec<PortReport>,
    /// Ports that have left (their owner ended), with their final counters, oldest first.
    pub departed: Vec<PortReport>,
    /// The MAC table's counters.
    pub table: MacTableStats,
}

impl Switch {
    /// A switch with no ports, on the host's monotonic clock.
    pub fn new(config: SwitchConfig) -> Switch {
        Switch::with_clock(config, Arc::new(SystemClock::new()))
    }

    /// A switch that reads the time from `clock` (tests pass a
    /// [`clock::ManualClock`]).
    pub fn with_clock(config: SwitchConfig, clock: Arc<dyn Clock>) -> Switch {
        let table = MacTable::new(config.mac_capacity, config.macs_per_port, config.ageing);
        let state = FabricState { table, ports: BTreeMap::new(), next_port: 0, departed: Vec::new() };
        Switch { fabric: Arc::new(Fabric { config, clock, state: Mutex::new(state) }) }
    }

    /// Adds a port named `name` (a name for people: `guest0`, `tap:hvtap0`; it need not
    /// be unique). Fails only if the port's eventfd cannot be created.
    pub fn add_port(&self, name: impl Into<String>) -> std::io::Result<SwitchPort> {
        let queue = Arc::new(PortQueue::new(name.into(), self.fabric.config.queue_frames)?);
        let mut state = self.fabric.lock();
        let id = PortId(state.next_port);
        state.next_port += 1;
        state.ports.insert(id, queue.clone());
        drop(state);
        Ok(SwitchPort::new(id, queue, self.fabric.clone()))
    }

    /// The counters of every attached port and of the MAC table.
    pub fn stats(&self) -> SwitchStats {
        let state = self.fabric.lock();
        let ports = state.ports.iter().map(|(id, q)| PortReport { id: *id, name: q.name().to_string(), stats: q.stats(), queued: q.len() }).collect();
        SwitchStats { ports, departed: state.departed.clone(), table: state.table.stats() }
    }
}

impl Fabric {
    fn lock(&self) -> MutexGuard<'_, FabricState> {
        // Nothing under this lock panics on frame contents; if a bug did, the table and
        // queues are still consistent enough to go on forwarding.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Forwards `frame`, received on port `from`, to where [`forward::decide`] says.
    pub(crate) fn forward(&self, from: PortId, frame: &[u8]) {
        let now = self.clock.now();
        let mut state = self.lock();
        let FabricState { table, ports, .. } = &mut *state;
        // A port being dropped on another thread may still send a last frame: it goes
        // nowhere.
        let Some(sender) = ports.get(&from) else { return };
        let received = match forward::decide(table, from, frame, now) {
            Decision::Bad => Received::Bad,
            Decision::Filter => Received::Filtered,
            Decision::To(port) => match ports.get(&port) {
                Some(queue) => {
                    queue.offer(frame);
                    Received::Forwarded
                }
                // Not possible while removal forgets the port's entries under this same
                // lock; flooding would be the safe answer if it ever were.
                None => flood(ports, from, frame),
            },
            Decision::Flood => flood(ports, from, frame),
        };
        sender.count_received(frame.len(), received);
    }

    /// Removes port `id`: its queue goes, and so does every address learned on it.
    pub(crate) fn detach(&self, id: PortId) {
        let mut state = self.lock();
        if let Some(q) = state.ports.remove(&id) {
            if state.departed.len() == DEPARTED_KEPT {
                state.departed.remove(0);
            }
            state.departed.push(PortReport { id, name: q.name().to_string(), stats: q.stats(), queued: 0 });
        }
        state.table.forget_port(id);
    }
}

/// Offers `frame` to every port but `from`.
fn flood(ports: &BTreeMap<PortId, Arc<PortQueue>>, from: PortId, frame: &[u8]) -> Received {
    for (_, queue) in ports.iter().filter(|(id, _)| **id != from) {
        queue.offer(frame);
    }
    Received::Flooded
}

impl fmt::Display for SwitchStats {
    /// One line per port and one for the table, as `--stats` prints them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in self.ports.iter().chain(&self.departed) {
            let s = &p.stats;
            writeln!(
                f,
                "switch port {} ({}): from it {} frames {} bytes ({} flooded, {} filtered, {} bad); to it {} frames {} bytes, {} dropped (queue full), {} queued",
                p.id.0, p.name, s.rx_frames, s.rx_bytes, s.flooded, s.filtered, s.dropped_bad, s.tx_frames, s.tx_bytes, s.dropped_full, p.queued
            )?;
        }
        let t = &self.table;
        write!(
            f,
            "switch MAC table: {} entries; {} learned, {} moved, {} aged out, {} refused (table full), {} refused (port's share full)",
            t.entries, t.learned, t.moved, t.aged_out, t.refused_table_full, t.refused_port_full
        )
    }
}

#[cfg(test)]
mod tests;
