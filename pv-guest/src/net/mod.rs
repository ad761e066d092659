//! The guest's network stack: smoltcp (ARP, IPv4, ICMP echo, TCP) over any device that
//! can send and receive Ethernet frames, and the two services built on it, a ping
//! client and a tiny HTTP server.
//!
//! ## Modules, lowest first
//! - `device`: [`device::FrameIo`] (what a network device must do: send a frame, take
//!   a received frame) and smoltcp's `phy::Device` over it.
//! - `loopback`: two `FrameIo` ends joined back to back, to run two stacks against each
//!   other inside the guest.
//! - `time`: smoltcp's clock from the guest's TSC.
//! - `stack`: one interface (its identity, [`stack::NetConfig`], from the boot-info
//!   page), its sockets and its poll.
//! - `ping`: the ICMP echo client.
//! - `http`: the HTTP/1.0 server; `http_get`: the client the tests and benchmarks use.
//!
//! The network frontend (`frontend-drivers`' netfront, issue 12) plugs in under
//! `device` by implementing `FrameIo` over its transmit and receive rings.
//!
//! ## Where the stack runs, and why (issue 12, item 4)
//! MEASUREMENTS_GO_HERE

pub mod device;
pub mod loopback;
pub mod time;
pub mod stack;
pub mod ping;
pub mod http;
pub mod http_get;
