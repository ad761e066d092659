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

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::{cpu, hypercall};
use pv_abi::exception::{BREAKPOINT, INVALID_OPCODE, PAGE_FAULT};

/// The registers as the entry stub in `idt.rs` leaves them on the stack. A task's saved
/// registers are kept in the same shape, so switching tasks is copying one of these.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
#[allow(missing_docs)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Pushed by the stub.
    pub vector: u64,
    /// Pushed by the CPU, or a zero pushed by the stub.
    pub error_code: u64,
    /// From here on: pushed by the CPU.
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl TrapFrame {
    /// All zero.
    pub const ZERO: TrapFrame = TrapFrame {
        r15: 0, r14: 0, r13: 0, r12: 0, r11: 0, r10: 0, r9: 0, r8: 0, rbp: 0, rdi: 0, rsi: 0, rdx: 0, rcx: 0,
        rbx: 0, rax: 0, vector: 0, error_code: 0, rip: 0, cs: 0, rflags: 0, rsp: 0, ss: 0,
    };

    /// Whether the trap came from ring 3.
    pub fn came_from_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

/// How many `#BP` traps have been handled.
pub static BREAKPOINTS: AtomicU64 = AtomicU64::new(0);
/// How many announced `#UD` faults have been stepped over (read by the self-tests).
pub static EMULATED_UD2: AtomicU64 = AtomicU64::new(0);
/// Set by [`expect_invalid_opcode`], cleared by the handler: one `ud2` may be skipped.
static UD2_EXPECTED: AtomicBool = AtomicBool::new(false);

/// The encoding of `ud2`, and its length.
const UD2: [u8; 2] = [0x0f, 0x0b];

/// Announces that the next `#UD` comes from a deliberate `ud2` and should be stepped over.
pub fn expect_invalid_opcode() {
    UD2_EXPECTED.store(true, Ordering::Relaxed);
}

/// Called by the entry stubs with the saved frame; returning resumes at `frame.rip`.
pub extern "C" fn dispatch(frame: &mut TrapFrame) {
    if frame.vector == PAGE_FAULT {
        crate::counters::bump(&crate::counters::PAGE_FAULTS);
    }
    match frame.vector {
        // int3 is a trap, not a fault: rip already points past it, so returning resumes.
        BREAKPOINT => {
            BREAKPOINTS.fetch_add(1, Ordering::Relaxed);
        }
        // A system call through the DPL-3 gate (on a host where `int 0x80` works).
        SYSCALL if frame.came_from_user() => crate::task::syscall::handle(frame),
        // On a host where `int n` from ring 3 raises #UD: recognise `int 0x80` at rip,
        // step over it, and make the same call (see task/syscall.rs).
        INVALID_OPCODE if frame.came_from_user() && crate::task::user_code_bytes(frame.rip) == Some(INT_0X80) => {
            frame.rip += INT_0X80.len() as u64;
            crate::task::syscall::handle(frame);
        }
        PAGE_FAULT if crate::task::serve_demand_fault(cpu::read_cr2(), frame.error_code) => {}
        // Any other exception in ring 3 is the task's fault: kill the task, not the kernel.
        vector if frame.came_from_user() && vector < 32 => {
            let address = if vector == PAGE_FAULT { cpu::read_cr2() } else { 0 };
            crate::task::kill_current(frame, vector, address);
        }
        INVALID_OPCODE if UD2_EXPECTED.swap(false, Ordering::Relaxed) && is_ud2_at(frame.rip) => {
            // A fault leaves rip *at* the instruction: step over it by hand.
            frame.rip += UD2.len() as u64;
            EMULATED_UD2.fetch_add(1, Ordering::Relaxed);
        }
        UPCALL => crate::event_channel::upcall(),
        // A spurious interrupt needs no end-of-interrupt: there is nothing to acknowledge.
        SPURIOUS => {}
        _ => report_unexpected(frame),
    }
}

const UPCALL: u64 = pv_abi::event_channel::UPCALL_VECTOR as u64;
/// The system-call vector (`int 0x80`).
pub const SYSCALL: u64 = 0x80;
/// The encoding of `int 0x80`.
const INT_0X80: [u8; 2] = [0xcd, 0x80];
const SPURIOUS: u64 = pv_abi::event_channel::SPURIOUS_VECTOR as u64;

/// Whether the kernel code at `rip` is `ud2`. Only kernel-image addresses are read.
fn is_ud2_at(rip: u64) -> bool {
    if crate::memory::virt_to_phys(rip).is_none() || crate::memory::virt_to_phys(rip + 1).is_none() {
        return false;
    }
    // SAFETY: both bytes lie in the kernel image, which is mapped and readable.
    let bytes = unsafe { core::ptr::read_unaligned(rip as *const [u8; 2]) };
    bytes == UD2
}

/// Reports an exception the kernel cannot handle; the VMM stops the guest.
fn report_unexpected(frame: &TrapFrame) -> ! {
    let cr2 = if frame.vector == PAGE_FAULT { cpu::read_cr2() } else { 0 };
    hypercall::report_exception(frame.vector, frame.rip, frame.error_code, cr2)
}
