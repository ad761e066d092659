//! The vCPU's registers at the first instruction: 64-bit long mode, paging on.
//!
//! A real x86 CPU starts in 16-bit real mode and a bootloader climbs through protected
//! mode to long mode. A VMM can skip all that: KVM lets it write the control registers
//! and segment caches directly (`KVM_SET_SREGS`), so the first guest instruction already
//! runs in 64-bit mode. What "long mode" needs, bit by bit:
//! - CR0.PE (protected mode) and CR0.PG (paging), CR4.PAE (64-bit page-table entries),
//!   EFER.LME (long mode enable) and EFER.LMA (long mode active);
//! - a code segment with the L bit (64-bit code), and CR3 pointing at a PML4.

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use pv_abi::addr::{GuestVirt, MachineAddr, PseudoPhys};
use pv_abi::layout::BOOT_GDT_GPA;

use crate::memory::{GuestRam, OutsideRam};

const CR0_PE: u64 = 1 << 0; // protected mode
const CR0_ET: u64 = 1 << 4; // extension type (always 1 on modern CPUs)
const CR0_NE: u64 = 1 << 5; // native FPU error reporting
const CR0_WP: u64 = 1 << 16; // ring 0 honours read-only pages too
const CR0_PG: u64 = 1 << 31; // paging
const CR4_PAE: u64 = 1 << 5; // physical address extension: required for long mode
const EFER_LME: u64 = 1 << 8; // long mode enable
const EFER_LMA: u64 = 1 << 10; // long mode active
const EFER_NXE: u64 = 1 << 11; // honour the no-execute bit in page tables

/// Selector of the boot GDT's code segment.
const BOOT_CODE_SELECTOR: u16 = 0x08;
/// Selector of the boot GDT's data segment.
const BOOT_DATA_SELECTOR: u16 = 0x10;
/// The boot GDT: null, 64-bit code, data (same values the guest's own GDT uses).
const BOOT_GDT: [u64; 3] = [0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];
/// RFLAGS with only the always-one bit 1 set: interrupts off.
const RFLAGS_RESERVED_ONE: u64 = 1 << 1;

/// Writes the boot GDT. The segment registers are loaded directly by KVM_SET_SREGS, but
/// the descriptors must also exist in memory: an interrupt return reloads CS from it.
pub fn write_boot_gdt(ram: &GuestRam) -> Result<(), OutsideRam> {
    let gdt = PseudoPhys::new(BOOT_GDT_GPA);
    for (i, desc) in BOOT_GDT.iter().enumerate() {
        let at = gdt.checked_add(8 * i as u64).ok_or(OutsideRam { gpa: gdt, len: 8 * BOOT_GDT.len() as u64, ram: ram.size() })?;
        ram.write_u64(at, *desc)?;
    }
    Ok(())
}

fn segment(selector: u16, code: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 0xb } else { 0x3 }, // execute/read accessed, or read/write accessed
        present: 1,
        dpl: 0,
        db: u8::from(!code), // a 64-bit code segment must have D=0
        s: 1,                // code or data, not a system segment
        l: u8::from(code),   // 64-bit code
        g: 1,
        ..Default::default()
    }
}

/// Sets the special registers for long mode with the page tables at `pml4`: a machine
/// address, since the CPU walks from it (in ept mode the guest's own root, whose
/// pseudo-physical address is its machine address; in shadow mode its shadow).
pub fn long_mode_sregs(mut sregs: kvm_sregs, pml4: MachineAddr, nx: bool) -> kvm_sregs {
    sregs.cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    sregs.cr3 = pml4.raw();
    sregs.cr4 = CR4_PAE;
    sregs.efer = EFER_LME | EFER_LMA | if nx { EFER_NXE } else { 0 };
    sregs.gdt.base = BOOT_GDT_GPA;
    sregs.gdt.limit = (BOOT_GDT.len() * 8 - 1) as u16;
    // No IDT yet: the guest installs its own before anything can trap.
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cs = segment(BOOT_CODE_SELECTOR, true);
    let data = segment(BOOT_DATA_SELECTOR, false);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs
}

/// General registers: start at `entry` with the boot-info address as the first argument.
pub fn entry_regs(entry: GuestVirt, boot_info_gpa: PseudoPhys) -> kvm_regs {
    kvm_regs {
        rip: entry.raw(),
        rdi: boot_info_gpa.raw(),
        rflags: RFLAGS_RESERVED_ONE,
        ..Default::default()
    }
}
