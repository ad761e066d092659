//! The virtual machine as KVM sees it: a VM, its RAM, and one vCPU.
//!
//! KVM's API is a tree of file descriptors, and kvm-ioctls mirrors it: `/dev/kvm`
//! ([`Kvm`]) creates a VM ([`VmFd`]), which owns memory slots and creates vCPUs
//! ([`VcpuFd`]). A memory slot tells KVM "guest-physical range X is backed by this
//! host memory"; after that the guest's loads and stores to X go straight to that host
//! memory, with no exit. Only what is *not* backed by a slot (or what the slot marks
//! read-only) comes back to the VMM as an MMIO exit.

use kvm_bindings::{kvm_regs, kvm_sregs, kvm_userspace_memory_region};
use kvm_ioctls::{Cap, Kvm, SyncReg, VcpuFd, VmFd};

use crate::boot::{cpu_state, BootPlan};
use crate::cpuid::{self, CpuidError};
use crate::guest_ram::{GuestRam, RamAllocError};

/// KVM API version every KVM since Linux 2.6.22 reports.
const KVM_API_VERSION: i32 = 12;
/// Address for KVM_SET_TSS_ADDR: three pages Intel's VMX needs for real-mode emulation,
/// placed just below 4 GiB where no guest RAM of ours can be (the same spot QEMU and
/// Firecracker use). hv never runs real mode, but KVM expects it set.
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;

/// Why the machine could not be created.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// /dev/kvm could not be opened.
    #[error("cannot open /dev/kvm: {0}. hv needs Linux with KVM enabled and read-write access to /dev/kvm")]
    OpenKvm(kvm_ioctls::Error),
    /// An unexpected KVM API version.
    #[error("/dev/kvm reports API version {0}; hv needs {KVM_API_VERSION}")]
    ApiVersion(i32),
    /// A KVM ioctl failed.
    #[error("{what} failed: {source}")]
    Ioctl {
        /// Which ioctl.
        what: &'static str,
        /// The error KVM returned.
        source: kvm_ioctls::Error,
    },
    /// Guest RAM could not be allocated.
    #[error(transparent)]
    Ram(#[from] RamAllocError),
    /// The CPUID table could not be built.
    #[error(transparent)]
    Cpuid(#[from] CpuidError),
}

fn ioctl<T>(what: &'static str, r: Result<T, kvm_ioctls::Error>) -> Result<T, MachineError> {
    r.map_err(|source| MachineError::Ioctl { what, source })
}

/// A KVM VM with one vCPU and its RAM.
///
/// Field order is drop order: the vCPU and VM are closed before the RAM they point at
/// is unmapped.
pub struct Machine {
    vcpu: VcpuFd,
    vm: VmFd,
    kvm: Kvm,
    ram: GuestRam,
    nx: bool,
    sync_regs: bool,
}

impl Machine {
    /// Opens KVM, creates the VM with `ram_bytes` of RAM in slot 0, and one vCPU with
    /// hv's CPUID.
    pub fn new(ram_bytes: u64) -> Result<Self, MachineError> {
        let kvm = Kvm::new().map_err(MachineError::OpenKvm)?;
        let version = kvm.get_api_version();
        if version != KVM_API_VERSION {
            return Err(MachineError::ApiVersion(version));
        }
        let vm = ioctl("KVM_CREATE_VM", kvm.create_vm())?;
        ioctl("KVM_SET_TSS_ADDR", vm.set_tss_address(KVM_TSS_ADDRESS))?;
        let ram = GuestRam::new(ram_bytes)?;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: ram.size(),
            userspace_addr: ram.host_base(),
        };
        // SAFETY: the region is exactly GuestRam's host mapping, which Machine owns and
        // drops only after the VM fd is closed (field order), so KVM never sees the
        // mapping go away while the VM can still use it.
        ioctl("KVM_SET_USER_MEMORY_REGION", unsafe { vm.set_user_memory_region(region) })?;
        // The in-kernel interrupt controllers (local APIC, IOAPIC, PIC) must exist before
        // the vCPU: devices raise interrupts through them (irqfd → MSI → local APIC)
        // without hv's vCPU loop taking part. They must also be created before any vCPU.
        ioctl("KVM_CREATE_IRQCHIP", vm.create_irq_chip())?;
        let vcpu = ioctl("KVM_CREATE_VCPU", vm.create_vcpu(0))?;
        let cpuid = cpuid::guest_cpuid(&kvm)?;
        ioctl("KVM_SET_CPUID2", vcpu.set_cpuid2(&cpuid))?;
        let nx = cpuid::nx_supported(&cpuid);
        let mut vcpu = vcpu;
        let sync_regs = kvm.check_extension(Cap::SyncRegs);
        if sync_regs {
            // Ask KVM to copy the general registers into the shared kvm_run page at every
            // exit, so reading them costs no extra ioctl (see `guest_regs`).
            vcpu.set_sync_valid_reg(SyncReg::Register);
        }
        Ok(Machine { vcpu, vm, kvm, ram, nx, sync_regs })
    }

    /// Guest RAM.
    pub fn ram(&self) -> &GuestRam {
        &self.ram
    }

    /// Whether the guest may use no-execute pages.
    pub fn nx_supported(&self) -> bool {
        self.nx
    }

    /// The guest TSC frequency in kHz, if KVM can tell.
    pub fn tsc_khz(&self) -> Option<u32> {
        self.vcpu.get_tsc_khz().ok().filter(|khz| *khz > 0)
    }

    /// The VM file descriptor (for devices added by later work).
    pub fn vm(&self) -> &VmFd {
        &self.vm
    }

    /// The KVM system file descriptor.
    pub fn kvm(&self) -> &Kvm {
        &self.kvm
    }

    /// The vCPU, for the exit loop.
    pub fn vcpu_mut(&mut self) -> &mut VcpuFd {
        &mut self.vcpu
    }

    /// The general registers at the last exit. Where KVM supports KVM_CAP_SYNC_REGS they
    /// are already in the shared kvm_run page; otherwise one KVM_GET_REGS fetches them.
    /// A hypercall reads them at every exit, so the saved ioctl is on the hot path.
    pub fn guest_regs(&mut self) -> Result<kvm_regs, kvm_ioctls::Error> {
        if self.sync_regs {
            Ok(self.vcpu.sync_regs().regs)
        } else {
            self.vcpu.get_regs()
        }
    }

    /// Sets `rax` for when the guest resumes (a hypercall's result), through the sync
    /// area (applied by KVM at the next KVM_RUN) or with KVM_SET_REGS.
    pub fn set_guest_rax(&mut self, rax: u64) -> Result<(), kvm_ioctls::Error> {
        if self.sync_regs {
            self.vcpu.sync_regs_mut().regs.rax = rax;
            self.vcpu.set_sync_dirty_reg(SyncReg::Register);
            Ok(())
        } else {
            let mut regs = self.vcpu.get_regs()?;
            regs.rax = rax;
            self.vcpu.set_regs(&regs)
        }
    }

    /// Puts the vCPU in long mode at the plan's entry point.
    pub fn set_boot_state(&mut self, plan: &BootPlan) -> Result<(), MachineError> {
        let sregs = ioctl("KVM_GET_SREGS", self.vcpu.get_sregs())?;
        let sregs = cpu_state::long_mode_sregs(sregs, plan.page_table_root, self.nx);
        ioctl("KVM_SET_SREGS", self.vcpu.set_sregs(&sregs))?;
        let regs = cpu_state::entry_regs(plan.entry, plan.boot_info_gpa);
        ioctl("KVM_SET_REGS", self.vcpu.set_regs(&regs))
    }

    /// Reads the registers for a dump; `None` if KVM refuses.
    pub fn register_dump(&self) -> Option<RegisterDump> {
        let regs = self.vcpu.get_regs().ok()?;
        let sregs = self.vcpu.get_sregs().ok()?;
        Some(RegisterDump::new(&regs, &sregs))
    }
}

/// The registers that explain where a guest died.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterDump {
    /// General registers: rip, rsp, rflags, rax, rbx, rcx, rdx, rsi, rdi, rbp.
    pub general: [(&'static str, u64); 10],
    /// Control registers and EFER: cr0, cr2, cr3, cr4, efer.
    pub control: [(&'static str, u64); 5],
    /// Code and stack selectors.
    pub cs: u16,
    /// Stack selector.
    pub ss: u16,
    /// IDT base and limit.
    pub idt: (u64, u16),
}

impl RegisterDump {
    fn new(r: &kvm_regs, s: &kvm_sregs) -> Self {
        RegisterDump {
            general: [
                ("rip", r.rip),
                ("rsp", r.rsp),
                ("rflags", r.rflags),
                ("rax", r.rax),
                ("rbx", r.rbx),
                ("rcx", r.rcx),
                ("rdx", r.rdx),
                ("rsi", r.rsi),
                ("rdi", r.rdi),
                ("rbp", r.rbp),
            ],
            control: [("cr0", s.cr0), ("cr2", s.cr2), ("cr3", s.cr3), ("cr4", s.cr4), ("efer", s.efer)],
            cs: s.cs.selector,
            ss: s.ss.selector,
            idt: (s.idt.base, s.idt.limit),
        }
    }

    /// The value of the instruction pointer.
    pub fn rip(&self) -> u64 {
        self.general[0].1
    }
}

impl std::fmt::Display for RegisterDump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for row in self.general.chunks(4) {
            write!(f, " ")?;
            for (name, v) in row {
                write!(f, " {name:>6}={v:#018x}")?;
            }
            writeln!(f)?;
        }
        write!(f, " ")?;
        for (name, v) in &self.control {
            write!(f, " {name:>6}={v:#018x}")?;
        }
        writeln!(f)?;
        write!(f, "      cs={:#06x}     ss={:#06x}    idt={:#x}/{:#x}", self.cs, self.ss, self.idt.0, self.idt.1)
    }
}
