//! The command-line face of live migration: the options of a migration (shared by
//! `hv run --migrate-to` and the control socket's `migrate`), running one with its
//! figures printed as it goes, and `hv run --incoming`.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use crate::migration::{self, IncomingOptions, MigrationReport, SendOptions};
use crate::vcpu::control::VcpuControl;
use crate::vmm::{Vm, VmConfig};

/// The options of one migration.
#[derive(Clone, Debug, Args)]
pub struct MigrateOptions {
    /// Live rounds at most (round 0, which copies all touched memory, included) before
    /// the guest is paused anyway and the remaining dirty pages are sent
    /// (stop-and-copy).
    #[arg(long, value_name = "N", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=1000), requires = "migrate_to")]
    pub max_rounds: u32,

    /// The downtime to aim for, in milliseconds: the live rounds stop once the pages
    /// still dirty could be sent in this time at the bandwidth measured so far.
    #[arg(long, value_name = "MS", default_value_t = 5.0, value_parser = parse_downtime, requires = "migrate_to")]
    pub downtime_ms: f64,

    /// Write the migration's figures (every round, the downtime, the totals) as JSON to
    /// PATH.
    #[arg(long, value_name = "PATH", requires = "migrate_to")]
    pub json: Option<PathBuf>,

    /// Draw the pages sent and dirtied per round as an SVG chart to PATH.
    #[arg(long, value_name = "PATH", requires = "migrate_to")]
    pub plot: Option<PathBuf>,
}

/// `--downtime-ms`: a non-negative number of milliseconds, at most an hour.
fn parse_downtime(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(ms) if (0.0..=3_600_000.0).contains(&ms) => Ok(ms),
        _ => Err(format!("'{s}' is not a number of milliseconds from 0 to 3600000")),
    }
}

/// Migrates the VM `control` reaches (created from `config`) to `destination`,
/// printing each round to standard error as it ends, then the summary, and writing
/// the JSON and the plot if asked. On error the guest runs on where it was.
pub fn migrate(control: &VcpuControl, config: &VmConfig, destination: &str, options: &MigrateOptions) -> Result<MigrationReport, String> {
    let send_options = SendOptions {
        destination: destination.to_string(),
        max_rounds: options.max_rounds,
        downtime_target: Duration::from_secs_f64(options.downtime_ms / 1e3),
        kernel: migration::kernel_of(config)?,
    };
    let progress = |r: &migration::RoundFigures| {
        let _ = writeln!(std::io::stderr(), "{}", r.line());
    };
    let report = migration::send(control, &send_options, migration::state_capture(config), progress)
        .map_err(|e| format!("migration to {destination} failed: {e}; the guest runs on here"))?;
    eprintln!("{}", report.summary());
    let mut problems = Vec::new();
    if let Some(path) = &options.json {
        if let Err(e) = std::fs::write(path, report.to_json() + "\n") {
            problems.push(format!("cannot write the JSON to {}: {e}", path.display()));
        }
    }
    if let Some(path) = &options.plot {
        if let Err(e) = migration::plot::write(&report, path) {
            problems.push(format!("cannot write the plot to {}: {e}", path.display()));
        }
    }
    for p in problems {
        eprintln!("hv: {p}");
    }
    Ok(report)
}

/// `hv run --incoming ADDR:PORT`: waits for one guest and builds it here (a guest with a
/// network device on `port`, `--tap`'s switch port); returns it with the configuration it
/// runs with.
pub fn receive(address: &str, config: &VmConfig, started: Instant, port: Option<Box<dyn backend_drivers::frame_port::FramePort>>) -> Result<(Vm, VmConfig), String> {
    let listener = TcpListener::bind(address).map_err(|e| format!("cannot listen on {address}: {e}"))?;
    let local = listener.local_addr().map_or_else(|_| address.to_string(), |a| a.to_string());
    eprintln!("hv: waiting for a migrating guest on {local}");
    let options = IncomingOptions {
        mem_mib: config.mem_mib,
        mmu: config.mmu,
        kernel: migration::kernel_of(config)?,
        trace: config.trace.clone(),
        trace_max_events: config.trace_max_events,
        timeout: config.timeout,
        seccomp: config.seccomp,
    };
    let received = migration::receive(&listener, &options, Box::new(std::io::stdout()), started, port)
        .map_err(|e| format!("receiving a guest on {local}: {e}"))?;
    eprintln!(
        "hv: received a guest from {} ({} mode there, {} here): {} pages in {} rounds; restored and confirmed in {:.2} ms",
        received.peer,
        received.came_from.name(),
        config.mmu.name(),
        received.pages,
        received.rounds,
        received.restore_ms
    );
    let mut continued = received.config;
    continued.kernel = config.kernel.clone();
    Ok((received.vm, continued))
}
