//! The guest half of `hv bench`: `bench WORKLOAD REPS OPS [ARG]`.
//!
//! hv boots a fresh VM per workload and memory mode and passes this command. The kernel
//! runs the workload REPS times with OPS operations each and prints one line per
//! repetition, then a closing line:
//!
//! ```text
//! bench-rep: rep=0 ops=256 cycles=1234567 check=0x1f00
//! bench-done: workload=pt-update-direct reps=5 ops=256 tsc_khz=2100000
//! ```
//!
//! `cycles` is guest TSC cycles for the repetition's OPS operations; `check` is the
//! workload's checksum, which hv compares with the value it predicts (so a fast wrong
//! answer fails). On failure the last line is `bench-error: MESSAGE`.
//!
//! Most workloads are ring-3 tasks (`programs.rs`) that time their own loop and hand
//! the kernel (cycles, checksum) with the `bench_report` system call. Three are timed
//! by the kernel, because what they measure is kernel work: `aspace` (creating and
//! destroying address spaces is the kernel's job), `hypercall` (a ring-3 task cannot
//! make one) and `ring0-loop` (two ring-0 instructions, the unit the kernel's work is
//! paid in where ring 0 is emulated). `blk` is a ring-3 task: it reads the disk into
//! its own frames through `task::blk_io` and times its own loop (see
//! `commands/blk_user.rs`).
//!
//! With OPS = 0 every workload does its fixed work (boot, tasks spawned, memory mapped
//! and unmapped, working set filled) without the measured operations. hv runs that too
//! and subtracts its counters, so "exits per operation" excludes boot and setup.

mod programs;

use pv_abi::BootInfo;

use super::blk_user;
use crate::hv::{clock, hypercall};
use crate::println;
use crate::task::programs::UserProgram;
use crate::task::reports;
use crate::task::scheduler::{self, TaskExit};
use programs::{ASPACE_CHILD, PAGEFAULT, PING_PONG, PT_UPDATE, PT_UPDATE_PAGES_PER_ROUND, TLB_MISS};

/// Exit code for a command line the kernel does not understand.
const EXIT_USAGE: u8 = 2;
/// Most repetitions one run may ask for.
const MAX_REPS: u64 = 32;
/// Where `pt-update` maps its pages.
const PT_UPDATE_BASE: u64 = 0x1000_0000;
/// Where `pagefault` maps its region.
const PAGEFAULT_BASE: u64 = 0x2000_0000;
/// Where an `aspace` child maps its pages, and how many it populates.
const ASPACE_BASE: u64 = 0x3000_0000;
const ASPACE_PAGES: u64 = 8;
/// The seeds of the two `ctxswitch` tasks.
const PING_PONG_SEEDS: [u64; 2] = [1, 2];
/// Sectors `blk` hashes after its timed reads, to check the data path.
const BLK_VERIFY_SECTORS: u64 = 64;

/// A workload failure, printed as `bench-error:`.
type BenchResult = Result<(), &'static str>;

fn emit(rep: u64, ops: u64, cycles: u64, check: u64) {
    println!("bench-rep: rep={rep} ops={ops} cycles={cycles} check={check:#x}");
}

fn parse(word: Option<&str>) -> Option<u64> {
    word?.parse().ok()
}

/// `bench WORKLOAD REPS OPS [ARG]`; returns the exit code for `shutdown`.
pub fn run<'a>(info: &BootInfo, mut words: impl Iterator<Item = &'a str>) -> u8 {
    let name = words.next().unwrap_or("");
    let reps_word = words.next();
    let ops_word = words.next();
    let extra = words.next();
    let (Some(reps), Some(ops)) = (parse(reps_word), parse(ops_word)) else {
        println!("bench-error: usage: bench WORKLOAD REPS OPS [ARG]");
        return EXIT_USAGE;
    };
    if reps == 0 || reps > MAX_REPS {
        println!("bench-error: REPS must be 1..={MAX_REPS}");
        return EXIT_USAGE;
    }
    reports::take();
    let result = match name {
        "pt-update-direct" => pt_update(false, reps, ops),
        "pt-update-batched" => pt_update(true, reps, ops),
        "pagefault" => pagefault(reps, ops),
        "ctxswitch" => ctxswitch(reps, ops),
        "aspace" => aspace(reps, ops),
        "tlb-miss-4k" => tlb_miss(false, reps, ops, parse(extra)),
        "tlb-miss-2m" => tlb_miss(true, reps, ops, parse(extra)),
        "hypercall" => hypercalls(reps, ops),
        "ring0-loop" => ring0_loop(reps, ops),
        "blk" => blk(info, reps, ops, parse(extra)),
        "blk-direct" => blk_direct(info, reps, ops, parse(extra)),
        _ => Err("unknown workload"),
    };
    match result {
        Ok(()) => {
            println!("bench-done: workload={name} reps={reps} ops={ops} tsc_khz={}", info.tsc_khz);
            0
        }
        Err(why) => {
            println!("bench-error: {name}: {why}");
            1
        }
    }
}

/// Spawns the tasks, runs them to the end, and checks that each exited with 0.
fn run_tasks(tasks: &[(&UserProgram, [u64; 2])]) -> BenchResult {
    for (program, args) in tasks {
        scheduler::spawn(program, *args).map_err(|_| "could not spawn a task")?;
    }
    let results = scheduler::run_all();
    let exited_cleanly = results.iter().flatten().all(|r| *r == TaskExit::Exited(0));
    if results.iter().flatten().count() != tasks.len() || !exited_cleanly {
        return Err("a task failed (its system call was refused, or it was killed)");
    }
    Ok(())
}

/// Runs one task that makes exactly one report, and prints it as repetition `rep`.
fn one_report(rep: u64, ops: u64, tasks: &[(&UserProgram, [u64; 2])]) -> BenchResult {
    run_tasks(tasks)?;
    let (reports, n) = reports::take();
    if n != tasks.len() {
        return Err("a task did not report its measurement");
    }
    // With several tasks (ctxswitch) the longest window covers all of the operations.
    let cycles = reports[..n].iter().map(|r| r.0).max().unwrap_or(0);
    let check = reports[..n].iter().fold(0u64, |sum, r| sum.wrapping_add(r.1));
    emit(rep, ops, cycles, check);
    Ok(())
}

fn pt_update(batched: bool, reps: u64, ops: u64) -> BenchResult {
    if !ops.is_multiple_of(PT_UPDATE_PAGES_PER_ROUND) {
        return Err("OPS must be a multiple of 16 (pages per round)");
    }
    scheduler::use_batched_updates(batched);
    let result = (0..reps).try_for_each(|rep| one_report(rep, ops, &[(&PT_UPDATE, [PT_UPDATE_BASE, ops / PT_UPDATE_PAGES_PER_ROUND])]));
    scheduler::use_batched_updates(false);
    result
}

fn pagefault(reps: u64, ops: u64) -> BenchResult {
    (0..reps).try_for_each(|rep| one_report(rep, ops, &[(&PAGEFAULT, [PAGEFAULT_BASE, ops])]))
}

fn ctxswitch(reps: u64, ops: u64) -> BenchResult {
    if !ops.is_multiple_of(2) {
        return Err("OPS (switches) must be even: each of the two tasks yields OPS/2 times");
    }
    let [a, b] = PING_PONG_SEEDS;
    (0..reps).try_for_each(|rep| one_report(rep, ops, &[(&PING_PONG, [ops / 2, a]), (&PING_PONG, [ops / 2, b])]))
}

fn tlb_miss(large: bool, reps: u64, steps: u64, working_set_mib: Option<u64>) -> BenchResult {
    const STEP_BITS: u32 = 40;
    let mib = working_set_mib.ok_or("tlb-miss needs ARG: the working set in MiB (a power of two)")?;
    if !mib.is_power_of_two() || (large && mib < 2) || mib > 1 << 20 || steps >= 1 << STEP_BITS {
        return Err("the working set must be a power-of-two MiB (at least 2 with 2 MiB pages), steps < 2^40");
    }
    run_tasks(&[(&TLB_MISS, [(mib << 20) | u64::from(large), steps | reps << STEP_BITS])])?;
    let (reports, n) = reports::take();
    if n as u64 != reps {
        return Err("the task did not report every repetition");
    }
    for (rep, (cycles, check)) in reports[..n].iter().enumerate() {
        emit(rep as u64, steps, *cycles, *check);
    }
    Ok(())
}

/// Timed by the kernel: a task cannot create or destroy its own address space.
fn aspace(reps: u64, ops: u64) -> BenchResult {
    for rep in 0..reps {
        let start = clock::read();
        let mut check = 0u64;
        for _ in 0..ops {
            scheduler::spawn(&ASPACE_CHILD, [ASPACE_BASE, ASPACE_PAGES]).map_err(|_| "could not spawn a task")?;
            for result in scheduler::run_all().iter().flatten() {
                match result {
                    TaskExit::Exited(code) => check = check.wrapping_add(*code),
                    TaskExit::Killed { .. } => return Err("an aspace child was killed"),
                }
            }
        }
        emit(rep, ops, clock::read() - start, check);
    }
    Ok(())
}

/// Timed by the kernel: only ring 0 may make a hypercall (a port write).
fn hypercalls(reps: u64, ops: u64) -> BenchResult {
    for rep in 0..reps {
        let start = clock::read();
        let mut answered = 0u64;
        for _ in 0..ops {
            answered += u64::from(hypercall::nop() == Ok(0));
        }
        emit(rep, ops, clock::read() - start, answered);
    }
    Ok(())
}

/// Timed by the kernel, in the kernel: `ops` iterations of `dec; jnz`, two ring-0
/// instructions each. On a host that emulates ring 0 this is the price of everything
/// else the kernel does, measured in the same run (the checksum is the count the loop
/// ran down, so it cannot be skipped).
fn ring0_loop(reps: u64, ops: u64) -> BenchResult {
    for rep in 0..reps {
        let start = clock::read();
        let mut left = ops;
        if left > 0 {
            // SAFETY: a register-only loop: no memory, no stack, flags only.
            unsafe { core::arch::asm!("2: dec {n}", "jnz 2b", n = inout(reg) left, options(nomem, nostack)) };
        }
        emit(rep, ops, clock::read() - start, ops - left);
    }
    Ok(())
}

/// The block ring, read by a ring-3 task into its own frames (`blk_user`): REPS
/// repetitions of OPS reads of ARG sectors, every buffer in flight, timed by the task;
/// then the task reads the first sectors again the same way and hashes them, for hv
/// to check against the image. (`blk-bench`, the kernel's own per-request path, is
/// what this workload measured before; `hv blk-bench` still runs it.)
fn blk(info: &BootInfo, reps: u64, ops: u64, sectors: Option<u64>) -> BenchResult {
    let sectors = sectors.ok_or("blk needs ARG: sectors per request")?;
    blk_user::bench(info, reps, ops, sectors, BLK_VERIFY_SECTORS)
}

/// The same reads made by `pv-blkd`, a ring-3 task driving the block ring itself
/// (`task::blk_task`): no system call and no kernel work per request.
fn blk_direct(info: &BootInfo, reps: u64, ops: u64, sectors: Option<u64>) -> BenchResult {
    let sectors = sectors.ok_or("blk-direct needs ARG: sectors per request")?;
    blk_user::bench_direct(info, reps, ops, sectors, BLK_VERIFY_SECTORS)
}
