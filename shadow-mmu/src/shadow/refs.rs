//! Which shadow tables exist, and the reference counts that say when one may go.
//!
//! There is at most one shadow per (guest table, level), so a guest table reached from
//! several places (the kernel half of every address space) is shadowed once, and a
//! shadow table may be pointed at by many shadow entries. Each such entry is one
//! reference, and so is the root cache's hold on a PML4's shadow. When the last
//! reference goes, nothing can reach the table any more: it is forgotten, its frame
//! retired ([`ShadowFrames::retire`]), and its own entries release the tables below,
//! so a whole subtree goes at once.

use std::collections::{HashMap, HashSet};

use pv_abi::addr::{MachineFrame, PseudoFrame};
use pv_abi::paging::{Pte, ROOT_LEVEL};

use super::frames::ShadowFrames;
use super::ENTRIES;
use crate::memory::MachineMemory;

/// One shadow table: which guest table it shadows, at which level, and how many
/// references keep it alive.
#[derive(Clone, Copy, Debug)]
struct ShadowTable {
    guest: PseudoFrame,
    level: u32,
    refs: u32,
}

/// Every live shadow table, found either way: from the guest table it shadows, or from
/// its own frame.
#[derive(Clone, Debug, Default)]
pub(super) struct ShadowTables {
    /// (guest table frame, level) → its shadow's machine frame. This is the reverse map
    /// a trapped write needs: from the guest table written to every shadow of it.
    shadows: HashMap<(PseudoFrame, u32), MachineFrame>,
    /// Shadow machine frame → what it shadows.
    tables: HashMap<MachineFrame, ShadowTable>,
}

impl ShadowTables {
    /// The shadow of guest table `guest` at `level`, if there is one.
    pub(super) fn shadow(&self, guest: PseudoFrame, level: u32) -> Option<MachineFrame> {
        self.shadows.get(&(guest, level)).copied()
    }

    /// Records a new shadow table, with no references yet.
    pub(super) fn insert(&mut self, guest: PseudoFrame, level: u32, shadow: MachineFrame) {
        self.shadows.insert((guest, level), shadow);
        self.tables.insert(shadow, ShadowTable { guest, level, refs: 0 });
    }

    /// Shadow tables alive now.
    pub(super) fn len(&self) -> usize {
        self.tables.len()
    }

    /// Forgets every table (their frames are reset by the caller).
    pub(super) fn clear(&mut self) {
        self.shadows.clear();
        self.tables.clear();
    }

    /// One more reference to `shadow`.
    pub(super) fn add_ref(&mut self, shadow: MachineFrame) {
        if let Some(t) = self.tables.get_mut(&shadow) {
            t.refs += 1;
        }
    }

    /// A shadow entry `old` at `level` was overwritten: drop its reference to the lower
    /// shadow table it pointed at, if any. Returns how many tables were freed.
    pub(super) fn release_child(&mut self, mem: &mut dyn MachineMemory, frames: &mut ShadowFrames, old: Pte, level: u32) -> u64 {
        if points_at_table(old, level) {
            return self.release(mem, frames, old.machine_frame());
        }
        0
    }

    /// Drops one reference to shadow table `shadow`; at zero it is freed, and with it
    /// its own references to the tables below. Returns how many tables were freed.
    pub(super) fn release(&mut self, mem: &mut dyn MachineMemory, frames: &mut ShadowFrames, shadow: MachineFrame) -> u64 {
        let Some(t) = self.tables.get_mut(&shadow) else { return 0 };
        t.refs = t.refs.saturating_sub(1);
        if t.refs > 0 {
            return 0;
        }
        let t = *t;
        self.tables.remove(&shadow);
        self.shadows.remove(&(t.guest, t.level));
        let mut freed = 1;
        for i in 0..ENTRIES {
            let e = mem.read_entry(shadow, i).unwrap_or(Pte::EMPTY);
            freed += self.release_child(mem, frames, e, t.level);
        }
        frames.retire(shadow);
        freed
    }

    /// Tables that no shadow PML4 in `roots` reaches (for tests: it must always be 0,
    /// or the reference counts are wrong and shadow memory leaks).
    pub(super) fn unreachable(&self, mem: &dyn MachineMemory, roots: impl Iterator<Item = PseudoFrame>) -> usize {
        let mut seen = HashSet::new();
        let mut stack: Vec<(MachineFrame, u32)> = roots.filter_map(|r| self.shadow(r, ROOT_LEVEL).map(|s| (s, ROOT_LEVEL))).collect();
        while let Some((frame, level)) = stack.pop() {
            if !seen.insert(frame) || level == 1 {
                continue;
            }
            for i in 0..ENTRIES {
                let e = mem.read_entry(frame, i).unwrap_or(Pte::EMPTY);
                if points_at_table(e, level) {
                    stack.push((e.machine_frame(), level - 1));
                }
            }
        }
        self.tables.len() - self.tables.keys().filter(|f| seen.contains(f)).count()
    }
}

/// Whether shadow entry `e` at `level` points at a lower shadow table (rather than
/// mapping a page, or being empty).
fn points_at_table(e: Pte, level: u32) -> bool {
    level > 1 && e.is_present() && !(level == 2 && e.is_large())
}
