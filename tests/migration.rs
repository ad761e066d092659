//! Pre-copy live migration (`hv::migration`).
//!
//! In one process: a guest dirtying memory is sent to a receiver that compares, once
//! the source is paused, every byte of its RAM with the source's (dirty tracking in
//! both memory modes), then refuses the VM: the source's guest must run on to the end.

mod common;

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hv::devices::console::CapturedOutput;
use hv::migration::receive::{accept_vm, Expect};
use hv::migration::stream::kernel_identity;
use hv::migration::{send, MigrationError, SendOptions};
use hv::outcome::GuestStop;
use hv::vmm::{Vm, VmConfig};
use pv_abi::addr::PseudoPhys;
use pv_abi::MmuMode;

/// Sends a running `dirty-loop` guest to an in-process receiver that checks the memory
/// it got against the source's at the pause, and refuses it.
fn memory_arrives_whole(mode: MmuMode) {
    let config = VmConfig { mmu: mode, ..VmConfig::builtin_guest(&["dirty-loop", "8", "20000", "3"]) };
    let console = CapturedOutput::default();
    let vm = Vm::new(&config, Box::new(console.clone()), Instant::now()).expect("the VM is created");
    let control = vm.control();
    let vcpu = std::thread::spawn(move || vm.run().expect("the VM runs"));
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().unwrap().port();
    let kernel = kernel_identity(hv::boot::guest_image::PV_GUEST_ELF);
    let ram_bytes = config.mem_mib << 20;
    let receiver = std::thread::spawn(move || {
        let incoming = accept_vm(&listener, Expect { ram_bytes, kernel }).expect("the VM arrives");
        let mut ram = vec![0u8; ram_bytes as usize];
        incoming.ram.read(PseudoPhys::new(0), &mut ram).unwrap();
        incoming.answer.refuse("this test only compares memory");
        ram
    });
    // Let the guest start writing.
    std::thread::sleep(Duration::from_millis(700));
    let at_pause = Arc::new(Mutex::new(Vec::new()));
    let seen = at_pause.clone();
    let capture = move |b: &mut hv::vcpu::control::ExitBoundary| {
        let mut ram = vec![0u8; b.kvm.ram().size() as usize];
        b.kvm.ram().read(PseudoPhys::new(0), &mut ram).map_err(|e| e.to_string())?;
        *seen.lock().unwrap() = ram;
        Ok(vec![1, 2, 3])
    };
    let options = SendOptions { destination: format!("127.0.0.1:{port}"), max_rounds: 5, downtime_target: Duration::from_millis(5), kernel };
    let mut rounds = Vec::new();
    let result = send(&control, &options, capture, |r| {
        eprintln!("{mode:?}: {}", r.line());
        rounds.push(r.clone());
    });
    let received = receiver.join().expect("the receiver");
    match result {
        Err(MigrationError::Refused(why)) => assert!(why.contains("only compares memory"), "{why}"),
        other => panic!("the receiver refused the VM, yet send said {other:?}"),
    }
    assert!(rounds.len() >= 2 && rounds[0].pages_sent > 0, "{rounds:?}");
    let source = at_pause.lock().unwrap();
    let differing: Vec<usize> = (0..source.len() / 4096).filter(|p| source[p * 4096..][..4096] != received[p * 4096..][..4096]).collect();
    assert!(differing.is_empty(), "{mode:?}: {} pages differ at the pause, first frames {:x?}", differing.len(), &differing[..differing.len().min(8)]);
    // The source's guest ran on to the end, as if nothing had happened.
    let report = vcpu.join().expect("the vCPU thread");
    assert_eq!(report.stop, GuestStop::Shutdown { code: 0 }, "{}", console.text());
    assert!(console.text().contains("dirty-loop: done"), "{}", console.text());
}

#[test]
fn memory_arrives_whole_in_ept_mode_and_a_refused_guest_runs_on() {
    require_kvm!();
    memory_arrives_whole(MmuMode::Ept);
}

#[test]
fn memory_arrives_whole_in_shadow_mode_and_a_refused_guest_runs_on() {
    require_kvm!();
    memory_arrives_whole(MmuMode::Shadow);
}

// ---- Two hv processes on loopback ----------------------------------------------------

use common::background::Background;
use common::{hv, temp_path, Outcome};

/// A fresh zeroed disk image, removed when dropped.
struct Disk(std::path::PathBuf);

impl Disk {
    fn new() -> Disk {
        let path = temp_path("migrate-disk.img");
        std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
        Disk(path)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The work the migrated guests do: 150 checksum steps 10 ms apart over 4 MiB (and the
/// disk), about 1.5 s, so the migration lands in the middle of it.
const CHECKSUM: [&str; 5] = ["checksum-loop", "4", "150", "10", ""];

fn checksum_result(out: &str) -> Option<&str> {
    out.lines().find_map(|l| l.strip_prefix("checksum-loop: result "))
}

/// Runs `guest` in an hv (`--mmu from`) that migrates it after `after` seconds to an hv
/// receiving in mode `to`, with `extra` source options; returns (source, destination).
fn migrate(from: &str, to: &str, disk: Option<&Disk>, guest: &[&str], after: &str, extra: &[&str]) -> (Outcome, Outcome) {
    let mut destination = Background::start(&["run", "--incoming", "127.0.0.1:0", "--mmu", to]);
    let port = destination.listening_port();
    let target = format!("127.0.0.1:{port}");
    let mut args = vec!["run", "--mmu", from, "--migrate-to", &target, "--migrate-after", after];
    if let Some(d) = disk {
        args.extend(["--disk", d.path()]);
    }
    args.extend(extra);
    args.push("--");
    args.extend(guest.iter().filter(|w| !w.is_empty()));
    let source = hv(&args);
    (source, destination.finish())
}

/// A migrated checksum run prints the same result as an unmigrated one, with the disk
/// (pages written before the migration are read back after it), and the source prints
/// each round and the downtime.
fn same_result_as_unmigrated(from: &str, to: &str) {
    let plain_disk = Disk::new();
    let plain = hv(&["run", "--mmu", from, "--disk", plain_disk.path(), "--", CHECKSUM[0], CHECKSUM[1], CHECKSUM[2], CHECKSUM[3]]);
    plain.expect_code(0);
    let expected = checksum_result(&plain.stdout).expect("the unmigrated run's result").to_string();
    let disk = Disk::new();
    let (source, destination) = migrate(from, to, Some(&disk), &CHECKSUM, "0.5", &[]);
    source.expect_code(0);
    source.expect(source.stderr.contains("migrate: round  0:") && source.stderr.contains("(paused)"), "per-round figures");
    source.expect(source.stderr.contains("downtime") && source.stderr.contains("migrated to 127.0.0.1:"), "the downtime and the end");
    source.expect(checksum_result(&source.stdout).is_none(), "the source stopped before the end of the work");
    destination.expect_code(0);
    destination.expect(destination.stderr.contains(&format!("{from} mode there, {to} here")), "the destination names both modes");
    let got = checksum_result(&destination.stdout);
    destination.expect(got == Some(expected.as_str()), &format!("the migrated result equals the unmigrated one ({expected})"));
    eprintln!("{from} -> {to}:\n{}", source.stderr.lines().filter(|l| l.starts_with("migrate:")).collect::<Vec<_>>().join("\n"));
}

#[test]
fn a_migrated_guest_computes_what_an_unmigrated_one_does_ept_to_ept() {
    require_kvm!();
    same_result_as_unmigrated("ept", "ept");
}

#[test]
fn a_migrated_guest_computes_what_an_unmigrated_one_does_shadow_to_shadow() {
    require_kvm!();
    same_result_as_unmigrated("shadow", "shadow");
}

#[test]
fn a_migrated_guest_computes_what_an_unmigrated_one_does_ept_to_shadow() {
    require_kvm!();
    same_result_as_unmigrated("ept", "shadow");
}

#[test]
fn a_migrated_guest_computes_what_an_unmigrated_one_does_shadow_to_ept() {
    require_kvm!();
    same_result_as_unmigrated("shadow", "ept");
}

#[test]
fn a_guest_migrates_twice_across_modes_and_computes_the_same() {
    require_kvm!();
    let work = ["checksum-loop", "4", "150", "10"];
    let plain = hv(&["run", "--", work[0], work[1], work[2], work[3]]);
    let expected = checksum_result(&plain.stdout).expect("the unmigrated run's result").to_string();
    // ept here → shadow there, which sends it on after a while → ept at the last hv.
    let mut last = Background::start(&["run", "--incoming", "127.0.0.1:0", "--mmu", "ept"]);
    let to_last = format!("127.0.0.1:{}", last.listening_port());
    let mut middle = Background::start(&["run", "--incoming", "127.0.0.1:0", "--mmu", "shadow", "--migrate-to", &to_last, "--migrate-after", "0.4"]);
    let to_middle = format!("127.0.0.1:{}", middle.listening_port());
    let first = hv(&["run", "--migrate-to", &to_middle, "--migrate-after", "0.4", "--", work[0], work[1], work[2], work[3]]);
    let (middle, last) = (middle.finish(), last.finish());
    for (name, run) in [("first", &first), ("middle", &middle)] {
        run.expect_code(0);
        run.expect(run.stderr.contains("which runs it now"), &format!("the {name} hv handed the guest on"));
    }
    last.expect_code(0);
    last.expect(checksum_result(&last.stdout) == Some(expected.as_str()), &format!("the twice-migrated result equals the unmigrated one ({expected})"));
}

#[test]
fn a_hot_working_set_falls_back_to_stop_and_copy_and_writes_its_figures() {
    require_kvm!();
    let json = temp_path("migrate.json");
    let plot = temp_path("migrate.svg");
    let (j, p) = (json.to_str().unwrap().to_string(), plot.to_str().unwrap().to_string());
    // Writing as fast as it can, the guest dirties pages in every round (round 0 alone
    // takes tens of milliseconds); no round that leaves a page dirty can meet a zero
    // downtime target, so the round limit ends the live rounds.
    let guest = ["dirty-loop", "16", "0", "3", ""];
    let extra = ["--max-rounds", "2", "--downtime-ms", "0", "--json", &j, "--plot", &p];
    let (source, destination) = migrate("ept", "ept", None, &guest, "0.5", &extra);
    source.expect_code(0);
    source.expect(source.stderr.contains("did not converge within 2 rounds: fell back to stop-and-copy"), "the fallback is named");
    destination.expect_code(0);
    destination.expect(destination.stdout.contains("dirty-loop: done"), "the guest finished at the destination");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON")).expect("JSON");
    assert_eq!(report["stopped_because"], "round_limit");
    assert_eq!(report["rounds"].as_array().map(Vec::len), Some(3), "2 live rounds and the paused one: {report}");
    assert!(report["downtime_ms"].as_f64().is_some_and(|d| d > 0.0));
    let svg = std::fs::read_to_string(&plot).expect("the plot");
    assert!(svg.starts_with("<svg") && svg.contains("round limit"));
    let _ = (std::fs::remove_file(json), std::fs::remove_file(plot));
}

#[test]
fn killing_the_destination_mid_migration_leaves_the_source_guest_running() {
    require_kvm!();
    let mut destination = Background::start(&["run", "--incoming", "127.0.0.1:0"]);
    let target = format!("127.0.0.1:{}", destination.listening_port());
    // A hot working set and no way to converge: the rounds go on until the kill.
    let mut source = Background::start(&[
        "run", "--migrate-to", &target, "--migrate-after", "0.3", "--max-rounds", "1000", "--downtime-ms", "0", "--",
        "dirty-loop", "16", "0", "3",
    ]);
    source.wait_for("migrate: round  2");
    destination.kill();
    let destination = destination.finish();
    let source = source.finish();
    source.expect_code(0);
    source.expect(source.stderr.contains("failed") && source.stderr.contains("the guest runs on here"), "the failure is reported");
    source.expect(source.stdout.contains("dirty-loop: done"), "the source's guest ran to its end");
    destination.expect(destination.code != 0, "the destination was killed");
}

// ---- The command line ----------------------------------------------------------------

#[test]
fn help_explains_the_migration_options() {
    let r = hv(&["run", "--help"]);
    r.expect_code(0);
    for option in ["--incoming", "--migrate-to", "--migrate-after", "--max-rounds", "--downtime-ms", "--json", "--plot", "dirty-loop", "checksum-loop"] {
        r.expect(r.stdout.contains(option), &format!("--help mentions {option}"));
    }
}

#[test]
fn migration_options_that_cannot_go_together_are_usage_errors() {
    for args in [
        &["run", "--migrate-after", "2", "--", "echo"][..],
        &["run", "--incoming", "127.0.0.1:0", "--", "echo"],
        &["run", "--migrate-to", "127.0.0.1:1", "--downtime-ms", "-1"],
        &["run", "--migrate-to", "127.0.0.1:1", "--max-rounds", "0"],
    ] {
        let r = hv(args);
        r.expect_code(2);
    }
}

#[test]
fn a_destination_that_cannot_be_reached_leaves_the_guest_running() {
    require_kvm!();
    // Nothing listens on the port of a listener just closed.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let r = hv(&["run", "--migrate-to", &format!("127.0.0.1:{port}"), "--migrate-after", "0.2", "--", "dirty-loop", "2", "100", "1"]);
    r.expect_code(0);
    r.expect(r.stderr.contains("cannot connect to 127.0.0.1:") && r.stderr.contains("the guest runs on here"), "the failure is named");
    r.expect(r.stdout.contains("dirty-loop: done"), "the guest ran to its end");
}

#[test]
fn hv_ctl_migrate_sends_a_guest_with_a_control_socket_and_reports_each_round() {
    require_kvm!();
    let socket = temp_path("migrate.sock");
    let socket_arg = socket.to_str().unwrap().to_string();
    let json = temp_path("ctl-migrate.json");
    let json_arg = json.to_str().unwrap().to_string();
    let mut destination = Background::start(&["run", "--incoming", "127.0.0.1:0", "--mmu", "shadow"]);
    let target = format!("127.0.0.1:{}", destination.listening_port());
    let mut source = Background::start(&["run", "--control", &socket_arg, "--", "checksum-loop", "4", "150", "10"]);
    source.wait_for("control socket listening");
    let ctl = hv(&["ctl", &socket_arg, "migrate", &target, "--max-rounds", "10", "--json", &json_arg]);
    ctl.expect_code(0);
    ctl.expect(ctl.stdout.contains("migrate: round  0:") && ctl.stdout.contains("(paused)") && ctl.stdout.contains("downtime"), "hv ctl prints each round and the downtime");
    let (source, destination) = (source.finish(), destination.finish());
    source.expect_code(0);
    source.expect(source.stderr.contains("which runs it now"), "the source's run ended with the migration");
    destination.expect_code(0);
    destination.expect(checksum_result(&destination.stdout).is_some(), "the guest finished at the destination");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON")).expect("JSON");
    assert!(report["rounds"].as_array().is_some_and(|r| r.len() >= 2), "{report}");
    let _ = std::fs::remove_file(json);
}
