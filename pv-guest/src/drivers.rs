//! The kernel's split-driver frontends, set up from the boot-info page.
//!
//! The boot-info page says where each device's ring is, which event channel and which
//! doorbell port it uses. [`init`] switches on the local APIC (so upcalls can arrive)
//! and creates the console frontend, and the block frontend if hv attached a disk.

use frontend_drivers::block::BlockFront;
use frontend_drivers::console::ConsoleFront;
use frontend_drivers::grant_table::GrantTableFront;
use pv_abi::BootInfo;

use crate::apic;
use crate::event_channel::{PortDoorbell, UpcallWait};
use crate::shared_page::PhysPage;

/// The console frontend as the kernel instantiates it.
pub type Console = ConsoleFront<PhysPage, PortDoorbell, UpcallWait>;
/// The block frontend as the kernel instantiates it.
pub type Block = BlockFront<PhysPage, PhysPage, PortDoorbell, UpcallWait>;

static mut CONSOLE: Option<Console> = None;
static mut BLOCK: Option<Block> = None;

/// Switches on interrupts from devices and creates the frontends.
pub fn init(info: &BootInfo) {
    apic::enable();
    // SAFETY: called once, from kmain, before anything uses the drivers.
    #[allow(static_mut_refs)]
    unsafe {
        if info.console.present != 0 {
            let doorbell = PortDoorbell { port: info.console.doorbell_port };
            CONSOLE = Some(ConsoleFront::new(PhysPage::new(info.console.ring_gpa), doorbell, UpcallWait));
        }
        if info.block.present != 0 {
            let grants = GrantTableFront::new(PhysPage::new(info.grant_table_gpa));
            let doorbell = PortDoorbell { port: info.block.doorbell_port };
            BLOCK = Some(BlockFront::new(PhysPage::new(info.block.ring_gpa), grants, doorbell, UpcallWait));
        }
    }
}

/// The console frontend, once it is up.
pub fn console() -> Option<&'static mut Console> {
    // SAFETY: one vCPU, and the frontends are never used from interrupt handlers, so
    // at most one reference is in use at a time.
    #[allow(static_mut_refs)]
    unsafe {
        CONSOLE.as_mut()
    }
}

/// The block frontend, if hv attached a disk.
pub fn block() -> Option<&'static mut Block> {
    // SAFETY: as for `console`.
    #[allow(static_mut_refs)]
    unsafe {
        BLOCK.as_mut()
    }
}
