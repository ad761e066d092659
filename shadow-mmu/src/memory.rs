//! How the engine reaches memory: one small trait, so it works on the VMM's real guest
//! memory and on a plain vector in tests.

use crate::addr::Machine;

/// An access outside the memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("machine address {0:#x} is outside memory")]
pub struct MemoryError(pub u64);

/// Machine memory, 8 bytes at a time (page-table entries).
pub trait MachineMemory {
    /// Reads the u64 at `addr` (8-byte aligned).
    fn read_u64(&self, addr: Machine) -> Result<u64, MemoryError>;
    /// Writes the u64 at `addr` (8-byte aligned).
    fn write_u64(&mut self, addr: Machine, value: u64) -> Result<(), MemoryError>;
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
}

impl MachineMemory for VecMemory {
    fn read_u64(&self, addr: Machine) -> Result<u64, MemoryError> {
        self.words.get((addr.0 / 8) as usize).copied().filter(|_| addr.0.is_multiple_of(8)).ok_or(MemoryError(addr.0))
    }

    fn write_u64(&mut self, addr: Machine, value: u64) -> Result<(), MemoryError> {
        if !addr.0.is_multiple_of(8) {
            return Err(MemoryError(addr.0));
        }
        let w = self.words.get_mut((addr.0 / 8) as usize).ok_or(MemoryError(addr.0))?;
        *w = value;
        Ok(())
    }
}
