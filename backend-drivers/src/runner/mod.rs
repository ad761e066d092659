//! Running a backend: the part every device shares.
//!
//! A device only says how to handle one request ([`RequestHandler`]); everything around
//! that is written once, here, in two files of one idea each:
//!
//! - `thread.rs`: **the backend thread** ([`spawn`], [`BackendHandle`]). It sleeps
//!   (epoll) on two eventfds: the **doorbell**, which KVM signals when the guest writes
//!   the device's doorbell port (ioeventfd), and a **control** eventfd that hv signals
//!   after sending a [`Control`] message over a crossbeam channel (start, stats, stop).
//! - `service.rs`: **serving the ring** ([`service_ring`]), what the thread does each
//!   time the doorbell rings, in the shape of Xen's `RING_FINAL_CHECK_FOR_REQUESTS`
//!   loop: take every request, answer each, publish, and only stop once a final check
//!   (which re-arms the guest's notification) finds nothing. Without that last step a
//!   request published just as the backend was going to sleep would wait forever.
//!
//! - `inline.rs`: **serving on the caller's thread** ([`InlineBackend`]): no thread and
//!   no doorbell eventfd; the caller (hv's vCPU thread, in a recorded run) calls
//!   [`InlineBackend::serve_doorbell`] when the guest's doorbell write exits to it, and
//!   raises the upcall itself when told to. Nothing then happens concurrently with the
//!   guest, which is what makes a run replayable.
//!
//! This file holds what both share: the handler trait, what a handler may use, the
//! wiring, the notification policy and the counters.

mod inline;
mod service;
mod thread;

use std::sync::Arc;

use pv_abi::ring::RingEntry;
use vmm_sys_util::eventfd::EventFd;

use crate::event_channel::GuestNotifier;
use crate::events::DeviceEventSink;
use crate::guest_page::GuestPage;
pub use inline::{InlineBackend, InlineService, Served};
pub use service::service_ring;
pub use thread::{spawn, spawn_with_setup, BackendHandle, Control, DrainError, SpawnError, ThreadSetup};
pub(crate) use thread::{RateLimit, REPORT_INTERVAL};

/// How one device answers one request.
pub trait RequestHandler: Send + 'static {
    /// The ring's request type.
    type Request: RingEntry + Send;
    /// The ring's response type.
    type Response: RingEntry + Send;
    /// Device name, for traces and messages.
    const NAME: &'static str;

    /// Carries out one request (already copied out of shared memory) and says how it
    /// went. Must not panic or block forever on anything the request contains.
    fn handle(&mut self, request: &Self::Request, cx: &mut HandlerContext) -> Self::Response;
    /// The id a request carries, for the trace.
    fn request_id(request: &Self::Request) -> u64;
    /// A one-line description of a request, for the trace.
    fn summarize(request: &Self::Request) -> String;
    /// The id and status name of a response, for the trace.
    fn describe_response(response: &Self::Response) -> (u64, String);
}

/// What a handler may use besides its own state.
pub struct HandlerContext<'a> {
    /// Where to record events (grant checks, for instance).
    pub events: &'a dyn DeviceEventSink,
    /// Counters the handler adds to.
    pub stats: &'a mut BackendStats,
}

/// When the backend signals the guest after publishing responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifyPolicy {
    /// Only when the guest asked to be woken (the ring's event index): the normal mode.
    EventIndex,
    /// After every publish, whatever the guest asked: for measuring what suppression saves.
    Always,
}

/// Counters of one backend.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Doorbell writes by the guest (an eventfd counts every write).
    pub doorbells: u64,
    /// Times the thread woke for the doorbell.
    pub wakeups: u64,
    /// Requests taken off the ring.
    pub requests: u64,
    /// Upcalls signalled to the guest.
    pub notifications: u64,
    /// Publishes after which the guest did not need a signal.
    pub notifications_suppressed: u64,
    /// Grant references refused.
    pub grant_refusals: u64,
    /// Requests answered with an error status.
    pub failed_requests: u64,
    /// Bytes moved from the device to the guest.
    pub bytes_to_guest: u64,
    /// Bytes moved from the guest to the device.
    pub bytes_from_guest: u64,
    /// Times the ring was found corrupt.
    pub ring_errors: u64,
}

/// Everything a backend thread is wired to.
pub struct BackendWiring {
    /// The device's ring page.
    pub ring_page: GuestPage,
    /// Signalled by KVM when the guest rings the doorbell (an ioeventfd).
    pub doorbell: EventFd,
    /// Wakes the guest.
    pub notifier: GuestNotifier,
    /// Where events go.
    pub events: Arc<dyn DeviceEventSink>,
    /// When to signal the guest.
    pub notify_policy: NotifyPolicy,
    /// The ring index to attach at: 0 for a new guest, the saved index for a restored
    /// one (`BackRing::attach_at`).
    pub ring_start: u32,
}
