//! `--json PATH`: the whole report as one JSON document.
//!
//! The document is [`BenchReport`] as serde writes it:
//! every figure carries its unit in its name (`_ns`, `_bytes`, `_seconds`, `per_op`),
//! absent figures are `null`, and `schema_version` changes when a field changes
//! meaning. docs/bench.md has an annotated example.

use std::path::Path;

use super::results::BenchReport;

/// The report as pretty-printed JSON.
pub fn to_json(report: &BenchReport) -> String {
    // Serializing plain structs, maps with string keys and finite or null numbers
    // cannot fail; should serde ever refuse, say so in the file rather than panic.
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"cannot serialize the report: {e}\"}}"))
}

/// Writes the report to `path`.
pub fn write(report: &BenchReport, path: &Path) -> std::io::Result<()> {
    std::fs::write(path, to_json(report) + "\n")
}

#[cfg(test)]
mod tests {
    use super::super::results::{Baselines, Comparison, HostDescription, ModeFailure, WorkloadResult};
    use super::*;

    fn report() -> BenchReport {
        BenchReport {
            schema_version: 1,
            host: HostDescription::detect(),
            quick: true,
            modes: vec!["ept", "shadow"],
            results: vec![WorkloadResult { workload: "hypercall", mode: "shadow", operation: "a nop", measured: None, error: Some("no".into()) }],
            mode_failures: vec![ModeFailure { mode: "shadow", error: "no".into() }],
            baselines: Baselines::default(),
            comparisons: vec![Comparison::new("hypercall", "shadow/ept", None, 3.0, 2.0)],
            wall_seconds: 1.5,
        }
    }

    #[test]
    fn the_document_has_the_documented_shape() {
        let v: serde_json::Value = serde_json::from_str(&to_json(&report())).unwrap();
        for key in ["schema_version", "host", "quick", "modes", "results", "mode_failures", "baselines", "comparisons", "wall_seconds"] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        for key in ["cpu", "mmu", "mmu_description", "hardware_two_dimensional_paging", "ept_mode_means"] {
            assert!(v["host"].get(key).is_some(), "missing host.{key}");
        }
        assert!(v["results"][0]["measured"].is_null());
        assert_eq!(v["results"][0]["error"], "no");
        assert_eq!(v["comparisons"][0]["ratio"], 1.5);
        assert!(v["baselines"]["bare_exit_round_trip_ns"].is_null());
    }
}
