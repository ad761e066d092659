//! `hv bench`: what shadow paging and KVM's two-dimensional paging each cost, measured
//! side by side, next to the physical limits of the same host, in one run.
//!
//! The plan of a run:
//!
//! 1. **Baselines** (`baseline.rs`, `native.rs`, the host half of `blk_bench.rs`):
//!    a bare KVM exit with a minimal guest; the `tlb-miss` loop run natively in this
//!    process; the host reading the disk image with `pread`.
//! 2. **Workloads** (`workloads.rs`), for each memory mode: every workload in a fresh
//!    VM, plus a zero-work run of it in another fresh VM to take boot and setup out of
//!    the counters (`counters.rs`, `measure.rs`). The guest times its repetitions with
//!    its TSC and checks its own results (`guest_output.rs`, `checks.rs`).
//! 3. **Report**: ratios (`results.rs`), a table (`report.rs`), JSON (`json.rs`) and an
//!    SVG chart (`plot.rs`).
//!
//! A mode in which no VM can run at all (for example one that this build of hv does not
//! offer) is reported as such, with hv's error, and the other mode still runs.
//!
//! `hv bench --network` ([`network`]) measures the network and the balloon instead, each
//! figure against a baseline from the same run; `hv blk-bench` ([`blk_bench`]) and `hv
//! state-bench` ([`state_bench`]) measure the block ring and moving a VM.

pub mod baseline;
pub mod blk_bench;
pub mod checks;
pub mod counters;
pub mod guest_output;
pub mod json;
pub mod measure;
pub mod native;
pub mod network;
pub mod plot;
pub mod report;
pub mod results;
pub mod state_bench;
pub mod summary;
pub mod workloads;

use std::time::Instant;

use pv_abi::MmuMode;

use crate::bench::blk_bench::{host_read_seconds, ScratchImage};
use measure::{MeasureError, MeasureInputs};
use results::{Baselines, BenchReport, HostDescription, HostDiskBaseline, ModeFailure, NativeBaseline, WorkloadResult};
use summary::Summary;
use workloads::{Kind, Workload};

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Memory modes, in order.
    pub modes: Vec<MmuMode>,
    /// Workloads, in order.
    pub workloads: Vec<&'static Workload>,
    /// Small sizes (under 20 s on the development machines).
    pub quick: bool,
    /// Confine each measured VM's threads with seccomp filters (see [`run_vm`]).
    pub seccomp: bool,
}

/// Disk image for the blk workloads: big enough for every read a full run makes.
const SCRATCH_IMAGE_BYTES: u64 = 16 << 20;
/// Sectors the guest hashes after its blk reads (must match pv-guest/src/commands/bench/mod.rs).
const BLK_VERIFY_BYTES: usize = 64 * 512;
/// Bare exits per repetition.
const BARE_EXITS_QUICK: u64 = 20_000;
const BARE_EXITS_FULL: u64 = 100_000;

/// Progress on standard error: each step as it starts, with the time since the start.
struct Progress {
    total: usize,
    done: usize,
    started: Instant,
    /// On a terminal: one line redrawn in place, with a bar. Otherwise (a log, a test,
    /// CI): one plain line per step, which reads well in a file.
    terminal: bool,
}

impl Progress {
    fn new(total: usize) -> Self {
        use std::io::IsTerminal;
        Progress { total, done: 0, started: Instant::now(), terminal: std::io::stderr().is_terminal() }
    }

    fn step(&mut self, what: &str) {
        self.done += 1;
        let secs = self.started.elapsed().as_secs_f64();
        if self.terminal {
            const WIDTH: usize = 30;
            let filled = WIDTH * self.done / self.total.max(1);
            let bar = format!("{}{}", "#".repeat(filled), "-".repeat(WIDTH - filled));
            // \r returns to the line start; \x1b[K clears what a longer line left behind.
            eprint!("\r\x1b[Khv bench [{bar}] {:>2}/{} {secs:>6.1} s  {what}", self.done, self.total);
            if self.done == self.total {
                eprintln!();
            }
        } else {
            eprintln!("hv bench [{:>2}/{}] {secs:>6.1} s  {what}", self.done, self.total);
        }
    }
}

/// Why the run could not start.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The scratch disk image could not be made or read.
    #[error("the scratch disk image for the blk workloads: {0}")]
    Disk(#[from] std::io::Error),
    /// The host could not read the image for its baseline.
    #[error("the host's read of the disk image: {0}")]
    HostRead(#[from] crate::bench::blk_bench::BlkBenchError),
}

/// Runs the benchmark. Failures of single workloads or modes are in the report; only a
/// failure to prepare the run is an error.
pub fn run(config: &BenchConfig) -> Result<BenchReport, BenchError> {
    let started = Instant::now();
    let needs_disk = config.workloads.iter().any(|w| w.needs_disk());
    let has_baseline = |w: &&&Workload| matches!(w.kind, Kind::TlbMiss { .. } | Kind::Blk { .. });
    let baseline_steps = 1 + usize::from(needs_disk) + config.workloads.iter().filter(has_baseline).count();
    let mut progress = Progress::new(baseline_steps + 2 * config.modes.len() * config.workloads.len());

    let disk = if needs_disk {
        progress.step(&format!("making a {} MiB scratch disk image", SCRATCH_IMAGE_BYTES >> 20));
        Some(ScratchImage::create(SCRATCH_IMAGE_BYTES)?)
    } else {
        None
    };
    let disk_hash = match &disk {
        Some(image) => {
            let bytes = std::fs::read(image.path())?;
            Some(checks::fnv1a(&bytes[..BLK_VERIFY_BYTES.min(bytes.len())]))
        }
        None => None,
    };
    let baselines = measure_baselines(config, disk.as_ref(), &mut progress)?;

    let mut results = Vec::new();
    let mut mode_failures = Vec::new();
    for &mode in &config.modes {
        let inputs = MeasureInputs { mode, quick: config.quick, disk: disk.as_ref().map(|d| d.path()), disk_hash, seccomp: config.seccomp };
        let mut failed_mode: Option<String> = None;
        for workload in &config.workloads {
            let outcome = match &failed_mode {
                Some(why) => {
                    progress.done += 2;
                    Err(format!("not measured: {why}"))
                }
                None => {
                    let mut step = |what: &str| progress.step(&format!("{:<6} {:<18} {what}", mode.name(), workload.id));
                    match measure::measure(workload, &inputs, &mut step) {
                        Ok(m) => Ok(m),
                        Err(MeasureError::Vm(e)) => {
                            let why = format!("hv cannot run a VM with --mmu {}: {e}", mode.name());
                            eprintln!("hv bench: {why}; skipping the rest of this mode");
                            mode_failures.push(ModeFailure { mode: mode.name(), error: why.clone() });
                            failed_mode = Some(why.clone());
                            Err(why)
                        }
                        Err(e) => {
                            eprintln!("hv bench: {} in --mmu {} FAILED: {e}", workload.id, mode.name());
                            Err(e.to_string())
                        }
                    }
                }
            };
            let (measured, error) = match outcome {
                Ok(m) => (Some(m), None),
                Err(e) => (None, Some(e)),
            };
            results.push(WorkloadResult { workload: workload.id, mode: mode.name(), operation: workload.operation, measured, error });
        }
    }
    let mut report = BenchReport {
        schema_version: results::SCHEMA_VERSION,
        host: HostDescription::detect(),
        quick: config.quick,
        modes: config.modes.iter().map(|m| m.name()).collect(),
        results,
        mode_failures,
        baselines,
        comparisons: Vec::new(),
        wall_seconds: started.elapsed().as_secs_f64(),
    };
    report.compute_comparisons();
    Ok(report)
}

/// The bare exit, the native loops and the host's reads.
fn measure_baselines(config: &BenchConfig, disk: Option<&ScratchImage>, progress: &mut Progress) -> Result<Baselines, BenchError> {
    let mut baselines = Baselines::default();
    let reps = config.workloads.first().map_or(3, |w| w.size(config.quick).reps);
    progress.step("baseline: bare KVM exit round trip (the guest's hypercall loop, without hv)");
    let exits = if config.quick { BARE_EXITS_QUICK } else { BARE_EXITS_FULL };
    match baseline::bare_exit_round_trip(exits, reps) {
        Ok(s) => baselines.bare_exit_round_trip_ns = Some(s),
        Err(e) => {
            eprintln!("hv bench: {e}");
            baselines.bare_exit_error = Some(e.to_string());
        }
    }
    for w in &config.workloads {
        let size = w.size(config.quick);
        match (w.kind, disk) {
            (Kind::TlbMiss { large }, _) => {
                let bytes = size.arg.unwrap_or(0) << 20;
                progress.step(&format!("baseline: {} loop run natively in this process", w.id));
                let walk = native::tlb_walk(bytes, size.ops, size.reps, large);
                if let Err(e) = &walk {
                    eprintln!("hv bench: {e}");
                }
                baselines.native.push(NativeBaseline {
                    workload: w.id,
                    working_set_bytes: bytes,
                    error: walk.as_ref().err().map(|e| e.to_string()),
                    measured: walk.ok(),
                });
            }
            (Kind::Blk { sectors }, Some(image)) => {
                progress.step(&format!("baseline: the host reading the image, {} KiB requests", sectors / 2));
                let mut times = Vec::new();
                for _ in 0..size.reps {
                    times.push(host_read_seconds(image.path(), sectors * 512, size.ops)? * 1e9 / size.ops as f64);
                }
                if let Some(s) = Summary::of(&times) {
                    baselines.host_disk.push(HostDiskBaseline { workload: w.id, request_bytes: sectors * 512, time_per_request_ns: s });
                }
            }
            _ => {}
        }
    }
    Ok(baselines)
}

/// Builds and runs one VM to its end. With `config.seccomp`, on a thread of its own: the
/// vCPU thread's filter stays after `Vm::run` returns, and the benchmark goes on to build
/// the next VM (which needs `/dev/kvm`, new threads, ...) on the thread that called this.
pub(crate) fn run_vm(
    config: &crate::vmm::VmConfig,
    console: Box<dyn std::io::Write + Send>,
) -> Result<crate::vmm::RunReport, crate::vmm::VmError> {
    let run = move || crate::vmm::Vm::new(config, console, std::time::Instant::now())?.run();
    if !config.seccomp {
        return run();
    }
    std::thread::scope(|s| {
        let vcpu = std::thread::Builder::new().name("hv-bench-vcpu".into()).spawn_scoped(s, run).map_err(|e| {
            let reason = format!("cannot start a thread for the VM: {e}");
            crate::vmm::VmError::Sandbox(crate::sandbox::SandboxError::Install { kind: "vcpu", reason })
        })?;
        vcpu.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
