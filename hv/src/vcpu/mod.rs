//! The vCPU: running guest code and answering for it when it exits.
//!
//! | file | idea |
//! | --- | --- |
//! | [`exit_loop`] | `KVM_RUN` and what each exit means |
//! | [`hypercall`] | the VMM side of the hypercall ABI (`pv_abi::hypercall`) |
//! | [`kick`] | getting the vCPU thread out of `KVM_RUN` from another thread |
//! | [`control`] | jobs other threads give the vCPU thread, run at an exit boundary (pause, snapshot…) |
//! | [`watchdog`] | `--timeout`: kicking a guest that never stops out of `KVM_RUN` |
//! | [`counters`] | what the loop counts (exits, hypercalls) for `--stats` and `hv bench` |
//! | [`handling`] | how long hv itself spends on each kind of exit |

pub mod handling;
pub mod counters;
pub mod kick;
pub mod control;
pub mod exit_loop;
pub mod hypercall;
pub mod watchdog;
