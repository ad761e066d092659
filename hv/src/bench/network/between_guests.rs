//! Guest → guest ping: two guests on one switch, no host network at all. Guest g1
//! (10.0.0.3) runs `net-serve`; guest g0 pings it with `net-ping`, whose lines give each
//! round trip as g0's TSC timed it. So every part of the path is a guest's or hv's:
//! g0's stack and netfront, netback, the switch, g1's netback, netfront and stack, and back.
//!
//! g0 first sends a few warm-up pings (ARP, and g1 may still be booting: `net-ping` fails
//! only if none is answered), then the measured series; only the second series' lines
//! are read. g0 ends by itself; g1 is stopped once g0 is done. This step needs no namespace and runs on the benchmark's
//! main thread, which starts the group's thread (see `super::guests`).

use std::time::Duration;

use super::guests::{self, ping_round_trips};
use super::interrupt::Interrupts;
use super::latency::Latency;
use super::report::{Outcome, PingFigure};
use super::through_tap::SERVE_SECONDS;
use crate::vmm::group::{guest_name, GroupNetwork, GuestSpec};
use crate::vmm::VmConfig;

/// The pinged guest's address (the second guest on the switch).
pub const PINGED: &str = "10.0.0.3";
/// Pings before the measured series.
const WARM_UP_PINGS: &str = "5";

/// `pings` round trips from g0 to g1.
pub fn measure(pings: usize, seccomp: bool, interrupts: &Interrupts) -> Outcome<PingFigure> {
    let count = pings.to_string();
    let serve = SERVE_SECONDS.to_string();
    let commands: [&[&str]; 2] = [&["net-ping", PINGED, WARM_UP_PINGS, ";", "net-ping", PINGED, &count], &["net-serve", &serve]];
    let specs = commands
        .iter()
        .enumerate()
        .map(|(index, words)| {
            let mut config = VmConfig::builtin_guest(words);
            config.seccomp = seccomp;
            config.timeout = Some(Duration::from_secs(SERVE_SECONDS + 60));
            GuestSpec { name: guest_name(index), config }
        })
        .collect();
    Outcome::from_result(run(specs, interrupts))
}

fn run(specs: Vec<GuestSpec>, interrupts: &Interrupts) -> Result<PingFigure, String> {
    let pinger = guest_name(0);
    let mut group = guests::start(specs, Some(GroupNetwork { tap: None }))?;
    let summary = |l: &str| l.starts_with("net-ping: ") && l.contains(" sent, ");
    group.wait_for_line(&pinger, summary, Duration::from_secs(120), interrupts)?;
    group.wait_for_line(&pinger, summary, Duration::from_secs(300), interrupts)?;
    // The measured series: what follows the warm-up's summary.
    let lines = group.lines_of(&pinger);
    let measured = lines.iter().position(|l| summary(l)).map_or(&lines[..], |warm_up_end| &lines[warm_up_end + 1..]);
    if let Err(e) = group.stop() {
        eprintln!("hv bench: the guests pinging each other: {e}");
    }
    let (round_trips, sent) = ping_round_trips(measured)?;
    let latency = Latency::of(&round_trips).ok_or_else(|| format!("{pinger} got no reply to any of its {sent} pings"))?;
    Ok(PingFigure { path: format!("{pinger} -> {PINGED}"), sent, latency })
}
