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
//! the response and revokes the grants. A caller that reuses its buffers grants them
//! once instead ([`block::BlockFront::grant_persistent`], `submit_granted`,
//! `take_completion`): the kernel's path for ring-3 tasks does.
//!
//! ## Modules, lowest first
//!
//! A module uses only the modules in rows before its own (and the two traits below), so
//! no two modules import each other in a circle.
//!
//! | module | owns | must never |
//! | --- | --- | --- |
//! | [`grant_table`] | the guest's grant entries: handing out and revoking | grant a frame it was not asked to |
//! | [`console`] | the console frontend and its check of the backend's responses | lose or reorder text |
//! | [`block`] | the block frontend, its requests in flight and its check of the backend's responses | keep a request's grant after its response (persistent grants are the caller's, revoked when it lets go of the buffer) |
//! | [`net`] | the network frontend: its tx and rx buffers, both rings, and its check of the backend's responses | copy a received frame before its id, length and offset passed |
//! | [`balloon`] | the balloon frontend: batches of frames in flight, the control block's target and floor | choose frames (the kernel owns its allocator) or wait |
//!
//! ## One folder per device, mirrored across the split
//!
//! ```text
//!  frontend-drivers/src/<dev>/       backend-drivers/src/<dev>/        pv-abi/src/device/<dev>.rs
//!    mod.rs    the driver              mod.rs    the driver              request and response formats
//!    check.rs  the backend's           check.rs  the frontend's
//!              responses, checked                requests, checked
//! ```
//!
//! A student who has read the console's two folders knows where everything of the
//! block device is: the driver in `mod.rs`, and in `check.rs` every test applied to
//! what the *other* side wrote before it is acted on. Anything only one device needs
//! sits next to them (the backend's `block/image.rs`).
//!
//! Frontends that grant frames each own a range of the one grant table: the kernel
//! takes the table with [`grant_table::GrantTableFront::new`] and hands part of it to
//! the next frontend with [`grant_table::GrantTableFront::split_off`].
//!
//! ## Adding a device
//!
//! 1. Its formats in `pv_abi::device::<dev>` (copy `pv_abi::device::console`).
//! 2. Here, a folder `src/<dev>/` laid out like [`console`]: `mod.rs` with the
//!    `<Dev>Front` type over a `FrontRing` (plus a [`grant_table::GrantTableFront`] if
//!    the backend must touch guest frames), and `check.rs` with `check_response`,
//!    the only way a response reaches the driver.
//! 3. In `backend-drivers`, the same folder with the same two files (its own "adding a
//!    device" section says what goes in them).
//! 4. The hv side: `hv/src/devices/<dev>.rs` wires the backend to the guest.
//!
//! ## DESIGN
//! - Owns: the front ends of the rings, the guest's grant table entries, the bookkeeping
//!   of requests in flight.
//! - Must never: trust a response (its id must match a request in flight), grant more
//!   than a request needs, or keep a grant after its response arrived (except a
//!   persistent grant, which its caller holds until it revokes it: see
//!   [`block::BlockFront::grant_persistent`]).
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod grant_table;
pub mod console;
pub mod block;
pub mod net;
pub mod balloon;

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
