//! The network device as this task sees it: the rings and buffers the kernel mapped at
//! the addresses `pv_user::handoff::net` fixes, the doorbells (`pv_user`'s), and the
//! frontend over them as the stack's [`FrameIo`].

use frontend_drivers::net::{NetBuffer, NetFront};
use pv_abi::addr::PseudoFrame;
use pv_netstack::device::FrameIo;
use pv_user::doorbell::PortDoorbell;
use pv_user::handoff::net::{Handback, Handoff, BUFFERS_VA, HANDBACK_MAGIC, HANDBACK_VA, RINGS_VA, RX_BUFFERS, TX_BUFFERS};
use pv_user::page::MappedPage;

/// Bytes in a page.
const PAGE: usize = pv_user::page::PAGE;

/// The network frontend as this task makes it (its grant-table type is never used:
/// the buffers come granted).
pub type Front = NetFront<MappedPage, MappedPage, MappedPage, PortDoorbell, TX_BUFFERS, RX_BUFFERS>;

/// A page of the device window.
fn window_page(va: u64) -> MappedPage {
    // SAFETY: the kernel maps the rings and buffers at these addresses
    // (pv_user::handoff::net) before the task starts and keeps them mapped while it runs.
    unsafe { MappedPage::at(va) }
}

/// The frontend over everything the handoff describes: the rings initialised, or, if
/// another holder drove them before, taken over where it left them (`None` if what it
/// left does not add up).
pub fn front(h: &Handoff) -> Option<Front> {
    let tx_buffers: [NetBuffer<MappedPage>; TX_BUFFERS] = core::array::from_fn(|i| NetBuffer { frame: PseudoFrame::new(h.tx_frames[i]), page: window_page(BUFFERS_VA + (i * PAGE) as u64) });
    let rx_buffers: [NetBuffer<MappedPage>; RX_BUFFERS] =
        core::array::from_fn(|i| NetBuffer { frame: PseudoFrame::new(h.rx_frames[i]), page: window_page(BUFFERS_VA + ((TX_BUFFERS + i) * PAGE) as u64) });
    let (tx_ring, rx_ring) = (window_page(RINGS_VA), window_page(RINGS_VA + PAGE as u64));
    let (tx_doorbell, rx_doorbell) = (PortDoorbell::new(h.tx_doorbell_port), PortDoorbell::new(h.rx_doorbell_port));
    if h.resume == 1 {
        return NetFront::resume_persistent(tx_ring, rx_ring, h.left, h.tx_grants, h.rx_grants, tx_buffers, rx_buffers, tx_doorbell, rx_doorbell);
    }
    Some(NetFront::with_persistent_grants(tx_ring, rx_ring, h.tx_grants, h.rx_grants, tx_buffers, rx_buffers, tx_doorbell, rx_doorbell))
}

/// How long the task waits, at its exit, for its last transmissions to be answered so
/// that it can hand the rings on (microseconds).
const HANDOVER_WAIT_US: u64 = 100_000;

/// Writes where the frontend leaves the rings into the handback page, for the kernel
/// to give the next holder; first waits (bounded) for every transmission's answer.
/// Returns whether it could.
pub fn hand_back(front: &mut Front, clock: &pv_netstack::time::NetClock) -> bool {
    let deadline = clock.ticks().saturating_add(clock.ticks_in(HANDOVER_WAIT_US));
    let left = loop {
        if let Some(left) = front.handover() {
            break left;
        }
        if clock.ticks() > deadline {
            return false;
        }
        core::hint::spin_loop();
    };
    let back = Handback { magic: HANDBACK_MAGIC, left };
    // SAFETY: the kernel maps the handback page (read-write, one page, Handback fits)
    // at HANDBACK_VA for the task's whole life; nothing else of the task's refers to it.
    unsafe { core::ptr::write_volatile(HANDBACK_VA as *mut Handback, back) };
    true
}

/// The frontend as the stack's link: `send` drops a frame (and counts it) when every
/// transmit buffer is in flight, as the kernel's does; `recv` keeps the receive ring
/// stocked and takes the next frame.
pub struct FrontLink {
    /// The frontend.
    pub front: Front,
    /// Frames dropped because no transmit buffer was free.
    pub dropped: u64,
}

impl FrameIo for FrontLink {
    fn send(&mut self, frame: &[u8]) {
        if !self.front.send_or_drop(frame) {
            self.dropped += 1;
        }
    }

    fn recv(&mut self, buffer: &mut [u8]) -> Option<usize> {
        self.front.next_frame(buffer)
    }
}
