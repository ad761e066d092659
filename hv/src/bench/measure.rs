//! One workload in one memory mode: boot a fresh VM for the measurement and another
//! for the zero-work run (see `counters.rs`), check the guest's answers, and turn TSC
//! cycles into time per operation.

use std::path::Path;
use std::time::{Duration, Instant};

use backend_drivers::runner::NotifyPolicy;
use pv_abi::MmuMode;
use serde::Serialize;

use super::counters::{self, Counts, PerOp};
use super::guest_output::{self, GuestOutputError, GuestReport};
use super::summary::Summary;
use super::workloads::Workload;
use crate::devices::console::CapturedOutput;
use crate::devices::block::DiskConfig;
use crate::outcome::GuestStop;
use crate::vmm::{VmConfig, VmError};

/// A run that takes longer than this is stopped: a hung guest must not hang the bench.
const VM_TIMEOUT: Duration = Duration::from_secs(120);
/// Lines of guest output quoted when a guest fails.
const OUTPUT_TAIL_LINES: usize = 12;

/// What one workload measured in one mode.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Measured {
    /// Repetitions.
    pub reps: u64,
    /// Operations per repetition.
    pub ops_per_rep: u64,
    /// Time per operation over the repetitions, in nanoseconds (guest TSC).
    pub time_per_op_ns: Summary,
    /// Counters per operation, boot and setup subtracted.
    pub per_op: PerOp,
    /// Every repetition's checksum matched hv's prediction (always true in a result:
    /// a mismatch is an error instead).
    pub verified: bool,
    /// Wall time of both VMs, in seconds.
    pub wall_seconds: f64,
}

/// Why a workload could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// hv could not set up or run the VM at all (KVM, memory mode, disk).
    #[error("{0}")]
    Vm(#[from] VmError),
    /// The guest stopped badly or reported a failure.
    #[error("{why}; the guest's last lines:\n{output}")]
    Guest {
        /// What happened.
        why: String,
        /// The end of its console output.
        output: String,
    },
    /// The guest's output did not make sense.
    #[error(transparent)]
    Output(#[from] GuestOutputError),
    /// A repetition's checksum is not what the work must produce.
    #[error("repetition {rep} of the {run} gave checksum {got:#x}, expected {expected:#x}: the guest did not do the work it timed, or read wrong data")]
    Check {
        /// Which run.
        run: &'static str,
        /// Which repetition.
        rep: usize,
        /// The guest's.
        got: u64,
        /// hv's.
        expected: u64,
    },
    /// The block data read through the ring differs from the image.
    #[error("the guest's hash of the disk's first sectors is {got:#x}, the host's is {expected:#x}")]
    DiskData {
        /// The guest's.
        got: u64,
        /// The host's.
        expected: u64,
    },
    /// The guest's TSC frequency is unknown, so cycles cannot become time.
    #[error("KVM did not report the guest's TSC frequency")]
    NoTscFrequency,
}

/// What `measure` needs besides the workload.
pub struct MeasureInputs<'a> {
    /// Memory mode.
    pub mode: MmuMode,
    /// Quick sizes or full.
    pub quick: bool,
    /// The disk image (for blk).
    pub disk: Option<&'a Path>,
    /// The host's hash of the sectors the guest verifies (for blk).
    pub disk_hash: Option<u64>,
    /// Confine each VM's threads (`super::run_vm`).
    pub seccomp: bool,
}

/// Measures `workload`; `progress` is called before each of the two VMs boots.
pub fn measure(workload: &Workload, inputs: &MeasureInputs, progress: &mut dyn FnMut(&str)) -> Result<Measured, MeasureError> {
    let started = Instant::now();
    let size = workload.size(inputs.quick);
    progress("zero-work run");
    let (zero_report, zero_counts) = boot(workload, inputs, 0)?;
    verify(workload, inputs, &zero_report, 0, "zero-work run")?;
    progress(&format!("{} × {} operations", size.reps, size.ops));
    let (report, measured_counts) = boot(workload, inputs, size.ops)?;
    verify(workload, inputs, &report, size.ops, "measured run")?;
    if report.tsc_khz == 0 {
        return Err(MeasureError::NoTscFrequency);
    }
    let ns_per_cycle = 1e6 / report.tsc_khz as f64;
    let times: Vec<f64> = report.reps.iter().map(|r| r.cycles as f64 * ns_per_cycle / r.ops as f64).collect();
    let time_per_op_ns = Summary::of(&times).ok_or_else(|| MeasureError::Guest {
        why: "the guest reported no usable repetition".into(),
        output: String::new(),
    })?;
    Ok(Measured {
        reps: size.reps,
        ops_per_rep: size.ops,
        time_per_op_ns,
        per_op: counters::per_op(&measured_counts, &zero_counts, size.reps * size.ops),
        verified: true,
        wall_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Boots one VM running the workload with `ops` operations per repetition.
fn boot(workload: &Workload, inputs: &MeasureInputs, ops: u64) -> Result<(GuestReport, Counts), MeasureError> {
    let config = VmConfig {
        kernel: None,
        mem_mib: workload.mem_mib(),
        guest_args: workload.guest_args(workload.size(inputs.quick), ops),
        trace: None,
        trace_max_events: crate::vmm::config::DEFAULT_TRACE_MAX_EVENTS,
        disk: inputs.disk.filter(|_| workload.needs_disk()).map(|p| DiskConfig { path: p.to_path_buf(), read_only: true }),
        notify_policy: NotifyPolicy::EventIndex,
        timeout: Some(VM_TIMEOUT),
        mmu: inputs.mode,

        seccomp: inputs.seccomp,
        balloon_target_mib: None,
    };
    let console = CapturedOutput::default();
    let run = super::run_vm(&config, Box::new(console.clone()))?;
    let text = console.text();
    let parsed = guest_output::parse(&text);
    // The guest's own account of a failure says more than its exit code.
    if let Err(GuestOutputError::GuestFailed(why)) = parsed {
        return Err(MeasureError::Guest { why, output: tail(&text) });
    }
    if run.stop != (GuestStop::Shutdown { code: 0 }) {
        let why = run.stop.message().unwrap_or_else(|| format!("the guest exited with code {}", run.stop.exit_code()));
        return Err(MeasureError::Guest { why, output: tail(&text) });
    }
    Ok((parsed?, counters::counts(&run.stats)))
}

/// Every repetition present, with the checksum hv predicts, and (blk) the right data.
fn verify(workload: &Workload, inputs: &MeasureInputs, report: &GuestReport, ops: u64, run: &'static str) -> Result<(), MeasureError> {
    let size = workload.size(inputs.quick);
    if ops > 0 && report.reps.len() as u64 != size.reps {
        return Err(MeasureError::Guest { why: format!("{} repetitions reported, {} asked for", report.reps.len(), size.reps), output: String::new() });
    }
    for (i, rep) in report.reps.iter().enumerate() {
        let expected = workload.expected_check(size, i as u64, ops).unwrap_or(ops);
        if rep.ops != ops || rep.check != expected {
            return Err(MeasureError::Check { run, rep: i, got: rep.check, expected });
        }
    }
    if let Some(expected) = inputs.disk_hash.filter(|_| workload.needs_disk()) {
        let got = report.read_sum.unwrap_or(0);
        if got != expected {
            return Err(MeasureError::DiskData { got, expected });
        }
    }
    Ok(())
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(OUTPUT_TAIL_LINES)..].iter().map(|l| format!("  | {l}\n")).collect()
}
