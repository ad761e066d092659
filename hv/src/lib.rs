//! # hv: a paravirtual hypervisor on KVM, built for teaching
//!
//! hv is a VMM (virtual machine monitor): a user-space program that uses Linux's KVM to
//! run a guest kernel (`pv-guest`) on the real CPU, and steps in whenever the guest
//! needs the hypervisor.
//!
//! ## Layers
//!
//! The modules form layers, listed lowest first. A module may use the layers in the rows
//! before its own and never one in a row after it, so each layer can be read (and
//! tested) knowing only the layers it stands on. `tests/architecture.rs` reads this table
//! and fails if any module uses a layer from a later row (so no two modules can import
//! each other in a circle).
//!
//! | layer | owns | must never |
//! | --- | --- | --- |
//! | [`memory`] | guest RAM and the bounds check on every access to it | know what the bytes mean |
//! | [`kvm`] | the `Kvm → VmFd → VcpuFd` tree, memory slots, register state and the register dump, CPUID, what the host is | decide a layout or a policy: it is told which slots and registers to set |
//! | [`outcome`] | how a run ends ([`outcome::GuestStop`]), its message and hv's exit code | run anything |
//! | [`sandbox`] | seccomp filters for each kind of hv thread, and the report of a forbidden system call | know what a thread does beyond the list of calls it may make |
//! | [`trace`] | the typed record of a run and its two file formats | change what it records |
//! | [`boot`] | the kernel ELF (checked), the first page tables, the boot-info page, the first registers | touch KVM |
//! | [`shadow`] | shadow mode: the machine layout, shadow tables, trapped page-table writes | run the vCPU |
//! | [`devices`] | split-driver devices: doorbells (ioeventfd), upcalls (irqfd → MSI), backend threads; one file per device | reach guest memory except through checked ring pages and grants |
//! | [`record`] | record and replay: the log, the recorder (devices served on the vCPU thread), the replayer | run the vCPU, or let a device act on the guest except at an exit the guest made |
//! | [`vcpu`] | the exit loop, hypercalls, the `--timeout` watchdog, the loop's counters | outlive the run it serves |
//! | [`state`] | a VM's whole state out of the hypervisor: vCPU, devices' ring indices, memory mode; the snapshot file | run a guest |
//! | [`vmm`] | [`vmm::Vm`]: one guest (memory, vCPU, devices, memory mode) as a value; its config, errors and stats | hold state shared with another `Vm` |
//! | [`migration`] | pre-copy live migration: dirty tracking, the stream, the sender and the receiver, their figures | run a guest the stream did not deliver whole, or end the source's run before the destination confirms |
//! | [`bench`](mod@bench) | `hv bench` (memory modes; `--network`: the network and the balloon) and `hv blk-bench`: fresh VMs per measurement, baselines, reports | change how a guest runs |
//! | [`control`] | the control socket (`hv run --control`, `hv ctl`): its protocol, server threads and client | touch a VM except through jobs on its vCPU thread |
//! | [`top`] | `hv top`: a live view of a running hv, sampled through its control socket | lock anything on the guest's paths, or sample faster than asked |
//! | [`container`] | a container made by hand (namespaces, a memory cgroup), to set beside a VM | pretend to isolate what it does not |
//! | [`demo`] | `hv demo`: the course's concepts on real VMs, narrated and paced for a room | fake a figure: every one is measured in the run |
//! | [`cli`] | hv's command line: arguments, and the commands that run them | contain VMM logic |
//! | [`fuzz_entry`] | the bodies of the fuzz targets on hv's parsers (`fuzz/`, `tests/fuzz_corpus.rs`) | be used by hv itself |
//!
//! Differences from the plain layering one might expect: [`outcome`] sits below the
//! trace because the trace records the stop; the exit loop's counters live in [`vcpu`]
//! (the loop counts into them) and [`vmm::stats`] adds device and shadow counters to
//! them after the run.
//!
//! To follow one run, read [`vmm::Vm::new`] and [`vmm::Vm::run`]: each line is one call
//! into the layer that owns that step.
//!
//! ## DESIGN
//! - Owns: the KVM file descriptors, guest RAM, and all policy about guest input.
//! - Must never: panic on anything the guest or a kernel file contains, or touch host
//!   memory outside guest RAM on a guest's request.
//! - Data enters from the guest only through VM exits (registers and guest RAM read
//!   through [`memory::GuestRam`]'s checked accessors) and leaves through the
//!   console, the trace and the exit code.
#![deny(missing_docs)]

pub mod memory;
pub mod kvm;
pub mod outcome;
pub mod sandbox;
pub mod trace;
pub mod boot;
pub mod shadow;
pub mod devices;
pub mod record;
pub mod vcpu;
pub mod state;
pub mod vmm;
pub mod migration;
pub mod bench;
pub mod control;
pub mod top;
pub mod container;
pub mod demo;
pub mod cli;
#[doc(hidden)]
pub mod fuzz_entry;
