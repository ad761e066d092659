//! What the balloon backend keeps between requests: the set of frames the guest has
//! given (a bitmap, one bit per frame of RAM) and its counters.
//!
//! The set is the balloon's memory of the guest: a frame in it has no host memory
//! behind it, may not be given twice, and is the only kind of frame the guest may take
//! back. hv shares it with the backend thread (an `Arc<Mutex<_>>`) because it outlives
//! the thread: a snapshot saves it, a restore or a migration's destination starts from
//! it, and `--stats` reads it.

use serde::{Deserialize, Serialize};

/// The set of ballooned frames, one bit per frame of RAM.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameSet {
    words: Vec<u64>,
    frames: u64,
    len: u64,
}

impl FrameSet {
    /// An empty set for `frames` frames of RAM.
    pub fn new(frames: u64) -> Self {
        FrameSet { words: vec![0; frames.div_ceil(64) as usize], frames, len: 0 }
    }

    /// Frames of RAM the set covers.
    pub fn capacity(&self) -> u64 {
        self.frames
    }

    /// Frames in the set.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `frame` is in the set (a frame past the end is not).
    pub fn contains(&self, frame: u64) -> bool {
        frame < self.frames && self.words[(frame / 64) as usize] & (1 << (frame % 64)) != 0
    }

    /// Puts `frame` in the set; false if it was there already or is past the end.
    pub fn insert(&mut self, frame: u64) -> bool {
        if frame >= self.frames || self.contains(frame) {
            return false;
        }
        self.words[(frame / 64) as usize] |= 1 << (frame % 64);
        self.len += 1;
        true
    }

    /// Takes `frame` out of the set; false if it was not there.
    pub fn remove(&mut self, frame: u64) -> bool {
        if !self.contains(frame) {
            return false;
        }
        self.words[(frame / 64) as usize] &= !(1 << (frame % 64));
        self.len -= 1;
        true
    }

    /// The frames in the set, in order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.frames).filter(|&f| self.contains(f))
    }

    /// Checks a set read from a file (a snapshot): its length and bitmap agree.
    pub fn is_consistent(&self) -> bool {
        let bits: u64 = self.words.iter().map(|w| u64::from(w.count_ones())).sum();
        self.words.len() as u64 == self.frames.div_ceil(64) && bits == self.len && self.iter().count() as u64 == self.len
    }
}

/// The balloon's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalloonCounters {
    /// Frames given to the host (accepted inflates, summed).
    pub inflated: u64,
    /// Frames taken back (accepted deflates, summed).
    pub deflated: u64,
    /// Batches refused.
    pub refused: u64,
    /// Frames whose host memory could not be released (the host's own fault).
    pub release_errors: u64,
    /// Nanoseconds spent in `madvise` releasing frames, in all.
    pub release_ns: u64,
    /// hv's resident memory (KiB) just before the current inflation's first release (an
    /// inflation starts with the first inflate, or the first after a deflate); 0 if
    /// unknown.
    pub rss_before_kib: u64,
    /// hv's resident memory (KiB) right after the latest inflate; 0 if unknown.
    pub rss_after_kib: u64,
    /// The latest accepted batch was an inflate (so the next one continues an inflation).
    pub inflating: bool,
}

/// Everything the balloon keeps: which frames the host holds, and the counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalloonState {
    /// The frames the host holds.
    pub ballooned: FrameSet,
    /// The counters.
    pub counters: BalloonCounters,
}

impl BalloonState {
    /// An empty balloon for `frames` frames of RAM.
    pub fn new(frames: u64) -> Self {
        BalloonState { ballooned: FrameSet::new(frames), counters: BalloonCounters::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_set_counts_inserts_and_removes_once() {
        let mut s = FrameSet::new(100);
        assert!(s.insert(3) && s.insert(99));
        assert!(!s.insert(3), "twice");
        assert!(!s.insert(100), "past the end");
        assert_eq!(s.len(), 2);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![3, 99]);
        assert!(s.remove(3) && !s.remove(3) && !s.remove(1000));
        assert_eq!(s.len(), 1);
        assert!(s.is_consistent());
        let forged = FrameSet { len: 5, ..s.clone() };
        assert!(!forged.is_consistent());
    }
}
