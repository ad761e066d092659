//! The report as a table for the terminal: what was measured, on what, how often, and
//! the ratios that answer the question, with every failure spelled out.

use std::fmt::Write;

use super::results::{BenchReport, WorkloadResult};

/// A duration in nanoseconds, in the unit that keeps it readable.
pub fn format_ns(ns: f64) -> String {
    let a = ns.abs();
    if a >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if a >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if a >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

/// The exit reasons that happen at least once per hundred operations, largest first.
fn main_exit_reasons(r: &WorkloadResult) -> String {
    let Some(m) = &r.measured else { return String::new() };
    let mut reasons: Vec<(&String, &f64)> = m.per_op.vm_exits_by_reason.iter().filter(|(_, v)| v.abs() >= 0.01).collect();
    reasons.sort_by(|a, b| b.1.total_cmp(a.1));
    reasons.iter().map(|(k, v)| format!("{k} {v:.2}")).collect::<Vec<_>>().join(", ")
}

/// The whole report.
pub fn render(report: &BenchReport) -> String {
    let mut s = String::new();
    let h = &report.host;
    let _ = writeln!(s, "hv bench: shadow paging (hv) against KVM's translation (ept), {}", if report.quick { "QUICK run (small sizes: a check, not a measurement to quote)" } else { "full run" });
    let _ = writeln!(s, "  host: {}; {}", h.cpu, h.mmu_description);
    let _ = writeln!(s, "  --mmu ept on this host means {}", h.ept_mode_means);
    let reps = report.results.iter().find_map(|r| r.measured.as_ref().map(|m| m.reps)).unwrap_or(0);
    let _ = writeln!(s, "  time/op: median over {reps} repetitions (guest TSC); spread = (max - min) / median");
    let _ = writeln!(s, "  counters per operation, boot and setup subtracted (each workload also runs with zero operations)");
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "  {:<18} {:<6} {:>10} {:>6} {:>8} {:>8} {:>8} {:>7} {:>7} {:>6} {:>7}  exits by reason",
        "workload", "mode", "time/op", "spread", "exits", "trapped", "mmu_upd", "syncs", "flushes", "CR3", "faults"
    );
    let _ = writeln!(s, "  {:<44} {:>8} {:>8} {:>8} {:>7} {:>7} {:>6} {:>7}", "", "/op", "PT wr/op", "ent./op", "/op", "/op", "/op", "/op");
    for r in &report.results {
        match &r.measured {
            Some(m) => {
                let p = &m.per_op;
                let _ = writeln!(
                    s,
                    "  {:<18} {:<6} {:>10} {:>5.0}% {:>8.2} {:>8.2} {:>8.2} {:>7} {:>7.2} {:>6} {:>7}  {}",
                    r.workload,
                    r.mode,
                    format_ns(m.time_per_op_ns.median),
                    m.time_per_op_ns.spread_percent,
                    p.vm_exits,
                    p.trapped_pt_writes,
                    p.mmu_update_entries,
                    opt(p.shadow_syncs),
                    p.translation_flushes,
                    opt(p.cr3_loads),
                    opt(p.guest_page_faults),
                    main_exit_reasons(r)
                );
            }
            None if report.mode_failures.iter().any(|m| m.mode == r.mode) => {
                let _ = writeln!(s, "  {:<18} {:<6} not measured: no VM could run in this mode (see failures)", r.workload, r.mode);
            }
            None => {
                let why = r.error.as_deref().unwrap_or("failed").lines().next().unwrap_or("");
                let _ = writeln!(s, "  {:<18} {:<6} FAILED: {why}", r.workload, r.mode);
            }
        }
    }
    if report.quick && report.results.iter().any(|r| r.workload.starts_with("tlb-miss")) {
        let _ = writeln!(s, "  NOTE: {}", super::workloads::TLB_QUICK_NOTE);
    }
    render_comparisons(report, &mut s);
    render_handling(report, &mut s);
    render_baselines(report, &mut s);
    render_failures(report, &mut s);
    let _ = writeln!(s, "\n  wall time {:.1} s", report.wall_seconds);
    s
}

fn render_comparisons(report: &BenchReport, s: &mut String) {
    let _ = writeln!(s, "\n  shadow / ept, time per operation (median / median):");
    let ratios: Vec<_> = report.comparisons.iter().filter(|c| c.kind == "shadow/ept").collect();
    if ratios.is_empty() {
        let _ = writeln!(s, "    none: a ratio needs both modes measured");
    }
    for c in ratios {
        let _ = writeln!(s, "    {:<18} {:>7.2}x   ({} / {})", c.workload, c.ratio, format_ns(c.numerator_ns), format_ns(c.denominator_ns));
    }
}

/// The exits whose handling `render_handling` shows: a title, the workload that makes
/// them, the kind's label (`crate::vcpu::handling`), and whether to show it per
/// `mmu_update` entry instead of per exit.
const HANDLING_ROWS: [(&str, &str, &str, bool); 5] = [
    ("null hypercall", "hypercall", "hypercall nop", false),
    ("trapped page-table write + sync", "pt-update/direct", "trapped page-table write", false),
    ("set_cr3", "ctxswitch", "hypercall set_cr3", false),
    ("mmu_update, per entry", "pt-update/batched", "hypercall mmu_update", true),
    ("memslot flush (KVM forgets translations)", "pt-update/direct", super::counters::FLUSH_LABEL, false),
];

/// hv's own time per exit, and what share of the operation's time that is.
fn render_handling(report: &BenchReport, s: &mut String) {
    let _ = writeln!(s, "\n  hv's own handling time per exit (from KVM_RUN's return to the next entry, timed inside hv):");
    let _ = writeln!(s, "    {:<42} {:<6} {:>10} {:>8}   share of the operation's time", "exit", "mode", "hv time", "per op");
    let mut any = false;
    for (title, workload, label, per_entry) in HANDLING_ROWS {
        for r in report.results.iter().filter(|r| r.workload == workload) {
            let Some(m) = &r.measured else { continue };
            let Some(h) = m.per_op.hv_handling.get(label) else { continue };
            let (mean, per_op) = match per_entry {
                true if m.per_op.mmu_update_entries > 0.0 => (h.mean_ns * h.per_op / m.per_op.mmu_update_entries, m.per_op.mmu_update_entries),
                _ => (h.mean_ns, h.per_op),
            };
            let share = 100.0 * mean * per_op / m.time_per_op_ns.median;
            let _ = writeln!(
                s,
                "    {title:<42} {:<6} {:>10} {per_op:>8.2}   {share:>5.1}% of {} ({workload})",
                r.mode,
                format_ns(mean),
                format_ns(m.time_per_op_ns.median)
            );
            any = true;
        }
    }
    if !any {
        let _ = writeln!(s, "    none of the workloads that make these exits was measured");
    }
}

fn render_baselines(report: &BenchReport, s: &mut String) {
    let b = &report.baselines;
    let _ = writeln!(s, "\n  baselines, measured in this run:");
    match (&b.bare_exit_round_trip_ns, &b.bare_exit_error) {
        (Some(t), _) => {
            let _ = writeln!(s, "    bare KVM exit round trip (the guest's hypercall loop, 64-bit ring 0, without hv): {} (spread {:.0}%)", format_ns(t.median), t.spread_percent);
        }
        (None, Some(e)) => {
            let _ = writeln!(s, "    bare KVM exit round trip: FAILED: {e}");
        }
        _ => {}
    }
    for n in &b.native {
        match &n.measured {
            Some(w) => {
                let huge = w.host_huge_page_bytes.map_or("unknown".into(), |b| format!("{} MiB", b >> 20));
                let _ = writeln!(
                    s,
                    "    {} natively on the host: {} per read ({} MiB working set; pages asked for: {}; in host huge pages: {})",
                    n.workload,
                    format_ns(w.time_per_step_ns.median),
                    n.working_set_bytes >> 20,
                    w.pages_requested,
                    huge
                );
            }
            None => {
                let _ = writeln!(s, "    {} natively: FAILED: {}", n.workload, n.error.as_deref().unwrap_or(""));
            }
        }
    }
    for d in &b.host_disk {
        let _ = writeln!(s, "    {} host pread of the image: {} per {} KiB request", d.workload, format_ns(d.time_per_request_ns.median), d.request_bytes / 1024);
    }
    for c in report.comparisons.iter().filter(|c| c.kind != "shadow/ept") {
        let _ = writeln!(
            s,
            "    {:<18} {:<16} {:<6} {:>10.2}x   ({} / {})",
            c.workload,
            c.kind,
            c.mode.unwrap_or(""),
            c.ratio,
            format_ns(c.numerator_ns),
            format_ns(c.denominator_ns)
        );
    }
}

fn render_failures(report: &BenchReport, s: &mut String) {
    let failed: Vec<_> = report.results.iter().filter(|r| r.measured.is_none()).collect();
    if report.mode_failures.is_empty() && failed.is_empty() {
        return;
    }
    let _ = writeln!(s, "\n  failures:");
    for m in &report.mode_failures {
        let _ = writeln!(s, "    --mmu {}: {}", m.mode, m.error);
    }
    for r in failed.iter().filter(|r| !report.mode_failures.iter().any(|m| m.mode == r.mode)) {
        let _ = writeln!(s, "    {} ({}): {}", r.workload, r.mode, r.error.as_deref().unwrap_or(""));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_pick_a_readable_unit() {
        assert_eq!(format_ns(12.34), "12.3 ns");
        assert_eq!(format_ns(24_065.0), "24.07 µs");
        assert_eq!(format_ns(712_300.0), "712.30 µs");
        assert_eq!(format_ns(3_400_000.0), "3.40 ms");
        assert_eq!(format_ns(2.5e9), "2.50 s");
    }
}
