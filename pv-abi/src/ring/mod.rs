//! The shared-memory ring: how the two halves of a split driver pass requests and
//! responses, in the style of Xen's `xen/include/public/io/ring.h`.
//!
//! A frontend (a driver in the guest) and a backend (a thread in hv) share one 4 KiB
//! page. The frontend puts requests into it; the backend takes them out, does the work,
//! and puts each response into the slot its request came from. Nobody takes a lock:
//! each shared field has exactly one writer, and each side keeps its own progress in
//! private counters that the other side never sees. This one implementation serves
//! both sides: the guest's drivers use [`FrontRing`], hv's backends use [`BackRing`],
//! and each side reaches the page through its own [`SharedPage`].
//! (Course notes: producer/consumer with a bounded buffer; memory barriers.)
//!
//! ## The page
//!
//! ```text
//!  offset
//!       0 ┌──────────────┬───────────────┬──────────────┬───────────────┐
//!         │ req_prod u32 │ req_event u32 │ rsp_prod u32 │ rsp_event u32 │
//!      16 ├──────────────┴───────────────┴──────────────┴───────────────┤
//!         │ zero padding, so the header fills one 64-byte cache line    │
//!      64 ├─────────────────────────────────────────────────────────────┤
//!         │ slot 0: a request, then the response that answers it       │
//!  64 + S ├─────────────────────────────────────────────────────────────┤
//!         │ slot 1                                                      │
//!         │ …                                                           │
//!         │ slot N-1                                                    │
//!  64+N*S ├─────────────────────────────────────────────────────────────┤
//!         │ unused                                                      │
//!    4096 └─────────────────────────────────────────────────────────────┘
//!
//!  S = max(Req::SIZE, Rsp::SIZE) rounded up to 8            (slot_size)
//!  N = the largest power of two with 64 + N*S <= 4096       (ring_size)
//! ```
//!
//! | slot bytes | slots N | used by |
//! | --- | --- | --- |
//! | 8 (the smallest) | 256 | |
//! | 64 | 32 | |
//! | 88 | 32 | block: 88-byte requests |
//! | 128 | 16 | |
//! | 256 ([`MAX_ENTRY_SIZE`]) | 8 | console: 256-byte requests; the largest entries allowed |
//!
//! ## Indices
//!
//! Indices are free-running `u32` counters: they only ever grow (wrapping from
//! `u32::MAX` to 0), and `index & (N - 1)` is the slot. The number of entries between two
//! indices is their wrapping difference, which stays right across the wrap because N
//! divides 2³² (that is why N is a power of two). Each index has one writer:
//!
//! | index | where | written by | read by | meaning |
//! | --- | --- | --- | --- | --- |
//! | `req_prod` | page | frontend | backend | requests before it are published |
//! | `req_event` | page | backend | frontend | "notify me when the request at `req_event - 1` is published" |
//! | `rsp_prod` | page | backend | frontend | responses before it are published |
//! | `rsp_event` | page | frontend | backend | "notify me when the response at `rsp_event - 1` is published" |
//! | `req_prod_pvt` | frontend | frontend | | requests pushed, published or not |
//! | `rsp_cons` | frontend | frontend | | responses taken |
//! | `req_cons` | backend | backend | | requests taken |
//! | `rsp_prod_pvt` | backend | backend | | responses pushed, published or not |
//!
//! Between two honest sides they always stand in this order, within N of each other:
//!
//! ```text
//!  rsp_cons ≤ rsp_prod ≤ rsp_prod_pvt ≤ req_cons ≤ req_prod ≤ req_prod_pvt ≤ rsp_cons + N
//!     │  responses │ answered,  │ taken, being │ published,  │ pushed,    │ free
//!     │  waiting   │ not yet    │ handled by   │ waiting for │ not yet    │ slots
//!     │  for the   │ published  │ the backend  │ the backend │ published  │
//!     │  frontend  │            │              │             │            │
//! ```
//!
//! ## Memory ordering: who must see what first
//!
//! 1. **Entry before index.** A producer writes the entry into its slot, *then* stores
//!    the producer index with Release ordering. The consumer loads the index with
//!    Acquire ordering, *then* reads the slot. So a consumer that sees the index also
//!    sees the entry it covers.
//! 2. **Publish, full fence, then read the event index** (and, on the other side: **set
//!    the event index, full fence, then re-read the producer index**). This is the one
//!    place the ring needs a full barrier ([`SharedPage::full_fence`]). Release and
//!    Acquire do not stop a CPU from performing a later load before an earlier store
//!    has become visible (x86 allows exactly this through its store buffer). Without the
//!    fence both could happen at once: the producer reads the old event index and does
//!    not notify, while the consumer reads the old producer index and goes to sleep, a
//!    lost wake-up. With a fence on both sides, at least one of them sees the other's
//!    store.
//! 3. **Slots are reused only after they are read.** The backend writes a response only
//!    into the slot of a request it has already taken (copied out); the frontend writes a
//!    new request only into the slot of a response it has already taken. Each side's
//!    own program order protects these, so they need no barrier.
//!
//! ## Notifications
//!
//! Publishing makes entries visible; it does not wake anybody. The publisher also
//! rings the peer's event channel, but only if the peer asked for it: a consumer about
//! to sleep writes `event = cons + 1` ("wake me when you publish entry number
//! `cons`"). A publish that moves the producer index from `old` to `new` notifies
//! exactly when `old < event <= new`, which in wrapping arithmetic is Xen's rule
//! `new - event < new - old`. A consumer that is busy has not re-armed its event index,
//! so the producer stops notifying it until it has drained the ring and is about to
//! sleep again.
//!
//! ## A worked example: one request's round trip
//!
//! A fresh ring: `req_prod = rsp_prod = 0`, `req_event = rsp_event = 1`.
//!
//! 1. Frontend: [`FrontRing::push_request`] writes request A into slot 0;
//!    `req_prod_pvt = 1`. The backend cannot see it yet.
//! 2. Frontend: [`FrontRing::publish_requests`]: stores `req_prod = 1`, fence, reads
//!    `req_event = 1`; `1 - 1 < 1 - 0`, so it returns `true` and the driver rings the
//!    doorbell.
//! 3. Backend wakes: [`BackRing::take_request`] reads `req_prod = 1` (once), checks it,
//!    copies slot 0 out as A; `req_cons = 1`.
//! 4. Backend: [`BackRing::push_response`] writes A's answer `a` into slot 0;
//!    [`BackRing::publish_responses`] stores `rsp_prod = 1`, fence, reads
//!    `rsp_event = 1`: notify, so hv raises the guest's upcall.
//! 5. Backend: `take_request` finds nothing; [`BackRing::final_check_for_requests`]
//!    sets `req_event = 2`, fence, reads `req_prod = 1`: nothing new, so it sleeps.
//! 6. Frontend, in its upcall: [`FrontRing::take_response`] reads `rsp_prod = 1`,
//!    copies `a` out of slot 0; `rsp_cons = 1`. Nothing more, so
//!    [`FrontRing::final_check_for_responses`] sets `rsp_event = 2` and finds nothing.
//!
//! Had the frontend published a request B between steps 3 and 5, `req_event` would
//! still have been 1: `2 - 1 < 2 - 1` is false, so no doorbell. None was needed: the
//! backend's final check in step 5 reads `req_prod = 2` and takes B. One doorbell (one
//! wake-up of a sleeping thread) saved, no request left behind.
//!
//! ## A hostile peer
//!
//! The page is writable by both sides, so each side must assume the other may write
//! anything anywhere at any time: hv's backends guard against a malicious guest, and
//! the guest's drivers against a buggy host. So:
//!
//! - **Each shared index is read once per call** and checked before it is used: a value
//!   read twice may differ between the check and the use. A producer index that claims
//!   more entries than could exist is a [`RingError::CorruptProducer`]; the call
//!   consumes nothing and changes no state, and the caller decides what to do.
//! - **Each entry is copied out before anybody looks at it.** `take_request` and
//!   `take_response` decode the slot into a private value and return that. If the
//!   backend checked a length in the page and then read the length from the page
//!   again to use it, the guest could change it in between (a time-of-check to
//!   time-of-use attack). Checking a copy closes that door: the caller checks exactly
//!   what it uses. [`RingEntry::decode`] accepts any bytes, so garbage decodes to a value
//!   that fails those checks rather than to a panic.
//! - **Every call does a bounded amount of work**: no loop runs over a count the peer
//!   controls.
//!
//! A peer that writes the *event* index it owns wrongly only changes when it is itself
//! notified, so it can only hurt itself.
//!
//! ## What the ring does not guarantee
//!
//! - **No flow control beyond the ring size.** At most N requests are outstanding; a
//!   frontend with more to send gets [`RingFull`] and must wait for responses.
//! - **No interlocks.** Nothing stops the peer from scribbling on the page; the ring only
//!   makes sure it never trusts what it reads. Checking the *contents* of an entry
//!   (lengths, sector numbers, grant references) is the receiver's job.
//! - **No matching of responses to requests.** Responses arrive in the order the backend
//!   pushes them; the entry itself must say which request it answers (an id).
//! - **Notifications are hints.** A woken side must always look at the ring again
//!   (through its final check); a spurious wake-up costs a little time, and the event
//!   indices exist so that a *needed* one is never missed.
//! - **One frontend, one backend.** The private counters are not shared: two threads on
//!   the same side need a lock around their ring.

use core::fmt;
use core::marker::PhantomData;

mod back;
mod front;

pub use back::BackRing;
pub use front::FrontRing;

#[cfg(test)]
mod tests;

/// Size of the page a ring lives in.
pub const RING_PAGE_SIZE: usize = 4096;
/// Size of the header: the four indices, padded to a 64-byte cache line so that the
/// slots start on a line of their own.
pub const HEADER_SIZE: usize = 64;
/// Byte offset of `req_prod` in the page.
pub const REQ_PROD_OFFSET: usize = 0;
/// Byte offset of `req_event` in the page.
pub const REQ_EVENT_OFFSET: usize = 4;
/// Byte offset of `rsp_prod` in the page.
pub const RSP_PROD_OFFSET: usize = 8;
/// Byte offset of `rsp_event` in the page.
pub const RSP_EVENT_OFFSET: usize = 12;
/// Slots are a multiple of this many bytes, so every slot starts 8-byte aligned.
pub const SLOT_ALIGN: usize = 8;
/// Largest encoded request or response. Entries are encoded and decoded through a
/// buffer of this size on the stack; raise it if a device needs bigger entries (a
/// ring of 256-byte slots still has 8 of them).
pub const MAX_ENTRY_SIZE: usize = 256;

/// The size of a slot that must hold both a `req_size`-byte request and a
/// `rsp_size`-byte response: the larger of the two, rounded up to [`SLOT_ALIGN`] (and
/// never zero).
pub const fn slot_size(req_size: usize, rsp_size: usize) -> usize {
    let larger = if req_size > rsp_size { req_size } else { rsp_size };
    let rounded = larger.div_ceil(SLOT_ALIGN) * SLOT_ALIGN;
    if rounded == 0 {
        SLOT_ALIGN
    } else {
        rounded
    }
}

/// The number of slots N of a ring whose slots are `slot_bytes` long: the largest power
/// of two with `HEADER_SIZE + N * slot_bytes <= RING_PAGE_SIZE`, or 0 if not even one
/// slot fits.
///
/// # Panics
/// If `slot_bytes` is 0 (at compile time, when called in a constant).
pub const fn ring_size(slot_bytes: usize) -> usize {
    assert!(slot_bytes > 0, "a ring slot cannot be empty");
    let fit = (RING_PAGE_SIZE - HEADER_SIZE) / slot_bytes;
    if fit == 0 {
        0
    } else {
        // The largest power of two not above `fit`.
        1 << fit.ilog2()
    }
}

// The layout, checked when the crate compiles.
const _: () = {
    assert!(RING_PAGE_SIZE as u64 == crate::layout::PAGE_SIZE);
    // The four indices fit in the header, each 4-byte aligned; the slots after it
    // start aligned.
    assert!(RSP_EVENT_OFFSET + 4 <= HEADER_SIZE && RSP_EVENT_OFFSET.is_multiple_of(4));
    assert!(HEADER_SIZE.is_multiple_of(SLOT_ALIGN));
    // The smallest slot gives the most slots: 256. The wrapping index arithmetic needs
    // N <= 2^31 (so that "more than N ahead" is distinguishable from "behind").
    assert!(ring_size(slot_size(0, 0)) == 256);
    // The largest entries still leave a ring worth having.
    assert!(ring_size(slot_size(MAX_ENTRY_SIZE, MAX_ENTRY_SIZE)) == 8);
};

/// The shared page a ring lives in, as each side can reach it. The guest implements it
/// over a raw pointer (volatile accesses + fences), the host over guest RAM with
/// atomics, the tests over a plain buffer. Offsets are byte offsets inside one 4 KiB
/// page; the ring only ever passes offsets it computed itself from masked indices, so
/// they are always in range and aligned.
pub trait SharedPage {
    /// Reads a u32 (a producer or event index) with Acquire ordering.
    fn load_u32(&self, offset: usize) -> u32;
    /// Writes a u32 with Release ordering.
    fn store_u32(&self, offset: usize, value: u32);
    /// Copies bytes out of the page.
    fn read_bytes(&self, offset: usize, buf: &mut [u8]);
    /// Copies bytes into the page.
    fn write_bytes(&self, offset: usize, data: &[u8]);
    /// A full memory barrier (orders earlier stores before later loads): the `mb()` that
    /// the event-index protocol needs between publishing and re-checking.
    fn full_fence(&self);
}

/// A request or response: a fixed-size, plain-bytes encoding. `decode` must accept ANY
/// bytes (the peer is hostile) and produce a value; checking it is the receiver's job.
pub trait RingEntry: Sized + Copy {
    /// Encoded size in bytes (at most [`MAX_ENTRY_SIZE`]; a larger entry is a compile
    /// error where a ring of it is created).
    const SIZE: usize;
    /// Writes the encoding into `out`, which is exactly `SIZE` bytes long.
    fn encode(&self, out: &mut [u8]);
    /// Reads a value back from `bytes`, which is exactly `SIZE` bytes long and may hold
    /// anything at all.
    fn decode(bytes: &[u8]) -> Self;
}

/// One of the four indices in the ring's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderField {
    /// `req_prod`, written by the frontend.
    ReqProd,
    /// `req_event`, written by the backend.
    ReqEvent,
    /// `rsp_prod`, written by the backend.
    RspProd,
    /// `rsp_event`, written by the frontend.
    RspEvent,
}

impl HeaderField {
    /// Its byte offset in the page.
    pub const fn offset(self) -> usize {
        match self {
            HeaderField::ReqProd => REQ_PROD_OFFSET,
            HeaderField::ReqEvent => REQ_EVENT_OFFSET,
            HeaderField::RspProd => RSP_PROD_OFFSET,
            HeaderField::RspEvent => RSP_EVENT_OFFSET,
        }
    }

    /// Its name, as the module documentation and error messages spell it.
    pub const fn name(self) -> &'static str {
        match self {
            HeaderField::ReqProd => "req_prod",
            HeaderField::ReqEvent => "req_event",
            HeaderField::RspProd => "rsp_prod",
            HeaderField::RspEvent => "rsp_event",
        }
    }
}

/// Something on the ring is not as the protocol allows. Each variant carries the values
/// that show it. When a call returns one, it has consumed nothing and changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The peer's producer index claims more entries than could be waiting: more than
    /// the free slots for requests, or more responses than requests published. Only a
    /// broken or hostile peer writes such a value.
    CorruptProducer {
        /// The index read: `req_prod` (by the backend) or `rsp_prod` (by the frontend).
        field: HeaderField,
        /// The value read from the page.
        value: u32,
        /// This side's consumer index: `req_cons` or `rsp_cons`.
        consumer: u32,
        /// The most entries that could honestly be waiting: `value - consumer` (wrapping)
        /// may not exceed it.
        limit: u32,
    },
    /// The backend pushed a response, but every request it has taken is already
    /// answered: a bug in the backend itself, not in its peer.
    NothingToAnswer {
        /// The backend's `req_cons` (equal to its `rsp_prod_pvt`).
        req_cons: u32,
    },
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RingError::CorruptProducer { field, value, consumer, limit } => {
                let consumer_name = match field {
                    HeaderField::ReqProd | HeaderField::ReqEvent => "req_cons",
                    HeaderField::RspProd | HeaderField::RspEvent => "rsp_cons",
                };
                write!(
                    f,
                    "corrupt {} = {value}: it is {} entries past {consumer_name} = {consumer}, but at most {limit} can be waiting",
                    field.name(),
                    value.wrapping_sub(consumer),
                )
            }
            RingError::NothingToAnswer { req_cons } => {
                write!(f, "a response was pushed, but all {req_cons} requests taken (modulo 2^32) are answered")
            }
        }
    }
}

impl core::error::Error for RingError {}

/// Every slot holds a request or a response the frontend has not yet taken: wait for a
/// response before pushing another request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingFull;

impl fmt::Display for RingFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the ring is full: every slot holds an outstanding request")
    }
}

impl core::error::Error for RingFull {}

/// The shape of the ring for one request and response type: slot size and count, and
/// where a slot lives. Shared by both sides, so they cannot disagree.
struct Geometry<Req, Rsp>(PhantomData<(Req, Rsp)>);

impl<Req: RingEntry, Rsp: RingEntry> Geometry<Req, Rsp> {
    /// Bytes per slot.
    const SLOT_BYTES: usize = slot_size(Req::SIZE, Rsp::SIZE);

    /// Number of slots, N. Evaluating it checks the entry sizes: a ring of too-large
    /// entries does not compile.
    const SLOTS: u32 = {
        assert!(Req::SIZE <= MAX_ENTRY_SIZE, "ring request larger than MAX_ENTRY_SIZE");
        assert!(Rsp::SIZE <= MAX_ENTRY_SIZE, "ring response larger than MAX_ENTRY_SIZE");
        ring_size(Self::SLOT_BYTES) as u32
    };

    /// Byte offset of the slot that `index` falls in.
    fn slot_offset(index: u32) -> usize {
        HEADER_SIZE + (index & (Self::SLOTS - 1)) as usize * Self::SLOT_BYTES
    }

    /// Encodes `entry` (a request or a response) into the slot of `index`.
    fn write_slot<P: SharedPage, E: RingEntry>(page: &P, index: u32, entry: &E) {
        let mut buf = [0u8; MAX_ENTRY_SIZE];
        let bytes = &mut buf[..E::SIZE];
        entry.encode(bytes);
        page.write_bytes(Self::slot_offset(index), bytes);
    }

    /// Copies the slot of `index` out of the page, then decodes the copy: whatever the
    /// peer writes into the page afterwards cannot change the value returned.
    fn read_slot<P: SharedPage, E: RingEntry>(page: &P, index: u32) -> E {
        let mut buf = [0u8; MAX_ENTRY_SIZE];
        let bytes = &mut buf[..E::SIZE];
        page.read_bytes(Self::slot_offset(index), bytes);
        E::decode(bytes)
    }
}

/// Xen's notification rule: a publish that moved a producer index from `old` to `new`
/// must notify the peer iff the peer's event index lies in `(old, new]`, in wrapping
/// arithmetic: `new - event < new - old`.
fn must_notify(old: u32, new: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}
