//! KVM's dirty log: which pages the guest's own stores changed, read from any thread.
//!
//! A memory slot registered with `KVM_MEM_LOG_DIRTY_PAGES` makes KVM keep one bit per
//! page of the slot, set when the guest writes the page. To notice the first write after
//! each read, KVM write-protects the slot's pages in the translation it uses (EPT/NPT
//! entries, or its own shadow tables where the host has no EPT), takes the fault on the
//! first store, sets the bit and lets the store go on. `KVM_GET_DIRTY_LOG` returns a
//! slot's bitmap, clears it and write-protects the pages again, in one step, so a write
//! made while the log is read is either in this bitmap or in the next one.
//!
//! hv turns the log on only for the slots backed by **guest RAM and writable by the
//! guest**. The read-only page-table pool (shadow mode) is never in KVM's log: the guest
//! cannot store there, and hv's own writes to it are in vm-memory's record
//! (`crate::memory::dirty`). The shadow area is not guest memory at all: it is rebuilt
//! wherever the guest goes.
//!
//! The log is per *slot*, in the slot's machine order. Each slot is backed by RAM from a
//! known pseudo-physical offset ([`super::SlotMemory::Ram`]), so bit `i` of a slot's
//! bitmap is pseudo-physical frame `offset / 4 KiB + i`: that is how shadow mode's
//! scattered slots map back to the guest's frames.
//!
//! [`KvmDirtyLog`] is a small handle a migration thread holds while the vCPU runs (KVM
//! allows VM ioctls from any thread). It holds the VM file descriptor weakly: once the
//! VM is gone, reading fails instead of keeping a VM alive whose memory was unmapped.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use kvm_ioctls::VmFd;
use pv_abi::addr::PseudoFrame;

use crate::memory::dirty::DirtySet;

/// A slot KVM can log: guest RAM from pseudo-physical frame `first`, writable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoggedSlot {
    /// KVM's slot number.
    pub number: u32,
    /// The pseudo-physical frame at the slot's start.
    pub first: PseudoFrame,
    /// The slot's size in bytes.
    pub size: u64,
}

/// Why the dirty log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DirtyLogError {
    /// Logging is off (it is turned on with `KvmVm::set_dirty_logging`).
    #[error("KVM's dirty log is not on for this VM")]
    NotLogging,
    /// The VM no longer exists.
    #[error("the VM whose dirty log was asked for is gone")]
    VmGone,
    /// KVM_GET_DIRTY_LOG failed.
    #[error("KVM_GET_DIRTY_LOG on slot {slot} failed: {source}")]
    Ioctl {
        /// The slot.
        slot: u32,
        /// KVM's error.
        source: kvm_ioctls::Error,
    },
}

/// What the VM and the readers share, under one lock so that reading the log and
/// re-registering a slot (`KvmVm::forget_cached_translations`) never interleave.
pub(super) struct LogState {
    /// Whether the logged slots carry `KVM_MEM_LOG_DIRTY_PAGES` now.
    pub(super) on: bool,
    /// Bits KVM returned when a logged slot had to be deleted and added back (which
    /// throws its bitmap away): kept here for the next reader.
    pub(super) carried: DirtySet,
}

/// The VM's dirty log, readable from another thread. Cheap to clone.
#[derive(Clone)]
pub struct KvmDirtyLog {
    vm: Weak<VmFd>,
    slots: Arc<[LoggedSlot]>,
    state: Arc<Mutex<LogState>>,
}

impl KvmDirtyLog {
    pub(super) fn new(vm: &Arc<VmFd>, slots: Vec<LoggedSlot>, state: Arc<Mutex<LogState>>) -> Self {
        KvmDirtyLog { vm: Arc::downgrade(vm), slots: slots.into(), state }
    }

    /// The slots this log covers.
    pub fn slots(&self) -> &[LoggedSlot] {
        &self.slots
    }

    /// Adds to `into` every page the guest wrote since the last call (or since logging
    /// was turned on), and clears KVM's record of them.
    pub fn take(&self, into: &mut DirtySet) -> Result<(), DirtyLogError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !state.on {
            return Err(DirtyLogError::NotLogging);
        }
        let vm = self.vm.upgrade().ok_or(DirtyLogError::VmGone)?;
        for slot in self.slots.iter() {
            let bitmap = vm.get_dirty_log(slot.number, slot.size as usize).map_err(|source| DirtyLogError::Ioctl { slot: slot.number, source })?;
            into.add_bitmap(slot.first, &bitmap);
        }
        into.union_with(&state.carried);
        state.carried = DirtySet::new(state.carried.frames() * pv_abi::addr::PAGE_SIZE);
        Ok(())
    }
}
