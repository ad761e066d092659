//! The ring-3 network task: the kernel lends the network device to `pv-netd`, a
//! separately linked program carrying the whole TCP/IP stack, and runs it.
//!
//! Why: on a host that emulates guest ring 0 (see `crate::net`'s module doc for the
//! measurements), every instruction of a network stack in the kernel costs hundreds of
//! nanoseconds, while ring 3 runs natively. A user-level driver (the idea of Xen's
//! driver domains, of DPDK, of a microkernel's network server) moves the per-packet
//! work where it is cheap; the kernel keeps only what needs privilege:
//!
//! - the **grant table**: the kernel grants every buffer frame once, before the task
//!   starts (a grant can name any frame of the guest, so a task must never write the
//!   table); the task's frontend uses the references for good;
//! - the **mappings**: the two ring pages and the buffer frames are mapped into the task
//!   at the addresses `pv_user::handoff::net` fixes, with a read-only [`Handoff`] page
//!   saying what is where;
//! - the **doorbells**: the two ports are opened in the TSS's I/O permission bitmap while
//!   the task runs, so it notifies the backend with an `out` of its own, no system call.
//!
//! The task polls its receive ring in ring 3 (no upcall, so no emulated interrupt
//! entry), runs smoltcp, and writes its lines with the `write` system call. When it
//! exits it writes where it left the rings into a handback page (the rings' private
//! indices live with whoever drives them), and the kernel keeps that for the next holder
//! (`hv::drivers::LentNet`): another task, or its own stack. A task that exits without
//! writing it loses the device for the rest of the boot.
//!
//! What this does not protect: the task writes requests into the rings itself, so it
//! could name in a receive request any grant reference the kernel has made (a block
//! buffer's, while a read is in flight) instead of its own. The task is trusted like a
//! driver domain is; closing that would need a grant window per ring enforced by hv (an
//! IOMMU's job on real hardware).

use pv_abi::addr::{GuestVirt, PseudoFrame, PAGE_SHIFT};
use pv_user::handoff::net::{Handback, Handoff, NetHandover, NetTaskCommand, BUFFERS_VA, DEVICE_WINDOW_END, HANDBACK_MAGIC, HANDBACK_VA, HANDOFF_MAGIC, HANDOFF_VA, RINGS_VA, RX_BUFFERS, TX_BUFFERS};

use super::scheduler::{self, SpawnError, TaskExit};
use super::user_image::{ImageError, UserImage};
use crate::arch::gdt;
use crate::hv::drivers::{self, LentNet, NetParts, NetToLend};
use crate::mm::address_space::AddressSpace;
use crate::mm::writer::PageTableWriter;
use crate::mm::{frames, MmuError, PageSize, Protection};

/// `pv-netd`, built by this crate's build script before the kernel and embedded here.
static NETD_IMAGE: &[u8] = include_bytes!(env!("PV_NETD_ELF"));

/// The embedded program's ELF file (for the loader's self-tests).
pub fn image() -> &'static [u8] {
    NETD_IMAGE
}

/// The program's name in messages.
const NAME: &str = "pv-netd";

/// Why the task could not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetTaskError {
    /// hv gave this guest no network device.
    NoDevice,
    /// The kernel's own stack already drives the device in this boot (or it could not
    /// be set up at boot).
    DeviceInUse,
    /// A task earlier in this boot ended without saying where it left the rings: nobody
    /// can drive them again.
    Lost,
    /// No grant entry was left for a buffer.
    NoGrants,
    /// A doorbell port lies outside the TSS's I/O bitmap.
    PortNotOpenable,
    /// The embedded program is not a loadable image.
    Image(ImageError),
    /// No task slot, frame or page table.
    NoMemory,
}

/// Lends the network device to `pv-netd`, runs it with `command` and `args`, and says
/// how it ended.
pub fn run(info: &pv_abi::BootInfo, command: NetTaskCommand, args: [u64; 2]) -> Result<TaskExit, NetTaskError> {
    if info.net_tx.present == 0 || info.net_rx.present == 0 {
        return Err(NetTaskError::NoDevice);
    }
    let image = UserImage::parse(NETD_IMAGE, GuestVirt::new(HANDOFF_VA)..GuestVirt::new(DEVICE_WINDOW_END)).map_err(NetTaskError::Image)?;
    if drivers::net_lost() {
        return Err(NetTaskError::Lost);
    }
    let mut lent = match drivers::lend_net().ok_or(NetTaskError::DeviceInUse)? {
        NetToLend::Driven(lent) => lent,
        NetToLend::Fresh(parts) => grant_for_good(parts)?,
    };
    let handoff = handoff(info, &lent, command, args);
    let ports = [lent.parts.tx_doorbell_port, lent.parts.rx_doorbell_port];
    let Some(handback) = frames::alloc() else {
        drivers::keep_lent_net(lent);
        return Err(NetTaskError::NoMemory);
    };
    // SAFETY: the frame was just allocated and nothing else refers to it.
    unsafe { frames::bytes(handback) }.fill(0);
    // The ports first: a task that could not ring its doorbells must not be started.
    let opened = ports.iter().all(|&port| gdt::allow_user_port(port, true));
    let borrowed = GuestVirt::new(RINGS_VA)..GuestVirt::new(DEVICE_WINDOW_END);
    let spawned = if opened {
        scheduler::spawn_image(NAME, image.entry, [HANDOFF_VA, 0, 0], borrowed, |space, w| {
            image.load(space, w).map_err(NetTaskError::Image)?;
            map_device(space, w, &lent.parts, handback, &handoff).map_err(|_| NetTaskError::NoMemory)
        })
        .map_err(|e| match e {
            SpawnError::Mmu(_) => NetTaskError::NoMemory,
            SpawnError::Build(e) => e,
        })
    } else {
        Err(NetTaskError::PortNotOpenable)
    };
    let outcome = spawned.map(|slot| scheduler::run_all()[slot].unwrap_or(TaskExit::Exited(1)));
    close(ports);
    if outcome.is_ok() {
        // The task ran: the rings are where it says it left them, or nobody knows.
        lent.left = read_handback(handback);
        lent.lost = lent.left.is_none();
    }
    frames::free(handback);
    drivers::keep_lent_net(lent);
    outcome
}

/// Grants every buffer of a fresh device for good (the task never writes the grant table).
fn grant_for_good(mut parts: NetParts) -> Result<LentNet, NetTaskError> {
    let mut tx_grants = [0; TX_BUFFERS];
    let mut rx_grants = [0; RX_BUFFERS];
    for (i, buffer) in parts.tx.iter().enumerate() {
        tx_grants[i] = parts.grants.grant(buffer.frame, true).map_err(|_| NetTaskError::NoGrants)?;
    }
    for (i, buffer) in parts.rx.iter().enumerate() {
        rx_grants[i] = parts.grants.grant(buffer.frame, false).map_err(|_| NetTaskError::NoGrants)?;
    }
    Ok(LentNet { parts, tx_grants, rx_grants, left: None, lost: false })
}

/// Where the task says it left the rings, if it wrote a handback.
fn read_handback(frame: PseudoFrame) -> Option<NetHandover> {
    // SAFETY: the frame is the kernel's (lent to the task, which has ended); reading
    // bytes from it aliases nothing.
    let bytes = unsafe { frames::bytes(frame) };
    // SAFETY: Handback is repr(C) plain integers (any bytes are a value) and fits in the
    // page; read_unaligned needs no alignment.
    let back = unsafe { core::ptr::read_unaligned(bytes.as_ptr() as *const Handback) };
    (back.magic == HANDBACK_MAGIC).then_some(back.left)
}

/// Closes the doorbell ports to ring 3 again.
fn close(ports: [u16; 2]) {
    for port in ports {
        gdt::allow_user_port(port, false);
    }
}

/// The page the task reads first.
fn handoff(info: &pv_abi::BootInfo, lent: &LentNet, command: NetTaskCommand, args: [u64; 2]) -> Handoff {
    Handoff {
        magic: HANDOFF_MAGIC,
        command: command as u64,
        args,
        tsc_khz: info.tsc_khz,
        mac: info.net_mac,
        ipv4: info.net_ipv4,
        prefix_len: info.net_prefix_len,
        _pad: 0,
        tx_doorbell_port: lent.parts.tx_doorbell_port,
        rx_doorbell_port: lent.parts.rx_doorbell_port,
        _pad2: 0,
        tx_frames: core::array::from_fn(|i| lent.parts.tx[i].frame.raw()),
        rx_frames: core::array::from_fn(|i| lent.parts.rx[i].frame.raw()),
        tx_grants: lent.tx_grants,
        rx_grants: lent.rx_grants,
        resume: u32::from(lent.left.is_some()),
        _pad3: 0,
        left: lent.left.unwrap_or_default(),
    }
}

/// Maps the handoff page (a fresh frame, the task's), the two rings, the handback page
/// and every buffer (the kernel's, lent) into the task's space.
fn map_device(space: &mut AddressSpace, w: &mut PageTableWriter, parts: &NetParts, handback: PseudoFrame, handoff: &Handoff) -> Result<(), MmuError> {
    let page = frames::alloc().ok_or(MmuError::NoTables)?;
    // SAFETY: the frame was just allocated and nothing else refers to it.
    let bytes = unsafe { frames::bytes(page) };
    bytes.fill(0);
    // SAFETY: a frame is 4096 bytes, page-aligned, and Handoff (repr(C), align 8) fits
    // in it (checked at compile time in pv_user::handoff::net); the write is unaligned-safe anyway.
    unsafe { core::ptr::write_unaligned(bytes.as_mut_ptr() as *mut Handoff, *handoff) };
    space.map(w, GuestVirt::new(HANDOFF_VA), page, Protection::USER_READ_ONLY, PageSize::Small)?;
    let rings = [parts.tx_ring, parts.rx_ring];
    for (i, ring) in rings.iter().enumerate() {
        let frame = PseudoFrame::new(ring.raw() >> PAGE_SHIFT);
        space.map(w, GuestVirt::new(RINGS_VA + (i as u64) * 4096), frame, Protection::USER_DATA, PageSize::Small)?;
    }
    space.map(w, GuestVirt::new(HANDBACK_VA), handback, Protection::USER_DATA, PageSize::Small)?;
    let buffers = parts.tx.iter().chain(parts.rx.iter());
    for (i, buffer) in buffers.enumerate() {
        space.map(w, GuestVirt::new(BUFFERS_VA + (i as u64) * 4096), buffer.frame, Protection::USER_DATA, PageSize::Small)?;
    }
    w.flush()
}
