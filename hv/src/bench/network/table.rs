//! The network report as a table for the terminal: each figure, its baseline from the
//! same run, the ratio of their costs, the host it ran on, and every failure or skipped
//! row spelled out.

use std::fmt::Write;

use super::report::{NetReport, Outcome, PingFigure, HOST_PING_GOAL_NS};
use crate::bench::report::format_ns;

/// Bytes a second, in the unit that keeps it readable (decimal: MB/s as `curl` says).
pub fn format_rate(bytes_per_second: f64) -> String {
    if bytes_per_second >= 1e9 {
        format!("{:.2} GB/s", bytes_per_second / 1e9)
    } else if bytes_per_second >= 1e6 {
        format!("{:.2} MB/s", bytes_per_second / 1e6)
    } else {
        format!("{:.1} kB/s", bytes_per_second / 1e3)
    }
}

fn ping_text(p: &PingFigure) -> String {
    let l = &p.latency;
    let lost = p.sent - l.count.min(p.sent);
    let lost = if lost > 0 { format!(", {lost} lost") } else { String::new() };
    format!("p50 {}, min {}, p90 {} (n={}{lost})", format_ns(l.p50_ns), format_ns(l.min_ns), format_ns(l.p90_ns), l.count)
}

/// The cell of an outcome: its text, or what went wrong.
fn cell<T>(outcome: &Outcome<T>, text: impl Fn(&T) -> String) -> String {
    match (&outcome.measured, outcome.skipped) {
        (Some(m), _) => text(m),
        (None, true) => "SKIPPED".into(),
        (None, false) => "FAILED".into(),
    }
}

/// The table.
pub fn render(report: &NetReport) -> String {
    let mut s = String::new();
    let kind = if report.quick { "quick run: a check that everything works, not figures to quote" } else { "full run" };
    let _ = writeln!(s, "hv bench --network: the network and the balloon, each against a baseline from the same run ({kind})");
    let _ = writeln!(s, "  host: {}; {}", report.host.cpu, report.host.mmu_description);
    if !report.host.hardware_two_dimensional_paging {
        let _ = writeln!(s, "  the guests' network stacks run in a ring-3 task (pv-netd: native here), their balloon drivers in guest ring 0, which this host emulates: these are this host's figures, not hardware virtualization's");
    }
    let load = |l: Option<[f64; 3]>| l.map_or("?".to_string(), |[a, b, c]| format!("{a:.2} {b:.2} {c:.2}"));
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let _ = writeln!(s, "  load average at the start {}, at the end {}, on {cpus} CPUs: other work on the host inflates every figure", load(report.load_average_start), load(report.load_average_end));
    let _ = writeln!(s, "  ratio = the guest's cost / the baseline's (time per round trip, per frame, per MiB): 10x means ten times as long");
    let _ = writeln!(s);

    let mut rows: Vec<[String; 4]> = vec![["figure".into(), "guest".into(), "baseline (same run)".into(), "guest/baseline".into()]];
    let ratio = |figure: &str| report.ratio(figure).map_or("-".to_string(), |r| format!("{r:.2}x"));
    let loopback = cell(&report.ping_loopback, |p| format!("loopback ping: {}", ping_text(p)));
    rows.push(["ping host -> guest".into(), cell(&report.ping_host_to_guest, ping_text), loopback, ratio("ping host -> guest")]);
    rows.push(["ping guest -> guest".into(), cell(&report.ping_guest_to_guest, ping_text), "the loopback ping above".into(), ratio("ping guest -> guest")]);
    for outcome in &report.switch {
        let (figure, bytes) = match &outcome.measured {
            Some(r) if r.frame_bytes > 60 => ("switch, 1514-byte frames", r.frame_bytes),
            Some(r) => ("switch, 60-byte frames", r.frame_bytes),
            None => ("switch", 0),
        };
        let per_frame = |ns: f64| format!("{}/frame ({:.2} M frames/s)", format_ns(ns), 1e3 / ns);
        let guest = cell(outcome, |r| format!("{}, bursts of {}", per_frame(r.switch_ns_per_frame.median), super::switch_rate::BURST));
        let baseline = cell(outcome, |r| format!("port queue alone: {}", per_frame(r.queue_ns_per_frame.median)));
        let label = if bytes > 0 { figure.to_string() } else { "switch".to_string() };
        rows.push([label, guest, baseline, ratio(figure)]);
    }
    let tcp = |t: &super::report::TcpFigure| format!("{} ({} KiB each, n={})", format_rate(t.bytes_per_second.median), t.bytes >> 10, t.bytes_per_second.count);
    rows.push([
        "TCP through curl".into(),
        cell(&report.tcp_guest, tcp),
        cell(&report.tcp_host, |t| format!("host server on loopback: {}", tcp(t))),
        ratio("TCP through curl"),
    ]);
    rows.push([
        "balloon reclaim".into(),
        cell(&report.balloon, |b| format!("{:.1} MiB in {:.2} s ({:.1} MiB/s); hv RSS {:.1} -> {:.1} MiB", b.ballooned_mib, b.seconds, b.mib_per_second, b.rss_before_mib, b.rss_after_mib)),
        cell(&report.balloon_baseline, |m| format!("madvise: {} MiB in {} ({:.0} MiB/s); RSS {:.1} -> {:.1} MiB", m.mib, format_ns(m.seconds * 1e9), m.mib_per_second, m.rss_before_mib, m.rss_after_mib)),
        ratio("balloon reclaim"),
    ]);
    let widths: Vec<usize> = (0..3).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    for row in &rows {
        let pad = |c: usize| format!("{}{}", row[c], " ".repeat(widths[c] - row[c].chars().count()));
        let _ = writeln!(s, "  {}  {}  {}  {:>14}", pad(0), pad(1), pad(2), row[3]);
    }

    if let Some(g) = &report.ping_host_to_guest.measured {
        let met = if g.latency.p50_ns <= HOST_PING_GOAL_NS { "met" } else { "not met" };
        let _ = writeln!(s, "\n  goal (issue 12): host -> guest ping p50 <= {}: {met} ({})", format_ns(HOST_PING_GOAL_NS), format_ns(g.latency.p50_ns));
    }
    render_problems(report, &mut s);
    let _ = writeln!(s, "\n  wall time {:.1} s", report.wall_seconds);
    s
}

/// The failures and skipped rows, each with its reason.
fn render_problems(report: &NetReport, s: &mut String) {
    let mut problems: Vec<String> = Vec::new();
    let mut list = |name: &str, error: &Option<String>, skipped: bool| {
        if let Some(e) = error {
            let what = if skipped { "SKIPPED" } else { "FAILED" };
            problems.push(format!("{name}: {what}: {e}"));
        }
    };
    list("ping host -> guest", &report.ping_host_to_guest.error, report.ping_host_to_guest.skipped);
    list("loopback ping", &report.ping_loopback.error, report.ping_loopback.skipped);
    list("ping guest -> guest", &report.ping_guest_to_guest.error, report.ping_guest_to_guest.skipped);
    for sw in &report.switch {
        list("switch", &sw.error, sw.skipped);
    }
    list("TCP from the guest", &report.tcp_guest.error, report.tcp_guest.skipped);
    list("TCP from the host server", &report.tcp_host.error, report.tcp_host.skipped);
    list("balloon", &report.balloon.error, report.balloon.skipped);
    list("madvise baseline", &report.balloon_baseline.error, report.balloon_baseline.skipped);
    if !problems.is_empty() {
        let _ = writeln!(s, "\n  not measured:");
        for line in problems {
            let _ = writeln!(s, "    {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::report::tests::sample;
    use super::*;

    #[test]
    fn every_row_is_in_the_table_with_its_ratio() {
        let text = render(&sample());
        for row in ["ping host -> guest", "ping guest -> guest", "switch, 60-byte frames", "TCP through curl", "balloon reclaim"] {
            let line = text.lines().find(|l| l.trim_start().starts_with(row)).unwrap_or_else(|| panic!("no {row} row in\n{text}"));
            assert!(line.trim_end().ends_with('x'), "{row} has its ratio: {line}");
        }
        assert!(text.contains("goal (issue 12): host -> guest ping p50 <= 1.00 ms: not met (2.60 ms)"), "{text}");
        assert!(text.contains("host: "), "the host is named");
        assert!(!text.contains("not measured:"));
    }

    #[test]
    fn a_skipped_row_says_why() {
        let mut r = sample();
        r.tcp_guest = Outcome::skipped("`curl` is not installed");
        r.compute_comparisons();
        let text = render(&r);
        assert!(text.contains("TCP from the guest: SKIPPED: `curl` is not installed"), "{text}");
    }

    #[test]
    fn rates_pick_a_readable_unit() {
        assert_eq!(format_rate(2.5e9), "2.50 GB/s");
        assert_eq!(format_rate(3.1e6), "3.10 MB/s");
        assert_eq!(format_rate(512.0), "0.5 kB/s");
    }
}
