//! Snapshot and restore: a guest stopped at an arbitrary point and continued from a file
//! goes on exactly where it was, in the memory mode it was taken in and in the other one.
//!
//! The subjects are guests that count (`count` in the kernel, `count-user` in a ring-3
//! task): what the first run printed, followed by what the restored run printed, must be
//! 1, 2, …, N with nothing lost and nothing repeated.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use hv::devices::console::CapturedOutput;
use hv::outcome::GuestStop;
use hv::vmm::snapshot::{self, AfterSnapshot, SnapshotInputs};
use hv::vmm::{Vm, VmConfig};
use pv_abi::MmuMode;

use common::temp_path;

/// The numbers a counting guest printed (`count: i` or a bare `i`), in order.
fn numbers(output: &str) -> Vec<u64> {
    output.lines().filter_map(|l| l.strip_prefix("count: ").unwrap_or(l).trim().parse().ok()).collect()
}

/// Runs `args` in `mmu` until it has printed `before` numbers, snapshots it to `file`
/// with `--stop`, and returns what it printed.
fn run_and_snapshot(args: &[&str], mmu: MmuMode, before: usize, file: &Path) -> String {
    let config = VmConfig { mmu, timeout: Some(Duration::from_secs(60)), ..VmConfig::builtin_guest(args) };
    let console = CapturedOutput::default();
    let vm = Vm::new(&config, Box::new(console.clone()), Instant::now()).expect("the VM is created");
    let control = vm.control();
    let runner = std::thread::spawn(move || vm.run().expect("the VM runs"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while numbers(&console.text()).len() < before {
        assert!(Instant::now() < deadline, "the guest printed too little: {:?}", console.text());
        std::thread::sleep(Duration::from_millis(5));
    }
    let report = snapshot::take(&control, SnapshotInputs::from_config(&config), file.to_path_buf(), AfterSnapshot::Stop)
        .expect("the snapshot is written");
    assert!(report.summary.pages_stored > 0 && report.summary.pages_stored < report.summary.ram_pages);
    let run = runner.join().expect("the vCPU thread");
    assert!(matches!(run.stop, GuestStop::Ended { .. }), "the run ends after the snapshot: {:?}", run.stop);
    console.text()
}

/// Restores `file` in `mmu` and runs it to the end; returns the output and the stop.
fn restore_and_run(file: &Path, mmu: MmuMode) -> (String, GuestStop) {
    let snapshot = hv::state::snapshot_file::read(file).expect("the snapshot reads back");
    let (state, ram) = snapshot.map_ram().expect("its memory maps");
    let mut config = VmConfig::for_state(&state, Some(mmu)).expect("a config for it");
    config.timeout = Some(Duration::from_secs(60));
    let console = CapturedOutput::default();
    let vm = Vm::restore(&config, &state, ram, Box::new(console.clone()), Instant::now()).expect("the VM is restored");
    let report = vm.run().expect("the restored VM runs");
    (console.text(), report.stop)
}

fn continues_counting(args: &[&str], n: u64, taken_in: MmuMode, restored_in: MmuMode) {
    let file = temp_path("count.snap");
    let first = run_and_snapshot(args, taken_in, 3, &file);
    let (second, stop) = restore_and_run(&file, restored_in);
    let _ = std::fs::remove_file(&file);
    assert!(matches!(stop, GuestStop::Shutdown { code: 0 }), "the restored guest finishes: {stop:?}\n{second}");
    let mut all = numbers(&first);
    let before = all.len();
    all.extend(numbers(&second));
    let expected: Vec<u64> = (1..=n).collect();
    assert_eq!(all, expected, "counted {before} before the snapshot; first run:\n{first}\nrestored run:\n{second}");
}

#[test]
fn a_kernel_that_counts_goes_on_from_the_same_number_in_each_mode_and_across() {
    require_kvm!();
    for (a, b) in [(MmuMode::Ept, MmuMode::Ept), (MmuMode::Shadow, MmuMode::Shadow), (MmuMode::Ept, MmuMode::Shadow), (MmuMode::Shadow, MmuMode::Ept)] {
        continues_counting(&["count", "12", "20"], 12, a, b);
    }
}

#[test]
fn a_ring3_task_that_counts_goes_on_from_the_same_number_in_each_mode_and_across() {
    require_kvm!();
    for (a, b) in [(MmuMode::Ept, MmuMode::Ept), (MmuMode::Shadow, MmuMode::Shadow), (MmuMode::Ept, MmuMode::Shadow), (MmuMode::Shadow, MmuMode::Ept)] {
        continues_counting(&["count-user", "12", "20000000"], 12, a, b);
    }
}
