//! The CPUID the guest sees: what KVM supports, plus hv's own hypervisor leaves.
//!
//! A KVM guest's CPUID is empty until the VMM sets it (and then, for example, 1 GiB
//! pages fault: see kvm-platform.md). hv starts from KVM_GET_SUPPORTED_CPUID, which
//! describes what the host CPU and KVM can offer, sets the "hypervisor present" bit, and
//! replaces KVM's own hypervisor leaves with hv's (pv_abi::cpuid), so the guest sees
//! exactly one hypervisor.

use kvm_bindings::{kvm_cpuid_entry2, CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::Kvm;
use pv_abi::cpuid::{signature_registers, HV_ABI_VERSION, LEAF1_ECX_HYPERVISOR, LEAF_FEATURES, LEAF_SIGNATURE};
use pv_abi::hypercall::HYPERCALL_PORT;

/// The range of leaves reserved for hypervisors.
const HYPERVISOR_LEAVES: std::ops::Range<u32> = 0x4000_0000..0x5000_0000;
/// Extended leaf with the NX feature bit.
const LEAF_EXTENDED_FEATURES: u32 = 0x8000_0001;
/// NX ("execute disable") in leaf 0x8000_0001 EDX.
const EDX_NX: u32 = 1 << 20;

/// Why the guest CPUID could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CpuidError {
    /// KVM_GET_SUPPORTED_CPUID failed.
    #[error("KVM_GET_SUPPORTED_CPUID failed: {0}")]
    Supported(kvm_ioctls::Error),
    /// Too many entries for the ioctl structure.
    #[error("the CPUID table has too many entries for KVM")]
    TooManyEntries,
}

/// Builds the guest's CPUID table.
pub fn guest_cpuid(kvm: &Kvm) -> Result<CpuId, CpuidError> {
    let supported = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(CpuidError::Supported)?;
    let mut entries: Vec<kvm_cpuid_entry2> = supported
        .as_slice()
        .iter()
        .filter(|e| !HYPERVISOR_LEAVES.contains(&e.function))
        .copied()
        .collect();
    for e in entries.iter_mut().filter(|e| e.function == 1) {
        e.ecx |= LEAF1_ECX_HYPERVISOR;
    }
    let (ebx, ecx, edx) = signature_registers();
    entries.push(kvm_cpuid_entry2 { function: LEAF_SIGNATURE, eax: LEAF_FEATURES, ebx, ecx, edx, ..Default::default() });
    entries.push(kvm_cpuid_entry2 {
        function: LEAF_FEATURES,
        eax: HV_ABI_VERSION,
        ebx: u32::from(HYPERCALL_PORT),
        ..Default::default()
    });
    CpuId::from_entries(&entries).map_err(|_| CpuidError::TooManyEntries)
}

/// Whether the CPUID table offers no-execute pages.
pub fn nx_supported(cpuid: &CpuId) -> bool {
    cpuid.as_slice().iter().any(|e| e.function == LEAF_EXTENDED_FEATURES && e.edx & EDX_NX != 0)
}
