//! The guest's side of the grant table: handing out and taking back grants.
//!
//! The table is one page of entries (`pv_abi::grant`). To grant frame `f` the frontend
//! picks a free entry, writes `f`, and *then* writes the flags with release ordering:
//! a backend that sees the permission also sees the frame. Revoking clears the flags.
//! Entry 0 is never handed out, so a zero reference in a request always fails.
//!
//! ## One table, several frontends
//!
//! The guest has one grant table page and several frontends (block, network) that need
//! entries. Each frontend owns its own [`GrantTableFront`], over a *range* of the
//! table's entries: [`GrantTableFront::new`] takes the whole table, and
//! [`GrantTableFront::split_off`] hands the top of its range to a second allocator, so
//! no entry ever has two owners and no frontend can revoke another's grant. Nothing is
//! shared at run time, so no lock is needed: the split happens once, at boot.

use pv_abi::addr::PseudoFrame;
use pv_abi::grant::{GrantRef, GRANT_ENTRIES, GRANT_ENTRY_SIZE, GRANT_FLAGS_OFFSET, GRANT_FRAME_OFFSET, GrantFlags};
use pv_abi::ring::SharedPage;

/// Words in the in-use bitmap: one bit per entry.
const BITMAP_WORDS: usize = GRANT_ENTRIES as usize / 64;

/// Every entry is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantTableFull;

impl core::fmt::Display for GrantTableFull {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "every one of the grant table's {} usable entries is in use", GRANT_ENTRIES - 1)
    }
}

impl core::error::Error for GrantTableFull {}

/// A split that cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantSplitError {
    /// The allocator owns fewer entries than asked for (or would keep none).
    TooMany {
        /// Entries asked for.
        asked: u32,
        /// Entries owned.
        owned: u32,
    },
    /// An entry that would move is granted right now.
    InUse,
}

impl core::fmt::Display for GrantSplitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GrantSplitError::TooMany { asked, owned } => write!(f, "cannot hand {asked} grant entries over: this allocator owns {owned} and must keep one"),
            GrantSplitError::InUse => f.write_str("a grant entry that would be handed over is in use"),
        }
    }
}

impl core::error::Error for GrantSplitError {}

/// The guest's grant table, or the range of its entries one frontend owns.
pub struct GrantTableFront<P: SharedPage> {
    page: P,
    /// One bit per entry of the table: set if granted, and set for good for entry 0 and
    /// every entry outside `owned` (so the search never hands those out).
    in_use: [u64; BITMAP_WORDS],
    /// The entries this allocator owns.
    owned: core::ops::Range<GrantRef>,
}

impl<P: SharedPage> GrantTableFront<P> {
    /// Takes over the table page and revokes every entry.
    pub fn new(page: P) -> Self {
        for gref in 0..GRANT_ENTRIES {
            page.store_u32(Self::offset(gref) + GRANT_FLAGS_OFFSET, 0);
        }
        // Entry 0 is reserved: mark it used forever.
        let mut in_use = [0; BITMAP_WORDS];
        in_use[0] = 1;
        GrantTableFront { page, in_use, owned: 1..GRANT_ENTRIES }
    }

    /// Hands the top `entries` entries of this allocator's range to a new allocator on
    /// the same page (for another frontend). They must all be free; this one keeps at
    /// least one entry. Their grants were revoked when the table was taken over.
    pub fn split_off(&mut self, entries: GrantRef) -> Result<GrantTableFront<P>, GrantSplitError>
    where
        P: Clone,
    {
        let owned = self.owned.end - self.owned.start;
        if entries >= owned {
            return Err(GrantSplitError::TooMany { asked: entries, owned });
        }
        let moved = self.owned.end - entries..self.owned.end;
        if moved.clone().any(|gref| self.is_set(gref)) {
            return Err(GrantSplitError::InUse);
        }
        let mut other = [u64::MAX; BITMAP_WORDS];
        for gref in moved.clone() {
            Self::set(&mut self.in_use, gref, true);
            Self::set(&mut other, gref, false);
        }
        self.owned.end = moved.start;
        Ok(GrantTableFront { page: self.page.clone(), in_use: other, owned: moved })
    }

    /// The entries this allocator owns.
    pub fn entries(&self) -> core::ops::Range<GrantRef> {
        self.owned.clone()
    }

    fn is_set(&self, gref: GrantRef) -> bool {
        self.in_use[gref as usize / 64] & (1 << (gref % 64)) != 0
    }

    fn set(bitmap: &mut [u64; BITMAP_WORDS], gref: GrantRef, value: bool) {
        let (word, bit) = (gref as usize / 64, gref % 64);
        if value {
            bitmap[word] |= 1 << bit;
        } else {
            bitmap[word] &= !(1 << bit);
        }
    }

    fn offset(gref: GrantRef) -> usize {
        gref as usize * GRANT_ENTRY_SIZE
    }

    /// Grants the backend access to `frame`; read-only if
    /// `read_only` (the backend may then only read it).
    pub fn grant(&mut self, frame: PseudoFrame, read_only: bool) -> Result<GrantRef, GrantTableFull> {
        let (word, bit) = self
            .in_use
            .iter()
            .enumerate()
            .find(|(_, w)| **w != u64::MAX)
            .map(|(i, w)| (i, (!w).trailing_zeros() as usize))
            .ok_or(GrantTableFull)?;
        self.in_use[word] |= 1 << bit;
        let gref = (word * 64 + bit) as GrantRef;
        let entry = Self::offset(gref);
        // The entry's `frame` field is the frame number, little-endian (pv_abi::grant).
        self.page.write_bytes(entry + GRANT_FRAME_OFFSET, &frame.raw().to_le_bytes());
        let flags = (GrantFlags::PERMIT_ACCESS | if read_only { GrantFlags::READ_ONLY } else { GrantFlags::empty() }).bits();
        // Release: the frame above is visible before the permission is.
        self.page.store_u32(entry + GRANT_FLAGS_OFFSET, flags);
        Ok(gref)
    }

    /// Takes a grant back. References this allocator does not own (reserved, out of
    /// range, or another frontend's) are ignored.
    pub fn revoke(&mut self, gref: GrantRef) {
        if !self.owned.contains(&gref) {
            return;
        }
        self.page.store_u32(Self::offset(gref) + GRANT_FLAGS_OFFSET, 0);
        Self::set(&mut self.in_use, gref, false);
    }

    /// Number of grants currently given from this allocator's entries.
    pub fn granted(&self) -> u32 {
        self.owned.clone().filter(|gref| self.is_set(*gref)).count() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A page in a plain buffer (single-threaded tests).
    struct TestPage(RefCell<[u8; 4096]>);
    impl SharedPage for TestPage {
        fn load_u32(&self, o: usize) -> u32 {
            u32::from_le_bytes(self.0.borrow()[o..o + 4].try_into().unwrap())
        }
        fn store_u32(&self, o: usize, v: u32) {
            self.0.borrow_mut()[o..o + 4].copy_from_slice(&v.to_le_bytes());
        }
        fn read_bytes(&self, o: usize, buf: &mut [u8]) {
            buf.copy_from_slice(&self.0.borrow()[o..o + buf.len()]);
        }
        fn write_bytes(&self, o: usize, data: &[u8]) {
            self.0.borrow_mut()[o..o + data.len()].copy_from_slice(data);
        }
        fn full_fence(&self) {}
    }

    fn entry(t: &GrantTableFront<TestPage>, gref: GrantRef) -> (u32, u64) {
        let o = gref as usize * GRANT_ENTRY_SIZE;
        let mut frame = [0u8; 8];
        t.page.read_bytes(o + GRANT_FRAME_OFFSET, &mut frame);
        (t.page.load_u32(o + GRANT_FLAGS_OFFSET), u64::from_le_bytes(frame))
    }

    #[test]
    fn a_grant_writes_frame_and_flags_and_revoke_clears_them() {
        let mut t = GrantTableFront::new(TestPage(RefCell::new([0xff; 4096])));
        let g = t.grant(PseudoFrame::new(0x1234), true).unwrap();
        assert_ne!(g, 0, "entry 0 is never handed out");
        assert_eq!(entry(&t, g), ((GrantFlags::PERMIT_ACCESS | GrantFlags::READ_ONLY).bits(), 0x1234));
        t.revoke(g);
        assert_eq!(entry(&t, g).0, 0);
        assert_eq!(t.granted(), 0);
    }

    /// A page two allocators can share (cloning shares the buffer).
    #[derive(Clone)]
    struct SharedTestPage(std::rc::Rc<TestPage>);
    impl SharedPage for SharedTestPage {
        fn load_u32(&self, o: usize) -> u32 {
            self.0.load_u32(o)
        }
        fn store_u32(&self, o: usize, v: u32) {
            self.0.store_u32(o, v)
        }
        fn read_bytes(&self, o: usize, buf: &mut [u8]) {
            self.0.read_bytes(o, buf)
        }
        fn write_bytes(&self, o: usize, data: &[u8]) {
            self.0.write_bytes(o, data)
        }
        fn full_fence(&self) {}
    }

    #[test]
    fn a_split_table_gives_each_frontend_its_own_entries() {
        let mut block = GrantTableFront::new(SharedTestPage(std::rc::Rc::new(TestPage(RefCell::new([0; 4096])))));
        let mut net = block.split_off(64).unwrap();
        assert_eq!((block.entries(), net.entries()), (1..192, 192..256));
        let from_block: Vec<_> = (0..191).map(|f| block.grant(PseudoFrame::new(f), false).unwrap()).collect();
        assert_eq!(block.grant(PseudoFrame::new(1), false), Err(GrantTableFull), "block's range is full");
        let from_net: Vec<_> = (0..64).map(|f| net.grant(PseudoFrame::new(f), true).unwrap()).collect();
        assert!(from_block.iter().all(|g| (1..192).contains(g)) && from_net.iter().all(|g| (192..256).contains(g)));
        // One frontend cannot take back another's grant.
        block.revoke(from_net[0]);
        net.revoke(from_block[0]);
        assert_eq!((block.granted(), net.granted()), (191, 64));
        assert_ne!(net.page.load_u32(from_net[0] as usize * GRANT_ENTRY_SIZE), 0, "net's grant still stands");
        net.revoke(from_net[0]);
        assert_eq!(net.granted(), 63);
    }

    #[test]
    fn a_split_is_refused_if_it_would_take_everything_or_a_grant_in_use() {
        let mut t = GrantTableFront::new(SharedTestPage(std::rc::Rc::new(TestPage(RefCell::new([0; 4096])))));
        assert_eq!(t.split_off(255).err(), Some(GrantSplitError::TooMany { asked: 255, owned: 255 }));
        let grants: Vec<_> = (0..255).map(|f| t.grant(PseudoFrame::new(f), false).unwrap()).collect();
        assert_eq!(t.split_off(1).err(), Some(GrantSplitError::InUse));
        t.revoke(grants[254]);
        assert_eq!(t.split_off(1).map(|n| n.entries()).ok(), Some(255..256));
    }

    #[test]
    fn new_revokes_whatever_the_page_held() {
        let t = GrantTableFront::new(TestPage(RefCell::new([0xff; 4096])));
        assert!((0..GRANT_ENTRIES).all(|g| entry(&t, g).0 == 0));
    }

    #[test]
    fn the_table_runs_out_after_255_grants_and_recovers_after_a_revoke() {
        let mut t = GrantTableFront::new(TestPage(RefCell::new([0; 4096])));
        let refs: Vec<_> = (0..GRANT_ENTRIES - 1).map(|f| t.grant(PseudoFrame::new(u64::from(f)), false).unwrap()).collect();
        assert_eq!(t.grant(PseudoFrame::new(9), false), Err(GrantTableFull));
        t.revoke(refs[17]);
        assert_eq!(t.grant(PseudoFrame::new(9), false), Ok(refs[17]));
        t.revoke(0);
        t.revoke(u32::MAX);
        assert_eq!(t.granted(), GRANT_ENTRIES - 1, "bogus revokes change nothing");
    }
}
