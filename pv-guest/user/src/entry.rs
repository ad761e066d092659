//! How a driver task starts: the kernel enters it at `_start` with `rsp` at the top of
//! its stack and its handoff page's address in `rdi`; [`task_entry!`](crate::task_entry)
//! aligns the stack as a call expects and calls the program's Rust entry with it. And
//! the clock a task reads: the TSC, natively.

/// Defines `_start` for a task: `task_entry!(main)` calls `extern "C" fn main(handoff:
/// *const H) -> !` with the address the kernel put in `rdi`.
#[macro_export]
macro_rules! task_entry {
    ($main:path) => {
        core::arch::global_asm!(
            ".section .text.start, \"ax\"",
            ".global _start",
            "_start:",
            "    and rsp, -16",
            "    call {main}",
            "    ud2",
            main = sym $main,
        );
    };
}

/// The time-stamp counter, read in ring 3 (the kernel leaves CR4.TSD clear).
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc only reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}
