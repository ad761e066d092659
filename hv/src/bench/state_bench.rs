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
//! - **live migration** on loopback: the guest's downtime (paused on the source until the
//!   destination confirms it runs) against the goal of 5 ms, and the total time against
//!   RAM size ÷ the loopback bandwidth measured in the same run (what sending all of RAM
//!   once would take).
//!
//! - **recording overhead** (`--record`, ReVirt's figure: 0–8 %): the same guest work
//!   run plain and recorded, alternately, its wall time from creating the VM to its
//!   shutdown. Recording serves the devices on the vCPU thread at doorbell exits and
//!   makes every clock read a hypercall, so console lines and clock reads are what it
//!   costs.
//!
//! The snapshot guest is `count` (a kernel printing a line every few milliseconds),
//! snapshotted after its first lines, so that it has booted, set up its devices and run
//! a while. The migrated guest runs `dirty-loop` over a small writable working set.

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

/// Live migrations of one memory mode.
#[derive(Clone, Debug)]
pub struct MigrationRow {
    /// The memory mode (both sides).
    pub mode: MmuMode,
    /// Median downtime.
    pub downtime: Duration,
    /// Median total time (connect to confirmation).
    pub total: Duration,
    /// Median pages sent.
    pub pages: u64,
    /// Median number of rounds.
    pub rounds: usize,
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
    /// Live migrations, per mode.
    pub migrations: Vec<MigrationRow>,
    /// Loopback TCP bandwidth measured in the same run, bytes per second.
    pub loopback_bytes_per_second: f64,
    /// Per recording workload: its words, the median wall time plain, and recorded.
    pub recordings: Vec<(String, Duration, Duration)>,
}

/// What the recording overhead is measured on: a worst case of console lines (each a
/// doorbell, served inline when recording), clock reads (a hypercall each when
/// recording) and hypercalls; and a guest that mostly computes in ring 3.
const RECORDING_WORKLOADS: [&[&str]; 2] = [&["count", "300", "0", ";", "hypercall-bench", "1000"], &["count-user", "30", "3000000"]];

/// Runs the recording workload once, plain or recorded; returns its wall time.
fn time_recording_workload(mem_mib: u64, words: &[&str], record: bool) -> Result<Duration, StateBenchError> {
    use crate::vmm::session::SessionSetup;
    let config = VmConfig { mem_mib, timeout: Some(Duration::from_secs(120)), ..VmConfig::builtin_guest(words) };
    let log = std::env::temp_dir().join(format!("hv-state-bench-{}.log", std::process::id()));
    let setup = record.then(|| SessionSetup::Record { log: log.clone() });
    let start = Instant::now();
    let vm = Vm::with_session(&config, Box::new(std::io::sink()), Instant::now(), setup)?;
    let report = vm.run()?;
    let took = start.elapsed();
    let _ = std::fs::remove_file(&log);
    match report.stop {
        crate::outcome::GuestStop::Shutdown { code: 0 } => Ok(took),
        other => Err(StateBenchError::Silent(format!("the recording workload stopped with {other:?}"))),
    }
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
    /// A migration failed.
    #[error("migration: {0}")]
    Migration(#[from] crate::migration::MigrationError),
    /// Loopback could not be measured.
    #[error("measuring loopback: {0}")]
    Loopback(#[from] std::io::Error),
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
    eprintln!("hv state-bench: loopback TCP bandwidth...");
    let loopback_bytes_per_second = loopback_bandwidth(config.mem_mib << 20)?;
    let mut migrations = Vec::new();
    for mode in [MmuMode::Ept, MmuMode::Shadow] {
        eprintln!("hv state-bench: live migrations of a {} MiB guest in {} mode ({reps}x)...", config.mem_mib, mode.name());
        let mut runs = Vec::new();
        for _ in 0..reps {
            runs.push(migrate_once(config.mem_mib, mode)?);
        }
        let pick = |f: &dyn Fn(&crate::migration::figures::MigrationReport) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        migrations.push(MigrationRow {
            mode,
            downtime: Duration::from_secs_f64(pick(&|r| r.downtime_ms) / 1e3),
            total: Duration::from_secs_f64(pick(&|r| r.total_ms) / 1e3),
            pages: pick(&|r| r.total_pages as f64) as u64,
            rounds: pick(&|r| r.rounds.len() as f64) as usize,
        });
    }
    let mut recordings = Vec::new();
    for words in RECORDING_WORKLOADS {
        eprintln!("hv state-bench: recording overhead of `{}`, plain and recorded alternately ({reps}x each)...", words.join(" "));
        time_recording_workload(config.mem_mib, words, false)?;
        let (mut plain, mut recorded) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            plain.push(time_recording_workload(config.mem_mib, words, false)?);
            recorded.push(time_recording_workload(config.mem_mib, words, true)?);
        }
        recordings.push((words.join(" "), median(plain), median(recorded)));
    }
    let snapshot = last.ok_or(StateBenchError::Silent(String::new()))?;
    Ok(StateBenchReport {
        recordings,
        ram_bytes: config.mem_mib << 20,
        snapshot,
        snapshot_pause: median(pauses),
        restores,
        migrations,
        loopback_bytes_per_second,
    })
}

/// Sends `bytes` over a loopback TCP connection and returns the rate.
fn loopback_bandwidth(bytes: u64) -> std::io::Result<f64> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let sink = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut conn, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        loop {
            match conn.read(&mut buf)? {
                0 => return Ok(got),
                n => got += n as u64,
            }
        }
    });
    let chunk = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    let mut conn = std::net::TcpStream::connect(addr)?;
    for _ in 0..bytes.div_ceil(chunk.len() as u64) {
        conn.write_all(&chunk)?;
    }
    drop(conn);
    let got = sink.join().map_err(|_| std::io::Error::other("the loopback reader panicked"))??;
    Ok(got as f64 / start.elapsed().as_secs_f64())
}

/// One live migration on loopback of a guest writing 2000 pages a second over 2 MiB.
fn migrate_once(mem_mib: u64, mode: MmuMode) -> Result<crate::migration::figures::MigrationReport, StateBenchError> {
    use crate::migration::{self, send::SendOptions, stream::kernel_identity, IncomingOptions};
    let config = VmConfig { mem_mib, mmu: mode, timeout: Some(Duration::from_secs(60)), ..VmConfig::builtin_guest(&["dirty-loop", "2", "2000", "3"]) };
    let kernel = kernel_identity(crate::boot::guest_image::PV_GUEST_ELF);
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let incoming = IncomingOptions {
        mem_mib,
        mmu: mode,
        kernel,
        trace: None,
        trace_max_events: crate::vmm::config::DEFAULT_TRACE_MAX_EVENTS,
        timeout: Some(Duration::from_secs(60)),
        seccomp: false,
    };
    let destination = std::thread::spawn(move || -> Result<(), migration::MigrationError> {
        let received = migration::receive(&listener, &incoming, Box::new(std::io::sink()), Instant::now(), None)?;
        let _ = received.vm.run();
        Ok(())
    });
    let vm = Vm::new(&config, Box::new(std::io::sink()), Instant::now())?;
    let control = vm.control();
    let source = std::thread::spawn(move || vm.run());
    // Let it boot and start writing its working set.
    std::thread::sleep(Duration::from_millis(300));
    let options = SendOptions { destination: format!("127.0.0.1:{port}"), max_rounds: 8, downtime_target: Duration::from_millis(5), kernel };
    let report = migration::send(&control, &options, migration::state_capture(&config), |_| {});
    let _ = source.join();
    // A failed send may never have reached the destination, which would wait forever:
    // only a successful one is waited for (the process ends the other thread).
    let report = report?;
    if let Ok(Err(e)) = destination.join() {
        return Err(e.into());
    }
    Ok(report)
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
    out += "  goal: restore at most 2 ms for a 64 MiB guest (Firecracker: about 3 ms for 128 MiB)\n\n";
    let ram_once = report.ram_bytes as f64 / report.loopback_bytes_per_second.max(1.0);
    out += &format!(
        "live migration on loopback (guest: dirty-loop over 2 MiB, 2000 pages/s); loopback TCP {:.0} MB/s, so all of RAM once takes {:.1} ms\n",
        report.loopback_bytes_per_second / 1e6,
        ram_once * 1e3
    );
    out += "  mode     downtime ms   total ms   total / (RAM / bandwidth)   pages sent   rounds\n";
    for m in &report.migrations {
        out += &format!(
            "  {:<6}   {:>11.2}   {:>8.1}   {:>25.2}   {:>10}   {:>6}\n",
            m.mode.name(),
            ms(m.downtime),
            ms(m.total),
            m.total.as_secs_f64() / ram_once.max(1e-9),
            m.pages,
            m.rounds
        );
    }
    out += "  goal: downtime at most 5 ms for a 64 MiB guest (Xen's paper: 60 ms; QEMU's default limit: 300 ms)\n\n";
    out += "recording overhead, the same guest work plain and recorded (ReVirt: 0-8%)\n";
    for (words, plain, recorded) in &report.recordings {
        out += &format!(
            "  {:<42} plain {:>8.1} ms   recorded {:>8.1} ms   overhead {:+6.1}%\n",
            format!("`{words}`"),
            ms(*plain),
            ms(*recorded),
            100.0 * (recorded.as_secs_f64() / plain.as_secs_f64().max(1e-9) - 1.0)
        );
    }
    out += "\nThis host runs KVM in software (PVM): guest ring 0 is emulated, so absolute times are\nslower than on a VT-x/AMD-V host; the ratios are what to compare.\n";
    out
}
