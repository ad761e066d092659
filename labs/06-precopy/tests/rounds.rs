//! Lab 6, part (b): the round loop, against a model of a guest and a network
//! (`tests/rig.rs`): what each round sends, when the loop stops, and the figures.

mod rig;

use std::time::Duration;

use hv::migration::figures::{RoundFigures, StopReason};
use hv::migration::precopy::{live_rounds, Policy};
use rig::{model, RAM};

/// 400 MB/s: about what loopback gives hv here.
const BANDWIDTH: f64 = 400e6;

fn policy(max_rounds: u32, target_ms: u64) -> Policy {
    Policy { ram_bytes: RAM, max_rounds, downtime_target: Duration::from_millis(target_ms) }
}

#[test]
fn round_0_offers_all_of_ram_and_skips_zero_pages() {
    let (mut sink, mut guest) = model(BANDWIDTH, 3000, 500, 1000.0);
    let live = live_rounds(&mut sink, &mut guest, &policy(30, 5), &mut |_| {}).expect("lab 6: live_rounds failed");
    let first = sink.seen.first().expect("lab 6: live_rounds sent no round");
    assert_eq!(first.round, 0, "lab 6: the first round is round 0");
    assert!(first.skip_zero, "lab 6: round 0 must skip zero pages (the destination's RAM starts zeroed)");
    assert_eq!(first.pages.len(), 3000, "lab 6: round 0 must offer every frame of RAM (DirtySet::full); the model's non-zero frames are 0..3000");
    assert!(sink.seen.iter().skip(1).all(|r| !r.skip_zero), "lab 6: only round 0 may skip zero pages: a page dirtied back to zero must still be sent");
    assert_eq!(live.pages_sent, sink.seen.iter().map(|r| r.pages.len() as u64).sum::<u64>(), "lab 6: pages_sent counts every page the rounds sent");
}

#[test]
fn each_round_sends_what_the_one_before_left_dirty() {
    let (mut sink, mut guest) = model(BANDWIDTH, 3000, 4000, 40_000.0);
    let mut rows: Vec<RoundFigures> = Vec::new();
    let live = live_rounds(&mut sink, &mut guest, &policy(30, 1), &mut |r| rows.push(r.clone())).expect("lab 6: live_rounds failed");
    assert!(sink.seen.len() >= 2, "lab 6: this guest needs more than one round");
    for (i, (round, row)) in sink.seen.iter().zip(&rows).enumerate() {
        assert_eq!(round.round, i as u32, "lab 6: rounds are numbered 0, 1, 2, …");
        if i > 0 {
            assert_eq!(round.pages.len() as u64, rows[i - 1].pages_dirtied, "lab 6: round {i} must send exactly the pages dirtied during round {}", i - 1);
        }
        assert_eq!(row.pages_sent, round.pages.len() as u64, "lab 6: the figures of round {i} must say how many pages it sent");
    }
    assert_eq!(guest.asked as usize, sink.seen.len(), "lab 6: ask for the dirty set once after each round");
    assert_eq!(live.still_dirty.len(), rows.last().unwrap().pages_dirtied, "lab 6: still_dirty is what the last live round left dirty");
    assert_eq!(live.rounds, rows, "lab 6: progress sees each row, in order, as live_rounds returns them");
}

#[test]
fn a_slow_writer_converges_below_the_target() {
    // 10 000 pages/s against 400 MB/s (about 97 000 pages/s): each round about ten
    // times shorter than the last.
    let (mut sink, mut guest) = model(BANDWIDTH, 5000, 8000, 10_000.0);
    let live = live_rounds(&mut sink, &mut guest, &policy(30, 1), &mut |_| {}).expect("lab 6: live_rounds failed");
    assert_eq!(live.stopped_because, StopReason::Converged, "lab 6: this migration must converge: {:?}", live.rounds);
    let last = live.rounds.last().unwrap();
    assert!(last.estimated_downtime_ms <= 1.0, "lab 6: it stopped with {} ms of pages left, the target is 1 ms", last.estimated_downtime_ms);
    for pair in live.rounds.windows(2) {
        assert!(pair[1].estimated_downtime_ms > 1.0 || pair[0].estimated_downtime_ms > 1.0, "lab 6: once the rest fits the target, stop: {:?}", live.rounds);
    }
    assert!(live.rounds.len() < 10, "lab 6: a converging migration takes a few rounds, not {}", live.rounds.len());
}

#[test]
fn a_hot_working_set_falls_back_after_the_round_limit() {
    // 200 000 pages/s over 6000 pages: every round dirties the whole working set.
    let (mut sink, mut guest) = model(BANDWIDTH, 5000, 6000, 200_000.0);
    let live = live_rounds(&mut sink, &mut guest, &policy(5, 5), &mut |_| {}).expect("lab 6: live_rounds failed");
    assert_eq!(live.stopped_because, StopReason::RoundLimit, "lab 6: this migration cannot converge and must fall back: {:?}", live.rounds);
    assert_eq!(live.rounds.len(), 5, "lab 6: exactly max_rounds (5) live rounds before stop-and-copy");
    assert_eq!(sink.seen.len(), 5, "lab 6: the loop must not send a round it then ignores");
    assert!(!live.still_dirty.is_empty(), "lab 6: what the last round left dirty goes to the paused round");
}

#[test]
fn the_figures_follow_from_what_was_sent() {
    let (mut sink, mut guest) = model(BANDWIDTH, 3000, 2000, 20_000.0);
    let live = live_rounds(&mut sink, &mut guest, &policy(30, 2), &mut |_| {}).expect("lab 6: live_rounds failed");
    for row in &live.rounds {
        assert!(!row.paused, "lab 6: live rounds run with the guest running (paused: false)");
        if row.pages_sent > 0 {
            let mb_s = row.bytes as f64 / (row.ms / 1e3) / 1e6;
            assert!((row.mb_per_s - mb_s).abs() < 1e-6 * mb_s.max(1.0), "lab 6: MB/s is the round's bytes over its time: {row:?}");
            let expect = row.pages_dirtied as f64 * 4105.0 / (row.mb_per_s * 1e6) * 1e3;
            assert!((row.estimated_downtime_ms - expect).abs() < 1e-3, "lab 6: the estimate is the dirtied pages at this round's bandwidth: {row:?}");
        }
    }
}

#[test]
fn hostile_a_broken_connection_ends_the_loop_with_its_error() {
    let (mut sink, mut guest) = model(BANDWIDTH, 3000, 6000, 200_000.0);
    sink.fail_at_round = Some(2);
    let result = live_rounds(&mut sink, &mut guest, &policy(30, 5), &mut |_| {});
    match result {
        Err(e) => assert!(e.to_string().contains("the model's connection broke"), "lab 6: pass the sink's error on, got: {e}"),
        Ok(live) => panic!("lab 6: the connection broke in round 2, yet live_rounds returned {:?}", live.rounds),
    }
}
