//! `--trace-format perfetto`: the timeline trace is a well-formed Chrome trace-event
//! JSON array that the Perfetto UI accepts: every event has its fields, each track's
//! times never go back, slices nest strictly (Perfetto drops a trace whose B/E events do
//! not pair up on a track), every flow arrow has both ends, and the counters count.

mod common;

use std::collections::HashMap;

use common::{hv, temp_path};
use serde_json::Value;

/// Runs `hv run --trace-format perfetto` with `args` and returns the parsed events.
fn timeline(extra: &[&str], guest: &[&str]) -> (Vec<Value>, common::Outcome) {
    let path = temp_path("timeline.json");
    let mut args = vec!["run", "--trace", path.to_str().unwrap(), "--trace-format", "perfetto"];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(guest);
    let r = hv(&args);
    let text = std::fs::read_to_string(&path).expect("the trace file exists");
    std::fs::remove_file(&path).ok();
    let events: Vec<Value> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("the timeline is one JSON array: {e}"));
    (events, r)
}

/// Checks the structure every timeline must have; returns the slices' names by track.
fn check_structure(events: &[Value]) -> HashMap<u64, Vec<String>> {
    let mut last_ts: HashMap<u64, f64> = HashMap::new();
    let mut open: HashMap<u64, Vec<String>> = HashMap::new();
    let mut slices: HashMap<u64, Vec<String>> = HashMap::new();
    let mut flows: HashMap<u64, (u32, u32)> = HashMap::new();
    for e in events {
        let ph = e["ph"].as_str().expect("every event has a phase");
        let tid = e["tid"].as_u64().expect("every event has a track");
        assert_eq!(e["pid"].as_u64(), Some(1), "one process: {e}");
        assert!(e["name"].is_string(), "every event has a name: {e}");
        if ph == "M" {
            continue;
        }
        let ts = e["ts"].as_f64().expect("every event but metadata has a time");
        let last = last_ts.entry(tid).or_insert(0.0);
        assert!(ts >= *last, "time never goes back on track {tid}: {e}");
        *last = ts;
        let name = e["name"].as_str().unwrap().to_string();
        match ph {
            "B" => {
                open.entry(tid).or_default().push(name.clone());
                slices.entry(tid).or_default().push(name);
            }
            "E" => {
                let top = open.get_mut(&tid).and_then(Vec::pop);
                assert_eq!(top.as_deref(), Some(name.as_str()), "an E closes the innermost open slice of its track");
            }
            "s" => flows.entry(e["id"].as_u64().unwrap()).or_default().0 += 1,
            "f" => flows.entry(e["id"].as_u64().unwrap()).or_default().1 += 1,
            "i" | "C" => {}
            other => panic!("an event phase hv does not write: {other}"),
        }
    }
    assert!(open.values().all(Vec::is_empty), "every slice is closed at the end: {open:?}");
    assert!(flows.values().all(|&(s, f)| s == 1 && f == 1), "every flow arrow has one start and one end");
    slices
}

#[test]
fn a_selftest_timeline_has_tracks_slices_flows_and_counters() {
    if !common::kvm_available() {
        return;
    }
    let (events, r) = timeline(&["--stats"], &["selftest"]);
    r.expect_code(0);
    let slices = check_structure(&events);
    let thread_names: Vec<&str> = events.iter().filter(|e| e["name"] == "thread_name").filter_map(|e| e["args"]["name"].as_str()).collect();
    assert!(thread_names.iter().any(|n| n.starts_with("vCPU")), "a vCPU track: {thread_names:?}");
    assert!(thread_names.contains(&"console backend thread"), "a track for the console backend: {thread_names:?}");

    // hv's handling of each exit is a slice, as many as --stats counts exits.
    let exit_slices = slices.values().flatten().filter(|n| n.starts_with("exit ")).count();
    let stats_exits: usize = r.stderr.lines().find_map(|l| l.trim().strip_prefix("VM exits")).and_then(|v| v.trim().parse().ok()).expect("--stats counts exits");
    assert_eq!(exit_slices, stats_exits, "one slice per VM exit");
    assert!(slices.values().flatten().any(|n| n == "guest running"), "the guest's running time is shown between exits");
    assert!(slices.values().flatten().any(|n| n == "serve ring"), "the backend's work is a slice");

    let flows: Vec<&str> = events.iter().filter(|e| e["ph"] == "s").filter_map(|e| e["name"].as_str()).collect();
    assert!(flows.contains(&"doorbell") && flows.contains(&"upcall"), "arrows from doorbell to backend and from backend to upcall");
    let exits_counter: Vec<u64> = events.iter().filter(|e| e["ph"] == "C" && e["name"] == "VM exits").filter_map(|e| e["args"]["count"].as_u64()).collect();
    assert_eq!(exits_counter.last().copied(), Some(stats_exits as u64), "the exit counter track ends at the run's count");
    assert!(exits_counter.windows(2).all(|w| w[0] < w[1]), "the counter only grows");
    assert!(events.iter().any(|e| e["ph"] == "i" && e["name"] == "hypercall nop"), "hypercalls are instant events");
}

#[test]
fn a_shadow_mode_timeline_counts_trapped_writes_and_stays_well_formed() {
    if !common::kvm_available() {
        return;
    }
    let (events, r) = timeline(&["--mmu", "shadow"], &["count-user", "2", "1"]);
    r.expect_code(0);
    let slices = check_structure(&events);
    assert!(slices.values().flatten().any(|n| n == "exit mmio-write"), "trapped page-table writes are exit slices");
    assert!(events.iter().any(|e| e["ph"] == "C" && e["name"] == "trapped page-table writes"), "and a counter track");
}

#[test]
fn a_timeline_cut_by_trace_max_is_still_well_formed() {
    if !common::kvm_available() {
        return;
    }
    let (events, r) = timeline(&["--trace-max", "50"], &["selftest"]);
    r.expect_code(0);
    check_structure(&events);
    assert!(events.iter().any(|e| e["name"] == "trace cut (--trace-max)"), "the cut is marked");
}
