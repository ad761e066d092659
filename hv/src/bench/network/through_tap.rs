//! The figures that need the host's own network stack: hv pinging a guest through the
//! TAP, and `curl` fetching a large page from it; and their baselines, the same pinger
//! against the namespace's loopback and the same `curl` against a host server there.
//!
//! ```text
//!  benchmark thread (in the namespace)        guest g0, 10.0.0.2: net-serve
//!  Pinger ─► kernel ─► TAP ─► hv-tap thread ─► switch ─► netback ─► ring ─► smoltcp
//!  curl   ─► kernel ─► …the same path, TCP…
//!  Pinger ─► kernel ─► lo ─► kernel                    (baseline: no guest at all)
//!  curl   ─► kernel ─► lo ─► host server thread        (baseline)
//! ```
//!
//! **Threads.** All of it runs on the thread that calls [`measure`], which first moves
//! itself into the benchmark's namespace (`setns`); it is a thread of the benchmark, never
//! confined by seccomp (it opens sockets and starts `curl`, which no confined hv thread
//! may). From it start, and so sit in the namespace: the guests' group thread (which
//! opens the TAP by name there, then confines itself as a vCPU thread does) and the host
//! server's thread (unconfined; it ends with this step). Baseline and guest alternate,
//! repetition by repetition, so that a change in the host's load touches both.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::curl;
use super::guests::{self, RunningGroup};
use super::http_baseline;
use super::icmp::{Pinger, Series};
use super::interrupt::Interrupts;
use super::latency::Latency;
use super::namespace::Namespace;
use super::report::{Outcome, PingFigure, TcpFigure};
use crate::bench::summary::Summary;
use crate::bench::Progress;
use crate::vmm::group::{guest_name, GroupNetwork, GuestSpec};
use crate::vmm::VmConfig;

/// The guest's address (the first guest on the switch).
pub const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// How long one ping waits for its reply (the guest's `net-ping` waits as long).
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// How long `net-serve` is asked to serve: more than any run needs; the benchmark stops
/// the guest as soon as its figures are taken.
pub const SERVE_SECONDS: u64 = 900;

/// The sizes of this step.
#[derive(Clone, Copy, Debug)]
pub struct TapPlan {
    /// Pings in each series.
    pub pings: usize,
    /// Body bytes of each download.
    pub curl_bytes: u64,
    /// Downloads from each server.
    pub curl_reps: usize,
    /// How long one download may take.
    pub curl_limit: Duration,
    /// Confine the guest's threads.
    pub seccomp: bool,
}

/// What this step measured.
pub struct TapFigures {
    /// hv → guest.
    pub ping_guest: Outcome<PingFigure>,
    /// hv → the namespace's loopback.
    pub ping_loopback: Outcome<PingFigure>,
    /// curl ← guest.
    pub tcp_guest: Outcome<TcpFigure>,
    /// curl ← host server.
    pub tcp_host: Outcome<TcpFigure>,
}

impl TapFigures {
    /// Every figure of the step failed, for `why`.
    pub fn failed(why: &str) -> TapFigures {
        TapFigures { ping_guest: Outcome::failed(why), ping_loopback: Outcome::failed(why), tcp_guest: Outcome::failed(why), tcp_host: Outcome::failed(why) }
    }
}

/// A series as a figure, or why there is none.
fn ping_figure(path: String, series: Result<Series, String>) -> Outcome<PingFigure> {
    Outcome::from_result(series.and_then(|s| {
        let latency = Latency::of(&s.round_trips_ns).ok_or_else(|| format!("{path}: no reply to any of {} pings", s.sent))?;
        Ok(PingFigure { path, sent: s.sent, latency })
    }))
}

/// The guest that answers, on the switch with the namespace's TAP.
fn start_guest(ns: &Namespace, seccomp: bool, interrupts: &Interrupts) -> Result<RunningGroup, String> {
    let mut config = VmConfig::builtin_guest(&["net-serve", &SERVE_SECONDS.to_string()]);
    config.seccomp = seccomp;
    // A backstop only: the benchmark stops the guest when it is done with it.
    config.timeout = Some(Duration::from_secs(SERVE_SECONDS + 60));
    let name = guest_name(0);
    let mut group = guests::start(vec![GuestSpec { name: name.clone(), config }], Some(GroupNetwork { tap: Some(ns.tap().to_string()) }))?;
    group.wait_for_line(&name, |l| l.starts_with("net-serve: answering"), Duration::from_secs(120), interrupts)?;
    Ok(group)
}

/// Pings `GUEST` until it answers once (the host's ARP, the TAP's first moments), at most
/// 20 times.
fn warm_up(pinger: &mut Pinger, interrupts: &Interrupts) -> Result<(), String> {
    for _ in 0..20 {
        if interrupts.caught().is_some() {
            return Err("interrupted".into());
        }
        if pinger.ping(GUEST, Duration::from_millis(500)).map_err(|e| e.to_string())?.is_some() {
            return Ok(());
        }
    }
    Err(format!("{GUEST} did not answer a single ping in 20 tries"))
}

/// Runs the step on the calling thread, which it moves into `ns` (see the module comment).
pub(super) fn measure(ns: &Namespace, plan: &TapPlan, interrupts: &Interrupts, progress: &mut Progress) -> TapFigures {
    if let Err(e) = ns.enter() {
        return TapFigures::failed(&e.to_string());
    }
    progress.step(&format!("network: guest {GUEST} starting net-serve, on a switch with TAP {} in namespace {}", ns.tap(), ns.name()));
    let mut group = start_guest(ns, plan.seccomp, interrupts);
    let mut pinger = Pinger::open().map_err(|e| e.to_string());
    if let (Ok(p), Ok(_)) = (&mut pinger, &group) {
        if let Err(e) = warm_up(p, interrupts) {
            group = Err(e);
        }
    }

    progress.step(&format!("network: {} pings to 127.0.0.1 (baseline) and to {GUEST}", plan.pings));
    let caught = || interrupts.caught().is_some();
    let (ping_loopback, ping_guest) = match &mut pinger {
        Err(e) => (Outcome::failed(e.clone()), Outcome::failed(e.clone())),
        Ok(p) => {
            let loopback = p.series(Ipv4Addr::LOCALHOST, plan.pings, PING_TIMEOUT, &caught).map_err(|e| e.to_string());
            let guest = match &group {
                Ok(_) => p.series(GUEST, plan.pings, PING_TIMEOUT, &caught).map_err(|e| e.to_string()),
                Err(e) => Err(e.clone()),
            };
            (ping_figure("hv -> 127.0.0.1".into(), loopback), ping_figure(format!("hv -> {GUEST}"), guest))
        }
    };

    progress.step(&format!("network: curl, {} download(s) of {} KiB from a host server on loopback and from {GUEST}", plan.curl_reps, plan.curl_bytes >> 10));
    let (tcp_guest, tcp_host) = if !curl::installed() {
        let why = "`curl` is not installed (Debian: apt-get install curl)";
        eprintln!("hv bench: SKIPPED: the TCP throughput rows: {why}");
        (Outcome::skipped(why), Outcome::skipped(why))
    } else {
        downloads(plan, group.as_ref().map(|_| ()).map_err(Clone::clone), interrupts)
    };
    if let Ok(group) = group {
        if let Err(e) = group.stop() {
            eprintln!("hv bench: the guest serving {GUEST}: {e}");
        }
    }
    TapFigures { ping_guest, ping_loopback, tcp_guest, tcp_host }
}

/// `plan.curl_reps` downloads from the host server and from the guest, alternately.
fn downloads(plan: &TapPlan, guest: Result<(), String>, interrupts: &Interrupts) -> (Outcome<TcpFigure>, Outcome<TcpFigure>) {
    let (listener, port) = match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr().map(|a| (l, a.port()))) {
        Ok(pair) => pair,
        Err(e) => {
            let why = format!("cannot listen on the namespace's loopback: {e}");
            return (Outcome::failed(format!("not measured without its baseline: {why}")), Outcome::failed(why));
        }
    };
    let host_url = format!("http://127.0.0.1:{port}/big?bytes={}", plan.curl_bytes);
    let guest_url = format!("http://{GUEST}/big?bytes={}", plan.curl_bytes);
    let stop = AtomicBool::new(false);
    let deadline = Instant::now() + plan.curl_limit * (2 * plan.curl_reps as u32 + 1);
    std::thread::scope(|s| {
        let server = std::thread::Builder::new().name("hv-bench-http".into()).spawn_scoped(s, || http_baseline::serve(&listener, &stop, deadline));
        let (mut host_rates, mut guest_rates) = (Ok(Vec::new()), guest.map(|()| Vec::new()));
        for _ in 0..plan.curl_reps {
            if interrupts.caught().is_some() {
                host_rates = Err("interrupted".to_string());
                break;
            }
            for (url, rates) in [(&host_url, &mut host_rates), (&guest_url, &mut guest_rates)] {
                if let Ok(list) = rates {
                    match curl::fetch(url, plan.curl_bytes, plan.curl_limit) {
                        Ok(t) => list.push(t.bytes_per_second()),
                        Err(e) => *rates = Err(e.to_string()),
                    }
                }
            }
        }
        stop.store(true, Ordering::Release);
        if let Ok(Ok(Err(e))) = server.map(|h| h.join()) {
            eprintln!("hv bench: the host HTTP server: {e}");
        }
        let figure = |url: &str, rates: Result<Vec<f64>, String>| {
            Outcome::from_result(rates.and_then(|r| {
                let bytes_per_second = Summary::of(&r).ok_or("no download finished")?;
                Ok(TcpFigure { url: url.to_string(), bytes: plan.curl_bytes, bytes_per_second })
            }))
        };
        (figure(&guest_url, guest_rates), figure(&host_url, host_rates))
    })
}
