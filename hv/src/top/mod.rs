//! `hv top PATH`: a live view of a running hv, in the spirit of `kvm_stat` and `xentop`,
//! readable on a projector: VM exits per second by reason, hypercalls by name, trapped
//! page-table writes and shadow syncs, each device's ring, hv's resident memory and the
//! balloon, and a line under each panel saying what it means.
//!
//! It watches from outside, through the control socket (`hv run --control PATH`): every
//! interval it asks for `stats`, which hv answers at the guest's next exit boundary, and
//! shows the difference from the last answer. So watching costs the guest at most one extra exit
//! per sample (a kick, then the counters are copied): **sampling, not per-event
//! locking**. Nothing is added to the guest's hot paths; the counters it reads are the
//! ones `--stats` keeps anyway. docs/classroom.md gives the measured cost.
//!
//! | file | idea |
//! | --- | --- |
//! | [`sample`] | one look at hv, and per-second rates between two looks |
//! | [`dashboard`] | drawing one frame with ratatui |

pub mod dashboard;
pub mod sample;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
use ratatui::Terminal;
use serde_json::{Map, Value};

use crate::control::client::{self, ClientError};
use dashboard::View;
use sample::{Rates, Sample};

/// Samples kept for the sparkline.
const HISTORY: usize = 120;
/// How long one request may take before hv counts as gone.
const PATIENCE: Duration = Duration::from_secs(5);
/// The size of the text frame `--once` prints.
pub const ONCE_SIZE: (u16, u16) = (110, 34);

/// What `hv top` was asked for.
#[derive(Clone, Debug)]
pub struct TopOptions {
    /// The control socket.
    pub socket: PathBuf,
    /// Time between samples.
    pub interval: Duration,
    /// Print one frame as text (two samples `interval` apart) and end.
    pub once: bool,
}

/// Why `hv top` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// The control socket could not be used.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// hv answered with an error.
    #[error("hv answered `{command}` with an error: {message}")]
    Refused {
        /// The command.
        command: &'static str,
        /// hv's message.
        message: String,
    },
    /// The terminal could not be driven.
    #[error("the terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

/// One request's reply fields.
fn ask(socket: &Path, command: &'static str) -> Result<Map<String, Value>, TopError> {
    let (_, outcome) = client::call(socket, command, &Map::new(), Some(PATIENCE), &mut |_, _| {})?;
    outcome.map(|reply| reply.fields).map_err(|message| TopError::Refused { command, message })
}

/// Watches the hv at `options.socket` until the user quits (or, with `once`, prints one
/// frame).
pub fn run(options: &TopOptions) -> Result<(), TopError> {
    let status = ask(&options.socket, "status")?;
    let pid = status.get("pid").and_then(Value::as_u64).and_then(|p| u32::try_from(p).ok());
    let mut view = View {
        socket: options.socket.display().to_string(),
        pid,
        mmu: status.get("mmu").and_then(Value::as_str).unwrap_or("?").to_string(),
        ram_mib: status.get("ram_bytes").and_then(Value::as_u64).unwrap_or(0) >> 20,
        guest_args: status.get("guest_args").and_then(Value::as_array).map_or(String::new(), |a| {
            // The guest's words, shown on the user's terminal: sanitised like all guest text.
            let words: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
            backend_drivers::console::sanitize_text(&words.join(" "))
        }),
        rates: None,
        history: Vec::new(),
        interval_secs: options.interval.as_secs_f64(),
    };
    let mut last = take_sample(&options.socket, pid)?;
    if options.once {
        std::thread::sleep(options.interval);
        let now = take_sample(&options.socket, pid)?;
        advance(&mut view, &last, &now);
        print!("{}", render_text(&view, ONCE_SIZE));
        return Ok(());
    }
    let mut terminal = ratatui::init();
    let result = (|| -> Result<(), TopError> {
        loop {
            terminal.draw(|frame| dashboard::draw(frame, &view))?;
            if quit_requested(options.interval)? {
                return Ok(());
            }
            let now = take_sample(&options.socket, pid)?;
            advance(&mut view, &last, &now);
            last = now;
        }
    })();
    ratatui::restore();
    result
}

/// The next sample: `stats`, and hv's resident memory.
fn take_sample(socket: &Path, pid: Option<u32>) -> Result<Sample, TopError> {
    let fields = ask(socket, "stats")?;
    Ok(Sample::from_stats(Instant::now(), &fields, pid.and_then(sample::resident_kib)))
}

/// Puts the rates from `before` to `after` in the view.
fn advance(view: &mut View, before: &Sample, after: &Sample) {
    let rates = Rates::between(before, after);
    view.history.push(rates.total_exits().round() as u64);
    if view.history.len() > HISTORY {
        view.history.remove(0);
    }
    view.rates = Some(rates);
}

/// Waits up to `interval` for a key; true if it was q, Esc or Ctrl-C.
fn quit_requested(interval: Duration) -> Result<bool, TopError> {
    let until = Instant::now() + interval;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        if !event::poll(left)? {
            break;
        }
        if let Event::Key(key) = event::read()? {
            let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
            if ctrl_c || matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// One frame of `view`, drawn on a `size` (columns, rows) text screen.
pub fn render_text(view: &View, size: (u16, u16)) -> String {
    let mut terminal = match Terminal::new(TestBackend::new(size.0, size.1)) {
        Ok(t) => t,
        Err(e) => return format!("(cannot draw: {e})\n"),
    };
    if let Err(e) = terminal.draw(|frame| dashboard::draw(frame, view)) {
        return format!("(cannot draw: {e})\n");
    }
    buffer_text(terminal.backend().buffer())
}

/// A buffer's characters, one line per row, trailing spaces removed.
fn buffer_text(buffer: &Buffer) -> String {
    let width = buffer.area.width as usize;
    let mut text = String::new();
    for row in buffer.content.chunks(width.max(1)) {
        let line: String = row.iter().map(|cell| cell.symbol()).collect();
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests;
