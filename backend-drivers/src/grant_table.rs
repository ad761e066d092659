//! The hypervisor's grant check: a backend's only way into guest memory.
//!
//! A backend is handed a [`GrantTable`], never guest memory itself. To touch a frame it
//! must present the grant reference from the request; [`GrantTable::check`] refuses a
//! reference of 0 or past the table's `GRANT_ENTRIES` (its `GRANT_TABLE_FRAMES` frames,
//! where hv put them: the guest cannot move the table), reads that entry from the
//! guest's grant table (once: the guest can change it at any moment),
//! checks it with `pv_abi::grant::check_grant`, and only then returns a
//! [`GrantedFrame`], through which the backend can copy into or out of exactly that one
//! frame, and only in the direction the grant allows.

use std::sync::atomic::Ordering;

use pv_abi::addr::{FrameRange, PseudoFrame, PseudoPhys, PAGE_SIZE};
use pv_abi::grant::{check_grant, GrantAccess, GrantProblem, GrantRef, GRANT_ENTRIES, GRANT_ENTRY_SIZE, GRANT_FLAGS_OFFSET, GRANT_FRAME_OFFSET};
use crate::GuestMemory;
use vm_memory::{Bytes};

use crate::guest_page::host_view;

/// The guest's grant table, as the hypervisor checks it.
#[derive(Clone)]
pub struct GrantTable {
    memory: GuestMemory,
    table: PseudoPhys,
    usable_frames: FrameRange<PseudoFrame>,
}

/// A frame a backend may use for the request at hand.
pub struct GrantedFrame<'a> {
    memory: &'a GuestMemory,
    gpa: PseudoPhys,
    access: GrantAccess,
}

/// A copy to or from a granted frame that it does not allow.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameAccessError {
    /// The range leaves the frame.
    #[error("{len} bytes at offset {offset} do not fit in a 4 KiB frame")]
    OutOfFrame {
        /// Offset asked for.
        offset: usize,
        /// Length asked for.
        len: usize,
    },
    /// A write through a read grant.
    #[error("the frame is granted for reading only")]
    NotWritable,
    /// The memory access itself failed (cannot happen for a checked frame).
    #[error("guest memory access failed")]
    Memory,
}

impl GrantTable {
    /// The table at `table`; grants may only name frames in `usable_frames`
    /// (`pv_abi::grant::grant_window`: the guest's RAM between the VMM's reserved area
    /// and the page-table pool).
    pub fn new(memory: GuestMemory, table: PseudoPhys, usable_frames: FrameRange<PseudoFrame>) -> Self {
        GrantTable { memory, table, usable_frames }
    }

    /// The address of the field at `field_offset` in entry `gref` (already known to be
    /// below `GRANT_ENTRIES`, so inside the table's frames).
    fn entry_field(&self, gref: GrantRef, field_offset: usize) -> Result<PseudoPhys, GrantProblem> {
        let offset = u64::from(gref) * GRANT_ENTRY_SIZE as u64 + field_offset as u64;
        self.table.checked_add(offset).ok_or(GrantProblem::OutOfRange)
    }

    /// Checks `gref` for `access` and returns the frame it grants.
    pub fn check(&self, gref: GrantRef, access: GrantAccess) -> Result<GrantedFrame<'_>, GrantProblem> {
        // The one bound on where an entry is read: the table's end. (Reference 0 is
        // refused by check_grant below, after the read, which is harmless: entry 0 is
        // inside the table.)
        if gref >= GRANT_ENTRIES {
            return Err(GrantProblem::OutOfRange);
        }
        // Flags first with Acquire, pairing with the frontend's Release store of the
        // flags after the frame: if we see "permitted", we see the frame written with it.
        let flags: u32 = self
            .memory
            .load(host_view(self.entry_field(gref, GRANT_FLAGS_OFFSET)?), Ordering::Acquire)
            .map_err(|_| GrantProblem::OutOfRange)?;
        let frame: u64 = self
            .memory
            .read_obj(host_view(self.entry_field(gref, GRANT_FRAME_OFFSET)?))
            .map_err(|_| GrantProblem::OutOfRange)?;
        let frame = check_grant(gref, flags, PseudoFrame::new(frame), access, self.usable_frames)?;
        // A frame inside the window has an address (the window ends below guest RAM's end).
        let gpa = frame.checked_address().ok_or(GrantProblem::BadFrame)?;
        Ok(GrantedFrame { memory: &self.memory, gpa, access })
    }
}

impl GrantedFrame<'_> {
    /// The frame's guest-physical address.
    pub fn gpa(&self) -> PseudoPhys {
        self.gpa
    }

    /// Where `len` bytes at `offset` in the frame start, if they stay inside it.
    fn range(&self, offset: usize, len: usize) -> Result<PseudoPhys, FrameAccessError> {
        let out_of_frame = FrameAccessError::OutOfFrame { offset, len };
        match offset.checked_add(len) {
            Some(end) if end <= PAGE_SIZE as usize => self.gpa.checked_add(offset as u64).ok_or(out_of_frame),
            _ => Err(out_of_frame),
        }
    }

    /// Copies from the frame (allowed for both read and write grants).
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), FrameAccessError> {
        let start = self.range(offset, buf.len())?;
        self.memory
            .read_slice(buf, host_view(start))
            .map_err(|_| FrameAccessError::Memory)
    }

    /// Copies into the frame (only for a write grant).
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<(), FrameAccessError> {
        if self.access != GrantAccess::Write {
            return Err(FrameAccessError::NotWritable);
        }
        let start = self.range(offset, data.len())?;
        self.memory
            .write_slice(data, host_view(start))
            .map_err(|_| FrameAccessError::Memory)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pv_abi::grant::{GrantFlags, GRANT_ENTRIES_PER_FRAME, GRANT_TABLE_BYTES};
    use vm_memory::GuestAddress;

    const GTF_PERMIT_ACCESS: u32 = GrantFlags::PERMIT_ACCESS.bits();
    const GTF_READONLY: u32 = GrantFlags::READ_ONLY.bits();

    const TABLE: u64 = 0x4000;

    fn setup() -> (GuestMemory, GrantTable) {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let table = GrantTable::new(mem.clone(), PseudoPhys::new(TABLE), FrameRange { start: PseudoFrame::new(16), end: PseudoFrame::new(256) });
        (mem, table)
    }

    fn grant(mem: &GuestMemory, gref: u32, frame: u64, flags: u32) {
        let e = TABLE + u64::from(gref) * 16;
        mem.write_obj(frame, GuestAddress(e + 8)).unwrap();
        mem.write_obj(flags, GuestAddress(e)).unwrap();
    }

    #[test]
    fn a_write_grant_allows_reading_and_writing_that_frame_only() {
        let (mem, table) = setup();
        grant(&mem, 3, 20, GTF_PERMIT_ACCESS);
        let f = table.check(3, GrantAccess::Write).unwrap();
        f.write(100, b"abc").unwrap();
        assert_eq!(mem.read_obj::<[u8; 3]>(GuestAddress(20 * 4096 + 100)).unwrap(), *b"abc");
        assert!(matches!(f.write(4095, b"ab"), Err(FrameAccessError::OutOfFrame { .. })), "cannot spill into the next frame");
        assert!(matches!(f.read(usize::MAX, &mut [0u8; 2]), Err(FrameAccessError::OutOfFrame { .. })));
    }

    #[test]
    fn hostile_write_through_a_read_grant_is_refused() {
        let (mem, table) = setup();
        grant(&mem, 4, 21, GTF_PERMIT_ACCESS | GTF_READONLY);
        assert_eq!(table.check(4, GrantAccess::Write).err(), Some(GrantProblem::ReadOnly));
        let f = table.check(4, GrantAccess::Read).unwrap();
        assert_eq!(f.write(0, b"x"), Err(FrameAccessError::NotWritable));
    }

    #[test]
    fn hostile_ungranted_revoked_and_out_of_range_references_are_refused() {
        let (mem, table) = setup();
        assert_eq!(table.check(5, GrantAccess::Read).err(), Some(GrantProblem::NotGranted));
        grant(&mem, 5, 22, GTF_PERMIT_ACCESS);
        assert!(table.check(5, GrantAccess::Read).is_ok());
        grant(&mem, 5, 22, 0); // revoked
        assert_eq!(table.check(5, GrantAccess::Read).err(), Some(GrantProblem::NotGranted));
        assert_eq!(table.check(GRANT_ENTRIES, GrantAccess::Read).err(), Some(GrantProblem::OutOfRange));
        assert_eq!(table.check(u32::MAX, GrantAccess::Read).err(), Some(GrantProblem::OutOfRange));
        assert_eq!(table.check(0, GrantAccess::Read).err(), Some(GrantProblem::OutOfRange));
    }

    #[test]
    fn hostile_references_at_the_tables_end_the_last_is_read_from_the_last_frame_the_next_is_refused() {
        let (mem, table) = setup();
        let last = GRANT_ENTRIES - 1;
        grant(&mem, last, 30, GTF_PERMIT_ACCESS);
        // Entry 1023 is the last 16 bytes of the table's fourth frame.
        assert_eq!(TABLE + u64::from(last) * 16 + 16, TABLE + GRANT_TABLE_BYTES);
        assert_eq!(table.check(last, GrantAccess::Write).map(|f| f.gpa()).ok(), Some(PseudoPhys::new(30 * 4096)));
        // The bytes just past the table look like a grant; the reference that would
        // read them is refused before anything is read.
        mem.write_obj(31u64, GuestAddress(TABLE + GRANT_TABLE_BYTES + 8)).unwrap();
        mem.write_obj(GTF_PERMIT_ACCESS, GuestAddress(TABLE + GRANT_TABLE_BYTES)).unwrap();
        assert_eq!(table.check(GRANT_ENTRIES, GrantAccess::Read).err(), Some(GrantProblem::OutOfRange));
        // An entry of each frame past the first is read from that frame.
        for gref in [GRANT_ENTRIES_PER_FRAME, 2 * GRANT_ENTRIES_PER_FRAME + 7, 3 * GRANT_ENTRIES_PER_FRAME] {
            assert_eq!(table.check(gref, GrantAccess::Read).err(), Some(GrantProblem::NotGranted), "entry {gref} is empty");
            grant(&mem, gref, 40, GTF_PERMIT_ACCESS | GTF_READONLY);
            assert_eq!(table.check(gref, GrantAccess::Read).map(|f| f.gpa()).ok(), Some(PseudoPhys::new(40 * 4096)), "entry {gref}");
        }
    }

    #[test]
    fn hostile_a_table_whose_end_is_past_memory_refuses_what_it_cannot_read() {
        // A table placed so that its last frame is not in memory: those entries cannot be
        // read, and are refused, not a panic.
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let top = PseudoPhys::new((1 << 20) - 4096);
        let table = GrantTable::new(mem.clone(), top, FrameRange { start: PseudoFrame::new(16), end: PseudoFrame::new(255) });
        mem.write_obj(20u64, GuestAddress(top.raw() + 16 + 8)).unwrap();
        mem.write_obj(GTF_PERMIT_ACCESS, GuestAddress(top.raw() + 16)).unwrap();
        assert!(table.check(1, GrantAccess::Read).is_ok());
        assert_eq!(table.check(GRANT_ENTRIES_PER_FRAME, GrantAccess::Read).err(), Some(GrantProblem::OutOfRange));
        assert_eq!(table.check(GRANT_ENTRIES - 1, GrantAccess::Read).err(), Some(GrantProblem::OutOfRange));
    }

    #[test]
    fn hostile_grants_of_reserved_or_nonexistent_frames_are_refused() {
        let (mem, table) = setup();
        grant(&mem, 6, 4, GTF_PERMIT_ACCESS); // inside the VMM's reserved area
        assert_eq!(table.check(6, GrantAccess::Read).err(), Some(GrantProblem::BadFrame));
        grant(&mem, 7, 1 << 40, GTF_PERMIT_ACCESS); // past the end of RAM
        assert_eq!(table.check(7, GrantAccess::Read).err(), Some(GrantProblem::BadFrame));
    }
}
