//! One network interface: smoltcp's `Interface` (ARP, IPv4, ICMP echo replies, TCP)
//! over a [`FrameDevice`], its sockets, and the clock that drives it.
//!
//! A smoltcp stack does nothing by itself: [`NetStack::poll`] takes in every frame that
//! arrived, lets the sockets act on them, and sends what they (and the stack's own ARP
//! and ICMP answers) have to send. The caller polls in a loop, and between polls may
//! wait as long as [`NetStack::poll_delay_us`] says nothing is due.
//!
//! The interface's identity (MAC, IPv4 address and prefix) is a [`NetConfig`], checked
//! before use: smoltcp panics on a multicast MAC, and the kernel must not.

use pv_abi::BootInfo;
use smoltcp::iface::{Config, Interface, PollIngressSingleResult, PollResult, SocketSet, SocketStorage};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};

use crate::device::{FrameDevice, FrameIo};
use crate::time::NetClock;

/// Who an interface is on the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// The Ethernet address.
    pub mac: [u8; 6],
    /// The IPv4 address.
    pub ipv4: [u8; 4],
    /// The network prefix length (24 for a /24).
    pub prefix_len: u8,
}

impl NetConfig {
    /// The guest's identity until the boot-info page carries one: the first guest of
    /// issue 12's switch (10.0.0.2/24), with a locally administered MAC (bit 1 of the
    /// first byte set: not a vendor's address).
    pub const FIRST_GUEST: NetConfig = NetConfig { mac: [0x02, 0x68, 0x76, 0, 0, 2], ipv4: [10, 0, 0, 2], prefix_len: 24 };

    /// The guest's identity from its boot-info page: the MAC, address and prefix hv
    /// announced with the network device ([`NetConfig::FIRST_GUEST`] without one, for
    /// the loopback commands). [`NetConfig::check`] still guards against a bad page.
    pub fn from_boot_info(info: &BootInfo) -> NetConfig {
        if info.net_tx.present == 0 {
            return NetConfig::FIRST_GUEST;
        }
        NetConfig { mac: info.net_mac, ipv4: info.net_ipv4, prefix_len: info.net_prefix_len }
    }

    /// The same identity with the last byte of the MAC and of the address set to `host`
    /// (the loopback tests build a second interface this way).
    pub const fn with_host(self, host: u8) -> NetConfig {
        let mut c = self;
        c.mac[5] = host;
        c.ipv4[3] = host;
        c
    }

    /// The IPv4 address as smoltcp's type.
    pub fn address(&self) -> Ipv4Address {
        Ipv4Address::from(self.ipv4)
    }

    /// Whether this identity can be used: a unicast MAC that is not all zeros, a prefix
    /// of at most 32 bits, and a unicast address that is not the network's broadcast.
    pub fn check(&self) -> Result<(), ConfigError> {
        let mac = EthernetAddress(self.mac);
        if !mac.is_unicast() || self.mac == [0; 6] {
            return Err(ConfigError::MacNotUnicast);
        }
        if self.prefix_len > 32 {
            return Err(ConfigError::PrefixTooLong);
        }
        let ip = self.address();
        let host_mask = u32::MAX.checked_shr(u32::from(self.prefix_len)).unwrap_or(0);
        let is_broadcast = host_mask != 0 && u32::from(ip) & host_mask == host_mask;
        if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || is_broadcast {
            return Err(ConfigError::AddressNotUnicast);
        }
        Ok(())
    }
}

/// Why a [`NetConfig`] cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The MAC is multicast or all zeros.
    MacNotUnicast,
    /// The prefix is longer than 32 bits.
    PrefixTooLong,
    /// The address is 0.0.0.0, multicast or a broadcast address.
    AddressNotUnicast,
}

/// Frames one [`NetStack::poll`] takes in at most: the bound on the work a peer can
/// cause per poll (a netfront's receive ring holds about as many).
pub const MAX_FRAMES_PER_POLL: usize = 32;

/// An interface, its device and its sockets.
pub struct NetStack<'s, F: FrameIo> {
    /// smoltcp's interface: addresses, ARP cache, routes.
    pub iface: Interface,
    /// The device it sends and receives on.
    pub device: FrameDevice<F>,
    /// The sockets (their buffers borrowed for `'s`).
    pub sockets: SocketSet<'s>,
    /// Its clock.
    pub clock: NetClock,
}

impl<'s, F: FrameIo> NetStack<'s, F> {
    /// An interface with `config`'s identity on `io`, keeping its sockets in `storage`.
    pub fn new(config: NetConfig, io: F, storage: &'s mut [SocketStorage<'s>], clock: NetClock) -> Result<Self, ConfigError> {
        config.check()?;
        let mut device = FrameDevice::new(io);
        let mut iface_config = Config::new(HardwareAddress::Ethernet(EthernetAddress(config.mac)));
        // Seeds TCP's initial sequence numbers and ephemeral ports: different each boot,
        // as smoltcp asks (the clock is recorded in a recorded run, so a replay agrees).
        iface_config.random_seed = clock.ticks() ^ u64::from(u32::from(config.address()));
        let mut iface = Interface::new(iface_config, &mut device, clock.now());
        iface.update_ip_addrs(|addrs| {
            // Room for IFACE_MAX_ADDR_COUNT (at least 1) addresses: the first push fits.
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(config.address()), config.prefix_len));
        });
        Ok(NetStack { iface, device, sockets: SocketSet::new(storage), clock })
    }

    /// Does the work due now: up to [`MAX_FRAMES_PER_POLL`] frames in, socket work,
    /// frames out. Returns whether a socket may have changed state.
    pub fn poll(&mut self) -> bool {
        let now = self.clock.now();
        let mut changed = false;
        // Not `Interface::poll`, which takes frames for as long as they come: a peer
        // sending without pause would keep the kernel here for ever. Frames left over
        // wait for the next poll.
        for _ in 0..MAX_FRAMES_PER_POLL {
            match self.iface.poll_ingress_single(now, &mut self.device, &mut self.sockets) {
                PollIngressSingleResult::None => break,
                PollIngressSingleResult::PacketProcessed => {}
                PollIngressSingleResult::SocketStateChanged => changed = true,
            }
        }
        changed | (self.iface.poll_egress(now, &mut self.device, &mut self.sockets) == PollResult::SocketStateChanged)
    }

    /// Microseconds until the stack has timed work (a retransmission, an ARP retry);
    /// `None` if nothing is due until a frame arrives.
    pub fn poll_delay_us(&mut self) -> Option<u64> {
        let now = self.clock.now();
        self.iface.poll_delay(now, &self.sockets).map(|d| d.total_micros())
    }
}
