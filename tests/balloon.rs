//! The balloon, end to end: a real `hv run` whose guest makes its free memory resident,
//! then gives 32 MiB back when `hv ctl PATH balloon 32` asks, and takes it again when
//! the target goes back up. The figures are hv's own resident memory, read from
//! `/proc/PID/status` of the hv process, before and after. And the hostile batches a
//! guest can send (`balloon-hostile` in the guest) are refused, each with a trace event,
//! while the guest goes on.

mod common;

#[path = "control/running_hv.rs"]
#[allow(dead_code)] // the control tests use the rest
mod running_hv;

use std::time::{Duration, Instant};

use running_hv::RunningHv;

/// VmRSS of process `pid`, in KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

/// Waits until the guest has printed a line containing `text`; returns it.
fn wait_for_line(hv: &RunningHv, text: &str) -> String {
    let start = Instant::now();
    loop {
        if let Some(line) = hv.lines().into_iter().find(|l| l.contains(text)) {
            return line;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no line with {text:?}; the guest printed {:?}", hv.lines());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A field `name N KiB` of a `balloon:` status line.
fn kib_field(line: &str, name: &str) -> u64 {
    let at = line.find(&format!("{name} ")).unwrap_or_else(|| panic!("no {name:?} in {line:?}"));
    line[at + name.len() + 1..].split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no number after {name:?} in {line:?}"))
}

fn inflate_then_deflate(mode: &str) {
    // 64 MiB of RAM, about 58 MiB of it free: 48 MiB made resident, then a target of 32
    // MiB (a balloon of 32 MiB), then back to 64 (an empty balloon), then 48 MiB again,
    // which fits only if the 32 MiB really came back.
    let guest = ["touch-mem", "48", ";", "balloon-wait", "32", "60", ";", "balloon-wait", "48", "60", ";", "balloon-wait", "64", "60", ";", "touch-mem", "48", ";", "balloon-status"];
    let hv = RunningHv::start(&["--mmu", mode, "--mem", "64", "--stats"], &guest);
    wait_for_line(&hv, "touch-mem: 48 MiB touched");
    let before = resident_kib(hv.pid());

    let started = Instant::now();
    let reply = hv.request(r#"{"v":1,"cmd":"balloon","mib":32}"#);
    assert_eq!(reply["ok"], true, "{reply}");
    let inflated = wait_for_line(&hv, "balloon: target 32768 KiB");
    let took = started.elapsed();
    let after = resident_kib(hv.pid());
    assert_eq!(kib_field(&inflated, "current"), 32 << 10, "{inflated}");
    assert_eq!(kib_field(&inflated, "host"), 32 << 10, "hv holds what the guest gave: {inflated}");
    let dropped_mib = before.saturating_sub(after) as f64 / 1024.0;
    println!(
        "balloon ({mode}): RSS {:.1} MiB -> {:.1} MiB: {dropped_mib:.1} MiB released for a 32 MiB inflate in {:.0} ms (target set to guest settled: {:.0} MiB/s)",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        took.as_secs_f64() * 1e3,
        32.0 / took.as_secs_f64()
    );
    assert!(before >= after + (24 << 10), "hv's RSS fell from {before} KiB to {after} KiB: less than 24 MiB");

    // Part of it back: exactly 16 MiB taken back, 16 MiB still given.
    let reply = hv.request(r#"{"v":1,"cmd":"balloon","mib":48}"#);
    assert_eq!(reply["ok"], true, "{reply}");
    let partly = wait_for_line(&hv, "balloon: target 49152 KiB");
    assert_eq!((kib_field(&partly, "current"), kib_field(&partly, "host"), kib_field(&partly, "taken back")), (16 << 10, 16 << 10, 16 << 10), "{partly}");

    let reply = hv.request(r#"{"v":1,"cmd":"balloon","mib":64}"#);
    assert_eq!(reply["ok"], true, "{reply}");
    let deflated = wait_for_line(&hv, "balloon: target 65536 KiB");
    assert_eq!(kib_field(&deflated, "current"), 0, "{deflated}");
    assert_eq!(kib_field(&deflated, "taken back"), 32 << 10, "{deflated}");
    assert!(deflated.contains("not zero 0,"), "every frame taken back reads as zeros: {deflated}");
    let ended = hv.finish();
    assert_eq!(ended.code, 0, "the guest ends well\n{:?}\n{}", ended.stdout, ended.stderr);
    let touched = ended.stdout.iter().filter(|l| l.contains("touch-mem: 48 MiB touched")).count();
    assert_eq!(touched, 2, "48 MiB fit again once the balloon deflated: {:?}", ended.stdout);
    assert!(ended.stderr.contains("balloon: target 64.0 MiB of 64.0 MiB") && ended.stderr.contains("frames given 8192, taken back 8192"), "--stats: {}", ended.stderr);
}

#[test]
fn an_inflate_of_32_mib_lowers_hvs_rss_and_a_deflate_gives_the_memory_back() {
    require_kvm!();
    inflate_then_deflate("ept");
}

#[test]
fn an_inflate_in_shadow_mode_releases_the_frames_the_guest_gave() {
    require_kvm!();
    inflate_then_deflate("shadow");
}

#[test]
fn a_target_at_boot_inflates_before_the_first_command() {
    require_kvm!();
    let out = common::hv(&["run", "--stats", "--balloon-target", "40", "--", "balloon-wait", "40", "30"]);
    out.expect_code(0);
    out.expect(out.stdout.contains("balloon: target 40960 KiB") && out.stdout.contains("current 24576 KiB, host 24576 KiB"), "a 24 MiB balloon");
    out.expect(out.stderr.contains("frames given 6144"), "--stats counts the frames given");
}

#[test]
fn a_target_below_the_floor_stops_at_the_floor() {
    require_kvm!();
    let out = common::hv(&["run", "--balloon-target", "0", "--", "balloon-wait", "0", "30"]);
    out.expect_code(0);
    let line = out.stdout.lines().find(|l| l.starts_with("balloon: target")).unwrap_or_default().to_string();
    let (floor, current) = (kib_field(&line, "floor"), kib_field(&line, "current"));
    out.expect(floor > 0 && current + floor == 64 << 10, "the guest keeps exactly its floor");
}

#[test]
fn hostile_balloon_batches_are_refused_with_a_trace_event_and_the_guest_goes_on() {
    require_kvm!();
    for mode in ["ept", "shadow"] {
        let trace = common::temp_path("balloon-hostile.trace");
        let trace_arg = trace.display().to_string();
        let out = common::hv(&["run", "--mmu", mode, "--trace", &trace_arg, "--", "balloon-hostile", ";", "touch-mem", "8", ";", "balloon-status"]);
        out.expect_code(0);
        for case in ["double return", "outside RAM", "page-table pool", "reserved area", "kernel frame", "deflate never given", "huge count", "zero count", "unknown operation"] {
            out.expect(out.stdout.contains(&format!("balloon-hostile: {case}: ")) && !out.stdout.contains("WRONG"), case);
        }
        out.expect(out.stdout.contains("9 of 9 refused as they should, 0 wrong"), "all refused");
        out.expect(out.stdout.contains("touch-mem: 8 MiB touched"), "the guest goes on");
        let text = std::fs::read_to_string(&trace).expect("the trace");
        let _ = std::fs::remove_file(&trace);
        for reason in ["already-ballooned", "outside-ram", "page-table-pool", "reserved-area", "kernel-image", "not-ballooned", "bad-request"] {
            out.expect(text.lines().any(|l| l.contains("balloon") && l.contains("REFUSED") && l.contains(reason)), &format!("a trace event for {reason}"));
        }
    }
}

#[test]
fn hostile_balloon_targets_over_the_ram_are_refused_by_hv_ctl() {
    require_kvm!();
    let hv = RunningHv::start(&[], &["count", "300", "20"]);
    let reply = hv.request(r#"{"v":1,"cmd":"balloon","mib":100000}"#);
    assert_eq!(reply["ok"], false, "{reply}");
    let reply = hv.request(r#"{"v":1,"cmd":"balloon","mib":-1}"#);
    assert_eq!(reply["ok"], false, "{reply}");
    // The guest runs on: a target it can meet, met while it counts.
    let reply = hv.request(r#"{"v":1,"cmd":"balloon","mib":48}"#);
    assert_eq!(reply["ok"], true, "{reply}");
    let start = Instant::now();
    loop {
        let stats = hv.request(r#"{"v":1,"cmd":"stats"}"#);
        if stats["stats"]["balloon"]["ballooned_pages"] == 4096 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the balloon did not reach 16 MiB while the guest counted: {stats}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(hv);
}

/// Polls `hv ctl stats` until `done` holds for its balloon figures.
fn wait_for_balloon(hv: &RunningHv, what: &str, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let stats = hv.request(r#"{"v":1,"cmd":"stats"}"#);
        let balloon = stats["stats"]["balloon"].clone();
        if done(&balloon) {
            return balloon;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{what}: the balloon stands at {balloon}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_snapshot_leaves_the_ballooned_frames_out_and_the_restored_guest_takes_them_back() {
    require_kvm!();
    // 48 MiB made resident, then a 48 MiB balloon (target 16 MiB), then a snapshot while
    // the guest counts; the restored guest is given all its RAM back and deflates.
    let guest = ["touch-mem", "48", ";", "balloon-wait", "16", "60", ";", "count", "150", "20", ";", "balloon-status"];
    let hv = RunningHv::start(&["--mem", "64"], &guest);
    wait_for_line(&hv, "touch-mem: 48 MiB touched");
    assert_eq!(hv.request(r#"{"v":1,"cmd":"balloon","mib":16}"#)["ok"], true);
    wait_for_line(&hv, "balloon: target 16384 KiB");
    wait_for_line(&hv, "count: 1");
    let file = common::temp_path("balloon.snap");
    let reply = hv.request(&format!(r#"{{"v":1,"cmd":"snapshot","file":"{}","stop":true}}"#, file.display()));
    assert_eq!(reply["ok"], true, "{reply}");
    let stored_mib = reply["pages_stored"].as_u64().unwrap() as f64 * 4096.0 / f64::from(1 << 20);
    println!("snapshot of a guest with a 48 MiB balloon (48 MiB touched before): {stored_mib:.1} MiB stored");
    assert!(stored_mib < 16.0, "the balloon's 48 MiB are not saved: {stored_mib:.1} MiB stored");
    let ended = hv.finish();
    assert_eq!(ended.code, 0, "{}", ended.stderr);

    let restored = RunningHv::restore(&file);
    let balloon = wait_for_balloon(&restored, "restored", |b| b["ballooned_pages"] == 12288);
    assert_eq!(balloon["target_pages"], 4096, "the target came back with RAM: {balloon}");
    assert!(balloon["floor_pages"].as_u64().unwrap() > 0, "so did the floor: {balloon}");
    assert_eq!(restored.request(r#"{"v":1,"cmd":"balloon","mib":64}"#)["ok"], true);
    wait_for_balloon(&restored, "deflated after the restore", |b| b["ballooned_pages"] == 0 && b["deflated"] == 12288);
    let ended = restored.finish();
    let _ = std::fs::remove_file(&file);
    assert_eq!(ended.code, 0, "{}", ended.stderr);
    let status = ended.stdout.iter().find(|l| l.starts_with("balloon: target")).cloned().unwrap_or_default();
    assert_eq!(kib_field(&status, "taken back"), 48 << 10, "{status}");
    assert!(status.contains("not zero 0,") && status.contains("lost 0"), "frames from file-backed RAM read as zeros once taken back: {status}");
}

#[test]
fn ram_mapped_from_a_snapshot_file_shrinks_hvs_rss_too() {
    require_kvm!();
    // After `hv restore`, RAM is a private mapping of the snapshot file: MADV_DONTNEED
    // drops this process's copies of the pages, so hv's RSS falls just the same.
    // (The last `count` keeps hv alive while the test reads its RSS.)
    let guest = ["touch-mem", "48", ";", "count", "50", "20", ";", "touch-mem", "48", ";", "balloon-wait", "32", "60", ";", "count", "100", "20"];
    let hv = RunningHv::start(&["--mem", "64"], &guest);
    wait_for_line(&hv, "count: 1");
    let file = common::temp_path("balloon-file-backed.snap");
    let reply = hv.request(&format!(r#"{{"v":1,"cmd":"snapshot","file":"{}","stop":true}}"#, file.display()));
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(hv.finish().code, 0);

    let restored = RunningHv::restore(&file);
    wait_for_line(&restored, "touch-mem: 48 MiB touched");
    let before = resident_kib(restored.pid());
    assert_eq!(restored.request(r#"{"v":1,"cmd":"balloon","mib":32}"#)["ok"], true);
    wait_for_line(&restored, "balloon: target 32768 KiB");
    let after = resident_kib(restored.pid());
    let ended = restored.finish();
    let _ = std::fs::remove_file(&file);
    assert_eq!(ended.code, 0, "{}", ended.stderr);
    println!("balloon (file-backed RAM after a restore): RSS {:.1} MiB -> {:.1} MiB", before as f64 / 1024.0, after as f64 / 1024.0);
    assert!(before >= after + (24 << 10), "hv's RSS fell from {before} KiB to {after} KiB: less than 24 MiB");
}

#[test]
fn a_migrated_guest_keeps_its_balloon() {
    require_kvm!();
    // The source inflates 24 MiB, then migrates while the guest counts; on the
    // destination hv's backend must hold the same frames (it publishes its size in the
    // control block from the state it received) and the guest's list must agree.
    let mut destination = common::background::Background::start(&["run", "--incoming", "127.0.0.1:0", "--stats"]);
    let target = format!("127.0.0.1:{}", destination.listening_port());
    let source = common::hv(&[
        "run", "--balloon-target", "40", "--migrate-to", &target, "--migrate-after", "1.5", "--",
        "balloon-wait", "40", "30", ";", "count", "150", "20", ";", "balloon-status",
    ]);
    let destination = destination.finish();
    source.expect(source.stderr.contains("migrated to 127.0.0.1:"), "the guest migrated");
    destination.expect_code(0);
    let line = destination.stdout.lines().rfind(|l| l.starts_with("balloon: target")).unwrap_or_default().to_string();
    destination.expect(kib_field(&line, "current") == 24 << 10 && kib_field(&line, "host") == 24 << 10, "the destination's backend holds the 24 MiB the guest gave");
    destination.expect(destination.stderr.contains("held 24.0 MiB"), "and says so in --stats");
}
