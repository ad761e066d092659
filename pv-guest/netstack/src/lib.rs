//! # pv-netstack: the guest's TCP/IP stack, for either ring
//!
//! smoltcp (ARP, IPv4, ICMP echo, TCP) over any device that can send and receive
//! Ethernet frames, and the two services built on it: a ping client and a tiny HTTP
//! server. It is a library so that the same code can run in two places, which is the
//! point of issue 12's item 4: in the guest kernel (ring 0: `pv-guest`'s `net` module)
//! and in the ring-3 network task `pv-netd`. On a host that emulates ring 0 the
//! difference is one of orders of magnitude, and `docs/network.md` measures it.
//!
//! Nothing here knows which ring it runs in: the device comes in through
//! [`device::FrameIo`], the clock through [`time::NetClock`]'s reader, and the lines a
//! server adds to its page through [`http::AboutPage`].
//!
//! ## Modules, lowest first
//! | module | owns |
//! | --- | --- |
//! | [`device`] | [`device::FrameIo`] (what a network device must do: send a frame, take a received frame) and smoltcp's `phy::Device` over it |
//! | [`loopback`] | two `FrameIo` ends joined back to back, to run two stacks against each other |
//! | [`time`] | smoltcp's clock from the guest's TSC |
//! | [`stack`] | one interface (its identity, [`stack::NetConfig`], from the boot-info page), its sockets and its poll |
//! | [`ping`] | the ICMP echo client |
//! | [`http`] | the HTTP/1.0 server |
//! | [`http_get`] | the HTTP client the tests and benchmarks use |

#![no_std]

pub mod device;
pub mod loopback;
pub mod time;
pub mod stack;
pub mod ping;
pub mod http;
pub mod http_get;
