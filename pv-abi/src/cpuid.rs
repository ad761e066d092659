//! How a guest recognises hv: the hypervisor CPUID leaves.
//!
//! Real CPUs leave CPUID leaves `0x4000_0000..=0x4fff_ffff` unused so that hypervisors
//! can describe themselves there (KVM answers "KVMKVMKVM", Xen "XenVMMXenVMM"), and set
//! bit 31 of ECX in leaf 1 ("hypervisor present"). hv replaces whatever KVM put there
//! with its own leaves, so the guest sees exactly one hypervisor: hv.

/// Leaf 0x4000_0000: EAX = highest hv leaf, EBX/ECX/EDX = [`HV_SIGNATURE`].
pub const LEAF_SIGNATURE: u32 = 0x4000_0000;
/// Leaf 0x4000_0001: EAX = [`HV_ABI_VERSION`], EBX = the hypercall port.
pub const LEAF_FEATURES: u32 = 0x4000_0001;
/// The 12-byte signature, in EBX, ECX, EDX order.
pub const HV_SIGNATURE: [u8; 12] = *b"hvHypervisor";
/// Version of this ABI; bumped when any number or layout in this crate changes.
pub const HV_ABI_VERSION: u32 = 6;
/// Bit in leaf 1 ECX that tells software it runs under a hypervisor.
pub const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;

/// Splits [`HV_SIGNATURE`] into the (EBX, ECX, EDX) register values.
pub const fn signature_registers() -> (u32, u32, u32) {
    let s = HV_SIGNATURE;
    (
        u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        u32::from_le_bytes([s[4], s[5], s[6], s[7]]),
        u32::from_le_bytes([s[8], s[9], s[10], s[11]]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trips_through_registers() {
        let (b, c, d) = signature_registers();
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&b.to_le_bytes());
        bytes[4..8].copy_from_slice(&c.to_le_bytes());
        bytes[8..].copy_from_slice(&d.to_le_bytes());
        assert_eq!(&bytes, b"hvHypervisor");
    }
}
