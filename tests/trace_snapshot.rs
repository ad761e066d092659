//! The trace of a default boot, held as an insta snapshot (tests/snapshots/).
//!
//! The snapshot is what a student or a lab grader compares against: the sequence of
//! exits and hypercalls a boot makes. Guest addresses depend on how the kernel was
//! compiled, so they are redacted here; that every other byte is deterministic is
//! checked by cli.rs's identical-runs test. After an intended change, review the new
//! trace with `cargo insta review` (or set INSTA_UPDATE=always) and commit it.

mod common;
use common::{hv, temp_path};

fn redacted_trace(args: &[&str]) -> String {
    let path = temp_path("snap.trace");
    let mut full = vec!["run", "--trace", path.to_str().unwrap()];
    full.extend_from_slice(args);
    hv(&full).expect_code(0);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).ok();
    text
}

#[test]
fn default_boot_trace() {
    require_kvm!();
    let trace = redacted_trace(&[]);
    common::trace_snapshot_settings().bind(|| insta::assert_snapshot!("default_boot", trace));
}

/// One block request at a time, so every step is in cause-and-effect order: the
/// backend's doorbell wake-up, the request, each grant check, the response, the upcall.
#[test]
fn block_read_and_write_trace() {
    require_kvm!();
    let disk = temp_path("snap.img");
    std::fs::write(&disk, vec![0u8; 64 * 512]).unwrap();
    let disk_arg = disk.to_str().unwrap().to_string();
    let read = redacted_trace(&["--disk", &disk_arg, "--", "blk-read-sum", "0", "16"]);
    let write = redacted_trace(&["--disk", &disk_arg, "--", "blk-fill", "8", "8", "7"]);
    std::fs::remove_file(&disk).ok();
    let blk_only = |t: &str| t.lines().filter(|l| l.contains(" blk ")).collect::<Vec<_>>().join("\n");
    common::trace_snapshot_settings().bind(|| {
        insta::assert_snapshot!("block_read", blk_only(&read));
        insta::assert_snapshot!("block_write", blk_only(&write));
    });
}
