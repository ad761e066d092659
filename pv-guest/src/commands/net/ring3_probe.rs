//! `net-ring3-probe [N]`: can a ring-3 task ring a device's doorbell, and what does
//! one cost from ring 3 and from ring 0?
//!
//! A network stack in a ring-3 task (issue 12, item 4) must notify the backend when it
//! queues frames: a doorbell is one `out` to the device's port. In ring 3 that is
//! allowed only if RFLAGS.IOPL is 3 or the TSS's I/O bitmap opens the port; otherwise
//! the CPU raises #GP. This experiment runs a tiny task writing the console's doorbell
//! N times (a spurious doorbell is harmless: the backend wakes and finds no request):
//! once without permission (it must be killed with #GP, vector 13), once with IOPL 3,
//! and once with only that port opened in the TSS's I/O permission bitmap; each
//! permitted run prints whether it got through and what a doorbell cost. Then the
//! kernel times N doorbells from ring 0. Exit code 1 only if the unpermitted run was
//! not stopped (what the host permits is a finding, not a failure). hv's platform notes say `SYSCALL` and `int n` from ring 3 misbehave
//! under PVM: this checks whether port I/O from ring 3 does.

use crate::arch::{cpu, gdt};
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

/// How the task is given the port.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Permission {
    /// Not at all: IOPL 0 and the port's bit set in the TSS bitmap.
    None,
    /// RFLAGS.IOPL = 3: every port.
    Iopl3,
    /// The port's bit cleared in the TSS's I/O permission bitmap: that port only.
    TssBitmap,
}

/// Runs the doorbell task once; returns how it ended and its reports.
fn run_task(port: u16, doorbells: u64, permission: Permission) -> (Option<TaskExit>, [(u64, u64); 2], usize) {
    reports::take();
    let Ok(slot) = scheduler::spawn(&DOORBELL_LOOP, [u64::from(port), doorbells]) else { return (None, [(0, 0); 2], 0) };
    if permission == Permission::Iopl3 && scheduler::allow_port_io(slot).is_err() {
        return (None, [(0, 0); 2], 0);
    }
    let bitmap = permission == Permission::TssBitmap && gdt::allow_user_port(port, true);
    let exit = scheduler::run_all()[slot];
    if bitmap {
        gdt::allow_user_port(port, false);
    }
    let (reported, n) = reports::take();
    (exit, [reported[0], reported[1]], n)
}

/// Prints how a permitted run went; returns whether the doorbells went through.
fn report_permitted(what: &str, run: (Option<TaskExit>, [(u64, u64); 2], usize), doorbells: u64, clock: NetClock) -> bool {
    let (exit, reported, n) = run;
    let iopl_seen = if n > 0 { iopl(reported[0].0) } else { 0 };
    if exit == Some(TaskExit::Exited(0)) && n == 2 && reported[1].1 == doorbells {
        let ns = clock.micros(reported[1].0.saturating_mul(1000)) / doorbells;
        println!("net-ring3-probe: ring 3 with {what} (the task saw IOPL {iopl_seen}): {doorbells} doorbells, {ns} ns each: port I/O from ring 3 works here");
        true
    } else {
        println!("net-ring3-probe: ring 3 with {what} (the task saw IOPL {iopl_seen}): {exit:?}: port I/O from ring 3 does NOT work here");
        false
    }
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
    let clock = crate::net::kernel_clock(info);
    let (denied, reported, n) = run_task(port, doorbells, Permission::None);
    let denied_ok = matches!(denied, Some(TaskExit::Killed { vector: GENERAL_PROTECTION, .. }));
    println!(
        "net-ring3-probe: ring 3 without I/O permission (the task saw IOPL {}): {denied:?} ({})",
        if n > 0 { iopl(reported[0].0) } else { 0 },
        if denied_ok { "#GP, as the architecture says" } else { "NOT the #GP expected" }
    );
    let iopl_works = report_permitted("IOPL 3 set by the kernel", run_task(port, doorbells, Permission::Iopl3), doorbells, clock);
    let bitmap_works = report_permitted("its port open in the TSS I/O bitmap", run_task(port, doorbells, Permission::TssBitmap), doorbells, clock);
    println!(
        "net-ring3-probe: verdict: a ring-3 task {} ring a doorbell itself on this host",
        if iopl_works || bitmap_works { "can" } else { "cannot" }
    );

    let start = clock.ticks();
    for _ in 0..doorbells {
        cpu::outb(port, 0);
    }
    let ns = clock.micros((clock.ticks() - start).saturating_mul(1000)) / doorbells;
    println!("net-ring3-probe: ring 0: {doorbells} doorbells, {ns} ns each");
    // Only the architecture's own rule is a failure; what this host permits is a finding.
    u8::from(!denied_ok)
}
