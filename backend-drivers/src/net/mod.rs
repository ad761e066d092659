//! The network backend (netback): moves Ethernet frames between a guest's two rings and
//! one port of a network ([`FramePort`]), by copying. The protocol is
//! `pv_abi::device::net`; this is Xen's netback in miniature (course notes: split
//! drivers, the driver domain).
//!
//! ```text
//!  transmit: tx ring ──take (a copy)──► check::check_tx ──copy out of the granted frame──► port.transmit
//!            tx ring ◄── response {id, status}
//!  receive:  port.receive ──► backlog (bounded) ──► next posted buffer (check::check_rx)
//!            ──copy into the granted frame──► rx ring ◄── response {id, offset, len}
//! ```
//!
//! Unlike the console and block backends, netback is not one request in, one response
//! out: a receive buffer waits on the ring until a frame comes, and frames come from the
//! network whenever they like. So it has its own loop ([`thread`]) with three wake-up
//! sources (the two doorbells and the port's `ready` eventfd), built from the
//! `runner`'s pieces: the counters ([`BackendStats`], one per ring), the notify policy,
//! rate-limited messages, and the thread setup hook for seccomp.
//!
//! **Bounded work.** [`NetBackend::serve_tx`] takes at most [`TX_BUDGET`] requests and
//! [`NetBackend::serve_rx`] handles at most [`RX_BUDGET`] frames or buffers per call,
//! then publishes and returns `true` ("more may wait"); the thread then looks at its
//! other sources (and hv's control messages) before it comes back. A guest flooding its
//! transmit ring cannot keep the receive path, or hv, waiting.
//!
//! **Frames with no buffer.** A frame that arrives while the guest has posted no
//! buffer waits in a backlog of [`RX_BACKLOG`] frames, and the backend asks to be woken
//! (the receive ring's event index) when buffers are posted. Once the backlog is full
//! further frames are dropped and counted (`rx_dropped_no_buffer`), as Xen's netback
//! drops when its queue for a guest is full.
//!
//! Every refusal (a bad length, a frame that is not the guest's, a read-only receive
//! buffer) is answered with an error status, counted, traced, and said on stderr at
//! most once a second.

pub mod check;
pub mod thread;

use std::collections::VecDeque;
use std::sync::Arc;

use pv_abi::device::net::{
    status_name, NetRxRequest, NetRxResponse, NetTxRequest, NetTxResponse, NET_MAX_FRAME, NET_MIN_FRAME, NET_STATUS_OK,
};
use pv_abi::grant::{GrantAccess, GrantProblem};
use pv_abi::ring::{BackRing, RingError};

use crate::event_channel::GuestNotifier;
use crate::events::{DeviceEvent, DeviceEventSink};
use crate::frame_port::{Frame, FramePort};
use crate::grant_table::{GrantTable, GrantedFrame};
use crate::guest_page::GuestPage;
use crate::runner::{BackendStats, NotifyPolicy, RateLimit, REPORT_INTERVAL};
use check::Refusal;

/// The transmit ring's name in traces and messages.
pub const TX_NAME: &str = "net-tx";
/// The receive ring's name in traces and messages.
pub const RX_NAME: &str = "net-rx";

/// Transmit requests one [`NetBackend::serve_tx`] takes at most.
pub const TX_BUDGET: usize = 64;
/// Frames and buffers one [`NetBackend::serve_rx`] handles at most.
pub const RX_BUDGET: usize = 64;
/// Frames that wait in the backend for the guest to post buffers; more are dropped.
pub const RX_BACKLOG: usize = 64;
/// Passes [`NetBackend::drain`] makes over each ring at most.
pub const DRAIN_PASSES: usize = 64;

/// Counters of one network backend.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// The transmit ring: doorbells, requests, upcalls, refusals, `bytes_from_guest`.
    pub tx: BackendStats,
    /// The receive ring: doorbells, buffers taken, upcalls, refusals, `bytes_to_guest`.
    pub rx: BackendStats,
    /// Frames the guest sent to the network.
    pub frames_tx: u64,
    /// Frames copied into the guest's buffers.
    pub frames_rx: u64,
    /// Frames dropped because the guest had no buffer posted and the backlog was full.
    pub rx_dropped_no_buffer: u64,
    /// Frames the port handed over with a length no frame has (a bug in the port).
    pub rx_dropped_bad_frame: u64,
    /// Times the port's `ready` eventfd woke the thread.
    pub port_wakeups: u64,
    /// Passes that stopped at their budget with work left.
    pub budget_exhausted: u64,
}

impl NetStats {
    /// Requests refused on either ring.
    pub fn refused(&self) -> u64 {
        self.tx.failed_requests + self.rx.failed_requests
    }
}

/// Everything a network backend is wired to, but its doorbells (those go to the
/// thread: [`thread::spawn`]).
pub struct NetWiring {
    /// The transmit ring's page.
    pub tx_ring: GuestPage,
    /// The receive ring's page.
    pub rx_ring: GuestPage,
    /// The guest's grant table: the backend's only way into guest frames.
    pub grants: GrantTable,
    /// The network port.
    pub port: Box<dyn FramePort>,
    /// Raises the transmit channel's upcall.
    pub tx_notifier: GuestNotifier,
    /// Raises the receive channel's upcall.
    pub rx_notifier: GuestNotifier,
    /// Where events go.
    pub events: Arc<dyn DeviceEventSink>,
    /// When to signal the guest.
    pub notify_policy: NotifyPolicy,
}

/// The network device's backend: both rings' back ends, the port, the backlog.
pub struct NetBackend {
    tx: BackRing<GuestPage, NetTxRequest, NetTxResponse>,
    rx: BackRing<GuestPage, NetRxRequest, NetRxResponse>,
    grants: GrantTable,
    port: Box<dyn FramePort>,
    tx_notifier: GuestNotifier,
    rx_notifier: GuestNotifier,
    events: Arc<dyn DeviceEventSink>,
    notify_policy: NotifyPolicy,
    backlog: VecDeque<Frame>,
    /// A transmitted frame's bytes on their way from the guest to the port.
    buffer: Vec<u8>,
    stats: NetStats,
    refusal_report: RateLimit,
    ring_error_report: RateLimit,
}

/// One ring's trace name and counters, for the helpers both paths share.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Tx,
    Rx,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Tx => TX_NAME,
            Path::Rx => RX_NAME,
        }
    }
}

/// Where a network backend's two rings stand when it is idle: every request it took is
/// answered and published, so one index per ring is all its ring state
/// (`BackRing::idle_position`). A snapshot saves it; a restored backend attaches there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetPositions {
    /// The transmit ring's index.
    pub tx: u32,
    /// The receive ring's index.
    pub rx: u32,
}

impl NetBackend {
    /// A backend on `wiring`, attached to fresh rings (every index at 0).
    pub fn new(wiring: NetWiring) -> Self {
        Self::attach_at(wiring, NetPositions::default())
    }

    /// A backend on `wiring`, attached to rings that stand at `start` (a restored guest's:
    /// see [`NetBackend::drain`]).
    pub fn attach_at(wiring: NetWiring, start: NetPositions) -> Self {
        NetBackend {
            tx: BackRing::attach_at(wiring.tx_ring, start.tx),
            rx: BackRing::attach_at(wiring.rx_ring, start.rx),
            grants: wiring.grants,
            port: wiring.port,
            tx_notifier: wiring.tx_notifier,
            rx_notifier: wiring.rx_notifier,
            events: wiring.events,
            notify_policy: wiring.notify_policy,
            backlog: VecDeque::with_capacity(RX_BACKLOG),
            buffer: vec![0; NET_MAX_FRAME],
            stats: NetStats::default(),
            refusal_report: RateLimit::new(REPORT_INTERVAL),
            ring_error_report: RateLimit::new(REPORT_INTERVAL),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> &NetStats {
        &self.stats
    }

    /// The port (the thread sleeps on its `ready` eventfd).
    pub fn port(&self) -> &dyn FramePort {
        self.port.as_ref()
    }

    /// Frames waiting for the guest to post buffers.
    pub fn backlog_len(&self) -> usize {
        self.backlog.len()
    }

    /// Brings both rings to a state worth saving, with the guest paused: serves every
    /// transmit request published (the frames go out), moves waiting frames into buffers
    /// the guest has posted, and returns where the rings stand. Bounded: at most
    /// [`DRAIN_PASSES`] passes per ring, which a paused guest cannot outrun (a ring has
    /// far fewer slots than that many budgets). Frames still in the backlog or the port
    /// afterwards are not ring state: a snapshot does not hold them (a NIC's frames in
    /// flight are lost the same way when its machine stops), and a guest that runs on
    /// here still gets them.
    pub fn drain(&mut self) -> Result<NetPositions, crate::runner::DrainError> {
        use crate::runner::DrainError;
        let errors_before = (self.stats.tx.ring_errors, self.stats.rx.ring_errors);
        let tx_done = (0..DRAIN_PASSES).any(|_| !self.serve_tx());
        let _ = (0..DRAIN_PASSES).any(|_| !self.serve_rx());
        let corrupt = |device, what: &str| DrainError::CorruptRing { device, what: what.to_string() };
        if self.stats.tx.ring_errors != errors_before.0 {
            return Err(corrupt(TX_NAME, "the guest's request index is past the free slots"));
        }
        if self.stats.rx.ring_errors != errors_before.1 {
            return Err(corrupt(RX_NAME, "the guest's request index is past the free slots"));
        }
        if !tx_done {
            return Err(DrainError::Busy { device: TX_NAME });
        }
        let tx = self.tx.idle_position().ok_or(DrainError::Busy { device: TX_NAME })?;
        let rx = self.rx.idle_position().ok_or(DrainError::Busy { device: RX_NAME })?;
        Ok(NetPositions { tx, rx })
    }

    fn ring_stats(&mut self, path: Path) -> &mut BackendStats {
        match path {
            Path::Tx => &mut self.stats.tx,
            Path::Rx => &mut self.stats.rx,
        }
    }

    /// Counts a doorbell (or `count` coalesced ones) on `path`'s ring, and traces it.
    fn doorbell(&mut self, path: Path, count: u64) {
        let stats = self.ring_stats(path);
        stats.doorbells += count;
        stats.wakeups += 1;
        if self.events.enabled() {
            self.events.record(DeviceEvent::Doorbell { device: path.name(), count });
        }
    }

    /// The transmit doorbell rang `count` times (counted and traced; serve with
    /// [`NetBackend::serve_tx`]).
    pub fn tx_doorbell(&mut self, count: u64) {
        self.doorbell(Path::Tx, count);
    }

    /// The receive doorbell rang `count` times: the guest posted buffers.
    pub fn rx_doorbell(&mut self, count: u64) {
        self.doorbell(Path::Rx, count);
    }

    /// The port said frames are waiting.
    pub fn port_woke(&mut self) {
        self.stats.port_wakeups += 1;
    }

    /// Serves the transmit ring: takes up to [`TX_BUDGET`] requests, sends each frame
    /// that passes its checks to the port and answers every request. Returns `true` if
    /// it stopped at the budget (call again soon), `false` once the ring is empty and
    /// the guest's doorbell is re-armed (or the ring is corrupt: then nothing more is
    /// taken until the next doorbell).
    pub fn serve_tx(&mut self) -> bool {
        let mut taken = 0;
        let mut answered = 0;
        let more = loop {
            if taken == TX_BUDGET {
                self.stats.budget_exhausted += 1;
                break true;
            }
            let request = match self.tx.take_request() {
                Ok(Some(request)) => request,
                Ok(None) => {
                    // Re-arm the doorbell before publishing (the runner's rule, see
                    // `runner::service_ring`), then look once more.
                    if self.tx.final_check_for_requests() {
                        continue;
                    }
                    break false;
                }
                Err(e) => {
                    self.ring_error(Path::Tx, e);
                    break false;
                }
            };
            taken += 1;
            self.stats.tx.requests += 1;
            if self.events.enabled() {
                let summary = format!("tx gref={} offset={} len={}", request.gref, request.offset, request.len);
                self.events.record(DeviceEvent::RequestPopped { device: TX_NAME, id: u64::from(request.id), summary });
            }
            let status = match self.transmit(&request) {
                Ok(()) => NET_STATUS_OK,
                Err(refusal) => self.refuse(Path::Tx, refusal),
            };
            let response = NetTxResponse { id: request.id, status };
            if let Err(e) = self.tx.push_response(&response) {
                // Cannot happen: the request just taken is unanswered.
                self.ring_error(Path::Tx, e);
                break false;
            }
            answered += 1;
            if self.events.enabled() {
                self.events.record(DeviceEvent::ResponsePushed { device: TX_NAME, id: u64::from(request.id), status: status_name(status).to_string() });
            }
        };
        self.publish(Path::Tx, answered);
        more
    }

    /// Checks one transmit request and hands its frame to the port.
    fn transmit(&mut self, request: &NetTxRequest) -> Result<(), Refusal> {
        let checked = check::check_tx(request, &self.grants);
        trace_grant(&*self.events, TX_NAME, request.gref, GrantAccess::Read, checked.as_ref().map(|(frame, _)| frame));
        let (frame, bytes) = checked?;
        let len = bytes.len();
        // A checked frame and a range inside it: the copy cannot fail; if it somehow
        // did, the guest hears "bad grant" rather than the backend stopping.
        frame
            .read(bytes.start, &mut self.buffer[..len])
            .map_err(|_| Refusal::Grant { gref: request.gref, problem: GrantProblem::BadFrame })?;
        self.port.transmit(&self.buffer[..len]);
        self.stats.frames_tx += 1;
        self.stats.tx.bytes_from_guest += len as u64;
        Ok(())
    }

    /// Serves the receive path: moves up to [`RX_BUDGET`] frames from the backlog and
    /// the port into the guest's posted buffers (answering refused buffers with an
    /// error). With no buffer posted, frames go to the backlog, or are dropped once it
    /// is full, and the backend asks to be woken when buffers come. Returns `true` if it
    /// stopped at the budget.
    pub fn serve_rx(&mut self) -> bool {
        let mut work = 0;
        let mut answered = 0;
        let more = loop {
            if work == RX_BUDGET {
                self.stats.budget_exhausted += 1;
                break true;
            }
            if self.backlog.is_empty() {
                let Some(frame) = self.port.receive() else { break false };
                // A kept frame is counted when a buffer is taken for it; a dropped one
                // costs a unit of work now, so a port full of bad frames is bounded too.
                if !self.park(frame) {
                    work += 1;
                }
                continue;
            }
            work += 1;
            match self.rx.take_request() {
                Ok(Some(request)) => answered += usize::from(self.deliver(&request)),
                Ok(None) => {
                    // No buffer: ask for the receive doorbell (req_event), then look once more.
                    if self.rx.final_check_for_requests() {
                        continue;
                    }
                    // Still none. What the port holds must move into the backlog now
                    // (its eventfd has been read, so nothing would wake us for it), and
                    // what does not fit is dropped and counted.
                    while work < RX_BUDGET {
                        let Some(frame) = self.port.receive() else { break };
                        work += 1;
                        let _ = self.park(frame);
                    }
                    if work == RX_BUDGET {
                        self.stats.budget_exhausted += 1;
                    }
                    break work == RX_BUDGET;
                }
                Err(e) => {
                    self.ring_error(Path::Rx, e);
                    break false;
                }
            }
        };
        self.publish(Path::Rx, answered);
        more
    }

    /// Queues a frame from the port for the guest, or drops it (backlog full, or not a
    /// frame at all). `true` if it was queued.
    fn park(&mut self, frame: Frame) -> bool {
        if !(NET_MIN_FRAME..=NET_MAX_FRAME).contains(&frame.len()) {
            self.stats.rx_dropped_bad_frame += 1;
        } else if self.backlog.len() >= RX_BACKLOG {
            self.stats.rx_dropped_no_buffer += 1;
        } else {
            self.backlog.push_back(frame);
            return true;
        }
        false
    }

    /// Puts the frame at the backlog's front into the buffer `request` posted, or
    /// refuses the buffer (the frame then waits for the next one). Answers the request;
    /// `false` if it could not (a backend bug, reported as a ring error).
    fn deliver(&mut self, request: &NetRxRequest) -> bool {
        self.stats.rx.requests += 1;
        if self.events.enabled() {
            let summary = format!("rx buffer gref={}", request.gref);
            self.events.record(DeviceEvent::RequestPopped { device: RX_NAME, id: u64::from(request.id), summary });
        }
        let checked = check::check_rx(request, &self.grants);
        trace_grant(&*self.events, RX_NAME, request.gref, GrantAccess::Write, checked.as_ref());
        let written = checked.and_then(|buffer| {
            let frame = self.backlog.front().map(Vec::as_slice).unwrap_or_default();
            buffer
                .write(0, frame)
                .map(|()| frame.len())
                .map_err(|_| Refusal::Grant { gref: request.gref, problem: GrantProblem::BadFrame })
        });
        let status = match written {
            Ok(len) => {
                self.backlog.pop_front();
                self.stats.frames_rx += 1;
                self.stats.rx.bytes_to_guest += len as u64;
                // len <= NET_MAX_FRAME: it fits.
                len as i32
            }
            Err(refusal) => self.refuse(Path::Rx, refusal),
        };
        let response = NetRxResponse { id: request.id, offset: 0, flags: 0, status };
        if let Err(e) = self.rx.push_response(&response) {
            self.ring_error(Path::Rx, e);
            return false;
        }
        if self.events.enabled() {
            let status = if status > 0 { format!("len={status}") } else { status_name(status).to_string() };
            self.events.record(DeviceEvent::ResponsePushed { device: RX_NAME, id: u64::from(request.id), status });
        }
        true
    }

    /// Counts a refused request, says so (rate-limited) and gives the guest's status.
    fn refuse(&mut self, path: Path, refusal: Refusal) -> i32 {
        let stats = self.ring_stats(path);
        stats.failed_requests += 1;
        if matches!(refusal, Refusal::Grant { .. }) {
            stats.grant_refusals += 1;
        }
        if let Some(unsaid) = self.refusal_report.due() {
            let more = if unsaid > 0 { format!(" ({unsaid} more since the last message)") } else { String::new() };
            eprintln!("hv: {} backend: refused a request from the guest: {refusal}{more}", path.name());
        }
        refusal.status()
    }

    /// Counts, traces and (rate-limited) reports a corrupt ring.
    fn ring_error(&mut self, path: Path, what: RingError) {
        self.ring_stats(path).ring_errors += 1;
        if self.events.enabled() {
            self.events.record(DeviceEvent::RingError { device: path.name(), what });
        }
        if let Some(unsaid) = self.ring_error_report.due() {
            let more = if unsaid > 0 { format!(" ({unsaid} more since the last message)") } else { String::new() };
            eprintln!("hv: {} backend: the guest corrupted the ring ({what}); ignoring it until the next doorbell{more}", path.name());
        }
    }

    /// Publishes `path`'s responses and raises its upcall if the guest asked (or the
    /// policy says always).
    fn publish(&mut self, path: Path, answered: usize) {
        if answered == 0 {
            return;
        }
        let (wanted, notifier) = match path {
            Path::Tx => (self.tx.publish_responses(), &self.tx_notifier),
            Path::Rx => (self.rx.publish_responses(), &self.rx_notifier),
        };
        let notify = wanted || self.notify_policy == NotifyPolicy::Always;
        if self.events.enabled() {
            // Recorded before the signal: cause before effect in the trace.
            self.events.record(DeviceEvent::Published { device: path.name(), notified: notify });
        }
        if notify {
            notifier.notify();
        }
        let stats = self.ring_stats(path);
        if notify {
            stats.notifications += 1;
        } else {
            stats.notifications_suppressed += 1;
        }
    }
}

/// Records one grant check for the trace.
fn trace_grant(events: &dyn DeviceEventSink, device: &'static str, gref: u32, access: GrantAccess, result: Result<&GrantedFrame<'_>, &Refusal>) {
    if !events.enabled() {
        return;
    }
    let result = match result {
        Ok(frame) => Ok(frame.gpa()),
        Err(Refusal::Grant { problem, .. }) => Err(*problem),
        // A request refused before its grant was looked at: no grant check to trace.
        Err(_) => return,
    };
    events.record(DeviceEvent::GrantCheck { device, gref, access, result });
}
