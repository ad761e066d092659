//! Serving the ring: what a backend does each time its doorbell rings.
//!
//! Take each request off the ring (a copy: the guest cannot change it afterwards), let
//! the device's [`RequestHandler`] answer it, push the response, publish, and signal
//! the guest if it asked to be woken. The loop ends only when a final check, made after
//! re-arming the guest's doorbell, finds the ring empty.

use pv_abi::ring::{BackRing, RingError};

use super::{BackendStats, BackendWiring, HandlerContext, NotifyPolicy, RequestHandler};
use crate::event_channel::GuestNotifier;
use crate::events::{DeviceEvent, DeviceEventSink};
use crate::guest_page::GuestPage;

/// What serving a ring answers through: the parts of a wiring [`serve`] uses (the
/// threaded runner also has a doorbell to wait on; the inline runner has none).
pub(super) struct Answering<'a> {
    /// Wakes the guest.
    pub notifier: &'a GuestNotifier,
    /// Where events go.
    pub events: &'a dyn DeviceEventSink,
    /// When to signal the guest.
    pub notify_policy: NotifyPolicy,
}

/// Serves every request on the ring, answering each in order, until a final check finds
/// the ring empty. Returns an error (having consumed nothing more) if the ring is corrupt.
///
/// hv's rule for event indices: **re-arm your own notification before you publish to
/// the other side.** After answering a request the backend first re-arms the guest's
/// doorbell (`final_check_for_requests` sets `req_event`), and only then publishes the
/// response. A guest that sends its next request after seeing the response is therefore
/// certain to ring the doorbell, so the backend can go back to sleep right after
/// publishing without looking at the ring again, and a request/response exchange always
/// costs exactly one doorbell and one upcall. That is also what makes hv's traces
/// identical from run to run: no step depends on which thread got there first.
pub fn service_ring<H: RequestHandler>(
    ring: &mut BackRing<GuestPage, H::Request, H::Response>,
    handler: &mut H,
    wiring: &BackendWiring,
    stats: &mut BackendStats,
) -> Result<(), RingError> {
    let answering = Answering { notifier: &wiring.notifier, events: wiring.events.as_ref(), notify_policy: wiring.notify_policy };
    serve(ring, handler, &answering, stats)
}

/// [`service_ring`] for any runner: the same loop, given what it answers through.
pub(super) fn serve<H: RequestHandler>(
    ring: &mut BackRing<GuestPage, H::Request, H::Response>,
    handler: &mut H,
    wiring: &Answering,
    stats: &mut BackendStats,
) -> Result<(), RingError> {
    let events = wiring.events;
    loop {
        let Some(request) = ring.take_request()? else {
            // Woken with nothing to do (a doorbell for requests already served): re-arm,
            // and look once more so that a request published meanwhile is not stranded.
            if ring.final_check_for_requests() {
                continue;
            }
            return Ok(());
        };
        stats.requests += 1;
        if events.enabled() {
            events.record(DeviceEvent::RequestPopped {
                device: H::NAME,
                id: H::request_id(&request),
                summary: H::summarize(&request),
            });
        }
        let response = handler.handle(&request, &mut HandlerContext { events, stats });
        ring.push_response(&response)?;
        if events.enabled() {
            let (id, status) = H::describe_response(&response);
            events.record(DeviceEvent::ResponsePushed { device: H::NAME, id, status });
        }
        // Re-arm the doorbell before the guest can see the response (see above).
        let more = ring.final_check_for_requests();
        publish::<H>(ring, wiring, stats);
        if !more {
            return Ok(());
        }
    }
}

/// Publishes responses and signals the guest if it asked (or if the policy says always).
fn publish<H: RequestHandler>(
    ring: &mut BackRing<GuestPage, H::Request, H::Response>,
    wiring: &Answering,
    stats: &mut BackendStats,
) {
    let wanted = ring.publish_responses();
    let notify = wanted || wiring.notify_policy == NotifyPolicy::Always;
    if wiring.events.enabled() {
        // Recorded before the signal, so the trace shows cause before effect.
        wiring.events.record(DeviceEvent::Published { device: H::NAME, notified: notify });
    }
    if notify {
        stats.notifications += 1;
        wiring.notifier.notify();
    } else {
        stats.notifications_suppressed += 1;
    }
}
