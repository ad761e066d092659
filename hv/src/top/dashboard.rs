//! The picture `hv top` draws, one frame from one [`View`]: large, plain panels meant for
//! a projector, each with one line under it saying what its figures mean.
//!
//! ```text
//! ┌ VM exits per second ─────────────┐┌ hypercalls per second ──────────┐
//! │ io-out        1520  ███████████  ││ console_write      3  █          │
//! │ mmio-write     300  ██           ││ set_cr3          120  ████████   │
//! │ each one: the guest stopped, ... ││ a hypercall is an exit the guest │
//! └──────────────────────────────────┘└──────────────────────────────────┘
//! ┌ memory ──────────────────────────┐┌ devices (split drivers) ────────┐
//! ┌ exits per second, last minute ▁▂▃▅▇ ...                             ┐
//! ```
//!
//! Drawing is separate from sampling (`super::sample`), so a test renders a fixed view
//! with ratatui's test backend and compares the text (`tests.rs`).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Sparkline};
use ratatui::Frame;

use super::sample::Rates;
use crate::trace::explain::wrap;

/// Everything one frame shows.
#[derive(Clone, Debug)]
pub struct View {
    /// Where hv is reached (the socket's path).
    pub socket: String,
    /// hv's process id.
    pub pid: Option<u32>,
    /// Memory mode.
    pub mmu: String,
    /// Guest RAM in MiB.
    pub ram_mib: u64,
    /// The guest's command line.
    pub guest_args: String,
    /// The rates (absent until two samples exist).
    pub rates: Option<Rates>,
    /// Exits per second, oldest first, for the sparkline.
    pub history: Vec<u64>,
    /// Seconds between samples.
    pub interval_secs: f64,
}

/// Width of the longest bar.
const BAR_WIDTH: usize = 16;

fn bar(value: f64, max: f64) -> String {
    let cells = if max > 0.0 { ((value / max) * BAR_WIDTH as f64).round() as usize } else { 0 };
    "█".repeat(cells.min(BAR_WIDTH))
}

fn rate(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A bar list of `rates`, busiest first, at most `rows` long.
fn bar_lines(rates: &std::collections::BTreeMap<String, f64>, rows: usize) -> Vec<Line<'static>> {
    let mut sorted: Vec<_> = rates.iter().filter(|(_, v)| **v > 0.0).collect();
    sorted.sort_by(|a, b| b.1.total_cmp(a.1).then(a.0.cmp(b.0)));
    let max = sorted.first().map_or(0.0, |(_, v)| **v);
    if sorted.is_empty() {
        return vec![Line::from("  (none in the last interval)".dim())];
    }
    sorted
        .into_iter()
        .take(rows)
        .map(|(name, v)| Line::from(vec![Span::raw(format!(" {name:<18}{:>8} ", rate(*v))), Span::raw(bar(*v, max)).cyan()]))
        .collect()
}

/// A panel: `lines`, then the explanation in dim text at the bottom, wrapped to the
/// panel's width.
fn panel<'a>(frame: &mut Frame, area: Rect, title: &'a str, mut lines: Vec<Line<'a>>, meaning: &'a str) {
    let inner_rows = area.height.saturating_sub(2) as usize;
    let meaning = wrap(meaning, area.width.saturating_sub(2) as usize);
    let room = inner_rows.saturating_sub(meaning.len());
    lines.truncate(room);
    while lines.len() < room {
        lines.push(Line::default());
    }
    lines.extend(meaning.into_iter().map(|l| Line::from(l.italic().dim())));
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(title.bold())), area);
}

/// Draws `view` over the whole frame.
pub fn draw(frame: &mut Frame, view: &View) {
    let [header, top, middle, bottom] =
        Layout::vertical([Constraint::Length(2), Constraint::Fill(1), Constraint::Fill(1), Constraint::Length(5)]).areas(frame.area());
    let pid = view.pid.map_or("?".to_string(), |p| p.to_string());
    let title = Line::from(vec![
        "hv top".bold(),
        Span::raw(format!("  {}  pid {pid}  --mmu {}  {} MiB  guest: {}", view.socket, view.mmu, view.ram_mib, view.guest_args)),
    ]);
    let keys = match view.rates.as_ref().and_then(|r| r.migration.as_deref()) {
        Some(migration) => Line::from(format!("  {migration}").yellow()),
        None => Line::from(format!("  sampled every {:.1} s through the control socket (at most one exit per sample); q quits", view.interval_secs).dim()),
    };
    frame.render_widget(Paragraph::new(vec![title, keys]), header);

    let [exits_area, calls_area] = Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(top);
    let [memory_area, devices_area] = Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(middle);
    let Some(r) = &view.rates else {
        let waiting = vec![Line::from("  waiting for a second sample…")];
        panel(frame, exits_area, " VM exits per second ", waiting.clone(), "each: the guest stopped and hv acted for it");
        panel(frame, calls_area, " hypercalls per second ", waiting.clone(), "exits the guest asked for");
        panel(frame, memory_area, " memory ", waiting.clone(), "");
        panel(frame, devices_area, " devices (split drivers) ", waiting, "");
        return;
    };
    let rows = exits_area.height.saturating_sub(3) as usize;
    let mut exit_lines = vec![Line::from(format!(" total {:>21}", rate(r.total_exits())).bold())];
    exit_lines.extend(bar_lines(&r.exits, rows.saturating_sub(1)));
    panel(frame, exits_area, " VM exits per second ", exit_lines, "each: the guest stopped, KVM returned to hv, hv acted");
    panel(frame, calls_area, " hypercalls per second ", bar_lines(&r.hypercalls, rows), "exits the guest made on purpose, to ask hv");

    let mut memory = Vec::new();
    match (r.trapped_pt_writes, r.shadow_syncs) {
        (Some(w), Some(s)) => {
            memory.push(Line::from(format!(" trapped page-table writes/s {:>9}", rate(w))));
            memory.push(Line::from(format!(" shadow syncs/s              {:>9}", rate(s))));
        }
        _ => memory.push(Line::from(" page-table writes: none trap (ept mode)")),
    }
    memory.push(Line::from(format!(" KVM translation flushes/s   {:>9}", rate(r.flushes))));
    let rss = r.rss_kib.map_or("?".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    memory.push(Line::from(format!(" hv resident memory          {rss:>9}")));
    if let Some((held, target, ram)) = r.balloon {
        let mib = |pages: u64| pages as f64 * 4096.0 / (1 << 20) as f64;
        memory.push(Line::from(format!(" balloon: host holds {:.1} MiB, target {:.0}/{:.0} MiB", mib(held), mib(target), mib(ram))));
    }
    let meaning = if r.trapped_pt_writes.is_some() {
        "shadow mode: every guest page-table store exits so hv can sync its copy"
    } else {
        "ept mode: the guest writes its tables freely; KVM translates"
    };
    panel(frame, memory_area, " memory ", memory, meaning);

    let mut devices = vec![Line::from(" device   ring  bells/s   reqs/s upcall/s  suppr/s".bold())];
    for (name, (doorbells, requests, upcalls, suppressed, in_flight)) in &r.devices {
        devices.push(Line::from(format!(
            " {name:<8}{in_flight:>5}{:>9}{:>9}{:>9}{:>9}",
            rate(*doorbells),
            rate(*requests),
            rate(*upcalls),
            rate(*suppressed)
        )));
    }
    if let Some((sent, received, dropped, refused)) = r.net {
        // Frames per second each way; frames dropped (lost) and requests refused (bad)
        // since the start.
        devices.push(Line::from(format!(" net frames: {} out/s, {} in/s; {dropped} lost, {refused} bad", rate(sent), rate(received))));
    }
    panel(frame, devices_area, " devices (split drivers) ", devices, "ring: requests waiting for the backend. A doorbell causes no exit (KVM's ioeventfd); suppressed: upcalls the guest did not need (event index)");

    let history = Sparkline::default()
        .block(Block::bordered().title(" VM exits per second, recent samples ".bold()))
        .data(&view.history)
        .style(Style::new().cyan());
    frame.render_widget(history, bottom);
}
