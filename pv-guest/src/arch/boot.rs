//! The first instructions the guest runs.
//!
//! The VMM has already done what a bootloader would: the CPU is in 64-bit long mode with
//! paging on (the VMM built the first page tables from our ELF headers), and `rdi` holds
//! the guest-physical address of the boot-info page. All that is missing is a stack,
//! so `_start` points `rsp` at the top of [`BOOT_STACK`] and calls `kmain`, which
//! receives `rdi` unchanged as its first argument. (`kmain` is named by its link name,
//! not imported: `arch` is the bottom layer and imports nothing above it.)

use super::cpu_local::VcpuCell;

/// Size of the kernel's stack. Generous: formatting with `core::fmt` is stack-hungry.
pub const BOOT_STACK_SIZE: usize = 64 * 1024;

/// The kernel's stack, in `.bss` (so it is part of the kernel image and zeroed by the
/// loader). The System V ABI wants `rsp` 16-byte aligned before a `call`.
#[repr(C, align(16))]
pub struct Stack(pub [u8; BOOT_STACK_SIZE]);

/// The stack `_start` switches to. Only the CPU uses it (through `rsp`), so Rust never
/// borrows the cell; the cell's address is the stack's lowest byte (see `cpu_local`).
pub static BOOT_STACK: VcpuCell<Stack> = VcpuCell::new(Stack([0; BOOT_STACK_SIZE]));

core::arch::global_asm!(
    ".section .text.boot, \"ax\"",
    ".global _start",
    "_start:",
    // rsp = &BOOT_STACK + size: the top, since the stack grows down.
    "    lea rsp, [rip + {stack}]",
    "    add rsp, {size}",
    // A zero frame pointer ends stack walks here.
    "    xor ebp, ebp",
    // kmain is `#[no_mangle] extern "C"` in main.rs.
    "    call kmain",
    // kmain never returns; if it somehow did, fault rather than run off the end.
    "    ud2",
    stack = sym BOOT_STACK,
    size = const BOOT_STACK_SIZE,
);
