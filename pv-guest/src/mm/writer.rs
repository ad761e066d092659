//! The one path by which the kernel changes a page-table entry.
//!
//! [`PageTableWriter::Direct`] stores each entry at once. [`PageTableWriter::Batched`]
//! queues entries and sends them in one `mmu_update` hypercall when the batch is full
//! or when [`PageTableWriter::flush`] is called. A caller that is about to *read*
//! through an entry it just wrote (walking into a new table) must flush first; the
//! address-space code does so.

use pv_abi::hypercall::MmuUpdate;
use pv_abi::paging::Pte;

use super::table::EntryAddr;
use crate::counters::{self, BATCHED_PT_WRITES, DIRECT_PT_WRITES};
use crate::hv::hypercall;

/// Entries one batch holds before it is sent.
pub const BATCH: usize = 64;

/// How page-table writes reach the tables.
// The batch is 1 KiB inline on purpose: the kernel has no heap to box it into, and there
// are only a few writers (one for tasks, a couple in the self-tests).
#[allow(clippy::large_enum_variant)]
pub enum PageTableWriter {
    /// One store per entry.
    Direct,
    /// Queued, sent with `mmu_update`.
    Batched {
        /// The queue.
        queue: [MmuUpdate; BATCH],
        /// Entries queued.
        len: usize,
        /// Hypercalls made so far.
        hypercalls: u64,
    },
}

impl PageTableWriter {
    /// A batching writer with an empty queue.
    pub const fn batched() -> Self {
        PageTableWriter::Batched { queue: [MmuUpdate { entry: 0, value: 0 }; BATCH], len: 0, hypercalls: 0 }
    }

    /// Writes (or queues) `pte` into `entry`.
    pub fn write(&mut self, entry: EntryAddr, pte: Pte) -> Result<(), super::MmuError> {
        match self {
            PageTableWriter::Direct => {
                counters::bump(&DIRECT_PT_WRITES);
                entry.store(pte);
                Ok(())
            }
            PageTableWriter::Batched { queue, len, .. } => {
                counters::bump(&BATCHED_PT_WRITES);
                queue[*len] = MmuUpdate { entry: entry.gpa().raw(), value: pte.raw() };
                *len += 1;
                if *len == BATCH {
                    self.flush()?;
                }
                Ok(())
            }
        }
    }

    /// Sends queued entries.
    pub fn flush(&mut self) -> Result<(), super::MmuError> {
        if let PageTableWriter::Batched { queue, len, hypercalls } = self {
            if *len > 0 {
                let count = *len;
                *len = 0;
                *hypercalls += 1;
                // SAFETY: the queue is filled only by `write`, from EntryAddrs: entries
                // of page tables, each with a value the direct writer could have stored.
                unsafe { hypercall::mmu_update(&queue[..count]) }.map_err(|_| super::MmuError::Refused)?;
            }
        }
        Ok(())
    }

    /// Reads an entry as it will be once queued writes are sent: a batched writer's
    /// latest queued value for `entry` wins over what the table holds now. (Without
    /// this, unmapping and mapping the same address in one batch would see the old
    /// entry still present.)
    pub fn read(&self, entry: EntryAddr) -> Pte {
        if let PageTableWriter::Batched { queue, len, .. } = self {
            if let Some(u) = queue[..*len].iter().rev().find(|u| u.entry == entry.gpa().raw()) {
                return Pte::from_raw(u.value);
            }
        }
        entry.load()
    }

    /// `mmu_update` hypercalls made (0 for the direct writer).
    pub fn hypercalls(&self) -> u64 {
        match self {
            PageTableWriter::Direct => 0,
            PageTableWriter::Batched { hypercalls, .. } => *hypercalls,
        }
    }
}
