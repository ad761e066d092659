//! What the words after `hv run --` ask the guest to do.
//!
//! The VMM copies them into the boot-info page's command line, separated by zero bytes.
//! With no words the kernel greets and shuts down; the other commands exist to show,
//! and to test, what the hypervisor does in each situation.

use crate::mm;
use crate::println;
use pv_abi::BootInfo;

/// Exit code for a command line the guest does not understand (like a shell's usage error).
const EXIT_USAGE: u8 = 2;

/// Runs the commands in the boot-info page, one after the other (separated by a `;`
/// word), stopping at the first that fails; returns the exit code for `shutdown`.
pub fn run(info: &BootInfo) -> u8 {
    let mut words = info
        .cmdline_bytes()
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| core::str::from_utf8(w).unwrap_or("<not UTF-8>"))
        .peekable();
    loop {
        let command = core::iter::from_fn(|| words.next_if(|w| *w != ";"));
        // Between commands the kernel holds nothing: a safe point to serve the balloon.
        mm::balloon::service();
        let code = run_one(info, command);
        if code != 0 || words.next().is_none() {
            return code;
        }
    }
}

/// Runs one command (its words); returns its exit code.
fn run_one<'a>(info: &BootInfo, mut words: impl Iterator<Item = &'a str>) -> u8 {
    match words.next() {
        None => greet(info),
        Some("selftest") => selftest::run(info),
        Some("echo") => echo(words),
        Some("panic") => panic!("the `panic` command asked for a guest panic"),
        Some("fault") => fault(words.next()),
        Some("triple-fault") => triple_fault(),
        Some("bad-hypercalls") => selftest::hostile_hypercalls::run_command(info),
        Some("hypercall-bench") => hypercall_bench(info, words.next()),
        Some("blk-read-sum") => blk::read_sum(words),
        Some("blk-fill") => blk::fill(words),
        Some("blk-bench") => blk::bench(info, words),
        Some("blk-user-read-sum") => blk_user::read_sum(words),
        Some("blk-user-hostile") => blk_user::hostile(),
        Some("hostile-ptes") => hostile_ptes::run(info),
        Some("overflow-shadow") => overflow_shadow::run(info, words),
        Some("shadow-storm") => shadow_storm::run(info, words),
        Some("task-demo") => task_demo(),
        Some("count") => count::count(info, words),
        Some("count-user") => count::count_user(words),
        Some("sensitive") => sensitive::run(words),
        Some("lines") => lines::run(info, words),
        Some("bench") => bench::run(info, words),
        Some("dirty-loop") => migration::dirty_loop(info, words),
        Some("checksum-loop") => migration::checksum_loop(info, words),
        Some("net-ping") => net::ping(info, words),
        Some("net-serve") => net::serve(info, words),
        Some("net-bench") => net::bench(info, words),
        Some("net-selftest") => net::selftest(info),
        Some("net-ring3-probe") => net::ring3_probe(info, words),
        Some("balloon-status") => balloon::status(),
        Some("balloon-wait") => balloon::wait(info, words),
        Some("touch-mem") => balloon::touch_mem(words),
        Some("balloon-hostile") => balloon::hostile(info),
        Some(other) => {
            println!("pv-guest: unknown command '{other}'");
            usage()
        }
    }
}

// The command families that need more than a function each, one module per family:
// `selftest` and `bad-hypercalls` (selftest), `blk-read-sum`, `blk-fill`, `blk-bench`
// (blk), `blk-user-read-sum` and `blk-user-hostile` (blk_user: a ring-3 task reading
// into its own frames), `hostile-ptes` (hostile_ptes), `overflow-shadow` (overflow_shadow),
// `shadow-storm` (shadow_storm), `bench`, the guest half of `hv bench`, `dirty-loop` and
// `checksum-loop`, workloads to migrate (migration), `net-ping`, `net-serve`, `net-bench`,
// `net-selftest` (net), and `balloon-status`, `balloon-wait`, `touch-mem` (balloon).
// The one-function commands are below. (This file keeps its name and the order of its
// first lines: hv's tests read the location of the `panic` command's panic.)
pub mod balloon;
pub mod bench;
pub mod blk;
pub mod blk_user;
pub mod count;
pub mod hostile_ptes;
pub mod lines;
pub mod migration;
pub mod net;
pub mod overflow_shadow;
pub mod shadow_storm;
pub mod selftest;
pub mod sensitive;

use crate::arch::{cpu, idt};
use crate::hv::{clock, hypercall};
use crate::task::programs::HELLO;
use crate::task::scheduler::{self, TaskExit};
use pv_abi::addr::GuestVirt;

fn greet(info: &BootInfo) -> u8 {
    let mode = pv_abi::MmuMode::from_u32(info.mmu_mode).map_or("unknown", |m| m.name());
    println!("pv-guest: hello! I am a paravirtual Rust kernel, running on the hv hypervisor.");
    println!(
        "pv-guest: memory mode {mode}, {} MiB of RAM; kernel at {:#x}..{:#x}, {} KiB free above it.",
        info.mem_bytes >> 20,
        info.kernel_start,
        info.kernel_end,
        (info.free_mem_end - info.free_mem_start) >> 10,
    );
    println!("pv-guest: nothing else to do, shutting down. (Try `hv run -- selftest`.)");
    0
}

fn usage() -> u8 {
    println!("pv-guest: commands: (none) | selftest | echo WORDS... | panic | fault ud|gp|pf|de |");
    println!("pv-guest:           triple-fault | bad-hypercalls | hypercall-bench [N] |");
    println!("pv-guest:           blk-read-sum LBA COUNT | blk-fill LBA COUNT BYTE | blk-bench SECTORS COUNT [always] |");
    println!("pv-guest:           blk-user-read-sum LBA COUNT | blk-user-hostile |");
    println!("pv-guest:           count N [MS] | count-user N [SPIN] | hostile-ptes | overflow-shadow [N] |");
    println!("pv-guest:           dirty-loop MIB PAGES_PER_S [SECONDS] | checksum-loop MIB STEPS [MS_PER_STEP] |");
    println!("pv-guest:           net-ping IP [COUNT] | net-serve [SECONDS] | net-bench loopback|IP [COUNT] | net-selftest |");
    println!("pv-guest:           net-ring3-probe [N]");
    EXIT_USAGE
}

fn echo<'a>(words: impl Iterator<Item = &'a str>) -> u8 {
    crate::print!("pv-guest: echo:");
    for w in words {
        crate::print!(" [{w}]");
    }
    println!();
    0
}

/// An address no page table maps: the lower half is empty until user tasks exist.
const UNMAPPED_ADDRESS: GuestVirt = GuestVirt::new(0x1000);
/// An address that is not canonical (bits 63..47 not all equal): any access is #GP.
const NON_CANONICAL_ADDRESS: GuestVirt = GuestVirt::new(0x8000_0000_0000_0000);

fn fault(kind: Option<&str>) -> u8 {
    match kind {
        Some("ud") => cpu::invalid_opcode(),
        Some("de") => cpu::divide_by_zero(),
        Some("pf") => {
            // SAFETY: nothing is mapped there, so the load faults and the guest stops.
            unsafe { cpu::touch(UNMAPPED_ADDRESS) };
        }
        Some("gp") => {
            // SAFETY: a non-canonical address: the load raises #GP and the guest stops.
            unsafe { cpu::touch(NON_CANONICAL_ADDRESS) };
        }
        _ => {
            println!("pv-guest: fault needs one of: ud gp pf de");
            return EXIT_USAGE;
        }
    }
    println!("pv-guest: the fault did not happen");
    1
}

fn triple_fault() -> u8 {
    println!("pv-guest: loading an empty IDT and trapping: the CPU will triple-fault");
    idt::load_empty_idt();
    cpu::invalid_opcode();
    println!("pv-guest: still alive after a triple fault?");
    1
}

/// Default number of round trips for `hypercall-bench`.
const BENCH_DEFAULT_CALLS: u64 = 10_000;

fn hypercall_bench(info: &BootInfo, count: Option<&str>) -> u8 {
    let calls = match count.map(str::parse::<u64>) {
        None => BENCH_DEFAULT_CALLS,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            println!("pv-guest: hypercall-bench takes a positive number of calls");
            return EXIT_USAGE;
        }
    };
    let start = clock::read();
    for _ in 0..calls {
        let _ = hypercall::nop();
    }
    let cycles = (clock::read() - start) / calls;
    // cycles / (kHz * 1000) seconds = cycles * 1e6 / kHz nanoseconds.
    match cycles.saturating_mul(1_000_000).checked_div(info.tsc_khz) {
        Some(ns) => println!("hypercall-bench: {calls} nop hypercalls, {ns} ns each ({cycles} TSC cycles)"),
        None => println!("hypercall-bench: {calls} nop hypercalls, {cycles} TSC cycles each"),
    }
    0
}

/// `task-demo`: one small ring-3 task, start to finish: its address space is built
/// (page-table writes), loaded (a CR3 load), it prints a line (a system call) and exits,
/// and its address space is torn down. Small and fixed, so its trace is a snapshot test
/// in each memory mode.
fn task_demo() -> u8 {
    if scheduler::spawn(&HELLO, [0, 0]).is_err() {
        println!("task-demo: could not create the task");
        return 1;
    }
    let result = scheduler::run_all()[0];
    println!("task-demo: the task ended: {result:?}");
    u8::from(result != Some(TaskExit::Exited(0)))
}
