//! The reference: what the shadow must say, worked out from scratch.
//!
//! [`reference_translate`] walks the guest's own tables (through the p2m, as the
//! hypervisor reads them), applies the same rules the engine applies, and gives the
//! machine address and permissions the CPU must see. [`shadow_translate`] walks the
//! shadow tables as the CPU would. The engine keeps its shadow up to date write by
//! write; the property test checks that the two always agree.

use pv_abi::addr::{GuestVirt, MachineAddr, MachineFrame, PseudoFrame, PseudoPhys, PAGE_SIZE};
use pv_abi::paging::{entry_span, table_index, Pte, PteFlags, ROOT_LEVEL};

use crate::memory::MachineMemory;
use crate::p2m::P2m;
use crate::rules::{device_frame, leaf_frames, ShadowConfig};

/// A translation with its effective permissions (AND of every level).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Where the byte is.
    pub machine: MachineAddr,
    /// Writes allowed.
    pub writable: bool,
    /// Ring 3 allowed.
    pub user: bool,
    /// Instruction fetch allowed.
    pub executable: bool,
}

/// The permissions of a walk so far: each level can only take rights away.
#[derive(Clone, Copy)]
struct Rights {
    writable: bool,
    user: bool,
    executable: bool,
}

impl Rights {
    const ALL: Rights = Rights { writable: true, user: true, executable: true };

    /// The rights left after passing through entry `e`.
    fn through(self, e: Pte) -> Rights {
        let flags = e.flags();
        Rights {
            writable: self.writable && flags.contains(PteFlags::WRITABLE),
            user: self.user && flags.contains(PteFlags::USER),
            executable: self.executable && !flags.contains(PteFlags::NO_EXECUTE),
        }
    }

    fn at(self, machine: MachineAddr) -> Translation {
        Translation { machine, writable: self.writable, user: self.user, executable: self.executable }
    }
}

/// `va`'s offset inside the page of `span` bytes (a power of two) that holds it.
fn offset_in_page(va: GuestVirt, span: u64) -> u64 {
    va.raw() & (span - 1)
}

/// Reads a guest table entry through the p2m.
pub fn read_guest_entry(mem: &dyn MachineMemory, p2m: &P2m, table_frame: PseudoFrame, index: usize) -> Option<Pte> {
    let machine = p2m.machine_frame(table_frame)?;
    mem.read_entry(machine, index).ok()
}

/// What the shadow must translate `va` to, for the guest tree rooted at `root`.
pub fn reference_translate(mem: &dyn MachineMemory, p2m: &P2m, config: &ShadowConfig, root: PseudoPhys, va: GuestVirt) -> Option<Translation> {
    let mut rights = Rights::ALL;
    let mut table = root.frame();
    for level in (1..=ROOT_LEVEL).rev() {
        let e = read_guest_entry(mem, p2m, table, table_index(va, level))?;
        if !e.is_present() || e.has_reserved_bits() || (level >= 3 && e.is_large()) {
            return None;
        }
        rights = rights.through(e);
        let large = level == 2 && e.is_large();
        if level > 1 && !large {
            table = e.pseudo_frame();
            if !config.pool.contains(&table) {
                return None;
            }
            continue;
        }
        let (first, count) = leaf_frames(e, large).ok()?;
        if let Some(device) = device_frame(config, first, large) {
            return Some(rights.at(device.checked_address()?.checked_add(offset_in_page(va, PAGE_SIZE))?));
        }
        if !p2m.contiguous(first, count) {
            return None;
        }
        if !config.pool_traps_writes && config.pool_overlaps(first, count) {
            rights.writable = false;
        }
        let page = p2m.machine_frame(first)?.checked_address()?;
        return Some(rights.at(page.checked_add(offset_in_page(va, entry_span(level)))?));
    }
    None
}

/// Walks shadow tables from `root` as the CPU would.
pub fn shadow_translate(mem: &dyn MachineMemory, root: MachineAddr, va: GuestVirt) -> Option<Translation> {
    let mut rights = Rights::ALL;
    let mut table: MachineFrame = root.frame();
    for level in (1..=ROOT_LEVEL).rev() {
        let e = mem.read_entry(table, table_index(va, level)).ok()?;
        if !e.is_present() {
            return None;
        }
        rights = rights.through(e);
        if level == 1 || (level == 2 && e.is_large()) {
            // The CPU takes a large page's base from the entry's address bits with the
            // bits below the page size ignored.
            let span = entry_span(level);
            let named = e.machine_frame().checked_address()?;
            let page = named.checked_sub(offset_in_page_of(named, span))?;
            return Some(rights.at(page.checked_add(offset_in_page(va, span))?));
        }
        table = e.machine_frame();
    }
    None
}

/// `addr`'s offset inside the page of `span` bytes (a power of two) that holds it.
fn offset_in_page_of(addr: MachineAddr, span: u64) -> u64 {
    addr.raw() & (span - 1)
}
