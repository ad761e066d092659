//! # pv-guest: a small paravirtual kernel for the hv hypervisor
//!
//! This kernel knows it is virtual. It does not probe for hardware: the VMM starts it
//! directly in 64-bit mode with paging on, hands it a boot-info page, and the kernel
//! talks to the hypervisor through hypercalls (see `pv_abi::hypercall`). Start reading at
//! [`kmain`]; the order of the calls there is the order a kernel must set itself up in.
//!
//! ## Layers
//! Each layer uses only the layers above it in this table, lowest first (the project's
//! own `tests/architecture.rs`, run by `cargo test --workspace`, holds the code to it):
//!
//! | layer | owns | must never |
//! | --- | --- | --- |
//! | [`counters`] | every number the kernel counts about itself | import anything of the kernel's |
//! | [`arch`] | every `asm!` and CPU structure: boot, cpu, gdt, idt, trap frame, user entry, apic, the kernel's address windows, and `VcpuCell` (the one kind of mutable global) | know what a trap or a hypercall means |
//! | [`hv`] | hypercalls, shared pages, event channels, driver frontends, console, panic | touch a page table |
//! | [`mm`] | frames, the page-table pool, typed page-table entries, the writer, address spaces | write a page table except through `mm::writer` |
//! | [`task`] | ring-3 tasks: scheduler, demand paging, system calls, user programs, the user-image loader, the network task | run a command |
//! | [`trap`] | what each exception and interrupt does (called by arch's entry stubs) | return to a task that faulted without a fix |
//! | [`net`] | the TCP/IP stack (smoltcp, the `pv-netstack` library) as the kernel runs it with `--ring0`, and the network frontend made at boot | own a device: it gets one through `net::device::FrameIo` |
//! | [`commands`] | what the words after `hv run --` ask for: selftest, bench, blk-*, net-*, hostile-ptes | be reached by a lower layer |
//!
//! Two calls go *up* the layers, and neither is an import: `arch::boot` calls [`kmain`]
//! and `arch::idt`'s entry stubs call `trap::trap_dispatch`, each by its link name,
//! the way hardware calls a handler it was given the address of.
//!
//! ## DESIGN
//! - Owns: the guest's side of everything: its CPU tables, its frames and page tables,
//!   its tasks, the frontends of its devices. All mutable global state is a
//!   `counters` atomic or an `arch::cpu_local::VcpuCell` (sound because the guest has
//!   one vCPU; a trap handler that re-enters state in use panics instead of aliasing).
//! - Must never: trust what it cannot check (the boot-info page is validated before
//!   use, shared-ring indices are checked by `frontend-drivers`), write a page table
//!   except through `mm::writer` (under shadow paging the VMM must see every write),
//!   or do in ring 0 what a ring-3 task can do (ring 0 may be emulated, and slow: the
//!   network stack runs in a ring-3 task, `pv-netd`, see [`net`] for the measurements).
//! - Data enters through the boot-info page (read once at boot), hypercall results,
//!   shared pages (device rings, the grant table, event flags) and upcall interrupts,
//!   and the command line. It leaves through hypercalls (console, page-table updates,
//!   shutdown with the `counters`), device rings and doorbells; that is all hv sees.
//!
//! ## Why so little work happens here
//! On some hosts (see `shared/docs/kvm-platform.md`) ring-0 guest code is emulated one
//! instruction at a time. The kernel therefore does the least it can in ring 0 and
//! leaves heavy work to ring-3 tasks.
#![no_std]
#![no_main]

pub mod counters;
pub mod arch;
pub mod hv;
pub mod mm;
pub mod task;
pub mod trap;
pub mod net;
pub mod commands;

/// The kernel's Rust entry point, called by `_start` (`arch::boot`) with the
/// guest-physical address of the boot-info page (the VMM put it in `rdi`).
#[no_mangle]
pub extern "C" fn kmain(boot_info_gpa: u64) -> ! {
    // Segments and the TSS first: the IDT's gates name a code segment and the
    // double-fault stack, and both must exist before any exception can be taken.
    arch::gdt::init();
    arch::idt::init();
    // From here on every exception reaches trap::trap_dispatch, which reports it to the VMM.
    let boot_info = arch::kernel_map::init(pv_abi::addr::PseudoPhys::new(boot_info_gpa));
    hv::clock::init(boot_info);
    mm::frames::init(boot_info);
    mm::pool::init(boot_info);
    hv::memory_mode::init(boot_info);
    task::scheduler::init(boot_info);
    // The local APIC and the split-driver frontends: from here on, output goes through
    // the console device's ring instead of a hypercall per line.
    hv::drivers::init(boot_info);
    net::front::attach(boot_info);
    mm::balloon::init(boot_info);
    let code = commands::run(boot_info);
    hv::hypercall::shutdown(code)
}
