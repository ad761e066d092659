//! The pre-copy policy: when to stop copying while the guest runs.
//!
//! Clark et al. (NSDI'05, "Live Migration of Virtual Machines") copy memory in rounds
//! while the guest runs: round 0 everything, each later round what the guest dirtied
//! during the one before. If the guest dirties pages more slowly than the network sends
//! them, each round is shorter than the last and the dirty set shrinks; once it is small
//! enough that sending it with the guest paused takes no longer than the downtime one
//! accepts, the guest is paused and the rest sent (stop-and-copy). If the guest dirties
//! faster than the network sends (its *writable working set* is large and hot), the
//! rounds never shrink, and a round limit ends the loop: the remaining pages are sent
//! paused anyway, with a longer downtime. Both outcomes are decided by the two small
//! functions below, from figures measured in the same run.

use std::time::Duration;

/// The downtime sending `pages` pages of `page_bytes` each would take at
/// `bytes_per_second`. An unmeasured bandwidth (zero) predicts an unbounded downtime.
pub fn estimated_downtime(pages: u64, page_bytes: u64, bytes_per_second: f64) -> Duration {
    if pages == 0 {
        return Duration::ZERO;
    }
    if bytes_per_second <= 0.0 || !bytes_per_second.is_finite() {
        return Duration::MAX;
    }
    Duration::try_from_secs_f64(pages as f64 * page_bytes as f64 / bytes_per_second).unwrap_or(Duration::MAX)
}

/// What to do after a live round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextStep {
    /// Run another live round over the pages dirtied during this one.
    AnotherRound,
    /// Pause the guest and send the rest: the dirty set fits the downtime target.
    StopConverged,
    /// Pause the guest and send the rest although it does not fit: the round limit is
    /// reached (stop-and-copy).
    StopRoundLimit,
}

/// The stop condition, after live round `round` (0-based) left `estimated` downtime
/// for the pages still dirty; at most `max_rounds` live rounds are run.
pub fn next_step(round: u32, estimated: Duration, target: Duration, max_rounds: u32) -> NextStep {
    if estimated <= target {
        NextStep::StopConverged
    } else if round + 1 >= max_rounds {
        NextStep::StopRoundLimit
    } else {
        NextStep::AnotherRound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_pages_over_bandwidth() {
        assert_eq!(estimated_downtime(0, 4096, 0.0), Duration::ZERO);
        assert_eq!(estimated_downtime(1000, 4096, 4096e3), Duration::from_secs(1));
        assert_eq!(estimated_downtime(1, 4096, 0.0), Duration::MAX);
    }

    #[test]
    fn rounds_stop_when_the_rest_fits_or_the_limit_is_reached() {
        let ms = Duration::from_millis;
        assert_eq!(next_step(0, ms(3), ms(5), 30), NextStep::StopConverged);
        assert_eq!(next_step(0, ms(30), ms(5), 30), NextStep::AnotherRound);
        assert_eq!(next_step(29, ms(30), ms(5), 30), NextStep::StopRoundLimit);
        assert_eq!(next_step(0, ms(30), ms(5), 1), NextStep::StopRoundLimit);
    }
}
