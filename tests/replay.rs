//! Record and replay, end to end: a run recorded with `hv run --record` and replayed with
//! `hv replay` writes a byte-identical trace and ends with the same memory hash, in both
//! memory modes and with the block device; `--until` stops where asked; and a log that
//! was cut, damaged, edited, written by another version or for another kernel is caught
//! at the first line that differs, with a clear error and exit code 1, never a panic.

mod common;

use std::path::{Path, PathBuf};

use common::{hv, temp_path, Outcome};
use hv::record::framing::{frame, Chain};

/// `hv: memory hash H after …`: the hash.
fn memory_hash(out: &Outcome) -> String {
    let line = out.stderr.lines().find(|l| l.starts_with("hv: memory hash ")).unwrap_or_else(|| panic!("no memory hash in:\n{}", out.stderr));
    line.split_whitespace().nth(3).unwrap_or_default().to_string()
}

/// Records `guest` (with `extra` options), replays it, and checks that both traces are
/// the same bytes, both memory hashes equal and both consoles printed the same.
fn record_and_replay(name: &str, extra: &[&str], guest: &[&str]) -> PathBuf {
    let (log, recorded_trace, replayed_trace) = (temp_path(&format!("{name}.log")), temp_path(&format!("{name}-a.trace")), temp_path(&format!("{name}-b.trace")));
    let mut args = vec!["run", "--record", log.to_str().unwrap(), "--trace", recorded_trace.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(guest);
    let recorded = hv(&args);
    recorded.expect_code(0);
    let replayed = hv(&["replay", log.to_str().unwrap(), "--trace", replayed_trace.to_str().unwrap()]);
    replayed.expect_code(0);
    let (a, b) = (std::fs::read(&recorded_trace).unwrap(), std::fs::read(&replayed_trace).unwrap());
    assert!(a.len() > 100, "the recorded trace has lines");
    assert!(a == b, "{name}: the replayed trace differs from the recorded one ({} vs {} bytes)", a.len(), b.len());
    assert_eq!(memory_hash(&recorded), memory_hash(&replayed), "{name}: memory hashes");
    assert_eq!(recorded.stdout, replayed.stdout, "{name}: the console printed the same");
    for path in [&recorded_trace, &replayed_trace] {
        let _ = std::fs::remove_file(path);
    }
    log
}

#[test]
fn selftest_replays_to_the_same_trace_and_memory_in_both_modes() {
    require_kvm!();
    for mmu in ["ept", "shadow"] {
        let log = record_and_replay(&format!("selftest-{mmu}"), &["--mmu", mmu], &["selftest"]);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("\"e\":\"clock\""), "the selftest reads the clock through hv");
        assert!(text.contains("\"e\":\"device\""), "the console was served at doorbell exits");
        let _ = std::fs::remove_file(log);
    }
}

#[test]
fn block_device_runs_replay_in_both_modes() {
    require_kvm!();
    for mmu in ["ept", "shadow"] {
        let disk = temp_path(&format!("replay-{mmu}.img"));
        std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
        let disk_arg = disk.to_str().unwrap().to_string();
        let fill = record_and_replay(&format!("blk-fill-{mmu}"), &["--mmu", mmu, "--disk", &disk_arg], &["blk-fill", "8", "16", "171"]);
        // The replay read no disk: the image was written once, by the recorded run.
        let image = std::fs::read(&disk).unwrap();
        assert!(image[8 * 512..24 * 512].iter().all(|b| *b == 171) && image[..8 * 512].iter().all(|b| *b == 0));
        let read = record_and_replay(&format!("blk-read-{mmu}"), &["--mmu", mmu, "--disk", &disk_arg], &["blk-read-sum", "0", "64"]);
        for path in [fill, read, disk] {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[test]
fn until_stops_after_that_exit() {
    require_kvm!();
    let log = temp_path("until.log");
    hv(&["run", "--record", log.to_str().unwrap(), "--", "selftest"]).expect_code(0);
    let out = hv(&["replay", log.to_str().unwrap(), "--until", "40"]);
    out.expect_code(0);
    out.expect(out.stderr.contains("--until: stopped after exit 40 ("), "says where it stopped");
    out.expect(out.stderr.contains("after 40 guest exits"), "stopped there");
    out.expect(!out.stdout.contains("selftest: 38 passed") && !out.stdout.contains(" passed, 0 failed"), "the guest did not finish");
    let _ = std::fs::remove_file(log);
}

/// A recorded selftest log, its lines.
fn recorded_lines(name: &str) -> (PathBuf, Vec<String>) {
    let log = temp_path(name);
    hv(&["run", "--record", log.to_str().unwrap(), "--", "selftest"]).expect_code(0);
    let lines = std::fs::read_to_string(&log).unwrap().lines().map(str::to_string).collect();
    (log, lines)
}

/// Writes `jsons` as a correctly framed log (as an editor who recomputed the checksums
/// would).
fn reframe(path: &Path, jsons: &[String]) {
    let mut chain = Chain::default();
    let text: String = jsons.iter().map(|j| frame(&mut chain, j)).collect();
    std::fs::write(path, text).unwrap();
}

fn json_of(line: &str) -> String {
    line.split_once(' ').unwrap().1.to_string()
}

fn replay_fails(log: &Path, extra: &[&str], expected: &[&str]) -> Outcome {
    let mut args = vec!["replay", log.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = hv(&args);
    out.expect_code(1);
    for e in expected {
        out.expect(out.stderr.contains(e), &format!("the error says {e:?}"));
    }
    out
}

#[test]
fn hostile_truncated_and_flipped_logs_are_caught_where_they_break() {
    require_kvm!();
    let (log, lines) = recorded_lines("hostile-damage.log");
    let bytes = std::fs::read(&log).unwrap();
    // Cut in the middle of a line.
    let cut = temp_path("cut.log");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    replay_fails(&cut, &[], &["truncated", "recorded:", "replay:"]);
    // Cut at a line boundary: the end record is missing.
    let short = temp_path("short.log");
    std::fs::write(&short, lines[..lines.len() - 1].iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    replay_fails(&short, &[], &["without its end record"]);
    // One flipped byte, on line 100: found on that line, not later.
    let flipped = temp_path("flipped.log");
    let at: usize = lines[..99].iter().map(|l| l.len() + 1).sum::<usize>() + 30;
    let mut damaged = bytes.clone();
    damaged[at] ^= 0x04;
    std::fs::write(&flipped, &damaged).unwrap();
    replay_fails(&flipped, &[], &["line 100: checksum mismatch"]);
    for path in [log, cut, short, flipped] {
        let _ = std::fs::remove_file(path);
    }
}

#[test]
fn hostile_edited_event_is_caught_at_that_event_with_both_sides() {
    require_kvm!();
    let (log, lines) = recorded_lines("hostile-edit.log");
    let mut jsons: Vec<String> = lines.iter().map(|l| json_of(l)).collect();
    // Make one exit in the middle say another port; recompute the checksums.
    let i = jsons.iter().position(|j| j.contains("\"e\":\"exit\"") && j.contains("\"n\":60,")).unwrap();
    let mut exit: serde_json::Value = serde_json::from_str(&jsons[i]).unwrap();
    exit["port"] = serde_json::json!(0x4321);
    jsons[i] = exit.to_string();
    let edited = temp_path("edited.log");
    reframe(&edited, &jsons);
    replay_fails(&edited, &[], &[&format!("at line {}", i + 1), "recorded: exit 60 ", "replay:   exit 60 "]);
    for path in [log, edited] {
        let _ = std::fs::remove_file(path);
    }
}

#[test]
fn hostile_wrong_version_other_kernel_and_not_a_log_are_refused() {
    require_kvm!();
    let (log, lines) = recorded_lines("hostile-header.log");
    let mut jsons: Vec<String> = lines.iter().map(|l| json_of(l)).collect();
    let header = jsons[0].clone();
    jsons[0] = header.replace("\"version\":1", "\"version\":2");
    let v2 = temp_path("v2.log");
    reframe(&v2, &jsons);
    replay_fails(&v2, &[], &["is version 2; this hv reads version 1"]);
    // The same log, but another kernel booted for it.
    let kernel = temp_path("other.elf");
    std::fs::write(&kernel, common::tiny_kernel(&[0xf4])).unwrap();
    replay_fails(&log, &["--kernel", kernel.to_str().unwrap()], &["another kernel", "recorded: kernel ", "replay:   kernel "]);
    // Not a log at all.
    let junk = temp_path("junk.log");
    std::fs::write(&junk, b"GIF89a\x00\x01\x02 garbage\n\xff\xfe").unwrap();
    replay_fails(&junk, &[], &["is not an hv record log"]);
    for path in [log, v2, kernel, junk] {
        let _ = std::fs::remove_file(path);
    }
}

#[test]
fn until_with_snapshot_is_time_travel_restore_goes_on_from_there() {
    require_kvm!();
    let (log, snap) = (temp_path("travel.log"), temp_path("travel.snap"));
    let recorded = hv(&["run", "--record", log.to_str().unwrap(), "--", "selftest"]);
    recorded.expect_code(0);
    let stopped = hv(&["replay", log.to_str().unwrap(), "--until", "300", "--snapshot", snap.to_str().unwrap()]);
    stopped.expect_code(0);
    stopped.expect(stopped.stderr.contains("wrote a snapshot there"), "the snapshot was written at exit 300");
    // Restored in the other memory mode, with live devices: the selftest finishes, and
    // what it printed before and after the snapshot is what the recorded run printed.
    let restored = hv(&["restore", "--mmu", "shadow", snap.to_str().unwrap()]);
    restored.expect_code(0);
    assert_eq!(common::selftest_counts(&restored.stdout), common::selftest_counts(&recorded.stdout));
    assert_eq!(format!("{}{}", stopped.stdout, restored.stdout), recorded.stdout, "the console continues where the replay stopped");
    for path in [log, snap] {
        let _ = std::fs::remove_file(path);
    }
}
