//! The network commands: `net-ping IP [COUNT]`, `net-serve [SECONDS]`,
//! `net-bench loopback|IP [COUNT]`, `net-selftest`, and `net-ring3-probe [N]`, the
//! experiment behind where the stack runs (`crate::net`'s module doc).
//!
//! All of them run the stack in `crate::net` (smoltcp). `net-selftest` and
//! `net-bench loopback` need no device: they run two interfaces in this kernel joined by
//! the loopback wire (`pair`), so they prove and measure the stack itself. `net-ping`,
//! `net-serve` and `net-bench IP` need the guest's network device; until its frontend
//! lands they say so. The one place to plug it in is [`network_device`].

mod bench;
mod pair;
mod ring3_probe;
mod selftest;

pub use bench::bench;
pub use ring3_probe::ring3_probe;
pub use selftest::selftest;

use smoltcp::iface::SocketStorage;

use crate::net::device::FrameIo;
use crate::net::http::HttpServer;
use crate::net::ping::Pinger;
use crate::net::stack::NetStack;
use crate::net::time::NetClock;
use crate::println;

/// Exit code for bad arguments or a missing device.
const EXIT_USAGE: u8 = 2;
/// How long a ping waits for its reply (as `ping`'s default), in microseconds.
const PING_TIMEOUT_US: u64 = 1_000_000;
/// Pings `net-ping` sends without a COUNT.
const DEFAULT_PING_COUNT: u32 = 4;
/// Round trips one series keeps for its percentiles (and the most `COUNT` may ask).
pub const MAX_PING_COUNT: usize = 512;

/// The guest's network device, when hv gave it one: the netfront (`hv::drivers`) seen as
/// a [`FrameIo`], borrowed for as long as the command runs.
fn network_device() -> Option<impl FrameIo> {
    let front = crate::hv::drivers::net();
    if front.is_none() {
        return None;
    }
    Some(NetFrontIo { front, dropped: 0 })
}

/// The netfront as the stack's link: `send` transmits (dropping the frame, and counting
/// it, when every transmit buffer is in flight: the protocols above retransmit); `recv`
/// keeps the receive ring stocked and takes the next frame.
struct NetFrontIo {
    front: crate::arch::cpu_local::VcpuRefMut<'static, Option<crate::hv::drivers::Net>>,
    /// Frames dropped because no transmit buffer was free.
    dropped: u64,
}

impl FrameIo for NetFrontIo {
    fn send(&mut self, frame: &[u8]) {
        let Some(net) = self.front.as_mut() else { return };
        let _ = net.reap_tx();
        if net.transmit(frame).is_err() {
            self.dropped += 1;
        }
    }

    fn recv(&mut self, buffer: &mut [u8]) -> Option<usize> {
        let net = self.front.as_mut()?;
        let _ = net.post_rx_buffers();
        // A malformed answer costs its buffer's turn (the frontend posts it again), not
        // the frames behind it; the ring bounds how many there can be.
        for _ in 0..=crate::hv::drivers::NET_RX_BUFFERS {
            match net.receive_into(buffer) {
                Ok(found) => return found,
                Err(_) => continue,
            }
        }
        None
    }
}

/// Says the device is missing; returns the exit code for that.
fn no_device(command: &str) -> u8 {
    println!("{command}: no network device: hv does not give this guest one yet (net-selftest and net-bench loopback run without one)");
    EXIT_USAGE
}

/// Parses a dotted IPv4 address.
fn parse_ipv4(word: &str) -> Option<[u8; 4]> {
    let mut bytes = [0u8; 4];
    let mut parts = word.split('.');
    for b in &mut bytes {
        *b = parts.next()?.parse().ok()?;
    }
    parts.next().is_none().then_some(bytes)
}

/// Round trips of one series of pings, in TSC cycles.
pub struct PingSeries {
    /// Requests sent.
    pub sent: u32,
    /// Round trips measured (replies received), the first `received` sorted ascending.
    pub rtts: [u64; MAX_PING_COUNT],
    /// Replies received.
    pub received: usize,
}

impl PingSeries {
    /// The round trip at percentile `p` (0–100), in cycles; 0 if none were received.
    pub fn percentile(&self, p: usize) -> u64 {
        match self.received {
            0 => 0,
            n => self.rtts[((n - 1) * p / 100).min(n - 1)],
        }
    }
}

/// Sends `count` pings one after the other, each waiting for its reply; prints each
/// reply if `verbose`. `pump` polls the stack (and whatever else must run).
pub fn ping_series<'s, F: FrameIo>(
    stack: &mut NetStack<'s, F>,
    pinger: &Pinger,
    target: [u8; 4],
    count: u32,
    verbose: bool,
    mut pump: impl FnMut(&mut NetStack<'s, F>),
) -> PingSeries {
    let mut series = PingSeries { sent: 0, rtts: [0; MAX_PING_COUNT], received: 0 };
    let [a, b, c, d] = target;
    for seq in 0..count.min(MAX_PING_COUNT as u32) {
        series.sent += 1;
        match pinger.ping(stack, seq as u16, PING_TIMEOUT_US, &mut pump) {
            Ok(rtt) => {
                series.rtts[series.received] = rtt;
                series.received += 1;
                if verbose {
                    println!("net-ping: reply from {a}.{b}.{c}.{d}: seq={seq} time={} us", stack.clock.micros(rtt));
                }
            }
            Err(e) if verbose => println!("net-ping: no reply from {a}.{b}.{c}.{d}: seq={seq} ({e:?})"),
            Err(_) => {}
        }
    }
    series.rtts[..series.received].sort_unstable();
    series
}

/// Prints a series' summary line (`ping`'s last two lines in one).
fn print_summary(what: &str, series: &PingSeries, clock: NetClock) {
    let loss = 100 - series.received * 100 / (series.sent.max(1) as usize);
    println!(
        "{what}: {} sent, {} received, {loss}% loss; round trip min {} us, p50 {} us, p99 {} us, max {} us",
        series.sent,
        series.received,
        clock.micros(series.percentile(0)),
        clock.micros(series.percentile(50)),
        clock.micros(series.percentile(99)),
        clock.micros(series.percentile(100)),
    );
}

/// `net-ping IP [COUNT]`.
pub fn ping<'a>(info: &pv_abi::BootInfo, mut words: impl Iterator<Item = &'a str>) -> u8 {
    let Some(target) = words.next().and_then(parse_ipv4) else {
        println!("net-ping: usage: net-ping IP [COUNT] (IP dotted, like 10.0.0.3)");
        return EXIT_USAGE;
    };
    let count = match words.next().map(str::parse::<u32>) {
        None => DEFAULT_PING_COUNT,
        Some(Ok(n)) if n > 0 && n as usize <= MAX_PING_COUNT => n,
        Some(_) => {
            println!("net-ping: COUNT is 1..={MAX_PING_COUNT}");
            return EXIT_USAGE;
        }
    };
    let Some(io) = network_device() else { return no_device("net-ping") };
    let mut memory = pair::memory();
    let mut storage = [SocketStorage::EMPTY; pair::SOCKETS];
    let Some(mut stack) = pair::device_stack(info, io, &mut storage) else { return 1 };
    let pinger = Pinger::new(&mut stack, &mut memory.ping, target.into());
    let series = ping_series(&mut stack, &pinger, target, count, true, pair::poll_and_wait);
    print_summary("net-ping", &series, stack.clock);
    u8::from(series.received == 0)
}

/// `net-serve [SECONDS]`: answers pings and serves HTTP for SECONDS (default 30).
pub fn serve<'a>(info: &pv_abi::BootInfo, mut words: impl Iterator<Item = &'a str>) -> u8 {
    let seconds = match words.next().map(str::parse::<u64>) {
        None => 30,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            println!("net-serve: usage: net-serve [SECONDS]");
            return EXIT_USAGE;
        }
    };
    let Some(io) = network_device() else { return no_device("net-serve") };
    let mut memory = pair::memory();
    let mut storage = [SocketStorage::EMPTY; pair::SOCKETS];
    let Some(mut stack) = pair::device_stack(info, io, &mut storage) else { return 1 };
    let mut server = HttpServer::new(&mut stack, &mut memory.server);
    let deadline = stack.clock.ticks().saturating_add(stack.clock.ticks_in(seconds.saturating_mul(1_000_000)));
    println!("net-serve: answering ping and HTTP on port 80 for {seconds} s");
    while stack.clock.ticks() < deadline {
        pair::poll_and_wait(&mut stack);
        server.step(&mut stack);
    }
    let link = stack.device.counters;
    println!("net-serve: done: {} responses, {} refused; {} frames in, {} out", server.stats.ok, server.stats.refused, link.received, link.sent);
    0
}
