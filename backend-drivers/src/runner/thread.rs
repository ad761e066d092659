//! The backend thread: sleep until the doorbell rings, then serve the ring.
//!
//! One thread per device, started by [`spawn`] and steered by hv through its
//! [`BackendHandle`]. It waits (epoll) on the **doorbell** eventfd, which KVM signals
//! when the guest writes the device's doorbell port, and on a **control** eventfd that
//! hv signals after sending a [`Control`] message. A doorbell that rings before
//! [`BackendHandle::start`] is remembered, not lost: the ring is served once started.
//! A ring the guest corrupted is counted, traced and left alone until the next
//! doorbell; the thread itself never stops for anything the guest does.

use std::os::unix::io::AsRawFd;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use pv_abi::ring::BackRing;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::service::service_ring;
use super::{BackendStats, BackendWiring, RequestHandler};
use crate::events::DeviceEvent;
use crate::guest_page::GuestPage;

/// A message from hv to a backend thread.
pub enum Control {
    /// Begin serving the ring (doorbells before this are remembered, not lost).
    Start,
    /// Send back the counters.
    Stats(Sender<BackendStats>),
    /// Finish and end the thread; the final counters go back on the channel.
    Stop(Sender<BackendStats>),
    /// Serve every request already published, then send back where the ring stands
    /// (for a snapshot, with the guest paused so that no new request can come).
    Drain(Sender<Result<u32, DrainError>>),
}

/// Why a backend could not be brought to a state worth saving.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DrainError {
    /// The guest corrupted the ring, so its requests cannot be served.
    #[error("the {device} ring is corrupt ({what})")]
    CorruptRing {
        /// Device name.
        device: &'static str,
        /// What was wrong.
        what: String,
    },
    /// Responses were still outstanding after serving (a backend bug).
    #[error("the {device} backend still has unanswered requests")]
    Busy {
        /// Device name.
        device: &'static str,
    },
    /// The backend thread has ended.
    #[error("the {device} backend thread has ended")]
    Gone {
        /// Device name.
        device: &'static str,
    },
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
    spawn_with_setup(handler, wiring, None)
}

/// What a backend thread runs on itself once its own setup is done and before it serves
/// the ring: hv installs the thread's seccomp filter there (backend-drivers knows nothing
/// of hv's sandbox). An error ends the thread, and the device is dead.
pub type ThreadSetup = Box<dyn FnOnce() -> Result<(), String> + Send>;

/// Like [`spawn`], with `setup` run first on the new thread.
pub fn spawn_with_setup<H: RequestHandler>(handler: H, wiring: BackendWiring, setup: Option<ThreadSetup>) -> Result<BackendHandle, SpawnError> {
    let err = |source| SpawnError { device: H::NAME, source };
    let control_wake = EventFd::new(EFD_NONBLOCK).map_err(err)?;
    let thread_wake = control_wake.try_clone().map_err(err)?;
    let (control, inbox) = crossbeam_channel::unbounded();
    let thread = std::thread::Builder::new()
        .name(format!("{}-backend", H::NAME))
        .spawn(move || run_backend(handler, wiring, inbox, thread_wake, setup))
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

    /// Serves every request the guest has published and returns the ring's index once
    /// nothing is outstanding (`BackRing::idle_position`). Call it with the guest paused.
    pub fn drain(&self) -> Result<u32, DrainError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let gone = DrainError::Gone { device: self.name };
        if !self.send(Control::Drain(tx)) {
            return Err(gone);
        }
        rx.recv().unwrap_or(Err(gone))
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

/// A guest that keeps its ring corrupt and rings the doorbell in a loop must not flood
/// the user's terminal: at most one message per interval, saying how many were not.
pub(crate) const REPORT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Says when a repeated message is due again (the network backend uses it too).
pub(crate) struct RateLimit {
    interval: std::time::Duration,
    last: Option<std::time::Instant>,
    unsaid: u64,
}

impl RateLimit {
    pub(crate) fn new(interval: std::time::Duration) -> Self {
        RateLimit { interval, last: None, unsaid: 0 }
    }

    /// `Some(n)` when the message should be printed now (`n` were held back since the
    /// last one); `None` when it should be held back.
    pub(crate) fn due(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < self.interval) {
            self.unsaid += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unsaid))
    }
}

/// Epoll tokens.
const DOORBELL: u64 = 0;
const CONTROL: u64 = 1;

/// The backend thread's body.
fn run_backend<H: RequestHandler>(
    mut handler: H,
    wiring: BackendWiring,
    inbox: Receiver<Control>,
    control_wake: EventFd,
    setup: Option<ThreadSetup>,
) {
    let mut ring: BackRing<GuestPage, H::Request, H::Response> = BackRing::attach_at(wiring.ring_page.clone(), wiring.ring_start);
    let mut ring_error_report = RateLimit::new(REPORT_INTERVAL);
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
    // Last, so that the setup (a seccomp filter) need not allow what came before.
    if let Some(Err(e)) = setup.map(|setup| setup()) {
        eprintln!("hv: {} backend: {e}; the device is dead", H::NAME);
        return;
    }
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
                            Control::Drain(reply) => {
                                let _ = reply.send(drain(&mut ring, &mut handler, &wiring, &mut stats));
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
                    wiring.events.record(DeviceEvent::RingError { device: H::NAME, what: e });
                }
                if let Some(unsaid) = ring_error_report.due() {
                    let more = if unsaid > 0 { format!(" ({unsaid} more since the last message)") } else { String::new() };
                    eprintln!("hv: {} backend: the guest corrupted the ring ({e}); ignoring it until the next doorbell{more}", H::NAME);
                }
            }
        }
    }
}

/// Serves whatever is on the ring (a doorbell may still sit unread in its eventfd, or
/// the guest may have published without ringing) and reports the idle index.
fn drain<H: RequestHandler>(
    ring: &mut BackRing<GuestPage, H::Request, H::Response>,
    handler: &mut H,
    wiring: &BackendWiring,
    stats: &mut BackendStats,
) -> Result<u32, DrainError> {
    service_ring(ring, handler, wiring, stats).map_err(|e| DrainError::CorruptRing { device: H::NAME, what: e.to_string() })?;
    ring.idle_position().ok_or(DrainError::Busy { device: H::NAME })
}

fn wait_set(doorbell: &EventFd, control: &EventFd) -> std::io::Result<Epoll> {
    let epoll = Epoll::new()?;
    epoll.ctl(ControlOperation::Add, doorbell.as_raw_fd(), EpollEvent::new(EventSet::IN, DOORBELL))?;
    epoll.ctl(ControlOperation::Add, control.as_raw_fd(), EpollEvent::new(EventSet::IN, CONTROL))?;
    Ok(epoll)
}

#[cfg(test)]
mod tests {
    use super::RateLimit;
    use std::time::Duration;

    #[test]
    fn hostile_floods_of_the_same_message_are_held_back_and_counted() {
        let mut limit = RateLimit::new(Duration::from_millis(50));
        assert_eq!(limit.due(), Some(0), "the first one is said");
        for _ in 0..1000 {
            assert_eq!(limit.due(), None, "the flood is held back");
        }
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(limit.due(), Some(1000), "the next one says how many were not");
    }
}
