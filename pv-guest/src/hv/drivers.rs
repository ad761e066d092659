//! The kernel's split-driver frontends, set up from the boot-info page.
//!
//! The boot-info page says where each device's ring is, which event channel and which
//! doorbell port it uses. [`init`] switches on the local APIC (so upcalls can arrive)
//! and creates the console frontend, the block frontend if hv attached a disk, and the
//! balloon frontend if hv serves one (`mm::balloon` decides which frames it carries).

use frontend_drivers::balloon::BalloonFront;
use frontend_drivers::block::{BlockFront, MAX_IN_FLIGHT};
use frontend_drivers::console::ConsoleFront;
use frontend_drivers::grant_table::GrantTableFront;
use frontend_drivers::net::{NetBuffer, NetFront, NetHandover};
use pv_abi::addr::{PseudoPhys, PAGE_SIZE};
use pv_abi::device::block::BLOCK_MAX_SEGMENTS;
use pv_abi::grant::{GrantRef, GRANT_ENTRIES};
use pv_abi::BootInfo;

use crate::arch::apic;
use crate::arch::cpu_local::{VcpuCell, VcpuRefMut};

use super::event_channel::{PortDoorbell, UpcallWait};
use super::shared_page::PhysPage;

/// The console frontend as the kernel instantiates it.
pub type Console = ConsoleFront<PhysPage, PortDoorbell, UpcallWait>;
/// The block frontend as the kernel instantiates it.
pub type Block = BlockFront<PhysPage, PhysPage, PortDoorbell, UpcallWait>;
/// Transmit and receive buffers of the network frontend (one frame each).
pub const NET_TX_BUFFERS: usize = pv_user::handoff::net::TX_BUFFERS;
/// Receive buffers: enough for a burst of frames between two polls of the stack.
pub const NET_RX_BUFFERS: usize = pv_user::handoff::net::RX_BUFFERS;
/// Grant entries the network frontend takes from the table (one per buffer in flight,
/// with room to spare); the block device keeps the rest.
const NET_GRANT_ENTRIES: u32 = 64;
// What the block device keeps (entry 0 is nobody's) holds a whole ring of the largest
// requests, each with its own grants: 32 × 16 = 512 entries, so a ring-3 task's
// persistent buffers (`task::blk_io`) can keep 32 reads of 64 KiB in flight.
const _: () = assert!(GRANT_ENTRIES - 1 - NET_GRANT_ENTRIES >= MAX_IN_FLIGHT as u32 * BLOCK_MAX_SEGMENTS as u32);
/// The network frontend as the kernel instantiates it.
pub type Net = NetFront<PhysPage, PhysPage, PhysPage, PortDoorbell, NET_TX_BUFFERS, NET_RX_BUFFERS>;

/// The balloon frontend as the kernel instantiates it.
pub type Balloon = BalloonFront<PhysPage, PortDoorbell>;

/// The console frontend, once [`init`] has made it (and if hv attached one). Never
/// used by an interrupt handler: the upcall handler only reads event flags.
static CONSOLE: VcpuCell<Option<Console>> = VcpuCell::new(None);
/// The block frontend, if hv attached a disk. Never used by an interrupt handler.
static BLOCK: VcpuCell<Option<Block>> = VcpuCell::new(None);
/// The network frontend, once the kernel's stack first asks for it ([`net`]). Never
/// used by an interrupt handler.
static NET: VcpuCell<Option<Net>> = VcpuCell::new(None);
/// The network device before anyone has used it: its rings, grants and buffers, until
/// either the kernel makes its frontend of them ([`net`]) or a ring-3 task borrows them
/// ([`lend_net`]). Whoever comes first keeps the device for the rest of the boot: the
/// rings' private indices live with the frontend that drives them.
static NET_PARTS: VcpuCell<Option<NetParts>> = VcpuCell::new(None);
/// The network device once it has been lent to a ring-3 task, between tasks: its parts,
/// the grants made for good, and where the last task left the rings.
static NET_LENT: VcpuCell<Option<LentNet>> = VcpuCell::new(None);

/// The network device as the kernel keeps it between two holders that drive it on
/// persistent grants (ring-3 tasks, then maybe the kernel's own stack).
pub struct LentNet {
    /// Its rings, ports, grant-table range and buffers.
    pub parts: NetParts,
    /// The grant of each transmit buffer, read-only, made once.
    pub tx_grants: [GrantRef; NET_TX_BUFFERS],
    /// The grant of each receive buffer, writable, made once.
    pub rx_grants: [GrantRef; NET_RX_BUFFERS],
    /// Where the last holder left the rings: `None` before the first holder (the rings are
    /// fresh) or after one that did not say (the device is lost for this boot: see `lost`).
    pub left: Option<NetHandover>,
    /// A holder ended without saying where it left the rings: nobody can drive them again.
    pub lost: bool,
}
/// The network device's share of the grant table, set aside by [`init`] until the
/// frontend is made (`crate::net::front`, once the frame allocator can lend it buffers).
static NET_GRANTS: VcpuCell<Option<GrantTableFront<PhysPage>>> = VcpuCell::new(None);
/// The balloon frontend, if hv serves one. Never used by an interrupt handler.
static BALLOON: VcpuCell<Option<Balloon>> = VcpuCell::new(None);

/// Switches on interrupts from devices and creates the frontends.
pub fn init(info: &BootInfo) {
    apic::enable();
    // Every PhysPage::new below names a page the VMM announced in the boot-info page (a
    // device's ring or a grant-table frame). The guest has to trust its hypervisor about
    // its own memory map; `BootInfo::check` already refused pages outside the reserved
    // area below the kernel (pv_abi::layout), where no Rust object of ours lives.
    if info.console.present != 0 {
        let doorbell = PortDoorbell { port: info.console.doorbell_port };
        // SAFETY: the console ring the boot-info page announced, in the reserved area
        // (checked by BootInfo::check): shared with the console backend alone.
        let ring = unsafe { PhysPage::new(PseudoPhys::new(info.console.ring_gpa)) };
        *CONSOLE.borrow_mut() = Some(ConsoleFront::new(ring, doorbell, UpcallWait));
    }
    // One grant table for every frontend that lends frames: the network device takes the
    // top of it, the block device keeps the rest. Its frames are contiguous from
    // `grant_table_gpa`; `BootInfo::check` made sure there are GRANT_TABLE_FRAMES of them,
    // all in the reserved area.
    let frames = core::array::from_fn(|i| {
        let gpa = PseudoPhys::new(info.grant_table_gpa + i as u64 * PAGE_SIZE);
        // SAFETY: frame i < GRANT_TABLE_FRAMES of the grant table, which BootInfo::check
        // found page-aligned and wholly inside the reserved area: no Rust object lives there.
        unsafe { PhysPage::new(gpa) }
    });
    let mut grants = GrantTableFront::new(frames);
    if info.net_tx.present != 0 && info.net_rx.present != 0 {
        match grants.split_off(NET_GRANT_ENTRIES) {
            Ok(net_grants) => *NET_GRANTS.borrow_mut() = Some(net_grants),
            Err(_) => crate::println!("pv-guest: no grant entries left for the network device; running without it"),
        }
    }
    if info.block.present != 0 {
        let doorbell = PortDoorbell { port: info.block.doorbell_port };
        // SAFETY: the block ring the boot-info page announced, in the reserved area
        // (checked by BootInfo::check): shared with the block backend alone.
        let ring = unsafe { PhysPage::new(PseudoPhys::new(info.block.ring_gpa)) };
        *BLOCK.borrow_mut() = Some(BlockFront::new(ring, grants, doorbell, UpcallWait));
    }
    if info.balloon.present != 0 {
        let doorbell = PortDoorbell { port: info.balloon.doorbell_port };
        // SAFETY: the balloon ring the boot-info page announced, in the reserved area
        // (checked by BootInfo::check): shared with the balloon backend alone.
        let ring = unsafe { PhysPage::new(PseudoPhys::new(info.balloon.ring_gpa)) };
        *BALLOON.borrow_mut() = Some(BalloonFront::new(ring, doorbell));
    }
}

/// The grant entries set aside for the network device (`None` without one, or once taken).
pub fn take_net_grants() -> Option<GrantTableFront<PhysPage>> {
    NET_GRANTS.borrow_mut().take()
}

/// Everything a network frontend is made of, before one is made.
pub struct NetParts {
    /// The transmit ring's page (guest-physical), as the boot-info page announced it.
    pub tx_ring: PseudoPhys,
    /// The receive ring's page.
    pub rx_ring: PseudoPhys,
    /// The transmit doorbell's port.
    pub tx_doorbell_port: u16,
    /// The receive doorbell's port.
    pub rx_doorbell_port: u16,
    /// The device's range of the grant table.
    pub grants: GrantTableFront<PhysPage>,
    /// The transmit buffers.
    pub tx: [NetBuffer<PhysPage>; NET_TX_BUFFERS],
    /// The receive buffers.
    pub rx: [NetBuffer<PhysPage>; NET_RX_BUFFERS],
}

/// Keeps the network device's rings (as `info` announces them), `grants` and the buffer
/// frames the caller lends it, for [`net`] or [`lend_net`].
pub fn install_net(info: &BootInfo, grants: GrantTableFront<PhysPage>, tx: [NetBuffer<PhysPage>; NET_TX_BUFFERS], rx: [NetBuffer<PhysPage>; NET_RX_BUFFERS]) {
    *NET_PARTS.borrow_mut() = Some(NetParts {
        tx_ring: PseudoPhys::new(info.net_tx.ring_gpa),
        rx_ring: PseudoPhys::new(info.net_rx.ring_gpa),
        tx_doorbell_port: info.net_tx.doorbell_port,
        rx_doorbell_port: info.net_rx.doorbell_port,
        grants,
        tx,
        rx,
    });
}

/// The kernel's network frontend (`None` if hv attached no network, or if the device
/// was lent to a ring-3 task), borrowed until the guard is dropped. The first call makes
/// it and posts its receive buffers.
pub fn net() -> VcpuRefMut<'static, Option<Net>> {
    let mut net = NET.borrow_mut();
    if net.is_none() {
        *net = take_back_lent_net();
    }
    if net.is_none() {
        if let Some(p) = NET_PARTS.borrow_mut().take() {
            // SAFETY: the rings are the pages hv announced for the network device (see `init`).
            let (tx_ring, rx_ring) = unsafe { (PhysPage::new(p.tx_ring), PhysPage::new(p.rx_ring)) };
            let (tx_doorbell, rx_doorbell) = (PortDoorbell { port: p.tx_doorbell_port }, PortDoorbell { port: p.rx_doorbell_port });
            let mut front = NetFront::new(tx_ring, rx_ring, p.grants, p.tx, p.rx, tx_doorbell, rx_doorbell);
            let _ = front.post_rx_buffers();
            *net = Some(front);
        }
    }
    net
}

/// The kernel's frontend over a device a ring-3 task handed back, going on where it left
/// the rings (on the grants made for it); `None` if there is none to take back.
fn take_back_lent_net() -> Option<Net> {
    let mut lent = NET_LENT.borrow_mut();
    let left = lent.as_ref().and_then(|l| l.left)?;
    let LentNet { parts: p, tx_grants, rx_grants, .. } = lent.take()?;
    // SAFETY: the rings are the pages hv announced for the network device (see `init`).
    let (tx_ring, rx_ring) = unsafe { (PhysPage::new(p.tx_ring), PhysPage::new(p.rx_ring)) };
    let (tx_doorbell, rx_doorbell) = (PortDoorbell { port: p.tx_doorbell_port }, PortDoorbell { port: p.rx_doorbell_port });
    let front = NetFront::resume_persistent(tx_ring, rx_ring, left, tx_grants, rx_grants, p.tx, p.rx, tx_doorbell, rx_doorbell);
    if front.is_none() {
        crate::println!("pv-guest: the network task left the rings in a state that does not add up; the device is lost for this boot");
    }
    front
}

/// The network device as the kernel lends it to a ring-3 task.
// The variants differ in size by the grant arrays; the kernel has no heap to box them
// into, and the value lives on the stack for one call.
#[allow(clippy::large_enum_variant)]
pub enum NetToLend {
    /// Never driven: the caller grants its buffers and keeps them in a [`LentNet`].
    Fresh(NetParts),
    /// Driven by a task before, as it left the rings.
    Driven(LentNet),
}

/// Hands the network device to the caller, to lend to a ring-3 task; `None` if there is
/// none, the kernel's own stack drives it, or a task lost it.
pub fn lend_net() -> Option<NetToLend> {
    let mut lent = NET_LENT.borrow_mut();
    if lent.as_ref().is_some_and(|l| l.lost) {
        return None;
    }
    if let Some(l) = lent.take() {
        return Some(NetToLend::Driven(l));
    }
    NET_PARTS.borrow_mut().take().map(NetToLend::Fresh)
}

/// Keeps the device between two holders.
pub fn keep_lent_net(lent: LentNet) {
    *NET_LENT.borrow_mut() = Some(lent);
}

/// Whether the network device was lost by a ring-3 task earlier in this boot (it ended
/// without saying where it left the rings).
pub fn net_lost() -> bool {
    NET_LENT.borrow_mut().as_ref().is_some_and(|l| l.lost)
}

/// The console frontend (`None` before [`init`], or without a console device),
/// borrowed until the guard is dropped.
pub fn console() -> VcpuRefMut<'static, Option<Console>> {
    CONSOLE.borrow_mut()
}

/// The block frontend (`None` if hv attached no disk), borrowed until the guard is dropped.
pub fn block() -> VcpuRefMut<'static, Option<Block>> {
    BLOCK.borrow_mut()
}

/// The balloon frontend (`None` if hv serves no balloon), borrowed until the guard is dropped.
pub fn balloon() -> VcpuRefMut<'static, Option<Balloon>> {
    BALLOON.borrow_mut()
}
