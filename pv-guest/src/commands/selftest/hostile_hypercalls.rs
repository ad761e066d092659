//! Bad hypercalls hv must refuse with an error code, leaving the guest running: part
//! of `selftest`, and on their own the `bad-hypercalls` command.

use pv_abi::hypercall::{Hypercall, HypercallError, CONSOLE_WRITE_MAX, HYPERCALL_PORT};
use pv_abi::BootInfo;

use super::check::TestResult;
use crate::hv::hypercall;
use crate::println;

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
        // SAFETY: none of the calls below may change memory or mappings: hv must
        // refuse each (the test checks that it does), and even accepted, the console
        // writes and the shutdown only read guest memory.
        match HypercallError::decode(unsafe { hypercall::raw(self.nr, self.args) }) {
            Err(e) if e == self.expected => Ok(()),
            Err(_) => Err("refused, but with the wrong error code"),
            Ok(_) => Err("accepted a call it must refuse"),
        }
    }
}

/// The bad calls: every one must be refused with an error code and leave the guest running.
pub fn calls(info: &BootInfo) -> [HostileCall; 9] {
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

/// A test and its name.
pub type NamedTest = (&'static str, fn() -> TestResult);

/// Writes to the hypercall port that are not the hypercall instruction: hv must ignore
/// them (the ABI's hypercall is exactly one `out dx, eax`). Each is loaded with the
/// `shutdown(7)` hypercall's registers, so a VMM that took it for one would end the run.
pub const NOT_HYPERCALLS: [NamedTest; 2] = [
    ("a_byte_write_to_the_hypercall_port_is_not_a_hypercall", byte_write_is_not_a_hypercall),
    ("rep_outsb_of_4096_bytes_is_not_4096_hypercalls", string_write_is_not_a_hypercall),
];

fn byte_write_is_not_a_hypercall() -> TestResult {
    let nr = Hypercall::Shutdown.number();
    let rax: u64;
    // SAFETY: a one-byte port write; hv must treat it as a write to an unhandled port
    // (nothing happens, no register changes). Were it taken as `shutdown(7)`, the guest
    // would simply end: no memory is touched either way.
    unsafe {
        core::arch::asm!("out dx, al", in("dx") HYPERCALL_PORT, inout("rax") nr => rax, in("rdi") 7u64, options(nostack, nomem, preserves_flags));
    }
    if rax == nr { Ok(()) } else { Err("rax changed: the byte write was answered as a hypercall") }
}

/// The bytes `rep outsb` writes.
static STRING_WRITE: [u8; 4096] = [0x5a; 4096];

fn string_write_is_not_a_hypercall() -> TestResult {
    let nr = Hypercall::Shutdown.number();
    let rax: u64;
    // SAFETY: `rep outsb` reads STRING_WRITE (4096 bytes, static, readable) and writes
    // them to the port; hv must ignore the writes. It changes rsi and rcx (declared).
    unsafe {
        core::arch::asm!(
            "rep outsb",
            in("dx") HYPERCALL_PORT,
            inout("rsi") STRING_WRITE.as_ptr() => _,
            inout("rcx") STRING_WRITE.len() => _,
            inout("rax") nr => rax,
            in("rdi") 7u64,
            options(nostack, readonly, preserves_flags)
        );
    }
    if rax == nr { Ok(()) } else { Err("rax changed: the string write was answered as a hypercall") }
}

/// The `bad-hypercalls` command: the hostile calls alone, with their results.
pub fn run_command(info: &BootInfo) -> u8 {
    let mut refused = 0;
    let calls = calls(info);
    for call in &calls {
        match call.check() {
            Ok(()) => {
                refused += 1;
                println!("bad-hypercalls: {} ... refused as expected", call.name);
            }
            Err(why) => println!("bad-hypercalls: {} ... WRONG: {why}", call.name),
        }
    }
    let mut ignored = 0;
    for (name, test) in NOT_HYPERCALLS {
        match test() {
            Ok(()) => {
                ignored += 1;
                println!("bad-hypercalls: {name} ... ignored as expected");
            }
            Err(why) => println!("bad-hypercalls: {name} ... WRONG: {why}"),
        }
    }
    println!("bad-hypercalls: {refused} of {} refused; the guest is still running", calls.len());
    u8::from(refused != calls.len() || ignored != NOT_HYPERCALLS.len())
}
