//! Checking a balloon response before acting on it.
//!
//! The response was copied out of the ring, but the backend wrote it. Its id decides
//! which batch is finished, and with it which frames go back to the kernel's allocator
//! or into the balloon, so it must name a batch in flight now. The status is decoded
//! into the statuses the protocol defines (any other value counts as a refusal); an
//! `Ok` must say it moved the whole batch, since batches are all or nothing.

use pv_abi::device::balloon::{BalloonResponse, BalloonStatus};

use super::BalloonError;

/// A response that answers a batch in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckedResponse {
    /// Which in-flight slot it answers.
    pub slot: usize,
    /// How the batch went.
    pub status: BalloonStatus,
}

/// Checks `response` against the batches in flight, slot by slot (`(id, frames)`, or
/// `None` for a free slot).
pub fn check_response(response: &BalloonResponse, in_flight: impl IntoIterator<Item = Option<(u64, usize)>>) -> Result<CheckedResponse, BalloonError> {
    let (slot, count) = in_flight
        .into_iter()
        .enumerate()
        .find_map(|(slot, batch)| batch.filter(|(id, _)| *id == response.id).map(|(_, count)| (slot, count)))
        .ok_or(BalloonError::UnexpectedResponse { id: response.id })?;
    let status = BalloonStatus::from_i32(response.status);
    if status == BalloonStatus::Ok && response.detail as usize != count {
        return Err(BalloonError::PartialBatch { id: response.id });
    }
    Ok(CheckedResponse { slot, status })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(id: u64, status: BalloonStatus, detail: u32) -> BalloonResponse {
        BalloonResponse { id, status: status as i32, detail }
    }

    #[test]
    fn a_response_to_a_batch_in_flight_names_its_slot() {
        let checked = check_response(&response(7, BalloonStatus::Ok, 30), [Some((3, 1)), None, Some((7, 30))]).unwrap();
        assert_eq!(checked, CheckedResponse { slot: 2, status: BalloonStatus::Ok });
        let refused = check_response(&response(3, BalloonStatus::Kernel, 0), [Some((3, 1))]).unwrap();
        assert_eq!(refused.status, BalloonStatus::Kernel);
    }

    #[test]
    fn hostile_responses_not_in_flight_or_claiming_part_of_a_batch_are_refused() {
        for id in [0, 4, u64::MAX] {
            assert_eq!(check_response(&response(id, BalloonStatus::Ok, 1), [Some((3, 1))]), Err(BalloonError::UnexpectedResponse { id }));
        }
        assert_eq!(check_response(&response(3, BalloonStatus::Ok, 2), [Some((3, 30))]), Err(BalloonError::PartialBatch { id: 3 }));
        let odd = BalloonResponse { id: 3, status: 999, detail: 0 };
        assert_eq!(check_response(&odd, [Some((3, 1))]).unwrap().status, BalloonStatus::BadRequest);
    }
}
