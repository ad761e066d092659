//! # pv-netd: the guest's network stack as a ring-3 task
//!
//! The kernel (`pv-guest`, `task::net_task`) lends this program the network device and
//! starts it in ring 3 with the address of a [`Handoff`] page. Everything per packet
//! then happens here, in user mode: taking frames off the receive ring, smoltcp's ARP,
//! IP, ICMP and TCP (the `pv-netstack` library, the same code the kernel's own stack
//! runs), queueing replies on the transmit ring and ringing the backend's doorbell with
//! an `out` the kernel allowed. The kernel is entered only to print a line and to exit.
//!
//! Why bother: on a host that emulates guest ring 0 (PVM, this project's development
//! machine), the kernel's stack costs milliseconds per ping, and the same code in ring 3
//! costs microseconds. On a host with hardware virtualization both rings run natively,
//! and the task is still the better design (a driver that crashes takes down a task,
//! not the kernel: Xen's driver domains, a microkernel's network server).
//!
//! The task polls: it never sleeps, so a frame is seen as soon as the backend publishes
//! it, without an interrupt (whose ring-0 entry is what this host makes slow). It runs
//! for as long as its command says, one of:
//! - `serve SECONDS`: answer ping and HTTP (`GET /`, `GET /big?bytes=N`), as the
//!   kernel's `net-serve` does;
//! - `ping IP COUNT`: ping IP COUNT times and print each round trip and a summary, as
//!   `net-ping` does.
//!
//! ## Modules, lowest first
//! | module | owns |
//! | --- | --- |
//! | [`link`] | the device: the frontend over the mapped rings and buffers, as the stack's link |
//!
//! The system calls, mapped pages and doorbells are `pv-user`'s (`pv-guest/user/`),
//! shared with the ring-3 block task `pv-blkd`.
//!
//! This file holds the commands.

#![no_std]
#![no_main]

mod link;

use pv_user::handoff::net::{Handoff, NetTaskCommand, HANDOFF_MAGIC};
use pv_user::once::TakeOnce;
use pv_user::{println, sys};
use pv_netstack::http::{HttpBuffers, HttpServer};
use pv_netstack::ping::{ping_series, PingBuffers, Pinger, MAX_PING_COUNT};
use pv_netstack::stack::{NetConfig, NetStack};
use pv_netstack::time::NetClock;
use smoltcp::iface::SocketStorage;

use link::FrontLink;

pv_user::task_entry!(netd_main);

/// Sockets the stack can hold (ping and HTTP need one each).
const SOCKETS: usize = 4;

/// The task's network memory, in its `.bss`: the kernel's loader maps it zeroed.
struct Memory {
    storage: [SocketStorage<'static>; SOCKETS],
    ping: PingBuffers,
    server: HttpBuffers,
}

static MEMORY: TakeOnce<Memory> = TakeOnce::new(Memory { storage: [SocketStorage::EMPTY; SOCKETS], ping: PingBuffers::new(), server: HttpBuffers::new() });

/// The Rust entry (from `_start`).
extern "C" fn netd_main(handoff: *const Handoff) -> ! {
    // SAFETY: the kernel maps the handoff page (read-only, holding one Handoff) at the
    // address it passes, for the task's whole life; it is copied once, here.
    let h = unsafe { core::ptr::read_unaligned(handoff) };
    let code = match (h.magic == HANDOFF_MAGIC, NetTaskCommand::from_raw(h.command)) {
        (true, Some(NetTaskCommand::Serve)) => serve(&h, h.args[0]),
        (true, Some(NetTaskCommand::Ping)) => ping(&h, h.args[0].to_le_bytes()[..4].try_into().unwrap_or([0; 4]), h.args[1]),
        _ => {
            println!("pv-netd: the kernel's handoff is not one this program understands");
            2
        }
    };
    sys::exit(code)
}

/// The stack over the lent device, with the task's memory.
fn stack(h: &Handoff, storage: &'static mut [SocketStorage<'static>]) -> Option<NetStack<'static, FrontLink>> {
    let config = NetConfig { mac: h.mac, ipv4: h.ipv4, prefix_len: h.prefix_len };
    let Some(front) = link::front(h) else {
        println!("pv-netd: the rings' previous holder left them in a state that does not add up");
        return None;
    };
    let link = FrontLink { front, dropped: 0 };
    match NetStack::new(config, link, storage, NetClock::new(h.tsc_khz, pv_user::entry::rdtsc)) {
        Ok(stack) => Some(stack),
        Err(e) => {
            println!("pv-netd: the network identity is unusable: {e:?}");
            None
        }
    }
}

/// The last lines of the HTTP page.
fn about(w: &mut dyn core::fmt::Write) -> core::fmt::Result {
    writeln!(w, "stack: in a ring-3 task (pv-netd)")
}

/// `serve SECONDS`.
fn serve(h: &Handoff, seconds: u64) -> u64 {
    let Some(memory) = MEMORY.take() else { return 1 };
    let Some(mut stack) = stack(h, &mut memory.storage) else { return 1 };
    let mut server = HttpServer::new(&mut stack, &mut memory.server, about);
    let deadline = stack.clock.ticks().saturating_add(stack.clock.ticks_in(seconds.saturating_mul(1_000_000)));
    println!("net-serve: answering ping and HTTP on port 80 for {seconds} s (the stack in a ring-3 task, pv-netd)");
    while stack.clock.ticks() < deadline {
        stack.poll();
        server.step(&mut stack);
        core::hint::spin_loop();
    }
    let link = stack.device.counters;
    println!(
        "net-serve: done: {} responses, {} refused; {} frames in, {} out, {} dropped for want of a transmit buffer",
        server.stats.ok, server.stats.refused, link.received, link.sent, stack.device.io.dropped
    );
    hand_back(&mut stack)
}

/// Leaves the rings for the next holder; the exit code (1 if they could not be handed
/// back: the device then stays with this task for the rest of the boot).
fn hand_back(stack: &mut NetStack<'static, FrontLink>) -> u64 {
    let clock = stack.clock;
    if link::hand_back(&mut stack.device.io.front, &clock) {
        0
    } else {
        println!("pv-netd: transmissions still unanswered at exit: the network device cannot be handed back");
        1
    }
}

/// `ping IP COUNT`.
fn ping(h: &Handoff, target: [u8; 4], count: u64) -> u64 {
    let Some(memory) = MEMORY.take() else { return 1 };
    let Some(mut stack) = stack(h, &mut memory.storage) else { return 1 };
    let pinger = Pinger::new(&mut stack, &mut memory.ping, target.into());
    let clock = stack.clock;
    let [a, b, c, d] = target;
    let count = count.clamp(1, MAX_PING_COUNT as u64) as u32;
    let series = ping_series(&mut stack, &pinger, count, |s| {
        s.poll();
    }, |seq, outcome| match outcome {
        Ok(rtt) => println!("net-ping: reply from {a}.{b}.{c}.{d}: seq={seq} time={} us", clock.micros(rtt)),
        Err(e) => println!("net-ping: no reply from {a}.{b}.{c}.{d}: seq={seq} ({e:?})"),
    });
    println!("{}", series.summary("net-ping", clock));
    let handed_back = hand_back(&mut stack);
    u64::from(series.received == 0).max(handed_back)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("pv-netd: panic: {info}");
    sys::exit(101)
}
