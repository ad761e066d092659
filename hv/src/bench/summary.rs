//! Median and spread of repeated measurements.
//!
//! A benchmark repeats each measurement and reports the **median**: unlike the mean,
//! one repetition disturbed by the host (another process, an interrupt storm) cannot
//! drag it far. Next to it the **spread**, (max − min) / median, says how much the
//! repetitions disagreed: a ratio between two medians means little when their spreads
//! are larger than the difference.

use serde::Serialize;

/// Summary of repeated measurements of one quantity (all in the same unit).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// The middle value (the mean of the two middle values for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
    /// (max − min) / median, in percent (0 when the median is 0).
    pub spread_percent: f64,
    /// How many values.
    pub count: usize,
}

impl Summary {
    /// Summarises `values`; `None` if there are none or one is not a finite number.
    pub fn of(values: &[f64]) -> Option<Summary> {
        if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
        let (min, max) = (sorted[0], sorted[n - 1]);
        let spread_percent = if median == 0.0 { 0.0 } else { (max - min) / median.abs() * 100.0 };
        Some(Summary { median, min, max, spread_percent, count: n })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_count_takes_the_middle_value() {
        let s = Summary::of(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.count), (3.0, 1.0, 5.0, 3));
        assert!((s.spread_percent - 400.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn even_count_averages_the_two_middle_values() {
        assert_eq!(Summary::of(&[4.0, 1.0, 2.0, 10.0]).unwrap().median, 3.0);
    }

    #[test]
    fn one_outlier_does_not_move_the_median() {
        let s = Summary::of(&[100.0, 101.0, 99.0, 100.0, 10_000.0]).unwrap();
        assert_eq!(s.median, 100.0);
        assert_eq!(s.max, 10_000.0);
    }

    #[test]
    fn identical_values_have_no_spread() {
        let s = Summary::of(&[7.0; 4]).unwrap();
        assert_eq!((s.median, s.spread_percent), (7.0, 0.0));
    }

    #[test]
    fn zero_median_has_zero_spread_not_nan() {
        assert_eq!(Summary::of(&[0.0, 0.0, 0.0]).unwrap().spread_percent, 0.0);
    }

    #[test]
    fn empty_or_not_finite_is_refused() {
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[1.0, f64::NAN]).is_none());
        assert!(Summary::of(&[f64::INFINITY]).is_none());
    }
}
