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
//! rather than assumed. The answer: **in a ring-3 task**, `pv-netd`, to which the kernel
//! lends the device (`crate::task::net_task`); `net-serve` and `net-ping` run there
//! unless given `--ring0`, which keeps the kernel's own stack for comparison. The
//! figures below were measured first, with the stack in the kernel, on this project's
//! development host (PVM: ring 0 emulated, ring 3 native), while about ten other builds
//! shared its two cores (load average 9–10, so ring 0 ran at about 1.3–2.5 µs per
//! instruction instead of the quiet host's 250 ns: a null hypercall took 71 µs, against
//! 21 µs in `docs/bench.md`). Rerun them with `hv run -- net-bench loopback 200` and
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
//! **What the ring-3 stack costs per ping**, measured once it was built (quiet host,
//! load 2–3): host → guest `ping` p50 **0.125 ms** against 2.6 ms with `--ring0`; guest →
//! guest 0.147 ms against 15–35 ms; `curl` of 8 MiB at 60 MB/s against 0.2 MB/s.
//! smoltcp's work is now native; what remains is the doorbell (an `out` from ring 3,
//! 34–108 µs above), netback's copies, the switch and the TAP. The task sees arriving
//! frames by polling its receive ring (no interrupt, so no emulated ring-0 entry), which
//! keeps its vCPU busy while a command runs.
//!
//! **What the ring-3 stack needed**, besides the doorbell shown to work here: (1) a
//! ring-3 program that can hold Rust code: `pv-netd` is a separately linked program
//! (`pv-guest/netd/`), embedded in the kernel and loaded by `crate::task::user_image`;
//! (2) the stack as a library both can link (`pv-guest/netstack/`, re-exported here);
//! (3) the network rings and buffer frames mapped into the task, the buffers granted
//! once by the kernel (the task never writes the grant table). `docs/network.md`
//! follows one ping through it.

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
