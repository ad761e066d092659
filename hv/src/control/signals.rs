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
//! The handler is per process, so this is for a program with one control socket (`hv
//! run`, `hv restore`); a library user running several VMs catches signals itself.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::signal::register_signal_handler;

/// The signals caught.
const CAUGHT: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

/// Written by the handler; read by the accept thread.
static EVENT: OnceLock<EventFd> = OnceLock::new();
/// The last signal caught (0: none).
static LAST: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(num: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Async-signal-safe only: an atomic store, a lock-free read of an initialized
    // OnceLock, and write(2) on an eventfd.
    LAST.store(num, Ordering::Release);
    if let Some(event) = EVENT.get() {
        let _ = event.write(1);
    }
}

/// Catches SIGINT and SIGTERM from now on; returns the eventfd the handler writes.
pub fn catch() -> io::Result<&'static EventFd> {
    let event = match EVENT.get() {
        Some(event) => event,
        None => {
            let fresh = EventFd::new(EFD_NONBLOCK)?;
            // Another thread may have won the race: then its eventfd is the one.
            let _ = EVENT.set(fresh);
            EVENT.get().ok_or_else(|| io::Error::other("the signal eventfd vanished"))?
        }
    };
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
