//! Wiring the split-driver devices into KVM, so that guest and backends can wake each
//! other without hv's vCPU loop taking part.
//!
//! One file per device holds what is particular to it ([`console`], [`block`]); this
//! file is what every device shares. For each device ([`Devices::attach`]):
//! - a **doorbell**: an eventfd registered with KVM_IOEVENTFD on the device's port.
//!   When the guest writes the port, KVM signals the eventfd and resumes the guest at
//!   once; the backend thread, waiting on that eventfd, wakes. No exit reaches hv.
//! - an **upcall**: an eventfd registered with KVM_IRQFD on a GSI that KVM's routing
//!   table (KVM_SET_GSI_ROUTING) turns into an MSI to the guest's upcall vector. When the
//!   backend writes the eventfd, KVM's in-kernel local APIC interrupts the guest.
//! - a **backend thread** (`backend_drivers::runner`) holding the doorbell, the irqfd,
//!   its ring page and (for the block device) the grant table: nothing else of the guest.

pub mod block;
pub mod console;

use backend_drivers::block::image::{DiskImage, ImageError};
use backend_drivers::console::ConsoleBackend;
use backend_drivers::event_channel::{GuestNotifier, NotifierError};
use backend_drivers::guest_page::{BadPage, GuestPage};
use backend_drivers::runner::{self, BackendHandle, BackendStats, BackendWiring, DrainError, NotifyPolicy, RequestHandler, ThreadSetup};
use kvm_bindings::{kvm_irq_routing_entry, KvmIrqRouting, KVM_IRQ_ROUTING_MSI};
use kvm_ioctls::{IoEventAddress, NoDatamatch};
use pv_abi::addr::PseudoPhys;
use pv_abi::device::block::BlockFlags;
use pv_abi::event_channel::{doorbell_port, BLOCK_CHANNEL, CONSOLE_CHANNEL, UPCALL_VECTOR};
use pv_abi::layout::{BLOCK_RING_GPA, CONSOLE_RING_GPA, LOCAL_APIC_GPA, SHARED_INFO_GPA};
use pv_abi::DeviceInfo;
use std::sync::Arc;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::boot::DeviceLayout;
use crate::kvm::KvmVm;
use crate::sandbox::ThreadKind;
use crate::trace::Tracer;
use console::ConsoleOutput;

/// The console's ring page (pv-abi's `CONSOLE_RING_GPA`, a number because the boot-info
/// page carries it), as the address it is.
const CONSOLE_RING: PseudoPhys = PseudoPhys::new(CONSOLE_RING_GPA);
/// The block device's ring page (`BLOCK_RING_GPA`).
const BLOCK_RING: PseudoPhys = PseudoPhys::new(BLOCK_RING_GPA);
/// The shared-info page, where upcalls are marked pending (`SHARED_INFO_GPA`).
const SHARED_INFO: PseudoPhys = PseudoPhys::new(SHARED_INFO_GPA);

/// First GSI hv routes: above the 24 pins of the in-kernel IOAPIC, so a device's GSI
/// is never mistaken for a legacy interrupt line.
const FIRST_DEVICE_GSI: u32 = 24;

/// Why the devices could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The disk image could not be opened.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// An eventfd could not be created.
    #[error("cannot create an eventfd for the {device} device: {source}")]
    EventFd {
        /// Device name.
        device: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// A KVM ioctl failed.
    #[error("{what} for the {device} device failed: {source}")]
    Kvm {
        /// Which ioctl.
        what: &'static str,
        /// Device name.
        device: &'static str,
        /// Why.
        source: kvm_ioctls::Error,
    },
    /// KVM's interrupt routing table could not be built.
    #[error("device setup: a GSI routing table of {entries} entries cannot be built ({source:?})")]
    Routing {
        /// Entries asked for.
        entries: usize,
        /// Why.
        source: vmm_sys_util::fam::Error,
    },
    /// A ring page is not a page of guest RAM (a bug in hv's layout).
    #[error("device setup: {0}")]
    RingPage(#[from] BadPage),
    /// An event channel does not exist (a bug in hv's layout).
    #[error("device setup: {0}")]
    Channel(#[from] NotifierError),
    /// The backend thread did not start.
    #[error(transparent)]
    Spawn(#[from] runner::SpawnError),
}

/// The devices of one VM, with their backend threads.
pub struct Devices {
    console: BackendHandle,
    block: Option<(BackendHandle, u64, bool)>,
}

/// Where each device's ring stands: every index 0 for a new guest; for a snapshot, the
/// indices after draining (`Devices::drain`), which a restored VM's backends start from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RingPositions {
    /// The console ring's index.
    pub console: u32,
    /// The block ring's index (0 without a disk).
    pub block: u32,
}

/// Counters of every backend, by device name.
pub type DeviceStats = Vec<(&'static str, BackendStats)>;

/// A device's entry in the boot-info page (an ABI struct: the ring's address as a number).
fn device_info(ring: PseudoPhys, channel: u32) -> DeviceInfo {
    DeviceInfo { ring_gpa: ring.raw(), channel, doorbell_port: doorbell_port(channel), present: 1 }
}

/// One MSI route: GSI → the guest's upcall vector on CPU 0.
fn msi_route(gsi: u32) -> kvm_irq_routing_entry {
    let mut entry = kvm_irq_routing_entry { gsi, type_: KVM_IRQ_ROUTING_MSI, ..Default::default() };
    // An MSI is a write of `data` to `address`: 0xfee0_0000 selects the local APICs,
    // bits 19..12 the destination APIC id (0), and data's low byte is the vector
    // (delivery mode "fixed", edge-triggered: the upper bits stay zero).
    entry.u.msi.address_lo = LOCAL_APIC_GPA as u32;
    entry.u.msi.address_hi = 0;
    entry.u.msi.data = u32::from(UPCALL_VECTOR);
    entry
}

impl Devices {
    /// Creates the console (and, with `disk`, the block device) and their backends.
    pub fn attach(
        machine: &KvmVm,
        console_out: ConsoleOutput,
        disk: Option<DiskImage>,
        tracer: &Tracer,
        policy: NotifyPolicy,
        positions: RingPositions,
        seccomp: bool,
    ) -> Result<Devices, DeviceError> {
        let gsis = [FIRST_DEVICE_GSI, FIRST_DEVICE_GSI + 1];
        let mut routing = KvmIrqRouting::new(gsis.len()).map_err(|source| DeviceError::Routing { entries: gsis.len(), source })?;
        for (slot, gsi) in routing.as_mut_slice().iter_mut().zip(gsis) {
            *slot = msi_route(gsi);
        }
        machine
            .vm()
            .set_gsi_routing(&routing)
            .map_err(|source| DeviceError::Kvm { what: "KVM_SET_GSI_ROUTING", device: "all", source })?;

        let console = wire(
            machine,
            ConsoleBackend::new(Box::new(console_out)),
            CONSOLE_RING,
            CONSOLE_CHANNEL,
            gsis[0],
            tracer,
            policy,
            positions.console,
            seccomp.then_some(ThreadKind::ConsoleBackend),
        )?;
        let block = match disk {
            None => None,
            Some(image) => {
                let (sectors, read_only) = (image.sectors(), image.read_only());
                let backend = block::backend(image, machine.ram());
                let handle = wire(machine, backend, BLOCK_RING, BLOCK_CHANNEL, gsis[1], tracer, policy, positions.block, seccomp.then_some(ThreadKind::BlockBackend))?;
                Some((handle, sectors, read_only))
            }
        };
        Ok(Devices { console, block })
    }

    /// Where the devices are, for the boot-info page.
    pub fn layout(&self) -> DeviceLayout {
        let (block, block_sectors, block_flags) = match &self.block {
            Some((_, sectors, ro)) => (device_info(BLOCK_RING, BLOCK_CHANNEL), *sectors, if *ro { BlockFlags::READ_ONLY.bits() } else { 0 }),
            None => (DeviceInfo::ABSENT, 0, 0),
        };
        DeviceLayout { console: device_info(CONSOLE_RING, CONSOLE_CHANNEL), block, block_sectors, block_flags }
    }

    /// Lets the backends serve their rings.
    pub fn start(&self) {
        self.console.start();
        if let Some((b, _, _)) = &self.block {
            b.start();
        }
    }

    /// Lets every backend serve what the guest has published and returns where the
    /// rings then stand. Call it with the guest paused, so nothing new arrives.
    pub fn drain(&self) -> Result<RingPositions, DrainError> {
        let console = self.console.drain()?;
        let block = self.block.as_ref().map(|(b, _, _)| b.drain()).transpose()?.unwrap_or(0);
        Ok(RingPositions { console, block })
    }

    /// The backends' counters now (`None` for a backend whose thread has ended).
    pub fn stats_now(&self) -> DeviceStats {
        let handles = std::iter::once(&self.console).chain(self.block.as_ref().map(|(b, _, _)| b));
        handles.map(|h| (h.name(), h.stats().unwrap_or_default())).collect()
    }

    /// Stops every backend thread and returns their counters.
    pub fn stop(self) -> DeviceStats {
        let mut stats = Vec::new();
        let handles = std::iter::once(self.console).chain(self.block.map(|(b, _, _)| b));
        for handle in handles {
            let name = handle.name();
            stats.push((name, handle.stop().unwrap_or_default()));
        }
        stats
    }
}

/// Creates one device's doorbell and upcall, and starts its backend thread.
#[allow(clippy::too_many_arguments)]
fn wire<H: RequestHandler>(
    machine: &KvmVm,
    handler: H,
    ring: PseudoPhys,
    channel: u32,
    gsi: u32,
    tracer: &Tracer,
    policy: NotifyPolicy,
    ring_start: u32,
    confine_as: Option<ThreadKind>,
) -> Result<BackendHandle, DeviceError> {
    let device = H::NAME;
    let eventfd = || EventFd::new(EFD_NONBLOCK).map_err(|source| DeviceError::EventFd { device, source });
    let kvm_err = |what| move |source| DeviceError::Kvm { what, device, source };
    let doorbell = eventfd()?;
    let port = u64::from(doorbell_port(channel));
    machine
        .vm()
        .register_ioevent(&doorbell, &IoEventAddress::Pio(port), NoDatamatch)
        .map_err(kvm_err("KVM_IOEVENTFD"))?;
    let irqfd = eventfd()?;
    machine.vm().register_irqfd(&irqfd, gsi).map_err(kvm_err("KVM_IRQFD"))?;

    let memory = machine.ram().memory().clone();
    let ring_page = GuestPage::new(memory.clone(), ring)?;
    let notifier = GuestNotifier::new(memory, SHARED_INFO, channel, irqfd)?;
    let wiring = BackendWiring { ring_page, doorbell, notifier, events: Arc::new(tracer.clone()), notify_policy: policy, ring_start };
    // With `confine_as`, the thread installs that kind's seccomp filter before it serves
    // the ring.
    let setup = confine_as.map(|kind| Box::new(move || crate::sandbox::confine_current_thread(kind).map_err(|e| e.to_string())) as ThreadSetup);
    Ok(runner::spawn_with_setup(handler, wiring, setup)?)
}
