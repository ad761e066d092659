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

/// Ports the I/O permission bitmap covers: the legacy range and hv's hypercall and
/// doorbell ports (`pv_abi::event_channel::DOORBELL_PORT_BASE` is 0x700). A port past
/// the bitmap's end is always denied to ring 3.
const IO_BITMAP_PORTS: usize = 0x800;
/// The bitmap's bytes (one bit per port), plus the all-ones byte the CPU requires after
/// its last one (an access may read two bytes).
const IO_BITMAP_BYTES: usize = IO_BITMAP_PORTS / 8 + 1;

/// The TSS and, right after it, its I/O permission bitmap: bit p set denies port p to
/// ring 3 (when CPL > IOPL). All set at boot: ring 3 gets no port until
/// [`allow_user_port`] opens one.
#[repr(C)]
struct TssWithIoBitmap {
    tss: TaskStateSegment,
    io_bitmap: [u8; IO_BITMAP_BYTES],
}

/// The TSS: filled in by [`init`], read by the CPU from then on.
static TSS_TABLE: VcpuCell<TssWithIoBitmap> = VcpuCell::new(TssWithIoBitmap {
    tss: TaskStateSegment {
        reserved0: 0,
        rsp: [0; 3],
        reserved1: 0,
        ist: [0; 7],
        reserved2: 0,
        reserved3: 0,
        iomap_base: TSS_SIZE as u16,
    },
    io_bitmap: [0xff; IO_BITMAP_BYTES],
});

/// Opens (`allowed`) or closes one I/O port to ring 3 through the TSS's bitmap; `false`
/// for a port the bitmap does not cover. The CPU reads the bitmap at every port access
/// from ring 3, so the change holds from the next one on.
pub fn allow_user_port(port: u16, allowed: bool) -> bool {
    let port = usize::from(port);
    if port >= IO_BITMAP_PORTS {
        return false;
    }
    let mut table = TSS_TABLE.borrow_mut();
    let bit = 1u8 << (port % 8);
    if allowed {
        table.io_bitmap[port / 8] &= !bit;
    } else {
        table.io_bitmap[port / 8] |= bit;
    }
    true
}

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
    // The limit covers the I/O bitmap too: the CPU denies any port whose bit lies past it.
    let limit = (core::mem::size_of::<TssWithIoBitmap>() - 1) as u64;
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
        let mut table = TSS_TABLE.borrow_mut();
        let tss = &mut table.tss;
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
