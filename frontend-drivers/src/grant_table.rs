//! The guest's side of the grant table: handing out and taking back grants.
//!
//! The table is one page of entries (`pv_abi::grant`). To grant frame `f` the frontend
//! picks a free entry, writes `f`, and *then* writes the flags with release ordering:
//! a backend that sees the permission also sees the frame. Revoking clears the flags.
//! Entry 0 is never handed out, so a zero reference in a request always fails.

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

/// The guest's grant table.
pub struct GrantTableFront<P: SharedPage> {
    page: P,
    in_use: [u64; BITMAP_WORDS],
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
        GrantTableFront { page, in_use }
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

    /// Takes a grant back. Unknown or reserved references are ignored.
    pub fn revoke(&mut self, gref: GrantRef) {
        if gref == 0 || gref >= GRANT_ENTRIES {
            return;
        }
        self.page.store_u32(Self::offset(gref) + GRANT_FLAGS_OFFSET, 0);
        self.in_use[gref as usize / 64] &= !(1 << (gref % 64));
    }

    /// Number of grants currently given.
    pub fn granted(&self) -> u32 {
        self.in_use.iter().map(|w| w.count_ones()).sum::<u32>() - 1
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
