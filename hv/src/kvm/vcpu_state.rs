//! The vCPU's whole state as KVM holds it: what a snapshot or a migration must carry
//! so that the guest cannot tell it was stopped, and the order KVM needs it back in.
//!
//! A guest's "CPU" is not just its registers. KVM keeps, per vCPU: the general
//! registers, the segment and control registers (`sregs`), the FPU/SSE/AVX state
//! (`xsave`) and the extended control registers (`xcrs`), the debug registers, the
//! in-kernel local APIC (with any interrupt waiting in it), the model-specific
//! registers (among them the TSC, so the guest's clock goes on from where it was), the
//! pending-event state (an exception or interrupt half-delivered, the interrupt shadow
//! after `sti`) and the multiprocessing state (running or halted). [`VcpuState::capture`]
//! reads them all; [`VcpuState::restore`] writes them back into a fresh vCPU in the
//! order KVM requires (the one Firecracker and QEMU use): MP state, registers, special
//! registers, xsave and xcrs, debug registers, local APIC, MSRs, and vCPU events last,
//! because setting the others may clear a pending event.
//!
//! Every field is kept as KVM's own struct (kvm-bindings serializes them byte for byte);
//! a snapshot file is untrusted, but KVM checks every value it is given and refuses the
//! invalid ones, and hv replaces the one value that depends on the memory mode, CR3.

use kvm_bindings::{
    kvm_debugregs, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave,
    Msrs,
};
use kvm_ioctls::{Kvm, VcpuFd};
use pv_abi::addr::MachineAddr;
use serde::{Deserialize, Serialize};

/// At most this many MSRs are saved or restored (KVM lists fewer than 100 on x86).
pub const MAX_MSRS: usize = 512;

/// One vCPU's state, as KVM gives it.
#[derive(Serialize, Deserialize)]
pub struct VcpuState {
    /// Running, halted, waiting for INIT/SIPI…
    pub mp_state: kvm_mp_state,
    /// General registers (with `rip` and `rflags`).
    pub regs: kvm_regs,
    /// Segment, descriptor-table and control registers, EFER, the APIC base. Its `cr3`
    /// is the *machine* address the CPU walked, which depends on the memory mode: a
    /// restore replaces it.
    pub sregs: kvm_sregs,
    /// FPU, SSE and AVX state.
    pub xsave: kvm_xsave,
    /// Extended control registers (XCR0: which xsave components are on).
    pub xcrs: kvm_xcrs,
    /// Debug registers.
    pub debugregs: kvm_debugregs,
    /// The in-kernel local APIC's registers, including interrupts requested or in service.
    pub lapic: kvm_lapic_state,
    /// Model-specific registers, index and value.
    pub msrs: Vec<(u32, u64)>,
    /// Pending exception, interrupt, NMI, interrupt shadow.
    pub events: kvm_vcpu_events,
    /// The guest TSC's frequency in kHz (0 if KVM could not tell).
    pub tsc_khz: u32,
}

/// A KVM call failed while reading or writing vCPU state.
#[derive(Debug, thiserror::Error)]
#[error("{what} failed: {source}")]
pub struct VcpuStateError {
    /// Which ioctl.
    pub what: &'static str,
    /// What KVM said.
    pub source: kvm_ioctls::Error,
}

fn ioctl<T>(what: &'static str, r: Result<T, kvm_ioctls::Error>) -> Result<T, VcpuStateError> {
    r.map_err(|source| VcpuStateError { what, source })
}

impl std::fmt::Debug for VcpuState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VcpuState").field("rip", &self.regs.rip).field("cr3", &self.sregs.cr3).field("msrs", &self.msrs.len()).finish()
    }
}

impl VcpuState {
    /// Reads every piece of `vcpu`'s state. `regs` are the general registers as hv last
    /// left them (with a hypercall's result already in `rax`; see `KvmVm::current_regs`).
    pub fn capture(kvm: &Kvm, vcpu: &VcpuFd, regs: kvm_regs) -> Result<Self, VcpuStateError> {
        Ok(VcpuState {
            mp_state: ioctl("KVM_GET_MP_STATE", vcpu.get_mp_state())?,
            regs,
            sregs: ioctl("KVM_GET_SREGS", vcpu.get_sregs())?,
            xsave: ioctl("KVM_GET_XSAVE", vcpu.get_xsave())?,
            xcrs: ioctl("KVM_GET_XCRS", vcpu.get_xcrs())?,
            debugregs: ioctl("KVM_GET_DEBUGREGS", vcpu.get_debug_regs())?,
            lapic: ioctl("KVM_GET_LAPIC", vcpu.get_lapic())?,
            msrs: read_msrs(kvm, vcpu)?,
            events: ioctl("KVM_GET_VCPU_EVENTS", vcpu.get_vcpu_events())?,
            tsc_khz: vcpu.get_tsc_khz().unwrap_or(0),
        })
    }

    /// Writes this state into `vcpu` (a fresh one, with hv's CPUID already set), with
    /// CR3 set to `cr3` (the root the CPU must walk in the memory mode restored into).
    /// Returns the MSRs KVM refused (kept at their reset values), for the caller to report.
    pub fn restore(&self, vcpu: &VcpuFd, cr3: MachineAddr) -> Result<Vec<u32>, VcpuStateError> {
        if self.tsc_khz != 0 && vcpu.get_tsc_khz().ok() != Some(self.tsc_khz) {
            // Keep the guest's clock rate across hosts, where KVM can scale the TSC; a
            // KVM that cannot leaves the host's rate (the guest then measures time wrongly).
            let _ = vcpu.set_tsc_khz(self.tsc_khz);
        }
        ioctl("KVM_SET_MP_STATE", vcpu.set_mp_state(self.mp_state))?;
        ioctl("KVM_SET_REGS", vcpu.set_regs(&self.regs))?;
        let sregs = kvm_sregs { cr3: cr3.raw(), ..self.sregs };
        ioctl("KVM_SET_SREGS", vcpu.set_sregs(&sregs))?;
        ioctl("KVM_SET_XSAVE", set_xsave(vcpu, &self.xsave))?;
        ioctl("KVM_SET_XCRS", vcpu.set_xcrs(&self.xcrs))?;
        ioctl("KVM_SET_DEBUGREGS", vcpu.set_debug_regs(&self.debugregs))?;
        ioctl("KVM_SET_LAPIC", vcpu.set_lapic(&self.lapic))?;
        let refused = write_msrs(vcpu, &self.msrs)?;
        ioctl("KVM_SET_VCPU_EVENTS", vcpu.set_vcpu_events(&self.events))?;
        Ok(refused)
    }
}

fn set_xsave(vcpu: &VcpuFd, xsave: &kvm_xsave) -> Result<(), kvm_ioctls::Error> {
    // SAFETY: `xsave` is a whole kvm_xsave (4 KiB, the legacy size KVM_SET_XSAVE reads):
    // KVM copies exactly that much from it, and checks its contents (XSTATE_BV against
    // what this vCPU supports) itself.
    unsafe { vcpu.set_xsave(xsave) }
}

/// Reads every MSR KVM lists as saveable. KVM stops a batch at the first MSR it cannot
/// read (it returns how many it read), so a failing one is skipped and the rest read on.
fn read_msrs(kvm: &Kvm, vcpu: &VcpuFd) -> Result<Vec<(u32, u64)>, VcpuStateError> {
    let list = ioctl("KVM_GET_MSR_INDEX_LIST", kvm.get_msr_index_list())?;
    let mut indices: Vec<u32> = list.as_slice().iter().copied().take(MAX_MSRS).collect();
    let mut out = Vec::with_capacity(indices.len());
    while !indices.is_empty() {
        let entries: Vec<kvm_msr_entry> = indices.iter().map(|&index| kvm_msr_entry { index, ..Default::default() }).collect();
        let mut msrs = Msrs::from_entries(&entries).map_err(|_| VcpuStateError { what: "building an MSR list", source: kvm_ioctls::Error::new(libc::E2BIG) })?;
        let read = ioctl("KVM_GET_MSRS", vcpu.get_msrs(&mut msrs))?;
        out.extend(msrs.as_slice()[..read].iter().map(|e| (e.index, e.data)));
        // Skip the one that failed (if any) and go on after it; each pass shortens the list.
        indices.drain(..(read + 1).min(indices.len()));
    }
    Ok(out)
}

/// Writes `msrs`, skipping (and returning) the ones KVM refuses.
fn write_msrs(vcpu: &VcpuFd, msrs: &[(u32, u64)]) -> Result<Vec<u32>, VcpuStateError> {
    let mut rest: &[(u32, u64)] = &msrs[..msrs.len().min(MAX_MSRS)];
    let mut refused = Vec::new();
    while !rest.is_empty() {
        let entries: Vec<kvm_msr_entry> = rest.iter().map(|&(index, data)| kvm_msr_entry { index, data, ..Default::default() }).collect();
        let list = Msrs::from_entries(&entries).map_err(|_| VcpuStateError { what: "building an MSR list", source: kvm_ioctls::Error::new(libc::E2BIG) })?;
        let written = ioctl("KVM_SET_MSRS", vcpu.set_msrs(&list))?;
        if let Some(&(index, _)) = rest.get(written) {
            refused.push(index);
        }
        rest = &rest[(written + 1).min(rest.len())..];
    }
    Ok(refused)
}
