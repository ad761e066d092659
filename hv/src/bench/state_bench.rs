//! `hv state-bench`: what moving a VM in space and time costs, measured in one run.
//!
//! Each figure is set next to a baseline from the same run, as every hv benchmark is:
//! - **snapshot**: how long the guest is paused while its state and non-zero pages are
//!   written, the file's size against the guest's RAM;
//! - **restore to the first instruction**: from opening the file to a VM ready to
//!   enter the guest (the memory is mapped, not read: the cost does not grow with RAM),
//!   against **booting** the same guest from its ELF file, in each memory mode and
//!   across modes. The goal is 2 ms for a 64 MiB guest (Firecracker reports
//!   about 3 ms for 128 MiB).
//!
//! The guest is `count` (a kernel printing a line every few milliseconds), snapshotted
//! after its first lines, so that it has booted, set up its devices and run a while.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pv_abi::MmuMode;

use crate::devices::console::CapturedOutput;
use crate::vmm::snapshot::{self, AfterSnapshot, SnapshotInputs, SnapshotReport};
use crate::vmm::{Vm, VmConfig, VmError};

/// What to measure.
#[derive(Clone, Debug)]
pub struct StateBenchConfig {
    /// Guest RAM in MiB.
    pub mem_mib: u64,
    /// Repetitions of each timing (the median is reported).
    pub reps: usize,
}

/// One snapshot-and-restore measurement set, for one mode pair.
#[derive(Clone, Debug)]
pub struct RestoreRow {
    /// The mode the snapshot was taken in.
    pub taken_in: MmuMode,
    /// The mode it was restored in.
    pub restored_in: MmuMode,
    /// Median time from opening the file to a VM ready to run.
    pub restore: Duration,
    /// Median time to boot the same guest from its ELF file to a VM ready to run, in
    /// `restored_in` mode.
    pub boot: Duration,
}

/// Everything measured.
#[derive(Clone, Debug)]
pub struct StateBenchReport {
    /// Guest RAM in bytes.
    pub ram_bytes: u64,
    /// The snapshot (the last one taken).
    pub snapshot: SnapshotReport,
    /// Median pause for a snapshot.
    pub snapshot_pause: Duration,
    /// Restore against boot, per mode pair.
    pub restores: Vec<RestoreRow>,
}

/// Why the benchmark failed.
#[derive(Debug, thiserror::Error)]
pub enum StateBenchError {
    /// A VM could not be built or run.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// A snapshot failed.
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    /// The snapshot file could not be read back.
    #[error(transparent)]
    File(#[from] crate::state::snapshot_file::SnapshotFileError),
    /// The guest did not get going.
    #[error("the guest printed nothing within 30 s; its output: {0:?}")]
    Silent(String),
}

fn guest_config(mem_mib: u64, mmu: MmuMode) -> VmConfig {
    VmConfig { mem_mib, mmu, timeout: Some(Duration::from_secs(120)), ..VmConfig::builtin_guest(&["count", "1000000", "5"]) }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Boots `count`, waits for its third line, snapshots it to `file` and stops it.
fn snapshot_of_count(mem_mib: u64, mmu: MmuMode, file: &std::path::Path) -> Result<SnapshotReport, StateBenchError> {
    let config = guest_config(mem_mib, mmu);
    let console = CapturedOutput::default();
    let vm = Vm::new(&config, Box::new(console.clone()), Instant::now())?;
    let control = vm.control();
    let runner = std::thread::spawn(move || vm.run());
    let deadline = Instant::now() + Duration::from_secs(30);
    while console.text().lines().filter(|l| l.starts_with("count: ")).count() < 3 {
        if Instant::now() > deadline {
            return Err(StateBenchError::Silent(console.text()));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let report = snapshot::take(&control, SnapshotInputs::from_config(&config), file.to_path_buf(), AfterSnapshot::Stop)?;
    let _ = runner.join();
    Ok(report)
}

/// Opens `file` and builds a VM from it, ready to run; returns how long that took.
fn time_restore(file: &std::path::Path, mmu: MmuMode) -> Result<Duration, StateBenchError> {
    let start = Instant::now();
    let (state, ram) = crate::state::snapshot_file::read(file)?.map_ram()?;
    let config = VmConfig::for_state(&state, Some(mmu))?;
    let vm = Vm::restore(&config, &state, ram, Box::new(std::io::sink()), Instant::now())?;
    let took = start.elapsed();
    drop(vm);
    Ok(took)
}

fn time_boot(mem_mib: u64, mmu: MmuMode) -> Result<Duration, StateBenchError> {
    let start = Instant::now();
    let vm = Vm::new(&guest_config(mem_mib, mmu), Box::new(std::io::sink()), Instant::now())?;
    let took = start.elapsed();
    drop(vm);
    Ok(took)
}

/// Runs the benchmark, printing progress to stderr.
pub fn run(config: &StateBenchConfig) -> Result<StateBenchReport, StateBenchError> {
    let reps = config.reps.max(1);
    let dir = std::env::temp_dir();
    let file = |mode: MmuMode| -> PathBuf { dir.join(format!("hv-state-bench-{}-{}.snap", std::process::id(), mode.name())) };
    let mut pauses = Vec::new();
    let mut last = None;
    for mode in [MmuMode::Ept, MmuMode::Shadow] {
        eprintln!("hv state-bench: snapshots of a {} MiB guest in {} mode ({reps}x)...", config.mem_mib, mode.name());
        for _ in 0..reps {
            let report = snapshot_of_count(config.mem_mib, mode, &file(mode))?;
            pauses.push(report.paused_for);
            last = Some(report);
        }
    }
    let mut restores = Vec::new();
    for (taken_in, restored_in) in [(MmuMode::Ept, MmuMode::Ept), (MmuMode::Shadow, MmuMode::Shadow), (MmuMode::Ept, MmuMode::Shadow), (MmuMode::Shadow, MmuMode::Ept)] {
        eprintln!("hv state-bench: restore {} -> {} against boot ({reps}x each)...", taken_in.name(), restored_in.name());
        let mut restore = Vec::new();
        let mut boot = Vec::new();
        // One unmeasured round first: the first KVM VM of a process pays for warming up
        // KVM's and the allocator's caches, which is not what either figure is about.
        time_restore(&file(taken_in), restored_in)?;
        time_boot(config.mem_mib, restored_in)?;
        for _ in 0..reps {
            restore.push(time_restore(&file(taken_in), restored_in)?);
            boot.push(time_boot(config.mem_mib, restored_in)?);
        }
        restores.push(RestoreRow { taken_in, restored_in, restore: median(restore), boot: median(boot) });
    }
    for mode in [MmuMode::Ept, MmuMode::Shadow] {
        let _ = std::fs::remove_file(file(mode));
    }
    let snapshot = last.ok_or(StateBenchError::Silent(String::new()))?;
    Ok(StateBenchReport { ram_bytes: config.mem_mib << 20, snapshot, snapshot_pause: median(pauses), restores })
}

/// The report as text.
pub fn render(report: &StateBenchReport) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let s = &report.snapshot.summary;
    let mut out = format!("hv state-bench: a {} MiB guest (`count`), medians\n\n", report.ram_bytes >> 20);
    out += &format!(
        "snapshot   paused {:.2} ms; {} of {} pages stored ({:.1} MiB on disk, {:.1}% of RAM; the file reads as {:.1} MiB)\n\n",
        ms(report.snapshot_pause),
        s.pages_stored,
        s.ram_pages,
        s.stored_bytes as f64 / (1 << 20) as f64,
        100.0 * s.pages_stored as f64 / s.ram_pages.max(1) as f64,
        s.file_bytes as f64 / (1 << 20) as f64,
    );
    out += "restore to the first instruction, against boot to the first instruction (same mode)\n";
    out += "  taken in -> restored in   restore ms   boot ms   restore/boot\n";
    for r in &report.restores {
        out += &format!(
            "  {:>6} -> {:<6}           {:>9.2}   {:>7.2}   {:>12.2}\n",
            r.taken_in.name(),
            r.restored_in.name(),
            ms(r.restore),
            ms(r.boot),
            ms(r.restore) / ms(r.boot).max(1e-9)
        );
    }
    out += "  goal: restore at most 2 ms for a 64 MiB guest (Firecracker: about 3 ms for 128 MiB)\n";
    out
}
