//! An ICMP echo client: `ping`, one request at a time.
//!
//! A ping is an ICMP echo request (type 8) carrying an identifier, a sequence number
//! and some data; the target answers with an echo reply (type 0) carrying the same
//! three back. The round trip is the time between the two. Answering other machines'
//! pings needs no code here: smoltcp's interface replies to every echo request for its
//! address by itself.
//!
//! The reply comes from the network, so it is checked before it counts: it must come
//! from the target, be an echo reply with our identifier and the sequence number
//! awaited, and carry exactly the data sent. Anything else is dropped.

use smoltcp::iface::SocketHandle;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::icmp::{self, PacketBuffer, PacketMetadata};
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpAddress, Ipv4Address};

use crate::device::FrameIo;
use crate::stack::NetStack;
use crate::time::NetClock;

/// The identifier of our echo requests ("hv").
pub const PING_IDENT: u16 = 0x6876;
/// Data bytes in each request: 56, like `ping`'s default.
pub const PING_DATA_LEN: usize = 56;
/// The ICMP header of an echo message: type, code, checksum, identifier, sequence.
const ECHO_HEADER_LEN: usize = 8;
/// Echo messages each direction of the socket can hold.
const QUEUED_MESSAGES: usize = 4;
/// Bytes for [`QUEUED_MESSAGES`] echo messages.
const QUEUE_BYTES: usize = QUEUED_MESSAGES * (ECHO_HEADER_LEN + PING_DATA_LEN);

/// The memory of a ping socket (kept outside the stack so it can live in a static).
pub struct PingBuffers {
    rx_meta: [PacketMetadata; QUEUED_MESSAGES],
    rx_data: [u8; QUEUE_BYTES],
    tx_meta: [PacketMetadata; QUEUED_MESSAGES],
    tx_data: [u8; QUEUE_BYTES],
}

impl PingBuffers {
    /// Empty buffers.
    pub const fn new() -> Self {
        PingBuffers {
            rx_meta: [PacketMetadata::EMPTY; QUEUED_MESSAGES],
            rx_data: [0; QUEUE_BYTES],
            tx_meta: [PacketMetadata::EMPTY; QUEUED_MESSAGES],
            tx_data: [0; QUEUE_BYTES],
        }
    }
}

impl Default for PingBuffers {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a ping got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PingError {
    /// The socket could not take the request (its queue is full).
    SendFailed,
    /// No matching reply within the time allowed.
    Timeout,
}

/// An ICMP socket that pings one target.
pub struct Pinger {
    handle: SocketHandle,
    target: Ipv4Address,
}

/// The data of request `seq`: a pattern that differs per request, so a stale or forged
/// reply does not match.
fn echo_data(seq: u16) -> [u8; PING_DATA_LEN] {
    let mut data = [0u8; PING_DATA_LEN];
    for (i, byte) in data.iter_mut().enumerate() {
        *byte = (seq as u8).wrapping_add(i as u8);
    }
    data
}

impl Pinger {
    /// A ping socket on `stack` for `target`, with its queues in `buffers`.
    pub fn new<'s, F: FrameIo>(stack: &mut NetStack<'s, F>, buffers: &'s mut PingBuffers, target: Ipv4Address) -> Pinger {
        let rx = PacketBuffer::new(&mut buffers.rx_meta[..], &mut buffers.rx_data[..]);
        let tx = PacketBuffer::new(&mut buffers.tx_meta[..], &mut buffers.tx_data[..]);
        let mut socket = icmp::Socket::new(rx, tx);
        // Binding to an identifier can only fail for identifier 0 or a bound socket.
        let _ = socket.bind(icmp::Endpoint::Ident(PING_IDENT));
        Pinger { handle: stack.sockets.add(socket), target }
    }

    /// Queues echo request `seq` (sent at the next poll).
    pub fn send<F: FrameIo>(&self, stack: &mut NetStack<'_, F>, seq: u16) -> Result<(), PingError> {
        let data = echo_data(seq);
        let request = Icmpv4Repr::EchoRequest { ident: PING_IDENT, seq_no: seq, data: &data };
        let socket = stack.sockets.get_mut::<icmp::Socket>(self.handle);
        let bytes = socket.send(request.buffer_len(), IpAddress::Ipv4(self.target)).map_err(|_| PingError::SendFailed)?;
        request.emit(&mut Icmpv4Packet::new_unchecked(bytes), &ChecksumCapabilities::default());
        Ok(())
    }

    /// Whether the reply to request `seq` has arrived; everything else waiting in the
    /// socket (late replies, forged ones) is dropped.
    pub fn take_reply<F: FrameIo>(&self, stack: &mut NetStack<'_, F>, seq: u16) -> bool {
        let socket = stack.sockets.get_mut::<icmp::Socket>(self.handle);
        let mut found = false;
        // At most what the queue holds: the loop ends even if replies keep coming.
        for _ in 0..QUEUED_MESSAGES {
            let Ok((bytes, from)) = socket.recv() else { break };
            found |= from == IpAddress::Ipv4(self.target) && is_reply_to(bytes, seq);
        }
        found
    }

    /// Sends request `seq` and waits for its reply for up to `timeout_us`, calling
    /// `pump` to make progress (it polls the stack, and whatever else must run: the
    /// peer on a loopback wire, or a wait for the device). Returns the round trip in
    /// TSC cycles.
    pub fn ping<'s, F: FrameIo>(
        &self,
        stack: &mut NetStack<'s, F>,
        seq: u16,
        timeout_us: u64,
        mut pump: impl FnMut(&mut NetStack<'s, F>),
    ) -> Result<u64, PingError> {
        let start = stack.clock.ticks();
        let deadline = start.saturating_add(stack.clock.ticks_in(timeout_us));
        self.send(stack, seq)?;
        loop {
            pump(stack);
            if self.take_reply(stack, seq) {
                return Ok(stack.clock.ticks().saturating_sub(start));
            }
            if stack.clock.ticks() >= deadline {
                return Err(PingError::Timeout);
            }
        }
    }
}

/// Whether `bytes` (an ICMP message from the network) is the echo reply to request `seq`.
fn is_reply_to(bytes: &[u8], seq: u16) -> bool {
    let Ok(packet) = Icmpv4Packet::new_checked(bytes) else { return false };
    match Icmpv4Repr::parse(&packet, &ChecksumCapabilities::default()) {
        Ok(Icmpv4Repr::EchoReply { ident, seq_no, data }) => ident == PING_IDENT && seq_no == seq && data == echo_data(seq),
        _ => false,
    }
}

/// How long a ping waits for its reply (as `ping`'s default), in microseconds.
pub const PING_TIMEOUT_US: u64 = 1_000_000;
/// Round trips one series keeps for its percentiles (and the most pings it sends).
pub const MAX_PING_COUNT: usize = 512;

/// Round trips of one series of pings, in TSC cycles.
pub struct PingSeries {
    /// Requests sent.
    pub sent: u32,
    /// Round trips measured (replies received), the first `received` sorted ascending.
    pub rtts: [u64; MAX_PING_COUNT],
    /// Replies received.
    pub received: usize,
}

impl PingSeries {
    /// The round trip at percentile `p` (0–100), in cycles; 0 if none were received.
    pub fn percentile(&self, p: usize) -> u64 {
        match self.received {
            0 => 0,
            n => self.rtts[((n - 1) * p / 100).min(n - 1)],
        }
    }

    /// The summary line (`ping`'s last two lines in one), headed `what`.
    pub fn summary<'a>(&'a self, what: &'a str, clock: NetClock) -> PingSummary<'a> {
        PingSummary { what, series: self, clock }
    }
}

/// A series' summary line, for `Display`.
pub struct PingSummary<'a> {
    what: &'a str,
    series: &'a PingSeries,
    clock: NetClock,
}

impl core::fmt::Display for PingSummary<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (s, c) = (self.series, self.clock);
        let loss = 100 - s.received * 100 / (s.sent.max(1) as usize);
        write!(
            f,
            "{}: {} sent, {} received, {loss}% loss; round trip min {} us, p50 {} us, p99 {} us, max {} us",
            self.what,
            s.sent,
            s.received,
            c.micros(s.percentile(0)),
            c.micros(s.percentile(50)),
            c.micros(s.percentile(99)),
            c.micros(s.percentile(100)),
        )
    }
}

/// Sends `count` pings (at most [`MAX_PING_COUNT`]) one after the other, each waiting
/// for its reply for [`PING_TIMEOUT_US`]; tells `report` how each went (its sequence
/// number and round trip in cycles, or why not). `pump` polls the stack (and whatever
/// else must run).
pub fn ping_series<'s, F: FrameIo>(
    stack: &mut NetStack<'s, F>,
    pinger: &Pinger,
    count: u32,
    mut pump: impl FnMut(&mut NetStack<'s, F>),
    mut report: impl FnMut(u16, Result<u64, PingError>),
) -> PingSeries {
    let mut series = PingSeries { sent: 0, rtts: [0; MAX_PING_COUNT], received: 0 };
    for seq in 0..count.min(MAX_PING_COUNT as u32) {
        series.sent += 1;
        let outcome = pinger.ping(stack, seq as u16, PING_TIMEOUT_US, &mut pump);
        if let Ok(rtt) = outcome {
            series.rtts[series.received] = rtt;
            series.received += 1;
        }
        report(seq as u16, outcome);
    }
    series.rtts[..series.received].sort_unstable();
    series
}
