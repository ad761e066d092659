//! A series of round trips summed up as `ping` does: the fastest, the median (p50), the
//! 90th percentile, the slowest, and how many there were.
//!
//! Percentiles here are *nearest-rank* on the sorted series: p is the smallest sample
//! that at least p % of the samples do not exceed, so every figure printed is a round
//! trip that really happened (no interpolation between two). With 20 samples p90 is the
//! 18th fastest. A round trip's distribution has a long tail on a loaded host (a thread
//! that waited for a CPU), which is why the median and p90 are the figures to read, not
//! the mean.

use serde::Serialize;

/// A summed-up series of round trips, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Latency {
    /// Round trips measured.
    pub count: usize,
    /// The fastest.
    pub min_ns: f64,
    /// The median (nearest rank).
    pub p50_ns: f64,
    /// The 90th percentile (nearest rank).
    pub p90_ns: f64,
    /// The slowest.
    pub max_ns: f64,
}

impl Latency {
    /// The summary of `samples` (nanoseconds), or `None` if there are none or one is not
    /// a finite, non-negative number (a parser let something through: say so, do not
    /// average it in).
    pub fn of(samples: &[f64]) -> Option<Latency> {
        if samples.is_empty() || samples.iter().any(|s| !s.is_finite() || *s < 0.0) {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Latency {
            count: sorted.len(),
            min_ns: sorted[0],
            p50_ns: nearest_rank(&sorted, 50),
            p90_ns: nearest_rank(&sorted, 90),
            max_ns: sorted[sorted.len() - 1],
        })
    }
}

/// The `percent`-th percentile of the non-empty, ascending `sorted` by nearest rank:
/// the sample at rank ⌈percent/100 × n⌉ (1-based).
pub fn nearest_rank(sorted: &[f64], percent: usize) -> f64 {
    let n = sorted.len();
    let rank = (percent.min(100) * n).div_ceil(100).max(1);
    sorted[rank.min(n) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_picks_a_real_sample() {
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(nearest_rank(&ten, 50), 5.0);
        assert_eq!(nearest_rank(&ten, 90), 9.0);
        assert_eq!(nearest_rank(&ten, 100), 10.0);
        assert_eq!(nearest_rank(&ten, 0), 1.0, "p0 is the fastest");
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(nearest_rank(&twenty, 90), 18.0, "p90 of 20 is the 18th");
        assert_eq!(nearest_rank(&[7.0], 50), 7.0);
        assert_eq!(nearest_rank(&[1.0, 2.0, 3.0], 50), 2.0);
        assert_eq!(nearest_rank(&[1.0, 2.0], 50), 1.0, "rank ceil(1.0) = 1");
    }

    #[test]
    fn a_summary_sorts_first() {
        let l = Latency::of(&[30.0, 10.0, 20.0, 40.0, 1000.0]).expect("samples");
        assert_eq!((l.count, l.min_ns, l.p50_ns, l.p90_ns, l.max_ns), (5, 10.0, 30.0, 1000.0, 1000.0));
    }

    #[test]
    fn no_samples_or_a_bad_one_is_no_summary() {
        assert_eq!(Latency::of(&[]), None);
        assert_eq!(Latency::of(&[1.0, f64::NAN]), None);
        assert_eq!(Latency::of(&[1.0, -2.0]), None);
        assert_eq!(Latency::of(&[f64::INFINITY]), None);
    }
}
