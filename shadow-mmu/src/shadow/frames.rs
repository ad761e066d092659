//! The shadow area's frame allocator.
//!
//! Shadow tables live in machine frames no guest mapping can reach (the shadow area).
//! A frame is taken fresh from the area, or reused after the table in it was freed. A
//! freed frame is not reusable at once: the CPU (or KVM's own shadow of our tables) may
//! still hold translations it read from it. So freed frames wait, *retired*, until the
//! area has no fresh frame left; then all of them become reusable together (a
//! *recycle*), and the engine asks its caller for one flush of everything cached from
//! the area. Doing that in bulk keeps flushes rare.

use std::ops::Range;

use pv_abi::addr::MachineFrame;
use pv_abi::paging::Pte;

use super::{BuildError, ENTRIES};
use crate::memory::MachineMemory;

/// Which frames of the shadow area are fresh, free, or retired.
#[derive(Clone, Debug)]
pub(super) struct ShadowFrames {
    area: Range<MachineFrame>,
    /// The first frame never handed out; every frame from here to the area's end is fresh.
    next_fresh: MachineFrame,
    /// Freed frames that may be reused now.
    free: Vec<MachineFrame>,
    /// Freed frames that may not be reused until the CPU has forgotten what it cached
    /// from them.
    retired: Vec<MachineFrame>,
}

impl ShadowFrames {
    /// Every frame of `area` fresh.
    pub(super) fn new(area: Range<MachineFrame>) -> Self {
        ShadowFrames { next_fresh: area.start, area, free: Vec::new(), retired: Vec::new() }
    }

    /// Whether the next allocation must first recycle the retired frames: nothing free,
    /// nothing fresh, but something retired.
    pub(super) fn recycle_due(&self) -> bool {
        self.free.is_empty() && self.next_fresh == self.area.end && !self.retired.is_empty()
    }

    /// Makes every retired frame reusable. The caller must have the CPU forget what it
    /// cached from the shadow area before the guest runs again.
    pub(super) fn recycle(&mut self) {
        self.free.append(&mut self.retired);
    }

    /// A zeroed frame for a new shadow table: a free one, else a fresh one.
    pub(super) fn alloc(&mut self, mem: &mut dyn MachineMemory) -> Result<MachineFrame, BuildError> {
        let frame = match self.free.pop() {
            Some(f) => f,
            None if self.next_fresh < self.area.end => {
                let frame = self.next_fresh;
                // frame < end, so frame + 1 <= end: no overflow.
                self.next_fresh = frame.checked_add(1).unwrap_or(self.area.end);
                frame
            }
            None => return Err(BuildError::AreaFull),
        };
        for i in 0..ENTRIES {
            if let Err(e) = mem.write_entry(frame, i, Pte::EMPTY) {
                // Not handed out after all; retired, since part of it may have changed.
                self.retire(frame);
                return Err(BuildError::Memory(e));
            }
        }
        Ok(frame)
    }

    /// The table in `frame` was freed: retire the frame.
    pub(super) fn retire(&mut self, frame: MachineFrame) {
        self.retired.push(frame);
    }

    /// Every frame fresh again (every shadow was dropped).
    pub(super) fn reset(&mut self) {
        self.free.clear();
        self.retired.clear();
        self.next_fresh = self.area.start;
    }
}
