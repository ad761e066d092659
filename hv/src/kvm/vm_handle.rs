//! One KVM VM as a value: its file descriptors (`Kvm → VmFd → VcpuFd`), its memory
//! slots, one vCPU with hv's CPUID, and the guest RAM the slots point at.
//!
//! Two `KvmVm`s are two independent VMs: nothing here is global, so one process can
//! hold several (each guest of `vmm::Vm` owns one).

use std::sync::{Arc, Mutex, PoisonError};

use kvm_bindings::{kvm_regs, kvm_sregs, kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES};
use kvm_ioctls::{Cap, Kvm, SyncReg, VcpuFd, VmFd};
use pv_abi::addr::{MachineAddr, PseudoPhys};
use vm_memory::GuestMemoryMmap;

use super::cpuid::{self, CpuidError};
use super::dirty_log::{KvmDirtyLog, LogState, LoggedSlot};
use super::memslots::{MemoryPlan, SlotMemory};
use super::registers::RegisterDump;
use crate::memory::dirty::DirtySet;
use crate::memory::{GuestRam, RamAllocError};

/// KVM API version every KVM since Linux 2.6.22 reports.
const KVM_API_VERSION: i32 = 12;
/// Address for KVM_SET_TSS_ADDR: three pages Intel's VMX needs for real-mode emulation,
/// placed just below 4 GiB where no guest RAM of ours can be (the same spot QEMU and
/// Firecracker use). hv never runs real mode, but KVM expects it set.
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;

/// Why the VM could not be created.
#[derive(Debug, thiserror::Error)]
pub enum KvmVmError {
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
    /// A slot of the plan names memory outside what backs it (a bug in the layout).
    #[error("memory slot {number} ({size:#x} bytes at {guest_phys:#x}) lies outside the host memory backing it")]
    SlotOutsideMemory {
        /// The slot's number.
        number: usize,
        /// Its guest-physical (machine) start.
        guest_phys: MachineAddr,
        /// Its size.
        size: u64,
    },
}

fn ioctl<T>(what: &'static str, r: Result<T, kvm_ioctls::Error>) -> Result<T, KvmVmError> {
    r.map_err(|source| KvmVmError::Ioctl { what, source })
}

/// A KVM VM with one vCPU and its RAM.
///
/// Field order is drop order: the vCPU and VM are closed before the RAM they point at
/// is unmapped. The VM descriptor is the only strong reference to it (a dirty-log
/// reader holds a weak one, `super::dirty_log`), so it closes here too.
pub struct KvmVm {
    vcpu: VcpuFd,
    vm: Arc<VmFd>,
    kvm: Kvm,
    ram: GuestRam,
    /// The plan's extra area (a second reference to its mapping, held so it outlives
    /// the memslot that points at it).
    _area: Option<GuestMemoryMmap>,
    /// Every memslot as registered, in slot-number order (re-registered to change its
    /// flags or to make KVM forget translations).
    regions: Vec<kvm_userspace_memory_region>,
    /// Which of them holds the page tables the CPU walks (`forget_cached_translations`).
    page_table_slot: Option<usize>,
    /// The slots KVM's dirty log can cover: guest RAM the guest may write.
    logged_slots: Vec<LoggedSlot>,
    /// Whether logging is on, shared with dirty-log readers.
    dirty_state: Arc<Mutex<LogState>>,
    nx: bool,
    sync_regs: bool,
}

impl KvmVm {
    /// Opens KVM, creates the VM with `ram_bytes` of fresh (zeroed) RAM, the slots of
    /// `plan`, and one vCPU with hv's CPUID.
    pub fn new(ram_bytes: u64, plan: MemoryPlan) -> Result<Self, KvmVmError> {
        Self::with_ram(GuestRam::new(ram_bytes)?, plan)
    }

    /// Like [`KvmVm::new`], around RAM that already holds a guest (a snapshot's, or one
    /// received by migration).
    pub fn with_ram(ram: GuestRam, plan: MemoryPlan) -> Result<Self, KvmVmError> {
        let kvm = Kvm::new().map_err(KvmVmError::OpenKvm)?;
        let version = kvm.get_api_version();
        if version != KVM_API_VERSION {
            return Err(KvmVmError::ApiVersion(version));
        }
        let vm = ioctl("KVM_CREATE_VM", kvm.create_vm())?;
        ioctl("KVM_SET_TSS_ADDR", vm.set_tss_address(KVM_TSS_ADDRESS))?;
        if plan.needs_readonly_slots() && !kvm.check_extension(Cap::ReadonlyMem) {
            return Err(KvmVmError::NoReadonlyMemslots);
        }
        let area = plan.area_host_range();
        let mut page_table_slot = None;
        let mut regions = Vec::with_capacity(plan.slots.len());
        let mut logged_slots = Vec::new();
        for (number, slot) in plan.slots.iter().enumerate() {
            // Resolve the slot to host memory this VM owns, checking it fits: the safety
            // of the ioctl below rests on this check.
            let (base, len, offset) = match (slot.memory, area) {
                (SlotMemory::Ram { offset }, _) => (ram.host_base(), ram.size(), offset),
                (SlotMemory::Area { offset }, Some((base, len))) => (base, len, offset),
                (SlotMemory::Area { .. }, None) => (0, 0, 1),
            };
            if offset.checked_add(slot.size).is_none_or(|end| end > len) {
                return Err(KvmVmError::SlotOutsideMemory { number, guest_phys: slot.guest_phys, size: slot.size });
            }
            let region = kvm_userspace_memory_region {
                slot: number as u32,
                flags: if slot.read_only { kvm_bindings::KVM_MEM_READONLY } else { 0 },
                guest_phys_addr: slot.guest_phys.raw(),
                memory_size: slot.size,
                userspace_addr: base + offset,
            };
            // SAFETY: the region lies inside a host mapping KvmVm owns (guest RAM, or the
            // plan's area, of which KvmVm keeps a reference): checked just above. Both
            // are dropped only after the VM fd is closed (field order), so KVM never sees
            // a mapping go away while the VM can still use it. The shadow layout's test
            // shows slots never overlap.
            ioctl("KVM_SET_USER_MEMORY_REGION", unsafe { vm.set_user_memory_region(region) })?;
            if slot.holds_walked_tables {
                page_table_slot = Some(number);
            }
            if let (SlotMemory::Ram { offset }, false) = (slot.memory, slot.read_only) {
                let first = PseudoPhys::new(offset).frame();
                logged_slots.push(LoggedSlot { number: number as u32, first, size: slot.size });
            }
            regions.push(region);
        }
        // The in-kernel interrupt controllers (local APIC, IOAPIC, PIC) must exist before
        // the vCPU: devices raise interrupts through them (irqfd → MSI → local APIC)
        // without hv's vCPU loop taking part. They must also be created before any vCPU.
        ioctl("KVM_CREATE_IRQCHIP", vm.create_irq_chip())?;
        let mut vcpu = ioctl("KVM_CREATE_VCPU", vm.create_vcpu(0))?;
        let cpuid = cpuid::guest_cpuid(&kvm)?;
        ioctl("KVM_SET_CPUID2", vcpu.set_cpuid2(&cpuid))?;
        let nx = cpuid::nx_supported(&cpuid);
        let sync_regs = kvm.check_extension(Cap::SyncRegs);
        if sync_regs {
            // Ask KVM to copy the general registers into the shared kvm_run page at every
            // exit, so reading them costs no extra ioctl (see `guest_regs`).
            vcpu.set_sync_valid_reg(SyncReg::Register);
        }
        let dirty_state = Arc::new(Mutex::new(LogState { on: false, carried: DirtySet::new(ram.size()) }));
        let vm = Arc::new(vm);
        Ok(KvmVm { vcpu, vm, kvm, ram, _area: plan.area, regions, page_table_slot, logged_slots, dirty_state, nx, sync_regs })
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

    /// The VM file descriptor (devices register their eventfds on it).
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

    /// Sets the first register state: `make_sregs` turns KVM's current special
    /// registers into the ones to start with (the boot layer knows what long mode
    /// needs), and `regs` are the general registers.
    pub fn set_initial_state(&mut self, make_sregs: impl FnOnce(kvm_sregs) -> kvm_sregs, regs: &kvm_regs) -> Result<(), KvmVmError> {
        let sregs = ioctl("KVM_GET_SREGS", self.vcpu.get_sregs())?;
        ioctl("KVM_SET_SREGS", self.vcpu.set_sregs(&make_sregs(sregs)))?;
        ioctl("KVM_SET_REGS", self.vcpu.set_regs(regs))
    }

    /// Points CR3 at another page-table root (shadow mode's `set_cr3`). KVM flushes the
    /// guest's TLB as a real CR3 load would.
    pub fn set_cr3(&mut self, cr3: MachineAddr) -> Result<(), kvm_ioctls::Error> {
        let mut sregs = self.vcpu.get_sregs()?;
        sregs.cr3 = cr3.raw();
        self.vcpu.set_sregs(&sregs)
    }

    /// Makes KVM forget every translation it derived from the page tables the CPU walks,
    /// by removing their memslot and adding it back. Needed after hv (from the host
    /// side) changed or removed an entry the CPU may have used: where KVM implements the
    /// guest's paging in software, it keeps its own copy of those tables and does not
    /// see host-side writes (see `shadow_mmu::ShadowMmu::take_flush_needed`). Deleting a
    /// memslot is the documented way to make KVM drop what it derived from it. With
    /// EPT/NPT it is not needed for correctness, and costs the ioctls and refaults.
    ///
    /// Deleting a slot also throws away its dirty log: while logging is on, the bits are
    /// read out first and kept for the next reader (`super::dirty_log`).
    pub fn forget_cached_translations(&mut self) -> Result<(), kvm_ioctls::Error> {
        let Some(region) = self.page_table_slot.map(|i| self.regions[i]) else { return Ok(()) };
        let mut dirty = self.dirty_state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(logged) = self.logged_slots.iter().find(|s| s.number == region.slot).filter(|_| dirty.on) {
            let bitmap = self.vm.get_dirty_log(logged.number, logged.size as usize)?;
            dirty.carried.add_bitmap(logged.first, &bitmap);
        }
        let removed = kvm_userspace_memory_region { memory_size: 0, ..region };
        // SAFETY: a size of 0 deletes the slot; KVM stops using the mapping.
        unsafe { self.vm.set_user_memory_region(removed) }?;
        // SAFETY: the same region as at creation (checked then to lie inside a mapping
        // KvmVm owns: guest RAM, or `_area`), alive until after the VM fd is closed.
        unsafe { self.vm.set_user_memory_region(region) }
    }

    /// Turns KVM's dirty log on or off for every slot of guest RAM the guest can write,
    /// by registering those slots again with or without `KVM_MEM_LOG_DIRTY_PAGES` (a
    /// flags-only change: the memory stays mapped). Turning it on starts with an empty
    /// log: only writes from now on are recorded.
    pub fn set_dirty_logging(&mut self, on: bool) -> Result<(), kvm_ioctls::Error> {
        let mut dirty = self.dirty_state.lock().unwrap_or_else(PoisonError::into_inner);
        for logged in &self.logged_slots {
            let region = &mut self.regions[logged.number as usize];
            let flags = if on { region.flags | KVM_MEM_LOG_DIRTY_PAGES } else { region.flags & !KVM_MEM_LOG_DIRTY_PAGES };
            let changed = kvm_userspace_memory_region { flags, ..*region };
            // SAFETY: the same region as at creation (checked then to lie inside a mapping
            // KvmVm owns, alive until after the VM fd is closed); only its flags change.
            unsafe { self.vm.set_user_memory_region(changed) }?;
            *region = changed;
        }
        dirty.on = on;
        dirty.carried = DirtySet::new(self.ram.size());
        Ok(())
    }

    /// A handle to read KVM's dirty log from another thread (it fails while logging is
    /// off, and once this VM is gone).
    pub fn dirty_log(&self) -> KvmDirtyLog {
        KvmDirtyLog::new(&self.vm, self.logged_slots.clone(), self.dirty_state.clone())
    }

    /// The vCPU, for reading its state.
    pub fn vcpu(&self) -> &VcpuFd {
        &self.vcpu
    }

    /// The general registers as hv last left them, with any change hv made through the
    /// sync area (a hypercall's result in `rax`) written to KVM first, so that a state
    /// read now (a snapshot) sees it.
    pub fn commit_registers(&mut self) -> Result<kvm_regs, kvm_ioctls::Error> {
        // Only a copy hv marked dirty is newer than KVM's own (after a hypercall exit);
        // otherwise KVM's registers are the truth.
        let dirty = self.sync_regs && self.vcpu.get_kvm_run().kvm_dirty_regs & u64::from(kvm_bindings::KVM_SYNC_X86_REGS) != 0;
        if dirty {
            let regs = self.vcpu.sync_regs().regs;
            self.vcpu.set_regs(&regs)?;
            // Written: KVM must not apply the (same) copy again at the next entry.
            self.vcpu.clear_sync_dirty_reg(SyncReg::Register);
        }
        self.vcpu.get_regs()
    }

    /// Reads the registers for a dump; `None` if KVM refuses.
    pub fn register_dump(&self) -> Option<RegisterDump> {
        let regs = self.vcpu.get_regs().ok()?;
        let sregs = self.vcpu.get_sregs().ok()?;
        Some(RegisterDump::new(&regs, &sregs))
    }
}
