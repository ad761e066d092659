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
    snapshot_when_printed(vm, &config, &console, before, file)
}

/// Runs `vm` until `console` shows `before` numbers, snapshots it to `file` and stops it.
fn snapshot_when_printed(vm: Vm, config: &VmConfig, console: &CapturedOutput, before: usize, file: &Path) -> String {
    let control = vm.control();
    let runner = std::thread::spawn(move || vm.run().expect("the VM runs"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while numbers(&console.text()).len() < before {
        assert!(Instant::now() < deadline, "the guest printed too little: {:?}", console.text());
        std::thread::sleep(Duration::from_millis(5));
    }
    let report = snapshot::take(&control, SnapshotInputs::from_config(config), file.to_path_buf(), AfterSnapshot::Stop)
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

/// A snapshot of a counting guest, taken after a few lines, for the tests below to
/// damage; plus what the first run printed.
fn counting_snapshot(file: &Path, mmu: MmuMode) -> String {
    run_and_snapshot(&["count", "8", "10"], mmu, 2, file)
}

#[test]
fn hv_restore_continues_a_snapshot_from_the_command_line() {
    require_kvm!();
    let file = temp_path("cli.snap");
    let first = counting_snapshot(&file, MmuMode::Ept);
    let run = common::hv(&["restore", "--mmu", "shadow", "--stats", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    run.expect_code(0);
    let mut all = numbers(&first);
    all.extend(numbers(&run.stdout));
    assert_eq!(all, (1..=8).collect::<Vec<u64>>(), "{}", run.stdout);
    run.expect(run.stderr.contains("restore: ") && run.stderr.contains("first instruction"), "--stats says how long the restore took");
}

/// Restoring `file` must fail with exit code 1 and one line naming `problem`.
fn refused(file: &Path, problem: &str) {
    let run = common::hv(&["restore", file.to_str().unwrap()]);
    run.expect_code(1);
    run.expect(!run.stderr.contains("panicked"), "no panic");
    let line = run.stderr.trim();
    run.expect(!line.contains('\n'), "a one-line error");
    run.expect(line.starts_with("hv: error: ") && line.contains(problem), &format!("the error names the problem ({problem})"));
}

fn write_variant(original: &[u8], name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> std::path::PathBuf {
    let mut bytes = original.to_vec();
    edit(&mut bytes);
    let path = temp_path(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn hostile_snapshot_files_are_refused_with_a_one_line_error() {
    require_kvm!();
    let file = temp_path("victim.snap");
    counting_snapshot(&file, MmuMode::Shadow);
    let original = std::fs::read(&file).unwrap();
    let _ = std::fs::remove_file(&file);
    let u64_at = |o: usize| u64::from_le_bytes(original[o..o + 8].try_into().unwrap());
    let (state_len, memory_off) = (u64_at(24) as usize, u64_at(32) as usize);
    // The first stored page: the first non-zero byte of the memory image.
    let stored = memory_off + original[memory_off..].iter().position(|&b| b != 0).expect("some memory is stored");
    // A page that is not stored: the last page of RAM (the guest never writes it).
    let unstored = original.len() - 100;
    assert!(original[unstored..].iter().all(|&b| b == 0));
    let flip = |at: usize| move |b: &mut Vec<u8>| b[at] ^= 0x10;
    let cases: Vec<(&str, Box<dyn FnOnce(&mut Vec<u8>)>, &str)> = vec![
        ("empty", Box::new(|b: &mut Vec<u8>| b.clear()), "too short"),
        ("truncated-header", Box::new(|b: &mut Vec<u8>| b.truncate(40)), "too short"),
        ("truncated-state", Box::new(move |b: &mut Vec<u8>| b.truncate(4096 + state_len / 2)), "truncated"),
        ("truncated-memory", Box::new(move |b: &mut Vec<u8>| b.truncate(b.len() - 4096)), "truncated"),
        ("extended", Box::new(|b: &mut Vec<u8>| b.extend_from_slice(&[0; 4096])), "truncated or extended"),
        ("magic", Box::new(flip(0)), "not an hv snapshot"),
        ("version", Box::new(|b: &mut Vec<u8>| {
            b[8] = 1;
            let crc = crc32fast::hash(&b[..60]);
            b[60..64].copy_from_slice(&crc.to_le_bytes());
        }), "version 1"),
        ("header-field", Box::new(flip(41)), "header is damaged"),
        ("state-byte", Box::new(flip(4096 + state_len / 3)), "state section is damaged"),
        ("stored-page", Box::new(flip(stored)), "memory image is damaged"),
        ("unstored-page", Box::new(flip(unstored)), "no stored extent covers"),
        ("elf", Box::new(|b: &mut Vec<u8>| {
            b.truncate(8192);
            b[..4].copy_from_slice(b"\x7fELF");
        }), "not an hv snapshot"),
    ];
    for (name, edit, problem) in cases {
        let path = write_variant(&original, name, edit);
        refused(&path, problem);
        let _ = std::fs::remove_file(&path);
    }
    let dir = temp_path("a-directory");
    std::fs::create_dir(&dir).unwrap();
    refused(&dir, "not a regular file");
    let _ = std::fs::remove_dir(&dir);
    refused(&temp_path("missing"), "cannot open it");
}

/// A fresh disk image of `sectors` zero sectors.
fn disk_image(name: &str, sectors: u64) -> std::path::PathBuf {
    let path = temp_path(name);
    std::fs::File::create(&path).unwrap().set_len(sectors * 512).unwrap();
    path
}

#[test]
fn disk_writes_before_a_snapshot_are_seen_after_it_and_the_disk_must_be_the_same_file() {
    require_kvm!();
    let args = ["blk-fill", "0", "8", "7", ";", "count", "5", "20", ";", "blk-read-sum", "0", "8"];
    let sum_line = |out: &str| out.lines().find(|l| l.contains("blk-read-sum")).map(str::to_string);
    // The reference: the same commands without a snapshot, on a disk of its own.
    let reference_image = disk_image("snap-ref.img", 64);
    let reference = common::hv(&[&["run", "--disk", reference_image.to_str().unwrap(), "--"][..], &args[..]].concat());
    let _ = std::fs::remove_file(&reference_image);
    reference.expect_code(0);
    let expected = sum_line(&reference.stdout).expect("the reference prints the sum");

    let image = disk_image("snap-disk.img", 64);
    let file = temp_path("disk.snap");
    let disk = hv::devices::block::DiskConfig { path: image.clone(), read_only: false };
    let config = VmConfig { disk: Some(disk), timeout: Some(Duration::from_secs(60)), ..VmConfig::builtin_guest(&args) };
    let console = CapturedOutput::default();
    let vm = Vm::new(&config, Box::new(console.clone()), Instant::now()).unwrap();
    let control = vm.control();
    let runner = std::thread::spawn(move || vm.run().unwrap());
    while numbers(&console.text()).len() < 2 {
        std::thread::sleep(Duration::from_millis(5));
    }
    snapshot::take(&control, SnapshotInputs::from_config(&config), file.clone(), AfterSnapshot::Stop).expect("snapshot");
    runner.join().unwrap();
    assert!(sum_line(&console.text()).is_none(), "the snapshot came before the read");

    // Restored against the very file: the writes made before the snapshot are there.
    let run = common::hv(&["restore", "--mmu", "shadow", file.to_str().unwrap()]);
    run.expect_code(0);
    assert_eq!(sum_line(&run.stdout), Some(expected), "the restored guest reads what it wrote before the snapshot");

    // The same path at another size is refused; so is a file written since, or another
    // file (which may even get the old inode number).
    std::fs::OpenOptions::new().write(true).open(&image).unwrap().set_len(128 * 512).unwrap();
    let run = common::hv(&["restore", file.to_str().unwrap()]);
    run.expect_code(1);
    run.expect(run.stderr.contains("65536 bytes now, 32768 when the state was taken"), "a resized disk is refused");
    std::fs::remove_file(&image).unwrap();
    std::fs::File::create(&image).unwrap().set_len(64 * 512).unwrap();
    let run = common::hv(&["restore", file.to_str().unwrap()]);
    run.expect_code(1);
    run.expect(run.stderr.contains("not the same file") || run.stderr.contains("written (or replaced) after"), "another file is refused");
    let _ = std::fs::remove_file(&image);
    let _ = std::fs::remove_file(&file);
}

#[test]
fn a_restored_guest_can_be_snapshotted_and_restored_again() {
    require_kvm!();
    let (first_file, second_file) = (temp_path("gen1.snap"), temp_path("gen2.snap"));
    let first = run_and_snapshot(&["count", "10", "20"], MmuMode::Ept, 2, &first_file);
    // Restore (memory mapped from the first file), run a while, snapshot again: the
    // pages that still come from the first file must be in the second.
    let (state, ram) = hv::state::snapshot_file::read(&first_file).unwrap().map_ram().unwrap();
    let config = VmConfig::for_state(&state, Some(MmuMode::Shadow)).unwrap();
    let console = CapturedOutput::default();
    let vm = Vm::restore(&config, &state, ram, Box::new(console.clone()), Instant::now()).unwrap();
    let second = snapshot_when_printed(vm, &config, &console, 3, &second_file);
    let _ = std::fs::remove_file(&first_file);
    let (third, stop) = restore_and_run(&second_file, MmuMode::Ept);
    let _ = std::fs::remove_file(&second_file);
    assert!(matches!(stop, GuestStop::Shutdown { code: 0 }), "{stop:?}");
    let all: Vec<u64> = [first, second, third].iter().flat_map(|o| numbers(o)).collect();
    assert_eq!(all, (1..=10).collect::<Vec<u64>>());
}
