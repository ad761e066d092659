//! Ctrl-C and `kill`: ending hv cleanly while it serves a control socket.
//!
//! SIGINT (Ctrl-C) and SIGTERM (`kill`) end a process on the spot by default: the guest's
//! last console lines, the end of the trace and the socket file would be left as they
//! were. While hv serves a control socket it catches them instead, and turns a signal
//! into a command like any other:
//!
//! ```text
//! signal ──► handler: note the signal, write an eventfd      (nothing else: see below)
//!            accept thread (epoll) sees the eventfd ──► job on the vCPU thread: stop
//!            the run ends as usual: devices stopped, trace completed, socket removed,
//!            hv exits with 128 + the signal's number, as a shell expects
//! ```
//!
//! A signal handler interrupts a thread anywhere (inside `malloc`, holding a lock), so it
//! may only do what is *async-signal-safe*: here, one atomic store and one `write(2)`.
//! A second signal while the run is stopping (a job can take a moment) ends hv at once,
//! from the accept thread, after removing the socket file.
//!
//! The handler is per process; each control socket that catches signals gets an eventfd
//! of its own, and the handler writes every one of them, so that `hv run --guests N
//! --control PATH` stops each of its guests (at most [`MAX_CATCHERS`] sockets).

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::signal::register_signal_handler;

/// The signals caught.
const CAUGHT: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

/// Control sockets that may catch signals in one process: one per guest of the largest
/// group (`vmm::group::MAX_GUESTS`), with room to spare.
pub const MAX_CATCHERS: usize = 32;

/// Written by the handler; each read by one accept thread. Filled in order, never
/// emptied (a `OnceLock` is read without a lock: async-signal-safe).
static EVENTS: [OnceLock<EventFd>; MAX_CATCHERS] = [const { OnceLock::new() }; MAX_CATCHERS];
/// How many of [`EVENTS`] have been handed out.
static HANDED_OUT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// The last signal caught (0: none).
static LAST: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(num: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Async-signal-safe only: an atomic store, a lock-free read of an initialized
    // OnceLock, and write(2) on an eventfd.
    LAST.store(num, Ordering::Release);
    for event in EVENTS.iter().filter_map(OnceLock::get) {
        let _ = event.write(1);
    }
}

/// Catches SIGINT and SIGTERM from now on; returns a new eventfd the handler writes (one
/// per caller: each accept thread reads its own).
pub fn catch() -> io::Result<&'static EventFd> {
    let slot = HANDED_OUT.fetch_add(1, Ordering::AcqRel);
    let cell = EVENTS.get(slot).ok_or_else(|| io::Error::other(format!("more than {MAX_CATCHERS} control sockets catch signals")))?;
    let _ = cell.set(EventFd::new(EFD_NONBLOCK)?);
    let event = cell.get().ok_or_else(|| io::Error::other("the signal eventfd vanished"))?;
    for signal in CAUGHT {
        register_signal_handler(signal, on_signal).map_err(|e| io::Error::from_raw_os_error(e.errno()))?;
    }
    Ok(event)
}

/// The last signal caught, if any.
pub fn last() -> Option<i32> {
    match LAST.load(Ordering::Acquire) {
        0 => None,
        n => Some(n),
    }
}

/// A signal's name, for messages.
pub fn name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT (Ctrl-C)",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}
