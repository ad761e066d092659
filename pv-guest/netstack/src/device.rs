//! The link layer under the stack: [`FrameIo`], what any network device must do, and
//! [`FrameDevice`], smoltcp's `phy::Device` built on it.
//!
//! A TCP/IP stack needs very little from the hardware below it: "send this Ethernet
//! frame" and "give me the next frame that arrived, if any". That is the driver
//! interface of every network stack (Linux's `ndo_start_xmit` and NAPI poll, a BSD
//! `if_start`/`if_input`), and it is all [`FrameIo`] asks. Two things implement it: the
//! in-guest loopback wire (`net::loopback`, for testing the stack without a device) and,
//! once it lands, the network frontend's ring (`frontend-drivers`' `NetFront`, through a
//! small adapter in `commands/net.rs`).
//!
//! smoltcp's device interface is token based: `receive` hands out a pair of tokens, and
//! the frame is only read (or written) when the stack consumes a token. [`FrameDevice`]
//! keeps one receive and one transmit buffer of [`MAX_FRAME`] bytes, so no frame is ever
//! allocated: the kernel has no heap.

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// The largest Ethernet frame carried: 1500 bytes of payload (the MTU) and the 14-byte
/// header (destination, source, EtherType), no FCS and no VLAN tag, as in Xen's netif.
pub const MAX_FRAME: usize = 1514;

/// What the stack needs from a network device: frames out, frames in.
pub trait FrameIo {
    /// Sends one Ethernet frame (at most [`MAX_FRAME`] bytes). A device that cannot
    /// take it now drops it (and counts it): the protocols above retransmit, as they
    /// must on any lossy link.
    fn send(&mut self, frame: &[u8]);

    /// Copies the next received frame into `buffer` and returns its length, or `None`
    /// if nothing has arrived. A frame longer than `buffer` is dropped by the device,
    /// never cut short.
    fn recv(&mut self, buffer: &mut [u8]) -> Option<usize>;

    /// Waits until a frame may have arrived or `max_us` microseconds have passed,
    /// whichever is first. The default returns at once (the caller polls again); a
    /// device with an interrupt halts until its upcall.
    fn wait(&mut self, max_us: u64) {
        let _ = max_us;
    }
}

/// Frames counted by a [`FrameDevice`] (the stack's side of the link).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Frames handed to the device.
    pub sent: u64,
    /// Frames taken from the device.
    pub received: u64,
}

/// smoltcp's `phy::Device` over a [`FrameIo`].
pub struct FrameDevice<F: FrameIo> {
    /// The device underneath.
    pub io: F,
    /// Where a received frame waits until the stack consumes its token.
    rx_buffer: [u8; MAX_FRAME],
    /// Where the stack writes a frame before it is sent.
    tx_buffer: [u8; MAX_FRAME],
    /// Frames in and out.
    pub counters: LinkCounters,
}

impl<F: FrameIo> FrameDevice<F> {
    /// A device over `io`.
    pub fn new(io: F) -> Self {
        FrameDevice { io, rx_buffer: [0; MAX_FRAME], tx_buffer: [0; MAX_FRAME], counters: LinkCounters::default() }
    }
}

/// A received frame, lent to the stack.
pub struct RxToken<'a> {
    frame: &'a [u8],
    received: &'a mut u64,
}

/// The right to send one frame.
pub struct TxToken<'a, F: FrameIo> {
    io: &'a mut F,
    buffer: &'a mut [u8; MAX_FRAME],
    sent: &'a mut u64,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, G>(self, f: G) -> R
    where
        G: FnOnce(&[u8]) -> R,
    {
        *self.received += 1;
        f(self.frame)
    }
}

impl<F: FrameIo> phy::TxToken for TxToken<'_, F> {
    fn consume<R, G>(self, len: usize, f: G) -> R
    where
        G: FnOnce(&mut [u8]) -> R,
    {
        // smoltcp never asks for more than the MTU it was given (capabilities below);
        // clamping keeps a slice index from ever panicking if that changed.
        let frame = &mut self.buffer[..len.min(MAX_FRAME)];
        let result = f(frame);
        self.io.send(frame);
        *self.sent += 1;
        result
    }
}

impl<F: FrameIo> phy::Device for FrameDevice<F> {
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, F>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_>, TxToken<'_, F>)> {
        let len = self.io.recv(&mut self.rx_buffer)?;
        // A device that claims more bytes than the buffer holds is clamped, not trusted.
        let frame = &self.rx_buffer[..len.min(MAX_FRAME)];
        // The two tokens borrow disjoint fields, so both can live at once (the stack may
        // answer the frame, an ARP request or a ping, with the transmit token).
        let counters = &mut self.counters;
        Some((
            RxToken { frame, received: &mut counters.received },
            TxToken { io: &mut self.io, buffer: &mut self.tx_buffer, sent: &mut counters.sent },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_, F>> {
        Some(TxToken { io: &mut self.io, buffer: &mut self.tx_buffer, sent: &mut self.counters.sent })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        // One frame at a time in each direction: the device has one buffer each way.
        caps.max_burst_size = Some(1);
        caps
    }
}
