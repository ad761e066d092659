//! # pv-guest: a small paravirtual kernel for the hv hypervisor
//!
//! This kernel knows it is virtual. It does not probe for hardware: the VMM starts it
//! directly in 64-bit mode with paging on, hands it a boot-info page, and the kernel
//! talks to the hypervisor through hypercalls (see `pv_abi::hypercall`). Start reading at
//! [`kmain`]; the order of the calls there is the order a kernel must set itself up in.
//!
//! | file | what it does |
//! | --- | --- |
//! | `boot.rs` | the first instructions: a stack, then `kmain` |
//! | `cpu.rs` | every privileged instruction the kernel uses, each wrapped once |
//! | `gdt.rs` | segments and the TSS (where the CPU finds stacks for traps) |
//! | `idt.rs`, `trap.rs` | the interrupt table, entry stubs, and what each exception does |
//! | `hypercall.rs` | the guest side of the hypercall ABI |
//! | `memory.rs` | the boot-info page and the kernel's address translations |
//! | `console.rs` | `println!` over the console device (or the console hypercall early on) |
//! | `apic.rs`, `event_channel.rs` | receiving upcalls from device backends |
//! | `shared_page.rs` | pages shared with the hypervisor (rings, grant table) |
//! | `drivers.rs` | the split-driver frontends (crate `frontend-drivers`) set up from boot info |
//! | `frames.rs` | the frame allocator |
//! | `mmu/` | page tables through the paravirtual MMU interface; address spaces |
//! | `task/` | ring-3 tasks: user programs, system calls, scheduling, demand paging |
//! | `selftest_memory.rs` | self-tests of address spaces and tasks |
//! | `bench/` | the guest half of `hv bench`: workloads as ring-3 tasks |
//! | `blk_commands.rs` | `blk-read-sum`, `blk-fill`: block I/O you can check from outside |
//! | `panic.rs` | a Rust panic becomes a `report_panic` hypercall |
//! | `commands.rs` | what the words after `hv run --` ask the guest to do |
//! | `selftest.rs` | in-guest tests run by `hv run -- selftest` |
//!
//! ## Why so little work happens here
//! On some hosts (see `shared/docs/kvm-platform.md`) ring-0 guest code is emulated one
//! instruction at a time. The kernel therefore does the least it can in ring 0 and
//! leaves heavy work to ring-3 tasks.
#![no_std]
#![no_main]

mod apic;
mod bench;
mod blk_commands;
mod boot;
mod commands;
mod console;
mod counters;
mod cpu;
mod drivers;
mod event_channel;
mod frames;
mod gdt;
mod hostile_ptes;
mod hypercall;
mod idt;
mod memory;
mod mmu;
mod panic;
mod selftest;
mod selftest_memory;
mod shared_page;
mod task;
mod trap;

/// The kernel's Rust entry point, called by `_start` with the guest-physical address of
/// the boot-info page (the VMM put it in `rdi`).
#[no_mangle]
pub extern "C" fn kmain(boot_info_gpa: u64) -> ! {
    // Segments and the TSS first: the IDT's gates name a code segment and the
    // double-fault stack, and both must exist before any exception can be taken.
    gdt::init();
    idt::init();
    // From here on every exception reaches trap::dispatch, which reports it to the VMM.
    let boot_info = memory::init(boot_info_gpa);
    frames::init(boot_info);
    mmu::pool::init(boot_info);
    task::init(boot_info);
    // The local APIC and the split-driver frontends: from here on, output goes through
    // the console device's ring instead of a hypercall per line.
    drivers::init(boot_info);
    let code = commands::run(boot_info);
    hypercall::shutdown(code)
}
