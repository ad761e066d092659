//! Self-tests of the machine and the hypervisor interface: boot info, CPUID,
//! hypercalls, a trap that returns, the direct map, upcalls, the frame allocator.

use pv_abi::cpuid::{self, LEAF1_ECX_HYPERVISOR};
use pv_abi::hypercall::HYPERCALL_PORT;
use pv_abi::BootInfo;

use super::check::{ensure, SelfTest, TestResult};
use crate::arch::{cpu, kernel_map};
use crate::counters::{self, EMULATED_UD2};
use crate::hv::{clock, event_channel, hypercall};
use crate::mm::frames;
use crate::{println, trap};

/// The tests, by name.
pub const TESTS: [SelfTest; 10] = [
    ("boot_info_is_consistent", boot_info_is_consistent),
    ("cpuid_identifies_hv", cpuid_identifies_hv),
    ("nop_hypercall_returns_zero", |_| nop_hypercall_returns_zero()),
    ("console_write_returns_length", |_| console_write_returns_length()),
    ("invalid_opcode_fault_returns", |_| invalid_opcode_fault_returns()),
    ("direct_map_matches_kernel_map", |_| direct_map_matches_kernel_map()),
    ("tsc_advances", |_| tsc_advances()),
    ("cmdline_names_selftest", cmdline_names_selftest),
    ("console_upcalls_arrive", console_upcalls_arrive),
    ("frame_allocator_reuses_freed_frames", |_| frame_allocator_reuses_freed_frames()),
];

fn boot_info_is_consistent(info: &BootInfo) -> TestResult {
    ensure(info.check().is_ok(), "BootInfo::check refused the page")?;
    // kmain's own code must be inside the kernel range the VMM announced.
    let kmain_gpa = kernel_map::virt_to_phys(kernel_map::virt_of(crate::kmain as *const ())).ok_or("kmain not in the kernel image")?;
    ensure((info.kernel_start..info.kernel_end).contains(&kmain_gpa.raw()), "kmain outside kernel range")
}

fn cpuid_identifies_hv(_: &BootInfo) -> TestResult {
    let (_, _, ecx, _) = cpu::cpuid(1);
    ensure(ecx & LEAF1_ECX_HYPERVISOR != 0, "hypervisor bit clear in CPUID.1:ECX")?;
    let (max, ebx, ecx, edx) = cpu::cpuid(cpuid::LEAF_SIGNATURE);
    ensure((ebx, ecx, edx) == cpuid::signature_registers(), "signature is not hvHypervisor")?;
    ensure(max >= cpuid::LEAF_FEATURES, "no features leaf")?;
    let (version, port, _, _) = cpu::cpuid(cpuid::LEAF_FEATURES);
    ensure(version == cpuid::HV_ABI_VERSION, "ABI version differs")?;
    ensure(port == u32::from(HYPERCALL_PORT), "hypercall port differs")
}

fn nop_hypercall_returns_zero() -> TestResult {
    ensure(hypercall::nop() == Ok(0), "nop did not return 0")
}

fn console_write_returns_length() -> TestResult {
    // An empty write is valid, prints nothing, and returns 0 bytes written. (The slice
    // is cut from a real static: an empty literal's pointer is dangling, not in RAM.)
    static TEXT: [u8; 4] = *b"text";
    ensure(hypercall::console_write(&TEXT[..0]) == Ok(0), "empty console_write did not return 0")
}

fn invalid_opcode_fault_returns() -> TestResult {
    let before = counters::read(&EMULATED_UD2);
    trap::expect_invalid_opcode();
    cpu::invalid_opcode();
    let after = counters::read(&EMULATED_UD2);
    ensure(after == before + 1, "ud2 did not go through the #UD handler exactly once")
}

/// A value with a recognisable pattern, read through two different mappings.
static MAPPING_PROBE: u64 = 0x6876_2d70_726f_6265; // "hv-probe"

fn direct_map_matches_kernel_map() -> TestResult {
    let kernel_virt = kernel_map::virt_of(&raw const MAPPING_PROBE);
    let gpa = kernel_map::virt_to_phys(kernel_virt).ok_or("probe not in the kernel image")?;
    let direct = kernel_map::direct_map::<u64>(gpa);
    // SAFETY: the VMM maps all of RAM at the direct map and gpa is inside the kernel
    // image, hence inside RAM; the value is a plain u64 that nothing writes.
    let seen = unsafe { direct.read_volatile() };
    ensure(seen == MAPPING_PROBE, "direct map shows different bytes than the kernel map")
}

fn tsc_advances() -> TestResult {
    let a = clock::read();
    let _ = hypercall::nop();
    ensure(clock::read() > a, "the clock did not advance across a hypercall")
}

fn cmdline_names_selftest(info: &BootInfo) -> TestResult {
    ensure(info.cmdline_bytes().starts_with(b"selftest\0"), "command line does not start with selftest")
}

fn console_upcalls_arrive(info: &BootInfo) -> TestResult {
    if info.console.present == 0 {
        return Err("hv announced no console device");
    }
    // This line goes through the console ring. The frontend re-armed its upcall before
    // publishing it, so the backend's response raised one. The guest may not have
    // slept for it (it often finds the response already there), in which case the
    // interrupt is still pending in the local APIC: waiting once takes it at once.
    println!("selftest: (this line travels through the console ring)");
    if counters::channel_events(info.console.channel) == 0 {
        event_channel::wait_for_event();
    }
    let events = counters::channel_events(info.console.channel);
    ensure(events > 0, "no upcall for the console channel arrived")
}

fn frame_allocator_reuses_freed_frames() -> TestResult {
    let before = frames::in_use();
    let a = frames::alloc().ok_or("out of frames")?;
    let b = frames::alloc().ok_or("out of frames")?;
    // (A frame number cannot be unaligned: the type is a frame, not an address.)
    ensure(a != b, "two allocations gave the same or an unaligned frame")?;
    ensure(frames::in_use() == before + 2, "in_use did not count two frames")?;
    frames::free(b);
    let c = frames::alloc().ok_or("out of frames")?;
    frames::free(c);
    frames::free(a);
    ensure(c == b, "a freed frame was not handed out again")?;
    ensure(frames::in_use() == before, "in_use did not return to where it was")
}

