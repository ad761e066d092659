//! Checking a console response before acting on it.
//!
//! The backend answers console requests one by one, in the order they were sent (the
//! ring keeps that order and the backend writes the text out in it). So the only
//! response the frontend can accept next is the one for its oldest unanswered request:
//! any other id is a broken or hostile backend, and accepting it would let the
//! frontend believe text was written that never was. The status (bytes written, or an
//! error) is not acted on: console output has nowhere better to go.

use pv_abi::device::console::ConsoleResponse;

use super::ConsoleError;

/// Checks that `response` answers request `oldest_unanswered`.
pub fn check_response(response: &ConsoleResponse, oldest_unanswered: u64) -> Result<(), ConsoleError> {
    if response.id != oldest_unanswered {
        return Err(ConsoleError::UnexpectedResponse { id: response.id });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_to_the_oldest_request_is_accepted() {
        assert_eq!(check_response(&ConsoleResponse { id: 5, status: 3 }, 5), Ok(()));
    }

    #[test]
    fn hostile_out_of_order_or_unsent_ids_are_refused() {
        for id in [4, 6, u64::MAX] {
            assert_eq!(check_response(&ConsoleResponse { id, status: 3 }, 5), Err(ConsoleError::UnexpectedResponse { id }));
        }
    }
}
