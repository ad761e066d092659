//! `net-ring3-probe [N]`: can a ring-3 task ring a device's doorbell, and what does
//! one cost from ring 3 and from ring 0?
//!
//! A network stack in a ring-3 task (issue 12, item 4) must notify the backend when it
//! queues frames: a doorbell is one `out` to the device's port. In ring 3 that is
//! allowed only if RFLAGS.IOPL is 3 or the TSS's I/O bitmap opens the port; otherwise
//! the CPU raises #GP. This experiment runs a tiny task writing the console's doorbell
//! N times (a spurious doorbell is harmless: the backend wakes and finds no request):
//! once without permission (it must be killed with #GP, vector 13) and once with
//! IOPL 3 (it must finish and report its cycles). Then the kernel times N doorbells
//! from ring 0. hv's platform notes say `SYSCALL` and `int n` from ring 3 misbehave
//! under PVM: this checks whether port I/O from ring 3 does.

use crate::arch::cpu;
use crate::net::time::NetClock;
use crate::println;
use crate::task::programs::UserProgram;
use crate::task::reports;
use crate::task::scheduler::{self, TaskExit};

/// Doorbells each part rings without an N.
const DEFAULT_DOORBELLS: u64 = 1000;
/// The most N may be.
const MAX_DOORBELLS: u64 = 1_000_000;
/// #GP's vector.
const GENERAL_PROTECTION: u64 = 13;

extern "C" {
    fn user_doorbell_loop();
    fn user_doorbell_loop_end();
}

/// `doorbell_loop(port, n)`: reports (its RFLAGS, 0) with `bench_report`, then `out`s
/// to `port` n times (n ≥ 1), timed with `rdtsc`; reports (cycles, n) and exits 0.
// SAFETY: `user_doorbell_loop` and `user_doorbell_loop_end` are the labels around this
// program in the assembly below.
const DOORBELL_LOOP: UserProgram = unsafe { UserProgram::new("doorbell-loop", user_doorbell_loop, user_doorbell_loop_end) };

core::arch::global_asm!(
    ".section .text.user_programs, \"ax\"",
    ".global user_doorbell_loop",
    "user_doorbell_loop:",
    "    mov r12, rdi",
    "    mov r13, rsi",
    "    mov r15, rsi",
    // First report: the RFLAGS the task runs with (is IOPL what the kernel set?).
    "    pushfq",
    "    pop rdi",
    "    xor esi, esi",
    "    mov eax, 5",
    "    int 0x80",
    "    rdtsc",
    "    shl rdx, 32",
    "    or rax, rdx",
    "    mov r14, rax",
    "    mov edx, r12d",
    "2:  out dx, al",
    "    dec r13",
    "    jnz 2b",
    "    rdtsc",
    "    shl rdx, 32",
    "    or rax, rdx",
    "    sub rax, r14",
    "    mov rdi, rax",
    "    mov rsi, r15",
    "    mov eax, 5",
    "    int 0x80",
    "    xor edi, edi",
    "    xor eax, eax",
    "    int 0x80",
    "    ud2",
    ".global user_doorbell_loop_end",
    "user_doorbell_loop_end:",
    ".text",
);

/// RFLAGS' IOPL field.
fn iopl(rflags: u64) -> u64 {
    (rflags >> 12) & 3
}

/// Runs the doorbell task once; returns how it ended.
fn run_task(port: u16, doorbells: u64, with_iopl: bool) -> Option<TaskExit> {
    let slot = scheduler::spawn(&DOORBELL_LOOP, [u64::from(port), doorbells]).ok()?;
    if with_iopl {
        scheduler::allow_port_io(slot).ok()?;
    }
    scheduler::run_all()[slot]
}

/// `net-ring3-probe [N]`.
pub fn ring3_probe<'a>(info: &pv_abi::BootInfo, mut words: impl Iterator<Item = &'a str>) -> u8 {
    let doorbells = match words.next().map(str::parse::<u64>) {
        None => DEFAULT_DOORBELLS,
        Some(Ok(n)) if (1..=MAX_DOORBELLS).contains(&n) => n,
        Some(_) => {
            println!("net-ring3-probe: N is 1..={MAX_DOORBELLS}");
            return super::EXIT_USAGE;
        }
    };
    if info.console.present == 0 {
        println!("net-ring3-probe: no console device: no doorbell to ring");
        return 1;
    }
    let port = info.console.doorbell_port;
    let clock = NetClock::new(info.tsc_khz);
    reports::take();

    let denied = run_task(port, doorbells, false);
    let (reported, _) = reports::take();
    let denied_ok = matches!(denied, Some(TaskExit::Killed { vector: GENERAL_PROTECTION, .. }));
    println!(
        "net-ring3-probe: ring 3 without I/O permission (the task saw IOPL {}): {denied:?} ({})",
        iopl(reported[0].0),
        if denied_ok { "#GP, as the architecture says" } else { "NOT the #GP expected" }
    );

    let allowed = run_task(port, doorbells, true);
    let (reported, n) = reports::take();
    println!("net-ring3-probe: ring 3 with IOPL 3 set by the kernel: the task saw IOPL {}", iopl(reported[0].0));
    let allowed_ok = allowed == Some(TaskExit::Exited(0)) && n == 2 && reported[1].1 == doorbells;
    if allowed_ok {
        let ns = clock.micros(reported[1].0.saturating_mul(1000)) / doorbells;
        println!("net-ring3-probe: ring 3 with IOPL 3: {doorbells} doorbells, {ns} ns each: port I/O from ring 3 works here");
    } else {
        println!("net-ring3-probe: ring 3 with IOPL 3: {allowed:?}: port I/O from ring 3 does NOT work here");
    }

    let start = clock.ticks();
    for _ in 0..doorbells {
        cpu::outb(port, 0);
    }
    let ns = clock.micros((clock.ticks() - start).saturating_mul(1000)) / doorbells;
    println!("net-ring3-probe: ring 0: {doorbells} doorbells, {ns} ns each");
    u8::from(!(denied_ok && allowed_ok))
}
