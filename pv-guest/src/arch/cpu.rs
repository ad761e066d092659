//! Every privileged or special instruction the kernel uses, each wrapped once.
//!
//! Keeping the `asm!` here means the rest of the kernel is ordinary safe Rust, and a
//! reader can see in one file exactly which parts of the machine the guest touches.
//! Under a hypervisor, several of these are precisely the instructions that trap or are
//! emulated (the Popek–Goldberg "sensitive" instructions): `lgdt`, `lidt`, `ltr`,
//! `mov cr` and `cpuid`; and `out`, which is how hypercalls reach hv, is wrapped in
//! `hv::hypercall::raw`, next to the table of calls it serves.

use core::arch::asm;

use pv_abi::addr::{GuestVirt, PseudoPhys};

/// The operand of `lgdt` and `lidt`: a limit and a linear base address.
#[repr(C, packed)]
pub struct DescriptorTablePointer {
    /// Size of the table in bytes, minus one.
    pub limit: u16,
    /// Virtual address of the first entry.
    pub base: u64,
}

/// Loads the GDT register.
///
/// # Safety
/// `ptr` must describe a valid GDT that stays alive (and unchanged in the entries in
/// use) for as long as it is loaded.
pub unsafe fn lgdt(ptr: &DescriptorTablePointer) {
    // SAFETY: the caller guarantees the table is valid and lives long enough.
    unsafe { asm!("lgdt [{}]", in(reg) ptr, options(readonly, nostack, preserves_flags)) };
}

/// Loads the IDT register.
///
/// # Safety
/// `ptr` must describe a valid IDT whose gates point at valid handlers, alive for as
/// long as it is loaded (or be deliberately empty, to provoke a triple fault).
pub unsafe fn lidt(ptr: &DescriptorTablePointer) {
    // SAFETY: the caller guarantees the table is valid and lives long enough.
    unsafe { asm!("lidt [{}]", in(reg) ptr, options(readonly, nostack, preserves_flags)) };
}

/// Reloads CS with `code` (by a far return, the only way to change CS in 64-bit mode)
/// and DS, ES, SS with `data`; zeroes FS and GS.
///
/// # Safety
/// Both selectors must name valid kernel descriptors in the loaded GDT.
pub unsafe fn reload_segments(code: u16, data: u16) {
    // SAFETY: the caller guarantees both selectors are valid kernel descriptors, so the
    // far return lands on the next instruction in the same flat code segment.
    unsafe {
        asm!(
            "push {code}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {data:x}",
            "mov es, {data:x}",
            "mov ss, {data:x}",
            "xor {tmp:e}, {tmp:e}",
            "mov fs, {tmp:x}",
            "mov gs, {tmp:x}",
            code = in(reg) u64::from(code),
            data = in(reg) data,
            tmp = out(reg) _,
        )
    };
}

/// Loads the task register with the TSS selector.
///
/// # Safety
/// `selector` must name an available 64-bit TSS descriptor in the loaded GDT.
pub unsafe fn ltr(selector: u16) {
    // SAFETY: guaranteed by the caller.
    unsafe { asm!("ltr {0:x}", in(reg) selector, options(nostack, preserves_flags)) };
}

/// CR4's User-Mode Instruction Prevention bit: with it, `sgdt`, `sidt`, `sldt`, `smsw`
/// and `str` fault (#GP) in ring 3 instead of revealing the kernel's tables.
const CR4_UMIP: u64 = 1 << 11;

/// Whether the CPU (as hv's CPUID presents it) has UMIP: leaf 7, ecx bit 2.
pub fn umip_supported() -> bool {
    cpuid(0).0 >= 7 && cpuid(7).2 & (1 << 2) != 0
}

/// Sets CR4.UMIP: from now on ring 3 cannot read the descriptor-table registers or CR0.
///
/// # Safety
/// The CPU must support UMIP ([`umip_supported`]); setting a bit it does not know makes
/// `mov cr4` fault.
pub unsafe fn enable_umip() {
    // SAFETY: reading and writing CR4 in ring 0; the one bit set is supported (the
    // caller's promise) and changes only what ring 3 may read.
    unsafe {
        let cr4: u64;
        core::arch::asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack, preserves_flags));
        core::arch::asm!("mov cr4, {}", in(reg) cr4 | CR4_UMIP, options(nostack, preserves_flags));
    }
}

/// `cpuid`: returns (eax, ebx, ecx, edx) for a leaf (sub-leaf 0).
pub fn cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    let r = core::arch::x86_64::__cpuid_count(leaf, 0);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Reads the time-stamp counter with the instruction itself. Kernel code reads the clock
/// with `hv::clock::read` instead, which asks hv when the run is recorded (a raw
/// `rdtsc` is an input no replay can reproduce); this is what it uses otherwise.
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc only reads a counter (CR4.TSD is clear: the VMM does not set it).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Runs `iterations` rounds of a two-instruction loop (`dec`, `jnz`): a known number
/// of instructions, to time what one instruction costs in this ring (ring 0 may be
/// emulated one instruction at a time; see `shared/docs/kvm-platform.md`).
pub fn spin_instructions(iterations: u64) {
    if iterations == 0 {
        return;
    }
    // SAFETY: only a register is counted down; no memory, stack or flags outside it.
    unsafe { asm!("2:", "dec {n}", "jnz 2b", n = inout(reg) iterations => _, options(nomem, nostack)) };
}

/// Reads CR2, the linear address of the last page fault.
pub fn read_cr2() -> GuestVirt {
    let v: u64;
    // SAFETY: reading CR2 has no side effects; we run in ring 0.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    GuestVirt::new(v)
}

/// Reads one byte at a virtual address with a volatile load. Used only by commands that
/// provoke a fault on purpose (an unmapped or non-canonical address), to show what hv
/// reports.
///
/// # Safety
/// `addr` must be either readable memory that nothing is writing, or an address whose
/// load faults (the trap handler then reports the fault and the guest stops).
pub unsafe fn touch(addr: GuestVirt) -> u8 {
    let v: u8;
    // SAFETY: the caller guarantees the address is readable or faults; the load writes
    // nothing and only the output register changes.
    unsafe { asm!("mov {0}, byte ptr [{1}]", out(reg_byte) v, in(reg) addr.raw(), options(nostack, readonly)) };
    v
}

/// Executes `ud2`, the architecturally undefined instruction (raises #UD).
pub fn invalid_opcode() {
    // SAFETY: raises #UD, which the trap handler reports; the guest then stops.
    unsafe { asm!("ud2", options(nomem, nostack)) };
}

/// Divides by zero with `div` (raises #DE). Rust's `/` would panic before dividing.
pub fn divide_by_zero() {
    // SAFETY: raises #DE, which the trap handler reports; the guest then stops.
    unsafe {
        asm!(
            "xor edx, edx",
            "mov eax, 1",
            "xor ecx, ecx",
            "div ecx",
            out("eax") _, out("ecx") _, out("edx") _,
            options(nomem, nostack),
        )
    };
}

/// Enables interrupts and halts until one arrives, then disables them again.
///
/// `sti` takes effect only after the next instruction, so no interrupt can slip in
/// between `sti` and `hlt` and leave the CPU halted with nothing to wake it: either the
/// interrupt arrives during `hlt` (and wakes it) or it was already pending (and `hlt`
/// returns at once).
pub fn wait_for_interrupt() {
    // SAFETY: interrupts are only enabled for the duration of the halt; every vector the
    // VMM can deliver (the upcall and spurious vectors) has a handler in the IDT. Not
    // `nomem`: the handler writes memory, so this is also a compiler barrier.
    unsafe { asm!("sti", "hlt", "cli", options(nostack)) };
}

/// Writes one byte to an I/O port (a doorbell: KVM turns it into an eventfd signal).
pub fn outb(port: u16, value: u8) {
    // SAFETY: the only ports the kernel writes are doorbell ports the VMM announced in
    // the boot-info page; writing them has no effect on guest memory.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) };
}

/// Writes one byte to a port of the emulated UART (`commands::lines`): an exit to hv,
/// which plays the chip.
pub fn uart_outb(port: u16, value: u8) {
    // SAFETY: the port is one of COM1's, which hv emulates as a 16550; writing it has no
    // effect on guest memory.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) };
}

/// Reads one byte from a port of the emulated UART.
pub fn uart_inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: reading one of COM1's ports, which hv emulates; it changes no guest memory.
    unsafe { asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Loads CR3: switches to the address space whose PML4 is at guest-physical `root`
/// (and flushes the TLB's non-global entries).
///
/// # Safety
/// `root` must be the PML4 of a complete address space whose upper half is the
/// kernel's (copied from the boot tables), so that the code running now, its stack and
/// every kernel static stay mapped at the same addresses.
pub unsafe fn write_cr3(root: PseudoPhys) {
    // SAFETY: the caller guarantees the kernel stays mapped as it is.
    unsafe { asm!("mov cr3, {}", in(reg) root.raw(), options(nostack, preserves_flags)) };
}

/// Drops the TLB entry for one virtual address after its mapping changed.
pub fn invlpg(va: GuestVirt) {
    // SAFETY: invalidating a TLB entry never breaks anything; at worst it costs a walk.
    unsafe { asm!("invlpg [{}]", in(reg) va.raw(), options(nostack, preserves_flags)) };
}
