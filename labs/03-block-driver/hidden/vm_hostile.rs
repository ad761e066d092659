//! Lab 3, hidden VM tests: refusals seen from a real guest.

mod guest;

use guest::{boot, kvm_or_not_run, Image};

#[test]
fn vm_hostile_read_past_the_end_is_refused_before_any_grant_is_checked() {
    if !kvm_or_not_run() {
        return;
    }
    let image = Image::new(64);
    let run = boot(&image, false, &["blk-read-sum", "60", "8"]);
    run.expect_trace_then_exit(
        &[
            "doorbell woke the backend (count=1)",
            "pop request id=1: read sector=60 sectors=8 segments=1",
            "push response id=1: EINVAL",
            "publish responses: notify guest (upcall)",
        ],
        1,
        "the request is checked before anything else: a bad sector range is refused without checking (or using) a single grant",
    );
    assert!(run.output.contains("EINVAL"), "lab 3: the guest sees the refusal as EINVAL (BlockStatus::BadRequest):\n{}", run.output);
}

#[test]
fn vm_hostile_write_to_a_read_only_disk_is_refused() {
    if !kvm_or_not_run() {
        return;
    }
    let image = Image::new(64);
    let before = image.bytes();
    let run = boot(&image, true, &["blk-fill", "0", "8", "1"]);
    run.expect_exit(1, "a write to a read-only disk is refused and the guest says so");
    assert!(run.output.contains("EROFS"), "lab 3: the guest sees the refusal as EROFS (BlockStatus::ReadOnly):\n{}", run.output);
    assert!(image.bytes() == before, "lab 3: a read-only disk keeps its bytes");
}
