//! `hv demo`: every demo runs start to end with `--auto --fast` on real VMs, and what it
//! says (narration, evidence, the shape of its figures) is compared with a snapshot, the
//! measured numbers redacted: a change to a demo's story shows up in review.

mod common;

use common::hv;

/// Each demo's name; `hv demo` must list them all.
const DEMOS: [&str; 6] = ["trap-and-emulate", "hypercall", "split-driver", "event-index", "shadow-vs-ept", "isolation"];

/// Runs one demo and snapshots its narration with the figures redacted.
fn demo_snapshot(name: &str) {
    if !common::kvm_available() {
        return;
    }
    let r = hv(&["demo", name, "--auto", "--fast"]);
    r.expect_code(0);
    r.expect(r.stdout.contains("── step 1:") && r.stdout.contains("★ "), "steps and a lesson");
    r.expect(r.stdout.contains("▸ ") || r.stdout.contains("│ "), "figures or evidence from the run");
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.add_filter(r"\(\d+ TSC cycles\)", "([n] TSC cycles)");
    settings.add_filter(r"\d+ ns each", "[time] each");
    settings.add_filter(r"\b\d+(\.\d+)? (ns|µs|ms|s)\b", "[time]");
    settings.add_filter(r"\d+\.\d+×", "[ratio]");
    settings.add_filter(r"\d+(\.\d+)?%", "[share]");
    settings.add_filter(r"\b\d+\.\d+\b", "[n]");
    settings.bind(|| insta::assert_snapshot!(format!("demo_{name}"), r.stdout));
}

#[test]
fn hv_demo_lists_every_demo_with_its_lecture() {
    let r = hv(&["demo"]);
    r.expect_code(0);
    for name in DEMOS {
        r.expect(r.stdout.contains(name), &format!("{name} is listed"));
    }
    r.expect(r.stdout.matches("(lecture: ").count() == DEMOS.len(), "each with its lecture");
}

#[test]
fn hv_demo_names_an_unknown_demo_and_the_known_ones() {
    let r = hv(&["demo", "teleport"]);
    r.expect_code(2);
    r.expect(r.stderr.contains("no demo 'teleport'") && r.stderr.contains("trap-and-emulate"), "names both");
}

#[test]
fn demo_trap_and_emulate() {
    demo_snapshot("trap-and-emulate");
}

#[test]
fn demo_hypercall() {
    demo_snapshot("hypercall");
}

#[test]
fn demo_split_driver() {
    demo_snapshot("split-driver");
}

#[test]
fn demo_event_index() {
    demo_snapshot("event-index");
}

#[test]
fn demo_shadow_vs_ept() {
    demo_snapshot("shadow-vs-ept");
}

#[test]
fn demo_isolation() {
    demo_snapshot("isolation");
}
