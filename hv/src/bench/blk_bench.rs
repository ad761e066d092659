//! `hv blk-bench`: how fast the block ring moves data, next to the host reading the
//! same file directly, measured in the same run.
//!
//! For each request size (4 KiB and 64 KiB) the guest's `blk-bench` command reads the
//! disk sequentially with a ring's worth of requests in flight, in a fresh VM, twice:
//! once with event-index suppression (the normal protocol) and once with every publish
//! notifying the other side. The host then reads the same bytes of the same file with
//! `pread` in the same sizes. The figure that matters is the ratio, guest / host, and the
//! notifications per request with and without suppression.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use backend_drivers::runner::{BackendStats, NotifyPolicy};

use crate::devices::console::CapturedOutput;
use crate::devices::block::DiskConfig;
use crate::kvm::host_info::{cpu_model, HostMmu};
use crate::outcome::GuestStop;
use crate::vmm::{VmConfig, VmError};

/// Size of the scratch image made when no --disk is given.
const SCRATCH_IMAGE_BYTES: u64 = 64 << 20;

/// What to measure.
pub struct BlkBenchConfig {
    /// Image to read (a scratch image is made if `None`).
    pub disk: Option<PathBuf>,
    /// Requests per configuration.
    pub requests: u64,
    /// Confine each VM's threads (`super::run_vm`).
    pub seccomp: bool,
}

/// One measured configuration.
#[derive(Clone, Debug)]
pub struct BlkBenchRow {
    /// Request size in bytes.
    pub request_bytes: u64,
    /// Whether event indices suppressed notifications.
    pub suppression: bool,
    /// Requests completed.
    pub requests: u64,
    /// Guest time for them, in seconds (from the guest's TSC).
    pub guest_seconds: f64,
    /// Host `pread` time for the same bytes, in seconds.
    pub host_seconds: f64,
    /// The backend's counters.
    pub backend: BackendStats,
}

impl BlkBenchRow {
    /// Requests per second in the guest.
    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.guest_seconds
    }
    /// Guest throughput in MB/s (10^6 bytes).
    pub fn guest_mb_per_second(&self) -> f64 {
        (self.requests * self.request_bytes) as f64 / self.guest_seconds / 1e6
    }
    /// Host throughput in MB/s.
    pub fn host_mb_per_second(&self) -> f64 {
        (self.requests * self.request_bytes) as f64 / self.host_seconds / 1e6
    }
}

/// Why the benchmark failed.
#[derive(Debug, thiserror::Error)]
pub enum BlkBenchError {
    /// The VM could not run.
    #[error(transparent)]
    Run(#[from] VmError),
    /// The guest did not finish its benchmark.
    #[error("the guest's blk-bench did not finish ({0}); its output:\n{1}")]
    Guest(String, String),
    /// The image could not be made or read.
    #[error("disk image: {0}")]
    Image(#[from] std::io::Error),
}

/// A scratch image, removed when dropped (`hv bench` uses it too).
pub(crate) struct ScratchImage(PathBuf);

impl ScratchImage {
    /// Where the image is.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// An image of `bytes` (whole MiB) of varying, non-zero content.
    pub(crate) fn create(bytes: u64) -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!("hv-blk-bench-{}.img", std::process::id()));
        let mut file = std::fs::File::create(&path)?;
        // Non-zero, varying content, so neither side can take a shortcut on zeros.
        let mut block = vec![0u8; 1 << 20];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for mib in 0..bytes >> 20 {
            for chunk in block.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&(x ^ mib).to_le_bytes());
            }
            file.write_all(&block)?;
        }
        file.sync_all()?;
        Ok(ScratchImage(path))
    }
}

impl Drop for ScratchImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the whole benchmark, printing progress to stderr.
pub fn run(config: &BlkBenchConfig) -> Result<Vec<BlkBenchRow>, BlkBenchError> {
    let scratch = match &config.disk {
        Some(_) => None,
        None => {
            eprintln!("hv blk-bench: making a {} MiB scratch image", SCRATCH_IMAGE_BYTES >> 20);
            Some(ScratchImage::create(SCRATCH_IMAGE_BYTES)?)
        }
    };
    let disk = config.disk.clone().unwrap_or_else(|| scratch.as_ref().map(|s| s.0.clone()).unwrap_or_default());
    let mut rows = Vec::new();
    for sectors in [8u64, 128] {
        let host_seconds = host_read_seconds(&disk, sectors * 512, config.requests)?;
        for suppression in [true, false] {
            eprintln!(
                "hv blk-bench: {} KiB reads, {}, {} requests...",
                sectors / 2,
                if suppression { "event-index suppression" } else { "always notify" },
                config.requests
            );
            let (guest_seconds, backend) = guest_run(&disk, sectors, config.requests, suppression, config.seccomp)?;
            rows.push(BlkBenchRow {
                request_bytes: sectors * 512,
                suppression,
                requests: config.requests,
                guest_seconds,
                host_seconds,
                backend,
            });
        }
    }
    Ok(rows)
}

/// Boots a VM that runs the guest's blk-bench; returns its time and the backend's counters.
fn guest_run(disk: &Path, sectors: u64, requests: u64, suppression: bool, seccomp: bool) -> Result<(f64, BackendStats), BlkBenchError> {
    let mut args = vec!["blk-bench".to_string(), sectors.to_string(), requests.to_string()];
    if !suppression {
        args.push("always".into());
    }
    let config = VmConfig {
        mmu: pv_abi::MmuMode::Ept,
        kernel: None,
        mem_mib: 64,
        guest_args: args,
        trace: None,
        trace_max_events: crate::vmm::config::DEFAULT_TRACE_MAX_EVENTS,
        disk: Some(DiskConfig { path: disk.to_path_buf(), read_only: true }),
        notify_policy: if suppression { NotifyPolicy::EventIndex } else { NotifyPolicy::Always },
        // Generous: the slowest configuration takes seconds on an emulated ring 0.
        timeout: Some(std::time::Duration::from_secs(600)),

        seccomp,
        balloon_target_mib: None,
    };
    let console = CapturedOutput::default();
    let report = super::run_vm(&config, Box::new(console.clone()))?;
    let output = console.text();
    if report.stop != (GuestStop::Shutdown { code: 0 }) {
        let why = report.stop.message().unwrap_or_else(|| format!("exit code {}", report.stop.exit_code()));
        return Err(BlkBenchError::Guest(why, output));
    }
    let line = output.lines().find(|l| l.starts_with("blk-bench: requests="));
    let field = |name: &str| -> Option<u64> {
        line?.split_whitespace().find_map(|w| w.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
    };
    let (Some(cycles), Some(khz)) = (field("tsc_cycles"), field("tsc_khz")) else {
        return Err(BlkBenchError::Guest("no result line".into(), output));
    };
    if khz == 0 {
        return Err(BlkBenchError::Guest("KVM did not report the TSC frequency".into(), output));
    }
    let seconds = cycles as f64 / (khz as f64 * 1e3);
    let backend = report.stats.devices.iter().find(|(n, _)| *n == "blk").map(|(_, s)| s.clone()).unwrap_or_default();
    Ok((seconds, backend))
}

/// The host reading the same bytes the guest read: sequential preads of the same size.
pub(crate) fn host_read_seconds(disk: &Path, request_bytes: u64, requests: u64) -> Result<f64, BlkBenchError> {
    let file = std::fs::File::open(disk)?;
    let len = file.metadata()?.len();
    let mut buf = vec![0u8; request_bytes as usize];
    let mut sum = 0u64;
    let start = Instant::now();
    let mut offset = 0;
    for _ in 0..requests {
        if offset + request_bytes > len {
            offset = 0;
        }
        file.read_exact_at(&mut buf, offset)?;
        // Touch the data, as the guest's frames are touched by the copy into them.
        sum = sum.wrapping_add(u64::from(buf[0]) + u64::from(buf[buf.len() - 1]));
        offset += request_bytes;
    }
    let seconds = start.elapsed().as_secs_f64();
    std::hint::black_box(sum);
    Ok(seconds)
}

/// The report.
pub fn render(rows: &[BlkBenchRow]) -> String {
    let mut s = String::new();
    let host = HostMmu::detect();
    s.push_str(&format!("hv blk-bench: block ring reads, up to 32 requests in flight\n  host: {}; {}\n\n", cpu_model(), host.describe()));
    s.push_str(&format!(
        "  {:<7} {:<13} {:>10} {:>9} {:>10} {:>10} {:>13} {:>11}\n",
        "size", "notification", "requests/s", "MB/s", "host MB/s", "guest/host", "doorbells/req", "upcalls/req"
    ));
    for r in rows {
        let per = |n: u64| n as f64 / r.requests as f64;
        s.push_str(&format!(
            "  {:<7} {:<13} {:>10.0} {:>9.1} {:>10.1} {:>10.4} {:>13.3} {:>11.3}\n",
            format!("{} KiB", r.request_bytes / 1024),
            if r.suppression { "event index" } else { "always" },
            r.requests_per_second(),
            r.guest_mb_per_second(),
            r.host_mb_per_second(),
            r.guest_mb_per_second() / r.host_mb_per_second(),
            per(r.backend.doorbells),
            per(r.backend.notifications),
        ));
    }
    s
}
