//! The reference: what the shadow must say, worked out from scratch.
//!
//! [`reference_translate`] walks the guest's own tables (through the p2m, as the
//! hypervisor reads them), applies the same rules the engine applies, and gives the
//! machine address and permissions the CPU must see. [`shadow_translate`] walks the
//! shadow tables as the CPU would. The engine keeps its shadow up to date write by
//! write; the property test checks that the two always agree.

use crate::addr::{GuestFrame, GuestPhys, GuestVirt, Machine, PAGE_SIZE};
use crate::memory::MachineMemory;
use crate::p2m::P2m;
use crate::pte;
use crate::shadow::{device_frame, leaf_frames, ShadowConfig};

/// A translation with its effective permissions (AND of every level).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Where the byte is.
    pub machine: Machine,
    /// Writes allowed.
    pub writable: bool,
    /// Ring 3 allowed.
    pub user: bool,
    /// Instruction fetch allowed.
    pub executable: bool,
}

/// Reads a guest table entry through the p2m.
pub fn read_guest_entry(mem: &dyn MachineMemory, p2m: &P2m, table_frame: GuestFrame, index: u64) -> Option<u64> {
    let machine = p2m.machine_frame(table_frame)?;
    mem.read_u64(machine.entry(index)).ok()
}

/// What the shadow must translate `va` to, for the guest tree rooted at `root`.
pub fn reference_translate(mem: &dyn MachineMemory, p2m: &P2m, config: &ShadowConfig, root: GuestPhys, va: GuestVirt) -> Option<Translation> {
    let (mut writable, mut user, mut executable) = (true, true, true);
    let mut table = root.frame();
    for level in (1..=4).rev() {
        let e = read_guest_entry(mem, p2m, table, va.index(level))?;
        if !pte::present(e) || e & pte::RESERVED != 0 || (level >= 3 && e & pte::PS != 0) {
            return None;
        }
        writable &= e & pte::RW != 0;
        user &= e & pte::US != 0;
        executable &= e & pte::NX == 0;
        let large = level == 2 && e & pte::PS != 0;
        if level > 1 && !large {
            table = GuestPhys(pte::address(e)).frame();
            if !config.pool.contains(&table) {
                return None;
            }
            continue;
        }
        let (first, count) = leaf_frames(e, large).ok()?;
        if let Some(device) = device_frame(config, first, large) {
            return Some(Translation { machine: Machine(device.address().0 + (va.0 & (PAGE_SIZE - 1))), writable, user, executable });
        }
        if !p2m.contiguous(first, count) {
            return None;
        }
        if !config.pool_traps_writes && (first.0..first.0 + count).any(|f| config.pool.contains(&GuestFrame(f))) {
            writable = false;
        }
        let size = count * PAGE_SIZE;
        let machine = p2m.machine_frame(first)?.address().0 + (va.0 & (size - 1));
        return Some(Translation { machine: Machine(machine), writable, user, executable });
    }
    None
}

/// Walks shadow tables from `root` as the CPU would.
pub fn shadow_translate(mem: &dyn MachineMemory, root: Machine, va: GuestVirt) -> Option<Translation> {
    let (mut writable, mut user, mut executable) = (true, true, true);
    let mut table = root.0;
    for level in (1..=4).rev() {
        let e = mem.read_u64(Machine(table + va.index(level) * 8)).ok()?;
        if !pte::present(e) {
            return None;
        }
        writable &= e & pte::RW != 0;
        user &= e & pte::US != 0;
        executable &= e & pte::NX == 0;
        if level == 1 || (level == 2 && e & pte::PS != 0) {
            let size = if level == 2 { 512 * PAGE_SIZE } else { PAGE_SIZE };
            let machine = (pte::address(e) & !(size - 1)) + (va.0 & (size - 1));
            return Some(Translation { machine: Machine(machine), writable, user, executable });
        }
        table = pte::address(e);
    }
    None
}
