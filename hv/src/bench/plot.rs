//! `--plot PATH`: an SVG bar chart of time per operation, each workload with one bar
//! per memory mode, for a projector.
//!
//! The workloads differ by six orders of magnitude (a TLB miss takes nanoseconds, an
//! address space milliseconds), so the time axis is logarithmic: each decade gets the
//! same width, and the *ratio* between two bars is the same distance wherever it is on
//! the chart. Each bar carries its value in words and a thin line from the fastest to
//! the slowest repetition. A dashed line marks the bare KVM exit measured in the same
//! run: everything that exits to hv once per operation lies at or right of it.

use std::fmt::Write;
use std::path::Path;

use super::report::format_ns;
use super::results::BenchReport;

const WIDTH: f64 = 1600.0;
const LEFT: f64 = 280.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 150.0;
const BAR: f64 = 30.0;
const GROUP_GAP: f64 = 26.0;
const BOTTOM: f64 = 90.0;
/// Bar colours per mode (colour-blind safe: blue and orange), and the rest.
const MODE_COLOURS: [(&str, &str); 2] = [("ept", "#0072b2"), ("shadow", "#e69f00")];
const OTHER_COLOUR: &str = "#999999";

/// The log-scale axis: decades `low..high` of nanoseconds across the plot area.
#[derive(Clone, Copy, Debug)]
struct Axis {
    low: i32,
    high: i32,
}

impl Axis {
    /// The decades covering every value (at least one decade).
    fn covering(values: impl Iterator<Item = f64>) -> Axis {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.filter(|v| *v > 0.0 && v.is_finite()) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            return Axis { low: 0, high: 3 };
        }
        let low = lo.log10().floor() as i32;
        Axis { low, high: (hi.log10().ceil() as i32).max(low + 1) }
    }

    /// The x coordinate of `ns`.
    fn x(&self, ns: f64) -> f64 {
        let fraction = (ns.max(1e-3).log10() - f64::from(self.low)) / f64::from(self.high - self.low);
        LEFT + fraction.clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT)
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn colour(mode: &str) -> &'static str {
    MODE_COLOURS.iter().find(|(m, _)| *m == mode).map_or(OTHER_COLOUR, |(_, c)| c)
}

/// The chart as an SVG document.
pub fn render(report: &BenchReport) -> String {
    let workloads = report.workloads();
    let modes = &report.modes;
    let group = BAR * modes.len().max(1) as f64 + GROUP_GAP;
    let height = TOP + group * workloads.len() as f64 + BOTTOM;
    let bare = report.baselines.bare_exit_round_trip_ns.map(|s| s.median);
    let values = report.results.iter().filter_map(|r| r.measured.as_ref()).flat_map(|m| [m.time_per_op_ns.min, m.time_per_op_ns.max]);
    let axis = Axis::covering(values.chain(bare));
    let plot_bottom = height - BOTTOM;

    let mut s = String::new();
    let _ = writeln!(s, r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"##);
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let title = format!("hv bench: time per operation{}", if report.quick { " (quick run)" } else { "" });
    let _ = writeln!(s, r##"<text x="{LEFT}" y="44" font-size="32" font-weight="bold">{}</text>"##, escape(&title));
    let subtitle = format!("{}; {} (log scale: each step is 10x)", report.host.cpu, report.host.mmu_description);
    let _ = writeln!(s, r##"<text x="{LEFT}" y="76" font-size="17" fill="#444">{}</text>"##, escape(&subtitle));
    // Legend.
    // Each entry is placed after the previous label (about 12 px per character at this
    // size), so a long label never runs into the next swatch.
    let mut x = LEFT;
    for mode in modes.iter() {
        let _ = writeln!(s, r##"<rect x="{x}" y="96" width="28" height="28" fill="{}"/>"##, colour(mode));
        let label = if *mode == "ept" && !report.host.hardware_two_dimensional_paging { "ept (KVM's MMU)" } else { mode };
        let _ = writeln!(s, r##"<text x="{}" y="118" font-size="22">{}</text>"##, x + 36.0, escape(label));
        x += 36.0 + 12.0 * label.chars().count() as f64 + 40.0;
    }
    // Decade grid.
    for decade in axis.low..=axis.high {
        let x = axis.x(10f64.powi(decade));
        let _ = writeln!(s, r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{plot_bottom}" stroke="#ddd" stroke-width="2"/>"##);
        let _ = writeln!(s, r##"<text x="{x:.1}" y="{}" font-size="20" text-anchor="middle">{}</text>"##, plot_bottom + 32.0, format_ns(10f64.powi(decade)).replace(".00", "").replace(".0 ", " "));
    }
    let _ = writeln!(s, r##"<text x="{}" y="{}" font-size="20" text-anchor="middle">time per operation (median; thin line: fastest to slowest repetition)</text>"##, (LEFT + WIDTH - RIGHT) / 2.0, plot_bottom + 70.0);
    // Bars.
    for (g, workload) in workloads.iter().enumerate() {
        let y0 = TOP + g as f64 * group;
        let _ = writeln!(s, r##"<text x="{}" y="{:.1}" font-size="24" text-anchor="end">{}</text>"##, LEFT - 14.0, y0 + BAR * modes.len() as f64 / 2.0 + 8.0, escape(workload));
        for (i, mode) in modes.iter().enumerate() {
            let y = y0 + i as f64 * BAR;
            let result = report.results.iter().find(|r| r.workload == *workload && r.mode == *mode);
            match result.and_then(|r| r.measured.as_ref()) {
                Some(m) => {
                    let t = m.time_per_op_ns;
                    let x = axis.x(t.median);
                    let _ = writeln!(s, r##"<rect class="bar" data-mode="{mode}" x="{LEFT}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"/>"##, y + 2.0, x - LEFT, BAR - 4.0, colour(mode));
                    let mid = y + BAR / 2.0;
                    let _ = writeln!(s, r##"<line x1="{:.1}" y1="{mid:.1}" x2="{:.1}" y2="{mid:.1}" stroke="black" stroke-width="2"/>"##, axis.x(t.min), axis.x(t.max));
                    let _ = writeln!(s, r##"<text x="{:.1}" y="{:.1}" font-size="19">{}</text>"##, axis.x(t.max).max(x) + 8.0, mid + 7.0, escape(&format_ns(t.median)));
                }
                None => {
                    let _ = writeln!(s, r##"<text x="{}" y="{:.1}" font-size="19" font-style="italic" fill="#777">{mode}: not measured</text>"##, LEFT + 8.0, y + BAR / 2.0 + 7.0);
                }
            }
        }
    }
    if let Some(bare) = bare {
        let x = axis.x(bare);
        let _ = writeln!(s, r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{plot_bottom}" stroke="#c00" stroke-width="3" stroke-dasharray="10,8"/>"##, TOP - 10.0);
        let _ = writeln!(s, r##"<text x="{:.1}" y="{}" font-size="19" fill="#c00">bare KVM exit {}</text>"##, x + 6.0, TOP - 14.0, escape(&format_ns(bare)));
    }
    s.push_str("</svg>\n");
    s
}

/// Writes the chart to `path`.
pub fn write(report: &BenchReport, path: &Path) -> std::io::Result<()> {
    std::fs::write(path, render(report))
}

#[cfg(test)]
mod tests {
    use super::super::measure::Measured;
    use super::super::counters::per_op;
    use super::super::results::{Baselines, HostDescription, WorkloadResult};
    use super::super::summary::Summary;
    use super::*;

    fn measured(ns: f64) -> Measured {
        Measured {
            reps: 3,
            ops_per_rep: 10,
            time_per_op_ns: Summary::of(&[ns * 0.9, ns, ns * 1.2]).unwrap(),
            per_op: per_op(&Default::default(), &Default::default(), 1),
            verified: true,
            wall_seconds: 0.1,
        }
    }

    fn report() -> BenchReport {
        let result = |workload, mode, m: Option<Measured>| WorkloadResult { workload, mode, operation: "op", error: m.is_none().then(|| "no".into()), measured: m };
        BenchReport {
            schema_version: 1,
            host: HostDescription { cpu: "CPU <&>".into(), mmu: "pvm", mmu_description: "PVM", hardware_two_dimensional_paging: false, ept_mode_means: "KVM's MMU" },
            quick: false,
            modes: vec!["ept", "shadow"],
            results: vec![
                result("tlb-miss/4k", "ept", Some(measured(150.0))),
                result("aspace", "ept", Some(measured(30e6))),
                result("tlb-miss/4k", "shadow", Some(measured(160.0))),
                result("aspace", "shadow", None),
            ],
            mode_failures: vec![],
            baselines: Baselines { bare_exit_round_trip_ns: Summary::of(&[9000.0]), ..Baselines::default() },
            comparisons: vec![],
            wall_seconds: 1.0,
        }
    }

    #[test]
    fn one_bar_per_measured_result_and_a_note_for_the_rest() {
        let svg = render(&report());
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("class=\"bar\"").count(), 3);
        assert_eq!(svg.matches("shadow: not measured").count(), 1);
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        assert!(svg.contains("tlb-miss/4k") && svg.contains("aspace") && svg.contains("bare KVM exit"));
        assert_eq!(svg.matches(">aspace</text>").count(), 1, "one group per workload, results come mode by mode");
    }

    #[test]
    fn hostile_text_from_the_host_is_escaped() {
        let svg = render(&report());
        assert!(svg.contains("CPU &lt;&amp;&gt;"));
        assert!(!svg.contains("CPU <&>"));
    }

    #[test]
    fn the_axis_is_logarithmic_and_covers_every_value() {
        let axis = Axis::covering([150.0, 30e6].into_iter());
        assert_eq!((axis.low, axis.high), (2, 8));
        let (a, b, c) = (axis.x(100.0), axis.x(1000.0), axis.x(10_000.0));
        assert!((b - a - (c - b)).abs() < 1e-9, "each decade has the same width");
        assert_eq!(axis.x(100.0), LEFT);
        assert_eq!(axis.x(1e8), WIDTH - RIGHT);
        assert_eq!(axis.x(1e12), WIDTH - RIGHT, "clamped");
    }

    #[test]
    fn an_empty_report_still_draws_an_axis() {
        let axis = Axis::covering(std::iter::empty());
        assert!(axis.high > axis.low);
    }
}
