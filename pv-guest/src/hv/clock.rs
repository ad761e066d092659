//! The guest's clock: the time-stamp counter, read directly or through the hypervisor.
//!
//! `rdtsc` is one of the few inputs a guest gets from outside that no VM exit carries:
//! KVM runs it on the real CPU (it cannot make `rdtsc` exit to a user-space VMM), so
//! its value differs from run to run. That is harmless, except when hv records a run to
//! replay it later (`hv run --record`, `hv replay`): then every value the guest sees
//! must come back identically. The boot-info page says so
//! (`pv_abi::boot_info::BOOT_FLAG_CLOCK_RECORDED`), and [`read`] then asks hv with the
//! `read_clock` hypercall, which hv answers from the host's counter and logs (or, in a
//! replay, answers from the log). The ring-3 benchmark programs time themselves with
//! their own inline `rdtsc` and stay unrecorded: hv's docs list that as a limit.

use pv_abi::boot_info::BOOT_FLAG_CLOCK_RECORDED;
use pv_abi::BootInfo;

use super::hypercall;
use crate::arch::cpu;
use crate::arch::cpu_local::VcpuCell;

/// Whether the clock must be read through hv (set once at boot by [`init`]).
static RECORDED: VcpuCell<bool> = VcpuCell::new(false);

/// Reads the boot-info flag; call once, before the first [`read`].
pub fn init(info: &BootInfo) {
    *RECORDED.borrow_mut() = info.flags & BOOT_FLAG_CLOCK_RECORDED != 0;
}

/// The time-stamp counter: `rdtsc`, or hv's answer when the clock is recorded.
pub fn read() -> u64 {
    let recorded = *RECORDED.borrow_mut();
    if recorded {
        // A VMM that announced the flag implements the call; if it somehow failed, the
        // real counter is still a counter.
        hypercall::read_clock().unwrap_or_else(|_| cpu::rdtsc())
    } else {
        cpu::rdtsc()
    }
}
