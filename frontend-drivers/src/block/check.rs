//! Checking a block response before acting on it.
//!
//! The response was copied out of the ring, so it cannot change under us; but the
//! backend wrote it and may have written anything. The one field the frontend acts on
//! is the id: it decides which request is finished and whose grants are revoked, so it
//! must name a request that is in flight now (not one already answered, not one never
//! sent). The status is decoded into the statuses the protocol defines; any other
//! value counts as an I/O error.

use pv_abi::device::block::{BlockResponse, BlockStatus};

use super::BlockError;

/// A response that answers a request in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckedResponse {
    /// Which in-flight slot it answers.
    pub slot: usize,
    /// The request's id.
    pub id: u64,
    /// How the request went.
    pub status: BlockStatus,
}

/// Checks `response` against the ids in flight, slot by slot (`None`: a free slot).
pub fn check_response(
    response: &BlockResponse,
    in_flight: impl IntoIterator<Item = Option<u64>>,
) -> Result<CheckedResponse, BlockError> {
    // LAB 3 BEGIN: check the backend's response against the requests in flight
    let slot = in_flight
        .into_iter()
        .position(|id| id == Some(response.id))
        .ok_or(BlockError::UnexpectedResponse { id: response.id })?;
    Ok(CheckedResponse { slot, id: response.id, status: BlockStatus::from_i32(response.status) })
    // LAB 3 STUB: let _ = (response, in_flight.into_iter());
    // LAB 3 STUB: todo!("lab 3: check the response's id against the requests in flight: check::check_response")
    // LAB 3 END
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(id: u64, status: i32) -> BlockResponse {
        BlockResponse { id, status }
    }

    #[test]
    fn a_response_to_a_request_in_flight_names_its_slot() {
        let checked = check_response(&response(7, 0), [Some(3), None, Some(7)]).unwrap();
        assert_eq!(checked, CheckedResponse { slot: 2, id: 7, status: BlockStatus::Ok });
    }

    #[test]
    fn hostile_response_ids_not_in_flight_are_refused() {
        for id in [0, 4, u64::MAX] {
            assert_eq!(check_response(&response(id, 0), [Some(3), None, Some(7)]), Err(BlockError::UnexpectedResponse { id }));
        }
    }

    #[test]
    fn hostile_unknown_statuses_count_as_io_errors() {
        for status in [1, -1, i32::MIN, i32::MAX] {
            assert_eq!(check_response(&response(3, status), [Some(3)]).unwrap().status, BlockStatus::IoError);
        }
    }
}
