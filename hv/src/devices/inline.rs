//! Devices served on the vCPU thread, for a recorded run (`hv run --record`).
//!
//! Normally each backend has its own thread, woken by KVM through an ioeventfd, and it
//! answers while the guest runs on: responses reach guest memory, and upcalls reach the
//! vCPU, at moments no one chose. A recorded run must make every such effect happen at
//! a point the guest itself chose, so here there is no ioeventfd: the guest's `out` to a
//! doorbell port exits to hv, and at that exit hv serves the ring with the device's own
//! handler, on the vCPU thread ([`backend_drivers::runner::InlineBackend`]). While it
//! does, this file keeps a copy of what the device did that is not in guest memory: its
//! trace lines and (for the console) the text it printed, so the recorder can log them
//! ([`InlineServed`]). The upcall, if the guest asked for one, is raised by the caller
//! with `KVM_SIGNAL_MSI` before the guest runs again ([`super::raise_upcall`]).

use std::io::Write;
use std::sync::{Arc, Mutex};

use backend_drivers::events::{DeviceEvent, DeviceEventSink};
use backend_drivers::runner::{InlineService, Served};

use super::console::ConsoleOutput;
use crate::trace::Tracer;

/// What one inline service did, besides its writes to guest memory.
#[derive(Debug, Default)]
pub struct InlineServed {
    /// The device's name.
    pub device: &'static str,
    /// Whether to raise the upcall now, and whether the ring was corrupt.
    pub served: Served,
    /// The device's events, in order (as the trace got them).
    pub events: Vec<DeviceEvent>,
    /// What the device printed (the console's text, sanitised), empty for others.
    pub printed: Vec<u8>,
}

/// Copies of what the inline devices did, taken by the recorder after each service.
#[derive(Clone, Default)]
pub struct InlineCopies {
    events: Arc<Mutex<Vec<DeviceEvent>>>,
    printed: Arc<Mutex<Vec<u8>>>,
}

impl InlineCopies {
    fn take(&self) -> (Vec<DeviceEvent>, Vec<u8>) {
        let events = std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()));
        let printed = std::mem::take(&mut *self.printed.lock().unwrap_or_else(|p| p.into_inner()));
        (events, printed)
    }
}

/// The event sink of an inline backend: into the trace, and a copy for the recorder.
pub(super) struct CopyingSink {
    pub(super) tracer: Tracer,
    pub(super) copies: InlineCopies,
}

impl DeviceEventSink for CopyingSink {
    fn enabled(&self) -> bool {
        // Always: the log needs the lines even when this run writes no trace.
        true
    }

    fn record(&self, event: DeviceEvent) {
        self.copies.events.lock().unwrap_or_else(|p| p.into_inner()).push(event.clone());
        self.tracer.record(event);
    }
}

/// The console backend's output in a recorded run: to the console, and a copy.
pub(super) struct CopyingConsole {
    pub(super) out: ConsoleOutput,
    pub(super) copies: InlineCopies,
}

impl Write for CopyingConsole {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.copies.printed.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        self.out.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Write::flush(&mut self.out)
    }
}

/// One device's inline backend with the copies it fills.
pub(super) struct InlineDevice {
    pub(super) backend: Mutex<Box<dyn InlineService>>,
    pub(super) copies: InlineCopies,
}

impl InlineDevice {
    /// Where the ring stands (nothing is ever in flight at an exit boundary: see
    /// `Backend::drain`).
    pub(super) fn position(&self) -> Result<u32, backend_drivers::runner::DrainError> {
        let backend = self.backend.lock().unwrap_or_else(|p| p.into_inner());
        backend.position().ok_or(backend_drivers::runner::DrainError::Busy { device: backend.name() })
    }

    /// Serves the ring now (the guest rang the doorbell) and returns what was done.
    pub(super) fn serve(&self) -> InlineServed {
        let mut backend = self.backend.lock().unwrap_or_else(|p| p.into_inner());
        let served = backend.serve_doorbell();
        let (events, printed) = self.copies.take();
        InlineServed { device: backend.name(), served, events, printed }
    }
}
