//! Checking the network backend's responses before acting on them.
//!
//! A response was copied out of the ring, so it cannot change under us; but the backend
//! wrote it. Its `id` decides which buffer is free again and whose grant is revoked, so
//! it must name a buffer in flight now: a transmitted frame not yet answered, or a
//! posted receive buffer not yet filled (ids are buffer indices). A receive response's
//! `status`, when it is not an error, is a length the driver will copy: it must be a
//! frame's length, and `offset + length` must stay inside the 4 KiB buffer.

use core::ops::Range;

use pv_abi::addr::PAGE_SIZE;
use pv_abi::device::net::{NetRxResponse, NetTxResponse, NET_MAX_FRAME, NET_MIN_FRAME};
use pv_abi::grant::GrantRef;

use super::NetError;

/// What a checked receive response says about its buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RxOutcome {
    /// A frame: these bytes of the buffer.
    Frame(Range<usize>),
    /// The backend refused the buffer (a negative status): it holds nothing.
    Refused(i32),
}

/// The in-flight slot a response's id names: `id` is the buffer's index, and that
/// buffer must be in flight (`Some(grant)`).
fn slot_of(id: u32, in_flight: &[Option<GrantRef>]) -> Result<usize, NetError> {
    match in_flight.get(id as usize) {
        Some(Some(_)) => Ok(id as usize),
        _ => Err(NetError::UnexpectedResponse { id }),
    }
}

/// Checks a transmit response: which buffer it frees.
pub fn check_tx_response(response: &NetTxResponse, in_flight: &[Option<GrantRef>]) -> Result<usize, NetError> {
    slot_of(response.id, in_flight)
}

/// Checks a receive response: which buffer it answers, and what is in it. A bad length
/// or placement is an error ([`NetError::BadResponse`]) that still names the buffer, so
/// the driver can take it back.
pub fn check_rx_response(response: &NetRxResponse, posted: &[Option<GrantRef>]) -> Result<(usize, Result<RxOutcome, NetError>), NetError> {
    let slot = slot_of(response.id, posted)?;
    let status = response.status;
    if status < 0 {
        return Ok((slot, Ok(RxOutcome::Refused(status))));
    }
    let bad = NetError::BadResponse { id: response.id, offset: response.offset, status };
    let len = status as usize;
    if !(NET_MIN_FRAME..=NET_MAX_FRAME).contains(&len) {
        return Ok((slot, Err(bad)));
    }
    let start = usize::from(response.offset);
    let end = start + len;
    if end > PAGE_SIZE as usize {
        return Ok((slot, Err(bad)));
    }
    Ok((slot, Ok(RxOutcome::Frame(start..end))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rx(id: u32, offset: u16, status: i32) -> NetRxResponse {
        NetRxResponse { id, offset, flags: 0, status }
    }

    const POSTED: [Option<GrantRef>; 3] = [Some(5), None, Some(7)];

    #[test]
    fn a_frame_in_a_posted_buffer_passes() {
        assert_eq!(check_rx_response(&rx(2, 10, 60), &POSTED), Ok((2, Ok(RxOutcome::Frame(10..70)))));
        assert_eq!(check_rx_response(&rx(0, 0, -14), &POSTED), Ok((0, Ok(RxOutcome::Refused(-14)))));
        assert_eq!(check_tx_response(&NetTxResponse { id: 2, status: 0 }, &POSTED), Ok(2));
    }

    #[test]
    fn hostile_netif_response_ids_never_posted_are_refused() {
        for id in [1, 3, 128, u32::MAX] {
            assert_eq!(check_rx_response(&rx(id, 0, 60), &POSTED), Err(NetError::UnexpectedResponse { id }), "{id}");
            assert_eq!(check_tx_response(&NetTxResponse { id, status: 0 }, &POSTED), Err(NetError::UnexpectedResponse { id }));
        }
    }

    #[test]
    fn hostile_netif_response_lengths_and_offsets_are_refused_but_name_their_buffer() {
        for (offset, status) in [(0, 0), (0, 13), (0, 1515), (0, i32::MAX), (4000, 100), (u16::MAX, 14)] {
            let (slot, outcome) = check_rx_response(&rx(2, offset, status), &POSTED).unwrap();
            assert_eq!(slot, 2);
            assert_eq!(outcome, Err(NetError::BadResponse { id: 2, offset, status }), "{offset}+{status}");
        }
    }
}
