//! The pseudo-physical-to-machine table: where each guest frame really is.
//!
//! The guest believes its RAM is frames `0..n`. The hypervisor may put them anywhere;
//! the p2m says where. It is deliberately *not* the identity in hv, so a missing
//! translation is a visible bug rather than a silent coincidence.

use crate::addr::{GuestFrame, MachineFrame};

/// Pseudo-physical frame number → machine frame number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct P2m {
    machine_of: Vec<MachineFrame>,
}

impl P2m {
    /// A p2m from an explicit table: guest frame `i` is machine frame `machine_of[i]`.
    pub fn from_table(machine_of: Vec<MachineFrame>) -> Self {
        P2m { machine_of }
    }

    /// Guest frames in order, placed at `machine_base_frame` onwards but with the two
    /// halves swapped (blocks of `block` frames keep their order inside, so 2 MiB pages
    /// stay contiguous when `block` is a multiple of 512).
    pub fn swapped_halves(frames: u64, machine_base_frame: u64, block: u64) -> Self {
        let half = (frames / 2) / block * block;
        let machine_of = (0..frames)
            .map(|f| MachineFrame(if f < half { machine_base_frame + (frames - half) + f } else { machine_base_frame + (f - half) }))
            .collect();
        P2m { machine_of }
    }

    /// The guest's frame count.
    pub fn frames(&self) -> u64 {
        self.machine_of.len() as u64
    }

    /// Machine frame of guest frame `frame`, if the guest has it.
    pub fn machine_frame(&self, frame: GuestFrame) -> Option<MachineFrame> {
        self.machine_of.get(usize::try_from(frame.0).ok()?).copied()
    }

    /// Whether the guest frames `first..first+count` sit contiguously in machine memory.
    pub fn contiguous(&self, first: GuestFrame, count: u64) -> bool {
        let Some(base) = self.machine_frame(first) else { return false };
        (1..count).all(|i| self.machine_frame(GuestFrame(first.0 + i)) == Some(base.offset(i)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swapped_halves_is_a_permutation_that_keeps_blocks_contiguous() {
        let p = P2m::swapped_halves(2048, 10_000, 512);
        let mut seen: Vec<u64> = (0..2048).map(|f| p.machine_frame(GuestFrame(f)).unwrap().0).collect();
        assert_ne!(p.machine_frame(GuestFrame(0)), Some(MachineFrame(10_000)), "not the identity (shifted)");
        seen.sort();
        assert_eq!(seen, (10_000..12_048).collect::<Vec<_>>());
        assert!(p.contiguous(GuestFrame(0), 512) && p.contiguous(GuestFrame(1536), 512));
        assert!(!p.contiguous(GuestFrame(512), 1024), "the halves were swapped");
        assert_eq!(p.machine_frame(GuestFrame(2048)), None);
    }
}
