//! End-to-end: hv's seccomp filters (`hv::sandbox`) are on for `hv run`, every one of
//! its threads is confined, and a thread that makes a forbidden system call ends hv with
//! a clear report.

mod common;
use common::temp_path;

use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The line a forbidden call prints, up to the call's number.
fn report(thread: &str) -> String {
    format!("hv: seccomp: the {thread} thread made a forbidden system call")
}

/// Runs hv with `HV_TEST_SECCOMP_VIOLATION` set to `kind` (a debug-build hook).
fn hv_misbehaving(kind: &str, args: &[&str]) -> common::Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_hv"))
        .args(args)
        .env("HV_TEST_SECCOMP_VIOLATION", kind)
        .stdin(Stdio::null())
        .output()
        .expect("run hv");
    common::Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The hook exists only in debug builds (as these tests' hv binary is, under `cargo test`).
fn hook_available() -> bool {
    if !cfg!(debug_assertions) {
        eprintln!("SKIPPED: the forbidden-call hook exists only in debug builds");
    }
    cfg!(debug_assertions)
}

#[test]
fn hostile_a_backend_thread_that_makes_a_forbidden_call_stops_hv_with_a_clear_report() {
    require_kvm!();
    if !hook_available() {
        return;
    }
    let r = hv_misbehaving("console-backend", &["run", "--", "selftest"]);
    r.expect(r.code == i32::from(hv::sandbox::EXIT_SECCOMP), "hv ends with the seccomp exit code (159)");
    let line = format!("{} 41 (socket); this is a bug in hv or an attack", report("console backend"));
    r.expect(r.stderr.contains(&line), "names the thread and the call");

    let disk = temp_path("seccomp-disk.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let r = hv_misbehaving("block-backend", &["run", "--disk", disk.to_str().unwrap(), "--", "blk-read-sum", "0", "8"]);
    std::fs::remove_file(&disk).ok();
    r.expect(r.code == i32::from(hv::sandbox::EXIT_SECCOMP), "the block backend is stopped the same way");
    r.expect(r.stderr.contains(&report("block backend")), "and named");
}

#[test]
fn hostile_the_vcpu_and_watchdog_threads_are_stopped_the_same_way() {
    require_kvm!();
    if !hook_available() {
        return;
    }
    for (kind, name, args) in [
        ("vcpu", "vcpu", &["run", "--", "selftest"][..]),
        ("watchdog", "watchdog", &["run", "--timeout", "30", "--", "count", "100000000", "100"][..]),
    ] {
        let r = hv_misbehaving(kind, args);
        r.expect(r.code == i32::from(hv::sandbox::EXIT_SECCOMP), &format!("{kind}: the seccomp exit code"));
        r.expect(r.stderr.contains(&report(name)), &format!("{kind}: named"));
    }
}

#[test]
fn no_seccomp_says_so_and_lets_the_same_call_through() {
    require_kvm!();
    let r = hv_misbehaving("console-backend", &["run", "--no-seccomp", "--", "selftest"]);
    r.expect_code(0);
    r.expect(r.stderr.contains("--no-seccomp: hv's threads run without seccomp filters"), "says it is off");
    r.expect(!r.stderr.contains("hv: seccomp:"), "nothing trapped");
}

/// Each thread of process `pid`: its name and the `Seccomp:` line of its status (2 is
/// "filter mode").
fn threads(pid: u32) -> Vec<(String, String)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    let mut found = Vec::new();
    for task in tasks.flatten() {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default().trim().to_string();
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let mode = status.lines().find_map(|l| l.strip_prefix("Seccomp:")).unwrap_or("?").trim().to_string();
        found.push((name, mode));
    }
    found.sort();
    found
}

#[test]
fn every_thread_of_a_running_hv_is_in_seccomp_filter_mode() {
    require_kvm!();
    let socket = temp_path("seccomp-control.sock");
    let disk = temp_path("seccomp-threads.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hv"))
        .args(["run", "--control", socket.to_str().unwrap(), "--timeout", "60", "--disk", disk.to_str().unwrap()])
        .args(["--", "count", "100000000", "1000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hv");
    // Every kind of thread: main (the vCPU), the three backends, the watchdog, the control
    // socket's accept thread and, once a client connects, its connection thread.
    let expected = ["hv", "console-backend", "blk-backend", "balloon-backend", "hv-watchdog", "hv-control", "hv-control-clie"];
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut client = None;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if client.is_none() {
            client = UnixStream::connect(&socket).ok();
        }
        seen = threads(child.id());
        let all_there = expected.iter().all(|name| seen.iter().any(|(n, _)| n == name));
        if client.is_some() && all_there && seen.iter().all(|(_, mode)| mode == "2") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_file(&socket).ok();
    std::fs::remove_file(&disk).ok();
    for name in expected {
        assert!(seen.iter().any(|(n, _)| n == name), "a {name} thread runs: {seen:?}");
    }
    for (name, mode) in &seen {
        assert_eq!(mode, "2", "thread {name} is confined (Seccomp: 2): {seen:?}");
    }
}
