//! Running a guest for a demo: a fresh VM, its console captured, its text trace read back
//! as lines, its counters kept. Each run is confined by seccomp as `hv run`'s guests are
//! (on a thread of its own, as `hv bench` does, so the demo can go on making VMs).

use std::path::PathBuf;

use backend_drivers::runner::NotifyPolicy;
use pv_abi::MmuMode;

use crate::devices::block::DiskConfig;
use crate::devices::console::CapturedOutput;
use crate::outcome::GuestStop;
use crate::trace::TraceFormat;
use crate::vmm::stats::RunStats;
use crate::vmm::{VmConfig, VmError};

/// What one demo guest did.
pub struct DemoRun {
    /// Its console output.
    pub console: String,
    /// Its text trace, one line per event.
    pub trace: Vec<String>,
    /// Its counters (`--stats`).
    pub stats: RunStats,
    /// How it stopped.
    pub stop: GuestStop,
}

/// How a demo guest is set up.
pub struct DemoGuest<'a> {
    /// Its command line.
    pub args: &'a [&'a str],
    /// Its memory mode.
    pub mmu: MmuMode,
    /// A disk image, read-only or not.
    pub disk: Option<(PathBuf, bool)>,
    /// When backends notify the guest.
    pub notify: NotifyPolicy,
}

impl<'a> DemoGuest<'a> {
    /// The built-in guest running `args` in `mmu` mode, no disk.
    pub fn new(args: &'a [&'a str], mmu: MmuMode) -> Self {
        DemoGuest { args, mmu, disk: None, notify: NotifyPolicy::EventIndex }
    }

    /// Runs it to its end, tracing.
    pub fn run(&self) -> Result<DemoRun, VmError> {
        let trace_path = std::env::temp_dir().join(format!("hv-demo-{}-{}.trace", std::process::id(), unique()));
        let config = VmConfig {
            trace: Some((trace_path.clone(), TraceFormat::Text)),
            disk: self.disk.as_ref().map(|(path, read_only)| DiskConfig { path: path.clone(), read_only: *read_only }),
            notify_policy: self.notify,
            timeout: Some(std::time::Duration::from_secs(120)),
            mmu: self.mmu,
            seccomp: true,
            ..VmConfig::builtin_guest(self.args)
        };
        let console = CapturedOutput::default();
        let result = crate::bench::run_vm(&config, Box::new(console.clone()));
        let trace = std::fs::read_to_string(&trace_path).unwrap_or_default();
        let _ = std::fs::remove_file(&trace_path);
        let report = result?;
        Ok(DemoRun { console: console.text(), trace: trace.lines().map(str::to_string).collect(), stats: report.stats, stop: report.stop })
    }
}

/// A number no other demo run in this process has had.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl DemoRun {
    /// The trace lines whose kind column is `kind` (`exit`, `hypercall`, `console`…).
    pub fn lines_of(&self, kind: &str) -> Vec<String> {
        self.trace.iter().filter(|l| l.split_whitespace().nth(1) == Some(kind)).cloned().collect()
    }

    /// The trace without its sequence numbers (they differ between runs of a demo only
    /// when the guest does; shown lines are easier to read without them).
    pub fn strip_seq(line: &str) -> String {
        line.split_once(' ').map_or(line, |(_, rest)| rest).trim_start().to_string()
    }
}

/// Runs `config` recorded or replayed as `setup` says, on a thread of its own (confined
/// like any vCPU thread when `config.seccomp`); returns the report and the console text.
pub fn run_session(config: &VmConfig, setup: crate::vmm::SessionSetup) -> Result<(crate::vmm::RunReport, String), VmError> {
    let console = CapturedOutput::default();
    let sink = console.clone();
    let run = move || crate::vmm::Vm::with_session(config, Box::new(sink), std::time::Instant::now(), Some(setup))?.run();
    let report = std::thread::scope(|s| match std::thread::Builder::new().name("hv-demo-vcpu".into()).spawn_scoped(s, run) {
        Ok(vcpu) => vcpu.join().unwrap_or(Err(VmError::GuestThreadPanicked)),
        Err(e) => Err(VmError::Sandbox(crate::sandbox::SandboxError::Install { kind: "vcpu", reason: format!("cannot start a thread for the VM: {e}") })),
    })?;
    Ok((report, console.text()))
}
