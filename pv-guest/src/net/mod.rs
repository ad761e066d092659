//! The guest's network stack: smoltcp (ARP, IPv4, ICMP echo, TCP) over any device that
//! can send and receive Ethernet frames, and the two services built on it, a ping
//! client and a tiny HTTP server.
//!
//! The stack itself is the library `pv-netstack` (`pv-guest/netstack/`), shared with
//! the ring-3 network task `pv-netd` (`pv-guest/netd/`): this module re-exports its
//! modules under their old names (`net::device`, `net::stack`, ...) and adds what only
//! the kernel has:
//! - `front`: the network frontend made at boot (buffer frames, its grants, the rings hv
//!   announced), which `commands::net` then drives through `FrameIo`, or lends to the
//!   network task (`task::net_task`);
//! - [`kernel_about`]: the kernel's counters on the HTTP server's page.
//!
//! ## Where the stack runs, and why (issue 12, item 4)
//! The kernel's rule is to do in ring 0 only what ring 3 cannot, because ring 0 may be
//! emulated. A network stack is a lot of code per packet, so where it runs was measured
//! rather than assumed. The answer for now: **in the kernel**, with a ring-3 stack as
//! the measured follow-up. The figures below are from this project's development host
//! (PVM: ring 0 emulated, ring 3 native), taken while about ten other builds shared its
//! two cores (load average 9–10, so ring 0 ran at about 1.3–2.5 µs per instruction
//! instead of the quiet host's 250 ns: a null hypercall took 71 µs, against 21 µs in
//! `docs/bench.md`). Rerun them with `hv run -- net-bench loopback 200` and
//! `hv run -- net-ring3-probe 2000`.
//!
//! | what (ring 0 unless said) | measured under load | what follows |
//! | --- | --- | --- |
//! | one instruction (a timed `dec`/`jnz` loop) | 1.3–2.5 µs | a quiet host runs ring 0 5–10× faster (250 ns): scale the ring-0 times below by that |
//! | one idle `poll` of an interface | 0.44–0.75 ms (330 `dec`/`jnz` loops' worth) | poll only when an upcall says a frame came, never in a loop |
//! | the peer's stack per ping answered (echo request in, reply out, with ARP cached) | 3.1–4.8 ms (1,500–3,200 `dec`/`jnz` loops' worth) | at best about 0.4–0.8 ms on a quiet host: most of the 1 ms budget of issue 12 before any ring, switch or host work |
//! | loopback ping round trip (both stacks' work) | min 5.0 ms, p50 9.6–13 ms, p99 21–23 ms | |
//! | frames over the loopback wire | 140–177 frames/s | |
//! | TCP: `GET /big` of 256 KiB over the loopback wire | 41–49 KiB/s | software checksums and copies, instruction by instruction |
//! | a doorbell (`out`) from ring 0 | 9–26 µs | |
//! | a doorbell from ring 3 with RFLAGS.IOPL = 3 | refused (#GP): PVM does not pass IOPL to guest ring 3 (the task reads IOPL 0) | IOPL is not a way on this host |
//! | a doorbell from ring 3 with its port open in the TSS I/O permission bitmap | works: 34–108 µs (2–6× ring 0's: PVM checks the bitmap on a slow path) | a ring-3 driver can notify its backend without a system call |
//! | the same `device`, `loopback`, `stack` and `ping` code built for the host and run natively (what ring 3 runs at) | peer's stack per ping answered 0.15–0.42 µs, idle poll 15 ns, loopback round trip 0.9–2.5 µs | ring 0 here is 10,000–30,000× slower on this code: its loads and stores cost far more to emulate than the calibration loop's register instructions |
//!
//! The native figures come from a throwaway host build: a `main` that includes those
//! four files with `#[path]`, with `hv::clock::read` as a bare `rdtsc`, and times 20,000
//! pings between two interfaces on the loopback wire.
//!
//! **What a ring-3 stack would cost per ping.** smoltcp's work runs natively (well under
//! a microsecond per ping, measured above); the task sees arriving frames by
//! polling its receive ring, mapped into it, with upcalls suppressed through the event
//! index while it polls (no interrupt, so no emulated ring-0 entry); it queues the reply
//! on the transmit ring and rings the doorbell itself through the TSS bitmap (34–108 µs
//! measured). That is roughly 0.04–0.11 ms per ping against 3–5 ms here in ring 0, 30×
//! less or better, and under the 1 ms goal even on a loaded host. Only going idle would enter the
//! kernel (a blocking system call through the `#UD` path, about 0.4 ms like the
//! `ctxswitch` yield in `docs/bench.md`).
//!
//! **Why it is not in ring 3 yet.** It needs, besides the doorbell shown to work here:
//! (1) a ring-3 program that can hold Rust code: today a task is one page of
//! position-independent assembly copied from the kernel, so smoltcp would need a
//! separately linked user image and a loader for it; (2) the network rings and the
//! buffer frames mapped into the task (the task's address space can map them; their
//! grants can be made once at start, since the buffers never change); (3) a blocking
//! "wait for the upcall" system call. (1) is a new build artifact and loader, more than
//! this change could do safely, so the stack runs in the kernel now, behind
//! [`device::FrameIo`], which is all a ring-3 build of it would need to change.
//! Until then the kernel keeps its ring-0 work per frame small: on a device the
//! commands poll once per wake-up and wait for the device in between
//! ([`device::FrameIo::wait`]) instead of spinning on idle polls, each poll takes at
//! most [`stack::MAX_FRAMES_PER_POLL`] frames, and a netif checksum-offload flag (the
//! host computing and checking checksums, as Xen's netif does) would remove the
//! per-byte checksum work that the TCP figure pays for.

pub use pv_netstack::{device, http, http_get, loopback, ping, stack, time};
pub mod front;

use crate::counters;

/// The kernel's lines on the `GET /` page of a server running in the kernel
/// (`http::AboutPage`).
pub fn kernel_about(w: &mut dyn core::fmt::Write) -> core::fmt::Result {
    writeln!(w, "stack: in the guest kernel (ring 0)")?;
    writeln!(w, "upcalls {}", counters::read(&counters::UPCALLS))?;
    writeln!(w, "page_faults {}", counters::read(&counters::PAGE_FAULTS))?;
    writeln!(w, "syscalls {}", counters::read(&counters::SYSCALLS))?;
    writeln!(w, "cr3_loads {}", counters::read(&counters::CR3_LOADS))
}

/// The kernel's clock for the stack: the TSC rate from the boot-info page, read
/// through `hv::clock` (so a recorded run replays it).
pub fn kernel_clock(info: &pv_abi::BootInfo) -> time::NetClock {
    time::NetClock::new(info.tsc_khz, crate::hv::clock::read)
}
