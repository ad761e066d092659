//! Lab 5's report: the figures it quotes come from a real `hv bench` run.
//!
//! The student commits `labs/05-batching/bench.json` (written by
//! `hv bench --mmu both --workload pt-update/direct --workload pt-update/batched --json …`)
//! and `labs/05-batching/report.md`, filled in from `report-template.md`. These tests read
//! both from the graded tree. The JSON must be a complete result of that command; every
//! figure line of the report (`- <label>: <number>`, labels fixed by the template) must
//! be the JSON's figure, within the rounding of the digits quoted. The prose is read by
//! a human.

use std::path::PathBuf;

use serde_json::Value;

const WORKLOADS: [&str; 2] = ["pt-update/direct", "pt-update/batched"];
const MODES: [&str; 2] = ["ept", "shadow"];
/// What the template leaves in place of a number.
const BLANK: &str = "____";

/// The graded tree: `LAB_TREE` if set, else the tree this test crate was generated in
/// (the grader puts it at `<tree>/target/lab-grade/05/`).
fn tree() -> PathBuf {
    if let Some(dir) = std::env::var_os("LAB_TREE") {
        return PathBuf::from(dir);
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tree = here.ancestors().nth(3).map(PathBuf::from).unwrap_or_default();
    assert!(tree.join("labs").is_dir(), "lab 5: cannot find the graded tree above {} (set LAB_TREE to it)", here.display());
    tree
}

fn lab_file(name: &str) -> String {
    let path = tree().join("labs/05-batching").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("lab 5: the report and its JSON are part of the hand-in: cannot read {} ({e})", path.display()))
}

fn bench_json() -> Value {
    serde_json::from_str::<Value>(&lab_file("bench.json")).unwrap_or_else(|e| panic!("lab 5: labs/05-batching/bench.json is the file `hv bench --json` wrote, unedited, but it does not parse: {e}"))
}

fn result<'a>(json: &'a Value, workload: &str, mode: &str) -> &'a Value {
    let found = json["results"].as_array().and_then(|r| r.iter().find(|r| r["workload"] == workload && r["mode"] == mode));
    let r = found.unwrap_or_else(|| panic!("lab 5: bench.json has no result for {workload} in mode {mode}: run hv bench with --mmu both and both pt-update workloads"));
    assert!(r["measured"].is_object(), "lab 5: bench.json: {workload} in mode {mode} was not measured (error: {}); run the benchmark again", r["error"]);
    &r["measured"]
}

fn number(v: &Value, what: &str) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("lab 5: bench.json: {what} is not a number ({v}); is this the file hv bench wrote?"))
}

fn per_op(json: &Value, workload: &str, mode: &str, counter: &str) -> f64 {
    let m = result(json, workload, mode);
    let v = if counter == "mmu_update" { &m["per_op"]["hypercalls_by_name"]["mmu_update"] } else { &m["per_op"][counter] };
    // A counter the run never saw is absent from the by-name map: zero.
    if v.is_null() && counter == "mmu_update" {
        return 0.0;
    }
    number(v, &format!("{workload} {mode} per_op.{counter}"))
}

fn median_us(json: &Value, workload: &str, mode: &str) -> f64 {
    number(&result(json, workload, mode)["time_per_op_ns"]["median"], &format!("{workload} {mode} time_per_op_ns.median")) / 1000.0
}

fn ratio(json: &Value, workload: &str) -> f64 {
    let found = json["comparisons"].as_array().and_then(|c| c.iter().find(|c| c["workload"] == workload && c["kind"] == "shadow/ept"));
    number(&found.unwrap_or_else(|| panic!("lab 5: bench.json has no shadow/ept comparison for {workload}"))["ratio"], &format!("{workload} shadow/ept ratio"))
}

/// Every figure line of the template: its label and the JSON figure it quotes.
fn figures(json: &Value) -> Vec<(&'static str, f64)> {
    let (d, b) = (WORKLOADS[0], WORKLOADS[1]);
    vec![
        ("trapped writes per op (direct, shadow)", per_op(json, d, "shadow", "trapped_pt_writes")),
        ("trapped writes per op (batched, shadow)", per_op(json, b, "shadow", "trapped_pt_writes")),
        ("trapped writes saved per op by batching (shadow)", per_op(json, d, "shadow", "trapped_pt_writes") - per_op(json, b, "shadow", "trapped_pt_writes")),
        ("mmu_update hypercalls per op (batched, shadow)", per_op(json, b, "shadow", "mmu_update")),
        ("mmu_update entries per op (batched, shadow)", per_op(json, b, "shadow", "mmu_update_entries")),
        ("exits per op (direct, ept)", per_op(json, d, "ept", "vm_exits")),
        ("exits per op (batched, ept)", per_op(json, b, "ept", "vm_exits")),
        ("exits per op (direct, shadow)", per_op(json, d, "shadow", "vm_exits")),
        ("exits per op (batched, shadow)", per_op(json, b, "shadow", "vm_exits")),
        ("time per op in µs (direct, ept)", median_us(json, d, "ept")),
        ("time per op in µs (batched, ept)", median_us(json, b, "ept")),
        ("time per op in µs (direct, shadow)", median_us(json, d, "shadow")),
        ("time per op in µs (batched, shadow)", median_us(json, b, "shadow")),
        ("shadow/ept time ratio (direct)", ratio(json, d)),
        ("shadow/ept time ratio (batched)", ratio(json, b)),
    ]
}

/// The text after `- <label>:` on the report's line for `label`, if there is exactly one.
fn figure_line<'a>(report: &'a str, label: &str) -> Option<&'a str> {
    let prefix = format!("- {label}:");
    let mut lines = report.lines().filter_map(|l| l.trim_start().strip_prefix(prefix.as_str()));
    let first = lines.next()?;
    assert!(lines.next().is_none(), "lab 5: report.md has the figure line `{prefix}` more than once: keep one");
    Some(first.trim())
}

#[test]
fn bench_json_is_a_whole_verified_hv_bench_run() {
    let json = bench_json();
    assert_eq!(json["schema_version"], 1, "lab 5: bench.json is hv bench's JSON (schema_version 1)");
    assert!(json["host"]["mmu"].is_string() && json["host"]["ept_mode_means"].is_string(), "lab 5: bench.json names its host (host.mmu, host.ept_mode_means), as hv bench writes it");
    for mode in MODES {
        assert!(json["modes"].as_array().is_some_and(|m| m.iter().any(|m| m == mode)), "lab 5: bench.json covers both modes (--mmu both); {mode} is missing");
        for workload in WORKLOADS {
            let m = result(&json, workload, mode);
            assert_eq!(m["verified"], true, "lab 5: bench.json: {workload} in mode {mode} was not verified (the guest's check did not match): a run whose results are wrong measures nothing");
            let t = &m["time_per_op_ns"];
            let (min, median, max) = (number(&t["min"], "min"), number(&t["median"], "median"), number(&t["max"], "max"));
            assert!(0.0 < min && min <= median && median <= max, "lab 5: bench.json: {workload} {mode}: times out of order: {t}");
        }
    }
    // What only a real run shows: direct stores trap in shadow mode and never in ept
    // mode; the batched workload stores nothing itself and sends every write.
    let (d, b) = (WORKLOADS[0], WORKLOADS[1]);
    assert!(per_op(&json, d, "shadow", "trapped_pt_writes") > 0.0, "lab 5: bench.json: direct page-table stores trap in shadow mode");
    assert_eq!(per_op(&json, d, "ept", "trapped_pt_writes"), 0.0, "lab 5: bench.json: nothing traps in ept mode");
    for mode in MODES {
        assert_eq!(per_op(&json, b, mode, "direct_pt_writes"), 0.0, "lab 5: bench.json: the batched workload ({mode}) stores no entry itself");
        let (sent, queued) = (per_op(&json, b, mode, "mmu_update_entries"), per_op(&json, b, mode, "batched_pt_writes"));
        assert!(sent > 0.0 && (sent - queued).abs() < 1e-9, "lab 5: bench.json: the batched workload ({mode}) sends every queued write with mmu_update ({sent} entries per op for {queued} writes per op)");
    }
    for workload in WORKLOADS {
        let expected = median_us(&json, workload, "shadow") / median_us(&json, workload, "ept");
        let r = ratio(&json, workload);
        assert!((r - expected).abs() <= 1e-9 * expected, "lab 5: bench.json: the shadow/ept ratio for {workload} ({r}) is the quotient of the medians ({expected}): the file was edited");
    }
}

#[test]
fn report_has_every_figure_filled_in() {
    let report = lab_file("report.md");
    let json = bench_json();
    for (label, _) in figures(&json) {
        let Some(text) = figure_line(&report, label) else {
            panic!("lab 5: report.md must keep the template's figure line `- {label}: <number>` (copy report-template.md and fill in its blanks)");
        };
        assert!(!text.starts_with(BLANK), "lab 5: report.md: the figure `{label}` is still blank: fill it in from bench.json (`hv bench` prints it too)");
    }
}

#[test]
fn report_figures_match_the_json() {
    let report = lab_file("report.md");
    let json = bench_json();
    for (label, value) in figures(&json) {
        let Some(text) = figure_line(&report, label) else {
            panic!("lab 5: report.md has no figure line `- {label}: <number>`");
        };
        let quoted = text.split_whitespace().next().unwrap_or("");
        let Ok(q) = quoted.parse::<f64>() else {
            panic!("lab 5: report.md: the figure `{label}` must start with a plain number (like 2.02), not `{text}`");
        };
        // Within the rounding of the digits quoted: 2.02 stands for anything in [2.015, 2.025].
        let decimals = quoted.split_once('.').map_or(0, |(_, f)| f.len());
        let half_unit = 0.5 * 10f64.powi(-(decimals as i32));
        assert!(
            (q - value).abs() <= half_unit * (1.0 + 1e-9) + 1e-12,
            "lab 5: report.md quotes `{label}: {quoted}`, but bench.json says {value:.4}: a report's figures come from the run it was made from (quote two decimals, rounded)"
        );
    }
}
