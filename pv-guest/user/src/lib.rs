//! # pv-user: what the guest's ring-3 driver tasks stand on
//!
//! The guest kernel runs two programs of its own in ring 3, each linked separately and
//! embedded in the kernel: `pv-netd` (the network stack, `pv-guest/netd/`) and `pv-blkd`
//! (direct block I/O, `pv-guest/blkd/`). A task cannot call the kernel's functions or
//! read its data: it gets a few pages the kernel maps for it, a handoff page saying
//! what is where, the ports it may `out` to, and system calls. This crate is that
//! interface, seen from the task, and the handoff layouts, which the kernel links too.
//!
//! ## Modules, lowest first
//! | module | owns |
//! | --- | --- |
//! | [`handoff`] | the pages the kernel hands each task: where its rings and buffers are mapped, their grants, what to do |
//! | [`sys`] | the system calls the tasks make (a console line, a benchmark report, exit) and their `println!` |
//! | [`page`] | a page the kernel mapped into the task, as the rings' `SharedPage` |
//! | [`doorbell`] | a doorbell rung from ring 3 with an `out` the kernel allowed |
//! | [`once`] | a value a task takes once: its memory in `.bss` |
//! | [`entry`] | how a task starts (`task_entry!`), and its clock |

#![no_std]

pub mod handoff;
pub mod sys;
pub mod page;
pub mod doorbell;
pub mod once;
pub mod entry;
