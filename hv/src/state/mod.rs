//! A VM's whole state, taken out of the hypervisor: the idea behind snapshots, live
//! migration and time travel.
//!
//! The course notes' central claim about virtual machines is that a VM is a state
//! machine whose *entire* state the hypervisor holds. This module is that claim made
//! concrete: [`VmState`] is everything hv needs to continue a guest somewhere else or
//! later, and [`capture`] takes it from a paused VM at an exit boundary. Guest memory
//! travels next to it, as raw pages ([`memory_image`]): a snapshot file stores them
//! ([`snapshot_file`]), a migration streams them.
//!
//! What is *not* state is as instructive as what is:
//! - **Shadow page tables** are not saved. They are a cache hv derives from the guest's
//!   own tables; a restore rebuilds them from the guest's root. That is also why a state
//!   taken in one memory mode restores in the other: the guest's pseudo-physical memory
//!   is the same, only the translation (which is hv's business) changes.
//! - **The machine address in CR3** is not kept either: the guest's own root is.
//! - **The backend threads' private ring indices** are, after a drain: with the guest
//!   paused, each backend serves whatever was published, so the one index per ring left
//!   (`BackRing::idle_position`) is all the device state there is.
//! - **The disk's contents** are not: the image stays where it is, and a restore checks
//!   it is the same file (device, inode, size).
//!
//! | file | idea |
//! | --- | --- |
//! | [`memory_image`] | which pages are worth storing (the ones the guest ever wrote) |
//! | [`snapshot_file`] | the snapshot file: a checked header, the state, and a lazily mappable memory image |

pub mod memory_image;
pub mod snapshot_file;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use pv_abi::addr::{PseudoPhys, PAGE_SIZE};
use pv_abi::layout::{pt_pool, LARGE_PAGE_SIZE, MAX_MEM_MIB, MIN_MEM_MIB};
use pv_abi::MmuMode;
use serde::{Deserialize, Serialize};

use crate::devices::block::DiskConfig;
use crate::devices::RingPositions;
use crate::kvm::vcpu_state::{VcpuState, VcpuStateError, MAX_MSRS};
use crate::vcpu::control::ExitBoundary;

/// The top-level table's address bits in CR3 (bits 12..51; the low bits are flags).
const CR3_ROOT_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Everything of a VM but its memory and its disk's contents.
#[derive(Debug, Serialize, Deserialize)]
pub struct VmState {
    /// The memory mode it was taken in (`MmuMode` as its number).
    pub mmu: u32,
    /// Guest RAM in bytes.
    pub ram_bytes: u64,
    /// The guest's own top-level page table (pseudo-physical): what CR3 pointed at, in
    /// the guest's terms. Restoring in shadow mode builds its shadow; in ept mode CR3
    /// points at it directly.
    pub guest_root: u64,
    /// False if the guest was inside its CR3 section (see `vcpu::control`) when the
    /// state was taken: then it may only be restored in the same memory mode.
    pub cross_mode_safe: bool,
    /// The vCPU, as KVM holds it.
    pub vcpu: VcpuState,
    /// Each device's ring index, after draining.
    pub rings: RingPositions,
    /// The disk the guest had, if any.
    pub disk: Option<DiskIdentity>,
    /// Backends signalled the guest after every publish (`NotifyPolicy::Always`).
    pub notify_always: bool,
    /// The words the guest was started with (for `status`; the guest has them in memory).
    pub guest_args: Vec<String>,
    /// The balloon's set of frames held and its counters (`None`: the VM had no
    /// balloon). Its target, floor and size are in guest RAM (the ring page's control
    /// block); the frames it holds are not saved (`memory_image`).
    pub balloon: Option<backend_drivers::balloon::state::BalloonState>,
    /// The network device: the guest's address and MAC, and its rings' indices after the
    /// drain (`None`: the VM had no network device).
    pub net: Option<crate::devices::net::NetSaved>,
}

/// Which disk image a guest was using, precisely enough to refuse another one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskIdentity {
    /// Its path.
    pub path: PathBuf,
    /// Attached read-only.
    pub read_only: bool,
    /// Its size in bytes.
    pub bytes: u64,
    /// The file system's device number.
    pub device: u64,
    /// Its inode number.
    pub inode: u64,
    /// When its contents last changed (nanoseconds since the epoch): a disk written
    /// after the state was taken no longer matches the guest's memory (its caches, its
    /// idea of what it wrote). Also tells apart a new file that got the old inode number.
    pub modified_ns: i128,
}

impl DiskIdentity {
    /// The identity of the disk `config` names, now.
    pub fn of(config: &DiskConfig) -> std::io::Result<Self> {
        let meta = std::fs::metadata(&config.path)?;
        Ok(DiskIdentity {
            path: config.path.clone(),
            read_only: config.read_only,
            bytes: meta.len(),
            device: meta.dev(),
            inode: meta.ino(),
            modified_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        })
    }

    /// How `now` differs from this identity, if it does.
    pub fn mismatch(&self, now: &DiskIdentity) -> Option<String> {
        if (self.device, self.inode) != (now.device, now.inode) {
            Some(format!("{} is not the same file as when the state was taken (another inode)", self.path.display()))
        } else if self.bytes != now.bytes {
            Some(format!("{} is {} bytes now, {} when the state was taken", self.path.display(), now.bytes, self.bytes))
        } else if self.modified_ns != now.modified_ns {
            Some(format!(
                "{} was written (or replaced) after the state was taken, so it no longer matches the guest's memory",
                self.path.display()
            ))
        } else {
            None
        }
    }
}

/// Why a state could not be taken or used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A KVM call failed.
    #[error("reading the vCPU's state: {0}")]
    Vcpu(#[from] VcpuStateError),
    /// A device could not be drained.
    #[error("draining the devices: {0}")]
    Drain(#[from] backend_drivers::runner::DrainError),
    /// The shadow engine has no current root (the guest never loaded one).
    #[error("shadow mode has no current page-table root to save")]
    NoShadowRoot,
    /// The disk's identity could not be read.
    #[error("reading the disk's identity ({path}): {source}")]
    Disk {
        /// The image.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A saved state is inconsistent (a damaged or hostile file or stream).
    #[error("the saved state is invalid: {0}")]
    Invalid(String),
}

/// What the caller knows about the VM that the exit boundary does not.
pub struct CaptureInputs<'a> {
    /// The disk attached, if any.
    pub disk: Option<&'a DiskConfig>,
    /// The backends' notification policy is "always".
    pub notify_always: bool,
    /// The guest's words.
    pub guest_args: &'a [String],
}

/// Takes the state of the VM at this exit boundary: drains the devices (so no request
/// is half done), then reads the vCPU. Call it from a job that leaves the guest paused
/// (or stopped) until the state has been used, so that memory matches it. The network
/// device stays frozen after its drain, whether or not the capture succeeds: the job
/// calls `Devices::thaw` before the guest runs on here.
pub fn capture(boundary: &mut ExitBoundary, inputs: &CaptureInputs) -> Result<VmState, StateError> {
    let rings = boundary.devices.drain()?;
    let net = boundary.devices.drain_net()?;
    let regs = boundary.kvm.commit_registers().map_err(|source| VcpuStateError { what: "KVM_GET_REGS", source })?;
    let vcpu = VcpuState::capture(boundary.kvm.kvm(), boundary.kvm.vcpu(), regs)?;
    let (mmu, guest_root) = match boundary.shadow.as_deref() {
        Some(shadow) => (MmuMode::Shadow, shadow.guest_root().ok_or(StateError::NoShadowRoot)?),
        None => (MmuMode::Ept, PseudoPhys::new(vcpu.sregs.cr3 & CR3_ROOT_MASK)),
    };
    let disk = inputs
        .disk
        .map(|d| DiskIdentity::of(d).map_err(|source| StateError::Disk { path: d.path.clone(), source }))
        .transpose()?;
    Ok(VmState {
        mmu: mmu as u32,
        ram_bytes: boundary.kvm.ram().size(),
        guest_root: guest_root.raw(),
        cross_mode_safe: !boundary.in_cr3_section,
        vcpu,
        rings,
        disk,
        notify_always: inputs.notify_always,
        guest_args: inputs.guest_args.to_vec(),
        balloon: boundary.devices.balloon_state(),
        net,
    })
}

impl VmState {
    /// The memory mode it was taken in.
    pub fn mode(&self) -> Result<MmuMode, StateError> {
        MmuMode::from_u32(self.mmu).ok_or_else(|| StateError::Invalid(format!("unknown memory mode {}", self.mmu)))
    }

    /// The guest's root, checked: a page of the page-table pool, where hv's boot code
    /// and the guest keep every page table (a root elsewhere could make ept mode walk
    /// memory shadow mode would never have let it use as a table).
    pub fn checked_guest_root(&self) -> Result<PseudoPhys, StateError> {
        let root = PseudoPhys::new(self.guest_root);
        let pool = pt_pool(self.ram_bytes);
        if !root.is_aligned(PAGE_SIZE) || !pool.contains(&root) {
            return Err(StateError::Invalid(format!(
                "page-table root {:#x} is not a page of the page-table pool {:#x}..{:#x}",
                self.guest_root,
                pool.start.raw(),
                pool.end.raw()
            )));
        }
        Ok(root)
    }

    /// Checks what can be checked without KVM (KVM checks the vCPU's values itself).
    pub fn validate(&self) -> Result<(), StateError> {
        self.mode()?;
        check_ram_bytes(self.ram_bytes)?;
        self.checked_guest_root()?;
        if self.vcpu.msrs.len() > MAX_MSRS {
            return Err(StateError::Invalid(format!("{} MSRs (at most {MAX_MSRS})", self.vcpu.msrs.len())));
        }
        if self.guest_args.len() > 256 || self.guest_args.iter().any(|a| a.len() > 4096) {
            return Err(StateError::Invalid("implausible guest arguments".into()));
        }
        if let Some(disk) = &self.disk {
            if disk.path.as_os_str().is_empty() {
                return Err(StateError::Invalid("the disk has an empty path".into()));
            }
        }
        if let Some(net) = &self.net {
            net.config().map_err(StateError::Invalid)?;
        }
        if let Some(balloon) = &self.balloon {
            if balloon.ballooned.capacity() != self.ram_bytes / pv_abi::addr::PAGE_SIZE || !balloon.ballooned.is_consistent() {
                return Err(StateError::Invalid("the balloon's set of frames does not fit the RAM or is inconsistent".into()));
            }
        }
        Ok(())
    }
}

/// A RAM size hv could have run a guest with (`--mem`'s rule: whole MiB in range, a
/// multiple of the large-page size).
pub fn check_ram_bytes(bytes: u64) -> Result<(), StateError> {
    let ok = bytes.is_multiple_of(LARGE_PAGE_SIZE) && (MIN_MEM_MIB..=MAX_MEM_MIB).contains(&(bytes >> 20));
    if ok {
        Ok(())
    } else {
        Err(StateError::Invalid(format!("a RAM size of {bytes} bytes (hv runs {MIN_MEM_MIB}..={MAX_MEM_MIB} MiB in 2 MiB steps)")))
    }
}
