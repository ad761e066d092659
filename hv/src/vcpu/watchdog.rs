//! `--timeout`: a guest that never stops must not hang hv.
//!
//! With KVM's in-kernel interrupt controller, a guest that halts with interrupts off
//! (`cli; hlt`) waits inside the kernel forever, and a guest that loops never exits
//! either: `KVM_RUN` simply does not return. A broken kernel under test (a student's,
//! say) would then hang hv and whatever runs it. The watchdog is a thread that, once
//! the time is up, sends the vCPU thread a signal. The signal's handler does nothing;
//! its only effect is that `KVM_RUN` returns with `EINTR`, and the exit loop then sees
//! the watchdog has fired and stops the guest with a register dump. The signal is sent
//! again every few milliseconds until the loop has noticed, so it cannot be lost in the
//! moment between two `KVM_RUN` calls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

/// How often the watchdog re-sends its signal until the vCPU loop has stopped.
const KICK_INTERVAL: Duration = Duration::from_millis(20);
/// How often the sleeping watchdog checks whether it was disarmed.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The signal that kicks the vCPU out of `KVM_RUN`: a real-time signal, which the C
/// runtime never uses for anything else.
fn kick_signal() -> i32 {
    SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Nothing to do: being delivered is the point (KVM_RUN returns EINTR).
}

/// The thread that runs the vCPU, as a target for `pthread_kill`.
struct VcpuThread(libc::pthread_t);

// SAFETY: the handle is the thread that armed the watchdog (pthread_self), and that
// thread joins the watchdog thread (Watchdog::drop) before it can exit, so the handle
// is valid for every signal sent to it.
unsafe impl Killable for VcpuThread {
    fn pthread_handle(&self) -> libc::pthread_t {
        self.0
    }
}

/// A running watchdog; disarmed when dropped.
pub struct Watchdog {
    fired: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    timeout: Duration,
}

impl Watchdog {
    /// Arms a watchdog for the calling thread (the vCPU thread).
    pub fn arm(timeout: Duration) -> std::io::Result<Self> {
        register_signal_handler(kick_signal(), on_kick).map_err(|e| std::io::Error::from_raw_os_error(e.errno()))?;
        // SAFETY: pthread_self has no preconditions and always succeeds.
        let target = VcpuThread(unsafe { libc::pthread_self() });
        let (fired, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (thread_fired, thread_stop) = (fired.clone(), stop.clone());
        let thread = std::thread::Builder::new().name("hv-watchdog".into()).spawn(move || {
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                if thread_stop.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(POLL_INTERVAL.min(deadline.saturating_duration_since(Instant::now())));
            }
            thread_fired.store(true, Ordering::Release);
            while !thread_stop.load(Ordering::Acquire) {
                let _ = target.kill(kick_signal());
                std::thread::sleep(KICK_INTERVAL);
            }
        })?;
        Ok(Watchdog { fired, stop, thread: Some(thread), timeout })
    }

    /// Whether the time ran out.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// The timeout it was armed with.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
