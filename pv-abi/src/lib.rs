//! # pv-abi: the contract between hv and its guest
//!
//! A paravirtual guest *knows* it runs on a hypervisor and talks to it through an
//! agreed interface instead of pretending to drive real hardware. This crate is that
//! agreement, in the spirit of Xen's `xen/include/public/`: every number, structure
//! and calling convention that both sides must agree on lives here and nowhere else.
//! Both the VMM (`hv`, std) and the guest kernel (`pv-guest`, no_std) depend on it, so
//! it is `no_std`, depends only on `bitflags` (for its flag words), and is tested on the host.
//!
//! ## Modules, lowest first
//! A module uses only the rows above its own (`tests/architecture.rs` checks it).
//!
//! | module | what it fixes | must never |
//! | --- | --- | --- |
//! | [`addr`] | typed addresses: guest-virtual, pseudo-physical, machine, and their frame numbers | convert between address spaces (only the p2m or a page table knows how) |
//! | [`paging`] | x86-64 paging, once: entry flags, table index, levels, page sizes | say what an entry's frame means (the caller knows which tree it walks) |
//! | [`layout`] | where things are: guest-physical map, guest-virtual map, the page-table pool | move without [`cpuid::HV_ABI_VERSION`] changing |
//! | [`cpuid`] | how the guest recognises hv (the hypervisor CPUID leaves) | promise features hv lacks |
//! | [`boot_info`] | the page the VMM fills in before the first guest instruction runs | be trusted unchecked by the guest |
//! | [`hypercall`] | how the guest calls the hypervisor: port, registers, numbers, error codes | have a call whose bad argument is fatal |
//! | [`event_channel`] | how the halves of a split driver wake each other: doorbells and upcalls | need an exit to ring a doorbell |
//! | [`exception`] | the names of the x86 exception vectors, shared by both sides | |
//! | [`ring`] | the shared-page request/response ring both halves of a split driver use | trust an index the other side wrote |
//! | [`grant`] | how a frontend lets a backend touch one of its frames, which frames it may, and how that is checked | let a page table or hv's reserved area be granted |
//! | [`device`] | each device's request and response formats (console, block, net) | hold logic of either side |
//!
//! ## DESIGN
//! - Owns: numbers and `#[repr(C)]` layouts. Nothing here touches memory or hardware.
//! - Must never: contain logic that only one side needs, or depend on `std`.
//! - Data enters and leaves only as the plain values and structures defined here.
// no_std for the guest; the unit tests use std (strings, formatting).
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod addr;
pub mod paging;
pub mod layout;
pub mod cpuid;
pub mod boot_info;
pub mod hypercall;
pub mod event_channel;
pub mod exception;
pub mod ring;
pub mod grant;
pub mod device;

pub use boot_info::{BootInfo, CmdlineError, DeviceInfo, MmuMode};
pub use hypercall::{Hypercall, HypercallError};
