//! # hv: a paravirtual hypervisor on KVM, built for teaching
//!
//! hv is a VMM (virtual machine monitor): a user-space program that uses Linux's KVM to
//! run a guest kernel (`pv-guest`) on the real CPU, and steps in whenever the guest
//! needs the hypervisor. Read the modules in this order to follow one run:
//!
//! | module | role |
//! | --- | --- |
//! | [`cli`] | the command line |
//! | [`run`] | the life of one VM, step by step |
//! | [`machine`] | KVM: the VM, its memory slot, the vCPU |
//! | [`guest_ram`] | guest RAM and the bounds checks on every access to it |
//! | [`boot`] | ELF loading, first page tables, registers for 64-bit mode |
//! | [`cpuid`] | the CPUID the guest sees, with hv's own leaves |
//! | [`vcpu_loop`] | `KVM_RUN` and what each exit means |
//! | [`watchdog`] | `--timeout`: kicking a guest that never stops out of `KVM_RUN` |
//! | [`hypercall`] | the VMM side of the hypercall ABI (`pv_abi::hypercall`) |
//! | [`devices`] | split-driver devices: doorbells (ioeventfd), upcalls (irqfd → MSI), backend threads |
//! | [`console`] | where guest output goes |
//! | [`outcome`] | how a run ends, and the messages for each ending |
//! | [`trace`], [`stats`] | what a student can look at afterwards |
//! | [`bench`] | `hv bench`: shadow paging against ept, workloads and baselines in one run |
//! | [`blk_bench`], [`host_info`] | `hv blk-bench`: block ring throughput against the host, honestly labelled |
//!
//! ## DESIGN
//! - Owns: the KVM file descriptors, guest RAM, and all policy about guest input.
//! - Must never: panic on anything the guest or a kernel file contains, or touch host
//!   memory outside guest RAM on a guest's request.
//! - Data enters from the guest only through VM exits (registers and guest RAM read
//!   through [`guest_ram::GuestRam`]'s checked accessors) and leaves through the
//!   console, the trace and the exit code.
#![deny(missing_docs)]

pub mod bench;
pub mod blk_bench;
pub mod boot;
pub mod cli;
pub mod console;
pub mod cpuid;
pub mod devices;
pub mod guest_image;
pub mod guest_ram;
pub mod host_info;
pub mod hypercall;
pub mod machine;
pub mod outcome;
pub mod run;
pub mod shadow;
pub mod stats;
pub mod trace;
pub mod vcpu_loop;
pub mod watchdog;
