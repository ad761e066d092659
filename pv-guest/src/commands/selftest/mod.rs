//! In-guest self-tests: `hv run -- selftest`.
//!
//! Each test checks one promise the hypervisor or the kernel makes, from the inside:
//! that CPUID names hv, that bad hypercalls come back as error codes instead of killing
//! anything, that a trap goes through the IDT and returns, that the VMM's page tables
//! map what pv-abi says they map. The last line, `selftest: N passed, M failed`, is what
//! hv's integration tests read; the exit code is 0 only if nothing failed.
//!
//! | module | tests |
//! | --- | --- |
//! | [`basics`] | boot info, CPUID, hypercalls, traps, the direct map, upcalls, frames |
//! | [`memory`] | address spaces, page-table writers, tasks, demand paging |
//! | [`hostile_hypercalls`] | bad hypercalls hv must refuse (also the `bad-hypercalls` command) |
//! | [`user_image`] | the user-image loader refuses bad ELF files |

pub mod basics;
pub mod check;
pub mod hostile_hypercalls;
pub mod memory;
pub mod user_image;

use pv_abi::BootInfo;

use crate::println;
use check::TestResult;

/// Runs every test, prints one line each and a summary; returns the exit code.
pub fn run(info: &BootInfo) -> u8 {
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
    for (name, test) in basics::TESTS {
        record(name, test(info));
    }
    for (name, test) in memory::TESTS {
        record(name, test(info));
    }
    for (name, test) in user_image::TESTS {
        record(name, test(info));
    }
    for call in hostile_hypercalls::calls(info) {
        record(call.name, call.check());
    }
    for (name, test) in hostile_hypercalls::NOT_HYPERCALLS {
        record(name, test());
    }
    println!("selftest: {passed} passed, {failed} failed");
    u8::from(failed > 0)
}
