//! The guest side of the hypercall ABI (the table is in `pv_abi::hypercall`).
//!
//! Each function here is one row of that table. Buffers are passed by guest-physical
//! address, so the wrappers translate the kernel's virtual addresses with
//! [`kernel_map::virt_to_phys`] first.

use crate::arch::kernel_map;
use pv_abi::addr::{GuestVirt, PseudoPhys};
use pv_abi::hypercall::{Hypercall, HypercallError, HYPERCALL_PORT};

/// Makes hypercall `nr` with up to four arguments and returns the raw `rax`: an `out`
/// to [`HYPERCALL_PORT`] with the number in `rax` and the arguments in `rdi`, `rsi`,
/// `r8`, `r9` (the calling convention of `pv_abi::hypercall`). The `out` exits to the
/// VMM, which answers in `rax` before the guest runs on.
/// Public so the self-tests can send deliberately bad calls.
///
/// # Safety
/// The hypervisor acts on what the arguments name: `mmu_update` rewrites page-table
/// entries and `set_cr3` switches address spaces. A call that can make it write guest
/// memory or change the kernel's mappings needs the caller's proof (as the typed
/// wrappers below give); calls that only name memory for the VMM to read, or that it
/// must refuse, need none.
pub unsafe fn raw(nr: u64, args: [u64; 4]) -> u64 {
    // LAB 1 BEGIN: the hypercall instruction: `out` to the port, number and arguments in registers, result in rax
    let ret: u64;
    // SAFETY: `out` to the hypercall port exits to the VMM, which reads the argument
    // registers and writes only `rax`. The VMM may read guest memory the arguments
    // name (console bytes), so the asm is NOT marked `nomem`: the compiler must finish
    // writing those buffers before this instruction. What the VMM may *write* (page
    // tables, CR3) is this function's caller's to prove (see `# Safety`).
    unsafe {
        core::arch::asm!(
            "out dx, eax",
            in("dx") HYPERCALL_PORT,
            inout("rax") nr => ret,
            in("rdi") args[0],
            in("rsi") args[1],
            in("r8") args[2],
            in("r9") args[3],
            options(nostack, preserves_flags),
        )
    };
    ret
    // LAB 1 STUB: let _ = (HYPERCALL_PORT, nr, args);
    // LAB 1 STUB: todo!("lab 1: make the hypercall: `out dx, eax` to HYPERCALL_PORT, the number in rax, the arguments in rdi, rsi, r8, r9; the VMM's answer comes back in rax")
    // LAB 1 END
}

/// A hypercall that only reads guest memory the arguments name, or none.
fn call(h: Hypercall, args: [u64; 4]) -> Result<u64, HypercallError> {
    debug_assert!(!matches!(h, Hypercall::MmuUpdate | Hypercall::SetCr3));
    // SAFETY: every caller of `call` makes a hypercall that at most reads guest memory
    // (the two that change page tables or mappings go through `raw` directly).
    HypercallError::decode(unsafe { raw(h.number(), args) })
}

/// The null hypercall: a round trip to the VMM and back.
pub fn nop() -> Result<u64, HypercallError> {
    call(Hypercall::Nop, [0; 4])
}

/// Reads the time-stamp counter through the VMM (`hv::clock` says when).
pub fn read_clock() -> Result<u64, HypercallError> {
    call(Hypercall::ReadClock, [0; 4])
}

/// Writes bytes to the console; returns how many were written.
pub fn console_write(bytes: &[u8]) -> Result<u64, HypercallError> {
    let gpa = kernel_map::virt_to_phys(kernel_map::virt_of(bytes.as_ptr())).ok_or(HypercallError::Fault)?;
    call(Hypercall::ConsoleWrite, [gpa.raw(), bytes.len() as u64, 0, 0])
}

/// Loads the address space whose PML4 is at guest-physical `root` (shadow mode: the
/// VMM points CR3 at the shadow of that root).
///
/// # Safety
/// As for `cpu::write_cr3`: `root` must be the PML4 of a complete address space whose
/// upper half is the kernel's, so the running code, its stack and its statics stay mapped.
pub unsafe fn set_cr3(root: PseudoPhys) -> Result<u64, HypercallError> {
    // SAFETY: the caller guarantees the kernel stays mapped in the space loaded.
    HypercallError::decode(unsafe { raw(Hypercall::SetCr3.number(), [root.raw(), 0, 0, 0]) })
}

/// Applies a batch of page-table writes (`pv_abi::hypercall::MmuUpdate`).
///
/// # Safety
/// Each update's `entry` must be an entry of a page table the caller owns (as
/// `mm::table::EntryAddr` guarantees), and its `value` one the caller could have
/// stored there itself.
pub unsafe fn mmu_update(batch: &[pv_abi::hypercall::MmuUpdate]) -> Result<u64, HypercallError> {
    let gpa = kernel_map::virt_to_phys(kernel_map::virt_of(batch.as_ptr())).ok_or(HypercallError::Fault)?;
    // SAFETY: the caller guarantees every entry written is one of its own tables'.
    HypercallError::decode(unsafe { raw(Hypercall::MmuUpdate.number(), [gpa.raw(), batch.len() as u64, 0, 0]) })
}

/// Stops the guest; hv exits with `code`. The kernel's own counters go with it.
pub fn shutdown(code: u8) -> ! {
    let counters = crate::counters::snapshot();
    let gpa = kernel_map::virt_to_phys(kernel_map::virt_of(&counters)).map_or(0, PseudoPhys::raw);
    let _ = call(Hypercall::Shutdown, [u64::from(code), gpa, 0, 0]);
    // Only reachable if the VMM refused a valid code, which would be a VMM bug.
    panic!("shutdown hypercall returned")
}

/// Reports a kernel panic message; the VMM stops the guest.
pub fn report_panic(message: &[u8]) -> ! {
    if let Some(gpa) = kernel_map::virt_to_phys(kernel_map::virt_of(message.as_ptr())) {
        let _ = call(Hypercall::ReportPanic, [gpa.raw(), message.len() as u64, 0, 0]);
    }
    // The message could not be delivered: fall back to a bare shutdown.
    let _ = call(Hypercall::Shutdown, [u64::from(PANIC_FALLBACK_EXIT_CODE), 0, 0, 0]);
    loop {
        core::hint::spin_loop();
    }
}

/// Exit code used if even `report_panic` fails (like a Rust program's panic exit code).
const PANIC_FALLBACK_EXIT_CODE: u8 = 101;

/// Reports an unexpected CPU exception (where it happened and, for a page fault, the
/// address touched); the VMM stops the guest.
pub fn report_exception(vector: u64, rip: GuestVirt, error_code: u64, cr2: GuestVirt) -> ! {
    let _ = call(Hypercall::ReportException, [vector, rip.raw(), error_code, cr2.raw()]);
    let _ = call(Hypercall::Shutdown, [u64::from(PANIC_FALLBACK_EXIT_CODE), 0, 0, 0]);
    loop {
        core::hint::spin_loop();
    }
}
