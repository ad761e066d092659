//! A doorbell rung from ring 3: one `out` to the backend's port, which the kernel
//! opened in the TSS's I/O permission bitmap for the task (no system call).

use frontend_drivers::Doorbell;

/// The doorbell of one ring.
#[derive(Clone, Copy)]
pub struct PortDoorbell {
    port: u16,
}

impl PortDoorbell {
    /// The doorbell at `port` (from the handoff).
    pub const fn new(port: u16) -> Self {
        PortDoorbell { port }
    }
}

impl Doorbell for PortDoorbell {
    fn ring(&self) {
        // SAFETY: an `out` touches no memory. If the kernel opened this port (the
        // device's doorbell, from the handoff) it only wakes the backend; if not, the CPU
        // raises #GP and the kernel ends the task.
        unsafe { core::arch::asm!("out dx, al", in("dx") self.port, in("al") 0u8, options(nomem, nostack, preserves_flags)) };
    }
}
