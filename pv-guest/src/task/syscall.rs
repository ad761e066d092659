//! The system calls tasks make: `int 0x80` with the number in `rax`, arguments in
//! `rdi`, `rsi`, `rdx`, the result in `rax` (negative: an error). Every other register is
//! preserved.
//!
//! | nr | call | arguments | result |
//! | --- | --- | --- | --- |
//! | 0 | exit | code | does not return |
//! | 1 | yield | — | 0, when the task runs again |
//! | 2 | map | address, length, flags (1 = 2 MiB pages) | 0: anonymous demand-zero memory, read-write |
//! | 3 | unmap | address, length | 0 |
//! | 4 | write | buffer, length (≤ 4096) | bytes written to the console |
//! | 5 | bench_report | TSC cycles, checksum | 0 (`-ENOSPC` when the record is full); see `commands/bench/` |
//! | 6 | blk_setup | buffer address, buffers (≤ 32), pages per buffer (≤ 16) | 0: the pages are granted to the block device until release; see `blk_io.rs` |
//! | 7 | blk_io | request array, count (≤ 32), completion array | completions written (≥ 1 if any request is in flight) |
//! | 8 | blk_release | — | 0: requests drained, grants revoked (also done at exit) |
//!
//! ## How a system call reaches the kernel, on every host
//!
//! `int 0x80` goes through IDT gate 0x80, whose DPL of 3 lets ring 3 use it. On the
//! development machines (KVM on PVM, see shared/docs/kvm-platform.md) `int n` from ring
//! 3 raises `#UD` instead. The `#UD` handler then finds the bytes `cd 80` at the faulting
//! `rip`, steps over them, and makes the same call. It is trap-and-emulate in miniature:
//! the instruction faults, the kernel does what it stands for. On a normal host the
//! gate runs and the `#UD` path is never taken.

use pv_abi::addr::GuestVirt;

use super::demand_paging::MapError;
use super::scheduler::{self, TaskExit, USER_CODE_END};
use super::{blk_io, reports};
use crate::arch::trap_frame::TrapFrame;
use crate::counters::{self, SYSCALLS};
use crate::println;

/// End the task.
pub const SYS_EXIT: u64 = 0;
/// Let another task run.
pub const SYS_YIELD: u64 = 1;
/// Map anonymous memory.
pub const SYS_MAP: u64 = 2;
/// Unmap it.
pub const SYS_UNMAP: u64 = 3;
/// Write to the console.
pub const SYS_WRITE: u64 = 4;
/// Hand a benchmark measurement to the kernel (see `crate::commands::bench`).
pub const SYS_BENCH_REPORT: u64 = 5;
/// Register a buffer for block I/O (see [`blk_io`]).
pub const SYS_BLK_SETUP: u64 = 6;
/// Submit a batch of block requests and reap completions.
pub const SYS_BLK_IO: u64 = 7;
/// Let go of the block buffer.
pub const SYS_BLK_RELEASE: u64 = 8;

/// Error results (negated errno values, as hypercalls use).
const EINVAL: u64 = (-22i64) as u64;
const EFAULT: u64 = (-14i64) as u64;
const ENOSYS: u64 = (-38i64) as u64;
const ENOMEM: u64 = (-12i64) as u64;
const ENOSPC: u64 = (-28i64) as u64;
const EBUSY: u64 = (-16i64) as u64;

/// Largest write one call may make.
const WRITE_MAX: u64 = 4096;

/// Handles the system call in `frame` (which is the calling task's saved registers).
pub fn handle(frame: &mut TrapFrame) {
    counters::bump(&SYSCALLS);
    match frame.rax {
        SYS_EXIT => scheduler::exit_current(frame, TaskExit::Exited(frame.rdi)),
        SYS_YIELD => {
            frame.rax = 0;
            scheduler::yield_current(frame);
        }
        SYS_MAP => {
            let (address, len, large) = (GuestVirt::new(frame.rdi), frame.rsi, frame.rdx & 1 != 0);
            let mapped = scheduler::with_current_memory(|m, _| m.map_anonymous(address, len, large, USER_CODE_END));
            frame.rax = match mapped.unwrap_or(Err(MapError::Invalid)) {
                Ok(()) => 0,
                Err(MapError::Invalid) => EINVAL,
                Err(MapError::NoMemory) => ENOMEM,
            }
        }
        SYS_UNMAP if blk_io::pins(scheduler::current_task(), GuestVirt::new(frame.rdi), frame.rsi) => frame.rax = EBUSY,
        SYS_UNMAP => {
            let (address, len) = (GuestVirt::new(frame.rdi), frame.rsi);
            let unmapped = scheduler::with_current_memory(|m, w| m.unmap_anonymous(w, address, len));
            frame.rax = if unmapped == Some(true) { 0 } else { EINVAL };
        }
        SYS_WRITE => frame.rax = write(GuestVirt::new(frame.rdi), frame.rsi),
        SYS_BENCH_REPORT => frame.rax = if reports::record(frame.rdi, frame.rsi).is_ok() { 0 } else { ENOSPC },
        SYS_BLK_SETUP => {
            let (task, start, buffers, pages) = (scheduler::current_task(), GuestVirt::new(frame.rdi), frame.rsi, frame.rdx);
            let result = scheduler::with_current_memory(|m, w| blk_io::setup(task, m, w, start, buffers, pages));
            frame.rax = result.unwrap_or(Err(blk_io::BlkIoError::NoDevice)).map_or_else(blk_io::BlkIoError::errno, |()| 0);
        }
        SYS_BLK_IO => {
            let (task, submissions, count, completions) = (scheduler::current_task(), GuestVirt::new(frame.rdi), frame.rsi, GuestVirt::new(frame.rdx));
            let result = scheduler::with_current_memory(|m, w| blk_io::io(task, m, w, submissions, count, completions));
            frame.rax = result.unwrap_or(Err(blk_io::BlkIoError::NoDevice)).unwrap_or_else(blk_io::BlkIoError::errno);
        }
        SYS_BLK_RELEASE => frame.rax = blk_io::release(scheduler::current_task()).map_or_else(blk_io::BlkIoError::errno, |()| 0),
        _ => frame.rax = ENOSYS,
    }
}

/// Copies a user buffer to the console, page by page through the task's own mappings
/// (so a bad pointer is an error, never a kernel fault).
fn write(buffer: GuestVirt, len: u64) -> u64 {
    if len > WRITE_MAX {
        return EINVAL;
    }
    let mut text = [0u8; WRITE_MAX as usize];
    let copied = scheduler::with_current_memory(|m, w| m.copy_from_user(w, buffer, &mut text[..len as usize]));
    if copied != Some(true) {
        return EFAULT;
    }
    let text = core::str::from_utf8(&text[..len as usize]).unwrap_or("<not UTF-8>");
    crate::print!("{}", text);
    if !text.ends_with('\n') {
        println!();
    }
    len
}
