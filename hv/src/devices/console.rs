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

/// Longest line [`PrefixedLines`] holds back waiting for its newline: past this, what it
/// has is written as a line of its own, so a guest that never ends a line cannot make hv
/// buffer without bound.
pub const PREFIXED_LINE_MAX: usize = 4096;

/// A console target for one of several guests sharing one terminal (`hv run --guests`):
/// every line is written whole, after the guest's name, so the lines of two guests never
/// mix mid-line and a reader can tell whose each is:
///
/// ```text
/// g0 | net-serve: listening on 10.0.0.2
/// g1 | net-ping: reply from 10.0.0.2 in 0.41 ms
/// ```
///
/// The bytes reaching it are already sanitised ([`ConsoleOutput`]). A line is one
/// `write_all` on `out`, which for standard output holds its lock for the whole line.
pub struct PrefixedLines<W: Write + Send> {
    prefix: Vec<u8>,
    out: W,
    partial: Vec<u8>,
}

impl<W: Write + Send> PrefixedLines<W> {
    /// Lines to `out`, each starting with `name | `.
    pub fn new(name: &str, out: W) -> Self {
        PrefixedLines { prefix: format!("{name} | ").into_bytes(), out, partial: Vec::new() }
    }

    /// Writes the held-back bytes as one line, with its prefix.
    fn emit_line(&mut self) -> std::io::Result<()> {
        let mut line = Vec::with_capacity(self.prefix.len() + self.partial.len() + 1);
        line.extend_from_slice(&self.prefix);
        line.append(&mut self.partial);
        if line.last() != Some(&b'\n') {
            line.push(b'\n');
        }
        self.out.write_all(&line)
    }
}

impl<W: Write + Send> Write for PrefixedLines<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        for &byte in bytes {
            self.partial.push(byte);
            if byte == b'\n' || self.partial.len() >= PREFIXED_LINE_MAX {
                self.emit_line()?;
            }
        }
        Ok(bytes.len())
    }

    /// Flushes the lines written so far. An unfinished line stays held back (the rest of
    /// it may follow); it is written when the target is dropped.
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl<W: Write + Send> Drop for PrefixedLines<W> {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            let _ = self.emit_line();
        }
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixed(writes: &[&[u8]]) -> String {
        let captured = CapturedOutput::default();
        {
            let mut lines = PrefixedLines::new("g1", captured.clone());
            for w in writes {
                lines.write_all(w).unwrap();
            }
        }
        captured.text()
    }

    #[test]
    fn each_line_gets_the_name_even_when_it_arrives_in_pieces() {
        assert_eq!(prefixed(&[b"hel", b"lo\nwor", b"ld\n"]), "g1 | hello\ng1 | world\n");
    }

    #[test]
    fn an_unfinished_line_is_written_when_the_guest_is_gone() {
        assert_eq!(prefixed(&[b"one\ntwo"]), "g1 | one\ng1 | two\n");
    }

    #[test]
    fn hostile_a_line_that_never_ends_is_cut_instead_of_held_forever() {
        let long = vec![b'x'; PREFIXED_LINE_MAX * 2 + 5];
        let text = prefixed(&[&long]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.starts_with("g1 | ")));
        assert_eq!(lines[0].len(), "g1 | ".len() + PREFIXED_LINE_MAX);
    }
}
