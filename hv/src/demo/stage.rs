//! The presenter of a demo: what it says, the evidence it shows, the figures it measured,
//! and the pauses between steps, on one output.
//!
//! Every demo talks through a [`Stage`], so that all of them look alike in front of a room
//! (a numbered step title, a sentence or two of narration, then the proof: trace lines or
//! counters, highlighted) and so that the test suite can run each one with `--fast` and
//! compare its narration, figures redacted, with a snapshot.

use std::io::{BufRead, Write};
use std::time::Duration;

use crate::trace::explain::wrap;

/// How a demo waits between steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// Wait for Enter (in front of a class: the lecturer talks, then goes on).
    Interactive,
    /// A short pause, then on (`--auto`: unattended, still readable).
    Auto,
    /// No pauses (`--fast`: tests).
    Fast,
}

/// The pause `--auto` makes between steps.
const AUTO_PAUSE: Duration = Duration::from_millis(1500);

/// Where a demo speaks.
pub struct Stage<'a> {
    out: &'a mut dyn Write,
    pacing: Pacing,
    /// Colour and bold (a terminal) or plain markers (a file, a test).
    styled: bool,
    step: usize,
}

impl<'a> Stage<'a> {
    /// A stage writing to `out`.
    pub fn new(out: &'a mut dyn Write, pacing: Pacing, styled: bool) -> Self {
        Stage { out, pacing, styled, step: 0 }
    }

    fn line(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
    }

    /// A new step: waits as the pacing says (not before the first), then its title.
    pub fn step(&mut self, title: &str) {
        if self.step > 0 {
            self.pause();
        }
        self.step += 1;
        let heading = format!("── step {}: {title}", self.step);
        let heading = if self.styled { format!("\x1b[1m{heading}\x1b[0m") } else { heading };
        self.line("");
        self.line(&heading);
    }

    /// Narration: what is about to happen and why it matters, wrapped for reading.
    pub fn say(&mut self, text: &str) {
        for line in wrap(text, 88) {
            self.line(&format!("   {line}"));
        }
    }

    /// Evidence: lines taken from the run (a trace, a table), highlighted.
    pub fn evidence<S: AsRef<str>>(&mut self, lines: &[S]) {
        for l in lines {
            let l = l.as_ref();
            let shown = if self.styled { format!("   \x1b[36m│ {l}\x1b[0m") } else { format!("   │ {l}") };
            self.line(&shown);
        }
    }

    /// A figure measured now.
    pub fn figure(&mut self, label: &str, value: &str) {
        let shown = if self.styled { format!("   ▸ {label}: \x1b[1;33m{value}\x1b[0m") } else { format!("   ▸ {label}: {value}") };
        self.line(&shown);
    }

    /// The end of the demo: its one-sentence lesson.
    pub fn lesson(&mut self, text: &str) {
        self.line("");
        for (i, line) in wrap(text, 88).into_iter().enumerate() {
            let prefix = if i == 0 { "★ " } else { "  " };
            self.line(&format!(" {prefix}{line}"));
        }
    }

    fn pause(&mut self) {
        match self.pacing {
            Pacing::Fast => {}
            Pacing::Auto => {
                let _ = self.out.flush();
                std::thread::sleep(AUTO_PAUSE);
            }
            Pacing::Interactive => {
                let prompt = if self.styled { "\x1b[2m   (Enter: next step)\x1b[0m" } else { "   (Enter: next step)" };
                let _ = write!(self.out, "{prompt}");
                let _ = self.out.flush();
                let mut answer = String::new();
                // End of input (a closed stdin) goes on like --auto would.
                let _ = std::io::stdin().lock().read_line(&mut answer);
            }
        }
    }
}

/// A duration in a readable unit.
pub fn duration(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}
