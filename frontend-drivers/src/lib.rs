//! # frontend-drivers: the guest halves of hv's split drivers
//!
//! A frontend turns the guest kernel's I/O into requests on a shared ring, rings the
//! backend's doorbell, and waits for responses. It never touches a device: the backend,
//! outside the guest, does (crate `backend-drivers`). The code here is `no_std` and
//! knows nothing about how the guest reaches memory or the hypervisor; the kernel
//! supplies that through three small traits:
//!
//! | trait | the guest's implementation | a host test's implementation |
//! | --- | --- | --- |
//! | `pv_abi::ring::SharedPage` | a page through the kernel's direct map | guest memory in a test process |
//! | [`Doorbell`] | `out` to the device's doorbell port | writing the backend's eventfd |
//! | [`WaitForEvent`] | `sti; hlt` until the upcall | reading the upcall eventfd |
//!
//! Follow one block read: [`block::BlockFront::submit`] grants the buffer frames
//! ([`grant_table::GrantTableFront::grant`]) and puts a request on the ring;
//! [`block::BlockFront::kick`] publishes it and rings the doorbell if the backend asked
//! for one; [`block::BlockFront::wait_for_completion`] sleeps until the upcall, takes
//! the response and revokes the grants.
//!
//! ## DESIGN
//! - Owns: the front ends of the rings, the guest's grant table entries, the bookkeeping
//!   of requests in flight.
//! - Must never: trust a response (its id must match a request in flight), grant more
//!   than a request needs, or keep a grant after its response arrived.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod block;
pub mod console;
pub mod grant_table;

/// Rings one device's doorbell: tells its backend "the ring has new requests".
pub trait Doorbell {
    /// Rings it.
    fn ring(&self);
}

/// Sleeps until an event (the upcall) arrives.
pub trait WaitForEvent {
    /// Returns after at least one event has arrived since the last call (spurious
    /// returns are allowed: callers re-check their ring).
    fn wait(&self);
}
