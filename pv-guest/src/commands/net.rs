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

use pv_user::handoff::net::NetTaskCommand;
use smoltcp::iface::SocketStorage;

use crate::net::device::FrameIo;
use crate::net::http::HttpServer;
use crate::net::ping::Pinger;
use crate::net::stack::NetStack;
use crate::net::time::NetClock;
use crate::println;

/// Exit code for bad arguments or a missing device.
const EXIT_USAGE: u8 = 2;
/// Pings `net-ping` sends without a COUNT.
const DEFAULT_PING_COUNT: u32 = 4;
pub use pv_netstack::ping::{PingSeries, MAX_PING_COUNT};

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
        if !net.send_or_drop(frame) {
            self.dropped += 1;
        }
    }

    fn recv(&mut self, buffer: &mut [u8]) -> Option<usize> {
        self.front.as_mut()?.next_frame(buffer)
    }
}

/// Says the device is missing; returns the exit code for that.
fn no_device(command: &str) -> u8 {
    if crate::hv::drivers::net_lost() {
        println!("{command}: the network device is lost for this boot: a ring-3 network task ended without saying where it left the rings");
    } else {
        println!("{command}: no network device: run hv with --guests, --guest or --tap (net-selftest and net-bench loopback run without one)");
    }
    EXIT_USAGE
}

/// The most words a network command takes.
const MAX_WORDS: usize = 4;

/// A command's words without `--ring0`.
struct Words<'a> {
    words: [&'a str; MAX_WORDS],
    len: usize,
}

impl<'a> Words<'a> {
    /// Whether `--ring0` is among `words`, and the others (extra words beyond
    /// [`MAX_WORDS`] are kept as one `"?"`, so the usage check refuses them).
    fn take_ring0(words: impl Iterator<Item = &'a str>) -> (bool, Words<'a>) {
        let mut kept = Words { words: [""; MAX_WORDS], len: 0 };
        let mut ring0 = false;
        for word in words {
            if word == "--ring0" {
                ring0 = true;
            } else if kept.len < MAX_WORDS {
                kept.words[kept.len] = word;
                kept.len += 1;
            } else {
                kept.words[MAX_WORDS - 1] = "?";
            }
        }
        (ring0, kept)
    }

    fn iter(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.words[..self.len].iter().copied()
    }
}

/// Runs `command` in the ring-3 network task (`crate::task::net_task`); its exit code,
/// or a message and 1 if it could not run.
fn in_net_task(name: &str, info: &pv_abi::BootInfo, command: NetTaskCommand, args: [u64; 2]) -> u8 {
    use crate::task::net_task::{self, NetTaskError};
    use crate::task::scheduler::TaskExit;
    match net_task::run(info, command, args) {
        Ok(TaskExit::Exited(code)) => code.min(255) as u8,
        Ok(TaskExit::Killed { .. }) => 1,
        Err(NetTaskError::NoDevice) | Err(NetTaskError::Lost) => no_device(name),
        Err(NetTaskError::DeviceInUse) => {
            println!("{name}: the kernel's own stack (--ring0) already drives the network device in this boot");
            EXIT_USAGE
        }
        Err(e) => {
            println!("{name}: the ring-3 network task could not start: {e:?}");
            1
        }
    }
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

/// Sends `count` pings one after the other, each waiting for its reply; prints each
/// reply if `verbose`. `pump` polls the stack (and whatever else must run).
pub fn ping_series<'s, F: FrameIo>(
    stack: &mut NetStack<'s, F>,
    pinger: &Pinger,
    target: [u8; 4],
    count: u32,
    verbose: bool,
    pump: impl FnMut(&mut NetStack<'s, F>),
) -> PingSeries {
    let clock = stack.clock;
    let [a, b, c, d] = target;
    pv_netstack::ping::ping_series(stack, pinger, count, pump, |seq, outcome| match outcome {
        Ok(rtt) if verbose => println!("net-ping: reply from {a}.{b}.{c}.{d}: seq={seq} time={} us", clock.micros(rtt)),
        Err(e) if verbose => println!("net-ping: no reply from {a}.{b}.{c}.{d}: seq={seq} ({e:?})"),
        _ => {}
    })
}

/// Prints a series' summary line (`ping`'s last two lines in one).
fn print_summary(what: &str, series: &PingSeries, clock: NetClock) {
    println!("{}", series.summary(what, clock));
}

/// `net-ping IP [COUNT] [--ring0]`: in the ring-3 network task, or with `--ring0` in
/// the kernel's own stack.
pub fn ping<'a>(info: &pv_abi::BootInfo, words: impl Iterator<Item = &'a str>) -> u8 {
    let (ring0, words) = Words::take_ring0(words);
    let mut words = words.iter();
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
    if !ring0 {
        let address = u64::from(u32::from_le_bytes(target));
        return in_net_task("net-ping", info, NetTaskCommand::Ping, [address, u64::from(count)]);
    }
    let Some(io) = network_device() else { return no_device("net-ping") };
    let mut memory = pair::memory();
    let mut storage = [SocketStorage::EMPTY; pair::SOCKETS];
    let Some(mut stack) = pair::device_stack(info, io, &mut storage) else { return 1 };
    let pinger = Pinger::new(&mut stack, &mut memory.ping, target.into());
    let series = ping_series(&mut stack, &pinger, target, count, true, pair::poll_and_wait);
    print_summary("net-ping", &series, stack.clock);
    u8::from(series.received == 0)
}

/// `net-serve [SECONDS] [--ring0]`: answers pings and serves HTTP for SECONDS (default
/// 30), in the ring-3 network task or, with `--ring0`, in the kernel.
pub fn serve<'a>(info: &pv_abi::BootInfo, words: impl Iterator<Item = &'a str>) -> u8 {
    let (ring0, words) = Words::take_ring0(words);
    let mut words = words.iter();
    let seconds = match words.next().map(str::parse::<u64>) {
        None => 30,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            println!("net-serve: usage: net-serve [SECONDS]");
            return EXIT_USAGE;
        }
    };
    if !ring0 {
        return in_net_task("net-serve", info, NetTaskCommand::Serve, [seconds, 0]);
    }
    let Some(io) = network_device() else { return no_device("net-serve") };
    let mut memory = pair::memory();
    let mut storage = [SocketStorage::EMPTY; pair::SOCKETS];
    let Some(mut stack) = pair::device_stack(info, io, &mut storage) else { return 1 };
    let mut server = HttpServer::new(&mut stack, &mut memory.server, crate::net::kernel_about);
    let deadline = stack.clock.ticks().saturating_add(stack.clock.ticks_in(seconds.saturating_mul(1_000_000)));
    println!("net-serve: answering ping and HTTP on port 80 for {seconds} s (the stack in the kernel, ring 0)");
    while stack.clock.ticks() < deadline {
        pair::poll_and_wait(&mut stack);
        server.step(&mut stack);
    }
    let link = stack.device.counters;
    println!("net-serve: done: {} responses, {} refused; {} frames in, {} out", server.stats.ok, server.stats.refused, link.received, link.sent);
    0
}
