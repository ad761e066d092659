//! The inline runner: a backend served on the caller's thread, when the caller says.
//!
//! The threaded runner (`thread.rs`) serves the ring whenever the doorbell's eventfd
//! fires, concurrently with the guest: responses land in guest memory, and upcalls
//! arrive, at whatever instruction the guest happens to be executing. That is what a
//! fast VMM wants, and exactly what a recorded run cannot have. Here the caller (hv's
//! vCPU thread, whose exit loop saw the guest's `out` to the doorbell port) calls
//! [`InlineBackend::serve_doorbell`] while the guest is stopped at that exit. The ring
//! loop is the same `service_ring` loop; the notifier only sets the pending flag
//! (`GuestNotifier::flag_only`), and [`Served::notify`] tells the caller to raise the
//! upcall itself, synchronously, before the guest runs again.

use pv_abi::ring::BackRing;

use super::service::{serve, Answering};
use super::{BackendStats, NotifyPolicy, RequestHandler};
use crate::event_channel::GuestNotifier;
use crate::events::{DeviceEvent, DeviceEventSink};
use crate::guest_page::GuestPage;
use std::sync::Arc;

/// What one service did, for the caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// The guest asked to be woken (or the policy says always): raise the upcall now.
    pub notify: bool,
    /// The ring was corrupt (counted and traced; nothing more consumed).
    pub ring_error: bool,
}

/// A backend served on the caller's thread.
pub struct InlineBackend<H: RequestHandler> {
    ring: BackRing<GuestPage, H::Request, H::Response>,
    handler: H,
    notifier: GuestNotifier,
    events: Arc<dyn DeviceEventSink>,
    notify_policy: NotifyPolicy,
    stats: BackendStats,
}

impl<H: RequestHandler> InlineBackend<H> {
    /// A backend for `handler` on `ring_page`; `notifier` should be flag-only (the
    /// caller raises the interrupt when [`Served::notify`] says so).
    pub fn new(handler: H, ring_page: GuestPage, notifier: GuestNotifier, events: Arc<dyn DeviceEventSink>, notify_policy: NotifyPolicy) -> Self {
        InlineBackend { ring: BackRing::attach(ring_page), handler, notifier, events, notify_policy, stats: BackendStats::default() }
    }
}

/// An inline backend of any device, as the caller holds it.
pub trait InlineService: Send {
    /// Device name.
    fn name(&self) -> &'static str;
    /// The guest rang the doorbell (once): serve the ring now, on this thread.
    fn serve_doorbell(&mut self) -> Served;
    /// The counters so far.
    fn stats(&self) -> BackendStats;
    /// The ring's index if nothing is in flight (`BackRing::idle_position`).
    fn position(&self) -> Option<u32>;
}

impl<H: RequestHandler> InlineService for InlineBackend<H> {
    fn name(&self) -> &'static str {
        H::NAME
    }

    fn serve_doorbell(&mut self) -> Served {
        // One doorbell write, one wake-up: counted and traced as the thread does.
        self.stats.doorbells += 1;
        self.stats.wakeups += 1;
        let events = self.events.as_ref();
        if events.enabled() {
            events.record(DeviceEvent::Doorbell { device: H::NAME, count: 1 });
        }
        let before = self.stats.notifications;
        let answering = Answering { notifier: &self.notifier, events, notify_policy: self.notify_policy };
        match serve(&mut self.ring, &mut self.handler, &answering, &mut self.stats) {
            Ok(()) => Served { notify: self.stats.notifications > before, ring_error: false },
            Err(e) => {
                self.stats.ring_errors += 1;
                if events.enabled() {
                    events.record(DeviceEvent::RingError { device: H::NAME, what: e });
                }
                eprintln!("hv: {} backend: the guest corrupted the ring ({e}); ignoring it until the next doorbell", H::NAME);
                // Responses published before the corruption was found may have asked
                // for an upcall: it is still owed.
                Served { notify: self.stats.notifications > before, ring_error: true }
            }
        }
    }

    fn stats(&self) -> BackendStats {
        self.stats.clone()
    }

    fn position(&self) -> Option<u32> {
        self.ring.idle_position()
    }
}
