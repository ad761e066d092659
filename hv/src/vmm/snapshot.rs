//! Taking a snapshot of a running VM: [`take`].
//!
//! From another thread (the control socket's), hv asks the vCPU thread to run one job
//! at its next exit boundary (`vcpu::control`). The job drains the devices, reads the
//! vCPU (`state::capture`), writes the state and the guest's non-zero pages to the file
//! (`state::snapshot_file`), and then lets the guest run on, or stops it (`--stop`).
//! The guest is paused for exactly as long as the job runs: that is the snapshot's
//! downtime, reported with it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::VmConfig;
use crate::devices::block::DiskConfig;
use crate::outcome::GuestStop;
use crate::state::snapshot_file::{self, SnapshotFileError, SnapshotSummary};
use crate::state::{capture, CaptureInputs, StateError};
use crate::vcpu::control::{AfterJob, VcpuControl, VcpuGone};

/// What the VM is, as far as a snapshot needs to know beyond the vCPU thread's view.
#[derive(Clone, Debug)]
pub struct SnapshotInputs {
    disk: Option<DiskConfig>,
    notify_always: bool,
    guest_args: Vec<String>,
}

impl SnapshotInputs {
    /// From the configuration the VM was created with.
    pub fn from_config(config: &VmConfig) -> Self {
        SnapshotInputs {
            disk: config.disk.clone(),
            notify_always: config.notify_policy == backend_drivers::runner::NotifyPolicy::Always,
            guest_args: config.guest_args.clone(),
        }
    }
}

/// What to do once the snapshot is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterSnapshot {
    /// Let the guest run on (or stay paused, if it was).
    Continue,
    /// End the run (`snapshot --stop`).
    Stop,
}

/// A snapshot taken.
#[derive(Clone, Debug)]
pub struct SnapshotReport {
    /// The file and what it holds.
    pub summary: SnapshotSummary,
    /// How long the guest was stopped for it.
    pub paused_for: Duration,
}

/// Why no snapshot was taken. The guest runs on in every case.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The VM is no longer running.
    #[error(transparent)]
    Gone(#[from] VcpuGone),
    /// The state could not be taken.
    #[error(transparent)]
    State(#[from] StateError),
    /// The file could not be written.
    #[error(transparent)]
    File(#[from] SnapshotFileError),
}

/// Writes a snapshot of the VM `control` reaches to `path`, then continues or stops it.
pub fn take(control: &VcpuControl, inputs: SnapshotInputs, path: PathBuf, after: AfterSnapshot) -> Result<SnapshotReport, SnapshotError> {
    control.call(move |boundary| {
        let paused_at = Instant::now();
        let was_paused = boundary.paused;
        let capture_inputs = CaptureInputs { disk: inputs.disk.as_ref(), notify_always: inputs.notify_always, guest_args: &inputs.guest_args };
        let result = capture(boundary, &capture_inputs)
            .map_err(SnapshotError::from)
            .and_then(|state| Ok(snapshot_file::write(&path, state, boundary.kvm.ram())?))
            .map(|summary| SnapshotReport { summary, paused_for: paused_at.elapsed() });
        // Memory is written: the network backend, frozen by the drain, may serve again.
        boundary.devices.thaw();
        let next = match (&result, after) {
            (Ok(report), AfterSnapshot::Stop) => AfterJob::Stop(GuestStop::Ended {
                why: format!("guest stopped after its snapshot was written to {}", report.summary.path.display()),
            }),
            _ if was_paused => AfterJob::Pause,
            _ => AfterJob::Run,
        };
        (result, next)
    })?
}
