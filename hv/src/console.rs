//! Where the guest's console bytes go: hv's standard output (or a buffer, in tests).
//!
//! The bytes come from the guest, so they are hostile: control characters other than
//! newline, tab and carriage return are replaced, so a guest cannot send escape
//! sequences to the user's terminal.

use std::io::Write;
use std::time::Instant;

/// The console output of one run.
pub struct ConsoleOutput {
    out: Box<dyn Write>,
    first_line_at: Option<Instant>,
    bytes: u64,
}

/// What replaces a control character the guest sent.
const REPLACEMENT: u8 = b'?';

impl ConsoleOutput {
    /// Console output to `out`.
    pub fn new(out: Box<dyn Write>) -> Self {
        ConsoleOutput { out, first_line_at: None, bytes: 0 }
    }

    /// Writes guest bytes, sanitised. Errors writing to our own stdout are not the
    /// guest's problem and do not stop it.
    pub fn write_guest_bytes(&mut self, bytes: &[u8]) {
        let clean: Vec<u8> = bytes
            .iter()
            .map(|&b| if b.is_ascii_control() && !matches!(b, b'\n' | b'\t' | b'\r') { REPLACEMENT } else { b })
            .collect();
        let _ = self.out.write_all(&clean);
        if clean.contains(&b'\n') {
            let _ = self.out.flush();
            self.first_line_at.get_or_insert_with(Instant::now);
        }
        self.bytes += bytes.len() as u64;
    }

    /// When the first complete line arrived.
    pub fn first_line_at(&self) -> Option<Instant> {
        self.first_line_at
    }

    /// Flushes what is buffered.
    pub fn flush(&mut self) {
        let _ = self.out.flush();
    }
}
