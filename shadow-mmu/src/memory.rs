//! How the engine reaches memory: one small trait, so it works on the VMM's real guest
//! memory and on a plain vector in tests.
//!
//! Everything the engine reads or writes is a page-table entry in a machine frame, so
//! besides the two word accessors an implementation writes, the trait offers entry
//! accessors ([`MachineMemory::read_entry`], [`MachineMemory::write_entry`]) that find
//! entry `index` of the table in a frame with pv-abi's checked frame arithmetic.

use pv_abi::addr::{MachineAddr, MachineFrame};
use pv_abi::paging::{Pte, ENTRY_SIZE};

/// An access the memory cannot make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    /// The address is not an 8-byte-aligned word of the memory.
    #[error("machine address {0:#x} is outside memory")]
    Outside(MachineAddr),
    /// A table entry that no table has: an index past 511, or a frame with no address.
    #[error("entry {index} of the table in machine frame {table:#x} does not exist")]
    NoSuchEntry {
        /// The table's frame.
        table: MachineFrame,
        /// The index asked for.
        index: usize,
    },
}

/// Machine memory, 8 bytes at a time (page-table entries).
pub trait MachineMemory {
    /// Reads the u64 at `addr` (8-byte aligned).
    fn read_u64(&self, addr: MachineAddr) -> Result<u64, MemoryError>;
    /// Writes the u64 at `addr` (8-byte aligned).
    fn write_u64(&mut self, addr: MachineAddr, value: u64) -> Result<(), MemoryError>;

    /// Reads entry `index` of the table in `table`.
    fn read_entry(&self, table: MachineFrame, index: usize) -> Result<Pte, MemoryError> {
        self.read_u64(entry_address(table, index)?).map(Pte::from_raw)
    }

    /// Writes entry `index` of the table in `table`.
    fn write_entry(&mut self, table: MachineFrame, index: usize, entry: Pte) -> Result<(), MemoryError> {
        self.write_u64(entry_address(table, index)?, entry.raw())
    }
}

/// The machine address of entry `index` of the table in `table`.
fn entry_address(table: MachineFrame, index: usize) -> Result<MachineAddr, MemoryError> {
    table.table_entry(index).ok_or(MemoryError::NoSuchEntry { table, index })
}

/// Machine memory in a vector of u64, for tests and simulations.
#[derive(Clone, Debug)]
pub struct VecMemory {
    words: Vec<u64>,
}

impl VecMemory {
    /// `frames` zeroed 4 KiB frames at machine address 0 onwards.
    pub fn new(frames: u64) -> Self {
        VecMemory { words: vec![0; (frames * 512) as usize] }
    }

    /// The index in `words` of the word at `addr`, if there is one.
    fn word(&self, addr: MachineAddr) -> Option<usize> {
        if !addr.is_aligned(ENTRY_SIZE) {
            return None;
        }
        usize::try_from(addr.raw() / ENTRY_SIZE).ok().filter(|w| *w < self.words.len())
    }
}

impl MachineMemory for VecMemory {
    fn read_u64(&self, addr: MachineAddr) -> Result<u64, MemoryError> {
        self.word(addr).map(|w| self.words[w]).ok_or(MemoryError::Outside(addr))
    }

    fn write_u64(&mut self, addr: MachineAddr, value: u64) -> Result<(), MemoryError> {
        let w = self.word(addr).ok_or(MemoryError::Outside(addr))?;
        self.words[w] = value;
        Ok(())
    }
}
