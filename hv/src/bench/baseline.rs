//! The floor under every exit: a bare KVM exit to user space and back.
//!
//! A separate, tiny VM: 2 MiB of RAM identity-mapped by one large page, one vCPU in
//! **64-bit ring 0**, as hv's guest kernel is when it makes a hypercall, running **the
//! same instructions per round trip as the guest's `hypercall` workload**
//! (`pv-guest/src/commands/bench/mod.rs`, as the compiler lays it out: the argument
//! registers cleared, the `out`, the result decoded by a small function, the count
//! kept), only to a port no device claims:
//!
//! ```text
//! 10000: mov dx, 0x510          10019: xor ecx, ecx        10029: test rdi, rdi
//!        xor edi, edi                  or rdx, rax                js 10034
//!        xor esi, esi                  sete cl                    xor eax, eax
//!        xor r8d, r8d                  add rbp, rcx               mov rdx, rdi
//!        xor r9d, r9d                  dec r14                    ret
//!        xor eax, eax                  jmp 10000           10034: ret
//! 10010: out dx, eax      ; no device claims the port: KVM_EXIT_IO
//!        mov rdi, rax
//!        call 10029       ; the decode, as `HypercallError::decode`
//! ```
//!
//! Each `KVM_RUN` runs the guest to its `out`, returns to this process with
//! `KVM_EXIT_IO`, and the next `KVM_RUN` resumes after it, without reading or writing a
//! register. So the round trip is the guest's own loop and KVM's world switch, with
//! nothing of hv's exit loop, register access or hypercall dispatch: "hypercall / bare
//! exit" is what hv itself adds.
//!
//! The guest code matters on a host where guest ring 0 is emulated (this project's PVM
//! development host), where every guest instruction costs hundreds of nanoseconds: an
//! `out; jmp` loop there, or a real-mode one (the first version of this baseline), is
//! not the same work as the guest's hypercall loop, and the ratio then measured the
//! guest's loop, not hv.

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
const CODE: [u8; 53] = [
    0x66, 0xba, 0x10, 0x05, 0x31, 0xff, 0x31, 0xf6, 0x45, 0x31, 0xc0, 0x45, 0x31, 0xc9, 0x31, 0xc0, 0xef, 0x48, 0x89, 0xc7, 0xe8, 0x10, 0x00,
    0x00, 0x00, 0x31, 0xc9, 0x48, 0x09, 0xc2, 0x0f, 0x94, 0xc1, 0x48, 0x01, 0xcd, 0x49, 0xff, 0xce, 0xeb, 0xd7, 0x48, 0x85, 0xff, 0x78, 0x06,
    0x31, 0xc0, 0x48, 0x89, 0xfa, 0xc3, 0xc3,
];
/// The top of its stack (the `call` needs one): below the code, above the page tables.
const STACK_TOP: u64 = 0x8000;
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
    regs.rsp = STACK_TOP;
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
