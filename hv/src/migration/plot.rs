//! `--plot PATH`: dirty pages per round as an SVG bar chart, for a projector.
//!
//! One pair of bars per round: pages sent (blue) and pages the guest dirtied meanwhile
//! (orange), on a logarithmic axis (round 0 sends thousands of pages, a converged last
//! round a handful, and the ratio between rounds is what shows convergence). A dashed
//! line marks how many pages the downtime target allows at the bandwidth measured in
//! the last live round: a migration converges when the orange bars fall below it. The
//! same shape as `hv bench --plot` (`crate::bench::plot`): plain SVG text, escaped.

use std::fmt::Write;
use std::path::Path;

use pv_abi::addr::PAGE_SIZE;

use super::figures::{MigrationReport, StopReason};

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 120.0;
const RIGHT: f64 = 40.0;
const TOP: f64 = 130.0;
const HEIGHT: f64 = 720.0;
const BOTTOM: f64 = 90.0;
/// Colour-blind safe: blue for pages sent, orange for pages dirtied.
const SENT: &str = "#0072b2";
const DIRTIED: &str = "#e69f00";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The y coordinate of `pages` on a log axis with `decades` decades from 1 page up.
fn y(pages: f64, decades: i32) -> f64 {
    let bottom = HEIGHT - BOTTOM;
    let fraction = (pages.max(1.0).log10() / f64::from(decades)).clamp(0.0, 1.0);
    bottom - fraction * (bottom - TOP)
}

/// Pages that fit the downtime target at the last live round's bandwidth.
fn pages_within_target(report: &MigrationReport) -> Option<f64> {
    let last_live = report.rounds.iter().rev().find(|r| !r.paused)?;
    let bytes_per_ms = last_live.mb_per_s * 1e3;
    (bytes_per_ms > 0.0).then(|| report.downtime_target_ms * bytes_per_ms / PAGE_SIZE as f64)
}

/// The chart as an SVG document.
pub fn render(report: &MigrationReport) -> String {
    let peak = report.rounds.iter().flat_map(|r| [r.pages_sent, r.pages_dirtied]).max().unwrap_or(1).max(1);
    let decades = ((peak as f64).log10().ceil() as i32).max(1);
    let slots = report.rounds.len().max(1) as f64;
    let slot = (WIDTH - LEFT - RIGHT) / slots;
    let bar = (slot * 0.38).min(60.0);
    let bottom = HEIGHT - BOTTOM;
    let mut s = String::new();
    let _ = writeln!(s, r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"##);
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let outcome = match report.stopped_because {
        StopReason::Converged => "converged",
        StopReason::RoundLimit => "round limit: stop-and-copy",
    };
    let title = format!("hv migrate: pages per round ({outcome})");
    let _ = writeln!(s, r##"<text x="{LEFT}" y="44" font-size="30" font-weight="bold">{}</text>"##, escape(&title));
    let subtitle = format!(
        "{} MiB guest, {} mode; downtime {:.2} ms (target {:.1} ms); log scale",
        report.ram_bytes >> 20,
        report.mode,
        report.downtime_ms,
        report.downtime_target_ms
    );
    let _ = writeln!(s, r##"<text x="{LEFT}" y="76" font-size="18" fill="#444">{}</text>"##, escape(&subtitle));
    for (i, (label, colour)) in [("pages sent", SENT), ("pages dirtied during the round", DIRTIED)].iter().enumerate() {
        let x = LEFT + i as f64 * 220.0;
        let _ = writeln!(s, r##"<rect x="{x}" y="92" width="22" height="22" fill="{colour}"/>"##);
        let _ = writeln!(s, r##"<text x="{}" y="110" font-size="18">{label}</text>"##, x + 30.0);
    }
    for decade in 0..=decades {
        let yy = y(10f64.powi(decade), decades);
        let _ = writeln!(s, r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{}" y2="{yy:.1}" stroke="#ddd" stroke-width="2"/>"##, WIDTH - RIGHT);
        let _ = writeln!(s, r##"<text x="{}" y="{:.1}" font-size="17" text-anchor="end">{}</text>"##, LEFT - 10.0, yy + 6.0, 10u64.pow(decade as u32));
    }
    for (i, r) in report.rounds.iter().enumerate() {
        let x0 = LEFT + i as f64 * slot + (slot - 2.0 * bar) / 2.0;
        for (k, (value, colour)) in [(r.pages_sent, SENT), (r.pages_dirtied, DIRTIED)].iter().enumerate() {
            let top = y(*value as f64, decades);
            let x = x0 + k as f64 * bar;
            let _ = writeln!(s, r##"<rect class="bar" x="{x:.1}" y="{top:.1}" width="{bar:.1}" height="{:.1}" fill="{colour}"/>"##, bottom - top);
            let _ = writeln!(s, r##"<text x="{:.1}" y="{:.1}" font-size="14" text-anchor="middle">{value}</text>"##, x + bar / 2.0, top - 6.0);
        }
        let label = if r.paused { format!("{} (paused)", r.round) } else { r.round.to_string() };
        let _ = writeln!(s, r##"<text x="{:.1}" y="{:.1}" font-size="17" text-anchor="middle">{label}</text>"##, x0 + bar, bottom + 28.0);
    }
    let _ = writeln!(s, r##"<text x="{:.1}" y="{:.1}" font-size="18" text-anchor="middle">round</text>"##, (LEFT + WIDTH - RIGHT) / 2.0, bottom + 62.0);
    if let Some(pages) = pages_within_target(report) {
        let yy = y(pages, decades);
        let _ = writeln!(s, r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{}" y2="{yy:.1}" stroke="#c00" stroke-width="3" stroke-dasharray="10,8"/>"##, WIDTH - RIGHT);
        let _ = writeln!(s, r##"<text x="{}" y="{:.1}" font-size="16" fill="#c00" text-anchor="end">fits the downtime target: {pages:.0} pages</text>"##, WIDTH - RIGHT, yy - 8.0);
    }
    s.push_str("</svg>\n");
    s
}

/// Writes the chart to `path`.
pub fn write(report: &MigrationReport, path: &Path) -> std::io::Result<()> {
    std::fs::write(path, render(report))
}

#[cfg(test)]
mod tests {
    use super::super::figures::RoundFigures;
    use super::*;

    fn round(round: u32, paused: bool, sent: u64, dirtied: u64) -> RoundFigures {
        RoundFigures { round, paused, pages_sent: sent, pages_dirtied: dirtied, bytes: sent * 4105, ms: 1.0, mb_per_s: 500.0, estimated_downtime_ms: 0.1 }
    }

    #[test]
    fn two_bars_per_round_and_the_target_line() {
        let report = MigrationReport {
            destination: "<host>".into(),
            ram_bytes: 64 << 20,
            mode: "ept",
            downtime_target_ms: 5.0,
            max_rounds: 30,
            rounds: vec![round(0, false, 5000, 300), round(1, false, 300, 20), round(2, true, 20, 0)],
            stopped_because: StopReason::Converged,
            total_pages: 5320,
            total_bytes: 0,
            state_bytes: 0,
            total_ms: 10.0,
            downtime_ms: 1.5,
            destination_restore_ms: 0.5,
            capture_ms: 0.2,
        };
        let svg = render(&report);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("class=\"bar\"").count(), 6);
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        assert!(svg.contains("2 (paused)") && svg.contains("fits the downtime target"));
    }
}
