//! The network backend's thread: three wake-up sources, bounded passes, hv's control.
//!
//! The runner's thread (`runner::spawn`) sleeps on one doorbell and serves one ring
//! until it is empty. Netback has two doorbells (transmit, receive) and the port's
//! `ready` eventfd, and must not serve any of them until empty: a guest that keeps its
//! transmit ring full would hold the thread forever. So each pass serves each source
//! that has work for at most its budget (`TX_BUDGET`, `RX_BUDGET`), and when a source
//! had more, the next wait does not sleep (timeout 0): it only collects new events and
//! hv's control messages, and the next pass continues. Round-robin, in miniature, as a
//! scheduler shares a CPU (course notes: scheduling, time slices).
//!
//! What the thread shares with the runner's: the control channel's shape (a crossbeam
//! channel plus an eventfd to wake the thread; start, stats, drain, stop), doorbells
//! before `start` remembered rather than lost, the setup hook hv installs its seccomp
//! filter with, and a thread that never stops for anything the guest does.
//!
//! **Drained means frozen.** The other backends only act when the guest rings, so with
//! the guest paused a drained ring stays still. Netback also acts when the *network*
//! sends: a frame arriving while hv writes a snapshot would land in guest memory after
//! the rings' indices were saved. So [`NetHandle::drain`] leaves the thread frozen: it
//! notes doorbells and frames but serves nothing until [`NetHandle::thaw`] (frames meanwhile
//! wait in the port's bounded queue, and beyond it are dropped and counted, as a busy
//! NIC drops them).

use std::os::unix::io::{AsRawFd, RawFd};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{NetBackend, NetPositions, NetStats};
use crate::runner::{DrainError, SpawnError, ThreadSetup};

/// The thread's name, and the device's in messages.
const NAME: &str = "net";

/// The two doorbells (KVM ioeventfds on the guest's doorbell ports).
pub struct NetDoorbells {
    /// The transmit channel's doorbell: the guest published transmit requests.
    pub tx: EventFd,
    /// The receive channel's doorbell: the guest posted receive buffers.
    pub rx: EventFd,
}

/// A message from hv to the network backend's thread.
pub enum NetControl {
    /// Begin serving (doorbells and frames before this wait, they are not lost).
    Start,
    /// Send back the counters.
    Stats(Sender<NetStats>),
    /// End the thread; the final counters go back on the channel.
    Stop(Sender<NetStats>),
    /// Serve what the guest published ([`NetBackend::drain`]), send back where the rings
    /// stand, and freeze: serve nothing more until [`NetControl::Thaw`].
    Drain(Sender<Result<NetPositions, DrainError>>),
    /// Serve again after a drain (whatever came meanwhile is served at once).
    Thaw,
}

/// hv's handle on a running network backend.
pub struct NetHandle {
    control: Sender<NetControl>,
    control_wake: EventFd,
    thread: Option<JoinHandle<()>>,
}

/// Starts the thread for `backend`; it serves after [`NetHandle::start`]. `setup` runs
/// first on the new thread, once it has made everything it waits on (hv installs the
/// thread's seccomp filter there).
pub fn spawn(backend: NetBackend, doorbells: NetDoorbells, setup: Option<ThreadSetup>) -> Result<NetHandle, SpawnError> {
    let err = |source| SpawnError { device: NAME, source };
    let control_wake = EventFd::new(EFD_NONBLOCK).map_err(err)?;
    let thread_wake = control_wake.try_clone().map_err(err)?;
    let (control, inbox) = crossbeam_channel::unbounded();
    let thread = std::thread::Builder::new()
        .name(format!("{NAME}-backend"))
        .spawn(move || run(backend, doorbells, inbox, thread_wake, setup))
        .map_err(err)?;
    Ok(NetHandle { control, control_wake, thread: Some(thread) })
}

impl NetHandle {
    fn send(&self, message: NetControl) -> bool {
        let sent = self.control.send(message).is_ok();
        let _ = self.control_wake.write(1);
        sent
    }

    /// Lets the backend serve.
    pub fn start(&self) {
        self.send(NetControl::Start);
    }

    /// The counters now, or `None` if the thread has ended.
    pub fn stats(&self) -> Option<NetStats> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if !self.send(NetControl::Stats(tx)) {
            return None;
        }
        rx.recv().ok()
    }

    /// Serves what the guest published and returns where the rings stand; the thread then
    /// serves nothing (frames wait in the port) until [`NetHandle::thaw`]. Call it with the
    /// guest paused.
    pub fn drain(&self) -> Result<NetPositions, DrainError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let gone = DrainError::Gone { device: NAME };
        if !self.send(NetControl::Drain(tx)) {
            return Err(gone);
        }
        rx.recv().unwrap_or(Err(gone))
    }

    /// Lets a drained backend serve again (nothing happens if it was not drained).
    pub fn thaw(&self) {
        self.send(NetControl::Thaw);
    }

    /// Stops the thread and returns its final counters.
    pub fn stop(mut self) -> Option<NetStats> {
        self.stop_thread()
    }

    fn stop_thread(&mut self) -> Option<NetStats> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let stats = if self.send(NetControl::Stop(tx)) { rx.recv().ok() } else { None };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        stats
    }
}

impl Drop for NetHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop_thread();
        }
    }
}

/// Epoll tokens.
const TX_DOORBELL: u64 = 0;
const RX_DOORBELL: u64 = 1;
const PORT: u64 = 2;
const CONTROL: u64 = 3;

/// Which sources have work waiting.
#[derive(Default)]
struct Pending {
    tx: bool,
    rx: bool,
}

/// The thread's body.
fn run(mut backend: NetBackend, doorbells: NetDoorbells, inbox: Receiver<NetControl>, control_wake: EventFd, setup: Option<ThreadSetup>) {
    let port_ready = backend.port().ready().as_raw_fd();
    let epoll = match wait_set(&doorbells, port_ready, &control_wake) {
        Ok(epoll) => epoll,
        Err(e) => {
            eprintln!("hv: {NAME} backend: cannot wait for its doorbells: {e}; the device is dead");
            return;
        }
    };
    // Last, so that the setup (a seccomp filter) need not allow what came before.
    if let Some(Err(e)) = setup.map(|setup| setup()) {
        eprintln!("hv: {NAME} backend: {e}; the device is dead");
        return;
    }
    let mut started = false;
    // Drained for a snapshot or a migration: noting work, doing none.
    let mut frozen = false;
    let mut pending = Pending::default();
    let mut ready = [EpollEvent::default(); 4];
    loop {
        // Work left over from a pass that hit its budget: look at events, do not sleep.
        let timeout = if started && !frozen && (pending.tx || pending.rx) { 0 } else { -1 };
        let n = match epoll.wait(timeout, &mut ready) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("hv: {NAME} backend: waiting failed: {e}; the device is dead");
                return;
            }
        };
        for event in &ready[..n] {
            match event.data() {
                TX_DOORBELL => {
                    backend.tx_doorbell(doorbells.tx.read().unwrap_or(0));
                    pending.tx = true;
                }
                RX_DOORBELL => {
                    backend.rx_doorbell(doorbells.rx.read().unwrap_or(0));
                    pending.rx = true;
                }
                PORT => {
                    let _ = backend.port().ready().read();
                    backend.port_woke();
                    pending.rx = true;
                }
                _ => {
                    let _ = control_wake.read();
                    while let Ok(message) = inbox.try_recv() {
                        match message {
                            NetControl::Start => started = true,
                            NetControl::Stats(reply) => {
                                let _ = reply.send(backend.stats().clone());
                            }
                            NetControl::Stop(reply) => {
                                let _ = reply.send(backend.stats().clone());
                                return;
                            }
                            NetControl::Drain(reply) => {
                                let _ = reply.send(backend.drain());
                                frozen = true;
                            }
                            NetControl::Thaw => {
                                if frozen {
                                    frozen = false;
                                    // Frames may have come meanwhile (their eventfd was read).
                                    pending.tx = true;
                                    pending.rx = true;
                                }
                            }
                        }
                    }
                }
            }
        }
        if started && !frozen {
            if pending.tx {
                pending.tx = backend.serve_tx();
            }
            if pending.rx {
                pending.rx = backend.serve_rx();
            }
        }
    }
}

fn wait_set(doorbells: &NetDoorbells, port_ready: RawFd, control: &EventFd) -> std::io::Result<Epoll> {
    let epoll = Epoll::new()?;
    epoll.ctl(ControlOperation::Add, doorbells.tx.as_raw_fd(), EpollEvent::new(EventSet::IN, TX_DOORBELL))?;
    epoll.ctl(ControlOperation::Add, doorbells.rx.as_raw_fd(), EpollEvent::new(EventSet::IN, RX_DOORBELL))?;
    epoll.ctl(ControlOperation::Add, port_ready, EpollEvent::new(EventSet::IN, PORT))?;
    epoll.ctl(ControlOperation::Add, control.as_raw_fd(), EpollEvent::new(EventSet::IN, CONTROL))?;
    Ok(epoll)
}
