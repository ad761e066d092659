//! The kernel's split-driver frontends, set up from the boot-info page.
//!
//! The boot-info page says where each device's ring is, which event channel and which
//! doorbell port it uses. [`init`] switches on the local APIC (so upcalls can arrive)
//! and creates the console frontend, the block frontend if hv attached a disk, and the
//! balloon frontend if hv serves one (`mm::balloon` decides which frames it carries).

use frontend_drivers::balloon::BalloonFront;
use frontend_drivers::block::BlockFront;
use frontend_drivers::console::ConsoleFront;
use frontend_drivers::grant_table::GrantTableFront;
use pv_abi::addr::PseudoPhys;
use pv_abi::BootInfo;

use crate::arch::apic;
use crate::arch::cpu_local::{VcpuCell, VcpuRefMut};

use super::event_channel::{PortDoorbell, UpcallWait};
use super::shared_page::PhysPage;

/// The console frontend as the kernel instantiates it.
pub type Console = ConsoleFront<PhysPage, PortDoorbell, UpcallWait>;
/// The block frontend as the kernel instantiates it.
pub type Block = BlockFront<PhysPage, PhysPage, PortDoorbell, UpcallWait>;

/// The balloon frontend as the kernel instantiates it.
pub type Balloon = BalloonFront<PhysPage, PortDoorbell>;

/// The console frontend, once [`init`] has made it (and if hv attached one). Never
/// used by an interrupt handler: the upcall handler only reads event flags.
static CONSOLE: VcpuCell<Option<Console>> = VcpuCell::new(None);
/// The block frontend, if hv attached a disk. Never used by an interrupt handler.
static BLOCK: VcpuCell<Option<Block>> = VcpuCell::new(None);
/// The balloon frontend, if hv serves one. Never used by an interrupt handler.
static BALLOON: VcpuCell<Option<Balloon>> = VcpuCell::new(None);

/// Switches on interrupts from devices and creates the frontends.
pub fn init(info: &BootInfo) {
    apic::enable();
    // SAFETY (for each PhysPage::new below): the VMM announced these pages in the
    // boot-info page as the device's ring and the grant table; they lie in the area it
    // reserves below the kernel (pv_abi::layout), where no Rust object of ours lives.
    // The guest has to trust its hypervisor about its own memory map.
    if info.console.present != 0 {
        let doorbell = PortDoorbell { port: info.console.doorbell_port };
        // SAFETY: see above.
        let ring = unsafe { PhysPage::new(PseudoPhys::new(info.console.ring_gpa)) };
        *CONSOLE.borrow_mut() = Some(ConsoleFront::new(ring, doorbell, UpcallWait));
    }
    if info.block.present != 0 {
        // SAFETY: see above.
        let grants = GrantTableFront::new(unsafe { PhysPage::new(PseudoPhys::new(info.grant_table_gpa)) });
        let doorbell = PortDoorbell { port: info.block.doorbell_port };
        // SAFETY: see above.
        let ring = unsafe { PhysPage::new(PseudoPhys::new(info.block.ring_gpa)) };
        *BLOCK.borrow_mut() = Some(BlockFront::new(ring, grants, doorbell, UpcallWait));
    }
    if info.balloon.present != 0 {
        let doorbell = PortDoorbell { port: info.balloon.doorbell_port };
        // SAFETY: see above.
        let ring = unsafe { PhysPage::new(PseudoPhys::new(info.balloon.ring_gpa)) };
        *BALLOON.borrow_mut() = Some(BalloonFront::new(ring, doorbell));
    }
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
