//! In-guest self-tests: `hv run -- selftest`.
//!
//! Each test checks one promise the hypervisor or the kernel makes, from the inside:
//! that CPUID names hv, that bad hypercalls come back as error codes instead of killing
//! anything, that a trap goes through the IDT and returns, that the VMM's page tables
//! map what pv-abi says they map. The last line, `selftest: N passed, M failed`, is what
//! hv's integration tests read; the exit code is 0 only if nothing failed.

use core::sync::atomic::Ordering;

use crate::{cpu, hypercall, memory, println, trap};
use pv_abi::cpuid::{self, LEAF1_ECX_HYPERVISOR};
use pv_abi::hypercall::{Hypercall, HypercallError, CONSOLE_WRITE_MAX, HYPERCALL_PORT};
use pv_abi::BootInfo;

pub(crate) type TestResult = Result<(), &'static str>;
/// A named test.
type SelfTest = (&'static str, fn(&BootInfo) -> TestResult);

/// Fails the test with `why` unless `cond` holds.
pub(crate) fn ensure(cond: bool, why: &'static str) -> TestResult {
    if cond {
        Ok(())
    } else {
        Err(why)
    }
}

/// Runs every test, prints one line each and a summary; returns the exit code.
pub fn run(info: &BootInfo) -> u8 {
    let tests: [SelfTest; 10] = [
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
    let (mut passed, mut failed) = (0u32, 0u32);
    let mut record = |name: &str, result: TestResult| match result {
        Ok(()) => {
            passed += 1;
            println!("selftest: {name} ... ok");
        }
        Err(why) => {
            failed += 1;
            println!("selftest: {name} ... FAILED: {why}");
        }
    };
    for (name, test) in tests {
        record(name, test(info));
    }
    for (name, test) in crate::selftest_memory::TESTS {
        record(name, test(info));
    }
    for call in hostile_hypercalls(info) {
        record(call.name, call.check());
    }
    println!("selftest: {passed} passed, {failed} failed");
    u8::from(failed > 0)
}

fn boot_info_is_consistent(info: &BootInfo) -> TestResult {
    ensure(info.check().is_ok(), "BootInfo::check refused the page")?;
    // kmain's own code must be inside the kernel range the VMM announced.
    let kmain_gpa = memory::virt_to_phys(crate::kmain as *const () as u64).ok_or("kmain not in the kernel image")?;
    ensure((info.kernel_start..info.kernel_end).contains(&kmain_gpa), "kmain outside kernel range")
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
    let before = trap::EMULATED_UD2.load(Ordering::Relaxed);
    trap::expect_invalid_opcode();
    cpu::invalid_opcode();
    let after = trap::EMULATED_UD2.load(Ordering::Relaxed);
    ensure(after == before + 1, "ud2 did not go through the #UD handler exactly once")
}

/// A value with a recognisable pattern, read through two different mappings.
static MAPPING_PROBE: u64 = 0x6876_2d70_726f_6265; // "hv-probe"

fn direct_map_matches_kernel_map() -> TestResult {
    let kernel_virt = &raw const MAPPING_PROBE as u64;
    let gpa = memory::virt_to_phys(kernel_virt).ok_or("probe not in the kernel image")?;
    let direct = memory::phys_to_virt(gpa) as *const u64;
    // SAFETY: the VMM maps all of RAM at the direct map and gpa is inside the kernel
    // image, hence inside RAM; the value is a plain u64 that nothing writes.
    let seen = unsafe { direct.read_volatile() };
    ensure(seen == MAPPING_PROBE, "direct map shows different bytes than the kernel map")
}

fn tsc_advances() -> TestResult {
    let a = cpu::rdtsc();
    let _ = hypercall::nop();
    ensure(cpu::rdtsc() > a, "rdtsc did not advance across a hypercall")
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
    if crate::event_channel::events(info.console.channel) == 0 {
        crate::event_channel::wait_for_event();
    }
    let events = crate::event_channel::events(info.console.channel);
    ensure(events > 0, "no upcall for the console channel arrived")
}

fn frame_allocator_reuses_freed_frames() -> TestResult {
    let before = crate::frames::in_use();
    let a = crate::frames::alloc().ok_or("out of frames")?;
    let b = crate::frames::alloc().ok_or("out of frames")?;
    ensure(a != b && a % pv_abi::layout::PAGE_SIZE == 0, "two allocations gave the same or an unaligned frame")?;
    ensure(crate::frames::in_use() == before + 2, "in_use did not count two frames")?;
    crate::frames::free(b);
    let c = crate::frames::alloc().ok_or("out of frames")?;
    crate::frames::free(c);
    crate::frames::free(a);
    ensure(c == b, "a freed frame was not handed out again")?;
    ensure(crate::frames::in_use() == before, "in_use did not return to where it was")
}

/// A deliberately bad hypercall and the error hv must answer it with.
pub struct HostileCall {
    /// Test name: what the call tries.
    pub name: &'static str,
    nr: u64,
    args: [u64; 4],
    expected: HypercallError,
}

impl HostileCall {
    /// Makes the call; `Ok` if hv answered with the expected error (and we are still here).
    pub fn check(&self) -> TestResult {
        match HypercallError::decode(hypercall::raw(self.nr, self.args)) {
            Err(e) if e == self.expected => Ok(()),
            Err(_) => Err("refused, but with the wrong error code"),
            Ok(_) => Err("accepted a call it must refuse"),
        }
    }
}

/// The bad calls: every one must be refused with an error code and leave the guest running.
pub fn hostile_hypercalls(info: &BootInfo) -> [HostileCall; 9] {
    let mem = info.mem_bytes;
    let some_ram = info.free_mem_start;
    let gib = 1 << 30;
    let call = |name, h: Hypercall, args, expected| HostileCall { name, nr: h.number(), args, expected };
    [
        call("console_write_past_end_of_ram_is_efault", Hypercall::ConsoleWrite, [mem, 16, 0, 0], HypercallError::Fault),
        call("console_write_straddling_end_of_ram_is_efault", Hypercall::ConsoleWrite, [mem - 8, 16, 0, 0], HypercallError::Fault),
        call("console_write_wrapping_address_is_efault", Hypercall::ConsoleWrite, [u64::MAX - 7, 16, 0, 0], HypercallError::Fault),
        call("console_write_of_1_gib_is_e2big", Hypercall::ConsoleWrite, [some_ram, gib, 0, 0], HypercallError::TooBig),
        call("console_write_one_past_limit_is_e2big", Hypercall::ConsoleWrite, [some_ram, CONSOLE_WRITE_MAX + 1, 0, 0], HypercallError::TooBig),
        HostileCall { name: "unknown_hypercall_is_enosys", nr: 0x7777, args: [0; 4], expected: HypercallError::NoSys },
        call("shutdown_with_code_256_is_einval", Hypercall::Shutdown, [256, 0, 0, 0], HypercallError::Inval),
        call("shutdown_with_counters_past_end_of_ram_is_efault", Hypercall::Shutdown, [0, mem - 8, 0, 0], HypercallError::Fault),
        call("report_exception_vector_99_is_einval", Hypercall::ReportException, [99, 0, 0, 0], HypercallError::Inval),
    ]
}

/// The `bad-hypercalls` command: the hostile calls alone, with their results.
pub fn run_hostile_hypercalls(info: &BootInfo) -> u8 {
    let mut refused = 0;
    let calls = hostile_hypercalls(info);
    for call in &calls {
        match call.check() {
            Ok(()) => {
                refused += 1;
                println!("bad-hypercalls: {} ... refused as expected", call.name);
            }
            Err(why) => println!("bad-hypercalls: {} ... WRONG: {why}", call.name),
        }
    }
    println!("bad-hypercalls: {refused} of {} refused; the guest is still running", calls.len());
    u8::from(refused != calls.len())
}
