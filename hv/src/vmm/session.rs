//! A recorded or replayed VM (`crate::record`): what the log's header says about the
//! boot, and the checks that a replay boots exactly what was recorded.
//!
//! A guest's run depends on its code and on what it is booted with. Everything hv puts
//! in the boot-info page or the first registers that could differ between two runs is
//! in the header ([`header`]); a replay takes its configuration from it
//! ([`replay_config`]) and refuses to start if what it would boot differs
//! ([`SessionSetup::check_replay`]).

use std::path::{Path, PathBuf};

use pv_abi::MmuMode;

use super::config::VmConfig;
use super::error::VmError;
use crate::devices::Serving;
use crate::record::framing::fnv;
use crate::record::log::{DiskIdentity, Header, LogReader, MAGIC, VERSION};
use crate::record::{Recorder, Replayer, Session};
use crate::state::{capture, snapshot_file, CaptureInputs};
use crate::vcpu::control::{in_cr3_section, ExitBoundary};

/// How a VM takes part in record and replay.
pub enum SessionSetup {
    /// `hv run --record LOG`.
    Record {
        /// Where to write the log.
        log: PathBuf,
    },
    /// `hv replay LOG`: the log, opened (its header read), and where to stop.
    Replay {
        /// The log (boxed: it holds its reader's buffer).
        log: Box<LogReader>,
        /// Stop after this exit (`--until`).
        until: Option<u64>,
        /// Write a snapshot there (`--snapshot`).
        snapshot: Option<PathBuf>,
    },
}

impl SessionSetup {
    /// How the device backends run.
    pub(super) fn serving(&self) -> Serving {
        match self {
            SessionSetup::Record { .. } => Serving::Inline,
            SessionSetup::Replay { log, .. } => Serving::Replayed { block: log.header().disk.as_ref().map(|d| (d.sectors, d.read_only)) },
        }
    }

    /// The TSC frequency to announce: the host's, or the recorded one.
    pub(super) fn tsc_khz(&self, host: u64) -> u64 {
        match self {
            SessionSetup::Record { .. } => host,
            SessionSetup::Replay { log, .. } => log.header().tsc_khz,
        }
    }

    /// A replay must boot the same kernel, arguments, RAM and memory mode, on a CPU with
    /// the same no-execute support, and attach no disk of its own.
    pub(super) fn check_replay(&self, config: &VmConfig, kernel: &[u8], nx: bool) -> Result<(), VmError> {
        let SessionSetup::Replay { log, .. } = self else { return Ok(()) };
        let h = log.header();
        let mismatch = |what, recorded: String, replay: String| Err(VmError::ReplayMismatch { what, recorded, replay });
        let kernel_id = format!("{:016x} ({} bytes)", fnv(kernel), kernel.len());
        if format!("{} ({} bytes)", h.kernel_hash, h.kernel_bytes) != kernel_id {
            return mismatch("another kernel", format!("kernel {} ({} bytes)", h.kernel_hash, h.kernel_bytes), format!("kernel {kernel_id}"));
        }
        if h.guest_args != config.guest_args {
            return mismatch("other guest arguments", format!("{:?}", h.guest_args), format!("{:?}", config.guest_args));
        }
        if h.mem_mib != config.mem_mib {
            return mismatch("another RAM size", format!("{} MiB", h.mem_mib), format!("{} MiB", config.mem_mib));
        }
        if h.mmu != config.mmu.name() {
            return mismatch("another memory mode", h.mmu.clone(), config.mmu.name().into());
        }
        if h.nx != nx {
            return mismatch("a CPU with other no-execute support", format!("nx={}", h.nx), format!("nx={nx}"));
        }
        if config.disk.is_some() {
            return mismatch("a disk given to the replay (it reads none: the log has what the device did)", "none".into(), "a disk".into());
        }
        if let (Some(disk), SessionSetup::Replay { snapshot: Some(_), .. }) = (&h.disk, self) {
            // A snapshot names the disk the restored guest goes on with; a replay has none.
            return mismatch("--snapshot of a run with a disk (a replay reads no disk, so the snapshot could name none)", format!("disk {}", disk.path), "no disk".into());
        }
        Ok(())
    }

    /// Starts the session: creates the log (record) or hands the open one to the
    /// replayer.
    pub(super) fn start(self, header: &Header) -> Result<Session, VmError> {
        Ok(match self {
            SessionSetup::Record { log } => Session::Record(Recorder::create(&log, header)?),
            SessionSetup::Replay { log, until, snapshot } => Session::Replay(Box::new(Replayer::new(*log, until, snapshot))),
        })
    }
}

/// `hv replay --until N --snapshot FILE`: the replay stopped after exit N with the vCPU
/// still at that exit boundary; save the VM there as `hv ctl … snapshot` would (the
/// replayed devices have nothing in flight: `devices::Devices::drain`). Returns the
/// message to print.
pub(super) fn snapshot_here(path: &Path, boundary: &mut ExitBoundary, guest_args: &[String]) -> Result<String, String> {
    boundary.in_cr3_section = in_cr3_section(boundary.kvm);
    let inputs = CaptureInputs { disk: None, notify_always: false, guest_args };
    let state = capture(boundary, &inputs).map_err(|e| e.to_string())?;
    let summary = snapshot_file::write(path, state, boundary.kvm.ram()).map_err(|e| e.to_string())?;
    Ok(format!(
        "wrote a snapshot there to {} ({} of {} pages stored); continue from there with `hv restore {}`",
        path.display(),
        summary.pages_stored,
        summary.ram_pages,
        path.display()
    ))
}

/// The header of a log for this boot.
pub(super) fn header(config: &VmConfig, kernel: &[u8], tsc_khz: u64, nx: bool, disk: Option<(u64, bool)>) -> Header {
    Header {
        magic: MAGIC.into(),
        version: VERSION,
        kernel_hash: format!("{:016x}", fnv(kernel)),
        kernel_bytes: kernel.len() as u64,
        kernel_path: config.kernel.clone(),
        guest_args: config.guest_args.clone(),
        mem_mib: config.mem_mib,
        mmu: config.mmu.name().into(),
        tsc_khz,
        nx,
        disk: disk.map(|(sectors, read_only)| DiskIdentity {
            path: config.disk.as_ref().map_or(String::new(), |d| d.path.display().to_string()),
            sectors,
            read_only,
        }),
    }
}

/// The configuration that boots what `header` recorded (the kernel from `kernel` if
/// given, else the recorded path or the built-in guest); the caller adds trace and
/// timeout.
pub fn replay_config(header: &Header, kernel: Option<PathBuf>) -> Result<VmConfig, VmError> {
    let mmu = [MmuMode::Ept, MmuMode::Shadow].into_iter().find(|m| m.name() == header.mmu).ok_or_else(|| VmError::ReplayMismatch {
        what: "a memory mode this hv does not know",
        recorded: header.mmu.clone(),
        replay: "ept or shadow".into(),
    })?;
    let mut config = VmConfig::builtin_guest(&[]);
    config.kernel = kernel.or_else(|| header.kernel_path.clone());
    config.mem_mib = header.mem_mib;
    config.guest_args = header.guest_args.clone();
    config.mmu = mmu;
    Ok(config)
}
