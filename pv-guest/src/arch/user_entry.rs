//! Entering ring 3 from the kernel, and getting back when every task is done.
//!
//! [`enter_user`] is a `setjmp`: it saves the kernel's callee-saved registers and stack
//! pointer, loads a task's saved registers and `iretq`s into ring 3. From then on the
//! kernel only runs when a task traps (a system call, a fault, an interrupt): the CPU
//! switches to the TSS's ring-0 stack, and the trap handler may switch tasks by
//! rewriting the frame it returns through. When no task is left, the handler calls
//! [`back_to_kernel`], the matching `longjmp`, and `enter_user` returns.

use core::sync::atomic::AtomicU64;

use super::trap_frame::TrapFrame;

extern "C" {
    fn enter_user_asm(context: *const TrapFrame);
    fn back_to_kernel_asm() -> !;
}

/// The kernel stack pointer saved by `enter_user_asm` and restored by
/// `back_to_kernel_asm`. Only the assembly touches it (an atomic has the layout of a
/// `u64` and, unlike a plain static, may be written behind Rust's back).
#[no_mangle]
static KERNEL_RSP: AtomicU64 = AtomicU64::new(0);

core::arch::global_asm!(
    ".global enter_user_asm",
    "enter_user_asm:",
    "    push rbp",
    "    push rbx",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    mov [rip + KERNEL_RSP], rsp",
    // Entering ring 3 is returning from a trap that never happened: point rsp at the
    // task's saved frame (TrapFrame layout) and take the trap handlers' own way out
    // (idt.rs), which pops the registers and `iretq`s to the saved rip, cs, rflags,
    // rsp, ss.
    "    mov rsp, rdi",
    "    jmp trap_return",
    ".global back_to_kernel_asm",
    "back_to_kernel_asm:",
    "    mov rsp, [rip + KERNEL_RSP]",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbx",
    "    pop rbp",
    "    ret",
);

/// Runs the task whose saved registers are `context` in ring 3; returns once some trap
/// handler calls [`back_to_kernel`].
pub fn enter_user(context: &TrapFrame) {
    // SAFETY: `context` holds a ring-3 frame (user code and stack selectors, a user rip
    // in the current CR3's lower half) built by the task module; the asm saves every
    // callee-saved register and the stack pointer, which back_to_kernel_asm restores
    // before returning here, as an ordinary function return.
    unsafe { enter_user_asm(context) }
}

/// Returns from the [`enter_user`] call, abandoning the trap handler's stack.
///
/// # Safety
/// Must be called from a trap taken while running a task entered through
/// [`enter_user`]. Nothing on the abandoned stack is dropped, so no
/// [`VcpuRefMut`](super::cpu_local::VcpuRefMut) guard may be alive in any caller.
pub unsafe fn back_to_kernel() -> ! {
    // SAFETY: the caller guarantees we are in a trap taken from a task entered through
    // enter_user, so KERNEL_RSP holds that call's saved stack, still intact (traps run
    // on the TSS's separate ring-0 stack).
    unsafe { back_to_kernel_asm() }
}
