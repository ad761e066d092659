//! What the kernel does with each exception.
//!
//! Two exceptions can be expected:
//! - `#BP` from `int3` (a trap: it is counted and execution resumes after it);
//! - a `#UD` that the kernel announced beforehand with [`expect_invalid_opcode`]: the
//!   handler checks that the faulting instruction really is `ud2`, steps over it and
//!   returns. This is trap-and-emulate in miniature: the instruction faults, the
//!   handler does what it stands for (here: nothing), and execution continues after it.
//!   The self-tests use it to check that a fault goes through the IDT and comes back.
//!   (Not `int3`: on a host that emulates ring 0, as PVM does, `int n` in ring 0 cannot
//!   be emulated; see shared/docs/kvm-platform.md.)
//!
//! Every other exception is a bug in the guest, so the kernel reports it to the
//! hypervisor with the `report_exception` hypercall (vector, faulting `rip`, error code,
//! and CR2 for page faults) and the VMM stops the guest with a message like
//! `guest exception #GP at rip=… error=…`.
//!
//! This is the kernel's policy for traps, above every other layer but the commands:
//! the entry stubs in `arch::idt` call [`trap_dispatch`] by its link name, and it
//! hands each trap to the task layer, the event channels, or the hypervisor.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::idt::SYSCALL_VECTOR;
use crate::arch::trap_frame::TrapFrame;
use crate::arch::{cpu, kernel_map};
use crate::counters::{self, BREAKPOINTS, EMULATED_UD2, PAGE_FAULTS};
use crate::hv::{event_channel, hypercall};
use crate::task::{scheduler, syscall};
use pv_abi::addr::GuestVirt;
use pv_abi::exception::{BREAKPOINT, INVALID_OPCODE, PAGE_FAULT};

/// Set by [`expect_invalid_opcode`], cleared by the handler: one `ud2` may be skipped.
static UD2_EXPECTED: AtomicBool = AtomicBool::new(false);

/// The encoding of `ud2`, and its length.
const UD2: [u8; 2] = [0x0f, 0x0b];

/// Announces that the next `#UD` comes from a deliberate `ud2` and should be stepped over.
pub fn expect_invalid_opcode() {
    UD2_EXPECTED.store(true, Ordering::Relaxed);
}

/// Called by the entry stubs (`arch::idt`) with the saved frame; returning resumes at
/// `frame.rip`.
#[no_mangle]
pub extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    if frame.vector == PAGE_FAULT {
        counters::bump(&PAGE_FAULTS);
    }
    match frame.vector {
        // int3 is a trap, not a fault: rip already points past it, so returning resumes.
        BREAKPOINT => counters::bump(&BREAKPOINTS),
        // A system call through the DPL-3 gate (on a host where `int 0x80` works).
        SYSCALL if frame.came_from_user() => syscall::handle(frame),
        // On a host where `int n` from ring 3 raises #UD: recognise `int 0x80` at rip,
        // step over it, and make the same call (see task/syscall.rs).
        INVALID_OPCODE if frame.came_from_user() && user_code_bytes(GuestVirt::new(frame.rip)) == Some(INT_0X80) => {
            frame.rip += INT_0X80.len() as u64;
            syscall::handle(frame);
        }
        PAGE_FAULT if serve_demand_fault(cpu::read_cr2(), frame.error_code) => {}
        // Any other exception in ring 3 is the task's fault: kill the task, not the kernel.
        vector if frame.came_from_user() && vector < 32 => {
            let address = if vector == PAGE_FAULT { cpu::read_cr2() } else { GuestVirt::new(0) };
            scheduler::kill_current(frame, vector, address);
        }
        INVALID_OPCODE if UD2_EXPECTED.swap(false, Ordering::Relaxed) && is_ud2_at(GuestVirt::new(frame.rip)) => {
            // A fault leaves rip *at* the instruction: step over it by hand.
            frame.rip += UD2.len() as u64;
            counters::bump(&EMULATED_UD2);
        }
        UPCALL => event_channel::upcall(),
        // A spurious interrupt needs no end-of-interrupt: there is nothing to acknowledge.
        SPURIOUS => {}
        _ => report_unexpected(frame),
    }
}

const UPCALL: u64 = pv_abi::event_channel::UPCALL_VECTOR as u64;
/// The system-call vector (`int 0x80`).
const SYSCALL: u64 = SYSCALL_VECTOR as u64;
/// The encoding of `int 0x80`.
const INT_0X80: [u8; 2] = [0xcd, 0x80];
const SPURIOUS: u64 = pv_abi::event_channel::SPURIOUS_VECTOR as u64;

/// Serves a demand-zero fault in the running task; false if there is none to serve.
fn serve_demand_fault(address: GuestVirt, error_code: u64) -> bool {
    scheduler::with_current_memory(|m, w| m.serve_fault(w, address, error_code)).unwrap_or(false)
}

/// Reads the two bytes at a user `rip` (for recognising `int 0x80` after a #UD).
fn user_code_bytes(rip: GuestVirt) -> Option<[u8; 2]> {
    let mut bytes = [0u8; 2];
    let copied = scheduler::with_current_memory(|m, w| m.copy_from_user(w, rip, &mut bytes));
    (copied == Some(true)).then_some(bytes)
}

/// Whether the kernel code at `rip` is `ud2`. Only kernel-image addresses are read.
fn is_ud2_at(rip: GuestVirt) -> bool {
    let Some(second) = rip.checked_add(1) else { return false };
    if kernel_map::virt_to_phys(rip).is_none() || kernel_map::virt_to_phys(second).is_none() {
        return false;
    }
    // SAFETY: both bytes lie in the kernel image, which is mapped and readable.
    let bytes = unsafe { core::ptr::read_unaligned(rip.raw() as *const [u8; 2]) };
    bytes == UD2
}

/// Reports an exception the kernel cannot handle; the VMM stops the guest.
fn report_unexpected(frame: &TrapFrame) -> ! {
    let cr2 = if frame.vector == PAGE_FAULT { cpu::read_cr2() } else { GuestVirt::new(0) };
    hypercall::report_exception(frame.vector, GuestVirt::new(frame.rip), frame.error_code, cr2)
}
