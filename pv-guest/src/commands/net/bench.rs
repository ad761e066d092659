//! `net-bench loopback|IP [COUNT]`: what the network stack costs, in one run.
//!
//! - `net-bench loopback [COUNT]` (no device needed) runs the guest's interface A and a
//!   peer B on the loopback wire, both in this kernel, and prints:
//!   the cost of one ring-0 instruction here (a timed `dec`/`jnz` loop), of one idle
//!   poll, COUNT ping round trips A→B (p50, p99), the time B's stack spent per ping it
//!   answered (a frame in, a frame out: what a guest spends per ping from the host) and
//!   that time in instructions, frames per second over the wire, and the throughput of
//!   a large HTTP response (`GET /big`) over TCP.
//! - `net-bench IP [COUNT]` pings IP through the network device COUNT times and prints
//!   round trips (p50, p99) and frames per second (needs the device).
//!
//! Figures are printed, never judged: this is a measurement, and a slow host is not a
//! failure. The conclusions drawn from them are in `crate::net`'s module doc.

use smoltcp::iface::SocketStorage;

use super::pair::{self, loopback_get};
use super::{network_device, parse_ipv4, ping_series, print_summary, EXIT_USAGE, MAX_PING_COUNT};
use crate::arch::cpu;
use crate::net::http::HttpServer;
use crate::net::http_get::HttpClient;
use crate::net::ping::Pinger;
use crate::println;

/// Round trips measured without a COUNT.
const DEFAULT_COUNT: u32 = 100;
/// Iterations of the calibration loop (two instructions each).
const CALIBRATION_ITERATIONS: u64 = 20_000;
/// Calibration loops timed (the median counts).
const CALIBRATION_RUNS: usize = 5;
/// Idle polls timed.
const IDLE_POLLS: u64 = 50;
/// The size of the large response, in bytes.
const BIG_BYTES: u64 = 256 * 1024;
/// How long the large response may take, in microseconds.
const BIG_TIMEOUT_US: u64 = 60_000_000;
/// A's local port for the large response.
const BIG_LOCAL_PORT: u16 = 50000;

/// `net-bench`.
pub fn bench<'a>(info: &pv_abi::BootInfo, mut words: impl Iterator<Item = &'a str>) -> u8 {
    let target = words.next();
    let count = match words.next().map(str::parse::<u32>) {
        None => DEFAULT_COUNT,
        Some(Ok(n)) if n > 0 && n as usize <= MAX_PING_COUNT => n,
        Some(_) => {
            println!("net-bench: COUNT is 1..={MAX_PING_COUNT}");
            return EXIT_USAGE;
        }
    };
    match target {
        Some("loopback") => loopback(info, count),
        Some(ip) => match parse_ipv4(ip) {
            Some(target) => over_device(info, target, count),
            None => {
                println!("net-bench: usage: net-bench loopback|IP [COUNT]");
                EXIT_USAGE
            }
        },
        None => {
            println!("net-bench: usage: net-bench loopback|IP [COUNT]");
            EXIT_USAGE
        }
    }
}

/// `net-bench IP [COUNT]`: round trips to a peer through the device.
fn over_device(info: &pv_abi::BootInfo, target: [u8; 4], count: u32) -> u8 {
    let Some(io) = network_device() else { return super::no_device("net-bench") };
    let mut memory = pair::memory();
    let mut storage = [SocketStorage::EMPTY; pair::SOCKETS];
    let Some(mut stack) = pair::device_stack(info, io, &mut storage) else { return 1 };
    let pinger = Pinger::new(&mut stack, &mut memory.ping, target.into());
    // One ping first, so ARP is resolved before the timed series.
    let _ = ping_series(&mut stack, &pinger, target, 1, false, pair::poll_and_wait);
    let frames_before = stack.device.counters.sent + stack.device.counters.received;
    let start = stack.clock.ticks();
    let series = ping_series(&mut stack, &pinger, target, count, false, pair::poll_and_wait);
    let elapsed_us = stack.clock.micros(stack.clock.ticks() - start).max(1);
    let frames = stack.device.counters.sent + stack.device.counters.received - frames_before;
    print_summary("net-bench: ping", &series, stack.clock);
    println!("net-bench: {frames} frames in and out in {} ms: {} frames/s", elapsed_us / 1000, frames * 1_000_000 / elapsed_us);
    u8::from(series.received == 0)
}

/// `net-bench loopback [COUNT]`.
fn loopback(info: &pv_abi::BootInfo, count: u32) -> u8 {
    let clock = crate::net::kernel_clock(info);
    let ns = |ticks: u64| clock.micros(ticks.saturating_mul(1000));

    // What one instruction costs in ring 0 on this host: the median of a few timed
    // loops, so one preempted sample on a busy host does not decide it.
    let mut samples = [0u64; CALIBRATION_RUNS];
    for sample in &mut samples {
        let start = clock.ticks();
        cpu::spin_instructions(CALIBRATION_ITERATIONS);
        *sample = ns(clock.ticks() - start) / (2 * CALIBRATION_ITERATIONS);
    }
    samples.sort_unstable();
    let ns_per_instruction = samples[CALIBRATION_RUNS / 2].max(1);
    println!("net-bench: ring 0 here: {ns_per_instruction} ns per instruction (median of {CALIBRATION_RUNS} timed dec/jnz loops)");

    let mut memory = pair::memory();
    let memory = &mut *memory;
    let mut storage_a = [SocketStorage::EMPTY; pair::SOCKETS];
    let mut storage_b = [SocketStorage::EMPTY; pair::SOCKETS];
    let Some((mut a, mut b)) = pair::loopback_stacks(info, &memory.wire, &mut storage_a, &mut storage_b) else { return 1 };
    let peer = b.iface.ipv4_addr().map_or([0; 4], |ip| ip.octets());
    let mut server = HttpServer::new(&mut b, &mut memory.server, crate::net::kernel_about);
    let pinger = Pinger::new(&mut a, &mut memory.ping, peer.into());
    let mut client = HttpClient::new(&mut a, &mut memory.client);

    // One ping first: ARP resolves, and the series times only echo round trips.
    let warm = ping_series(&mut a, &pinger, peer, 1, false, |a| {
        a.poll();
        pair::pump_peer(&mut b, &mut server);
    });
    if warm.received != 1 {
        println!("net-bench: the first ping over the loopback wire got no reply");
        return 1;
    }

    let start = clock.ticks();
    for _ in 0..IDLE_POLLS {
        a.poll();
    }
    let idle_ns = ns(clock.ticks() - start) / IDLE_POLLS;
    println!("net-bench: one idle poll: {} us ({} dec/jnz loops' worth)", idle_ns / 1000, idle_ns / ns_per_instruction);

    // The series: B's polls that took in a frame are the work of answering a ping.
    let frames_before = a.device.counters.sent + b.device.counters.sent;
    let (mut busy_ticks, mut busy_polls) = (0u64, 0u64);
    let start = clock.ticks();
    let series = ping_series(&mut a, &pinger, peer, count, false, |a| {
        a.poll();
        let received = b.device.counters.received;
        let spent = pair::pump_peer(&mut b, &mut server);
        if b.device.counters.received != received {
            busy_ticks += spent;
            busy_polls += 1;
        }
    });
    let elapsed = clock.ticks() - start;
    let frames = a.device.counters.sent + b.device.counters.sent - frames_before;
    print_summary("net-bench: loopback ping", &series, clock);
    if series.received > 0 {
        let per_ping_ns = ns(busy_ticks) / series.received as u64;
        println!(
            "net-bench: the peer's stack per ping answered (echo request in, reply out): {} us, {} dec/jnz loops' worth ({busy_polls} busy polls)",
            per_ping_ns / 1000,
            per_ping_ns / ns_per_instruction
        );
    }
    let elapsed_us = clock.micros(elapsed).max(1);
    println!("net-bench: {frames} frames over the wire in {} ms: {} frames/s", elapsed_us / 1000, frames * 1_000_000 / elapsed_us);

    // A large response over TCP.
    let frames_before = a.device.counters.sent + b.device.counters.sent;
    let start = clock.ticks();
    let request = b"GET /big?bytes=262144 HTTP/1.0\r\n\r\n";
    let big = loopback_get(&mut a, &mut client, &mut b, &mut server, BIG_LOCAL_PORT, request, BIG_TIMEOUT_US);
    let elapsed_us = clock.micros(clock.ticks() - start).max(1);
    let frames = a.device.counters.sent + b.device.counters.sent - frames_before;
    match big {
        Ok(r) if r.status == 200 && r.body_len == BIG_BYTES && r.is_pattern => println!(
            "net-bench: http GET /big: {BIG_BYTES} bytes in {} ms: {} KiB/s ({frames} frames, {} frames/s)",
            elapsed_us / 1000,
            BIG_BYTES * 1_000_000 / 1024 / elapsed_us,
            frames * 1_000_000 / elapsed_us
        ),
        other => {
            println!("net-bench: http GET /big failed: {other:?}");
            return 1;
        }
    }
    println!("net-bench: wire drops {}", memory.wire.dropped());
    0
}
