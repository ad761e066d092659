//! The vCPU: running guest code and answering for it when it exits.
//!
//! | file | idea |
//! | --- | --- |
//! | [`exit_loop`] | `KVM_RUN` and what each exit means |
//! | [`hypercall`] | the VMM side of the hypercall ABI (`pv_abi::hypercall`) |
//! | [`watchdog`] | `--timeout`: kicking a guest that never stops out of `KVM_RUN` |
//! | [`counters`] | what the loop counts (exits, hypercalls) for `--stats` and `hv bench` |

pub mod counters;
pub mod exit_loop;
pub mod hypercall;
pub mod watchdog;
