//! Two guests in one hv process, at the same time: a VM is a value (`hv::vmm::Vm`), and
//! nothing one VM holds is shared with another. Each guest gets its own KVM VM, vCPU
//! thread, devices and console sink; the test checks that both run to a clean shutdown
//! and that neither's console output lands in the other's sink, and that each guest's
//! `--timeout` watchdog kicks its own vCPU thread only.

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hv::devices::console::CapturedOutput;
use hv::outcome::GuestStop;
use hv::vmm::{Vm, VmConfig};
use pv_abi::MmuMode;

use common::{selftest_counts, temp_path, tiny_kernel};

/// What one guest did: how it stopped, what it printed, and when its run began and ended.
struct GuestRun {
    stop: GuestStop,
    output: String,
    ran: (Instant, Instant),
}

/// Creates one `Vm` per config on this thread, then runs each on a thread of its own,
/// released together so that the runs overlap.
fn run_together(configs: Vec<VmConfig>) -> Vec<GuestRun> {
    let start_line = Arc::new(Barrier::new(configs.len()));
    let threads: Vec<_> = configs
        .into_iter()
        .map(|config| {
            let console = CapturedOutput::default();
            let vm = Vm::new(&config, Box::new(console.clone()), Instant::now()).expect("the VM is created");
            let start_line = start_line.clone();
            std::thread::spawn(move || {
                start_line.wait();
                let began = Instant::now();
                let report = vm.run().expect("the VM runs");
                GuestRun { stop: report.stop, output: console.text(), ran: (began, Instant::now()) }
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().expect("a vCPU thread")).collect()
}

fn overlap(a: (Instant, Instant), b: (Instant, Instant)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

#[test]
fn two_guests_run_selftest_at_the_same_time() {
    require_kvm!();
    let ept = VmConfig::builtin_guest(&["selftest"]);
    let shadow = VmConfig { mmu: MmuMode::Shadow, ..VmConfig::builtin_guest(&["selftest"]) };
    let runs = run_together(vec![ept, shadow]);
    for (run, mode) in runs.iter().zip(["ept", "shadow"]) {
        assert_eq!(run.stop, GuestStop::Shutdown { code: 0 }, "the {mode} guest stopped badly:\n{}", run.output);
        let (passed, failed) = selftest_counts(&run.output).expect("a selftest summary line");
        assert!(passed > 0 && failed == 0, "the {mode} guest: {passed} passed, {failed} failed:\n{}", run.output);
        // Had the other guest's console reached this sink, its lines would be here too:
        // every test result line would appear twice, and so would the summary.
        let mut lines: Vec<&str> = run.output.lines().filter(|l| l.starts_with("selftest: ")).collect();
        let count = lines.len();
        lines.sort_unstable();
        lines.dedup();
        assert_eq!(lines.len(), count, "the {mode} guest's output holds a line twice (mixed with the other guest's?):\n{}", run.output);
    }
    assert!(overlap(runs[0].ran, runs[1].ran), "the two guests did not run at the same time");
}

#[test]
fn two_guests_keep_their_console_output_apart() {
    require_kvm!();
    let runs = run_together(vec![
        VmConfig::builtin_guest(&["echo", "alpha", "guest"]),
        VmConfig::builtin_guest(&["echo", "bravo", "guest"]),
    ]);
    for (run, (own, other)) in runs.iter().zip([("[alpha]", "[bravo]"), ("[bravo]", "[alpha]")]) {
        assert_eq!(run.stop, GuestStop::Shutdown { code: 0 }, "a guest stopped badly:\n{}", run.output);
        assert!(run.output.contains(own), "the guest's own words {own} are missing:\n{}", run.output);
        assert!(!run.output.contains(other), "the other guest's words {other} reached this console:\n{}", run.output);
    }
}

#[test]
fn two_guests_each_have_their_own_timeout() {
    require_kvm!();
    // Both kernels spin forever (`jmp $`); only their watchdogs can stop them. The
    // watchdog's signal is process-wide, but its target is one thread: the short one
    // must not stop the long one early, nor the long one wait for the short one.
    let path = temp_path("spin.elf");
    std::fs::write(&path, tiny_kernel(&[0xeb, 0xfe])).unwrap();
    let spinning = |timeout: Duration| VmConfig {
        kernel: Some(path.clone()),
        timeout: Some(timeout),
        ..VmConfig::builtin_guest(&[])
    };
    let (short, long) = (Duration::from_millis(300), Duration::from_millis(1500));
    let runs = run_together(vec![spinning(short), spinning(long)]);
    std::fs::remove_file(&path).ok();
    for (run, timeout) in runs.iter().zip([short, long]) {
        let millis = timeout.as_millis() as u64;
        assert!(
            matches!(run.stop, GuestStop::TimedOut { millis: m, .. } if m == millis),
            "the {millis} ms guest stopped with {:?}",
            run.stop
        );
        let ran = run.ran.1.duration_since(run.ran.0);
        assert!(ran >= timeout, "the {millis} ms guest was stopped after only {ran:?}");
    }
    let (short_ran, long_ran) = (runs[0].ran.1 - runs[0].ran.0, runs[1].ran.1 - runs[1].ran.0);
    assert!(short_ran < long_ran, "the short timeout waited for the long one ({short_ran:?} vs {long_ran:?})");
}

/// The lines of `stdout` that guest `name` printed, without their prefix.
fn lines_of<'a>(stdout: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("{name} | ");
    stdout.lines().filter_map(|l| l.strip_prefix(prefix.as_str())).collect()
}

#[test]
fn hv_run_guests_runs_each_guest_with_its_own_mode_and_prefixes_its_lines() {
    if !common::kvm_available() {
        return;
    }
    let r = common::hv(&["run", "--guests", "2", "--mmu", "ept,shadow", "--stats", "--", "count", "3", "5"]);
    r.expect_code(0);
    for name in ["g0", "g1"] {
        r.expect(lines_of(&r.stdout, name) == ["count: 1", "count: 2", "count: 3"], &format!("{name} printed its three lines, in order"));
    }
    r.expect(r.stdout.lines().all(|l| l.starts_with("g0 | ") || l.starts_with("g1 | ")), "every line names its guest");
    r.expect(r.stderr.contains("g0:\n") && r.stderr.contains("g1:\n"), "--stats prints one table per guest");
    let (g0, g1) = r.stderr.split_once("g1:\n").expect("g1's table follows g0's");
    r.expect(g0.contains("memory mode ept"), "g0 ran in ept mode");
    r.expect(g1.contains("memory mode shadow"), "g1 ran in shadow mode");
}

#[test]
fn hv_run_guest_gives_each_guest_its_command_and_exits_with_the_first_failure() {
    if !common::kvm_available() {
        return;
    }
    let r = common::hv(&["run", "--guest", "echo hi", "--guest", "fault ud", "--guest", "count 1 1"]);
    r.expect(lines_of(&r.stdout, "g0").iter().any(|l| l.contains("echo: [hi]")), "g0 echoed");
    r.expect(lines_of(&r.stdout, "g2") == ["count: 1"], "g2 counted, unharmed by g1's fault");
    r.expect(r.stderr.contains("hv: g1: guest exception #UD"), "g1's fault is reported with its name");
    r.expect(r.code != 0, "hv's exit code is g1's failure");
}

#[test]
fn hv_run_guests_refuses_what_acts_on_one_guest() {
    // Both refused before any guest exists: no KVM needed.
    let r = common::hv(&["run", "--guests", "2", "--disk", "/tmp/x.img"]);
    r.expect(r.code == 2 && r.stderr.contains("--disk"), "--disk with --guests is refused by the argument parser");
    let r = common::hv(&["run", "--guests", "3", "--mmu", "ept,shadow", "--", "count", "1"]);
    r.expect_code(1);
    r.expect(r.stderr.contains("--mmu lists 2 modes for 3 guests"), "a mode list of the wrong length is named");
    let r = common::hv(&["run", "--mmu", "ept,shadow", "--", "count", "1"]);
    r.expect_code(1);
    r.expect(r.stderr.contains("there is one guest"), "a mode list for one guest is refused");
}
