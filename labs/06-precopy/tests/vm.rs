//! Lab 6, on real guests: migrations that must converge, one that must fall back, and a
//! guest whose result must not change. Your round loop runs inside `hv::migration::send`.

mod guest;

use std::time::Duration;

use hv::migration::figures::StopReason;
use hv::outcome::GuestStop;
use pv_abi::MmuMode;

fn converges(mode: MmuMode) {
    if !guest::kvm_or_not_run() {
        return;
    }
    // 2 000 pages a second over 4 MiB: far below what loopback carries.
    let m = guest::migrate(mode, &["dirty-loop", "4", "2000", "3"], Duration::from_millis(500), 30, Duration::from_millis(5));
    let report = m.report.unwrap_or_else(|e| panic!("lab 6: the migration failed: {e}\nthe source printed:\n{}", m.source.output));
    assert_eq!(report.stopped_because, StopReason::Converged, "lab 6: a small writable working set must converge: {:#?}", report.rounds);
    assert!(report.rounds.len() >= 2 && report.rounds.last().is_some_and(|r| r.paused), "lab 6: live rounds, then the paused one: {:#?}", report.rounds);
    assert!(matches!(m.source.stop, GuestStop::Ended { .. }), "lab 6: the source's run ends once the destination runs the guest");
    let destination = m.destination.expect("lab 6: the destination ran the guest");
    assert_eq!(destination.stop, GuestStop::Shutdown { code: 0 }, "lab 6: the guest finished at the destination:\n{}", destination.output);
    assert!(destination.output.contains("dirty-loop: done"), "lab 6: the guest finished its work at the destination:\n{}", destination.output);
}

#[test]
fn vm_a_small_working_set_converges_in_ept_mode() {
    converges(MmuMode::Ept);
}

#[test]
fn vm_a_small_working_set_converges_in_shadow_mode() {
    converges(MmuMode::Shadow);
}

#[test]
fn vm_a_hot_working_set_falls_back_to_stop_and_copy() {
    if !guest::kvm_or_not_run() {
        return;
    }
    // As fast as the guest can over 16 MiB, and a target no dirty page fits.
    let m = guest::migrate(MmuMode::Ept, &["dirty-loop", "16", "0", "3"], Duration::from_millis(500), 2, Duration::ZERO);
    let report = m.report.unwrap_or_else(|e| panic!("lab 6: the migration failed: {e}\nthe source printed:\n{}", m.source.output));
    assert_eq!(report.stopped_because, StopReason::RoundLimit, "lab 6: a hot working set must fall back after the round limit: {:#?}", report.rounds);
    assert_eq!(report.rounds.len(), 3, "lab 6: 2 live rounds, then the paused one: {:#?}", report.rounds);
    let destination = m.destination.expect("lab 6: the destination ran the guest");
    assert!(destination.output.contains("dirty-loop: done"), "lab 6: the guest finished its work at the destination:\n{}", destination.output);
}

#[test]
fn vm_nothing_is_lost_on_the_way() {
    if !guest::kvm_or_not_run() {
        return;
    }
    let work = ["checksum-loop", "4", "120", "10"];
    let plain = guest::unmigrated(MmuMode::Ept, &work);
    let expected = plain.output.lines().find(|l| l.starts_with("checksum-loop: result")).expect("lab 6: the unmigrated run's result").to_string();
    let m = guest::migrate(MmuMode::Ept, &work, Duration::from_millis(400), 30, Duration::from_millis(5));
    let report = m.report.unwrap_or_else(|e| panic!("lab 6: the migration failed: {e}"));
    let destination = m.destination.expect("lab 6: the destination ran the guest");
    assert!(
        destination.output.contains(&expected),
        "lab 6: the migrated guest's result differs from the unmigrated one ({expected}): a page was lost or stale. Rounds: {:#?}\nthe destination printed:\n{}",
        report.rounds,
        destination.output
    );
}
