//! The kernel's system calls, as this task makes them: `int 0x80` with the number in
//! `rax` and the arguments in `rdi` and `rsi` (the table is in the kernel's
//! `task/syscall.rs`). Only two are needed: a line to the console, and the end.

use core::fmt::Write;

use pv_netstack::http::SliceWriter;

/// `write(buffer, length)`.
const SYS_WRITE: u64 = 4;
/// `exit(code)`.
const SYS_EXIT: u64 = 0;

/// Writes `text` to the guest's console (a line; the kernel ends it if it does not).
pub fn write(text: &[u8]) {
    // SAFETY: the kernel's write call reads `text.len()` bytes from `text` (a valid
    // buffer of ours, checked again by the kernel through our page tables), writes
    // nothing of ours and returns in rax; int 0x80 preserves every other register.
    unsafe {
        core::arch::asm!("int 0x80", inlateout("rax") SYS_WRITE => _, in("rdi") text.as_ptr(), in("rsi") text.len(), options(nostack, readonly));
    }
}

/// Ends the task with `code`.
pub fn exit(code: u64) -> ! {
    // SAFETY: exit does not return: the kernel frees this task and runs the next one.
    unsafe { core::arch::asm!("int 0x80", in("rax") SYS_EXIT, in("rdi") code, options(noreturn, nostack)) }
}

/// Formats one line (cut at 256 bytes) and writes it.
pub fn print_line(args: core::fmt::Arguments<'_>) {
    let mut buffer = [0u8; 256];
    let mut w = SliceWriter::new(&mut buffer);
    let _ = w.write_fmt(args);
    let len = w.len;
    write(&buffer[..len]);
}

/// `println!` for this task: one console line through the `write` system call.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::sys::print_line(format_args!($($arg)*)) };
}
