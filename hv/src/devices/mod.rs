//! Wiring the split-driver devices into KVM, so that guest and backends can wake each
//! other without hv's vCPU loop taking part.
//!
//! One file per device holds what is particular to it ([`console`], [`block`], [`net`],
//! [`balloon`]);
//! this file is what every device shares. (The network device has two rings and is
//! attached on its own, after the others: [`net::NetDevice::attach`].) [`tap`] attaches a
//! host TAP device to the virtual switch, with a thread of its own; [`uart`] is the one
//! emulated device, a 16550 at COM1. For each device ([`Devices::attach`]):
//! - a **doorbell**: an eventfd registered with KVM_IOEVENTFD on the device's port.
//!   When the guest writes the port, KVM signals the eventfd and resumes the guest at
//!   once; the backend thread, waiting on that eventfd, wakes. No exit reaches hv.
//! - an **upcall**: an eventfd registered with KVM_IRQFD on a GSI that KVM's routing
//!   table (KVM_SET_GSI_ROUTING) turns into an MSI to the guest's upcall vector. When the
//!   backend writes the eventfd, KVM's in-kernel local APIC interrupts the guest.
//! - a **backend thread** (`backend_drivers::runner`) holding the doorbell, the irqfd,
//!   its ring page and (for the block device) the grant table: nothing else of the guest.
//!
//! Two other ways of serving exist, for record and replay ([`Serving`]): a recorded run
//! serves each ring on the vCPU thread when the guest's doorbell write exits to hv
//! ([`inline`]), and a replay serves nothing (the log says what the device did).

pub mod balloon;
pub mod block;
pub mod console;
pub mod inline;
pub mod net;
pub mod tap;
pub mod uart;

use backend_drivers::balloon::check::BalloonLimits;
use backend_drivers::balloon::release::HostMemory;
use backend_drivers::balloon::{BalloonBackend, SharedBalloonState};
use backend_drivers::block::image::{DiskImage, ImageError};
use backend_drivers::console::ConsoleBackend;
use backend_drivers::event_channel::{GuestNotifier, NotifierError};
use backend_drivers::guest_page::{BadPage, GuestPage};
use backend_drivers::runner::{self, BackendHandle, BackendStats, BackendWiring, DrainError, InlineBackend, NotifyPolicy, RequestHandler, ThreadSetup};
use kvm_bindings::{kvm_irq_routing_entry, kvm_msi, KvmIrqRouting, KVM_IRQ_ROUTING_MSI};
use kvm_ioctls::{IoEventAddress, NoDatamatch};
use pv_abi::addr::PseudoPhys;
use pv_abi::device::block::BlockFlags;
use pv_abi::event_channel::{doorbell_port, BALLOON_CHANNEL, BLOCK_CHANNEL, CONSOLE_CHANNEL, SHARED_INFO_PENDING_OFFSET, UPCALL_VECTOR};
use pv_abi::layout::{BLOCK_RING_GPA, CONSOLE_RING_GPA, LOCAL_APIC_GPA, SHARED_INFO_GPA};
use pv_abi::ring::SharedPage;
use pv_abi::DeviceInfo;
use std::sync::{Arc, Mutex};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::boot::DeviceLayout;
use crate::kvm::KvmVm;
use crate::sandbox::ThreadKind;
use crate::trace::Tracer;
use console::ConsoleOutput;
use inline::{CopyingConsole, CopyingSink, InlineCopies, InlineDevice, InlineServed};

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
    /// A network identity no guest should be given.
    #[error("network device: MAC {0:02x?} is not locally administered unicast, or prefix /{1} is longer than 32")]
    NetConfig([u8; 6], u8),
}

/// The devices of one VM, with their backends.
pub struct Devices {
    console: Backend,
    block: Option<(Backend, u64, bool)>,
    balloon: Option<BalloonDevice>,
    /// The network device, once [`Devices::attach_net`] has attached it.
    net: Option<net::NetDevice>,
}

/// The balloon's backend and hv's handle on its state.
struct BalloonDevice {
    backend: Backend,
    state: SharedBalloonState,
}

/// What the balloon starts from: the frames a guest may give, the set of frames held
/// (empty for a new guest, a snapshot's for a restored one) and, for a new guest, the
/// target to write into the control block (a restored one's is in its RAM already).
pub struct BalloonPlan {
    /// The frames the guest may give.
    pub limits: BalloonLimits,
    /// The set of frames held and the counters.
    pub state: SharedBalloonState,
    /// The first target (pages of RAM to keep), or `None` to keep the one in RAM.
    pub target_pages: Option<u64>,
}

/// How the backends run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serving {
    /// Each on its own thread, woken by an ioeventfd (the normal way).
    Threads,
    /// On the vCPU thread, when the guest's doorbell write exits to hv (`hv run --record`).
    Inline,
    /// Not at all: the devices are announced to the guest, and a replay applies what the
    /// log says each did (`hv replay`). `block` is the recorded disk's size in sectors
    /// and whether it was read-only.
    Replayed {
        /// The recorded disk, if there was one.
        block: Option<(u64, bool)>,
    },
}

/// One device's backend.
enum Backend {
    Thread(BackendHandle),
    Inline(InlineDevice),
    /// No backend (a replay): the device's name and its ring page.
    Replayed(&'static str, GuestPage),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Thread(h) => h.name(),
            Backend::Inline(d) => d.backend.lock().unwrap_or_else(|p| p.into_inner()).name(),
            Backend::Replayed(name, _) => name,
        }
    }

    fn stats(&self) -> Option<BackendStats> {
        match self {
            Backend::Thread(h) => h.stats(),
            Backend::Inline(d) => Some(d.backend.lock().unwrap_or_else(|p| p.into_inner()).stats()),
            Backend::Replayed(..) => Some(BackendStats::default()),
        }
    }

    /// Where the ring stands once every published request is answered.
    ///
    /// A device served inline (record) or replayed answers every request at the doorbell
    /// exit that announced it, and publishes every answer: so at any exit boundary
    /// nothing is in flight, and its index is where its responses end. Nothing is served
    /// here (that would put a device's effect at an exit the guest did not make).
    fn drain(&self) -> Result<u32, DrainError> {
        match self {
            Backend::Thread(h) => h.drain(),
            Backend::Inline(d) => d.position(),
            Backend::Replayed(_, ring) => Ok(ring.load_u32(RSP_PROD_OFFSET)),
        }
    }
}

/// Where `rsp_prod` is in a ring page (`pv_abi::ring`'s header: `req_prod`, `req_event`,
/// `rsp_prod`, `rsp_event`, each a u32).
const RSP_PROD_OFFSET: usize = 8;

/// Where each device's ring stands: every index 0 for a new guest; for a snapshot, the
/// indices after draining (`Devices::drain`), which a restored VM's backends start from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RingPositions {
    /// The console ring's index.
    pub console: u32,
    /// The block ring's index (0 without a disk).
    pub block: u32,
    /// The balloon ring's index (0 without a balloon).
    pub balloon: u32,
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

/// Raises the upcall from the calling thread with `KVM_SIGNAL_MSI`: the same MSI the
/// routing table makes of an irqfd signal ([`msi_route`]), but delivered to the local
/// APIC before the ioctl returns, so that (called from the vCPU thread at an exit) the
/// guest takes it at the first instruction after the exit where it has interrupts on.
pub fn raise_upcall(machine: &KvmVm) -> Result<(), kvm_ioctls::Error> {
    let msi = kvm_msi { address_lo: LOCAL_APIC_GPA as u32, address_hi: 0, data: u32::from(UPCALL_VECTOR), ..Default::default() };
    machine.vm().signal_msi(msi).map(|_| ())
}

impl Devices {
    /// Creates the console (with `disk`, the block device; with `balloon`, the balloon)
    /// and their backends.
    #[allow(clippy::too_many_arguments)]
    pub fn attach(
        machine: &KvmVm,
        console_out: ConsoleOutput,
        disk: Option<DiskImage>,
        tracer: &Tracer,
        policy: NotifyPolicy,
        positions: RingPositions,
        seccomp: bool,
        balloon: Option<BalloonPlan>,
    ) -> Result<Devices, DeviceError> {
        Self::attach_serving(machine, console_out, disk, tracer, policy, positions, Serving::Threads, seccomp, balloon)
    }

    /// [`Devices::attach`], with the backends run as `serving` says (a recorded or
    /// replayed run always starts from boot: its rings from 0). With `seccomp`, each
    /// backend thread confines itself (`crate::sandbox`) before it serves its ring.
    /// The balloon (`balloon`) is served only by a thread: a recorded or replayed run
    /// has none (its boot-info page says so).
    #[allow(clippy::too_many_arguments)]
    pub fn attach_serving(
        machine: &KvmVm,
        console_out: ConsoleOutput,
        disk: Option<DiskImage>,
        tracer: &Tracer,
        policy: NotifyPolicy,
        positions: RingPositions,
        serving: Serving,
        seccomp: bool,
        balloon: Option<BalloonPlan>,
    ) -> Result<Devices, DeviceError> {
        match serving {
            Serving::Threads => {}
            Serving::Inline => return Self::attach_inline(machine, console_out, disk, tracer, policy),
            Serving::Replayed { block } => {
                let page = |ring| GuestPage::new(machine.ram().memory().clone(), ring);
                let block = match block {
                    Some((sectors, ro)) => Some((Backend::Replayed(backend_drivers::block::BlockBackend::NAME, page(BLOCK_RING)?), sectors, ro)),
                    None => None,
                };
                return Ok(Devices { console: Backend::Replayed(ConsoleBackend::NAME, page(CONSOLE_RING)?), block, balloon: None, net: None });
            }
        }
        let gsis = [FIRST_DEVICE_GSI, FIRST_DEVICE_GSI + 1, FIRST_DEVICE_GSI + 2];
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
        let balloon = match balloon {
            None => None,
            Some(plan) => {
                let ram = machine.ram();
                if let Some(pages) = plan.target_pages {
                    balloon::write_target(ram, pages).map_err(|_| BadPage { gpa: balloon::BALLOON_RING })?;
                }
                let page = GuestPage::new(ram.memory().clone(), balloon::BALLOON_RING)?;
                // Opened here, before the backend's thread confines itself; without it the
                // balloon works and only its RSS figures are missing.
                let rss = backend_drivers::balloon::RssProbe::open().ok();
                let backend = BalloonBackend::new(plan.limits, plan.state.clone(), HostMemory::new(ram.memory().clone()), page, rss);
                let confine = seccomp.then_some(ThreadKind::BalloonBackend);
                let handle = wire(machine, backend, balloon::BALLOON_RING, BALLOON_CHANNEL, gsis[2], tracer, policy, positions.balloon, confine)?;
                Some(BalloonDevice { backend: Backend::Thread(handle), state: plan.state })
            }
        };
        Ok(Devices { console: Backend::Thread(console), block: block.map(|(b, s, ro)| (Backend::Thread(b), s, ro)), balloon, net: None })
    }

    /// The devices of a recorded run: no ioeventfd, no irqfd, no thread; each ring is
    /// served by [`Devices::serve_doorbell`] on the vCPU thread.
    fn attach_inline(
        machine: &KvmVm,
        console_out: ConsoleOutput,
        disk: Option<DiskImage>,
        tracer: &Tracer,
        policy: NotifyPolicy,
    ) -> Result<Devices, DeviceError> {
        let copies = InlineCopies::default();
        let printer = CopyingConsole { out: console_out, copies: copies.clone() };
        let console = inline(machine, ConsoleBackend::new(Box::new(printer)), CONSOLE_RING, CONSOLE_CHANNEL, tracer, policy, copies)?;
        let block = match disk {
            None => None,
            Some(image) => {
                let (sectors, read_only) = (image.sectors(), image.read_only());
                let backend = block::backend(image, machine.ram());
                Some((inline(machine, backend, BLOCK_RING, BLOCK_CHANNEL, tracer, policy, InlineCopies::default())?, sectors, read_only))
            }
        };
        Ok(Devices { console, block, balloon: None, net: None })
    }

    /// Adds the network device on `port` (`net::NetDevice::attach`: after the others,
    /// whose interrupt routes it sets again with its own), its rings starting at `start`.
    #[allow(clippy::too_many_arguments)]
    pub fn attach_net(
        &mut self,
        machine: &KvmVm,
        port: Box<dyn backend_drivers::frame_port::FramePort>,
        config: net::NetConfig,
        start: backend_drivers::net::NetPositions,
        tracer: &Tracer,
        policy: NotifyPolicy,
        seccomp: bool,
    ) -> Result<(), DeviceError> {
        self.net = Some(net::NetDevice::attach(machine, port, config, start, tracer, policy, seccomp)?);
        Ok(())
    }

    /// Who the guest is on the network (`None`: it has no network device).
    pub fn net_config(&self) -> Option<net::NetConfig> {
        self.net.as_ref().map(net::NetDevice::config)
    }

    /// The network backend's counters now (`None`: no network device, or its thread ended).
    pub fn net_stats(&self) -> Option<backend_drivers::net::NetStats> {
        self.net.as_ref().and_then(net::NetDevice::stats)
    }

    /// A recorded run: the guest wrote doorbell `port`. Serves that device's ring now,
    /// on this thread, and says what it did; `None` if no inline device has that port.
    /// The caller raises the upcall if [`InlineServed::served`] asks for it.
    pub fn serve_doorbell(&self, port: u16) -> Option<InlineServed> {
        match self.device_at(port)? {
            Backend::Inline(d) => Some(d.serve()),
            Backend::Thread(_) | Backend::Replayed(..) => None,
        }
    }

    /// The device whose doorbell is `port`, if one is attached.
    fn device_at(&self, port: u16) -> Option<&Backend> {
        if port == doorbell_port(CONSOLE_CHANNEL) {
            return Some(&self.console);
        }
        match &self.block {
            Some((b, _, _)) if port == doorbell_port(BLOCK_CHANNEL) => Some(b),
            _ => None,
        }
    }

    /// The ring page of the device whose doorbell is `port` (record and replay hash the
    /// requests the guest published there before serving).
    pub fn ring_of(&self, port: u16) -> Option<PseudoPhys> {
        self.device_at(port)?;
        Some(if port == doorbell_port(CONSOLE_CHANNEL) { CONSOLE_RING } else { BLOCK_RING })
    }

    /// Where the devices are, for the boot-info page.
    pub fn layout(&self) -> DeviceLayout {
        let (block, block_sectors, block_flags) = match &self.block {
            Some((_, sectors, ro)) => (device_info(BLOCK_RING, BLOCK_CHANNEL), *sectors, if *ro { BlockFlags::READ_ONLY.bits() } else { 0 }),
            None => (DeviceInfo::ABSENT, 0, 0),
        };
        let balloon = if self.balloon.is_some() { device_info(balloon::BALLOON_RING, BALLOON_CHANNEL) } else { DeviceInfo::ABSENT };
        let net = self.net.as_ref().map(net::NetDevice::layout);
        DeviceLayout { console: device_info(CONSOLE_RING, CONSOLE_CHANNEL), block, block_sectors, block_flags, balloon, net }
    }

    /// The balloon's state (`None` without a balloon): a snapshot saves it, with the
    /// guest paused and the ring drained.
    pub fn balloon_state(&self) -> Option<backend_drivers::balloon::state::BalloonState> {
        let device = self.balloon.as_ref()?;
        Some(device.state.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// The balloon's figures (`None` without a balloon).
    pub fn balloon_report(&self, ram: &crate::memory::GuestRam) -> Option<balloon::BalloonReport> {
        self.balloon.as_ref().map(|d| balloon::report(ram, &d.state))
    }

    /// Sets the balloon's target to `pages` of RAM and tells the guest: the control
    /// block, then the channel's pending flag, then the upcall (`KVM_SIGNAL_MSI`, so
    /// call it on the vCPU thread). `Ok(false)` without a balloon.
    pub fn set_balloon_target(&self, machine: &KvmVm, pages: u64) -> Result<bool, String> {
        if self.balloon.is_none() {
            return Ok(false);
        }
        let ram = machine.ram();
        balloon::write_target(ram, pages).map_err(|e| e.to_string())?;
        let flag = PseudoPhys::new(SHARED_INFO_GPA + (SHARED_INFO_PENDING_OFFSET as u64) + u64::from(BALLOON_CHANNEL));
        ram.write(flag, &[1]).map_err(|e| e.to_string())?;
        raise_upcall(machine).map_err(|e| format!("KVM_SIGNAL_MSI failed: {e}"))?;
        Ok(true)
    }

    /// Every backend, console first.
    fn backends(&self) -> impl Iterator<Item = &Backend> {
        std::iter::once(&self.console).chain(self.block.as_ref().map(|(b, _, _)| b)).chain(self.balloon.as_ref().map(|d| &d.backend))
    }

    /// Lets the backends serve their rings.
    pub fn start(&self) {
        for backend in self.backends() {
            if let Backend::Thread(handle) = backend {
                handle.start();
            }
        }
        if let Some(net) = &self.net {
            net.start();
        }
    }

    /// Lets every backend serve what the guest has published and returns where the
    /// rings then stand. Call it with the guest paused, so nothing new arrives.
    pub fn drain(&self) -> Result<RingPositions, DrainError> {
        let console = self.console.drain()?;
        let block = self.block.as_ref().map(|(b, _, _)| b.drain()).transpose()?.unwrap_or(0);
        let balloon = self.balloon.as_ref().map(|d| d.backend.drain()).transpose()?.unwrap_or(0);
        Ok(RingPositions { console, block, balloon })
    }

    /// Drains the network device (`net::NetDevice::drain`), which then serves nothing
    /// until [`Devices::thaw`]; `None` without one. Call it with the guest paused.
    pub fn drain_net(&self) -> Result<Option<net::NetSaved>, DrainError> {
        self.net.as_ref().map(net::NetDevice::drain).transpose()
    }

    /// Lets a drained network device serve again (the others need nothing: they only
    /// act when the guest rings). Every job that drains calls it before the guest may run
    /// again here; a guest that has moved elsewhere needs no thaw.
    pub fn thaw(&self) {
        if let Some(net) = &self.net {
            net.thaw();
        }
    }

    /// How many requests each device's ring holds that its backend has not answered yet
    /// (`req_prod − rsp_prod`, read now from the ring page). The guest writes `req_prod`,
    /// so the figure is for display only (`hv top`), never trusted.
    pub fn ring_occupancy(&self, ram: &crate::memory::GuestRam) -> Vec<(&'static str, u32)> {
        let mut rings = vec![(self.console.name(), CONSOLE_RING)];
        if let Some((b, _, _)) = &self.block {
            rings.push((b.name(), BLOCK_RING));
        }
        rings
            .into_iter()
            .map(|(name, ring)| {
                // The header's first two u32s: req_prod at 0, rsp_prod at 8 (after req_event).
                let header = ram.read_u64(ring).unwrap_or(0);
                let rsp = ram.read_u64(PseudoPhys::new(ring.raw() + RSP_PROD_OFFSET as u64)).unwrap_or(0);
                (name, (header as u32).wrapping_sub(rsp as u32))
            })
            .collect()
    }

    /// The backends' counters now (`None` for a backend whose thread has ended), the
    /// network's two rings counted like the other devices' one each.
    pub fn stats_now(&self) -> DeviceStats {
        let mut stats: DeviceStats = self.backends().map(|h| (h.name(), h.stats().unwrap_or_default())).collect();
        if let Some(n) = self.net_stats() {
            stats.push((backend_drivers::net::TX_NAME, n.tx));
            stats.push((backend_drivers::net::RX_NAME, n.rx));
        }
        stats
    }

    /// Stops every backend thread and returns their counters (the network's rings among
    /// them) and, with a network device, its own final counters.
    pub fn stop(self) -> (DeviceStats, Option<backend_drivers::net::NetStats>) {
        let net = self.net.and_then(net::NetDevice::stop);
        let mut stats = Vec::new();
        let backends = std::iter::once(self.console).chain(self.block.map(|(b, _, _)| b)).chain(self.balloon.map(|d| d.backend));
        for backend in backends {
            let name = backend.name();
            let counters = match backend {
                Backend::Thread(handle) => handle.stop().unwrap_or_default(),
                other => other.stats().unwrap_or_default(),
            };
            stats.push((name, counters));
        }
        if let Some(n) = &net {
            stats.push((backend_drivers::net::TX_NAME, n.tx.clone()));
            stats.push((backend_drivers::net::RX_NAME, n.rx.clone()));
        }
        (stats, net)
    }
}

/// One device's inline backend: its ring page and a flag-only notifier; no eventfd.
fn inline<H: RequestHandler>(
    machine: &KvmVm,
    handler: H,
    ring: PseudoPhys,
    channel: u32,
    tracer: &Tracer,
    policy: NotifyPolicy,
    copies: InlineCopies,
) -> Result<Backend, DeviceError> {
    let memory = machine.ram().memory().clone();
    let ring_page = GuestPage::new(memory.clone(), ring)?;
    let notifier = GuestNotifier::flag_only(memory, SHARED_INFO, channel)?;
    let sink = Arc::new(CopyingSink { tracer: tracer.clone(), copies: copies.clone() });
    let backend = InlineBackend::new(handler, ring_page, notifier, sink, policy);
    Ok(Backend::Inline(InlineDevice { backend: Mutex::new(Box::new(backend)), copies }))
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
