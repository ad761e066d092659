//! `print!` and `println!` for the kernel.
//!
//! Output is collected in a line buffer and sent one line (or one full buffer) at a
//! time: through the console device's ring once the driver is up (no VM exit at all:
//! the doorbell is an ioeventfd), and through the `console_write` hypercall before that
//! (early boot) or if the device is missing. Each line is flushed before the next one
//! starts, so the console is in effect synchronous: nothing printed is lost if the
//! guest stops right after.

use core::fmt::{self, Write};

use crate::arch::cpu_local::VcpuCell;

/// Bytes collected before a flush is forced even without a newline: one console request.
const LINE_BUFFER_SIZE: usize = pv_abi::device::console::CONSOLE_CHUNK;

/// A fixed-capacity byte buffer that implements `fmt::Write`, dropping what does not fit.
pub struct FixedBuf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> FixedBuf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        FixedBuf { bytes: [0; N], len: 0 }
    }

    /// What has been written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Forgets the contents.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    fn is_full(&self) -> bool {
        self.len == N
    }

    fn push(&mut self, b: u8) {
        if self.len < N {
            self.bytes[self.len] = b;
            self.len += 1;
        }
    }
}

impl<const N: usize> Default for FixedBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Write for FixedBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            self.push(b);
        }
        Ok(())
    }
}

/// The console: a line buffer flushed through the `console_write` hypercall.
struct Console {
    line: FixedBuf<LINE_BUFFER_SIZE>,
}

impl Console {
    fn flush(&mut self) {
        let line = self.line.as_bytes();
        if !line.is_empty() {
            // Nothing useful can be done if the console itself fails: fall back to the
            // hypercall so the text at least gets out.
            let through_device =
                super::drivers::console().as_mut().is_some_and(|c| c.write(line).and_then(|_| c.flush()).is_ok());
            if !through_device {
                let _ = super::hypercall::console_write(line);
            }
            self.line.clear();
        }
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            self.line.push(b);
            if b == b'\n' || self.line.is_full() {
                self.flush();
            }
        }
        Ok(())
    }
}

/// The line buffer. No interrupt handler prints, so a borrow never meets another.
static CONSOLE: VcpuCell<Console> = VcpuCell::new(Console { line: FixedBuf::new() });

/// Used by the macros; not called directly.
pub fn _print(args: fmt::Arguments) {
    let _ = CONSOLE.borrow_mut().write_fmt(args);
}

/// Prints to the hv console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => ($crate::hv::console::_print(format_args!($($arg)*)));
}

/// Prints a line to the hv console.
#[macro_export]
macro_rules! println {
    () => ($crate::print!("\n"));
    ($($arg:tt)*) => ($crate::print!("{}\n", format_args!($($arg)*)));
}
