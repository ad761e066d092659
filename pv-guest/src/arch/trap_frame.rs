//! The registers a trap leaves on the stack.
//!
//! The entry stubs in `idt.rs` push the general registers on top of what the CPU
//! pushed (and of the error code and vector), so that every trap, whatever its vector,
//! leaves the same [`TrapFrame`]. A task's saved registers are kept in the same shape,
//! so switching tasks is copying one of these.

/// The registers as the entry stub in `idt.rs` leaves them on the stack (last pushed
/// = first field).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct TrapFrame {
    /// General register r15 (pushed last by the stub).
    pub r15: u64,
    /// General register r14.
    pub r14: u64,
    /// General register r13.
    pub r13: u64,
    /// General register r12.
    pub r12: u64,
    /// General register r11.
    pub r11: u64,
    /// General register r10.
    pub r10: u64,
    /// General register r9.
    pub r9: u64,
    /// General register r8.
    pub r8: u64,
    /// Frame pointer.
    pub rbp: u64,
    /// First argument register (system calls: the first argument).
    pub rdi: u64,
    /// Second argument register.
    pub rsi: u64,
    /// Third argument register.
    pub rdx: u64,
    /// General register rcx.
    pub rcx: u64,
    /// General register rbx.
    pub rbx: u64,
    /// Accumulator (system calls: the number, then the result).
    pub rax: u64,
    /// Pushed by the stub.
    pub vector: u64,
    /// Pushed by the CPU, or a zero pushed by the stub.
    pub error_code: u64,
    /// From here on: pushed by the CPU. Where execution resumes.
    pub rip: u64,
    /// Code segment selector; its low two bits are the privilege level trapped from.
    pub cs: u64,
    /// Flags register.
    pub rflags: u64,
    /// Stack pointer.
    pub rsp: u64,
    /// Stack segment selector.
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
