//! The two memory modes end to end: the same guest, the same answers, different work.
//!
//! - `selftest` prints the same results under `--mmu ept` and `--mmu shadow`;
//! - `--stats` shows trapped page-table writes and shadow syncs in shadow mode, none in ept;
//! - `hostile-ptes` plants entries a hostile kernel might write, and shadow mode refuses
//!   each one, with a trace event naming why;
//! - the trace of one small fixed workload (`task-demo`) is a snapshot in each mode;
//! - `overflow-shadow` asks for more shadow tables than the shadow area holds, with
//!   `set_cr3` and with `mmu_update`: each gets E2BIG and the guest runs on;
//! - `shadow-storm` makes the costliest exits shadow mode has, in a loop, and
//!   `--timeout` still stops it promptly (the engine's build budget bounds each exit).

mod common;
use common::{hv, selftest_counts, temp_path};

fn selftest_lines(stdout: &str) -> Vec<&str> {
    stdout.lines().filter(|l| l.starts_with("selftest: ")).collect()
}

#[test]
fn selftest_gives_the_same_results_in_both_modes() {
    require_kvm!();
    let ept = hv(&["run", "--mmu", "ept", "--", "selftest"]);
    let shadow = hv(&["run", "--mmu", "shadow", "--", "selftest"]);
    ept.expect_code(0);
    shadow.expect_code(0);
    let (passed, failed) = selftest_counts(&shadow.stdout).expect("a selftest summary");
    assert!(passed >= 34 && failed == 0, "shadow mode: {passed} passed, {failed} failed");
    assert_eq!(selftest_lines(&ept.stdout), selftest_lines(&shadow.stdout), "the two modes must print the same results");
}

/// The value of a `--stats` row, by its label.
fn stat(stderr: &str, label: &str) -> Option<String> {
    stderr.lines().find(|l| l.trim_start().starts_with(label)).map(|l| l[l.find(label).unwrap_or(0) + label.len()..].trim().to_string())
}

#[test]
fn only_shadow_mode_traps_page_table_writes() {
    require_kvm!();
    let shadow = hv(&["run", "--mmu", "shadow", "--stats", "--", "selftest"]);
    shadow.expect_code(0);
    let number = |label| stat(&shadow.stderr, label).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    assert!(number("trapped page-table writes") > 0, "shadow mode traps writes:\n{}", shadow.stderr);
    assert!(number("shadow entries synced") > 0, "and syncs shadows:\n{}", shadow.stderr);
    assert!(number("CR3 loads (set_cr3)") > 0 && number("shadow roots built") > 0);
    assert!(number("shadow roots evicted") > 0, "eight tasks in turn overflow the root cache of 8");
    assert!(number("shadow area recycled") > 0, "the self-tests reuse enough page tables to recycle the area");
    assert_eq!(number("guest entries refused"), 0, "a well-behaved guest has nothing refused");
    let ept = hv(&["run", "--mmu", "ept", "--stats", "--", "selftest"]);
    ept.expect_code(0);
    assert_eq!(stat(&ept.stderr, "trapped page-table writes").as_deref(), Some("0 (none trap)"), "{}", ept.stderr);
    assert!(!ept.stderr.contains("mmio-write"), "no page-table write exits in ept mode:\n{}", ept.stderr);
    for r in [&shadow, &ept] {
        let cr3 = stat(&r.stderr, "guest CR3 loads").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        assert!(cr3 > 0, "the guest reports its own CR3 loads in both modes");
    }
}

#[test]
fn hostile_ptes_are_each_refused_in_shadow_mode_with_the_reason() {
    require_kvm!();
    let trace = temp_path("hostile.trace");
    let r = hv(&["run", "--mmu", "shadow", "--trace", trace.to_str().unwrap(), "--", "hostile-ptes"]);
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    std::fs::remove_file(&trace).ok();
    r.expect_code(0);
    r.expect(r.stdout.contains("hostile-ptes: 5 of 5 hostile entries refused"), "every entry refused");
    for why in ["outside-guest-memory", "table-outside-pool", "1gib-page", "reserved-bits"] {
        assert!(text.lines().any(|l| l.contains("REFUSED") && l.ends_with(why)), "no refusal for {why} in the trace");
    }
    let ept = hv(&["run", "--mmu", "ept", "--", "hostile-ptes"]);
    ept.expect_code(2);
}

#[test]
fn hostile_address_spaces_too_big_for_the_shadow_area_get_e2big_and_the_guest_runs_on() {
    require_kvm!();
    // At 16 MiB the shadow area has 160 frames; the guest builds 200 page tables under
    // one root, then grows its loaded space one page table per batch.
    let trace = temp_path("overflow.trace");
    let r = hv(&["run", "--mem", "16", "--mmu", "shadow", "--stats", "--trace", trace.to_str().unwrap(), "--", "overflow-shadow", "200"]);
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    std::fs::remove_file(&trace).ok();
    r.expect_code(0);
    r.expect(r.stdout.contains("overflow-shadow: set_cr3 of a space with 200 page tables: E2BIG; the kernel runs on"), "set_cr3 refused");
    r.expect(r.stdout.contains("overflow-shadow: mmu_update growing the loaded space: E2BIG at page table"), "mmu_update refused");
    for call in ["set_cr3", "mmu_update"] {
        assert!(text.lines().any(|l| l.contains(call) && l.contains("E2BIG")), "no {call} answered E2BIG in the trace");
    }
    assert!(text.contains("every shadow dropped"), "the area overflowed on the way");
}

/// A guest whose every exit asks hv to build most of the shadow area (an `mmu_update`
/// batch of 512 entries linking and unlinking a subtree of 200 page tables) is still
/// stopped by `--timeout`, within a generous bound: each exit's work is bounded by the
/// engine's build budget. A correctness test, not a speed one: the bound is ten times
/// what a prompt stop takes on a loaded machine.
#[test]
fn hostile_shadow_storm_is_stopped_by_the_timeout() {
    require_kvm!();
    let started = std::time::Instant::now();
    let r = hv(&["run", "--mmu", "shadow", "--stats", "--timeout", "3", "--", "shadow-storm", "200"]);
    let took = started.elapsed();
    r.expect_code(124);
    r.expect(r.stdout.contains("shadow-storm: linking and unlinking 200 page tables"), "the storm started");
    r.expect(r.stderr.contains("still running after 3 s (--timeout)"), "the timeout stopped it");
    let budget = r.stderr.lines().find(|l| l.contains("build budget reached")).and_then(|l| l.split_whitespace().last()?.parse::<u64>().ok());
    r.expect(budget.is_some_and(|n| n > 0), "--stats shows the budget was reached");
    assert!(took < std::time::Duration::from_secs(30), "hv took {took:?} to stop a guest with --timeout 3");
}

fn task_demo_trace(mode: &str) -> String {
    let path = temp_path("task-demo.trace");
    hv(&["run", "--mmu", mode, "--trace", path.to_str().unwrap(), "--", "task-demo"]).expect_code(0);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).ok();
    text
}


#[test]
fn task_demo_trace_in_each_mode() {
    require_kvm!();
    let ept = task_demo_trace("ept");
    let shadow = task_demo_trace("shadow");
    assert!(!ept.contains("pt-write") && shadow.contains("pt-write"), "only shadow mode traps page-table writes");
    assert_eq!(shadow, task_demo_trace("shadow"), "a shadow-mode trace is deterministic");
    common::trace_snapshot_settings().bind(|| {
        insta::assert_snapshot!("task_demo_ept", ept);
        insta::assert_snapshot!("task_demo_shadow", shadow);
    });
}
