//! The one rule: what shadow entry a guest entry becomes.
//!
//! [`ShadowMmu::reflect`] is used both when a shadow table is built and when a trapped
//! write changes one guest entry, so the shadow is the same whichever way it was made.
//! A guest entry becomes:
//! - not present, if it is not present or is refused (each refusal a [`Refusal`] event:
//!   reserved bits, a 1 GiB page, a table outside the pool, a frame outside the guest, a
//!   misaligned or non-contiguous 2 MiB page);
//! - for a pointer to a lower table, a pointer to that table's shadow (built on demand),
//!   with the guest's permission bits;
//! - for a leaf, `p2m(frame)` with Accessed and Dirty already set and the guest's
//!   permission bits, except that a page-table frame is mapped read-only unless the
//!   pool's memory traps writes itself.

use pv_abi::paging::{Pte, PteFlags};

use super::{BuildError, ShadowMmu};
use crate::event::{Refusal, ShadowEvent};
use crate::memory::MachineMemory;
use crate::rules::{device_frame, leaf_frames};

/// The permission and caching bits a shadow entry copies from the guest's.
const COPIED: PteFlags = PteFlags::WRITABLE
    .union(PteFlags::USER)
    .union(PteFlags::WRITE_THROUGH)
    .union(PteFlags::CACHE_DISABLE)
    .union(PteFlags::NO_EXECUTE);
/// What every shadow leaf entry has: present, and Accessed and Dirty already set so the
/// CPU never writes them (see the crate's DESIGN).
const LEAF: PteFlags = PteFlags::PRESENT.union(PteFlags::ACCESSED).union(PteFlags::DIRTY);
/// What every shadow entry pointing at a lower shadow table has.
const LINK: PteFlags = PteFlags::PRESENT.union(PteFlags::ACCESSED);

impl ShadowMmu {
    /// The one rule: the shadow entry for guest entry `e` at `level`. An entry that
    /// points at a lower shadow table counts as a reference to it, so the caller must
    /// store what this returns.
    pub(super) fn reflect(&mut self, mem: &mut dyn MachineMemory, e: Pte, level: u32) -> Result<Pte, BuildError> {
        // LAB 4 BEGIN: reflect one guest entry: refuse reserved bits and 1 GiB pages, link a lower table (only one in the pool) to its shadow
        if !e.is_present() {
            return Ok(Pte::EMPTY);
        }
        if e.has_reserved_bits() {
            return self.refuse(e, level, Refusal::ReservedBits);
        }
        if level >= 3 && e.is_large() {
            return self.refuse(e, level, Refusal::HugePage);
        }
        let flags = e.flags();
        let large = level == 2 && e.is_large();
        if level > 1 && !large {
            let child = e.pseudo_frame();
            if !self.config.pool.contains(&child) {
                return self.refuse(e, level, Refusal::TableOutsidePool);
            }
            let shadow_child = self.shadow_of(mem, child, level - 1)?;
            self.tables.add_ref(shadow_child);
            return Ok(Pte::to_machine(shadow_child, LINK | (flags & COPIED)));
        }
        self.reflect_leaf(e, level, large)
        // LAB 4 STUB: let _ = (mem, e, level, LINK, COPIED, Self::refuse, Self::shadow_of, Self::reflect_leaf);
        // LAB 4 STUB: todo!("lab 4: reflect one guest entry (not present, reserved bits, 1 GiB page, a lower table outside the pool, else link or leaf): ShadowMmu::reflect")
        // LAB 4 END
    }

    /// The shadow entry for leaf `e` at `level` (a 4 KiB page, or a 2 MiB page if
    /// `large`): the machine frame the p2m gives, or a refusal.
    fn reflect_leaf(&mut self, e: Pte, level: u32, large: bool) -> Result<Pte, BuildError> {
        // LAB 4 BEGIN: reflect a leaf: only the guest's own frames (contiguous for 2 MiB), A and D preset, page tables read-only
        let (first, count) = match leaf_frames(e, large) {
            Ok(r) => r,
            Err(why) => return self.refuse(e, level, why),
        };
        let flags = e.flags();
        let global = flags & PteFlags::GLOBAL;
        if let Some(device) = device_frame(&self.config, first, large) {
            return Ok(Pte::to_machine(device, LEAF | global | (flags & COPIED)));
        }
        if !self.p2m.covers(first, count) {
            return self.refuse(e, level, Refusal::OutsideGuest);
        }
        if !self.p2m.contiguous(first, count) {
            return self.refuse(e, level, Refusal::NotContiguous);
        }
        let Some(machine) = self.p2m.machine_frame(first) else {
            return self.refuse(e, level, Refusal::OutsideGuest);
        };
        let mut bits = flags & COPIED;
        if !self.config.pool_traps_writes && bits.contains(PteFlags::WRITABLE) && self.config.pool_overlaps(first, count) {
            bits.remove(PteFlags::WRITABLE);
            self.stats.write_protected += 1;
            self.events.push(ShadowEvent::WriteProtected { value: e });
        }
        let size = if large { PteFlags::LARGE } else { PteFlags::empty() };
        Ok(Pte::to_machine(machine, LEAF | size | global | bits))
        // LAB 4 STUB: let _ = (e, level, large, LEAF, leaf_frames, device_frame);
        // LAB 4 STUB: todo!("lab 4: reflect a leaf entry (the guest's own frames through the p2m, A and D preset, page-table frames read-only): ShadowMmu::reflect_leaf")
        // LAB 4 END
    }

    /// Refuses guest entry `e` at `level` for `why`: counted, reported as an event, and
    /// reflected as not present (so the guest faults on it and reaches nothing).
    fn refuse(&mut self, e: Pte, level: u32, why: Refusal) -> Result<Pte, BuildError> {
        self.stats.refused += 1;
        self.events.push(ShadowEvent::Refused { value: e, level, why });
        Ok(Pte::EMPTY)
    }
}
