//! Segments and the Task State Segment.
//!
//! In 64-bit mode segmentation is mostly gone (bases and limits are ignored for code
//! and data), but the GDT still matters for two things: a code segment's DPL *is* the
//! privilege level (ring 0 or 3), and the TSS tells the CPU which stack to switch to
//! when a trap arrives: `rsp0` when coming from ring 3, and the IST entries for traps
//! that must always get a fresh stack, like a double fault.
//!
//! The order of the descriptors follows Linux's, because `syscall`/`sysret` (used by
//! later work) derive the user selectors from the kernel ones at fixed offsets.

use super::cpu::{self, DescriptorTablePointer};
use super::cpu_local::VcpuCell;
use super::kernel_map;
use pv_abi::addr::GuestVirt;

/// Kernel code segment selector (GDT index 1, ring 0).
pub const KERNEL_CODE: u16 = 0x08;
/// Kernel data segment selector (GDT index 2, ring 0).
pub const KERNEL_DATA: u16 = 0x10;
/// User data segment selector (GDT index 3, requested privilege 3).
pub const USER_DATA: u16 = 0x18 | 3;
/// User code segment selector (GDT index 4, requested privilege 3).
pub const USER_CODE: u16 = 0x20 | 3;
/// TSS selector (GDT indices 5 and 6: a system descriptor takes two slots in long mode).
pub const TSS: u16 = 0x28;

/// IST slot (1-based, as the IDT gate names it) of the double-fault stack.
pub const DOUBLE_FAULT_IST: u8 = 1;

// Descriptor values: base 0, limit 0xfffff pages; access byte and flags differ.
// 0x9b = present, ring 0, code, readable; 0xa = granularity 4K + long mode (L bit).
const KERNEL_CODE_DESC: u64 = 0x00af_9b00_0000_ffff;
// 0x93 = present, ring 0, data, writable; 0xc = granularity 4K + 32-bit default size.
const KERNEL_DATA_DESC: u64 = 0x00cf_9300_0000_ffff;
// 0xf3 / 0xfb: the same as above with DPL 3.
const USER_DATA_DESC: u64 = 0x00cf_f300_0000_ffff;
const USER_CODE_DESC: u64 = 0x00af_fb00_0000_ffff;

/// Size of each trap stack the TSS points to.
const TRAP_STACK_SIZE: usize = 16 * 1024;

/// The 64-bit Task State Segment (Intel SDM vol. 3, "64-bit TSS").
#[repr(C, packed(4))]
pub struct TaskStateSegment {
    reserved0: u32,
    /// Stacks for entering rings 0..2 from a less privileged ring.
    pub rsp: [u64; 3],
    reserved1: u64,
    /// Interrupt Stack Table: stacks a gate can ask for regardless of privilege change.
    pub ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    /// Offset of the I/O permission bitmap; past the end means "no bitmap".
    pub iomap_base: u16,
}

const TSS_SIZE: usize = core::mem::size_of::<TaskStateSegment>();
const _: () = assert!(TSS_SIZE == 104);

#[repr(C, align(16))]
struct TrapStack([u8; TRAP_STACK_SIZE]);

/// The stack a double fault runs on. Only the CPU uses it (through the TSS).
static DOUBLE_FAULT_STACK: VcpuCell<TrapStack> = VcpuCell::new(TrapStack([0; TRAP_STACK_SIZE]));
/// The stack a trap from ring 3 runs on. Only the CPU uses it (through the TSS).
static RING0_STACK: VcpuCell<TrapStack> = VcpuCell::new(TrapStack([0; TRAP_STACK_SIZE]));

/// The TSS: filled in by [`init`], read by the CPU from then on.
static TSS_TABLE: VcpuCell<TaskStateSegment> = VcpuCell::new(TaskStateSegment {
    reserved0: 0,
    rsp: [0; 3],
    reserved1: 0,
    ist: [0; 7],
    reserved2: 0,
    reserved3: 0,
    iomap_base: TSS_SIZE as u16,
});

/// Descriptors in a GDT (the null descriptor, four segments, the TSS's two slots).
const GDT_ENTRIES: usize = 7;

/// The GDT: its TSS slots are filled in by [`init`], read by the CPU from then on.
static GDT: VcpuCell<[u64; GDT_ENTRIES]> =
    VcpuCell::new([0, KERNEL_CODE_DESC, KERNEL_DATA_DESC, USER_DATA_DESC, USER_CODE_DESC, 0, 0]);

/// The top of a trap stack (stacks grow down).
fn stack_top(stack: &VcpuCell<TrapStack>) -> u64 {
    stack.as_ptr() as u64 + TRAP_STACK_SIZE as u64
}

/// Builds the two halves of a 64-bit TSS descriptor for a TSS at `tss`.
fn tss_descriptor(tss: GuestVirt) -> (u64, u64) {
    // The descriptor scatters the address's bits over both halves.
    let base = tss.raw();
    let limit = (TSS_SIZE - 1) as u64;
    // 0x89 = present, ring 0, type 9 ("available 64-bit TSS").
    let low = (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (0x89 << 40)
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    (low, base >> 32)
}

/// Fills in the TSS and GDT and loads them. Call once, first thing in `kmain`.
pub fn init() {
    {
        let mut tss = TSS_TABLE.borrow_mut();
        tss.ist[(DOUBLE_FAULT_IST - 1) as usize] = stack_top(&DOUBLE_FAULT_STACK);
        tss.rsp[0] = stack_top(&RING0_STACK);
    }
    let (tss_low, tss_high) = tss_descriptor(kernel_map::virt_of(TSS_TABLE.as_ptr()));
    {
        let mut gdt = GDT.borrow_mut();
        gdt[5] = tss_low;
        gdt[6] = tss_high;
    }
    let ptr = DescriptorTablePointer {
        limit: (core::mem::size_of::<[u64; GDT_ENTRIES]>() - 1) as u16,
        base: GDT.as_ptr() as u64,
    };
    // SAFETY: GDT is a static (alive for ever) holding valid descriptors, and after this
    // nothing in Rust writes it again; the selectors name its kernel code and data
    // entries and its TSS entry, which was just filled in and points at TSS_TABLE,
    // another static that Rust no longer writes.
    unsafe {
        cpu::lgdt(&ptr);
        cpu::reload_segments(KERNEL_CODE, KERNEL_DATA);
        cpu::ltr(TSS);
    }
}
