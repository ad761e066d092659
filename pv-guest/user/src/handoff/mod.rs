//! The handoff pages: the contract between the kernel and each ring-3 driver task.
//!
//! The kernel writes one handoff into a page it maps read-only at the task's
//! [`HANDOFF_VA`] and starts the task with that address in `rdi`. Each is `repr(C)` and
//! starts with a magic number that names it and its version: the kernel and the tasks
//! are built separately, and a task given a page it does not understand stops at once.

pub mod net;
pub mod blk;

/// Where a task's handoff page is mapped (the same for every task).
pub const HANDOFF_VA: u64 = 0x3000_0000;
/// Where the device window starts: the ring pages, then the buffer frames.
pub const RINGS_VA: u64 = HANDOFF_VA + 0x1000;
/// Where the buffer frames are mapped, one page each.
pub const BUFFERS_VA: u64 = HANDOFF_VA + 0x10_0000;
