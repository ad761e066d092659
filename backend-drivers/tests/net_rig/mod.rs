//! The network device's test rig: netfront and netback in one process, on simulated
//! guest memory, with an in-memory network port instead of a switch (no KVM).
//!
//! As in `split_driver.rs`, only the hardware links are simulated: the doorbells are the
//! backend's eventfds written directly (KVM's ioeventfd would write them), the upcalls
//! the irqfds read directly. The port is two crossbeam channels and an eventfd: the
//! test plays the network on the other end ([`Network`]).

#![allow(dead_code)] // each test file uses a different subset

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backend_drivers::event_channel::GuestNotifier;
use backend_drivers::events::{DeviceEvent, DeviceEventSink};
use backend_drivers::frame_port::{Frame, FramePort};
use backend_drivers::grant_table::GrantTable;
use backend_drivers::guest_page::GuestPage;
use backend_drivers::net::thread::{self, NetDoorbells, NetHandle};
use backend_drivers::net::{NetBackend, NetPositions, NetWiring};
use backend_drivers::runner::NotifyPolicy;
use backend_drivers::GuestMemory;
use crossbeam_channel::{Receiver, Sender};
use frontend_drivers::grant_table::GrantTableFront;
use frontend_drivers::net::{NetBuffer, NetFront};
use frontend_drivers::Doorbell;
use pv_abi::addr::{FrameRange, PseudoFrame, PseudoPhys};
use pv_abi::event_channel::{NET_RX_CHANNEL, NET_TX_CHANNEL};
use pv_abi::layout::{GRANT_TABLE_GPA, NET_RX_RING_GPA, NET_TX_RING_GPA, SHARED_INFO_GPA};
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub const MEM: u64 = 8 << 20;
/// Buffer frames live above the "reserved" first MiB, as in a real guest.
pub const FIRST_DATA_FRAME: u64 = 0x100;
/// Transmit and receive buffers of the test's frontend.
pub const TX: usize = 16;
pub const RX: usize = 32;
/// Grant entries the network frontend gets from the shared table.
pub const NET_GRANTS: u32 = 64;
/// A test that waits longer than this has found a lost wake-up.
pub const WAIT_LIMIT: Duration = Duration::from_secs(20);

/// The simulated doorbell: writes the backend's eventfd, as KVM's ioeventfd would.
pub struct EventFdDoorbell(pub EventFd);
impl Doorbell for EventFdDoorbell {
    fn ring(&self) {
        self.0.write(1).unwrap();
    }
}

/// Collects the backend's events.
#[derive(Default)]
pub struct Collected(pub Mutex<Vec<DeviceEvent>>);
impl DeviceEventSink for Collected {
    fn enabled(&self) -> bool {
        true
    }
    fn record(&self, e: DeviceEvent) {
        self.0.lock().unwrap().push(e);
    }
}

/// The backend's end of the in-memory port.
pub struct ChannelPort {
    to_network: Sender<Frame>,
    from_network: Receiver<Frame>,
    ready: EventFd,
}

impl FramePort for ChannelPort {
    fn transmit(&self, frame: &[u8]) {
        let _ = self.to_network.send(frame.to_vec());
    }
    fn receive(&self) -> Option<Frame> {
        self.from_network.try_recv().ok()
    }
    fn ready(&self) -> &EventFd {
        &self.ready
    }
}

/// The test's end: what the guest sent, and a way to send it frames.
pub struct Network {
    pub sent: Receiver<Frame>,
    inject: Sender<Frame>,
    ready: EventFd,
}

impl Network {
    /// Queues a frame for the guest and signals the port's `ready`, as a switch would.
    pub fn inject(&self, frame: Frame) {
        self.inject.send(frame).unwrap();
        self.ready.write(1).unwrap();
    }

    /// The next frame the guest sent, waiting for it.
    pub fn next_sent(&self) -> Frame {
        self.sent.recv_timeout(WAIT_LIMIT).expect("the guest's frame never reached the network")
    }
}

pub fn port_pair() -> (ChannelPort, Network) {
    let (to_network, sent) = crossbeam_channel::unbounded();
    let (inject, from_network) = crossbeam_channel::unbounded();
    let ready = EventFd::new(EFD_NONBLOCK).unwrap();
    let port = ChannelPort { to_network, from_network, ready: ready.try_clone().unwrap() };
    (port, Network { sent, inject, ready })
}

pub fn memory() -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(0), MEM as usize)]).unwrap()
}

pub fn page(m: &GuestMemory, gpa: u64) -> GuestPage {
    GuestPage::new(m.clone(), PseudoPhys::new(gpa)).unwrap()
}

pub fn data_frame(i: u64) -> PseudoFrame {
    PseudoFrame::new(FIRST_DATA_FRAME + i)
}

/// An Ethernet-shaped frame of `len` bytes whose every byte depends on `seed`.
pub fn frame(seed: u32, len: usize) -> Frame {
    (0..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed.wrapping_mul(7)) as u8).collect()
}

/// Everything on the host side of one network device.
pub struct Host {
    pub network: Network,
    pub events: Arc<Collected>,
    pub tx_doorbell: EventFd,
    pub rx_doorbell: EventFd,
    pub tx_irq: EventFd,
    pub rx_irq: EventFd,
}

/// A backend on `m` (not yet on a thread) and the host's ends of its links.
pub fn backend(m: &GuestMemory, policy: NotifyPolicy) -> (NetBackend, Host) {
    backend_at(m, policy, NetPositions::default())
}

/// [`backend`], attached to rings that stand at `start` (a restored guest's).
pub fn backend_at(m: &GuestMemory, policy: NotifyPolicy, start: NetPositions) -> (NetBackend, Host) {
    let (port, network) = port_pair();
    let events = Arc::new(Collected::default());
    let tx_irq = EventFd::new(EFD_NONBLOCK).unwrap();
    let rx_irq = EventFd::new(EFD_NONBLOCK).unwrap();
    let usable = FrameRange { start: data_frame(0), end: PseudoFrame::new(MEM / 4096) };
    let wiring = NetWiring {
        tx_ring: page(m, NET_TX_RING_GPA),
        rx_ring: page(m, NET_RX_RING_GPA),
        grants: GrantTable::new(m.clone(), PseudoPhys::new(GRANT_TABLE_GPA), usable),
        port: Box::new(port),
        tx_notifier: GuestNotifier::new(m.clone(), PseudoPhys::new(SHARED_INFO_GPA), NET_TX_CHANNEL, tx_irq.try_clone().unwrap()).unwrap(),
        rx_notifier: GuestNotifier::new(m.clone(), PseudoPhys::new(SHARED_INFO_GPA), NET_RX_CHANNEL, rx_irq.try_clone().unwrap()).unwrap(),
        events: events.clone(),
        notify_policy: policy,
    };
    let host = Host {
        network,
        events,
        tx_doorbell: EventFd::new(EFD_NONBLOCK).unwrap(),
        rx_doorbell: EventFd::new(EFD_NONBLOCK).unwrap(),
        tx_irq,
        rx_irq,
    };
    (NetBackend::attach_at(wiring, start), host)
}

/// The backend on its own thread, started.
pub fn spawn(backend: NetBackend, host: &Host) -> NetHandle {
    let doorbells = NetDoorbells { tx: host.tx_doorbell.try_clone().unwrap(), rx: host.rx_doorbell.try_clone().unwrap() };
    let handle = thread::spawn(backend, doorbells, None).unwrap();
    handle.start();
    handle
}

pub type Front = NetFront<GuestPage, GuestPage, GuestPage, EventFdDoorbell, TX, RX>;

/// The guest's grant table, as the kernel would split it: block keeps the low entries,
/// the network frontend gets the top [`NET_GRANTS`].
pub fn net_grants(m: &GuestMemory) -> GrantTableFront<GuestPage> {
    let mut block = GrantTableFront::new(core::array::from_fn(|i| page(m, GRANT_TABLE_GPA + i as u64 * 4096)));
    block.split_off(NET_GRANTS).unwrap()
}

/// The guest's frontend; tx buffers are data frames 0..TX, rx buffers the next RX.
pub fn front(m: &GuestMemory, host: &Host) -> Front {
    let buffer = |i: u64| NetBuffer { frame: data_frame(i), page: page(m, data_frame(i).checked_address().unwrap().raw()) };
    let tx_buffers = std::array::from_fn(|i| buffer(i as u64));
    let rx_buffers = std::array::from_fn(|i| buffer((TX + i) as u64));
    NetFront::new(
        page(m, NET_TX_RING_GPA),
        page(m, NET_RX_RING_GPA),
        net_grants(m),
        tx_buffers,
        rx_buffers,
        EventFdDoorbell(host.tx_doorbell.try_clone().unwrap()),
        EventFdDoorbell(host.rx_doorbell.try_clone().unwrap()),
    )
}

/// The frontend a ring-3 network task makes: every buffer granted once, up front (as
/// the kernel does before lending them), and the references used for good.
pub fn front_with_persistent_grants(m: &GuestMemory, host: &Host) -> Front {
    let buffer = |i: u64| NetBuffer { frame: data_frame(i), page: page(m, data_frame(i).checked_address().unwrap().raw()) };
    let mut grants = net_grants(m);
    let tx_grants = std::array::from_fn(|i| grants.grant(data_frame(i as u64), true).unwrap());
    let rx_grants = std::array::from_fn(|i| grants.grant(data_frame((TX + i) as u64), false).unwrap());
    NetFront::with_persistent_grants(
        page(m, NET_TX_RING_GPA),
        page(m, NET_RX_RING_GPA),
        tx_grants,
        rx_grants,
        std::array::from_fn(|i| buffer(i as u64)),
        std::array::from_fn(|i| buffer((TX + i) as u64)),
        EventFdDoorbell(host.tx_doorbell.try_clone().unwrap()),
        EventFdDoorbell(host.rx_doorbell.try_clone().unwrap()),
    )
}

/// Waits for the next frame the frontend receives, sleeping on the rx upcall.
pub fn receive(front: &mut Front, host: &Host) -> Frame {
    let start = Instant::now();
    let mut buf = [0u8; 1514];
    loop {
        if let Some(len) = front.receive_into(&mut buf).unwrap() {
            return buf[..len].to_vec();
        }
        if !front.rearm_rx() {
            while host.rx_irq.read().is_err() {
                assert!(start.elapsed() < WAIT_LIMIT, "no frame arrived: a notification was lost");
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
}

/// Sends a frame, waiting (on the tx upcall) for a free buffer if all are in flight.
pub fn transmit(front: &mut Front, host: &Host, frame: &[u8]) {
    let start = Instant::now();
    loop {
        match front.transmit(frame) {
            Ok(()) => return,
            Err(frontend_drivers::net::NetError::TxBusy) => {
                if !front.rearm_tx() {
                    while host.tx_irq.read().is_err() {
                        assert!(start.elapsed() < WAIT_LIMIT, "no transmit completed: a notification was lost");
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
            }
            Err(e) => panic!("transmit failed: {e}"),
        }
    }
}

/// Polls `f` until it returns Some, failing the test after WAIT_LIMIT.
pub fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < WAIT_LIMIT, "timed out waiting for the backend");
        std::thread::sleep(Duration::from_micros(100));
    }
}
