//! # backend-drivers: the host halves of hv's split drivers
//!
//! A *split driver* puts a device's driver in two halves that talk through shared
//! memory: a **frontend** in the guest (crate `frontend-drivers`) that turns I/O into
//! requests on a ring, and a **backend** here, outside the guest, that carries them out
//! on real host resources. In Xen the backend runs in a separate "driver domain"; in hv
//! each backend runs on its own host thread, which is the same idea in miniature: the
//! backend is not part of the vCPU loop, sleeps until the guest rings its doorbell, and
//! reaches guest memory only through what the guest granted.
//!
//! Follow one block request through this crate:
//!
//! ```text
//!  doorbell eventfd fires (KVM ioeventfd: the guest wrote its doorbell port)
//!    └─► run_backend (runner/thread.rs)      the backend thread wakes
//!          └─► runner::service_ring (runner/service.rs)  take each request off the ring (a copy)
//!                └─► block::BlockBackend::handle
//!                      ├─ block::check::check_request   every field checked first
//!                      ├─ grant_table::GrantTable::check each frame, as granted
//!                      └─ block::image::DiskImage       pread / pwrite / fdatasync
//!                push the response, publish, and if the guest asked to be woken:
//!          └─► event_channel::GuestNotifier::notify     pending flag + irqfd → upcall
//! ```
//!
//! ## Modules, lowest first
//!
//! A module uses only the modules in rows before its own, so no two modules import each
//! other in a circle.
//!
//! | module | owns | must never |
//! | --- | --- | --- |
//! | [`events`] | what a backend reports for hv's trace | record after signalling the guest |
//! | [`guest_page`] | one page of guest memory as the ring sees it; where a pseudo-physical address is in guest memory | reach outside its page |
//! | [`event_channel`] | waking the guest: pending flag, then irqfd | signal before the flag is set |
//! | [`grant_table`] | the grant check, a backend's only way into guest frames | trust an entry it has not just read and checked |
//! | [`runner`] | the backend thread and the ring loop every device shares | know any one device |
//! | [`console`] | the console backend and its check of the frontend's requests | send a control character to the terminal |
//! | [`block`] | the block backend, its disk image and its check of the frontend's requests | move data before every grant of a request passed |
//! | [`balloon`] | the balloon backend: its check of the frontend's batches, the set of frames the host holds, releasing their host memory | release a frame before every frame of its batch passed |
//! | [`frame_port`] | what a network backend sees of the network: one port, frames in and out | block its caller |
//! | [`net`] | the network backend (netback): both rings, the port, the backlog, its own bounded thread loop, and its check of the frontend's requests | copy a byte before the request's length, placement and grant passed; serve one source without bound |
//! | [`switch`] | the virtual L2 learning switch joining network backends and host TAP devices: MAC table with ageing, per-port bounded queues, the TAP port thread | block a sender, grow without bound on what guests send, or echo a frame to its sender |
//! | [`fuzz_entry`] | the bodies of the fuzz targets on this crate's parsers (`fuzz/`, `tests/fuzz_corpus.rs`) | be used by the backends themselves |
//!
//! ## One folder per device, mirrored across the split
//!
//! ```text
//!  backend-drivers/src/<dev>/        frontend-drivers/src/<dev>/       pv-abi/src/device/<dev>.rs
//!    mod.rs    the driver              mod.rs    the driver              request and response formats
//!    check.rs  the frontend's          check.rs  the backend's
//!              requests, checked                 responses, checked
//!    (image.rs: block only, the disk image on the host; thread.rs: net only, its loop
//!     over two doorbells and a port; release.rs and state.rs: balloon only, host
//!     memory and the set of frames held)
//! ```
//!
//! `check.rs` is where every test of the peer's input lives, on both sides: here
//! `console::check` (length, control characters) and `block::check` (operation,
//! counts, sector range). Grants are checked by the shared [`grant_table`], which every
//! device that moves data through guest frames uses.
//!
//! ## Adding a device
//!
//! Copy the console's folder layout:
//! 1. its formats in `pv_abi::device::<dev>` (like `pv_abi::device::console`);
//! 2. here, `src/<dev>/mod.rs`: a `<Dev>Backend` implementing
//!    [`runner::RequestHandler`] (one request in, one response out; never panic or block
//!    on guest input), and `src/<dev>/check.rs`: `check_request`, called first in
//!    `handle`, turning the raw request into checked values or a status for the guest;
//!    host resources it needs get a file of their own next to them (like
//!    `block/image.rs`);
//! 3. the frontend's folder with the same two files (see `frontend-drivers`);
//! 4. the hv side: `hv/src/devices/<dev>.rs` starts it with [`runner::spawn`].
//!
//! The thread, the ring loop, notifications and counters come from [`runner`]: a
//! device writes none of them.
//!
//! ## DESIGN
//! - Owns: the backend threads, their rings' back ends, and the host resources (the
//!   disk image, hv's standard output); the virtual switch that joins network backends
//!   ([`switch`]), and the TAP devices attached to it with their threads.
//! - Must never: touch guest memory except its ring page, its pending flag and frames
//!   that [`grant_table::GrantTable`] has just checked (the balloon: frames its own
//!   check has just accepted, which it only releases or zeroes, never reads for meaning); trust any value read from
//!   shared memory before copying and checking it; panic or loop forever on anything a
//!   guest writes.
//! - Data enters through the ring and granted frames; leaves through responses,
//!   the pending flag and the irqfd; control (start, stop, stats) comes over crossbeam
//!   channels from hv. Network frames move between ports of the [`switch`] (each a
//!   [`frame_port::FramePort`]), and between a TAP port and the host's kernel.
//!
//! Everything here works on plain vm-memory mappings ([`GuestMemory`]) and plain
//! eventfds, so frontend and backend are tested together in one process without KVM
//! (`tests/split_driver.rs`).
#![deny(missing_docs)]

/// Guest memory as the host sees it: vm-memory's mapping with a **dirty bitmap**. Every
/// write made through it (a backend's response, a block read's data, hv's own stores)
/// sets the bit of the page it touched, one bit per 4 KiB page. KVM's dirty log sees
/// only what the guest's own instructions wrote; live migration needs both (hv's
/// `migration` module explains).
pub type GuestMemory = vm_memory::GuestMemoryMmap<vm_memory::bitmap::AtomicBitmap>;

pub mod events;
pub mod guest_page;
pub mod event_channel;
pub mod grant_table;
pub mod runner;
pub mod console;
pub mod block;
pub mod balloon;
pub mod frame_port;
pub mod net;
pub mod switch;
#[doc(hidden)]
pub mod fuzz_entry;
