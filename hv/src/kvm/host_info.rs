//! What kind of host this is, for honest labels on measurements.
//!
//! The same KVM API sits on very different machinery. On an Intel or AMD host with
//! hardware virtualization, KVM translates guest-physical addresses with EPT or NPT
//! (two-dimensional paging in the MMU). Without them (an old CPU, a nested setup, or a
//! software hypervisor such as PVM) KVM keeps its own shadow page tables in the host
//! kernel. A benchmark must say which one it ran on.

use std::path::Path;

/// How the host virtualizes guest memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostMmu {
    /// Intel VT-x with EPT.
    HardwareEpt,
    /// AMD-V with NPT.
    HardwareNpt,
    /// KVM's own shadow page tables (hardware virtualization without EPT/NPT).
    KvmShadow,
    /// PVM: KVM run in software, guest in host ring 3, shadow paging in the host kernel.
    Pvm,
    /// No KVM module found.
    Unknown,
}

impl HostMmu {
    /// Reads /sys/module to find out.
    pub fn detect() -> Self {
        let module = |name: &str| Path::new("/sys/module").join(name).exists();
        let param_on = |path: &str| {
            std::fs::read_to_string(path).map(|v| matches!(v.trim(), "Y" | "y" | "1")).unwrap_or(false)
        };
        if module("kvm_intel") {
            if param_on("/sys/module/kvm_intel/parameters/ept") {
                HostMmu::HardwareEpt
            } else {
                HostMmu::KvmShadow
            }
        } else if module("kvm_amd") {
            if param_on("/sys/module/kvm_amd/parameters/npt") {
                HostMmu::HardwareNpt
            } else {
                HostMmu::KvmShadow
            }
        } else if module("kvm_pvm") {
            HostMmu::Pvm
        } else {
            HostMmu::Unknown
        }
    }

    /// A sentence for reports.
    pub fn describe(&self) -> &'static str {
        match self {
            HostMmu::HardwareEpt => "Intel VT-x with hardware EPT",
            HostMmu::HardwareNpt => "AMD-V with hardware NPT",
            HostMmu::KvmShadow => "hardware virtualization without EPT/NPT: KVM shadow paging",
            HostMmu::Pvm => "PVM (no VT-x): KVM in software, guest ring 0 emulated, KVM shadow paging in the host kernel",
            HostMmu::Unknown => "unknown (no kvm_intel, kvm_amd or kvm_pvm module found)",
        }
    }

    /// Whether KVM's "ept" translation here is real two-dimensional hardware paging.
    pub fn has_hardware_two_dimensional_paging(&self) -> bool {
        matches!(self, HostMmu::HardwareEpt | HostMmu::HardwareNpt)
    }
}

/// The CPU's model name from /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|m| m.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into())
}
