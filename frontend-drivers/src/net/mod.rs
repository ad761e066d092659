//! The network frontend (netfront): Ethernet frames out through the transmit ring, in
//! through the receive ring, each one copied once between the caller and a buffer
//! frame the frontend owns. The protocol is `pv_abi::device::net`.
//!
//! The kernel gives the frontend its buffers up front: `TX` frames to send from and `RX`
//! frames to receive into ([`NetBuffer`]: a frame number and a way to reach its bytes).
//! Ids on the rings are buffer indices, so a response names its buffer directly.
//!
//! - **Transmit** ([`NetFront::transmit`], [`NetFront::transmit_with`]): take a free tx
//!   buffer (reaping finished transmissions first if none is free), copy the frame into
//!   it, grant it read-only, push `{id, gref, offset 0, len}`, publish, and ring the
//!   doorbell if the backend asked. The grant is revoked when the response comes.
//! - **Receive**: [`NetFront::post_rx_buffers`] grants every idle rx buffer writable and
//!   posts it; [`NetFront::receive_into`] (or [`NetFront::receive_with`]) takes one
//!   response, checks it ([`check::check_rx_response`]), copies the frame out, revokes
//!   the grant and posts the buffer again, so the ring stays full of buffers.
//! - **Grants, per use or for good**: the kernel's frontend owns its range of the grant
//!   table and grants a buffer for each use, as above ([`NetFront::new`]). A frontend
//!   running in a ring-3 task cannot write the grant table (the kernel keeps it), so the
//!   kernel grants every buffer once, before it lends them, and the task's frontend uses
//!   those references for good ([`NetFront::with_persistent_grants`]: Xen's persistent
//!   grants); then nothing is granted or revoked per frame.
//! - **Sleeping**: the frontend never blocks. Before the kernel sleeps it calls
//!   [`NetFront::rearm_rx`] (and [`NetFront::rearm_tx`] if it waits for a tx buffer),
//!   which asks for an upcall on the next response and says whether one is already
//!   there.
//!
//! Shaped for a TCP/IP stack on top (smoltcp's `phy::Device`): a receive token can hold
//! the frame [`NetFront::receive_into`] copied out, and a transmit token maps onto
//! [`NetFront::transmit_with`], which lets the stack write the frame in place of a
//! buffer; [`NetFront::can_transmit`] says whether to hand out a transmit token. No
//! allocation anywhere. `backend-drivers/tests/net_smoltcp.rs` builds exactly that
//! device and answers pings with smoltcp through netback.

pub mod check;

use pv_abi::addr::PseudoFrame;
use pv_abi::device::net::{NetRxRequest, NetRxResponse, NetTxRequest, NetTxResponse, NET_MAX_FRAME, NET_MIN_FRAME, NET_RING_SLOTS, NET_STATUS_OK};
use pv_abi::grant::GrantRef;
use pv_abi::ring::{FrontRing, RingError, SharedPage};

use crate::grant_table::GrantTableFront;
use crate::Doorbell;
use check::RxOutcome;

/// One buffer frame the kernel lends the frontend: its frame number (what a grant
/// names) and its bytes (through the same trait as a ring page).
pub struct NetBuffer<B: SharedPage> {
    /// The frame, as granted to the backend.
    pub frame: PseudoFrame,
    /// Its bytes.
    pub page: B,
}

/// What went wrong on the network device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetError {
    /// A frame to send is not 14..=1514 bytes long.
    BadLength {
        /// Its length.
        len: usize,
    },
    /// Every tx buffer is in flight: wait for the backend (see [`NetFront::rearm_tx`]).
    TxBusy,
    /// The caller's buffer is smaller than the frame that arrived (give `NET_MAX_FRAME`).
    BufferTooSmall {
        /// The frame's length.
        needed: usize,
    },
    /// This frontend's grant entries are all in use.
    NoGrants,
    /// The backend corrupted a ring.
    Ring(RingError),
    /// The backend answered an id that is not in flight.
    UnexpectedResponse {
        /// The id it answered.
        id: u32,
    },
    /// A receive response whose length or offset is no frame's (the buffer is taken
    /// back and posted again; the frame is lost).
    BadResponse {
        /// Its id.
        id: u32,
        /// The offset it claimed.
        offset: u16,
        /// The length it claimed.
        status: i32,
    },
}

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NetError::BadLength { len } => write!(f, "a frame of {len} bytes (a frame has {NET_MIN_FRAME}..={NET_MAX_FRAME})"),
            NetError::TxBusy => f.write_str("every transmit buffer is in flight"),
            NetError::BufferTooSmall { needed } => write!(f, "a {needed}-byte frame does not fit the buffer given"),
            NetError::NoGrants => f.write_str("the network frontend's grant entries are all in use"),
            NetError::Ring(e) => write!(f, "the network backend corrupted a ring: {e}"),
            NetError::UnexpectedResponse { id } => write!(f, "the network backend answered id {id}, which is not in flight"),
            NetError::BadResponse { id, offset, status } => {
                write!(f, "the network backend put a frame of {status} bytes at offset {offset} of buffer {id}")
            }
        }
    }
}

impl core::error::Error for NetError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            NetError::Ring(e) => Some(e),
            _ => None,
        }
    }
}

impl From<RingError> for NetError {
    fn from(e: RingError) -> Self {
        NetError::Ring(e)
    }
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetFrontStats {
    /// Frames handed to the backend.
    pub frames_tx: u64,
    /// Frames received.
    pub frames_rx: u64,
    /// Transmissions the backend refused.
    pub tx_errors: u64,
    /// Receive buffers the backend refused, or answered with a malformed frame.
    pub rx_errors: u64,
    /// Receive buffers posted.
    pub buffers_posted: u64,
    /// Doorbells rung (both rings).
    pub doorbells: u64,
    /// Publishes that needed no doorbell (the backend was busy).
    pub doorbells_suppressed: u64,
}

/// Where a frontend on persistent grants left its rings ([`NetFront::handover`]), for
/// the next driver of the same buffers ([`NetFront::resume_persistent`]): the kernel
/// lending the device to a ring-3 task again, or taking it back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct NetHandover {
    /// The transmit ring's index: every transmission answered and taken.
    pub tx_index: u32,
    /// The receive ring's `req_prod`: buffers posted up to here.
    pub rx_req_prod: u32,
    /// The receive ring's `rsp_cons`: frames taken up to here.
    pub rx_rsp_cons: u32,
    /// Padding (zero).
    pub _pad: u32,
    /// Bit `i` set: receive buffer `i` is posted (or holds a frame not yet taken).
    pub rx_posted: u64,
}

/// How a frontend's buffers are granted to the backend.
enum BufferGrants<G: SharedPage, const TX: usize, const RX: usize> {
    /// Granted for each use and revoked on its response, from the frontend's own range of
    /// the grant table.
    PerUse(GrantTableFront<G>),
    /// Granted once by whoever made the frontend: tx buffer `i` is always `tx[i]`
    /// (read-only), rx buffer `i` always `rx[i]` (writable).
    Persistent { tx: [GrantRef; TX], rx: [GrantRef; RX] },
}

impl<G: SharedPage, const TX: usize, const RX: usize> BufferGrants<G, TX, RX> {
    /// The grant for tx buffer `slot`, made now or made for good.
    fn for_tx(&mut self, slot: usize, frame: PseudoFrame) -> Result<GrantRef, NetError> {
        match self {
            BufferGrants::PerUse(table) => table.grant(frame, true).map_err(|_| NetError::NoGrants),
            BufferGrants::Persistent { tx, .. } => Ok(tx[slot]),
        }
    }

    /// The grant for rx buffer `slot`.
    fn for_rx(&mut self, slot: usize, frame: PseudoFrame) -> Result<GrantRef, NetError> {
        match self {
            BufferGrants::PerUse(table) => table.grant(frame, false).map_err(|_| NetError::NoGrants),
            BufferGrants::Persistent { rx, .. } => Ok(rx[slot]),
        }
    }

    /// Done with `gref` for this use: revoked if it was granted per use.
    fn done(&mut self, gref: GrantRef) {
        if let BufferGrants::PerUse(table) = self {
            table.revoke(gref);
        }
    }
}

/// The network device's frontend, with `TX` transmit and `RX` receive buffers (each at
/// most one ring's worth, `NET_RING_SLOTS`).
pub struct NetFront<P: SharedPage, G: SharedPage, B: SharedPage, D: Doorbell, const TX: usize, const RX: usize> {
    tx: FrontRing<P, NetTxRequest, NetTxResponse>,
    rx: FrontRing<P, NetRxRequest, NetRxResponse>,
    grants: BufferGrants<G, TX, RX>,
    tx_buffers: [NetBuffer<B>; TX],
    rx_buffers: [NetBuffer<B>; RX],
    /// `Some(grant)` while tx buffer `i` is with the backend.
    tx_in_flight: [Option<GrantRef>; TX],
    /// `Some(grant)` while rx buffer `i` is posted.
    rx_posted: [Option<GrantRef>; RX],
    tx_doorbell: D,
    rx_doorbell: D,
    stats: NetFrontStats,
}

impl<P: SharedPage, G: SharedPage, B: SharedPage, D: Doorbell, const TX: usize, const RX: usize> NetFront<P, G, B, D, TX, RX> {
    /// Buffer counts the rings can hold, checked when the type is used.
    const SHAPE_OK: () = assert!(TX >= 1 && RX >= 1 && TX <= NET_RING_SLOTS && RX <= NET_RING_SLOTS, "1..=128 buffers each way");

    /// Initialises both rings; grants come from `grants` (its own range of the table).
    /// Post receive buffers with [`NetFront::post_rx_buffers`] before expecting frames.
    pub fn new(
        tx_ring: P,
        rx_ring: P,
        grants: GrantTableFront<G>,
        tx_buffers: [NetBuffer<B>; TX],
        rx_buffers: [NetBuffer<B>; RX],
        tx_doorbell: D,
        rx_doorbell: D,
    ) -> Self {
        Self::make(FrontRing::init(tx_ring), FrontRing::init(rx_ring), BufferGrants::PerUse(grants), tx_buffers, rx_buffers, tx_doorbell, rx_doorbell)
    }

    /// Initialises both rings for buffers granted once, for good, by the caller:
    /// `tx_grants[i]` names `tx_buffers[i]` read-only and `rx_grants[i]` names
    /// `rx_buffers[i]` writable (a wrong reference makes the backend refuse that
    /// buffer's requests, nothing worse). For a frontend that cannot write the grant
    /// table: the ring-3 network task's.
    #[allow(clippy::too_many_arguments)]
    pub fn with_persistent_grants(
        tx_ring: P,
        rx_ring: P,
        tx_grants: [GrantRef; TX],
        rx_grants: [GrantRef; RX],
        tx_buffers: [NetBuffer<B>; TX],
        rx_buffers: [NetBuffer<B>; RX],
        tx_doorbell: D,
        rx_doorbell: D,
    ) -> Self {
        let grants = BufferGrants::Persistent { tx: tx_grants, rx: rx_grants };
        Self::make(FrontRing::init(tx_ring), FrontRing::init(rx_ring), grants, tx_buffers, rx_buffers, tx_doorbell, rx_doorbell)
    }

    /// A frontend on persistent grants (as [`NetFront::with_persistent_grants`]) that goes
    /// on where another left the rings ([`NetFront::handover`]): its receive buffers in
    /// `left.rx_posted` are still posted, the responses after `left.rx_rsp_cons` are this
    /// one's to take. `None` if `left` does not add up (a buffer past `RX`, or the posted
    /// count not what the indices say is outstanding), which a frontend that wrote it
    /// never produces.
    #[allow(clippy::too_many_arguments)]
    pub fn resume_persistent(
        tx_ring: P,
        rx_ring: P,
        left: NetHandover,
        tx_grants: [GrantRef; TX],
        rx_grants: [GrantRef; RX],
        tx_buffers: [NetBuffer<B>; TX],
        rx_buffers: [NetBuffer<B>; RX],
        tx_doorbell: D,
        rx_doorbell: D,
    ) -> Option<Self> {
        let outstanding = left.rx_req_prod.wrapping_sub(left.rx_rsp_cons);
        let beyond = if RX >= 64 { 0 } else { left.rx_posted >> RX };
        if RX > 64 || beyond != 0 || u64::from(outstanding) != u64::from(left.rx_posted.count_ones()) {
            return None;
        }
        let grants = BufferGrants::Persistent { tx: tx_grants, rx: rx_grants };
        let tx = FrontRing::adopt(tx_ring, left.tx_index);
        let rx = FrontRing::resume(rx_ring, left.rx_req_prod, left.rx_rsp_cons);
        let mut front = Self::make(tx, rx, grants, tx_buffers, rx_buffers, tx_doorbell, rx_doorbell);
        for (slot, posted) in front.rx_posted.iter_mut().enumerate() {
            if left.rx_posted & (1 << slot) != 0 {
                *posted = Some(rx_grants[slot]);
            }
        }
        Some(front)
    }

    /// Where this frontend leaves its rings, for the next driver of the same buffers
    /// ([`NetFront::resume_persistent`]): after reaping every transmission it can. `None`
    /// if it cannot be handed over now: its grants are per use (they are revoked with
    /// it), it has more than 64 receive buffers, a transmission is still unanswered (try again), or a request is unpublished.
    pub fn handover(&mut self) -> Option<NetHandover> {
        // The posted set travels as a 64-bit mask.
        if RX > 64 || !matches!(self.grants, BufferGrants::Persistent { .. }) {
            return None;
        }
        let _ = self.reap_tx();
        let tx_index = self.tx.quiet_index()?;
        let (rx_req_prod, rx_rsp_cons) = self.rx.outstanding()?;
        let rx_posted = self.rx_posted.iter().enumerate().filter(|(_, g)| g.is_some()).fold(0u64, |bits, (slot, _)| bits | 1 << slot);
        Some(NetHandover { tx_index, rx_req_prod, rx_rsp_cons, _pad: 0, rx_posted })
    }

    fn make(
        tx: FrontRing<P, NetTxRequest, NetTxResponse>,
        rx: FrontRing<P, NetRxRequest, NetRxResponse>,
        grants: BufferGrants<G, TX, RX>,
        tx_buffers: [NetBuffer<B>; TX],
        rx_buffers: [NetBuffer<B>; RX],
        tx_doorbell: D,
        rx_doorbell: D,
    ) -> Self {
        let () = Self::SHAPE_OK;
        NetFront {
            tx,
            rx,
            grants,
            tx_buffers,
            rx_buffers,
            tx_in_flight: [None; TX],
            rx_posted: [None; RX],
            tx_doorbell,
            rx_doorbell,
            stats: NetFrontStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> NetFrontStats {
        self.stats
    }

    /// Transmit buffers with the backend.
    pub fn tx_in_flight(&self) -> usize {
        self.tx_in_flight.iter().filter(|g| g.is_some()).count()
    }

    /// Receive buffers posted and not yet filled.
    pub fn rx_posted(&self) -> usize {
        self.rx_posted.iter().filter(|g| g.is_some()).count()
    }

    /// Takes every transmit response there is, freeing its buffer and revoking its
    /// grant. Returns how many.
    pub fn reap_tx(&mut self) -> Result<usize, NetError> {
        let mut reaped = 0;
        // Each response frees one buffer in flight or is refused: at most TX rounds
        // succeed, and a bad one ends the loop.
        while let Some(response) = self.tx.take_response()? {
            let slot = check::check_tx_response(&response, &self.tx_in_flight)?;
            if let Some(gref) = self.tx_in_flight[slot].take() {
                self.grants.done(gref);
            }
            if response.status != NET_STATUS_OK {
                self.stats.tx_errors += 1;
            }
            reaped += 1;
        }
        Ok(reaped)
    }

    /// Whether a transmit buffer is free (after reaping finished transmissions).
    pub fn can_transmit(&mut self) -> bool {
        let _ = self.reap_tx();
        self.tx_in_flight.iter().any(Option::is_none)
    }

    /// Sends one frame (copied; `frame` may be reused at once).
    pub fn transmit(&mut self, frame: &[u8]) -> Result<(), NetError> {
        self.transmit_with(frame.len(), |buf| buf.copy_from_slice(frame))
    }

    /// Sends a frame of `len` bytes that `fill` writes (into a scratch buffer of exactly
    /// `len` bytes, then copied into a tx buffer frame): the shape of smoltcp's
    /// `TxToken::consume`. `fill` is not called if the frame cannot be sent.
    pub fn transmit_with<R>(&mut self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> Result<R, NetError> {
        if !(NET_MIN_FRAME..=NET_MAX_FRAME).contains(&len) {
            return Err(NetError::BadLength { len });
        }
        let slot = match self.tx_in_flight.iter().position(Option::is_none) {
            Some(slot) => slot,
            None => {
                self.reap_tx()?;
                self.tx_in_flight.iter().position(Option::is_none).ok_or(NetError::TxBusy)?
            }
        };
        // Every request's slot is freed by its response, and TX <= the ring's slots.
        if self.tx.free_slots() == 0 {
            return Err(NetError::TxBusy);
        }
        let mut scratch = [0u8; NET_MAX_FRAME];
        let result = fill(&mut scratch[..len]);
        let buffer = &self.tx_buffers[slot];
        buffer.page.write_bytes(0, &scratch[..len]);
        let gref = self.grants.for_tx(slot, buffer.frame)?;
        // len <= NET_MAX_FRAME, slot < TX <= NET_RING_SLOTS: both fit.
        let request = NetTxRequest { id: slot as u32, gref, offset: 0, flags: 0, len: len as u32 };
        if self.tx.push_request(&request).is_err() {
            self.grants.done(gref);
            return Err(NetError::TxBusy);
        }
        self.tx_in_flight[slot] = Some(gref);
        self.stats.frames_tx += 1;
        let needed = self.tx.publish_requests();
        self.ring(needed, true);
        Ok(result)
    }

    /// Rings a doorbell if the backend asked.
    fn ring(&mut self, needed: bool, tx: bool) {
        if needed {
            self.stats.doorbells += 1;
            if tx {
                self.tx_doorbell.ring();
            } else {
                self.rx_doorbell.ring();
            }
        } else {
            self.stats.doorbells_suppressed += 1;
        }
    }

    /// Grants and posts every receive buffer that is not posted, then publishes them
    /// (ringing the receive doorbell if the backend is waiting for buffers). Returns how
    /// many were posted.
    pub fn post_rx_buffers(&mut self) -> Result<usize, NetError> {
        let mut posted = 0;
        for slot in 0..RX {
            if self.rx_posted[slot].is_some() {
                continue;
            }
            let gref = match self.grants.for_rx(slot, self.rx_buffers[slot].frame) {
                Ok(gref) => gref,
                Err(_) => break,
            };
            if self.rx.push_request(&NetRxRequest { id: slot as u32, gref }).is_err() {
                self.grants.done(gref);
                break;
            }
            self.rx_posted[slot] = Some(gref);
            posted += 1;
        }
        if posted > 0 {
            self.stats.buffers_posted += posted as u64;
            let needed = self.rx.publish_requests();
            self.ring(needed, false);
        } else if self.rx_posted() == 0 {
            return Err(NetError::NoGrants);
        }
        Ok(posted)
    }

    /// Takes the next received frame, if one has arrived, copying it into `out` (which
    /// should hold `NET_MAX_FRAME` bytes), and posts its buffer again. Returns the
    /// frame's length. Buffers the backend refused are taken back, counted and skipped.
    pub fn receive_into(&mut self, out: &mut [u8]) -> Result<Option<usize>, NetError> {
        // Each round takes one response for a posted buffer (or fails): at most RX + 1.
        for _ in 0..=RX {
            let Some(response) = self.rx.take_response()? else {
                return Ok(None);
            };
            let (slot, outcome) = self.take_back(&response)?;
            let frame = match outcome {
                Ok(RxOutcome::Frame(bytes)) => bytes,
                Ok(RxOutcome::Refused(_)) => {
                    self.stats.rx_errors += 1;
                    self.post_rx_buffers()?;
                    continue;
                }
                Err(bad) => {
                    self.stats.rx_errors += 1;
                    self.post_rx_buffers()?;
                    return Err(bad);
                }
            };
            let len = frame.len();
            let result = match out.get_mut(..len) {
                Some(dest) => {
                    self.rx_buffers[slot].page.read_bytes(frame.start, dest);
                    self.stats.frames_rx += 1;
                    Ok(Some(len))
                }
                None => Err(NetError::BufferTooSmall { needed: len }),
            };
            self.post_rx_buffers()?;
            return result;
        }
        Ok(None)
    }

    /// The link layer's send: reaps finished transmissions, then sends `frame`; `false`
    /// if it was dropped instead (every transmit buffer in flight, or a bad length). A
    /// network stack above retransmits, as on any lossy link.
    pub fn send_or_drop(&mut self, frame: &[u8]) -> bool {
        let _ = self.reap_tx();
        self.transmit(frame).is_ok()
    }

    /// The link layer's receive: keeps the receive ring stocked, then copies the next
    /// frame that arrived into `out` (which should hold `NET_MAX_FRAME` bytes). A
    /// malformed answer costs its buffer's turn (posted again), not the frames behind
    /// it; the ring bounds how many answers one call looks at.
    pub fn next_frame(&mut self, out: &mut [u8]) -> Option<usize> {
        let _ = self.post_rx_buffers();
        for _ in 0..=RX {
            match self.receive_into(out) {
                Ok(found) => return found,
                Err(_) => continue,
            }
        }
        None
    }

    /// Takes the next received frame, if any, and lends it to `consume` (from a scratch
    /// copy): the shape of smoltcp's `RxToken::consume`.
    pub fn receive_with<R>(&mut self, consume: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, NetError> {
        let mut scratch = [0u8; NET_MAX_FRAME];
        Ok(self.receive_into(&mut scratch)?.map(|len| consume(&scratch[..len])))
    }

    /// Checks a receive response and takes its buffer back (grant revoked, no longer
    /// posted), whatever it says about the frame.
    fn take_back(&mut self, response: &NetRxResponse) -> Result<(usize, Result<RxOutcome, NetError>), NetError> {
        let (slot, outcome) = check::check_rx_response(response, &self.rx_posted)?;
        if let Some(gref) = self.rx_posted[slot].take() {
            self.grants.done(gref);
        }
        Ok((slot, outcome))
    }

    /// Asks for an upcall when the next frame arrives; `true` if one is already there
    /// (then do not sleep). Call it before sleeping for frames.
    pub fn rearm_rx(&mut self) -> bool {
        self.rx.final_check_for_responses()
    }

    /// Asks for an upcall when the next transmission completes; `true` if one already
    /// has. Call it before sleeping for a free transmit buffer ([`NetError::TxBusy`]).
    pub fn rearm_tx(&mut self) -> bool {
        self.tx.final_check_for_responses()
    }
}
