//! Which pages of guest RAM were written: a set of pseudo-physical frames, and hv's own
//! record of the writes it (and the device backends) made.
//!
//! Live migration copies memory while the guest keeps writing it, so it must learn,
//! round after round, which pages changed since it last looked. Two parties write guest
//! RAM, and each is seen by a different record:
//!
//! - **the guest's vCPU**, whose stores go straight to memory: only KVM sees them, in
//!   its dirty log (`crate::kvm::dirty_log`);
//! - **hv and the backend threads**, which write through vm-memory (a trapped
//!   page-table write, a block read landing in a granted frame, a ring response): KVM
//!   never sees those, but vm-memory's bitmap (`backend_drivers::GuestMemory`, one bit
//!   per 4 KiB page) marks each one.
//!
//! [`DirtySet`] is the union both are read into, indexed by pseudo-physical frame
//! whatever the memory mode. [`take_written_by_host`] reads and clears vm-memory's half.

use backend_drivers::GuestMemory;
use pv_abi::addr::{PseudoFrame, PAGE_SIZE};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

/// Bits in one word of a bitmap (KVM's dirty log and vm-memory's use 64-bit words).
const WORD_BITS: u64 = u64::BITS as u64;

/// A set of pseudo-physical frames of a guest with a given number of frames: one bit
/// each. Frames outside the guest are never in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirtySet {
    words: Vec<u64>,
    frames: u64,
}

impl DirtySet {
    /// The empty set for a guest of `ram_bytes`.
    pub fn new(ram_bytes: u64) -> Self {
        let frames = ram_bytes / PAGE_SIZE;
        DirtySet { words: vec![0; frames.div_ceil(WORD_BITS) as usize], frames }
    }

    /// Every frame of the guest.
    pub fn full(ram_bytes: u64) -> Self {
        let mut set = DirtySet::new(ram_bytes);
        for f in 0..set.frames {
            set.insert(PseudoFrame::new(f));
        }
        set
    }

    /// How many frames the guest has (the set's universe).
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Adds `frame`; a frame outside the guest is ignored and `false` returned.
    pub fn insert(&mut self, frame: PseudoFrame) -> bool {
        let f = frame.raw();
        if f >= self.frames {
            return false;
        }
        self.words[(f / WORD_BITS) as usize] |= 1 << (f % WORD_BITS);
        true
    }

    /// Whether `frame` is in the set.
    pub fn contains(&self, frame: PseudoFrame) -> bool {
        let f = frame.raw();
        f < self.frames && self.words[(f / WORD_BITS) as usize] & (1 << (f % WORD_BITS)) != 0
    }

    /// Adds the frames a bitmap marks, bit `i` standing for frame `first + i` (the
    /// shape of KVM's log for one memory slot). Bits past the guest are ignored.
    pub fn add_bitmap(&mut self, first: PseudoFrame, bitmap: &[u64]) {
        for (w, word) in bitmap.iter().enumerate() {
            let mut bits = *word;
            while bits != 0 {
                let bit = u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                if let Some(frame) = first.checked_add(w as u64 * WORD_BITS + bit) {
                    self.insert(frame);
                }
            }
        }
    }

    /// Adds every frame of `other` (a set for the same guest).
    pub fn union_with(&mut self, other: &DirtySet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    /// How many frames are in the set.
    pub fn len(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// The frames, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = PseudoFrame> + '_ {
        self.words.iter().enumerate().flat_map(|(w, word)| {
            let mut bits = *word;
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let bit = u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                Some(PseudoFrame::new(w as u64 * WORD_BITS + bit))
            })
        })
    }
}

/// Adds to `into` every page hv or a backend wrote through vm-memory since the last
/// call, and clears vm-memory's record of them (atomically, word by word: a write made
/// while this runs is either taken now or left for the next call, never lost).
pub fn take_written_by_host(memory: &GuestMemory, into: &mut DirtySet) {
    for region in memory.iter() {
        // Guest RAM is one region from pseudo-physical 0, so its page index is the frame.
        let first = PseudoFrame::new(region.start_addr().0 / PAGE_SIZE);
        // (`GuestRegionMmap` derefs to its `MmapRegion`, whose `bitmap` is the whole map.)
        let bitmap = vm_memory::mmap::MmapRegion::bitmap(region);
        into.add_bitmap(first, &bitmap.get_and_reset());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::GuestRam;
    use pv_abi::addr::PseudoPhys;

    #[test]
    fn a_set_holds_each_frame_once_and_ignores_frames_past_the_guest() {
        let mut set = DirtySet::new(1 << 20); // 256 frames
        assert!(set.insert(PseudoFrame::new(3)) && set.insert(PseudoFrame::new(255)) && set.insert(PseudoFrame::new(3)));
        assert!(!set.insert(PseudoFrame::new(256)));
        assert_eq!(set.len(), 2);
        assert_eq!(set.iter().collect::<Vec<_>>(), [PseudoFrame::new(3), PseudoFrame::new(255)]);
        set.add_bitmap(PseudoFrame::new(192), &[0b101, u64::MAX]);
        assert_eq!(set.len(), 4, "frames 192 and 194 added, the second word lies past the guest");
        assert!(set.contains(PseudoFrame::new(194)) && !set.contains(PseudoFrame::new(193)));
        assert_eq!(DirtySet::full(1 << 20).len(), 256);
    }

    #[test]
    fn writes_through_guest_ram_are_taken_once() {
        let ram = GuestRam::new(1 << 20).unwrap();
        let mut set = DirtySet::new(ram.size());
        take_written_by_host(ram.memory(), &mut set);
        assert!(set.is_empty());
        ram.write_u64(PseudoPhys::new(0x5008), 1).unwrap();
        ram.write(PseudoPhys::new(0x7ffc), &[1; 8]).unwrap(); // straddles frames 7 and 8
        take_written_by_host(ram.memory(), &mut set);
        assert_eq!(set.iter().map(PseudoFrame::raw).collect::<Vec<_>>(), [5, 7, 8]);
        let mut again = DirtySet::new(ram.size());
        take_written_by_host(ram.memory(), &mut again);
        assert!(again.is_empty(), "taking clears the record");
    }
}
