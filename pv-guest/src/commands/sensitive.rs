//! `sensitive [umip]`: x86's sensitive-but-unprivileged instructions, run by a ring-3 task
//! one at a time, and what each revealed (the Popek–Goldberg demo's guest half).
//!
//! Popek and Goldberg (1974): a machine can be virtualized by trap-and-emulate if every
//! *sensitive* instruction (one that reads or changes the machine's configuration) is
//! *privileged* (traps when run outside the most privileged mode). Classic x86 broke the
//! rule with a handful of instructions that ring 3 may run without trapping: `pushf` and
//! `popf` (the interrupt flag), `smsw` (CR0), `sgdt`/`sidt` (where the kernel's tables
//! are), `str` (the task register). A hypervisor running a guest kernel deprivileged
//! never sees them, and the guest sees the real machine instead of its virtual one.
//! Hardware virtualization (VT-x/AMD-V) fixed it by giving the guest its own ring 0; CPUs
//! since then also have UMIP, which makes all but `pushf`/`popf` fault in ring 3.
//!
//! Each instruction runs in a fresh task (one that faults is killed without taking the
//! others with it); with `umip` the kernel first sets CR4.UMIP, if the CPU has it.

use crate::arch::cpu;
use crate::println;
use crate::task::programs::SENSITIVE;
use crate::task::scheduler::{self, TaskExit};
use crate::task::reports;

/// RFLAGS.IF and RFLAGS.IOPL.
const IF: u64 = 1 << 9;
const IOPL_SHIFT: u64 = 12;

/// The instructions, in the program's order.
const INSTRUCTIONS: [&str; 6] = ["pushf", "popf (clearing IF)", "smsw", "sgdt", "sidt", "str"];

/// `sensitive [umip]`.
pub fn run<'a>(mut words: impl Iterator<Item = &'a str>) -> u8 {
    let umip = words.next() == Some("umip");
    if umip {
        if !cpu::umip_supported() {
            println!("sensitive: this CPU (as hv presents it) has no UMIP; running without it");
        } else {
            // SAFETY: CPUID says the CPU has UMIP.
            unsafe { cpu::enable_umip() };
            println!("sensitive: CR4.UMIP set: ring 3 may no longer read the descriptor tables or CR0");
        }
    }
    let mut failures = 0;
    for (which, name) in INSTRUCTIONS.iter().enumerate() {
        if scheduler::spawn(&SENSITIVE, [which as u64, 0]).is_err() {
            println!("sensitive: could not create the task");
            return 1;
        }
        let result = scheduler::run_all()[0];
        let (seen, n) = reports::take();
        match result {
            Some(TaskExit::Exited(0)) if n == 1 && seen[0].0 == which as u64 => report(which, name, seen[0].1),
            Some(TaskExit::Killed { vector: 13, .. }) => println!("sensitive: {name} in ring 3: #GP, the CPU refused it (UMIP)"),
            other => {
                failures += 1;
                println!("sensitive: {name} in ring 3: unexpected end {other:?}");
            }
        }
    }
    u8::from(failures > 0)
}

/// Says what instruction `which` (`name`) revealed.
fn report(which: usize, name: &str, value: u64) {
    let iopl = (value >> IOPL_SHIFT) & 3;
    let if_on = u8::from(value & IF != 0);
    match which {
        0 => println!("sensitive: {name} in ring 3: rflags={value:#x} (IF={if_on}, IOPL={iopl}): the task reads the interrupt flag, no trap"),
        1 => {
            let what = if value & IF != 0 { "ignored silently" } else { "made" };
            println!("sensitive: {name} in ring 3: rflags after={value:#x} (IF={if_on}): the change was {what}, and nothing trapped");
        }
        2 => println!("sensitive: {name} in ring 3: cr0={value:#x} (PE={}, PG={}): the task reads CR0, no trap", value & 1, (value >> 31) & 1),
        3 => println!("sensitive: {name} in ring 3: GDT base={value:#x}: the kernel's table address, no trap"),
        4 => println!("sensitive: {name} in ring 3: IDT base={value:#x}: the kernel's table address, no trap"),
        _ => println!("sensitive: {name} in ring 3: TR={value:#x}: the kernel's task register, no trap"),
    }
}
