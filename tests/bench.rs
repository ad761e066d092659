//! `hv bench --quick` end to end: structure and sanity of the report, never absolute
//! times (those depend on the machine and its load).

mod common;

use serde_json::Value;

/// Every workload id `hv bench` runs.
const WORKLOADS: [&str; 13] = [
    "pt-update/direct",
    "pt-update/batched",
    "aspace",
    "ctxswitch",
    "pagefault",
    "tlb-miss/4k",
    "tlb-miss/2m",
    "hypercall",
    "ring0",
    "blk/4k",
    "blk/64k",
    "blk-direct/4k",
    "blk-direct/64k",
];

fn result<'a>(report: &'a Value, workload: &str, mode: &str) -> &'a Value {
    report["results"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["workload"] == workload && r["mode"] == mode))
        .unwrap_or_else(|| panic!("no result for {workload} in mode {mode}"))
}

fn measured<'a>(report: &'a Value, workload: &str, mode: &str) -> &'a Value {
    let r = result(report, workload, mode);
    assert!(
        r["measured"].is_object(),
        "{workload} in mode {mode} was not measured: {}\nmode failures: {}",
        r["error"],
        report["mode_failures"]
    );
    &r["measured"]
}

#[test]
fn quick_run_in_both_modes_writes_a_sane_report_and_plot() {
    require_kvm!();
    let json_path = common::temp_path("bench.json");
    let svg_path = common::temp_path("bench.svg");
    let out = common::hv(&["bench", "--mmu", "both", "--quick", "--json", json_path.to_str().unwrap(), "--plot", svg_path.to_str().unwrap()]);
    let json = std::fs::read_to_string(&json_path);
    let svg = std::fs::read_to_string(&svg_path);
    let _ = std::fs::remove_file(&json_path);
    let _ = std::fs::remove_file(&svg_path);
    out.expect(json.is_ok() && svg.is_ok(), "hv bench wrote both files");
    let report: Value = serde_json::from_str(&json.unwrap()).expect("the JSON file parses");

    // Labels: the host's MMU is named, and what `ept` means there.
    assert!(report["host"]["mmu"].is_string() && report["host"]["ept_mode_means"].is_string());
    assert!(out.stdout.contains("--mmu ept on this host means"), "the table names what ept means:\n{}", out.stdout);
    assert_eq!(report["quick"], true);

    // Every workload in both modes, measured and verified, with sane figures.
    for workload in WORKLOADS {
        for mode in ["ept", "shadow"] {
            let m = measured(&report, workload, mode);
            assert_eq!(m["verified"], true, "{workload} {mode}");
            let t = &m["time_per_op_ns"];
            let (min, median, max) = (t["min"].as_f64().unwrap(), t["median"].as_f64().unwrap(), t["max"].as_f64().unwrap());
            assert!(0.0 < min && min <= median && median <= max, "{workload} {mode}: {t}");
            assert_eq!(t["count"], m["reps"]);
        }
    }

    // Ratios are the quotient of the figures they name, and those are the medians.
    let comparisons = report["comparisons"].as_array().expect("comparisons");
    for workload in WORKLOADS {
        let c = comparisons
            .iter()
            .find(|c| c["workload"] == workload && c["kind"] == "shadow/ept")
            .unwrap_or_else(|| panic!("no shadow/ept ratio for {workload}"));
        let shadow = measured(&report, workload, "shadow")["time_per_op_ns"]["median"].as_f64().unwrap();
        let ept = measured(&report, workload, "ept")["time_per_op_ns"]["median"].as_f64().unwrap();
        assert_eq!(c["numerator_ns"].as_f64(), Some(shadow));
        assert_eq!(c["denominator_ns"].as_f64(), Some(ept));
        assert!((c["ratio"].as_f64().unwrap() - shadow / ept).abs() <= 1e-12 * (shadow / ept));
    }
    for c in comparisons {
        let (n, d, r) = (c["numerator_ns"].as_f64().unwrap(), c["denominator_ns"].as_f64().unwrap(), c["ratio"].as_f64().unwrap());
        assert!((r - n / d).abs() <= 1e-12 * (n / d).abs(), "{c}");
    }

    // Shadow paging traps direct page-table writes; ept never does.
    let trapped = |mode| measured(&report, "pt-update/direct", mode)["per_op"]["trapped_pt_writes"].as_f64().unwrap();
    assert!(trapped("shadow") > 0.0, "shadow mode shows trapped page-table writes");
    assert_eq!(trapped("ept"), 0.0, "ept mode shows none");

    // hv's own handling time per exit: a null hypercall's, the trapped writes' (shadow),
    // set_cr3's (shadow), each less than the operation it is part of.
    let handling = |workload, mode, kind: &str| {
        let m = measured(&report, workload, mode);
        let h = &m["per_op"]["hv_handling"][kind];
        let (per_op, mean) = (h["per_op"].as_f64().unwrap_or(0.0), h["mean_ns"].as_f64().unwrap_or(0.0));
        (per_op, mean, m["time_per_op_ns"]["median"].as_f64().unwrap())
    };
    for (workload, mode, kind) in
        [("hypercall", "ept", "hypercall nop"), ("hypercall", "shadow", "hypercall nop"), ("pt-update/direct", "shadow", "trapped page-table write"), ("ctxswitch", "shadow", "hypercall set_cr3")]
    {
        let (per_op, mean, op) = handling(workload, mode, kind);
        assert!(per_op >= 0.9, "{workload} {mode}: at least one {kind} per operation, got {per_op}");
        assert!(mean > 0.0 && mean * per_op < op, "{workload} {mode}: hv's {mean} ns × {per_op} is part of the {op} ns operation");
    }
    assert!(out.stdout.contains("hv's own handling time per exit") && out.stdout.contains("null hypercall"), "the table shows hv's handling times");
    assert!(out.stdout.contains("NOTE: tlb-miss in a --quick run"), "a quick run says it cannot show TLB misses");

    // Baselines from the same run.
    assert!(report["baselines"]["bare_exit_round_trip_ns"]["median"].as_f64().is_some_and(|t| t > 0.0));
    assert_eq!(report["baselines"]["native"].as_array().map(Vec::len), Some(2));

    // The plot: an SVG document with a bar per workload and mode.
    let svg = svg.unwrap();
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "not SVG: {}", &svg[..svg.len().min(100)]);
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("class=\"bar\"").count(), 2 * WORKLOADS.len());
    out.expect_code(0);
}

#[test]
fn unknown_workload_is_a_usage_error_naming_the_known_ones() {
    let out = common::hv(&["bench", "--workload", "nonsense"]);
    out.expect_code(2);
    out.expect(out.stderr.contains("unknown workload 'nonsense'") && out.stderr.contains("tlb-miss"), "names the known workloads");
}
