//! A Rust panic in the kernel becomes a `report_panic` hypercall.
//!
//! There is nobody in the guest to show a panic to, so the handler formats
//! `file:line:col: message` into a fixed buffer (no allocation: the panic may have come
//! from the allocator) and hands it to the VMM, which prints `guest panicked at …` and
//! stops the guest with a non-zero exit code.

use core::fmt::Write;
use core::panic::PanicInfo;

use super::console::FixedBuf;

/// Longest panic message passed on; the rest is cut.
const PANIC_MESSAGE_MAX: usize = 512;

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    let mut message = FixedBuf::<PANIC_MESSAGE_MAX>::new();
    if let Some(location) = info.location() {
        let _ = write!(message, "{}:{}:{}: ", location.file(), location.line(), location.column());
    }
    let _ = write!(message, "{}", info.message());
    super::hypercall::report_panic(message.as_bytes())
}
