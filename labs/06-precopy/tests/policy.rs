//! Lab 6, part (a): the downtime estimate and the stop condition.

use std::time::Duration;

use hv::migration::precopy::{estimated_downtime, next_step, NextStep};

const MS: fn(u64) -> Duration = Duration::from_millis;

#[test]
fn the_estimate_is_the_time_to_send_the_pages_at_the_measured_bandwidth() {
    let got = estimated_downtime(1000, 4096, 4096.0 * 1000.0 / 0.004);
    assert!(got.abs_diff(MS(4)) < Duration::from_micros(1), "lab 6: 1000 pages of 4096 bytes at 1.024 GB/s take 4 ms; got {got:?}");
    let got = estimated_downtime(3, 4105, 4105.0);
    assert!(got.abs_diff(Duration::from_secs(3)) < Duration::from_micros(1), "lab 6: count the bytes of each page on the wire (page_bytes); got {got:?}");
}

#[test]
fn no_pages_take_no_time() {
    assert_eq!(estimated_downtime(0, 4096, 1e9), Duration::ZERO, "lab 6: an empty dirty set needs no downtime");
    assert_eq!(estimated_downtime(0, 4096, 0.0), Duration::ZERO, "lab 6: an empty dirty set needs no downtime, whatever the bandwidth");
}

#[test]
fn hostile_an_unmeasured_bandwidth_predicts_no_convergence() {
    // A round that sent nothing in no time measured no bandwidth: dividing by it must
    // not claim the rest fits (nor panic on a NaN or an infinite duration).
    for bandwidth in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let got = std::panic::catch_unwind(|| estimated_downtime(10, 4096, bandwidth));
        match got {
            Ok(d) => assert_eq!(d, Duration::MAX, "lab 6: 10 pages at {bandwidth} B/s: an unbounded downtime (Duration::MAX), got {d:?}"),
            Err(_) => panic!("lab 6: estimated_downtime panicked at a bandwidth of {bandwidth} B/s"),
        }
    }
}

#[test]
fn the_rounds_stop_once_the_rest_fits_the_target() {
    assert_eq!(next_step(0, MS(4), MS(5), 30), NextStep::StopConverged, "lab 6: 4 ms of pages fit a 5 ms target");
    assert_eq!(next_step(7, MS(5), MS(5), 30), NextStep::StopConverged, "lab 6: exactly the target fits");
    assert_eq!(next_step(3, MS(6), MS(5), 30), NextStep::AnotherRound, "lab 6: 6 ms do not fit 5 ms: another round");
}

#[test]
fn the_round_limit_forces_stop_and_copy() {
    assert_eq!(next_step(29, MS(50), MS(5), 30), NextStep::StopRoundLimit, "lab 6: round 29 is the 30th of at most 30: stop-and-copy");
    assert_eq!(next_step(28, MS(50), MS(5), 30), NextStep::AnotherRound, "lab 6: round 28 is only the 29th of 30");
    assert_eq!(next_step(0, MS(50), MS(5), 1), NextStep::StopRoundLimit, "lab 6: with at most one round, round 0 is the last");
    assert_eq!(next_step(29, MS(1), MS(5), 30), NextStep::StopConverged, "lab 6: converging in the last round is still converging");
}
