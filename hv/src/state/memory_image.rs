//! Which pages of guest RAM a saved state must carry.
//!
//! A guest rarely uses all its RAM: a 64 MiB guest that booted and ran a few commands
//! has written perhaps a few MiB. A page it never wrote is still all zeros, and a
//! restored VM's RAM starts as zeros, so such a page need not be stored or sent.
//! [`stored_extents`] finds the pages that are not zero and groups neighbours into
//! [`PageExtent`]s (runs), the unit a snapshot file stores and a migration's round 0
//! sends. (Reading a never-touched page of anonymous memory costs no memory: the kernel
//! maps its shared zero page.)

use pv_abi::addr::{PseudoPhys, PAGE_SIZE};
use serde::{Deserialize, Serialize};

use crate::memory::GuestRam;

/// A run of consecutive pages of RAM, by page number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageExtent {
    /// The first page's number (pseudo-physical address / 4 KiB).
    pub first: u64,
    /// How many pages.
    pub count: u64,
}

impl PageExtent {
    /// The extent's first byte, in guest RAM.
    pub fn start(&self) -> PseudoPhys {
        PseudoPhys::new(self.first * PAGE_SIZE)
    }

    /// Its length in bytes.
    pub fn bytes(&self) -> u64 {
        self.count * PAGE_SIZE
    }
}

/// The runs of pages of `ram` that are not all zeros, in address order.
pub fn stored_extents(ram: &GuestRam) -> Vec<PageExtent> {
    stored_extents_except(ram, |_| false)
}

/// [`stored_extents`], leaving out the pages `skip` names: the balloon's frames, which
/// the guest gave away. (After a release of anonymous RAM they read as zeros and would
/// be left out anyway; after a release of RAM mapped from a snapshot file they read the
/// file's old bytes, which must not be saved again.)
pub fn stored_extents_except(ram: &GuestRam, skip: impl Fn(u64) -> bool) -> Vec<PageExtent> {
    let mut extents: Vec<PageExtent> = Vec::new();
    ram.for_each_nonzero_page(|number, _| {
        if skip(number) {
            return;
        }
        match extents.last_mut() {
            Some(last) if last.first + last.count == number => last.count += 1,
            _ => extents.push(PageExtent { first: number, count: 1 }),
        }
    });
    extents
}

/// Checks that `extents` are sorted, disjoint, non-empty and inside `ram_bytes` of RAM
/// (a saved state's extents come from a file or a stream: untrusted).
pub fn check_extents(extents: &[PageExtent], ram_bytes: u64) -> Result<(), String> {
    let pages = ram_bytes / PAGE_SIZE;
    let mut next_free = 0u64;
    for (i, e) in extents.iter().enumerate() {
        let end = e.first.checked_add(e.count).filter(|&end| e.count > 0 && end <= pages);
        match end {
            Some(end) if e.first >= next_free => next_free = end,
            Some(_) => return Err(format!("memory extent {i} (pages {}+{}) overlaps or is out of order", e.first, e.count)),
            None => return Err(format!("memory extent {i} (pages {}+{}) is empty or outside {pages} pages of RAM", e.first, e.count)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_written_pages_are_stored_in_runs() {
        let ram = GuestRam::new(8 << 20).unwrap();
        for page in [3u64, 4, 5, 9, 2047] {
            ram.write(PseudoPhys::new(page * PAGE_SIZE + 17), &[1]).unwrap();
        }
        let extents = stored_extents(&ram);
        assert_eq!(extents, vec![
            PageExtent { first: 3, count: 3 },
            PageExtent { first: 9, count: 1 },
            PageExtent { first: 2047, count: 1 },
        ]);
        assert!(check_extents(&extents, 8 << 20).is_ok());
    }

    #[test]
    fn hostile_extents_are_refused() {
        let ram = 8 << 20;
        let bad = |e: &[(u64, u64)]| {
            let e: Vec<PageExtent> = e.iter().map(|&(first, count)| PageExtent { first, count }).collect();
            check_extents(&e, ram).is_err()
        };
        assert!(bad(&[(0, 0)]), "empty");
        assert!(bad(&[(2047, 2)]), "past the end");
        assert!(bad(&[(u64::MAX, 2)]), "wraps");
        assert!(bad(&[(5, 2), (6, 1)]), "overlap");
        assert!(bad(&[(9, 1), (3, 1)]), "out of order");
        assert!(!bad(&[(0, 2048)]), "all of RAM is fine");
    }
}
