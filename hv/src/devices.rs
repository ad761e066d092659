//! Wiring the split-driver devices into KVM, so that guest and backends can wake each
//! other without hv's vCPU loop taking part.
//!
//! For each device ([`Devices::attach`]):
//! - a **doorbell**: an eventfd registered with KVM_IOEVENTFD on the device's port.
//!   When the guest writes the port, KVM signals the eventfd and resumes the guest at
//!   once; the backend thread, waiting on that eventfd, wakes. No exit reaches hv.
//! - an **upcall**: an eventfd registered with KVM_IRQFD on a GSI that KVM's routing
//!   table (KVM_SET_GSI_ROUTING) turns into an MSI to the guest's upcall vector. When the
//!   backend writes the eventfd, KVM's in-kernel local APIC interrupts the guest.
//! - a **backend thread** (`backend_drivers::runner`) holding the doorbell, the irqfd,
//!   its ring page and (for the block device) the grant table: nothing else of the guest.

use std::path::PathBuf;

use backend_drivers::block::image::{DiskImage, ImageError};
use backend_drivers::block::BlockBackend;
use backend_drivers::console::ConsoleBackend;
use backend_drivers::event_channel::GuestNotifier;
use backend_drivers::grant_table::GrantTable;
use backend_drivers::guest_page::GuestPage;
use backend_drivers::runner::{self, BackendHandle, BackendStats, BackendWiring, NotifyPolicy, RequestHandler};
use kvm_bindings::{kvm_irq_routing_entry, KvmIrqRouting, KVM_IRQ_ROUTING_MSI};
use kvm_ioctls::{IoEventAddress, NoDatamatch};
use pv_abi::device::block::BlockFlags;
use pv_abi::addr::PseudoPhys;
use pv_abi::grant::grant_window;
use pv_abi::event_channel::{doorbell_port, BLOCK_CHANNEL, CONSOLE_CHANNEL, UPCALL_VECTOR};
use pv_abi::layout::{
    BLOCK_RING_GPA, CONSOLE_RING_GPA, GRANT_TABLE_GPA, LOCAL_APIC_GPA, SHARED_INFO_GPA,
};
use pv_abi::DeviceInfo;
use std::sync::Arc;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::console::ConsoleOutput;
use crate::machine::Machine;
use crate::trace::Tracer;

/// First GSI hv routes: above the 24 pins of the in-kernel IOAPIC, so a device's GSI
/// is never mistaken for a legacy interrupt line.
const FIRST_DEVICE_GSI: u32 = 24;

/// A disk to attach (`--disk PATH[,ro]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskConfig {
    /// The image file.
    pub path: PathBuf,
    /// Refuse writes.
    pub read_only: bool,
}

impl std::str::FromStr for DiskConfig {
    type Err = String;

    /// `PATH` or `PATH,ro`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (path, read_only) = match s.strip_suffix(",ro") {
            Some(path) => (path, true),
            None => (s, false),
        };
        if path.is_empty() {
            return Err("expected PATH or PATH,ro".into());
        }
        Ok(DiskConfig { path: PathBuf::from(path), read_only })
    }
}

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
    /// A page or channel was invalid (a bug in hv's layout).
    #[error("device setup: {0}")]
    Layout(String),
    /// The backend thread did not start.
    #[error(transparent)]
    Spawn(#[from] runner::SpawnError),
}

/// The devices of one VM, with their backend threads.
pub struct Devices {
    console: BackendHandle,
    block: Option<(BackendHandle, u64, bool)>,
}

/// Counters of every backend, by device name.
pub type DeviceStats = Vec<(&'static str, BackendStats)>;

/// Where each device lives, for the boot-info page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceLayout {
    /// The console.
    pub console: DeviceInfo,
    /// The block device (absent without a disk).
    pub block: DeviceInfo,
    /// Disk size in sectors.
    pub block_sectors: u64,
    /// The disk's `BlockFlags`, as the boot-info page carries them.
    pub block_flags: u32,
}

fn device_info(ring_gpa: u64, channel: u32) -> DeviceInfo {
    DeviceInfo { ring_gpa, channel, doorbell_port: doorbell_port(channel), present: 1 }
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
    /// Opens the disk image, so a bad path is reported before KVM is touched.
    pub fn open_disk(config: &DiskConfig) -> Result<DiskImage, DeviceError> {
        Ok(DiskImage::open(&config.path, config.read_only)?)
    }

    /// Creates the console (and, with `disk`, the block device) and their backends.
    pub fn attach(
        machine: &Machine,
        console_out: ConsoleOutput,
        disk: Option<DiskImage>,
        tracer: &Tracer,
        policy: NotifyPolicy,
    ) -> Result<Devices, DeviceError> {
        let gsis = [FIRST_DEVICE_GSI, FIRST_DEVICE_GSI + 1];
        let mut routing = KvmIrqRouting::new(gsis.len()).map_err(|_| DeviceError::Layout("GSI routing table".into()))?;
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
            CONSOLE_RING_GPA,
            CONSOLE_CHANNEL,
            gsis[0],
            tracer,
            policy,
        )?;
        let block = match disk {
            None => None,
            Some(image) => {
                let (sectors, read_only) = (image.sectors(), image.read_only());
                // Grants may name only the frames of pv-abi's grant window: never a page
                // table (a device writing one would change the guest's mappings behind
                // the MMU's back) and never hv's reserved area.
                let window = grant_window(machine.ram().size());
                let grants = GrantTable::new(machine.ram().memory().clone(), PseudoPhys::new(GRANT_TABLE_GPA), window);
                let backend = BlockBackend::new(image, grants);
                Some((wire(machine, backend, BLOCK_RING_GPA, BLOCK_CHANNEL, gsis[1], tracer, policy)?, sectors, read_only))
            }
        };
        Ok(Devices { console, block })
    }

    /// Where the devices are, for the boot-info page.
    pub fn layout(&self) -> DeviceLayout {
        let (block, block_sectors, block_flags) = match &self.block {
            Some((_, sectors, ro)) => (device_info(BLOCK_RING_GPA, BLOCK_CHANNEL), *sectors, if *ro { BlockFlags::READ_ONLY.bits() } else { 0 }),
            None => (DeviceInfo::ABSENT, 0, 0),
        };
        DeviceLayout { console: device_info(CONSOLE_RING_GPA, CONSOLE_CHANNEL), block, block_sectors, block_flags }
    }

    /// Lets the backends serve their rings.
    pub fn start(&self) {
        self.console.start();
        if let Some((b, _, _)) = &self.block {
            b.start();
        }
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
fn wire<H: RequestHandler>(
    machine: &Machine,
    handler: H,
    ring_gpa: u64,
    channel: u32,
    gsi: u32,
    tracer: &Tracer,
    policy: NotifyPolicy,
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
    let ring_page = GuestPage::new(memory.clone(), PseudoPhys::new(ring_gpa)).map_err(|e| DeviceError::Layout(e.to_string()))?;
    let notifier = GuestNotifier::new(memory, PseudoPhys::new(SHARED_INFO_GPA), channel, irqfd).map_err(|e| DeviceError::Layout(e.to_string()))?;
    let wiring = BackendWiring { ring_page, doorbell, notifier, events: Arc::new(tracer.clone()), notify_policy: policy };
    Ok(runner::spawn(handler, wiring)?)
}
