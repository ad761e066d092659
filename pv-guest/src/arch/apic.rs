//! The local APIC: the part of the CPU that receives interrupts.
//!
//! hv's devices interrupt the guest with MSIs that KVM delivers to the in-kernel local
//! APIC. The kernel needs only two of its registers: the spurious-interrupt vector
//! register, whose bit 8 switches the APIC on (it starts "software-disabled"), and the
//! end-of-interrupt register, written at the end of every interrupt handler so the APIC
//! will deliver the next one.

use pv_abi::event_channel::SPURIOUS_VECTOR;
use pv_abi::layout::LOCAL_APIC_VIRT;

/// Spurious-interrupt vector register.
const SVR: u64 = 0xf0;
/// End-of-interrupt register.
const EOI: u64 = 0xb0;
/// SVR bit 8: APIC software enable.
const SVR_ENABLE: u32 = 1 << 8;

fn write(register: u64, value: u32) {
    // SAFETY: the VMM maps the local APIC's register page, uncached, at
    // LOCAL_APIC_VIRT; the registers are 32-bit, 16-byte aligned, and must be written
    // with exactly one 32-bit store, which a volatile write guarantees.
    unsafe { core::ptr::write_volatile((LOCAL_APIC_VIRT + register) as *mut u32, value) };
}

/// Switches the local APIC on.
pub fn enable() {
    write(SVR, SVR_ENABLE | u32::from(SPURIOUS_VECTOR));
}

/// Signals the end of the current interrupt.
pub fn end_of_interrupt() {
    write(EOI, 0);
}
