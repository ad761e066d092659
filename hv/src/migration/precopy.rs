//! The pre-copy round loop and its stop condition: what to copy while the guest runs,
//! and when to stop.
//!
//! Clark et al. (NSDI'05, "Live Migration of Virtual Machines") copy memory in rounds
//! while the guest runs: round 0 everything, each later round what the guest dirtied
//! during the one before. If the guest dirties pages more slowly than the network sends
//! them, each round is shorter than the last and the dirty set shrinks; once it is small
//! enough that sending it with the guest paused takes no longer than the downtime one
//! accepts, the guest is paused and the rest sent (stop-and-copy). If the guest dirties
//! faster than the network sends (its *writable working set* is large and hot), the
//! rounds never shrink, and a round limit ends the loop: the remaining pages are sent
//! paused anyway, with a longer downtime.
//!
//! The loop ([`live_rounds`]) sees the world through two small traits, so it can be run
//! against a real connection and KVM's dirty log (`super::send`) or against a model of
//! a guest and a network (the lab's tests):
//! [`RoundSink`] sends a round's pages and says what it cost; [`DirtySource`] says which
//! pages were dirtied since it was last asked. Order matters: the loop asks for the dirty
//! set *after* a round is sent, so the pages dirtied while it was being sent are exactly
//! the next round's.

use std::time::Duration;

use pv_abi::addr::PAGE_SIZE;

use super::figures::{RoundFigures, StopReason};
use super::MigrationError;
use crate::memory::dirty::DirtySet;

/// Bytes a page costs on the wire besides its data (the stream's frame number and kind).
pub const PAGE_OVERHEAD: u64 = 9;

/// What sending one round cost.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sent {
    /// Pages sent (round 0 leaves zero pages out).
    pub pages: u64,
    /// Bytes put on the connection.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Where a round's pages go.
pub trait RoundSink {
    /// Sends the pages of `pages` as round `round`, and the round's end marker. With
    /// `skip_zero` (round 0: the destination's RAM starts zeroed) all-zero pages are
    /// left out.
    fn send_round(&mut self, round: u32, pages: &DirtySet, skip_zero: bool) -> Result<Sent, MigrationError>;
}

/// Where the dirty pages come from.
pub trait DirtySource {
    /// Every page dirtied since the last call (or since logging began).
    fn dirtied_since_last_call(&mut self) -> Result<DirtySet, MigrationError>;
}

/// The settings of the loop.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Guest RAM, bytes (round 0 looks at all of it).
    pub ram_bytes: u64,
    /// At most this many live rounds, round 0 included.
    pub max_rounds: u32,
    /// The downtime to aim for.
    pub downtime_target: Duration,
}

/// What the live rounds did, and what is left for the paused one.
#[derive(Debug)]
pub struct LiveRounds {
    /// One row per live round.
    pub rounds: Vec<RoundFigures>,
    /// Pages dirtied during the last live round: still to send.
    pub still_dirty: DirtySet,
    /// Why the loop stopped.
    pub stopped_because: StopReason,
    /// Pages sent over the live rounds.
    pub pages_sent: u64,
}

/// The downtime sending `pages` pages of `page_bytes` each would take at
/// `bytes_per_second`. An unmeasured bandwidth (zero) predicts an unbounded downtime.
pub fn estimated_downtime(pages: u64, page_bytes: u64, bytes_per_second: f64) -> Duration {
    // LAB 6 BEGIN: predict the downtime of sending the remaining dirty pages
    if pages == 0 {
        return Duration::ZERO;
    }
    if bytes_per_second <= 0.0 || !bytes_per_second.is_finite() {
        return Duration::MAX;
    }
    Duration::try_from_secs_f64(pages as f64 * page_bytes as f64 / bytes_per_second).unwrap_or(Duration::MAX)
    // LAB 6 STUB: let _ = (pages, page_bytes, bytes_per_second);
    // LAB 6 STUB: todo!("lab 6: predict the downtime of sending the remaining dirty pages")
    // LAB 6 END
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
    // LAB 6 BEGIN: the stop condition
    if estimated <= target {
        NextStep::StopConverged
    } else if round + 1 >= max_rounds {
        NextStep::StopRoundLimit
    } else {
        NextStep::AnotherRound
    }
    // LAB 6 STUB: let _ = (round, estimated, target, max_rounds);
    // LAB 6 STUB: todo!("lab 6: decide whether to run another pre-copy round")
    // LAB 6 END
}

/// A round's figures, from what sending it cost and how many pages it left dirty.
pub fn round_figures(round: u32, paused: bool, sent: &Sent, dirtied: u64) -> RoundFigures {
    let secs = sent.elapsed.as_secs_f64();
    let bandwidth = if secs > 0.0 { sent.bytes as f64 / secs } else { 0.0 };
    let estimate = estimated_downtime(dirtied, PAGE_SIZE + PAGE_OVERHEAD, bandwidth);
    RoundFigures {
        round,
        paused,
        pages_sent: sent.pages,
        pages_dirtied: dirtied,
        bytes: sent.bytes,
        ms: secs * 1e3,
        mb_per_s: bandwidth / 1e6,
        estimated_downtime_ms: if estimate == Duration::MAX { f64::INFINITY } else { estimate.as_secs_f64() * 1e3 },
    }
}

/// The live rounds: round 0 sends every page of RAM but the zero ones; each later
/// round the pages dirtied while the one before was sent; after each, [`next_step`]
/// decides, from the round's figures ([`round_figures`]: the estimate uses the
/// bandwidth that round measured). `progress` sees each row as the round ends.
pub fn live_rounds(
    sink: &mut impl RoundSink,
    dirty: &mut impl DirtySource,
    policy: &Policy,
    progress: &mut impl FnMut(&RoundFigures),
) -> Result<LiveRounds, MigrationError> {
    // LAB 6 BEGIN: the round loop
    let mut rounds = Vec::new();
    let mut pages_sent = 0;
    let mut to_send = DirtySet::full(policy.ram_bytes);
    let mut round = 0u32;
    loop {
        let sent = sink.send_round(round, &to_send, round == 0)?;
        to_send = dirty.dirtied_since_last_call()?;
        let row = round_figures(round, false, &sent, to_send.len());
        progress(&row);
        pages_sent += sent.pages;
        let estimate = Duration::try_from_secs_f64(row.estimated_downtime_ms / 1e3).unwrap_or(Duration::MAX);
        rounds.push(row);
        let stopped_because = match next_step(round, estimate, policy.downtime_target, policy.max_rounds) {
            NextStep::AnotherRound => {
                round += 1;
                continue;
            }
            NextStep::StopConverged => StopReason::Converged,
            NextStep::StopRoundLimit => StopReason::RoundLimit,
        };
        return Ok(LiveRounds { rounds, still_dirty: to_send, stopped_because, pages_sent });
    }
    // LAB 6 STUB: let _ = (sink, dirty, policy, progress);
    // LAB 6 STUB: todo!("lab 6: the pre-copy round loop")
    // LAB 6 END
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
