//! Everything one `hv bench` run found, in one value: what the table, the JSON file
//! and the plot are made from. Each figure's unit is in its name (`_ns`: nanoseconds;
//! `per_op`: events per operation); docs/bench.md shows an example.

use serde::Serialize;

use super::measure::Measured;
use super::native::NativeWalk;
use super::summary::Summary;
use crate::kvm::host_info::{cpu_model, HostMmu};

/// The format version of the JSON file; bumped when a field changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Format version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// The machine it ran on.
    pub host: HostDescription,
    /// A `--quick` run (smaller sizes, fewer repetitions).
    pub quick: bool,
    /// The memory modes asked for.
    pub modes: Vec<&'static str>,
    /// One entry per workload and mode.
    pub results: Vec<WorkloadResult>,
    /// Modes in which no VM could run at all.
    pub mode_failures: Vec<ModeFailure>,
    /// The physical limits, measured in the same run.
    pub baselines: Baselines,
    /// Ratios between figures above.
    pub comparisons: Vec<Comparison>,
    /// Wall time of the whole run, in seconds.
    pub wall_seconds: f64,
}

/// What the host is, for honest labels.
#[derive(Clone, Debug, Serialize)]
pub struct HostDescription {
    /// The CPU's model name.
    pub cpu: String,
    /// How KVM virtualizes memory here: `hardware-ept`, `hardware-npt`, `kvm-shadow`,
    /// `pvm` or `unknown`.
    pub mmu: &'static str,
    /// The same in words.
    pub mmu_description: &'static str,
    /// Whether `ept` mode uses hardware two-dimensional paging here.
    pub hardware_two_dimensional_paging: bool,
    /// What `--mmu ept` means on this host.
    pub ept_mode_means: &'static str,
}

impl HostDescription {
    /// Looks at this machine.
    pub fn detect() -> Self {
        let mmu = HostMmu::detect();
        let hardware = mmu.has_hardware_two_dimensional_paging();
        HostDescription {
            cpu: cpu_model(),
            mmu: match mmu {
                HostMmu::HardwareEpt => "hardware-ept",
                HostMmu::HardwareNpt => "hardware-npt",
                HostMmu::KvmShadow => "kvm-shadow",
                HostMmu::Pvm => "pvm",
                HostMmu::Unknown => "unknown",
            },
            mmu_description: mmu.describe(),
            hardware_two_dimensional_paging: hardware,
            ept_mode_means: if hardware {
                "hardware two-dimensional paging (EPT/NPT): the CPU walks the guest's tables, then KVM's"
            } else {
                "KVM's own MMU: this host has no hardware EPT/NPT, so KVM shadows the guest's page tables in the host kernel"
            },
        }
    }
}

/// One workload in one mode: its figures, or why there are none.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadResult {
    /// The workload and variant, e.g. `pt-update/direct`.
    pub workload: &'static str,
    /// The memory mode.
    pub mode: &'static str,
    /// What one operation is.
    pub operation: &'static str,
    /// The figures (absent on failure).
    pub measured: Option<Measured>,
    /// Why it failed (absent on success).
    pub error: Option<String>,
}

/// A memory mode in which hv could not run a VM.
#[derive(Clone, Debug, Serialize)]
pub struct ModeFailure {
    /// The mode.
    pub mode: &'static str,
    /// hv's error.
    pub error: String,
}

/// Limits measured outside the VMs under test.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Baselines {
    /// A bare KVM exit to user space and back, with a minimal guest, in nanoseconds.
    pub bare_exit_round_trip_ns: Option<Summary>,
    /// Why the bare-exit VM failed, if it did.
    pub bare_exit_error: Option<String>,
    /// The tlb-miss loop run natively in hv's process.
    pub native: Vec<NativeBaseline>,
    /// The host reading the disk image directly.
    pub host_disk: Vec<HostDiskBaseline>,
}

/// The native run for one tlb-miss variant.
#[derive(Clone, Debug, Serialize)]
pub struct NativeBaseline {
    /// The workload it matches.
    pub workload: &'static str,
    /// Working set in bytes.
    pub working_set_bytes: u64,
    /// The figures (absent on failure).
    pub measured: Option<NativeWalk>,
    /// Why it failed.
    pub error: Option<String>,
}

/// The host's `pread` of the same requests the guest makes.
#[derive(Clone, Debug, Serialize)]
pub struct HostDiskBaseline {
    /// The workload it matches.
    pub workload: &'static str,
    /// Bytes per request.
    pub request_bytes: u64,
    /// Nanoseconds per request.
    pub time_per_request_ns: Summary,
}

/// A ratio of two medians, with both figures, so that anyone can check it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    /// The workload.
    pub workload: &'static str,
    /// What is compared: `shadow/ept`, `guest/native`, `guest/host-pread` or
    /// `guest/bare-exit`.
    pub kind: &'static str,
    /// The guest's mode, for comparisons against a baseline (`None` for shadow/ept).
    pub mode: Option<&'static str>,
    /// The numerator's median, in nanoseconds per operation.
    pub numerator_ns: f64,
    /// The denominator's median, in nanoseconds per operation.
    pub denominator_ns: f64,
    /// numerator / denominator.
    pub ratio: f64,
}

impl Comparison {
    /// A comparison of two figures.
    pub fn new(workload: &'static str, kind: &'static str, mode: Option<&'static str>, numerator_ns: f64, denominator_ns: f64) -> Self {
        Comparison { workload, kind, mode, numerator_ns, denominator_ns, ratio: numerator_ns / denominator_ns }
    }
}

impl BenchReport {
    /// The measured figures of `workload` in `mode`, if it succeeded.
    pub fn measured(&self, workload: &str, mode: &str) -> Option<&Measured> {
        self.results.iter().find(|r| r.workload == workload && r.mode == mode)?.measured.as_ref()
    }

    /// The workloads in the results, each once, in order.
    pub fn workloads(&self) -> Vec<&'static str> {
        let mut seen = Vec::new();
        for r in &self.results {
            if !seen.contains(&r.workload) {
                seen.push(r.workload);
            }
        }
        seen
    }

    /// Whether everything asked for was measured and verified.
    pub fn complete(&self) -> bool {
        self.mode_failures.is_empty()
            && self.results.iter().all(|r| r.measured.is_some())
            && self.baselines.bare_exit_error.is_none()
            && self.baselines.native.iter().all(|n| n.measured.is_some())
    }

    /// Fills in [`BenchReport::comparisons`] from the figures.
    pub fn compute_comparisons(&mut self) {
        let mut out = Vec::new();
        let median = |m: &Measured| m.time_per_op_ns.median;
        for w in &self.workloads() {
            if let (Some(s), Some(e)) = (self.measured(w, "shadow"), self.measured(w, "ept")) {
                out.push(Comparison::new(w, "shadow/ept", None, median(s), median(e)));
            }
        }
        for r in &self.results {
            let Some(m) = &r.measured else { continue };
            if let Some(native) = self.baselines.native.iter().find(|n| n.workload == r.workload).and_then(|n| n.measured.as_ref()) {
                out.push(Comparison::new(r.workload, "guest/native", Some(r.mode), median(m), native.time_per_step_ns.median));
            }
            if let Some(host) = self.baselines.host_disk.iter().find(|h| h.workload == r.workload) {
                out.push(Comparison::new(r.workload, "guest/host-pread", Some(r.mode), median(m), host.time_per_request_ns.median));
            }
            if let (true, Some(bare)) = (r.workload == "hypercall", &self.baselines.bare_exit_round_trip_ns) {
                out.push(Comparison::new(r.workload, "guest/bare-exit", Some(r.mode), median(m), bare.median));
            }
        }
        self.comparisons = out;
    }
}
