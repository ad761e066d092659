//! `hv demo`: every demo runs start to end with `--auto --fast` on real VMs, and what it
//! says (narration, evidence, the shape of its figures) is compared with a snapshot, the
//! measured numbers redacted: a change to a demo's story shows up in review.

mod common;

use common::hv;

/// Each demo's name; `hv demo` must list them all.
const DEMOS: [&str; 14] = ["trap-and-emulate", "popek-goldberg", "hypercall", "split-driver", "emulated-vs-pv", "event-index", "shadow-vs-ept", "isolation", "switch", "balloon", "snapshot", "migration", "record-replay", "vm-vs-container"];

/// Runs one demo and snapshots its narration with the figures redacted; returns its
/// output (empty without KVM).
fn demo_snapshot(name: &str) -> String {
    demo_snapshot_with(name, &[])
}

/// [`demo_snapshot`], with more filters (pattern, replacement) for what differs between
/// hosts.
fn demo_snapshot_with(name: &str, filters: &[(&str, &str)]) -> String {
    if !common::kvm_available() {
        return String::new();
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
    // Guest addresses move whenever the kernel's image changes size.
    settings.add_filter(r"0x[0-9a-f]{5,}", "[addr]");
    // The kernel's size changes with every change to it (and the free memory with it).
    settings.add_filter(r"\d+ KiB free above it", "[n] KiB free above it");
    for (pattern, replacement) in filters {
        settings.add_filter(pattern, *replacement);
    }
    settings.bind(|| insta::assert_snapshot!(format!("demo_{name}"), r.stdout));
    r.stdout
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
fn demo_popek_goldberg() {
    // What the instructions reveal depends on the CPU (CR0's bits, whether it has UMIP):
    // the evidence lines are checked here and left out of the snapshot.
    let out = demo_snapshot_with("popek-goldberg", &[(r"(?m)^   │ .*$", "   │ [what this CPU showed]")]);
    if out.is_empty() {
        return;
    }
    let first_run = out.split("── step 2").next().unwrap_or("");
    assert_eq!(first_run.matches(" in ring 3: ").count(), 6, "six instructions, one line each:\n{out}");
    assert!(first_run.contains("popf (clearing IF) in ring 3: rflags after=") && first_run.contains("ignored silently, and nothing trapped"), "popf's silent failure is shown");
    assert!(first_run.contains("GDT base=0xffffffff8"), "sgdt reveals the kernel's table address");
    let umip_run = out.split("── step 3").nth(1).unwrap_or("");
    assert!(umip_run.contains("#GP, the CPU refused it (UMIP)") || umip_run.contains("has no UMIP"), "UMIP blocks sgdt, or the CPU says it has none");
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
fn demo_emulated_vs_pv() {
    let out = demo_snapshot_with("emulated-vs-pv", &[(r"VM exits per line \(emulated UART\): \d+", "VM exits per line (emulated UART): [n]")]);
    if !out.is_empty() {
        // Two exits per character: "line N through the emulated UART\n" is 33 or 34 characters.
        let exits: f64 = out.lines().find_map(|l| l.strip_prefix("   ▸ VM exits per line (emulated UART): ")).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        assert!((66.0..=68.0).contains(&exits), "two exits per character, got {exits}:\n{out}");
        assert!(out.contains("VM exits per line (paravirtual console): 0"), "none through the ring");
    }
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

#[test]
fn demo_record_replay() {
    // How many exits and clock reads a run makes depends on timing; the hash on the
    // guest's memory then. What must hold: the replay ends where the recording did.
    let out = demo_snapshot_with(
        "record-replay",
        &[(r"(exits recorded|exits replayed|inputs in the log): \d+", "$1: [n]"), (r"hash at the end: [0-9a-f]{16}", "hash at the end: [hash]")],
    );
    if out.is_empty() {
        return;
    }
    let figure = |label: &str| out.lines().filter_map(|l| l.strip_prefix(&format!("   ▸ {label}: "))).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(figure("guest exits recorded"), figure("guest exits replayed"), "as many exits replayed as recorded:\n{out}");
    let hashes = figure("guest memory hash at the end");
    assert!(hashes.len() == 2 && hashes[0] == hashes[1], "the same memory hash twice: {hashes:?}");
    assert!(out.contains("same memory, byte for byte: yes"));
}

#[test]
fn demo_snapshot_and_restore() {
    // Where the snapshot falls (after the third line or the fourth) depends on timing.
    let out = demo_snapshot_with("snapshot", &[(r"count: \d+", "count: [n]"), (r"(?m)^   │ count: \[n\]\n", ""), (r"\d+ \+ \d+ = 8", "[n] + [n] = 8"), (r"pages saved \(the non-zero ones\): \d+ of", "pages saved (the non-zero ones): [n] of")]);
    if out.is_empty() {
        return;
    }
    let counted: Vec<u32> = out.lines().filter_map(|l| l.strip_prefix("   │ count: ")).filter_map(|n| n.parse().ok()).collect();
    assert_eq!(counted, (1..=8).collect::<Vec<_>>(), "every line once, in order, across the snapshot:\n{out}");
}

#[test]
fn demo_switch() {
    // Round trips and frame counts depend on timing (an ARP retry, a late reply).
    let out = demo_snapshot_with(
        "switch",
        &[(r"time=\d+ us", "time=[n] us"), (r"(min|p50|p99|max) \d+ us", "$1 [n] us"), (r"port (g\d): .*", "port $1: [frames]")],
    );
    if out.is_empty() {
        return;
    }
    assert!(out.contains("g1 | net-ping: 3 sent, 3 received"), "g1's pings crossed the switch:\n{out}");
    for port in ["g0", "g1"] {
        let line = out.lines().find(|l| l.contains(&format!("▸ port {port}: "))).unwrap_or_else(|| panic!("{port}'s counters are shown:\n{out}"));
        assert!(!line.contains(": 0 frames in"), "{port} sent frames: {line}");
    }
    assert!(out.contains("(1 flooded)") || out.contains("(2 flooded)"), "the first ARP broadcast was flooded");
}

#[test]
fn demo_balloon() {
    let out = demo_snapshot_with(
        "balloon",
        &[(r"resident memory: .*", "resident memory: [MiB]"), (r"released per second: .*", "released per second: [rate]"), (r"(?m)^   │ balloon: .*$", "   │ balloon: [status line]")],
    );
    if out.is_empty() {
        return;
    }
    let drop: f64 = out
        .lines()
        .find_map(|l| l.split("MiB (").nth(1)?.strip_suffix(" MiB)")?.parse().ok())
        .unwrap_or_else(|| panic!("the resident memory's change is shown:\n{out}"));
    assert!(drop <= -24.0, "inflating 40 MiB lowered hv's RSS by at least 24 MiB, got {drop}");
    assert!(out.contains("taken back 40960 KiB"), "the deflate took every frame back");
}

#[test]
fn demo_migration() {
    // How many rounds, pages and lines fall on each side depends on timing.
    let out = demo_snapshot_with(
        "migration",
        &[(r"(?m)^   ▸ round \d+ .*\n", ""), (r"(?m)^   │ (here +|there) \| count: \d+\n", ""), (r"(?m)^   │ count: \d+\n", ""), (r"\d+ \+ \d+ = 12", "[n] + [n] = 12")],
    );
    if out.is_empty() {
        return;
    }
    let counted: Vec<u32> = out.lines().filter_map(|l| l.split("count: ").nth(1)).filter_map(|n| n.split_whitespace().next()?.parse().ok()).collect();
    assert_eq!(counted, (1..=12).collect::<Vec<_>>(), "every line once, in order, across the migration:\n{out}");
    assert!(out.contains("(guest paused ):"), "the last round ran with the guest paused");
}

#[test]
fn demo_vm_vs_container() {
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: the container of vm-vs-container needs root (namespaces, a cgroup)");
        return;
    }
    let out = demo_snapshot_with(
        "vm-vs-container",
        &[(r"its resident memory: .*", "its resident memory: [kB]"), (r"memory limit \(cgroup\): .*", "memory limit (cgroup): [limit]"), (r"\d+×", "[ratio]")],
    );
    if out.is_empty() {
        return;
    }
    for seen in ["│ pid = 1", "│ hostname = hv-container", "│ interfaces = lo", "│ processes_visible = 1"] {
        assert!(out.contains(seen), "the container sees only its own namespaces: {seen}\n{out}");
    }
}
