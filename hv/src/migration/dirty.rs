//! "Which pages changed since I last asked?": both records of writes to guest RAM,
//! read together, in either memory mode.
//!
//! The guest's own stores are in KVM's dirty log (`crate::kvm::dirty_log`, per slot,
//! mapped back to pseudo-physical frames through each slot's RAM offset, so shadow
//! mode's scattered slots give the same frame numbers as ept mode's single one). What hv
//! and the device backends wrote is in vm-memory's bitmap (`crate::memory::dirty`):
//! KVM never sees those writes, and in shadow mode every write to the read-only
//! page-table pool is one of them. A page is dirty if either says so.
//!
//! The order matters for correctness, not just speed: the sender takes the dirty set
//! *first* and copies the pages *after*. A page written between the two is copied in
//! its new state and also reported again next time, so it is sent once more than
//! needed; the other order could copy an old page and forget it.

use backend_drivers::GuestMemory;

use crate::kvm::dirty_log::{DirtyLogError, KvmDirtyLog};
use crate::memory::dirty::{take_written_by_host, DirtySet};

/// Both dirty records of one VM, readable from the migration thread while it runs.
pub struct DirtyLog {
    kvm: KvmDirtyLog,
    memory: GuestMemory,
    ram_bytes: u64,
}

impl DirtyLog {
    /// The log over KVM's record `kvm` and vm-memory's record in `memory` (guest RAM of
    /// `ram_bytes`). KVM's logging must already be on (`KvmVm::set_dirty_logging`).
    pub fn new(kvm: KvmDirtyLog, memory: GuestMemory, ram_bytes: u64) -> Self {
        DirtyLog { kvm, memory, ram_bytes }
    }

    /// Every page dirtied since the last call (or since logging began), once each.
    pub fn since_last_call(&self) -> Result<DirtySet, DirtyLogError> {
        let mut set = DirtySet::new(self.ram_bytes);
        self.kvm.take(&mut set)?;
        take_written_by_host(&self.memory, &mut set);
        Ok(set)
    }
}
