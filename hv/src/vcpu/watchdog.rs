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

use super::kick::VcpuKicker;

/// How often the watchdog re-sends its signal until the vCPU loop has stopped.
const KICK_INTERVAL: Duration = Duration::from_millis(20);
/// How often the sleeping watchdog checks whether it was disarmed.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A running watchdog; disarmed when dropped.
pub struct Watchdog {
    fired: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    timeout: Duration,
}

impl Watchdog {
    /// Arms a watchdog that kicks the vCPU thread `kicker` names once `timeout` is up.
    /// With `seccomp`, its thread first confines itself (it only sleeps and kicks); if
    /// that fails it says so and never fires (`Vm::new` has checked that the filters
    /// build and the kernel takes them, so only a broken kernel gets there).
    pub fn arm(timeout: Duration, kicker: VcpuKicker, seccomp: bool) -> std::io::Result<Self> {
        let (fired, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (thread_fired, thread_stop) = (fired.clone(), stop.clone());
        let thread = std::thread::Builder::new().name("hv-watchdog".into()).spawn(move || {
            if seccomp {
                if let Err(e) = crate::sandbox::confine_current_thread(crate::sandbox::ThreadKind::Watchdog) {
                    eprintln!("hv: {e}");
                    return;
                }
            }
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                if thread_stop.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(POLL_INTERVAL.min(deadline.saturating_duration_since(Instant::now())));
            }
            thread_fired.store(true, Ordering::Release);
            while !thread_stop.load(Ordering::Acquire) {
                kicker.kick();
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
