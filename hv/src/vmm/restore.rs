//! Continuing a guest from a saved state instead of booting one: [`Vm::restore`].
//!
//! The steps mirror [`Vm::new`], with the boot replaced: RAM arrives already filled
//! (mapped from a snapshot file, or received by a migration), the devices' backends
//! attach at the ring indices they had, and the vCPU gets its saved state instead of
//! an entry point. The one step with a choice in it is CR3: the state holds the
//! guest's own root, so in ept mode CR3 points at it, and in shadow mode hv builds a
//! shadow of it first. Which mode the state was taken in does not matter; the guest
//! learns the mode it now runs in from the boot-info page, which hv rewrites here.
//!
//! A guest with a network device needs a network to be restored into
//! ([`Vm::restore_on_network`]): its device is attached to the port the caller brings,
//! with the saved identity and ring indices. Restoring it without one is refused rather
//! than giving it a cable to nowhere: a guest that serves the network and silently
//! cannot be reached is harder to understand than an error that says what to add.

use std::io::Write;
use std::time::Instant;

use pv_abi::addr::{GuestVirt, MachineAddr, PseudoPhys};
use pv_abi::event_channel::{MAX_CHANNELS, SHARED_INFO_PENDING_OFFSET};
use pv_abi::cpuid::HV_ABI_VERSION;
use pv_abi::layout::{BOOT_INFO_GPA, GRANT_TABLE_FRAMES, GRANT_TABLE_GPA, SHARED_INFO_GPA};
use pv_abi::{BootInfo, MmuMode};

use super::{control, Vm, VmConfig, VmError};
use crate::devices::console::ConsoleOutput;
use crate::devices::{block, DeviceError, Devices};
use crate::kvm::KvmVm;
use crate::memory::GuestRam;
use crate::shadow::ShadowPaging;
use crate::state::{DiskIdentity, VmState};
use crate::trace::{TraceEvent, TraceWriter, Tracer};

impl Vm {
    /// Builds a VM that continues the guest `state` describes, with `ram` holding its
    /// memory. `config` says how to run it: its memory mode may differ from the one the
    /// state was taken in; its RAM size and disk must be the state's
    /// ([`VmConfig::for_state`] builds such a config).
    pub fn restore(config: &VmConfig, state: &VmState, ram: GuestRam, console: Box<dyn Write + Send>, started: Instant) -> Result<Vm, VmError> {
        Self::restore_on_network(config, state, ram, console, started, None)
    }

    /// [`Vm::restore`], with the guest's network device (if the state has one) on `port`:
    /// a port is needed exactly when the state has a network device.
    pub fn restore_on_network(
        config: &VmConfig,
        state: &VmState,
        ram: GuestRam,
        console: Box<dyn Write + Send>,
        started: Instant,
        port: Option<Box<dyn backend_drivers::frame_port::FramePort>>,
    ) -> Result<Vm, VmError> {
        state.validate()?;
        let network = match (&state.net, port) {
            (None, None) => None,
            (Some(saved), Some(port)) => Some((port, saved.config().map_err(VmError::Restore)?, saved.positions())),
            (Some(saved), None) => {
                let address = saved.config().map(|c| c.address()).unwrap_or_default();
                return Err(VmError::Restore(format!(
                    "the guest has a network device (address {address}); give it a network to continue on: --tap NAME"
                )));
            }
            (None, Some(_)) => return Err(VmError::Restore("the guest has no network device; a restored guest cannot be given one (leave out --tap)".into())),
        };
        if config.seccomp {
            crate::sandbox::prepare()?;
        }
        let taken_in = state.mode()?;
        if ram.size() != state.ram_bytes || config.mem_mib << 20 != state.ram_bytes {
            return Err(VmError::Restore(format!(
                "the state is of a {} MiB guest; RAM here is {} MiB",
                state.ram_bytes >> 20,
                ram.size() >> 20
            )));
        }
        if taken_in != config.mmu && !state.cross_mode_safe {
            return Err(VmError::Restore(format!(
                "the state was taken while the guest was loading CR3 the {} way; it can only continue in {} mode",
                taken_in.name(),
                taken_in.name()
            )));
        }
        let disk = open_same_disk(config, state)?;
        let tracer = match &config.trace {
            Some((path, format)) => Tracer::to_writer(
                TraceWriter::create(path, *format, config.trace_max_events).map_err(|source| VmError::Trace { path: path.clone(), source })?,
            ),
            None => Tracer::default(),
        };
        let mut shadow = match config.mmu {
            MmuMode::Ept => None,
            MmuMode::Shadow => Some(ShadowPaging::new(state.ram_bytes)?),
        };
        let memory = shadow.as_ref().map_or_else(|| crate::kvm::MemoryPlan::flat(state.ram_bytes), ShadowPaging::memory_plan);
        check_guest_abi(&ram)?;
        let kvm = KvmVm::with_ram(ram, memory)?;
        tell_guest_its_mode(&kvm, config.mmu)?;
        let console = ConsoleOutput::new(console);
        let mut devices = Devices::attach(&kvm, console.clone(), disk, &tracer, config.notify_policy, state.rings, config.seccomp, restored_balloon(&kvm, state)?)?;
        if let Some((port, net, at)) = network {
            devices.attach_net(&kvm, port, net, at, &tracer, config.notify_policy, config.seccomp)?;
        }
        let root = state.checked_guest_root()?;
        let cr3 = match shadow.as_mut() {
            None => MachineAddr::new(root.raw()),
            Some(s) => s.load_root(kvm.ram(), root).map_err(VmError::ShadowBoot)?,
        };
        let refused = state
            .vcpu
            .restore(kvm.vcpu(), cr3)
            .map_err(|e| VmError::Restore(format!("KVM refused the saved vCPU state: {e}")))?;
        if !refused.is_empty() {
            let list: Vec<String> = refused.iter().map(|m| format!("{m:#x}")).collect();
            eprintln!("hv: restore: KVM here refused MSR(s) {} (left at their reset values)", list.join(", "));
        }
        raise_pending_upcall(&kvm)?;
        tracer.emit(|| TraceEvent::Restore {
            rip: GuestVirt::new(state.vcpu.regs.rip),
            mem_bytes: state.ram_bytes,
            mmu: config.mmu.name(),
            taken_in: taken_in.name(),
        });
        for event in shadow.as_mut().map(ShadowPaging::drain_events).unwrap_or_default() {
            tracer.emit(|| TraceEvent::Shadow(event));
        }
        let (control, mailbox) = control::channel();
        Ok(Vm { devices, kvm, shadow, console, tracer, config: config.clone(), started, control, mailbox, session: None })
    }
}

impl VmConfig {
    /// How to continue `state`: its RAM size, its disk, its notification policy, in
    /// memory mode `mmu` (the state's own if `None`); no trace, no timeout.
    pub fn for_state(state: &VmState, mmu: Option<MmuMode>) -> Result<VmConfig, VmError> {
        let taken_in = state.mode()?;
        Ok(VmConfig {
            kernel: None,
            mem_mib: state.ram_bytes >> 20,
            guest_args: state.guest_args.clone(),
            trace: None,
            trace_max_events: crate::vmm::config::DEFAULT_TRACE_MAX_EVENTS,
            disk: state.disk.as_ref().map(|d| block::DiskConfig { path: d.path.clone(), read_only: d.read_only }),
            notify_policy: if state.notify_always {
                backend_drivers::runner::NotifyPolicy::Always
            } else {
                backend_drivers::runner::NotifyPolicy::EventIndex
            },
            timeout: None,
            mmu: mmu.unwrap_or(taken_in),
            seccomp: false,
            balloon_target_mib: None,
        })
    }
}

/// Opens the disk the state names, after checking it is the same file, of the same size.
fn open_same_disk(config: &VmConfig, state: &VmState) -> Result<Option<backend_drivers::block::image::DiskImage>, VmError> {
    match (&state.disk, &config.disk) {
        (None, None) => Ok(None),
        (Some(saved), Some(disk)) => {
            let now = DiskIdentity::of(disk)
                .map_err(|e| VmError::Restore(format!("the guest's disk {}: {e}", disk.path.display())))?;
            if let Some(problem) = saved.mismatch(&now) {
                return Err(VmError::Restore(format!("the guest's disk: {problem}")));
            }
            Ok(Some(block::open_disk(disk).map_err(DeviceError::from)?))
        }
        (Some(saved), None) => Err(VmError::Restore(format!("the guest had a disk ({}) and none is given", saved.path.display()))),
        (None, Some(_)) => Err(VmError::Restore("the guest had no disk; a restored guest cannot be given one".into())),
    }
}

/// Refuses a guest that was booted for another ABI. Its memory has its shared pages
/// where that ABI put them, and this hv's backends look where this ABI does: a guest of
/// ABI 5 keeps its one-frame grant table at 0x4000, where hv's backends no longer read,
/// so each of its block requests would fail. The guest's boot-info page travels in its
/// RAM (in a snapshot or a migration stream) and says which ABI and which grant table
/// it was booted with.
fn check_guest_abi(ram: &GuestRam) -> Result<(), VmError> {
    let field = |offset: usize, bytes: &mut [u8]| {
        ram.read(PseudoPhys::new(BOOT_INFO_GPA + offset as u64), bytes)
            .map_err(|e| VmError::Restore(format!("the boot-info page is not in RAM: {e}")))
    };
    let (mut version, mut table, mut frames) = ([0u8; 4], [0u8; 8], [0u8; 4]);
    field(core::mem::offset_of!(BootInfo, abi_version), &mut version)?;
    field(core::mem::offset_of!(BootInfo, grant_table_gpa), &mut table)?;
    field(core::mem::offset_of!(BootInfo, grant_table_frames), &mut frames)?;
    let (version, table, frames) = (u32::from_le_bytes(version), u64::from_le_bytes(table), u32::from_le_bytes(frames));
    if version != HV_ABI_VERSION {
        return Err(VmError::Restore(format!(
            "the guest was booted for hv's ABI {version}; this hv speaks ABI {HV_ABI_VERSION} (its shared pages, such as the grant table, are elsewhere), so the guest cannot continue here"
        )));
    }
    if (table, frames) != (GRANT_TABLE_GPA, GRANT_TABLE_FRAMES) {
        return Err(VmError::Restore(format!(
            "the guest's grant table is {frames} frame(s) at {table:#x}; this hv's backends read {GRANT_TABLE_FRAMES} at {GRANT_TABLE_GPA:#x}"
        )));
    }
    Ok(())
}

/// Rewrites `BootInfo::mmu_mode`: the guest reads it at every CR3 load
/// (`hv::memory_mode` in pv-guest), so it follows a change of mode at once.
fn tell_guest_its_mode(kvm: &KvmVm, mode: MmuMode) -> Result<(), VmError> {
    let field = PseudoPhys::new(BOOT_INFO_GPA + core::mem::offset_of!(BootInfo, mmu_mode) as u64);
    kvm.ram()
        .write(field, &(mode as u32).to_le_bytes())
        .map_err(|e| VmError::Restore(format!("the boot-info page is not in RAM: {e}")))
}

/// If a backend had marked a channel pending, make sure the guest hears of it: an
/// upcall signalled just before the state was taken might not have reached the local
/// APIC the state holds. An extra upcall is harmless (the guest re-checks its rings).
fn raise_pending_upcall(kvm: &KvmVm) -> Result<(), VmError> {
    let mut pending = [0u8; MAX_CHANNELS];
    kvm.ram()
        .read(PseudoPhys::new(SHARED_INFO_GPA + SHARED_INFO_PENDING_OFFSET as u64), &mut pending)
        .map_err(|e| VmError::Restore(format!("the shared-info page is not in RAM: {e}")))?;
    if pending.iter().all(|&p| p == 0) {
        return Ok(());
    }
    crate::devices::raise_upcall(kvm).map_err(|e| VmError::Restore(format!("KVM_SIGNAL_MSI failed: {e}")))
}


/// The balloon of a restored guest: the saved set of frames held (an empty one if the
/// state had no balloon), the target already in its RAM, and the kernel's bounds from
/// its boot-info page.
fn restored_balloon(kvm: &KvmVm, state: &VmState) -> Result<Option<crate::devices::BalloonPlan>, VmError> {
    let ram = kvm.ram();
    let limits = crate::devices::balloon::limits_from_boot_info(ram).map_err(|e| VmError::Restore(e.to_string()))?;
    let saved = match &state.balloon {
        Some(saved) => std::sync::Arc::new(std::sync::Mutex::new(saved.clone())),
        None => crate::devices::balloon::new_state(ram),
    };
    // A state without a balloon came from a guest that never saw one: its control
    // block is zero, which would read as "keep nothing"; give it all of RAM.
    let target_pages = state.balloon.is_none().then(|| ram.size() >> pv_abi::addr::PAGE_SHIFT);
    Ok(Some(crate::devices::BalloonPlan { limits, state: saved, target_pages }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RAM whose boot-info page says ABI `version` and a grant table of `frames` at `table`.
    fn booted(version: u32, table: u64, frames: u32) -> GuestRam {
        let ram = GuestRam::new(8 << 20).unwrap();
        let info = BootInfo { abi_version: version, grant_table_gpa: table, grant_table_frames: frames, ..BootInfo::empty() };
        let put = |offset: usize, bytes: &[u8]| ram.write(PseudoPhys::new(BOOT_INFO_GPA + offset as u64), bytes).unwrap();
        put(core::mem::offset_of!(BootInfo, abi_version), &info.abi_version.to_le_bytes());
        put(core::mem::offset_of!(BootInfo, grant_table_gpa), &info.grant_table_gpa.to_le_bytes());
        put(core::mem::offset_of!(BootInfo, grant_table_frames), &info.grant_table_frames.to_le_bytes());
        ram
    }

    fn refusal(ram: &GuestRam) -> String {
        match check_guest_abi(ram) {
            Err(VmError::Restore(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_guest_booted_for_this_abi_and_grant_table_continues() {
        assert!(check_guest_abi(&booted(HV_ABI_VERSION, GRANT_TABLE_GPA, GRANT_TABLE_FRAMES)).is_ok());
    }

    #[test]
    fn hostile_a_guest_of_abi_5_with_its_one_frame_grant_table_is_refused_with_the_reason() {
        let why = refusal(&booted(5, 0x4000, 0));
        assert!(why.contains("booted for hv's ABI 5; this hv speaks ABI 6"), "{why}");
        let why = refusal(&booted(HV_ABI_VERSION, 0x4000, 1));
        assert!(why.contains("grant table is 1 frame(s) at 0x4000; this hv's backends read 4 at 0x10000"), "{why}");
        let why = refusal(&GuestRam::new(8 << 20).unwrap());
        assert!(why.contains("ABI 0"), "{why}");
    }
}
