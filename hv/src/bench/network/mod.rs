//! `hv bench --network`: the network's and the balloon's figures, each next to a baseline
//! measured in the same run, in one command (issue 12, item 7).
//!
//! A figure alone says little on a host like the development machine, where guest ring 0
//! is emulated and two cores are shared: 2.6 ms for a ping is slow or fast only next to
//! what the same host does without a guest, measured at the same time under the same
//! load. So each row has its baseline, and the table prints the ratio of their costs:
//!
//! | row | guest | baseline (same run) |
//! | --- | --- | --- |
//! | ping host → guest | hv's ICMP echo through TAP, switch, netback, the guest's stack | the same pinger against the namespace's loopback |
//! | ping guest → guest | `net-ping` between two guests on one switch | the loopback ping |
//! | switch | frames through the switch (learned destination) in bursts | the same frames through a port queue alone |
//! | TCP | `curl` of the guest's `/big` | the same `curl` of a host server on loopback |
//! | balloon | a guest giving memory back to a target; hv's RSS before and after | `madvise(MADV_DONTNEED)` of as much host memory |
//!
//! Files, lowest first:
//!
//! | file | idea |
//! | --- | --- |
//! | [`latency`] | round trips summed up: min, p50, p90 by nearest rank |
//! | [`icmp`] | hv's own ping: ICMP echo on a raw socket, replies parsed as hostile input |
//! | [`curl`] | one download with the system's `curl`, timed by `curl` |
//! | [`http_baseline`] | the host server the TCP baseline fetches from |
//! | [`interrupt`] | Ctrl-C: blocked and read from a signalfd, so cleanup always runs |
//! | [`namespace`] | the network namespace and TAP, removed on drop |
//! | [`switch_rate`] | frames through the switch against a queue alone |
//! | [`guests`] | a group of guests on a thread, their console lines, stopping them |
//! | [`balloon_rate`] | a balloon inflate timed, and the `madvise` baseline |
//! | [`report`] | the run's figures and ratios as one value; the JSON file |
//! | [`table`] | the report as a table |
//! | [`through_tap`] | the steps inside the namespace: pings and downloads, guest and host |
//! | [`between_guests`] | two guests pinging each other |
//!
//! **Threads and confinement.** The guests run in this process (`crate::vmm::group`), each
//! on a vCPU thread confined by seccomp as in `hv run`. The benchmark's own work (sending
//! ICMP, starting `curl` and `ip`, the host server, reading `/proc`) runs on threads that
//! no filter covers: the calling thread, one scoped thread that enters the namespace
//! (`through_tap`), and the host server's thread; none of them touches guest memory, and
//! the only guest data they read (ICMP replies, console lines) is parsed with every length
//! checked. The group's own thread confines itself once its guests run.

pub mod latency;
pub mod icmp;
pub mod curl;
pub mod http_baseline;
pub mod interrupt;
pub mod namespace;
pub mod switch_rate;
pub mod guests;
pub mod balloon_rate;
pub mod report;
pub mod table;
pub mod through_tap;
pub mod between_guests;

use std::time::{Duration, Instant};

use balloon_rate::BalloonPlan;
use interrupt::Interrupts;
use namespace::Namespace;
use report::{NetReport, Outcome};
use through_tap::TapPlan;

use crate::bench::results::HostDescription;
use crate::bench::Progress;

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct NetBenchConfig {
    /// Small sizes: a check that everything works (under a minute here).
    pub quick: bool,
    /// Confine the guests' threads with seccomp, as `hv run` does.
    pub seccomp: bool,
}

/// The sizes of a run.
struct Sizes {
    tap: TapPlan,
    guest_pings: usize,
    switch_frames: usize,
    switch_reps: usize,
    balloon: BalloonPlan,
}

impl Sizes {
    fn of(config: &NetBenchConfig) -> Sizes {
        if config.quick {
            Sizes {
                tap: TapPlan { pings: 20, curl_bytes: 512 << 10, curl_reps: 2, curl_limit: Duration::from_secs(60), seccomp: config.seccomp },
                guest_pings: 20,
                switch_frames: 64 * 1000,
                switch_reps: 3,
                balloon: BalloonPlan { mem_mib: 64, touch_mib: 48, target_mib: 32 },
            }
        } else {
            Sizes {
                tap: TapPlan { pings: 200, curl_bytes: 2 << 20, curl_reps: 3, curl_limit: Duration::from_secs(180), seccomp: config.seccomp },
                guest_pings: 100,
                switch_frames: 64 * 10_000,
                switch_reps: 7,
                balloon: BalloonPlan { mem_mib: 256, touch_mib: 192, target_mib: 32 },
            }
        }
    }
}

/// The frame sizes of the switch rows: the smallest frame and the largest.
const SWITCH_FRAME_BYTES: [usize; 2] = [60, 1514];

/// Why the run stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum NetBenchError {
    /// Ctrl-C or SIGTERM.
    #[error("interrupted by {}", interrupt::name(*.0))]
    Interrupted(i32),
}

/// The namespace's name for this process.
fn namespace_name() -> String {
    format!("hvbench{}", std::process::id())
}

/// The TAP's name inside it (the namespace is ours alone, so one name does).
const TAP_NAME: &str = "hvbench0";

/// Runs every step and reports. `interrupts` must have been caught before any thread was
/// started ([`Interrupts::catch`]); a failed step is in the report, only Ctrl-C ends the
/// run early (after stopping the guests and removing the namespace).
pub fn run(config: &NetBenchConfig, interrupts: &Interrupts) -> Result<NetReport, NetBenchError> {
    let started = Instant::now();
    let sizes = Sizes::of(config);
    let load_average_start = report::load_average();
    let mut progress = Progress::new(9);
    let check = || interrupts.caught().map_or(Ok(()), |s| Err(NetBenchError::Interrupted(s)));

    progress.step(&format!("network: making namespace {} with TAP {TAP_NAME} at {}", namespace_name(), namespace::HOST_ADDRESS));
    let tap = match Namespace::make(&namespace_name(), TAP_NAME) {
        Ok(ns) => {
            // A scoped thread enters the namespace, so this one never does (see the module comment).
            let figures = std::thread::scope(|s| {
                let worker = std::thread::Builder::new().name("hv-bench-netns".into()).spawn_scoped(s, || through_tap::measure(&ns, &sizes.tap, interrupts, &mut progress));
                match worker.map(|w| w.join()) {
                    Ok(Ok(figures)) => figures,
                    Ok(Err(panic)) => std::panic::resume_unwind(panic),
                    Err(e) => through_tap::TapFigures::failed(&format!("cannot start the namespace's thread: {e}")),
                }
            });
            drop(ns);
            figures
        }
        Err(e) => {
            eprintln!("hv bench: {e}");
            progress.done += 3;
            through_tap::TapFigures::failed(&e.to_string())
        }
    };
    check()?;

    progress.step(&format!("network: two guests, g0 pinging g1 ({}) {} times through the switch", between_guests::PINGED, sizes.guest_pings));
    let ping_guest_to_guest = between_guests::measure(sizes.guest_pings, config.seccomp, interrupts);
    check()?;

    let mut switch = Vec::new();
    for bytes in SWITCH_FRAME_BYTES {
        progress.step(&format!("switch: {} {bytes}-byte frames, {} times, through the switch and through a port queue alone", sizes.switch_frames, sizes.switch_reps));
        switch.push(Outcome::from_result(switch_rate::measure(bytes, sizes.switch_frames, sizes.switch_reps, &|| interrupts.caught().is_some())));
        check()?;
    }

    let balloon_mib = sizes.balloon.balloon_mib();
    progress.step(&format!("balloon: baseline, madvise(MADV_DONTNEED) of {balloon_mib} MiB of host memory"));
    let balloon_baseline = Outcome::from_result(balloon_rate::madvise_baseline(balloon_mib));
    progress.step(&format!(
        "balloon: a {} MiB guest touches {} MiB, then is asked to keep {} MiB",
        sizes.balloon.mem_mib, sizes.balloon.touch_mib, sizes.balloon.target_mib
    ));
    let balloon = Outcome::from_result(balloon_rate::measure(sizes.balloon, config.seccomp, interrupts));
    check()?;

    let mut report = NetReport {
        schema_version: report::SCHEMA_VERSION,
        kind: "network",
        host: HostDescription::detect(),
        load_average_start,
        load_average_end: report::load_average(),
        quick: config.quick,
        ping_host_to_guest: tap.ping_guest,
        ping_loopback: tap.ping_loopback,
        ping_guest_to_guest,
        switch,
        tcp_guest: tap.tcp_guest,
        tcp_host: tap.tcp_host,
        balloon,
        balloon_baseline,
        comparisons: Vec::new(),
        wall_seconds: started.elapsed().as_secs_f64(),
    };
    report.compute_comparisons();
    Ok(report)
}
