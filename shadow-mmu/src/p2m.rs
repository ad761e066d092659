//! The pseudo-physical-to-machine table: where each guest frame really is.
//!
//! The guest believes its RAM is frames `0..n`. The hypervisor may put them anywhere;
//! the p2m says where. It is deliberately *not* the identity in hv, so a missing
//! translation is a visible bug rather than a silent coincidence.

use pv_abi::addr::{MachineFrame, PseudoFrame};

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

    /// `frames` guest frames in order, placed at `machine_base` onwards but with the two
    /// halves swapped (blocks of `block` frames keep their order inside, so 2 MiB pages
    /// stay contiguous when `block` is a multiple of 512). Frames whose machine number
    /// would overflow are left out.
    pub fn swapped_halves(frames: u64, machine_base: MachineFrame, block: u64) -> Self {
        let half = (frames / 2) / block * block;
        let machine_of = (0..frames)
            .map_while(|f| machine_base.checked_add(if f < half { (frames - half) + f } else { f - half }))
            .collect();
        P2m { machine_of }
    }

    /// The guest's frame count.
    pub fn frames(&self) -> u64 {
        self.machine_of.len() as u64
    }

    /// Whether the guest has every frame of `first..first + count`.
    pub fn covers(&self, first: PseudoFrame, count: u64) -> bool {
        first.checked_add(count).is_some_and(|end| end.raw() <= self.frames())
    }

    /// Machine frame of guest frame `frame`, if the guest has it.
    pub fn machine_frame(&self, frame: PseudoFrame) -> Option<MachineFrame> {
        self.machine_of.get(usize::try_from(frame.raw()).ok()?).copied()
    }

    /// Whether the guest frames `first..first+count` sit contiguously in machine memory.
    pub fn contiguous(&self, first: PseudoFrame, count: u64) -> bool {
        let Some(base) = self.machine_frame(first) else { return false };
        (1..count).all(|i| {
            let frame = first.checked_add(i).and_then(|f| self.machine_frame(f));
            frame.is_some() && frame == base.checked_add(i)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swapped_halves_is_a_permutation_that_keeps_blocks_contiguous() {
        let p = P2m::swapped_halves(2048, MachineFrame::new(10_000), 512);
        let mut seen: Vec<u64> = (0..2048).map(|f| p.machine_frame(PseudoFrame::new(f)).unwrap().raw()).collect();
        assert_ne!(p.machine_frame(PseudoFrame::new(0)), Some(MachineFrame::new(10_000)), "not the identity (shifted)");
        seen.sort();
        assert_eq!(seen, (10_000..12_048).collect::<Vec<_>>());
        assert!(p.contiguous(PseudoFrame::new(0), 512) && p.contiguous(PseudoFrame::new(1536), 512));
        assert!(!p.contiguous(PseudoFrame::new(512), 1024), "the halves were swapped");
        assert_eq!(p.machine_frame(PseudoFrame::new(2048)), None);
    }

    #[test]
    fn hostile_frame_numbers_near_u64_max_are_not_covered() {
        let p = P2m::swapped_halves(2048, MachineFrame::new(10_000), 512);
        assert!(p.covers(PseudoFrame::new(2047), 1) && !p.covers(PseudoFrame::new(2047), 2));
        assert!(!p.covers(PseudoFrame::new(u64::MAX), 512));
        assert!(!p.contiguous(PseudoFrame::new(u64::MAX - 1), 512));
    }
}
