//! The floor under every exit: a bare KVM exit to user space and back.
//!
//! A separate, tiny VM: 64 KiB of RAM, one vCPU left in real mode (where every vCPU
//! starts), and three instructions at 0x1000:
//!
//! ```text
//! 1000: ba 10 05    mov dx, 0x510
//! 1003: ee          out dx, al        ; no device claims the port: KVM_EXIT_IO
//! 1004: eb fd       jmp 1003
//! ```
//!
//! Each `KVM_RUN` runs the guest to its `out`, returns to this process with
//! `KVM_EXIT_IO`, and the next `KVM_RUN` resumes after it. Timing many such round
//! trips gives the least a hypercall (also a port write) can cost on this host,
//! without hv's exit loop, register reads or hypercall dispatch. The gap between this
//! and the `hypercall` workload is hv's own share.

use std::time::Instant;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit};

use super::summary::Summary;
use crate::memory::GuestRam;
use pv_abi::addr::PseudoPhys;

/// RAM of the minimal VM.
const RAM_BYTES: u64 = 64 * 1024;
/// Where its code starts.
const CODE_ADDRESS: u64 = 0x1000;
/// The port it writes.
const PORT: u16 = 0x510;
/// The code (see the module comment).
const CODE: [u8; 6] = [0xba, 0x10, 0x05, 0xee, 0xeb, 0xfd];
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
    ram.write(PseudoPhys::new(CODE_ADDRESS), &CODE).map_err(|e| BaselineError::Memory(e.to_string()))?;
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
    // Real mode, as after reset, but with the code segment at 0 and rip at the code.
    let mut sregs = kvm("KVM_GET_SREGS", vcpu.get_sregs())?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    kvm("KVM_SET_SREGS", vcpu.set_sregs(&sregs))?;
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
