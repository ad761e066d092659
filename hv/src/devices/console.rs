//! Where the guest's console bytes go: hv's standard output (or a buffer, in tests).
//!
//! Two paths lead here: the `console_write` hypercall (early boot, before the console
//! driver is up, and for panics) and the console device's backend thread. Both write
//! through one shared [`ConsoleOutput`], which also notes when the first complete line
//! arrived (for `--stats`). The bytes come from the guest, so they are hostile: control
//! characters other than newline, tab and carriage return are replaced (see
//! `backend_drivers::console::sanitize`), so a guest cannot send escape sequences to the
//! user's terminal.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use backend_drivers::console::sanitize;

/// The console output of one run; clones share it.
#[derive(Clone)]
pub struct ConsoleOutput {
    shared: Arc<Mutex<ConsoleState>>,
}

struct ConsoleState {
    out: Box<dyn Write + Send>,
    first_line_at: Option<Instant>,
}

impl ConsoleOutput {
    /// Console output to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        ConsoleOutput { shared: Arc::new(Mutex::new(ConsoleState { out, first_line_at: None })) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ConsoleState> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes guest bytes, sanitised. Errors writing to our own stdout are not the
    /// guest's problem and do not stop it.
    pub fn write_guest_bytes(&self, bytes: &[u8]) {
        self.write_clean(&sanitize(bytes));
    }

    fn write_clean(&self, clean: &[u8]) {
        let mut state = self.state();
        let _ = state.out.write_all(clean);
        if clean.contains(&b'\n') {
            let _ = state.out.flush();
            state.first_line_at.get_or_insert_with(Instant::now);
        }
    }

    /// When the first complete line arrived.
    pub fn first_line_at(&self) -> Option<Instant> {
        self.state().first_line_at
    }

    /// Flushes what is buffered.
    pub fn flush(&self) {
        let _ = self.state().out.flush();
    }
}

/// The console backend writes here (it has already sanitised the bytes).
impl Write for ConsoleOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_clean(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        ConsoleOutput::flush(self);
        Ok(())
    }
}

/// A console target that keeps everything written to it, for reading back what the
/// guest printed (`hv blk-bench` parses its result line this way; tests use it too).
#[derive(Clone, Default)]
pub struct CapturedOutput(Arc<Mutex<Vec<u8>>>);

impl CapturedOutput {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// Everything written so far, as bytes.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Write for CapturedOutput {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
