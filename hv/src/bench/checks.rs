//! What each workload's checksum must be, computed on the host.
//!
//! Every guest workload ends a repetition with a checksum of what it read (see
//! `pv-guest/src/commands/bench/programs.rs`). hv predicts that value independently and
//! refuses a repetition whose checksum differs: a benchmark that got faster by skipping
//! work, or by reading stale memory, fails instead of winning. The constants below must match
//! the guest's; a mismatch shows up at once as a failed check on every run.

/// Pages one `pt-update` round maps and unmaps.
pub const PT_UPDATE_PAGES_PER_ROUND: u64 = 16;
/// Pages an `aspace` child populates.
pub const ASPACE_PAGES: u64 = 8;
/// The seeds of the two `ctxswitch` tasks.
pub const PING_PONG_SEEDS: [u64; 2] = [1, 2];
/// The LCG the `ctxswitch` tasks advance once per round: state · a + c.
pub const LCG_MULTIPLIER: u64 = 6_364_136_223_846_793_005;
/// See [`LCG_MULTIPLIER`].
pub const LCG_INCREMENT: u64 = 1_442_695_040_888_963_407;
/// `tlb-miss` stores o · this at byte offset o of its working set.
pub const TLB_MISS_FILL_MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

/// `pt-update` with `ops` pages (a multiple of 16): each round r (counting down from
/// rounds to 1) reads 0 from each fresh page i, writes r + i, and reads that back.
pub fn pt_update(ops: u64) -> u64 {
    let rounds = ops / PT_UPDATE_PAGES_PER_ROUND;
    (1..=rounds).map(|r| (0..PT_UPDATE_PAGES_PER_ROUND).map(|i| r + i).sum::<u64>()).fold(0, u64::wrapping_add)
}

/// `pagefault` with `pages`: zeros, then the values 1..=pages written and read back.
pub fn pagefault(pages: u64) -> u64 {
    pages.wrapping_mul(pages.wrapping_add(1)) / 2
}

/// `aspace` with `spaces` children, each populating [`ASPACE_PAGES`] pages.
pub fn aspace(spaces: u64) -> u64 {
    spaces.wrapping_mul(pagefault(ASPACE_PAGES))
}

/// `ctxswitch` with `switches` (each task yields switches / 2 times): the sum of both
/// tasks' final LCG states.
pub fn ctxswitch(switches: u64) -> u64 {
    let rounds = switches / 2;
    PING_PONG_SEEDS
        .iter()
        .map(|&seed| (0..rounds).fold(seed, |s, _| s.wrapping_mul(LCG_MULTIPLIER).wrapping_add(LCG_INCREMENT)))
        .fold(0, u64::wrapping_add)
}

/// `hypercall` with `calls`: the number answered with 0.
pub fn hypercall(calls: u64) -> u64 {
    calls
}

/// What `ring0` reports: the iterations its loop counted down.
pub fn ring0_loop(iterations: u64) -> u64 {
    iterations
}

/// The word `tlb-miss` stores at byte offset `offset` of its working set.
pub fn tlb_fill_word(offset: u64) -> u64 {
    offset.wrapping_mul(TLB_MISS_FILL_MULTIPLIER)
}

/// The pointer chase of `tlb_walk.s`, replayed without memory: `steps` steps over a
/// working set of `bytes` (a power of two) from `seed`; returns the sum of words read.
pub fn tlb_walk(bytes: u64, steps: u64, seed: u64) -> u64 {
    let mask = bytes.wrapping_sub(8);
    let (mut x, mut sum) = (seed, 0u64);
    for _ in 0..steps {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let word = tlb_fill_word(x & mask);
        sum = sum.wrapping_add(word);
        x = x.wrapping_add(word);
    }
    sum
}

/// FNV-1a, 64-bit, as the guest's `blk-read-sum` computes it.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pt_update_matches_a_guest_run() {
        // From `hv run -- bench pt-update-direct 3 64`: check=0x280 for 4 rounds.
        assert_eq!(pt_update(64), 0x280);
        assert_eq!(pt_update(0), 0);
    }

    #[test]
    fn pagefault_and_aspace_match_guest_runs() {
        // `bench pagefault 3 64` printed check=0x820; `bench aspace 3 4` check=0x90.
        assert_eq!(pagefault(64), 0x820);
        assert_eq!(aspace(4), 0x90);
        assert_eq!(pagefault(0), 0);
    }

    #[test]
    fn ctxswitch_matches_a_guest_run() {
        // `bench ctxswitch 3 200` printed check=0x6b3c4f406656f5db.
        assert_eq!(ctxswitch(200), 0x6b3c_4f40_6656_f5db);
        assert_eq!(ctxswitch(0), 3);
    }

    #[test]
    fn tlb_walk_matches_guest_runs() {
        // `bench tlb-miss-4k 3 100000 16`: reps 0, 1, 2 (seeds 1, 2, 3).
        assert_eq!(tlb_walk(16 << 20, 100_000, 1), 0xdeea_cfff_2822_6e80);
        assert_eq!(tlb_walk(16 << 20, 100_000, 3), 0x9dee_25aa_3f02_18b0);
        assert_eq!(tlb_walk(16 << 20, 0, 1), 0);
    }

    #[test]
    fn fnv1a_of_known_strings() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
