//! The machine: every instruction and structure that is x86 rather than kernel policy.
//!
//! All of the kernel's own `asm!` lives here (the ring-3 programs tasks run are
//! assembly too, but they are data the kernel copies into a task, and live with
//! `task::programs` and `commands::bench`). Nothing in `arch` imports another layer
//! of the kernel: the entry stubs reach the kernel's trap handler through a link name
//! (`trap_dispatch`, defined in `crate::trap`), the boot stub reaches `kmain` the
//! same way.
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`boot`] | the first instructions: a stack, then `kmain` |
//! | [`cpu`] | every privileged instruction the kernel uses, each wrapped once |
//! | [`cpu_local`] | [`cpu_local::VcpuCell`], the kernel's one kind of mutable global |
//! | [`gdt`] | segments and the TSS (where the CPU finds stacks for traps) |
//! | [`idt`] | the interrupt table and the entry stubs every trap goes through |
//! | [`trap_frame`] | the registers a trap leaves on the stack |
//! | [`user_entry`] | entering ring 3, and getting back when every task is done |
//! | [`apic`] | the two local-APIC registers the kernel needs |
//! | [`kernel_map`] | the boot-info page and the kernel's windows onto guest-physical memory |

pub mod apic;
pub mod boot;
pub mod cpu;
pub mod cpu_local;
pub mod gdt;
pub mod idt;
pub mod kernel_map;
pub mod trap_frame;
pub mod user_entry;
