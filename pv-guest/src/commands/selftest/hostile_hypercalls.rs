//! Bad hypercalls hv must refuse with an error code, leaving the guest running: part
//! of `selftest`, and on their own the `bad-hypercalls` command.

use pv_abi::hypercall::{Hypercall, HypercallError, CONSOLE_WRITE_MAX};
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
    println!("bad-hypercalls: {refused} of {} refused; the guest is still running", calls.len());
    u8::from(refused != calls.len())
}
