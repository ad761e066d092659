//! The backend thread: sleep until the doorbell rings, then serve the ring.
//!
//! Every backend runs the same loop, so it is written once here; a device only says
//! how to handle one request ([`RequestHandler`]). The thread waits (epoll) on two
//! eventfds: the **doorbell**, which KVM signals when the guest writes the device's
//! doorbell port (ioeventfd), and a **control** eventfd that hv signals after sending a
//! [`Control`] message over a crossbeam channel (start, stats, stop).
//!
//! [`service_ring`] is the heart of every backend, in the shape of Xen's
//! `RING_FINAL_CHECK_FOR_REQUESTS` loop: take every request, answer each, publish, and
//! only stop once a final check (which re-arms the guest's notification) finds nothing.
//! Without that last step a request published just as the backend was going to sleep
//! would wait forever.

use std::os::unix::io::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use pv_abi::ring::{BackRing, RingEntry, RingError};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::event_channel::GuestNotifier;
use crate::events::{DeviceEvent, DeviceEventSink};
use crate::guest_page::GuestPage;

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

/// A message from hv to a backend thread.
pub enum Control {
    /// Begin serving the ring (doorbells before this are remembered, not lost).
    Start,
    /// Send back the counters.
    Stats(Sender<BackendStats>),
    /// Finish and end the thread; the final counters go back on the channel.
    Stop(Sender<BackendStats>),
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
}

/// hv's handle on a running backend thread.
pub struct BackendHandle {
    name: &'static str,
    control: Sender<Control>,
    control_wake: EventFd,
    thread: Option<JoinHandle<()>>,
}

/// Why a backend thread could not be started.
#[derive(Debug, thiserror::Error)]
#[error("could not start the {device} backend thread: {source}")]
pub struct SpawnError {
    /// Device name.
    pub device: &'static str,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

/// Starts a backend thread for `handler`; it serves the ring after [`BackendHandle::start`].
pub fn spawn<H: RequestHandler>(handler: H, wiring: BackendWiring) -> Result<BackendHandle, SpawnError> {
    let err = |source| SpawnError { device: H::NAME, source };
    let control_wake = EventFd::new(EFD_NONBLOCK).map_err(err)?;
    let thread_wake = control_wake.try_clone().map_err(err)?;
    let (control, inbox) = crossbeam_channel::unbounded();
    let thread = std::thread::Builder::new()
        .name(format!("{}-backend", H::NAME))
        .spawn(move || run_backend(handler, wiring, inbox, thread_wake))
        .map_err(err)?;
    Ok(BackendHandle { name: H::NAME, control, control_wake, thread: Some(thread) })
}

impl BackendHandle {
    /// The device name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn send(&self, message: Control) -> bool {
        let sent = self.control.send(message).is_ok();
        let _ = self.control_wake.write(1);
        sent
    }

    /// Lets the backend serve its ring.
    pub fn start(&self) {
        self.send(Control::Start);
    }

    /// The backend's counters now, or `None` if its thread has ended.
    pub fn stats(&self) -> Option<BackendStats> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if !self.send(Control::Stats(tx)) {
            return None;
        }
        rx.recv().ok()
    }

    /// Stops the thread and returns its final counters.
    pub fn stop(mut self) -> Option<BackendStats> {
        self.stop_thread()
    }

    fn stop_thread(&mut self) -> Option<BackendStats> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let stats = if self.send(Control::Stop(tx)) { rx.recv().ok() } else { None };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        stats
    }
}

impl Drop for BackendHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop_thread();
        }
    }
}

/// Epoll tokens.
const DOORBELL: u64 = 0;
const CONTROL: u64 = 1;

/// The backend thread's body.
fn run_backend<H: RequestHandler>(mut handler: H, wiring: BackendWiring, inbox: Receiver<Control>, control_wake: EventFd) {
    let mut ring: BackRing<GuestPage, H::Request, H::Response> = BackRing::attach(wiring.ring_page.clone());
    let mut stats = BackendStats::default();
    let mut started = false;
    let mut doorbell_pending = false;
    let epoll = match wait_set(&wiring.doorbell, &control_wake) {
        Ok(epoll) => epoll,
        Err(e) => {
            eprintln!("hv: {} backend: cannot wait for its doorbell: {e}; the device is dead", H::NAME);
            return;
        }
    };
    let mut ready = [EpollEvent::default(); 2];
    loop {
        let n = match epoll.wait(-1, &mut ready) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("hv: {} backend: waiting failed: {e}; the device is dead", H::NAME);
                return;
            }
        };
        for event in &ready[..n] {
            match event.data() {
                DOORBELL => {
                    let count = wiring.doorbell.read().unwrap_or(0);
                    stats.doorbells += count;
                    stats.wakeups += 1;
                    if wiring.events.enabled() {
                        wiring.events.record(DeviceEvent::Doorbell { device: H::NAME, count });
                    }
                    doorbell_pending = true;
                }
                _ => {
                    let _ = control_wake.read();
                    while let Ok(message) = inbox.try_recv() {
                        match message {
                            Control::Start => started = true,
                            Control::Stats(reply) => {
                                let _ = reply.send(stats.clone());
                            }
                            Control::Stop(reply) => {
                                let _ = reply.send(stats);
                                return;
                            }
                        }
                    }
                }
            }
        }
        if started && doorbell_pending {
            doorbell_pending = false;
            if let Err(e) = service_ring(&mut ring, &mut handler, &wiring, &mut stats) {
                stats.ring_errors += 1;
                if wiring.events.enabled() {
                    wiring.events.record(DeviceEvent::RingError { device: H::NAME, what: e.to_string() });
                }
                eprintln!("hv: {} backend: the guest corrupted the ring ({e}); ignoring it until the next doorbell", H::NAME);
            }
        }
    }
}

fn wait_set(doorbell: &EventFd, control: &EventFd) -> std::io::Result<Epoll> {
    let epoll = Epoll::new()?;
    epoll.ctl(ControlOperation::Add, doorbell.as_raw_fd(), EpollEvent::new(EventSet::IN, DOORBELL))?;
    epoll.ctl(ControlOperation::Add, control.as_raw_fd(), EpollEvent::new(EventSet::IN, CONTROL))?;
    Ok(epoll)
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
    let events = wiring.events.as_ref();
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
    wiring: &BackendWiring,
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
