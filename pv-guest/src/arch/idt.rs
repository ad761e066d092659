//! The Interrupt Descriptor Table and the exception entry stubs.
//!
//! When the CPU takes exception `v` it looks up gate `v` in the IDT, switches stack if
//! the gate or a privilege change says so, pushes `ss, rsp, rflags, cs, rip` (and, for
//! some vectors, an error code) and jumps to the gate's handler. Our handlers are tiny
//! assembly stubs that make every frame look the same (push a zero error code where the
//! CPU pushes none, then the vector number), save the general registers, and call
//! `trap_dispatch` with a pointer to the resulting [`TrapFrame`]. That function is the
//! kernel's (`crate::trap`); the stubs name it by its link name, so this bottom layer
//! does not import the layers above it.
//!
//! Every one of the 32 exception vectors has a stub, so no exception can go unhandled,
//! and so do the two interrupt vectors a device can raise: the upcall and the local
//! APIC's spurious vector.

use super::cpu::{self, DescriptorTablePointer};
use super::cpu_local::VcpuCell;
use super::gdt;
#[cfg(doc)]
use super::trap_frame::TrapFrame;
use pv_abi::event_channel::{SPURIOUS_VECTOR, UPCALL_VECTOR};

const _: () = assert!(UPCALL_VECTOR == 64 && SPURIOUS_VECTOR == 255, "the stub names below hard-code them");

/// Number of CPU exception vectors.
const EXCEPTION_VECTORS: usize = 32;
/// Number of gates in the table (the architecture allows 256).
const IDT_ENTRIES: usize = 256;

// Type-attribute bytes: present, DPL, type 0xe = 64-bit interrupt gate (IF cleared on
// entry, so a handler is never interrupted by a device).
const GATE_RING0: u8 = 0x8e;
// DPL 3: ring-3 code may use this vector with `int n` (int3 for breakpoints).
const GATE_RING3: u8 = 0xee;

/// One 16-byte IDT gate.
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

impl Gate {
    const MISSING: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        type_attr: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    fn new(handler: u64, type_attr: u8, ist: u8) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: gdt::KERNEL_CODE,
            ist,
            type_attr,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

/// The IDT: filled in by [`init`], read by the CPU from then on.
static IDT: VcpuCell<[Gate; IDT_ENTRIES]> = VcpuCell::new([Gate::MISSING; IDT_ENTRIES]);

/// The system-call vector (`int 0x80`).
pub const SYSCALL_VECTOR: u8 = 0x80;

extern "C" {
    /// Addresses of the 32 entry stubs, defined in the assembly below.
    static trap_stub_table: [u64; EXCEPTION_VECTORS];
    /// Entry stub of the upcall vector (0x40 = 64).
    fn trap_stub_64();
    /// Entry stub of the spurious-interrupt vector (0xff = 255).
    fn trap_stub_255();
    /// Entry stub of the system-call vector (0x80 = 128).
    fn trap_stub_128();
}

/// Fills in the exception gates and loads the IDT.
pub fn init() {
    {
        let mut idt = IDT.borrow_mut();
        for (vector, gate) in idt.iter_mut().enumerate().take(EXCEPTION_VECTORS) {
            // SAFETY: trap_stub_table is a read-only table of 32 addresses emitted below;
            // reading one of them is reading an initialised u64.
            let handler = unsafe { trap_stub_table[vector] };
            let v = vector as u64;
            let type_attr = if v == pv_abi::exception::BREAKPOINT { GATE_RING3 } else { GATE_RING0 };
            // A double fault may come from a broken stack: give it a stack of its own.
            let ist = if v == pv_abi::exception::DOUBLE_FAULT { gdt::DOUBLE_FAULT_IST } else { 0 };
            *gate = Gate::new(handler, type_attr, ist);
        }
        // Device interrupts: the upcall, and the APIC's spurious vector.
        idt[usize::from(UPCALL_VECTOR)] = Gate::new(trap_stub_64 as *const () as u64, GATE_RING0, 0);
        idt[usize::from(SPURIOUS_VECTOR)] = Gate::new(trap_stub_255 as *const () as u64, GATE_RING0, 0);
        // System calls: DPL 3, so `int 0x80` from ring 3 may use this gate.
        idt[usize::from(SYSCALL_VECTOR)] = Gate::new(trap_stub_128 as *const () as u64, GATE_RING3, 0);
    }
    let ptr = DescriptorTablePointer {
        limit: (core::mem::size_of::<[Gate; IDT_ENTRIES]>() - 1) as u16,
        base: IDT.as_ptr() as u64,
    };
    // SAFETY: IDT is a static that Rust never writes again; its exception, upcall,
    // spurious and system-call gates point at the stubs below and the rest are marked
    // not present (using one raises #GP, which has a gate).
    unsafe { cpu::lidt(&ptr) };
}

/// Loads an empty IDT: the next exception cannot be delivered, becomes a double fault
/// that cannot be delivered either, and the CPU shuts down (a "triple fault"). Used only
/// by the `triple-fault` command to show what hv does when a guest dies that way.
pub fn load_empty_idt() {
    let ptr = DescriptorTablePointer { limit: 0, base: 0 };
    // SAFETY: deliberately breaks exception delivery; the caller's next step is a trap
    // that shuts the virtual CPU down. No memory is accessed through this table.
    unsafe { cpu::lidt(&ptr) };
}

// The stubs. `isr_noerr` pushes a fake error code so the frame has the same shape as
// for vectors where the CPU pushes one (see pv_abi::exception::pushes_error_code).
core::arch::global_asm!(
    ".macro isr_noerr n",
    ".global trap_stub_\\n",
    "trap_stub_\\n:",
    "    push 0",
    "    push \\n",
    "    jmp trap_common",
    ".endm",
    ".macro isr_err n",
    ".global trap_stub_\\n",
    "trap_stub_\\n:",
    "    push \\n",
    "    jmp trap_common",
    ".endm",
    ".irp n, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31,64,128,255",
    "    isr_noerr \\n",
    ".endr",
    ".irp n, 8,10,11,12,13,14,17,21,29,30",
    "    isr_err \\n",
    ".endr",
    // Save the general registers in the order TrapFrame declares them (last pushed =
    // first field), pass the frame to Rust, restore, drop vector and error code, return.
    "trap_common:",
    "    push rax",
    "    push rbx",
    "    push rcx",
    "    push rdx",
    "    push rsi",
    "    push rdi",
    "    push rbp",
    "    push r8",
    "    push r9",
    "    push r10",
    "    push r11",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    mov rdi, rsp",
    "    cld",
    // trap_dispatch is `#[no_mangle] extern "C"` in crate::trap.
    "    call trap_dispatch",
    // Also the way into ring 3 for a new task (user_entry.rs): point rsp at a saved
    // frame and jump here.
    ".global trap_return",
    "trap_return:",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop r11",
    "    pop r10",
    "    pop r9",
    "    pop r8",
    "    pop rbp",
    "    pop rdi",
    "    pop rsi",
    "    pop rdx",
    "    pop rcx",
    "    pop rbx",
    "    pop rax",
    "    add rsp, 16",
    "    iretq",
    ".section .rodata",
    ".balign 8",
    ".global trap_stub_table",
    "trap_stub_table:",
    ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    "    .quad trap_stub_\\n",
    ".endr",
    ".text",
);
