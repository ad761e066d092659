//! The guest's end of the event channels: the upcall handler and waiting for it.
//!
//! Every backend wakes the guest with the same interrupt, the upcall vector. The
//! handler looks at the shared-info page to see *which* channels fired: it swaps each
//! pending flag back to 0 (atomically, so a flag set again meanwhile is not lost),
//! counts it, and acknowledges the interrupt. The drivers then look at their rings:
//! they always re-check the ring after a wake-up, so an extra wake-up costs a little
//! time and a missed flag cannot lose a response.
//!
//! [`wait_for_event`] is how a driver sleeps: `sti; hlt` with interrupts otherwise off,
//! so an upcall can only arrive while the kernel is waiting for one.

use core::sync::atomic::{AtomicU8, Ordering};

use pv_abi::addr::PseudoPhys;
use pv_abi::event_channel::SHARED_INFO_PENDING_OFFSET;
use pv_abi::layout::SHARED_INFO_GPA;

use crate::arch::{apic, cpu, kernel_map};
use crate::counters::{self, CHANNEL_EVENTS, UPCALLS};

fn pending_flag(channel: usize) -> &'static AtomicU8 {
    let addr = kernel_map::phys_to_virt(PseudoPhys::new(SHARED_INFO_GPA)).raw() + (SHARED_INFO_PENDING_OFFSET + channel) as u64;
    // SAFETY: the shared-info page is guest RAM in the direct map, the flag is one byte
    // inside it, and AtomicU8 has the layout of u8. The VMM's backends write it with
    // atomic stores too.
    unsafe { &*(addr as *const AtomicU8) }
}

/// The upcall handler (called from `crate::trap` for the upcall vector).
pub fn upcall() {
    counters::bump(&UPCALLS);
    for (channel, count) in CHANNEL_EVENTS.iter().enumerate() {
        // Acquire: pairs with the backend's release store, so the responses it
        // published before setting the flag are visible to the driver that follows.
        if pending_flag(channel).swap(0, Ordering::Acquire) != 0 {
            counters::bump(count);
        }
    }
    apic::end_of_interrupt();
}

/// Sleeps until an interrupt (an upcall) arrives.
pub fn wait_for_event() {
    cpu::wait_for_interrupt();
}

/// A `frontend_drivers::WaitForEvent` for the drivers.
#[derive(Clone, Copy)]
pub struct UpcallWait;

impl frontend_drivers::WaitForEvent for UpcallWait {
    fn wait(&self) {
        wait_for_event();
    }
}

/// A `frontend_drivers::Doorbell`: a write to the device's doorbell port.
#[derive(Clone, Copy)]
pub struct PortDoorbell {
    /// The port, from the boot-info page.
    pub port: u16,
}

impl frontend_drivers::Doorbell for PortDoorbell {
    fn ring(&self) {
        cpu::outb(self.port, 0);
    }
}
