//! The floor under every exit: a bare KVM exit to user space and back.
//!
//! A separate, tiny VM: 2 MiB of RAM identity-mapped by one large page, one vCPU in
//! **64-bit ring 0**, as hv's guest kernel is when it makes a hypercall, and three
//! instructions at 0x10000:
//!
//! ```text
//! 10000: 66 ba 10 05    mov dx, 0x510
//! 10004: ef             out dx, eax       ; no device claims the port: KVM_EXIT_IO
//! 10005: eb fd          jmp 10004
//! ```
//!
//! Each `KVM_RUN` runs the guest to its `out`, returns to this process with
//! `KVM_EXIT_IO`, and the next `KVM_RUN` resumes after it. Timing many such round
//! trips gives the least a hypercall (the same 4-byte `out`, from the same CPU mode)
//! can cost on this host, without hv's exit loop, register reads or hypercall dispatch.
//! The gap between this and the `hypercall` workload is hv's own share.
//!
//! The guest runs in long mode, not real mode, because the two are not the same price
//! everywhere: where guest ring 0 is emulated (this project's PVM development host), a
//! real-mode loop takes another path through KVM, and "hypercall / bare exit" would then
//! measure that difference instead of hv's dispatch.

use std::time::Instant;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit};

use super::summary::Summary;
use crate::boot::cpu_state;
use crate::memory::GuestRam;
use pv_abi::addr::{MachineAddr, PseudoPhys};
use pv_abi::layout::LARGE_PAGE_SIZE;

/// RAM of the minimal VM: one large page.
const RAM_BYTES: u64 = LARGE_PAGE_SIZE;
/// Its page tables: PML4, PDPT and PD, one page each (the boot GDT is at 0x1000).
const PML4_ADDRESS: u64 = 0x2000;
const PDPT_ADDRESS: u64 = 0x3000;
const PD_ADDRESS: u64 = 0x4000;
/// Page-table entry bits: present, writable, and (in the PD) a 2 MiB page.
const PRESENT_WRITABLE: u64 = 0b11;
const LARGE: u64 = 1 << 7;
/// Where its code starts.
const CODE_ADDRESS: u64 = 0x10000;
/// The port it writes.
const PORT: u16 = 0x510;
/// The code (see the module comment).
const CODE: [u8; 7] = [0x66, 0xba, 0x10, 0x05, 0xef, 0xeb, 0xfd];
/// Round trips before timing starts (the first ones fault pages in).
const WARM_UP: u64 = 1000;

/// Why the baseline could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// A KVM call failed.
    #[error("bare-exit VM: {what} failed: {source}")]
    Kvm {
        /// Which call.
        what: &'static str,
        /// KVM's error.
        source: kvm_ioctls::Error,
    },
    /// The VM's memory could not be allocated.
    #[error("bare-exit VM: {0}")]
    Memory(String),
    /// The minimal guest did something other than its `out`.
    #[error("bare-exit VM: expected an exit for port {PORT:#x}, got {0}")]
    UnexpectedExit(String),
}

fn kvm<T>(what: &'static str, r: Result<T, kvm_ioctls::Error>) -> Result<T, BaselineError> {
    r.map_err(|source| BaselineError::Kvm { what, source })
}

/// Measures `reps` × `round_trips` bare exits; returns nanoseconds per round trip.
pub fn bare_exit_round_trip(round_trips: u64, reps: u64) -> Result<Summary, BaselineError> {
    // Locals drop in reverse order: `ram`, declared first, outlives the VM and vCPU fds.
    let ram = GuestRam::new(RAM_BYTES).map_err(|e| BaselineError::Memory(e.to_string()))?;
    let memory = |e: crate::memory::OutsideRam| BaselineError::Memory(e.to_string());
    ram.write(PseudoPhys::new(CODE_ADDRESS), &CODE).map_err(memory)?;
    // Identity map of the one large page: PML4[0] → PDPT[0] → PD[0] = 2 MiB at 0.
    ram.write_u64(PseudoPhys::new(PML4_ADDRESS), PDPT_ADDRESS | PRESENT_WRITABLE).map_err(memory)?;
    ram.write_u64(PseudoPhys::new(PDPT_ADDRESS), PD_ADDRESS | PRESENT_WRITABLE).map_err(memory)?;
    ram.write_u64(PseudoPhys::new(PD_ADDRESS), LARGE | PRESENT_WRITABLE).map_err(memory)?;
    cpu_state::write_boot_gdt(&ram).map_err(memory)?;
    let kvm_fd = kvm("opening /dev/kvm", Kvm::new())?;
    let vm = kvm("KVM_CREATE_VM", kvm_fd.create_vm())?;
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: ram.size(),
        userspace_addr: ram.host_base(),
    };
    // SAFETY: the region is exactly `ram`'s host mapping, which lives until the end of
    // this function, after `vm` and `vcpu` (declared later, so dropped first) are closed.
    kvm("KVM_SET_USER_MEMORY_REGION", unsafe { vm.set_user_memory_region(region) })?;
    let mut vcpu = kvm("KVM_CREATE_VCPU", vm.create_vcpu(0))?;
    // 64-bit mode, ring 0, on the identity map (the same settings hv boots its guest with).
    let sregs = kvm("KVM_GET_SREGS", vcpu.get_sregs())?;
    let sregs = cpu_state::long_mode_sregs(sregs, MachineAddr::new(PML4_ADDRESS), false);
    kvm("KVM_SET_SREGS", vcpu.set_sregs(&sregs))?;
    // Like hv's guest, it runs with the CPUID KVM supports (some hosts refuse long mode
    // to a vCPU that has none).
    let cpuid = kvm("KVM_GET_SUPPORTED_CPUID", kvm_fd.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES))?;
    kvm("KVM_SET_CPUID2", vcpu.set_cpuid2(&cpuid))?;
    let mut regs = kvm("KVM_GET_REGS", vcpu.get_regs())?;
    regs.rip = CODE_ADDRESS;
    regs.rflags = 2;
    kvm("KVM_SET_REGS", vcpu.set_regs(&regs))?;

    let mut one_round_trip = || match vcpu.run() {
        Ok(VcpuExit::IoOut(PORT, _)) => Ok(()),
        Ok(other) => Err(BaselineError::UnexpectedExit(format!("{other:?}"))),
        Err(source) => Err(BaselineError::Kvm { what: "KVM_RUN", source }),
    };
    for _ in 0..WARM_UP {
        one_round_trip()?;
    }
    let mut times = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        for _ in 0..round_trips {
            one_round_trip()?;
        }
        times.push(start.elapsed().as_nanos() as f64 / round_trips.max(1) as f64);
    }
    Summary::of(&times).ok_or_else(|| BaselineError::UnexpectedExit("no repetitions".into()))
}
