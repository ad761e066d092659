//! Kicking the vCPU thread out of `KVM_RUN`.
//!
//! While the guest runs, its vCPU thread sits inside the `KVM_RUN` ioctl, and KVM gives
//! the thread back only at an exit. A guest that computes without exiting would keep it
//! forever. Another thread that needs the vCPU (the `--timeout` watchdog, the control
//! socket asking for a pause) sends the vCPU thread a signal: its handler does nothing,
//! but `KVM_RUN` returns `EINTR`, which the exit loop sees as an "interrupted" exit and
//! uses to look at what it was asked. A signal that arrives just before the thread
//! enters `KVM_RUN` is not seen by KVM, so the sender repeats it until the vCPU thread
//! says it has taken the request.

use std::sync::{Arc, Mutex};

use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

/// The signal that kicks the vCPU out of `KVM_RUN`: a real-time signal, which the C
/// runtime never uses for anything else.
fn kick_signal() -> i32 {
    SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Nothing to do: being delivered is the point (KVM_RUN returns EINTR).
}

/// Installs the (empty) handler of the kick signal; idempotent.
fn install_handler() -> std::io::Result<()> {
    register_signal_handler(kick_signal(), on_kick).map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
}

/// The thread that runs the vCPU, as a target for `pthread_kill`.
struct VcpuThread(libc::pthread_t);

// SAFETY: a `VcpuThread` is only ever used inside `VcpuKicker::kick`, under the lock
// that `VcpuKickTarget::drop` takes before the vCPU thread goes away; it is therefore a
// live thread whenever a signal is sent to it.
unsafe impl Killable for VcpuThread {
    fn pthread_handle(&self) -> libc::pthread_t {
        self.0
    }
}

/// A handle other threads use to kick the vCPU thread; cheap to clone. Kicks before the
/// vCPU thread registered itself, or after it ended, do nothing.
#[derive(Clone, Default)]
pub struct VcpuKicker {
    target: Arc<Mutex<Option<libc::pthread_t>>>,
}

/// Registration of the calling thread as the vCPU thread; kicks stop when it is dropped.
pub struct VcpuKickTarget {
    target: Arc<Mutex<Option<libc::pthread_t>>>,
}

impl VcpuKicker {
    /// A kicker with no vCPU thread yet.
    pub fn new() -> Self {
        VcpuKicker::default()
    }

    /// Registers the calling thread as the one to kick, until the result is dropped.
    pub fn register_current_thread(&self) -> std::io::Result<VcpuKickTarget> {
        install_handler()?;
        // SAFETY: pthread_self has no preconditions and always succeeds.
        let me = unsafe { libc::pthread_self() };
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = Some(me);
        Ok(VcpuKickTarget { target: self.target.clone() })
    }

    /// Sends the kick signal to the vCPU thread, if it is running.
    pub fn kick(&self) {
        let target = self.target.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(thread) = *target {
            // The lock is held while signalling: the thread cannot end meanwhile.
            let _ = VcpuThread(thread).kill(kick_signal());
        }
    }
}

impl Drop for VcpuKickTarget {
    fn drop(&mut self) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}
