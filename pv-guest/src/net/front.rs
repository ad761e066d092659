//! Setting up the network frontend at boot: buffer frames from the frame allocator, the
//! grant entries `hv::drivers` set aside, the rings the boot-info page announces.
//!
//! It lives here, above `mm` and `hv`, because it needs both: `hv::drivers` owns the
//! frontends but may not allocate frames (its layer is below `mm`).

use frontend_drivers::net::NetBuffer;
use pv_abi::addr::{PseudoPhys, PAGE_SHIFT};
use pv_abi::BootInfo;

use crate::hv::drivers::{self, NET_RX_BUFFERS, NET_TX_BUFFERS};
use crate::hv::shared_page::PhysPage;
use crate::mm::frames;
use crate::println;

/// One buffer: a frame of its own, seen through the direct map.
fn buffer() -> Option<NetBuffer<PhysPage>> {
    let frame = frames::alloc()?;
    // SAFETY: a frame just taken from the allocator belongs to this buffer alone; it is
    // guest RAM in the direct map, shared from now on only with the network backend,
    // through grants.
    Some(NetBuffer { frame, page: unsafe { PhysPage::new(PseudoPhys::new(frame.raw() << PAGE_SHIFT)) } })
}

/// `N` buffers, or `None` if memory ran out (the frames taken stay with the kernel:
/// this happens once, at boot).
fn buffers<const N: usize>() -> Option<[NetBuffer<PhysPage>; N]> {
    let made: [Option<NetBuffer<PhysPage>>; N] = core::array::from_fn(|_| buffer());
    if made.iter().any(Option::is_none) {
        return None;
    }
    Some(made.map(|b| b.expect("checked above: every buffer was made")))
}

/// Makes the network frontend if hv announced a network device.
pub fn attach(info: &BootInfo) {
    let Some(grants) = drivers::take_net_grants() else { return };
    match (buffers::<NET_TX_BUFFERS>(), buffers::<NET_RX_BUFFERS>()) {
        (Some(tx), Some(rx)) => drivers::install_net(info, grants, tx, rx),
        _ => println!("pv-guest: not enough memory for the network device's buffers; running without it"),
    }
}
