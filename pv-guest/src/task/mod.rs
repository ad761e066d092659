//! Ring-3 tasks, each in its own address space.
//!
//! A task is a user program (see [`programs`]), an address space whose lower half
//! holds its code page, its stack and whatever anonymous memory it maps, and its saved
//! registers. Two ideas, one file each:
//!
//! - [`scheduler`]: which tasks exist and which one runs. Scheduling is cooperative: a
//!   task runs until it makes a system call that yields or exits, or until it faults.
//! - [`demand_paging`]: a task's memory. Anonymous memory is demand-zero: `map` only
//!   records a region, and the first touch of each page faults and gets a zeroed frame.
//!
//! [`syscall`] is how a task asks the kernel for either, and [`reports`] is where the
//! benchmark tasks leave their measurements for the kernel to print. [`blk_io`] lets a
//! task read the disk straight into its own frames (persistent grants, one system call
//! per batch of requests). [`user_image`] loads a separately linked program (an ELF
//! file embedded in the kernel) into a task, and [`net_task`] uses it to lend the
//! network device to `pv-netd`, the ring-3 network stack, and [`blk_task`] to lend the
//! block ring to `pv-blkd`, which reads the disk with no system call per request.

pub mod blk_io;
pub mod blk_task;
pub mod demand_paging;
pub mod net_task;
pub mod programs;
pub mod reports;
pub mod scheduler;
pub mod syscall;
pub mod user_image;
