//! The kernel's system calls, as the tasks make them: `int 0x80` with the number in
//! `rax` and the arguments in `rdi` and `rsi` (the table is in the kernel's
//! `task/syscall.rs`; on hosts where `int n` from ring 3 raises `#UD`, the kernel's
//! `#UD` handler makes the same call). Three are needed: a line to the console, a
//! benchmark's measurement, and the end.

use core::fmt::Write;

/// `write(buffer, length)`.
const SYS_WRITE: u64 = 4;
/// `exit(code)`.
const SYS_EXIT: u64 = 0;
/// `bench_report(cycles, check)`.
const SYS_BENCH_REPORT: u64 = 5;

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

/// Hands the kernel one benchmark measurement (TSC cycles and a checksum); `false` if
/// its record is full.
pub fn bench_report(cycles: u64, check: u64) -> bool {
    let result: u64;
    // SAFETY: bench_report reads only its two register arguments and returns in rax;
    // int 0x80 preserves every other register.
    unsafe {
        core::arch::asm!("int 0x80", inlateout("rax") SYS_BENCH_REPORT => result, in("rdi") cycles, in("rsi") check, options(nostack, nomem));
    }
    result == 0
}

/// A line being formatted: bytes past its end are cut.
struct Line {
    bytes: [u8; 256],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Formats one line (cut at 256 bytes) and writes it.
pub fn print_line(args: core::fmt::Arguments<'_>) {
    let mut line = Line { bytes: [0; 256], len: 0 };
    let _ = line.write_fmt(args);
    write(&line.bytes[..line.len]);
}

/// `println!` for the tasks: one console line through the `write` system call.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::sys::print_line(format_args!($($arg)*)) };
}
