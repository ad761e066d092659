//! The guest's side of the grant table: handing out and taking back grants.
//!
//! The table is `GRANT_TABLE_FRAMES` frames of entries (`pv_abi::grant`); the kernel
//! hands over one `SharedPage` per frame, and entry `g` is in frame
//! `g / GRANT_ENTRIES_PER_FRAME`, so no page implementation has to reach past its own
//! 4 KiB (Xen's guests map their grant frames one by one too). To grant frame `f` the
//! frontend picks a free entry, writes `f`, and *then* writes the flags with release
//! ordering: a backend that sees the permission also sees the frame. Revoking clears the
//! flags. Entry 0 is never handed out, so a zero reference in a request always fails.
//!
//! ## One table, several frontends
//!
//! The guest has one grant table and several frontends (block, network) that need
//! entries. Each frontend owns its own [`GrantTableFront`], over a *range* of the
//! table's entries: [`GrantTableFront::new`] takes the whole table, and
//! [`GrantTableFront::split_off`] hands the top of its range to a second allocator, so
//! no entry ever has two owners and no frontend can revoke another's grant. Nothing is
//! shared at run time, so no lock is needed: the split happens once, at boot.

use pv_abi::addr::PseudoFrame;
use pv_abi::grant::{GrantRef, GRANT_ENTRIES, GRANT_ENTRIES_PER_FRAME, GRANT_ENTRY_SIZE, GRANT_FLAGS_OFFSET, GRANT_FRAME_OFFSET, GRANT_TABLE_FRAMES, GrantFlags};
use pv_abi::ring::SharedPage;

/// Words in the in-use bitmap: one bit per entry.
const BITMAP_WORDS: usize = GRANT_ENTRIES as usize / 64;
/// The table's frames, in order.
pub type GrantFrames<P> = [P; GRANT_TABLE_FRAMES as usize];

/// Every entry this allocator owns is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantTableFull;

impl core::fmt::Display for GrantTableFull {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("every grant entry this frontend owns is in use")
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
    frames: GrantFrames<P>,
    /// One bit per entry of the table: set if granted, and set for good for entry 0 and
    /// every entry outside `owned` (so the search never hands those out).
    in_use: [u64; BITMAP_WORDS],
    /// The entries this allocator owns.
    owned: core::ops::Range<GrantRef>,
    /// How many of them are granted: kept, not counted, since a count of the bitmap
    /// would visit up to 1023 entries in ring 0.
    granted: u32,
}

impl<P: SharedPage> GrantTableFront<P> {
    /// Takes over the table (its frames, in order) and revokes every entry.
    pub fn new(frames: GrantFrames<P>) -> Self {
        // Entry 0 is reserved: mark it used forever.
        let mut in_use = [0; BITMAP_WORDS];
        in_use[0] = 1;
        // Frame by frame, entry by entry: the shortest loop, as every instruction of it
        // may be emulated (1024 entries are a few milliseconds of boot there).
        for frame in &frames {
            for entry in 0..GRANT_ENTRIES_PER_FRAME as usize {
                frame.store_u32(entry * GRANT_ENTRY_SIZE + GRANT_FLAGS_OFFSET, 0);
            }
        }
        GrantTableFront { frames, in_use, owned: 1..GRANT_ENTRIES, granted: 0 }
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
        // The moved entries were all free, so this allocator's count stands.
        Ok(GrantTableFront { frames: self.frames.clone(), in_use: other, owned: moved, granted: 0 })
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

    /// Where entry `gref` (below `GRANT_ENTRIES`) is: its frame of the table, and its
    /// byte offset in that frame.
    fn entry(&self, gref: GrantRef) -> (&P, usize) {
        let frame = (gref / GRANT_ENTRIES_PER_FRAME) as usize;
        (&self.frames[frame], (gref % GRANT_ENTRIES_PER_FRAME) as usize * GRANT_ENTRY_SIZE)
    }

    /// Grants the backend access to `frame`; read-only if
    /// `read_only` (the backend may then only read it).
    pub fn grant(&mut self, frame: PseudoFrame, read_only: bool) -> Result<GrantRef, GrantTableFull> {
        // Search only the words that hold this allocator's entries (the rest are set
        // for good): the network's range is the table's top, and every word scanned is
        // paid for in ring 0.
        let words = self.owned.start as usize / 64..(self.owned.end as usize).div_ceil(64);
        let (word, bit) = self.in_use[words.clone()]
            .iter()
            .position(|w| *w != u64::MAX)
            .map(|i| (words.start + i, (!self.in_use[words.start + i]).trailing_zeros() as usize))
            .ok_or(GrantTableFull)?;
        self.in_use[word] |= 1 << bit;
        self.granted += 1;
        let gref = (word * 64 + bit) as GrantRef;
        let (page, entry) = self.entry(gref);
        // The entry's `frame` field is the frame number, little-endian (pv_abi::grant).
        page.write_bytes(entry + GRANT_FRAME_OFFSET, &frame.raw().to_le_bytes());
        let flags = (GrantFlags::PERMIT_ACCESS | if read_only { GrantFlags::READ_ONLY } else { GrantFlags::empty() }).bits();
        // Release: the frame above is visible before the permission is.
        page.store_u32(entry + GRANT_FLAGS_OFFSET, flags);
        Ok(gref)
    }

    /// Takes a grant back. References this allocator does not own (reserved, out of
    /// range, or another frontend's) are ignored.
    pub fn revoke(&mut self, gref: GrantRef) {
        if !self.owned.contains(&gref) {
            return;
        }
        let (page, entry) = self.entry(gref);
        page.store_u32(entry + GRANT_FLAGS_OFFSET, 0);
        if self.is_set(gref) {
            self.granted -= 1;
        }
        Self::set(&mut self.in_use, gref, false);
    }

    /// Number of grants currently given from this allocator's entries.
    pub fn granted(&self) -> u32 {
        self.granted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A page in a plain buffer, which two allocators can share (cloning shares the
    /// buffer; single-threaded tests).
    #[derive(Clone)]
    struct TestPage(Rc<RefCell<[u8; 4096]>>);
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

    /// The table's frames, every byte `fill`.
    fn frames(fill: u8) -> GrantFrames<TestPage> {
        core::array::from_fn(|_| TestPage(Rc::new(RefCell::new([fill; 4096]))))
    }

    /// Entry `gref` as the backend would read it: (flags, frame), from the frame and
    /// offset `pv_abi::grant` puts it at, computed here independently.
    fn entry(t: &GrantTableFront<TestPage>, gref: GrantRef) -> (u32, u64) {
        let page = &t.frames[gref as usize * GRANT_ENTRY_SIZE / 4096];
        let o = gref as usize * GRANT_ENTRY_SIZE % 4096;
        let mut frame = [0u8; 8];
        page.read_bytes(o + GRANT_FRAME_OFFSET, &mut frame);
        (page.load_u32(o + GRANT_FLAGS_OFFSET), u64::from_le_bytes(frame))
    }

    #[test]
    fn a_grant_writes_frame_and_flags_and_revoke_clears_them() {
        let mut t = GrantTableFront::new(frames(0xff));
        let g = t.grant(PseudoFrame::new(0x1234), true).unwrap();
        assert_ne!(g, 0, "entry 0 is never handed out");
        assert_eq!(entry(&t, g), ((GrantFlags::PERMIT_ACCESS | GrantFlags::READ_ONLY).bits(), 0x1234));
        t.revoke(g);
        assert_eq!(entry(&t, g).0, 0);
        assert_eq!(t.granted(), 0);
    }

    #[test]
    fn grants_past_the_first_frame_land_in_the_frame_that_holds_them() {
        let mut t = GrantTableFront::new(frames(0));
        let refs: Vec<_> = (0..GRANT_ENTRIES - 1).map(|f| t.grant(PseudoFrame::new(u64::from(f) + 0x1000), false).unwrap()).collect();
        assert_eq!(refs, (1..GRANT_ENTRIES).collect::<Vec<_>>(), "handed out lowest first");
        // Every entry holds its own frame, in the frame of the table pv_abi puts it in;
        // entry 0 (the reserved one, first of frame 0) stays empty.
        assert_eq!(entry(&t, 0), (0, 0));
        for gref in [1, 255, 256, 511, 512, 767, 768, GRANT_ENTRIES - 1] {
            assert_eq!(entry(&t, gref), (GrantFlags::PERMIT_ACCESS.bits(), u64::from(gref) - 1 + 0x1000), "entry {gref}");
        }
        // Each frame of the table holds exactly 256 of them.
        for (i, page) in t.frames.iter().enumerate() {
            let permitted = (0..256).filter(|e| page.load_u32(e * GRANT_ENTRY_SIZE) != 0).count();
            assert_eq!(permitted, if i == 0 { 255 } else { 256 }, "frame {i}");
        }
    }

    #[test]
    fn a_split_table_gives_each_frontend_its_own_entries() {
        let mut block = GrantTableFront::new(frames(0));
        let mut net = block.split_off(64).unwrap();
        assert_eq!((block.entries(), net.entries()), (1..960, 960..1024));
        let from_block: Vec<_> = (0..959).map(|f| block.grant(PseudoFrame::new(f), false).unwrap()).collect();
        assert_eq!(block.grant(PseudoFrame::new(1), false), Err(GrantTableFull), "block's range is full");
        let from_net: Vec<_> = (0..64).map(|f| net.grant(PseudoFrame::new(f), true).unwrap()).collect();
        assert!(from_block.iter().all(|g| (1..960).contains(g)) && from_net.iter().all(|g| (960..1024).contains(g)));
        assert_eq!(net.grant(PseudoFrame::new(1), false), Err(GrantTableFull), "net's range is full");
        // One frontend cannot take back another's grant.
        block.revoke(from_net[0]);
        net.revoke(from_block[0]);
        assert_eq!((block.granted(), net.granted()), (959, 64));
        assert_ne!(entry(&net, from_net[0]).0, 0, "net's grant still stands");
        net.revoke(from_net[0]);
        assert_eq!(net.granted(), 63);
        assert_eq!(net.grant(PseudoFrame::new(7), false), Ok(from_net[0]));
    }

    #[test]
    fn the_block_device_keeps_32_requests_of_16_frames_beside_the_networks_64_entries() {
        let mut block = GrantTableFront::new(frames(0));
        let _net = block.split_off(64).unwrap();
        let refs: Vec<_> = (0..32 * 16).map(|f| block.grant(PseudoFrame::new(f), false).unwrap()).collect();
        assert_eq!(refs.len(), 512);
    }

    #[test]
    fn the_count_of_grants_matches_a_model_over_random_grants_and_revokes() {
        let mut block = GrantTableFront::new(frames(0));
        let mut net = block.split_off(64).unwrap();
        let mut model: [std::collections::BTreeSet<GrantRef>; 2] = Default::default();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for step in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let which = (x & 1) as usize;
            let t = if which == 0 { &mut block } else { &mut net };
            if x & 6 != 0 {
                match t.grant(PseudoFrame::new(step), false) {
                    Ok(g) => assert!(model[which].insert(g), "entry {g} handed out twice"),
                    Err(GrantTableFull) => assert_eq!(model[which].len(), t.entries().len()),
                }
            } else {
                // Any reference, owned or not, granted or not.
                let g = (x >> 8) as GrantRef % (GRANT_ENTRIES + 8);
                t.revoke(g);
                if t.entries().contains(&g) {
                    model[which].remove(&g);
                }
            }
            assert_eq!((block.granted(), net.granted()), (model[0].len() as u32, model[1].len() as u32), "step {step}");
        }
    }

    #[test]
    fn a_split_is_refused_if_it_would_take_everything_or_a_grant_in_use() {
        let mut t = GrantTableFront::new(frames(0));
        let usable = GRANT_ENTRIES - 1;
        assert_eq!(t.split_off(usable).err(), Some(GrantSplitError::TooMany { asked: usable, owned: usable }));
        let grants: Vec<_> = (0..usable).map(|f| t.grant(PseudoFrame::new(u64::from(f)), false).unwrap()).collect();
        assert_eq!(t.split_off(1).err(), Some(GrantSplitError::InUse));
        t.revoke(grants[usable as usize - 1]);
        assert_eq!(t.split_off(1).map(|n| n.entries()).ok(), Some(GRANT_ENTRIES - 1..GRANT_ENTRIES));
    }

    #[test]
    fn new_revokes_whatever_the_table_held() {
        let t = GrantTableFront::new(frames(0xff));
        assert!((0..GRANT_ENTRIES).all(|g| entry(&t, g).0 == 0));
    }

    #[test]
    fn the_table_runs_out_after_1023_grants_and_recovers_after_a_revoke() {
        let mut t = GrantTableFront::new(frames(0));
        let refs: Vec<_> = (0..GRANT_ENTRIES - 1).map(|f| t.grant(PseudoFrame::new(u64::from(f)), false).unwrap()).collect();
        assert_eq!(t.grant(PseudoFrame::new(9), false), Err(GrantTableFull));
        t.revoke(refs[700]);
        assert_eq!(t.grant(PseudoFrame::new(9), false), Ok(refs[700]));
        t.revoke(0);
        t.revoke(GRANT_ENTRIES);
        t.revoke(u32::MAX);
        assert_eq!(t.granted(), GRANT_ENTRIES - 1, "bogus revokes change nothing");
        t.revoke(refs[5]);
        t.revoke(refs[5]);
        assert_eq!(t.granted(), GRANT_ENTRIES - 2, "a second revoke of the same entry counts once");
    }
}
