//! The control socket, end to end: a real `hv run --control PATH` with a real guest,
//! driven by `hv ctl` and by raw JSON lines. The hostile clients are in
//! `control/hostile.rs`; each of those tests checks that the guest did not notice.

mod common;

#[path = "control/running_hv.rs"]
mod running_hv;
#[path = "control/hostile.rs"]
mod hostile;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use running_hv::{assert_counted, counts, read_reply, RunningHv};
use serde_json::Value;

/// `hv ctl ARGS...` against `hv`'s socket.
fn ctl(hv: &RunningHv, args: &[&str]) -> common::Outcome {
    let socket = hv.socket.display().to_string();
    let mut all = vec!["ctl", socket.as_str()];
    all.extend_from_slice(args);
    common::hv(&all)
}

/// How long the console must stay quiet after a pause before the test starts watching:
/// the backend thread may still be writing what the guest put in the ring before it.
const SETTLE: Duration = Duration::from_millis(200);

/// Waits until `hv` has printed no new line for [`SETTLE`]; returns the lines so far.
fn settled_lines(hv: &RunningHv) -> usize {
    let start = std::time::Instant::now();
    let mut seen = hv.lines().len();
    let mut quiet_since = std::time::Instant::now();
    while quiet_since.elapsed() < SETTLE {
        assert!(start.elapsed() < Duration::from_secs(10), "the console never went quiet after the pause");
        std::thread::sleep(Duration::from_millis(10));
        let now = hv.lines().len();
        if now != seen {
            (seen, quiet_since) = (now, std::time::Instant::now());
        }
    }
    seen
}

#[test]
fn pause_stops_a_counting_guest_and_resume_continues_it() {
    require_kvm!();
    let hv = RunningHv::start(&[], &["count", "60", "20"]);
    hv.wait_for_lines(5);
    let paused = ctl(&hv, &["pause"]);
    paused.expect_code(0);
    paused.expect(paused.stdout.trim() == "paused", "pause says so");
    let before = settled_lines(&hv);
    std::thread::sleep(Duration::from_millis(800)); // 40 lines' worth of time
    let after = hv.lines().len();
    assert_eq!(before, after, "the guest printed while paused: {:?}", &hv.lines()[before..]);
    assert!(before < 60, "the guest was paused before it finished");
    let status = ctl(&hv, &["status"]);
    status.expect(status.stdout.contains("state        paused"), "status says paused");
    let again = ctl(&hv, &["pause"]);
    again.expect_code(0);
    again.expect(again.stdout.contains("already paused"), "a second pause changes nothing");
    ctl(&hv, &["resume"]).expect_code(0);
    let ended = hv.finish();
    assert_eq!(ended.code, 0, "stderr: {}", ended.stderr);
    assert_counted(&ended.stdout, 60);
}

#[test]
fn status_and_stats_while_the_guest_runs() {
    require_kvm!();
    let hv = RunningHv::start(&["--mem", "32"], &["count", "40", "20"]);
    hv.wait_for_lines(2);
    let status = ctl(&hv, &["status"]);
    status.expect_code(0);
    for want in ["state        running", "memory mode  ept", "RAM          32 MiB", "guest args   count 40 20", "kernel       built-in pv-guest"] {
        status.expect(status.stdout.contains(want), &format!("status shows '{want}'"));
    }
    let json = ctl(&hv, &["--json", "status"]);
    json.expect_code(0);
    let reply: Value = serde_json::from_str(json.stdout.trim()).expect("--json prints the JSON reply");
    assert_eq!((reply["ok"].clone(), reply["state"].clone(), reply["mmu"].clone()), (Value::Bool(true), "running".into(), "ept".into()));
    assert_eq!(reply["ram_bytes"], 32u64 << 20);
    assert_eq!(reply["guest_args"], serde_json::json!(["count", "40", "20"]));
    assert!(reply["uptime_ms"].as_f64().unwrap() > 0.0 && reply["exits"].is_u64() && reply["hypercalls"].is_u64());

    let stats = ctl(&hv, &["stats"]);
    stats.expect_code(0);
    for want in ["hv stats", "VM exits", "device console", "requests"] {
        stats.expect(stats.stdout.contains(want), &format!("stats shows '{want}' (the --stats table)"));
    }
    let stats = ctl(&hv, &["stats", "--json"]);
    let reply: Value = serde_json::from_str(stats.stdout.trim()).expect("stats --json is JSON");
    let figures = &reply["stats"];
    assert!(figures["devices"]["console"]["requests"].as_u64().unwrap() >= 2, "{figures}");
    assert_eq!(figures["memory"]["mode"], "ept");
    assert!(figures["memory"]["shadow"].is_null());
    assert!(figures["exits"]["total"].is_u64() && figures["wall_ms"].as_f64().unwrap() > 0.0);
    let ended = hv.finish();
    assert_eq!(ended.code, 0, "stderr: {}", ended.stderr);
    assert_counted(&ended.stdout, 40);
}

#[test]
fn status_and_stats_in_shadow_mode() {
    require_kvm!();
    let hv = RunningHv::start(&["--mmu", "shadow"], &["count", "30", "20"]);
    hv.wait_for_lines(2);
    assert_eq!(hv.request(r#"{"v":1,"cmd":"status"}"#)["mmu"], "shadow");
    let stats = hv.request(r#"{"v":1,"cmd":"stats"}"#);
    assert_eq!(stats["stats"]["memory"]["mode"], "shadow");
    assert!(stats["stats"]["memory"]["shadow"]["cr3_loads"].is_u64(), "{stats}");
    assert!(stats["text"].as_str().unwrap().contains("trapped page-table writes"));
    // Pause and resume work the same in shadow mode.
    assert_eq!(hv.request(r#"{"v":1,"cmd":"pause"}"#)["changed"], true);
    assert_eq!(hv.request(r#"{"v":1,"cmd":"resume"}"#)["changed"], true);
    let ended = hv.finish();
    assert_eq!(ended.code, 0, "stderr: {}", ended.stderr);
    assert_counted(&ended.stdout, 30);
}

#[test]
fn hv_top_shows_a_running_guests_exits_devices_and_memory() {
    require_kvm!();
    // A guest making hypercalls as fast as it can, for as long as the test looks.
    let hv = RunningHv::start(&["--mmu", "shadow"], &["hypercall-bench", "10000000"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let top = common::hv(&["top", hv.socket.to_str().unwrap(), "--once", "--interval", "0.5"]);
    top.expect_code(0);
    let screen = &top.stdout;
    for panel in ["VM exits per second", "hypercalls per second", "memory", "devices (split drivers)", "recent samples"] {
        top.expect(screen.contains(panel), &format!("the {panel} panel is drawn"));
    }
    top.expect(screen.contains(&format!("pid {}", hv.pid())) && screen.contains("--mmu shadow"), "the header names the hv and its mode");
    top.expect(screen.contains("io-out"), "the guest's exits are listed by reason");
    top.expect(screen.contains(" nop "), "and its hypercalls by name");
    top.expect(screen.contains(" console "), "the console device has a row");
    top.expect(screen.contains("hv resident memory") && screen.contains(" MiB"), "hv's resident memory is read");
    top.expect(screen.contains("shadow mode: every guest page-table store exits"), "each panel says what it means");
    drop(hv);
}

#[test]
fn hv_top_names_a_socket_nobody_listens_on() {
    let path = common::temp_path("no-hv.sock");
    let top = common::hv(&["top", path.to_str().unwrap(), "--once"]);
    top.expect_code(1);
    top.expect(top.stderr.contains("hv top:") && top.stderr.contains(path.to_str().unwrap()), "the error names the socket");
}

#[test]
fn several_requests_on_one_connection_are_answered_in_order() {
    require_kvm!();
    let hv = RunningHv::start(&[], &["count", "30", "20"]);
    let mut stream = hv.connect();
    // All three written before reading any reply.
    stream
        .write_all(b"{\"v\":1,\"cmd\":\"pause\"}\n{\"v\":1,\"cmd\":\"status\"}\n{\"v\":1,\"cmd\":\"resume\"}\n")
        .unwrap();
    let replies: Vec<Value> = (0..3).map(|_| read_reply(&mut stream)).collect();
    assert_eq!(replies[0]["state"], "paused");
    assert_eq!(replies[1]["state"], "paused");
    assert_eq!(replies[2]["state"], "running");
    assert!(replies.iter().all(|r| r["ok"] == true), "{replies:?}");
    drop(stream);
    let ended = hv.finish();
    assert_eq!(ended.code, 0, "stderr: {}", ended.stderr);
    assert_counted(&ended.stdout, 30);
}

#[test]
fn the_socket_is_owner_only_announced_and_removed_when_hv_ends() {
    require_kvm!();
    let hv = RunningHv::start(&[], &["count", "5", "20"]);
    let socket = hv.socket.clone();
    let meta = std::fs::symlink_metadata(&socket).expect("the socket exists while hv runs");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "owner-only");
    let ended = hv.finish();
    assert_eq!(ended.code, 0);
    assert!(ended.stderr.contains(&format!("hv: control socket listening at {}", socket.display())), "{}", ended.stderr);
    assert!(!socket.exists(), "the socket is removed when hv ends");
}

#[test]
fn a_stale_socket_is_replaced_and_anything_else_at_the_path_refused() {
    require_kvm!();
    // A socket nobody listens on (what a killed hv leaves behind).
    let stale = common::temp_path("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let hv = RunningHv::start_at(stale.clone(), &[], &["count", "100", "20"]).unwrap_or_else(|e| panic!("stale socket not replaced: {}", e.stderr));
    hv.wait_for_lines(1);

    // A live socket: the running hv's.
    let refused = RunningHv::start_at(stale.clone(), &[], &[]).err().expect("a live socket is refused");
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("is in use"), "{}", refused.stderr);
    assert!(hv.request(r#"{"v":1,"cmd":"status"}"#)["ok"] == true, "the first hv still serves its socket");

    // A regular file.
    let file = common::temp_path("not-a-socket");
    std::fs::write(&file, b"keep me").unwrap();
    let refused = RunningHv::start_at(file.clone(), &[], &[]).err().expect("a file is refused");
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("is a regular file"), "{}", refused.stderr);
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me", "the file is untouched");
    std::fs::remove_file(&file).unwrap();

    drop(hv); // kills it: the socket is left behind, stale
    assert!(std::fs::symlink_metadata(&stale).is_ok());
    let hv = RunningHv::start_at(stale.clone(), &[], &["count", "3", "20"]).unwrap_or_else(|e| panic!("{}", e.stderr));
    assert_eq!(hv.finish().code, 0);
    assert!(!stale.exists());
}

#[test]
fn hv_ctl_says_what_went_wrong() {
    let missing = common::temp_path("nobody.sock");
    let out = common::hv(&["ctl", missing.to_str().unwrap(), "status"]);
    out.expect_code(1);
    out.expect(out.stderr.contains("no control socket at"), "names the missing socket");
    let out = common::hv(&["ctl", missing.to_str().unwrap(), "paws"]);
    out.expect_code(1);
    out.expect(out.stderr.contains("unknown command 'paws' (known: pause, resume, status, stats, snapshot, migrate, balloon)"), "names the commands");
    let out = common::hv(&["ctl", missing.to_str().unwrap(), "status", "now"]);
    out.expect_code(1);
    out.expect(out.stderr.contains("'status' takes no more words (got 'now')"), "refuses extra words");
    let help = common::hv(&["ctl", "--help"]);
    help.expect_code(0);
    for want in ["pause", "resume", "status", "stats", "--json", "docs/control.md"] {
        help.expect(help.stdout.contains(want), &format!("hv ctl --help mentions {want}"));
    }
    let help = common::hv(&["run", "--help"]);
    help.expect(help.stdout.contains("--control <PATH>") && help.stdout.contains("count N [MS]"), "hv run --help shows --control and count");
}

#[test]
fn a_command_as_the_guest_ends_is_answered_or_refused_never_hangs() {
    require_kvm!();
    let hv = RunningHv::start(&[], &["count", "3", "10"]);
    // Race the guest's end on purpose: each reply is an answer or says the guest is gone.
    for _ in 0..500 {
        let Ok(stream) = std::os::unix::net::UnixStream::connect(&hv.socket) else { break };
        if (&stream).write_all(b"{\"v\":1,\"cmd\":\"status\"}\n").is_err() {
            break;
        }
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut line = String::new();
        let _ = BufReader::new(&stream).read_line(&mut line);
        if line.is_empty() {
            break; // hv shut the connection down on its way out
        }
        let reply: Value = serde_json::from_str(&line).expect("a JSON reply");
        assert!(reply["ok"] == true || reply["error"] == "the guest is no longer running", "{reply}");
    }
    let ended = hv.finish();
    assert_eq!(ended.code, 0, "{}", ended.stderr);
    assert_counted(&ended.stdout, 3);
}

#[test]
fn snapshot_stop_through_the_socket_then_restore_continues_the_count() {
    require_kvm!();
    let hv = RunningHv::start(&[], &["count", "50", "20"]);
    hv.wait_for_lines(10);
    let file = common::temp_path("ctl.snap");
    let out = ctl(&hv, &["snapshot", file.to_str().unwrap(), "--stop"]);
    out.expect_code(0);
    out.expect(out.stdout.starts_with(&format!("snapshot written to {}", file.display())), "the reply names the file");
    out.expect(out.stdout.contains("the guest has stopped"), "and says the guest stopped");
    let first = hv.finish();
    assert_eq!(first.code, 0, "{}", first.stderr);
    let before = counts(&first.stdout);
    let last = *before.last().expect("counted before the snapshot");
    assert!(last < 50 && before == (1..=last).collect::<Vec<_>>());

    // The restored guest has a control socket of its own.
    let restored = RunningHv::restore(&file);
    let status = restored.request(r#"{"v":1,"cmd":"status"}"#);
    assert_eq!(status["guest_args"], serde_json::json!(["count", "50", "20"]), "{status}");
    let ended = restored.finish();
    assert_eq!(ended.code, 0, "{}", ended.stderr);
    assert_eq!(counts(&ended.stdout), (last + 1..=50).collect::<Vec<_>>(), "the count goes on from where it stopped");
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn snapshot_without_stop_leaves_the_guest_running_and_a_relative_file_is_the_clients() {
    require_kvm!();
    let hv = RunningHv::start(&[], &["count", "40", "20"]);
    hv.wait_for_lines(3);
    // hv ctl runs in another directory than hv: FILE is relative to hv ctl's.
    let dir = common::temp_path("client-dir");
    std::fs::create_dir(&dir).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hv"))
        .args(["ctl", "--json", hv.socket.to_str().unwrap(), "snapshot", "here.snap"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["stopped"], false);
    assert_eq!(reply["file"], dir.join("here.snap").to_str().unwrap());
    assert!(reply["pages_stored"].as_u64().unwrap() > 0 && reply["paused_ms"].as_f64().unwrap() > 0.0, "{reply}");
    assert!(dir.join("here.snap").exists());
    let ended = hv.finish();
    assert_eq!(ended.code, 0, "{}", ended.stderr);
    assert_counted(&ended.stdout, 40);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Sends `signal` (a `kill` name) to hv.
fn send_signal(hv: &RunningHv, signal: &str) {
    let status = std::process::Command::new("kill").args(["-s", signal, &hv.pid().to_string()]).status().expect("kill runs");
    assert!(status.success());
}

#[test]
fn sigterm_and_ctrl_c_stop_the_guest_cleanly_and_remove_the_socket() {
    require_kvm!();
    for (signal, code, name) in [("TERM", 143, "SIGTERM"), ("INT", 130, "SIGINT (Ctrl-C)")] {
        let hv = RunningHv::start(&[], &["count", "1000", "20"]);
        hv.wait_for_lines(3);
        let socket = hv.socket.clone();
        send_signal(&hv, signal);
        let ended = hv.finish();
        assert_eq!(ended.code, code, "128 + the signal's number; stderr: {}", ended.stderr);
        assert!(ended.stderr.contains(&format!("hv: hv got {name}: the guest was stopped")), "{}", ended.stderr);
        assert!(!socket.exists(), "the socket is removed");
        let counted = counts(&ended.stdout);
        assert!(counted.len() < 1000 && counted == (1..=counted.len() as u64).collect::<Vec<_>>(), "{counted:?}");
    }
}

#[test]
fn a_signal_while_paused_stops_the_guest_too() {
    require_kvm!();
    let hv = RunningHv::start(&[], &["count", "1000", "20"]);
    hv.wait_for_lines(2);
    assert_eq!(hv.request(r#"{"v":1,"cmd":"pause"}"#)["ok"], true);
    send_signal(&hv, "TERM");
    let ended = hv.finish();
    assert_eq!(ended.code, 143, "{}", ended.stderr);
}
