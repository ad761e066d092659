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

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::boot::{cpu_state, BootPlan};
use crate::shadow::layout::Backing;
use crate::shadow::ShadowPaging;
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
    /// Shadow mode needs read-only memslots.
    #[error("this KVM has no read-only memory slots (KVM_CAP_READONLY_MEM), which --mmu shadow needs to trap page-table writes; use --mmu ept")]
    NoReadonlyMemslots,
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
    /// Shadow mode's shadow area (a second reference to its mapping, held so it outlives
    /// the memslot that points at it).
    _shadow_area: Option<GuestMemoryMmap>,
    /// The memslot holding the page tables the CPU walks (guest RAM under ept, the
    /// shadow area under shadow), to re-register it (`forget_cached_translations`).
    page_table_slot: Option<kvm_userspace_memory_region>,
    nx: bool,
    sync_regs: bool,
}

impl Machine {
    /// Opens KVM, creates the VM with `ram_bytes` of RAM and one vCPU with hv's CPUID.
    ///
    /// ept mode (`shadow` is `None`): RAM is one read-write slot at guest-physical 0.
    /// Shadow mode: the slots `shadow`'s layout describes (RAM scattered over machine
    /// addresses, the page-table pool and the shadow area read-only).
    pub fn new(ram_bytes: u64, shadow: Option<&ShadowPaging>) -> Result<Self, MachineError> {
        let kvm = Kvm::new().map_err(MachineError::OpenKvm)?;
        let version = kvm.get_api_version();
        if version != KVM_API_VERSION {
            return Err(MachineError::ApiVersion(version));
        }
        let vm = ioctl("KVM_CREATE_VM", kvm.create_vm())?;
        ioctl("KVM_SET_TSS_ADDR", vm.set_tss_address(KVM_TSS_ADDRESS))?;
        let ram = GuestRam::new(ram_bytes)?;
        let slots = match shadow {
            None => vec![(0, ram.size(), ram.host_base(), false)],
            Some(s) => {
                if !kvm.check_extension(Cap::ReadonlyMem) {
                    return Err(MachineError::NoReadonlyMemslots);
                }
                let area_base = s
                    .area()
                    .get_host_address(GuestAddress(crate::shadow::layout::SHADOW_AREA_BASE))
                    .map(|p| p as u64)
                    .expect("the shadow area starts at SHADOW_AREA_BASE by construction");
                s.layout()
                    .slots()
                    .iter()
                    .map(|slot| {
                        let host = match slot.backing {
                            Backing::Ram { pseudo } => ram.host_base() + pseudo,
                            Backing::ShadowArea => area_base,
                        };
                        (slot.machine, slot.size, host, slot.read_only)
                    })
                    .collect()
            }
        };
        let mut page_table_slot = None;
        for (number, (machine, size, host, read_only)) in slots.into_iter().enumerate() {
            let region = kvm_userspace_memory_region {
                slot: number as u32,
                flags: if read_only { kvm_bindings::KVM_MEM_READONLY } else { 0 },
                guest_phys_addr: machine,
                memory_size: size,
                userspace_addr: host,
            };
            // SAFETY: every region lies inside a host mapping Machine owns (guest RAM, or
            // the shadow area, of which Machine keeps a reference) and drops only after
            // the VM fd is closed (field order), so KVM never sees a mapping go away
            // while the VM can still use it. The layout's test shows slots never overlap.
            ioctl("KVM_SET_USER_MEMORY_REGION", unsafe { vm.set_user_memory_region(region) })?;
            if shadow.is_none_or(|s| s.layout().in_shadow_area(machine)) {
                page_table_slot = Some(region);
            }
        }
        let shadow_area = shadow.map(|s| s.area().clone());
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
        Ok(Machine { vcpu, vm, kvm, ram, _shadow_area: shadow_area, page_table_slot, nx, sync_regs })
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

    /// Puts the vCPU in long mode at the plan's entry point, with CR3 = `cr3` (the
    /// plan's page-table root in ept mode, its shadow in shadow mode).
    pub fn set_boot_state(&mut self, plan: &BootPlan, cr3: u64) -> Result<(), MachineError> {
        let sregs = ioctl("KVM_GET_SREGS", self.vcpu.get_sregs())?;
        let sregs = cpu_state::long_mode_sregs(sregs, cr3, self.nx);
        ioctl("KVM_SET_SREGS", self.vcpu.set_sregs(&sregs))?;
        let regs = cpu_state::entry_regs(plan.entry, plan.boot_info_gpa);
        ioctl("KVM_SET_REGS", self.vcpu.set_regs(&regs))
    }

    /// Points CR3 at another page-table root (shadow mode's `set_cr3`). KVM flushes the
    /// guest's TLB as a real CR3 load would.
    pub fn set_cr3(&mut self, cr3: u64) -> Result<(), kvm_ioctls::Error> {
        let mut sregs = self.vcpu.get_sregs()?;
        sregs.cr3 = cr3;
        self.vcpu.set_sregs(&sregs)
    }

    /// Makes KVM forget every translation it derived from the page tables the CPU walks,
    /// by removing their memslot and adding it back. Needed after hv (from the host
    /// side) changed or removed an entry the CPU may have used: where KVM implements the
    /// guest's paging in software, it keeps its own copy of those tables and does not
    /// see host-side writes (see `shadow_mmu::ShadowMmu::take_flush_needed`). Deleting a
    /// memslot is the documented way to make KVM drop what it derived from it. With
    /// EPT/NPT it is not needed for correctness, and costs the ioctls and refaults.
    pub fn forget_cached_translations(&mut self) -> Result<(), kvm_ioctls::Error> {
        let Some(region) = self.page_table_slot else { return Ok(()) };
        let removed = kvm_userspace_memory_region { memory_size: 0, ..region };
        // SAFETY: a size of 0 deletes the slot; KVM stops using the mapping.
        unsafe { self.vm.set_user_memory_region(removed) }?;
        // SAFETY: the same region as at creation, over a mapping Machine keeps alive (guest
        // RAM, or `_shadow_area`) until after the VM fd is closed.
        unsafe { self.vm.set_user_memory_region(region) }
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
