//! Where a network backend's frames go and come from: one **port** of a network.
//!
//! The network backend (netback) moves Ethernet frames between a guest's rings and a
//! port; the virtual switch (`switch`) is the usual thing on the other side, as Xen's
//! dom0 bridge is for its netbacks. Keeping the two apart behind this trait is what lets
//! each be tested alone: netback against a pair of in-memory queues, the switch against
//! frames a test writes by hand.
//!
//! A port never blocks its caller. A frame sent into a full network is dropped and
//! counted, as a real switch drops when a queue is full; the sender learns nothing,
//! exactly as Ethernet promises nothing. Frames for the port wait in a bounded queue, and
//! [`FramePort::ready`] is an eventfd that becomes readable when one arrives, so a
//! backend thread can sleep on it next to its doorbells (with `poll`).

use vmm_sys_util::eventfd::EventFd;

/// The largest Ethernet frame a port carries, without the frame check sequence:
/// 14 bytes of header and a 1500-byte payload. The network device's ABI fixes it
/// (`pv_abi::device::net::NET_MAX_FRAME`): a port carries exactly what a guest may send.
pub const MAX_FRAME_BYTES: usize = pv_abi::device::net::NET_MAX_FRAME;
/// The smallest frame a port accepts: an Ethernet header (destination, source, type).
pub const MIN_FRAME_BYTES: usize = pv_abi::device::net::NET_MIN_FRAME;

/// One Ethernet frame, owned (destination MAC first; no frame check sequence).
pub type Frame = Vec<u8>;

/// One port of a network, as a backend sees it.
pub trait FramePort: Send {
    /// Hands one frame to the network. Never blocks; a frame the network cannot take
    /// now (a full queue, a bad length) is dropped and counted by the network.
    fn transmit(&self, frame: &[u8]);
    /// The next frame the network has queued for this port, if any.
    fn receive(&self) -> Option<Frame>;
    /// Readable (an eventfd counter above zero) when a frame has been queued since it was
    /// last read: poll it, read it, then call [`FramePort::receive`] until it returns
    /// `None`.
    fn ready(&self) -> &EventFd;
}
