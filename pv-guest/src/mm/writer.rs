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
                if enqueue(queue, len, entry, pte) {
                    self.flush()?;
                }
                Ok(())
            }
        }
    }

    /// Sends queued entries.
    pub fn flush(&mut self) -> Result<(), super::MmuError> {
        match self {
            PageTableWriter::Direct => Ok(()),
            PageTableWriter::Batched { queue, len, hypercalls } => send(queue, len, hypercalls),
        }
    }

    /// Reads an entry as it will be once queued writes are sent: a batched writer's
    /// latest queued value for `entry` wins over what the table holds now. (Without
    /// this, unmapping and mapping the same address in one batch would see the old
    /// entry still present.)
    pub fn read(&self, entry: EntryAddr) -> Pte {
        if let PageTableWriter::Batched { queue, len, .. } = self {
            if let Some(pte) = queued(&queue[..*len], entry) {
                return pte;
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

/// Puts the write of `pte` into `entry` at the end of the queue (`len` entries queued so
/// far); true when the queue is now full and must be sent before the next write.
fn enqueue(queue: &mut [MmuUpdate; BATCH], len: &mut usize, entry: EntryAddr, pte: Pte) -> bool {
    // LAB 5 BEGIN: queue one write; say whether the batch is now full
    queue[*len] = MmuUpdate { entry: entry.gpa().raw(), value: pte.raw() };
    *len += 1;
    *len == BATCH
    // LAB 5 STUB: let _ = (queue, len, entry, pte);
    // LAB 5 STUB: todo!("lab 5: queue the write (entry's guest-physical address, the PTE's raw value) and say whether the batch is full")
    // LAB 5 END
}

/// Sends the first `len` queued writes in ONE `mmu_update` hypercall (none when the
/// queue is empty), empties the queue and counts the hypercall. When this returns `Ok`,
/// every queued entry is in the tables (and, in shadow mode, in the shadows).
fn send(queue: &[MmuUpdate; BATCH], len: &mut usize, hypercalls: &mut u64) -> Result<(), super::MmuError> {
    // LAB 5 BEGIN: one hypercall for the whole queue, then an empty queue
    if *len > 0 {
        let count = *len;
        *len = 0;
        *hypercalls += 1;
        // SAFETY: the queue is filled only by `write`, from EntryAddrs: entries
        // of page tables, each with a value the direct writer could have stored.
        unsafe { crate::hv::hypercall::mmu_update(&queue[..count]) }.map_err(|_| super::MmuError::Refused)?;
    }
    Ok(())
    // LAB 5 STUB: let _ = (queue, len, hypercalls);
    // LAB 5 STUB: todo!("lab 5: send the queued writes in one mmu_update hypercall, empty the queue, count the hypercall")
    // LAB 5 END
}

/// The value the latest write to `entry` in `queued` will store, if any is queued (a
/// later write to the same entry replaces an earlier one when the batch is sent).
fn queued(queued: &[MmuUpdate], entry: EntryAddr) -> Option<Pte> {
    // LAB 5 BEGIN: the latest queued value for this entry
    queued.iter().rev().find(|u| u.entry == entry.gpa().raw()).map(|u| Pte::from_raw(u.value))
    // LAB 5 STUB: let _ = (queued, entry);
    // LAB 5 STUB: todo!("lab 5: find the latest queued write to this entry (a queued write wins over the table)")
    // LAB 5 END
}
