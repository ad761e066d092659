//! The network device's host side: netback for one VM, on a port the caller brings.
//!
//! What the other devices get from [`super::Devices::attach`], the network device gets
//! here, twice over: it has two rings, so two doorbells (ioeventfds on the transmit and
//! receive doorbell ports) and two upcalls (irqfds on GSIs routed to the upcall vector),
//! and one thread (`backend_drivers::net::thread`) that also sleeps on the port's
//! `ready` eventfd. Which network the port belongs to (a virtual switch, a TAP device,
//! a test's queues) is the caller's business: [`NetDevice::attach`] takes any
//! `FramePort`.
//!
//! `Vm::on_network` attaches it after [`super::Devices::attach`]
//! ([`super::Devices::attach_net`]), announces it in the boot-info page
//! ([`NetDevice::layout`]), starts it with the other devices, and stops it at the end.
//! Threaded serving only: a recorded or replayed run has no network.
//!
//! **Saving it.** A snapshot or a migration drains it ([`NetDevice::drain`]): transmit
//! requests are served, waiting frames go into posted buffers, and the backend freezes
//! (a frame from the network must not land in guest memory after the ring indices were
//! read) until [`NetDevice::thaw`]. What is saved ([`NetSaved`]) is the guest's identity
//! on the network and one index per ring. Frames the backend or its switch port still
//! hold are not saved: a restored guest has lost them, as a machine that stops loses
//! what its NIC had not yet delivered, and its TCP retransmits.

use std::sync::Arc;

use backend_drivers::event_channel::GuestNotifier;
use backend_drivers::frame_port::FramePort;
use backend_drivers::grant_table::GrantTable;
use backend_drivers::guest_page::GuestPage;
use backend_drivers::net::thread::{self, NetDoorbells, NetHandle};
use backend_drivers::net::{NetBackend, NetPositions, NetStats, NetWiring};
use backend_drivers::runner::DrainError;
use backend_drivers::runner::{NotifyPolicy, ThreadSetup};
use kvm_bindings::KvmIrqRouting;
use kvm_ioctls::{IoEventAddress, NoDatamatch};
use pv_abi::addr::PseudoPhys;
use pv_abi::event_channel::{doorbell_port, NET_RX_CHANNEL, NET_TX_CHANNEL};
use pv_abi::grant::grant_window;
use pv_abi::layout::{GRANT_TABLE_GPA, NET_RX_RING_GPA, NET_TX_RING_GPA};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{device_info, msi_route, DeviceError, FIRST_DEVICE_GSI, SHARED_INFO};
use crate::boot::NetLayout;
use crate::kvm::KvmVm;
use crate::sandbox::ThreadKind;
use crate::trace::Tracer;

/// The transmit ring's page (`NET_TX_RING_GPA`).
const TX_RING: PseudoPhys = PseudoPhys::new(NET_TX_RING_GPA);
/// The receive ring's page (`NET_RX_RING_GPA`).
const RX_RING: PseudoPhys = PseudoPhys::new(NET_RX_RING_GPA);
/// The device name in messages.
const NAME: &str = "net";
/// GSIs hv routes once the network device is attached: the console's, the block
/// device's (whether or not it has a disk), the balloon's, then transmit and receive.
const ROUTED_GSIS: u32 = 5;
const TX_GSI: u32 = FIRST_DEVICE_GSI + 3;
const RX_GSI: u32 = FIRST_DEVICE_GSI + 4;

/// Who the guest is on the network: announced in its boot-info page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// Its MAC address (locally administered unicast: `pv_abi::device::net::guest_mac`).
    pub mac: [u8; 6],
    /// Its IPv4 address.
    pub ipv4: [u8; 4],
    /// The prefix length of its network.
    pub prefix_len: u8,
    /// The host's (gateway's) address on that network, or all zeros.
    pub gateway: [u8; 4],
}

/// What a snapshot or a migration saves of the network device: who the guest is on the
/// network (its boot-info page says so too, but hv needs it before reading guest memory)
/// and where its two rings stood after the drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetSaved {
    /// The MAC address.
    pub mac: [u8; 6],
    /// The IPv4 address.
    pub ipv4: [u8; 4],
    /// The prefix length.
    pub prefix_len: u8,
    /// The gateway.
    pub gateway: [u8; 4],
    /// The transmit ring's index.
    pub tx: u32,
    /// The receive ring's index.
    pub rx: u32,
}

impl NetSaved {
    /// The guest's identity, checked as [`NetDevice::attach`] checks a new one (a saved
    /// state is untrusted input).
    pub fn config(&self) -> Result<NetConfig, String> {
        let config = NetConfig { mac: self.mac, ipv4: self.ipv4, prefix_len: self.prefix_len, gateway: self.gateway };
        config.check().map(|()| config)
    }

    /// Where the rings stood.
    pub fn positions(&self) -> NetPositions {
        NetPositions { tx: self.tx, rx: self.rx }
    }
}

impl NetConfig {
    /// Refuses an identity no guest should have: a MAC that is not locally administered
    /// unicast, a prefix longer than 32 bits.
    pub fn check(&self) -> Result<(), String> {
        if !pv_abi::device::net::is_local_unicast(self.mac) || self.prefix_len > 32 {
            return Err(format!(
                "network device: MAC {:02x?} is not locally administered unicast, or prefix /{} is longer than 32",
                self.mac, self.prefix_len
            ));
        }
        Ok(())
    }

    /// The address as people write it, with its prefix: `10.0.0.2/24`.
    pub fn address(&self) -> String {
        let [a, b, c, d] = self.ipv4;
        format!("{a}.{b}.{c}.{d}/{}", self.prefix_len)
    }

    /// Guest `index` (0-based) of a 10.0.0.0/24 network whose host is 10.0.0.1: address
    /// 10.0.0.(index + 2), MAC `guest_mac(index)`. `None` past the 253rd guest.
    pub fn nth_guest(index: u8) -> Option<NetConfig> {
        let host = index.checked_add(2).filter(|h| *h < 255)?;
        Some(NetConfig { mac: pv_abi::device::net::guest_mac(u32::from(index)), ipv4: [10, 0, 0, host], prefix_len: 24, gateway: [10, 0, 0, 1] })
    }
}

/// One VM's network device: its backend thread and what the guest is told.
pub struct NetDevice {
    handle: NetHandle,
    config: NetConfig,
}

impl NetDevice {
    /// Creates the device's doorbells and upcalls in `machine` and starts its backend
    /// thread on `port` (serving after [`NetDevice::start`]). With `seccomp`, the thread
    /// confines itself (`ThreadKind::NetBackend`) before it serves. Call it after
    /// [`super::Devices::attach`]: it sets the VM's interrupt routing again, with the
    /// network's two routes added to the console's and block device's. The backend's
    /// rings start at `start` (all zero for a new guest, the saved indices for a restored
    /// one).
    pub fn attach(
        machine: &KvmVm,
        port: Box<dyn FramePort>,
        config: NetConfig,
        start: NetPositions,
        tracer: &Tracer,
        policy: NotifyPolicy,
        seccomp: bool,
    ) -> Result<NetDevice, DeviceError> {
        if config.check().is_err() {
            return Err(DeviceError::NetConfig(config.mac, config.prefix_len));
        }
        let eventfd = || EventFd::new(EFD_NONBLOCK).map_err(|source| DeviceError::EventFd { device: NAME, source });
        let kvm_err = |what| move |source| DeviceError::Kvm { what, device: NAME, source };
        let entries = ROUTED_GSIS as usize;
        let mut routing = KvmIrqRouting::new(entries).map_err(|source| DeviceError::Routing { entries, source })?;
        for (slot, gsi) in routing.as_mut_slice().iter_mut().zip(FIRST_DEVICE_GSI..FIRST_DEVICE_GSI + ROUTED_GSIS) {
            *slot = msi_route(gsi);
        }
        machine.vm().set_gsi_routing(&routing).map_err(kvm_err("KVM_SET_GSI_ROUTING"))?;

        let memory = machine.ram().memory().clone();
        // One channel's doorbell (KVM signals it when the guest writes the port) and
        // notifier (its irqfd raises the upcall through `gsi`).
        let channel = |channel: u32, gsi: u32| -> Result<(EventFd, GuestNotifier), DeviceError> {
            let doorbell = eventfd()?;
            let port = u64::from(doorbell_port(channel));
            machine.vm().register_ioevent(&doorbell, &IoEventAddress::Pio(port), NoDatamatch).map_err(kvm_err("KVM_IOEVENTFD"))?;
            let irqfd = eventfd()?;
            machine.vm().register_irqfd(&irqfd, gsi).map_err(kvm_err("KVM_IRQFD"))?;
            Ok((doorbell, GuestNotifier::new(memory.clone(), SHARED_INFO, channel, irqfd)?))
        };
        let (tx, tx_notifier) = channel(NET_TX_CHANNEL, TX_GSI)?;
        let (rx, rx_notifier) = channel(NET_RX_CHANNEL, RX_GSI)?;
        let grants = GrantTable::new(memory.clone(), PseudoPhys::new(GRANT_TABLE_GPA), grant_window(machine.ram().size()));
        let wiring = NetWiring {
            tx_ring: GuestPage::new(memory.clone(), TX_RING)?,
            rx_ring: GuestPage::new(memory, RX_RING)?,
            grants,
            port,
            tx_notifier,
            rx_notifier,
            events: Arc::new(tracer.clone()),
            notify_policy: policy,
        };
        let setup = seccomp.then(|| Box::new(|| crate::sandbox::confine_current_thread(ThreadKind::NetBackend).map_err(|e| e.to_string())) as ThreadSetup);
        let handle = thread::spawn(NetBackend::attach_at(wiring, start), NetDoorbells { tx, rx }, setup)?;
        Ok(NetDevice { handle, config })
    }

    /// The device's block of the boot-info page: both rings, the MAC, the addresses.
    pub fn layout(&self) -> NetLayout {
        NetLayout {
            tx: device_info(TX_RING, NET_TX_CHANNEL),
            rx: device_info(RX_RING, NET_RX_CHANNEL),
            mac: self.config.mac,
            ipv4: self.config.ipv4,
            prefix_len: self.config.prefix_len,
            gateway: self.config.gateway,
        }
    }

    /// Lets the backend serve.
    pub fn start(&self) {
        self.handle.start();
    }

    /// The counters now (`None` if the thread has ended).
    pub fn stats(&self) -> Option<NetStats> {
        self.handle.stats()
    }

    /// Who the guest is on the network.
    pub fn config(&self) -> NetConfig {
        self.config
    }

    /// Serves what the guest published and freezes the backend until [`NetDevice::thaw`];
    /// returns what a snapshot saves. Call it with the guest paused.
    pub fn drain(&self) -> Result<NetSaved, DrainError> {
        let at = self.handle.drain()?;
        let c = self.config;
        Ok(NetSaved { mac: c.mac, ipv4: c.ipv4, prefix_len: c.prefix_len, gateway: c.gateway, tx: at.tx, rx: at.rx })
    }

    /// Lets a drained backend serve again.
    pub fn thaw(&self) {
        self.handle.thaw();
    }

    /// Stops the backend thread and returns its final counters.
    pub fn stop(self) -> Option<NetStats> {
        self.handle.stop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kvm::MemoryPlan;
    use backend_drivers::frame_port::Frame;
    use pv_abi::device::net::{NetRxRequest, NetRxResponse};
    use pv_abi::grant::{GrantFlags, GRANT_ENTRY_SIZE, GRANT_FLAGS_OFFSET, GRANT_FRAME_OFFSET};
    use pv_abi::ring::FrontRing;
    use vm_memory::{Bytes, GuestAddress};

    /// A port whose other end is the test: frames it queues, an eventfd it signals.
    struct TestPort {
        waiting: crossbeam_channel::Receiver<Frame>,
        ready: EventFd,
    }

    impl FramePort for TestPort {
        fn transmit(&self, _: &[u8]) {}
        fn receive(&self) -> Option<Frame> {
            self.waiting.try_recv().ok()
        }
        fn ready(&self) -> &EventFd {
            &self.ready
        }
    }

    #[test]
    fn a_frame_from_the_port_lands_in_a_posted_buffer_of_a_real_vm_under_the_net_backend_filter() {
        const RAM: u64 = 16 << 20;
        let machine = match KvmVm::new(RAM, MemoryPlan::flat(RAM)) {
            Ok(machine) => machine,
            Err(e) => {
                eprintln!("SKIPPED: {e}");
                return;
            }
        };
        // What `hv run` does before confining any thread (the allocator's arena limit).
        crate::sandbox::prepare().unwrap();
        let (inject, waiting) = crossbeam_channel::unbounded();
        let ready = EventFd::new(EFD_NONBLOCK).unwrap();
        let port = TestPort { waiting, ready: ready.try_clone().unwrap() };
        let config = NetConfig::nth_guest(0).unwrap();
        let device = NetDevice::attach(&machine, Box::new(port), config, NetPositions::default(), &Tracer::default(), NotifyPolicy::EventIndex, true).unwrap();
        let layout = device.layout();
        assert_eq!((layout.tx.ring_gpa, layout.rx.channel, layout.ipv4), (NET_TX_RING_GPA, NET_RX_CHANNEL, [10, 0, 0, 2]));
        device.start();

        // The guest's part, written straight into its RAM: grant 1 gives frame 0x300
        // writable; one receive buffer posted.
        let memory = machine.ram().memory().clone();
        let buffer = 0x300u64;
        let entry = GRANT_TABLE_GPA + GRANT_ENTRY_SIZE as u64;
        memory.write_obj(buffer, GuestAddress(entry + GRANT_FRAME_OFFSET as u64)).unwrap();
        memory.write_obj(GrantFlags::PERMIT_ACCESS.bits(), GuestAddress(entry + GRANT_FLAGS_OFFSET as u64)).unwrap();
        let mut rx: FrontRing<GuestPage, NetRxRequest, NetRxResponse> = FrontRing::init(GuestPage::new(memory.clone(), RX_RING).unwrap());
        rx.push_request(&NetRxRequest { id: 5, gref: 1 }).unwrap();
        rx.publish_requests();

        let frame: Frame = (0..300u32).map(|i| i as u8).collect();
        inject.send(frame.clone()).unwrap();
        ready.write(1).unwrap();
        let start = std::time::Instant::now();
        let response = loop {
            if let Some(r) = rx.take_response().unwrap() {
                break r;
            }
            assert!(start.elapsed() < std::time::Duration::from_secs(20), "the backend never answered");
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        assert_eq!(response, NetRxResponse { id: 5, offset: 0, flags: 0, status: 300 });
        let mut got = vec![0u8; 300];
        memory.read_slice(&mut got, GuestAddress(buffer * 4096)).unwrap();
        assert_eq!(got, frame);
        let stats = device.stop().expect("the thread, confined, is still alive");
        assert_eq!((stats.frames_rx, stats.rx.notifications), (1, 1));
    }

    #[test]
    fn hostile_saved_network_identities_are_refused() {
        let good = NetSaved { mac: pv_abi::device::net::guest_mac(3), ipv4: [10, 0, 0, 5], prefix_len: 24, gateway: [10, 0, 0, 1], tx: 7, rx: u32::MAX };
        assert_eq!(good.config().unwrap().address(), "10.0.0.5/24");
        assert_eq!(good.positions(), NetPositions { tx: 7, rx: u32::MAX }, "any index is a ring position (they wrap)");
        let multicast = NetSaved { mac: [0x03, 0, 0, 0, 0, 1], ..good };
        let global = NetSaved { mac: [0x00, 0x16, 0x3e, 0, 0, 1], ..good };
        let prefix = NetSaved { prefix_len: 33, ..good };
        for bad in [multicast, global, prefix] {
            let why = bad.config().expect_err("refused");
            assert!(why.contains("not locally administered unicast") && why.contains(&format!("/{}", bad.prefix_len)), "{why}");
        }
    }

    #[test]
    fn guests_get_consecutive_addresses_and_distinct_local_macs() {
        let first = NetConfig::nth_guest(0).unwrap();
        assert_eq!((first.ipv4, first.prefix_len, first.gateway), ([10, 0, 0, 2], 24, [10, 0, 0, 1]));
        assert_eq!(NetConfig::nth_guest(252).unwrap().ipv4, [10, 0, 0, 254]);
        assert_eq!(NetConfig::nth_guest(253), None, "10.0.0.255 is the broadcast address");
        assert_ne!(NetConfig::nth_guest(1).unwrap().mac, first.mac);
        assert!(pv_abi::device::net::is_local_unicast(first.mac));
    }
}
