//! A real TCP/IP stack on netfront: smoltcp's `phy::Device` built on `NetFront`, as the
//! guest's network stack will build it, pinged through netback and the port by a second
//! smoltcp stack playing the rest of the network. No KVM; the backend on its thread.
//!
//! The device is the whole adapter: a receive token owns the frame `receive_into`
//! copied out, a transmit token borrows the frontend and writes through
//! `transmit_with`; nothing is allocated per frame.

mod net_rig;

use std::time::{Duration, Instant as StdInstant};

use backend_drivers::runner::NotifyPolicy;
use net_rig::*;
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::{self, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::socket::icmp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr, Ipv4Address};

/// smoltcp's view of the guest's netfront.
struct FrontDevice<'a>(&'a mut Front);

/// A received frame, already copied out of its buffer (which is posted again).
struct FrameRx {
    bytes: [u8; 1514],
    len: usize,
}

/// Room to send one frame, through the frontend.
struct FrontTx<'a>(&'a mut Front);

impl phy::RxToken for FrameRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.bytes[..self.len])
    }
}

impl phy::TxToken for FrontTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // A token is only handed out while a buffer is free, so this succeeds; were it
        // to fail, the stack still gets to build its frame, which is dropped (as a full
        // NIC queue drops it).
        let mut fill = Some(f);
        let mut result = None;
        let _ = self.0.transmit_with(len, |buf| result = fill.take().map(|f| f(buf)));
        match (result, fill) {
            (Some(r), _) => r,
            (None, Some(f)) => f(&mut vec![0; len]),
            (None, None) => unreachable!("the closure ran or it did not"),
        }
    }
}

impl phy::Device for FrontDevice<'_> {
    type RxToken<'a> = FrameRx where Self: 'a;
    type TxToken<'a> = FrontTx<'a> where Self: 'a;

    fn receive(&mut self, _: Instant) -> Option<(FrameRx, FrontTx<'_>)> {
        let mut bytes = [0u8; 1514];
        let len = self.0.receive_into(&mut bytes).ok()??;
        Some((FrameRx { bytes, len }, FrontTx(self.0)))
    }

    fn transmit(&mut self, _: Instant) -> Option<FrontTx<'_>> {
        if self.0.can_transmit() {
            Some(FrontTx(self.0))
        } else {
            None
        }
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

/// The rest of the network, seen from the port's other end.
struct PeerDevice<'a>(&'a Network);
struct PeerRx(Vec<u8>);
struct PeerTx<'a>(&'a Network);

impl phy::RxToken for PeerRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for PeerTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.0.inject(frame);
        r
    }
}

impl phy::Device for PeerDevice<'_> {
    type RxToken<'a> = PeerRx where Self: 'a;
    type TxToken<'a> = PeerTx<'a> where Self: 'a;

    fn receive(&mut self, _: Instant) -> Option<(PeerRx, PeerTx<'_>)> {
        let frame = self.0.sent.try_recv().ok()?;
        Some((PeerRx(frame), PeerTx(self.0)))
    }

    fn transmit(&mut self, _: Instant) -> Option<PeerTx<'_>> {
        Some(PeerTx(self.0))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

fn interface(device: &mut impl phy::Device, mac: [u8; 6], ip: [u8; 4], now: Instant) -> Interface {
    let mut iface = Interface::new(Config::new(HardwareAddress::Ethernet(EthernetAddress(mac))), device, now);
    iface.update_ip_addrs(|addrs| addrs.push(IpCidr::new(IpAddress::v4(ip[0], ip[1], ip[2], ip[3]), 24)).unwrap());
    iface
}

#[test]
fn a_smoltcp_stack_on_netfront_answers_pings_through_netback() {
    let m = memory();
    let (backend, host) = backend(&m, NotifyPolicy::EventIndex);
    let handle = spawn(backend, &host);
    let mut front = front(&m, &host);
    front.post_rx_buffers().unwrap();
    let start = StdInstant::now();
    let now = || Instant::from_micros(start.elapsed().as_micros() as i64);

    let mut guest_device = FrontDevice(&mut front);
    let mut guest = interface(&mut guest_device, pv_abi::device::net::guest_mac(0), [10, 0, 0, 2], now());
    let mut guest_sockets = SocketSet::new(vec![]);
    let mut peer_device = PeerDevice(&host.network);
    let mut peer = interface(&mut peer_device, [0x02, 0, 0, 0, 0, 1], [10, 0, 0, 1], now());
    let mut peer_sockets = SocketSet::new(vec![]);
    let buffer = || icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 8], vec![0; 4096]);
    let mut ping = icmp::Socket::new(buffer(), buffer());
    ping.bind(icmp::Endpoint::Ident(0x4856)).unwrap();
    let ping = peer_sockets.add(ping);

    const PINGS: u16 = 20;
    let payload = [0x5a; 56];
    let mut replies = 0;
    let mut sent = 0;
    while replies < PINGS {
        assert!(start.elapsed() < Duration::from_secs(20), "{replies} of {PINGS} replies; netback {:?}", handle.stats());
        let socket = peer_sockets.get_mut::<icmp::Socket>(ping);
        if sent == replies && socket.can_send() {
            let repr = Icmpv4Repr::EchoRequest { ident: 0x4856, seq_no: sent, data: &payload };
            let mut bytes = vec![0; repr.buffer_len()];
            repr.emit(&mut Icmpv4Packet::new_unchecked(&mut bytes), &ChecksumCapabilities::default());
            socket.send_slice(&bytes, IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 2))).unwrap();
            sent += 1;
        }
        if let Ok((bytes, from)) = socket.recv() {
            let packet = Icmpv4Packet::new_checked(bytes).unwrap();
            let repr = Icmpv4Repr::parse(&packet, &ChecksumCapabilities::default()).unwrap();
            assert_eq!(from, IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 2)));
            assert_eq!(repr, Icmpv4Repr::EchoReply { ident: 0x4856, seq_no: replies, data: &payload });
            replies += 1;
        }
        peer.poll(now(), &mut peer_device, &mut peer_sockets);
        guest.poll(now(), &mut guest_device, &mut guest_sockets);
        std::thread::sleep(Duration::from_micros(100));
    }
    let stats = handle.stop().unwrap();
    // The first ping also carried an ARP exchange each way.
    assert!(stats.frames_tx >= u64::from(PINGS) && stats.frames_rx >= u64::from(PINGS), "{stats:?}");
    assert_eq!(stats.refused(), 0);
}
