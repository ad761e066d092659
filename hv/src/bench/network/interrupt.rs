//! Ctrl-C during `hv bench --network`: the run stops at its next step and still removes
//! its network namespace and stops its guests.
//!
//! By default SIGINT and SIGTERM end a process on the spot, and nothing of Rust's
//! cleanup (the namespace's `Drop`) runs. So the benchmark **blocks** both signals before
//! it starts any thread (every thread inherits the mask, so none of them is ever
//! interrupted) and reads them from a `signalfd` instead: the kernel keeps a blocked
//! signal pending, and the signalfd turns "a signal is pending" into "this descriptor is
//! readable". Each wait of the benchmark is short and asks [`Interrupts::caught`] between
//! steps; once a signal is caught, the run unwinds as after any error: the guests are
//! stopped, the namespace is removed, hv exits with 128 + the signal's number.
//!
//! No signal handler and no extra thread: a handler may only make async-signal-safe calls
//! (no `ip netns del`), and a thread of its own would need its own seccomp filter.
//! Processes the benchmark starts (`curl`, `ip`) get an empty mask from Rust's
//! `Command`, so a Ctrl-C at the terminal still ends them at once too.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// SIGINT and SIGTERM, read from a signalfd while the benchmark runs.
pub struct Interrupts {
    signals: OwnedFd,
    /// The first signal read (0: none yet).
    caught: AtomicI32,
    /// The calling thread's mask before, restored on drop.
    previous: libc::sigset_t,
}

/// The signals caught.
fn caught_set() -> libc::sigset_t {
    // SAFETY: sigemptyset and sigaddset only write the set they are given, which lives
    // on this stack frame.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

impl Interrupts {
    /// Blocks SIGINT and SIGTERM in the calling thread, and so in every thread it starts
    /// from now on, and opens the signalfd that reads them. Call it before starting any
    /// thread that should not be interrupted.
    pub fn catch() -> io::Result<Interrupts> {
        let set = caught_set();
        // SAFETY: all-zero is a valid sigset_t, overwritten by the call.
        let mut previous: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: both sets are live for the call; it changes this thread's mask only.
        let blocked = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut previous) };
        if blocked != 0 {
            return Err(io::Error::from_raw_os_error(blocked));
        }
        // SAFETY: `set` is live for the call; -1 asks for a new descriptor.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            // SAFETY: restores the mask saved above, on this thread.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut()) };
            return Err(e);
        }
        // SAFETY: `fd` was just returned by signalfd and is owned by nobody else.
        let signals = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Interrupts { signals, caught: AtomicI32::new(0), previous })
    }

    /// The signal that interrupted the run, if one came (reads the signalfd without
    /// waiting). Any thread may ask.
    pub fn caught(&self) -> Option<i32> {
        if let Some(signal) = self.remembered() {
            return Some(signal);
        }
        // SAFETY: all-zero is a valid signalfd_siginfo, overwritten by read.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: `info` is writable for `size` bytes for the call.
        let got = unsafe { libc::read(self.signals.as_raw_fd(), (&mut info as *mut libc::signalfd_siginfo).cast(), size) };
        if got == size as isize {
            let _ = self.caught.compare_exchange(0, info.ssi_signo as i32, Ordering::AcqRel, Ordering::Acquire);
            if let Some(signal) = self.remembered() {
                eprintln!("hv bench: {} caught: stopping the guests and removing the network namespace", name(signal));
            }
        }
        self.remembered()
    }

    fn remembered(&self) -> Option<i32> {
        match self.caught.load(Ordering::Acquire) {
            0 => None,
            n => Some(n),
        }
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        // A signal that came after the last check is still pending: unblocking delivers
        // it, and its default action ends hv, which is what was asked for.
        // SAFETY: restores the mask saved by `catch`, on this thread.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut()) };
    }
}

/// A caught signal's name, for messages.
pub fn name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT (Ctrl-C)",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}
