//! Lab 4 on a real guest: `hostile-ptes` under shadow paging (every hostile entry
//! refused, each with its reason in the trace), and `selftest`, which must print the
//! same results under `--mmu shadow` as under `--mmu ept` (hardware does the same job
//! there, so any difference is a bug in the shadow).

mod guest;

use guest::{boot, expect_lines, kvm_or_not_run};
use pv_abi::MmuMode;

#[test]
fn vm_hostile_ptes_are_each_refused_with_the_reason() {
    if !kvm_or_not_run() {
        return;
    }
    let run = boot(MmuMode::Shadow, &["hostile-ptes"]);
    run.expect_exit(0, "the reflection rules on a real guest (hostile-ptes)");
    assert!(run.output.contains("hostile-ptes: 5 of 5 hostile entries refused"), "lab 4: the reflection rules: every hostile entry must be refused (the guest reads through each one and must fault)\n--- guest output:\n{}", run.output);
    // The first refusal of each case, in the order the guest plants them. An entry may
    // be refused again when a shadow is rebuilt; the first time is what is fixed.
    let mut first: Vec<String> = Vec::new();
    for line in run.refused {
        if !first.contains(&line) {
            first.push(line);
        }
    }
    let expected = ["level=1: outside-guest-memory", "level=2: table-outside-pool", "level=3: 1gib-page", "level=1: reserved-bits"];
    expect_lines(&first, &expected, "distinct REFUSED lines of the trace", "each hostile entry is refused with its reason (a frame beyond RAM and the shadow area are both outside the guest's memory; a 1 GiB page is refused as such, before anything else is asked of it)");
}

#[test]
fn vm_selftest_gives_the_same_results_in_both_modes() {
    if !kvm_or_not_run() {
        return;
    }
    let ept = boot(MmuMode::Ept, &["selftest"]);
    ept.expect_exit(0, "selftest under ept (no shadow paging: this should not fail)");
    let shadow = boot(MmuMode::Shadow, &["selftest"]);
    let lines = |out: &str| out.lines().filter(|l| l.starts_with("selftest: ")).map(str::to_string).collect::<Vec<_>>();
    let want = lines(&ept.output);
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    // A guest that shut down by itself printed its results: the first differing one
    // says most about what went wrong, so compare them before the exit code.
    if matches!(shadow.stop, hv::outcome::GuestStop::Shutdown { .. }) {
        expect_lines(&lines(&shadow.output), &want, "selftest results (shadow against ept)", "the shadow must translate exactly as the hardware does: same selftest results in both modes");
    }
    shadow.expect_exit(0, "selftest under shadow paging");
}
